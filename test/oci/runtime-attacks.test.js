// Review attack2 (nsbox-runtime, first slice): the container's cgroupfs. `spec`'s config.json (and
// containerd's) asks for /sys/fs/cgroup read-only; nsbox-runtime mounts its own (fsops.ts mountSys,
// made for machines, whose root is unprivileged in a user namespace) read-write. An OCI container has
// no user namespace: its uid 0 is the host's root, so even with spec's three capabilities it writes
// its own cgroup's control files on the host (cgroup.max.descendants here; memory.max, pids.max,
// cpu.max on a host with those controllers in v2: the config's limits undone) and makes cgroups
// below its own that `kill --all` (which reads the top cgroup.procs only) never signals.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { busyboxRootfs, isRoot } = require('../helpers');

const BIN = path.join(__dirname, '..', '..', 'bin', 'nsbox-runtime.js');
const { rootfs, reason } = busyboxRootfs();

if (process.env.NSBOX_OCI_TESTS !== '1') {
  t.skip('runs with NSBOX_OCI_TESTS=1');
  return;
}
if (!isRoot()) {
  t.skip('nsbox-runtime needs root');
  return;
}
if (!rootfs) {
  t.skip(reason);
  return;
}

function rt(root, args) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-oci-out-'));
  const out = fs.openSync(path.join(dir, 'out'), 'w+');
  const err = fs.openSync(path.join(dir, 'err'), 'w+');
  try {
    const r = spawnSync(process.execPath, [BIN, '--root', root, ...args], { stdio: ['ignore', out, err] });
    return { code: r.status, stdout: fs.readFileSync(path.join(dir, 'out'), 'utf8'), stderr: fs.readFileSync(path.join(dir, 'err'), 'utf8') };
  } finally {
    fs.closeSync(out);
    fs.closeSync(err);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function bundle(t, args) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-oci-a2-'));
  const root = path.join(dir, 'state');
  const out = path.join(dir, 'out');
  fs.mkdirSync(out);
  const b = path.join(dir, 'bundle');
  fs.mkdirSync(b);
  const r = spawnSync(process.execPath, [BIN, 'spec', '--bundle', b], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`spec: ${r.stderr}`);
  const c = JSON.parse(fs.readFileSync(path.join(b, 'config.json'), 'utf8'));
  c.root.path = rootfs;
  c.process.args = args;
  c.mounts.push({ destination: '/out', type: 'bind', source: out, options: ['rbind', 'rw'] });
  fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify(c));
  t.teardown(() => {
    for (const id of fs.existsSync(root) ? fs.readdirSync(root) : []) rt(root, ['delete', '--force', id]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir, root, out, bundle: b };
}

function state(root, id) {
  const r = rt(root, ['state', id]);
  if (r.code !== 0) throw new Error(`state: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFile(file, ms) {
  for (let i = 0; i < ms / 20; i++) {
    if (fs.existsSync(file)) return true;
    await sleep(20);
  }
  return false;
}

t.test("the container cannot write its own cgroup's control files on the host (config asks /sys/fs/cgroup ro)", async (t) => {
  const b = bundle(t, ['sh', '-c', 'echo 7 > /sys/fs/cgroup/cgroup.max.descendants && echo wrote >> /out/r; mkdir /sys/fs/cgroup/sub && echo mkdir >> /out/r; echo done >> /out/r']);
  t.equal(rt(b.root, ['create', '--bundle', b.bundle, 'w1']).code, 0);
  const s = state(b.root, 'w1');
  const cg = s['org.nsbox.cgroup'];
  t.ok(cg, 'a cgroup');
  t.equal(rt(b.root, ['start', 'w1']).code, 0);
  await waitFile(path.join(b.out, 'r'), 5000);
  await sleep(300);
  const r = fs.readFileSync(path.join(b.out, 'r'), 'utf8');
  t.notMatch(r, /wrote/, 'writing cgroup.max.descendants of its own cgroup fails');
  t.notMatch(r, /mkdir/, 'making a cgroup below its own fails');
  t.equal(fs.readFileSync(path.join(cg, 'cgroup.max.descendants'), 'utf8').trim(), 'max', "the host's file is unchanged");
});

t.test('kill --all reaches a process the container moved into a cgroup of its own making', async (t) => {
  const b = bundle(t, ['sh', '-c', [
    'mkdir /sys/fs/cgroup/sub',
    "sh -c 'trap \"echo got > /out/child; exit 0\" TERM; echo $$ > /sys/fs/cgroup/sub/cgroup.procs; echo ready > /out/ready; while :; do sleep 0.2; done' &",
    'trap "echo got > /out/pid1; sleep 3; exit 0" TERM',
    'while :; do sleep 0.2; done',
  ].join('\n')]);
  t.equal(rt(b.root, ['create', '--bundle', b.bundle, 'k2']).code, 0);
  t.equal(rt(b.root, ['start', 'k2']).code, 0);
  t.ok(await waitFile(path.join(b.out, 'ready'), 5000), 'the child is up');
  const k = rt(b.root, ['kill', '--all', 'k2', 'TERM']);
  t.equal(k.code, 0, k.stderr);
  t.ok(await waitFile(path.join(b.out, 'pid1'), 3000), 'pid 1 got TERM');
  t.ok(await waitFile(path.join(b.out, 'child'), 2000), 'the child in the sub-cgroup got TERM too');
});

// kill --all reads the cgroup's pids, then opens a pidfd on each and signals it with no check that
// the pid is still in the container: a container process that exits in between leaves its pid free
// for a host process (the container can cycle the host's pid counter itself: each of its forks takes
// a host pid). The race's outcome is simulated: the cgroup.procs that kill --all reads names a host
// process (the state's cgroup pointed at a copy whose cgroup.procs lists it, as the real one would
// have listed a pid reused after the read). A pidfd checked against /proc/PID/cgroup after opening
// (or the cgroup frozen while it is listed and signalled, as runc does) would skip it.
t.test('kill --all signals only processes that are in the container when signalled (simulated pid reuse)', async (t) => {
  const { spawn } = require('node:child_process');
  const b = bundle(t, ['sh', '-c', 'trap "exit 0" TERM; while :; do sleep 0.2; done']);
  t.equal(rt(b.root, ['create', '--bundle', b.bundle, 'r1']).code, 0);
  t.equal(rt(b.root, ['start', 'r1']).code, 0);
  const victim = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.teardown(() => victim.kill('SIGKILL'));
  const gone = new Promise((r) => victim.on('exit', (code, sig) => r(sig)));
  const file = path.join(b.root, 'r1', 'state.json');
  const s = JSON.parse(fs.readFileSync(file, 'utf8'));
  const fake = path.join(b.dir, 'fakecg');
  fs.mkdirSync(fake);
  fs.writeFileSync(path.join(fake, 'cgroup.procs'), `${s.pid}\n${victim.pid}\n`);
  const real = s.cgroup;
  s.cgroup = fake;
  fs.writeFileSync(file, JSON.stringify(s));
  const k = rt(b.root, ['kill', '--all', 'r1', 'TERM']);
  s.cgroup = real;
  fs.writeFileSync(file, JSON.stringify(s));
  t.equal(k.code, 0, k.stderr);
  const sig = await Promise.race([gone, sleep(500).then(() => 'alive')]);
  t.equal(sig, 'alive', 'the host process whose pid was listed is not signalled');
});

/** Removes a cgroup tree too deep for one path (each level entered by a relative chdir). */
function rmDeep(dir) {
  const here = process.cwd();
  try {
    process.chdir(dir);
    const names = [];
    for (;;) {
      const sub = fs.readdirSync('.', { withFileTypes: true }).find((e) => e.isDirectory());
      if (!sub) break;
      names.push(sub.name);
      process.chdir(sub.name);
    }
    while (names.length) {
      process.chdir('..');
      fs.rmdirSync(names.pop());
    }
    process.chdir('/');
    fs.rmdirSync(dir);
  } catch {
    /* best effort */
  } finally {
    process.chdir(here);
  }
}

// With the cgroupfs writable, the container nests cgroups below its own past PATH_MAX (names of 200
// characters: 25 levels): delete --force kills its processes (cgroup.kill) but cannot remove the
// tree (ENAMETOOLONG), fails with "did not empty", and fails again on every retry: the host's
// cgroups and <root>/<id> are left.
t.test('delete --force removes everything even when the container nested cgroups past PATH_MAX', async (t) => {
  const name = 'd'.repeat(200);
  const b = bundle(t, ['sh', '-c', `cd /sys/fs/cgroup; i=0; while [ $i -lt 25 ]; do mkdir ${name} && cd ${name} || break; i=$((i+1)); done; echo $i > /out/depth; echo $$ > cgroup.procs; echo moved >> /out/depth; exec sleep 1000`]);
  t.equal(rt(b.root, ['create', '--bundle', b.bundle, 'n1']).code, 0);
  const cg = state(b.root, 'n1')['org.nsbox.cgroup'];
  t.teardown(() => {
    if (fs.existsSync(cg)) rmDeep(cg);
  });
  t.equal(rt(b.root, ['start', 'n1']).code, 0);
  await waitFile(path.join(b.out, 'depth'), 10000);
  await sleep(500);
  t.comment(`depth reached: ${fs.readFileSync(path.join(b.out, 'depth'), 'utf8').split('\n')[0]}`);
  const d = rt(b.root, ['delete', '--force', 'n1']);
  t.equal(d.code, 0, d.stderr);
  t.notOk(fs.existsSync(cg), 'the cgroup is gone');
  t.notOk(fs.existsSync(path.join(b.root, 'n1')), 'the state directory is gone');
});
