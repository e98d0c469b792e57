// The mount namespace template (native/core/child.cc, mount_in_template): an app container run
// without a user namespace joins a private copy of an empty read-only tmpfs instead of copying the
// host's whole mount table with CLONE_NEWNS, captures the host paths it binds beforehand, and
// chroots into its root instead of pivot_root. What a container sees must not change: the same
// mounts with the same options, nothing propagating to or from the host, the same errors, nothing
// left behind; nsenter and a chroot escape end in the container's root, as after pivot_root.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { run, spawn, createPool } = require('..');
const { native } = require('../dist/native');
const { busyboxRootfs, warmUp, assertNoLeaks, isRoot } = require('./helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const notRoot = isRoot() ? false : 'the template is for containers without a user namespace, which need root';
const notX64 = process.arch === 'x64' ? false : 'the template is made by a vfork-style clone, x86_64 only';
const skip = noBusybox || notRoot || notX64;

/** Runs fn with every plan of the addon's spawn and spawnAsync told not to use the template. */
async function withoutTemplate(fn) {
  const b = native();
  const orig = { spawn: b.spawn, spawnAsync: b.spawnAsync };
  b.spawn = function (plan, ...a) {
    return orig.spawn.call(this, { ...plan, mntTemplate: false }, ...a);
  };
  b.spawnAsync = function (plan, ...a) {
    return orig.spawnAsync.call(this, { ...plan, mntTemplate: false }, ...a);
  };
  try {
    return await fn();
  } finally {
    Object.assign(b, orig);
  }
}

/** Runs fn and returns { result, used, not }: how many spawns used the template and how many did not. */
async function countTemplate(fn) {
  const b = native();
  const orig = { spawn: b.spawn, spawnAsync: b.spawnAsync };
  const n = { used: 0, not: 0 };
  const note = (res) => {
    if (res && res.usedMntTemplate) n.used++;
    else n.not++;
    return res;
  };
  b.spawn = function (...a) {
    return note(orig.spawn.apply(this, a));
  };
  b.spawnAsync = function (plan, cb) {
    return orig.spawnAsync.call(this, plan, (res) => cb(note(res)));
  };
  try {
    return { result: await fn(), ...n };
  } finally {
    Object.assign(b, orig);
  }
}

/**
 * The container's mount table without the ids (which differ run to run), sorted; the directory of
 * its generated /etc files (lib/etc.ts, one per container) shown as <etc>.
 */
function mountTable(text) {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ').slice(3).join(' ').replace(/\/etc\/\d+-[0-9a-f]{12}\//, '/etc/<etc>/'))
    .sort();
}

const escape = { rootfs: bb, command: ['/probe', 'chroot-escape', '/tmp/esc'], capabilities: { add: ['SYS_CHROOT'] } };

let before;
let dir;
t.before(async () => {
  if (skip) return;
  before = await warmUp();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-tmpl-'));
});
t.teardown(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

t.test('an app container run as root uses the template, made once for the process', { skip }, async (t) => {
  await run({ rootfs: bb, command: ['/bin/true'] });
  const st = native().mntTemplateState();
  t.ok(st.tried, 'the template was made');
  t.ok(st.fd >= 0, `the template is held (errno ${st.errno})`);
  const ns = fs.readlinkSync(`/proc/self/fd/${st.fd}`);
  t.match(ns, /^mnt:\[\d+\]$/, 'the fd is a mount namespace');
  t.not(ns, fs.readlinkSync('/proc/self/ns/mnt'), "and not Node's");
  const c = spawn({ rootfs: bb, command: ['/probe', 'sleep', '5'] });
  try {
    const inside = fs.readlinkSync(`/proc/${c.pid}/ns/mnt`);
    t.not(inside, ns, 'a container gets a copy of its own, never the template itself');
    t.not(inside, fs.readlinkSync('/proc/self/ns/mnt'), "nor Node's");
  } finally {
    c.kill();
    await c.wait();
  }
  await run({ rootfs: bb, command: ['/bin/true'] });
  t.equal(native().mntTemplateState().fd, st.fd, 'the next container uses the same template');
});

t.test("nsenter into a running container's mount namespace lands in its root, as with pivot_root", { skip: skip || (fs.existsSync('/usr/bin/nsenter') ? false : 'nsenter (util-linux) is not installed') }, async (t) => {
  const c = spawn({ rootfs: bb, command: ['/probe', 'sleep', '5'] });
  try {
    const out = execFileSync('/usr/bin/nsenter', ['-t', String(c.pid), '-m', '--', '/bin/ls', '/']).toString().split('\n');
    t.ok(out.includes('probe'), "setns into the namespace follows the root stacked on the template's /");
  } finally {
    c.kill();
    await c.wait();
  }
});

t.test('the mounts a container sees are the same with the template as with CLONE_NEWNS and pivot_root', { skip }, async (t) => {
  const src = path.join(dir, 'same');
  fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'file'), 'x');
  const cases = {
    'busybox rootfs': { rootfs: bb },
    'default rootfs with binds, a file bind and a tmpfs inside a bind': {
      mounts: [
        { type: 'bind', source: src, target: '/data', readonly: true },
        { type: 'bind', source: path.join(dir, 'file'), target: '/etc/extra' },
        { type: 'bind', source: path.join(src, 'sub'), target: '/srv' },
        { type: 'tmpfs', target: '/srv/t', size: 1 << 20 },
      ],
    },
    'writable busybox rootfs, host network': { rootfs: bb, readonly: false, network: 'host' },
  };
  for (const [name, o] of Object.entries(cases)) {
    const cmd = { command: ['/bin/sh', '-c', 'cat /proc/self/mountinfo'] };
    const { result: a, used } = await countTemplate(() => run({ ...o, ...cmd }));
    const { result: b, not } = await countTemplate(() => withoutTemplate(() => run({ ...o, ...cmd })));
    t.equal(used, 1, `${name}: the first run used the template`);
    t.equal(not, 1, `${name}: the second did not`);
    t.equal(a.exitCode, 0, `${name}: runs with the template (${a.stderr})`);
    t.equal(b.exitCode, 0, `${name}: runs without (${b.stderr})`);
    t.same(mountTable(a.stdout.toString()), mountTable(b.stdout.toString()), `${name}: the same mounts, options and sources`);
    t.equal(mountTable(a.stdout.toString())[0] !== undefined, true, `${name}: mountinfo is not empty`);
  }
});

t.test('a container that escapes its chroot with CAP_SYS_CHROOT stays in its own root, as with pivot_root', { skip }, async (t) => {
  const { result: r, used } = await countTemplate(() => run(escape));
  t.equal(used, 1, 'the container used the template');
  t.equal(r.exitCode, 0, r.stderr.toString());
  const out = JSON.parse(r.stdout.toString());
  t.ok(out.ok, 'the escape itself is allowed (the container holds CAP_SYS_CHROOT)');
  t.ok(out.entries.includes('probe'), '".." from the root leads back into it: the template under it cannot be reached');
  t.equal(out.mkdir, os.constants.errno.EROFS, 'and that root is still the read-only rootfs');
  const { result: p, not } = await countTemplate(() => withoutTemplate(() => run(escape)));
  t.equal(not, 1, 'the comparison ran without the template');
  t.same(JSON.parse(p.stdout.toString()).entries.sort(), out.entries.sort(), 'the same as with pivot_root');
});

t.test('binds of a shared host mount are private: nothing propagates into the container or out of it', { skip }, async (t) => {
  const shared = path.join(dir, 'shared');
  fs.mkdirSync(shared);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'nsbox-test', shared]);
  t.teardown(() => {
    try {
      execFileSync('umount', ['-R', shared]);
    } catch {
      /* already gone */
    }
  });
  execFileSync('mount', ['--make-shared', shared]);
  fs.mkdirSync(path.join(shared, 'later'));
  fs.mkdirSync(path.join(shared, 'inner'));
  const c = spawn({
    rootfs: bb,
    mounts: [
      { type: 'bind', source: shared, target: '/data' },
      { type: 'tmpfs', target: '/data/inner' },
    ],
    command: ['/bin/sh', '-c', 'read go; cat /proc/self/mountinfo'],
  });
  let out = '';
  c.stdout.on('data', (d) => (out += d));
  try {
    // The container is set up (spawn returns after its exec): its tmpfs must not be on the host.
    const hostMounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    t.notOk(hostMounts.includes(path.join(shared, 'inner')), "the container's tmpfs under the bind did not reach the host");
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'nsbox-later', path.join(shared, 'later')]);
    c.stdin.end('go\n');
    const info = await c.wait();
    t.equal(info.exitCode, 0);
    t.ok(out.includes(' /data/inner '), "the container's own tmpfs is there");
    t.ok(out.includes(' /data '), 'and the bind');
    t.notOk(out.includes('/data/later'), 'a mount the host made under the bind source afterwards is not seen inside');
  } finally {
    if (c.exitCode === undefined) c.kill();
  }
});

t.test("a read-only bind is read-only all the way down: a host submount under it cannot be written either", { skip }, async (t) => {
  const src = path.join(dir, 'ro-src');
  const sub = path.join(src, 'sub');
  fs.mkdirSync(sub, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'nsbox-sub', sub]);
  t.teardown(() => {
    try {
      execFileSync('umount', [sub]);
    } catch {
      /* already gone */
    }
  });
  fs.writeFileSync(path.join(sub, 'probe-me'), 'x');
  const { result: r, used } = await countTemplate(() =>
    run({
      rootfs: bb,
      mounts: [{ type: 'bind', source: src, target: '/data', readonly: true }],
      command: ['/bin/sh', '-c', '/probe try-write /data/x; /probe try-write /data/sub/x; cat /data/sub/probe-me'],
    }),
  );
  t.equal(used, 1, 'the container used the template');
  const lines = r.stdout.toString().trim().split('\n');
  t.match(JSON.parse(lines[0]), { ok: false, code: 'EROFS' }, 'the bind itself is read-only');
  t.match(JSON.parse(lines[1]), { ok: false, code: 'EROFS' }, 'and so is the host tmpfs mounted under its source');
  t.equal(lines[2], 'x', 'which is there, readable');
  t.notOk(fs.existsSync(path.join(sub, 'x')), 'nothing was written on the host');
});

t.test('a bind source that is missing, or vanishes before the child captures it, fails with ENOENT at step mount.bind, naming the source', { skip }, async (t) => {
  const missing = path.join(dir, 'no-such-dir');
  const e1 = await run({ rootfs: bb, mounts: [{ type: 'bind', source: missing, target: '/x' }], command: ['/bin/true'] }).catch((e) => e);
  // A bind source is checked in JS first (sourceKind); make it vanish only for the child.
  t.equal(e1.code, 'ENOENT');
  t.equal(e1.path, missing);
  const gone = path.join(dir, 'vanishing');
  fs.mkdirSync(gone);
  const b = native();
  const orig = b.spawn;
  b.spawn = function (plan, ...a) {
    fs.rmdirSync(gone);
    return orig.call(this, plan, ...a);
  };
  let e2;
  try {
    e2 = await run({ rootfs: bb, mounts: [{ type: 'bind', source: gone, target: '/x' }], command: ['/bin/true'] }).catch((e) => e);
  } finally {
    b.spawn = orig;
  }
  t.equal(e2.code, 'ENOENT', 'a source gone by the time the child captures it: ENOENT');
  t.equal(e2.name, 'NsboxError');
  t.equal(e2.step, 'mount.bind', 'at its own step');
  t.equal(e2.syscall, 'open_tree', 'the call that failed: the template captures a bind with open_tree');
  t.equal(e2.path, gone, 'naming the source');
});

t.test('a failure record of step mount.namespace becomes an NsboxError naming the call that failed', async (t) => {
  const { errorFromRecord } = require('../dist/plan');
  const { STEP } = require('../dist/native');
  const ctx = { meta: [], candidates: [], command: ['/bin/true'], rootfs: '/srv/root', cwd: '/', hostname: 'h' };
  const want = [
    [0, 'open', '/proc/self/fd'],
    [1, 'setns', undefined],
    [2, 'unshare', undefined],
    [3, 'fchdir', '/proc/self/fd'],
    [5, 'fchdir', '/srv/root'],
    [6, 'chroot', '/srv/root'],
    [7, 'chdir', '/srv/root'],
  ];
  for (const [index, syscall, p] of want) {
    const e = errorFromRecord({ step: STEP['mount.namespace'], errno: os.constants.errno.EPERM, index }, ctx);
    t.match(e, { name: 'NsboxError', code: 'EPERM', step: 'mount.namespace', syscall }, `index ${index}: ${syscall}`);
    t.equal(e.path, p, `index ${index}: path`);
  }
  // The native enum and the JS table agree on where the step sits (plan.h: STEP_MNT_TEMPLATE = 37).
  t.equal(STEP['mount.namespace'], 37);
});

t.test('a pool and concurrent runs use the template too, each container in its own copy', { skip }, async (t) => {
  const counted = await countTemplate(async () => {
    const pool = createPool({ rootfs: bb, size: 2 });
    await Promise.all([...Array(3)].map(() => pool.run(['/bin/true'])));
    await pool.close();
  });
  t.equal(counted.not, 0, 'every pooled container used the template');
  t.ok(counted.used >= 3, `so did the refills (${counted.used} containers)`);
  const pool = createPool({ rootfs: bb, size: 2 });
  try {
    const rs = await Promise.all([...Array(6)].map(() => pool.run(['/bin/true'])));
    for (const r of rs) t.equal(r.exitCode, 0, 'pooled run, several at once');
    const m = await pool.run(['/bin/sh', '-c', 'cat /proc/self/mountinfo']);
    const direct = await run({ rootfs: bb, command: ['/bin/sh', '-c', 'cat /proc/self/mountinfo'] });
    t.same(mountTable(m.stdout.toString()), mountTable(direct.stdout.toString()), 'a pooled container has the mounts of a direct one');
  } finally {
    await pool.close();
  }
  const many = await Promise.all([...Array(12)].map(() => run({ ...escape })));
  for (const r of many) t.ok(JSON.parse(r.stdout.toString()).entries.includes('probe'), 'concurrent runs: each escape stays in its own root');
});

t.test('NSBOX_MNT_TEMPLATE=0 turns the template off: CLONE_NEWNS and pivot_root', { skip }, async (t) => {
  const script = `
    const { run } = require(${JSON.stringify(path.join(__dirname, '..'))});
    const { native } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'native'))});
    const b = native();
    const spawn = b.spawn;
    let used = null;
    b.spawn = function (...a) {
      const res = spawn.apply(this, a);
      used = res.usedMntTemplate;
      return res;
    };
    run(${JSON.stringify(escape)}).then((r) => {
      console.log(JSON.stringify({ out: JSON.parse(r.stdout.toString()), st: b.mntTemplateState(), used }));
    });`;
  const res = JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, NSBOX_MNT_TEMPLATE: '0' } }).toString());
  t.equal(res.st.fd, -1, 'no template is held');
  t.equal(res.used, false, 'the container did not use one');
  t.ok(res.out.entries.includes('probe'), 'and it is the same container (pivot_root)');
});

t.test('nothing left behind by this file', { skip }, async (t) => {
  await assertNoLeaks(t, before);
});
