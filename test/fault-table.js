// The table of test 33 (every failure record, forced) and of test 34 (the Node process killed at
// each of them): which (step, index) pairs exist, where each one happens (the profiles to try, in
// order) and which no profile on this host reaches, with the reason. One place, so the two tests
// cannot drift apart. (Not a test file itself: tap runs *.test.js only.)
'use strict';
const fs = require('node:fs');
const { native, STEPS, STEP, STEP_CALLS } = require('../dist/native');
const { errorFromRecord } = require('../dist/plan');

// (step, index) pairs no profile on this host reaches, and why.
// (network and stdio 6, the netlink socket's lift, are forced by the bridged part at the end, in a
// network namespace made for it.)
const SKIPPED = {
  'network *': 'bridged: see below',
  'stdio 6': 'bridged: see below',
  'stdio 12': 'fd 0 kept in place (FD_CLOEXEC off): only when the fd given for stdin is 0 itself, which no profile passes (the container gets a pipe or its own /dev/null)',
  'stdio 13': 'likewise fd 1',
  'stdio 14': 'likewise fd 2',
  'stdio 15': 'likewise fd 3 (the status fd is never 3 in Node)',
  'pool.command 0': 'a record of the bundled init (native/init/init.c, a separate static binary that reads no plan): no fault point',
  'pool.command 1': 'likewise (the init)',
  'pool.command 2': 'likewise (the init)',
  'pool.command 3': 'likewise (the init)',
};
// spawnAsync (whose worker makes the cgroup) is not used with these (lib/app.ts, asyncEligible).
const syncOnly = ['NSBOX_FORK_CLONE', 'NSBOX_SYNC_SPAWN'].find((k) => process.env[k]);
if (syncOnly) for (const i of [0, 1, 2]) SKIPPED[`cgroup.create ${i}`] = `${syncOnly} is set: no clone off the JS thread, so no cgroup made by spawnAsync's worker`;

/** Where each step happens (tried in order); the rest: DEFAULT_PROFILES. */
const WHERE = {
  'exec.setns': ['machineExec'],
  'exec.enter': ['machineExec', 'machineExecUserns'],
  'cgroup.create': ['appConcurrent'],
  'exec.pty': ['appTty', 'machineExecTty'],
  dumpable: ['app', 'machineExec'],
  fds: ['app', 'machineExec'],
  'mount.private': ['appUserns', 'machineStart'],
  'rootfs.pivot': ['appUserns', 'machineStart'],
  'cgroup.join': ['raw'],
  'pool.command': ['pool'],
  'credentials.groups': ['app', 'machineExec'],
};
const DEFAULT_PROFILES = ['app', 'appIgnore', 'appInit', 'appUserns', 'pool', 'machineStart', 'machineExec', 'raw', 'appTty'];
const whereUserns = { 0: ['appUserns'], 4: ['appUserns'], 5: ['appUserns'] };

// The cases: every index of every row, and the steps' default calls at the indexes they report.
function cases() {
  const out = [];
  for (const [step, first, count] of STEP_CALLS) {
    for (let i = first; i < first + count; i++) out.push([STEPS[step][0], i]);
  }
  const covered = new Set(out.map(([s]) => s));
  const capLast = Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
  const defaults = {
    signals: [1, 64], // the signal
    'capabilities.bounding': [capLast], // a capability every profile drops
    rlimits: [0], // the first of plan.rlimits
    mount: [0], // the first op (lib's OpMeta names the call)
    exec: [0, -1], // the candidate; -1: none found
    'spawn.sync': [0], // the bytes of the record read: 0, end-of-file
  };
  for (const [num, [name, syscall]] of STEPS.entries()) {
    if (!syscall || num === 0) continue; // not an error (none, exec.entered, pool.ready, exec.died)
    if (name === 'network') continue; // SKIPPED
    for (const i of defaults[name] ?? (covered.has(name) ? [] : [-1])) out.push([name, i]);
  }
  // The rows' own default-index siblings (-1) where the step also fails outside its rows.
  for (const name of ['spawn.clone', 'exec.setns']) if (!out.some(([s, i]) => s === name && i === -1)) out.push([name, -1]);
  return out;
}

// Raw plans for what only exists outside root's public profiles: a cgroup joined by the child (no
// CLONE_INTO_CGROUP) and a user namespace that maps its own creator (the rootless profile).
function rawPlan(K, name, index, errno, staging) {
  const capLast = Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
  const plan = {
    cloneFlags: K.CLONE_NEWNS | K.CLONE_NEWPID | K.CLONE_NEWUTS | K.CLONE_NEWIPC | K.CLONE_NEWNET,
    cgroupFd: -1, cgroupInto: false, staging,
    ops: [{ kind: K.OP_MOUNT, where: K.WHERE_OPEN_ROOT, mode: 0, dev: 0, flags: K.MS_NOSUID | K.MS_NODEV, src: 'tmpfs', dst: staging, fstype: 'tmpfs', data: 'mode=0755,size=1m' }],
    hostname: 'errmap', netLoUp: true, walkOnly: process.env.NSBOX_FORCE_PATH_WALK === '1', forkClone: !!process.env.NSBOX_FORK_CLONE, cwd: '/', rlimits: [[K.RLIMIT_CORE, 0, 0]], newKeyring: false, capLast, capsKeep: '0',
    setCreds: false, uid: 0, gid: 0, groups: [], noNewPrivs: true, pdeathsig: true, stdio: [-1, -1, -1], statusFd: -1, statusRead: -1,
    candidates: ['/nothing-here'], argv: ['nothing'], envp: [], initFd: -1, initArgv: [], initSlot: -1, trampFd: -1, seccomp: null,
    enterPidfd: -1, enterFlags: 0, enterRoot: null, ptySock: -1,
    faultStep: STEP[name], faultIndex: index, faultErrno: errno,
  };
  if (name === 'userns') Object.assign(plan, { cloneFlags: plan.cloneFlags + K.CLONE_NEWUSER, selfUidMap: '0 0 1\n', selfGidMap: '0 0 1\n' });
  return plan;
}

/**
 * The raw profile: a raw plan with the fault (name, index, errno; errno < 0: the kill mode) through
 * the addon, on a tmpfs at `staging`; cgroup.join joins the cgroup `cgroupDir` (made here, left to
 * the caller). Throws the start's NsboxError (a plan that starts is a failure: nothing to exec).
 */
async function rawSpawn(name, index, errno, staging, cgroupDir) {
  const b = native();
  const K = b.constants;
  const plan = rawPlan(K, name, index, errno, staging);
  let cgFd = -1;
  if (name === 'cgroup.join') {
    fs.mkdirSync(cgroupDir, { recursive: true });
    cgFd = fs.openSync(cgroupDir, 'r');
    Object.assign(plan, { cgroupFd: cgFd, cloneFlags: plan.cloneFlags + K.CLONE_NEWCGROUP });
  }
  try {
    const res = b.spawn(plan);
    const rec = res.pid === undefined ? res : b.finishSpawn(res.errFd, false, res.process.fd(), res.pid);
    if (res.pid !== undefined) res.process.reap();
    throw errorFromRecord(rec, { meta: [], candidates: plan.candidates, command: plan.argv, rootfs: '/r', cwd: '/', hostname: plan.hostname });
  } finally {
    if (cgFd >= 0) fs.closeSync(cgFd);
  }
}

/** The profiles to try for (name, index), in order. */
function profilesFor(name, index) {
  return (name === 'userns' && whereUserns[index]) || (name === 'userns' && ['raw']) || WHERE[name] || DEFAULT_PROFILES;
}

/**
 * The start profiles tests 33 and 34 share, each one start of its kind (their machine exec and raw
 * profiles are their own). o: rootfs, stateDir, machineName() (a fresh name per start), and for
 * stateDir may be a function (read at each start); for test 34 command() (what the app runs), env (the containers' environment) and signal() (an
 * AbortSignal or undefined). Returns them with `app(extra)`, the app profile with more options.
 */
function startProfiles(o) {
  const { run, createPool, Machine } = require('..');
  const command = o.command ?? (() => ['/bin/true']);
  const env = o.env ? { env: o.env } : {};
  const app = (extra = {}) => () => {
    const signal = o.signal?.();
    return run({ command: command(), rootfs: o.rootfs, hostname: 'faults', cwd: '/', ...env, ...(signal ? { signal } : {}), ...extra });
  };
  const profiles = {
    app: app(),
    appInit: app({ init: true }),
    appIgnore: app({ stdio: 'ignore' }),
    appUserns: app({ userns: true }),
    appTty: app({ tty: true }),
    pool: async () => {
      const pool = createPool({ size: 1, rootfs: o.rootfs, hostname: 'faults' });
      try {
        await pool.run(['/bin/true']);
      } finally {
        await pool.close();
      }
    },
    machineStart: async () => {
      const stateDir = typeof o.stateDir === 'function' ? o.stateDir() : o.stateDir;
      const m = await Machine.start({ name: o.machineName(), rootfs: o.rootfs, ephemeral: true, stateDir, ...env });
      await m.stop({ timeout: 1000 }).catch(() => {});
      await m.destroy().catch(() => {});
    },
    // A second run while one is in flight: its clone and cgroup go to spawnAsync's worker.
    appConcurrent: async () => {
      const r = await Promise.allSettled([run({ command: ['/bin/sleep', '0.2'], rootfs: o.rootfs, ...env }), app()()]);
      const failed = r.find((x) => x.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
  return { app, profiles };
}

module.exports = { SKIPPED, WHERE, DEFAULT_PROFILES, whereUserns, cases, profilesFor, rawSpawn, startProfiles };
