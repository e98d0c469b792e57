// spawn.h: the parent's side of starting a container.
#pragma once

#include <sys/types.h>

#include "plan.h"

namespace nsbox {

struct SpawnOutcome {
  pid_t pid = -1;
  int pidfd = -1;
  bool used_clone3 = false;
  int err_fd = -1;  // pooled (STEP_READY) or waiting for id maps: the error pipe's read end, for finish_spawn
  bool waiting = false;  // the child waits for its user namespace's id maps: write them, then release it
  // Entering a machine: pid/pidfd are the new process (inside the machine), which has not exec'd
  // yet; err_fd is the error pipe, for finish_spawn (on the event loop: FinishWatch in native/glue/watchers.cc).
  bool entering = false;
  ErrorRecord error = {STEP_NONE, 0, -1, 0};  // step != STEP_NONE: failed, nothing left running
};

// Clones a child that runs `plan` and waits until it has exec'd or failed. On failure the child is
// already reaped and every fd made here is closed. Runs on the calling (JS) thread.
void spawn(const Plan& plan, SpawnOutcome* out);

// After a pooled container has been given its command, or a waiting child has been released:
// waits for its exec (end-of-file, FINISH_EXECED) or reads its failure record (FINISH_FAILED, *rec
// filled). Closes err_fd, except when allow_ready and the child reported STEP_READY (FINISH_READY:
// a pooled container that now waits for its command).
// pidfd/pid (-1: unknown) let end-of-file be told from a death before the exec (died_before_exec).
enum FinishResult { FINISH_FAILED = 0, FINISH_EXECED = 1, FINISH_READY = 2 };
FinishResult finish_spawn(int err_fd, ErrorRecord* rec, bool allow_ready, int pidfd = -1, pid_t pid = -1);

// End-of-file on the error pipe of (pidfd, pid): false if the process is running (it exec'd), or
// exited after its exec; true, with *rec a STEP_DIED record (index: the signal), if it has already
// exited still named kPreExecComm: killed (or OOM-killed) before its execve. Does not reap it.
bool died_before_exec(int pidfd, pid_t pid, ErrorRecord* rec);

// A record that can be a real failure: the magic, a step of the child path, an errno. Anything
// else read where a failure may be (a STEP_ENTERED or STEP_READY record, garbage) is EPROTO.
bool plausible_failure(const ErrorRecord& rec);

// What is read where a record should be but is not one (a short read, garbage): *rec becomes
// STEP_SYNC, EPROTO, index = the bytes read.
void protocol_error(ErrorRecord* rec, size_t got);

// A fresh network namespace with lo up, as an O_CLOEXEC fd (for Plan::net_fd), made by a short-lived
// vfork-style child that shares our fd table: the calling thread never enters it. -1 with errno on
// failure (ENOSYS where the vfork-style clone is not available).
int make_netns();

// A fresh IPC namespace (for Plan::ipc_fd), made the same way: no System V object and no POSIX
// message queue in it. -1 with errno on failure.
int make_ipcns();

// The mount namespace template of Plan::mnt_template_fd (mnt_template.cc, mnt_template_child): an O_CLOEXEC
// fd of a mount namespace whose only mount is an empty read-only tmpfs with a directory /r, made
// the same way as make_netns. -1 with errno on failure. *overlay_detached: whether this kernel
// mounts an overlay over detached layers (what an image's root needs in template mode).
int make_mnt_template(bool* overlay_detached);

}  // namespace nsbox
