// Locks held by another process (stopped, hung, or slow) are never waited on without end: every
// lock nsbox takes on Node's thread is a flock of a file another process on the host may hold.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { Machine, NsboxError } = require('..');
const { busyboxRootfs, isRoot } = require('./helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const noFlock = spawnSync('flock', ['--version']).status === 0 ? false : 'flock(1) (util-linux) is not installed';
const skip = !isRoot() ? 'machines need root' : noBusybox || noFlock;

/**
 * Holds `file`'s flock in a flock(1) process (its own process group: the sleep it runs inherits the
 * locked fd) until released; resolves once it is held.
 */
async function holdLock(t, file) {
  const p = spawn('flock', ['--exclusive', file, 'sh', '-c', 'echo held; exec sleep 1000'], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  const gone = new Promise((r) => p.on('exit', r));
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    process.kill(-p.pid, 'SIGKILL');
    await gone;
    p.stdout.destroy();
    // The sleep holds the locked fd too: wait until the whole group is gone (reaped by init).
    for (;;) {
      try {
        process.kill(-p.pid, 0);
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  t.teardown(release);
  await new Promise((resolve, reject) => {
    p.stdout.once('data', resolve);
    p.once('exit', (c) => reject(new Error(`flock exited with ${c}`)));
  });
  return { pid: p.pid, release };
}

t.test("Machine.list() does not wait for a state directory's lock another process holds", { skip }, async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-locks-'));
  t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  // A name without state, as a start that died between its mkdir and its claim leaves it (older
  // than the 10 s a live start gets), so list() wants its sweep.
  fs.mkdirSync(path.join(stateDir, 'starting'), { mode: 0o700 });
  const old = new Date(Date.now() - 60000);
  fs.utimesSync(path.join(stateDir, 'starting'), old, old);
  const holder = await holdLock(t, path.join(stateDir, '.lock'));
  const before = Date.now();
  const list = await Machine.list({ stateDir });
  t.same(list, [], 'nothing with state is listed');
  t.ok(fs.existsSync(path.join(stateDir, 'starting')), 'and the sweep, which needs the lock, is left to a later list');
  t.comment(`list() with the lock held took ${Date.now() - before} ms`);
  await holder.release();
  await Machine.list({ stateDir });
  t.notOk(fs.existsSync(path.join(stateDir, 'starting')), 'once the lock is free, the next list() sweeps the empty start');
});

t.test('Machine.start() gives up on a held lock with ETIMEDOUT naming the lock and its holder, and leaves nothing', { skip }, async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-locks-'));
  t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  const lock = path.join(stateDir, '.lock');
  const holder = await holdLock(t, lock);
  const err = await Machine.start({ name: 'waits', rootfs: bb, ephemeral: true, stateDir }).then(() => null, (e) => e);
  t.ok(err instanceof NsboxError, `an NsboxError (${err && err.message})`);
  t.equal(err?.code, 'ETIMEDOUT');
  t.equal(err?.syscall, 'flock');
  t.equal(err?.step, 'machine.name');
  t.equal(err?.path, lock);
  t.match(err?.message, new RegExp(`pid ${holder.pid}\\b`), 'the message names the holder');
  t.same(fs.readdirSync(stateDir).filter((n) => n !== '.lock'), [], 'no machine directory was made');
  await holder.release();
  const m = await Machine.start({ name: 'waits', rootfs: bb, ephemeral: true, stateDir });
  t.teardown(() => m.destroy().catch(() => {}));
  t.equal(await m.state(), 'running', 'with the lock free, the same start works');
  await m.stop();
  await m.destroy();
});
