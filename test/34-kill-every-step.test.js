// The Node process killed (SIGKILL) at every step of a start (issue #17): for each (step, index) pair
// of test 33's table (test/fault-table.js) and the bridged set-up, a fresh Node process
// (test/kill/runner.js) starts the first profile that reaches the pair with
// NSBOX_TEST_FAULT=<step>:<index>:SIGKILL, and dies there: in Node's own steps (the spawner,
// spawnAsync's worker) it kills itself; in the child's, the child waits at the point (a ppoll whose
// fifth argument is the marker 0x6b696c6c, native/core/plan.h fault_kill) and this test kills the
// runner when /proc/<pid>/syscall shows it; the child then goes on without its Node, as it would.
// Then the next start, in another fresh Node (a plain run(), Machine.list() and a start of the
// killed kind), must leave nothing of the killed run: no process (found by the NSBOX_KILLRUN mark in
// their environment, which every container of the run is given too), no cgroup of the dead pid, no
// mount, no lease or temporary file naming the dead pid, no machine directory of a start that never
// finished, no veth; and the machines that were running stay up.
//
// Each pair is killed in an app-like start (test 33's profiles), a machine start and an exec (KINDS
// below), and the bridged set-up in a network namespace of the test's own. NSBOX_KILL_ALL=1 runs
// every pair; by default a fixed representative subset (inSubset) keeps the file at a few minutes.
// NSBOX_KILL_ONLY="<step> <index>,..." runs just those; NSBOX_KILL_VERBOSE=1 names each run on
// stderr. docs/reliability.md.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const { setTimeout: sleep } = require('node:timers/promises');
const { Machine, removeBridge } = require('..');
const { SKIPPED, cases, profilesFor } = require('./fault-table');
const { busyboxRootfs, machineStateDir } = require('./helpers');

const RUNNER = path.join(__dirname, 'kill', 'runner.js');
const KILL_MARK = '0x6b696c6c'; // native/core/plan.h, kFaultKillMagic
const PRE_EXEC = 'nsbox-starting'; // native/core/plan.h, kPreExecComm
const notRoot = process.getuid() !== 0 && 'killing a start at every step needs root (machines, cgroups, raw plans)';
const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const all = process.env.NSBOX_KILL_ALL === '1';
const netHost = process.env.NSBOX_KILL_NET_HOST === '1';
const which = (cmd) => ['/usr/bin/', '/bin/', '/usr/sbin/', '/sbin/'].map((d) => d + cmd).find((p) => fs.existsSync(p));
const toolEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(LD_PRELOAD|ASAN_OPTIONS|UBSAN_OPTIONS|LSAN_OPTIONS)$/.test(k)));
const cgroupBase = () => require('../dist/cgroup').detectCgroupHost().base;

// Each pair is killed in three kinds of start: the first profile of test 33's table that reaches it
// (an app start for most, a pool, a user namespace, a raw plan, spawnAsync's worker), a machine start
// and an exec into a running machine; a pair that does not occur in a machine start or an exec (the
// runner finds none reaching it, with EDOM) is counted, not killed. The bridged start is the second
// test below. By default a fixed representative subset: in the first kind every step at its first
// index, and every index of the steps whose indexes are different calls at different moments (the
// user namespace hand-over, the exec into a machine, the pty, the parent's own steps); in the machine
// start and the exec, each step at its first index. NSBOX_KILL_ALL=1: every pair in every kind.
const KINDS = [
  { kind: 'start', where: (name, index) => profilesFor(name, index) },
  { kind: 'machine start', where: () => ['machineStart'], optional: true },
  { kind: 'exec', where: (name) => (name === 'exec.pty' ? ['machineExecTty'] : ['machineExec']), optional: true },
];
const only = process.env.NSBOX_KILL_ONLY?.split(',').map((x) => x.trim()); // "step index,...": just those
const EVERY_INDEX = ['userns', 'exec.enter', 'exec.setns', 'exec.pty', 'spawn.clone', 'spawn.sync', 'cgroup.create', 'devices', 'spawn.pipe'];
function inSubset(kind, name, index, seen) {
  if (only) return only.includes(`${name} ${index}`);
  if (all) return true;
  if (kind === 'start' && EVERY_INDEX.includes(name)) return true;
  if (seen.has(name)) return false;
  seen.add(name);
  return true;
}

/** Every process: pid, ppid, state. */
function procs() {
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(e), state: f[0], ppid: Number(f[1]) });
    } catch {
      /* gone */
    }
  }
  return out;
}
const readOr = (f) => {
  try {
    return fs.readFileSync(f, 'utf8');
  } catch {
    return '';
  }
};
/** A child of `parent` waiting at a kill fault point (its ppoll with the marker), or undefined. */
const atKillPoint = (parent) => procs().find((p) => p.ppid === parent && readOr(`/proc/${p.pid}/syscall`).split(' ')[5] === KILL_MARK);
/** The live processes that carry the run's mark, with their name and cgroup. */
const marked = (mark) =>
  procs()
    .filter((p) => p.state !== 'Z' && readOr(`/proc/${p.pid}/environ`).split('\0').includes(`NSBOX_KILLRUN=${mark}`))
    .map((p) => `${p.pid} ${readOr(`/proc/${p.pid}/comm`).trim()} ${readOr(`/proc/${p.pid}/cgroup`).split('\n').find((l) => l.startsWith('0::')) ?? ''}`);
/** The host's mounts, as mount point, type and source (ids change; what is mounted does not). */
const mounts = () =>
  fs.readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').map((l) => {
    const f = l.split(' ');
    const d = f.indexOf('-');
    return `${f[4]} ${f[d + 1]} ${f[d + 2]}`;
  });
const added = (before, after) => {
  const left = [...before];
  return after.filter((x) => {
    const i = left.indexOf(x);
    if (i < 0) return true;
    left.splice(i, 1);
    return false;
  });
};
/**
 * Made before `until` (ms): pids are reused within a run on a host whose pid_max is 32768 (this
 * one's), so a cgroup or lease named by the killed runner's pid but made after it died is another
 * process's (a test file running beside this one), never the killed run's.
 */
const madeBefore = (p, until) => {
  try {
    return fs.lstatSync(p).ctimeMs <= until;
  } catch {
    return false;
  }
};

/** Files under nsbox's directories that name `pid` (made before `until`): a lease it owns, a temporary it was writing. */
function filesOf(pid, until) {
  const out = [];
  const walk = (dir, depth) => {
    let entries = [];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (depth < 4 && e.name !== '.staging') walk(p, depth + 1);
        continue;
      }
      if (!madeBefore(p, until)) continue;
      if (e.name.endsWith(`.tmp-${pid}`)) out.push(p);
      else if (e.isFile() && e.name !== 'lock') {
        const text = readOr(p);
        if (text.length < 4096 && new RegExp(`"pid":\\s*${pid}\\b`).test(text)) out.push(p);
      }
    }
  };
  for (const root of ['/run/nsbox', '/var/lib/nsbox']) walk(root, 0);
  return out;
}

/** Runs the runner; resolves with how it ended and what it printed. */
async function runRunner(mode, spec, mark) {
  const env = { ...process.env, NSBOX_KILLRUN: mark };
  // The loopback is set up only in a network namespace made by the clone, not in one of the
  // addon's reserve (made ahead, refilled after the first start): none for that step.
  if (spec.name === 'network.loopback') env.NSBOX_NETNS_RESERVE = '0';
  if (process.env.NSBOX_KILL_VERBOSE) process.stderr.write(`${mode} ${spec.name} ${spec.index}\n`);
  const child = spawn(process.execPath, [RUNNER, mode, JSON.stringify(spec)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let killedByTest = false;
  let done = false;
  void exited.then(() => (done = true));
  if (mode === 'kill') {
    // In the child's steps the child waits at the point for Node to go: kill Node when it does.
    while (!done) {
      if (out.includes('"profile"') && atKillPoint(child.pid)) {
        killedByTest = child.kill('SIGKILL');
        break;
      }
      await sleep(2);
    }
  }
  const end = await exited;
  await new Promise((r) => setImmediate(r)); // the last output
  const lines = out.trim().split('\n').filter(Boolean).map((l) => {
    try {
      return JSON.parse(l);
    } catch {
      return { text: l };
    }
  });
  return { ...end, killedByTest, pid: child.pid, lines, stderr: err, said: Object.assign({}, ...lines) };
}

/**
 * One case: the kill, then the next start, then the checks. `ctx`: stateDir, fixtures, the list of
 * machine directories expected, and the extra checks of the bridged part.
 */
async function killCase(t, name, index, where, ctx) {
  const mark = `${name}:${index}:${process.pid}:${ctx.seq++}`;
  const spec = { name, index, where, ...ctx.spec };
  const mountsBefore = mounts();
  const k = await runRunner('kill', spec, mark);
  // The runner is dead: whatever is named by its pid and made after this is not its own.
  const deadAt = Date.now();
  const key = `${name} ${index}`;
  if (k.said.notReached) {
    if (ctx.untilUnreached && index >= 4) return 'end';
    if (ctx.optional) return 'absent';
    t.fail(`${key}: no profile reaches the fault point`, { misses: k.said.notReached });
    return null;
  }
  const profile = k.said.profile;
  if (k.signal !== 'SIGKILL') {
    t.fail(`${key} (${profile}): the Node process was not killed`, { code: k.code, said: k.said, stderr: k.stderr.slice(-2000) });
    return null;
  }
  // The child goes on without its Node: let it get past its start (exec or fail) before looking.
  for (let i = 0; i < 500 && marked(mark).some((p) => p.split(' ')[1] === PRE_EXEC); i++) await sleep(4);
  const leftBeforeNext = {
    processes: marked(mark),
    cgroups: cgroupsOf(k.pid, deadAt),
    files: filesOf(k.pid, deadAt),
  };
  const next = await runRunner('next', { ...spec, again: profile }, `${mark}:next`);
  const left = {
    processes: marked(mark),
    cgroups: cgroupsOf(k.pid, deadAt),
    // (Mounts on nsbox's own directories and the test's: other processes on the shared host may
    // mount elsewhere meanwhile.)
    mounts: added(mountsBefore, mounts()).filter((m) => ['/run/nsbox/', '/var/lib/nsbox/', `${ctx.spec.stateDir}/`, ...(ctx.spec.rawStaging ? [ctx.spec.rawStaging] : [])].some((d) => `${m.split(' ')[0]}/`.startsWith(d))),
    files: filesOf(k.pid, deadAt),
    machineDirs: fs.readdirSync(ctx.spec.stateDir).filter((n) => !ctx.machineDirs.includes(n)),
    etcDirs: etcDirsOf(k.pid, deadAt, ctx),
    ...(ctx.extra ? ctx.extra() : {}),
  };
  const clean = Object.values(left).every((v) => v.length === 0);
  const where1 = k.killedByTest ? 'child' : 'node';
  if (!next.said.ok) t.fail(`${key} (${profile}, ${where1}): the next start failed`, { said: next.said, stderr: next.stderr.slice(-2000) });
  if (!clean) t.fail(`${key} (${profile}, killed in the ${where1}'s step): something of the killed run is left after the next start`, { left });
  else t.pass(`${key} (${profile}, killed in the ${where1}'s step): nothing left after the next start`);
  return { key: `${key} (${profile})`, where: where1, leftBeforeNext: Object.values(leftBeforeNext).some((v) => v.length > 0) ? leftBeforeNext : null };
}

/**
 * The generated /etc directories (lib/etc.ts) of the killed run: an app container's is named by its
 * Node's pid, a machine's by its state directory and name (the machines this test keeps running
 * excepted).
 */
function etcDirsOf(pid, until, ctx) {
  const { etcBase } = require('../dist/etc');
  const real = fs.realpathSync(ctx.spec.stateDir);
  const m = `m-${require('node:crypto').createHash('sha256').update(real).digest('hex').slice(0, 8)}-`;
  const kept = ctx.machineDirs.map((n) => `${m}${n}-`);
  let names = [];
  try {
    names = fs.readdirSync(etcBase());
  } catch {
    return [];
  }
  return names.filter((n) => ((n.startsWith(`${pid}-`) && madeBefore(path.join(etcBase(), n), until)) || n.startsWith(m)) && !kept.some((k) => n.startsWith(k) && /^[0-9a-f]{12}$/.test(n.slice(k.length))));
}

function cgroupsOf(pid, until) {
  const base = cgroupBase();
  if (!base) return [];
  try {
    return fs.readdirSync(base).filter((n) => (n.startsWith(`${pid}.`) || n.includes(`-kill-${pid}-`)) && madeBefore(path.join(base, n), until));
  } catch {
    return [];
  }
}

function summary(t, results) {
  const done = results.filter(Boolean);
  const before = done.filter((r) => r.leftBeforeNext);
  t.comment(`killed ${done.length}: ${done.filter((r) => r.where === 'node').length} in Node's own steps, ${done.filter((r) => r.where === 'child').length} in the child's`);
  t.comment(`left behind by the kill itself (cleaned by the next start): ${before.length}: ${before.map((r) => `${r.key} ${JSON.stringify(r.leftBeforeNext)}`).join('; ')}`);
}

if (netHost) bridged();
else main();

function main() {
  t.test('the Node process killed at every step of a start, then the next start cleans up', { skip: notRoot || noBusybox }, async (t) => {
    const stateDir = machineStateDir(t, 'nsbox-kill-machines-');
    const rawStaging = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-kill-staging-'));
    const cgroup2 = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[f.indexOf('-') + 1] === 'cgroup2')?.[4] ?? '/sys/fs/cgroup';
    const rawCgroup = path.join(cgroup2, `nsbox-kill-${process.pid}`);
    t.teardown(() => {
      fs.rmSync(rawStaging, { recursive: true, force: true });
      try {
        fs.rmdirSync(rawCgroup);
      } catch {}
    });
    // The machines the exec profiles enter: started here, so they are no run's own.
    const execMachine = 'kill-exec';
    const usernsMachine = 'kill-userns';
    await Machine.start({ name: execMachine, rootfs: bb, ephemeral: true, stateDir });
    await Machine.start({ name: usernsMachine, rootfs: bb, ephemeral: true, stateDir, userns: true });
    const ctx = { seq: 0, spec: { stateDir, execMachine, usernsMachine, rawStaging, rawCgroup }, machineDirs: [execMachine, usernsMachine, '.lock'] };
    const results = [];
    const started = Date.now();
    for (const { kind, where, optional } of KINDS) {
      const seen = new Set();
      const absent = [];
      const mine = [];
      for (const [name, index] of cases()) {
        if (SKIPPED[`${name} ${index}`] || SKIPPED[`${name} *`] || !inSubset(kind, name, index, seen)) continue;
        const r = await killCase(t, name, index, where(name, index), { ...ctx, optional });
        if (r === 'absent') absent.push(`${name} ${index}`);
        else mine.push(r);
      }
      t.comment(`${kind}: ${mine.filter(Boolean).length} kills${optional ? `; not in a ${kind}: ${absent.length} (${absent.join(', ')})` : ''}`);
      results.push(...mine);
    }
    for (const m of [execMachine, usernsMachine]) t.equal(await (await Machine.get(m, { stateDir }))?.state(), 'running', `${m}: still running after every kill`);
    summary(t, results);
    t.comment(`${all ? 'all pairs' : 'the subset (NSBOX_KILL_ALL=1: all)'} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  const noNetTools = !which('unshare') || !which('ip') ? 'needs unshare(1) and ip(8)' : false;
  t.test('bridged: killed at every call of the set-up, in a network namespace made for the test', { skip: notRoot || noBusybox || noNetTools }, (t) =>
    t.spawn('unshare', ['--net', '--', process.execPath, __filename], { env: { ...process.env, NSBOX_KILL_NET_HOST: '1' } }));
}

// Run again by main() under unshare --net: the bridge, the veths and the leases' addresses are in a
// namespace that is this process's "host".
function bridged() {
  const BR = `nskb${process.pid % 100000}`;
  const links = () => execFileSync('ip', ['-o', 'link', 'show'], { env: toolEnv }).toString().trim().split('\n').map((l) => l.split(': ')[1].split('@')[0]).sort();
  execFileSync('ip', ['link', 'set', 'lo', 'up'], { env: toolEnv });
  t.teardown(async () => {
    await removeBridge({ bridge: BR }).catch(() => {});
    fs.rmSync(`/run/nsbox/net/${BR}`, { recursive: true, force: true });
  });
  t.test('every call of the bridged set-up, killed', async (t) => {
    const stateDir = machineStateDir(t, 'nsbox-kill-net-');
    await require('..').run({ command: ['/bin/true'], rootfs: bb, network: { bridge: BR } }); // the bridge exists from here on
    const linksBefore = links();
    const ctx = {
      seq: 0,
      spec: { stateDir, bridge: BR },
      machineDirs: [],
      untilUnreached: true,
      extra: () => ({
        links: added(linksBefore, links()),
        leases: fs.readdirSync(`/run/nsbox/net/${BR}/leases`).filter((f) => !f.startsWith('.') && f !== 'lock'),
      }),
    };
    const results = [];
    const started = Date.now();
    // The negative indexes, then each message until the set-up has no more.
    for (let index = -5; index < 64; index++) {
      const r = await killCase(t, 'network', index, ['bridged'], ctx);
      if (r === 'end') break;
      results.push(r);
    }
    results.push(await killCase(t, 'stdio', 6, ['bridged'], ctx));
    summary(t, results);
    t.comment(`bridged in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
}
