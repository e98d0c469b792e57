// The warm pool: containers set up ahead of time, each used for exactly one command.
'use strict';
const t = require('tap');
const { createPool, NsboxError } = require('..');
const { busyboxRootfs, warmUp, assertNoLeaks } = require('./helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
let before;
t.before(async () => {
  before = await warmUp();
});

t.test('a pooled run has the same isolation as a cold one, and each run gets a fresh container', { skip: noBusybox }, async (t) => {
  const pool = createPool({ size: 2, rootfs: bb, hostname: 'pooled' });
  t.teardown(() => pool.close());
  const a = await pool.run(['/bin/sh', '-c', 'echo $$ $(hostname); echo mark > /tmp/mark; cat'], { input: 'stdin works\n' });
  t.equal(a.exitCode, 0);
  t.equal(a.stdout.toString(), '1 pooled\nstdin works\n', 'PID 1, the pool hostname, input on stdin');
  const empty = await pool.run(['/probe', 'cat'], { timeout: 10000 });
  t.same([empty.exitCode, empty.timedOut, empty.stdout.length], [0, false, 0], 'no input: stdin is at end-of-file at once');
  const b = await pool.run(['/bin/sh', '-c', 'test -e /tmp/mark && echo LEAK || echo fresh']);
  t.equal(b.stdout.toString(), 'fresh\n', 'nothing of the previous run is visible');
  const i = JSON.parse((await pool.run(['/probe', 'info'])).stdout.toString());
  t.same(i.fds, [0, 1, 2], 'no pool fd reaches the command');
  t.equal(i.status.NoNewPrivs, '1');
  t.equal(i.status.Seccomp, '2', 'the seccomp filter is on');
  t.equal(i.status.CapEff, '00000000000005fb');
  t.same(i.pids, [1]);
  const e = await pool.run(['no-such-command']).catch((x) => x);
  t.type(e, NsboxError);
  t.match(e, { code: 'ENOENT', step: 'exec' });
  const k = await pool.run(['/bin/sh', '-c', 'exit 5']);
  t.equal(k.exitCode, 5, 'exit codes come through');
  const timed = await pool.run(['/probe', 'sleep', '30'], { timeout: 200 });
  t.equal(timed.timedOut, true);
  t.equal(timed.signal, 'SIGKILL');
});

t.test('Symbol.asyncDispose closes the pool: its waiting containers end and run() is refused', { skip: noBusybox }, async (t) => {
  const pool = createPool({ size: 2, rootfs: bb });
  const r = await pool.run(['/bin/sh', '-c', 'exit 4']);
  t.equal(r.exitCode, 4);
  await pool[Symbol.asyncDispose]();
  t.equal(pool.ready, 0, 'no container waits any more');
  await t.rejects(pool.run(['/bin/true']), { code: 'ESHUTDOWN', step: 'pool.run' }, 'a closed pool runs nothing');
  await pool[Symbol.asyncDispose]();
  t.pass('disposing of it twice is harmless');
});

t.test('pool.run({ encoding }) gives strings like run(); a bad one is refused before the command is sent', { skip: noBusybox }, async (t) => {
  const pool = createPool({ size: 1, rootfs: bb });
  t.teardown(() => pool.close());
  const r = await pool.run(['/bin/sh', '-c', 'printf "caf\\303\\251"; printf e >&2'], { encoding: 'utf8' });
  t.same([r.stdout, r.stderr, r.exitCode], ['caf\u00e9', 'e', 0]);
  t.ok(Buffer.isBuffer((await pool.run(['/bin/true'], { encoding: 'buffer' })).stdout), "'buffer': Buffers");
  await t.rejects(pool.run(['/bin/true'], { encoding: 'nope' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /"encoding"/ });
  t.throws(() => createPool({ size: 1, rootfs: bb, encoding: 'utf8' }), { code: 'ERR_INVALID_ARG_VALUE', message: /belongs to pool.run/ });
});

t.test('pool options are validated before anything starts', async (t) => {
  t.throws(() => createPool({ size: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => createPool({ size: 2, command: ['x'] }), { code: 'ERR_INVALID_ARG_VALUE', message: /pool.run/ });
  t.throws(() => createPool({ size: 2, init: true }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => createPool({ size: 2, hostnme: 'x' }), { code: 'ERR_INVALID_ARG_VALUE', message: /did you mean "hostname"/ });
  const pool = createPool({ size: 1 });
  await t.rejects(pool.run('ls'), { code: 'ERR_INVALID_ARG_TYPE' });
  await pool.close();
  await t.rejects(pool.run(['true']), { code: 'ESHUTDOWN' });
});

t.test('closing the pool ends every waiting container and leaves nothing behind', { skip: noBusybox }, async (t) => {
  const pool = createPool({ size: 4, rootfs: bb });
  // It fills in the background, one start at a time: how long that takes is no matter here (under
  // TCG on a busy host 200 ms saw one of four), only that it gets there.
  for (let i = 0; i < 600 && pool.ready < 4; i++) await new Promise((r) => setTimeout(r, 100));
  t.equal(pool.ready, 4, 'the pool filled up in the background');
  await pool.close();
  t.equal(pool.ready, 0);
  await assertNoLeaks(t, before, 'after closing a full pool');
});
