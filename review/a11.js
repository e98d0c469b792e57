'use strict';
const fs = require('fs'), path = require('path'), cp = require('child_process');
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
(async () => {
  const r = path.join(__dirname, 'roots', 'a11');
  fs.rmSync(r, { recursive: true, force: true });
  cp.execFileSync('cp', ['-a', bb, r]);
  fs.rmSync(path.join(r, 'etc'), { recursive: true, force: true });
  fs.symlinkSync(process.argv[2] || '/data/a/b/c', path.join(r, 'etc'));
  const d = path.join(__dirname, 'hostdata');
  fs.rmSync(d, { recursive: true, force: true }); fs.mkdirSync(d);
  const res = await run({ rootfs: r, mounts: [{ type: 'bind', source: d, target: '/data' }], command: ['/bin/true'] }).then((x) => 'exit ' + x.exitCode, (e) => e.code + ' ' + e.message);
  console.log(res, cp.execFileSync('find', [d, '-ls']).toString());
})();
