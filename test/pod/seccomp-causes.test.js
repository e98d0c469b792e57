// Issue #22: under a container runtime's seccomp profile (clone3 answered with ENOSYS, clone and
// unshare with namespace flags refused with EPERM, as Kubernetes RuntimeDefault and Docker do) a
// start's error names the call that really failed and the filter as its likely cause. The filter
// is nsbox's own default profile, compiled by dist/seccomp.js and installed around Node by bwrap.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const S = require('../../dist/seccomp');

const bwrap = ['/usr/bin/bwrap', '/bin/bwrap'].find((p) => fs.existsSync(p));
const noBwrap = bwrap ? false : 'needs bubblewrap (bwrap) to put a seccomp filter around a Node process';
const runner = path.join(__dirname, 'runner.js');

/** Runs the runner under bwrap with `policy` as its seccomp filter; returns its JSON line. */
function underFilter(t, policy, what = 'start') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-pod-sc-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'filter.bpf');
  fs.writeFileSync(file, S.compileSeccomp(S.resolveSeccomp(policy), process.arch));
  const fd = fs.openSync(file, 'r');
  try {
    const r = spawnSync(bwrap, ['--bind', '/', '/', '--dev-bind', '/dev', '/dev', '--seccomp', '3', process.execPath, runner, what], {
      stdio: ['ignore', 'pipe', 'pipe', fd], encoding: 'utf8', timeout: 60000,
    });
    t.equal(r.status, 0, `the runner ran (${r.stderr.slice(-500)})`);
    const line = r.stdout.trim().split('\n').pop();
    return JSON.parse(line || '{}');
  } finally {
    fs.closeSync(fd);
  }
}

t.test('clone3 ENOSYS, clone EPERM: the error names clone, its step, its errno and the filter', { skip: noBwrap }, async (t) => {
  const out = underFilter(t, 'default');
  t.equal(out.seccomp, '2', 'the runner is in seccomp filter mode');
  t.match(out.start?.error, { name: 'NsboxError', code: 'EPERM', errno: 1, syscall: 'clone', step: 'spawn.clone' }, 'the fallback clone is the call that failed');
  t.match(out.start?.error?.message, /^clone: EPERM \(step spawn\.clone\): this process runs under a seccomp filter \(\/proc\/self\/status Seccomp: 2, Seccomp_filters: \d+\)/, 'the message names the filter');
  t.match(out.start?.error?.message, /RuntimeDefault/, 'and the profiles that do this');
});

t.test('without a filter, the message says nothing of seccomp', async (t) => {
  const { explainCause, seccompCause } = require('../../dist/causes');
  const { NsboxError } = require('../../dist/errors');
  t.equal(seccompCause('EPERM', 'clone', { mode: 0, filters: 0 }), null, 'Seccomp: 0');
  t.equal(seccompCause('EPERM', 'clone', { mode: 1, filters: 0 }), null, 'strict mode is not a filter');
  t.equal(seccompCause('ENOENT', 'clone', { mode: 2, filters: 1 }), null, 'ENOENT is never the filter');
  t.equal(seccompCause('EPERM', 'execve', { mode: 2, filters: 1 }), null, 'execve is not a namespace or mount call');
  t.match(seccompCause('ENOSYS', 'clone3', { mode: 2, filters: 3 }), /Seccomp: 2, Seccomp_filters: 3/);
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  if (/^Seccomp:\s+0/m.test(status)) {
    const e = new NsboxError({ code: 'EPERM', errno: 1, syscall: 'clone', step: 'spawn.clone' });
    t.equal(explainCause(e, false), e, 'this process has no filter: the error is left as it is');
  }
});
