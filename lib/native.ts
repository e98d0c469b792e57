// native.ts: the one place that loads the compiled addon, and the typed shape of what it exports.
import * as path from 'node:path';
import * as fs from 'node:fs';
import { STEPS, STEP_CALLS, OP_CALLS, OP_CALL_IDS, OP_CALL_SHIFT } from './steps';
import { addonSettings } from './env';
import { requireSupportedPlatform } from './platform';
import { NsboxError } from './errors';
import { constants } from 'node:os';

/** One filesystem operation for the child, run in order before pivot_root (see native/core/plan.h). */
export interface NativeOp {
  kind: number;
  /** WHERE_* bits: which of src/dst are container paths resolved inside the root. */
  where: number;
  mode: number;
  dev: number;
  flags: number;
  src: string | null;
  dst: string;
  fstype: string | null;
  data: string | null;
}

/** The fully resolved start plan that native/glue/plan_reader.cc (BuildPlan) turns into nsbox::Plan. */
export interface NativePlan {
  cloneFlags: number;
  cgroupFd: number;
  cgroupInto: boolean;
  /**
   * Attach the device allow-list (native/core/devices.h) to cgroupFd before the clone: `true` the
   * shared one, or the fd of one with the container's `devices` added (devicePolicyLoad).
   */
  devicePolicy?: boolean | number;
  /** spawnAsync: the cgroup directory its worker thread makes and opens (cgroupFd is then -1). */
  cgroupMkdir?: string;
  /** The nsbox base the cgroupMkdir directory is in, made again if it has just been removed. */
  cgroupBase?: string;
  staging: string;
  /** Test support (NSBOX_FORCE_PATH_WALK=1): resolve container paths by the per-component walk. */
  walkOnly: boolean;
  /** Test support (NSBOX_FORK_CLONE): the fork-style clone (no CLONE_VM). */
  forkClone: boolean;
  ops: NativeOp[];
  /** The id compileOps(ops) gave for these same ops: the addon then skips converting them again. */
  opsCompiled?: number;
  /** Ops of this start alone, run after `ops` (or the compiled list): the generated /etc binds. */
  opsAfter: NativeOp[];
  hostname: string | null;
  netLoUp: boolean;
  /** May join a network namespace made ahead (lo up) instead of CLONE_NEWNET: 'loopback' only. */
  netnsReserve?: boolean;
  /** May join an IPC namespace made ahead instead of CLONE_NEWIPC (app containers without a user namespace). */
  ipcnsReserve?: boolean;
  /** May use the mount namespace template instead of CLONE_NEWNS (native/core/mnt_template.cc, mount_in_template). */
  mntTemplate?: boolean;
  cwd: string | null;
  rlimits: Array<[number, number, number]>;
  newKeyring: boolean;
  capLast: number;
  capsKeep: string;
  setCreds: boolean;
  uid: number;
  gid: number;
  groups: number[];
  noNewPrivs: boolean;
  pdeathsig: boolean;
  stdio: [number, number, number];
  statusFd: number;
  /** Parent's read end of the status pipe; the addon keeps a dup for the exit watcher. */
  statusRead: number;
  candidates: string[];
  argv: string[];
  envp: string[];
  initFd: number;
  initArgv: string[];
  /** Index in initArgv that receives the found command; -1: the init runs without one. */
  initSlot: number;
  /** Without an init: the same memfd, used as an exec trampoline (see init.c exec mode); -1: none. */
  trampFd: number;
  /** A compiled seccomp BPF program (8-byte instructions), installed last before exec; null: none. */
  seccomp: Buffer | null;
  /** Warm pool: the read end of the command pipe, and PATH directories for the lookup. */
  cmdFd?: number;
  /** Colon-separated PATH directories for the pooled lookup. */
  pathDirs?: string;
  /** Entering a running machine: its PID 1's pidfd, the namespaces to join; -1/0 otherwise. */
  enterPidfd: number;
  enterFlags: number;
  /** `/proc/<pid>/root` of the machine's PID 1, or null. */
  enterRoot: string | null;
  /** With enterPidfd: a socket over which the pty master from the machine's devpts is sent. */
  ptySock: number;
  /** The pty's initial size (optional). */
  ptyCols?: number;
  ptyRows?: number;
  /** User namespace whose maps the parent writes: the child waits to read a byte from this pipe. */
  usernsSyncFd?: number;
  /** The pipe's write end (closed in the child). */
  usernsSyncWriteFd?: number;
  /** User namespace mapped by the child itself ("0 <uid> 1\n"); setgroups is then denied. */
  selfUidMap?: string | null;
  selfGidMap?: string | null;
  /** setgroups(2) is refused in the container's user namespace: the child skips it. */
  setgroupsDenied?: boolean;
  /** Bridged network (optional): see NativeNet. */
  net?: NativeNet | null;
  /**
   * Test only (NSBOX_TEST_FAULT, lib/env.ts): the call that (faultStep, faultIndex) names fails with
   * faultErrno instead of being made (native/core/plan.h, fault_at). faultStep -1: none.
   */
  faultStep?: number;
  faultIndex?: number;
  faultErrno?: number;
}

/** The bridged network set-up the child runs over rtnetlink (native/glue/net.cc builds the messages). */
export interface NativeNet {
  /** NETLINK_ROUTE socket of Node's own netns (the veth is made there). */
  sock: number;
  bridgeIndex: number;
  hostIf: string;
  peerIf: string;
  /** The peer's MAC, 12 hex digits. */
  mac: string;
  address: string;
  prefix: number;
  gateway: string;
  rules: NativeRule[];
}

export interface NativeRule {
  family: 4 | 6;
  priority: number;
  dst: string | null;
  dstLen: number;
  proto: number;
  dport: [number, number] | null;
  sport: [number, number] | null;
  prohibit: boolean;
}

export interface NativeProcess {
  watch(cb: (exitCode: number | null, signal: number | null, cpuUs: number, initStatus: number | null) => void): void;
  /** 0, or the errno of pidfd_send_signal (ESRCH once reaped). */
  signal(sig: number): number;
  ref(): void;
  unref(): void;
  /** The pidfd while the process is not reaped, else -1. */
  fd(): number;
  /** True once the process has exited (zombie or reaped). */
  exited(): boolean;
  /** Blocking wait for a killed or failed, unwatched process; closes its pidfd. */
  reap(): void;
}

export type SpawnResult =
  | { usedClone3: boolean; usedMntTemplate?: boolean; pid: number; process: NativeProcess; step?: undefined; errFd?: number; waiting?: boolean; entering?: boolean }
  | { usedClone3: boolean; usedMntTemplate?: boolean; step: number; errno: number; index: number; pid?: undefined };

export interface NativeBinding {
  spawn(plan: NativePlan): SpawnResult;
  /** spawn with the clone on a thread of libuv's pool; plans without a user namespace only. */
  spawnAsync(plan: NativePlan, cb: (res: SpawnResult) => void): void;
  /** Converts a plan's ops once; pass the id as plan.opsCompiled with the same ops. */
  /** detachedFd: the fd of a WHERE_SRC_DETACHED root op (prepareImageRoot), owned by the list from then on. */
  compileOps(ops: NativeOp[], detachedFd?: number): number;
  /** Forgets a compiled list (spawns already given it keep it until they are done). */
  releaseOps(id: number): void;
  /** The contents of dir/name for each name; null where it cannot be opened or read. */
  readFiles(dir: string, names: string[]): (string | null)[];
  pipe(): [number, number];
  /**
   * A pooled container after its command was written, or a child released after its id maps: null
   * once it runs, else its failure; with allowReady, `{ ready: true }` for a pooled container that
   * now waits for its command (errFd stays open then).
   */
  dumpable(): number;
  netnsReserveState(): { fds: number[]; busy: boolean; target: number; failures: number };
  /** The IPC namespace reserve, likewise (busy: the maker is making one of either kind). */
  ipcnsReserveState(): { fds: number[]; busy: boolean; target: number; failures: number };
  mntTemplateState(): { fd: number; tried: boolean; errno: number; overlay: boolean };
  /** Whether an image's root can be made in the mount template (the template made first if need be). */
  mntTemplateOverlay(): boolean;
  /**
   * An image's read-only root made once as a detached mount from its overlay ops (lib/fsops.ts
   * finishRoot): its fd (for compileOps, which then owns it), or the errno and the op that failed.
   */
  prepareImageRoot(ops: NativeOp[]): number | { errno: number; index: number };
  /** pidfd and pid: a process killed before its exec is reported (step exec.died), not started. */
  finishSpawn(errFd: number, allowReady?: boolean, pidfd?: number, pid?: number): { step: number; errno: number; index: number } | { ready: true } | null;
  /**
   * Reads two output pipes to their end on the event loop (owning and closing the fds; -1 = none):
   * at most `max` bytes of each are kept, the rest counted.
   */
  collectOutput(fds: [number, number], max: number, cb: (out: Buffer, err: Buffer, outDropped: number, errDropped: number) => void): void;
  /**
   * finishSpawn without blocking: the error pipe is watched on the event loop and read without
   * blocking, a partial record included (never allowReady). Returns an id for cancelFinishSpawn.
   * pidfd and pid: a process killed before its exec is reported (step exec.died), not started.
   */
  finishSpawnAsync(errFd: number, cb: (rec: { step: number; errno: number; index: number } | null) => void, pidfd?: number, pid?: number): number;
  /** Stops a finishSpawnAsync watch (closes its fd; the callback is never called). False if it was over. */
  cancelFinishSpawn(id: number): boolean;
  /** Whether a finishSpawnAsync watch keeps the event loop alive. False if it was over. */
  refFinishSpawn(id: number, on: boolean): boolean;
  sealedMemfd(path: string): number;
  /** Test support: set or clear FD_CLOEXEC; 0 or an errno. */
  setCloexec(fd: number, on: boolean): number;
  /** Test support: a seccomp filter for this whole process (irreversible); 0 or an errno. */
  testFilterProcess(program: Buffer): number;
  /** A Process for an existing pid, or an errno number. */
  pidfdOpen(pid: number): NativeProcess | number;
  socketpair(): [number, number];
  /** The received fd, or a negative errno (-EAGAIN when nothing is there yet). */
  /** With ptyMaster, an fd that is not a pty master is closed and -EPROTO returned. */
  recvFd(sock: number, ptyMaster?: boolean): number;
  setWinsize(fd: number, cols: number, rows: number): number;
  /** rtnetlink on Node's own netns (lib/network.ts). Numbers are errnos (0: done). */
  netList(): Array<{ name: string; kind: string; index: number; master: number; up: boolean }> | number;
  /** Every IPv4 address of Node's netns. */
  netAddrs(): Array<{ index: number; address: string; prefix: number }> | number;
  netAddBridge(name: string): number;
  netAddAddr(ifindex: number, address: string, prefix: number): number;
  netLinkUp(ifindex: number): number;
  netDelLink(name: string): number;
  /** A NETLINK_ROUTE socket (close-on-exec) or -errno. */
  netSocket(): number;
  /** A listening TCP socket or -errno. */
  tcpListen(address: string, port: number): number;
  /** An fd holding an exclusive flock on path, or -errno. */
  /** An fd holding path's exclusive flock, or -errno (-EAGAIN: held, waitMs 0; -ETIMEDOUT: still held after waitMs). */
  lockFile(path: string, waitMs: number): number;
  /** An fd of the directory path holding a shared flock (waiting waitMs at most; exclusive: an exclusive one, not waiting), or -errno. */
  flockDir(path: string, exclusive: boolean, waitMs?: number): number;
  /** 0 when the cgroup device allow-list can be loaded on this host, else -errno. */
  /** The addon's settings (lib/env.ts addonSettings), once, before anything else. */
  configure(netnsReserve: number, ipcnsReserve: number, mntTemplate: boolean): void;
  devicePolicyAvailable(): number;
  /** [block, major, minor, access] per device: a program fd with them added, or -errno. */
  devicePolicyLoad(devices: number[]): number;
  allowedDevices(): Array<{ major: number; minor: number; name: string }>;
  /** A pidfd (close-on-exec) of pid, or -errno. */
  netPidfd(pid: number): number;
  /** An unconnected non-blocking TCP socket in the network namespace of pidfd's process, or -errno. */
  netnsTcpSocket(pidfd: number, pid: number): number;
  /**
   * What a throwaway child with `flags` (CLONE_NEW*) could do (native/core/probe.h, try_namespaces):
   * stage 0 all of it; 1 clone3, 2 clone (clone3 ENOSYS), 3 mount(MS_PRIVATE) of /, 4 the mount on
   * /proc of procMode (0 none, constants.TRIAL_PROC_FRESH a procfs, TRIAL_PROC_NONE an empty read-only tmpfs), 5 the write of "0" to cgroupProcsFd, 6 its pipe, 7 no report (EPROTO); errno of that stage.
   */
  tryNamespaces(flags: number, procMode: number, cgroupProcsFd: number): { stage: number; errno: number };
  probe(): {
    clone3: boolean;
    pidfd: boolean;
    closeRange: boolean;
    openat2: boolean;
    newMountApi: boolean;
    mountSetattr: boolean;
  };
  constants: Record<string, number>;
  /** native/core/steps.h as lib/steps.ts holds it (checked at load). */
  stepTable: { steps: unknown[]; calls: unknown[]; opCalls: unknown[]; opCallIds: unknown[]; opCallShift: number };
}

/** Step names, by nsbox::Step number, and the call each record index names: lib/steps.ts, generated from native/core/steps.h. */
export { STEPS, STEP_CALLS, OP_CALLS, OP_CALL_IDS, OP_CALL_SHIFT } from './steps';
export const STEP = Object.fromEntries(STEPS.map(([name], i) => [name, i])) as Record<string, number>;

/**
 * The system call (undefined: a check, not a call) and the path a failure record of (step, index)
 * names (steps.h). Paths starting with "@" stand for a value of the start ("@rootfs", "@cwd",
 * "@hostname", "@cgroup", "@cgroup.parent", "@candidate"); undefined: none.
 */
export function stepCall(step: number, index: number): { syscall: string | undefined; path: string | undefined } {
  for (const [s, first, count, syscall, p] of STEP_CALLS) {
    if (s === step && index >= first && index < first + count) return { syscall: syscall ?? undefined, path: p ?? undefined };
  }
  const row = STEPS[step];
  return { syscall: row?.[1] ?? undefined, path: row?.[2] ?? undefined };
}

/**
 * The addon file: NSBOX_ADDON_DIR's nsbox.node (the sanitizer lane's build-asan/Release), else what
 * node-gyp-build picks in the package: build/Release (a local compile) before
 * prebuilds/linux-<arch>/nsbox.glibc.node (scripts/prebuild.js). null: none fits this host; the
 * error it gave is kept for the message.
 */
const located: { file: string | null; dir: string; why: string } = (() => {
  const root = path.join(__dirname, '..');
  if (process.env.NSBOX_ADDON_DIR) {
    const dir = path.resolve(process.env.NSBOX_ADDON_DIR);
    return { file: path.join(dir, 'nsbox.node'), dir, why: '' };
  }
  try {
    const file = (require('node-gyp-build') as { path(dir: string): string }).path(root);
    return { file, dir: path.dirname(file), why: '' };
  } catch (e) {
    return { file: null, dir: path.join(root, 'build/Release'), why: (e as Error).message.split('\n')[0] ?? '' };
  }
})();

/** Where the addon and the init binary (nsbox-init, beside it) are. */
export const buildDir: string = located.dir;

const ELF_MACHINE: Record<string, [number, string]> = { x64: [62, 'x86-64'], arm64: [183, 'aarch64'] };

/**
 * The coded error of an addon that is missing or cannot be loaded here, with the remedy: a compile
 * from source (what it needs), or a package that has this host's prebuild.
 */
function addonError(what: string, f: { errno?: number; syscall?: string; path?: string; cause?: unknown }): NsboxError {
  const target = `linux-${process.arch}`;
  const e = new NsboxError({
    code: 'ERR_NSBOX_ADDON',
    errno: f.errno ?? 0,
    syscall: f.syscall,
    step: 'addon.load',
    path: f.path,
    message:
      `nsbox: no usable native addon for ${target} (Node ${process.versions.node}): ${what}. ` +
      `Run \`npm rebuild nsbox --build-from-source\` in the project that installed nsbox (in an nsbox checkout: ` +
      `\`npm run build\`); it compiles the addon and nsbox-init and needs a C++ compiler, make and python3 ` +
      `(Debian/Ubuntu: apt-get install g++ make python3). Or install an nsbox package that has prebuilds/${target} ` +
      `(those need glibc 2.34 and the libstdc++ of GCC 12 or later).`,
  });
  if (f.cause !== undefined) Object.defineProperty(e, 'cause', { value: f.cause, enumerable: false, writable: true, configurable: true });
  return e;
}

/** Fails with the coded error unless file is an ELF for this process's arch (checked before dlopen/exec). */
function checkElf(file: string, kind: string): void {
  let head: Buffer;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      head = Buffer.alloc(20);
      fs.readSync(fd, head, 0, 20, 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    const se = e as NodeJS.ErrnoException;
    throw addonError(se.code === 'ENOENT' ? `${kind} ${file} is missing` : `${kind} ${file} cannot be read (${se.code})`, { errno: Math.abs(se.errno ?? 0), syscall: se.syscall, path: file, cause: e });
  }
  const want = ELF_MACHINE[process.arch];
  if (head.readUInt32BE(0) !== 0x7f454c46) throw addonError(`${kind} ${file} is not an ELF file`, { errno: constants.errno.ENOEXEC, path: file });
  const machine = head.readUInt16LE(18);
  if (want && machine !== want[0]) {
    const name = Object.values(ELF_MACHINE).find(([m]) => m === machine)?.[1] ?? `ELF machine ${machine}`;
    throw addonError(`${kind} ${file} is built for ${name}, this Node is ${want[1]}`, { errno: constants.errno.ENOEXEC, path: file });
  }
}

/** The addon file to load, after checking it and nsbox-init beside it; or the coded error. */
export function addonFile(): string {
  // Every public entry point checks first (lib/platform.ts); this is the backstop for any other path.
  requireSupportedPlatform('nsbox');
  if (!located.file) throw addonError(`none was built and no prebuild fits (${located.why})`, { errno: constants.errno.ENOENT, path: located.dir });
  checkElf(located.file, 'the addon');
  checkElf(path.join(located.dir, 'nsbox-init'), 'the init');
  return located.file;
}

let loaded: NativeBinding | undefined;

export function native(): NativeBinding {
  if (loaded) return loaded;
  const file = addonFile();
  let b: NativeBinding;
  try {
    b = require(file) as NativeBinding;
  } catch (e) {
    throw addonError(`${file} does not load (${(e as Error).message.split('\n')[0] ?? ''})`, { syscall: 'dlopen', path: file, cause: e });
  }
  if (JSON.stringify(b.stepTable) !== JSON.stringify({ steps: STEPS, calls: STEP_CALLS, opCalls: OP_CALLS, opCallIds: OP_CALL_IDS, opCallShift: OP_CALL_SHIFT })) {
    throw addonError(`${file} and lib/steps.ts disagree on the steps of native/core/steps.h (an addon from other sources; in a checkout, run scripts/gen-steps.js)`, { path: file });
  }
  const s = addonSettings();
  b.configure(s.netnsReserve, s.ipcnsReserve, s.mntTemplate);
  loaded = b;
  return b;
}
