// child.h: the container process's side of the spawn (see child.cc for the rules it lives by).
#pragma once

#include "plan.h"

namespace nsbox {

// Runs the plan and execs; never returns. Only to be called in the freshly cloned child.
[[noreturn]] void child_main(const Plan* plan);

}  // namespace nsbox
