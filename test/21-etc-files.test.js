// The generated /etc/hosts, /etc/hostname and /etc/resolv.conf (lib/etc.ts), seen from inside: in
// every network mode, read-only, with the `hosts` entries; never created in a caller's rootfs that
// lacks them; gone once the container has exited or failed to start.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, spawn, Machine } = require('..');
const { busyboxRootfs, warmUp, assertNoLeaks, machineStateDir } = require('./helpers');
const { etcBase, setSharedEtcLimit } = require('../dist/etc');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const notRoot = process.getuid() !== 0 && 'needs root (network modes, machines)';
const debian = '/var/cache/nsbox-test/debian-tools';
const noDebian = !fs.existsSync(path.join(debian, 'usr/local/bin/memhog')) && `no Debian tools rootfs at ${debian} (test/fixtures/debian-tools-rootfs.sh)`;
const python = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p));

const HOSTS_HEAD = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n';

/** A copy of the busybox rootfs without the three mount points (an image that lacks them). */
function bareRootfs(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-bare-'));
  fs.cpSync(bb, dir, { recursive: true, verbatimSymlinks: true });
  for (const f of ['hosts', 'hostname', 'resolv.conf']) fs.rmSync(path.join(dir, 'etc', f), { force: true });
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let before;
t.before(async () => {
  before = await warmUp();
});

for (const network of ['none', 'loopback', 'host']) {
  t.test(`network '${network}': /etc/hosts names localhost and the host name, read-only`, { skip: noBusybox || (network === 'host' && notRoot) }, async (t) => {
    const r = await run({
      rootfs: bb, network, hostname: 'box1',
      command: ['/bin/sh', '-c', 'cat /etc/hosts; echo ---; cat /etc/hostname; echo ---; cat /etc/resolv.conf; echo ---; for f in hosts hostname resolv.conf; do /probe try-write /etc/$f; done'],
    });
    t.equal(r.exitCode, 0, r.stderr.toString());
    const [hosts, hostname, resolv, writes] = r.stdout.toString().split('---\n');
    t.equal(hosts, `${HOSTS_HEAD}127.0.1.1\tbox1\n`, '/etc/hosts: localhost (IPv4 and IPv6) and the container\'s name');
    t.equal(hostname, 'box1\n', '/etc/hostname: the container\'s name');
    if (network === 'host') t.equal(resolv, fs.readFileSync('/etc/resolv.conf', 'utf8'), "resolv.conf: the host's, as it is");
    else t.equal(resolv, `# nsbox: network '${network}' reaches no nameserver\n`, 'resolv.conf: no nameserver');
    const results = writes.trim().split('\n').map((l) => JSON.parse(l));
    t.same(results.map((x) => x.code), ['EROFS', 'EROFS', 'EROFS'], 'each file is a read-only mount (EROFS)');
  });
}

t.test('hosts: extra entries after the generated ones', { skip: noBusybox }, async (t) => {
  const r = await run({ rootfs: bb, hosts: { db: '10.1.2.3', 'v6.example': 'fd00::1' }, command: ['/bin/cat', '/etc/hosts'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.equal(r.stdout.toString(), `${HOSTS_HEAD}127.0.1.1\tnsbox\n10.1.2.3\tdb\nfd00::1\tv6.example\n`);
});

t.test('default rootfs: localhost and the own host name resolve (glibc, python3) in each mode', { skip: !python && 'no python3 on the host (the default rootfs binds its /usr)' }, async (t) => {
  for (const network of notRoot ? ['none', 'loopback'] : ['none', 'loopback', 'host']) {
    const r = await run({
      network, hostname: 'resolver',
      command: [python, '-c', 'import socket; print(socket.gethostbyname("localhost"), socket.gethostbyname(socket.gethostname()))'],
    });
    t.equal(r.exitCode, 0, `${network}: ${r.stderr}`);
    t.equal(r.stdout.toString(), '127.0.0.1 127.0.1.1\n', `${network}: localhost -> 127.0.0.1, resolver -> 127.0.1.1`);
  }
});

t.test('Debian image: python3 resolves localhost and its own name from the generated /etc/hosts', { skip: noDebian || notRoot }, async (t) => {
  const had = fs.existsSync(path.join(debian, 'etc/hosts'));
  const r = await run({
    rootfs: debian, hostname: 'deb',
    command: ['/usr/bin/python3', '-c', 'import socket; print(socket.gethostbyname("localhost"), socket.gethostbyname("deb"), open("/etc/hostname").read().strip())'],
  });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.equal(r.stdout.toString(), '127.0.0.1 127.0.1.1 deb\n', `localhost, the host name and /etc/hostname (the image ${had ? 'has' : 'lacks'} /etc/hosts)`);
  t.equal(fs.existsSync(path.join(debian, 'etc/hosts')), had, 'the image is as it was');
});

t.test('a read-only rootfs without the mount points: they are made in its throw-away overlay, never in it', { skip: noBusybox }, async (t) => {
  const bare = bareRootfs(t);
  const r = await run({ rootfs: bare, hostname: 'bare', command: ['/bin/sh', '-c', 'cat /etc/hosts /etc/hostname; ls /etc; /probe try-write /etc/hosts'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.equal(r.stdout.toString(), `${HOSTS_HEAD}127.0.1.1\tbare\nbare\ngroup\nhostname\nhosts\npasswd\nresolv.conf\n{"ok":false,"errno":30,"code":"EROFS"}\n`, 'the generated files are there, read-only');
  t.same(fs.readdirSync(path.join(bare, 'etc')).sort(), ['group', 'passwd'], 'nothing was written into the rootfs');
  const req = await run({ rootfs: bare, etcFiles: true, command: ['/bin/cat', '/etc/hostname'] });
  t.equal(req.stdout.toString(), 'nsbox\n', 'etcFiles: true is satisfied the same way');
});

t.test('a writable rootfs without the mount points: nothing is created in it; etcFiles: true fails naming the path', { skip: noBusybox }, async (t) => {
  const bare = bareRootfs(t);
  const r = await run({ rootfs: bare, readonly: false, command: ['/bin/sh', '-c', 'ls /etc'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.equal(r.stdout.toString(), 'group\npasswd\n', 'the container sees the image\'s /etc as it is (the binds are skipped)');
  t.same(fs.readdirSync(path.join(bare, 'etc')).sort(), ['group', 'passwd'], 'nothing was written into the rootfs (writable, root-owned)');
  await t.rejects(run({ rootfs: bare, readonly: false, etcFiles: true, command: ['/bin/true'] }), { name: 'NsboxError', code: 'ENOENT', step: 'etc', syscall: 'openat2', path: '/etc/hosts' });
  t.same(fs.readdirSync(path.join(bare, 'etc')).sort(), ['group', 'passwd'], 'nor by the failed start');
});

t.test('etcFiles: false binds none of them', { skip: noBusybox }, async (t) => {
  const r = await run({ rootfs: bb, etcFiles: false, command: ['/bin/sh', '-c', 'wc -c < /etc/hosts; grep -c " /etc/" /proc/self/mountinfo || true'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.equal(r.stdout.toString(), '0\n0\n', "the image's empty /etc/hosts, and no mount under /etc");
  const d = await run({ etcFiles: false, command: ['/bin/cat', '/etc/hosts'] });
  t.equal(d.stdout.toString(), fs.readFileSync('/etc/hosts', 'utf8'), "default rootfs: the host's /etc/hosts");
});

t.test('a user mount on /etc/hosts wins over the generated one', { skip: noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-hosts-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'hosts'), '10.9.9.9 mine\n');
  const r = await run({ rootfs: bb, mounts: [{ type: 'bind', source: path.join(dir, 'hosts'), target: '/etc/hosts', readonly: true }], command: ['/bin/cat', '/etc/hosts', '/etc/hostname'] });
  t.equal(r.stdout.toString(), '10.9.9.9 mine\nnsbox\n');
});

/** This process's per-container directories, and every shared one. */
const mine = () => fs.readdirSync(etcBase()).filter((n) => n.startsWith(`${process.pid}-`));
const sharedDirs = () => fs.readdirSync(etcBase()).filter((n) => n.startsWith('s-'));
/** The source of the container's /etc/hosts bind, from its mountinfo line. */
const hostsSource = (mountinfo) => mountinfo.split('\n').map((l) => l.split(' ')).find((f) => f[4] === '/etc/hosts')?.[3];

t.test('default options: 100 runs make at most one shared directory and none of their own', { skip: noBusybox }, async (t) => {
  const hostname = `share-${process.pid}`;
  const before = new Set(sharedDirs());
  const c = spawn({ rootfs: bb, hostname, command: ['/bin/sleep', '30'] });
  t.same(mine(), [], 'a running container has no directory of its own');
  const srcs = new Set();
  for (let i = 0; i < 100; i++) {
    const r = await run({ rootfs: bb, hostname, command: ['/bin/sh', '-c', 'cat /etc/hostname; cat /proc/self/mountinfo'] });
    t.equal(r.exitCode, 0, r.stderr.toString());
    const [first, ...rest] = r.stdout.toString().split('\n');
    if (first !== `${hostname}` ) t.fail(`run ${i}: /etc/hostname is ${first}`);
    srcs.add(hostsSource(rest.join('\n')));
    if (mine().length) t.fail(`run ${i}: a per-container directory exists`);
  }
  c.kill();
  await c.wait();
  const made = sharedDirs().filter((n) => !before.has(n));
  t.ok(made.length <= 1, `at most one new shared directory (${made})`);
  t.equal(srcs.size, 1, 'every container bound the same files');
  const [src] = srcs;
  t.match(src, /\/s-[0-9a-f]{16}\/hosts$/, 'from the shared directory');
  const dir = path.join(etcBase(), path.basename(path.dirname(src)));
  t.ok(fs.existsSync(dir), 'kept once the containers are done');
  const st = fs.statSync(dir);
  t.equal(st.mode & 0o777, 0o711, 'searchable, not listable, by others');
  t.equal(st.uid, process.geteuid(), "this process's uid owns it");
  for (const f of ['hosts', 'hostname', 'resolv.conf']) {
    const fst = fs.statSync(path.join(dir, f));
    t.equal(fst.mode & 0o777, 0o644, `${f}: 0644`);
    t.equal(fst.uid, process.geteuid(), `${f}: owned by this process's uid`);
  }
  t.equal(fs.readFileSync(path.join(dir, 'hostname'), 'utf8'), `${hostname}\n`);
  t.same(mine(), [], 'and no directory of its own anywhere');
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test("a shared directory's remover that stops while holding its lock is not waited on: the start uses a directory of its own", { skip: noBusybox || (require('node:child_process').spawnSync('flock', ['--version']).status !== 0 && 'flock(1) is not installed') }, async (t) => {
  const hostname = `held-${process.pid}`;
  const first = await run({ rootfs: bb, hostname, command: ['/bin/cat', '/proc/self/mountinfo'] });
  const dir = path.join(etcBase(), path.basename(path.dirname(hostsSource(first.stdout.toString()))));
  t.match(path.basename(dir), /^s-[0-9a-f]{16}$/, 'the first start used the shared directory');
  // The exclusive lock a remover takes (sweepShared), held by a process that never lets go.
  const holder = require('node:child_process').spawn('flock', ['--exclusive', dir, 'sh', '-c', 'echo held; exec sleep 1000'], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  const gone = new Promise((r) => holder.on('exit', r));
  const release = async () => {
    try {
      process.kill(-holder.pid, 'SIGKILL');
    } catch {
      return;
    }
    await gone;
    holder.stdout.destroy();
    for (;;) {
      try {
        process.kill(-holder.pid, 0);
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  t.teardown(release);
  await new Promise((r) => holder.stdout.once('data', r));
  const r = await run({ rootfs: bb, hostname, command: ['/bin/sh', '-c', 'cat /etc/hostname; cat /proc/self/mountinfo'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const [name, ...rest] = r.stdout.toString().split('\n');
  t.equal(name, hostname, 'its files are right');
  t.not(path.dirname(hostsSource(rest.join('\n'))), dir, 'bound from a directory other than the held one');
  await release();
  t.same(mine(), [], 'its own directory went with it');
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('another process with the same content uses the same directory (by content, not by process)', { skip: noBusybox }, async (t) => {
  const { execFileSync } = require('node:child_process');
  const hostname = `xproc-${process.pid}`;
  const r = await run({ rootfs: bb, hostname, command: ['/bin/cat', '/proc/self/mountinfo'] });
  const mineSrc = hostsSource(r.stdout.toString());
  const other = `require(${JSON.stringify(require.resolve('..'))}).run({ rootfs: ${JSON.stringify(bb)}, hostname: ${JSON.stringify(hostname)}, command: ['/bin/cat', '/proc/self/mountinfo'] }).then((r) => process.stdout.write(r.stdout))`;
  t.equal(hostsSource(execFileSync(process.execPath, ['-e', other]).toString()), mineSrc, 'the same source');
  const other2 = `require(${JSON.stringify(require.resolve('..'))}).run({ rootfs: ${JSON.stringify(bb)}, hostname: ${JSON.stringify(hostname + 'x')}, command: ['/bin/cat', '/proc/self/mountinfo'] }).then((r) => process.stdout.write(r.stdout))`;
  const src2 = hostsSource(execFileSync(process.execPath, ['-e', other2]).toString());
  t.not(src2, mineSrc, 'other content, another directory');
  for (const s of [mineSrc, src2]) fs.rmSync(path.join(etcBase(), path.basename(path.dirname(s))), { recursive: true, force: true });
});

t.test('a process that loses the race to write a shared directory uses the winner\'s', async (t) => {
  const { sharedEtcDir, etcContent } = require('../dist/etc');
  const c = { hostname: `race-${process.pid}`, network: 'none', hosts: [] };
  const realRename = fs.renameSync;
  let target;
  // Another process renames its (identical) copy into place just before this one does.
  fs.renameSync = (from, to) => {
    target = to;
    const winner = path.join(etcBase(), `winner-${process.pid}`);
    fs.mkdirSync(winner, { mode: 0o711 });
    const text = etcContent(c);
    for (const f of ['hosts', 'hostname', 'resolv.conf']) fs.writeFileSync(path.join(winner, f), text[f], { mode: 0o644 });
    fs.writeFileSync(path.join(winner, 'hosts'), text.hosts + '# the winner\n');
    realRename(winner, to);
    return realRename(from, to);
  };
  let d;
  try {
    d = sharedEtcDir(c);
  } finally {
    fs.renameSync = realRename;
  }
  t.equal(d.dir, target, 'the content-addressed name');
  t.ok(d.shared);
  t.match(fs.readFileSync(path.join(d.dir, 'hosts'), 'utf8'), /# the winner\n$/, "the winner's directory is used");
  t.same(mine(), [], 'its temporary directory is gone');
  t.same(fs.readdirSync(etcBase()).filter((n) => n.startsWith('winner-')), []);
  // The start's shared lock on it (passed to its child, closed with the child's fds).
  fs.closeSync(d.lockFd);
  fs.rmSync(d.dir, { recursive: true, force: true });
});

// Shared directories are removed by the process that made them when it exits, but never while a
// start (of any process) holds one between choosing it and binding its files (its shared flock).
t.test('a shared directory goes with the process that made it, unless a start holds it then', { skip: noBusybox }, async (t) => {
  const { sharedEtcDir } = require('../dist/etc');
  const hostname = `held-${process.pid}`;
  const script = `require(${JSON.stringify(require.resolve('..'))}).run({ rootfs: ${JSON.stringify(bb)}, hostname: ${JSON.stringify(hostname)}, command: ['/bin/cat', '/proc/self/mountinfo'] }).then((r) => { process.stdout.write(r.stdout); process.stdin.once('data', () => process.exit(0)); })`;
  const child = require('node:child_process').spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  await new Promise((resolve) => child.stdout.on('data', (d) => (out += d) && out.includes('/etc/hosts') && resolve()));
  const dir = path.join(etcBase(), path.basename(path.dirname(hostsSource(out))));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // This process's start chooses the same directory and holds it (as until its binds are made).
  const d = sharedEtcDir({ hostname, network: 'loopback', hosts: [] });
  t.equal(d.dir, dir, 'the same content, the same directory');
  child.stdin.end('x');
  await new Promise((resolve) => child.once('exit', resolve));
  t.ok(fs.existsSync(path.join(dir, 'hosts')), 'kept: a start held it when its maker exited');
  fs.closeSync(d.lockFd);
  // (Its removal by the maker's exit without a holder: test/security/etc-devices.test.js.)
});

t.test('a bound file outlives its removed directory; the next starts make it again', { skip: noBusybox }, async (t) => {
  const hostname = `gone-${process.pid}`;
  const c = spawn({ rootfs: bb, hostname, command: ['/bin/sh', '-c', 'echo ready; read x; cat /etc/hosts /etc/hostname'], stdio: 'pipe' });
  const out = [];
  // Its files are bound once it runs its command.
  await new Promise((resolve) => c.stdout.once('data', (d) => resolve(out.push(d))));
  c.stdout.on('data', (d) => out.push(d));
  const probe = await run({ rootfs: bb, hostname, command: ['/bin/cat', '/proc/self/mountinfo'] });
  const dir = path.join(etcBase(), path.basename(path.dirname(hostsSource(probe.stdout.toString()))));
  t.ok(fs.existsSync(dir));
  fs.rmSync(dir, { recursive: true });
  t.notOk(fs.existsSync(dir), 'the shared directory is gone from the host');
  c.stdin.end('go\n');
  const ex = await c.wait();
  t.equal(ex.exitCode, 0);
  t.equal(Buffer.concat(out).toString(), `ready\n${HOSTS_HEAD}127.0.1.1\t${hostname}\n${hostname}\n`, 'the running container still reads its files');
  await new Promise((r) => setTimeout(r, 1100));
  const again = await run({ rootfs: bb, hostname, command: ['/bin/cat', '/etc/hostname'] });
  t.equal(again.stdout.toString(), `${hostname}\n`, 'a start a second later has the files again');
  t.ok(fs.existsSync(dir), 'made again under the same name');
  fs.rmSync(dir, { recursive: true, force: true });
});

for (const userns of [false, true]) {
  // (Rootless, every container is in a user namespace: the first case is the same as the second.)
  t.test(`the shared files cannot be made writable from inside${userns ? ' (user namespace: root inside)' : ''}`, { skip: noBusybox }, async (t) => {
    const hostname = `ro-${userns}-${process.pid}`;
    const r = await run({
      rootfs: bb, hostname, ...(userns ? { userns: true } : {}), seccomp: 'none',
      command: ['/bin/sh', '-c', [
        'mount -o remount,rw,bind /etc/hosts && echo REMOUNTED',
        '/probe try-write /etc/hosts',
        // A user namespace of its own (full capabilities there) and a mount namespace: the binds
        // are locked read-only in it.
        'unshare -Um /bin/sh -c "readlink /proc/self/ns/user; mount -o remount,rw,bind /etc/hosts && echo REMOUNTED; /probe try-write /etc/hosts"',
        'readlink /proc/self/ns/user',
        'cat /etc/hosts',
      ].join('; ')],
    });
    t.equal(r.exitCode, 0, r.stderr.toString());
    const lines = r.stdout.toString().split('\n');
    t.notMatch(r.stdout.toString(), /REMOUNTED/, 'no remount read-write succeeds');
    t.same([lines[0], lines[2]].map((l) => JSON.parse(l).code), ['EROFS', 'EROFS'], 'writes fail with EROFS, in its namespaces and in a nested user namespace');
    t.match(lines[1], /^user:\[\d+\]$/);
    t.not(lines[1], lines[3], 'the nested user namespace was made (the second attempt ran there)');
    t.match(r.stderr.toString(), /mount: permission denied/, 'mount(2) refused');
    t.equal(lines.slice(4).join('\n'), `${HOSTS_HEAD}127.0.1.1\t${hostname}\n`, 'the file is unchanged');
  });
}

t.test('CAP_SYS_ADMIN kept: a directory of its own (it could remount its binds read-write), removed with it', { skip: noBusybox || notRoot }, async (t) => {
  const c = spawn({ rootfs: bb, capabilities: { add: ['CAP_SYS_ADMIN'] }, command: ['/bin/sleep', '30'] });
  t.equal(mine().length, 1, 'its own directory');
  const r = await run({ rootfs: bb, capabilities: { add: ['CAP_SYS_ADMIN'] }, command: ['/bin/sh', '-c', 'mount -o remount,rw,bind /etc/hosts && echo x >> /etc/hosts; grep -c "^x$" /etc/hosts; cat /proc/self/mountinfo'] });
  t.equal(r.stdout.toString().split('\n')[0], '1', 'the container could write its files (its own)');
  t.match(hostsSource(r.stdout.toString()), new RegExp(`/${process.pid}-[0-9a-f]{12}/hosts$`), 'from a directory of its own');
  c.kill();
  await c.wait();
  t.same(mine(), [], 'removed once each was waited for');
  const d = await run({ rootfs: bb, command: ['/bin/cat', '/etc/hosts'] });
  t.equal(d.stdout.toString(), `${HOSTS_HEAD}127.0.1.1\tnsbox\n`, 'the shared files are as they were');
});

t.test('past the limit of shared directories: the container\'s own, gone once it has exited', { skip: noBusybox }, async (t) => {
  setSharedEtcLimit(0);
  t.teardown(() => setSharedEtcLimit(64));
  const c = spawn({ rootfs: bb, hostname: 'live', command: ['/bin/sleep', '30'] });
  const c2 = spawn({ rootfs: bb, hostname: 'live2', command: ['/bin/sleep', '30'] });
  const dirs = mine();
  t.equal(dirs.length, 2, 'one directory per running container');
  t.same(dirs.map((d) => fs.readFileSync(path.join(etcBase(), d, 'hostname'), 'utf8')).sort(), ['live\n', 'live2\n']);
  t.equal(fs.statSync(path.join(etcBase(), dirs[0])).mode & 0o777, 0o711, 'searchable, not listable, by others');
  c.kill();
  c2.kill();
  await Promise.all([c.wait(), c2.wait()]);
  t.same(mine(), [], 'removed when each was waited for');
});

t.test('a failed start leaves no directory behind', { skip: noBusybox }, async (t) => {
  await t.rejects(run({ rootfs: bb, command: ['/no/such/command'] }), { code: 'ENOENT', step: 'exec' });
  await t.rejects(run({ rootfs: bb, cwd: '/no/such', command: ['/bin/true'] }), { step: 'cwd' });
  t.same(fs.readdirSync(etcBase()).filter((n) => n.startsWith(`${process.pid}-`)), []);
});

t.test('bad values are TypeErrors before anything starts', async (t) => {
  t.throws(() => spawn({ command: ['/bin/true'], etcFiles: 'yes' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => spawn({ command: ['/bin/true'], hosts: ['db'] }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => spawn({ command: ['/bin/true'], hosts: { db: 'not-an-ip' } }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /hosts\.db/ });
  t.throws(() => spawn({ command: ['/bin/true'], hosts: { 'bad name!': '10.0.0.1' } }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => spawn({ command: ['/bin/true'], hosts: { db: 5 } }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
});

t.test('machines get them too, removed once the machine has stopped', { skip: noBusybox || notRoot }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-etc-');
  const m = await Machine.start({ name: 'etcm', rootfs: bb, stateDir, hosts: { gw: '10.0.0.1' } });
  const r = await m.run(['/bin/sh', '-c', 'cat /etc/hosts /etc/hostname; /probe try-write /etc/hosts']);
  t.equal(r.stdout.toString(), `${HOSTS_HEAD}127.0.1.1\tetcm\n10.0.0.1\tgw\netcm\n{"ok":false,"errno":30,"code":"EROFS"}\n`);
  const dirs = () => fs.readdirSync(etcBase()).filter((n) => n.startsWith('m-') && n.includes('-etcm-'));
  t.equal(dirs().length, 1, 'its directory while it runs');
  await m.stop({ timeout: 5000 });
  t.same(dirs(), [], 'removed once it stopped');
  await m.destroy();
});

t.test('machines on a rootfs without the mount points: an ephemeral one gets them in its overlay, a persistent one none', { skip: noBusybox || notRoot }, async (t) => {
  const bare = bareRootfs(t);
  const stateDir = machineStateDir(t, 'nsbox-etc4-');
  const eph = await Machine.start({ name: 'etceph', rootfs: bare, stateDir, ephemeral: true });
  t.equal((await eph.run(['/bin/cat', '/etc/hostname'])).stdout.toString(), 'etceph\n', 'ephemeral: the generated file');
  await eph.stop({ timeout: 5000 });
  await eph.destroy();
  const per = await Machine.start({ name: 'etcper', rootfs: bare, stateDir });
  t.equal((await per.run(['/bin/ls', '/etc'])).stdout.toString(), 'group\npasswd\n', 'persistent (a writable root): the image\'s /etc as it is');
  await per.stop({ timeout: 5000 });
  await per.destroy();
  t.same(fs.readdirSync(path.join(bare, 'etc')).sort(), ['group', 'passwd'], 'nothing written into the rootfs');
});

t.test("a machine that died unwatched: the next process to look finds its /etc directory and removes it", { skip: noBusybox || notRoot }, async (t) => {
  const { execFileSync } = require('node:child_process');
  const stateDir = machineStateDir(t, 'nsbox-etc2-');
  const start = `require(${JSON.stringify(require.resolve('..'))}).Machine.start({ name: 'etcgone', rootfs: ${JSON.stringify(bb)}, stateDir: ${JSON.stringify(stateDir)} }).then((m) => console.log(m.pid))`;
  const pid = Number(execFileSync(process.execPath, ['-e', start]).toString());
  const dirs = () => fs.readdirSync(etcBase()).filter((n) => n.startsWith('m-') && n.includes('-etcgone-'));
  t.equal(dirs().length, 1, 'the machine outlives the process that started it, with its directory');
  process.kill(pid, 'SIGKILL');
  while (fs.existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))) await new Promise((r) => setTimeout(r, 20));
  const get = `require(${JSON.stringify(require.resolve('..'))}).Machine.get('etcgone', { stateDir: ${JSON.stringify(stateDir)} }).then((m) => m.state()).then((s) => console.log(s))`;
  t.equal(execFileSync(process.execPath, ['-e', get]).toString(), 'stopped\n');
  t.same(dirs(), [], 'removed by the process that found it stopped');
});

t.test('a machine that died unwatched and is started again under its name: the old directory goes', { skip: noBusybox || notRoot }, async (t) => {
  const { execFileSync } = require('node:child_process');
  const stateDir = machineStateDir(t, 'nsbox-etc3-');
  const start = `require(${JSON.stringify(require.resolve('..'))}).Machine.start({ name: 'etcagain', rootfs: ${JSON.stringify(bb)}, stateDir: ${JSON.stringify(stateDir)} }).then((m) => console.log(m.pid))`;
  const pid = Number(execFileSync(process.execPath, ['-e', start]).toString());
  const dirs = () => fs.readdirSync(etcBase()).filter((n) => n.startsWith('m-') && n.includes('-etcagain-'));
  const old = dirs();
  t.equal(old.length, 1);
  process.kill(pid, 'SIGKILL');
  while (fs.existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))) await new Promise((r) => setTimeout(r, 20));
  // Started again by another process (this one's claim of a dead machine's pidfd would count as
  // an fd left behind).
  execFileSync(process.execPath, ['-e', start]);
  const now = dirs();
  t.equal(now.length, 1, "one directory: the new machine's");
  t.not(now[0], old[0], "not the dead one's");
  const m = await Machine.get('etcagain', { stateDir });
  await m.stop({ timeout: 5000 });
  await m.destroy();
  t.same(dirs(), []);
});

// An image whose /etc/resolv.conf is a symlink (systemd-resolved: ../run/systemd/resolve/stub-resolv.conf,
// or planted: /dev/urandom). The link is never followed for a bind: a read-only root gets a file of
// that name in its overlay's upper layer (the link hidden, not changed) with nsbox's content; a
// writable one keeps the image's link (etcFiles: true fails there with ELOOP). Nothing is written to
// the rootfs.
t.test('a symlinked /etc/resolv.conf: replaced in a read-only root\'s overlay, kept in a writable one, never followed', { skip: noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-etclink-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(bb, dir, { recursive: true, verbatimSymlinks: true });
  // (Random bytes through a link to /dev/urandom may hold a newline: only whether they are nsbox's.)
  const SHOW = ['/bin/sh', '-c', 'ls -l /etc/resolv.conf | cut -c1; head -c 7 /etc/resolv.conf 2>/dev/null | grep -c "^# nsbox"; ls -l /dev/urandom | cut -c1'];
  for (const link of ['../run/systemd/resolve/stub-resolv.conf', '/dev/urandom']) {
    fs.rmSync(path.join(dir, 'etc/resolv.conf'), { force: true });
    fs.symlinkSync(link, path.join(dir, 'etc/resolv.conf'));
    const listing = fs.readdirSync(dir, { recursive: true }).sort();
    for (const etcFiles of [undefined, true]) {
      const ro = await run({ rootfs: dir, etcFiles, command: SHOW });
      t.equal(ro.stdout.toString(), '-\n1\nc\n', `read-only, -> ${link}, etcFiles ${etcFiles}: nsbox's file, /dev/urandom untouched`);
    }
    const rw = await run({ rootfs: dir, readonly: false, command: SHOW });
    t.equal(rw.stdout.toString(), 'l\n0\nc\n', `writable, -> ${link}: the image's link stays, /dev/urandom untouched`);
    await t.rejects(run({ rootfs: dir, readonly: false, etcFiles: true, command: ['/bin/true'] }), { code: 'ELOOP', step: 'etc', path: '/etc/resolv.conf' }, 'writable, etcFiles: true: refused');
    t.equal(fs.readlinkSync(path.join(dir, 'etc/resolv.conf')), link, 'the rootfs keeps its link');
    t.same(fs.readdirSync(dir, { recursive: true }).sort(), listing, 'nothing made in the rootfs');
  }
});

// A caller's mount at /etc (its host directory): none of the files is made in it; the binds go
// where the caller's files have them (default rootfs too), else are skipped; etcFiles: true fails.
t.test('a caller\'s mount at /etc: nothing made in it, binds only where it has the files', { skip: noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-etcmnt-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'passwd'), 'root:x:0:0::/:/bin/sh\n');
  fs.writeFileSync(path.join(dir, 'hosts'), 'mine\n');
  for (const rootfs of [bb, undefined]) {
    for (const readonly of [false, true]) {
      const r = await run({ ...(rootfs ? { rootfs } : {}), mounts: [{ type: 'bind', source: dir, target: '/etc', readonly }], command: ['/bin/cat', '/etc/hosts'] });
      t.equal(r.exitCode, 0);
      t.match(r.stdout.toString(), /^127\.0\.0\.1\tlocalhost/, `${rootfs ? 'rootfs' : 'default rootfs'}, ${readonly ? 'read-only' : 'writable'} mount: nsbox's hosts bound over the caller's file`);
      t.same(fs.readdirSync(dir).sort(), ['hosts', 'passwd'], 'nothing made in the caller\'s directory');
    }
    await t.rejects(run({ ...(rootfs ? { rootfs } : {}), etcFiles: true, mounts: [{ type: 'bind', source: dir, target: '/etc' }], command: ['/bin/true'] }), { code: 'ENOENT', step: 'etc' }, 'etcFiles: true: a missing one fails');
  }
  t.equal(fs.readFileSync(path.join(dir, 'hosts'), 'utf8'), 'mine\n');
});

t.test('nothing left behind', async (t) => {
  await assertNoLeaks(t, before);
});
