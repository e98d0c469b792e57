// plan.ts: turns resolved options into the native plan the child runs from: one builder per
// profile (app, machine, machine exec), each filling in the same empty plan, and the translation of
// the child's failure records back into errors. The filesystem part of a plan is fsops.ts's.
import * as path from 'node:path';
import * as os from 'node:os';

import { NsboxError, errnoName } from './errors';
import { explainCause } from './causes';
import { forkClone, pathWalk, testFault } from './env';
import { native, STEPS, STEP, OP_CALLS, OP_CALL_IDS, OP_CALL_SHIFT, stepCall, type NativeOp, type NativePlan } from './native';
import { networkStep } from './network';
import { OpList, type OpMeta } from './fsops';
import { forgetFsOps, fsOpsFor } from './fsops-cache';
import { etcBinds } from './etc-ops';
import type { ResolvedAppOptions } from './options';
import { deviceBinds, type HostDevice } from './devices';

export type { OpMeta };
import { capLast, DEFAULT_CAPS, resolveCaps } from './caps';
import { compileSeccomp, type ResolvedSeccomp } from './seccomp';
import { hostCapability } from './runtime';
import { mergeRlimits, ownRlimit, rlimitFailure, type ResolvedRlimit } from './rlimits';

let nofileHardCache: number | undefined;
/** This process's RLIMIT_NOFILE hard limit (an unprivileged container cannot go above it). */
function nofileHard(): number {
  if (nofileHardCache === undefined) {
    const hard = ownRlimit('nofile')?.hard;
    nofileHardCache = hard === undefined || hard === -1 ? 65536 : hard;
  }
  return nofileHardCache;
}

/** PATH lookup candidates for argv[0], as paths inside the container. */
export function execCandidates(argv0: string, envPath: string): string[] {
  if (argv0.includes('/')) return [argv0];
  const out: string[] = [];
  for (const dir of envPath.split(':')) {
    if (!dir.startsWith('/')) continue;
    const c = (dir.endsWith('/') ? dir : dir + '/') + argv0;
    if (!out.includes(c)) out.push(c);
  }
  return out;
}

/** Turns a failure record from the child into an NsboxError. */
function osConstantsSignalName(n: number): string {
  const name = Object.entries(os.constants.signals).find(([, v]) => v === n)?.[0];
  return name ?? String(n);
}

export function errorFromRecord(
  rec: { step: number; errno: number; index: number },
  ctx: { meta: OpMeta[]; candidates: string[]; command: string[]; rootfs: string | undefined; cwd: string; hostname: string; cgroup?: string; enterRoot?: string; userns?: boolean;
    /** The plan's rlimits: the entry a record of step rlimits indexes. */
    rlimits?: ReadonlyArray<readonly [number, number, number]> },
): NsboxError {
  const stepName = STEPS[rec.step]?.[0] ?? 'unknown';
  const code = errnoName(rec.errno);
  let step = stepName;
  // The call and path that (step, index) names: native/core/steps.h, via lib/steps.ts.
  let { syscall, path: p } = stepCall(rec.step, rec.index);
  const values: Record<string, string | undefined> = {
    '@rootfs': ctx.rootfs ?? '(default rootfs)',
    '@cwd': ctx.cwd,
    '@hostname': ctx.hostname,
    '@cgroup': ctx.cgroup,
    '@cgroup.parent': ctx.cgroup && path.dirname(ctx.cgroup),
    '@candidate': ctx.candidates[rec.index] ?? ctx.command[0],
    '@enterRoot': ctx.enterRoot,
  };
  if (p?.startsWith('@')) p = values[p];
  switch (rec.step) {
    case STEP.mount: {
      forgetFsOps(ctx.meta);
      // The op in the low bits, the call of it that failed above them (native/core/steps.h).
      const n = rec.index >>> OP_CALL_SHIFT;
      const call = OP_CALLS[n];
      const m = ctx.meta[rec.index & ((1 << OP_CALL_SHIFT) - 1)];
      if (m) ({ step, syscall, path: p } = m);
      if (call) syscall = call;
      // Resolving the op's target in the root (OP_CALLS 1, 2): the target is what was not found.
      if ((OP_CALL_IDS[n] === 'RESOLVE' || OP_CALL_IDS[n] === 'WALK') && m?.target) p = m.target;
      break;
    }
    case STEP['exec.died']:
      return new NsboxError({
        code, errno: rec.errno, step,
        message: `the container's process died before its exec (signal ${osConstantsSignalName(rec.index)}), e.g. killed or OOM-killed (step ${step})`,
      });
    case STEP.network:
      ({ step, syscall } = networkStep(rec.index));
      break;
    case STEP.rlimits: {
      // The entry that was refused, by name: `setrlimit nofile (soft 4096, hard 4096): EPERM`.
      const { resource, detail } = rlimitFailure(ctx.rlimits?.[rec.index], code, !ctx.userns && hostCapability('CAP_SYS_RESOURCE'));
      return explainCause(new NsboxError({
        code, errno: rec.errno, syscall, step,
        message: `${syscall ?? 'setrlimit'} ${resource}${detail}: ${code} (step ${step})`,
      }), ctx.userns ?? false);
    }
  }
  // The fields are the kernel's; the message adds what this process's surroundings say about why
  // (a seccomp filter around Node, a masked /proc: lib/causes.ts).
  return explainCause(new NsboxError({ code, errno: rec.errno, syscall, step, path: p }), ctx.userns ?? false);
}


/** The namespaces every container and machine gets: all but the network's and the user's. */
function namespaceFlags(network: string): number {
  const K = native().constants;
  let flags = K.CLONE_NEWNS! | K.CLONE_NEWPID! | K.CLONE_NEWUTS! | K.CLONE_NEWIPC! | K.CLONE_NEWCGROUP!;
  if (network !== 'host') flags += K.CLONE_NEWNET!;
  return flags;
}

/** The namespaces a process entering a machine joins (with its user namespace, if it has one). */
export function enterFlags(network: string, userns: boolean): number {
  return namespaceFlags(network) + (userns ? native().constants.CLONE_NEWUSER! : 0);
}

/**
 * Every plan starts as this one: every field of NativePlan present, in one order, holding what
 * "not used" means to the addon. The profile builders below fill it in place, so every plan of
 * every profile has one shape (V8 gives them one hidden class; a spread into a new literal made a
 * fresh one on each run: a few tens of µs of the JS thread) and no field is left out by one of them.
 */
export function emptyPlan(): NativePlan {
  const fault = testFault();
  return {
    cloneFlags: 0,
    devicePolicy: false,
    staging: '/',
    ops: [],
    opsCompiled: undefined,
    opsAfter: [],
    hostname: null,
    netLoUp: false,
    walkOnly: pathWalk(),
    forkClone: forkClone(),
    netnsReserve: false,
    ipcnsReserve: false,
    mntTemplate: false,
    cwd: null,
    rlimits: [],
    newKeyring: true,
    capLast: 0,
    capsKeep: '0',
    setCreds: true,
    uid: 0,
    gid: 0,
    groups: [],
    noNewPrivs: true,
    pdeathsig: true,
    candidates: [],
    argv: [],
    envp: [],
    initArgv: [],
    initSlot: 0,
    trampFd: -1,
    seccomp: null,
    enterPidfd: -1,
    enterFlags: 0,
    enterRoot: null,
    ptySock: -1,
    ptyCols: undefined,
    ptyRows: undefined,
    usernsSyncFd: -1,
    usernsSyncWriteFd: -1,
    selfUidMap: null,
    selfGidMap: null,
    setgroupsDenied: false,
    // Per run:
    cgroupFd: -1,
    cgroupInto: true,
    cgroupMkdir: undefined,
    cgroupBase: undefined,
    stdio: [-1, -1, -1],
    statusFd: -1,
    statusRead: -1,
    initFd: -1,
    cmdFd: -1,
    pathDirs: undefined,
    net: null,
    // Test only (NSBOX_TEST_FAULT): a fault point; -1 is none.
    faultStep: fault?.step ?? -1,
    faultIndex: fault?.index ?? 0,
    faultErrno: fault?.errno ?? 0,
  };
}

const envp = (env: Record<string, string>): string[] => Object.entries(env).map(([k, v]) => `${k}=${v}`);

/**
 * The app profile: the part of a plan that follows from the options alone, with the per-run fields
 * (fds, the cgroup, the init's argv) left as emptyPlan has them: the launch fills them in place.
 */
export function basePlan(
  o: ResolvedAppOptions, staging: string, capLast: number, userns = false, etcDir?: string, devices: HostDevice[] = [], etcShared = false,
): { plan: NativePlan; meta: OpMeta[]; candidates: string[] } {
  const K = native().constants;
  // Shared /etc files (the same for every start with these options) are bound by the cached list.
  const L = fsOpsFor(o, staging, userns, etcDir !== undefined, devices, etcShared ? etcDir : undefined);
  // The binds of this container's own /etc files follow the shared list (their source is its own),
  // and so do those of its devices (their source is this start's fd of the host node).
  const A = new OpList(staging);
  if (etcDir !== undefined && !etcShared) etcBinds(A, etcDir, o);
  deviceBinds(A, devices, userns);
  const E = A.ops.length ? A : null;
  const candidates = execCandidates(o.command[0]!, o.env.PATH ?? '');
  const keep = resolveCaps(DEFAULT_CAPS, o.capabilities);
  const plan = emptyPlan();
  plan.cloneFlags = namespaceFlags(o.network);
  plan.staging = staging;
  plan.ops = L.ops;
  plan.opsCompiled = L.compiled;
  if (E) plan.opsAfter = E.ops;
  plan.hostname = o.hostname;
  plan.netLoUp = o.network === 'loopback' || o.network === 'bridge';
  plan.netnsReserve = o.network === 'loopback';
  plan.ipcnsReserve = !userns;
  // Without a user namespace the child joins a copy of the template instead of copying the
  // host's mount table (a user namespace's mounts must be its own, made by CLONE_NEWNS).
  plan.mntTemplate = !userns;
  plan.cwd = o.cwd;
  plan.rlimits = mergeRlimits([
    [K.RLIMIT_NOFILE!, Math.min(1024, nofileHard()), Math.min(65536, nofileHard())],
    [K.RLIMIT_CORE!, 0, 0],
  ], o.rlimits);
  plan.capLast = capLast;
  plan.capsKeep = keep.toString();
  plan.uid = o.user.uid;
  plan.gid = o.user.gid;
  plan.groups = o.user.groups;
  plan.candidates = candidates;
  plan.argv = o.command;
  plan.envp = envp(o.env);
  plan.seccomp = o.seccomp ? compileSeccomp(o.seccomp, process.arch, keep) : null;
  return { plan, meta: E ? [...L.meta, ...E.meta] : L.meta, candidates };
}

/**
 * The machine profile's PID 1: the bundled init (with `memfd` as its binary) or the rootfs's own
 * init (with `memfd` as the exec trampoline), root in the machine, the machine's capabilities and
 * filter, no pdeathsig (it outlives this process), stdin the machine's /dev/null and its output on
 * the console log.
 */
export function machinePlan(m: {
  network: string; hostname: string; staging: string; ops: NativeOp[]; keep: bigint; seccomp: ResolvedSeccomp | null;
  init: 'builtin' | string[]; halt: number; env: Record<string, string>; memfd: number; log: number;
  /** The builtin init's one command (MachineOptions.command): its paths to try, and where init reports its wait status. */
  command?: {
    argv: string[]; candidates: string[]; statusFd: number; logCap: number;
    /** MachineOptions.user and cwd: set by the init's child before the execve (init stays root). */
    user?: { uid: number; gid: number; groups: number[] }; cwd?: string;
    /** The user namespace denies setgroups(2) (it maps only its creator): the init does not call it. */
    setgroupsDenied?: boolean;
  };
  /** MachineOptions.rlimits: PID 1's, and so inherited by everything it starts. */
  rlimits: readonly ResolvedRlimit[];
}): NativePlan {
  const K = native().constants;
  const builtin = m.init === 'builtin';
  const plan = emptyPlan();
  plan.cloneFlags = namespaceFlags(m.network);
  plan.staging = m.staging;
  plan.ops = m.ops;
  plan.hostname = m.hostname;
  plan.netLoUp = m.network === 'loopback' || m.network === 'bridge';
  plan.netnsReserve = m.network === 'loopback';
  plan.cwd = '/';
  plan.rlimits = mergeRlimits([[K.RLIMIT_CORE!, 0, -1]], m.rlimits);
  plan.capLast = capLast();
  plan.capsKeep = m.keep.toString();
  plan.noNewPrivs = false;
  plan.pdeathsig = false;
  // stdin: the machine's own /dev/null (opened by the child in its root, never the host's).
  plan.stdio = [K.STDIO_DEV_NULL!, m.log, m.log];
  plan.candidates = builtin ? (m.command ? m.command.candidates : []) : [m.init[0]!];
  plan.argv = builtin ? (m.command ? m.command.argv : ['nsbox-init']) : (m.init as string[]);
  plan.envp = envp(m.env);
  plan.initFd = builtin ? m.memfd : -1;
  const initArgv = ['nsbox-init', '--halt-signal', String(m.halt), '--grace-ms', '10000'];
  if (builtin && m.command) {
    // As an app container's init: the command found among the candidates goes into the empty slot;
    // init reports its raw wait status on fd 3 (the status file) and exits with it.
    plan.statusFd = m.command.statusFd;
    // Its stdout and stderr: a pipe init copies into the console log, kept under logCap bytes.
    const c = m.command;
    const own = ['--log-cap', String(c.logCap), '--status-fd', '3'];
    if (c.user) {
      own.push('--user', `${c.user.uid}:${c.user.gid}`);
      if (!c.setgroupsDenied) own.push('--groups', c.user.groups.join(','));
    }
    if (c.cwd !== undefined) own.push('--cwd', c.cwd);
    plan.initArgv = [...initArgv, ...own, '--', '', ...c.argv.slice(1)];
    plan.initSlot = initArgv.length + own.length + 1;
  } else {
    plan.initArgv = builtin ? initArgv : [];
    plan.initSlot = -1;
  }
  plan.trampFd = builtin ? -1 : m.memfd;
  plan.seccomp = m.seccomp ? compileSeccomp(m.seccomp, process.arch, m.keep) : null;
  return plan;
}

/**
 * A process entering a running machine (Machine.exec): no namespaces of its own, it joins PID 1's
 * (`enterPidfd`, `enterFlags`) and is cloned into the machine's cgroup (`cgroupFd`, not moved
 * there after), then execs through the trampoline (`memfd`) with the machine's capabilities and
 * filter.
 */
export function execPlan(x: {
  enterPidfd: number; enterFlags: number; enterRoot: string; cgroupFd: number; capsKeep: string; seccomp: Buffer | null;
  cwd: string; user: { uid: number; gid: number; groups: number[] }; argv: string[]; candidates: string[]; env: Record<string, string>;
  stdio: [number, number, number]; memfd: number; ptySock: number; columns: number; rows: number; setgroupsDenied: boolean;
  /** The machine's rlimits, then the exec's own over them. */
  rlimits: ReadonlyArray<readonly ResolvedRlimit[]>;
}): NativePlan {
  const K = native().constants;
  const plan = emptyPlan();
  plan.cgroupFd = x.cgroupFd;
  plan.cgroupInto = false;
  plan.cwd = x.cwd;
  plan.rlimits = mergeRlimits([[K.RLIMIT_CORE!, 0, -1]], ...x.rlimits);
  plan.capLast = capLast();
  plan.capsKeep = x.capsKeep;
  plan.uid = x.user.uid;
  plan.gid = x.user.gid;
  plan.groups = x.user.groups;
  plan.noNewPrivs = false;
  plan.stdio = x.stdio;
  plan.candidates = x.candidates;
  plan.argv = x.argv;
  plan.envp = envp(x.env);
  plan.trampFd = x.memfd;
  plan.seccomp = x.seccomp;
  plan.enterPidfd = x.enterPidfd;
  plan.enterFlags = x.enterFlags;
  plan.enterRoot = x.enterRoot;
  plan.ptySock = x.ptySock;
  plan.ptyCols = x.columns;
  plan.ptyRows = x.rows;
  plan.setgroupsDenied = x.setgroupsDenied;
  return plan;
}
