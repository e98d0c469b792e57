// Mount points that the rootfs lacks: made in a throw-away tmpfs layer over it (an overlay that
// only the container's mount namespace sees), never in the rootfs itself, for root and rootless
// callers alike (test/rootless/run.sh runs this file as an unprivileged user). The rootfs here is
// the busybox fixture, owned by root: a rootless container's root may not write it. Checked from
// inside the container with busybox, and on the host with lstat.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, Machine, NsboxError } = require('..');
const { busyboxRootfs, plantedRootfs, warmUp, assertNoLeaks, machineStateDir } = require('./helpers');
const { privileged } = require('../dist/runtime');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const { rootfs: planted, reason: noPlanted } = plantedRootfs();
const who = privileged() ? 'root' : 'rootless';
let before;

t.before(async () => {
  before = await warmUp();
});

/** A host directory with one file in it, removed at the end of the test. */
function hostDir(t, content = 'from the host\n') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-mp-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'hello'), content);
  return dir;
}

/** What lstat says of every entry of a directory tree (name, mode, size, mtime), sorted. */
function tree(dir) {
  const out = [];
  const walk = (d) => {
    for (const n of fs.readdirSync(d).sort()) {
      const p = path.join(d, n);
      const st = fs.lstatSync(p);
      out.push(`${path.relative(dir, p)} ${st.mode} ${st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(p);
    }
  };
  const st = fs.lstatSync(dir);
  out.push(`. ${st.mode} ${st.mtimeMs}`);
  walk(dir);
  return out;
}

/** The filesystem type of "/" as the container sees it (its mountinfo's first line). */
const ROOT_FSTYPE = "awk '$5 == \"/\" { for (i = 7; i <= NF; i++) if ($i == \"-\") { print $(i+1); exit } }' /proc/self/mountinfo";

t.test(`${who}: a bind to /new/deep/target, missing from a root-owned rootfs, works and leaves the rootfs unchanged`, { skip: noBusybox }, async (t) => {
  const src = hostDir(t);
  const was = tree(bb);
  const r = await run({
    rootfs: bb,
    mounts: [{ type: 'bind', source: src, target: '/new/deep/target' }],
    command: ['/bin/sh', '-c', `cat /new/deep/target/hello; ls /new/deep; ${ROOT_FSTYPE}; echo x > /new/deep/target/made && echo wrote; touch /new/other 2>&1 || true`],
  });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const out = r.stdout.toString();
  t.match(out, /^from the host\ntarget\noverlay\nwrote\n/, 'the host directory is at /new/deep/target, under a root that is an overlay');
  t.match(out, /Read-only file system/, 'the root stays read-only (the made points are no place to write)');
  t.equal(fs.readFileSync(path.join(src, 'made'), 'utf8'), 'x\n', 'a write through the bind reaches the host directory');
  t.notOk(fs.existsSync(path.join(bb, 'new')), 'no /new in the rootfs on the host');
  t.same(tree(bb), was, 'the rootfs is unchanged, entry by entry (modes, sizes, mtimes)');
});

t.test(`${who}: a file bound to /etc/new.conf, missing from the rootfs, is there inside and nowhere on the host`, { skip: noBusybox }, async (t) => {
  const dir = hostDir(t, 'setting=1\n');
  const was = tree(path.join(bb, 'etc'));
  const r = await run({
    rootfs: bb,
    mounts: [{ type: 'bind', source: path.join(dir, 'hello'), target: '/etc/new.conf', readonly: true }],
    command: ['/bin/sh', '-c', 'cat /etc/new.conf; cat /etc/passwd | head -1; ls /etc'],
  });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.match(r.stdout.toString(), /^setting=1\nroot:x:0:0:/, 'the file is bound, the rootfs\'s own /etc still there');
  // (hostname, hosts, resolv.conf: the fixture's mount points for the generated /etc files.)
  t.match(r.stdout.toString(), /group\nhostname\nhosts\nnew\.conf\npasswd\nresolv\.conf\n$/, '/etc lists the rootfs\'s files and the new one');
  t.notOk(fs.existsSync(path.join(bb, 'etc/new.conf')), 'no new.conf in the rootfs on the host');
  t.same(tree(path.join(bb, 'etc')), was, 'the rootfs\'s /etc is unchanged');
});

t.test(`${who}: a tmpfs on a missing point, and a bind inside it, work on a read-only rootfs`, { skip: noBusybox }, async (t) => {
  const src = hostDir(t);
  const r = await run({
    rootfs: bb,
    mounts: [{ type: 'tmpfs', target: '/var/cache/app' }, { type: 'bind', source: src, target: '/var/cache/app/in/side' }],
    command: ['/bin/sh', '-c', 'echo y > /var/cache/app/w && cat /var/cache/app/w /var/cache/app/in/side/hello'],
  });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.equal(r.stdout.toString(), 'y\nfrom the host\n');
  t.notOk(fs.existsSync(path.join(bb, 'var/cache')), 'no /var/cache in the rootfs on the host');
});

t.test(`${who}: where every mount point exists the root is the rootfs's own bind, read-only (no overlay)`, { skip: noBusybox }, async (t) => {
  const src = hostDir(t);
  const r = await run({
    rootfs: bb,
    mounts: [{ type: 'bind', source: src, target: '/data' }],
    command: ['/bin/sh', '-c', `${ROOT_FSTYPE}; cat /data/hello; touch /f 2>&1 || true`],
  });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const [fstype, ...rest] = r.stdout.toString().split('\n');
  t.not(fstype, 'overlay', `"/" is the rootfs's own filesystem (${fstype})`);
  t.equal(rest[0], 'from the host');
  t.match(rest.slice(1).join('\n'), /Read-only file system/, 'and read-only');
});

t.test(`${who}: a writable root (readonly: false) with a missing point is refused, nothing made`, { skip: noBusybox }, async (t) => {
  const src = hostDir(t);
  const was = tree(bb);
  const e = await run({ rootfs: bb, readonly: false, mounts: [{ type: 'bind', source: src, target: '/new/x' }], command: ['/bin/true'] }).catch((err) => err);
  t.ok(e instanceof NsboxError, 'an NsboxError');
  t.match(e, { code: 'ENOENT', syscall: 'stat', step: 'mount.target', path: '/new' }, 'naming the first point missing');
  t.match(e.message, /missing from the rootfs .* never written .*readonly: true/);
  t.same(tree(bb), was, 'the rootfs is unchanged');
});

t.test(`${who}: a missing point under a link the rootfs planted (/evil -> /etc, /out-of-root -> ../../etc) is made inside the root only`, { skip: noPlanted }, async (t) => {
  const src = hostDir(t);
  const file = path.join(hostDir(t, 'file\n'), 'hello');
  const hostEtc = fs.readdirSync('/etc').sort();
  const was = tree(planted);
  const r = await run({
    rootfs: planted,
    mounts: [
      { type: 'bind', source: src, target: '/evil/x' },
      { type: 'bind', source: file, target: '/out-of-root/nsbox-planted.conf' },
      { type: 'tmpfs', target: '/evil/t/u' },
    ],
    command: ['/bin/sh', '-c', 'cat /etc/x/hello /etc/nsbox-planted.conf; ls -d /etc/t/u'],
  });
  t.equal(r.exitCode, 0, r.stderr.toString());
  t.equal(r.stdout.toString(), 'from the host\nfile\n/etc/t/u\n', 'the links were followed inside the root, to its /etc');
  t.same(fs.readdirSync('/etc').sort(), hostEtc, 'nothing new in the host\'s /etc');
  t.notOk(fs.existsSync('/etc/x') || fs.existsSync('/etc/nsbox-planted.conf'));
  t.same(tree(planted), was, 'the rootfs is unchanged');
});

t.test(`${who}: a mount point removed after a start is refused once (ENOENT at the mount), then made in the overlay`, { skip: noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-mp-root-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = path.join(dir, 'rootfs');
  fs.cpSync(bb, rootfs, { recursive: true, verbatimSymlinks: true });
  const src = hostDir(t);
  const o = { rootfs, mounts: [{ type: 'bind', source: src, target: '/scratch' }], command: ['/bin/cat', '/scratch/hello'] };
  const first = await run(o);
  t.equal(first.stdout.toString(), 'from the host\n', 'the point exists: the rootfs\'s bind');
  fs.rmdirSync(path.join(rootfs, 'scratch'));
  const e = await run(o).catch((err) => err);
  t.match(e, { code: 'ENOENT', step: 'mount.bind', syscall: /^openat2?$/, path: '/scratch' }, 'the remembered plan never makes it: its target is not found in the root');
  const third = await run(o);
  t.equal(third.stdout.toString(), 'from the host\n', 'the next start looked again and made it in the overlay');
  t.notOk(fs.existsSync(path.join(rootfs, 'scratch')), 'still not in the rootfs');
});

t.test(`${who}: a machine on its own (writable) rootfs refuses a missing point; an ephemeral one makes them in its overlay`, { skip: noBusybox }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-mp-m-');
  const src = hostDir(t);
  const was = tree(bb);
  const mounts = [{ type: 'bind', source: src, target: '/srv/in' }];
  const e = await Machine.start({ name: 'mp-plain', rootfs: bb, stateDir, mounts }).catch((err) => err);
  t.match(e, { code: 'ENOENT', step: 'mount.target', path: '/srv' });
  t.match(e.message, /ephemeral: true/);
  t.same(await Machine.list({ stateDir }), [], 'no machine was left');
  const conf = path.join(hostDir(t, 'conf\n'), 'hello');
  const m = await Machine.start({ name: 'mp-eph', rootfs: bb, stateDir, mounts: [...mounts, { type: 'bind', source: conf, target: '/etc/new.conf' }], ephemeral: true });
  try {
    const r = await m.run(['/bin/cat', '/srv/in/hello', '/etc/new.conf']);
    t.equal(r.stdout.toString(), 'from the host\nconf\n', 'the ephemeral machine sees both binds (the file in the rootfs\'s /etc)');
  } finally {
    await m.stop({ timeout: 5000 });
    await m.destroy();
  }
  t.same(tree(bb), was, 'the rootfs is unchanged');
});

t.test(`${who}: a rootfs path with the characters overlayfs splits on (",", ":", "\\") works with a missing point`, { skip: noBusybox }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-mp-root-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = path.join(dir, 'a,b:c\\d');
  fs.cpSync(bb, rootfs, { recursive: true, verbatimSymlinks: true });
  const src = hostDir(t);
  const r = await run({ rootfs, mounts: [{ type: 'bind', source: src, target: '/new/x' }], command: ['/bin/sh', '-c', `cat /new/x/hello; ${ROOT_FSTYPE}`] });
  t.equal(r.stdout.toString(), 'from the host\noverlay\n', r.stderr.toString());
  t.notOk(fs.existsSync(path.join(rootfs, 'new')));
});

t.test(`${who}: each op of the overlay that fails is reported with its step, call and path, and leaves nothing behind`, { skip: noBusybox }, async (t) => {
  // The ops as the plan has them (lib/fsops.ts), then each one made to fail by the test-only fault
  // point (NSBOX_TEST_FAULT=mount:<op index>:EDOM): no real call there returns EDOM.
  const { buildFsOps } = require('../dist/fsops');
  const { resolveAppOptions } = require('../dist/options');
  const { staging } = require('../dist/runtime');
  const src = hostDir(t);
  const o = { rootfs: bb, mounts: [{ type: 'bind', source: src, target: '/new/deep/target' }], command: ['/bin/true'] };
  const L = buildFsOps(resolveAppOptions(o), staging(), !privileged());
  const ours = L.meta.map((m, i) => [m, i]).filter(([m]) => m.step === 'rootfs.scaffold');
  t.same(ours.map(([m]) => m.syscall), ['mount', 'mkdir', 'mkdir', 'mkdir', 'mkdir', 'mkdir', 'mount'], 'the tmpfs, upper, work, the three points, the overlay');
  t.equal(ours.at(-1)[0].path, bb, 'the overlay\'s path is the rootfs');
  const was = tree(bb);
  const snap = await warmUp();
  for (const [m, i] of ours) {
    process.env.NSBOX_TEST_FAULT = `mount:${i}:EDOM`;
    try {
      const e = await run(o).catch((err) => err);
      t.match(e, { code: 'EDOM', step: 'rootfs.scaffold', syscall: m.syscall, path: m.path }, `op ${i}: ${m.syscall} ${m.path}`);
    } finally {
      delete process.env.NSBOX_TEST_FAULT;
    }
  }
  await assertNoLeaks(t, snap, 'after the forced failures');
  t.same(tree(bb), was, 'the rootfs is unchanged');
});

t.test('nothing is left behind', async (t) => {
  await assertNoLeaks(t, before, 'after the mount point tests');
});
