// import.ts: importImage(path, { tag }) for an OCI image layout directory, an OCI archive (a tar of
// such a directory) and a `docker save` archive (manifest.json, <id>/layer.tar or blobs/sha256).
// An archive is read once into a temporary directory of the store (regular files only, names
// checked: no `..`, no symlink ever made, so nothing can point outside it); every blob is verified
// by digest on the way into the store, as a pulled one is.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';

import { fromSystemError, invalidType, NsboxError } from '../errors';
import { choosePlatform, resolvePull, storeImage, type ImageInfo, type Manifest, type PullOptions } from './api';
import { parseRef } from './ref';
import { imageError, MEDIA } from './registry';

export interface ImportOptions extends Pick<PullOptions, 'storeDir' | 'signal' | 'onProgress' | 'platform' | 'maxImageSize'> {
  /** The reference to store the image under (default: the one the archive names, else its digest). */
  tag?: string;
}

const sha = (b: Buffer) => `sha256:${crypto.createHash('sha256').update(b).digest('hex')}`;

async function fileDigest(fd: number): Promise<{ digest: string; size: number }> {
  const h = crypto.createHash('sha256');
  let size = 0;
  for await (const c of fs.createReadStream('', { fd, start: 0, autoClose: false, highWaterMark: 1 << 20 })) {
    h.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/** Extracts the regular files of an archive into dir; symlinks (docker save's repeated layers) become aliases. */
async function extractArchive(file: string, dir: string, max: number): Promise<Map<string, string>> {
  const tar = require('tar-stream') as typeof import('tar-stream');
  const aliases = new Map<string, string>();
  const ex = tar.extract();
  let total = 0;
  const reading = pipeline(fs.createReadStream(file), ex);
  for await (const e of ex as unknown as AsyncIterable<AsyncIterable<Buffer> & { header: import('tar-stream').Header }>) {
    const name = path.posix.normalize(e.header.name).replace(/^(\.\/|\/)+/, '').replace(/\/$/, '');
    if (name.split('/').includes('..') || name === '' || name === '.') {
      for await (const _ of e);
      if (name === '' || name === '.') continue;
      throw imageError('ERR_IMAGE_LAYER_UNSAFE', 'image.import', `archive entry '${e.header.name}' has a ".." component`, file);
    }
    if (e.header.type === 'symlink') {
      aliases.set(name, path.posix.normalize(path.posix.join(path.posix.dirname(name), e.header.linkname ?? '')));
    } else if (e.header.type === 'file') {
      total += e.header.size ?? 0;
      if (total > max) throw imageError('ERR_IMAGE_TOO_LARGE', 'image.import', `the archive holds more than maxImageSize (${max} bytes)`, file);
      fs.mkdirSync(path.join(dir, path.dirname(name)), { recursive: true, mode: 0o700 });
      await pipeline(e, fs.createWriteStream(path.join(dir, name), { flags: 'wx', mode: 0o600 }));
      continue;
    }
    for await (const _ of e);
  }
  await reading;
  return aliases;
}

export async function importImage(source: string, opts?: ImportOptions): Promise<ImageInfo> {
  if (typeof source !== 'string' || source === '') throw invalidType('path', 'a non-empty string', source);
  const { tag, ...rest } = (opts ?? {}) as ImportOptions;
  if (tag !== undefined && typeof tag !== 'string') throw invalidType('tag', 'a string', tag);
  const r = resolvePull(rest);
  const ref = tag !== undefined ? parseRef(tag, 'tag').canonical : undefined;
  let st: fs.Stats;
  try {
    st = fs.statSync(source);
  } catch (e) {
    throw fromSystemError(e, 'image.import', source);
  }
  r.store.init();
  let dir = source;
  let tmp: string | undefined;
  let aliases = new Map<string, string>();
  try {
    if (!st.isDirectory()) {
      tmp = r.store.tmp(`import-${crypto.randomBytes(6).toString('hex')}.tmp-${process.pid}`);
      fs.mkdirSync(tmp, { mode: 0o700 });
      aliases = await extractArchive(source, tmp, r.maxImageSize);
      dir = tmp;
    }
    // Every name the image's own files give (manifest.json's Config and Layers, blobs/sha256/<hex>,
    // the archive's symlinks) is hostile: it must stay inside the archive or the layout directory
    // (no "..", no absolute path, no symlink out) and name a regular file (a FIFO would block
    // Node, /dev/zero would never end).
    const root = fs.realpathSync(dir);
    const unsafe = (name: string, why: string) => imageError('ERR_IMAGE_LAYER_UNSAFE', 'image.import', `${source}: '${name}' ${why}`, path.join(source, name));
    const at = (name: string): string => {
      let n = name;
      for (let hops = 0; ; hops++) {
        n = path.posix.normalize(n);
        if (typeof n !== 'string' || n.includes('\0') || path.posix.isAbsolute(n) || n === '..' || n.startsWith('../')) throw unsafe(name, 'leaves the image');
        const alias = aliases.get(n.replace(/\/$/, ''));
        if (alias === undefined) break;
        if (hops >= 40) throw unsafe(name, 'is a loop of symlinks');
        n = alias;
      }
      let real: string;
      try {
        real = fs.realpathSync(path.join(root, n));
      } catch (e) {
        throw fromSystemError(e, 'image.import', path.join(source, name));
      }
      if (real !== root && !real.startsWith(root + '/')) throw unsafe(name, 'is a symlink out of the image');
      return real;
    };
    /** An fd of name's regular file (opened without blocking on a FIFO), checked after the open. */
    const openFile = (name: string): number => {
      const p = at(name);
      let fd: number;
      try {
        fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw unsafe(name, 'is a symlink out of the image');
        throw fromSystemError(e, 'image.import', path.join(source, name));
      }
      if (!fs.fstatSync(fd).isFile()) {
        fs.closeSync(fd);
        throw unsafe(name, 'is not a regular file');
      }
      return fd;
    };
    const read = (name: string) => {
      const fd = openFile(name);
      try {
        if (fs.fstatSync(fd).size > 16 << 20) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.import', `${source}: '${name}' is too large for a manifest or config`, path.join(source, name));
        return fs.readFileSync(fd);
      } catch (e) {
        if (e instanceof NsboxError) throw e;
        throw fromSystemError(e, 'image.import', path.join(source, name));
      } finally {
        fs.closeSync(fd);
      }
    };
    const exists = (name: string) => aliases.has(name) || fs.existsSync(path.join(root, name));
    const blob = (digest: string) => {
      if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.import', `${source}: unsupported digest ${digest}`);
      const b = read(`blobs/sha256/${digest.slice(7)}`);
      if (sha(b) !== digest) throw imageError('ERR_IMAGE_DIGEST_MISMATCH', 'image.import', `${source}: blob ${digest} does not match its digest`, digest);
      return b;
    };
    const copyBlob = (name: string) => async (l: { digest: string; size: number }, partial: string, onBytes: (n: number) => void) => {
      const h = crypto.createHash('sha256');
      let n = 0;
      await pipeline(
        fs.createReadStream('', { fd: openFile(name), highWaterMark: 1 << 20 }),
        async function* (src: AsyncIterable<Buffer>) {
          for await (const c of src) {
            h.update(c);
            n += c.length;
            if (n > l.size) break; // never more than the manifest says: a growing file cannot fill the store
            onBytes(c.length);
            yield c;
          }
        },
        fs.createWriteStream(partial, { mode: 0o600 }),
      );
      if (`sha256:${h.digest('hex')}` !== l.digest || n !== l.size) {
        fs.rmSync(partial, { force: true });
        throw imageError('ERR_IMAGE_DIGEST_MISMATCH', 'image.import', `${source}: layer ${l.digest} does not match its digest`, l.digest);
      }
    };

    if (exists('manifest.json') && !exists('index.json')) {
      // docker save: [{ Config, RepoTags, Layers }], layers uncompressed.
      const list = JSON.parse(read('manifest.json').toString('utf8')) as Array<{ Config: string; RepoTags?: string[] | null; Layers: string[] }>;
      const want = ref ?? undefined;
      const m = (want && list.find((x) => (x.RepoTags ?? []).some((t) => parseRef(t).canonical === want))) || list[0];
      if (!m) throw imageError('ERR_IMAGE_UNKNOWN', 'image.import', `${source}: manifest.json lists no image`);
      if (!Array.isArray(m.Layers) || m.Layers.some((l) => typeof l !== 'string') || typeof m.Config !== 'string') throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.import', `${source}: manifest.json has no Config or Layers`);
      const configBuf = read(m.Config);
      const layers = [];
      for (const l of m.Layers) {
        const fd = openFile(l);
        try {
          layers.push({ file: l, ...(await fileDigest(fd)) });
        } finally {
          fs.closeSync(fd);
        }
      }
      const manifest: Manifest & { schemaVersion: number } = {
        schemaVersion: 2,
        mediaType: MEDIA.ociManifest,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(configBuf), size: configBuf.length },
        layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l.digest, size: l.size })),
      };
      const body = Buffer.from(JSON.stringify(manifest));
      const digest = sha(body);
      const name = ref ?? (m.RepoTags?.[0] ? parseRef(m.RepoTags[0]).canonical : digest);
      const files = new Map(layers.map((l) => [l.digest, l.file]));
      return await storeImage(r, name, { digest, body }, { digest, body, manifest }, configBuf, (l, partial, onBytes) => copyBlob(files.get(l.digest)!)(l, partial, onBytes));
    }

    // OCI image layout: index.json -> (index ->) manifest -> config, layers.
    const index = JSON.parse(read('index.json').toString('utf8')) as { manifests?: Array<{ mediaType?: string; digest: string; size: number; annotations?: Record<string, string>; platform?: { os: string; architecture: string } }> };
    const entries = index.manifests ?? [];
    const refName = (e: (typeof entries)[number]) => e.annotations?.['org.opencontainers.image.ref.name'] ?? e.annotations?.['io.containerd.image.name'];
    let entry = entries.length === 1 ? entries[0] : undefined;
    if (tag !== undefined) entry = entries.find((e) => refName(e) === tag || refName(e) === parseRef(tag).tag || (refName(e) && parseRef(refName(e)!).canonical === ref)) ?? entry;
    if (!entry && entries.some((e) => e.platform)) entry = choosePlatform(index, r.platform, source) as unknown as typeof entry;
    if (!entry) throw imageError('ERR_IMAGE_TAG_UNKNOWN', 'image.import', `${source}: index.json lists ${entries.length} images; name one with { tag }`, source);
    const topBody = blob(entry.digest);
    let manDigest = entry.digest;
    let manBody = topBody;
    let json = JSON.parse(topBody.toString('utf8')) as Manifest & { manifests?: Array<{ digest: string; size: number }> };
    if (json.manifests) {
      const d = choosePlatform(json as never, r.platform, source);
      manDigest = d.digest;
      manBody = blob(d.digest);
      json = JSON.parse(manBody.toString('utf8')) as Manifest;
    }
    const configBuf = blob(json.config.digest);
    const annotated = refName(entry);
    let name = ref ?? entry.digest;
    if (!ref && annotated) {
      try {
        name = parseRef(annotated.includes('/') || annotated.includes(':') ? annotated : `${path.basename(source).replace(/\.(tar|oci)$/, '').toLowerCase()}:${annotated}`).canonical;
      } catch {
        name = entry.digest;
      }
    }
    return await storeImage(r, name, { digest: entry.digest, body: topBody }, { digest: manDigest, body: manBody, manifest: json }, configBuf, (l, partial, onBytes) =>
      copyBlob(`blobs/sha256/${l.digest.slice(7)}`)(l, partial, onBytes),
    );
  } catch (e) {
    if (e instanceof NsboxError || e instanceof TypeError || e instanceof RangeError) throw e;
    if ((e as Error).name === 'AbortError') throw e;
    throw (e as NodeJS.ErrnoException).code ? fromSystemError(e, 'image.import', source) : imageError('ERR_IMAGE_LAYER_INVALID', 'image.import', `${source}: ${(e as Error).message}`, source);
  } finally {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
}
