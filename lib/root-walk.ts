// root-walk.ts: container paths resolved in a root on the host the way the child resolves them,
// without following anything on the host: in a rootfs directory (resolveInRoot, an fd walk), or in
// an image's layers (the merged view of lib/images/merged.ts). Only hints for the planner (which
// mount points are missing and must be made in an upper layer, where the generated /etc files'
// points go); the child finds out for itself.
import * as fs from 'node:fs';

import { walkMerged, type WalkBudget } from './images/merged';

/** O_PATH (not in fs.constants): an fd that names a file without opening it (same on x86_64 and arm64). */
const O_PATH = 0o10000000;
/** What one resolveInRoot may cost: components looked at, links followed (the kernel's own limit). */
export const RESOLVE_BUDGET = { components: 256, links: 40 };

/**
 * A container path resolved in a rootfs on the host the way the child resolves it
 * (RESOLVE_IN_ROOT: a symlink is followed as a path inside the rootfs, ".." stops at its top): the
 * real directories it goes through (`at`, from the rootfs's top, with their modes), then either
 * what the last one is (`kind`: 'dir' or 'other') or, where a component is missing, the rest of the
 * path from it on (`rest`, its first name the missing one). `rest` is null where the walk cannot go
 * on (a component that is no directory, a loop, a "." or ".." after a missing name, more than
 * RESOLVE_BUDGET). Only a hint for planning: the rootfs can change before the child runs, which
 * then finds out for itself.
 *
 * The rootfs is hostile and may change while this runs (a writable run of the same image): every
 * component is opened O_PATH | O_NOFOLLOW relative to the fd of the directory before it (through
 * /proc/self/fd/N), so a directory swapped for a link after it was looked at is never followed on
 * the host: nothing of the host (a link's text, a directory's mode) ends up in the plan. The budget
 * bounds what an image can make this cost on Node's thread.
 */
export function resolveInRoot(rootfs: string, target: string, opts: { lastLink?: boolean } = {}): { at: { name: string; mode: number }[]; kind: 'dir' | 'other' | 'link' | null; rest: string[] | null } {
  let todo = target.split('/').filter(Boolean);
  const at: { name: string; mode: number }[] = [];
  let root: number;
  try {
    root = fs.openSync(rootfs, O_PATH | fs.constants.O_DIRECTORY);
  } catch {
    return { at, kind: null, rest: null };
  }
  const fds: number[] = []; // fds[i]: the directory at[i]
  const dirFd = (): number => (fds.length ? fds[fds.length - 1]! : root);
  const popTo = (n: number): void => {
    while (fds.length > n) fs.closeSync(fds.pop()!);
    at.length = n;
  };
  let links = 0;
  let seen = 0;
  try {
    while (todo.length) {
      if (++seen > RESOLVE_BUDGET.components) return { at, kind: null, rest: null };
      const c = todo.shift()!;
      if (c === '.') continue;
      if (c === '..') {
        popTo(Math.max(0, at.length - 1));
        continue;
      }
      const p = `/proc/self/fd/${dirFd()}/${c}`;
      let fd: number;
      try {
        fd = fs.openSync(p, O_PATH | fs.constants.O_NOFOLLOW);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return { at, kind: null, rest: null };
        const rest = [c, ...todo];
        return { at, kind: null, rest: rest.some((r) => r === '.' || r === '..') ? null : rest };
      }
      const st = fs.fstatSync(fd);
      if (st.isSymbolicLink()) {
        if (opts.lastLink && !todo.length) {
          // The last component is a link, and the caller asked what it is, not where it leads.
          fs.closeSync(fd);
          return { at, kind: 'link', rest: null };
        }
        let link: string | undefined;
        try {
          // The link's own text (readlink never follows the last component), read in its directory.
          link = fs.readlinkSync(p);
        } catch {
          link = undefined;
        }
        fs.closeSync(fd);
        if (link === undefined || ++links > RESOLVE_BUDGET.links) return { at, kind: null, rest: null };
        if (link.startsWith('/')) popTo(0);
        todo = [...link.split('/').filter(Boolean), ...todo];
        continue;
      }
      if (!st.isDirectory()) {
        fs.closeSync(fd);
        return todo.length ? { at, kind: null, rest: null } : { at, kind: 'other', rest: null };
      }
      fds.push(fd);
      at.push({ name: c, mode: st.mode & 0o7777 });
    }
    return { at, kind: 'dir', rest: null };
  } finally {
    for (const fd of fds) fs.closeSync(fd);
    fs.closeSync(root);
  }
}

/** What a container path is in a rootfs (resolveInRoot): 'dir', 'other', or null where it is missing. */
export function kindInRoot(rootfs: string, target: string): 'dir' | 'other' | null {
  return resolveInRoot(rootfs, target).kind as 'dir' | 'other' | null;
}

/**
 * What a root is made of: a directory (rootfs), or an image's unpacked layers (`layers` lowest
 * first, as imageRoot gives them; `xattrs` the namespace of overlay's attributes in them), which
 * have no merged directory on the host: they are walked as overlay would merge them (merged.ts).
 */
export type RootSource = { dir: string } | { layers: string[]; xattrs: 'trusted' | 'user'; ref: string };

/** A container path in a root source (resolveInRoot for a directory, the merged walk for layers; `budget` shared by a plan's walks). */
export function resolveInSource(src: RootSource, target: string, opts: { lastLink?: boolean; budget?: WalkBudget } = {}): { at: { name: string; mode: number }[]; kind: 'dir' | 'other' | 'link' | null; rest: string[] | null } {
  return 'dir' in src ? resolveInRoot(src.dir, target, { lastLink: opts.lastLink }) : walkMerged({ top: [...src.layers].reverse(), xattrs: src.xattrs }, target, undefined, opts);
}
