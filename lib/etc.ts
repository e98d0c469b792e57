// etc.ts: the container's /etc/hosts, /etc/hostname and /etc/resolv.conf, generated for every
// network mode (as Docker and podman do) into a directory of its own under nsbox's runtime
// directory, bound read-only (fsops.ts, etcOps) and removed when the container has exited or its
// start failed. Which content each mode gets is documented in docs/network.md ("/etc files").
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';

import { NsboxError, fromSystemError } from './errors';
import { native } from './native';
import { parseIPv4 } from './network-options';
import { closeQuiet, runtimeDir } from './runtime';
import type { NetworkMode } from './types';

/** The files, in the order their binds are made. */
export const ETC_FILES = ['hosts', 'hostname', 'resolv.conf'] as const;

/** What the files say: from the resolved options (and, bridged, the address lease). */
export interface EtcContent {
  hostname: string;
  network: NetworkMode;
  /** Extra /etc/hosts lines (the `hosts` option), in the order given. */
  hosts: Array<[string, string]>;
  /** Bridged: the container's address, the bridge's, and the nameservers (network.dns). */
  bridge?: { address: string; gateway: string; dns: string[] | undefined };
}

/** A container's generated files on the host; remove() and removeAsync() are idempotent. */
export interface EtcDir {
  dir: string;
  /**
   * A shared, content-addressed directory (sharedEtcDir): never removed by a container; remove()
   * only makes the next start check it again (a start that failed may have failed on it).
   */
  shared?: boolean;
  /**
   * A shared directory's fd holding a shared flock: the start passes it to its child with its other
   * fds (closed once the binds are made), so the directory is not removed under it (sweepShared).
   */
  lockFd?: number;
  remove(): void;
  /** The same off the JS thread (the exit path overlaps it with the cgroup's removal). */
  removeAsync(): Promise<void>;
}

const STEP = 'etc';

/** Where every container's directory goes: <runtime dir>/etc (searchable, not listable, by others). */
export function etcBase(): string {
  return path.join(runtimeDir(STEP), 'etc');
}

/** The host's resolv.conf as last read, and the stat that says whether it is still that. */
let resolvSeen: { key: string; text: string } | undefined;

/**
 * The host's /etc/resolv.conf: read again only when its stat (inode, size, mtime, ctime) changed,
 * so a host-mode start costs one stat, not a read, while a resolver that rewrites it is followed.
 */
function hostResolv(): string {
  let key = '';
  try {
    const st = fs.statSync('/etc/resolv.conf', { bigint: true });
    key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch {
    return '';
  }
  if (resolvSeen?.key === key) return resolvSeen.text;
  let text = '';
  try {
    text = fs.readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
  resolvSeen = { key, text };
  return text;
}

export function hostNameservers(): string[] {
  return hostResolv()
    .split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((a): a is string => !!a && parseIPv4(a) !== null && !a.startsWith('127.'))
    .slice(0, 3);
}

/** The three files' text. Pure apart from reading the host's /etc/resolv.conf (host and bridge modes). */
export function etcContent(c: EtcContent): Record<(typeof ETC_FILES)[number], string> {
  let hosts = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n';
  // The container's own name: its address on the bridge; else 127.0.1.1 (Debian's convention, inside
  // 127/8 so it answers on lo), so a program that looks up its own host name finds one.
  hosts += c.bridge ? `${c.bridge.address}\t${c.hostname}\n${c.bridge.gateway}\tnsbox-host\n` : `127.0.1.1\t${c.hostname}\n`;
  for (const [name, addr] of c.hosts) hosts += `${addr}\t${name}\n`;
  let resolv: string;
  if (c.network === 'host') {
    // The host's network: the host's resolver configuration as it is (a loopback stub such as
    // systemd-resolved's 127.0.0.53 is reachable from the host's network namespace).
    resolv = hostResolv() || '# nsbox: the host has no /etc/resolv.conf\n';
  } else if (c.bridge) {
    const ns = c.bridge.dns ?? hostNameservers();
    resolv = ns.length ? ns.map((a) => `nameserver ${a}\n`).join('') : '# nsbox: no nameserver (give network.dns)\n';
  } else {
    // 'none' and 'loopback': no nameserver can be reached, and the host's loopback ones would be
    // the container's own loopback. An empty configuration makes lookups fail at once instead of
    // waiting for a timeout (glibc then tries 127.0.0.1:53, which refuses).
    resolv = `# nsbox: network '${c.network}' reaches no nameserver\n`;
  }
  return { hosts, hostname: `${c.hostname}\n`, 'resolv.conf': resolv };
}

let reclaimed = false;
/** The base directory checked (made, ours, a real directory) by this process: once is enough. */
let baseChecked: string | undefined;

/** Errors of fs calls on `p` as NsboxErrors of step `etc` naming it. */
function at<T>(p: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw fromSystemError(e, STEP, p);
  }
}

/** Makes the base directory (0711, ours, a real directory) once per process. */
function ensureBase(base: string): void {
  if (baseChecked === base) return;
  // 0711: root in a user namespace of the container's own is another id on the host, and binds
  // these files from inside it; it may find them by name, never list them.
  at(base, () => {
    fs.mkdirSync(base, { recursive: true, mode: 0o711 });
    const st = fs.lstatSync(base);
    if (!st.isDirectory() || st.uid !== process.geteuid?.()) {
      throw new NsboxError({ code: 'EPERM', syscall: 'lstat', step: STEP, path: base, message: `${base} is not a directory of uid ${process.geteuid?.()}: refusing to use it (step ${STEP})` });
    }
  });
  baseChecked = base;
}

/**
 * Writes a container's files into a new directory of their own; throws an NsboxError (step `etc`,
 * with the path) with nothing left behind.
 */
export function writeEtcDir(c: EtcContent, machine?: string): EtcDir {
  const base = etcBase();
  if (!reclaimed) {
    reclaimed = true;
    reclaimStaleEtcDirs();
  }
  // An app container's directory is named by this process (it goes with it); a machine's, which
  // outlives it, by the machine (removed when it is seen stopped, or by destroy()).
  const dir = path.join(base, `${machine ? `m-${machine}` : process.pid}-${randomBytes(6).toString('hex')}`);
  let made = false;
  const remove = (): void => {
    if (!made) return;
    made = false;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // Three unlinks and an rmdir (the files are ours; nothing else is ever in the directory).
  const removeAsync = async (): Promise<void> => {
    if (!made) return;
    made = false;
    await Promise.all(ETC_FILES.map((f) => fs.promises.unlink(path.join(dir, f)).catch(() => {})));
    await fs.promises.rmdir(dir).catch(() => fs.rmSync(dir, { recursive: true, force: true }));
  };
  try {
    ensureBase(base);
    at(dir, () => fs.mkdirSync(dir, { mode: 0o711 }));
    made = true;
    at(dir, () => fs.chmodSync(dir, 0o711));
    const text = etcContent(c);
    for (const name of ETC_FILES) {
      const p = path.join(dir, name);
      at(p, () => fs.writeFileSync(p, text[name], { mode: 0o644, flag: 'wx' }));
    }
    return { dir, remove, removeAsync };
  } catch (e) {
    remove();
    throw e instanceof NsboxError ? e : fromSystemError(e, STEP, dir);
  }
}

/**
 * Shared directories: the content key (what etcContent depends on) to the directory made or found
 * for it, so that a start whose files are the same as an earlier one's writes no file for them.
 */
const sharedDirs = new Map<string, { dir: string }>();
/**
 * How many distinct shared directories one process makes or adopts; past it (many host names, say)
 * a start gets a directory of its own again, removed with it.
 */
let sharedMax = 64;
/** Host-wide: past this many shared directories, a new one's maker removes those older than SHARED_AGE_MS. */
const SHARED_KEEP = 32;
const SHARED_AGE_MS = 10 * 60 * 1000;
/** The shared directories this process made (won the rename): removed when it exits (sweepShared). */
const madeShared = new Set<string>();

/** Tests: a lower limit (0: every start gets its own directory, as bridge mode does). */
export function setSharedEtcLimit(n: number): void {
  sharedMax = n;
  if (sharedDirs.size > n) sharedDirs.clear();
}

/** How long a start waits for a shared directory's lock (its exclusive holders hold it for a rename). */
const SHARED_LOCK_WAIT_MS = 1000;

/** The shared directory's name: `s-` and a short SHA-256 of the three files' contents. */
export const SHARED_PREFIX = 's-';

/**
 * The shared lock on `dir` for one start (an fd), or -1 where the directory is gone (removed by
 * sweepShared or by hand, or replaced) or incomplete: the caller makes it again.
 */
function lockShared(dir: string): number {
  // An exclusive holder renames the directory away and lets go at once: a holder stopped there is
  // not waited on (the start makes its own directory instead).
  const fd = native().flockDir(dir, false, SHARED_LOCK_WAIT_MS);
  if (fd < 0) return -1;
  try {
    const held = fs.fstatSync(fd);
    const now = fs.statSync(dir, { throwIfNoEntry: false });
    if (now && now.ino === held.ino && now.dev === held.dev && fs.statSync(path.join(dir, 'resolv.conf'), { throwIfNoEntry: false })) return fd;
  } catch {
    /* gone */
  }
  closeQuiet(fd);
  return -1;
}

/**
 * Removes the shared directories `dirs` that no start holds (an exclusive flock, not waiting):
 * renamed away under the lock (a start that waits for its shared lock then finds the name gone and
 * makes it again), then deleted. A container that has bound the files keeps its mounts (the inodes).
 */
function sweepShared(dirs: Iterable<string>): void {
  for (const dir of dirs) {
    const fd = native().flockDir(dir, true);
    if (fd < 0) continue;
    const gone = path.join(path.dirname(dir), `${process.pid}-gone-${randomBytes(6).toString('hex')}`);
    let moved = false;
    try {
      fs.renameSync(dir, gone);
      moved = true;
    } catch {
      /* removed meanwhile */
    } finally {
      closeQuiet(fd);
    }
    if (moved) fs.rmSync(gone, { recursive: true, force: true });
  }
}

/**
 * Bounds the shared directories host-wide: past SHARED_KEEP, those older than SHARED_AGE_MS (made
 * that long ago; left by processes that died before their exit removed them) go, oldest first,
 * unless a start holds them. One that a running process still uses is made again by its next start.
 */
function boundShared(base: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(base).filter((n) => n.startsWith(SHARED_PREFIX));
  } catch {
    return;
  }
  if (names.length <= SHARED_KEEP) return;
  const now = Date.now();
  const aged = names
    .map((n) => ({ dir: path.join(base, n), mtime: fs.statSync(path.join(base, n), { throwIfNoEntry: false })?.mtimeMs ?? now }))
    .filter((d) => now - d.mtime > SHARED_AGE_MS)
    .sort((x, y) => x.mtime - y.mtime)
    .slice(0, names.length - SHARED_KEEP);
  sweepShared(aged.map((d) => d.dir));
}

/**
 * The directory of these files, shared by every container (of any Node process) whose files are the
 * same: `<base>/s-<sha256 of the contents, 16 hex digits>`. Made once, atomically (written into a
 * temporary directory named like a per-container one, so reclaimStaleEtcDirs removes it if this
 * process dies mid-way, then renamed; a process that loses the rename race uses the winner's,
 * whose contents are the same by construction). Cached in-process by content key.
 *
 * Each start holds a shared flock on the directory (lockFd) from here until its binds are made; a
 * directory is removed only under an exclusive one (sweepShared), so never between a start's choice
 * and its binds, and a container that has bound the files keeps them (its mounts hold the inodes).
 * Removed: by the process that made it, when it exits (other processes using it make it again on
 * their next start); and, past SHARED_KEEP directories host-wide, the ones older than
 * SHARED_AGE_MS (those of processes that died), by the next process that makes one.
 *
 * Returns null past the per-process limit (setSharedEtcLimit): the caller makes its own.
 */
export function sharedEtcDir(c: EtcContent): EtcDir | null {
  const key = JSON.stringify([c.hostname, c.network, c.hosts, c.network === 'host' ? hostResolv() : '']);
  let hit = sharedDirs.get(key);
  let fd = hit ? lockShared(hit.dir) : -1;
  if (fd < 0) {
    if (!hit && sharedDirs.size >= sharedMax) return null;
    // New content, or its directory was removed since (by an exit, the bound, or by hand).
    hit = { dir: makeShared(etcContent(c)) };
    sharedDirs.set(key, hit);
    fd = lockShared(hit.dir);
    if (fd < 0) {
      // Went away as it was made, or held by a remover that does not let go: this start makes a
      // directory of its own (as past the limit).
      sharedDirs.delete(key);
      return null;
    }
  }
  const h: { dir: string } = hit!;
  // A failed start may have failed on a directory removed by hand: the next one looks again.
  const forget = (): void => {
    if (sharedDirs.get(key) === h) sharedDirs.delete(key);
  };
  return { dir: h.dir, shared: true, lockFd: fd, remove: forget, removeAsync: async () => forget() };
}

function makeShared(text: Record<(typeof ETC_FILES)[number], string>): string {
  const base = etcBase();
  if (!reclaimed) {
    reclaimed = true;
    reclaimStaleEtcDirs();
  }
  ensureBase(base);
  const h = createHash('sha256');
  for (const name of ETC_FILES) h.update(`${name}\0${text[name].length}\0${text[name]}`);
  const dir = path.join(base, SHARED_PREFIX + h.digest('hex').slice(0, 16));
  // Made by this or another process before: the rename below made it whole.
  if (fs.statSync(path.join(dir, 'resolv.conf'), { throwIfNoEntry: false })) return dir;
  boundShared(base);
  const tmp = path.join(base, `${process.pid}-tmp-${randomBytes(6).toString('hex')}`);
  try {
    at(tmp, () => fs.mkdirSync(tmp, { mode: 0o711 }));
    at(tmp, () => fs.chmodSync(tmp, 0o711));
    for (const name of ETC_FILES) {
      const p = path.join(tmp, name);
      at(p, () => fs.writeFileSync(p, text[name], { mode: 0o644, flag: 'wx' }));
      at(p, () => fs.chmodSync(p, 0o644));
    }
    try {
      fs.renameSync(tmp, dir);
      if (madeShared.size === 0) process.once('exit', () => sweepShared(madeShared));
      madeShared.add(dir);
    } catch (e) {
      // Another process renamed its copy first (a directory over a non-empty one is refused).
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw fromSystemError(e, STEP, dir);
    }
    return dir;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Containers' directories by PID 1 (app containers), removed once each has been waited for. */
const heldByPid = new Map<number, EtcDir>();

export function holdEtcDir(pid: number, d: EtcDir): void {
  heldByPid.set(pid, d);
}

export function releaseEtcDirOf(pid: number): Promise<void> | undefined {
  const d = heldByPid.get(pid);
  if (!d) return undefined;
  heldByPid.delete(pid);
  return d.removeAsync();
}

/**
 * Removes directories whose Node process is gone (a crash, a kill -9): the directory name starts
 * with the pid of the process that made it. Best effort; called before a new one is made.
 */
export function reclaimStaleEtcDirs(): void {
  let names: string[];
  try {
    names = fs.readdirSync(etcBase());
  } catch {
    return;
  }
  // Shared directories (s-...) are not: see sharedEtcDir (boundShared).
  for (const name of names) {
    const pid = Number(/^(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') fs.rmSync(path.join(etcBase(), name), { recursive: true, force: true });
    }
  }
}
