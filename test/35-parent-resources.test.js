// The parent's side out of a resource (issue #17): no fd left (EMFILE) and a full file system where
// nsbox writes its leases and machine state (ENOSPC). test/kill/resources-runner.js does the starts
// in a Node process of its own and reports each attempt; this file checks that every start that
// failed did so with a true error (EMFILE, or ENOSPC naming a path on the full file system) and left
// nothing (no fd, child, cgroup, lease, temporary or state file), and that a start works again once
// the resource is back. docs/reliability.md.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { busyboxRootfs } = require('./helpers');

const RUNNER = path.join(__dirname, 'kill', 'resources-runner.js');
const notRoot = process.getuid() !== 0 && 'needs root (machines, cgroups, prlimit on itself, a private mount namespace with tmpfs mounts)';
const { reason: noBusybox } = busyboxRootfs();
const which = (cmd) => ['/usr/bin/', '/bin/', '/usr/sbin/', '/sbin/'].map((d) => d + cmd).find((p) => fs.existsSync(p));
const { USERNS_LEASE_DIR } = require('../dist/userns');
const { usernsBlocker } = require('../dist/userns');

function runRunner(file, args) {
  return new Promise((resolve) => {
    execFile(file, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      let out = null;
      try {
        out = JSON.parse(stdout.trim().split('\n').pop());
      } catch {}
      resolve({ err, out, stderr });
    });
  });
}

/** Checks one kind's attempts: failures with `code` (and the path test), nothing left, then a start. */
function checkAttempts(t, name, attempts, code, pathOk) {
  t.ok(attempts.length > 0, `${name}: attempted`);
  const failed = attempts.filter((a) => a.err);
  const last = attempts[attempts.length - 1];
  t.equal(last.err, null, `${name}: a start works once the resource is back (after ${failed.length} failed)`);
  t.ok(failed.length > 0, `${name}: at least one start failed for want of the resource`);
  for (const a of failed) {
    t.match(a.err, { code }, `${name}, ${a.k} free: fails with ${code} (${a.err.step} ${a.err.syscall ?? ''} ${a.err.path ?? ''})`);
    if (pathOk) t.ok(pathOk(a.err.path), `${name}, ${a.k} free: the error names the path (${a.err.path})`);
    t.same(a.after, a.before, `${name}, ${a.k} free: nothing left (fds, files)`);
    t.same(a.children, [], `${name}, ${a.k} free: no child left`);
    t.same(a.cgroups, [], `${name}, ${a.k} free: no cgroup left`);
  }
  t.comment(`${name}: ${failed.map((a) => `${a.k}: ${a.err.code} ${a.err.step} ${a.err.syscall ?? ''} ${a.err.path ?? ''}`).join('; ')}`);
}

t.test('EMFILE in the Node process: every start fails with EMFILE and leaves nothing, until fds are free', { skip: notRoot || noBusybox || (!which('prlimit') && 'needs prlimit(1)') }, async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-emfile-'));
  t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  const r = await runRunner(process.execPath, [RUNNER, 'emfile', stateDir]);
  if (!r.out || r.out.fatal) return t.fail('the runner failed', { out: r.out, stderr: r.stderr.slice(-3000) });
  t.comment(`${r.out.hogs} fds opened up to the limit`);
  checkAttempts(t, 'run()', r.out.app, 'EMFILE');
  checkAttempts(t, 'Machine.start()', r.out.machine, 'EMFILE');
  t.equal(r.out.after.err, null, 'with the fds closed, a start works');
});

const usernsSkip = usernsBlocker() ? `user namespaces are off here: ${usernsBlocker().setting}` : false;
t.test('ENOSPC where leases and machine state are written: a true error naming the path, nothing half-written', { skip: notRoot || noBusybox || usernsSkip || (!which('unshare') && 'needs unshare(1)') }, async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-enospc-'));
  t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  fs.mkdirSync(USERNS_LEASE_DIR, { recursive: true, mode: 0o700 });
  // Private mounts: the host's lease directory and the state directory are never written.
  const script = `mount -t tmpfs -o size=64k,mode=0700 nsbox-enospc ${USERNS_LEASE_DIR} && mount -t tmpfs -o size=64k,mode=0700 nsbox-enospc ${stateDir} && exec "$0" "$@"`;
  const r = await runRunner('unshare', ['-m', '--propagation', 'private', '--', 'sh', '-c', script, process.execPath, RUNNER, 'enospc', stateDir]);
  if (!r.out || r.out.fatal) return t.fail('the runner failed', { out: r.out, stderr: r.stderr.slice(-3000) });
  checkAttempts(t, 'userns run() (id range lease)', r.out.userns, 'ENOSPC', (p) => typeof p === 'string' && p.startsWith(`${USERNS_LEASE_DIR}/`));
  checkAttempts(t, 'Machine.start() (claim, console, state)', r.out.machine, 'ENOSPC', (p) => typeof p === 'string' && p.startsWith(`${stateDir}/`));
  t.equal(r.out.after.userns.err, null, 'with space again, a userns start works');
  t.equal(r.out.after.machine.err, null, 'with space again, a machine starts');
  t.same(r.out.after.machine.after.files, [], 'and its state goes with it (stop, destroy)');
});
