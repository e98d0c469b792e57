// unpack-worker.ts: unpacks one image layer into a new directory, run in a worker_threads Worker
// (lib/images/unpack.ts) so that its file I/O never holds Node's event loop. Every layer is hostile:
//  - each entry's path is split into components; `..` anywhere is refused, a leading `/` or `./`
//    is dropped (docker does the same), and the directory an entry goes into is reached from the
//    layer's root fd one component at a time with O_DIRECTORY|O_NOFOLLOW: a symlink planted by an
//    earlier entry (or a lower layer, which is not even in this directory) is never followed;
//  - every create is an *at() call relative to that fd (native/glue/fsat.cc), the final component
//    never followed; an existing entry is removed (never opened) before it is replaced, so a FIFO or
//    device in the layer is never opened;
//  - bytes are counted while they are written (a sparse entry by its real size, a huge one by its
//    declared size before a byte is written) against the image's remaining `maxImageSize`, and the
//    decompressed stream is counted too: a decompression bomb stops at the cap;
//  - the diff ID (sha256 of the uncompressed tar) is computed on the way and checked by the caller.
// Whiteouts and opaque directories are written as overlayfs reads them in a lower layer.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parentPort, workerData } from 'node:worker_threads';
import * as zlib from 'node:zlib';

import { addonFile } from '../native';
import type { UnpackJob, UnpackResult } from './unpack';

interface FsAt {
  openat(dirfd: number, name: string, flags: number, mode: number): number;
  mkdirat(dirfd: number, name: string, mode: number): number;
  mknodat(dirfd: number, name: string, mode: number, major: number, minor: number): number;
  symlinkat(target: string, dirfd: number, name: string): number;
  linkat(olddirfd: number, oldname: string, newdirfd: number, newname: string): number;
  unlinkat(dirfd: number, name: string, rmdir: boolean): number;
  lchownat(dirfd: number, name: string, uid: number, gid: number): number;
  lutimesat(dirfd: number, name: string, seconds: number): number;
  lstatat(dirfd: number, name: string): { mode: number; uid: number; gid: number; size: number; rdevMajor: number; rdevMinor: number } | number;
  readlinkat(dirfd: number, name: string): string | number;
  readdirFd(fd: number): string[] | number;
  fsetxattr(fd: number, name: string, value: Buffer): number;
  fgetxattr(fd: number, name: string): Buffer | number;
  flistxattr(fd: number): string[] | number;
  syncfs(fd: number): number;
  close(fd: number): number;
  constants: { O_PATH: number; O_DIRECTORY: number; O_NOFOLLOW: number };
}

const fsat = (require(addonFile()) as { fsat: FsAt }).fsat;
const { O_PATH, O_DIRECTORY, O_NOFOLLOW } = fsat.constants;
const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO } = fs.constants;
const ERRNO = Object.fromEntries(Object.entries(require('node:os').constants.errno as Record<string, number>).map(([k, v]) => [v, k]));

/** A refusal or failure, posted back to the main thread as plain fields. */
class UnpackError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly entry?: string,
    readonly errno?: number,
    readonly syscall?: string,
  ) {
    super(message);
  }
}

function sys<T>(rc: T, syscall: string, entry: string): Exclude<T, number> | number {
  if (typeof rc === 'number' && rc < 0) {
    const code = ERRNO[-rc] ?? `E${-rc}`;
    throw new UnpackError(code, `${syscall} '${entry}': ${code}`, entry, -rc, syscall);
  }
  return rc as Exclude<T, number>;
}
/** Writes all of b (a short write is continued), a failure (ENOSPC, EDQUOT, EIO) naming the entry: Node's write errors carry no path. */
function writeAll(fd: number, b: Uint8Array, entry: string): void {
  try {
    for (let off = 0; off < b.length; ) off += fs.writeSync(fd, b, off);
  } catch (e) {
    const x = e as NodeJS.ErrnoException;
    const code = x.code ?? 'EIO';
    throw new UnpackError(code, `write '${entry}': ${code}`, entry, typeof x.errno === 'number' ? Math.abs(x.errno) : undefined, 'write');
  }
}
const unsafe = (entry: string, why: string) => new UnpackError('ERR_IMAGE_LAYER_UNSAFE', `layer entry '${entry}' ${why}`, entry);

// tar-stream decodes PAX values as UTF-8 text; SCHILY.xattr.* values are bytes (security.capability
// is a binary structure), so the worker's copy of its header decoder keeps those as Buffers.
const tarHeaders = require(path.join(path.dirname(require.resolve('tar-stream')), 'headers.js')) as { decodePax(b: Buffer): Record<string, unknown> };
tarHeaders.decodePax = (buf: Buffer) => {
  const out: Record<string, string | Buffer> = {};
  while (buf.length) {
    const sp = buf.indexOf(0x20);
    const len = sp > 0 ? parseInt(buf.subarray(0, sp).toString('latin1'), 10) : NaN;
    if (!(len > sp + 1) || len > buf.length) break;
    const rec = buf.subarray(sp + 1, len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) break;
    const key = rec.subarray(0, eq).toString('utf8');
    const value = rec.subarray(eq + 1);
    out[key] = key.startsWith('SCHILY.xattr.') ? Buffer.from(value) : value.toString('utf8');
    buf = buf.subarray(len);
  }
  return out;
};
const tar = require('tar-stream') as typeof import('tar-stream');

/** An entry's path as components inside the layer; `..` is refused, `/` and `.` dropped. */
function components(name: string, entry: string): string[] {
  const out: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw unsafe(entry, 'has a ".." component');
    if (c.includes('\0')) throw unsafe(entry, 'has a NUL byte');
    out.push(c);
  }
  return out;
}

class Layer {
  private readonly dirs = new Map<string, number>();
  readonly dirTimes: Array<[string[], number]> = [];
  written = 0;
  /** Set when what this layer holds depends on the layers under it (a copied-up hard link, a directory made like a lower one). */
  dependsOnLowers = false;

  constructor(
    readonly root: number,
    readonly job: UnpackJob,
  ) {}

  count(bytes: number, entry: string): void {
    this.written += bytes;
    if (this.written > this.job.budget) {
      throw new UnpackError('ERR_IMAGE_TOO_LARGE', `the image unpacks to more than maxImageSize (${this.job.maxImageSize} bytes) at layer entry '${entry}'`, entry);
    }
  }

  /** The fd of the directory comps names, reached from the root one component at a time. */
  dir(comps: string[], entry: string, create: boolean): number {
    let fd = this.root;
    for (let i = 0; i < comps.length; i++) {
      const key = comps.slice(0, i + 1).join('/');
      const cached = this.dirs.get(key);
      if (cached !== undefined) {
        fd = cached;
        continue;
      }
      let next = fsat.openat(fd, comps[i]!, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
      if (next === -2 && create) {
        // A parent the layer does not list (a whiteout in a directory it leaves alone): made with
        // the lower layers' mode and owner, else overlay would show this layer's over theirs.
        const like = lowerDir(this.job.lowers, comps.slice(0, i + 1), entry);
        // Its mode and owner come from the layers under this one (or are 0755 root without
        // one): the layer can no longer be shared by diff ID with an image whose lowers differ.
        this.dependsOnLowers = true;
        sys(fsat.mkdirat(fd, comps[i]!, 0o700), 'mkdirat', entry);
        next = fsat.openat(fd, comps[i]!, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
        if (next >= 0) {
          if (!this.job.rootless) fs.fchownSync(next, like?.uid ?? 0, like?.gid ?? 0);
          fs.fchmodSync(next, like ? like.mode & 0o7777 : 0o755);
        }
      }
      if (next === -40 || next === -20) throw unsafe(entry, `goes through '${key}', which is a symlink or not a directory`);
      if (next === -2) return -1;
      sys(next, 'openat', entry);
      this.dirs.set(key, next);
      fd = next;
    }
    return fd;
  }

  forget(prefix: string): void {
    for (const [k, fd] of this.dirs) {
      if (k === prefix || k.startsWith(prefix + '/')) {
        fsat.close(fd);
        this.dirs.delete(k);
      }
    }
  }

  /**
   * Empties a large cache, between entries only: an entry holds fds dir() gave it (a hard link's
   * parent while its target is looked up), and a closed fd number can be reused by the next open
   * (in this thread or another), which would make the entry in the wrong directory.
   */
  trim(): void {
    if (this.dirs.size > 512) this.dropAll();
  }

  dropAll(): void {
    for (const fd of this.dirs.values()) fsat.close(fd);
    this.dirs.clear();
  }

  /** Removes name (recursively for a directory) in dirfd, never following anything. */
  remove(dirfd: number, name: string, key: string, entry: string): void {
    const st = fsat.lstatat(dirfd, name);
    if (typeof st === 'number') return;
    if ((st.mode & S_IFMT) === S_IFDIR) {
      this.forget(key);
      const fd = sys(fsat.openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0), 'openat', entry) as number;
      try {
        for (const n of sys(fsat.readdirFd(fd), 'readdir', entry) as string[]) this.remove(fd, n, `${key}/${n}`, entry);
      } finally {
        fsat.close(fd);
      }
      sys(fsat.unlinkat(dirfd, name, true), 'unlinkat', entry);
    } else {
      sys(fsat.unlinkat(dirfd, name, false), 'unlinkat', entry);
    }
  }
}

function chmodNoFollow(dirfd: number, name: string, mode: number, entry: string): void {
  // chmod through an O_PATH fd's /proc link: the node was just made here and is not a symlink.
  const fd = sys(fsat.openat(dirfd, name, O_PATH | O_NOFOLLOW, 0), 'openat', entry) as number;
  try {
    fs.chmodSync(`/proc/self/fd/${fd}`, mode);
  } finally {
    fsat.close(fd);
  }
}

function applyXattrs(layer: Layer, fd: number, pax: Record<string, unknown> | null, entry: string): void {
  if (!pax) return;
  for (const [k, v] of Object.entries(pax)) {
    if (!k.startsWith('SCHILY.xattr.')) continue;
    const name = k.slice('SCHILY.xattr.'.length);
    // Overlay's own attributes in a layer would steer the container's root (a forged opaque or
    // redirect): never taken from a layer, as containerd and docker refuse them too.
    if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) continue;
    // Without privilege (rootless) trusted.* and security.capability cannot be set (shortcut, docs/images.md).
    if (layer.job.rootless && (name.startsWith('trusted.') || name === 'security.capability')) continue;
    sys(fsat.fsetxattr(fd, name, Buffer.isBuffer(v) ? v : Buffer.from(String(v))), 'fsetxattr', entry);
  }
}

/** The lower layers' view of comps (top-most first), for a hard link whose target is below. */
function findBelow(lowers: string[], comps: string[], entry: string): { dir: number; name: string } | null {
  for (const lower of lowers) {
    let fd = sys(fsat.openat(-100, lower, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0), 'openat', entry) as number;
    let stop = false;
    let found: { dir: number; name: string } | null = null;
    try {
      for (let i = 0; i < comps.length; i++) {
        const st = fsat.lstatat(fd, comps[i]!);
        if (typeof st === 'number') break; // absent here: look below
        const type = st.mode & S_IFMT;
        if (type === S_IFCHR && st.rdevMajor === 0 && st.rdevMinor === 0) {
          stop = true; // whited out
          break;
        }
        if (i === comps.length - 1) {
          found = { dir: sys(fsat.openat(fd, '.', O_RDONLY | O_DIRECTORY, 0), 'openat', entry) as number, name: comps[i]! };
          break;
        }
        if (type !== S_IFDIR) {
          stop = true; // a non-directory hides everything below
          break;
        }
        const next = sys(fsat.openat(fd, comps[i]!, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0), 'openat', entry) as number;
        fsat.close(fd);
        fd = next;
        for (const x of ['trusted.overlay.opaque', 'user.overlay.opaque']) if (Buffer.isBuffer(fsat.fgetxattr(fd, x))) stop = true;
      }
    } finally {
      fsat.close(fd);
    }
    if (found || stop) return found;
  }
  return null;
}

/** The mode and owner of the directory comps in the lower layers, if one has it. */
function lowerDir(lowers: string[], comps: string[], entry: string): { mode: number; uid: number; gid: number } | null {
  const hit = findBelow(lowers, comps, entry);
  if (!hit) return null;
  try {
    const st = fsat.lstatat(hit.dir, hit.name);
    return typeof st !== 'number' && (st.mode & S_IFMT) === S_IFDIR ? st : null;
  } finally {
    fsat.close(hit.dir);
  }
}

/** Copies a lower layer's file (or symlink) into this layer at (dirfd, name): overlay cannot share an inode across layers. */
function copyUp(layer: Layer, src: { dir: number; name: string }, dirfd: number, name: string, entry: string): void {
  const st = sys(fsat.lstatat(src.dir, src.name), 'fstatat', entry) as Exclude<ReturnType<FsAt['lstatat']>, number>;
  const type = st.mode & S_IFMT;
  if (type === S_IFLNK) {
    sys(fsat.symlinkat(sys(fsat.readlinkat(src.dir, src.name), 'readlinkat', entry) as string, dirfd, name), 'symlinkat', entry);
    if (!layer.job.rootless) sys(fsat.lchownat(dirfd, name, st.uid, st.gid), 'fchownat', entry);
    return;
  }
  if (type !== S_IFREG) throw new UnpackError('ERR_IMAGE_LAYER_INVALID', `layer entry '${entry}' is a hard link to a lower layer's ${type === S_IFDIR ? 'directory' : 'special file'}`, entry);
  layer.count(st.size, entry);
  const from = sys(fsat.openat(src.dir, src.name, O_RDONLY | O_NOFOLLOW, 0), 'openat', entry) as number;
  const to = sys(fsat.openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600), 'openat', entry) as number;
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(from, buf, 0, buf.length, null);
      if (n === 0) break;
      writeAll(to, buf.subarray(0, n), entry);
    }
    if (!layer.job.rootless) fs.fchownSync(to, st.uid, st.gid);
    fs.fchmodSync(to, st.mode & 0o7777);
    const names = fsat.flistxattr(from);
    if (Array.isArray(names)) {
      for (const x of names) {
        const v = fsat.fgetxattr(from, x);
        if (Buffer.isBuffer(v)) fsat.fsetxattr(to, x, v);
      }
    }
  } finally {
    fsat.close(from);
    fsat.close(to);
  }
  layer.dependsOnLowers = true;
}

type Header = import('tar-stream').Header & { pax?: Record<string, unknown> | null };

async function entry(layer: Layer, h: Header, body: AsyncIterable<Buffer>): Promise<void> {
  const name = h.name;
  const comps = components(name, name);
  const pax = h.pax ?? null;
  const uid = pax && typeof pax.uid === 'string' ? Number(pax.uid) : h.uid ?? 0;
  const gid = pax && typeof pax.gid === 'string' ? Number(pax.gid) : h.gid ?? 0;
  const mtime = Math.floor(pax && typeof pax.mtime === 'string' ? Number(pax.mtime) : (h.mtime?.getTime() ?? 0) / 1000);
  const mode = (h.mode ?? 0o644) & 0o7777;
  const sparse = pax ? (pax['GNU.sparse.realsize'] ?? pax['GNU.sparse.size']) : undefined;
  if (sparse !== undefined) {
    layer.count(Number(sparse), name);
    throw new UnpackError('ERR_IMAGE_LAYER_UNSUPPORTED', `layer entry '${name}' is a GNU sparse file, which nsbox does not unpack`, name);
  }
  if (comps.length === 0) {
    if (h.type !== 'directory') throw unsafe(name, 'names the layer root but is not a directory');
    if (!layer.job.rootless) fs.fchownSync(layer.root, uid, gid);
    fs.fchmodSync(layer.root, mode);
    return;
  }
  const base = comps[comps.length - 1]!;
  const parentComps = comps.slice(0, -1);
  const parent = layer.dir(parentComps, name, true);
  const key = comps.join('/');

  if (base.startsWith('.wh.')) {
    if (h.type !== 'file') throw unsafe(name, 'is a whiteout that is not a regular file');
    if (base === '.wh..wh..opq') {
      sys(fsat.fsetxattr(parent, layer.job.rootless ? 'user.overlay.opaque' : 'trusted.overlay.opaque', Buffer.from('y')), 'fsetxattr', name);
      return;
    }
    const target = base.slice(4);
    if (target === '' || target === '.' || target === '..' || target.startsWith('.wh.')) throw unsafe(name, 'whites out an impossible name');
    layer.remove(parent, target, parentComps.concat(target).join('/'), name);
    // A char device 0/0: overlay's whiteout. Unprivileged callers may make this one node (Linux 5.8).
    sys(fsat.mknodat(parent, target, S_IFCHR, 0, 0), 'mknodat', name);
    return;
  }

  const existing = fsat.lstatat(parent, base);
  const isDir = typeof existing !== 'number' && (existing.mode & S_IFMT) === S_IFDIR;
  if (typeof existing !== 'number' && !(isDir && h.type === 'directory')) layer.remove(parent, base, key, name);

  switch (h.type) {
    case 'file':
    case 'contiguous-file': {
      layer.count(h.size ?? 0, name);
      const fd = sys(fsat.openat(parent, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600), 'openat', name) as number;
      try {
        let n = 0;
        for await (const chunk of body) {
          n += chunk.length;
          writeAll(fd, chunk, name);
        }
        if (n !== (h.size ?? 0)) throw new UnpackError('ERR_IMAGE_LAYER_INVALID', `layer entry '${name}' is truncated`, name);
        if (!layer.job.rootless) fs.fchownSync(fd, uid, gid);
        fs.fchmodSync(fd, mode); // after chown, which clears setuid/setgid
        applyXattrs(layer, fd, pax, name);
      } finally {
        fsat.close(fd);
      }
      break;
    }
    case 'directory': {
      if (!isDir) sys(fsat.mkdirat(parent, base, 0o700), 'mkdirat', name);
      const fd = layer.dir(comps, name, false);
      if (!layer.job.rootless) fs.fchownSync(fd, uid, gid);
      fs.fchmodSync(fd, mode);
      applyXattrs(layer, fd, pax, name);
      layer.dirTimes.push([comps, mtime]);
      return;
    }
    case 'symlink':
      sys(fsat.symlinkat(h.linkname ?? '', parent, base), 'symlinkat', name);
      if (!layer.job.rootless) sys(fsat.lchownat(parent, base, uid, gid), 'fchownat', name);
      break;
    case 'link': {
      const tcomps = components(h.linkname ?? '', name);
      if (tcomps.length === 0) throw unsafe(name, 'is a hard link to the layer root');
      const tparent = layer.dir(tcomps.slice(0, -1), name, false);
      const tbase = tcomps[tcomps.length - 1]!;
      if (tparent >= 0 && typeof fsat.lstatat(tparent, tbase) !== 'number') {
        sys(fsat.linkat(tparent, tbase, parent, base), 'linkat', name);
        return; // the target's times and attributes are the link's
      }
      const below = findBelow(layer.job.lowers, tcomps, name);
      if (!below) throw new UnpackError('ERR_IMAGE_LAYER_INVALID', `layer entry '${name}' is a hard link to '${h.linkname}', which no layer has`, name);
      try {
        copyUp(layer, below, parent, base, name);
      } finally {
        fsat.close(below.dir);
      }
      break;
    }
    case 'character-device':
    case 'block-device':
    case 'fifo': {
      const type = h.type === 'fifo' ? S_IFIFO : h.type === 'block-device' ? S_IFBLK : S_IFCHR;
      // Without privilege no device node can be made: a rootless layer goes without (docs/images.md).
      if (layer.job.rootless && type !== S_IFIFO) return;
      sys(fsat.mknodat(parent, base, type | 0o600, h.devmajor ?? 0, h.devminor ?? 0), 'mknodat', name);
      if (!layer.job.rootless) sys(fsat.lchownat(parent, base, uid, gid), 'fchownat', name);
      chmodNoFollow(parent, base, mode, name);
      break;
    }
    default:
      throw new UnpackError('ERR_IMAGE_LAYER_UNSUPPORTED', `layer entry '${name}' has a tar type nsbox does not unpack (${String(h.type)})`, name);
  }
  fsat.lutimesat(parent, base, mtime);
}

/** Counts and hashes the uncompressed tar as it flows: the diff ID, and a cap on a decompression bomb. */
class Meter extends Transform {
  readonly hash = crypto.createHash('sha256');
  bytes = 0;
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) return cb(new UnpackError('ERR_IMAGE_TOO_LARGE', `the layer's uncompressed stream is larger than what is left of maxImageSize`));
    this.hash.update(chunk);
    cb(null, chunk);
  }
}

/** A zstd decoder as a Node Transform (fzstd: pure JS, streaming; Node 20's zlib has no zstd). */
function zstdStream(): Transform {
  const { Decompress } = require('fzstd') as typeof import('fzstd');
  let t: Transform | undefined = undefined;
  const d = new Decompress((chunk: Uint8Array) => {
    t!.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  });
  t = new Transform({
    transform(chunk: Buffer, _e, cb) {
      try {
        d.push(chunk);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
    flush(cb) {
      try {
        d.push(new Uint8Array(0), true);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
  });
  return t;
}

/**
 * The blob as it is being downloaded (job.follow): read from the file up to what the main thread
 * says has arrived, waiting for more, until it gives the end. The bytes read are hashed: the main
 * thread keeps the layer only if they are the verified blob (a download that started over, or a
 * file replaced meanwhile, reads short or hashes wrong, and the layer is unpacked again from the
 * verified file).
 */
class Following extends Readable {
  readonly hash = crypto.createHash('sha256');
  pos = 0;
  private avail = 0;
  private end: number | null = null;
  private wake: (() => void) | null = null;
  private readonly fd: number;
  constructor(file: string) {
    super({ highWaterMark: 1 << 20 });
    this.fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    parentPort!.on('message', this.told);
  }
  private readonly told = (m: { avail?: number; end?: number }): void => {
    if (typeof m.end === 'number') this.end = m.end;
    if (typeof m.avail === 'number') this.avail = Math.max(this.avail, m.avail);
    const w = this.wake;
    this.wake = null;
    w?.();
  };
  /** Resolves once n bytes (or the whole blob) have arrived; rejects if the stream was stopped meanwhile. */
  async arrived(n: number): Promise<void> {
    while (!this.destroyed && this.end === null && this.avail < n) await new Promise<void>((r) => (this.wake = r));
    if (this.destroyed) throw this.errored ?? stoppedError();
  }
  override _read(): void {
    void this.next().catch((e: unknown) => this.destroy(e as Error));
  }
  private async next(): Promise<void> {
    const limit = () => this.end ?? this.avail;
    while (this.pos >= limit() && this.end === null && !this.destroyed) await new Promise<void>((r) => (this.wake = r));
    if (this.destroyed) return;
    if (this.pos >= limit()) {
      this.push(null);
      return;
    }
    const buf = Buffer.allocUnsafe(Math.min(1 << 20, limit() - this.pos));
    const n = await new Promise<number>((res, rej) => fs.read(this.fd, buf, 0, buf.length, this.pos, (e, got) => (e ? rej(e) : res(got))));
    if (n === 0) throw new UnpackError('ERR_IMAGE_LAYER_INVALID', 'the blob being downloaded was replaced while it was unpacked');
    this.pos += n;
    const chunk = buf.subarray(0, n);
    this.hash.update(chunk);
    this.push(chunk);
  }
  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    // The port no longer keeps the worker alive: it ends once its result is posted.
    parentPort!.off('message', this.told);
    parentPort!.unref();
    const w = this.wake;
    this.wake = null;
    w?.();
    fs.close(this.fd, () => cb(err));
  }
}

const stoppedError = () => new UnpackError('ABORT_ERR', 'the unpack was stopped');

async function compression(file: string): Promise<'gzip' | 'zstd' | 'none'> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const b = Buffer.alloc(4);
    await fh.read(b, 0, 4, 0);
    if (b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (b.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    return 'none';
  } finally {
    await fh.close();
  }
}

async function unpack(job: UnpackJob): Promise<UnpackResult> {
  const root = sys(fsat.openat(-100, job.dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0), 'openat', job.dest) as number;
  const layer = new Layer(root, job);
  const meter = new Meter(job.budget + (64 << 20));
  const extract = tar.extract();
  const follow = job.follow ? new Following(job.blob) : null;
  // The main thread's abort ({ stop: true }): the input is destroyed, so the pipeline fails and
  // every file and directory this unpack has open is closed on the way out. (A terminated worker
  // closes nothing: its descriptors are the process's, left open for as long as it runs.)
  let stopped: UnpackError | undefined;
  let source: Readable | null = follow;
  const onStop = (m: unknown): void => {
    if ((m as { stop?: unknown } | null)?.stop !== true || stopped) return;
    stopped = stoppedError();
    source?.destroy(stopped);
  };
  parentPort!.on('message', onStop);
  try {
    await follow?.arrived(4);
    const kind = await compression(job.blob);
    if (stopped) throw stopped;
    const stages: NodeJS.ReadWriteStream[] = [];
    if (kind === 'gzip') stages.push(zlib.createGunzip());
    else if (kind === 'zstd') stages.push(zstdStream());
    // An entry too large for what is left is refused as its header arrives: the async iterator
    // below may only see the stream's end (a 10 GB header with no data behind it) otherwise.
    let early: UnpackError | undefined;
    extract.on('entry', (hdr) => {
      const h = hdr as Header;
      const pax = h.pax ?? null;
      const declared = Number((pax && (pax['GNU.sparse.realsize'] ?? pax['GNU.sparse.size'])) ?? h.size ?? 0);
      if (!early && layer.written + declared > job.budget) {
        early = new UnpackError('ERR_IMAGE_TOO_LARGE', `the image unpacks to more than maxImageSize (${job.maxImageSize} bytes) at layer entry '${h.name}' (${declared} bytes)`, h.name);
        extract.destroy(early);
      }
    });
    source ??= fs.createReadStream(job.blob, { highWaterMark: 1 << 20 });
    const feeding = pipeline(source, ...(stages as [Transform]), meter, extract);
    const entries = (async () => {
      for await (const e of extract as unknown as AsyncIterable<AsyncIterable<Buffer> & { header: Header; resume(): void }>) {
        layer.trim();
        await entry(layer, e.header, e);
        for await (const _ of e); // drains what an entry did not read (a link's empty body)
      }
    })();
    const [fed, done] = await Promise.allSettled([feeding, entries]);
    if (stopped) throw stopped;
    if (early) throw early;
    if (done.status === 'rejected') throw done.reason;
    if (fed.status === 'rejected') throw fed.reason;
    // Directory times last: making entries inside a directory changes its mtime.
    for (const [comps, t] of layer.dirTimes) {
      layer.trim();
      const parent = layer.dir(comps.slice(0, -1), comps.join('/'), false);
      if (parent >= 0) fsat.lutimesat(parent, comps[comps.length - 1]!, t);
    }
    layer.dropAll();
    sys(fsat.syncfs(root), 'syncfs', job.dest);
    const blob = follow ? { digest: `sha256:${follow.hash.digest('hex')}`, size: follow.pos } : undefined;
    return { diffId: `sha256:${meter.hash.digest('hex')}`, size: layer.written, dependsOnLowers: layer.dependsOnLowers, blob };
  } finally {
    parentPort!.off('message', onStop);
    follow?.destroy();
    layer.dropAll();
    extract.destroy();
    fsat.close(root);
  }
}

unpack(workerData as UnpackJob).then(
  (r) => parentPort!.postMessage({ ok: r }),
  (e: unknown) => {
    const u = e as UnpackError & NodeJS.ErrnoException;
    const code = typeof u.code === 'string' ? u.code : 'ERR_IMAGE_LAYER_INVALID';
    parentPort!.postMessage({ error: { code, message: String(u.message), entry: u.entry ?? u.path ?? (workerData as UnpackJob).dest, errno: typeof u.errno === 'number' ? Math.abs(u.errno) : undefined, syscall: u.syscall } });
  },
);
