// The nsbox command, run as a subprocess the way a user runs it: exit status, output on the
// terminal's own stdio, one-line errors with exit 125, signal forwarding, doctor.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn: spawnProcess, spawnSync } = require('node:child_process');

const bin = path.join(__dirname, '..', 'bin', 'nsbox.js');
const pkg = require('../package.json');
const { alive, oneErrorLine } = require('./helpers');

/** Runs `nsbox ...args` to completion. */
function nsbox(args, opts = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 30_000, ...opts });
  if (r.error) throw r.error;
  return r;
}

/** Starts `nsbox ...args` and resolves once its stdout has printed `ready`. */
function start(args) {
  const child = spawnProcess(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr })));
  const ready = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes('ready')) resolve();
    });
    exited.then((r) => reject(new Error(`nsbox exited before it was ready: ${JSON.stringify(r)}`)));
  });
  const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
  exited.then(() => clearTimeout(guard));
  return { child, ready, exited };
}

/** Host pids of the processes whose parent is `pid`. */
function childrenOf(pid) {
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** cgroups the CLI process `pid` created and left behind (nsbox names them `<pid>.<n>`). */
function leftCgroups(pid) {
  const { detectCgroupHost } = require('../dist/cgroup');
  const host = detectCgroupHost();
  if (!host.base) return [];
  try {
    return fs.readdirSync(host.base).filter((n) => n.startsWith(`${pid}.`));
  } catch {
    return [];
  }
}

function which(cmd) {
  for (const d of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) if (fs.existsSync(path.join(d, cmd))) return path.join(d, cmd);
  return null;
}

t.test('bin/nsbox.js is an executable node script', async (t) => {
  const st = fs.statSync(bin);
  t.ok(st.mode & 0o111, 'it is executable');
  t.match(fs.readFileSync(bin, 'utf8'), /^#!\/usr\/bin\/env node\n/, 'it starts with the node shebang');
  t.equal(pkg.bin.nsbox, 'bin/nsbox.js', 'package.json names it as the nsbox bin');
});

t.test("nsbox run passes the container's exit code through", async (t) => {
  t.equal(nsbox(['run', '--', 'sh', '-c', 'exit 7']).status, 7);
  t.equal(nsbox(['run', '--', 'sh', '-c', 'exit 0']).status, 0);
  t.equal(nsbox(['run', '--', 'false']).status, 1);
});

t.test("nsbox run writes the container's output straight to its own stdout and stderr", async (t) => {
  const r = nsbox(['run', '--', 'sh', '-c', 'echo out; echo err >&2']);
  t.equal(r.status, 0);
  t.equal(r.stdout, 'out\n');
  t.equal(r.stderr, 'err\n', 'nothing of nsbox mixed in');
});

t.test('nsbox run gives the container its own stdin', async (t) => {
  const r = nsbox(['run', '--', 'cat'], { input: 'hello from stdin\n' });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, 'hello from stdin\n');
});

t.test("the README one-liner `nsbox run -- sh -c 'hostname; id; ps'` works", async (t) => {
  const r = nsbox(['run', '--', 'sh', '-c', 'hostname; id; ps']);
  t.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines[0], 'nsbox', 'hostname is nsbox');
  t.match(lines[1], /^uid=0\(root\) gid=0\(root\)/, 'id shows root');
  const ps = lines.slice(2);
  t.match(ps[0], /PID/, 'ps prints its header');
  const rows = ps.slice(1).map((l) => l.trim().split(/\s+/));
  t.same(rows.find((r) => r[0] === '1')?.at(-1), 'sh', 'PID 1 is sh');
  t.same(rows.map((r) => r.at(-1)).sort(), ['ps', 'sh'], "ps sees only the container's processes");
});

t.test('nsbox run reports a missing command with exit 127 (as docker) and the step', async (t) => {
  const r = nsbox(['run', '--', 'no-such-command-xyz']);
  t.equal(r.status, 127);
  const line = oneErrorLine(t, r);
  t.match(line, /no-such-command-xyz/, 'names the command');
  t.match(line, /\[code ENOENT, step exec\]$/, 'ends with the code and step');
  t.same(leftCgroups(r.pid), [], 'no cgroup left behind');
});

t.test('nsbox run reports a missing bind source with the mount step', async (t) => {
  const r = nsbox(['run', '--bind', '/no/such/dir-xyz:/data', '--', 'true']);
  t.equal(r.status, 125);
  t.match(oneErrorLine(t, r), /\/no\/such\/dir-xyz.*\[code ENOENT, step mount\.bind\]$/);
});

t.test('nsbox run with --network none sees lo down', { skip: which('ip') ? false : 'no ip(8) on this host' }, async (t) => {
  const none = nsbox(['run', '--network', 'none', '--', 'ip', '-o', 'link']);
  t.equal(none.status, 0, none.stderr);
  const nl = none.stdout.trim().split('\n');
  t.equal(nl.length, 1, 'only one interface');
  t.match(nl[0], /^\d+: lo: <(?![^>]*\bUP\b)[^>]*>/, 'lo is there and not UP');
  const lo = nsbox(['run', '--network=loopback', '--', 'ip', '-o', 'link']);
  t.equal(lo.status, 0, lo.stderr);
  const ll = lo.stdout.trim().split('\n');
  t.equal(ll.length, 1, 'only one interface');
  t.match(ll[0], /^\d+: lo: <[^>]*\bUP\b[^>]*>/, 'with --network loopback lo is UP');
});

t.test("nsbox run with --network host sees the host's interfaces", async (t) => {
  const names = (s) => s.split('\n').slice(2).map((l) => l.split(':')[0].trim()).filter(Boolean).sort();
  const r = nsbox(['run', '--network', 'host', '--', 'cat', '/proc/net/dev']);
  t.equal(r.status, 0, r.stderr);
  t.same(names(r.stdout), names(fs.readFileSync('/proc/net/dev', 'utf8')));
});

t.test('nsbox run --hostname sets the UTS name', async (t) => {
  const a = nsbox(['run', '--hostname', 'box-one', '--', 'hostname']);
  t.equal(a.status, 0, a.stderr);
  t.equal(a.stdout, 'box-one\n');
  const b = nsbox(['run', '--hostname=box-two', '--', 'hostname']);
  t.equal(b.stdout, 'box-two\n', 'the --flag=value form works');
  t.not(os.hostname(), 'box-one', 'the host keeps its name');
});

t.test('nsbox run --env passes exactly the given variables', async (t) => {
  const r = nsbox(['run', '--env', 'A=1', '--env=B=x=y', '--env', 'EMPTY=', '--', 'env'], {
    env: { ...process.env, NSBOX_TEST_SECRET: 'leak' },
  });
  t.equal(r.status, 0, r.stderr);
  const vars = r.stdout.trim().split('\n').sort();
  t.same(vars, ['A=1', 'B=x=y', 'EMPTY=', 'HOME=/', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
});

t.test("nsbox run --env K copies K from nsbox's own environment", async (t) => {
  const r = nsbox(['run', '--env', 'NSBOX_TEST_COPY', '--env', 'NSBOX_TEST_UNSET', '--', 'env'], {
    env: { ...process.env, NSBOX_TEST_COPY: 'copied', NSBOX_TEST_UNSET: undefined },
  });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^NSBOX_TEST_COPY=copied$/m);
  t.notMatch(r.stdout, /NSBOX_TEST_UNSET/, 'a variable nsbox does not have is left out');
});

t.test('nsbox run --bind mounts a host dir read-only with :ro', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-cli-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'f'), 'from the host\n');
  const ro = nsbox(['run', '--bind', `${dir}:/data:ro`, '--', 'sh', '-c', 'cat /data/f; echo x > /data/g']);
  t.equal(ro.stdout, 'from the host\n', 'the host file is readable');
  t.not(ro.status, 0, 'writing fails');
  t.match(ro.stderr, /Read-only file system/);
  t.notOk(fs.existsSync(path.join(dir, 'g')), 'nothing was written on the host');

  const rw = nsbox(['run', `--bind=${dir}:/data`, '--', 'sh', '-c', 'echo written > /data/g']);
  t.equal(rw.status, 0, rw.stderr);
  t.equal(fs.readFileSync(path.join(dir, 'g'), 'utf8'), 'written\n', 'without :ro the container writes to the host dir');
});

t.test('nsbox run --tmpfs mounts a fresh writable tmpfs', async (t) => {
  const r = nsbox(['run', '--tmpfs', '/scratch:size=1M,mode=700', '--', 'sh', '-c', 'echo x > /scratch/f && grep " /scratch " /proc/mounts']);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^tmpfs \/scratch tmpfs rw\b.*size=1024k.*mode=700/);
});

t.test('nsbox run keeps the rootfs read-only unless --rw', async (t) => {
  const ro = nsbox(['run', '--', 'sh', '-c', 'touch /newfile']);
  t.not(ro.status, 0);
  t.match(ro.stderr, /Read-only file system/);
  const rw = nsbox(['run', '--rw', '--', 'sh', '-c', 'touch /newfile && echo ok']);
  t.equal(rw.status, 0, rw.stderr);
  t.equal(rw.stdout, 'ok\n');
});

t.test('nsbox run --user and --cwd set the credentials and working directory', async (t) => {
  const r = nsbox(['run', '--user', '65534:65534', '--cwd', '/tmp', '--', 'sh', '-c', 'id -u; id -g; pwd']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, '65534\n65534\n/tmp\n');
});

t.test('nsbox run --timeout kills and exits 137', async (t) => {
  const t0 = Date.now();
  const r = nsbox(['run', '--timeout', '300', '--', 'sleep', '20']);
  t.equal(r.status, 137, '128 + SIGKILL');
  t.equal(r.stderr, 'nsbox: timed out after 300 ms\n');
  t.ok(Date.now() - t0 < 10_000, 'it did not wait for the command');
  t.same(leftCgroups(r.pid), [], 'no cgroup left behind');
});

t.test('a signal-killed container exits 128+n', async (t) => {
  const r = nsbox(['run', '--init', '--', 'sh', '-c', 'kill -TERM $$; sleep 5']);
  t.equal(r.status, 128 + os.constants.signals.SIGTERM);
  const k = nsbox(['run', '--init', '--', 'sh', '-c', 'kill -USR1 $$; sleep 5']);
  t.equal(k.status, 128 + os.constants.signals.SIGUSR1);
});

t.test('nsbox forwards SIGTERM to the container', async (t) => {
  const p = start(['run', '--init', '--', 'sh', '-c', 'echo ready; exec sleep 20']);
  await p.ready;
  p.child.kill('SIGTERM');
  const r = await p.exited;
  t.equal(r.status, 128 + os.constants.signals.SIGTERM, 'the command died of the forwarded SIGTERM');
  t.equal(r.stderr, '');
  t.same(leftCgroups(p.child.pid), [], 'no cgroup left behind');
});

t.test('nsbox forwards SIGINT to a PID 1 that handles it', async (t) => {
  const p = start(['run', '--', 'sh', '-c', 'trap "echo got-int; exit 42" INT; echo ready; while :; do sleep 0.05; done']);
  await p.ready;
  p.child.kill('SIGINT');
  const r = await p.exited;
  t.equal(r.status, 42, "the container's own exit status");
  t.match(r.stdout, /got-int/);
});

t.test('a second signal kills a container that ignored the first, exit 137', async (t) => {
  // Without --init, sh is PID 1 and the kernel drops signals it has no handler for.
  const p = start(['run', '--', 'sh', '-c', 'echo ready; sleep 20']);
  await p.ready;
  p.child.kill('SIGINT');
  await new Promise((r) => setTimeout(r, 300));
  t.ok(alive(p.child.pid), 'the first SIGINT did not end it');
  p.child.kill('SIGINT');
  const r = await p.exited;
  t.equal(r.status, 137);
  t.match(r.stderr, /^nsbox: SIGINT again, killing the container\n$/);
});

t.test('killing nsbox kills the container', async (t) => {
  const p = start(['run', '--', 'sh', '-c', 'echo ready; sleep 20']);
  await p.ready;
  const kids = childrenOf(p.child.pid);
  t.equal(kids.length, 1, 'the container is a child of nsbox');
  p.child.kill('SIGKILL');
  await p.exited;
  let gone = false;
  for (let i = 0; i < 50 && !gone; i++) {
    gone = !alive(kids[0]);
    if (!gone) await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(gone, 'the container died with it');
  // A SIGKILLed nsbox cannot remove the container's (now empty) cgroup; tidy up after it.
  const { detectCgroupHost } = require('../dist/cgroup');
  for (const n of leftCgroups(p.child.pid)) fs.rmdirSync(path.join(detectCgroupHost().base, n));
});

t.test('unknown flags are rejected with a suggestion and exit 125', async (t) => {
  const r = nsbox(['run', '--hostnme', 'x', '--', 'true']);
  t.equal(r.status, 125);
  t.match(oneErrorLine(t, r), /unknown flag --hostnme.*did you mean --hostname\?/);
  const p = nsbox(['run', '--mem=64M', '--', 'true']);
  t.equal(p.status, 125);
  t.match(oneErrorLine(t, p), /did you mean --memory\?/, 'a prefix suggests the full flag');
  const top = nsbox(['rnu']);
  t.equal(top.status, 125);
  t.match(oneErrorLine(t, top), /unknown command 'rnu'; did you mean 'run'\?/);
});

t.test('usage errors exit 125 with one line and start nothing', async (t) => {
  const cases = [
    [['run', 'sh', '-c', 'true'], /put '--' before the command/],
    [['run', '--init'], /missing '-- CMD'/],
    [['run', '--'], /missing the command after '--'/],
    [['run', '--user', '1000:', '--', 'id'], /--user must be UID\[:GID\] or NAME/],
    [['run', '--user=root name', '--', 'id'], /--user must be UID\[:GID\] or NAME/],
    [['run', '--timeout', 'soon', '--', 'true'], /--timeout must be a number of milliseconds/],
    [['run', '--pids', 'many', '--', 'true'], /--pids must be a whole number/],
    [['run', '--hostname', '--', 'true'], /--hostname needs a value/],
    [['run', '--init=yes', '--', 'true'], /--init takes no value/],
    [['run', '--bind', 'a:b:c:d', '--', 'true'], /--bind must be SRC:DST/],
  ];
  for (const [args, re] of cases) {
    const r = nsbox(args);
    t.equal(r.status, 125, args.join(' '));
    t.match(oneErrorLine(t, r), re);
    t.equal(r.stdout, '', 'nothing on stdout');
  }
});

t.test('bad option values exit 125 with one line naming the flag', async (t) => {
  const n = nsbox(['run', '--network', 'bogus', '--', 'true']);
  t.equal(n.status, 125);
  t.match(oneErrorLine(t, n), /^nsbox: --network 'bogus': The "network" option must be one of/);
  const m = nsbox(['run', '--memory=12Q', '--', 'true']);
  t.equal(m.status, 125);
  t.match(oneErrorLine(t, m), /^nsbox: --memory '12Q': .*"limits\.memory"/);
  const c = nsbox(['run', '--cwd', 'relative', '--', 'true']);
  t.equal(c.status, 125);
  t.match(oneErrorLine(t, c), /--cwd 'relative'.*absolute path/);
});

t.test('limits the host cannot give fail with 125 naming the controller', async (t) => {
  const { probe } = require('..');
  const report = await probe();
  const r = nsbox(['run', '--memory', '64M', '--', 'true']);
  if (report.cgroup.controllers.includes('memory')) {
    t.equal(r.status, 0, `the memory controller is usable here: ${r.stderr}`);
  } else {
    t.equal(r.status, 125);
    t.match(oneErrorLine(t, r), /memory controller.*\[code ENOTSUP, step cgroup\.limits\]$/);
    t.same(leftCgroups(r.pid), [], 'no cgroup left behind');
  }
  const p = nsbox(['run', '--pids', '10', '--', 'true']);
  if (report.cgroup.controllers.includes('pids')) t.equal(p.status, 0, p.stderr);
  else {
    t.equal(p.status, 125);
    t.match(oneErrorLine(t, p), /pids controller.*\[code ENOTSUP, step cgroup\.limits\]$/);
  }
});

t.test('nsbox doctor --json prints the host report', async (t) => {
  const r = nsbox(['doctor', '--json']);
  t.equal(r.status, 0, r.stderr);
  const rep = JSON.parse(r.stdout);
  t.equal(rep.kernel, os.release());
  t.equal(rep.arch, process.arch);
  t.ok(['unified', 'hybrid', 'legacy', 'none'].includes(rep.cgroup.mode), 'a cgroup mode');
  t.ok(Array.isArray(rep.cgroup.controllers), 'the controllers');
  for (const k of ['clone3', 'pidfd', 'cloneIntoCgroup', 'cgroupKill', 'newMountApi', 'openat2', 'idmappedMounts', 'overlayfs', 'userNamespaces', 'unprivilegedUserNamespaces']) {
    t.type(rep.features[k], 'boolean', `features.${k}`);
  }
  t.ok(Array.isArray(rep.notes), 'notes');
});

t.test('nsbox doctor prints the host report for people', async (t) => {
  const r = nsbox(['doctor']);
  t.equal(r.status, 0, r.stderr);
  const rep = JSON.parse(nsbox(['doctor', '--json']).stdout);
  t.match(r.stdout, new RegExp(`^kernel\\s+${rep.kernel.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'));
  t.match(r.stdout, new RegExp(`^cgroup mode\\s+${rep.cgroup.mode}$`, 'm'));
  t.match(r.stdout, new RegExp(`^\\s+clone3\\s+${rep.features.clone3 ? 'yes' : 'no'}$`, 'm'));
  t.match(r.stdout, new RegExp(`^\\s+overlayfs\\s+${rep.features.overlayfs ? 'yes' : 'no'}$`, 'm'));
  for (const note of rep.notes) t.ok(r.stdout.includes(note), 'each note is printed');
  const bad = nsbox(['doctor', '--jsno']);
  t.equal(bad.status, 125);
  t.match(oneErrorLine(t, bad), /did you mean --json\?/);
});

t.test('bare nsbox machine prints its usage on stderr and exits 125', async (t) => {
  const r = nsbox(['machine']);
  t.equal(r.status, 125);
  t.match(r.stderr, /nsbox machine/);
  t.equal(r.stdout, '');
});

t.test('--help, --version and no arguments', async (t) => {
  const h = nsbox(['--help']);
  t.equal(h.status, 0);
  t.match(h.stdout, /nsbox run \[flags\] -- CMD ARGS/);
  t.equal(h.stderr, '');
  const rh = nsbox(['run', '--help']);
  t.equal(rh.status, 0);
  for (const f of ['--rootfs', '--memory', '--pids', '--cpu', '--timeout', '--network', '--bind', '--tmpfs', '--env', '--hostname', '--user', '--init', '--rw', '--cwd']) {
    t.match(rh.stdout, new RegExp(`^\\s+(-[a-z], )?${f}\\b`, 'm'), `run --help lists ${f}`);
  }
  const v = nsbox(['--version']);
  t.equal(v.status, 0);
  t.equal(v.stdout, `nsbox ${pkg.version}\n`);
  const none = nsbox([]);
  t.equal(none.status, 125);
  t.equal(none.stdout, '');
  t.match(none.stderr, /^Usage:/, 'the usage goes to stderr');
  // A switch given a value is a usage error that says so, not an "unknown flag" that suggests itself.
  for (const [args, msg] of [
    [['--help=1'], "nsbox: flag --help for 'nsbox' takes no value"],
    [['-h=x'], "nsbox: flag -h for 'nsbox' takes no value"],
    [['machine', '--help=1'], "nsbox: flag --help for 'nsbox machine' takes no value"],
    [['machine', '-h=2'], "nsbox: flag -h for 'nsbox machine' takes no value"],
  ]) {
    const r = nsbox(args);
    t.equal(r.status, 125, args.join(' '));
    t.equal(r.stderr.split(' (see')[0], msg);
  }
});
