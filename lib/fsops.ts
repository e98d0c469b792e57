// fsops.ts: the filesystem part of a plan: the ordered list of operations (mounts, mkdirs, nodes,
// links) that builds a container's root in the staging directory, for app containers and machines,
// with what each op means when the child reports that it failed. Pure apart from stat() and
// readlink() calls on host paths; unit tests can snapshot its output.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { NsboxError, fromSystemError } from './errors';
import { native, type NativeOp } from './native';
import type { ResolvedMachineOptions } from './machine-options';
import type { ResolvedAppOptions, ResolvedMount } from './options';
import type { ProcMode } from './types';
import { bindsDevice, deviceBinds, type HostDevice } from './devices';
import { etcOps, etcPoints } from './etc-ops';
import { defaultRootEntries } from './default-root';
import { mergedRootMode, PLAN_LOOKUPS, type WalkBudget } from './images/merged';
import { kindInRoot, resolveInRoot, resolveInSource, type RootSource } from './root-walk';

export { kindInRoot, resolveInRoot, resolveInSource, type RootSource };

/** How a root source is named in errors. */
function shownSource(src: RootSource): string {
  return 'dir' in src ? src.dir : `image ${src.ref}`;
}

/** The lowerdir= option of an overlay over the root source (top-most layer first, each escaped). */
function lowerOf(src: RootSource): string {
  if ('dir' in src) return `lowerdir=${overlayPath(src.dir)}`;
  return `lowerdir=${[...src.layers].reverse().map(overlayPath).join(':')}${src.xattrs === 'user' ? ',userxattr' : ''}`;
}

/** The tmpfs behind a throw-away upper layer that holds only the made mount points. */
export const POINTS_TMPFS = 'mode=0700,size=4m,nr_inodes=8192';

/** What an op index means when the child reports that it failed. */
export interface OpMeta {
  step: string;
  syscall: string;
  path: string;
  /** The op's container path, where it has one: what a failure to resolve it in the root names. */
  target?: string;
}

export const MASKED_PROC_FILES = ['kcore', 'keys', 'timer_list', 'timer_stats', 'sched_debug', 'latency_stats'];
export const MASKED_PROC_DIRS = ['acpi', 'scsi', 'asound'];
export const READONLY_PROC = ['sys', 'sysrq-trigger', 'irq', 'bus', 'fs'];

let procEntriesCache: Set<string> | undefined;
function hostProcEntries(): Set<string> {
  if (!procEntriesCache) {
    try {
      procEntriesCache = new Set(fs.readdirSync('/proc'));
    } catch {
      procEntriesCache = new Set();
    }
  }
  return procEntriesCache;
}

/**
 * A root that is always an overlay: its upper and work directories under the host directory `dir`,
 * which is a fresh tmpfs mounted with the options `tmpfs` (thrown away with the mount namespace),
 * or, with `tmpfs: null`, a host directory that keeps the writes (a machine's persistent upper).
 * Its ops are named `step`.
 */
export interface OverlayRoot {
  dir: string;
  step: string;
  tmpfs: string | null;
}

/** A mount point the plan would make in the rootfs itself (not under a mount of its own). */
interface RootPoint {
  path: string;
  dir: boolean;
  op: NativeOp;
  /** A file point whose last component is a symlink in the rootfs: shadowed by a file of the overlay's upper layer. */
  replace?: boolean;
  /**
   * Made only in the overlay's upper layer (upperPoints), never by the child (a generated /etc
   * file's point, filePoint): the child's touch resolves the container path with the image's links
   * followed, and an image's /etc -> data (a caller's mount point) led it into the caller's host
   * directory. Its bind resolves the path with no symlink on the way, so it needs nothing more.
   */
  upperOnly?: boolean;
}

/** Backslash-escapes what overlayfs's option parser splits on (',' between options, ':' between layers). */
const overlayPath = (p: string): string => p.replace(/[\\,:]/g, (c) => '\\' + c);

/** Collects ops with their meaning; paths given to it are container paths. */
export class OpList {
  readonly ops: NativeOp[] = [];
  readonly meta: OpMeta[] = [];
  private readonly made = new Set<string>();
  private readonly K = native().constants;
  /** Container paths a mount is planned on so far: a mount point under one is made in that mount. */
  private readonly mounted: string[] = [];
  /** The rootfs whose root ops wait for finishRoot (deferRoot), and the points made in it. */
  private deferred: { src: RootSource; writable: string | null; always?: OverlayRoot } | undefined;
  private readonly points: RootPoint[] = [];
  /**
   * An image's read-only overlay root may be prepared once and shared (fsOpsFor): set by
   * buildFsOps where the mount template makes the root (root, no user namespace, a kernel that
   * mounts an overlay over detached layers) and the root is read-only.
   */
  shareRoot = false;
  /** The overlay root's own ops, taken out of the list for prepareImageRoot (finishRoot, shareRoot). */
  preparedRoot: { ops: NativeOp[]; meta: OpMeta[] } | undefined;

  constructor(private readonly staging: string) {}

  /** Ops on container paths carry the path itself; the child resolves it inside the root's fd. */
  private push(op: Partial<NativeOp> & { kind: number; dst: string }, m: OpMeta): NativeOp {
    const full = { mode: 0, dev: 0, flags: 0, src: null, fstype: null, data: null, where: this.K.WHERE_DST_IN_ROOT!, ...op };
    this.ops.push(full);
    this.meta.push(full.where & this.K.WHERE_DST_IN_ROOT! ? { ...m, target: full.dst } : m);
    if (full.kind === this.K.OP_MOUNT && full.where & this.K.WHERE_DST_IN_ROOT!) this.mounted.push(full.dst);
    return full;
  }

  /** Whether a container path lies in (or is) a mount planned so far, rather than in the rootfs. */
  private covered(target: string): boolean {
    return this.mounted.some((m) => target === m || target.startsWith(m + '/'));
  }

  /** Remembers an op that makes a mount point in the rootfs itself (deferRoot). */
  private point(target: string, dir: boolean, op: NativeOp): void {
    if (this.deferred && !this.covered(target)) this.points.push({ path: target, dir, op });
  }

  /**
   * The rootfs as the root, decided in finishRoot once every mount point is known. No mount point
   * is ever made in the rootfs itself (it is the caller's, and a rootless caller may not write it):
   * where all of them exist the root is the rootfs's bind and their mkdirs are dropped; where one
   * is missing the root is an overlay of the rootfs with a throw-away tmpfs upper layer that only
   * this container's mount namespace sees, and the missing points are made in that layer.
   * `writable`: not null for a root the container writes (readonly: false, a machine's), which an
   * overlay would silently turn into a throw-away one: a missing point is then refused, with
   * `writable` as the remedy in the message. `always`: the overlay whatever is missing (an
   * ephemeral machine's root), its tmpfs at the host directory `dir`, its ops named `step`.
   */
  deferRoot(rootfs: string | RootSource, writable: string | null, always?: OverlayRoot): void {
    this.deferred = { src: typeof rootfs === 'string' ? { dir: rootfs } : rootfs, writable, always };
  }

  /**
   * The missing points made in the overlay's upper layer before it is mounted, with every directory
   * of the rootfs above them (its mode kept), for two reasons. In a user namespace the container's
   * root may not make them through the overlay, whose directories from the rootfs belong to ids it
   * does not map (a root-owned rootfs's /etc is nobody's there; overlayfs's copy-up cannot give the
   * copy that owner either). And the plan's mkdirs make the container path's own components only:
   * a point under a link the rootfs planted (/evil -> /etc, or to a path missing inside the root)
   * lands where the link leads, which only this walk makes. Paths are resolved in the rootfs
   * (resolveInRoot) as the child resolves them, inside the root; the upper layer is nsbox's fresh
   * tmpfs, whose paths hold nothing of the image. A merged directory takes its owner and mode from
   * its upper part: the directories above a made point show the container root as their owner,
   * with the rootfs's modes. A point the walk cannot place is left to the child's mkdir, which
   * then fails with its true error.
   */
  private upperPoints(src: RootSource, upper: string, step: string, budget: WalkBudget): boolean {
    // Whether every point is in the merged view once the upper layer is made (none left to the child).
    let placed = true;
    const done = new Set<string>();
    const mk = (p: string, mode: number): void => {
      if (done.has(p)) return;
      done.add(p);
      this.hostMkdir(p, step, mode);
    };
    for (const pt of this.points) {
      if (pt.replace) {
        // The symlink stays in the rootfs; a file of the same name in the upper layer hides it.
        const r = resolveInSource(src, path.posix.dirname(pt.path), { budget });
        if (r.kind !== 'dir') {
          placed = false;
          continue;
        }
        let cur = upper;
        for (const a of r.at) mk((cur += '/' + a.name), a.mode);
        cur += '/' + path.posix.basename(pt.path);
        if (!done.has(cur)) this.push({ kind: this.K.OP_TOUCH!, dst: cur, mode: 0o644, where: 0 }, { step, syscall: 'open', path: cur });
        done.add(cur);
        continue;
      }
      const r = resolveInSource(src, pt.path, { budget });
      if (r.kind !== null) continue;
      if (r.rest === null) {
        placed = false;
        continue;
      }
      // Each name made costs the plan's budget too (a 2000-component WorkingDir is 2000 points of
      // up to 2000 names each): past it, the point is left to the child's mkdir in the overlay.
      if ((budget.lookups -= r.at.length + r.rest.length) < 0) {
        placed = false;
        continue;
      }
      let cur = upper;
      for (const a of r.at) mk((cur += '/' + a.name), a.mode);
      r.rest.forEach((name, i) => {
        cur += '/' + name;
        if (i === r.rest!.length - 1 && !pt.dir) {
          if (!done.has(cur)) this.push({ kind: this.K.OP_TOUCH!, dst: cur, mode: 0o644, where: 0 }, { step, syscall: 'open', path: cur });
          done.add(cur);
        } else {
          mk(cur, 0o755);
        }
      });
    }
    return placed;
  }

  /**
   * Puts the root's ops of deferRoot in front: 'bind' (every mount point exists in the rootfs; with
   * `readonly` the root is made read-only right away, before anything else is mounted), or
   * 'overlay' (the missing ones are made in its tmpfs upper layer; the caller makes it read-only at
   * the end). Undefined without deferRoot.
   */
  finishRoot(readonly: boolean): 'bind' | 'overlay' | undefined {
    const d = this.deferred;
    if (!d) return undefined;
    this.deferred = undefined;
    const K = this.K;
    // A point that exists as the wrong kind stays as it is: its mount fails with the true error.
    // One budget for every walk of this root's layers: an image's WorkingDir is a point per
    // component, each walked from the root through every layer (merged.ts PLAN_LOOKUPS).
    const budget: WalkBudget = { lookups: PLAN_LOOKUPS };
    const missing = this.points.find((p) => p.replace || resolveInSource(d.src, p.path, { budget }).kind === null);
    let mode: 'bind' | 'overlay';
    let n = this.ops.length;
    if (!missing && !d.always) {
      // Every point exists: nothing is made in the root (and a point that vanishes before the child
      // runs fails its mount with ENOENT, never gets made).
      const drop = new Set(this.points.map((p) => p.op));
      for (let i = this.ops.length - 1; i >= 0; i--) {
        if (!drop.has(this.ops[i]!)) continue;
        this.ops.splice(i, 1);
        this.meta.splice(i, 1);
      }
      n = this.ops.length;
      this.rootBind((d.src as { dir: string }).dir);
      if (readonly) this.remount('/', K.MS_BIND! | K.MS_RDONLY!, 'rootfs.readonly');
      mode = 'bind';
    } else {
      if (d.writable !== null && !d.always) {
        throw new NsboxError({
          code: 'ENOENT', errno: os.constants.errno.ENOENT, syscall: 'stat', step: 'mount.target', path: missing!.path,
          message: `mount point ${missing!.path} is missing from the rootfs ${shownSource(d.src)}, and a writable root is never written to make one: ` +
            `create it in the rootfs, or ${d.writable} (step mount.target)`,
        });
      }
      const scaffold = d.always?.step ?? 'rootfs.scaffold';
      const NOSUID = K.MS_NOSUID!, NODEV = K.MS_NODEV!;
      // The upper layer lives on a tmpfs over the staging directory, in this container's mount
      // namespace only: thrown away with it. The overlay's root takes its mode from the upper
      // directory: give it the rootfs's.
      const dir = d.always?.dir ?? this.staging;
      // Bounded: by default it holds only the made points (directories and empty files). A
      // persistent upper (tmpfs: null) is a host directory that exists already.
      const tmpfs = d.always ? d.always.tmpfs : POINTS_TMPFS;
      if (tmpfs !== null) this.hostMount('tmpfs', dir, 'tmpfs', NOSUID | NODEV, tmpfs, scaffold);
      this.hostMkdir(dir + '/upper', scaffold, 'dir' in d.src ? fs.statSync(d.src.dir).mode & 0o7777 : mergedRootMode({ top: [...d.src.layers].reverse(), xattrs: d.src.xattrs }));
      this.hostMkdir(dir + '/work', scaffold);
      // A persistent upper (a machine's, tmpfs: null) holds what the container wrote on earlier runs:
      // a link it planted there (upper/etc -> /root) would lead a host path through it. Nothing is
      // made in it from the host: the child makes the points inside the mounted root instead
      // (resolved in it, on its own mount: WHERE_DST_ROOT_MNT), which writes them to the upper.
      const persistent = tmpfs === null;
      const placed = !persistent && this.upperPoints(d.src, dir + '/upper', scaffold, budget);
      // The points made in the upper layer only: the child does not make them again (RootPoint.upperOnly).
      const upperOnly = new Set(persistent ? [] : this.points.filter((p) => p.upperOnly).map((p) => p.op));
      // The others are made by the child where the walk could not place them, in the overlay only
      // (WHERE_DST_ROOT_MNT: a parent on another mount, a caller's reached through an image's
      // link, is EXDEV).
      for (const p of this.points) if (!upperOnly.has(p.op)) p.op.where |= K.WHERE_DST_ROOT_MNT!;
      for (let i = n - 1; i >= 0; i--) {
        if (!upperOnly.has(this.ops[i]!)) continue;
        this.ops.splice(i, 1);
        this.meta.splice(i, 1);
        n--;
      }
      const data = `${lowerOf(d.src)},upperdir=${overlayPath(dir + '/upper')},workdir=${overlayPath(dir + '/work')}`;
      if (data.length > 4095) {
        throw new NsboxError({
          code: 'E2BIG', errno: os.constants.errno.E2BIG, syscall: 'mount', step: scaffold, path: shownSource(d.src),
          message: `the overlay of ${shownSource(d.src)} needs ${data.length} bytes of mount options, more than a page (4095): too many layers or too long a store path (step ${scaffold})`,
        });
      }
      this.mount('overlay', '/', 'overlay', NODEV, data, scaffold, shownSource(d.src));
      mode = 'overlay';
      if (this.shareRoot && placed && tmpfs === POINTS_TMPFS && !('dir' in d.src)) {
        // Every point is in the upper layer (or the image): the overlay can be made once, read-only,
        // and cloned by each container (fsOpsFor, prepareImageRoot); the child makes no point.
        this.preparedRoot = { ops: this.ops.splice(n), meta: this.meta.splice(n) };
        const drop = new Set(this.points.map((p) => p.op));
        for (let i = this.ops.length - 1; i >= 0; i--) {
          if (!drop.has(this.ops[i]!)) continue;
          this.ops.splice(i, 1);
          this.meta.splice(i, 1);
        }
        n = this.ops.length;
        // The fd (dev) is the prepared root's, set by fsOpsFor; its nodev with the clone (merges_remount).
        this.push({ kind: K.OP_MOUNT!, src: shownSource(d.src), dst: this.staging, flags: K.MS_BIND! | K.MS_REC!, where: K.WHERE_OPEN_ROOT! | K.WHERE_SRC_DETACHED!, dev: 0 }, { step: scaffold, syscall: 'mount', path: shownSource(d.src) });
        this.remount('/', K.MS_BIND! | NODEV, scaffold);
      }
    }
    // The root's ops were pushed last: they go first.
    this.ops.unshift(...this.ops.splice(n));
    this.meta.unshift(...this.meta.splice(n));
    this.points.length = 0;
    return mode;
  }

  mount(src: string | null, target: string, fstype: string | null, flags: number, data: string | null, step: string, shown = target): void {
    if (target === '/') {
      // The root itself goes onto the staging directory (a host path); every later container path
      // is resolved from the fd of what this mount put there.
      this.push({ kind: this.K.OP_MOUNT!, src, dst: this.staging, fstype, flags, data, where: this.K.WHERE_OPEN_ROOT! }, { step, syscall: 'mount', path: shown });
      return;
    }
    this.push({ kind: this.K.OP_MOUNT!, src, dst: target, fstype, flags, data }, { step, syscall: 'mount', path: shown });
  }

  /**
   * The image's directory as the root, nodev (with its submounts, where the mount template applies
   * it): a device node that the image brought, or that an earlier run left in it, never opens.
   */
  rootBind(rootfs: string): void {
    this.mount(rootfs, '/', null, this.K.MS_BIND! | this.K.MS_REC!, null, 'rootfs.bind', rootfs);
    this.remount('/', this.K.MS_BIND! | this.K.MS_NODEV!, 'rootfs.bind');
  }

  /** A bind whose source is itself a container path (our own /dev/null, /proc/sys). */
  bindInRoot(source: string, target: string, flags: number, step: string): void {
    const where = this.K.WHERE_DST_IN_ROOT! | this.K.WHERE_SRC_IN_ROOT!;
    this.push({ kind: this.K.OP_MOUNT!, src: source, dst: target, flags: this.K.MS_BIND!, where }, { step, syscall: 'mount', path: target });
    if (flags) this.remount(target, this.K.MS_BIND! | flags, step);
  }

  /**
   * A recursive bind of the host directory `outer`'s entry `rest`, resolved beneath `outer`
   * (WHERE_SRC_BENEATH): a bind source inside another bind's source or inside the rootfs.
   */
  bindBeneath(outer: string, rest: string, target: string, step: string, shown: string): void {
    const where = this.K.WHERE_DST_IN_ROOT! | this.K.WHERE_SRC_BENEATH!;
    this.push({ kind: this.K.OP_MOUNT!, src: outer, data: rest, dst: target, flags: this.K.MS_BIND! | this.K.MS_REC!, where }, { step, syscall: 'mount', path: shown });
  }

  /** A bind of the host node `source` that the child checks against the fd `fd` (WHERE_SRC_FD). */
  srcFdBind(source: string, fd: number, target: string, step: string, shown: string): void {
    const where = this.K.WHERE_DST_IN_ROOT! | this.K.WHERE_SRC_FD!;
    this.push({ kind: this.K.OP_MOUNT!, src: source, dev: fd, dst: target, flags: this.K.MS_BIND!, where }, { step, syscall: 'mount', path: shown });
  }

  /** A mount at a host path outside the future root (e.g. the tmpfs behind an overlay). */
  hostMount(src: string, hostDst: string, fstype: string | null, flags: number, data: string | null, step: string): void {
    this.push({ kind: this.K.OP_MOUNT!, src, dst: hostDst, fstype, flags, data, where: 0 }, { step, syscall: 'mount', path: hostDst });
  }

  hostMkdir(hostDst: string, step: string, mode = 0o700): void {
    this.push({ kind: this.K.OP_MKDIR!, dst: hostDst, mode, where: 0 }, { step, syscall: 'mkdir', path: hostDst });
  }

  remount(target: string, flags: number, step: string): void {
    this.push({ kind: this.K.OP_REMOUNT!, dst: target, flags }, { step, syscall: 'mount', path: target });
  }

  bind(source: string, target: string, flags: number, step: string, recursive = true): void {
    const K = this.K;
    this.mount(source, target, null, K.MS_BIND! | (recursive ? K.MS_REC! : 0), null, step, source);
    if (flags) this.remount(target, K.MS_BIND! | flags, step);
  }

  mkdir(target: string, mode = 0o755, step = 'mount.target'): void {
    if (this.made.has(target)) return;
    const op = this.push({ kind: this.K.OP_MKDIR!, dst: target, mode }, { step, syscall: 'mkdir', path: target });
    this.made.add(target);
    this.point(target, true, op);
  }

  /** mkdir -p of a container path (every component). */
  mkdirs(target: string, step = 'mount.target'): void {
    const parts = target.split('/').filter(Boolean);
    let cur = '';
    for (const p of parts) {
      cur += '/' + p;
      this.mkdir(cur, 0o755, step);
    }
  }

  touch(target: string, step = 'mount.target'): void {
    this.mkdirs(path.posix.dirname(target), step);
    const op = this.push({ kind: this.K.OP_TOUCH!, dst: target, mode: 0o644 }, { step, syscall: 'open', path: target });
    this.point(target, false, op);
  }

  /**
   * A generated /etc file's mount point in a deferred root (a read-only rootfs, an ephemeral
   * machine's): like touch, but a symlink as its last component in the rootfs (a systemd-resolved
   * image's resolv.conf -> ../run/systemd/resolve/stub-resolv.conf) is never followed: the overlay's
   * upper layer gets a regular file of that name, which hides the link, and the bind goes onto it.
   */
  filePoint(target: string, step: string): void {
    this.touch(target, step);
    const d = this.deferred, pt = this.points[this.points.length - 1];
    if (!d || pt?.path !== target) return;
    pt.upperOnly = true;
    // (Walked in the root by fds, as every look into it: never a host path through the image's links.)
    if (resolveInSource(d.src, target, { lastLink: true }).kind === 'link') pt.replace = true;
  }

  symlink(linkTarget: string, at: string, step: string): void {
    this.push({ kind: this.K.OP_SYMLINK!, src: linkTarget, dst: at }, { step, syscall: 'symlink', path: at });
  }

  mknod(at: string, major: number, minor: number, step: string, type: 'char' | 'block' = 'char', mode = 0o666): void {
    // glibc's makedev(): minor bits 0-7 and 20-31, major bits 8-19 and 32-43.
    const dev = ((major & 0xfff) << 8) + (minor & 0xff) + (minor >>> 8) * 2 ** 20 + Math.floor(major / 4096) * 2 ** 32;
    const ifmt = type === 'block' ? fs.constants.S_IFBLK : fs.constants.S_IFCHR;
    this.push({ kind: this.K.OP_MKNOD!, dst: at, mode: ifmt | mode, dev }, { step, syscall: 'mknod', path: at });
  }

  /**
   * A read-only bind of a host file onto a container path that is only made where the image has
   * the mount point (WHERE_OPTIONAL: the child skips it on ENOENT), or, `required`, fails there.
   */
  etcBind(source: string, target: string, flags: number, step: string, required: boolean): void {
    const K = this.K;
    // No symlink on the way (WHERE_DST_NOFOLLOW): never bound over what an image's link points to.
    const where = K.WHERE_DST_IN_ROOT! | K.WHERE_DST_NOFOLLOW! | (required ? 0 : K.WHERE_OPTIONAL!);
    this.push({ kind: K.OP_MOUNT!, src: source, dst: target, flags: K.MS_BIND!, where }, { step, syscall: 'mount', path: target });
    this.push({ kind: K.OP_REMOUNT!, dst: target, flags: K.MS_BIND! | flags, where }, { step, syscall: 'mount', path: target });
  }
}

export function sourceKind(source: string, step: string): 'dir' | 'file' {
  try {
    return fs.statSync(source).isDirectory() ? 'dir' : 'file';
  } catch (e) {
    const err = fromSystemError(e, step, source);
    throw new NsboxError({ code: err.code, errno: err.errno, syscall: 'stat', step, path: source });
  }
}

/** Checks the rootfs exists and is a directory (an NsboxError, not a TypeError: it is the host's state). */
export function checkRootfs(rootfs: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(rootfs);
  } catch (e) {
    const err = fromSystemError(e, 'rootfs', rootfs);
    throw new NsboxError({ code: err.code, errno: err.errno, syscall: 'stat', step: 'rootfs', path: rootfs });
  }
  if (!st.isDirectory()) throw new NsboxError({ code: 'ENOTDIR', syscall: 'stat', step: 'rootfs', path: rootfs });
}

/** An image's layers as a root source. */
export function imageSource(img: { ref: string; layers: string[]; xattrs: 'trusted' | 'user' }): RootSource {
  return { layers: img.layers, xattrs: img.xattrs, ref: img.ref };
}

/** The tmpfs of a throw-away upper layer that takes a container's writes (rootSize bytes). */
function upperTmpfs(size: number): string {
  return `mode=0700,size=${size},nr_inodes=${Math.max(8192, Math.floor(size / 4096))}`;
}


/** The filesystem part of the plan: root, /dev, /proc, user mounts, read-only root. */
export function buildFsOps(o: ResolvedAppOptions, staging: string, userns = false, withEtc = false, devices: HostDevice[] = [], shareRoot = false): OpList {
  const K = native().constants;
  const L = new OpList(staging);
  L.shareRoot = shareRoot && !!o.image && o.readonly;
  const NOSUID = K.MS_NOSUID!, NODEV = K.MS_NODEV!, RDONLY = K.MS_RDONLY!;

  // 1. The root.
  if (o.image) {
    // An image: always an overlay of its layers, never written (every write and every missing
    // mount point goes to the upper layer on a fresh tmpfs of this mount namespace): capped at 4 MiB
    // when read-only (it holds only the made points), at rootSize when the container writes.
    L.deferRoot(imageSource(o.image), null, { dir: staging, step: 'rootfs.overlay', tmpfs: o.readonly ? POINTS_TMPFS : upperTmpfs(o.image.rootSize) });
    if (o.image.makeCwd) L.mkdirs(o.cwd, 'rootfs.workdir');
  } else if (o.rootfs !== undefined) {
    checkRootfs(o.rootfs);
    L.deferRoot(o.rootfs, o.readonly ? null : 'run it read-only (readonly: true)');
  } else {
    L.mount('tmpfs', '/', 'tmpfs', NOSUID | NODEV, 'mode=0755', 'rootfs.bind', '(default rootfs)');
    const { system, etc } = defaultRootEntries();
    for (const e of system) {
      if (e.kind === 'symlink') L.symlink(e.link!, '/' + e.name, 'rootfs.layout');
      else {
        L.mkdir('/' + e.name, 0o755, 'rootfs.layout');
        L.bind(e.source, '/' + e.name, RDONLY | NOSUID | NODEV, 'rootfs.layout');
      }
    }
    L.mkdir('/etc', 0o755, 'rootfs.layout');
    for (const e of etc) {
      // The generated ones replace the host's.
      if (withEtc && (e.name === 'hosts' || e.name === 'resolv.conf')) continue;
      const at = '/etc/' + e.name;
      if (e.kind === 'symlink') {
        L.mkdirs(path.posix.dirname(at), 'rootfs.layout');
        L.symlink(e.link!, at, 'rootfs.layout');
      } else {
        if (e.kind === 'dir') L.mkdirs(at, 'rootfs.layout');
        else L.touch(at, 'rootfs.layout');
        L.bind(e.source, at, RDONLY | NOSUID | NODEV, 'rootfs.layout');
      }
    }
    for (const d of ['/root', '/run', '/var', '/var/tmp']) L.mkdir(d, d === '/root' ? 0o700 : 0o755, 'rootfs.layout');
  }

  mountProcAndDev(L, { consoleNull: false, bindDevices: userns, devices, proc: o.proc });
  // An app (OCI) container's cgroupfs is read-only, as runc's: its root, without a user namespace,
  // is the host's, and a writable cgroupfs let it rewrite its own limits, freeze itself, nest
  // cgroups deeper than PATH_MAX and move processes out of `kill --all`'s sight (attack review).
  if (o.sysfs) mountSys(L, userns, o.network, false);
  if (o.mqueue) {
    L.mkdir('/dev/mqueue', 0o755, 'mount.dev');
    L.mount('mqueue', '/dev/mqueue', 'mqueue', NOSUID | NODEV | K.MS_NOEXEC!, null, 'mount.dev');
  }
  userMountOps(L, o.mounts, o.image ? undefined : o.rootfs);
  const own = o.rootfs === undefined && !o.image;
  // The generated /etc files' mount points in nsbox's own root; their binds (etcBinds) follow.
  if (withEtc && own) etcOps(L, null, o.mounts, true, true);
  // A read-only caller's rootfs that lacks one gets it as a mount point of the throw-away overlay
  // (deferRoot, finishRoot), never in the rootfs: localhost resolves in an image without
  // /etc/hosts. A writable one is never overlaid for this: the bind is skipped there instead
  // (WHERE_OPTIONAL), unless etcFiles: true. An image's root is always an overlay.
  if (withEtc && !own && (o.readonly || o.image)) etcPoints(L, o.mounts);

  // 5. The rootfs's root goes in front (its bind, read-only at once where every mount point
  //    exists; or the overlay where one is missing). Read-only root last otherwise, so every mount
  //    point above could still be made. Non-recursive: the mounts on top keep their own flags.
  const root = L.finishRoot(o.readonly);
  if (o.readonly && root !== 'bind') L.remount('/', K.MS_BIND! | RDONLY | (o.image ? NODEV : o.rootfs === undefined ? NOSUID | NODEV : 0), 'rootfs.readonly');
  return L;
}

/**
 * /dev (tmpfs, the usual nodes, a private devpts) and /proc: fresh, with the knobs protected, or
 * with proc: 'none' an empty read-only tmpfs (no procfs at all).
 */
export function mountProcAndDev(L: OpList, opts: { consoleNull: boolean; bindDevices?: boolean; devices?: HostDevice[]; proc: ProcMode }): void {
  const K = native().constants;
  const NOSUID = K.MS_NOSUID!, NODEV = K.MS_NODEV!, NOEXEC = K.MS_NOEXEC!, RDONLY = K.MS_RDONLY!;
  // 2. /dev: a fresh tmpfs with the usual nodes, a private devpts and the /proc/self/fd links.
  L.mkdir('/dev', 0o755, 'mount.dev');
  L.mount('tmpfs', '/dev', 'tmpfs', NOSUID | NOEXEC, 'mode=0755,size=65536k', 'mount.dev');
  for (const [name, major, minor] of [
    ['null', 1, 3], ['zero', 1, 5], ['full', 1, 7], ['random', 1, 8], ['urandom', 1, 9], ['tty', 5, 0],
  ] as const) {
    // In a user namespace mknod is refused (even for these harmless nodes): bind the host's.
    if (opts.bindDevices) {
      L.touch('/dev/' + name, 'mount.dev');
      L.bind('/dev/' + name, '/dev/' + name, 0, 'mount.dev', false);
    } else {
      L.mknod('/dev/' + name, major, minor, 'mount.dev');
    }
  }
  // The caller's devices (the `devices` option), and nothing else: made like the nodes above (the
  // type, numbers and mode fstat'd from the host node's fd), or, in a user namespace (mknod is
  // refused there) and for a device without 'm' (the child makes its nodes inside the cgroup, whose
  // allow-list then refuses the mknod too), a file of this tmpfs that the host node is bound onto
  // (deviceBinds: from its fd, per start). Every path is below /dev, so everything made here is in
  // this tmpfs.
  for (const d of opts.devices ?? []) {
    L.mkdirs(path.posix.dirname(d.containerPath), 'devices');
    if (bindsDevice(d, opts.bindDevices === true)) {
      L.touch(d.containerPath, 'devices');
    } else {
      L.mknod(d.containerPath, d.major, d.minor, 'devices', d.block ? 'block' : 'char', d.mode);
    }
  }
  L.mkdir('/dev/pts', 0o755, 'mount.dev');
  L.mount('devpts', '/dev/pts', 'devpts', NOSUID | NOEXEC, 'newinstance,ptmxmode=0666,mode=0620', 'mount.dev');
  L.symlink('pts/ptmx', '/dev/ptmx', 'mount.dev');
  L.symlink('/proc/self/fd', '/dev/fd', 'mount.dev');
  L.symlink('/proc/self/fd/0', '/dev/stdin', 'mount.dev');
  L.symlink('/proc/self/fd/1', '/dev/stdout', 'mount.dev');
  L.symlink('/proc/self/fd/2', '/dev/stderr', 'mount.dev');
  L.mkdir('/dev/shm', 0o1777, 'mount.dev');
  L.mount('tmpfs', '/dev/shm', 'tmpfs', NOSUID | NODEV | NOEXEC, 'mode=1777,size=65536k', 'mount.dev');

  if (opts.consoleNull) {
    // A machine's console: PID 1's output goes to the state directory's console.log; /dev/console
    // reads and writes like /dev/null (there is no terminal behind it).
    L.touch('/dev/console', 'mount.dev');
    L.bindInRoot('/dev/null', '/dev/console', 0, 'mount.dev');
  }

  // 3. /proc of the new pid namespace, with the kernel-wide knobs read-only and the leaky files masked
  //    by the /dev/null made just above (never one from the image).
  L.mkdir('/proc', 0o555, 'mount.proc');
  if (opts.proc === 'none') {
    // No procfs: where the kernel refuses a new one (a masked /proc around this process, in a user
    // namespace) the caller opted out of it. Never the host's (or the pod's) own /proc instead: it
    // shows this process and its memory to the container's processes (a rootless container's are
    // of this process's host uid). An empty read-only tmpfs: no files there for programs to take
    // for the kernel's.
    L.mount('tmpfs', '/proc', 'tmpfs', RDONLY | NOSUID | NODEV | NOEXEC, 'mode=0555,size=4k', 'mount.proc');
    return;
  }
  L.mount('proc', '/proc', 'proc', NOSUID | NODEV | NOEXEC, null, 'mount.proc');
  const proc = hostProcEntries();
  for (const name of READONLY_PROC) {
    if (!proc.has(name)) continue;
    L.bindInRoot('/proc/' + name, '/proc/' + name, RDONLY | NOSUID | NODEV | NOEXEC, 'proc.readonly');
  }
  for (const name of MASKED_PROC_FILES) {
    if (proc.has(name)) L.bindInRoot('/dev/null', '/proc/' + name, 0, 'proc.mask');
  }
  for (const name of MASKED_PROC_DIRS) {
    if (proc.has(name)) L.mount('tmpfs', '/proc/' + name, 'tmpfs', RDONLY | NOSUID | NODEV | NOEXEC, 'size=0', 'proc.mask');
  }

}

/**
 * A host path walked the way the kernel resolves it, one component at a time with lstat and
 * readlink (the physical directory reached so far is always a plain path): where it goes, and
 * every directory it went through. `stop(dir)` ends the walk early, before anything below `dir` is
 * followed; the components not walked yet are returned. Null when a component is missing.
 */
function hostWalk(p: string, stop?: (dir: string) => boolean): { dir: string; visited: string[]; rest: string[] } | null {
  let todo = p.split('/').filter(Boolean);
  let cur = '/';
  const visited = ['/'];
  let links = 0;
  if (stop?.(cur)) return { dir: cur, visited, rest: todo };
  while (todo.length) {
    const c = todo.shift()!;
    const next = c === '..' ? path.posix.dirname(cur) : c === '.' ? cur : path.posix.join(cur, c);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(next);
    } catch {
      return null;
    }
    if (st.isSymbolicLink()) {
      if (++links > 40) return null;
      const target = fs.readlinkSync(next);
      todo = [...target.split('/').filter(Boolean), ...todo];
      if (target.startsWith('/')) cur = '/';
      continue;
    }
    cur = next;
    visited.push(cur);
    if (st.isDirectory() && stop?.(cur)) return { dir: cur, visited, rest: todo };
  }
  return { dir: cur, visited, rest: [] };
}

const within = (p: string, dir: string): boolean => p === dir || dir === '/' || p.startsWith(dir + '/');

/**
 * Where a bind's source lies inside another bind's source, or inside the rootfs (an "enclosure"),
 * its path on the host runs through a directory a container can write: a container with the
 * enclosure writable (now or on an earlier run) may have swapped a component for a symlink
 * (sub -> /), and the host would follow it to its own /etc. Such a source is resolved beneath the
 * enclosure instead (WHERE_SRC_BENEATH: the child opens the enclosure's own path, then the rest with
 * RESOLVE_IN_ROOT from it), so a link inside it stays inside it.
 *
 * Which enclosure: every enclosure's path is walked on the host (its own links followed: an alias
 * such as /srv/current -> /srv/rootfs is the administrator's). One whose walk passes through another
 * is nested and never an anchor: its walk went through what a container writes. Two that each pass
 * through the other, or one that passes through another and ends above it, can only come from a
 * planted link (no two real directories are each inside the other): the start is refused. A source
 * is then walked until it enters an anchor, before anything inside is followed; the rest of its
 * path is resolved beneath that anchor by the child. Null for a source that enters none.
 */
function enclosureOf(source: string, enclosures: string[]): { outer: string; rest: string } | null {
  const walks = new Map<string, { dir: string; visited: string[] }>();
  for (const e of new Set(enclosures)) {
    const w = hostWalk(e);
    if (w) walks.set(e, w);
  }
  if (walks.size === 0) return null;
  const nested = new Set<string>();
  for (const [e, we] of walks) {
    for (const [f, wf] of walks) {
      if (e === f || we.dir === wf.dir) continue;
      // e went through (or ended in) f's directory: e is inside f.
      if (![...we.visited, we.dir].some((d) => within(d, wf.dir))) continue;
      if ([...wf.visited, wf.dir].some((d) => within(d, we.dir))) {
        throw new NsboxError({
          code: 'ELOOP', step: 'mount.bind', path: e,
          message: `mounts: ${e} and ${f} each lead into the other (a symlink planted in one of them?): refused (step mount.bind)`,
        });
      }
      nested.add(e);
    }
  }
  const anchors = [...walks].filter(([e]) => !nested.has(e));
  const w = hostWalk(source, (d) => anchors.some(([, wa]) => within(d, wa.dir)));
  if (!w || w.rest.length === 0 && anchors.some(([, wa]) => wa.dir === w.dir)) return null;  // not found, or an enclosure itself
  const hit = anchors.find(([, wa]) => within(w.dir, wa.dir));
  if (!hit) return null;
  const inside = hit[1].dir === w.dir ? [] : path.posix.relative(hit[1].dir, w.dir).split('/');
  const rest = [...inside, ...w.rest];
  return rest.length ? { outer: hit[0], rest: rest.join('/') } : null;
}

/** The user's bind and tmpfs mounts, parents before children. */
export function userMountOps(L: OpList, userMounts: ResolvedMount[], rootfs?: string): void {
  const K = native().constants;
  const NOSUID = K.MS_NOSUID!, NODEV = K.MS_NODEV!, RDONLY = K.MS_RDONLY!;
  // 4. The user's mounts, parents before children.
  const mounts = [...userMounts].sort((a, b) => a.target.split('/').length - b.target.split('/').length);
  const binds = mounts.filter((m): m is ResolvedMount & { type: 'bind' } => m.type === 'bind');
  for (const m of mounts) {
    if (m.type === 'bind') {
      const kind = sourceKind(m.source, 'mount.bind');
      if (kind === 'dir') L.mkdirs(m.target);
      else L.touch(m.target);
      const enclosures = binds.filter((o) => o !== m && o.source !== m.source).map((o) => o.source);
      if (rootfs !== undefined) enclosures.push(rootfs);
      const outer = enclosureOf(m.source, enclosures);
      if (outer) {
        L.bindBeneath(outer.outer, outer.rest, m.target, 'mount.bind', m.source);
      } else {
        L.mount(m.source, m.target, null, K.MS_BIND! | K.MS_REC!, null, 'mount.bind', m.source);
      }
      L.remount(m.target, K.MS_BIND! | NOSUID | NODEV | (m.readonly ? RDONLY : 0), 'mount.bind');
    } else {
      L.mkdirs(m.target);
      const data = `mode=${m.mode.toString(8).padStart(4, '0')}` + (m.size !== undefined ? `,size=${m.size}` : '');
      L.mount('tmpfs', m.target, 'tmpfs', NOSUID | NODEV, data, 'mount.tmpfs');
    }
  }

}

/**
 * sysfs directories a machine sees as an empty read-only tmpfs (Docker's masked /sys paths):
 * firmware tables (ACPI, EFI variables, DMI) are the host's; powercap holds the RAPL energy counters,
 * a side channel on what the host's other processes compute (CVE-2020-8694, "Platypus").
 */
export const MASKED_SYS_DIRS = ['/sys/firmware', '/sys/devices/virtual/powercap'];

/**
 * /sys read-only, with the container's own cgroup (its cgroup namespace root) writable on top so a
 * systemd inside can manage its subtree, and the host's firmware tables and power counters masked.
 * A machine's, and an OCI container's that asks for them (ResolvedAppOptions.sysfs).
 */
function mountSys(L: OpList, userns: boolean, network: string, cgroupWritable: boolean): void {
  const K = native().constants;
  const NOSUID = K.MS_NOSUID!, NODEV = K.MS_NODEV!, NOEXEC = K.MS_NOEXEC!, RDONLY = K.MS_RDONLY!;
  L.mkdir('/sys', 0o555, 'mount.sys');
  if (userns && network === 'host') {
    // sysfs may be mounted in a user namespace only together with a network namespace it owns.
    L.bind('/sys', '/sys', RDONLY | NOSUID | NODEV | NOEXEC, 'mount.sys');
  } else {
    L.mount('sysfs', '/sys', 'sysfs', RDONLY | NOSUID | NODEV | NOEXEC, null, 'mount.sys');
  }
  L.mount('cgroup2', '/sys/fs/cgroup', 'cgroup2', NOSUID | NODEV | NOEXEC | (cgroupWritable ? 0 : RDONLY), null, 'mount.cgroup');
  // The host's firmware tables and power counters are masked, as in Docker's defaults.
  for (const p of MASKED_SYS_DIRS) {
    if (fs.existsSync(p)) L.mount('tmpfs', p, 'tmpfs', RDONLY | NOSUID | NODEV | NOEXEC, 'size=0', 'sys.mask');
  }
}

export function machineOps(o: ResolvedMachineOptions, stagingDir: string, scratch: string, userns: boolean, etcDir?: string, devices: HostDevice[] = []): OpList {
  const K = native().constants;
  const L = new OpList(stagingDir);
  const NOSUID = K.MS_NOSUID!, NODEV = K.MS_NODEV!;
  if (o.image) {
    // An image: an overlay of its layers, never written. Ephemeral: the upper layer on a tmpfs of
    // the machine's mount namespace (capped like a writable app root); otherwise a directory in the
    // machine's state (<stateDir>/<name>/root), which keeps its writes until destroy().
    const src = imageSource(o.image);
    L.deferRoot(src, null, o.ephemeral ? { dir: scratch, step: 'rootfs.overlay', tmpfs: upperTmpfs(o.image.rootSize) } : { dir: o.image.upper!, step: 'rootfs.overlay', tmpfs: null });
  } else {
    checkRootfs(o.rootfs!);
    // Ephemeral: an overlay whose upper layer lives on a tmpfs that exists only in the machine's
    // mount namespace, thrown away with the machine (the missing mount points are made in it, as
    // for an app's read-only root). Otherwise the rootfs itself, which gets no mount point made.
    L.deferRoot(o.rootfs!, 'start the machine with ephemeral: true', o.ephemeral ? { dir: scratch, step: 'rootfs.overlay', tmpfs: POINTS_TMPFS } : undefined);
  }
  mountProcAndDev(L, { consoleNull: true, bindDevices: userns, devices, proc: o.proc });
  // A machine's systemd manages its own subtree (its cgroup namespace root).
  mountSys(L, userns, o.network, true);
  L.mkdir('/run', 0o755, 'mount.run');
  L.mount('tmpfs', '/run', 'tmpfs', NOSUID | NODEV, 'mode=0755,size=20%', 'mount.run');
  L.mkdir('/run/host', 0o755, 'mount.run');
  L.mkdir('/tmp', 0o1777, 'mount.tmp');
  L.mount('tmpfs', '/tmp', 'tmpfs', NOSUID | NODEV, 'mode=1777', 'mount.tmp');
  userMountOps(L, o.mounts, o.image ? undefined : o.rootfs);
  // An ephemeral machine's overlay (an image's root is always one) makes the missing ones (as for an
  // app's read-only root).
  if (etcDir !== undefined && (o.ephemeral || o.image)) etcPoints(L, o.mounts);
  if (etcDir !== undefined) etcOps(L, etcDir, o.mounts, false, o.etcFiles === 'require');
  deviceBinds(L, devices, userns);
  L.finishRoot(false);
  return L;
}
