/*
 * The client half of QMP: a blocking connection to a Unix socket with
 * poll-based timeouts, used by mmuctl and the tests. It reads the
 * server's CRLF-terminated lines (a server message never contains a raw
 * newline), keeps events that arrive while a command runs, and matches
 * replies to commands by id. It knows no command beyond
 * qmp_capabilities. A connection belongs to one thread.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "rpc_int.h"

#define MAX_LINE (16u << 20)
#define MAX_EVENTS 1024

struct held_event {
	json_t *msg;
	struct held_event *next;
};

struct qmp_conn {
	int fd;
	json_t *greeting;
	char *buf; /* received, not yet returned */
	size_t len, cap;
	long long next_id;
	struct held_event *ev_head, **ev_tail;
	unsigned int nr_events;
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until @deadline (-1: none), at least 0. */
static int left(long long deadline)
{
	long long l;

	if (deadline < 0)
		return -1;
	l = deadline - now_ms();
	return l < 0 ? 0 : (int)l;
}

static long long deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

static int wait_fd(int fd, short what, long long deadline)
{
	struct pollfd p = { .fd = fd, .events = what };
	int n;

	do {
		n = poll(&p, 1, left(deadline));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

/* Reads one line (without its line end) into a new JSON value. */
static int read_message(struct qmp_conn *c, long long deadline, json_t **out)
{
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		ssize_t n;
		int ret;

		if (nl) {
			size_t line = (size_t)(nl - c->buf);
			size_t text = line;
			json_error_t err;
			json_t *msg;

			if (text && c->buf[text - 1] == '\r')
				text--;
			msg = json_loadb(c->buf, text, 0, &err);
			memmove(c->buf, nl + 1, c->len - line - 1);
			c->len -= line + 1;
			if (!msg || !json_is_object(msg)) {
				json_decref(msg);
				return -EPROTO;
			}
			*out = msg;
			return 0;
		}
		if (c->len >= MAX_LINE)
			return -EPROTO;
		if (c->cap - c->len < 65536) {
			size_t cap = c->cap ? c->cap * 2 : 131072;
			char *b = realloc(c->buf, cap);

			if (!b)
				return -ENOMEM;
			c->buf = b;
			c->cap = cap;
		}
		ret = wait_fd(c->fd, POLLIN, deadline);
		if (ret < 0)
			return ret;
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		c->len += (size_t)n;
	}
}

int qmp_conn_open(const char *path, int timeout_ms, struct qmp_conn **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct qmp_conn *c;
	json_t *g = NULL;
	int ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ev_tail = &c->ev_head;
	c->next_id = 1;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		ret = -errno;
		free(c);
		return ret;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		goto fail;
	}
	ret = read_message(c, deadline_of(timeout_ms), &g);
	if (ret < 0)
		goto fail;
	if (!json_is_object(json_object_get(g, "QMP"))) {
		json_decref(g);
		ret = -EPROTO;
		goto fail;
	}
	c->greeting = g;
	*out = c;
	return 0;
fail:
	qmp_conn_close(c);
	return ret;
}

json_t *qmp_conn_greeting(const struct qmp_conn *conn)
{
	return conn->greeting;
}

int qmp_conn_fd(const struct qmp_conn *conn)
{
	return conn->fd;
}

int qmp_conn_send_raw(struct qmp_conn *conn, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(conn->fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int qmp_conn_send(struct qmp_conn *conn, const json_t *msg)
{
	char *s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER), *t;
	size_t n;
	int ret;

	if (!s)
		return -ENOMEM;
	/*
	 * The newline goes in the same send: the server acts on a whole
	 * object without waiting for it, and after quit it may close the
	 * connection before a second send, which would then fail (EPIPE).
	 */
	n = strlen(s);
	t = realloc(s, n + 2);
	if (!t) {
		free(s);
		return -ENOMEM;
	}
	t[n] = '\n';
	t[n + 1] = '\0';
	ret = qmp_conn_send_raw(conn, t, n + 1);
	free(t);
	return ret;
}

static void hold_event(struct qmp_conn *c, json_t *msg)
{
	struct held_event *e;

	if (c->nr_events >= MAX_EVENTS) {
		/* Drop the oldest: a bounded memory of what happened. */
		e = c->ev_head;
		c->ev_head = e->next;
		if (!c->ev_head)
			c->ev_tail = &c->ev_head;
		json_decref(e->msg);
		free(e);
		c->nr_events--;
	}
	e = malloc(sizeof(*e));
	if (!e) {
		json_decref(msg);
		return;
	}
	e->msg = msg;
	e->next = NULL;
	*c->ev_tail = e;
	c->ev_tail = &e->next;
	c->nr_events++;
}

int qmp_conn_recv(struct qmp_conn *conn, int timeout_ms, json_t **msg)
{
	struct held_event *e = conn->ev_head;

	if (e) {
		conn->ev_head = e->next;
		if (!conn->ev_head)
			conn->ev_tail = &conn->ev_head;
		conn->nr_events--;
		*msg = e->msg;
		free(e);
		return 0;
	}
	return read_message(conn, deadline_of(timeout_ms), msg);
}

int qmp_conn_execute(struct qmp_conn *conn, const char *cmd, json_t *args,
		     int timeout_ms, json_t **reply)
{
	long long deadline = deadline_of(timeout_ms);
	long long id = conn->next_id++;
	json_t *req;
	int ret;

	req = json_pack("{s:s}", "execute", cmd);
	if (!req) {
		json_decref(args);
		return -ENOMEM;
	}
	if (args)
		json_object_set_new(req, "arguments", args);
	json_object_set_new(req, "id", json_integer(id));
	ret = qmp_conn_send(conn, req);
	json_decref(req);
	if (ret < 0)
		return ret;
	for (;;) {
		json_t *msg, *rid;

		ret = read_message(conn, deadline, &msg);
		if (ret < 0)
			return ret;
		if (json_object_get(msg, "event")) {
			hold_event(conn, msg);
			continue;
		}
		rid = json_object_get(msg, "id");
		if (json_is_integer(rid) && json_integer_value(rid) == id) {
			*reply = msg;
			return 0;
		}
		/* Not ours (an earlier raw send, say): clients drop those. */
		json_decref(msg);
	}
}

int qmp_conn_negotiate(struct qmp_conn *conn, int timeout_ms)
{
	json_t *reply;
	int ret;

	ret = qmp_conn_execute(conn, "qmp_capabilities", NULL, timeout_ms,
			       &reply);
	if (ret < 0)
		return ret;
	ret = json_object_get(reply, "return") ? 0 : -EPROTO;
	json_decref(reply);
	return ret;
}

void qmp_conn_close(struct qmp_conn *conn)
{
	struct held_event *e, *next;

	if (!conn)
		return;
	for (e = conn->ev_head; e; e = next) {
		next = e->next;
		json_decref(e->msg);
		free(e);
	}
	if (conn->fd >= 0)
		close(conn->fd);
	json_decref(conn->greeting);
	free(conn->buf);
	free(conn);
}
