// cli/values.ts: the parsers of flag values (the `parse` of a flag in cli/table.ts): a string from
// the command line to the value of a library option, or a one-line UsageError naming the flag.
import * as path from 'node:path';

import type { Mount, PortMapping } from '../index';
import { UsageError } from './flags';

const DURATION_UNITS: Record<string, number> = { '': 1, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds: 250, 250ms, 10s, 2m, 1h. */
export function parseDuration(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  if (!m) throw new UsageError(`${flag} must be a number of milliseconds (or with a unit: 10s, 2m, 1h), got '${v}'`);
  return Number(m[1]) * DURATION_UNITS[m[2] ?? '']!;
}

export function parseWhole(v: string, flag: string): number {
  if (!/^\d+$/.test(v.trim())) throw new UsageError(`${flag} must be a whole number, got '${v}'`);
  return Number(v);
}

export function parseDecimal(v: string, flag: string): number {
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(v.trim())) throw new UsageError(`${flag} must be a number such as 0.5, got '${v}'`);
  return Number(v);
}

/** A host path, made absolute against nsbox's working directory. */
export function parseHostPath(v: string): string {
  return path.resolve(v);
}

/** --user UID:GID[:GID,...] */
export function parseUser(v: string): { uid: number; gid: number; groups?: number[] } {
  const m = /^(\d+):(\d+)(?::(\d+(?:,\d+)*))?$/.exec(v);
  if (!m) throw new UsageError(`--user must be UID:GID with numeric ids (such as 1000:1000), got '${v}'`);
  const u: { uid: number; gid: number; groups?: number[] } = { uid: Number(m[1]), gid: Number(m[2]) };
  if (m[3]) u.groups = m[3].split(',').map(Number);
  return u;
}

/** --bind SRC[:DST][:ro|:rw] */
export function parseBind(v: string): Mount {
  const parts = v.split(':');
  let readonly = false;
  const last = parts[parts.length - 1];
  if (parts.length >= 2 && (last === 'ro' || last === 'rw')) {
    readonly = last === 'ro';
    parts.pop();
  }
  if (parts.length > 2 || parts.some((p) => p === '')) {
    throw new UsageError(`--bind must be SRC:DST, SRC:DST:ro or SRC:DST:rw (paths without ':'), got '${v}'`);
  }
  const source = path.resolve(parts[0]!);
  const target = parts[1] ?? source;
  return { type: 'bind', source, target, readonly };
}

/** --tmpfs DST[:size=SIZE,mode=OCTAL] */
export function parseTmpfs(v: string): Mount {
  const colon = v.indexOf(':');
  const target = colon < 0 ? v : v.slice(0, colon);
  const m: Mount = { type: 'tmpfs', target };
  if (target === '') throw new UsageError(`--tmpfs needs a target path, got '${v}'`);
  if (colon >= 0) {
    for (const opt of v.slice(colon + 1).split(',')) {
      const [k, val] = opt.split('=', 2) as [string, string | undefined];
      if (k === 'size' && val) m.size = val;
      else if (k === 'mode' && val && /^[0-7]{1,4}$/.test(val)) m.mode = parseInt(val, 8);
      else throw new UsageError(`--tmpfs options are size=SIZE and mode=OCTAL, got '${opt}' in '${v}'`);
    }
  }
  return m;
}

/**
 * --env K=V, or --env K for K's value in nsbox's own environment: the entry to add, its value
 * undefined when K is not set there (then nothing is added).
 */
export function parseEnv(v: string): [string, string | undefined] {
  const eq = v.indexOf('=');
  if (eq === 0 || v === '') throw new UsageError(`--env must be K=V (or K to copy it from nsbox's environment), got '${v}'`);
  return eq > 0 ? [v.slice(0, eq), v.slice(eq + 1)] : [v, process.env[v]];
}

/** --add-host NAME:ADDR (docker's; the address may be IPv6, whose colons follow the first) */
export function parseAddHost(v: string): [string, string] {
  const c = v.indexOf(':');
  if (c <= 0 || c === v.length - 1) throw new UsageError(`--add-host must be NAME:ADDRESS (such as db:10.0.0.5), got '${v}'`);
  return [v.slice(0, c), v.slice(c + 1)];
}

/** --device PATH[:CONTAINER_PATH[:PERMISSIONS]] (docker's) */
export function parseDevice(v: string): string | { path: string; containerPath?: string; permissions?: string } {
  const parts = v.split(':');
  if (parts.length > 3 || parts.some((p) => p === '')) throw new UsageError(`--device must be PATH[:CONTAINER_PATH[:PERMISSIONS]] (such as /dev/loop0:/dev/loop0:rw), got '${v}'`);
  if (parts.length === 1) return v;
  // docker: a second field of only r, w and m is the permissions.
  if (parts.length === 2 && /^[rwm]+$/.test(parts[1]!)) return { path: parts[0]!, permissions: parts[1]! };
  return parts.length === 2 ? { path: parts[0]!, containerPath: parts[1]! } : { path: parts[0]!, containerPath: parts[1]!, permissions: parts[2]! };
}

/** --publish [ADDR:]HOST:CONTAINER */
export function parsePublish(v: string): PortMapping {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d+):(\d+)$/.exec(v);
  if (!m) throw new UsageError(`--publish must be HOST:CONTAINER or ADDR:HOST:CONTAINER with numeric ports (such as 8080:80), got '${v}'`);
  const p: PortMapping = { host: Number(m[2]), container: Number(m[3]) };
  if (m[1] !== undefined) p.hostAddress = m[1];
  return p;
}

/** machine start --init builtin|PATH */
export function parseMachineInit(v: string): 'builtin' | string[] {
  if (v === 'builtin') return 'builtin';
  if (v.startsWith('/')) return [v];
  throw new UsageError(`--init must be 'builtin' or an absolute path inside the rootfs such as /sbin/init, got '${v}'`);
}

/** machine kill --signal: a number, or a name as given, upper-cased ('term' -> 'TERM'). */
export function parseSignal(v: string): string | number {
  return /^\d+$/.test(v) ? Number(v) : v.toUpperCase();
}
