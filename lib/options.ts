// options.ts: validation of AppOptions. Everything here is pure: a bad option throws a TypeError or
// RangeError with a Node-style code before any directory, fd, cgroup or process exists.
import * as path from 'node:path';
import * as net from 'node:net';
import * as os from 'node:os';
import { types } from 'node:util';

import { invalidType, invalidValue, outOfRange, badRangeValue } from './errors';
import type { ResolvedLimits } from './cgroup';
import { checkCapabilities, DEFAULT_CAPS } from './caps';
import { checkNetwork, checkPolicyCaps, type ResolvedBridge } from './network-options';
import { resolveSeccomp, type ResolvedSeccomp } from './seccomp';
import { resolveRlimits, type ResolvedRlimit } from './rlimits';
import type { AppOptions, Limits, Mount, NetworkMode, ProcMode, StdioMode, User, UsernsOption } from './types';
import { checkUsernsOption } from './userns';
import { checkRegistryHosts, parseRef } from './images/ref';
import { arrayElements, isPlainObject, rejectUnknownKeys } from './util';

export { rejectUnknownKeys };

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024;
const MAX_TIMEOUT = 2 ** 31 - 1;
const MAX_ID = 2 ** 32 - 2;

export type ResolvedMount =
  | { type: 'bind'; source: string; target: string; readonly: boolean }
  | { type: 'tmpfs'; target: string; size: number | undefined; mode: number };

/**
 * `image` and what goes with it, checked. `layers` and `xattrs` are filled in from the store when
 * the image is leased (lib/images/run.ts), before anything is planned.
 */
export interface ResolvedImage {
  ref: string;
  pull: 'missing' | 'always' | 'never';
  storeDir: string | undefined;
  insecure: string[];
  entrypoint: string[] | undefined;
  /** Bytes of the throw-away writable layer (readonly: false, an ephemeral machine). */
  rootSize: number;
  /** Unpacked layer directories, lowest first. */
  layers: string[];
  xattrs: 'trusted' | 'user';
  /** A persistent machine's upper and work directories live here (machine.ts). */
  upper?: string;
  /** The working directory is the image's WorkingDir: made (in the upper layer) where the image lacks it, as docker does. */
  makeCwd?: boolean;
}

/** The writable layer of an image root without rootSize: 256 MiB of tmpfs. */
export const DEFAULT_ROOT_SIZE = 256 * 1024 * 1024;

const IMAGE_KEYS = ['image', 'entrypoint', 'pull', 'storeDir', 'insecureRegistries', 'rootSize'] as const;

/**
 * Checks `image` and its companions (or that none of them is given without it). `image` and
 * `rootfs` together are a TypeError (ERR_INCOMPATIBLE_OPTION_PAIR, as Node names such a pair).
 */
export function checkImageOptions(o: Record<string, unknown>): ResolvedImage | undefined {
  if (o.image === undefined) {
    for (const k of IMAGE_KEYS) if (o[k] !== undefined) throw invalidValue(k, o[k], 'is only used together with "image"');
    return undefined;
  }
  if (o.rootfs !== undefined) {
    const e = new TypeError('Option "image" cannot be used in combination with option "rootfs"') as TypeError & { code: string };
    e.code = 'ERR_INCOMPATIBLE_OPTION_PAIR';
    throw e;
  }
  if (typeof o.image !== 'string') throw invalidType('image', 'of type string', o.image);
  if (o.image === '' || o.image.length > 1024 || /[\s\0]/.test(o.image)) throw invalidValue('image', o.image, 'must be an image reference such as \'busybox\' or \'registry:5000/app:1\'');
  const pull = o.pull === undefined ? 'missing' : checkEnum('pull', o.pull, ['missing', 'always', 'never'] as const);
  if (o.storeDir !== undefined && (typeof o.storeDir !== 'string' || o.storeDir === '')) throw invalidType('storeDir', 'a non-empty string', o.storeDir);
  // The reference is parsed here, not first when the store is read or a pull starts: a bad one is a
  // TypeError before anything starts, whatever `pull` says and whether the store exists.
  parseRef(o.image, 'image');
  const insecure = o.insecureRegistries === undefined ? [] : checkRegistryHosts('insecureRegistries', o.insecureRegistries);
  return {
    ref: o.image,
    pull,
    storeDir: o.storeDir === undefined ? undefined : checkAbsolutePath('storeDir', o.storeDir),
    insecure,
    entrypoint: o.entrypoint === undefined ? undefined : checkEntrypoint(o.entrypoint),
    rootSize: o.rootSize === undefined ? DEFAULT_ROOT_SIZE : parseSize('rootSize', o.rootSize, 1024 * 1024),
    layers: [],
    xattrs: 'trusted',
  };
}

/** An entrypoint may be empty (`[]`: no entrypoint, the command alone), unlike a command. */
function checkEntrypoint(v: unknown): string[] {
  const items = arrayElements('entrypoint', v, 'an array of strings');
  return items.length === 0 ? [] : checkCommand('entrypoint', items);
}

export interface ResolvedAppOptions {
  command: string[];
  rootfs: string | undefined;
  /** `image` (the root is an overlay of its layers), or undefined. */
  image: ResolvedImage | undefined;
  readonly: boolean;
  env: Record<string, string>;
  cwd: string;
  hostname: string;
  user: { uid: number; gid: number; groups: number[] };
  mounts: ResolvedMount[];
  network: NetworkMode;
  proc: ProcMode;
  limits: ResolvedLimits | undefined;
  /** `rlimits`, checked: over the profile's defaults in the plan (lib/rlimits.ts). */
  rlimits: ResolvedRlimit[];
  timeout: number | undefined;
  input: Buffer | undefined;
  stdio: StdioMode;
  /** `tty`: a pty of the container's own devpts as stdin, stdout and stderr, and its size. */
  tty: { columns: number; rows: number } | null;
  /** @internal run() without input: stdin is /dev/null instead of a pipe that would be closed at once. */
  stdinEmpty?: boolean;
  /** @internal run(): stdout and stderr are read whole by the addon (collectOutput), not as streams. */
  collectOutput?: boolean;
  init: boolean;
  maxOutput: number;
  signal: AbortSignal | undefined;
  cgroupParent: string | undefined;
  capabilities: { add: string[]; drop: string[] };
  seccomp: ResolvedSeccomp | null;
  userns: UsernsOption | undefined;
  /** network: 'bridge' (or its object form) resolved; undefined for the other modes. */
  bridge: ResolvedBridge | undefined;
  /** etcFiles: absent 'auto' (where the rootfs has the mount point), true 'require', false 'off'. */
  etcFiles: EtcFilesMode;
  /** Extra /etc/hosts entries [name, address]. */
  hosts: Array<[string, string]>;
  /** Host devices for the container's /dev (checked against the host by devices.ts). */
  devices: ResolvedDeviceOption[];
  /**
   * @internal The OCI runtime (lib/oci): a read-only sysfs at /sys with the container's cgroup
   * namespace root at /sys/fs/cgroup (as a machine has them), and an mqueue at /dev/mqueue.
   */
  sysfs?: boolean;
  mqueue?: boolean;
}

export type EtcFilesMode = 'auto' | 'require' | 'off';

export interface ResolvedDeviceOption {
  /** The host's device node (absolute). */
  path: string;
  /** Where it appears: a path below /dev. */
  containerPath: string;
  /** Some of 'r', 'w', 'm', in that order. */
  permissions: string;
}

const APP_KEYS = [
  'command', 'rootfs', 'readonly', 'env', 'cwd', 'hostname', 'user', 'mounts', 'network', 'proc', 'limits', 'rlimits',
  'timeout', 'input', 'stdio', 'init', 'maxOutput', 'signal', 'cgroupParent', 'capabilities', 'seccomp',
  'userns', 'etcFiles', 'hosts', 'devices', 'tty', 'columns', 'rows', ...IMAGE_KEYS,
] as const;
/** The `proc` option's modes (types.ts, ProcMode). */
export const PROC_MODES = ['fresh', 'none'] as const;
const LIMIT_KEYS = ['memory', 'memoryHigh', 'swap', 'pids', 'cpu', 'cpuWeight', 'ioWeight', 'cpuset'] as const;


function noNul(name: string, s: string): void {
  if (s.includes('\0')) throw invalidValue(name, s, 'must not contain null bytes');
}

/** An absolute, clean path: no '.' or '..' components, no NUL. Returns it without a trailing '/'. */
export function checkAbsolutePath(name: string, v: unknown): string {
  if (typeof v !== 'string') throw invalidType(name, 'of type string', v);
  noNul(name, v);
  if (!v.startsWith('/')) throw invalidValue(name, v, 'must be an absolute path');
  const parts = v.split('/');
  if (parts.some((p) => p === '..' || p === '.')) throw invalidValue(name, v, "must not contain '.' or '..' components");
  if (v.length > 4095) throw invalidValue(name, v, 'is longer than PATH_MAX');
  const norm = path.posix.normalize(v);
  return norm.length > 1 && norm.endsWith('/') ? norm.slice(0, -1) : norm;
}

function checkBoolean(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw invalidType(name, 'of type boolean', v);
  return v;
}

/**
 * `tty`, `columns` and `rows` (app containers and Machine.exec): null without a tty, else the size
 * the command starts with (default 80x24). `companionsNeedTty`: `columns`/`rows` without `tty: true`
 * are refused (app containers; Machine.exec has always ignored them). A tty is stdin, stdout and
 * stderr at once: with `stdio` other than 'pipe' it is refused (ERR_INCOMPATIBLE_OPTION_PAIR).
 */
export function checkTty(o: { tty?: unknown; columns?: unknown; rows?: unknown; stdio?: unknown }, companionsNeedTty: boolean): { columns: number; rows: number } | null {
  const tty = o.tty === undefined ? false : checkBoolean('tty', o.tty);
  const size = (k: 'columns' | 'rows', def: number): number => {
    const v = o[k];
    if (v === undefined) return def;
    if (typeof v !== 'number') throw invalidType(k, 'of type number', v);
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw outOfRange(k, 'an integer from 1 to 65535', v);
    return v;
  };
  const columns = size('columns', 80);
  const rows = size('rows', 24);
  if (!tty) {
    if (companionsNeedTty) for (const k of ['columns', 'rows'] as const) if (o[k] !== undefined) throw invalidValue(k, o[k], 'is only used together with "tty: true"');
    return null;
  }
  if (companionsNeedTty && o.stdio !== undefined && o.stdio !== 'pipe') {
    const e = new TypeError(`Option "tty" cannot be used in combination with option "stdio" ('${String(o.stdio)}'): the pty is stdin, stdout and stderr`) as TypeError & { code: string };
    e.code = 'ERR_INCOMPATIBLE_OPTION_PAIR';
    throw e;
  }
  return { columns, rows };
}

function checkInteger(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw invalidType(name, 'of type number', v);
  if (!Number.isInteger(v) || v < min || v > max) throw outOfRange(name, `an integer >= ${min} and <= ${max}`, v);
  return v;
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Bytes from a number or a '512K' / '256M' / '2G' / '1.5G' string. */
export function parseSize(name: string, v: unknown, min = 1): number {
  let n: number;
  if (typeof v === 'number') {
    n = v;
  } else if (typeof v === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$/i.exec(v);
    if (!m) throw badRangeValue(name, v, "must be a number of bytes or a size such as '512K', '256M', '2G'");
    n = Math.floor(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!);
  } else {
    throw invalidType(name, 'of type number or string', v);
  }
  if (!Number.isFinite(n) || !Number.isInteger(n) || n < min || n > Number.MAX_SAFE_INTEGER) {
    throw outOfRange(name, `a whole number of bytes >= ${min}`, v);
  }
  return n;
}

/** A CPU list ('0-1', '0,2-3') whose CPUs all exist on this host. */
export function parseCpuset(name: string, v: unknown): string {
  if (typeof v !== 'string') throw invalidType(name, 'of type string', v);
  const ncpu = os.availableParallelism();
  if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(v)) throw badRangeValue(name, v, "must be a CPU list such as '0-1' or '0,2'");
  for (const part of v.split(',')) {
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    const hi = b ?? a;
    if (hi < a) throw badRangeValue(name, v, 'has a range whose end is below its start');
    if (hi >= ncpu) throw outOfRange(name, `CPUs 0-${ncpu - 1} (this host has ${ncpu})`, v);
  }
  return v;
}

export function resolveLimits(v: unknown, where = 'limits'): ResolvedLimits | undefined {
  if (v === undefined) return undefined;
  if (!isPlainObject(v)) throw invalidType(where, 'of type object', v);
  rejectUnknownKeys(v, LIMIT_KEYS, `${where}.`);
  const l = v as Limits;
  const out: ResolvedLimits = {};
  if (l.memory !== undefined) out.memory = parseSize(`${where}.memory`, l.memory, 4096);
  if (l.memoryHigh !== undefined) {
    out.memoryHigh = parseSize(`${where}.memoryHigh`, l.memoryHigh, 4096);
    if (out.memory !== undefined && out.memoryHigh > out.memory) throw outOfRange(`${where}.memoryHigh`, `at most ${where}.memory (${out.memory} bytes)`, l.memoryHigh);
  }
  if (l.swap !== undefined) out.swap = parseSize(`${where}.swap`, l.swap, 0);
  if (l.pids !== undefined) out.pids = checkInteger(`${where}.pids`, l.pids, 1, 4194304);
  if (l.cpu !== undefined) {
    if (typeof l.cpu !== 'number') throw invalidType(`${where}.cpu`, 'of type number', l.cpu);
    const ncpu = os.availableParallelism();
    if (!Number.isFinite(l.cpu) || l.cpu < 0.01 || l.cpu > ncpu) throw outOfRange(`${where}.cpu`, `between 0.01 and ${ncpu} cores`, l.cpu);
    out.cpu = l.cpu;
  }
  if (l.cpuWeight !== undefined) out.cpuWeight = checkInteger(`${where}.cpuWeight`, l.cpuWeight, 1, 10000);
  if (l.ioWeight !== undefined) out.ioWeight = checkInteger(`${where}.ioWeight`, l.ioWeight, 1, 10000);
  if (l.cpuset !== undefined) out.cpuset = parseCpuset(`${where}.cpuset`, l.cpuset);
  return Object.keys(out).length ? out : undefined;
}

const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export function checkHostname(name: string, v: unknown): string {
  if (typeof v !== 'string') throw invalidType(name, 'of type string', v);
  if (v.length === 0 || v.length > 64 || !v.split('.').every((l) => LABEL.test(l))) {
    throw invalidValue(name, v, 'must be a valid host name (letters, digits, hyphens and dots, at most 64 characters)');
  }
  return v;
}

export function checkEnv(name: string, v: unknown): Record<string, string> {
  if (!isPlainObject(v)) throw invalidType(name, 'of type object', v);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (k === '' || k.includes('=') || k.includes('\0')) throw invalidValue(`${name} key`, k, "must be non-empty and contain no '=' or null byte");
    if (typeof val !== 'string') throw invalidType(`${name}.${k}`, 'of type string', val);
    noNul(`${name}.${k}`, val);
    out[k] = val;
  }
  if (out.PATH === undefined) out.PATH = DEFAULT_PATH;
  if (out.HOME === undefined) out.HOME = '/';
  return out;
}

export function checkCommand(name: string, v: unknown): string[] {
  const items = arrayElements(name, v, 'an array of strings');
  if (items.length === 0) throw invalidValue(name, v, 'must name a program (it is empty)');
  if (items.length > 65536) throw outOfRange(name, 'at most 65536 arguments', items.length);
  for (let i = 0; i < items.length; i++) {
    const a = items[i];
    if (typeof a !== 'string') throw invalidType(`${name}[${i}]`, 'of type string', a);
    noNul(`${name}[${i}]`, a);
  }
  if (items[0] === '') throw invalidValue(`${name}[0]`, items[0], 'must not be empty');
  return items as string[];
}

export function checkUser(name: string, v: unknown): { uid: number; gid: number; groups: number[] } {
  if (!isPlainObject(v)) throw invalidType(name, 'of type object', v);
  rejectUnknownKeys(v, ['uid', 'gid', 'groups'], `${name}.`);
  const u = v as unknown as User;
  const uid = checkInteger(`${name}.uid`, u.uid, 0, MAX_ID);
  const gid = checkInteger(`${name}.gid`, u.gid, 0, MAX_ID);
  let groups: number[] = [];
  if (u.groups !== undefined) {
    const items = arrayElements(`${name}.groups`, u.groups, 'an array of numbers');
    if (items.length > 65536) throw outOfRange(`${name}.groups`, 'at most 65536 entries', items.length);
    groups = items.map((g, i) => checkInteger(`${name}.groups[${i}]`, g, 0, MAX_ID));
  }
  return { uid, gid, groups };
}

export function checkMounts(name: string, v: unknown): ResolvedMount[] {
  const items = arrayElements(name, v, 'an array');
  if (items.length > 1024) throw outOfRange(name, 'at most 1024 mounts', items.length);
  return items.map((m: unknown, i): ResolvedMount => {
    const n = `${name}[${i}]`;
    if (!isPlainObject(m)) throw invalidType(n, 'of type object', m);
    const mm = m as unknown as Mount;
    if (mm.type === 'bind') {
      rejectUnknownKeys(m, ['type', 'source', 'target', 'readonly'], `${n}.`);
      const target = checkAbsolutePath(`${n}.target`, mm.target);
      if (target === '/') throw invalidValue(`${n}.target`, mm.target, "must not be '/' (use the rootfs option)");
      return {
        type: 'bind',
        source: checkAbsolutePath(`${n}.source`, mm.source),
        target,
        readonly: mm.readonly === undefined ? false : checkBoolean(`${n}.readonly`, mm.readonly),
      };
    }
    if (mm.type === 'tmpfs') {
      rejectUnknownKeys(m, ['type', 'target', 'size', 'mode'], `${n}.`);
      const target = checkAbsolutePath(`${n}.target`, mm.target);
      if (target === '/') throw invalidValue(`${n}.target`, mm.target, "must not be '/' (use the rootfs option)");
      return {
        type: 'tmpfs',
        target,
        size: mm.size === undefined ? undefined : parseSize(`${n}.size`, mm.size, 4096),
        mode: mm.mode === undefined ? (target === '/tmp' ? 0o1777 : 0o755) : checkInteger(`${n}.mode`, mm.mode, 0, 0o7777),
      };
    }
    throw invalidValue(`${n}.type`, (m as Record<string, unknown>).type, "must be 'bind' or 'tmpfs'");
  });
}

export function checkEtcFiles(name: string, v: unknown): EtcFilesMode {
  if (v === undefined) return 'auto';
  return checkBoolean(name, v) ? 'require' : 'off';
}

/** `hosts`: { name: address }, as docker run --add-host name:address; at most 256. */
export function checkHosts(name: string, v: unknown): Array<[string, string]> {
  if (v === undefined) return [];
  if (!isPlainObject(v)) throw invalidType(name, 'of type object', v);
  const entries = Object.entries(v);
  if (entries.length > 256) throw outOfRange(name, 'at most 256 entries', entries.length);
  return entries.map(([host, addr]) => {
    checkHostname(`${name} key`, host);
    if (typeof addr !== 'string') throw invalidType(`${name}.${host}`, 'of type string', addr);
    // Bounded: net.isIP takes an IPv6 zone of any length ('::1%' and megabytes of letters), which
    // 256 entries would write into /etc/hosts under /run. 45 characters and an interface name.
    if (addr.length > 64 || !net.isIP(addr)) throw invalidValue(`${name}.${host}`, addr.length > 64 ? `${addr.slice(0, 64)}...` : addr, 'must be an IPv4 or IPv6 address (at most 64 characters with its zone)');
    return [host, addr];
  });
}

/** What nsbox itself puts in every /dev: a device may not replace or go below one of these. */
const OWN_DEV = ['null', 'zero', 'full', 'random', 'urandom', 'tty', 'ptmx', 'pts', 'shm', 'fd', 'stdin', 'stdout', 'stderr', 'console'];

/**
 * `devices`: host device paths, or { path, containerPath?, permissions? } (docker run --device
 * PATH[:CONTAINER_PATH[:PERMISSIONS]]). Pure: whether each path is a device is devices.ts's check.
 */
export function checkDevices(name: string, v: unknown): ResolvedDeviceOption[] {
  if (v === undefined) return [];
  const items = arrayElements(name, v, 'an array');
  if (items.length > 64) throw outOfRange(name, 'at most 64 devices', items.length);
  const seen = new Set<string>();
  return items.map((d, i): ResolvedDeviceOption => {
    const n = `${name}[${i}]`;
    let p: unknown, cp: unknown, perms: unknown;
    if (typeof d === 'string') {
      p = d;
    } else if (isPlainObject(d)) {
      rejectUnknownKeys(d, ['path', 'containerPath', 'permissions'], `${n}.`);
      ({ path: p, containerPath: cp, permissions: perms } = d);
    } else {
      throw invalidType(n, 'of type string or object', d);
    }
    const hostPath = checkAbsolutePath(typeof d === 'string' ? n : `${n}.path`, p);
    const cpName = typeof d === 'string' || cp === undefined ? (typeof d === 'string' ? n : `${n}.path`) : `${n}.containerPath`;
    const containerPath = checkAbsolutePath(cpName, cp === undefined ? hostPath : cp);
    if (!containerPath.startsWith('/dev/')) {
      throw invalidValue(cpName, containerPath, "must be a path below /dev (give containerPath for a device that lives elsewhere on the host)");
    }
    const first = containerPath.split('/')[2]!;
    if (OWN_DEV.includes(first)) throw invalidValue(cpName, containerPath, `names nsbox's own /dev/${first}, which every container has`);
    if (seen.has(containerPath)) throw invalidValue(cpName, containerPath, 'is given twice');
    seen.add(containerPath);
    let permissions = 'rwm';
    if (perms !== undefined) {
      if (typeof perms !== 'string') throw invalidType(`${n}.permissions`, 'of type string', perms);
      if (perms === '' || !/^[rwm]+$/.test(perms) || new Set(perms).size !== perms.length) {
        throw invalidValue(`${n}.permissions`, perms, "must be some of 'r', 'w', 'm' (e.g. 'rw'), each once");
      }
      permissions = ['r', 'w', 'm'].filter((c) => perms.includes(c)).join('');
    }
    return { path: hostPath, containerPath, permissions };
  });
}

export function checkEnum<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string') throw invalidType(name, 'of type string', v);
  if (!allowed.includes(v as T)) throw invalidValue(name, v, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}`);
  return v as T;
}

export function checkTimeout(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number') throw invalidType(name, 'of type number', v);
  if (!Number.isFinite(v) || v <= 0 || v > MAX_TIMEOUT) throw outOfRange(name, `> 0 and <= ${MAX_TIMEOUT} (milliseconds)`, v);
  return v;
}

/**
 * run()'s `encoding` (also pool.run's and machine.run's): the Buffer encoding to decode the output
 * with, or undefined for Buffers (left out, or `'buffer'` as in child_process).
 */
export function checkEncoding(name: string, v: unknown): BufferEncoding | undefined {
  if (v === undefined || v === 'buffer') return undefined;
  if (typeof v !== 'string') throw invalidType(name, "of type string (a Buffer encoding such as 'utf8', or 'buffer')", v);
  if (!Buffer.isEncoding(v)) throw invalidValue(name, v, "must be a Buffer encoding such as 'utf8', 'latin1', 'base64' or 'hex', or 'buffer'");
  return v;
}

/** The collected output decoded with run()'s `encoding` (unchanged without one). */
export function decodeOutput<T extends { stdout: Buffer; stderr: Buffer }>(r: T, encoding: BufferEncoding | undefined): Omit<T, 'stdout' | 'stderr'> & { stdout: Buffer | string; stderr: Buffer | string } {
  return encoding ? { ...r, stdout: r.stdout.toString(encoding), stderr: r.stderr.toString(encoding) } : r;
}

export function checkInput(name: string, v: unknown): Buffer | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string') return Buffer.from(v);
  // isUint8Array looks at the object itself: `instanceof` also accepts an impostor whose prototype
  // is Uint8Array.prototype, on which .buffer throws.
  if (types.isUint8Array(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw invalidType(name, 'of type string or an instance of Buffer or Uint8Array', v);
}

export function checkSignal(name: string, v: unknown): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof AbortSignal)) throw invalidType(name, 'an instance of AbortSignal', v);
  try {
    // An object made from AbortSignal.prototype passes instanceof but is no signal.
    void v.aborted;
  } catch {
    throw invalidType(name, 'an instance of AbortSignal', v);
  }
  return v;
}

/** Validates and fills in defaults. Throws before anything is created. */
export function resolveAppOptions(input: unknown): ResolvedAppOptions {
  if (!isPlainObject(input)) throw invalidType('options', 'of type object', input);
  // Each option read once (a getter or a Proxy that answers differently on a second read, e.g. no
  // rootfs for the image check and a rootfs after it, must not get past a check).
  const opts = { ...input };
  rejectUnknownKeys(opts, APP_KEYS, '');
  const o = opts as unknown as AppOptions;
  const image = checkImageOptions(opts);
  // With an image, the command may come from its config (filled in once it is leased). Read once:
  // a getter that answers differently on a second read must not turn a missing command into [].
  const command = o.command;
  if (command === undefined && !image) throw invalidType('command', 'an array of strings', undefined);
  const mounts = o.mounts === undefined ? [] : checkMounts('mounts', o.mounts);
  if (!mounts.some((m) => m.target === '/tmp')) mounts.unshift({ type: 'tmpfs', target: '/tmp', size: undefined, mode: 0o1777 });
  const network = checkNetwork('network', o.network);
  const capabilities = checkCapabilities('capabilities', o.capabilities);
  checkPolicyCaps('network', network.bridge, DEFAULT_CAPS, capabilities);
  return {
    command: command === undefined ? [] : checkCommand('command', command),
    rootfs: o.rootfs === undefined ? undefined : checkAbsolutePath('rootfs', o.rootfs),
    image,
    readonly: o.readonly === undefined ? true : checkBoolean('readonly', o.readonly),
    env: checkEnv('env', o.env ?? {}),
    cwd: o.cwd === undefined ? '/' : checkAbsolutePath('cwd', o.cwd),
    hostname: o.hostname === undefined ? 'nsbox' : checkHostname('hostname', o.hostname),
    user: o.user === undefined ? { uid: 0, gid: 0, groups: [] } : checkUser('user', o.user),
    mounts,
    network: network.mode,
    proc: o.proc === undefined ? 'fresh' : checkEnum('proc', o.proc, PROC_MODES),
    limits: resolveLimits(o.limits),
    rlimits: resolveRlimits('rlimits', o.rlimits),
    timeout: checkTimeout('timeout', o.timeout),
    input: checkInput('input', o.input),
    stdio: o.stdio === undefined ? 'pipe' : checkEnum('stdio', o.stdio, ['pipe', 'inherit', 'ignore'] as const),
    tty: checkTty(o, true),
    init: o.init === undefined ? false : checkBoolean('init', o.init),
    maxOutput: o.maxOutput === undefined ? DEFAULT_MAX_OUTPUT : checkInteger('maxOutput', o.maxOutput, 0, Number.MAX_SAFE_INTEGER),
    signal: checkSignal('signal', o.signal),
    cgroupParent: o.cgroupParent === undefined ? undefined : checkAbsolutePath('cgroupParent', o.cgroupParent),
    capabilities,
    seccomp: resolveSeccomp(o.seccomp),
    userns: checkUsernsOption('userns', o.userns),
    bridge: network.bridge,
    etcFiles: checkEtcFiles('etcFiles', o.etcFiles),
    hosts: checkHosts('hosts', o.hosts),
    devices: checkDevices('devices', o.devices),
  };
}
