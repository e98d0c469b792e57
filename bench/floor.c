/* floor.c: the kernel's own floor for the benchmark's round trip, with no Node and no runtime.
 *
 * A small server the benchmark starts once (as root) and keeps: for each line it reads on stdin
 * ("plain" or "isolated") it starts /bin/true of ROOTFS once and writes the elapsed nanoseconds, from
 * before the clone to after the wait, on stdout. It does only the system calls that the kind of
 * container needs, nothing else:
 *
 *   plain     vfork-style clone, execve(ROOTFS/bin/true), wait. No isolation: the floor under
 *             child_process.spawn('/bin/true').
 *   isolated  vfork-style clone into new mount, PID, UTS, IPC and cgroup namespaces; setns into a
 *             network namespace made beforehand (outside the timing, as nsbox's reserve does);
 *             the host's mounts made private; ROOTFS bound read-only (bind + remount), /proc and
 *             a tmpfs /dev mounted on it; chroot; execve("/bin/true"); wait (its exit tears the
 *             namespaces down). What any runtime giving that isolation on that root must do; it
 *             has no /dev nodes, /dev/pts, /dev/shm, /tmp, masked /proc paths, seccomp filter,
 *             capability drop, exec trampoline, cgroup, pipes or event loop, which nsbox has.
 *   newnet    as isolated, with CLONE_NEWNET in the clone instead (the namespace made on the path).
 *
 * Build: cc -O2 -o bench/.work/floor bench/floor.c      Usage: floor ROOTFS < commands
 * bench/index.js builds and runs it as the "floor" rows of the round trip (section 1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char* rootfs;
static char rootfs_true[4096];
static int netns_fd = -1;
static int isolated;
static char stack[256 * 1024] __attribute__((aligned(16)));

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* In the child (sharing our memory until execve): only system calls, _exit(127) on failure. */
static int child(void* arg) {
  (void)arg;
  static char* const argv[] = {"true", NULL};
  static char* const envp[] = {"PATH=/bin", NULL};
  if (!isolated) {
    execve(rootfs_true, argv, envp);
    _exit(127);
  }
  if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) _exit(120);
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) _exit(121);
  if (mount(rootfs, rootfs, NULL, MS_BIND, NULL) != 0) _exit(122);
  if (mount(NULL, rootfs, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0) _exit(123);
  if (chdir(rootfs) != 0) _exit(124);
  if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) _exit(125);
  if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k") != 0) _exit(126);
  if (chroot(".") != 0) _exit(127);
  execve("/bin/true", argv, envp);
  _exit(127);
}

/* A network namespace of our own, made outside the timing; we go back to ours at once. */
static int make_netns(void) {
  int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0 || unshare(CLONE_NEWNET) != 0) return -1;
  int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (setns(self, CLONE_NEWNET) != 0) {
    perror("floor: setns back");
    exit(1);
  }
  close(self);
  return fd;
}

static long long once(const char* mode) {
  int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
  isolated = strcmp(mode, "plain") != 0;
  if (isolated) flags |= CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
  if (strcmp(mode, "newnet") == 0) flags |= CLONE_NEWNET;
  else if (isolated && (netns_fd = make_netns()) < 0) return -1;
  long long t0 = now_ns();
  pid_t pid = clone(child, stack + sizeof(stack), flags, NULL);
  if (pid < 0) return -1;
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  long long t1 = now_ns();
  if (netns_fd >= 0) close(netns_fd);
  netns_fd = -1;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return -(WIFEXITED(st) ? WEXITSTATUS(st) : 200 + WTERMSIG(st));
  return t1 - t0;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: floor ROOTFS < lines of plain|isolated|newnet\n");
    return 2;
  }
  rootfs = argv[1];
  snprintf(rootfs_true, sizeof(rootfs_true), "%s/bin/true", rootfs);
  setvbuf(stdout, NULL, _IOLBF, 0);
  char line[64];
  while (fgets(line, sizeof(line), stdin)) {
    line[strcspn(line, "\n")] = 0;
    if (strcmp(line, "plain") && strcmp(line, "isolated") && strcmp(line, "newnet")) {
      printf("error unknown mode %s\n", line);
      continue;
    }
    long long ns = once(line);
    if (ns < 0) printf("error %lld %s\n", -ns, strerror(errno));
    else printf("%lld\n", ns);
  }
  return 0;
}
