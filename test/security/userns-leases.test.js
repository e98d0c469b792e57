// The attacks a review made on the id range leases of issue #16 (9c), each failing before its fix:
// a reused pid that released another container's lease, leases recorded without a start time, a lease
// that cannot be handed over (a full /run), entries that are not leases, a stopped machine's range taken.
// Each runs in userns-lease-runner.js, in a pid namespace of its own with private lease directories.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { busyboxRootfs, isRoot } = require('../helpers');

const { reason: noBusybox } = busyboxRootfs();
const hasUnshare = spawnSync('unshare', ['--help']).status === 0;
const skip = !isRoot() ? 'root in the initial user namespace (leased ranges are for root callers)' : noBusybox || (hasUnshare ? false : 'unshare (util-linux) is not installed');
const { USERNS_LEASE_DIR, USERNS_RESERVE_DIR } = isRoot() ? require('../../dist/userns') : {};

function scenario(name, arg = '') {
  for (const d of [USERNS_LEASE_DIR, USERNS_RESERVE_DIR]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
  const script = `mount -t tmpfs -o mode=0700 nsbox-test ${USERNS_LEASE_DIR} && mount -t tmpfs -o mode=0700 nsbox-test ${USERNS_RESERVE_DIR} || exit 9
    "${process.execPath}" "${path.join(__dirname, 'userns-lease-runner.js')}" ${name} ${arg}
    rc=$?; exit $rc`;
  // bash stays PID 1 of the namespace (the command after the runner keeps it from exec'ing it),
  // reaping what the runner leaves, as an init would.
  const r = spawnSync('unshare', ['-m', '-p', '-f', '--mount-proc', '--propagation', 'private', 'bash', '-c', script], { encoding: 'utf8', timeout: 120000 });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last);
  } catch {
    return { unparsed: r.stdout + r.stderr, status: r.status };
  }
}

t.test('a reused pid does not release the lease of the container that now has it (Machine.get of a dead machine)', { skip }, async (t) => {
  const r = scenario('pidReuse', 'get');
  t.equal(r.reused, true, `the container's PID 1 reused the dead machine's pid (${JSON.stringify(r)})`);
  t.ok(r.cLeaseKept, "the container's lease is still there");
  t.not(r.other, r.cRange, 'the next container gets another range');
});

t.test('a reused pid does not release the lease of the container that now has it (a machine of the same name started again)', { skip }, async (t) => {
  const r = scenario('pidReuse', 'restart');
  t.equal(r.reused, true, JSON.stringify(r));
  t.ok(r.cLeaseKept, "the container's lease is still there");
  t.not(r.other, r.cRange, 'the restarted machine gets another range');
});

t.test('a lease without its owner\'s start time is never live, and containers that exit at once record one', { skip }, async (t) => {
  const r = scenario('nullStart');
  t.equal(r.range, r.first, `the planted lease was reclaimed: its range was given out (${JSON.stringify(r)})`);
  t.ok(r.quickStarts.every((s) => typeof s === 'string'), `start times recorded: ${JSON.stringify(r.quickStarts)}`);
  t.same(r.left, {}, 'no lease left');
});

for (const kind of ['app', 'machine']) {
  t.test(`a lease that cannot be handed to PID 1 fails the start and leaves nothing running (${kind})`, { skip }, async (t) => {
    const r = scenario('handover', kind);
    t.match(r.err, { name: 'NsboxError', code: 'EISDIR', step: 'userns', path: /\.tmp-\d+$/ }, `the hand-over failed, after the clone (${JSON.stringify(r)})`);
    t.same(r.running, [], 'no process of that start runs on');
    t.same(r.left, {}, 'no lease left');
    t.equal(r.machines, 0, 'no machine state');
  });
}

t.test('entries that are not leases are skipped, and an unusable lock is an NsboxError', { skip }, async (t) => {
  const r = scenario('malformed');
  t.ok(r.range !== undefined && !r.avoided.includes(r.range), `started with a range that neither entry names (${JSON.stringify(r)})`);
  t.match(r.lockErr, { name: 'NsboxError', step: 'userns' }, 'the lock being a directory is reported with its step');
});

t.test('a stopped persistent machine keeps its range from containers, until its rootfs is gone', { skip }, async (t) => {
  const r = scenario('stoppedMachine');
  t.same(r.reserved, [String(r.own)], `the range is reserved for the rootfs (${JSON.stringify(r)})`);
  t.not(r.cRange, r.own, 'a container started while the machine is stopped gets another range');
  t.equal(r.mRange, r.own, 'the machine starts again with its range');
  t.same(r.reservedAfter, [], 'the reservation goes with the rootfs');
});

t.test("a persistent machine's reservation survives its rootfs being out of sight, and a chown of its own root", { skip }, async (t) => {
  const r = scenario('reservationKept');
  t.equal(r.chownExit, 0, `the machine's root changed the owner of its "/" (${JSON.stringify(r)})`);
  t.not(r.whileAway, r.own, 'a container started while the disk is away does not get the range');
  t.equal(r.back, r.own, 'the machine gets its range back');
  t.same(r.reserved, [String(r.own)], 'the reservation is still there');
});
