// Fuzzing of the TS-to-native plan marshalling: native().spawn(plan) with mutated plans
// (native/glue/addon.cc BuildPlan). The addon must throw a TypeError ("nsbox native plan: ...") or
// return an error record; it must never crash, hang, leak an fd or leave a process behind.
//
// Every case runs in a worker Node process (this file, started with NSBOX_FUZZ_PLAN_WORKER) with a
// per-case watchdog, so a crash or hang is reported with the case that caused it and the run goes
// on in a new worker (cases that share the crashing case's mutations are skipped from then on).
//
// Two tiers, chosen so that no fuzzed plan can touch the host:
//  A. Type errors (any user): every case breaks the type of at least one field that BuildPlan
//     checks unconditionally, so it fails before clone: wrong types, missing fields, bad elements,
//     huge and sparse arrays, throwing getters, Proxies. Must throw, never return.
//  B. Well-typed odd values (root only): huge/negative/NaN numbers, odd fds, bad op kinds, odd
//     flags, modes, paths, rlimits, credentials, seccomp bytes. These really clone, so the plan is
//     pinned to what is harmless: new mount/pid/uts/ipc/net namespaces, a fresh tmpfs as the root
//     on a private temporary staging directory, every fuzzed op resolved inside that root
//     (WHERE_DST_IN_ROOT, and WHERE_SRC_IN_ROOT for a mount source), no filesystem type but tmpfs or
//     names that do not exist, only harmless device numbers, no init/trampoline/enter/cgroup fd,
//     and nothing executable in the root, so every child ends at exec at the latest.
//
// Bounded in time: NSBOX_FUZZ_SECONDS (default 20). The seed is printed; NSBOX_FUZZ_SEED replays a
// run and NSBOX_FUZZ_CASE=<tier>:<n> (tier fixed, a or b) one case.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');

// ---------------------------------------------------------------------------------------------
// Shared by the test and its workers: PRNG, values, case generation.

function mulberry32(a) {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
function caseRng(seed, tier, n) {
  const h = crypto.createHash('sha256').update(`${seed}:plan:${tier}:${n}`).digest();
  const next = mulberry32(h.readUInt32LE(0));
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (a) => a[Math.floor(next() * a.length)],
    chance: (p) => next() < p,
  };
}

/** Thrown by fuzzed getters and Proxy traps: the addon may let it through. */
class InputTrap extends Error {
  constructor(where) {
    super(`fuzz input trap (${where})`);
    this.fuzzTrap = true;
  }
}
const trapGetter = (where) => ({
  enumerable: true,
  configurable: true,
  get() {
    throw new InputTrap(`get ${where}`);
  },
});

// How BuildPlan reads each field: the type it checks (or, for the *-unchecked kinds, the element
// type it converts without checking).
const FIELDS = {
  cloneFlags: 'number', cgroupFd: 'number', cgroupInto: 'bool', staging: 'string', ops: 'ops', hostname: 'nstring',
  netLoUp: 'bool', walkOnly: 'bool', forkClone: 'bool', cwd: 'nstring', rlimits: 'rlimits', newKeyring: 'bool', capLast: 'number', capsKeep: 'string',
  setCreds: 'bool', uid: 'number', gid: 'number', groups: 'groups', noNewPrivs: 'bool', pdeathsig: 'bool', stdio: 'stdio',
  statusFd: 'number', candidates: 'strings', argv: 'strings', envp: 'strings', initFd: 'number', trampFd: 'number',
  seccomp: 'seccomp', enterPidfd: 'number', enterFlags: 'number', enterRoot: 'nstring', ptySock: 'number',
};
const OP_FIELDS = { kind: 'number', mode: 'number', where: 'number', dev: 'number', flags: 'number', src: 'nstring', dst: 'string', fstype: 'nstring', data: 'nstring' };

/** A value that is not of `type` as BuildPlan checks it (deterministic, possibly hostile). */
function wrongScalar(r, type) {
  const common = [undefined, {}, [], [1], () => 1, Symbol('s'), 1n, new Date(0), new Map(), new Proxy({}, {})];
  switch (type) {
    case 'number': return r.pick([...common, '1', '', 'NaN', true, false, null, new Number(1), Buffer.from('1')]);
    case 'bool': return r.pick([...common, 0, 1, 'true', '', null, new Boolean(true), NaN]);
    case 'string': return r.pick([...common, 0, NaN, true, null, new String('/tmp'), Buffer.from('/tmp'), ['/tmp']]);
    case 'nstring': return r.pick([...common.filter((v) => v !== undefined), 0, -1, true, new String('x'), Buffer.from('x')]);
    default: throw new Error(type);
  }
}

const LONG = 'x'.repeat(70000);

/**
 * Breaks the type of one field (or one element of it); returns the field name that must appear in
 * the addon's TypeError, and a tag that names this kind of mutation.
 */
function breakField(r, plan, field) {
  const type = FIELDS[field];
  const set = (v) => (v === undefined && r.chance(0.5) ? delete plan[field] : (plan[field] = v));
  switch (type) {
    case 'number': case 'bool': case 'string': case 'nstring':
      if (r.chance(0.1)) {
        Object.defineProperty(plan, field, trapGetter(field));
        return { field, tag: 'getter-throws' };
      }
      set(wrongScalar(r, type));
      return { field, tag: `${field}:type` };
    case 'ops': {
      const k = r.int(0, 7);
      if (k === 0) set(r.pick([undefined, null, 'ops', 5, { length: 1, 0: {} }, new Proxy([], {})]));
      else if (k === 1) plan.ops = [...plan.ops, r.pick([1, null, 'op', undefined, true, Symbol('op')])];
      else if (k === 2) plan.ops = [...plan.ops, new Array(3)];
      else if (k === 3) plan.ops = new Array(r.pick([1, 1000, 100000]));
      else if (k === 4) plan.ops = [...plan.ops, ...Array.from({ length: r.pick([10, 10000]) }, () => ({ ...plan.ops[0] })), 7];
      else {
        // One op with one field of the wrong type (or missing, or a throwing getter).
        const op = { ...plan.ops[0] };
        const of = r.pick(Object.keys(OP_FIELDS));
        plan.ops = [...plan.ops, op];
        if (r.chance(0.15)) {
          Object.defineProperty(op, of, trapGetter(`op.${of}`));
          return { field: 'ops', tag: 'getter-throws' };
        }
        if (r.chance(0.3) && OP_FIELDS[of] !== 'nstring') delete op[of];
        else op[of] = wrongScalar(r, OP_FIELDS[of]);
        return { field: 'ops', tag: `ops[].${of}:type` };
      }
      return { field: 'ops', tag: `ops:${k}` };
    }
    case 'rlimits': {
      const k = r.int(0, 4);
      if (k === 0) set(r.pick([undefined, null, 'x', 7, {}]));
      else if (k === 1) plan.rlimits = [...plan.rlimits, r.pick([7, 'x', null, {}, [1, 2], [1, 2, 3, 4], []])];
      else {
        // An element of a triple that is not a number: converted without a check.
        const triple = [7, 1024, 1024];
        triple[r.int(0, 2)] = r.pick(['7', null, undefined, {}, true, 1n, Symbol('r')]);
        plan.rlimits = [...plan.rlimits, triple];
        return { field: 'rlimits', tag: 'rlimits[][]:unchecked' };
      }
      return { field: 'rlimits', tag: `rlimits:${k}` };
    }
    case 'groups': {
      if (r.chance(0.4)) {
        set(r.pick([undefined, null, 1, 'x', {}]));
        return { field: 'groups', tag: 'groups:type' };
      }
      const g = [1, 2, 3];
      if (r.chance(0.3)) delete g[1]; // a hole
      else g[r.int(0, 2)] = r.pick(['1', null, undefined, {}, true, 1n]);
      plan.groups = g;
      return { field: 'groups', tag: 'groups[]:unchecked' };
    }
    case 'stdio': {
      if (r.chance(0.4)) {
        set(r.pick([undefined, null, 1, 'x', {}, [0, 1], [0, 1, 2, 3], []]));
        return { field: 'stdio', tag: 'stdio:type' };
      }
      const s = [-1, -1, -1];
      s[r.int(0, 2)] = r.pick(['1', null, undefined, {}, true, 1n]);
      plan.stdio = s;
      return { field: 'stdio', tag: 'stdio[]:unchecked' };
    }
    case 'strings': {
      const k = r.int(0, 3);
      if (k === 0) set(r.pick([undefined, null, 'a', 1, {}, { length: 1, 0: 'a' }]));
      else if (k === 1) plan[field] = ['a', r.pick([1, null, undefined, {}, ['a'], new String('a'), Symbol('a')])];
      else if (k === 2) plan[field] = [...Array.from({ length: 100000 }, (_, i) => `s${i}`), 0];
      else plan[field] = [LONG, LONG, 5];
      return { field, tag: `${field}:${k}` };
    }
    case 'seccomp':
      plan.seccomp = r.pick([0, 'bpf', {}, [], true, Buffer.alloc(0), Buffer.alloc(7), Buffer.alloc(8 * 4097), new Uint8Array(12), new ArrayBuffer(8)]);
      return { field: 'seccomp', tag: 'seccomp:type' };
    default:
      throw new Error(field);
  }
}

/** The plan every case starts from: harmless if it ever ran (tmpfs root, nothing to exec). */
function basePlan(K, staging, capLast) {
  return {
    cloneFlags: K.CLONE_NEWNS | K.CLONE_NEWPID | K.CLONE_NEWUTS | K.CLONE_NEWIPC | K.CLONE_NEWNET,
    cgroupFd: -1,
    cgroupInto: false,
    staging,
    ops: [{ kind: K.OP_MOUNT, where: K.WHERE_OPEN_ROOT, mode: 0, dev: 0, flags: K.MS_NOSUID | K.MS_NODEV, src: 'tmpfs', dst: staging, fstype: 'tmpfs', data: 'mode=0755,size=1m' }],
    hostname: 'fuzz',
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
    candidates: ['/nsbox-fuzz-nothing-here'],
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

/** Tier A cases that are not random: one per field and kind of breakage, the reproducers. */
function fixedTypeCases(K, staging, capLast) {
  const out = [];
  const add = (desc, make, field, tag) => out.push({ desc, make, field, tags: [tag || desc] });
  const base = () => basePlan(K, staging, capLast);
  add('spawn() without a plan', () => undefined, 'plan');
  for (const v of [null, 1, 'plan', true, Symbol('p')]) add(`spawn(${String(v)})`, () => v, 'plan');
  add('spawn([])', () => [], undefined, 'spawn([])');
  for (const f of Object.keys(FIELDS)) {
    if (FIELDS[f] !== 'nstring' && f !== 'seccomp') add(`missing ${f}`, () => { const p = base(); delete p[f]; return p; }, f, `${f}:missing`);
    add(`${f} of a wrong type`, () => ({ ...base(), [f]: FIELDS[f] === 'bool' ? 1 : FIELDS[f] === 'number' ? '1' : 42 }), f, `${f}:type`);
  }
  // Optional (absent means false): only a present value of another type is refused.
  for (const v of [1, 'true', null, {}, new Boolean(true)]) add(`netnsReserve = ${String(v)}`, () => ({ ...base(), netnsReserve: v }), 'netnsReserve', 'netnsReserve:type');
  for (const v of [1, 'true', null, {}, new Boolean(true)]) add(`mntTemplate = ${String(v)}`, () => ({ ...base(), mntTemplate: v }), 'mntTemplate', 'mntTemplate:type');
  for (const v of [1, 'true', null, {}, new Boolean(true)]) add(`ipcnsReserve = ${String(v)}`, () => ({ ...base(), ipcnsReserve: v }), 'ipcnsReserve', 'ipcnsReserve:type');
  // Optional, spawnAsync only: a cgroup directory for its worker to make; spawn() refuses any.
  for (const v of [1, {}, true]) add(`cgroupMkdir = ${String(v)}`, () => ({ ...base(), cgroupMkdir: v }), 'cgroupMkdir', 'cgroupMkdir:type');
  add('cgroupMkdir given to spawn()', () => ({ ...base(), cgroupMkdir: '/sys/fs/cgroup/nsbox-fuzz-never' }), 'cgroupMkdir', 'cgroupMkdir:sync');
  add('cgroupMkdir that is relative', () => ({ ...base(), cgroupMkdir: 'nsbox-fuzz-never' }), 'cgroupMkdir', 'cgroupMkdir:relative');
  add('cgroupBase = 1', () => ({ ...base(), cgroupBase: 1 }), 'cgroupBase', 'cgroupBase:type');
  // Optional: an id from compileOps, or absent/null; anything else (or an id never given) is refused.
  for (const v of ['ops', {}, [], true, Buffer.alloc(8), 0, -1, 1.5, 2 ** 32, 4294967295]) add(`opsCompiled = ${Array.isArray(v) ? '[]' : String(v)}`, () => ({ ...base(), opsCompiled: v }), 'opsCompiled', 'opsCompiled:type');
  add('a getter that throws (cloneFlags)', () => Object.defineProperty(base(), 'cloneFlags', trapGetter('cloneFlags')), 'cloneFlags', 'getter-throws');
  add('a getter that throws (envp)', () => Object.defineProperty(base(), 'envp', trapGetter('envp')), 'envp', 'getter-throws');
  add('a Proxy plan whose get trap throws', () => new Proxy(base(), { get() { throw new InputTrap('proxy get'); } }), undefined, 'plan:proxy-throws');
  add('an op with a kind that is a string', () => { const p = base(); p.ops = [...p.ops, { ...p.ops[0], kind: '1' }]; return p; }, 'kind', 'ops[].kind:type');
  add('an op without dst', () => { const p = base(); const op = { ...p.ops[0] }; delete op.dst; p.ops = [...p.ops, op]; return p; }, 'dst', 'ops[].dst:type');
  add('ops with a hole', () => { const p = base(); p.ops = [p.ops[0], , p.ops[0]]; return p; }, 'ops[]', 'ops:2'); // eslint-disable-line no-sparse-arrays
  add('ops = new Array(100000) (sparse)', () => ({ ...base(), ops: new Array(100000) }), 'ops[]', 'ops:3');
  add('ops = new Array(2**32 - 1) (sparse, huge length)', () => ({ ...base(), ops: new Array(2 ** 32 - 1) }), 'ops[]', 'ops:huge-length');
  add('rlimits with a pair', () => ({ ...base(), rlimits: [[7, 1]] }), 'rlimits[]', 'rlimits:1');
  add("rlimits with a string resource ([['7', 1024, 1024]])", () => ({ ...base(), rlimits: [['7', 1024, 1024]] }), 'rlimits', 'rlimits[][]:unchecked');
  add('rlimits with a null limit ([[7, null, 1024]])', () => ({ ...base(), rlimits: [[7, null, 1024]] }), 'rlimits', 'rlimits[][]:unchecked');
  add("groups with a string (['1'])", () => ({ ...base(), groups: ['1'] }), 'groups', 'groups[]:unchecked');
  add('groups with a hole ([, 1])', () => ({ ...base(), groups: [, 1] }), 'groups', 'groups[]:unchecked'); // eslint-disable-line no-sparse-arrays
  add("stdio with a string (['0', 1, 2])", () => ({ ...base(), stdio: ['0', 1, 2] }), 'stdio', 'stdio[]:unchecked');
  add('stdio of length 2', () => ({ ...base(), stdio: [0, 1] }), 'stdio', 'stdio:type');
  add('argv with a number', () => ({ ...base(), argv: ['a', 1] }), 'argv', 'argv:1');
  add('envp of 100000 strings and a number', () => ({ ...base(), envp: [...Array.from({ length: 100000 }, (_, i) => `E${i}=1`), 1] }), 'envp', 'envp:2');
  add('seccomp of 7 bytes', () => ({ ...base(), seccomp: Buffer.alloc(7) }), 'seccomp', 'seccomp:type');
  add('seccomp of 4097 instructions', () => ({ ...base(), seccomp: Buffer.alloc(8 * 4097) }), 'seccomp', 'seccomp:type');
  add('seccomp as a string', () => ({ ...base(), seccomp: 'bpf' }), 'seccomp', 'seccomp:type');
  add('initFd >= 0 with initArgv missing', () => { const p = { ...base(), initFd: 0 }; delete p.initArgv; return p; }, 'initArgv', 'initArgv:missing');
  add('initFd >= 0 with initSlot past initArgv', () => ({ ...base(), initFd: 0, initArgv: ['a'], initSlot: 5 }), 'initSlot', 'initSlot:range');
  return out;
}

/** Tier A random case n: the base plan with 1-3 fields broken, plus odd extra keys. */
function randomTypeCase(seed, n, K, staging, capLast) {
  const r = caseRng(seed, 'a', n);
  const plan = basePlan(K, staging, capLast);
  const tags = [];
  let field;
  const times = r.int(1, 3);
  for (let i = 0; i < times; i++) {
    try {
      const b = breakField(r, plan, r.pick(Object.keys(FIELDS)));
      tags.push(b.tag);
      field ??= b.field;
    } catch {
      // an earlier mutation made this one impossible (ops already not an array, a trap): skip it
    }
  }
  if (!tags.length) {
    plan.cloneFlags = 'x';
    tags.push('cloneFlags:type');
  }
  if (r.chance(0.2)) plan[r.pick(['__proto__', 'constructor', 'nsSock', 'cmdFd', 'pathDirs', 'x'.repeat(300)])] = r.pick([1, 'x', null, {}]);
  return { desc: `random type case ${n}`, make: () => plan, field: undefined, tags };
}

// Tier B ----------------------------------------------------------------------------------------

const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, SYNCHRONOUS: 16, REMOUNT: 32, MANDLOCK: 64, DIRSYNC: 128, NOSYMFOLLOW: 256,
  NOATIME: 1024, NODIRATIME: 2048, BIND: 4096, MOVE: 8192, REC: 16384, SILENT: 32768, UNBINDABLE: 1 << 17,
  PRIVATE: 1 << 18, SLAVE: 1 << 19, SHARED: 1 << 20, RELATIME: 1 << 21, STRICTATIME: 1 << 24, LAZYTIME: 1 << 25,
};
const ODD_NUMBERS = [0, -0, 1, -1, 0.5, NaN, Infinity, -Infinity, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 32 - 1, 2 ** 32, 2 ** 53, 2 ** 64, 1e300, -1e300];
const SAFE_FSTYPES = [null, 'tmpfs', '', 'nsbox-no-such-fs', 'TMPFS', 'tmpfs\0proc'];
const FIFO = 0o010000, CHR = 0o020000, REG = 0o100000, SOCK = 0o140000, DIR = 0o040000, BLK = 0o060000;
const SAFE_DEVS = [0, 0x103, 0x105, 0x107]; // makedev(1, 3|5|7): null, zero, full

function oddPath(r) {
  return r.pick([
    '/', '', '.', '..', '/..', '/../..', '/a', '/a/b', 'a', 'a/../../..', '/a/./b/', '//a//b//', '/dev/null', '/proc/self',
    '/proc/self/fd/0', '/etc', '/tmp', `/${'a'.repeat(255)}`, `/${'a'.repeat(256)}`, `/${'a/'.repeat(2100)}`, `/${'b'.repeat(4095)}`,
    '/a\0b', '/😀', '/\uD800', '/l', '/l/x', '/loop', '/loop/x', '/a/b/c/d/e/f/g/h', '/.', '/a/..', `/${'../'.repeat(100)}`,
  ]);
}

/**
 * A number that C++ cannot take as it is (NaN, infinities, out of the target type's range: undefined
 * behaviour in a static_cast, which UBSan reports). Tags the case, so that after one such report
 * the rest of the run goes on without them (see fuzzTier).
 */
function odd(r, list = ODD_NUMBERS) {
  r.usedOdd = true;
  return r.pick(list);
}

/** A well-typed op whose every path is inside the container's root. */
function safeOp(r, K) {
  const kind = r.chance(0.9) ? r.pick([K.OP_MOUNT, K.OP_REMOUNT, K.OP_MKDIR, K.OP_TOUCH, K.OP_SYMLINK, K.OP_MKNOD]) : r.chance(0.5) ? r.pick([0, 7, 255, 2 ** 32 - 1]) : odd(r, [-1, 2 ** 32 + 1, 1.5, NaN]);
  let where = K.WHERE_DST_IN_ROOT;
  if (r.chance(0.3)) where |= K.WHERE_SRC_IN_ROOT; // with a null source too
  if (r.chance(0.1)) where |= K.WHERE_OPEN_ROOT;
  if (r.chance(0.05)) where = (where | r.pick([8, 1 << 30, 2 ** 31])) >>> 0;
  let src = r.chance(0.3) ? null : oddPath(r);
  if (kind === K.OP_SYMLINK && r.chance(0.7)) src = r.pick(['/', '..', '/l', 'l', 'loop', '/loop', '../../../../etc', '/proc/self/root', 'a'.repeat(5000), '']);
  // A source is a container path too, never a host path, whatever the kind turns into in C++
  // (a kind of 2**32 + 1 or 1.5 is OP_MOUNT there).
  if (src !== null) where = (where | K.WHERE_SRC_IN_ROOT) >>> 0;
  let flags = 0;
  if (r.chance(0.8)) {
    for (const bit of Object.values(MS)) if (r.chance(0.15)) flags |= bit;
    flags >>>= 0;
  } else flags = r.chance(0.5) ? r.pick([0, 2 ** 32 - 1, 2 ** 53]) : odd(r);
  // Whatever the kind: no block device, and no device number but null, zero and full.
  const type = r.pick([REG, FIFO, SOCK, CHR, DIR, 0]);
  const mode = r.chance(0.8) ? type | r.int(0, 0o7777) : odd(r);
  const dev = r.pick(SAFE_DEVS);
  return {
    kind, where, mode, dev, flags, src,
    dst: oddPath(r),
    fstype: r.pick(SAFE_FSTYPES),
    data: r.pick([null, '', 'size=1k', 'mode=0', 'size=1k,nr_inodes=2', 'x'.repeat(5000), 'uid=1,gid=1', ',,,', 'size=-1']),
  };
}


/** Checks that a Tier B plan is still pinned to the harmless shape; throws if not. */
function assertHarmless(plan, K, staging) {
  const need = K.CLONE_NEWNS | K.CLONE_NEWPID | K.CLONE_NEWUTS | K.CLONE_NEWIPC | K.CLONE_NEWNET;
  const ok = (c, what) => {
    if (!c) throw new Error(`fuzz: tier B plan would not be harmless: ${what}`);
  };
  ok((plan.cloneFlags & need) === need, 'namespaces');
  ok(plan.staging === staging, 'staging');
  const root = plan.ops[0];
  ok(root.kind === K.OP_MOUNT && root.where === K.WHERE_OPEN_ROOT && root.dst === staging && root.fstype === 'tmpfs', 'root op');
  for (const op of plan.ops.slice(1)) {
    ok(Number.isInteger(op.where) && op.where >= 0 && op.where & K.WHERE_DST_IN_ROOT, 'op dst outside the root');
    ok(op.src === null || op.where & K.WHERE_SRC_IN_ROOT, 'op source outside the root');
    ok(SAFE_FSTYPES.includes(op.fstype), `fstype ${op.fstype}`);
    ok(SAFE_DEVS.includes(op.dev), 'device number');
    ok(ODD_NUMBERS.includes(op.mode) || (Number.isInteger(op.mode) && (op.mode & 0o170000) !== BLK), 'block device');
  }
  for (const f of ['initFd', 'trampFd', 'enterPidfd', 'cgroupFd']) ok(plan[f] < 0, f);
}

/** Tier B case n: well-typed, odd values, pinned to the harmless shape. */
function randomValueCase(seed, n, K, staging, capLast) {
  const r = caseRng(seed, 'b', n);
  const plan = basePlan(K, staging, capLast);
  const tags = [];
  const touch = (tag, fn) => {
    if (r.chance(0.35)) {
      fn();
      tags.push(tag);
    }
  };
  touch('cloneFlags', () => (plan.cloneFlags |= r.pick([0, K.CLONE_NEWCGROUP, K.CLONE_NEWUSER])));
  touch('ops', () => {
    const count = r.pick([1, 2, 3, 5, 8, 30]);
    for (let i = 0; i < count; i++) plan.ops.push(safeOp(r, K));
  });
  touch('hostname', () => (plan.hostname = r.pick([null, '', 'a'.repeat(64), 'a'.repeat(65), 'a'.repeat(5000), '😀', 'a\0b', '-', '.'])));
  touch('netLoUp', () => (plan.netLoUp = r.chance(0.5)));
  touch('cwd', () => (plan.cwd = r.chance(0.2) ? null : oddPath(r)));
  touch('rlimits', () => {
    const lim = () => (r.chance(0.7) ? r.pick([0, 1, 64, 1024, -1, 2 ** 32, 2 ** 53]) : odd(r));
    plan.rlimits = Array.from({ length: r.int(0, 6) }, () => [r.pick([0, 1, 2, 3, 4, 6, 7, 9, 15, 16, -1, 100, 2 ** 31 - 1]), lim(), lim()]);
  });
  touch('newKeyring', () => (plan.newKeyring = r.chance(0.5)));
  touch('capLast', () => (plan.capLast = r.chance(0.8) ? r.pick([-1, 0, 5, capLast, 63]) : odd(r, [64, 100]))); // 1 << 64: UB
  touch('capsKeep', () => (plan.capsKeep = r.pick(['', '0', '-1', '18446744073709551615', '18446744073709551616', 'abc', '1e10', ' 7', '0x1f', '9'.repeat(100)])));
  touch('creds', () => {
    plan.setCreds = r.chance(0.8);
    const id = () => (r.chance(0.7) ? r.pick([0, 65534, 1000, 2 ** 32 - 1, 2 ** 32 - 2]) : odd(r));
    plan.uid = id();
    plan.gid = id();
    plan.groups = r.chance(0.1) ? Array.from({ length: r.pick([65536, 65537, 100000]) }, (_, i) => i) : Array.from({ length: r.int(0, 5) }, () => r.pick(ODD_NUMBERS));
  });
  touch('noNewPrivs', () => (plan.noNewPrivs = r.chance(0.5)));
  touch('pdeathsig', () => (plan.pdeathsig = r.chance(0.5)));
  touch('stdio', () => {
    const fdv = () => r.pick([-1, -2, 0, 1, 2, 3, 4, 100, 1023, 65536, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, NaN]);
    plan.stdio = [fdv(), fdv(), fdv()]; // converted with Int32Value: defined for every number
    plan.statusFd = r.chance(0.8) ? r.pick([-1, 0, 1, 2, 3, 4, 100, 2 ** 31 - 1]) : odd(r, [2 ** 31, NaN, -Infinity]);
  });
  touch('exec', () => {
    const strs = (k) => Array.from({ length: k }, () => r.pick(['/', '/bin/sh', 'sh', '/nothing', '', '/a\0b', '😀', 'x'.repeat(5000), '/dev/null', '/proc/self/exe', '/a']));
    plan.candidates = strs(r.pick([0, 1, 3, 100, 5000]));
    plan.argv = strs(r.pick([0, 1, 3, 1000]));
    plan.envp = strs(r.pick([0, 1, 3, 1000]));
  });
  touch('negative fds', () => {
    for (const f of ['initFd', 'trampFd', 'enterPidfd', 'cgroupFd']) plan[f] = r.chance(0.8) ? r.pick([-1, -2, -100, -(2 ** 31)]) : odd(r, [-1e300, -Infinity]);
    plan.cgroupInto = r.chance(0.5);
  });
  touch('enter', () => {
    plan.enterFlags = r.chance(0.5) ? r.pick([0, 1, 2 ** 32, 2 ** 53]) : odd(r);
    plan.enterRoot = r.pick([null, '/', '/proc/1/root', '']);
    plan.ptySock = r.pick([-1, 0, 1, 2, 3, 1e9]);
    plan.ptyCols = r.pick([0, 80, 65535, 65536, -1, NaN, '80']);
    plan.ptyRows = r.pick([0, 24, 2 ** 32, 'x']);
  });
  touch('seccomp', () => {
    const len = r.pick([1, 2, 3, 100, 4096]) * 8;
    const buf = Buffer.alloc(len);
    for (let i = 0; i < len; i++) buf[i] = r.int(0, 255);
    plan.seccomp = r.chance(0.2) ? new Uint8Array(buf) : buf;
  });
  touch('statusRead', () => (plan.statusRead = r.pick([-1, 0, 1, 2, 1e9, NaN, 'x', null])));
  if (r.chance(0.05)) plan.walkOnly = true;
  if (!tags.length) tags.push('base');
  if (r.usedOdd) tags.push('odd-number');
  assertHarmless(plan, K, staging);
  return { desc: `random value case ${n}`, make: () => plan, field: undefined, tags };
}

// ---------------------------------------------------------------------------------------------
// The worker: runs cases and reports each one over fd 3 before and after it runs.

if (process.env.NSBOX_FUZZ_PLAN_WORKER) {
  runWorker().catch((e) => {
    fs.writeSync(2, `worker failed: ${e && e.stack}\n`);
    process.exit(70);
  });
  return;
}

function fdCount() {
  return fs.readdirSync('/proc/self/fd').length;
}

async function runWorker() {
  const cfg = JSON.parse(process.env.NSBOX_FUZZ_PLAN_WORKER);
  const { native } = require('../../dist/native');
  const b = native();
  const K = b.constants;
  const send = (o) => fs.writeSync(3, `@@fz ${JSON.stringify(o)}\n`);
  const skip = new Set(cfg.skip);
  const fixed = fixedTypeCases(K, cfg.staging, cfg.capLast);
  const fdsBefore = fdCount();
  let n = cfg.start;
  const deadline = cfg.deadline;
  for (;;) {
    if (cfg.only !== null) {
      if (n !== cfg.only) break;
    } else if (cfg.fixedOnly) {
      if (n >= fixed.length) break;
    } else if (Date.now() >= deadline) break;
    let c;
    if (cfg.tier === 'a') c = n < fixed.length ? fixed[n] : randomTypeCase(cfg.seed, n, K, cfg.staging, cfg.capLast);
    else c = randomValueCase(cfg.seed, n, K, cfg.staging, cfg.capLast);
    if (cfg.only === null && c.tags.some((tg) => skip.has(tg))) {
      send({ n, skipped: true });
      n++;
      continue;
    }
    send({ n, start: true, tags: c.tags, desc: c.desc });
    const outcome = await runCase(b, c, cfg.tier, K);
    send({ n, done: true, ...outcome });
    n++;
    if (cfg.only !== null) break;
  }
  // What a case could leave in this process: fds (the error pipe, pidfds) and children.
  await new Promise((r) => setTimeout(r, 20));
  send({ end: true, next: n, fdsBefore, fdsAfter: fdCount() });
}

/** Runs one case; returns { ok } or { bad, kind }. */
async function runCase(b, c, tier, K) {
  let plan;
  try {
    plan = c.make();
  } catch (e) {
    return { bad: `the case could not be built: ${e.message}`, kind: 'fuzzer' };
  }
  let res;
  try {
    res = plan === undefined && c.desc === 'spawn() without a plan' ? b.spawn() : b.spawn(plan);
  } catch (e) {
    if (e && e.fuzzTrap) return { ok: 'trap' };
    if (!(e instanceof TypeError)) return { bad: `threw ${e && e.constructor && e.constructor.name}: ${e && e.message}`, kind: `error-class:${e && e.constructor && e.constructor.name}:${String(e && e.message).slice(0, 40)}` };
    if (!/^nsbox native plan: /.test(e.message)) return { bad: `threw a TypeError without the "nsbox native plan:" prefix: ${e.message}`, kind: `error-message:${e.message.slice(0, 40)}` };
    // An oversized array is refused as a whole ("ops"), an element of it as "ops[]".
    if (c.field && !e.message.includes(c.field.replace(/\[\]$/, ''))) return { bad: `the TypeError names another field: ${e.message} (expected ${c.field})`, kind: `error-field:${c.field}` };
    return { ok: 'threw' };
  }
  if (tier === 'a') {
    await reap(res);
    return { bad: `spawn() accepted a plan with a field of the wrong type and returned ${util.inspect(res, { depth: 1 })}`, kind: `accepted:${c.tags.join(',')}` };
  }
  if (!res || typeof res !== 'object' || typeof res.usedClone3 !== 'boolean') return { bad: `spawn() returned ${util.inspect(res)}`, kind: 'result-shape' };
  if (res.step !== undefined) {
    const okRec = Number.isInteger(res.step) && res.step > 0 && res.step < K.STEP_COUNT && Number.isInteger(res.errno) && res.errno >= 0 && Number.isInteger(res.index);
    return okRec ? { ok: 'record', step: res.step, errno: res.errno } : { bad: `an error record that is not one: ${JSON.stringify(res)}`, kind: 'record-shape' };
  }
  // A "started" process: nothing in the root can run, so the child died before or in exec.
  const info = await reap(res);
  if (info && info.signal !== null && [4, 6, 7, 8, 11].includes(info.signal)) {
    return { bad: `the child died by signal ${info.signal} before exec (a crash in the child path)`, kind: `child-crash:${info.signal}` };
  }
  return { ok: 'started', exit: info };
}

/** Waits for a started process to exit (killing it after 3 s) and returns how it ended. */
function reap(res) {
  if (!res || !res.process) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => res.process.signal(9), 3000);
    res.process.watch((code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The test: starts workers, watches them, collects findings.

const t = require('tap');
const { spawn: spawnChild } = require('node:child_process');
const { snapshot } = require('../helpers');

function parseSeed(s) {
  if (s === undefined || s === '') return crypto.randomBytes(4).readUInt32LE(0);
  const v = Number(s);
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`NSBOX_FUZZ_SEED must be a 32-bit unsigned integer, not ${s}`);
  return v;
}
const SEED = parseSeed(process.env.NSBOX_FUZZ_SEED);
const SECONDS = Number(process.env.NSBOX_FUZZ_SECONDS ?? 20);
const CASE_TIMEOUT = Number(process.env.NSBOX_FUZZ_CASE_TIMEOUT || 15) * 1000;
const ONLY = process.env.NSBOX_FUZZ_CASE ? process.env.NSBOX_FUZZ_CASE.split(':') : null;
const SANITIZER = /(ERROR|WARNING): (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer/;

t.comment(`fuzz seed ${SEED} (replay with NSBOX_FUZZ_SEED=${SEED}), ${SECONDS} s`);
if (!(SECONDS >= 0)) throw new Error('NSBOX_FUZZ_SECONDS must be a number of seconds');
if (SECONDS === 0 && !ONLY) {
  t.plan(0, 'NSBOX_FUZZ_SECONDS=0: fuzzing skipped');
  return;
}

const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-fuzz-staging-'));
t.teardown(() => fs.rmSync(staging, { recursive: true, force: true }));
const capLast = (() => {
  try {
    return Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
  } catch {
    return 40;
  }
})();

/**
 * Runs tier `tier` from case `start` until `deadline` (or only `only`), in as many workers as
 * crashes and hangs make necessary. Returns per-outcome counts; findings go to `t`.
 */
async function fuzzTier(t, tier, { start = 0, deadline = null, fixedOnly = false, only = null, seen = new Map() }) {
  const skip = new Set();
  const counts = {};
  const finding = (kind, msg, extra) => {
    const prev = seen.get(kind);
    if (prev) return void prev.count++;
    seen.set(kind, { count: 1 });
    t.fail(`${msg}`, extra);
  };
  let next = start;
  let workers = 0;
  for (;;) {
    workers++;
    const r = await runWorkerProcess({ seed: SEED, tier, start: next, deadline, staging, capLast, skip: [...skip], fixedOnly, only });
    for (const [k, v] of Object.entries(r.counts)) counts[k] = (counts[k] || 0) + v;
    for (const f of r.findings) finding(f.kind, f.msg, f.extra);
    if (r.ended) {
      if (r.fdsAfter !== r.fdsBefore) finding('fd-leak', `the worker has ${r.fdsAfter - r.fdsBefore} more fds after its cases (cases ${next}..${r.next - 1}; seed ${SEED})`);
      break;
    }
    // A crash or hang: that case is reported; go on after it, without its kinds of mutation.
    const c = r.last;
    if (!c) {
      finding('worker', `the fuzz worker died before running a case: ${r.exit}`, { stderr: r.stderr.slice(-3000) });
      break;
    }
    // Fixed cases all run; random ones skip what already crashed or hung (tier B: only the numbers
    // C++ cannot take; its other tags name fields that nearly every case touches).
    if (!fixedOnly) for (const tg of c.tags || []) if (tier === 'a' || tg === 'odd-number') skip.add(tg);
    next = c.n + 1;
    if (only !== null) break;
    if (!fixedOnly && Date.now() >= deadline) break;
  }
  return { counts, workers };
}

/** One worker process; resolves when it ends, crashes or is killed for hanging. */
function runWorkerProcess(cfg) {
  return new Promise((resolve) => {
    const child = spawnChild(process.execPath, [__filename], {
      env: { ...process.env, NSBOX_FUZZ_PLAN_WORKER: JSON.stringify(cfg) },
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    const out = { counts: {}, findings: [], ended: false, last: null, stderr: '', exit: '' };
    let current = null;
    let buf = '';
    let other = '';
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        out.hung = current;
        child.kill('SIGKILL');
      }, CASE_TIMEOUT);
    };
    arm();
    child.stdout.on('data', (d) => (other += d));
    child.stderr.on('data', (d) => (out.stderr += d));
    child.stdio[3].on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const at = line.indexOf('@@fz ');
        if (at < 0) {
          other += line + '\n';
          continue;
        }
        let m;
        try {
          m = JSON.parse(line.slice(at + 5));
        } catch {
          other += line + '\n';
          continue;
        }
        arm();
        if (m.skipped) out.counts.skipped = (out.counts.skipped || 0) + 1;
        else if (m.start) {
          current = out.last = m;
          out.first ??= m.n;
        }
        else if (m.done) {
          current = null;
          const key = m.ok ? `ok:${m.ok}` : 'bad';
          out.counts[key] = (out.counts[key] || 0) + 1;
          if (m.bad) out.findings.push({ kind: m.kind, msg: `${m.bad} [${describe(cfg, out.last)}]` });
        } else if (m.end) Object.assign(out, { ended: true, next: m.next, fdsBefore: m.fdsBefore, fdsAfter: m.fdsAfter });
      }
    });
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      out.exit = signal ? `signal ${signal}` : `exit code ${code}`;
      const text = out.stderr + other;
      const died = out.hung || (!out.ended && current);
      if (SANITIZER.test(text) && !died) {
        // Reports from a child (before its exec) arrive on the worker's stderr with no case attached.
        const range = out.first !== undefined ? ` (tier ${cfg.tier} cases ${out.first}..${out.last ? out.last.n : out.first}, seed ${SEED})` : '';
        out.findings.push({ kind: `sanitizer:${(text.match(SANITIZER) || [''])[0]}`, msg: `a sanitizer report from the worker or one of its children${range}`, extra: { output: excerpt(text) } });
      }
      if (out.hung) {
        out.findings.push({ kind: `hang:${out.hung.tags.join(',')}`, msg: `no progress for ${CASE_TIMEOUT / 1000} s: [${describe(cfg, out.hung)}]` });
      } else if (!out.ended && current) {
        // One report per way of dying (the fatal error's first line), not per case.
        const why = (out.stderr.match(/FATAL ERROR: .*|terminate called .*|AddressSanitizer: [\w-]+|runtime error: .*/) || [''])[0].replace(/0x[0-9a-f]+|\d+/g, 'N');
        out.findings.push({ kind: `crash:${out.exit}:${why}`, msg: `the worker died (${out.exit}${why ? `, ${why}` : ''}) in [${describe(cfg, current)}]`, extra: { stderr: excerpt(out.stderr) } });
      } else if (!out.ended && !(code === 0 && !signal)) {
        out.findings.push({ kind: 'worker-exit', msg: `the worker ended with ${out.exit} between cases`, extra: { stderr: excerpt(out.stderr) } });
      }
      if (out.ended && code !== 0) out.findings.push({ kind: 'worker-exit', msg: `the worker finished its cases but exited with ${out.exit}`, extra: { stderr: excerpt(out.stderr) } });
      resolve(out);
    });
  });
}

function describe(cfg, c) {
  if (!c) return 'no case';
  return `tier ${cfg.tier} case ${c.n}: ${c.desc}; mutations ${c.tags.join(', ')}; replay: NSBOX_FUZZ_SEED=${SEED} NSBOX_FUZZ_CASE=${cfg.tier}:${c.n}`;
}

function excerpt(s) {
  const lines = s.split('\n');
  const i = lines.findIndex((l) => SANITIZER.test(l) || /FATAL|Abort|Segmentation|terminate/.test(l));
  return (i >= 0 ? lines.slice(Math.max(0, i - 2), i + 30) : lines.slice(-30)).join('\n');
}

t.test('the base plan fails at exec, harmlessly (sanity of the fuzzer)', { skip: process.getuid() !== 0 && 'tier B needs root' }, async (t) => {
  const { native } = require('../../dist/native');
  const b = native();
  const res = b.spawn(basePlan(b.constants, staging, capLast));
  t.match(res, { step: Number, errno: Number }, 'an error record');
  t.equal(res.errno, os.constants.errno.ENOENT, 'ENOENT: nothing to exec in the empty root');
  t.same(fs.readdirSync(staging), [], 'the staging directory on the host is untouched');
});

const before = snapshot();
const mountsBefore = fs.readFileSync('/proc/self/mountinfo', 'utf8');

t.test('tier A: plans with a field of the wrong type are refused with a TypeError', async (t) => {
  if (ONLY && ONLY[0] !== 'a') return t.pass('not replayed');
  const start = performance.now();
  const seen = new Map(); // one report per kind of finding across the fixed and the random cases
  const fixed = await fuzzTier(t, 'a', { start: ONLY ? Number(ONLY[1]) : 0, fixedOnly: !ONLY, only: ONLY ? Number(ONLY[1]) : null, seen });
  t.comment(`fixed cases: ${JSON.stringify(fixed.counts)}, ${fixed.workers} worker(s), ${Math.round(performance.now() - start)} ms`);
  if (ONLY) return;
  const share = process.getuid() === 0 ? 0.4 : 0.9;
  const random = await fuzzTier(t, 'a', { start: 1000, deadline: Date.now() + Math.max(1, SECONDS * share * 1000 - (performance.now() - start)), seen });
  t.comment(`random cases: ${JSON.stringify(random.counts)}, ${random.workers} worker(s)`);
  t.pass('tier A done');
});

t.test('tier B: well-typed odd plans fail with an error record, inside their namespaces', { skip: process.getuid() !== 0 && 'tier B really clones: root only' }, async (t) => {
  if (ONLY && ONLY[0] !== 'b') return t.pass('not replayed');
  const r = await fuzzTier(t, 'b', { start: ONLY ? Number(ONLY[1]) : 0, deadline: Date.now() + SECONDS * 0.5 * 1000, only: ONLY ? Number(ONLY[1]) : null });
  t.comment(`cases: ${JSON.stringify(r.counts)}, ${r.workers} worker(s)`);
  t.same(fs.readdirSync(staging), [], 'the staging directory on the host is untouched');
});

t.test('nothing was left on the host', async (t) => {
  await new Promise((r) => setTimeout(r, 50));
  t.same(snapshot(), before, 'no fd, zombie, child, mount or cgroup left in this process');
  t.equal(fs.readFileSync('/proc/self/mountinfo', 'utf8'), mountsBefore, 'the mount table is unchanged');
  t.notOk(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(staging), 'nothing is mounted on the staging directory here');
});
