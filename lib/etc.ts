// etc.ts: the container's /etc/hosts, /etc/hostname and /etc/resolv.conf, generated for every
// network mode (as Docker and podman do) into a directory of its own under nsbox's runtime
// directory, bound read-only (fsops.ts, etcOps) and removed when the container has exited or its
// start failed. Which content each mode gets is documented in docs/network.md ("/etc files").
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

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
  remove(): void;
  /** The same off the JS thread (the exit path overlaps it with the cgroup's removal). */
  removeAsync(): Promise<void>;
}

const STEP = 'etc';

/** Where every container's directory goes: <runtime dir>/etc (searchable, not listable, by others). */
export function etcBase(): string {
  return path.join(runtimeDir(STEP), 'etc');
}

/** The host's nameservers: every line of its resolv.conf, or only the non-loopback nameservers. */
function hostResolv(): string {
  try {
    return fs.readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
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

/**
 * Writes a container's files into a new directory of their own; throws an NsboxError (step `etc`,
 * with the path) with nothing left behind.
 */
let reclaimed = false;
/** The base directory checked (made, ours, a real directory) by this process: once is enough. */
let baseChecked: string | undefined;

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
  const at = (p: string, f: () => void): void => {
    try {
      f();
    } catch (e) {
      throw fromSystemError(e, STEP, p);
    }
  };
  try {
    // 0711: root in a user namespace of the container's own is another id on the host, and binds
    // these files from inside it; it may find them by name, never list them.
    if (baseChecked !== base) at(base, () => {
      fs.mkdirSync(base, { recursive: true, mode: 0o711 });
      const st = fs.lstatSync(base);
      if (!st.isDirectory() || st.uid !== process.geteuid?.()) {
        throw new NsboxError({ code: 'EPERM', syscall: 'lstat', step: STEP, path: base, message: `${base} is not a directory of uid ${process.geteuid?.()}: refusing to use it (step ${STEP})` });
      }
      baseChecked = base;
    });
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
