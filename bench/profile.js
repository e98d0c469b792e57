#!/usr/bin/env node
// Where does an nsbox app round trip go? A diagnostic beside bench/index.js: it wraps the addon's
// spawn (from the outside, nothing in lib/ is changed) and splits each sequential run() of
// /bin/true into phases:
//   js-before   run() called → native spawn entered (option checks, plan, cgroup mkdir+open, pipes)
//   spawn-sync  inside the native spawn: clone3, the child's whole setup and the exec of the
//               command (the JS thread is blocked until the error pipe reports end-of-file)
//   to-exit     native spawn returned → the pidfd exit callback runs
//   exit-cleanup exit callback → wait() resolves (cgroup.kill, stats reads, cgroup rmdir, retries)
//   to-result   wait() resolved → run() resolved (stdio pipes reach end-of-file)
// and counts the cgroup rmdir attempts that failed with EBUSY and the timers they slept.
// Usage: node bench/profile.js [--n 200] [--warmup 20] [--opts '{"network":"host"}'] (merged into the options)
//                               [--idle N] (N idle builtin-init machines running meanwhile; stopped at the end)
'use strict';
const fs = require('node:fs');
const { summarize, f2, table } = require('./lib/stats');
const { busyboxRootfs } = require('./lib/rootfs');
const { Fleet } = require('./lib/machines');

const args = process.argv.slice(2);
const opt = (n, d) => (args.includes(n) ? Number(args[args.indexOf(n) + 1]) : d);
const N = opt('--n', 200);
const WARMUP = opt('--warmup', 20);
const IDLE = opt('--idle', 0);
const EXTRA = args.includes('--opts') ? JSON.parse(args[args.indexOf('--opts') + 1]) : {};

const { native } = require('../dist/native');
const nsbox = require('..');

const b = native();
const origSpawn = b.spawn;
let cur = null;
b.spawn = function (plan) {
  if (cur) cur.spawnIn = performance.now();
  const res = origSpawn.call(this, plan);
  if (cur) cur.spawnOut = performance.now();
  if (cur && res && res.process) {
    const rec = cur;
    const w = res.process.watch;
    // N-API methods are read-only on the prototype: shadow it on the instance.
    Object.defineProperty(res.process, 'watch', {
      configurable: true,
      value(cb) {
        return w.call(this, (...a) => {
          rec.exitCb = performance.now();
          return cb(...a);
        });
      },
    });
  }
  return res;
};

let ebusy = 0;
let ebusyBase = 0;
let rmdirs = 0;
const origRmdir = fs.rmdirSync;
fs.rmdirSync = function (...a) {
  rmdirs++;
  try {
    return origRmdir.apply(this, a);
  } catch (e) {
    if (e.code === 'EBUSY') {
      if (/\/nsbox\/?$/.test(String(a[0]))) ebusyBase++;
      else ebusy++;
    }
    throw e;
  }
};

async function main() {
  const { rootfs } = busyboxRootfs();
  const fleet = new Fleet(nsbox, rootfs);
  const bye = () => fleet.cleanup().finally(() => process.exit(1));
  process.once('SIGINT', bye);
  process.once('SIGTERM', bye);
  try {
    if (IDLE) await fleet.startMany(IDLE);
    await profile(rootfs);
  } finally {
    await fleet.cleanup();
  }
}

async function profile(rootfs) {
  const phases = { 'js-before': [], 'spawn-sync': [], 'to-exit': [], 'exit-cleanup': [], 'to-result': [], total: [] };
  for (let i = 0; i < WARMUP + N; i++) {
    const rec = { t0: performance.now() };
    cur = rec;
    const c = nsbox.spawn({ ...(EXTRA.image ? {} : { rootfs }), command: ["/bin/true"], ...EXTRA });
    cur = null;
    c.stdin.end();
    const closed = Promise.all([c.stdout, c.stderr].map((s) => new Promise((r) => s.on('close', r).resume())));
    const info = await c.wait();
    rec.waited = performance.now();
    await closed;
    rec.done = performance.now();
    if (info.exitCode !== 0) throw new Error(`exit ${info.exitCode}`);
    if (i === WARMUP - 1) {
      ebusy = 0;
      ebusyBase = 0;
      rmdirs = 0;
    }
    if (i < WARMUP) continue;
    phases['js-before'].push(rec.spawnIn - rec.t0);
    phases['spawn-sync'].push(rec.spawnOut - rec.spawnIn);
    phases['to-exit'].push(rec.exitCb - rec.spawnOut);
    phases['exit-cleanup'].push(rec.waited - rec.exitCb);
    phases['to-result'].push(rec.done - rec.waited);
    phases.total.push(rec.done - rec.t0);
  }
  const rows = Object.entries(phases).map(([k, v]) => {
    const s = summarize(v);
    return [k, s.n, f2(s.mean), f2(s.p50), f2(s.p90), f2(s.p99), f2(s.max)];
  });
  console.log(`nsbox spawn({ rootfs, command: ['/bin/true']${Object.keys(EXTRA).length ? ', ' + JSON.stringify(EXTRA).slice(1, -1) : ''} }) + pipes drained, sequential, n=${N} (warm-up ${WARMUP})${IDLE ? `, ${IDLE} idle machines running` : ''}\n`);
  console.log(table(['phase', 'n', 'mean ms', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'], rows));
  console.log(`\ncgroup rmdir calls: ${rmdirs}; EBUSY on a container's cgroup: ${ebusy} (each sleeps 1, 2, 4 … ms before the next try); EBUSY on the shared nsbox base (not empty, not retried): ${ebusyBase}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
