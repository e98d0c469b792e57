'use strict';
// Section 6 of the benchmark: images (bench/images.js does the work). A pull of the Debian tools
// rootfs (~344 MB unpacked, one layer) from a local docker-registry: nsbox's pull() against
// `podman pull` and `skopeo copy` + `umoci unpack`; the first run({ image }) after a pull against
// `podman run --rm`; a warm run({ image }) against run({ rootfs }) on the same tree. With --quick
// the pull is left out (it needs the Debian tools rootfs and a minute).
const fs = require('node:fs');
const path = require('node:path');
const { f2, fx, table } = require('../lib/stats');

async function run({ O, log, R }) {
  const { runBench, pullBench } = require('../images');
  const h = require('../../test/images/helpers');
  const missing = h.missingTools();
  if (missing) {
    R.images = { skip: missing };
    return `_Skipped: ${missing}._`;
  }
  const out = [];
  log(`images: ${O.quick ? 100 : 300} warm runs each of run({ image }) and run({ rootfs }), alternating; the first run after a pull; podman run --rm`);
  const r = await runBench({ n: O.quick ? 100 : 300, print: (l) => log(`images: ${l}`) });
  R.images = { run: r };
  out.push(
    table(
      ['what', 'p50 ms', 'p90 ms', 'ratio'],
      [
        ['warm run({ image }) of /bin/true (busybox as a one-layer image)', f2(r.imageP50), f2(r.imageP90), `${fx(r.imageP50 / r.rootfsP50)} ÷ rootfs`],
        ['warm run({ rootfs }) on the same tree', f2(r.rootfsP50), f2(r.rootfsP90), ''],
        ['first run({ image }) after its pull', f2(r.first), '', r.podmanFirst ? `${fx(r.first / r.podmanFirst)} ÷ podman run` : 'n/a'],
        ['podman run --rm --runtime runc, first after its pull', r.podmanFirst ? f2(r.podmanFirst) : `n/a (${r.podmanError})`, '', ''],
        ['podman run --rm --runtime runc, warm (p50 of 5)', r.podmanWarm ? f2(r.podmanWarm) : 'n/a', '', ''],
      ],
    ),
  );
  const tools = process.env.NSBOX_DEBIAN_TOOLS_ROOTFS || '/var/cache/nsbox-test/debian-tools';
  if (O.quick) out.push('\n_Pull: left out with --quick (`node bench/images.js` runs it alone)._');
  else if (!fs.existsSync(path.join(tools, 'usr/bin/python3'))) out.push(`\n_Pull: skipped, ${tools} is missing (bash test/fixtures/debian-tools-rootfs.sh)._`);
  else {
    log('images: pull of the Debian tools rootfs, nsbox / skopeo+umoci / podman, 2 rounds');
    const p = await pullBench({ rounds: 2, print: (l) => log(`images: ${l}`) });
    R.images.pull = p;
    const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
    const base = p.rows.podman.length ? med(p.rows.podman) : NaN;
    out.push(
      `\nPull of a ${(p.bytes / 1e6).toFixed(0)} MB image (${(p.gz / 1e6).toFixed(0)} MB gzip'd, one layer) from docker-registry on 127.0.0.1, each from an empty store; nsbox's includes a syncfs of the layer (the peers do not sync):\n\n` +
        table(
          ['tool', 'rounds (s)', '÷ podman pull'],
          Object.entries(p.rows)
            .filter(([, v]) => v.length)
            .map(([k, v]) => [k, v.map((x) => (x / 1000).toFixed(2)).join(', '), fx(med(v) / base)]),
        ),
    );
  }
  return out.join('\n');
}

module.exports = { key: 'images', number: 6, title: () => 'Images: run({ image }) and pull, against podman, skopeo + umoci and run({ rootfs })', run };
