// Other platforms (issue #21): the package loads on macOS and Windows, probe() says it is not
// supported and why, every start fails with NsboxError ENOTSUP (step 'platform') naming the
// platform, and the native addon is never loaded. Faked in a child Node process whose preload
// (fixtures/fake-platform.js) sets process.platform and records (and refuses) every .node load.
'use strict';
const t = require('tap');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const preload = path.join(__dirname, 'fixtures', 'fake-platform.js');
const bin = path.join(root, 'bin', 'nsbox.js');

/** Runs node with the fake platform; returns the child's result. */
function fake(platform, args, arch = '') {
  const r = spawnSync(process.execPath, ['-r', preload, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, NSBOX_FAKE_PLATFORM: platform, NSBOX_FAKE_ARCH: arch, NSBOX_DEBUG: '', DEBUG: '' },
  });
  if (r.error) throw r.error;
  return r;
}

// Each call's outcome as data: what it returned, or the error's name, code, step and message.
const script = `
const nsbox = require(${JSON.stringify(root)});
const outcome = async (f) => {
  try {
    const v = await f();
    return { ok: true, value: v && typeof v === 'object' ? Object.keys(v) : v };
  } catch (e) {
    return { ok: false, name: e.name, code: e.code, step: e.step, syscall: e.syscall, path: e.path, message: e.message, isNsboxError: e instanceof nsbox.NsboxError, sync: false };
  }
};
const sync = (f) => {
  try {
    f();
    return { ok: true };
  } catch (e) {
    return { ok: false, name: e.name, code: e.code, step: e.step, message: e.message, isNsboxError: e instanceof nsbox.NsboxError, sync: true };
  }
};
(async () => {
  const out = {};
  out.probe = await nsbox.probe();
  const runP = nsbox.run({ command: ['/bin/true'] });
  out.runIsPromise = runP instanceof Promise;
  out.run = await outcome(() => runP);
  out.spawn = sync(() => nsbox.spawn({ command: ['/bin/true'] }));
  out.createPool = sync(() => nsbox.createPool({ size: 1 }));
  out.machineStart = await outcome(() => nsbox.Machine.start({ name: 'm', rootfs: '/' }));
  out.machineGet = await outcome(() => nsbox.Machine.get('m'));
  out.machineList = await outcome(() => nsbox.Machine.list());
  out.removeBridge = await outcome(() => nsbox.removeBridge());
  const esm = await import(${JSON.stringify(path.join(root, 'esm', 'index.mjs'))});
  out.esmProbe = (await esm.probe()).supported;
  out.nativeLoads = globalThis.__nativeLoads;
  process.stdout.write(JSON.stringify(out));
})();
`;

for (const platform of ['darwin', 'win32']) {
  t.test(`on ${platform}: the package loads, probe() says unsupported, starts fail with ENOTSUP, the addon is never loaded`, async (t) => {
    const r = fake(platform, ['-e', script]);
    t.equal(r.status, 0, `the child ran to its end (stderr: ${r.stderr})`);
    const out = JSON.parse(r.stdout);
    t.equal(out.probe.supported, false, 'probe().supported is false');
    t.match(out.probe.reason, new RegExp(`Linux only.*${platform}`), 'probe().reason names Linux and this platform');
    t.equal(out.probe.platform, platform);
    t.same(out.probe.notes, [out.probe.reason], 'the reason is the one note');
    t.equal(out.probe.features.clone3, false, 'no feature is claimed');
    t.equal(out.probe.cgroup.mode, 'none');
    t.equal(out.esmProbe, false, 'the ESM entry loads and reports the same');

    t.ok(out.runIsPromise, 'run() returns a promise (it rejects, not throws)');
    for (const [name, call] of [
      ['run', 'run()'],
      ['spawn', 'spawn()'],
      ['createPool', 'createPool()'],
      ['machineStart', 'Machine.start()'],
      ['machineGet', 'Machine.get()'],
      ['machineList', 'Machine.list()'],
      ['removeBridge', 'removeBridge()'],
    ]) {
      const o = out[name];
      t.equal(o.ok, false, `${call} fails`);
      t.equal(o.name, 'NsboxError', `${call}: an NsboxError`);
      t.ok(o.isNsboxError, `${call}: instanceof NsboxError`);
      t.equal(o.code, 'ENOTSUP', `${call}: code ENOTSUP`);
      t.equal(o.step, 'platform', `${call}: step platform`);
      t.ok(o.message.startsWith(`${call}: `) && o.message.includes(platform), `${call}: the message names the call and the platform: ${o.message}`);
    }
    t.same(out.nativeLoads, [], 'no native addon was loaded');
  });

  t.test(`on ${platform}: the CLI says so in one line and exits 125; --help and completion still work`, async (t) => {
    for (const args of [['run', '--', '/bin/true'], ['doctor'], ['machine', 'list'], ['images']]) {
      const r = fake(platform, [bin, ...args]);
      t.equal(r.status, 125, `nsbox ${args.join(' ')} exits 125`);
      t.equal(r.stdout, '', 'nothing on stdout');
      t.match(r.stderr, new RegExp(`^nsbox: runs on Linux only \\(this is ${platform}/[^)]+\\)[^\\n]*\\n$`), `one line: ${r.stderr}`);
    }
    const help = fake(platform, [bin, '--help']);
    t.equal(help.status, 0, 'nsbox --help works');
    const completion = fake(platform, [bin, 'completion', 'bash']);
    t.equal(completion.status, 0, 'nsbox completion bash works (a shell setup shared across machines may load it)');
    t.match(completion.stdout, /complete -o filenames -F _nsbox nsbox/);
  });
}

t.test('on Linux on another CPU (ppc64): unsupported too, the addon never loaded', async (t) => {
  const r = fake('linux', ['-e', script], 'ppc64');
  t.equal(r.status, 0, `the child ran to its end (stderr: ${r.stderr})`);
  const out = JSON.parse(r.stdout);
  t.equal(out.probe.supported, false);
  t.match(out.probe.reason, /Linux on x64 and arm64 only \(this is linux\/ppc64\)/);
  t.equal(out.run.code, 'ENOTSUP');
  t.equal(out.spawn.code, 'ENOTSUP');
  t.same(out.nativeLoads, [], 'no native addon was loaded');
});

t.test('on Linux: probe() reports supported with no reason', async (t) => {
  if (process.platform !== 'linux') return t.skip('this host is not Linux');
  const { probe } = require('..');
  const r = await probe();
  t.equal(r.supported, true);
  t.equal(r.reason, null);
  t.equal(r.platform, 'linux');
});
