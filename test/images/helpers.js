'use strict';
// Real parts for the image tests: Debian's docker-registry on 127.0.0.1 (its own config and storage
// in a temp dir; htpasswd basic auth on request), images made with umoci and pushed with skopeo,
// and a tree walk that compares our unpacked layers (merged by a read-only overlay in a private
// mount namespace) with what `umoci unpack` makes of the same image.
const { execFileSync, spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** Why the image tests cannot run here, or null. */
function missingTools() {
  for (const [cmd, pkg] of [['docker-registry', 'docker-registry'], ['skopeo', 'skopeo'], ['umoci', 'umoci']]) {
    if (!have(cmd)) return `${cmd} is missing (apt-get install ${pkg})`;
  }
  if (process.geteuid() !== 0) return 'the image tests build and compare root-owned trees (run as root)';
  return null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/**
 * Starts a registry; resolves to { host, url, dir, pid, stop() }. auth: { user, password } for
 * htpasswd; token: { realm, service, issuer, rootcertbundle } for Bearer token auth (servers.js).
 */
async function startRegistry({ auth, token } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-registry-'));
  const port = await freePort();
  let authYaml = '';
  if (auth) {
    const line = execFileSync('htpasswd', ['-Bbn', auth.user, auth.password]).toString().trim();
    fs.writeFileSync(path.join(dir, 'htpasswd'), line + '\n');
    authYaml = `auth:\n  htpasswd:\n    realm: nsbox-test\n    path: ${dir}/htpasswd\n`;
  }
  if (token) authYaml = `auth:\n  token:\n${['realm', 'service', 'issuer', 'rootcertbundle'].map((k) => `    ${k}: ${JSON.stringify(token[k])}\n`).join('')}`;
  fs.writeFileSync(
    path.join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/storage\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${authYaml}`,
  );
  // Under a parent-death signal: a test process that dies (a crash, a tap timeout) takes its
  // registry with it instead of leaving it running on the host.
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'docker-registry', 'serve', path.join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((r) => child.once('exit', r));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(`${url}/v2/`);
      if (r.status === 200 || r.status === 401) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || i > 100) {
      child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`docker-registry did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host: `127.0.0.1:${port}`,
    url,
    dir,
    pid: child.pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function sh(cmd, args, opts = {}) {
  const out = execFileSync(cmd, args, { stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'], ...opts });
  return opts.encoding === 'buffer' ? out : out.toString();
}

/**
 * An OCI layout made with umoci: `steps` is a list of functions, each changing the rootfs of a
 * bundle (one layer each). Returns { layout, tag }.
 */
function umociImage(dir, tag, steps) {
  const layout = path.join(dir, 'layout');
  const bundle = path.join(dir, 'bundle');
  sh('umoci', ['init', '--layout', layout]);
  sh('umoci', ['new', '--image', `${layout}:${tag}`]);
  for (const step of steps) {
    fs.rmSync(bundle, { recursive: true, force: true });
    sh('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle]);
    step(path.join(bundle, 'rootfs'));
    sh('umoci', ['repack', '--image', `${layout}:${tag}`, bundle]);
  }
  fs.rmSync(bundle, { recursive: true, force: true });
  return { layout, tag };
}

function push(layoutRef, registryHost, name, extra = []) {
  sh('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...extra, `oci:${layoutRef}`, `docker://${registryHost}/${name}`]);
}

const WALK = path.join(__dirname, 'walk.js');

/** The tree under root as a sorted list of entries (see walk.js). */
function tree(root) {
  return JSON.parse(sh(process.execPath, [WALK, root], { maxBuffer: 256 << 20 }));
}

/** The merged view of layer dirs (lowest first), through a read-only overlay in a private mount namespace. */
function mergedTree(layers, scratch) {
  const mnt = fs.mkdtempSync(path.join(scratch, 'merged-'));
  const lowers = [...layers].reverse();
  if (lowers.length === 1) lowers.push(fs.mkdtempSync(path.join(scratch, 'empty-')));
  const script = `mount -t overlay overlay -o ro,lowerdir=${lowers.join(':')} ${mnt} && exec ${process.execPath} ${WALK} ${mnt}`;
  const out = sh('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { maxBuffer: 256 << 20 });
  return JSON.parse(out);
}

function sha256(b) {
  return 'sha256:' + crypto.createHash('sha256').update(b).digest('hex');
}

/** Files and dirs under the store that say something was left behind. */
function leftovers(storeDir) {
  const out = [];
  for (const d of ['tmp', 'locks']) {
    try {
      for (const f of fs.readdirSync(path.join(storeDir, d))) out.push(`${d}/${f}`);
    } catch {
      // no such directory: nothing left
    }
  }
  try {
    for (const f of fs.readdirSync(path.join(storeDir, 'blobs/sha256'))) if (f.includes('.tmp-')) out.push(`blobs/${f}`);
  } catch {
    // none
  }
  return out;
}

module.exports = { missingTools, startRegistry, umociImage, push, tree, mergedTree, sha256, leftovers, sh, have };

/** A gzip'd layer made by hand: entries are [header, content?] for tar-stream's pack. */
async function craftLayer(entries, { compress = true } = {}) {
  const tar = require('tar-stream');
  const zlib = require('node:zlib');
  const p = tar.pack();
  for (const [h, body] of entries) p.entry({ mtime: new Date(0), ...h }, body);
  p.finalize();
  const chunks = [];
  for await (const c of p) chunks.push(c);
  const raw = Buffer.concat(chunks);
  const blob = compress ? zlib.gzipSync(raw) : raw;
  return { blob, diffId: sha256(raw), digest: sha256(blob), mediaType: compress ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar' };
}

/** Config and manifest for crafted layers. */
function craftImage(layers, { diffIds } = {}) {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: diffIds ?? layers.map((l) => l.diffId) } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.blob.length })),
    }),
  );
  return { config, manifest };
}

/**
 * Pushes crafted blobs and a manifest with plain HTTP PUTs (the distribution API's monolithic
 * upload); `token`: a Bearer token for a registry with token auth.
 */
async function pushRaw(url, name, tag, layers, img, { token } = {}) {
  const auth = token ? { authorization: `Bearer ${token}` } : {};
  for (const b of [...layers.map((l) => l.blob), img.config]) {
    const start = await fetch(`${url}/v2/${name}/blobs/uploads/`, { method: 'POST', headers: auth });
    if (start.status !== 202) throw new Error(`upload start: ${start.status}`);
    const loc = new URL(start.headers.get('location'), url);
    loc.searchParams.set('digest', sha256(b));
    const put = await fetch(loc, { method: 'PUT', body: b, headers: { 'content-type': 'application/octet-stream', ...auth } });
    if (put.status !== 201) throw new Error(`upload: ${put.status} ${await put.text()}`);
  }
  const m = await fetch(`${url}/v2/${name}/manifests/${tag}`, { method: 'PUT', body: img.manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json', ...auth } });
  if (m.status !== 201) throw new Error(`manifest: ${m.status} ${await m.text()}`);
  return sha256(img.manifest);
}

/** An OCI layout directory holding crafted layers (for umoci unpack and skopeo). */
function craftLayout(dir, tag, layers, img) {
  fs.mkdirSync(path.join(dir, 'blobs/sha256'), { recursive: true });
  for (const b of [...layers.map((l) => l.blob), img.config, img.manifest]) fs.writeFileSync(path.join(dir, 'blobs/sha256', sha256(b).slice(7)), b);
  fs.writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(img.manifest), size: img.manifest.length, annotations: { 'org.opencontainers.image.ref.name': tag } }] }));
  return { layout: dir, tag };
}

module.exports.craftLayer = craftLayer;
module.exports.craftImage = craftImage;
module.exports.pushRaw = pushRaw;
module.exports.craftLayout = craftLayout;

/** What test 95 and test 96 run on: the busybox test rootfs, and why they skip ({ bb, skip }). */
function imageTestEnv() {
  const { busyboxRootfs } = require('../helpers');
  const { rootfs: bb, reason } = busyboxRootfs();
  return { bb, skip: missingTools() || reason || false };
}

/**
 * The registry setup test 95 and test 96 share: a scratch directory (the store is its store/), a
 * registry, and an image made with umoci from `steps` (configure(layoutRef) may change its config
 * before the push), pushed as `name`. Made in a t.before, gone in a t.teardown (the registry
 * stopped through its own child handle, the directory removed); ready({ scratch, store, reg, img,
 * ref }) hands them to the test file once made.
 */
function registryWithImage(t, { skip, prefix, name, steps, configure, ready }) {
  const fx = {};
  t.before(async () => {
    if (skip) return;
    fx.scratch = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    fx.store = path.join(fx.scratch, 'store');
    fx.reg = await startRegistry();
    fx.img = umociImage(path.join(fx.scratch, 'umoci'), 'v1', steps);
    configure?.(`${fx.img.layout}:v1`);
    push(`${fx.img.layout}:v1`, fx.reg.host, name);
    fx.ref = `${fx.reg.host}/${name}`;
    ready(fx);
  });
  t.teardown(async () => {
    if (fx.reg) await fx.reg.stop();
    if (fx.scratch) fs.rmSync(fx.scratch, { recursive: true, force: true });
  });
}

module.exports.imageTestEnv = imageTestEnv;
module.exports.registryWithImage = registryWithImage;
