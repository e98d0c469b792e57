// userns.ts: user namespaces, for callers who are not root (rootless) and for root callers who ask
// for one (`userns: true`), which makes container root an unprivileged id on the host.
//
// The namespace is created by the clone itself (CLONE_NEWUSER next to the other CLONE_NEW* flags),
// never by the Node process. Its id maps come from one of three writers:
//  - 'self':   the child maps its creator's own uid and gid (one id each) itself, after writing "deny"
//              to setgroups, as `unshare -r` does. No helper, no wait: the fast vfork-style clone stays.
//  - 'helper': newuidmap/newgidmap (setuid helpers from the uidmap package) write a full range from
//              /etc/subuid and /etc/subgid while the child waits, so a distro rootfs with system users
//              works. The clone is fork-style then (the parent has to run while the child waits).
//  - 'parent': a privileged caller writes /proc/<pid>/{uid,gid}_map itself while the child waits.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { NsboxError, badRangeValue, fromSystemError, invalidType, notSupported } from './errors';
import { createLease, isStaleTemporary, leaseLive, ownedBy, ownerOf, readLease, withLock, writeLeaseAtomic, type LeaseOwner } from './lease';
import { native, type NativePlan, type SpawnResult } from './native';
import { pathDirs } from './env';
import { STEPS } from './steps';
import { privileged } from './runtime';
import { arrayElements } from './util';

import type { HostReport, IdMapEntry, UsernsOption } from './types';

export interface UsernsPlan {
  uidMap: IdMapEntry[];
  gidMap: IdMapEntry[];
  how: 'self' | 'helper' | 'parent';
  /**
   * A privileged caller's default maps: the host range is leased per container at spawn
   * (leaseIdRange), so no two running containers share host ids. uidMap/gidMap hold the range once
   * leased.
   */
  auto?: { uid: boolean; gid: boolean };
  /** A persistent machine's rootfs: a rootfs owned by a lease-able range is run with that range. */
  rootfs?: string;
  /** The lease file of an auto range, once taken, and its owner (the container's PID 1). */
  lease?: string;
  owner?: LeaseOwner;
}

const MAX_ID = 2 ** 32 - 1; // (uid_t)-1 is never a valid id
const MAX_EXTENTS = 340; // the kernel's limit per map
/** Where a privileged caller's `userns: true` maps container ids when /etc/subuid has no root entry. */
export const ROOT_USERNS_BASE = 0x70000000;
export const USERNS_SIZE = 65536;

/** The subordinate ranges /etc/subuid (or /etc/subgid) grants this user, by name or by number. */
export function subordinateRanges(file: string, id: number): Array<{ start: number; count: number }> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  let name: string | undefined;
  try {
    name = os.userInfo().username;
  } catch {
    name = undefined;
  }
  const out: Array<{ start: number; count: number }> = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(':');
    if (f.length !== 3 || line.trim().startsWith('#')) continue;
    if (f[0] !== name && f[0] !== String(id)) continue;
    const start = Number(f[1]);
    const count = Number(f[2]);
    if (Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count > 0 && start + count <= MAX_ID) out.push({ start, count });
  }
  return out;
}

/** The setuid map writers, where installed. */
export function idmapHelpers(): { newuidmap: string; newgidmap: string } | null {
  const dirs = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', ...pathDirs()];
  const find = (n: string): string | undefined => {
    for (const d of dirs) {
      const p = path.join(d, n);
      try {
        fs.accessSync(p, fs.constants.X_OK);
        return p;
      } catch {
        /* next */
      }
    }
    return undefined;
  };
  const u = find('newuidmap');
  const g = find('newgidmap');
  return u && g ? { newuidmap: u, newgidmap: g } : null;
}

function readTrim(p: string): string | undefined {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * The host setting that stops this process from creating a user namespace, if one does, with the
 * remedy: a bare EPERM or ENOSPC from clone3 tells a user nothing.
 */
export function usernsBlocker(): { setting: string; value: string; remedy: string } | null {
  if (!fs.existsSync('/proc/self/ns/user')) {
    return { setting: 'CONFIG_USER_NS', value: 'n', remedy: 'the kernel was built without user namespaces' };
  }
  if (readTrim('/proc/sys/user/max_user_namespaces') === '0') {
    return { setting: 'user.max_user_namespaces', value: '0', remedy: 'raise it (sysctl -w user.max_user_namespaces=15000)' };
  }
  if (privileged()) return null;
  if (readTrim('/proc/sys/kernel/unprivileged_userns_clone') === '0') {
    return { setting: 'kernel.unprivileged_userns_clone', value: '0', remedy: 'set it to 1 (sysctl -w kernel.unprivileged_userns_clone=1), or run as root' };
  }
  if (readTrim('/proc/sys/kernel/apparmor_restrict_unprivileged_userns') === '1') {
    return {
      setting: 'kernel.apparmor_restrict_unprivileged_userns',
      value: '1',
      remedy: 'give node an AppArmor profile that allows "userns," or set the sysctl to 0 (sysctl -w kernel.apparmor_restrict_unprivileged_userns=0)',
    };
  }
  return null;
}

/** Shape check of the `userns` option (pure; the host-dependent checks come at start). */
export function checkUsernsOption(name: string, v: unknown): UsernsOption | undefined {
  if (v === undefined || typeof v === 'boolean') return v;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidType(name, 'a boolean or an object { uidMap, gidMap }', v);
  for (const k of Object.keys(v)) {
    if (k !== 'uidMap' && k !== 'gidMap') throw badRangeValue(name, k, `has an unknown key '${k}' (known: uidMap, gidMap)`);
  }
  const o = v as { uidMap?: unknown; gidMap?: unknown };
  const out: { uidMap?: IdMapEntry[]; gidMap?: IdMapEntry[] } = {};
  for (const key of ['uidMap', 'gidMap'] as const) {
    if (o[key] === undefined) continue;
    const list = arrayElements(`${name}.${key}`, o[key], 'an array of { containerID, hostID, size }');
    if (list.length === 0 || list.length > MAX_EXTENTS) throw badRangeValue(`${name}.${key}`, list.length, `must have 1 to ${MAX_EXTENTS} entries`);
    out[key] = list.map((e, i) => {
      const at = `${name}.${key}[${i}]`;
      if (typeof e !== 'object' || e === null || Array.isArray(e)) throw invalidType(at, 'an object { containerID, hostID, size }', e);
      const r = e as Record<string, unknown>;
      for (const k of Object.keys(r)) {
        if (!['containerID', 'hostID', 'size'].includes(k)) throw badRangeValue(at, k, `has an unknown key '${k}' (known: containerID, hostID, size)`);
      }
      const num = (k: string, min: number): number => {
        const x = r[k];
        if (typeof x !== 'number') throw invalidType(`${at}.${k}`, 'of type number', x);
        if (!Number.isInteger(x) || x < min || x >= MAX_ID) throw badRangeValue(`${at}.${k}`, x, `must be a whole number from ${min} to ${MAX_ID - 1}`);
        return x;
      };
      const entry = { containerID: num('containerID', 0), hostID: num('hostID', 0), size: num('size', 1) };
      if (entry.containerID + entry.size > MAX_ID || entry.hostID + entry.size > MAX_ID) {
        throw badRangeValue(at, `${entry.containerID}/${entry.hostID}+${entry.size}`, `must end below ${MAX_ID}`);
      }
      return entry;
    });
  }
  return out;
}

function overlaps(list: IdMapEntry[], key: 'containerID' | 'hostID'): [IdMapEntry, IdMapEntry] | null {
  const s = [...list].sort((a, b) => a[key] - b[key]);
  for (let i = 1; i < s.length; i++) if (s[i - 1]![key] + s[i - 1]!.size > s[i]![key]) return [s[i - 1]!, s[i]!];
  return null;
}

function fmt(e: IdMapEntry): string {
  return `${e.containerID}:${e.hostID}:${e.size}`;
}

/** Checks one explicit map against the rules the kernel and the host impose, before anything runs. */
function validateMap(name: string, map: IdMapEntry[], own: number, subs: Array<{ start: number; count: number }>, priv: boolean): void {
  if (!map.some((e) => e.containerID === 0)) throw badRangeValue(name, map.map(fmt).join(','), 'must map container id 0 (root inside)');
  const ci = overlaps(map, 'containerID');
  if (ci) throw badRangeValue(name, `${fmt(ci[0])} and ${fmt(ci[1])}`, 'has overlapping container ranges');
  const hi = overlaps(map, 'hostID');
  if (hi) throw badRangeValue(name, `${fmt(hi[0])} and ${fmt(hi[1])}`, 'has overlapping host ranges');
  if (priv) return;
  for (const e of map) {
    const ownOnly = e.hostID === own && e.size === 1;
    const inSub = subs.some((r) => e.hostID >= r.start && e.hostID + e.size <= r.start + r.count);
    if (!ownOnly && !inSub) {
      const allowed = [`${own} (your own id)`, ...subs.map((r) => `${r.start}-${r.start + r.count - 1}`)].join(', ');
      throw badRangeValue(name, fmt(e), `maps host ids outside the caller's ranges (allowed: ${allowed})`);
    }
  }
}

function defaultMap(own: number, subs: Array<{ start: number; count: number }>, helper: boolean, priv: boolean): IdMapEntry[] {
  if (priv) {
    // Root asking for a user namespace: container root is an unused high id on the host, from a
    // range leased to this container alone at spawn. Until then, a placeholder of the same shape.
    return [{ containerID: 0, hostID: ROOT_USERNS_BASE, size: USERNS_SIZE }];
  }
  const r = helper ? subs.find((s) => s.count >= 1) : undefined;
  // As rootless podman does: root inside is the caller, 1..65535 come from the subordinate range.
  if (r) return [{ containerID: 0, hostID: own, size: 1 }, { containerID: 1, hostID: r.start, size: Math.min(r.count, USERNS_SIZE - 1) }];
  return [{ containerID: 0, hostID: own, size: 1 }];
}

/**
 * Decides whether a start gets a user namespace and with which maps. Throws a RangeError for a map
 * the caller may not use, and ENOTSUP where the host cannot give what was asked; nothing exists yet.
 */
export function resolveUserns(opt: UsernsOption | undefined, ids: { uid: number; gid: number; groups: number[] }, step: string): UsernsPlan | null {
  const priv = privileged();
  if (opt === false || (opt === undefined && priv)) {
    if (!priv) {
      throw notSupported(step, 'userns: false needs a process that is root in the initial user namespace; this one is not, so its containers need a user namespace');
    }
    return null;
  }
  const blocked = usernsBlocker();
  if (blocked) throw notSupported(step, `user namespaces are not available: ${blocked.setting}=${blocked.value}; ${blocked.remedy}`);
  const uid = process.geteuid?.() ?? 0;
  const gid = process.getegid?.() ?? 0;
  const subu = subordinateRanges('/etc/subuid', uid);
  const subg = subordinateRanges('/etc/subgid', uid);
  const helpers = priv ? null : idmapHelpers();
  const explicit = typeof opt === 'object' ? opt : {};
  const uidMap = explicit.uidMap ?? defaultMap(uid, subu, !!helpers && subg.length > 0, priv);
  const gidMap = explicit.gidMap ?? defaultMap(gid, subg, !!helpers && subu.length > 0, priv);
  if (explicit.uidMap) validateMap('userns.uidMap', uidMap, uid, subu, priv);
  if (explicit.gidMap) validateMap('userns.gidMap', gidMap, gid, subg, priv);
  const single = (m: IdMapEntry[], own: number): boolean => m.length === 1 && m[0]!.size === 1 && m[0]!.hostID === own;
  let how: UsernsPlan['how'];
  if (priv) how = 'parent';
  else if (single(uidMap, uid) && single(gidMap, gid)) how = 'self';
  else if (helpers) how = 'helper';
  else throw notSupported(step, 'a user namespace map of more than your own id needs newuidmap and newgidmap (Debian package uidmap) and ranges in /etc/subuid and /etc/subgid');
  const mapped = (m: IdMapEntry[], id: number): boolean => m.some((e) => id >= e.containerID && id < e.containerID + e.size);
  if (!mapped(uidMap, ids.uid)) throw badRangeValue('user.uid', ids.uid, `is not mapped in the container's user namespace (uid map ${uidMap.map(fmt).join(',')})`);
  if (!mapped(gidMap, ids.gid)) throw badRangeValue('user.gid', ids.gid, `is not mapped in the container's user namespace (gid map ${gidMap.map(fmt).join(',')})`);
  for (const g of ids.groups) {
    if (!mapped(gidMap, g)) throw badRangeValue('user.groups', g, `is not mapped in the container's user namespace (gid map ${gidMap.map(fmt).join(',')})`);
  }
  if (how === 'self' && ids.groups.length) {
    throw notSupported(step, 'supplementary groups need setgroups(2), which a user namespace that maps only its creator denies; install newuidmap/newgidmap with /etc/subgid ranges');
  }
  const auto = priv ? { uid: !explicit.uidMap, gid: !explicit.gidMap } : undefined;
  return { uidMap, gidMap, how, ...(auto && (auto.uid || auto.gid) ? { auto } : {}) };
}

// ---- per-container host id ranges (a privileged caller's userns: true) ----

/** Where the id range leases live: one file per leased range, named by its first host uid. */
export const USERNS_LEASE_DIR = '/run/nsbox/userns';
/**
 * Ranges that belong to a persistent machine's rootfs (one file per range, naming the rootfs), kept
 * across reboots: no app container takes such a range while that rootfs is still owned by it.
 */
export const USERNS_RESERVE_DIR = '/var/lib/nsbox/userns';
/** Ranges of USERNS_SIZE ids from ROOT_USERNS_BASE up, where /etc/subuid has no range for root. */
export const ROOT_USERNS_SLOTS = 16384;

export interface IdRange {
  uid: number;
  gid: number;
}

interface IdLease extends LeaseOwner, IdRange {}

/**
 * The ranges a privileged caller hands out, in order: root's own /etc/subuid and /etc/subgid ranges
 * cut into USERNS_SIZE slices (slice i of each pairs up), as podman's --userns=auto does with its
 * user's; else ROOT_USERNS_SLOTS slices from ROOT_USERNS_BASE, above any id a distribution hands out.
 */
export function idRangePool(): { ranges: IdRange[]; source: string } {
  const slices = (file: string): number[] =>
    subordinateRanges(file, 0).flatMap((r) => Array.from({ length: Math.floor(r.count / USERNS_SIZE) }, (_, k) => r.start + k * USERNS_SIZE));
  const u = slices('/etc/subuid');
  const g = slices('/etc/subgid');
  if (u.length && g.length) {
    return { ranges: Array.from({ length: Math.min(u.length, g.length) }, (_, i) => ({ uid: u[i]!, gid: g[i]! })), source: "root's ranges in /etc/subuid and /etc/subgid" };
  }
  return {
    ranges: Array.from({ length: ROOT_USERNS_SLOTS }, (_, i) => ({ uid: ROOT_USERNS_BASE + i * USERNS_SIZE, gid: ROOT_USERNS_BASE + i * USERNS_SIZE })),
    source: `${ROOT_USERNS_SLOTS} ranges of ${USERNS_SIZE} ids from ${ROOT_USERNS_BASE}`,
  };
}

const clash = (a: IdRange, b: IdRange): boolean =>
  Math.abs(a.uid - b.uid) < USERNS_SIZE || Math.abs(a.gid - b.gid) < USERNS_SIZE;

function ownerIds(p: string): IdRange | null {
  try {
    const st = fs.statSync(p);
    return { uid: st.uid, gid: st.gid };
  } catch {
    return null;
  }
}

/**
 * The range a persistent rootfs asks for: one whose first ids own the rootfs's top directory (as
 * systemd-nspawn's --private-users=pick), so a machine finds its files owned by its own ids on every
 * start. Null for a rootfs owned by anything else (host root, for one).
 */
export function rangeOwning(rootfs: string, pool: IdRange[]): IdRange | null {
  const o = ownerIds(rootfs);
  return o ? pool.find((r) => r.uid === o.uid && r.gid === o.gid) ?? null : null;
}

/** Numeric entries of a lease directory that are regular files (anything else is never a lease). */
function entries(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isFile() && /^\d+$/.test(d.name)).map((d) => d.name);
}

/**
 * The live leases, with those whose owner is gone removed. A live lease that does not say which
 * range it holds is taken to hold the range its name starts (the file name is its first uid).
 */
function liveLeases(dir: string): IdLease[] {
  const live: IdLease[] = [];
  for (const name of fs.readdirSync(dir)) if (isStaleTemporary(name)) fs.rmSync(path.join(dir, name), { force: true });
  for (const name of entries(dir)) {
    const l = readLease<IdLease>(path.join(dir, name));
    if (!l || !leaseLive(l)) {
      fs.rmSync(path.join(dir, name), { force: true });
      continue;
    }
    const first = Number(name);
    live.push({ ...l, uid: Number.isInteger(l.uid) ? l.uid : first, gid: Number.isInteger(l.gid) ? l.gid : first });
  }
  return live;
}

interface Reservation extends IdRange {
  file: string;
  rootfs: string;
  /** The file's text, to remove it only if nobody rewrote it meanwhile. */
  text: string;
  /** The rootfs is certainly gone (see readReservations). */
  gone: boolean;
}

/**
 * The reservations (/var/lib/nsbox/userns), read and checked without the lease lock held: each
 * rootfs is stat'ed, and a hung filesystem must not hold every nsbox process on the host at the lock.
 * A reservation is dropped only when its rootfs is certainly gone: the path is ENOENT while the
 * filesystem it was on (its st_dev, recorded at the reservation) is there, seen on the nearest
 * ancestor that exists. A disk not mounted yet (the ancestor is on another filesystem), EIO or
 * EACCES keep it, and so does a change of owner (the machine's root may chown its own "/").
 */
function readReservations(): Reservation[] {
  const out: Reservation[] = [];
  let names: string[];
  try {
    names = entries(USERNS_RESERVE_DIR);
  } catch {
    return out;
  }
  for (const name of names) {
    const file = path.join(USERNS_RESERVE_DIR, name);
    let text: string;
    let r: { rootfs?: unknown; uid?: unknown; gid?: unknown; dev?: unknown } | null;
    try {
      text = fs.readFileSync(file, 'utf8');
      r = JSON.parse(text) as { rootfs?: unknown; uid?: unknown; gid?: unknown; dev?: unknown } | null;
    } catch {
      continue;  // unreadable or torn: neither kept nor removed here
    }
    if (!r || typeof r.rootfs !== 'string' || !Number.isInteger(r.uid) || !Number.isInteger(r.gid)) continue;
    let gone = false;
    try {
      fs.statSync(r.rootfs);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && typeof r.dev === 'number') {
        let up = path.dirname(r.rootfs);
        for (;;) {
          try {
            gone = fs.statSync(up).dev === r.dev;
            break;
          } catch {
            if (up === '/') break;
            up = path.dirname(up);
          }
        }
      }
    }
    out.push({ file, rootfs: r.rootfs, uid: r.uid as number, gid: r.gid as number, text, gone });
  }
  return out;
}

/** Removes, under the lock, reservations found gone, unless rewritten since they were read. */
function dropGone(res: Reservation[]): void {
  for (const r of res) {
    if (!r.gone) continue;
    try {
      if (fs.readFileSync(r.file, 'utf8') === r.text) fs.rmSync(r.file, { force: true });
    } catch {
      /* already gone */
    }
  }
}

/** Keeps a persistent machine's range from app containers for as long as its rootfs exists. */
function reserve(range: IdRange, rootfs: string): void {
  fs.mkdirSync(USERNS_RESERVE_DIR, { recursive: true, mode: 0o700 });
  const file = path.join(USERNS_RESERVE_DIR, String(range.uid));
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify({ rootfs, ...range, dev: fs.statSync(rootfs).dev }), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/**
 * Leases a host id range for one container, under the lease directory's lock: a persistent machine's
 * own range (the one reserved for its rootfs's path, else rangeOwning) where it has one, else the
 * first range that no live lease overlaps and no machine's rootfs keeps. The lease is this process's until adopted by the container's PID 1. Throws EBUSY
 * when a rootfs's range is held by a running container, ENOSPC when every range is taken; any other
 * failure is an NsboxError of `step` naming the file.
 */
export function leaseIdRange(step: string, rootfs?: string): { range: IdRange; file: string } {
  const dir = USERNS_LEASE_DIR;
  let at = dir;
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const { ranges, source } = idRangePool();
    // Host paths are looked at before the lock is taken (see readReservations).
    const reservations = readReservations();
    // A persistent machine's range: the one reserved for its rootfs's path, else the one whose first
    // ids own the rootfs (systemd-nspawn's --private-users=pick).
    const mine = rootfs === undefined ? undefined : reservations.find((r) => r.rootfs === rootfs && !r.gone);
    const own = rootfs === undefined ? null : mine ? { uid: mine.uid, gid: mine.gid } : rangeOwning(rootfs, ranges);
    return withLock(dir, step, () => {
      const live = liveLeases(dir);
      dropGone(reservations);
      if (own) {
        const holder = live.find((l) => clash(l, own));
        const file = path.join(dir, String(own.uid));
        if (holder || fs.existsSync(file)) {
          throw new NsboxError({
            code: 'EBUSY', step, path: rootfs,
            message: `the host id range ${own.uid}-${own.uid + USERNS_SIZE - 1} of ${rootfs} is in use${holder ? ` by process ${holder.pid}` : ''} (step ${step})`,
          });
        }
        at = USERNS_RESERVE_DIR;
        reserve(own, rootfs!);
        at = file;
        createLease(file, { ...ownerOf(process.pid), ...own } as IdLease);
        return { range: own, file };
      }
      const kept = reservations.filter((r) => !r.gone);
      for (const r of ranges) {
        if (live.some((l) => clash(l, r)) || kept.some((k) => clash(k, r))) continue;
        const file = path.join(dir, String(r.uid));
        if (fs.existsSync(file)) continue;  // not a lease (a directory, say): never ours to remove
        at = file;
        createLease(file, { ...ownerOf(process.pid), ...r } as IdLease);
        return { range: r, file };
      }
      throw new NsboxError({
        code: 'ENOSPC', step, path: dir,
        message: `every host id range for user namespaces is in use (${live.length} leased, ${kept.length} kept for machines; the pool is ${source}) (step ${step})`,
      });
    });
  } catch (e) {
    throw e instanceof NsboxError ? e : fromSystemError(e, step, (e as NodeJS.ErrnoException).path ?? at);
  }
}

/** Hands a lease to its container's PID 1 (pid and start time): held while that process lives. */
export function adoptIdRange(file: string, owner: LeaseOwner, range: IdRange): void {
  writeLeaseAtomic(file, { ...owner, ...range } as IdLease);
}

/**
 * Removes a range's lease if `owner` (pid and start time) still owns it, under the lock: a lease
 * that went stale and was taken again by another container is never the one removed.
 */
export function releaseIdRange(file: string, owner: LeaseOwner): void {
  if (!fs.existsSync(file)) return;
  try {
    withLock(USERNS_LEASE_DIR, 'userns', () => {
      const l = readLease<IdLease>(file);
      if (l && !ownedBy(l, owner)) return;
      fs.rmSync(file, { force: true });
    });
  } catch {
    /* a release is cleanup: a lease left behind is reclaimed once its owner is gone */
  }
}

/** Leases of app containers, by their PID 1's pid, released when the container is waited for. */
const heldByPid = new Map<number, { file: string; owner: LeaseOwner }>();

/** Remembers an app container's lease, to be released when it is waited for. */
export function holdIdRange(pid: number, file: string, owner: LeaseOwner): void {
  heldByPid.set(pid, { file, owner });
}

/** Releases the id range of a container that has exited (a no-op for one without). */
export function releaseIdRangeOf(pid: number): void {
  const held = heldByPid.get(pid);
  if (held === undefined) return;
  heldByPid.delete(pid);
  releaseIdRange(held.file, held.owner);
}

function withRange(u: UsernsPlan, r: IdRange): UsernsPlan {
  return {
    ...u,
    uidMap: u.auto!.uid ? [{ containerID: 0, hostID: r.uid, size: USERNS_SIZE }] : u.uidMap,
    gidMap: u.auto!.gid ? [{ containerID: 0, hostID: r.gid, size: USERNS_SIZE }] : u.gidMap,
  };
}

const text = (m: IdMapEntry[]): string => m.map((e) => `${e.containerID} ${e.hostID} ${e.size}\n`).join('');

/** The plan fields that tell the child who writes its user namespace's maps. */
export function usernsPlanFields(u: UsernsPlan, syncFds: [number, number] | null): Partial<NativePlan> {
  if (u.how === 'self') return { selfUidMap: text(u.uidMap), selfGidMap: text(u.gidMap), setgroupsDenied: true };
  return { usernsSyncFd: syncFds![0], usernsSyncWriteFd: syncFds![1], setgroupsDenied: false };
}

/** Writes the maps of a waiting child (pid) as the plan says; throws an NsboxError on failure. */
export function writeMaps(u: UsernsPlan, pid: number, step: string): void {
  if (u.how === 'parent') {
    for (const [file, m] of [['uid_map', u.uidMap], ['gid_map', u.gidMap]] as const) {
      const p = `/proc/${pid}/${file}`;
      try {
        fs.writeFileSync(p, text(m));
      } catch (e) {
        const se = e as NodeJS.ErrnoException;
        throw new NsboxError({ code: se.code ?? 'EIO', errno: Math.abs(se.errno ?? 0), syscall: 'write', step, path: p });
      }
    }
    return;
  }
  const helpers = idmapHelpers()!;
  for (const [tool, m] of [[helpers.newuidmap, u.uidMap], [helpers.newgidmap, u.gidMap]] as const) {
    const args = [String(pid), ...m.flatMap((e) => [String(e.containerID), String(e.hostID), String(e.size)])];
    try {
      execFileSync(tool, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10000 });
    } catch (e) {
      const se = e as { stderr?: Buffer; status?: number | null };
      const why = (se.stderr?.toString() ?? '').trim().split('\n').pop() || `exit status ${se.status}`;
      throw new NsboxError({ code: 'EPERM', syscall: path.basename(tool), step, path: tool, message: `${path.basename(tool)} ${args.join(' ')}: ${why} (step ${step})` });
    }
  }
}

/**
 * Runs the native spawn for a plan, with the user namespace's map writing in between where the
 * child waits for it. Returns what native().spawn returns; on a failure after the clone the child is
 * killed and reaped before the error is thrown. A plan with `auto` ranges gets its range leased here
 * (u.uidMap, u.gidMap and u.lease are filled in); the caller releases the lease when the container
 * is gone (releaseIdRange, or releaseIdRangeOf for app containers held with holdIdRange).
 */
export function spawnWithUserns(plan: NativePlan, u: UsernsPlan | null, allowReady: boolean, step: string): SpawnResult {
  if (!u?.auto) return spawnMapped(plan, u, allowReady, step);
  // A range of host ids for this container alone: its lease is this process's until the clone
  // succeeds, then its PID 1's; it goes with a failed start.
  const { range, file } = leaseIdRange(step, u.rootfs);
  Object.assign(u, withRange(u, range), { lease: file });
  const me = ownerOf(process.pid);
  let res: SpawnResult;
  try {
    res = spawnMapped(plan, u, allowReady, step);
  } catch (e) {
    releaseIdRange(file, me);
    throw e;
  }
  if (res.step !== undefined) {
    releaseIdRange(file, me);
    return res;
  }
  const owner = ownerOf(res.pid);
  try {
    adoptIdRange(file, owner, range);
  } catch (e) {
    // The lease could not be handed over (a full /run): a container whose range nothing records
    // must not run on, so it is killed and reaped, and its start fails.
    res.process.signal(9);
    if (res.errFd !== undefined) fs.closeSync(res.errFd);
    res.process.reap();
    releaseIdRange(file, me);
    throw fromSystemError(e, step, (e as NodeJS.ErrnoException).path ?? file);
  }
  u.owner = owner;
  return res;
}

function spawnMapped(plan: NativePlan, u: UsernsPlan | null, allowReady: boolean, step: string): SpawnResult {
  const n = native();
  if (!u) return n.spawn(plan);
  let sync: [number, number] | null = null;
  if (u.how !== 'self') sync = n.pipe();
  const fields = usernsPlanFields(u, sync);
  const full: NativePlan = { ...plan, ...fields, cloneFlags: plan.cloneFlags + n.constants.CLONE_NEWUSER! };
  let res: SpawnResult;
  try {
    res = n.spawn(full);
  } catch (e) {
    if (sync) fs.closeSync(sync[1]);
    throw e;
  } finally {
    if (sync) fs.closeSync(sync[0]);
  }
  if (res.step !== undefined || !res.waiting) {
    if (sync) fs.closeSync(sync[1]);
    return res;
  }
  const proc = res.process;
  try {
    writeMaps(u, res.pid, step);
    fs.writeSync(sync![1], 'g');
  } catch (e) {
    proc.signal(9);
    fs.closeSync(sync![1]);
    const rec = n.finishSpawn(res.errFd!, false);
    proc.reap();
    // A child that failed before its maps were written (the writes then find it gone: EPIPE) said
    // why in its record: that is the start's error, not the write's.
    if (rec && 'step' in rec && STEPS[rec.step]?.[0] !== 'exec.died') return { usedClone3: res.usedClone3, step: rec.step, errno: rec.errno, index: rec.index };
    throw e;
  }
  fs.closeSync(sync![1]);
  const rec = n.finishSpawn(res.errFd!, allowReady, proc.fd(), res.pid);
  if (rec === null) return { ...res, errFd: undefined, waiting: undefined };
  if ('ready' in rec) return { ...res, waiting: undefined };
  proc.reap();
  return { usedClone3: res.usedClone3, step: rec.step, errno: rec.errno, index: rec.index };
}

/** Annotates a failed start in a user namespace with the host setting that explains it, if any. */
export function explainUsernsFailure(e: unknown): unknown {
  if (!(e instanceof NsboxError) || !['EPERM', 'EACCES', 'ENOSPC', 'EINVAL'].includes(e.code)) return e;
  const b = usernsBlocker();
  if (!b) return e;
  return new NsboxError({
    code: e.code,
    errno: e.errno,
    syscall: e.syscall,
    step: e.step,
    path: e.path,
    message: `${e.message}: user namespaces are restricted on this host (${b.setting}=${b.value}); ${b.remedy}`,
  });
}

/** The user namespace part of probe(). */
export function usernsReport(): HostReport['userns'] {
  const priv = privileged();
  const uid = process.geteuid?.() ?? 0;
  const subuid = subordinateRanges('/etc/subuid', uid);
  const subgid = subordinateRanges('/etc/subgid', uid);
  const helpers = idmapHelpers() !== null;
  const b = usernsBlocker();
  let defaultMap: 'self' | 'helper' | 'parent' | 'none';
  if (priv) defaultMap = 'none';
  else if (b) defaultMap = 'none';
  else defaultMap = helpers && subuid.length && subgid.length ? 'helper' : 'self';
  let ranges: HostReport['userns']['ranges'] = null;
  if (priv) {
    const pool = idRangePool();
    let leased = 0;
    try {
      leased = fs.readdirSync(USERNS_LEASE_DIR).filter((n) => /^\d+$/.test(n) && leaseLive(readLease(path.join(USERNS_LEASE_DIR, n)))).length;
    } catch {
      /* none yet */
    }
    ranges = { source: pool.source, size: USERNS_SIZE, total: pool.ranges.length, leased };
  }
  return { rootless: !priv, blockedBy: b ? `${b.setting}=${b.value}` : null, idmapHelpers: helpers, subuid, subgid, defaultMap, ranges };
}
