/*
 * nolibc.h - the minimal raw-syscall layer for nsbox-init.
 *
 * nsbox-init is injected into arbitrary container images, so it must be a tiny
 * static binary that depends on nothing. Instead of linking a libc, this header
 * provides:
 *   - raw syscall wrappers (x86_64 `syscall`, aarch64 `svc 0`) returning the
 *     kernel's convention: >= 0 on success, -errno on failure (no global errno);
 *   - the _start entry point, which pulls argc/argv/envp off the initial stack;
 *   - the handful of constants, structs and string helpers init.c needs.
 * Constants are defined here (not taken from glibc headers) so the build does
 * not depend on any libc headers. Signal numbers and the structs below are the
 * same on x86_64 and aarch64 (aarch64 uses the asm-generic layout).
 *
 * Only include this from a single translation unit (everything is static except
 * the symbols the compiler or _start need: memset, memcpy, nolibc_start_c).
 */
#ifndef NSBOX_NOLIBC_H
#define NSBOX_NOLIBC_H

typedef unsigned long size_t;
typedef long ssize_t;
typedef int pid_t;

#define NULL ((void *)0)

/* ---- syscall numbers ---------------------------------------------------- */
#if defined(__x86_64__)
#define NR_read            0
#define NR_write           1
#define NR_rt_sigaction    13
#define NR_rt_sigprocmask  14
#define NR_ioctl           16
#define NR_getpid          39
#define NR_clone           56
#define NR_execve          59
#define NR_wait4           61
#define NR_kill            62
#define NR_fcntl           72
#define NR_setpgid         109
#define NR_rt_sigtimedwait 128
#define NR_prctl           157
#define NR_clock_gettime   228
#define NR_exit_group      231
#define NR_close_range     436
#define NR_close           3
#define NR_lseek           8
#define NR_ftruncate       77
#define NR_dup3            292
#define NR_pipe2           293
#define NR_chdir           80
#define NR_setgroups       116
#define NR_setresuid       117
#define NR_setresgid       119
#define NR_mkdirat         258
#elif defined(__aarch64__)
#define NR_ioctl           29
#define NR_fcntl           25
#define NR_read            63
#define NR_write           64
#define NR_exit_group      94
#define NR_clock_gettime   113
#define NR_kill            129
#define NR_rt_sigaction    134
#define NR_rt_sigprocmask  135
#define NR_rt_sigtimedwait 137
#define NR_setpgid         154
#define NR_prctl           167
#define NR_getpid          172
#define NR_clone           220
#define NR_execve          221
#define NR_wait4           260
#define NR_close_range     436
#define NR_dup3            24
#define NR_close           57
#define NR_pipe2           59
#define NR_lseek           62
#define NR_ftruncate       46
#define NR_chdir           49
#define NR_setgroups       159
#define NR_setresuid       147
#define NR_setresgid       149
#define NR_mkdirat         34
#else
#error "nolibc.h: only x86_64 and aarch64 are supported"
#endif

/* ---- raw syscalls ------------------------------------------------------- */
#if defined(__x86_64__)
static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#else /* __aarch64__ */
static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory", "cc");
	return x0;
}
#endif

#define sys0(n)             sys6((n), 0, 0, 0, 0, 0, 0)
#define sys1(n, a)          sys6((n), (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b)       sys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c)    sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* ---- constants ---------------------------------------------------------- */
#define ESRCH   3
#define EINTR   4
#define ECHILD  10
#define EAGAIN  11
#define EACCES  13
#define ENOEXEC 8

#define SIGHUP  1
#define SIGINT  2
#define SIGKILL 9
#define SIGTERM 15
#define SIGCHLD 17
#define SIGSTOP 19
#define NSIG_MAX 64 /* highest signal number (SIGRTMAX) */

#define SIG_BLOCK   0
#define SIG_SETMASK 2
#define SIG_DFL     0UL

#define SI_USER  0
#define SI_QUEUE (-1)
#define SI_TKILL (-6)

#define WNOHANG 1

#define F_GETFD    1
#define F_SETFD    2
#define F_GETFL    3
#define F_SETFL    4
#define F_SETOWN   8
#define FD_CLOEXEC 1
#define O_NONBLOCK 04000
#define O_ASYNC    020000
#define O_CLOEXEC  02000000
#define SEEK_END   2
#define SIGIO      29
#define CLOSE_RANGE_CLOEXEC (1U << 2)

#define PR_SET_DUMPABLE        4
#define PR_SET_NAME            15
#define PR_SET_CHILD_SUBREAPER 36

#define TCGETS     0x5401
#define TIOCSPGRP  0x5410

#define CLOCK_MONOTONIC 1

/* ---- kernel structs ----------------------------------------------------- */
typedef unsigned long ksigset_t; /* kernel sigset: 64 bits, sigsetsize = 8 */
#define KSIGSET_SIZE 8
#define SIGBIT(s) (1UL << ((s) - 1))

/* The kernel's struct sigaction (both arches define SA_RESTORER). */
struct ksigaction {
	unsigned long handler;
	unsigned long flags;
	unsigned long restorer;
	ksigset_t mask;
};

/* siginfo_t: 3 ints, then a union aligned to 8 bytes; 128 bytes total. */
struct ksiginfo {
	int si_signo;
	int si_errno;
	int si_code;
	union {
		struct {
			int pid;
			unsigned int uid;
		} kill;
		long align;
		char pad[128 - 16];
	} u;
};

struct kts {
	long tv_sec;
	long tv_nsec;
};

/* ---- helpers ------------------------------------------------------------ */
/* gcc may emit calls to these even with -ffreestanding, so they are global.
 * The empty asm keeps gcc from turning the loops back into memset/memcpy calls
 * (which would recurse forever). */
void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	while (n--) {
		*p++ = (unsigned char)c;
		__asm__ volatile("" : : "r"(p) : "memory");
	}
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--) {
		*p++ = *q++;
		__asm__ volatile("" : : "r"(p) : "memory");
	}
	return d;
}

static size_t nl_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static int nl_streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/* Parse a non-negative decimal int; returns -1 on any error or overflow. */
static int nl_atoi(const char *s)
{
	long v = 0;
	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > 0x7fffffff)
			return -1;
	}
	return (int)v;
}

/* Format a non-negative number; returns pointer into buf (which needs 12 bytes). */
static char *nl_utoa(unsigned int v, char *buf)
{
	char *p = buf + 11;
	*p = 0;
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return p;
}

static void nl_puts(int fd, const char *s)
{
	size_t n = nl_strlen(s);
	while (n) {
		long r = sys3(NR_write, fd, s, n);
		if (r == -EINTR)
			continue;
		if (r <= 0)
			return;
		s += r;
		n -= (size_t)r;
	}
}

static __attribute__((noreturn)) void nl_exit(int code)
{
	for (;;)
		sys1(NR_exit_group, code);
}

/* ---- entry point -------------------------------------------------------- */
/* The kernel starts us with sp -> [argc][argv...][NULL][envp...][NULL]. */
int main(int argc, char **argv, char **envp);

__attribute__((used, noreturn)) void nolibc_start_c(long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;
	nl_exit(main(argc, argv, envp));
}

#if defined(__x86_64__)
__asm__(".text\n"
	".global _start\n"
	".type _start,@function\n"
	"_start:\n"
	"	xor  %ebp, %ebp\n"       /* outermost frame */
	"	mov  %rsp, %rdi\n"       /* arg0 = initial stack */
	"	and  $-16, %rsp\n"       /* ABI: 16-byte aligned before call */
	"	call nolibc_start_c\n"
	"	hlt\n");
#else
__asm__(".text\n"
	".global _start\n"
	".type _start,%function\n"
	"_start:\n"
	"	mov  x29, #0\n"
	"	mov  x30, #0\n"
	"	mov  x0, sp\n"
	"	and  sp, x0, #-16\n"
	"	bl   nolibc_start_c\n"
	"	brk  #0\n");
#endif

#endif /* NSBOX_NOLIBC_H */
