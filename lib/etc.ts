// etc.ts: the container's /etc/hosts, /etc/hostname and /etc/resolv.conf, generated for every
// network mode (as Docker and podman do) into a directory of its own under nsbox's runtime
// directory, bound read-only (fsops.ts, etcOps) and removed when the container has exited or its
// start failed. Which content each mode gets is documented in docs/network.md ("/etc files").
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';

import { NsboxError, fromSystemError } from './errors';
import { parseIPv4 } from './network-options';
import { runtimeDir } from './runtime';
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
 * for it, so that a start whose files are the same as an earlier one's does no file I/O for them.
 */
const sharedDirs = new Map<string, { dir: string; checked: number }>();
/** How long a shared directory is trusted to still be there without a look (one stat). */
const RECHECK_MS = 1000;
/**
 * How many distinct shared directories one process makes or adopts; past it (many host names, say)
 * a start gets a directory of its own again, removed with it. The shared ones are kept (see
 * sharedEtcDir), so this bounds what a process leaves in the runtime directory.
 */
let sharedMax = 64;

/** Tests: a lower limit (0: every start gets its own directory, as bridge mode does). */
export function setSharedEtcLimit(n: number): void {
  sharedMax = n;
  if (sharedDirs.size > n) sharedDirs.clear();
}

/** The shared directory's name: `s-` and a short SHA-256 of the three files' contents. */
export const SHARED_PREFIX = 's-';

/**
 * The directory of these files, shared by every container (of any Node process) whose files are the
 * same: `<base>/s-<sha256 of the contents, 16 hex digits>`. Made once, atomically (written into a
 * temporary directory named like a per-container one, so reclaimStaleEtcDirs removes it if this
 * process dies mid-way, then renamed; a process that loses the rename race uses the winner's,
 * whose contents are the same by construction). Cached in-process by content key: the next start
 * with the same content does no file I/O here (a host-mode start stats the host's resolv.conf).
 *
 * It is never removed by nsbox: a container binds the files while it starts, and nothing can tell
 * this process that no other process is between choosing the directory and binding it. Kept on the
 * runtime directory (a tmpfs cleared at boot on most hosts), bounded by the distinct contents.
 * A container that has bound them keeps its own mount of each file (the inode), so removing them
 * by hand does not affect running containers; a process that cached the directory notices within
 * a second (RECHECK_MS) and makes it again (a start in that second may fail at step `etc`, ENOENT,
 * or, in a rootfs of the caller's, go without the files).
 *
 * Returns null past the per-process limit (setSharedEtcLimit): the caller makes its own.
 */
export function sharedEtcDir(c: EtcContent): EtcDir | null {
  const key = JSON.stringify([c.hostname, c.network, c.hosts, c.network === 'host' ? hostResolv() : '']);
  let hit = sharedDirs.get(key);
  const now = performance.now();
  // Removed by hand since (or /run cleaned): a start in a rootfs of the caller's would skip the
  // binds of missing files without a word (WHERE_OPTIONAL), so it is looked for at most once a
  // second (one stat), and made again.
  if (hit && now - hit.checked > RECHECK_MS) {
    if (fs.statSync(path.join(hit.dir, 'resolv.conf'), { throwIfNoEntry: false })) hit.checked = now;
    else {
      sharedDirs.delete(key);
      hit = undefined;
    }
  }
  if (hit === undefined) {
    if (sharedDirs.size >= sharedMax) return null;
    hit = { dir: makeShared(etcContent(c)), checked: now };
    sharedDirs.set(key, hit);
  }
  const h = hit;
  // A failed start may have failed on a directory removed by hand: the next one looks again.
  const forget = (): void => {
    if (sharedDirs.get(key) === h) sharedDirs.delete(key);
  };
  const d = h.dir;
  return { dir: d, shared: true, remove: forget, removeAsync: async () => forget() };
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
  if (fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return dir;
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
  // Shared directories (s-...) are kept: see sharedEtcDir.
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
