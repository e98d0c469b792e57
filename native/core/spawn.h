// spawn.h: the parent's side of starting a container.
#pragma once

#include <sys/types.h>

#include "plan.h"

namespace nsbox {

struct SpawnOutcome {
  pid_t pid = -1;
  int pidfd = -1;
  bool used_clone3 = false;
  int err_fd = -1;  // pooled (STEP_READY): the error pipe's read end, kept open for finish_spawn
  ErrorRecord error = {STEP_NONE, 0, -1, 0};  // step != STEP_NONE: failed, nothing left running
};

// Clones a child that runs `plan` and waits until it has exec'd or failed. On failure the child is
// already reaped and every fd made here is closed. Runs on the calling (JS) thread.
void spawn(const Plan& plan, SpawnOutcome* out);

// For a pooled container that has been given its command: waits for its exec (end-of-file, true)
// or reads its failure record (false, *rec filled). Closes err_fd either way.
bool finish_spawn(int err_fd, ErrorRecord* rec);

}  // namespace nsbox
