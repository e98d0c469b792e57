// Images rootless (issue #19): run by test/rootless/run.sh as an unprivileged user, in a delegated
// cgroup and inside `unshare -r`. The user starts its own registry (Debian's docker-registry on
// 127.0.0.1), pushes an image with skopeo, pulls it into the rootless store ($XDG_DATA_HOME/nsbox/
// images), and runs it: the root seen from inside equals `umoci unpack --rootless` of the same
// image, is read-only by default, readonly: false writes go to a throw-away upper, whiteouts and
// opaque directories apply, a setuid file gives nothing, a machine keeps its writes in its state,
// and a running container's lease keeps the layers through removeImage from another process.
// Owners are not compared: the rootless store keeps every file as the caller's (docs/images.md).
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { run, spawn, Machine, pull, images, removeImage, pruneImages } = require('..');
const { busyboxRootfs, probeBinary, warmUp, assertNoLeaks, machineStateDir, manyIds } = require('./helpers');
const { privileged } = require('../dist/runtime');
const h = require('./images/helpers');

const strict = process.env.NSBOX_REQUIRE_ROOTLESS === '1';
// Outside the rootless lane a missing piece is a skip; inside it (NSBOX_REQUIRE_ROOTLESS=1) a failure.
const lane = (why) => (strict ? false : why);
const mode = process.env.NSBOX_ROOTLESS_MODE || 'plain';
const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const tools = ['docker-registry', 'skopeo', 'umoci'].find((c) => !h.have(c));
const skip =
  (privileged() && 'runs as an unprivileged user in the rootless lane (bash test/rootless/run.sh); test 95/96 cover root') ||
  lane(noBusybox) ||
  lane(tools && `${tools} is missing (apt-get install ${tools})`) ||
  false;
const uid = process.geteuid();
const gid = process.getegid();

let before;
let reg;
let scratch;
let store;
let ref;
let layout;
const savedXdg = process.env.XDG_DATA_HOME;

/** The image: the busybox test rootfs, then a layer of files (a setuid one, one owned by 1000), then whiteouts, an opaque directory and changes. */
async function makeImage() {
  const raw = execFileSync('tar', ['-C', bb, '--numeric-owner', '--owner=0', '--group=0', '-cf', '-', '.'], { maxBuffer: 1 << 28 });
  const base = { blob: raw, diffId: h.sha256(raw), digest: h.sha256(raw), mediaType: 'application/vnd.oci.image.layer.v1.tar' };
  const l1 = await h.craftLayer([
    [{ name: 'opt/', type: 'directory', mode: 0o755 }],
    [{ name: 'opt/d/', type: 'directory', mode: 0o755 }],
    [{ name: 'opt/d/old', mode: 0o644 }, 'old\n'],
    [{ name: 'opt/gone', mode: 0o644 }, 'gone\n'],
    [{ name: 'opt/kept', mode: 0o644 }, 'layer 1\n'],
    [{ name: 'opt/owned', mode: 0o600, uid: 1000, gid: 1000 }, 'a file of uid 1000\n'],
    [{ name: 'opt/suid', mode: 0o4755, uid: 0, gid: 0 }, fs.readFileSync(probeBinary())],
  ]);
  const l2 = await h.craftLayer([
    [{ name: 'opt/', type: 'directory', mode: 0o755 }],
    [{ name: 'opt/d/', type: 'directory', mode: 0o750 }],
    [{ name: 'opt/d/.wh..wh..opq', mode: 0o644 }, ''],
    [{ name: 'opt/d/new', mode: 0o644 }, 'new\n'],
    [{ name: 'opt/.wh.gone', mode: 0o644 }, ''],
    [{ name: 'opt/kept', mode: 0o644 }, 'layer 2\n'],
    [{ name: 'etc/motd', mode: 0o644 }, 'rootless\n'],
  ]);
  const img = h.craftImage([base, l1, l2]);
  const c = JSON.parse(img.config);
  c.config = { Cmd: ['/bin/sh', '-c', 'echo from-cmd'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'GREETING=hello'] };
  img.config = Buffer.from(JSON.stringify(c));
  const m = JSON.parse(img.manifest);
  m.config.digest = h.sha256(img.config);
  m.config.size = img.config.length;
  img.manifest = Buffer.from(JSON.stringify(m));
  return h.craftLayout(path.join(scratch, 'layout'), 'v1', [base, l1, l2], img).layout;
}

function layerDirs() {
  const d = path.join(store, 'layers');
  return fs.readdirSync(d).sort().map((k) => path.join(d, k, 'diff'));
}

function leaseFiles() {
  try {
    return fs.readdirSync(path.join(store, 'leases'));
  } catch {
    return [];
  }
}

/** Every entry under a layer: path, mode, owner, size, mtime, ctime, content hash and xattrs. */
function snapshot(root) {
  const { fsat } = require('../build/Release/nsbox.node');
  const out = [];
  const walk = (rel) => {
    const p = path.join(root, rel);
    const st = fs.lstatSync(p);
    const e = [rel, st.mode, st.uid, st.gid, st.size, st.mtimeMs, st.ctimeMs, st.rdev];
    const names = fsat.llistxattr(p);
    if (Array.isArray(names)) e.push(names.sort().map((n) => `${n}=${Buffer.from(fsat.lgetxattr(p, n) || '').toString('hex')}`).join(','));
    if (st.isFile()) e.push(h.sha256(fs.readFileSync(p)));
    out.push(e);
    if (st.isDirectory()) for (const n of fs.readdirSync(p).sort()) walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return out;
}

// One line per entry under $1: path, then d MODE | f MODE SHA256 | l TARGET | o RAWMODE; and with
// $2 = mnt, a line `MNT path` per mount point (from mountinfo: st_dev cannot tell them, overlay
// reports a lower file's own device). Run by busybox inside the container and over umoci's rootfs
// on the host; sorted by the caller.
const LIST = [
  'cd "$1" || exit 1',
  '[ "$2" = mnt ] && awk \'{ print "MNT ." $5 }\' /proc/self/mountinfo',
  'find . -xdev ! -path . | while IFS= read -r f; do',
  '  if [ -L "$f" ]; then echo "$f l $(readlink "$f")"',
  '  elif [ -d "$f" ]; then echo "$f d $(stat -c %a "$f")"',
  '  elif [ -f "$f" ]; then echo "$f f $(stat -c %a "$f") $(sha256sum < "$f" | cut -c1-64)"',
  '  else echo "$f o $(stat -c %f "$f")"; fi',
  'done',
].join('\n');

const lines = (s) => s.split('\n').filter(Boolean).sort();

t.before(async () => {
  if (skip) return;
  before = await warmUp();
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-rlimg-'));
  // The default rootless store, in a directory of this test's own.
  process.env.XDG_DATA_HOME = path.join(scratch, 'data');
  store = path.join(scratch, 'data', 'nsbox', 'images');
  reg = await h.startRegistry();
  layout = await makeImage();
  h.push(`${layout}:v1`, reg.host, 'test/rootless:v1');
  ref = `${reg.host}/test/rootless:v1`;
});

t.teardown(async () => {
  if (savedXdg === undefined) delete process.env.XDG_DATA_HOME;
  else process.env.XDG_DATA_HOME = savedXdg;
  if (reg) await reg.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

t.test('pull: into $XDG_DATA_HOME/nsbox/images, 0700, every file the caller\'s, user.overlay attributes', { skip }, async (t) => {
  const info = await pull(ref);
  t.equal(info.layers.length, 3);
  t.ok(fs.existsSync(path.join(store, 'refs.json')), `the store is ${store}`);
  t.equal(fs.statSync(store).mode & 0o777, 0o700, 'the store is 0700: no other host user reaches its setuid files');
  t.equal(fs.statSync(path.join(store, 'layers')).mode & 0o777, 0o700);
  t.same((await images()).map((i) => i.ref), [ref], 'images() lists it from the default store');
  const metas = fs.readdirSync(path.join(store, 'layers')).map((k) => JSON.parse(fs.readFileSync(path.join(store, 'layers', k, 'layer.json'))));
  t.same(metas.map((m) => m.xattrs), ['user', 'user', 'user'], 'every layer says user.overlay (mount with userxattr)');
  const { fsat } = require('../build/Release/nsbox.node');
  const top = layerDirs().find((d) => fs.existsSync(path.join(d, 'opt/d/new')));
  t.ok(top, 'the top layer is in the store');
  t.equal(fsat.lgetxattr(path.join(top, 'opt/d'), 'user.overlay.opaque').toString(), 'y', 'the opaque directory has user.overlay.opaque=y');
  t.type(fsat.lgetxattr(path.join(top, 'opt/d'), 'trusted.overlay.opaque'), 'number', 'and no trusted.overlay.opaque');
  const wh = fs.lstatSync(path.join(top, 'opt/gone'));
  t.ok(wh.isCharacterDevice() && wh.rdev === 0, 'the whiteout is a 0/0 character device (made unprivileged)');
  const owners = new Set();
  let suid = null;
  for (const d of layerDirs()) {
    for (const e of snapshot(d)) {
      owners.add(`${e[2]}:${e[3]}`);
      if (e[0] === 'opt/suid') suid = e;
    }
  }
  t.same([...owners], [`${uid}:${gid}`], 'every entry of every layer is owned by the caller (the rootless shortcut)');
  t.equal(suid && suid[1] & 0o7777, 0o4755, 'the setuid bit is kept (on a file of the caller\'s)');
  t.same(h.leftovers(store), [], 'no temporaries, partial blobs or locks left');
});

t.test('run({ image }): the root is the image, entry for entry as umoci unpack --rootless makes it', { skip }, async (t) => {
  const r = await run({ image: ref, pull: 'never', command: ['/bin/sh', '-c', LIST, 'sh', '/', 'mnt'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const bundle = path.join(scratch, 'umoci-bundle');
  h.sh('umoci', ['unpack', '--rootless', '--image', `${layout}:v1`, bundle]);
  t.teardown(() => fs.rmSync(bundle, { recursive: true, force: true }));
  const ref0 = lines(h.sh(path.join(bb, 'bin/busybox'), ['sh', '-c', LIST, 'sh', path.join(bundle, 'rootfs')], { maxBuffer: 1 << 26 }));
  const all = lines(r.stdout.toString());
  // A mount point shows what is mounted on it (/proc, /dev, /etc/hosts, ...): only its name and
  // that umoci's tree has it are compared. Paths of the tree and of mountinfo, ./ and /./ alike.
  const mnt = new Set(all.filter((l) => l.startsWith('MNT ')).map((l) => l.slice(4).replace(/^\.\/\.?\//, './')));
  t.ok(mnt.has('./proc') && mnt.has('./dev'), 'the mount points inside were read from mountinfo');
  const strip = (l) => (mnt.has(l.split(' ')[0]) ? `${l.split(' ')[0]} (mount point)` : l);
  const ours = all.filter((l) => !l.startsWith('MNT ')).map(strip);
  const want = ref0.map(strip);
  const missing = want.filter((l) => !ours.includes(l));
  const extra = ours.filter((l) => !want.includes(l));
  t.same({ missing: missing.slice(0, 10), extra: extra.slice(0, 10) }, { missing: [], extra: [] }, `the same ${want.length} entries: names, types, modes, contents, link targets`);
  t.ok(want.length > 300, 'the compared tree is the whole busybox rootfs');
  const files = want.filter((l) => / f \d+ [0-9a-f]{64}$/.test(l));
  t.ok(files.length >= 8 && files.some((l) => l.startsWith('./opt/suid f 4755 ')), `${files.length} regular files compared by content and mode (setuid kept)`);
  t.ok(want.filter((l) => l.endsWith('(mount point)')).length < 20, `only the few mount points are left out of the comparison (${[...mnt].join(' ')})`);
  t.same(ours.filter((l) => l.startsWith('./opt/d')), ['./opt/d d 750', `./opt/d/new f 644 ${h.sha256(Buffer.from('new\n')).slice(7)}`], 'the opaque directory holds the top layer\'s entry only');
  t.notOk(ours.some((l) => l.startsWith('./opt/d/old ') || l.startsWith('./opt/gone ')), 'the opaque directory hides the lower entry; the whiteout hides /opt/gone');
  const cmd = await run({ image: ref, pull: 'never' });
  t.equal(cmd.stdout.toString(), 'from-cmd\n', 'the image\'s Cmd runs when no command is given');
});

t.test('read-only by default: the probe inside sees an overlay root with userxattr it cannot write', { skip }, async (t) => {
  const r = await run({ image: ref, pull: 'never', command: ['/probe', 'info'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const i = JSON.parse(r.stdout.toString());
  t.equal(i.euid, 0, 'root inside (the image\'s User is unset)');
  t.equal(i.root_writable, false, 'the root is not writable');
  const rootLine = i.mountinfo.split('\n').filter((l) => l.split(' ')[4] === '/').pop();
  t.match(rootLine, / - overlay /, `the root is an overlay: ${rootLine}`);
  t.match(rootLine, /[ ,]userxattr(,|$)/, 'mounted with userxattr (the layers carry user.overlay.*)');
  t.match(rootLine.split(' ')[5], /(^|,)ro(,|$)/, 'mounted read-only');
  t.match(rootLine.split(' ')[5], /nodev/, 'and nodev');
  const w = await run({ image: ref, pull: 'never', command: ['/bin/sh', '-c', 'touch /opt/x 2>&1; echo rc=$?; cat /proc/self/uid_map; echo $GREETING'] });
  t.match(w.stdout.toString(), /Read-only file system[\s\S]*rc=1/, 'a write is EROFS');
  t.match(w.stdout.toString(), new RegExp(`^\\s*0\\s+${mode === 'unshare' ? 0 : uid}\\s+1$`, 'm'), 'container root is the caller');
  t.match(w.stdout.toString(), /hello\n$/, 'the image\'s Env');
});

t.test('readonly: false: writes go to a throw-away upper; the layers stay byte for byte the same', { skip }, async (t) => {
  const beforeLayers = layerDirs().map(snapshot);
  const rw = await run({ image: ref, pull: 'never', readonly: false, command: ['/bin/sh', '-c', 'echo w > /opt/x && echo w > /bin/new && rm /opt/kept && rm -r /opt/d && chmod 777 /etc && echo junk >> /etc/motd && cat /opt/x /etc/motd'] });
  t.equal(rw.exitCode, 0, rw.stderr.toString());
  t.equal(rw.stdout.toString(), 'w\nrootless\njunk\n');
  const after = await run({ image: ref, pull: 'never', command: ['/bin/sh', '-c', 'ls /opt; cat /opt/kept /etc/motd; stat -c %a /etc; test -e /bin/new && echo LEFT'] });
  t.equal(after.stdout.toString(), 'd\nkept\nowned\nsuid\nlayer 2\nrootless\n755\n', 'the next container sees the image unchanged');
  const small = await run({ image: ref, pull: 'never', readonly: false, rootSize: '1M', command: ['/bin/sh', '-c', 'dd if=/dev/zero of=/big-file bs=1M count=4 2>&1; echo rc=$?'] });
  t.match(small.stdout.toString(), /No space left on device[\s\S]*rc=1/, `rootSize caps the upper: ${small.stdout}${small.stderr}`);
  t.same(layerDirs().map(snapshot), beforeLayers, 'every layer: same entries, modes, owners, times, contents and xattrs');
});

t.test('a setuid-root file in the image gives no privilege to a user inside', { skip: skip || manyIds() }, async (t) => {
  // Without no_new_privs, /opt/suid (uid 0 in the image: the caller on the host, root inside)
  // would run as container root for uid 1000 (a subordinate id on the host).
  const r = await run({ image: ref, pull: 'never', user: { uid: 1000, gid: 1000 }, command: ['/opt/suid', 'info'] });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const i = JSON.parse(r.stdout.toString());
  t.equal(i.uid, 1000);
  t.equal(i.euid, 1000, 'the effective uid stays 1000');
  t.equal(i.status.CapEff, '0000000000000000', 'no capabilities gained');
  t.equal(i.status.NoNewPrivs, '1', 'no_new_privs is set');
  // The rootless shortcut, visible: a file the image gives to uid 1000 is the caller's on the host,
  // so root's inside, and uid 1000 cannot read it.
  const own = await run({ image: ref, pull: 'never', user: { uid: 1000, gid: 1000 }, command: ['/bin/sh', '-c', 'stat -c %u:%g /opt/owned; cat /opt/owned 2>&1; echo rc=$?'] });
  t.match(own.stdout.toString(), /^0:0\n[\s\S]*Permission denied[\s\S]*rc=1/, 'a file of uid 1000 in the image is root\'s inside (docs/images.md: every file the caller\'s)');
});

t.test('Machine.start({ image }) rootless: a persistent upper in the state, the lease is PID 1\'s', { skip }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-rlimg-m-');
  const beforeLayers = layerDirs().map(snapshot);
  const m = await Machine.start({ name: 'rl-img', image: ref, pull: 'never', stateDir });
  t.equal((await m.info()).image, ref);
  const r = await m.run(['sh', '-c', 'echo data > /opt/written; echo $GREETING; cat /opt/kept; id -u']);
  t.equal(r.stdout.toString(), 'hello\nlayer 2\n0\n', r.stderr.toString());
  const written = path.join(stateDir, 'rl-img', 'root', 'upper', 'opt', 'written');
  t.equal(fs.readFileSync(written, 'utf8'), 'data\n', 'the write is in the machine\'s upper, in its state');
  t.equal(fs.statSync(written).uid, uid, 'owned by the caller on the host');
  const l = leaseFiles();
  t.equal(l.length, 1, 'one lease');
  t.match(l[0], new RegExp(`^m-${m.pid}-`), 'owned by the machine\'s PID 1');
  const { killed } = await m.stop({ timeout: 5000 });
  t.equal(killed, false, 'stopped without a kill');
  t.equal(fs.readFileSync(written, 'utf8'), 'data\n', 'the upper is kept after stop(), until destroy()');
  t.same(leaseFiles(), [], 'the lease went with PID 1');
  await m.destroy();
  t.notOk(fs.existsSync(path.join(stateDir, 'rl-img')), 'destroy() removed the state and its upper');
  t.same(layerDirs().map(snapshot), beforeLayers, 'the layers unchanged by the machine');
});

t.test('a root store\'s layers (trusted.overlay attributes) are refused rootless with ENOTSUP', { skip }, async (t) => {
  // A copy of the store whose layers say trusted.overlay.*, as root's store does: the namespace
  // could not read those attributes, so the overlay would show the image wrong.
  const other = path.join(scratch, 'trusted-store');
  fs.mkdirSync(other, { mode: 0o700 });
  for (const f of ['refs.json', 'blobs']) fs.cpSync(path.join(store, f), path.join(other, f), { recursive: true });
  fs.mkdirSync(path.join(other, 'leases'));
  for (const k of fs.readdirSync(path.join(store, 'layers'))) {
    fs.mkdirSync(path.join(other, 'layers', k, 'diff'), { recursive: true });
    const meta = JSON.parse(fs.readFileSync(path.join(store, 'layers', k, 'layer.json')));
    fs.writeFileSync(path.join(other, 'layers', k, 'layer.json'), JSON.stringify({ ...meta, xattrs: 'trusted' }));
  }
  await t.rejects(run({ image: ref, storeDir: other, pull: 'never', command: ['/bin/true'] }), { name: 'NsboxError', code: 'ENOTSUP', step: 'rootfs.overlay', message: /user namespace/ });
  t.same(fs.readdirSync(path.join(other, 'leases')), [], 'the lease was released');
  await t.rejects(run({ image: ref, pull: 'never', userns: false, command: ['/bin/true'] }), { name: 'NsboxError', code: 'ENOTSUP', message: /userns: false/ }, 'userns: false is root\'s only');
  t.same(leaseFiles(), []);
});

t.test('a running container\'s lease keeps the layers through removeImage and pruneImages from another process', { skip }, async (t) => {
  const c = spawn({ image: ref, pull: 'never', command: ['/bin/sleep', '30'] });
  t.equal(leaseFiles().length, 1, 'a lease while it runs');
  const layers = layerDirs();
  const pkg = JSON.stringify(path.resolve(__dirname, '..'));
  // The other process finds the same default store through the same XDG_DATA_HOME.
  execFileSync(process.execPath, ['-e', `const n = require(${pkg}); n.removeImage(${JSON.stringify(ref)}).then(() => n.pruneImages())`], { env: process.env });
  t.same(await images(), [], 'the reference is gone');
  for (const l of layers) t.ok(fs.existsSync(l), `layer ${path.basename(path.dirname(l)).slice(0, 12)} stays while in use`);
  const still = await run({ image: ref, pull: 'never', command: ['/bin/true'] }).catch((e) => e);
  t.equal(still.code, 'ERR_IMAGE_UNKNOWN', 'a new container cannot start from the removed reference');
  c.kill();
  await c.wait();
  // A container's exit leaves its lease in the file LEASE_SETTLE_MS (100 ms, lib/images/store.ts)
  // before it is settled: waited for, at most 3 s.
  for (let i = 0; i < 60 && leaseFiles().length; i++) await new Promise((r) => setTimeout(r, 50));
  t.same(leaseFiles(), [], 'the lease went with the container');
  const p = await pruneImages();
  t.equal(p.layers, 3, 'pruned once unused');
  for (const l of layers) t.notOk(fs.existsSync(l));
  await t.rejects(removeImage(ref), { code: 'ERR_IMAGE_UNKNOWN' });
});

t.test('nothing left: the registry, leases, temporaries, processes, fds and mounts', { skip }, async (t) => {
  const pid = reg.pid;
  await reg.stop();
  reg = null;
  t.notOk(fs.existsSync(`/proc/${pid}`), `the registry (pid ${pid}) is gone`);
  t.same(leaseFiles(), [], 'no lease file');
  t.same(h.leftovers(store), [], 'no temporaries or locks in the store');
  await assertNoLeaks(t, before, 'after the rootless image tests');
});
