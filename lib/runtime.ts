// runtime.ts: per-process facts and resources that app containers and machines share: the staging
// directory, the bundled init's sealed memfd, cap_last_cap, and small fd helpers.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { fromSystemError } from './errors';
import { buildDir, native } from './native';

let stagingDir: string | undefined;
/** The host directory each container's root is assembled on (inside the child's own mount ns). */
export function staging(): string {
  if (stagingDir) return stagingDir;
  const dir = process.getuid?.() === 0 ? '/run/nsbox/.staging' : path.join(os.tmpdir(), `nsbox-${process.getuid?.()}`, '.staging');
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw fromSystemError(e, 'spawn.staging', dir);
  }
  stagingDir = dir;
  return dir;
}

let capLastCache: number | undefined;
export function capLast(): number {
  if (capLastCache === undefined) {
    try {
      capLastCache = Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
    } catch {
      capLastCache = 40;
    }
  }
  return capLastCache;
}

let initFdCache: number | undefined;
/** The bundled init, loaded once into a sealed memfd (see native/init/init.c). */
export function initFd(): number {
  if (initFdCache === undefined) {
    const p = path.join(buildDir, 'nsbox-init');
    try {
      initFdCache = native().sealedMemfd(p);
    } catch (e) {
      throw fromSystemError(e, 'init.load', p);
    }
  }
  return initFdCache;
}

export function closeQuiet(fd: number): void {
  if (fd > 2) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
  }
}

export function pipeSocket(fd: number, readable: boolean): net.Socket {
  return new net.Socket({ fd, readable, writable: !readable });
}


let capBndCache: bigint | undefined;
/**
 * The capabilities this process can still hand on (its bounding set). A container never gets more;
 * on a host that already dropped some (CAP_SYS_RESOURCE in some sandboxes) they are simply absent.
 */
export function capsAvailable(): bigint {
  if (capBndCache === undefined) {
    capBndCache = (1n << BigInt(capLast() + 1)) - 1n;
    try {
      const m = /^CapBnd:\s+([0-9a-f]+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
      if (m) capBndCache &= BigInt('0x' + m[1]);
    } catch {
      /* keep the full mask */
    }
  }
  return capBndCache;
}
