// machine.ts: the machine profile. A long-lived container with its own PID 1 (the bundled init or
// the distribution's, systemd included) that outlives the Node process that started it. Its state
// lives in <stateDir>/<name>/state.json, so any later process finds it with Machine.get().
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Duplex } from 'node:stream';

import { abortError, collect, Container, procCpuUs, PTY_PENDING, signalNumber, type RunResultWithCounts } from './app';
import { ContainerCgroup, detectCgroupHost, requireControllers, type ResolvedLimits } from './cgroup';
import { NsboxError, errnoName, fromSystemError, invalidType, invalidValue, notSupported, outOfRange } from './errors';
import { native, type NativePlan, type NativeProcess } from './native';
import {
  checkAbsolutePath, checkCapabilities, checkCommand, checkEnv, checkHostname, checkInput, checkSignal, checkMounts, checkTimeout, checkUser,
  rejectUnknownKeys, resolveLimits, type ResolvedMount,
} from './options';
import { CAP_NUMBERS, OpList, resolveCaps, errorFromRecord, execCandidates, mountProcAndDev, userMountOps, checkRootfs, type OpMeta } from './plan';
import { capLast, closeQuiet, devicePolicyFor, initFd, pipeSocket, runtimeDir, staging } from './runtime';
import { planInherit, StdioRelay } from './stdio';
import { startTimeOf } from './lease';
import { checkNetwork, checkPolicyCaps, releaseLease, setupNetwork, type NetworkSetup, type ResolvedBridge } from './network';
import { compileSeccomp, resolveSeccomp, type ResolvedSeccomp } from './seccomp';
import type { IdMapEntry, NetworkMode, NetworkOptions, Stats, StdioMode, UsernsOption } from './types';
import { checkUsernsOption, explainUsernsFailure, privileged, releaseIdRange, resolveUserns, spawnWithUserns } from './userns';

export const DEFAULT_STATE_DIR = '/run/nsbox';

/** Where machine state lives unless `stateDir` says otherwise: /run/nsbox for root, else per user. */
export function defaultStateDir(): string {
  return privileged() ? DEFAULT_STATE_DIR : runtimeDir('machine.state');
}
const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
/** systemd's halt request: SIGRTMIN+3 as glibc numbers it (SIGRTMIN = 34). */
const SIGRTMIN_3 = 37;

/**
 * Machines run a full init that manages mounts, cgroups and keys, with the capabilities below, so their
 * default filter is lighter than an app container's: Docker's profile with those capabilities (which
 * re-allow mount, setns, unshare, ...), keyctl allowed (systemd uses it), and what no container may do
 * even with those capabilities denied outright, as LXC's privileged profile does: loading kernel
 * modules, kexec, and open_by_handle_at (the "shocker" escape with CAP_DAC_READ_SEARCH).
 */
export const MACHINE_SECCOMP = {
  allow: ['keyctl', 'add_key', 'request_key'],
  deny: ['init_module', 'finit_module', 'delete_module', 'kexec_load', 'kexec_file_load', 'open_by_handle_at'],
};

/** What systemd-nspawn keeps by default; without a user namespace these are the host's. */
export const MACHINE_CAPS = [
  'CAP_AUDIT_CONTROL', 'CAP_AUDIT_WRITE', 'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER',
  'CAP_FSETID', 'CAP_IPC_OWNER', 'CAP_KILL', 'CAP_LEASE', 'CAP_LINUX_IMMUTABLE', 'CAP_MKNOD', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_RAW', 'CAP_SETFCAP', 'CAP_SETGID', 'CAP_SETPCAP', 'CAP_SETUID', 'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT', 'CAP_SYS_CHROOT', 'CAP_SYS_NICE', 'CAP_SYS_PTRACE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TTY_CONFIG',
] as const;

export interface MachineOptions {
  /** `[a-z0-9][a-z0-9_.-]{0,62}` */
  name: string;
  /** Directory with the machine's root filesystem. */
  rootfs: string;
  /** `'builtin'` (the bundled init) or an argv such as `['/sbin/init']`. Default `'builtin'`. */
  init?: 'builtin' | string[];
  /** Writes go to a throw-away overlay on tmpfs (default `false`: the rootfs itself is written). */
  ephemeral?: boolean;
  /** Default: `name`. */
  hostname?: string;
  /** Environment of PID 1 (plus `container=nsbox`, `PATH`). */
  env?: Record<string, string>;
  mounts?: import('./types').Mount[];
  /** As for app containers; with a bridge, published ports are forwarded by the starting process. */
  network?: NetworkMode | NetworkOptions;
  limits?: import('./types').Limits;
  /** Where machine state lives (default `/run/nsbox` for root; rootless: `$XDG_RUNTIME_DIR/nsbox` or `/tmp/nsbox-<uid>`). */
  stateDir?: string;
  /** Wait until the machine is up: systemd's boot finished (`running` or `degraded`). */
  waitReady?: boolean;
  /** How long `waitReady` may take, in ms (default 120000). */
  readyTimeout?: number;
  /** The signal that asks PID 1 to halt (default: SIGRTMIN+3 for systemd, SIGTERM otherwise). */
  haltSignal?: string | number;
  /** Change the capability set (default: systemd-nspawn's). */
  capabilities?: { add?: string[]; drop?: string[] };
  /**
   * User namespace, as for app containers: always one for a rootless caller (a full subordinate range
   * where newuidmap and /etc/subuid allow it, which a distro rootfs with system users needs), none
   * for root unless `true` or explicit maps are given.
   */
  userns?: UsernsOption;
  /** System call filter for PID 1 and every exec (default: the machine profile, see MACHINE_SECCOMP). */
  seccomp?: 'default' | 'none' | { allow?: string[]; deny?: string[]; defaultErrno?: number };
}

export interface MachineExecOptions {
  env?: Record<string, string>;
  cwd?: string;
  user?: { uid: number; gid: number; groups?: number[] };
  /** A pty from the machine's own devpts as stdin/stdout/stderr (resize with `container.resize`). */
  tty?: boolean;
  /** With `tty`: the terminal size the command starts with (default 80x24). */
  columns?: number;
  rows?: number;
  /** As for app containers: `'inherit'` relays Node's stdio through pipes (the command sees no tty; use `tty`). */
  stdio?: StdioMode;
  input?: string | Buffer;
  timeout?: number;
  /**
   * How long the start may take, in ms (default 10000): from the clone until the process inside the
   * machine has exec'd the command. Past it the process is killed and reaped, and `wait()` (and
   * `run()`) rejects with an NsboxError `ETIMEDOUT` (step `exec.start`). Nothing the machine does
   * (stopping or freezing the process, a FIFO, lease or FUSE mount on a path it opens) holds up
   * Node's JS thread meanwhile: `exec()` returns at once and the start finishes on the event loop.
   */
  startTimeout?: number;
  signal?: AbortSignal;
  maxOutput?: number;
}

/** exec's start limit unless `startTimeout` says otherwise. */
export const DEFAULT_EXEC_START_TIMEOUT = 10000;

/**
 * The tty stream of an exec whose pty master arrives only once the process inside the machine has
 * opened it (on the event loop): writes wait for it, reads come from it.
 */
class LateTty extends Duplex {
  #tty: import('node:tty').ReadStream | null = null;
  #pending: Array<[Buffer, (e?: Error | null) => void]> = [];
  #ended = false;

  constructor() {
    // The terminal's end-of-file ends both sides (then 'close', which run() waits for).
    super({ allowHalfOpen: false });
  }

  attach(master: number): void {
    const sock = new (require('node:tty').ReadStream)(master) as import('node:tty').ReadStream;
    (sock as unknown as { writable: boolean }).writable = true;
    this.#tty = sock;
    // When the last holder of the slave side exits, reading the master fails with EIO: that is
    // the terminal's end-of-file, not an error.
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EIO') this.destroy();
      else this.destroy(err);
    });
    sock.on('data', (d: Buffer) => {
      if (!this.push(d)) sock.pause();
    });
    const end = (): void => {
      if (this.#ended) return;
      this.#ended = true;
      this.push(null);
    };
    sock.on('end', end);
    sock.on('close', () => {
      if (!this.destroyed) end();
    });
    for (const [chunk, cb] of this.#pending.splice(0)) sock.write(chunk, cb);
  }

  override _read(): void {
    this.#tty?.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.#tty) this.#tty.write(chunk, cb);
    else this.#pending.push([chunk, cb]);
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    for (const [, pcb] of this.#pending.splice(0)) pcb(err ?? new Error('tty closed before the command started'));
    this.#tty?.destroy();
    cb(err);
  }
}

export type MachineState = 'running' | 'frozen' | 'stopped';

export interface MachineInfo {
  name: string;
  pid: number;
  state: MachineState;
  rootfs: string;
  init: 'builtin' | string[];
  ephemeral: boolean;
  createdAt: string;
  cgroup: string | null;
}

interface StateFile {
  version: 1;
  name: string;
  pid: number;
  startTime: string;
  cgroup: string | null;
  rootfs: string;
  init: 'builtin' | string[];
  ephemeral: boolean;
  hostname: string;
  network: NetworkMode;
  haltSignal: number;
  capsKeep: string;
  /** The machine's seccomp option as given ('none' when off), re-resolved for every exec. */
  seccomp?: 'default' | 'none' | { allow?: string[]; deny?: string[]; defaultErrno?: number };
  createdAt: string;
  stopped?: boolean;
  /** The machine has its own user namespace (exec joins it too), with these maps. */
  userns?: { uidMap: IdMapEntry[]; gidMap: IdMapEntry[]; setgroups?: 'allow' | 'deny'; lease?: string };
  /** network: 'bridge': the address lease (a file owned by PID 1), released when the machine stops. */
  net?: { bridge: string; address: string; gateway: string; hostIf: string; lease: string };
}

interface ResolvedMachineOptions {
  name: string;
  rootfs: string;
  init: 'builtin' | string[];
  ephemeral: boolean;
  hostname: string;
  env: Record<string, string>;
  mounts: ResolvedMount[];
  network: NetworkMode;
  limits: ResolvedLimits | undefined;
  stateDir: string;
  waitReady: boolean;
  readyTimeout: number;
  haltSignal: number | undefined;
  capabilities: { add: string[]; drop: string[] };
  seccomp: ResolvedSeccomp | null;
  userns: UsernsOption | undefined;
  bridge: ResolvedBridge | undefined;
}

const MACHINE_KEYS = [
  'name', 'rootfs', 'init', 'ephemeral', 'hostname', 'env', 'mounts', 'network', 'limits', 'stateDir', 'waitReady',
  'readyTimeout', 'haltSignal', 'capabilities', 'seccomp', 'userns',
] as const;

/** 'default' (or absent) is the machine profile; an object adjusts the machine profile. */
function resolveMachineSeccomp(v: unknown): ResolvedSeccomp | null {
  if (v === undefined || v === 'default') return resolveSeccomp(MACHINE_SECCOMP);
  if (v === 'none') return null;
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const o = v as { allow?: unknown; deny?: unknown; defaultErrno?: unknown };
    const allow = Array.isArray(o.allow) ? o.allow : o.allow === undefined ? [] : o.allow;
    const deny = Array.isArray(o.deny) ? o.deny : o.deny === undefined ? [] : o.deny;
    if (!Array.isArray(allow) || !Array.isArray(deny)) return resolveSeccomp(v);
    return resolveSeccomp({
      ...o,
      allow: [...MACHINE_SECCOMP.allow.filter((x) => !deny.includes(x)), ...allow],
      deny: [...MACHINE_SECCOMP.deny.filter((x) => !allow.includes(x)), ...deny],
    });
  }
  return resolveSeccomp(v);
}

function checkName(v: unknown): string {
  if (typeof v !== 'string') throw invalidType('name', 'of type string', v);
  if (!NAME_RE.test(v)) throw invalidValue('name', v, 'must match [a-z0-9][a-z0-9_.-]{0,62} (no "/", "..", upper case or empty)');
  if (v === '.' || v === '..' || v.includes('..')) throw invalidValue('name', v, "must not contain '..'");
  return v;
}

function resolveMachineOptions(opts: unknown): ResolvedMachineOptions {
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) throw invalidType('options', 'of type object', opts);
  rejectUnknownKeys(opts, MACHINE_KEYS, '');
  const o = opts as MachineOptions;
  const name = checkName(o.name);
  if (o.rootfs === undefined) throw invalidType('rootfs', 'of type string', undefined);
  const rootfs = checkAbsolutePath('rootfs', o.rootfs);
  let init: 'builtin' | string[] = 'builtin';
  if (o.init !== undefined && o.init !== 'builtin') {
    if (!Array.isArray(o.init)) throw invalidValue('init', o.init, "must be 'builtin' or an argv array such as ['/sbin/init']");
    init = checkCommand('init', o.init);
    if (!init[0]!.startsWith('/')) throw invalidValue('init[0]', init[0], 'must be an absolute path inside the rootfs');
  }
  const ephemeral = o.ephemeral === undefined ? false : typeof o.ephemeral === 'boolean' ? o.ephemeral : (() => { throw invalidType('ephemeral', 'of type boolean', o.ephemeral); })();
  if (ephemeral && /[,:\\]/.test(rootfs)) throw invalidValue('rootfs', rootfs, "must not contain ',', ':' or '\\' for an ephemeral (overlay) machine");
  const { mode: network, bridge } = checkNetwork('network', o.network);
  const env = checkEnv('env', o.env ?? {});
  const mounts = o.mounts === undefined ? [] : checkMounts('mounts', o.mounts);
  const readyTimeout = o.readyTimeout === undefined ? 120000 : checkTimeout('readyTimeout', o.readyTimeout)!;
  if (o.waitReady !== undefined && typeof o.waitReady !== 'boolean') throw invalidType('waitReady', 'of type boolean', o.waitReady);
  return {
    name,
    rootfs,
    init,
    ephemeral,
    hostname: o.hostname === undefined ? name.replace(/[_]/g, '-').slice(0, 63) : checkHostname('hostname', o.hostname),
    env,
    mounts,
    network,
    limits: resolveLimits(o.limits),
    stateDir: o.stateDir === undefined ? defaultStateDir() : checkAbsolutePath('stateDir', o.stateDir),
    waitReady: o.waitReady ?? false,
    readyTimeout,
    haltSignal: o.haltSignal === undefined ? undefined : signalNumber(o.haltSignal, 'haltSignal'),
    capabilities: (() => {
      const caps = checkCapabilities('capabilities', o.capabilities);
      checkPolicyCaps('network', bridge, MACHINE_CAPS, caps);
      return caps;
    })(),
    seccomp: resolveMachineSeccomp(o.seccomp),
    userns: checkUsernsOption('userns', o.userns),
    bridge,
  };
}

/**
 * Replaces the file atomically (a reader in another process sees the old or the new state, never a
 * torn one). No fsync: a machine does not outlive its host, so after a crash of the host the state
 * describes a dead PID 1 either way, and an unreadable or missing state is treated as stale
 * (readState, claimName). The two fsyncs cost about 0.4 ms per write on an ext4 /run.
 */
function writeAtomic(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, data);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

function readState(dir: string): StateFile | undefined {
  try {
    const s = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as StateFile;
    return s.version === 1 ? s : undefined;
  } catch {
    return undefined;
  }
}

/** Is the PID 1 recorded in the state still that same process? Returns a live handle when it is. */
function openLive(s: StateFile): NativeProcess | null {
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

/** Does the rootfs's init look like systemd (for the halt signal and readiness)? */
function isSystemd(rootfs: string, init: string[]): boolean {
  const target = path.join(rootfs, init[0]!);
  try {
    let real = fs.readlinkSync(target);
    if (!real.startsWith('/')) real = path.join(path.dirname(init[0]!), real);
    return /systemd/.test(real);
  } catch {
    return /systemd/.test(init[0]!);
  }
}

/**
 * sysfs directories a machine sees as an empty read-only tmpfs (Docker's masked /sys paths):
 * firmware tables (ACPI, EFI variables, DMI) are the host's; powercap holds the RAPL energy counters,
 * a side channel on what the host's other processes compute (CVE-2020-8694, "Platypus").
 */
export const MASKED_SYS_DIRS = ['/sys/firmware', '/sys/devices/virtual/powercap'];

function machineOps(o: ResolvedMachineOptions, stagingDir: string, scratch: string, userns: boolean): OpList {
  const K = native().constants;
  const L = new OpList(stagingDir);
  const NOSUID = K.MS_NOSUID!, NODEV = K.MS_NODEV!, NOEXEC = K.MS_NOEXEC!, RDONLY = K.MS_RDONLY!;
  checkRootfs(o.rootfs);
  if (o.ephemeral) {
    // The overlay's upper layer lives on a tmpfs that exists only in the machine's mount namespace:
    // it is thrown away with the machine.
    L.hostMount('tmpfs', scratch, 'tmpfs', NOSUID | NODEV, 'mode=0700', 'rootfs.overlay');
    // The overlay's root takes its owner and mode from the upper directory: give it the rootfs's.
    L.hostMkdir(scratch + '/upper', 'rootfs.overlay', fs.statSync(o.rootfs).mode & 0o7777);
    L.hostMkdir(scratch + '/work', 'rootfs.overlay');
    L.mount('overlay', '/', 'overlay', NODEV, `lowerdir=${o.rootfs},upperdir=${scratch}/upper,workdir=${scratch}/work`, 'rootfs.overlay', o.rootfs);
  } else {
    L.rootBind(o.rootfs);
  }
  mountProcAndDev(L, { consoleNull: true, bindDevices: userns });
  // /sys read-only, with the machine's own cgroup (its cgroup namespace root) writable on top so a
  // systemd inside can manage its subtree.
  L.mkdir('/sys', 0o555, 'mount.sys');
  if (userns && o.network === 'host') {
    // sysfs may be mounted in a user namespace only together with a network namespace it owns.
    L.bind('/sys', '/sys', RDONLY | NOSUID | NODEV | NOEXEC, 'mount.sys');
  } else {
    L.mount('sysfs', '/sys', 'sysfs', RDONLY | NOSUID | NODEV | NOEXEC, null, 'mount.sys');
  }
  L.mount('cgroup2', '/sys/fs/cgroup', 'cgroup2', NOSUID | NODEV | NOEXEC, null, 'mount.cgroup');
  // The host's firmware tables and power counters are masked, as in Docker's defaults.
  for (const p of MASKED_SYS_DIRS) {
    if (fs.existsSync(p)) L.mount('tmpfs', p, 'tmpfs', RDONLY | NOSUID | NODEV | NOEXEC, 'size=0', 'sys.mask');
  }
  L.mkdir('/run', 0o755, 'mount.run');
  L.mount('tmpfs', '/run', 'tmpfs', NOSUID | NODEV, 'mode=0755,size=20%', 'mount.run');
  L.mkdir('/run/host', 0o755, 'mount.run');
  L.mkdir('/tmp', 0o1777, 'mount.tmp');
  L.mount('tmpfs', '/tmp', 'tmpfs', NOSUID | NODEV, 'mode=1777', 'mount.tmp');
  userMountOps(L, o.mounts, o.rootfs);
  return L;
}

/** A machine: its own PID 1 in a full set of namespaces, found again by name from any process. */
export class Machine {
  readonly name: string;
  /** Host pid of the machine's PID 1. */
  readonly pid: number;
  readonly stateDir: string;
  #dir: string;
  #state: StateFile;
  #proc: NativeProcess | null;
  #cgroup: ContainerCgroup | null;
  #gone: Promise<void>;
  /** The bridged network set up by this process (its port forwarders), if it started the machine. */
  #net: NetworkSetup | null = null;

  private constructor(dir: string, state: StateFile, proc: NativeProcess | null, stateDir: string) {
    this.name = state.name;
    this.pid = state.pid;
    this.stateDir = stateDir;
    this.#dir = dir;
    this.#state = state;
    this.#proc = proc;
    this.#cgroup = state.cgroup ? ContainerCgroup.adopt(state.cgroup) : null;
    this.#gone = new Promise((resolve) => {
      if (!proc) return resolve();
      // Unref'd: a live machine must not keep the Node process that started (or found) it alive.
      proc.watch(() => resolve());
      proc.unref();
    });
  }

  /** Starts a machine. Resolves once its PID 1 runs (or, with `waitReady`, once it is up). */
  static async start(options: MachineOptions): Promise<Machine> {
    const o = resolveMachineOptions(options);
    const host = detectCgroupHost();
    if (o.limits) requireControllers(o.limits, host);
    const userns = resolveUserns(o.userns, { uid: 0, gid: 0, groups: [] }, 'userns');
    // A persistent rootfs owned by one of the ranges is run with that range on every start (its
    // files stay its own); an ephemeral machine's writes are thrown away, so any free range will do.
    if (userns?.auto && !o.ephemeral) userns.rootfs = o.rootfs;
    // The veth is made over a socket of the host's network namespace (CAP_NET_ADMIN there).
    // (Rootless callers are told that bridging needs root by setupNetwork.)
    if (userns && o.bridge && privileged()) throw notSupported('network', 'bridged networking together with userns is not supported yet');
    const K = native().constants;
    try {
      fs.mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw fromSystemError(e, 'machine.state', o.stateDir);
    }
    const dir = path.join(o.stateDir, o.name);
    claimName(dir, o.name);

    let cgroup: ContainerCgroup | null = null;
    const fds: number[] = [];
    let netw: NetworkSetup | null = null;
    // Once cloned: PID 1, and (once made) the handle that watches it.
    let spawned: NativeProcess | null = null;
    let spawnedPid = -1;
    let made: Machine | null = null;
    try {
      const scratch = path.join(path.dirname(staging()), '.scratch');
      fs.mkdirSync(scratch, { recursive: true, mode: 0o700 });
      if (o.bridge) {
        checkRootfs(o.rootfs);  // before the bridge is made for a start that cannot succeed
        netw = setupNetwork(o.bridge, o.hostname);
      }
      const L = machineOps(netw ? { ...o, mounts: [...o.mounts, ...netw.mounts] } : o, staging(), scratch, userns !== null);
      // Machine names are unique per state directory; the cgroup name carries both.
      const sd = createHash('sha256').update(o.stateDir).digest('hex').slice(0, 8);
      cgroup = ContainerCgroup.create(host, o.limits, `m-${sd}-${o.name}`);
      const log = fs.openSync(path.join(dir, 'console.log'), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o600);
      fds.push(log);
      // The init (builtin) or the exec trampoline: this machine's own copy (see initFd).
      const memfd = initFd();
      fds.push(memfd);
      const builtin = o.init === 'builtin';
      const systemd = !builtin && isSystemd(o.rootfs, o.init as string[]);
      const halt = o.haltSignal ?? (systemd ? SIGRTMIN_3 : osConstants.signals.SIGTERM);
      const env: Record<string, string> = { container: 'nsbox', ...o.env };
      if (o.env.PATH === undefined) env.PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
      delete env.HOME;
      const keep = resolveCaps(MACHINE_CAPS, o.capabilities);
      let flags = K.CLONE_NEWNS! | K.CLONE_NEWPID! | K.CLONE_NEWUTS! | K.CLONE_NEWIPC! | K.CLONE_NEWCGROUP!;
      if (o.network !== 'host') flags += K.CLONE_NEWNET!;
      const command = builtin ? [] : (o.init as string[]);
      const plan: NativePlan = {
        cloneFlags: flags,
        cgroupFd: cgroup ? cgroup.dirFd : -1,
        cgroupInto: true,
        devicePolicy: devicePolicyFor(keep, !!userns, !!cgroup, 'devices'),
        staging: staging(),
        ops: L.ops,
        hostname: o.hostname,
        netLoUp: o.network === 'loopback' || o.network === 'bridge',
        netnsReserve: o.network === 'loopback',
        cwd: '/',
        rlimits: [[K.RLIMIT_CORE!, 0, -1]],
        newKeyring: true,
        capLast: capLast(),
        capsKeep: keep.toString(),
        setCreds: true,
        uid: 0,
        gid: 0,
        groups: [],
        noNewPrivs: false,
        pdeathsig: false,
        // stdin: the machine's own /dev/null (opened by the child in its root, never the host's).
        stdio: [native().constants.STDIO_DEV_NULL!, log, log],
        statusFd: -1,
        statusRead: -1,
        candidates: builtin ? [] : [command[0]!],
        argv: builtin ? ['nsbox-init'] : command,
        envp: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        initFd: builtin ? memfd : -1,
        initArgv: builtin ? ['nsbox-init', '--halt-signal', String(halt), '--grace-ms', '10000'] : [],
        initSlot: -1,
        trampFd: builtin ? -1 : memfd,
        seccomp: o.seccomp ? compileSeccomp(o.seccomp, process.arch, keep) : null,
        enterPidfd: -1,
        enterFlags: 0,
        enterRoot: null,
        ptySock: -1,
        net: netw ? netw.plan : null,
      };
      const res = spawnWithUserns(plan, userns, false, 'userns');
      netw?.closeSocket();
      cgroup?.closeFd();
      for (const fd of fds.splice(0)) closeQuiet(fd);
      if (res.step !== undefined) {
        throw errorFromRecord(res, { meta: L.meta, candidates: plan.candidates, command: plan.argv, rootfs: o.rootfs, cwd: '/', hostname: o.hostname });
      }
      spawned = res.process;
      spawnedPid = res.pid;
      const startTime = startTimeOf(res.pid);
      const state: StateFile = {
        version: 1,
        name: o.name,
        pid: res.pid,
        startTime: startTime ?? '',
        cgroup: cgroup ? cgroup.path : null,
        rootfs: o.rootfs,
        init: o.init,
        ephemeral: o.ephemeral,
        hostname: o.hostname,
        network: o.network,
        haltSignal: halt,
        capsKeep: keep.toString(),
        seccomp: (options as MachineOptions).seccomp ?? 'default',
        createdAt: new Date().toISOString(),
        ...(userns ? { userns: { uidMap: userns.uidMap, gidMap: userns.gidMap, setgroups: userns.how === 'self' ? 'deny' : 'allow', ...(userns.lease ? { lease: userns.lease } : {}) } } : {}),
      };
      if (netw) {
        // The lease belongs to PID 1 from now on: it outlives this process with the machine.
        netw.adopt(res.pid);
        state.net = { bridge: netw.bridge, address: netw.address, gateway: netw.gateway, hostIf: netw.hostIf, lease: netw.lease };
      }
      try {
        writeAtomic(path.join(dir, 'state.json'), JSON.stringify(state, null, 2));
      } catch (e) {
        throw fromSystemError(e, 'machine.state', path.join(dir, 'state.json'));
      }
      const m = (made = new Machine(dir, state, res.process, o.stateDir));
      if (netw) {
        // Published ports are forwarded by this process, for as long as it runs (docs/network.md).
        const started = netw;
        started.forward(true);
        m.#net = started;
        // However the machine ends (stop from any process, a crash), its forwarders and lease go.
        void m.#gone.then(() => started.release());
      }
      // Its host id range likewise (a stop from another process releases it there).
      const idLease = userns?.lease;
      if (idLease) void m.#gone.then(() => releaseIdRange(idLease, m.pid));
      if (o.waitReady && systemd) {
        // A machine that did not come up is not left behind (the catch below kills it).
        await m.#waitSystemd(o.readyTimeout);
      }
      return m;
    } catch (e) {
      for (const fd of fds) closeQuiet(fd);
      if (spawned) {
        // Failed after the clone (the state could not be written, ports not forwarded, not ready):
        // PID 1 and everything it started are killed and reaped before the cgroup and the state go,
        // so nothing runs on without state that a later start, get() or stop() would find.
        const proc = spawned;
        const gone = made ? made.#gone : new Promise<void>((resolve) => proc.watch(() => resolve()));
        proc.ref();
        try {
          cgroup?.kill();
        } catch {
          /* PID 1's own death below ends its pid namespace */
        }
        proc.signal(osConstants.signals.SIGKILL);
        await gone;
        await cgroup?.remove().catch(() => {});
      } else {
        cgroup?.removeNow();
      }
      netw?.release();
      if (userns?.lease && spawnedPid > 0) releaseIdRange(userns.lease, spawnedPid);
      fs.rmSync(dir, { recursive: true, force: true });
      throw userns ? explainUsernsFailure(e) : e;
    }
  }

  /** The machine called `name`, running or stopped, or undefined when there is none. */
  static async get(name: string, opts: { stateDir?: string } = {}): Promise<Machine | undefined> {
    checkName(name);
    const stateDir = opts.stateDir === undefined ? defaultStateDir() : checkAbsolutePath('stateDir', opts.stateDir);
    const dir = path.join(stateDir, name);
    const s = readState(dir);
    if (!s) return undefined;
    const proc = openLive(s);
    if (!proc && !s.stopped) {
      // PID 1 is gone (or its pid now belongs to someone else): the machine stopped without us.
      s.stopped = true;
      if (s.cgroup) await ContainerCgroup.adopt(s.cgroup).remove().catch(() => {});
      if (s.net) releaseLease(s.net.lease, s.pid);
      if (s.userns?.lease) releaseIdRange(s.userns.lease, s.pid);
      writeAtomic(path.join(dir, 'state.json'), JSON.stringify(s, null, 2));
    }
    return new Machine(dir, s, proc, stateDir);
  }

  /** Every machine with state in `stateDir`. */
  static async list(opts: { stateDir?: string } = {}): Promise<MachineInfo[]> {
    const stateDir = opts.stateDir === undefined ? defaultStateDir() : checkAbsolutePath('stateDir', opts.stateDir);
    let names: string[];
    try {
      names = fs.readdirSync(stateDir).filter((n) => NAME_RE.test(n));
    } catch {
      return [];
    }
    const out: MachineInfo[] = [];
    for (const n of names.sort()) {
      const m = await Machine.get(n, { stateDir });
      if (m) out.push(await m.info());
    }
    return out;
  }

  async info(): Promise<MachineInfo> {
    const s = this.#state;
    return { name: s.name, pid: s.pid, state: await this.state(), rootfs: s.rootfs, init: s.init, ephemeral: s.ephemeral, createdAt: s.createdAt, cgroup: s.cgroup };
  }

  async state(): Promise<MachineState> {
    if (!this.#alive()) return 'stopped';
    if (this.#cgroup) {
      try {
        if (/^frozen 1$/m.test(fs.readFileSync(path.join(this.#cgroup.path, 'cgroup.events'), 'utf8'))) return 'frozen';
      } catch {
        /* gone */
      }
    }
    return 'running';
  }

  /** Starts a process inside all of the machine's namespaces and its cgroup (PID > 1 there). */
  exec(command: string[], options: MachineExecOptions = {}): Container {
    const argv = checkCommand('command', command);
    if (typeof options !== 'object' || options === null) throw invalidType('options', 'of type object', options);
    rejectUnknownKeys(options, ['env', 'cwd', 'user', 'tty', 'columns', 'rows', 'stdio', 'input', 'timeout', 'startTimeout', 'signal', 'maxOutput'], '');
    const size = (k: 'columns' | 'rows', def: number): number => {
      const v = options[k];
      if (v === undefined) return def;
      if (typeof v !== 'number') throw invalidType(k, 'of type number', v);
      if (!Number.isInteger(v) || v < 1 || v > 65535) throw outOfRange(k, 'an integer from 1 to 65535', v);
      return v;
    };
    const columns = size('columns', 80);
    const rows = size('rows', 24);
    const tty = options.tty === undefined ? false : options.tty === true ? true : options.tty === false ? false : (() => { throw invalidType('tty', 'of type boolean', options.tty); })();
    const stdio: StdioMode = options.stdio ?? 'pipe';
    if (!['pipe', 'inherit', 'ignore'].includes(stdio)) throw invalidValue('stdio', stdio, "must be one of 'pipe', 'inherit', 'ignore'");
    const env = checkEnv('env', options.env ?? {});
    if (options.env?.HOME === undefined) env.HOME = '/root';
    if (tty && env.TERM === undefined) env.TERM = process.env.TERM ?? 'xterm-256color';
    const cwd = options.cwd === undefined ? '/' : checkAbsolutePath('cwd', options.cwd);
    const user = options.user === undefined ? { uid: 0, gid: 0, groups: [] } : checkUser('user', options.user);
    const timeout = checkTimeout('timeout', options.timeout);
    const startTimeout = options.startTimeout === undefined ? DEFAULT_EXEC_START_TIMEOUT : checkTimeout('startTimeout', options.startTimeout)!;
    checkSignal('signal', options.signal);
    if (options.signal?.aborted) throw abortError(options.signal);

    if (this.#state.userns?.setgroups === 'deny' && user.groups.length) {
      throw notSupported('exec', "supplementary groups need setgroups(2), which this machine's user namespace (mapping only its creator) denies");
    }
    if (!this.#alive()) {
      throw new NsboxError({ code: 'ESRCH', step: 'exec', message: `machine '${this.name}' is not running (step exec)` });
    }
    if (this.#cgroup && /^frozen 1$/m.test(readOr(path.join(this.#cgroup.path, 'cgroup.events')))) {
      throw new NsboxError({ code: 'EBUSY', step: 'exec', message: `machine '${this.name}' is frozen; thaw it first (step exec)` });
    }
    const K = native().constants;
    const n = native();
    let enterFlags = K.CLONE_NEWNS! | K.CLONE_NEWPID! | K.CLONE_NEWUTS! | K.CLONE_NEWIPC! | K.CLONE_NEWCGROUP!;
    if (this.#state.network !== 'host') enterFlags += K.CLONE_NEWNET!;
    if (this.#state.userns) enterFlags += K.CLONE_NEWUSER!;
    const t0 = performance.now();
    const parentFds: number[] = [];
    const childFds: number[] = [];
    let started: { process: NativeProcess; errFd?: number } | null = null;
    try {
      let cgroupFd = -1;
      if (this.#cgroup) {
        // A cgroup that delegates controllers to children may not hold processes itself (systemd
        // does that in its root): use a leaf of ours then.
        const sub = readOr(path.join(this.#cgroup.path, 'cgroup.subtree_control')).trim() ? 'nsbox.exec' : undefined;
        if (sub) fs.mkdirSync(path.join(this.#cgroup.path, sub), { recursive: true });
        cgroupFd = this.#cgroup.openFd(sub);
      }
      const stdioFds: [number, number, number] = [-1, -1, -1];
      const ours: [number, number, number] = [-1, -1, -1];
      // The exec trampoline: a copy of its own, which nothing in the machine has had (see initFd).
      const memfd = initFd();
      childFds.push(memfd);
      let ptySock = -1;
      let ptyRecv = -1;
      if (tty) {
        [ptyRecv, ptySock] = n.socketpair();
        parentFds.push(ptyRecv);
        childFds.push(ptySock);
      } else if (stdio === 'inherit') {
        // As for app containers: the machine's /dev/null or relayed pipes, never Node's own fds.
        const inh = planInherit(childFds, parentFds);
        stdioFds.splice(0, 3, ...inh.stdio);
        ours.splice(0, 3, ...inh.ours);
      } else if (stdio === 'ignore') {
        // The machine's own /dev/null, opened by the process once it is in the machine.
        stdioFds[0] = stdioFds[1] = stdioFds[2] = native().constants.STDIO_DEV_NULL!;
      } else {
        for (let i = 0; i < 3; i++) {
          const [r, w] = n.pipe();
          stdioFds[i] = i === 0 ? r : w;
          ours[i] = i === 0 ? w : r;
          childFds.push(i === 0 ? r : w);
          parentFds.push(i === 0 ? w : r);
        }
      }
      const candidates = execCandidates(argv[0]!, env.PATH ?? '');
      // Processes entering the machine get the machine's filter (as PID 1 has it).
      const policy = resolveMachineSeccomp(this.#state.seccomp ?? 'default');
      const execFilter = policy ? compileSeccomp(policy, process.arch, BigInt(this.#state.capsKeep)) : null;
      const plan: NativePlan = {
        cloneFlags: 0,
        cgroupFd,
        cgroupInto: false,
        staging: '/',
        ops: [],
        hostname: null,
        netLoUp: false,
        cwd,
        rlimits: [[K.RLIMIT_CORE!, 0, -1]],
        newKeyring: true,
        capLast: capLast(),
        capsKeep: this.#state.capsKeep,
        setCreds: true,
        uid: user.uid,
        gid: user.gid,
        groups: user.groups,
        noNewPrivs: false,
        pdeathsig: true,
        stdio: stdioFds,
        statusFd: -1,
        statusRead: -1,
        candidates,
        argv,
        envp: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        initFd: -1,
        initArgv: [],
        initSlot: 0,
        trampFd: memfd,
        seccomp: execFilter,
        enterPidfd: this.#proc!.fd(),
        enterFlags,
        enterRoot: `/proc/${this.pid}/root`,
        ptySock,
        ptyCols: columns,
        ptyRows: rows,
        setgroupsDenied: this.#state.userns?.setgroups === 'deny',
      };
      // Returns once the entering helper has made the process inside the machine (or failed
      // before): the helper is not visible in the machine and waits on nothing of it. What the
      // process does there up to its execve is waited for on the event loop, below.
      const res = n.spawn(plan);
      this.#cgroup?.closeFd();
      for (const fd of childFds.splice(0)) closeQuiet(fd);
      const ctx = { meta: [] as OpMeta[], candidates, command: argv, rootfs: this.#state.rootfs, cwd, hostname: this.#state.hostname };
      if (res.step !== undefined) throw errorFromRecord(res, ctx);
      started = res;
      let streams: [import('node:stream').Writable | null, import('node:stream').Readable | null, import('node:stream').Readable | null] = [null, null, null];
      let late: LateTty | null = null;
      if (tty) {
        late = new LateTty();
        streams = [late, late, null];
      } else if (stdio === 'pipe') {
        streams = [pipeSocket(ours[0], false), pipeSocket(ours[1], true), pipeSocket(ours[2], true)];
      }
      const relay = !tty && stdio === 'inherit' ? new StdioRelay(ours) : null;
      parentFds.length = 0;
      const c = new Container(res.pid, res.process, null, streams, { init: false, timeout, signal: options.signal, limits: undefined }, t0, tty ? PTY_PENDING : -1, relay);
      started = null;
      c._setStarting(this.#finishExec(c, res, ctx, { startTimeout, ptyRecv, late, streams }));
      return c;
    } catch (e) {
      if (started) {
        // Made but not handed to a Container (cannot happen short of running out of fds): kill,
        // reap, and close what its start would have been read from.
        started.process.signal(osConstants.signals.SIGKILL);
        started.process.reap();
        if (started.errFd !== undefined) closeQuiet(started.errFd);
      }
      this.#cgroup?.closeFd();
      for (const fd of childFds) closeQuiet(fd);
      for (const fd of parentFds) closeQuiet(fd);
      throw e instanceof NsboxError || e instanceof TypeError || e instanceof RangeError ? e : fromSystemError(e, 'exec');
    }
  }

  /**
   * The rest of an exec's start, on the event loop: the error pipe says the command was exec'd
   * (end-of-file) or why not (a record). Whatever arrives there comes from inside the machine and
   * may be forged: it can only fail this start. Node never reads a pid from it, and signals and
   * waits only for the process it made, through its pidfd. Past `startTimeout` that process is
   * killed (SIGKILL ends a stopped or frozen process too, and one waiting in an open) and reaped.
   */
  #finishExec(
    c: Container,
    res: { pid: number; process: NativeProcess; errFd?: number },
    ctx: Parameters<typeof errorFromRecord>[1],
    o: { startTimeout: number; ptyRecv: number; late: LateTty | null; streams: Array<import('node:stream').Stream | null> },
  ): Promise<void> {
    const n = native();
    return new Promise<void>((resolve, reject) => {
      let done = false;
      let watch = 0;
      const fail = (err: NsboxError): void => {
        res.process.signal(osConstants.signals.SIGKILL);
        if (o.ptyRecv >= 0) closeQuiet(o.ptyRecv);
        for (const st of o.streams) (st as import('node:stream').Duplex | null)?.destroy();
        reject(err);
      };
      const timer = setTimeout(() => {
        if (done) return;
        done = true;
        if (watch) n.cancelFinishSpawn(watch);
        const state = (readOr(`/proc/${res.pid}/stat`).split(') ')[1] ?? '?').split(' ')[0];
        fail(new NsboxError({
          code: 'ETIMEDOUT',
          step: 'exec.start',
          message: `the process entering machine '${this.name}' did not exec its command within ${o.startTimeout} ms (state ${state}); killed (step exec.start)`,
        }));
      }, o.startTimeout);
      if (res.errFd === undefined) {
        // Not an entering start (cannot happen): nothing to wait for.
        clearTimeout(timer);
        resolve();
        return;
      }
      watch = n.finishSpawnAsync(res.errFd, (rec) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (rec !== null) {
          fail(errorFromRecord(rec, ctx));
          return;
        }
        if (o.late) {
          // Sent before the execve, so it is queued by now.
          const master = n.recvFd(o.ptyRecv, true);
          closeQuiet(o.ptyRecv);
          o.ptyRecv = -1;
          if (master < 0) {
            fail(new NsboxError({ code: errnoName(-master), errno: -master, syscall: 'recvmsg', step: 'exec.pty' }));
            return;
          }
          c._setPty(master);
          o.late.attach(master);
        }
        resolve();
      }, res.process.fd(), res.pid);
    });
  }

  /** exec + collect: the same result shape as the app profile's run(). */
  async run(command: string[], options: MachineExecOptions = {}): Promise<RunResultWithCounts> {
    const input = checkInput('input', options.input);
    const maxOutput = options.maxOutput === undefined ? 16 * 1024 * 1024 : options.maxOutput;
    if (!Number.isInteger(maxOutput) || maxOutput < 0) throw outOfRange('maxOutput', 'an integer >= 0', maxOutput);
    const c = this.exec(command, { ...options, input: undefined, maxOutput: undefined });
    if (c.stdin) {
      c.stdin.on('error', () => {});
      if (!options.tty) c.stdin.end(input ?? undefined);
      else if (input) c.stdin.write(input);
    }
    const [out, err, info] = await Promise.all([collect(c.stdout, maxOutput), collect(c.stderr, maxOutput), c.wait()]);
    if (c.aborted && options.signal) throw abortError(options.signal);
    return { ...info, stdout: out.buf, stderr: err.buf, stdoutDropped: out.dropped, stderrDropped: err.dropped };
  }

  /**
   * Halt signal to PID 1, wait up to `timeout` ms (default 10000), then kill everything. Resolves
   * with `{ killed }`: false when PID 1 shut down by itself within the timeout.
   */
  async stop(opts: { timeout?: number } = {}): Promise<{ killed: boolean }> {
    const timeout = opts.timeout === undefined ? 10000 : checkTimeout('timeout', opts.timeout)!;
    let killed = false;
    if ((await this.state()) !== 'stopped') {
      if ((await this.state()) === 'frozen') await this.thaw();
      // Waiting for PID 1 must keep this process alive (the watcher is unref'd otherwise).
      this.#proc!.ref();
      this.#proc!.signal(this.#state.haltSignal);
      const ac = new AbortController();
      const timer = sleep(timeout, undefined, { signal: ac.signal }).then(() => 'timeout' as const, () => 'gone' as const);
      const r = await Promise.race([this.#gone.then(() => 'gone' as const), timer]);
      ac.abort();
      if (r === 'timeout') {
        killed = true;
        this.kill('SIGKILL');
      }
      await this.#gone;
    }
    await this.#markStopped();
    return { killed };
  }

  /** SIGKILL (default) kills every process of the machine; other signals go to its PID 1. */
  kill(signal: string | number = 'SIGKILL'): void {
    const n = signalNumber(signal);
    if (!this.#proc || this.#proc.fd() < 0) return;
    if (n === osConstants.signals.SIGKILL) this.#cgroup?.kill();
    this.#proc.signal(n);
  }

  async freeze(): Promise<void> {
    if (!this.#cgroup) throw notSupported('freeze', 'freezing needs a cgroup v2 hierarchy nsbox can write to');
    if ((await this.state()) === 'stopped') throw new NsboxError({ code: 'ESRCH', step: 'freeze', message: `machine '${this.name}' is not running (step freeze)` });
    await this.#cgroup.setFrozen(true);
  }

  async thaw(): Promise<void> {
    if (!this.#cgroup) throw notSupported('thaw', 'thawing needs a cgroup v2 hierarchy nsbox can write to');
    if ((await this.state()) === 'stopped') return;
    await this.#cgroup.setFrozen(false);
  }

  async stats(): Promise<Stats> {
    if ((await this.state()) === 'stopped') return { cpuUsageUs: 0 };
    if (!this.#cgroup) return { cpuUsageUs: procCpuUs(this.pid) };
    const s = this.#cgroup.readStats(0);
    delete s.oomKills;
    return s;
  }

  /** Removes a stopped machine's state (and with it, for ephemeral machines, nothing is left). */
  async destroy(): Promise<void> {
    if ((await this.state()) !== 'stopped') {
      throw new NsboxError({ code: 'EBUSY', step: 'destroy', message: `machine '${this.name}' is still running; stop it first (step destroy)` });
    }
    await this.#markStopped();
    fs.rmSync(this.#dir, { recursive: true, force: true });
  }

  /** PID 1 has not exited (a zombie waiting for its parent counts as exited). */
  #alive(): boolean {
    return !!this.#proc && this.#proc.fd() >= 0 && !this.#proc.exited();
  }

  /** With network: 'bridge': the machine's address, its gateway (the bridge's address), the bridge. */
  get network(): { address: string; gateway: string; bridge: string; hostIf: string } | null {
    const n = this.#state.net;
    return n ? { address: n.address, gateway: n.gateway, bridge: n.bridge, hostIf: n.hostIf } : null;
  }

  async #markStopped(): Promise<void> {
    if (this.#cgroup) await this.#cgroup.remove();
    this.#net?.release();
    if (this.#state.net) releaseLease(this.#state.net.lease, this.#state.pid);
    if (this.#state.userns?.lease) releaseIdRange(this.#state.userns.lease, this.#state.pid);
    if (!this.#state.stopped && fs.existsSync(this.#dir)) {
      this.#state.stopped = true;
      writeAtomic(path.join(this.#dir, 'state.json'), JSON.stringify(this.#state, null, 2));
    }
  }

  async #waitSystemd(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    // Right after its exec systemd has no bus to answer on yet: ask again soon, then less often.
    for (let pause = 5; Date.now() < deadline; pause = Math.min(pause * 2, 200)) {
      const r = await this.run(['systemctl', 'is-system-running', '--wait'], { timeout: Math.max(1000, deadline - Date.now()) }).catch((e: unknown) => e);
      if (r instanceof Error) throw r;
      last = (r as RunResultWithCounts).stdout.toString().trim();
      if (last === 'running' || last === 'degraded') return;
      if ((await this.state()) === 'stopped') break;
      await sleep(pause);
    }
    throw new NsboxError({ code: 'ETIMEDOUT', step: 'machine.ready', message: `machine '${this.name}' did not become ready (last state '${last}') (step machine.ready)` });
  }
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Takes the name atomically (mkdir); a stale entry (PID 1 gone or its pid reused) is cleared first. */
function claimName(dir: string, name: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(e, 'machine.state', dir);
    }
    const s = readState(dir);
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
      if (s.net) releaseLease(s.net.lease, s.pid);
      if (s.userns?.lease) releaseIdRange(s.userns.lease, s.pid);
    } else if (Date.now() - fs.statSync(dir).mtimeMs < 10000) {
      // No state yet: another process is between taking the name and writing the state.
      throw exists(`a machine named '${name}' is being started`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  throw new NsboxError({ code: 'EEXIST', step: 'machine.name', path: dir });
}

export { CAP_NUMBERS };
