// Machines with the builtin init on a busybox rootfs: daemons under PID 1, exec, reaping, stop,
// state that outlives the Node process, ttys, and the /proc/self/exe overwrite attack.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawnSync, spawn: cpSpawn } = require('node:child_process');
const { Machine, NsboxError } = require('..');
const { busyboxRootfs, warmUp, assertNoLeaks, machineStateDir, noCgroup, manyIds, zombies } = require('./helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const stateDir = machineStateDir(t, 'nsbox-machines-');
let before;

t.before(async () => {
  before = await warmUp();
});

function hostPidsOf(cgroupPath) {
  try {
    return fs.readFileSync(path.join(cgroupPath, 'cgroup.procs'), 'utf8').trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const sha = (p) => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');

t.test('a builtin-init machine runs two daemons under PID 1 and stops cleanly', { skip: noBusybox }, async (t) => {
  const m = await Machine.start({ name: 'daemons', rootfs: bb, ephemeral: true, stateDir });
  t.equal(await m.state(), 'running');
  const info = await m.info();
  const d = await m.run(['sh', '-c', 'httpd -p 8080 -h /; syslogd; sleep 0.2']);
  t.equal(d.exitCode, 0, d.stderr.toString());
  const ps = await m.run(['ps', '-o', 'pid,ppid,comm']);
  const rows = ps.stdout.toString().trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
  const byComm = Object.fromEntries(rows.map(([pid, ppid, comm]) => [comm, { pid: Number(pid), ppid: Number(ppid) }]));
  t.equal(byComm['nsbox-init']?.pid, 1, 'the builtin init is PID 1');
  t.equal(byComm.httpd?.ppid, 1, 'httpd runs under PID 1');
  t.equal(byComm.syslogd?.ppid, 1, 'syslogd runs under PID 1');
  t.ok(rows.every(([pid]) => Number(pid) > 0), 'exec sees only the machine pid namespace');

  // An orphaned grandchild is reaped by the init: no zombie two seconds later.
  await m.run(['sh', '-c', '(sleep 0.3 &); exit 0']);
  await new Promise((r) => setTimeout(r, 2000));
  const z = await m.run(['sh', '-c', 'ps -o stat | grep -c ^Z || true']);
  t.equal(z.stdout.toString().trim(), '0', 'no zombie after 2 s');

  const pids = info.cgroup ? hostPidsOf(info.cgroup) : [];
  if (info.cgroup) {
    t.ok(pids.length >= 3, `the machine's processes are in its cgroup (${pids.length})`);
  } else {
    t.equal(noCgroup() !== false, true, 'a machine has no cgroup only where nsbox can write none');
  }
  const t0 = Date.now();
  await m.stop({ timeout: 5000 });
  t.ok(Date.now() - t0 < 5000, `stop() took ${Date.now() - t0} ms, within the grace period`);
  t.equal(await m.state(), 'stopped');
  t.same(pids.filter((p) => fs.existsSync(`/proc/${p}`) && !/\) Z /.test(fs.readFileSync(`/proc/${p}/stat`, 'utf8'))), [], 'no machine process is left');
  t.notOk(fs.existsSync(info.cgroup), 'its cgroup is gone');
  await m.destroy();
  t.same(await Machine.list({ stateDir }), [], 'destroy() removed its state');
});

t.test('stop() kills what ignores the halt signal once the timeout passes', { skip: noBusybox }, async (t) => {
  const m = await Machine.start({ name: 'stubborn', rootfs: bb, ephemeral: true, stateDir });
  const c = m.exec(['sh', '-c', 'trap "" TERM; while :; do sleep 1; done'], { stdio: 'ignore' });
  c.unref();
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  await m.stop({ timeout: 500 });
  t.ok(Date.now() - t0 < 3000, `stopped after ${Date.now() - t0} ms`);
  t.equal(await m.state(), 'stopped');
  await m.destroy();
});

t.test('exec: exit codes, env, cwd, user and stdin like run(); fails at once on a frozen or stopped machine', { skip: noBusybox }, async (t) => {
  const m = await Machine.start({ name: 'execs', rootfs: bb, ephemeral: true, stateDir, hostname: 'execs-host' });
  t.teardown(async () => {
    await m.stop({ timeout: 1000 }).catch(() => {});
    await m.destroy().catch(() => {});
  });
  // A machine that maps one id (rootless without a subordinate range) has only root to run as.
  const id = manyIds() === false ? 1000 : 0;
  const r = await m.run(['sh', '-c', 'echo $FOO $(hostname) $(pwd) $(id -u):$(id -g); cat; exit 4'], { env: { FOO: 'bar' }, cwd: '/tmp', user: { uid: id, gid: id }, input: 'in\n' });
  t.equal(r.exitCode, 4);
  t.equal(r.stdout.toString(), `bar execs-host /tmp ${id}:${id}\nin\n`);
  const sys = await m.run(['sh', '-c', 'ls -A /sys/firmware | wc -l; touch /sys/x 2>&1 || true']);
  t.match(sys.stdout.toString(), /^0\n/, '/sys/firmware is masked');
  t.match(sys.stdout.toString(), /Read-only file system/, '/sys is read-only');
  const info = await m.run(['/probe', 'info']);
  const i = JSON.parse(info.stdout.toString());
  t.ok(i.pid > 1, `the exec'd process is PID ${i.pid} > 1 in the machine`);
  t.same(i.fds, [0, 1, 2], 'it holds no host fd');
  t.equal(i.status.SigBlk, '0000000000000000');
  const e = await m.run(['no-such-cmd']).catch((x) => x);
  t.match(e, { code: 'ENOENT', step: 'exec' });
  if (noCgroup()) {
    await t.rejects(m.freeze(), { code: 'ENOTSUP' }, `no cgroup, no freeze: ${noCgroup()}`);
  } else {
    await m.freeze();
    t.equal(await m.state(), 'frozen');
    t.throws(() => m.exec(['true']), { code: 'EBUSY' }, 'exec into a frozen machine fails at once');
    await m.thaw();
    t.equal(await m.state(), 'running');
  }
  await m.stop({ timeout: 1000 });
  t.throws(() => m.exec(['true']), { code: 'ESRCH' }, 'exec into a stopped machine fails at once');
});

t.test('exec of a missing command, many times: every failed process is reaped and the machine still stops', { skip: noBusybox }, async (t) => {
  // The entering helper and the process it makes report over one pipe; a process that fails at
  // once can report before the helper does. Each must still be reaped, or the machine's PID 1
  // waits forever for its pid namespace to empty when it stops.
  const m = await Machine.start({ name: 'missing', rootfs: bb, ephemeral: true, stateDir });
  let enoent = 0;
  for (let i = 0; i < 150; i++) {
    const e = await m.run(['no-such-cmd']).catch((x) => x);
    if (e && e.code === 'ENOENT' && e.step === 'exec') enoent++;
  }
  t.equal(enoent, 150, 'each exec failed with ENOENT at step exec');
  t.equal(zombies(), 0, 'no unreaped process of ours');
  const { killed } = await m.stop({ timeout: 5000 });
  t.equal(killed, false, 'PID 1 finished exiting within the grace period');
  await m.destroy();
});

t.test('an exec killed by its own timeout or AbortSignal before its execve ends as a timeout or an abort, not as a failed start', { skip: noBusybox }, async (t) => {
  // Found by the soak (issue #17): the kill lands while the process entering the machine has not
  // exec'd yet; its start then reported exec.died (ESRCH), so m.run() with a signal rejected with
  // that instead of AbortError, and a timeout rejected instead of resolving with timedOut. Aborted
  // synchronously right after exec() (or with a 1 ms timeout), most of 20 tries land before the
  // execve on any host; the outcome must be the same for the ones that land after it.
  const m = await Machine.start({ name: 'killed-early', rootfs: bb, ephemeral: true, stateDir });
  const seen = { abortRun: {}, abortWait: {}, timeout: {} };
  const tally = (o, k) => (o[k] = (o[k] ?? 0) + 1);
  for (let i = 0; i < 20; i++) {
    const ac = new AbortController();
    const p = m.run(['sleep', '100'], { signal: ac.signal });
    ac.abort();
    await p.then((r) => tally(seen.abortRun, `resolved ${r.signal}`), (e) => tally(seen.abortRun, `${e.name} ${e.code}`));
    const ac2 = new AbortController();
    const c = m.exec(['sleep', '100'], { signal: ac2.signal });
    ac2.abort();
    await c.wait().then((r) => tally(seen.abortWait, `${r.signal} timedOut=${r.timedOut}`), (e) => tally(seen.abortWait, `${e.name} ${e.code} ${e.step}`));
    await m.run(['sleep', '100'], { timeout: 1 }).then((r) => tally(seen.timeout, `${r.signal} timedOut=${r.timedOut}`), (e) => tally(seen.timeout, `${e.name} ${e.code} ${e.step}`));
  }
  t.same(seen.abortRun, { 'AbortError ABORT_ERR': 20 }, 'Machine.run() with an aborted signal rejects with AbortError every time');
  t.same(seen.abortWait, { 'SIGKILL timedOut=false': 20 }, "exec().wait() of an aborted exec resolves with SIGKILL, as an app container's does");
  t.same(seen.timeout, { 'SIGKILL timedOut=true': 20 }, 'Machine.run() with a timeout resolves with timedOut every time');
  const ps = await m.run(['ps', '-o', 'comm']);
  t.notMatch(ps.stdout.toString(), /sleep/, 'no sleep left in the machine');
  await m.stop({ timeout: 5000 });
  await m.destroy();
});

t.test('names are validated and unique', { skip: noBusybox }, async (t) => {
  for (const bad of ['', '..', 'a/b', 'A', '-x', 'x'.repeat(64), '../etc']) {
    await t.rejects(Machine.start({ name: bad, rootfs: bb, stateDir }), { code: /ERR_INVALID_ARG/ }, `name ${JSON.stringify(bad)}`);
  }
  await t.rejects(Machine.start({ name: 'ok', rootfs: bb, stateDir, initt: 'builtin' }), { code: 'ERR_INVALID_ARG_VALUE', message: /did you mean "init"/ });
  for (const [what, extra, code] of [
    ['a relative rootfs', { rootfs: 'rel' }, 'ERR_INVALID_ARG_VALUE'],
    ['init as a string path', { init: '/sbin/init' }, 'ERR_INVALID_ARG_VALUE'],
    ['a relative init', { init: ['sbin/init'] }, 'ERR_INVALID_ARG_VALUE'],
    ['ephemeral as a string', { ephemeral: 'yes' }, 'ERR_INVALID_ARG_TYPE'],
    ['an unknown network', { network: 'bridge0' }, 'ERR_INVALID_ARG_VALUE'],
    ['a bad halt signal', { haltSignal: 'SIGNOPE' }, 'ERR_INVALID_ARG_VALUE'],
    ['a negative readyTimeout', { readyTimeout: -1 }, 'ERR_OUT_OF_RANGE'],
    ['waitReady as a number', { waitReady: 1 }, 'ERR_INVALID_ARG_TYPE'],
    ['an unknown syscall in seccomp.allow', { seccomp: { allow: ['nosuchcall'] } }, 'ERR_INVALID_ARG_VALUE'],
    ['an unknown capability', { capabilities: { add: ['NOPE'] } }, 'ERR_INVALID_ARG_VALUE'],
  ]) {
    await t.rejects(Machine.start({ name: 'bad', rootfs: bb, stateDir, ...extra }), { code }, what);
  }
  t.notOk(fs.existsSync(path.join(stateDir, 'bad')), 'no state was created for rejected options');
  const m = await Machine.start({ name: 'twice', rootfs: bb, ephemeral: true, stateDir });
  const e = await Machine.start({ name: 'twice', rootfs: bb, ephemeral: true, stateDir }).catch((x) => x);
  t.type(e, NsboxError);
  t.equal(e.code, 'EEXIST');
  await m.stop({ timeout: 1000 });
  await m.destroy();
});

t.test('a machine outlives the Node process that started it, even a SIGKILLed one', { skip: noBusybox }, async (t) => {
  const script = `
    const { Machine } = require(${JSON.stringify(path.join(__dirname, '..'))});
    Machine.start({ name: 'orphan', rootfs: ${JSON.stringify(bb)}, ephemeral: true, stateDir: ${JSON.stringify(stateDir)} })
      .then((m) => { process.stdout.write(String(m.pid) + '\\n'); setInterval(() => {}, 1000); });`;
  const child = cpSpawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = Number(await new Promise((resolve) => child.stdout.once('data', resolve)));
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  const m = await Machine.get('orphan', { stateDir });
  t.ok(m, 'found from another process');
  t.equal(m.pid, pid);
  t.equal(await m.state(), 'running', 'still running after its starter was SIGKILLed');
  const r = await m.run(['cat', '/proc/1/comm']);
  t.equal(r.stdout.toString().trim(), 'nsbox-init', 'exec works from the new process');
  t.match(await Machine.list({ stateDir }), [{ name: 'orphan', state: 'running', pid }]);
  await m.stop({ timeout: 2000 });
  t.equal(await m.state(), 'stopped');
  t.equal((await Machine.get('orphan', { stateDir })).pid, pid, 'a stopped machine is still listed until destroy()');
  t.equal(await (await Machine.get('orphan', { stateDir })).state(), 'stopped');
  await m.destroy();
  t.equal(await Machine.get('orphan', { stateDir }), undefined);
});

t.test('a machine outlives a starter that exits normally', { skip: noBusybox }, async (t) => {
  const script = `
    const { Machine } = require(${JSON.stringify(path.join(__dirname, '..'))});
    Machine.start({ name: 'leftalone', rootfs: ${JSON.stringify(bb)}, ephemeral: true, stateDir: ${JSON.stringify(stateDir)} })
      .then((m) => process.stdout.write(String(m.pid)));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 });
  t.equal(r.status, 0, 'the starting process exited on its own (nothing kept its loop alive)');
  const m = await Machine.get('leftalone', { stateDir });
  t.equal(m.pid, Number(r.stdout));
  t.equal(await m.state(), 'running');
  t.equal((await m.run(['echo', 'still here'])).stdout.toString(), 'still here\n');
  const { killed } = await m.stop({ timeout: 2000 });
  t.equal(killed, false, 'the builtin init halted on SIGTERM by itself');
  await m.destroy();
});

t.test('a stale state entry (PID 1 gone without stop) is detected', { skip: noBusybox }, async (t) => {
  const m = await Machine.start({ name: 'stale', rootfs: bb, ephemeral: true, stateDir });
  // Kill PID 1 behind nsbox's back, as a host OOM kill or an admin would.
  process.kill(m.pid, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 200));
  const again = await Machine.get('stale', { stateDir });
  t.equal(await again.state(), 'stopped');
  await again.destroy();
  const fresh = await Machine.start({ name: 'stale', rootfs: bb, ephemeral: true, stateDir });
  t.equal(await fresh.state(), 'running', 'the name can be used again');
  await fresh.stop({ timeout: 1000 });
  await fresh.destroy();
});

t.test('exec with tty: an interactive shell on a pty from the machine, with resize and exit code', { skip: noBusybox }, async (t) => {
  const m = await Machine.start({ name: 'tty', rootfs: bb, ephemeral: true, stateDir });
  t.teardown(async () => {
    await m.stop({ timeout: 1000 }).catch(() => {});
    await m.destroy().catch(() => {});
  });
  t.throws(() => m.exec(['sh'], { tty: true, columns: 0 }), { code: 'ERR_OUT_OF_RANGE' }, 'columns must be 1..65535');
  t.throws(() => m.exec(['sh'], { tty: true, rows: '40' }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => m.exec(['sh'], { tty: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => m.exec(['sh'], { colums: 80 }), { code: 'ERR_INVALID_ARG_VALUE', message: /did you mean "columns"/ });
  // startTimeout: checked before anything starts, like timeout.
  t.throws(() => m.exec(['true'], { startTimeout: 0 }), { code: 'ERR_OUT_OF_RANGE' }, 'startTimeout must be > 0');
  t.throws(() => m.exec(['true'], { startTimeout: -5 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => m.exec(['true'], { startTimeout: Infinity }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => m.exec(['true'], { startTimeout: '10' }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => m.exec(['true'], { startTimout: 10 }), { code: 'ERR_INVALID_ARG_VALUE', message: /did you mean "startTimeout"/ });
  const ps = await m.run(['ps', '-o', 'comm']);
  t.notMatch(ps.stdout.toString(), /nsbox-starting/, 'the refused execs left no process in the machine');
  const sized = await m.run(['stty', 'size'], { tty: true, columns: 132, rows: 50 });
  t.match(sized.stdout.toString(), /^50 132\r?\n/, 'the size given to exec holds from the first instruction');
  const c = m.exec(['sh'], { tty: true });
  let out = '';
  c.stdout.on('data', (d) => (out += d.toString()));
  const waitFor = async (re) => {
    for (let i = 0; i < 100 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 20));
    return re.test(out);
  };
  c.stdin.write('tty; echo h""i\n');
  t.ok(await waitFor(/\/dev\/pts\/\d+\r?\n/), 'stdin is a tty of the machine devpts');
  t.ok(await waitFor(/^hi\r?$/m), 'typed command ran');
  c.resize(100, 40);
  c.stdin.write('stty size\n');
  t.ok(await waitFor(/^40 100\r?$/m), 'resize reached the pty');
  c.stdin.write('exit 3\n');
  const r = await c.wait();
  t.equal(r.exitCode, 3);
});

t.test('the /proc/self/exe overwrite attack cannot modify a host binary', { skip: noBusybox }, async (t) => {
  // runc's CVE-2019-5736: a binary in the image that is "#!/proc/self/exe" makes the runtime's own
  // binary (here: a copy of Node) the interpreter, which the container then reopens for writing.
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-exe-'));
  t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));
  // If Node were the interpreter it would run this file as JavaScript and stay up for 2 s.
  fs.writeFileSync(path.join(scratch, 'evil'), '#!/proc/self/exe\nsetTimeout(() => {}, 2000);\n');
  fs.chmodSync(path.join(scratch, 'evil'), 0o755);
  const node = process.execPath;
  const init = path.join(__dirname, '..', 'build', 'Release', 'nsbox-init');
  const hashes = () => ({ node: sha(node), init: sha(init) });
  const before = hashes();
  const mounts = [{ type: 'bind', source: scratch, target: '/x', readonly: true }];
  const m = await Machine.start({ name: 'exe', rootfs: bb, ephemeral: true, stateDir, mounts });
  t.teardown(async () => {
    await m.stop({ timeout: 1000 }).catch(() => {});
    await m.destroy().catch(() => {});
  });
  const direct = await m.run(['/x/evil']);
  t.equal(direct.exitCode, 125, 'exec of the script ran the sealed nsbox-init (usage error), not Node');
  t.match(direct.stderr.toString(), /nsbox-init: usage/);
  // The machine's PID 1 is that sealed memfd: writing through /proc/1/exe must fail.
  const w = await m.run(['sh', '-c', 'readlink /proc/1/exe; echo pwned >> /proc/1/exe && echo WROTE']);
  t.match(w.stdout.toString(), /^\/memfd:nsbox-init/, "PID 1's exe is the memfd");
  t.notMatch(w.stdout.toString(), /WROTE/, 'writing through /proc/1/exe fails');
  const { run } = require('..');
  const app = await run({ rootfs: bb, mounts, command: ['/x/evil'] });
  t.equal(app.exitCode, 125, 'app container: the same script runs the sealed init, not Node');
  const appInit = await run({ rootfs: bb, mounts, init: true, command: ['sh', '-c', 'echo pwned >> /proc/1/exe && echo WROTE'] });
  t.notMatch(appInit.stdout.toString(), /WROTE/, 'app container with init: /proc/1/exe is not writable');
  t.same(hashes(), before, 'Node and the init on the host are unchanged');
});

t.test('Symbol.asyncDispose stops (halt, then kill after the timeout) and destroys the machine', { skip: noBusybox }, async (t) => {
  t.type(Machine.prototype[Symbol.asyncDispose], 'function');
  const m = await Machine.start({ name: 'disposed', rootfs: bb, ephemeral: true, stateDir });
  const cgroup = (await m.info()).cgroup;
  let killed;
  const stop = m.stop.bind(m);
  m.stop = async (o) => { const r = await stop(o); killed = r.killed; return r; };
  await m[Symbol.asyncDispose]();
  t.equal(killed, false, 'the builtin init halted by itself (not killed after the timeout)');
  t.equal(await m.state(), 'stopped');
  if (cgroup) t.notOk(fs.existsSync(cgroup), 'its cgroup is gone');
  t.notOk(fs.existsSync(path.join(stateDir, 'disposed')), 'its state directory is gone');
  t.equal(await Machine.get('disposed', { stateDir }), undefined, 'Machine.get no longer finds it');
  await m[Symbol.asyncDispose]();
  t.pass('disposing of it twice is harmless');
  // One stopped already is only destroyed.
  const s = await Machine.start({ name: 'disposed-stopped', rootfs: bb, ephemeral: true, stateDir });
  await s.stop({ timeout: 2000 });
  await s[Symbol.asyncDispose]();
  t.same(await Machine.list({ stateDir }), [], 'a stopped machine disposed of is destroyed');
});

// nsbox-init is exec'd with every signal blocked: as a PID 1 with default dispositions it would drop
// a signal that came before it blocked them itself. Before that fix this lost 1 halt in 30 and 3
// forwarded SIGTERMs in 30 (/tmp/halt-race.js on the 2-core host); each round here can catch it.
t.test('a halt or forwarded signal sent the moment a container starts is not lost by its init', { skip: noBusybox }, async (t) => {
  const { spawn } = require('..');
  let machineKilled = 0;
  let appMissed = 0;
  for (let i = 0; i < 20; i++) {
    const m = await Machine.start({ name: `early-halt-${i}`, rootfs: bb, ephemeral: true, stateDir });
    if ((await m.stop({ timeout: 10000 })).killed) machineKilled++;
    await m.destroy();
    const c = await spawn({ rootfs: bb, init: true, command: ['sleep', '30'] });
    c.kill('SIGTERM');
    const info = await c.wait();
    if (info.signal !== 'SIGTERM') appMissed++;
  }
  t.equal(machineKilled, 0, 'every machine halted on its halt signal sent right after start()');
  t.equal(appMissed, 0, 'every app container with init: true passed the SIGTERM sent right after spawn() to its command');
});

t.test('machine.run({ encoding }) gives strings like run(); exec() refuses it (streams)', { skip: noBusybox }, async (t) => {
  const m = await Machine.start({ name: 'encoded', rootfs: bb, ephemeral: true, stateDir });
  t.teardown(() => m[Symbol.asyncDispose]());
  const r = await m.run(['sh', '-c', 'printf "\\303\\274"; printf x >&2'], { encoding: 'utf8' });
  t.same([r.stdout, r.stderr, r.exitCode], ['\u00fc', 'x', 0]);
  t.equal((await m.run(['sh', '-c', 'printf AB'], { encoding: 'base64' })).stdout, 'QUI=', 'base64');
  t.ok(Buffer.isBuffer((await m.run(['true'])).stdout), 'Buffers by default');
  await t.rejects(m.run(['true'], { encoding: 'utf-9' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /"encoding"/ });
  t.throws(() => m.exec(['true'], { encoding: 'utf8' }), { code: 'ERR_INVALID_ARG_VALUE', message: /"encoding"/ });
});

t.test('nothing is left behind by the machine tests', async (t) => {
  await assertNoLeaks(t, before, 'after the machine tests');
});
