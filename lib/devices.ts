// devices.ts: the `devices` option against the host: each path must be a character or block device
// (stat, following symlinks as docker does), and the container's cgroup device allow-list gets
// exactly these added (devicePolicyLoad: the fixed list of native/core/devices.cc plus them).
// The nodes themselves are made in the container's /dev by fsops.ts (mountProcAndDev).
import * as fs from 'node:fs';

import { NsboxError, errnoName, fromSystemError, invalidValue, notSupported } from './errors';
import { native } from './native';
import type { ResolvedDeviceOption } from './options';

const STEP = 'devices';

/** A device as the host has it. */
export interface HostDevice extends ResolvedDeviceOption {
  /** The node the path leads to (symlinks resolved): what a bind in a user namespace mounts. */
  hostNode: string;
  block: boolean;
  major: number;
  minor: number;
  /** The node's permission bits (the container's node gets them). */
  mode: number;
}

/**
 * Looks each device up on the host, before anything is made: a missing path is an NsboxError
 * (ENOENT, syscall stat, the path); anything but a character or block device a TypeError
 * (ERR_INVALID_ARG_VALUE) naming the option.
 */
export function hostDevices(devices: ResolvedDeviceOption[], name = 'devices'): HostDevice[] {
  return devices.map((d, i) => {
    let st: fs.BigIntStats;
    let hostNode: string;
    try {
      st = fs.statSync(d.path, { bigint: true });
      hostNode = fs.realpathSync(d.path);
    } catch (e) {
      const err = fromSystemError(e, STEP, d.path);
      throw new NsboxError({ code: err.code, errno: err.errno, syscall: 'stat', step: STEP, path: d.path });
    }
    const block = st.isBlockDevice();
    if (!block && !st.isCharacterDevice()) {
      const what = st.isDirectory() ? 'a directory' : st.isFile() ? 'a regular file' : 'not a device';
      throw invalidValue(`${name}[${i}]`, d.path, `must be a character or block device (it is ${what})`);
    }
    // Linux's dev_t: major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31.
    const rdev = st.rdev;
    const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
    const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
    return { ...d, hostNode, block, major, minor, mode: Number(st.mode & 0o7777n) };
  });
}

const ACCESS: Record<string, number> = { m: 1, r: 2, w: 4 };

/**
 * The device allow-list with `devices` added, for a container whose cgroup gets the list
 * (`policy`): a new program fd that the caller closes once the clone is done (the attachment
 * keeps the program). Without the list, permissions short of 'rwm' could not be enforced: refused
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
  const flat: number[] = [];
  for (const d of devices) {
    flat.push(d.block ? 1 : 0, d.major, d.minor, [...d.permissions].reduce((a, c) => a | ACCESS[c]!, 0));
  }
  const fd = native().devicePolicyLoad(flat);
  if (fd < 0) {
    throw new NsboxError({ code: errnoName(-fd), errno: -fd, syscall: 'bpf', step: STEP, message: `bpf BPF_PROG_LOAD (the device allow-list with ${devices.length} device(s) added): ${errnoName(-fd)} (step ${STEP})` });
  }
  return fd;
}
