/* steps.h: the steps of a container start and, per step, which index of a failure record names
 * which call. The one table of them: the child and the spawner write records with these names,
 * the init (native/init/init.c, plain C) includes this header for its numbers, and the addon
 * exports both lists (stepTable), from which scripts/gen-steps.js writes lib/steps.ts; lib/native.ts
 * refuses an addon whose table differs from that file.
 *
 * A failure record is {step, errno, index, magic} (plan.h, ErrorRecord). Its index says which call
 * of the step failed, or which element (the op, the rlimit, the capability, the exec candidate, the
 * signal) the step was at. NSBOX_STEPS gives each step its name in NsboxError.step and the system
 * call and path reported when no row of NSBOX_STEP_CALLS covers the index. A row covers the
 * indexes [first, first + count).
 *
 * Paths: an absolute path is reported as it is; "@rootfs", "@cwd", "@hostname", "@cgroup",
 * "@cgroup.parent", "@enterRoot" (the machine PID 1's /proc/<pid>/root) and "@candidate"
 * (candidates[index], else the command) are filled in by
 * lib/plan.ts (errorFromRecord) from the start's options. 0 (no path) and 0 (no system call: a
 * check, not a call) are null in lib/steps.ts.
 *
 * No includes, no C++: this header is read by a C compiler without libc as well. */
#ifndef NSBOX_STEPS_H
#define NSBOX_STEPS_H

/* X(ID, number, name, syscall, path). Numbers are the wire format of the records: never reuse one. */
#define NSBOX_STEPS(X)                                                                       \
  X(NONE, 0, "none", 0, 0)                                                                   \
  X(SIGNALS, 1, "signals", "rt_sigaction", 0)           /* index: the signal */              \
  X(SETSID, 2, "setsid", "setsid", 0)                                                        \
  X(STDIO, 3, "stdio", "dup2", 0)                       /* stdio and the init's status fd */ \
  X(CGROUP_JOIN, 4, "cgroup.join", "write", 0)          /* no CLONE_INTO_CGROUP: the child */ \
  X(PRIVATE, 5, "mount.private", "mount", 0)            /* make / private (MS_REC) */        \
  X(OP, 6, "mount", "mount", 0)                         /* index: op_record (lib's OpMeta) */\
  X(PIVOT, 7, "rootfs.pivot", "pivot_root", "@rootfs")                                       \
  X(HOSTNAME, 8, "hostname", "sethostname", "@hostname")                                     \
  X(NET_LO, 9, "network.loopback", "ioctl", 0)                                               \
  X(CWD, 10, "cwd", "openat2", "@cwd")                                                       \
  X(RLIMIT, 11, "rlimits", "setrlimit", 0)              /* index: in plan->rlimits */        \
  X(KEYRING, 12, "keyring", "keyctl", 0)                                                     \
  X(CAPS_BOUND, 13, "capabilities.bounding", "prctl", 0) /* index: the capability */         \
  X(SETGROUPS, 14, "credentials.groups", "setgroups", 0)                                     \
  X(SETGID, 15, "credentials.gid", "setresgid", 0)                                           \
  X(SETUID, 16, "credentials.uid", "setresuid", 0)                                           \
  X(CAPS, 17, "capabilities", "capset", 0)                                                   \
  X(NO_NEW_PRIVS, 18, "no_new_privs", "prctl", 0)                                            \
  X(PDEATHSIG, 19, "pdeathsig", "prctl", 0)                                                  \
  X(FDS, 20, "fds", "close_range", 0)                   /* close every fd not to be seen */  \
  X(EXEC, 21, "exec", "execve", "@candidate")           /* index: the candidate, or -1 */    \
  X(PIPE, 22, "spawn.pipe", "pipe2", 0)                 /* parent */                         \
  X(CLONE, 23, "spawn.clone", "clone3", 0)              /* parent */                         \
  X(SYNC, 24, "spawn.sync", "read", 0)                  /* parent: not a record; index: bytes */ \
  X(SETNS, 25, "exec.setns", "setns", 0)                /* entering a machine */             \
  X(PTY, 26, "exec.pty", "ioctl", 0)                    /* tty: a pty of the container's devpts */ \
  X(ENTER, 27, "exec.enter", "clone3", 0)               /* clone3(CLONE_PARENT) into it */   \
  X(ENTERED, 28, "exec.entered", 0, 0)                  /* not an error */                   \
  X(DUMPABLE, 29, "dumpable", "prctl", 0)                                                    \
  X(SECCOMP, 30, "seccomp", "prctl", 0)                                                      \
  X(READY, 31, "pool.ready", 0, 0)                      /* not an error: a pooled child waits */ \
  X(POOL, 32, "pool.command", "read", 0)                /* the pooled init's command */      \
  X(USERNS, 33, "userns", "write", 0)                                                        \
  X(NET, 34, "network", "sendmsg", 0)                   /* index: lib/network.ts, networkStep */ \
  X(NETNS, 35, "network.setns", "setns", 0)             /* the netns made ahead */           \
  X(CGROUP_MAKE, 36, "cgroup.create", "mkdir", "@cgroup") /* spawnAsync's worker */          \
  X(MNT_TEMPLATE, 37, "mount.namespace", "setns", 0)    /* mnt_template.cc, mount_in_template */    \
  X(IPCNS, 38, "ipc.setns", "setns", 0)                 /* the IPC namespace made ahead */   \
  X(DIED, 39, "exec.died", 0, 0)                        /* parent; index: the signal */      \
  X(DEVICES, 40, "devices", "bpf", 0)                   /* parent: the device allow-list */

/* X(STEP, ID, first, count, syscall, path): the call (or check) that index first..first+count-1
 * of STEP names. In the code: fail(err_fd, STEP_PTY, PTY_SEND, errno), or STDIO_DUP + fd. */
#define NSBOX_STEP_CALLS(X)                                                      \
  X(STDIO, STDIO_DUP, 0, 4, "dup2", 0)            /* + the fd (0..3) */          \
  X(STDIO, STDIO_LIFT_INIT, 4, 1, "fcntl", 0)     /* the init's memfd out of 0..3 */ \
  X(STDIO, STDIO_LIFT_CMD, 5, 1, "fcntl", 0)      /* the pool's command pipe */  \
  X(STDIO, STDIO_LIFT_NET, 6, 1, "fcntl", 0)      /* the netlink socket */       \
  X(STDIO, STDIO_LIFT_PTY, 7, 1, "fcntl", 0)      /* an app's pty socket (tty) */ \
  X(STDIO, STDIO_LIFT, 8, 4, "fcntl", 0)          /* + the fd: its source out of 0..3 */ \
  X(STDIO, STDIO_KEEP, 12, 4, "fcntl", 0)         /* + the fd: already there, FD_CLOEXEC off */ \
  X(STDIO, STDIO_DEVNULL, 16, 3, "openat2", "/dev/null") /* + the fd: the container's */ \
  X(CGROUP_JOIN, CGROUP_JOIN_WRITE, -1, 1, "write", 0)                           \
  X(CGROUP_JOIN, CGROUP_JOIN_UNSHARE, -2, 1, "unshare", 0)                       \
  X(CGROUP_JOIN, CGROUP_JOIN_OPEN, -3, 1, "openat", 0)                           \
  X(PIVOT, PIVOT_CHDIR, 0, 1, "chdir", "@rootfs")                                \
  X(PIVOT, PIVOT_PIVOT, 1, 1, "pivot_root", "@rootfs")                           \
  X(PIVOT, PIVOT_DETACH, 2, 1, "umount2", "@rootfs")                             \
  X(PIVOT, PIVOT_CHDIR_ROOT, 3, 1, "chdir", "@rootfs")                           \
  X(NET_LO, NET_LO_IOCTL, -1, 1, "ioctl", 0)      /* SIOCGIFFLAGS, SIOCSIFFLAGS */ \
  X(NET_LO, NET_LO_SOCKET, -2, 1, "socket", 0)    /* the AF_INET socket for them */ \
  X(CWD, CWD_OPEN, 0, 1, "openat2", "@cwd")                                      \
  X(CWD, CWD_ENTER, 1, 1, "fchdir", "@cwd")                                      \
  X(CAPS, CAPS_SET, 0, 1, "capset", 0)                                           \
  X(CAPS, CAPS_AMBIENT, 1, 1, "prctl", 0)                                        \
  X(EXEC, EXEC_MEMFD, -2, 1, "execveat", "nsbox-init") /* the init or trampoline */ \
  X(EXEC, EXEC_KEEP_ERRFD, -3, 1, "fcntl", 0)     /* the error pipe kept for the trampoline */ \
  X(CLONE, CLONE_LEGACY, -2, 1, "clone", 0)       /* clone3 missing: legacy clone */ \
  X(SETNS, SETNS_OPEN_ROOT, 0, 1, "open", "@enterRoot") /* /proc/<pid>/root of PID 1 */ \
  X(SETNS, SETNS_JOIN, -1, 1, "setns", 0)                                        \
  X(SETNS, SETNS_FCHDIR, 1, 1, "fchdir", 0)       /* into PID 1's root */        \
  X(SETNS, SETNS_CHROOT, 2, 1, "chroot", 0)                                      \
  X(PTY, PTY_OPEN, 0, 1, "openat", "/dev/pts/ptmx") /* in the devpts itself */  \
  X(PTY, PTY_UNLOCK, 1, 1, "ioctl", 0)            /* TIOCSPTLCK */               \
  X(PTY, PTY_PEER, 2, 1, "ioctl", 0)              /* TIOCGPTPEER */              \
  X(PTY, PTY_SEND, 3, 1, "sendmsg", 0)            /* the master to Node */       \
  X(PTY, PTY_CTTY, 4, 1, "ioctl", 0)              /* TIOCSCTTY */                \
  X(PTY, PTY_WINSIZE, 5, 1, "ioctl", 0)           /* TIOCSWINSZ */               \
  X(PTY, PTY_PTS_DIR, 6, 1, "openat2", "/dev/pts") /* beneath the root */        \
  X(PTY, PTY_DEVPTS, 7, 1, "fstatfs", "/dev/pts") /* ENODEV: not a devpts */     \
  X(ENTER, ENTER_CLONE, -1, 1, "clone3", 0)                                      \
  X(ENTER, ENTER_CGROUP_COPY, -2, 1, "open_tree", 0) /* the cgroup's detached copy */ \
  X(ENTER, ENTER_CGROUP_DUP, -3, 1, "fcntl", 0)   /* or its directory fd */      \
  X(ENTER, ENTER_PIDFD, -4, 1, "pidfd_open", 0)   /* parent: of the new process */ \
  X(POOL, POOL_READ, 0, 1, "read", 0)                                            \
  X(POOL, POOL_TOO_BIG, 1, 1, 0, 0)               /* E2BIG: the command fills the buffer */ \
  X(POOL, POOL_TOO_MANY, 2, 1, 0, 0)              /* E2BIG: too many arguments */ \
  X(POOL, POOL_MALFORMED, 3, 1, 0, 0)             /* EINVAL: not an argv */      \
  X(POOL, POOL_KEEP_FDS, 4, 1, "fcntl", 0)        /* the pipes kept for the init */ \
  X(USERNS, USERNS_WAIT, 0, 1, "read", 0)         /* for the parent's id maps */ \
  X(USERNS, USERNS_SETGROUPS, 1, 1, "write", "/proc/self/setgroups")             \
  X(USERNS, USERNS_UID_MAP, 2, 1, "write", "/proc/self/uid_map")                 \
  X(USERNS, USERNS_GID_MAP, 3, 1, "write", "/proc/self/gid_map")                 \
  X(USERNS, USERNS_SETRESGID, 4, 1, "setresgid", 0)                              \
  X(USERNS, USERNS_SETRESUID, 5, 1, "setresuid", 0)                              \
  X(USERNS, USERNS_OPEN_SETGROUPS, 6, 1, "open", "/proc/self/setgroups")         \
  X(USERNS, USERNS_OPEN_UID_MAP, 7, 1, "open", "/proc/self/uid_map")             \
  X(USERNS, USERNS_OPEN_GID_MAP, 8, 1, "open", "/proc/self/gid_map")             \
  X(CGROUP_MAKE, CGROUP_MAKE_DIR, 0, 1, "mkdir", "@cgroup")                      \
  X(CGROUP_MAKE, CGROUP_MAKE_BASE, 1, 1, "mkdir", "@cgroup.parent")              \
  X(CGROUP_MAKE, CGROUP_MAKE_OPEN, 2, 1, "open", "@cgroup")                      \
  X(MNT_TEMPLATE, TPL_OPEN_PROC, 0, 1, "open", "/proc/self/fd")                  \
  X(MNT_TEMPLATE, TPL_JOIN, 1, 1, "setns", 0)                                    \
  X(MNT_TEMPLATE, TPL_UNSHARE, 2, 1, "unshare", 0)                               \
  X(MNT_TEMPLATE, TPL_FCHDIR_PROC, 3, 1, "fchdir", "/proc/self/fd")              \
  X(MNT_TEMPLATE, TPL_BAD_PLAN, 4, 1, 0, "@rootfs") /* EINVAL: no root op, or a host path */ \
  X(MNT_TEMPLATE, TPL_FCHDIR_ROOT, 5, 1, "fchdir", "@rootfs")                    \
  X(MNT_TEMPLATE, TPL_CHROOT, 6, 1, "chroot", "@rootfs")                         \
  X(MNT_TEMPLATE, TPL_CHDIR, 7, 1, "chdir", "@rootfs")                           \
  X(MNT_TEMPLATE, TPL_TOO_MANY, 8, 1, 0, 0)        /* E2BIG: over kMaxTemplateTrees binds */

/* The call of a mount op (STEP_OP) that failed. A STEP_OP record's index is the op's index in its
 * low 16 bits and this number in the bits above (op_record below): 0 is the op's own call, which
 * lib's OpMeta names with the op's path; the others are the calls around it (resolving its target
 * or its source, the detached-mount calls of the template). A failure to resolve the target names
 * the target (OpMeta.target), every other one the op's path.
 * X(ID, number, syscall). Numbers are the wire format: never reuse one. */
#define NSBOX_OP_CALL_SHIFT 16
#define NSBOX_OP_CALLS(X)                                                        \
  X(OWN, 0, 0)                          /* the op's own call (OpMeta.syscall) */ \
  X(RESOLVE, 1, "openat2")              /* the op's target, in the root */      \
  X(WALK, 2, "openat")                  /* likewise, per component */            \
  X(OPEN_TREE, 3, "open_tree")          /* the template's copy of a host bind */ \
  X(MOUNT_SETATTR, 4, "mount_setattr")  /* its flags */                          \
  X(MOVE_MOUNT, 5, "move_mount")        /* attaching it in the root */           \
  X(FSOPEN, 6, "fsopen")                /* the template's root filesystem */     \
  X(FSCONFIG, 7, "fsconfig")                                                     \
  X(FSMOUNT, 8, "fsmount")                                                       \
  X(OPEN, 9, "open")                    /* the new root; a bind's host directory */ \
  X(FCHMODAT, 10, "fchmodat")           /* a device node's or scratch dir's mode */ \
  X(RESOLVE_SRC, 11, "openat2")         /* the op's source, in the root or beneath a host dir */ \
  X(WALK_SRC, 12, "openat")             /* likewise, per component */

#ifdef __cplusplus
namespace nsbox {
enum Step : int {
#else
enum nsbox_step {
#endif
#define NSBOX_STEP_ENUM(id, num, name, syscall, path) STEP_##id = (num),
  NSBOX_STEPS(NSBOX_STEP_ENUM)
#undef NSBOX_STEP_ENUM
  STEP_COUNT = 41
};

/* The index names: STEP_PTY's PTY_SEND, ... */
#ifdef __cplusplus
enum StepIndex : int {
#else
enum nsbox_step_index {
#endif
#define NSBOX_STEP_INDEX_ENUM(step, id, first, count, syscall, path) id = (first),
  NSBOX_STEP_CALLS(NSBOX_STEP_INDEX_ENUM)
#undef NSBOX_STEP_INDEX_ENUM
};

#ifdef __cplusplus
enum OpCall : int {
#define NSBOX_OP_CALL_ENUM(id, num, syscall) OPCALL_##id = (num),
  NSBOX_OP_CALLS(NSBOX_OP_CALL_ENUM)
#undef NSBOX_OP_CALL_ENUM
};
/* A STEP_OP record's index: the op and the call of it that failed. */
/* A source's resolution: the call open_in_root reported, as its _SRC kind. */
constexpr int src_call(int call) { return call == OPCALL_RESOLVE ? OPCALL_RESOLVE_SRC : call == OPCALL_WALK ? OPCALL_WALK_SRC : call; }
constexpr int op_record(unsigned long op, int call) { return static_cast<int>(op | (static_cast<unsigned long>(call) << NSBOX_OP_CALL_SHIFT)); }

/* Steps are numbered 0..STEP_COUNT-1 without a gap, in the order of the list. */
namespace steps_check {
constexpr int kNumbers[] = {
#define NSBOX_STEP_NUM(id, num, name, syscall, path) num,
    NSBOX_STEPS(NSBOX_STEP_NUM)
#undef NSBOX_STEP_NUM
};
constexpr bool consecutive() {
  for (int i = 0; i < static_cast<int>(sizeof(kNumbers) / sizeof(kNumbers[0])); i++)
    if (kNumbers[i] != i) return false;
  return sizeof(kNumbers) / sizeof(kNumbers[0]) == STEP_COUNT;
}
static_assert(consecutive(), "steps.h: NSBOX_STEPS must number 0..STEP_COUNT-1 in order");
}  // namespace steps_check
}  // namespace nsbox
#endif

#endif /* NSBOX_STEPS_H */
