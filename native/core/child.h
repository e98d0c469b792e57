// child.h: the container process's side of the spawn (see child.cc for the rules it lives by).
#pragma once

#include "plan.h"

namespace nsbox {

// Runs the plan and execs; never returns. Only to be called in the freshly cloned child.
[[noreturn]] void child_main(const Plan* plan);

// The child of make_netns (spawn.h): fills job->fd (or job->err) and exits.
struct NetnsJob {
  int fd;
  int err;
};
[[noreturn]] void netns_child(NetnsJob* job);

struct TemplateJob {
  int fd;
  int err;
};
[[noreturn]] void mnt_template_child(TemplateJob* job);

}  // namespace nsbox
