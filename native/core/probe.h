// probe.h: which of the system calls nsbox relies on this kernel (and any seccomp filter around
// us) actually answers. Each is called with arguments the kernel rejects early; ENOSYS means absent.
#pragma once

namespace nsbox {

struct SyscallReport {
  bool clone3;
  bool pidfd;
  bool close_range;
  bool openat2;
  bool new_mount_api;
  bool mount_setattr;
};

SyscallReport probe_syscalls();

// What a throwaway child could do (try_namespaces): the stage that stopped it and its errno.
enum TrialStage : int {
  TRIAL_OK = 0,
  TRIAL_CLONE3 = 1,         // clone3 with the namespace flags (the parent's call)
  TRIAL_CLONE = 2,          // clone, where clone3 answered ENOSYS (the parent's call)
  TRIAL_MOUNT_PRIVATE = 3,  // the child: mount(MS_REC | MS_PRIVATE) of /
  TRIAL_MOUNT_PROC = 4,     // the child: what the proc mode puts on /proc (in its own mount namespace)
  TRIAL_CGROUP = 5,         // the child: write "0" to the cgroup.procs fd it was given
  TRIAL_PIPE = 6,           // the parent: the report pipe
  TRIAL_PROTOCOL = 7,       // the child died without a report (EPROTO)
};
struct TrialResult {
  int stage;
  int err;
};

// Clones a short-lived child with `flags` (CLONE_NEW*), fork-style (a copy of our memory, every
// signal blocked: it never runs a Node handler), clone3 first and clone where clone3 is ENOSYS, as
// spawn does. The child, with raw system calls only: writes "0" to cgroup_procs_fd if >= 0 (joins
// that cgroup), then, with a proc mode other than TRIAL_PROC_NOTHING, makes its mount namespace
// private and mounts on /proc what a container of that mode gets there (flags should hold
// CLONE_NEWNS | CLONE_NEWPID), reports over a pipe and _exits. The calling process enters nothing
// and changes nothing; the child is reaped before this returns.
enum TrialProc : int {
  TRIAL_PROC_NOTHING = 0,  // no mount at all
  TRIAL_PROC_FRESH = 1,    // proc: 'fresh', a new procfs
  TRIAL_PROC_NONE = 2,     // proc: 'none', an empty read-only tmpfs
};
TrialResult try_namespaces(unsigned long flags, int proc_mode, int cgroup_procs_fd);

}  // namespace nsbox
