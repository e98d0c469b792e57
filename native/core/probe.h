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

}  // namespace nsbox
