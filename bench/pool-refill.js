#!/usr/bin/env node
// Diagnostic: does the warm pool take its set-up off the round trip? pool.run() from a full pool,
// as shipped, against the same with the pool's refill pushed 20 ms later (after the run is over)
// by wrapping setImmediate for this process only. Nothing in lib/ is changed; the second figure is
// what pool.run() would cost if the refill did not run on the event loop while the command runs.
// Usage: node bench/pool-refill.js [--n 200]
'use strict';
const { summarize, f2, table } = require('./lib/stats');
const { busyboxRootfs } = require('./lib/rootfs');
const nsbox = require('..');

const args = process.argv.slice(2);
const N = args.includes('--n') ? Number(args[args.indexOf('--n') + 1]) : 200;
const WARMUP = 20;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function measure(once, ready) {
  const out = [];
  for (let i = 0; i < WARMUP + N; i++) {
    if (ready) for (let j = 0; !ready() && j < 1000; j++) await sleep(2);
    await sleep(5); // idle time between runs, for everyone alike
    const t0 = performance.now();
    await once();
    if (i >= WARMUP) out.push(performance.now() - t0);
  }
  return summarize(out);
}

async function main() {
  const { rootfs } = busyboxRootfs();
  const check = (r) => {
    if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode ?? r.signal}`);
  };
  const rows = [];
  const cp = require('node:child_process');
  rows.push(['child_process.spawn(\'/bin/true\') (pipes, close)', await measure(() => new Promise((res, rej) => cp.spawn('/bin/true').on('error', rej).on('close', res)))]);
  rows.push(['nsbox run()', await measure(async () => check(await nsbox.run({ rootfs, command: ['/bin/true'] })))]);
  const p1 = nsbox.createPool({ size: 2, rootfs });
  try {
    rows.push(['pool.run() from a full pool, as shipped', await measure(async () => check(await p1.run(['/bin/true'])), () => p1.ready >= 2)]);
  } finally {
    await p1.close();
  }
  const orig = global.setImmediate;
  global.setImmediate = (fn, ...a) => setTimeout(fn, 20, ...a);
  const p2 = nsbox.createPool({ size: 2, rootfs });
  try {
    rows.push(['pool.run() from a full pool, refill deferred 20 ms (experiment)', await measure(async () => check(await p2.run(['/bin/true'])), () => p2.ready >= 2)]);
  } finally {
    await p2.close();
    global.setImmediate = orig;
  }
  console.log(`/bin/true on the busybox rootfs, 5 ms idle before each run, n=${N} (warm-up ${WARMUP})\n`);
  console.log(table(['what', 'n', 'p50 ms', 'p90 ms', 'p99 ms'], rows.map(([k, s]) => [k, s.n, f2(s.p50), f2(s.p90), f2(s.p99)])));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
