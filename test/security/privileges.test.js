// Attacks on privileges, mounts, /proc, devices, fds and the host's processes, each tried from inside
// an app container (default options unless the name says otherwise) and checked from outside: the
// host's binaries, mount table and host name are the same before and after every case.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');
const { run } = require('../..');
const { busyboxRootfs, probeBinary, warmUp, assertNoLeaks, isRoot } = require('../helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const skip = noBusybox;
const init = path.join(__dirname, '..', '..', 'build', 'Release', 'nsbox-init');
let before;

function hostState() {
  const sha = (p) => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
  return {
    node: sha(process.execPath),
    init: sha(init),
    mountinfo: fs.readFileSync('/proc/self/mountinfo', 'utf8'),
    hostname: os.hostname(),
    corePattern: fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8'),
  };
}

/** Runs `script` with sh in the busybox rootfs; asserts the host did not change meanwhile. */
async function attempt(t, script, opts = {}) {
  const host = hostState();
  const r = await run({ rootfs: bb, command: ['/bin/sh', '-c', script], ...opts });
  t.same(hostState(), host, 'the host is untouched (binaries, mountinfo, hostname, core_pattern)');
  return r.stdout.toString() + r.stderr.toString();
}

t.before(async () => {
  before = await warmUp();
});

t.test('remounting the read-only root read-write fails', { skip }, async (t) => {
  const out = await attempt(t, 'mount -o remount,rw / 2>&1; /probe try-write /x');
  t.match(out, /"ok":false/, 'the root stays read-only');
});

const maskedFile = ['kcore', 'keys', 'timer_list', 'sched_debug'].find((f) => fs.existsSync('/proc/' + f));
t.test('unmounting a /proc mask to reach the file under it fails', { skip: skip || (!maskedFile && 'no maskable /proc file on this kernel') }, async (t) => {
  const f = `/proc/${maskedFile}`;
  const out = await attempt(t, `umount ${f} 2>&1; umount -l ${f} 2>&1; wc -c < ${f}`);
  t.match(out, /^0$/m, `${f} still reads as empty`);
});

t.test('mounting a new proc, sysfs or tmpfs fails', { skip }, async (t) => {
  const out = await attempt(t, '/probe try-mount proc /tmp proc; /probe try-mount sysfs /tmp sysfs; /probe try-mount tmpfs /tmp tmpfs');
  t.equal((out.match(/"ok":false/g) || []).length, 3);
});

t.test('writing the host-wide core_pattern through /proc/sys fails', { skip }, async (t) => {
  const out = await attempt(t, '/probe try-write /proc/sys/kernel/core_pattern');
  t.match(out, /"ok":false/);
});

t.test('a setuid-root binary does not give root under no_new_privs', { skip: skip || (isRoot() ? false : 'making a setuid-root binary needs root on the host') }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-suid-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.copyFileSync(probeBinary(), path.join(dir, 'probe-suid'));
  fs.chownSync(path.join(dir, 'probe-suid'), 0, 0);
  fs.chmodSync(path.join(dir, 'probe-suid'), 0o4755);
  const host = hostState();
  // nosuid is off for this bind on purpose: only no_new_privs stands between the user and root.
  const r = await run({ rootfs: bb, user: { uid: 1000, gid: 1000 }, mounts: [{ type: 'bind', source: dir, target: '/s' }], command: ['/s/probe-suid', 'info'] });
  const i = JSON.parse(r.stdout.toString());
  t.equal(i.euid, 1000, 'effective uid stays 1000');
  t.equal(i.status.CapEff, '0000000000000000', 'no capabilities gained');
  t.same(hostState(), host, 'the host is untouched');
});

t.test('capability sets read from /proc/self/status are the documented nine, nothing inheritable or ambient', { skip }, async (t) => {
  const out = await attempt(t, 'grep -E "^Cap(Inh|Prm|Eff|Bnd|Amb)" /proc/self/status');
  t.match(out, /CapInh:\s+0{16}/);
  t.match(out, /CapPrm:\s+00000000000005fb/);
  t.match(out, /CapEff:\s+00000000000005fb/);
  t.match(out, /CapBnd:\s+00000000000005fb/);
  t.match(out, /CapAmb:\s+0{16}/);
});

t.test('mknod of a block device fails', { skip }, async (t) => {
  const out = await attempt(t, 'mknod /tmp/sda b 8 0 2>&1 && echo MADE; /probe try-mknod /tmp/null2');
  t.notMatch(out, /MADE/, 'no block device');
  t.match(out, /"ok":false,"errno":1,"code":"EPERM"/, 'no char device either (no CAP_MKNOD)');
});

t.test('chroot out of the container fails', { skip }, async (t) => {
  const out = await attempt(t, 'mkdir -p /tmp/c; chroot /tmp/c /bin/sh -c true 2>&1; echo rc=$?');
  t.notMatch(out, /rc=0/, 'chroot is refused (no CAP_SYS_CHROOT, denied by seccomp)');
});

t.test('changing the host name from inside fails (and would only touch the container UTS namespace)', { skip }, async (t) => {
  const out = await attempt(t, 'hostname evil 2>&1; hostname');
  t.match(out, /^nsbox$/m);
});

t.test('no host process is visible or signallable', { skip }, async (t) => {
  const out = await attempt(t, `ls /proc | grep -c '^[0-9]'; kill -9 ${process.pid} 2>&1; kill -0 1 && echo self`);
  t.match(out, /^\d+$/m);
  t.ok(Number(out.split('\n')[0]) <= 3, 'only the container processes are in /proc');
  t.match(out, /No such process|can't kill/, `Node's pid ${process.pid} does not exist in here`);
  t.equal(process.kill(process.pid, 0), true, 'and Node is alive');
});

t.test("the host's mounts are not visible", { skip }, async (t) => {
  const out = await attempt(t, 'cat /proc/self/mountinfo');
  // Field 5 is where each mount is attached, as the container sees it.
  const points = out.trim().split('\n').map((l) => l.split(' ')[4]);
  const expected = ['/', '/dev', '/dev/pts', '/dev/shm', '/proc', '/tmp'];
  // In a user namespace (rootless) the device nodes are the host's, bound in: mknod is refused there.
  if (!isRoot()) expected.push(...['null', 'zero', 'full', 'random', 'urandom', 'tty'].map((d) => '/dev/' + d));
  t.same(points.filter((p) => !p.startsWith('/proc/')).sort(), expected.sort(), `only the container's own mounts (${points.length})`);
  t.notOk(points.some((p) => /^\/(work|home|root|sys|run|var)\b/.test(p)), 'no host mount point');
});

t.test('leaked non-CLOEXEC fds never reach the container', { skip }, async (t) => {
  const { native } = require('../../dist/native');
  const fd = fs.openSync('/etc/passwd', 'r');
  t.teardown(() => fs.closeSync(fd));
  native().setCloexec(fd, false);
  const out = await attempt(t, `ls /proc/self/fd; cat /proc/self/fd/${fd} 2>&1 | head -1`);
  t.same(out.trim().split('\n').slice(0, 4).sort(), ['0', '1', '2', '3'].sort(), 'only 0-2 (and the ls directory fd)');
  t.notMatch(out, /^root:/m, "the host's /etc/passwd is not readable through an inherited fd");
});

t.test('climbing out of the root with .. stays at /', { skip }, async (t) => {
  const out = await attempt(t, 'cd /tmp/../../../..; pwd; readlink /proc/self/cwd; ls / | head -3');
  t.match(out, /^\/\n\/\n/);
});

t.test("the container's keyring is not the host's", { skip }, async (t) => {
  const host = JSON.parse(execFileSync(probeBinary(), ['info']).toString()).session_keyring;
  const r = await run({ rootfs: bb, seccomp: 'none', command: ['/probe', 'info'] });
  const inside = JSON.parse(r.stdout.toString()).session_keyring;
  t.ok(inside > 0, 'a session keyring exists inside');
  t.not(inside, host, 'it is not the host session keyring');
});

t.test('the host network is not reachable in the default loopback mode', { skip }, async (t) => {
  const out = await attempt(t, 'cat /proc/net/dev | tail -n +3 | cut -d: -f1');
  t.equal(out.trim().split('\n').map((s) => s.trim()).join(','), 'lo', 'only lo');
});

t.test('nothing is left behind', async (t) => {
  await assertNoLeaks(t, before, 'after the privilege attacks');
});
