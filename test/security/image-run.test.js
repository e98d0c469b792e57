// Attacks of the image-run review (issue #19 part 2) on what a hostile image makes the parent do
// while it plans a container: images made by hand (tar-stream layers in an OCI layout, imported
// with importImage: no registry), run as root against a temporary store.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { run, importImage } = require('../..');
const { busyboxRootfs } = require('../helpers');
const h = require('../images/helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const skip = (process.geteuid() !== 0 && 'runs as root (root store)') || noBusybox || false;

let scratch;
let store;
let base;

/** The busybox test rootfs as an uncompressed layer. */
function baseLayer() {
  if (!base) {
    const raw = execFileSync('tar', ['-C', bb, '--numeric-owner', '-cf', '-', '.'], { maxBuffer: 1 << 28 });
    base = { blob: raw, diffId: h.sha256(raw), digest: h.sha256(raw), mediaType: 'application/vnd.oci.image.layer.v1.tar' };
  }
  return base;
}

/** Imports an image of the busybox layer, the crafted `layers` (tar-stream entries) and `config`. */
async function makeImage(tag, layers, config) {
  const ls = [baseLayer()];
  for (const e of layers) ls.push(await h.craftLayer(e));
  const img = h.craftImage(ls);
  const c = JSON.parse(img.config);
  c.config = config;
  img.config = Buffer.from(JSON.stringify(c));
  const m = JSON.parse(img.manifest);
  m.config.digest = h.sha256(img.config);
  m.config.size = img.config.length;
  img.manifest = Buffer.from(JSON.stringify(m));
  const dir = fs.mkdtempSync(path.join(scratch, 'layout-'));
  h.craftLayout(dir, tag, ls, img);
  try {
    return await importImage(dir, { storeDir: store, tag });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The longest time the event loop was blocked while `fn` ran (ms), and fn's result or error. */
async function blocked(fn) {
  let last = Date.now();
  let worst = 0;
  const iv = setInterval(() => {
    const now = Date.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 10);
  try {
    const r = await fn().then((v) => ({ v }), (e) => ({ e }));
    return { worst: Math.max(worst, Date.now() - last), ...r };
  } finally {
    clearInterval(iv);
  }
}

t.before(() => {
  if (skip) return;
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-imgrun-sec-'));
  store = path.join(scratch, 'store');
});
t.teardown(() => {
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

t.test('a deep WorkingDir over deep layers does not block Node while the root is planned', { skip }, async (t) => {
  // Every component of WorkingDir is a mount point the planner walks through the merged view, each
  // from the root and through every layer: 2000 components over 3 layers of a 256-deep chain were
  // about 15 s of Node's thread for one run() (about 5 s per layer), with every directory's fd of
  // every layer held open at once.
  const chain = [];
  let p = '';
  for (let i = 0; i < 256; i++) chain.push([{ name: (p += (p ? '/' : '') + 'a'), type: 'directory', mode: 0o755 }]);
  const layers = [0, 1, 2].map((k) => [...chain, [{ name: `f${k}`, mode: 0o644 }, Buffer.from('x')]]);
  await makeImage('localhost/deep-workdir:1', layers, { Cmd: ['/bin/sh', '-c', 'pwd | wc -c'], WorkingDir: '/' + Array(2000).fill('a').join('/') });
  const r = await blocked(() => run({ image: 'localhost/deep-workdir:1', storeDir: store, pull: 'never' }));
  t.ok(r.worst < 2000, `Node's thread blocked at most 2 s (was ${r.worst} ms)`);
  // The container still gets its WorkingDir (made in the upper layer by the child).
  t.error(r.e, 'the run starts');
  if (r.v) t.equal(r.v.stdout.toString().trim(), '4001', 'its cwd is the 2000-deep WorkingDir (pwd: 4000 bytes and a newline)');
});

t.test("the image User kept for this process: an absent User and a User named 'undefined' (or 'null') are not one", { skip }, async (t) => {
  // run.ts keeps an image's resolved User by its layers and the User spelled with String(): an
  // absent User (root) was kept as 'undefined', so an image of the same layers whose User is the
  // name 'undefined' (a plain /etc/passwd name) ran as root after the first one had run.
  const passwd = [[{ name: 'etc/passwd', mode: 0o644 }, Buffer.from('root:x:0:0:root:/root:/bin/sh\nundefined:x:4242:4343::/:/bin/sh\nnull:x:4244:4345::/:/bin/sh\n')]];
  const cmd = ['/bin/sh', '-c', 'echo $(id -u):$(id -g)'];
  await makeImage('localhost/user-cache:root', [passwd], { Cmd: cmd });
  await makeImage('localhost/user-cache:undefined', [passwd], { Cmd: cmd, User: 'undefined' });
  await makeImage('localhost/user-cache:null-root', [passwd], { Cmd: cmd, User: null });
  await makeImage('localhost/user-cache:null', [passwd], { Cmd: cmd, User: 'null' });
  const as = async (tag) => (await run({ image: `localhost/user-cache:${tag}`, storeDir: store, pull: 'never' })).stdout.toString().trim();
  t.equal(await as('root'), '0:0', 'no User: root');
  t.equal(await as('undefined'), '4242:4343', "User 'undefined': that user, not the root kept for the image above");
  t.equal(await as('null-root'), '0:0', 'User null: root');
  t.equal(await as('null'), '4244:4345', "User 'null': that user");
  t.equal(await as('root'), '0:0', 'and root again');
});
