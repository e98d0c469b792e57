// A diagnostic, not a test: the timeline of a memory hog under `memory: '64M'`, one line every
// 250 ms with memory.current, the memory.stat figures that tell reclaim from thrash (anon, file,
// file_mapped, shmem, workingset_refault_file, pgscan, pgsteal, pgmajfault), memory.events, the
// first line of memory.pressure, and the hog's state and kernel stack. It is how issue #17's slow
// kills were explained (see CHANGELOG.md): at the limit an interpreter's file-backed code pages are
// reclaimed and faulted back, and the OOM killer waits until reclaim stops making progress.
//
//   NSBOX_VM_NO_ROOTLESS=1 bash test/vm/run.sh test/vm/memory-timeline.js
// HOGS picks them (pylist, pylist-tmpfs, node, bash; default pylist,pylist-tmpfs: run.sh passes no
// environment into the VM, so there it is the default). Needs the Debian tools rootfs
// (test/fixtures/debian-tools-rootfs.sh) and the memory controller (the VM lane).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('../..');

const rootfs = process.env.NSBOX_DEBIAN_TOOLS_ROOTFS || '/var/cache/nsbox-test/debian-tools';
const pyList = 'import sys\nn = int(sys.argv[1]) * 1024\nl = []\nwhile n < 0 or len(l) < n:\n    l.append(bytearray(1024))\n';
const libs = ['libc.so.6', 'libm.so.6', 'libz.so.1', 'libexpat.so.1'].map((l) => `/lib/x86_64-linux-gnu/${l}`).join(' ');
const hogs = {
  pylist: ['/usr/bin/python3', '-c', pyList, '-1'],
  // The same, with the interpreter and its libraries on a tmpfs (charged, but not reclaimable without swap).
  'pylist-tmpfs': ['/bin/sh', '-c', `cp /usr/bin/python3.11 /mnt/py && cp ${libs} /mnt/ && LD_LIBRARY_PATH=/mnt exec /mnt/py -c "$0" -1`, pyList],
  node: ['/usr/bin/node', '-e', 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));'],
  bash: ['/bin/bash', '-c', 'a=xxxxxxxxxxxxxxxx; while true; do a="$a$a"; done'],
};

function sample(name, c, t0) {
  const rd = (f) => {
    try {
      return fs.readFileSync(path.join(c.cgroupPath, f), 'utf8');
    } catch (e) {
      return e.code;
    }
  };
  const st = rd('memory.stat');
  const pick = (k) => (new RegExp(`^${k} (\\d+)`, 'm').exec(st) || [])[1] ?? '?';
  let stack;
  try {
    stack = fs.readFileSync(`/proc/${c.pid}/stack`, 'utf8').split('\n').slice(0, 6).map((l) => l.replace(/^\[<0>\] /, '').replace(/\+.*/, '')).join('<');
  } catch (e) {
    stack = e.code;
  }
  let state = '';
  try {
    state = /State:\s+(.*)/.exec(fs.readFileSync(`/proc/${c.pid}/status`, 'utf8'))[1];
  } catch {
    /* gone */
  }
  const stat = ['anon', 'file', 'file_mapped', 'shmem', 'workingset_refault_file', 'pgscan', 'pgsteal', 'pgmajfault'].map((k) => `${k}=${pick(k)}`).join(' ');
  console.log(`${name} t=${Date.now() - t0}ms cur=${rd('memory.current').trim()} ${stat} | ${rd('memory.events').replace(/\n/g, ' ')}| ${rd('memory.pressure').split('\n')[0]} | ${state} | ${stack}`);
}

(async () => {
  for (const name of (process.env.HOGS || 'pylist,pylist-tmpfs').split(',')) {
    if (!hogs[name]) throw new Error(`unknown hog ${name}; known: ${Object.keys(hogs).join(', ')}`);
    const c = spawn({
      rootfs, command: hogs[name], limits: { memory: '64M' }, timeout: 60000, stdio: 'ignore',
      mounts: [{ type: 'tmpfs', target: '/mnt', size: '1G' }],
    });
    const t0 = Date.now();
    const iv = setInterval(() => sample(name, c, t0), 250);
    const r = await c.wait();
    clearInterval(iv);
    console.log(`${name}: ${JSON.stringify({ oomKilled: r.oomKilled, signal: r.signal, durationMs: Math.round(r.durationMs), timedOut: r.timedOut })}`);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
