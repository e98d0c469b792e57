// child.cc: everything the new container process does between clone3 and execve.
//
// This code runs in a copy of a multi-threaded process (Node) in which only the cloning thread
// survives. Any lock another thread held at clone time stays held forever, so: no malloc/new, no
// exceptions (this target builds with -fno-exceptions), no stdio, no N-API, no libuv. Only raw
// system calls over the Plan the parent prepared. A failing step writes one ErrorRecord to the
// close-on-exec error pipe and exits; end-of-file on that pipe tells the parent execve succeeded.
// The same rules hold in the rest of the child path: fsops.cc (the plan's filesystem operations),
// mnt_template.cc (the mount namespace template), netlink.cc's child half, pty.cc (a tty's pty).
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>

#include "fsops.h"
#include "netlink.h"
#include "pty.h"
#include "syscalls.h"

namespace nsbox {
static_assert(kMsBind == MS_BIND && kTemplatePlainFlags == (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), "plan.h mount flags");

[[noreturn]] void fail(int err_fd, int32_t step, int32_t index, int err) {
  ErrorRecord rec;
  rec.step = step;
  rec.err = err;
  rec.index = index;
  rec.magic = kErrorMagic;
  // One write of 16 bytes to a pipe is atomic; if it fails there is nobody left to tell.
  NSBOX_RETRY(write(err_fd, &rec, sizeof(rec)));
  _exit(127);
}

namespace {

// Move fd out of the way of the fds we are about to dup onto (0..3). Returns the new fd.
int lift(int fd) {
  if (fd < 0 || fd > 3) return fd;
  return fcntl(fd, F_DUPFD_CLOEXEC, 4);
}

// Brings lo up; -1 with errno and *at (STEP_NET_LO's index: the socket, or the ioctls) on failure.
// plan: its fault points, or nullptr (the netns reserve's helper).
int lo_up(const Plan* plan, int32_t* at) {
  *at = NET_LO_SOCKET;
  int s = plan && fault_at(plan, STEP_NET_LO, NET_LO_SOCKET) ? -1 : socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  *at = NET_LO_IOCTL;
  if (plan && fault_at(plan, STEP_NET_LO, NET_LO_IOCTL)) {
    close(s);
    errno = plan->fault_errno;
    return -1;
  }
  struct ifreq ifr;
  for (size_t i = 0; i < sizeof(ifr); i++) reinterpret_cast<char*>(&ifr)[i] = 0;
  ifr.ifr_name[0] = 'l';
  ifr.ifr_name[1] = 'o';
  int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    rc = ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  int saved = errno;
  close(s);
  errno = saved;
  return rc;
}

// Closes every fd not in keep[0..n) (unsorted, duplicates allowed). close_range where it exists.
int close_all_but(int* keep, int n) {
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && keep[j] < keep[j - 1]; j--) {
      int t = keep[j];
      keep[j] = keep[j - 1];
      keep[j - 1] = t;
    }
  unsigned first = 0;
  for (int i = 0; i <= n; i++) {
    unsigned last = i < n ? static_cast<unsigned>(keep[i]) : ~0U;
    if (i < n && static_cast<unsigned>(keep[i]) < first) continue;  // a duplicate
    if (last > first) {
      if (sys::close_range(first, last - 1, 0) != 0) {
        if (errno != ENOSYS) return -1;
        struct rlimit rl;
        unsigned hi = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < 1048576 ? static_cast<unsigned>(rl.rlim_max) : 65536;
        for (unsigned fd = first; fd < last && fd < hi; fd++) close(static_cast<int>(fd));
      }
    }
    if (i < n) first = static_cast<unsigned>(keep[i]) + 1;
  }
  return 0;
}

bool is_exec_candidate(const char* path, int* err) {
  struct stat st;
  if (stat(path, &st) != 0) {
    *err = errno;
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    *err = EACCES;
    return false;
  }
  if (access(path, X_OK) != 0) {
    *err = errno;
    return false;
  }
  return true;
}

// Writes a whole string to a (proc) file in one write, as id maps must be written; a failure is
// STEP_USERNS at open_index (the open) or write_index (the write).
void write_userns_file(const Plan* plan, int err_fd, const char* path, const char* text, int32_t open_index, int32_t write_index) {
  fault(plan, err_fd, STEP_USERNS, open_index);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail(err_fd, STEP_USERNS, open_index, errno);
  size_t len = str_len(text);
  fault(plan, err_fd, STEP_USERNS, write_index);
  ssize_t n = NSBOX_RETRY(write(fd, text, len));
  if (n != static_cast<ssize_t>(len)) fail(err_fd, STEP_USERNS, write_index, n < 0 ? errno : EIO);
  close(fd);
}

// Writes v in decimal into buf (at least 12 bytes), NUL-terminated. No allocation.
void format_int(char* buf, int v) {
  char tmp[12];
  int n = 0;
  unsigned u = v < 0 ? static_cast<unsigned>(-(v + 1)) + 1u : static_cast<unsigned>(v);
  do {
    tmp[n++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u && n < 11);
  int o = 0;
  if (v < 0) buf[o++] = '-';
  while (n) buf[o++] = tmp[--n];
  buf[o] = 0;
}

// The warm pool's last stretch: exec the init binary in pool mode, which reports readiness and
// waits for the command with a small address space instead of this copy of Node.
[[noreturn]] void pooled_exec(const Plan* plan, int err_fd, int tramp_fd, int cmd_fd) {
  char e[12], c[12];
  format_int(e, err_fd);
  format_int(c, cmd_fd);
  char* av[6] = {plan->tramp_argv[0], const_cast<char*>("--pool"), e, c, const_cast<char*>(plan->path_dirs_joined), nullptr};
  fault(plan, err_fd, STEP_POOL, POOL_KEEP_FDS);
  if (fcntl(err_fd, F_SETFD, 0) != 0 || fcntl(cmd_fd, F_SETFD, 0) != 0) fail(err_fd, STEP_POOL, POOL_KEEP_FDS, errno);
  uint64_t empty = 0;
  fault(plan, err_fd, STEP_EXEC, EXEC_MEMFD);
  sys::rt_sigprocmask(SIG_SETMASK, &empty, nullptr);
  syscall(SYS_execveat, tramp_fd, "", av, plan->envp, AT_EMPTY_PATH);
  int err = errno;
  uint64_t full = ~0ULL;
  sys::rt_sigprocmask(SIG_SETMASK, &full, nullptr);
  fcntl(err_fd, F_SETFD, FD_CLOEXEC);
  fail(err_fd, STEP_EXEC, EXEC_MEMFD, err);
}

}  // namespace

struct TailState {
  int err_fd;
  int init_fd;
  int cmd_fd;
  int net_sock;
  int tty_slave;  // entering a machine: the pty's slave, opened already
  int pty_sock;   // an app container with a tty: the socket for its master, opened once its root is in place
  bool tramp;
};
[[noreturn]] void child_tail(const Plan* plan, TailState* st);


[[noreturn]] void netns_child(NsFdJob* job) {
  // We share the caller's memory and fd table (CLONE_VM | CLONE_FILES) but have a network
  // namespace of our own: open it into the shared table, bring lo up, and go.
  int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    job->err = errno;
    _exit(1);
  }
  int32_t at = 0;
  if (lo_up(nullptr, &at) != 0) {
    job->err = errno;
    close(fd);
    _exit(1);
  }
  job->fd = fd;
  _exit(0);
}

[[noreturn]] void ipcns_child(NsFdJob* job) {
  // Shares the caller's memory and fd table, in an IPC namespace of its own: open it into the
  // shared table and go. Nothing is made in it.
  int fd = open("/proc/thread-self/ns/ipc", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    job->err = errno;
    _exit(1);
  }
  job->fd = fd;
  _exit(0);
}

[[noreturn]] void child_main(const Plan* plan) {
  int err_fd = plan->err_fd;
  // The kill mode (test only, plan.h): a reader of the error pipe left here would keep it open
  // after Node's death, and a fault point would wait for ever.
  if (plan->fault_errno < 0 && plan->fault_err_rfd >= 0) close(plan->fault_err_rfd);
  // Named until the exec (see kPreExecComm; spawn() gave us the name at the clone already): a death
  // before it is then told from a command that exec'd and died. Per task: Node's thread keeps its own.
  prctl(PR_SET_NAME, kPreExecComm, 0, 0, 0);
  // The memfd we execveat: the init, or the same binary as the exec trampoline.
  int init_fd = plan->init_fd >= 0 ? plan->init_fd : plan->tramp_fd;
  const bool tramp = plan->init_fd < 0 && plan->tramp_fd >= 0;
  int cmd_fd = plan->cmd_fd;
  int net_sock = plan->n_net_msgs ? plan->net_host_sock : -1;

  // A new user namespace gets its id maps first, while the process is still dumpable: the maps'
  // owner check (ours, and newuidmap's) needs /proc/<pid> to belong to the caller, which it does not
  // once the process is non-dumpable. Nothing runs inside the container yet, and the only ones
  // who could look at this process now are the caller's own uid, who can read Node itself anyway.
  if (plan->userns_sync_fd >= 0) {
    if (plan->userns_sync_wfd >= 0) close(plan->userns_sync_wfd);
    char go = 0;
    fault(plan, err_fd, STEP_USERNS, USERNS_WAIT);
    ssize_t n = NSBOX_RETRY(read(plan->userns_sync_fd, &go, 1));
    if (n != 1) fail(err_fd, STEP_USERNS, USERNS_WAIT, n < 0 ? errno : EPIPE);
    close(plan->userns_sync_fd);
    // Become root of the namespace now: the creator's ids need not be mapped in it (root asking
    // for a namespace: host 0 is not), and files made while building the root must belong to ids
    // that are (mkdir on the new tmpfs is EOVERFLOW otherwise).
    fault(plan, err_fd, STEP_USERNS, USERNS_SETRESGID);
    if (syscall(SYS_setresgid, 0, 0, 0) != 0) fail(err_fd, STEP_USERNS, USERNS_SETRESGID, errno);
    fault(plan, err_fd, STEP_USERNS, USERNS_SETRESUID);
    if (syscall(SYS_setresuid, 0, 0, 0) != 0) fail(err_fd, STEP_USERNS, USERNS_SETRESUID, errno);
  } else if (plan->self_uid_map) {
    // One id of our creator mapped by ourselves: "deny" to setgroups must come before gid_map.
    write_userns_file(plan, err_fd, "/proc/self/setgroups", "deny", USERNS_OPEN_SETGROUPS, USERNS_SETGROUPS);
    write_userns_file(plan, err_fd, "/proc/self/uid_map", plan->self_uid_map, USERNS_OPEN_UID_MAP, USERNS_UID_MAP);
    if (plan->self_gid_map)
      write_userns_file(plan, err_fd, "/proc/self/gid_map", plan->self_gid_map, USERNS_OPEN_GID_MAP, USERNS_GID_MAP);
  }

  // Nothing that can become visible inside a container may be inspected (ptrace, /proc/<pid>/fd,
  // mem) while it still holds a copy of Node's memory and fds; execve makes it dumpable again.
  fault(plan, err_fd, STEP_DUMPABLE, -1);
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail(err_fd, STEP_DUMPABLE, -1, errno);

  int tty_slave = -1;
  if (plan->enter_pidfd >= 0) {
    // We are the entering helper: in Node's pid namespace (invisible to the machine), sharing
    // Node's memory on x86_64 while the JS thread waits for us. Nothing here may wait on anything
    // the machine can influence: no path inside the machine is resolved and no file of it opened
    // (a FIFO, a FUSE mount or a lease there would hold us, and with us the JS thread). That is
    // the new process's work below, which Node waits for on its event loop, with a time limit.
    // setns with a pidfd joins all the requested namespaces of that process at once (Linux 5.8);
    // the pid namespace applies to children only, hence the clone below.
    // setns(CLONE_NEWNS) puts us at the root of the namespace's mount tree, which is not PID 1's
    // root when the machine was started from a chroot (a CI container, the VM lane): take PID 1's
    // root as it sees it, opened (O_PATH, in the host's /proc) before we move; the new process
    // chroots there (as nsenter --root).
    if (plan->enter_root) fault(plan, err_fd, STEP_SETNS, SETNS_OPEN_ROOT);
    int proot = plan->enter_root ? open(plan->enter_root, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    if (plan->enter_root && proot < 0) fail(err_fd, STEP_SETNS, SETNS_OPEN_ROOT, errno);
    // The cgroup to clone into, as a detached copy of its directory's mount (taken here, while the
    // host's mount namespace is still ours): the new process is born with it in its fd table
    // (clone3's CLONE_INTO_CGROUP needs it in ours, which it copies), and machine root can seize it
    // before its first instruction (ptrace, pidfd_getfd). From the directory itself ".." would climb
    // the host's cgroup tree to the host's "/"; from the root of a detached mount it goes nowhere.
    // Only a machine without a user namespace can seize the process (CAP_SYS_PTRACE over Node's
    // user namespace); in one with its own, the process's memory is not dumpable from birth and
    // nothing of the machine can reach its fds: the directory itself is used there (a rootless Node
    // may not make the copy: open_tree needs CAP_SYS_ADMIN over the host's mount namespace). So it
    // is where open_tree is hidden by a filter (a kernel with CLONE_INTO_CGROUP has it): then root
    // of a machine without a user namespace (root-equivalent anyway, docs/security.md) could climb.
    int cg = -1;
    if (plan->cgroup_fd >= 0) {
      bool cg_copy = !(plan->enter_flags & CLONE_NEWUSER);
      fault(plan, err_fd, STEP_ENTER, cg_copy ? ENTER_CGROUP_COPY : ENTER_CGROUP_DUP);
      if (cg_copy) cg = sys::open_tree(plan->cgroup_fd, "", sys::kOpenTreeClone | O_CLOEXEC | AT_EMPTY_PATH);
      if (cg < 0 && (!cg_copy || errno == ENOSYS || errno == EPERM)) {
        cg_copy = false;
        cg = fcntl(plan->cgroup_fd, F_DUPFD_CLOEXEC, 3);
      }
      if (cg < 0) fail(err_fd, STEP_ENTER, cg_copy ? ENTER_CGROUP_COPY : ENTER_CGROUP_DUP, errno);
    }
    fault(plan, err_fd, STEP_SETNS, SETNS_JOIN);
    if (setns(plan->enter_pidfd, static_cast<int>(plan->enter_flags)) != 0) fail(err_fd, STEP_SETNS, SETNS_JOIN, errno);
    // Our fd table is a copy of Node's (every socket, pipe and file it has open, libuv's signal
    // pipe included). The new process is visible in the machine before it closes them (at
    // STEP_FDS), and the machine's root can take any fd of it (pidfd_getfd, /proc/<pid>/fd) and
    // write to, read from or receive on it. So only what the plan needs goes along.
    {
      int keep[16];
      int nk = 0;
      const int want[] = {0, 1, 2, err_fd, init_fd, cmd_fd, net_sock, plan->stdio[0], plan->stdio[1], plan->stdio[2],
                          plan->status_fd, plan->pty_sock, cg, plan->enter_report_fd, proot};
      for (int fd : want)
        if (fd >= 0 && nk < 16) keep[nk++] = fd;
      fault(plan, err_fd, STEP_FDS, -2);
      if (close_all_but(keep, nk) != 0) fail(err_fd, STEP_FDS, -2, errno);
    }
    sys::CloneArgs args;
    for (size_t i = 0; i < sizeof(args); i++) reinterpret_cast<char*>(&args)[i] = 0;
    // CLONE_PARENT: the new process is Node's child (so Node can wait for it through a pidfd),
    // not this helper's, which exits right away.
    // clone3 rejects an exit_signal with CLONE_PARENT; the child takes ours (SIGCHLD) instead.
    // Always fork-style (never CLONE_VM): the new process is in the machine's pid namespace from
    // its first instruction, where the machine's root (with CAP_SYS_PTRACE in the initial user
    // namespace when the machine has no user namespace of its own) can ptrace it whatever its
    // dumpable flag says. Sharing our memory would be sharing Node's; a copy is only a copy.
    args.flags = CLONE_PARENT;
    args.exit_signal = 0;
    if (cg >= 0) {
      args.flags |= CLONE_INTO_CGROUP;
      args.cgroup = static_cast<uint64_t>(cg);
    }
    fault(plan, err_fd, STEP_ENTER, ENTER_CLONE);
    long pid = sys::clone3(&args);
    if (pid < 0) fail(err_fd, STEP_ENTER, ENTER_CLONE, errno);
    if (pid > 0) {
      if (plan->enter_pid_out) {
        *plan->enter_pid_out = static_cast<int32_t>(pid);
      } else if (plan->enter_report_fd >= 0) {
        int32_t v = static_cast<int32_t>(pid);
        NSBOX_RETRY(write(plan->enter_report_fd, &v, sizeof(v)));
      }
      _exit(0);
    }
    // The new process: the report pipe is the helper's alone, and the cgroup's directory fd (a way
    // up the host's cgroup tree) was for the clone only.
    if (plan->enter_report_fd >= 0) close(plan->enter_report_fd);
    if (cg >= 0) close(cg);
    fault(plan, err_fd, STEP_DUMPABLE, -1);  // (the helper's own comes first)
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail(err_fd, STEP_DUMPABLE, -1, errno);
    if (proot >= 0) {
      fault(plan, err_fd, STEP_SETNS, SETNS_FCHDIR);
      if (fchdir(proot) != 0) fail(err_fd, STEP_SETNS, SETNS_FCHDIR, errno);
      fault(plan, err_fd, STEP_SETNS, SETNS_CHROOT);
      if (chroot(".") != 0) fail(err_fd, STEP_SETNS, SETNS_CHROOT, errno);
      close(proot);
    }
    if (plan->pty_sock >= 0) tty_slave = open_pty(plan, plan->pty_sock, err_fd, plan->pty_cols, plan->pty_rows);
  }

  TailState st = {err_fd, init_fd, cmd_fd, net_sock, tty_slave, plan->enter_pidfd < 0 ? plan->pty_sock : -1, tramp};
  child_tail(plan, &st);
}

// Everything after the namespaces are entered, up to the exec: run by the child itself, or, entering
// a machine, by the process the helper clones into the machine's pid namespace.
[[noreturn]] void child_tail(const Plan* plan, TailState* st) {
  int err_fd = st->err_fd;
  int init_fd = st->init_fd;
  int cmd_fd = st->cmd_fd;
  int net_sock = st->net_sock;
  int tty_slave = st->tty_slave;
  int pty_sock = st->pty_sock;
  const bool tty = tty_slave >= 0 || pty_sock >= 0;
  const bool tramp = st->tramp;

  // Signals stay blocked (the parent blocked them all around clone) until just before execve, so
  // no handler that Node installed can run here. Reset every disposition: ignored signals would
  // otherwise stay ignored across execve (Node ignores SIGPIPE).
  for (int sig = 1; sig < 65; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    fault(plan, err_fd, STEP_SIGNALS, sig);
    if (sys::rt_sigaction_default(sig) != 0 && errno != EINVAL) fail(err_fd, STEP_SIGNALS, sig, errno);
  }

  // The network namespace made ahead (lo already up): joined before anything is mounted, so that
  // a sysfs mounted below belongs to it. Used once: nothing else ever holds it but our parent,
  // which closes its fd after the clone.
  if (plan->net_fd >= 0) {
    fault(plan, err_fd, STEP_NETNS, -1);
    if (setns(plan->net_fd, CLONE_NEWNET) != 0) fail(err_fd, STEP_NETNS, -1, errno);
    close(plan->net_fd);
  }
  // Likewise the IPC namespace made ahead (empty: made by a helper that exited at once).
  if (plan->ipc_fd >= 0) {
    fault(plan, err_fd, STEP_IPCNS, -1);
    if (setns(plan->ipc_fd, CLONE_NEWIPC) != 0) fail(err_fd, STEP_IPCNS, -1, errno);
    close(plan->ipc_fd);
  }

  fault(plan, err_fd, STEP_SETSID, -1);
  if (setsid() < 0) fail(err_fd, STEP_SETSID, -1, errno);

  // stdio: first lift every fd we still need out of 0..3, then dup onto the targets.
  {
    int src[4] = {plan->stdio[0], plan->stdio[1], plan->stdio[2], plan->status_fd};
    err_fd = lift(err_fd);
    if (err_fd < 0) _exit(127);
    // (The fault points of the lifts are where a lift may be needed, whichever fd the kernel gave.)
    if (cmd_fd >= 0) fault(plan, err_fd, STEP_STDIO, STDIO_LIFT_CMD);
    if (cmd_fd >= 0 && (cmd_fd = lift(cmd_fd)) < 0) fail(err_fd, STEP_STDIO, STDIO_LIFT_CMD, errno);
    if (init_fd >= 0) fault(plan, err_fd, STEP_STDIO, STDIO_LIFT_INIT);
    if (init_fd >= 0 && (init_fd = lift(init_fd)) < 0) fail(err_fd, STEP_STDIO, STDIO_LIFT_INIT, errno);
    if (net_sock >= 0) fault(plan, err_fd, STEP_STDIO, STDIO_LIFT_NET);
    if (net_sock >= 0 && (net_sock = lift(net_sock)) < 0) fail(err_fd, STEP_STDIO, STDIO_LIFT_NET, errno);
    if (pty_sock >= 0) fault(plan, err_fd, STEP_STDIO, STDIO_LIFT_PTY);
    if (pty_sock >= 0 && (pty_sock = lift(pty_sock)) < 0) fail(err_fd, STEP_STDIO, STDIO_LIFT_PTY, errno);
    if (tty_slave >= 0) fault(plan, err_fd, STEP_STDIO, STDIO_LIFT + 0);
    if (tty_slave >= 0 && (tty_slave = lift(tty_slave)) < 0) fail(err_fd, STEP_STDIO, STDIO_LIFT + 0, errno);
    for (int i = 0; i < 4; i++) {
      if (src[i] >= 0 && src[i] != i) fault(plan, err_fd, STEP_STDIO, STDIO_LIFT + i);
      if (src[i] >= 0 && src[i] != i && src[i] <= 3 && (src[i] = lift(src[i])) < 0)
        fail(err_fd, STEP_STDIO, STDIO_LIFT + i, errno);
    }
    for (int i = 0; i < 4; i++) {
      if (src[i] < 0) continue;
      fault(plan, err_fd, STEP_STDIO, (src[i] == i ? STDIO_KEEP : STDIO_DUP) + i);
      if (src[i] == i) {
        if (fcntl(i, F_SETFD, 0) != 0) fail(err_fd, STEP_STDIO, STDIO_KEEP + i, errno);
      } else if (dup2(src[i], i) < 0) {
        fail(err_fd, STEP_STDIO, STDIO_DUP + i, errno);
      }
    }
  }

  if (tty_slave >= 0) pty_stdio(plan, err_fd, tty_slave);

  if (!plan->cgroup_into && plan->cgroup_fd >= 0 && plan->enter_pidfd < 0) {
    fault(plan, err_fd, STEP_CGROUP_JOIN, CGROUP_JOIN_OPEN);
    int fd = openat(plan->cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) fail(err_fd, STEP_CGROUP_JOIN, CGROUP_JOIN_OPEN, errno);
    fault(plan, err_fd, STEP_CGROUP_JOIN, CGROUP_JOIN_WRITE);
    if (write(fd, "0", 1) != 1) fail(err_fd, STEP_CGROUP_JOIN, CGROUP_JOIN_WRITE, errno);
    close(fd);
    if (plan->clone_flags & CLONE_NEWCGROUP) fault(plan, err_fd, STEP_CGROUP_JOIN, CGROUP_JOIN_UNSHARE);
    if ((plan->clone_flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) != 0)
      fail(err_fd, STEP_CGROUP_JOIN, CGROUP_JOIN_UNSHARE, errno);
  }

  if (plan->mnt_template_fd >= 0) {
    mount_in_template(plan, err_fd);
  } else if (plan->clone_flags & CLONE_NEWNS) {
    fault(plan, err_fd, STEP_PRIVATE, -1);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      fail(err_fd, STEP_PRIVATE, -1, errno);
    int root = -1;
    DirCache dirs;
    g_walk_only = plan->walk_only;
    bool prev_skipped = false;
    for (size_t i = 0; i < plan->n_ops; i++) {
      fault(plan, err_fd, STEP_OP, static_cast<int32_t>(i));
      int call;
      // An optional bind's remount (the generated /etc files) follows its mount: skipped only if
      // the mount was, never resolved to "missing" on its own. Between the two look-ups a
      // concurrently written rootfs can swap the target's directory for a symlink (ELOOP) or take
      // the file away: skipping the remount then left the bind of a shared host file writable.
      const Op* op = &plan->ops[i];
      Op strict;
      if (i > 0 && optional_remount_of(plan->ops[i - 1], *op)) {
        if (prev_skipped) {
          prev_skipped = false;
          continue;
        }
        strict = *op;
        strict.where &= ~static_cast<uint32_t>(WHERE_OPTIONAL);
        op = &strict;
      }
      bool skipped = false;
      if (run_op(*op, root, &dirs, false, &call, &skipped) != 0) fail(err_fd, STEP_OP, op_record(i, call), errno);
      prev_skipped = skipped;
      if ((plan->ops[i].where & WHERE_OPEN_ROOT) && root < 0) {
        dirs.drop();
        root = open(plan->staging, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0) fail(err_fd, STEP_OP, op_record(i, OPCALL_OPEN), errno);
      }
    }
    dirs.drop();
    if (root >= 0) close(root);
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only the
    // new root (the form runc and crun use: no put_old directory needed inside the image).
    fault(plan, err_fd, STEP_PIVOT, PIVOT_CHDIR);
    if (chdir(plan->staging) != 0) fail(err_fd, STEP_PIVOT, PIVOT_CHDIR, errno);
    fault(plan, err_fd, STEP_PIVOT, PIVOT_PIVOT);
    if (sys::pivot_root(".", ".") != 0) fail(err_fd, STEP_PIVOT, PIVOT_PIVOT, errno);
    fault(plan, err_fd, STEP_PIVOT, PIVOT_DETACH);
    if (umount2(".", MNT_DETACH) != 0) fail(err_fd, STEP_PIVOT, PIVOT_DETACH, errno);
    fault(plan, err_fd, STEP_PIVOT, PIVOT_CHDIR_ROOT);
    if (chdir("/") != 0) fail(err_fd, STEP_PIVOT, PIVOT_CHDIR_ROOT, errno);
  }

  // From here on every path is the container's (or, entering a machine, the machine's): its root
  // may have planted symlinks to /proc/self/fd/N, and such a magic link reaches whatever fd N is.
  // So no fd of the Node process may still be open here (the container's cgroup directory, a
  // host directory Node holds: CVE-2024-21626), and this comes before the seccomp filter, which a
  // user's policy may make deny close_range and close. Kept: stdio (0..2), the init's status fd
  // (3), the error pipe, the memfd to exec, the pool's command pipe and the netlink socket of a
  // bridged network set-up (closed once used, below).
  {
    int keep[9];
    int nk = 0;
    const int want[] = {0, 1, 2, plan->status_fd >= 0 ? 3 : -1, err_fd, init_fd, cmd_fd, net_sock, pty_sock};
    for (int fd : want)
      if (fd >= 0) keep[nk++] = fd;
    fault(plan, err_fd, STEP_FDS, -1);
    if (close_all_but(keep, nk) != 0) fail(err_fd, STEP_FDS, -1, errno);
  }

  // An app container's tty: a pty of the devpts its own mount ops made (pty.cc), now that its root
  // is in place, none of Node's fds is left open (its /dev/pts is a path of the container's) and
  // before anything of it has run; the master goes to Node over the socket (then closed), the
  // slave becomes stdio and the controlling terminal.
  if (pty_sock >= 0) {
    pty_stdio(plan, err_fd, open_pty(plan, pty_sock, err_fd, plan->pty_cols, plan->pty_rows));
    close(pty_sock);
  }

  // stdio from the container's own /dev/null (see kStdioDevNull): opened now that the root (or,
  // entering a machine, the machine's) is in place, before anything of the container could run.
  if (!tty) {
    for (int i = 0; i < 3; i++) {
      if (plan->stdio[i] != kStdioDevNull) continue;
      fault(plan, err_fd, STEP_STDIO, STDIO_DEVNULL + i);
      int fd = open_beneath_root("/dev/null", O_RDWR | O_NOFOLLOW);
      if (fd < 0) fail(err_fd, STEP_STDIO, STDIO_DEVNULL + i, errno);
      fault(plan, err_fd, STEP_STDIO, (fd == i ? STDIO_KEEP : STDIO_DUP) + i);
      if (fd == i) {
        if (fcntl(i, F_SETFD, 0) != 0) fail(err_fd, STEP_STDIO, STDIO_KEEP + i, errno);
      } else {
        if (dup2(fd, i) < 0) fail(err_fd, STEP_STDIO, STDIO_DUP + i, errno);
        close(fd);
      }
    }
  }

  if (plan->hostname) {
    size_t len = 0;
    while (plan->hostname[len]) len++;
    fault(plan, err_fd, STEP_HOSTNAME, -1);
    if (sethostname(plan->hostname, len) != 0) fail(err_fd, STEP_HOSTNAME, -1, errno);
  }
  if (plan->net_lo_up) {
    int32_t at = NET_LO_IOCTL;
    if (lo_up(plan, &at) != 0) fail(err_fd, STEP_NET_LO, at, errno);
  }
  if (plan->n_net_msgs) {
    // Bridged network: the veth pair over Node's netns socket, then address, route and egress rules
    // in our own netns, all before the capabilities are dropped (see netlink.cc).
    int32_t at = -1;
    if (net_setup(plan, net_sock, &at) != 0) fail(err_fd, STEP_NET, at, errno);
    close(net_sock);
  }
  if (plan->cwd) {
    // Resolved beneath the root, without magic links: a cwd of "/app" with /app -> /proc/self/fd/N
    // (or /proc/1/cwd) planted by an earlier run must not put the process in a directory outside
    // its root, from which ".." climbs to the host's "/".
    fault(plan, err_fd, STEP_CWD, CWD_OPEN);
    int dir = open_beneath_root(plan->cwd, O_PATH | O_DIRECTORY);
    if (dir < 0) fail(err_fd, STEP_CWD, CWD_OPEN, errno);
    fault(plan, err_fd, STEP_CWD, CWD_ENTER);
    if (fchdir(dir) != 0) fail(err_fd, STEP_CWD, CWD_ENTER, errno);
    close(dir);
  }

  for (size_t i = 0; i < plan->n_rlimits; i++) {
    struct rlimit rl;
    rl.rlim_cur = plan->rlimits[i].soft;
    rl.rlim_max = plan->rlimits[i].hard;
    fault(plan, err_fd, STEP_RLIMIT, static_cast<int32_t>(i));
    if (setrlimit(static_cast<__rlimit_resource>(plan->rlimits[i].resource), &rl) != 0)
      fail(err_fd, STEP_RLIMIT, static_cast<int32_t>(i), errno);
  }

  // A fresh anonymous session keyring: keys of the host session must not be reachable.
  if (plan->new_keyring) fault(plan, err_fd, STEP_KEYRING, -1);
  if (plan->new_keyring && syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, nullptr) < 0)
    fail(err_fd, STEP_KEYRING, -1, errno);

  // The bounding set has to shrink while we still hold CAP_SETPCAP, i.e. before setuid.
  for (int cap = 0; cap <= plan->cap_last; cap++) {
    if (plan->caps_keep & (1ULL << cap)) continue;
    fault(plan, err_fd, STEP_CAPS_BOUND, cap);
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
      fail(err_fd, STEP_CAPS_BOUND, cap, errno);
  }

  // The seccomp filter goes in while we still hold CAP_SYS_ADMIN (before the credential change): a
  // process without it may only install one under no_new_privs, which machines do not set. What
  // runs after it (setgroups/setresuid, capset, prctl, rt_sigprocmask, fcntl, execveat, and
  // write/exit_group on failure) is allowed by every nsbox filter, or fails closed with its error.
  // The fds were closed above, before it: a policy denying close_range/close cannot leave any open.
  if (plan->seccomp) {
    struct sock_fprog prog;
    prog.len = static_cast<unsigned short>(plan->seccomp_len);
    prog.filter = static_cast<struct sock_filter*>(const_cast<void*>(plan->seccomp));
    fault(plan, err_fd, STEP_SECCOMP, -1);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) fail(err_fd, STEP_SECCOMP, -1, errno);
  }

  if (plan->set_creds) {
    // Raw system calls, not glibc's setgroups/setresgid/setresuid: in a process that glibc believes
    // multi-threaded (this copy of Node) those broadcast the change to every thread under a lock
    // (__nptl_setxid), which another thread may have held at clone time. Here there is one thread.
    // In a user namespace whose creator mapped itself, setgroups is refused ("deny"): the
    // supplementary groups are then the empty set the namespace started with.
    if (!plan->setgroups_denied) fault(plan, err_fd, STEP_SETGROUPS, -1);
    if (!plan->setgroups_denied && syscall(SYS_setgroups, plan->n_groups, plan->groups) != 0)
      fail(err_fd, STEP_SETGROUPS, -1, errno);
    fault(plan, err_fd, STEP_SETGID, -1);
    if (syscall(SYS_setresgid, plan->gid, plan->gid, plan->gid) != 0) fail(err_fd, STEP_SETGID, -1, errno);
    fault(plan, err_fd, STEP_SETUID, -1);
    if (syscall(SYS_setresuid, plan->uid, plan->uid, plan->uid) != 0) fail(err_fd, STEP_SETUID, -1, errno);
  }

  {
    // For uid 0 execve gives permitted = bounding; set the current sets to match so that what the
    // process holds until execve is no more than what it will hold after. Non-zero uids lost all
    // capabilities in setresuid already; capset with zeros is then a no-op that must succeed.
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {};
    uint64_t keep = (plan->set_creds && plan->uid != 0) ? 0 : plan->caps_keep;
    data[0].effective = data[0].permitted = static_cast<uint32_t>(keep);
    data[1].effective = data[1].permitted = static_cast<uint32_t>(keep >> 32);
    fault(plan, err_fd, STEP_CAPS, CAPS_SET);
    if (syscall(SYS_capset, &hdr, data) != 0) fail(err_fd, STEP_CAPS, CAPS_SET, errno);
    fault(plan, err_fd, STEP_CAPS, CAPS_AMBIENT);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
      fail(err_fd, STEP_CAPS, CAPS_AMBIENT, errno);
  }

  if (plan->no_new_privs) fault(plan, err_fd, STEP_NO_NEW_PRIVS, -1);
  if (plan->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    fail(err_fd, STEP_NO_NEW_PRIVS, -1, errno);

  // After the credential change: commit_creds() clears the parent-death signal.
  if (plan->pdeathsig) fault(plan, err_fd, STEP_PDEATHSIG, -1);
  if (plan->pdeathsig && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
    fail(err_fd, STEP_PDEATHSIG, -1, errno);
  // Armed only now: if Node died before this (the child goes on without it), no signal will come,
  // and the command would run on with nobody to wait for it (issue #17's kills: in a machine, where
  // no cgroup of Node's names it, nothing would ever end it). Node holds the only reader of the
  // error pipe (ours went with the fds above), so the pipe tells: no reader left, end as the signal
  // would have ended us. (A reader another clone of Node still holds until its exec only delays
  // this to that clone's own check.)
  if (plan->pdeathsig) {
    struct pollfd pfd = {err_fd, 0, 0};
    if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR)) syscall(SYS_exit_group, 128 + SIGKILL);
  }

  if (cmd_fd >= 0 && tramp) pooled_exec(plan, err_fd, init_fd, cmd_fd);

  uint64_t empty = 0;
  uint64_t full = ~0ULL;
  // nsbox-init (not the trampoline) is exec'd with every signal still blocked, and keeps them
  // blocked: as a PID 1 with default dispositions it would otherwise drop a halt or forwarded signal
  // that came before its first instruction (the kernel discards an unblocked SIG_DFL signal to an
  // init). Blocked, the signal stays pending until init's rt_sigtimedwait takes it. The init clears
  // the mask for the command it starts.
  if (!tramp && init_fd >= 0 && plan->init_slot == SIZE_MAX) {
    fault(plan, err_fd, STEP_EXEC, EXEC_MEMFD);
    syscall(SYS_execveat, init_fd, "", plan->init_argv, plan->envp, AT_EMPTY_PATH);
    fail(err_fd, STEP_EXEC, EXEC_MEMFD, errno);
  }
  int last_err = ENOENT;
  int32_t last_index = -1;
  fault(plan, err_fd, STEP_EXEC, -1);  // as if no candidate existed
  for (size_t i = 0; i < plan->n_candidates; i++) {
    const char* cand = plan->candidates[i];
    fault(plan, err_fd, STEP_EXEC, static_cast<int32_t>(i));  // its check (init, trampoline) or its execve
    if (init_fd >= 0) {
      // Through the memfd (trampoline or init): check the candidate first, then exec the memfd
      // with the candidate written into its prepared argv.
      int err = 0;
      if (!is_exec_candidate(cand, &err)) {
        if (err == ENOENT || err == ENOTDIR) continue;
        last_err = err;
        last_index = static_cast<int32_t>(i);
        if (err == EACCES) continue;
        break;
      }
      char* const* argv = plan->init_argv;
      if (tramp) {
        format_int(plan->tramp_argv[2], err_fd);
        format_int(plan->tramp_argv[3], static_cast<int>(i));
        plan->tramp_argv[5] = const_cast<char*>(cand);
        argv = plan->tramp_argv;
        // The error pipe must survive this execve: the trampoline reports its own execve failure
        // there and marks it close-on-exec again before that execve.
        fault(plan, err_fd, STEP_EXEC, EXEC_KEEP_ERRFD);
        if (fcntl(err_fd, F_SETFD, 0) != 0) fail(err_fd, STEP_EXEC, EXEC_KEEP_ERRFD, errno);
      } else {
        plan->init_argv[plan->init_slot] = const_cast<char*>(cand);
      }
      fault(plan, err_fd, STEP_EXEC, EXEC_MEMFD);
      if (tramp) sys::rt_sigprocmask(SIG_SETMASK, &empty, nullptr);  // init keeps them blocked (above)
      syscall(SYS_execveat, init_fd, "", argv, plan->envp, AT_EMPTY_PATH);
      last_err = errno;
      sys::rt_sigprocmask(SIG_SETMASK, &full, nullptr);
      if (tramp) fcntl(err_fd, F_SETFD, FD_CLOEXEC);
      last_index = EXEC_MEMFD;  // the memfd itself failed to start
      break;
    }
    sys::rt_sigprocmask(SIG_SETMASK, &empty, nullptr);
    execve(cand, plan->argv, plan->envp);
    int err = errno;
    sys::rt_sigprocmask(SIG_SETMASK, &full, nullptr);
    if (err == ENOENT || err == ENOTDIR) continue;
    last_err = err;
    last_index = static_cast<int32_t>(i);
    if (err == EACCES) continue;
    break;
  }
  fail(err_fd, STEP_EXEC, last_index, last_err);
}

}  // namespace nsbox
