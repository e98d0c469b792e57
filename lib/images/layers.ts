// layers.ts: getting an image's layers into the store, shared by pull() and importImage(). Blobs
// come in parallel (a few at a time), each under a lock across processes (two pulls of one image
// fetch each blob once: the second finds the layer done), and are unpacked bottom-up, one layer at a
// time in a worker (a hard link into a lower layer needs that layer), against one budget for the
// whole image (maxImageSize). A layer enters layers/ by rename() only when complete and verified.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

import { fromSystemError, NsboxError } from '../errors';
import { privileged } from '../runtime';
import { imageError } from './registry';
import { pin, unpin, type LayerMeta, type Store } from './store';
import { startUnpack, unpackLayer } from './unpack';

export interface LayerSource {
  digest: string;
  size: number;
  mediaType: string;
  diffId: string;
}

export interface Progress {
  /** 'download': bytes of a blob arrived; 'unpack': a layer is being unpacked; 'layer': a layer is ready. */
  phase: 'download' | 'unpack' | 'layer';
  digest: string;
  current?: number;
  total?: number;
}

export interface FetchContext {
  store: Store;
  /** Puts the whole verified blob at `partial` (resuming what is there). */
  getBlob(l: LayerSource, partial: string, onBytes: (n: number) => void): Promise<void>;
  maxImageSize: number;
  concurrency: number;
  signal?: AbortSignal;
  onProgress?: (e: Progress) => void;
}

const hex = (d: string) => d.slice(d.indexOf(':') + 1);

export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev ? `sha256:${crypto.createHash('sha256').update(`${prev} ${d}`).digest('hex')}` : d);
  }
  return out;
}

/** Candidate keys of each layer (pinned while the layers are fetched). */
function candidates(diffIds: string[], chains: string[]): string[] {
  return diffIds.flatMap((d, i) => [hex(d), `c-${hex(chains[i]!)}`]);
}

function semaphore(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async (fn) => {
    if (active >= n) await new Promise<void>((r) => waiting.push(r));
    active++;
    try {
      return await fn();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

/**
 * Makes sure every layer is unpacked in the store; resolves to their keys (lowest first). The
 * candidate keys stay pinned (this process's lease) until `release` is called by the caller, once
 * the image's record names them.
 */
export async function fetchLayers(ctx: FetchContext, layers: LayerSource[]): Promise<{ keys: string[]; release: () => void }> {
  const { store } = ctx;
  const diffIds = layers.map((l) => l.diffId);
  const chains = chainIds(diffIds);
  const pinnedKeys = candidates(diffIds, chains);
  pin(store, pinnedKeys);
  const ac = new AbortController();
  const onAbort = () => ac.abort(ctx.signal!.reason);
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  const slot = semaphore(ctx.concurrency);
  // uid 0 inside `unshare -r` is rootless too: it cannot chown to ids it does not map, set trusted.*
  // attributes or make devices.
  const rootless = !privileged();
  let used = 0;
  const done: Array<Promise<string>> = [];
  const sizeOf = (key: string) => store.layerMeta(key)?.size ?? 0;

  const one = async (i: number): Promise<string> => {
    const l = layers[i]!;
    const lower = async () => (i > 0 ? done[i - 1]! : undefined);
    const present = store.findLayer(l.diffId, chains[i]!);
    if (present) {
      await lower();
      used += sizeOf(present);
      return present;
    }
    const release = await store.lock(`blob-${hex(l.digest)}`, ac.signal);
    let dl: Promise<void> | undefined;
    try {
      const again = store.findLayer(l.diffId, chains[i]!);
      if (again) {
        await lower();
        used += sizeOf(again);
        return again;
      }
      const partial = store.tmp(`${hex(l.digest)}.partial`);
      let got = 0;
      // The download, and the unpack following it as it arrives (once the layer under it is
      // done): the bytes are kept only if they are the verified blob; otherwise (a download that
      // started over, a failure while following) the layer is unpacked again from the verified file.
      let following: ReturnType<typeof startUnpack> | undefined;
      let fed = false;
      let arrived: () => void = () => undefined;
      const first = new Promise<void>((r) => (arrived = r));
      dl = slot(() =>
        ctx.getBlob(l, partial, (n) => {
          got += n;
          arrived();
          following?.feed({ avail: got });
          ctx.onProgress?.({ phase: 'download', digest: l.digest, current: got, total: l.size });
        }),
      ).then(() => {
        fed = true;
        following?.feed({ end: l.size });
      });
      let dlFailed = false;
      dl.catch(() => (dlFailed = true));
      await lower();
      if (ac.signal.aborted) throw ac.signal.reason;
      const lowers: string[] = [];
      for (let j = i - 1; j >= 0; j--) lowers.push(`${store.layerDir(await done[j]!)}/diff`);
      ctx.onProgress?.({ phase: 'unpack', digest: l.digest });
      const tmp = store.tmp(`${hex(l.diffId)}.tmp-${process.pid}`);
      const job = (follow: boolean) => ({ blob: partial, dest: `${tmp}/diff`, lowers, rootless, budget: ctx.maxImageSize - used, maxImageSize: ctx.maxImageSize, follow });
      const fresh = () => {
        fs.rmSync(tmp, { recursive: true, force: true });
        fs.mkdirSync(`${tmp}/diff`, { recursive: true, mode: 0o755 });
      };
      let key: string;
      try {
        let r: Awaited<ReturnType<typeof unpackLayer>> | undefined;
        // (Following begins with the first bytes, when the partial file is there.)
        await Promise.race([first, dl.catch(() => undefined)]);
        if (!fed && !dlFailed && fs.existsSync(partial)) {
          fresh();
          const stop = new AbortController();
          const onStop = () => stop.abort(ac.signal.reason);
          ac.signal.addEventListener('abort', onStop, { once: true });
          following = startUnpack(job(true), stop.signal);
          following.feed({ avail: got });
          if (fed) following.feed({ end: l.size });
          const [d, u] = await Promise.allSettled([dl.catch((e: unknown) => (stop.abort(e), Promise.reject(e))), following.result]);
          ac.signal.removeEventListener('abort', onStop);
          following = undefined;
          if (d.status === 'rejected') throw d.reason;
          if (u.status === 'fulfilled' && u.value.blob?.digest === l.digest && u.value.blob.size === l.size) r = u.value;
        }
        await dl;
        if (ac.signal.aborted) throw ac.signal.reason;
        if (!r) {
          fresh();
          r = await unpackLayer(job(false), ac.signal);
        }
        if (r.diffId !== l.diffId) throw imageError('ERR_IMAGE_DIGEST_MISMATCH', 'image.unpack', `layer ${l.digest} unpacks to diff ID ${r.diffId}, but the image's config says ${l.diffId}`, l.digest);
        key = r.dependsOnLowers ? `c-${hex(chains[i]!)}` : hex(l.diffId);
        const meta: LayerMeta = { diffId: l.diffId, chainId: chains[i]!, size: r.size, xattrs: rootless ? 'user' : 'trusted' };
        fs.writeFileSync(`${tmp}/layer.json`, JSON.stringify(meta), { mode: 0o600 });
        try {
          fs.renameSync(tmp, store.layerDir(key));
        } catch (e) {
          // The same layer made meanwhile from another blob (gzip and zstd forms of one tar): keep that one.
          if (!['EEXIST', 'ENOTEMPTY'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
          fs.rmSync(tmp, { recursive: true, force: true });
        }
        const dfd = fs.openSync(`${store.dir}/layers`, 'r');
        fs.fsyncSync(dfd);
        fs.closeSync(dfd);
        used += r.size;
      } catch (e) {
        fs.rmSync(tmp, { recursive: true, force: true });
        // A download that failed keeps what arrived (getBlob's rule: resumed by the next try).
        if (dlFailed) throw e;
        if ((e as Error).name === 'AbortError') throw e; // the verified blob stays for the next try
        // A blob that does not unpack (hostile, corrupt, too large) is of no use to a retry.
        fs.rmSync(partial, { force: true });
        if (e instanceof NsboxError) throw e;
        throw fromSystemError(e, 'image.unpack', tmp);
      }
      fs.rmSync(partial, { force: true });
      ctx.onProgress?.({ phase: 'layer', digest: l.digest });
      return key;
    } finally {
      // Never before the download into the partial file is over (a lower layer's failure leaves
      // this one while it runs): the blob's lock is what keeps another pull from resuming the
      // same file while this one still writes it, and nothing may be written after the rejection.
      await dl?.catch(() => undefined);
      release();
    }
  };

  for (let i = 0; i < layers.length; i++) {
    done.push(one(i));
    done[i]!.catch((e: unknown) => ac.abort(e));
  }
  const settled = await Promise.allSettled(done);
  ctx.signal?.removeEventListener('abort', onAbort);
  const failed = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult | undefined;
  if (failed) {
    unpin(store, pinnedKeys);
    // The first failure, not the aborts it caused in the other layers.
    const first = ac.signal.reason ?? failed.reason;
    throw ctx.signal?.aborted ? failed.reason : first;
  }
  return { keys: settled.map((s) => (s as PromiseFulfilledResult<string>).value), release: () => unpin(store, pinnedKeys) };
}
