// The two speed paths of an app container and what they must not change: network and IPC namespaces
// made ahead (the reserves, native/glue/reserve.cc) and clones run off the JS thread while other containers
// are in flight (run() through spawnAsync). Each container must still get a network namespace of its
// own, errors and aborts must still leave nothing behind, and Node must stay as it was. Also the op
// list a run's options give, made and converted once (lib/plan.ts fsOpsFor): each set of options must
// still get its own mounts, and the host's state is looked up every time.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const { run, spawn, Machine } = require('..');
const { native } = require('../dist/native');
const { busyboxRootfs, warmUp, assertNoLeaks, isRoot, machineStateDir, noCgroup } = require('./helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const notRoot = isRoot() ? false : 'the reserve and the off-thread clone are used by root in the initial user namespace only';
const notX64 = process.arch === 'x64' ? false : 'the vfork-style clone both paths need is x86_64 only';
const fastPaths = noBusybox || notRoot || notX64 || (process.env.NSBOX_FORK_CLONE ? 'NSBOX_FORK_CLONE turns the off-thread clone off' : false);

const hostNetns = fs.readlinkSync('/proc/self/ns/net');
const hostIpcns = fs.readlinkSync('/proc/self/ns/ipc');

async function probeInfo(opts = {}) {
  const r = await run({ rootfs: bb, command: ['/probe', 'info'], ...opts });
  if (r.exitCode !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout.toString());
}

/** Counts the calls of the addon's spawn and spawnAsync while fn runs. */
async function countClones(fn) {
  const b = native();
  const orig = { spawn: b.spawn, spawnAsync: b.spawnAsync };
  const n = { spawn: 0, spawnAsync: 0 };
  b.spawn = function (...a) {
    n.spawn++;
    return orig.spawn.apply(this, a);
  };
  b.spawnAsync = function (...a) {
    n.spawnAsync++;
    return orig.spawnAsync.apply(this, a);
  };
  try {
    await fn();
  } finally {
    Object.assign(b, orig);
  }
  return n;
}

/** Waits until the reserve is full and idle; returns the namespaces it holds ('net:[inode]'). */
async function reserveFull() {
  for (let i = 0; i < 500; i++) {
    const st = native().netnsReserveState();
    if (!st.busy && st.fds.length === st.target) return st.fds.map((fd) => fs.readlinkSync(`/proc/self/fd/${fd}`));
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error('the reserve did not fill up');
}

let before;
t.before(async () => {
  before = await warmUp();
});

/** lo's rx packet count at the start of a container, and after it sent one datagram over lo. */
async function loCounters() {
  const r = await run({
    rootfs: bb,
    command: ['/bin/sh', '-c', 'grep lo: /proc/net/dev; /probe connect udp 127.0.0.1 9 >/dev/null; grep lo: /proc/net/dev'],
  });
  if (r.exitCode !== 0) throw new Error(`sh failed: ${r.stderr}`);
  const [a, b] = r.stdout.toString().trim().split('\n').map((l) => Number(l.split(':')[1].trim().split(/\s+/)[1]));
  return { start: a, after: b };
}

t.test('loopback containers back to back and 16 at a time each start in a fresh network namespace, lo up', { skip: fastPaths }, async (t) => {
  // Namespace inode numbers are recycled once a namespace is freed, so freshness is shown by lo's
  // counters: each container sends over lo, so a namespace used twice would start with packets.
  const seen = [];
  for (let i = 0; i < 20; i++) {
    seen.push(await loCounters());
    // Give the reserve time to refill, so that most of these join a namespace made ahead.
    await new Promise((r) => setTimeout(r, 5));
  }
  for (let round = 0; round < 3; round++) seen.push(...(await Promise.all(Array.from({ length: 16 }, () => loCounters()))));
  t.equal(seen.filter((c) => c.start === 0).length, seen.length, `all ${seen.length} containers found lo with no packet received yet`);
  t.equal(seen.filter((c) => c.after >= 1).length, seen.length, 'and each one saw its own datagram arrive on lo');
  const infos = await Promise.all(Array.from({ length: 4 }, () => probeInfo()));
  t.ok(infos.every((i) => JSON.stringify(i.net) === JSON.stringify([{ name: 'lo', up: true }])), 'only lo, and it is up');
  const st = native().netnsReserveState();
  t.equal(st.failures, 0, 'the reserve made its namespaces without a failure');
  t.equal(st.target, 2, 'the reserve is on, with its default size');
});

t.test('a loopback container joins a namespace the reserve held, and the reserve lets go of it', { skip: fastPaths }, async (t) => {
  await run({ rootfs: bb, command: ['/bin/true'] }); // starts the reserve's thread
  const held = await reserveFull();
  const c = spawn({ rootfs: bb, command: ['/probe', 'sleep', '30'], stdio: 'ignore' });
  const ns = fs.readlinkSync(`/proc/${c.pid}/ns/net`);
  t.ok(held.includes(ns), `the container's namespace ${ns} is one the reserve held (${held.join(', ')})`);
  const after = native().netnsReserveState().fds.map((fd) => fs.readlinkSync(`/proc/self/fd/${fd}`));
  t.notOk(after.includes(ns), 'the reserve no longer holds it (used once)');
  c.kill();
  await c.wait();
});

t.test('16 containers alive at once are in 16 different network namespaces', { skip: fastPaths }, async (t) => {
  const cs = [];
  for (let i = 0; i < 16; i++) {
    cs.push(spawn({ rootfs: bb, command: ['/probe', 'sleep', '30'], stdio: 'ignore' }));
    if (i % 4 === 0) await new Promise((r) => setTimeout(r, 3)); // some from the reserve, some not
  }
  const ids = cs.map((c) => fs.readlinkSync(`/proc/${c.pid}/ns/net`));
  t.equal(new Set(ids).size, 16, '16 distinct namespaces');
  t.notOk(ids.includes(hostNetns), "none of them is Node's");
  for (const c of cs) c.kill();
  await Promise.all(cs.map((c) => c.wait()));
});

t.test("a namespace made ahead is used once: Node holds no network namespace but the reserve's", { skip: fastPaths }, async (t) => {
  for (let i = 0; i < 10; i++) await probeInfo();
  await Promise.all(Array.from({ length: 16 }, () => probeInfo()));
  await new Promise((r) => setTimeout(r, 50));
  const st = native().netnsReserveState();
  const netFds = fs
    .readdirSync('/proc/self/fd')
    .filter((f) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${f}`).startsWith('net:');
      } catch {
        return false;
      }
    })
    .map(Number);
  t.same(
    netFds.filter((f) => !st.fds.includes(f)),
    [],
    'every network namespace fd Node holds is one of the reserve (a used one is closed after its clone)',
  );
  t.ok(st.fds.length <= st.target, 'the reserve holds at most its size');
});

t.test("'none', 'host' and userns containers do not take from the reserve", { skip: fastPaths }, async (t) => {
  await new Promise((r) => setTimeout(r, 20));
  const fill = native().netnsReserveState().fds.join();
  t.same((await probeInfo({ network: 'none' })).net, [{ name: 'lo', up: false }], "'none': lo is down (a namespace of the clone's own)");
  t.equal((await probeInfo({ network: 'host' })).netns, hostNetns, "'host' is Node's namespace");
  const u = await probeInfo({ userns: true });
  t.not(u.netns, hostNetns, 'userns: a network namespace of its own (owned by its user namespace)');
  t.equal(native().netnsReserveState().fds.join(), fill, 'the reserve was not touched');
});

/** The probe's view of its IPC namespace: the System V objects in it, before it leaves a queue there. */
async function ipcInfo(opts = {}) {
  const r = await run({ rootfs: bb, command: ['/probe', 'ipc'], ...opts });
  if (r.exitCode !== 0) throw new Error(`probe ipc failed: ${r.stderr}`);
  return JSON.parse(r.stdout.toString());
}

t.test('containers back to back and 16 at a time each start in an empty IPC namespace of their own', { skip: fastPaths }, async (t) => {
  // Each container leaves a message queue behind in its namespace: one used twice would show it.
  const seen = [];
  for (let i = 0; i < 20; i++) {
    seen.push(await ipcInfo());
    await new Promise((r) => setTimeout(r, 5)); // most of these join a namespace made ahead
  }
  for (let round = 0; round < 3; round++) seen.push(...(await Promise.all(Array.from({ length: 16 }, () => ipcInfo()))));
  t.equal(seen.filter((s) => s.msg === 0 && s.shm === 0 && s.sem === 0).length, seen.length, `all ${seen.length} containers found no System V object`);
  t.ok(seen.every((s) => s.made >= 0 && s.ns !== hostIpcns), "each made its queue, none in Node's namespace");
  const st = native().ipcnsReserveState();
  t.equal(st.failures, 0, 'the IPC reserve made its namespaces without a failure');
  t.equal(st.target, 2, 'the IPC reserve is on, with its default size');
});

t.test('a container joins an IPC namespace the reserve held, used once; userns containers make their own', { skip: fastPaths }, async (t) => {
  await run({ rootfs: bb, command: ['/bin/true'] });
  let held = [];
  for (let i = 0; i < 500; i++) {
    const st = native().ipcnsReserveState();
    if (!st.busy && st.fds.length === st.target) {
      held = st.fds.map((fd) => fs.readlinkSync(`/proc/self/fd/${fd}`));
      break;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  t.equal(held.length, 2, 'the IPC reserve filled up');
  const c = spawn({ rootfs: bb, command: ['/probe', 'sleep', '30'], stdio: 'ignore', network: 'host' });
  const ns = fs.readlinkSync(`/proc/${c.pid}/ns/ipc`);
  t.ok(held.includes(ns), `a container with network 'host' too: its IPC namespace ${ns} is one the reserve held`);
  t.notOk(native().ipcnsReserveState().fds.map((fd) => fs.readlinkSync(`/proc/self/fd/${fd}`)).includes(ns), 'the reserve no longer holds it');
  c.kill();
  await c.wait();
  await new Promise((r) => setTimeout(r, 20));
  const fill = native().ipcnsReserveState().fds.join();
  const u = await ipcInfo({ userns: true });
  t.ok(u.msg === 0 && u.ns !== hostIpcns, 'userns: an empty IPC namespace of its own (owned by its user namespace)');
  t.equal(native().ipcnsReserveState().fds.join(), fill, 'the reserve was not touched');
  const ipcFds = fs.readdirSync('/proc/self/fd').filter((f) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${f}`).startsWith('ipc:');
    } catch {
      return false;
    }
  });
  t.same(ipcFds.map(Number).filter((f) => !native().ipcnsReserveState().fds.includes(f)), [], 'every IPC namespace fd Node holds is one of the reserve');
});

t.test('NSBOX_IPCNS_RESERVE=0 turns the IPC reserve off; containers still get an empty IPC namespace', { skip: fastPaths }, async (t) => {
  const script = `
    const fs = require('fs');
    const { run } = require(${JSON.stringify(require.resolve('..'))});
    const { native } = require(${JSON.stringify(require.resolve('../dist/native'))});
    (async () => {
      const seen = [];
      for (let i = 0; i < 3; i++) seen.push(JSON.parse((await run({ rootfs: ${JSON.stringify(bb)}, command: ['/probe', 'ipc'] })).stdout.toString()));
      // The maker thread may be refilling the network namespace reserve (busy is one flag for both kinds).
      for (let i = 0; i < 1000 && native().ipcnsReserveState().busy; i++) await new Promise((r) => setTimeout(r, 5));
      const held = fs.readdirSync('/proc/self/fd').filter((f) => { try { return fs.readlinkSync('/proc/self/fd/' + f).startsWith('ipc:'); } catch { return false; } });
      console.log(JSON.stringify({ seen, state: native().ipcnsReserveState(), net: native().netnsReserveState().target, held: held.length }));
    })();`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, NSBOX_IPCNS_RESERVE: '0' } }).toString());
  t.ok(out.seen.every((s) => s.msg === 0 && s.made >= 0 && s.ns !== hostIpcns), 'each container: an empty IPC namespace, not Node\'s');
  t.same(out.state, { fds: [], busy: false, target: 0, failures: 0 }, 'the IPC reserve is off');
  t.equal(out.net, 2, 'the network namespace reserve is not');
  t.equal(out.held, 0, 'the process holds no IPC namespace');
});

t.test('reserve sizes that are not a whole number from 0 to 64 leave the default of 2', { skip: fastPaths }, async (t) => {
  for (const [net, ipc] of [['abc', '65'], ['-1', '2.5'], ['', ' 3']]) {
    const script = `
      const { run } = require(${JSON.stringify(require.resolve('..'))});
      const { native } = require(${JSON.stringify(require.resolve('../dist/native'))});
      (async () => {
        const r = await run({ rootfs: ${JSON.stringify(bb)}, command: ['/bin/true'] });
        console.log(JSON.stringify({ code: r.exitCode, net: native().netnsReserveState().target, ipc: native().ipcnsReserveState().target }));
      })();`;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, NSBOX_NETNS_RESERVE: net, NSBOX_IPCNS_RESERVE: ipc } }).toString());
    t.same(out, { code: 0, net: 2, ipc: 2 }, `NSBOX_NETNS_RESERVE=${JSON.stringify(net)}, NSBOX_IPCNS_RESERVE=${JSON.stringify(ipc)}: a container runs, both reserves at 2`);
  }
});

t.test('NSBOX_NETNS_RESERVE=0 turns the reserve off; containers still get their own namespace', { skip: fastPaths }, async (t) => {
  // Three containers alive at once (namespace inode numbers are recycled once one is freed), each
  // asked for its lo counters too (zero in a fresh namespace).
  const script = `
    const fs = require('fs');
    const { run, spawn } = require(${JSON.stringify(require.resolve('..'))});
    const { native } = require(${JSON.stringify(require.resolve('../dist/native'))});
    (async () => {
      const cs = [0, 1, 2].map(() => spawn({ rootfs: ${JSON.stringify(bb)}, command: ['/probe', 'sleep', '30'], stdio: 'ignore' }));
      const ids = cs.map((c) => fs.readlinkSync('/proc/' + c.pid + '/ns/net'));
      for (const c of cs) c.kill();
      await Promise.all(cs.map((c) => c.wait()));
      const r = await run({ rootfs: ${JSON.stringify(bb)}, command: ['/bin/sh', '-c', 'grep lo: /proc/net/dev'] });
      const loRx = Number(r.stdout.toString().split(':')[1].trim().split(/\\s+/)[1]);
      const held = fs.readdirSync('/proc/self/fd').filter((f) => { try { return fs.readlinkSync('/proc/self/fd/' + f).startsWith('net:'); } catch { return false; } });
      console.log(JSON.stringify({ ids, loRx, state: native().netnsReserveState(), held: held.length }));
    })();`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, NSBOX_NETNS_RESERVE: '0' } }).toString());
  t.equal(new Set(out.ids).size, 3, 'three containers alive at once, three distinct namespaces');
  t.notOk(out.ids.includes(hostNetns), "none is Node's");
  t.equal(out.loRx, 0, 'a fresh namespace: nothing received on lo yet');
  t.same(out.state, { fds: [], busy: false, target: 0, failures: 0 }, 'the reserve is off');
  t.equal(out.held, 0, 'the process holds no network namespace');
});

t.test('run() with others in flight clones off the JS thread; alone it clones on it', { skip: fastPaths }, async (t) => {
  const alone = await countClones(async () => {
    for (let i = 0; i < 5; i++) await run({ rootfs: bb, command: ['/bin/true'] });
  });
  t.same(alone, { spawn: 5, spawnAsync: 0 }, 'back to back: every clone on the JS thread');
  const together = await countClones(async () => {
    const rs = await Promise.all(Array.from({ length: 16 }, (_, i) => run({ rootfs: bb, command: ['/bin/sh', '-c', `exit ${i}`] })));
    t.same(rs.map((r) => r.exitCode), Array.from({ length: 16 }, (_, i) => i), 'each run reports its own exit status');
  });
  t.equal(together.spawn + together.spawnAsync, 16, '16 clones');
  t.ok(together.spawnAsync >= 14, `16 at once: at least 14 off the JS thread (${together.spawnAsync})`);
  t.equal(native().dumpable(), 1, 'Node is still dumpable after clones on several threads');
});

t.test('off-thread clones that fail reject with the same errors and leave nothing', { skip: fastPaths }, async (t) => {
  const n = await countClones(async () => {
    const runs = [];
    for (let i = 0; i < 16; i++) {
      runs.push(i % 4 === 1 ? run({ rootfs: bb, command: ['/no/such/command'] }) : i % 4 === 3 ? run({ rootfs: bb, command: ['/probe', 'info'], cwd: '/no/such/dir' }) : run({ rootfs: bb, command: ['/bin/true'] }));
    }
    const settled = await Promise.allSettled(runs);
    for (let i = 0; i < 16; i++) {
      const s = settled[i];
      if (i % 4 === 1) {
        t.equal(s.status, 'rejected', `run ${i} with a missing command rejects`);
        t.match(s.reason, { name: 'NsboxError', code: 'ENOENT', step: 'exec', path: '/no/such/command' });
      } else if (i % 4 === 3) {
        t.equal(s.status, 'rejected', `run ${i} with a missing cwd rejects`);
        t.match(s.reason, { name: 'NsboxError', code: 'ENOENT', step: 'cwd' });
      } else {
        t.equal(s.status, 'fulfilled', `run ${i} succeeds`);
        t.equal(s.value.exitCode, 0);
      }
    }
  });
  t.ok(n.spawnAsync > 0, `some of them were cloned off the JS thread (${n.spawnAsync})`);
  await assertNoLeaks(t, before, 'after failing off-thread clones');
});

t.test("a cgroup that cannot be made fails an off-thread clone as it fails one on the JS thread: step cgroup.create, nothing left", { skip: fastPaths || noCgroup() }, async (t) => {
  // A parent that allows no child cgroup at all (cgroup.max.descendants = 0): mkdir gets EAGAIN.
  const { detectCgroupHost } = require('../dist/cgroup');
  const host = detectCgroupHost();
  const rel = `/nsbox-test-nodesc-${process.pid}`;
  const dir = host.mountPoint + rel;
  fs.mkdirSync(dir);
  t.teardown(() => fs.rmdirSync(dir));
  fs.writeFileSync(`${dir}/cgroup.max.descendants`, '0');
  const want = { name: 'NsboxError', code: 'EAGAIN', step: 'cgroup.create', syscall: 'mkdir' };
  const alone = await countClones(() => t.rejects(run({ rootfs: bb, command: ['/bin/true'], cgroupParent: rel }), want, 'alone (on the JS thread)'));
  t.same(alone, { spawn: 0, spawnAsync: 0 }, 'on the JS thread the mkdir fails before any clone');
  const n = await countClones(async () => {
    const ok = Array.from({ length: 4 }, () => run({ rootfs: bb, command: ['/probe', 'sleep', '0.2'] }));
    const bad = Array.from({ length: 4 }, () => run({ rootfs: bb, command: ['/bin/true'], cgroupParent: rel }));
    for (const s of await Promise.allSettled(bad)) {
      t.equal(s.status, 'rejected');
      t.match(s.reason, want, 'with others in flight (made by the worker)');
      t.ok(s.reason.path.startsWith(`${dir}/`), `the path is the container's cgroup (${s.reason.path})`);
    }
    t.same((await Promise.all(ok)).map((r) => r.exitCode), [0, 0, 0, 0], 'the others ran');
  });
  t.ok(n.spawnAsync >= 4, `the failing ones went off-thread (${n.spawnAsync} async clones)`);
  t.same(fs.readdirSync(dir).filter((f) => !f.includes('.')), [], 'no cgroup was left under the parent');
  await assertNoLeaks(t, before, 'after the failed cgroups');
});

t.test('runs cloned off the JS thread are each in a cgroup of their own, which the worker made', { skip: fastPaths || noCgroup() }, async (t) => {
  // Each spins until it has used 0.2 s of CPU (six share the CPUs, and a busy host is no matter);
  // its cgroup's cpu.stat (read at exit) must have counted it, and only it: a container outside
  // its cgroup would show 0, two in one 0.4 s.
  const n = await countClones(async () => {
    const rs = await Promise.all(Array.from({ length: 6 }, () => run({ rootfs: bb, command: ['/probe', 'spin-cpu', '0.2'] })));
    for (const r of rs) {
      t.equal(r.exitCode, 0);
      // Under 0.4 s (two in one cgroup): the probe's own start and exit add to the 0.2 s, more
      // under TCG on a busy host (0.30 s seen).
      t.ok(r.stats.cpuUsageUs >= 200000 && r.stats.cpuUsageUs < 400000, `cpu.stat of its cgroup: ${r.stats.cpuUsageUs} us`);
    }
  });
  t.ok(n.spawnAsync >= 4, `cloned off the JS thread (${n.spawnAsync} of 6)`);
});

t.test('at most UV_THREADPOOL_SIZE - 1 clones hold a thread of libuv\'s pool; an fs call gets through meanwhile', { skip: fastPaths }, async (t) => {
  const b = native();
  const orig = b.spawnAsync;
  let now = 0;
  let most = 0;
  b.spawnAsync = function (plan, cb) {
    now++;
    most = Math.max(most, now);
    return orig.call(this, plan, (res) => {
      now--;
      cb(res);
    });
  };
  try {
    const runs = Array.from({ length: 24 }, () => run({ rootfs: bb, command: ['/bin/true'] }));
    // While 24 runs start: an fs call of the application is not queued behind all their clones.
    const t0 = performance.now();
    await fs.promises.stat('/');
    const statMs = performance.now() - t0;
    t.same((await Promise.all(runs)).map((r) => r.exitCode), Array(24).fill(0), 'every run succeeded');
    const size = Number(process.env.UV_THREADPOOL_SIZE) || 4;
    t.ok(most >= 1 && most <= size - 1, `at most ${size - 1} at once (saw ${most})`);
    t.comment(`fs.promises.stat during the starts: ${statMs.toFixed(1)} ms`);
  } finally {
    b.spawnAsync = orig;
  }
});

t.test('a run aborted while it waits for a clone thread rejects, and nothing of it is left', { skip: fastPaths }, async (t) => {
  const ac = new AbortController();
  const first = Array.from({ length: 8 }, () => run({ rootfs: bb, command: ['/bin/true'] }));
  const queued = Array.from({ length: 8 }, () => run({ rootfs: bb, command: ['/probe', 'sleep', '30'], signal: ac.signal }));
  ac.abort();
  const s = await Promise.allSettled(queued);
  t.ok(s.every((x) => x.status === 'rejected' && x.reason.name === 'AbortError'), 'all 8 reject with AbortError');
  t.same((await Promise.all(first)).map((r) => r.exitCode), Array(8).fill(0));
  await assertNoLeaks(t, before, 'after runs aborted in the queue');
});

t.test('aborting runs whose clones are in flight kills each container and leaves nothing', { skip: fastPaths }, async (t) => {
  const ac = new AbortController();
  const runs = Array.from({ length: 16 }, () => run({ rootfs: bb, command: ['/probe', 'sleep', '30'], signal: ac.signal }));
  ac.abort();
  const settled = await Promise.allSettled(runs);
  t.ok(settled.every((s) => s.status === 'rejected' && s.reason.name === 'AbortError'), 'all 16 reject with AbortError');
  await assertNoLeaks(t, before, 'after the aborted runs');
});

t.test('a loopback machine joins a namespace made ahead too, and exec sees it', { skip: fastPaths }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-fast-');
  const held = await reserveFull();
  const m = await Machine.start({ name: 'fast1', rootfs: bb, ephemeral: true, stateDir });
  const r = await m.run(['/probe', 'info']);
  const i = JSON.parse(r.stdout);
  t.same(i.net, [{ name: 'lo', up: true }], 'lo is up in the machine');
  t.ok(held.includes(i.netns), `the machine's namespace ${i.netns} is one the reserve held (${held.join(', ')})`);
  t.equal(fs.readlinkSync(`/proc/${m.pid}/ns/net`), i.netns, "exec joined the machine's PID 1's namespace");
  await m.stop();
  await m.destroy();
});

t.test('a warm pool refills off the JS thread; closing it mid-refill leaves nothing', { skip: fastPaths }, async (t) => {
  const { createPool } = require('..');
  const n = await countClones(async () => {
    const pool = createPool({ size: 4, rootfs: bb });
    for (let i = 0; i < 200 && pool.ready < 4; i++) await new Promise((r) => setTimeout(r, 2));
    t.equal(pool.ready, 4, 'the pool filled up');
    const rs = await Promise.all(Array.from({ length: 16 }, (_, i) => pool.run(['/bin/sh', '-c', `echo ${i}`])));
    t.same(rs.map((r) => r.stdout.toString().trim()), Array.from({ length: 16 }, (_, i) => String(i)), '16 runs at once, each with its own output');
    await new Promise((r) => setImmediate(r));
    await pool.close(); // a refill is likely in flight here
  });
  t.ok(n.spawnAsync >= 3, `refills and cold launches under load cloned off the JS thread (${n.spawnAsync} of ${n.spawn + n.spawnAsync})`);
  for (let k = 0; k < 5; k++) {
    const pool = createPool({ size: 3, rootfs: bb });
    await new Promise((r) => setTimeout(r, k));
    await pool.close();
  }
  await assertNoLeaks(t, before, 'after closing pools during their refills');
});

t.test('pool runs with others in flight wait for their exec on the event loop, with the same results and errors', { skip: fastPaths }, async (t) => {
  const { createPool } = require('..');
  const b = native();
  const orig = b.finishSpawnAsync;
  let calls = 0;
  b.finishSpawnAsync = function (...a) {
    calls++;
    return orig.apply(this, a);
  };
  const pool = createPool({ size: 4, rootfs: bb });
  try {
    for (let i = 0; i < 200 && pool.ready < 4; i++) await new Promise((r) => setTimeout(r, 2));
    const runs = Array.from({ length: 12 }, (_, i) =>
      i % 4 === 3 ? pool.run(['/no/such/command']) : pool.run(['/bin/sh', '-c', `read x; echo $x ${i}; exit ${i}`], { input: `in${i}\n` }),
    );
    const settled = await Promise.allSettled(runs);
    for (let i = 0; i < 12; i++) {
      const s = settled[i];
      if (i % 4 === 3) {
        t.equal(s.status, 'rejected', `run ${i}: a missing command rejects`);
        t.match(s.reason, { name: 'NsboxError', code: 'ENOENT', step: 'exec' });
      } else {
        t.equal(s.status, 'fulfilled', `run ${i} ran`);
        t.same([s.value.stdout.toString(), s.value.exitCode], [`in${i} ${i}\n`, i], `run ${i}: its own input, output and exit status`);
      }
    }
    t.ok(calls >= 6, `most exec results were awaited on the loop (${calls} of 12)`);
  } finally {
    b.finishSpawnAsync = orig;
    await pool.close();
  }
  await assertNoLeaks(t, before, 'after concurrent pool runs');
});

const { detectCgroupHost } = require('../dist/cgroup');
const cgHost = detectCgroupHost();
const noPids = process.env.NSBOX_REQUIRE_CGROUP === '1' || cgHost.controllers.includes('pids') ? false : `needs the pids controller on cgroup v2; this host is ${cgHost.mode}; runs in the VM lane`;

t.test('16 runs at once with pids=16, cloned off the JS thread: each stops its own fork bomb in its own cgroup', { skip: fastPaths || noPids }, async (t) => {
  const n = await countClones(async () => {
    const rs = await Promise.all(Array.from({ length: 16 }, () => run({ rootfs: bb, command: ['/probe', 'forkbomb', '1'], limits: { pids: 16 }, timeout: 60000 })));
    for (const r of rs) {
      t.equal(r.timedOut, false, 'ended before the timeout');
      const res = JSON.parse(r.stdout.toString());
      t.ok(res.forked <= 15 && res.errno === 11, `at most 15 children besides the bomb, then EAGAIN (${res.forked}, errno ${res.errno})`);
      if (r.stats.pidsPeak !== undefined) t.ok(r.stats.pidsPeak <= 16, `its cgroup held at most 16 tasks (peak ${r.stats.pidsPeak})`);
    }
  });
  t.ok(n.spawnAsync >= 14, `cloned off the JS thread (${n.spawnAsync} of 16)`);
  await assertNoLeaks(t, before, 'after 16 limited runs');
});

t.test('the nsbox CLI (one container per process) keeps no reserve', { skip: fastPaths }, async (t) => {
  const { spawn: spawnProcess } = require('node:child_process');
  const env = { ...process.env };
  delete env.NSBOX_NETNS_RESERVE;
  const cli = spawnProcess(process.execPath, [require.resolve('../bin/nsbox.js'), 'run', '--rootfs', bb, '--', '/bin/sh', '-c', 'echo ready; sleep 30'], { stdio: ['ignore', 'pipe', 'inherit'], env });
  await new Promise((r) => cli.stdout.once('data', r));
  await new Promise((r) => setTimeout(r, 50)); // a maker, had it started, would have made its namespaces by now
  const netFds = fs.readdirSync(`/proc/${cli.pid}/fd`).filter((f) => {
    try {
      return fs.readlinkSync(`/proc/${cli.pid}/fd/${f}`).startsWith('net:');
    } catch {
      return false;
    }
  });
  t.same(netFds, [], 'the CLI holds no network namespace');
  const kids = fs.readFileSync(`/proc/${cli.pid}/task/${cli.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  t.equal(kids.length, 1, 'its one child is the container');
  // The shell ignores the first signal as PID 1; the CLI kills the container on the second.
  const exited = new Promise((r) => cli.once('exit', r));
  cli.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 100));
  cli.kill('SIGTERM');
  await exited;
});

t.test('containers with different mounts, started in turn, each get their own mounts (op lists are made once per set of options)', { skip: noBusybox }, async (t) => {
  const tmp = fs.mkdtempSync('/tmp/nsbox-ops-');
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const a = `${tmp}/a`;
  const b = `${tmp}/b`;
  fs.mkdirSync(a);
  fs.mkdirSync(b);
  const tryWrite = async (mounts) => {
    const r = await run({ rootfs: bb, command: ['/probe', 'try-write', '/scratch/m/w'], mounts });
    t.equal(r.exitCode, 0, `probe ran: ${r.stderr}`);
    return JSON.parse(r.stdout.toString());
  };
  // Under a tmpfs: the mount points made for the binds do not stay in the shared test rootfs.
  const scratch = { type: 'tmpfs', target: '/scratch' };
  const ro = [scratch, { type: 'bind', source: a, target: '/scratch/m', readonly: true }];
  const rw = [scratch, { type: 'bind', source: b, target: '/scratch/m' }];
  for (let i = 0; i < 3; i++) {
    t.same(await tryWrite(ro), { ok: false, errno: 30, code: 'EROFS' }, `round ${i}: the read-only bind of a is read-only`);
    t.same(await tryWrite(rw), { ok: true }, `round ${i}: the bind of b is writable`);
    t.same(await tryWrite([]), { ok: false, errno: 2, code: 'ENOENT' }, `round ${i}: without mounts there is no /scratch/m`);
  }
  t.notOk(fs.existsSync(`${a}/w`), 'nothing was written to a');
  t.equal(fs.readFileSync(`${b}/w`, 'utf8'), 'x', 'the writes went to b');
  // The same options again, but b is now a file: the list follows the host (a file bind, no mkdir).
  fs.rmSync(b, { recursive: true });
  fs.writeFileSync(b, '');
  const r = await run({ rootfs: bb, command: ['/probe', 'try-write', '/scratch/m'], mounts: rw });
  t.same(JSON.parse(r.stdout.toString()), { ok: true }, 'b replaced by a file: /scratch/m is that file, writable');
  t.equal(fs.readFileSync(b, 'utf8'), 'x', 'the write went to the file b');
  fs.rmSync(b);
  await t.rejects(run({ rootfs: bb, command: ['/bin/true'], mounts: rw }), { code: 'ENOENT', step: 'mount.bind', path: b }, 'b gone: ENOENT before anything starts, as without the cache');
  // More sets of options than the cache keeps (32), 8 at a time: lists are released from the
  // cache while spawns that were given them may still be in flight.
  const results = [];
  for (let k = 0; k < 48; k += 8) {
    results.push(...(await Promise.all(Array.from({ length: 8 }, (_, j) => {
      const m = [scratch, { type: 'tmpfs', target: `/scratch/t${k + j}` }];
      return run({ rootfs: bb, command: ['/probe', 'try-write', `/scratch/t${k + j}/w`], mounts: m });
    }))));
  }
  t.ok(results.every((r) => r.exitCode === 0 && JSON.parse(r.stdout.toString()).ok === true), '48 sets of mounts: each container has its own tmpfs');
});

t.test('the addon helpers behind these paths refuse malformed arguments with a TypeError and leave nothing', async (t) => {
  const b = native();
  t.throws(() => b.compileOps('ops'), TypeError, 'compileOps: not an array');
  t.throws(() => b.compileOps([{ kind: '1', dst: '/x' }]), TypeError, 'compileOps: an op of the wrong shape');
  t.doesNotThrow(() => b.releaseOps(-1), 'releaseOps: an id never given is ignored');
  t.throws(() => b.readFiles(1, []), TypeError, 'readFiles: dir not a string');
  t.throws(() => b.readFiles('/etc', [1]), TypeError, 'readFiles: a name not a string');
  t.same(b.readFiles('/no/such/dir', ['a']), [null], 'readFiles: a missing directory reads as null');
  t.same(b.readFiles('/etc', ['../etc/hostname', 'no-such-file']), [null, null], 'readFiles: no path in a name, no file: null');
  for (const args of [[[3], 0], [[3, 'x'], 0], [[-1, -1], -1], [[-1, -1], 0, 'cb']]) {
    t.throws(() => b.collectOutput(...(args.length === 2 ? [...args, () => {}] : args)), TypeError, `collectOutput(${JSON.stringify(args)})`);
  }
  const none = await new Promise((r) => b.collectOutput([-1, -1], 10, (...a) => r(a)));
  t.same(none, [Buffer.alloc(0), Buffer.alloc(0), 0, 0], 'collectOutput of no fds: two empty buffers at once');
  t.throws(() => b.finishSpawnAsync('3', () => {}), TypeError, 'finishSpawnAsync: fd not a number');
  const [r, w] = b.pipe();
  fs.closeSync(w);
  t.equal(await new Promise((res) => b.finishSpawnAsync(r, res)), null, 'finishSpawnAsync: end-of-file is an exec');
  t.throws(() => fs.fstatSync(r), { code: 'EBADF' }, 'and it closed the fd');
  await assertNoLeaks(t, before, 'after the malformed calls');
});

t.test('nothing left behind by this file', async (t) => {
  await assertNoLeaks(t, before);
});
