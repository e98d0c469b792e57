'use strict';
const fs = require('fs'), path = require('path'), cp = require('child_process');
const lib = process.argv[2];
const { run } = require(lib);
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
(async () => {
  const r = path.join(__dirname, 'roots', 'a8');
  fs.rmSync(r, { recursive: true, force: true });
  cp.execFileSync('cp', ['-a', bb, r]);
  fs.rmSync(path.join(r, 'etc/resolv.conf'));
  fs.symlinkSync('../run/systemd/resolve/stub-resolv.conf', path.join(r, 'etc/resolv.conf'));
  const res = await run({ rootfs: r, command: ['/bin/cat', '/etc/hosts'] }).then((x) => 'exit ' + x.exitCode, (e) => e.code + ' ' + e.message);
  console.log(lib, res);
})();
