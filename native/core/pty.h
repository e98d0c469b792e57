// pty.h: the pty of a start with a terminal (app containers and machine exec alike), child path only.
#pragma once

#include "plan.h"

namespace nsbox {

// Sends fd over a unix socket (SCM_RIGHTS) with a one-byte payload; 0 or -1 with errno.
int send_fd(int sock, int fd);

// A pty of the devpts at /dev/pts of the current root (the container's own, or the machine's),
// its master sent to Node over sock, sized cols x rows when both are set. Returns the slave (not
// close-on-exec); fails the start (STEP_PTY) otherwise.
int open_pty(const Plan* plan, int sock, int err_fd, uint16_t cols, uint16_t rows);

// The slave as stdin, stdout and stderr (closed where it was elsewhere), then the controlling
// terminal of the session the caller leads (setsid came first).
void pty_stdio(const Plan* plan, int err_fd, int slave);

}  // namespace nsbox
