// pty.cc: the pty of a start with a terminal. Child path rules (child.cc): raw system calls over the
// plan only, no allocation, no locks, no exceptions.
//
// The pty comes from the devpts at /dev/pts of the root the process is in: for an app container
// the new instance its own mount ops put there (never the host's /dev/pts, which is not in its
// mount namespace), for a machine exec the machine's. What /dev/ptmx is does not matter: the image
// (or a running machine) may have made it anything, a link to the host's ptmx or a device node
// whose sibling "pts" is another devpts. /dev/pts is resolved beneath the root without magic links
// (a link planted there stays inside), must be a devpts (fstatfs), and "ptmx" is opened in that
// directory itself; the slave is the master's peer (TIOCGPTPEER), never looked up by name. Node
// checks again what it receives (lib/stdio.ts, receivePty).
#include "pty.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "child.h"
#include "fsops.h"
#include "steps.h"
#include "syscalls.h"

namespace nsbox {

namespace {
constexpr long kDevptsSuperMagic = 0x1cd1;  // DEVPTS_SUPER_MAGIC (linux/magic.h)
}  // namespace

int send_fd(int sock, int fd) {
  char byte = 'p';
  struct iovec iov = {&byte, 1};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  for (size_t i = 0; i < sizeof(u.buf); i++) u.buf[i] = 0;
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = sizeof(u.buf);
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  *reinterpret_cast<int*>(CMSG_DATA(c)) = fd;
  ssize_t n = NSBOX_RETRY(sendmsg(sock, &msg, MSG_NOSIGNAL));
  return n == 1 ? 0 : -1;
}

int open_pty(const Plan* plan, int sock, int err_fd, uint16_t cols, uint16_t rows) {
  fault(plan, err_fd, STEP_PTY, PTY_PTS_DIR);
  int pts = open_beneath_root("/dev/pts", O_PATH | O_DIRECTORY);
  if (pts < 0) fail(err_fd, STEP_PTY, PTY_PTS_DIR, errno);
  struct statfs sfs;
  fault(plan, err_fd, STEP_PTY, PTY_DEVPTS);
  if (fstatfs(pts, &sfs) != 0) fail(err_fd, STEP_PTY, PTY_DEVPTS, errno);
  if (static_cast<long>(sfs.f_type) != kDevptsSuperMagic) fail(err_fd, STEP_PTY, PTY_DEVPTS, ENODEV);
  fault(plan, err_fd, STEP_PTY, PTY_OPEN);
  int master = openat(pts, "ptmx", O_RDWR | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
  if (master < 0) fail(err_fd, STEP_PTY, PTY_OPEN, errno);
  close(pts);
  int unlock = 0;
  fault(plan, err_fd, STEP_PTY, PTY_UNLOCK);
  if (ioctl(master, TIOCSPTLCK, &unlock) != 0) fail(err_fd, STEP_PTY, PTY_UNLOCK, errno);
  if (cols && rows) {
    struct winsize ws = {};
    ws.ws_col = cols;
    ws.ws_row = rows;
    fault(plan, err_fd, STEP_PTY, PTY_WINSIZE);
    if (ioctl(master, TIOCSWINSZ, &ws) != 0) fail(err_fd, STEP_PTY, PTY_WINSIZE, errno);
  }
  fault(plan, err_fd, STEP_PTY, PTY_PEER);
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
  if (slave < 0) fail(err_fd, STEP_PTY, PTY_PEER, errno);
  fault(plan, err_fd, STEP_PTY, PTY_SEND);
  if (send_fd(sock, master) != 0) fail(err_fd, STEP_PTY, PTY_SEND, errno);
  close(master);
  return slave;
}

void pty_stdio(const Plan* plan, int err_fd, int slave) {
  for (int i = 0; i < 3; i++) {
    if (slave == i) continue;  // (TIOCGPTPEER without O_CLOEXEC: it stays open across execve)
    fault(plan, err_fd, STEP_STDIO, STDIO_DUP + i);
    if (dup2(slave, i) < 0) fail(err_fd, STEP_STDIO, STDIO_DUP + i, errno);
  }
  if (slave > 2) close(slave);
  fault(plan, err_fd, STEP_PTY, PTY_CTTY);
  if (ioctl(0, TIOCSCTTY, 0) != 0) fail(err_fd, STEP_PTY, PTY_CTTY, errno);
}

}  // namespace nsbox
