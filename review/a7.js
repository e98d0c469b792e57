'use strict';
const fs = require('fs'), path = require('path'), os = require('os'), cp = require('child_process');
const { Machine } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
(async () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rev-etc-'));
  const r = path.join(__dirname, 'roots', 'm1');
  fs.rmSync(r, { recursive: true, force: true });
  cp.execFileSync('cp', ['-a', bb, r]);
  fs.rmSync(path.join(r, 'etc/resolv.conf'));
  fs.symlinkSync('../run/systemd/resolve/stub-resolv.conf', path.join(r, 'etc/resolv.conf'));
  const out = async (m, cmd) => { const x = await m.run(['/bin/sh', '-c', cmd]); return x.stdout.toString() + x.stderr.toString(); };
  for (const ephemeral of [false]) {
    try {
      const m = await Machine.start({ name: 'revetc' + (ephemeral ? 'e' : 'w'), rootfs: r, ephemeral, stateDir, devices: [{ path: '/dev/loop0', permissions: 'r' }] });
      console.log('ephemeral', ephemeral, 'started:', await out(m, 'ls -la /etc/resolv.conf /dev/loop0; grep -E "nsbox/etc|loop0" /proc/self/mountinfo | cut -d" " -f4-6; dd if=/dev/zero of=/dev/loop0 count=1 2>&1 | tail -1; mknod /dev/n b 7 1 && head -c1 /dev/n; mknod /dev/m c 1 1 && head -c1 /dev/m; mount -o remount,rw /etc/hosts; echo remount=$?; echo X >> /etc/hosts && echo WROTE-HOSTS'));
      const st = JSON.parse(fs.readFileSync(path.join(stateDir, 'revetc' + (ephemeral ? 'e' : 'w'), 'state.json'), 'utf8'));
      console.log('state etcDir', st.etcDir, fs.existsSync(st.etcDir));
      await m.stop({ timeout: 5000 }).catch((e) => console.log('stop', e.message));
      console.log('after stop exists', fs.existsSync(st.etcDir));
      await m.destroy().catch(() => {});
      console.log('after destroy exists', fs.existsSync(st.etcDir));
    } catch (e) { console.log('ephemeral', ephemeral, 'FAILED', e.code, e.message); }
  }
  fs.rmSync(stateDir, { recursive: true, force: true });
})();
