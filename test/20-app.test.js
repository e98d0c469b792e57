// App containers seen from the inside: the static probe reports what a process in the container can
// observe, and each test asserts on that report.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, spawn } = require('..');
const { busyboxRootfs, warmUp, snapshot, assertNoLeaks, probeBinary, noCgroup, manyIds } = require('./helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const probe = probeBinary();

/** Runs the probe's `info` inside a container and returns the parsed report. */
async function info(t, opts = {}) {
  const r = await run({ rootfs: bb, command: ['/probe', 'info'], ...opts });
  t.equal(r.exitCode, 0, `probe exited 0 (stderr: ${r.stderr})`);
  return JSON.parse(r.stdout.toString());
}

let before;
t.before(async () => {
  before = await warmUp();
});

t.test('busybox rootfs container: the probe is PID 1 and sees no host process', { skip: noBusybox }, async (t) => {
  const i = await info(t);
  t.equal(i.pid, 1, 'the command is PID 1');
  t.equal(i.ppid, 0, 'PID 1 has no parent inside');
  t.same(i.pids, [1], 'only itself in /proc');
  t.equal(i.sid, 1, 'it leads a new session');
});

t.test('default rootfs: host system directories are there, host secrets are not', async (t) => {
  const r = await run({
    command: ['/bin/sh', '-c', 'ls /; test -e /etc/shadow && echo SHADOW; test -e /root/.ssh && echo SSH; test -e /home && echo HOME; test -e /work && echo WORK; echo x > /usr/x 2>/dev/null && echo USRW; cat /etc/passwd | head -1'],
  });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const out = r.stdout.toString();
  t.match(out, /usr/);
  t.match(out, /^root:/m, '/etc/passwd is readable');
  t.notMatch(out, /SHADOW|SSH|HOME|WORK|USRW/, 'no shadow, ssh keys, /home, work tree; /usr read-only');
});

t.test('hostname is set in a new UTS namespace', { skip: noBusybox }, async (t) => {
  t.equal((await info(t)).hostname, 'nsbox', 'default hostname');
  t.equal((await info(t, { hostname: 'judge-7' })).hostname, 'judge-7', 'given hostname');
  t.equal(os.hostname() === 'judge-7', false, 'the host name is untouched');
});

t.test("network 'loopback' has only lo, up; 'none' has only lo, down", { skip: noBusybox }, async (t) => {
  const lo = await info(t, { network: 'loopback' });
  t.same(lo.net, [{ name: 'lo', up: true }]);
  const none = await info(t, { network: 'none' });
  t.same(none.net, [{ name: 'lo', up: false }]);
  const host = await info(t, { network: 'host' });
  t.ok(host.net.length >= 1 && host.net.some((n) => n.name !== 'lo') === fs.readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2).some((l) => l.trim() && !l.trim().startsWith('lo:')), "'host' shows the host's interfaces");
});

t.test('the rootfs is read-only by default and writable with readonly: false', { skip: noBusybox }, async (t) => {
  t.equal((await info(t)).root_writable, false, 'read-only root');
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-rw-'));
  fs.cpSync(bb, scratch, { recursive: true, verbatimSymlinks: true });
  t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const rw = await info(t, { rootfs: scratch, readonly: false });
  t.equal(rw.root_writable, true, 'writable root when asked');
  const tmp = await run({ rootfs: bb, command: ['/probe', 'try-write', '/tmp/x'] });
  t.same(JSON.parse(tmp.stdout), { ok: true }, '/tmp is a writable tmpfs even on a read-only root');
});

t.test('/proc/sys is read-only and leaky /proc files are masked', { skip: noBusybox }, async (t) => {
  const i = await info(t);
  t.equal(i.proc_sys_writable, false, '/proc/sys is read-only');
  // Only what this kernel has: a kernel without CONFIG_MAGIC_SYSRQ has no sysrq-trigger, etc.
  const masked = ['kcore', 'keys', 'timer_list', 'sched_debug'].filter((f) => fs.existsSync('/proc/' + f));
  t.ok(masked.length > 0, `some maskable files exist here (${masked.join(' ')})`);
  for (const f of masked) {
    const r = await run({ rootfs: bb, command: ['/bin/sh', '-c', `wc -c < /proc/${f}`] });
    t.equal(r.stdout.toString().trim(), '0', `/proc/${f} reads as empty`);
  }
  const ro = ['sysrq-trigger', 'sys/kernel/hostname', 'irq', 'bus'].filter((f) => fs.existsSync('/proc/' + f));
  for (const f of ro) {
    const r = await run({ rootfs: bb, command: ['/probe', 'try-write', `/proc/${f}`] });
    t.equal(JSON.parse(r.stdout).ok, false, `/proc/${f} is not writable`);
  }
});

t.test('no fd above 2 reaches the container, even one opened without O_CLOEXEC', { skip: noBusybox }, async (t) => {
  // What a careless native module leaves: an fd without close-on-exec.
  const { native } = require('../dist/native');
  const fd = fs.openSync('/etc/hostname', 'r');
  t.teardown(() => fs.closeSync(fd));
  t.equal(native().setCloexec(fd, false), 0);
  t.equal(parseInt(/^flags:\s+(\d+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))[1], 8) & 0o2000000, 0, `fd ${fd} is inheritable`);
  const i = await info(t);
  t.same(i.fds, [0, 1, 2], 'the container sees only 0, 1 and 2');
});

t.test('the environment is exactly what was given, plus PATH and HOME defaults', { skip: noBusybox }, async (t) => {
  process.env.NSBOX_SECRET_TEST = 'leak';
  t.teardown(() => delete process.env.NSBOX_SECRET_TEST);
  const def = await info(t);
  t.same(def.env, { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/' });
  const given = await info(t, { env: { A: '1', B: 'two words', PATH: '/bin' } });
  t.same(given.env, { A: '1', B: 'two words', PATH: '/bin', HOME: '/' });
});

t.test('user sets uid, gid and groups; capabilities follow', { skip: noBusybox || manyIds() }, async (t) => {
  const r = await info(t);
  t.equal(r.uid, 0);
  t.equal(r.gid, 0);
  t.same(r.groups, []);
  t.equal(r.status.CapEff, '00000000000005fb', 'root keeps the documented nine capabilities');
  t.equal(r.status.CapBnd, '00000000000005fb', 'bounding set is the same nine');
  t.equal(r.status.CapInh, '0000000000000000');
  t.equal(r.status.CapAmb, '0000000000000000');
  t.equal(r.status.NoNewPrivs, '1', 'no_new_privs is set');
  const u = await info(t, { user: { uid: 1000, gid: 1001, groups: [5, 7] } });
  t.equal(u.uid, 1000);
  t.equal(u.euid, 1000);
  t.equal(u.gid, 1001);
  t.same(u.groups.sort(), [5, 7]);
  t.equal(u.status.CapEff, '0000000000000000', 'a non-root user has no effective capabilities');
  t.equal(u.status.CapPrm, '0000000000000000');
});

t.test('capabilities: add and drop change every set; ALL drops everything', { skip: noBusybox }, async (t) => {
  const add = await info(t, { capabilities: { add: ['NET_RAW'], drop: ['CAP_KILL'] } });
  const expected = ((0x5fbn | (1n << 13n)) & ~(1n << 5n)).toString(16).padStart(16, '0');
  t.equal(add.status.CapEff, expected, 'NET_RAW (13) added, KILL (5) dropped');
  t.equal(add.status.CapBnd, add.status.CapEff, 'bounding set matches');
  const none = await info(t, { capabilities: { drop: ['ALL'] } });
  t.equal(none.status.CapEff, '0000000000000000');
  t.equal(none.status.CapBnd, '0000000000000000');
});

t.test('signals are unblocked and reset, rlimits are set explicitly, umask and cwd', { skip: noBusybox }, async (t) => {
  const i = await info(t, { cwd: '/tmp' });
  t.equal(i.status.SigBlk, '0000000000000000', 'no blocked signal');
  t.equal(i.status.SigIgn, '0000000000000000', 'no ignored signal (Node ignores SIGPIPE)');
  t.equal(i.nofile[0], 1024, 'RLIMIT_NOFILE soft is 1024, not what Node raised it to');
  t.equal(i.core[1], 0, 'no core dumps');
  t.equal(i.cwd, '/tmp');
});

t.test('a fresh session keyring, not the host one', { skip: noBusybox }, async (t) => {
  // The default seccomp filter refuses keyctl altogether; without it each container still has a
  // session keyring of its own.
  t.equal((await info(t)).session_keyring, -1, 'keyctl is refused (EPERM) under the default filter');
  const i = await info(t, { seccomp: 'none' });
  const again = await info(t, { seccomp: 'none' });
  t.ok(i.session_keyring > 0, 'has a session keyring');
  t.not(i.session_keyring, again.session_keyring, 'each container gets its own');
});

t.test('exit code, signal and duration are reported', { skip: noBusybox }, async (t) => {
  const r = await run({ rootfs: bb, command: ['/bin/sh', '-c', 'exit 7'] });
  t.equal(r.exitCode, 7);
  t.equal(r.signal, null);
  t.equal(r.timedOut, false);
  t.equal(r.oomKilled, false);
  t.ok(r.durationMs > 0);
  t.ok(typeof r.stats.cpuUsageUs === 'number');
  const c = spawn({ rootfs: bb, command: ['/probe', 'sleep', '30'] });
  setTimeout(() => c.kill('SIGKILL'), 50);
  const k = await c.wait();
  t.equal(k.exitCode, null, 'killed from outside: no exit code');
  t.equal(k.signal, 'SIGKILL');
  // PID 1 cannot kill itself with a signal (the kernel protects a namespace's init), so a command
  // that does so only shows a signal death under the init.
  const self = await run({ rootfs: bb, init: true, command: ['/probe', 'kill-self', '9'] });
  t.equal(self.signal, 'SIGKILL', 'a command that SIGKILLs itself under init: signal SIGKILL');
});

t.test('timeout kills a sleep and its grandchildren and sets timedOut', { skip: noBusybox }, async (t) => {
  const c = spawn({ rootfs: bb, command: ['/probe', 'spawn-orphans', '3', '60'], timeout: 500 });
  const out = [];
  c.stdout.on('data', (d) => out.push(d));
  const hostPidsBefore = new Set(fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)));
  const r = await c.wait();
  t.equal(r.timedOut, true);
  t.equal(r.signal, 'SIGKILL');
  t.match(Buffer.concat(out).toString(), /"spawned":3/);
  // Every probe process that was started is gone from the host.
  const left = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e) && !hostPidsBefore.has(e)).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'probe';
    } catch {
      return false;
    }
  });
  t.same(left, [], 'no probe process is left on the host');
});

t.test('init: true runs a reaping PID 1 and reports the command status', { skip: noBusybox }, async (t) => {
  const r = await run({ rootfs: bb, init: true, command: ['/probe', 'info'] });
  const i = JSON.parse(r.stdout.toString());
  t.equal(i.pid, 2, 'the command is PID 2');
  t.equal(i.ppid, 1, 'its parent is the init');
  const c = await run({ rootfs: bb, init: true, command: ['sh', '-c', 'exit 9'] });
  t.equal(c.exitCode, 9, 'exit code of the command, found on PATH');
  const k = await run({ rootfs: bb, init: true, command: ['/probe', 'kill-self', '15'] });
  t.equal(k.signal, 'SIGTERM', 'a signal death of the command is reported as such');
  const z = await run({ rootfs: bb, init: true, command: ['/bin/sh', '-c', '(sleep 0.2 &) ; sleep 0.6; ps -o stat,comm | grep -c "^Z" || true'] });
  t.equal(z.stdout.toString().trim(), '0', 'an orphaned grandchild is reaped by the init');
  const comm = await run({ rootfs: bb, init: true, command: ['cat', '/proc/1/comm'] });
  t.equal(comm.stdout.toString().trim(), 'nsbox-init');
});

t.test('SIGTERM reaches the command through the init', { skip: noBusybox }, async (t) => {
  const c = spawn({ rootfs: bb, init: true, command: ['/probe', 'sleep', '30'] });
  setTimeout(() => c.kill('SIGTERM'), 200);
  const r = await c.wait();
  t.equal(r.signal, 'SIGTERM');
});

t.test('bind and tmpfs mounts', { skip: noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-bind-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'in.txt'), 'from host\n');
  const r = await run({
    rootfs: bb,
    mounts: [
      { type: 'bind', source: dir, target: '/data' },
      { type: 'bind', source: dir, target: '/ro', readonly: true },
      { type: 'tmpfs', target: '/scratch', size: '1M' },
    ],
    command: ['/bin/sh', '-c', 'cat /data/in.txt; echo out > /data/out.txt; /probe try-write /ro/x; dd if=/dev/zero of=/scratch/big bs=1k count=2048 2>/dev/null; echo dd=$?'],
  });
  const lines = r.stdout.toString().trim().split('\n');
  t.equal(lines[0], 'from host', 'bind mount shows host content');
  t.equal(fs.readFileSync(path.join(dir, 'out.txt'), 'utf8'), 'out\n', 'writes reach the host');
  t.match(JSON.parse(lines[1]), { ok: false, code: 'EROFS' }, 'readonly bind refuses writes');
  t.equal(lines[2], 'dd=1', 'a tmpfs with size is bounded');
});

t.test('100 MiB through stdin and out of stdout with backpressure', { skip: noBusybox }, async (t) => {
  const c = spawn({ rootfs: bb, command: ['/probe', 'cat'] });
  const total = 100 * 1024 * 1024;
  const chunk = Buffer.alloc(1024 * 1024, 0x61);
  let got = 0;
  let maxRss = 0;
  c.stdout.on('data', (d) => {
    got += d.length;
    maxRss = Math.max(maxRss, process.memoryUsage().rss);
  });
  const stdoutDone = new Promise((r) => c.stdout.on('close', r));
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!c.stdin.write(chunk)) await new Promise((r) => c.stdin.once('drain', r));
  }
  c.stdin.end();
  const r = await c.wait();
  await stdoutDone;
  t.equal(r.exitCode, 0);
  t.equal(got, total, 'every byte came back');
  t.ok(maxRss < process.memoryUsage().rss + 200 * 1024 * 1024, 'memory did not grow by the stream size');
});

t.test('run() keeps maxOutput bytes and counts the rest', { skip: noBusybox }, async (t) => {
  const r = await run({ rootfs: bb, command: ['/bin/sh', '-c', 'head -c 100000 /dev/zero'], maxOutput: 1000 });
  t.equal(r.stdout.length, 1000);
  t.equal(r.stdoutDropped, 99000);
});

t.test('run() and pool.run() return stdout and stderr whole, byte for byte, both at once', { skip: noBusybox }, async (t) => {
  const { createPool } = require('..');
  // 3 MB on stdout and 200 kB on stderr written interleaved (each pipe holds 64 KiB: neither
  // stream may be left unread while the other is drained).
  const script = 'i=0; while [ $i -lt 30 ]; do yes abcdefg | head -c 100000; yes E | head -c 6000 >&2; i=$((i+1)); done; echo -n end';
  const check = (r, what) => {
    t.equal(r.exitCode, 0, `${what}: exit 0`);
    t.equal(r.stdout.length, 3000003, `${what}: all of stdout`);
    t.equal(r.stdout.subarray(0, 16).toString(), 'abcdefg\nabcdefg\n', `${what}: stdout starts right`);
    t.equal(r.stdout.subarray(-3).toString(), 'end', `${what}: and ends right`);
    t.equal(r.stderr.length, 180000, `${what}: all of stderr`);
    t.ok(r.stderr.every((b, i) => b === (i % 2 ? 10 : 69)), `${what}: stderr is E\\n throughout`);
    t.same([r.stdoutDropped, r.stderrDropped], [0, 0], `${what}: nothing dropped`);
  };
  check(await run({ rootfs: bb, command: ['/bin/sh', '-c', script] }), 'run()');
  const pool = createPool({ size: 1, rootfs: bb });
  t.teardown(() => pool.close());
  check(await pool.run(['/bin/sh', '-c', script]), 'pool.run()');
  const capped = await pool.run(['/bin/sh', '-c', script], { maxOutput: 5000 });
  t.same([capped.stdout.length, capped.stdoutDropped, capped.stderr.length, capped.stderrDropped], [5000, 2995003, 5000, 175000], 'pool.run() maxOutput caps each stream and counts the rest');
  const silent = await run({ rootfs: bb, command: ['/bin/true'] });
  t.same([silent.stdout, silent.stderr], [Buffer.alloc(0), Buffer.alloc(0)], 'no output: two empty Buffers');
});

t.test('run() feeds input and closes stdin', { skip: noBusybox }, async (t) => {
  const r = await run({ rootfs: bb, command: ['/probe', 'cat'], input: 'hello\n' });
  t.equal(r.stdout.toString(), 'hello\n');
  const empty = await run({ rootfs: bb, command: ['/probe', 'cat'] });
  t.equal(empty.stdout.length, 0, 'no input: stdin is empty, not the host terminal');
});

t.test('run({ encoding }) gives stdout and stderr as strings; a bad encoding starts nothing', { skip: noBusybox }, async (t) => {
  const cmd = ['/bin/sh', '-c', 'printf "h\\303\\251 \\342\\202\\254\\n"; printf "err\\n" >&2'];
  const u = await run({ rootfs: bb, command: cmd, encoding: 'utf8' });
  t.equal(u.stdout, 'h\u00e9 \u20ac\n', 'utf8: a string, multibyte characters decoded');
  t.equal(u.stderr, 'err\n', 'stderr too');
  t.same([u.exitCode, u.stdoutDropped], [0, 0]);
  const h = await run({ rootfs: bb, command: cmd, encoding: 'hex' });
  t.equal(h.stdout, Buffer.from('h\u00e9 \u20ac\n').toString('hex'), 'hex');
  const b = await run({ rootfs: bb, command: cmd, encoding: 'buffer' });
  t.ok(Buffer.isBuffer(b.stdout) && Buffer.isBuffer(b.stderr), "'buffer' keeps Buffers, as leaving it out does");
  const cut = await run({ rootfs: bb, command: ['/bin/sh', '-c', 'printf 0123456789'], encoding: 'latin1', maxOutput: 4 });
  t.same([cut.stdout, cut.stdoutDropped], ['0123', 6], 'maxOutput still counts bytes');

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-enc-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const marker = { rootfs: bb, mounts: [{ type: 'bind', source: dir, target: '/out' }], command: ['/bin/sh', '-c', 'touch /out/started'] };
  await t.rejects(run({ ...marker, encoding: 'utf-9' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /"encoding"/ });
  await t.rejects(run({ ...marker, encoding: 8 }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /"encoding"/ });
  await t.rejects(run({ ...marker, encoding: null }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => spawn({ ...marker, encoding: 'utf8' }), { code: 'ERR_INVALID_ARG_VALUE', message: /belongs to run\(\)/ }, 'spawn() refuses it: its output is streams');
  t.same(fs.readdirSync(dir), [], 'none of them started the command');
  const ok = await run({ ...marker, encoding: undefined });
  t.same([ok.exitCode, fs.readdirSync(dir)], [0, ['started']], 'encoding: undefined is the default (and the marker works)');
});

t.test('AbortSignal kills the container and run() rejects with AbortError', { skip: noBusybox }, async (t) => {
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 100);
  await t.rejects(run({ rootfs: bb, command: ['/probe', 'sleep', '30'], signal: ac.signal }), { name: 'AbortError', code: 'ABORT_ERR' });
  await t.rejects(run({ rootfs: bb, command: ['/probe', 'sleep', '30'], signal: AbortSignal.abort() }), { name: 'AbortError' }, 'an already aborted signal starts nothing');
});

t.test('kill() ends the whole container; stats() reports cpu usage', { skip: noBusybox }, async (t) => {
  const c = spawn({ rootfs: bb, command: ['/probe', 'spin', '30'] });
  await new Promise((r) => setTimeout(r, 300));
  const s = await c.stats();
  t.ok(s.cpuUsageUs > 50000, `a spinning container used CPU (${s.cpuUsageUs} us)`);
  t.equal(c.kill(), true);
  const r = await c.wait();
  t.equal(r.signal, 'SIGKILL');
  t.ok(r.stats.cpuUsageUs >= s.cpuUsageUs, 'final stats are at least the live ones');
  t.equal(c.kill(), false, 'kill after exit is a no-op');
});

t.test('freeze() stops progress and thaw() resumes it', { skip: noBusybox || noCgroup() }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-freeze-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const c = spawn({ rootfs: bb, mounts: [{ type: 'bind', source: dir, target: '/out' }], command: ['/probe', 'count-forever', '/out/n'] });
  const read = () => Number(fs.readFileSync(path.join(dir, 'n'), 'utf8') || 0);
  await new Promise((r) => setTimeout(r, 200));
  await c.freeze();
  const a = read();
  await new Promise((r) => setTimeout(r, 300));
  t.equal(read(), a, 'the counter does not advance while frozen');
  await c.thaw();
  await new Promise((r) => setTimeout(r, 300));
  t.ok(read() > a, 'it advances again after thaw');
  await c.freeze();
  c.kill();
  const r = await c.wait();
  t.equal(r.signal, 'SIGKILL', 'a frozen container can be killed');
});

t.test('await using disposes the container', { skip: noBusybox }, async (t) => {
  const c = spawn({ rootfs: bb, command: ['/probe', 'sleep', '30'] });
  await c[Symbol.asyncDispose]();
  t.equal(c.exited, true);
});

t.test('stdio inherit and ignore give no streams', { skip: noBusybox }, async (t) => {
  const c = spawn({ rootfs: bb, command: ['/bin/true'], stdio: 'ignore' });
  t.equal(c.stdout, null);
  t.equal((await c.wait()).exitCode, 0);
});

t.test('nothing is left behind by this file', async (t) => {
  await assertNoLeaks(t, before, 'after all app tests');
});
