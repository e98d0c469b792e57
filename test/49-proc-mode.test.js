// The `proc` option (issue #22): 'fresh' (the default) gives a container a new procfs of its own pid
// namespace; 'none' gives it no procfs at all, /proc an empty read-only directory, for where the
// kernel refuses a new procfs (a rootless start behind a masked /proc: test/pod/masked-proc.test.js
// plays that shape). Checked from inside the container with busybox, for root and rootless callers
// alike (test/rootless/run.sh runs this file as an unprivileged user).
'use strict';
const t = require('tap');
const { run, spawn, probe, Machine, createPool } = require('..');
const { busyboxRootfs, warmUp, assertNoLeaks, machineStateDir } = require('./helpers');
const { privileged } = require('../dist/runtime');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const who = privileged() ? 'root' : 'rootless';
let before;

t.before(async () => {
  before = await warmUp();
});

// What /proc is, as the container sees it: its filesystem type, its entries, whether its root can
// write it, who it is there, and whether it can read its own /proc/self.
const LOOK = [
  'echo "type=$(stat -f -c %T /proc)"',
  'echo "entries=$(ls -A /proc | wc -l)"',
  'echo "pid1=$(test -e /proc/1 && echo yes || echo no)"',
  'echo "self=$(cat /proc/self/stat 2>/dev/null | cut -d" " -f1)"',
  'touch /proc/x 2>/dev/null && echo write=yes || echo write=no',
  'echo "me=$$"',
].join('; ');

const fields = (s) => Object.fromEntries(s.trim().split('\n').map((l) => l.split('=')));

t.test(`${who}: proc 'fresh' (the default): a procfs of the container's own pid namespace`, { skip: noBusybox }, async (t) => {
  for (const opts of [{}, { proc: 'fresh' }]) {
    const r = await run({ rootfs: bb, command: ['/bin/sh', '-c', LOOK], ...opts });
    t.equal(r.exitCode, 0, r.stderr.toString());
    const f = fields(r.stdout.toString());
    t.equal(f.type, 'proc', `${JSON.stringify(opts)}: /proc is a procfs`);
    t.equal(f.pid1, 'yes', 'its pid 1 is there');
    t.equal(f.me, '1', 'the command is pid 1 of its namespace');
    t.match(f.self, /^\d+$/, '/proc/self reads');
    t.equal(f.write, 'no', 'nothing can be made in it');
  }
});

t.test(`${who}: proc 'none': /proc is an empty read-only tmpfs, the pid namespace stays`, { skip: noBusybox }, async (t) => {
  for (const init of [false, true]) {
    const r = await run({ rootfs: bb, command: ['/bin/sh', '-c', LOOK], proc: 'none', init });
    t.equal(r.exitCode, 0, r.stderr.toString());
    const f = fields(r.stdout.toString());
    t.equal(f.type, 'tmpfs', `init ${init}: /proc is a tmpfs, no procfs`);
    t.equal(f.entries, '0', 'with nothing in it');
    t.equal(f.pid1, 'no', 'no process shows there');
    t.equal(f.self, '', '/proc/self is not there');
    t.equal(f.write, 'no', 'the container\'s root cannot make a file there (read-only)');
    t.equal(f.me, init ? '2' : '1', 'still its own pid namespace');
  }
  const r = await run({ rootfs: bb, command: ['/bin/sh', '-c', 'grep -c . /proc/mounts; mount -o remount,rw /proc'], proc: 'none' });
  t.not(r.exitCode, 0, 'and cannot remount it writable');
});

t.test(`${who}: proc 'none' keeps the rest: a spawned container is killed and waited for by its pidfd, its output read`, { skip: noBusybox }, async (t) => {
  const c = spawn({ rootfs: bb, command: ['/bin/sh', '-c', 'echo up; exec sleep 1000'], proc: 'none' });
  const up = await new Promise((resolve) => c.stdout.once('data', (d) => resolve(d.toString())));
  t.equal(up, 'up\n', 'it runs');
  c.kill('SIGKILL');
  const x = await c.wait();
  t.equal(x.signal, 'SIGKILL', 'killed');
});

t.test(`${who}: a pool with proc 'none': its containers get the empty /proc too`, { skip: noBusybox }, async (t) => {
  const pool = createPool({ size: 1, rootfs: bb, proc: 'none' });
  try {
    for (let i = 0; i < 2; i++) {
      const r = await pool.run(['/bin/sh', '-c', LOOK]);
      t.equal(r.exitCode, 0, r.stderr.toString());
      const f = fields(r.stdout.toString());
      t.same([f.type, f.entries, f.write], ['tmpfs', '0', 'no'], `run ${i + 1}: an empty read-only tmpfs`);
    }
  } finally {
    await pool.close();
  }
});

t.test(`${who}: a machine with proc 'none': PID 1 and exec run, /proc inside is empty`, { skip: noBusybox }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-pm-m-');
  const m = await Machine.start({ name: 'pm-none', rootfs: bb, stateDir, proc: 'none', ephemeral: true });
  try {
    const r = await m.run(['/bin/sh', '-c', LOOK]);
    t.equal(r.exitCode, 0, r.stderr.toString());
    const f = fields(r.stdout.toString());
    t.equal(f.type, 'tmpfs', '/proc is a tmpfs');
    t.equal(f.entries, '0', 'empty: not even the machine\'s PID 1 shows');
    t.equal(f.write, 'no', 'read-only');
    t.not(f.me, '1', 'the exec joined the machine\'s pid namespace (its PID 1 is the init)');
  } finally {
    await m.stop({ timeout: 5000 });
    await m.destroy();
  }
});

t.test('a bad proc mode is a TypeError before anything starts', async (t) => {
  for (const proc of ['host', 'pids', '', true, null]) {
    t.throws(() => spawn({ command: ['/bin/true'], proc }), { name: 'TypeError', code: proc === 'host' || proc === 'pids' || proc === '' ? 'ERR_INVALID_ARG_VALUE' : /ERR_INVALID_ARG_(TYPE|VALUE)/ }, `app: ${JSON.stringify(proc)}`);
  }
  await t.rejects(Machine.start({ name: 'pm-bad', rootfs: '/', proc: 'host' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' }, 'machine: \'host\'');
});

t.test(`${who}: probe() reports the proc modes it could mount here, by trying each`, async (t) => {
  const p = await probe();
  t.match(p.trials.procNone, { ok: Boolean, code: p.trials.procNone.ok ? null : String }, 'the proc: \'none\' trial is reported');
  const want = [...(p.trials.procfs.ok ? ['fresh'] : []), ...(p.trials.procNone.ok ? ['none'] : [])];
  t.same(p.procModes, want, 'procModes are the trials that worked');
  // Here (no masks around this process) both work whenever a container can start at all.
  if (p.trials.userns.ok || p.root) t.same(p.procModes, ['fresh', 'none'], 'both modes work on this host');
});

t.test('nothing is left behind', async (t) => {
  await assertNoLeaks(t, before, 'after the proc mode tests');
});
