// child.h: the container process's side of the spawn (see child.cc for the rules it lives by).
#pragma once

#include "plan.h"

namespace nsbox {

// Runs the plan and execs; never returns. Only to be called in the freshly cloned child.
[[noreturn]] void child_main(const Plan* plan);

// What a namespace-making helper child (spawn.cc, namespace_by_helper) reports: the fd it opened
// into the shared fd table, or the errno it failed with.
struct NsFdJob {
  int fd;
  int err;
  // mnt_template_child only: 1 if this kernel mounts an overlay whose upper (and lower) layer is a
  // detached mount (fsmount, open_tree), which an image's root in template mode needs (mount_in_template).
  int overlay_detached;
};
// The children of make_netns and make_mnt_template (spawn.h): fill job->fd (or job->err) and exit.
// A network namespace with lo up (the netns reserve).
[[noreturn]] void netns_child(NsFdJob* job);
// An IPC namespace (the IPC namespace reserve).
[[noreturn]] void ipcns_child(NsFdJob* job);
// The mount namespace template (child.cc, mount_in_template).
[[noreturn]] void mnt_template_child(NsFdJob* job);

// Inside the child path only (child.cc, mnt_template.cc): writes the failure record of (step,
// index) to err_fd and exits.
[[noreturn]] void fail(int err_fd, int32_t step, int32_t index, int err);
// A fault point of the child path (plan.h, fault_at): fails as (step, index) when the plan asks.
inline void fault(const Plan* plan, int err_fd, int32_t step, int32_t index) {
  if (fault_at(plan, step, index)) fail(err_fd, step, index, errno);
}
// The mount namespace from the template instead of CLONE_NEWNS (mnt_template.cc).
void mount_in_template(const Plan* plan, int err_fd);

}  // namespace nsbox
