// machine-state.ts: a machine's state directory, <stateDir>/<name>: its state file, the claim a
// start writes when it takes the name, and what is done with a name whose start or PID 1 died
// without cleaning up (claimName, abandoned, reclaimAbandoned). machine.ts is the Machine class.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';

import { ContainerCgroup, detectCgroupHost, killAndRemove } from './cgroup';
import { NsboxError, fromSystemError } from './errors';
import { unpinOwner } from './images/store';
import { etcBase } from './etc';
import { leaseLive, nestedPidns, ownerOf, readLease, startTimeOf, type LeaseOwner } from './lease';
import { native, type NativeProcess } from './native';
import { releaseLease } from './network';
import type { IdMapEntry, NetworkMode } from './types';
import type { ResolvedRlimit } from './rlimits';
import { releaseIdRange } from './userns';

export interface StateFile {
  version: 1;
  name: string;
  pid: number;
  startTime: string;
  cgroup: string | null;
  rootfs: string;
  init: 'builtin' | string[];
  /** MachineOptions.command: the builtin init's one command (its wait status goes to EXIT_STATUS). */
  command?: string[];
  /** MachineOptions.autoRemove: removed by the first get/list/start that sees it stopped. */
  autoRemove?: boolean;
  ephemeral: boolean;
  hostname: string;
  network: NetworkMode;
  haltSignal: number;
  capsKeep: string;
  /** The machine's seccomp option as given ('none' when off), re-resolved for every exec. */
  seccomp?: 'default' | 'none' | { allow?: string[]; deny?: string[]; defaultErrno?: number };
  /** MachineOptions.rlimits as resolved ([name, soft, hard], -1 unlimited): every exec gets them too. */
  rlimits?: ResolvedRlimit[];
  createdAt: string;
  stopped?: boolean;
  /** A machine of an image: its reference and the store lease owned by PID 1 (lib/images/store.ts pinForOwner). */
  image?: { ref: string; digest: string; lease: string; env?: Record<string, string> };
  /** The machine has its own user namespace (exec joins it too), with these maps. */
  userns?: { uidMap: IdMapEntry[]; gidMap: IdMapEntry[]; setgroups?: 'allow' | 'deny'; lease?: string };
  /** network: 'bridge': the address lease (a file owned by PID 1), released when the machine stops. */
  net?: { bridge: string; address: string; gateway: string; hostIf: string; lease: string };
  /** Its generated /etc files (lib/etc.ts), removed once it is seen stopped. */
  etcDir?: string;
}

/**
 * Replaces the file atomically (a reader in another process sees the old or the new state, never a
 * torn one). No fsync: a machine does not outlive its host, so after a crash of the host the state
 * describes a dead PID 1 either way, and an unreadable or missing state is treated as stale
 * (readState, claimName). The two fsyncs cost about 0.4 ms per write on an ext4 /run.
 */
export function writeAtomic(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, data);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/**
 * A stopped machine's generated /etc files (lib/etc.ts), by whichever process sees it stopped. The
 * state file names the directory: only ever one of nsbox's own machine directories is removed.
 */
export function removeMachineEtc(s: StateFile): void {
  const d = s.etcDir;
  if (typeof d === 'string' && path.dirname(d) === etcBase() && /^m-[0-9a-f]{8}-/.test(path.basename(d))) fs.rmSync(d, { recursive: true, force: true });
}

export function readState(dir: string): StateFile | undefined {
  try {
    const s = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as StateFile;
    return s.version === 1 ? s : undefined;
  } catch {
    return undefined;
  }
}

/** Is the PID 1 recorded in the state still that same process? Returns a live handle when it is. */
export function openLive(s: StateFile): NativeProcess | null {
  if (s.stopped) return null;
  const p = native().pidfdOpen(s.pid);
  if (typeof p === 'number') return null;
  // Opened first, checked second: if the start time still matches, the pidfd refers to the machine.
  if (startTimeOf(s.pid) !== s.startTime || p.exited()) {
    p.unref();
    return null;
  }
  return p;
}

/** Where the builtin init reports its command's raw wait status (4 bytes, host order), in the machine's directory. */
export const EXIT_STATUS = 'exit-status';

/**
 * The command's end as the init reported it: an exit code or a signal name; undefined while it
 * runs, or if it ended without a report (init killed with it). The file is written by the machine's
 * PID 1: only a 4-byte status is accepted, and it can only say how the command ended.
 */
export function readExitStatus(dir: string): { exitCode: number | null; signal: string | null } | undefined {
  let b: Buffer;
  try {
    b = fs.readFileSync(path.join(dir, EXIT_STATUS));
  } catch {
    return undefined;
  }
  if (b.length !== 4) return undefined;
  const st = b.readInt32LE(0);
  if ((st & 0x7f) === 0) return { exitCode: (st >> 8) & 0xff, signal: null };
  const n = st & 0x7f;
  const name = Object.entries(osConstants.signals).find(([, v]) => v === n)?.[0];
  return { exitCode: null, signal: name ?? `SIG${n}` };
}

/** Records that the command was killed by `signal` (SIGKILL of the whole machine: its init could not report). */
export function writeKilledStatus(dir: string, signal: number): void {
  const b = Buffer.alloc(4);
  b.writeInt32LE(signal & 0x7f, 0);
  try {
    const fd = fs.openSync(path.join(dir, EXIT_STATUS), fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW);
    try {
      if (fs.fstatSync(fd).size === 0) fs.writeSync(fd, b);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* destroyed meanwhile */
  }
}

/** The lock file of a state directory (not a machine name: NAME_RE starts with [a-z0-9]). */
export const STATE_LOCK = '.lock';
/** Who is starting the machine, written right after its name is taken (a lease, lib/lease.ts). */
export const CLAIM = 'claim.json';

/** Machine names are unique per state directory; the cgroup name carries both. */
export function machineCgroupName(stateDir: string, name: string): string {
  // The directory's real path: the same state directory reached through a link names the same
  // cgroup (an abandoned start listed through an alias must be found, not its PID 1 orphaned).
  let real = stateDir;
  try {
    real = fs.realpathSync(stateDir);
  } catch {
    /* not there (yet): as given */
  }
  const sd = createHash('sha256').update(real).digest('hex').slice(0, 8);
  return `m-${sd}-${name}`;
}

/**
 * A name taken by a start that never wrote the state: its Node process is provably gone (the claim's
 * pid and start time, as leases are judged), or, without a claim (a crash between the mkdir and the
 * claim's write), the directory is older than 10 s. Call with the state directory's lock held.
 */
export function abandoned(dir: string): 'claimed' | 'empty' | false {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch {
    return false; // gone meanwhile
  }
  // Only a directory a start made: never a link, a file, or a directory with anything else in it
  // (a state directory may hold what is not a machine: nsbox's own net/userns/etc under /run/nsbox,
  // or a caller's files: Machine.list() must not remove them).
  if (!st.isDirectory() || fs.existsSync(path.join(dir, 'state.json'))) return false;
  const claim = readLease(path.join(dir, CLAIM));
  if (claim) {
    // Judged only where every pid of the host is visible: from another pid namespace a host
    // process's claim looks dead while its start goes on.
    if (nestedPidns()) return false;
    return leaseLive(claim) ? false : 'claimed';
  }
  // No claim: a crash between the mkdir and the claim's write leaves an empty directory.
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return false;
  }
  return entries.length === 0 && Date.now() - st.mtimeMs >= 10000 ? 'empty' : false;
}

/**
 * Removes what an abandoned start left (see abandoned): its PID 1 may have gone on without its Node
 * process (machines have no parent-death signal), so everything in the machine's cgroup is killed
 * first, then the cgroup and the directory go. Its address and id range leases name the dead Node
 * process: the next allocation reclaims them (network.ts reclaimStale, userns.ts liveLeases).
 * Call with the state directory's lock held.
 */
export function reclaimAbandoned(stateDir: string, name: string, how: 'claimed' | 'empty'): void {
  const dir = path.join(stateDir, name);
  if (how === 'empty') {
    // Not recursive: if anything appeared in it meanwhile, it is not an abandoned start's.
    try {
      fs.rmdirSync(dir);
    } catch {
      /* not empty, or gone */
    }
    return;
  }
  // The base the start used (in its claim: cgroups go inside the starter's own cgroup, which need
  // not be this process's); only a base named 'nsbox' inside the v2 hierarchy is believed.
  const host = detectCgroupHost();
  const claimed = readLease<LeaseOwner & { cgroupBase?: unknown }>(path.join(dir, CLAIM))?.cgroupBase;
  const fromClaim = typeof claimed === 'string' && host.mountPoint && path.basename(claimed) === 'nsbox' && path.resolve(claimed) === claimed && claimed.startsWith(host.mountPoint + '/') ? claimed : null;
  const base = fromClaim ?? host.base;
  const cgName = machineCgroupName(stateDir, name);
  // Killed now; removed once its processes are gone, off this thread (a start of the same name
  // meanwhile removes the emptied cgroup itself: ContainerCgroup.create).
  if (base) void killAndRemove(path.join(base, cgName));
  // Its generated /etc files, if the start got that far (named m-<hash>-<name>-<12 hex>).
  const etcDirOf = new RegExp(`^${cgName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-[0-9a-f]{12}$`);
  try {
    for (const n of fs.readdirSync(etcBase())) if (etcDirOf.test(n)) fs.rmSync(path.join(etcBase(), n), { recursive: true, force: true });
  } catch {
    /* no /etc files were made */
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * Takes the name atomically (mkdir) and records who took it (CLAIM); a stale entry (PID 1 gone or its
 * pid reused) or an abandoned start is cleared first. Call with the state directory's lock held.
 */
export function claimName(stateDir: string, name: string): void {
  const dir = path.join(stateDir, name);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
      try {
        fs.writeFileSync(path.join(dir, CLAIM), JSON.stringify({ ...ownerOf(process.pid), cgroupBase: detectCgroupHost().base }), { mode: 0o600 });
      } catch (e) {
        fs.rmSync(dir, { recursive: true, force: true });
        throw fromSystemError(e, 'machine.state', path.join(dir, CLAIM));
      }
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e instanceof NsboxError ? e : fromSystemError(e, 'machine.state', dir);
    }
    const s = readState(dir);
    let how: ReturnType<typeof abandoned>;
    const exists = (why: string): NsboxError =>
      new NsboxError({ code: 'EEXIST', syscall: 'mkdir', step: 'machine.name', path: dir, message: `${why} (step machine.name)` });
    if (s) {
      const live = openLive(s);
      if (live) {
        live.unref();
        throw exists(`a machine named '${name}' already exists`);
      }
      if (s.stopped) throw exists(`a stopped machine named '${name}' exists; destroy() it first`);
      // Stale: PID 1 died (or its pid was reused) without a stop. Clean up what it left.
      if (s.cgroup) ContainerCgroup.adopt(s.cgroup).removeNow();
      if (s.net) releaseLease(s.net.lease, { pid: s.pid, start: s.startTime });
      if (s.image) unpinOwner(s.image.lease);
      if (s.userns?.lease) releaseIdRange(s.userns.lease, { pid: s.pid, start: s.startTime });
      removeMachineEtc(s);
    } else if ((how = abandoned(dir))) {
      reclaimAbandoned(stateDir, name, how);
      continue;
    } else {
      // No state yet: another process is between taking the name and writing the state.
      throw exists(`a machine named '${name}' is being started`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  throw new NsboxError({ code: 'EEXIST', step: 'machine.name', path: dir });
}
