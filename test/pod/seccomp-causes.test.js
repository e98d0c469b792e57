// Issue #22: under a container runtime's seccomp profile (clone3 answered with ENOSYS, clone and
// unshare with namespace flags refused with EPERM, as Kubernetes RuntimeDefault and Docker do) a
// start's error names the call that really failed and the filter as its likely cause. The filter
// is nsbox's own default profile, compiled by dist/seccomp.js and installed around Node by bwrap.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const S = require('../../dist/seccomp');

const bwrap = ['/usr/bin/bwrap', '/bin/bwrap'].find((p) => fs.existsSync(p));
const noBwrap = bwrap ? false : 'needs bubblewrap (bwrap) to put a seccomp filter around a Node process';
const runner = path.join(__dirname, 'runner.js');

/** Runs the runner under bwrap with `policy` (or a compiled filter) as its seccomp filter; returns its JSON line. */
function underFilter(t, policy, what = 'start') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-pod-sc-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'filter.bpf');
  fs.writeFileSync(file, Buffer.isBuffer(policy) ? policy : S.compileSeccomp(S.resolveSeccomp(policy), process.arch));
  const fd = fs.openSync(file, 'r');
  try {
    const r = spawnSync(bwrap, ['--bind', '/', '/', '--dev-bind', '/dev', '/dev', '--seccomp', '3', process.execPath, runner, what], {
      stdio: ['ignore', 'pipe', 'pipe', fd], encoding: 'utf8', timeout: 60000,
    });
    t.equal(r.status, 0, `the runner ran (${r.stderr.slice(-500)})`);
    const line = r.stdout.trim().split('\n').pop();
    return JSON.parse(line || '{}');
  } finally {
    fs.closeSync(fd);
  }
}

t.test('clone3 ENOSYS, clone EPERM: the error names clone, its step, its errno and the filter', { skip: noBwrap }, async (t) => {
  const out = underFilter(t, 'default');
  t.equal(out.seccomp, '2', 'the runner is in seccomp filter mode');
  t.match(out.start?.error, { name: 'NsboxError', code: 'EPERM', errno: 1, syscall: 'clone', step: 'spawn.clone' }, 'the fallback clone is the call that failed');
  t.match(out.start?.error?.message, /^clone: EPERM \(step spawn\.clone\): this process runs under a seccomp filter \(\/proc\/self\/status Seccomp: 2, Seccomp_filters: \d+\)/, 'the message names the filter');
  t.match(out.start?.error?.message, /RuntimeDefault/, 'and the profiles that do this');
});

t.test('without a filter, the message says nothing of seccomp', async (t) => {
  const { explainCause, seccompCause } = require('../../dist/causes');
  const { NsboxError } = require('../../dist/errors');
  t.equal(seccompCause('EPERM', 'clone', { mode: 0, filters: 0 }), null, 'Seccomp: 0');
  t.equal(seccompCause('EPERM', 'clone', { mode: 1, filters: 0 }), null, 'strict mode is not a filter');
  t.equal(seccompCause('ENOENT', 'clone', { mode: 2, filters: 1 }), null, 'ENOENT is never the filter');
  t.equal(seccompCause('EPERM', 'execve', { mode: 2, filters: 1 }), null, 'execve is not a namespace or mount call');
  t.match(seccompCause('ENOSYS', 'clone3', { mode: 2, filters: 3 }), /Seccomp: 2, Seccomp_filters: 3/);
  const { enterCloneCause } = require('../../dist/causes');
  t.match(enterCloneCause('exec.enter', 'ENOSYS', 'clone3', { mode: 0, filters: 0 }), /^this kernel has no clone3 \(Linux 5\.3; CLONE_INTO_CGROUP 5\.7\)\. Machine\.exec/, 'exec without clone3 and without a filter: the kernel');
  t.equal(enterCloneCause('spawn.clone', 'ENOSYS', 'clone3', { mode: 2, filters: 1 }), null, 'a start falls back: not this cause');
  t.equal(enterCloneCause('exec.enter', 'EPERM', 'clone3', { mode: 2, filters: 1 }), null, 'another errno: not this cause');
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  if (/^Seccomp:\s+0/m.test(status)) {
    const e = new NsboxError({ code: 'EPERM', errno: 1, syscall: 'clone', step: 'spawn.clone' });
    t.equal(explainCause(e, false), e, 'this process has no filter: the error is left as it is');
  }
});

// The RuntimeDefault shape of a pod with CAP_SYS_ADMIN: clone3 answered ENOSYS (a filter cannot look
// into clone3's flags), every other call allowed. A classic BPF program, assembled here.
const AUDIT_ARCH = { x64: 0xc000003e, arm64: 0xc00000b7 }[process.arch];
function clone3Enosys() {
  const NR_CLONE3 = 435; // the same on x86_64 and arm64
  const ALLOW = 0x7fff0000, ERRNO = 0x00050000, ENOSYS = os.constants.errno.ENOSYS;
  const ins = [
    [0x20, 0, 0, 4], // ld arch
    [0x15, 1, 0, AUDIT_ARCH], // jeq this arch: on
    [0x06, 0, 0, ALLOW], // another arch: allowed
    [0x20, 0, 0, 0], // ld nr
    [0x15, 0, 1, NR_CLONE3],
    [0x06, 0, 0, ERRNO | ENOSYS],
    [0x06, 0, 0, ALLOW],
  ];
  const b = Buffer.alloc(ins.length * 8);
  ins.forEach(([code, jt, jf, k], i) => {
    b.writeUInt16LE(code, i * 8);
    b.writeUInt8(jt, i * 8 + 2);
    b.writeUInt8(jf, i * 8 + 3);
    b.writeUInt32LE(k, i * 8 + 4);
  });
  return b;
}

t.test('clone3 ENOSYS alone: app starts and Machine.start fall back to clone; Machine.exec fails at exec.enter naming clone3, the filter and the remedy', {
  skip: noBwrap || (AUDIT_ARCH === undefined && `no filter assembled for ${process.arch}`),
}, async (t) => {
  const start = underFilter(t, clone3Enosys(), 'start');
  t.equal(start.seccomp, '2', 'the runner is in seccomp filter mode');
  t.same(start.start, { exitCode: 0 }, 'an app start works (legacy clone)');
  const out = underFilter(t, clone3Enosys(), 'exec');
  t.match(out.machine, { started: true }, 'Machine.start works (legacy clone)');
  const e = out.machine?.exec?.error;
  t.match(e, { name: 'NsboxError', code: 'ENOSYS', errno: os.constants.errno.ENOSYS, syscall: 'clone3', step: 'exec.enter' }, 'exec: the call that failed, as it failed');
  t.match(e?.message, /^clone3: ENOSYS \(step exec\.enter\): this process runs under a seccomp filter \(\/proc\/self\/status Seccomp: 2, Seccomp_filters: \d+\) that answers clone3 with ENOSYS/, 'the filter is named');
  t.match(e?.message, /without the fallback to clone that app starts and Machine\.start have/, 'why exec, unlike a start, fails');
  t.match(e?.message, /Localhost with a profile that allows clone3/, 'the remedy');
  t.equal(out.machine?.left, 0, 'the machine stopped and was destroyed after the failed exec');
});
