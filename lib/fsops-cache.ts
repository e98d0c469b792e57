// fsops-cache.ts: a plan's filesystem ops (fsops.ts buildFsOps) remembered per set of options, with
// the addon's converted copy of them, and an image's read-only root prepared once for a list
// (prepareImageRoot: docs/design.md, The mount namespace template).
import * as fs from 'node:fs';

import { errnoName, NsboxError } from './errors';
import { native, type NativeOp } from './native';
import type { ResolvedAppOptions } from './options';
import { deviceKey, type HostDevice } from './devices';
import { etcBinds } from './etc-ops';
import { keepsSysAdmin } from './caps';
import { buildFsOps, checkRootfs, sourceKind, type OpMeta } from './fsops';

/** A plan's filesystem ops, their meaning, and the addon's converted copy of them (compileOps). */
interface FsOps {
  ops: NativeOp[];
  meta: OpMeta[];
  compiled: number;
  /** The compiled list owns a prepared image root (prepareImageRoot): of these layer directories, with these identities. */
  detached?: { layers: string; ids: string };
}
const fsOpsCache = new Map<string, FsOps>();
const FS_OPS_CACHE_MAX = 32;

/**
 * Drops the remembered op list whose meaning is `meta` (a start of it failed at an op): the host
 * state it was shaped by (which mount points the rootfs has) may have changed, so the next start
 * looks again.
 */
export function forgetFsOps(meta: OpMeta[]): void {
  for (const [key, hit] of fsOpsCache) {
    // The start's meta is the list's own, or (with /etc binds after it, plan.opsAfter) begins with
    // the list's entries themselves.
    if (hit.meta !== meta && !(meta.length > hit.meta.length && hit.meta.every((m, i) => m === meta[i]))) continue;
    native().releaseOps(hit.compiled);
    fsOpsCache.delete(key);
    return;
  }
}

/**
 * Drops every remembered op list that holds a prepared image root (this process's removeImage and
 * pruneImages): a removed layer is not kept open by a root no start will use again.
 */
export function forgetImageRoots(): void {
  for (const [key, hit] of fsOpsCache) {
    if (!hit.detached) continue;
    native().releaseOps(hit.compiled);
    fsOpsCache.delete(key);
  }
}

/** A layer directory's identity: one removed and pulled again is another directory. */
function layerId(dir: string): string {
  try {
    const st = fs.statSync(dir, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return '';
  }
}

/**
 * buildFsOps, remembered: a process that starts many containers with the same rootfs and mounts
 * reuses one op list (and the addon's converted copy, so each spawn skips converting ~35 ops; the
 * copy is released when the list leaves this cache). The
 * host lookups that shape the list are made every time and are part of the key: whether the rootfs
 * is a directory, and whether each bind source is one. Whether the rootfs has every mount point is
 * not looked up again (that would cost every start a walk per point): a start that fails at an op
 * drops its list (forgetFsOps), so a point removed since is noticed on the next start, which then
 * gets the overlay. The lists are never changed once made.
 */
export function fsOpsFor(o: ResolvedAppOptions, staging: string, userns: boolean, etc = false, devices: HostDevice[] = [], sharedEtc?: string): FsOps {
  if (o.rootfs !== undefined) checkRootfs(o.rootfs);
  const kinds = o.mounts.map((m) => (m.type === 'bind' ? sourceKind(m.source, 'mount.bind') : ''));
  // An image's layers by their directories' identities too: a list may hold a prepared root of them.
  const ids = o.image ? JSON.stringify(o.image.layers.map(layerId)) : '';
  const key = JSON.stringify([staging, userns, o.rootfs ?? null, o.image ? [o.image.ref, o.image.layers, ids, o.image.xattrs, o.image.rootSize, o.image.makeCwd ? o.cwd : null] : null, o.readonly, o.mounts, kinds, deviceKey(devices), etc, sharedEtc ?? null, o.etcFiles, o.proc, o.sysfs === true, o.mqueue === true, keepsSysAdmin(o.capabilities)]);
  let hit = fsOpsCache.get(key);
  if (hit) {
    // Most recently used last: the first key is the one to drop when the cache is full.
    fsOpsCache.delete(key);
  } else {
    // An image's read-only root is made once and cloned by each start where the mount template
    // makes it (root, no user namespace, a kernel that mounts an overlay over detached layers).
    // Not to a container keeping CAP_SYS_ADMIN: its remount of the root's superblock (ro flags,
    // sync) would reach every container cloning it (attack review).
    const share = !!o.image && o.readonly && !userns && !keepsSysAdmin(o.capabilities) && native().mntTemplateOverlay();
    const L = buildFsOps(o, staging, userns, etc, devices, share);
    // Shared /etc files (etc.ts, sharedEtcDir): the same binds every start, so in the cached list.
    if (sharedEtc !== undefined) etcBinds(L, sharedEtc, o);
    if (L.preparedRoot) {
      const K = native().constants;
      const r = native().prepareImageRoot(L.preparedRoot.ops);
      if (typeof r !== 'number') {
        const m = L.preparedRoot.meta[r.index]!;
        throw new NsboxError({ code: errnoName(r.errno), errno: r.errno, syscall: m.syscall, step: m.step, path: m.path });
      }
      const root = L.ops.find((op) => op.where & K.WHERE_SRC_DETACHED!)!;
      root.dev = r;
      // (The list owns the fd from here on, also if compiling fails.)
      const detached = { layers: JSON.stringify(o.image!.layers), ids };
      hit = { ops: L.ops, meta: L.meta, compiled: native().compileOps(L.ops, r), detached };
      // A root of the same layer paths as other directories is of directories removed since
      // (another process's removeImage, then a pull): dropped, not kept open until the cache is full.
      for (const [k, other] of fsOpsCache) {
        if (other.detached?.layers !== detached.layers || other.detached.ids === ids) continue;
        native().releaseOps(other.compiled);
        fsOpsCache.delete(k);
      }
    } else {
      hit = { ops: L.ops, meta: L.meta, compiled: native().compileOps(L.ops) };
    }
    if (fsOpsCache.size >= FS_OPS_CACHE_MAX) {
      const oldest = fsOpsCache.keys().next().value!;
      native().releaseOps(fsOpsCache.get(oldest)!.compiled);
      fsOpsCache.delete(oldest);
    }
  }
  fsOpsCache.set(key, hit);
  return hit;
}
