// User namespaces: rootless containers and machines (run by test/rootless/run.sh as an unprivileged
// user, plainly and inside `unshare -r`), and `userns` for root callers (run by npm test as root).
// Checks from inside the container with the probe and busybox, and from the host with stat.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { run, spawn, Machine, probe } = require('..');
const { busyboxRootfs, warmUp, snapshot, assertNoLeaks, machineStateDir, isRoot, noCgroup, manyIds } = require('./helpers');
const { subordinateRanges } = require('../dist/userns');
const { privileged } = require('../dist/runtime');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const strict = process.env.NSBOX_REQUIRE_ROOTLESS === '1';
const rootless = !privileged();
const lane = (want) => (strict ? false : want);
const notRootless = rootless ? false : lane('runs as an unprivileged user in the rootless lane (bash test/rootless/run.sh)');
const notRoot = isRoot() ? false : 'needs root in the initial user namespace';
const uid = process.geteuid();
const gid = process.getegid();
let before;

t.before(async () => {
  before = await warmUp();
});

function uidMapLines(text) {
  return text.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
}

t.test('rootless run() on the default rootfs: root inside is the caller outside', { skip: notRootless }, async (t) => {
  const r = await run({ command: ['/bin/sh', '-c', 'id -u; cat /proc/self/uid_map'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const [idLine, ...map] = r.stdout.toString().trim().split('\n');
  t.equal(idLine, '0', 'uid 0 inside');
  t.same(uidMapLines(map.join('\n'))[0], [0, uid, 1], `container uid 0 is host uid ${uid} (/proc/self/uid_map)`);
  const p = await probe();
  t.equal(p.userns.rootless, true, 'probe() says rootless');
  t.equal(p.userns.blockedBy, null);
});

t.test('rootless run() on a busybox rootfs: uid map, caps, and a file made in a bind is the caller\'s', { skip: notRootless || noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-rl-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = await run({
    rootfs: bb,
    mounts: [{ type: 'bind', source: dir, target: '/data' }],
    command: ['/bin/sh', '-c', 'cat /proc/self/uid_map; echo hi > /data/made-inside; grep CapEff /proc/self/status'],
  });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.same(uidMapLines(r.stdout.toString().split('CapEff')[0])[0], [0, uid, 1]);
  t.match(r.stdout.toString(), /CapEff:\s+00000000000005fb/, 'the same nine capabilities as as root (inside the namespace only)');
  const st = fs.statSync(path.join(dir, 'made-inside'));
  t.equal(st.uid, uid, 'owned by the caller on the host');
  t.equal(st.gid, gid);
});

t.test('/etc/shadow stays unreadable to container root, even when bound in', { skip: notRootless || noBusybox }, async (t) => {
  const shadow = fs.existsSync('/etc/shadow') ? '/etc/shadow' : null;
  if (!shadow) return t.skip('the host has no /etc/shadow');
  const r = await run({ rootfs: bb, mounts: [{ type: 'bind', source: shadow, target: '/mnt/file', readonly: true }], command: ['/bin/cat', '/mnt/file'] });
  t.not(r.exitCode, 0, 'cat fails');
  t.match(r.stderr.toString(), /Permission denied/, 'with EACCES');
  t.equal(r.stdout.length, 0, 'nothing of it is read');
});

t.test('with uidmap and subordinate ranges the default map is a full 65,536-id range', { skip: notRootless || manyIds() }, async (t) => {
  const sub = subordinateRanges('/etc/subuid', uid)[0];
  const r = await run({ command: ['/bin/cat', '/proc/self/uid_map', '/proc/self/setgroups'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const lines = uidMapLines(r.stdout.toString().split('\n').slice(0, 2).join('\n'));
  t.same(lines, [[0, uid, 1], [1, sub.start, Math.min(sub.count, 65535)]], 'root is the caller, 1..65535 the subordinate range');
  t.match(r.stdout.toString(), /allow/, 'setgroups is allowed (newgidmap wrote the map)');
  const g = await run({ command: ['/bin/sh', '-c', 'id -G'], user: { uid: 1000, gid: 1000, groups: [1000, 27] } });
  t.equal(g.stdout.toString().trim(), '1000 27', 'supplementary groups inside the range work');
});

t.test('explicit maps that map only the caller run without helpers; groups are refused there', { skip: notRootless }, async (t) => {
  const userns = { uidMap: [{ containerID: 0, hostID: uid, size: 1 }], gidMap: [{ containerID: 0, hostID: gid, size: 1 }] };
  const r = await run({ command: ['/bin/cat', '/proc/self/uid_map', '/proc/self/setgroups'], userns });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.match(r.stdout.toString(), /deny/, 'setgroups is denied in a self-mapped namespace');
  t.throws(() => spawn({ command: ['/bin/true'], userns, user: { uid: 0, gid: 0, groups: [0] } }), { code: 'ENOTSUP' }, 'groups need setgroups');
});

t.test('containers leave Node dumpable, so a second self-mapped container starts too', { skip: notRootless }, async (t) => {
  // The vfork-style child shares Node's mm and turns "dumpable" off while it holds it; non-dumpable,
  // Node's /proc files belong to root and the next child could not write its own uid_map.
  const userns = { uidMap: [{ containerID: 0, hostID: uid, size: 1 }], gidMap: [{ containerID: 0, hostID: gid, size: 1 }] };
  for (let i = 0; i < 3; i++) {
    const r = await run({ command: ['/bin/true'], userns });
    t.equal(r.exitCode, 0, `self-mapped container ${i + 1} ran`);
    t.equal(fs.statSync('/proc/self/mem').uid, uid, 'Node\'s own /proc files still belong to the caller (it is still dumpable)');
  }
  const r = await run({ command: ['/bin/true'] });
  t.equal(r.exitCode, 0, 'the default map after them');
  t.equal(fs.statSync('/proc/self/mem').uid, uid, 'still dumpable');
});

t.test('bad maps are rejected before anything runs, and nothing is left', async (t) => {
  const s0 = snapshot();
  const me = isRoot() ? 0 : uid;
  const cases = [
    [{ uidMap: [{ containerID: 1, hostID: me, size: 1 }] }, /must map container id 0/, 'uid 0 unmapped'],
    [{ uidMap: [{ containerID: 0, hostID: me, size: 10 }, { containerID: 5, hostID: 500000, size: 10 }] }, /overlapping container ranges/, 'overlapping container ranges'],
    [{ uidMap: [{ containerID: 0, hostID: 500000, size: 10 }, { containerID: 10, hostID: 500005, size: 10 }] }, /overlapping host ranges/, 'overlapping host ranges'],
    [{ uidMap: [{ containerID: 0, hostID: -1, size: 1 }] }, /hostID/, 'a negative id'],
    [{ uidMap: [] }, /1 to 340 entries/, 'an empty map'],
    [{ uidMap: [{ containerID: 0, hostID: 1, size: 1, extra: 1 }] }, /unknown key/, 'an unknown key'],
    [{ nope: [] }, /unknown key/, 'an unknown option key'],
  ];
  if (!isRoot()) cases.push([{ uidMap: [{ containerID: 0, hostID: 4000000000, size: 1 }] }, /outside the caller's ranges/, 'outside the caller\'s ranges']);
  for (const [userns, re, what] of cases) {
    let err;
    try {
      spawn({ command: ['/bin/true'], userns }).kill();
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof TypeError || err instanceof RangeError, `${what}: a TypeError or RangeError (${err && err.message})`);
    t.match(err && err.message, re, what);
    t.match(err && err.code, /^ERR_/, 'with a Node-style code');
  }
  t.throws(() => spawn({ command: ['/bin/true'], userns: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => spawn({ command: ['/bin/true'], userns: { uidMap: [{ containerID: 0, hostID: me, size: 1 }] }, user: { uid: 5, gid: 0 } }), { code: 'ERR_INVALID_ARG_VALUE', message: /user.uid.*not mapped/ }, 'a user outside the map');
  // Machines take the same option, checked the same way before a state entry or cgroup exists.
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-rl-bad-'));
  t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  await t.rejects(Machine.start({ name: 'bad', rootfs: bb || '/', stateDir, userns: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' }, 'machine: userns of the wrong type');
  await t.rejects(Machine.start({ name: 'bad', rootfs: bb || '/', stateDir, userns: { uidMap: [{ containerID: 1, hostID: me, size: 1 }] } }), { code: 'ERR_INVALID_ARG_VALUE', message: /must map container id 0/ }, 'machine: uid 0 unmapped');
  t.same(fs.readdirSync(stateDir), [], 'no machine state was written');
  await new Promise((r) => setTimeout(r, 50));
  t.same(snapshot(), s0, 'no process, fd, mount or cgroup was made');
});

t.test('root with userns: true: container root is an unprivileged id on the host', { skip: notRoot || noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-rootns-'));
  fs.chmodSync(dir, 0o777);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = await run({ rootfs: bb, userns: true, mounts: [{ type: 'bind', source: dir, target: '/data' }], command: ['/bin/sh', '-c', 'id -u; cat /proc/self/uid_map; touch /data/f; cat /proc/1/environ >/dev/null; echo ok'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const map = uidMapLines(r.stdout.toString().split('\n').slice(1, 2).join('\n'))[0];
  t.equal(map[0], 0);
  t.not(map[1], 0, `container root is host uid ${map[1]}, not 0`);
  t.equal(fs.statSync(path.join(dir, 'f')).uid, map[1], 'a file it makes belongs to that id');
  const denied = await run({ rootfs: bb, userns: true, mounts: [{ type: 'bind', source: '/etc/shadow', target: '/mnt/file' }], command: ['/bin/cat', '/mnt/file'] });
  t.not(denied.exitCode, 0, 'host-root-owned /etc/shadow is unreadable to it');
  const explicit = await run({ rootfs: bb, userns: { uidMap: [{ containerID: 0, hostID: 3000000, size: 65536 }], gidMap: [{ containerID: 0, hostID: 3000000, size: 65536 }] }, command: ['/bin/cat', '/proc/self/uid_map'] });
  t.same(uidMapLines(explicit.stdout.toString())[0], [0, 3000000, 65536], 'explicit maps written by the parent');
  // The veth is made over a host-namespace socket, which needs CAP_NET_ADMIN in the host's user
  // namespace: refused before any bridge, lease or process exists.
  t.throws(() => spawn({ rootfs: bb, userns: true, network: 'bridge', command: ['/bin/true'] }), { code: 'ENOTSUP', step: 'network', message: /userns/ });
});

t.test('a host that forbids user namespaces gets an error naming the setting, not a bare EPERM', { skip: noBusybox }, async (t) => {
  // user.max_user_namespaces is per user namespace: set to 0 inside `unshare -r`, nsbox there must
  // not be able to make one. The script runs in that namespace and prints what nsbox says.
  const script = `
    const { run, probe } = require(${JSON.stringify(path.join(__dirname, '..'))});
    (async () => {
      const p = await probe();
      let err;
      try { await run({ command: ['/bin/true'] }); } catch (e) { err = e; }
      console.log(JSON.stringify({ blockedBy: p.userns.blockedBy, code: err && err.code, message: err && err.message, step: err && err.step }));
    })();`;
  let out;
  try {
    out = execFileSync('unshare', ['-r', 'sh', '-c', 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" -e "$1"', process.execPath, script], { encoding: 'utf8', timeout: 30000 });
  } catch (e) {
    return t.fail(`unshare -r with max_user_namespaces=0: ${e.message} ${e.stderr}`);
  }
  const res = JSON.parse(out.trim().split('\n').pop());
  t.equal(res.blockedBy, 'user.max_user_namespaces=0', 'probe() names the setting');
  t.equal(res.code, 'ENOTSUP');
  t.match(res.message, /user\.max_user_namespaces=0/, 'the error names the setting');
  t.match(res.message, /sysctl -w user\.max_user_namespaces=/, 'and the remedy');
});

t.test('rootless builtin machine: daemons, exec as root inside, stop', { skip: notRootless || noBusybox }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-rl-m-');
  const m = await Machine.start({ name: 'rl', rootfs: bb, ephemeral: true, stateDir });
  const r = await m.run(['/bin/sh', '-c', 'id -u; cat /proc/self/uid_map; echo x > /made && cat /made']);
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.match(r.stdout.toString(), new RegExp(`^0\\n\\s*0\\s+${uid}\\s+1\\n`), 'exec joins the machine\'s user namespace as its root');
  t.match(r.stdout.toString(), /x\n$/, 'the ephemeral overlay is writable');
  const { killed } = await m.stop({ timeout: 10000 });
  t.equal(killed, false);
  await m.destroy();
});

const debianRootless = process.env.NSBOX_ROOTLESS_DEBIAN_ROOTFS;
const noDebian = debianRootless && fs.existsSync(path.join(debianRootless, 'lib/systemd/systemd'))
  ? false
  : lane(`no Debian rootfs owned by this user's mapped ids (test/fixtures/debian-rootfs-rootless.sh USER builds it; NSBOX_ROOTLESS_DEBIAN_ROOTFS=${debianRootless})`);

t.test('rootless Debian systemd machine boots to running or degraded, exec works, and stops', { skip: notRootless || noDebian || noCgroup() }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-rl-sd-');
  const m = await Machine.start({ name: 'debian', rootfs: debianRootless, init: ['/sbin/init'], ephemeral: true, stateDir, waitReady: true, readyTimeout: 180000 });
  const state = await m.run(['systemctl', 'is-system-running']);
  t.match(state.stdout.toString().trim(), /^(running|degraded)$/, `systemd says ${state.stdout.toString().trim()}`);
  if (state.stdout.toString().trim() === 'degraded') {
    const failed = await m.run(['systemctl', '--failed', '--no-legend']);
    t.comment(`failed units: ${failed.stdout.toString().trim()}`);
  }
  const who = await m.run(['sh', '-c', 'cat /proc/1/comm; id -u; head -1 /proc/self/uid_map']);
  t.match(who.stdout.toString(), new RegExp(`^systemd\\n0\\n\\s*0\\s+${uid}\\s+1`), 'systemd is PID 1; exec is root there, the caller on the host');
  const { killed } = await m.stop({ timeout: 60000 });
  t.equal(killed, false, 'systemd halted by itself');
  await m.destroy();
});

t.test('nothing is left behind by this file', async (t) => {
  await assertNoLeaks(t, before, 'after the user namespace tests');
});
