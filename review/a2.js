'use strict';
const fs = require('fs'), path = require('path');
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
(async () => {
  const tgt = process.argv[2];
  const r = path.join(__dirname, 'roots', 'etcsym2');
  fs.rmSync(r, { recursive: true, force: true });
  require('child_process').execFileSync('cp', ['-a', bb, r]);
  fs.rmSync(path.join(r, 'etc'), { recursive: true, force: true });
  fs.symlinkSync(tgt, path.join(r, 'etc'));
  const before = require('child_process').execFileSync('find', [r, '-newer', path.join(r, 'etc')]).toString();
  const res = await run({ rootfs: r, readonly: process.argv[3] === 'ro', command: ['/bin/sh', '-c', `ls -la ${tgt}; grep -E "nsbox/etc" /proc/self/mountinfo`] }).then((x) => x.stdout.toString() + x.stderr, (e) => e.code + ' ' + e.message + ' ' + JSON.stringify(e));
  console.log(res);
  console.log('host files changed:', require('child_process').execFileSync('find', [r, '-newer', path.join(r, 'etc'), '-ls']).toString());
})();
