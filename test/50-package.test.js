// The package as a user gets it: `npm pack`, `npm install <tarball>` into a fresh project (which
// builds the addon there), then require() and import both work and run a container.
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
});

t.test('npm pack + npm install of the tarball builds and runs a container', async (t) => {
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
  npm(['install', '--prefer-offline', tarball], app);
  const cjs = execFileSync(process.execPath, ['-e', "require('nsbox').run({command:['sh','-c','echo $(hostname):$$']}).then(r=>process.stdout.write(r.stdout))"], { cwd: app }).toString();
  t.equal(cjs.trim(), 'nsbox:1', 'require("nsbox") runs a container as PID 1');
  const esm = execFileSync(process.execPath, ['--input-type=module', '-e', "import { run } from 'nsbox'; const r = await run({command:['sh','-c','exit 3']}); process.stdout.write(String(r.exitCode));"], { cwd: app }).toString();
  t.equal(esm, '3', 'import { run } from "nsbox" works');
  const cli = execFileSync(path.join(app, 'node_modules/.bin/nsbox'), ['--version'], { cwd: app }).toString();
  t.match(cli, /\d+\.\d+\.\d+/, 'the nsbox CLI is installed as a bin');
});
