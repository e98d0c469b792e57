#!/usr/bin/env node
// The soak (issue #17): minutes of mixed work at concurrency 32, every result checked, with Node's
// fd count, thread count and RSS sampled every second. It passes only if every result is right,
// nothing hangs, nothing is left behind after shutdown, and the fd and thread counts and RSS are
// flat between the end of the warm-up and the end of the run.
//
//   npm run soak -- --minutes 10         (as root; CI runs --minutes 5 on the host)
//   NSBOX_VM_NO_ROOTLESS=1 NSBOX_SOAK_MINUTES=2 bash test/vm/run.sh test/soak/soak.js
//                                        (the VM lane: adds OOM kills and fork bombs)
//
// Options (NSBOX_SOAK_<NAME> in the environment sets the default, for the VM lane):
//   --minutes M       how long the mixed work runs, warm-up included (default 10; fractions allowed)
//   --concurrency N   workers, each looping over the weighted mix (default 32)
//   --warmup S        seconds of warm-up before the baseline is taken (default: 20% of the run, at most 60)
//   --hang S          an operation not settled after S seconds is a hang (default 60; 240 in the VM)
//   --seed N          the mix's random seed (default: random, printed)
//   --kinds a,b       only these operations of the mix (default: all; for a reproduction)
//   --json FILE       also write the figures as JSON
//
// What it does: it re-runs itself under `unshare --net --mount` (a network namespace of its own for
// the bridge, so the host's network is never touched, and a private mount table, so the leak check
// counts only its own mounts while other lanes run), brings lo up, starts a warm pool and a few
// long-lived busybox machines (one bridged, serving httpd), then runs the mix:
//
//   run          run() of `echo <token>` (busybox rootfs and the default rootfs): stdout is the token
//   stream       spawn() of `cat`, a random payload (0..2 MiB) streamed through stdin/stdout: same bytes
//   pool         pool.run() of `cat` with the token as input: stdout is the token
//   exec         Machine.run() in a long-lived machine: writes the token to a file and reads it back
//   machine      Machine.start + run + stop + destroy of a short-lived ephemeral machine
//   bridge       run() on the soak's bridge: eth0 has a 10.88/16 address, and httpd on the bridged
//                machine answers with its token (container to machine over the bridge)
//   timeout      `sleep 120` with a 50..400 ms timeout (run, spawn, pool, machine): timedOut, SIGKILL
//   abort        `sleep 120` aborted after 1..300 ms (run, pool, machine): rejects with AbortError
//   oom          (cgroup v2 memory controller) a 200 MiB hog in 32M: oomKilled, SIGKILL, not timed out
//   forkbomb     (cgroup v2 pids controller) a fork bomb under pids=16: stopped at 15 children with
//                EAGAIN, the container then ends by itself with exit 0
//
// oom and forkbomb run where probe() reports the controllers (the VM lane's pure v2 kernel; on a
// hybrid host they are skipped and listed as such; NSBOX_REQUIRE_CGROUP=1 makes that a failure).
//
// Pass/fail (no timing is asserted; durations are printed as figures):
//   - every operation's result is right (a wrong one is printed with what was expected);
//   - no operation takes longer than --hang (a watchdog per operation);
//   - after shutdown: no child or descendant process of this Node, no zombie, no cgroup of this pid
//     under nsbox's cgroup directory, no machine cgroup of the soak's machines, the mount table as at
//     the start, no address lease on the soak's bridge, no user namespace lease of this pid, no
//     machine state, and the fd count as at the start (nsbox's namespace reserves excluded);
//   - the quiesced fd count (reserves excluded) and thread count at the end at most FD_TOLERANCE and
//     THREAD_TOLERANCE above those after the warm-up, RSS (after a full GC) at most RSS_BOUND_MIB and
//     the JS heap at most HEAP_BOUND_MIB above it. See docs/reliability.md, "Under load", for why these bounds.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawnSync } = require('node:child_process');

const FD_TOLERANCE = 2;
const THREAD_TOLERANCE = 2;
const RSS_BOUND_MIB = 64;
const HEAP_BOUND_MIB = 16;

// ---------------------------------------------------------------------------------------------
// Options

function options(argv) {
  const env = (n) => process.env[`NSBOX_SOAK_${n.toUpperCase()}`];
  const o = {
    minutes: Number(env('minutes') ?? 10),
    concurrency: Number(env('concurrency') ?? 32),
    warmup: env('warmup') === undefined ? null : Number(env('warmup')),
    hang: Number(env('hang') ?? (process.env.NSBOX_VM === '1' ? 240 : 60)),
    seed: env('seed') === undefined ? crypto.randomInt(2 ** 31) : Number(env('seed')),
    json: env('json') ?? null,
    kinds: env('kinds') ?? null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      const src = fs.readFileSync(__filename, 'utf8').split('\n');
      console.log(src.slice(1, src.findIndex((l) => l.startsWith("'use strict'"))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    }
    const key = a.replace(/^--/, '');
    if (!a.startsWith('--') || !(key in o)) {
      console.error(`soak: unknown option ${a} (see --help)`);
      process.exit(2);
    }
    const v = argv[++i];
    if (v === undefined) {
      console.error(`soak: ${a} needs a value`);
      process.exit(2);
    }
    o[key] = key === 'json' || key === 'kinds' ? v : Number(v);
  }
  for (const k of ['minutes', 'concurrency', 'hang', 'seed']) {
    if (!Number.isFinite(o[k]) || o[k] < 0 || (k !== 'minutes' && !Number.isInteger(o[k]))) {
      console.error(`soak: --${k} must be a non-negative number, not ${o[k]}`);
      process.exit(2);
    }
  }
  if (o.concurrency < 1 || o.hang < 1) {
    console.error('soak: --concurrency and --hang must be at least 1');
    process.exit(2);
  }
  if (o.warmup === null) o.warmup = Math.min(60, o.minutes * 60 * 0.2);
  return o;
}

const which = (cmd) => ['/usr/bin/', '/bin/', '/usr/sbin/', '/sbin/'].map((d) => d + cmd).find((p) => fs.existsSync(p));

// ---------------------------------------------------------------------------------------------
// Outer: re-run under `unshare --net --mount`, and check that the machine's own network namespace is
// unchanged afterwards.

function linkNames() {
  const r = spawnSync('ip', ['-o', 'link', 'show']);
  return r.stdout.toString().trim().split('\n').map((l) => l.split(': ')[1]?.split('@')[0]).sort();
}

function outer() {
  options(process.argv.slice(2)); // usage errors before anything
  if (process.getuid() !== 0) {
    console.error('soak: needs root (bridged containers, machines); run it as root');
    process.exit(1);
  }
  if (!which('unshare') || !which('ip')) {
    console.error('soak: needs unshare(1) and ip(8) (util-linux, iproute2)');
    process.exit(1);
  }
  const before = linkNames();
  const r = spawnSync('unshare', ['--net', '--mount', '--', process.execPath, '--expose-gc', __filename, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, NSBOX_SOAK_INNER: '1' },
  });
  const after = linkNames();
  let rc = r.status ?? 1;
  if (r.signal) console.error(`soak: the inner run ended with ${r.signal}`);
  if (JSON.stringify(after) !== JSON.stringify(before)) {
    console.error(`soak: FAIL: this network namespace's links changed: ${before.join(',')} -> ${after.join(',')}`);
    rc = 1;
  }
  process.exit(rc);
}

// ---------------------------------------------------------------------------------------------
// Inner: the soak itself.

/** mulberry32: a small seeded generator, so a mix can be replayed with --seed. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const mib = (b) => (b / 1048576).toFixed(1);
const rssBytes = () => Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
const threadCount = () => Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
const rawFds = () => fs.readdirSync('/proc/self/fd').length;
const heapBytes = () => process.memoryUsage().heapUsed;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every process below `root` (children, their children, ...), by a walk of /proc's ppid fields. */
function descendants(root) {
  const kids = new Map();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(rest[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push({ pid: Number(e), state: rest[0], comm: st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')) });
    } catch {
      /* gone */
    }
  }
  const out = [];
  const walk = (p) => {
    for (const k of kids.get(p) ?? []) {
      out.push(k);
      walk(k.pid);
    }
  };
  walk(root);
  return out;
}

async function inner() {
  const O = options(process.argv.slice(2));
  const nsbox = require('../..');
  const { run, spawn, createPool, Machine, probe, removeBridge } = nsbox;
  const { busyboxRootfs, warmUp, snapshot } = require('../helpers');
  const { detectCgroupHost } = require('../../dist/cgroup');
  const { monitorEventLoopDelay } = require('node:perf_hooks');

  spawnSync('ip', ['link', 'set', 'lo', 'up'], { stdio: 'inherit' });
  const { rootfs: bb, reason } = busyboxRootfs();
  if (!bb) {
    console.error(`soak: ${reason}`);
    process.exit(1);
  }
  const report = await probe();
  const controllers = report.cgroup.controllers;
  const strict = process.env.NSBOX_REQUIRE_CGROUP === '1';
  const cgSkip = {
    oom: controllers.includes('memory') ? null : `no memory controller on this host's cgroup v2 (${report.cgroup.mode}); runs in the VM lane`,
    forkbomb: controllers.includes('pids') ? null : `no pids controller on this host's cgroup v2 (${report.cgroup.mode}); runs in the VM lane`,
  };
  const failures = [];
  // An error nobody handled (a stream's EPIPE, say) is a failure to report with the rest, not a crash
  // that loses the figures; the soak carries on and exits non-zero.
  process.on('uncaughtException', (e) => {
    failures.push(`uncaught exception: ${e && e.stack}`);
    console.error('soak: UNCAUGHT:', e);
  });
  for (const [k, why] of Object.entries(cgSkip)) if (why && strict) failures.push(`${k}: required (NSBOX_REQUIRE_CGROUP=1) but ${why}`);

  const BR = `nsbs${process.pid % 100000}`;
  const netDir = `/run/nsbox/net/${BR}`;
  const stateDir = fs.mkdtempSync('/tmp/nsbox-soak-machines-');
  const tag = `s${process.pid % 100000}`;
  const random = rng(O.seed);
  const pick = (arr) => arr[Math.floor(random() * arr.length)];
  const token = () => crypto.randomBytes(12).toString('hex');

  console.log(`soak: ${O.minutes} min (warm-up ${O.warmup} s), concurrency ${O.concurrency}, hang after ${O.hang} s, seed ${O.seed}`);
  console.log(`soak: kernel ${report.kernel}, cgroup ${report.cgroup.mode} [${controllers.join(' ')}], node ${process.version}, pid ${process.pid}, load ${require('node:os').loadavg().map((x) => x.toFixed(2)).join(' ')}`);

  // ---- baseline: after nsbox and Node made their once-per-process fds (helpers.warmUp)
  const start = { ...(await warmUp()), threads: threadCount(), rss: rssBytes(), rawFds: rawFds() };
  global.gc();
  start.rss = rssBytes();
  start.heap = heapBytes();

  // ---- the long-lived parts
  const POOL_SIZE = 4;
  const pool = createPool({ size: POOL_SIZE, rootfs: bb });
  const machines = [];
  const webToken = token();
  for (let i = 0; i < 3; i++) machines.push(await Machine.start({ name: `${tag}-m${i}`, rootfs: bb, ephemeral: true, stateDir }));
  const web = await Machine.start({ name: `${tag}-web`, rootfs: bb, ephemeral: true, stateDir, network: { bridge: BR } });
  machines.push(web);
  {
    const r = await web.run(['sh', '-c', `mkdir -p /www && echo ${webToken} > /www/index.html && httpd -p 80 -h /www`]);
    if (r.exitCode !== 0) throw new Error(`soak: httpd did not start in the bridged machine: ${r.stderr}`);
  }
  const webAddr = web.network.address;

  // ---- the operations: each returns null when its result is right, or what was wrong
  const SLEEP = ['/bin/sleep', '120'];
  const expectKilled = (r, what) =>
    r.timedOut === true && r.signal === 'SIGKILL' && r.exitCode === null ? null : `${what}: want timedOut/SIGKILL, got ${JSON.stringify({ timedOut: r.timedOut, signal: r.signal, exitCode: r.exitCode })}`;
  const expectAbort = async (p, what) => {
    try {
      const r = await p;
      return `${what}: resolved (${JSON.stringify({ exitCode: r.exitCode, signal: r.signal })}) instead of rejecting with AbortError`;
    } catch (e) {
      return e && e.name === 'AbortError' && e.code === 'ABORT_ERR' ? null : `${what}: rejected with ${e && e.name} ${e && e.code}: ${e && e.message}`;
    }
  };
  const okOutput = (r, want, what) =>
    r.exitCode === 0 && r.signal === null && r.stdout.toString() === want && r.stderr.length === 0
      ? null
      : `${what}: want exit 0 and ${JSON.stringify(want)}, got exit ${r.exitCode} signal ${r.signal} stdout ${JSON.stringify(r.stdout.toString().slice(0, 200))} stderr ${JSON.stringify(r.stderr.toString().slice(0, 200))}`;
  let machineSeq = 0;

  const ops = {
    async run() {
      const tk = token();
      const own = random() < 0.5;
      const r = await run(own ? { rootfs: bb, command: ['/bin/echo', tk] } : { command: ['echo', tk] });
      return okOutput(r, `${tk}\n`, own ? 'run (busybox rootfs)' : 'run (default rootfs)');
    },
    async stream() {
      const size = random() < 0.2 ? Math.floor(random() * 2 * 1048576) : Math.floor(random() * 256 * 1024);
      const payload = crypto.randomBytes(size);
      const c = spawn({ rootfs: bb, command: ['/bin/cat'] });
      const out = [];
      const err = [];
      // A stream error is a wrong result (with what the container did), not a crash of the soak.
      const streamErrors = [];
      for (const [n, st] of [['stdin', c.stdin], ['stdout', c.stdout], ['stderr', c.stderr]]) st.on('error', (e) => streamErrors.push(`${n}: ${e.code || e.message}`));
      c.stdout.on('data', (d) => out.push(d));
      c.stderr.on('data', (d) => err.push(d));
      const closed = Promise.all([new Promise((r) => c.stdout.on('close', r)), new Promise((r) => c.stderr.on('close', r))]);
      c.stdin.end(payload);
      const r = await c.wait();
      await closed;
      const got = Buffer.concat(out);
      if (streamErrors.length) return `stream: ${streamErrors.join(', ')} (pid ${c.pid}, ${size} bytes in, ${got.length} out, exit ${JSON.stringify({ exitCode: r.exitCode, signal: r.signal, timedOut: r.timedOut, durationMs: Math.round(r.durationMs) })}, stderr ${JSON.stringify(Buffer.concat(err).toString().slice(0, 200))})`;
      if (r.exitCode !== 0 || r.signal !== null) return `stream: cat exited ${r.exitCode} ${r.signal}: ${Buffer.concat(err).toString().slice(0, 200)}`;
      if (!got.equals(payload)) return `stream: ${size} bytes in, ${got.length} out${got.length === size ? ' (different bytes)' : ''}`;
      return err.length ? `stream: stderr ${Buffer.concat(err).toString().slice(0, 200)}` : null;
    },
    async pool() {
      const tk = token();
      const r = await pool.run(['/bin/cat'], { input: tk });
      return okOutput(r, tk, 'pool');
    },
    async exec() {
      const tk = token();
      const m = pick(machines);
      const f = `/tmp/${tk}`;
      const r = await m.run(['/bin/sh', '-c', `echo ${tk} > ${f} && cat ${f} && rm ${f}`]);
      return okOutput(r, `${tk}\n`, `exec in ${m.name}`);
    },
    async machine() {
      const tk = token();
      const m = await Machine.start({ name: `${tag}-c${machineSeq++}`, rootfs: bb, ephemeral: true, stateDir });
      try {
        const r = await m.run(['/bin/echo', tk]);
        return okOutput(r, `${tk}\n`, `short-lived machine ${m.name}`);
      } finally {
        await m.stop({ timeout: 10000 });
        await m.destroy();
      }
    },
    async bridge() {
      const r = await run({
        rootfs: bb,
        network: { bridge: BR },
        command: ['/bin/sh', '-c', `ip -o -4 addr show dev eth0 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 ${webAddr} 80`],
      });
      const out = r.stdout.toString();
      const addr = /inet (10\.88\.\d+\.\d+)\/16/.exec(out);
      if (r.exitCode !== 0 || !addr) return `bridge: want exit 0 and a 10.88/16 address on eth0, got exit ${r.exitCode}: ${JSON.stringify(out.slice(0, 300))} ${JSON.stringify(r.stderr.toString().slice(0, 200))}`;
      if (addr[1] === webAddr || addr[1] === '10.88.0.1') return `bridge: got an address in use (${addr[1]})`;
      if (!/^HTTP\/1\.[01] 200/m.test(out) || !out.includes(webToken)) return `bridge: no page from ${webAddr}:80: ${JSON.stringify(out.slice(0, 300))}`;
      return null;
    },
    async timeout() {
      const timeout = 50 + Math.floor(random() * 350);
      switch (pick(['run', 'spawn', 'pool', 'machine'])) {
        case 'run':
          return expectKilled(await run({ rootfs: bb, command: SLEEP, timeout }), 'timeout (run)');
        case 'spawn':
          return expectKilled(await spawn({ rootfs: bb, command: SLEEP, timeout, stdio: 'ignore' }).wait(), 'timeout (spawn)');
        case 'pool':
          return expectKilled(await pool.run(SLEEP, { timeout }), 'timeout (pool)');
        default: {
          const m = pick(machines);
          return expectKilled(await m.run(SLEEP, { timeout }), `timeout (exec in ${m.name})`);
        }
      }
    },
    async abort() {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), 1 + Math.floor(random() * 300));
      try {
        switch (pick(['run', 'pool', 'machine'])) {
          case 'run':
            return await expectAbort(run({ rootfs: bb, command: SLEEP, signal: ac.signal }), 'abort (run)');
          case 'pool':
            return await expectAbort(pool.run(SLEEP, { signal: ac.signal }), 'abort (pool)');
          default: {
            const m = pick(machines);
            return await expectAbort(m.run(SLEEP, { signal: ac.signal }), `abort (exec in ${m.name})`);
          }
        }
      } finally {
        clearTimeout(timer);
      }
    },
    async oom() {
      // The timeout only bounds a failure (a hog that is not killed): the hang watchdog is longer.
      const r = await run({ rootfs: bb, command: ['/probe', 'hog', '200'], limits: { memory: '32M' }, timeout: Math.floor(O.hang * 500) });
      return r.oomKilled === true && r.signal === 'SIGKILL' && r.timedOut === false
        ? null
        : `oom: want oomKilled/SIGKILL, got ${JSON.stringify({ oomKilled: r.oomKilled, signal: r.signal, exitCode: r.exitCode, timedOut: r.timedOut, stdout: r.stdout.toString() })}`;
    },
    async forkbomb() {
      const r = await run({ rootfs: bb, command: ['/probe', 'forkbomb', '1'], limits: { pids: 16 }, timeout: Math.floor(O.hang * 500) });
      let res = null;
      try {
        res = JSON.parse(r.stdout.toString());
      } catch {
        /* checked below */
      }
      return r.exitCode === 0 && r.timedOut === false && res && res.forked <= 15 && res.errno === 11
        ? null
        : `forkbomb: want at most 15 children, then EAGAIN, then exit 0; got ${JSON.stringify({ exitCode: r.exitCode, signal: r.signal, timedOut: r.timedOut, stdout: r.stdout.toString() })}`;
    },
  };
  const WEIGHTS = { run: 20, stream: 14, pool: 14, exec: 14, machine: 3, bridge: 8, timeout: 9, abort: 9, oom: 4, forkbomb: 4 };
  const mix = [];
  const only = O.kinds === null ? null : O.kinds.split(',').map((k) => k.trim());
  for (const k of only ?? []) if (!(k in WEIGHTS)) throw new Error(`soak: --kinds: no operation ${k} (${Object.keys(WEIGHTS).join(', ')})`);
  for (const [k, w] of Object.entries(WEIGHTS)) if (!cgSkip[k] && (!only || only.includes(k))) for (let i = 0; i < w; i++) mix.push(k);
  if (!mix.length) throw new Error('soak: nothing to run (--kinds lists only operations this host skips)');

  // ---- per-kind results, the watchdog, the sampler
  const kinds = Object.fromEntries(Object.keys(WEIGHTS).map((k) => [k, { ok: 0, wrong: 0, hung: 0, error: 0, ms: [] }]));
  const wrongs = [];
  const hangs = [];
  let inFlight = 0;
  let done = 0;

  async function once(kind) {
    const t0 = performance.now();
    inFlight++;
    let hung = false;
    let timer;
    const watchdog = new Promise((resolve) => {
      timer = setTimeout(() => {
        hung = true;
        resolve('hang');
      }, O.hang * 1000);
    });
    const p = ops[kind]().then(
      (wrong) => (wrong === null ? 'ok' : { wrong }),
      (e) => ({ error: `${kind}: threw ${e && e.name} ${e && e.code}: ${e && e.message}` }),
    );
    const res = await Promise.race([p, watchdog]);
    clearTimeout(timer);
    const k = kinds[kind];
    if (hung) {
      k.hung++;
      hangs.push({ kind, at: new Date().toISOString() });
      console.error(`soak: HANG: a ${kind} operation has not settled after ${O.hang} s`);
      // It stays counted in flight until it settles, so the end waits for it (bounded).
      p.then((late) => {
        inFlight--;
        console.error(`soak: the hung ${kind} settled after ${Math.round(performance.now() - t0)} ms: ${JSON.stringify(late)}`);
      });
      return;
    }
    inFlight--;
    done++;
    k.ms.push(performance.now() - t0);
    if (res === 'ok') k.ok++;
    else if (res.wrong) {
      k.wrong++;
      wrongs.push(res.wrong);
      if (wrongs.length <= 20) console.error(`soak: WRONG: ${res.wrong}`);
    } else {
      k.error++;
      wrongs.push(res.error);
      if (wrongs.length <= 20) console.error(`soak: ERROR: ${res.error}`);
    }
  }

  const samples = [];
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  const t0 = Date.now();
  let lastDone = 0;
  const sampler = setInterval(() => {
    const s = { t: (Date.now() - t0) / 1000, fds: rawFds(), threads: threadCount(), rss: rssBytes(), heap: heapBytes(), inFlight, opsPerS: done - lastDone };
    lastDone = done;
    samples.push(s);
    if (samples.length % 30 === 0) console.log(`soak: ${s.t.toFixed(0)} s: ${done} done, ${s.opsPerS}/s, ${inFlight} in flight, fds ${s.fds}, threads ${s.threads}, RSS ${mib(s.rss)} MiB`);
  }, 1000);

  /**
   * Waits until nothing is in flight and the pool is full again (its refill holds a container's fds
   * while it runs), bounded by the hang limit; then a full GC; the readings.
   */
  async function quiesced() {
    const until = Date.now() + O.hang * 1000;
    while ((inFlight > 0 || pool.ready < POOL_SIZE) && Date.now() < until) await sleep(20);
    global.gc();
    await sleep(200);
    global.gc();
    return { ...snapshot(), threads: threadCount(), rss: rssBytes(), heap: heapBytes(), rawFds: rawFds(), inFlight };
  }

  // ---- the workers
  const endAt = Date.now() + O.minutes * 60 * 1000;
  const warmAt = Date.now() + O.warmup * 1000;
  let gate = null; // a promise the workers wait on while the baseline is taken
  let warm = null;
  const worker = async () => {
    while (Date.now() < endAt) {
      if (gate) await gate;
      await once(pick(mix));
    }
  };
  const warmTaker = (async () => {
    await sleep(Math.max(0, warmAt - Date.now()));
    if (Date.now() >= endAt) return;
    let open;
    gate = new Promise((r) => (open = r));
    warm = await quiesced();
    warm.t = (Date.now() - t0) / 1000;
    warm.done = done;
    gate = null;
    open();
    console.log(`soak: warm-up over after ${warm.t.toFixed(0)} s (${done} operations): the baseline is taken`);
  })();
  await Promise.all([...Array.from({ length: O.concurrency }, worker), warmTaker]);
  const elapsed = (Date.now() - t0) / 1000;

  // ---- the end: quiesced readings with the long-lived parts still up, then leftovers inside them
  const end = await quiesced();
  end.t = elapsed;
  clearInterval(sampler);
  eld.disable();
  for (const m of machines) {
    const r = await m.run(['/bin/ps', '-o', 'comm']);
    const procs = r.stdout.toString().trim().split('\n').slice(1).filter((c) => !['ps', 'httpd'].includes(c));
    if (procs.length !== 1) failures.push(`machine ${m.name}: processes left inside besides PID 1: ${procs.join(', ')}`);
  }

  // ---- shutdown and leftovers
  const leases = () => (fs.existsSync(`${netDir}/leases`) ? fs.readdirSync(`${netDir}/leases`) : []);
  await pool.close();
  for (const m of machines) {
    await m.stop({ timeout: 10000 });
    await m.destroy();
  }
  // Veths go with their namespaces, asynchronously; the leases go with the containers.
  for (let i = 0; i < 100 && leases().length; i++) await sleep(50);
  const leftLeases = leases();
  await removeBridge({ bridge: BR }).catch(() => {});
  fs.rmSync(netDir, { recursive: true, force: true });
  await sleep(100);
  global.gc();
  const after = { ...snapshot(), threads: threadCount(), rss: rssBytes(), heap: heapBytes(), rawFds: rawFds() };

  const left = [];
  for (const d of descendants(process.pid)) left.push(`process ${d.pid} (${d.comm}, state ${d.state}) below this Node`);
  if (after.zombies) left.push(`${after.zombies} zombie(s)`);
  if (after.cgroups) left.push(`${after.cgroups} cgroup(s) named ${process.pid}.* under nsbox's cgroup directory`);
  const cg = detectCgroupHost();
  if (cg.base) for (const n of fs.readdirSync(cg.base)) if (n.startsWith('m-') && n.includes(`-${tag}-`)) left.push(`machine cgroup ${cg.base}/${n}`);
  if (after.mounts !== start.mounts) left.push(`mount table: ${after.mounts} lines, ${start.mounts} at the start`);
  if (after.fds !== start.fds) left.push(`fds (reserves excluded): ${after.fds}, ${start.fds} at the start`);
  for (const l of leftLeases) left.push(`address lease ${netDir}/leases/${l}`);
  try {
    for (const n of fs.readdirSync('/run/nsbox/userns')) {
      try {
        if (JSON.parse(fs.readFileSync(`/run/nsbox/userns/${n}`, 'utf8')).pid === process.pid) left.push(`user namespace lease /run/nsbox/userns/${n}`);
      } catch {
        /* not a lease, or gone */
      }
    }
  } catch {
    /* no directory */
  }
  const listed = await Machine.list({ stateDir });
  for (const m of listed) left.push(`machine state: ${m.name}`);
  // .lock is the state directory's own lock file (Machine.start/list take it), not a machine's.
  for (const n of fs.readdirSync(stateDir)) if (n !== '.lock') left.push(`state directory entry ${stateDir}/${n}`);
  fs.rmSync(stateDir, { recursive: true, force: true });
  failures.push(...left.map((l) => `leftover: ${l}`));

  // ---- growth between the warm-up baseline and the end
  if (!warm) failures.push(`the run (${O.minutes} min) ended before the warm-up (${O.warmup} s): no baseline to compare`);
  else {
    if (end.fds - warm.fds > FD_TOLERANCE) failures.push(`fds grew from ${warm.fds} after the warm-up to ${end.fds} at the end (tolerance ${FD_TOLERANCE})`);
    if (end.threads - warm.threads > THREAD_TOLERANCE) failures.push(`threads grew from ${warm.threads} to ${end.threads} (tolerance ${THREAD_TOLERANCE})`);
    if (end.rss - warm.rss > RSS_BOUND_MIB * 1048576) failures.push(`RSS grew from ${mib(warm.rss)} MiB to ${mib(end.rss)} MiB (bound +${RSS_BOUND_MIB} MiB)`);
    if (end.heap - warm.heap > HEAP_BOUND_MIB * 1048576) failures.push(`the JS heap (after a full GC) grew from ${mib(warm.heap)} MiB to ${mib(end.heap)} MiB (bound +${HEAP_BOUND_MIB} MiB)`);
  }
  if (end.inFlight) failures.push(`${end.inFlight} operation(s) still in flight ${O.hang} s after the end`);
  const totals = Object.values(kinds).reduce((a, k) => ({ ok: a.ok + k.ok, wrong: a.wrong + k.wrong + k.error, hung: a.hung + k.hung }), { ok: 0, wrong: 0, hung: 0 });
  if (totals.wrong) failures.push(`${totals.wrong} wrong result(s)`);
  if (totals.hung) failures.push(`${totals.hung} hang(s)`);
  if (totals.ok === 0) failures.push('no operation completed');

  // ---- the tables
  const pct = (arr, p) => {
    if (!arr.length) return '-';
    const s = [...arr].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(0);
  };
  const table = (head, rows) => {
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
    const line = (r) => `| ${r.map((c, i) => String(c).padEnd(w[i])).join(' | ')} |`;
    return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n');
  };
  console.log(`\nsoak: ${elapsed.toFixed(0)} s of mixed work, ${done} operations (${(done / elapsed).toFixed(1)}/s), concurrency ${O.concurrency}, seed ${O.seed}\n`);
  console.log(
    table(
      ['operation', 'ok', 'wrong', 'hung', 'p50 ms', 'p99 ms', 'max ms'],
      Object.entries(kinds).map(([n, k]) => (cgSkip[n] ? [n, 'skipped', '', '', '', '', ''] : [n, k.ok, k.wrong + k.error, k.hung, pct(k.ms, 50), pct(k.ms, 99), k.ms.length ? Math.max(...k.ms).toFixed(0) : '-'])),
    ),
  );
  for (const [n, why] of Object.entries(cgSkip)) if (why) console.log(`  ${n} skipped: ${why}`);
  const max = (f) => Math.max(...samples.map((s) => s[f]));
  const row = (label, s) => [label, s ? `${s.rawFds} (${s.fds})` : '-', s ? s.threads : '-', s ? mib(s.rss) : '-', s ? mib(s.heap) : '-'];
  console.log('');
  console.log(
    table(
      ['when', 'fds (w/o reserves)', 'threads', 'RSS MiB', 'JS heap MiB'],
      [
        row('start (before the pool and machines)', start),
        row(`after the warm-up (${warm ? warm.t.toFixed(0) : '-'} s, quiesced)`, warm),
        row(`end (${end.t.toFixed(0)} s, quiesced)`, end),
        row('after shutdown', after),
        ['max of the 1 s samples (under load)', samples.length ? max('fds') : '-', samples.length ? max('threads') : '-', samples.length ? mib(max('rss')) : '-', samples.length ? mib(max('heap')) : '-'],
      ],
    ),
  );
  console.log(`\n  event loop delay: p50 ${(eld.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(eld.percentile(99) / 1e6).toFixed(1)} ms, max ${(eld.max / 1e6).toFixed(1)} ms`);
  console.log(`  bounds: fds +${FD_TOLERANCE}, threads +${THREAD_TOLERANCE}, RSS +${RSS_BOUND_MIB} MiB, JS heap +${HEAP_BOUND_MIB} MiB from the warm-up baseline to the end; exact at shutdown (fds, mounts) against the start`);
  if (O.json) fs.writeFileSync(O.json, JSON.stringify({ options: O, elapsed, done, kinds: Object.fromEntries(Object.entries(kinds).map(([n, k]) => [n, { ...k, ms: undefined, p50: pct(k.ms, 50), p99: pct(k.ms, 99) }])), start, warm, end, after, samples, wrongs, hangs, failures, skipped: cgSkip }, null, 1));

  if (failures.length) {
    console.log(`\nsoak: FAIL (${failures.length})`);
    for (const f of failures) console.log(`  - ${f}`);
    for (const w of wrongs.slice(0, 20)) console.log(`    ${w}`);
    process.exit(1);
  }
  console.log('\nsoak: PASS: every result right, no hang, nothing left behind, fds/threads/RSS flat');
  process.exit(0);
}

if (process.env.NSBOX_SOAK_INNER === '1') {
  inner().catch((e) => {
    console.error('soak: FAIL:', e);
    process.exit(1);
  });
} else outer();
