// launch.ts: the start sequence every profile shares. A Launch holds what a start makes between its
// plan and the clone's result (the child's ends of pipes, Node's ends, the cgroup, the user
// namespace's lease) and owns the three ways out of it: the clone (spawn, here or off the JS
// thread), the settling of its result (the child's fds closed, a failure record turned into an
// NsboxError), and the undoing of everything on any failure. app.ts (run, spawn, the pool),
// machine.ts (Machine.start, Machine.exec) build their plan with plan.ts and call these.
import type { ContainerCgroup } from './cgroup';
import { NsboxError, fromSystemError } from './errors';
import { native, type NativePlan, type SpawnResult } from './native';

/** A clone that succeeded. */
export type Started = Extract<SpawnResult, { pid: number }>;
import { errorFromRecord } from './plan';
import { closeQuiet } from './runtime';
import { planStdio } from './stdio';
import type { StdioMode } from './types';
import { explainUsernsFailure, spawnWithUserns, type UsernsPlan } from './userns';
import { TRACE, type Trace } from './trace';
import { STEPS } from './steps';

/** What a failure record is translated with (errorFromRecord's context). */
export type RecordContext = Parameters<typeof errorFromRecord>[1];

export class Launch {
  /** The child's ends (and fds only the child needs): closed once the clone has them, or on failure. */
  readonly childFds: number[] = [];
  /** Node's ends: closed on failure; on success the caller hands them on. */
  readonly parentFds: number[] = [];
  /** The container's own cgroup: removed if the start fails. */
  cgroup: ContainerCgroup | null = null;
  /** Anything else the start made on the host (its generated /etc files): undone if it fails. */
  readonly undo: Array<() => void> = [];
  /** NSBOX_DEBUG: this start's trace (lib/trace.ts); undefined when tracing is off. */
  trace: Trace | undefined = undefined;

  constructor(
    /** The plan (filled in place by the caller up to the clone). */
    public plan: NativePlan,
    /** What a failure record is reported with (filled in as the start learns it). */
    readonly ctx: RecordContext,
    readonly userns: UsernsPlan | null = null,
  ) {}

  /** fds 0-2 for a stdio mode (lib/stdio.ts planStdio) into the plan; returns Node's ends. */
  stdio(mode: StdioMode, stdinEmpty = false): [number, number, number] {
    const { stdio, ours } = planStdio(mode, this.childFds, this.parentFds, stdinEmpty);
    this.plan.stdio = stdio;
    return ours;
  }

  /** A pipe whose read end is the child's (`childReads`) or Node's; returns [child's end, Node's end]. */
  pipe(childReads: boolean): [number, number] {
    const [r, w] = native().pipe();
    const [theirs, mine] = childReads ? [r, w] : [w, r];
    this.childFds.push(theirs);
    this.parentFds.push(mine);
    return [theirs, mine];
  }

  /** A socket pair: one end the child's, the other Node's; returns [child's end, Node's end]. */
  socketpair(): [number, number] {
    const [mine, theirs] = native().socketpair();
    this.parentFds.push(mine);
    this.childFds.push(theirs);
    return [theirs, mine];
  }

  /** The clone on this thread, with the user namespace's maps written where the child waits for them. */
  spawn(allowReady: boolean): SpawnResult {
    if (TRACE) this.trace?.step(`clone (on the JS thread${this.userns ? ', user namespace' : ''})`);
    const res = spawnWithUserns(this.plan, this.userns, allowReady, 'userns');
    if (TRACE) this.#traceResult(res, allowReady);
    return res;
  }

  /** The clone on a thread of libuv's pool (no user namespace, no bridge: see app.ts asyncEligible). */
  spawnAsync(done: (res: SpawnResult) => void): void {
    if (TRACE && this.trace) {
      this.trace.step('clone (on a thread of the libuv pool)');
      native().spawnAsync(this.plan, (res) => {
        this.#traceResult(res, false);
        done(res);
      });
      return;
    }
    native().spawnAsync(this.plan, done);
  }

  /** What the clone's result says, traced: exec done (the error pipe closed), waiting, or failed. */
  #traceResult(res: SpawnResult, allowReady: boolean): void {
    const t = this.trace;
    if (!t) return;
    if (res.step !== undefined) t.step(`failed at step ${STEPS[res.step]?.[0] ?? res.step} (errno ${res.errno})`);
    else if (res.errFd === undefined) t.step(`exec done (pid ${res.pid}; its error pipe closed)`);
    else if (allowReady) t.step(`cloned (pid ${res.pid}); set up, waiting for its command`);
    else t.step(`cloned (pid ${res.pid}); its exec is waited for on the event loop`);
  }

  /**
   * After the clone: the child's ends are closed (it has its own copies, or it is gone) and so is the
   * cgroup's directory fd; a failure record becomes its NsboxError (thrown). Node's ends stay with
   * the caller, which hands them on.
   */
  settle(res: SpawnResult): Started {
    for (const fd of this.childFds.splice(0)) closeQuiet(fd);
    this.cgroup?.closeFd();
    if (res.step !== undefined) throw errorFromRecord(res, { ...this.ctx, rlimits: this.plan.rlimits, ...(this.userns ? { userns: true } : {}) });
    return res;
  }

  /** Closes every fd the start still holds (both sides). */
  closeFds(): void {
    for (const fd of this.childFds.splice(0)) closeQuiet(fd);
    for (const fd of this.parentFds.splice(0)) closeQuiet(fd);
  }

  /** Node's ends are the caller's from here on (a started container's streams). */
  handOver(): void {
    this.parentFds.length = 0;
  }

  /**
   * Undoes what the start made (every fd, the cgroup) and throws the error the caller sees: an
   * NsboxError (or the option's TypeError/RangeError, or an AbortError) as it is, anything else as
   * an NsboxError of `step`, explained where user namespaces are restricted.
   */
  abandon(e: unknown, step = 'spawn'): never {
    this.closeFds();
    this.cgroup?.removeNow();
    for (const f of this.undo.splice(0)) f();
    if (e instanceof Error && e.name === 'AbortError') throw e;
    const err = e instanceof NsboxError || e instanceof TypeError || e instanceof RangeError ? e : fromSystemError(e, step);
    throw this.userns ? explainUsernsFailure(err) : err;
  }
}
