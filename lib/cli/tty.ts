// cli/tty.ts: `nsbox machine exec -t` and `nsbox run -t`: nsbox's own terminal bridged to the pty of
// the command.
import type { Readable } from 'node:stream';

import type { Container, ExitInfo } from '../index';

/** How long output may still come from a pty after its command has exited. */
const PTY_DRAIN_MS = 500;

/**
 * With a tty, a Container's stdin and stdout are one socket (the pty master), and the library
 * destroys stdin as soon as the command has exited, which can drop output not yet read (a quick
 * `exec -t m -- ls` printed nothing about half the time). Until the library waits for the pty's end
 * itself, a destroy() without an error is put off until the output has ended (the pty's EIO, or
 * EOF), for PTY_DRAIN_MS at most: a background process inside may hold the pty open.
 */
function keepPtyOutput(sock: Readable): void {
  const destroy = sock.destroy.bind(sock);
  let deferred = false;
  sock.destroy = (err?: Error): Readable => {
    if (err || deferred || sock.readableEnded || sock.destroyed) return destroy(err);
    deferred = true;
    const timer = setTimeout(() => destroy(), PTY_DRAIN_MS);
    sock.once('close', () => clearTimeout(timer));
    sock.once('end', () => destroy());
    return sock;
  };
}

/**
 * `exec -t`, `run -t`: bridges nsbox's own stdin/stdout and the pty of `c` until `c` exits. A
 * terminal on stdin goes into raw mode (so Ctrl-C, Ctrl-Z, ... are bytes for the container's tty)
 * and is restored afterwards; the size of the terminal on stdout is passed on, now and on every
 * resize (SIGWINCH). `input: false` (`run -t` without `-i`, as docker): nsbox's stdin is neither
 * read nor put in raw mode; Ctrl-C stays nsbox's signal, which it forwards.
 */
export async function bridgeTty(c: Container, opts: { input?: boolean } = {}): Promise<ExitInfo> {
  const input = opts.input !== false;
  const stdin = process.stdin;
  const stdout = process.stdout;
  const pty = c.stdout!;
  const ptyIn = c.stdin!;
  const raw = input && stdin.isTTY === true;
  const wasRaw = raw ? stdin.isRaw : false;
  const restore = (): void => {
    if (raw) {
      try {
        stdin.setRawMode(wasRaw);
      } catch {
        /* the terminal is gone */
      }
    }
  };
  const setSize = (): void => {
    try {
      if (stdout.isTTY && stdout.columns > 0 && stdout.rows > 0) c.resize(stdout.columns, stdout.rows);
    } catch {
      /* exited meanwhile */
    }
  };
  if (stdout.isTTY) setSize();
  else {
    try {
      c.resize(80, 24);
    } catch {
      /* exited meanwhile */
    }
  }
  if (raw) stdin.setRawMode(true);
  process.on('exit', restore);
  stdout.on('resize', setSize);

  // Output: the pty (which is both stdin and stdout of c) to our stdout. EIO is how a pty master
  // reports that the other side is closed: the end of the output, not an error.
  keepPtyOutput(pty);
  const outputDone = new Promise<void>((resolve) => {
    pty.on('data', (d: Buffer) => stdout.write(d));
    pty.once('close', resolve);
  });
  pty.on('error', () => {});
  ptyIn.on('error', () => {});
  // Input: our stdin to the pty. At the end of our input (a pipe, not a terminal), send the
  // terminal's end-of-file character, as script(1) does, so a reading shell or cat ends.
  const onData = (d: Buffer): void => {
    if (!c.exited && !ptyIn.destroyed) ptyIn.write(d);
  };
  const onEnd = (): void => {
    if (!c.exited && !ptyIn.destroyed) ptyIn.write('\x04');
  };
  const onStdinError = (): void => {};
  if (input) {
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    stdin.on('error', onStdinError);
    stdin.resume();
  }
  try {
    const info = await c.wait();
    // Let the last output through: the pty reports its end (EIO) once the command's side is closed.
    await Promise.race([outputDone, new Promise((r) => setTimeout(r, PTY_DRAIN_MS + 500).unref())]);
    return info;
  } finally {
    if (input) {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.off('error', onStdinError);
      stdin.pause();
    }
    stdout.off('resize', setSize);
    restore();
    process.off('exit', restore);
  }
}
