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
 *   defaults  as isolated, plus what nsbox's app container has by default, in nsbox's order and with
 *             its values (its child path, native/core/child.cc, in plain C): signal dispositions
 *             reset, a new session; a tmpfs /dev with its six nodes, five links, devpts and /dev/shm;
 *             /proc's sys, irq, bus and fs read-only, keys and timer_list masked with /dev/null,
 *             acpi with an empty read-only tmpfs; a tmpfs /tmp; the hostname; two rlimits; a fresh
 *             session keyring; the bounding set cut to CAPS; nsbox's own seccomp filter (the
 *             FILTER file); setgroups/setresgid/setresuid; capset; no_new_privs; pdeathsig; every
 *             other fd closed; and the exec through nsbox's trampoline binary (INIT). Still without
 *             a cgroup, pipes, the template's capture of the rootfs, or an event loop.
 *
 * Build: cc -O2 -o bench/.work/floor bench/floor.c
 * Usage: floor ROOTFS [INIT FILTER CAPS] < commands   (defaults needs the three: nsbox's nsbox-init,
 *        a file with its compiled seccomp filter, and the bounding set to keep as a hex mask)
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
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char* rootfs;
static char rootfs_true[4096];
static int netns_fd = -1;
static int isolated;
static int defaults;
static int init_fd = -1;
static struct sock_filter filter[4096];
static unsigned short filter_len;
static unsigned long long caps_keep;
static int cap_last = 40;
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
  if (defaults) {
    for (int sig = 1; sig < 65; sig++) {
      if (sig == SIGKILL || sig == SIGSTOP) continue;
      struct sigaction sa;
      memset(&sa, 0, sizeof(sa));
      sa.sa_handler = SIG_DFL;
      sigaction(sig, &sa, NULL);
    }
  }
  if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) _exit(120);
  if (defaults && setsid() < 0) _exit(100);
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) _exit(121);
  if (mount(rootfs, rootfs, NULL, MS_BIND, NULL) != 0) _exit(122);
  if (mount(NULL, rootfs, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0) _exit(123);
  if (chdir(rootfs) != 0) _exit(124);
  if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) _exit(125);
  if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k") != 0) _exit(126);
  if (defaults) {
    static const struct { const char* name; unsigned maj, min; } nodes[] = {
        {"dev/null", 1, 3}, {"dev/zero", 1, 5}, {"dev/full", 1, 7}, {"dev/random", 1, 8}, {"dev/urandom", 1, 9}, {"dev/tty", 5, 0}};
    static const char* links[][2] = {{"/proc/self/fd", "dev/fd"}, {"/proc/self/fd/0", "dev/stdin"},
                                      {"/proc/self/fd/1", "dev/stdout"}, {"/proc/self/fd/2", "dev/stderr"}, {"pts/ptmx", "dev/ptmx"}};
    for (unsigned i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
      if (mknod(nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)) != 0) _exit(101);
      if (chmod(nodes[i].name, 0666) != 0) _exit(101);
    }
    for (unsigned i = 0; i < sizeof(links) / sizeof(links[0]); i++)
      if (symlink(links[i][0], links[i][1]) != 0) _exit(102);
    if (mkdir("dev/pts", 0755) != 0 || mkdir("dev/shm", 01777) != 0) _exit(103);
    if (mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620") != 0) _exit(104);
    if (mount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") != 0) _exit(105);
    static const char* ro[] = {"proc/sys", "proc/irq", "proc/bus", "proc/fs"};
    for (unsigned i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
      if (mount(ro[i], ro[i], NULL, MS_BIND | MS_REC, NULL) != 0) continue;  // absent on this kernel
      if (mount(NULL, ro[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) _exit(106);
    }
    static const char* masked[] = {"proc/keys", "proc/timer_list"};
    for (unsigned i = 0; i < sizeof(masked) / sizeof(masked[0]); i++)
      if (access(masked[i], F_OK) == 0 && mount("dev/null", masked[i], NULL, MS_BIND, NULL) != 0) _exit(107);
    if (access("proc/acpi", F_OK) == 0 &&
        mount("tmpfs", "proc/acpi", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0") != 0) _exit(108);
    if (mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, NULL) != 0) _exit(109);
    if (sethostname("floor", 5) != 0) _exit(110);
  }
  if (chroot(".") != 0) _exit(127);
  if (!defaults) {
    execve("/bin/true", argv, envp);
    _exit(127);
  }
  if (chdir("/") != 0) _exit(111);
  struct rlimit nofile = {1024, 20000}, core = {0, 0};
  if (setrlimit(RLIMIT_NOFILE, &nofile) != 0 || setrlimit(RLIMIT_CORE, &core) != 0) _exit(112);
  if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0) _exit(113);
  for (int cap = 0; cap <= cap_last; cap++)
    if (!(caps_keep & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) _exit(114);
  struct sock_fprog prog = {filter_len, filter};
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) _exit(115);
  if (syscall(SYS_setgroups, 0, NULL) != 0 || syscall(SYS_setresgid, 0, 0, 0) != 0 || syscall(SYS_setresuid, 0, 0, 0) != 0) _exit(116);
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof(data));
  data[0].effective = data[0].permitted = (unsigned)caps_keep;
  data[1].effective = data[1].permitted = (unsigned)(caps_keep >> 32);
  if (syscall(SYS_capset, &hdr, data) != 0) _exit(117);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) _exit(117);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) _exit(118);
  if ((init_fd > 3 && syscall(SYS_close_range, 3, init_fd - 1, 0) != 0) || syscall(SYS_close_range, init_fd + 1, ~0U, 0) != 0) _exit(119);
  static char* const tramp[] = {"nsbox-init", "--exec", "2", "0", "--", "/bin/true", "true", NULL};
  syscall(SYS_execveat, init_fd, "", tramp, envp, AT_EMPTY_PATH);
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
  defaults = strcmp(mode, "defaults") == 0;
  if (defaults && init_fd < 0) return -99;
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
  if (argc != 2 && argc != 5) {
    fprintf(stderr, "usage: floor ROOTFS [INIT FILTER CAPS] < lines of plain|isolated|newnet|defaults\n");
    return 2;
  }
  rootfs = argv[1];
  if (argc == 5) {
    init_fd = open(argv[2], O_RDONLY);  // not close-on-exec: the child execs it by fd
    FILE* f = fopen(argv[3], "rb");
    if (init_fd < 0 || !f) {
      perror("floor: INIT or FILTER");
      return 2;
    }
    filter_len = (unsigned short)fread(filter, sizeof(filter[0]), sizeof(filter) / sizeof(filter[0]), f);
    fclose(f);
    caps_keep = strtoull(argv[4], NULL, 16);
    FILE* c = fopen("/proc/sys/kernel/cap_last_cap", "r");
    if (c) {
      if (fscanf(c, "%d", &cap_last) != 1) cap_last = 40;
      fclose(c);
    }
  }
  snprintf(rootfs_true, sizeof(rootfs_true), "%s/bin/true", rootfs);
  setvbuf(stdout, NULL, _IOLBF, 0);
  char line[64];
  while (fgets(line, sizeof(line), stdin)) {
    line[strcspn(line, "\n")] = 0;
    if (strcmp(line, "plain") && strcmp(line, "isolated") && strcmp(line, "newnet") && strcmp(line, "defaults")) {
      printf("error unknown mode %s\n", line);
      continue;
    }
    long long ns = once(line);
    if (ns < 0) printf("error %lld %s\n", -ns, strerror(errno));
    else printf("%lld\n", ns);
  }
  return 0;
}
