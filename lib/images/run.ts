// run.ts: an image as a container's root (issue #19 part 2): the image is found in the store (or
// pulled, per the `pull` option), its layers leased for as long as the container or machine uses
// them, and its config's defaults applied to the options the caller left out. The root itself is
// planned by fsops.ts (an overlay of the layers, never written).
import { invalidValue, notSupported, NsboxError } from '../errors';
import { checkEnv, DEFAULT_PATH, type ResolvedImage } from '../options';
import * as fs from 'node:fs';

import { leaseImage, pull, storeOf, type ImageRoot } from './api';
import { imageError } from './registry';
import { imageCommand, imageEnv, imageUser, imageWorkdir, runConfig } from './config';

export type ImageLease = ImageRoot & { release(linger?: boolean): void };

function leaseOf(img: ResolvedImage): ImageLease {
  try {
    const store = storeOf({ storeDir: img.storeDir });
    // A store that was never made has no image (and no lock to take).
    if (!fs.existsSync(store.dir)) throw imageError('ERR_IMAGE_UNKNOWN', 'image.store', `no image ${img.ref} in ${store.dir}`, img.ref);
    return leaseImage(img.ref, { storeDir: img.storeDir });
  } catch (e) {
    if (e instanceof NsboxError && e.code === 'ERR_IMAGE_UNKNOWN' && img.pull === 'never') {
      throw new NsboxError({ code: e.code, step: e.step, path: e.path, message: `${e.message.replace(/ \(step [^)]*\)$/, '')}, and pull is 'never' (step ${e.step})` });
    }
    throw e;
  }
}

/** The image leased: pulled first where `pull` says so ('always', or 'missing' and not in the store). */
export async function acquireImage(img: ResolvedImage, signal?: AbortSignal): Promise<ImageLease> {
  if (img.pull === 'always') await pull(img.ref, { storeDir: img.storeDir, insecureRegistries: img.insecure, signal });
  try {
    return leaseOf(img);
  } catch (e) {
    if (!(e instanceof NsboxError) || e.code !== 'ERR_IMAGE_UNKNOWN' || img.pull !== 'missing') throw e;
  }
  await pull(img.ref, { storeDir: img.storeDir, insecureRegistries: img.insecure, signal });
  return leaseOf(img);
}

/**
 * acquireImage for the synchronous starts (spawn, createPool): they cannot wait for a pull, so
 * the image must be in the store already (pull() it first, or use run()).
 */
export function acquireImageSync(img: ResolvedImage, who: string): ImageLease {
  if (img.pull === 'always') throw invalidValue('pull', img.pull, `cannot be 'always' for ${who}, which is synchronous: pull() first, or use run()`);
  try {
    return leaseOf(img);
  } catch (e) {
    if (e instanceof NsboxError && e.code === 'ERR_IMAGE_UNKNOWN' && img.pull === 'missing') {
      throw new NsboxError({ code: e.code, step: e.step, path: e.path, message: `${e.message.replace(/ \(step [^)]*\)$/, '')}; ${who} is synchronous and does not pull: pull() it first, or use run() (step ${e.step})` });
    }
    throw e;
  }
}

/** The parts of the options an image's config can fill, as the caller gave them (undefined: not given). */
export interface Given {
  command?: unknown;
  env?: unknown;
  cwd?: unknown;
  user?: unknown;
}

/**
 * Fills in what the image gives by default (Entrypoint/Cmd, Env under the caller's env, WorkingDir,
 * User) and records its layers. `o` is the resolved options (mutated); `given` what the caller
 * passed. Throws before anything starts; the caller releases the lease then.
 */
export function applyImage(
  o: { command: string[]; env: Record<string, string>; cwd: string; user: { uid: number; gid: number; groups: number[] }; image: ResolvedImage | undefined },
  given: Given,
  lease: ImageRoot,
  hasUser = true,
): void {
  const img = o.image!;
  img.layers = lease.layers;
  img.xattrs = lease.xattrs;
  const c = runConfig(lease.config);
  if (given.command === undefined) {
    o.command = imageCommand(c, img.entrypoint, undefined);
    if (o.command.length === 0) throw invalidValue('command', undefined, `must be given: the image ${img.ref} has no Entrypoint or Cmd`);
    if (o.command[0] === '') throw new NsboxError({ code: 'EINVAL', step: 'image.config', message: `the image ${img.ref}'s Entrypoint/Cmd starts with an empty string (step image.config)` });
  } else if (img.entrypoint !== undefined) {
    o.command = [...img.entrypoint, ...o.command];
  } else {
    // docker's rule: the caller's command replaces Cmd and follows the image's Entrypoint.
    o.command = imageCommand(c, undefined, o.command);
  }
  let home: string | undefined;
  if (hasUser && given.user === undefined) {
    const u = userOf(c, lease);
    o.user = { uid: u.uid, gid: u.gid, groups: u.groups };
    home = u.home;
  }
  const callerEnv = given.env === undefined ? {} : checkEnv('env', given.env);
  // checkEnv filled in PATH and HOME; only what the caller wrote counts as theirs.
  const explicit = (given.env ?? {}) as Record<string, unknown>;
  const env: Record<string, string> = { ...imageEnv(c) };
  for (const [k, v] of Object.entries(callerEnv)) if (k in explicit) env[k] = v;
  env.PATH ??= DEFAULT_PATH;
  env.HOME ??= home ?? '/';
  o.env = env;
  if (given.cwd === undefined) {
    o.cwd = imageWorkdir(c);
    img.makeCwd = o.cwd !== '/';
  }
}

// An image's User resolved in its own /etc/passwd and /etc/group, kept for this process: the
// layers under one set of directories never change (a layer's directory is its content's digest).
const users = new Map<string, ReturnType<typeof imageUser>>();

function userOf(c: ReturnType<typeof runConfig>, lease: ImageRoot): ReturnType<typeof imageUser> {
  // The User as JSON: String() spelled an absent User (root) as the name 'undefined' (and null as 'null').
  const k = `${lease.layers.join('\0')}\0${lease.xattrs}\0${JSON.stringify(c.User ?? null)}`;
  const hit = users.get(k);
  if (hit) return { ...hit, groups: [...hit.groups] };
  const u = imageUser(c, { top: [...lease.layers].reverse(), xattrs: lease.xattrs });
  if (users.size >= 256) users.clear();
  users.set(k, { ...u, groups: [...u.groups] });
  return u;
}

/**
 * Images with a user namespace: only a rootless caller's own store (its layers are the caller's
 * files and carry user.overlay.* attributes, which the container's namespace may read). As root
 * with a user namespace the layers belong to host ids the namespace does not map and their
 * trusted.overlay.* attributes (opaque directories) cannot be read there: refused, never run with
 * a wrong view of the image.
 */
export function checkImageUserns(img: ResolvedImage, userns: boolean, privileged: boolean): void {
  if (!userns) return;
  if (privileged || img.xattrs !== 'user') {
    throw notSupported('rootfs.overlay', `image ${img.ref} with a user namespace (userns) as root: the layers in a root store belong to host ids the namespace does not map, and their trusted.overlay attributes cannot be read in it; run it without userns, or rootless from a rootless store`);
  }
}
