// types.ts: the public contract (../shared/design/CONTRACT.md). Every exported name here is fixed.
import type { SeccompOption } from './seccomp';

/** A bind mount of a host path at `target` inside the container. */
export interface BindMount {
  type: 'bind';
  /** Absolute host path. */
  source: string;
  /** Absolute path inside the container. */
  target: string;
  /**
   * Mount read-only (default `false`). Every bind is also nosuid and nodev. For a container run
   * as root without a user namespace these hold for mounts under `source` too; with a user
   * namespace (rootless) for the bind itself, the host's own flags staying on what is under it.
   */
  readonly?: boolean;
}

/** A fresh tmpfs at `target` inside the container. */
export interface TmpfsMount {
  type: 'tmpfs';
  /** Absolute path inside the container. */
  target: string;
  /** Size limit in bytes or as `'64M'`-style string (default: the kernel's, half of RAM). */
  size?: number | string;
  /** Permission bits of the tmpfs root (default `0o1777` for `/tmp`, else `0o755`). */
  mode?: number;
}

/** A bind mount of a host path, or a fresh tmpfs, at `target` inside the container. */
export type Mount = BindMount | TmpfsMount;

/** cgroup v2 limits. Sizes are bytes or strings such as `'512K'`, `'256M'`, `'2G'`. */
export interface Limits {
  /**
   * memory.max: past it the kernel reclaims, then OOM-kills (the whole container: memory.oom.group).
   * The kill waits until reclaim stops making progress: a program whose code is file-backed in the
   * rootfs (an interpreter) can spend seconds at the limit faulting its reclaimed code back in first
   * (measured in the VM lane: test/61-memory-hogs.test.js); `timeout` bounds that.
   */
  memory?: number | string;
  /**
   * memory.high: past it the kernel throttles the container and reclaims hard, without killing.
   * Off unless given (as in Docker, runc and crun): a throttle just below `memory` turns a runaway
   * program whose code is charged to the container into an endless stall instead of an OOM kill.
   * At most `memory`.
   */
  memoryHigh?: number | string;
  /**
   * memory.swap.max. With `memory` and without `swap` it is 0: a program over its limit is killed
   * rather than paged out to swap, where it would run on at disk speed (Docker instead allows swap
   * equal to the memory limit).
   */
  swap?: number | string;
  pids?: number;
  /** CPU cores, e.g. `0.5`. */
  cpu?: number;
  cpuWeight?: number;
  ioWeight?: number;
  /** CPU list such as `'0-1'` or `'0,2'`. */
  cpuset?: string;
}

/**
 * A resource of `rlimits` (setrlimit(2)), by docker's `--ulimit` name: `nofile` is RLIMIT_NOFILE,
 * `as` RLIMIT_AS, and so on.
 */
export type RlimitName =
  | 'as' | 'core' | 'cpu' | 'data' | 'fsize' | 'locks' | 'memlock' | 'msgqueue' | 'nice' | 'nofile'
  | 'nproc' | 'rss' | 'rtprio' | 'rttime' | 'sigpending' | 'stack';

/** An amount as setrlimit(2) takes it (bytes, seconds, a count: the resource's unit), or no limit. */
export type RlimitAmount = number | 'unlimited';

/**
 * One resource's limits: a number (or `'unlimited'`, or `Infinity`) for both the soft and the hard
 * limit, or `{ soft, hard }` (soft at most hard).
 */
export type RlimitValue = RlimitAmount | { soft: RlimitAmount; hard: RlimitAmount };

/**
 * Per-process resource limits set in the container before its command starts (and inherited by
 * what it starts), e.g. `{ nofile: 4096, core: { soft: 0, hard: 'unlimited' } }`. Each given
 * resource replaces nsbox's default for it (app containers: nofile 1024:65536, capped by Node's
 * own hard limit, and core 0); the others keep the defaults. A limit above what the starting
 * process may set (a hard limit raised over Node's own without CAP_SYS_RESOURCE in the initial
 * user namespace, as any rootless caller) fails the start: NsboxError at step `rlimits` naming the
 * resource. `nice` and `rtprio` are the kernel's raw values (nice: 20 - the lowest nice allowed).
 */
export type Rlimits = { [K in RlimitName]?: RlimitValue };

export type NetworkMode = 'none' | 'loopback' | 'host' | 'bridge';

/**
 * What the container sees at `/proc`. `'fresh'` (the default): a new procfs of its own pid
 * namespace, with the kernel-wide knobs read-only and the leaky files masked. `'none'`: no procfs,
 * `/proc` an empty read-only directory: for where the kernel refuses a new procfs (a rootless
 * start in a pod or container whose own `/proc` has masked paths; `mount.proc` fails with `EPERM`).
 * It gives up everything that reads /proc: ps, top, `/proc/self/...` (`/dev/fd`, `/dev/stdin`
 * dangle), `/proc/meminfo`, `/proc/cpuinfo`, `/proc/sys`, `/proc/mounts`; see docs/deploy.md.
 */
export type ProcMode = 'fresh' | 'none';
export type StdioMode = 'pipe' | 'inherit' | 'ignore';

export interface User {
  uid: number;
  gid: number;
  groups?: number[];
}

/** Where an image comes from and what it gives by default (docs/images.md, "Running an image"). */
export interface ImageRunOptions {
  /**
   * An image reference (`busybox`, `registry.example:5000/app:1`, `name@sha256:...`) or a stored
   * image's digest, instead of `rootfs`: the root is an overlay of its layers. Its Entrypoint/Cmd,
   * Env, WorkingDir and User are the defaults of `command`, `env`, `cwd` and `user`.
   */
  image?: string;
  /** Replaces the image's Entrypoint (and drops its Cmd, as in docker). */
  entrypoint?: string[];
  /** `'missing'` (default: pull an image the store lacks), `'always'`, or `'never'` (a missing image is an error). */
  pull?: 'missing' | 'always' | 'never';
  /** The image store (default /var/lib/nsbox/images as root, $XDG_DATA_HOME/nsbox/images otherwise). */
  storeDir?: string;
  /** Registries (host[:port]) spoken to over plain HTTP besides localhost and 127.0.0.0/8. */
  insecureRegistries?: string[];
  /**
   * With `image` and `readonly: false`: the size of the throw-away layer that takes the writes, a
   * tmpfs charged to the container's memory (bytes or '512M'; default '256M').
   */
  rootSize?: number | string;
}

export interface AppOptions extends ImageRunOptions {
  /** argv; argv[0] without a `/` is looked up on the container's PATH (optional with `image`). */
  command?: string[];
  /** Directory to use as `/`. Default: the host's system directories read-only on a fresh tmpfs. */
  rootfs?: string;
  /** Mount the rootfs read-only (default `true`). */
  readonly?: boolean;
  /** The whole environment (default `PATH` standard and `HOME=/`); nothing leaks from Node's. */
  env?: Record<string, string>;
  /** Working directory inside (default `/`). */
  cwd?: string;
  /** UTS hostname (default `nsbox`). */
  hostname?: string;
  /** Credentials inside (default `0:0`). */
  user?: User;
  /** Extra mounts (default: a tmpfs at `/tmp`, kept unless a mount targets `/tmp`). */
  mounts?: Mount[];
  /**
   * New netns without (`none`) or with (`loopback`) `lo` up, or the host's (default `loopback`);
   * `'bridge'` or a `NetworkOptions` object: a veth on nsbox's bridge (see docs/network.md).
   */
  network?: NetworkMode | NetworkOptions;
  /** `/proc`: a fresh procfs (`'fresh'`, the default) or none at all (`'none'`); see ProcMode. */
  proc?: ProcMode;
  /** cgroup v2 limits (default none; the container still gets its own cgroup). */
  limits?: Limits;
  /** setrlimit(2) limits of the container's processes (see Rlimits; default nofile 1024:65536, core 0). */
  rlimits?: Rlimits;
  /** Milliseconds until the whole container is killed (`timedOut` is then set). */
  timeout?: number;
  /** Written to stdin, then stdin is closed (`run`). */
  input?: string | Buffer;
  /**
   * For `spawn` (default `'pipe'`). `'inherit'` connects the container to Node's own stdin, stdout
   * and stderr without handing it Node's fds (whose host inodes root inside could chmod, chown or
   * reopen through /proc/self/fd): where Node's fd is /dev/null (or a directory, or closed) the
   * container gets its own /dev/null; anything else (a terminal, a file, a pipe, a socket) reaches
   * it through a pipe that Node relays. So the command never sees a terminal (`isatty()` is false:
   * no line editing, job control, colours by default or terminal size), and Node's stdin is read
   * for it while it runs (what the command did not read by its exit is lost). Output is written
   * out before `wait()` resolves. For a terminal inside use `tty: true`.
   */
  stdio?: StdioMode;
  /**
   * A terminal: a pty of the container's own devpts (the new instance at its `/dev/pts`, never one
   * of the host's) is the command's stdin, stdout and stderr and its controlling terminal
   * (`isatty()` is true, job control and line editing work, `TERM` defaults to Node's or
   * `xterm-256color`). Node gets the master side: `stdin` and `stdout` are the same stream (what
   * is written is typed, what is read is the terminal's output, stderr included), `stderr` is null,
   * and `container.resize(cols, rows)` sets the size the command sees (SIGWINCH). The output ends
   * (EIO on the master) once every process of the container has closed the terminal. With `run()`,
   * `input` is typed (not followed by an end-of-file: write `\x04` for that) and `stdout` is the
   * terminal's output (with `\r\n` line ends); `stderr` is empty. Not with `stdio` other than
   * `'pipe'` (ERR_INCOMPATIBLE_OPTION_PAIR), nor in a pool. Default false.
   */
  tty?: boolean;
  /** With `tty`: the terminal size the command starts with (default 80x24, each 1..65535). */
  columns?: number;
  rows?: number;
  /**
   * Run a tiny init as PID 1 that reaps orphans and forwards signals (default `false`, as in Docker:
   * the command is PID 1). Worth it for programs that leave orphans or start daemons; it costs one
   * more process a run (docs/compat.md has the figures).
   */
  init?: boolean;
  /** Bytes kept per stream in `run`; the rest is counted and dropped (default 16 MiB). */
  maxOutput?: number;
  /** Aborting kills the container. */
  signal?: AbortSignal;
  /**
   * A cgroup (path relative to the v2 mount, e.g. `/my.slice/sandboxes`) under which each container's
   * cgroup is made, for users who manage their own tree. Default: nsbox's own base.
   */
  cgroupParent?: string;
  /**
   * Change the capability set (default: containerd 2.0's nine). Names as `'NET_RAW'` or
   * `'CAP_NET_RAW'`; `'ALL'` in `drop` removes everything.
   */
  capabilities?: CapabilitiesOption;
  /**
   * System call filter: `'default'` (Docker's default profile for a container without
   * CAP_SYS_ADMIN; see docs/security.md), `'none'`, or `{ allow?, deny?, defaultErrno? }` adjusting
   * the default.
   */
  seccomp?: SeccompOption;
  /**
   * User namespace. Default: none for a root caller; for any other caller (rootless) one is always
   * made, mapping the caller to root inside (and, with newuidmap/newgidmap and /etc/subuid ranges, a
   * full 65,536-id range). `true` asks for one as root too (container root is then an unprivileged
   * id on the host); `{ uidMap, gidMap }` gives explicit maps, checked before anything starts.
   */
  userns?: UsernsOption;
  /**
   * /etc/hosts, /etc/hostname and /etc/resolv.conf generated for the container (every network mode)
   * and bound read-only over the image's; see docs/network.md. Never created in a caller's rootfs: a
   * read-only root lacking one gets it in its throw-away overlay; a writable one goes without that
   * file. `true`: a writable rootfs without one of them fails the start (ENOENT naming it, step
   * `etc`). `false`: none are bound (the image's own are seen, or, with the default rootfs, the
   * host's hosts and resolv.conf).
   */
  etcFiles?: boolean;
  /** Extra /etc/hosts entries, `{ name: address }` (IPv4 or IPv6), as `docker run --add-host`. */
  hosts?: Record<string, string>;
  /**
   * Host devices in the container's /dev, as `docker run --device`: a path (`'/dev/loop0'`), or
   * `{ path, containerPath?, permissions? }` (`containerPath` below /dev, default `path`;
   * `permissions` some of `'rwm'`, default all, enforced by the cgroup device allow-list). Only the
   * named nodes are added (made with the host node's type, numbers and mode; bound from the host
   * in a user namespace, where mknod is refused) and allowed. See docs/security.md.
   */
  devices?: Array<string | DeviceMapping>;
}

/** One entry of `devices` (docker's PATH:CONTAINER_PATH:PERMISSIONS). */
export interface DeviceMapping {
  /** The host's device node (a character or block device; symlinks are followed). */
  path: string;
  /** Where it appears in the container: a path below /dev (default `path`). */
  containerPath?: string;
  /** `r` read, `w` write, `m` mknod: some of `'rwm'` (default `'rwm'`). */
  permissions?: string;
}

/** One line of a user namespace id map, as in the OCI runtime spec. */
export interface IdMapEntry {
  containerID: number;
  hostID: number;
  size: number;
}
export type UsernsOption = boolean | { uidMap?: IdMapEntry[]; gidMap?: IdMapEntry[] };

/** One line of a PSI file (`some` or `full`): the share of time stalled, and the total stall time. */
export interface PressureFigures {
  /** Percent of wall time stalled over the last 10, 60 and 300 seconds (the kernel's running averages). */
  avg10: number;
  avg60: number;
  avg300: number;
  /** Microseconds stalled since the cgroup was made, as the kernel counts them. */
  total: number;
}

/**
 * Pressure stall information of the container's cgroup (`memory.pressure`, `cpu.pressure`,
 * `io.pressure`): `some` is time in which at least one of its tasks waited for the resource, `full`
 * time in which all of them did (absent where the kernel has no `full` line, e.g. cpu before 5.13).
 */
export interface Pressure {
  some: PressureFigures;
  full?: PressureFigures;
}

export interface Stats {
  cpuUsageUs: number;
  memoryCurrentBytes?: number;
  memoryPeakBytes?: number;
  pidsCurrent?: number;
  pidsPeak?: number;
  /** How often a fork was refused by the pids limit (pids.events `max`). */
  pidsLimitHits?: number;
  /** Bytes read and written on block devices (io.stat). */
  ioReadBytes?: number;
  ioWriteBytes?: number;
  /**
   * Time the container stalled waiting for memory (reclaim, refaults, a `memoryHigh` throttle):
   * memory.pressure. Absent where the host has no PSI (no file, or EOPNOTSUPP: `psi=0`, or
   * `cgroup.pressure` set to 0).
   */
  memoryPressure?: Pressure;
  /** Time runnable tasks waited for a CPU (cpu.pressure; includes a `cpu` limit's throttling). */
  cpuPressure?: Pressure;
  /** Time tasks waited for block I/O (io.pressure). */
  ioPressure?: Pressure;
}

export interface ExitInfo {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  oomKilled: boolean;
  durationMs: number;
  stats: Stats;
}

/**
 * What run() collected: `stdout`/`stderr` are Buffers, or strings when run (or pool.run, machine.run)
 * was given an `encoding`.
 */
export interface RunResult<Output extends Buffer | string = Buffer> extends ExitInfo {
  stdout: Output;
  stderr: Output;
}

/** The `capabilities` option: names such as `'NET_RAW'` or `'CAP_NET_RAW'`, or `'ALL'`. */
export interface CapabilitiesOption {
  add?: string[];
  drop?: string[];
}

/**
 * run()'s `encoding`: any Buffer encoding (`'utf8'`, `'latin1'`, `'base64'`, ...) makes `stdout`
 * and `stderr` strings decoded with it; `'buffer'` (like leaving it out) keeps Buffers.
 */
export type OutputEncoding = BufferEncoding | 'buffer';

/** run()'s options: spawn()'s, plus how the collected output is handed back. */
export interface RunOptions extends AppOptions {
  /** Decode stdout and stderr into strings (default: Buffers). `maxOutput` still counts bytes. */
  encoding?: OutputEncoding;
}

/** The events of a Container and their arguments. */
export interface ContainerEvents {
  /** Once, after its cgroup is gone: the same ExitInfo wait() resolves with. */
  exit: [info: ExitInfo];
  /** Each time the OOM killer acts inside it (with a memory limit): the count so far. */
  oom: [event: { count: number }];
}

export type CgroupMode = 'unified' | 'hybrid' | 'legacy' | 'none';

/**
 * What a throwaway child process was refused when probe() tried something (never Node's own
 * process): ok, or the kernel's errno name and number, the system call that failed, and the cause
 * this process's surroundings point to (a seccomp filter, a masked /proc, a host setting), if any.
 */
export interface ProbeTrial {
  ok: boolean;
  code: string | null;
  errno: number;
  syscall: string | null;
  path: string | null;
  cause: string | null;
}

export interface HostReport {
  /**
   * Whether nsbox can start containers on this platform at all: Linux on x64 or arm64. Elsewhere
   * (macOS, Windows, ...) the package installs but every start fails with `ENOTSUP` (step
   * `'platform'`), and the rest of this report is empty: no cgroup, every feature false.
   */
  supported: boolean;
  /** Why not, when `supported` is false (null when it is true). */
  reason: string | null;
  /** `process.platform`: `'linux'` where nsbox runs. */
  platform: string;
  kernel: string;
  arch: string;
  /**
   * Effective uid 0 in the initial user namespace with CAP_SYS_ADMIN: containers need no user
   * namespace of their own. Always `!userns.rootless`; uid 0 inside `unshare -r` or a pod's user
   * namespace is not root here.
   */
  root: boolean;
  cgroup: {
    mode: CgroupMode;
    /** Where the v2 hierarchy is mounted, if anywhere. */
    mountPoint: string | null;
    /** The cgroup this process is in, relative to the v2 mount. */
    self: string | null;
    /** Controllers nsbox can enable for its containers. */
    controllers: string[];
    /** Whether nsbox can create cgroups here (writable). */
    writable: boolean;
    /** Whether this process's own cgroup subtree was delegated to it (not root, writable). */
    delegated: boolean;
  };
  features: {
    clone3: boolean;
    pidfd: boolean;
    cloneIntoCgroup: boolean;
    cgroupKill: boolean;
    cgroupFreeze: boolean;
    newMountApi: boolean;
    openat2: boolean;
    closeRange: boolean;
    idmappedMounts: boolean;
    overlayfs: boolean;
    userNamespaces: boolean;
    unprivilegedUserNamespaces: boolean;
    /**
     * Every container's cgroup gets the device allow-list (a BPF_CGROUP_DEVICE program: null, zero,
     * full, random, urandom, tty, ptmx, the ptys, net/tun). It works on the v2 hierarchy of
     * a hybrid host too (it needs no controller); it needs root (CAP_BPF or CAP_SYS_ADMIN).
     */
    devicePolicy: boolean;
  };
  /** What a container started by this process gets for its user namespace. */
  userns: {
    /** This process is not root in the initial user namespace (`!root`): containers get a user namespace. */
    rootless: boolean;
    /** The host setting (or `seccomp`, or the refused call) that forbids this process a user namespace, if one does. */
    blockedBy: string | null;
    /** newuidmap and newgidmap (package uidmap) are installed. */
    idmapHelpers: boolean;
    /** The subordinate ranges /etc/subuid and /etc/subgid grant this user. */
    subuid: Array<{ start: number; count: number }>;
    subgid: Array<{ start: number; count: number }>;
    /** Who writes the default maps: the child itself (one id), the helpers (a range), or nsbox as root. */
    defaultMap: 'self' | 'helper' | 'parent' | 'none';
    /**
     * Root only: the host id ranges `userns: true` leases, one per running container or machine
     * (where they come from, how many, how many are leased now). Null for a rootless caller.
     */
    ranges: { source: string; size: number; total: number; leased: number } | null;
  };
  /**
   * What probe() tried in throwaway child processes: a user namespace (`userns`), a procfs mount in
   * the namespaces a container of this caller gets (`procfs`: a user namespace for a rootless
   * caller), and moving a process into a new cgroup under where containers' cgroups go (`cgroup`,
   * made and removed again); `procNone`: what `proc: 'none'` mounts on /proc instead, in the same
   * namespaces as `procfs`.
   */
  trials: { userns: ProbeTrial; procfs: ProbeTrial; cgroup: ProbeTrial; procNone: ProbeTrial };
  /**
   * The `proc` modes a container of this caller can get here, each tried (`'fresh'`: the procfs
   * trial; `'none'`: an empty read-only tmpfs on /proc in the same namespaces, trials.procNone).
   */
  procModes: ProcMode[];
  /** Human-readable notes about what is missing and what follows from it. */
  notes: string[];
  /** Bridged networking (network: 'bridge'). */
  network?: NetworkReport;
}

/** A published port: TCP connections to `hostAddress:host` are forwarded to the container's `container`. */
export interface PortMapping {
  host: number;
  container: number;
  /** IPv4 address on the host to listen on (default `'127.0.0.1'`; `'0.0.0.0'` for every interface). */
  hostAddress?: string;
}

/** `network: { ... }`: bridged networking (root only for now). See docs/network.md. */
export interface NetworkOptions {
  /** The bridge nsbox creates and owns (default `'nsbox0'`). */
  bridge?: string;
  /** The bridge's own address and the subnet's prefix length (default `'10.88.0.1/16'`). */
  subnet?: string;
  /** A fixed address for the container inside the subnet (default: the next free one). */
  address?: string;
  /** TCP ports published on the host (forwarded by the Node process that started the container). */
  ports?: PortMapping[];
  /**
   * Egress allow-list: `'10.88.0.5'`, `'10.0.0.0/8'`, `'10.88.0.5:80'`, `'10.0.0.0/8:8000-8080'`.
   * Anything else is refused at once (connect() fails with EACCES). Absent: no egress policy.
   */
  allow?: string[];
  /** Nameservers written to the container's /etc/resolv.conf (default: the host's non-loopback ones). */
  dns?: string[];
}

/** What `probe()` reports about bridged networking. */
export interface NetworkReport {
  /** Whether this process may create the bridge and veth pairs (root in the initial user namespace). */
  root: boolean;
  /** The kernel has (or can load) the bridge driver. */
  bridge: boolean;
  /** The kernel has (or can load) the veth driver. */
  veth: boolean;
  /** FIB policy rules with ip_proto and port ranges (Linux 4.17): the egress allow-list. */
  policyRules: boolean;
  /** nf_tables (built in, loaded or loadable): the allow-list's second layer; `allow` needs it. */
  nftables: boolean;
  /** IPv6 is enabled (egress policy then also refuses IPv6). */
  ipv6: boolean;
}
