// Bad options: a TypeError or RangeError with a Node-style code, thrown before anything starts,
// and nothing left behind.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, spawn, pull, importImage, Machine } = require('..');
const { warmUp, snapshot, assertNoLeaks } = require('./helpers');

const cases = [
  // [what, options, error class, code, message pattern]
  ['options that are not an object', 'ls', TypeError, 'ERR_INVALID_ARG_TYPE', /"options"/],
  ['a missing command', {}, TypeError, 'ERR_INVALID_ARG_TYPE', /"command"/],
  ['a command that is a string', { command: 'ls -l' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"command"/],
  ['an empty command', { command: [] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"command"/],
  ['a command with a number in it', { command: ['ls', 1] }, TypeError, 'ERR_INVALID_ARG_TYPE', /"command\[1\]"/],
  ['a command with an empty argv[0]', { command: [''] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"command\[0\]"/],
  ['a command with a null byte', { command: ['ls\0x'] }, TypeError, 'ERR_INVALID_ARG_VALUE', /null bytes/],
  ['a misspelled option name', { command: ['true'], comand: ['x'] }, TypeError, 'ERR_INVALID_ARG_VALUE', /did you mean "command"/],
  ['a misspelled limit name', { command: ['true'], limits: { memroy: '1M' } }, TypeError, 'ERR_INVALID_ARG_VALUE', /did you mean "limits.memory"/],
  ['a relative rootfs', { command: ['true'], rootfs: 'rootfs' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"rootfs".*absolute/],
  ['a rootfs with ..', { command: ['true'], rootfs: '/srv/../etc' }, TypeError, 'ERR_INVALID_ARG_VALUE', /'\.\.'/],
  ['a rootfs that is a number', { command: ['true'], rootfs: 5 }, TypeError, 'ERR_INVALID_ARG_TYPE', /"rootfs"/],
  ['a relative cwd', { command: ['true'], cwd: 'tmp' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"cwd"/],
  ['a cwd that climbs out with ..', { command: ['true'], cwd: '/../../etc' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"cwd"/],
  ['an empty hostname', { command: ['true'], hostname: '' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"hostname"/],
  ['a hostname with a space', { command: ['true'], hostname: 'a b' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"hostname"/],
  ['a hostname over 64 characters', { command: ['true'], hostname: 'a'.repeat(65) }, TypeError, 'ERR_INVALID_ARG_VALUE', /"hostname"/],
  ['a hostname starting with a hyphen', { command: ['true'], hostname: '-x' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"hostname"/],
  ['readonly as a string', { command: ['true'], readonly: 'yes' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"readonly"/],
  ['env as an array', { command: ['true'], env: ['A=1'] }, TypeError, 'ERR_INVALID_ARG_TYPE', /"env"/],
  ['an env value that is a number', { command: ['true'], env: { A: 1 } }, TypeError, 'ERR_INVALID_ARG_TYPE', /"env.A"/],
  ['an env key with =', { command: ['true'], env: { 'A=B': '1' } }, TypeError, 'ERR_INVALID_ARG_VALUE', /env key/],
  ['a negative uid', { command: ['true'], user: { uid: -1, gid: 0 } }, RangeError, 'ERR_OUT_OF_RANGE', /"user.uid"/],
  ['a NaN gid', { command: ['true'], user: { uid: 0, gid: NaN } }, RangeError, 'ERR_OUT_OF_RANGE', /"user.gid"/],
  ['a fractional uid', { command: ['true'], user: { uid: 1.5, gid: 0 } }, RangeError, 'ERR_OUT_OF_RANGE', /"user.uid"/],
  ['a user without gid', { command: ['true'], user: { uid: 0 } }, TypeError, 'ERR_INVALID_ARG_TYPE', /"user.gid"/],
  ['mounts that are not an array', { command: ['true'], mounts: {} }, TypeError, 'ERR_INVALID_ARG_TYPE', /"mounts"/],
  ['a mount of unknown type', { command: ['true'], mounts: [{ type: 'nfs', target: '/x' }] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"mounts\[0\].type"/],
  ['a mount target of ..', { command: ['true'], mounts: [{ type: 'tmpfs', target: '..' }] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"mounts\[0\].target"/],
  ['a mount target climbing with ..', { command: ['true'], mounts: [{ type: 'bind', source: '/etc', target: '/x/../../etc' }] }, TypeError, 'ERR_INVALID_ARG_VALUE', /'\.\.'/],
  ['a mount target of /', { command: ['true'], mounts: [{ type: 'tmpfs', target: '/' }] }, TypeError, 'ERR_INVALID_ARG_VALUE', /must not be '\/'/],
  ['a relative bind source', { command: ['true'], mounts: [{ type: 'bind', source: 'etc', target: '/x' }] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"mounts\[0\].source"/],
  ['a tmpfs size of 12X', { command: ['true'], mounts: [{ type: 'tmpfs', target: '/x', size: '12X' }] }, RangeError, 'ERR_INVALID_ARG_VALUE', /"mounts\[0\].size"/],
  ['a negative tmpfs size', { command: ['true'], mounts: [{ type: 'tmpfs', target: '/x', size: -1 }] }, RangeError, 'ERR_OUT_OF_RANGE', /size/],
  ['an unknown mount option', { command: ['true'], mounts: [{ type: 'bind', source: '/etc', target: '/x', ro: true }] }, TypeError, 'ERR_INVALID_ARG_VALUE', /did you mean "mounts\[0\].readonly"|not a known option/],
  ['an unknown network mode', { command: ['true'], network: 'bridge0' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"network"/],
  ['a negative timeout', { command: ['true'], timeout: -5 }, RangeError, 'ERR_OUT_OF_RANGE', /"timeout"/],
  ['a NaN timeout', { command: ['true'], timeout: NaN }, RangeError, 'ERR_OUT_OF_RANGE', /"timeout"/],
  ['a zero timeout', { command: ['true'], timeout: 0 }, RangeError, 'ERR_OUT_OF_RANGE', /"timeout"/],
  ['a timeout as a string', { command: ['true'], timeout: '5s' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"timeout"/],
  ['input as a number', { command: ['true'], input: 5 }, TypeError, 'ERR_INVALID_ARG_TYPE', /"input"/],
  ['an unknown stdio mode', { command: ['true'], stdio: 'pty' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"stdio"/],
  ['init as a number', { command: ['true'], init: 1 }, TypeError, 'ERR_INVALID_ARG_TYPE', /"init"/],
  ['a negative maxOutput', { command: ['true'], maxOutput: -1 }, RangeError, 'ERR_OUT_OF_RANGE', /"maxOutput"/],
  ['signal that is not an AbortSignal', { command: ['true'], signal: {} }, TypeError, 'ERR_INVALID_ARG_TYPE', /"signal"/],
  ['zero memory', { command: ['true'], limits: { memory: 0 } }, RangeError, 'ERR_OUT_OF_RANGE', /"limits.memory"/],
  ['negative memory', { command: ['true'], limits: { memory: -1 } }, RangeError, 'ERR_OUT_OF_RANGE', /"limits.memory"/],
  ["memory '12X'", { command: ['true'], limits: { memory: '12X' } }, RangeError, 'ERR_INVALID_ARG_VALUE', /"limits.memory"/],
  ['NaN memory', { command: ['true'], limits: { memory: NaN } }, RangeError, 'ERR_OUT_OF_RANGE', /"limits.memory"/],
  ['memoryHigh above memory', { command: ['true'], limits: { memory: '32M', memoryHigh: '64M' } }, RangeError, 'ERR_OUT_OF_RANGE', /"limits.memoryHigh"/],
  ["memoryHigh '1Q'", { command: ['true'], limits: { memoryHigh: '1Q' } }, RangeError, 'ERR_INVALID_ARG_VALUE', /"limits.memoryHigh"/],
  ['zero pids', { command: ['true'], limits: { pids: 0 } }, RangeError, 'ERR_OUT_OF_RANGE', /"limits.pids"/],
  ['negative cpu', { command: ['true'], limits: { cpu: -0.5 } }, RangeError, 'ERR_OUT_OF_RANGE', /"limits.cpu"/],
  ['more CPUs than exist in cpuset', { command: ['true'], limits: { cpuset: '0-4095' } }, RangeError, 'ERR_OUT_OF_RANGE', /"limits.cpuset"/],
  ['a malformed cpuset', { command: ['true'], limits: { cpuset: 'all' } }, RangeError, 'ERR_INVALID_ARG_VALUE', /"limits.cpuset"/],
  ['an unknown capability name', { command: ['true'], capabilities: { add: ['NET_RWA'] } }, TypeError, 'ERR_INVALID_ARG_VALUE', /did you mean 'CAP_NET_RAW'/],
  ['capabilities.drop as a string', { command: ['true'], capabilities: { drop: 'ALL' } }, TypeError, 'ERR_INVALID_ARG_TYPE', /"capabilities.drop"/],
  ['an unknown capabilities key', { command: ['true'], capabilities: { remove: [] } }, TypeError, 'ERR_INVALID_ARG_VALUE', /"capabilities.remove"/],
  ['a relative cgroupParent', { command: ['true'], cgroupParent: 'my.slice' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"cgroupParent"/],
  ['a cpuWeight out of range', { command: ['true'], limits: { cpuWeight: 20000 } }, RangeError, 'ERR_OUT_OF_RANGE', /"limits.cpuWeight"/],
  // Images (docs/images.md): every companion of `image` is checked with it, before a store is read.
  ['an image that is a number', { image: 5 }, TypeError, 'ERR_INVALID_ARG_TYPE', /"image"/],
  ['an empty image', { image: '' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"image"/],
  ['an image with a space', { image: 'busy box' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"image"/],
  ['an image with an upper-case repository', { image: 'Bad/Name', pull: 'never' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"image".*repository component "Bad"/],
  ['an image with a malformed digest', { image: 'busybox@sha256:zz', pull: 'never' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"image".*digest/],
  ['image and rootfs together', { image: 'busybox', rootfs: '/' }, TypeError, 'ERR_INCOMPATIBLE_OPTION_PAIR', /"image".*"rootfs"/],
  ['tty as a string', { command: ['true'], tty: 'yes' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"tty"/],
  ['tty with stdio inherit', { command: ['true'], tty: true, stdio: 'inherit' }, TypeError, 'ERR_INCOMPATIBLE_OPTION_PAIR', /"tty".*"stdio"/],
  ['tty with stdio ignore', { command: ['true'], tty: true, stdio: 'ignore' }, TypeError, 'ERR_INCOMPATIBLE_OPTION_PAIR', /"tty".*"stdio"/],
  ['columns without tty', { command: ['true'], columns: 80 }, TypeError, 'ERR_INVALID_ARG_VALUE', /"columns".*tty: true/],
  ['rows without tty', { command: ['true'], tty: false, rows: 24 }, TypeError, 'ERR_INVALID_ARG_VALUE', /"rows".*tty: true/],
  ['a tty of 0 columns', { command: ['true'], tty: true, columns: 0 }, RangeError, 'ERR_OUT_OF_RANGE', /"columns"/],
  ['a tty of 65536 rows', { command: ['true'], tty: true, rows: 65536 }, RangeError, 'ERR_OUT_OF_RANGE', /"rows"/],
  ['a tty of fractional columns', { command: ['true'], tty: true, columns: 80.5 }, RangeError, 'ERR_OUT_OF_RANGE', /"columns"/],
  ['tty rows as a string', { command: ['true'], tty: true, rows: '24' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"rows"/],
  ['an unknown pull policy', { image: 'busybox', pull: 'sometimes' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"pull"/],
  ['pull as a boolean', { image: 'busybox', pull: true }, TypeError, 'ERR_INVALID_ARG_TYPE', /"pull"/],
  ['pull without an image', { command: ['true'], pull: 'never' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"pull".*only used together with "image"/],
  ['an empty storeDir', { image: 'busybox', storeDir: '' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"storeDir"/],
  ['a relative storeDir', { image: 'busybox', storeDir: 'images' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"storeDir".*absolute/],
  ['a storeDir with ..', { image: 'busybox', storeDir: '/var/lib/../images' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"storeDir".*'\.\.'/],
  ['storeDir without an image', { command: ['true'], storeDir: '/tmp' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"storeDir".*only used together/],
  ['an entrypoint that is a string', { image: 'busybox', entrypoint: '/bin/sh -c' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"entrypoint"/],
  ['an entrypoint with a number', { image: 'busybox', entrypoint: ['/bin/sh', 1] }, TypeError, 'ERR_INVALID_ARG_TYPE', /"entrypoint\[1\]"/],
  ['an entrypoint with an empty argv[0]', { image: 'busybox', entrypoint: [''] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"entrypoint\[0\]"/],
  ['an entrypoint with a null byte', { image: 'busybox', entrypoint: ['/bin/sh\0x'] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"entrypoint\[0\]".*null bytes/],
  ['insecureRegistries as a string', { image: 'busybox', insecureRegistries: 'reg:5000' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"insecureRegistries"/],
  ['insecureRegistries with a number', { image: 'busybox', insecureRegistries: [5000] }, TypeError, 'ERR_INVALID_ARG_TYPE', /"insecureRegistries\[0\]"/],
  ['insecureRegistries with a URL', { image: 'reg:5000/app', insecureRegistries: ['http://reg:5000/'] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"insecureRegistries\[0\]".*without a scheme/],
  ['insecureRegistries with an empty host', { image: 'busybox', insecureRegistries: [''] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"insecureRegistries\[0\]"/],
  ['maxImageSize on a container (a pull() option)', { image: 'busybox', maxImageSize: 1 << 30 }, TypeError, 'ERR_INVALID_ARG_VALUE', /"maxImageSize".*not a known option/],
  ['a rootSize of 12X', { image: 'busybox', rootSize: '12X' }, RangeError, 'ERR_INVALID_ARG_VALUE', /"rootSize"/],
  ['a rootSize under 1 MiB', { image: 'busybox', rootSize: 4096 }, RangeError, 'ERR_OUT_OF_RANGE', /"rootSize"/],
];

let before;
t.before(async () => {
  before = await warmUp();
});

for (const [what, opts, Cls, code, msg] of cases) {
  t.test(`${what} is rejected before anything starts`, async (t) => {
    t.throws(() => spawn(opts), { constructor: Cls, code, message: msg }, 'spawn() throws synchronously');
    await t.rejects(run(opts), { constructor: Cls, code, message: msg }, 'run() rejects');
  });
}

t.test('pull(), importImage() and Machine.start(): bad image options before a store, a state or a connection exists', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-imgopts-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const storeDir = path.join(dir, 'store');
  const stateDir = path.join(dir, 'state');
  // Nothing listens on port 1: a call that got past its checks fails with ECONNREFUSED (an
  // NsboxError), an import with ENOENT; neither is the TypeError/RangeError asserted.
  const pulls = [
    [{ maxImageSize: -1 }, RangeError, 'ERR_OUT_OF_RANGE', /"maxImageSize"/],
    [{ maxImageSize: 0 }, RangeError, 'ERR_OUT_OF_RANGE', /"maxImageSize"/],
    [{ maxImageSize: 1.5 }, RangeError, 'ERR_OUT_OF_RANGE', /"maxImageSize"/],
    [{ maxImageSize: NaN }, RangeError, 'ERR_OUT_OF_RANGE', /"maxImageSize"/],
    [{ maxImageSize: Infinity }, RangeError, 'ERR_OUT_OF_RANGE', /"maxImageSize"/],
    [{ maxImageSize: 2 ** 53 }, RangeError, 'ERR_OUT_OF_RANGE', /"maxImageSize"/],
    [{ maxImageSize: '1G' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"maxImageSize"/],
    [{ insecureRegistries: '127.0.0.1:1' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"insecureRegistries"/],
    [{ insecureRegistries: [null] }, TypeError, 'ERR_INVALID_ARG_TYPE', /"insecureRegistries\[0\]"/],
    [{ insecureRegistries: ['https://127.0.0.1:1'] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"insecureRegistries\[0\]"/],
    [{ storeDir: '' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"storeDir"/],
    [{ storeDir: 'relative/store' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"storeDir".*absolute/],
    [{ storeDir: 42 }, TypeError, 'ERR_INVALID_ARG_TYPE', /"storeDir"/],
    [{ storeDir, entrypoint: ['/bin/sh'] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"entrypoint".*not a known option/],
    [{ storeDir, pull: 'never' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"pull".*not a known option/],
  ];
  for (const [o, Cls, code, msg] of pulls) {
    const what = JSON.stringify(o, (k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
    await t.rejects(pull('127.0.0.1:1/app:1', { storeDir, ...o }), { constructor: Cls, code, message: msg }, `pull ${what}`);
    await t.rejects(importImage(path.join(dir, 'no-such-archive.tar'), { storeDir, ...o }), { constructor: Cls, code, message: msg }, `importImage ${what}`);
  }
  await t.rejects(pull('Bad/Name', { storeDir }), { constructor: TypeError, code: 'ERR_INVALID_ARG_VALUE' }, 'pull of a bad reference');
  await t.rejects(importImage(dir, { storeDir, tag: 'Bad/Name' }), { constructor: TypeError, code: 'ERR_INVALID_ARG_VALUE' }, 'importImage with a bad tag');
  const machines = [
    [{ image: 5 }, TypeError, 'ERR_INVALID_ARG_TYPE', /"image"/],
    [{ image: 'Bad/Name' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"image"/],
    [{ image: 'busybox', rootfs: '/' }, TypeError, 'ERR_INCOMPATIBLE_OPTION_PAIR', /"rootfs"/],
    [{ image: 'busybox', pull: 'often' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"pull"/],
    [{ image: 'busybox', storeDir: 'rel' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"storeDir"/],
    [{ image: 'busybox', insecureRegistries: ['a/b'] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"insecureRegistries\[0\]"/],
    [{ image: 'busybox', entrypoint: ['/bin/sh'] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"entrypoint".*not a known option/],
    [{ image: 'busybox', maxImageSize: 1 }, TypeError, 'ERR_INVALID_ARG_VALUE', /"maxImageSize".*not a known option/],
    [{ rootfs: '/', pull: 'never' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"pull".*only used together/],
  ];
  for (const [o, Cls, code, msg] of machines) {
    await t.rejects(Machine.start({ name: 'bad-image', stateDir, storeDir: o.storeDir ?? (o.image ? storeDir : undefined), ...o }), { constructor: Cls, code, message: msg }, `Machine.start ${JSON.stringify(o)}`);
  }
  t.same(fs.readdirSync(dir), [], 'no store and no machine state was made');
});

t.test('sizes accept numbers and K/M/G strings', async (t) => {
  const { parseSize } = require('../dist/options');
  t.equal(parseSize('x', 4096), 4096);
  t.equal(parseSize('x', '512K'), 512 * 1024);
  t.equal(parseSize('x', '256M'), 256 * 1024 * 1024);
  t.equal(parseSize('x', '2G'), 2 * 1024 ** 3);
  t.equal(parseSize('x', '1.5g'), 1.5 * 1024 ** 3);
  t.equal(parseSize('x', '64MiB'), 64 * 1024 * 1024);
});

t.test('nothing was created by any rejected call', async (t) => {
  await assertNoLeaks(t, before, 'after every bad option');
});
