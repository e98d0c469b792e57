// App containers with `tty: true`: a pty of the container's own devpts, seen from the inside with
// the static probe (`probe tty`) and busybox's sh, and `nsbox run -t` / `-it` driven through a real
// pty on the outside (util-linux script(1)). Root and rootless alike (test/rootless/run.sh).
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn: spawnProcess, execFileSync } = require('node:child_process');
const { run, spawn, createPool, Machine } = require('..');
const { busyboxRootfs, warmUp, assertNoLeaks, machineStateDir, isRoot } = require('./helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const CLI = path.join(__dirname, '..', 'bin', 'nsbox.js');
const script = ['/usr/bin/script', '/bin/script'].find((p) => fs.existsSync(p));
const noScript = !script && "util-linux's script(1) is not installed (it gives nsbox a real terminal)";

/** The probe's `tty` report: the one JSON line of the terminal's output (after anything typed before). */
function report(out) {
  const line = out.toString().split(/\r?\n/).find((l) => l.includes('{"isatty"'));
  return JSON.parse(line.slice(line.indexOf('{')));
}

/** Collects a stream's text; `until(re)` resolves once it matches (the test's own timeout bounds it). */
function reader(stream) {
  let out = '';
  const waiters = [];
  stream.on('data', (d) => {
    out += d.toString();
    for (const w of waiters.slice()) {
      if (w.re.test(out)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(out);
      }
    }
  });
  return {
    get text() {
      return out;
    },
    until: (re) => (re.test(out) ? Promise.resolve(out) : new Promise((resolve) => waiters.push({ re, resolve }))),
  };
}

let before;
t.before(async () => {
  before = await warmUp();
});

t.test("tty: stdin, stdout and stderr are one pty of the container's own devpts, its controlling terminal", { skip: noBusybox }, async (t) => {
  const r = await run({ rootfs: bb, command: ['/probe', 'tty'], tty: true, columns: 100, rows: 30 });
  t.equal(r.exitCode, 0);
  t.equal(r.stderr.length, 0, 'stderr is on the terminal too: nothing apart');
  const i = report(r.stdout);
  t.same(i.isatty, [1, 1, 1], 'isatty on 0, 1 and 2');
  t.ok(i.sameTty, '0, 1 and 2 are the same terminal');
  t.equal(i.ttyMajor, 136, 'a pty slave (major 136)');
  t.match(i.fd0, /^\/dev\/pts\/\d+$/, '/proc/self/fd/0 names a pty of /dev/pts');
  t.ok(i.devpts, '/dev/pts is a devpts');
  t.ok(i.ttyOnDevpts, "the pty is on the container's /dev/pts (same st_dev)");
  t.same(i.pts, ['0', 'ptmx'], 'that devpts holds its own pty only: a new instance, not the host\'s');
  t.ok(i.cttySame, 'it is the controlling terminal (tty_nr of /proc/self/stat)');
  t.equal(i.cttyErrno, 0, '/dev/tty opens');
  t.equal(i.sid, 1, 'the command leads its session');
  t.equal(i.ttySid, 1, "the terminal's session is the command's");
  t.equal(i.fgPgrp, i.pgrp, 'the command is the foreground process group');
  t.same([i.cols, i.rows], [100, 30], 'the size given holds from the first instruction');
  t.equal(i.tiocsti, os.constants.errno.EPERM, 'TIOCSTI is refused (the seccomp filter)');
  t.equal(r.stdout.toString().split('\n')[0].endsWith('\r'), true, 'output is cooked by the terminal (\\r\\n)');
});

t.test('tty with init: true: the command (PID 2) has the terminal in the foreground', { skip: noBusybox }, async (t) => {
  const r = await run({ rootfs: bb, command: ['/probe', 'tty'], tty: true, init: true });
  t.equal(r.exitCode, 0);
  const i = report(r.stdout);
  t.equal(i.pid, 2, 'the command runs under the init');
  t.equal(i.fgPgrp, i.pgrp, "the command's process group is the terminal's foreground");
  t.same(i.isatty, [1, 1, 1]);
  t.same([i.cols, i.rows], [80, 24], 'the default size is 80x24');
});

t.test("the slave seen from the host is not on the host's /dev/pts; two containers have a devpts each", { skip: noBusybox }, async (t) => {
  const a = spawn({ rootfs: bb, command: ['/probe', 'cat'], tty: true });
  const b = spawn({ rootfs: bb, command: ['/probe', 'cat'], tty: true });
  const host = fs.statSync('/dev/pts', { throwIfNoEntry: false });
  for (const c of [a, b]) {
    const st = fs.statSync(`/proc/${c.pid}/fd/0`);
    t.equal(fs.readlinkSync(`/proc/${c.pid}/fd/0`), '/dev/pts/0', 'each container has its pty 0');
    if (host) t.not(st.dev, host.dev, "not a pty of the host's devpts");
  }
  t.not(fs.statSync(`/proc/${a.pid}/fd/0`).dev, fs.statSync(`/proc/${b.pid}/fd/0`).dev, 'two devpts instances');
  t.equal(a.stderr, null, 'stderr: null (it is on the terminal)');
  t.equal(a.stdin, a.stdout, 'stdin and stdout are the one master stream');
  const ra = reader(a.stdout);
  a.stdin.write('ping\n');
  await ra.until(/ping\r\n[\s\S]*ping/);
  t.pass('what is typed reaches the command and its echo and output come back');
  a.kill();
  b.kill();
  t.equal((await a.wait()).signal, 'SIGKILL');
  t.equal((await b.wait()).signal, 'SIGKILL');
});

t.test('an interactive shell: typed commands, the size follows resize(), the exit code comes back', { skip: noBusybox }, async (t) => {
  const c = spawn({ rootfs: bb, command: ['sh'], tty: true, columns: 90, rows: 20 });
  const r = reader(c.stdout);
  c.stdin.write('tty; echo h""i\n');
  await r.until(/^hi\r$/m);
  t.match(r.text, /^\/dev\/pts\/0\r$/m, 'tty(1) names the pty');
  c.stdin.write('stty size\n');
  await r.until(/^20 90\r$/m);
  c.resize(132, 50);
  c.stdin.write('stty size\n');
  await r.until(/^50 132\r$/m);
  t.pass('the new size is what the program sees (TIOCGWINSZ)');
  c.stdin.write('exit 3\n');
  const info = await c.wait();
  t.equal(info.exitCode, 3, 'the exit code comes back');
  t.throws(() => c.resize(0, 1), { code: 'ERR_INVALID_ARG_VALUE' });
  t.doesNotThrow(() => c.resize(80, 24), 'resize after the exit is a no-op');
});

t.test('resize() sends SIGWINCH to the foreground program', { skip: noBusybox }, async (t) => {
  // A non-interactive sh runs its trap once the sleep in the foreground returns. (An interactive
  // ash takes SIGWINCH into its line editor, which redraws the line and runs no trap.)
  const prog = 'trap \'echo WIN$(stty size | tr " " x); exit 0\' WINCH; echo ready; while :; do sleep 1; done';
  const c = spawn({ rootfs: bb, command: ['sh', '-c', prog], tty: true });
  const r = reader(c.stdout);
  await r.until(/ready\r\n/);
  c.resize(70, 10);
  await r.until(/WIN10x70/);
  t.pass('the trap saw the new size');
  t.equal((await c.wait()).exitCode, 0);
});

t.test('a background process holding the slave does not keep the output or the wait open', { skip: noBusybox }, async (t) => {
  const r = await run({ rootfs: bb, command: ['sh', '-c', 'sleep 100 & echo bg; exit 4'], tty: true, encoding: 'utf8' });
  t.equal(r.exitCode, 4);
  t.match(r.stdout, /bg\r\n/);
  const c = spawn({ rootfs: bb, command: ['sh', '-c', 'sleep 100 & exec /probe exit 5'], tty: true });
  const closed = new Promise((resolve) => c.stdout.once('close', resolve));
  t.equal((await c.wait()).exitCode, 5);
  await closed;
  t.pass('the master stream closed: the pid namespace took the holder with it');
});

t.test('run() with tty: input is typed (no end-of-file), output is the terminal\'s', { skip: noBusybox }, async (t) => {
  const r = await run({ rootfs: bb, command: ['sh', '-c', 'read x; echo got:$x'], tty: true, input: 'abc\n', encoding: 'utf8' });
  t.equal(r.exitCode, 0);
  t.match(r.stdout, /abc\r\ngot:abc\r\n/, 'the echo of what was typed, then the output');
  t.equal(r.stderr, '');
  const cat = await run({ rootfs: bb, command: ['/probe', 'cat'], tty: true, input: 'one\n\x04' });
  t.equal(cat.exitCode, 0, '^D is the end of the input');
  const dropped = await run({ rootfs: bb, command: ['sh', '-c', 'echo 0123456789'], tty: true, maxOutput: 4 });
  t.equal(dropped.stdout.toString(), '0123');
  t.equal(dropped.stdoutDropped, 8, 'maxOutput counts what the terminal wrote beyond it');
});

t.test('TIOCSTI without the filter reaches only the container\'s own terminal', { skip: noBusybox }, async (t) => {
  // seccomp: 'none' lifts the filter's TIOCSTI rule: the byte is pushed into the input of the
  // container's pty (and shows in its own output), never into a terminal of the host's.
  const r = await run({ rootfs: bb, command: ['/probe', 'tty'], tty: true, seccomp: 'none' });
  const i = report(r.stdout);
  if (i.tiocsti === 0) t.match(r.stdout.toString(), /^x\{/, 'the pushed byte is echoed by its own pty');
  else t.equal(i.tiocsti, os.constants.errno.EIO, 'refused by the kernel (dev.tty.legacy_tiocsti = 0)');
});

t.test("an image whose /dev is a link: the pty is still of the devpts nsbox mounted, inside the root", { skip: noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-tty-devlink-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  execFileSync('cp', ['-RP', '--preserve=mode', bb + '/.', dir]); // (no ownership: a rootless caller cannot keep it)
  fs.rmSync(path.join(dir, 'dev'), { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, 'elsewhere'));
  fs.symlinkSync('/elsewhere', path.join(dir, 'dev'));
  for (const userns of isRoot() ? [false, true] : [true]) {
    const r = await run({ rootfs: dir, command: ['/probe', 'tty'], tty: true, userns });
    const i = report(r.stdout);
    t.equal(i.fd0, '/elsewhere/pts/0', `userns ${userns}: the link is followed inside the root`);
    t.ok(i.ttyOnDevpts && i.cttySame, `userns ${userns}: its controlling terminal, on that devpts`);
    t.same(i.pts, ['0', 'ptmx'], `userns ${userns}: a new instance`);
  }
  // A magic link (/dev -> /proc/self/root) fails the start at /dev's mount, before any pty.
  fs.unlinkSync(path.join(dir, 'dev'));
  fs.symlinkSync('/proc/self/root', path.join(dir, 'dev'));
  await t.rejects(run({ rootfs: dir, command: ['/probe', 'tty'], tty: true }), { name: 'NsboxError', step: 'mount.dev' });
});

t.test("the host's /dev/pts bound over the container's: the start fails at exec.pty, never a host pty", { skip: noBusybox || (!fs.existsSync('/dev/pts/ptmx') && 'the host has no /dev/pts') }, async (t) => {
  // Binds are nodev (the open is EACCES); were it opened, Node would refuse a master of the host's
  // devpts (EPROTO, lib/stdio.ts receivePty).
  const e = await run({ rootfs: bb, command: ['/probe', 'tty'], tty: true, mounts: [{ type: 'bind', source: '/dev/pts', target: '/dev/pts' }] }).catch((x) => x);
  t.match(e, { name: 'NsboxError', step: 'exec.pty' });
  t.ok(['EACCES', 'EPROTO'].includes(e.code), `${e.code} at ${e.syscall} ${e.path ?? ''}`);
});

t.test('tty runs at once (the second one clones off the JS thread where it may)', { skip: noBusybox }, async (t) => {
  const rs = await Promise.all([1, 2, 3].map((n) => run({ rootfs: bb, command: ['/probe', 'exit', String(n)], tty: true })));
  t.same(rs.map((r) => r.exitCode), [1, 2, 3]);
});

t.test('options: tty is checked before anything starts', async (t) => {
  t.throws(() => spawn({ command: ['true'], tty: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => spawn({ command: ['true'], tty: true, stdio: 'inherit' }), { code: 'ERR_INCOMPATIBLE_OPTION_PAIR', name: 'TypeError' });
  t.throws(() => spawn({ command: ['true'], tty: true, stdio: 'ignore' }), { code: 'ERR_INCOMPATIBLE_OPTION_PAIR' });
  t.throws(() => spawn({ command: ['true'], columns: 80 }), { code: 'ERR_INVALID_ARG_VALUE', message: /tty: true/ });
  t.throws(() => spawn({ command: ['true'], tty: true, rows: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => spawn({ command: ['true'], tty: true, columns: 65536 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => spawn({ command: ['true'], tty: true, columns: '80' }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => createPool({ size: 1, tty: true }), { code: 'ERR_INVALID_ARG_VALUE', message: /pools/ });
  const c = spawn({ command: ['/bin/true'] });
  t.throws(() => c.resize(80, 24), { code: 'ENOTTY', step: 'resize' }, 'resize() without a tty');
  await c.wait();
});

t.test("a machine that replaced its /dev/ptmx and /dev/pts: exec's pty comes from /dev/pts or not at all", { skip: noBusybox || (!isRoot() && 'machines with CAP_SYS_ADMIN inside need root') }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-tty-machine-');
  const m = await Machine.start({ name: 'tty-attack', rootfs: bb, ephemeral: true, stateDir });
  t.teardown(async () => {
    await m.stop({ timeout: 1000 }).catch(() => {});
    await m.destroy().catch(() => {});
  });
  // /dev/ptmx swapped for /dev/null: not looked at any more.
  t.equal((await m.run(['sh', '-c', 'rm -f /dev/ptmx && ln -s null /dev/ptmx'])).exitCode, 0);
  const ok = await m.run(['/probe', 'tty'], { tty: true });
  const i = report(ok.stdout);
  t.ok(i.ttyOnDevpts && i.devpts && i.isatty[0] === 1, "a pty of the machine's /dev/pts despite /dev/ptmx");
  // /dev/pts made a tmpfs with a 'ptmx' of its own (a 5:2 node would reach the initial devpts
  // from there on old kernels): refused before anything is opened in it.
  const swap = await m.run(['sh', '-c', 'umount -l /dev/pts && mount -t tmpfs t /dev/pts && mknod /dev/pts/ptmx c 5 2']);
  t.equal(swap.exitCode, 0, swap.stderr.toString());
  const c = m.exec(['/probe', 'tty'], { tty: true });
  await t.rejects(c.wait(), { name: 'NsboxError', code: 'ENODEV', step: 'exec.pty', syscall: 'fstatfs', path: '/dev/pts' });
  // A link to elsewhere inside stays inside: /dev/pts -> /tmp/pts, a devpts of the machine's own.
  const link = await m.run(['sh', '-c', 'umount -l /dev/pts; rmdir /dev/pts; mkdir -p /tmp/pts && mount -t devpts -o newinstance,ptmxmode=0666 d /tmp/pts && ln -s /tmp/pts /dev/pts']);
  t.equal(link.exitCode, 0, link.stderr.toString());
  const viaLink = report((await m.run(['/probe', 'tty'], { tty: true })).stdout);
  t.ok(viaLink.isatty[0] === 1 && viaLink.devpts, 'the pty of the devpts the link leads to, inside the machine');
  const host = fs.statSync('/dev/pts', { throwIfNoEntry: false });
  if (host) t.not(host.dev, fs.statSync(`/proc/${m.pid}/root/tmp/pts`).dev, "that devpts is not the host's");
});

t.test('nsbox run -t / -it through a real terminal', { skip: noBusybox || noScript }, async (t) => {
  // -t without a terminal on stdin: a pty inside all the same, no input passed (as docker).
  const plain = execFileSync(process.execPath, [CLI, 'run', '-t', '--rootfs', bb, '--', 'sh', '-c', 'tty; stty size; exit 0'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  t.match(plain, /^\/dev\/pts\/0\r\n24 80\r\n$/, '-t alone: a pty of 80x24, its output on stdout');
  // -it without one: refused before anything starts, as docker.
  const refused = await new Promise((resolve) => {
    const p = spawnProcess(process.execPath, [CLI, 'run', '-it', '--rootfs', bb, '--', 'sh'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => resolve({ code, err }));
  });
  t.equal(refused.code, 125);
  t.match(refused.err, /the input device is not a TTY/);

  // -it inside script(1): nsbox's stdin is a terminal. A FIFO tells the outer shell when to resize
  // its terminal (stty on it sends SIGWINCH to nsbox, in the foreground process group).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-tty-cli-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, 'resize');
  execFileSync('mkfifo', [fifo]);
  const inner = `stty cols 91 rows 33; exec 3<&0; ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} run -it --rootfs ${JSON.stringify(bb)} -- sh <&3 & ` +
    `read go < ${JSON.stringify(fifo)}; stty cols 101 rows 44; wait $!; echo "nsbox-exit:$?"`;
  const p = spawnProcess(script, ['-qfec', inner, '/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const r = reader(p.stdout);
  const exited = new Promise((resolve) => p.on('close', resolve));
  await r.until(/# /);
  p.stdin.write('tty; echo h""i\n');
  await r.until(/^hi\r+$/m);
  t.match(r.text, /^\/dev\/pts\/0\r+$/m, "the command's terminal is a pty of the container");
  p.stdin.write('stty size\n');
  await r.until(/^33 91\r+$/m);
  t.pass("the caller's terminal size is the command's");
  fs.writeFileSync(fifo, 'go\n');
  // The size changes once the outer terminal has been resized (SIGWINCH to nsbox): ask until then.
  for (let n = 0; !/^44 101\r+$/m.test(r.text); n++) {
    p.stdin.write(`echo ask${n}; stty size\n`);
    await r.until(new RegExp(`^ask${n}\\r+\\n.*\\r+$`, 'm'));
  }
  t.pass('a resize of the caller\'s terminal reaches the command');
  p.stdin.write('exit 6\n');
  await r.until(/nsbox-exit:\d+/);
  t.match(r.text, /nsbox-exit:6/, "the command's exit code is nsbox's");
  p.stdin.end();
  await exited;
});

t.test('nothing left behind', async (t) => {
  await assertNoLeaks(t, before);
});
