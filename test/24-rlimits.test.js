// rlimits (setrlimit per container; docker's --ulimit): the limits asked for are the ones the
// container's processes have (read from inside: /proc/self/limits) and the kernel enforces, over the
// profile's defaults; a machine's are its PID 1's and every exec's, under the exec's own; bad names
// and amounts are refused before anything starts; a hard limit above what this process may set fails
// at step rlimits naming the resource, with nothing left behind.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { run, Machine, NsboxError } = require('..');
const { parseRun } = require('../dist/cli');
const { busyboxRootfs, warmUp, assertNoLeaks, machineStateDir } = require('./helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const bin = path.join(__dirname, '..', 'bin', 'nsbox.js');

/** /proc/<pid>/limits text as { 'Max open files': [soft, hard] } (-1: unlimited). */
function parseLimits(text) {
  const out = {};
  for (const line of text.split('\n').slice(1)) {
    const m = /^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)/.exec(line);
    if (m) out[m[1]] = [m[2], m[3]].map((v) => (v === 'unlimited' ? -1 : Number(v)));
  }
  return out;
}

const own = parseLimits(fs.readFileSync('/proc/self/limits', 'utf8'));

/**
 * Whether a container without a user namespace may raise a hard limit over this process's own:
 * CAP_SYS_RESOURCE effective here, in the initial user namespace, and no user namespace for the
 * container (a rootless caller's containers always get one).
 */
function mayRaiseHard() {
  const map = fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/).join(' ');
  const eff = BigInt('0x' + /^CapEff:\s+([0-9a-f]+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
  return map === '0 0 4294967295' && process.geteuid() === 0 && (eff & (1n << 24n)) !== 0n;
}

let before;
t.before(async () => {
  before = await warmUp();
});

t.test('run: the limits given are the process\'s own inside, the defaults stay for the rest, and the kernel enforces them', { skip: noBusybox }, async (t) => {
  const fsizeHard = own['Max file size'][1];
  const r = await run({
    rootfs: bb,
    command: ['cat', '/proc/self/limits'],
    rlimits: {
      nofile: { soft: 100, hard: 200 },
      msgqueue: 4096,
      cpu: { soft: 1000, hard: 2000 },
      fsize: { soft: 1048576, hard: fsizeHard === -1 ? 'unlimited' : fsizeHard },
    },
  });
  t.equal(r.exitCode, 0, r.stderr.toString());
  const inside = parseLimits(r.stdout.toString());
  t.same(inside['Max open files'], [100, 200], 'nofile: { soft, hard }');
  t.same(inside['Max msgqueue size'], [4096, 4096], 'msgqueue: one number is both');
  t.same(inside['Max cpu time'], [1000, 2000], 'cpu');
  t.same(inside['Max file size'], [1048576, fsizeHard], "fsize: 'unlimited' (or Node's own) as the hard limit");
  t.same(inside['Max core file size'], [0, 0], 'core: the app default (0) where none is given');

  // Enforced: a write past fsize's soft limit ends with SIGXFSZ (under an init: the kernel does not
  // kill a pid namespace's PID 1 with a signal it has no handler for, and dd then sees EFBIG).
  const big = await run({ rootfs: bb, init: true, command: ['dd', 'if=/dev/zero', 'of=/tmp/big', 'bs=1024', 'count=2048'], rlimits: { fsize: { soft: 1048576, hard: fsizeHard === -1 ? 'unlimited' : fsizeHard } } });
  t.equal(big.signal, 'SIGXFSZ', 'dd past 1 MiB is killed by SIGXFSZ');
  const small = await run({ rootfs: bb, command: ['dd', 'if=/dev/zero', 'of=/tmp/big', 'bs=1024', 'count=512'], rlimits: { fsize: 1048576 } });
  t.equal(small.exitCode, 0, 'below the limit the same write succeeds');

  // The default nofile is replaced, not added to: one line, the given value.
  const d = await run({ rootfs: bb, command: ['cat', '/proc/self/limits'], rlimits: { core: { soft: 0, hard: 0 }, nofile: 64 } });
  t.same(parseLimits(d.stdout.toString())['Max open files'], [64, 64]);
  await assertNoLeaks(t, before);
});

t.test('bad rlimits: TypeError or RangeError with a Node-style code before anything starts', async (t) => {
  const cases = [
    [{ nofiles: 10 }, TypeError, 'ERR_INVALID_ARG_VALUE', /"rlimits\.nofiles" option is not a known option; did you mean "rlimits\.nofile"/],
    [{ nofile: { soft: 20, hard: 10 } }, RangeError, 'ERR_OUT_OF_RANGE', /"rlimits\.nofile\.soft" is out of range\. It must be at most rlimits\.nofile\.hard \(10\)/],
    [{ nofile: { soft: 'unlimited', hard: 10 } }, RangeError, 'ERR_OUT_OF_RANGE', /rlimits\.nofile\.soft/],
    [{ nofile: -1 }, RangeError, 'ERR_OUT_OF_RANGE', /"rlimits\.nofile"/],
    [{ nofile: 1.5 }, RangeError, 'ERR_OUT_OF_RANGE', /"rlimits\.nofile"/],
    [{ nofile: '10' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"rlimits\.nofile" option must be a number or 'unlimited'/],
    [{ nofile: { soft: 1 } }, TypeError, 'ERR_INVALID_ARG_TYPE', /"rlimits\.nofile\.hard"/],
    [{ nofile: { soft: 1, hard: 2, max: 3 } }, TypeError, 'ERR_INVALID_ARG_VALUE', /"rlimits\.nofile\.max" option is not a known option/],
    [[['nofile', 1, 1]], TypeError, 'ERR_INVALID_ARG_TYPE', /"rlimits" option must be of type object/],
  ];
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-rlimits-bad-'));
  t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  for (const [rlimits, Ctor, code, re] of cases) {
    const label = JSON.stringify(rlimits);
    const e1 = await run({ command: ['/bin/true'], rlimits }).catch((e) => e);
    t.ok(e1 instanceof Ctor, `run ${label}: ${Ctor.name}`);
    t.match(e1, { code, message: re }, `run ${label}`);
    const e2 = await Machine.start({ name: 'bad', rootfs: '/nonexistent', stateDir, rlimits }).catch((e) => e);
    t.match(e2, { name: Ctor.name, code, message: re }, `Machine.start ${label}`);
  }
  t.same(fs.readdirSync(stateDir), [], 'no machine state was made');
  await assertNoLeaks(t, before);
});

t.test('a hard limit above what this process may set: NsboxError at step rlimits naming the resource, or (CAP_SYS_RESOURCE, no user namespace) the limit given', { skip: noBusybox }, async (t) => {
  const nrOpen = Number(fs.readFileSync('/proc/sys/fs/nr_open', 'utf8'));
  const hard = own['Max open files'][1] + 1;
  const refused = hard > nrOpen || !mayRaiseHard();
  const r = await run({ rootfs: bb, command: ['cat', '/proc/self/limits'], rlimits: { msgqueue: 4096, nofile: { soft: 100, hard } } }).catch((e) => e);
  if (refused) {
    t.ok(r instanceof NsboxError, `refused (${process.geteuid() === 0 ? 'no CAP_SYS_RESOURCE in the initial user namespace' : 'rootless'})`);
    t.match(r, { code: 'EPERM', errno: os.constants.errno.EPERM, syscall: 'setrlimit', step: 'rlimits' });
    t.match(r.message, new RegExp(`^setrlimit nofile \\(soft 100, hard ${hard}\\): above (this process's own hard limit ${hard - 1}|fs\\.nr_open)`), 'the message names the resource (the second entry: the record\'s index) and why');
  } else {
    t.equal(r.exitCode, 0, r.stderr && r.stderr.toString());
    t.same(parseLimits(r.stdout.toString())['Max open files'], [100, hard], 'root with CAP_SYS_RESOURCE may raise it');
  }
  await assertNoLeaks(t, before);
});

t.test('CLI --ulimit: docker\'s NAME=SOFT[:HARD], repeatable, -1 is unlimited; seen inside', { skip: noBusybox }, async (t) => {
  t.same(parseRun(['--ulimit', 'nofile=1024:4096', '--ulimit', 'core=-1', '--ulimit', 'nproc=10', '--ulimit', 'stack=unlimited:unlimited', '--', 'true']).options.rlimits, {
    nofile: { soft: 1024, hard: 4096 },
    core: { soft: 'unlimited', hard: 'unlimited' },
    nproc: { soft: 10, hard: 10 },
    stack: { soft: 'unlimited', hard: 'unlimited' },
  }, 'parsed into the rlimits option (HARD is SOFT when left out)');
  t.same(parseRun(['--ulimit', 'nofile=10', '--ulimit', 'nofile=20', '--', 'true']).options.rlimits, { nofile: { soft: 20, hard: 20 } }, 'the last of one resource counts');

  const r = spawnSync(process.execPath, [bin, 'run', '--rootfs', bb, '--ulimit', 'nofile=123:456', '--ulimit', 'msgqueue=8192', '--', 'cat', '/proc/self/limits'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const inside = parseLimits(r.stdout);
  t.same([inside['Max open files'], inside['Max msgqueue size']], [[123, 456], [8192, 8192]]);

  const bad = spawnSync(process.execPath, [bin, 'run', '--rootfs', bb, '--ulimit', 'nofile=300:200', '--', 'true'], { encoding: 'utf8' });
  t.equal(bad.status, 125);
  t.match(bad.stderr, /^nsbox: --ulimit: The value of "rlimits\.nofile\.soft" is out of range/, 'soft above hard: the library\'s RangeError, named after the flag');
});

t.test('machine: PID 1 and every exec get the machine\'s limits; an exec\'s own go over them, resource by resource', { skip: noBusybox }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-rlimits-');
  const m = await Machine.start({ name: 'rl', rootfs: bb, ephemeral: true, stateDir, rlimits: { nofile: 300, cpu: { soft: 1000, hard: 2000 } } });
  t.teardown(async () => {
    await m.stop({ timeout: 5000 }).catch(() => {});
    await m.destroy().catch(() => {});
  });
  const pid1 = parseLimits((await m.run(['cat', '/proc/1/limits'])).stdout.toString());
  t.same([pid1['Max open files'], pid1['Max cpu time']], [[300, 300], [1000, 2000]], "PID 1's");
  t.equal(pid1['Max core file size'][0], 0, "the machine default's core soft limit (0) where none is given");
  const plain = parseLimits((await m.run(['cat', '/proc/self/limits'])).stdout.toString());
  t.same([plain['Max open files'], plain['Max cpu time']], [[300, 300], [1000, 2000]], "an exec: the machine's");
  const over = parseLimits((await m.run(['cat', '/proc/self/limits'], { rlimits: { nofile: { soft: 50, hard: 150 } } })).stdout.toString());
  t.same([over['Max open files'], over['Max cpu time']], [[50, 150], [1000, 2000]], "an exec's nofile over the machine's; cpu still the machine's");
  // Found again (from its state, as another process would): the same limits for its execs.
  const again = await Machine.get('rl', { stateDir });
  const found = parseLimits((await again.run(['cat', '/proc/self/limits'])).stdout.toString());
  t.same(found['Max open files'], [300, 300], 'an exec through Machine.get');
});

t.test('Machine.exec: a hard limit above what this process may set fails the exec at step rlimits; the machine runs on', { skip: noBusybox }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-rlimits-x-');
  const m = await Machine.start({ name: 'rlx', rootfs: bb, ephemeral: true, stateDir });
  t.teardown(async () => {
    await m.stop({ timeout: 5000 }).catch(() => {});
    await m.destroy().catch(() => {});
  });
  // Past fs.nr_open: no caller may set it.
  const nrOpen = Number(fs.readFileSync('/proc/sys/fs/nr_open', 'utf8'));
  const e = await m.run(['true'], { rlimits: { nofile: nrOpen + 1 } }).catch((x) => x);
  t.ok(e instanceof NsboxError);
  t.match(e, { code: 'EPERM', step: 'rlimits', syscall: 'setrlimit', message: new RegExp(`^setrlimit nofile \\(soft ${nrOpen + 1}, hard ${nrOpen + 1}\\): above fs\\.nr_open`) });
  t.throws(() => m.exec(['true'], { rlimits: { bogus: 1 } }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /"rlimits\.bogus"/ }, 'a bad exec option: TypeError before the exec');
  t.equal(await m.state(), 'running');
  t.equal((await m.run(['true'])).exitCode, 0, 'and execs still work');
});

t.test('nothing is left behind by the machine tests', async (t) => {
  await assertNoLeaks(t, before, 'after the machine tests');
});
