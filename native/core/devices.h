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

// A container's own devices (AppOptions.devices) added in front of the fixed list: a character or
// block device by number, with the accesses allowed (BPF_DEVCG_ACC_MKNOD 1 | READ 2 | WRITE 4).
struct ExtraDevice {
  bool block;
  unsigned major;
  unsigned minor;
  unsigned access;
};
constexpr int kMaxExtraDevices = 64;

// A program with the fixed list and `extra` (a new fd each call, O_CLOEXEC, owned by the caller),
// or -1 with errno. The JS thread only, never a child.
int device_policy_load(const ExtraDevice* extra, int n_extra);

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
