/* ns-cost.c: what creating each kind of namespace costs on this kernel. For each type, 200 times:
 * fork a child that times unshare(CLONE_NEW*) alone and reports it over a pipe. Run as root:
 *   cc -O2 -o /tmp/ns-cost bench/ns-cost.c && /tmp/ns-cost
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(void)
{
	static const struct { const char *name; int flag; } kinds[] = {
		{"net", CLONE_NEWNET}, {"mnt", CLONE_NEWNS}, {"ipc", CLONE_NEWIPC}, {"pid", CLONE_NEWPID},
		{"uts", CLONE_NEWUTS}, {"cgroup", CLONE_NEWCGROUP}, {"(none)", 0},
	};
	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		double total = 0;
		const int n = 200;
		for (int i = 0; i < n; i++) {
			int p[2];
			if (pipe(p) != 0)
				return 1;
			pid_t c = fork();
			if (c == 0) {
				double t = now_ms();
				if (kinds[k].flag && unshare(kinds[k].flag) != 0)
					_exit(1);
				double d = now_ms() - t;
				if (write(p[1], &d, sizeof d) != sizeof d)
					_exit(1);
				_exit(0);
			}
			double d = 0;
			if (read(p[0], &d, sizeof d) != sizeof d) {
				fprintf(stderr, "ns-cost: unshare(%s) failed (not root?)\n", kinds[k].name);
				return 1;
			}
			close(p[0]);
			close(p[1]);
			waitpid(c, NULL, 0);
			total += d;
		}
		printf("%-7s %7.1f us\n", kinds[k].name, total / n * 1000);
	}
	return 0;
}
