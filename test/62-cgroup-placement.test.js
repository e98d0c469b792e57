// Where container cgroups go (#22): always inside the cgroup of the Node process that starts them,
// never above it (in a pod without a cgroup namespace they went to the host's root, outside the
// pod's limits); another process beside Node in its cgroup is named in the error, and nothing is
// moved; what nsbox enabled in that cgroup is undone at exit, so the same recipe works twice.
// Each test runs a Node child that a shell first moves into a cgroup of the test's own. The limit
// tests need the memory controller: they skip on the hybrid development host and must run in the VM
// lane (NSBOX_REQUIRE_CGROUP=1).
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { busyboxRootfs } = require('./helpers');
const { detectCgroupHost } = require('../dist/cgroup');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const host = detectCgroupHost();
const strict = process.env.NSBOX_REQUIRE_CGROUP === '1';
const lib = path.join(__dirname, '..');

const notRoot = process.getuid() !== 0 && 'needs root (makes cgroups of its own under the v2 root)';
const noV2 = !host.mountPoint ? host.reason ?? 'no cgroup v2' : !host.writable || host.delegated ? `the v2 root ${host.mountPoint} is not writable here` : false;
const skipBase = noBusybox || notRoot || noV2;
const noMemory = !strict && !(host.controllers.includes('memory') || readTrim(path.join(host.mountPoint ?? '/', 'cgroup.controllers')).split(' ').includes('memory')) && `needs the memory controller on cgroup v2; this host is ${host.mode}; runs in the VM lane`;

function readTrim(p) {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return '';
  }
}

/** A cgroup of this test's own under the v2 root, removed (with what a failed run left) at teardown. */
function testCgroup(t, name) {
  const dir = path.join(host.mountPoint, `nsbox-place-${process.pid}-${name}`);
  fs.mkdirSync(dir);
  t.teardown(() => {
    for (const sub of ['nsbox/x', 'nsbox', 'nsbox-supervisor']) {
      try {
        fs.rmdirSync(path.join(dir, sub));
      } catch {
        /* not there */
      }
    }
    fs.rmdirSync(dir);
  });
  return dir;
}

/** `sh -c '<move into dir>; node -e script; <stay>'`: the JSON line the script printed. */
function nodeIn(dir, script, { exec }) {
  const move = `echo $$ > ${dir}/cgroup.procs || exit 99`;
  const node = `${JSON.stringify(process.execPath)} -e "$0"`;
  const sh = exec ? `${move}; exec ${node}` : `${move}; ${node}; echo stayed >&2`;
  const r = spawnSync('/bin/sh', ['-c', sh, `const nsbox = require(${JSON.stringify(lib)}); const bb = ${JSON.stringify(bb)};\n${script}`], { encoding: 'utf8', timeout: 120000 });
  const line = r.stdout.trim().split('\n').pop();
  try {
    return { ...JSON.parse(line), status: r.status, stderr: r.stderr };
  } catch {
    return { unparsed: r.stdout, status: r.status, stderr: r.stderr };
  }
}

const self = "require('node:fs').readFileSync('/proc/self/cgroup', 'utf8').match(/^0::(.*)$/m)[1]";

t.test("a container's cgroup is inside the cgroup of the Node process that starts it, never above it", { skip: skipBase }, async (t) => {
  const dir = testCgroup(t, 'inside');
  const rel = '/' + path.relative(host.mountPoint, dir);
  const out = nodeIn(
    dir,
    `(async () => {
      const c = nsbox.spawn({ rootfs: bb, command: ['/probe', 'sleep', '30'], stdio: 'ignore' });
      await c.started;
      const hostSide = require('node:fs').readFileSync('/proc/' + c.pid + '/cgroup', 'utf8').match(/^0::(.*)$/m)[1];
      c.kill();
      await c.wait();
      console.log(JSON.stringify({ cgroupPath: c.cgroupPath, hostSide, self: ${self} }));
    })();`,
    { exec: true },
  );
  t.equal(out.status, 0, out.stderr);
  t.equal(out.self, rel, 'the Node process ran in the test cgroup');
  t.equal(path.dirname(out.cgroupPath), path.join(dir, 'nsbox'), 'its container cgroup is below it');
  t.match(out.hostSide, new RegExp(`^${rel}/nsbox/\\d+\\.\\d+$`), "and the container's processes were there (/proc/PID/cgroup on the host)");
  t.same(fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name), [], 'nothing is left below it after the exit');
});

t.test('limits with another process beside Node in its cgroup: EBUSY naming it, before anything moved', { skip: skipBase || noMemory }, async (t) => {
  // The root's subtree_control offers memory to the test cgroup (the VM boots with none enabled).
  fs.writeFileSync(path.join(host.mountPoint, 'cgroup.subtree_control'), '+memory');
  const dir = testCgroup(t, 'shell');
  const rel = '/' + path.relative(host.mountPoint, dir);
  const out = nodeIn(
    dir,
    `nsbox.run({ rootfs: bb, command: ['/bin/true'], limits: { memory: '64M' } }).then(
      (r) => console.log(JSON.stringify({ exitCode: r.exitCode })),
      (e) => console.log(JSON.stringify({ code: e.code, step: e.step, syscall: e.syscall, path: e.path, message: e.message, self: ${self} })));`,
    { exec: false },
  );
  t.equal(out.code, 'EBUSY', out.message ?? out.stderr);
  t.equal(out.step, 'cgroup.controllers');
  t.equal(out.path, path.join(dir, 'cgroup.procs'));
  t.match(out.message, /\d+ \((sh|dash|bash|busybox)\)/, 'the shell that stayed is named');
  t.match(out.message, /exec node/, 'with a remedy');
  t.equal(out.self, rel, 'the Node process was not moved');
  t.equal(readTrim(path.join(dir, 'cgroup.subtree_control')), '', 'nothing was enabled');
  t.notOk(fs.existsSync(path.join(dir, 'nsbox-supervisor')), 'no leaf was made');
});

t.test('started with exec, limits work, and at exit the cgroup is as it was, so the same recipe works twice', { skip: skipBase || noMemory }, async (t) => {
  fs.writeFileSync(path.join(host.mountPoint, 'cgroup.subtree_control'), '+memory');
  const dir = testCgroup(t, 'twice');
  for (const round of [1, 2]) {
    const out = nodeIn(
      dir,
      `(async () => {
        const c = nsbox.spawn({ rootfs: bb, command: ['/probe', 'sleep', '30'], stdio: 'ignore', limits: { memory: '64M' } });
        await c.started;
        const max = require('node:fs').readFileSync(c.cgroupPath + '/memory.max', 'utf8').trim();
        c.kill();
        const r = await c.wait();
        console.log(JSON.stringify({ signal: r.signal, max, self: ${self} }));
      })().catch((e) => console.log(JSON.stringify({ code: e.code, message: e.message })));`,
      { exec: true },
    );
    t.equal(out.signal, 'SIGKILL', `round ${round}: the container ran ${out.message ?? out.stderr}`);
    t.equal(out.max, String(64 * 1024 * 1024), `round ${round}: its cgroup had the limit`);
    t.match(out.self, /\/nsbox-supervisor$/, `round ${round}: Node had moved to the leaf to enable the controller`);
    t.equal(readTrim(path.join(dir, 'cgroup.subtree_control')), '', `round ${round}: what nsbox enabled is disabled again`);
    t.same(fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name), [], `round ${round}: no leaf and no base are left`);
    t.equal(readTrim(path.join(dir, 'cgroup.procs')), '', `round ${round}: no process is left in it`);
  }
});

t.test("an abandoned machine start is cleaned up in the cgroup its starter used, not in the cleaner's", { skip: skipBase }, async (t) => {
  // The starter ran in another cgroup than this process (containers go inside the starter's own);
  // its claim says where its base was. A claim naming anything but an 'nsbox' base in the v2
  // hierarchy is not believed.
  const os = require('node:os');
  const { Machine } = require('..');
  const { machineCgroupName } = require('../dist/machine-state');
  const dir = testCgroup(t, 'claim');
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-claim-'));
  t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  const base = path.join(dir, 'nsbox');
  fs.mkdirSync(base);
  const cg = path.join(base, machineCgroupName(stateDir, 'gone'));
  fs.mkdirSync(cg);
  fs.mkdirSync(path.join(stateDir, 'gone'), { mode: 0o700 });
  fs.writeFileSync(path.join(stateDir, 'gone', 'claim.json'), JSON.stringify({ pid: 4194999, start: 1, cgroupBase: base }));
  const decoy = path.join(dir, 'decoy');
  fs.mkdirSync(decoy);
  const cg2 = path.join(decoy, machineCgroupName(stateDir, 'lying'));
  fs.mkdirSync(cg2);
  t.teardown(() => {
    try {
      fs.rmdirSync(cg2);
    } catch {
      /* removed by the test */
    }
  });
  fs.mkdirSync(path.join(stateDir, 'lying'), { mode: 0o700 });
  fs.writeFileSync(path.join(stateDir, 'lying', 'claim.json'), JSON.stringify({ pid: 4194999, start: 1, cgroupBase: decoy }));
  t.same(await Machine.list({ stateDir }), [], 'both abandoned starts are reclaimed');
  t.notOk(fs.existsSync(cg), "the machine's cgroup under the starter's base is gone");
  t.notOk(fs.existsSync(path.join(stateDir, 'gone')), 'and its state directory');
  t.ok(fs.existsSync(cg2), "a claim naming a cgroup that is no 'nsbox' base is not believed: that cgroup is left");
  fs.rmdirSync(cg2);
  fs.rmdirSync(decoy);
});
