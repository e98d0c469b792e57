// rlimits.ts: the `rlimits` option (setrlimit(2) limits of a container's processes): the one table
// of resource names (the library's option keys, docker's --ulimit names), its check before anything
// starts, the merge with a profile's defaults into the plan's [resource, soft, hard] triples, and
// the naming of a failed entry in the child's failure record. The numbers are the addon's
// (RLIMIT_* from <sys/resource.h>, native/glue/addon.cc): nothing here repeats them.
import * as fs from 'node:fs';

import { invalidType, outOfRange } from './errors';
import { native } from './native';
import type { RlimitName, RlimitValue } from './types';
import { isPlainObject, rejectUnknownKeys } from './util';

/**
 * Every resource: its addon constant and its row in /proc/<pid>/limits (where this process's own
 * limits are read from, to explain a limit it cannot give). The names are docker's (`--ulimit`).
 */
export const RLIMIT_TABLE = {
  as: ['RLIMIT_AS', 'Max address space'],
  core: ['RLIMIT_CORE', 'Max core file size'],
  cpu: ['RLIMIT_CPU', 'Max cpu time'],
  data: ['RLIMIT_DATA', 'Max data size'],
  fsize: ['RLIMIT_FSIZE', 'Max file size'],
  locks: ['RLIMIT_LOCKS', 'Max file locks'],
  memlock: ['RLIMIT_MEMLOCK', 'Max locked memory'],
  msgqueue: ['RLIMIT_MSGQUEUE', 'Max msgqueue size'],
  nice: ['RLIMIT_NICE', 'Max nice priority'],
  nofile: ['RLIMIT_NOFILE', 'Max open files'],
  nproc: ['RLIMIT_NPROC', 'Max processes'],
  rss: ['RLIMIT_RSS', 'Max resident set'],
  rtprio: ['RLIMIT_RTPRIO', 'Max realtime priority'],
  rttime: ['RLIMIT_RTTIME', 'Max realtime timeout'],
  sigpending: ['RLIMIT_SIGPENDING', 'Max pending signals'],
  stack: ['RLIMIT_STACK', 'Max stack size'],
} as const satisfies Record<RlimitName, readonly [string, string]>;

export const RLIMIT_NAMES = Object.keys(RLIMIT_TABLE) as RlimitName[];

/** A resolved limit: -1 is RLIM_INFINITY (the plan's spelling). */
export type ResolvedRlimit = [name: RlimitName, soft: number, hard: number];

/** The addon's number of a resource. */
export function rlimitNumber(name: RlimitName): number {
  return native().constants[RLIMIT_TABLE[name][0]]!;
}

/** The name of a resource number, if it is one of the table's. */
export function rlimitName(resource: number): RlimitName | undefined {
  const K = native().constants;
  return RLIMIT_NAMES.find((n) => K[RLIMIT_TABLE[n][0]] === resource);
}

function checkAmount(name: string, v: unknown): number {
  if (v === 'unlimited' || v === Infinity) return -1;
  if (typeof v !== 'number') throw invalidType(name, "a number or 'unlimited'", v);
  if (!Number.isInteger(v) || v < 0 || v > Number.MAX_SAFE_INTEGER) {
    throw outOfRange(name, `an integer from 0 to ${Number.MAX_SAFE_INTEGER}, Infinity or 'unlimited'`, v);
  }
  return v;
}

/** soft above hard (unlimited being the largest). */
function above(soft: number, hard: number): boolean {
  return hard !== -1 && (soft === -1 || soft > hard);
}

/**
 * The `rlimits` option checked: `{ nofile: 4096 }` (soft and hard), `{ nofile: { soft, hard } }`,
 * each amount a whole number, `Infinity` or `'unlimited'`. Unknown names are a TypeError
 * (ERR_INVALID_ARG_VALUE), a soft limit above its hard one a RangeError (ERR_OUT_OF_RANGE).
 */
export function resolveRlimits(name: string, v: unknown): ResolvedRlimit[] {
  if (v === undefined) return [];
  if (!isPlainObject(v)) throw invalidType(name, 'of type object', v);
  const o = { ...v };
  rejectUnknownKeys(o, RLIMIT_NAMES, `${name}.`);
  const out: ResolvedRlimit[] = [];
  for (const res of RLIMIT_NAMES) {
    const val = o[res] as RlimitValue | undefined;
    if (val === undefined) continue;
    const key = `${name}.${res}`;
    let soft: number;
    let hard: number;
    if (isPlainObject(val)) {
      const pair = { ...val };
      rejectUnknownKeys(pair, ['soft', 'hard'], `${key}.`);
      soft = checkAmount(`${key}.soft`, pair.soft);
      hard = checkAmount(`${key}.hard`, pair.hard);
      if (above(soft, hard)) throw outOfRange(`${key}.soft`, `at most ${key}.hard (${hard})`, pair.soft);
    } else {
      soft = hard = checkAmount(key, val);
    }
    out.push([res, soft, hard]);
  }
  return out;
}

/**
 * A profile's default triples with the caller's limits over them (one entry per resource: the
 * caller's replaces the default's), as the plan takes them.
 */
export function mergeRlimits(defaults: Array<[number, number, number]>, ...over: ReadonlyArray<readonly ResolvedRlimit[]>): Array<[number, number, number]> {
  const out = defaults.map((d) => [...d] as [number, number, number]);
  for (const list of over) {
    for (const [res, soft, hard] of list) {
      const n = rlimitNumber(res);
      const at = out.findIndex((e) => e[0] === n);
      if (at >= 0) out[at] = [n, soft, hard];
      else out.push([n, soft, hard]);
    }
  }
  return out;
}

/** This process's own limits of a resource from /proc/self/limits (-1: unlimited), or null if unreadable. */
export function ownRlimit(name: RlimitName): { soft: number; hard: number } | null {
  let limits: string;
  try {
    limits = fs.readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return null;
  }
  const label = RLIMIT_TABLE[name][1];
  const row = limits.split('\n').find((l) => l.startsWith(label + ' '));
  const [soft, hard] = row ? row.slice(label.length).trim().split(/\s+/) : [];
  const num = (s: string): number => (s === 'unlimited' ? -1 : Number(s));
  if (soft === undefined || hard === undefined || Number.isNaN(num(soft)) || Number.isNaN(num(hard))) return null;
  return { soft: num(soft), hard: num(hard) };
}

const shown = (n: number): string => (n === -1 ? 'unlimited' : String(n));

/** fs.nr_open: the most RLIMIT_NOFILE may be, even for a caller with CAP_SYS_RESOURCE. */
function nrOpen(): number | null {
  try {
    return Number(fs.readFileSync('/proc/sys/fs/nr_open', 'utf8').trim());
  } catch {
    return null;
  }
}

/**
 * What a failed setrlimit of plan entry `triple` says: the resource and the limits asked for, and
 * (refused with EPERM) why, where this process can tell: raising a hard limit over the starting
 * process's own needs CAP_SYS_RESOURCE in the initial user namespace, which a rootless caller (or
 * any container with a user namespace) lacks; with it, nofile still stops at fs.nr_open.
 */
export function rlimitFailure(triple: readonly [number, number, number] | undefined, code: string, mayRaise: boolean): { resource: string; detail: string } {
  if (!triple) return { resource: 'unknown', detail: '' };
  const name = rlimitName(triple[0]);
  let detail = ` (soft ${shown(triple[1])}, hard ${shown(triple[2])})`;
  if (code === 'EPERM' && name) {
    const own = ownRlimit(name);
    const max = name === 'nofile' ? nrOpen() : null;
    if (max !== null && max > 0 && (triple[2] === -1 || triple[2] > max)) {
      detail += `: above fs.nr_open (${max}), the most nofile may be`;
    } else if (!mayRaise && own && own.hard !== -1 && (triple[2] === -1 || triple[2] > own.hard)) {
      detail += `: above this process's own hard limit ${own.hard}, which only a caller with CAP_SYS_RESOURCE in the initial user namespace may raise (for a container without a user namespace)`;
    }
  }
  return { resource: name ?? `resource ${triple[0]}`, detail };
}
