/*
 * Migration URIs (daemon/internal/migrate_uri.h): parsing QEMU's
 * spellings, the registry of descriptors QMP's getfd named, and the two
 * ends of a transport: the source's connected stream and the
 * destination's listening socket or opened stream. It holds no state
 * of a migration and knows nothing of QMP or the stream format; the
 * migration engine (daemon/migration.c, daemon/incoming.c) decides
 * when to call what, and on which thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "migrate_uri.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- parsing ----------------------------------------------------------- */

/* A port as written: decimal digits only, 0 to 65535. */
static bool is_port(const char *p)
{
	unsigned long v = 0;

	if (!*p || strlen(p) > 5)
		return false;
	for (const char *c = p; *c; c++) {
		if (*c < '0' || *c > '9')
			return false;
		v = v * 10 + (unsigned long)(*c - '0');
	}
	return v <= 65535;
}

/* file:'s offset: decimal or 0x hexadecimal, as QEMU's base-0 read. */
static bool parse_offset(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned int base = 10;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned int d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned int)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned int)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned int)(*s - 'A' + 10);
		else
			return false;
		if (v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	/* lseek takes an off_t. */
	if (v > (uint64_t)INT64_MAX)
		return false;
	*out = v;
	return true;
}

static int parse_tcp(const char *s, const char *rest, struct mig_uri *u,
		     char *err, size_t errlen)
{
	const char *colon;
	size_t hostlen;

	if (rest[0] == '[') {
		const char *close = strchr(rest, ']');

		if (!close || close[1] != ':') {
			set_err(err, errlen,
				"invalid migration URI '%s': expected "
				"tcp:[IPV6]:PORT",
				s);
			return -EINVAL;
		}
		colon = close + 1;
		rest++;
		hostlen = (size_t)(close - rest);
		if (!hostlen) {
			set_err(err, errlen,
				"invalid migration URI '%s': empty IPv6 "
				"address",
				s);
			return -EINVAL;
		}
	} else {
		colon = strrchr(rest, ':');
		if (!colon) {
			set_err(err, errlen,
				"invalid migration URI '%s': expected "
				"tcp:HOST:PORT",
				s);
			return -EINVAL;
		}
		hostlen = (size_t)(colon - rest);
		if (memchr(rest, ':', hostlen)) {
			set_err(err, errlen,
				"invalid migration URI '%s': an IPv6 address "
				"goes in brackets (tcp:[ADDR]:PORT)",
				s);
			return -EINVAL;
		}
	}
	if (!is_port(colon + 1)) {
		set_err(err, errlen,
			"invalid migration URI '%s': port '%s' is not a "
			"number from 0 to 65535",
			s, colon + 1);
		return -EINVAL;
	}
	u->host = strndup(rest, hostlen);
	u->port = strdup(colon + 1);
	if (!u->host || !u->port)
		return -ENOMEM;
	return 0;
}

static int parse_file(const char *s, const char *rest, struct mig_uri *u,
		      char *err, size_t errlen)
{
	const char *opt = NULL;
	size_t pathlen;

	/* The last ",offset=" starts the option, as QEMU reads it. */
	for (const char *p = strstr(rest, ",offset="); p;
	     p = strstr(p + 1, ",offset="))
		opt = p;
	pathlen = opt ? (size_t)(opt - rest) : strlen(rest);
	if (!pathlen) {
		set_err(err, errlen, "invalid migration URI '%s': empty path",
			s);
		return -EINVAL;
	}
	if (opt && !parse_offset(opt + strlen(",offset="), &u->offset)) {
		set_err(err, errlen,
			"invalid migration URI '%s': offset '%s' is not a "
			"number from 0 to 2^63 - 1",
			s, opt + strlen(",offset="));
		return -EINVAL;
	}
	u->path = strndup(rest, pathlen);
	return u->path ? 0 : -ENOMEM;
}

int mig_uri_parse(const char *s, struct mig_uri *u, char *err, size_t errlen)
{
	struct mig_uri n = { 0 };
	const char *colon;
	size_t tlen;
	int ret;

	if (!s || !*s) {
		set_err(err, errlen, "invalid migration URI '': empty");
		return -EINVAL;
	}
	colon = strchr(s, ':');
	if (!colon) {
		set_err(err, errlen,
			"invalid migration URI '%s': expected TRANSPORT:"
			"ADDRESS (unix, tcp, fd or file)",
			s);
		return -EINVAL;
	}
	tlen = (size_t)(colon - s);
	if (tlen == 4 && !strncmp(s, "unix", 4)) {
		struct sockaddr_un sa;

		n.kind = MIG_URI_UNIX;
		if (!colon[1]) {
			set_err(err, errlen,
				"invalid migration URI '%s': empty path", s);
			return -EINVAL;
		}
		if (strlen(colon + 1) >= sizeof(sa.sun_path)) {
			set_err(err, errlen,
				"invalid migration URI '%s': a socket path is "
				"at most %zu bytes",
				s, sizeof(sa.sun_path) - 1);
			return -EINVAL;
		}
		n.path = strdup(colon + 1);
		ret = n.path ? 0 : -ENOMEM;
	} else if (tlen == 3 && !strncmp(s, "tcp", 3)) {
		n.kind = MIG_URI_TCP;
		ret = parse_tcp(s, colon + 1, &n, err, errlen);
	} else if (tlen == 2 && !strncmp(s, "fd", 2)) {
		n.kind = MIG_URI_FD;
		if (!colon[1] || strlen(colon + 1) > MIG_FDNAME_MAX) {
			set_err(err, errlen,
				"invalid migration URI '%s': a descriptor name "
				"has 1 to %d bytes",
				s, MIG_FDNAME_MAX);
			return -EINVAL;
		}
		n.fdname = strdup(colon + 1);
		ret = n.fdname ? 0 : -ENOMEM;
	} else if (tlen == 4 && !strncmp(s, "file", 4)) {
		n.kind = MIG_URI_FILE;
		ret = parse_file(s, colon + 1, &n, err, errlen);
	} else {
		set_err(err, errlen,
			"invalid migration URI '%s': unknown transport '%.*s'",
			s, (int)(tlen > 32 ? 32 : tlen), s);
		return -EINVAL;
	}
	if (ret == -ENOMEM)
		set_err(err, errlen, "out of memory parsing '%s'", s);
	if (ret < 0) {
		mig_uri_free(&n);
		return ret;
	}
	*u = n;
	return 0;
}

void mig_uri_free(struct mig_uri *u)
{
	if (!u)
		return;
	free(u->path);
	free(u->host);
	free(u->port);
	free(u->fdname);
	memset(u, 0, sizeof(*u));
}

/* ---- named descriptors ------------------------------------------------- */

struct mig_fd_entry {
	char *name;
	int fd;
};

/* Loop thread only (see the header); no lock. */
struct mig_fds {
	struct mig_fd_entry e[MIG_FDS_MAX];
	unsigned int n;
};

struct mig_fds *mig_fds_new(void)
{
	return calloc(1, sizeof(struct mig_fds));
}

void mig_fds_free(struct mig_fds *f)
{
	if (!f)
		return;
	for (unsigned int i = 0; i < f->n; i++) {
		close(f->e[i].fd);
		free(f->e[i].name);
	}
	free(f);
}

static int find(const struct mig_fds *f, const char *name)
{
	for (unsigned int i = 0; i < f->n; i++)
		if (!strcmp(f->e[i].name, name))
			return (int)i;
	return -ENOENT;
}

/* Removes entry i, leaving its descriptor to the caller. */
static int remove_at(struct mig_fds *f, unsigned int i)
{
	int fd = f->e[i].fd;

	free(f->e[i].name);
	f->e[i] = f->e[--f->n];
	return fd;
}

int mig_fds_put(struct mig_fds *f, const char *name, int fd)
{
	int i = find(f, name);
	char *copy;

	if (i >= 0) {
		close(f->e[i].fd);
		f->e[i].fd = fd;
		return 0;
	}
	if (f->n == MIG_FDS_MAX) {
		close(fd);
		return -ENOSPC;
	}
	copy = strdup(name);
	if (!copy) {
		close(fd);
		return -ENOMEM;
	}
	f->e[f->n].name = copy;
	f->e[f->n].fd = fd;
	f->n++;
	return 0;
}

int mig_fds_close(struct mig_fds *f, const char *name)
{
	int i = find(f, name);

	if (i < 0)
		return i;
	close(remove_at(f, (unsigned int)i));
	return 0;
}

int mig_fds_take(struct mig_fds *f, const char *name)
{
	int i = find(f, name);

	return i < 0 ? i : remove_at(f, (unsigned int)i);
}

/* ---- the two ends ------------------------------------------------------ */

/* A descriptor the migration thread reads or writes: blocking, and not
 * inherited by anything mmud might start. */
static int make_blocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

static int take_fd(const struct mig_uri *u, int taken_fd, char *err,
		   size_t errlen)
{
	int ret;

	if (taken_fd < 0) {
		set_err(err, errlen, "fd:%s: no descriptor of that name",
			u->fdname);
		return -EBADF;
	}
	ret = make_blocking(taken_fd);
	if (ret < 0) {
		set_err(err, errlen, "fd:%s: %s", u->fdname, strerror(-ret));
		close(taken_fd);
		return ret;
	}
	return taken_fd;
}

static void unix_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	/* mig_uri_parse() checked the length. */
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", path);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * connect() that gives up after the URI's connect timeout, or as soon as
 * cancel_fd (if >= 0) becomes readable: a peer that never answers (a
 * lost SYN, a full accept queue) would otherwise hold the migration
 * thread, and a cancel, for minutes. The socket connects non-blocking
 * and the thread polls it with cancel_fd: a TCP connect in progress is
 * watched for POLLOUT (connect(2), EINPROGRESS: SO_ERROR says how it
 * ended); a Unix socket whose listener's queue is full answers EAGAIN
 * at once, so it is tried again every MIG_CONNECT_RETRY_MS. Blocking
 * again once connected. 0 or -errno: -ETIMEDOUT for the timeout,
 * -ECANCELED for a cancel.
 */
static int connect_timed(int fd, const struct sockaddr *sa, socklen_t len,
			 const struct mig_uri *u, int cancel_fd)
{
	unsigned int ms = u->connect_timeout_ms ?: MIG_CONNECT_TIMEOUT_MS;
	uint64_t deadline = mono_ms() + ms;
	int flags = fcntl(fd, F_GETFL), ret = 0;

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -errno;
	if (connect(fd, sa, len) < 0)
		ret = -errno;
	while (ret) {
		struct pollfd p[2] = { { .fd = cancel_fd, .events = POLLIN },
				       { .fd = fd, .events = POLLOUT } };
		/* A full Unix listener's queue: try again in a while. */
		bool retry = ret == -EAGAIN && sa->sa_family == AF_UNIX;
		uint64_t now = mono_ms();
		int wait, e = 0;
		socklen_t el = sizeof(e);

		if (!retry && ret != -EINPROGRESS && ret != -EINTR)
			break;
		if (now >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		wait = (int)(deadline - now);
		if (retry && wait > MIG_CONNECT_RETRY_MS)
			wait = MIG_CONNECT_RETRY_MS;
		if (poll(p, retry ? 1 : 2, wait) < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
		if (cancel_fd >= 0 && (p[0].revents & POLLIN)) {
			ret = -ECANCELED;
			break;
		}
		if (retry) {
			ret = connect(fd, sa, len) < 0 ? -errno : 0;
			continue;
		}
		if (!p[1].revents) {
			ret = -EINPROGRESS; /* nothing yet: wait on */
			continue;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
			e = errno;
		ret = -e;
		break;
	}
	if (!ret && fcntl(fd, F_SETFL, flags) < 0)
		ret = -errno;
	return ret;
}

static int connect_unix(const struct mig_uri *u, int cancel_fd, char *err,
			size_t errlen)
{
	struct sockaddr_un sa;
	int fd, ret;

	unix_addr(&sa, u->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = connect_timed(fd, (struct sockaddr *)&sa, sizeof(sa), u,
			    cancel_fd);
	if (ret < 0) {
		close(fd);
		goto fail;
	}
	return fd;
fail:
	set_err(err, errlen, "connect to unix:%s: %s", u->path, strerror(-ret));
	return ret;
}

/* The URI's address as written, for messages: [v6] keeps its brackets. */
static void tcp_name(const struct mig_uri *u, char *buf, size_t len)
{
	if (strchr(u->host, ':'))
		snprintf(buf, len, "tcp:[%s]:%s", u->host, u->port);
	else
		snprintf(buf, len, "tcp:%s:%s", u->host, u->port);
}

static int resolve(const struct mig_uri *u, bool passive, struct addrinfo **res,
		   char *err, size_t errlen)
{
	struct addrinfo hints = { 0 };
	char name[300];
	int ret;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	ret = getaddrinfo(*u->host ? u->host : NULL, u->port, &hints, res);
	if (ret == 0)
		return 0;
	tcp_name(u, name, sizeof(name));
	if (ret == EAI_SYSTEM) {
		ret = -errno;
		set_err(err, errlen, "resolve %s: %s", name, strerror(-ret));
		return ret;
	}
	set_err(err, errlen, "resolve %s: %s", name, gai_strerror(ret));
	return ret == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
}

static int connect_tcp(const struct mig_uri *u, int cancel_fd, char *err,
		       size_t errlen)
{
	struct addrinfo *res, *ai;
	char name[300];
	int fd = -1, ret;

	tcp_name(u, name, sizeof(name));
	if (!*u->host || !strcmp(u->port, "0")) {
		set_err(err, errlen, "connect to %s: %s", name,
			*u->host ? "port 0 is for the incoming side only" :
				   "no host to connect to");
		return -EINVAL;
	}
	ret = resolve(u, false, &res, err, errlen);
	if (ret < 0)
		return ret;
	ret = -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		ret = connect_timed(fd, ai->ai_addr, ai->ai_addrlen, u,
				    cancel_fd);
		if (ret == 0)
			break;
		close(fd);
		fd = -1;
		if (ret == -ECANCELED)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		set_err(err, errlen, "connect to %s: %s", name, strerror(-ret));
		return ret;
	}
	return fd;
}

static int open_file_out(const struct mig_uri *u, char *err, size_t errlen)
{
	int fd, ret;

	/* A symlink is refused rather than followed (O_NOFOLLOW): mmud
	 * may run as root in a directory others can write. */
	fd = open(u->path,
		  O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		set_err(err, errlen, "open file:%s: %s", u->path,
			ret == -ELOOP ? "is a symbolic link" : strerror(-ret));
		return ret;
	}
	if (u->offset && lseek(fd, (off_t)u->offset, SEEK_SET) < 0) {
		ret = -errno;
		set_err(err, errlen, "seek file:%s to %llu: %s", u->path,
			(unsigned long long)u->offset, strerror(-ret));
		close(fd);
		return ret;
	}
	return fd;
}

int mig_uri_connect(const struct mig_uri *u, int taken_fd, char *err,
		    size_t errlen)
{
	return mig_uri_connect_cancel(u, taken_fd, -1, err, errlen);
}

int mig_uri_connect_cancel(const struct mig_uri *u, int taken_fd, int cancel_fd,
			   char *err, size_t errlen)
{
	if (u->kind == MIG_URI_FD)
		return take_fd(u, taken_fd, err, errlen);
	if (taken_fd >= 0)
		close(taken_fd);
	switch (u->kind) {
	case MIG_URI_UNIX:
		return connect_unix(u, cancel_fd, err, errlen);
	case MIG_URI_TCP:
		return connect_tcp(u, cancel_fd, err, errlen);
	case MIG_URI_FILE:
		return open_file_out(u, err, errlen);
	default:
		set_err(err, errlen, "unknown migration transport");
		return -EINVAL;
	}
}

/*
 * Frees a Unix socket path for bind: a socket file nobody listens on is
 * stale and goes (as rpc/unix_socket.c does for the QMP socket); a live
 * socket, or a file of another kind, stays and is refused.
 */
static int clear_stale(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, ret;

	if (lstat(path, &st) < 0)
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
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static int listen_unix(const struct mig_uri *u, int *listen_fd, char *bound,
		       size_t boundlen, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	int fd = -1, ret;

	unix_addr(&sa, u->path);
	ret = clear_stale(u->path, &sa);
	if (ret < 0) {
		set_err(err, errlen, "listen on unix:%s: %s", u->path,
			ret == -EEXIST	   ? "a file that is not a socket is "
					     "in the way" :
			ret == -EADDRINUSE ? "another process listens there" :
					     strerror(-ret));
		return ret;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto fail;
	/* The file gets the socket inode's mode less the umask: 0600 at
	 * most from the start, with no chmod by path. */
	if (fchmod(fd, 0600) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	if (listen(fd, 1) < 0) {
		ret = -errno;
		unlink(u->path);
		goto fail_ret;
	}
	*listen_fd = fd;
	snprintf(bound, boundlen, "unix:%s", u->path);
	return 0;
fail:
	ret = -errno;
fail_ret:
	if (fd >= 0)
		close(fd);
	set_err(err, errlen, "listen on unix:%s: %s", u->path, strerror(-ret));
	return ret;
}

static int listen_tcp(const struct mig_uri *u, int *listen_fd, char *bound,
		      size_t boundlen, char *err, size_t errlen)
{
	struct addrinfo *res, *ai;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char name[300], host[NI_MAXHOST], port[NI_MAXSERV];
	int fd = -1, ret, one = 1;

	tcp_name(u, name, sizeof(name));
	ret = resolve(u, true, &res, err, errlen);
	if (ret < 0)
		return ret;
	ret = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
			       sizeof(one)) == 0 &&
		    bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 1) == 0)
			break;
		ret = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		set_err(err, errlen, "listen on %s: %s", name, strerror(-ret));
		return ret;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, sslen, host, sizeof(host), port,
			sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV)) {
		ret = -errno ? -errno : -EINVAL;
		close(fd);
		set_err(err, errlen,
			"listen on %s: cannot read the bound "
			"address",
			name);
		return ret;
	}
	if (ss.ss_family == AF_INET6)
		snprintf(bound, boundlen, "tcp:[%s]:%s", host, port);
	else
		snprintf(bound, boundlen, "tcp:%s:%s", host, port);
	*listen_fd = fd;
	return 0;
}

static int open_file_in(const struct mig_uri *u, int *data_fd, char *err,
			size_t errlen)
{
	int fd, ret;

	fd = open(u->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		set_err(err, errlen, "open file:%s: %s", u->path,
			strerror(-ret));
		return ret;
	}
	if (lseek(fd, (off_t)u->offset, SEEK_SET) < 0) {
		ret = -errno;
		set_err(err, errlen, "seek file:%s to %llu: %s", u->path,
			(unsigned long long)u->offset, strerror(-ret));
		close(fd);
		return ret;
	}
	*data_fd = fd;
	return 0;
}

int mig_uri_listen(const struct mig_uri *u, int taken_fd, int *listen_fd,
		   int *data_fd, char *bound, size_t boundlen, char *err,
		   size_t errlen)
{
	int ret;

	*listen_fd = -1;
	*data_fd = -1;
	if (boundlen)
		bound[0] = '\0';
	if (u->kind == MIG_URI_FD) {
		ret = take_fd(u, taken_fd, err, errlen);
		if (ret < 0)
			return ret;
		*data_fd = ret;
		return 0;
	}
	if (taken_fd >= 0)
		close(taken_fd);
	switch (u->kind) {
	case MIG_URI_UNIX:
		return listen_unix(u, listen_fd, bound, boundlen, err, errlen);
	case MIG_URI_TCP:
		return listen_tcp(u, listen_fd, bound, boundlen, err, errlen);
	case MIG_URI_FILE:
		return open_file_in(u, data_fd, err, errlen);
	default:
		set_err(err, errlen, "unknown migration transport");
		return -EINVAL;
	}
}
