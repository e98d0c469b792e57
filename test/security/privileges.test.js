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
  // The generated /etc files (lib/etc.ts) are the container's own, bound read-only where the image
  // has them (the busybox fixture does).
  const expected = ['/', '/dev', '/dev/pts', '/dev/shm', '/proc', '/tmp', '/etc/hosts', '/etc/hostname', '/etc/resolv.conf'];
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

t.test("stdin without input and stdio 'ignore' are the container's /dev/null: root inside cannot change the host's", { skip }, async (t) => {
  // The host's /dev/null as an fd would let the container's root chmod, chown or touch that very
  // inode through /proc/self/fd/N (it keeps CAP_FOWNER and CAP_CHOWN). Each case tries it with
  // values that would do no harm if they reached the host (mode 666, owner 0, which only move its
  // ctime; an mtime put back afterwards) and the host's inode is checked for any change. As root the
  // container's /dev/null is a node of its own /dev; rootless it is a bind of the host's (mknod is
  // refused in a user namespace), which the container's root does not own and cannot change.
  const hostNull = () => {
    const st = fs.statSync('/dev/null');
    return { dev: st.dev, ino: st.ino, mode: st.mode, uid: st.uid, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
  };
  const h = hostNull();
  t.teardown(() => {
    const now = fs.statSync('/dev/null');
    if (now.mtimeMs !== h.mtimeMs) fs.utimesSync('/dev/null', now.atime, new Date(h.mtimeMs));
  });
  const own = isRoot();
  // The shell's own fds, /proc/$$/fd/N (busybox runs stat, touch, chmod as applets inside the shell,
  // so a redirection on them would swap the very fd they look at), reported on fd 9: "dev:ino"
  // before, the mtime after.
  const poke = (f) =>
    `a=$(stat -L -c "%d:%i" /proc/$$/fd/${f}); touch -d '2001-01-01 00:00:00' /proc/$$/fd/${f}; ` +
    `chmod 666 /proc/$$/fd/${f}; chown 0:0 /proc/$$/fd/${f}; b=$(stat -L -c "%Y" /proc/$$/fd/${f}); echo "$a" >&9; echo "$b" >&9`;
  // run() without input: stdin is /dev/null (stdout, a pipe, carries the reports).
  const noInput = await run({ rootfs: bb, command: ['/bin/sh', '-c', `exec 9>&1; ${poke(0)}`] });
  const [id0, mtime0] = noInput.stdout.toString().trim().split('\n');
  if (own) {
    t.not(id0, `${h.dev}:${h.ino}`, `fd 0 without input is not the host's /dev/null (${id0})`);
    t.equal(mtime0, String(Date.UTC(2001, 0, 1) / 1000), "inside, the container's own /dev/null took the change");
  }
  // stdio 'ignore': all three; the reports go to a file in a bind of a host directory.
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-devnull-'));
  fs.chmodSync(out, 0o777);
  t.teardown(() => fs.rmSync(out, { recursive: true, force: true }));
  await run({
    rootfs: bb,
    stdio: 'ignore',
    mounts: [{ type: 'bind', source: out, target: '/out' }],
    command: ['/bin/sh', '-c', `exec 9>>/out/ids; ${[0, 1, 2].map(poke).join('; ')}`],
  });
  const ids = fs.readFileSync(path.join(out, 'ids'), 'utf8').trim().split('\n').filter((l) => l.includes(':'));
  t.equal(ids.length, 3, "stdio 'ignore': three fds seen");
  t.equal(new Set(ids).size, 1, `all three are one /dev/null (${ids.join(' ')})`);
  if (own) t.notOk(ids.includes(`${h.dev}:${h.ino}`), "and it is not the host's");
  t.same(hostNull(), h, "the host's /dev/null: same mode, owner, mtime and ctime");
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
