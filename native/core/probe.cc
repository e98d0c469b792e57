// probe.cc: see probe.h.
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
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

}  // namespace nsbox
