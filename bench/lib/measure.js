'use strict';
// Measurement primitives of the benchmark (bench/index.js): interleaved round trips, a concurrent
// pool, the event loop's delay, CPU accounting and waiting for the host to settle.
const fs = require('node:fs');
const os = require('node:os');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { setTimeout: sleep } = require('node:timers/promises');

const { summarize, now } = require('./stats');

const BLOCK = 10; // round-robin block: contenders take turns in blocks of 10, so drift hits all alike

/**
 * Sequential round trips of several contenders, interleaved in blocks (after each one's warm-up),
 * so that slow drift of the machine (other load, thermal, page cache) affects them alike. With
 * nFast > n, the contenders for which fast(c) holds get nFast round trips: several blocks each per
 * round, taking turns among themselves, for every block of the others.
 */
async function interleaved(cs, n, warmup, nFast = n, fast = () => false) {
  const res = new Map(cs.map((c) => [c, { samples: [], failures: 0, firstError: null }]));
  const fail = (c, e) => {
    const r = res.get(c);
    r.failures++;
    r.firstError ??= String(e && e.message ? e.message : e);
  };
  for (const c of cs) {
    for (let i = 0; i < warmup; i++) await c.run(0).catch((e) => fail(c, e));
    res.get(c).failures = 0; // warm-up failures are not counted (but their message is kept)
  }
  const block = async (c, k) => {
    for (let i = 0; i < k; i++) {
      if (c.before) await c.before();
      const t0 = now();
      try {
        const inside = await c.run(0);
        // The floor rows report the time their C program measured itself (no Node around it).
        res.get(c).samples.push(c.insideTiming ? inside : now() - t0);
      } catch (e) {
        fail(c, e);
      }
    }
  };
  const quick = cs.filter((c) => nFast > n && fast(c));
  const rest = cs.filter((c) => !quick.includes(c));
  const rounds = Math.ceil(n / BLOCK);
  const per = Math.ceil(nFast / rounds / BLOCK); // blocks of each fast contender per round
  let fastDone = 0;
  for (let r = 0, done = 0; r < rounds; r++, done += BLOCK) {
    for (let b = 0; b < per && fastDone < nFast; b++) {
      const k = Math.min(BLOCK, nFast - fastDone);
      for (const c of quick) await block(c, k);
      fastDone += k;
    }
    for (const c of rest) await block(c, Math.min(BLOCK, n - done));
  }
  return new Map([...res].map(([c, r]) => [c, { ...summarize(r.samples), failures: r.failures, firstError: r.firstError, samples: r.samples }]));
}

/** Aggregate CPU times from /proc/stat (clock ticks). */
function cpuTimes() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { idle: f[3] + (f[4] || 0), total: f.slice(0, 8).reduce((a, b) => a + b, 0) };
}

/** CPU seconds of this process and its reaped children (containers, peers) from /proc/self/stat. */
function ownCpuTicks() {
  const st = fs.readFileSync('/proc/self/stat', 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ').map(Number);
  return f[11] + f[12] + f[13] + f[14]; // utime stime cutime cstime (fields 14-17)
}

/**
 * Accounts a section's CPU: all CPUs' busy time against this process tree's own, so a report can
 * say whether something else ran meanwhile. The rest includes kernel threads working for us (network
 * namespace teardown, for one), so it is an upper bound on foreign load.
 */
function cpuAccount() {
  const a = cpuTimes();
  const o = ownCpuTicks();
  const t0 = now();
  return () => {
    const b = cpuTimes();
    const busyTicks = b.total - a.total - (b.idle - a.idle);
    const ownTicks = ownCpuTicks() - o;
    return { wallS: (now() - t0) / 1000, busyCpuS: busyTicks / 100, ownCpuS: ownTicks / 100, otherCpuS: Math.max(0, busyTicks - ownTicks) / 100 };
  };
}

/**
 * Waits until the host is quiet: at most `busyCpus` CPUs' worth of work over a 500 ms window (the
 * kernel tears network namespaces down asynchronously, so thousands of containers leave minutes of
 * kworker time behind them), or `maxMs` passed. Returns what it saw, which goes into the report.
 */
async function settle(maxMs, busyCpus = 0.3) {
  const t0 = now();
  const ncpu = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
  for (;;) {
    const a = cpuTimes();
    await sleep(500);
    const b = cpuTimes();
    const busy = (1 - (b.idle - a.idle) / Math.max(1, b.total - a.total)) * ncpu;
    if (busy <= busyCpus || now() - t0 > maxMs) return { busyCpus: busy, waitedMs: now() - t0, quiet: busy <= busyCpus };
  }
}

/**
 * The event loop's delay over a run: perf_hooks.monitorEventLoopDelay (resolution 1 ms) as asked,
 * plus the longest gap between two ticks of a 1 ms interval timer *including the gap up to the end
 * of the run*: a loop that is starved for the whole run gives the histogram no sample at all.
 */
function loopMonitor() {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  let last = now();
  let longest = 0;
  const iv = setInterval(() => {
    const t = now();
    longest = Math.max(longest, t - last);
    last = t;
  }, 1);
  return () => {
    clearInterval(iv);
    h.disable();
    longest = Math.max(longest, now() - last);
    return { max: h.max / 1e6, p99: h.percentile(99) / 1e6, count: h.count, longestStall: longest };
  };
}

/** `total` runs of `once(slot)` with `concurrency` slots; wall time and failures. */
async function pool(total, concurrency, once) {
  let next = 0;
  let failures = 0;
  let firstError = null;
  const t0 = now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async (_, slot) => {
      while (next < total) {
        next++;
        try {
          await once(slot);
        } catch (e) {
          failures++;
          firstError ??= String(e && e.message ? e.message : e);
        }
      }
    }),
  );
  return { ms: now() - t0, failures, firstError };
}

module.exports = { BLOCK, interleaved, cpuAccount, settle, loopMonitor, pool };
