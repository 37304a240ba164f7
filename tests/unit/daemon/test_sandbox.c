/*
 * daemon/sandbox.c: after mmud_deny_exec() no thread of the process can
 * run another program (execve and execveat fail with EPERM), and the
 * calls mmud does make still work. Each case runs in a child process,
 * which the filter cannot be taken off again.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mmud.h"

static char *const false_argv[] = { "false", NULL };
static char *const no_env[] = { NULL };

/* execve of /bin/false: if it ran, the child exits 1 and the test fails. */
static void *exec_in_thread(void *arg)
{
	(void)arg;
	execve("/bin/false", false_argv, no_env);
	return (void *)(intptr_t)errno;
}

/* The child's exit status: 0 when every check held, else which failed. */
static int child(void)
{
	pthread_t t;
	void *err;
	int fd;

	if (mmud_deny_exec() < 0)
		return 10;
	if (execve("/bin/false", false_argv, no_env) == 0 || errno != EPERM)
		return 11;
	fd = open("/bin/false", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 12; /* open still works */
	if (syscall(SYS_execveat, fd, "", false_argv, no_env, AT_EMPTY_PATH) ==
		    0 ||
	    errno != EPERM)
		return 13;
	close(fd);
	/* A thread started afterwards has the filter too. */
	if (pthread_create(&t, NULL, exec_in_thread, NULL) != 0)
		return 14;
	pthread_join(t, &err);
	if ((intptr_t)err != EPERM)
		return 15;
	return getpid() > 0 ? 0 : 16;
}

static void test_sandbox_exec_refused_in_every_thread(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	/* 0: all held; 10-16: the check of child() that failed. */
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sandbox_exec_refused_in_every_thread),
	};

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	/* Sanitizer builds keep execve (daemon/sandbox.c). */
	return 77;
#endif
	return cmocka_run_group_tests(tests, NULL, NULL);
}
