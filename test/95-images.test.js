// Images, part 1 (issue #19): pull from a real registry (Debian's docker-registry on 127.0.0.1),
// store, unpack; the merged layers must equal what `umoci unpack` makes of the same image, entry by
// entry. Images are made with umoci (busybox rootfs + changes) and by hand (opaque directories,
// hard links into a lower layer), pushed with skopeo.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { pull, images, removeImage, pruneImages, importImage, NsboxError } = require('..');
const { imageRoot, leaseImage } = require('../dist/images');
const h = require('./images/helpers');

const { bb, skip } = h.imageTestEnv();

let reg;
let scratch;
let store;
let img;
const procsBefore = new Set(fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)));

// Three layers from umoci: busybox; setuid/setgid, owners, xattrs, hard and symbolic links, a FIFO
// and a device; then deletions (whiteouts) and a changed file.
h.registryWithImage(t, {
  skip,
  prefix: 'nsbox-images-',
  name: 'test/umoci:v1',
  ready: (fx) => ({ scratch, store, reg, img } = fx),
  steps: [
    (rootfs) => fs.cpSync(bb, rootfs, { recursive: true, verbatimSymlinks: true }),
    (rootfs) => {
      fs.mkdirSync(path.join(rootfs, 'opt/app/sub'), { recursive: true });
      fs.writeFileSync(path.join(rootfs, 'opt/app/tool'), 'tool\n');
      fs.chmodSync(path.join(rootfs, 'opt/app/tool'), 0o4755);
      fs.chmodSync(path.join(rootfs, 'opt/app/sub'), 0o2775);
      fs.writeFileSync(path.join(rootfs, 'opt/app/owned'), 'x'.repeat(70000));
      fs.chownSync(path.join(rootfs, 'opt/app/owned'), 1000, 1001);
      fs.linkSync(path.join(rootfs, 'opt/app/owned'), path.join(rootfs, 'opt/app/owned-link'));
      fs.symlinkSync('../app/tool', path.join(rootfs, 'opt/app/sym'));
      h.sh('mkfifo', [path.join(rootfs, 'opt/app/fifo')]);
      h.sh('mknod', [path.join(rootfs, 'opt/app/null'), 'c', '1', '3']);
      const { fsat } = require('../build/Release/nsbox.node');
      const fd = fs.openSync(path.join(rootfs, 'opt/app/tool'), 'r');
      // cap_net_raw+ep as a VFS_CAP_REVISION_2 structure.
      fsat.fsetxattr(fd, 'security.capability', Buffer.from('0000000201200000000000000000000000000000', 'hex'));
      fsat.fsetxattr(fd, 'user.note', Buffer.from('hello'));
      fs.closeSync(fd);
      fs.writeFileSync(path.join(rootfs, 'opt/app/sub/gone'), 'gone');
    },
    (rootfs) => {
      fs.rmSync(path.join(rootfs, 'opt/app/sub/gone'));
      fs.rmSync(path.join(rootfs, 'bin/cat'));
      fs.writeFileSync(path.join(rootfs, 'etc/motd'), 'changed\n');
    },
  ],
});

/** What umoci unpack makes of an OCI layout's image. */
function umociTree(layoutRef) {
  const bundle = fs.mkdtempSync(path.join(scratch, 'ref-'));
  fs.rmdirSync(bundle);
  h.sh('umoci', ['unpack', '--image', layoutRef, bundle]);
  const tr = h.tree(path.join(bundle, 'rootfs'));
  fs.rmSync(bundle, { recursive: true, force: true });
  return tr;
}

function compareTrees(t, ours, ref) {
  // The root's own attributes are umoci's choice for the bundle; every entry under it is compared.
  const a = new Map(ours.filter((e) => e.path !== '.').map((e) => [e.path, e]));
  const b = new Map(ref.filter((e) => e.path !== '.').map((e) => [e.path, e]));
  const diffs = [];
  for (const [p, e] of b) if (!a.has(p)) diffs.push(`missing ${p}`);
  for (const [p, e] of a) {
    if (!b.has(p)) diffs.push(`extra ${p} (${e.type})`);
    else if (JSON.stringify(e) !== JSON.stringify(b.get(p))) diffs.push(`differs ${p}: ours ${JSON.stringify(e)} umoci ${JSON.stringify(b.get(p))}`);
  }
  t.same(diffs.slice(0, 20), [], `every entry equals umoci's (${b.size} entries)`);
  t.ok(b.size > 50, 'the compared tree is not empty');
}

t.test('pull: the merged layers equal umoci unpack, entry by entry', { skip }, async (t) => {
  const events = [];
  const info = await pull(`${reg.host}/test/umoci:v1`, { storeDir: store, onProgress: (e) => events.push(e.phase) });
  t.equal(info.ref, `${reg.host}/test/umoci:v1`);
  const inspect = JSON.parse(h.sh('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/test/umoci:v1`]));
  t.equal(info.digest, inspect.Digest, 'the digest is the one skopeo inspect reports');
  t.equal(info.platform, 'linux/amd64');
  t.equal(info.layers.length, 3);
  t.ok(info.size > 0 && info.config.rootfs, 'size and the OCI config');
  t.ok(events.includes('download') && events.includes('layer'), 'progress was reported');
  const root = imageRoot(info.ref, { storeDir: store });
  t.equal(root.layers.length, 3);
  const ours = h.mergedTree(root.layers, scratch);
  compareTrees(t, ours, umociTree(`${img.layout}:v1`));
  const tool = ours.find((e) => e.path === 'opt/app/tool');
  t.equal(tool.mode, '4755', 'setuid kept');
  t.equal(tool.xattrs['security.capability'], '0000000201200000000000000000000000000000', 'security.capability kept byte for byte');
  t.same(h.leftovers(store), [], 'no temporaries, partial blobs or locks left');
  t.same((await images({ storeDir: store })).map((i) => i.ref), [info.ref]);
});

t.test('pull again: nothing is downloaded; gzip, zstd and uncompressed layers', { skip }, async (t) => {
  const events = [];
  await pull(`${reg.host}/test/umoci:v1`, { storeDir: store, onProgress: (e) => events.push(e.phase) });
  t.notOk(events.includes('download'), 'every layer was in the store');
  // skopeo 1.9 reuses the gzip blobs the registry has: the zstd and plain layers are made here.
  const a = await h.craftLayer([[{ name: 'gz', mode: 0o644 }, 'gzip\n']]);
  const raw = await h.craftLayer([[{ name: 'z', mode: 0o600 }, 'z'.repeat(100000)]], { compress: false });
  const z = { ...raw, blob: h.sh('zstd', ['-q', '-c'], { input: raw.blob, encoding: 'buffer' }), mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' };
  z.digest = h.sha256(z.blob);
  const plain = await h.craftLayer([[{ name: 'plain', mode: 0o644 }, 'plain\n']], { compress: false });
  const im = h.craftImage([a, z, plain]);
  await h.pushRaw(reg.url, 'test/zstd', 'v1', [a, z, plain], im);
  const info = await pull(`${reg.host}/test/zstd:v1`, { storeDir: store });
  t.same(info.layers.map((l) => l.mediaType.split('.').pop()), ['tar+gzip', 'tar+zstd', 'tar']);
  const root = imageRoot(info.ref, { storeDir: store });
  t.equal(fs.readFileSync(path.join(root.layers[1], 'z'), 'utf8'), 'z'.repeat(100000), 'the zstd layer unpacked');
  t.equal(fs.readFileSync(path.join(root.layers[2], 'plain'), 'utf8'), 'plain\n', 'the uncompressed layer unpacked');
});

t.test('hand-made layers: opaque directory, whiteouts and a hard link into a lower layer', { skip }, async (t) => {
  const l1 = await h.craftLayer([
    [{ name: 'd/', type: 'directory', mode: 0o755 }],
    [{ name: 'd/old', mode: 0o644 }, 'old'],
    [{ name: 'keep', mode: 0o640, uid: 7, gid: 8 }, 'keep me'],
    [{ name: 'gone', mode: 0o644 }, 'gone'],
  ]);
  const l2 = await h.craftLayer([
    [{ name: 'd/', type: 'directory', mode: 0o700 }],
    [{ name: 'd/.wh..wh..opq', mode: 0o644 }, ''],
    [{ name: 'd/new', mode: 0o644 }, 'new'],
    [{ name: '.wh.gone', mode: 0o644 }, ''],
    [{ name: 'keep-link', type: 'link', linkname: 'keep' }],
  ]);
  const im = h.craftImage([l1, l2]);
  const lay = h.craftLayout(path.join(scratch, 'crafted'), 'v1', [l1, l2], im);
  h.push(`${lay.layout}:v1`, reg.host, 'test/crafted:v1');
  const info = await pull(`${reg.host}/test/crafted:v1`, { storeDir: store });
  const root = imageRoot(info.ref, { storeDir: store });
  const top = root.layers[1];
  t.equal(fs.lstatSync(path.join(top, 'gone')).rdev, 0, 'the whiteout is a 0/0 device');
  t.ok(fs.lstatSync(path.join(top, 'gone')).isCharacterDevice());
  const { fsat } = require('../build/Release/nsbox.node');
  t.equal(fsat.lgetxattr(path.join(top, 'd'), 'trusted.overlay.opaque').toString(), 'y', 'the opaque directory has trusted.overlay.opaque=y');
  t.equal(fs.readFileSync(path.join(top, 'keep-link'), 'utf8'), 'keep me', 'the link into the lower layer was copied up');
  t.match(path.basename(path.dirname(top)), /^c-/, 'a layer with a copied-up link is keyed by its chain ID');
  compareTrees.call(null, { same: t.same.bind(t), ok: () => undefined }, h.mergedTree(root.layers, scratch), umociTree(`${lay.layout}:v1`));
  t.same(h.leftovers(store), []);
});

t.test('errors: unknown image, unknown tag, platform, bad options; nothing left behind', { skip }, async (t) => {
  await t.rejects(pull(`${reg.host}/test/nothere:v1`, { storeDir: store }), { name: 'NsboxError', code: 'ERR_IMAGE_UNKNOWN', step: 'image.manifest' });
  await t.rejects(pull(`${reg.host}/test/umoci:nope`, { storeDir: store }), { code: 'ERR_IMAGE_TAG_UNKNOWN', message: /MANIFEST_UNKNOWN/ });
  await t.rejects(pull(`${reg.host}/test/umoci:v1`, { storeDir: store, platform: 'linux/arm64' }), { code: 'ERR_IMAGE_PLATFORM' });
  await t.rejects(pull(42), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(pull('busybox', { platfrom: 'linux/amd64' }), { code: 'ERR_INVALID_ARG_VALUE', message: /did you mean "platform"/ });
  await t.rejects(pull('busybox', { maxImageSize: -1 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(pull('Bad/Name'), { code: 'ERR_INVALID_ARG_VALUE' });
  const closed = await require('node:net').createServer().listen(0, '127.0.0.1');
  await require('node:events').once(closed, 'listening');
  const port = closed.address().port;
  closed.close();
  await t.rejects(pull(`127.0.0.1:${port}/x:y`, { storeDir: store }), { name: 'NsboxError', code: 'ECONNREFUSED' });
  // A layer whose bytes are not what the manifest's digest says.
  const l = await h.craftLayer([[{ name: 'f' }, 'data']]);
  const bad = { ...l, digest: h.sha256(Buffer.from('other')) };
  const im = h.craftImage([bad]);
  await t.rejects(h.pushRaw(reg.url, 'test/bad', 'v1', [l], im), /manifest|upload/, 'the registry refuses a manifest naming a blob it lacks');
  t.same(h.leftovers(store), [], 'no temporaries, partial blobs or locks left');
  t.ok(new NsboxError({ code: 'X', step: 'y' }) instanceof Error);
});

t.test('basic auth: refused without or with wrong credentials, accepted with them (option or docker config)', { skip }, async (t) => {
  const areg = await h.startRegistry({ auth: { user: 'alice', password: 's3cret' } });
  t.teardown(() => areg.stop());
  const authfile = path.join(scratch, 'auth.json');
  fs.writeFileSync(authfile, JSON.stringify({ auths: { [areg.host]: { auth: Buffer.from('alice:s3cret').toString('base64') } } }));
  h.push(`${img.layout}:v1`, areg.host, 'test/private:v1', ['--dest-authfile', authfile]);
  const ref = `${areg.host}/test/private:v1`;
  const empty = fs.mkdtempSync(path.join(scratch, 'nodocker-'));
  process.env.DOCKER_CONFIG = empty;
  await t.rejects(pull(ref, { storeDir: store }), { code: 'ERR_IMAGE_AUTH' });
  await t.rejects(pull(ref, { storeDir: store, auth: { username: 'alice', password: 'wrong' } }), { code: 'ERR_IMAGE_AUTH', message: /UNAUTHORIZED|refused/ });
  const a = await pull(ref, { storeDir: store, auth: { username: 'alice', password: 's3cret' } });
  t.equal(a.layers.length, 3);
  fs.writeFileSync(path.join(empty, 'config.json'), fs.readFileSync(authfile));
  const b = await pull(ref, { storeDir: store });
  t.equal(b.digest, a.digest, 'credentials from $DOCKER_CONFIG/config.json auths');
  delete process.env.DOCKER_CONFIG;
});

t.test('two processes pulling one image download each blob once', { skip }, async (t) => {
  const s2 = path.join(scratch, 'store2');
  const code = `require(${JSON.stringify(path.join(__dirname, '..'))}).pull(process.argv[1], { storeDir: process.argv[2], onProgress: (e) => { if (e.phase === 'download' && e.current === e.total) console.log(e.digest) } }).then((i) => console.log('done', i.digest), (e) => { console.error(e); process.exit(1) })`;
  const runOne = () => new Promise((resolve, reject) => execFile(process.execPath, ['-e', code, `${reg.host}/test/umoci:v1`, s2], (err, stdout) => (err ? reject(err) : resolve(stdout))));
  const outs = await Promise.all([runOne(), runOne()]);
  const downloaded = outs.join('').split('\n').filter((l) => l.startsWith('sha256:'));
  t.equal(downloaded.length, 3, 'three blobs fetched in all, not six');
  t.equal(new Set(downloaded).size, 3);
  t.same(h.leftovers(s2), []);
});

t.test('leases keep a used image\'s layers through removeImage; pruneImages removes them after', { skip }, async (t) => {
  const ref = `${reg.host}/test/crafted:v1`;
  const lease = leaseImage(ref, { storeDir: store });
  await removeImage(ref, { storeDir: store });
  t.ok(lease.layers.every((d) => fs.existsSync(d)), 'the leased layers are still there');
  t.notOk((await images({ storeDir: store })).some((i) => i.ref === ref), 'the reference is gone');
  await pruneImages({ storeDir: store });
  t.ok(lease.layers.every((d) => fs.existsSync(d)), 'prune keeps them too while the lease lives');
  lease.release();
  const r = await pruneImages({ storeDir: store });
  t.ok(r.layers >= 1, 'prune removed the unused layers once released');
  t.notOk(lease.layers.some((d) => fs.existsSync(d)));
  t.throws(() => imageRoot(ref, { storeDir: store }), { code: 'ERR_IMAGE_UNKNOWN' });
  await t.rejects(removeImage(ref, { storeDir: store }), { code: 'ERR_IMAGE_UNKNOWN' });
  t.same(fs.readdirSync(path.join(store, 'leases')), [], 'no lease file left');
});

t.test('importImage: an OCI layout, an OCI archive and a docker save archive', { skip }, async (t) => {
  const s3 = path.join(scratch, 'store3');
  const a = await importImage(img.layout, { storeDir: s3, tag: 'local/one:v1' });
  t.equal(a.ref, 'docker.io/local/one:v1');
  const ociTar = path.join(scratch, 'oci.tar');
  h.sh('tar', ['-C', img.layout, '-cf', ociTar, '.']);
  const b = await importImage(ociTar, { storeDir: s3, tag: 'local/two:v1' });
  t.equal(b.digest, a.digest, 'the same manifest from the archive');
  const dockerTar = path.join(scratch, 'docker.tar');
  h.sh('skopeo', ['copy', '--quiet', `oci:${img.layout}:v1`, `docker-archive:${dockerTar}:local/three:v1`]);
  const c = await importImage(dockerTar, { storeDir: s3 });
  t.equal(c.ref, 'docker.io/local/three:v1', 'the name the archive carries');
  t.same(c.layers.map((l) => l.diffId), a.layers.map((l) => l.diffId), 'the same layers');
  t.same(imageRoot(c.ref, { storeDir: s3 }).layers, imageRoot(a.ref, { storeDir: s3 }).layers, 'stored once');
  t.same(h.leftovers(s3), []);
});

t.test('nothing left: no registry or helper process of ours', { skip }, async (t) => {
  const mine = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && !procsBefore.has(p)).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(process.pid);
    } catch {
      return false;
    }
  });
  // The registry is ours until teardown; nothing else (skopeo, umoci, unshare, workers run as threads).
  t.same(mine.filter((p) => Number(p) !== reg.pid), [], 'no child process besides the registry');
});
