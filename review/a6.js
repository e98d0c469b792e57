'use strict';
const fs = require('fs'), cp = require('child_process');
const base = '/run/nsbox/etc';
const mine = (pid) => fs.readdirSync(base).filter((n) => n.startsWith(pid + '-'));
(async () => {
  const child = cp.spawn(process.execPath, ['-e', `
    const { spawn, createPool } = require('/work/wt-review-etc');
    const { busyboxRootfs } = require('/work/wt-review-etc/test/helpers');
    const bb = busyboxRootfs().rootfs;
    spawn({ rootfs: bb, command: ['/bin/sleep', '100'] });
    spawn({ rootfs: bb, command: ['/bin/sleep', '100'] });
    try { const pool = createPool({ rootfs: bb, size: 2 }); } catch (e) { console.error('pool', e.message); }
    setTimeout(() => console.log('up'), 1500);
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => child.stdout.once('data', r));
  console.log('dirs while running:', mine(child.pid));
  process.kill(child.pid, 'SIGKILL');
  await new Promise((r) => child.once('exit', r));
  await new Promise((r) => setTimeout(r, 500));
  console.log('after SIGKILL:', mine(child.pid), 'container sleeps left:', cp.execSync('pgrep -x sleep -P 1 || true').toString().trim());
  const { run } = require('..');
  const { busyboxRootfs } = require('../test/helpers');
  await run({ rootfs: busyboxRootfs().rootfs, command: ['/bin/true'] });
  console.log('after another start:', mine(child.pid));
  console.log('own after run:', mine(process.pid));
})();
