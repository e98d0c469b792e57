// probe.cc: see probe.h.
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "syscalls.h"

namespace nsbox {

namespace {
bool answers(long rc) { return rc >= 0 || errno != ENOSYS; }
}  // namespace

SyscallReport probe_syscalls() {
  SyscallReport r;
  r.clone3 = answers(syscall(SYS_clone3, nullptr, 0));  // size 0: EINVAL when present
  int fd = sys::pidfd_open(getpid(), 0);
  r.pidfd = fd >= 0;
  if (fd >= 0) close(fd);
  r.close_range = answers(sys::close_range(1, 0, 0));  // first > last: EINVAL
  r.openat2 = answers(syscall(SYS_openat2, AT_FDCWD, "/", nullptr, 0));  // size 0: EINVAL
  r.new_mount_api = answers(syscall(SYS_fsopen, nullptr, 0));           // NULL name: EFAULT
  r.mount_setattr = answers(syscall(SYS_mount_setattr, -1, "", 0, nullptr, 0));
  return r;
}

namespace {
// The child of try_namespaces: raw system calls over memory prepared before the clone, no
// allocation, no stdio (docs: ARCHITECTURE.md, the child path rule).
[[noreturn]] void trial_child(int report_fd, int proc_mode, int cgroup_procs_fd) {
  TrialResult r = {TRIAL_OK, 0};
  if (cgroup_procs_fd >= 0 && write(cgroup_procs_fd, "0", 1) != 1) r = {TRIAL_CGROUP, errno};
  if (r.stage == TRIAL_OK && proc_mode != TRIAL_PROC_NOTHING) {
    // The same calls as the container's /proc ops (lib/fsops.ts, mountProcAndDev).
    const unsigned long f = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      r = {TRIAL_MOUNT_PRIVATE, errno};
    } else if (proc_mode == TRIAL_PROC_FRESH ? mount("proc", "/proc", "proc", f, nullptr) != 0
                                             : mount("tmpfs", "/proc", "tmpfs", f | MS_RDONLY, "mode=0555,size=4k") != 0) {
      r = {TRIAL_MOUNT_PROC, errno};
    }
  }
  ssize_t w = write(report_fd, &r, sizeof(r));
  _exit(w == static_cast<ssize_t>(sizeof(r)) ? 0 : 1);
}
}  // namespace

TrialResult try_namespaces(unsigned long flags, int proc_mode, int cgroup_procs_fd) {
  // /proc is only ever mounted over in a mount namespace of the child's own, never the host's.
  if (proc_mode != TRIAL_PROC_NOTHING && (flags & CLONE_NEWNS) == 0) return {TRIAL_MOUNT_PRIVATE, EINVAL};
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) return {TRIAL_PIPE, errno};
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  sys::CloneArgs args;
  memset(&args, 0, sizeof(args));
  args.flags = flags | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  int stage = TRIAL_CLONE3;
  long pid = sys::clone3(&args);
  if (pid < 0 && errno == ENOSYS) {
    stage = TRIAL_CLONE;
    pid = sys::clone_fork(flags | CLONE_PIDFD, &pidfd);
  }
  if (pid == 0) trial_child(report[1], proc_mode, cgroup_procs_fd);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(report[1]);
  if (pid < 0) {
    close(report[0]);
    return {stage, clone_errno};
  }
  TrialResult r;
  size_t got = sys::read_full(report[0], &r, sizeof(r));
  close(report[0]);
  sys::reap_pidfd(pidfd);
  if (got != sizeof(r)) return {TRIAL_PROTOCOL, EPROTO};
  return r;
}

}  // namespace nsbox
