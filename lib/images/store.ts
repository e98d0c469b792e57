// store.ts: the image store on disk (docs/images.md, "Store layout"):
//   blobs/sha256/<hex>        verified manifests, indexes and configs
//   layers/<key>/diff         one unpacked layer (an overlayfs lower directory); <key> is its diff
//                             ID's hex, or c-<chain ID hex> for a layer whose hard links were copied
//                             up from the layers under it; layers/<key>/layer.json says which
//   refs.json                 the images: reference -> record (written atomically under store.lock)
//   leases/<pid>-<start>.json the layers a live process pins (a pull in progress, a container)
//   locks/<name>              a flock per layer being fetched, across processes (unlinked on release)
//   tmp/                      partial blobs (<hex>.partial, resumable), layers being unpacked
//                             (<key>.tmp-<pid>) and directories being removed (rm-...)
// A layer appears in layers/ only by rename() of a complete, synced directory from tmp/: a crash
// leaves at worst a temporary that the next prune removes, never a half layer that is used.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { errnoName, fromSystemError, NsboxError } from '../errors';
import { isStaleTemporary, leaseLive, ownerOf, readLease, withLock, type LeaseOwner } from '../lease';
import { native } from '../native';
import { privileged } from '../runtime';
import { abortError } from '../util';

export interface LayerRecord {
  /** The compressed blob's digest (as in the manifest). */
  digest: string;
  diffId: string;
  mediaType: string;
  /** Compressed size (bytes). */
  size: number;
  /** Directory name under layers/. */
  key: string;
}

export interface ImageRecord {
  ref: string;
  /** The digest of the manifest (or index) the reference resolved to. */
  digest: string;
  /** The platform's own manifest (equal to digest for a single-platform image). */
  manifestDigest: string;
  platform: string;
  configDigest: string;
  layers: LayerRecord[];
  /** Compressed bytes of the layers. */
  size: number;
}

export interface LayerMeta {
  diffId: string;
  chainId: string;
  /** Bytes written when unpacked (counts toward maxImageSize). */
  size: number;
  /** trusted.overlay.* (root) or user.overlay.* (rootless: mount with userxattr). */
  xattrs: 'trusted' | 'user';
}

/**
 * Root's store only for root in the initial user namespace: uid 0 inside `unshare -r` cannot write
 * /var/lib and cannot set trusted.* attributes, so it is rootless here as everywhere else.
 */
export function defaultStoreDir(): string {
  if (privileged()) return '/var/lib/nsbox/images';
  const data = process.env.XDG_DATA_HOME && path.isAbsolute(process.env.XDG_DATA_HOME) ? process.env.XDG_DATA_HOME : path.join(os.homedir(), '.local/share');
  return path.join(data, 'nsbox/images');
}

const hex = (digest: string) => digest.slice(digest.indexOf(':') + 1);

export class Store {
  constructor(readonly dir: string) {}

  blobPath(digest: string): string {
    return path.join(this.dir, 'blobs/sha256', hex(digest));
  }
  layerDir(key: string): string {
    return path.join(this.dir, 'layers', key);
  }
  tmp(name: string): string {
    return path.join(this.dir, 'tmp', name);
  }

  /** Makes the store's directories (0700: layers hold setuid files and devices). */
  init(): void {
    try {
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      for (const d of ['blobs/sha256', 'layers', 'leases', 'locks', 'tmp']) fs.mkdirSync(path.join(this.dir, d), { recursive: true, mode: 0o700 });
    } catch (e) {
      throw fromSystemError(e, 'image.store');
    }
  }

  /** The key of an unpacked layer with this diff ID / chain ID, or null when it is not there. */
  findLayer(diffId: string, chainId: string): string | null {
    for (const key of [hex(diffId), `c-${hex(chainId)}`]) {
      if (fs.existsSync(path.join(this.layerDir(key), 'diff'))) return key;
    }
    return null;
  }

  layerMeta(key: string): LayerMeta | null {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.layerDir(key), 'layer.json'), 'utf8')) as LayerMeta;
    } catch {
      return null;
    }
  }

  writeBlob(digest: string, data: Buffer): void {
    const file = this.blobPath(digest);
    if (fs.existsSync(file)) return;
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      fs.writeFileSync(tmp, data, { mode: 0o600 });
      fs.renameSync(tmp, file);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw fromSystemError(e, 'image.store', file);
    }
  }

  readBlob(digest: string): Buffer | null {
    try {
      return fs.readFileSync(this.blobPath(digest));
    } catch {
      return null;
    }
  }

  /** Runs fn with the store's lock (refs.json, leases, removal) held: short sections only. */
  locked<T>(fn: () => T): T {
    return withLock(this.dir, 'image.store', fn, 'store.lock');
  }

  refs(): Record<string, ImageRecord> {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.dir, 'refs.json'), 'utf8')) as Record<string, ImageRecord>;
    } catch {
      return {};
    }
  }

  /** Replaces refs.json (call under locked()). */
  writeRefs(refs: Record<string, ImageRecord>): void {
    const file = path.join(this.dir, 'refs.json');
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      fs.writeFileSync(tmp, JSON.stringify(refs, null, 1), { mode: 0o600 });
      fs.renameSync(tmp, file);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw fromSystemError(e, 'image.store', file);
    }
  }

  /**
   * A lock across processes on name (locks/<name>), taken without blocking Node: polled with
   * LOCK_NB. The file is unlinked on release; a taker checks that the file it locked is still the
   * one at the path, so an unlink between open and flock never gives two holders.
   */
  async lock(name: string, signal?: AbortSignal): Promise<() => void> {
    const file = path.join(this.dir, 'locks', name);
    const fsat = (native() as unknown as { fsat: { flockNb(fd: number): number } }).fsat;
    for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
      if (signal?.aborted) throw abortError(signal);
      let fd: number;
      try {
        fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
      } catch (e) {
        throw fromSystemError(e, 'image.lock', file);
      }
      const rc = fsat.flockNb(fd);
      if (rc === 0) {
        let same = false;
        try {
          same = fs.fstatSync(fd).ino === fs.statSync(file).ino;
        } catch {
          same = false;
        }
        if (same) {
          return () => {
            fs.rmSync(file, { force: true });
            fs.closeSync(fd);
          };
        }
      }
      fs.closeSync(fd);
      if (rc !== 0 && rc !== -11) throw new NsboxError({ code: errnoName(-rc), errno: -rc, syscall: 'flock', step: 'image.lock', path: file });
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

// ---- leases: the layers this process pins -----------------------------------------------------
// The lease file lists the keys this process pins. A container's exit that drops a key's count to
// zero does not rewrite the file at once: the file is settled LEASE_SETTLE_MS later (at once by this
// process's own removeImage/pruneImages, and at its exit). A container started within that time
// of the last one's exit (a judge's loop, a CI runner's steps) finds its layers still in the file
// and pins them with no lock and no write: the warm image start costs what a rootfs start does
// (bench/images.js --run). Another process's removeImage/pruneImages keeps such layers until then.
export const LEASE_SETTLE_MS = 100;

interface Pins {
  /** A path of the store (any of its names: the pins are the directory's, see keyOf). */
  dir: string;
  count: Map<string, number>;
  /** The keys the lease file on disk lists. */
  inFile: Set<string>;
  settling: boolean;
}
const pinned = new Map<string, Pins>(); // the store directory's device:inode -> pins
let me: LeaseOwner | undefined;
let exitHook = false;

function leaseFile(store: Store): string {
  me ??= ownerOf(process.pid);
  return path.join(store.dir, 'leases', `${me.pid}-${me.start}.json`);
}

/**
 * The store directory's identity: one store reached by two names (a symlink, a bind) has one pin
 * table, since both names write the same lease file (a table per name would drop the other's keys).
 */
function keyOf(store: Store): string {
  try {
    const st = fs.statSync(store.dir, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return store.dir;
  }
}

function pinsOf(store: Store): Pins {
  const k = keyOf(store);
  let p = pinned.get(k);
  if (!p) {
    p = { dir: store.dir, count: new Map(), inFile: new Set(), settling: false };
    pinned.set(k, p);
  }
  return p;
}

/** Writes this process's lease file for the store (under the store lock, or at exit), or removes it when empty. */
function syncLease(store: Store): void {
  const p = pinsOf(store);
  const keys = [...p.count.keys()];
  const file = leaseFile(store);
  if (keys.length === 0) {
    fs.rmSync(file, { force: true });
    p.inFile = new Set();
    return;
  }
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, JSON.stringify({ ...me, layers: keys }), { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw fromSystemError(e, 'image.lease', file);
  }
  p.inFile = new Set(keys);
}

/** Pins layer keys for this process: removeImage/pruneImages keep them until unpin. */
export function pin(store: Store, keys: string[]): void {
  store.locked(() => pinLocked(store, keys));
}

/** pin() for a caller that holds the store lock already (a second flock on it would wait for ever). */
export function pinLocked(store: Store, keys: string[]): void {
  const p = pinsOf(store);
  for (const k of keys) p.count.set(k, (p.count.get(k) ?? 0) + 1);
  if (keys.some((k) => !p.inFile.has(k))) syncLease(store);
}

/**
 * pin() with no lock and no write, where the lease file lists every key already (pinned, or
 * released less than a loop turn ago): true if so, false (nothing pinned) otherwise.
 */
export function pinHeld(store: Store, keys: string[]): boolean {
  const p = pinned.get(keyOf(store));
  if (!p || !keys.every((k) => p.inFile.has(k))) return false;
  for (const k of keys) p.count.set(k, (p.count.get(k) ?? 0) + 1);
  return true;
}

/**
 * Drops this process's pins of keys. The lease file is rewritten at once, or with `linger` (a
 * container's exit) LEASE_SETTLE_MS later, so that the next start of the same image pins its
 * layers with no lock and no write (see above).
 */
export function unpin(store: Store, keys: string[], linger = false): void {
  const p = pinned.get(keyOf(store));
  if (!p) return;
  for (const k of keys) {
    const n = (p.count.get(k) ?? 0) - 1;
    if (n > 0) p.count.set(k, n);
    else p.count.delete(k);
  }
  if ([...p.inFile].every((k) => p.count.has(k))) return;
  if (!linger) {
    store.locked(() => settleLease(store));
    return;
  }
  if (p.settling) return;
  p.settling = true;
  if (!exitHook) {
    exitHook = true;
    process.on('exit', settleAllAtExit);
  }
  setTimeout(() => {
    p.settling = false;
    try {
      store.locked(() => settleLease(store));
    } catch {
      // (The store lock was not had: the file keeps the keys for now; the next release, or this
      // process's exit, settles it. Layers held a little longer, never dropped early.)
    }
  }, LEASE_SETTLE_MS).unref();
}

/** Rewrites the lease file without the keys no container pins any more (under the store lock). */
export function settleLease(store: Store): void {
  const p = pinned.get(keyOf(store));
  if (p && [...p.inFile].some((k) => !p.count.has(k))) syncLease(store);
}

function settleAllAtExit(): void {
  for (const { dir } of pinned.values()) {
    try {
      // No lock at exit (never wait for one there): the file is replaced by rename, and a reader
      // that saw the old one only kept layers a moment longer.
      settleLease(new Store(dir));
    } catch {
      /* the process is leaving: a file of a dead owner is removed by the next collect() */
    }
  }
}

/**
 * Removes what no image and no live lease holds (call under the store lock): layers, blobs, dead
 * leases, stale temporaries and partial blobs whose lock nobody holds. Layer directories are
 * renamed into tmp/ here (at once invisible) and their files removed after the lock is released.
 */
export function collect(store: Store, partials: boolean): { layers: string[]; blobs: string[]; trash: string[] } {
  settleLease(store);
  const refs = Object.values(store.refs());
  const keep = new Set<string>();
  const keepBlobs = new Set<string>();
  for (const r of refs) {
    for (const l of r.layers) keep.add(l.key);
    for (const d of [r.digest, r.manifestDigest, r.configDigest]) keepBlobs.add(hex(d));
  }
  const leases = path.join(store.dir, 'leases');
  for (const f of fs.readdirSync(leases)) {
    const l = readLease<LeaseOwner & { layers?: string[] }>(path.join(leases, f));
    if (l && leaseLive(l)) for (const k of l.layers ?? []) keep.add(k);
    else if (!f.includes('.tmp-') || isStaleTemporary(f)) fs.rmSync(path.join(leases, f), { force: true });
  }
  const out = { layers: [] as string[], blobs: [] as string[], trash: [] as string[] };
  for (const key of fs.readdirSync(path.join(store.dir, 'layers'))) {
    if (keep.has(key)) continue;
    const trash = store.tmp(`rm-${key}.tmp-${process.pid}`);
    fs.renameSync(store.layerDir(key), trash);
    out.layers.push(key);
    out.trash.push(trash);
  }
  const blobs = path.join(store.dir, 'blobs/sha256');
  for (const b of fs.readdirSync(blobs)) {
    if (keepBlobs.has(b) || (b.includes('.tmp-') && !isStaleTemporary(b))) continue;
    fs.rmSync(path.join(blobs, b), { force: true });
    out.blobs.push(b);
  }
  for (const t of fs.readdirSync(path.join(store.dir, 'tmp'))) {
    if (isStaleTemporary(t)) out.trash.push(store.tmp(t));
    else if (partials && t.endsWith('.partial') && !fs.existsSync(path.join(store.dir, 'locks', `blob-${t.slice(0, -'.partial'.length)}`))) out.trash.push(store.tmp(t));
  }
  return out;
}

/**
 * A lease owned by another process than this one (a machine's PID 1, judged by its pid and start
 * time like every lease): removeImage/pruneImages keep the layers while it runs, whichever process
 * started it and whether that process still runs. Returns the lease's path.
 */
export function pinForOwner(store: Store, owner: LeaseOwner, keys: string[]): string {
  const file = path.join(store.dir, 'leases', `m-${owner.pid}-${owner.start}.json`);
  store.locked(() => {
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      fs.writeFileSync(tmp, JSON.stringify({ pid: owner.pid, start: owner.start, layers: keys }), { mode: 0o600 });
      fs.renameSync(tmp, file);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw fromSystemError(e, 'image.lease', file);
    }
  });
  return file;
}

/** Removes a lease of pinForOwner once its owner is gone (one whose owner still runs stays). */
export function unpinOwner(file: string): void {
  const l = readLease<LeaseOwner>(file);
  if (l && leaseLive(l)) return;
  fs.rmSync(file, { force: true });
}
