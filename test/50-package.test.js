// The package as a user gets it: `npm pack`, `npm install --build-from-source <tarball>` into a fresh
// project (which compiles the addon there instead of using the prebuild), then require() and import
// both work and run a container. The prebuilt path, with no compiler: test/52-install.test.js.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.join(__dirname, '..');

t.test('ESM and CommonJS entry points export the same API', async (t) => {
  const cjs = require('..');
  const esm = await import(path.join(root, 'esm', 'index.mjs'));
  for (const name of ['run', 'spawn', 'probe', 'NsboxError', 'Container']) {
    t.type(cjs[name], 'function', `require: ${name}`);
    t.equal(esm[name], cjs[name], `import: ${name}`);
  }
  // Every CommonJS export is a named ESM export too (pull() and the other image functions were not).
  t.same(Object.keys(cjs).filter((k) => esm[k] !== cjs[k]), [], 'import { name } works for every export of require()');
});

t.test('every js block of the README is valid syntax on this Node (20 included)', async (t) => {
  const vm = require('node:vm');
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  t.ok(blocks.length >= 5, `${blocks.length} js blocks found`);
  for (const [i, code] of blocks.entries()) {
    // Snippets use top-level await (as an ES module or a REPL would), so each is checked as the
    // body of an async function; an `import` line is checked as a module.
    const body = code.replace(/^import .*$/gm, '');
    t.doesNotThrow(() => new vm.Script(`(async () => {\n${body}\n})`, { filename: `README.md js block ${i + 1}` }), `block ${i + 1} parses: ${code.split('\n')[0]}`);
  }
});

t.test('package.json: a LICENSE with the license it names, installs on any platform, no junk in the tarball', async (t) => {
  const pkg = require('../package.json');
  t.equal(pkg.license, 'Apache-2.0');
  t.match(fs.readFileSync(path.join(root, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004/, 'LICENSE is the Apache-2.0 text');
  // Installs anywhere (a cross-platform tool can depend on it); off Linux on x64/arm64 probe() says
  // supported: false and every start fails with ENOTSUP (test/platform.test.js). npm refuses to
  // install a package whose os or cpu does not match, so neither field is set.
  t.equal(pkg.os, undefined, 'no os field: npm would refuse to install on macOS and Windows');
  t.equal(pkg.cpu, undefined, 'no cpu field: likewise on other CPUs');
  t.equal(pkg.engines.node, '>=20.4.0', 'Node 20.4: AbortSignal.any (20.3) and Symbol.asyncDispose (20.4)');
  const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_loglevel: 'error' } }).toString());
  const files = packed[0].files.map((f) => f.path);
  t.ok(files.includes('LICENSE') && files.includes('dist/index.d.ts') && files.includes('esm/index.mjs'), 'LICENSE, the types and the ESM entry are in it');
  t.same(files.filter((f) => f.endsWith('.map')), [], 'no source maps (their lib/*.ts sources are not shipped)');
  // The only binaries: the prebuilt addon and init per arch (scripts/prebuild.js).
  const prebuilt = /^prebuilds\/linux-(x64|arm64)\/(nsbox\.glibc\.node|nsbox-init)$|^prebuilds\/build-info\.json$/;
  t.same(files.filter((f) => f.startsWith('prebuilds/') && !prebuilt.test(f)), [], 'prebuilds/ holds the addon and init per arch only');
  t.same(files.filter((f) => /^(test|build|bench|scripts|lib|\.ci|node_modules)\//.test(f) || (/\.(o|a|node|tgz|log)$/.test(f) && !prebuilt.test(f))), [], 'no tests, local build, sources of dist or scratch files');
  // The README's relative links go to files in the tarball (docs/ is shipped): they work in an
  // installed copy and wherever the package's files are browsed.
  const links = [];
  for (const doc of files.filter((f) => f === 'README.md' || /^docs\/[^/]+\.md$/.test(f))) {
    for (const m of fs.readFileSync(path.join(root, doc), 'utf8').matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(m[1]) || m[1].startsWith('#')) continue;
      links.push([doc, path.posix.normalize(path.posix.join(path.posix.dirname(doc), m[1].split('#')[0]))]);
    }
  }
  t.ok(links.length > 10, `${links.length} relative links found`);
  const inTarball = (target) => files.includes(target) || (target.endsWith('/') && files.some((f) => f.startsWith(target)));
  t.same(links.filter(([, target]) => !inTarball(target)), [], 'every relative link of README.md and docs/ names a file (or a directory of files) in the tarball');
});

t.test('npm pack + npm install --build-from-source of the tarball compiles the addon and runs a container', async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-pack-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const npm = (args, cwd) => execFileSync('npm', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_loglevel: 'error', npm_config_fund: 'false', npm_config_audit: 'false' } }).toString();
  const packed = JSON.parse(npm(['pack', '--json', '--pack-destination', work], root));
  const tarball = path.join(work, packed[0].filename);
  const files = packed[0].files.map((f) => f.path);
  t.ok(files.includes('dist/index.js') && files.includes('binding.gyp') && files.includes('native/init/init.c'), 'the tarball has the JS build and the native sources');
  t.notOk(files.some((f) => f.startsWith('test/') || f.startsWith('build/')), 'no tests or local build in the tarball');
  const app = path.join(work, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  npm(['install', '--prefer-offline', '--build-from-source', tarball], app);
  const pkgDir = path.join(app, 'node_modules', 'nsbox');
  t.ok(fs.existsSync(path.join(pkgDir, 'build', 'Release', 'nsbox.node')) && fs.existsSync(path.join(pkgDir, 'build', 'Release', 'nsbox-init')), '--build-from-source compiled the addon and the init');
  const loaded = execFileSync(process.execPath, ['-e', `process.stdout.write(require(${JSON.stringify(path.join(pkgDir, 'dist', 'native.js'))}).addonFile())`], { cwd: app }).toString();
  t.equal(loaded, path.join(fs.realpathSync(pkgDir), 'build', 'Release', 'nsbox.node'), 'and the compiled addon is the one loaded (before the prebuild)');
  const cjs = execFileSync(process.execPath, ['-e', "require('nsbox').run({command:['sh','-c','echo $(hostname):$$']}).then(r=>process.stdout.write(r.stdout))"], { cwd: app }).toString();
  t.equal(cjs.trim(), 'nsbox:1', 'require("nsbox") runs a container as PID 1');
  const esm = execFileSync(process.execPath, ['--input-type=module', '-e', "import { run } from 'nsbox'; const r = await run({command:['sh','-c','exit 3']}); process.stdout.write(String(r.exitCode));"], { cwd: app }).toString();
  t.equal(esm, '3', 'import { run } from "nsbox" works');
  const cli = execFileSync(path.join(app, 'node_modules/.bin/nsbox'), ['--version'], { cwd: app }).toString();
  t.match(cli, /\d+\.\d+\.\d+/, 'the nsbox CLI is installed as a bin');
});
