/*
 * Migration URIs (docs/QMP.md, "Migration"): QEMU's spellings, parsed,
 * connected (the source) and listened on or opened (the destination),
 * and the named descriptors QMP's getfd hands in for fd:NAME.
 *
 *   unix:PATH               a Unix stream socket
 *   tcp:HOST:PORT           IPv4, a name, or [IPv6]; PORT 0 on the
 *                           incoming side picks a free port
 *   fd:NAME                 a descriptor passed earlier with getfd
 *   file:PATH[,offset=N]    a regular file (save, or restore with
 *                           --incoming file:PATH)
 *
 * Anything else is refused with a message naming the URI.
 */
#ifndef MMUD_DAEMON_MIGRATE_URI_H
#define MMUD_DAEMON_MIGRATE_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mig_uri_kind {
	MIG_URI_UNIX,
	MIG_URI_TCP,
	MIG_URI_FD,
	MIG_URI_FILE,
};

struct mig_uri {
	enum mig_uri_kind kind;
	char *path; /* unix, file */
	char *host; /* tcp: without the brackets of an IPv6 literal */
	char *port; /* tcp: as written ("0" allowed for incoming) */
	char *fdname; /* fd */
	uint64_t offset; /* file: where the stream starts */
	/* unix, tcp: how long the source's connect may wait for the
	 * peer; 0 (what mig_uri_parse() sets): MIG_CONNECT_TIMEOUT_MS */
	unsigned int connect_timeout_ms;
};

#define MIG_CONNECT_TIMEOUT_MS 10000
/* How often a connect to a full Unix listener is tried again. */
#define MIG_CONNECT_RETRY_MS 10

/* 0, or -EINVAL with the reason in err ("invalid migration URI
 * 'foo:bar': unknown transport 'foo'"); u is filled only on success.
 * Strings are owned: mig_uri_free(). */
int mig_uri_parse(const char *s, struct mig_uri *u, char *err, size_t errlen);
void mig_uri_free(struct mig_uri *u);

/* ---- named descriptors (QMP getfd/closefd) ---------------------------- */

struct mig_fds;

/* How many named descriptors are held at once (a client controls it),
 * and the longest name (getfd's fdname, fd:NAME). */
#define MIG_FDS_MAX 64
#define MIG_FDNAME_MAX 127

/* NULL means -ENOMEM. */
struct mig_fds *mig_fds_new(void);
/* Closes every descriptor still held. */
void mig_fds_free(struct mig_fds *f);
/* Loop thread. Keeps fd under name, closing one that had the name
 * before (as QEMU's getfd does). 0, -ENOSPC with MIG_FDS_MAX other
 * names held, or -ENOMEM (fd then closed). */
int mig_fds_put(struct mig_fds *f, const char *name, int fd);
/* Loop thread. Closes and forgets name: 0, or -ENOENT. */
int mig_fds_close(struct mig_fds *f, const char *name);
/* Loop thread. Takes the descriptor out (the caller owns it now): fd,
 * or -ENOENT. */
int mig_fds_take(struct mig_fds *f, const char *name);

/*
 * daemon/fds.c: QEMU's getfd and closefd, registered on qmp, keep
 * descriptors passed on the QMP socket (rpc.h, qmp_request_take_fd) in
 * the registry returned, where the migration engine takes fd:NAME's
 * (mig_fds_take, loop thread). Free it with mig_fds_free() after the
 * QMP server. NULL means -ENOMEM.
 */
struct qmp_server;
struct mig_fds *mmud_fds_new(struct qmp_server *qmp);

/* ---- the two ends ----------------------------------------------------- */

/*
 * The source: a connected, blocking stream descriptor for u (file:
 * created or truncated 0600 at offset; fd: the descriptor taken from
 * fds, which must be taken on the loop thread first and passed in as
 * *taken_fd, so this call may run on the migration thread). fd or
 * -errno with the reason in err ("connect to unix:/x: No such file or
 * directory"); -ETIMEDOUT when the peer does not answer within the
 * connect timeout. The call owns taken_fd whatever it returns (-1 for the
 * other kinds); an fd: descriptor comes back blocking and close-on-exec.
 */
int mig_uri_connect(const struct mig_uri *u, int taken_fd, char *err,
		    size_t errlen);
/* The same, ended early with -ECANCELED when cancel_fd (an eventfd, or
 * -1: none) becomes readable while a unix: or tcp: connect waits. */
int mig_uri_connect_cancel(const struct mig_uri *u, int taken_fd, int cancel_fd,
			   char *err, size_t errlen);

/*
 * The destination, on the loop thread before migrate-incoming answers:
 * for unix and tcp a listening socket (non-blocking, close-on-exec) in
 * *listen_fd and *data_fd = -1; for file and fd the stream itself in
 * *data_fd (file opened read-only, positioned at offset) and *listen_fd
 * = -1. bound receives the address as query-migrate's socket-address
 * reports it for a socket: "unix:PATH" or "tcp:HOST:PORT" with the
 * port actually bound (the numeric address: "tcp:[::1]:41234"). 0 or
 * -errno with the reason in err. taken_fd as for mig_uri_connect().
 */
int mig_uri_listen(const struct mig_uri *u, int taken_fd, int *listen_fd,
		   int *data_fd, char *bound, size_t boundlen, char *err,
		   size_t errlen);

#endif
