// Attacker-controlled paths in the image: symlinks planted at /proc, /dev, mount targets and /dev/null.
// Every container path is resolved inside the root (openat2 RESOLVE_IN_ROOT, or the per-component
// walk used where openat2 is missing); this file runs itself a second time with the walk forced.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { run, NsboxError } = require('../..');
const { busyboxRootfs, warmUp, assertNoLeaks } = require('../helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const walk = process.env.NSBOX_FORCE_PATH_WALK === '1';
const mode = walk ? ' (per-component walk)' : '';
let before;

t.before(async () => {
  before = await warmUp();
});

/** A private, writable copy of the busybox rootfs plus a host directory the image must not reach. */
function hostile(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-hostile-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = path.join(dir, 'rootfs');
  fs.cpSync(bb, rootfs, { recursive: true, verbatimSymlinks: true });
  const outside = path.join(dir, 'host-side');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret'), 'host secret\n');
  return { rootfs, outside };
}

const listing = (d) => fs.readdirSync(d).sort();

t.test(`a mount target symlinked out of the rootfs stays inside it${mode}`, { skip: noBusybox }, async (t) => {
  for (const link of ['ABS', '../../../../../../..HOST', 'REL']) {
    const { rootfs, outside } = hostile(t);
    const target = link === 'ABS' ? outside : link === 'REL' ? path.relative(rootfs, outside) : '../../../../../../..' + outside;
    fs.symlinkSync(target, path.join(rootfs, 'hostlink'));
    const before = listing(outside);
    const r = await run({ rootfs, mounts: [{ type: 'tmpfs', target: '/hostlink/sub' }], command: ['/bin/sh', '-c', 'echo x > /hostlink/sub/f && echo ok'] }).catch((e) => e);
    t.same(listing(outside), before, `${link}: nothing was created in the host directory`);
    if (r instanceof NsboxError) t.match(r, { step: 'mount.target' }, `${link}: refused at the mount target`);
    else t.equal(r.stdout.toString().trim(), 'ok', `${link}: the mount landed inside the container`);
  }
});

t.test(`a symlinked /proc in the image does not move procfs out of the root${mode}`, { skip: noBusybox }, async (t) => {
  const { rootfs, outside } = hostile(t);
  fs.rmSync(path.join(rootfs, 'proc'), { recursive: true });
  fs.symlinkSync(outside, path.join(rootfs, 'proc'));
  const before = listing(outside);
  const r = await run({ rootfs, command: ['/bin/sh', '-c', 'cat /proc/self/comm 2>&1; cat /proc/kcore 2>/dev/null | wc -c'] }).catch((e) => e);
  t.same(listing(outside), before, 'the host directory is untouched');
  if (!(r instanceof Error)) t.notMatch(r.stdout.toString(), /host secret/);
});

t.test(`a symlinked /dev in the image does not get device nodes on the host${mode}`, { skip: noBusybox }, async (t) => {
  const { rootfs, outside } = hostile(t);
  fs.rmSync(path.join(rootfs, 'dev'), { recursive: true });
  fs.symlinkSync(outside, path.join(rootfs, 'dev'));
  const before = listing(outside);
  const r = await run({ rootfs, command: ['/bin/sh', '-c', 'ls /dev/null && echo ok'] }).catch((e) => e);
  t.same(listing(outside), before, 'no null/zero/tty nodes appeared on the host');
  t.notOk(fs.existsSync(path.join(outside, 'null')));
  if (!(r instanceof Error)) t.match(r.stdout.toString(), /ok/);
});

t.test(`a hostile /dev/null in the image is never used for masking${mode}`, { skip: noBusybox }, async (t) => {
  const { rootfs, outside } = hostile(t);
  fs.writeFileSync(path.join(rootfs, 'dev', 'null'), 'NOT NULL\n');
  fs.symlinkSync(path.join(outside, 'secret'), path.join(rootfs, 'dev', 'zero'));
  const masked = ['kcore', 'keys', 'timer_list', 'sched_debug'].filter((f) => fs.existsSync('/proc/' + f));
  const r = await run({ rootfs, command: ['/bin/sh', '-c', masked.map((f) => `cat /proc/${f}`).join('; ') + '; head -c 4 /dev/zero | od -An -tx1'] });
  t.notMatch(r.stdout.toString(), /NOT NULL|host secret/, 'masks and /dev are nsbox-made');
  t.match(r.stdout.toString(), /00 00 00 00/, '/dev/zero is a real zero device');
});

t.test(`a symlinked cwd cannot leave the rootfs${mode}`, { skip: noBusybox }, async (t) => {
  const { rootfs, outside } = hostile(t);
  fs.symlinkSync(outside, path.join(rootfs, 'escape'));
  const r = await run({ rootfs, cwd: '/escape', command: ['/bin/sh', '-c', 'cat secret 2>&1; pwd'] }).catch((e) => e);
  if (r instanceof NsboxError) t.match(r, { code: 'ENOENT', step: 'cwd' }, 'the cwd does not exist inside the root');
  else t.notMatch(r.stdout.toString(), /host secret/);
});

t.test(`a missing mount point under links planted out of the rootfs is made inside the root only${mode}`, { skip: noBusybox }, async (t) => {
  const { rootfs, outside } = hostile(t);
  // A link to the host's /etc (absolute), one climbing out to it (relative), one to a host directory.
  fs.symlinkSync('/etc', path.join(rootfs, 'etclink'));
  fs.symlinkSync('../../../../../../../../etc', path.join(rootfs, 'climb'));
  fs.symlinkSync(outside, path.join(rootfs, 'hostdir'));
  const src = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-mp-src-'));
  t.teardown(() => fs.rmSync(src, { recursive: true, force: true }));
  fs.writeFileSync(path.join(src, 'f'), 'bound\n');
  const hostEtc = listing('/etc');
  const outsideBefore = listing(outside);
  const rootEtc = listing(path.join(rootfs, 'etc'));
  const r = await run({
    rootfs,
    mounts: [
      { type: 'bind', source: src, target: '/etclink/nsbox-new/x' },
      { type: 'bind', source: path.join(src, 'f'), target: '/climb/nsbox-new.conf' },
      { type: 'tmpfs', target: '/climb/nsbox-t' },
    ],
    command: ['/bin/sh', '-c', 'cat /etc/nsbox-new/x/f /etc/nsbox-new.conf; ls -d /etc/nsbox-t'],
  });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.equal(r.stdout.toString(), 'bound\nbound\n/etc/nsbox-t\n', 'the links were followed inside the root, to its /etc');
  // The host directory's path inside the root is under the container's own /tmp (a tmpfs): refused
  // there or made there, never on the host.
  const h = await run({ rootfs, mounts: [{ type: 'bind', source: src, target: '/hostdir/new/x' }], command: ['/bin/cat', '/hostdir/new/x/f'] }).catch((e) => e);
  if (h instanceof NsboxError) t.match(h, { step: 'mount.target' }, 'the link to a host directory: refused at the mount target');
  else t.equal(h.stdout.toString(), 'bound\n', 'the link to a host directory: the mount landed inside the container');
  t.same(listing(outside), outsideBefore, 'nothing was made in the host directory');
  t.same(listing('/etc'), hostEtc, 'nothing was made in the host\'s /etc');
  t.same(listing(path.join(rootfs, 'etc')), rootEtc, 'nor in the rootfs\'s /etc');
});

t.test(`a ".." on a mount target's path resolves while another process renames files elsewhere on the host${mode}`, { skip: noBusybox }, async (t) => {
  // openat2's RESOLVE_IN_ROOT fails a ".." with EAGAIN when a rename or mount anywhere on the host
  // raced with it: a container renaming files in a loop (or a busy host) must not fail other
  // starts. Found by the rootless lane of CI on a loaded host (EAGAIN, step mount.target).
  const { rootfs } = hostile(t);
  fs.symlinkSync('../../../../etc', path.join(rootfs, 'climb'));
  fs.writeFileSync(path.join(rootfs, 'etc', 'nsbox-point.conf'), '');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-renames-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'f'), 'bound\n');
  fs.writeFileSync(path.join(dir, 'a'), '');
  const renamer = spawn(process.execPath, ['-e', `const fs = require('fs'); for (;;) { fs.renameSync(${JSON.stringify(dir + '/a')}, ${JSON.stringify(dir + '/b')}); fs.renameSync(${JSON.stringify(dir + '/b')}, ${JSON.stringify(dir + '/a')}); }`], { stdio: 'ignore' });
  const gone = new Promise((r) => renamer.on('exit', r));
  t.teardown(async () => {
    renamer.kill('SIGKILL');
    await gone;
  });
  const o = { rootfs, mounts: [{ type: 'bind', source: path.join(dir, 'f'), target: '/climb/nsbox-point.conf' }], command: ['/bin/cat', '/etc/nsbox-point.conf'] };
  const failed = {};
  for (let i = 0; i < 100; i++) {
    const r = await run(o).catch((e) => e);
    const what = r instanceof Error ? `${r.code} ${r.step}` : r.stdout.toString() === 'bound\n' ? null : `exit ${r.exitCode}: ${r.stdout}${r.stderr}`;
    if (what) failed[what] = (failed[what] ?? 0) + 1;
  }
  t.same(failed, {}, '100 starts, each bound through the ".." inside the root');
});

t.test(`a mount point swapped for a link after it was planned is never made through it${mode}`, { skip: noBusybox }, async (t) => {
  // The plan remembers that /scratch/in exists (no mkdir there); the image then swaps /scratch for
  // a link to /etc: the mount resolves it inside the root and fails, nothing is made anywhere.
  const { rootfs } = hostile(t);
  const src = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-mp-src-'));
  t.teardown(() => fs.rmSync(src, { recursive: true, force: true }));
  fs.writeFileSync(path.join(src, 'f'), 'bound\n');
  const o = { rootfs, mounts: [{ type: 'bind', source: src, target: '/scratch/in' }], command: ['/bin/cat', '/etc/in/f'] };
  fs.mkdirSync(path.join(rootfs, 'scratch/in'));
  const first = await run(o);
  t.equal(first.exitCode, 1, 'planned with /scratch/in there');
  fs.rmSync(path.join(rootfs, 'scratch'), { recursive: true });
  fs.symlinkSync('/etc', path.join(rootfs, 'scratch'));
  const rootEtc = listing(path.join(rootfs, 'etc'));
  const hostEtc = listing('/etc');
  const e = await run(o).catch((err) => err);
  t.match(e, { code: 'ENOENT', step: 'mount.bind' }, 'the remembered plan fails at the mount: /etc/in is not there inside the root');
  const again = await run(o);
  t.equal(again.stdout.toString(), 'bound\n', 'the next start makes /etc/in in the throw-away layer');
  t.same(listing(path.join(rootfs, 'etc')), rootEtc, 'nothing was made in the rootfs\'s /etc');
  t.same(listing('/etc'), hostEtc, 'nor in the host\'s');
});

t.test('nothing is left behind', async (t) => {
  await assertNoLeaks(t, before, 'after the path attacks');
});

if (!walk) {
  t.test('the same attacks with the per-component walk (as on kernels without openat2)', async (t) => {
    const r = spawnSync(process.execPath, [__filename], { env: { ...process.env, NSBOX_FORCE_PATH_WALK: '1' }, encoding: 'utf8', timeout: 120000 });
    t.equal(r.status, 0, r.stdout.split('\n').filter((l) => /not ok/.test(l)).join('\n') || 'all passed');
    t.match(r.stdout, /# \{ total: \d+, pass: \d+ \}|^1\.\.\d+/m);
  });
}
