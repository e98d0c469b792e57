#!/usr/bin/env node
// images.js: a pull of a ~100 MB image (the Debian tools rootfs, test/fixtures/debian-rootfs.sh
// --tools, without CPython's own test suite and the docs) from a local docker-registry, three ways
// in one run: nsbox's pull (fresh store), `skopeo copy docker://... oci:... && umoci unpack`, and
// `podman pull` (fresh --root). Each starts from nothing on disk; the registry serves all three.
//
//   node bench/images.js [--rounds 1]
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('../test/images/helpers');

const args = process.argv.slice(2);
const ROUNDS = Number(args.includes('--rounds') ? args[args.indexOf('--rounds') + 1] : 1);
const ROOTFS = process.env.NSBOX_DEBIAN_TOOLS_ROOTFS || '/var/cache/nsbox-test/debian-tools';

function time(fn) {
  const t0 = process.hrtime.bigint();
  return Promise.resolve(fn()).then(() => Number(process.hrtime.bigint() - t0) / 1e6);
}

async function main() {
  const missing = h.missingTools();
  if (missing) throw new Error(missing);
  if (!fs.existsSync(path.join(ROOTFS, 'usr/bin/python3'))) throw new Error(`${ROOTFS} is missing (bash test/fixtures/debian-rootfs.sh --tools)`);
  const { pull } = require('..');
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-bench-img-'));
  const reg = await h.startRegistry();
  try {
    const raw = execFileSync('tar', ['--numeric-owner', '--xattrs', '--exclude=./usr/lib/python3.11/test', '--exclude=./usr/share/doc', '--exclude=./usr/share/locale', '--exclude=./usr/share/man', '-C', ROOTFS, '-cf', '-', '.'], { maxBuffer: 2 ** 31 });
    const blob = execFileSync('gzip', ['-6', '-n'], { input: raw, maxBuffer: 2 ** 31 });
    const layer = { blob, diffId: h.sha256(raw), digest: h.sha256(blob), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' };
    const img = h.craftImage([layer]);
    await h.pushRaw(reg.url, 'bench/debian', 'tools', [layer], img);
    const ref = `${reg.host}/bench/debian:tools`;
    console.log(`image: ${(raw.length / 1e6).toFixed(0)} MB unpacked, ${(blob.length / 1e6).toFixed(0)} MB gzip'd, one layer`);
    const rows = { nsbox: [], 'skopeo+umoci': [], podman: [] };
    for (let r = 0; r < ROUNDS; r++) {
      const d = fs.mkdtempSync(path.join(scratch, 'round-'));
      rows.nsbox.push(await time(() => pull(ref, { storeDir: path.join(d, 'store') })));
      rows['skopeo+umoci'].push(
        await time(() => {
          execFileSync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${d}/oci:tools`]);
          execFileSync('umoci', ['unpack', '--image', `${d}/oci:tools`, `${d}/bundle`]);
        }),
      );
      if (h.have('podman')) {
        // podman refuses a runroot path longer than 50 characters.
        const runroot = fs.mkdtempSync('/tmp/nbp-');
        const pod = ['--root', `${d}/podman`, '--runroot', runroot, '--storage-driver', 'overlay'];
        try {
          rows.podman.push(await time(() => execFileSync('podman', [...pod, 'pull', '-q', '--tls-verify=false', ref], { stdio: ['ignore', 'ignore', 'pipe'] })));
          execFileSync('podman', [...pod, 'rmi', '-a', '-f'], { stdio: 'ignore' });
        } catch (e) {
          console.log(`podman failed: ${String(e.stderr).trim().split('\n').pop()}`);
        } finally {
          fs.rmSync(runroot, { recursive: true, force: true });
        }
      }
      fs.rmSync(d, { recursive: true, force: true });
    }
    for (const [k, v] of Object.entries(rows)) if (v.length) console.log(`${k.padEnd(14)} ${v.map((x) => (x / 1000).toFixed(2) + ' s').join('  ')}`);
  } finally {
    await reg.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
