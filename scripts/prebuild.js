#!/usr/bin/env node
// Builds the N-API addon and the static init for linux-x64 and linux-arm64 into prebuilds/, so that
// `npm install` of the package needs no compiler (node-gyp-build loads prebuilds/<platform>-<arch>/).
//
//   node scripts/prebuild.js               both arches (arm64 cross-compiled with aarch64-linux-gnu-g++)
//   node scripts/prebuild.js --arch x64    one arch
//   node scripts/prebuild.js --if-stale    skip an arch whose prebuilds/build-info.json hash is that of
//                                          the sources as they are now (prepack uses this); outside CI
//                                          and publish, an arch without its cross compiler is dropped
//                                          (with a warning) instead of failing the pack
//
// Each build runs prebuildify (node-gyp rebuild, strip, the node-gyp-build file name) in a staging
// copy of binding.gyp, native/ and package.json, so the checkout's own build/ (the one the tests load)
// is never overwritten by a build for another arch. Needs: g++, make, python3 (node-gyp), and for arm64
// Debian's g++-aarch64-linux-gnu (binutils-aarch64-linux-gnu for the strip).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { execFileSync, spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const out = path.join(root, 'prebuilds');
const INFO = path.join(out, 'build-info.json');

// The toolchain per target arch: prefix '' is the host's cc/c++.
// Progress goes to stderr: npm pack --json (prepack) prints its JSON on stdout.
const ARCHES = {
  x64: { triple: 'x86_64-linux-gnu', elf: 'x86-64' },
  arm64: { triple: 'aarch64-linux-gnu', elf: 'aarch64' },
};

function die(msg) {
  console.error(`prebuild: ${msg}`);
  process.exit(1);
}

const args = process.argv.slice(2);
const ifStale = args.includes('--if-stale');
const archIdx = args.indexOf('--arch');
const arches = archIdx >= 0 ? [args[archIdx + 1]] : Object.keys(ARCHES);
for (const a of arches) if (!ARCHES[a]) die(`unknown --arch ${a} (known: ${Object.keys(ARCHES).join(', ')})`);

/** Every input of the native build: what build-info.json records and --if-stale compares. */
function sourceHash() {
  const h = crypto.createHash('sha256');
  const files = ['binding.gyp', 'scripts/prebuild.js'];
  (function walk(rel) {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const r = path.posix.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else files.push(r);
    }
  })('native');
  for (const f of files) h.update(`${f}\0`).update(fs.readFileSync(path.join(root, f))).update('\0');
  h.update(`node-addon-api ${require('node-addon-api/package.json').version}\0`);
  return h.digest('hex');
}

/** Node's headers: npm's nodedir, else the include/node beside this node (no download). */
function nodedir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const beside = path.resolve(process.execPath, '..', '..');
  if (fs.existsSync(path.join(beside, 'include', 'node', 'node_api.h'))) return beside;
  return undefined; // node-gyp downloads them (needs nodejs.org)
}

/** The compiler for arch: the host's for the host arch, else <triple>-gcc/g++/strip; null: not on PATH. */
function toolchain(arch) {
  if (arch === process.arch) return {};
  const t = ARCHES[arch].triple;
  for (const tool of ['gcc', 'g++', 'strip']) {
    try {
      execFileSync('sh', ['-c', `command -v ${t}-${tool}`], { stdio: 'ignore' });
    } catch {
      return null;
    }
  }
  return { CC: `${t}-gcc`, CXX: `${t}-g++`, LINK: `${t}-g++`, AR: `${t}-ar`, PREBUILD_STRIP_BIN: `${t}-strip` };
}

function noCross(arch) {
  return `${ARCHES[arch].triple}-g++ is not on PATH: the ${arch} build is cross-compiled (Debian: apt-get install g++-${ARCHES[arch].triple.replace(/_/g, '-')})`;
}

/** npm's own node-gyp (the one an install would run), else the one in node_modules. */
function nodeGyp() {
  if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return die('no node-gyp: run this through npm (npm run build:prebuilds), which brings its own');
  }
}

function readInfo() {
  try {
    return JSON.parse(fs.readFileSync(INFO, 'utf8'));
  } catch {
    return null;
  }
}

function present(arch) {
  const d = path.join(out, `linux-${arch}`);
  return fs.existsSync(path.join(d, 'nsbox.glibc.node')) && fs.existsSync(path.join(d, 'nsbox-init'));
}

// Throws (after removing its staging directory) rather than exiting: die() would skip the finally.
function buildOne(arch, hash) {
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), `nsbox-prebuild-${arch}-`));
  try {
    fs.copyFileSync(path.join(root, 'binding.gyp'), path.join(stage, 'binding.gyp'));
    fs.copyFileSync(path.join(root, 'package.json'), path.join(stage, 'package.json'));
    fs.cpSync(path.join(root, 'native'), path.join(stage, 'native'), { recursive: true });
    // binding.gyp asks node for node-addon-api's include dir: the checkout's node_modules answers.
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'));
    const dir = nodedir();
    const tools = toolchain(arch);
    if (!tools) throw new Error(noCross(arch));
    // prebuildify's CLI in a child: the toolchain and the headers in its environment, and all of its
    // (and make's) output on stderr, so that `npm pack --json` (which runs this as prepack) keeps
    // its stdout JSON. The headers are this Node's (the addon asks for NAPI_VERSION 8, so it loads
    // on any Node >= 20: package.json engines), not the newest Node prebuildify knows (a download).
    const cli = path.join(path.dirname(require.resolve('prebuildify/package.json')), 'bin.js');
    const r = spawnSync(process.execPath, [cli, '--napi', '--strip', '--tag-libc', `--arch=${arch}`, '--platform=linux',
      `--target=node@${process.versions.node}`, `--strip-bin=${tools.PREBUILD_STRIP_BIN || 'strip'}`, `--node-gyp=${nodeGyp()}`,
      `--cache=${path.join(stage, '.devdir')}`, stage], { cwd: stage, stdio: ['ignore', 2, 2], env: { ...process.env, ...tools, ...(dir ? { npm_config_nodedir: dir } : {}) } });
    if (r.status !== 0) throw new Error(`${arch}: prebuildify ${r.error ? r.error.message : `exited with ${r.status ?? r.signal}`}`);
    const built = path.join(stage, 'prebuilds', `linux-${arch}`);
    fs.copyFileSync(path.join(stage, 'build', 'Release', 'nsbox-init'), path.join(built, 'nsbox-init'));
    fs.chmodSync(path.join(built, 'nsbox-init'), 0o755);
    for (const f of fs.readdirSync(built)) {
      const kind = execFileSync('file', ['-b', path.join(built, f)]).toString().trim();
      if (!kind.includes(ARCHES[arch].elf)) throw new Error(`${arch}: ${f} is not an ${ARCHES[arch].elf} ELF: ${kind}`);
      console.error(`prebuild: linux-${arch}/${f}: ${fs.statSync(path.join(built, f)).size} bytes, ${kind}`);
    }
    const dest = path.join(out, `linux-${arch}`);
    fs.rmSync(dest, { recursive: true, force: true });
    fs.mkdirSync(out, { recursive: true });
    fs.cpSync(built, dest, { recursive: true });
    const info = readInfo() ?? { sources: {} };
    info.sources[arch] = hash;
    fs.writeFileSync(INFO, JSON.stringify(info, null, 2) + '\n');
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

function forget(arch) {
  fs.rmSync(path.join(out, `linux-${arch}`), { recursive: true, force: true });
  const info = readInfo();
  if (info?.sources?.[arch]) {
    delete info.sources[arch];
    fs.writeFileSync(INFO, JSON.stringify(info, null, 2) + '\n');
  }
}

/**
 * One prebuild at a time per checkout (test files that `npm pack` run in parallel): a lock directory
 * holding the owner's pid; one whose owner is gone is taken over.
 */
async function lock() {
  const dir = path.join(root, '.prebuild.lock');
  for (;;) {
    try {
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'pid'), String(process.pid));
      process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
      return;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    let owner = 0;
    try {
      owner = Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8'));
    } catch {
      /* being made or removed: look again */
    }
    let alive = true;
    if (owner > 0) {
      try {
        process.kill(owner, 0);
      } catch (e) {
        alive = e.code !== 'ESRCH';
      }
    }
    if (!alive) fs.rmSync(dir, { recursive: true, force: true });
    else await new Promise((r) => setTimeout(r, 250));
  }
}

(async () => {
  await lock();
  const hash = sourceHash();
  for (const arch of arches) {
    if (ifStale && readInfo()?.sources?.[arch] === hash && present(arch)) {
      console.error(`prebuild: linux-${arch} is current (sources ${hash.slice(0, 12)})`);
      continue;
    }
    // A local `npm pack` (prepack) on a host without the cross compiler packs the host's prebuild
    // only (that arch then compiles at install), and never a stale one; a publish, CI and an
    // explicit run (npm run build:prebuilds) need every arch.
    const strict = !ifStale || process.env.npm_command === 'publish' || process.env.CI === 'true';
    if (!toolchain(arch) && !strict) {
      console.error(`prebuild: linux-${arch} skipped (${noCross(arch)}); the package compiles on ${arch} when installed`);
      forget(arch);
      continue;
    }
    buildOne(arch, hash);
  }
})().catch((e) => die(e.message));
