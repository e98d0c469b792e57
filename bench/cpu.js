#!/usr/bin/env node
// Where the CPUs go at concurrency 16: a diagnostic beside bench/index.js. For each contender it runs
// N containers of /bin/true (the busybox rootfs) at concurrency C, each slot starting the next from
// the previous one's exit, and reports containers/s, the host's busy CPU time per container (from
// /proc/stat: this process, its children, and the kernel threads working for them, e.g. the
// asynchronous teardown of network namespaces), the JS thread's own CPU time per container
// (/proc/self/task/<pid>/stat) and the event loop's maximum delay.
// --ballast MiB first allocates and touches that much memory, as an application's own data would:
// child_process forks Node (its page tables are copied), nsbox's clone shares them (CLONE_VM).
// First, the sequential round trip of each contender (--rt-n, default 200), interleaved.
// Usage: node bench/cpu.js [--n 1500] [--concurrency 16] [--which child_process,nsbox,nsbox_host] [--ballast 0] [--rt-n 200]
'use strict';
const fs = require('node:fs');
const cp = require('node:child_process');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { busyboxRootfs } = require('./lib/rootfs');

const args = process.argv.slice(2);
const opt = (n, d) => (args.includes(n) ? args[args.indexOf(n) + 1] : d);
const N = Number(opt('--n', 1500));
const C = Number(opt('--concurrency', 16));
const which = opt('--which', 'child_process,nsbox,nsbox_host').split(',');
const ballast = Array.from({ length: Number(opt('--ballast', 0)) }, () => Buffer.alloc(1 << 20, 1));

const nsbox = require('..');
const { rootfs, reason } = busyboxRootfs();
if (!rootfs) {
  console.error(`bench/cpu.js: ${reason}`);
  process.exit(1);
}

function hostBusyTicks() {
  const v = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return v[0] + v[1] + v[2] + v[5] + v[6]; // user nice system irq softirq
}
function jsThreadTicks() {
  const s = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime stime
}
const tickMs = 1000 / 100; // USER_HZ

const contenders = {
  child_process: () => new Promise((resolve, reject) => cp.spawn('/bin/true').on('close', resolve).on('error', reject)),
  nsbox: () => nsbox.run({ rootfs, command: ['/bin/true'] }),
  nsbox_host: () => nsbox.run({ rootfs, command: ['/bin/true'], network: 'host' }),
};

async function measure(name, one) {
  let started = 0;
  let done = 0;
  const h = monitorEventLoopDelay({ resolution: 1 });
  const b0 = hostBusyTicks();
  const j0 = jsThreadTicks();
  const t0 = performance.now();
  h.enable();
  await new Promise((resolve, reject) => {
    const next = () => {
      if (started >= N) {
        if (done === N) resolve();
        return;
      }
      started++;
      one().then(() => {
        done++;
        next();
      }, reject);
    };
    for (let i = 0; i < C; i++) next();
  });
  h.disable();
  const wall = performance.now() - t0;
  return {
    name,
    perSecond: (N / wall) * 1000,
    hostCpuMs: ((hostBusyTicks() - b0) * tickMs) / N,
    jsThreadCpuMs: ((jsThreadTicks() - j0) * tickMs) / N,
    loopDelayMaxMs: h.max / 1e6,
  };
}

/** Sequential round trips, contenders interleaved in blocks of 10: p50 in ms. */
async function roundTrips(names, n) {
  const samples = Object.fromEntries(names.map((k) => [k, []]));
  for (const k of names) for (let i = 0; i < 10; i++) await contenders[k]();
  for (let b = 0; b < n / 10; b++) {
    for (const k of names) {
      for (let i = 0; i < 10; i++) {
        const t = performance.now();
        await contenders[k]();
        samples[k].push(performance.now() - t);
      }
    }
  }
  const p50 = (a) => [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) / 2)];
  return Object.fromEntries(names.map((k) => [k, p50(samples[k])]));
}

(async () => {
  const rt = await roundTrips(which, Number(opt('--rt-n', 200)));
  const rows = [];
  for (const name of which) {
    if (!contenders[name]) throw new Error(`unknown contender ${name}`);
    for (let i = 0; i < 2 * C; i++) await contenders[name]();
    await new Promise((r) => setTimeout(r, 2000)); // let the kernel finish tearing the warm-up down
    rows.push(await measure(name, contenders[name]));
  }
  const rss = process.memoryUsage().rss / 2 ** 20;
  console.log(`${N} containers of /bin/true at concurrency ${C}; host ${require('node:os').cpus().length} CPUs; ballast ${ballast.length} MiB, Node RSS ${rss.toFixed(0)} MiB`);
  console.log('| contender | containers/s | host busy CPU ms per container | JS thread CPU ms per container | loop delay max ms |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.name} | ${r.perSecond.toFixed(0)} | ${r.hostCpuMs.toFixed(2)} | ${r.jsThreadCpuMs.toFixed(2)} | ${r.loopDelayMaxMs.toFixed(1)} |`);
  console.log('');
  console.log('Sequential round trip (interleaved blocks of 10): ' + which.map((k) => `${k} p50 ${rt[k].toFixed(2)} ms`).join(', ') + (rt.child_process ? '; ÷ child_process: ' + which.filter((k) => k !== 'child_process').map((k) => `${k} ${(rt[k] / rt.child_process).toFixed(2)}×`).join(', ') : ''));
})();
