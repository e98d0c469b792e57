'use strict';
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
const sh = (cmd, extra = {}) => run({ rootfs: bb, command: ['/bin/sh', '-c', cmd], ...extra }).then(
  (r) => (r.stdout.toString() + r.stderr.toString()), (e) => `ERR ${e.code} ${e.message}`);
const C = 'grep " /etc/hosts " /proc/self/mountinfo | cut -d" " -f4; mount -o remount,bind,rw /etc/hosts 2>&1; echo EVIL >> /etc/hosts 2>&1 && echo WROTE';
(async () => {
  for (const caps of [undefined, { add: ['SYS_ADMIN'] }, { add: ['sys_admin'] }, { add: ['CAP_SYS_ADMIN'] }, { add: ['ALL'] }, { add: ['ALL'], drop: ['SYS_ADMIN'] }, { add: ['ALL'], drop: ['CAP_SYS_ADMIN'] }]) {
    console.log(JSON.stringify(caps), '=>', (await sh(C, caps ? { capabilities: caps } : {})).replace(/\n/g, ' | '));
  }
  console.log('nested userns:', (await sh('unshare -Urm sh -c "id; mount -o remount,bind,rw /etc/hosts; echo r=\\$?; echo EVIL >> /etc/hosts && echo WROTE" 2>&1')).replace(/\n/g, ' | '));
  console.log('nested userns in userns:', (await sh('unshare -Urm sh -c "mount -o remount,bind,rw /etc/hosts; echo r=\\$?; echo EVIL >> /etc/hosts && echo WROTE" 2>&1', { userns: true })).replace(/\n/g, ' | '));
  console.log('now shared:', (await sh('cat /etc/hosts; grep " /etc/hosts " /proc/self/mountinfo | cut -d" " -f4')).replace(/\n/g, ' | '));
})();
