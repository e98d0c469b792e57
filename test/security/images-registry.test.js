// A hostile registry (a plain node:http server on 127.0.0.1): endless manifests and configs, an
// index that names its platform manifest by tag. Bodies are read with a cap, never whole into
// memory, and a reference pinned by digest pins everything under it.
'use strict';
const t = require('tap');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { pull } = require('../..');

const skip = process.geteuid() !== 0 ? 'the image store tests run as root' : false;
const sha = (b) => `sha256:${crypto.createHash('sha256').update(b).digest('hex')}`;
let scratch;
let server;
let host;
const routes = new Map(); // path -> (req, res) => void
const seen = [];

t.before(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-hostreg-'));
  server = http.createServer((req, res) => {
    seen.push(req.url);
    const r = routes.get(req.url);
    if (r) return r(req, res);
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  host = `127.0.0.1:${server.address().port}`;
});
t.teardown(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  fs.rmSync(scratch, { recursive: true, force: true });
});

/** Sends `total` bytes of JSON-ish garbage; resolves the bytes the client took before it hung up. */
function endless(type, total, status = 200) {
  const out = { sent: 0 };
  const fn = (req, res) => {
    res.writeHead(status, { 'content-type': type });
    const chunk = Buffer.alloc(1 << 20, 0x20);
    const more = () => {
      while (out.sent < total) {
        out.sent += chunk.length;
        if (!res.write(chunk)) return res.once('drain', more);
      }
      res.end();
    };
    more();
  };
  return { fn, out };
}

t.test('an endless manifest and an endless config are cut off, not read into memory', { skip }, async (t) => {
  const m = endless('application/vnd.oci.image.manifest.v1+json', 256 << 20);
  routes.set('/v2/big/manifests/latest', m.fn);
  await t.rejects(pull(`${host}/big`, { storeDir: path.join(scratch, 's') }), { code: 'ERR_IMAGE_MEDIA_TYPE', message: /too large/ });
  t.ok(m.out.sent < 64 << 20, `the manifest was cut off (${m.out.sent >> 20} MiB sent of 256)`);

  const cfgDigest = sha(Buffer.from('x'));
  const man = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfgDigest, size: 1 }, layers: [] }));
  routes.set('/v2/bigcfg/manifests/latest', (req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
    res.end(man);
  });
  const c = endless('application/octet-stream', 256 << 20);
  routes.set(`/v2/bigcfg/blobs/${cfgDigest}`, c.fn);
  await t.rejects(pull(`${host}/bigcfg`, { storeDir: path.join(scratch, 's') }), { code: 'ERR_IMAGE_DIGEST_MISMATCH' });
  t.ok(c.out.sent < 64 << 20, `the config was cut off at its size (${c.out.sent >> 20} MiB sent of 256)`);
});

t.test('an index pinned by digest cannot name its platform manifest by tag', { skip }, async (t) => {
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'latest', size: 10, platform: { os: 'linux', architecture: 'amd64' } }] }));
  const d = sha(index);
  routes.set(`/v2/pinned/manifests/${d}`, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json' });
    res.end(index);
  });
  seen.length = 0;
  await t.rejects(pull(`${host}/pinned@${d}`, { storeDir: path.join(scratch, 's'), platform: 'linux/amd64' }), { code: 'ERR_IMAGE_MEDIA_TYPE' });
  t.notOk(seen.includes('/v2/pinned/manifests/latest'), 'the mutable tag was never asked for');
});

t.test('an endless error body and an endless token answer are cut off too', { skip }, async (t) => {
  const e = endless('application/json', 256 << 20, 500);
  routes.set('/v2/err/manifests/latest', e.fn);
  await t.rejects(pull(`${host}/err`, { storeDir: path.join(scratch, 's') }), { code: 'ERR_IMAGE_REGISTRY' });
  t.ok(e.out.sent < 64 << 20, `the error body was cut off (${e.out.sent >> 20} MiB sent of 256)`);
  const tok = endless('application/json', 256 << 20);
  routes.set('/v2/tok/manifests/latest', (req, res) => {
    res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${host}/token",service="x"` });
    res.end();
  });
  routes.set('/token?service=x&scope=repository%3Atok%3Apull', tok.fn);
  await t.rejects(pull(`${host}/tok`, { storeDir: path.join(scratch, 's') }), { code: 'ERR_IMAGE_AUTH' });
  t.ok(tok.out.sent < 64 << 20, `the token answer was cut off (${tok.out.sent >> 20} MiB sent of 256)`);
});
