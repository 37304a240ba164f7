/*
 * The sd_notify protocol, by hand (mmud does not need libsystemd,
 * docs/ARCHITECTURE.md, "Build options and external libraries"): one datagram of newline-separated VAR=value assignments to
 * the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an abstract
 * name when it starts with '@'), and the watchdog interval systemd
 * passes in $WATCHDOG_USEC / $WATCHDOG_PID. Without $NOTIFY_SOCKET every
 * call does nothing. It owns no state: each call opens its own socket.
 * Sends never block (the event loop calls this): a receiver whose queue
 * is full loses the message, and the caller gets -EAGAIN.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "mmud.h"

int mmud_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t salen;
	size_t n;
	ssize_t w;
	int fd, r = 0;

	if (!path || !*path)
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
			    (path[0] == '/'));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	do
		w = sendto(fd, state, strlen(state),
			   MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa,
			   salen);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		r = -errno;
	close(fd);
	return r;
}

uint64_t mmud_watchdog_usec(void)
{
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	unsigned long long v;
	char *end;

	if (!usec || !*usec)
		return 0;
	/* WATCHDOG_PID, when set, names the process that must ping. */
	if (pid && *pid && strtoll(pid, NULL, 10) != (long long)getpid())
		return 0;
	errno = 0;
	v = strtoull(usec, &end, 10);
	if (errno || *end || v == 0)
		return 0;
	return v;
}
