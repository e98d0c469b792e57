// A Debian rootfs (debootstrap minbase + systemd, systemd-sysv, dbus) booted as a machine with its own
// systemd as PID 1: to running/degraded, exec inside, and a clean shutdown by the halt signal.
// The rootfs is built once per host into NSBOX_DEBIAN_ROOTFS (default /var/cache/nsbox-test/debian)
// by test/fixtures/debian-rootfs.sh, which .ci/run calls; the test skips with the reason where it is absent.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Machine } = require('..');
const { warmUp, assertNoLeaks, machineStateDir } = require('./helpers');

const rootfs = process.env.NSBOX_DEBIAN_ROOTFS || '/var/cache/nsbox-test/debian';
const strict = process.env.NSBOX_REQUIRE_SYSTEMD === '1';
const missing = fs.existsSync(path.join(rootfs, 'lib/systemd/systemd')) ? false : `no Debian systemd rootfs at ${rootfs} (bash test/fixtures/debian-rootfs.sh builds it)`;
const skip = strict ? false : missing;
const stateDir = machineStateDir(t, 'nsbox-systemd-');
let before;

t.before(async () => {
  before = await warmUp();
});

t.test('a Debian systemd machine boots to running or degraded, runs exec, and shuts down cleanly', { skip }, async (t) => {
  const m = await Machine.start({ name: 'debian', rootfs, init: ['/sbin/init'], ephemeral: true, stateDir, waitReady: true, readyTimeout: 180000 });
  const state = await m.run(['systemctl', 'is-system-running']);
  t.match(state.stdout.toString().trim(), /^(running|degraded)$/, `systemd says ${state.stdout.toString().trim()}`);
  const pid1 = await m.run(['cat', '/proc/1/comm']);
  t.equal(pid1.stdout.toString().trim(), 'systemd', 'systemd is PID 1');
  // systemd applies /etc/hostname at boot: where the image has one, that is nsbox's generated file
  // (lib/etc.ts), so the machine's host name (its name) stays, whatever the image's said.
  const h = await m.run(['hostname']);
  t.equal(h.stdout.toString().trim(), 'debian', "the machine's host name, not the image's");
  const eh = await m.run(['cat', '/etc/hostname']);
  t.equal(eh.stdout.toString().trim(), 'debian', '/etc/hostname says the same');
  const env = await m.run(['sh', '-c', 'tr "\\0" "\\n" < /proc/1/environ | grep ^container=']);
  t.equal(env.stdout.toString().trim(), 'container=nsbox', 'systemd sees the container interface');
  const cg = await m.run(['sh', '-c', 'stat -fc %T /sys/fs/cgroup; test -w /sys/fs/cgroup/cgroup.procs && echo writable']);
  t.match(cg.stdout.toString(), /cgroup2fs\s+writable/, 'a writable cgroup2 subtree');
  const t0 = Date.now();
  const { killed } = await m.stop({ timeout: 60000 });
  t.equal(killed, false, `systemd shut down by itself on SIGRTMIN+3 (${Date.now() - t0} ms)`);
  t.equal(await m.state(), 'stopped');
  await m.destroy();
});

t.test('nothing is left behind', { skip }, async (t) => {
  await assertNoLeaks(t, before, 'after the systemd machine');
});
