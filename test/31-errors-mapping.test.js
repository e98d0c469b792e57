// Failure records map to the call that failed: native/core/steps.h is the one table of steps and of
// the call each record index names; lib/steps.ts is generated from it, and the addon refuses to
// load against a stale copy. Each step that can be made to fail from outside fails here for real
// (a raw plan given to the addon, as the plan fuzzer does), and its NsboxError is checked for
// syscall, step and path.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { native, STEPS, STEP, STEP_CALLS, OP_CALLS, OP_CALL_IDS, OP_CALL_SHIFT, stepCall } = require('../dist/native');
const { errorFromRecord } = require('../dist/plan');
const { snapshot, assertNoLeaks } = require('./helpers');

const root = path.join(__dirname, '..');
const notRoot = process.getuid() !== 0 && 'forcing child failures with raw plans needs root';

t.test('lib/steps.ts is what scripts/gen-steps.js makes of the built addon', async (t) => {
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'gen-steps.js'), '--check'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stdout + r.stderr);
  const b = native();
  t.same(b.stepTable, { steps: STEPS, calls: STEP_CALLS, opCalls: OP_CALLS, opCallIds: OP_CALL_IDS, opCallShift: OP_CALL_SHIFT }, 'the addon exports the same table');
  t.equal(STEPS.length, b.constants.STEP_COUNT, 'a name for every step');
});

t.test('the table: one row at most for any (step, index), every row on a known step', async (t) => {
  for (const [i, a] of STEP_CALLS.entries()) {
    t.ok(a[0] > 0 && a[0] < STEPS.length, `row ${i}: step ${a[0]} exists`);
    t.ok(a[2] >= 1, `row ${i}: covers an index`);
    for (const b of STEP_CALLS.slice(i + 1)) {
      const overlap = a[0] === b[0] && a[1] < b[1] + b[2] && b[1] < a[1] + a[2];
      if (overlap) t.fail(`rows overlap: ${JSON.stringify(a)} and ${JSON.stringify(b)}`);
    }
  }
  const names = new Set(STEPS.map(([n]) => n));
  t.equal(names.size, STEPS.length, 'step names are unique');
});

t.test('the calls the issue found misreported now name the real call', async (t) => {
  const want = [
    ['exec.pty', 0, 'openat', '/dev/pts/ptmx'],
    ['exec.pty', 6, 'openat2', '/dev/pts'],
    ['exec.pty', 7, 'fstatfs', '/dev/pts'],
    ['stdio', 7, 'fcntl', undefined],
    ['exec.pty', 1, 'ioctl', undefined],
    ['exec.pty', 3, 'sendmsg', undefined],
    ['userns', 0, 'read', undefined],
    ['userns', 1, 'write', '/proc/self/setgroups'],
    ['userns', 4, 'setresgid', undefined],
    ['userns', 5, 'setresuid', undefined],
    ['stdio', 4, 'fcntl', undefined],
    ['stdio', 5, 'fcntl', undefined],
    ['stdio', 6, 'fcntl', undefined],
    ['stdio', 0, 'dup2', undefined],
    ['capabilities', 1, 'prctl', undefined],
    ['pool.command', 4, 'fcntl', undefined],
    ['mount.namespace', 8, undefined, undefined],
    ['mount.namespace', 4, undefined, '@rootfs'],
    ['exec.enter', -4, 'pidfd_open', undefined],
    ['spawn.clone', -2, 'clone', undefined],
  ];
  for (const [step, index, syscall, p] of want) {
    t.same(stepCall(STEP[step], index), { syscall, path: p }, `${step} ${index}: ${syscall}`);
  }
});

t.test('every row becomes an NsboxError with its call, its step and its path', async (t) => {
  const ctx = { meta: [], candidates: ['/bin/a'], command: ['a'], rootfs: '/srv/r', cwd: '/w', hostname: 'h', cgroup: '/sys/fs/cgroup/nsbox/1.2', enterRoot: '/proc/7/root' };
  const fill = { '@rootfs': '/srv/r', '@cwd': '/w', '@hostname': 'h', '@cgroup': ctx.cgroup, '@cgroup.parent': '/sys/fs/cgroup/nsbox', '@candidate': 'a', '@enterRoot': '/proc/7/root' };
  for (const [step, first, count, syscall, p] of STEP_CALLS) {
    if (STEPS[step][0] === 'network' || STEPS[step][0] === 'mount') continue; // lib/network.ts, OpMeta
    for (const index of [first, first + count - 1]) {
      const e = errorFromRecord({ step, errno: os.constants.errno.EPERM, index }, ctx);
      const name = `${STEPS[step][0]} ${index}`;
      t.equal(e.step, STEPS[step][0], `${name}: step`);
      t.equal(e.syscall, syscall ?? undefined, `${name}: syscall`);
      t.equal(e.path, p === null ? undefined : (fill[p] ?? p), `${name}: path`);
    }
  }
});

// Raw plans, as test/fuzz/plan.test.js makes them: harmless if they ran (an empty tmpfs root).
const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-errmap-staging-'));
t.teardown(() => fs.rmSync(staging, { recursive: true, force: true }));
function basePlan(K) {
  const capLast = Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
  return {
    cloneFlags: K.CLONE_NEWNS | K.CLONE_NEWPID | K.CLONE_NEWUTS | K.CLONE_NEWIPC | K.CLONE_NEWNET,
    cgroupFd: -1,
    cgroupInto: false,
    staging,
    ops: [{ kind: K.OP_MOUNT, where: K.WHERE_OPEN_ROOT, mode: 0, dev: 0, flags: K.MS_NOSUID | K.MS_NODEV, src: 'tmpfs', dst: staging, fstype: 'tmpfs', data: 'mode=0755,size=1m' }],
    hostname: 'errmap',
    netLoUp: true,
    // lib/env.ts puts these two test switches into every plan; raw plans carry them the same way.
    walkOnly: process.env.NSBOX_FORCE_PATH_WALK === '1',
    forkClone: !!process.env.NSBOX_FORK_CLONE,
    cwd: '/',
    rlimits: [[K.RLIMIT_CORE, 0, 0]],
    newKeyring: false,
    capLast,
    capsKeep: '0',
    setCreds: true,
    uid: 65534,
    gid: 65534,
    groups: [],
    noNewPrivs: true,
    pdeathsig: true,
    stdio: [-1, -1, -1],
    statusFd: -1,
    statusRead: -1,
    candidates: ['/nothing-here'],
    argv: ['nothing'],
    envp: [],
    initFd: -1,
    initArgv: [],
    initSlot: -1,
    trampFd: -1,
    seccomp: null,
    enterPidfd: -1,
    enterFlags: 0,
    enterRoot: null,
    ptySock: -1,
  };
}

/** Spawns a raw plan that must fail; the record as an NsboxError (finishing a waiting child). */
function failure(t, plan, ctxExtra = {}) {
  const b = native();
  let res = b.spawn(plan);
  if (res.pid !== undefined) {
    // A child that waits (id maps) or is entering: its record comes through finishSpawn.
    const rec = b.finishSpawn(res.errFd, false, res.process.fd(), res.pid);
    res.process.reap();
    res = rec;
  }
  t.ok(res && typeof res.step === 'number', 'a failure record');
  const ctx = { meta: [], candidates: plan.candidates, command: plan.argv, rootfs: '/r', cwd: plan.cwd ?? '/', hostname: plan.hostname, ...ctxExtra };
  return errorFromRecord(res, ctx);
}

t.test("a mount op's failure names the call of the op that failed, not the op's kind", { skip: notRoot }, async (t) => {
  const before = snapshot();
  const K = native().constants;
  const base = basePlan(K);
  const root = base.ops[0];
  const inRoot = { mode: 0o755, dev: 0, flags: 0, src: null, fstype: null, data: null, where: K.WHERE_DST_IN_ROOT };
  const meta = (n, syscall) => [{ step: 'root', syscall: 'mount', path: '/' }, { step: 'mount.op', syscall, path: n }];
  const resolve = process.env.NSBOX_FORCE_PATH_WALK === '1' ? 'openat' : 'openat2';
  // A directory whose parent is missing: resolving the parent in the root fails, not mkdir.
  t.match(failure(t, { ...base, ops: [root, { ...inRoot, kind: K.OP_MKDIR, dst: '/no/dir' }] }, { meta: meta('/no/dir', 'mkdir') }),
    { code: 'ENOENT', step: 'mount.op', syscall: resolve, path: '/no/dir' }, 'mkdir: its parent, resolved in the root');
  // The parent exists (the root) and the name is taken by a file: mkdir's own failure.
  t.match(failure(t, { ...base, ops: [root, { ...inRoot, kind: K.OP_TOUCH, mode: 0o644, dst: '/f' }, { ...inRoot, kind: K.OP_MKDIR, dst: '/f' }] },
    { meta: [...meta('/f', 'open'), { step: 'mount.op2', syscall: 'mkdir', path: '/f' }] }),
    { code: 'ENOTDIR', step: 'mount.op2', syscall: 'mkdir', path: '/f' }, "mkdir: the op's own call");
  // A mount on a target that does not exist: the target's resolution, not mount(2).
  t.match(failure(t, { ...base, ops: [root, { ...inRoot, kind: K.OP_MOUNT, src: 'tmpfs', fstype: 'tmpfs', dst: '/absent' }] }, { meta: meta('/absent', 'mount') }),
    { code: 'ENOENT', step: 'mount.op', syscall: resolve, path: '/absent' }, 'mount: its target, resolved in the root');
  // The target exists and the filesystem type does not: mount(2) itself.
  t.match(failure(t, { ...base, ops: [root, { ...inRoot, kind: K.OP_MKDIR, dst: '/d' }, { ...inRoot, kind: K.OP_MOUNT, src: 'x', fstype: 'no-such-fs', dst: '/d' }] },
    { meta: [...meta('/d', 'mkdir'), { step: 'mount.fs', syscall: 'mount', path: '/d' }] }),
    { code: 'ENODEV', step: 'mount.fs', syscall: 'mount', path: '/d' }, "mount: the op's own call");
  await assertNoLeaks(t, before);
});

t.test('each step that can be made to fail from outside reports its call', { skip: notRoot }, async (t) => {
  const before = snapshot();
  const b = native();
  const K = b.constants;
  const fd = fs.openSync('/', 'r');
  try {
    t.match(failure(t, { ...basePlan(K), stdio: [1000, -1, -1] }), { code: 'EBADF', step: 'stdio', syscall: 'dup2', path: undefined }, 'stdio: a closed fd');
    t.match(failure(t, { ...basePlan(K), stdio: [K.STDIO_DEV_NULL, -1, -1] }), { code: 'ENOENT', step: 'stdio', syscall: 'openat2', path: '/dev/null' }, "stdio: no /dev/null in the container's root");
    t.match(failure(t, { ...basePlan(K), cgroupFd: fd }), { code: 'ENOENT', step: 'cgroup.join', syscall: 'openat' }, 'cgroup.join: not a cgroup directory');
    const long = 'h'.repeat(65);
    t.match(failure(t, { ...basePlan(K), hostname: long }), { code: 'EINVAL', step: 'hostname', syscall: 'sethostname', path: long }, 'hostname: too long');
    t.match(failure(t, { ...basePlan(K), rlimits: [[K.RLIMIT_CORE, 10, 5]] }), { code: 'EINVAL', step: 'rlimits', syscall: 'setrlimit' }, 'rlimits: soft above hard');
    t.match(failure(t, { ...basePlan(K), cwd: '/no/such' }), { code: 'ENOENT', step: 'cwd', syscall: 'openat2', path: '/no/such' }, 'cwd: missing');
    t.match(failure(t, { ...basePlan(K), ops: [], staging: path.join(staging, 'absent') }), { code: 'ENOENT', step: 'rootfs.pivot', syscall: 'chdir', path: '/r' }, 'rootfs.pivot: no staging directory');
    t.match(failure(t, { ...basePlan(K), ops: [] }), { code: String, step: 'rootfs.pivot', syscall: 'pivot_root', path: '/r' }, 'rootfs.pivot: not a mount');
    t.match(failure(t, { ...basePlan(K), seccomp: Buffer.alloc(8, 0xff) }), { code: 'EINVAL', step: 'seccomp', syscall: 'prctl' }, 'seccomp: a malformed program');
    t.match(failure(t, { ...basePlan(K), cloneFlags: basePlan(K).cloneFlags + 2 ** 40 }), { code: 'EINVAL', step: 'spawn.clone', syscall: 'clone3' }, 'spawn.clone: an unknown flag');
    t.match(failure(t, { ...basePlan(K), candidates: ['/'], argv: ['/'] }), { code: 'EACCES', step: 'exec', syscall: 'execve', path: '/' }, 'exec: a directory');
    t.match(failure(t, { ...basePlan(K), selfUidMap: '0 0 1\n' }), { code: 'EPERM', step: 'userns', syscall: 'write', path: '/proc/self/setgroups' }, 'userns: setgroups of the initial user namespace');
    // The wait for the id maps: the parent's end is gone, the child reads end-of-file.
    const [r, w] = b.pipe();
    const plan = { ...basePlan(K), usernsSyncFd: r, usernsSyncWriteFd: w };
    const b2 = b.spawn(plan);
    fs.closeSync(r);
    fs.closeSync(w);
    t.equal(b2.waiting, true, 'the child waits for its id maps');
    const rec = b.finishSpawn(b2.errFd, false, b2.process.fd(), b2.pid);
    b2.process.reap();
    t.match(errorFromRecord(rec, { meta: [], candidates: [], command: ['x'], rootfs: '/r', cwd: '/', hostname: 'h' }), { code: 'EPIPE', step: 'userns', syscall: 'read' }, 'userns: the id maps never come');
    // Entering a "machine" (this process) with a root that does not exist, and with no namespace.
    const self = b.pidfdOpen(process.pid);
    t.match(failure(t, { ...basePlan(K), enterPidfd: self.fd(), enterFlags: K.CLONE_NEWUTS, enterRoot: '/no/such/root' }), { code: 'ENOENT', step: 'exec.setns', syscall: 'open' }, 'exec.setns: the root of PID 1');
    t.match(failure(t, { ...basePlan(K), enterPidfd: self.fd(), enterFlags: 0, enterRoot: null }), { code: 'EINVAL', step: 'exec.setns', syscall: 'setns' }, 'exec.setns: nothing to join');
    fs.closeSync(self.fd());
  } finally {
    fs.closeSync(fd);
  }
  await assertNoLeaks(t, before);
});
