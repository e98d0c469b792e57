// caps.ts: Linux capabilities: the kernel's table (one list, in bit order), the sets containers and
// machines keep by default, the option check, and the mask a container's plan carries.
import * as fs from 'node:fs';

import { invalidType, invalidValue, notSupported } from './errors';
import { arrayElements, editDistance as distance, isPlainObject, rejectUnknownKeys } from './util';

/** Capability names as the kernel knows them (capability.h), without the CAP_ prefix, in bit order. */
export const CAPABILITY_NAMES = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
  'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
  'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE',
  'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP',
  'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
  'CHECKPOINT_RESTORE',
] as const;

/** Bit numbers by full name (CAP_CHOWN: 0, ...), from CAPABILITY_NAMES. */
export const CAP_NUMBERS: Record<string, number> = Object.fromEntries(CAPABILITY_NAMES.map((n, i) => ['CAP_' + n, i]));

/** The capability set app containers keep: containerd 2.0's nine (see docs/security.md). */
export const DEFAULT_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE',
] as const;
/** What systemd-nspawn keeps by default; without a user namespace these are the host's. */
export const MACHINE_CAPS = [
  'CAP_AUDIT_CONTROL', 'CAP_AUDIT_WRITE', 'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER',
  'CAP_FSETID', 'CAP_IPC_OWNER', 'CAP_KILL', 'CAP_LEASE', 'CAP_LINUX_IMMUTABLE', 'CAP_MKNOD', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_RAW', 'CAP_SETFCAP', 'CAP_SETGID', 'CAP_SETPCAP', 'CAP_SETUID', 'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT', 'CAP_SYS_CHROOT', 'CAP_SYS_NICE', 'CAP_SYS_PTRACE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TTY_CONFIG',
] as const;

/** The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap). */
let capLastCache: number | undefined;
export function capLast(): number {
  if (capLastCache === undefined) {
    try {
      capLastCache = Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
    } catch {
      capLastCache = 40;
    }
  }
  return capLastCache;
}

let capBndCache: bigint | undefined;
/**
 * The capabilities this process can still hand on (its bounding set). A container never gets more;
 * on a host that already dropped some (CAP_SYS_RESOURCE in some sandboxes) they are simply absent.
 */
export function capsAvailable(): bigint {
  if (capBndCache === undefined) {
    capBndCache = (1n << BigInt(capLast() + 1)) - 1n;
    try {
      const m = /^CapBnd:\s+([0-9a-f]+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
      if (m) capBndCache &= BigInt('0x' + m[1]);
    } catch {
      /* keep the full mask */
    }
  }
  return capBndCache;
}

/**
 * The capability set a container keeps: `base` plus `add` minus `drop` ('ALL' in either means
 * every capability). Asking for one this process does not have itself is ENOTSUP, not a quiet loss.
 */
export function resolveCaps(base: readonly string[], c: { add: string[]; drop: string[] }): bigint {
  const all = (1n << BigInt(capLast() + 1)) - 1n;
  const avail = capsAvailable();
  // The base set is a default: what this process lacks of it is simply not there. An explicit
  // `add` of a capability this process lacks is an error.
  const added = c.add.includes('ALL') ? avail : capMask(c.add);
  let keep = (capMask(base) & avail) | added;
  if (c.drop.includes('ALL')) keep = 0n;
  else keep &= ~capMask(c.drop);
  const missing = added & ~avail & all;
  if (missing) {
    const names = Object.entries(CAP_NUMBERS).filter(([, n]) => (missing >> BigInt(n)) & 1n).map(([k]) => k);
    throw notSupported('capabilities', `this process does not hold ${names.join(', ')} itself, so a container cannot be given it`);
  }
  return keep & all;
}

/**
 * Whether a container keeps CAP_SYS_ADMIN (added, not dropped): it may remount what it shares with
 * other containers in its own mount namespace (read-only binds made writable, a superblock's flags
 * changed), so it gets its own /etc files and its own image root.
 */
export function keepsSysAdmin(c: { add: string[]; drop: string[] }): boolean {
  return (c.add.includes('CAP_SYS_ADMIN') || c.add.includes('ALL')) && !c.drop.includes('CAP_SYS_ADMIN') && !c.drop.includes('ALL');
}

export function capMask(names: readonly string[]): bigint {
  let m = 0n;
  for (const n of names) m |= 1n << BigInt(CAP_NUMBERS[n]!);
  return m;
}


/** `{ add?, drop? }` of capability names ('NET_RAW' or 'CAP_NET_RAW', any case; 'ALL'). */
export function checkCapabilities(name: string, v: unknown): { add: string[]; drop: string[] } {
  if (v === undefined) return { add: [], drop: [] };
  if (!isPlainObject(v)) throw invalidType(name, 'of type object', v);
  rejectUnknownKeys(v, ['add', 'drop'], `${name}.`);
  const list = (key: 'add' | 'drop'): string[] => {
    const l = (v as Record<string, unknown>)[key];
    if (l === undefined) return [];
    return arrayElements(`${name}.${key}`, l, 'an array of capability names').map((c: unknown, i) => {
      if (typeof c !== 'string') throw invalidType(`${name}.${key}[${i}]`, 'of type string', c);
      const n = c.toUpperCase().replace(/^CAP_/, '');
      if (n === 'ALL') return 'ALL';
      if (!(CAPABILITY_NAMES as readonly string[]).includes(n)) {
        const near = CAPABILITY_NAMES.map((k) => [k, distance(n, k, true)] as const).sort((a, b) => a[1] - b[1])[0];
        const hint = near && near[1] <= 3 ? `; did you mean 'CAP_${near[0]}'?` : '';
        throw invalidValue(`${name}.${key}[${i}]`, c, `is not a known capability${hint}`);
      }
      return 'CAP_' + n;
    });
  };
  return { add: list('add'), drop: list('drop') };
}

