// Issue #22: probe() tells by trying, in throwaway child processes, whether this process can get a
// user namespace, mount a procfs in a container's namespaces and move a process into a new cgroup,
// and says what stopped it; `root` and `userns.rootless` are one fact. The shapes: a seccomp filter
// around Node (bwrap --seccomp with nsbox's default profile: clone3 ENOSYS, clone and unshare with
// namespace flags EPERM), as root and as nobody; a masked /proc in a user namespace of our own.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const S = require('../../dist/seccomp');
const { probe } = require('../..');
const { privileged } = require('../../dist/runtime');

const find = (names) => names.find((p) => fs.existsSync(p));
const bwrap = find(['/usr/bin/bwrap', '/bin/bwrap']);
const setpriv = find(['/usr/bin/setpriv', '/bin/setpriv']);
const unshare = find(['/usr/bin/unshare', '/bin/unshare']);
const runner = path.join(__dirname, 'runner.js');
const noBwrap = bwrap ? false : 'needs bubblewrap (bwrap) to put a seccomp filter around a Node process';
const seccompCause = /^this process runs under a seccomp filter \(\/proc\/self\/status Seccomp: 2/;

function tmp(t, prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function lastJson(t, r) {
  t.equal(r.status, 0, `the runner ran (${(r.stderr ?? '').slice(-500)})`);
  return JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
}

/** probe() in the runner under nsbox's default seccomp profile; `as`: setpriv arguments (another user). */
function probeUnderFilter(t, as = []) {
  const dir = tmp(t, 'nsbox-pod-pt-');
  const file = path.join(dir, 'filter.bpf');
  fs.writeFileSync(file, S.compileSeccomp(S.resolveSeccomp('default'), process.arch));
  // The runner's own runtime directory (owned by whoever it runs as), removed with `dir`: never
  // /tmp/nsbox-<uid>, which would outlive the test.
  const xdg = path.join(dir, 'xdg');
  fs.mkdirSync(xdg, { mode: 0o700 });
  const uid = as.includes('--reuid') ? Number(as[as.indexOf('--reuid') + 1]) : 0;
  fs.chownSync(xdg, uid, uid);
  const fd = fs.openSync(file, 'r');
  try {
    const cmd = [...(as.length ? [setpriv, ...as] : []), process.execPath, runner, 'probe'];
    const r = spawnSync(bwrap, ['--bind', '/', '/', '--dev-bind', '/dev', '/dev', '--seccomp', '3', ...cmd], {
      stdio: ['ignore', 'pipe', 'pipe', fd], encoding: 'utf8', timeout: 60000, env: { ...process.env, HOME: dir, XDG_RUNTIME_DIR: xdg },
    });
    return lastJson(t, r).probe;
  } finally {
    fs.closeSync(fd);
  }
}

t.test('here: root and rootless agree, and every trial says what it found', async (t) => {
  const p = await probe();
  t.equal(p.root, privileged(), 'root is privileged() (euid 0 in the initial user namespace, CAP_SYS_ADMIN)');
  t.equal(p.userns.rootless, !p.root, 'rootless is !root');
  for (const k of ['userns', 'procfs', 'cgroup']) {
    const x = p.trials[k];
    t.type(x.ok, 'boolean', `${k}: tried`);
    if (!x.ok) t.type(x.code, 'string', `${k}: ${x.code} ${x.syscall}`);
  }
  t.equal(p.features.userNamespaces, p.trials.userns.ok, 'userNamespaces is the trial\'s answer');
  const usable = unshare && spawnSync(unshare, ['-U', 'true']).status === 0;
  if (usable) t.ok(p.trials.userns.ok, 'unshare -U works here, and so does the trial');
});

t.test('probe() leaves this process as it was: same namespaces, no cgroup left behind', async (t) => {
  const ns = () => fs.readdirSync('/proc/self/ns').map((n) => `${n}:${fs.readlinkSync(`/proc/self/ns/${n}`)}`).join(' ');
  const before = ns();
  const cg = fs.readFileSync('/proc/self/cgroup', 'utf8');
  const p = await probe();
  t.equal(ns(), before, 'the Node process entered no namespace');
  t.equal(fs.readFileSync('/proc/self/cgroup', 'utf8'), cg, 'nor another cgroup');
  const parent = require('../../dist/cgroup').detectCgroupHost().parent;
  if (parent && p.cgroup.mountPoint) t.same(fs.readdirSync(parent).filter((n) => n.startsWith(`nsbox-probe-${process.pid}-`)), [], 'the trial cgroup is gone');
});

t.test('under a seccomp filter refusing namespaces (as root): userns unavailable, with the filter as cause', { skip: noBwrap || (!privileged() && 'bwrap --bind / / needs root here') }, async (t) => {
  const p = probeUnderFilter(t);
  t.equal(p.root, true);
  t.equal(p.rootless, false);
  t.match(p.trials.userns, { ok: false, code: 'EPERM', errno: 1, syscall: 'clone' }, 'clone3 ENOSYS, then clone refused: the call that failed');
  t.match(p.trials.userns.cause, seccompCause, 'the cause is the filter');
  t.equal(p.features.userNamespaces, false, 'not "user namespaces work"');
  t.equal(p.features.unprivilegedUserNamespaces, false);
  t.equal(p.features.clone3, false, 'clone3 answers ENOSYS');
  t.match(p.trials.procfs, { ok: false, syscall: 'clone', code: 'EPERM' }, 'a container\'s namespaces are refused as well');
  t.ok(p.notes.some((n) => /a user namespace could not be created here \(clone: EPERM; this process runs under a seccomp filter/.test(n)), 'a note says so');
});

t.test('under the same filter as nobody: rootless, blocked by seccomp, no default map', { skip: noBwrap || (!setpriv && 'needs setpriv') || (!privileged() && 'needs root to switch to nobody') }, async (t) => {
  const p = probeUnderFilter(t, ['--reuid', '65534', '--regid', '65534', '--clear-groups']);
  t.equal(p.root, false);
  t.equal(p.rootless, true);
  t.equal(p.blockedBy, 'seccomp', 'blockedBy names the filter');
  t.match(p.trials.userns, { ok: false, code: 'EPERM', syscall: 'clone', cause: seccompCause });
  t.equal(p.features.unprivilegedUserNamespaces, false, 'not guessed from the sysctls');
  t.ok(p.notes.some((n) => /could not be created here .*so containers cannot start/.test(n)));
});

const file = find(['/proc/kcore', '/proc/keys', '/proc/timer_list']);
const usable = unshare && spawnSync(unshare, ['-Urm', 'true']).status === 0;
t.test('uid 0 in a user namespace with a masked /proc: root false, the procfs trial names the masks', { skip: !usable ? 'needs util-linux unshare and a user namespace' : !file && 'no /proc file to mask here' }, async (t) => {
  const xdg = tmp(t, 'nsbox-pod-pt-');
  const r = spawnSync(unshare, ['-Urm', '--propagation', 'private', 'sh', '-c', `mount --bind /dev/null ${file} && exec "$0" "$1" probe`, process.execPath, runner], {
    encoding: 'utf8', timeout: 60000, env: { ...process.env, XDG_RUNTIME_DIR: xdg },
  });
  const p = lastJson(t, r).probe;
  t.equal(p.root, false, 'uid 0 inside unshare -r is not root');
  t.equal(p.rootless, true);
  t.match(p.trials.userns, { ok: true }, 'a user namespace can be made');
  t.match(p.trials.procfs, { ok: false, code: 'EPERM', errno: 1, syscall: 'mount', path: '/proc' }, 'the procfs mount is refused');
  t.match(p.trials.procfs.cause, new RegExp(`masked paths: ${file}\\).*procMount: Unmasked`), 'because of the masks');
  t.ok(p.notes.some((n) => /containers fail at step mount\.proc/.test(n)));
});
