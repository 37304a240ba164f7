/*
 * Listening Unix sockets at a path, made and removed safely, for the QMP
 * server and the daemon's console socket. mmud may run as root with its
 * sockets under a directory another user can rename, so nothing here
 * trusts a path twice: the parent directory is opened once, the socket
 * is bound through that open directory, its file gets mode 0600 from the
 * start (fchmod of the socket and a umask around bind; never a chmod by
 * path), and at exit the file is unlinked from that directory only if it
 * is still the socket that was bound (same device and inode). It knows
 * nothing of QMP.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc.h"

struct qmp_unix_socket {
	int dirfd; /* the directory the socket was bound in (O_PATH) */
	char *name; /* its name there */
	dev_t dev; /* the socket file as bound */
	ino_t ino;
};

/*
 * The address of @name in the directory @dirfd: through /proc/self/fd,
 * so that renaming a directory of the path after it was opened changes
 * nothing; the plain path where /proc is missing or the result too long.
 */
static void make_addr(struct sockaddr_un *sa, int dirfd, const char *name,
		      const char *path)
{
	char proc[64];
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", proc, name);
	if (n < 0 || (size_t)n >= sizeof(sa->sun_path) ||
	    access(proc, F_OK) < 0)
		snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", path);
}

/*
 * Makes @name free: a socket file nobody listens on is stale and goes; a
 * live socket or any other kind of file is left alone.
 */
static int clear_stale(int dirfd, const char *name,
		       const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, ret;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (ret == 0)
		return -EADDRINUSE;
	if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* Splits @path into its directory (opened) and its last component. */
static int open_parent(const char *path, struct qmp_unix_socket *s)
{
	const char *slash = strrchr(path, '/');
	char *dir;

	if (!*path || (slash && !slash[1]))
		return -EINVAL;
	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	s->name = strdup(slash ? slash + 1 : path);
	if (!dir || !s->name) {
		free(dir);
		return -ENOMEM;
	}
	s->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	return s->dirfd < 0 ? -errno : 0;
}

int qmp_unix_listen(const char *path, int backlog, struct qmp_unix_socket **out)
{
	struct qmp_unix_socket *s;
	struct sockaddr_un sa;
	struct stat st;
	mode_t old;
	int fd = -1, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->dirfd = -1;
	ret = open_parent(path, s);
	if (ret < 0)
		goto fail;
	make_addr(&sa, s->dirfd, s->name, path);
	ret = clear_stale(s->dirfd, s->name, &sa);
	if (ret < 0)
		goto fail;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		goto fail;
	}
	/*
	 * Linux gives the new file the socket inode's mode less the umask:
	 * with both, the file is 0600 from the moment it exists, and no
	 * chmod by path (which a renamed directory could redirect) is
	 * needed. The umask is the process's; mmud binds before it starts
	 * anything that creates files.
	 */
	if (fchmod(fd, 0600) < 0) {
		ret = -errno;
		goto fail;
	}
	old = umask(0177);
	ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (ret < 0) {
		ret = -errno;
		goto fail;
	}
	/* What to recognise at exit; a socket, or someone raced us. */
	if (fstatat(s->dirfd, s->name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISSOCK(st.st_mode)) {
		ret = -EEXIST;
		goto fail;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	if (listen(fd, backlog) < 0) {
		ret = -errno;
		qmp_unix_unlink(s);
		close(fd);
		return ret;
	}
	*out = s;
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->name);
	free(s);
	return ret;
}

bool qmp_unix_is_ours(const struct qmp_unix_socket *s)
{
	struct stat st;

	return s && fstatat(s->dirfd, s->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISSOCK(st.st_mode) && st.st_dev == s->dev &&
	       st.st_ino == s->ino;
}

void qmp_unix_unlink(struct qmp_unix_socket *s)
{
	if (!s)
		return;
	/* Only from the directory it was bound in, and only if unchanged:
	 * a file someone put there since is not ours to remove. */
	if (qmp_unix_is_ours(s))
		unlinkat(s->dirfd, s->name, 0);
	close(s->dirfd);
	free(s->name);
	free(s);
}
