// `nsbox run -d` and the docker-shaped commands around it (ps, logs, stop, rm), run as
// subprocesses the way a user runs them: the container outlives the `nsbox run -d` that started it,
// is listed and found by name, its output is in its log, its exit status is kept after it ends, and
// nothing is left once it is removed. Every container lives in a private --state-dir on an
// ephemeral overlay of the busybox fixture (never written).
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { alive, busyboxRootfs, machineStateDir, oneErrorLine } = require('./helpers');

const bin = path.join(__dirname, '..', 'bin', 'nsbox.js');
const { rootfs: bb, reason: noBusybox } = busyboxRootfs();

function nsbox(args, opts = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, ...opts });
  if (r.error) throw r.error;
  return r;
}

t.test('usage: what -d cannot do is refused with exit 125 and one line, before anything starts', async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-detached-usage-');
  const cases = [
    [['run', '-d', '--state-dir', sd, '--', 'true'], /-d needs --rootfs DIR or an IMAGE/],
    [['run', '-d', '-u', 'nosuchuser', '--state-dir', sd, '--rootfs', bb ?? '/', '--', 'true'], /--user 'nosuchuser': no such user in .*\/etc\/passwd/],
    [['run', '-d', '--read-only', '--state-dir', sd, '--rootfs', bb ?? '/', '--', 'true'], /--read-only cannot be used with -d/],
    [['run', '-d', '--name', 'Upper', '--state-dir', sd, '--rootfs', bb ?? '/', '--', 'true'], /with -d the name must match/],
    [['run', '--state-dir', sd, '--', 'true'], /--state-dir is for -d/],
    [['stop', '--state-dir', sd], /missing the container name/],
    [['logs', '--state-dir', sd, 'nosuch'], /no container named 'nosuch'/],
    [['ps', '--state-dir', sd, 'extra'], /'nsbox ps' takes no arguments/],
  ];
  for (const [argv, re] of cases) {
    const r = nsbox(argv);
    t.equal(r.status, 125, argv.join(' '));
    t.match(oneErrorLine(t, r), re);
  }
  t.same(fs.readdirSync(sd).filter((n) => !n.startsWith('.')), [], 'no state was written');
});

t.test('-d: the container outlives nsbox, is listed, logged, stopped and removed by name', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-detached-');
  const name = `d${process.pid}`;
  // The command reports, from inside, who it is and what PID 1 is, then waits for SIGTERM.
  const script = 'echo started; echo "uid=$(id -u) pid1=$(cat /proc/1/comm)"; echo to-stderr >&2; trap "echo got TERM; exit 7" TERM; while :; do sleep 0.1; done';
  const r = nsbox(['run', '-d', '--name', name, '--state-dir', sd, '--rootfs', bb, '--', 'sh', '-c', script]);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, `${name}\n`, 'prints the name');

  const ps = nsbox(['ps', '--json', '--state-dir', sd]);
  t.equal(ps.status, 0, ps.stderr);
  const [row] = JSON.parse(ps.stdout);
  t.equal(row.name, name);
  t.equal(row.status, 'running');
  t.same(row.command, ['sh', '-c', script]);
  t.ok(alive(row.pid), 'its PID 1 runs after nsbox run -d has exited');
  t.equal(row.exitStatus, null, 'no exit status while it runs');
  const table = nsbox(['ps', '--state-dir', sd]).stdout.split('\n');
  t.match(table[0], /^NAME\s+PID\s+STATUS\s+COMMAND$/);
  t.match(table[1], new RegExp(`^${name}\\s+${row.pid}\\s+running\\s+sh -c echo started`));

  // Its output, followed (logs -f) until the line after the trap is there, then Ctrl-C ends it.
  const { spawn } = require('node:child_process');
  const follow = spawn(process.execPath, [bin, 'logs', '-f', name, '--state-dir', sd], { stdio: ['ignore', 'pipe', 'pipe'] });
  let followed = '';
  follow.stdout.on('data', (d) => {
    followed += d;
    if (followed.includes('to-stderr\n')) follow.kill('SIGINT');
  });
  t.equal(await new Promise((resolve) => follow.on('close', resolve)), 0, 'logs -f ends on SIGINT with status 0');
  const expected = 'started\nuid=0 pid1=nsbox-init\nto-stderr\n';
  t.equal(followed, expected, 'stdout and stderr of the command, in order; its PID 1 is nsbox-init');
  const logs = nsbox(['logs', name, '--state-dir', sd]);
  t.equal(logs.status, 0, logs.stderr);
  t.equal(logs.stdout, expected, 'logs prints the same');

  const stop = nsbox(['stop', name, '--state-dir', sd]);
  t.equal(stop.status, 0, stop.stderr);
  t.equal(stop.stdout, `${name}\n`);
  t.notOk(alive(row.pid), 'stopped: PID 1 is gone');
  t.match(nsbox(['logs', name, '--state-dir', sd]).stdout, /got TERM\n$/, 'stop sent SIGTERM to the command');
  t.same(JSON.parse(nsbox(['ps', '--json', '--state-dir', sd]).stdout), [], 'ps lists running containers only');
  const [after] = JSON.parse(nsbox(['ps', '-a', '--json', '--state-dir', sd]).stdout);
  t.equal(after.status, 'exited (7)');
  t.equal(after.exitStatus, 7, "the command's exit code is kept");
  t.same(after.exit, { exitCode: 7, signal: null });
  t.match(nsbox(['ps', '-a', '--state-dir', sd]).stdout, new RegExp(`${name}\\s+-\\s+exited \\(7\\)`));

  const rm = nsbox(['rm', name, '--state-dir', sd]);
  t.equal(rm.status, 0, rm.stderr);
  t.equal(rm.stdout, `${name}\n`);
  t.notOk(fs.existsSync(path.join(sd, name)), 'its state directory (and log) is gone');
  if (row.cgroup) t.notOk(fs.existsSync(row.cgroup), 'its cgroup is gone');
  t.same(JSON.parse(nsbox(['ps', '-a', '--json', '--state-dir', sd]).stdout), []);
  const again = nsbox(['rm', name, '--state-dir', sd]);
  t.equal(again.status, 125);
  t.match(oneErrorLine(t, again), /no container named/);
});

t.test('-d: the exit code of a command that ends by itself is kept; logs -f ends with it', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-detached-exit-');
  const name = `e${process.pid}`;
  // The command waits for a file the test makes, so logs -f is surely following before it ends.
  const gate = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'nsbox-gate-'));
  t.teardown(() => fs.rmSync(gate, { recursive: true, force: true }));
  const r = nsbox(['run', '-d', '--name', name, '--state-dir', sd, '--rootfs', bb, '-v', `${gate}:/gate`, '--', 'sh', '-c', 'echo one; while [ ! -e /gate/go ]; do sleep 0.05; done; echo two; exit 3']);
  t.equal(r.status, 0, r.stderr);
  const { spawn } = require('node:child_process');
  const follow = spawn(process.execPath, [bin, 'logs', '-f', name, '--state-dir', sd], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  follow.stdout.on('data', (d) => {
    out += d;
    if (out.includes('one\n')) fs.writeFileSync(path.join(gate, 'go'), '');
  });
  const code = await new Promise((resolve) => follow.on('close', resolve));
  t.equal(code, 0, 'logs -f returns once the container has stopped');
  t.equal(out, 'one\ntwo\n', 'what was written before and while following');
  const [row] = JSON.parse(nsbox(['ps', '-a', '--json', '--state-dir', sd]).stdout);
  t.equal(row.state, 'stopped');
  t.equal(row.exitStatus, 3);
  t.equal(nsbox(['rm', name, '--state-dir', sd]).status, 0);
  t.notOk(fs.existsSync(path.join(sd, name)));
});

/** Waits (no time limit of its own: tap's) until the container `name` has stopped; its log. */
function logsWhenStopped(t, sd, name) {
  const r = nsbox(['logs', '-f', name, '--state-dir', sd]);
  t.equal(r.status, 0, r.stderr);
  return r.stdout;
}

t.test('-d -u and -w: the command (not its init) runs as the user, with its groups, in the directory', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-detached-user-');
  const script = 'echo "id=$(id -u):$(id -g):$(id -G) pwd=$(pwd) home=$HOME pid1=$(stat -c %u /proc/1) caps=$(grep CapEff /proc/self/status | cut -f2)"';
  const cases = [
    // NAME: looked up in the rootfs's /etc/passwd as nsbox run -u does; HOME is its home.
    [['-u', 'nobody', '-w', '/made/for/it'], /^id=65534:65534:65534 pwd=\/made\/for\/it home=\/ pid1=0 caps=0000000000000000\n$/],
    [['-u', '1234:4321'], /^id=1234:4321:4321 pwd=\/ home= pid1=0 caps=0000000000000000\n$/],
    // Supplementary groups as given (UID:GID:G1,G2), set by setgroups in the init's child.
    [['-u', '1234:4321:77,88'], /^id=1234:4321:4321 77 88 pwd=\/ home= pid1=0 caps=0000000000000000\n$/],
    [['-w', '/tmp'], /^id=0:0:0 pwd=\/tmp home= pid1=0 caps=[0-9a-f]*[1-9a-f][0-9a-f]*\n$/],
  ];
  for (const [i, [flags, re]] of cases.entries()) {
    const name = `u${i}-${process.pid}`;
    const r = nsbox(['run', '-d', ...flags, '--name', name, '--state-dir', sd, '--rootfs', bb, '--', 'sh', '-c', script]);
    if (r.status !== 0 && /is not mapped in the container's user namespace/.test(r.stderr)) {
      // Rootless without newuidmap (the unshare lane): only the caller's own id is mapped (uid 0 inside).
      t.equal(r.status, 125, `${flags.join(' ')}: refused before the start`);
      t.match(oneErrorLine(t, r), /--user '[^']+': The "user.uid" option is not mapped/);
      continue;
    }
    t.equal(r.status, 0, r.stderr);
    t.match(logsWhenStopped(t, sd, name), re, flags.join(' '));
    const [row] = JSON.parse(nsbox(['ps', '-a', '--json', '--state-dir', sd]).stdout).filter((x) => x.name === name);
    t.equal(row.exitStatus, 0);
    t.equal(nsbox(['rm', name, '--state-dir', sd]).status, 0);
  }
  t.same(fs.readdirSync(sd).filter((n) => !n.startsWith('.')), [], 'no state left');
});

t.test('-d -w: a directory the command cannot enter ends it with 125 and a line in its log', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-detached-cwd-');
  const name = `w${process.pid}`;
  // /etc/passwd is a file: the init's child cannot chdir into it (ENOTDIR) and never runs the command.
  const r = nsbox(['run', '-d', '-w', '/etc/passwd', '--name', name, '--state-dir', sd, '--rootfs', bb, '--', 'echo', 'RAN']);
  t.equal(r.status, 0, r.stderr);
  t.equal(logsWhenStopped(t, sd, name), 'nsbox-init: chdir /etc/passwd: errno 20\n');
  const [row] = JSON.parse(nsbox(['ps', '-a', '--json', '--state-dir', sd]).stdout);
  t.same([row.status, row.exitStatus], ['exited (125)', 125]);
  t.equal(nsbox(['rm', name, '--state-dir', sd]).status, 0);
  t.same(fs.readdirSync(sd).filter((n) => !n.startsWith('.')), [], 'no state left');
});

t.test('-d --rm: an exited container is removed by the next command that sees it, a stopped one at once', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-detached-rm-');
  const name = `r${process.pid}`;
  // It runs until told (by a file made through nsbox machine exec), so ps sees it running first.
  const script = 'echo "uid=$(id -u)"; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo bye';
  const r = nsbox(['run', '-d', '--rm', '-u', '0:0', '--name', name, '--state-dir', sd, '--rootfs', bb, '--', 'sh', '-c', script]);
  t.equal(r.status, 0, r.stderr);
  const [row] = JSON.parse(nsbox(['ps', '--json', '--state-dir', sd]).stdout);
  t.same([row.name, row.status, row.autoRemove], [name, 'running', true], 'listed while it runs, with autoRemove');
  // logs -f, once it has printed the first line (so has found it and opened its log), follows it
  // to its end; then the command is told to end.
  const follow = require('node:child_process').spawn(process.execPath, [bin, 'logs', '-f', name, '--state-dir', sd], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise((resolve) => follow.stdout.on('data', (d) => {
    out += d;
    if (out.includes('\n')) resolve();
  }));
  t.equal(nsbox(['machine', 'exec', name, '--state-dir', sd, '--', 'touch', '/tmp/go']).status, 0);
  const [code] = await new Promise((resolve) => follow.on('close', (...a) => resolve(a)));
  t.equal(code, 0);
  t.equal(out, 'uid=0\nbye\n', 'logs -f followed it to its end');
  t.ok(fs.existsSync(path.join(sd, name)), 'exited, not yet removed: no command looked since');
  t.same(JSON.parse(nsbox(['ps', '-a', '--json', '--state-dir', sd]).stdout), [], 'ps -a does not show it');
  t.notOk(fs.existsSync(path.join(sd, name)), 'ps removed its state and log');
  // The cgroup (where the host gives one) went with it.
  if (row.cgroup) t.notOk(fs.existsSync(row.cgroup), 'its cgroup is gone');
  const logs = nsbox(['logs', name, '--state-dir', sd]);
  t.equal(logs.status, 125);
  t.match(oneErrorLine(t, logs), /no container named/);

  // The name is free again once it has exited, with nothing run in between (run -d removes it);
  // stop removes an --rm container at once.
  const again = nsbox(['run', '-d', '--rm', '--name', name, '--state-dir', sd, '--rootfs', bb, '--', 'true']);
  t.equal(again.status, 0, again.stderr);
  // Until `true` has exited, the name is taken (its PID 1 runs): wait for that through the state,
  // which reading does not remove.
  const pid1 = JSON.parse(fs.readFileSync(path.join(sd, name, 'state.json'), 'utf8')).pid;
  while (alive(pid1)) await new Promise((res) => setTimeout(res, 50));
  t.equal(nsbox(['run', '-d', '--rm', '--name', name, '--state-dir', sd, '--rootfs', bb, '--', 'sleep', '1000']).status, 0, 'the exited one of that name was removed by run -d');
  const stop = nsbox(['stop', name, '--state-dir', sd]);
  t.equal(stop.status, 0, stop.stderr);
  t.same(fs.readdirSync(sd).filter((n) => !n.startsWith('.')), [], 'stop removed it: no state left');
});

t.test('-d: a killed command shows the signal; rm -f kills and removes a running one', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-detached-kill-');
  const a = `k${process.pid}`;
  const b = `f${process.pid}`;
  // `sh -c 'trap "" TERM; ...'` ignores SIGTERM: stop has to kill it.
  t.equal(nsbox(['run', '-d', '--name', a, '--state-dir', sd, '--rootfs', bb, '--', 'sh', '-c', 'trap "" TERM; while :; do sleep 0.1; done']).status, 0);
  t.equal(nsbox(['run', '-d', '--name', b, '--state-dir', sd, '--rootfs', bb, '--', 'sleep', '1000']).status, 0);
  const [pa, pb] = JSON.parse(nsbox(['ps', '--json', '--state-dir', sd]).stdout).map((x) => x.pid);
  t.equal(nsbox(['stop', '--timeout', '300', a, '--state-dir', sd]).status, 0);
  const [row] = JSON.parse(nsbox(['ps', '-a', '--json', '--state-dir', sd]).stdout).filter((x) => x.name === a);
  t.same([row.status, row.exitStatus], ['killed (SIGKILL)', 137], 'killed after the timeout: 128+9');
  const busy = nsbox(['rm', b, '--state-dir', sd]);
  t.equal(busy.status, 125);
  t.match(oneErrorLine(t, busy), /still running; stop it first \[code EBUSY, step destroy\]/);
  const rm = nsbox(['rm', '-f', a, b, '--state-dir', sd]);
  t.equal(rm.status, 0, rm.stderr);
  t.equal(rm.stdout, `${a}\n${b}\n`);
  t.notOk(alive(pa) || alive(pb), 'both PID 1s are gone');
  t.same(fs.readdirSync(sd).filter((n) => !n.startsWith('.')), [], 'no state left');
});

t.test('-d: a command that is not found fails the start (127) and leaves nothing', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-detached-enoent-');
  const r = nsbox(['run', '-d', '--name', `n${process.pid}`, '--state-dir', sd, '--rootfs', bb, '--', 'no-such-command']);
  t.equal(r.status, 127, r.stderr);
  t.match(oneErrorLine(t, r), /ENOENT.*step exec/);
  t.equal(r.stdout, '', 'no name printed');
  t.same(fs.readdirSync(sd).filter((n) => !n.startsWith('.')), [], 'no state left');
  t.same(JSON.parse(nsbox(['ps', '-a', '--json', '--state-dir', sd]).stdout), []);
});

t.test("the console log is capped: output past the limit truncates it, which starts again with a line saying so", { skip: noBusybox }, async (t) => {
  const { Machine } = require('..');
  const sd = machineStateDir(t, 'nsbox-cli-detached-cap-');
  const base = { rootfs: bb, ephemeral: true, stateDir: sd };
  await t.rejects(Machine.start({ ...base, name: 'x', command: ['true'], consoleLimit: 100 }), { code: 'ERR_OUT_OF_RANGE' }, 'at least 4096');
  await t.rejects(Machine.start({ ...base, name: 'x', consoleLimit: 8192 }), { code: 'ERR_INVALID_ARG_VALUE' }, 'only with a command');
  await t.rejects(Machine.start({ ...base, name: 'x', command: ['true'], init: ['/bin/sh'] }), { code: 'ERR_INVALID_ARG_VALUE' }, 'a command needs the builtin init');
  await t.rejects(Machine.start({ ...base, name: 'x', user: { uid: 1, gid: 1 } }), { code: 'ERR_INVALID_ARG_VALUE', message: /needs command/ }, 'user only with a command');
  await t.rejects(Machine.start({ ...base, name: 'x', cwd: '/tmp' }), { code: 'ERR_INVALID_ARG_VALUE', message: /needs command/ }, 'cwd only with a command');
  await t.rejects(Machine.start({ ...base, name: 'x', autoRemove: true }), { code: 'ERR_INVALID_ARG_VALUE', message: /needs command/ }, 'autoRemove only with a command');
  await t.rejects(Machine.start({ ...base, name: 'x', command: ['true'], cwd: 'tmp' }), { name: 'TypeError' }, 'cwd is an absolute path');
  t.same(fs.readdirSync(sd).filter((n) => !n.startsWith('.')), [], 'nothing was started');

  const name = `c${process.pid}`;
  // 300 lines of 50 bytes (15000 bytes) into a 4096-byte log, then one line on stderr.
  const script = 'i=100; while [ $i -lt 400 ]; do echo "line $i 0123456789012345678901234567890123456789"; i=$((i+1)); done; echo last >&2; exit 5';
  await Machine.start({ ...base, name, command: ['sh', '-c', script], consoleLimit: 4096 });
  const follow = nsbox(['logs', '-f', name, '--state-dir', sd]);
  t.equal(follow.status, 0, 'logs -f returns when it stops');
  const log = fs.readFileSync(path.join(sd, name, 'console.log'), 'utf8');
  t.ok(log.length <= 4096, `the log holds at most 4096 bytes (${log.length})`);
  t.match(log, /^nsbox-init: the console log reached its size limit and was started again\n(line \d+ 0123456789012345678901234567890123456789\n)+last\n$/, 'the note, then whole lines, the newest last');
  t.match(log, /line 399 0123456789012345678901234567890123456789\nlast\n$/);
  t.equal(nsbox(['logs', name, '--state-dir', sd]).stdout, log, 'nsbox logs prints it');
  const [row] = JSON.parse(nsbox(['ps', '-a', '--json', '--state-dir', sd]).stdout);
  t.equal(row.exitStatus, 5);
  t.equal(nsbox(['rm', name, '--state-dir', sd]).status, 0);
});

/** A one-layer OCI layout of the directory `src`, with `config` in its image config. */
function ociLayoutOf(src, dir, config) {
  const crypto = require('node:crypto');
  const blobs = path.join(dir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const put = (buf) => {
    const d = crypto.createHash('sha256').update(buf).digest('hex');
    fs.writeFileSync(path.join(blobs, d), buf);
    return { digest: `sha256:${d}`, size: buf.length };
  };
  const tar = spawnSync('tar', ['-C', src, '-cf', '-', '.'], { maxBuffer: 1 << 28 });
  if (tar.status !== 0) throw new Error(`tar: ${tar.stderr}`);
  const layer = put(tar.stdout);
  const arch = { x64: 'amd64', arm64: 'arm64' }[process.arch] ?? process.arch;
  const cfg = put(Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] }, config })));
  const manifest = put(Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
  })));
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest }] }));
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return dir;
}

t.test('-d IMAGE: the image\'s Cmd (or COMMAND), Env, User and WorkingDir (-u and -w override them)', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-detached-image-');
  const scratch = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'nsbox-cli-detached-image-'));
  t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const store = path.join(scratch, 'store');
  const imp = (tag, config) => nsbox(['image', 'import', '--store', store, '--tag', tag, ociLayoutOf(bb, path.join(scratch, tag.replace(/\W/g, '_')), config)]);
  t.equal(imp('local/d:1', { Cmd: ['sh', '-c', 'echo "from the image: $IMG"; exit 2'], Env: ['IMG=yes'] }).status, 0);
  const who = ['sh', '-c', 'echo "$(id -u):$(id -g) $(pwd)"'];
  t.equal(imp('local/d:wd', { Cmd: who, WorkingDir: '/data' }).status, 0);
  t.equal(imp('local/d:user', { Cmd: who, User: '1000:1001' }).status, 0);

  const a = `i${process.pid}`;
  const b = `j${process.pid}`;
  const r = nsbox(['run', '-d', '--name', a, '--state-dir', sd, '--store', store, 'local/d:1']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, `${a}\n`);
  t.equal(nsbox(['logs', '-f', a, '--state-dir', sd]).stdout, 'from the image: yes\n', "its Cmd, with its Env");
  const r2 = nsbox(['run', '-d', '--name', b, '--state-dir', sd, '--store', store, 'local/d:1', 'sh', '-c', 'echo given; exit 4']);
  t.equal(r2.status, 0, r2.stderr);
  t.equal(nsbox(['logs', '-f', b, '--state-dir', sd]).stdout, 'given\n', 'COMMAND replaces Cmd');
  const rows = JSON.parse(nsbox(['ps', '-a', '--json', '--state-dir', sd]).stdout);
  t.same(rows.map((x) => [x.name, x.image, x.exitStatus]), [[a, 'local/d:1', 2], [b, 'local/d:1', 4]].sort());
  const runs = [
    ['local/d:wd', [], '0:0 /data\n'],
    ['local/d:wd', ['-w', '/tmp'], '0:0 /tmp\n'],
    ['local/d:user', [], '1000:1001 /\n'],
    ['local/d:user', ['-u', '0:0'], '0:0 /\n'],
  ];
  const names = [a, b];
  for (const [i, [tag, flags, out]] of runs.entries()) {
    const name = `x${i}-${process.pid}`;
    const rr = nsbox(['run', '-d', ...flags, '--name', name, '--state-dir', sd, '--store', store, tag]);
    if (rr.status !== 0 && /is not mapped in the container's user namespace/.test(rr.stderr)) {
      t.equal(rr.status, 125, `${tag}: rootless with only its own id mapped, refused before the start`);
      t.match(oneErrorLine(t, rr), /The "user.uid" option is not mapped/);
      continue;
    }
    t.equal(rr.status, 0, rr.stderr);
    t.equal(nsbox(['logs', '-f', name, '--state-dir', sd]).stdout, out, `${tag} ${flags.join(' ')}`);
    names.push(name);
  }
  t.equal(nsbox(['rm', ...names, '--state-dir', sd]).status, 0);
  t.same(fs.readdirSync(sd).filter((n) => !n.startsWith('.')), [], 'no state left');
});

// Review (h-review): the init's fds 1, 2 and 3 are the host's console.log and exit-status. Root in
// a detached container (app capabilities, no CAP_SYS_PTRACE) reopened them through /proc/1/fd/N:
// wrote past the log cap, forged the exit status, chmod 4777 and chown'd the host's files.
t.test('a detached container cannot reach its init\'s host files through /proc/1/fd', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-detached-fd-');
  const name = 'fdreach';
  const script = 'for f in 1 2 3; do echo x >> /proc/1/fd/$f && echo REOPENED-$f; chmod 4777 /proc/1/fd/$f && echo CHMOD-$f; done; echo done';
  const r = nsbox(['run', '-d', '--name', name, '--state-dir', sd, '--rootfs', bb, '--', '/bin/sh', '-c', script]);
  t.equal(r.status, 0, r.stderr);
  for (let i = 0; i < 100 && !/done/.test(readLog(sd, name)); i++) await new Promise((res) => setTimeout(res, 100));
  const log = readLog(sd, name);
  t.match(log, /done/);
  t.notMatch(log, /REOPENED|CHMOD/, 'no fd of the init reopens');
  for (const f of ['console.log', 'exit-status']) t.equal(fs.statSync(path.join(sd, name, f)).mode & 0o7777, 0o600, `${f} keeps mode 0600`);
  nsbox(['rm', '-f', name, '--state-dir', sd]);
});

function readLog(sd, name) {
  try {
    return fs.readFileSync(path.join(sd, name, 'console.log'), 'utf8');
  } catch {
    return '';
  }
}
