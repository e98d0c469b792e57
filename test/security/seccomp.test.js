// The default seccomp filter against the real kernel, one test per attack. A static probe
// (test/security/sysprobe.c) makes the raw system call and prints {ret, errno}, or dies of SIGSYS.
// Each case runs twice:
//   - "host kernel": the probe installs the compiled program itself (--filter) and runs on the host.
//     As root that proves the answer comes from the filter: without it, root would get a different
//     errno (each case's arguments make the call fail harmlessly should the filter let it through).
//   - "container": the probe is the command of an app container with the default `seccomp` option.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync, execFileSync } = require('node:child_process');
const { createHash } = require('node:crypto');
const S = require('../../dist/seccomp');
const { busyboxRootfs, isRoot, once } = require('../helpers');

const x86 = require('../../lib/syscalls/x86_64.json');
const onX86 = process.arch === 'x64';
const EPERM = 1;
const ENOSYS = 38;
const EAFNOSUPPORT = 97;

const wired = (() => {
  try {
    require('../../dist/options').resolveAppOptions({ command: ['x'], seccomp: 'default' });
    return true;
  } catch {
    return false;
  }
})();
const noContainer = !wired ? 'seccomp option not wired yet' : false;

const fixtures = path.join(__dirname, '..', '.fixtures');


function sysprobeBinary() {
  const src = path.join(__dirname, 'sysprobe.c');
  const out = path.join(fixtures, 'sysprobe');
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) fs.rmSync(out);
  return once(out, (tmp) => {
    execFileSync(process.env.CC || 'cc', ['-O2', '-static', '-Wall', '-Wextra', '-o', tmp, src], { stdio: ['ignore', 'inherit', 'pipe'] });
  });
}

/** The busybox rootfs plus /sysprobe; its own copy, so the shared fixture stays untouched. */
function securityRootfs(probe) {
  const { rootfs: bb, reason } = busyboxRootfs();
  if (!bb) return { rootfs: null, reason };
  const rootfs = once(path.join(fixtures, 'security-rootfs'), (tmp) => {
    fs.cpSync(bb, tmp, { recursive: true, verbatimSymlinks: true });
    fs.copyFileSync(probe, path.join(tmp, 'sysprobe'));
    fs.chmodSync(path.join(tmp, 'sysprobe'), 0o755);
  });
  const inRoot = path.join(rootfs, 'sysprobe');
  if (!fs.existsSync(inRoot) || fs.statSync(inRoot).mtimeMs < fs.statSync(probe).mtimeMs) {
    const tmp = `${inRoot}.tmp-${process.pid}`;
    fs.copyFileSync(probe, tmp);
    fs.chmodSync(tmp, 0o755);
    fs.renameSync(tmp, inRoot);
  }
  return { rootfs, reason: null };
}

const probe = onX86 ? sysprobeBinary() : null;
const { rootfs, reason: noRootfs } = onX86 ? securityRootfs(probe) : { rootfs: null, reason: 'x86_64 only' };
// test/rootless/run.sh builds the fixtures as root, then runs this file as a user who cannot write them.
if (process.env.NSBOX_FIXTURES_ONLY === '1') return;

const filterDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-seccomp-'));
t.teardown(() => fs.rmSync(filterDir, { recursive: true, force: true }));
function filterFile(policy = 'default', caps = 0n) {
  const f = path.join(filterDir, `${createHash('sha256').update(JSON.stringify(policy)).digest('hex').slice(0, 16)}-${caps}.bpf`);
  if (!fs.existsSync(f)) fs.writeFileSync(f, S.compileSeccomp(S.resolveSeccomp(policy), 'x64', caps));
  return f;
}

function parse(stdout, status, signal) {
  const line = stdout.toString().trim();
  let out = null;
  try {
    out = line ? JSON.parse(line) : null;
  } catch {
    /* not JSON */
  }
  return { ...(out ?? {}), status, signal, raw: line };
}

/** Runs the probe on the host; `filter: null` runs it without any filter (the control). */
function onHost(args, filter = filterFile()) {
  const r = spawnSync(probe, filter ? ['--filter', filter, ...args] : args, { timeout: 10000 });
  return parse(r.stdout, r.status, r.signal);
}

async function inContainer(args, opts = {}) {
  const { run } = require('../..');
  const r = await run({ rootfs, command: ['/sysprobe', ...args], timeout: 20000, ...opts });
  return parse(r.stdout, r.exitCode, r.signal);
}

/**
 * One case, in both places. `want`: { errno } (ret -1 with that errno), { ok: true } (success),
 * { allowed: true } (not refused by the filter: neither EPERM nor ENOSYS), { signal }.
 */
function check(t, where, got, want, what) {
  const msg = `${what} [${where}] → ${got.raw || `signal ${got.signal}`}`;
  if (want.signal) return t.equal(got.signal, want.signal, msg);
  t.equal(got.signal, null, `${what} [${where}]: not killed`);
  if (want.errno !== undefined) return t.match(got, { ret: -1, errno: want.errno }, msg);
  if (want.ok) return t.equal(got.errno, 0, msg);
  if (want.allowed) return t.ok(got.errno !== EPERM && got.errno !== ENOSYS && got.errno !== undefined, msg);
  throw new Error('bad expectation');
}

const hostSkip = !onX86 ? 'the probe and the tables are x86_64-only' : false;
const containerSkip = hostSkip || noRootfs || noContainer;

/** `cases`: [args, want, what, { host: false } to skip the host run]. */
function attack(name, cases, control) {
  t.test(name, { skip: hostSkip }, async (t) => {
    t.test('host kernel, filter installed by the probe', async (t) => {
      for (const [args, want, what, o = {}] of cases) {
        if (o.host === false) continue;
        check(t, 'host', onHost(args, o.filter ? filterFile(o.filter) : undefined), want, what);
      }
      // Without the filter the same call answers differently: the refusal above is the filter's.
      for (const [args, want, what, o = {}] of control ?? []) {
        if (o.root && !isRoot()) continue;
        check(t, 'host, no filter', onHost(args, null), want, what);
      }
    });
    t.test('container with the default seccomp option', { skip: containerSkip }, async (t) => {
      for (const [args, want, what, o = {}] of cases) {
        if (o.container === false) continue;
        check(t, 'container', await inContainer(args, o.options), want, what);
      }
    });
  });
}

const nr = (name) => String(x86[name]);

attack(
  'seccomp: mount is denied with EPERM',
  [
    [['syscall', nr('mount'), '0', '@str:/nonexistent/nsbox', '@str:tmpfs', '0', '0'], { errno: EPERM }, 'mount'],
    [['syscall', nr('umount2'), '@str:/nonexistent/nsbox', '0'], { errno: EPERM }, 'umount2'],
    [['syscall', nr('pivot_root'), '@str:/nonexistent/a', '@str:/nonexistent/b'], { errno: EPERM }, 'pivot_root'],
    [['syscall', nr('fsopen'), '@str:tmpfs', '0'], { errno: EPERM }, 'fsopen (new mount API)'],
    [['syscall', nr('open_tree'), '-100', '@str:/', '1'], { errno: EPERM }, 'open_tree'],
    [['syscall', nr('chroot'), '@str:/nonexistent/nsbox'], { errno: EPERM }, 'chroot'],
  ],
  [
    [['syscall', nr('mount'), '0', '@str:/nonexistent/nsbox', '@str:tmpfs', '0', '0'], { errno: 2 }, 'mount without a filter: ENOENT'],
    [['syscall', nr('chroot'), '@str:/nonexistent/nsbox'], { errno: 2 }, 'chroot without a filter: ENOENT'],
  ],
);

attack(
  'clone3 answers ENOSYS so glibc falls back',
  [
    [['syscall', nr('clone3'), '@buf', '88'], { errno: ENOSYS }, 'clone3'],
    [['thread'], { ok: true }, 'pthread_create (glibc tries clone3, then clone)'],
    [['fork'], { ok: true }, 'fork'],
    [['clone', '0'], { ok: true }, 'plain clone'],
  ],
  [[['syscall', nr('clone3'), '@buf', '0'], { errno: 22 }, 'clone3(size 0) without a filter: EINVAL']],
);

attack(
  'an unknown syscall number answers ENOSYS',
  [
    [['syscall', '1000'], { errno: ENOSYS }, 'syscall 1000'],
    [['syscall', '400'], { errno: ENOSYS }, 'syscall 400 (a hole in the table)'],
    [['syscall', '468', '-1', '0', '0', '0', '0'], { errno: ENOSYS }, 'file_getattr (468): newer than the table'],
    [['syscall', '-1'], { errno: ENOSYS }, 'syscall -1'],
  ],
);

attack(
  'i386 int 0x80 syscalls are killed',
  [
    [['int80', '20'], { signal: 'SIGSYS' }, 'i386 getpid'],
    [['int80', '21', '0', '0', '0'], { signal: 'SIGSYS' }, 'i386 mount'],
    [['int80', '288', '0'], { signal: 'SIGSYS' }, 'i386 keyctl'],
  ],
);

t.test('i386 int 0x80 works without the filter (so the kill above is the filter\'s)', { skip: hostSkip }, async (t) => {
  const r = onHost(['int80', '20'], null);
  if (r.signal) {
    t.skip(`this kernel has no i386 emulation (${r.signal})`);
    return;
  }
  t.ok(r.ret > 0, `i386 getpid without a filter returns a pid (${r.raw})`);
});

attack('x32 syscalls are denied', [
  [['x32', nr('getpid')], { errno: ENOSYS }, 'x32 getpid'],
  [['x32', nr('mount'), '0', '0', '0', '0', '0'], { errno: ENOSYS }, 'x32 mount'],
  [['x32', '520'], { errno: ENOSYS }, 'x32-only execve (520)'],
]);

attack(
  'TIOCSTI with high bits set is refused',
  [
    [['syscall', nr('ioctl'), '0', '0x5412', '@buf'], { errno: EPERM }, 'ioctl(0, TIOCSTI)'],
    [['syscall', nr('ioctl'), '0', '0x100005412', '@buf'], { errno: EPERM }, 'ioctl(0, (1 << 32) | TIOCSTI)'],
    [['syscall', nr('ioctl'), '0', '0xffffffff00005412', '@buf'], { errno: EPERM }, 'ioctl(0, (0xffffffff << 32) | TIOCSTI)'],
    [['syscall', nr('ioctl'), '0', '0x541c', '@buf'], { errno: EPERM }, 'ioctl(0, TIOCLINUX)'],
    [['syscall', nr('ioctl'), '1', '0x541b', '@buf'], { allowed: true }, 'ioctl(1, FIONREAD) passes'],
  ],
  [[['syscall', nr('ioctl'), '0', '0x100005412', '@buf'], { allowed: true }, 'the same ioctl without a filter: the tty layer answers']],
);

attack('AF_VSOCK and AF_ALG sockets are refused', [
  [['syscall', nr('socket'), '40', '1', '0'], { errno: EAFNOSUPPORT }, 'socket(AF_VSOCK)'],
  [['syscall', nr('socket'), '38', '5', '0'], { errno: EAFNOSUPPORT }, 'socket(AF_ALG)'],
  [['syscall', nr('socket'), '0x100000026', '5', '0'], { errno: EAFNOSUPPORT }, 'socket(AF_ALG | 1 << 32)'],
  [['syscall', nr('socket'), '1', '1', '0'], { ok: true }, 'socket(AF_UNIX) works'],
  [['syscall', nr('socket'), '2', '2', '0'], { ok: true }, 'socket(AF_INET, SOCK_DGRAM) works'],
  [['syscall', nr('socket'), '16', '3', '0'], { ok: true }, 'socket(AF_NETLINK) works'],
]);

attack(
  'unshare(CLONE_NEWUSER) is refused',
  [
    [['syscall', nr('unshare'), '0x10000000'], { errno: EPERM }, 'unshare(CLONE_NEWUSER)'],
    [['syscall', nr('unshare'), '0x20000'], { errno: EPERM }, 'unshare(CLONE_NEWNS)'],
    [['syscall', nr('unshare'), '0x40000000'], { errno: EPERM }, 'unshare(CLONE_NEWNET)'],
    [['syscall', nr('unshare'), '0x80'], { errno: EPERM }, 'unshare(CLONE_NEWTIME)'],
    [['clone', '0x10000000'], { errno: EPERM }, 'clone(CLONE_NEWUSER)'],
    [['clone', '0x20000000'], { errno: EPERM }, 'clone(CLONE_NEWPID)'],
    [['syscall', nr('unshare'), '0x400'], { ok: true }, 'unshare(CLONE_FILES) works'],
  ],
  [[['syscall', nr('unshare'), '0x10000000'], { ok: true }, 'unshare(CLONE_NEWUSER) without a filter works (for this probe only)', { root: true }]],
);

attack(
  'setns is refused',
  [[['syscall', nr('setns'), '-1', '0'], { errno: EPERM }, 'setns(-1, 0)']],
  [[['syscall', nr('setns'), '-1', '0'], { errno: 9 }, 'setns without a filter: EBADF']],
);

attack(
  'keyctl/add_key are refused',
  [
    [['syscall', nr('keyctl'), '0', '-1000', '0'], { errno: EPERM }, 'keyctl(KEYCTL_GET_KEYRING_ID)'],
    [['syscall', nr('add_key'), '@str:user', '@str:nsbox', '@buf', '1', '-3'], { errno: EPERM }, 'add_key'],
    [['syscall', nr('request_key'), '@str:user', '@str:nsbox', '0', '0'], { errno: EPERM }, 'request_key'],
  ],
  [[['syscall', nr('keyctl'), '0', '-1000', '0'], { errno: 22 }, 'keyctl without a filter: EINVAL']],
);

attack(
  'userfaultfd is refused',
  [[['syscall', nr('userfaultfd'), '0xdead0000'], { errno: EPERM }, 'userfaultfd']],
  [[['syscall', nr('userfaultfd'), '0xdead0000'], { errno: 22 }, 'userfaultfd(bad flags) without a filter: EINVAL', { root: true }]],
);

attack(
  'io_uring_setup is refused',
  [
    [['syscall', nr('io_uring_setup'), '0', '0'], { errno: EPERM }, 'io_uring_setup'],
    [['syscall', nr('io_uring_enter'), '-1', '0', '0', '0', '0', '0'], { errno: EPERM }, 'io_uring_enter'],
    [['syscall', nr('io_uring_register'), '-1', '0', '0', '0'], { errno: EPERM }, 'io_uring_register'],
  ],
);

attack(
  'bpf and perf_event_open are refused',
  [
    [['syscall', nr('bpf'), '-1', '0', '0'], { errno: EPERM }, 'bpf'],
    [['syscall', nr('perf_event_open'), '0', '0', '-1', '-1', '0'], { errno: EPERM }, 'perf_event_open'],
  ],
  [[['syscall', nr('bpf'), '-1', '0', '0'], { errno: 22 }, 'bpf(-1) without a filter: EINVAL']],
);

attack(
  'personality(READ_IMPLIES_EXEC) is refused',
  [
    [['syscall', nr('personality'), '0x400000'], { errno: EPERM }, 'personality(READ_IMPLIES_EXEC)'],
    [['syscall', nr('personality'), '0x40000'], { errno: EPERM }, 'personality(ADDR_NO_RANDOMIZE)'],
    [['syscall', nr('personality'), '0xffffffff'], { ok: true }, 'personality(0xffffffff) queries'],
    [['syscall', nr('personality'), '0'], { ok: true }, 'personality(PER_LINUX)'],
  ],
);

attack(
  'kernel modules, kexec and reboot are refused',
  [
    [['syscall', nr('init_module'), '0', '0', '@str:'], { errno: EPERM }, 'init_module'],
    [['syscall', nr('finit_module'), '-1', '@str:', '0'], { errno: EPERM }, 'finit_module'],
    [['syscall', nr('delete_module'), '@str:nsbox_no_such_module', '0'], { errno: EPERM }, 'delete_module'],
    [['syscall', nr('kexec_load'), '0', '0', '0', '0xdead0000'], { errno: EPERM }, 'kexec_load'],
    [['syscall', nr('kexec_file_load'), '-1', '-1', '0', '0', '0xdead0000'], { errno: EPERM }, 'kexec_file_load'],
    [['syscall', nr('reboot'), '0', '0', '0', '0'], { errno: EPERM }, 'reboot (bad magic)'],
  ],
  // (init_module and friends answer ENOSYS on kernels built without modules: reboot is the control.)
  [[['syscall', nr('reboot'), '0', '0', '0', '0'], { errno: 22 }, 'reboot(bad magic) without a filter: EINVAL', { root: true }]],
);

attack(
  'open_by_handle_at (the "Shocker" breakout) is refused',
  [
    [['syscall', nr('open_by_handle_at'), '-1', '@buf', '0'], { errno: EPERM }, 'open_by_handle_at'],
    [['syscall', nr('name_to_handle_at'), '-100', '@str:/', '@buf', '@buf', '0'], { allowed: true }, 'name_to_handle_at stays allowed'],
  ],
);

attack('the clock, swap and accounting are refused', [
  [['syscall', nr('settimeofday'), '-1', '-1'], { errno: EPERM }, 'settimeofday'],
  [['syscall', nr('clock_settime'), '99', '@buf'], { errno: EPERM }, 'clock_settime'],
  [['syscall', nr('swapon'), '@str:/nonexistent/nsbox', '0'], { errno: EPERM }, 'swapon'],
  [['syscall', nr('swapoff'), '@str:/nonexistent/nsbox'], { errno: EPERM }, 'swapoff'],
  [['syscall', nr('acct'), '@str:/nonexistent/nsbox'], { errno: EPERM }, 'acct'],
  [['syscall', nr('clock_gettime'), '0', '@buf'], { ok: true }, 'clock_gettime works'],
]);

attack('kcmp, pidfd_getfd and process_madvise are refused; ptrace is allowed (Docker, kernel >= 4.8)', [
  [['syscall', nr('kcmp'), '1', '1', '99', '0', '0'], { errno: EPERM }, 'kcmp'],
  [['syscall', nr('pidfd_getfd'), '-1', '0', '0'], { errno: EPERM }, 'pidfd_getfd'],
  [['syscall', nr('process_madvise'), '-1', '0', '0', '0', '0'], { errno: EPERM }, 'process_madvise'],
  [['syscall', nr('ptrace'), '2', '99999999', '0', '0'], { errno: 3 }, 'ptrace(PEEKDATA, no such pid): ESRCH'],
  [['syscall', nr('process_vm_readv'), '99999999', '0', '0', '0', '0', '0'], { allowed: true }, 'process_vm_readv is not filtered'],
]);

attack('NUMA memory policy calls are refused', [
  [['syscall', nr('mbind'), '0', '0', '0', '0', '0', '0'], { errno: EPERM }, 'mbind'],
  [['syscall', nr('set_mempolicy'), '-1', '0', '0'], { errno: EPERM }, 'set_mempolicy'],
  [['syscall', nr('get_mempolicy'), '0', '0', '0', '0', '-1'], { errno: EPERM }, 'get_mempolicy'],
  [['syscall', nr('move_pages'), '99999999', '0', '0', '0', '0', '0'], { errno: EPERM }, 'move_pages'],
  [['syscall', nr('migrate_pages'), '99999999', '0', '0', '0'], { errno: EPERM }, 'migrate_pages'],
]);

attack('the kernel log, tracing, quotas, I/O ports and host name are refused', [
  [['syscall', nr('syslog'), '10', '0', '0'], { errno: EPERM }, 'syslog(SIZE_BUFFER)'],
  [['syscall', nr('lookup_dcookie'), '0', '0', '0'], { errno: EPERM }, 'lookup_dcookie'],
  [['syscall', nr('fanotify_init'), '0xffffffff', '0'], { errno: EPERM }, 'fanotify_init'],
  [['syscall', nr('quotactl'), '0', '0', '0', '0'], { errno: EPERM }, 'quotactl'],
  [['syscall', nr('iopl'), '0'], { errno: EPERM }, 'iopl'],
  [['syscall', nr('ioperm'), '0', '0', '0'], { errno: EPERM }, 'ioperm'],
  [['syscall', nr('sethostname'), '@str:x', '100000'], { errno: EPERM }, 'sethostname'],
  [['syscall', nr('setdomainname'), '@str:x', '100000'], { errno: EPERM }, 'setdomainname'],
  [['syscall', nr('lsm_list_modules'), '0', '0', '0'], { errno: EPERM }, 'lsm_list_modules'],
  // vhangup would hang up the terminal of a host probe, should the filter fail: container only.
  [['syscall', nr('vhangup')], { errno: EPERM }, 'vhangup', { host: false }],
]);

t.test('every denied system call answers EPERM from the kernel (all arguments -1)', { skip: hostSkip }, async (t) => {
  const d = S.describeSeccomp(S.resolveSeccomp('default'), 'x64');
  const args = (name) => ['syscall', nr(name), '-1', '-1', '-1', '-1', '-1', '-1'];
  t.test('host kernel', async (t) => {
    for (const { name } of d.denied) {
      if (name === 'vhangup') continue; // see above
      check(t, 'host', onHost(args(name)), { errno: EPERM }, name);
    }
  });
  t.test('container', { skip: containerSkip }, async (t) => {
    for (const { name } of d.denied) check(t, 'container', await inContainer(args(name)), { errno: EPERM }, name);
  });
});

t.test('defaultErrno and deny reach the kernel', { skip: hostSkip }, async (t) => {
  const f = filterFile({ deny: ['getppid'], defaultErrno: 13 });
  check(t, 'host', onHost(['syscall', nr('getppid')], f), { errno: 13 }, 'getppid denied with EACCES');
  check(t, 'host', onHost(['syscall', nr('mount'), '0', '@str:/nonexistent/nsbox', '0', '0', '0'], f), { errno: 13 }, 'mount with EACCES');
  const g = filterFile({ allow: ['keyctl'] });
  check(t, 'host', onHost(['syscall', nr('keyctl'), '0', '-1000', '0'], g), { errno: 22 }, 'allow: keyctl reaches the kernel (EINVAL)');
});

t.test('ordinary programs run under the default filter', { skip: hostSkip }, async (t) => {
  const f = filterFile();
  const sh = spawnSync(probe, ['--filter', f, 'exec', '/bin/sh', '-c', 'ls / >/dev/null && grep Seccomp: /proc/self/status'], { encoding: 'utf8' });
  t.equal(sh.status, 0, `sh ran (${sh.stderr})`);
  t.match(sh.stdout, /Seccomp:\s+2/, 'in filter mode');
  const node = spawnSync(probe, ['--filter', f, 'exec', process.execPath, '-e', "require('child_process').execFileSync('/bin/true'); new (require('worker_threads').Worker)('0', { eval: true }).on('exit', () => console.log('ok'))"], { encoding: 'utf8' });
  t.equal(node.stdout.trim(), 'ok', `node with a child process and a worker thread (${node.stderr.slice(0, 300)})`);
});

t.test('containers get the filter; seccomp: none gets none', { skip: containerSkip }, async (t) => {
  const { run } = require('../..');
  const cmd = ['/bin/sh', '-c', 'grep -E "^(Seccomp|Seccomp_filters|NoNewPrivs):" /proc/self/status'];
  const on = await run({ rootfs, command: cmd });
  t.equal(on.exitCode, 0, on.stderr.toString());
  t.match(on.stdout.toString(), /Seccomp:\s+2/, 'default: filter mode');
  t.match(on.stdout.toString(), /NoNewPrivs:\s+1/, 'with no_new_privs');
  const off = await run({ rootfs, command: cmd, seccomp: 'none' });
  t.match(off.stdout.toString(), /Seccomp:\s+0/, "'none': no filter");
  const init = await run({ rootfs, command: ['/sysprobe', 'thread'], init: true });
  t.equal(init.exitCode, 0, 'the bundled init runs under the filter too');
  t.match(JSON.parse(init.stdout.toString()), { ret: 0, errno: 0 });
  const custom = await inContainer(['syscall', nr('getppid')], { seccomp: { deny: ['getppid'], defaultErrno: 13 } });
  t.match(custom, { ret: -1, errno: 13 }, 'a custom policy reaches the container');
});
