/* no_uring.c - runs a command with io_uring_setup(2) failing with EPERM,
 * as a container's seccomp policy makes it, so the CLI tests can check
 * that qshard falls back to pread with a notice.
 *   usage: no_uring [ENOSYS] CMD [ARGS...]
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

int main(int argc, char **argv)
{
	int err = EPERM, first = 1;
	if (argc > 1 && strcmp(argv[1], "ENOSYS") == 0) {
		err = ENOSYS;
		first = 2;
	}
	if (argc <= first) {
		fprintf(stderr, "usage: no_uring [ENOSYS] CMD [ARGS...]\n");
		return 2;
	}
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(filter) / sizeof(filter[0]), .filter = filter};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
		perror("no_uring: seccomp");
		return 77;
	}
	execvp(argv[first], argv + first);
	perror(argv[first]);
	return 127;
}
