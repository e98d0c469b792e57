// Issue #16, item 9c: every root `userns: true` container shared one host id range, so container
// root in one was the same host uid as container root in every other, and read what the others kept
// private on a volume they shared. Each container (and machine) now leases a range of its own.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, spawn, Machine } = require('../..');
const { busyboxRootfs, warmUp, assertNoLeaks, machineStateDir, isRoot, shiftedRootfs } = require('../helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const notRoot = isRoot() ? false : 'root in the initial user namespace: rootless containers map their own subordinate range (test/85-rootless)';
const stateDir = machineStateDir(t, 'nsbox-ranges-');
let before;
let userns;

t.before(async () => {
  if (notRoot) return;
  userns = require('../../dist/userns');
  before = await warmUp();
});

/** The host range container root is, from a uid_map line as the container reads it. */
const hostRoot = (text) => {
  const f = text.trim().split('\n')[0].trim().split(/\s+/).map(Number);
  return { inside: f[0], host: f[1], size: f[2] };
};

/** Lease files (by first host uid) owned by any of the given pids. */
function leasesOf(pids) {
  const dir = userns.USERNS_LEASE_DIR;
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((n) => /^\d+$/.test(n)).filter((n) => {
    try {
      return pids.includes(JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')).pid);
    } catch {
      return false;
    }
  });
}

async function untilLine(stream) {
  let buf = '';
  for await (const chunk of stream) {
    buf += chunk;
    if (buf.includes('\n')) return buf;
  }
  return buf;
}

t.test('finding 9c: a userns container cannot read the private files of another on a shared volume', { skip: notRoot || noBusybox }, async (t) => {
  const vol = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-shared-vol-'));
  fs.chmodSync(vol, 0o1777);
  t.teardown(() => fs.rmSync(vol, { recursive: true, force: true }));
  const mounts = [{ type: 'bind', source: vol, target: '/mnt' }];
  // A keeps a 0600 file there and stays up; B, root in its own namespace, tries to read and change it.
  const a = spawn({ rootfs: bb, userns: true, mounts, command: ['/bin/sh', '-c', 'umask 077; echo a-secret > /mnt/a; cat /proc/self/uid_map; exec sleep 60'] });
  const aMap = hostRoot(await untilLine(a.stdout));
  const b = await run({
    rootfs: bb, userns: true, mounts,
    command: ['/bin/sh', '-c', 'cat /proc/self/uid_map; cat /mnt/a && echo READ; echo b >> /mnt/a && echo WROTE; chmod 666 /mnt/a && echo CHMOD; rm -f /mnt/a && echo REMOVED; true'],
  });
  a.kill('SIGKILL');
  await a.wait();
  const out = b.stdout.toString();
  const bMap = hostRoot(out);
  t.equal(aMap.inside, 0);
  t.equal(bMap.inside, 0);
  t.ok(aMap.size >= 65536 && bMap.size >= 65536, 'each maps a full range');
  t.ok(aMap.host + aMap.size <= bMap.host || bMap.host + bMap.size <= aMap.host, `disjoint host ranges: ${aMap.host}+${aMap.size} and ${bMap.host}+${bMap.size}`);
  t.notMatch(out, /READ|WROTE|CHMOD|REMOVED/, "B neither read, wrote, chmod'ed nor removed A's file");
  t.equal(fs.readFileSync(path.join(vol, 'a'), 'utf8'), 'a-secret\n', "A's file is as A left it");
  t.equal(fs.statSync(path.join(vol, 'a')).uid, aMap.host, "it belongs to A's host root");
  t.same(leasesOf([a.pid, process.pid]), [], 'both leases are gone once both are waited for');
});

t.test('finding 9c: concurrent userns containers and pooled ones each get a range no other running one has', { skip: notRoot || noBusybox }, async (t) => {
  const { createPool } = require('../..');
  const cs = Array.from({ length: 6 }, () => spawn({ rootfs: bb, userns: true, command: ['/bin/sh', '-c', 'cat /proc/self/uid_map /proc/self/gid_map; exec sleep 60'] }));
  const maps = [];
  for (const c of cs) {
    const text = await untilLine(c.stdout);
    maps.push(hostRoot(text).host);
  }
  const pool = createPool({ rootfs: bb, userns: true, size: 2 });
  const pooled = await pool.run(['/bin/cat', '/proc/self/uid_map']);
  maps.push(hostRoot(pooled.stdout.toString()).host);
  t.equal(new Set(maps).size, maps.length, `seven distinct ranges: ${maps.join(', ')}`);
  const held = leasesOf(cs.map((c) => c.pid));
  t.equal(held.length, 6, 'one lease per running container, held by its PID 1');
  for (const c of cs) c.kill('SIGKILL');
  await Promise.all(cs.map((c) => c.wait()));
  await pool.close();
  t.same(leasesOf(cs.map((c) => c.pid)), [], 'released once waited for');
});

t.test('finding 9c: a failed start releases its range, and a crashed holder\'s lease is reclaimed', { skip: notRoot || noBusybox }, async (t) => {
  const err = await run({ rootfs: bb, userns: true, command: ['/no/such/command'] }).catch((e) => e);
  t.equal(err.code, 'ENOENT', 'the start failed');
  t.same(leasesOf([process.pid]), [], 'no lease left by the failed start');
  // A holder that died without releasing (its pid is gone): its range is handed out again.
  const { ranges } = userns.idRangePool();
  const first = ranges[0];
  const stale = path.join(userns.USERNS_LEASE_DIR, String(first.uid));
  let planted = false;
  if (!fs.existsSync(stale)) {
    fs.mkdirSync(userns.USERNS_LEASE_DIR, { recursive: true, mode: 0o700 });
    fs.writeFileSync(stale, JSON.stringify({ pid: 2 ** 22 + 1, start: '1', uid: first.uid, gid: first.gid }), { mode: 0o600 });
    planted = true;
  }
  const r = await run({ rootfs: bb, userns: true, command: ['/bin/cat', '/proc/self/uid_map'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  if (planted) {
    // Nothing else held the first range, so the dead holder's lease was the only thing in the way.
    t.equal(hostRoot(r.stdout.toString()).host, first.uid, 'the dead holder\'s range was reclaimed and reused');
  }
  t.notOk(fs.existsSync(stale) && JSON.parse(fs.readFileSync(stale, 'utf8')).pid === 2 ** 22 + 1, 'the stale lease is gone');
});

t.test('finding 9c, machines: a rootfs owned by a range runs with that range, and only one machine at a time', { skip: notRoot || noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-owned-'));
  fs.chmodSync(dir, 0o755);  // the machine's root (an unprivileged host id) walks to its rootfs
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = path.join(dir, 'rootfs');
  // The last range of the pool: nothing else in this run leases it (ranges go lowest first).
  const { ranges } = userns.idRangePool();
  const own = ranges[ranges.length - 1];
  shiftedRootfs(rootfs, own);
  const m = await Machine.start({ name: 'owned', rootfs, userns: true, stateDir });
  t.teardown(() => m.stop({ timeout: 5000 }).catch(() => {}));
  const r = await m.run(['/bin/sh', '-c', 'cat /proc/self/uid_map; stat -c %u:%g /etc; touch /etc/written && echo WROTE']);
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.same(hostRoot(r.stdout.toString()), { inside: 0, host: own.uid, size: 65536 }, "the machine's root is the rootfs's owner");
  t.match(r.stdout.toString(), /\n0:0\n/, 'its files are root\'s inside');
  t.match(r.stdout.toString(), /WROTE/, 'and writable by its root');
  t.equal(fs.statSync(path.join(rootfs, 'etc', 'written')).uid, own.uid, 'a file it writes belongs to its range on the host');
  await t.rejects(Machine.start({ name: 'owned-twice', rootfs, userns: true, stateDir }), { code: 'EBUSY', step: 'userns' }, 'a second machine on the same rootfs would share its ids: refused');
  t.notOk(fs.existsSync(path.join(stateDir, 'owned-twice')), 'the refused machine left no state');
  await m.stop({ timeout: 5000 });
  t.same(leasesOf([m.pid]), [], 'stopping releases the range');
  const again = await Machine.start({ name: 'owned-again', rootfs, userns: true, stateDir });
  const r2 = await again.run(['/bin/cat', '/proc/self/uid_map']);
  t.equal(hostRoot(r2.stdout.toString()).host, own.uid, 'the same range on the next start');
  await again.stop({ timeout: 5000 });
  for (const name of ['owned', 'owned-again']) await (await Machine.get(name, { stateDir }))?.destroy();
});

t.test('finding 9c, machines: machines on a host-owned rootfs get ranges of their own, and exec joins its machine\'s', { skip: notRoot || noBusybox }, async (t) => {
  const a = await Machine.start({ name: 'eph-a', rootfs: bb, ephemeral: true, userns: true, stateDir });
  const b = await Machine.start({ name: 'eph-b', rootfs: bb, ephemeral: true, userns: true, stateDir });
  const ma = hostRoot((await a.run(['/bin/cat', '/proc/self/uid_map'])).stdout.toString());
  const mb = hostRoot((await b.run(['/bin/cat', '/proc/self/uid_map'])).stdout.toString());
  t.not(ma.host, mb.host, `two ranges: ${ma.host} and ${mb.host}`);
  t.equal(fs.readFileSync(`/proc/${a.pid}/uid_map`, 'utf8').trim().split(/\s+/)[1], String(ma.host), "exec ran in machine A's namespace");
  await a.stop({ timeout: 5000 });
  await b.stop({ timeout: 5000 });
  t.same(leasesOf([a.pid, b.pid]), [], 'both ranges released');
  for (const name of ['eph-a', 'eph-b']) await (await Machine.get(name, { stateDir }))?.destroy();
});

t.test('rootless callers are unchanged: their containers map the caller, and take no lease', { skip: isRoot() ? 'a rootless caller (the rootless lane runs this file)' : noBusybox }, async (t) => {
  const me = process.geteuid();
  const r = await run({ rootfs: bb, command: ['/bin/cat', '/proc/self/uid_map'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.same(hostRoot(r.stdout.toString()), { inside: 0, host: me, size: 1 }, 'container root is the caller');
  const { probe } = require('../..');
  t.equal((await probe()).userns.ranges, null, 'probe() reports no range pool for a rootless caller');
});

t.test('nothing left behind', { skip: notRoot || noBusybox }, async (t) => {
  await assertNoLeaks(t, before, 'after the id range tests');
});
