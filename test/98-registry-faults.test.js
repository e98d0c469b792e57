// Images: the registry client's failures against a real registry (Debian's docker-registry on
// 127.0.0.1) with a proxy of this test's in front of it (test/images/servers.js) that cuts a blob
// halfway, cuts it every time, answers 429, or stalls; and a store on a full disk (an 8 MiB tmpfs
// mounted in a private mount namespace, so the host's mounts are never touched). Every pull either
// works or fails with a typed NsboxError, and leaves nothing half-written in the store.
'use strict';
const t = require('tap');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { pull, pruneImages, NsboxError } = require('..');
const h = require('./images/helpers');
const { startProxy } = require('./images/servers');

const skip = h.missingTools() || false;
const BOUND = { timeout: 120000 }; // bounds a hang; nothing here is timed

let scratch;
let reg;
let proxy;
let big; // a layer of 4 MiB of random bytes: gzip cannot shrink it
let randomHash; // the sha256 of those bytes
const blobUrl = (name, l) => `/v2/${name}/blobs/${l.digest}`;
const blobLog = (name, l) => proxy.log.filter((e) => e.url === blobUrl(name, l) && e.method === 'GET');
const storeDir = () => fs.mkdtempSync(path.join(scratch, 'store-'));
const layerDirs = (store) => fs.readdirSync(path.join(store, 'layers'));

t.before(async () => {
  if (skip) return;
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-regfaults-'));
  reg = await h.startRegistry();
  proxy = await startProxy(reg.url);
  const random = crypto.randomBytes(4 << 20);
  randomHash = crypto.createHash('sha256').update(random).digest('hex');
  big = await h.craftLayer([[{ name: 'random', mode: 0o644 }, random]]);
  await h.pushRaw(reg.url, 'test/big', 'v1', [big], h.craftImage([big]));
});

t.teardown(async () => {
  if (proxy) await proxy.close();
  if (reg) await reg.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

t.test('a blob cut halfway is resumed with Range: bytes=N-, and only the rest is sent again', { skip, ...BOUND }, async (t) => {
  const size = big.blob.length;
  proxy.setRule((req, n) => (req.url === blobUrl('test/big', big) && n === 0 ? { cutAfter: size >> 1 } : undefined));
  const store = storeDir();
  let most = 0;
  const info = await pull(`${proxy.host}/test/big:v1`, { storeDir: store, onProgress: (e) => e.phase === 'download' && (most = Math.max(most, e.current)) });
  t.equal(info.layers[0].digest, big.digest);
  // What arrived before the cut is counted once (the unpack that follows the download reads up to
  // this count: counted twice, it read past the file's end and was thrown away).
  t.equal(most, size, 'the download progress ends at the blob\'s size');
  const [first, second, ...rest] = blobLog('test/big', big);
  t.same(rest, [], 'two requests for the blob');
  t.equal(first.range, null, 'the first asks for the whole blob');
  t.equal(first.bytes, size >> 1, 'and was cut halfway');
  const m = /^bytes=(\d+)-$/.exec(second?.range ?? '');
  t.ok(m, `the retry asks for a range (${second?.range})`);
  const from = Number(m?.[1]);
  t.ok(from > 0 && from <= size >> 1, `it resumes from what had arrived (${from} of ${size >> 1} sent)`);
  t.equal(second.status, 206, 'the registry answered with the range');
  t.equal(second.bytes, size - from, 'the second transfer is the rest, not the whole blob again');
  t.ok(second.bytes < size);
  t.same(h.leftovers(store), [], 'no partial, temporary or lock left');
});

t.test('a download that starts over (the registry ignores Range) still gives the layer the blob holds', { skip, ...BOUND }, async (t) => {
  // The unpack follows the download as it arrives; here the partial file is replaced midway, so
  // what it followed is not the blob: the layer must come from the verified file instead.
  const size = big.blob.length;
  proxy.setRule((req, n) => (req.url === blobUrl('test/big', big) ? (n === 0 ? { cutAfter: size >> 1 } : { dropRange: true }) : undefined));
  const store = storeDir();
  const info = await pull(`${proxy.host}/test/big:v1`, { storeDir: store });
  t.equal(info.layers[0].digest, big.digest);
  const gets = blobLog('test/big', big);
  t.ok(gets.length >= 3, `cut, answered whole to a range request, fetched again (${gets.map((g) => `${g.status}:${g.bytes}`).join(' ')})`);
  t.equal(gets[1].status, 200, 'the registry sent the whole blob to the resume');
  const [key] = layerDirs(store);
  const got = crypto.createHash('sha256').update(fs.readFileSync(path.join(store, 'layers', key, 'diff', 'random'))).digest('hex');
  t.equal(got, randomHash, 'the unpacked file is the blob\'s');
  t.same(h.leftovers(store), []);
});

t.test('a blob cut every time: a typed error, only the resumable partial kept; the next pull resumes it', { skip, ...BOUND }, async (t) => {
  proxy.setRule((req) => (req.url === blobUrl('test/big', big) ? { cutAfter: 256 << 10 } : undefined));
  const store = storeDir();
  const e = await pull(`${proxy.host}/test/big:v1`, { storeDir: store }).catch((x) => x);
  t.ok(e instanceof NsboxError, `an NsboxError (${e?.name}: ${e?.message})`);
  t.equal(e.step, 'image.blob');
  t.match(e.code, /^(ERR_IMAGE_REGISTRY|E[A-Z]+)$/);
  t.equal(blobLog('test/big', big).length, 5, 'tried five times, each resuming');
  t.ok(blobLog('test/big', big).slice(1).every((x) => /^bytes=\d+-$/.test(x.range)));
  const partial = `tmp/${big.digest.slice(7)}.partial`;
  t.same(h.leftovers(store), [partial], 'only the partial download (docs/images.md: resumed by the next pull)');
  t.ok(fs.statSync(path.join(store, partial)).size < big.blob.length, 'which is not the whole blob');
  t.same(layerDirs(store), [], 'no layer directory');
  t.notOk(fs.existsSync(path.join(store, 'refs.json')) && Object.keys(JSON.parse(fs.readFileSync(path.join(store, 'refs.json')))).length, 'no image recorded');

  proxy.setRule(() => undefined);
  await pull(`${proxy.host}/test/big:v1`, { storeDir: store });
  const [again] = blobLog('test/big', big);
  t.match(again.range, /^bytes=\d+-$/, 'the next pull resumed the partial');
  t.same(h.leftovers(store), [], 'and left nothing');
  t.same(await pruneImages({ storeDir: store }), { layers: 0, blobs: 0 }, 'nothing for prune either');
});

t.test('429 on the manifest: ERR_IMAGE_RATE_LIMITED with the registry\'s message and Retry-After, not retried', { skip, ...BOUND }, async (t) => {
  const body = JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down, nsbox test' }] });
  proxy.setRule((req) => (req.url.includes('/manifests/') ? { status: 429, headers: { 'content-type': 'application/json', 'retry-after': '1' }, body } : undefined));
  const store = storeDir();
  await t.rejects(pull(`${proxy.host}/test/big:v1`, { storeDir: store }), {
    name: 'NsboxError',
    code: 'ERR_IMAGE_RATE_LIMITED',
    step: 'image.manifest',
    message: /rate limited \(429, retry after 1\).*TOOMANYREQUESTS: slow down, nsbox test/,
  });
  t.equal(proxy.log.filter((e) => e.url.includes('/manifests/')).length, 1, 'one request: a 429 is not retried (docs/images.md)');
  t.same(h.leftovers(store), []);
});

t.test('stallTimeout: a registry that answers nothing, or stops mid-blob, is given up on', { skip, ...BOUND }, async (t) => {
  await t.rejects(pull('x', { stallTimeout: '1s' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(pull('x', { stallTimeout: 0 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(pull('x', { stallTimeout: 2 ** 31 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });

  // No headers ever: the manifest request is abandoned (a pull without the option would hang here
  // until the test's timeout).
  proxy.setRule((req) => (req.url.includes('/manifests/') ? { stallBeforeHeaders: true } : undefined));
  const store = storeDir();
  await t.rejects(pull(`${proxy.host}/test/big:v1`, { storeDir: store, stallTimeout: 300 }), { name: 'NsboxError', code: 'ETIMEDOUT', step: 'image.manifest', message: /300 ms/ });

  // Headers and half the blob, then silence, once: the stalled transfer is resumed like a cut one.
  const size = big.blob.length;
  proxy.setRule((req, n) => (req.url === blobUrl('test/big', big) && n === 0 ? { stallAfter: size >> 1 } : undefined));
  const info = await pull(`${proxy.host}/test/big:v1`, { storeDir: store, stallTimeout: 300 });
  t.equal(info.layers[0].digest, big.digest);
  const [, second] = blobLog('test/big', big);
  t.match(second?.range, /^bytes=\d+-$/, 'resumed after the stall');
  t.same(h.leftovers(store), []);

  // Silence every time: ETIMEDOUT at the blob once its retries are spent.
  const s2 = storeDir();
  proxy.setRule((req) => (req.url === blobUrl('test/big', big) ? { stallAfter: 64 << 10 } : undefined));
  await t.rejects(pull(`${proxy.host}/test/big:v1`, { storeDir: s2, stallTimeout: 300 }), { name: 'NsboxError', code: 'ETIMEDOUT', step: 'image.blob' });
  t.same(layerDirs(s2), []);
  t.same(h.leftovers(s2), [`tmp/${big.digest.slice(7)}.partial`], 'only the resumable partial');
});

/** Runs a pull in a private mount namespace with the store on an 8 MiB tmpfs; resolves to what it saw. */
function pullOnFullDisk(ref) {
  const dir = fs.mkdtempSync(path.join(scratch, 'tmpfs-'));
  const script = path.join(scratch, 'full-disk.js');
  fs.writeFileSync(
    script,
    `const fs = require('node:fs');
const { pull } = require(${JSON.stringify(path.join(__dirname, '..'))});
const { leftovers } = require(${JSON.stringify(path.join(__dirname, 'images/helpers.js'))});
const store = process.argv[3] + '/store';
pull(process.argv[2], { storeDir: store }).then(
  () => console.log(JSON.stringify({ ok: true })),
  (e) => console.log(JSON.stringify({ name: e.name, code: e.code, errno: e.errno, step: e.step, path: e.path, message: e.message,
    leftovers: leftovers(store), layers: fs.readdirSync(store + '/layers'), df: fs.statfsSync(store).bfree })),
);`,
  );
  const sh = `mount -t tmpfs -o size=8m,mode=0700 nsbox-test-full ${dir} && exec ${process.execPath} ${script} ${ref} ${dir}`;
  return new Promise((resolve, reject) =>
    execFile('unshare', ['-m', '--propagation', 'private', 'sh', '-c', sh], { timeout: 100000 }, (err, stdout, stderr) => {
      fs.rmdirSync(dir); // empty: the tmpfs lived and died with the namespace
      if (err) return reject(new Error(`${err.message}: ${stderr}`));
      resolve(JSON.parse(stdout));
    }),
  );
}

t.test('a full disk: ENOSPC with its step and path, and nothing half-written in the store', { skip, ...BOUND }, async (t) => {
  proxy.setRule(() => undefined);
  // A 12 MiB blob (random: it stays 12 MiB gzip'd) does not fit: ENOSPC while it downloads.
  const huge = await h.craftLayer([[{ name: 'random', mode: 0o644 }, crypto.randomBytes(12 << 20)]]);
  await h.pushRaw(reg.url, 'test/huge-blob', 'v1', [huge], h.craftImage([huge]));
  const a = await pullOnFullDisk(`${proxy.host}/test/huge-blob:v1`);
  t.match(a, { name: 'NsboxError', code: 'ENOSPC', errno: os.constants.errno.ENOSPC, step: 'image.blob' }, a.message);
  t.ok(a.path, `the path is given (${a.path})`);
  t.same(a.leftovers, [], 'no partial, temporary or lock left');
  t.same(a.layers, []);

  // A small blob (12 MiB of zeros, gzip'd) that does not fit once unpacked: ENOSPC in the unpack.
  const zeros = await h.craftLayer([[{ name: 'zeros', mode: 0o644 }, Buffer.alloc(12 << 20)]]);
  await h.pushRaw(reg.url, 'test/huge-tree', 'v1', [zeros], h.craftImage([zeros]));
  const b = await pullOnFullDisk(`${proxy.host}/test/huge-tree:v1`);
  t.match(b, { name: 'NsboxError', code: 'ENOSPC', errno: os.constants.errno.ENOSPC, step: 'image.unpack' }, b.message);
  t.ok(b.path, `the path is given (${b.path})`);
  t.same(b.leftovers, [], 'no partial, half-unpacked layer or lock left');
  t.same(b.layers, []);
  t.ok(b.df > (4 << 20) / 4096, 'the space is free again');
});

t.test('a layer that fails while another downloads: pull rejects only once that download is over (its blob lock held until then)', { skip, ...BOUND }, async (t) => {
  // Layer 0 unpacks to the wrong diff ID; layer 1 (the big one) is still downloading, stalled.
  // A pull that rejected at once would leave that download running without the blob's lock: it
  // goes on writing tmp/<digest>.partial after the rejection, into the file the next pull of the
  // blob resumes (both then append to it, and that pull unpacks a corrupt file).
  const small = await h.craftLayer([[{ name: 'small', mode: 0o644 }, 'small']]);
  await h.pushRaw(reg.url, 'test/bad-lower', 'v1', [small, big], h.craftImage([small, big], { diffIds: [`sha256:${'0'.repeat(64)}`, big.diffId] }));
  proxy.setRule((req) => (req.url === blobUrl('test/bad-lower', big) ? { stallAfter: 64 << 10 } : undefined));
  const store = storeDir();
  await t.rejects(pull(`${proxy.host}/test/bad-lower:v1`, { storeDir: store, stallTimeout: 300 }), { name: 'NsboxError', code: 'ERR_IMAGE_DIGEST_MISMATCH', step: 'image.unpack' }, 'the first failure');
  const gets = blobLog('test/bad-lower', big).length;
  const left = h.leftovers(store);
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(blobLog('test/bad-lower', big).length, gets, `no request for the blob after the rejection (${gets} before it)`);
  t.same(h.leftovers(store), left, 'nothing written to the store after the rejection');
  t.same(left, [`tmp/${big.digest.slice(7)}.partial`], 'only the resumable partial');
  t.same(layerDirs(store), [], 'no layer directory (the small one is not recorded)');
});

t.test('an abort while the unpack follows the download: the worker closes what it had open in the store', { skip, ...BOUND }, async (t) => {
  // The unpack runs while the blob downloads; an abort (or a failed download) stops it. A worker
  // that is terminated instead of stopped leaves its file descriptors open in this process (a
  // worker shares them): the half-written file and its directories, removed but held (their space
  // too) until the process exits.
  const size = big.blob.length;
  proxy.setRule((req) => (req.url === blobUrl('test/big', big) ? { stallAfter: size >> 1 } : undefined));
  const store = storeDir();
  const held = () => fs.readdirSync('/proc/self/fd').map((f) => { try { return fs.readlinkSync(`/proc/self/fd/${f}`); } catch { return ''; } }).filter((l) => l.startsWith(store));
  const ac = new AbortController();
  const p = pull(`${proxy.host}/test/big:v1`, { storeDir: store, signal: ac.signal });
  // Aborted once the worker has the layer's file open (half the blob has arrived, then silence).
  const unpacking = () => held().some((l) => /\.tmp-\d+\/diff\/random$/.test(l));
  for (let i = 0; i < 400 && !unpacking(); i++) await new Promise((r) => setTimeout(r, 50));
  t.ok(unpacking(), 'the unpack follows the download: it writes the layer\'s file');
  ac.abort();
  await t.rejects(p, { name: 'AbortError' });
  await new Promise((r) => setTimeout(r, 200));
  t.same(held(), [], 'no file descriptor into the store left');
  t.same(layerDirs(store), []);
  t.same(h.leftovers(store), [`tmp/${big.digest.slice(7)}.partial`], 'only the resumable partial');
});
