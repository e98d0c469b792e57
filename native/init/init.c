/*
 * init.c - nsbox-init, the tiny PID 1 that nsbox bundles into "app" containers.
 *
 * The kernel gives PID 1 of a pid namespace special duties: orphans are
 * re-parented to it and must be reaped, it only receives signals it handles,
 * and when it exits every other process in the namespace is SIGKILLed. Most
 * commands are not written to be PID 1, so nsbox runs this instead, which:
 *   - starts the command (already resolved to an absolute path) as its child,
 *   - reaps every child, including adopted orphans,
 *   - forwards signals that come from OUTSIDE the container to the command,
 *     and ignores signals sent by processes inside the container,
 *   - reports the command's raw wait status on --status-fd and exits with its
 *     exit code (or 128 + signal), which tears the namespace down.
 * With no command ("machine mode") it only reaps, until the halt signal comes
 * from outside: then SIGTERM everyone, wait up to --grace-ms, SIGKILL the rest.
 * With --log-cap BYTES (and a command), the command's stdout and stderr are a
 * pipe that init copies to its own stdout (a machine's console log, a file
 * opened with O_APPEND); a file that would grow past BYTES is truncated first
 * and starts again with one line saying so.
 *
 * With --user UID:GID (and --groups LIST, comma-separated, possibly empty) the
 * command, not init, runs as that user: the forked child sets the groups (only
 * when --groups is given: a user namespace that maps only its creator refuses
 * setgroups), the gid and the uid before its execve; init stays root. With
 * --cwd DIR the child makes DIR (and its parents, as root, mode 0755, as
 * docker does for -w) and changes into it after dropping to the user. A child
 * that cannot do either says why on stderr (the console log) and exits 125.
 *
 * Usage: nsbox-init [--status-fd N] [--grace-ms MS] [--halt-signal SIG]
 *                   [--log-cap BYTES] [--user UID:GID [--groups LIST]]
 *                   [--cwd /abs/dir] [-- /abs/cmd arg...]
 *
 * Built without libc (see nolibc.h) so the static binary is a few KB. Signals
 * are handled synchronously: all are blocked and dequeued with rt_sigtimedwait,
 * so there are no handlers, no polling and no async-signal-safety concerns.
 * No dynamic allocation anywhere. Exit code 125 means init itself failed.
 */
#include "nolibc.h"
#include "../core/steps.h"

static pid_t main_pid;      /* 0 in machine mode */
static int status_fd = -1;
static int grace_ms = 10000;
static int halt_sig = SIGTERM;
static long log_cap;        /* 0: the command writes to init's stdout itself */
static int log_pipe[2] = {-1, -1};
static char log_buf[65536];
static void die(const char *msg);
static int set_user;        /* --user given */
static unsigned int cmd_uid, cmd_gid;
static int set_groups;      /* --groups given */
static unsigned int cmd_groups[65536];
static long n_groups;
static char *cmd_cwd;       /* --cwd, or NULL */

/* "N" (0 .. 4294967294) to *out; 0 on success. Ends at `end` (or NUL); *rest after it. */
static int parse_id(const char *s, char end, unsigned int *out, const char **rest)
{
	unsigned long v = 0;
	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 4294967294UL)
			return -1;
	}
	if (*s != end && *s != 0)
		return -1;
	*out = (unsigned int)v;
	*rest = s;
	return 0;
}

static void parse_user(const char *s)
{
	const char *r;
	if (parse_id(s, ':', &cmd_uid, &r) < 0 || *r != ':' || parse_id(r + 1, 0, &cmd_gid, &r) < 0 || *r)
		die("bad --user (UID:GID)");
	set_user = 1;
}

static void parse_groups(const char *s)
{
	const char *r;
	set_groups = 1;
	while (*s) {
		if (n_groups == (long)(sizeof cmd_groups / sizeof cmd_groups[0]) ||
		    parse_id(s, ',', &cmd_groups[n_groups], &r) < 0)
			die("bad --groups (GID,GID,...)");
		n_groups++;
		s = *r == ',' ? r + 1 : r;
	}
}

/* The child's failure before its execve: one line on stderr, status 125. */
static __attribute__((noreturn)) void child_fail(const char *what, const char *arg, long r)
{
	char num[12];
	nl_puts(2, "nsbox-init: ");
	nl_puts(2, what);
	if (arg) {
		nl_puts(2, " ");
		nl_puts(2, arg);
	}
	nl_puts(2, ": errno ");
	nl_puts(2, nl_utoa((unsigned int)-r, num));
	nl_puts(2, "\n");
	nl_exit(125);
}

/* mkdir -p of the absolute cmd_cwd, mode 0755 (existing components are left as they are). */
static void make_cwd(void)
{
	static char p[4096];
	unsigned long i, n = nl_strlen(cmd_cwd);
	long r;
	if (n >= sizeof p)
		child_fail("--cwd", cmd_cwd, -36 /* ENAMETOOLONG */);
	for (i = 0; i <= n; i++) {
		p[i] = cmd_cwd[i];
		if (i > 0 && (cmd_cwd[i] == '/' || cmd_cwd[i] == 0) && p[i - 1] != '/') {
			p[i] = 0;
			r = sys3(NR_mkdirat, -100 /* AT_FDCWD */, p, 0755);
			if (r < 0 && r != -17 /* EEXIST */)
				child_fail("mkdir", p, r);
			p[i] = cmd_cwd[i];
		}
	}
}

static void die(const char *msg)
{
	nl_puts(2, "nsbox-init: ");
	nl_puts(2, msg);
	nl_puts(2, "\n");
	nl_exit(125);
}

/* Every signal except the two the kernel never lets us catch. */
static ksigset_t all_catchable(void)
{
	return ~0UL & ~SIGBIT(SIGKILL) & ~SIGBIT(SIGSTOP);
}

/* Child side of the spawn. Runs in a full copy of init (fork semantics). */
static __attribute__((noreturn)) void exec_child(char **argv, char **envp)
{
	ksigset_t empty = 0;
	pid_t self = (pid_t)sys0(NR_getpid);
	char tios[64]; /* struct termios is 60 bytes; only used to test for a tty */
	char num[12];
	long r;

	/* Own process group, same session as init (the creator made the session). */
	sys2(NR_setpgid, 0, 0);
	/* Take the terminal foreground if stdin is a tty. Must happen BEFORE the
	 * mask is cleared: we are a background pgrp until this succeeds, and the
	 * kernel only allows TIOCSPGRP from the background while SIGTTOU is blocked
	 * (otherwise we would be stopped). Errors (not our ctty) are ignored. */
	if (sys3(NR_ioctl, 0, TCGETS, tios) == 0)
		sys3(NR_ioctl, 0, TIOCSPGRP, &self);
	/* The console through init's pipe (--log-cap): dup3 clears close-on-exec. */
	if (log_pipe[1] >= 0) {
		sys3(NR_dup3, log_pipe[1], 1, 0);
		sys3(NR_dup3, log_pipe[1], 2, 0);
	}
	/* The working directory is made as root (init's credentials); the user's
	 * credentials come next, then chdir, which the user must be allowed. */
	if (cmd_cwd)
		make_cwd();
	if (set_groups && (r = sys2(NR_setgroups, n_groups, cmd_groups)) < 0)
		child_fail("setgroups", NULL, r);
	if (set_user) {
		if ((r = sys3(NR_setresgid, cmd_gid, cmd_gid, cmd_gid)) < 0)
			child_fail("setgid", NULL, r);
		if ((r = sys3(NR_setresuid, cmd_uid, cmd_uid, cmd_uid)) < 0)
			child_fail("setuid", NULL, r);
	}
	if (cmd_cwd && (r = sys1(NR_chdir, cmd_cwd)) < 0)
		child_fail("chdir", cmd_cwd, r);
	/* Dispositions were already reset to SIG_DFL by init; now unblock all. */
	sys4(NR_rt_sigprocmask, SIG_SETMASK, &empty, NULL, KSIGSET_SIZE);

	r = sys3(NR_execve, argv[0], argv, envp);

	nl_puts(2, "nsbox-init: exec ");
	nl_puts(2, argv[0]);
	nl_puts(2, ": errno ");
	nl_puts(2, nl_utoa((unsigned int)-r, num));
	nl_puts(2, "\n");
	nl_exit((r == -EACCES || r == -ENOEXEC) ? 126 : 127);
}

static void put_all(const char *p, long n)
{
	while (n > 0) {
		long w = sys3(NR_write, 1, p, n);
		if (w == -EINTR)
			continue;
		if (w <= 0)
			return; /* the log is gone or full: the output is dropped */
		p += w;
		n -= w;
	}
}

/* Copies what the command wrote to the pipe into the log, keeping the log at
 * most log_cap bytes: one that would grow past it is truncated and restarted
 * with a line saying so (its size is the file's, so writes that reached it by
 * other ways count too). Reads until the pipe is empty (it is non-blocking). */
static void log_drain(void)
{
	static const char note[] = "nsbox-init: the console log reached its size limit and was started again\n";
	for (;;) {
		long n = sys3(NR_read, log_pipe[0], log_buf, sizeof log_buf);
		const char *p = log_buf;
		long size;
		if (n == -EINTR)
			continue;
		if (n <= 0)
			return;
		size = sys3(NR_lseek, 1, 0, SEEK_END);
		if (size >= 0 && size + n > log_cap) {
			sys2(NR_ftruncate, 1, 0);
			put_all(note, sizeof note - 1);
			if (n > log_cap - (long)(sizeof note - 1)) {
				long keep = log_cap - (long)(sizeof note - 1);
				if (keep < 0)
					keep = 0;
				p += n - keep;
				n = keep;
				/* From the start of a line, where there is one. */
				for (long j = 0; j < n; j++) {
					if (p[j] == '\n') {
						p += j + 1;
						n -= j + 1;
						break;
					}
				}
			}
		}
		put_all(p, n);
	}
}

/* Reap everything that has exited. Returns -ECHILD once no children remain,
 * 0 otherwise. Exits (after reporting) as soon as the main child is reaped. */
static long reap_all(void)
{
	for (;;) {
		int st = 0;
		long pid = sys4(NR_wait4, -1, &st, WNOHANG, NULL);
		if (pid == -EINTR)
			continue;
		if (pid == -ECHILD)
			return -ECHILD;
		if (pid <= 0)
			return 0;
		if (main_pid && pid == main_pid) {
			/* What it wrote last goes to the log before our exit. */
			if (log_pipe[0] >= 0)
				log_drain();
			/* Report first, then exit: our exit kills the namespace. */
			if (status_fd >= 0) {
				long w;
				do
					w = sys3(NR_write, status_fd, &st, sizeof st);
				while (w == -EINTR);
			}
			if ((st & 0x7f) == 0)
				nl_exit((st >> 8) & 0xff);    /* WEXITSTATUS */
			nl_exit(128 + (st & 0x7f));        /* WTERMSIG */
		}
	}
}

/* A signal from outside the container has si_pid 0 (the sender is not
 * visible in our pid namespace); kernel-generated signals carry no pid. */
static int from_inside(const struct ksiginfo *si)
{
	int c = si->si_code;
	return (c == SI_USER || c == SI_QUEUE || c == SI_TKILL) && si->u.kill.pid != 0;
}

static long now_ms(void)
{
	struct kts ts;
	sys2(NR_clock_gettime, CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Machine-mode shutdown: SIGTERM all, grace period, SIGKILL all, reap all. */
static __attribute__((noreturn)) void halt(ksigset_t set)
{
	long deadline = now_ms() + grace_ms;
	struct ksiginfo si;
	int st;

	sys2(NR_kill, -1, SIGTERM); /* -1 from PID 1: everyone in the ns but us */
	for (;;) {
		long left;
		struct kts ts;
		int others = 0;
		if (reap_all() == -ECHILD) {
			/* No children left, but processes that joined the namespace
			 * with setns() are not our children until their outside
			 * parent dies; kill(-1, 0) tells whether anyone is left. */
			if (sys2(NR_kill, -1, 0) == -ESRCH)
				nl_exit(0); /* everyone left before the deadline */
			others = 1;
		}
		left = deadline - now_ms();
		if (left <= 0)
			break;
		/* Non-children raise no SIGCHLD, so only in that case re-check
		 * every 100 ms (shutdown only; the main loop never polls). */
		if (others && left > 100)
			left = 100;
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		/* Sleeps until a signal (SIGCHLD: someone exited) or the deadline.
		 * Other signals are simply dropped during shutdown. */
		sys4(NR_rt_sigtimedwait, &set, &si, &ts, KSIGSET_SIZE);
	}
	/* Re-send SIGKILL before every blocking wait, so that a process forked
	 * concurrently with the previous kill(-1) cannot keep us waiting. */
	do
		sys2(NR_kill, -1, SIGKILL);
	while (sys4(NR_wait4, -1, &st, 0, NULL) != -ECHILD);
	nl_exit(0);
}

/* kPreExecComm in native/core/plan.h: the name of a process that has not exec'd its command yet. */
#define PRE_EXEC_COMM "nsbox-starting"

/*
 * Exec mode: "nsbox-init --exec ERRFD INDEX -- PATH ARGV0 ARGS...". nsbox runs every command
 * through this when no init is wanted, so that at the moment of the command's execve the process
 * image is this sealed memfd and not a copy of Node: a "#!/proc/self/exe" script then resolves to
 * the sealed memfd, never to a host binary it could reopen for writing (the runc CVE-2019-5736
 * pattern). ERRFD is nsbox's error pipe: on failure one 16-byte record {step=exec, errno, INDEX,
 * magic} goes there; on success it closes with the execve.
 */
static __attribute__((noreturn)) void exec_mode(int argc, char **argv, char **envp)
{
	int errfd, index;
	long r;
	int rec[4];

	if (argc < 7 || !nl_streq(argv[4], "--"))
		die("usage: nsbox-init --exec ERRFD INDEX -- PATH ARGV0 [ARGS...]");
	errfd = nl_atoi(argv[2]);
	index = nl_atoi(argv[3]);
	if (errfd < 0)
		die("bad --exec ERRFD");
	sys2(NR_prctl, PR_SET_NAME, PRE_EXEC_COMM);
	sys3(NR_fcntl, errfd, F_SETFD, FD_CLOEXEC);
	r = sys3(NR_execve, argv[5], &argv[6], envp);
	rec[0] = STEP_EXEC;
	rec[1] = (int)-r;
	rec[2] = index;
	rec[3] = 0x6e73627a; /* kErrorMagic */
	sys3(NR_write, errfd, rec, sizeof rec);
	nl_exit(127);
}

static void put_record(int errfd, int step, int err, int index)
{
	int rec[4];
	rec[0] = step;
	rec[1] = err;
	rec[2] = index;
	rec[3] = 0x6e73627a; /* kErrorMagic */
	sys3(NR_write, errfd, rec, sizeof rec);
}

/*
 * Pool mode: "nsbox-init --pool ERRFD CMDFD PATHDIRS". nsbox's warm pool execs this at the end of
 * a container's set-up, so that the big copy of Node is gone before the container waits. It says
 * so on ERRFD (a STEP_READY record), reads the command from CMDFD (NUL-separated argv ended by an
 * empty string, read up to that end or to end-of-file; end-of-file with nothing read means: not
 * needed, exit 0), looks argv[0] up in
 * PATHDIRS (colon-separated) unless it has a '/', and execs it. ERRFD gets a failure record, or
 * closes with the successful execve.
 */
static char pool_buf[256 * 1024];
static char *pool_argv[8192];
static char pool_path[4096];

static __attribute__((noreturn)) void pool_mode(int argc, char **argv, char **envp)
{
	int errfd, cmdfd, argc2 = 0, last_err = 2 /* ENOENT */, last_index = -1, index = 0;
	unsigned long got = 0, pos = 0, scan = 0;
	const char *dirs, *d;
	int slash = 0;
	long r;

	if (argc != 5)
		die("usage: nsbox-init --pool ERRFD CMDFD PATHDIRS");
	errfd = nl_atoi(argv[2]);
	cmdfd = nl_atoi(argv[3]);
	dirs = argv[4];
	if (errfd < 0 || cmdfd < 0)
		die("bad --pool fds");
	sys2(NR_prctl, PR_SET_NAME, PRE_EXEC_COMM);
	put_record(errfd, STEP_READY, 0, 0);
	for (;;) {
		r = sys3(NR_read, cmdfd, pool_buf + got, sizeof(pool_buf) - got);
		if (r == -4 /* EINTR */)
			continue;
		if (r < 0) {
			put_record(errfd, STEP_POOL, (int)-r, POOL_READ);
			nl_exit(127);
		}
		if (r == 0)
			break;
		got += (unsigned long)r;
		/* A whole command (its argv ended by the empty string) ends the read: a writer that
		 * stays (the OCI runtime's start FIFO, which the container holds open for reading and
		 * writing so that no end-of-file ever comes) need not close it first. */
		for (; scan < got; scan++)
			if (!pool_buf[scan] && (scan == 0 || !pool_buf[scan - 1]))
				break;
		if (scan < got)
			break;
		if (got == sizeof(pool_buf)) {
			put_record(errfd, STEP_POOL, 7 /* E2BIG */, POOL_TOO_BIG);
			nl_exit(127);
		}
	}
	if (got == 0)
		nl_exit(0);
	/* The command must not inherit the pipe it came through. */
	sys3(NR_fcntl, cmdfd, F_SETFD, FD_CLOEXEC);
	while (pos < got && pool_buf[pos]) {
		if (argc2 + 1 >= (int)(sizeof(pool_argv) / sizeof(pool_argv[0]))) {
			put_record(errfd, STEP_POOL, 7 /* E2BIG */, POOL_TOO_MANY);
			nl_exit(127);
		}
		pool_argv[argc2++] = pool_buf + pos;
		while (pos < got && pool_buf[pos])
			pos++;
		pos++;
	}
	if (argc2 == 0 || pos > got) {
		put_record(errfd, STEP_POOL, 22 /* EINVAL */, POOL_MALFORMED);
		nl_exit(127);
	}
	pool_argv[argc2] = 0;
	for (d = pool_argv[0]; *d; d++)
		slash |= *d == '/';
	sys3(NR_fcntl, errfd, F_SETFD, FD_CLOEXEC);
	if (slash) {
		r = sys3(NR_execve, pool_argv[0], pool_argv, envp);
		put_record(errfd, STEP_EXEC, (int)-r, 0);
		nl_exit(127);
	}
	/* PATH lookup the way execvp does it: ENOENT/ENOTDIR try the next, EACCES is remembered. */
	for (d = dirs; *d; index++) {
		unsigned long o = 0;
		const char *a;
		while (*d && *d != ':' && o < sizeof(pool_path) - 2)
			pool_path[o++] = *d++;
		if (*d == ':')
			d++;
		if (o == 0)
			continue;
		if (pool_path[o - 1] != '/')
			pool_path[o++] = '/';
		for (a = pool_argv[0]; *a && o < sizeof(pool_path) - 1; a++)
			pool_path[o++] = *a;
		pool_path[o] = 0;
		r = sys3(NR_execve, pool_path, pool_argv, envp);
		if (r == -2 /* ENOENT */ || r == -20 /* ENOTDIR */)
			continue;
		last_err = (int)-r;
		last_index = index;
		if (r == -13 /* EACCES */)
			continue;
		break;
	}
	put_record(errfd, STEP_EXEC, last_err, last_index);
	nl_exit(127);
}

int main(int argc, char **argv, char **envp)
{
	ksigset_t set = all_catchable();
	char **cmd = NULL;
	int i;

	if (argc > 1 && nl_streq(argv[1], "--exec"))
		exec_mode(argc, argv, envp);
	if (argc > 1 && nl_streq(argv[1], "--pool"))
		pool_mode(argc, argv, envp);

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (nl_streq(a, "--")) {
			if (i + 1 < argc)
				cmd = &argv[i + 1];
			break;
		} else if (i + 1 < argc && nl_streq(a, "--status-fd")) {
			if ((status_fd = nl_atoi(argv[++i])) < 0)
				die("bad --status-fd");
		} else if (i + 1 < argc && nl_streq(a, "--grace-ms")) {
			if ((grace_ms = nl_atoi(argv[++i])) < 0)
				die("bad --grace-ms");
		} else if (i + 1 < argc && nl_streq(a, "--log-cap")) {
			if ((log_cap = nl_atoi(argv[++i])) < 4096)
				die("bad --log-cap (at least 4096)");
		} else if (i + 1 < argc && nl_streq(a, "--user")) {
			parse_user(argv[++i]);
		} else if (i + 1 < argc && nl_streq(a, "--groups")) {
			parse_groups(argv[++i]);
		} else if (i + 1 < argc && nl_streq(a, "--cwd")) {
			cmd_cwd = argv[++i];
			if (cmd_cwd[0] != '/')
				die("bad --cwd (an absolute path)");
		} else if (i + 1 < argc && nl_streq(a, "--halt-signal")) {
			halt_sig = nl_atoi(argv[++i]);
			if (halt_sig < 1 || halt_sig > NSIG_MAX || halt_sig == SIGKILL ||
			    halt_sig == SIGSTOP || halt_sig == SIGCHLD)
				die("bad --halt-signal");
		} else {
			die("usage: nsbox-init [--status-fd N] [--grace-ms MS] "
			    "[--halt-signal SIG] [--log-cap BYTES] [--user UID:GID "
			    "[--groups LIST]] [--cwd DIR] [-- /abs/cmd arg...]");
		}
	}
	if (cmd && cmd[0][0] != '/')
		die("command path must be absolute");
	if ((set_user || set_groups || cmd_cwd) && !cmd)
		die("--user, --groups and --cwd need a command");

	sys2(NR_prctl, PR_SET_NAME, "nsbox-init");
	/* Not dumpable: /proc/1/fd (and ptrace) stay closed to the processes of the
	 * container, which run as our uid with our capabilities. Our fds 1, 2 and
	 * the status fd may be host files (a machine's console.log and exit-status):
	 * through /proc/1/fd/N root inside could reopen them for writing past the
	 * --log-cap, forge the status, or chmod (set-id bits) and chown the host's
	 * inodes. Only CAP_SYS_PTRACE (not an app container's) overrides this. The
	 * command is dumpable again after its execve. */
	if (sys2(NR_prctl, PR_SET_DUMPABLE, 0) < 0)
		die("prctl(PR_SET_DUMPABLE) failed");
	/* No-op as PID 1; makes us adopt orphans if ever run below a PID 1. */
	sys2(NR_prctl, PR_SET_CHILD_SUBREAPER, 1);

	/* 1. Block signals first, so nothing that arrives from here on is lost:
	 *    it stays pending until rt_sigtimedwait dequeues it. */
	sys4(NR_rt_sigprocmask, SIG_BLOCK, &set, NULL, KSIGSET_SIZE);

	/* 2. Reset every disposition to SIG_DFL. The creator (e.g. Node, which
	 *    ignores SIGPIPE) may have left signals ignored; ignored dispositions
	 *    survive execve and would leak into the command, and an ignored
	 *    SIGCHLD would make the kernel auto-reap, losing the exit status. */
	for (i = 1; i <= NSIG_MAX; i++) {
		struct ksigaction sa;
		if (i == SIGKILL || i == SIGSTOP)
			continue;
		memset(&sa, 0, sizeof sa);
		sa.handler = SIG_DFL;
		sys4(NR_rt_sigaction, i, &sa, NULL, KSIGSET_SIZE);
	}

	/* 3. Nothing inherited above stderr may leak into the command. We only
	 *    mark fds close-on-exec (init itself keeps using the status fd). */
	if (sys3(NR_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		for (i = 3; i < 1024; i++) { /* kernels < 5.11 */
			long fl = sys2(NR_fcntl, i, F_GETFD);
			if (fl >= 0)
				sys3(NR_fcntl, i, F_SETFD, fl | FD_CLOEXEC);
		}
	}
	if (status_fd >= 0 && sys3(NR_fcntl, status_fd, F_SETFD, FD_CLOEXEC) < 0)
		die("bad --status-fd (not open)");

	/* 4. Spawn the command (fork semantics: clone with only SIGCHLD). It
	 *    inherits the blocked mask; exec_child clears it after tty setup. */
	if (cmd && log_cap) {
		/* The pipe's read end raises SIGIO (dequeued below) when data comes. */
		pid_t self = (pid_t)sys0(NR_getpid);
		if (sys2(NR_pipe2, log_pipe, O_CLOEXEC) < 0)
			die("pipe2 failed");
		if (sys3(NR_fcntl, log_pipe[0], F_SETOWN, self) < 0 ||
		    sys3(NR_fcntl, log_pipe[0], F_SETFL, O_NONBLOCK | O_ASYNC) < 0)
			die("fcntl on the log pipe failed");
	}
	if (cmd) {
		long pid = sys6(NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
		if (pid < 0)
			die("clone failed");
		if (pid == 0)
			exec_child(cmd, envp);
		main_pid = (pid_t)pid;
		if (log_pipe[1] >= 0) {
			sys1(NR_close, log_pipe[1]);
			log_pipe[1] = -1;
		}
	}

	/* 5. Event loop: sleep in rt_sigtimedwait until a signal is pending. */
	for (;;) {
		struct ksiginfo si;
		long sig = sys4(NR_rt_sigtimedwait, &set, &si, NULL, KSIGSET_SIZE);
		if (sig <= 0)
			continue; /* -EINTR (e.g. after SIGSTOP/SIGCONT from outside) */
		if (sig == SIGCHLD) {
			reap_all();
			continue;
		}
		if (sig == SIGIO && log_pipe[0] >= 0 && si.si_code > 0) {
			log_drain(); /* kernel-sent (POLL_IN): the pipe has data */
			continue;
		}
		if (from_inside(&si))
			continue;
		if (main_pid)
			sys2(NR_kill, main_pid, sig);
		else if (sig == halt_sig)
			halt(set);
	}
}
