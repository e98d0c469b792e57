#!/usr/bin/env node
// The nsbox benchmark suite: nsbox beside child_process (the floor) and its peers (bwrap, crun,
// runc, systemd-nspawn), all measured in the same run, with warm-ups, p50/p90/p99 and ratios.
// Absolute times depend on the machine; the ratios from one run are what hold.
//
//   node bench/index.js            full run (3–5 min on a 2-core host; must stay under 15)
//   node bench/index.js --quick    smoke run (under a minute; must stay under 2)
//
// Options (each overrides the full/quick default):
//   --n N                 round trips per peer (bwrap, crun, runc, nspawn), sequential (200; quick 30)
//   --n-fast N            round trips of nsbox, child_process and the kernel floor (1000; quick 30)
//   --warmup N            warm-up round trips per contender (20; quick 5)
//   --total N             containers per throughput run (2000; quick 160)
//   --concurrency N       throughput concurrency (16)
//   --rounds N            throughput chunks per contender, contenders taking turns (4; quick 2)
//   --starts N            machine starts for start→first exec (30; quick 5)
//   --exec-n N            exec round trips into a running machine (200; quick 30)
//   --idle 0,100,500      idle machine counts for the growth test (quick 0,10,50)
//   --mem-machines N      idle machines the memory figure is taken from (200; quick 20; 0 = skip)
//   --mounts 1,10,100     bind-mount counts for the growth test
//   --growth-n N          round trips per growth level (200; quick 30)
//   --boots N             systemd boots (to ready, plus stop) per contender, nsbox and nspawn (5; quick 1)
//   --sections a,b        any of roundtrip,throughput,machine,systemd,growth (default all)
//   --peers a,b           any of child_process,nsbox,nsbox_host,nsbox_pool,nsbox_pool_ready,child_process_ignore,nsbox_ignore,floor,
//                         bwrap,crun,runc,nspawn (default: all)
//   --out FILE            JSON output (default bench/results/bench-<date>.json; a .md is written beside it)
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const cp = require('node:child_process');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { setTimeout: sleep } = require('node:timers/promises');

const { summarize, f1, f2, fx, ratio, table, now } = require('./lib/stats');
const { busyboxRootfs, mountsRootfs, signature, benchDir } = require('./lib/rootfs');
const { contenders, spawnWait, preflight, which, hybridUnifiedMounted, V2_UNIFIED_HYBRID } = require('./lib/peers');
const { Fleet, meminfo, pssOf, machinePids } = require('./lib/machines');

// ---------------------------------------------------------------------------------------------
// Options

const argv = process.argv.slice(2);
const has = (f) => argv.includes(f);
const val = (f) => {
  const i = argv.indexOf(f);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${f} needs a value`);
  return v;
};
const num = (f, d) => {
  const v = val(f);
  if (v === undefined) return d;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${f}: not a whole number: ${v}`);
  return n;
};
const list = (f, d) => {
  const v = val(f);
  return v === undefined ? d : v.split(',').map((s) => s.trim()).filter(Boolean);
};
const KNOWN = ['--quick', '--help', '-h', '--n', '--n-fast', '--warmup', '--total', '--concurrency', '--rounds', '--starts', '--exec-n', '--idle', '--mem-machines', '--mounts', '--growth-n', '--boots', '--sections', '--peers', '--out'];
for (let i = 0; i < argv.length; i++) {
  if (!argv[i].startsWith('-')) continue;
  if (!KNOWN.includes(argv[i])) {
    console.error(`unknown option ${argv[i]} (see --help)`);
    process.exit(2);
  }
}
if (has('--help') || has('-h')) {
  const src = fs.readFileSync(__filename, 'utf8').split('\n');
  console.log(src.slice(1, src.findIndex((l) => l.startsWith("'use strict'"))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}
const quick = has('--quick');
const O = {
  quick,
  n: num('--n', quick ? 30 : 200),
  // nsbox, child_process and the kernel floor take 1 to 3 ms a round trip: more of them makes the
  // headline ratio's p50s tighter (about ±3% each at 200 on this 2-CPU host, ±1.5% at 1000).
  nFast: num('--n-fast', quick ? 30 : 1000),
  warmup: num('--warmup', quick ? 5 : 20),
  total: num('--total', quick ? 160 : 2000),
  concurrency: num('--concurrency', 16),
  rounds: num('--rounds', quick ? 2 : 4),
  starts: num('--starts', quick ? 5 : 30),
  execN: num('--exec-n', quick ? 30 : 200),
  idle: list('--idle', quick ? ['0', '10', '50'] : ['0', '100', '500']).map(Number),
  memMachines: num('--mem-machines', quick ? 20 : 200),
  mounts: list('--mounts', ['1', '10', '100']).map(Number),
  growthN: num('--growth-n', quick ? 30 : 200),
  boots: num('--boots', quick ? 1 : 5),
  sections: list('--sections', ['roundtrip', 'throughput', 'machine', 'systemd', 'growth']),
  peers: list('--peers', undefined),
  out: val('--out'),
};
if (!O.idle.includes(0)) O.idle.unshift(0);
O.idle.sort((a, b) => a - b);

const log = (...a) => console.error('[bench]', ...a);
const BLOCK = 10; // round-robin block: contenders take turns in blocks of 10, so drift hits all alike

// ---------------------------------------------------------------------------------------------
// Measurement primitives

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
async function settle(maxMs = O.quick ? 5000 : 60000, busyCpus = 0.3) {
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

// ---------------------------------------------------------------------------------------------
// Cleanup on every path

const cleanups = [];
let cleaning = null;
function cleanupAll() {
  cleaning ??= (async () => {
    const notes = [];
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        const r = await fn();
        if (Array.isArray(r) && r.length) notes.push(...r);
      } catch (e) {
        notes.push(`cleanup failed: ${e.message}`);
      }
    }
    return notes;
  })();
  return cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    log(`${sig}: cleaning up (machines, cgroups) before exiting`);
    cleanupAll().finally(() => process.exit(128 + os.constants.signals[sig]));
  });
}

// ---------------------------------------------------------------------------------------------
// Host facts

async function hostInfo(nsbox) {
  const cpu = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  let probe = null;
  try {
    probe = await nsbox.probe();
  } catch {
    /* older build */
  }
  const git = (args) => {
    try {
      return cp.execFileSync('git', args, { cwd: path.join(benchDir, '..'), stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    } catch {
      return null;
    }
  };
  const version = (bin, args = ['--version']) => {
    const exe = which(bin);
    if (!exe) return null;
    try {
      return cp.execFileSync(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString().split('\n')[0].trim();
    } catch {
      return null;
    }
  };
  const mtime = (rel) => {
    try {
      return fs.statSync(path.join(benchDir, '..', rel)).mtime.toISOString();
    } catch {
      return null;
    }
  };
  return {
    date: new Date().toISOString(),
    build: { addon: mtime('build/Release/nsbox.node'), dist: mtime('dist/index.js'), forkClone: !!process.env.NSBOX_FORK_CLONE },
    nproc: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    cpuModel: cpu ? cpu[1].trim() : os.cpus()[0]?.model,
    kernel: `${os.release()} (${os.version()})`,
    node: process.version,
    memTotalMiB: Math.round(os.totalmem() / 1048576),
    loadavg: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    cgroup: probe ? `${probe.cgroup.mode} (v2 at ${probe.cgroup.mountPoint})` : null,
    commit: git(['rev-parse', '--short', 'HEAD']),
    dirty: git(['status', '--porcelain', '--untracked-files=no']) ? 'yes (uncommitted changes in the tree)' : 'no',
    peers: {
      bwrap: version('bwrap'),
      crun: version('crun'),
      runc: version('runc'),
      'systemd-nspawn': version('systemd-nspawn'),
      nsenter: version('nsenter', ['-V']),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Sections

/** The round trip's contenders that take a few ms or less: nsbox, child_process and the kernel floor. */
const isFast = (c) => /^(nsbox|child_process|floor_)/.test(c.id);

async function sectionRoundtrip(cs, R) {
  log(`round trip: ${cs.map((c) => c.id).join(', ')}; n=${O.nFast} for nsbox, child_process and the kernel floor, n=${O.n} for the other peers (warm-up ${O.warmup}), interleaved in blocks of ${BLOCK}`);
  const res = await interleaved(cs, O.n, O.warmup, O.nFast, isFast);
  R.roundtrip = cs.map((c) => ({ id: c.id, label: c.label, command: c.command, ...res.get(c) }));
  const get = (id) => R.roundtrip.find((r) => r.id === id);
  const floor = get('child_process');
  const nb = get('nsbox');
  const rows = R.roundtrip.map((r) => [
    r.label,
    r.n,
    f2(r.p50),
    f2(r.p90),
    f2(r.p99),
    fx(ratio(r.p50, floor?.p50)),
    r.id === 'nsbox' || r.id.startsWith('child_process') || r.reference ? '—' : fx(ratio(r.p50, nb?.p50)),
    r.failures ? `${r.failures} (${r.firstError})` : '0',
  ]);
  return table(['runtime', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'p50 ÷ child_process p50', 'p50 ÷ nsbox run() p50', 'failures'], rows);
}

async function sectionThroughput(cs, R) {
  // Each contender's `total` containers run in `rounds` chunks, and the contenders take turns chunk
  // by chunk (waiting for the host to settle before each), so load that comes and goes on the host
  // is spread over all of them instead of hitting one.
  const rounds = Math.max(1, Math.min(O.rounds, O.total));
  const st = new Map();
  for (const c of cs) {
    log(`throughput: ${c.id}: warm-up (${Math.min(O.total, 2 * O.concurrency)} containers)`);
    await pool(Math.min(O.total, 2 * O.concurrency), O.concurrency, (slot) => c.run(slot));
    st.set(c, { ms: 0, done: 0, failures: 0, firstError: null, eldMax: 0, eldP99: 0, eldCount: 0, longest: 0, settles: [] });
  }
  for (let r = 0; r < rounds; r++) {
    const chunk = Math.floor(O.total / rounds) + (r < O.total % rounds ? 1 : 0);
    for (const c of cs) {
      const s = st.get(c);
      const q = await settle(O.quick ? 3000 : 15000);
      s.settles.push(q);
      log(`throughput: ${c.id}: round ${r + 1}/${rounds}, ${chunk} containers at concurrency ${O.concurrency} (host busy ${q.busyCpus.toFixed(2)} CPUs after ${f1(q.waitedMs / 1000)} s of settling)`);
      // A fresh histogram per round (one re-enabled after a pause would record the pause itself);
      // the rounds combine as the worst max and the worst p99.
      const stop = loopMonitor();
      const res = await pool(chunk, O.concurrency, (slot) => c.run(slot));
      const loop = stop();
      if (loop.count) {
        s.eldMax = Math.max(s.eldMax, loop.max);
        s.eldP99 = Math.max(s.eldP99, loop.p99);
        s.eldCount += loop.count;
      }
      s.ms += res.ms;
      s.done += chunk;
      s.failures += res.failures;
      s.firstError ??= res.firstError;
      s.longest = Math.max(s.longest, loop.longestStall);
    }
  }
  R.throughput = cs.map((c) => {
    const s = st.get(c);
    return {
      id: c.id,
      label: c.label,
      total: s.done,
      concurrency: O.concurrency,
      rounds,
      ms: s.ms,
      perSecond: ((s.done - s.failures) / s.ms) * 1000,
      failures: s.failures,
      firstError: s.firstError,
      loopDelayMaxMs: s.eldMax,
      loopDelayP99Ms: s.eldP99,
      loopDelaySamples: s.eldCount,
      loopLongestStallMs: s.longest,
      settleBusyCpusMax: Math.max(...s.settles.map((q) => q.busyCpus)),
    };
  });
  const floor = R.throughput.find((r) => r.id === 'child_process');
  const nb = R.throughput.find((r) => r.id === 'nsbox');
  const rows = R.throughput.map((r) => [
    r.label,
    r.total,
    r.concurrency,
    f2(r.ms / 1000),
    f1(r.perSecond),
    fx(ratio(r.perSecond, floor?.perSecond)),
    r.id === 'nsbox' || r.id.startsWith('child_process') ? '—' : fx(ratio(nb?.perSecond, r.perSecond)),
    r.loopDelaySamples ? f2(r.loopDelayMaxMs) : 'no sample',
    r.loopDelaySamples ? f2(r.loopDelayP99Ms) : 'no sample',
    r.loopDelaySamples,
    f2(r.loopLongestStallMs),
    r.failures ? `${r.failures} (${r.firstError})` : '0',
  ]);
  return table(
    ['runtime', 'containers', 'concurrency', 'wall s (sum of rounds)', 'containers/s', '÷ child_process', 'nsbox run() ÷ this', 'loop delay max ms', 'loop delay p99 ms (worst round)', 'delay samples', 'longest stall ms', 'failures'],
    rows,
  );
}

async function sectionMachine(nsbox, rootfs, R) {
  const fleet = new Fleet(nsbox, rootfs);
  cleanups.push(() => fleet.cleanup().then((left) => left.map((n) => `machine state left in ${fleet.stateDir}: ${n}`)));
  const starts = { total: [], start: [], firstExec: [], stopDestroy: [] };
  const warm = Math.min(3, O.starts);
  log(`machine: ${O.starts} starts to first exec result (after ${warm} warm-up starts), stop+destroy each`);
  for (let i = 0; i < warm + O.starts; i++) {
    const t0 = now();
    const m = await fleet.start();
    const t1 = now();
    const r = await m.run(['/bin/true']);
    const t2 = now();
    if (r.exitCode !== 0) throw new Error(`first exec in ${m.name}: exit ${r.exitCode ?? r.signal}`);
    await fleet.remove(m);
    const t3 = now();
    if (i < warm) continue;
    starts.total.push(t2 - t0);
    starts.start.push(t1 - t0);
    starts.firstExec.push(t2 - t1);
    starts.stopDestroy.push(t3 - t2);
  }
  R.machineStart = Object.fromEntries(Object.entries(starts).map(([k, v]) => [k, summarize(v)]));

  log(`machine: exec round trip into a running machine vs nsenter, n=${O.execN}`);
  const m = await fleet.start();
  const nsenter = which('nsenter');
  const cs = [
    {
      id: 'exec',
      label: "m.run(['/bin/true'])",
      run: async () => {
        const r = await m.run(['/bin/true']);
        if (r.exitCode !== 0) throw new Error(`exec exit ${r.exitCode ?? r.signal}`);
      },
    },
  ];
  if (nsenter) cs.push({ id: 'nsenter', label: `nsenter -t ${m.pid} -a /bin/true (child_process, pipes, 'close')`, run: () => spawnWait([nsenter, '-t', String(m.pid), '-a', '/bin/true'], { stdio: 'pipe', event: 'close' }) });
  cs.push({
    id: 'exec_ignore',
    label: "m.exec(['/bin/true'], { stdio: 'ignore' }).wait()",
    run: async () => {
      const r = await m.exec(['/bin/true'], { stdio: 'ignore' }).wait();
      if (r.exitCode !== 0) throw new Error(`exec exit ${r.exitCode ?? r.signal}`);
    },
  });
  if (nsenter) cs.push({ id: 'nsenter_ignore', label: "nsenter -t PID -a /bin/true (stdio 'ignore', 'exit')", run: () => spawnWait([nsenter, '-t', String(m.pid), '-a', '/bin/true']) });
  const res = await interleaved(cs, O.execN, O.warmup);
  R.machineExec = cs.map((c) => ({ id: c.id, label: c.label, ...res.get(c) }));
  await fleet.remove(m);
  await fleet.cleanup();
  cleanups.pop();

  const ms = R.machineStart;
  const ex = (id) => R.machineExec.find((r) => r.id === id);
  const rows = [
    ['Machine.start → first m.run([\'/bin/true\']) result', ms.total.n, f2(ms.total.p50), f2(ms.total.p90), f2(ms.total.p99), ''],
    ['  of which Machine.start({ ephemeral: true }) resolves', ms.start.n, f2(ms.start.p50), f2(ms.start.p90), f2(ms.start.p99), ''],
    ['  of which the first m.run() round trip', ms.firstExec.n, f2(ms.firstExec.p50), f2(ms.firstExec.p90), f2(ms.firstExec.p99), ''],
    ['m.stop() + m.destroy() (builtin init, halt signal)', ms.stopDestroy.n, f2(ms.stopDestroy.p50), f2(ms.stopDestroy.p90), f2(ms.stopDestroy.p99), ''],
    ...R.machineExec.map((r) => {
      const base = r.id.endsWith('_ignore') ? ex('nsenter_ignore') : ex('nsenter');
      return [
        r.label + (r.failures ? ` — ${r.failures} failures (${r.firstError})` : ''),
        r.n,
        f2(r.p50),
        f2(r.p90),
        f2(r.p99),
        r.id.startsWith('exec') ? `${fx(ratio(r.p50, base?.p50))} of nsenter` : '',
      ];
    }),
  ];
  return table(['what', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'ratio'], rows);
}

async function sectionSystemd(nsbox, R) {
  const { debianRootfs, NspawnBoot, NsboxBoot } = require('./lib/systemd');
  const { rootfs: deb, reason } = debianRootfs();
  const skip = reason ?? (!which('systemd-nspawn') ? 'systemd-nspawn not installed (bench/setup.sh installs it)' : !which('nsenter') ? 'nsenter not installed' : null);
  if (skip) {
    R.systemd = { skip };
    log(`systemd: skipped: ${skip}`);
    return `_Skipped: ${skip}._`;
  }
  const a = new NsboxBoot(nsbox, deb);
  const b = new NspawnBoot(deb, `nsb-${process.pid}`);
  cleanups.push(async () => [...(await a.cleanup()), ...(await b.cleanup())]);
  const res = { nsbox: [], nspawn: [] };
  const warm = 1;
  log(`systemd: ${O.boots} boots to ready plus stop each, nsbox and systemd-nspawn taking turns (after ${warm} warm-up each), rootfs ${deb}`);
  for (let i = 0; i < warm + O.boots; i++) {
    // Alternate who goes first, so a drift of the host affects both alike.
    const order = i % 2 ? [['nspawn', b], ['nsbox', a]] : [['nsbox', a], ['nspawn', b]];
    for (const [k, c] of order) {
      const r = await c.once(now);
      if (i >= warm) res[k].push(r);
    }
  }
  await a.cleanup();
  const notesLeft = await b.cleanup();
  cleanups.pop();
  const sum = (k) => ({
    ready: summarize(res[k].map((r) => r.readyMs)),
    stop: summarize(res[k].map((r) => r.stopMs)),
    total: summarize(res[k].map((r) => r.readyMs + r.stopMs)),
    states: [...new Set(res[k].map((r) => r.state))].join(', '),
  });
  R.systemd = { rootfs: deb, nsbox: sum('nsbox'), nspawn: sum('nspawn'), commands: { nsbox: a.command(), nspawn: b.command() }, left: notesLeft };
  const rows = ['nsbox', 'nspawn'].map((k) => {
    const x = R.systemd[k];
    return [
      k === 'nsbox' ? 'nsbox Machine.start (systemd) → ready, then stop()' : 'systemd-nspawn -b → ready, then SIGRTMIN+3',
      x.total.n,
      f2(x.ready.p50),
      f2(x.stop.p50),
      f2(x.total.p50),
      f2(x.total.p90),
      fx(ratio(x.total.p50, R.systemd.nspawn.total.p50)),
      x.states,
    ];
  });
  return (
    table(['what', 'n', 'boot to ready p50 ms', 'stop p50 ms', 'ready + stop p50 ms', 'ready + stop p90 ms', '÷ systemd-nspawn', 'state reached'], rows) +
    `\n\nCommands (rootfs ${deb}, writes to a throw-away overlay in both, lo only in both):\n\n- nsbox: \`${a.command()}\`\n- systemd-nspawn: \`${b.command()}\`\n\n"Ready" is \`systemctl is-system-running --wait\` answering \`running\` or \`degraded\` inside (nsbox's \`waitReady\` makes the same check). The two take turns, first one then the other.` +
    (notesLeft.length ? `\n\n**Left behind:** ${notesLeft.join('; ')}` : '')
  );
}

async function sectionGrowth(nsbox, rootfs, R) {
  const out = [];
  // --- idle machines
  const fleet = new Fleet(nsbox, rootfs);
  cleanups.push(() => fleet.cleanup().then((left) => left.map((n) => `machine state left in ${fleet.stateDir}: ${n}`)));
  const floor = { id: 'child_process', run: () => spawnWait(['/bin/true'], { stdio: 'pipe', event: 'close' }) };
  const nb = {
    id: 'nsbox',
    run: async () => {
      const r = await nsbox.run({ rootfs, command: ['/bin/true'] });
      if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode ?? r.signal}`);
    },
  };
  R.growthIdle = [];
  R.memory = null;
  let running = [];
  const setLevel = async (level) => {
    if (running.length > level) {
      const drop = running.splice(level);
      await fleet.removeMany(drop);
      return null;
    }
    const { machines, ms } = await fleet.startMany(level - running.length);
    running.push(...machines);
    return ms;
  };
  const mem = O.memMachines;
  // Levels are visited up and back down (0, 100, 500, 100, 0): each level but the top is measured
  // twice, n/2 round trips per visit, and the samples are pooled, so a linear drift of the host over
  // the section cancels out instead of looking like growth.
  const levels = [...new Set(O.idle)].sort((x, y) => x - y);
  const visits = [...levels, ...levels.slice(0, -1).reverse()];
  const per = new Map(levels.map((l) => [l, { nsbox: [], child: [], visits: [], startMs: null, rss: 0 }]));
  for (const level of visits) {
    if (level > 0 && mem > 0 && !R.memory) {
      // The memory figure: host MemAvailable before and after starting `mem` idle machines, settled.
      log(`growth: host memory of ${mem} idle builtin-init machines`);
      await setLevel(0);
      await settle();
      const a = meminfo();
      const { machines, ms } = await fleet.startMany(mem);
      running.push(...machines);
      await sleep(1000);
      const b = meminfo();
      let pss = 0;
      let rss = 0;
      let procs = 0;
      let cgMem = 0;
      let cgMemKnown = 0;
      for (const m of running) {
        const info = await m.info();
        for (const pid of machinePids(info)) {
          const p = pssOf(pid);
          if (p) {
            pss += p.pss;
            rss += p.rss;
            procs++;
          }
        }
        const st = await m.stats();
        if (st.memoryCurrentBytes !== undefined) {
          cgMem += st.memoryCurrentBytes;
          cgMemKnown++;
        }
      }
      const d = (k) => (a[k] !== undefined && b[k] !== undefined ? b[k] - a[k] : NaN);
      R.memory = {
        machines: mem,
        startMs: ms,
        memAvailableDropKiB: -d('MemAvailable'),
        memFreeDropKiB: -d('MemFree'),
        slabKiB: d('Slab'),
        sUnreclaimKiB: d('SUnreclaim'),
        kernelStackKiB: d('KernelStack'),
        pageTablesKiB: d('PageTables'),
        shmemKiB: d('Shmem'),
        pssKiB: pss,
        rssKiB: rss,
        processes: procs,
        cgroupMemoryBytes: cgMemKnown ? cgMem : null,
        cgroupMemoryMachines: cgMemKnown,
      };
      R.memory.attributableKiB = pss + R.memory.slabKiB + R.memory.kernelStackKiB + R.memory.pageTablesKiB + R.memory.shmemKiB;
    }
    const startMs = await setLevel(level);
    await settle();
    const top = level === levels[levels.length - 1];
    const n = top ? O.growthN : Math.ceil(O.growthN / 2);
    log(`growth: app round trip with ${running.length} idle machines (n=${n})`);
    const res = await interleaved([nb, floor], n, Math.min(O.warmup, 10));
    const L = per.get(level);
    L.nsbox.push(...res.get(nb).samples);
    L.child.push(...res.get(floor).samples);
    L.visits.push(res.get(nb).p50);
    if (startMs !== null && L.startMs === null && level > 0) L.startMs = startMs;
    L.rss = Math.max(L.rss, process.memoryUsage().rss / 1048576);
    L.failures = (L.failures || 0) + res.get(nb).failures + res.get(floor).failures;
  }
  await setLevel(0);
  await fleet.cleanup();
  cleanups.pop();
  R.growthIdle = levels.map((l) => {
    const L = per.get(l);
    return { idle: l, nsbox: summarize(L.nsbox), childProcess: summarize(L.child), visitP50s: L.visits, startMs: L.startMs, nodeRssMiB: L.rss, failures: L.failures };
  });
  const g0 = R.growthIdle[0];
  R.growthIdleBaseline = { nsboxP50: g0.nsbox.p50, childProcessP50: g0.childProcess.p50 };
  out.push(
    `**App round trip with idle builtin-init machines running** (nsbox \`run()\` on the busybox rootfs, child_process interleaved with it as a control for host-wide noise; levels visited ${visits.join(' → ')}, samples pooled per level)\n`,
    table(
      ['idle machines', 'n', 'nsbox p50 ms', 'p90 ms', 'p99 ms', 'p50 ÷ with 0', 'child_process p50 ms', 'child_process ÷ with 0', 'nsbox p50 per visit ms', 'starting them took s', 'Node RSS MiB'],
      R.growthIdle.map((g) => [
        g.idle,
        g.nsbox.n,
        f2(g.nsbox.p50),
        f2(g.nsbox.p90),
        f2(g.nsbox.p99),
        fx(ratio(g.nsbox.p50, g0.nsbox.p50)),
        f2(g.childProcess.p50),
        fx(ratio(g.childProcess.p50, g0.childProcess.p50)),
        g.visitP50s.map(f2).join(', '),
        g.startMs === null ? '—' : f2(g.startMs / 1000),
        f1(g.nodeRssMiB),
      ]),
    ),
  );

  if (R.memory) {
    const M = R.memory;
    const per = (kib) => `${f1(kib / M.machines)} KiB (${f2(kib / M.machines / 1024)} MiB)`;
    out.push(
      `\n**Host memory per idle builtin-init machine** (${M.machines} ephemeral machines, started in ${f2(M.startMs / 1000)} s; /proc/meminfo read 1 s after the last start and before the first, nothing else started in between)\n`,
      table(
        ['method', `total for ${M.machines}`, 'per machine'],
        [
          ['MemAvailable drop (host-wide: user + kernel memory, incl. namespaces, mounts, overlay, tmpfs)', `${(M.memAvailableDropKiB / 1024).toFixed(1)} MiB`, per(M.memAvailableDropKiB)],
          ['  Slab delta (of which SUnreclaim)', `${(M.slabKiB / 1024).toFixed(1)} MiB (${(M.sUnreclaimKiB / 1024).toFixed(1)} MiB)`, per(M.slabKiB)],
          ['  KernelStack + PageTables delta', `${((M.kernelStackKiB + M.pageTablesKiB) / 1024).toFixed(1)} MiB`, per(M.kernelStackKiB + M.pageTablesKiB)],
          ['  Shmem delta (tmpfs)', `${(M.shmemKiB / 1024).toFixed(1)} MiB`, per(M.shmemKiB)],
          [`Sum of PSS of the machines' processes (${M.processes}, /proc/PID/smaps_rollup)`, `${(M.pssKiB / 1024).toFixed(1)} MiB`, per(M.pssKiB)],
          ['Attributable sum: PSS + Slab + KernelStack + PageTables + Shmem deltas', `${(M.attributableKiB / 1024).toFixed(1)} MiB`, per(M.attributableKiB)],
          [
            'cgroup memory.current of the machines',
            M.cgroupMemoryBytes === null ? 'not available (no memory controller in the v2 hierarchy on this host)' : `${(M.cgroupMemoryBytes / 1048576).toFixed(1)} MiB`,
            M.cgroupMemoryBytes === null ? 'n/a' : per(M.cgroupMemoryBytes / 1024),
          ],
        ],
      ),
    );
  }

  // --- bind mounts
  const maxMounts = Math.max(0, ...O.mounts);
  if (O.mounts.length) {
    const mr = mountsRootfs(rootfs, Math.max(1, maxMounts));
    const before = signature(mr.rootfs);
    const levels = [0, ...O.mounts.filter((k) => k > 0)];
    const cs = levels.map((k) => {
      const mounts = Array.from({ length: k }, (_, i) => ({ type: 'bind', source: mr.source, target: `/m/${i}`, readonly: true }));
      return {
        id: `mounts-${k}`,
        k,
        run: async () => {
          const r = await nsbox.run({ rootfs: mr.rootfs, command: ['/bin/true'], mounts });
          if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode ?? r.signal}`);
        },
      };
    });
    log(`growth: app round trip with ${levels.join(', ')} read-only bind mounts (n=${O.growthN}, interleaved)`);
    const res = await interleaved(cs, O.growthN, Math.min(O.warmup, 10));
    R.growthMounts = cs.map((c) => ({ mounts: c.k, ...res.get(c) }));
    const unchanged = signature(mr.rootfs) === before;
    R.growthMountsRootfsUnchanged = unchanged;
    const m0 = R.growthMounts[0];
    out.push(
      `\n**App round trip with read-only bind mounts** (\`mounts: [{ type: 'bind', source, target: '/m/i', readonly: true }]\` on a copy of the rootfs whose /m/0…/m/${maxMounts - 1} exist; rootfs tree ${unchanged ? 'unchanged afterwards' : 'CHANGED by the runs'})\n`,
      table(
        ['bind mounts', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'p50 ÷ with 0', 'failures'],
        R.growthMounts.map((g) => [g.mounts, g.n, f2(g.p50), f2(g.p90), f2(g.p99), fx(ratio(g.p50, m0.p50)), g.failures ? `${g.failures} (${g.firstError})` : '0']),
      ),
    );
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Targets (from the issue), evaluated on this run's numbers

function targets(R) {
  const T = [];
  // Three decimals here: a verdict must not hinge on a rounding the reader cannot see.
  const fx = (x) => (Number.isNaN(x) || x === undefined ? 'n/a' : `${x.toFixed(3)}×`);
  const rt = (id) => R.roundtrip?.find((r) => r.id === id && !Number.isNaN(r.p50));
  const tp = (id) => R.throughput?.find((r) => r.id === id);
  const add = (target, measured, met) => T.push({ target, measured, met: met === 'info' ? '—' : met === null ? 'not measured' : met ? 'met' : 'missed' });
  const nb = rt('nsbox');
  const floor = rt('child_process');
  if (nb && floor) {
    const r = nb.p50 / floor.p50;
    add('app round trip p50 ≤ 1.0 × child_process p50', `${fx(r)} (${f2(nb.p50)} vs ${f2(floor.p50)} ms)`, r <= 1.0);
  } else add('app round trip p50 ≤ 1.0 × child_process p50', 'n/a', null);
  const host = rt('nsbox_host');
  if (host && floor) {
    add("(informative) run() with network 'host' round trip p50 ≤ 1.0 × child_process p50", `${fx(host.p50 / floor.p50)} (${f2(host.p50)} vs ${f2(floor.p50)} ms)`, host.p50 / floor.p50 <= 1.0);
  }
  const pool = rt('nsbox_pool');
  if (pool && floor) {
    add('(warm pool, informative) pool.run() round trip p50 ≤ 1.0 × child_process p50', `${fx(pool.p50 / floor.p50)} (${f2(pool.p50)} vs ${f2(floor.p50)} ms)`, pool.p50 / floor.p50 <= 1.0);
  }
  const poolReady = rt('nsbox_pool_ready');
  if (poolReady && floor) {
    add('(warm pool, informative) pool.run() from a full pool, p50 ≤ 1.0 × child_process p50', `${fx(poolReady.p50 / floor.p50)} (${f2(poolReady.p50)} vs ${f2(floor.p50)} ms)`, poolReady.p50 / floor.p50 <= 1.0);
  }
  // The kernel's own part (bench/floor.c, timed inside a C program): how far above it each is.
  const kIso = rt('floor_isolated');
  const kPlain = rt('floor_plain');
  const kDef = rt('floor_defaults');
  if (nb && kIso) {
    add('(informative) run() round trip p50 above the isolated kernel floor', `+${f2(nb.p50 - kIso.p50)} ms (${f2(nb.p50)} vs ${f2(kIso.p50)} ms, ${fx(nb.p50 / kIso.p50)})`, 'info');
  }
  if (nb && kDef) {
    add("(informative) run() round trip p50 above the kernel floor with nsbox's defaults (its Node, cgroup, pipes and template share)", `+${f2(nb.p50 - kDef.p50)} ms (${f2(nb.p50)} vs ${f2(kDef.p50)} ms, ${fx(nb.p50 / kDef.p50)})`, 'info');
  }
  if (floor && kPlain) {
    add('(informative) child_process round trip p50 above the plain kernel floor', `+${f2(floor.p50 - kPlain.p50)} ms (${f2(floor.p50)} vs ${f2(kPlain.p50)} ms, ${fx(floor.p50 / kPlain.p50)})`, 'info');
  }
  const need = (own, k) =>
    kIso ? `; ${k}× needs run() ≤ ${f2(own / k)} ms, the isolated kernel floor is ${f2(kIso.p50)} ms${kDef ? `, with nsbox's defaults ${f2(kDef.p50)} ms` : ''}` : '';
  const faster = (id, k, name) => {
    const p = rt(id);
    if (!nb || !p) return add(`≥ ${k}× faster than ${name}`, 'peer not measured', null);
    const r = p.p50 / nb.p50;
    if (id === 'crun' && rt('crun_wrapper') && rt('child_process_ignore')) {
      // On this hybrid host crun runs behind unshare+sh+umount. Judge on crun's own cost (the
      // wrapper's round trip subtracted, the floor's spawn added back): the stricter reading.
      const own = p.p50 - rt('crun_wrapper').p50 + rt('child_process_ignore').p50;
      const r2 = own / nb.p50;
      return add(`≥ ${k}× faster than ${name}`, `${fx(r2)} with the unshare/umount wrapper's cost subtracted (${f2(own)} vs ${f2(nb.p50)} ms); ${fx(r)} as measured with it${need(own, k)}`, r2 >= k);
    }
    add(`≥ ${k}× faster than ${name}`, `${fx(r)} (${f2(p.p50)} vs ${f2(nb.p50)} ms)${need(p.p50, k)}`, r >= k);
  };
  faster('bwrap', 3, 'bwrap');
  faster('crun', 8, 'crun');
  faster('runc', 20, 'runc');
  const tn = tp('nsbox');
  const tf = tp('child_process');
  if (tn && tf) {
    const r = tn.perSecond / tf.perSecond;
    add(`throughput at concurrency ${tn.concurrency} ≥ 1.0 × child_process`, `${fx(r)} (${f1(tn.perSecond)} vs ${f1(tf.perSecond)} /s)`, r >= 1.0);
    const worst = Math.max(tn.loopDelayMaxMs, tn.loopLongestStallMs);
    add(
      'max event-loop delay during the nsbox throughput run ≤ 10 ms',
      `${f2(tn.loopDelayMaxMs)} ms histogram max (${tn.loopDelaySamples} samples), ${f2(tn.loopLongestStallMs)} ms longest stall; child_process run: ${f2(tf.loopDelayMaxMs)} / ${f2(tf.loopLongestStallMs)} ms`,
      worst <= 10,
    );
    const thost = tp('nsbox_host');
    if (thost) {
      const w = Math.max(thost.loopDelayMaxMs, thost.loopLongestStallMs);
      add(
        "(informative) run() with network 'host': throughput ≥ 1.0 × child_process, loop delay ≤ 10 ms",
        `${fx(thost.perSecond / tf.perSecond)} (${f1(thost.perSecond)} /s); loop delay ${f2(thost.loopDelayMaxMs)} ms max, ${f2(thost.loopLongestStallMs)} ms longest stall`,
        thost.perSecond / tf.perSecond >= 1.0 && w <= 10,
      );
    }
    const tpool = tp('nsbox_pool');
    if (tpool) {
      const w = Math.max(tpool.loopDelayMaxMs, tpool.loopLongestStallMs);
      add(
        '(warm pool, informative) pool.run() throughput ≥ 1.0 × child_process, loop delay ≤ 10 ms',
        `${fx(tpool.perSecond / tf.perSecond)} (${f1(tpool.perSecond)} /s); loop delay ${f2(tpool.loopDelayMaxMs)} ms max, ${f2(tpool.loopLongestStallMs)} ms longest stall`,
        tpool.perSecond / tf.perSecond >= 1.0 && w <= 10,
      );
    }
  } else {
    add('throughput ≥ 1.0 × child_process', 'n/a', null);
    add('max event-loop delay ≤ 10 ms', 'n/a', null);
  }
  const ex = R.machineExec?.find((r) => r.id === 'exec');
  const ns = R.machineExec?.find((r) => r.id === 'nsenter');
  if (ex && ns) add('exec into a running machine p50 ≤ 0.5 × nsenter', `${fx(ex.p50 / ns.p50)} (${f2(ex.p50)} vs ${f2(ns.p50)} ms)`, ex.p50 / ns.p50 <= 0.5);
  else add('exec into a running machine p50 ≤ 0.5 × nsenter', 'n/a', null);
  if (R.machineStart) add('builtin-init machine start → first exec result p50 ≤ 5 ms', `${f2(R.machineStart.total.p50)} ms`, R.machineStart.total.p50 <= 5);
  else add('builtin-init machine start → first exec result p50 ≤ 5 ms', 'n/a', null);
  if (R.growthIdle?.length > 1) {
    const b = R.growthIdleBaseline;
    const gl = R.growthIdle[R.growthIdle.length - 1];
    const r = gl.nsbox.p50 / b.nsboxP50;
    add(
      `app round trip with ${gl.idle} idle machines ≤ 1.1 × with none`,
      `${fx(r)} (${f2(gl.nsbox.p50)} vs ${f2(b.nsboxP50)} ms); child_process control ${fx(gl.childProcess.p50 / b.childProcessP50)}, so ${fx(r / (gl.childProcess.p50 / b.childProcessP50))} relative to the control`,
      r <= 1.1,
    );
  } else add('app round trip with 500 idle machines ≤ 1.1 × with none', 'n/a', null);
  if (R.memory) {
    // Judged on the larger of the two host-wide readings (MemAvailable is noisy on a shared host).
    const perMiB = R.memory.memAvailableDropKiB / R.memory.machines / 1024;
    const attMiB = R.memory.attributableKiB / R.memory.machines / 1024;
    const pssMiB = R.memory.pssKiB / R.memory.machines / 1024;
    add(
      'host memory per idle machine ≤ 1 MiB',
      `${f2(Math.max(perMiB, attMiB))} MiB (larger of: MemAvailable drop ${f2(perMiB)} MiB, PSS + kernel deltas ${f2(attMiB)} MiB; PSS alone ${f2(pssMiB)} MiB) over ${R.memory.machines} machines`,
      Math.max(perMiB, attMiB) <= 1,
    );
  } else add('host memory per idle machine ≤ 1 MiB', 'n/a', null);
  if (R.systemd && !R.systemd.skip) {
    const r = R.systemd.nsbox.total.p50 / R.systemd.nspawn.total.p50;
    add('systemd boot to ready plus stop ≤ 1.0 × systemd-nspawn -b', `${fx(r)} (${f2(R.systemd.nsbox.total.p50)} vs ${f2(R.systemd.nspawn.total.p50)} ms; n=${R.systemd.nsbox.total.n} each)`, r <= 1.0);
  } else add('systemd boot to ready plus stop ≤ 1.0 × systemd-nspawn -b', R.systemd?.skip ? `skipped: ${R.systemd.skip}` : 'n/a', null);
  return T;
}

// ---------------------------------------------------------------------------------------------
// Leftover check

function leftovers(tag, mountLinesBefore) {
  const out = [];
  const nsboxBase = path.join(V2_UNIFIED_HYBRID, 'nsbox');
  for (const base of [nsboxBase, '/sys/fs/cgroup/nsbox']) {
    try {
      // App containers: <pid>.<n>; machines: m-[<hash>-]<name>, our names being nsb<pid>-<i>.
      const mine = new RegExp(`^(${process.pid}\\.\\d+|m-(.*-)?nsb${process.pid}-\\d+)$`);
      for (const n of fs.readdirSync(base)) if (mine.test(n)) out.push(`cgroup ${base}/${n}`);
    } catch {
      /* none */
    }
  }
  for (const d of ['/run/runc', '/run/crun']) {
    try {
      for (const n of fs.readdirSync(d)) if (n.startsWith(tag)) out.push(`${d}/${n}`);
    } catch {
      /* none */
    }
  }
  // runc's per-container cgroups in every hierarchy, and our nspawn slots.
  try {
    for (const h of fs.readdirSync('/sys/fs/cgroup')) {
      const d = path.join('/sys/fs/cgroup', h);
      try {
        for (const n of fs.readdirSync(d)) if (n.startsWith(tag)) out.push(`cgroup ${d}/${n}`);
      } catch {
        /* a file */
      }
    }
  } catch {
    /* no cgroupfs */
  }
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === process.pid) out.push(`child process ${e} (${st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'))}, state ${rest[0]})`);
    } catch {
      /* gone */
    }
  }
  const mountLines = fs.readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').length;
  if (mountLines !== mountLinesBefore) out.push(`mount table has ${mountLines} entries, ${mountLinesBefore} before`);
  return out;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const t0 = now();
  let nsbox;
  try {
    nsbox = require('..');
  } catch (e) {
    console.error(`cannot load nsbox (${e.message}); build it first: npm install (or npm run build)`);
    process.exit(1);
  }
  if (process.getuid() !== 0) console.error('note: nsbox and the peers need root; expect failures');
  const { rootfs, reason } = busyboxRootfs();
  if (!rootfs) {
    console.error(`cannot build the benchmark rootfs: ${reason}`);
    process.exit(1);
  }
  const workDir = path.join(benchDir, '.work');
  fs.mkdirSync(workDir, { recursive: true });
  const rootfsSig = signature(rootfs);
  const mountLinesBefore = fs.readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').length;
  const hybridBefore = hybridUnifiedMounted();
  const tag = `nsb-${process.pid}`;

  const host = await hostInfo(nsbox);
  if (os.loadavg()[0] > 0.5 * host.nproc) {
    console.error(`warning: load average ${os.loadavg()[0].toFixed(2)} on ${host.nproc} CPUs: something else is running; absolute times will be noisy (ratios from the interleaved sections hold better)`);
  }
  const R = { options: O, host };
  const md = [];
  const cmd = `node bench/index.js${argv.length ? ' ' + argv.join(' ') : ''}`;
  md.push(`# nsbox benchmark${O.quick ? ' (quick)' : ''}\n`);
  md.push(`Command: \`${cmd}\` — ${host.date}\n`);
  md.push(
    table(
      ['machine', ''],
      [
        ['CPU', `${host.cpuModel} × ${host.nproc}`],
        ['kernel', host.kernel],
        ['node', host.node],
        ['memory', `${host.memTotalMiB} MiB`],
        ['cgroups', host.cgroup ?? 'n/a'],
        ['load average at start', host.loadavg],
        ['nsbox commit', `${host.commit} (dirty: ${host.dirty})`],
        ['nsbox build', `addon built ${host.build.addon}, dist ${host.build.dist}${host.build.forkClone ? ', NSBOX_FORK_CLONE set' : ''}`],
        ...Object.entries(host.peers).map(([k, v]) => [k, v ?? 'not installed']),
      ],
    ),
  );

  // The contenders and their preflight: a peer that cannot run here is skipped, with the reason.
  let cs = contenders({ nsbox, rootfs, workDir, only: O.peers, poolSize: O.concurrency });
  const notes = [];
  for (const c of cs) {
    if (c.cleanup) cleanups.push(c.cleanup);
    if (c.skip) continue;
    if (c.prepare) c.prepare();
    if (c.argvFor) {
      const pf = preflight(c.argvFor(c.exe, 0));
      if (!pf.ok) c.skip = `does not run here: ${pf.message}`;
    } else {
      try {
        await c.run(0);
      } catch (e) {
        c.skip = `does not run here: ${e.message}`;
      }
    }
    if (c.note && !c.skip) notes.push(`- ${c.label}: ${c.note}`);
  }
  for (const c of cs.filter((c) => c.skip)) {
    notes.push(`- **${c.label} skipped**: ${c.skip}`);
    console.log(`note: ${c.label} skipped: ${c.skip}`);
  }
  cs = cs.filter((c) => !c.skip);
  R.skipped = notes;

  try {
    const load = async (what) => {
      const q = await settle();
      const l = os.loadavg().map((x) => x.toFixed(2)).join(' ');
      (R.settle ??= []).push({ what, ...q, loadavg: l, at: new Date().toISOString() });
      return `\n_Before this section: host CPUs busy ${q.busyCpus.toFixed(2)} of ${host.nproc} (over 500 ms, after waiting ${f1(q.waitedMs / 1000)} s for the host to settle${q.quiet ? '' : ' — it did not'}); load average ${l}_\n`;
    };
    // Run order: 1, 3, 4, then 2. Thousands of containers leave the kernel tearing network
    // namespaces down for a while afterwards; throughput goes last so it cannot slow the others.
    const parts = {};
    const accounted = async (key, fn) => {
      const end = cpuAccount();
      const out = await fn();
      const a = end();
      (R.cpu ??= {})[key] = a;
      return `${out}\n\n_CPU during this section: ${f1(a.busyCpuS)} CPU-s busy in ${f1(a.wallS)} s wall; this process and its children ${f1(a.ownCpuS)} CPU-s; everything else (other processes, and kernel threads, some working for these containers) ${f1(a.otherCpuS)} CPU-s._`;
    };
    if (O.sections.includes('roundtrip')) {
      const p = [`\n## 1. App round trip: \`/bin/true\` on the busybox rootfs, spawn → exit seen in JS, sequential\n`];
      p.push(await load('roundtrip'));
      p.push(await accounted('roundtrip', () => sectionRoundtrip(cs, R)));
      p.push(
        '\nCommands:\n\n' +
          cs.map((c) => `- ${c.label}: \`${c.command}\``).join('\n') +
          '\n\nThe peers are started with `child_process.spawn(…, { stdio: \'ignore\' })` and resolved on `exit`. Contenders take turns in blocks of 10 round trips (after their own warm-up), so drift of the host affects all alike.',
      );
      parts[1] = p;
    }
    if (O.sections.includes('machine')) {
      const p = [`\n## 3. Machines (builtin init, ephemeral, busybox rootfs)\n`];
      p.push(await load('machine'));
      p.push(await accounted('machine', () => sectionMachine(nsbox, rootfs, R)));
      parts[3] = p;
    }
    if (O.sections.includes('systemd')) {
      const p = [`\n## 5. systemd: a Debian boot to ready plus stop, nsbox against systemd-nspawn -b\n`];
      p.push(await load('systemd'));
      p.push(await accounted('systemd', () => sectionSystemd(nsbox, R)));
      parts[5] = p;
    }
    if (O.sections.includes('growth')) {
      const p = [`\n## 4. Growth\n`];
      p.push(await load('growth'));
      p.push(await accounted('growth', () => sectionGrowth(nsbox, rootfs, R)));
      parts[4] = p;
    }
    if (O.sections.includes('throughput')) {
      const p = [`\n## 2. Throughput: ${O.total} containers at concurrency ${O.concurrency} (in ${O.rounds} rounds, contenders taking turns)\n`];
      p.push(await load('throughput'));
      p.push(await accounted('throughput', () => sectionThroughput(cs.filter((c) => !c.reference && !c.sequentialOnly), R)));
      p.push(
        '\nEvent loop: `perf_hooks.monitorEventLoopDelay({ resolution: 1 })` over each measured run (max and p99 of the histogram, which records whole timer intervals: an idle loop shows ≈ 1 ms; "delay samples" is its count). "Longest stall" is the longest gap between ticks of a 1 ms `setInterval` running alongside, including the gap up to the end of the run, which the histogram never records: a loop starved for the whole run has no histogram sample at all. Each contender re-spawns from its exit callback, as a job runner would. Each contender\'s containers run in rounds, the contenders taking turns round by round; before each round the bench waits for the host to settle (the previous round\'s network namespaces are torn down asynchronously by the kernel, work that no row is charged with).',
      );
      parts[2] = p;
    }
    for (const k of [1, 2, 3, 4, 5]) if (parts[k]) md.push(...parts[k]);
    md.push('\n_Sections ran in the order 1, 3, 5, 4, 2: throughput last, so the kernel\'s asynchronous teardown of its thousands of network namespaces cannot slow the others._');
  } finally {
    const notesLeft = await cleanupAll();
    if (notesLeft.length) R.cleanupNotes = notesLeft;
  }

  // Checks: the fixture was not written, the host's cgroup2 mount is intact, nothing is left.
  const checks = [];
  const rootfsUnchanged = signature(rootfs) === rootfsSig;
  checks.push(`- busybox rootfs tree unchanged by the runs: ${rootfsUnchanged ? 'yes' : '**NO**'}`);
  if (hybridBefore) checks.push(`- host mount ${V2_UNIFIED_HYBRID} still mounted after the crun runs: ${hybridUnifiedMounted() ? 'yes' : '**NO**'}`);
  await sleep(200);
  const left = [...leftovers(tag, mountLinesBefore), ...(R.cleanupNotes || [])];
  checks.push(`- left behind (cgroups, runc/crun state, child processes, mounts): ${left.length ? '**' + left.join('; ') + '**' : 'nothing'}`);
  R.checks = { rootfsUnchanged, hostUnifiedMounted: hybridBefore ? hybridUnifiedMounted() : null, leftovers: left };

  const T = targets(R);
  R.targets = T;
  md.push('\n## Targets\n');
  md.push(table(['target', 'measured (this run)', 'verdict'], T.map((t) => [t.target, t.measured, t.met])));
  if (notes.length) md.push('\n## Notes\n\n' + notes.join('\n'));
  md.push('\n## Checks\n\n' + checks.join('\n'));
  R.elapsedS = (now() - t0) / 1000;
  md.push(`\nTotal time: ${f1(R.elapsedS)} s; load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);

  const text = md.join('\n');
  console.log(text);
  const file = O.out ? path.resolve(O.out) : path.join(benchDir, 'results', `bench-${host.date.replace(/[:.]/g, '-')}${O.quick ? '-quick' : ''}.json`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(R, null, 2));
  fs.writeFileSync(file.replace(/\.json$/, '') + '.md', text + '\n');
  console.log(`\nwritten: ${path.relative(process.cwd(), file)} (and .md)`);
}

main().catch(async (e) => {
  console.error(e);
  await cleanupAll();
  process.exit(1);
});
