// `nsbox machine status|shell|logs` run as subprocesses the way a user runs them, and the --json
// of every listing (machine list, ps, images): one JSON document with the documented fields.
// Machines live in a private --state-dir on an ephemeral overlay of the busybox fixture.
'use strict';
const t = require('tap');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { busyboxRootfs, machineStateDir } = require('./helpers');

const bin = path.join(__dirname, '..', 'bin', 'nsbox.js');
const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const haveScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

function nsbox(args, opts = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, ...opts });
  if (r.error) throw r.error;
  return r;
}

t.test('machine status: state, pid, uptime, addresses, cgroup; --json with the documented fields', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-status-');
  const name = `s${process.pid}`;
  const start = nsbox(['machine', 'start', name, '--rootfs', bb, '--ephemeral', '--state-dir', sd]);
  t.equal(start.status, 0, start.stderr);
  const pid = Number(start.stdout.trim());

  const j = nsbox(['machine', 'status', name, '--json', '--state-dir', sd]);
  t.equal(j.status, 0, j.stderr);
  const s = JSON.parse(j.stdout);
  for (const k of ['name', 'pid', 'state', 'rootfs', 'init', 'ephemeral', 'createdAt', 'cgroup', 'uptimeSeconds', 'addresses', 'bridge', 'memoryCurrentBytes', 'pidsCurrent']) {
    t.ok(k in s, `--json has ${k}`);
  }
  t.same([s.name, s.pid, s.state, s.init, s.ephemeral, s.bridge], [name, pid, 'running', 'builtin', true, null]);
  t.ok(Number.isInteger(s.uptimeSeconds) && s.uptimeSeconds >= 0, 'uptime in whole seconds');
  // --network loopback (the default): lo is up in its own namespace; the addresses are those the
  // machine itself sees.
  t.ok(s.addresses.includes('127.0.0.1'), `lo's address is listed: ${s.addresses}`);
  const inside = nsbox(['machine', 'exec', name, '--state-dir', sd, '--', 'ip', '-o', 'addr']).stdout;
  for (const a of s.addresses) t.match(inside, a.includes(':') ? a.split('/')[0] : new RegExp(`inet ${a.replace(/\./g, '\\.')}/`), `${a} is what ip addr shows inside`);

  const text = nsbox(['machine', 'status', name, '--state-dir', sd]);
  t.equal(text.status, 0, text.stderr);
  t.match(text.stdout, new RegExp(`^name\\s+${name}\\nstate\\s+running\\npid\\s+${pid}\\nuptime\\s+\\d+m \\d+s\\n`), 'the text form');
  t.match(text.stdout, /\naddresses\s+127\.0\.0\.1/);

  t.equal(nsbox(['machine', 'stop', name, '--state-dir', sd]).status, 0);
  const after = JSON.parse(nsbox(['machine', 'status', name, '--json', '--state-dir', sd]).stdout);
  t.same([after.state, after.uptimeSeconds, after.addresses], ['stopped', null, []], 'stopped: no uptime, no addresses');
  const none = nsbox(['machine', 'status', 'nosuch', '--state-dir', sd]);
  t.equal(none.status, 125);
  t.equal(none.stderr, "nsbox: no machine named 'nosuch'\n");
});

t.test('machine shell: a login shell on a real pty; what is typed runs; its exit code is returned', { skip: noBusybox || (!haveScript && 'script(1) from util-linux is not installed') }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-shell-');
  const name = `sh${process.pid}`;
  t.equal(nsbox(['machine', 'start', name, '--rootfs', bb, '--ephemeral', '--state-dir', sd]).status, 0);
  // script(1) gives nsbox a pty of its own as stdin/stdout: the terminal a user would have.
  const cmd = [process.execPath, bin, 'machine', 'shell', name, '--state-dir', sd].map((a) => `'${a}'`).join(' ');
  const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], {
    input: 'echo "shell=$0 home=$HOME login=$SHELL"; tty; [ -t 0 ] && echo stdin-is-tty; exit 4\n',
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.equal(r.status, 4, `the shell's exit status: ${r.stderr}`);
  t.match(r.stdout, /shell=\/bin\/sh home=\/root login=\/bin\/sh\r*\n/, "root's shell and home from the machine's /etc/passwd");
  t.match(r.stdout, /\/dev\/pts\/\d+\r*\n/, 'a pty of the machine');
  t.match(r.stdout, /stdin-is-tty/);
});

t.test('machine logs: the console (PID 1 stdout and stderr); -f follows it until the machine stops', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-logs-');
  const name = `l${process.pid}`;
  t.equal(nsbox(['machine', 'start', name, '--rootfs', bb, '--ephemeral', '--state-dir', sd]).status, 0);
  t.equal(nsbox(['machine', 'logs', name, '--state-dir', sd]).stdout, '', 'nothing written yet');
  const follow = spawn(process.execPath, [bin, 'machine', 'logs', '-f', name, '--state-dir', sd], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stopped = null;
  follow.stdout.on('data', (d) => {
    out += d;
    // Once the second line is there, the machine is stopped (by another nsbox): -f then ends.
    if (out.includes('second\n') && !stopped) stopped = nsbox(['machine', 'stop', name, '--state-dir', sd]);
  });
  // What PID 1's stdout and stderr get: a process inside appends to them (/proc/1/fd/1 and 2, as a
  // daemon logging to the console does; '>' would truncate the log).
  for (const [fd, line] of [[1, 'first'], [2, 'second']]) {
    const w = nsbox(['machine', 'exec', name, '--state-dir', sd, '--', 'sh', '-c', `echo ${line} >> /proc/1/fd/${fd}`]);
    t.equal(w.status, 0, w.stderr);
  }
  t.equal(await new Promise((resolve) => follow.on('close', resolve)), 0, '-f ends with status 0 when the machine stops');
  t.equal(stopped?.status, 0);
  t.equal(out, 'first\nsecond\n');
  t.equal(nsbox(['machine', 'logs', name, '--state-dir', sd]).stdout, 'first\nsecond\n', 'without -f: what is there');
});

/** A one-layer OCI layout (one file), for `nsbox image import`. */
function ociLayout(dir) {
  const blobs = path.join(dir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const put = (buf) => {
    const d = crypto.createHash('sha256').update(buf).digest('hex');
    fs.writeFileSync(path.join(blobs, d), buf);
    return { digest: `sha256:${d}`, size: buf.length };
  };
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'hello'), 'hi\n');
  const tar = spawnSync('tar', ['-C', src, '-cf', '-', 'hello']);
  if (tar.status !== 0) throw new Error(`tar: ${tar.stderr}`);
  const layer = put(tar.stdout);
  const arch = { x64: 'amd64', arm64: 'arm64' }[process.arch] ?? process.arch;
  const config = put(Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] }, config: { Cmd: ['/hello'] } })));
  const manifest = put(Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
  })));
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest }] }));
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return dir;
}

t.test('--json of every listing: one JSON document with the documented fields', { skip: noBusybox }, async (t) => {
  const sd = machineStateDir(t, 'nsbox-cli-json-');
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-cli-json-'));
  t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const m = `j${process.pid}`;
  const d = `jd${process.pid}`;
  t.equal(nsbox(['machine', 'start', m, '--rootfs', bb, '--ephemeral', '--state-dir', sd]).status, 0);
  t.equal(nsbox(['run', '-d', '--name', d, '--state-dir', sd, '--rootfs', bb, '--', 'sleep', '1000']).status, 0);

  const list = JSON.parse(nsbox(['machine', 'list', '--json', '--state-dir', sd]).stdout);
  t.same(list.map((i) => i.name), [m, d].sort(), 'machine list: every machine, detached containers too');
  for (const i of list) for (const k of ['name', 'pid', 'state', 'rootfs', 'init', 'ephemeral', 'createdAt', 'cgroup']) t.ok(k in i, `machine list --json: ${k}`);
  t.same(list.find((i) => i.name === d).command, ['sleep', '1000'], 'a detached one has its command');

  const ps = JSON.parse(nsbox(['ps', '--json', '--state-dir', sd]).stdout);
  t.same(ps.map((i) => i.name), [d], 'ps: detached containers only');
  for (const k of ['name', 'pid', 'state', 'status', 'command', 'exitStatus', 'rootfs', 'createdAt', 'cgroup']) t.ok(k in ps[0], `ps --json: ${k}`);

  const store = path.join(scratch, 'store');
  const imp = nsbox(['image', 'import', '--store', store, '--tag', 'local/json:1', ociLayout(path.join(scratch, 'layout'))]);
  t.equal(imp.status, 0, imp.stderr);
  const images = JSON.parse(nsbox(['images', '--json', '--store', store]).stdout);
  t.equal(images.length, 1);
  t.same(Object.keys(images[0]).sort(), ['digest', 'layers', 'platform', 'ref', 'size'], 'images --json: ref, digest, platform, size, layers');
  t.same([images[0].ref, images[0].layers], ['docker.io/local/json:1', 1]);
  t.match(images[0].digest, /^sha256:[0-9a-f]{64}$/);
  t.same(JSON.parse(nsbox(['images', '--json', '--store', path.join(scratch, 'empty')]).stdout), [], 'an empty store: []');

  t.equal(nsbox(['rm', '-f', d, '--state-dir', sd]).status, 0);
  t.equal(nsbox(['machine', 'destroy', '--force', m, '--state-dir', sd]).status, 0);
  t.same(JSON.parse(nsbox(['machine', 'list', '--json', '--state-dir', sd]).stdout), [], 'an empty list: []');
});

// Review (h-review): passwdShell read /proc/PID/root/etc/passwd on the host, where an absolute link
// in the machine (/etc/passwd -> /some/host/file) is followed from the host's root: a host file's
// fields reached the machine as the shell's argv and SHELL/HOME (and any host path was opened by
// root: a device such as /dev/watchdog acts on open). It is read inside the machine now.
t.test('machine shell: the machine\'s /etc/passwd is read in its root, a link to a host file is not followed on the host', { skip: noBusybox || (!require('../dist/runtime').privileged() && "needs root: a rootless machine cannot replace the root-owned fixture's /etc/passwd (its owner is unmapped there)") }, async (t) => {
  const { Machine } = require('..');
  const { passwdShell } = require('../dist/cli/machine-extra.js');
  const sd = machineStateDir(t, 'nsbox-cli-passwd-');
  const secret = path.join(sd, 'host-passwd');
  fs.writeFileSync(secret, 'root:x:0:0:leak:/host-home-leak:/host-shell-leak\n');
  const m = await Machine.start({ name: 'pw', rootfs: bb, ephemeral: true, stateDir: sd });
  t.teardown(() => m.stop({ timeout: 1000 }).then(() => m.destroy()).catch(() => {}));
  t.equal((await m.run(['sh', '-c', `rm -f /etc/passwd && ln -s ${secret} /etc/passwd`])).exitCode, 0);
  t.same(await passwdShell(m, 0), { shell: '/bin/sh', home: '/root' }, 'the host file behind the link is not read');
  t.equal((await m.run(['sh', '-c', 'rm /etc/passwd && echo "root:x:0:0:r:/rhome:/bin/ash" > /etc/passwd'])).exitCode, 0);
  t.same(await passwdShell(m, 0), { shell: '/bin/ash', home: '/rhome' }, 'the machine\'s own file is');
});
