// unpack.ts: the main thread's side of a layer unpack: one worker_threads Worker per layer
// (unpack-worker.ts does the file I/O), so Node's event loop never waits on a layer's files. An
// abort terminates the worker; the caller removes the half-made directory.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { NsboxError } from '../errors';
import { abortError } from '../util';

export interface UnpackJob {
  /** The verified layer blob (gzip, zstd or plain tar: told by its first bytes). */
  blob: string;
  /** An empty directory in the store's tmp/ that becomes the layer. */
  dest: string;
  /** The unpacked lower layers, top-most first (for hard links into them). */
  lowers: string[];
  /** Store as the caller: no chown, user.overlay.* whiteout attributes (docs/images.md). */
  rootless: boolean;
  /** Bytes this layer may still write. */
  budget: number;
  maxImageSize: number;
  /**
   * The blob is still being downloaded into `blob`: read it as it grows, up to what feed() says
   * has arrived, until feed() gives its end (the result then names the digest of what was read).
   */
  follow?: boolean;
}

export interface UnpackResult {
  diffId: string;
  /** Bytes written (file contents). */
  size: number;
  /**
   * The layer depends on the layers under it (a hard link into a lower layer was copied up, or a
   * directory the layer does not list was made with a lower layer's mode and owner): it is stored
   * under its chain ID, never shared by diff ID.
   */
  dependsOnLowers: boolean;
  /** With `follow`: the sha256 digest and size of the blob bytes the unpack read. */
  blob?: { digest: string; size: number };
}

/** How long an aborted unpack may take to stop before its worker is terminated. */
const STOP_GRACE_MS = 5000;

export function unpackLayer(job: UnpackJob, signal?: AbortSignal): Promise<UnpackResult> {
  return startUnpack(job, signal).result;
}

/** What a following unpack is told: bytes of the blob that have arrived, or its final size. */
export type Feed = { avail: number } | { end: number };

/** An unpack in a worker; feed() tells a `follow` job how much of its blob has arrived. */
export function startUnpack(job: UnpackJob, signal?: AbortSignal): { result: Promise<UnpackResult>; feed(m: Feed): void } {
  let w: Worker | undefined;
  const result = new Promise<UnpackResult>((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    w = new Worker(path.join(__dirname, 'unpack-worker.js'), { workerData: job, stdout: false, stderr: false });
    const worker = w;
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      fn();
    };
    // An abort asks the worker to stop, and is settled once it has (its answer comes after it has
    // closed what it opened): terminate() would leave its descriptors open in this process (the
    // half-written file and its directories, space held until the process exits). One that does
    // not answer within STOP_GRACE_MS is terminated all the same.
    let aborting = false;
    const onAbort = () => {
      aborting = true;
      worker.postMessage({ stop: true });
      const kill = setTimeout(() => void worker.terminate(), STOP_GRACE_MS);
      worker.once('exit', () => clearTimeout(kill));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const aborted = () => finish(() => reject(abortError(signal!)));
    worker.on('message', (m: { ok?: UnpackResult; error?: { code: string; message: string; entry?: string; errno?: number; syscall?: string } }) => {
      if (aborting) return aborted();
      if (m.ok) return finish(() => resolve(m.ok!));
      const e = m.error!;
      const code = e.code.startsWith('Z_') || e.code === 'ERR_STREAM_PREMATURE_CLOSE' ? 'ERR_IMAGE_LAYER_INVALID' : e.code;
      finish(() => reject(new NsboxError({ code, errno: e.errno, syscall: e.syscall, step: 'image.unpack', path: e.entry, message: `${e.message} (step image.unpack)` })));
    });
    worker.on('error', (e) => (aborting ? aborted() : finish(() => reject(new NsboxError({ code: 'ERR_IMAGE_LAYER_INVALID', step: 'image.unpack', message: `unpack worker failed: ${e.message} (step image.unpack)` })))));
    worker.on('exit', (c) => (aborting ? aborted() : finish(() => reject(new NsboxError({ code: 'ERR_IMAGE_LAYER_INVALID', step: 'image.unpack', message: `unpack worker exited (${c}) without a result (step image.unpack)` })))));
  });
  return {
    result,
    feed(m) {
      w?.postMessage(m);
    },
  };
}
