// Installing the packed module where no compiler is: the tarball carries prebuilds/linux-<arch>
// (scripts/prebuild.js), node-gyp-build loads them, and the install script compiles only when none
// fits. A missing or wrong-arch addon or init is ERR_NSBOX_ADDON, naming what to run.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const { busyboxRootfs } = require('./helpers');

const root = path.join(__dirname, '..');
const host = `linux-${process.arch}`;
const other = process.arch === 'x64' ? 'arm64' : 'x64';
const ELF = { x64: 62, arm64: 183 };
const isRoot = process.geteuid() === 0;
// .ci/run installs the cross compiler and qemu-user: there the other arch's checks fail instead of skipping.
const requireCross = process.env.NSBOX_REQUIRE_CROSS === '1';
const skipOrFail = (t, reason) => (requireCross ? t.fail(`NSBOX_REQUIRE_CROSS=1 but ${reason}`) : t.skip(reason));

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-install-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

// A PATH of node, npm and the core utilities only: no cc, c++, gcc, g++, make or python3.
const bin = path.join(work, 'bin');
fs.mkdirSync(bin);
/** The file name runs from PATH (a builtin of sh does not count), or null. */
const which = (name) => {
  for (const d of (process.env.PATH || '').split(':')) {
    const p = path.join(d || '.', name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return null;
};
for (const name of ['node', 'npm', 'npx', 'sh', 'bash', 'env', 'cat', 'ls', 'mkdir', 'rm', 'cp', 'mv', 'ln', 'chmod', 'uname', 'sed', 'grep', 'dirname', 'basename', 'readlink', 'true', 'false', 'id', 'tar', 'gzip']) {
  const p = which(name);
  if (p) fs.symlinkSync(fs.realpathSync(p), path.join(bin, name));
}
// A node-gyp that only says it was run. npm puts every node_modules/.bin from the package up to / on
// a script's PATH ahead of its own node-gyp, so this one is what an install script would run.
const gypLog = path.join(work, 'node-gyp.log');
fs.mkdirSync(path.join(work, 'node_modules', '.bin'), { recursive: true });
fs.writeFileSync(path.join(work, 'node_modules', '.bin', 'node-gyp'), `#!/bin/sh\necho "$*" >> '${gypLog}'\nexit 1\n`, { mode: 0o755 });

/** The environment of a user with no compiler: npm's own lifecycle variables dropped. */
const env = { HOME: process.env.HOME, PATH: bin, npm_config_loglevel: 'error', npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' };
for (const [k, v] of Object.entries(process.env)) if (/^npm_config_(cache|registry|userconfig|nodedir)$/.test(k)) env[k] = v;

const npm = (args, cwd, extra = {}) => spawnSync(path.join(bin, 'npm'), args, { cwd, env: { ...env, ...extra }, encoding: 'utf8' });

function project(name) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }));
  return dir;
}

/** Runs script (CommonJS, in the project) with the compiler-less PATH; its stdout parsed as JSON. */
function inProject(dir, script) {
  const r = spawnSync(process.execPath, ['-e', script], { cwd: dir, env: { ...env, PATH: bin }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`node -e in ${dir} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

// The tarball, packed once (prepack brings prebuilds/ up to date with native/ first).
let tarball = null;
let packedFiles = [];
t.before(() => {
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_loglevel: 'error' } }).toString();
  const packed = JSON.parse(out)[0];
  tarball = path.join(work, packed.filename);
  packedFiles = packed.files.map((f) => f.path);
  t.comment(`tarball ${packed.filename}: ${packed.size} bytes, ${packed.unpackedSize} unpacked`);
});

t.test('the PATH the installs use has node and npm but no compiler, make or python3', async (t) => {
  for (const tool of ['cc', 'c++', 'gcc', 'g++', 'make', 'python3']) {
    t.not(spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: bin } }).status, 0, `no ${tool}`);
  }
  t.equal(spawnSync('sh', ['-c', 'command -v node && command -v npm'], { env: { PATH: bin } }).status, 0, 'node and npm are there');
});

t.test('the tarball carries the addon and nsbox-init for this arch as prebuilds', async (t) => {
  for (const f of [`prebuilds/${host}/nsbox.glibc.node`, `prebuilds/${host}/nsbox-init`]) t.ok(packedFiles.includes(f), f);
  t.ok(packedFiles.includes('binding.gyp') && packedFiles.includes('native/init/build.sh'), 'and the sources, for --build-from-source');
});

let app1 = null;
t.test('npm install --ignore-scripts of the tarball, with no compiler on PATH, runs a container', async (t) => {
  app1 = project('ignore-scripts');
  const r = npm(['install', '--ignore-scripts', '--prefer-offline', tarball], app1);
  t.equal(r.status, 0, `npm install succeeds${r.status ? `: ${r.stderr}` : ''}`);
  const pkg = path.join(app1, 'node_modules', 'nsbox');
  t.notOk(fs.existsSync(path.join(pkg, 'build')), 'no build/ directory');
  const got = inProject(app1, "const n = require(require.resolve('nsbox').replace(/index\\.js$/, 'native.js')); process.stdout.write(JSON.stringify({ file: n.addonFile(), init: n.buildDir }))");
  t.equal(got.file, path.join(fs.realpathSync(pkg), 'prebuilds', host, 'nsbox.glibc.node'), 'node-gyp-build picked the prebuild');
  t.equal(got.init, path.join(fs.realpathSync(pkg), 'prebuilds', host), 'nsbox-init is taken from beside it');
  if (!isRoot) return t.skip('running a container needs root here (the rootless lane covers the runtime)');
  const { rootfs, reason } = busyboxRootfs();
  if (!rootfs) return t.skip(reason);
  const res = inProject(app1, `require('nsbox').run({ rootfs: ${JSON.stringify(rootfs)}, command: ['/bin/sh', '-c', 'echo pid=$$'] }).then((r) => process.stdout.write(JSON.stringify({ code: r.exitCode, out: r.stdout.toString() })))`);
  t.same(res, { code: 0, out: 'pid=1\n' }, 'the container ran /bin/sh as its PID 1 (under the prebuilt nsbox-init)');
});

t.test('npm install with scripts uses the prebuild: node-gyp never runs, nothing is compiled', async (t) => {
  const app = project('with-scripts');
  fs.rmSync(gypLog, { force: true });
  const r = npm(['install', '--prefer-offline', tarball], app);
  t.equal(r.status, 0, `npm install succeeds without a compiler${r.status ? `: ${r.stderr}` : ''}`);
  t.notOk(fs.existsSync(gypLog), 'node-gyp was not run');
  t.notOk(fs.existsSync(path.join(app, 'node_modules', 'nsbox', 'build')), 'no build/ directory');
  // The same fake node-gyp does see a forced compile: the check above can fail.
  const forced = npm(['rebuild', 'nsbox', '--build-from-source'], app);
  t.not(forced.status, 0, 'npm rebuild --build-from-source fails here (the fake node-gyp refuses)');
  t.notOk(fs.existsSync(path.join(app, 'node_modules', 'nsbox', 'build')), 'and made no build/ either');
  t.match(fs.readFileSync(gypLog, 'utf8'), /^rebuild/m, '--build-from-source ran node-gyp rebuild despite the prebuild');
});

t.test('on a platform nsbox does not run on, the install script builds nothing and succeeds', async (t) => {
  const pkg = path.join(app1, 'node_modules', 'nsbox');
  fs.rmSync(gypLog, { force: true });
  const preload = path.join(__dirname, 'fixtures', 'fake-platform.js');
  for (const [platform, arch] of [['darwin', 'arm64'], ['win32', 'x64'], ['linux', 'riscv64']]) {
    // As npm runs it: in the package, node_modules/.bin (node-gyp-build's and the fake node-gyp) on PATH.
    const r = spawnSync(process.execPath, ['-r', preload, path.join(pkg, 'native', 'install.js')], { cwd: pkg, encoding: 'utf8', env: { ...env, PATH: [path.join(app1, 'node_modules', '.bin'), path.join(work, 'node_modules', '.bin'), bin].join(':'), NSBOX_FAKE_PLATFORM: platform, NSBOX_FAKE_ARCH: arch, npm_config_build_from_source: 'true' } });
    t.equal(r.status, 0, `${platform}/${arch}: exit 0, even with --build-from-source`);
    t.match(r.stderr, new RegExp(`no native build on ${platform}/${arch}`), 'and says why');
  }
  t.notOk(fs.existsSync(gypLog), 'node-gyp was not run');
  t.notOk(fs.existsSync(path.join(pkg, 'build')), 'no build/ directory');
});

/** The public API's first start in a fresh process of project dir: its error's fields. */
function startError(dir) {
  return inProject(dir, "require('nsbox').run({ command: ['/bin/true'] }).then(() => process.stdout.write('null'), (e) => process.stdout.write(JSON.stringify({ name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, step: e.step, path: e.path, message: e.message })))");
}

t.test('a missing, wrong-arch or broken addon or init is ERR_NSBOX_ADDON with the command that fixes it', async (t) => {
  const pkg = fs.realpathSync(path.join(app1, 'node_modules', 'nsbox'));
  const dir = path.join(pkg, 'prebuilds', host);
  const keep = path.join(work, 'kept-prebuild');
  fs.cpSync(dir, keep, { recursive: true });
  t.teardown(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.cpSync(keep, dir, { recursive: true });
  });
  const restore = () => {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.cpSync(keep, dir, { recursive: true });
  };
  const remedy = (t, e) => {
    t.equal(e.name, 'NsboxError');
    t.equal(e.code, 'ERR_NSBOX_ADDON');
    t.equal(e.step, 'addon.load');
    t.match(e.message, /npm rebuild nsbox --build-from-source/, 'says what to run');
    t.match(e.message, /C\+\+ compiler, make and python3/, 'and what that needs');
    t.match(e.message, new RegExp(`prebuilds/${host}`), 'or which prebuild would do');
  };

  await t.test('no prebuild for this arch (and no build/)', async (t) => {
    fs.rmSync(dir, { recursive: true });
    const e = startError(app1);
    remedy(t, e);
    t.equal(e.errno, os.constants.errno.ENOENT, 'errno ENOENT');
    t.match(e.message, /no prebuild fits/);
    restore();
  });

  await t.test('the addon deleted', async (t) => {
    fs.rmSync(path.join(dir, 'nsbox.glibc.node'));
    // node-gyp-build then finds no candidate in the directory: the same as no prebuild.
    const e = startError(app1);
    remedy(t, e);
    t.equal(e.errno, os.constants.errno.ENOENT);
    restore();
  });

  await t.test('nsbox-init deleted', async (t) => {
    fs.rmSync(path.join(dir, 'nsbox-init'));
    const e = startError(app1);
    remedy(t, e);
    t.equal(e.path, path.join(dir, 'nsbox-init'), 'path: the missing init');
    t.equal(e.errno, os.constants.errno.ENOENT);
    t.match(e.message, /the init .* is missing/);
    restore();
  });

  await t.test('the addon and the init of the other arch', async (t) => {
    const src = path.join(pkg, 'prebuilds', `linux-${other}`);
    if (!fs.existsSync(path.join(src, 'nsbox.glibc.node'))) return skipOrFail(t, `the tarball has no prebuilds/linux-${other} (packed without its cross compiler)`);
    for (const [f, what] of [['nsbox.glibc.node', 'addon'], ['nsbox-init', 'init']]) {
      fs.copyFileSync(path.join(src, f), path.join(dir, f));
      const e = startError(app1);
      remedy(t, e);
      t.equal(e.path, path.join(dir, f), `path: the ${what}`);
      t.equal(e.errno, os.constants.errno.ENOEXEC, 'errno ENOEXEC');
      t.match(e.message, new RegExp(`the ${what} .* is built for ${other === 'arm64' ? 'aarch64' : 'x86-64'}, this Node is`), `the ${what}'s arch is named`);
      restore();
    }
  });

  await t.test('an addon dlopen refuses (cut short after its ELF header)', async (t) => {
    const f = path.join(dir, 'nsbox.glibc.node');
    // (Cut inside its segments instead, dlopen maps past the end and the process dies of SIGBUS:
    // no error to report.)
    fs.truncateSync(f, 64);
    const e = startError(app1);
    remedy(t, e);
    t.equal(e.syscall, 'dlopen');
    t.equal(e.path, f);
    t.match(e.message, /does not load \(.+\)/, "dlopen's reason is in the message");
    restore();
  });
});

t.test('the other arch: an aarch64/x86-64 ELF addon, and its static nsbox-init runs under qemu-user', async (t) => {
  const files = [`prebuilds/linux-${other}/nsbox.glibc.node`, `prebuilds/linux-${other}/nsbox-init`];
  if (!files.every((f) => packedFiles.includes(f))) return skipOrFail(t, `no prebuilds/linux-${other} in the tarball (no cross compiler: apt-get install g++-aarch64-linux-gnu)`);
  const pkg = path.join(app1, 'node_modules', 'nsbox');
  for (const f of files) {
    const head = Buffer.alloc(20);
    const fd = fs.openSync(path.join(pkg, f), 'r');
    fs.readSync(fd, head, 0, 20, 0);
    fs.closeSync(fd);
    t.equal(head.readUInt16LE(18), ELF[other], `${f}: ELF machine of ${other}`);
  }
  // Loading the addon needs a Node for that arch, which this host has not: only the init is run.
  const qemu = ['qemu-aarch64-static', 'qemu-aarch64', 'qemu-x86_64-static', 'qemu-x86_64'].filter((q) => q.includes(other === 'arm64' ? 'aarch64' : 'x86_64')).find((q) => which(q));
  if (!qemu) return skipOrFail(t, `no qemu-user for ${other} (Debian: qemu-user-static)`);
  const init = path.join(pkg, files[1]);
  const r = spawnSync(qemu, [init, '--bogus'], { encoding: 'utf8' });
  t.equal(r.status, 125, 'exit 125 on a usage error');
  t.match(r.stderr, /^nsbox-init: usage: nsbox-init/, 'its usage on stderr');
  // Exec mode's failure report: the aarch64 raw system calls (prctl, fcntl, execve, write) at work.
  const fail = spawnSync(qemu, [init, '--exec', '3', '7', '--', '/nonexistent/cmd', 'cmd'], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
  t.equal(fail.status, 127, 'a failed execve exits 127');
  const rec = fail.output[3];
  t.equal(rec.length, 16, 'and writes one 16-byte record to ERRFD');
  t.same([rec.readInt32LE(0), rec.readInt32LE(4), rec.readInt32LE(8), rec.readUInt32LE(12)], [require('../dist/native').STEP.exec, os.constants.errno.ENOENT, 7, 0x6e73627a], '{step exec, ENOENT, index 7, magic}');
});
