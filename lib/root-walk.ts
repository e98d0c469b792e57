// root-walk.ts: container paths resolved in a root on the host the way the child resolves them,
// without following anything on the host: in a rootfs directory (resolveInRoot, an fd walk), or in
// an image's layers (the merged view of lib/images/merged.ts). Only hints for the planner (which
// mount points are missing and must be made in an upper layer, where the generated /etc files'
// points go); the child finds out for itself.
import { BUDGET, walkMerged, type Resolution, type WalkBudget } from './images/merged';

/** What one resolveInRoot may cost: components looked at, links followed (the kernel's own limit). */
export const RESOLVE_BUDGET = { components: BUDGET.components, links: BUDGET.links };

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
 * It is the merged walk (images/merged.ts) over one plain directory: the rootfs is hostile and may
 * change while this runs, so every component is opened O_PATH | O_NOFOLLOW relative to the fd of
 * the directory before it, and a directory swapped for a link after it was looked at is never
 * followed on the host.
 */
export function resolveInRoot(rootfs: string, target: string, opts: { lastLink?: boolean } = {}): Resolution {
  return walkMerged({ top: [rootfs], xattrs: null }, target, undefined, { lastLink: opts.lastLink });
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
export function resolveInSource(src: RootSource, target: string, opts: { lastLink?: boolean; budget?: WalkBudget } = {}): Resolution {
  return 'dir' in src ? resolveInRoot(src.dir, target, { lastLink: opts.lastLink }) : walkMerged({ top: [...src.layers].reverse(), xattrs: src.xattrs }, target, undefined, opts);
}
