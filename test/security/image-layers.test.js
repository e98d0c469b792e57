// Hostile image layers, made by hand (tar-stream) and pushed with plain HTTP PUTs to a real
// docker-registry: none may write outside its layer directory, none may leave anything behind.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { pull } = require('../..');
const h = require('../images/helpers');

const skip = h.missingTools() || false;
let reg;
let scratch;
let store;
let canary;
let n = 0;

t.before(async () => {
  if (skip) return;
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-hostile-'));
  store = path.join(scratch, 'store');
  canary = path.join(scratch, 'outside');
  fs.mkdirSync(canary);
  reg = await h.startRegistry();
});
t.teardown(async () => {
  if (reg) await reg.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

async function pushLayers(layers, opts) {
  const name = `hostile/i${n++}`;
  await h.pushRaw(reg.url, name, 'v1', layers, h.craftImage(layers, opts));
  return `${reg.host}/${name}:v1`;
}

function nothingLeft(t) {
  t.same(h.leftovers(store), [], 'no temporary, partial blob or lock left');
  t.same(fs.readdirSync(path.join(store, 'layers')).filter((k) => !fs.existsSync(path.join(store, 'layers', k, 'layer.json'))), [], 'no half layer');
  t.same(fs.readdirSync(canary), [], 'nothing written outside');
}

t.test('path traversal: "..", an absolute path', { skip }, async (t) => {
  const rel = path.relative('/', canary);
  const ref = await pushLayers([await h.craftLayer([[{ name: `../../../../../../../../${rel}/pwned` }, 'x']])]);
  await t.rejects(pull(ref, { storeDir: store }), { code: 'ERR_IMAGE_LAYER_UNSAFE', step: 'image.unpack', message: /"\.\."/ });
  nothingLeft(t);
  // An absolute name is taken inside the layer, as docker does.
  const abs = await pushLayers([await h.craftLayer([[{ name: `${canary}/abs` }, 'x']])]);
  const { imageRoot } = require('../../dist/images');
  await pull(abs, { storeDir: store });
  t.ok(fs.existsSync(path.join(imageRoot(abs, { storeDir: store }).layers[0], rel, 'abs')), 'written under the layer');
  nothingLeft(t);
});

t.test('symlink then write through it (same layer, and from a lower layer)', { skip }, async (t) => {
  const ref = await pushLayers([
    await h.craftLayer([
      [{ name: 'evil', type: 'symlink', linkname: canary }],
      [{ name: 'evil/pwned' }, 'x'],
    ]),
  ]);
  await t.rejects(pull(ref, { storeDir: store }), { code: 'ERR_IMAGE_LAYER_UNSAFE', message: /symlink/ });
  nothingLeft(t);
  const two = await pushLayers([await h.craftLayer([[{ name: 'evil', type: 'symlink', linkname: canary }]]), await h.craftLayer([[{ name: 'evil/pwned' }, 'x']])]);
  const info = await pull(two, { storeDir: store });
  const { imageRoot } = require('../../dist/images');
  const top = imageRoot(info.ref, { storeDir: store }).layers[1];
  t.ok(fs.lstatSync(path.join(top, 'evil')).isDirectory(), "the upper layer's evil/ is its own directory (the lower symlink is never followed)");
  nothingLeft(t);
});

t.test('whiteouts of "..", ".", and a hard link to a path outside', { skip }, async (t) => {
  for (const name of ['a/.wh...', '.wh..']) {
    const ref = await pushLayers([await h.craftLayer([[{ name: 'a/', type: 'directory' }], [{ name }, '']])]);
    await t.rejects(pull(ref, { storeDir: store }), { code: 'ERR_IMAGE_LAYER_UNSAFE' }, name);
  }
  fs.writeFileSync(path.join(scratch, 'secret'), 'secret');
  const link = await pushLayers([await h.craftLayer([[{ name: 'l', type: 'link', linkname: '../secret' }]])]);
  await t.rejects(pull(link, { storeDir: store }), { code: 'ERR_IMAGE_LAYER_UNSAFE' });
  const abslink = await pushLayers([await h.craftLayer([[{ name: 'l', type: 'link', linkname: path.join(scratch, 'secret') }]])]);
  await t.rejects(pull(abslink, { storeDir: store }), { code: 'ERR_IMAGE_LAYER_INVALID', message: /no layer has/ }, 'an absolute link target is looked up inside the layers only');
  nothingLeft(t);
});

t.test('bombs: a 10 GB entry, a 10 GB PAX sparse file, a gzip bomb against maxImageSize', { skip }, async (t) => {
  // A header that declares 10 GB: refused at the header, before a byte is written (the rest of the
  // tar is not even there).
  const hdr = require(path.join(path.dirname(require.resolve('tar-stream')), 'headers.js'));
  const big = hdr.encode({ name: 'huge', size: 10 * 1024 ** 3, mode: 0o644, mtime: new Date(0), type: 'file', uid: 0, gid: 0 });
  const blob = zlib.gzipSync(Buffer.concat([big, Buffer.alloc(512 * 4)]));
  const layer = { blob, digest: h.sha256(blob), diffId: h.sha256(Buffer.concat([big, Buffer.alloc(512 * 4)])), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' };
  await t.rejects(pull(await pushLayers([layer]), { storeDir: store, maxImageSize: 4 * 1024 ** 3 }), { code: 'ERR_IMAGE_TOO_LARGE' });
  const sparse = await h.craftLayer([[{ name: 'GNU.sparse', pax: { 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': 'sparse', 'GNU.sparse.realsize': String(10 * 1024 ** 3) } }, '0\n']]);
  await t.rejects(pull(await pushLayers([sparse]), { storeDir: store, maxImageSize: 4 * 1024 ** 3 }), { code: 'ERR_IMAGE_TOO_LARGE' }, 'counted by its real size');
  // 64 MiB of zeros (64 KiB gzip'd) against a 16 MiB cap: stopped while it unpacks.
  const zeros = await h.craftLayer([[{ name: 'zeros' }, Buffer.alloc(64 << 20)]]);
  t.ok(zeros.blob.length < 1 << 20);
  await t.rejects(pull(await pushLayers([zeros]), { storeDir: store, maxImageSize: 16 << 20 }), { code: 'ERR_IMAGE_TOO_LARGE' });
  nothingLeft(t);
});

t.test('a layer whose contents do not match the config\'s diff ID', { skip }, async (t) => {
  const l = await h.craftLayer([[{ name: 'f' }, 'data']]);
  const ref = await pushLayers([l], { diffIds: [h.sha256(Buffer.from('something else'))] });
  await t.rejects(pull(ref, { storeDir: store }), { code: 'ERR_IMAGE_DIGEST_MISMATCH', step: 'image.unpack' });
  nothingLeft(t);
});

t.test('FIFOs and devices are made, never opened; a later entry replaces them without opening them', { skip }, async (t) => {
  const ref = await pushLayers([
    await h.craftLayer([
      [{ name: 'p', type: 'fifo', mode: 0o644 }],
      [{ name: 'p' }, 'replaced'],
      [{ name: 'q', type: 'fifo', mode: 0o644 }],
    ]),
  ]);
  const info = await pull(ref, { storeDir: store }); // would hang for ever if it opened q or p
  const { imageRoot } = require('../../dist/images');
  const l = imageRoot(info.ref, { storeDir: store }).layers[0];
  t.equal(fs.readFileSync(path.join(l, 'p'), 'utf8'), 'replaced');
  t.ok(fs.lstatSync(path.join(l, 'q')).isFIFO());
  nothingLeft(t);
});

t.test("a layer whose unlisted parent directory copies the lower layers' mode is not shared with another image", { skip }, async (t) => {
  // The same upper layer (a whiteout in etc/, which it does not list) over two different lowers:
  // the etc/ it makes takes the mode and owner of the lower etc/, so its contents depend on the
  // layers under it. Shared by diff ID, the first image's lowers (a hostile etc/ 0777 owned by
  // 1000) would decide the second image's etc/.
  const { imageRoot } = require('../../dist/images');
  const top = await h.craftLayer([[{ name: 'etc/.wh.motd' }, '']]);
  const evilLower = await h.craftLayer([[{ name: 'etc/', type: 'directory', mode: 0o777, uid: 1000, gid: 1000 }], [{ name: 'etc/motd' }, 'x']]);
  const goodLower = await h.craftLayer([[{ name: 'etc/', type: 'directory', mode: 0o755, uid: 0, gid: 0 }], [{ name: 'etc/motd' }, 'y']]);
  const evil = await pull(await pushLayers([evilLower, top]), { storeDir: store });
  const good = await pull(await pushLayers([goodLower, top]), { storeDir: store });
  const evilTop = imageRoot(evil.ref, { storeDir: store }).layers[1];
  const goodTop = imageRoot(good.ref, { storeDir: store }).layers[1];
  t.equal(fs.statSync(path.join(evilTop, 'etc')).mode & 0o7777, 0o777, "the first image's etc/ is like its lower one");
  const st = fs.statSync(path.join(goodTop, 'etc'));
  t.same({ mode: st.mode & 0o7777, uid: st.uid }, { mode: 0o755, uid: 0 }, "the second image's etc/ is like its own lower one, not the first image's");
  nothingLeft(t);
});

t.test('a hard link right when the directory fd cache is emptied (more than 512 directories)', { skip }, async (t) => {
  // The cache of directory fds is emptied when it passes 512: that must never close the fd of the
  // directory an entry is being made in (a closed fd number may be reused by another open).
  const entries = [[{ name: 't/', type: 'directory' }], [{ name: 't/f' }, 'target']];
  for (let i = 1; i <= 1025; i++) entries.push([{ name: `d${i}/`, type: 'directory' }]);
  entries.push([{ name: 'd513/l', type: 'link', linkname: 't/f' }]);
  const info = await pull(await pushLayers([await h.craftLayer(entries)]), { storeDir: store });
  const { imageRoot } = require('../../dist/images');
  const l = imageRoot(info.ref, { storeDir: store }).layers[0];
  t.equal(fs.statSync(path.join(l, 'd513/l')).ino, fs.statSync(path.join(l, 't/f')).ino, 'd513/l is a hard link of t/f');
  nothingLeft(t);
});
