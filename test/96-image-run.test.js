// Images, part 2 (issue #19): run({ image }), spawn, createPool and Machine.start with an image
// from a real registry (Debian's docker-registry on 127.0.0.1; the image made with umoci from the
// busybox test rootfs and pushed with skopeo). The root is an overlay of the layers: the config's
// defaults, whiteouts, read-only and throw-away writes, mount points made in the upper layer only,
// layers byte for byte unchanged, leases held while in use (judged from another process), errors
// and nothing left behind.
'use strict';
const t = require('tap');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { run, spawn, createPool, Machine, pull, images, removeImage, pruneImages, NsboxError } = require('..');
const { countCgroups } = require('./helpers');
const h = require('./images/helpers');

const { bb, skip } = h.imageTestEnv();

let reg;
let scratch;
let store;
let stateDir;
let ref;

/** Every entry under a directory, with content hashes, owners, modes, times and xattrs. */
function snapshot(root) {
  const { fsat } = require('../build/Release/nsbox.node');
  const out = [];
  const walk = (rel) => {
    const p = path.join(root, rel);
    const st = fs.lstatSync(p);
    const e = { rel, mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, mtime: st.mtimeMs, ctime: st.ctimeMs, ino: st.ino, nlink: st.nlink, rdev: st.rdev };
    const names = fsat.llistxattr(p);
    if (Array.isArray(names)) e.xattrs = names.sort().map((n) => `${n}=${Buffer.from(fsat.lgetxattr(p, n) || '').toString('hex')}`);
    if (st.isFile()) e.sha256 = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    if (st.isSymbolicLink()) e.link = fs.readlinkSync(p);
    out.push(e);
    if (st.isDirectory()) for (const n of fs.readdirSync(p).sort()) walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return out;
}

function layerDirs() {
  const d = path.join(store, 'layers');
  return fs.readdirSync(d).map((k) => path.join(d, k, 'diff'));
}

function leaseFiles() {
  try {
    return fs.readdirSync(path.join(store, 'leases'));
  } catch {
    return [];
  }
}

// A container's exit leaves its lease in the file for a moment (LEASE_SETTLE_MS, lib/images/store.ts:
// the next start of the image pins it for free); the file is settled then. Waits for that (at most
// 3 s) and returns the lease files left.
async function settledLeases() {
  for (let i = 0; i < 60 && leaseFiles().length; i++) await new Promise((r) => setTimeout(r, 50));
  return leaseFiles();
}

const opts = (o = {}) => ({ image: ref, storeDir: store, ...o });

h.registryWithImage(t, {
  skip,
  prefix: 'nsbox-imgrun-',
  name: 'test/run:v1',
  ready: (fx) => {
    ({ scratch, store, reg, ref } = fx);
    stateDir = path.join(scratch, 'state');
  },
  steps: [
    (rootfs) => {
      fs.cpSync(bb, rootfs, { recursive: true, verbatimSymlinks: true });
      for (const p of ['data', 'ro', 'out', 'scratch', 'big', 'small', 'x', 'mnt']) fs.rmSync(path.join(rootfs, p), { recursive: true, force: true });
      fs.writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:app user:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
      fs.writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\napp:x:2345:\nextra:x:3456:nobody,app\nnogroup:x:65534:\n');
      fs.mkdirSync(path.join(rootfs, 'opt/dir'), { recursive: true });
      fs.writeFileSync(path.join(rootfs, 'opt/gone'), 'gone\n');
      fs.writeFileSync(path.join(rootfs, 'opt/dir/old'), 'old\n');
      fs.writeFileSync(path.join(rootfs, 'opt/kept'), 'layer 1\n');
    },
    (rootfs) => {
      fs.rmSync(path.join(rootfs, 'opt/gone'));
      fs.rmSync(path.join(rootfs, 'opt/dir'), { recursive: true });
      fs.mkdirSync(path.join(rootfs, 'opt/dir'));
      fs.writeFileSync(path.join(rootfs, 'opt/dir/new'), 'new\n');
      fs.writeFileSync(path.join(rootfs, 'opt/kept'), 'layer 2\n');
      fs.mkdirSync(path.join(rootfs, 'home/app'), { recursive: true });
      fs.chownSync(path.join(rootfs, 'home/app'), 1234, 2345);
    },
  ],
  configure: (image) =>
    h.sh('umoci', ['config', '--image', image, '--config.entrypoint=/bin/sh', '--config.entrypoint=-c',
      '--config.cmd=echo "$GREETING|$EXTRA|$HOME|$(pwd)|$(id -u):$(id -g):$(id -G)"', '--config.env=GREETING=hello', '--config.env=PATH=/bin:/usr/bin',
      '--config.workingdir=/work/here', '--config.user=app']),
});

t.test('both image and rootfs: a TypeError before anything starts; options only with image', { skip }, async (t) => {
  await t.rejects(run({ image: 'busybox', rootfs: bb, command: ['true'] }), { name: 'TypeError', code: 'ERR_INCOMPATIBLE_OPTION_PAIR' });
  t.throws(() => spawn({ image: 'busybox', rootfs: bb, command: ['true'] }), { name: 'TypeError', code: 'ERR_INCOMPATIBLE_OPTION_PAIR' });
  await t.rejects(Machine.start({ name: 'imgboth', image: 'busybox', rootfs: bb, stateDir }), { name: 'TypeError', code: 'ERR_INCOMPATIBLE_OPTION_PAIR' });
  t.throws(() => createPool({ size: 1, image: 'busybox', rootfs: bb }), { code: 'ERR_INCOMPATIBLE_OPTION_PAIR' });
  await t.rejects(run({ rootfs: bb, command: ['true'], pull: 'never' }), { code: 'ERR_INVALID_ARG_VALUE' });
  await t.rejects(run({ image: 'busybox', pull: 'sometimes' }), { code: 'ERR_INVALID_ARG_VALUE' });
  await t.rejects(run({ image: 'busybox', entrypoint: 'sh' }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.notOk(fs.existsSync(store), 'no store was made');
});

t.test("pull: 'never' with a missing image: a typed NsboxError, nothing left", { skip }, async (t) => {
  const cg = countCgroups();
  const e = await run(opts({ pull: 'never' })).catch((x) => x);
  t.ok(e instanceof NsboxError, 'an NsboxError');
  t.equal(e.code, 'ERR_IMAGE_UNKNOWN');
  t.equal(e.step, 'image.store');
  t.match(e.message, /pull is 'never'/);
  t.throws(() => spawn(opts({ command: ['true'] })), { code: 'ERR_IMAGE_UNKNOWN', message: /synchronous/ });
  t.same(leaseFiles(), []);
  t.equal(countCgroups(), cg, 'no cgroup left');
});

t.test('first run pulls; Entrypoint+Cmd, Env under env, WorkingDir (made), User by name with its groups and HOME', { skip }, async (t) => {
  const r = await run(opts({ env: { EXTRA: 'x' } }));
  t.equal(r.stderr.toString(), '');
  t.equal(r.stdout.toString(), 'hello|x|/home/app|/work/here|1234:2345:2345 3456\n');
  t.equal(r.exitCode, 0);
  t.equal((await images({ storeDir: store })).length, 1, 'pulled into the store');
  t.same(await settledLeases(), [], 'the lease went with the container');
  // The caller's env wins; a command replaces Cmd and follows the Entrypoint.
  const r2 = await run(opts({ env: { GREETING: 'hi' }, command: ['echo "$GREETING $PATH"'] }));
  t.equal(r2.stdout.toString(), 'hi /bin:/usr/bin\n');
  // entrypoint replaces the image's and drops its Cmd.
  const r3 = await run(opts({ entrypoint: ['/bin/echo'], command: ['a', 'b'] }));
  t.equal(r3.stdout.toString(), 'a b\n');
  const r4 = await run(opts({ entrypoint: ['/bin/pwd'] }));
  t.equal(r4.stdout.toString(), '/work/here\n');
  // cwd and user given: the image's are not used.
  const r5 = await run(opts({ cwd: '/opt', user: { uid: 7, gid: 8 }, command: ['echo $(pwd) $(id -u):$(id -g) $HOME'] }));
  t.equal(r5.stdout.toString(), '/opt 7:8 /\n');
});

t.test('User by number, uid:gid and name:group', { skip }, async (t) => {
  // The image's User is the default only; these go through the same lookup via a retagged config.
  const { imageUser } = require('../dist/images/config');
  const { imageRoot } = require('../dist/images');
  const root = imageRoot(ref, { storeDir: store });
  const stack = { top: [...root.layers].reverse(), xattrs: root.xattrs };
  t.same(imageUser({ User: '1234' }, stack), { uid: 1234, gid: 2345, groups: [3456], home: '/home/app' });
  t.same(imageUser({ User: '4321' }, stack), { uid: 4321, gid: 0, groups: [], home: undefined });
  t.same(imageUser({ User: '1234:77' }, stack), { uid: 1234, gid: 77, groups: [3456], home: '/home/app' });
  t.same(imageUser({ User: 'app:extra' }, stack), { uid: 1234, gid: 3456, groups: [], home: '/home/app' });
  t.same(imageUser({ User: 'nobody' }, stack), { uid: 65534, gid: 65534, groups: [3456], home: '/' });
  t.throws(() => imageUser({ User: 'nosuch' }, stack), { code: 'ENOENT', step: 'image.user' });
  t.throws(() => imageUser({ User: 'app:nosuch' }, stack), { code: 'ENOENT', step: 'image.user' });
  // And in a container: the image's User when the user option is absent.
  const r = await run(opts({ command: ['id -u; id -g'] }));
  t.equal(r.stdout.toString(), '1234\n2345\n');
});

t.test('whiteouts hide, the read-only root refuses writes, readonly: false writes go away after', { skip }, async (t) => {
  const r = await run(opts({ entrypoint: ['/bin/sh', '-c'], command: ['cat /opt/kept; ls /opt/dir; test -e /opt/gone && echo VISIBLE; ls /opt'], user: { uid: 0, gid: 0 } }));
  t.equal(r.stdout.toString(), 'layer 2\nnew\ndir\nkept\n');
  const ro = await run(opts({ entrypoint: ['/bin/sh', '-c'], command: ['touch /opt/x 2>&1; echo rc=$?'], user: { uid: 0, gid: 0 } }));
  t.match(ro.stdout.toString(), /Read-only file system[\s\S]*rc=1/);
  const rw = await run(opts({ readonly: false, entrypoint: ['/bin/sh', '-c'], command: ['echo w > /opt/x && echo w > /bin/new && rm /opt/kept && cat /opt/x'], user: { uid: 0, gid: 0 } }));
  t.equal(rw.stdout.toString(), 'w\n');
  const after = await run(opts({ entrypoint: ['/bin/sh', '-c'], command: ['ls /opt /bin/new 2>&1'], user: { uid: 0, gid: 0 } }));
  t.match(after.stdout.toString(), /No such file[\s\S]*dir\nkept/);
  // rootSize caps the writable layer.
  const big = await run(opts({ readonly: false, rootSize: '2M', entrypoint: ['/bin/sh', '-c'], command: ['dd if=/dev/zero of=/big bs=1M count=8 2>&1; echo rc=$?'], user: { uid: 0, gid: 0 } }));
  t.match(big.stdout.toString(), /No space left on device[\s\S]*rc=1/);
});

t.test('the layers are byte for byte unchanged after a container wrote all it could; a missing mount point is made in the upper only', { skip }, async (t) => {
  const before = layerDirs().map(snapshot);
  const src = fs.mkdtempSync(path.join(scratch, 'bind-'));
  fs.writeFileSync(path.join(src, 'f'), 'bound\n');
  const script = [
    'for f in $(find / -xdev -type f 2>/dev/null); do echo junk >> "$f" 2>/dev/null; chmod 777 "$f" 2>/dev/null; done',
    'for d in $(find / -xdev -type d 2>/dev/null); do touch "$d/planted" 2>/dev/null; chown 5:5 "$d" 2>/dev/null; done',
    'rm -rf /opt /etc/passwd 2>/dev/null; ln -s / /opt 2>/dev/null; mknod /dev0 c 1 3 2>/dev/null; mkfifo /fifo',
    'cat /new/dir/f',
  ].join('\n');
  const r = await run(opts({ readonly: false, entrypoint: ['/bin/sh', '-c'], command: [script], user: { uid: 0, gid: 0 }, mounts: [{ type: 'bind', source: src, target: '/new/dir', readonly: true }] }));
  t.equal(r.stdout.toString(), 'bound\n');
  const ro = await run(opts({ entrypoint: ['/bin/sh', '-c'], command: ['cat /new/dir/f; ls -d /new'], user: { uid: 0, gid: 0 }, mounts: [{ type: 'bind', source: src, target: '/new/dir' }] }));
  t.equal(ro.stdout.toString(), 'bound\n/new\n', 'a read-only run gets the point too');
  const after = layerDirs().map(snapshot);
  t.same(after, before, 'every layer: same entries, contents, modes, owners, times, xattrs');
  for (const d of layerDirs()) t.notOk(fs.existsSync(path.join(d, 'new')), `no mount point made in ${path.basename(path.dirname(d))}`);
  t.same(await settledLeases(), []);
});

t.test('a lease keeps the layers while a container runs: removeImage from another process keeps them', { skip }, async (t) => {
  await settledLeases();
  const c = spawn(opts({ entrypoint: ['/bin/sleep'], command: ['30'] }));
  t.equal(leaseFiles().length, 1, 'a lease while it runs');
  const layers = layerDirs();
  execFileSync(process.execPath, ['-e', `require(${JSON.stringify(path.resolve(__dirname, '..'))}).removeImage(${JSON.stringify(ref)}, { storeDir: ${JSON.stringify(store)} }).then(() => require(${JSON.stringify(path.resolve(__dirname, '..'))}).pruneImages({ storeDir: ${JSON.stringify(store)} }))`]);
  t.same(await images({ storeDir: store }), [], 'the reference is gone');
  for (const l of layers) t.ok(fs.existsSync(l), 'the layer stays while in use');
  c.kill();
  await c.wait();
  t.same(await settledLeases(), [], 'the lease went with the container');
  await pruneImages({ storeDir: store });
  for (const l of layers) t.notOk(fs.existsSync(l), 'removed once unused');
  await pull(ref, { storeDir: store });
});

t.test('one store under two names (a symlink): a start through one name keeps the other\'s lease', { skip }, async (t) => {
  await settledLeases();
  const alias = path.join(scratch, 'store-alias');
  fs.symlinkSync(store, alias);
  t.teardown(() => fs.rmSync(alias, { force: true }));
  const c = spawn(opts({ entrypoint: ['/bin/sleep'], command: ['30'] }));
  const layers = layerDirs();
  // A short run of the same image through the other name, then its lease settled.
  const r = await run({ image: ref, storeDir: alias, pull: 'never', entrypoint: ['/bin/true'] });
  t.equal(r.exitCode, 0);
  await new Promise((res) => setTimeout(res, 300));
  t.equal(leaseFiles().length, 1, 'the running container\'s lease is still in the file');
  execFileSync(process.execPath, ['-e', `const n = require(${JSON.stringify(path.resolve(__dirname, '..'))}); n.removeImage(${JSON.stringify(ref)}, { storeDir: ${JSON.stringify(store)} }).then(() => n.pruneImages({ storeDir: ${JSON.stringify(store)} }))`]);
  for (const l of layers) t.ok(fs.existsSync(l), 'the running container\'s layer stays');
  c.kill();
  await c.wait();
  t.same(await settledLeases(), []);
  await pull(ref, { storeDir: store });
});

t.test('createPool with an image: the Entrypoint comes first, the lease lasts until close()', { skip }, async (t) => {
  const pool = createPool({ size: 1, image: ref, storeDir: store, user: { uid: 0, gid: 0 } });
  const r = await pool.run(['echo pooled $GREETING $(pwd)']);
  t.equal(r.stdout.toString(), 'pooled hello /work/here\n');
  t.ok(leaseFiles().length >= 1, 'held while the pool is open');
  await pool.close();
  t.same(leaseFiles(), [], 'released by close()');
});

t.test('machines with an image: persistent upper in the state, ephemeral throw-away; the lease is PID 1\'s', { skip }, async (t) => {
  const cg = countCgroups();
  const before = layerDirs().map(snapshot);
  await settledLeases();
  const m = await Machine.start({ name: 'img-persist', image: ref, storeDir: store, stateDir });
  t.teardown(async () => {
    const mm = await Machine.get('img-persist', { stateDir });
    if (mm && (await mm.state()) !== 'stopped') await mm.kill();
    if (mm) await mm.destroy().catch(() => {});
  });
  t.equal((await m.info()).image, ref);
  const r = await m.run(['sh', '-c', 'echo data > /opt/written; echo $GREETING; cat /opt/kept']);
  t.equal(r.stdout.toString(), 'hello\nlayer 2\n');
  const upper = path.join(stateDir, 'img-persist', 'root', 'upper');
  t.equal(fs.readFileSync(path.join(upper, 'opt/written'), 'utf8'), 'data\n', 'the write is in the machine\'s upper');
  // The Node process's own lease is gone; PID 1's remains, judged by its pid.
  const l = leaseFiles();
  t.equal(l.length, 1);
  t.match(l[0], new RegExp(`^m-${m.pid}-`));
  // removeImage + pruneImages from ANOTHER process: the layers stay while the machine runs.
  const layers = layerDirs();
  const pkg = JSON.stringify(path.resolve(__dirname, '..'));
  execFileSync(process.execPath, ['-e', `const n = require(${pkg}); n.removeImage(${JSON.stringify(ref)}, { storeDir: ${JSON.stringify(store)} }).then(() => n.pruneImages({ storeDir: ${JSON.stringify(store)} }))`]);
  for (const x of layers) t.ok(fs.existsSync(x), 'kept for the running machine');
  const again = await m.run(['cat', '/opt/written']);
  t.equal(again.stdout.toString(), 'data\n');
  await m.stop({ timeout: 2000 });
  await m.destroy();
  t.same(leaseFiles(), [], 'the machine\'s lease is gone with it');
  t.same(layers.map(snapshot), before, 'the layers unchanged by the machine');
  await pruneImages({ storeDir: store });
  for (const x of layers) t.notOk(fs.existsSync(x), 'pruned once the machine is gone');
  await pull(ref, { storeDir: store });

  const e = await Machine.start({ name: 'img-eph', image: ref, storeDir: store, stateDir, ephemeral: true });
  const w = await e.run(['sh', '-c', 'echo x > /opt/eph && cat /opt/eph']);
  t.equal(w.stdout.toString(), 'x\n');
  t.notOk(fs.existsSync(path.join(stateDir, 'img-eph', 'root')), 'no upper in the state of an ephemeral machine');
  await e.stop({ timeout: 2000 });
  await e.destroy();
  t.same(leaseFiles(), []);
  t.equal(countCgroups(), cg, 'no cgroup left');
});

// As root an image's overlay root is made in the mount namespace template where the kernel mounts
// an overlay over a detached upper layer (mnt_template.cc, detached_overlay_root): its tmpfs and
// the overlay are detached mounts, never on the host's staging path.
t.test('as root a writable overlay root is made in the mount template: the same view as without it; each of its ops forced fails with its own step and leaves nothing', { skip: skip || (process.getuid() !== 0 ? 'the template is for containers without a user namespace, which need root' : false) }, async (t) => {
  const { native } = require('../dist/native');
  const { assertNoLeaks, warmUp } = require('./helpers');
  const b = native();
  const orig = { spawn: b.spawn, spawnAsync: b.spawnAsync };
  const seen = { used: 0, not: 0 };
  const note = (res) => {
    if (res && res.usedMntTemplate) seen.used++;
    else seen.not++;
    return res;
  };
  const hook = (mntTemplate) => {
    b.spawn = function (plan, ...a) {
      return note(orig.spawn.call(this, mntTemplate === undefined ? plan : { ...plan, mntTemplate }, ...a));
    };
    b.spawnAsync = function (plan, cb) {
      return orig.spawnAsync.call(this, mntTemplate === undefined ? plan : { ...plan, mntTemplate }, (res) => cb(note(res)));
    };
  };
  const src = fs.mkdtempSync(path.join(scratch, 'tpl-'));
  // A mount point missing from the image (made in the upper layer), a WorkingDir made there too.
  // Writable: each container's own upper layer (a read-only root is prepared once: the next test).
  const o = opts({ readonly: false, entrypoint: ['/bin/sh', '-c'], user: { uid: 0, gid: 0 }, mounts: [{ type: 'bind', source: src, target: '/new/point', readonly: true }],
    command: ['cat /proc/self/mountinfo; echo ---; ls -ln / /new /work | awk \'{ print $1, $3, $4, $NF }\'; pwd; echo w > /opt/x; cat /opt/x'] });
  // (Modes, owners and names only: link counts, sizes and times differ from run to run.)
  // The mount table with the ids, the per-container /etc directory and the overlay's own upper and
  // work paths (a host path without the template, /proc/self/fd/N/... with it) taken out.
  // (Sorted: the template attaches the captured binds in another order.)
  const view = (out) => {
    const [mounts, rest] = out.split('---\n');
    const lines = mounts.split('\n').filter(Boolean).map((l) => l.replace(/^\d+ \d+ \d+:\d+ /, '').replace(/\/etc\/s?-?[0-9a-f-]+\//, '/etc/<etc>/').replace(/,upperdir=[^,]*,workdir=[^,]*/, '').replace(/lowerdir\+=[^,]*(,lowerdir\+=[^,]*)*/, (m) => 'lowerdir=' + m.split(',').map((e) => e.slice('lowerdir+='.length)).join(':')));
    return [...lines.sort(), '---', rest].join('\n');
  };
  let a, c;
  try {
    hook(undefined);
    a = await run(o);
    t.same(seen, { used: 1, not: 0 }, `the run used the template (the kernel takes a detached upper layer: ${b.mntTemplateState().overlay})`);
    hook(false);
    c = await run(o);
    t.same(seen, { used: 1, not: 1 }, 'the comparison did not');
  } finally {
    Object.assign(b, orig);
  }
  t.equal(a.exitCode, 0, a.stderr.toString());
  t.match(a.stdout.toString(), / \/ rw,[^ ]* - overlay overlay [^\n]*upperdir=\/proc\/self\/fd\//, 'the root is the overlay, its upper layer the detached tmpfs');
  t.match(a.stdout.toString(), /\nw\n$/, 'which takes writes');
  t.match(a.stdout.toString(), /\n\/work\/here\n/, 'the WorkingDir made in its upper layer');
  t.equal(view(a.stdout.toString()), view(c.stdout.toString()), 'the same mounts, entries, owners and modes as with CLONE_NEWNS and pivot_root');
  t.notOk(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(' overlay '), 'no overlay on the host');

  // The ops of the overlay root (the upper layer's tmpfs, its directories and files, the overlay
  // itself: the plan's first), each forced to fail. (A failed start drops the process's cached op
  // list and what it holds: the first one is made before the count of what is open.)
  const fail = async (i) => {
    process.env.NSBOX_TEST_FAULT = `mount:${i}:EDOM`;
    try {
      await run(o);
      return null;
    } catch (err) {
      return err;
    } finally {
      delete process.env.NSBOX_TEST_FAULT;
    }
  };
  await fail(0);
  const before = await warmUp();
  let forced = 0;
  for (let i = 0; i < 12; i++) {
    const e = await fail(i);
    t.ok(e, `op ${i}: the start failed`);
    t.equal(e && e.code, 'EDOM', `op ${i}: with the forced errno (${e && e.message})`);
    // The ops after the root's (the WorkingDir's mkdirs in it, /dev, ...) are not its.
    if (!e || e.step !== 'rootfs.overlay') break;
    t.match(e.path, /^(\/run\/nsbox\/|image )/, `op ${i}: ${e.syscall} ${e.path}`);
    forced++;
  }
  t.ok(forced >= 5, `${forced} ops forced (the tmpfs, upper, work, a point, the overlay)`);
  await settledLeases();
  await assertNoLeaks(t, before, 'after the forced overlay failures');
  t.same(h.leftovers(store), [], 'no temporaries in the store');
});

// A read-only image root, as root with the template: made once per image and set of mount points
// (lib/fsops-cache.ts fsOpsFor, prepareImageRoot: an overlay with no upper layer, its made points a
// detached tmpfs on top of the layers) and cloned by each start; never served once its layers are
// gone.
t.test('a read-only root is made once and cloned by each start (not for a container keeping CAP_SYS_ADMIN); after removeImage, or a layer removed and pulled again by another process, a new one', { skip: skip || (process.getuid() !== 0 ? 'the template is for containers without a user namespace, which need root' : false) }, async (t) => {
  const { native } = require('../dist/native');
  if (!native().mntTemplateOverlay()) return t.skip('this kernel does not mount an overlay over detached layers (before Linux 6.15): no prepared root');
  const st = path.join(scratch, 'store-shared');
  const zlib = require('node:zlib');
  const raw = execFileSync('tar', ['--numeric-owner', '-C', bb, '-cf', '-', '.'], { maxBuffer: 2 ** 30 });
  const blob = zlib.gzipSync(raw, { level: 1 });
  const base = { blob, diffId: h.sha256(raw), digest: h.sha256(blob), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' };
  const top = await h.craftLayer([[{ name: 'id', mode: 0o644 }, 'S1\n']]);
  await h.pushRaw(reg.url, 'test/shared', 'v1', [base, top], h.craftImage([base, top]));
  const sref = `${reg.host}/test/shared:v1`;
  await pull(sref, { storeDir: st });
  // The prepared roots this process holds: fds of detached mounts (readlink: "/"), counted from
  // none (the earlier tests' dropped first).
  require('../dist/fsops-cache').forgetImageRoots();
  const fdsOf = () => fs.readdirSync('/proc/self/fd').map((f) => { try { return fs.readlinkSync(`/proc/self/fd/${f}`); } catch { return ''; } });
  const roots = () => fdsOf().filter((l) => l === '/').length;
  const held0 = roots();
  // The root's superblock (major:minor in mountinfo) and what the image's /id says, from inside.
  const look = async (o = {}, extra = '') => {
    const r = await run({ image: sref, storeDir: st, pull: 'never', user: { uid: 0, gid: 0 }, entrypoint: ['/bin/sh', '-c'], command: [`grep ' / / ' /proc/self/mountinfo; cat /id; ${extra}`], ...o });
    t.equal(r.exitCode, 0, r.stderr.toString());
    const [line, id, ...rest] = r.stdout.toString().split('\n');
    return { dev: line.split(' ')[2], line, id, rest: rest.join('\n') };
  };
  const a = await look();
  const b = await look();
  t.equal(a.id, 'S1');
  t.match(a.line, / \/ ro,[^ ]* - overlay overlay ro,lowerdir\+?=(?![^ ]*upperdir)/, 'the root: a read-only overlay with no upper layer');
  t.equal(b.dev, a.dev, 'the second start cloned the same root (one superblock)');
  t.equal(roots(), held0 + 1, 'one root held for both');
  const w = await look({ capabilities: { add: ['SYS_ADMIN'] } }, 'mount -o remount,rw / 2>/dev/null; mount -o remount,bind,rw / 2>/dev/null; (echo x > /id) 2>&1; echo rc=$?; touch /new 2>&1; echo rc=$?');
  // A container keeping CAP_SYS_ADMIN could remount a shared superblock for every container
  // cloning it (attack review): it gets a root of its own, whose writes (after its own remount)
  // stay in its throw-away upper layer.
  t.not(w.dev, a.dev, 'with CAP_SYS_ADMIN: not the shared root (a superblock of its own)');
  const again = await look({}, 'ls /new 2>&1; true');
  t.equal(again.id, 'S1', 'the image is as it was');
  t.match(again.rest, /No such file/, 'and nothing was added to it');
  t.equal((await look({ readonly: false })).id, 'S1', 'a writable root is a container\'s own');
  t.equal(roots(), held0 + 1, 'still one root held: none was prepared for the CAP_SYS_ADMIN start');

  const leases = () => fs.readdirSync(path.join(st, 'leases'));
  const settle = async () => {
    for (let i = 0; i < 60 && leases().length; i++) await new Promise((r) => setTimeout(r, 50));
  };
  // Another process removes the image and pulls it again: the same layer paths, new directories.
  await settle();
  const before = fs.statSync(path.join(st, 'layers', top.diffId.slice(7))).ino;
  execFileSync(process.execPath, ['-e', `const n = require(${JSON.stringify(path.resolve(__dirname, '..'))}); (async () => { await n.removeImage(${JSON.stringify(sref)}, { storeDir: ${JSON.stringify(st)} }); await n.pruneImages({ storeDir: ${JSON.stringify(st)} }); await n.pull(${JSON.stringify(sref)}, { storeDir: ${JSON.stringify(st)} }); })().catch((e) => { console.error(e); process.exit(1); });`]);
  t.not(fs.statSync(path.join(st, 'layers', top.diffId.slice(7))).ino, before, 'the layer was removed and unpacked again');
  const c = await look();
  t.equal(c.id, 'S1');
  t.equal(roots(), held0 + 1, 'a root of the new directories; both of the removed ones closed');
  t.equal((await look()).dev, c.dev, 'and that one is cloned from then on');
  t.equal(roots(), held0 + 1, 'no more fds held for it');

  // This process's removeImage closes its roots at once; the image pulled again gets a new one.
  await removeImage(sref, { storeDir: st });
  t.equal(roots(), held0, 'the prepared root was closed by removeImage');
  await pruneImages({ storeDir: st });
  await pull(sref, { storeDir: st });
  t.equal((await look()).id, 'S1');
  t.equal(roots(), held0 + 1, 'after removeImage and a pull: a new root');
  await settle();
  await removeImage(sref, { storeDir: st });
  await pruneImages({ storeDir: st });
  t.equal(roots(), held0);
  t.same(h.leftovers(st), []);
});

t.test('failures leave nothing: a command not found, a bad User, userns as root', { skip }, async (t) => {
  const cg = countCgroups();
  t.same(await settledLeases(), [], 'no lease before (the earlier runs\' settled)');
  await t.rejects(run(opts({ entrypoint: ['/no/such'] })), { code: 'ENOENT', step: 'exec' });
  t.same(leaseFiles(), []);
  await t.rejects(run(opts({ userns: true, command: ['true'] })), { code: 'ENOTSUP', message: /user namespace/ });
  t.same(leaseFiles(), []);
  await t.rejects(Machine.start({ name: 'img-bad', image: ref, storeDir: store, stateDir, userns: true }), { code: 'ENOTSUP' });
  t.same(leaseFiles(), []);
  t.notOk(fs.existsSync(path.join(stateDir, 'img-bad')), 'no machine state left');
  await t.rejects(run(opts({ image: `${reg.host}/test/nosuch:v1` })), { name: 'NsboxError' });
  t.same(leaseFiles(), []);
  t.equal(countCgroups(), cg, 'no cgroup left');
  t.same(h.leftovers(store), [], 'no temporaries in the store');
});

t.test('a start right after an exit reuses the lease file unwritten; a re-tag and this process\'s removeImage are seen at once', { skip }, async (t) => {
  const st = path.join(scratch, 'store-warm');
  const zlib = require('node:zlib');
  const raw = execFileSync('tar', ['--numeric-owner', '-C', bb, '-cf', '-', '.'], { maxBuffer: 2 ** 30 });
  const blob = zlib.gzipSync(raw, { level: 1 });
  const base = { blob, diffId: h.sha256(raw), digest: h.sha256(blob), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' };
  const tagged = async (id) => {
    const top = await h.craftLayer([[{ name: 'id', mode: 0o644 }, `${id}\n`]]);
    await h.pushRaw(reg.url, 'test/warm', 'v1', [base, top], h.craftImage([base, top]));
    await pull(`${reg.host}/test/warm:v1`, { storeDir: st });
    return top.diffId.slice(7);
  };
  const wref = `${reg.host}/test/warm:v1`;
  const keyA = await tagged('A');
  const leases = () => fs.readdirSync(path.join(st, 'leases'));
  const cat = () => run({ image: wref, storeDir: st, pull: 'never', command: ['cat', '/id'] });
  t.equal((await cat()).stdout.toString(), 'A\n');
  const [file] = leases();
  t.ok(file, 'the exited container\'s lease is still in the file a moment');
  const ino = fs.statSync(path.join(st, 'leases', file)).ino;
  t.equal((await cat()).stdout.toString(), 'A\n');
  t.equal(fs.statSync(path.join(st, 'leases', file)).ino, ino, 'the next start pinned the same file, unwritten');
  for (let i = 0; i < 60 && leases().length; i++) await new Promise((r) => setTimeout(r, 50));
  t.same(leases(), [], 'settled once no container uses the image');

  // Another image under the same name: the next start sees it (refs.json is checked every time).
  const keyB = await tagged('B');
  t.equal((await cat()).stdout.toString(), 'B\n', 'the re-tagged image runs');
  // removeImage + pruneImages in this process right after an exit: the layers go at once.
  t.ok(leases().length, 'the lease lingers');
  await removeImage(wref, { storeDir: st });
  await pruneImages({ storeDir: st });
  for (const k of [keyA, keyB]) t.notOk(fs.existsSync(path.join(st, 'layers', k)), `layer ${k.slice(0, 12)} removed at once`);
  t.same(leases(), [], 'no lease file left');
  t.same(h.leftovers(st), []);
});

t.test('CLI: nsbox pull, images --json, run IMAGE [COMMAND...], image import, rmi, image prune', { skip }, async (t) => {
  const { spawnSync } = require('node:child_process');
  const bin = path.join(__dirname, '..', 'bin', 'nsbox.js');
  const cliStore = path.join(scratch, 'cli-store');
  const nsbox = (args) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120000 });
  const p = nsbox(['pull', '--store', cliStore, ref]);
  t.equal(p.status, 0, p.stderr);
  t.match(p.stdout, /^[0-9a-f]{12}: done\n/m, 'a plain line per layer (no tty)');
  t.match(p.stdout, new RegExp(`${ref.replace(/[.]/g, '\\.')} sha256:[0-9a-f]{64}\\n$`));
  const ls = nsbox(['images', '--store', cliStore, '--json']);
  t.equal(ls.status, 0);
  t.same(JSON.parse(ls.stdout).map((i) => [i.ref, i.layers]), [[ref, 2]]);
  const r = nsbox(['run', '--store', cliStore, '--env', 'EXTRA=cli', ref]);
  t.equal(r.stdout, 'hello|cli|/home/app|/work/here|1234:2345:2345 3456\n', r.stderr);
  t.equal(r.status, 0);
  const r2 = nsbox(['run', '--store', cliStore, '--user', '0:0', ref, 'exit 3']);
  t.equal(r2.status, 3, 'the command after IMAGE (flags after it are its own)');
  const r3 = nsbox(['run', '--store', cliStore, '--entrypoint', '/bin/echo', ref, '-n', 'x']);
  t.equal(r3.stdout, 'x');
  const never = nsbox(['run', '--store', path.join(scratch, 'empty-store'), '--pull', 'never', ref]);
  t.equal(never.status, 125);
  t.match(never.stderr, /ERR_IMAGE_UNKNOWN/);
  // import: the umoci layout of the test image under a tag of its own.
  const layout = path.join(scratch, 'umoci', 'layout');
  const imp = nsbox(['image', 'import', '--store', cliStore, '--tag', 'local/imported:1', layout]);
  t.equal(imp.status, 0, imp.stderr);
  const ri = nsbox(['run', '--store', cliStore, '--pull', 'never', 'local/imported:1', 'echo imported']);
  t.equal(ri.stdout, 'imported\n', ri.stderr);
  t.equal(nsbox(['rmi', '--store', cliStore, ref]).status, 0);
  t.equal(nsbox(['rmi', '--store', cliStore, 'local/imported:1']).status, 0);
  const pr = nsbox(['image', 'prune', '--store', cliStore]);
  t.equal(pr.status, 0);
  t.same(JSON.parse(nsbox(['images', '--store', cliStore, '--json']).stdout), []);
  t.same(fs.readdirSync(path.join(cliStore, 'layers')), [], 'every layer removed');
});
