// nsbox in a systemd unit with Delegate=yes (#22, docs/deploy.md "systemd"): Node started by
// systemd itself (ExecStart=node, `systemd-run -p Delegate=yes`), its containers' cgroups inside the
// unit's, their limits holding, `systemctl stop` taking every container with it, and the same unit
// run twice in a row. Needs systemd as PID 1 on a pure cgroup v2 host: the VM lane boots one for
// this file (`NSBOX_VM_INIT=systemd bash test/vm/run.sh test/63-systemd-delegate.test.js`, part of
// `npm run test:vm`); elsewhere it skips, or fails with NSBOX_REQUIRE_SYSTEMD_PID1=1.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { busyboxRootfs, alive } = require('./helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const lib = path.join(__dirname, '..');

function readTrim(p) {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return '';
  }
}

const pid1 = readTrim('/proc/1/comm');
const controllers = readTrim('/sys/fs/cgroup/cgroup.controllers').split(' ');
const noSystemd =
  process.getuid() !== 0
    ? 'needs root (system units)'
    : pid1 !== 'systemd' || !fs.existsSync('/run/systemd/system')
      ? `needs systemd as PID 1 (PID 1 is ${pid1 || 'unknown'}): runs in the VM lane's systemd boot`
      : !['memory', 'pids'].every((c) => controllers.includes(c))
        ? `needs the memory and pids controllers on a pure cgroup v2 hierarchy (have: ${controllers.join(' ') || 'none'})`
        : false;
if (noSystemd && process.env.NSBOX_REQUIRE_SYSTEMD_PID1 === '1') {
  t.fail(`NSBOX_REQUIRE_SYSTEMD_PID1=1 but ${noSystemd}`);
}
const skip = noBusybox || noSystemd;

function systemctl(...args) {
  return spawnSync('systemctl', args, { encoding: 'utf8', timeout: 60000 });
}

/** The unit's control group (relative to the cgroup2 mount), or '' once it has none. */
function unitCgroup(unit) {
  return systemctl('show', '-P', 'ControlGroup', unit).stdout.trim();
}

async function waitFor(file, ms = 60000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const s = readTrim(file);
    if (s.endsWith('\n') || s.endsWith('}')) return JSON.parse(s);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing in ${file} after ${ms} ms`);
}

// The Node program the unit runs: starts a container with limits, reports, then waits to be stopped.
const serve = (out) => `
const nsbox = require(${JSON.stringify(lib)});
const fs = require('node:fs');
(async () => {
  const c = nsbox.spawn({ rootfs: ${JSON.stringify(bb)}, command: ['/probe', 'sleep', '600'], stdio: 'ignore', limits: { memory: '48M', pids: 16 } });
  await c.started;
  const cg = (p) => fs.readFileSync('/proc/' + p + '/cgroup', 'utf8').match(/^0::(.*)$/m)[1];
  const bomb = await nsbox.run({ rootfs: ${JSON.stringify(bb)}, command: ['/probe', 'forkbomb', '1'], limits: { pids: 8 }, timeout: 60000 });
  fs.writeFileSync(${JSON.stringify(out)}, JSON.stringify({
    pid: c.pid, cgroupPath: c.cgroupPath, container: cg(c.pid), self: cg(process.pid),
    memoryMax: fs.readFileSync(c.cgroupPath + '/memory.max', 'utf8').trim(),
    pidsMax: fs.readFileSync(c.cgroupPath + '/pids.max', 'utf8').trim(),
    bomb: JSON.parse(bomb.stdout.toString().trim().split('\\n').pop()),
  }));
  setInterval(() => {}, 1 << 30);
})().catch((e) => fs.writeFileSync(${JSON.stringify(out)}, JSON.stringify({ error: e.code, message: e.message })));
`;

t.test('a Delegate=yes service runs containers with limits inside its cgroup, systemctl stop takes them, and it runs twice', { skip }, async (t) => {
  const unit = `nsbox-delegate-${process.pid}.service`;
  t.teardown(() => {
    systemctl('stop', unit);
    systemctl('reset-failed', unit);
  });
  for (const round of [1, 2]) {
    const out = `/tmp/nsbox-delegate-${process.pid}-${round}.json`;
    t.teardown(() => fs.rmSync(out, { force: true }));
    // Node is the unit's main process (systemd execs it): alone in the unit's cgroup.
    const r = spawnSync('systemd-run', ['--unit', unit, '-p', 'Delegate=yes', '--quiet', process.execPath, '-e', serve(out)], { encoding: 'utf8', timeout: 60000 });
    t.equal(r.status, 0, `round ${round}: systemd-run started the unit ${r.stderr}`);
    const rep = await waitFor(out);
    t.notOk(rep.error, `round ${round}: the container started ${rep.message ?? ''}`);
    const ucg = unitCgroup(unit);
    t.match(ucg, /^\/system\.slice\/nsbox-delegate-\d+\.service$/, `round ${round}: the unit has its cgroup`);
    t.equal(rep.self, `${ucg}/nsbox-supervisor`, `round ${round}: Node moved to a leaf of its unit to enable the controllers`);
    t.match(rep.container, new RegExp(`^${ucg.replace(/\./g, '\\.')}/nsbox/\\d+\\.\\d+$`), `round ${round}: the container's processes are in the unit's cgroup (as the host sees them)`);
    t.equal(rep.memoryMax, String(48 * 1024 * 1024), `round ${round}: memory.max written`);
    t.equal(rep.pidsMax, '16', `round ${round}: pids.max written`);
    t.ok(rep.bomb.forked <= 7 && rep.bomb.errno === 11, `round ${round}: inside, a fork bomb under pids 8 got EAGAIN after ${rep.bomb.forked} forks`);
    const tasks = readTrim(path.join('/sys/fs/cgroup', ucg, 'cgroup.procs'));
    t.equal(tasks, '', `round ${round}: nothing but leaves below the unit's cgroup`);
    t.equal(systemctl('stop', unit).status, 0, `round ${round}: systemctl stop`);
    t.notOk(alive(rep.pid), `round ${round}: the container's process ended with the unit`);
    t.notOk(fs.existsSync(path.join('/sys/fs/cgroup', ucg)), `round ${round}: the unit's cgroup, and everything nsbox made below it, is gone`);
  }
});

t.test('systemd-run --scope -p Delegate=yes: a container with a memory limit, its hog OOM-killed', { skip }, async (t) => {
  const script = `require(${JSON.stringify(lib)}).run({ rootfs: ${JSON.stringify(bb)}, command: ['/probe', 'hog', '128'], limits: { memory: '32M' }, timeout: 60000 })
    .then((r) => console.log(JSON.stringify({ oomKilled: r.oomKilled, signal: r.signal, self: require('node:fs').readFileSync('/proc/self/cgroup', 'utf8').match(/^0::(.*)$/m)[1] })),
      (e) => console.log(JSON.stringify({ error: e.code, message: e.message })));`;
  const r = spawnSync('systemd-run', ['--scope', '-p', 'Delegate=yes', '--quiet', process.execPath, '-e', script], { encoding: 'utf8', timeout: 120000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let out;
  try {
    out = JSON.parse(line);
  } catch {
    out = { unparsed: r.stdout, stderr: r.stderr };
  }
  t.notOk(out.error, out.message ?? '');
  t.equal(out.oomKilled, true, `the hog was OOM-killed (${JSON.stringify(out)})`);
  t.match(out.self, /^\/system\.slice\/run-[^/]+\.scope\/nsbox-supervisor$/, 'Node ran in its scope (moved to a leaf of it)');
});

t.test('rootless: systemd-run --user --scope -p Delegate=yes, as an unprivileged user with a user manager', { skip }, async (t) => {
  const user = process.env.NSBOX_ROOTLESS_USER || 'nsbox-ci';
  const id = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  if (id.status !== 0) return t.skip(`no user ${user} (bash test/fixtures/rootless-user.sh makes it)`);
  const uid = id.stdout.trim();
  // What `loginctl enable-linger` gives: the user's manager (user@UID.service, which delegates its
  // subtree to the user) without a login session.
  // (as a login would: the system bus and logind first)
  systemctl('start', 'dbus.socket', 'systemd-logind.service');
  const started = systemctl('start', `user@${uid}.service`);
  const why = started.status === 0 ? '' : `${started.stderr}${systemctl('status', '--no-pager', '-l', `user@${uid}.service`).stdout}${spawnSync('journalctl', ['--no-pager', '-n', '30', '-u', `user@${uid}.service`], { encoding: 'utf8' }).stdout}`;
  t.equal(started.status, 0, `the user manager started ${why}`);
  t.teardown(() => systemctl('stop', `user@${uid}.service`));
  const script = `require(${JSON.stringify(lib)}).run({ rootfs: ${JSON.stringify(bb)}, command: ['/probe', 'hog', '128'], limits: { memory: '32M' }, timeout: 60000 })
    .then((r) => console.log(JSON.stringify({ oomKilled: r.oomKilled, self: require('node:fs').readFileSync('/proc/self/cgroup', 'utf8').match(/^0::(.*)$/m)[1], rootless: process.getuid() !== 0 })),
      (e) => console.log(JSON.stringify({ error: e.code, message: e.message })));`;
  const r = spawnSync('runuser', ['-u', user, '--', 'env', `XDG_RUNTIME_DIR=/run/user/${uid}`, 'systemd-run', '--user', '--scope', '-p', 'Delegate=yes', '--quiet', process.execPath, '-e', script], { encoding: 'utf8', timeout: 120000 });
  let out;
  try {
    out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
  } catch {
    out = { unparsed: r.stdout, stderr: r.stderr };
  }
  t.notOk(out.error ?? out.unparsed, out.message ?? out.stderr ?? '');
  t.equal(out.rootless, true, 'Node ran as the user');
  t.equal(out.oomKilled, true, `the hog was OOM-killed under the limit (${JSON.stringify(out)})`);
  t.match(out.self, new RegExp(`^/user\\.slice/user-${uid}\\.slice/user@${uid}\\.service/.*\\.scope/nsbox-supervisor$`), "Node ran in its scope in the user's manager (moved to a leaf of it)");
});
