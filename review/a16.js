'use strict';
// The /etc binds with the per-component walk forced (NSBOX_FORCE_PATH_WALK=1): a symlinked
// /etc/hosts pointing out of the root, relative and absolute, must stay inside the root.
const fs = require('fs'), path = require('path'), os = require('os');
const { run } = require('..');
const { busyboxRootfs } = require('../test/helpers');
const bb = busyboxRootfs().rootfs;
(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rev-walk-'));
  fs.writeFileSync(path.join(dir, 'victim'), 'host victim\n');
  for (const tgt of [path.join(dir, 'victim'), '../../../../../../../..' + path.join(dir, 'victim')]) {
    const r = path.join(dir, 'rootfs');
    fs.rmSync(r, { recursive: true, force: true });
    fs.cpSync(bb, r, { recursive: true, verbatimSymlinks: true });
    fs.rmSync(path.join(r, 'etc/hosts'));
    fs.symlinkSync(tgt, path.join(r, 'etc/hosts'));
    for (const readonly of [false, true]) {
      const res = await run({ rootfs: r, readonly, command: ['/bin/sh', '-c', 'grep " /etc\\| /work\\| /tmp" /proc/self/mountinfo | cut -d" " -f4,5'] }).then((x) => x.stdout.toString(), (e) => e.code + ' ' + e.message);
      console.log(process.env.NSBOX_FORCE_PATH_WALK ? 'walk' : 'openat2', 'ro=' + readonly, tgt.slice(0, 30), '=>', res.replace(/\n/g, ' | '));
    }
  }
  console.log('host victim:', fs.readFileSync(path.join(dir, 'victim'), 'utf8').trim(), fs.readdirSync(dir));
  fs.rmSync(dir, { recursive: true, force: true });
})();
