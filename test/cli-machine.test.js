// `nsbox machine ...` run as a subprocess the way a user runs it: start returns at once and leaves
// the machine running, exec passes exit codes through (with and without a tty), freeze/thaw/stats/
// stop/kill/destroy/list, and one-line errors with exit 125. Every machine lives in a private
// --state-dir and on an ephemeral overlay of the busybox fixture, which is never written.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync, spawn: spawnProcess } = require('node:child_process');
const { Machine } = require('..');
const { alive, busyboxRootfs, noCgroup, manyIds, oneErrorLine } = require('./helpers');

const bin = path.join(__dirname, '..', 'bin', 'nsbox.js');
const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const skip = noBusybox;
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-cli-machines-'));
// Machine cgroups are named after the machine, host-wide: keep ours apart from other test files'.
const prefix = `cli${process.pid}`;

/** Runs `nsbox machine SUB ...args --state-dir <ours>` to completion. */
function machine(sub, args = [], opts = {}) {
  const dash = args.indexOf('--');
  const flags = ['--state-dir', stateDir];
  const argv = dash < 0 ? [sub, ...args, ...flags] : [sub, ...args.slice(0, dash), ...flags, ...args.slice(dash)];
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [bin, 'machine', ...argv], { encoding: 'utf8', timeout: 30_000, ...opts });
  if (r.error) throw r.error;
  r.ms = Date.now() - t0;
  return r;
}

/** The rows of `nsbox machine list`, as objects keyed by the header. */
function listTable() {
  const r = machine('list');
  if (r.status !== 0) throw new Error(`list failed: ${r.stderr}`);
  const [head, ...rows] = r.stdout.trimEnd().split('\n');
  const cols = head.trim().split(/\s+/);
  return rows.map((l) => {
    const cells = l.trim().split(/\s+/);
    const o = {};
    cols.forEach((c, i) => (o[c] = i === cols.length - 1 ? cells.slice(i).join(' ') : cells[i]));
    return o;
  });
}

function startMachine(t, name, extra = []) {
  const r = machine('start', [name, '--rootfs', bb, '--ephemeral', ...extra]);
  t.equal(r.status, 0, `start ${name}: ${r.stderr}`);
  return { r, pid: Number(r.stdout.trim()) };
}

t.teardown(async () => {
  // Whatever a test left running (a failed one included) is stopped and removed.
  for (const info of await Machine.list({ stateDir })) {
    const m = await Machine.get(info.name, { stateDir });
    if (!m) continue;
    await m.stop({ timeout: 2000 }).catch(() => {});
    await m.destroy().catch(() => {});
  }
  fs.rmSync(stateDir, { recursive: true, force: true });
});

t.test('the life of a machine through the CLI', { skip }, async (t) => {
  const name = `${prefix}-life`;
  const rootfsBefore = fs.readdirSync(bb).sort();

  // start: prints the host pid of PID 1 and returns at once; the machine lives on.
  const { r: start, pid } = startMachine(t, name, ['--hostname', 'cli-box', '--env', 'GREETING=hello']);
  t.match(start.stdout, /^\d+\n$/, 'start prints one pid');
  t.equal(start.stderr, '');
  t.ok(start.ms < 10_000, `start returned after ${start.ms} ms`);
  t.ok(alive(pid), 'PID 1 is still alive after the CLI exited');

  let rows = listTable();
  t.same(rows, [{ NAME: name, PID: String(pid), STATE: 'running', INIT: 'builtin', ROOTFS: `${bb} (ephemeral)` }], 'list shows it running');

  // exec without a tty: stdio inherited, exit status passed through.
  const ps = machine('exec', [name, '--', 'ps', '-o', 'pid,comm']);
  t.equal(ps.status, 0, ps.stderr);
  const procs = ps.stdout.trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
  t.same(procs.find(([p]) => p === '1'), ['1', 'nsbox-init'], 'the builtin init is PID 1');
  t.ok(procs.some(([p, c]) => c === 'ps' && Number(p) > 1), 'ps runs beside it');

  t.equal(machine('exec', [name, '--', 'sh', '-c', 'exit 7']).status, 7, 'exit code 7 comes through');
  t.equal(machine('exec', [name, '--', 'false']).status, 1);
  t.equal(machine('exec', [name, '--', 'sh', '-c', 'kill -TERM $$; sleep 5']).status, 128 + os.constants.signals.SIGTERM, 'killed by SIGTERM: 143');

  // A machine that maps one id (rootless without a subordinate range) has only root to run as.
  const uid = manyIds() === false ? 65534 : 0;
  const env = machine('exec', [name, '--env', 'A=1', '--cwd', '/tmp', '--user', `${uid}:${uid}`, '--', 'sh', '-c', 'echo $A; pwd; id -u; hostname']);
  t.equal(env.status, 0, env.stderr);
  t.equal(env.stdout, `1\n/tmp\n${uid}\ncli-box\n`, '--env, --cwd, --user of exec; --hostname of start');
  const init = machine('exec', [name, '--', 'sh', '-c', 'tr "\\0" "\\n" < /proc/1/environ']);
  t.match(init.stdout, /^GREETING=hello$/m, "--env of start is in PID 1's environment");

  const io = machine('exec', [name, '--', 'sh', '-c', 'cat; echo err >&2'], { input: 'from stdin\n' });
  t.equal(io.stdout, 'from stdin\n', "nsbox's stdin is the command's");
  t.equal(io.stderr, 'err\n', "and its stderr is the command's, nothing mixed in");

  const slow = machine('exec', [name, '--timeout', '300', '--', 'sleep', '20']);
  t.equal(slow.status, 137, '--timeout kills: 137');
  t.equal(slow.stderr, 'nsbox: timed out after 300 ms\n');

  // freeze / thaw
  if (noCgroup()) {
    const f = machine('freeze', [name]);
    t.equal(f.status, 125, `no cgroup, no freeze (${noCgroup()})`);
    t.match(oneErrorLine(t, f), /\[code ENOTSUP, step freeze\]$/);
  } else {
    t.equal(machine('freeze', [name]).status, 0);
    t.equal(listTable()[0]?.STATE, 'frozen', 'list shows it frozen');
    const frozen = machine('exec', [name, '--', 'true']);
    t.equal(frozen.status, 125, 'exec into a frozen machine fails');
    t.match(oneErrorLine(t, frozen), /frozen.*\[code EBUSY, step exec\]$/);
    t.equal(machine('thaw', [name]).status, 0);
    t.equal(listTable()[0]?.STATE, 'running', 'running again after thaw');
  }

  // stats
  const st = machine('stats', [name]);
  t.equal(st.status, 0, st.stderr);
  const stats = JSON.parse(st.stdout);
  t.type(stats.cpuUsageUs, 'number', 'stats has cpuUsageUs');
  // Without a cgroup only PID 1's own time (and its reaped children's) is known, which may be 0.
  if (!noCgroup()) t.ok(stats.cpuUsageUs > 0, 'and the machine has used some CPU');

  const json = JSON.parse(machine('list', ['--json']).stdout);
  t.match(json, [{ name, pid, state: 'running', rootfs: bb, init: 'builtin', ephemeral: true }], 'list --json');

  // destroy refuses a running machine
  const busy = machine('destroy', [name]);
  t.equal(busy.status, 125);
  t.match(oneErrorLine(t, busy), /still running.*\[code EBUSY, step destroy\]$/);

  // stop
  const stop = machine('stop', [name, '--timeout', '5000']);
  t.equal(stop.status, 0, stop.stderr);
  t.ok(stop.ms < 10_000, `stop took ${stop.ms} ms`);
  t.notOk(alive(pid), 'PID 1 is gone');
  rows = listTable();
  t.same(rows.map((r) => [r.NAME, r.PID, r.STATE]), [[name, '-', 'stopped']], 'list shows it stopped');
  const dead = machine('exec', [name, '--', 'true']);
  t.equal(dead.status, 125);
  t.match(oneErrorLine(t, dead), /not running.*\[code ESRCH, step exec\]$/);

  // destroy
  t.equal(machine('destroy', [name]).status, 0);
  t.same(listTable(), [], 'list is empty after destroy');
  t.equal(machine('list').stdout, 'NAME  PID  STATE  INIT  ROOTFS\n', 'an empty list is just the header');
  t.same(fs.readdirSync(bb).sort(), rootfsBefore, 'the ephemeral machine did not write to the rootfs');
});

t.test('starting a name twice fails with EEXIST and exit 125', { skip }, async (t) => {
  const name = `${prefix}-twice`;
  const { pid } = startMachine(t, name);
  const again = machine('start', [name, '--rootfs', bb, '--ephemeral']);
  t.equal(again.status, 125);
  t.equal(again.stdout, '');
  t.match(oneErrorLine(t, again), new RegExp(`'${name}' already exists.*\\[code EEXIST, step machine\\.name\\]$`));
  t.ok(alive(pid), 'the first machine is untouched');
  t.equal(machine('kill', [name]).status, 0, 'kill (SIGKILL by default)');
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  t.notOk(alive(pid), 'kill ended PID 1');
  t.equal(listTable()[0]?.STATE, 'stopped', 'list shows the killed machine stopped');
  const again2 = machine('kill', [name]);
  t.equal(again2.status, 125, 'killing a stopped machine is an error');
  t.match(oneErrorLine(t, again2), /not running \[code ESRCH, step kill\]$/);
  t.equal(machine('destroy', [name]).status, 0);
});

t.test('exec -t runs the command on a pty, driven through a pipe', { skip }, async (t) => {
  const name = `${prefix}-tty`;
  startMachine(t, name);
  const sh = machine('exec', [name, '-t', '--', 'sh'], { input: 'echo hi; exit 3\n' });
  t.equal(sh.status, 3, `the shell's exit code: ${sh.stderr}`);
  t.match(sh.stdout, /^hi\r?$/m, 'its output, as a line of its own');
  t.equal(sh.stderr, '', 'a pty has no separate stderr');

  const tty = machine('exec', [name, '--tty', '--', 'sh', '-c', 'test -t 0 && test -t 1 && tty; echo $TERM'], { input: '', env: { ...process.env, TERM: 'vt100' } });
  t.equal(tty.status, 0, tty.stderr);
  t.match(tty.stdout, /^\/dev\/pts\/\d+\r\nvt100\r\n$/, "stdin and stdout are the machine's pty; TERM is passed on");

  // The end of nsbox's input is the terminal's end-of-file for the command.
  const cat = machine('exec', [name, '-t', '--', 'cat'], { input: 'one line\n' });
  t.equal(cat.status, 0, `cat ended at the end of input: ${cat.stderr}`);
  t.match(cat.stdout, /one line\r\n/);

  // A command that exits at once still has its output delivered.
  for (let i = 0; i < 5; i++) {
    const q = machine('exec', [name, '-t', '--', 'echo', `quick${i}`], { input: '' });
    t.equal(q.stdout, `quick${i}\r\n`, `quick output ${i}`);
  }
  t.equal(machine('stop', [name]).status, 0);
  t.equal(machine('destroy', [name]).status, 0);
});

t.test('start returns promptly and the machine outlives it; destroy --force', { skip }, async (t) => {
  const name = `${prefix}-bg`;
  // Started asynchronously, so a hanging CLI is seen as one rather than as a spawnSync timeout.
  const child = spawnProcess(process.execPath, [bin, 'machine', 'start', name, '--rootfs', bb, '--ephemeral', '--state-dir', stateDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const t0 = Date.now();
  const exited = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const code = await exited;
  clearTimeout(timer);
  t.equal(code, 0, `start exited 0 ${err}`);
  t.ok(Date.now() - t0 < 10_000, `the CLI exited after ${Date.now() - t0} ms`);
  const pid = Number(out.trim());
  t.ok(pid > 0 && alive(pid), 'the machine keeps running');
  await new Promise((r) => setTimeout(r, 300));
  t.ok(alive(pid), 'and still runs a moment later');
  const echo = machine('exec', [name, '--', 'echo', 'still here']);
  t.equal(echo.stdout, 'still here\n');

  // SIGTERM to nsbox reaches the exec'd command.
  const ex = spawnProcess(process.execPath, [bin, 'machine', 'exec', name, '--state-dir', stateDir, '--', 'sh', '-c', 'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.05; done'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let exOut = '';
  const exGuard = setTimeout(() => ex.kill('SIGKILL'), 20_000);
  const exDone = new Promise((resolve) => ex.on('close', (status) => resolve(status)));
  await new Promise((resolve) => ex.stdout.on('data', (d) => ((exOut += d), exOut.includes('ready') && resolve())));
  ex.kill('SIGTERM');
  t.equal(await exDone, 42, 'the command handled the forwarded SIGTERM');
  clearTimeout(exGuard);
  t.match(exOut, /got-term/);

  const force = machine('destroy', [name, '--force']);
  t.equal(force.status, 0, force.stderr);
  t.notOk(alive(pid), 'destroy --force stopped it');
  t.same(listTable(), [], 'and removed it');
});

t.test('errors: one line, exit 125', { skip }, async (t) => {
  const cases = [
    [['stats', ['nope']], /^nsbox: no machine named 'nope'$/],
    [['exec', ['nope', '--', 'true']], /^nsbox: no machine named 'nope'$/],
    [['stop', ['nope']], /^nsbox: no machine named 'nope'$/],
    [['destroy', ['nope']], /^nsbox: no machine named 'nope'$/],
    [['start', ['x']], /missing --rootfs DIR/],
    [['start', ['Bad', '--rootfs', bb || '/']], /^nsbox: machine name 'Bad': .*"name" option must match/],
    [['start', [`${prefix}-x`, '--rootfs', '/no/such/rootfs-xyz']], /\/no\/such\/rootfs-xyz.*\[code ENOENT, step rootfs\]$/],
    [['start', [`${prefix}-x`, '--rootfs', bb || '/', '--init', 'sbin/init']], /--init must be 'builtin' or an absolute path/],
    [['start', [`${prefix}-x`, '--rootfs', bb || '/', '--network', 'bogus']], /^nsbox: --network 'bogus': The "network" option must be one of/],
    [['start', [`${prefix}-x`, '--rootfs', bb || '/', '--ephemeral', '--init', '/no-such-init']], /\[code ENOENT, step exec\]$/],
    [['exec', ['x', 'sh']], /put '--' before the command/],
    [['exec', ['x']], /missing '-- CMD'/],
    [['exec', ['x', '--']], /missing the command after '--'/],
    [['kill', []], /missing the machine name/],
    [['kill', ['x', '--signal', 'BOGUS']], /no machine named 'x'|--signal 'BOGUS'/],
    [['stop', ['x', '--timeout', 'soon']], /--timeout must be a number of milliseconds/],
    [['list', ['extra']], /takes no arguments/],
    [['strat', []], /unknown machine command 'strat'; did you mean 'start'\?/],
    [['exec', ['x', '--tyy', '--', 'sh']], /unknown flag --tyy.*did you mean --tty\?/],
  ];
  for (const [[sub, args], re] of cases) {
    const r = machine(sub, args);
    t.equal(r.status, 125, `${sub} ${args.join(' ')}`);
    t.match(oneErrorLine(t, r), re);
    t.equal(r.stdout, '', 'nothing on stdout');
  }
  t.same(listTable(), [], 'no failed start left anything behind');

  // A running machine's exec errors name the step.
  const name = `${prefix}-err`;
  startMachine(t, name);
  const missing = machine('exec', [name, '--', 'no-such-command-xyz']);
  t.equal(missing.status, 125);
  t.match(oneErrorLine(t, missing), /no-such-command-xyz.*\[code ENOENT, step exec\]$/);
  const bad = machine('exec', [name, '--cwd', 'relative', '--', 'true']);
  t.equal(bad.status, 125);
  t.match(oneErrorLine(t, bad), /^nsbox: --cwd 'relative'.*absolute path/);
  const sig = machine('kill', [name, '--signal', 'BOGUS']);
  t.equal(sig.status, 125);
  t.match(oneErrorLine(t, sig), /^nsbox: --signal 'BOGUS': /);
  t.equal(machine('stop', [name]).status, 0);
  t.equal(machine('destroy', [name]).status, 0);
});

t.test('--help lists the machine commands', async (t) => {
  const top = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  t.equal(top.status, 0);
  for (const sub of ['start', 'exec', 'stop', 'kill', 'freeze', 'thaw', 'stats', 'destroy', 'list']) {
    t.match(top.stdout, new RegExp(`nsbox machine .*\\b${sub}\\b`), `nsbox --help mentions machine ${sub}`);
  }
  const mh = spawnSync(process.execPath, [bin, 'machine', '--help'], { encoding: 'utf8' });
  t.equal(mh.status, 0);
  for (const f of ['--rootfs', '--init', '--ephemeral', '--state-dir', '--tty', '--wait-ready', '--memory', '--signal', '--json', '--force']) {
    t.match(mh.stdout, new RegExp(`${f}\\b`), `machine --help lists ${f}`);
  }
  const sub = spawnSync(process.execPath, [bin, 'machine', 'exec', '--help'], { encoding: 'utf8' });
  t.equal(sub.status, 0);
  t.equal(sub.stdout, mh.stdout, 'each subcommand takes --help too');
  const none = spawnSync(process.execPath, [bin, 'machine'], { encoding: 'utf8' });
  t.equal(none.status, 125);
  t.equal(none.stdout, '');
  t.match(none.stderr, /^Usage:/, 'the usage goes to stderr');
});
