/*
 * mmuctl console (console.h): the copy loop between a terminal and a VM's
 * console socket. It owns the terminal's raw mode, the escape key and
 * the signals that end the copy; the QMP side of mmuctl is mmuctl.c's.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "console.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* Writes all of buf to fd; false when fd is gone. */
static bool write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t w = write(fd, buf, len);

		if (w < 0 && errno == EINTR && !interrupted)
			continue;
		if (w <= 0)
			return false;
		buf += w;
		len -= (size_t)w;
	}
	return true;
}

/* Ctrl-]: leaves a console whose input is a terminal (as telnet and
 * virsh console do). */
#define CONSOLE_ESCAPE 0x1d

/*
 * Copies the console socket to stdout and stdin to the socket (the guest's
 * COM1 input) until the daemon closes it, SIGINT/SIGTERM, or, on a
 * terminal, Ctrl-]. A terminal is put in raw mode, so keys go to the
 * guest as typed: Enter is CR, Ctrl-C is the byte 0x03 (no SIGINT), as
 * under virsh console. At the end of a non-terminal stdin, output goes
 * on being copied.
 */
int mmuctl_console(const char *prog, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sigaction act = { .sa_handler = on_sigint };
	struct termios saved, raw;
	bool tty = isatty(STDIN_FILENO), stdin_open = true;
	int status = 0;
	char buf[65536];
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "%s: %s: path too long\n", prog, path);
		return EXIT_USAGE;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == ECONNREFUSED || errno == ENOENT)
			fprintf(stderr,
				"%s: no console at %s (%s): mmud is not "
				"running, or its console is elsewhere\n",
				prog, path,
				errno == ENOENT ? "no such socket" :
						  "nothing listens on it");
		else
			fprintf(stderr, "%s: %s: %s\n", prog, path,
				strerror(errno));
		if (fd >= 0)
			close(fd);
		return EXIT_USAGE;
	}
	/* No SA_RESTART: Ctrl-C interrupts poll() and ends the copy. */
	sigaction(SIGINT, &act, NULL);
	sigaction(SIGTERM, &act, NULL);
	if (tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
		raw = saved;
		cfmakeraw(&raw);
		raw.c_oflag = saved.c_oflag; /* keep \n -> \r\n on output */
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
			fprintf(stderr,
				"%s: connected to %s; Ctrl-] leaves (Ctrl-C "
				"goes to the guest)\n",
				prog, path);
		else
			tty = false;
	} else {
		tty = false;
	}
	while (!interrupted) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = STDIN_FILENO,
					 .events = POLLIN } };
		ssize_t n;

		if (poll(p, stdin_open ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			status = EXIT_FAILED;
			break;
		}
		if (p[0].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break; /* the daemon closed the console */
			if (!write_all(STDOUT_FILENO, buf, (size_t)n)) {
				status = EXIT_FAILED;
				break;
			}
		}
		if (stdin_open && p[1].revents) {
			char *esc;

			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				stdin_open = false;
				continue;
			}
			esc = tty ? memchr(buf, CONSOLE_ESCAPE, (size_t)n) :
				    NULL;
			if (esc)
				n = esc - buf;
			if (!write_all(fd, buf, (size_t)n)) {
				status = EXIT_FAILED;
				break;
			}
			if (esc)
				break;
		}
	}
	if (tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	close(fd);
	return status;
}
