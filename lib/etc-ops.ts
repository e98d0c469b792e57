// etc-ops.ts: the ops that bind the generated /etc files (lib/etc.ts) into a root: their mount
// points (made in nsbox's own root, or in a deferred root's throw-away overlay), and the read-only
// binds themselves. fsops.ts builds the rest of the filesystem plan.
import * as path from 'node:path';

import { ETC_FILES } from './etc';
import type { OpList } from './fsops';
import { native } from './native';
import type { ResolvedAppOptions, ResolvedMount } from './options';

/**
 * The generated /etc files (etc.ts) bound read-only over the image's, after the user's mounts: a
 * file a user's mount targets is left to it. `own`: the root is nsbox's own tmpfs (the default
 * rootfs), where the mount points are made; in a caller's rootfs they never are (`required`:
 * a missing one fails the start, else it is skipped).
 */
export function etcOps(L: OpList, dir: string | null, userMounts: ResolvedMount[], own: boolean, required: boolean): void {
  const K = native().constants;
  for (const name of ETC_FILES) {
    const target = '/etc/' + name;
    if (userMounts.some((m) => m.target === target)) continue;
    // Under a caller's mount (its host /etc bound at /etc) no point is ever made: bound where the
    // caller's files have one, unless required.
    const under = underMount(target, userMounts);
    if (own && !under) L.touch(target, 'etc');
    if (dir !== null) L.etcBind(path.join(dir, name), target, K.MS_RDONLY! | K.MS_NOSUID! | K.MS_NODEV! | K.MS_NOEXEC!, 'etc', required || (own && !under));
  }
}

/** Whether a container path lies below one of the caller's mounts (its files, never written to). */
const underMount = (target: string, userMounts: ResolvedMount[]): boolean =>
  userMounts.some((m) => m.target === '/' || target.startsWith(m.target + '/'));

/** The generated /etc files' mount points as points of a deferred root (made in its overlay if missing). */
export function etcPoints(L: OpList, userMounts: ResolvedMount[]): void {
  for (const t of ETC_FILES.map((n) => '/etc/' + n)) if (!userMounts.some((m) => m.target === t) && !underMount(t, userMounts)) L.filePoint(t, 'etc');
}

/**
 * An app container's /etc binds, after the list that made their mount points (buildFsOps, `etc`):
 * appended to it for a shared directory (fsOpsFor), else a list of their own (plan.opsAfter).
 */
export function etcBinds(L: OpList, dir: string, o: ResolvedAppOptions): OpList {
  // nsbox's own root (the default rootfs); an image's root is a caller's like a rootfs.
  const own = o.rootfs === undefined && !o.image;
  const K = native().constants;
  for (const name of ETC_FILES) {
    const target = '/etc/' + name;
    if (o.mounts.some((m) => m.target === target)) continue;
    const required = o.etcFiles === 'require' || (own && !underMount(target, o.mounts));
    L.etcBind(path.join(dir, name), target, K.MS_RDONLY! | K.MS_NOSUID! | K.MS_NODEV! | K.MS_NOEXEC!, 'etc', required);
  }
  return L;
}
