// env.ts: the environment settings the TypeScript side reads, in one place. Each is read where a
// start is planned (on the JS thread), never in the child: the plan is the core's only input.
// The addon's switches are read here too: NSBOX_FORCE_PATH_WALK and NSBOX_FORK_CLONE go into every
// plan (emptyPlan), NSBOX_NETNS_RESERVE, NSBOX_IPCNS_RESERVE and NSBOX_MNT_TEMPLATE to the addon once,
// when it is loaded (addonSettings, lib/native.ts). The addon reads no environment variable.
// docs/testing.md says what each is for.

import * as os from 'node:os';
import { STEPS } from './steps';

/** NSBOX_FORCE_PATH_WALK=1: the per-component resolver used where openat2 is missing (test support; plan.walkOnly). */
export function pathWalk(): boolean {
  return process.env.NSBOX_FORCE_PATH_WALK === '1';
}

/** NSBOX_FORK_CLONE: the fork-style clone (test support; plan.forkClone). */
export function forkClone(): boolean {
  return !!process.env.NSBOX_FORK_CLONE;
}

/** A reserve's size: digits only, 0-64 (0 turns it off); anything else is the default, 2. */
function reserveSize(raw: string | undefined): number {
  if (raw === undefined || !/^[0-9]+$/.test(raw)) return 2;
  const n = Number(raw);
  return n <= 64 ? n : 2;
}

/**
 * The addon's settings, read once when it is loaded: the sizes of the network and IPC namespace
 * reserves (NSBOX_NETNS_RESERVE, NSBOX_IPCNS_RESERVE) and whether the mount namespace template is
 * used (NSBOX_MNT_TEMPLATE=0 turns it off).
 */
export function addonSettings(): { netnsReserve: number; ipcnsReserve: number; mntTemplate: boolean } {
  return {
    netnsReserve: reserveSize(process.env.NSBOX_NETNS_RESERVE),
    ipcnsReserve: reserveSize(process.env.NSBOX_IPCNS_RESERVE),
    mntTemplate: process.env.NSBOX_MNT_TEMPLATE !== '0',
  };
}

/**
 * Whether `debug` (the npm package) would enable one of `names` for this DEBUG value: names
 * separated by commas or spaces, `*` matching anything, a leading `-` excluding (any of them
 * excluded: none is enabled).
 */
export function debugEnables(value: string | undefined, names: readonly string[]): boolean {
  if (!value) return false;
  const re = (p: string): RegExp => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*?')}$`);
  const parts = value.split(/[\s,]+/).filter(Boolean);
  const any = (p: string): boolean => names.some((n) => re(p).test(n));
  if (parts.some((p) => p.startsWith('-') && any(p.slice(1)))) return false;
  return parts.some((p) => !p.startsWith('-') && any(p));
}

/**
 * NSBOX_DEBUG=1 (any value but empty or 0), or DEBUG enabling the namespace `nsbox` as the debug
 * package reads it (DEBUG=nsbox, nsbox:*, nsbox*, *; its namespaces are nsbox and nsbox:start): each start's steps on stderr (lib/trace.ts). Read
 * once, when nsbox is loaded.
 */
export const debugTrace: boolean = (() => {
  const v = process.env.NSBOX_DEBUG;
  return (v !== undefined && v !== '' && v !== '0') || debugEnables(process.env.DEBUG, ['nsbox', 'nsbox:start']);
})();

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
