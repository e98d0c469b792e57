// spawn.cc: clone3 (CLONE_PIDFD | CLONE_INTO_CGROUP | namespaces) and the error-pipe handshake.
//
// The parent blocks every signal on its own thread around the clone so the child cannot run a Node
// signal handler before it resets dispositions (libuv does the same). The clone is fork-like (no
// CLONE_VM): the child gets a copy of the address space and only ever returns into child_main.
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "child.h"
#include "syscalls.h"

namespace nsbox {

namespace {

void set_error(SpawnOutcome* out, int32_t step, int err) {
  out->error.step = step;
  out->error.err = err;
  out->error.index = -1;
  out->error.magic = kErrorMagic;
}

long do_clone(Plan* p, int* pidfd, bool* used_clone3) {
  sys::CloneArgs args;
  memset(&args, 0, sizeof(args));
  args.flags = p->clone_flags | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(pidfd);
  args.exit_signal = SIGCHLD;
  bool into = p->cgroup_fd >= 0 && p->cgroup_into;
  if (into) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(p->cgroup_fd);
  } else if (p->cgroup_fd >= 0) {
    // The child joins its cgroup itself, and only then creates its cgroup namespace so that the
    // namespace root is the container's cgroup rather than Node's.
    args.flags &= ~static_cast<uint64_t>(CLONE_NEWCGROUP);
  }
  long pid = sys::clone3(&args);
  if (pid >= 0 || errno != ENOSYS) {
    *used_clone3 = true;
    return pid;
  }
  // clone3 missing (kernel < 5.3, or a seccomp filter in front of us): legacy clone, and the
  // cgroup is joined from inside the child.
  *used_clone3 = false;
  p->cgroup_into = false;
  unsigned long flags = static_cast<unsigned long>(p->clone_flags | CLONE_PIDFD);
  if (p->cgroup_fd >= 0) flags &= ~static_cast<unsigned long>(CLONE_NEWCGROUP);
  return sys::clone_fork(flags, pidfd);
}

size_t read_record(int fd, ErrorRecord* rec) {
  size_t got = 0;
  while (got < sizeof(*rec)) {
    ssize_t n = read(fd, reinterpret_cast<char*>(rec) + got, sizeof(*rec) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

}  // namespace

void spawn(const Plan& plan, SpawnOutcome* out) {
  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) != 0) {
    set_error(out, STEP_PIPE, errno);
    return;
  }
  Plan p = plan;
  p.err_fd = errpipe[1];
  if (p.cgroup_fd < 0) p.cgroup_into = false;

  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  long pid = do_clone(&p, &pidfd, &out->used_clone3);
  if (pid == 0) child_main(&p);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(errpipe[1]);

  if (pid < 0) {
    close(errpipe[0]);
    set_error(out, STEP_CLONE, clone_errno);
    return;
  }

  ErrorRecord rec;
  size_t got = read_record(errpipe[0], &rec);
  if (got == sizeof(rec) && rec.magic == kErrorMagic && rec.step == STEP_ENTERED) {
    // Entering a machine: the helper we cloned has made the real process (our child through
    // CLONE_PARENT) and exited. Reap the helper, take a pidfd for the new process (it cannot be
    // reused before we wait for it), then wait for its exec or its failure record as usual.
    pid_t entered = static_cast<pid_t>(rec.index);
    siginfo_t si;
    while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si, WEXITED) != 0 && errno == EINTR) {
    }
    close(pidfd);
    pidfd = sys::pidfd_open(entered, 0);
    if (pidfd < 0) {
      int err = errno;
      close(errpipe[0]);
      kill(entered, SIGKILL);
      while (waitpid(entered, nullptr, 0) < 0 && errno == EINTR) {
      }
      set_error(out, STEP_ENTER, err);
      return;
    }
    pid = entered;
    got = read_record(errpipe[0], &rec);
  }
  close(errpipe[0]);

  if (got == 0) {  // EOF: execve succeeded
    out->pid = static_cast<pid_t>(pid);
    out->pidfd = pidfd;
    return;
  }
  if (got != sizeof(rec) || rec.magic != kErrorMagic) {
    rec.step = STEP_SYNC;
    rec.err = EPROTO;
    rec.index = static_cast<int32_t>(got);
    rec.magic = kErrorMagic;
    sys::pidfd_send_signal(pidfd, SIGKILL);
  }
  // The child _exits right after writing its record: reap it so no zombie is left.
  siginfo_t si;
  while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si, WEXITED) != 0 &&
         errno == EINTR) {
  }
  close(pidfd);
  out->error = rec;
}

}  // namespace nsbox
