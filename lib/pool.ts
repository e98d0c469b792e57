// pool.ts: a warm pool of app containers. Each pooled container is cloned and set up completely
// (namespaces, cgroup, mounts, pivot_root, credentials, capabilities, seccomp, fds closed) ahead of
// time and waits, blocked on a pipe, for its command; run() hands it one and it execs. A pooled
// container is used once: the same isolation as a cold run(), without the set-up on the hot path.
import * as fs from 'node:fs';

import { Container, launchPending, launchPendingAsync, othersInFlight, withImageLease, type Pending, type RunResultWithCounts } from './app';
import { acquireImageSync, type ImageLease } from './images/run';
import { runConfig } from './images/config';
import { NsboxError, invalidType, invalidValue, outOfRange } from './errors';
import { native } from './native';
import { DEFAULT_MAX_OUTPUT, checkCommand, checkEncoding, decodeOutput, checkInput, checkSignal, checkTimeout, resolveAppOptions, rejectUnknownKeys, type ResolvedAppOptions } from './options';
import { errorFromRecord, execCandidates } from './plan';
import { closeQuiet, pipeSocket } from './runtime';
import type { AppOptions, OutputEncoding } from './types';
import { collectOutput } from './stdio';
import { abortError } from './util';
import { requireSupportedPlatform } from './platform';
import { setTrace, Trace, TRACE, tracePool } from './trace';
import { STEPS } from './steps';

export interface PoolOptions extends Omit<AppOptions, 'command' | 'input' | 'stdio' | 'timeout' | 'signal' | 'maxOutput'> {
  /** How many containers wait ready (1 to 64). */
  size: number;
}

export interface PoolRunOptions {
  input?: string | Buffer;
  timeout?: number;
  signal?: AbortSignal;
  maxOutput?: number;
  /** As for run(): stdout and stderr decoded into strings (default: Buffers). */
  encoding?: OutputEncoding;
}

const MAX_SIZE = 64;

export class Pool {
  #o: ResolvedAppOptions;
  #size: number;
  #ready: Pending[] = [];
  #filling = false;
  /** The refill launch in flight, if any: close() waits for it (and disposes of what it made). */
  #refilling: Promise<void> = Promise.resolve();
  #closed = false;
  #inflight = 0;
  #lastError: unknown;
  /** With `image`: its layers' lease (released by close()) and the Entrypoint put before each run's command. */
  #lease: ImageLease | null = null;
  #entrypoint: string[] = [];

  /** @internal use createPool() */
  constructor(o: ResolvedAppOptions, size: number, given?: AppOptions) {
    this.#o = o;
    this.#size = size;
    if (o.image) {
      // createPool() is synchronous: the image must be in the store already.
      const lease = (this.#lease = acquireImageSync(o.image, 'createPool()'));
      // The first one now, so that options the host cannot satisfy fail at createPool().
      this.#ready.push(withImageLease(o, { ...given, command: ['/pool-placeholder'] }, lease, () => launchPending(o)));
      const ep = o.image.entrypoint ?? runConfig(lease.config).Entrypoint;
      this.#entrypoint = Array.isArray(ep) && ep.every((x) => typeof x === 'string') ? (ep as string[]) : [];
    } else {
      this.#ready.push(launchPending(o));
    }
    this.#refill();
  }

  /** Containers waiting ready right now. */
  get ready(): number {
    return this.#ready.length;
  }

  #refill(): void {
    if (this.#filling || this.#closed) return;
    this.#filling = true;
    // One at a time, each clone off the JS thread where it may be (else on an idle turn of the
    // loop), so the pool never stalls the loop for long.
    const step = (): void => {
      // Never while a run is in flight: the set-up competes for the CPUs (or, on the JS thread,
      // blocks it for a millisecond or two) with the very exit that run is waiting for. Runs
      // resume the refill when done.
      if (this.#closed || this.#ready.length >= this.#size || this.#inflight > 0) {
        this.#filling = false;
        return;
      }
      this.#refilling = launchPendingAsync(this.#o, true).then(
        async (p) => {
          if (this.#closed) {
            await this.#dispose(p);
            this.#filling = false;
            return;
          }
          this.#ready.push(p);
          setImmediate(step);
        },
        (e) => {
          this.#lastError = e;
          this.#filling = false;
        },
      );
    };
    setImmediate(step);
  }

  /** Runs `command` in a fresh container of the pool (a cold one when none is ready). */
  run(command: string[], options: PoolRunOptions & { encoding: BufferEncoding }): Promise<RunResultWithCounts<string>>;
  run(command: string[], options?: PoolRunOptions & { encoding?: 'buffer' }): Promise<RunResultWithCounts>;
  run(command: string[], options?: PoolRunOptions): Promise<RunResultWithCounts<Buffer | string>>;
  async run(command: string[], options: PoolRunOptions = {}): Promise<RunResultWithCounts<Buffer | string>> {
    if (this.#closed) throw new NsboxError({ code: 'ESHUTDOWN', step: 'pool.run', message: 'the pool is closed (step pool.run)' });
    // With an image, its Entrypoint (or the pool's entrypoint option) comes first, as in docker.
    const argv = [...this.#entrypoint, ...checkCommand('command', command)];
    if (typeof options !== 'object' || options === null) throw invalidType('options', 'of type object', options);
    rejectUnknownKeys(options, ['input', 'timeout', 'signal', 'maxOutput', 'encoding'], '');
    const encoding = checkEncoding('encoding', options.encoding);
    const input = checkInput('input', options.input);
    const timeout = checkTimeout('timeout', options.timeout);
    checkSignal('signal', options.signal);
    const maxOutput = options.maxOutput ?? DEFAULT_MAX_OUTPUT;
    if (!Number.isInteger(maxOutput) || maxOutput < 0) throw outOfRange('maxOutput', 'an integer >= 0', maxOutput);
    if (options.signal?.aborted) throw abortError(options.signal);
    const blob = Buffer.from(argv.join('\0') + '\0\0');
    if (blob.length > 256 * 1024 - 1) throw invalidValue('command', '(long)', 'is longer than 256 KiB in total');

    const t0 = performance.now();
    const tr = TRACE ? new Trace('pool.run') : undefined;
    const p = this.#ready.shift();
    if (tr) tr.step(p ? `options resolved; took a ready container (pid ${p.pid})` : 'options resolved; none ready: starting one (pool.fill)');
    this.#inflight++;
    try {
      return decodeOutput(await this.#runOn(p, argv, blob, input, timeout, options.signal, maxOutput, t0, tr), encoding);
    } finally {
      this.#inflight--;
      this.#refill();
      this.#releaseIdle();
    }
  }

  async #runOn(
    p: Pending | undefined,
    argv: string[],
    blob: Buffer,
    input: Buffer | undefined,
    timeout: number | undefined,
    signal: AbortSignal | undefined,
    maxOutput: number,
    t0: number,
    tr: Trace | undefined,
  ): Promise<RunResultWithCounts> {
    const options = { signal };
    for (;;) {
      if (!p) p = await launchPendingAsync(this.#o, false);
      try {
        fs.writeSync(p.cmdWrite, blob);
        break;
      } catch {
        // It died while waiting (killed from outside, OOM): discard it and take a fresh one.
        this.#discard(p);
        p = undefined;
      }
    }
    closeQuiet(p.cmdWrite);
    if (tr) tr.step(`command written (pid ${p.pid})`);
    // While the container execs its command: its output read whole by the addon, and stdin
    // (without input, our end is just closed: the command reads end-of-file, as from a stream
    // ended at once).
    let stdin: ReturnType<typeof pipeSocket> | null = null;
    if (input === undefined) closeQuiet(p.fds[0]);
    else stdin = pipeSocket(p.fds[0], false);
    const output = collectOutput(p.fds[1], p.fds[2], maxOutput);
    // Then its exec result: end-of-file of the error pipe. Alone, it is usually there already (a
    // blocking read is cheapest); with other containers running, the container may wait a while
    // for a CPU to exec on, and the loop must not wait with it.
    type Rec = { step: number; errno: number; index: number } | null;
    const errFd = p.errFd;
    const rec: Rec = othersInFlight()
      ? await new Promise<Rec>((resolve) => native().finishSpawnAsync(errFd, resolve, p.process.fd(), p.pid))
      : (native().finishSpawn(errFd, false, p.process.fd(), p.pid) as Rec);
    if (tr) tr.step(rec ? `failed at step ${STEPS[rec.step]?.[0] ?? rec.step} (errno ${rec.errno})` : 'exec done (its error pipe closed)');
    const co = { init: false, timeout, signal: options.signal, limits: this.#o.limits };
    if (tr) setTrace(co, tr);
    const c = new Container(p.pid, p.process, p.cgroup, [stdin, null, null], co, t0);
    if (rec) {
      // The command could not be exec'd: the container has exited; clean it up, then report.
      await Promise.all([c.wait().catch(() => {}), output]);
      throw errorFromRecord(rec, { meta: p.meta, candidates: execCandidates(argv[0]!, this.#o.env.PATH ?? ''), command: argv, rootfs: this.#o.rootfs, cwd: this.#o.cwd, hostname: this.#o.hostname });
    }
    if (c.stdin) {
      c.stdin.on('error', () => {});
      c.stdin.end(input);
    }
    const [out, info] = await Promise.all([output, c.wait()]);
    if (c.aborted && options.signal) throw abortError(options.signal);
    return { ...info, ...out };
  }

  #discard(p: Pending): void {
    this.#dispose(p, true);
  }

  /** Ends every waiting container and removes its cgroup (and one a refill is still making). */
  async close(): Promise<void> {
    this.#closed = true;
    const waiting = this.#ready.splice(0);
    try {
      await Promise.all([...waiting.map((p) => this.#dispose(p)), this.#refilling]);
    } finally {
      this.#releaseIdle();
    }
  }

  /** `await using pool = createPool(...)` (TypeScript, Node 22+): close() at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** After close(), once no run is in flight (their roots are overlays of the image's layers): the lease goes. */
  #releaseIdle(): void {
    if (!this.#closed || this.#inflight > 0 || !this.#lease) return;
    this.#lease.release();
    this.#lease = null;
  }

  /**
   * Ends a waiting container: with its command pipe closed and nothing read, it exits 0 by itself
   * (or, with kill, at once); resolves once it is cleaned up.
   */
  #dispose(p: Pending, kill = false): Promise<unknown> {
    closeQuiet(p.cmdWrite);
    closeQuiet(p.errFd);
    const c = new Container(p.pid, p.process, p.cgroup, [pipeSocket(p.fds[0], false), pipeSocket(p.fds[1], true), pipeSocket(p.fds[2], true)], { init: false, timeout: undefined, signal: undefined, limits: undefined }, 0);
    if (kill) c.kill('SIGKILL');
    return c.wait().catch(() => {});
  }


  /** The last error met while refilling in the background, if any (the next run() starts cold). */
  get lastError(): unknown {
    return this.#lastError;
  }
}

/**
 * A warm pool of app containers with the given options (all but `command`, `input`, `stdio`,
 * `timeout`, `signal`, `maxOutput`, which belong to each run). `init: true` is not pooled yet.
 */
export function createPool(options: PoolOptions): Pool {
  requireSupportedPlatform('createPool()');
  if (typeof options !== 'object' || options === null) throw invalidType('options', 'of type object', options);
  const { size, ...rest } = options as PoolOptions & Record<string, unknown>;
  if (typeof size !== 'number') throw invalidType('size', 'of type number', size);
  if (!Number.isInteger(size) || size < 1 || size > MAX_SIZE) throw outOfRange('size', `an integer from 1 to ${MAX_SIZE}`, size);
  for (const k of ['command', 'input', 'stdio', 'timeout', 'signal', 'maxOutput', 'encoding']) {
    if (k in rest) throw invalidValue(k, (rest as Record<string, unknown>)[k], 'belongs to pool.run(), not to createPool()');
  }
  if ((rest as { init?: unknown }).init) throw invalidValue('init', true, 'is not supported by pools yet');
  for (const k of ['tty', 'columns', 'rows']) {
    if ((rest as Record<string, unknown>)[k] !== undefined) throw invalidValue(k, (rest as Record<string, unknown>)[k], 'is not supported by pools (a tty is per run; use spawn() or run())');
  }
  // The command is given per run; the options are resolved once with a placeholder.
  const o = resolveAppOptions({ ...rest, command: ['/pool-placeholder'], stdio: 'pipe' });
  // NSBOX_DEBUG: each container the pool makes is traced as a start of its own (pool.fill).
  if (TRACE) tracePool(o);
  return new Pool(o, size, rest as AppOptions);
}
