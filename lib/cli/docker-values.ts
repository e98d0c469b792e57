// cli/docker-values.ts: the parsers of the flags `nsbox run` takes in docker's shape (issue #21):
// -v/--volume, --mount, --env-file, -u/--user, --cpus, --pids-limit, --ulimit, --security-opt,
// --userns, --name, -p. Each turns docker's spelling into the library's option, or throws a one-line
// UsageError naming the flag; what nsbox cannot do is refused by name, never dropped.
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Mount, PortMapping, RlimitAmount, RlimitName, User } from '../index';
import { RLIMIT_NAMES } from '../rlimits';
import { UsageError } from './flags';
import { parseDecimal, parseEnv, parsePublish } from './values';

/** A bind source as docker takes it: absolute, or relative starting with '.' (made absolute). */
function bindSource(src: string, flag: string, v: string): string {
  if (src.startsWith('/') || src === '.' || src.startsWith('./') || src.startsWith('../')) return path.resolve(src);
  throw new UsageError(`${flag} '${v}': named volumes are not supported (nsbox has no volume store); give a host path such as /srv/data or ./data`);
}

function absTarget(dst: string, flag: string, v: string): string {
  if (!dst.startsWith('/')) throw new UsageError(`${flag} '${v}': the container path must be absolute, got '${dst}'`);
  return dst;
}

/** -v/--volume SRC:DST[:OPTS], OPTS being ro or rw (docker's). */
export function parseVolume(v: string, flag = '--volume'): Mount {
  const parts = v.split(':');
  if (parts.length === 1) {
    throw new UsageError(`${flag} '${v}': anonymous volumes are not supported; give SRC:DST[:ro] with a host path SRC`);
  }
  if (parts.length > 3 || parts.some((p) => p === '')) throw new UsageError(`${flag} must be SRC:DST, SRC:DST:ro or SRC:DST:rw, got '${v}'`);
  let readonly = false;
  if (parts.length === 3) {
    for (const o of parts[2]!.split(',')) {
      if (o === 'ro' || o === 'rw') readonly = o === 'ro';
      else throw new UsageError(`${flag} '${v}': option '${o}' is not supported (only ro and rw)`);
    }
  }
  return { type: 'bind', source: bindSource(parts[0]!, flag, v), target: absTarget(parts[1]!, flag, v), readonly };
}

const TRUE = new Set(['', 'true', '1']);
const FALSE = new Set(['false', '0']);

/** --mount type=bind|tmpfs,source=,target=,readonly (docker's keys and their aliases). */
export function parseMount(v: string, flag = '--mount'): Mount {
  const kv = new Map<string, string>();
  for (const field of v.split(',')) {
    if (field === '') continue;
    const eq = field.indexOf('=');
    const k = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    kv.set(k, eq < 0 ? '' : field.slice(eq + 1));
  }
  const take = (...names: string[]): string | undefined => {
    let val: string | undefined;
    for (const n of names) {
      if (kv.has(n)) val = kv.get(n);
      kv.delete(n);
    }
    return val;
  };
  const type = take('type') ?? 'volume';
  const target = take('target', 'destination', 'dst');
  if (target === undefined || target === '') throw new UsageError(`${flag} '${v}' needs target=PATH`);
  let m: Mount;
  if (type === 'bind') {
    const source = take('source', 'src');
    if (source === undefined || source === '') throw new UsageError(`${flag} '${v}': type=bind needs source=PATH`);
    const ro = take('readonly', 'ro');
    if (ro !== undefined && !TRUE.has(ro) && !FALSE.has(ro)) throw new UsageError(`${flag} '${v}': readonly must be true or false, got '${ro}'`);
    m = { type: 'bind', source: bindSource(source, flag, v), target: absTarget(target, flag, v), readonly: ro !== undefined && TRUE.has(ro) };
  } else if (type === 'tmpfs') {
    m = { type: 'tmpfs', target: absTarget(target, flag, v) };
    const size = take('tmpfs-size');
    const mode = take('tmpfs-mode');
    if (size !== undefined) m.size = /^\d+$/.test(size) ? Number(size) : size;
    if (mode !== undefined) {
      if (!/^[0-7]{1,4}$/.test(mode)) throw new UsageError(`${flag} '${v}': tmpfs-mode must be octal such as 1777, got '${mode}'`);
      m.mode = parseInt(mode, 8);
    }
  } else if (type === 'volume') {
    throw new UsageError(`${flag} '${v}': type=volume (named volumes) is not supported; use type=bind with a host path`);
  } else {
    throw new UsageError(`${flag} '${v}': type must be bind or tmpfs, got '${type}'`);
  }
  const left = [...kv.keys()];
  if (left.length) throw new UsageError(`${flag} '${v}': ${left.map((k) => `'${k}'`).join(', ')} not supported (nsbox takes type, source, target, readonly, tmpfs-size, tmpfs-mode)`);
  return m;
}

/** --env-file FILE: docker's format (K=V, or K alone for nsbox's own K; # comments, blank lines). */
export function parseEnvFile(v: string, flag = '--env-file'): Array<[string, string | undefined]> {
  let text: string;
  try {
    text = fs.readFileSync(v, 'utf8');
  } catch (e) {
    throw new UsageError(`${flag} '${v}': cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  const out: Array<[string, string | undefined]> = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    try {
      out.push(parseEnv(line.trimStart()));
    } catch {
      throw new UsageError(`${flag} '${v}': line ${i + 1} is not K=V or K`);
    }
  });
  return out;
}

/**
 * -u/--user: UID:GID[:GID,...] is the credentials as they are; any other form of docker's (UID,
 * NAME, NAME:GROUP, UID:GROUP) is a string that `nsbox run` resolves in the root's /etc/passwd and
 * /etc/group before the start (cli/docker-run.ts resolveUser).
 */
export function parseUserSpec(v: string, flag = '--user'): User | string {
  const m = /^(\d+):(\d+)(?::(\d+(?:,\d+)*))?$/.exec(v);
  if (m) {
    const u: User = { uid: Number(m[1]), gid: Number(m[2]) };
    if (m[3]) u.groups = m[3].split(',').map(Number);
    return u;
  }
  if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]*(:[A-Za-z0-9_.][A-Za-z0-9_.-]*)?$/.test(v)) {
    throw new UsageError(`${flag} must be UID[:GID] or NAME[:GROUP] (such as 1000:1000 or nobody), got '${v}'`);
  }
  return v;
}

/** --cpus: cores, more than 0. */
export function parseCpus(v: string, flag = '--cpus'): number {
  const n = parseDecimal(v, flag);
  if (!(n > 0)) throw new UsageError(`${flag} must be more than 0, got '${v}'`);
  return n;
}

/** --pids-limit N; 0 or -1 is no limit (docker's), which leaves the option unset. */
export function parsePidsLimit(v: string, flag = '--pids-limit'): number | undefined {
  if (v.trim() === '-1' || v.trim() === '0') return undefined;
  if (!/^\d+$/.test(v.trim())) throw new UsageError(`${flag} must be a whole number (-1 for no limit), got '${v}'`);
  return Number(v);
}

/**
 * --ulimit NAME=SOFT[:HARD] (docker's): one resource of the `rlimits` option (lib/rlimits.ts names
 * them), HARD being SOFT when left out; -1 or `unlimited` is no limit. A soft limit above the hard
 * one is the library's RangeError, named after the flag.
 */
export function parseUlimit(v: string, flag = '--ulimit'): [RlimitName, { soft: RlimitAmount; hard: RlimitAmount }] {
  const m = /^([a-z]+)=([^:]+)(?::([^:]+))?$/.exec(v.trim());
  if (!m) throw new UsageError(`${flag} must be NAME=SOFT[:HARD] such as nofile=1024:4096, got '${v}'`);
  const name = m[1] as RlimitName;
  if (!RLIMIT_NAMES.includes(name)) throw new UsageError(`${flag} '${v}': unknown resource '${m[1]}' (one of ${RLIMIT_NAMES.join(', ')})`);
  const amount = (s: string): RlimitAmount => {
    if (s === '-1' || s === 'unlimited') return 'unlimited';
    if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))) throw new UsageError(`${flag} '${v}': '${s}' is not a whole number, -1 or unlimited`);
    return Number(s);
  };
  const soft = amount(m[2]!);
  return [name, { soft, hard: m[3] === undefined ? soft : amount(m[3]) }];
}

/** --security-opt: what it asks of the seccomp option (or nothing: no-new-privileges, always on). */
export function parseSecurityOpt(v: string, flag = '--security-opt'): { seccomp?: 'none' } {
  const eq = v.search(/[=:]/);
  const k = eq < 0 ? v : v.slice(0, eq);
  const val = eq < 0 ? undefined : v.slice(eq + 1);
  if (k === 'no-new-privileges') {
    if (val === undefined || val === 'true') return {};
    throw new UsageError(`${flag} '${v}': no_new_privs is always set in nsbox app containers and cannot be turned off`);
  }
  if (k === 'seccomp') {
    if (val === 'unconfined') return { seccomp: 'none' };
    if (val === undefined || val === '') throw new UsageError(`${flag} '${v}' needs a value: seccomp=unconfined`);
    throw new UsageError(`${flag} '${v}': a docker seccomp profile file is not supported; nsbox applies its built-in profile (docker's default), or none with seccomp=unconfined (the library's seccomp option can add to it)`);
  }
  throw new UsageError(`${flag} '${v}': not supported (nsbox takes seccomp=unconfined and no-new-privileges)`);
}

/** --userns host (no user namespace) | private (one, also as root). */
export function parseUserns(v: string, flag = '--userns'): boolean {
  if (v === 'host') return false;
  if (v === 'private') return true;
  throw new UsageError(`${flag} must be host (no user namespace) or private (a new one), got '${v}'`);
}

/** --name: docker's rule for a container name. */
export function parseName(v: string, flag = '--name'): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(v)) throw new UsageError(`${flag} must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128 characters), got '${v}'`);
  return v;
}

/** -p: --publish with docker's optional /tcp (UDP is not forwarded). */
export function parseDockerPublish(v: string, flag = '--publish'): PortMapping {
  const proto = /\/(\w+)$/.exec(v)?.[1];
  if (proto !== undefined && proto !== 'tcp') throw new UsageError(`${flag} '${v}': only TCP ports are forwarded, not ${proto}`);
  return parsePublish(proto === undefined ? v : v.slice(0, -proto.length - 1));
}
