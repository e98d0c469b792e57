// probe.ts: what this host can give, as data. Nothing here changes the host.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { detectCgroupHost } from './cgroup';
import { native } from './native';
import { devicePolicyErrno } from './runtime';
import { errnoName } from './errors';
import { probeNetwork } from './network';
import type { HostReport } from './types';
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

/** Reports the kernel, the cgroup shape and which kernel features nsbox can use here. */
export async function probe(): Promise<HostReport> {
  const kernel = os.release();
  const sc = native().probe();
  const cg = detectCgroupHost(true);
  const notes: string[] = [];
  const root = process.getuid?.() === 0;

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
  const ub = usernsBlocker();
  if (ub) notes.push(`${ub.setting}=${ub.value}: this process cannot create user namespaces, so rootless containers cannot start; ${ub.remedy}`);
  if (cg.mode === 'hybrid') {
    notes.push(
      `hybrid cgroups: v2 at ${cg.mountPoint} has [${cg.controllers.join(' ') || 'no controllers'}]; memory, pids, cpu and io limits are not available (their controllers are bound to v1). Containers still get kill, freeze and cpu usage through v2.`,
    );
  }
  if (cg.reason) notes.push(cg.reason);
  if (!root) notes.push("not root: network: 'bridge' is not available (bridged networking needs root for now)");
  if (!sc.clone3) notes.push('clone3 is not available: nsbox falls back to clone and joins cgroups from inside the child');
  const devErr = devicePolicyErrno();
  const devicePolicy = devErr === 0 && !!cg.mountPoint && cg.writable;
  if (!devicePolicy) {
    notes.push(
      `no cgroup device allow-list here (${devErr !== 0 ? `BPF_CGROUP_DEVICE: ${errnoName(devErr)}` : 'no writable cgroup v2'}): ` +
        'device nodes are kept from containers by nodev and by their lack of CAP_MKNOD (or a user namespace) only; a container keeping CAP_MKNOD without a user namespace is refused (ENOTSUP)',
    );
  }

  return {
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
      userNamespaces: userns,
      unprivilegedUserNamespaces: unpriv,
      devicePolicy,
    },
    userns: usernsReport(),
    notes,
    network: probeNetwork((major, minor) => kernelAtLeast(kernel, major, minor)),
  };
}
