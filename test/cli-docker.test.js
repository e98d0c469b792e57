// nsbox run in docker's shape (issue #21): each docker flag parsed into the library's option
// (parseRun, nothing started), flags nsbox cannot honour refused by name, and a handful run end
// to end on the busybox rootfs, checked from inside.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { parseRun } = require('../dist/cli');
const { busyboxRootfs } = require('./helpers');

const bin = path.join(__dirname, '..', 'bin', 'nsbox.js');

function nsbox(args, opts = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 30_000, ...opts });
  if (r.error) throw r.error;
  return r;
}

/** parseRun's error message for argv, or 'no error'. */
function err(argv) {
  try {
    parseRun(argv);
  } catch (e) {
    return `${e.name}: ${e.message}`;
  }
  return 'no error';
}

t.test('docker flags land in the library options', async (t) => {
  const envDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-envfile-'));
  t.teardown(() => fs.rmSync(envDir, { recursive: true, force: true }));
  const envFile = path.join(envDir, 'env');
  fs.writeFileSync(envFile, '# comment\n\nFROM_FILE=1\nNSBOX_DOCKER_TEST\nSPACED=a b\r\n');
  process.env.NSBOX_DOCKER_TEST = 'copied';
  const p = parseRun([
    '-v', '/tmp:/mnt', '--volume=/srv:/srv:ro', '-v/opt:/o:rw',
    '--mount', 'type=bind,source=/etc,target=/e,readonly', '--mount', 'type=tmpfs,dst=/t,tmpfs-size=1048576,tmpfs-mode=1770',
    '-e', 'A=1', '-e=B=2', '-eC=3', '--env', 'NSBOX_DOCKER_TEST', '-e', 'NSBOX_DOCKER_UNSET', '--env-file', envFile,
    '-w', '/work', '-m', '256m', '--cpus', '1.5', '--pids-limit', '64', '--read-only',
    '--cap-add', 'NET_ADMIN', '--cap-add=SYS_PTRACE', '--cap-drop', 'ALL',
    '--security-opt', 'seccomp=unconfined', '--security-opt', 'no-new-privileges',
    '--userns', 'private', '--hostname', 'h1', '--network', 'none', '--init',
    '--rm', '--name', 'web-1', '-i', '--json', '-u', '1000:1000',
    '--', 'sh', '-c', 'true',
  ]);
  t.same(p.options, {
    command: ['sh', '-c', 'true'],
    mounts: [
      { type: 'bind', source: '/tmp', target: '/mnt', readonly: false },
      { type: 'bind', source: '/srv', target: '/srv', readonly: true },
      { type: 'bind', source: '/opt', target: '/o', readonly: false },
      { type: 'bind', source: '/etc', target: '/e', readonly: true },
      { type: 'tmpfs', target: '/t', size: 1048576, mode: 0o1770 },
    ],
    env: { A: '1', B: '2', C: '3', NSBOX_DOCKER_TEST: 'copied', FROM_FILE: '1', SPACED: 'a b' },
    cwd: '/work',
    limits: { memory: '256m', cpu: 1.5, pids: 64 },
    readonly: true,
    capabilities: { add: ['NET_ADMIN', 'SYS_PTRACE'], drop: ['ALL'] },
    seccomp: 'none',
    userns: true,
    hostname: 'h1',
    network: 'none',
    init: true,
    user: { uid: 1000, gid: 1000 },
  });
  t.same([p.name, p.json, p.interactive, p.userSpec], ['web-1', true, true, undefined], '--name, --json and -i are the CLI\'s own');

  t.same(parseRun(['-u', 'nobody', '--', 'id']).userSpec, 'nobody', '-u NAME is looked up at start');
  t.same(parseRun(['-u', '1000', '--', 'id']).userSpec, '1000', '-u UID alone takes its gid from /etc/passwd');
  t.equal(parseRun(['-u', '1000', '--', 'id']).options.user, undefined);
  t.same(parseRun(['--pids-limit', '-1', '--', 'true']).options.limits, undefined, '--pids-limit -1 is no limit');
  t.same(parseRun(['--userns=host', '--', 'true']).options.userns, false);
  t.same(parseRun(['-p', '8080:80/tcp', '--', 'true']).options.network, { ports: [{ host: 8080, container: 80 }] }, '-p is --publish');
  t.same(parseRun(['-v', './x:/x', '--', 'true']).options.mounts, [{ type: 'bind', source: path.resolve('x'), target: '/x', readonly: false }], 'a relative ./ path is made absolute');
  t.same(parseRun(['-m', '1g', '--memory=512k', '--', 'true']).options.limits, { memory: '512k' }, 'the last one wins');
  t.same(parseRun(['--read-only', '--rw', '--', 'true']).options.readonly, false);
  t.same([parseRun(['-d', '--rootfs', '/r', '--', 'true']).detach, parseRun(['--', 'true']).detach], [true, false], '-d: detached (cli-detached.test.js)');
});

t.test("docker's shape: IMAGE then its command; combined short flags", async (t) => {
  const p = parseRun(['-i', '-e', 'X=1', 'busybox', 'sh', '-c', 'echo -v']);
  t.same([p.options.image, p.options.command, p.options.env, p.interactive], ['busybox', ['sh', '-c', 'echo -v'], { X: '1' }, true], 'flags after IMAGE are the command\'s');
  t.same(parseRun(['-iw/d', '--', 'true']).options.cwd, '/d', '-iw/d: -i, then -w takes the rest of the word');
  t.same(parseRun(['-iv', '/a:/b', '--', 'true']).options.mounts, [{ type: 'bind', source: '/a', target: '/b', readonly: false }], '-iv A:B: -v takes the next argument');
});

t.test('-it and -ti: a tty and interactive input (the terminal itself: test/22-app-tty.test.js)', async (t) => {
  for (const f of ['-it', '-ti']) {
    const p = parseRun([f, 'busybox']);
    t.same([p.options.tty, p.interactive, p.options.image], [true, true, 'busybox'], f);
  }
  t.same([parseRun(['-t', '--', 'sh']).options.tty, parseRun(['-t', '--', 'sh']).interactive], [true, false], '-t alone');
});

t.test('unsupported and bad values: one message naming the flag', async (t) => {
  const cases = [
    [['--ulimit', 'nofle=1024', 'busybox'], /^UsageError: --ulimit 'nofle=1024': unknown resource 'nofle' \(one of as, core, .*nofile/],
    [['--ulimit', 'nofile', 'busybox'], /^UsageError: --ulimit must be NAME=SOFT\[:HARD\]/],
    [['--ulimit', 'nofile=1k', 'busybox'], /^UsageError: --ulimit 'nofile=1k': '1k' is not a whole number, -1 or unlimited/],
    [['-v', 'data:/data', 'busybox'], /--volume 'data:\/data': named volumes are not supported/],
    [['-v', '/data', 'busybox'], /--volume '\/data': anonymous volumes are not supported/],
    [['-v', '/a:b', 'busybox'], /--volume '\/a:b': the container path must be absolute/],
    [['-v', '/a:/b:z', 'busybox'], /--volume '\/a:\/b:z': option 'z' is not supported/],
    [['--mount', 'type=volume,source=v,target=/v', 'busybox'], /--mount .*type=volume \(named volumes\) is not supported/],
    [['--mount', 'type=bind,source=/a', 'busybox'], /--mount .* needs target=PATH/],
    [['--mount', 'type=bind,source=/a,target=/b,bind-propagation=shared', 'busybox'], /--mount .*'bind-propagation' not supported/],
    [['--env-file', '/no/such/file', 'busybox'], /--env-file '\/no\/such\/file': cannot read it \(ENOENT\)/],
    [['-e', '=x', 'busybox'], /--env must be K=V/],
    [['-u', 'a b', 'busybox'], /--user must be UID\[:GID\] or NAME/],
    [['--cpus', '0', 'busybox'], /--cpus must be more than 0/],
    [['--cpus', 'many', 'busybox'], /--cpus must be a number/],
    [['--pids-limit', 'x', 'busybox'], /--pids-limit must be a whole number/],
    [['--security-opt', 'seccomp=/etc/profile.json', 'busybox'], /--security-opt .*a docker seccomp profile file is not supported/],
    [['--security-opt', 'apparmor=x', 'busybox'], /--security-opt 'apparmor=x': not supported/],
    [['--security-opt', 'no-new-privileges=false', 'busybox'], /always set .* cannot be turned off/],
    [['--userns', 'keep-id', 'busybox'], /--userns must be host .* or private/],
    [['--name', '-bad', 'busybox'], /--name must match/],
    [['-p', '53:53/udp', 'busybox'], /--publish '53:53\/udp': only TCP ports are forwarded/],
    [['--rm=yes', 'busybox'], /--rm takes no value/],
  ];
  for (const [argv, re] of cases) t.match(err(argv), re, argv.join(' '));
});

const { rootfs: bb, reason } = busyboxRootfs();

t.test('end to end on the busybox rootfs', { skip: bb ? false : reason }, async (t) => {
  const host = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-docker-'));
  t.teardown(() => fs.rmSync(host, { recursive: true, force: true }));
  fs.writeFileSync(path.join(host, 'hello'), 'from the host\n');
  const base = ['run', '--rootfs', bb];

  const v = nsbox([...base, '-v', `${host}:/data`, '--', 'sh', '-c', 'cat /data/hello && echo new > /data/new']);
  t.equal(v.status, 0, v.stderr);
  t.equal(v.stdout, 'from the host\n', '-v: the host dir is seen');
  t.equal(fs.readFileSync(path.join(host, 'new'), 'utf8'), 'new\n', '-v: and written to');
  const ro = nsbox([...base, '-v', `${host}:/data:ro`, '--', 'sh', '-c', 'echo x > /data/x']);
  t.not(ro.status, 0, '-v ...:ro is read-only');
  t.notOk(fs.existsSync(path.join(host, 'x')));
  const mnt = nsbox([...base, '--mount', `type=bind,src=${host},dst=/data,readonly`, '--', 'sh', '-c', 'cat /data/hello; echo x > /data/y']);
  t.equal(mnt.stdout, 'from the host\n', '--mount type=bind');
  t.not(mnt.status, 0, '--mount ...,readonly is read-only');

  process.env.NSBOX_DOCKER_E2E = 'passed-through';
  const e = nsbox([...base, '-e', 'A=1', '-e', 'NSBOX_DOCKER_E2E', '--', 'sh', '-c', 'echo "$A $NSBOX_DOCKER_E2E"'], { env: process.env });
  t.equal(e.stdout, '1 passed-through\n', '-e K=V and -e K');

  const w = nsbox([...base, '-w', '/tmp', '--', 'pwd']);
  t.equal(w.stdout, '/tmp\n', '-w');

  const u = nsbox([...base, '-u', 'nobody', '--', 'sh', '-c', 'id -u; id -g; echo $HOME']);
  t.equal(u.stdout, '65534\n65534\n/\n', "-u NAME: uid, primary gid and home from the rootfs's /etc/passwd");
  const un = nsbox([...base, '-u', '65534', '--', 'id', '-g']);
  t.equal(un.stdout, '65534\n', '-u UID alone: the gid of its /etc/passwd entry');
  const ug = nsbox([...base, '-u', '1234:5678', '--', 'sh', '-c', 'id -u; id -g']);
  t.equal(ug.stdout, '1234\n5678\n', '-u UID:GID as given');
  const bad = nsbox([...base, '-u', 'nosuchuser', '--', 'id']);
  t.equal(bad.status, 125);
  t.equal(bad.stderr, `nsbox: --user 'nosuchuser': no such user in ${bb}'s /etc/passwd\n`);

  const rdo = nsbox([...base, '--read-only', '--', 'sh', '-c', 'touch /f 2>/dev/null && echo wrote || echo refused; touch /tmp/f && echo tmp']);
  t.equal(rdo.stdout, 'refused\ntmp\n', '--read-only: / refuses writes, /tmp is a tmpfs');

  const h = nsbox([...base, '--hostname', 'dockerish', '--', 'hostname']);
  t.equal(h.stdout, 'dockerish\n', '--hostname');

  const j = nsbox([...base, '--json', '--name', 'j1', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  t.equal(j.status, 3, '--json keeps the exit status');
  const res = JSON.parse(j.stdout);
  t.match(res, { name: 'j1', status: 3, exitCode: 3, signal: null, stdout: 'out\n', stderr: 'err\n', timedOut: false });
  const ji = nsbox([...base, '--json', '-i', '--', 'cat'], { input: 'fed\n' });
  t.equal(JSON.parse(ji.stdout).stdout, 'fed\n', '--json -i: stdin is the input');

  t.equal(nsbox([...base, '--', 'no-such-command']).status, 127, 'command not found: 127');
  t.equal(nsbox([...base, '--', '/etc/passwd']).status, 126, 'not executable: 126');
  t.equal(nsbox([...base, '--json', '--', 'no-such-command']).status, 127, '--json: 127 too');

  for (const args of [['-m', '12Q'], ['--cpus', 'x'], ['-v', 'vol:/x'], ['-it'], ['--ulimit', 'nofile=2:1']]) {
    const r = nsbox([...base, ...args, '--', 'true']);
    t.equal(r.status, 125, args.join(' '));
    const lines = r.stderr.split('\n').filter(Boolean);
    t.equal(lines.length, 1, 'one line');
    t.match(lines[0], new RegExp(`^nsbox: .*${args[0] === '-m' ? '--memory' : args[0] === '-it' ? '--tty' : args[0] === '-v' ? '--volume' : args[0]}`), 'naming the flag');
  }
});
