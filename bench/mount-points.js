#!/usr/bin/env node
// mount-points.js: what a missing mount point costs. A bind onto a point the rootfs has (the root
// is the rootfs's own bind, read-only at once; the common case) against one onto a point it lacks
// (the root is an overlay of the rootfs with a tmpfs upper layer, in which the point is made:
// lib/fsops.ts, finishRoot), and no user mount at all. run() of /bin/true on the bench's busybox
// rootfs, the three taking turns one round trip each so that drift hits them alike.
//
//   node bench/mount-points.js [--n 200]
//
// As root the overlay start cannot use the mount namespace template (its first op mounts the upper
// layer's tmpfs at a host path): that is most of its extra cost. Run it as an unprivileged user for
// the rootless numbers (the rootfs is then root's: the case the overlay exists for).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { summarize, f2, table } = require('./lib/stats');
const { busyboxRootfs } = require('./lib/rootfs');

const args = process.argv.slice(2);
const N = Number(args.includes('--n') ? args[args.indexOf('--n') + 1] : 200);

async function main() {
  const { run } = require('..');
  const { rootfs, reason } = busyboxRootfs();
  if (!rootfs) throw new Error(reason);
  const src = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-bench-mp-'));
  fs.chmodSync(src, 0o755);
  try {
    const cases = [
      ['bind onto /var (exists)', { mounts: [{ type: 'bind', source: src, target: '/var' }] }],
      ['bind onto /new/deep/target (missing: overlay)', { mounts: [{ type: 'bind', source: src, target: '/new/deep/target' }] }],
      ['no user mount', {}],
    ];
    const samples = cases.map(() => []);
    for (let i = 0; i < 20 + N; i++) {
      for (const [k, [, o]] of cases.entries()) {
        const t0 = performance.now();
        const r = await run({ rootfs, command: ['/bin/true'], ...o });
        const ms = performance.now() - t0;
        if (r.exitCode !== 0) throw new Error(`${cases[k][0]}: exit ${r.exitCode}: ${r.stderr}`);
        if (i >= 20) samples[k].push(ms);
      }
    }
    if (fs.existsSync(path.join(rootfs, 'new'))) throw new Error('the rootfs got /new: a mount point was made in it');
    const who = process.geteuid() === 0 ? 'root' : 'rootless';
    console.log(`run() of /bin/true, ${N} each (${who}, ${os.cpus().length} CPUs, Linux ${os.release()})\n`);
    console.log(table(['case', 'p50 ms', 'p90 ms'], cases.map(([name], k) => {
      const s = summarize(samples[k]);
      return [name, f2(s.p50), f2(s.p90)];
    })));
  } finally {
    fs.rmSync(src, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
