// spawn.cc: clone3 (CLONE_PIDFD | CLONE_INTO_CGROUP | namespaces) and the error-pipe handshake.
//
// The parent blocks every signal on its own thread around the clone so the child cannot run a Node
// signal handler before it resets dispositions (libuv does the same). On x86_64 the clone is
// vfork-style (CLONE_VM | CLONE_VFORK on a stack of its own, sys::clone3_vm): the child shares
// Node's address space and this thread sleeps until it has exec'd or exited. It is fork-style (a
// copy of the address space) elsewhere, for a child that waits for its id maps, with
// Plan::fork_clone, and with legacy clone where clone3 is missing. Either way the child never
// returns into the parent's frames: it only runs child_main.
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "child.h"
#include "devices.h"
#include "syscalls.h"

namespace nsbox {

namespace {

void set_error(SpawnOutcome* out, int32_t step, int err, int32_t index = -1) {
  out->error.step = step;
  out->error.err = err;
  out->error.index = index;
  out->error.magic = kErrorMagic;
}

// Clones in flight (their vfork-style children may share Node's mm until they exec), and whether
// Node was dumpable before the first of them.
pthread_mutex_t g_dump_mu = PTHREAD_MUTEX_INITIALIZER;
int g_in_flight = 0;
int g_node_dumpable = -1;

void netns_entry(void* job) { netns_child(static_cast<NsFdJob*>(job)); }
void template_entry(void* job) { mnt_template_child(static_cast<NsFdJob*>(job)); }
void ipcns_entry(void* job) { ipcns_child(static_cast<NsFdJob*>(job)); }

#if defined(__x86_64__)
// The vfork-style child's entry (sys::clone3_vm, x86_64 only; elsewhere the fork-style clone3).
void child_entry(void* plan) { child_main(static_cast<Plan*>(plan)); }
constexpr size_t kChildStack = size_t{512} * 1024;

// A stack for vfork-style children, one per calling thread, with a guard page below it. The child
// runs on it while the parent thread is suspended (CLONE_VFORK), so one per thread is enough.
char* new_stack() {
  void* m = mmap(nullptr, kChildStack + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  mprotect(m, 4096, PROT_NONE);
  return static_cast<char*>(m) + 4096;
}
char* child_stack() {
  static thread_local char* stack = nullptr;
  if (!stack) stack = new_stack();
  return stack;
}

#endif

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
  long pid;
  // Fault points (plan.h, fault_at): clone3 fails, or is missing and the legacy clone fails.
  const bool legacy_fault = p->fault_step == STEP_CLONE && p->fault_index == CLONE_LEGACY;
  if (fault_at(p, STEP_CLONE, -1)) {
    *used_clone3 = true;
    return -1;
  }
  if (!legacy_fault) {
#if defined(__x86_64__)
  // (A pooled child waits for its command only after it has exec'd the init's pool mode, so
  // CLONE_VFORK releases this thread as usual.)
  // A child that waits for its id maps needs this thread to go on and write them: fork-style.
  char* stack = (p->fork_clone || p->userns_sync_fd >= 0) ? nullptr : child_stack();
  if (stack) {
    args.flags |= CLONE_VM | CLONE_VFORK;
    args.stack = reinterpret_cast<uint64_t>(stack);
    args.stack_size = kChildStack;
#if defined(__SANITIZE_ADDRESS__)
    // The previous child never returned from its frames: clear the redzones it left in the
    // (shared) shadow memory of this stack, or ASan reports the next child by mistake.
    __asan_unpoison_memory_region(stack, kChildStack);
#endif
    pid = sys::clone3_vm(&args, child_entry, p);
  } else {
    p->enter_pid_out = nullptr;  // a copy of our memory: the entering helper reports over its pipe
    pid = sys::clone3(&args);
  }
#else
  p->enter_pid_out = nullptr;
  pid = sys::clone3(&args);
#endif
  if (pid >= 0 || errno != ENOSYS) {
    *used_clone3 = true;
    return pid;
  }
  }
  // clone3 missing (or its fault point, above) (kernel < 5.3, or a seccomp filter in front of us): legacy clone, and the
  // cgroup is joined from inside the child.
  *used_clone3 = false;
  p->cgroup_into = false;
  p->enter_pid_out = nullptr;
  unsigned long flags = static_cast<unsigned long>(p->clone_flags | CLONE_PIDFD);
  if (p->cgroup_fd >= 0) flags &= ~static_cast<unsigned long>(CLONE_NEWCGROUP);
  if (fault_at(p, STEP_CLONE, CLONE_LEGACY)) return -1;
  return sys::clone_fork(flags, pidfd);
}

size_t read_record(int fd, ErrorRecord* rec) { return sys::read_full(fd, rec, sizeof(*rec)); }

// Entering a machine, after the clone of the helper. The helper (invisible to the machine, doing
// nothing the machine can hold up) has made the new process and exited, or failed before making
// it. Its pid comes from our memory (vfork-style) or from the report pipe that only the helper
// holds; the error pipe is read here only when no new process exists, i.e. nothing of the machine
// can have written to it. Otherwise nothing more is read: the caller waits for the exec or a
// failure record on its event loop (finish_spawn, with a time limit), since the new process now
// resolves paths in the machine and can be stopped, frozen or ptraced there.
void finish_enter(const Plan& p, long helper, int pidfd, int err_rd, int report_rd, bool shared, volatile int32_t* entered, SpawnOutcome* out) {
  int32_t pid = 0;
  if (shared) {
    sys::reap_pidfd(pidfd);  // it has exited already (CLONE_VFORK returned)
    pid = *entered;
  } else {
    // The helper writes the pid and exits, or exits (after its record) without: end-of-file.
    int32_t v;
    if (sys::read_full(report_rd, &v, sizeof(v)) == sizeof(v)) pid = v;
    sys::reap_pidfd(pidfd);
  }
  if (report_rd >= 0) close(report_rd);
  (void)helper;
  if (pid <= 0) {
    // The helper failed: its record is the only thing that can be in the pipe.
    ErrorRecord rec;
    size_t got = read_record(err_rd, &rec);
    close(err_rd);
    if (got != sizeof(rec) || rec.magic != kErrorMagic || rec.step == STEP_ENTERED || rec.step == STEP_READY)
      protocol_error(&rec, got);
    out->error = rec;
    return;
  }
  // Our unreaped child (CLONE_PARENT): its pid cannot be reused before we wait for it.
  int cfd = fault_at(&p, STEP_ENTER, ENTER_PIDFD) ? -1 : sys::pidfd_open(pid, 0);
  if (cfd < 0) {
    int err = errno;
    close(err_rd);
    kill(pid, SIGKILL);
    NSBOX_RETRY(waitpid(pid, nullptr, __WALL));
    set_error(out, STEP_ENTER, err, ENTER_PIDFD);
    return;
  }
  fcntl(cfd, F_SETFD, FD_CLOEXEC);
  out->pid = static_cast<pid_t>(pid);
  out->pidfd = cfd;
  out->err_fd = err_rd;
  out->entering = true;
}

}  // namespace

void protocol_error(ErrorRecord* rec, size_t got) {
  rec->step = STEP_SYNC;
  rec->err = EPROTO;
  rec->index = static_cast<int32_t>(got);
  rec->magic = kErrorMagic;
}

bool died_before_exec(int pidfd, pid_t pid, ErrorRecord* rec) {
  if (pidfd < 0 || pid <= 0) return false;
  // End-of-file comes from the kernel closing the pipe: in execve (close-on-exec) or in exit. A
  // process that is not exiting has exec'd, whatever it is called (its new name comes a moment
  // after the close, and a command may name itself anything). One that is exiting (PF_EXITING is
  // set before exit closes its files; or a zombie already) died before its exec if it still has
  // the name it was given for that (kPreExecComm). All of it from one read of /proc/<pid>/stat,
  // without waiting: the process cannot hold this up. Our unreaped child: the pid is nobody else's.
  char path[40] = "/proc/";
  char digits[12];
  int n = 0;
  for (unsigned v = static_cast<unsigned>(pid); v; v /= 10) digits[n++] = static_cast<char>('0' + v % 10);
  size_t at = 6;
  while (n) path[at++] = digits[--n];
  memcpy(path + at, "/stat", 6);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // no /proc of our pid namespace: taken as exec'd, as before
  char buf[512];
  ssize_t got = NSBOX_RETRY(read(fd, buf, sizeof(buf) - 1));
  close(fd);
  if (got <= 0) return false;
  buf[got] = 0;
  // "pid (comm) S ppid pgrp session tty_nr tpgid flags ...": comm may hold spaces and parens, so
  // the fields after it start after the last ')'.
  char* open_paren = strchr(buf, '(');
  char* close_paren = strrchr(buf, ')');
  if (!open_paren || !close_paren || close_paren < open_paren) return false;
  size_t comm_len = static_cast<size_t>(close_paren - open_paren - 1);
  const bool pre = comm_len == sizeof(kPreExecComm) - 1 && memcmp(open_paren + 1, kPreExecComm, comm_len) == 0;
  if (!pre) return false;
  char* f = close_paren + 1;
  while (*f == ' ') f++;
  const char state = *f;
  unsigned long flags = 0;
  for (int field = 0; field < 6 && *f; field++) {  // state, ppid, pgrp, session, tty_nr, tpgid
    while (*f && *f != ' ') f++;
    while (*f == ' ') f++;
  }
  flags = strtoul(f, nullptr, 10);
  constexpr unsigned long kPfExiting = 0x4;  // PF_EXITING (include/linux/sched.h)
  const bool exiting = state == 'Z' || state == 'X' || (flags & kPfExiting);
  if (!exiting) return false;
  // It dies. Before its exec it never exits on its own without a record (fail() writes one
  // first), so a death before the exec is a death by a signal: wait until it is a zombie (the rest
  // of its exit is the kernel's: its namespaces; bounded) and look. One that exited with a status
  // exec'd (a command that named itself so, then exited): started, as it did.
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  struct pollfd pfd = {pidfd, POLLIN, 0};
  NSBOX_RETRY(poll(&pfd, 1, 1000));
  sys::wait_pidfd(pidfd, &si, WEXITED | WNOHANG | WNOWAIT);
  if (si.si_pid == 0 || (si.si_code != CLD_KILLED && si.si_code != CLD_DUMPED)) return false;
  rec->step = STEP_DIED;
  rec->err = ESRCH;
  rec->index = si.si_status;  // the signal
  rec->magic = kErrorMagic;
  return true;
}

void spawn(const Plan& plan, SpawnOutcome* out) {
  int errpipe[2];
  if (fault_at(&plan, STEP_PIPE, -1) || pipe2(errpipe, O_CLOEXEC) != 0) {
    set_error(out, STEP_PIPE, errno);
    return;
  }
  Plan p = plan;
  p.err_fd = errpipe[1];
  p.fault_err_rfd = errpipe[0];
  if (p.cgroup_fd < 0) p.cgroup_into = false;
  // The device allow-list is in force before the child's first instruction (it starts in this
  // cgroup, or joins it before anything else).
  if (p.device_prog_fd >= 0 && p.cgroup_fd >= 0 && p.enter_pidfd < 0 && (fault_at(&p, STEP_DEVICES, -1) || attach_device_policy(p.cgroup_fd, p.device_prog_fd) != 0)) {
    int err = errno;
    close(errpipe[0]);
    close(errpipe[1]);
    set_error(out, STEP_DEVICES, err);
    return;
  }
  // Entering a machine: where the helper reports the new process's pid (plan.h). Written by the
  // vfork-style helper, which shares this frame; the pipe where the clone is fork-style.
  volatile int32_t entered = 0;
  int report[2] = {-1, -1};
  if (p.enter_pidfd >= 0) {
    if (pipe2(report, O_CLOEXEC) != 0) {
      int err = errno;
      close(errpipe[0]);
      close(errpipe[1]);
      set_error(out, STEP_PIPE, err);
      return;
    }
    p.enter_pid_out = &entered;
    p.enter_report_fd = report[1];
  }

  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  // A vfork-style child shares Node's mm, and "dumpable" is a property of the mm: the child's
  // PR_SET_DUMPABLE(0) (which keeps Node's memory out of reach while the child holds it) would
  // otherwise stay on Node itself after the child has exec'd. Put back what Node had, but only once
  // no other thread's child still shares the mm before its exec (spawnAsync runs clones on several
  // threads): that one must stay out of reach too.
  pthread_mutex_lock(&g_dump_mu);
  if (g_in_flight++ == 0) g_node_dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  pthread_mutex_unlock(&g_dump_mu);
  int pidfd = -1;
  // The child is named kPreExecComm from its first instruction (a signal can stop or kill it before
  // it runs one of its own): it inherits this thread's name, set for the clone and put back after.
  char thread_name[17] = {0};
  bool renamed = prctl(PR_GET_NAME, thread_name, 0, 0, 0) == 0 && prctl(PR_SET_NAME, kPreExecComm, 0, 0, 0) == 0;
  long pid = do_clone(&p, &pidfd, &out->used_clone3);
  if (pid == 0) child_main(&p);
  int clone_errno = errno;
  if (renamed) prctl(PR_SET_NAME, thread_name, 0, 0, 0);
  pthread_mutex_lock(&g_dump_mu);
  if (--g_in_flight == 0 && g_node_dumpable == 1 && prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1)
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
  pthread_mutex_unlock(&g_dump_mu);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(errpipe[1]);
  if (report[1] >= 0) close(report[1]);

  if (pid < 0) {
    close(errpipe[0]);
    if (report[0] >= 0) close(report[0]);
    set_error(out, STEP_CLONE, clone_errno, out->used_clone3 ? -1 : CLONE_LEGACY);
    return;
  }
  if (p.enter_pidfd >= 0) {
    finish_enter(p, pid, pidfd, errpipe[0], report[0], p.enter_pid_out != nullptr, &entered, out);
    return;
  }
  if (p.userns_sync_fd >= 0) {
    // The child blocks until the caller has written its id maps and released it; the caller then
    // waits for the exec (or the failure record) with finish_spawn.
    out->pid = static_cast<pid_t>(pid);
    out->pidfd = pidfd;
    out->err_fd = errpipe[0];
    out->waiting = true;
    return;
  }

  ErrorRecord rec;
  size_t got = read_record(errpipe[0], &rec);
  if (fault_at(&p, STEP_SYNC, static_cast<int32_t>(got))) {
    // A record cut short after got bytes (the fault point of the handshake): a protocol error, as
    // a real one is. errno: the plan's.
    close(errpipe[0]);
    protocol_error(&rec, got);
    rec.err = errno;
    sys::pidfd_send_signal(pidfd, SIGKILL);
    sys::reap_pidfd(pidfd);
    out->error = rec;
    return;
  }
  if (got == sizeof(rec) && rec.magic == kErrorMagic && rec.step == STEP_READY) {
    out->pid = static_cast<pid_t>(pid);
    out->pidfd = pidfd;
    out->err_fd = errpipe[0];
    return;
  }
  close(errpipe[0]);

  if (got == 0 && !died_before_exec(pidfd, static_cast<pid_t>(pid), &rec)) {  // EOF: execve succeeded
    out->pid = static_cast<pid_t>(pid);
    out->pidfd = pidfd;
    return;
  }
  if (got != 0 && (got != sizeof(rec) || rec.magic != kErrorMagic)) {
    protocol_error(&rec, got);
    sys::pidfd_send_signal(pidfd, SIGKILL);
  }
  // The child _exits right after writing its record: reap it so no zombie is left.
  sys::reap_pidfd(pidfd);
  out->error = rec;
}

// A short-lived helper child that makes a namespace (ns_flag in its clone) and opens it into our fd
// table (CLONE_FILES), then exits: vfork-style on this thread's child stack, every signal blocked,
// no exit signal (nobody but this pidfd hears of it: Node's SIGCHLD handling is libuv's). The
// namespace's O_CLOEXEC fd, or -1 with errno (ENOSYS where the vfork-style clone is not available).
static int namespace_by_helper(uint64_t ns_flag, void (*entry)(void*), int* overlay_detached = nullptr) {
#if defined(__x86_64__)
  char* stack = child_stack();
  if (!stack) return -1;
  NsFdJob job = {-1, 0, 0};
  sys::CloneArgs args;
  memset(&args, 0, sizeof(args));
  int pidfd = -1;
  args.flags = CLONE_VM | CLONE_VFORK | CLONE_FILES | ns_flag | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = 0;
  args.stack = reinterpret_cast<uint64_t>(stack);
  args.stack_size = kChildStack;
#if defined(__SANITIZE_ADDRESS__)
  __asan_unpoison_memory_region(stack, kChildStack);
#endif
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  long pid = sys::clone3_vm(&args, entry, &job);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    errno = clone_errno;
    return -1;
  }
  sys::reap_pidfd(pidfd, WEXITED | __WALL);
  if (overlay_detached) *overlay_detached = job.overlay_detached;
  if (job.fd < 0) {
    errno = job.err ? job.err : EPROTO;
    return -1;
  }
  return job.fd;
#else
  (void)ns_flag;
  (void)entry;
  (void)overlay_detached;
  errno = ENOSYS;
  return -1;
#endif
}

int make_netns() { return namespace_by_helper(CLONE_NEWNET, netns_entry); }

int make_mnt_template(bool* overlay_detached) {
  int ovl = 0;
  int fd = namespace_by_helper(CLONE_NEWNS, template_entry, &ovl);
  *overlay_detached = fd >= 0 && ovl == 1;
  return fd;
}

int make_ipcns() { return namespace_by_helper(CLONE_NEWIPC, ipcns_entry); }

FinishResult finish_spawn(int err_fd, ErrorRecord* rec, bool allow_ready, int pidfd, pid_t pid) {
  size_t got = read_record(err_fd, rec);
  if (allow_ready && got == sizeof(*rec) && rec->magic == kErrorMagic && rec->step == STEP_READY) return FINISH_READY;
  close(err_fd);
  if (got == 0) return died_before_exec(pidfd, pid, rec) ? FINISH_FAILED : FINISH_EXECED;
  if (got != sizeof(*rec) || !plausible_failure(*rec)) protocol_error(rec, got);
  return FINISH_FAILED;
}

bool plausible_failure(const ErrorRecord& rec) {
  return rec.magic == kErrorMagic && rec.step > STEP_NONE && rec.step < STEP_COUNT && rec.step != STEP_ENTERED &&
         rec.step != STEP_READY && rec.err >= 0 && rec.err < 4096;
}

}  // namespace nsbox
