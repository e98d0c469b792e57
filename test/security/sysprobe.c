/*
 * sysprobe.c - makes raw system calls for the seccomp tests and prints what the kernel answered.
 * Built static (cc -O2 -static) and run inside containers, or on the host with --filter.
 *
 *   sysprobe [--filter FILE] COMMAND [ARG...]
 *
 *   --filter FILE        install the classic BPF program in FILE (struct sock_filter[], as
 *                        lib/seccomp.ts compiles it) after PR_SET_NO_NEW_PRIVS, then run COMMAND
 *   syscall NR [A...]    syscall(NR, A...) through the x86_64 (or native) ABI
 *   x32 NR [A...]        the same with the x32 bit (0x40000000) set in NR          (x86_64 only)
 *   int80 NR [A...]      an i386 system call through `int $0x80` from 64-bit code   (x86_64 only)
 *   clone FLAGS          raw clone(FLAGS | SIGCHLD); the child exits 0 at once, the parent reaps it
 *   thread               pthread_create + pthread_join (glibc >= 2.34 tries clone3 first)
 *   fork                 fork + waitpid
 *   exec PATH [ARG...]   execv(PATH, [PATH, ARG...])
 *
 * Arguments: numbers (decimal, 0x hex, negative), "@buf" (a pointer to 4 KiB of zeros) or
 * "@str:TEXT" (a pointer to the NUL-terminated TEXT).
 * Output: one line of JSON, {"ret":R,"errno":E} (errno 0 on success). Killed by the filter: no
 * output, the process dies of SIGSYS. Usage errors exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char scratch[4096];

static void usage(const char *msg)
{
	fprintf(stderr, "sysprobe: %s\n", msg);
	exit(2);
}

static long arg(const char *s)
{
	if (strcmp(s, "@buf") == 0) return (long)(uintptr_t)scratch;
	if (strncmp(s, "@str:", 5) == 0) return (long)(uintptr_t)(s + 5);
	char *end;
	errno = 0;
	long v = s[0] == '-' ? strtol(s, &end, 0) : (long)strtoul(s, &end, 0);
	if (errno || *end) usage("bad number");
	return v;
}

static void report(long ret, int err)
{
	printf("{\"ret\":%ld,\"errno\":%d}\n", ret, ret < 0 ? err : 0);
	fflush(stdout);
}

static void install(const char *file)
{
	FILE *f = fopen(file, "rb");
	if (!f) usage("cannot open the filter file");
	static struct sock_filter insns[4096];
	size_t n = fread(insns, sizeof(insns[0]), 4096, f);
	fclose(f);
	if (n == 0) usage("empty filter");
	struct sock_fprog prog = {.len = (unsigned short)n, .filter = insns};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) usage("PR_SET_NO_NEW_PRIVS failed");
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) {
		fprintf(stderr, "sysprobe: PR_SET_SECCOMP: %s\n", strerror(errno));
		exit(3);
	}
}

#if defined(__x86_64__)
/* The i386 entry point from 64-bit code: the kernel sees AUDIT_ARCH_I386 and the i386 numbers. */
static long int80(long nr, long a, long b, long c, long d, long e)
{
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory", "cc", "r8", "r9", "r10", "r11");
	return (int)ret; /* 32-bit return, sign-extended */
}
#endif

static void *thread_main(void *p)
{
	return p;
}

int main(int argc, char **argv)
{
	int i = 1;
	if (i + 1 < argc && strcmp(argv[i], "--filter") == 0) {
		install(argv[i + 1]);
		i += 2;
	}
	if (i >= argc) usage("no command");
	const char *cmd = argv[i++];
	long a[6] = {0};

	if (strcmp(cmd, "syscall") == 0 || strcmp(cmd, "x32") == 0 || strcmp(cmd, "int80") == 0) {
		if (i >= argc) usage("no system call number");
		long nr = arg(argv[i++]);
		for (int j = 0; j < 6 && i < argc; j++) a[j] = arg(argv[i++]);
		if (i < argc) usage("at most six arguments");
		if (strcmp(cmd, "syscall") == 0) {
			long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
			report(r, errno);
		} else if (strcmp(cmd, "x32") == 0) {
#if defined(__x86_64__)
			long r = syscall(nr | 0x40000000L, a[0], a[1], a[2], a[3], a[4], a[5]);
			report(r, errno);
#else
			usage("x32 exists on x86_64 only");
#endif
		} else {
#if defined(__x86_64__)
			long r = int80(nr, a[0], a[1], a[2], a[3], a[4]);
			report(r < 0 && r > -4096 ? -1 : r, r < 0 && r > -4096 ? (int)-r : 0);
#else
			usage("int80 exists on x86_64 only");
#endif
		}
		return 0;
	}
	if (strcmp(cmd, "clone") == 0) {
		if (i >= argc) usage("no flags");
		long flags = arg(argv[i]);
		long r = syscall(SYS_clone, flags | SIGCHLD, 0L, 0L, 0L, 0L);
		if (r == 0) _exit(0);
		int err = errno;
		if (r > 0) {
			int st;
			waitpid((pid_t)r, &st, 0);
			r = 0;
		}
		report(r, err);
		return 0;
	}
	if (strcmp(cmd, "thread") == 0) {
		pthread_t t;
		int err = pthread_create(&t, NULL, thread_main, NULL);
		if (err == 0) pthread_join(t, NULL);
		report(err ? -1 : 0, err);
		return 0;
	}
	if (strcmp(cmd, "fork") == 0) {
		pid_t p = fork();
		if (p == 0) _exit(0);
		int err = errno;
		if (p > 0) waitpid(p, NULL, 0);
		report(p < 0 ? -1 : 0, err);
		return 0;
	}
	if (strcmp(cmd, "exec") == 0) {
		if (i >= argc) usage("no program");
		execv(argv[i], argv + i);
		report(-1, errno);
		return 1;
	}
	usage("unknown command");
	return 2;
}
