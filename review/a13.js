'use strict';
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
(async () => {
  for (const extra of [{ seccomp: 'none' }, { seccomp: 'none', userns: true }]) {
    const r = await run({ rootfs: bb, ...extra, command: ['/bin/sh', '-c', 'grep " /etc/hosts " /proc/self/mountinfo | cut -d" " -f4; unshare -Um sh -c "id; mount -o remount,bind,rw /etc/hosts; echo remount=\\$?; umount /etc/hosts; echo umount=\\$?; echo EVIL >> /etc/hosts && echo WROTE" 2>&1'] }).then((x) => x.stdout + x.stderr, (e) => e.code + e.message);
    console.log(JSON.stringify(extra), r);
  }
})();
