// causes.ts: what this process's surroundings say about why the kernel refused a start: a seccomp
// filter around Node (the container runtimes' default profiles refuse namespaces) and a masked
// /proc (mounts over its subpaths, which make the kernel refuse a new procfs in a user namespace).
// Read from /proc/self only; nothing here changes the host.
import * as fs from 'node:fs';

import { capMask } from './caps';
import { NsboxError } from './errors';
import { privileged } from './runtime';

/** /proc/self/status `Seccomp:` (0 none, 1 strict, 2 filter) and `Seccomp_filters:`; null if unreadable. */
export function seccompStatus(status?: string): { mode: number; filters: number } | null {
  let text = status;
  if (text === undefined) {
    try {
      text = fs.readFileSync('/proc/self/status', 'utf8');
    } catch {
      return null;
    }
  }
  const m = /^Seccomp:\s+(\d+)/m.exec(text);
  if (!m) return null;
  const f = /^Seccomp_filters:\s+(\d+)/m.exec(text);
  return { mode: Number(m[1]), filters: f ? Number(f[1]) : 0 };
}

/** Directories of procfs that stay empty for good: a mount on one hides nothing (fs/namespace.c). */
const EMPTY_FOR_GOOD = new Set(['/sys/fs/binfmt_misc']);

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The paths hidden under this process's /proc: the mount points of the mounts on top of its procfs
 * mounts (masked paths such as /proc/kcore, /proc/keys, a read-only /proc/sys), as the container
 * runtimes make them. Empty when a procfs mount of this mount namespace hides nothing (or there is
 * none): the kernel lets a user namespace mount a new procfs only if one is fully visible.
 */
export function procMasks(mountinfo?: string): string[] {
  let text = mountinfo;
  if (text === undefined) {
    try {
      text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    } catch {
      return [];
    }
  }
  const rows: Array<{ id: string; parent: string; root: string; at: string; fstype: string }> = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const fstype = line.slice(sep + 3).split(' ')[0] ?? '';
    rows.push({ id: pre[0] ?? '', parent: pre[1] ?? '', root: unescape(pre[3] ?? ''), at: unescape(pre[4] ?? ''), fstype });
  }
  const procs = rows.filter((r) => r.fstype === 'proc' && r.root === '/');
  let hidden: string[] | null = null;
  for (const p of procs) {
    const over = rows
      .filter((r) => r.parent === p.id && r.id !== p.id)
      .map((r) => r.at)
      .filter((at) => !EMPTY_FOR_GOOD.has(at.slice(p.at.length)));
    if (over.length === 0) return [];
    if (hidden === null || p.at === '/proc') hidden = over;
  }
  return hidden ?? [];
}

const SECCOMP_CALLS = new Set([
  'clone', 'clone3', 'unshare', 'setns', 'mount', 'umount2', 'pivot_root', 'open_tree', 'move_mount', 'fsopen', 'fsconfig', 'fsmount',
  'mount_setattr', 'sethostname', 'keyctl', 'bpf',
]);

/** The seccomp part of an explanation, if this process runs under a filter and the refusal can be its. */
export function seccompCause(code: string, syscall: string | undefined, status = seccompStatus()): string | null {
  if (!status || status.mode !== 2 || (code !== 'EPERM' && code !== 'ENOSYS')) return null;
  if (syscall !== undefined && !SECCOMP_CALLS.has(syscall)) return null;
  const n = status.filters > 0 ? `, Seccomp_filters: ${status.filters}` : '';
  return (
    `this process runs under a seccomp filter (/proc/self/status Seccomp: 2${n}), the likely cause: the container runtimes' ` +
    'default profiles (Kubernetes RuntimeDefault, Docker, Podman) answer clone3 with ENOSYS and refuse clone and unshare with ' +
    'namespace flags, mount and setns (EPERM). Run Node under a profile that allows them (Kubernetes securityContext.seccompProfile ' +
    "type Unconfined or a Localhost profile; docker/podman run --security-opt seccomp=unconfined)"
  );
}

/**
 * Machine.exec's clone3 answered ENOSYS (a seccomp filter, as the runtimes' default profiles have
 * even with CAP_SYS_ADMIN; or a kernel before 5.3). Unlike an app start or Machine.start, the
 * process entering a machine has no legacy clone to fall back to: it is cloned straight into the
 * machine's cgroup (CLONE_INTO_CGROUP), and moving it there afterwards would mean a host cgroup fd
 * in the machine, or a process of the machine outside its cgroup for a while.
 */
export function enterCloneCause(step: string | undefined, code: string, syscall: string | undefined, status = seccompStatus()): string | null {
  if (step !== 'exec.enter' || syscall !== 'clone3' || code !== 'ENOSYS') return null;
  const why =
    status && status.mode === 2
      ? `this process runs under a seccomp filter (/proc/self/status Seccomp: 2${status.filters > 0 ? `, Seccomp_filters: ${status.filters}` : ''}) ` +
        "that answers clone3 with ENOSYS, as the container runtimes' default profiles (Kubernetes RuntimeDefault, Docker, Podman) do"
      : 'this kernel has no clone3 (Linux 5.3; CLONE_INTO_CGROUP 5.7)';
  return (
    `${why}. Machine.exec makes its process with clone3 only (into the machine's cgroup with CLONE_INTO_CGROUP), without the ` +
    'fallback to clone that app starts and Machine.start have: the process would start outside the machine\'s cgroup. Allow clone3 ' +
    'in the profile Node runs under (Kubernetes securityContext.seccompProfile type Localhost with a profile that allows clone3, ' +
    'or Unconfined; docker/podman run --security-opt seccomp=<that profile> or seccomp=unconfined)'
  );
}

/** The masked-/proc part of an explanation of a refused procfs mount in a user namespace. */
export function procMaskCause(masks: string[]): string {
  const list = masks.length > 4 ? `${masks.slice(0, 4).join(', ')} and ${masks.length - 4} more` : masks.join(', ');
  return (
    `this process's /proc has mounts over its subpaths (masked paths: ${list}), and the kernel refuses a new procfs in a ` +
    'user namespace while the only procfs it could reveal is partly hidden ("mount_too_revealing"). Give the process an ' +
    'unmasked /proc: Kubernetes securityContext.procMount: Unmasked (with hostUsers: false), docker run --security-opt ' +
    'systempaths=unconfined, podman run --security-opt unmask=ALL; or start the container with proc: \'none\' ' +
    '(no /proc inside it: ps, top, /proc/self and /proc/meminfo are gone; docs/deploy.md)'
  );
}

/** This process's effective capabilities (/proc/self/status CapEff); null if unreadable. */
function capEff(): bigint | null {
  try {
    const m = /^CapEff:\s+([0-9a-f]+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? BigInt('0x' + m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Without a user namespace of its own, the container's new network namespace belongs to this
 * process's user namespace, and bringing up its lo needs CAP_NET_ADMIN there: a container runtime's
 * default set (Docker's, containerd's) has none, even with CAP_SYS_ADMIN added.
 */
export function netAdminCause(step: string | undefined, code: string, userns: boolean, caps = capEff()): string | null {
  if (step !== 'network.loopback' || code !== 'EPERM' || userns || caps === null) return null;
  if ((caps & capMask(['CAP_NET_ADMIN'])) !== 0n) return null;
  return (
    "this process lacks CAP_NET_ADMIN (/proc/self/status CapEff), which bringing up lo in the container's network namespace " +
    "needs; container runtimes' default capability sets have none. Add it (Kubernetes securityContext.capabilities.add: " +
    "[\"NET_ADMIN\"], docker/podman run --cap-add NET_ADMIN), or start the container with network: 'none' or 'host'"
  );
}

/**
 * A start's error with the cause this process's surroundings point to appended to its message (the
 * fields stay the kernel's: code, errno, syscall, step, path). `userns`: the container was to get
 * a user namespace (a rootless caller's always does).
 */
export function explainCause(e: NsboxError, userns: boolean): NsboxError {
  let cause: string | null = null;
  if (e.step === 'mount.proc' && e.code === 'EPERM' && (userns || !privileged())) {
    const masks = procMasks();
    if (masks.length) cause = procMaskCause(masks);
  }
  cause ??= netAdminCause(e.step, e.code, userns);
  cause ??= enterCloneCause(e.step, e.code, e.syscall);
  cause ??= seccompCause(e.code, e.syscall);
  if (!cause) return e;
  const err = new NsboxError({ code: e.code, errno: e.errno, syscall: e.syscall, step: e.step, path: e.path, message: `${e.message}: ${cause}` });
  return err;
}
