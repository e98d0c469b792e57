// probe.ts: what this host can give, as data. Nothing here changes the host.
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import * as os from 'node:os';
import * as path from 'node:path';

import { detectCgroupHost } from './cgroup';
import { native } from './native';
import { devicePolicyErrno } from './runtime';
import { errnoName } from './errors';
import { procMaskCause, procMasks, seccompCause } from './causes';
import { probeNetwork } from './network';
import { privileged } from './runtime';
import type { HostReport, ProbeTrial, ProcMode } from './types';
import { unsupportedReason } from './platform';
import { usernsReport, usernsBlocker } from './userns';

function readTrim(p: string): string | undefined {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const a = Number(m[1]), b = Number(m[2]);
  return a > major || (a === major && b >= minor);
}

const TRIAL_CALLS: ReadonlyArray<string | null> = [null, 'clone3', 'clone', 'mount', 'mount', 'write', 'pipe2', null];

/** A native trial's result as a ProbeTrial, with the cause this process's surroundings point to. */
function trial(r: { stage: number; errno: number }, what: 'userns' | 'procfs' | 'cgroup', userns: boolean, procsPath?: string): ProbeTrial {
  if (r.stage === 0) return { ok: true, code: null, errno: 0, syscall: null, path: null, cause: null };
  const code = errnoName(r.errno);
  const syscall = TRIAL_CALLS[r.stage] ?? null;
  const p = r.stage === 3 ? '/' : r.stage === 4 ? '/proc' : r.stage === 5 ? procsPath ?? null : null;
  let cause: string | null = null;
  if (r.stage === 4 && code === 'EPERM' && userns) {
    const masks = procMasks();
    if (masks.length) cause = procMaskCause(masks);
  }
  cause ??= seccompCause(code, syscall ?? undefined);
  if (!cause && what === 'userns' && (r.stage === 1 || r.stage === 2)) {
    const b = usernsBlocker();
    if (b) cause = `${b.setting}=${b.value}: ${b.remedy}`;
    else if (code === 'ENOSPC') cause = 'user.max_user_namespaces (or a parent namespace\'s limit) is reached';
  }
  return { ok: false, code, errno: r.errno, syscall, path: p, cause };
}

let trialSeq = 0;
/** A new cgroup under where containers' go, a throwaway child moved into it, the cgroup removed. */
async function cgroupTrial(parent: string | null, reason: string | null): Promise<ProbeTrial> {
  if (!parent) return { ok: false, code: 'ENOTSUP', errno: os.constants.errno.ENOTSUP, syscall: null, path: null, cause: reason };
  const dir = path.join(parent, `nsbox-probe-${process.pid}-${trialSeq++}`);
  const failed = (e: unknown, at: string): ProbeTrial => {
    const se = e as NodeJS.ErrnoException;
    const errno = typeof se.errno === 'number' ? Math.abs(se.errno) : 0;
    return { ok: false, code: se.code ?? errnoName(errno), errno, syscall: se.syscall ?? null, path: at, cause: null };
  };
  try {
    fs.mkdirSync(dir);
  } catch (e) {
    return failed(e, dir);
  }
  try {
    const procs = path.join(dir, 'cgroup.procs');
    let fd: number;
    try {
      fd = fs.openSync(procs, 'w');
    } catch (e) {
      return failed(e, procs);
    }
    try {
      return trial(native().tryNamespaces(0, 0, fd), 'cgroup', false, procs);
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    // The child is reaped: the cgroup is empty again (EBUSY only for a moment, if at all). The
    // retries sleep on timers, not on this thread.
    for (let i = 0; i < 50; i++) {
      try {
        await fsp.rmdir(dir);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EBUSY') break;
        await sleep(10);
      }
    }
  }
}

/** Reports the kernel, the cgroup shape and which kernel features nsbox can use here. */
export async function probe(): Promise<HostReport> {
  const reason = unsupportedReason();
  if (reason !== null) return unsupportedReport(reason);
  const kernel = os.release();
  const sc = native().probe();
  const cg = detectCgroupHost(true);
  const notes: string[] = [];
  // Root as containers need it (runtime.ts, privileged): one definition for `root` and `rootless`.
  const root = privileged();

  // cgroup.kill and cgroup.freeze exist in every non-root cgroup of a kernel that has them.
  let cgroupKill = false;
  let cgroupFreeze = false;
  if (cg.mountPoint) {
    const self = path.join(cg.mountPoint, cg.self ?? '/');
    const probeDir = cg.self && cg.self !== '/' ? self : undefined;
    if (probeDir) {
      cgroupKill = fs.existsSync(path.join(probeDir, 'cgroup.kill'));
      cgroupFreeze = fs.existsSync(path.join(probeDir, 'cgroup.freeze'));
    } else {
      cgroupKill = kernelAtLeast(kernel, 5, 14);
      cgroupFreeze = kernelAtLeast(kernel, 5, 2);
    }
  }
  const filesystems = readTrim('/proc/filesystems') ?? '';
  const userns = fs.existsSync('/proc/self/ns/user');
  let unpriv = userns && readTrim('/proc/sys/user/max_user_namespaces') !== '0';
  if (readTrim('/proc/sys/kernel/unprivileged_userns_clone') === '0') {
    unpriv = false;
    notes.push('kernel.unprivileged_userns_clone=0: unprivileged user namespaces are disabled');
  }
  if (readTrim('/proc/sys/kernel/apparmor_restrict_unprivileged_userns') === '1') {
    unpriv = false;
    notes.push('kernel.apparmor_restrict_unprivileged_userns=1: AppArmor restricts unprivileged user namespaces');
  }
  // Tried, not guessed: in throwaway children (native/core/probe.cc), never in this process.
  const K = native().constants;
  const usernsTrial = trial(native().tryNamespaces(K.CLONE_NEWUSER!, 0, -1), 'userns', true);
  const procFlags = K.CLONE_NEWNS! | K.CLONE_NEWPID! | (root ? 0 : K.CLONE_NEWUSER!);
  const procfsTrial = usernsTrial.ok || root ? trial(native().tryNamespaces(procFlags, K.TRIAL_PROC_FRESH!, -1), 'procfs', !root) : usernsTrial;
  // proc: 'none' (an empty read-only tmpfs on /proc), in the same namespaces: tried too, not assumed.
  const procNoneTrial = usernsTrial.ok || root ? trial(native().tryNamespaces(procFlags, K.TRIAL_PROC_NONE!, -1), 'procfs', false) : usernsTrial;
  const procModes: ProcMode[] = [];
  if (procfsTrial.ok) procModes.push('fresh');
  if (procNoneTrial.ok) procModes.push('none');
  const cgroupTrialResult = await cgroupTrial(cg.mountPoint ? cg.parent : null, cg.reason);
  unpriv = unpriv && usernsTrial.ok;
  const ub = usernsBlocker();
  if (ub) notes.push(`${ub.setting}=${ub.value}: this process cannot create user namespaces, so rootless containers cannot start; ${ub.remedy}`);
  if (cg.mode === 'hybrid') {
    notes.push(
      `hybrid cgroups: v2 at ${cg.mountPoint} has [${cg.controllers.join(' ') || 'no controllers'}]; memory, pids, cpu and io limits are not available (their controllers are bound to v1). Containers still get kill, freeze and cpu usage through v2.`,
    );
  }
  if (cg.reason) notes.push(cg.reason);
  const refused = (t: ProbeTrial): string => `${t.syscall ?? 'a check'}${t.path ? ` '${t.path}'` : ''}: ${t.code}${t.cause ? `; ${t.cause}` : ''}`;
  if (!usernsTrial.ok && !ub) notes.push(`a user namespace could not be created here (${refused(usernsTrial)})${root ? '' : ', so containers cannot start'}`);
  if (!procfsTrial.ok && usernsTrial.ok) {
    notes.push(
      `a new /proc could not be mounted in a container's namespaces (${refused(procfsTrial)}): containers fail at step mount.proc` +
        (procNoneTrial.ok ? "; proc: 'none' (no /proc in the container) works here" : ''),
    );
  }
  if (!cgroupTrialResult.ok && cg.mountPoint && cg.writable) notes.push(`a process could not be moved into a new cgroup (${refused(cgroupTrialResult)})`);
  if (!root) notes.push("not root: network: 'bridge' is not available (bridged networking needs root for now)");
  if (!sc.clone3) {
    notes.push(
      'clone3 is not available: nsbox falls back to clone and joins cgroups from inside the child; Machine.exec cannot enter ' +
        'a machine (it has no fallback: ENOSYS at step exec.enter)',
    );
  }
  const devErr = devicePolicyErrno();
  const devicePolicy = devErr === 0 && !!cg.mountPoint && cg.writable;
  if (!devicePolicy) {
    notes.push(
      `no cgroup device allow-list here (${devErr !== 0 ? `BPF_CGROUP_DEVICE: ${errnoName(devErr)}` : 'no writable cgroup v2'}): ` +
        'device nodes are kept from containers by nodev and by their lack of CAP_MKNOD (or a user namespace) only; a container keeping CAP_MKNOD without a user namespace is refused (ENOTSUP)',
    );
  }

  return {
    supported: true,
    reason: null,
    platform: process.platform,
    kernel,
    arch: process.arch,
    root,
    cgroup: {
      mode: cg.mode,
      mountPoint: cg.mountPoint,
      self: cg.self,
      controllers: cg.controllers,
      writable: cg.writable,
      delegated: cg.delegated,
    },
    features: {
      clone3: sc.clone3,
      pidfd: sc.pidfd,
      cloneIntoCgroup: sc.clone3 && kernelAtLeast(kernel, 5, 7),
      cgroupKill,
      cgroupFreeze,
      newMountApi: sc.newMountApi,
      openat2: sc.openat2,
      closeRange: sc.closeRange,
      idmappedMounts: sc.mountSetattr,
      overlayfs: /\boverlay\b/.test(filesystems),
      userNamespaces: userns && usernsTrial.ok,
      unprivilegedUserNamespaces: unpriv,
      devicePolicy,
    },
    userns: usernsShape(usernsReport(), root, usernsTrial),
    trials: { userns: usernsTrial, procfs: procfsTrial, cgroup: cgroupTrialResult, procNone: procNoneTrial },
    procModes,
    notes,
    network: probeNetwork((major, minor) => kernelAtLeast(kernel, major, minor)),
  };
}

/** The user namespace report, consistent with `root` and with what the trial found. */
function usernsShape(u: HostReport['userns'], root: boolean, t: ProbeTrial): HostReport['userns'] {
  const out = { ...u, rootless: !root };
  if (!t.ok && !root) {
    out.blockedBy ??= t.cause?.startsWith('this process runs under a seccomp filter') ? 'seccomp' : `${t.syscall}: ${t.code}`;
    out.defaultMap = 'none';
  }
  return out;
}

/** The report where nsbox cannot run (lib/platform.ts): the reason, and nothing tried or claimed. */
function unsupportedReport(reason: string): HostReport {
  const notTried: ProbeTrial = { ok: false, code: 'ENOTSUP', errno: os.constants.errno.ENOTSUP ?? 0, syscall: null, path: null, cause: reason };
  return {
    supported: false,
    reason,
    platform: process.platform,
    kernel: os.release(),
    arch: process.arch,
    root: false,
    cgroup: { mode: 'none', mountPoint: null, self: null, controllers: [], writable: false, delegated: false },
    features: {
      clone3: false, pidfd: false, cloneIntoCgroup: false, cgroupKill: false, cgroupFreeze: false, newMountApi: false, openat2: false,
      closeRange: false, idmappedMounts: false, overlayfs: false, userNamespaces: false, unprivilegedUserNamespaces: false, devicePolicy: false,
    },
    userns: { rootless: true, blockedBy: null, idmapHelpers: false, subuid: [], subgid: [], defaultMap: 'none', ranges: null },
    trials: { userns: notTried, procfs: notTried, cgroup: notTried, procNone: notTried },
    procModes: [],
    notes: [reason],
  };
}
