// The seccomp compiler without a kernel: option validation, the policy's coverage of every system
// call in the tables, and the compiled program run through an interpreter for every number.
// (test/security/seccomp.test.js runs the same programs in the real kernel.)
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const S = require('../../dist/seccomp');
const { NsboxError } = require('../../dist/errors');

const x86 = require('../../lib/syscalls/x86_64.json');
const arm = require('../../lib/syscalls/aarch64.json');

const AUDIT_X86_64 = 0xc000003e;
const AUDIT_I386 = 0x40000003;
const AUDIT_AARCH64 = 0xc00000b7;
const AUDIT_ARM = 0x40000028;
const EPERM = 1;
const ENOSYS = 38;
const EAFNOSUPPORT = 97;
const ALLOW = 0x7fff0000;
const KILL_PROCESS = 0x80000000;
const errno = (e) => (0x00050000 | e) >>> 0;

const def = S.resolveSeccomp('default');
const prog = S.compileSeccomp(def, 'x64');
const progArm = S.compileSeccomp(def, 'arm64');
const run = (p, nr, args = [], arch = AUDIT_X86_64) => S.evaluateSeccomp(p, { nr, arch, args });
const sys = (name, args) => run(prog, x86[name], args);
const sysArm = (name, args) => run(progArm, arm[name], args, AUDIT_AARCH64);

t.test('option validation: Node-style errors before anything runs', async (t) => {
  t.equal(S.resolveSeccomp(undefined), def, 'undefined is the default profile');
  t.equal(S.resolveSeccomp('none'), null, "'none' is no filter");
  t.same(S.resolveSeccomp({}), def, 'an empty object is the default profile');
  t.same(S.resolveSeccomp('default'), { profile: 'default', allow: [], deny: [], errno: EPERM });
  const bad = [
    [42, 'ERR_INVALID_ARG_TYPE', TypeError, /The "seccomp" option must be 'default', 'none' or an object/],
    [null, 'ERR_INVALID_ARG_TYPE', TypeError, /Received null/],
    [['mount'], 'ERR_INVALID_ARG_TYPE', TypeError, /Received an array/],
    ['strict', 'ERR_INVALID_ARG_VALUE', TypeError, /must be 'default', 'none' or an object/],
    [{ alow: ['mount'] }, 'ERR_INVALID_ARG_VALUE', TypeError, /"seccomp\.alow".*did you mean "seccomp\.allow"/],
    [{ allow: 'mount' }, 'ERR_INVALID_ARG_TYPE', TypeError, /"seccomp\.allow" option must be an array of system call names/],
    [{ allow: [165] }, 'ERR_INVALID_ARG_TYPE', TypeError, /"seccomp\.allow\[0\]" option must be of type string/],
    [{ allow: ['mout'] }, 'ERR_INVALID_ARG_VALUE', TypeError, /is not a known system call; did you mean 'mount'\?/],
    [{ deny: ['ptrace', 'keyctll'] }, 'ERR_INVALID_ARG_VALUE', TypeError, /"seccomp\.deny\[1\]".*did you mean 'keyctl'/],
    [{ deny: ['SYS_ptrace'.toUpperCase()] }, 'ERR_INVALID_ARG_VALUE', TypeError, /did you mean 'ptrace'/],
    [{ allow: ['ptrace'], deny: ['ptrace'] }, 'ERR_INVALID_ARG_VALUE', TypeError, /"seccomp\.deny\[0\]" option is also in "seccomp\.allow"/],
    [{ deny: ['execve'] }, 'ERR_INVALID_ARG_VALUE', TypeError, /cannot be denied: nsbox needs it/],
    [{ deny: ['exit_group'] }, 'ERR_INVALID_ARG_VALUE', TypeError, /cannot be denied/],
    [{ defaultErrno: 'EPERM' }, 'ERR_INVALID_ARG_TYPE', TypeError, /"seccomp\.defaultErrno" option must be of type number/],
    [{ defaultErrno: 0 }, 'ERR_OUT_OF_RANGE', RangeError, /It must be an integer >= 1 and <= 4095/],
    [{ defaultErrno: 4096 }, 'ERR_OUT_OF_RANGE', RangeError, /Received number \(4096\)/],
    [{ defaultErrno: 1.5 }, 'ERR_OUT_OF_RANGE', RangeError, /out of range/],
  ];
  for (const [v, code, C, message] of bad) {
    t.throws(() => S.resolveSeccomp(v), { code, constructor: C, message }, `${JSON.stringify(v)} → ${code}`);
  }
  t.throws(() => S.resolveSeccomp(7, 'machine.seccomp'), { message: /"machine\.seccomp"/ }, 'the option name is the caller\'s');
  const r = S.resolveSeccomp({ allow: ['keyctl', 'keyctl', 'add_key'], deny: ['ptrace'], defaultErrno: 13 });
  t.same(r, { profile: 'default', allow: ['add_key', 'keyctl'], deny: ['ptrace'], errno: 13 }, 'names are de-duplicated and sorted');
  t.ok(Object.isFrozen(r), 'the resolved policy is frozen');
});

t.test('every system call in both tables is classified, and every classified name exists', async (t) => {
  const classified = new Set([...S.POLICY_NAMES.allow, ...S.POLICY_NAMES.conditional, ...S.POLICY_NAMES.denied]);
  t.same(Object.keys(x86).filter((n) => !classified.has(n)), [], 'x86_64: nothing unclassified');
  t.same(Object.keys(arm).filter((n) => !classified.has(n)), [], 'aarch64: nothing unclassified');
  t.same([...classified].filter((n) => !(n in x86) && !(n in arm)), [], 'no policy name is missing from both tables');
  const allow = new Set(S.POLICY_NAMES.allow);
  t.same(S.POLICY_NAMES.denied.filter((n) => allow.has(n)), [], 'nothing is both allowed and denied');
  const d = S.describeSeccomp(def, 'x64');
  t.same(d.denied.filter((x) => x.family === 'unclassified'), [], 'describe has a family for every denial');
});

t.test('the generated tables match the kernel headers of this machine', async (t) => {
  if (!fs.existsSync('/usr/include/x86_64-linux-gnu/asm/unistd_64.h') && !fs.existsSync('/usr/include/asm/unistd_64.h')) {
    t.skip('no kernel headers (linux-libc-dev)');
    return;
  }
  const script = path.join(__dirname, '../../scripts/gen-syscalls.js');
  t.doesNotThrow(() => execFileSync(process.execPath, [script, '--check'], { stdio: 'pipe' }), 'gen-syscalls --check');
  t.equal(x86.read, 0);
  t.equal(x86.mount, 165);
  t.equal(x86.clone3, 435);
  t.equal(arm.clone, 220);
  t.equal(arm.mount, 40);
});

t.test('the program is small, deterministic, and within the kernel limit', async (t) => {
  t.equal(prog.length % 8, 0, 'whole instructions');
  t.ok(prog.length / 8 < 400, `x86_64: ${prog.length / 8} instructions (a binary search, not a chain)`);
  t.ok(progArm.length / 8 < 400, `aarch64: ${progArm.length / 8} instructions`);
  t.same(S.compileSeccomp(def, 'x64'), prog, 'same policy, same bytes');
  const copy = S.compileSeccomp(def, 'x64');
  copy.fill(0);
  t.same(S.compileSeccomp(def, 'x64'), prog, 'the cache hands out copies');
  // Deepest path: every number is decided within a handful of comparisons.
  let worst = 0;
  for (let nr = 0; nr < 600; nr++) {
    const trace = countSteps(prog, nr);
    if (trace > worst) worst = trace;
  }
  t.ok(worst <= 16, `at most ${worst} instructions run for any system call`);
});

/** How many instructions run for system call `nr` (arguments all zero). */
function countSteps(p, nr) {
  let steps = 0;
  let A = 0;
  for (let pc = 0; ; ) {
    steps++;
    const code = p.readUInt16LE(pc * 8);
    const jt = p.readUInt8(pc * 8 + 2);
    const jf = p.readUInt8(pc * 8 + 3);
    const k = p.readUInt32LE(pc * 8 + 4);
    if (code === 0x06) return steps;
    if (code === 0x20) {
      A = k === 4 ? AUDIT_X86_64 : k === 0 ? nr : 0;
      pc++;
    } else if (code === 0x05) pc += 1 + k;
    else if (code === 0x15) pc += 1 + (A === k ? jt : jf);
    else if (code === 0x35) pc += 1 + (A >= k ? jt : jf);
    else if (code === 0x45) pc += 1 + ((A & k) >>> 0 ? jt : jf);
    else throw new Error(`unexpected op ${code}`);
  }
}

t.test('x86_64: every number gets the default profile\'s answer', async (t) => {
  const classOf = new Map();
  for (const n of S.POLICY_NAMES.allow) classOf.set(n, 'allow');
  for (const n of S.POLICY_NAMES.denied) classOf.set(n, 'deny');
  const byNr = new Map(Object.entries(x86).map(([k, v]) => [v, k]));
  const max = Math.max(...byNr.keys());
  const wrong = [];
  for (let nr = 0; nr <= max + 50; nr++) {
    const name = byNr.get(nr);
    const got = run(prog, nr, [0, 0, 0, 0, 0, 0]);
    let want;
    if (name === undefined) want = errno(ENOSYS);
    else if (name === 'clone3') want = errno(ENOSYS);
    else if (['clone', 'unshare', 'ioctl', 'socket', 'personality'].includes(name)) want = ALLOW; // zero args pass
    else want = classOf.get(name) === 'allow' ? ALLOW : errno(EPERM);
    if (got !== want) wrong.push(`${nr} ${name}: ${S.describeAction(got)} != ${S.describeAction(want)}`);
  }
  t.same(wrong, [], 'no number answered differently');
  t.equal(run(prog, 0x3fffffff), errno(ENOSYS), 'far above the table: ENOSYS');
  t.equal(run(prog, -1), errno(ENOSYS), 'nr -1 (0xffffffff) answers ENOSYS, is not killed');
});

t.test('seccomp: mount, umount2, pivot_root, setns, keyctl... are denied with EPERM (one per family)', async (t) => {
  for (const f of S.DENIED) {
    for (const name of f.syscalls) {
      if (!(name in x86)) continue;
      t.equal(sys(name), errno(EPERM), `${name} (${f.family}) → EPERM`);
    }
  }
});

t.test('the exec path and everyday calls stay allowed', async (t) => {
  for (const name of ['read', 'write', 'fcntl', 'rt_sigprocmask', 'rt_sigreturn', 'execve', 'execveat', 'exit_group', 'exit', 'mmap', 'openat', 'openat2', 'close_range', 'pidfd_open', 'memfd_create', 'name_to_handle_at', 'landlock_create_ruleset', 'ptrace', 'process_vm_readv', 'wait4', 'futex', 'rseq', 'prctl', 'seccomp', 'arch_prctl', 'statx', 'io_setup', 'fchmodat2', 'statmount']) {
    t.equal(sys(name), ALLOW, `${name} is allowed`);
  }
});

t.test('architecture check: i386 and any foreign arch are killed; x32 answers ENOSYS', async (t) => {
  t.equal(run(prog, 20, [], AUDIT_I386), KILL_PROCESS, 'i386 getpid (int 0x80) is killed');
  t.equal(run(prog, 1, [], AUDIT_I386), KILL_PROCESS, 'i386 exit too: nothing of that ABI runs');
  t.equal(run(prog, 39, [], AUDIT_AARCH64), KILL_PROCESS, 'an aarch64 number on x86_64 is killed');
  t.equal(run(prog, 39 | 0x40000000), errno(ENOSYS), 'x32 getpid → ENOSYS');
  t.equal(run(prog, 165 | 0x40000000), errno(ENOSYS), 'x32 mount → ENOSYS');
  t.equal(run(prog, 520 | 0x40000000), errno(ENOSYS), 'x32-only execve (520) → ENOSYS');
});

t.test('clone: namespace flags are refused, ordinary flags pass (low 32 bits)', async (t) => {
  const CLONE_THREAD_FLAGS = 0x3d0f00; // what glibc's pthread_create passes to clone
  t.equal(sys('clone', [CLONE_THREAD_FLAGS]), ALLOW, 'thread flags');
  t.equal(sys('clone', [0x01200011]), ALLOW, 'fork flags (CHILD_SETTID|CHILD_CLEARTID|SIGCHLD)');
  for (const [flag, name] of [[0x20000, 'NEWNS'], [0x02000000, 'NEWCGROUP'], [0x04000000, 'NEWUTS'], [0x08000000, 'NEWIPC'], [0x10000000, 'NEWUSER'], [0x20000000, 'NEWPID'], [0x40000000, 'NEWNET']]) {
    t.equal(sys('clone', [flag | 17]), errno(EPERM), `CLONE_${name} → EPERM`);
  }
  t.equal(sys('clone', [(1n << 32n) | 17n]), ALLOW, 'high bits alone (ignored by the kernel) pass');
  t.equal(sys('clone3', [0, 88]), errno(ENOSYS), 'clone3 → ENOSYS (glibc falls back to clone)');
});

t.test('unshare(CLONE_NEWUSER) is refused; unshare(CLONE_FILES) is not', async (t) => {
  t.equal(sys('unshare', [0x10000000]), errno(EPERM), 'CLONE_NEWUSER');
  t.equal(sys('unshare', [0x20000]), errno(EPERM), 'CLONE_NEWNS');
  t.equal(sys('unshare', [0x80]), errno(EPERM), 'CLONE_NEWTIME');
  t.equal(sys('unshare', [0x400]), ALLOW, 'CLONE_FILES');
  t.equal(sys('unshare', [0x200]), ALLOW, 'CLONE_FS');
});

t.test('TIOCSTI with high bits set is refused (CVE-2019-10063)', async (t) => {
  t.equal(sys('ioctl', [0, 0x5412]), errno(EPERM), 'TIOCSTI');
  t.equal(sys('ioctl', [0, 0x123n << 32n | 0x5412n]), errno(EPERM), '(0x123 << 32) | TIOCSTI');
  t.equal(sys('ioctl', [0, 0xffffffffn << 32n | 0x5412n]), errno(EPERM), 'all high bits | TIOCSTI');
  t.equal(sys('ioctl', [0, 0x541c]), errno(EPERM), 'TIOCLINUX');
  t.equal(sys('ioctl', [0x5412, 0x541b]), ALLOW, 'FIONREAD (even on fd 0x5412)');
  t.equal(sys('ioctl', [0, 0x5413]), ALLOW, 'TIOCGWINSZ');
});

t.test('AF_VSOCK and AF_ALG sockets are refused with EAFNOSUPPORT', async (t) => {
  t.equal(sys('socket', [40, 1, 0]), errno(EAFNOSUPPORT), 'AF_VSOCK');
  t.equal(sys('socket', [38, 5, 0]), errno(EAFNOSUPPORT), 'AF_ALG');
  t.equal(sys('socket', [(1n << 32n) | 38n, 5, 0]), errno(EAFNOSUPPORT), 'AF_ALG with high bits (the kernel reads an int)');
  for (const [d, n] of [[1, 'AF_UNIX'], [2, 'AF_INET'], [10, 'AF_INET6'], [16, 'AF_NETLINK'], [17, 'AF_PACKET'], [39, 'AF_NFC'], [41, 'AF_KCM']]) {
    t.equal(sys('socket', [d, 1, 0]), ALLOW, `${n} passes`);
  }
});

t.test('personality(READ_IMPLIES_EXEC) is refused; the five Docker values pass', async (t) => {
  for (const p of [0, 8, 0x20000, 0x20008, 0xffffffff]) t.equal(sys('personality', [p]), ALLOW, `0x${p.toString(16)}`);
  t.equal(sys('personality', [0x0400000]), errno(EPERM), 'READ_IMPLIES_EXEC');
  t.equal(sys('personality', [0x0040000]), errno(EPERM), 'ADDR_NO_RANDOMIZE');
  t.equal(sys('personality', [0x1]), errno(EPERM), 'PER_SVR4');
});

t.test('allow, deny and defaultErrno change the default profile', async (t) => {
  const p = S.compileSeccomp(S.resolveSeccomp({ allow: ['keyctl', 'ioctl', 'clone', 'socket'], deny: ['ptrace'], defaultErrno: 13 }), 'x64');
  const r = (name, args) => run(p, x86[name], args);
  t.equal(r('keyctl'), ALLOW, 'allow adds keyctl');
  t.equal(r('ioctl', [0, 0x5412]), ALLOW, 'allow lifts the ioctl check');
  t.equal(r('clone', [0x10000000]), ALLOW, 'allow lifts the clone check');
  t.equal(r('socket', [40, 1, 0]), ALLOW, 'allow lifts the socket check');
  t.equal(r('ptrace'), errno(13), 'deny removes ptrace, with defaultErrno');
  t.equal(r('mount'), errno(13), 'the profile\'s own denials use defaultErrno');
  t.equal(r('unshare', [0x10000000]), errno(13), 'and so do its argument checks');
  t.equal(r('socket', [40, 1, 0]), ALLOW);
  t.equal(r('clone3'), errno(ENOSYS), 'clone3 stays ENOSYS');
  t.equal(run(p, 1000), errno(ENOSYS), 'unknown numbers stay ENOSYS');
  const q = S.compileSeccomp(S.resolveSeccomp({ deny: ['clone3'] }), 'x64');
  t.equal(run(q, x86.clone3), errno(EPERM), 'clone3 can be denied outright (glibc then fails)');
});

t.test('capabilities a container keeps re-allow their system calls, as in Docker', async (t) => {
  const bit = (n) => 1n << BigInt(n);
  const ptrace = S.compileSeccomp(def, 'x64', bit(19));
  t.equal(run(ptrace, x86.kcmp), ALLOW, 'CAP_SYS_PTRACE: kcmp');
  t.equal(run(ptrace, x86.pidfd_getfd), ALLOW, 'CAP_SYS_PTRACE: pidfd_getfd');
  t.equal(run(ptrace, x86.mount), errno(EPERM), 'but not mount');
  const admin = S.compileSeccomp(def, 'x64', bit(21));
  t.equal(run(admin, x86.mount), ALLOW, 'CAP_SYS_ADMIN: mount');
  t.equal(run(admin, x86.setns), ALLOW, 'CAP_SYS_ADMIN: setns');
  t.equal(run(admin, x86.clone, [0x10000000]), ALLOW, 'CAP_SYS_ADMIN: clone with namespace flags');
  t.equal(run(admin, x86.clone3), ALLOW, 'CAP_SYS_ADMIN: clone3 runs');
  t.equal(run(admin, x86.keyctl), errno(EPERM), 'keyctl is never allowed');
  t.equal(run(admin, x86.socket, [40, 1, 0]), errno(EAFNOSUPPORT), 'the socket check stays');
  const defaultNine = [0, 1, 3, 4, 5, 6, 7, 8, 10].reduce((m, n) => m | bit(n), 0n);
  t.same(S.compileSeccomp(def, 'x64', defaultNine), prog, 'the app profile\'s nine capabilities gate nothing');
});

t.test('aarch64: its own table and AUDIT_ARCH, no x32 step', async (t) => {
  t.equal(run(progArm, arm.getpid, [], AUDIT_AARCH64), ALLOW, 'getpid');
  t.equal(sysArm('mount'), errno(EPERM), 'mount (40)');
  t.equal(sysArm('clone', [0x10000000]), errno(EPERM), 'clone(CLONE_NEWUSER)');
  t.equal(sysArm('clone3'), errno(ENOSYS), 'clone3');
  t.equal(sysArm('ioctl', [0, 0x123n << 32n | 0x5412n]), errno(EPERM), 'TIOCSTI with high bits');
  t.equal(run(progArm, 20, [], AUDIT_ARM), KILL_PROCESS, 'arm32 compat is killed');
  t.equal(run(progArm, arm.getpid, [], AUDIT_X86_64), KILL_PROCESS, 'x86_64 on aarch64 is killed');
  t.equal(run(progArm, 0x40000000 | arm.getpid, [], AUDIT_AARCH64), errno(ENOSYS), 'no such number');
  t.equal(run(progArm, 1000, [], AUDIT_AARCH64), errno(ENOSYS), 'unknown number');
  t.equal(S.compileSeccomp(def, 'aarch64').length, progArm.length, "'aarch64' and 'arm64' name the same");
});

t.test('an architecture without a table is ENOTSUP, step seccomp', async (t) => {
  for (const a of ['ppc64', 's390x', 'ia32', 'riscv64']) {
    let err;
    try {
      S.compileSeccomp(def, a);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof NsboxError, `${a}: an NsboxError`);
    t.match(err, { code: 'ENOTSUP', step: 'seccomp', message: /not available on .* yet/ }, a);
  }
});

t.test('describeSeccomp lists what the filter does', async (t) => {
  const d = S.describeSeccomp(def, 'x64');
  t.equal(d.arch, 'x86_64');
  t.equal(d.instructions, prog.length / 8);
  t.equal(d.highestKnown, Math.max(...Object.values(x86)));
  t.ok(d.allowed.includes('read') && !d.allowed.includes('mount'));
  t.same(d.conditional.map((c) => c.name).sort(), ['clone', 'ioctl', 'personality', 'socket', 'unshare']);
  t.same(d.enosys.map((c) => c.name), ['clone3']);
  const families = new Set(d.denied.map((x) => x.family));
  for (const f of ['mounts', 'namespaces', 'keyring', 'io_uring', 'userfaultfd', 'bpf', 'kernel modules']) t.ok(families.has(f), f);
  for (const x of d.denied) t.equal(sys(x.name), errno(EPERM), `${x.name} really answers EPERM`);
  const u = S.describeSeccomp(S.resolveSeccomp({ deny: ['ptrace'] }), 'x64');
  t.match(u.denied.find((x) => x.name === 'ptrace'), { family: 'denied by the caller' });
});

t.test('disassembly names every instruction', async (t) => {
  const text = S.disassembleSeccomp(prog);
  t.equal(text.split('\n').length, prog.length / 8);
  t.match(text, /^ {3}0: ld \[4\]$/m);
  t.match(text, /ret KILL_PROCESS/);
  t.match(text, /ret ERRNO\(ENOSYS\)/);
});

t.test('the prebuilt default filters are what the compiler makes (app and machine capability sets, both arches)', async (t) => {
  const { PREBUILT } = require('../../dist/seccomp-prebuilt.js');
  const S = require('../../dist/seccomp.js');
  const C = require('../../dist/caps.js');
  const policy = S.resolveSeccomp(undefined);
  const none = { add: [], drop: [] };
  let n = 0;
  for (const arch of ['x64', 'arm64']) {
    for (const caps of [C.resolveCaps(C.DEFAULT_CAPS, none), C.resolveCaps(C.MACHINE_CAPS, none)]) {
      const key = S.seccompKey(policy, arch, caps);
      t.ok(PREBUILT[key], `${key} is prebuilt`);
      t.equal(Buffer.from(PREBUILT[key], 'base64').toString('hex'), S.compileSeccomp(policy, arch, caps, { prebuilt: false }).toString('hex'), `${key}: same program`);
      n++;
    }
  }
  t.equal(Object.keys(PREBUILT).length, n, 'nothing else in the table');
});
