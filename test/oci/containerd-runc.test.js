// containerd driving runc, the baseline for nsbox's own OCI runtime (issue #20): the cases of
// test/oci/containerd.js (a run to completion, `ctr task exec`, `kill`, `pause`/`resume`, `metrics`, a
// tty) against a private containerd started by the test, with the busybox fixture imported from an OCI
// archive. The runtime's own test runs the same cases with its binary. NSBOX_OCI_BASELINE picks another
// runc-compatible binary (e.g. /usr/bin/crun) for the same cases.
'use strict';
const t = require('tap');
const { containerdCases } = require('./containerd');

const which = (name) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].map((d) => `${d}/${name}`).find((p) => require('node:fs').existsSync(p));
const runtime = process.env.NSBOX_OCI_BASELINE || which('runc') || '/usr/sbin/runc';
containerdCases(t, { runtime });
