#!/usr/bin/env node
// First benchmark: the round trip of /bin/true (spawn to exit seen in JS), sequential, nsbox run()
// beside child_process.spawn in the same run. Ratios, not absolute times, are what hold on a shared
// machine. Usage: node bench/roundtrip.js [--n 200] [--warmup 20] [--rootfs DIR]
'use strict';
const { spawn: cpSpawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run } = require('..');

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const N = Number(opt('--n', 200));
const WARMUP = Number(opt('--warmup', 20));
const rootfs = opt('--rootfs', undefined);

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function measure(name, once) {
  for (let i = 0; i < WARMUP; i++) await once();
  const times = [];
  for (let i = 0; i < N; i++) {
    const t0 = process.hrtime.bigint();
    await once();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  return { name, n: N, p50: pct(times, 50), p90: pct(times, 90), p99: pct(times, 99) };
}

function childProcessTrue() {
  return new Promise((resolve, reject) => {
    const c = cpSpawn('/bin/true', [], { stdio: 'ignore' });
    c.on('error', reject);
    c.on('exit', resolve);
  });
}

async function main() {
  const rows = [];
  rows.push(await measure("child_process.spawn('/bin/true') (no isolation)", childProcessTrue));
  rows.push(
    await measure(`nsbox run({command:['/bin/true']})${rootfs ? ' on ' + rootfs : ' (default rootfs)'}`, async () => {
      const r = await run({ command: ['/bin/true'], rootfs, stdio: 'ignore' });
      if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode}`);
    }),
  );
  const base = rows[0].p50;
  const lines = [
    `| what | n | p50 ms | p90 ms | p99 ms | p50 ratio to child_process |`,
    `|---|---|---|---|---|---|`,
    ...rows.map((r) => `| ${r.name} | ${r.n} | ${r.p50.toFixed(2)} | ${r.p90.toFixed(2)} | ${r.p99.toFixed(2)} | ${(r.p50 / base).toFixed(2)} |`),
  ];
  console.log(lines.join('\n'));
  const out = path.join(__dirname, 'results');
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, `roundtrip-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({ date: new Date().toISOString(), node: process.version, kernel: os.release(), cpus: os.cpus().length, rows }, null, 2),
  );
  console.log(`\nwritten: ${path.relative(process.cwd(), file)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
