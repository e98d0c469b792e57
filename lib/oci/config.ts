// oci/config.ts: an OCI bundle's config.json turned into nsbox's own options (lib/options.ts), for
// the runtime binary (lib/oci/runtime.ts). The plan is then built by the library's own builder
// (plan.ts basePlan, through app.ts launchGated): this file only translates. Every field it cannot
// honour is an error naming it (code ENOTSUP), except those runc and crun also ignore on a host that
// lacks the feature (AppArmor, SELinux labels): those are returned as notes for the runtime's log.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NsboxError } from '../errors';
import { CAP_NUMBERS, DEFAULT_CAPS } from '../caps';
import { MASKED_PROC_DIRS, MASKED_PROC_FILES, MASKED_SYS_DIRS, READONLY_PROC } from '../fsops';
import { RLIMIT_NAMES } from '../rlimits';
import type { AppOptions, Limits, Mount, RlimitName, Rlimits } from '../types';

/** What a config.json asks for, in nsbox's terms. */
export interface Converted {
  /** The container's options (command included): resolved by resolveAppOptions. */
  options: AppOptions;
  /** The internal options resolveAppOptions does not take (ResolvedAppOptions.sysfs, .mqueue). */
  sysfs: boolean;
  mqueue: boolean;
  /** A /tmp mount of the config's own (else nsbox's default /tmp tmpfs is dropped, as runc has none). */
  tmp: boolean;
  noNewPrivileges: boolean;
  oomScoreAdj: number | undefined;
  annotations: Record<string, string>;
  /** Fields accepted without effect on this host, as runc and crun treat them: for --log. */
  notes: string[];
}

/** ENOTSUP naming the field. */
function unsupported(field: string, why: string): NsboxError {
  return new NsboxError({ code: 'ENOTSUP', step: 'oci.config', path: field, message: `config.json: ${field}: ${why} (step oci.config)` });
}

/** EINVAL naming the field. */
function invalid(field: string, why: string): NsboxError {
  return new NsboxError({ code: 'EINVAL', step: 'oci.config', path: field, message: `config.json: ${field}: ${why} (step oci.config)` });
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function obj(v: unknown, field: string): Obj {
  if (!isObj(v)) throw invalid(field, 'must be an object');
  return v;
}

function strings(v: unknown, field: string): string[] {
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw invalid(field, 'must be an array of strings');
  return v as string[];
}

function uint(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw invalid(field, 'must be an unsigned 32-bit integer');
  return v;
}

/** Keys of `o` outside `known`: each one an error naming it (nothing is ignored silently). */
function rejectUnknown(o: Obj, known: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) throw unsupported(where ? `${where}.${k}` : k, 'not supported by nsbox-runtime yet');
  }
}

/** The namespaces every nsbox container has of its own (plan.ts namespaceFlags); network is chosen. */
const OWN_NAMESPACES = ['pid', 'ipc', 'uts', 'mount'];

/** Whether a Linux security module is active on this host (as runc asks it). */
function lsmEnabled(name: 'apparmor' | 'selinux'): boolean {
  try {
    if (name === 'apparmor') return fs.readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y';
    return fs.existsSync('/sys/fs/selinux/enforce');
  } catch {
    return false;
  }
}

const BIND_OPTIONS = ['bind', 'rbind', 'ro', 'rw', 'nosuid', 'nodev', 'private', 'rprivate'];
const TMPFS_OPTIONS = ['nosuid', 'nodev', 'noexec', 'strictatime', 'relatime', 'rw'];

/** A mount of config.json: one of nsbox's own (noted), a bind, a tmpfs, or an error naming it. */
function convertMount(m: Obj, i: number, bundle: string, out: { mounts: Mount[]; sysfs: boolean; mqueue: boolean; cgroup: boolean; tmp: boolean; notes: string[] }): void {
  const field = `mounts[${i}]`;
  rejectUnknown(m, ['destination', 'type', 'source', 'options', 'uidMappings', 'gidMappings'], field);
  if (m.uidMappings !== undefined || m.gidMappings !== undefined) throw unsupported(`${field}.uidMappings`, 'id-mapped mounts are not supported yet');
  const dst = m.destination;
  if (typeof dst !== 'string' || !dst.startsWith('/')) throw invalid(`${field}.destination`, 'must be an absolute path');
  const type = m.type === undefined ? '' : String(m.type);
  const options = m.options === undefined ? [] : strings(m.options, `${field}.options`);
  const d = path.posix.normalize(dst);
  // nsbox's own set (fsops.ts mountProcAndDev, mountSys), with its own options.
  const own: Record<string, string[]> = {
    '/proc': ['proc'], '/dev': ['tmpfs'], '/dev/pts': ['devpts'], '/dev/shm': ['tmpfs'], '/dev/mqueue': ['mqueue'], '/sys': ['sysfs'],
    '/sys/fs/cgroup': ['cgroup', 'cgroup2'],
  };
  if (own[d]?.includes(type)) {
    if (d === '/dev/mqueue') out.mqueue = true;
    if (d === '/sys') out.sysfs = true;
    if (d === '/sys/fs/cgroup') out.cgroup = true;
    out.notes.push(`${field} (${type} at ${d}): nsbox's own ${d} is mounted, with nsbox's options`);
    return;
  }
  if (type === 'bind' || options.includes('bind') || options.includes('rbind')) {
    for (const o of options) if (!BIND_OPTIONS.includes(o)) throw unsupported(`${field}.options`, `bind option '${o}' is not supported (binds are nosuid,nodev)`);
    if (typeof m.source !== 'string' || m.source === '') throw invalid(`${field}.source`, 'a bind needs a source');
    const source = path.resolve(bundle, m.source);
    out.mounts.push({ type: 'bind', source, target: d, readonly: options.includes('ro') });
    if (d === '/tmp') out.tmp = true;
    return;
  }
  if (type === 'tmpfs') {
    let size: string | undefined;
    let mode: number | undefined;
    for (const o of options) {
      if (o.startsWith('size=')) size = o.slice(5);
      else if (o.startsWith('mode=')) mode = parseInt(o.slice(5), 8);
      else if (!TMPFS_OPTIONS.includes(o)) throw unsupported(`${field}.options`, `tmpfs option '${o}' is not supported`);
    }
    if (mode !== undefined && !(mode >= 0 && mode <= 0o7777)) throw invalid(`${field}.options`, 'bad mode=');
    out.mounts.push({ type: 'tmpfs', target: d, ...(size !== undefined ? { size: size.replace(/k$/, 'K').replace(/m$/, 'M').replace(/g$/, 'G') } : {}), ...(mode !== undefined ? { mode } : {}) });
    if (d === '/tmp') out.tmp = true;
    return;
  }
  throw unsupported(`${field}`, `a mount of type '${type}' at ${d} is not supported (binds and tmpfs only)`);
}

/** The capability sets: nsbox keeps one set as bounding, permitted and effective (caps.ts). */
function convertCaps(c: Obj, uid: number, notes: string[]): string[] {
  rejectUnknown(c, ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'], 'process.capabilities');
  const bounding = strings(c.bounding ?? [], 'process.capabilities.bounding');
  for (const n of bounding) if (!(n in CAP_NUMBERS)) throw invalid('process.capabilities.bounding', `unknown capability '${n}'`);
  const same = (v: unknown, name: string): void => {
    const s = strings(v ?? [], `process.capabilities.${name}`);
    if (s.length !== bounding.length || !s.every((x) => bounding.includes(x))) {
      throw unsupported(`process.capabilities.${name}`, 'nsbox keeps one set as bounding, permitted and effective; this set differs from bounding');
    }
  };
  same(c.permitted, 'permitted');
  same(c.effective, 'effective');
  if (strings(c.inheritable ?? [], 'process.capabilities.inheritable').length) throw unsupported('process.capabilities.inheritable', 'inheritable capabilities are not supported');
  const ambient = strings(c.ambient ?? [], 'process.capabilities.ambient');
  if (ambient.length) {
    // For uid 0 the permitted set after execve is the bounding set anyway: ambient adds nothing.
    if (uid !== 0) throw unsupported('process.capabilities.ambient', 'ambient capabilities for a non-root user are not supported');
    notes.push('process.capabilities.ambient: no effect for uid 0 (its permitted set after execve is the bounding set)');
  }
  return bounding;
}

/** linux.resources into nsbox's limits (cgroup v2). */
function convertResources(r: Obj, notes: string[]): Limits | undefined {
  rejectUnknown(r, ['devices', 'memory', 'cpu', 'pids', 'blockIO'], 'linux.resources');
  const l: Limits = {};
  if (r.devices !== undefined) {
    // nsbox's own device policy: its standard nodes only (docs/security.md). A list that denies
    // everything else is what that policy does already.
    const list = r.devices as unknown[];
    if (!Array.isArray(list)) throw invalid('linux.resources.devices', 'must be an array');
    list.forEach((e, i) => {
      const d = obj(e, `linux.resources.devices[${i}]`);
      if (d.allow === false && (d.type === undefined || d.type === 'a') && d.major === undefined && d.minor === undefined) return;
      if (d.allow === false) throw unsupported(`linux.resources.devices[${i}]`, 'a deny rule for some devices only is not supported');
      // An allow rule: nsbox's nodes are allowed by its own policy; any other device is not made.
      notes.push(`linux.resources.devices[${i}]: allow ${String(d.type ?? 'a')} ${String(d.major ?? '*')}:${String(d.minor ?? '*')} ${String(d.access ?? '')}: nsbox's own device policy applies (its standard nodes only)`);
    });
  }
  if (r.memory !== undefined) {
    const m = obj(r.memory, 'linux.resources.memory');
    rejectUnknown(m, ['limit', 'swap', 'reservation'], 'linux.resources.memory');
    if (m.reservation !== undefined) throw unsupported('linux.resources.memory.reservation', 'memory.low is not supported yet');
    if (typeof m.limit === 'number' && m.limit > 0) l.memory = m.limit;
    if (typeof m.swap === 'number' && m.swap > 0) {
      // OCI's swap is memory plus swap; nsbox's the swap alone (memory.swap.max).
      if (l.memory === undefined) throw unsupported('linux.resources.memory.swap', 'a swap limit without a memory limit');
      l.swap = Math.max(0, m.swap - (l.memory as number));
    }
  }
  if (r.cpu !== undefined) {
    const c = obj(r.cpu, 'linux.resources.cpu');
    rejectUnknown(c, ['shares', 'quota', 'period', 'cpus', 'mems'], 'linux.resources.cpu');
    if (typeof c.quota === 'number' && c.quota > 0) {
      const period = typeof c.period === 'number' && c.period > 0 ? c.period : 100000;
      l.cpu = c.quota / period;
    }
    // runc's conversion of cgroup v1 shares to v2 weight. 1024, cgroup v1's default (`ctr run`
    // sets it always), asks for nothing: no limit, as without it.
    if (c.shares === 1024) notes.push('linux.resources.cpu.shares 1024: cgroup v1\'s default, no limit asked; none is set');
    else if (typeof c.shares === 'number' && c.shares > 0) l.cpuWeight = Math.round(1 + (((c.shares as number) - 2) * 9999) / 262142);
    if (typeof c.cpus === 'string' && c.cpus !== '') l.cpuset = c.cpus;
    if (typeof c.mems === 'string' && c.mems !== '') throw unsupported('linux.resources.cpu.mems', 'cpuset.mems is not supported yet');
  }
  if (r.pids !== undefined) {
    const p = obj(r.pids, 'linux.resources.pids');
    rejectUnknown(p, ['limit'], 'linux.resources.pids');
    if (typeof p.limit === 'number' && p.limit > 0) l.pids = p.limit;
  }
  if (r.blockIO !== undefined) {
    const b = obj(r.blockIO, 'linux.resources.blockIO');
    rejectUnknown(b, ['weight'], 'linux.resources.blockIO');
    if (typeof b.weight === 'number' && b.weight > 0) l.ioWeight = b.weight;
  }
  return Object.keys(l).length ? l : undefined;
}

/** The namespaces: nsbox's own set, the network's new or not; anything else an error. */
function convertNamespaces(list: unknown, notes: string[]): 'host' | 'loopback' {
  if (!Array.isArray(list)) throw invalid('linux.namespaces', 'must be an array');
  const types = new Set<string>();
  list.forEach((e, i) => {
    const n = obj(e, `linux.namespaces[${i}]`);
    rejectUnknown(n, ['type', 'path'], `linux.namespaces[${i}]`);
    if (n.path !== undefined && n.path !== '') throw unsupported(`linux.namespaces[${i}].path`, `joining an existing ${String(n.type)} namespace is not supported yet`);
    if (!['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup'].includes(String(n.type))) {
      throw unsupported(`linux.namespaces[${i}]`, `a ${String(n.type)} namespace is not supported yet`);
    }
    types.add(String(n.type));
  });
  for (const t of OWN_NAMESPACES) {
    if (!types.has(t)) throw unsupported('linux.namespaces', `sharing the host's ${t} namespace is not supported (nsbox always makes one)`);
  }
  if (!types.has('cgroup')) notes.push('linux.namespaces: no cgroup namespace asked for; nsbox gives every container one');
  // A new network namespace: with lo up, as runc brings it up.
  return types.has('network') ? 'loopback' : 'host';
}

/** Reads and converts <bundle>/config.json. */
export function readBundle(bundle: string): Converted {
  let text: string;
  try {
    text = fs.readFileSync(path.join(bundle, 'config.json'), 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new NsboxError({ code: err.code ?? 'EIO', errno: err.errno, syscall: 'open', step: 'oci.config', path: path.join(bundle, 'config.json') });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw invalid('(file)', `not JSON: ${(e as Error).message}`);
  }
  return convertConfig(obj(raw, '(file)'), bundle);
}

export function convertConfig(c: Obj, bundle: string): Converted {
  rejectUnknown(c, ['ociVersion', 'process', 'root', 'hostname', 'domainname', 'mounts', 'hooks', 'annotations', 'linux'], '');
  if (typeof c.ociVersion !== 'string' || !/^1\./.test(c.ociVersion)) throw invalid('ociVersion', 'must be a 1.x version');
  const notes: string[] = [];
  const p = obj(c.process, 'process');
  rejectUnknown(p, ['terminal', 'consoleSize', 'user', 'args', 'env', 'cwd', 'capabilities', 'rlimits', 'noNewPrivileges', 'apparmorProfile', 'oomScoreAdj', 'selinuxLabel'], 'process');
  if (p.terminal === true) throw unsupported('process.terminal', 'a terminal (--console-socket) is not supported yet');
  if (p.consoleSize !== undefined && p.terminal === true) throw unsupported('process.consoleSize', 'no terminal');
  const args = strings(p.args, 'process.args');
  if (args.length === 0 || args[0] === '') throw invalid('process.args', 'must name a command');
  if (args.some((a) => a === '')) throw unsupported('process.args', "an empty argument is not supported (nsbox's command pipe ends at one)");
  const env: Record<string, string> = {};
  for (const kv of strings(p.env ?? [], 'process.env')) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw invalid('process.env', `'${kv}' is not NAME=value`);
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  if (typeof p.cwd !== 'string' || !p.cwd.startsWith('/')) throw invalid('process.cwd', 'must be an absolute path');
  const u = obj(p.user ?? { uid: 0, gid: 0 }, 'process.user');
  rejectUnknown(u, ['uid', 'gid', 'additionalGids', 'umask'], 'process.user');
  if (u.umask !== undefined) throw unsupported('process.user.umask', 'a umask is not supported yet');
  const uid = uint(u.uid, 'process.user.uid');
  const gid = uint(u.gid, 'process.user.gid');
  const groups = (u.additionalGids === undefined ? [] : (u.additionalGids as unknown[])).map((g, i) => uint(g, `process.user.additionalGids[${i}]`));
  const caps = convertCaps(obj(p.capabilities ?? {}, 'process.capabilities'), uid, notes);
  // nsbox's `rlimits` option (lib/rlimits.ts): RLIMIT_NOFILE is `nofile`; RLIM_INFINITY (2^64-1,
  // not exact in JSON's doubles) or anything past 2^53 is 'unlimited'.
  const rlimits: Rlimits = {};
  if (p.rlimits !== undefined) {
    if (!Array.isArray(p.rlimits)) throw invalid('process.rlimits', 'must be an array');
    p.rlimits.forEach((e, i) => {
      const r = obj(e, `process.rlimits[${i}]`);
      const name = String(r.type).replace(/^RLIMIT_/, '').toLowerCase() as RlimitName;
      if (!RLIMIT_NAMES.includes(name)) throw invalid(`process.rlimits[${i}].type`, `unknown '${String(r.type)}'`);
      const amount = (v: unknown, k: string): number | 'unlimited' => {
        if (typeof v !== 'number' || !(v >= 0)) throw invalid(`process.rlimits[${i}].${k}`, 'must be a number >= 0');
        return v > Number.MAX_SAFE_INTEGER ? 'unlimited' : v;
      };
      rlimits[name] = { soft: amount(r.soft, 'soft'), hard: amount(r.hard, 'hard') };
    });
  }
  for (const lsm of ['apparmorProfile', 'selinuxLabel'] as const) {
    if (p[lsm] === undefined || p[lsm] === '') continue;
    const mod = lsm === 'apparmorProfile' ? 'apparmor' : 'selinux';
    if (lsmEnabled(mod)) throw unsupported(`process.${lsm}`, `${mod} is active on this host and nsbox-runtime cannot apply a profile yet`);
    notes.push(`process.${lsm}: ${mod} is not active on this host; ignored, as runc and crun do`);
  }
  let oomScoreAdj: number | undefined;
  if (p.oomScoreAdj !== undefined) {
    if (typeof p.oomScoreAdj !== 'number' || !Number.isInteger(p.oomScoreAdj) || p.oomScoreAdj < -1000 || p.oomScoreAdj > 1000) throw invalid('process.oomScoreAdj', 'must be an integer in -1000..1000');
    oomScoreAdj = p.oomScoreAdj;
  }

  const root = obj(c.root, 'root');
  rejectUnknown(root, ['path', 'readonly'], 'root');
  if (typeof root.path !== 'string' || root.path === '') throw invalid('root.path', 'must be a path');
  const rootfs = path.resolve(bundle, root.path);
  if (c.domainname !== undefined && c.domainname !== '') throw unsupported('domainname', 'setting the NIS domain name is not supported yet');
  if (c.hooks !== undefined && isObj(c.hooks) && Object.values(c.hooks).some((h) => Array.isArray(h) && h.length)) throw unsupported('hooks', 'hooks are not supported yet');
  const annotations: Record<string, string> = {};
  if (c.annotations !== undefined) for (const [k, v] of Object.entries(obj(c.annotations, 'annotations'))) annotations[k] = String(v);

  const l = obj(c.linux ?? {}, 'linux');
  rejectUnknown(l, ['namespaces', 'resources', 'cgroupsPath', 'maskedPaths', 'readonlyPaths', 'rootfsPropagation', 'mountLabel', 'devices', 'uidMappings', 'gidMappings', 'sysctl', 'seccomp'], 'linux');
  const network = convertNamespaces(l.namespaces ?? [], notes);
  for (const k of ['uidMappings', 'gidMappings', 'sysctl', 'seccomp'] as const) {
    const v = l[k];
    const empty = v === undefined || (Array.isArray(v) && v.length === 0) || (isObj(v) && Object.keys(v).length === 0 && k !== 'seccomp');
    if (!empty) throw unsupported(`linux.${k}`, 'not supported by nsbox-runtime yet');
  }
  if (Array.isArray(l.devices) && l.devices.length) throw unsupported('linux.devices', 'devices from config.json are not supported yet');
  if (l.mountLabel !== undefined && l.mountLabel !== '') {
    if (lsmEnabled('selinux')) throw unsupported('linux.mountLabel', 'selinux is active on this host and nsbox-runtime cannot apply labels yet');
    notes.push('linux.mountLabel: selinux is not active on this host; ignored, as runc and crun do');
  }
  if (l.rootfsPropagation !== undefined && !['private', 'rprivate', ''].includes(String(l.rootfsPropagation))) {
    throw unsupported('linux.rootfsPropagation', `'${String(l.rootfsPropagation)}' is not supported (the container's mounts are private)`);
  }
  if (typeof l.cgroupsPath === 'string' && l.cgroupsPath !== '') notes.push(`linux.cgroupsPath '${l.cgroupsPath}': not used; the container's cgroup is nsbox's (see \`state\`)`);
  // nsbox's own masks (fsops.ts): a path outside them cannot be masked yet.
  const masked = new Set([...MASKED_PROC_FILES, ...MASKED_PROC_DIRS].map((n) => '/proc/' + n).concat(MASKED_SYS_DIRS));
  for (const m of strings(l.maskedPaths ?? [], 'linux.maskedPaths')) {
    if (!masked.has(path.posix.normalize(m))) throw unsupported('linux.maskedPaths', `masking ${m} is not supported (nsbox masks ${[...masked].join(', ')})`);
  }
  const ro = new Set(READONLY_PROC.map((n) => '/proc/' + n));
  for (const m of strings(l.readonlyPaths ?? [], 'linux.readonlyPaths')) {
    if (!ro.has(path.posix.normalize(m))) throw unsupported('linux.readonlyPaths', `making ${m} read-only is not supported (nsbox's are ${[...ro].join(', ')})`);
  }
  const limits = l.resources === undefined ? undefined : convertResources(obj(l.resources, 'linux.resources'), notes);

  const mo = { mounts: [] as Mount[], sysfs: false, mqueue: false, cgroup: false, tmp: false, notes };
  if (c.mounts !== undefined) {
    if (!Array.isArray(c.mounts)) throw invalid('mounts', 'must be an array');
    c.mounts.forEach((m, i) => convertMount(obj(m, `mounts[${i}]`), i, bundle, mo));
  }
  if (mo.cgroup && !mo.sysfs) throw unsupported('mounts', 'a cgroup mount at /sys/fs/cgroup without sysfs at /sys');

  const options: AppOptions = {
    command: args,
    rootfs,
    readonly: root.readonly === true,
    env,
    cwd: p.cwd,
    ...(typeof c.hostname === 'string' && c.hostname !== '' ? { hostname: c.hostname } : {}),
    user: { uid, gid, groups },
    mounts: mo.mounts,
    network,
    ...(limits ? { limits } : {}),
    ...(Object.keys(rlimits).length ? { rlimits } : {}),
    // Exactly the config's set: nsbox's default set minus what it lacks, plus the rest of it.
    capabilities: { drop: DEFAULT_CAPS.filter((n) => !caps.includes(n)), add: caps },
    seccomp: 'none',
    etcFiles: false,
  };
  return {
    options, sysfs: mo.sysfs, mqueue: mo.mqueue, tmp: mo.tmp, noNewPrivileges: p.noNewPrivileges === true, oomScoreAdj, annotations, notes,
  };
}
