'use strict';
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
const sh = (cmd, extra = {}) => run({ rootfs: bb, command: ['/bin/sh', '-c', cmd], ...extra }).then(
  (r) => ({ code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() }), (e) => ({ err: `${e.code} ${e.message}` }));
const T = 'ls -la /dev/loop0 /dev/x 2>&1; dd if=/dev/loop0 of=/dev/null bs=512 count=1 2>&1 | tail -1; echo read=$?; dd if=/dev/zero of=/dev/loop0 bs=512 count=1 conv=notrunc 2>&1|tail -1; echo write; ';
const MK = 'for n in "c 7 0" "b 254 0" "b 7 1" "c 10 237" "b 7 0" "c 1 1"; do rm -f /dev/n; mknod /dev/n $n 2>&1 && echo "mknod $n ok"; head -c 16 /dev/n >/dev/null 2>&1 && echo "OPEN $n READ OK" || echo "open $n denied"; done; grep -E "/dev|tmp" /proc/self/mountinfo | cut -d" " -f5,6';
(async () => {
  if (0) console.log('r only', await sh(T, { devices: [{ path: '/dev/loop0', permissions: 'r' }] }));
  if(0) console.log('rm', await sh(T, { devices: [{ path: '/dev/loop0', permissions: 'rm' }] }));
  if(0) console.log('rw', await sh(T, { devices: [{ path: '/dev/loop0', permissions: 'rw' }] }));
  console.log('MKNOD cap + loop0', await sh(MK, { capabilities: { add: ['MKNOD'] }, devices: ['/dev/loop0'] }));
  console.log('MKNOD cap no dev', await sh(MK, { capabilities: { add: ['MKNOD'] } }));
  if(0) console.log('userns r', await sh(T + 'cat /proc/self/uid_map', { userns: true, devices: [{ path: '/dev/loop0', permissions: 'r' }] }));
  if(0) console.log('userns rwm +MKNOD', await sh(T + MK, { userns: true, capabilities: { add: ['MKNOD', 'SYS_ADMIN'] }, devices: ['/dev/loop0'] }));
})();
