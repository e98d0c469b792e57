// lease.ts: files that say "this resource is held by that process", shared by every Node process on
// the host (network address leases, user namespace id ranges). A lease names its owner by pid and
// start time, so a pid reused after a crash never keeps a lease alive; whoever allocates next under
// the directory's lock removes leases whose owner is gone.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { errnoName, NsboxError } from './errors';
import { native } from './native';

export interface LeaseOwner {
  pid: number;
  /** Field 22 of /proc/<pid>/stat when the lease was written: the pid's identity. */
  start: string | null;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot) and the state, or null. */
function statOf(pid: number): { state: string; start: string } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return f[19] === undefined ? null : { state: f[0]!, start: f[19] };
  } catch {
    return null;
  }
}

/**
 * The start time of a running pid (its identity), or null when it is gone, a zombie or dead: a
 * zombie holds nothing (its namespaces, and the processes in them, are gone with it).
 */
export function startTimeOf(pid: number): string | null {
  const s = statOf(pid);
  return !s || s.state === 'Z' || s.state === 'X' ? null : s.start;
}

/**
 * Who owns a lease: a pid and its start time, read even when the process is already a zombie (a
 * child of this process that exited at once is one until it is reaped): an owner recorded as
 * `start: null` could never be told from a later process with the same pid.
 */
export function ownerOf(pid: number): LeaseOwner {
  return { pid, start: statOf(pid)?.start ?? null };
}

/** Is `l` owned by exactly this owner (pid and start time)? */
export function ownedBy(l: LeaseOwner, owner: LeaseOwner): boolean {
  return l.pid === owner.pid && l.start === owner.start;
}

export function readLease<T extends LeaseOwner>(file: string): T | null {
  try {
    const l = JSON.parse(fs.readFileSync(file, 'utf8')) as T;
    return typeof l.pid === 'number' ? l : null;
  } catch {
    return null;
  }
}

/** The lease's owner still runs: the same pid with the same start time (never a null one). */
export function leaseLive(l: LeaseOwner | null): boolean {
  return !!l && l.pid > 0 && l.start !== null && startTimeOf(l.pid) === l.start;
}

/** Replaces a lease's content (a new owner) so a reader never sees it torn. */
export function writeLeaseAtomic(file: string, l: LeaseOwner): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, JSON.stringify(l), { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch (e) {
    // A full file system (ENOSPC) or a lost directory: no half-written temporary is left.
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Makes a new lease; throws EEXIST if the file is there (call with the directory's lock held). A
 * lease that could not be written in full (ENOSPC) is removed again: no empty or torn lease is left.
 */
export function createLease(file: string, l: LeaseOwner): void {
  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    const text = JSON.stringify(l);
    if (fs.writeSync(fd, text) !== Buffer.byteLength(text)) throw Object.assign(new Error(`short write to ${file}`), { code: 'ENOSPC', errno: -28, syscall: 'write', path: file });
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    throw e;
  }
  fs.closeSync(fd);
}

/** How long a start waits for a lock another process holds (its sections take milliseconds). */
export const LOCK_WAIT_MS = 10000;

/**
 * Runs fn with the directory's lock (flock on <dir>/<name>, default "lock") held, across every
 * process on the host. The holder is another process, which may be stopped or hung: the wait is
 * bounded (`waitMs`, LOCK_WAIT_MS by default), then ETIMEDOUT naming the lock and its holder;
 * `waitMs` 0 tries once (EAGAIN if held).
 */
export function withLock<T>(dir: string, step: string, fn: () => T, name = 'lock', waitMs = LOCK_WAIT_MS): T {
  const fd = takeLock(dir, step, name, waitMs);
  try {
    return fn();
  } finally {
    fs.closeSync(fd);
  }
}

/** withLock for an asynchronous fn: the lock is held until its promise settles. */
export async function withLockAsync<T>(dir: string, step: string, fn: () => Promise<T>, name = 'lock', waitMs = LOCK_WAIT_MS): Promise<T> {
  const fd = takeLock(dir, step, name, waitMs);
  try {
    return await fn();
  } finally {
    fs.closeSync(fd);
  }
}

/** The lock's fd (flock held), or the error naming the lock and its holder. */
function takeLock(dir: string, step: string, name: string, waitMs: number): number {
  const file = path.join(dir, name);
  const fd = native().lockFile(file, waitMs);
  if (fd < 0) {
    const code = errnoName(-fd);
    if (code !== 'ETIMEDOUT') throw new NsboxError({ code, errno: -fd, syscall: 'flock', step, path: file });
    const holder = lockHolder(file);
    throw new NsboxError({
      code, errno: -fd, syscall: 'flock', step, path: file,
      message: `the lock ${file} has been held by another process${holder ? ` (pid ${holder})` : ''} for more than ${waitMs / 1000} s (step ${step})`,
    });
  }
  return fd;
}

/** The pid that holds a flock on `file` (from /proc/locks, by device and inode), or undefined. */
function lockHolder(file: string): number | undefined {
  try {
    const st = fs.statSync(file);
    const at = `:${st.ino} `;
    const dev = (st.dev >>> 8) & 0xfff; // the major (makedev's low bits of it)
    const min = (st.dev & 0xff) | ((st.dev >>> 12) & 0xfff00);
    const key = `${dev.toString(16).padStart(2, '0')}:${min.toString(16).padStart(2, '0')}${at}`;
    for (const l of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
      // "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"
      const f = l.trim().split(/\s+/);
      if (f[1] === 'FLOCK' && `${f[5]} `.endsWith(key)) return Number(f[4]);
    }
  } catch {
    /* gone, or no /proc/locks */
  }
  return undefined;
}

/** Temporaries (<name>.tmp-<pid>) whose writer is gone: what a crash between write and rename leaves. */
export function isStaleTemporary(name: string): boolean {
  const m = /\.tmp-(\d+)$/.exec(name);
  return !!m && startTimeOf(Number(m[1])) === null;
}

/** Is this process outside the initial pid namespace (where the pids of other processes of the host are hidden)? */
export function nestedPidns(): boolean {
  // The initial pid namespace has a fixed inode (PROC_PID_INIT_INO, include/linux/proc_ns.h). NSpid
  // alone is not enough: under `unshare -p -f --mount-proc` /proc is the new namespace's, and
  // NSpid lists one pid there too.
  try {
    return fs.readlinkSync('/proc/self/ns/pid') !== 'pid:[4026531836]';
  } catch {
    return true;
  }
}
