// registry.ts: a client of the OCI distribution API (Docker Registry HTTP API v2) on Node's own
// fetch: manifests and indexes, blobs with digest checks while they stream and a resumed retry
// (HTTP Range), anonymous and Bearer token auth (the WWW-Authenticate challenge), basic auth, and
// credentials from ~/.docker/config.json `auths`. Registry failures become NsboxErrors with the
// registry's own message (docs/errors.md, "Images"). Every request has a stall timeout: a registry
// that sends nothing for `stallTimeout` ms while it is waited on is ETIMEDOUT, never a hang.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { fromSystemError, NsboxError } from '../errors';
import { abortError } from '../util';
import { plainHttp, registryHost, type ImageRef } from './ref';

export interface Credentials {
  username?: string;
  password?: string;
  /** A registry token used as is (Authorization: Bearer). */
  token?: string;
}

export const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
};
export const LAYER_TYPES = new Set([
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);

export function imageError(code: string, step: string, message: string, p?: string): NsboxError {
  return new NsboxError({ code, step, path: p, message: `${message} (step ${step})` });
}

/** Credentials for a registry from $DOCKER_CONFIG/config.json or ~/.docker/config.json (`auths`). */
export function dockerConfigAuth(registry: string): Credentials | undefined {
  const dir = process.env.DOCKER_CONFIG || path.join(os.homedir(), '.docker');
  let auths: Record<string, { auth?: string; username?: string; password?: string }>;
  try {
    auths = (JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { auths?: typeof auths }).auths ?? {};
  } catch {
    return undefined;
  }
  const names = registry === 'docker.io' ? ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'] : [registry, `https://${registry}`, `http://${registry}`];
  for (const n of names) {
    const a = auths[n] ?? auths[n + '/'];
    if (!a) continue;
    if (a.auth) {
      const s = Buffer.from(a.auth, 'base64').toString('utf8');
      const i = s.indexOf(':');
      if (i > 0) return { username: s.slice(0, i), password: s.slice(i + 1) };
    }
    if (a.username) return { username: a.username, password: a.password ?? '' };
  }
  return undefined;
}

/** The registry's error text from an error response ({"errors":[{code,message}]}), and its first code. */
async function registryMessage(res: Response): Promise<{ code: string; text: string }> {
  let body = '';
  try {
    body = (await readCapped(res, 4096, true))!.toString('utf8');
  } catch {
    // a body that cannot be read: the status says enough
  }
  try {
    const errs = (JSON.parse(body) as { errors?: Array<{ code?: string; message?: string }> }).errors ?? [];
    if (errs.length) return { code: errs[0]!.code ?? '', text: errs.map((e) => `${e.code}: ${e.message}`).join('; ') };
  } catch {
    // not JSON
  }
  return { code: '', text: body.trim() || res.statusText };
}

/**
 * A response body read up to max bytes: one byte more and the transfer is cancelled, so an endless
 * (or huge) answer never lands in memory whole. Resolves to null when the body is larger than max.
 */
async function readCapped(res: Response, max: number, truncate = false): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let n = 0;
  const reader = res.body?.getReader();
  if (!reader) return Buffer.alloc(0);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return Buffer.concat(chunks, n);
      n += value.length;
      if (n > max && truncate) return Buffer.concat([...chunks, Buffer.from(value.buffer, value.byteOffset, value.byteLength)]).subarray(0, max);
      if (n > max) return null;
      chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

const MAX_MANIFEST = 4 << 20;
export const DEFAULT_STALL_TIMEOUT = 30_000;

/**
 * A request's watchdog: armed only while the client waits on the network (for the headers, for
 * each body read), so a slow reader (a disk, an unpack) is never taken for a stalled registry.
 */
class Watch {
  private readonly ac = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  stalled = false;
  readonly signal: AbortSignal;

  constructor(
    private readonly ms: number,
    outer: AbortSignal | undefined,
  ) {
    this.signal = outer ? AbortSignal.any([outer, this.ac.signal]) : this.ac.signal;
  }
  arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.stalled = true;
      this.ac.abort();
    }, this.ms);
  }
  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

function challenge(h: string | null): { scheme: string; params: Record<string, string> } | null {
  if (!h) return null;
  const m = /^(\w+)\s*(.*)$/.exec(h.trim());
  if (!m) return null;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!.toLowerCase()] = p[2]!;
  return { scheme: m[1]!.toLowerCase(), params };
}

/** ", retry after N" from a 429's Retry-After (seconds or an HTTP date), printable and short. */
function retryAfter(res: Response): string {
  const v = res.headers.get('retry-after')?.trim();
  return v && /^[\x20-\x7e]{1,64}$/.test(v) ? `, retry after ${v}` : '';
}

/** A transfer that broke on every try: its errno where the network gave one, else ERR_IMAGE_REGISTRY. */
function brokenTransfer(e: unknown, what: string, p: string): NsboxError {
  const cause = (e as { cause?: NodeJS.ErrnoException & { message?: string } }).cause;
  const why = `${(e as Error).message}${cause?.message ? ` (${cause.message})` : ''}`;
  if (cause?.code && /^E[A-Z0-9]+$/.test(cause.code)) return new NsboxError({ code: cause.code, errno: Math.abs(cause.errno ?? 0) || undefined, syscall: cause.syscall, step: 'image.blob', path: p, message: `${what}: the transfer broke 5 times: ${why} (step image.blob)` });
  return imageError('ERR_IMAGE_REGISTRY', 'image.blob', `${what}: the transfer broke 5 times, each resumed: ${why}`, p);
}

export class Registry {
  private readonly base: string;
  private authHeader: string | undefined;
  private readonly creds: Credentials | undefined;
  private readonly insecure: readonly string[];
  private readonly stallTimeout: number;

  constructor(
    readonly ref: ImageRef,
    opts: { auth?: Credentials; insecureRegistries: readonly string[]; stallTimeout?: number },
    private readonly signal?: AbortSignal,
  ) {
    this.base = `${plainHttp(ref.registry, opts.insecureRegistries) ? 'http' : 'https'}://${registryHost(ref.registry)}/v2/${ref.repository}`;
    this.creds = opts.auth ?? dockerConfigAuth(ref.registry);
    this.insecure = opts.insecureRegistries;
    this.stallTimeout = opts.stallTimeout ?? DEFAULT_STALL_TIMEOUT;
    if (this.creds?.token) this.authHeader = `Bearer ${this.creds.token}`;
  }

  /**
   * fetch under a Watch: the headers, and then each read of the body, must come within
   * stallTimeout, else the request is aborted and the wait (or the read) fails with ETIMEDOUT.
   */
  private async watched(url: string | URL, headers: Record<string, string>, step: string): Promise<Response> {
    const w = new Watch(this.stallTimeout, this.signal);
    const where = url instanceof URL ? url.origin + url.pathname : url;
    const stalled = () => imageError('ETIMEDOUT', step, `${where}: nothing arrived for ${this.stallTimeout} ms (stallTimeout)`, where);
    let res: Response;
    w.arm();
    try {
      res = await fetch(url, { headers, signal: w.signal, redirect: 'follow' });
    } catch (e) {
      if (w.stalled) throw stalled();
      throw e;
    } finally {
      w.disarm();
    }
    if (!res.body) return res;
    const reader = res.body.getReader();
    const body = new ReadableStream<Uint8Array>(
      {
        async pull(c) {
          w.arm();
          try {
            const { done, value } = await reader.read();
            w.disarm();
            if (done) c.close();
            else c.enqueue(value);
          } catch (e) {
            w.disarm();
            c.error(w.stalled ? stalled() : e);
          }
        },
        cancel(reason) {
          w.disarm();
          return reader.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  }

  private async send(url: string, headers: Record<string, string>, step: string): Promise<Response> {
    try {
      return await this.watched(url, this.authHeader ? { ...headers, authorization: this.authHeader } : headers, step);
    } catch (e) {
      if (this.signal?.aborted) throw abortError(this.signal);
      if (e instanceof NsboxError) throw e;
      const cause = (e as { cause?: NodeJS.ErrnoException }).cause;
      if (cause?.code) throw fromSystemError(cause, step, url);
      throw imageError('ERR_IMAGE_REGISTRY', step, `${url}: ${(e as Error).message}`, url);
    }
  }

  /** One request, answering a 401 challenge once (Bearer token or basic auth). */
  async request(rel: string, headers: Record<string, string>, step: string): Promise<Response> {
    const url = `${this.base}/${rel}`;
    let res = await this.send(url, headers, step);
    if (res.status === 401 && !this.creds?.token) {
      const c = challenge(res.headers.get('www-authenticate'));
      await res.body?.cancel();
      if (c?.scheme === 'bearer' && c.params.realm) await this.token(c.params, step);
      else if (c?.scheme === 'basic' && this.creds?.username) this.authHeader = `Basic ${Buffer.from(`${this.creds.username}:${this.creds.password ?? ''}`).toString('base64')}`;
      else throw imageError('ERR_IMAGE_AUTH', step, `${this.ref.registry} asks for credentials (${c?.scheme ?? 'no challenge'}) and none were given`, this.ref.canonical);
      res = await this.send(url, headers, step);
    }
    if (res.ok) return res;
    const { code, text } = await registryMessage(res);
    const where = `${this.ref.registry}/${this.ref.repository}`;
    if (res.status === 401 || res.status === 403) throw imageError('ERR_IMAGE_AUTH', step, `${where}: the registry refused the credentials (${res.status}): ${text}`, this.ref.canonical);
    if (res.status === 429) throw imageError('ERR_IMAGE_RATE_LIMITED', step, `${where}: rate limited (429${retryAfter(res)}): ${text}`, this.ref.canonical);
    if (res.status === 404 && code === 'NAME_UNKNOWN') throw imageError('ERR_IMAGE_UNKNOWN', step, `${where}: no such repository: ${text}`, this.ref.canonical);
    if (res.status === 404 && code === 'MANIFEST_UNKNOWN' && step === 'image.manifest' && !(await this.repositoryKnown())) {
      throw imageError('ERR_IMAGE_UNKNOWN', step, `${where}: no such repository: ${text}`, this.ref.canonical);
    }
    if (res.status === 404 && code === 'MANIFEST_UNKNOWN') throw imageError('ERR_IMAGE_TAG_UNKNOWN', step, `${this.ref.canonical}: no such tag or digest: ${text}`, this.ref.canonical);
    if (res.status === 404 && step === 'image.manifest') throw imageError('ERR_IMAGE_UNKNOWN', step, `${this.ref.canonical}: not found (404): ${text}`, this.ref.canonical);
    if (res.status === 404) throw imageError('ERR_IMAGE_BLOB_UNKNOWN', step, `${where}: ${rel} not found (404): ${text}`, this.ref.canonical);
    throw imageError('ERR_IMAGE_REGISTRY', step, `${where}: ${rel}: HTTP ${res.status}: ${text}`, this.ref.canonical);
  }

  /** Whether the repository exists (its tag list answers): tells an unknown image from an unknown tag. */
  private async repositoryKnown(): Promise<boolean> {
    try {
      const res = await this.send(`${this.base}/tags/list`, {}, 'image.manifest');
      await res.body?.cancel();
      return res.status !== 404;
    } catch {
      return true;
    }
  }

  private async token(p: Record<string, string>, step: string): Promise<void> {
    let u: URL;
    try {
      u = new URL(p.realm!);
    } catch {
      throw imageError('ERR_IMAGE_AUTH', step, `${this.ref.registry}: the token realm ${JSON.stringify(p.realm)} is not a URL`, this.ref.canonical);
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw imageError('ERR_IMAGE_AUTH', step, `${this.ref.registry}: the token realm ${u.origin} is neither https nor http`, this.ref.canonical);
    if (p.service) u.searchParams.set('service', p.service);
    u.searchParams.set('scope', p.scope ?? `repository:${this.ref.repository}:pull`);
    const headers: Record<string, string> = {};
    if (this.creds?.username) {
      // Credentials go in the clear only where plain HTTP to the registry itself would be allowed:
      // loopback, or a host the caller listed. A realm elsewhere (an https registry pointing to an
      // http realm, or a realm on another host) could hand them to anyone on the path.
      if (u.protocol === 'http:' && !plainHttp(u.host, this.insecure)) {
        throw imageError(
          'ERR_IMAGE_AUTH',
          step,
          `${this.ref.registry}: the token service ${u.origin} is plain HTTP on a host that is neither loopback nor in insecureRegistries: the credentials are not sent there in the clear (list ${u.host} in insecureRegistries to allow it)`,
          this.ref.canonical,
        );
      }
      headers.authorization = `Basic ${Buffer.from(`${this.creds.username}:${this.creds.password ?? ''}`).toString('base64')}`;
    }
    let res: Response;
    try {
      res = await this.watched(u, headers, step);
    } catch (e) {
      if (this.signal?.aborted) throw abortError(this.signal);
      if (e instanceof NsboxError) throw e;
      throw imageError('ERR_IMAGE_AUTH', step, `token service ${u.origin}: ${(e as Error).message}`, this.ref.canonical);
    }
    if (res.status === 429) throw imageError('ERR_IMAGE_RATE_LIMITED', step, `token service ${u.origin}: rate limited (429${retryAfter(res)}): ${(await registryMessage(res)).text}`, this.ref.canonical);
    if (!res.ok) throw imageError('ERR_IMAGE_AUTH', step, `token service ${u.origin} refused (${res.status}): ${(await registryMessage(res)).text}`, this.ref.canonical);
    let j: { token?: string; access_token?: string };
    try {
      j = JSON.parse((await readCapped(res, 1 << 20))?.toString('utf8') ?? '') as typeof j;
    } catch (e) {
      if (e instanceof NsboxError) throw e;
      throw imageError('ERR_IMAGE_AUTH', step, `token service ${u.origin} sent no JSON (or more than 1 MiB)`, this.ref.canonical);
    }
    const t = j.token ?? j.access_token;
    if (!t) throw imageError('ERR_IMAGE_AUTH', step, `token service ${u.origin} sent no token`, this.ref.canonical);
    this.authHeader = `Bearer ${t}`;
  }

  /** A manifest or index by tag or digest: its bytes (checked against a digest reference), type and digest. */
  async manifest(reference: string): Promise<{ body: Buffer; mediaType: string; digest: string }> {
    const accept = [MEDIA.ociIndex, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.dockerManifest].join(', ');
    const res = await this.request(`manifests/${reference}`, { accept }, 'image.manifest');
    const body = await readCapped(res, MAX_MANIFEST);
    if (!body) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.manifest', `${this.ref.canonical}: a manifest of more than ${MAX_MANIFEST} bytes is too large`);
    const digest = `sha256:${crypto.createHash('sha256').update(body).digest('hex')}`;
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw imageError('ERR_IMAGE_DIGEST_MISMATCH', 'image.manifest', `${this.ref.canonical}: the manifest's digest is ${digest}, not ${reference}`);
    }
    let mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    try {
      const j = JSON.parse(body.toString('utf8')) as { mediaType?: string; manifests?: unknown; layers?: unknown };
      mediaType = j.mediaType ?? (j.manifests ? MEDIA.ociIndex : j.layers ? MEDIA.ociManifest : mediaType);
    } catch {
      throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.manifest', `${this.ref.canonical}: the manifest is not JSON`);
    }
    return { body, mediaType, digest };
  }

  /** A small blob (a config) in memory, verified. */
  async smallBlob(digest: string, size: number): Promise<Buffer> {
    if (!Number.isSafeInteger(size) || size < 0 || size > 16 << 20) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.blob', `${this.ref.canonical}: a config of ${size} bytes is too large (or no size)`);
    if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.blob', `${this.ref.canonical}: unsupported digest ${digest}`);
    const res = await this.request(`blobs/${digest}`, {}, 'image.blob');
    // Never more than the manifest says: a longer answer cannot match the digest anyway.
    const b = await readCapped(res, size);
    if (!b) throw imageError('ERR_IMAGE_DIGEST_MISMATCH', 'image.blob', `${this.ref.canonical}: blob ${digest} arrived with more than its ${size} bytes`, digest);
    const got = `sha256:${crypto.createHash('sha256').update(b).digest('hex')}`;
    if (got !== digest) throw imageError('ERR_IMAGE_DIGEST_MISMATCH', 'image.blob', `${this.ref.canonical}: blob ${digest} arrived as ${got}`, digest);
    return b;
  }

  /**
   * Downloads a blob into `partial` (appending to what an earlier, interrupted try left there:
   * HTTP Range), hashing while it streams; retries a broken transfer up to 4 times, resuming.
   * Resolves once the whole blob is there and its digest is right; on a mismatch the partial file
   * is removed and ERR_IMAGE_DIGEST_MISMATCH thrown. Call with the blob's lock held.
   */
  async blob(digest: string, size: number, partial: string, onBytes: (n: number) => void): Promise<void> {
    if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw imageError('ERR_IMAGE_MEDIA_TYPE', 'image.blob', `${this.ref.canonical}: unsupported digest ${digest}`);
    // Bytes of the partial file given to onBytes by this call: a resumed try reports only what an
    // earlier call (another pull, a crashed process) left, not again what this one wrote (the
    // unpack following the download reads up to the sum, and would read past the file's end).
    let reported = 0;
    for (let attempt = 0; ; attempt++) {
      const hash = crypto.createHash('sha256');
      let have = 0;
      try {
        // What an earlier try (of this or a crashed process) left: hashed again, then resumed.
        for await (const c of fs.createReadStream(partial)) {
          hash.update(c as Buffer);
          have += (c as Buffer).length;
        }
      } catch {
        have = 0;
      }
      if (have > size) {
        fs.rmSync(partial, { force: true });
        continue;
      }
      if (have > reported) onBytes(have - reported);
      reported = have;
      let fh: fs.promises.FileHandle | undefined;
      try {
        if (have < size || size === 0) {
          const res = await this.request(`blobs/${digest}`, have > 0 ? { range: `bytes=${have}-` } : {}, 'image.blob');
          if (res.status !== 206 && have > 0) {
            // The registry sent it whole: start over.
            fs.rmSync(partial, { force: true });
            await res.body?.cancel();
            continue;
          }
          fh = await fs.promises.open(partial, have > 0 ? 'a' : 'w', 0o600);
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            have += chunk.length;
            if (have > size) break;
            hash.update(chunk);
            await fh.write(chunk);
            reported += chunk.length;
            onBytes(chunk.length);
          }
          await fh.sync();
          await fh.close();
          fh = undefined;
        }
        const got = `sha256:${hash.digest('hex')}`;
        if (have !== size || got !== digest) {
          fs.rmSync(partial, { force: true });
          throw imageError('ERR_IMAGE_DIGEST_MISMATCH', 'image.blob', `${this.ref.canonical}: blob ${digest} (${size} bytes) arrived as ${have > size ? `more than ${size} bytes` : `${got} (${have} bytes)`}`, digest);
        }
        return;
      } catch (e) {
        await fh?.close().catch(() => undefined);
        const err = e as NodeJS.ErrnoException;
        if (err.code === 'ENOSPC' || err.code === 'EDQUOT') {
          // A full disk: what arrived only holds space a retry (or another layer) needs.
          fs.rmSync(partial, { force: true });
          throw e instanceof NsboxError ? e : fromSystemError(e, 'image.blob', partial);
        }
        if (this.signal?.aborted) throw abortError(this.signal);
        // A broken transfer (reset, truncated or stalled body) is retried; a refusal is not.
        const broken = !(e instanceof NsboxError) || e.code === 'ETIMEDOUT';
        if (!broken || err.name === 'AbortError') throw e;
        if (attempt >= 4) throw e instanceof NsboxError ? e : brokenTransfer(e, `${this.ref.canonical}: blob ${digest}`, digest);
        // Keep what arrived and resume it.
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      }
    }
  }
}
