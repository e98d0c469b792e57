// machine-options.ts: the options of Machine.start and Machine.exec, checked and resolved before
// anything exists (a TypeError or RangeError with a Node-style code otherwise), and the machine
// profile's defaults.
import { checkCapabilities, MACHINE_CAPS } from './caps';
import type { ResolvedLimits } from './cgroup';
import { invalidType, invalidValue, outOfRange } from './errors';
import { checkNetwork, checkPolicyCaps, type ResolvedBridge } from './network-options';
import {
  checkAbsolutePath, checkCommand, checkDevices, checkEnv, checkEtcFiles, checkHostname, checkHosts, checkMounts, checkTimeout, checkUser, rejectUnknownKeys,
  resolveLimits, checkEnum, PROC_MODES, type EtcFilesMode, type ResolvedDeviceOption, type ResolvedMount, checkImageOptions, type ResolvedImage,
} from './options';
import { privileged, runtimeDir } from './runtime';
import { resolveSeccomp, type ResolvedSeccomp } from './seccomp';
import { resolveRlimits, type ResolvedRlimit } from './rlimits';
import type { CapabilitiesOption, DeviceMapping, Limits, Mount, NetworkMode, NetworkOptions, OutputEncoding, ProcMode, Rlimits, StdioMode, User, UsernsOption } from './types';
import { checkUsernsOption } from './userns';
import { signalNumber } from './util';

export const DEFAULT_STATE_DIR = '/run/nsbox';

/** Where machine state lives unless `stateDir` says otherwise: /run/nsbox for root, else per user. */
export function defaultStateDir(): string {
  return privileged() ? DEFAULT_STATE_DIR : runtimeDir('machine.state');
}
/** The console log's size limit for a machine with a command (MachineOptions.consoleLimit). */
export const DEFAULT_CONSOLE_LIMIT = 16 * 1024 * 1024;
export const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

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

export interface MachineOptions {
  /** `[a-z0-9][a-z0-9_.-]{0,62}` */
  name: string;
  /** Directory with the machine's root filesystem (or `image`). */
  rootfs?: string;
  /**
   * An image instead of `rootfs` (pulled when missing, per `pull`): the root is an overlay of its
   * layers, with the writes in <stateDir>/<name>/root/upper until destroy() (ephemeral: a tmpfs of
   * `rootSize`, default 256M). Its Env is PID 1's environment under `env`.
   */
  image?: string;
  pull?: 'missing' | 'always' | 'never';
  storeDir?: string;
  insecureRegistries?: string[];
  rootSize?: number | string;
  /** `'builtin'` (the bundled init) or an argv such as `['/sbin/init']`. Default `'builtin'`. */
  init?: 'builtin' | string[];
  /**
   * With the builtin init: the one command it runs (found in `env.PATH` as for app containers), as
   * root in `/` unless `user` and `cwd` say otherwise, with the console (`<stateDir>/<name>/console.log`) as its stdout and stderr. The
   * machine stops when the command exits; its exit status is then in `MachineInfo.exit`. The halt
   * signal (stop()) is forwarded to the command. This is what `nsbox run -d` starts.
   */
  command?: string[];
  /**
   * With `command`: the most bytes the console log may hold (default 16 MiB, at least 4096). The
   * init copies the command's output into it; output that would take it past this size truncates
   * it first, and it starts again with a line saying so.
   */
  consoleLimit?: number;
  /**
   * With `command`: the credentials the command runs with (default root, `0:0`, no supplementary
   * groups). The init stays root in the machine; its child sets the groups, gid and uid before the
   * command's execve, so the command holds no capabilities unless `uid` is 0. Each id must be mapped
   * in the machine's user namespace; supplementary groups need one that allows setgroups(2).
   */
  user?: User;
  /**
   * With `command`: its working directory, an absolute path in the machine's own view (default
   * `/`). The init makes it (and missing parents, as root, mode 0755, as docker does for `-w`)
   * and changes into it as `user`; a directory it cannot make or enter ends the command before its
   * execve with status 125 and a line in the console log.
   */
  cwd?: string;
  /**
   * With `command`: the machine is removed (as `destroy()`: its state directory, console log and
   * cgroup) once its command has ended and a later `Machine.get`, `Machine.list` or `Machine.start`
   * of the same name and state directory sees it stopped; no process waits for the end to do it at
   * once. Until then it is there (stopped). This is `nsbox run -d --rm`. Default `false`.
   */
  autoRemove?: boolean;
  /** Writes go to a throw-away overlay on tmpfs (default `false`: the rootfs itself is written). */
  ephemeral?: boolean;
  /** Default: `name`. */
  hostname?: string;
  /** Environment of PID 1 (plus `container=nsbox`, `PATH`). */
  env?: Record<string, string>;
  mounts?: Mount[];
  /** As for app containers; with a bridge, published ports are forwarded by the starting process. */
  network?: NetworkMode | NetworkOptions;
  /** As for app containers (ProcMode): `'none'` where a fresh procfs cannot be mounted. */
  proc?: ProcMode;
  limits?: Limits;
  /**
   * setrlimit(2) limits of PID 1, and so of everything it starts (as for app containers; the
   * machine profile's default is core 0), and of every exec (under the exec's own `rlimits`).
   */
  rlimits?: Rlimits;
  /** Where machine state lives (default `/run/nsbox` for root; rootless: `$XDG_RUNTIME_DIR/nsbox` or `/tmp/nsbox-<uid>`). */
  stateDir?: string;
  /** Wait until the machine is up: systemd's boot finished (`running` or `degraded`). */
  waitReady?: boolean;
  /** How long `waitReady` may take, in ms (default 120000). */
  readyTimeout?: number;
  /** The signal that asks PID 1 to halt (default: SIGRTMIN+3 for systemd, SIGTERM otherwise). */
  haltSignal?: string | number;
  /** Change the capability set (default: systemd-nspawn's). */
  capabilities?: CapabilitiesOption;
  /**
   * User namespace, as for app containers: always one for a rootless caller (a full subordinate range
   * where newuidmap and /etc/subuid allow it, which a distro rootfs with system users needs), none
   * for root unless `true` or explicit maps are given.
   */
  userns?: UsernsOption;
  /** System call filter for PID 1 and every exec (default: the machine profile, see MACHINE_SECCOMP). */
  seccomp?: 'default' | 'none' | { allow?: string[]; deny?: string[]; defaultErrno?: number };
  /** As for app containers: generated /etc/hosts, /etc/hostname, /etc/resolv.conf (read-only binds). */
  etcFiles?: boolean;
  /** As for app containers: extra /etc/hosts entries `{ name: address }`. */
  hosts?: Record<string, string>;
  /** As for app containers: host devices in the machine's /dev. */
  devices?: Array<string | DeviceMapping>;
}

export interface MachineExecOptions {
  env?: Record<string, string>;
  cwd?: string;
  user?: User;
  /** setrlimit(2) limits of the process, over the machine's `rlimits` (resource by resource). */
  rlimits?: Rlimits;
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

/** machine.run()'s options: exec()'s, plus how the collected output is handed back. */
export interface MachineRunOptions extends MachineExecOptions {
  /** As for run(): stdout and stderr decoded into strings (default: Buffers). */
  encoding?: OutputEncoding;
}

/** exec's start limit unless `startTimeout` says otherwise. */
export const DEFAULT_EXEC_START_TIMEOUT = 10000;

export interface ResolvedMachineOptions {
  name: string;
  rootfs: string | undefined;
  image: ResolvedImage | undefined;
  init: 'builtin' | string[];
  command: string[] | undefined;
  consoleLimit: number;
  /** MachineOptions.user and cwd (with command only). */
  user: { uid: number; gid: number; groups: number[] } | undefined;
  cwd: string | undefined;
  autoRemove: boolean;
  ephemeral: boolean;
  hostname: string;
  env: Record<string, string>;
  mounts: ResolvedMount[];
  network: NetworkMode;
  proc: ProcMode;
  limits: ResolvedLimits | undefined;
  rlimits: ResolvedRlimit[];
  stateDir: string;
  waitReady: boolean;
  readyTimeout: number;
  haltSignal: number | undefined;
  capabilities: { add: string[]; drop: string[] };
  seccomp: ResolvedSeccomp | null;
  userns: UsernsOption | undefined;
  bridge: ResolvedBridge | undefined;
  etcFiles: EtcFilesMode;
  hosts: Array<[string, string]>;
  devices: ResolvedDeviceOption[];
}

const MACHINE_KEYS = [
  'name', 'rootfs', 'init', 'ephemeral', 'hostname', 'env', 'mounts', 'network', 'proc', 'limits', 'rlimits', 'stateDir', 'waitReady',
  'readyTimeout', 'haltSignal', 'capabilities', 'seccomp', 'userns', 'etcFiles', 'hosts', 'devices', 'image', 'pull', 'storeDir', 'insecureRegistries', 'rootSize',
  'command', 'consoleLimit', 'user', 'cwd', 'autoRemove',
] as const;

/** 'default' (or absent) is the machine profile; an object adjusts the machine profile. */
export function resolveMachineSeccomp(v: unknown): ResolvedSeccomp | null {
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

export function checkName(v: unknown): string {
  if (typeof v !== 'string') throw invalidType('name', 'of type string', v);
  if (!NAME_RE.test(v)) throw invalidValue('name', v, 'must match [a-z0-9][a-z0-9_.-]{0,62} (no "/", "..", upper case or empty)');
  if (v === '.' || v === '..' || v.includes('..')) throw invalidValue('name', v, "must not contain '..'");
  return v;
}

export function resolveMachineOptions(input: unknown): ResolvedMachineOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw invalidType('options', 'of type object', input);
  // Each option read once (see resolveAppOptions).
  const opts: Record<string, unknown> = { ...input };
  rejectUnknownKeys(opts, MACHINE_KEYS, '');
  const o = opts as unknown as MachineOptions;
  const name = checkName(o.name);
  const image = checkImageOptions(o as unknown as Record<string, unknown>);
  if (o.rootfs === undefined && !image) throw invalidType('rootfs', 'of type string', undefined);
  const rootfs = image ? undefined : checkAbsolutePath('rootfs', o.rootfs);
  let init: 'builtin' | string[] = 'builtin';
  if (o.init !== undefined && o.init !== 'builtin') {
    if (!Array.isArray(o.init)) throw invalidValue('init', o.init, "must be 'builtin' or an argv array such as ['/sbin/init']");
    init = checkCommand('init', o.init);
    if (!init[0]!.startsWith('/')) throw invalidValue('init[0]', init[0], 'must be an absolute path inside the rootfs');
  }
  const command = o.command === undefined ? undefined : checkCommand('command', o.command);
  if (command && init !== 'builtin') throw invalidValue('command', command, "needs the builtin init (a distribution's init starts its own services)");
  const consoleLimit = o.consoleLimit === undefined ? DEFAULT_CONSOLE_LIMIT : o.consoleLimit;
  if (typeof consoleLimit !== 'number') throw invalidType('consoleLimit', 'of type number', consoleLimit);
  if (!Number.isInteger(consoleLimit) || consoleLimit < 4096 || consoleLimit > 0x7fffffff) throw outOfRange('consoleLimit', 'an integer from 4096 to 2147483647', consoleLimit);
  if (o.consoleLimit !== undefined && !command) throw invalidValue('consoleLimit', consoleLimit, 'needs command (the init copies only its command\'s output)');
  const user = o.user === undefined ? undefined : checkUser('user', o.user);
  if (user && !command) throw invalidValue('user', o.user, "needs command (the init itself runs as root)");
  const cwd = o.cwd === undefined ? undefined : checkAbsolutePath('cwd', o.cwd);
  if (cwd !== undefined && !command) throw invalidValue('cwd', cwd, 'needs command (it is the command\'s working directory)');
  if (o.autoRemove !== undefined && typeof o.autoRemove !== 'boolean') throw invalidType('autoRemove', 'of type boolean', o.autoRemove);
  const autoRemove = o.autoRemove === true;
  if (autoRemove && !command) throw invalidValue('autoRemove', true, 'needs command (a machine without one is removed by destroy())');
  const ephemeral = o.ephemeral === undefined ? false : typeof o.ephemeral === 'boolean' ? o.ephemeral : (() => { throw invalidType('ephemeral', 'of type boolean', o.ephemeral); })();
  if (ephemeral && rootfs !== undefined && /[,:\\]/.test(rootfs)) throw invalidValue('rootfs', rootfs, "must not contain ',', ':' or '\\' for an ephemeral (overlay) machine");
  const { mode: network, bridge } = checkNetwork('network', o.network);
  const env = checkEnv('env', o.env ?? {});
  const mounts = o.mounts === undefined ? [] : checkMounts('mounts', o.mounts);
  const readyTimeout = o.readyTimeout === undefined ? 120000 : checkTimeout('readyTimeout', o.readyTimeout)!;
  if (o.waitReady !== undefined && typeof o.waitReady !== 'boolean') throw invalidType('waitReady', 'of type boolean', o.waitReady);
  return {
    name,
    rootfs,
    image,
    init,
    command,
    consoleLimit,
    user,
    cwd,
    autoRemove,
    ephemeral,
    hostname: o.hostname === undefined ? name.replace(/[_]/g, '-').slice(0, 63) : checkHostname('hostname', o.hostname),
    env,
    mounts,
    network,
    proc: o.proc === undefined ? 'fresh' : checkEnum('proc', o.proc, PROC_MODES),
    limits: resolveLimits(o.limits),
    rlimits: resolveRlimits('rlimits', o.rlimits),
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
    etcFiles: checkEtcFiles('etcFiles', o.etcFiles),
    hosts: checkHosts('hosts', o.hosts),
    devices: checkDevices('devices', o.devices),
  };
}
