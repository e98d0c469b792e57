// machine.ts: the machine profile. A long-lived container with its own PID 1 (the bundled init or
// the distribution's, systemd included) that outlives the Node process that started it. Its state
// lives in <stateDir>/<name>/state.json, so any later process finds it with Machine.get().
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Container, PTY_PENDING, type RunResultWithCounts } from './app';
import { abortError, signalNumber } from './util';
import { ContainerCgroup, detectCgroupHost, killAndRemoveSync, requireControllers } from './cgroup';
import { NsboxError, errnoName, fromSystemError, invalidType, invalidValue, notSupported, outOfRange } from './errors';
import { native, type NativeProcess } from './native';
import { DEFAULT_MAX_OUTPUT, DEFAULT_PATH, checkAbsolutePath, checkCommand, checkEnv, checkInput, checkSignal, checkTimeout, checkUser, rejectUnknownKeys } from './options';
import { checkRootfs, machineOps } from './fsops';
import { Launch } from './launch';
import { emptyPlan, enterFlags, errorFromRecord, execCandidates, execPlan, machinePlan } from './plan';
import {
  checkName, DEFAULT_EXEC_START_TIMEOUT, defaultStateDir, NAME_RE, resolveMachineOptions, resolveMachineSeccomp, type MachineExecOptions, type MachineOptions,
} from './machine-options';
import { closeQuiet, privileged, procCpuUs, devicePolicyFor, initFd, pipeSocket, staging } from './runtime';
import { collect, LateTty, StdioRelay } from './stdio';
import { terminalType } from './env';
import { leaseLive, nestedPidns, ownerOf, readLease, startTimeOf, withLock } from './lease';
import { releaseLease, setupNetwork, type NetworkSetup } from './network';
import { MACHINE_CAPS, resolveCaps } from './caps';
import { compileSeccomp } from './seccomp';
import type { IdMapEntry, NetworkMode, Stats, StdioMode } from './types';
import { explainUsernsFailure, releaseIdRange, resolveUserns } from './userns';

/** systemd's halt request: SIGRTMIN+3 as glibc numbers it (SIGRTMIN = 34). */
const SIGRTMIN_3 = 37;

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
    try {
      fs.mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw fromSystemError(e, 'machine.state', o.stateDir);
    }
    const dir = path.join(o.stateDir, o.name);
    withLock(o.stateDir, 'machine.name', () => claimName(o.stateDir, o.name), STATE_LOCK);

    let cgroup: ContainerCgroup | null = null;
    // The fds, and the record context, of the start (the plan comes once the rest is known).
    const launch = new Launch(emptyPlan(), { meta: [], candidates: [], command: [], rootfs: o.rootfs, cwd: '/', hostname: o.hostname }, userns);
    let netw: NetworkSetup | null = null;
    // Once cloned: PID 1, and (once made) the handle that watches it.
    let spawned: NativeProcess | null = null;
    let made: Machine | null = null;
    try {
      const scratch = path.join(path.dirname(staging()), '.scratch');
      fs.mkdirSync(scratch, { recursive: true, mode: 0o700 });
      if (o.bridge) {
        checkRootfs(o.rootfs);  // before the bridge is made for a start that cannot succeed
        netw = setupNetwork(o.bridge, o.hostname);
      }
      const L = machineOps(netw ? { ...o, mounts: [...o.mounts, ...netw.mounts] } : o, staging(), scratch, userns !== null);
      cgroup = launch.cgroup = ContainerCgroup.create(host, o.limits, machineCgroupName(o.stateDir, o.name));
      const log = fs.openSync(path.join(dir, 'console.log'), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o600);
      launch.childFds.push(log);
      // The init (builtin) or the exec trampoline: this machine's own copy (see initFd).
      const memfd = initFd();
      launch.childFds.push(memfd);
      const builtin = o.init === 'builtin';
      const systemd = !builtin && isSystemd(o.rootfs, o.init as string[]);
      const halt = o.haltSignal ?? (systemd ? SIGRTMIN_3 : osConstants.signals.SIGTERM);
      const env: Record<string, string> = { container: 'nsbox', ...o.env };
      if (o.env.PATH === undefined) env.PATH = DEFAULT_PATH;
      delete env.HOME;
      const keep = resolveCaps(MACHINE_CAPS, o.capabilities);
      const plan = machinePlan({
        network: o.network, hostname: o.hostname, staging: staging(), ops: L.ops, keep, seccomp: o.seccomp,
        init: o.init, halt, env, memfd, log,
      });
      plan.cgroupFd = cgroup ? cgroup.dirFd : -1;
      plan.devicePolicy = devicePolicyFor(keep, !!userns, !!cgroup, 'devices');
      plan.net = netw ? netw.plan : null;
      launch.plan = plan;
      Object.assign(launch.ctx, { meta: L.meta, candidates: plan.candidates, command: plan.argv });
      const spawnRes = launch.spawn(false);
      netw?.closeSocket();
      const res = launch.settle(spawnRes);
      spawned = res.process;
      // As the leases record it (ownerOf): PID 1 is not reaped, so it is there even if it died.
      const startTime = ownerOf(res.pid).start;
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
      if (idLease) void m.#gone.then(() => releaseIdRange(idLease, { pid: state.pid, start: state.startTime }));
      if (o.waitReady && systemd) {
        // A machine that did not come up is not left behind (the catch below kills it).
        await m.#waitSystemd(o.readyTimeout);
      }
      return m;
    } catch (e) {
      launch.closeFds();
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
      if (userns?.lease && userns.owner) releaseIdRange(userns.lease, userns.owner);
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
      // Another process may have destroyed it and started a new one of the same name meanwhile:
      // what is cleaned up must still be this state's (the cgroup's name is the machine's).
      const same = (): boolean => {
        const now = readState(dir);
        return !!now && now.pid === s.pid && now.startTime === s.startTime;
      };
      if (!same()) return Machine.get(name, opts);
      s.stopped = true;
      if (s.cgroup) await ContainerCgroup.adopt(s.cgroup).remove().catch(() => {});
      if (s.net) releaseLease(s.net.lease, { pid: s.pid, start: s.startTime });
      if (s.userns?.lease) releaseIdRange(s.userns.lease, { pid: s.pid, start: s.startTime });
      if (!same()) return Machine.get(name, opts);
      try {
        writeAtomic(path.join(dir, 'state.json'), JSON.stringify(s, null, 2));
      } catch (e) {
        // Destroyed by another process meanwhile: there is no machine of that name any more.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw fromSystemError(e, 'machine.state', path.join(dir, 'state.json'));
      }
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
    // Starts that never got as far as their state (their Node process died mid-way) are removed,
    // with whatever they started: a machine is listed fully up, or not at all.
    // (A caller who may not write the state directory only lists: the sweep is its owner's. Nor
    // does a list wait for the lock: a start holding it, stopped or slow, is never waited on; the
    // sweep is then left to the next list or start, and what has no state is not listed.)
    if (names.some((n) => !fs.existsSync(path.join(stateDir, n, 'state.json')))) {
      try {
        withLock(stateDir, 'machine.state', () => {
          for (const n of names) {
            const how = abandoned(path.join(stateDir, n));
            if (how) reclaimAbandoned(stateDir, n, how);
          }
        }, STATE_LOCK, 0);
      } catch (e) {
        if (!(e instanceof NsboxError) || !['EACCES', 'EPERM', 'EROFS', 'EAGAIN'].includes(e.code)) throw e;
      }
      names = names.filter((n) => fs.existsSync(path.join(stateDir, n, 'state.json')));
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
    if (tty && env.TERM === undefined) env.TERM = terminalType();
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
    const t0 = performance.now();
    const candidates = execCandidates(argv[0]!, env.PATH ?? '');
    // The process entering the machine: its fds and record context (its plan comes below).
    const launch = new Launch(emptyPlan(), { meta: [], candidates, command: argv, rootfs: this.#state.rootfs, cwd, hostname: this.#state.hostname, enterRoot: `/proc/${this.pid}/root` });
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
      // The exec trampoline: a copy of its own, which nothing in the machine has had (see initFd).
      const memfd = initFd();
      launch.childFds.push(memfd);
      let ptySock = -1;
      let ptyRecv = -1;
      let ours: [number, number, number] = [-1, -1, -1];
      // As for app containers ('inherit': the machine's /dev/null or relayed pipes, never Node's
      // own fds; 'ignore': the machine's /dev/null, opened by the process once it is in there).
      if (tty) [ptySock, ptyRecv] = launch.socketpair();
      else ours = launch.stdio(stdio);
      // Processes entering the machine get the machine's filter (as PID 1 has it).
      const policy = resolveMachineSeccomp(this.#state.seccomp ?? 'default');
      const execFilter = policy ? compileSeccomp(policy, process.arch, BigInt(this.#state.capsKeep)) : null;
      const plan = execPlan({
        enterPidfd: this.#proc!.fd(), enterFlags: enterFlags(this.#state.network, !!this.#state.userns), enterRoot: `/proc/${this.pid}/root`,
        cgroupFd, capsKeep: this.#state.capsKeep, seccomp: execFilter, cwd, user, argv, candidates, env, stdio: launch.plan.stdio, memfd,
        ptySock, columns, rows, setgroupsDenied: this.#state.userns?.setgroups === 'deny',
      });
      // Returns once the entering helper has made the process inside the machine (or failed
      // before): the helper is not visible in the machine and waits on nothing of it. What the
      // process does there up to its execve is waited for on the event loop, below.
      launch.plan = plan;
      const spawnRes = launch.spawn(false);
      this.#cgroup?.closeFd();
      const res = launch.settle(spawnRes);
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
      launch.handOver();
      const c = new Container(res.pid, res.process, null, streams, { init: false, timeout, signal: options.signal, limits: undefined }, t0, tty ? PTY_PENDING : -1, relay);
      started = null;
      const handles = { watch: 0, timer: null as NodeJS.Timeout | null, ref: true };
      c._setStarting(this.#finishExec(c, res, launch.ctx, { startTimeout, ptyRecv, late, streams, handles }), (on) => {
        handles.ref = on;
        if (handles.watch) native().refFinishSpawn(handles.watch, on);
        if (on) handles.timer?.ref();
        else handles.timer?.unref();
      });
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
      return launch.abandon(e, 'exec');
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
    o: {
      startTimeout: number; ptyRecv: number; late: LateTty | null; streams: Array<import('node:stream').Stream | null>;
      handles: { watch: number; timer: NodeJS.Timeout | null; ref: boolean };
    },
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
      o.handles.watch = watch;
      o.handles.timer = timer;
      if (!o.handles.ref) {
        n.refFinishSpawn(watch, false);
        timer.unref();
      }
    });
  }

  /** exec + collect: the same result shape as the app profile's run(). */
  async run(command: string[], options: MachineExecOptions = {}): Promise<RunResultWithCounts> {
    const input = checkInput('input', options.input);
    const maxOutput = options.maxOutput === undefined ? DEFAULT_MAX_OUTPUT : options.maxOutput;
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
    if (this.#state.net) releaseLease(this.#state.net.lease, { pid: this.#state.pid, start: this.#state.startTime });
    if (this.#state.userns?.lease) releaseIdRange(this.#state.userns.lease, { pid: this.#state.pid, start: this.#state.startTime });
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

/** The lock file of a state directory (not a machine name: NAME_RE starts with [a-z0-9]). */
const STATE_LOCK = '.lock';
/** Who is starting the machine, written right after its name is taken (a lease, lib/lease.ts). */
const CLAIM = 'claim.json';

/** Machine names are unique per state directory; the cgroup name carries both. */
function machineCgroupName(stateDir: string, name: string): string {
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
function abandoned(dir: string): 'claimed' | 'empty' | false {
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
function reclaimAbandoned(stateDir: string, name: string, how: 'claimed' | 'empty'): void {
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
  const base = detectCgroupHost().base;
  if (base) killAndRemoveSync(path.join(base, machineCgroupName(stateDir, name)));
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * Takes the name atomically (mkdir) and records who took it (CLAIM); a stale entry (PID 1 gone or its
 * pid reused) or an abandoned start is cleared first. Call with the state directory's lock held.
 */
function claimName(stateDir: string, name: string): void {
  const dir = path.join(stateDir, name);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
      try {
        fs.writeFileSync(path.join(dir, CLAIM), JSON.stringify(ownerOf(process.pid)), { mode: 0o600 });
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
      if (s.userns?.lease) releaseIdRange(s.userns.lease, { pid: s.pid, start: s.startTime });
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


