// The planner of missing mount points (lib/root-walk.ts resolveInRoot) walked the rootfs on the host
// with lstat/readlink on host paths (path.join(rootfs, ...dirs so far, name)); it now opens each
// component O_PATH | O_NOFOLLOW relative to the fd of the one before. Found by review (#17). The rootfs is the
// attacker's: a writable container on the same rootfs (readonly: false), a machine's root or the
// rootless caller's own image can swap a directory it has already walked for a symlink while the
// walk goes on. The next lstat then follows that link ON THE HOST, and what the host has there
// (the text of a host symlink, whether a host directory exists, its mode) becomes the names and
// modes of the directories made in the overlay's upper layer, which the container then lists.
//
// The second test: the same walk, synchronous on Node's thread, costs what the image wants (40
// links of ~1600 components each); a start that fails drops the plan, so every start pays it again.
// The third: a file mount point that exists is opened for writing in the overlay (OP_TOUCH), which
// copies the whole file up into the upper tmpfs (no size limit): host RAM for the container's life.
//
// The first test wins the race deterministically (fs.lstatSync, now fs.openSync, is wrapped to swap /a for a link to
// a host directory right after the walk has seen /a as a directory: what a racer that flips /a with
// renameat2(RENAME_EXCHANGE) in a loop wins about 1 start in 20; review/race1.js does it for real
// from a readonly:false container on the same rootfs and sees the Node process's cwd, read through
// the host's /proc/<pid>/cwd, appear as directories in the container's root).
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, NsboxError } = require('../..');
const { busyboxRootfs } = require('../helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();

t.test('planning a missing mount point never follows a link swapped into the rootfs on the host', { skip: noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-mp-race-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = path.join(dir, 'rootfs');
  fs.cpSync(bb, rootfs, { recursive: true, verbatimSymlinks: true });
  // The image: real directories /a/link (the mount point /a/link/newpt is missing: overlay).
  fs.mkdirSync(path.join(rootfs, 'a', 'link'), { recursive: true });
  // The host side, outside the rootfs: a directory holding a symlink whose text is a host secret.
  const marker = `host-secret-${process.pid}-${Date.now()}`;
  const hostSide = path.join(dir, 'host-side');
  fs.mkdirSync(hostSide);
  fs.symlinkSync(`/${marker}/deeper`, path.join(hostSide, 'link'));

  // The race, won every time: once the walk has seen /a as a directory, /a becomes a link to the
  // host directory (a path that does not even exist inside the root); it is a directory again as
  // soon as the walk looks anywhere else, so the child finds the image as it was.
  const a = path.join(rootfs, 'a');
  // The planner opens each component relative to its directory's fd (/proc/self/fd/N/name): the
  // swap happens right before it opens "link", after it has opened /a.
  const realOpen = fs.openSync;
  let swapped = false;
  let swaps = 0;
  fs.openSync = function (p, ...rest) {
    const s = String(p);
    if (!swapped && /^\/proc\/self\/fd\/\d+\/link$/.test(s)) {
      fs.renameSync(a, a + '.real');
      fs.symlinkSync(hostSide, a);
      swapped = true;
      swaps++;
    } else if (swapped && !/^\/proc\/self\/fd\//.test(s)) {
      fs.unlinkSync(a);
      fs.renameSync(a + '.real', a);
      swapped = false;
    }
    return realOpen.call(fs, p, ...rest);
  };
  let r;
  try {
    r = await run({ rootfs, mounts: [{ type: 'tmpfs', target: '/a/link/newpt' }], command: ['/bin/sh', '-c', 'ls /'] }).catch((e) => e);
  } finally {
    fs.openSync = realOpen;
    if (swapped) {
      fs.unlinkSync(a);
      fs.renameSync(a + '.real', a);
    }
  }
  t.ok(swaps > 0, 'the planner walked /a/link (the race had something to win)');
  if (r instanceof NsboxError) {
    t.pass(`refused: ${r.message}`);
  } else {
    t.notMatch(r.stdout.toString(), marker, 'the text of a host symlink outside the rootfs is not shown in the container\'s root');
  }
  t.notOk(fs.existsSync(path.join(rootfs, marker)), 'nothing made in the rootfs');
});

t.test('planning a hostile rootfs\'s link chains does not hold the event loop', { skip: noBusybox }, async (t) => {
  const { buildFsOps } = require('../../dist/fsops');
  const { resolveAppOptions } = require('../../dist/options');
  const { staging } = require('../../dist/runtime');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-mp-chain-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = path.join(dir, 'rootfs');
  fs.cpSync(bb, rootfs, { recursive: true, verbatimSymlinks: true });
  fs.mkdirSync(path.join(rootfs, 'deep', 'x'), { recursive: true });
  const hop = Array(815).fill('x/..').join('/');
  // 40 links of ~4 KB each, the last one into /tmp (a tmpfs in the container: the start fails
  // there, so the plan is dropped and the next start plans again).
  for (let i = 0; i < 40; i++) fs.symlinkSync(i === 39 ? '/tmp/gone' : `${hop}/l${i + 1}`, path.join(rootfs, 'deep', `l${i}`));
  const o = resolveAppOptions({ rootfs, command: ['/bin/true'], mounts: Array.from({ length: 4 }, (_, i) => ({ type: 'tmpfs', target: `/deep/l0/n${i}` })) });
  const t0 = process.hrtime.bigint();
  buildFsOps(o, staging(), !require('../../dist/runtime').privileged());
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  t.ok(ms < 250, `planning four mount points took ${ms.toFixed(0)} ms of synchronous lstat/readlink on Node's thread`);
});

t.test('an existing file mount point is not copied into the overlay\'s upper layer', { skip: noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-mp-copyup-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = path.join(dir, 'rootfs');
  fs.cpSync(bb, rootfs, { recursive: true, verbatimSymlinks: true });
  // The image's /etc/app.conf: 256 MiB of real data (a sparse file would be copied up sparse).
  const fd = fs.openSync(path.join(rootfs, 'etc', 'app.conf'), 'w', 0o644);
  const chunk = Buffer.alloc(1 << 20, 0x61);
  for (let i = 0; i < 256; i++) fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  const conf = path.join(dir, 'app.conf');
  fs.writeFileSync(conf, 'from the host\n');
  const shmem = async (extra) => {
    const r = await run({ rootfs, mounts: [{ type: 'bind', source: conf, target: '/etc/app.conf' }, ...extra], command: ['/bin/sh', '-c', 'grep ^Shmem: /proc/meminfo; cat /etc/app.conf'] });
    t.match(r.stdout.toString(), /from the host/);
    return Number(/Shmem:\s+(\d+)/.exec(r.stdout.toString())[1]) / 1024;
  };
  const bind = await shmem([]);
  const overlay = await shmem([{ type: 'tmpfs', target: '/newpt' }]);
  t.ok(overlay - bind < 64, `shared memory while the container ran: ${bind.toFixed(0)} MiB with every point present, ${overlay.toFixed(0)} MiB with one missing (the 256 MiB file copied up into the tmpfs?)`);
});

t.test('a plain rootfs is walked as a directory, not as an image layer: a 0/0 device and an opaque xattr mean nothing there', { skip: process.getuid() !== 0 && 'needs root (mknod, trusted.* xattrs)' }, async (t) => {
  // resolveInRoot is the merged walk over one plain directory (xattrs: null); in an image layer a
  // 0/0 character device is a whiteout that hides the name, in a rootfs it is a device node.
  const { resolveInRoot } = require('../../dist/root-walk');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-plain-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const { spawnSync } = require('node:child_process');
  t.equal(spawnSync('mknod', [path.join(root, 'wh'), 'c', '0', '0']).status, 0, 'mknod');
  fs.mkdirSync(path.join(root, 'd'));
  fs.mkdirSync(path.join(root, 'd', 'sub'));
  spawnSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path.join(root, 'd')]);
  t.same(resolveInRoot(root, '/wh'), { at: [], kind: 'other', rest: null }, 'the 0/0 device is an entry');
  t.same(resolveInRoot(root, '/wh/x'), { at: [], kind: null, rest: null }, 'and no directory');
  t.equal(resolveInRoot(root, '/d/sub').kind, 'dir', 'a directory with an opaque xattr is a directory');
  t.same(resolveInRoot(root, '/d/missing/x').rest, ['missing', 'x'], 'a missing name gives the rest');
});
