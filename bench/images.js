#!/usr/bin/env node
// images.js: a pull of a ~100 MB image (the Debian tools rootfs, test/fixtures/debian-rootfs.sh
// --tools, without CPython's own test suite and the docs) from a local docker-registry, three ways
// in one run: nsbox's pull (fresh store), `skopeo copy docker://... oci:... && umoci unpack`, and
// `podman pull` (fresh --root). Each starts from nothing on disk; the registry serves all three.
//
//   node bench/images.js [--rounds 1]
//
// With --run: starting containers from an image instead. The busybox test rootfs as a one-layer
// image: a warm run({ image }) against run({ rootfs }) on the same tree (p50 of --n runs of
// /bin/true, alternating), and the first run({ image }) after a pull (fresh store: its plan, the
// merged walk and the lease are not cached yet) against `podman run --rm` of the same image from
// the same registry (podman's pull done beforehand, untimed).
//
//   node bench/images.js --run [--n 200]
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

const pct = (a, q) => [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) * q)];

/** The run comparisons (see the top); prints as it goes, resolves to the numbers (ms). */
async function runBench({ n: N = 200, print = console.log } = {}) {
  const missing = h.missingTools();
  if (missing) throw new Error(missing);
  const out = {};
  const { run, pull } = require('..');
  const { busyboxRootfs } = require('../test/helpers');
  const { rootfs } = busyboxRootfs();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-bench-imgrun-'));
  const reg = await h.startRegistry();
  try {
    const raw = execFileSync('tar', ['--numeric-owner', '-C', rootfs, '-cf', '-', '.'], { maxBuffer: 2 ** 30 });
    const blob = execFileSync('gzip', ['-1', '-n'], { input: raw, maxBuffer: 2 ** 30 });
    const layer = { blob, diffId: h.sha256(raw), digest: h.sha256(blob), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' };
    const img = h.craftImage([layer]);
    await h.pushRaw(reg.url, 'bench/busybox', 'v1', [layer], img);
    const ref = `${reg.host}/bench/busybox:v1`;
    const store = path.join(scratch, 'store');
    await pull(ref, { storeDir: store });
    // First run after the pull (nothing cached in this process for the image yet).
    const first = await time(() => run({ image: ref, storeDir: store, command: ['/bin/true'] }));
    const a = [];
    const b = [];
    for (let i = 0; i < 20; i++) {
      await run({ image: ref, storeDir: store, command: ['/bin/true'] });
      await run({ rootfs, command: ['/bin/true'] });
    }
    for (let i = 0; i < N; i++) {
      a.push(await time(() => run({ image: ref, storeDir: store, command: ['/bin/true'] })));
      b.push(await time(() => run({ rootfs, command: ['/bin/true'] })));
    }
    const [ai, bi] = [pct(a, 0.5), pct(b, 0.5)];
    Object.assign(out, { n: N, imageP50: ai, imageP90: pct(a, 0.9), rootfsP50: bi, rootfsP90: pct(b, 0.9), first });
    print(`warm run({ image })  p50 ${ai.toFixed(2)} ms  p90 ${pct(a, 0.9).toFixed(2)} ms  (n=${N})`);
    print(`warm run({ rootfs }) p50 ${bi.toFixed(2)} ms  p90 ${pct(b, 0.9).toFixed(2)} ms  (same tree)`);
    print(`ratio image/rootfs (p50): ${(ai / bi).toFixed(3)}x  (target <= 1.1x)`);
    print(`first run({ image }) after a pull: ${first.toFixed(2)} ms`);
    if (h.have('podman')) {
      const runroot = fs.mkdtempSync('/tmp/nbp-');
      const pod = ['--root', `${scratch}/podman`, '--runroot', runroot, '--storage-driver', 'overlay', '--cgroup-manager', 'cgroupfs'];
      try {
        execFileSync('podman', [...pod, 'pull', '-q', '--tls-verify=false', ref], { stdio: ['ignore', 'ignore', 'pipe'] });
        // Here crun refuses hybrid cgroups ("drop all controllers from cgroupv2") and both
        // runtimes fail to raise RLIMIT_NOFILE/NPROC to podman's defaults (no CAP_SYS_RESOURCE in
        // this sandbox): runc, with limits at or under this process's.
        const lim = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
        const pm = await time(() => execFileSync('podman', [...pod, 'run', '--rm', '--runtime', 'runc', '--net=none', ...lim, ref, '/bin/true'], { stdio: ['ignore', 'ignore', 'pipe'] }));
        const again = [];
        for (let i = 0; i < 5; i++) again.push(await time(() => execFileSync('podman', [...pod, 'run', '--rm', '--runtime', 'runc', '--net=none', ...lim, ref, '/bin/true'], { stdio: ['ignore', 'ignore', 'pipe'] })));
        out.podmanFirst = pm;
        out.podmanWarm = pct(again, 0.5);
        print(`podman run --rm (first, after its pull): ${pm.toFixed(2)} ms`);
        print(`podman run --rm (warm, p50 of 5): ${pct(again, 0.5).toFixed(2)} ms`);
        print(`ratio first nsbox/podman (first): ${(first / pm).toFixed(3)}x  (target <= 0.1x)`);
        execFileSync('podman', [...pod, 'rmi', '-a', '-f'], { stdio: 'ignore' });
      } catch (e) {
        out.podmanError = String(e.stderr).trim().split('\n').pop();
        print(`podman failed: ${out.podmanError}`);
      } finally {
        // conmon runs podman's cleanup after the container is gone (it writes in the root and the
        // runroot): let it finish first.
        await new Promise((r) => setTimeout(r, 1000));
        // podman binds its overlay directory onto itself (twice: pull and run): undone before the
        // scratch goes, as often as it is mounted.
        for (let i = 0; i < 8; i++) {
          try {
            execFileSync('umount', ['-l', `${scratch}/podman/overlay`], { stdio: 'ignore' });
          } catch {
            break; // not mounted (any more)
          }
        }
        fs.rmSync(runroot, { recursive: true, force: true });
      }
    } else {
      out.podmanError = 'podman not installed';
      print('podman: not installed');
    }
  } finally {
    await reg.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  return out;
}

/** The pull comparison (see the top): resolves to { bytes, gz, rows: { nsbox, 'skopeo+umoci', podman } } (ms per round). */
async function pullBench({ rounds: ROUNDS = 1, print = console.log } = {}) {
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
    print(`image: ${(raw.length / 1e6).toFixed(0)} MB unpacked, ${(blob.length / 1e6).toFixed(0)} MB gzip'd, one layer`);
    const rows = { nsbox: [], 'skopeo+umoci': [], podman: [] };
    // Before each timed pull, what earlier ones wrote is flushed (untimed): nsbox's pull ends with
    // a syncfs (a layer is on disk before it is used, docs/images.md) and would otherwise also
    // flush what the peers, which do not sync, left in the page cache.
    const settle = () => execFileSync('sync');
    for (let r = 0; r < ROUNDS; r++) {
      const d = fs.mkdtempSync(path.join(scratch, 'round-'));
      settle();
      rows.nsbox.push(await time(() => pull(ref, { storeDir: path.join(d, 'store') })));
      settle();
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
          settle();
          rows.podman.push(await time(() => execFileSync('podman', [...pod, 'pull', '-q', '--tls-verify=false', ref], { stdio: ['ignore', 'ignore', 'pipe'] })));
          execFileSync('podman', [...pod, 'rmi', '-a', '-f'], { stdio: 'ignore' });
        } catch (e) {
          print(`podman failed: ${String(e.stderr).trim().split('\n').pop()}`);
        } finally {
          fs.rmSync(runroot, { recursive: true, force: true });
        }
      }
      fs.rmSync(d, { recursive: true, force: true });
    }
    for (const [k, v] of Object.entries(rows)) if (v.length) print(`${k.padEnd(14)} ${v.map((x) => (x / 1000).toFixed(2) + ' s').join('  ')}`);
    return { bytes: raw.length, gz: blob.length, rows };
  } finally {
    await reg.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

module.exports = { runBench, pullBench };

if (require.main === module) {
  const N = Number(args.includes('--n') ? args[args.indexOf('--n') + 1] : 200);
  (args.includes('--run') ? runBench({ n: N }) : pullBench({ rounds: ROUNDS })).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
