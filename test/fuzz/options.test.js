// Fuzzing of the option validation (lib/options.ts through resolveAppOptions, spawn and run).
//
// Properties checked, for random JSON-ish values and for mutations of valid options (wrong types,
// huge numbers, NaN, -0, Infinity, long strings, NUL bytes, unicode, __proto__/constructor keys,
// deep nesting, sparse arrays, getters that throw, Proxies, values that change between reads):
//  1. resolveAppOptions either returns options that satisfy every documented invariant, or throws a
//     TypeError/RangeError with an ERR_* code (an error thrown by the caller's own getter or Proxy
//     trap may pass through unchanged). Nothing else: no crash, no plain Error, no stack overflow.
//  2. It never pollutes Object.prototype and never changes its (JSON) input.
//  3. For inputs it rejects, spawn() throws and run() rejects with the same error, without calling
//     into the addon (no process, pipe or memfd is made) and leaving no fd, child, mount or cgroup.
// Bounded in time: NSBOX_FUZZ_SECONDS (default 20) split between the parts; the PRNG seed is printed
// and NSBOX_FUZZ_SEED replays a run (NSBOX_FUZZ_CASE=<part>:<n> replays one case).
'use strict';
const t = require('tap');
const util = require('node:util');
const crypto = require('node:crypto');

const { resolveAppOptions } = require('../../dist/options');
const nsbox = require('../..');
const { native } = require('../../dist/native');
const { snapshot } = require('../helpers');

// ---------------------------------------------------------------------------------------------
// Seeded PRNG (mulberry32) and the run's budget.

function parseSeed(s) {
  if (s === undefined || s === '') return crypto.randomBytes(4).readUInt32LE(0);
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`NSBOX_FUZZ_SEED must be a 32-bit unsigned integer, not ${s}`);
  return n;
}
const SEED = parseSeed(process.env.NSBOX_FUZZ_SEED);
const SECONDS = Number(process.env.NSBOX_FUZZ_SECONDS ?? 20);
if (!(SECONDS >= 0)) throw new Error('NSBOX_FUZZ_SECONDS must be a number of seconds');
const ONLY = process.env.NSBOX_FUZZ_CASE ? process.env.NSBOX_FUZZ_CASE.split(':') : null;

function mulberry32(a) {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
/** The PRNG of one case: a function of the run's seed, the part and the case number only. */
function caseRng(part, n) {
  const h = crypto.createHash('sha256').update(`${SEED}:${part}:${n}`).digest();
  const next = mulberry32(h.readUInt32LE(0));
  const r = {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (a) => a[Math.floor(next() * a.length)],
    chance: (p) => next() < p,
  };
  return r;
}

// ---------------------------------------------------------------------------------------------
// Values.

/** Thrown by getters, Proxy traps and toString of fuzzed inputs: allowed to pass through. */
class InputTrap extends Error {
  constructor(where) {
    super(`fuzz input trap (${where})`);
    this.fuzzTrap = true;
  }
}

const NUMBERS = [
  0, -0, 1, -1, 0.5, -0.5, 1.5, NaN, Infinity, -Infinity, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 32 - 2, 2 ** 32 - 1,
  2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 64, 1e308, -1e308, Number.MIN_VALUE, Number.EPSILON, 4095, 4096,
  65535, 65536, 65537, 0o7777, 0o10000, 4194304, 4194305, 10000, 10001, 0.01, 0.009, 1e-300,
];
const STRINGS = [
  '', ' ', 'a', '/', '//', '///', '/tmp', '/tmp/', '/x/', '/..', '/.', '/./x', '/x/..', '..', '.', 'tmp', './x', '~/',
  'a\0b', '\0', '/tmp/\0', '/x\0/../etc', 'ls -l', 'true', '/bin/true', 'sh', '😀', '/😀', '\uD800', '/\uDFFF', '\u202E',
  '\u0130', 'ß', 'ǅ', 'ﬃ', '\u00A0', '\t', '\n', '\r\n', 'ALL', 'all', 'CAP_ALL', 'cap_net_raw', 'NET_RAW', 'CAP_', 'cap_',
  'CHECKPOINT_RESTORE', '512K', '1.5G', '1e3', '0x10', ' 1 ', '-1', '1 KiB', '99999999999999999999T', 'Infinity', 'NaN',
  '4096', '0', 'default', 'none', 'bind', 'tmpfs', 'nfs', 'loopback', 'host', 'bridge', 'pipe', 'inherit', 'ignore',
  'pty', '0', '0-1', '0,1', '1-0', '0-', '-0', '0,,1', '4294967296', '0-4095', 'read', 'execve', 'mount', '__NR_read',
  'sys_read', 'A=B', 'PATH', 'HOME', '=', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty',
  'valueOf', 'command', 'comand', 'rootfs', 'limits', 'memroy', 'SIGKILL', '-x', 'x-', 'a.b', 'a..b', '.a', 'a.',
  'a'.repeat(63), 'a'.repeat(64), 'a'.repeat(65), `${'a'.repeat(63)}.${'b'.repeat(63)}`,
];
const LONG_STRINGS = () => [
  'x'.repeat(4095), '/' + 'a'.repeat(4094), '/' + 'a'.repeat(4095), '/' + 'a/'.repeat(3000), 'x'.repeat(65536),
  '/' + '\0'.repeat(1000), '😀'.repeat(5000), 'A'.repeat(20000),
];

function deep(r, depth, leaf) {
  let v = leaf;
  const arr = r.chance(0.5);
  for (let i = 0; i < depth; i++) v = arr ? [v] : { a: v };
  return v;
}

function throwingGetter(where, base = {}) {
  Object.defineProperty(base, where, {
    enumerable: true,
    configurable: true,
    get() {
      throw new InputTrap(`get ${where}`);
    },
  });
  return base;
}

function throwingProxy(target, trap) {
  return new Proxy(target, {
    [trap]() {
      throw new InputTrap(`proxy ${trap}`);
    },
  });
}

/** An "exotic" value: not JSON, possibly hostile, always deterministic. */
function exotic(r) {
  switch (r.int(0, 34)) {
    case 0: return 0n;
    case 1: return 2n ** 64n;
    case 2: return Symbol('fuzz');
    case 3: return () => {};
    case 4: return class Fuzz {};
    case 5: return new Date(NaN);
    case 6: return /re/g;
    case 7: return new Map([['command', ['/bin/true']]]);
    case 8: return new Set(['a']);
    case 9: return Promise.resolve(1);
    case 10: return Buffer.from('abc');
    case 11: return new Uint8Array([1, 2, 3]);
    case 12: return new Float64Array([NaN]);
    case 13: return new ArrayBuffer(8);
    case 14: return new AbortController().signal;
    case 15: return AbortSignal.abort();
    case 16: return Object.create(null);
    case 17: return Object.freeze({ a: 1 });
    case 18: return [, 1, , 2]; // eslint-disable-line no-sparse-arrays
    case 19: return new Array(r.pick([1, 5, 1000, 2 ** 20]));
    case 20: return Object.assign(['a', 'b'], { extra: 1 });
    case 21: return throwingGetter('x');
    case 22: return { toString() { throw new InputTrap('toString'); }, valueOf() { throw new InputTrap('valueOf'); } };
    case 23: return { [Symbol.toPrimitive]() { throw new InputTrap('toPrimitive'); } };
    case 24: return Object.defineProperty({}, 'constructor', { get() { throw new InputTrap('get constructor'); } });
    case 25: return new Proxy({}, {});
    case 26: return new Proxy(['a'], {});
    case 27: return throwingProxy({ a: 1 }, r.pick(['get', 'ownKeys', 'has', 'getOwnPropertyDescriptor', 'getPrototypeOf']));
    case 28: return throwingProxy(['/bin/true'], r.pick(['get', 'ownKeys', 'has', 'getOwnPropertyDescriptor']));
    case 29: return deep(r, r.pick([10, 100, 3000]), 'x');
    case 30: return new String('/tmp');
    case 31: return new Number(5);
    case 32: return new Boolean(true);
    case 33: return Object.create({ command: ['/bin/true'], rootfs: 'relative' });
    default: return JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}}');
  }
}

function randomKey(r) {
  return r.pick([
    ...STRINGS.slice(0, 20), 'command', 'rootfs', 'readonly', 'env', 'cwd', 'hostname', 'user', 'mounts', 'network',
    'limits', 'timeout', 'input', 'stdio', 'init', 'maxOutput', 'signal', 'cgroupParent', 'capabilities', 'seccomp',
    'uid', 'gid', 'groups', 'type', 'source', 'target', 'size', 'mode', 'memory', 'swap', 'pids', 'cpu', 'cpuWeight',
    'ioWeight', 'cpuset', 'add', 'drop', 'allow', 'deny', 'defaultErrno', '__proto__', 'constructor', 'prototype',
    'Command', 'COMMAND', 'comand', 'x'.repeat(1000),
  ]);
}

/** A random value of any kind, nested up to `depth`. */
function randomValue(r, depth = 3, stable = true) {
  const k = r.int(0, 9);
  if (k <= 2) return r.pick(NUMBERS);
  if (k <= 4) return r.chance(0.05) ? r.pick(LONG_STRINGS()) : r.pick(STRINGS);
  if (k === 5) return r.pick([null, undefined, true, false]);
  if (k === 6) return exotic(r);
  if (depth <= 0) return r.pick(STRINGS);
  if (k === 7) {
    const n = r.int(0, 5);
    const a = [];
    for (let i = 0; i < n; i++) a.push(randomValue(r, depth - 1, stable));
    if (r.chance(0.1)) a.length += r.int(1, 10); // trailing holes
    return a;
  }
  const o = r.chance(0.1) ? Object.create(null) : {};
  const n = r.int(0, 5);
  for (let i = 0; i < n; i++) setOwn(o, randomKey(r), randomValue(r, depth - 1, stable));
  return o;
}

/** Defines an own enumerable property (so that '__proto__' becomes a key, not the prototype). */
function setOwn(o, key, value) {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

const BASES = [
  { command: ['/bin/true'] },
  { command: ['sh', '-c', 'echo hi'], env: { A: '1', PATH: '/bin' }, cwd: '/tmp', hostname: 'box-1.example', readonly: false },
  { command: ['/bin/true'], user: { uid: 1000, gid: 1000, groups: [1, 2] }, network: 'none', timeout: 1000, maxOutput: 10, stdio: 'ignore', init: true },
  { command: ['/bin/true'], mounts: [{ type: 'tmpfs', target: '/x', size: '1M', mode: 0o700 }, { type: 'bind', source: '/etc', target: '/y/z', readonly: true }] },
  { command: ['/bin/true'], limits: { memory: '64M', swap: 0, pids: 10, cpu: 0.5, cpuWeight: 100, ioWeight: 100, cpuset: '0' } },
  { command: ['/bin/true'], capabilities: { add: ['NET_RAW'], drop: ['cap_chown'] }, seccomp: { allow: ['read'], deny: ['mount'], defaultErrno: 1 } },
  { command: ['/bin/true'], seccomp: 'none', input: 'abc', cgroupParent: '/nsbox.slice', network: 'host', stdio: 'pipe' },
];

/**
 * Every [container, key] of the data properties in a value, the root included as [holder, 'root'].
 * Accessors, Proxies and non-plain objects that earlier mutations put in are not entered.
 */
function slots(holder) {
  const out = [];
  const walk = (c, depth) => {
    for (const [k, d] of Object.entries(Object.getOwnPropertyDescriptors(c))) {
      if (!d.enumerable) continue;
      out.push([c, k]);
      const v = d.value;
      if (depth < 24 && v && typeof v === 'object' && !util.types.isProxy(v) && [Object.prototype, Array.prototype, null].includes(Object.getPrototypeOf(v))) {
        walk(v, depth + 1);
      }
    }
  };
  walk(holder, 0);
  return out;
}

/** Mutates a JSON-shaped value in place; `stable` excludes values that change between reads. */
function mutate(r, holder, stable) {
  const all = slots(holder);
  const [c, k] = r.pick(all);
  const v = c[k];
  let kind = r.int(0, stable ? 11 : 13);
  // The root itself is never deleted nor made an accessor.
  if (c === holder && (kind === 3 || kind === 8 || kind === 12)) kind = 0;
  switch (kind) {
    case 0: case 1: case 2:
      c[k] = randomValue(r, 2, stable);
      break;
    case 3:
      if (Array.isArray(c)) delete c[k]; // a hole
      else delete c[k];
      break;
    case 4: {
      const target = v && typeof v === 'object' ? v : c;
      setOwn(target, randomKey(r), randomValue(r, 1, stable));
      break;
    }
    case 5:
      if (typeof v === 'number') c[k] = r.pick([v + 1, v - 1, -v, v * 2 ** r.int(1, 64), v / 3, v + 0.5, -0]);
      else c[k] = r.pick(NUMBERS);
      break;
    case 6:
      if (typeof v === 'string') {
        c[k] = r.pick([v + '\0', '\0' + v, v + '/..', v + '/.', v.slice(1), v.toUpperCase(), v + v, v + 'x'.repeat(r.pick([10, 5000])), v.replace(/\//g, '\\'), ` ${v}`, `${v} `, v.normalize('NFD') + '\u0301']);
      } else c[k] = r.pick(STRINGS);
      break;
    case 7:
      if (v && typeof v === 'object') c[k] = r.chance(0.5) ? new Proxy(v, {}) : Object.freeze(v);
      else c[k] = exotic(r);
      break;
    case 8:
      throwingGetter(k, c);
      break;
    case 9:
      if (Array.isArray(v)) v.length = r.pick([0, v.length + 1, v.length + 100]);
      else c[k] = [v];
      break;
    case 10:
      c[k] = deep(r, r.pick([2, 50, 2000]), v);
      break;
    case 11:
      c[k] = exotic(r);
      break;
    case 12: {
      // Valid on the first read, something else afterwards (time-of-check/time-of-use).
      flagChangesBetweenReads(holder);
      let reads = 0;
      const later = randomValue(r, 1, true);
      Object.defineProperty(c, k, { enumerable: true, configurable: true, get: () => (reads++ === 0 ? v : later) });
      break;
    }
    default: {
      // An array (or object) whose elements change between reads.
      if (v && typeof v === 'object') {
        flagChangesBetweenReads(holder);
        const later = randomValue(r, 1, true);
        const seen = new Set();
        // A frozen target would make the lie a Proxy invariant violation (an engine TypeError).
        const target = Object.isFrozen(v) ? (Array.isArray(v) ? [...v] : { ...v }) : v;
        c[k] = new Proxy(target, {
          get(target, p, recv) {
            if (typeof p === 'string' && /^\d+$/.test(p)) {
              if (seen.has(p)) return later;
              seen.add(p);
            }
            return Reflect.get(target, p, recv);
          },
        });
      } else c[k] = exotic(r);
    }
  }
}

/** Marks a case as having values that change between reads (non-enumerable: never mutated). */
function flagChangesBetweenReads(holder) {
  Object.defineProperty(holder, 'changesBetweenReads', { value: true, enumerable: false, configurable: true });
}

/** Whether the last input made has values that change between reads (see mutate). */
let lastChangesBetweenReads = false;

/** One fuzz input: a mutated valid option set, or a random value. */
function makeInput(part, n, stable) {
  const r = caseRng(part, n);
  lastChangesBetweenReads = false;
  if (r.chance(0.15)) return randomValue(r, 3, stable);
  const holder = { root: JSON.parse(JSON.stringify(r.pick(BASES))) };
  const times = r.int(1, 4);
  for (let i = 0; i < times; i++) {
    try {
      mutate(r, holder, stable);
    } catch {
      // a frozen object or a trap put in by an earlier mutation: this one does not apply
    }
  }
  lastChangesBetweenReads = holder.changesBetweenReads === true;
  return holder.root;
}

// ---------------------------------------------------------------------------------------------
// Oracles.

const CODES = new Set(['ERR_INVALID_ARG_TYPE', 'ERR_INVALID_ARG_VALUE', 'ERR_OUT_OF_RANGE']);

/** null when `e` is an acceptable validation failure, else why it is not. */
function badError(e) {
  if (e && e.fuzzTrap) return null;
  // A Proxy of the input that breaks the Proxy invariants (the fuzzer can make one by freezing a
  // target it lies about): the engine's TypeError is the input's own doing, like a throwing trap.
  if (e instanceof TypeError && / on proxy: /.test(e.message)) return null;
  if (!(e instanceof TypeError || e instanceof RangeError)) return `threw ${e && e.constructor ? e.constructor.name : typeof e} (not a TypeError/RangeError)`;
  if (!CODES.has(e.code)) return `threw a ${e.constructor.name} without a validation code (code ${e.code})`;
  if (typeof e.message !== 'string' || !e.message.length) return 'threw without a message';
  return null;
}

const MAX_ID = 2 ** 32 - 2;
const isInt = (v, lo, hi) => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
function cleanPath(p) {
  return typeof p === 'string' && p.startsWith('/') && !p.includes('\0') && p.length <= 4095 && !p.split('/').some((c) => c === '.' || c === '..');
}

/** Every invariant a resolved option set keeps; returns the first broken one. */
function brokenInvariant(o) {
  const c = o.command;
  if (!Array.isArray(c) || c.length === 0 || c.some((a) => typeof a !== 'string' || a.includes('\0')) || c[0] === '') return `command ${util.inspect(c)}`;
  if (o.rootfs !== undefined && !cleanPath(o.rootfs)) return `rootfs ${util.inspect(o.rootfs)}`;
  if (!cleanPath(o.cwd)) return `cwd ${util.inspect(o.cwd)}`;
  if (o.cgroupParent !== undefined && !cleanPath(o.cgroupParent)) return `cgroupParent ${util.inspect(o.cgroupParent)}`;
  if (typeof o.readonly !== 'boolean' || typeof o.init !== 'boolean') return 'readonly/init';
  if (typeof o.hostname !== 'string' || !/^[A-Za-z0-9.-]{1,64}$/.test(o.hostname)) return `hostname ${util.inspect(o.hostname)}`;
  if (!o.env || typeof o.env !== 'object') return 'env';
  for (const [k, v] of Object.entries(o.env)) {
    if (k === '' || k.includes('=') || k.includes('\0') || typeof v !== 'string' || v.includes('\0')) return `env ${util.inspect(k)}`;
  }
  if (typeof o.env.PATH !== 'string' || typeof o.env.HOME !== 'string') return 'env PATH/HOME';
  const u = o.user;
  if (!u || !isInt(u.uid, 0, MAX_ID) || !isInt(u.gid, 0, MAX_ID) || !Array.isArray(u.groups) || u.groups.some((g) => !isInt(g, 0, MAX_ID))) return `user ${util.inspect(u)}`;
  if (!Array.isArray(o.mounts) || !o.mounts.some((m) => m && m.target === '/tmp')) return 'mounts (no /tmp)';
  for (const m of o.mounts) {
    if (!m || typeof m !== 'object') return `mounts element ${util.inspect(m)} (a hole?)`;
    if (!cleanPath(m.target) || m.target === '/') return `mount target ${util.inspect(m.target)}`;
    if (m.type === 'bind') {
      if (!cleanPath(m.source) || typeof m.readonly !== 'boolean') return `bind mount ${util.inspect(m)}`;
    } else if (m.type === 'tmpfs') {
      if ((m.size !== undefined && !isInt(m.size, 4096, Number.MAX_SAFE_INTEGER)) || !isInt(m.mode, 0, 0o7777)) return `tmpfs mount ${util.inspect(m)}`;
    } else return `mount type ${util.inspect(m.type)}`;
  }
  if (!['none', 'loopback', 'host', 'bridge'].includes(o.network)) return 'network';
  if ((o.network === 'bridge') !== (o.bridge !== undefined)) return 'network/bridge';
  if (!['pipe', 'inherit', 'ignore'].includes(o.stdio)) return 'stdio';
  if (o.timeout !== undefined && !(typeof o.timeout === 'number' && o.timeout > 0 && o.timeout <= 2 ** 31 - 1)) return `timeout ${o.timeout}`;
  if (!isInt(o.maxOutput, 0, Number.MAX_SAFE_INTEGER)) return 'maxOutput';
  if (o.input !== undefined && !Buffer.isBuffer(o.input)) return 'input';
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) return 'signal';
  const l = o.limits;
  if (l !== undefined) {
    if (typeof l !== 'object' || !Object.keys(l).length) return 'limits';
    if (l.memory !== undefined && !isInt(l.memory, 4096, Number.MAX_SAFE_INTEGER)) return 'limits.memory';
    if (l.swap !== undefined && !isInt(l.swap, 0, Number.MAX_SAFE_INTEGER)) return 'limits.swap';
    if (l.pids !== undefined && !isInt(l.pids, 1, 4194304)) return 'limits.pids';
    if (l.cpu !== undefined && !(typeof l.cpu === 'number' && l.cpu >= 0.01 && Number.isFinite(l.cpu))) return 'limits.cpu';
    if (l.cpuWeight !== undefined && !isInt(l.cpuWeight, 1, 10000)) return 'limits.cpuWeight';
    if (l.ioWeight !== undefined && !isInt(l.ioWeight, 1, 10000)) return 'limits.ioWeight';
    if (l.cpuset !== undefined && (typeof l.cpuset !== 'string' || !/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(l.cpuset))) return 'limits.cpuset';
  }
  const caps = o.capabilities;
  if (!caps || !Array.isArray(caps.add) || !Array.isArray(caps.drop)) return 'capabilities';
  for (const n of [...caps.add, ...caps.drop]) if (n !== 'ALL' && !/^CAP_[A-Z_]+$/.test(n)) return `capability ${util.inspect(n)}`;
  const s = o.seccomp;
  if (s !== null) {
    if (!s || !Array.isArray(s.allow) || !Array.isArray(s.deny) || !isInt(s.errno, 1, 4095)) return 'seccomp';
    if ([...s.allow, ...s.deny].some((x) => typeof x !== 'string' || !/^[a-z0-9_]+$/.test(x))) return `seccomp names ${util.inspect([...s.allow, ...s.deny])}`;
  }
  return null;
}

function show(v) {
  try {
    return util.inspect(v, { depth: 4, maxArrayLength: 12, maxStringLength: 80, breakLength: 160, getters: false });
  } catch (e) {
    return `(not inspectable: ${e.message})`;
  }
}

/** Only data properties and no Proxies all the way down: reading it has no side effects. */
function isPlainData(v, depth = 0) {
  if (v === null || typeof v !== 'object') return typeof v !== 'function' && typeof v !== 'symbol' && typeof v !== 'bigint';
  if (depth > 64 || util.types.isProxy(v)) return false;
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== Array.prototype && proto !== null) return false;
  for (const d of Object.values(Object.getOwnPropertyDescriptors(v))) {
    if (!('value' in d) || !isPlainData(d.value, depth + 1)) return false;
  }
  return true;
}

function jsonOf(v) {
  try {
    return JSON.stringify(v);
  } catch {
    return undefined; // cycles, BigInt, throwing getters, stack depth: not compared
  }
}

/** An error's class and message with the specifics (quoted parts, numbers) taken out. */
function errorShape(e) {
  const m = String(e && e.message).split('\n')[0];
  return `${e && e.constructor ? e.constructor.name : typeof e}:${m.replace(/(['"`]).*?\1/g, 'Q').replace(/\d+/g, 'N').slice(0, 80)}`;
}

const protoKeys = () => Object.getOwnPropertyNames(Object.prototype).concat(Object.getOwnPropertySymbols(Object.prototype).map(String)).sort().join(',');
const PROTO_BEFORE = protoKeys();

/** Collects failures, one report per distinct kind of problem. */
class Findings {
  summary() {
    for (const [kind, { count }] of this.seen) if (count > 1) this.t.comment(`${kind}: ${count} cases`);
  }
  constructor(t, part) {
    this.t = t;
    this.part = part;
    this.seen = new Map();
  }
  /** `kind` groups findings (one report each); `what` describes this one. */
  add(n, kind, what, input, extra = '') {
    const key = kind;
    const prev = this.seen.get(key);
    if (prev) {
      prev.count++;
      return;
    }
    this.seen.set(key, { count: 1, what });
    this.t.fail(`${what} (seed ${SEED}, case ${this.part}:${n}; replay: NSBOX_FUZZ_SEED=${SEED} NSBOX_FUZZ_CASE=${this.part}:${n})`, {
      input: show(input),
      ...(extra ? { detail: extra } : {}),
    });
  }
}

function caseNumbers(part, seconds) {
  if (ONLY) return ONLY[0] === part ? [Number(ONLY[1])] : [];
  const deadline = performance.now() + seconds * 1000;
  let n = 0;
  return { [Symbol.iterator]: () => ({ next: () => (performance.now() < deadline ? { value: n++, done: false } : { value: undefined, done: true }) }) };
}

t.comment(`fuzz seed ${SEED} (replay with NSBOX_FUZZ_SEED=${SEED}), ${SECONDS} s`);
if (SECONDS === 0 && !ONLY) {
  t.plan(0, 'NSBOX_FUZZ_SECONDS=0: fuzzing skipped');
  return;
}

t.test('the valid base options are accepted (the fuzzer mutates these)', async (t) => {
  for (const b of BASES) t.doesNotThrow(() => resolveAppOptions(JSON.parse(JSON.stringify(b))), show(b));
});

// ---------------------------------------------------------------------------------------------
// 1 + 2: resolveAppOptions alone.

t.test('resolveAppOptions: valid result or a coded TypeError/RangeError, nothing else', async (t) => {
  const f = new Findings(t, 'resolve');
  let cases = 0;
  let accepted = 0;
  let slowest = { ms: 0, n: -1 };
  for (const n of caseNumbers('resolve', SECONDS * 0.55)) {
    cases++;
    const input = makeInput('resolve', n, false);
    const flips = lastChangesBetweenReads;
    const before = isPlainData(input) ? jsonOf(input) : undefined;
    const t0 = performance.now();
    let out;
    let err;
    let threw = false;
    try {
      out = resolveAppOptions(input);
    } catch (e) {
      threw = true;
      err = e;
    }
    const ms = performance.now() - t0;
    if (ms > slowest.ms) slowest = { ms, n };
    if (ms > 5000) f.add(n, 'slow', `validation took ${Math.round(ms)} ms`, input);
    if (threw) {
      const why = badError(err);
      if (why) f.add(n, `${flips ? 'toctou-' : ''}error:${why}:${errorShape(err)}`, `resolveAppOptions ${why}: ${String(err && err.message).split('\n')[0].slice(0, 160)}`, input, err && err.stack);
    } else {
      accepted++;
      let broken;
      try {
        broken = brokenInvariant(out);
      } catch (e) {
        broken = `result that cannot be checked (${e.message})`;
      }
      if (broken) {
        // Values that change between reads get past a check that reads twice (check, then copy).
        const how = flips ? 'toctou' : 'invariant';
        f.add(n, `${how}:${broken.split(' ')[0]}`, `resolveAppOptions accepted ${flips ? 'an input whose values change between reads' : 'an input'} and resolved it to an invalid ${broken}`, input);
      }
    }
    if (protoKeys() !== PROTO_BEFORE || ({}).polluted !== undefined) {
      f.add(n, 'proto', 'Object.prototype was modified', input);
      break;
    }
    const after = jsonOf(input);
    if (before !== undefined && after !== before) f.add(n, 'mutates-input', 'resolveAppOptions modified its input', input);
  }
  f.summary();
  t.comment(`${cases} inputs, ${accepted} accepted, slowest ${Math.round(slowest.ms)} ms (case resolve:${slowest.n})`);
  t.ok(cases > 0, 'ran at least one case');
});

// ---------------------------------------------------------------------------------------------
// 3: spawn() and run() with rejected inputs: the same error, no call into the addon, nothing left.

t.test('spawn() and run() reject what resolveAppOptions rejects, before anything exists', async (t) => {
  const binding = native();
  const calls = { spawn: 0, pipe: 0, sealedMemfd: 0, socketpair: 0 };
  const saved = {};
  for (const k of Object.keys(calls)) {
    saved[k] = binding[k];
    binding[k] = function (...args) {
      calls[k]++;
      // Never reached for a rejected input; if it is, do not start anything.
      throw new Error(`fuzz: native ${k}() was called for options that failed validation`);
    };
  }
  t.teardown(() => Object.assign(binding, saved));

  await new Promise((r) => setTimeout(r, 20));
  const before = snapshot();
  const f = new Findings(t, 'spawn');
  let cases = 0;
  let rejected = 0;
  for (const n of caseNumbers('spawn', SECONDS * 0.35)) {
    cases++;
    // Three equal inputs (the same case PRNG): one per call, so that no call sees another's effects.
    let expected;
    try {
      resolveAppOptions(makeInput('spawn', n, true));
      continue; // valid options would start a container: not this test's business
    } catch (e) {
      expected = e;
    }
    rejected++;
    const same = (e) => e === expected || (e && expected && e.constructor === expected.constructor && e.code === expected.code && e.message === expected.message);
    let got;
    try {
      nsbox.spawn(makeInput('spawn', n, true));
      got = undefined;
    } catch (e) {
      got = e;
    }
    if (got === undefined) f.add(n, 'spawn-no-throw', 'spawn() did not throw for options that resolveAppOptions rejects', makeInput('spawn', n, true));
    else if (!same(got) && !(got && got.fuzzTrap && expected && expected.fuzzTrap)) {
      f.add(n, `spawn-other:${errorShape(got)}`, `spawn() threw something else than validation: ${got && got.message}`, makeInput('spawn', n, true), `expected: ${expected && expected.message}`);
    }
    let rgot;
    let p;
    try {
      p = nsbox.run(makeInput('spawn', n, true));
    } catch (e) {
      f.add(n, 'run-sync-throw', `run() threw synchronously instead of rejecting: ${e && e.message}`, makeInput('spawn', n, true));
    }
    if (p) {
      try {
        await p;
        rgot = undefined;
      } catch (e) {
        rgot = e;
      }
      if (rgot === undefined) f.add(n, 'run-resolved', 'run() resolved for options that resolveAppOptions rejects', makeInput('spawn', n, true));
      else if (!same(rgot) && !(rgot && rgot.fuzzTrap && expected && expected.fuzzTrap)) {
        f.add(n, `run-other:${errorShape(rgot)}`, `run() rejected with something else than validation: ${rgot && rgot.message}`, makeInput('spawn', n, true), `expected: ${expected && expected.message}`);
      }
    }
    if (calls.spawn + calls.pipe + calls.sealedMemfd + calls.socketpair) {
      f.add(n, 'native-called', `the addon was called for rejected options (${JSON.stringify(calls)})`, makeInput('spawn', n, true));
      break;
    }
  }
  f.summary();
  t.comment(`${cases} inputs, ${rejected} rejected and fed to spawn() and run()`);
  t.same(calls, { spawn: 0, pipe: 0, sealedMemfd: 0, socketpair: 0 }, 'no native call for any rejected input');
  await new Promise((r) => setTimeout(r, 50));
  t.same(snapshot(), before, 'nothing left behind (fds, zombies, children, mounts, cgroups)');
});
