// Attack on 9785a4d (a read-only image root made once and cloned by each start): the prepared
// overlay's superblock is shared by every container of the same op list, also by a container that
// keeps CAP_SYS_ADMIN (capabilities are not in fsops-cache's key, and the share condition does not
// look at them). Such a container reconfigures the shared superblock (a remount without MS_BIND:
// sync, lazytime), and a container started after it, of the same image, gets a root with those
// flags. etcFor (lib/app.ts) already gives a CAP_SYS_ADMIN container its own /etc files for this
// very reason; the image root should follow it.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { run, spawn, importImage } = require('../..');
const { busyboxRootfs } = require('../helpers');
const h = require('../images/helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const nat = require('../../build/Release/nsbox.node');
const skip = (process.geteuid() !== 0 && 'runs as root (root store)') || noBusybox ||
  (!(nat.mntTemplateOverlay && nat.mntTemplateOverlay()) && 'the kernel mounts no overlay over detached layers (no shared image root)') || false;

let scratch;
t.before(() => {
  if (!skip) scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-attack1-imgroot-'));
});
t.teardown(() => {
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

t.test("a CAP_SYS_ADMIN container's superblock remount does not reach another container's image root", { skip }, async (t) => {
  const store = path.join(scratch, 'store');
  const raw = execFileSync('tar', ['-C', bb, '--numeric-owner', '-cf', '-', '.'], { maxBuffer: 1 << 28 });
  const ls = [{ blob: raw, diffId: h.sha256(raw), digest: h.sha256(raw), mediaType: 'application/vnd.oci.image.layer.v1.tar' }];
  const img = h.craftImage(ls);
  const dir = fs.mkdtempSync(path.join(scratch, 'layout-'));
  h.craftLayout(dir, 'localhost/shared-root:1', ls, img);
  await importImage(dir, { storeDir: store, tag: 'localhost/shared-root:1' });
  // etcFiles: false: no /etc files, so the two option sets differ only in their capabilities.
  const base = { image: 'localhost/shared-root:1', storeDir: store, pull: 'never', readonly: true, etcFiles: false };
  const look = 'stat -c dev=%d /; grep " / " /proc/self/mountinfo';
  const before = await run({ ...base, command: ['/bin/sh', '-c', look] });
  t.equal(before.exitCode, 0, before.stderr.toString());
  t.notMatch(before.stdout.toString(), /\bsync\b/, 'a root without sync at first');
  const c1 = spawn({ ...base, capabilities: { add: ['CAP_SYS_ADMIN'] }, command: ['/bin/sh', '-c', `${look}; mount -o remount,ro,sync,lazytime / 2>&1; echo remount=$?; echo ready; sleep 30`] });
  t.teardown(() => c1.kill('SIGKILL'));
  let out = '';
  c1.stdout.on('data', (d) => (out += d));
  c1.stderr.on('data', (d) => (out += d));
  for (const end = Date.now() + 20000; Date.now() < end && !out.includes('ready'); ) await new Promise((r) => setTimeout(r, 50));
  t.comment(out.split('\n').filter((l) => /dev=|remount=/.test(l)).join(' '));
  const after = await run({ ...base, command: ['/bin/sh', '-c', look] });
  t.comment(after.stdout.toString().split('\n').filter((l) => /dev=| \/ \/ /.test(l)).join('\n'));
  t.notMatch(after.stdout.toString(), /\bsync\b/, "another container's root is not changed by the first one's remount");
  c1.kill('SIGKILL');
  await c1.wait().catch(() => {});
});
