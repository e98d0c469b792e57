// app.ts: the app profile. spawn() starts one process in fresh namespaces and hands back a live
// Container; run() is spawn + feed input + collect output + wait.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';

import { ContainerCgroup, detectCgroupHost, requireControllers, withParent } from './cgroup';
import { NsboxError, fromSystemError, invalidValue, notSupported } from './errors';
import { buildDir, native, type NativePlan, type NativeProcess } from './native';
import { resolveAppOptions, type ResolvedAppOptions } from './options';
import { basePlan, errorFromRecord } from './plan';
import type { AppOptions, ExitInfo, RunResult, Stats } from './types';

const SIGNAL_NAMES = new Map<number, string>(Object.entries(osConstants.signals).map(([k, v]) => [v, k]));

export function signalNumber(sig: string | number, name = 'signal'): number {
  if (typeof sig === 'number' && Number.isInteger(sig) && sig > 0 && sig < 65) return sig;
  if (typeof sig === 'string') {
    const n = (osConstants.signals as Record<string, number>)[sig.startsWith('SIG') ? sig : 'SIG' + sig];
    if (n !== undefined) return n;
  }
  throw invalidValue(name, sig, "must be a signal name such as 'SIGTERM' or a signal number");
}

let stagingDir: string | undefined;
/** The host directory each container's root is assembled on (inside the child's own mount ns). */
function staging(): string {
  if (stagingDir) return stagingDir;
  const dir = process.getuid?.() === 0 ? '/run/nsbox/.staging' : path.join(require('node:os').tmpdir(), `nsbox-${process.getuid?.()}`, '.staging');
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw fromSystemError(e, 'spawn.staging', dir);
  }
  stagingDir = dir;
  return dir;
}

let capLastCache: number | undefined;
function capLast(): number {
  if (capLastCache === undefined) {
    try {
      capLastCache = Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
    } catch {
      capLastCache = 40;
    }
  }
  return capLastCache;
}

let initFdCache: number | undefined;
/** The bundled init, loaded once into a sealed memfd (see native/init/init.c). */
function initFd(): number {
  if (initFdCache === undefined) {
    const p = path.join(buildDir, 'nsbox-init');
    try {
      initFdCache = native().sealedMemfd(p);
    } catch (e) {
      throw fromSystemError(e, 'init.load', p);
    }
  }
  return initFdCache;
}

function abortError(signal: AbortSignal): Error {
  const e = new Error('The operation was aborted', { cause: signal.reason }) as Error & { code: string };
  e.name = 'AbortError';
  e.code = 'ABORT_ERR';
  return e;
}

function closeQuiet(fd: number): void {
  if (fd > 2) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
  }
}

/**
 * A running app container. Emits `'exit'` with its ExitInfo once, after its cgroup is gone, and
 * `'oom'` (`{ count }`) each time the OOM killer acts inside it (with a memory limit).
 */
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
    o: ResolvedAppOptions,
    start: number,
  ) {
    super();
    this.pid = pid;
    this.#proc = proc;
    this.#cgroup = cgroup;
    [this.stdin, this.stdout, this.stderr] = stdio;
    this.#start = start;
    this.#exit = new Promise<ExitInfo>((resolve, reject) => {
      proc.watch((code, sig, cpuUs, initStatus) => {
        this.#onExit(code, sig, cpuUs, initStatus, o.init).then(resolve, reject);
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
      o.signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  async #onExit(code: number | null, sig: number | null, cpuUs: number, initStatus: number | null, init: boolean): Promise<ExitInfo> {
    this.#exited = true;
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
    if (this.#cgroup) {
      // Whatever PID 1 left behind has already been killed with its pid namespace; cgroup.kill
      // catches anything that is still on its way out before the directory is removed.
      this.#cgroup.kill();
      stats = this.#cgroup.readStats(stats.cpuUsageUs);
      oomKilled = (stats.oomKills ?? 0) > 0;
      delete stats.oomKills;
      await this.#cgroup.remove();
    }
    this.#final = stats;
    // Like child_process: stdin is useless now, and output nobody subscribed to is drained so its
    // pipe reaches end-of-file and closes instead of holding an fd forever.
    this.stdin?.destroy();
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

  /** Resolves with the exit information once the container is gone and its cgroup removed. */
  wait(): Promise<ExitInfo> {
    return this.#exit;
  }

  /** Current usage; after exit, the final figures. */
  async stats(): Promise<Stats> {
    if (this.#final) return this.#final;
    if (!this.#cgroup) return { cpuUsageUs: 0 };
    const s = this.#cgroup.readStats(0);
    delete s.oomKills;
    return s;
  }

  /** Stops every process of the container (cgroup.freeze) until thaw(). */
  async freeze(): Promise<void> {
    if (!this.#cgroup) throw notSupported('freeze', 'freezing needs a cgroup v2 hierarchy nsbox can write to');
    if (this.#exited) throw new NsboxError({ code: 'ESRCH', step: 'freeze', message: 'the container has exited (step freeze)' });
    await this.#cgroup.setFrozen(true);
  }

  async thaw(): Promise<void> {
    if (!this.#cgroup) throw notSupported('thaw', 'thawing needs a cgroup v2 hierarchy nsbox can write to');
    if (this.#exited) return;
    await this.#cgroup.setFrozen(false);
  }

  /** Keep (the default) or stop keeping the Node event loop alive for this container. */
  ref(): this {
    this.#proc.ref();
    return this;
  }
  unref(): this {
    this.#proc.unref();
    return this;
  }

  /** `await using c = spawn(...)`: kills the whole container and waits until it is cleaned up. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#exited) this.kill('SIGKILL');
    await this.#exit.catch(() => {});
  }
}

function pipeSocket(fd: number, readable: boolean): net.Socket {
  return new net.Socket({ fd, readable, writable: !readable });
}

/** Starts the container; `o` is already validated. */
function start(o: ResolvedAppOptions): Container {
  if (o.signal?.aborted) throw abortError(o.signal);
  const detected = detectCgroupHost();
  const host = o.cgroupParent ? withParent(detected, o.cgroupParent) : detected;
  if (o.limits) requireControllers(o.limits, host);
  const t0 = performance.now();
  const { plan: base, meta, candidates } = basePlan(o, staging(), capLast());
  const n = native();
  const init = o.init ? initFd() : -1;

  const parentFds: number[] = [];
  const childFds: number[] = [];
  let cgroup: ContainerCgroup | null = null;
  try {
    cgroup = ContainerCgroup.create(host, o.limits);
    const stdio: [number, number, number] = [-1, -1, -1];
    const ours: [number, number, number] = [-1, -1, -1];
    if (o.stdio === 'inherit') {
      stdio[0] = 0;
      stdio[1] = 1;
      stdio[2] = 2;
    } else if (o.stdio === 'ignore') {
      const nul = fs.openSync('/dev/null', 'r+');
      childFds.push(nul);
      stdio[0] = stdio[1] = stdio[2] = nul;
    } else {
      for (let i = 0; i < 3; i++) {
        const [r, w] = n.pipe();
        if (i === 0) {
          stdio[0] = r;
          ours[0] = w;
          childFds.push(r);
          parentFds.push(w);
        } else {
          stdio[i] = w;
          ours[i] = r;
          childFds.push(w);
          parentFds.push(r);
        }
      }
    }
    let statusRead = -1;
    let statusWrite = -1;
    if (init >= 0) {
      [statusRead, statusWrite] = n.pipe();
      parentFds.push(statusRead);
      childFds.push(statusWrite);
    }
    const plan: NativePlan = {
      ...base,
      cgroupFd: cgroup ? cgroup.dirFd : -1,
      cgroupInto: true,
      stdio,
      statusFd: statusWrite,
      statusRead,
      initFd: init,
      initArgv: init >= 0 ? ['nsbox-init', '--status-fd', '3', '--', '', ...o.command.slice(1)] : [],
      initSlot: 4,
    };
    const res = n.spawn(plan);
    for (const fd of childFds.splice(0)) closeQuiet(fd);
    cgroup?.closeFd();
    if (res.step !== undefined) {
      throw errorFromRecord(res, { meta, candidates, command: o.command, rootfs: o.rootfs, cwd: o.cwd, hostname: o.hostname });
    }
    // The watcher reads the init's report from its own dup of the status pipe.
    if (statusRead >= 0) closeQuiet(statusRead);
    parentFds.length = 0;
    const streams: [Writable | null, Readable | null, Readable | null] =
      o.stdio === 'pipe' ? [pipeSocket(ours[0], false), pipeSocket(ours[1], true), pipeSocket(ours[2], true)] : [null, null, null];
    return new Container(res.pid, res.process, cgroup, streams, o, t0);
  } catch (e) {
    for (const fd of childFds) closeQuiet(fd);
    for (const fd of parentFds) closeQuiet(fd);
    cgroup?.removeNow();
    throw e instanceof NsboxError || e instanceof TypeError || e instanceof RangeError ? e : fromSystemError(e, 'spawn');
  }
}

/** Starts a container and returns its live handle. Bad options throw before anything starts. */
export function spawn(options: AppOptions): Container {
  return start(resolveAppOptions(options));
}

/** Collects one output stream, keeping at most `max` bytes and counting the rest. */
function collect(stream: Readable | null, max: number): Promise<{ buf: Buffer; dropped: number }> {
  return new Promise((resolve, reject) => {
    if (!stream) return resolve({ buf: Buffer.alloc(0), dropped: 0 });
    const chunks: Buffer[] = [];
    let kept = 0;
    let dropped = 0;
    stream.on('data', (c: Buffer) => {
      const room = max - kept;
      if (room >= c.length) {
        chunks.push(c);
        kept += c.length;
      } else {
        if (room > 0) chunks.push(c.subarray(0, room));
        kept += Math.max(room, 0);
        dropped += c.length - Math.max(room, 0);
      }
    });
    stream.once('error', reject);
    stream.once('close', () => resolve({ buf: Buffer.concat(chunks, kept), dropped }));
  });
}

export interface RunResultWithCounts extends RunResult {
  /** Bytes of stdout beyond `maxOutput` that were counted and dropped. */
  stdoutDropped: number;
  /** Bytes of stderr beyond `maxOutput` that were counted and dropped. */
  stderrDropped: number;
}

/** Starts a container, writes `input` to its stdin, collects its output and waits for it. */
export async function run(options: AppOptions): Promise<RunResultWithCounts> {
  const o = resolveAppOptions(options);
  const c = start(o);
  if (c.stdin) {
    c.stdin.on('error', () => {
      /* EPIPE when the command exits without reading all input: not an error of the run */
    });
    c.stdin.end(o.input ?? undefined);
  }
  const [out, err, info] = await Promise.all([collect(c.stdout, o.maxOutput), collect(c.stderr, o.maxOutput), c.wait()]);
  if (c.aborted && o.signal) throw abortError(o.signal);
  return { ...info, stdout: out.buf, stderr: err.buf, stdoutDropped: out.dropped, stderrDropped: err.dropped };
}
