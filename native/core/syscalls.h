// syscalls.h: thin raw wrappers for the system calls glibc 2.36 does not wrap (or wraps with
// behaviour we do not want). All are async-signal-safe: they may be used between clone3 and execve.
#pragma once

#include <errno.h>
#include <linux/sched.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace nsbox {
namespace sys {

// struct clone_args as of Linux 5.7 (CLONE_ARGS_SIZE_VER2), declared here so that older UAPI headers
// still build.
struct CloneArgs {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
  uint64_t set_tid;
  uint64_t set_tid_size;
  uint64_t cgroup;
};

inline long clone3(CloneArgs* args) { return syscall(SYS_clone3, args, sizeof(*args)); }

#if defined(__x86_64__)
// clone3 with CLONE_VM | CLONE_VFORK: the child shares Node's address space instead of copying its
// page tables (the cost that dominates fork of a large process), runs fn(arg) on its own stack,
// and the calling thread sleeps until the child has exec'd or exited. The child branch never
// returns into C++ frames of the parent's stack, so this has to be a few lines of assembly.
inline long clone3_vm(CloneArgs* args, void (*fn)(void*), void* arg) {
  long ret;
  register long r12 asm("r12") = reinterpret_cast<long>(fn);
  register long r13 asm("r13") = reinterpret_cast<long>(arg);
  asm volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xor %%ebp, %%ebp\n\t"
      "mov %%r13, %%rdi\n\t"
      "call *%%r12\n\t"
      "ud2\n"
      "1:\n\t"
      : "=a"(ret)
      : "a"(static_cast<long>(SYS_clone3)), "D"(args), "S"(sizeof(*args)), "r"(r12), "r"(r13)
      : "rcx", "r11", "memory");
  if (ret < 0) {
    errno = static_cast<int>(-ret);
    return -1;
  }
  return ret;
}
#endif

// Legacy clone with a null stack behaves like fork; with CLONE_PIDFD the pidfd lands in *pidfd
// (the parent_tid slot, see clone(2)).
inline long clone_fork(unsigned long flags, int* pidfd) {
  return syscall(SYS_clone, flags | SIGCHLD, nullptr, pidfd, nullptr, nullptr);
}

inline int pivot_root(const char* new_root, const char* put_old) {
  return static_cast<int>(syscall(SYS_pivot_root, new_root, put_old));
}

// The new mount API (Linux 5.2; mount_setattr 5.12), for the mount namespace template (see
// mnt_template.cc, mount_in_template). Numbers and flags are the same on every architecture; declared here
// because <linux/mount.h> and glibc 2.36's <sys/mount.h> cannot be included together.
constexpr unsigned kOpenTreeClone = 1;           // OPEN_TREE_CLONE
constexpr unsigned kAtRecursive = 0x8000;        // AT_RECURSIVE
constexpr unsigned kMoveMountFEmptyPath = 0x04;  // MOVE_MOUNT_F_EMPTY_PATH
constexpr unsigned kMoveMountTEmptyPath = 0x40;  // MOVE_MOUNT_T_EMPTY_PATH
constexpr unsigned kFsopenCloexec = 1;           // FSOPEN_CLOEXEC
constexpr unsigned kFsconfigSetFlag = 0;         // FSCONFIG_SET_FLAG
constexpr unsigned kFsconfigSetString = 1;       // FSCONFIG_SET_STRING
constexpr unsigned kFsconfigCmdCreate = 6;       // FSCONFIG_CMD_CREATE
constexpr unsigned kFsmountCloexec = 1;          // FSMOUNT_CLOEXEC
constexpr uint64_t kMountAttrRdonly = 0x1, kMountAttrNosuid = 0x2, kMountAttrNodev = 0x4, kMountAttrNoexec = 0x8;
struct MountAttr {  // struct mount_attr (MOUNT_ATTR_SIZE_VER0)
  uint64_t attr_set;
  uint64_t attr_clr;
  uint64_t propagation;
  uint64_t userns_fd;
};

inline int open_tree(int dfd, const char* path, unsigned flags) {
  return static_cast<int>(syscall(428, dfd, path, flags));
}
inline int move_mount(int from_dfd, const char* from, int to_dfd, const char* to, unsigned flags) {
  return static_cast<int>(syscall(429, from_dfd, from, to_dfd, to, flags));
}
inline int fsopen(const char* fstype, unsigned flags) { return static_cast<int>(syscall(430, fstype, flags)); }
inline int fsconfig(int fd, unsigned cmd, const char* key, const void* value, int aux) {
  return static_cast<int>(syscall(431, fd, cmd, key, value, aux));
}
inline int fsmount(int fd, unsigned flags, unsigned attrs) { return static_cast<int>(syscall(432, fd, flags, attrs)); }
inline int mount_setattr(int dfd, const char* path, unsigned flags, MountAttr* attr) {
  return static_cast<int>(syscall(442, dfd, path, flags, attr, sizeof(*attr)));
}

inline int close_range(unsigned first, unsigned last, unsigned flags) {
  return static_cast<int>(syscall(SYS_close_range, first, last, flags));
}

inline int pidfd_open(pid_t pid, unsigned flags) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, flags));
}

inline int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// waitid with the fifth (rusage) argument that glibc's wrapper hides.
inline int waitid_rusage(int idtype, int id, siginfo_t* info, int options, struct rusage* ru) {
  return static_cast<int>(syscall(SYS_waitid, idtype, id, info, options, ru));
}

// The kernel's struct sigaction (not glibc's): used to reset every disposition, including the
// signals glibc reserves for itself.
struct KernelSigaction {
  void* handler;
  unsigned long flags;
  void* restorer;
  uint64_t mask;
};

inline int rt_sigaction_default(int sig) {
  KernelSigaction act = {};
  act.handler = nullptr;  // SIG_DFL
  return static_cast<int>(syscall(SYS_rt_sigaction, sig, &act, nullptr, sizeof(act.mask)));
}

inline int rt_sigprocmask(int how, const uint64_t* set, uint64_t* old) {
  return static_cast<int>(syscall(SYS_rt_sigprocmask, how, set, old, sizeof(uint64_t)));
}


// A system call retried for as long as it fails with EINTR: NSBOX_RETRY(read(fd, buf, n)). The
// expression is evaluated again each time (no allocation: usable between clone3 and execve).
template <typename F>
inline auto retry_eintr(F call) -> decltype(call()) {
  for (;;) {
    auto r = call();
    if (r != -1 || errno != EINTR) return r;
  }
}
#define NSBOX_RETRY(expr) ::nsbox::sys::retry_eintr([&]() { return (expr); })

// Reads until len bytes or end-of-file (or an error other than EINTR): the number of bytes read.
inline size_t read_full(int fd, void* buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = NSBOX_RETRY(read(fd, static_cast<char*>(buf) + got, len - got));
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

// Waits for the process of pidfd (waitid P_PIDFD with options: WEXITED, WNOHANG, WNOWAIT, ...).
inline int wait_pidfd(int pidfd, siginfo_t* si, int options) {
  return NSBOX_RETRY(waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), si, options));
}

// Reaps the exited (or exiting) process of pidfd and closes the pidfd.
inline void reap_pidfd(int pidfd, int options = WEXITED) {
  siginfo_t si;
  wait_pidfd(pidfd, &si, options);
  close(pidfd);
}

}  // namespace sys
}  // namespace nsbox
