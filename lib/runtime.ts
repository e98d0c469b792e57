// runtime.ts: per-process facts and resources that app containers and machines share: the staging
// directory, the bundled init's sealed memfd, and small fd helpers.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { capMask } from './caps';
import { xdgRuntimeDir } from './env';
import { NsboxError, errnoName, fromSystemError } from './errors';
import { buildDir, native } from './native';

/**
 * Whether this process holds `cap` effective in the initial user namespace (uid 0 mapped to the
 * whole id range): a capability held in a user namespace (`unshare -r`) does not count on the host.
 */
export function hostCapability(cap: string): boolean {
  try {
    const map = fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    const initial = map.length === 3 && map[0] === '0' && map[1] === '0' && map[2] === '4294967295';
    const m = /^CapEff:\s+([0-9a-f]+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return initial && !!m && (BigInt('0x' + m[1]) & capMask([cap])) !== 0n;
  } catch {
    return false;
  }
}

let privCache: boolean | undefined;
/**
 * True when this process is root in the initial user namespace with CAP_SYS_ADMIN: it can create
 * namespaces, mknod, write cgroups and /run without a user namespace of its own. Inside `unshare -r`
 * (uid 0 in a user namespace) this is false: such a process is rootless as far as the host goes.
 */
export function privileged(): boolean {
  privCache ??= process.geteuid?.() === 0 && hostCapability('CAP_SYS_ADMIN');
  return privCache;
}

let stagingDir: string | undefined;
/** The host directory each container's root is assembled on (inside the child's own mount ns). */
export function staging(): string {
  if (stagingDir) return stagingDir;
  const top = runtimeDir('spawn.staging');
  const dir = path.join(top, '.staging');
  privateDir(dir, 'spawn.staging');
  // Searchable (not listable) by others: root inside a user namespace is another id on the host,
  // and it has to walk to the staging directory to mount the container's root on it.
  if (privileged()) {
    try {
      fs.chmodSync(top, 0o711);
    } catch (e) {
      throw fromSystemError(e, 'spawn.staging', top);
    }
  }
  stagingDir = dir;
  return dir;
}

/**
 * nsbox's own directory for this user: /run/nsbox for root, else $XDG_RUNTIME_DIR/nsbox, else a
 * private directory in /tmp. It holds the staging mount point and (by default) machine state.
 */
export function runtimeDir(step: string): string {
  if (privileged()) return '/run/nsbox';
  const xdg = xdgRuntimeDir();
  if (xdg) {
    try {
      const st = fs.statSync(xdg);
      if (st.isDirectory() && st.uid === process.geteuid?.()) return path.join(xdg, 'nsbox');
    } catch {
      /* fall through to /tmp */
    }
  }
  const dir = path.join(os.tmpdir(), `nsbox-${hostUid()}`);
  privateDir(dir, step);
  return dir;
}

/**
 * This process's uid as the host sees it: inside `unshare -r` uid 0 is some user's uid outside, and
 * /tmp is shared with the host, so the directory is named by the host's number.
 */
function hostUid(): number {
  const euid = process.geteuid?.() ?? 0;
  try {
    for (const line of fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split('\n')) {
      const [inside, outside, count] = line.trim().split(/\s+/).map(Number);
      if (euid >= inside! && euid < inside! + count!) return outside! + (euid - inside!);
    }
  } catch {
    /* no /proc: the uid as it is */
  }
  return euid;
}

/**
 * Makes dir (and its parents) and checks that it is a real directory owned by this user that
 * nobody else can write: in a shared /tmp another user could have planted it first.
 */
export function privateDir(dir: string, step: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw fromSystemError(e, step, dir);
  }
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (e) {
    throw fromSystemError(e, step, dir);
  }
  const me = process.geteuid?.();
  if (!st.isDirectory() || st.uid !== me || (st.mode & 0o022) !== 0) {
    throw new NsboxError({
      code: 'EPERM',
      syscall: 'lstat',
      step,
      path: dir,
      message: `${dir} is not a private directory of uid ${me} (owner ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}${st.isSymbolicLink() ? ', a symlink' : ''}): refusing to use it (step ${step})`,
    });
  }
}

let devicePolicyCache: number | undefined;
/** 0 when the cgroup device allow-list (BPF_CGROUP_DEVICE) can be installed here, else an errno. */
export function devicePolicyErrno(): number {
  if (devicePolicyCache === undefined) devicePolicyCache = -native().devicePolicyAvailable();
  return devicePolicyCache;
}

const CAP_MKNOD_BIT = capMask(['CAP_MKNOD']);
/**
 * Whether a container gets the device allow-list: wherever it can be had (and it has a cgroup). A
 * container that keeps CAP_MKNOD without a user namespace of its own could otherwise make and open
 * any host device (a disk, /dev/mem): that is refused with ENOTSUP, never silently allowed.
 */
export function devicePolicyFor(capsKeep: bigint, userns: boolean, hasCgroup: boolean, step: string): boolean {
  const err = devicePolicyErrno();
  if (err === 0 && hasCgroup) return true;
  if (!userns && (capsKeep & CAP_MKNOD_BIT) !== 0n) {
    const why = err !== 0 ? `it cannot be loaded here (${errnoName(err)})` : 'the container has no cgroup of its own';
    throw new NsboxError({
      code: 'ENOTSUP', errno: err || undefined, syscall: 'bpf', step,
      message: `a container keeping CAP_MKNOD needs the cgroup device allow-list (BPF_CGROUP_DEVICE), and ${why}: drop MKNOD, or give it a user namespace (step ${step})`,
    });
  }
  return false;
}

/**
 * The bundled init (see native/init/init.c) in a new sealed memfd: one per start, which the caller
 * closes once the child has it (a container's root can change the inode's mode and owner, so no two
 * containers share one).
 */
export function initFd(): number {
  const p = path.join(buildDir, 'nsbox-init');
  try {
    return native().sealedMemfd(p);
  } catch (e) {
    throw fromSystemError(e, 'init.load', p);
  }
}

export function closeQuiet(fd: number): void {
  if (fd > 2) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
  }
}

export function pipeSocket(fd: number, readable: boolean): net.Socket {
  return new net.Socket({ fd, readable, writable: !readable });
}

/**
 * Without a cgroup (rootless without a delegated subtree): the CPU time of PID 1 and of the children
 * it has reaped, from /proc/<pid>/stat (utime, stime, cutime, cstime in clock ticks of 1/100 s).
 * Processes still running below PID 1 are not counted; the figure at exit comes from waitid.
 */
export function procCpuUs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 10000;
  } catch {
    return 0;
  }
}
