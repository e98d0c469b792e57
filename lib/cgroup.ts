// cgroup.ts: where nsbox's cgroups live on this host, and one cgroup per container.
//
// Each container gets <this process's cgroup>/nsbox/<node pid>.<seq> (never above the caller's own
// cgroup: #22), created before the clone and joined by the
// clone itself (CLONE_INTO_CGROUP), so limits hold from the first instruction. The v2 mount is found
// in mountinfo, never assumed. On a hybrid host (controllers bound to v1) the cgroup still gives
// kill, freeze and cpu.stat; a requested limit is an ENOTSUP error naming the controller.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { NsboxError, notSupported, fromSystemError } from './errors';
import { nestedPidns } from './lease';
import { native } from './native';
import type { CgroupMode, Limits, Pressure, PressureFigures, Stats } from './types';

export interface CgroupHost {
  mode: CgroupMode;
  mountPoint: string | null;
  /** This process's cgroup relative to the v2 mount ('/' at the root). */
  self: string | null;
  /** Directory under which nsbox makes container cgroups, or null when it cannot. */
  base: string | null;
  /** The cgroup that holds the base (controllers are enabled in its subtree_control). */
  parent: string | null;
  /** The parent is not the real root (a cgroup namespace, a delegated subtree, a service's or pod's cgroup): it may hold processes. */
  nested: boolean;
  /** Controllers the base's parent offers (cgroup.controllers). */
  controllers: string[];
  writable: boolean;
  /** The base sits in this process's own cgroup, which was delegated to it (chowned to its uid). */
  delegated: boolean;
  reason: string | null;
}

let hostCache: CgroupHost | undefined;

/** Unescape a mountinfo path field (octal escapes for space, tab, newline, backslash). */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function detectCgroupHost(refresh = false): CgroupHost {
  if (hostCache && !refresh) return hostCache;
  let mountinfo = '';
  try {
    mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    /* no /proc: no cgroups */
  }
  let v2: string | null = null;
  let v1 = false;
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    const fstype = post[0];
    if (fstype === 'cgroup2' && pre[3] === '/' && v2 === null) v2 = unescapeMountPath(pre[4] ?? '');
    if (fstype === 'cgroup') v1 = true;
  }
  let self: string | null = null;
  try {
    const m = /^0::(.*)$/m.exec(fs.readFileSync('/proc/self/cgroup', 'utf8'));
    if (m) self = m[1] ?? null;
  } catch {
    /* ignore */
  }
  const mode: CgroupMode = v2 ? (v1 ? 'hybrid' : 'unified') : v1 ? 'legacy' : 'none';
  let base: string | null = null;
  let parent: string | null = null;
  let controllers: string[] = [];
  let writable = false;
  let reason: string | null = null;
  let nested = false;
  let delegated = false;
  if (v2) {
    // Always inside this process's own cgroup, never above it (#22): in a pod without a cgroup
    // namespace the containers would otherwise land at the host's root, outside the pod's limits
    // and accounting. A process that nsbox moved to its leaf ('nsbox-supervisor') counts as in the
    // leaf's parent, shared with the processes started from it.
    const ownRel = self && self !== '/' ? self.replace(/\/nsbox-supervisor$/, '') || '/' : '/';
    parent = path.join(v2, ownRel);
    // The real root cgroup has no cgroup.freeze. Anywhere else (a cgroup namespace, a delegated
    // subtree, a service's or a pod's cgroup) the parent may hold processes, and the "no internal
    // processes" rule applies before controllers can be enabled below it.
    nested = fs.existsSync(path.join(parent, 'cgroup.freeze'));
    try {
      controllers = fs.readFileSync(path.join(parent, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      controllers = [];
    }
    let topWritable = false;
    try {
      fs.accessSync(v2, fs.constants.W_OK);
      topWritable = true;
    } catch {
      /* not root over the hierarchy: a delegated subtree or nothing */
    }
    try {
      fs.accessSync(parent, fs.constants.W_OK);
      // Not root: the cgroup this process is in, made writable for it (systemd's Delegate=yes, or a
      // cgroup an administrator chowned); moving to a leaf needs its cgroup.procs too.
      if (!topWritable) fs.accessSync(path.join(parent, 'cgroup.procs'), fs.constants.W_OK);
      writable = true;
      delegated = !topWritable;
      base = path.join(parent, 'nsbox');
    } catch (e) {
      // A read-only cgroupfs (what runc, crun and containerd mount in a container that is not
      // privileged) refuses root too: delegation is not the remedy there.
      reason =
        (e as NodeJS.ErrnoException).code === 'EROFS'
          ? `the cgroup v2 hierarchy at ${v2} is mounted read-only here (EROFS; what container runtimes give a container that is not privileged), so no cgroup can be made in this process's own cgroup ${parent}. Give the container a writable cgroupfs: a privileged one (Kubernetes securityContext.privileged: true, docker/podman run --privileged), or mount cgroup2 read-write in it`
          : `no delegated cgroup v2 subtree: this process's own cgroup ${parent} is not writable by uid ${process.geteuid?.()}. Run under a delegated cgroup (systemd-run --user --scope -p Delegate=yes ..., or have root chown a cgroup and its cgroup.procs, cgroup.subtree_control and cgroup.threads to you and move the process into it)`;
    }
  } else {
    reason = mode === 'legacy' ? 'the host has only cgroup v1' : 'no cgroup v2 hierarchy is mounted';
  }
  hostCache = { mode, mountPoint: v2, self, base, parent, nested, controllers, writable, delegated, reason };
  return hostCache;
}

/** The host's placement, redirected under a user-managed parent (the `cgroupParent` option). */
export function withParent(host: CgroupHost, cgroupParent: string): CgroupHost {
  if (!host.mountPoint) throw notSupported('cgroup.parent', `cgroupParent needs a cgroup v2 hierarchy: ${host.reason ?? 'none mounted'}`);
  const parent = path.join(host.mountPoint, cgroupParent);
  let controllers: string[];
  try {
    controllers = fs.readFileSync(path.join(parent, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean);
    fs.accessSync(parent, fs.constants.W_OK);
  } catch (e) {
    throw fromSystemError(e, 'cgroup.parent', parent);
  }
  return { ...host, parent, base: parent, nested: false, controllers, writable: true, reason: null };
}

const LIMIT_CONTROLLER: Record<keyof Limits, string> = {
  memory: 'memory',
  memoryHigh: 'memory',
  swap: 'memory',
  pids: 'pids',
  cpu: 'cpu',
  cpuWeight: 'cpu',
  ioWeight: 'io',
  cpuset: 'cpuset',
};

/** Resolved limit values, ready to be written (see options.ts for parsing). */
export interface ResolvedLimits {
  memory?: number;
  memoryHigh?: number;
  swap?: number;
  pids?: number;
  cpu?: number;
  cpuWeight?: number;
  ioWeight?: number;
  cpuset?: string;
}

/** The controllers a set of limits needs; throws ENOTSUP naming the first one the host lacks. */
export function requireControllers(limits: ResolvedLimits, host: CgroupHost): string[] {
  const needed: string[] = [];
  for (const key of Object.keys(limits) as Array<keyof Limits>) {
    if (limits[key] === undefined) continue;
    const c = LIMIT_CONTROLLER[key];
    if (!needed.includes(c)) needed.push(c);
  }
  for (const c of needed) {
    if (host.base && host.controllers.includes(c)) continue;
    let why: string;
    if (!host.base && host.reason && host.reason.startsWith('no delegated')) {
      why = host.reason;
    } else if (host.mode === 'hybrid') {
      why = `the host runs hybrid cgroups: the ${c} controller is bound to cgroup v1, and cgroup v2 at ${host.mountPoint} has only [${host.controllers.join(' ') || 'no controllers'}]`;
    } else if (!host.base) {
      why = host.reason ?? 'no usable cgroup v2 hierarchy';
    } else {
      why = `cgroup v2 at ${host.mountPoint} does not offer it (available: ${host.controllers.join(' ') || 'none'})`;
    }
    throw notSupported('cgroup.limits', `the ${c} controller is not available for limits: ${why}`, host.mountPoint ?? undefined);
  }
  return needed;
}

let seq = 0;
let live = 0;
/** The controllers' cgroup files a container's stats come from (readStats; cpu.stat is always there). */
const STAT_FILES = ['memory.current', 'memory.peak', 'pids.current', 'pids.peak', 'pids.events', 'io.stat', 'memory.events'];
/** Pressure stall files (cgroup core files, there whatever the controllers, when the kernel has PSI). */
const PRESSURE_FILES = ['memory.pressure', 'cpu.pressure', 'io.pressure'] as const;

function pressureLine(line: string): PressureFigures | undefined {
  const f: Record<string, number> = {};
  for (const kv of line.trim().split(/\s+/).slice(1)) {
    const eq = kv.indexOf('=');
    if (eq <= 0) return undefined;
    const v = kv.slice(eq + 1);
    if (!/^\d+(\.\d+)?$/.test(v)) return undefined;
    f[kv.slice(0, eq)] = Number(v);
  }
  const { avg10, avg60, avg300, total } = f;
  if (avg10 === undefined || avg60 === undefined || avg300 === undefined || total === undefined) return undefined;
  return { avg10, avg60, avg300, total };
}

/**
 * Parses a PSI file ("some avg10=0.12 avg60=0.05 avg300=0.01 total=12345" and the same for "full"):
 * undefined unless a well-formed `some` line is there (no file, EOPNOTSUPP, or a format this
 * parser does not know); `full` only when its line is well-formed. Unknown keys are ignored.
 */
export function parsePressure(text: string | null | undefined): Pressure | undefined {
  if (!text) return undefined;
  let some: PressureFigures | undefined;
  let full: PressureFigures | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('some ')) some = pressureLine(line);
    else if (line.startsWith('full ')) full = pressureLine(line);
  }
  if (!some) return undefined;
  return full ? { some, full } : { some };
}

/** nsbox base directories this process used: removed at exit when empty. */
const basesUsed = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    removeIdleBases();
    undoPlacement();
  });
}

function removeIdleBases(): void {
  for (const b of basesUsed) {
    try {
      fs.rmdirSync(b);
      basesUsed.delete(b);
    } catch {
      /* in use by another process, or already gone */
    }
  }
}

/**
 * rmdir of a cgroup and every cgroup below it, children first. cgroupfs files need no removal.
 * A container with a writable cgroupfs (a machine's) can nest cgroups deeper than PATH_MAX: past
 * 2 KiB the walk goes on from an fd of the directory reached (`/proc/self/fd/N/...`), so every
 * path it uses stays short (attack review: `delete --force` failed for good on such a tree).
 */
function rmTree(dir: string): void {
  // The directory alone first: a leaf (every container's cgroup) goes without the fd a listing
  // takes, so it is removed even when the process is out of fds (EMFILE: issue #17).
  try {
    fs.rmdirSync(dir);
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'EBUSY' && code !== 'ENOTEMPTY') throw e;
  }
  let fd = -1;
  try {
    let base = dir;
    if (dir.length > 2048) {
      fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
      base = `/proc/self/fd/${fd}`;
    }
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(base, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const e of entries) if (e.isDirectory()) rmTree(path.join(base, e.name));
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
  fs.rmdirSync(dir);
}
const cleaned = new Set<string>();

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether this process sees every process of the host: it is in the initial pid namespace. */
export function seesAllPids(): boolean {
  return !nestedPidns();
}

/**
 * Removes what a crashed nsbox process left: cgroups named <pid>.<n> whose pid is gone. Anything
 * still running in one is killed first (its owner can no longer account for it). Only from the
 * initial pid namespace: from any other, a live nsbox process elsewhere (on the host) looks dead,
 * and its running containers would be killed (issue #17's soak: a Node under `unshare -p` killed
 * every container of every other Node on the host with its first start).
 *
 * Asynchronous: the starts that trigger it go on without it, and Node's thread never waits for a
 * cgroup that a container's processes keep busy while they die.
 */
export async function removeStale(base: string): Promise<number> {
  // In a pid namespace other than the initial one, the pids of processes outside it are not
  // visible: a cgroup named after one would look abandoned while its Node runs on. Only an owner
  // provably dead is swept, so nothing is swept from there (#17: a test runner under `unshare -p`
  // killed every container of every other Node on the host, and removed fresh cgroups under starts).
  if (!seesAllPids()) return 0;
  let names: string[];
  try {
    names = fs.readdirSync(base);
  } catch {
    return 0;
  }
  const stale = names.filter((n) => {
    const m = /^(\d+)\.\d+$/.exec(n);
    return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  });
  const done = await Promise.all(stale.map((n) => killAndRemove(path.join(base, n))));
  return done.filter(Boolean).length;
}

/**
 * Kills whatever runs in a cgroup nobody accounts for any more (cgroup.kill) and removes it (and the
 * cgroups below it): at once, then, while the killed processes leave (EBUSY), on timers that keep
 * the process alive (never blocking the thread; about 5 s at most). True when it is gone.
 */
export function killAndRemove(dir: string): Promise<boolean> {
  try {
    fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1');
  } catch {
    /* empty already, gone, or no cgroup.kill */
  }
  // Once the path holds another cgroup (a start of the same machine name made its own:
  // ContainerCgroup.create), the retries stop; each checks the inode just before its rmdir.
  let ino: number;
  try {
    ino = fs.statSync(dir).ino;
  } catch {
    return Promise.resolve(true);
  }
  return new Promise((resolve) => {
    let i = 0;
    let delay = 1;
    const attempt = (): void => {
      try {
        if (i > 0 && fs.statSync(dir).ino !== ino) return resolve(true);
        rmTree(dir);
        return resolve(true);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return resolve(true);
        if ((code !== 'EBUSY' && code !== 'ENOTEMPTY') || ++i >= 60) return resolve(false);
        setTimeout(attempt, delay);
        delay = Math.min(delay * 2, 100);
      }
    };
    attempt();
  });
}

/**
 * Inside a cgroup namespace or a delegated subtree the top cgroup holds this process, and cgroup v2
 * allows controllers to be enabled for children only of a cgroup without processes. Move the Node
 * process into a leaf of its own (once), as runc and systemd do in that position.
 */
let movedToLeaf = false;
function moveSelfToLeaf(parent: string): void {
  if (movedToLeaf) return;
  let procs = '';
  try {
    procs = fs.readFileSync(path.join(parent, 'cgroup.procs'), 'utf8').trim();
  } catch (e) {
    throw fromSystemError(e, 'cgroup.controllers', path.join(parent, 'cgroup.procs'));
  }
  if (procs === '') return;
  // Only this process is moved. Any other process here (the shell that started Node and stayed,
  // npm, tini) would keep the controllers from being enabled (EBUSY), so nothing is moved and the
  // error names them, before anything changed.
  const others = procs.split('\n').map(Number).filter((pid) => pid !== process.pid);
  if (others.length) {
    const named = others.slice(0, 5).map((pid) => `${pid} (${commOf(pid)})`).join(', ');
    throw new NsboxError({
      code: 'EBUSY',
      errno: 16,
      syscall: 'write',
      step: 'cgroup.controllers',
      path: path.join(parent, 'cgroup.procs'),
      message:
        `limits need controllers enabled below ${parent}, which holds other processes besides this one: ${named}${others.length > 5 ? ` and ${others.length - 5} more` : ''}. ` +
        "Start Node so that nothing else stays in its cgroup (sh -c 'exec node ...', npm's script-shell aside: run node directly; tini -s or dumb-init as PID 1 with their own cgroup), " +
        'or give nsbox a cgroup of its own (systemd-run --scope -p Delegate=yes ..., a container runtime\'s --cgroupns=private with a writable cgroupfs, or the cgroupParent option) (step cgroup.controllers)',
    });
  }
  const leaf = path.join(parent, 'nsbox-supervisor');
  try {
    fs.mkdirSync(leaf);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(e, 'cgroup.controllers', leaf);
  }
  writeFile(leaf, 'cgroup.procs', String(process.pid), 'cgroup.controllers');
  movedToLeaf = true;
}

function commOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

function writeFile(dir: string, file: string, value: string, step: string): void {
  const p = path.join(dir, file);
  try {
    fs.writeFileSync(p, value);
  } catch (e) {
    const err = fromSystemError(e, step, p);
    throw new NsboxError({
      code: err.code,
      errno: err.errno,
      syscall: 'write',
      step,
      path: p,
      message: `write "${value}" to ${p}: ${err.code} (step ${step})`,
    });
  }
}

function enableControllers(dir: string, controllers: string[]): string[] {
  if (controllers.length === 0) return [];
  let have: string[] = [];
  try {
    have = fs.readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8').trim().split(/\s+/);
  } catch {
    /* written below, which reports the error */
  }
  const missing = controllers.filter((c) => !have.includes(c));
  if (missing.length) writeFile(dir, 'cgroup.subtree_control', missing.map((c) => '+' + c).join(' '), 'cgroup.controllers');
  return missing;
}

/** Controllers this process enabled in a parent's subtree_control (undone at exit: undoPlacement). */
const enabledHere = new Map<string, Set<string>>();

/**
 * At exit, what this process did to the cgroup it was started in is undone where nothing needs it
 * any more: the controllers it enabled there (only once nsbox's base below it is gone, and only
 * when no other cgroup but nsbox's leaf is below it, so that no one's limits are taken away), then
 * this process goes back from the leaf, and the leaf is removed. Otherwise a delegated cgroup keeps
 * a subtree_control that refuses the next process moved into it (EBUSY): the recipe would work once.
 */
function undoPlacement(): void {
  for (const [parent, ctrls] of enabledHere) {
    let children: string[];
    try {
      children = fs.readdirSync(parent, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    } catch {
      continue;
    }
    if (children.some((n) => n !== 'nsbox-supervisor')) continue;
    try {
      fs.writeFileSync(path.join(parent, 'cgroup.subtree_control'), [...ctrls].map((c) => '-' + c).join(' '));
      enabledHere.delete(parent);
    } catch {
      continue; /* still in use below */
    }
    if (!movedToLeaf) continue;
    try {
      if (fs.readFileSync(path.join(parent, 'cgroup.subtree_control'), 'utf8').trim() !== '') continue;
      fs.writeFileSync(path.join(parent, 'cgroup.procs'), String(process.pid));
      movedToLeaf = false;
      fs.rmdirSync(path.join(parent, 'nsbox-supervisor'));
    } catch {
      /* another process is still in the leaf: it stays */
    }
  }
}

/** One container's cgroup directory. */
export class ContainerCgroup {
  readonly path: string;
  private fd = -1;
  private removed = false;

  private constructor(p: string) {
    this.path = p;
  }

  /**
   * A cgroup without limits whose directory the addon's spawnAsync worker makes and opens
   * (plan.cgroupMkdir): not on the JS thread, where a mkdir waits for the cgroup lock that other
   * containers' clones and exits hold meanwhile. Until the clone, nothing exists; a failure to make
   * it comes back as the spawn's error (step cgroup.create), and remove() tolerates its absence.
   */
  static deferred(host: CgroupHost): ContainerCgroup | null {
    if (!host.base || !host.parent) return null;
    if (!cleaned.has(host.base)) {
      cleaned.add(host.base);
      void removeStale(host.base);
    }
    live++;
    return new ContainerCgroup(path.join(host.base, `${process.pid}.${++seq}`));
  }

  /** Makes the directory, enables what the limits need, writes them, opens the dirfd for clone3. */
  static create(host: CgroupHost, limits: ResolvedLimits | undefined, name?: string): ContainerCgroup | null {
    const needed = limits ? requireControllers(limits, host) : [];
    if (!host.base || !host.parent) return null;
    if (!cleaned.has(host.base)) {
      cleaned.add(host.base);
      void removeStale(host.base);
    }
    const dir = path.join(host.base, name ?? `${process.pid}.${++seq}`);
    for (let attempt = 0; ; attempt++) {
      try {
        fs.mkdirSync(dir);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' && attempt < 3) {
          try {
            fs.mkdirSync(host.base);
          } catch (e2) {
            if ((e2 as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(e2, 'cgroup.create', host.base);
          }
          continue;
        }
        // A named (machine) cgroup whose earlier machine of that name was reclaimed as abandoned
        // (machine-state.ts): its killed processes may still be leaving it. Its name is this
        // start's (claimed under the state lock), so an empty one is removed and made again; one
        // still busy is the EBUSY reported below.
        if (code === 'EEXIST' && name !== undefined && attempt < 3) {
          try {
            rmTree(dir);
            continue;
          } catch (e2) {
            throw fromSystemError(e2, 'cgroup.create', dir);
          }
        }
        throw fromSystemError(e, 'cgroup.create', dir);
      }
    }
    live++;
    const cg = new ContainerCgroup(dir);
    try {
      if (needed.length && limits) {
        if (host.nested) moveSelfToLeaf(host.parent);
        const added = enableControllers(host.parent, needed);
        if (added.length) {
          const set = enabledHere.get(host.parent) ?? new Set<string>();
          for (const c of added) set.add(c);
          enabledHere.set(host.parent, set);
          installExitHook();
        }
        enableControllers(host.base, needed);
        cg.writeLimits(limits);
      }
      cg.fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    } catch (e) {
      cg.removeNow();
      throw e instanceof NsboxError ? e : fromSystemError(e, 'cgroup.create', dir);
    }
    return cg;
  }

  private writeLimits(l: ResolvedLimits): void {
    const step = 'cgroup.limits';
    if (l.cpuset !== undefined) writeFile(this.path, 'cpuset.cpus', l.cpuset, step);
    // memory.high only when asked: a default just below memory.max (nsbox wrote 90 % until #17)
    // throttled a runaway program re-reading its own code pages forever instead of killing it.
    if (l.memoryHigh !== undefined) writeFile(this.path, 'memory.high', String(Math.floor(l.memoryHigh / 4096) * 4096), step);
    if (l.memory !== undefined) {
      writeFile(this.path, 'memory.max', String(l.memory), step);
      writeFile(this.path, 'memory.oom.group', '1', step);
      const swap = l.swap ?? 0;
      if (fs.existsSync(path.join(this.path, 'memory.swap.max'))) writeFile(this.path, 'memory.swap.max', String(swap), step);
      else if (l.swap !== undefined) throw notSupported(step, 'swap limit requested but memory.swap.max is missing (swap accounting off)', this.path);
    } else if (l.swap !== undefined) {
      writeFile(this.path, 'memory.swap.max', String(l.swap), step);
    }
    if (l.pids !== undefined) writeFile(this.path, 'pids.max', String(l.pids), step);
    if (l.cpu !== undefined) {
      const period = 100000;
      writeFile(this.path, 'cpu.max', `${Math.max(1000, Math.round(l.cpu * period))} ${period}`, step);
    }
    if (l.cpuWeight !== undefined) writeFile(this.path, 'cpu.weight', String(l.cpuWeight), step);
    if (l.ioWeight !== undefined) {
      const f = fs.existsSync(path.join(this.path, 'io.weight')) ? 'io.weight' : 'io.bfq.weight';
      writeFile(this.path, f, `default ${l.ioWeight}`, step);
    }
  }

  /** An existing cgroup (a machine's, found from its state), not counted as this process's. */
  static adopt(p: string): ContainerCgroup {
    const cg = new ContainerCgroup(p);
    live++;
    return cg;
  }

  /** Opens the O_DIRECTORY fd (again) for CLONE_INTO_CGROUP. */
  openFd(sub?: string): number {
    this.closeFd();
    const dir = sub ? path.join(this.path, sub) : this.path;
    try {
      this.fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    } catch (e) {
      throw fromSystemError(e, 'cgroup.open', dir);
    }
    return this.fd;
  }

  /** The O_DIRECTORY fd for CLONE_INTO_CGROUP; closed after the clone. */
  get dirFd(): number {
    return this.fd;
  }

  closeFd(): void {
    if (this.fd >= 0) {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }

  /** SIGKILL every process in the cgroup (cgroup.kill, Linux 5.14). Returns false if unsupported. */
  kill(): boolean {
    if (this.removed) return true;
    try {
      fs.writeFileSync(path.join(this.path, 'cgroup.kill'), '1');
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return false;
      throw fromSystemError(e, 'cgroup.kill', path.join(this.path, 'cgroup.kill'));
    }
  }

  async setFrozen(frozen: boolean): Promise<void> {
    const file = path.join(this.path, 'cgroup.freeze');
    if (!fs.existsSync(file)) throw notSupported(frozen ? 'freeze' : 'thaw', 'cgroup.freeze is not available (Linux 5.2+ cgroup v2)', file);
    writeFile(this.path, 'cgroup.freeze', frozen ? '1' : '0', frozen ? 'freeze' : 'thaw');
    // The write returns before every task has stopped; cgroup.events says when it has.
    const want = frozen ? 'frozen 1' : 'frozen 0';
    for (let delay = 1, waited = 0; ; delay = Math.min(delay * 2, 50)) {
      let events = '';
      try {
        events = fs.readFileSync(path.join(this.path, 'cgroup.events'), 'utf8');
      } catch (e) {
        throw fromSystemError(e, frozen ? 'freeze' : 'thaw', path.join(this.path, 'cgroup.events'));
      }
      if (events.includes(want) || events.includes('populated 0')) return;
      if (waited > 10000) {
        throw new NsboxError({ code: 'ETIMEDOUT', step: frozen ? 'freeze' : 'thaw', path: this.path, message: `cgroup ${this.path} did not reach '${want}' within 10 s` });
      }
      await sleep(delay);
      waited += delay;
    }
  }

  readStats(fallbackCpuUs: number): Stats & { oomKills?: number } {
    const out: Stats & { oomKills?: number } = { cpuUsageUs: fallbackCpuUs };
    // Native reads (no exception for an absent file): the controllers and cpu.stat first, then the
    // files of the controllers this cgroup has (some, e.g. memory.peak, depend on the kernel: null).
    const n = native();
    const [ctl, cpuStat, memPsi, cpuPsi, ioPsi] = n.readFiles(this.path, ['cgroup.controllers', 'cpu.stat', ...PRESSURE_FILES]);
    const have = new Set((ctl ?? '').trim().split(/\s+/));
    const more = STAT_FILES.filter((f) => have.has(f.slice(0, f.indexOf('.'))));
    const got = more.length ? n.readFiles(this.path, more) : [];
    const read = (f: string): string | undefined => (f === 'cpu.stat' ? cpuStat : got[more.indexOf(f)]) ?? undefined;
    const cpu = read('cpu.stat');
    const m = cpu && /^usage_usec (\d+)/m.exec(cpu);
    if (m) out.cpuUsageUs = Number(m[1]);
    const num = (f: string): number | undefined => {
      const v = read(f)?.trim();
      return v === undefined || v === '' || v === 'max' ? undefined : Number(v);
    };
    const mc = num('memory.current');
    if (mc !== undefined) out.memoryCurrentBytes = mc;
    const mp = num('memory.peak');
    if (mp !== undefined) out.memoryPeakBytes = mp;
    const pc = num('pids.current');
    if (pc !== undefined) out.pidsCurrent = pc;
    const pp = num('pids.peak');
    if (pp !== undefined) out.pidsPeak = pp;
    const pev = read('pids.events');
    const pmax = pev && /^max (\d+)/m.exec(pev);
    if (pmax) out.pidsLimitHits = Number(pmax[1]);
    const io = read('io.stat');
    if (io !== undefined) {
      let rb = 0;
      let wb = 0;
      for (const m of io.matchAll(/\brbytes=(\d+)/g)) rb += Number(m[1]);
      for (const m of io.matchAll(/\bwbytes=(\d+)/g)) wb += Number(m[1]);
      out.ioReadBytes = rb;
      out.ioWriteBytes = wb;
    }
    const ev = read('memory.events');
    const oom = ev && /^oom_kill (\d+)/m.exec(ev);
    if (oom) out.oomKills = Number(oom[1]);
    const memPressure = parsePressure(memPsi);
    if (memPressure) out.memoryPressure = memPressure;
    const cpuPressure = parsePressure(cpuPsi);
    if (cpuPressure) out.cpuPressure = cpuPressure;
    const ioPressure = parsePressure(ioPsi);
    if (ioPressure) out.ioPressure = ioPressure;
    return out;
  }

  /** Calls `onOom(count)` whenever memory.events' oom_kill rises (inotify on the events file). */
  watchOom(onOom: (count: number) => void): (() => void) | null {
    const file = path.join(this.path, 'memory.events');
    if (!fs.existsSync(file)) return null;
    let seen = 0;
    const check = (): void => {
      let n = seen;
      try {
        const m = /^oom_kill (\d+)/m.exec(fs.readFileSync(file, 'utf8'));
        if (m) n = Number(m[1]);
      } catch {
        return;
      }
      if (n > seen) {
        seen = n;
        onOom(n);
      }
    };
    const w = fs.watch(file, { persistent: false }, check);
    w.on('error', () => {});
    return () => {
      check();
      w.close();
    };
  }

  /**
   * Waits until no process is left, then removes the directory and any cgroups made below it (a
   * systemd inside a machine makes a whole tree), deepest first, retrying EBUSY with backoff.
   */
  async remove(offThread = false): Promise<void> {
    if (this.removed) return;
    this.closeFd();
    for (let delay = 1, waited = 0; ; delay = Math.min(delay * 2, 100)) {
      try {
        // App containers cannot make cgroups below their own; a machine's systemd can.
        // offThread: on libuv's pool, for a busy process (an rmdir waits for the cgroup lock,
        // which the clones and the kernel's cgroup clean-up of other containers hold meanwhile).
        try {
          if (offThread) await fs.promises.rmdir(this.path);
          else fs.rmdirSync(this.path);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
          rmTree(this.path);
        }
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code !== 'EBUSY' || waited > 10000) throw fromSystemError(e, 'cgroup.remove', (e as NodeJS.ErrnoException).path ?? this.path);
        this.kill();
        await sleep(delay);
        waited += delay;
      }
    }
    this.finish();
  }

  /** Synchronous removal for failure paths where nothing ever ran in the cgroup. */
  removeNow(): void {
    if (this.removed) return;
    this.closeFd();
    try {
      rmTree(this.path);
    } catch {
      /* nothing ran in it; if it still exists something else is wrong and remove() reports it */
    }
    this.finish();
  }

  private finish(): void {
    this.removed = true;
    live--;
    // Only nsbox's own base is removed, never a user's cgroupParent. Not after every container
    // (the next one would make it again): when this process exits, or after a second without
    // containers. Another nsbox process may be using it: rmdir of a non-empty cgroup fails (EBUSY)
    // and that is fine; a racing create re-makes the base (see create).
    const base = path.dirname(this.path);
    if (path.basename(base) !== 'nsbox') return;
    basesUsed.add(base);
    installExitHook();
    if (live === 0) setTimeout(() => live === 0 && removeIdleBases(), 1000).unref();
  }
}
