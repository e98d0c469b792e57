// machine.ts: the machine profile. A long-lived container with its own PID 1 (the bundled init or
// the distribution's, systemd included) that outlives the Node process that started it. Its state
// lives in <stateDir>/<name>/state.json, so any later process finds it with Machine.get().
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Container, PTY_PENDING, type RunResultWithCounts } from './app';
import { abortError, isPlainObject, signalNumber } from './util';
import { ContainerCgroup, detectCgroupHost, requireControllers } from './cgroup';
import { NsboxError, fromSystemError, invalidType, invalidValue, notSupported, outOfRange } from './errors';
import { native, type NativeProcess } from './native';
import { DEFAULT_MAX_OUTPUT, DEFAULT_PATH, checkAbsolutePath, checkCommand, checkEncoding, checkEnv, checkInput, decodeOutput, checkSignal, checkTimeout, checkTty, checkUser, rejectUnknownKeys } from './options';
import { checkRootfs, machineOps } from './fsops';
import { Launch } from './launch';
import { closeHostDevices, devicePolicyFd, hostDevices } from './devices';
import { writeEtcDir, type EtcDir } from './etc';
import { resolveRlimits } from './rlimits';
import { emptyPlan, enterFlags, errorFromRecord, execCandidates, execPlan, machinePlan } from './plan';
import {
  checkName, DEFAULT_EXEC_START_TIMEOUT, defaultStateDir, NAME_RE, resolveMachineOptions, resolveMachineSeccomp, type MachineExecOptions, type MachineOptions, type MachineRunOptions,
} from './machine-options';
import { closeQuiet, privileged, procCpuUs, devicePolicyFor, initFd, pipeSocket, staging } from './runtime';
import { collect, LateTty, receivePty, StdioRelay } from './stdio';
import { terminalType } from './env';
import { ownerOf, withLock } from './lease';
import {
  abandoned, claimName, EXIT_STATUS, machineCgroupName, openLive, readExitStatus, readState, reclaimAbandoned, removeMachineEtc, STATE_LOCK, writeAtomic, writeKilledStatus,
  type StateFile,
} from './machine-state';
import { releaseLease, setupNetwork, type NetworkSetup } from './network';
import { MACHINE_CAPS, resolveCaps } from './caps';
import { compileSeccomp } from './seccomp';
import type { Stats, StdioMode } from './types';
import { explainUsernsFailure, releaseIdRange, resolveUserns } from './userns';
import { acquireImage, checkImageUserns, type ImageLease } from './images/run';
import { imageEnv, runConfig } from './images/config';
import { defaultStoreDir, pinForOwner, Store, unpinOwner } from './images/store';
import { requireSupportedPlatform } from './platform';
import { setTrace, Trace, TRACE, traceOf } from './trace';
import { STEPS } from './steps';

/** systemd's halt request: SIGRTMIN+3 as glibc numbers it (SIGRTMIN = 34). */
const SIGRTMIN_3 = 37;

export type MachineState = 'running' | 'frozen' | 'stopped';

export interface MachineInfo {
  name: string;
  pid: number;
  state: MachineState;
  /** The rootfs directory; for a machine of an image, `image <ref>`. */
  rootfs: string;
  /** The image reference a machine was started from, if any. */
  image?: string;
  init: 'builtin' | string[];
  /** MachineOptions.command, for a machine started with one (`nsbox run -d`). */
  command?: string[];
  /**
   * A machine with a command, once it has ended: its exit code, or the signal that killed it
   * (SIGKILL when the whole machine was killed). Absent while it runs, and when nothing reported it.
   */
  exit?: { exitCode: number | null; signal: string | null };
  /** MachineOptions.autoRemove (`nsbox run -d --rm`): removed once seen stopped. */
  autoRemove?: boolean;
  ephemeral: boolean;
  createdAt: string;
  cgroup: string | null;
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
    requireSupportedPlatform('Machine.start()');
    const tr = TRACE ? new Trace('machine.start') : undefined;
    const o = resolveMachineOptions(options);
    if (tr) {
      tr.step('options resolved');
      setTrace(o, tr);
    }
    // A stopped autoRemove machine of this name is removed (Machine.get) before the name is claimed.
    if (readState(path.join(o.stateDir, o.name))?.autoRemove) await Machine.get(o.name, { stateDir: o.stateDir });
    // An image is leased by this process until PID 1 holds a lease of its own (below).
    const lease: ImageLease | null = o.image ? await acquireImage(o.image) : null;
    try {
      return await Machine.#start(o, options, lease);
    } finally {
      lease?.release();
    }
  }

  static async #start(o: ReturnType<typeof resolveMachineOptions>, options: MachineOptions, lease: ImageLease | null): Promise<Machine> {
    if (o.image && lease) {
      o.image.layers = lease.layers;
      o.image.xattrs = lease.xattrs;
      // The image's Env under the caller's env (PID 1's environment).
      const explicit = (options.env ?? {}) as Record<string, string>;
      const env: Record<string, string> = { ...imageEnv(runConfig(lease.config)) };
      for (const [k, v] of Object.entries(o.env)) if (k in explicit || env[k] === undefined) env[k] = v;
      o.env = env;
    }
    const host = detectCgroupHost();
    if (o.limits) requireControllers(o.limits, host);
    // The command's user (MachineOptions.user) must be mapped too; the init is root.
    const userns = resolveUserns(o.userns, o.user ?? { uid: 0, gid: 0, groups: [] }, 'userns');
    // A persistent rootfs owned by one of the ranges is run with that range on every start (its
    // files stay its own); an ephemeral machine's writes are thrown away, so any free range will do.
    if (userns?.auto && !o.ephemeral) userns.rootfs = o.rootfs;
    // The veth is made over a socket of the host's network namespace (CAP_NET_ADMIN there).
    // (Rootless callers are told that bridging needs root by setupNetwork.)
    if (userns && o.bridge && privileged()) throw notSupported('network', 'bridged networking together with userns is not supported yet');
    if (o.image) checkImageUserns(o.image, userns !== null, privileged());
    // The devices are looked up on the host before anything is made.
    // Their fds go to the child (the binds' sources) and are closed with its other fds.
    const devices = hostDevices(o.devices);
    const dir = path.join(o.stateDir, o.name);
    try {
      try {
        fs.mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
      } catch (e) {
        throw fromSystemError(e, 'machine.state', o.stateDir);
      }
      withLock(o.stateDir, 'machine.name', () => claimName(o.stateDir, o.name), STATE_LOCK);
    } catch (e) {
      closeHostDevices(devices);
      throw e;
    }

    let cgroup: ContainerCgroup | null = null;
    // The fds, and the record context, of the start (the plan comes once the rest is known).
    const shownRoot = o.rootfs ?? `image ${o.image!.ref}`;
    const launch = new Launch(emptyPlan(), { meta: [], candidates: [], command: [], rootfs: shownRoot, cwd: '/', hostname: o.hostname }, userns);
    launch.childFds.push(...devices.map((d) => d.fd));
    /** PID 1's own lease of the image's layers, once written. */
    let ownerLease: string | null = null;
    let netw: NetworkSetup | null = null;
    let etc: EtcDir | null = null;
    // Once cloned: PID 1, and (once made) the handle that watches it.
    let spawned: NativeProcess | null = null;
    let made: Machine | null = null;
    try {
      const scratch = path.join(path.dirname(staging()), '.scratch');
      fs.mkdirSync(scratch, { recursive: true, mode: 0o700 });
      if (o.image && !o.ephemeral) {
        // The persistent upper layer: <stateDir>/<name>/root/{upper,work}, made by the child.
        o.image.upper = path.join(dir, 'root');
        fs.mkdirSync(o.image.upper, { mode: 0o700 });
      }
      if (o.bridge) {
        if (o.rootfs !== undefined) checkRootfs(o.rootfs);  // before the bridge is made for a start that cannot succeed
        netw = setupNetwork(o.bridge);
      }
      // Named as the machine's cgroup (the state directory's hash and the name): an abandoned start's
      // directory is found by it (reclaimAbandoned).
      const cgName = machineCgroupName(o.stateDir, o.name);
      if (o.etcFiles !== 'off') {
        etc = writeEtcDir({
          hostname: o.hostname, network: o.network, hosts: o.hosts,
          bridge: netw ? { address: netw.address, gateway: netw.gateway, dns: o.bridge?.dns } : undefined,
        }, cgName.slice(2));
      }
      const L = machineOps(o, staging(), scratch, userns !== null, etc?.dir, devices);
      const tr = TRACE ? traceOf(o) : undefined;
      if (tr) tr.step('ops built');
      cgroup = launch.cgroup = ContainerCgroup.create(host, o.limits, cgName);
      if (tr) tr.step(cgroup ? `cgroup ${cgroup.path}` : 'cgroup: none');
      const log = fs.openSync(path.join(dir, 'console.log'), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o600);
      launch.childFds.push(log);
      // A command's wait status, reported by the init (MachineOptions.command).
      const exitFd = o.command ? fs.openSync(path.join(dir, EXIT_STATUS), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600) : -1;
      if (exitFd >= 0) launch.childFds.push(exitFd);
      // The init (builtin) or the exec trampoline: this machine's own copy (see initFd).
      const memfd = initFd();
      launch.childFds.push(memfd);
      const builtin = o.init === 'builtin';
      // (A machine of an image: judged by init's name only; its links are not followed on the host.)
      const systemd = !builtin && (o.rootfs !== undefined ? isSystemd(o.rootfs, o.init as string[]) : /systemd/.test((o.init as string[])[0]!));
      const halt = o.haltSignal ?? (systemd ? SIGRTMIN_3 : osConstants.signals.SIGTERM);
      const env: Record<string, string> = { container: 'nsbox', ...o.env };
      if (o.env.PATH === undefined) env.PATH = DEFAULT_PATH;
      // A command's HOME is the one the caller gave (nsbox run -d -u NAME: the user's home).
      if (!o.command || (options as MachineOptions).env?.HOME === undefined) delete env.HOME;
      const keep = resolveCaps(MACHINE_CAPS, o.capabilities);
      const plan = machinePlan({
        network: o.network, hostname: o.hostname, staging: staging(), ops: L.ops, keep, seccomp: o.seccomp,
        init: o.init, halt, env, memfd, log,
        ...(o.command ? {
          command: {
            argv: o.command, candidates: execCandidates(o.command[0]!, env.PATH ?? ''), statusFd: exitFd, logCap: o.consoleLimit,
            ...(o.user ? { user: o.user } : {}), ...(o.cwd !== undefined ? { cwd: o.cwd } : {}), setgroupsDenied: userns?.how === 'self',
          },
        } : {}),
        rlimits: o.rlimits,
      });
      plan.cgroupFd = cgroup ? cgroup.dirFd : -1;
      const policy = devicePolicyFor(keep, !!userns, !!cgroup, 'devices');
      const devFd = devicePolicyFd(devices, policy);
      if (devFd >= 0) launch.childFds.push(devFd);
      plan.devicePolicy = devFd >= 0 ? devFd : policy;
      plan.net = netw ? netw.plan : null;
      launch.plan = plan;
      Object.assign(launch.ctx, { meta: L.meta, candidates: plan.candidates, command: plan.argv });
      if (tr) {
        tr.step('plan built');
        launch.trace = tr;
      }
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
        rootfs: shownRoot,
        init: o.init,
        ...(o.command ? { command: o.command } : {}),
        ...(o.autoRemove ? { autoRemove: true } : {}),
        ephemeral: o.ephemeral,
        hostname: o.hostname,
        network: o.network,
        haltSignal: halt,
        capsKeep: keep.toString(),
        seccomp: (options as MachineOptions).seccomp ?? 'default',
        ...(o.rlimits.length ? { rlimits: o.rlimits } : {}),
        createdAt: new Date().toISOString(),
        ...(etc ? { etcDir: etc.dir } : {}),
        ...(userns ? { userns: { uidMap: userns.uidMap, gidMap: userns.gidMap, setgroups: userns.how === 'self' ? 'deny' : 'allow', ...(userns.lease ? { lease: userns.lease } : {}) } } : {}),
      };
      if (o.image && lease) {
        // The layers are PID 1's to hold from now on, judged by its pid and start time: a
        // pruneImages from any process keeps them while the machine runs, whoever started it.
        const keys = lease.layers.map((l) => path.basename(path.dirname(l)));
        ownerLease = pinForOwner(new Store(o.image.storeDir ?? defaultStoreDir()), { pid: res.pid, start: startTime }, keys);
        state.image = { ref: o.image.ref, digest: lease.digest, lease: ownerLease, env: imageEnv(runConfig(lease.config)) };
      }
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
        if (tr) tr.step('systemd ready');
      }
      if (tr) tr.step('started (state written)');
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
      etc?.remove();
      if (userns?.lease && userns.owner) releaseIdRange(userns.lease, userns.owner);
      // PID 1 is gone (killed and reaped above): its image lease goes with it.
      if (ownerLease) unpinOwner(ownerLease);
      fs.rmSync(dir, { recursive: true, force: true });
      throw userns ? explainUsernsFailure(e) : e;
    }
  }

  /** The machine called `name`, running or stopped, or undefined when there is none. */
  static async get(name: string, opts: { stateDir?: string } = {}): Promise<Machine | undefined> {
    requireSupportedPlatform('Machine.get()');
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
      if (s.image) unpinOwner(s.image.lease);
      removeMachineEtc(s);
      if (!same()) return Machine.get(name, opts);
      try {
        writeAtomic(path.join(dir, 'state.json'), JSON.stringify(s, null, 2));
      } catch (e) {
        // Destroyed by another process meanwhile: there is no machine of that name any more.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw fromSystemError(e, 'machine.state', path.join(dir, 'state.json'));
      }
    }
    if (s.autoRemove && !proc) {
      // MachineOptions.autoRemove: its command has ended, so it is removed now, and is not found.
      try {
        await new Machine(dir, s, null, stateDir).destroy();
      } catch (e) {
        // Removed by another process at the same time.
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      return undefined;
    }
    return new Machine(dir, s, proc, stateDir);
  }

  /** Every machine with state in `stateDir`. */
  static async list(opts: { stateDir?: string } = {}): Promise<MachineInfo[]> {
    requireSupportedPlatform('Machine.list()');
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
    const state = await this.state();
    const exit = s.command && state === 'stopped' ? readExitStatus(this.#dir) : undefined;
    return {
      name: s.name, pid: s.pid, state, rootfs: s.rootfs, ...(s.image ? { image: s.image.ref } : {}), init: s.init, ...(s.command ? { command: s.command } : {}),
      ...(exit ? { exit } : {}), ...(s.autoRemove ? { autoRemove: true } : {}), ephemeral: s.ephemeral, createdAt: s.createdAt, cgroup: s.cgroup,
    };
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
    rejectUnknownKeys(options, ['env', 'cwd', 'user', 'rlimits', 'tty', 'columns', 'rows', 'stdio', 'input', 'timeout', 'startTimeout', 'signal', 'maxOutput'], '');
    const ttySize = checkTty(options, false);
    const tty = ttySize !== null;
    const { columns, rows } = ttySize ?? { columns: 80, rows: 24 };
    const stdio: StdioMode = options.stdio ?? 'pipe';
    if (!['pipe', 'inherit', 'ignore'].includes(stdio)) throw invalidValue('stdio', stdio, "must be one of 'pipe', 'inherit', 'ignore'");
    // A machine of an image: its Env is under every exec's env too (as docker exec has it).
    const env = checkEnv('env', { ...(this.#state.image?.env ?? {}), ...(options.env ?? {}) });
    if (options.env?.HOME === undefined && this.#state.image?.env?.HOME === undefined) env.HOME = '/root';
    if (tty && env.TERM === undefined) env.TERM = terminalType();
    const cwd = options.cwd === undefined ? '/' : checkAbsolutePath('cwd', options.cwd);
    const user = options.user === undefined ? { uid: 0, gid: 0, groups: [] } : checkUser('user', options.user);
    const rlimits = resolveRlimits('rlimits', options.rlimits);
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
    const tr = TRACE ? new Trace('machine.exec') : undefined;
    if (tr) tr.step('options resolved');
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
        // The machine's (re-checked: the state file is read back from disk; -1 there is unlimited),
        // then the exec's own.
        rlimits: [resolveRlimits('rlimits', Object.fromEntries((this.#state.rlimits ?? []).map(([n, soft, hard]) => [n, { soft: soft === -1 ? 'unlimited' : soft, hard: hard === -1 ? 'unlimited' : hard }]))), rlimits],
      });
      // Returns once the entering helper has made the process inside the machine (or failed
      // before): the helper is not visible in the machine and waits on nothing of it. What the
      // process does there up to its execve is waited for on the event loop, below.
      launch.plan = plan;
      if (tr) {
        tr.step(`plan built (cgroup ${this.#cgroup ? this.#cgroup.path : 'none'}: the machine's)`);
        launch.trace = tr;
      }
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
      const co = { init: false, timeout, signal: options.signal, limits: undefined };
      if (tr) setTrace(co, tr);
      const c = new Container(res.pid, res.process, null, streams, co, t0, tty ? PTY_PENDING : -1, relay);
      started = null;
      const handles = { watch: 0, timer: null as NodeJS.Timeout | null, ref: true };
      c._setStarting(this.#finishExec(c, res, { ...launch.ctx, rlimits: plan.rlimits, userns: !!this.#state.userns }, { startTimeout, ptyRecv, late, streams, handles, trace: tr }), (on) => {
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
      trace?: Trace;
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
          if (TRACE) o.trace?.step(`failed at step ${STEPS[rec.step]?.[0] ?? rec.step} (errno ${rec.errno})`);
          fail(errorFromRecord(rec, ctx));
          return;
        }
        if (TRACE) o.trace?.step('exec done (its error pipe closed)');
        if (o.late) {
          // Sent before the execve, so it is queued by now.
          const master = receivePty(o.ptyRecv);
          o.ptyRecv = -1;
          if (master instanceof NsboxError) {
            fail(master);
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
  run(command: string[], options: MachineRunOptions & { encoding: BufferEncoding }): Promise<RunResultWithCounts<string>>;
  run(command: string[], options?: MachineRunOptions & { encoding?: 'buffer' }): Promise<RunResultWithCounts>;
  run(command: string[], options?: MachineRunOptions): Promise<RunResultWithCounts<Buffer | string>>;
  async run(command: string[], runOptions: MachineRunOptions = {}): Promise<RunResultWithCounts<Buffer | string>> {
    let options: MachineExecOptions = runOptions;
    let encoding: BufferEncoding | undefined;
    if (isPlainObject(runOptions)) {
      // One copy, each option read once; `encoding` taken out of it.
      const { encoding: e, ...rest } = { ...runOptions };
      if (e !== undefined) encoding = checkEncoding('encoding', e);
      options = rest;
    }
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
    return decodeOutput({ ...info, stdout: out.buf, stderr: err.buf, stdoutDropped: out.dropped, stderrDropped: err.dropped }, encoding);
  }

  /**
   * Halt signal to PID 1 (again every second: a distro's init drops one that comes before its
   * handler), wait up to `timeout` ms (default 10000), then kill everything. Resolves with
   * `{ killed }`: false when PID 1 shut down by itself within the timeout.
   */
  async stop(opts: { timeout?: number } = {}): Promise<{ killed: boolean }> {
    const timeout = opts.timeout === undefined ? 10000 : checkTimeout('timeout', opts.timeout)!;
    let killed = false;
    if ((await this.state()) !== 'stopped') {
      if ((await this.state()) === 'frozen') await this.thaw();
      // Waiting for PID 1 must keep this process alive (the watcher is unref'd otherwise).
      this.#proc!.ref();
      this.#proc!.signal(this.#state.haltSignal);
      // A distro's init drops a halt signal that comes before it has set its handler (the kernel
      // discards unhandled signals to a PID 1); nsbox-init cannot, it starts with them blocked. So
      // the signal is sent again every second until PID 1 is gone or the timeout passes.
      const again = setInterval(() => { if (this.#alive()) this.#proc!.signal(this.#state.haltSignal); }, 1000);
      const ac = new AbortController();
      const timer = sleep(timeout, undefined, { signal: ac.signal }).then(() => 'timeout' as const, () => 'gone' as const);
      const r = await Promise.race([this.#gone.then(() => 'gone' as const), timer]);
      clearInterval(again);
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
    // The init dies with its command and cannot report: the command was killed (unless it had ended).
    if (n === osConstants.signals.SIGKILL && this.#state.command) writeKilledStatus(this.#dir, n);
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

  /**
   * `await using m = await Machine.start(...)` (TypeScript, Node 22+; on Node 20 call it in a
   * `finally`): at the end of the scope the machine is stopped as stop() does (the halt signal, then
   * SIGKILL after 10 s) and destroyed (its state removed; a rootfs directory of yours is left as it is).
   * A machine already stopped is only destroyed; one already destroyed is left alone. A scope that
   * must leave its machine running does not dispose of it.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    await this.destroy();
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
    if (this.#state.image) unpinOwner(this.#state.image.lease);
    removeMachineEtc(this.#state);
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
