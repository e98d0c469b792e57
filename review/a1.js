'use strict';
const fs = require('fs'), path = require('path');
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
function copyRoot(name) {
  const d = path.join(__dirname, 'roots', name);
  fs.rmSync(d, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(d), { recursive: true });
  require('child_process').execFileSync('cp', ['-a', bb, d]);
  return d;
}
const sh = (rootfs, cmd, extra = {}) => run({ rootfs, command: ['/bin/sh', '-c', cmd], ...extra }).then(
  (r) => ({ code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() }), (e) => ({ err: `${e.code} ${e.message}` }));
(async () => {
  const which = process.argv[2];
  if (which === 'basic') {
    console.log(await sh(bb, 'cat /etc/hosts /etc/resolv.conf /etc/hostname; grep etc /proc/self/mountinfo; echo x >> /etc/hosts; mount -o remount,rw /etc/hosts; echo $?', { readonly: true, hosts: { 'a.b': '1.2.3.4', x: 'fe80::1%a.b:c-d' } }));
  }
  if (which === 'symlinks') {
    for (const [f, tgt] of [['hosts', '/proc/sys/kernel/core_pattern'], ['hosts', '/dev/null'], ['hostname', '/proc/kcore'], ['resolv.conf', '/proc/self/fd/3'], ['hosts', '/proc/1/mountinfo'], ['hosts', '../../../../../../etc/shadow'], ['hosts', '/sys/kernel/uevent_helper'], ['hosts', '/proc/sys/kernel/modprobe']]) {
      const r = copyRoot('sym');
      fs.rmSync(path.join(r, 'etc', f), { force: true });
      fs.symlinkSync(tgt, path.join(r, 'etc', f));
      const res = await sh(r, `ls -la ${tgt} 2>&1; head -c 200 ${tgt}; echo; grep -E "etc/|${tgt}" /proc/self/mountinfo; echo hi > /dev/null && echo devnull-ok`);
      console.log('==', f, '->', tgt, JSON.stringify(res));
      const hostStat = fs.existsSync(tgt) ? 'host ' + tgt + ' ok' : '';
      console.log(hostStat);
    }
  }
  if (which === 'etcsym') {
    // /etc itself a symlink
    for (const tgt of ['/proc/self', '/proc/sys/kernel', '/dev', '/sys', '/proc/1/root/etc', '/proc/self/cwd']) {
      const r = copyRoot('etcsym');
      fs.rmSync(path.join(r, 'etc'), { recursive: true, force: true });
      fs.symlinkSync(tgt, path.join(r, 'etc'));
      const res = await sh(r, `grep -E "nsbox/etc" /proc/self/mountinfo; echo hi > /dev/null && echo devnull-ok`);
      console.log('== /etc ->', tgt, JSON.stringify(res));
    }
  }
  if (which === 'userns') {
    console.log(await sh(bb, 'id; cat /proc/self/uid_map; grep nsbox/etc /proc/self/mountinfo; mount -o remount,bind,rw /etc/hosts; echo remount=$?; echo evil >> /etc/hosts; echo write=$?; umount /etc/hosts; echo umount=$?; cat /etc/hosts', { userns: true, capabilities: { add: ['SYS_ADMIN'] } }));
    console.log(await sh(bb, 'mount -o remount,bind,rw /etc/hosts; echo remount=$?; echo evil >> /etc/hosts; echo write=$?', { capabilities: { add: ['SYS_ADMIN'] } }));
  }
})();
