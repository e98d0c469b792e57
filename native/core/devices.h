// devices.h: the device allow-list every container's cgroup gets (a BPF_CGROUP_DEVICE program),
// as runc and crun install on cgroup v2. nodev on the image's root keeps nodes that the image
// brought from opening; this also covers nodes made later (a machine keeps CAP_MKNOD) and any
// mount without nodev (/dev itself).
#pragma once

namespace nsbox {

// The program's fd (loaded once per process, O_CLOEXEC, kept for its life), or -1 with errno
// (EPERM without CAP_BPF/CAP_SYS_ADMIN, EINVAL or ENOSYS on a kernel without cgroup BPF). Called on
// the JS thread while plans are built, never in a child.
int device_policy_fd();

// Attaches it to a cgroup directory fd (BPF_F_ALLOW_MULTI: programs a machine's systemd attaches
// below it run too, and every program on the path must allow an access). 0, or -1 with errno.
int attach_device_policy(int cgroup_fd, int prog_fd);

// The allow-list, for docs and tests: character devices (major, minor; -1: any minor).
struct AllowedDevice {
  int major;
  int minor;
  const char* name;
};
extern const AllowedDevice kAllowedDevices[];
extern const int kNumAllowedDevices;

}  // namespace nsbox
