// Failures after the options were accepted: each is an NsboxError with code, errno, syscall, step
// and path, and leaves nothing behind (no process, zombie, fd, mount or cgroup).
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, spawn, NsboxError } = require('..');
const { busyboxRootfs, warmUp, snapshot, assertNoLeaks } = require('./helpers');
const { detectCgroupHost } = require('../dist/cgroup');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();

let before;
t.before(async () => {
  before = await warmUp();
});

async function expectError(t, opts, fields) {
  const err = await run(opts).then(
    () => null,
    (e) => e,
  );
  t.type(err, NsboxError, 'rejects with an NsboxError');
  if (!err) return;
  t.match(err, fields, `fields: ${err.message}`);
  t.type(err.errno, 'number');
  t.ok(err.errno > 0, 'errno is a positive number');
  t.match(err.message, new RegExp(`${fields.code} \\(step ${fields.step.replace('.', '\\.')}\\)`), 'message names code and step');
  t.throws(() => spawn(opts), NsboxError, 'spawn() throws the same synchronously');
}

t.test('a command that does not exist: ENOENT at step exec', { skip: noBusybox }, async (t) => {
  await expectError(t, { rootfs: bb, command: ['no-such-command'] }, { code: 'ENOENT', step: 'exec', syscall: 'execve' });
  await expectError(t, { rootfs: bb, command: ['/bin/nope'] }, { code: 'ENOENT', step: 'exec', syscall: 'execve', path: '/bin/nope' });
});

t.test('a command that is a directory: EACCES at step exec', { skip: noBusybox }, async (t) => {
  await expectError(t, { rootfs: bb, command: ['/tmp'] }, { code: 'EACCES', step: 'exec', path: '/tmp' });
});

t.test('a command that is not executable: EACCES at step exec', { skip: noBusybox }, async (t) => {
  await expectError(t, { rootfs: bb, command: ['/etc/passwd'] }, { code: 'EACCES', step: 'exec', path: '/etc/passwd' });
  await expectError(t, { rootfs: bb, init: true, command: ['/etc/passwd'] }, { code: 'EACCES', step: 'exec', path: '/etc/passwd' });
});

t.test('a cwd missing in the rootfs: ENOENT at step cwd', { skip: noBusybox }, async (t) => {
  await expectError(t, { rootfs: bb, cwd: '/no/such/dir', command: ['/bin/true'] }, { code: 'ENOENT', step: 'cwd', syscall: 'openat2', path: '/no/such/dir' });
});

t.test('a rootfs that does not exist: ENOENT at step rootfs', async (t) => {
  await expectError(t, { rootfs: '/no/such/rootfs', command: ['/bin/true'] }, { code: 'ENOENT', step: 'rootfs', path: '/no/such/rootfs' });
});

t.test('a rootfs that is a file: ENOTDIR at step rootfs', async (t) => {
  await expectError(t, { rootfs: '/etc/hostname', command: ['/bin/true'] }, { code: 'ENOTDIR', step: 'rootfs', path: '/etc/hostname' });
});

t.test('a bind source that does not exist: ENOENT naming the source', { skip: noBusybox }, async (t) => {
  await expectError(t, { rootfs: bb, mounts: [{ type: 'bind', source: '/no/such/src', target: '/x' }], command: ['/bin/true'] }, { code: 'ENOENT', step: 'mount.bind', path: '/no/such/src' });
});

t.test('a mount target under a file in the rootfs: ENOTDIR at the mount target', { skip: noBusybox }, async (t) => {
  await expectError(t, { rootfs: bb, mounts: [{ type: 'tmpfs', target: '/etc/passwd/x' }], command: ['/bin/true'] }, { code: 'ENOTDIR', step: 'mount.target', path: '/etc/passwd' });
});

const host = detectCgroupHost();
t.test('a limit on a host without the controller: ENOTSUP naming it', { skip: host.controllers.includes('memory') ? 'this host has the memory controller (tested in the cgroup suite)' : false }, async (t) => {
  const err = await run({ command: ['/bin/true'], limits: { memory: '64M' } }).catch((e) => e);
  t.type(err, NsboxError);
  t.equal(err.code, 'ENOTSUP');
  t.equal(err.step, 'cgroup.limits');
  t.match(err.message, /memory controller/);
  if (!host.base) t.match(err.message, /no delegated cgroup v2 subtree.*Delegate=yes/, 'rootless without a delegated cgroup: says so, and how to get one');
  else if (host.mode === 'hybrid') t.match(err.message, /hybrid/, 'says the host runs hybrid cgroups');
  const pids = await run({ command: ['/bin/true'], limits: { pids: 16 } }).catch((e) => e);
  t.match(pids, { code: 'ENOTSUP', message: /pids controller/ });
});

t.test('freeze() after exit fails with ESRCH', { skip: noBusybox }, async (t) => {
  const c = spawn({ rootfs: bb, command: ['/bin/true'] });
  await c.wait();
  await t.rejects(c.freeze(), { code: 'ESRCH', step: 'freeze' });
});

t.test('NsboxError is an Error with a stack and the contract fields', async (t) => {
  const e = await run({ command: ['/definitely/missing'] }).catch((x) => x);
  t.ok(e instanceof Error);
  t.equal(e.name, 'NsboxError');
  t.match(e.stack, /NsboxError/);
  for (const k of ['code', 'errno', 'syscall', 'step', 'path']) t.ok(k in e, `has ${k}`);
  t.equal(e.message, "execve '/definitely/missing': ENOENT (step exec)");
});

t.test('nothing is left behind after the failures', async (t) => {
  await assertNoLeaks(t, before, 'after every failed start');
});
