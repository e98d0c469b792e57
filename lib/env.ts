// env.ts: the environment settings the TypeScript side reads, in one place. Each is read where a
// start is planned (on the JS thread), never in the child: the plan is the core's only input.
// The addon's own switches are read by the glue on the JS thread too (native/glue/plan_reader.cc:
// NSBOX_FORCE_PATH_WALK, NSBOX_FORK_CLONE into the plan; reserve.cc: NSBOX_NETNS_RESERVE,
// NSBOX_IPCNS_RESERVE, NSBOX_MNT_TEMPLATE). docs/testing.md says what each is for.

import * as os from 'node:os';
import { STEPS } from './steps';

/** NSBOX_FORK_CLONE: the fork-style clone (test support; the addon puts it in the plan). */
export function forkClone(): boolean {
  return !!process.env.NSBOX_FORK_CLONE;
}

/** NSBOX_SYNC_SPAWN=1: every clone on the JS thread (no spawnAsync). */
export function syncSpawn(): boolean {
  return !!process.env.NSBOX_SYNC_SPAWN;
}

/** UV_THREADPOOL_SIZE as libuv reads it (4 unless set to a positive integer, at most 1024). */
export function threadpoolSize(): number {
  const n = Number(process.env.UV_THREADPOOL_SIZE);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 1024) : 4;
}

/** $TERM for a Machine.exec tty that names none (xterm-256color where Node has none either). */
export function terminalType(): string {
  return process.env.TERM ?? 'xterm-256color';
}

/** $XDG_RUNTIME_DIR, when it is an absolute path. */
export function xdgRuntimeDir(): string | undefined {
  const x = process.env.XDG_RUNTIME_DIR;
  return x && x.startsWith('/') ? x : undefined;
}

/** The absolute directories of $PATH (where the setuid id-map helpers are looked for). */
export function pathDirs(): string[] {
  return (process.env.PATH ?? '').split(':').filter((d) => d.startsWith('/'));
}

/** A fault point a test asks for: the call of (step, index) fails with errno. */
export interface TestFault {
  step: number;
  index: number;
  errno: number;
}

let faultCache: { raw: string; fault: TestFault } | undefined;

/**
 * NSBOX_TEST_FAULT=<step name>:<index>:<errno name> (test only, docs/testing.md): every start of
 * this process fails at that step and index (native/core/steps.h) as if its call had failed with
 * that errno: "exec.pty:3:EPIPE". With SIGKILL for the errno, the Node process dies by SIGKILL when
 * the start gets there instead (in the child's steps: once the child gets there; the child then goes
 * on, see fault_kill in native/core/plan.h). Read per start (emptyPlan); unset: undefined. A value that names
 * no step or errno throws, so that a typo in a test cannot pass as "nothing failed".
 */
export function testFault(): TestFault | undefined {
  const raw = process.env.NSBOX_TEST_FAULT;
  if (!raw) return undefined;
  if (faultCache?.raw === raw) return faultCache.fault;
  const m = /^([\w.]+):(-?\d+):(E[A-Z0-9]+|SIGKILL)$/.exec(raw);
  const step = m ? STEPS.findIndex(([name]) => name === m[1]) : -1;
  // SIGKILL: the kill mode (native/core/plan.h, fault_kill): Node dies there instead of the call failing.
  const errno = !m ? undefined : m[3] === 'SIGKILL' ? -os.constants.signals.SIGKILL : (os.constants.errno as Record<string, number | undefined>)[m[3]!];
  if (!m || step <= 0 || errno === undefined) {
    throw new Error(`NSBOX_TEST_FAULT=${raw}: expected <step name>:<index>:<errno name or SIGKILL> (test only; see docs/testing.md)`);
  }
  const fault = { step, index: Number(m[2]), errno };
  faultCache = { raw, fault };
  return fault;
}
