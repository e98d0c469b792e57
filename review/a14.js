'use strict';
// permissions short of 'rwm' for a device on nsbox's fixed allow-list (1:3, 1:5, 5:0, 5:2, 136:*, 10:200) are not enforced.
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
(async () => {
  for (const p of ['/dev/null', '/dev/net/tun']) {
    const r = await run({ rootfs: bb, devices: [{ path: p, containerPath: '/dev/ro-dev', permissions: 'r' }], command: ['/bin/sh', '-c', 'ls -l /dev/ro-dev; echo x > /dev/ro-dev && echo WRITE-ALLOWED'] });
    console.log(p, "permissions 'r':", r.stdout.toString() + r.stderr);
  }
})();
