// spawn.h: the parent's side of starting a container.
#pragma once

#include <sys/types.h>

#include "plan.h"

namespace nsbox {

struct SpawnOutcome {
  pid_t pid = -1;
  int pidfd = -1;
  bool used_clone3 = false;
  ErrorRecord error = {STEP_NONE, 0, -1, 0};  // step != STEP_NONE: failed, nothing left running
};

// Clones a child that runs `plan` and waits until it has exec'd or failed. On failure the child is
// already reaped and every fd made here is closed. Runs on the calling (JS) thread.
void spawn(const Plan& plan, SpawnOutcome* out);

}  // namespace nsbox
