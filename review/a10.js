'use strict';
const fs = require('fs'), path = require('path');
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
(async () => {
  for (const [ro, mro] of [[true, false], [true, true], [false, false]]) {
    const d = path.join(__dirname, 'hostetc');
    fs.rmSync(d, { recursive: true, force: true }); fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'passwd'), 'root:x:0:0::/:/bin/sh\n');
    const res = await run({ rootfs: bb, readonly: ro, mounts: [{ type: 'bind', source: d, target: '/etc', readonly: mro }], command: ['/bin/sh', '-c', 'ls -la /etc; grep nsbox/etc /proc/self/mountinfo | cut -d" " -f4,5'] })
      .then((r) => r.stdout.toString() + r.stderr, (e) => e.code + ' ' + e.message);
    console.log(`rootfs ro=${ro} mount ro=${mro}:`, res, '\nhost dir now:', fs.readdirSync(d));
  }
})();
