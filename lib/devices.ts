// devices.ts: the `devices` option against the host: each path must lead to a character or block
// device (symlinks followed, as docker does), and the container's cgroup device allow-list gets
// exactly these added (devicePolicyLoad: the fixed list of native/core/devices.cc plus them).
// The nodes themselves are made in the container's /dev by fsops.ts (mountProcAndDev, deviceBinds).
import * as fs from 'node:fs';

import { NsboxError, errnoName, fromSystemError, invalidValue, notSupported } from './errors';
import { native } from './native';
import type { OpList } from './fsops';
import type { ResolvedDeviceOption } from './options';
import { closeQuiet } from './runtime';

const STEP = 'devices';
/** open(2)'s O_PATH (not in fs.constants): an fd that names the inode without opening the device. */
const O_PATH = 0o10000000;

/** A device as the host has it. */
export interface HostDevice extends ResolvedDeviceOption {
  /** The node the path leads to (symlinks resolved): shown in messages. */
  hostNode: string;
  /**
   * An O_PATH fd of that node, opened once with O_NOFOLLOW: what the type, numbers and mode below
   * were read from (fstat), and what the child's bind must be (WHERE_SRC_FD: it binds hostNode only
   * if that is this inode), so a path swapped after the look-up (for a symlink to a host file)
   * never gets bound. The start owns it: closeHostDevices.
   */
  fd: number;
  block: boolean;
  major: number;
  minor: number;
  /** The node's permission bits (the container's node gets them). */
  mode: number;
}

/** Closes the fds of hostDevices. */
export function closeHostDevices(devices: HostDevice[]): void {
  for (const d of devices) closeQuiet(d.fd);
}

/** What makes a container's op list (fsops.ts): a device without its per-start fd. */
export function deviceKey(devices: HostDevice[]): unknown[] {
  return devices.map((d) => [d.path, d.containerPath, d.permissions, d.block, d.major, d.minor, d.mode]);
}

/**
 * Looks each device up on the host, before anything is made: a missing path is an NsboxError
 * (ENOENT, syscall stat, the path); anything but a character or block device a TypeError
 * (ERR_INVALID_ARG_VALUE) naming the option. The path is resolved (realpath), then its node opened
 * O_PATH | O_NOFOLLOW and fstat'd: one object, checked and then used (HostDevice.fd). A node that
 * is a symlink by the time it is opened (swapped while being looked up) is refused (ELOOP). The
 * caller owns the fds (closeHostDevices; a start hands them to its Launch).
 */
export function hostDevices(devices: ResolvedDeviceOption[], name = 'devices'): HostDevice[] {
  const out: HostDevice[] = [];
  try {
    devices.forEach((d, i) => {
      let st: fs.BigIntStats;
      let hostNode: string;
      let fd: number;
      try {
        hostNode = fs.realpathSync(d.path);
        fd = fs.openSync(hostNode, O_PATH | fs.constants.O_NOFOLLOW);
      } catch (e) {
        const err = fromSystemError(e, STEP, d.path);
        throw new NsboxError({ code: err.code, errno: err.errno, syscall: 'stat', step: STEP, path: d.path });
      }
      try {
        st = fs.fstatSync(fd, { bigint: true });
      } catch (e) {
        closeQuiet(fd);
        throw fromSystemError(e, STEP, d.path);
      }
      if (st.isSymbolicLink()) {
        closeQuiet(fd);
        throw new NsboxError({
          code: 'ELOOP', errno: 40, syscall: 'open', step: STEP, path: d.path,
          message: `devices: ${d.path} changed while it was looked up (${hostNode} is a symlink now): refused (step ${STEP})`,
        });
      }
      const block = st.isBlockDevice();
      if (!block && !st.isCharacterDevice()) {
        closeQuiet(fd);
        const what = st.isDirectory() ? 'a directory' : st.isFile() ? 'a regular file' : 'not a device';
        throw invalidValue(`${name}[${i}]`, d.path, `must be a character or block device (it is ${what})`);
      }
      // Linux's dev_t: major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31.
      const rdev = st.rdev;
      const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
      const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
      out.push({ ...d, hostNode, fd, block, major, minor, mode: Number(st.mode & 0o7777n) });
    });
  } catch (e) {
    closeHostDevices(out);
    throw e;
  }
  return out;
}

/** Whether a device's node is the host's, bound (else made with mknod). */
export const bindsDevice = (d: HostDevice, userns: boolean): boolean => userns || !d.permissions.includes('m');

/**
 * The binds of the host's device nodes onto the files mountProcAndDev made for them: the source is
 * the node checked through its fd (HostDevice.fd, WHERE_SRC_FD: the child binds the path only if it
 * is still that inode), so they are per start (plan.opsAfter for an app, whose list is cached).
 * nosuid and noexec (a device node needs neither), read-only without 'w'.
 */
export function deviceBinds(L: OpList, devices: HostDevice[], userns: boolean): void {
  const K = native().constants;
  for (const d of devices) {
    if (!bindsDevice(d, userns)) continue;
    L.srcFdBind(d.hostNode, d.fd, d.containerPath, 'devices', d.path);
    L.remount(d.containerPath, K.MS_BIND! | K.MS_NOSUID! | K.MS_NOEXEC! | (d.permissions.includes('w') ? 0 : K.MS_RDONLY!), 'devices');
  }
}

const ACCESS: Record<string, number> = { m: 1, r: 2, w: 4 };

/**
 * The device allow-list with `devices` added, for a container whose cgroup gets the list
 * (`policy`): a new program fd that the caller closes once the clone is done (the attachment
 * keeps the program). A device's permissions hold for its number whatever node the container
 * opens: one of nsbox's own (/dev/null, a pty of its devpts) given with 'r' is read-only too. Without the list, permissions short of 'rwm' could not be enforced: refused
 * (ENOTSUP), never silently widened. Returns -1 where no program is needed.
 */
export function devicePolicyFd(devices: HostDevice[], policy: boolean): number {
  if (!devices.length) return -1;
  if (!policy) {
    const partial = devices.find((d) => d.permissions !== 'rwm');
    if (partial) {
      throw notSupported(STEP, `devices: permissions '${partial.permissions}' for ${partial.path} need the cgroup device allow-list, which this container does not get here (root with a cgroup v2 hierarchy and BPF); give 'rwm' or leave permissions out`, partial.path);
    }
    return -1;
  }
  // One rule per device number, with what every entry for it allows: the program's answer for a
  // number that a rule matches is final (native/core/devices.cc), so two entries of one device (a
  // node and a link to it) get their union, not the first one's.
  const rules = new Map<string, number[]>();
  for (const d of devices) {
    const access = [...d.permissions].reduce((a, c) => a | ACCESS[c]!, 0);
    const key = `${d.block ? 1 : 0}:${d.major}:${d.minor}`;
    const r = rules.get(key);
    if (r) r[3] = (r[3] ?? 0) | access;
    else rules.set(key, [d.block ? 1 : 0, d.major, d.minor, access]);
  }
  const flat = [...rules.values()].flat();
  const fd = native().devicePolicyLoad(flat);
  if (fd < 0) {
    throw new NsboxError({ code: errnoName(-fd), errno: -fd, syscall: 'bpf', step: STEP, message: `bpf BPF_PROG_LOAD (the device allow-list with ${devices.length} device(s) added): ${errnoName(-fd)} (step ${STEP})` });
  }
  return fd;
}
