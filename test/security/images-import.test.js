// Hostile archives and layouts for importImage: manifest.json paths with "..", absolute paths,
// symlinked blobs and special files. Nothing outside the archive (or the layout directory given)
// may be read, and a FIFO or /dev/zero must not hang or fill the store.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { importImage } = require('../..');

const skip = process.geteuid() !== 0 ? 'the image store tests run as root' : false;
let scratch;
let secret;
let n = 0;

t.before(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-import-'));
  secret = path.join(scratch, 'host-secret.json');
  fs.writeFileSync(secret, JSON.stringify({ auths: { 'reg.example': { auth: 'dXNlcjpodW50ZXIy' } } }));
});
t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));

async function archive(entries) {
  const tar = require('tar-stream');
  const p = tar.pack();
  for (const [h, body] of entries) p.entry({ mtime: new Date(0), ...h }, body);
  p.finalize();
  const chunks = [];
  for await (const c of p) chunks.push(c);
  const file = path.join(scratch, `a${n++}.tar`);
  fs.writeFileSync(file, Buffer.concat(chunks));
  return file;
}

const up = '../../../../../../../../..';
const store = () => path.join(scratch, 'store');

t.test('docker save manifest.json: a Config or a layer path with ".." or through an archive symlink is refused', { skip }, async (t) => {
  const cases = {
    'Config with ..': [[{ name: 'manifest.json' }, JSON.stringify([{ Config: up + secret, Layers: [] }])]],
    'Config through a symlink': [
      [{ name: 'cfg', type: 'symlink', linkname: up + secret }],
      [{ name: 'manifest.json' }, JSON.stringify([{ Config: 'cfg', Layers: [] }])],
    ],
    'manifest.json itself a symlink out': [[{ name: 'manifest.json', type: 'symlink', linkname: up + secret }]],
    'a layer path with ..': [
      [{ name: 'c.json' }, JSON.stringify({ rootfs: { diff_ids: [] } })],
      [{ name: 'manifest.json' }, JSON.stringify([{ Config: 'c.json', Layers: [up + '/dev/zero'] }])],
    ],
    'a layer through a symlink to /dev/zero': [
      [{ name: 'c.json' }, JSON.stringify({ rootfs: { diff_ids: [] } })],
      [{ name: 'l', type: 'symlink', linkname: up + '/dev/zero' }],
      [{ name: 'manifest.json' }, JSON.stringify([{ Config: 'c.json', Layers: ['l'] }])],
    ],
  };
  for (const [what, entries] of Object.entries(cases)) {
    const file = await archive(entries);
    const got = await importImage(file, { storeDir: store(), tag: `leak/x${n}:1` }).then(
      (info) => ({ leaked: info.config }),
      (e) => ({ code: e.code }),
    );
    t.same(got, { code: 'ERR_IMAGE_LAYER_UNSAFE' }, what);
  }
  t.same(fs.readdirSync(path.join(store(), 'tmp')), [], 'no temporary left');
});

t.test('an OCI layout directory: a blob that is a FIFO or a symlink out is refused without hanging', { skip }, async (t) => {
  const dir = path.join(scratch, 'layout');
  fs.mkdirSync(path.join(dir, 'blobs/sha256'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const d = 'a'.repeat(64);
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${d}`, size: 1 }] }));
  require('node:child_process').execFileSync('mkfifo', [path.join(dir, 'blobs/sha256', d)]);
  await t.rejects(importImage(dir, { storeDir: store() }), { code: 'ERR_IMAGE_LAYER_UNSAFE' }, 'a FIFO blob');
  fs.rmSync(path.join(dir, 'blobs/sha256', d));
  fs.symlinkSync(secret, path.join(dir, 'blobs/sha256', d));
  await t.rejects(importImage(dir, { storeDir: store() }), { code: 'ERR_IMAGE_LAYER_UNSAFE' }, 'a blob that is a symlink out of the layout');
});
