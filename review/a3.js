'use strict';
const fs = require('fs'), path = require('path'), cp = require('child_process');
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
(async () => {
  const [file, tgt, ro, etcFiles] = process.argv.slice(2);
  const r = path.join(__dirname, 'roots', 'a3');
  fs.rmSync(r, { recursive: true, force: true });
  cp.execFileSync('cp', ['-a', bb, r]);
  fs.rmSync(path.join(r, 'etc', file), { recursive: true, force: true });
  fs.symlinkSync(tgt, path.join(r, 'etc', file));
  const o = { rootfs: r, readonly: ro === 'ro', command: ['/bin/sh', '-c', `ls -la /etc/${file}; grep -E "nsbox/etc" /proc/self/mountinfo; echo hi >/dev/null && echo devnull-ok`] };
  if (etcFiles) o.etcFiles = etcFiles === 'true';
  const res = await run(o).then((x) => x.stdout.toString() + x.stderr, (e) => e.code + ' ' + e.message);
  console.log(file, '->', tgt, ro, etcFiles, ':', res);
})();
