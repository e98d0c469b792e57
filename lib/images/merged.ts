// merged.ts: the merged view of an image's layers, walked on the host without mounting it: what a
// container path is in the overlay that the child will mount (for the mount points the plan must
// make in the upper layer, fsops.ts upperPoints), and the content of small files such as
// /etc/passwd (for `User` by name). The layers are hostile: every component is opened
// O_PATH | O_NOFOLLOW relative to the fd of the directory before it (through /proc/self/fd/N, as
// root-walk.ts resolveInRoot is this walk over one plain directory), never as a joined host path; a symlink is followed as a path inside
// the merged view; the same budget bounds what an image can make a walk cost on Node's thread.
// Nothing here ever writes: a layer directory is shared by every container of every image that has it.
import * as fs from 'node:fs';

import { native } from '../native';

/** O_PATH (not in fs.constants): an fd that names a file without opening it. */
const O_PATH = 0o10000000;
/**
 * What one walk may cost: components looked at, links followed (the kernel's own limit), and lookups:
 * one per layer a component is looked up in (each an open, an fstat and an xattr read, and an fd
 * held while the walk is below that directory), which the component count alone does not bound
 * (256 components over 50 layers of the same deep directory were 12,800 fds and 175 ms).
 */
export const BUDGET = { components: 256, links: 40, lookups: 4096 };

/**
 * Lookups left to a whole plan (shared by every walk of one root: a WorkingDir of 2000 components
 * is 2000 mount points, each walked from the root). Where it runs out, walks answer "cannot go on"
 * (rest: null): the point is then left to the child's mkdir in the overlay, as any point the walk
 * cannot place.
 */
export interface WalkBudget {
  lookups: number;
}

/** Lookups one plan may spend on walks of the merged view (about 0.1 s of Node's thread). */
export const PLAN_LOOKUPS = 32768;

interface FsAt {
  openat(dirfd: number, name: string, flags: number, mode: number): number;
  fgetxattr(fd: number, name: string): Buffer | number;
  close(fd: number): number;
}
const fsat = (): FsAt => (native() as unknown as { fsat: FsAt }).fsat;

/** The layers of an image as the walk needs them: directories top-most first, and the xattr namespace. */
export interface LayerStack {
  /** Unpacked layer directories, top-most first (overlayfs's lowerdir order). */
  top: string[];
  /**
   * The namespace of overlay's attributes in these layers: trusted.overlay.* (root) or user.overlay.*;
   * null for a plain directory (a rootfs), where a 0/0 device is a device and no xattr is read.
   */
  xattrs: 'trusted' | 'user' | null;
}

export interface Resolution {
  /** The merged directories walked through, from the root, with the top-most part's mode. */
  at: { name: string; mode: number }[];
  /** 'link': the last component is a symlink (only with lastLink, which asks what it is, not where it leads). */
  kind: 'dir' | 'other' | 'link' | null;
  /** From the missing component on (its first name the missing one), or null where the walk cannot go on. */
  rest: string[] | null;
}

/** A directory whose lower parts overlay does not look at (set by the unpacker for an opaque whiteout). */
function opaque(pathFd: number, xattrs: 'trusted' | 'user'): boolean {
  const f = fsat();
  // fgetxattr needs an fd that is open for real (not O_PATH); O_DIRECTORY: only a directory opens.
  const fd = f.openat(pathFd, '.', fs.constants.O_RDONLY | fs.constants.O_DIRECTORY, 0);
  if (fd < 0) return false;
  try {
    const v = f.fgetxattr(fd, `${xattrs}.overlay.opaque`);
    return Buffer.isBuffer(v) && v.toString() === 'y';
  } finally {
    f.close(fd);
  }
}

/**
 * Walks `target` through the merged view. `leaf(fd, st)` sees the final entry when it is no
 * directory and no symlink (an O_PATH fd, closed after leaf returns). Overlay's lookup rules: in a
 * merged directory the top-most layer that has the name wins; a whiteout (char device 0/0) hides
 * the name in every layer below it; a non-directory hides everything below it; below a directory,
 * lower layers' directories of the same name merge in until one of them is opaque.
 */
export function walkMerged(stack: LayerStack, target: string, leaf?: (fd: number, st: fs.Stats) => void, opts: { lastLink?: boolean; budget?: WalkBudget } = {}): Resolution {
  const shared = opts.budget;
  let todo = target.split('/').filter(Boolean);
  const at: { name: string; mode: number }[] = [];
  const roots: number[] = [];
  const levels: number[][] = []; // levels[i]: the parts (fds, top-most first) of the directory at[i]
  const close = (fds: number[]): void => {
    for (const fd of fds) fs.closeSync(fd);
  };
  const popTo = (n: number): void => {
    while (levels.length > n) close(levels.pop()!);
    at.length = n;
  };
  try {
    for (const dir of stack.top) {
      try {
        roots.push(fs.openSync(dir, O_PATH | fs.constants.O_DIRECTORY));
      } catch {
        return { at, kind: null, rest: null };
      }
    }
    let links = 0;
    let seen = 0;
    let lookups = 0;
    while (todo.length) {
      if (++seen > BUDGET.components) return { at, kind: null, rest: null };
      const c = todo.shift()!;
      if (c === '.') continue;
      if (c === '..') {
        popTo(Math.max(0, at.length - 1));
        continue;
      }
      const parts = levels.length ? levels[levels.length - 1]! : roots;
      const dirs: number[] = [];
      let other: { fd: number; st: fs.Stats; parent: number } | null = null;
      for (const parent of parts) {
        if (++lookups > BUDGET.lookups || (shared && --shared.lookups < 0)) {
          close(dirs);
          return { at, kind: null, rest: null };
        }
        let fd: number;
        try {
          fd = fs.openSync(`/proc/self/fd/${parent}/${c}`, O_PATH | fs.constants.O_NOFOLLOW);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
          close(dirs);
          return { at, kind: null, rest: null };
        }
        const st = fs.fstatSync(fd);
        if (stack.xattrs && st.isCharacterDevice() && st.rdev === 0) {
          fs.closeSync(fd); // a whiteout: nothing of this name below
          break;
        }
        if (!st.isDirectory()) {
          // The top-most non-directory is the entry; under a directory it hides the layers below.
          if (dirs.length === 0) other = { fd, st, parent };
          else fs.closeSync(fd);
          break;
        }
        dirs.push(fd);
        if (!stack.xattrs || opaque(fd, stack.xattrs)) break;
      }
      if (!dirs.length && !other) {
        const rest = [c, ...todo];
        return { at, kind: null, rest: rest.some((r) => r === '.' || r === '..') ? null : rest };
      }
      if (other) {
        const { fd, st, parent } = other;
        if (st.isSymbolicLink()) {
          if (opts.lastLink && !todo.length) {
            fs.closeSync(fd);
            return { at, kind: 'link', rest: null };
          }
          let link: string | undefined;
          try {
            // The link's own text, read in its directory (readlink never follows the last component).
            link = fs.readlinkSync(`/proc/self/fd/${parent}/${c}`);
          } catch {
            link = undefined;
          }
          fs.closeSync(fd);
          if (link === undefined || ++links > BUDGET.links) return { at, kind: null, rest: null };
          if (link.startsWith('/')) popTo(0);
          todo = [...link.split('/').filter(Boolean), ...todo];
          continue;
        }
        try {
          if (todo.length) return { at, kind: null, rest: null };
          leaf?.(fd, st);
          return { at, kind: 'other', rest: null };
        } finally {
          fs.closeSync(fd);
        }
      }
      levels.push(dirs);
      at.push({ name: c, mode: fs.fstatSync(dirs[0]!).mode & 0o7777 });
    }
    return { at, kind: 'dir', rest: null };
  } finally {
    for (const l of levels) close(l);
    close(roots);
  }
}

/** The mode of the merged root (its top-most layer's). */
export function mergedRootMode(stack: LayerStack): number {
  return fs.statSync(stack.top[0]!).mode & 0o7777;
}

/**
 * A small regular file of the merged view, or null: missing, not a regular file (a FIFO or device
 * is never opened: the walk only looks at it through O_PATH), larger than `max` bytes, or not
 * reachable inside the budget. The file is opened by reopening the walk's own O_PATH fd, so what is
 * read is the inode the walk checked, never what a path names by then.
 */
export function readMerged(stack: LayerStack, target: string, max = 1 << 20): Buffer | null {
  let out: Buffer | null = null;
  walkMerged(stack, target, (fd, st) => {
    if (!st.isFile() || st.size > max) return;
    let rfd: number;
    try {
      rfd = fs.openSync(`/proc/self/fd/${fd}`, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
    } catch {
      return;
    }
    try {
      const again = fs.fstatSync(rfd);
      if (!again.isFile() || again.ino !== st.ino || again.dev !== st.dev) return;
      const buf = Buffer.alloc(Math.min(max, st.size) + 1);
      let n = 0;
      while (n < buf.length) {
        const r = fs.readSync(rfd, buf, n, buf.length - n, n);
        if (r === 0) break;
        n += r;
      }
      out = n > max ? null : buf.subarray(0, n);
    } finally {
      fs.closeSync(rfd);
    }
  });
  return out;
}
