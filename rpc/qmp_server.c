/*
 * The QMP server: the listening Unix socket, one connection object per
 * client, the per-client request queue that keeps replies in request
 * order, the command table with its argument schemas, the built-in
 * protocol commands (qmp_capabilities, query-commands, query-version),
 * event broadcast, and the thread-safe "call soon" hook through which
 * work done elsewhere completes a request. It owns no VM state: the
 * daemon registers handlers and answers through qmp_reply_*().
 *
 * Input is read with recvmsg() rather than by the bufferevent (which
 * only writes), so descriptors a client passes with SCM_RIGHTS can
 * travel with the request they came for (rpc.h, QMP_MAX_CLIENT_FDS).
 *
 * Everything here runs on the loop thread (the thread that dispatches
 * the event_base) except qmp_server_call_soon(). Fields are tagged (c)
 * constant after creation, (e) loop thread only, (qmp_server->call_lock) under
 * it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "rpc_int.h"

#define MAX_NAME 127

struct command {
	char *name; /* (c) */
	const struct qmp_arg *args; /* (c) */
	qmp_handler_fn *fn; /* (c) */
	void *opaque; /* (c) */
	TAILQ_ENTRY(command) link; /* (e) registration order */
};

struct client;

/*
 * A request waits as its text (text, len) and is parsed when its turn
 * comes (dispatch()); the parsed message lives only until its handler is
 * called, and what outlives it is the id, serialized (id_text), and the
 * arguments. charge is what the request counts against its client's and
 * the server's queue limits (rpc.h) until it is freed.
 */
struct qmp_request {
	struct qmp_server *srv; /* (c) */
	struct client *client; /* (e) NULL once the client has gone */
	char *text; /* (e) the raw text until parsed, or NULL */
	size_t len; /* (e) */
	size_t charge; /* (e) bytes counted in the queue limits */
	json_t *msg; /* (e) the parsed input, or NULL */
	char *id_text; /* (e) the id as it is echoed, or NULL */
	json_t *args; /* (e) the arguments object (owned) */
	const char *cmd; /* (e) the command's name once found, or NULL */
	json_t *early; /* (c) a response known before dispatch */
	int fds[QMP_MAX_CLIENT_FDS]; /* (e) passed with it, not yet taken */
	unsigned int nr_fds; /* (e) */
	bool dispatched; /* (e) the handler has been called */
	TAILQ_ENTRY(qmp_request) link; /* (e) the client's queue */
};

TAILQ_HEAD(request_queue, qmp_request);

/*
 * A descriptor received with the input bytes up to stream offset end
 * (exclusive), not yet given to a request.
 */
struct rx_fd {
	uint64_t end;
	int fd;
};

struct client {
	struct qmp_server *srv; /* (c) */
	struct bufferevent *bev; /* (e) output only; NULL once dead */
	struct event *read_ev; /* (c) input: recvmsg() in recv_cb() */
	uint64_t in_base; /* (e) stream offset of the input's first byte */
	uint64_t in_total; /* (e) bytes received so far */
	struct rx_fd rx_fds[QMP_MAX_CLIENT_FDS]; /* (e) in arrival order */
	unsigned int nr_rx_fds; /* (e) */
	/* (e) rx_fds plus those held by this client's live requests */
	unsigned int nr_fds;
	time_t fds_refusal_logged; /* (e) */
	struct event *free_ev; /* (c) frees the client from the loop */
	struct event *negotiate_ev; /* (c) closes it if not negotiated */
	struct qmp_framer framer; /* (e) */
	struct request_queue queue; /* (e) the head may be in flight */
	unsigned int nr_queued; /* (e) */
	size_t queued_bytes; /* (e) the charges of the queue's requests */
	bool negotiated; /* (e) qmp_capabilities succeeded */
	bool closing; /* (e) input refused; close after replies */
	bool eof; /* (e) the client shut down its side */
	bool throttled; /* (e) reading stopped: queue full */
	bool dead; /* (e) waiting for free_ev */
	bool running; /* (e) run_queue() is on the stack */
	TAILQ_ENTRY(client) link; /* (e) */
};

struct deferred {
	void (*fn)(void *arg);
	void *arg;
	struct deferred *next;
};

struct qmp_server {
	struct event_base *base; /* (c) */
	struct evconnlistener *listener; /* (c) */
	struct qmp_unix_socket *sock; /* (c) the socket file, for unlink */
	json_t *version; /* (c) VersionInfo */
	TAILQ_HEAD(, command) commands; /* (e) */
	TAILQ_HEAD(, client) clients; /* (e) */
	unsigned int nr_clients; /* (e) */
	size_t queued_bytes; /* (e) every live request's charge */
	unsigned int negotiate_ms; /* (e) qmp_server_set_negotiate_timeout */
	struct qmp_accept_backoff *backoff; /* (c) while accept() fails */
	time_t refusal_logged; /* (e) when a refusal was last logged */
	struct event *resume_ev; /* (c) room again under the total limit */
	int call_fd; /* (c) eventfd that wakes the loop */
	struct event *call_ev; /* (c) */
	pthread_mutex_t call_lock;
	/* (qmp_server->call_lock) FIFO of call_soon work */
	struct deferred *call_head;
	struct deferred **call_tail; /* (qmp_server->call_lock) */
};

static void run_queue(struct client *c);
static void process_input(struct client *c);

const char *qmp_error_class_name(enum qmp_error_class cls)
{
	switch (cls) {
	case QMP_ERROR_GENERIC:
		break;
	case QMP_ERROR_COMMAND_NOT_FOUND:
		return "CommandNotFound";
	case QMP_ERROR_DEVICE_NOT_ACTIVE:
		return "DeviceNotActive";
	case QMP_ERROR_DEVICE_NOT_FOUND:
		return "DeviceNotFound";
	case QMP_ERROR_KVM_MISSING_CAP:
		return "KVMMissingCap";
	}
	return "GenericError";
}

static json_t *error_object(enum qmp_error_class cls, const char *desc)
{
	return json_pack("{s:{s:s, s:s}}", "error", "class",
			 qmp_error_class_name(cls), "desc", desc);
}

/* ---- clients ---------------------------------------------------------- */

/*
 * A dead client is freed from the loop, never from inside a callback
 * that may still use it (a reply written from within run_queue(), say).
 */
static void request_free(struct qmp_request *r);

static void client_kill(struct client *c)
{
	struct qmp_request *r;

	if (c->dead)
		return;
	c->dead = true;
	evtimer_del(c->negotiate_ev);
	event_del(c->read_ev);
	for (unsigned int i = 0; i < c->nr_rx_fds; i++)
		close(c->rx_fds[i].fd);
	c->nr_rx_fds = 0;
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	while ((r = TAILQ_FIRST(&c->queue)) != NULL) {
		TAILQ_REMOVE(&c->queue, r, link);
		/* Its handler may still hold it: then it is orphaned, and
		 * its charge stays on the server until it is answered. */
		r->client = NULL;
		if (!r->dispatched)
			request_free(r);
	}
	c->nr_queued = 0;
	c->queued_bytes = 0;
	event_active(c->free_ev, EV_TIMEOUT, 0);
}

static void client_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	(void)fd;
	(void)what;
	TAILQ_REMOVE(&c->srv->clients, c, link);
	c->srv->nr_clients--;
	event_free(c->free_ev);
	event_free(c->negotiate_ev);
	event_free(c->read_ev);
	free(c);
}

/* Closes a client that asked to close once its output has drained. */
static void maybe_finish_closing(struct client *c)
{
	if (c->dead || !(c->closing || c->eof) || !TAILQ_EMPTY(&c->queue))
		return;
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		client_kill(c);
}

/* Writes @msg, with "id": @id_text (serialized) last when not NULL. */
static void client_write_id(struct client *c, const json_t *msg,
			    const char *id_text)
{
	struct evbuffer *out;
	size_t len;
	char *line;

	if (c->dead)
		return;
	line = qmp_dump_line_id(msg, id_text, &len);
	out = bufferevent_get_output(c->bev);
	if (!line || evbuffer_add(out, line, len) < 0) {
		free(line);
		client_kill(c);
		return;
	}
	free(line);
	/* A client that never reads must not grow our memory without end. */
	if (evbuffer_get_length(out) > QMP_MAX_OUTPUT)
		client_kill(c);
}

static void client_write(struct client *c, const json_t *msg)
{
	client_write_id(c, msg, NULL);
}

static struct qmp_request *request_new(struct client *c)
{
	struct qmp_request *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->srv = c->srv;
	r->client = c;
	return r;
}

/* Counts @n more bytes of @r against its client and the server. */
static void charge(struct qmp_request *r, size_t n)
{
	r->charge += n;
	r->srv->queued_bytes += n;
	if (r->client)
		r->client->queued_bytes += n;
}

static void request_free(struct qmp_request *r)
{
	struct qmp_server *srv = r->srv;
	bool was_full = srv->queued_bytes >= QMP_MAX_TOTAL_QUEUED;

	srv->queued_bytes -= r->charge;
	if (r->client)
		r->client->queued_bytes -= r->charge;
	/* Clients stopped by the total limit read again (resume_cb). */
	if (was_full && srv->queued_bytes < QMP_MAX_TOTAL_QUEUED)
		event_active(srv->resume_ev, EV_TIMEOUT, 0);
	/* Passed descriptors the handler did not take. */
	for (unsigned int i = 0; i < r->nr_fds; i++)
		close(r->fds[i]);
	if (r->client)
		r->client->nr_fds -= r->nr_fds;
	free(r->text);
	free(r->id_text);
	json_decref(r->msg);
	json_decref(r->args);
	json_decref(r->early);
	free(r);
}

static void enqueue(struct client *c, struct qmp_request *r)
{
	TAILQ_INSERT_TAIL(&c->queue, r, link);
	c->nr_queued++;
}

/* Queues a response that needs no handler (parse and envelope errors). */
static void enqueue_error(struct client *c, json_t *id, const char *desc)
{
	struct qmp_request *r = request_new(c);

	if (!r) {
		client_kill(c);
		return;
	}
	r->early = error_object(QMP_ERROR_GENERIC, desc);
	if (!r->early) {
		free(r);
		client_kill(c);
		return;
	}
	if (id)
		json_object_set(r->early, "id", id);
	enqueue(c, r);
}

/* ---- replies ---------------------------------------------------------- */

static void finish(struct qmp_request *r, json_t *resp)
{
	struct client *c = r->client;

	if (!c) {
		/* Orphaned: the client went away while the handler ran. */
		json_decref(resp);
		request_free(r);
		return;
	}
	RPC_ASSERT(r->dispatched && r == TAILQ_FIRST(&c->queue));
	if (resp) {
		client_write_id(c, resp, r->id_text);
		json_decref(resp);
	} else {
		client_kill(c);
	}
	if (!c->dead) {
		TAILQ_REMOVE(&c->queue, r, link);
		c->nr_queued--;
		request_free(r);
		if (!c->running)
			run_queue(c);
	} else {
		/* client_kill() orphaned it. */
		request_free(r);
	}
}

void qmp_reply_return(struct qmp_request *req, json_t *ret)
{
	json_t *resp = json_object();

	if (resp && ret && json_object_set_new(resp, "return", ret) == 0) {
		finish(req, resp);
		return;
	}
	if (!resp)
		json_decref(ret);
	json_decref(resp);
	finish(req, error_object(QMP_ERROR_GENERIC, "Out of memory"));
}

void qmp_reply_ok(struct qmp_request *req)
{
	qmp_reply_return(req, json_object());
}

void qmp_reply_error(struct qmp_request *req, enum qmp_error_class cls,
		     const char *fmt, ...)
{
	va_list ap;
	char *desc;

	va_start(ap, fmt);
	if (vasprintf(&desc, fmt, ap) < 0)
		desc = NULL;
	va_end(ap);
	finish(req, error_object(cls, desc ? desc : "Out of memory"));
	free(desc);
}

void qmp_reply_invalid_value(struct qmp_request *req, const char *field,
			     const char *what)
{
	qmp_reply_error(req, QMP_ERROR_GENERIC, "Parameter '%s' expects %s",
			field, what);
}

struct qmp_server *qmp_request_server(const struct qmp_request *req)
{
	return req->srv;
}

const char *qmp_request_command(const struct qmp_request *req)
{
	return req->cmd;
}

bool qmp_request_has_client(const struct qmp_request *req)
{
	return req->client != NULL;
}

int qmp_request_take_fd(struct qmp_request *req)
{
	int fd;

	if (!req->nr_fds)
		return -1;
	fd = req->fds[0];
	req->nr_fds--;
	memmove(req->fds, req->fds + 1, req->nr_fds * sizeof(req->fds[0]));
	if (req->client)
		req->client->nr_fds--;
	return fd;
}

/* ---- dispatch --------------------------------------------------------- */

static struct command *find_command(struct qmp_server *srv, const char *name)
{
	struct command *cmd;

	TAILQ_FOREACH(cmd, &srv->commands, link)
	if (!strcmp(cmd->name, name))
		return cmd;
	return NULL;
}

/*
 * The envelope checks of QEMU's qmp_dispatch_check_obj(), in its order,
 * with its texts. "id" is taken out first, as QEMU's monitor does, so any
 * later error still echoes it. Returns NULL or the error text.
 */
static const char *check_envelope(struct qmp_request *r, char *buf, size_t n)
{
	const char *key;
	json_t *v;

	if (!json_is_object(r->msg))
		return "QMP input must be a JSON object";
	v = json_object_get(r->msg, "id");
	if (v) {
		size_t k;

		r->id_text = qmp_dump_text(v, &k);
		if (!r->id_text)
			return "Out of memory";
		charge(r, k);
	}
	json_object_foreach(r->msg, key, v)
	{
		if (!strcmp(key, "id"))
			continue;
		if (!strcmp(key, "execute")) {
			if (!json_is_string(v) || qmp_json_is_u64_only(v))
				return "QMP input member 'execute' must be a "
				       "string";
			r->cmd = json_string_value(v);
		} else if (!strcmp(key, "arguments")) {
			if (!json_is_object(v))
				return "QMP input member 'arguments' must be "
				       "an object";
		} else {
			/* exec-oob included: we offer no oob capability. */
			snprintf(buf, n,
				 "QMP input member '%.64s' is unexpected", key);
			return buf;
		}
	}
	if (!r->cmd)
		return "QMP input lacks member 'execute'";
	return NULL;
}

static void dispatch(struct client *c, struct qmp_request *r)
{
	struct command *cmd;
	json_error_t jerr;
	const char *err;
	char buf[128];
	char *msg;

	r->dispatched = true;
	/*
	 * Parsed only now, one request at a time: duplicate keys are an
	 * error, as in QEMU's parser; NUL in strings stays refused;
	 * integers up to 2^64 - 1 are read as QEMU reads them; the parse
	 * may allocate at most QMP_MAX_PARSED (qmp_parse()).
	 */
	r->msg = qmp_parse(r->text, r->len,
			   JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	free(r->text);
	r->text = NULL;
	if (!r->msg) {
		qmp_reply_error(r, QMP_ERROR_GENERIC, "JSON parse error, %s",
				jerr.text);
		return;
	}
	err = check_envelope(r, buf, sizeof(buf));
	if (err) {
		r->cmd = NULL;
		qmp_reply_error(r, QMP_ERROR_GENERIC, "%s", err);
		return;
	}
	if (!c->negotiated && strcmp(r->cmd, "qmp_capabilities")) {
		qmp_reply_error(r, QMP_ERROR_COMMAND_NOT_FOUND,
				"Expecting capabilities negotiation with "
				"'qmp_capabilities'");
		return;
	}
	if (c->negotiated && !strcmp(r->cmd, "qmp_capabilities")) {
		qmp_reply_error(r, QMP_ERROR_COMMAND_NOT_FOUND,
				"Capabilities negotiation is already "
				"complete, command ignored");
		return;
	}
	cmd = find_command(c->srv, r->cmd);
	if (!cmd) {
		qmp_reply_error(r, QMP_ERROR_COMMAND_NOT_FOUND,
				"The command %s has not been found", r->cmd);
		return;
	}
	r->args = json_object_get(r->msg, "arguments");
	if (r->args)
		json_incref(r->args);
	else
		r->args = json_object();
	if (!r->args) {
		qmp_reply_error(r, QMP_ERROR_GENERIC, "Out of memory");
		return;
	}
	msg = qmp_args_check(cmd->args, r->args);
	if (msg) {
		qmp_reply_error(r, QMP_ERROR_GENERIC, "%s", msg);
		free(msg);
		return;
	}
	/* The handler may answer much later: keep only what it needs. */
	r->cmd = cmd->name;
	json_decref(r->msg);
	r->msg = NULL;
	cmd->fn(r, r->args, cmd->opaque);
}

/*
 * Answers queued requests in order until the head one is in flight (an
 * asynchronous handler) or the queue is empty; then resumes reading if
 * it had stopped for a full queue.
 */
/* Whether @c may queue another request (rpc.h, the queue limits). */
static bool can_queue(const struct client *c)
{
	return c->nr_queued < QMP_MAX_QUEUED &&
	       c->queued_bytes < QMP_MAX_QUEUED_BYTES &&
	       c->srv->queued_bytes < QMP_MAX_TOTAL_QUEUED;
}

static void read_on(struct client *c)
{
	event_add(c->read_ev, NULL);
}

static void read_off(struct client *c)
{
	event_del(c->read_ev);
}

static void run_queue(struct client *c)
{
	struct qmp_request *r;

	if (c->running)
		return;
	c->running = true;
	while (!c->dead && (r = TAILQ_FIRST(&c->queue)) != NULL) {
		if (r->dispatched)
			break; /* in flight: finish() continues */
		if (r->early) {
			json_t *resp = r->early;

			r->early = NULL;
			r->dispatched = true;
			finish(r, resp);
			continue;
		}
		dispatch(c, r);
	}
	c->running = false;
	if (c->dead)
		return;
	if (c->throttled && can_queue(c)) {
		c->throttled = false;
		if (!c->closing && !c->eof)
			read_on(c);
		/* Input may already be buffered: use it now. */
		process_input(c);
	}
	maybe_finish_closing(c);
}

/* ---- input ------------------------------------------------------------ */

/* Queues one text, unparsed: dispatch() parses it when its turn comes. */
static void enqueue_text(struct client *c, const char *text, size_t len)
{
	struct qmp_request *r = request_new(c);

	if (r)
		r->text = malloc(len ? len : 1);
	if (!r || !r->text) {
		free(r);
		client_kill(c);
		return;
	}
	memcpy(r->text, text, len);
	r->len = len;
	charge(r, len);
	enqueue(c, r);
}

/* ---- passed descriptors ----------------------------------------------- */

static bool is_blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return false;
	return true;
}

/* Closes the oldest waiting descriptor: no request will take it. */
static void drop_first_fd(struct client *c)
{
	close(c->rx_fds[0].fd);
	c->nr_fds--;
	c->nr_rx_fds--;
	memmove(c->rx_fds, c->rx_fds + 1, c->nr_rx_fds * sizeof(c->rx_fds[0]));
}

/*
 * Descriptors belong to the request whose text the sendmsg() that
 * carried them completed: the last text that starts before the end of
 * that read, which is the one containing its last byte, or the one
 * followed only by blanks up to it. @r's text is [start, end) of the
 * input @p (@len bytes, from stream offset in_base).
 */
static void attach_fds(struct client *c, struct qmp_request *r, const char *p,
		       size_t len, size_t start, size_t end)
{
	uint64_t abs_start = c->in_base + start, abs_end = c->in_base + end;

	/* Those whose bytes ended before this text no text will take. */
	while (c->nr_rx_fds && c->rx_fds[0].end <= abs_start)
		drop_first_fd(c);
	while (c->nr_rx_fds) {
		const struct rx_fd *x = &c->rx_fds[0];

		if (x->end > abs_end &&
		    !is_blank(p + end, (size_t)(x->end - c->in_base) - end))
			break; /* a later text owns it */
		RPC_ASSERT(x->end - c->in_base <= len);
		r->fds[r->nr_fds++] = x->fd;
		c->nr_rx_fds--;
		memmove(c->rx_fds, c->rx_fds + 1,
			c->nr_rx_fds * sizeof(c->rx_fds[0]));
	}
}

/* Closes descriptors whose bytes are all consumed with no request. */
static void drop_stray_fds(struct client *c)
{
	while (c->nr_rx_fds && c->rx_fds[0].end <= c->in_base)
		drop_first_fd(c);
}

/* Holds a received descriptor, or closes it past the client's limit. */
static void keep_fd(struct client *c, int fd)
{
	time_t now;

	if (c->nr_fds < QMP_MAX_CLIENT_FDS) {
		c->rx_fds[c->nr_rx_fds].end = c->in_total;
		c->rx_fds[c->nr_rx_fds].fd = fd;
		c->nr_rx_fds++;
		c->nr_fds++;
		return;
	}
	close(fd);
	now = time(NULL);
	if (now != c->fds_refusal_logged) {
		c->fds_refusal_logged = now;
		fprintf(stderr,
			"<4>qmp: a client holds %u passed descriptors: "
			"closing more it sends\n",
			QMP_MAX_CLIENT_FDS);
	}
}

/* Refuses the rest of this client's input and closes it after replies. */
static void fail_input(struct client *c, const char *desc)
{
	enqueue_error(c, NULL, desc);
	c->closing = true;
	if (!c->dead) {
		read_off(c);
		evbuffer_drain(
			bufferevent_get_input(c->bev),
			evbuffer_get_length(bufferevent_get_input(c->bev)));
		c->in_base = c->in_total;
		drop_stray_fds(c);
	}
}

static void process_input(struct client *c)
{
	struct evbuffer *in;

	while (!c->dead && !c->closing) {
		enum qmp_frame f;
		size_t start = 0, end = 0, drop, len;
		const char *p;

		if (!can_queue(c)) {
			/* Back-pressure until run_queue() drains, or
			 * resume_cb() when others' requests free room. */
			c->throttled = true;
			read_off(c);
			break;
		}
		in = bufferevent_get_input(c->bev);
		len = evbuffer_get_length(in);
		if (len == 0)
			break;
		/* The framer bounds a pending text to QMP_MAX_MESSAGE, so
		 * this never makes more than that much contiguous. */
		p = (const char *)evbuffer_pullup(in, (ssize_t)len);
		if (!p) {
			client_kill(c);
			return;
		}
		f = qmp_framer_scan(&c->framer, p, len, &start, &end, &drop);
		switch (f) {
		case QMP_FRAME_TEXT:
			enqueue_text(c, p + start, end - start);
			if (!c->dead)
				attach_fds(c,
					   TAILQ_LAST(&c->queue, request_queue),
					   p, len, start, end);
			break;
		case QMP_FRAME_DISCARD:
			enqueue_error(c, NULL,
				      "JSON parse error, input discarded at a "
				      "control character");
			break;
		case QMP_FRAME_TOO_BIG:
			fail_input(c, "JSON message size limit exceeded");
			continue;
		case QMP_FRAME_TOO_DEEP:
			fail_input(c, "JSON nesting depth limit exceeded");
			continue;
		case QMP_FRAME_MORE:
			break;
		}
		if (!c->dead) {
			evbuffer_drain(in, drop);
			c->in_base += drop;
			drop_stray_fds(c);
		}
		if (f == QMP_FRAME_MORE)
			break;
	}
	if (!c->dead)
		run_queue(c);
}

/* Room again under QMP_MAX_TOTAL_QUEUED: clients stopped by it read. */
static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qmp_server *srv = arg;
	struct client *c;

	(void)fd;
	(void)what;
	/* Freed clients leave the list only from their own free_ev. */
	TAILQ_FOREACH(c, &srv->clients, link)
	{
		if (c->dead || !c->throttled || !can_queue(c))
			continue;
		c->throttled = false;
		if (!c->closing && !c->eof)
			read_on(c);
		process_input(c);
	}
}

/* The client has stopped sending; answer what it sent (a script may
 * shut down its write side and wait), then go. */
static void client_eof(struct client *c)
{
	c->eof = true;
	read_off(c);
	process_input(c);
	if (!c->dead)
		maybe_finish_closing(c);
}

/* Reads input, and any descriptors passed with it (SCM_RIGHTS). */
static void recv_cb(evutil_socket_t fd, short what, void *arg)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * QMP_MAX_CLIENT_FDS)];
	} ctl;
	struct client *c = arg;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_iovec v;
	struct iovec iov;
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;
	ssize_t n;

	(void)what;
	if (evbuffer_reserve_space(in, 16384, &v, 1) < 1) {
		client_kill(c);
		return;
	}
	iov.iov_base = v.iov_base;
	iov.iov_len = v.iov_len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	/* More descriptors than ctl holds are closed by the kernel. */
	n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			client_kill(c);
		return;
	}
	v.iov_len = (size_t)n;
	if (evbuffer_commit_space(in, &v, 1) < 0) {
		client_kill(c);
		return;
	}
	c->in_total += (uint64_t)n;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t nfd;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int rfd;

			memcpy(&rfd, CMSG_DATA(cm) + i * sizeof(int),
			       sizeof(int));
			keep_fd(c, rfd);
		}
	}
	if (n == 0) {
		client_eof(c);
		return;
	}
	process_input(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	maybe_finish_closing(arg);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;

	(void)bev;
	if (what & BEV_EVENT_ERROR) {
		client_kill(c);
	} else if (what & BEV_EVENT_EOF) {
		client_eof(c);
	}
}

static void send_greeting(struct client *c)
{
	json_t *g = json_pack("{s:{s:O, s:[]}}", "QMP", "version",
			      c->srv->version, "capabilities");

	if (!g) {
		client_kill(c);
		return;
	}
	client_write(c, g);
	json_decref(g);
}

/*
 * A client has QMP_NEGOTIATE_TIMEOUT_MS to finish capabilities
 * negotiation: one that connects and says nothing holds a client slot,
 * and 64 of them would lock every operator out.
 */
static void negotiate_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	(void)fd;
	(void)what;
	if (c->negotiated || c->dead)
		return;
	fprintf(stderr,
		"<5>qmp: closing a client that did not send "
		"qmp_capabilities within %u ms\n",
		c->srv->negotiate_ms);
	client_kill(c);
}

/*
 * At the client limit a new connection still gets in if an idle client
 * that has not negotiated can make room: the oldest such one is closed
 * (the list is in connection order). Returns false if none can.
 */
static bool make_room(struct qmp_server *srv)
{
	unsigned int live = 0;
	struct client *c, *victim = NULL;
	time_t now = time(NULL);

	TAILQ_FOREACH(c, &srv->clients, link)
	{
		if (c->dead)
			continue;
		live++;
		if (!victim && !c->negotiated && TAILQ_EMPTY(&c->queue))
			victim = c;
	}
	if (live < QMP_MAX_CLIENTS)
		return true;
	if (victim) {
		fprintf(stderr,
			"<5>qmp: %u clients connected: closing the oldest "
			"one that has not negotiated to let a new one in\n",
			live);
		client_kill(victim);
		return true;
	}
	/* At most one line a second: a client may retry in a loop. */
	if (now != srv->refusal_logged) {
		srv->refusal_logged = now;
		fprintf(stderr,
			"<4>qmp: %u clients connected, all negotiated: "
			"refusing a new connection\n",
			live);
	}
	return false;
}

/* accept() failed: pause the listener (rpc/accept_backoff.c). */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct qmp_server *srv = arg;

	(void)l;
	qmp_accept_backoff_failed(srv->backoff, EVUTIL_SOCKET_ERROR());
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	struct qmp_server *srv = arg;
	struct timeval tv = { .tv_sec = srv->negotiate_ms / 1000,
			      .tv_usec = srv->negotiate_ms % 1000 * 1000 };
	struct client *c;

	(void)l;
	(void)sa;
	(void)socklen;
	qmp_accept_backoff_accepted(srv->backoff);
	if (!make_room(srv)) {
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->srv = srv;
	TAILQ_INIT(&c->queue);
	qmp_framer_init(&c->framer);
	c->free_ev = event_new(srv->base, -1, 0, client_free_cb, c);
	c->negotiate_ev = evtimer_new(srv->base, negotiate_timeout_cb, c);
	c->read_ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, recv_cb, c);
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->free_ev || !c->negotiate_ev || !c->read_ev || !c->bev ||
	    evtimer_add(c->negotiate_ev, &tv) < 0 ||
	    event_add(c->read_ev, NULL) < 0) {
		if (c->read_ev)
			event_free(c->read_ev);
		if (c->bev)
			bufferevent_free(c->bev);
		else
			close(fd);
		if (c->free_ev)
			event_free(c->free_ev);
		if (c->negotiate_ev)
			event_free(c->negotiate_ev);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&srv->clients, c, link);
	srv->nr_clients++;
	/* The bufferevent only writes: recv_cb() reads, and adds to the
	 * input buffer, whose end a socket bufferevent keeps frozen for
	 * its own reads. */
	evbuffer_unfreeze(bufferevent_get_input(c->bev), 0);
	bufferevent_setcb(c->bev, NULL, write_cb, event_cb, c);
	bufferevent_enable(c->bev, EV_WRITE);
	send_greeting(c);
}

/* ---- events ----------------------------------------------------------- */

void qmp_server_emit_event(struct qmp_server *srv, const char *name,
			   json_t *data)
{
	struct timeval tv;
	json_t *ev;
	struct client *c;
	long long sec = -1, usec = -1;

	/* QEMU sends -1 for both when the clock cannot be read. */
	if (gettimeofday(&tv, NULL) == 0) {
		sec = tv.tv_sec;
		usec = tv.tv_usec;
	}
	ev = json_object();
	if (!ev) {
		json_decref(data);
		return;
	}
	json_object_set_new(ev, "event", json_string(name));
	if (data)
		json_object_set_new(ev, "data", data);
	json_object_set_new(ev, "timestamp",
			    json_pack("{s:I, s:I}", "seconds", sec,
				      "microseconds", usec));
	TAILQ_FOREACH(c, &srv->clients, link)
	{
		if (c->negotiated && !c->dead)
			client_write(c, ev);
	}
	json_decref(ev);
}

/* ---- built-in commands ------------------------------------------------ */

static const struct qmp_arg caps_args[] = {
	{ "enable", QMP_ARG_ARRAY, true },
	QMP_ARGS_END,
};

static void cmd_qmp_capabilities(struct qmp_request *req, json_t *args,
				 void *opaque)
{
	json_t *enable = json_object_get(args, "enable"), *v;
	size_t i;

	(void)opaque;
	json_array_foreach(enable, i, v)
	{
		if (!json_is_string(v)) {
			qmp_reply_error(req, QMP_ERROR_GENERIC,
					"Invalid parameter type for "
					"'enable[%zu]', expected: string",
					i);
			return;
		}
		if (strcmp(json_string_value(v), "oob")) {
			qmp_reply_error(req, QMP_ERROR_GENERIC,
					"Parameter 'enable[%zu]' does not "
					"accept value '%s'",
					i, json_string_value(v));
			return;
		}
		/* A known capability, but we offer none. */
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Capability %s not available",
				json_string_value(v));
		return;
	}
	req->client->negotiated = true;
	evtimer_del(req->client->negotiate_ev);
	qmp_reply_ok(req);
}

static void cmd_query_commands(struct qmp_request *req, json_t *args,
			       void *opaque)
{
	json_t *list = json_array();
	struct command *cmd;

	(void)args;
	(void)opaque;
	TAILQ_FOREACH(cmd, &req->srv->commands, link)
	json_array_append_new(list, json_pack("{s:s}", "name", cmd->name));
	qmp_reply_return(req, list);
}

static void cmd_query_version(struct qmp_request *req, json_t *args,
			      void *opaque)
{
	(void)args;
	(void)opaque;
	qmp_reply_return(req, json_deep_copy(req->srv->version));
}

/* ---- the server ------------------------------------------------------- */

int qmp_server_register(struct qmp_server *srv, const char *name,
			const struct qmp_arg *args, qmp_handler_fn *fn,
			void *opaque)
{
	struct command *cmd;
	size_t n = strlen(name);

	if (n == 0 || n > MAX_NAME)
		return -EINVAL;
	if (find_command(srv, name))
		return -EEXIST;
	cmd = calloc(1, sizeof(*cmd));
	if (!cmd)
		return -ENOMEM;
	cmd->name = strdup(name);
	if (!cmd->name) {
		free(cmd);
		return -ENOMEM;
	}
	cmd->args = args;
	cmd->fn = fn;
	cmd->opaque = opaque;
	TAILQ_INSERT_TAIL(&srv->commands, cmd, link);
	return 0;
}

static void call_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qmp_server *srv = arg;
	struct deferred *d, *next;
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&srv->call_lock);
	d = srv->call_head;
	srv->call_head = NULL;
	srv->call_tail = &srv->call_head;
	pthread_mutex_unlock(&srv->call_lock);
	for (; d; d = next) {
		next = d->next;
		d->fn(d->arg);
		free(d);
	}
}

int qmp_server_call_soon(struct qmp_server *srv, void (*fn)(void *arg),
			 void *arg)
{
	struct deferred *d = malloc(sizeof(*d));
	uint64_t one = 1;

	if (!d)
		return -ENOMEM;
	d->fn = fn;
	d->arg = arg;
	d->next = NULL;
	pthread_mutex_lock(&srv->call_lock);
	*srv->call_tail = d;
	srv->call_tail = &d->next;
	pthread_mutex_unlock(&srv->call_lock);
	/* The eventfd counter cannot overflow at one per call. */
	if (write(srv->call_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN only: the loop is already woken. */
	}
	return 0;
}

void qmp_server_set_negotiate_timeout(struct qmp_server *srv, unsigned int ms)
{
	srv->negotiate_ms = ms;
}

unsigned int qmp_server_nr_clients(const struct qmp_server *srv)
{
	return srv->nr_clients;
}

int qmp_server_new(struct event_base *base, const char *path,
		   const struct qmp_version *version, struct qmp_server **out)
{
	struct qmp_server *srv;
	int fd, ret = -ENOMEM;

	qmp_parse_init();
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->base = base;
	srv->call_fd = -1;
	srv->negotiate_ms = QMP_NEGOTIATE_TIMEOUT_MS;
	TAILQ_INIT(&srv->commands);
	TAILQ_INIT(&srv->clients);
	pthread_mutex_init(&srv->call_lock, NULL);
	srv->call_tail = &srv->call_head;
	srv->version = json_pack("{s:{s:i, s:i, s:i}, s:s}", "qemu", "micro",
				 version->micro, "minor", version->minor,
				 "major", version->major, "package",
				 version->package ? version->package : "");
	if (!srv->version)
		goto fail;
	if (qmp_server_register(srv, "qmp_capabilities", caps_args,
				cmd_qmp_capabilities, NULL) < 0 ||
	    qmp_server_register(srv, "query-commands", NULL, cmd_query_commands,
				NULL) < 0 ||
	    qmp_server_register(srv, "query-version", NULL, cmd_query_version,
				NULL) < 0)
		goto fail;
	srv->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->call_fd < 0) {
		ret = -errno;
		goto fail;
	}
	srv->call_ev = event_new(base, srv->call_fd, EV_READ | EV_PERSIST,
				 call_cb, srv);
	if (!srv->call_ev || event_add(srv->call_ev, NULL) < 0)
		goto fail;
	srv->resume_ev = event_new(base, -1, 0, resume_cb, srv);
	if (!srv->resume_ev)
		goto fail;
	fd = qmp_unix_listen(path, 16, &srv->sock);
	if (fd < 0) {
		ret = fd;
		goto fail;
	}
	srv->listener = evconnlistener_new(
		base, accept_cb, srv,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!srv->listener) {
		close(fd);
		goto fail;
	}
	srv->backoff = qmp_accept_backoff_new(srv->listener, "qmp");
	if (!srv->backoff)
		goto fail;
	evconnlistener_set_error_cb(srv->listener, accept_error_cb);
	*out = srv;
	return 0;
fail:
	qmp_server_free(srv);
	return ret;
}

/* Best effort, bounded: what is queued for clients gets 100 ms. */
static void flush_clients(struct qmp_server *srv)
{
	struct timespec t0, now;
	struct client *c;
	bool pending = true;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (pending) {
		long ms;

		pending = false;
		TAILQ_FOREACH(c, &srv->clients, link)
		{
			struct evbuffer *out;

			if (c->dead)
				continue;
			out = bufferevent_get_output(c->bev);
			if (evbuffer_get_length(out) == 0)
				continue;
			/* A bufferevent freezes its output's drain end; we
			 * write past it, the bufferevent is about to go. */
			evbuffer_unfreeze(out, 1);
			if (evbuffer_write(out, bufferevent_getfd(c->bev)) <
				    0 &&
			    errno != EAGAIN)
				evbuffer_drain(out, evbuffer_get_length(out));
			if (evbuffer_get_length(out))
				pending = true;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		ms = (now.tv_sec - t0.tv_sec) * 1000 +
		     (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (pending) {
			if (ms >= 100)
				break;
			poll(NULL, 0, 1);
		}
	}
}

void qmp_server_free(struct qmp_server *srv)
{
	struct command *cmd;
	struct client *c;

	if (!srv)
		return;
	if (srv->listener)
		evconnlistener_free(srv->listener);
	/* Only if the path still names the socket we bound. */
	qmp_unix_unlink(srv->sock);
	flush_clients(srv);
	while ((c = TAILQ_FIRST(&srv->clients)) != NULL) {
		client_kill(c);
		/* Not from the loop: free it here. */
		client_free_cb(-1, 0, c);
	}
	if (srv->call_ev) {
		/* Let queued completions run so orphaned requests are freed. */
		call_cb(srv->call_fd, EV_READ, srv);
		event_free(srv->call_ev);
	}
	if (srv->call_fd >= 0)
		close(srv->call_fd);
	if (srv->resume_ev)
		event_free(srv->resume_ev);
	qmp_accept_backoff_free(srv->backoff);
	pthread_mutex_destroy(&srv->call_lock);
	while ((cmd = TAILQ_FIRST(&srv->commands)) != NULL) {
		TAILQ_REMOVE(&srv->commands, cmd, link);
		free(cmd->name);
		free(cmd);
	}
	json_decref(srv->version);
	free(srv);
}
