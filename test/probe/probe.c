/*
 * probe.c - a static helper that nsbox's tests run INSIDE containers.
 *
 * It reports what the process can see and do (ids, fds, caps, mounts, network,
 * limits...) as JSON on stdout, and offers small behaviours (exit codes,
 * signals, orphans, stdin copy, busy loop...) for lifecycle tests. Built static
 * so it runs in any rootfs:
 *   gcc -O2 -static -Wall -Wextra -o build/probe test/probe/probe.c
 *
 * Subcommands: info | try-write PATH | try-mount SRC TGT FSTYPE | try-mknod PATH
 *   | spawn-orphans N SECONDS | pids-of NAME | exit N | kill-self SIGNUM
 *   | sleep SECONDS | cat | spin SECONDS | spin-cpu SECONDS (until it has used that much CPU time)
 *   | count-forever PATH
 *   | connect tcp|udp ADDR PORT (IPv4; a UDP "connect" also sends one datagram)
 *   | chroot-escape DIR (the classic escape: chroot into DIR, climb "..", chroot there; then
 *     report what "/" holds and whether a directory can be made in it)
 *   | ipc (counts the System V message queues, shared memory segments and semaphore sets this
 *     IPC namespace holds, then makes a message queue with a fixed key and leaves it there:
 *     {"msg":N,"shm":N,"sem":N,"ns":"ipc:[...]","made":ID})
 *   | tty (its terminal: isatty of 0..2, what fd 0 is, the controlling terminal, the size, the
 *     devpts at /dev/pts and what it holds, and TIOCSTI's answer, as one line of JSON)
 * Unknown subcommand or bad arguments: message on stderr, exit 2.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <pthread.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/keyctl.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---------------------------------------------------------------- helpers */

static void usage(const char *msg)
{
	fprintf(stderr, "probe: %s\n", msg);
	exit(2);
}

/* JSON string: escape quote, backslash and control chars; bytes >= 0x80 pass. */
static void jstr_n(const char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void jstr(const char *s)
{
	if (s)
		jstr_n(s, strlen(s));
	else
		fputs("null", stdout);
}

static void key(int *first, const char *k)
{
	if (!*first)
		putchar(',');
	*first = 0;
	jstr(k);
	putchar(':');
}

static const char *errno_name(int e)
{
	switch (e) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case EROFS: return "EROFS";
	case EEXIST: return "EEXIST";
	case EISDIR: return "EISDIR";
	case ENOSPC: return "ENOSPC";
	case EINVAL: return "EINVAL";
	case EBUSY: return "EBUSY";
	case ENOTDIR: return "ENOTDIR";
	case ENOSYS: return "ENOSYS";
	case EFAULT: return "EFAULT";
	case ENXIO: return "ENXIO";
	case ENODEV: return "ENODEV";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ELOOP: return "ELOOP";
	case ENOMEM: return "ENOMEM";
	case EXDEV: return "EXDEV";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENETUNREACH: return "ENETUNREACH";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EINPROGRESS: return "EINPROGRESS";
	default: return "E?";
	}
}

/* Print {"ok":true} or {"ok":false,"errno":N,"code":"E..."} and exit 0. */
static int result(int rc)
{
	if (rc == 0)
		printf("{\"ok\":true}\n");
	else
		printf("{\"ok\":false,\"errno\":%d,\"code\":\"%s\"}\n", rc, errno_name(rc));
	return 0;
}

/* Read a whole file into a malloc'd NUL-terminated buffer (NULL on error). */
static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 4096, n = 0;
	char *buf;
	if (fd < 0)
		return NULL;
	buf = malloc(cap + 1);
	for (;;) {
		ssize_t r;
		if (n == cap)
			buf = realloc(buf, (cap *= 2) + 1);
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			close(fd);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}

static int is_number(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

/* Numeric entries of /proc, sorted; if name != NULL only those whose comm matches. */
static void print_pids(const char *name)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	long *pids = NULL;
	size_t n = 0, cap = 0;
	putchar('[');
	if (d) {
		while ((e = readdir(d))) {
			if (!is_number(e->d_name))
				continue;
			if (name) {
				char p[300], *comm;
				snprintf(p, sizeof p, "/proc/%s/comm", e->d_name);
				if (!(comm = slurp(p, NULL)))
					continue;
				comm[strcspn(comm, "\n")] = 0;
				int match = strcmp(comm, name) == 0;
				free(comm);
				if (!match)
					continue;
			}
			if (n == cap)
				pids = realloc(pids, (cap = cap ? cap * 2 : 64) * sizeof *pids);
			pids[n++] = atol(e->d_name);
		}
		closedir(d);
	}
	qsort(pids, n, sizeof *pids, cmp_long);
	for (size_t i = 0; i < n; i++)
		printf("%s%ld", i ? "," : "", pids[i]);
	putchar(']');
	free(pids);
}

static double parse_seconds(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || v < 0)
		usage("bad SECONDS");
	return v;
}

static void sleep_seconds(double secs)
{
	struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------- info */

static void print_rlimit(int *first, const char *k, int res)
{
	struct rlimit rl;
	key(first, k);
	if (getrlimit(res, &rl) < 0) {
		fputs("null", stdout);
		return;
	}
	printf("[%lld,%lld]",
	       rl.rlim_cur == RLIM_INFINITY ? -1LL : (long long)rl.rlim_cur,
	       rl.rlim_max == RLIM_INFINITY ? -1LL : (long long)rl.rlim_max);
}

static void print_status(int *first)
{
	static const char *const keys[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
					   "NoNewPrivs", "Seccomp", "SigBlk", "SigIgn", "SigCgt"};
	char *st = slurp("/proc/self/status", NULL);
	int f = 1;
	key(first, "status");
	putchar('{');
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
		const char *v = NULL;
		size_t vlen = 0, kl = strlen(keys[i]);
		for (char *line = st; line && *line;) {
			char *nl = strchr(line, '\n');
			size_t ll = nl ? (size_t)(nl - line) : strlen(line);
			if (ll > kl && strncmp(line, keys[i], kl) == 0 && line[kl] == ':') {
				v = line + kl + 1;
				while (*v == ' ' || *v == '\t')
					v++;
				vlen = (size_t)(line + ll - v);
				break;
			}
			line = nl ? nl + 1 : NULL;
		}
		key(&f, keys[i]);
		if (v)
			jstr_n(v, vlen);
		else
			fputs("null", stdout);
	}
	putchar('}');
	free(st);
}

static void print_fds(int *first)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long *fds = NULL;
	size_t n = 0, cap = 0;
	key(first, "fds");
	putchar('[');
	if (d) {
		int self = dirfd(d);
		while ((e = readdir(d))) {
			if (!is_number(e->d_name) || atoi(e->d_name) == self)
				continue;
			if (n == cap)
				fds = realloc(fds, (cap = cap ? cap * 2 : 64) * sizeof *fds);
			fds[n++] = atol(e->d_name);
		}
		closedir(d);
	}
	qsort(fds, n, sizeof *fds, cmp_long);
	for (size_t i = 0; i < n; i++)
		printf("%s%ld", i ? "," : "", fds[i]);
	putchar(']');
	free(fds);
}

static void print_net(int *first)
{
	char *dev = slurp("/proc/net/dev", NULL);
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int f = 1, lineno = 0;
	key(first, "net");
	putchar('[');
	for (char *line = dev; line && *line; lineno++) {
		char *nl = strchr(line, '\n'), *colon;
		if (nl)
			*nl = 0;
		/* two header lines, then "  name: counters..." */
		if (lineno >= 2 && (colon = strchr(line, ':'))) {
			char *name = line;
			*colon = 0;
			while (*name == ' ')
				name++;
			if (!f)
				putchar(',');
			f = 0;
			printf("{\"name\":");
			jstr(name);
			printf(",\"up\":");
			struct ifreq ifr;
			memset(&ifr, 0, sizeof ifr);
			snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
			if (sock < 0)
				fputs("null", stdout);
			else if (ioctl(sock, SIOCGIFFLAGS, &ifr) == 0)
				fputs(ifr.ifr_flags & IFF_UP ? "true" : "false", stdout);
			else
				fputs("null", stdout); /* interface vanished meanwhile */
			putchar('}');
		}
		line = nl ? nl + 1 : NULL;
	}
	putchar(']');
	if (sock >= 0)
		close(sock);
	free(dev);
}

static int cmd_info(const char *argv0)
{
	int first = 1;
	char buf[PATH_MAX + 1];
	putchar('{');

	key(&first, "pid"); printf("%d", (int)getpid());
	key(&first, "ppid"); printf("%d", (int)getppid());
	key(&first, "uid"); printf("%u", (unsigned)getuid());
	key(&first, "gid"); printf("%u", (unsigned)getgid());
	key(&first, "euid"); printf("%u", (unsigned)geteuid());
	key(&first, "egid"); printf("%u", (unsigned)getegid());

	key(&first, "groups");
	{
		gid_t g[NGROUPS_MAX];
		int n = getgroups(NGROUPS_MAX, g);
		putchar('[');
		for (int i = 0; i < n; i++)
			printf("%s%u", i ? "," : "", (unsigned)g[i]);
		putchar(']');
	}

	key(&first, "sid"); printf("%d", (int)getsid(0));
	key(&first, "pgid"); printf("%d", (int)getpgid(0));

	key(&first, "hostname");
	if (gethostname(buf, sizeof buf - 1) == 0) {
		buf[sizeof buf - 1] = 0;
		jstr(buf);
	} else {
		fputs("null", stdout);
	}

	key(&first, "cwd");
	jstr(getcwd(buf, sizeof buf));

	key(&first, "env");
	{
		int f = 1;
		putchar('{');
		for (char **e = environ; e && *e; e++) {
			char *eq = strchr(*e, '=');
			if (!f)
				putchar(',');
			f = 0;
			if (eq) {
				jstr_n(*e, (size_t)(eq - *e));
				putchar(':');
				jstr(eq + 1);
			} else {
				jstr(*e);
				fputs(":\"\"", stdout);
			}
		}
		putchar('}');
	}

	key(&first, "argv0"); jstr(argv0);
	print_fds(&first);
	print_status(&first);
	print_rlimit(&first, "nofile", RLIMIT_NOFILE);
	print_rlimit(&first, "core", RLIMIT_CORE);
	key(&first, "pids"); print_pids(NULL);
	print_net(&first);
	{
		/* "net:[inode]": which network namespace this is (distinct per container) */
		char ns[64];
		ssize_t r = readlink("/proc/self/ns/net", ns, sizeof ns - 1);
		key(&first, "netns");
		if (r > 0) {
			ns[r] = 0;
			jstr(ns);
		} else {
			jstr(NULL);
		}
	}

	key(&first, "umask");
	{
		mode_t m = umask(0);
		umask(m);
		printf("%u", (unsigned)m);
	}

	key(&first, "proc_sys_writable");
	{
		int fd = open("/proc/sys/kernel/hostname", O_WRONLY | O_CLOEXEC);
		fputs(fd >= 0 ? "true" : "false", stdout);
		if (fd >= 0)
			close(fd);
	}

	key(&first, "root_writable");
	{
		char p[64];
		snprintf(p, sizeof p, "/.nsbox-probe-%d", (int)getpid());
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0) {
			close(fd);
			unlink(p);
		}
		fputs(fd >= 0 ? "true" : "false", stdout);
	}

	key(&first, "mountinfo");
	{
		size_t n = 0;
		char *mi = slurp("/proc/self/mountinfo", &n);
		if (mi)
			jstr_n(mi, n);
		else
			fputs("null", stdout);
		free(mi);
	}

	key(&first, "session_keyring");
	{
		long r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
		printf("%ld", r < 0 ? -(long)errno : r);
	}

	key(&first, "dumpable"); printf("%d", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));

	puts("}");
	return 0;
}

/* ---------------------------------------------------------- other actions */

static int cmd_try_write(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return result(errno);
	int rc = write(fd, "x", 1) == 1 ? 0 : (errno ? errno : EIO);
	close(fd);
	return result(rc);
}

static int cmd_spawn_orphans(long n, double secs)
{
	for (long i = 0; i < n; i++) {
		pid_t c = fork();
		if (c < 0) {
			perror("probe: fork");
			return 1;
		}
		if (c == 0) {
			if (fork() == 0) {
				/* Grandchild: detach from our stdio so readers of the
				 * probe's output see EOF when the probe itself exits. */
				int dn = open("/dev/null", O_RDWR);
				if (dn >= 0) {
					dup2(dn, 0);
					dup2(dn, 1);
					dup2(dn, 2);
				}
				sleep_seconds(secs);
			}
			_exit(0); /* the middle child exits: grandchild is orphaned */
		}
		while (waitpid(c, NULL, 0) < 0 && errno == EINTR)
			;
	}
	printf("{\"spawned\":%ld}\n", n);
	fflush(stdout);
	sleep_seconds(secs * 2);
	return 0;
}

static int cmd_kill_self(int sig)
{
	sigset_t set;
	signal(sig, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	fflush(stdout);
	raise(sig);
	return 99;
}

/*
 * chroot(DIR) with the working directory left outside it, then ".." far enough to reach the top of
 * the mount namespace, chroot(".") there. Reports {"ok":true,"entries":[...],"mkdir":errno} of
 * the "/" reached, or {"ok":false,...} when a step is refused.
 */
static int cmd_chroot_escape(const char *dir)
{
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return result(errno);
	if (chroot(dir) != 0)
		return result(errno);
	for (int i = 0; i < 64; i++)
		if (chdir("..") != 0)
			return result(errno);
	if (chroot(".") != 0)
		return result(errno);
	DIR *d = opendir("/");
	if (!d)
		return result(errno);
	printf("{\"ok\":true,\"entries\":[");
	struct dirent *e;
	int first = 1;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		printf("%s\"%s\"", first ? "" : ",", e->d_name);
		first = 0;
	}
	closedir(d);
	int mk = mkdir("/nsbox-escape-probe", 0755) == 0 ? 0 : errno;
	if (mk == 0)
		rmdir("/nsbox-escape-probe");
	printf("],\"mkdir\":%d}\n", mk);
	return 0;
}

static int cmd_cat(void)
{
	static char buf[65536];
	for (;;) {
		ssize_t r = read(0, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			perror("probe: read");
			return 1;
		}
		if (r == 0)
			return 0;
		for (ssize_t off = 0; off < r;) {
			ssize_t w = write(1, buf + off, (size_t)(r - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				perror("probe: write");
				return 1;
			}
			off += w;
		}
	}
}

static int cmd_spin(double secs)
{
	unsigned long long it = 0;
	double end = now_mono() + secs;
	volatile unsigned long sink = 0;
	while (now_mono() < end) {
		for (int i = 0; i < 1000; i++)
			sink += (unsigned long)i;
		it++;
	}
	printf("{\"iterations\":%llu}\n", it);
	return 0;
}

/* Spins until this process has used secs of CPU time, however busy the host is. */
static int cmd_spin_cpu(double secs)
{
	struct timespec ts;
	volatile unsigned long sink = 0;
	for (;;) {
		for (int i = 0; i < 100000; i++)
			sink += (unsigned long)i;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
		if (ts.tv_sec + ts.tv_nsec / 1e9 >= secs)
			break;
	}
	printf("{\"cpu\":%.3f}\n", ts.tv_sec + ts.tv_nsec / 1e9);
	return 0;
}

static int cmd_count_forever(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror("probe: open");
		return 1;
	}
	for (unsigned long long n = 0;; n++) {
		char b[32];
		int len = snprintf(b, sizeof b, "%llu", n);
		if (pwrite(fd, b, (size_t)len, 0) != len || ftruncate(fd, len) < 0) {
			perror("probe: write");
			return 1;
		}
		sleep_seconds(0.01);
	}
}

static long parse_long(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || errno)
		usage(what);
	return v;
}

/* hog MB: allocate and touch MB mebibytes, one at a time; prints how far it got. */
static int cmd_hog(long mb)
{
	long i;
	for (i = 0; i < mb; i++) {
		char *p = malloc(1 << 20);
		if (!p)
			break;
		memset(p, 0x5a, 1 << 20);
	}
	printf("{\"touched_mb\":%ld}\n", i);
	return 0;
}

/* forkbomb SECONDS: fork until the kernel says no, children sleep; prints the count. */
static int cmd_forkbomb(double secs)
{
	long made = 0;
	int last = 0;
	for (;;) {
		pid_t p = fork();
		if (p == 0) {
			sleep_seconds(secs);
			_exit(0);
		}
		if (p < 0) {
			last = errno;
			break;
		}
		made++;
	}
	printf("{\"forked\":%ld,\"errno\":%d}\n", made, last);
	fflush(stdout);
	sleep_seconds(secs);
	return 0;
}

static void *thread_sleep(void *arg)
{
	sleep_seconds(*(double *)arg);
	return NULL;
}

/* threadbomb SECONDS: create threads until the kernel says no; prints the count. */
static int cmd_threadbomb(double secs)
{
	long made = 0;
	int rc;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (;;) {
		pthread_t t;
		rc = pthread_create(&t, &attr, thread_sleep, &secs);
		if (rc)
			break;
		made++;
	}
	printf("{\"threads\":%ld,\"errno\":%d}\n", made, rc);
	fflush(stdout);
	sleep_seconds(secs);
	return 0;
}

/* connect(2) to ADDR:PORT with a 5 s bound (SO_SNDTIMEO), and for UDP one send(2): reports the
 * errno the kernel gives, so that tests see what a client inside sees. */
static int cmd_connect(const char *proto, const char *addr, const char *port)
{
	int udp = !strcmp(proto, "udp");
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)parse_long(port, "bad PORT"));
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "probe: bad ADDR %s\n", addr);
		return 2;
	}
	int s = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
	if (s < 0)
		return result(errno);
	struct timeval tv = {5, 0};
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	int rc = connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
	if (rc == 0 && udp && send(s, "x", 1, 0) < 0)
		rc = errno;
	close(s);
	return result(rc == EINPROGRESS ? ETIMEDOUT : rc);
}

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;
	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		if (c == '\n')
			n++;
	fclose(f);
	return n > 0 ? n - 1 : 0; /* the first line is the header */
}

static int cmd_ipc(void)
{
	char ns[64] = "";
	ssize_t l = readlink("/proc/self/ns/ipc", ns, sizeof(ns) - 1);
	ns[l > 0 ? l : 0] = 0;
	int msg = count_lines("/proc/sysvipc/msg");
	int shm = count_lines("/proc/sysvipc/shm");
	int sem = count_lines("/proc/sysvipc/sem");
	int id = msgget(0x6e736278, IPC_CREAT | 0600);
	printf("{\"msg\":%d,\"shm\":%d,\"sem\":%d,\"ns\":\"%s\",\"made\":%d}\n", msg, shm, sem, ns, id);
	return id < 0 ? 1 : 0;
}

static int cmd_tty(void)
{
	char link[256] = "";
	ssize_t l = readlink("/proc/self/fd/0", link, sizeof(link) - 1);
	if (l > 0)
		link[l] = 0;
	struct stat s0, s1, s2, pts;
	int st0 = fstat(0, &s0), st1 = fstat(1, &s1), st2 = fstat(2, &s2);
	int same = st0 == 0 && st1 == 0 && st2 == 0 && s0.st_rdev == s1.st_rdev && s0.st_rdev == s2.st_rdev;
	int pts_ok = stat("/dev/pts", &pts) == 0;
	struct statfs sfs;
	int devpts = statfs("/dev/pts", &sfs) == 0 && sfs.f_type == 0x1cd1;
	/* The controlling terminal: tty_nr of /proc/self/stat (the 7th field), in the kernel's
	 * new_encode_dev form; and /dev/tty opens (it is the controlling terminal, whatever it is). */
	unsigned tty_nr = 0;
	FILE *f = fopen("/proc/self/stat", "r");
	if (f) {
		char buf[512];
		size_t k = fread(buf, 1, sizeof(buf) - 1, f);
		buf[k] = 0;
		fclose(f);
		char *p = strrchr(buf, ')');
		int ppid_, pgrp_, sess_;
		char state_;
		if (p)
			sscanf(p + 2, "%c %d %d %d %u", &state_, &ppid_, &pgrp_, &sess_, &tty_nr);
	}
	unsigned mj = st0 == 0 ? major(s0.st_rdev) : 0, mn = st0 == 0 ? minor(s0.st_rdev) : 0;
	int ctty_same = tty_nr != 0 && tty_nr == ((mj << 8) | (mn & 0xff) | ((mn & ~0xffu) << 12));
	int t = open("/dev/tty", O_RDWR | O_NOCTTY);
	int ctty_err = t < 0 ? errno : 0;
	if (t >= 0)
		close(t);
	struct winsize ws = {0};
	int ws_ok = ioctl(0, TIOCGWINSZ, &ws) == 0;
	char c = 'x';
	int sti = ioctl(0, TIOCSTI, &c) == 0 ? 0 : errno;
	printf("{\"isatty\":[%d,%d,%d],\"fd0\":\"%s\",\"sameTty\":%s,\"ttyMajor\":%u,\"ttyOnDevpts\":%s,\"devpts\":%s,"
	       "\"cttySame\":%s,\"cttyErrno\":%d,\"sid\":%d,\"pid\":%d,\"ttySid\":%d,\"fgPgrp\":%d,\"pgrp\":%d,"
	       "\"cols\":%d,\"rows\":%d,\"tiocsti\":%d,\"pts\":[",
	       isatty(0), isatty(1), isatty(2), link, same ? "true" : "false", st0 == 0 ? major(s0.st_rdev) : 0,
	       st0 == 0 && pts_ok && s0.st_dev == pts.st_dev ? "true" : "false", devpts ? "true" : "false",
	       ctty_same ? "true" : "false", ctty_err, (int)getsid(0), (int)getpid(), (int)tcgetsid(0), (int)tcgetpgrp(0), (int)getpgrp(),
	       ws_ok ? ws.ws_col : -1, ws_ok ? ws.ws_row : -1, sti);
	DIR *d = opendir("/dev/pts");
	struct dirent *e;
	int first = 1;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		printf("%s\"%s\"", first ? "" : ",", e->d_name);
		first = 0;
	}
	if (d)
		closedir(d);
	printf("]}\n");
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	int n = argc - 2; /* number of subcommand arguments */
	char **a = argv + 2;

	if (!strcmp(cmd, "info") && n == 0)
		return cmd_info(argv[0]);
	if (!strcmp(cmd, "try-write") && n == 1)
		return cmd_try_write(a[0]);
	if (!strcmp(cmd, "try-mount") && n == 3)
		return result(mount(a[0], a[1], a[2], 0, NULL) == 0 ? 0 : errno);
	if (!strcmp(cmd, "ipc") && n == 0)
		return cmd_ipc();
	if (!strcmp(cmd, "tty") && n == 0)
		return cmd_tty();
	if (!strcmp(cmd, "chroot-escape") && n == 1)
		return cmd_chroot_escape(a[0]);
	if (!strcmp(cmd, "try-mknod") && n == 1)
		return result(mknod(a[0], S_IFCHR | 0666, makedev(1, 3)) == 0 ? 0 : errno);
	if (!strcmp(cmd, "spawn-orphans") && n == 2)
		return cmd_spawn_orphans(parse_long(a[0], "bad N"), parse_seconds(a[1]));
	if (!strcmp(cmd, "pids-of") && n == 1) {
		print_pids(a[0]);
		putchar('\n');
		return 0;
	}
	if (!strcmp(cmd, "exit") && n == 1)
		return (int)parse_long(a[0], "bad exit code");
	if (!strcmp(cmd, "rename") && n == 2) {
		/* rename NAME SECONDS: call itself NAME (prctl PR_SET_NAME), print "ran", stay SECONDS. */
		prctl(PR_SET_NAME, a[0], 0, 0, 0);
		write(1, "ran\n", 4);
		sleep_seconds(parse_seconds(a[1]));
		return 0;
	}
	if (!strcmp(cmd, "kill-self") && n == 1)
		return cmd_kill_self((int)parse_long(a[0], "bad SIGNUM"));
	if (!strcmp(cmd, "sleep") && n == 1) {
		sleep_seconds(parse_seconds(a[0]));
		return 0;
	}
	if (!strcmp(cmd, "cat") && n == 0)
		return cmd_cat();
	if (!strcmp(cmd, "spin") && n == 1)
		return cmd_spin(parse_seconds(a[0]));
	if (!strcmp(cmd, "spin-cpu") && n == 1)
		return cmd_spin_cpu(parse_seconds(a[0]));
	if (!strcmp(cmd, "count-forever") && n == 1)
		return cmd_count_forever(a[0]);
	if (!strcmp(cmd, "hog") && n == 1)
		return cmd_hog(parse_long(a[0], "bad MB"));
	if (!strcmp(cmd, "forkbomb") && n == 1)
		return cmd_forkbomb(parse_seconds(a[0]));
	if (!strcmp(cmd, "threadbomb") && n == 1)
		return cmd_threadbomb(parse_seconds(a[0]));
	if (!strcmp(cmd, "connect") && n == 3 && (!strcmp(a[0], "tcp") || !strcmp(a[0], "udp")))
		return cmd_connect(a[0], a[1], a[2]);

	fprintf(stderr, "probe: unknown subcommand or wrong arguments: %s\n", cmd);
	return 2;
}
