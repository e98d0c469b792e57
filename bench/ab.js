#!/usr/bin/env node
// ab.js: two builds of nsbox side by side in one process, for a change whose gain is smaller than
// the host's drift between runs. Each round trip of `/bin/true` on the busybox rootfs alternates
// between the two (A B, then B A: neither always goes first), after a warm-up of each; p50, p90
// and mean per build. Run it again with the two swapped: a difference that flips with the order
// is the order, not the change.
//
//   node bench/ab.js [--n 1500] [--warmup 20] DIR_A DIR_B
//
// DIR_A and DIR_B are checkouts with the addon and dist/ built (e.g. a `git worktree` of the commit
// before, with `npx node-gyp rebuild && npx tsc -p tsconfig.json` run in it). Both keep their own
// network namespace reserve and cgroup names (pid.seq, with a seq of their own), so only sequential
// runs of containers without limits are compared here: two of them never run at once.
'use strict';
const path = require('node:path');
const { busyboxRootfs } = require('./lib/rootfs');

const args = process.argv.slice(2);
const opt = (name, d) => {
  const i = args.indexOf(name);
  if (i < 0) return d;
  const v = Number(args[i + 1]);
  args.splice(i, 2);
  return v;
};
const N = opt('--n', 1500);
const WARMUP = opt('--warmup', 20);
if (args.length !== 2) {
  console.error('usage: node bench/ab.js [--n 1500] [--warmup 20] DIR_A DIR_B');
  process.exit(2);
}
const { rootfs, reason } = busyboxRootfs();
if (!rootfs) {
  console.error(`bench/ab.js: ${reason}`);
  process.exit(1);
}
const builds = args.map((d) => ({ dir: d, lib: require(path.resolve(d)), t: [] }));

(async () => {
  for (let i = 0; i < N + WARMUP; i++) {
    const order = i % 2 ? [1, 0] : [0, 1];
    for (const j of order) {
      const s = performance.now();
      await builds[j].lib.run({ rootfs, command: ['/bin/true'] });
      if (i >= WARMUP) builds[j].t.push(performance.now() - s);
    }
  }
  const q = (a, f) => a[Math.floor((a.length - 1) * f)];
  console.log(`${N} round trips each, interleaved A B / B A, after ${WARMUP} of each`);
  for (const b of builds) {
    const a = [...b.t].sort((x, y) => x - y);
    const mean = a.reduce((x, y) => x + y, 0) / a.length;
    console.log(`${b.dir}: p50 ${q(a, 0.5).toFixed(3)} ms, p90 ${q(a, 0.9).toFixed(3)} ms, mean ${mean.toFixed(3)} ms`);
  }
})();
