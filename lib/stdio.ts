// stdio.ts: `stdio: 'inherit'` without handing the container the host's inodes.
//
// An fd of Node's that the container holds as its own 0, 1 or 2 is reachable as /proc/self/fd/N:
// root in an app container keeps CAP_CHOWN and CAP_FOWNER, so it could chmod, chown or touch that
// inode (the host's /dev/null, the caller's tty, a log file, a directory), and open it again with
// another mode (a read-only host file for writing, a log file with O_TRUNC, the other end of a pipe).
// So no fd of Node's is passed on: where Node's fd is the host's /dev/null (or a directory, or
// closed), the container gets its own /dev/null; everything else is relayed through a pipe of the
// container's own, which Node copies to or from its fd 0, 1 or 2 (process.stdin/stdout/stderr).
import * as fs from 'node:fs';
import type * as net from 'node:net';
import { Duplex, type Readable, type Writable } from 'node:stream';

import { NsboxError, errnoName } from './errors';
import { native } from './native';
import { pipeSocket } from './runtime';

/** st_rdev of /dev/null (char 1:3) as glibc encodes it. */
const DEV_NULL_RDEV = (1 << 8) | 3;

/**
 * How long output relays may take to reach end-of-file once the container is gone. Normally they
 * do at once (every process that held the pipe is dead); a process that outlives the command (a
 * background job of a machine exec) would otherwise hold wait() forever.
 */
const RELAY_GRACE_MS = 2000;

/** What the container gets in place of Node's fd: its own /dev/null, or a relay. */
export type InheritedKind = 'null' | 'relay';

/** @internal Decides, from fstat of Node's own fd, what an inheriting container gets for it. */
export function inheritedKind(fd: number): InheritedKind {
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch {
    return 'null'; // closed: nothing to read or write either way
  }
  if (st.isCharacterDevice() && st.rdev === DEV_NULL_RDEV) return 'null';
  // A directory can be neither read nor written as a stream.
  if (st.isDirectory()) return 'null';
  // Reading a terminal from a background process group stops Node (SIGTTIN), and with it the
  // output relays: a background job's container gets /dev/null as its stdin, as in a shell script.
  if (fd === 0 && st.isCharacterDevice() && inBackgroundOf(st.rdev)) return 'null';
  return 'relay';
}

/** Whether `rdev` is this process's controlling terminal and its process group not the foreground one. */
function inBackgroundOf(rdev: number): boolean {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    // After "pid (comm) ": state ppid pgrp session tty_nr tpgid
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pgrp = Number(f[2]);
    const ttyNr = Number(f[4]);
    const tpgid = Number(f[5]);
    return ttyNr !== 0 && ttyNr === rdev && tpgid > 0 && tpgid !== pgrp;
  } catch {
    return false;
  }
}

/** @internal The fds of an inheriting container's stdio: plan.stdio, and the pipe ends made for it. */
export interface InheritPlan {
  stdio: [number, number, number];
  /** The container's pipe ends (closed in Node once it has cloned). */
  childFds: number[];
  /** Node's ends (closed on failure; the relay owns them afterwards). */
  parentFds: number[];
  /** Node's end per fd, -1 where nothing is relayed. */
  ours: [number, number, number];
}

/**
 * @internal For `stdio: 'inherit'`: the container's own /dev/null where Node's fd is /dev/null (or
 * closed, or a directory), else a fresh pipe. Pushes the pipe ends onto the caller's lists as it
 * goes, so that a failure half-way leaves nothing the caller does not close.
 */
export function planInherit(childFds: number[], parentFds: number[]): InheritPlan {
  const n = native();
  const devNull = n.constants.STDIO_DEV_NULL!;
  const plan: InheritPlan = { stdio: [-1, -1, -1], childFds, parentFds, ours: [-1, -1, -1] };
  for (let i = 0; i < 3; i++) {
    if (inheritedKind(i) === 'null') {
      plan.stdio[i] = devNull;
      continue;
    }
    const [r, w] = n.pipe();
    const mine = i === 0 ? w : r;
    const theirs = i === 0 ? r : w;
    childFds.push(theirs);
    parentFds.push(mine);
    plan.stdio[i] = theirs;
    plan.ours[i] = mine;
  }
  return plan;
}

/**
 * The container's fds 0, 1 and 2 for a stdio mode, and Node's ends of them (-1 where none): one
 * routine for app containers and Machine.exec.
 *  - 'pipe': a pipe each (stdin the container's /dev/null with `stdinEmpty`: nothing will be written);
 *  - 'inherit': planInherit;
 *  - 'ignore': the container's own /dev/null, opened by the child in its root (never the host's).
 * Pipe ends are pushed onto the caller's lists as they are made (see planInherit).
 */
export function planStdio(mode: 'pipe' | 'inherit' | 'ignore', childFds: number[], parentFds: number[], stdinEmpty = false): { stdio: [number, number, number]; ours: [number, number, number] } {
  if (mode === 'inherit') {
    const inh = planInherit(childFds, parentFds);
    return { stdio: inh.stdio, ours: inh.ours };
  }
  const devNull = native().constants.STDIO_DEV_NULL!;
  const stdio: [number, number, number] = [-1, -1, -1];
  const ours: [number, number, number] = [-1, -1, -1];
  if (mode === 'ignore') {
    stdio[0] = stdio[1] = stdio[2] = devNull;
    return { stdio, ours };
  }
  for (let i = 0; i < 3; i++) {
    if (i === 0 && stdinEmpty) {
      // Nothing will be written: /dev/null reads as the same end-of-file as a closed pipe.
      stdio[0] = devNull;
      continue;
    }
    const [r, w] = native().pipe();
    const mine = i === 0 ? w : r;
    const theirs = i === 0 ? r : w;
    childFds.push(theirs);
    parentFds.push(mine);
    stdio[i] = theirs;
    ours[i] = mine;
  }
  return { stdio, ours };
}

/**
 * Node's stdin, shared by every relaying container: one set of listeners on process.stdin however
 * many containers inherit it (each gets every chunk, as each would have read the fd itself), and
 * process.stdin is put back as it was (paused, or flowing for the application) when the last goes.
 */
const stdinHub = {
  dests: new Set<net.Socket>(),
  /** Destinations whose pipe is full: stdin is paused until they drain (or go). */
  full: new Set<net.Socket>(),
  /** process.stdin.readableFlowing before the first relay. */
  state: null as boolean | null,
  onData(chunk: Buffer): void {
    for (const d of stdinHub.dests) {
      if (!d.write(chunk) && !stdinHub.full.has(d)) {
        stdinHub.full.add(d);
        d.once('drain', () => stdinHub.drained(d));
      }
    }
    if (stdinHub.full.size) process.stdin.pause();
  },
  drained(d: net.Socket): void {
    if (!stdinHub.full.delete(d) || stdinHub.full.size || !stdinHub.dests.size) return;
    process.stdin.resume();
  },
  onEnd(): void {
    for (const d of stdinHub.dests) d.end();
  },
  add(d: net.Socket): void {
    const src = process.stdin;
    if (!stdinHub.dests.size) {
      stdinHub.state = src.readableFlowing;
      src.on('data', stdinHub.onData);
      src.on('end', stdinHub.onEnd);
      src.on('error', stdinHub.onEnd);
    }
    stdinHub.dests.add(d);
    if (src.readableEnded) d.end();
    else if (!stdinHub.full.size) src.resume();
  },
  remove(d: net.Socket): void {
    if (!stdinHub.dests.delete(d)) return;
    stdinHub.drained(d);
    d.destroy();
    if (stdinHub.dests.size) return;
    const src = process.stdin;
    src.off('data', stdinHub.onData);
    src.off('end', stdinHub.onEnd);
    src.off('error', stdinHub.onEnd);
    // Stop reading Node's stdin unless the application reads it: a paused stdin neither keeps the
    // process alive nor takes input the application reads later. What was read but not yet
    // passed on stays in process.stdin's buffer for the application.
    if (stdinHub.state !== true) {
      src.pause();
      // As before the relay: a later 'data' listener of the application starts it again.
      if (stdinHub.state === null) (src as unknown as { _readableState: { flowing: boolean | null } })._readableState.flowing = null;
    }
  },
};

/**
 * One 'error' listener per stream of Node's (stdout, stderr) while any relay writes to it. A write
 * error (EPIPE: whoever read it went away) ends those relays: the container then gets EPIPE
 * itself, as it would have on the fd; the application's own listeners still see the error, but
 * the process does not crash on the container's account.
 */
const destHooks = new Map<Writable, { stops: Set<() => void>; listener: () => void }>();

function hookDestError(dest: Writable, stop: () => void): () => void {
  let h = destHooks.get(dest);
  if (!h) {
    const hook = { stops: new Set<() => void>(), listener: (): void => { for (const f of [...hook.stops]) f(); } };
    h = hook;
    destHooks.set(dest, h);
    dest.on('error', h.listener);
  }
  h.stops.add(stop);
  const entry = h;
  return () => {
    entry.stops.delete(stop);
    if (!entry.stops.size && destHooks.get(dest) === entry) {
      dest.off('error', entry.listener);
      destHooks.delete(dest);
    }
  };
}

/**
 * @internal Copies Node's stdin into the container's stdin pipe and the container's output pipes to
 * Node's stdout and stderr, for as long as the container runs. finish() (at the container's exit)
 * stops the stdin copy and resolves once every byte of output has been written to Node's fds.
 */
export class StdioRelay {
  #stdin: net.Socket | null = null;
  #outs: { src: net.Socket; done: Promise<void> }[] = [];

  constructor(ours: [number, number, number]) {
    if (ours[0] >= 0) {
      const dest = pipeSocket(ours[0], false);
      // EPIPE once the command has closed its stdin or exited: the rest is simply not wanted.
      dest.on('error', () => stdinHub.remove(dest));
      this.#stdin = dest;
      stdinHub.add(dest);
    }
    for (const i of [1, 2] as const) if (ours[i] >= 0) this.#relayOut(ours[i], i === 1 ? process.stdout : process.stderr);
  }

  #relayOut(fd: number, dest: Writable): void {
    const src = pipeSocket(fd, true);
    const done = new Promise<void>((resolve) => {
      let pending = 0;
      let ended = false;
      const unhook = hookDestError(dest, () => src.destroy());
      const check = (): void => {
        if (ended && pending === 0) {
          unhook();
          resolve();
        }
      };
      src.on('data', (chunk: Buffer) => {
        pending++;
        const ok = dest.write(chunk, () => {
          pending--;
          check();
        });
        if (!ok) {
          src.pause();
          dest.once('drain', () => src.resume());
        }
      });
      const end = (): void => {
        ended = true;
        check();
      };
      src.once('end', end);
      src.once('close', end);
      src.on('error', () => src.destroy());
    });
    this.#outs.push({ src, done });
  }

  /** Like Container.unref(): the output pipes no longer keep Node alive. */
  unref(): void {
    for (const o of this.#outs) o.src.unref();
  }

  ref(): void {
    for (const o of this.#outs) o.src.ref();
  }

  /** The container has exited: stop feeding stdin and wait until its output is written out. */
  async finish(graceMs = RELAY_GRACE_MS): Promise<void> {
    if (this.#stdin) stdinHub.remove(this.#stdin);
    this.#stdin = null;
    if (!this.#outs.length) return;
    const all = Promise.all(this.#outs.map((o) => o.done));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), graceMs)));
    if ((await Promise.race([all, late])) === 'late') {
      // Something outside the command still holds a write end: stop reading; it gets EPIPE.
      for (const o of this.#outs) o.src.destroy();
      await all;
    }
    clearTimeout(timer);
  }
}

export interface CollectedOutput {
  stdout: Buffer;
  stderr: Buffer;
  stdoutDropped: number;
  stderrDropped: number;
}

/** @internal Reads two output pipes whole (the addon owns and closes the fds from here on). */
export function collectOutput(outFd: number, errFd: number, max: number): Promise<CollectedOutput> {
  return new Promise((resolve) =>
    native().collectOutput([outFd, errFd], max, (stdout, stderr, stdoutDropped, stderrDropped) => resolve({ stdout, stderr, stdoutDropped, stderrDropped })),
  );
}

/** Collects one output stream, keeping at most `max` bytes and counting the rest. */
export function collect(stream: Readable | null, max: number): Promise<{ buf: Buffer; dropped: number }> {
  return new Promise((resolve, reject) => {
    if (!stream) return resolve({ buf: Buffer.alloc(0), dropped: 0 });
    const chunks: Buffer[] = [];
    let kept = 0;
    let dropped = 0;
    stream.on('data', (c: Buffer) => {
      const room = max - kept;
      if (room >= c.length) {
        chunks.push(c);
        kept += c.length;
      } else {
        if (room > 0) chunks.push(c.subarray(0, room));
        kept += Math.max(room, 0);
        dropped += c.length - Math.max(room, 0);
      }
    });
    // EIO is how a pty master reports that the last holder of its slave has gone: end of output.
    stream.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EIO' ? undefined : reject(e)));
    stream.once('close', () => resolve({ buf: Buffer.concat(chunks, kept), dropped }));
  });
}

/**
 * The pty master a start with a terminal sent over `sock` (the child's pty.cc, open_pty), closed
 * here: the fd, or the NsboxError (step exec.pty) that fails the start. What arrives must be a pty
 * master (the addon's TIOCGPTN check), and never one of the host's own devpts: a machine's root
 * can send what it likes, and whatever an app container's /dev/pts was, the host's ptys are not
 * the container's to hand out. (Other devpts instances of the host are not told apart here: the
 * child took the master from the devpts at /dev/pts of the container's root, see pty.cc.)
 */
export function receivePty(sock: number): number | NsboxError {
  const master = native().recvFd(sock, true);
  try {
    fs.closeSync(sock);
  } catch {
    /* closed already */
  }
  if (master < 0) return new NsboxError({ code: errnoName(-master), errno: -master, syscall: 'recvmsg', step: 'exec.pty' });
  const host = fs.statSync('/dev/pts', { throwIfNoEntry: false });
  if (host && fs.fstatSync(master).dev === host.dev) {
    fs.closeSync(master);
    return new NsboxError({ code: 'EPROTO', syscall: 'recvmsg', step: 'exec.pty', path: '/dev/pts', message: "the pty sent for the terminal is one of the host's /dev/pts (step exec.pty)" });
  }
  return master;
}

/**
 * The tty stream of an exec whose pty master arrives only once the process inside the machine has
 * opened it (on the event loop): writes wait for it, reads come from it.
 */
export class LateTty extends Duplex {
  #tty: import('node:tty').ReadStream | null = null;
  #pending: Array<[Buffer, (e?: Error | null) => void]> = [];
  #ended = false;

  constructor() {
    // The terminal's end-of-file ends both sides (then 'close', which run() waits for).
    super({ allowHalfOpen: false });
  }

  /** One whose master is there already (an app container's, received once its command exec'd). */
  static attached(master: number): LateTty {
    const t = new LateTty();
    t.attach(master);
    return t;
  }

  attach(master: number): void {
    const sock = new (require('node:tty').ReadStream)(master) as import('node:tty').ReadStream;
    (sock as unknown as { writable: boolean }).writable = true;
    this.#tty = sock;
    // When the last holder of the slave side exits, reading the master fails with EIO: that is
    // the terminal's end-of-file, not an error.
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EIO') this.destroy();
      else this.destroy(err);
    });
    sock.on('data', (d: Buffer) => {
      if (!this.push(d)) sock.pause();
    });
    const end = (): void => {
      if (this.#ended) return;
      this.#ended = true;
      this.push(null);
    };
    sock.on('end', end);
    sock.on('close', () => {
      if (!this.destroyed) end();
    });
    for (const [chunk, cb] of this.#pending.splice(0)) sock.write(chunk, cb);
  }

  override _read(): void {
    this.#tty?.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.#tty) this.#tty.write(chunk, cb);
    else this.#pending.push([chunk, cb]);
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    for (const [, pcb] of this.#pending.splice(0)) pcb(err ?? new Error('tty closed before the command started'));
    this.#tty?.destroy();
    cb(err);
  }
}
