// Every failure record, forced: for each row of the step table (native/core/steps.h, every index of
// it) and each step with a default call, the test-only fault point (NSBOX_TEST_FAULT, lib/env.ts;
// native/core/plan.h, fault_at) makes that call fail with EDOM, which no real call there returns,
// through the public API in a profile where the step occurs. The NsboxError must name the step,
// the system call and the path the table gives, and nothing may be left behind. What cannot be
// reached on this host is listed in SKIPPED, with the reason.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { run, createPool, Machine, removeBridge } = require('..');
const { native, STEP, stepCall } = require('../dist/native');
const { busyboxRootfs, warmUp, assertNoLeaks, machineStateDir } = require('./helpers');

const notRoot = process.getuid() !== 0 && 'forcing every step needs root (machines, cgroups, raw plans)';
const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const EDOM = os.constants.errno.EDOM;

const { SKIPPED, cases, profilesFor, rawSpawn, startProfiles } = require('./fault-table');

// The profiles: each starts something that must fail with the fault set, or returns when it started.
let stateDir;
let machine; // a running machine for the exec profiles
let usernsMachine; // and one with a user namespace of its own (made on first use)
let n = 0;
const { profiles: shared } = startProfiles({ rootfs: bb, stateDir: () => stateDir, machineName: () => `fault${n++}` });
const PROFILES = {
  ...shared,
  machineExec: () => machine.run(['/bin/true']),
  machineExecUserns: async () => {
    usernsMachine ??= await Machine.start({ name: 'faults-userns', rootfs: bb, ephemeral: true, stateDir, userns: true }).catch((e) => {
      throw new Error(`the userns machine did not start: ${e.message}`);
    });
    await usernsMachine.run(['/bin/true']);
  },
  machineExecTty: () => machine.run(['/bin/true'], { tty: true, columns: 80, rows: 24 }),
  raw: null, // set below (raw plans, as test/31 makes them)
};

/** What the table says (step, index) reports, with lib/plan.ts's fill-ins for this profile. */
function expected(name, index, profile, err) {
  const { syscall, path: p } = stepCall(STEP[name], index);
  if (name === 'mount') return { step: err.step, syscall: err.syscall, path: err.path }; // OpMeta: checked below
  const fill = {
    '@rootfs': profile === 'raw' ? '/r' : bb,
    '@cwd': '/',
    '@hostname': profile.startsWith('machine') ? `fault${n - 1}` : profile === 'raw' ? 'errmap' : 'faults',
    '@candidate': profile === 'raw' ? 'nothing' : '/bin/true',
    '@cgroup': err.path, // the container's own cgroup: checked by shape below
    '@cgroup.parent': err.path,
    '@enterRoot': err.path, // the machine's PID 1: checked by shape below
  };
  return { step: name, syscall, path: p === undefined ? undefined : (fill[p] ?? p) };
}

// Raw plans for what only exists outside root's public profiles: a cgroup joined by the child (no
// CLONE_INTO_CGROUP) and a user namespace that maps its own creator (the rootless profile).
const rawStaging = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-faults-staging-'));
// The cgroup2 hierarchy (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host).
const cgroup2 = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[f.indexOf('-') + 1] === 'cgroup2')?.[4] ?? '/sys/fs/cgroup';
const rawCgroup = path.join(cgroup2, `nsbox-faults-${process.pid}`);
t.teardown(() => {
  fs.rmSync(rawStaging, { recursive: true, force: true });
  try {
    fs.rmdirSync(rawCgroup);
  } catch {}
});
PROFILES.raw = (name, index) => rawSpawn(name, index, EDOM, rawStaging, rawCgroup);

/** Runs profile with the fault set; the error it threw, or null when the fault point was not reached. */
async function attempt(profile, name, index) {
  // network.setns is the join of a namespace from the reserve: on a busy host the maker thread may
  // not have one ready yet (the clone then makes its own and never reaches the step). Wait for one.
  if (name === 'network.setns') {
    for (let i = 0; i < 500 && native().netnsReserveState().fds.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  }
  process.env.NSBOX_TEST_FAULT = `${name}:${index}:EDOM`;
  try {
    await PROFILES[profile](name, index);
    return null;
  } catch (e) {
    return e;
  } finally {
    delete process.env.NSBOX_TEST_FAULT;
  }
}

const netHost = process.env.NSBOX_FAULTS_NET_HOST === '1';
const which = (cmd) => ['/usr/bin/', '/bin/', '/usr/sbin/', '/sbin/'].map((d) => d + cmd).find((p) => fs.existsSync(p));
const toolEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(LD_PRELOAD|ASAN_OPTIONS|UBSAN_OPTIONS|LSAN_OPTIONS)$/.test(k)));
if (netHost) bridged();
else main();

function main() {
t.test('every step and every row of the table, forced', { skip: notRoot || noBusybox }, async (t) => {
  stateDir = machineStateDir(t, 'nsbox-faults-machines-');
  const before = await warmUp();
  machine = await Machine.start({ name: 'faults-exec', rootfs: bb, ephemeral: true, stateDir });
  const forced = [];
  const skipped = [];
  for (const [name, index] of cases()) {
    const key = `${name} ${index}`;
    if (SKIPPED[key] || SKIPPED[`${name} *`]) {
      skipped.push(key);
      continue;
    }
    const where = profilesFor(name, index);
    let hit = null;
    const misses = [];
    for (const profile of where) {
      const e = await attempt(profile, name, index);
      if (e && e.errno === EDOM) {
        hit = { profile, e };
        break;
      }
      misses.push(`${profile}: ${e ? `${e.code} ${e.step} ${e.message}` : 'started'}`);
    }
    if (!hit) {
      t.fail(`${key}: the fault point was not reached`, { misses });
      continue;
    }
    const { profile, e } = hit;
    const want = expected(name, index, profile, e);
    t.match(e, { name: 'NsboxError', code: 'EDOM' }, `${key} (${profile}): an NsboxError`);
    t.same({ step: e.step, syscall: e.syscall, path: e.path }, want, `${key} (${profile}): ${want.syscall ?? '(a check)'} ${want.path ?? ''}`);
    if (name === 'mount') t.ok(e.step && e.syscall && e.path, `${key}: the op's own step, call and path (OpMeta): ${e.step} ${e.syscall} ${e.path}`);
    if (['@cgroup', '@cgroup.parent'].includes(stepCall(STEP[name], index).path)) t.match(e.path, /^\/sys\/fs\/cgroup\//, `${key}: a cgroup path`);
    if (stepCall(STEP[name], index).path === '@enterRoot') t.match(e.path, /^\/proc\/\d+\/root$/, `${key}: the machine PID 1's root`);
    forced.push(`${key} (${profile})`);
  }
  t.comment(`forced ${forced.length}: ${forced.join(', ')}`);
  t.comment(`skipped ${skipped.length}: ${skipped.join(', ')}`);
  t.ok(forced.length > 80, `${forced.length} (step, index) pairs forced`);
  for (const m of [machine, usernsMachine]) {
    await m?.stop({ timeout: 1000 }).catch(() => {});
    await m?.destroy().catch(() => {});
  }
  await assertNoLeaks(t, before, 'after every forced failure');
});

// The ops of the generated /etc files and of `devices` (step 'mount' records whose OpMeta names
// the op's own step, call and path), each forced: with the template (root) and without it (a user
// namespace), where the binds run by different code (mnt_template.cc, fsops.cc run_op).
t.test("every op of the /etc files and of devices, forced", { skip: notRoot || noBusybox }, async (t) => {
  const { resolveAppOptions } = require('../dist/options');
  const { buildFsOps, OpList } = require('../dist/fsops');
  const { etcBinds } = require('../dist/etc-ops');
  const { closeHostDevices, deviceBinds, hostDevices } = require('../dist/devices');
  const { staging } = require('../dist/runtime');
  const dev = ['/dev/loop0', '/dev/loop-control'].filter((p) => fs.existsSync(p));
  const before = await warmUp();
  let forced = 0;
  for (const userns of [false, true]) {
    const opts = { command: ['/bin/true'], rootfs: bb, hostname: 'faults', devices: dev, ...(userns ? { userns: true } : {}) };
    const o = resolveAppOptions(opts);
    // As basePlan orders them: the list, then the /etc binds, then the device binds (per start).
    const devices = hostDevices(o.devices);
    const after = etcBinds(new OpList(staging()), '/etc-dir', o);
    deviceBinds(after, devices, userns);
    const meta = [...buildFsOps(o, staging(), userns, true, devices).meta, ...after.meta];
    closeHostDevices(devices);
    const mine = meta.map((m, i) => [m, i]).filter(([m]) => m.step === 'etc' || m.step === 'devices');
    t.ok(mine.some(([m]) => m.step === 'etc') && (!dev.length || mine.some(([m]) => m.step === 'devices')), `${userns ? 'userns' : 'template'}: ops of both in the plan`);
    for (const [m, i] of mine) {
      // In the template the remount after a host bind is done with the bind (mount_setattr on its
      // captured copy: mnt_template.cc, merges_remount): its own index is never reached there.
      const merged = !userns && i > 0 && meta[i - 1].step === m.step && meta[i - 1].path === m.path && meta[i - 1].syscall === 'mount' && m.syscall === 'mount';
      process.env.NSBOX_TEST_FAULT = `mount:${i}:EDOM`;
      let e = null;
      try {
        await run(opts);
      } catch (err) {
        e = err;
      } finally {
        delete process.env.NSBOX_TEST_FAULT;
      }
      if (merged) {
        t.equal(e, null, `mount ${i} (template): the remount of ${m.path}, merged into its bind`);
        continue;
      }
      t.same(e && { name: e.name, code: e.code, step: e.step, syscall: e.syscall, path: e.path }, { name: 'NsboxError', code: 'EDOM', step: m.step, syscall: m.syscall, path: m.path }, `mount ${i} (${userns ? 'userns' : 'template'}): ${m.step} ${m.syscall} ${m.path}`);
      forced++;
    }
  }
  t.ok(forced >= 10, `${forced} ops forced`);
  await assertNoLeaks(t, before, 'after the forced /etc and device failures');
});

t.test('NSBOX_TEST_FAULT: a value that names nothing throws', async (t) => {
  const { testFault } = require('../dist/env');
  for (const bad of ['nope:0:EPERM', 'setsid:-1:ENOTANERRNO', 'setsid', 'setsid:x:EPERM']) {
    process.env.NSBOX_TEST_FAULT = bad;
    t.throws(() => testFault(), /NSBOX_TEST_FAULT/, bad);
  }
  process.env.NSBOX_TEST_FAULT = 'exec.pty:3:EPIPE';
  t.same(testFault(), { step: STEP['exec.pty'], index: 3, errno: os.constants.errno.EPIPE });
  delete process.env.NSBOX_TEST_FAULT;
  t.equal(testFault(), undefined, 'unset: none');
});

const noNetTools = !which('unshare') || !which('ip') ? 'needs unshare(1) and ip(8)' : false;
t.test("bridged: network (every index) and stdio 6, in a network namespace made for the test", { skip: notRoot || noBusybox || noNetTools }, (t) =>
  t.spawn('unshare', ['--net', '--', process.execPath, __filename], { env: { ...process.env, NSBOX_FAULTS_NET_HOST: '1' } }));
}

// Run again by main() under unshare --net: the bridge, the veths, the leases' addresses and the
// nf_tables rules are in a namespace that is this process's "host".
function bridged() {
  const { networkStep } = require('../dist/network');
  const BR = `nsbf${process.pid % 100000}`;
  const network = { bridge: BR, dns: ['10.88.0.1'], allow: ['10.88.0.5:80'] };
  const links = () => execFileSync('ip', ['-o', 'link', 'show'], { env: toolEnv }).toString().trim().split('\n').map((l) => l.split(': ')[1].split('@')[0]).sort();
  execFileSync('ip', ['link', 'set', 'lo', 'up'], { env: toolEnv });
  t.teardown(async () => {
    await removeBridge({ bridge: BR }).catch(() => {});
    fs.rmSync(`/run/nsbox/net/${BR}`, { recursive: true, force: true });
  });
  t.test('every call of the bridged set-up, forced', async (t) => {
    const start = () => run({ command: ['/bin/true'], rootfs: bb, network });
    await start(); // the bridge exists from here on
    const before = await warmUp();
    const linksBefore = links();
    const forced = [];
    const force = async (name, index) => {
      process.env.NSBOX_TEST_FAULT = `${name}:${index}:EDOM`;
      try {
        await start();
        return null;
      } catch (e) {
        return e;
      } finally {
        delete process.env.NSBOX_TEST_FAULT;
      }
    };
    // The negative indexes, then each message until the set-up has no more (the fault is not reached).
    for (let index = -5; index < 64; index++) {
      const e = await force('network', index);
      if (!e && index >= 4) break;
      t.ok(e, `network ${index}: the fault point is reached`);
      if (!e) continue;
      t.match(e, { name: 'NsboxError', code: 'EDOM' }, `network ${index}: an NsboxError`);
      const want = networkStep(index);
      t.same({ step: e.step, syscall: e.syscall, path: e.path }, { ...want, path: undefined }, `network ${index}: ${want.step} ${want.syscall}`);
      forced.push(`network ${index}`);
    }
    const e = await force('stdio', 6);
    t.same(e && { code: e.code, step: e.step, syscall: e.syscall, path: e.path }, { code: 'EDOM', step: 'stdio', syscall: 'fcntl', path: undefined }, 'stdio 6: the netlink socket, lifted');
    if (e) forced.push('stdio 6');
    t.comment(`forced ${forced.length}: ${forced.join(', ')}`);
    t.same(links(), linksBefore, 'no link left (veths)');
    t.same(fs.readdirSync(`/run/nsbox/net/${BR}/leases`).filter((f) => !f.startsWith('.')), [], 'no address lease left');
    await assertNoLeaks(t, before, 'after the bridged failures');
  });
}
