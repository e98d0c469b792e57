// api.ts: the image functions the package exports (pull, images, removeImage, pruneImages; and
// importImage in import.ts) and the internal imageRoot/leaseImage that a container start uses.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { invalidType, invalidValue, outOfRange } from '../errors';
import { isPlainObject, rejectUnknownKeys } from '../util';
import { forgetImageRoots } from '../fsops-cache';
import { fetchLayers, type LayerSource, type Progress } from './layers';
import { checkRegistryHosts, parseRef } from './ref';
import { checkAbsolutePath } from '../options';
import { DEFAULT_STALL_TIMEOUT, imageError, LAYER_TYPES, MEDIA, Registry, type Credentials } from './registry';
import { collect, defaultStoreDir, pinHeld, pinLocked, Store, unpin, type ImageRecord } from './store';

export type { Progress } from './layers';
export type { Credentials } from './registry';

export interface StoreOptions {
  /** The image store (default /var/lib/nsbox/images as root, $XDG_DATA_HOME/nsbox/images otherwise). */
  storeDir?: string;
}

export interface PullOptions extends StoreOptions {
  signal?: AbortSignal;
  onProgress?: (e: Progress) => void;
  /** 'linux/amd64', 'linux/arm64/v8', ...; default: this machine's. */
  platform?: string;
  auth?: Credentials;
  /** Registries (host[:port]) spoken to over plain HTTP besides localhost and 127.0.0.0/8. */
  insecureRegistries?: string[];
  /** Bytes the image may unpack to (all layers); default 16 GiB. */
  maxImageSize?: number;
  /** Blobs downloaded at once; default 3. */
  concurrency?: number;
  /**
   * Milliseconds the registry (or its token service) may send nothing while a response is waited
   * on before the request is given up (ETIMEDOUT; a blob's transfer is resumed, up to its retries);
   * default 30000.
   */
  stallTimeout?: number;
}

export interface ImageLayer {
  digest: string;
  diffId: string;
  size: number;
  mediaType: string;
}

export interface ImageInfo {
  /** The normalized reference (docker.io/library/busybox:latest). */
  ref: string;
  /** The manifest's digest (for a multi-platform image, the index's: what `skopeo inspect` reports). */
  digest: string;
  /** 'linux/amd64', 'linux/arm64/v8', ... */
  platform: string;
  /** The OCI image config (Entrypoint, Cmd, Env, WorkingDir, User, ... under `config`). */
  config: Record<string, unknown>;
  layers: ImageLayer[];
  /** Compressed bytes of the layers. */
  size: number;
}

export const DEFAULT_MAX_IMAGE_SIZE = 16 * 1024 ** 3;

export function storeOf(o: StoreOptions | undefined): Store {
  if (o?.storeDir !== undefined && (typeof o.storeDir !== 'string' || o.storeDir === '')) throw invalidType('storeDir', 'a non-empty string', o.storeDir);
  // Absolute, as run()'s storeDir: a relative one would name another store in every cwd.
  return new Store(o?.storeDir !== undefined ? checkAbsolutePath('storeDir', o.storeDir) : defaultStoreDir());
}

interface Resolved {
  store: Store;
  signal: AbortSignal | undefined;
  onProgress: ((e: Progress) => void) | undefined;
  platform: { os: string; arch: string; variant?: string };
  auth: Credentials | undefined;
  insecure: string[];
  maxImageSize: number;
  concurrency: number;
  stallTimeout: number;
}

const ARCH: Record<string, [string, string?]> = { x64: ['amd64'], arm64: ['arm64', 'v8'], arm: ['arm', 'v7'], ia32: ['386'], ppc64: ['ppc64le'], s390x: ['s390x'], riscv64: ['riscv64'] };

export function parsePlatform(p: string, name = 'platform'): { os: string; arch: string; variant?: string } {
  const m = /^([a-z0-9]+)\/([a-z0-9_]+)(?:\/([a-z0-9]+))?$/.exec(p);
  if (!m) throw invalidValue(name, p, "must be 'os/arch' or 'os/arch/variant', e.g. 'linux/amd64' or 'linux/arm64/v8'");
  const variant = m[3] ?? (m[2] === 'arm64' ? 'v8' : undefined);
  return { os: m[1]!, arch: m[2]!, ...(variant ? { variant } : {}) };
}

export function platformString(p: { os: string; arch: string; variant?: string }): string {
  return `${p.os}/${p.arch}${p.variant ? '/' + p.variant : ''}`;
}

export function resolvePull(opts: unknown, extra: readonly string[] = []): Resolved {
  if (opts === undefined) opts = {};
  if (!isPlainObject(opts)) throw invalidType('options', 'an object', opts);
  rejectUnknownKeys(opts, ['signal', 'onProgress', 'platform', 'auth', 'storeDir', 'insecureRegistries', 'maxImageSize', 'concurrency', 'stallTimeout', ...extra], '');
  const o = opts as PullOptions;
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw invalidType('signal', 'an AbortSignal', o.signal);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw invalidType('onProgress', 'a function', o.onProgress);
  if (o.platform !== undefined && typeof o.platform !== 'string') throw invalidType('platform', 'a string', o.platform);
  const [arch, variant] = ARCH[process.arch] ?? [process.arch];
  const platform = o.platform !== undefined ? parsePlatform(o.platform) : { os: 'linux', arch, ...(variant ? { variant } : {}) };
  if (o.auth !== undefined) {
    if (!isPlainObject(o.auth)) throw invalidType('auth', 'an object ({ username, password } or { token })', o.auth);
    rejectUnknownKeys(o.auth, ['username', 'password', 'token'], 'auth.');
    for (const k of ['username', 'password', 'token'] as const) if (o.auth[k] !== undefined && typeof o.auth[k] !== 'string') throw invalidType(`auth.${k}`, 'a string', o.auth[k]);
    if (!o.auth.token && !o.auth.username) throw invalidValue('auth', o.auth, 'must have a username (with a password) or a token');
  }
  const insecure = o.insecureRegistries === undefined ? [] : checkRegistryHosts('insecureRegistries', o.insecureRegistries);
  if (o.maxImageSize !== undefined) {
    if (typeof o.maxImageSize !== 'number') throw invalidType('maxImageSize', 'a number', o.maxImageSize);
    if (!Number.isSafeInteger(o.maxImageSize) || o.maxImageSize < 1) throw outOfRange('maxImageSize', 'a positive integer (bytes)', o.maxImageSize);
  }
  if (o.concurrency !== undefined) {
    if (typeof o.concurrency !== 'number') throw invalidType('concurrency', 'a number', o.concurrency);
    if (!Number.isInteger(o.concurrency) || o.concurrency < 1 || o.concurrency > 16) throw outOfRange('concurrency', '>= 1 and <= 16', o.concurrency);
  }
  if (o.stallTimeout !== undefined) {
    if (typeof o.stallTimeout !== 'number') throw invalidType('stallTimeout', 'a number', o.stallTimeout);
    // setTimeout's own limit: a larger delay would fire at once.
    if (!Number.isInteger(o.stallTimeout) || o.stallTimeout < 1 || o.stallTimeout > 2 ** 31 - 1) throw outOfRange('stallTimeout', '>= 1 and <= 2147483647 (milliseconds)', o.stallTimeout);
  }
  return {
    store: storeOf(o),
    signal: o.signal,
    onProgress: o.onProgress,
    platform,
    auth: o.auth,
    insecure,
    maxImageSize: o.maxImageSize ?? DEFAULT_MAX_IMAGE_SIZE,
    concurrency: o.concurrency ?? 3,
    stallTimeout: o.stallTimeout ?? DEFAULT_STALL_TIMEOUT,
  };
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface Manifest {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

/** The entry of an index for a platform (arm64's variant v8 may be left out on either side). */
export function choosePlatform(index: { manifests?: Descriptor[] }, p: Resolved['platform'], what: string): Descriptor {
  const list = (index.manifests ?? []).filter((m) => m.platform && m.platform.os !== 'unknown');
  const v = (x: string | undefined, arch: string) => x ?? (arch === 'arm64' ? 'v8' : undefined);
  const hit = list.find((m) => m.platform!.os === p.os && m.platform!.architecture === p.arch && (p.variant === undefined || v(m.platform!.variant, p.arch) === p.variant));
  if (!hit) {
    const have = list.map((m) => platformString({ os: m.platform!.os, arch: m.platform!.architecture, variant: m.platform!.variant })).join(', ');
    throw imageError('ERR_IMAGE_PLATFORM', 'image.manifest', `${what} has no ${platformString(p)} image (it has: ${have || 'none'})`);
  }
  return hit;
}

/** Checks a manifest's media types and its config against each other: the layers to fetch. */
export function layerSources(m: Manifest, config: { rootfs?: { diff_ids?: string[] } }, what: string): LayerSource[] {
  if (m.mediaType && m.mediaType !== MEDIA.ociManifest && m.mediaType !== MEDIA.dockerManifest) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.manifest', `${what}: unsupported manifest media type ${m.mediaType}`);
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (!Array.isArray(m.layers) || diffIds.length !== m.layers.length) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.manifest', `${what}: the manifest has ${m.layers?.length} layers but the config ${diffIds.length} diff IDs`);
  return m.layers.map((l, i) => {
    if (!LAYER_TYPES.has(l.mediaType ?? '')) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.manifest', `${what}: unsupported layer media type ${l.mediaType}`, l.digest);
    if (!/^sha256:[a-f0-9]{64}$/.test(l.digest) || !/^sha256:[a-f0-9]{64}$/.test(diffIds[i]!)) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.manifest', `${what}: unsupported digest ${l.digest}`);
    if (!Number.isSafeInteger(l.size) || l.size < 0) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.manifest', `${what}: layer ${l.digest} has no valid size`);
    return { digest: l.digest, size: l.size, mediaType: l.mediaType!, diffId: diffIds[i]! };
  });
}

export function infoOf(rec: ImageRecord, config: Record<string, unknown>): ImageInfo {
  return { ref: rec.ref, digest: rec.digest, platform: rec.platform, config, layers: rec.layers.map(({ digest, diffId, size, mediaType }) => ({ digest, diffId, size, mediaType })), size: rec.size };
}

/** Stores an image whose manifest and config are verified: fetches its layers, then records it. */
export async function storeImage(
  r: Resolved,
  ref: string,
  top: { digest: string; body: Buffer },
  man: { digest: string; body: Buffer; manifest: Manifest },
  configBuf: Buffer,
  getBlob: Parameters<typeof fetchLayers>[0]['getBlob'],
): Promise<ImageInfo> {
  const { store } = r;
  const config = JSON.parse(configBuf.toString('utf8')) as Record<string, unknown> & { os?: string; architecture?: string; variant?: string };
  const sources = layerSources(man.manifest, config as { rootfs?: { diff_ids?: string[] } }, ref);
  for (const [d, b] of [[top.digest, top.body], [man.digest, man.body], [man.manifest.config.digest, configBuf]] as const) store.writeBlob(d, b);
  const { keys, release } = await fetchLayers({ store, getBlob, maxImageSize: r.maxImageSize, concurrency: r.concurrency, signal: r.signal, onProgress: r.onProgress }, sources);
  const platform = platformString({ os: config.os ?? r.platform.os, arch: config.architecture ?? r.platform.arch, variant: config.variant ?? (config.architecture === 'arm64' ? 'v8' : undefined) });
  const rec: ImageRecord = {
    ref,
    digest: top.digest,
    manifestDigest: man.digest,
    platform,
    configDigest: man.manifest.config.digest,
    layers: sources.map((s, i) => ({ ...s, key: keys[i]! })),
    size: sources.reduce((a, s) => a + s.size, 0),
  };
  try {
    store.locked(() => {
      const refs = store.refs();
      refs[ref] = rec;
      store.writeRefs(refs);
    });
  } finally {
    release();
  }
  return infoOf(rec, config);
}

/** Pulls an image from its registry into the store (layers it already has are not fetched again). */
export async function pull(ref: string, opts?: PullOptions): Promise<ImageInfo> {
  if (typeof ref !== 'string') throw invalidType('ref', 'a string', ref);
  const r = resolvePull(opts);
  const p = parseRef(ref);
  r.store.init();
  const reg = new Registry(p, { auth: r.auth, insecureRegistries: r.insecure, stallTimeout: r.stallTimeout }, r.signal);
  const top = await reg.manifest(p.digest ?? p.tag!);
  let man = top;
  let json = JSON.parse(top.body.toString('utf8')) as Manifest & { manifests?: Descriptor[] };
  if (top.mediaType === MEDIA.ociIndex || top.mediaType === MEDIA.dockerList) {
    const d = choosePlatform(json, r.platform, p.canonical);
    // By digest only: a tag here would let an index pinned by digest name a manifest that changes.
    if (typeof d.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d.digest)) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.manifest', `${p.canonical}: the index names its ${platformString(r.platform)} manifest by ${String(d.digest)}, not by a sha256 digest`);
    man = await reg.manifest(d.digest);
    json = JSON.parse(man.body.toString('utf8')) as Manifest;
  } else if (top.mediaType !== MEDIA.ociManifest && top.mediaType !== MEDIA.dockerManifest) {
    throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.manifest', `${p.canonical}: unsupported manifest media type ${top.mediaType}`);
  }
  if (!json.config?.digest || !/^sha256:[a-f0-9]{64}$/.test(json.config.digest)) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.manifest', `${p.canonical}: the manifest has no config`);
  const configBuf = r.store.readBlob(json.config.digest) ?? (await reg.smallBlob(json.config.digest, json.config.size));
  const config = JSON.parse(configBuf.toString('utf8')) as { os?: string; architecture?: string };
  if (config.os && config.architecture && (config.os !== r.platform.os || config.architecture !== r.platform.arch)) {
    throw imageError('ERR_IMAGE_PLATFORM', 'image.manifest', `${p.canonical} is a ${config.os}/${config.architecture} image, not ${platformString(r.platform)}`);
  }
  return storeImage(r, p.canonical, top, { digest: man.digest, body: man.body, manifest: json }, configBuf, (l, partial, onBytes) => reg.blob(l.digest, l.size, partial, onBytes));
}

function findRecord(store: Store, refOrDigest: string): ImageRecord | undefined {
  const refs = store.refs();
  if (/^(sha256:)?[a-f0-9]{12,64}$/.test(refOrDigest)) {
    const h = refOrDigest.replace(/^sha256:/, '');
    const hit = Object.values(refs).find((x) => x.digest.slice(7).startsWith(h) || x.manifestDigest.slice(7).startsWith(h));
    if (hit) return hit;
  }
  return refs[parseRef(refOrDigest).canonical];
}

/** The images in the store. */
export async function images(opts?: StoreOptions): Promise<ImageInfo[]> {
  const store = storeOf(opts);
  if (!fs.existsSync(store.dir)) return [];
  return Object.values(store.refs()).map((rec) => infoOf(rec, JSON.parse(store.readBlob(rec.configDigest)?.toString('utf8') ?? '{}') as Record<string, unknown>));
}

function trash(paths: string[]): Promise<void> {
  return Promise.all(paths.map((p) => fs.promises.rm(p, { recursive: true, force: true }))).then(() => undefined);
}

/** Removes an image's reference, and the layers no other image (and no running container) uses. */
export async function removeImage(ref: string, opts?: StoreOptions): Promise<void> {
  if (typeof ref !== 'string') throw invalidType('ref', 'a string', ref);
  const store = storeOf(opts);
  store.init();
  // The image roots this process prepared (lib/fsops.ts): none keeps a removed layer open.
  forgetImageRoots();
  const out = store.locked(() => {
    const rec = findRecord(store, ref);
    if (!rec) throw imageError('ERR_IMAGE_UNKNOWN', 'image.store', `no image ${ref} in ${store.dir}`, ref);
    const refs = store.refs();
    delete refs[rec.ref];
    store.writeRefs(refs);
    return collect(store, false);
  });
  await trash(out.trash);
}

/** Removes layers and blobs no image uses, temporaries of dead processes and partial downloads nobody resumes. */
export async function pruneImages(opts?: StoreOptions): Promise<{ layers: number; blobs: number }> {
  const store = storeOf(opts);
  if (!fs.existsSync(store.dir)) return { layers: 0, blobs: 0 };
  store.init();
  forgetImageRoots();
  const out = store.locked(() => collect(store, true));
  await trash(out.trash);
  return { layers: out.layers.length, blobs: out.blobs.length };
}

export interface ImageRoot {
  /** Unpacked layer directories, lowest first (overlayfs lowerdir takes them top-most first). */
  layers: string[];
  /** The OCI image config. */
  config: Record<string, unknown>;
  digest: string;
  /** 'user': the layers carry user.overlay.* attributes (rootless): mount the overlay with userxattr. */
  xattrs: 'trusted' | 'user';
}

/** The unpacked layers of a stored image (internal: the container start uses it). */
export function imageRoot(refOrDigest: string, opts?: StoreOptions): ImageRoot {
  const store = storeOf(opts);
  const rec = findRecord(store, refOrDigest);
  if (!rec) throw imageError('ERR_IMAGE_UNKNOWN', 'image.store', `no image ${refOrDigest} in ${store.dir}`, refOrDigest);
  return rootOf(store, rec);
}

// What a start reads of an image, kept for this process: a manifest's layers and config never
// change under its digest, so the root is kept by digest (while its layers stay in the store);
// which digest a reference names is kept while refs.json is the same file, unchanged.
const roots = new Map<string, ImageRoot>(); // store dir \0 digest -> root
const named = new Map<string, { stamp: string; rec: ImageRecord }>(); // store dir \0 ref -> record
const CACHE_MAX = 256;

function remember<V>(m: Map<string, V>, k: string, v: V): void {
  if (m.size >= CACHE_MAX) m.clear();
  m.set(k, v);
}

/** The root of a record: read from the store (and kept), or, with `cached`, as read before. */
function rootOf(store: Store, rec: ImageRecord, cached = false): ImageRoot {
  const k = `${store.dir}\0${rec.digest}\0${rec.manifestDigest}`;
  const hit = roots.get(k);
  if (hit && cached) return hit;
  const config = JSON.parse(store.readBlob(rec.configDigest)?.toString('utf8') ?? '{}') as Record<string, unknown>;
  const metas = rec.layers.map((l) => store.layerMeta(l.key));
  if (metas.some((m) => !m)) throw imageError('ERR_IMAGE_UNKNOWN', 'image.store', `image ${rec.ref}: a layer is missing from ${store.dir} (pull it again)`, rec.ref);
  const root: ImageRoot = { layers: rec.layers.map((l) => `${store.layerDir(l.key)}/diff`), config, digest: rec.digest, xattrs: metas[0]?.xattrs ?? 'trusted' };
  remember(roots, k, root);
  return root;
}

/** refs.json's identity (inode, change time, size): a rename or a rewrite gives a new one. */
function refsStamp(store: Store): string | null {
  try {
    const s = fs.statSync(path.join(store.dir, 'refs.json'), { bigint: true });
    return `${s.dev}:${s.ino}:${s.ctimeNs}:${s.mtimeNs}:${s.size}`;
  } catch {
    return null;
  }
}

/**
 * imageRoot with the layers pinned for this process (a lease file, judged by pid and start time)
 * until release(): removeImage and pruneImages keep them while a container uses them.
 */
export function leaseImage(refOrDigest: string, opts?: StoreOptions): ImageRoot & { release(linger?: boolean): void } {
  const store = storeOf(opts);
  const nk = `${store.dir}\0${refOrDigest}`;
  const stamp = refsStamp(store);
  const seen = named.get(nk);
  let rec: ImageRecord | undefined;
  let keys: string[];
  let root: ImageRoot | undefined;
  if (seen && stamp !== null && seen.stamp === stamp && roots.has(`${store.dir}\0${seen.rec.digest}\0${seen.rec.manifestDigest}`) && pinHeld(store, (keys = seen.rec.layers.map((l) => l.key)))) {
    // The same refs.json, and the layers still in this process's lease file: nothing to read or write.
    rec = seen.rec;
    root = rootOf(store, rec, true);
  } else {
    // Found and pinned under one hold of the store lock: a removeImage cannot come in between.
    rec = store.locked(() => {
      const r = findRecord(store, refOrDigest);
      if (r) pinLocked(store, r.layers.map((l) => l.key));
      return r;
    });
    if (!rec) throw imageError('ERR_IMAGE_UNKNOWN', 'image.store', `no image ${refOrDigest} in ${store.dir}`, refOrDigest);
    keys = rec.layers.map((l) => l.key);
    try {
      root = rootOf(store, rec);
    } catch (e) {
      unpin(store, keys);
      throw e;
    }
    if (stamp !== null && stamp === refsStamp(store)) remember(named, nk, { stamp, rec });
  }
  let released = false;
  return {
    ...root,
    /** linger: a container's exit (the lease file is settled a moment later, see store.ts). */
    release(linger = false) {
      if (released) return;
      released = true;
      unpin(store, keys, linger);
    },
  };
}
