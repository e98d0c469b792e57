// devices (docker run --device): exactly the named host nodes in the container's /dev, usable, and
// allowed by the cgroup device list with their permissions and nothing more; bad paths refused
// before anything starts.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, spawn, probe, Machine } = require('..');
const { busyboxRootfs, warmUp, assertNoLeaks, machineStateDir } = require('./helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const notRoot = process.getuid() !== 0 && 'mknod of a host device needs root';
// A block device (a loop device reads as empty while detached) and a character device that is not
// on the fixed list.
const loop = ['/dev/loop0', '/dev/loop1'].find((p) => fs.existsSync(p) && fs.statSync(p).isBlockDevice());
const loopCtl = fs.existsSync('/dev/loop-control') && fs.statSync('/dev/loop-control').isCharacterDevice() ? '/dev/loop-control' : null;
const noLoop = (!loop || !loopCtl) && 'no /dev/loop0 or /dev/loop-control on this host';

let policy = false;
let before;
t.before(async () => {
  before = await warmUp();
  policy = (await probe()).features.devicePolicy;
});

/** The container's /dev as "type major:minor name" lines (devices only), and the shell's output. */
const LIST = 'for f in $(find /dev -path /dev/pts -prune -o \\( -type c -o -type b \\) -print | sort); do stat -c "%F %t:%T %n" $f; done';

t.test('devices: only the named nodes are added, with the host\'s numbers and mode, and they open', { skip: noBusybox || notRoot || noLoop }, async (t) => {
  const plain = await run({ rootfs: bb, command: ['/bin/sh', '-c', LIST] });
  const r = await run({
    rootfs: bb, devices: [loop, { path: loopCtl, containerPath: '/dev/sub/ctl' }],
    command: ['/bin/sh', '-c', `${LIST}; echo ---; stat -c "%a" ${loop}; dd if=${loop} of=/dev/null bs=512 count=1 2>&1 && echo READ-OK`],
  });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const [list, rest] = r.stdout.toString().split('---\n');
  const added = list.split('\n').filter((l) => l && !plain.stdout.toString().split('\n').includes(l));
  const hex = (n) => n.toString(16);
  const st = fs.statSync(loop);
  const ctl = fs.statSync(loopCtl);
  t.same(added.sort(), [
    `block special file ${hex(Math.floor(st.rdev / 256) & 0xfff)}:${hex(st.rdev & 0xff)} ${loop}`,
    `character special file ${hex(Math.floor(ctl.rdev / 256) & 0xfff)}:${hex(ctl.rdev & 0xff)} /dev/sub/ctl`,
  ].sort(), 'exactly the two named nodes were added');
  t.match(rest, new RegExp(`^${(st.mode & 0o777).toString(8)}\\n`), "the host node's mode");
  t.match(rest, /READ-OK/, 'the block device reads');
});

t.test('devices: the allow-list grants them and nothing else; permissions are enforced', { skip: noBusybox || notRoot || noLoop }, async (t) => {
  if (!policy) return t.skip('no cgroup device allow-list on this host (probe().features.devicePolicy)');
  const r = await run({
    rootfs: bb, capabilities: { add: ['MKNOD'] },
    devices: [{ path: loopCtl, containerPath: '/dev/ro-ctl', permissions: 'r' }, loop],
    command: ['/bin/sh', '-c', [
      '(exec 3</dev/ro-ctl) 2>/dev/null; echo read=$?',         // 'r': it opens for reading
      '(exec 3>/dev/ro-ctl) 2>/dev/null; echo write=$?',        // no 'w': EPERM
      'mknod /dev/ctl2 c 10 237 2>/dev/null; echo mknod-ctl=$?', // no 'm': refused
      `mknod /dev/loop-again b 7 0 && echo made; dd if=/dev/loop-again of=/dev/null count=1 2>/dev/null; echo loop-again=$?`, // 'rwm'
      'mknod /dev/kmsg c 1 11 2>/dev/null; echo kmsg=$?',        // not named: refused
      'mknod /dev/loop9 b 7 9 2>/dev/null; echo loop9=$?',        // another minor: refused
    ].join('; ')],
  });
  const out = r.stdout.toString();
  t.match(out, /write=1/, "no 'w': writing is refused");
  t.match(out, /mknod-ctl=1/, "no 'm': mknod is refused");
  t.match(out, /made\nloop-again=0/, "'rwm': a second node of the device is made and reads");
  t.match(out, /kmsg=1/, 'a device not named stays refused');
  t.match(out, /loop9=1/, 'another minor of the same major stays refused');
  t.match(out, /read=0/, "'r': the node opens for reading");
});

t.test('devices in a user namespace: bound from the host (mknod is refused there)', { skip: noBusybox || notRoot || noLoop }, async (t) => {
  const r = await run({ rootfs: bb, userns: true, devices: [loopCtl], command: ['/bin/sh', '-c', 'grep -c " /dev/loop-control " /proc/self/mountinfo; stat -c "%t:%T" /dev/loop-control'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.equal(r.stdout.toString(), '1\na:ed\n', 'a bind mount of the host node (10:237)');
});

// The bound nodes are the host node that was checked (its fd: lib/devices.ts), with nosuid and
// noexec, read-only without 'w'; a path that is a link to a device is followed (as docker does).
t.test('devices: bound nodes are nosuid, noexec, read-only without \'w\'; a link to a device is followed', { skip: noBusybox || notRoot || noLoop }, async (t) => {
  if (!policy) return t.skip('no cgroup device allow-list on this host (permissions other than rwm are refused)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-dev-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.symlinkSync(loopCtl, path.join(dir, 'ctl-link'));
  const SHOW = 'grep -E " /dev/(ro|rw)-ctl " /proc/self/mountinfo | cut -d" " -f5,6; stat -c "%t:%T" /dev/ro-ctl /dev/rw-ctl';
  for (const userns of [false, true]) {
    const r = await run({
      rootfs: bb, ...(userns ? { userns: true } : {}),
      devices: userns ? [{ path: path.join(dir, 'ctl-link'), containerPath: '/dev/ro-ctl' }, { path: loopCtl, containerPath: '/dev/rw-ctl' }]
        : [{ path: path.join(dir, 'ctl-link'), containerPath: '/dev/ro-ctl', permissions: 'r' }, { path: loopCtl, containerPath: '/dev/rw-ctl', permissions: 'rw' }],
      command: ['/bin/sh', '-c', SHOW],
    });
    t.equal(r.exitCode, 0, r.stderr.toString());
    const lines = r.stdout.toString().split('\n');
    const ro = lines.find((l) => l.startsWith('/dev/ro-ctl '));
    const rw = lines.find((l) => l.startsWith('/dev/rw-ctl '));
    t.match(ro, userns ? /^\/dev\/ro-ctl rw,nosuid,noexec/ : /^\/dev\/ro-ctl ro,nosuid,noexec/, `${userns ? 'userns' : 'template'}: ${ro}`);
    t.match(rw, /^\/dev\/rw-ctl rw,nosuid,noexec/, `${userns ? 'userns' : 'template'}: ${rw}`);
    t.match(r.stdout.toString(), /a:ed\na:ed\n$/, 'both are the host node (10:237)');
  }
});

// The child binds the node's path only if it is the inode the parent checked through its fd: a
// node swapped right after the check (here: from inside the fstat of that check) fails the start
// with ESTALE, in the template and in a user namespace, and binds nothing.
t.test('devices: a node swapped after the check is refused by the child (ESTALE)', { skip: noBusybox || notRoot }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-dev-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o755);  // (a user namespace's root is another id on the host: it opens the path too)
  const node = path.join(dir, 'dev');
  const { execFileSync } = require('node:child_process');
  const realFstat = fs.fstatSync;
  t.teardown(() => (fs.fstatSync = realFstat));
  for (const userns of [false, true]) {
    fs.rmSync(node, { force: true });
    try {
      execFileSync('mknod', [node, 'c', '1', '3'], { stdio: 'ignore' });
    } catch {
      return t.skip('mknod on the host is refused here (uid 0 of a user namespace)');
    }
    fs.fstatSync = (fd, o) => {
      const st = realFstat(fd, o);
      // The check has its fd: another node (1:5) takes the name.
      if (fs.fstatSync !== realFstat) {
        fs.fstatSync = realFstat;
        execFileSync('mknod', [node + '.new', 'c', '1', '5']);
        fs.renameSync(node + '.new', node);
      }
      return st;
    };
    const e = await run({ rootfs: bb, ...(userns ? { userns: true } : {}), devices: [{ path: node, containerPath: '/dev/x', permissions: 'rw' }], command: ['/bin/true'] }).catch((err) => err);
    fs.fstatSync = realFstat;
    t.match(e, { name: 'NsboxError', code: 'ESTALE', step: 'devices', syscall: 'open', path: node }, `${userns ? 'userns' : 'template'}: ESTALE`);
  }
});

t.test('bad devices are refused before anything starts', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-dev-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'file'), '');
  const start = (devices) => run({ command: ['/bin/true'], devices });
  await t.rejects(start([{ path: dir, containerPath: '/dev/d' }]), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /devices\[0\].*a directory/ }, 'a directory');
  await t.rejects(start([{ path: path.join(dir, 'file'), containerPath: '/dev/f' }]), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /a regular file/ }, 'a regular file');
  await t.rejects(start(['/dev/no-such-device']), { name: 'NsboxError', code: 'ENOENT', syscall: 'stat', step: 'devices', path: '/dev/no-such-device' }, 'a missing path');
  t.throws(() => spawn({ command: ['/bin/true'], devices: '/dev/loop0' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => spawn({ command: ['/bin/true'], devices: ['dev/loop0'] }), { code: 'ERR_INVALID_ARG_VALUE', message: /absolute/ });
  t.throws(() => spawn({ command: ['/bin/true'], devices: [{ path: '/dev/loop0', containerPath: '/etc/loop' }] }), { code: 'ERR_INVALID_ARG_VALUE', message: /below \/dev/ });
  t.throws(() => spawn({ command: ['/bin/true'], devices: [{ path: '/dev/loop0', containerPath: '/dev/pts/9' }] }), { code: 'ERR_INVALID_ARG_VALUE', message: /own \/dev\/pts/ });
  t.throws(() => spawn({ command: ['/bin/true'], devices: ['/dev/null'] }), { code: 'ERR_INVALID_ARG_VALUE', message: /own \/dev\/null/ });
  t.throws(() => spawn({ command: ['/bin/true'], devices: ['/dev/loop0', '/dev/loop0'] }), { code: 'ERR_INVALID_ARG_VALUE', message: /twice/ });
  t.throws(() => spawn({ command: ['/bin/true'], devices: [{ path: '/dev/loop0', permissions: 'rx' }] }), { code: 'ERR_INVALID_ARG_VALUE', message: /permissions/ });
  t.throws(() => spawn({ command: ['/bin/true'], devices: [{ path: '/dev/loop0', perms: 'r' }] }), { code: 'ERR_INVALID_ARG_VALUE' });
});

t.test('machines: the named device in /dev', { skip: noBusybox || notRoot || noLoop }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-dev-');
  const m = await Machine.start({ name: 'devm', rootfs: bb, stateDir, devices: [loop] });
  const r = await m.run(['/bin/sh', '-c', `dd if=${loop} of=/dev/null count=1 2>/dev/null && echo READ-OK; test -e /dev/loop-control || echo NO-CTL`]);
  t.equal(r.stdout.toString(), 'READ-OK\nNO-CTL\n');
  await m.stop({ timeout: 5000 });
  await m.destroy();
  // Without 'm' the node is the host's, bound (a machine's own mount namespace: the child binds the
  // path only if it is the inode the parent checked).
  const m2 = await Machine.start({ name: 'devm2', rootfs: bb, stateDir, devices: [{ path: loopCtl, permissions: 'rw' }] });
  const r2 = await m2.run(['/bin/sh', '-c', 'grep " /dev/loop-control " /proc/self/mountinfo | cut -d" " -f6; stat -c "%t:%T" /dev/loop-control']);
  t.match(r2.stdout.toString(), /^rw,nosuid,noexec\S*\na:ed\n$/, 'the host node, bound nosuid and noexec');
  await m2.stop({ timeout: 5000 });
  await m2.destroy();
});

t.test('nothing left behind', async (t) => {
  await assertNoLeaks(t, before);
});
