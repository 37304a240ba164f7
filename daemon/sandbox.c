/*
 * mmud's own seccomp filter: once started, mmud never runs another
 * program, so execve and execveat fail with EPERM from then on, in every
 * thread (the filter is installed before the first one starts and
 * threads inherit it). The systemd unit cannot deny them itself: systemd
 * needs execve to start mmud under the unit's filter. Everything else
 * the unit's SystemCallFilter= narrows (systemd/mmud@.service.in). No
 * libseccomp: the filter is eight BPF instructions. Sanitizer builds
 * keep execve: their reports run a symbolizer.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "mmud.h"

int mmud_deny_exec(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return 0;
#else
	struct sock_filter insns[] = {
		/* Another architecture's numbers mean other calls: refuse
		 * them all (the unit's SystemCallArchitectures=native). */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execveat, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	};
	struct sock_fprog prog = {
		.len = sizeof(insns) / sizeof(insns[0]),
		.filter = insns,
	};

	/* A filter needs no_new_privs without CAP_SYS_ADMIN; the unit
	 * sets it already (NoNewPrivileges=yes). */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
#endif
}
