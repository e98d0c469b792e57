// The host escapes of the 5522d3d review (issue #16) and their siblings, each named by the attack:
// what a container's root, or an image it wrote on an earlier run, tries; what the host must still
// look like afterwards. Every test here failed on 5522d3d.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn: cpSpawn, spawnSync } = require('node:child_process');
const { run, spawn, Machine, NsboxError } = require('../..');
const { busyboxRootfs, warmUp, assertNoLeaks, machineStateDir, isRoot, noCgroup } = require('../helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const stateDir = machineStateDir(t, 'nsbox-escapes-');
const root = isRoot();
let before;

t.before(async () => {
  before = await warmUp();
});

/** A private, writable copy of the busybox rootfs and a root-only host file the image must not reach. */
function hostile(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-escape-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = path.join(dir, 'rootfs');
  fs.cpSync(bb, rootfs, { recursive: true, verbatimSymlinks: true });
  const secret = path.join(dir, 'secret');
  fs.writeFileSync(secret, 'host secret\n', { mode: 0o600 });
  return { dir, rootfs, secret };
}

// From any directory of the host, enough ".." reach "/": then the secret's absolute path.
const climb = (secret) => `${'../'.repeat(24)}${secret.slice(1)}`;

t.test('finding 1: a cwd planted as /proc/self/fd/N does not reach a host directory held by Node', { skip: noBusybox }, async (t) => {
  const { rootfs, secret } = hostile(t);
  const hits = [];
  const refused = new Set();
  // Every fd number Node could have open at the clone (its cgroup directory fd among them).
  for (let n = 3; n < 64; n++) {
    fs.rmSync(path.join(rootfs, 'app'), { force: true });
    fs.symlinkSync(`/proc/self/fd/${n}`, path.join(rootfs, 'app'));
    const r = await run({ rootfs, readonly: false, cwd: '/app', command: ['/bin/sh', '-c', `cat ${climb(secret)}; echo pwned >> ${climb(secret)}`] }).catch((e) => e);
    if (r instanceof NsboxError) {
      refused.add(`${r.step}/${r.syscall}`);
      t.match(r.code, /^(ELOOP|ENOENT)$/, `fd ${n}: a magic link (ELOOP), or no such fd (ENOENT)`);
      continue;
    }
    if (/host secret/.test(r.stdout.toString())) hits.push(n);
  }
  t.same(hits, [], 'no fd number led to the host');
  t.equal(fs.readFileSync(secret, 'utf8'), 'host secret\n', 'the host file is unchanged');
  t.same([...refused], ['cwd/openat2'], 'refused at the cwd, resolved beneath the root');
});

t.test('finding 1 sibling: a cwd through /proc/1/cwd or /proc/self/root stays in the container', { skip: noBusybox }, async (t) => {
  const { rootfs, secret } = hostile(t);
  for (const link of ['/proc/1/cwd', '/proc/self/root', '/proc/self/cwd']) {
    fs.rmSync(path.join(rootfs, 'app'), { force: true });
    fs.symlinkSync(link, path.join(rootfs, 'app'));
    const r = await run({ rootfs, readonly: false, cwd: '/app', command: ['/bin/sh', '-c', `cat ${climb(secret)}`] }).catch((e) => e);
    if (r instanceof NsboxError) t.match(r, { code: 'ELOOP', step: 'cwd' }, `${link}: refused`);
    else t.notMatch(r.stdout.toString(), /host secret/, `${link}: inside the container`);
  }
});

t.test('finding 1 sibling: the command starts with no fd but its stdio', { skip: noBusybox }, async (t) => {
  // Whatever Node holds (its cgroup, listening sockets, files): ls sees 0, 1, 2 and its own 3.
  const held = fs.openSync(os.tmpdir(), 'r');
  t.teardown(() => fs.closeSync(held));
  for (const init of [false, true]) {
    const r = await run({ rootfs: bb, init, command: ['/bin/ls', '/proc/self/fd'] });
    t.same(r.stdout.toString().trim().split(/\s+/), ['0', '1', '2', '3'], `init ${init}`);
  }
});

t.test('finding 1, machines: Machine.exec({ cwd }) through /proc/self/fd/N stays in the machine', { skip: noBusybox || noCgroup() }, async (t) => {
  const { rootfs, secret } = hostile(t);
  const m = await Machine.start({ name: 'cwd-escape', rootfs, stateDir });
  t.teardown(() => m.stop().then(() => m.destroy()).catch(() => {}));
  const hits = [];
  for (let n = 3; n < 48; n++) {
    const ln = await m.run(['sh', '-c', `rm -f /app; ln -s /proc/self/fd/${n} /app`]);
    t.equal(ln.exitCode, 0);
    const r = await m.run(['sh', '-c', `cat ${climb(secret)}`], { cwd: '/app' }).catch((e) => e);
    if (!(r instanceof Error) && /host secret/.test(r.stdout.toString())) hits.push(n);
  }
  t.same(hits, [], 'no fd number led to the host');
  await m.stop();
});

t.test('finding 2: a device node shipped in the rootfs never opens', { skip: noBusybox || !root && 'making device nodes needs root' }, async (t) => {
  const { rootfs } = hostile(t);
  // A harmless char device (on the allow-list: only nodev stops it) and a block device (both stop it).
  spawnSync('mknod', [path.join(rootfs, 'zero2'), 'c', '1', '5']);
  spawnSync('mknod', [path.join(rootfs, 'loop0'), 'b', '7', '0']);
  fs.chmodSync(path.join(rootfs, 'zero2'), 0o666);
  fs.chmodSync(path.join(rootfs, 'loop0'), 0o666);
  for (const user of [{ uid: 1000, gid: 1000 }, { uid: 0, gid: 0 }]) {
    for (const readonly of [true, false]) {
      const r = await run({ rootfs, readonly, user, command: ['/bin/sh', '-c', 'head -c 1 /zero2 >/dev/null && echo OPENED-zero2; head -c 1 /loop0 >/dev/null && echo OPENED-loop0; true'] });
      t.notMatch(r.stdout.toString(), /OPENED/, `uid ${user.uid}, readonly ${readonly}: ${r.stderr.toString().trim()}`);
    }
  }
  // The machine's root too (an overlay when ephemeral, a bind otherwise).
  for (const ephemeral of [true, false]) {
    const m = await Machine.start({ name: `dev-${ephemeral ? 'eph' : 'bind'}`, rootfs, ephemeral, stateDir });
    const r = await m.run(['sh', '-c', 'head -c 1 /zero2 >/dev/null && echo OPENED-zero2; head -c 1 /loop0 >/dev/null && echo OPENED-loop0; true']);
    await m.stop();
    await m.destroy();
    t.notMatch(r.stdout.toString(), /OPENED/, `machine, ephemeral ${ephemeral}: ${r.stderr.toString().trim()}`);
  }
});

t.test('finding 2: machine root (CAP_MKNOD) cannot make and open a host device', { skip: noBusybox || noCgroup() || !root && 'as root only: a rootless machine has no CAP_MKNOD over host devices' }, async (t) => {
  const m = await Machine.start({ name: 'mknod', rootfs: bb, ephemeral: true, stateDir });
  t.teardown(() => m.stop().then(() => m.destroy()).catch(() => {}));
  // /dev is a tmpfs without nodev (it has null, zero, the ptys): the device allow-list is what stops these.
  for (const [what, args] of [['loop0 (block)', 'b 7 0'], ['kmsg', 'c 1 11'], ['mem', 'c 1 1'], ['a disk (block 8:0)', 'b 8 0'], ['the host console (5:1)', 'c 5 1'], ['tty1', 'c 4 1'], ['fuse', 'c 10 229']]) {
    const r = await m.run(['sh', '-c', `rm -f /dev/x; mknod /dev/x ${args} 2>&1; dd if=/dev/x of=/dev/null bs=1 count=1 2>&1 && echo OPENED`]);
    t.notMatch(r.stdout.toString(), /OPENED/, `${what}: ${r.stdout.toString().trim().split('\n')[0]}`);
  }
  const ok = await m.run(['sh', '-c', 'echo x > /dev/null && head -c 1 /dev/zero | od -An -tx1 && head -c 1 /dev/urandom > /dev/null && echo fine']);
  t.match(ok.stdout.toString(), /00\s+fine/, 'the allowed devices still work');
  const r = await m.run(['sh', '-c', 'mknod /dev/null2 c 1 3 && echo y > /dev/null2 && echo allowed-node-works']);
  t.match(r.stdout.toString(), /allowed-node-works/, 'a node on the allow-list may be made and used');
  await m.stop();
});

t.test('finding 3: container root changing its init\'s mode does not reach later containers', { skip: noBusybox }, async (t) => {
  for (const attack of ['chmod 0 /proc/1/exe', 'chmod 6755 /proc/1/exe', 'chown 1000:1000 /proc/1/exe']) {
    const a = await run({ rootfs: bb, init: true, command: ['/bin/sh', '-c', `${attack} && stat -L -c '%a %u' /proc/1/exe`] });
    // Rootless inside `unshare -r` only uid 0 is mapped: chown to 1000 is no attack there (EINVAL).
    if (!root && a.exitCode !== 0 && /Invalid argument/.test(a.stderr.toString())) continue;
    // The builtin init is not dumpable: /proc/1/exe does not open for the container at all
    // (EACCES), which is stronger still; what follows holds either way.
    if (a.exitCode !== 0) t.match(a.stderr.toString(), /Permission denied/, `${attack}: refused (init not dumpable)`);
    else t.pass(`${attack}: done`);
    for (const init of [true, false]) {
      const b = await run({ rootfs: bb, init, command: ['/bin/sh', '-c', 'echo started; stat -L -c "%a %u" /proc/1/exe'] });
      t.match(b.stdout.toString(), /^started\n/, `after '${attack}', a container with init ${init} starts`);
      // (With init, /proc/1/exe may not open at all: the init is not dumpable.)
      if (init && !/Permission denied/.test(b.stderr.toString())) t.match(b.stdout.toString(), /\n555 0\n$/, 'and its init is mode 555, owned by root, not set-id');
    }
  }
  // A machine's PID 1 likewise, and the exec trampoline entering it is not its PID 1's file.
  const m = await Machine.start({ name: 'memfd', rootfs: bb, ephemeral: true, stateDir });
  t.teardown(() => m.stop().then(() => m.destroy()).catch(() => {}));
  t.equal((await m.run(['chmod', '0', '/proc/1/exe'])).exitCode, 0);
  t.equal((await m.run(['true'])).exitCode, 0, 'exec into the machine still works');
  const c = await run({ rootfs: bb, init: true, command: ['true'] });
  t.equal(c.exitCode, 0, 'and so do new containers');
  await m.stop();
});

t.test('finding 7: a child killed before its exec is an error, not a started container', { skip: noBusybox || noCgroup() || !root && 'a cgroup parent of its own needs root here' }, async (t) => {
  // A watcher kills every process of the containers' cgroups that has not exec'd yet (its exe is
  // still Node's); a container with many mounts gives it time to do that before the exec.
  const { mountPoint } = require('../../dist/cgroup').detectCgroupHost();
  const parent = `/nsbox-test-prekill-${process.pid}`;
  const parentDir = path.join(mountPoint, parent);
  fs.mkdirSync(parentDir);
  const watcher = cpSpawn(process.execPath, ['-e', `
    // Stops each process of the containers' cgroups that still runs Node's image (it has not
    // exec'd), and once it is stopped (it cannot exec then) and still Node's, kills it: every
    // kill counted landed before the exec. One that exec'd meanwhile is let go.
    const fs = require('fs'), path = require('path');
    const dir = ${JSON.stringify(parentDir)}, node = fs.realpathSync(process.execPath);
    const exe = (p) => { try { return fs.readlinkSync('/proc/' + p + '/exe'); } catch { return null; } };
    const state = (p) => { try { return fs.readFileSync('/proc/' + p + '/stat', 'utf8').replace(/^.*\\) /, '')[0]; } catch { return null; } };
    let kills = 0;
    const end = Date.now() + 60000;
    while (Date.now() < end && !fs.existsSync(dir + '/stop')) {
      let subs = [];
      try { subs = fs.readdirSync(dir).filter((d) => d !== 'stop' && fs.existsSync(path.join(dir, d, 'cgroup.procs'))); } catch {}
      for (const s of subs) {
        let pids = [];
        try { pids = fs.readFileSync(path.join(dir, s, 'cgroup.procs'), 'utf8').split('\\n').filter(Boolean).map(Number); } catch {}
        for (const p of pids) {
          if (exe(p) !== node) continue;
          try { process.kill(p, 'SIGSTOP'); } catch { continue; }
          let st;
          for (let i = 0; i < 100000 && (st = state(p)) !== 'T' && st !== null && st !== 'Z'; i++);
          if (st === 'T' && exe(p) === node) {
            process.kill(p, 'SIGKILL');
            kills++;
          } else {
            try { process.kill(p, 'SIGCONT'); } catch {}
          }
        }
      }
    }
    process.stdout.write(String(kills));
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  let killsOut = '';
  watcher.stdout.on('data', (d) => (killsOut += d));
  const watcherDone = new Promise((resolve) => watcher.on('exit', resolve));
  t.teardown(async () => {
    try { fs.mkdirSync(path.join(parentDir, 'stop')); } catch {}
    await watcherDone;
    for (const d of fs.readdirSync(parentDir)) try { fs.rmdirSync(path.join(parentDir, d)); } catch {}
    try { fs.rmdirSync(parentDir); } catch {}
  });
  const mounts = Array.from({ length: 150 }, (_, i) => ({ type: 'tmpfs', target: `/tmp/m${i}` }));
  let died = 0, started = 0, killedAfter = 0;
  // Until three kills have landed before an exec (the watcher needs a CPU at the right moment:
  // under a loaded parallel run that can take many starts), within 200 starts.
  for (let i = 0; i < 200 && died < 3; i++) {
    const r = await run({ rootfs: bb, cgroupParent: parent, mounts, command: ['/bin/true'] }).catch((e) => e);
    if (r instanceof NsboxError) {
      t.match(r, { code: 'ESRCH', step: 'exec.died' }, r.message);
      t.match(r.message, /died before its exec \(signal SIGKILL\)/);
      died++;
    } else if (r instanceof Error) {
      throw r;
    } else if (r.signal === 'SIGKILL') {
      killedAfter++;  // on 5522d3d: a pre-exec kill looked like this, a started container killed
    } else {
      started++;
    }
  }
  fs.mkdirSync(path.join(parentDir, 'stop'));
  await watcherDone;
  t.ok(Number(killsOut) > 0, `the watcher killed ${killsOut} processes before their exec`);
  t.equal(died, Number(killsOut), `every kill before the exec was reported as such (${died} reported, ${started} ran, ${killedAfter} reported as started then killed)`);
  t.equal(killedAfter, 0, 'no process killed before its exec was reported as a started container');
});

t.test('finding 7 sibling: a command that names itself like a process before its exec still counts as started, at once', { skip: noBusybox }, async (t) => {
  // It calls itself nsbox-starting right after its exec, then stays (0.3 s) or exits at once (0):
  // either way it ran, so the start must not fail, and nothing may wait on it.
  for (const stay of ['0.3', '0']) {
    let worst = 0;
    let last = Date.now();
    const timer = setInterval(() => {
      worst = Math.max(worst, Date.now() - last);
      last = Date.now();
    }, 5);
    const rs = await Promise.all(Array.from({ length: 8 }, () => run({ rootfs: bb, command: ['/probe', 'rename', 'nsbox-starting', stay] }).catch((e) => e)));
    clearInterval(timer);
    for (const r of rs) {
      t.notOk(r instanceof Error, `stay ${stay}: ${r instanceof Error ? r.message : 'started'}`);
      if (!(r instanceof Error)) t.equal(r.stdout.toString(), 'ran\n');
    }
    t.ok(worst < 1000, `stay ${stay}: the event loop was never held for long (worst gap ${worst} ms)`);
  }
});

t.test('finding 8: a seccomp policy denying close_range and close leaves no fd of Node open', { skip: noBusybox }, async (t) => {
  // A Node process with a non-close-on-exec fd 3 (as a parent process can hand one down) starts a
  // container whose policy answers close_range and close with ENOSYS (which a fallback would take
  // as "not there"). The container must still see only its stdio.
  const script = `
    const { run } = require(${JSON.stringify(path.join(__dirname, '../..'))});
    run({ rootfs: ${JSON.stringify(bb)}, seccomp: { deny: ['close_range', 'close'], defaultErrno: 38 }, command: ['/bin/ls', '/proc/self/fd'] })
      .then((r) => process.stdout.write(r.stdout), (e) => { process.stdout.write('ERR ' + e.message); });
  `;
  const held = fs.openSync(os.tmpdir(), 'r');
  try {
    const r = spawnSync(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit', held], encoding: 'utf8', timeout: 60000 });
    const fds = r.stdout.trim().split(/\s+/);
    t.notMatch(r.stdout, /ERR/, r.stdout);
    t.same(fds.filter((f) => Number(f) > 2 && f !== fds[fds.length - 1]), [], `only stdio and ls's own directory fd: ${r.stdout.trim()}`);
  } finally {
    fs.closeSync(held);
  }
});

t.test('finding 9: a bind source nested in another container\'s writable bind does not bind a host directory', { skip: noBusybox }, async (t) => {
  const { dir } = hostile(t);
  const data = path.join(dir, 'data');
  fs.mkdirSync(path.join(data, 'sub', 'etc'), { recursive: true });
  // Container A has the workspace writable and swaps a component of B's source for a link to "/".
  const a = await run({ rootfs: bb, mounts: [{ type: 'bind', source: data, target: '/data' }], command: ['/bin/sh', '-c', 'rm -rf /data/sub && ln -s / /data/sub && echo swapped'] });
  t.equal(a.stdout.toString().trim(), 'swapped');
  // Container B binds the workspace and, on top, a directory inside it (its source is resolved
  // beneath the workspace: "sub -> /" leads to the workspace's own root, where there is no etc).
  const image = fs.readdirSync(path.join(bb, 'etc')).sort();
  for (const outerReadonly of [true, false]) {
    const b = await run({
      rootfs: bb,
      mounts: [{ type: 'bind', source: data, target: '/data', readonly: outerReadonly }, { type: 'bind', source: path.join(data, 'sub', 'etc'), target: '/data/sub/etc' }],
      command: ['/bin/sh', '-c', 'echo written > /etc/nsbox-escape-probe 2>/dev/null; ls /etc'],
    }).catch((e) => e);
    t.notOk(fs.existsSync('/etc/nsbox-escape-probe'), `outer readonly ${outerReadonly}: nothing was written to the host's /etc`);
    fs.rmSync('/etc/nsbox-escape-probe', { force: true });
    t.same(fs.readdirSync(path.join(bb, 'etc')).sort(), image, 'nor to the read-only image');
    t.type(b, NsboxError, 'the start is refused');
    // The source is resolved beneath the workspace (openat2, or the per-component walk where it is missing).
    t.match(b, { code: 'ENOENT', step: 'mount.bind', syscall: /^openat2?$/, path: path.join(data, 'sub', 'etc') });
  }
  // A link that stays inside the workspace still works. (An absolute one fails closed: the host's
  // stat that picks a directory or file target follows it on the host; see docs/security.md.)
  fs.rmSync(path.join(data, 'sub'));
  fs.mkdirSync(path.join(data, 'real', 'etc'), { recursive: true });
  fs.writeFileSync(path.join(data, 'real', 'etc', 'f'), 'inside\n');
  fs.symlinkSync('real', path.join(data, 'sub'));
  const c = await run({ rootfs: bb, mounts: [{ type: 'bind', source: data, target: '/data', readonly: true }, { type: 'bind', source: path.join(data, 'sub', 'etc'), target: '/x' }], command: ['/bin/cat', '/x/f'] });
  t.equal(c.stdout.toString(), 'inside\n', 'a link inside the workspace is followed inside it');
});

t.test('finding 9 sibling: two levels of nesting, or an alias path to the rootfs, do not reach a host directory either', { skip: noBusybox }, async (t) => {
  const { dir } = hostile(t);
  const image = fs.readdirSync(path.join(bb, 'etc')).sort();
  // Two levels: data (writable), data/sub, data/sub/etc. A link planted at data/sub must not send
  // the deepest source out, whichever enclosure is opened on the host.
  const data = path.join(dir, 'data');
  fs.mkdirSync(path.join(data, 'sub', 'etc'), { recursive: true });
  await run({ rootfs: bb, mounts: [{ type: 'bind', source: data, target: '/data' }], command: ['/bin/sh', '-c', 'rm -rf /data/sub && ln -s / /data/sub'] });
  const two = await run({
    rootfs: bb,
    mounts: [
      { type: 'bind', source: data, target: '/data' },
      { type: 'bind', source: path.join(data, 'sub'), target: '/x', readonly: true },
      { type: 'bind', source: path.join(data, 'sub', 'etc'), target: '/y' },
    ],
    command: ['/bin/sh', '-c', 'echo w > /y/nsbox-escape-probe2; ls /y'],
  }).catch((e) => e);
  t.notOk(fs.existsSync('/etc/nsbox-escape-probe2'), 'two levels: nothing was written to the host\'s /etc');
  fs.rmSync('/etc/nsbox-escape-probe2', { force: true });
  t.type(two, NsboxError, 'two levels: refused');
  // An alias: the rootfs (readonly: false) reached through a host symlink, /data -> / planted inside.
  const rootfs = path.join(dir, 'rootfs');
  fs.mkdirSync(path.join(rootfs, 'data', 'etc'), { recursive: true });
  // The mount point is the image's: a writable root never gets one made (a missing one is refused).
  fs.mkdirSync(path.join(rootfs, 'mnt', 'e'), { recursive: true });
  const alias = path.join(dir, 'current');
  fs.symlinkSync(rootfs, alias);
  await run({ rootfs, readonly: false, command: ['/bin/sh', '-c', 'rm -rf /data && ln -s / /data'] });
  const viaAlias = await run({
    rootfs, readonly: false,
    mounts: [{ type: 'bind', source: path.join(alias, 'data', 'etc'), target: '/mnt/e' }],
    command: ['/bin/sh', '-c', 'echo w > /mnt/e/nsbox-escape-probe3; ls /mnt/e'],
  }).catch((e) => e);
  t.notOk(fs.existsSync('/etc/nsbox-escape-probe3'), 'alias: nothing was written to the host\'s /etc');
  fs.rmSync('/etc/nsbox-escape-probe3', { force: true });
  if (viaAlias instanceof Error) t.match(viaAlias, { step: 'mount.bind' }, 'alias: refused');
  else t.notMatch(viaAlias.stdout.toString(), /\bshadow\b|\bos-release\b/, 'alias: the container\'s own /etc, beneath the rootfs');
  t.same(fs.readdirSync(path.join(bb, 'etc')).sort(), image, 'the shared image is untouched');
});

t.test('finding 9: nested binds of one container still work (read-only inside writable)', { skip: noBusybox }, async (t) => {
  const { dir } = hostile(t);
  const data = path.join(dir, 'data');
  fs.mkdirSync(path.join(data, 'ro'), { recursive: true });
  fs.writeFileSync(path.join(data, 'ro', 'f'), 'inner\n');
  for (const template of ['1', '0']) {
    const r = spawnSync(process.execPath, ['-e', `
      require(${JSON.stringify(path.join(__dirname, '../..'))}).run({ rootfs: ${JSON.stringify(bb)}, mounts: [
        { type: 'bind', source: ${JSON.stringify(data)}, target: '/data' },
        { type: 'bind', source: ${JSON.stringify(path.join(data, 'ro'))}, target: '/data/ro', readonly: true }],
        command: ['/bin/sh', '-c', 'cat /data/ro/f; echo x > /data/ro/g 2>/dev/null || echo read-only; echo y > /data/w && echo writable'] })
      .then((r) => process.stdout.write(r.stdout), (e) => process.stdout.write('ERR ' + e.message));
    `], { env: { ...process.env, NSBOX_MNT_TEMPLATE: template }, encoding: 'utf8', timeout: 60000 });
    t.equal(r.stdout, 'inner\nread-only\nwritable\n', `mount template ${template === '1' ? 'on' : 'off'}`);
  }
});

t.test('nothing is left behind', async (t) => {
  await assertNoLeaks(t, before, 'after the escape attempts');
});
