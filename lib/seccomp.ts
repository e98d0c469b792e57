// seccomp.ts: nsbox's default system call filter, compiled to a classic BPF program by our own small
// assembler (no libseccomp). The policy is Docker's default profile (moby/profiles
// seccomp/default.json) for a container without CAP_SYS_ADMIN and the other capabilities app
// containers drop; docs/security.md explains every choice. Pure: no I/O.
//
// The program, in order:
//   1. seccomp_data.arch must be this architecture's AUDIT_ARCH, else KILL_PROCESS (on x86_64 this is
//      what stops the i386 ABI: `int $0x80` system calls carry AUDIT_ARCH_I386).
//   2. x86_64: a number with the x32 bit (0x40000000) answers ENOSYS, as on a kernel without x32.
//   3. A binary search over ranges of system call numbers. Each leaf returns ALLOW, ERRNO(EPERM or
//      the configured errno) for a known denied call, ERRNO(ENOSYS) for numbers the table does not
//      know (newer kernels: libc falls back) and for clone3 (glibc falls back to clone), or is a
//      short argument check (clone, unshare, ioctl, socket, personality).
import { PREBUILT } from './seccomp-prebuilt';
import { constants as osConstants } from 'node:os';

import { invalidType, invalidValue, notSupported, outOfRange } from './errors';
import aarch64Table from './syscalls/aarch64';
import x86_64Table from './syscalls/x86_64';
import { arrayElements, editDistance } from './util';

/** The `seccomp` option: Docker's default profile, no filter, or the default profile adjusted. */
export type SeccompOption = 'default' | 'none' | { allow?: string[]; deny?: string[]; defaultErrno?: number };

/** A validated filter policy: the default profile plus the caller's changes. */
export interface ResolvedSeccomp {
  readonly profile: 'default';
  /** Allowed without any argument condition, in addition to the default allow-list. */
  readonly allow: readonly string[];
  /** Denied with `errno`, whatever the default profile says. */
  readonly deny: readonly string[];
  /** The errno a denied known system call answers (EPERM unless `defaultErrno`). */
  readonly errno: number;
}

const E = osConstants.errno;
const EPERM = E.EPERM;
const ENOSYS = E.ENOSYS;
const EAFNOSUPPORT = E.EAFNOSUPPORT;
const MAX_ERRNO = 4095;
const MAX_INSNS = 4096;

// ---------------------------------------------------------------------------------------------
// The policy, by name. Every name in lib/syscalls/*.json is in exactly one of ALLOW, CONDITIONAL
// or a DENIED family (test/security/seccomp-compile.test.js checks this); anything not classified is
// denied, so a table update fails closed.

/** Docker's unconditional allow-list (moby/profiles seccomp/default.json), names found on x86_64 or aarch64. */
const ALLOW: readonly string[] = [
  'accept', 'accept4', 'access', 'adjtimex', 'alarm', 'bind', 'brk', 'cachestat', 'capget', 'capset',
  'chdir', 'chmod', 'chown', 'clock_adjtime', 'clock_getres', 'clock_gettime', 'clock_nanosleep', 'close',
  'close_range', 'connect', 'copy_file_range', 'creat', 'dup', 'dup2', 'dup3', 'epoll_create',
  'epoll_create1', 'epoll_ctl', 'epoll_ctl_old', 'epoll_pwait', 'epoll_pwait2', 'epoll_wait',
  'epoll_wait_old', 'eventfd', 'eventfd2', 'execve', 'execveat', 'exit', 'exit_group', 'faccessat',
  'faccessat2', 'fadvise64', 'fallocate', 'fanotify_mark', 'fchdir', 'fchmod', 'fchmodat', 'fchmodat2',
  'fchown', 'fchownat', 'fcntl', 'fdatasync', 'fgetxattr', 'flistxattr', 'flock', 'fork', 'fremovexattr',
  'fsetxattr', 'fstat', 'fstatfs', 'fsync', 'ftruncate', 'futex', 'futex_requeue', 'futex_wait',
  'futex_waitv', 'futex_wake', 'futimesat', 'getcpu', 'getcwd', 'getdents', 'getdents64', 'getegid',
  'geteuid', 'getgid', 'getgroups', 'getitimer', 'getpeername', 'getpgid', 'getpgrp', 'getpid', 'getppid',
  'getpriority', 'getrandom', 'getresgid', 'getresuid', 'getrlimit', 'get_robust_list', 'getrusage',
  'getsid', 'getsockname', 'getsockopt', 'get_thread_area', 'gettid', 'gettimeofday', 'getuid',
  'getxattr', 'getxattrat', 'inotify_add_watch', 'inotify_init', 'inotify_init1', 'inotify_rm_watch',
  'io_cancel', 'io_destroy', 'io_getevents', 'io_pgetevents', 'ioprio_get', 'ioprio_set', 'io_setup',
  'io_submit', 'kill', 'landlock_add_rule', 'landlock_create_ruleset', 'landlock_restrict_self', 'lchown',
  'lgetxattr', 'link', 'linkat', 'listen', 'listmount', 'listxattr', 'listxattrat', 'llistxattr',
  'lremovexattr', 'lseek', 'lsetxattr', 'lstat', 'madvise', 'map_shadow_stack', 'membarrier',
  'memfd_create', 'memfd_secret', 'mincore', 'mkdir', 'mkdirat', 'mknod', 'mknodat', 'mlock', 'mlock2',
  'mlockall', 'mmap', 'mprotect', 'mq_getsetattr', 'mq_notify', 'mq_open', 'mq_timedreceive',
  'mq_timedsend', 'mq_unlink', 'mremap', 'mseal', 'msgctl', 'msgget', 'msgrcv', 'msgsnd', 'msync',
  'munlock', 'munlockall', 'munmap', 'name_to_handle_at', 'nanosleep', 'newfstatat', 'open', 'openat',
  'openat2', 'pause', 'pidfd_open', 'pidfd_send_signal', 'pipe', 'pipe2', 'pkey_alloc', 'pkey_free',
  'pkey_mprotect', 'poll', 'ppoll', 'prctl', 'pread64', 'preadv', 'preadv2', 'prlimit64',
  'process_mrelease', 'pselect6', 'pwrite64', 'pwritev', 'pwritev2', 'read', 'readahead', 'readlink',
  'readlinkat', 'readv', 'recvfrom', 'recvmmsg', 'recvmsg', 'remap_file_pages', 'removexattr',
  'removexattrat', 'rename', 'renameat', 'renameat2', 'restart_syscall', 'rmdir', 'rseq', 'rt_sigaction',
  'rt_sigpending', 'rt_sigprocmask', 'rt_sigqueueinfo', 'rt_sigreturn', 'rt_sigsuspend',
  'rt_sigtimedwait', 'rt_tgsigqueueinfo', 'sched_getaffinity', 'sched_getattr', 'sched_getparam',
  'sched_get_priority_max', 'sched_get_priority_min', 'sched_getscheduler', 'sched_rr_get_interval',
  'sched_setaffinity', 'sched_setattr', 'sched_setparam', 'sched_setscheduler', 'sched_yield', 'seccomp',
  'select', 'semctl', 'semget', 'semop', 'semtimedop', 'sendfile', 'sendmmsg', 'sendmsg', 'sendto',
  'setfsgid', 'setfsuid', 'setgid', 'setgroups', 'setitimer', 'setpgid', 'setpriority', 'setregid',
  'setresgid', 'setresuid', 'setreuid', 'setrlimit', 'set_robust_list', 'setsid', 'setsockopt',
  'set_thread_area', 'set_tid_address', 'setuid', 'setxattr', 'setxattrat', 'shmat', 'shmctl', 'shmdt',
  'shmget', 'shutdown', 'sigaltstack', 'signalfd', 'signalfd4', 'socketpair', 'splice', 'stat', 'statfs',
  'statmount', 'statx', 'symlink', 'symlinkat', 'sync', 'sync_file_range', 'syncfs', 'sysinfo', 'tee',
  'tgkill', 'time', 'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime', 'timer_settime',
  'timerfd_create', 'timerfd_gettime', 'timerfd_settime', 'times', 'tkill', 'truncate', 'umask', 'uname',
  'unlink', 'unlinkat', 'uretprobe', 'utime', 'utimensat', 'utimes', 'vfork', 'vmsplice', 'wait4',
  'waitid', 'write', 'writev',
  // Docker: allowed on kernels >= 4.8, where ptrace can no longer be used to bypass seccomp.
  'ptrace', 'process_vm_readv', 'process_vm_writev',
  // x86 only (Docker allows them for amd64/x32/x86).
  'arch_prctl', 'modify_ldt',
  // Not in Docker's list (Linux 6.16, x86_64): only meaningful from a kernel-installed uprobe
  // trampoline, and the kernel lets it (like uretprobe) past seccomp anyway.
  'uprobe',
];

/** Allowed, but only with the argument check that `rules` below compiles. */
const CONDITIONAL: Readonly<Record<string, string>> = {
  clone: 'allowed unless flags (arg 0) contain a namespace flag: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID or NEWNET (mask 0x7E020000) → errno',
  unshare: 'allowed unless flags (arg 0) contain a namespace flag (mask 0x7E020000, plus CLONE_NEWTIME 0x80) → errno',
  ioctl: 'allowed unless the request (arg 1, low 32 bits, as the kernel reads it) is TIOCSTI (0x5412) or TIOCLINUX (0x541C) → errno',
  socket: 'allowed unless the family (arg 0) is AF_ALG (38) or AF_VSOCK (40) → EAFNOSUPPORT',
  personality: 'allowed only for 0 (PER_LINUX), 8 (UNAME26), 0x20000 (PER_LINUX32), 0x20008 and 0xffffffff (query) → errno',
  clone3: 'always ENOSYS, so that glibc (2.34+) falls back to clone, whose flags the filter can see',
};

export interface DeniedFamily {
  readonly family: string;
  readonly syscalls: readonly string[];
  /** Capability that re-allows them (Docker's rule), when a container keeps it. */
  readonly capability?: string;
  readonly reason: string;
}

/** Everything denied (with EPERM by default), by family, with Docker's reason. */
export const DENIED: readonly DeniedFamily[] = [
  { family: 'mounts', syscalls: ['mount', 'umount2', 'mount_setattr', 'move_mount', 'open_tree', 'fsopen', 'fsconfig', 'fsmount', 'fspick'], capability: 'CAP_SYS_ADMIN', reason: 'Mounting needs CAP_SYS_ADMIN; denying it outright also closes mount-based escapes such as the cgroup v1 release_agent (CVE-2022-0492).' },
  { family: 'namespaces', syscalls: ['setns'], capability: 'CAP_SYS_ADMIN', reason: 'Joining or creating namespaces (also clone/unshare with namespace flags) is how nested user namespaces reach kernel code that is otherwise root-only.' },
  { family: 'root switching', syscalls: ['pivot_root'], reason: 'Never allowed by Docker: only a runtime pivots the root.' },
  { family: 'chroot', syscalls: ['chroot'], capability: 'CAP_SYS_CHROOT', reason: 'Needs CAP_SYS_CHROOT, which app containers drop.' },
  { family: 'keyring', syscalls: ['keyctl', 'add_key', 'request_key'], reason: 'The kernel keyring is not namespaced: keys of other containers and of the host could be reached.' },
  { family: 'kernel modules', syscalls: ['init_module', 'finit_module', 'delete_module'], capability: 'CAP_SYS_MODULE', reason: 'Loading kernel code.' },
  { family: 'kexec and reboot', syscalls: ['kexec_load', 'kexec_file_load', 'reboot'], capability: 'CAP_SYS_BOOT (reboot only)', reason: 'Replacing or rebooting the running kernel (kexec is never allowed; reboot needs CAP_SYS_BOOT).' },
  { family: 'swap', syscalls: ['swapon', 'swapoff'], reason: 'Host-wide swap configuration; never allowed by Docker.' },
  { family: 'clock', syscalls: ['settimeofday', 'clock_settime'], capability: 'CAP_SYS_TIME', reason: 'Time is not namespaced: setting it changes the host clock.' },
  { family: 'bpf', syscalls: ['bpf'], capability: 'CAP_SYS_ADMIN or CAP_BPF', reason: 'Loading eBPF programs: a large, often-exploited kernel surface.' },
  { family: 'perf and tracing', syscalls: ['perf_event_open', 'lookup_dcookie', 'fanotify_init'], capability: 'CAP_SYS_ADMIN (perf_event_open also CAP_PERFMON)', reason: 'Tracing and profiling leak information about the host and other containers.' },
  { family: 'process inspection', syscalls: ['kcmp', 'pidfd_getfd', 'process_madvise'], capability: 'CAP_SYS_PTRACE', reason: 'Gated by Docker on CAP_SYS_PTRACE (ptrace itself is allowed on kernels >= 4.8).' },
  { family: 'kernel log', syscalls: ['syslog'], capability: 'CAP_SYS_ADMIN or CAP_SYSLOG', reason: 'The kernel log is host-wide and leaks kernel addresses.' },
  { family: 'userfaultfd', syscalls: ['userfaultfd'], reason: 'Page-fault handling in user space; a well-known way to widen kernel race windows in exploits.' },
  { family: 'io_uring', syscalls: ['io_uring_setup', 'io_uring_enter', 'io_uring_register'], reason: 'Removed from Docker\'s profile in 2023 after a run of kernel exploits (Google kCTF VRP).' },
  { family: 'NUMA memory policy', syscalls: ['mbind', 'set_mempolicy', 'get_mempolicy', 'set_mempolicy_home_node', 'move_pages', 'migrate_pages'], capability: 'CAP_SYS_NICE (move_pages, migrate_pages: never)', reason: 'Can degrade the host and other containers; move_pages/migrate_pages act on other processes\' memory.' },
  { family: 'I/O ports', syscalls: ['iopl', 'ioperm'], capability: 'CAP_SYS_RAWIO', reason: 'Direct hardware access.' },
  { family: 'quota and accounting', syscalls: ['quotactl', 'quotactl_fd', 'acct'], capability: 'CAP_SYS_ADMIN (acct: CAP_SYS_PACCT)', reason: 'Host-wide quota and process accounting.' },
  { family: 'host name', syscalls: ['sethostname', 'setdomainname'], capability: 'CAP_SYS_ADMIN', reason: 'Docker gates them on CAP_SYS_ADMIN; nsbox sets the container\'s host name itself.' },
  { family: 'file handles', syscalls: ['open_by_handle_at'], capability: 'CAP_DAC_READ_SEARCH', reason: 'The "Shocker" breakout: brute-forced file handles open host files outside the root.' },
  { family: 'terminal hangup', syscalls: ['vhangup'], capability: 'CAP_SYS_TTY_CONFIG', reason: 'Needs CAP_SYS_TTY_CONFIG.' },
  { family: 'LSM attributes', syscalls: ['lsm_get_self_attr', 'lsm_set_self_attr', 'lsm_list_modules'], capability: 'CAP_SYS_ADMIN', reason: 'Gated by Docker on CAP_SYS_ADMIN.' },
  { family: 'obsolete', syscalls: ['uselib', 'ustat', 'sysfs', '_sysctl', 'nfsservctl', 'create_module', 'get_kernel_syms', 'query_module', 'getpmsg', 'putpmsg', 'afs_syscall', 'tuxcall', 'security', 'vserver'], reason: 'Obsolete or never implemented; old, poorly tested kernel paths.' },
];

/**
 * Docker's capability gates: a container that keeps the capability (e.g. `capabilities.add`) gets
 * the system calls back. CAP_SYS_ADMIN also lifts the clone/unshare flag checks and lets clone3 run.
 */
const CAP_GATES: ReadonlyArray<readonly [number, readonly string[]]> = [
  [21 /* SYS_ADMIN */, ['bpf', 'clone', 'clone3', 'fanotify_init', 'fsconfig', 'fsmount', 'fsopen', 'fspick', 'lookup_dcookie', 'lsm_get_self_attr', 'lsm_list_modules', 'lsm_set_self_attr', 'mount', 'mount_setattr', 'move_mount', 'open_tree', 'perf_event_open', 'quotactl', 'quotactl_fd', 'setdomainname', 'sethostname', 'setns', 'syslog', 'umount2', 'unshare']],
  [2 /* DAC_READ_SEARCH */, ['open_by_handle_at']],
  [22 /* SYS_BOOT */, ['reboot']],
  [18 /* SYS_CHROOT */, ['chroot']],
  [16 /* SYS_MODULE */, ['delete_module', 'init_module', 'finit_module']],
  [20 /* SYS_PACCT */, ['acct']],
  [19 /* SYS_PTRACE */, ['kcmp', 'pidfd_getfd', 'process_madvise', 'process_vm_readv', 'process_vm_writev', 'ptrace']],
  [17 /* SYS_RAWIO */, ['iopl', 'ioperm']],
  [25 /* SYS_TIME */, ['settimeofday', 'clock_settime']],
  [26 /* SYS_TTY_CONFIG */, ['vhangup']],
  [23 /* SYS_NICE */, ['get_mempolicy', 'mbind', 'set_mempolicy', 'set_mempolicy_home_node']],
  [34 /* SYSLOG */, ['syslog']],
  [39 /* BPF */, ['bpf']],
  [38 /* PERFMON */, ['perf_event_open']],
];

/** What the child runs after installing the filter (native/core/child.cc, init.c trampoline). */
const EXEC_PATH = ['execve', 'execveat', 'exit', 'exit_group', 'rt_sigreturn', 'rt_sigprocmask', 'fcntl', 'write'];

// Argument-check constants.
const CLONE_NS_MASK = 0x7e020000; // NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
const CLONE_NEWTIME = 0x00000080; // unshare only: in clone() these bits are the exit signal
const TIOCSTI = 0x5412;
const TIOCLINUX = 0x541c;
const AF_ALG = 38;
const AF_VSOCK = 40;
const PERSONALITIES = [0, 8, 0x20000, 0x20008, 0xffffffff];

// ---------------------------------------------------------------------------------------------
// Architectures.

interface Arch {
  readonly name: 'x86_64' | 'aarch64';
  readonly audit: number;
  readonly x32: boolean;
  readonly table: Readonly<Record<string, number>>;
}
const X86_64: Arch = { name: 'x86_64', audit: 0xc000003e, x32: true, table: x86_64Table };
const AARCH64: Arch = { name: 'aarch64', audit: 0xc00000b7, x32: false, table: aarch64Table };
const ARCHES: Readonly<Record<string, Arch>> = { x64: X86_64, x86_64: X86_64, arm64: AARCH64, aarch64: AARCH64 };

function archFor(arch: string): Arch {
  const a = ARCHES[arch];
  if (!a) {
    throw notSupported('seccomp', `the default seccomp filter is not available on ${arch} yet; pass seccomp: 'none' to run without one`);
  }
  return a;
}

const KNOWN_NAMES: ReadonlySet<string> = new Set([...Object.keys(x86_64Table), ...Object.keys(aarch64Table)]);

// ---------------------------------------------------------------------------------------------
// Validation.


function nearest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD || (d === bestD && best !== undefined && c < best)) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const OPTION_KEYS = ['allow', 'deny', 'defaultErrno'];

function checkNames(name: string, v: unknown, ordered: string[] = []): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalidType(name, 'an array of system call names', v);
  const out: string[] = [];
  arrayElements(name, v, 'an array of system call names').forEach((s: unknown, i) => {
    if (typeof s !== 'string') throw invalidType(`${name}[${i}]`, 'of type string', s);
    const n = s.trim();
    if (!KNOWN_NAMES.has(n)) {
      const near = nearest(n.toLowerCase().replace(/^(__nr_|sys_)/, ''), KNOWN_NAMES);
      throw invalidValue(`${name}[${i}]`, s, `is not a known system call${near ? `; did you mean '${near}'?` : ''}`);
    }
    ordered.push(n);
    if (!out.includes(n)) out.push(n);
  });
  return out.sort();
}

const DEFAULT_POLICY: ResolvedSeccomp = Object.freeze({ profile: 'default', allow: Object.freeze([]), deny: Object.freeze([]), errno: EPERM });

/**
 * Validates the `seccomp` option. `undefined` and `'default'` give Docker's default profile,
 * `'none'` gives null (no filter); `{ allow, deny, defaultErrno }` adjusts the default profile:
 * `allow` adds system calls (and lifts their argument checks), `deny` denies them with
 * `defaultErrno` (default EPERM), which is also what the profile's own denials answer.
 */
export function resolveSeccomp(v: unknown, name = 'seccomp'): ResolvedSeccomp | null {
  if (v === undefined || v === 'default') return DEFAULT_POLICY;
  if (v === 'none') return null;
  if (typeof v === 'string') throw invalidValue(name, v, "must be 'default', 'none' or an object { allow, deny, defaultErrno }");
  if (!isPlainObject(v)) throw invalidType(name, "'default', 'none' or an object { allow, deny, defaultErrno }", v);
  for (const key of Object.keys(v)) {
    if (OPTION_KEYS.includes(key)) continue;
    const near = nearest(key, OPTION_KEYS);
    throw invalidValue(`${name}.${key}`, v[key], `is not a known option${near ? `; did you mean "${name}.${near}"?` : ''}`);
  }
  const allow = checkNames(`${name}.allow`, v.allow);
  // Checked names only, in the user's order (each element was read once, by checkNames).
  const denied: string[] = [];
  const deny = checkNames(`${name}.deny`, v.deny, denied);
  denied.forEach((n, i) => {
    if (allow.includes(n)) throw invalidValue(`${name}.deny[${i}]`, n, `is also in "${name}.allow"`);
    if (EXEC_PATH.includes(n)) {
      throw invalidValue(`${name}.deny[${i}]`, n, 'cannot be denied: nsbox needs it to start the command after installing the filter');
    }
  });
  let errno = EPERM;
  if (v.defaultErrno !== undefined) {
    const e = v.defaultErrno;
    if (typeof e !== 'number') throw invalidType(`${name}.defaultErrno`, 'of type number', e);
    if (!Number.isInteger(e) || e < 1 || e > MAX_ERRNO) throw outOfRange(`${name}.defaultErrno`, `an integer >= 1 and <= ${MAX_ERRNO}`, e);
    errno = e;
  }
  if (!allow.length && !deny.length && errno === EPERM) return DEFAULT_POLICY;
  return Object.freeze({ profile: 'default', allow: Object.freeze(allow), deny: Object.freeze(deny), errno });
}

// ---------------------------------------------------------------------------------------------
// Classification: what each system call number gets.

type Rule = 'clone' | 'unshare' | 'ioctl' | 'socket' | 'personality';
type Action = { kind: 'allow' } | { kind: 'errno'; errno: number } | { kind: 'rule'; rule: Rule };

const ALLOW_ACTION: Action = { kind: 'allow' };
const ALLOW_SET: ReadonlySet<string> = new Set(ALLOW);
const DENIED_BY_NAME: ReadonlyMap<string, DeniedFamily> = new Map(DENIED.flatMap((f) => f.syscalls.map((s) => [s, f] as const)));

function capsHold(caps: bigint, cap: number): boolean {
  return ((caps >> BigInt(cap)) & 1n) === 1n;
}

/** The action per known system call name on `arch`, for `policy` and the capabilities kept. */
function classify(policy: ResolvedSeccomp, arch: Arch, caps: bigint): Map<string, Action> {
  const gated = new Set<string>();
  for (const [cap, names] of CAP_GATES) if (capsHold(caps, cap)) for (const n of names) gated.add(n);
  const deny: Action = { kind: 'errno', errno: policy.errno };
  const out = new Map<string, Action>();
  for (const name of Object.keys(arch.table)) {
    let a: Action;
    if (gated.has(name)) a = ALLOW_ACTION;
    else if (ALLOW_SET.has(name)) a = ALLOW_ACTION;
    else if (name === 'clone') a = { kind: 'rule', rule: 'clone' };
    else if (name === 'unshare') a = { kind: 'rule', rule: 'unshare' };
    else if (name === 'ioctl') a = { kind: 'rule', rule: 'ioctl' };
    else if (name === 'socket') a = { kind: 'rule', rule: 'socket' };
    else if (name === 'personality') a = { kind: 'rule', rule: 'personality' };
    else if (name === 'clone3') a = { kind: 'errno', errno: ENOSYS };
    else a = deny; // DENIED families, and anything a newer table adds before it is classified
    out.set(name, a);
  }
  for (const name of policy.allow) if (out.has(name)) out.set(name, ALLOW_ACTION);
  for (const name of policy.deny) if (out.has(name)) out.set(name, deny);
  return out;
}

// ---------------------------------------------------------------------------------------------
// A tiny classic-BPF assembler with labels.

const BPF = {
  LD_W_ABS: 0x20,
  JA: 0x05,
  JEQ_K: 0x15,
  JGT_K: 0x25,
  JGE_K: 0x35,
  JSET_K: 0x45,
  RET_K: 0x06,
} as const;

export const SECCOMP_RET = {
  KILL_PROCESS: 0x80000000,
  KILL_THREAD: 0x00000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  USER_NOTIF: 0x7fc00000,
  TRACE: 0x7ff00000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
} as const;

/** Offsets into struct seccomp_data. */
const DATA = { nr: 0, arch: 4, argLo: (i: number) => 16 + 8 * i, argHi: (i: number) => 20 + 8 * i } as const;

/** A jump target: a label name, or a relative count of instructions to skip. */
type Target = string | number;
interface Insn {
  code: number;
  jt: Target;
  jf: Target;
  k: number | string;
}

let labelSeq = 0;

class Asm {
  readonly insns: Insn[] = [];
  readonly labels = new Map<string, number>();

  /** A fresh label name, unique across all Asm instances. */
  static fresh(hint: string): string {
    return `${hint}.${++labelSeq}`;
  }
  get length(): number {
    return this.insns.length;
  }
  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`seccomp asm: label ${name} defined twice`);
    this.labels.set(name, this.insns.length);
    return this;
  }
  private op(code: number, k: number | string, jt: Target = 0, jf: Target = 0): this {
    this.insns.push({ code, jt, jf, k });
    return this;
  }
  ld(offset: number): this {
    return this.op(BPF.LD_W_ABS, offset);
  }
  ret(k: number): this {
    return this.op(BPF.RET_K, k >>> 0);
  }
  jeq(k: number, jt: Target, jf: Target = 0): this {
    return this.op(BPF.JEQ_K, k >>> 0, jt, jf);
  }
  jge(k: number, jt: Target, jf: Target = 0): this {
    return this.op(BPF.JGE_K, k >>> 0, jt, jf);
  }
  jset(k: number, jt: Target, jf: Target = 0): this {
    return this.op(BPF.JSET_K, k >>> 0, jt, jf);
  }
  /** Unconditional jump: a 32-bit offset, so any distance. */
  ja(target: string): this {
    return this.op(BPF.JA, target);
  }
  append(other: Asm): this {
    const base = this.insns.length;
    for (const [name, at] of other.labels) {
      if (this.labels.has(name)) throw new Error(`seccomp asm: label ${name} defined twice`);
      this.labels.set(name, base + at);
    }
    this.insns.push(...other.insns);
    return this;
  }
  assemble(): Buffer {
    const buf = Buffer.alloc(this.insns.length * 8);
    const rel = (i: number, t: Target, max: number): number => {
      let d: number;
      if (typeof t === 'number') d = t;
      else {
        const at = this.labels.get(t);
        if (at === undefined) throw new Error(`seccomp asm: undefined label ${t}`);
        d = at - (i + 1);
      }
      if (d < 0 || d > max) throw new Error(`seccomp asm: jump from ${i} to ${String(t)} out of range (${d})`);
      return d;
    };
    this.insns.forEach((ins, i) => {
      let { jt, jf, k } = ins;
      if (ins.code === BPF.JA) {
        k = rel(i, k, 0xffffffff);
        jt = jf = 0;
      } else if ((ins.code & 0x07) === 0x05) {
        jt = rel(i, jt, 255);
        jf = rel(i, jf, 255);
      }
      buf.writeUInt16LE(ins.code, i * 8);
      buf.writeUInt8(jt as number, i * 8 + 2);
      buf.writeUInt8(jf as number, i * 8 + 3);
      buf.writeUInt32LE(k as number, i * 8 + 4);
    });
    return buf;
  }
}

// ---------------------------------------------------------------------------------------------
// Compilation.

const retErrno = (e: number): number => (SECCOMP_RET.ERRNO | (e & 0xffff)) >>> 0;

/** The argument checks, each a self-contained block that ends in a return. */
function emitRule(rule: Rule, errno: number): Asm {
  const a = new Asm();
  const deny = Asm.fresh(`${rule}.deny`);
  const allow = Asm.fresh(`${rule}.allow`);
  switch (rule) {
    case 'clone':
    case 'unshare':
      // Flags are an unsigned long, but the kernel only uses the low 32 bits (clone: lower_32_bits;
      // unshare rejects any other bit with EINVAL), so the low half is the whole story.
      a.ld(DATA.argLo(0))
        .jset(rule === 'clone' ? CLONE_NS_MASK : CLONE_NS_MASK | CLONE_NEWTIME, deny, allow)
        .label(deny)
        .ret(retErrno(errno))
        .label(allow)
        .ret(SECCOMP_RET.ALLOW);
      break;
    case 'ioctl':
      // `cmd` is an unsigned int: compare the low half only, so (x << 32) | TIOCSTI is caught too
      // (CVE-2019-10063).
      a.ld(DATA.argLo(1)).jeq(TIOCSTI, deny).jeq(TIOCLINUX, deny).ret(SECCOMP_RET.ALLOW).label(deny).ret(retErrno(errno));
      break;
    case 'socket':
      a.ld(DATA.argLo(0)).jeq(AF_ALG, deny).jeq(AF_VSOCK, deny).ret(SECCOMP_RET.ALLOW).label(deny).ret(retErrno(EAFNOSUPPORT));
      break;
    case 'personality':
      a.ld(DATA.argLo(0));
      for (const p of PERSONALITIES) a.jeq(p, allow);
      a.ret(retErrno(errno)).label(allow).ret(SECCOMP_RET.ALLOW);
      break;
  }
  return a;
}

/** A run of system call numbers [lo, hi] that all get one action. */
interface Segment {
  lo: number;
  hi: number;
  action: Action;
}

function sameAction(a: Action, b: Action): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'errno') return a.errno === (b as { errno: number }).errno;
  return a.kind === 'allow'; // rules are never merged: each is one system call
}

function segments(actions: Map<string, Action>, arch: Arch): Segment[] {
  const byNr = new Map<number, Action>();
  for (const [name, a] of actions) byNr.set(arch.table[name]!, a);
  const max = Math.max(...byNr.keys());
  const enosys: Action = { kind: 'errno', errno: ENOSYS };
  const out: Segment[] = [];
  const push = (nr: number, hi: number, action: Action): void => {
    const last = out[out.length - 1];
    if (last && last.hi === nr - 1 && sameAction(last.action, action)) last.hi = hi;
    else out.push({ lo: nr, hi, action });
  };
  for (let nr = 0; nr <= max; nr++) push(nr, nr, byNr.get(nr) ?? enosys);
  push(max + 1, 0xffffffff, enosys); // newer than the table: ENOSYS, libc falls back
  return out;
}

function emitLeaf(seg: Segment, errno: number): Asm {
  const a = seg.action;
  if (a.kind === 'allow') return new Asm().ret(SECCOMP_RET.ALLOW);
  if (a.kind === 'errno') return new Asm().ret(retErrno(a.errno));
  return emitRule(a.rule, errno);
}

/** Binary search over sorted, contiguous segments; the accumulator holds the system call number. */
function emitTree(segs: Segment[], errno: number): Asm {
  if (segs.length === 1) return emitLeaf(segs[0]!, errno);
  const mid = segs.length >> 1;
  const left = emitTree(segs.slice(0, mid), errno);
  const right = emitTree(segs.slice(mid), errno);
  const a = new Asm();
  const r = Asm.fresh('ge');
  if (left.length <= 255) {
    a.jge(segs[mid]!.lo, r, 0);
  } else {
    // Conditional jumps reach 255 instructions at most; go through an unconditional one.
    a.jge(segs[mid]!.lo, 0, 1).ja(r);
  }
  return a.append(left).label(r).append(right);
}

const cache = new Map<string, Buffer>();

/** What compileSeccomp's result depends on (its cache key, and the prebuilt table's). */
export function seccompKey(policy: ResolvedSeccomp, arch: string, caps: bigint): string {
  return `${archFor(arch).name}|${caps.toString(16)}|${policy.errno}|${policy.allow.join(',')}|${policy.deny.join(',')}`;
}

/**
 * Compiles `policy` into a seccomp BPF program (`struct sock_filter[]`, 8 bytes per instruction,
 * little-endian) for `arch` (`process.arch` names or 'x86_64'/'aarch64'). `caps` is the capability
 * bounding set the container keeps (bit n = capability n, as resolveCaps returns it): as in Docker,
 * keeping e.g. CAP_SYS_PTRACE re-allows kcmp and pidfd_getfd. The default (0n) is right for the app
 * profile's nine capabilities, none of which gate a system call.
 */
export function compileSeccomp(policy: ResolvedSeccomp, arch: string = process.arch, caps: bigint = 0n, o: { prebuilt?: boolean } = {}): Buffer {
  const A = archFor(arch);
  const key = seccompKey(policy, arch, caps);
  const hit = cache.get(key);
  if (hit) return Buffer.from(hit);
  // The default filters, compiled at build time (scripts/gen-seccomp.js; lint checks they are current).
  const pre = o.prebuilt === false ? undefined : PREBUILT[key];
  if (pre !== undefined) {
    const buf = Buffer.from(pre, 'base64');
    cache.set(key, buf);
    return Buffer.from(buf);
  }

  const prog = new Asm();
  // 1. Architecture: anything else (i386 via int 0x80, arm32 compat) is killed outright.
  prog.ld(DATA.arch).jeq(A.audit, 1, 0).ret(SECCOMP_RET.KILL_PROCESS);
  prog.ld(DATA.nr);
  // 2. x32: the same kernel entry points under other numbers; answer as a kernel without x32 would.
  if (A.x32) prog.jset(0x40000000, 0, 1).ret(retErrno(ENOSYS));
  // 3. The allow-list as a binary search over number ranges.
  prog.append(emitTree(segments(classify(policy, A, caps), A), policy.errno));

  if (prog.length > MAX_INSNS) throw new Error(`seccomp: the filter has ${prog.length} instructions, more than ${MAX_INSNS}`);
  const buf = prog.assemble();
  if (cache.size > 64) cache.clear();
  cache.set(key, buf);
  return Buffer.from(buf);
}

// ---------------------------------------------------------------------------------------------
// An interpreter for the programs above (tests, `describe`, debugging): what the kernel would answer.

export interface SeccompData {
  nr: number;
  /** AUDIT_ARCH_*; default: the program's own architecture is unknown here, so this is required. */
  arch: number;
  /** Up to six 64-bit arguments. */
  args?: ReadonlyArray<number | bigint>;
  instructionPointer?: bigint;
}

/** Runs a classic BPF seccomp program on one `seccomp_data` and returns its SECCOMP_RET_* value. */
export function evaluateSeccomp(program: Buffer, d: SeccompData): number {
  const data = Buffer.alloc(64);
  data.writeInt32LE(d.nr | 0, 0);
  data.writeUInt32LE(d.arch >>> 0, 4);
  data.writeBigUInt64LE(d.instructionPointer ?? 0n, 8);
  (d.args ?? []).slice(0, 6).forEach((v, i) => data.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), 16 + 8 * i));
  const n = program.length / 8;
  let A = 0;
  for (let pc = 0, steps = 0; pc < n && steps < 100000; pc++, steps++) {
    const code = program.readUInt16LE(pc * 8);
    const jt = program.readUInt8(pc * 8 + 2);
    const jf = program.readUInt8(pc * 8 + 3);
    const k = program.readUInt32LE(pc * 8 + 4);
    switch (code) {
      case BPF.LD_W_ABS:
        if (k > 60 || k % 4) throw new Error(`seccomp: bad load offset ${k} at ${pc}`);
        A = data.readUInt32LE(k);
        break;
      case BPF.JA:
        pc += k;
        break;
      case BPF.JEQ_K:
        pc += A === k ? jt : jf;
        break;
      case BPF.JGT_K:
        pc += A > k ? jt : jf;
        break;
      case BPF.JGE_K:
        pc += A >= k ? jt : jf;
        break;
      case BPF.JSET_K:
        pc += (A & k) >>> 0 ? jt : jf;
        break;
      case BPF.RET_K:
        return k;
      default:
        throw new Error(`seccomp: unsupported instruction 0x${code.toString(16)} at ${pc}`);
    }
  }
  throw new Error('seccomp: program ran off its end');
}

/** One line per instruction, for debugging: `12: jge #0x27 jt 13 jf 20`. */
export function disassembleSeccomp(program: Buffer): string {
  const names: Record<number, string> = { 0x20: 'ld', 0x05: 'ja', 0x15: 'jeq', 0x25: 'jgt', 0x35: 'jge', 0x45: 'jset', 0x06: 'ret' };
  const lines: string[] = [];
  for (let pc = 0; pc < program.length / 8; pc++) {
    const code = program.readUInt16LE(pc * 8);
    const jt = program.readUInt8(pc * 8 + 2);
    const jf = program.readUInt8(pc * 8 + 3);
    const k = program.readUInt32LE(pc * 8 + 4);
    const op = names[code] ?? `op 0x${code.toString(16)}`;
    let text: string;
    if (code === BPF.LD_W_ABS) text = `ld [${k}]`;
    else if (code === BPF.RET_K) text = `ret ${describeAction(k)}`;
    else if (code === BPF.JA) text = `ja ${pc + 1 + k}`;
    else text = `${op} #0x${k.toString(16)} jt ${pc + 1 + jt} jf ${pc + 1 + jf}`;
    lines.push(`${String(pc).padStart(4)}: ${text}`);
  }
  return lines.join('\n');
}

/** 'ALLOW', 'KILL_PROCESS', 'ERRNO(EPERM)', ... for a SECCOMP_RET_* value. */
export function describeAction(ret: number): string {
  const action = (ret & 0xffff0000) >>> 0;
  if (action === SECCOMP_RET.ERRNO) {
    const e = ret & 0xffff;
    const name = Object.entries(E).find(([, v]) => v === e)?.[0];
    return `ERRNO(${name ?? e})`;
  }
  for (const [k, v] of Object.entries(SECCOMP_RET)) if ((ret >>> 0) === v || action === v) return k;
  return `0x${(ret >>> 0).toString(16)}`;
}

// ---------------------------------------------------------------------------------------------
// Description for docs and tools.

export interface SeccompDescription {
  arch: string;
  auditArch: number;
  instructions: number;
  /** Numbers the table knows; anything above answers ENOSYS. */
  highestKnown: number;
  errno: number;
  allowed: string[];
  conditional: Array<{ name: string; rule: string }>;
  denied: Array<{ name: string; family: string; capability?: string; reason: string }>;
  enosys: Array<{ name: string; reason: string }>;
  otherArchitectures: string;
  x32: string | null;
}

/** What the filter for `policy` does on `arch`: the data docs/security.md is written from. */
export function describeSeccomp(
  policy: ResolvedSeccomp = DEFAULT_POLICY,
  arch: string = process.arch,
  caps: bigint = 0n,
): SeccompDescription {
  const A = archFor(arch);
  const actions = classify(policy, A, caps);
  const names = [...actions.keys()].sort();
  const out: SeccompDescription = {
    arch: A.name,
    auditArch: A.audit,
    instructions: compileSeccomp(policy, arch, caps).length / 8,
    highestKnown: Math.max(...Object.values(A.table)),
    errno: policy.errno,
    allowed: [],
    conditional: [],
    denied: [],
    enosys: [],
    otherArchitectures: 'KILL_PROCESS (e.g. i386 system calls through int $0x80)',
    x32: A.x32 ? 'ERRNO(ENOSYS), as on a kernel built without x32' : null,
  };
  for (const name of names) {
    const a = actions.get(name)!;
    if (a.kind === 'allow') out.allowed.push(name);
    else if (a.kind === 'rule') out.conditional.push({ name, rule: CONDITIONAL[name]! });
    else if (a.errno === ENOSYS && name === 'clone3') out.enosys.push({ name, reason: CONDITIONAL.clone3! });
    else {
      const f = DENIED_BY_NAME.get(name);
      const user = policy.deny.includes(name);
      out.denied.push({
        name,
        family: user ? 'denied by the caller' : f?.family ?? 'unclassified',
        capability: user ? undefined : f?.capability,
        reason: user ? 'listed in seccomp.deny' : f?.reason ?? 'not in the default allow-list',
      });
    }
  }
  return out;
}

/** Names of every system call nsbox knows on any supported architecture (for validation, tests). */
export function knownSyscalls(arch?: string): string[] {
  return arch ? Object.keys(archFor(arch).table) : [...KNOWN_NAMES];
}

/** The number of `name` on `arch`, or undefined. */
export function syscallNumber(name: string, arch: string = process.arch): number | undefined {
  return archFor(arch).table[name];
}

/** For the coverage test: every name the policy classifies. */
export const POLICY_NAMES = {
  allow: ALLOW,
  conditional: Object.keys(CONDITIONAL),
  denied: DENIED.flatMap((f) => f.syscalls),
};
