'use strict';
// A host pty passed with permissions 'r' is writable in the container (136:* is on the fixed list).
const cp = require('child_process');
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
const py = cp.spawn('python3', ['-c', `
import os, pty, sys, select
m, s = pty.openpty(); print(os.ttyname(s), flush=True)
buf=b''
while select.select([m],[],[],8)[0]:
    buf += os.read(m, 100)
print('MASTER READ:', buf, flush=True)
`], { stdio: ['ignore', 'pipe', 'inherit'] });
py.stdout.once('data', async (d) => {
  const tty = d.toString().trim();
  py.stdout.on('data', (x) => console.log(x.toString()));
  const r = await run({ rootfs: bb, devices: [{ path: tty, containerPath: '/dev/hostpty', permissions: 'r' }], command: ['/bin/sh', '-c', 'ls -l /dev/hostpty; echo INJECTED-FROM-CONTAINER > /dev/hostpty && echo WRITE-OK'] });
  console.log(tty, "permissions 'r':", r.stdout.toString() + r.stderr);
});
