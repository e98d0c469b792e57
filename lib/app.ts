// app.ts: the app profile. spawn() starts one process in fresh namespaces and hands back a live
// Container; run() is spawn + feed input + collect output + wait.
import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';
import type { Readable, Writable } from 'node:stream';

import { ContainerCgroup, detectCgroupHost, requireControllers, withParent } from './cgroup';
import { NsboxError, errnoName, invalidValue, notSupported } from './errors';
import { native, type NativeProcess, type SpawnResult } from './native';
import { setupNetwork, type NetworkSetup } from './network';
import { checkEncoding, decodeOutput, resolveAppOptions, type ResolvedAppOptions } from './options';
import { checkRootfs } from './fsops';
import { basePlan, type OpMeta } from './plan';
import { capLast, keepsSysAdmin } from './caps';
import { forkClone, syncSpawn, terminalType, threadpoolSize } from './env';
import { closeQuiet, privileged, procCpuUs, devicePolicyFor, initFd, pipeSocket, staging } from './runtime';
import { collect, collectOutput, LateTty, receivePty, StdioRelay, type CollectedOutput } from './stdio';
import { abortError, isPlainObject, signalNumber, SIGNAL_NAMES } from './util';
import type { AppOptions, ContainerEvents, ExitInfo, RunOptions, RunResult, Stats } from './types';
import { holdIdRange, releaseIdRangeOf, resolveUserns } from './userns';
import { closeHostDevices, devicePolicyFd, hostDevices } from './devices';
import { holdEtcDir, releaseEtcDirOf, sharedEtcDir, writeEtcDir, type EtcContent, type EtcDir } from './etc';
import { Launch } from './launch';
import { acquireImage, acquireImageSync, applyImage, checkImageUserns, type ImageLease } from './images/run';
import { requireSupportedPlatform } from './platform';
import { setTrace, Trace, TRACE, traceOf } from './trace';

/**
 * App containers of this process that are starting off the JS thread or running: while there are
 * none, a run() clones on the JS thread (it saves two thread wake-ups, about 0.1 to 0.3 ms of the
 * round trip); with others in flight it clones on libuv's pool so that their exits are not held up.
 */
let inFlight = 0;

/** run()'s whole output, read by the addon, by container (its stdout and stderr are then null). */
const wholeOutput = new WeakMap<Container, Promise<CollectedOutput>>();

/** @internal Whether any app container of this process is starting or running (see inFlight). */
export function othersInFlight(): boolean {
  return inFlight > 0;
}

/**
 * A running app container. Emits `'exit'` with its ExitInfo once, after its cgroup is gone, and
 * `'oom'` (`{ count }`) each time the OOM killer acts inside it (with a memory limit).
 */
/** @internal Container's ptyFd while a Machine.exec's pty master is still on its way. */
export const PTY_PENDING = -2;

type Listener = (...args: unknown[]) => void;

export class Container extends EventEmitter {
  /** Host pid of the container's first process (PID 1 inside, or the init). */
  readonly pid: number;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;

  #proc: NativeProcess;
  #cgroup: ContainerCgroup | null;
  #start: number;
  #exited = false;
  #timedOut = false;
  #aborted = false;
  #final: Stats | undefined;
  #exit: Promise<ExitInfo>;
  #timer: NodeJS.Timeout | undefined;
  #signal: AbortSignal | undefined;
  #stopOomWatch: (() => void) | null = null;
  #ptyFd = -1;
  /** stdio: 'inherit': the copies between Node's stdio and the container's pipes. */
  #relay: StdioRelay | null;
  /** Machine.exec with a tty whose master has not arrived yet: the last size asked for meanwhile. */
  #ptyPending: [number, number] | null = null;
  /** Machine.exec: settles once the entered process has exec'd the command (or failed to). */
  #starting: Promise<void> | null = null;
  /** Machine.exec: (un)refs what its unfinished start waits with (see Machine.exec). */
  #startRef: ((on: boolean) => void) | null = null;
  /** With network: 'bridge': the container's address, the bridge's (its gateway) and the bridge name. */
  network: { address: string; gateway: string; bridge: string; hostIf: string } | null = null;
  #onAbort = (): void => {
    this.#aborted = true;
    this.kill('SIGKILL');
  };

  /** @internal */
  constructor(
    pid: number,
    proc: NativeProcess,
    cgroup: ContainerCgroup | null,
    stdio: [Writable | null, Readable | null, Readable | null],
    o: Pick<ResolvedAppOptions, 'init' | 'timeout' | 'signal' | 'limits'>,
    start: number,
    ptyFd = -1,
    relay: StdioRelay | null = null,
  ) {
    super();
    inFlight++;
    this.#relay = relay;
    this.pid = pid;
    this.#proc = proc;
    this.#cgroup = cgroup;
    [this.stdin, this.stdout, this.stderr] = stdio;
    this.#start = start;
    this.#ptyFd = ptyFd;
    const tr = TRACE ? traceOf(o) : undefined;
    this.#exit = new Promise<ExitInfo>((resolve, reject) => {
      proc.watch((code, sig, cpuUs, initStatus) => {
        if (tr) tr.step(`exit (${sig === null ? `code ${code}` : `signal ${sig}`})`);
        const done = this.#onExit(code, sig, cpuUs, initStatus, o.init);
        if (tr) done.then(() => tr.step(`exit handled (${cgroup ? 'cgroup removed, ' : ''}'exit' emitted)`), () => {});
        done.then(resolve, reject);
      });
    });
    this.#exit.catch(() => {});
    if (o.timeout !== undefined) {
      this.#timer = setTimeout(() => {
        this.#timedOut = true;
        this.kill('SIGKILL');
      }, o.timeout);
    }
    if (cgroup && o.limits?.memory !== undefined) {
      // 'oom' fires when the kernel's OOM killer acts in this container, not only at exit.
      this.#stopOomWatch = cgroup.watchOom((count) => this.emit('oom', { count }));
    }
    if (o.signal) {
      this.#signal = o.signal;
      // Aborted while the clone ran off the JS thread: kill it now, as the listener would have.
      if (o.signal.aborted) this.#onAbort();
      else o.signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  async #onExit(code: number | null, sig: number | null, cpuUs: number, initStatus: number | null, init: boolean): Promise<ExitInfo> {
    this.#exited = true;
    inFlight--;
    if (this.#timer) clearTimeout(this.#timer);
    this.#signal?.removeEventListener('abort', this.#onAbort);
    // With the init as PID 1, the status of interest is the command's, which the init reported.
    if (init && initStatus !== null) {
      const termsig = initStatus & 0x7f;
      if (termsig === 0) {
        code = (initStatus >> 8) & 0xff;
        sig = null;
      } else {
        code = null;
        sig = termsig;
      }
    }
    this.#stopOomWatch?.();
    let stats: Stats & { oomKills?: number } = { cpuUsageUs: Math.round(cpuUs) };
    let oomKilled = false;
    // Its /etc files go while the cgroup is removed (both wait for the filesystem).
    const etcGone = releaseEtcDirOf(this.pid);
    if (this.#cgroup) {
      // Whatever PID 1 left behind died with its pid namespace before PID 1 could be reaped; if
      // anything is still in the cgroup, remove() kills it (cgroup.kill) before the rmdir succeeds.
      stats = this.#cgroup.readStats(stats.cpuUsageUs);
      oomKilled = (stats.oomKills ?? 0) > 0;
      delete stats.oomKills;
      await this.#cgroup.remove(inFlight > 0);
    }
    // stdio: 'inherit': everything the container wrote is on Node's stdout and stderr before
    // 'exit' and wait(); Node's stdin is no longer read for it.
    if (this.#relay) await this.#relay.finish();
    this.#final = stats;
    releaseIdRangeOf(this.pid);
    await etcGone;
    // Like child_process: stdin is useless now, and output nobody subscribed to is drained so its
    // pipe reaches end-of-file and closes instead of holding an fd forever.
    // With a tty stdin and stdout are one socket: it ends by itself (EIO) once the output is read.
    if (this.stdin && (this.stdin as unknown) !== this.stdout) this.stdin.destroy();
    for (const s of [this.stdout, this.stderr]) if (s && s.readableFlowing === null) s.resume();
    const info: ExitInfo = {
      exitCode: code,
      signal: sig === null ? null : SIGNAL_NAMES.get(sig) ?? `SIG${sig}`,
      timedOut: this.#timedOut,
      oomKilled,
      durationMs: performance.now() - this.#start,
      stats,
    };
    this.emit('exit', info);
    return info;
  }

  /** The container's cgroup directory on the host, or null where the host has no usable cgroup v2. */
  get cgroupPath(): string | null {
    return this.#cgroup ? this.#cgroup.path : null;
  }

  /** With a tty (`tty: true`, or a machine exec with it): set the terminal size the process sees (SIGWINCH). */
  resize(cols: number, rows: number): void {
    if (this.#ptyFd < 0 && this.#ptyFd !== PTY_PENDING) throw new NsboxError({ code: 'ENOTTY', step: 'resize', message: 'the container has no tty (step resize)' });
    if (!Number.isInteger(cols) || !Number.isInteger(rows) || cols < 1 || rows < 1 || cols > 65535 || rows > 65535) {
      throw invalidValue('cols/rows', `${cols}x${rows}`, 'must be whole numbers from 1 to 65535');
    }
    if (this.#exited) return;
    if (this.#ptyFd === PTY_PENDING) {
      this.#ptyPending = [cols, rows];
      return;
    }
    const rc = native().setWinsize(this.#ptyFd, cols, rows);
    if (rc !== 0) throw new NsboxError({ code: errnoName(rc), errno: rc, syscall: 'ioctl', step: 'resize' });
  }

  /** True once aborted through the AbortSignal. */
  get aborted(): boolean {
    return this.#aborted;
  }

  /** Whether the container has exited (its exit may still be being cleaned up). */
  get exited(): boolean {
    return this.#exited;
  }

  /**
   * Sends a signal. SIGKILL (the default) kills every process of the container (cgroup.kill, and PID 1
   * whose death ends its pid namespace). Other signals go to PID 1; without `init: true` a PID 1 that
   * has no handler for them ignores them, as the kernel does for every pid namespace's init.
   */
  kill(signal: string | number = 'SIGKILL'): boolean {
    const n = signalNumber(signal);
    if (this.#exited) return false;
    if (n === osConstants.signals.SIGKILL && this.#cgroup) this.#cgroup.kill();
    const rc = this.#proc.signal(n);
    return rc === 0;
  }

  /**
   * Resolves with the exit information once the container is gone and its cgroup removed. For a
   * Machine.exec whose start failed (the command could not be exec'd, or `startTimeout` passed),
   * rejects with that NsboxError once the process is gone; one killed by its own `timeout` or
   * `signal` before its execve resolves as if killed after it (`timedOut`, `signal: 'SIGKILL'`).
   */
  wait(): Promise<ExitInfo> {
    const s = this.#starting;
    if (!s) return this.#exit;
    return s.then(
      () => this.#exit,
      // Killed by its own timeout or AbortSignal before it reached its execve: that is the
      // timeout's or the abort's outcome (timedOut, or run()'s AbortError), as for an app
      // container, not a failed start (issue #17's soak found exec.died/ESRCH here).
      (e: unknown) => this.#exit.then((info) => (this.#killedBeforeExec(e) ? info : Promise.reject(e)), () => Promise.reject(e)),
    );
  }

  /** The start failed only because this container's timeout or abort killed it first. */
  #killedBeforeExec(e: unknown): boolean {
    return (this.#timedOut || this.#aborted) && e instanceof NsboxError && e.step === 'exec.died';
  }

  /**
   * Resolves once the command runs: at once for app containers; for Machine.exec once the process
   * inside the machine has exec'd it. Rejects with the NsboxError of a failed start.
   */
  get started(): Promise<void> {
    return this.#starting ?? Promise.resolve();
  }

  /** @internal Machine.exec: the start finishes on the event loop (see Machine.exec). */
  _setStarting(p: Promise<void>, ref?: (on: boolean) => void): void {
    this.#starting = p;
    this.#startRef = ref ?? null;
    p.catch(() => {});
  }

  /** @internal Machine.exec with a tty: the master, once it arrived (PTY_PENDING until then). */
  _setPty(fd: number): void {
    this.#ptyFd = fd;
    const size = this.#ptyPending;
    this.#ptyPending = null;
    if (size && fd >= 0 && !this.#exited) native().setWinsize(fd, size[0], size[1]);
  }

  /** Current usage; after exit, the final figures. */
  async stats(): Promise<Stats> {
    if (this.#final) return this.#final;
    if (!this.#cgroup) return { cpuUsageUs: procCpuUs(this.pid) };
    const s = this.#cgroup.readStats(0);
    delete s.oomKills;
    return s;
  }

  /** Stops every process of the container (cgroup.freeze) until thaw(). */
  async freeze(): Promise<void> {
    if (this.#exited) throw new NsboxError({ code: 'ESRCH', step: 'freeze', message: 'the container has exited (step freeze)' });
    if (!this.#cgroup) throw notSupported('freeze', 'freezing needs a cgroup v2 hierarchy nsbox can write to');
    await this.#cgroup.setFrozen(true);
  }

  async thaw(): Promise<void> {
    if (!this.#cgroup) throw notSupported('thaw', 'thawing needs a cgroup v2 hierarchy nsbox can write to');
    if (this.#exited) return;
    await this.#cgroup.setFrozen(false);
  }

  /** `'exit'` (ExitInfo, once) and `'oom'` (`{ count }`) with typed listeners (ContainerEvents); other names as for any EventEmitter. */
  override on<K extends keyof ContainerEvents>(event: K, listener: (...args: ContainerEvents[K]) => void): this;
  override on<E extends string | symbol>(event: Exclude<E, keyof ContainerEvents>, listener: (...args: never[]) => void): this;
  override on(event: string | symbol, listener: (...args: never[]) => void): this {
    return super.on(event, listener as Listener);
  }
  override once<K extends keyof ContainerEvents>(event: K, listener: (...args: ContainerEvents[K]) => void): this;
  override once<E extends string | symbol>(event: Exclude<E, keyof ContainerEvents>, listener: (...args: never[]) => void): this;
  override once(event: string | symbol, listener: (...args: never[]) => void): this {
    return super.once(event, listener as Listener);
  }
  override off<K extends keyof ContainerEvents>(event: K, listener: (...args: ContainerEvents[K]) => void): this;
  override off<E extends string | symbol>(event: Exclude<E, keyof ContainerEvents>, listener: (...args: never[]) => void): this;
  override off(event: string | symbol, listener: (...args: never[]) => void): this {
    return super.off(event, listener as Listener);
  }
  override addListener<K extends keyof ContainerEvents>(event: K, listener: (...args: ContainerEvents[K]) => void): this;
  override addListener<E extends string | symbol>(event: Exclude<E, keyof ContainerEvents>, listener: (...args: never[]) => void): this;
  override addListener(event: string | symbol, listener: (...args: never[]) => void): this {
    return super.addListener(event, listener as Listener);
  }
  override removeListener<K extends keyof ContainerEvents>(event: K, listener: (...args: ContainerEvents[K]) => void): this;
  override removeListener<E extends string | symbol>(event: Exclude<E, keyof ContainerEvents>, listener: (...args: never[]) => void): this;
  override removeListener(event: string | symbol, listener: (...args: never[]) => void): this {
    return super.removeListener(event, listener as Listener);
  }

  /** Keep (the default) or stop keeping the Node event loop alive for this container. */
  ref(): this {
    this.#proc.ref();
    this.#relay?.ref();
    this.#startRef?.(true);
    return this;
  }
  unref(): this {
    this.#proc.unref();
    this.#relay?.unref();
    // A Machine.exec still starting: its start watch and time limit no longer hold the loop either.
    this.#startRef?.(false);
    return this;
  }

  /** `await using c = spawn(...)`: kills the whole container and waits until it is cleaned up. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#exited) this.kill('SIGKILL');
    await this.#exit.catch(() => {});
  }
}

/** A container that has been cloned and set up, and waits for its command (warm pool). */
export interface Pending {
  pid: number;
  process: NativeProcess;
  cgroup: ContainerCgroup | null;
  /** Our ends of stdin/stdout/stderr (pipe mode), as fds: made into streams when used. */
  fds: [number, number, number];
  cmdWrite: number;
  errFd: number;
  meta: OpMeta[];
}

/** Starts the container; `o` is already validated. With `pooled`, returns it waiting for its command. */
function launch(o: ResolvedAppOptions, pooled: false): Container;
function launch(o: ResolvedAppOptions, pooled: true): Pending;
function launch(o: ResolvedAppOptions, pooled: boolean): Container | Pending {
  if (o.signal?.aborted) throw abortError(o.signal);
  if (!o.bridge) return launchWith(o, pooled, null);
  if (pooled) throw notSupported('network', "bridged networking is not available for pooled containers yet (use spawn or run)");
  // The child makes the veth over a socket of the host's network namespace, which needs CAP_NET_ADMIN
  // there: a process in a user namespace of its own has it only in its own namespaces.
  // (Rootless callers are told that bridging needs root by setupNetwork.)
  if (privileged() && resolveUserns(o.userns, o.user, 'userns')) throw notSupported('network', 'bridged networking together with userns is not supported yet');
  // What can fail without touching the host fails first: the bridge is not made for a start that
  // cannot succeed.
  if (o.rootfs !== undefined) checkRootfs(o.rootfs);
  closeHostDevices(hostDevices(o.devices));
  if (o.limits) requireControllers(o.limits, o.cgroupParent ? withParent(detectCgroupHost(), o.cgroupParent) : detectCgroupHost());
  // The address lease, /etc/hosts and /etc/resolv.conf, published ports: all undone on any failure.
  const netw = setupNetwork(o.bridge);
  try {
    const c = launchWith(o, false, netw) as Container;
    c.network = { address: netw.address, gateway: netw.gateway, bridge: netw.bridge, hostIf: netw.hostIf };
    netw.forward(false);
    // 'exit' is emitted before wait() resolves: the lease is free once the container is waited for.
    c.once('exit', () => netw.release());
    return c;
  } catch (e) {
    netw.release();
    throw e;
  }
}

/** An app start between its plan and the clone's result: the shared Launch and what only apps have. */
/**
 * A container's /etc files: the shared directory of their content (etc.ts, sharedEtcDir) unless
 * they are its own (bridged: its address) or it could make its read-only binds writable
 * (CAP_SYS_ADMIN kept: a remount in its own mount namespace, which would reach every container
 * sharing the files); then a directory of its own, removed with it.
 */
function etcFor(o: ResolvedAppOptions, netw: NetworkSetup | null): EtcDir {
  const c: EtcContent = {
    hostname: o.hostname, network: o.network, hosts: o.hosts,
    bridge: netw ? { address: netw.address, gateway: netw.gateway, dns: o.bridge?.dns } : undefined,
  };
  return (!netw && !keepsSysAdmin(o.capabilities) && sharedEtcDir(c)) || writeEtcDir(c);
}

interface Prepared {
  o: ResolvedAppOptions;
  pooled: boolean;
  netw: NetworkSetup | null;
  launch: Launch;
  meta: OpMeta[];
  /** Node's ends of the container's stdin, stdout and stderr (-1: none). */
  ours: [number, number, number];
  /** `tty`: Node's end of the socket the pty master comes over (-1: no tty). */
  ptyRecv: number;
  statusRead: number;
  cmdWrite: number;
  t0: number;
  /** Its generated /etc files (held until it has exited once it started). */
  etc: EtcDir | null;
}

function launchWith(o: ResolvedAppOptions, pooled: boolean, netw: NetworkSetup | null): Container | Pending {
  const p = prepare(o, pooled, netw);
  let res: SpawnResult;
  try {
    res = p.launch.spawn(pooled);
  } catch (e) {
    return p.launch.abandon(e);
  }
  return complete(p, res);
}

/**
 * The option checks, the cgroup, the pipes and the plan: everything before the clone. Throws (with
 * everything it made undone) like the launch would.
 */
export function prepare(o: ResolvedAppOptions, pooled: boolean, netw: NetworkSetup | null, offThread = false, gate?: { cmdFd: number; cgroupName: string }): Prepared {
  const detected = detectCgroupHost();
  const host = o.cgroupParent ? withParent(detected, o.cgroupParent) : detected;
  if (o.limits) requireControllers(o.limits, host);
  const userns = resolveUserns(o.userns, o.user, 'userns');
  const t0 = performance.now();
  // The devices are looked up on the host first: a missing or non-device path makes nothing.
  // Their fds go to the child (the binds' sources) and are closed with its other fds.
  const devices = hostDevices(o.devices);
  // A terminal's type, where the options name none (as Machine.exec has it).
  if (o.tty && o.env.TERM === undefined) o.env.TERM = terminalType();
  let etc: EtcDir | null = null;
  let built: ReturnType<typeof basePlan>;
  // The init binary's sealed memfd runs as PID 1 (init: true) or as the exec trampoline.
  let memfd = -1;
  try {
    etc = o.etcFiles === 'off' ? null : etcFor(o, netw);
    built = basePlan(o, staging(), capLast(), userns !== null, etc?.dir, devices, etc?.shared);
    memfd = initFd();
  } catch (e) {
    // (Until the Launch owns them: out of fds at the memfd, the devices' and the lock's were leaked.)
    closeHostDevices(devices);
    if (etc?.lockFd !== undefined) closeQuiet(etc.lockFd);
    etc?.remove();
    throw e;
  }
  const { plan, meta, candidates } = built;
  const init = o.init ? memfd : -1;
  const tr = TRACE ? traceOf(o) : undefined;
  if (tr) tr.step('plan built');
  const launch = new Launch(plan, { meta, candidates, command: o.command, rootfs: o.rootfs ?? (o.image ? `image ${o.image.ref}` : undefined), cwd: o.cwd, hostname: o.hostname }, userns);
  // (A shared /etc directory's lock too: held until the binds are made.)
  launch.childFds.push(memfd, ...devices.map((d) => d.fd), ...(etc?.lockFd !== undefined ? [etc.lockFd] : []));
  if (etc) launch.undo.push(etc.remove);
  const p: Prepared = { o, pooled, netw, launch, meta, ours: [-1, -1, -1], ptyRecv: -1, statusRead: -1, cmdWrite: -1, t0, etc };
  try {
    // Off the JS thread (spawnAsync), a cgroup without limits is made by the addon's worker.
    const deferred = offThread && !o.limits;
    const cgroup = (launch.cgroup = deferred ? ContainerCgroup.deferred(host) : ContainerCgroup.create(host, o.limits, gate?.cgroupName));
    launch.ctx.cgroup = cgroup?.path;
    if (tr) {
      launch.trace = tr;
      tr.step(!cgroup ? 'cgroup: none' : deferred ? `cgroup ${cgroup.path} (made by the clone's thread)` : `cgroup ${cgroup.path}`);
    }
    // Never Node's own fds for 'inherit' (their inodes would be the container's to chmod and
    // reopen): the container's /dev/null, or pipes relayed to and from Node's stdio (lib/stdio.ts).
    // `tty`: no pipes; the child opens a pty of the container's devpts once its root is in place
    // and sends the master over this socket (native/core/pty.cc).
    if (o.tty) {
      let ptySock: number;
      [ptySock, p.ptyRecv] = launch.socketpair();
      plan.ptySock = ptySock;
      plan.ptyCols = o.tty.columns;
      plan.ptyRows = o.tty.rows;
    } else {
      p.ours = launch.stdio(o.stdio, o.stdinEmpty === true);
    }
    let statusWrite = -1;
    if (init >= 0) [statusWrite, p.statusRead] = launch.pipe(false);
    let cmdRead = gate ? gate.cmdFd : -1; // a gated start's (lib/oci/gated.ts): the caller's
    if (pooled) [cmdRead, p.cmdWrite] = launch.pipe(true);
    // Filled in place: basePlan made the object with every one of these fields (same shape each run).
    const policy = devicePolicyFor(BigInt(plan.capsKeep), userns !== null, !!cgroup, 'devices');
    // With devices of its own, the container's cgroup gets a program that allows them too (its fd
    // is closed with the child's fds once the clone has attached it).
    const devFd = devicePolicyFd(devices, policy);
    if (devFd >= 0) launch.childFds.push(devFd);
    plan.devicePolicy = devFd >= 0 ? devFd : policy;
    plan.cgroupFd = cgroup && !deferred ? cgroup.dirFd : -1;
    plan.cgroupMkdir = cgroup && deferred ? cgroup.path : undefined;
    plan.cgroupBase = cgroup && deferred ? host.base ?? undefined : undefined;
    plan.statusFd = statusWrite;
    plan.statusRead = p.statusRead;
    plan.initFd = init;
    plan.initArgv = init >= 0 ? ['nsbox-init', '--status-fd', '3', '--', '', ...o.command.slice(1)] : [];
    plan.initSlot = 4;
    plan.trampFd = o.init ? -1 : memfd;
    plan.cmdFd = cmdRead;
    plan.pathDirs = pooled || gate ? (o.env.PATH ?? '').split(':').filter((d) => d.startsWith('/')).join(':') : undefined;
    plan.net = netw ? netw.plan : null;
    return p;
  } catch (e) {
    return launch.abandon(e);
  }
}

/** After the clone: the container's handle, or the error of its set-up with nothing left behind. */
function complete(p: Prepared, res: SpawnResult): Container | Pending {
  const { o, netw, launch, ours } = p;
  const cgroup = launch.cgroup;
  let ptyErr: NsboxError | null = null;
  try {
    netw?.closeSocket();
    if (netw && res.step === undefined) netw.adopt(res.pid);
    // Its own host id range (userns: true as root) is free again once it is waited for.
    const u = launch.userns;
    if (u?.lease && u.owner && res.step === undefined) holdIdRange(res.pid, u.lease, u.owner);
    const started = launch.settle(res);
    // Its /etc files are removed once it is waited for (with the Container, pooled or not); shared
    // ones are not its to remove (etc.ts, sharedEtcDir).
    if (p.etc?.shared) launch.undo.length = 0;
    else if (p.etc) {
      holdEtcDir(started.pid, p.etc);
      launch.undo.length = 0;
    }
    // The watcher reads the init's report from its own dup of the status pipe.
    if (p.statusRead >= 0) closeQuiet(p.statusRead);
    // `tty`: the master was sent before the execve, so it is queued by now.
    let master: number | NsboxError = -1;
    if (p.ptyRecv >= 0) {
      master = receivePty(p.ptyRecv);
      launch.parentFds.splice(launch.parentFds.indexOf(p.ptyRecv), 1);
    }
    launch.handOver();
    if (p.pooled) {
      return { pid: started.pid, process: started.process, cgroup, fds: ours, cmdWrite: p.cmdWrite, errFd: started.errFd!, meta: p.meta };
    }
    const piped = o.stdio === 'pipe' && !o.tty;
    const whole = piped && o.collectOutput === true;
    const streams: [Writable | null, Readable | null, Readable | null] = piped
      ? [ours[0] >= 0 ? pipeSocket(ours[0], false) : null, whole ? null : pipeSocket(ours[1], true), whole ? null : pipeSocket(ours[2], true)]
      : [null, null, null];
    const relay = o.stdio === 'inherit' ? new StdioRelay(ours) : null;
    if (master instanceof NsboxError) {
      // Cannot happen short of a kernel's surprise (the child closed its end of the socket before
      // anything of the container ran): the container is killed, and its handle, which nobody
      // gets, removes what it had once it is gone, as after any exit.
      new Container(started.pid, started.process, cgroup, streams, o, p.t0, -1, relay).kill();
      throw (ptyErr = master);
    }
    const tty = master >= 0 ? LateTty.attached(master) : null;
    const c = new Container(started.pid, started.process, cgroup, tty ? [tty, tty, null] : streams, o, p.t0, master, relay);
    if (whole) wholeOutput.set(c, collectOutput(ours[1], ours[2], o.maxOutput));
    return c;
  } catch (e) {
    if (e === ptyErr) throw e; // (the dead container's handle undoes the rest)
    return launch.abandon(e);
  }
}

/**
 * Whether the clone may run off the JS thread (spawnAsync): root in the initial user namespace with
 * no user namespace of the container's own (a child waiting for id maps needs this thread), no bridge
 * (its set-up holds host state on this thread), and the vfork-style clone (x86_64). NSBOX_SYNC_SPAWN=1
 * keeps every clone on the JS thread.
 */
function asyncEligible(o: ResolvedAppOptions): boolean {
  return process.arch === 'x64' && !o.bridge && !syncSpawn() && !forkClone() && privileged() &&
    resolveUserns(o.userns, o.user, 'userns') === null;
}

/**
 * Like start(), but the clone, the child's whole set-up and the wait for its exec run on a thread of
 * libuv's pool: the JS thread only builds the plan and handles the result. Used by run(), whose
 * caller waits for a promise anyway; spawn() stays synchronous (it returns the pid).
 */
function startAsync(o: ResolvedAppOptions): Promise<Container> {
  return launchAsync(o, false, false);
}

/**
 * A launch whose clone runs off the JS thread where it may (asyncEligible), else on it. `always`:
 * even when nothing else is in flight (background work such as a pool's refill, which must never
 * hold up the loop). Pooled launches are not counted in inFlight: a refill does not make a run's
 * own clone go off-thread.
 */
function launchAsync(o: ResolvedAppOptions, pooled: false, always: boolean): Promise<Container>;
function launchAsync(o: ResolvedAppOptions, pooled: true, always: boolean): Promise<Pending>;
function launchAsync(o: ResolvedAppOptions, pooled: boolean, always: boolean): Promise<Container | Pending> {
  if (o.signal?.aborted) return Promise.reject(abortError(o.signal));
  if ((!always && inFlight === 0) || !asyncEligible(o)) {
    try {
      return Promise.resolve(launch(o, pooled as false));
    } catch (e) {
      return Promise.reject(e);
    }
  }
  let p: Prepared;
  try {
    p = prepare(o, pooled, null, true);
  } catch (e) {
    return Promise.reject(e);
  }
  const counted = !pooled;
  if (counted) inFlight++;
  return new Promise<Container | Pending>((resolve, reject) => {
    const fail = (e: unknown): void => {
      if (counted) inFlight--;
      try {
        p.launch.abandon(e);
      } catch (err) {
        reject(err);
      }
    };
    const go = (): void => {
      // Aborted while it waited for a thread: nothing was cloned; undo the plan's cgroup and pipes.
      // (It takes no thread: the pump goes on with the next one.)
      if (o.signal?.aborted) return fail(abortError(o.signal));
      try {
        asyncClones++;
        p.launch.spawnAsync((res: SpawnResult) => {
          asyncClones--;
          pumpClones();
          if (counted) inFlight--;
          try {
            resolve(complete(p, res));
          } catch (e) {
            reject(e);
          }
        });
      } catch (e) {
        asyncClones--;
        fail(e);
        pumpClones();
      }
    };
    cloneWaiters.push(go);
    pumpClones();
  });
}

/** Starts waiting launches while a thread is free for them (in the order they came). */
function pumpClones(): void {
  while (asyncClones < maxAsyncClones() && cloneWaiters.length) cloneWaiters.shift()!();
}

/** Clones running on libuv's pool now, and the launches waiting for one of them to finish. */
let asyncClones = 0;
const cloneWaiters: (() => void)[] = [];
let maxClones = 0;

/**
 * At most this many clones hold a thread of libuv's pool at once: one fewer than its size
 * (UV_THREADPOOL_SIZE, 4 by default), so that the application's own fs, dns and crypto work (and
 * the cgroup removals of exited containers) always find a thread. More clones at once would only
 * share the same CPUs, with more of them runnable ahead of the JS thread: on a 2-CPU host, 16 runs
 * at once showed a maximum event-loop delay of 15 to 23 ms uncapped, 8 to 14 ms with 3.
 */
function maxAsyncClones(): number {
  if (!maxClones) {
    maxClones = Math.max(1, threadpoolSize() - 1);
  }
  return maxClones;
}

function start(o: ResolvedAppOptions): Container {
  return launch(o, false);
}

/** @internal Used by the warm pool. */
export function launchPending(o: ResolvedAppOptions): Pending {
  return launch(o, true);
}

/**
 * @internal The warm pool's launches: `background` (a refill) clones off the JS thread whenever it
 * may; otherwise (a run that found the pool empty) as run() would.
 */
export function launchPendingAsync(o: ResolvedAppOptions, background: boolean): Promise<Pending> {
  return launchAsync(o, true, background);
}

/**
 * With `image`: the config's defaults applied to `o` and the container started by `go`, its layers
 * leased until it is gone (released at once if the start fails: nothing is left).
 */
export function withImageLease<T extends Container | Pending>(o: ResolvedAppOptions, given: AppOptions, lease: ImageLease, go: () => T): T;
export function withImageLease<T extends Container | Pending>(o: ResolvedAppOptions, given: AppOptions, lease: ImageLease, go: () => Promise<T>): Promise<T>;
export function withImageLease<T extends Container | Pending>(o: ResolvedAppOptions, given: AppOptions, lease: ImageLease, go: () => T | Promise<T>): T | Promise<T> {
  const held = (c: T): T => {
    // Lingering: the next start of this image, if it comes soon, pins its layers for free.
    if (c instanceof Container) c.once('exit', () => lease.release(true));
    return c;
  };
  let r: T | Promise<T>;
  try {
    applyImage(o, given, lease);
    checkImageUserns(o.image!, resolveUserns(o.userns, o.user, 'userns') !== null, privileged());
    r = go();
  } catch (e) {
    lease.release();
    throw e;
  }
  if (r instanceof Promise) {
    return r.then(held, (e: unknown) => {
      lease.release();
      throw e;
    });
  }
  return held(r);
}

/** NSBOX_DEBUG: `o`'s start is traced by `tr` (lib/trace.ts). */
function traced(o: ResolvedAppOptions, tr: Trace): void {
  tr.step('options resolved');
  setTrace(o, tr);
}

/** Starts a container and returns its live handle. Bad options throw before anything starts. */
export function spawn(options: AppOptions): Container {
  requireSupportedPlatform('spawn()');
  // Each option read once, from one copy (as resolveAppOptions does): a getter or a Proxy is never
  // asked twice, and nothing but resolveAppOptions' own checks touches what is not an object.
  const given = isPlainObject(options) ? { ...options } : options;
  if (isPlainObject(given) && 'encoding' in given) {
    throw invalidValue('encoding', given.encoding, 'belongs to run(); spawn() hands back streams (use their setEncoding())');
  }
  const tr = TRACE ? new Trace('spawn') : undefined;
  const o = resolveAppOptions(given);
  if (tr) traced(o, tr);
  if (!o.image) return start(o);
  // spawn() is synchronous: the image must be in the store already (pull() it, or use run()).
  if (o.signal?.aborted) throw abortError(o.signal);
  return withImageLease(o, given, acquireImageSync(o.image, 'spawn()'), () => start(o));
}

export interface RunResultWithCounts<Output extends Buffer | string = Buffer> extends RunResult<Output> {
  /** Bytes of stdout beyond `maxOutput` that were counted and dropped. */
  stdoutDropped: number;
  /** Bytes of stderr beyond `maxOutput` that were counted and dropped. */
  stderrDropped: number;
}

/**
 * Starts a container, writes `input` to its stdin, collects its output and waits for it. With
 * `encoding` (e.g. `'utf8'`) stdout and stderr are strings; a bad one throws before anything starts.
 */
export function run(options: RunOptions & { encoding: BufferEncoding }): Promise<RunResultWithCounts<string>>;
export function run(options: RunOptions & { encoding?: 'buffer' }): Promise<RunResultWithCounts>;
export function run(options: RunOptions): Promise<RunResultWithCounts<Buffer | string>>;
export async function run(options: RunOptions): Promise<RunResultWithCounts<Buffer | string>> {
  requireSupportedPlatform('run()');
  // Each option read once, from one copy (as resolveAppOptions does); `encoding` taken out of it.
  let given: AppOptions = options;
  let encoding: BufferEncoding | undefined;
  if (isPlainObject(options)) {
    const { encoding: e, ...rest } = { ...options } as RunOptions;
    if (e !== undefined) encoding = checkEncoding('encoding', e);
    given = rest;
  }
  const tr = TRACE ? new Trace('run') : undefined;
  const o = resolveAppOptions(given);
  if (tr) traced(o, tr);
  if (o.stdio === 'pipe' && !o.tty) {
    if (o.input === undefined) o.stdinEmpty = true;
    o.collectOutput = true;
  }
  const c = o.image ? await withImageLease(o, given, await acquireImage(o.image, o.signal), () => startAsync(o)) : await startAsync(o);
  if (c.stdin) {
    c.stdin.on('error', () => {
      /* EPIPE when the command exits without reading all input: not an error of the run */
    });
    // A terminal's input is typed, not ended (the end of a pty's input is its EOF character).
    if (!o.tty) c.stdin.end(o.input ?? undefined);
    else if (o.input) c.stdin.write(o.input);
  }
  const empty = { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), stdoutDropped: 0, stderrDropped: 0 };
  const output = o.tty ? collect(c.stdout, o.maxOutput).then((r) => ({ ...empty, stdout: r.buf, stdoutDropped: r.dropped })) : wholeOutput.get(c) ?? empty;
  // A pty's slave can outlive the container (sent to a process elsewhere): output ends 500 ms after the exit.
  const [out, info] = await Promise.all([output, c.wait().then((i) => (o.tty && setTimeout(() => c.stdout?.destroy(), 500).unref(), i))]);
  if (c.aborted && o.signal) throw abortError(o.signal);
  return decodeOutput({ ...info, ...out }, encoding);
}
