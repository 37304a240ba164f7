/*
 * The guest's serial console as mmud presents it: every byte COM1
 * transmits goes to stdout or a file (written on the vCPU thread, as
 * before), or into a 64 KiB replay ring served on a Unix socket, where
 * each client gets the ring's contents when it connects and then
 * everything the guest prints. vCPU threads only append to the ring and
 * wake the loop; the loop copies to clients as fast as each one reads,
 * so a slow or stuck client loses the oldest output (it falls more than
 * the ring behind) but never stalls the guest or grows our memory.
 * What clients type goes to the guest (COM1's receive side, through the
 * input function main.c sets); when the UART's queue is full, that
 * client's input waits in its socket (reading is paused and retried on a
 * timer), so a paste of any size arrives whole and in order.
 *
 * Whatever the kind, the ring also keeps the last MMUD_CONSOLE_REPLAY
 * bytes for QMP (ringbuf-read: one read cursor, consumed as it is read)
 * and QMP input (ringbuf-write) waits in a bounded queue of its own,
 * paced like a client's.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "mmud.h"
#include "rpc.h"

#define RING MMUD_CONSOLE_REPLAY
#define MAX_CLIENTS 16
/* What one client may have queued in our output buffer. */
#define CLIENT_BACKLOG (64u << 10)
/* How soon input the guest had no room for is offered again: at first,
 * and at most (doubling while the guest takes nothing, as one that does
 * not read its UART would). */
#define INPUT_RETRY_USEC 5000
#define INPUT_RETRY_MAX_USEC 200000
/* At the end, how long clients that read have to take the rest of the
 * output (all of them together); one that does not read is cut off. */
#define CLOSE_DRAIN_MSEC 3000

struct con_client {
	struct mmud_console *con; /* (c) */
	struct bufferevent *bev; /* (e) */
	uint64_t pos; /* (e) ring offset of the next byte to send */
	bool stalled; /* (e) input left over, reading paused */
	LIST_ENTRY(con_client) link; /* (e) */
};

/*
 * Legend: (c) constant after creation; (e) loop thread; (console->lock) under
 * the console's lock, taken by vCPU threads and the loop; (a) atomic.
 */
struct mmud_console {
	int fd; /* (c) stdout or the file; -1 for a socket */
	bool own_fd; /* (c) */
	char *path; /* (c) the socket, or NULL */
	struct qmp_unix_socket *sock; /* (c) the socket file, for unlink */
	char *backend; /* (c) QEMU's chardev filename, without the state */
	struct evconnlistener *listener; /* (c) */
	int efd; /* (c) eventfd: the ring grew */
	struct event *ev; /* (c) */
	LIST_HEAD(, con_client) clients; /* (e) */
	unsigned int nr_clients; /* (e) */
	mmud_console_input_fn input; /* (e) NULL: input is dropped */
	void *input_ctx; /* (e) */
	struct event *retry; /* (c) offers stalled input again */
	struct evbuffer *qmp_in; /* (e) ringbuf-write input not yet taken */
	unsigned int retry_usec; /* (e) its next delay */

	pthread_mutex_t lock;
	char ring[RING]; /* (console->lock) byte i of the stream at ring[i % RING] */
	uint64_t total; /* (console->lock) bytes ever written */
	uint64_t qmp_pos; /* (console->lock) ringbuf-read's cursor */
	/* (a) A wake-up is pending: writers set it (exchange) before they
	 * write the eventfd, the loop clears it before it reads the ring,
	 * so a burst of one-byte writes costs one eventfd write, and no
	 * byte appended after the clear is left unsent. */
	_Atomic bool kicked;
};

static void write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* a console that went away loses output */
		buf += n;
		len -= (size_t)n;
	}
}

void mmud_console_write(void *console, const char *buf, size_t len)
{
	struct mmud_console *c = console;
	uint64_t one = 1;

	if (c->fd >= 0)
		write_all(c->fd, buf, len);
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < len; i++)
		c->ring[(c->total + i) % RING] = buf[i];
	c->total += len;
	pthread_mutex_unlock(&c->lock);
	if (c->efd < 0)
		return; /* no socket clients to wake */
	/* seq_cst: pairs with the loop's exchange in pump_all(). */
	if (!atomic_exchange(&c->kicked, true)) {
		if (write(c->efd, &one, sizeof(one)) < 0) {
			/* EAGAIN: the loop is already woken. */
		}
	}
}

static void client_free(struct con_client *cl)
{
	LIST_REMOVE(cl, link);
	cl->con->nr_clients--;
	bufferevent_free(cl->bev);
	free(cl);
}

/* Copies what the client has not had yet, up to its backlog. */
static void pump(struct con_client *cl)
{
	struct mmud_console *c = cl->con;
	struct evbuffer *out = bufferevent_get_output(cl->bev);
	char buf[4096];

	for (;;) {
		size_t room, n, off;

		if (evbuffer_get_length(out) >= CLIENT_BACKLOG)
			return;
		room = CLIENT_BACKLOG - evbuffer_get_length(out);
		pthread_mutex_lock(&c->lock);
		if (c->total - cl->pos > RING)
			cl->pos = c->total - RING; /* fell behind: lost */
		n = (size_t)(c->total - cl->pos);
		if (n > sizeof(buf))
			n = sizeof(buf);
		if (n > room)
			n = room;
		for (off = 0; off < n; off++)
			buf[off] = c->ring[(cl->pos + off) % RING];
		pthread_mutex_unlock(&c->lock);
		if (n == 0)
			return;
		if (evbuffer_add(out, buf, n) < 0) {
			client_free(cl);
			return;
		}
		cl->pos += n;
	}
}

static void pump_all(evutil_socket_t fd, short what, void *arg)
{
	struct mmud_console *c = arg;
	struct con_client *cl, *next;
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	atomic_store(&c->kicked, false);
	for (cl = LIST_FIRST(&c->clients); cl; cl = next) {
		next = LIST_NEXT(cl, link);
		pump(cl);
	}
}

/*
 * Hands the client's input to the guest; true when it all went. Else
 * reading from this client pauses (its bytes wait in the socket) and the
 * retry timer offers the rest again.
 */
static bool feed_buffer(struct mmud_console *c, struct evbuffer *in)
{
	while (evbuffer_get_length(in)) {
		struct evbuffer_iovec v;
		size_t n;

		if (!c->input) {
			evbuffer_drain(in, evbuffer_get_length(in));
			break;
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = c->input(c->input_ctx, v.iov_base, v.iov_len);
		evbuffer_drain(in, n);
		if (n < v.iov_len) {
			struct timeval tv = { .tv_usec = 0 };

			if (n)
				c->retry_usec = INPUT_RETRY_USEC;
			else if (c->retry_usec * 2 <= INPUT_RETRY_MAX_USEC)
				c->retry_usec *= 2;
			tv.tv_usec = c->retry_usec;
			if (!evtimer_pending(c->retry, NULL))
				evtimer_add(c->retry, &tv);
			return false;
		}
	}
	return true;
}

static bool feed(struct con_client *cl)
{
	if (!feed_buffer(cl->con, bufferevent_get_input(cl->bev))) {
		cl->stalled = true;
		bufferevent_disable(cl->bev, EV_READ);
		return false;
	}
	if (cl->stalled) {
		cl->stalled = false;
		bufferevent_enable(cl->bev, EV_READ);
	}
	return true;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mmud_console *c = arg;
	struct con_client *cl;

	(void)fd;
	(void)what;
	if (!feed_buffer(c, c->qmp_in))
		return; /* the guest's queue is full again */
	LIST_FOREACH(cl, &c->clients, link)
	if (cl->stalled && !feed(cl))
		break; /* the guest's queue is full again */
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	feed(arg);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	pump(arg);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_free(arg);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	struct mmud_console *c = arg;
	struct con_client *cl;

	(void)l;
	(void)sa;
	(void)socklen;
	if (c->nr_clients >= MAX_CLIENTS) {
		close(fd);
		return;
	}
	cl = calloc(1, sizeof(*cl));
	if (!cl) {
		close(fd);
		return;
	}
	cl->con = c;
	cl->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd,
					 BEV_OPT_CLOSE_ON_FREE);
	if (!cl->bev) {
		close(fd);
		free(cl);
		return;
	}
	LIST_INSERT_HEAD(&c->clients, cl, link);
	c->nr_clients++;
	/* Replay: start at the oldest byte the ring still has. */
	pthread_mutex_lock(&c->lock);
	cl->pos = c->total > RING ? c->total - RING : 0;
	pthread_mutex_unlock(&c->lock);
	/* Wake when the output drains below the backlog, to refill it. */
	bufferevent_setwatermark(cl->bev, EV_WRITE, CLIENT_BACKLOG / 2, 0);
	bufferevent_setcb(cl->bev, client_read_cb, client_write_cb,
			  client_event_cb, cl);
	bufferevent_enable(cl->bev, EV_READ | EV_WRITE);
	pump(cl);
}

int mmud_console_new(struct event_base *base, const struct mmud_config *cfg,
		     struct mmud_console **out)
{
	struct mmud_console *c = calloc(1, sizeof(*c));
	int fd, r = -ENOMEM;

	if (!c)
		return -ENOMEM;
	c->fd = -1;
	c->efd = -1;
	pthread_mutex_init(&c->lock, NULL);
	LIST_INIT(&c->clients);
	c->retry = evtimer_new(base, retry_cb, c);
	c->retry_usec = INPUT_RETRY_USEC;
	c->qmp_in = evbuffer_new();
	if (!c->retry || !c->qmp_in)
		goto fail;
	switch (cfg->console_kind) {
	case MMUD_CONSOLE_STDOUT:
		c->fd = STDOUT_FILENO;
		c->backend = strdup("stdio");
		if (!c->backend)
			goto fail;
		*out = c;
		return 0;
	case MMUD_CONSOLE_FILE:
		c->fd = open(cfg->console_path,
			     O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (c->fd < 0) {
			r = -errno;
			goto fail;
		}
		c->own_fd = true;
		if (asprintf(&c->backend, "file:%s", cfg->console_path) < 0) {
			c->backend = NULL;
			goto fail;
		}
		*out = c;
		return 0;
	case MMUD_CONSOLE_SOCKET:
		break;
	}
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd < 0) {
		r = -errno;
		goto fail;
	}
	c->ev = event_new(base, c->efd, EV_READ | EV_PERSIST, pump_all, c);
	if (!c->ev || event_add(c->ev, NULL) < 0)
		goto fail;
	/* Like the QMP socket: a stale socket file goes, anything else
	 * stays; removed at exit only if still ours (rpc/unix_socket.c). */
	fd = qmp_unix_listen(cfg->console_path, 8, &c->sock);
	if (fd < 0) {
		r = fd;
		goto fail;
	}
	c->listener = evconnlistener_new(
		base, accept_cb, c,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!c->listener) {
		close(fd);
		goto fail;
	}
	c->path = strdup(cfg->console_path);
	if (!c->path ||
	    asprintf(&c->backend, "unix:%s,server=on", cfg->console_path) < 0) {
		c->backend = NULL;
		goto fail;
	}
	*out = c;
	return 0;
fail:
	mmud_console_free(c);
	return r;
}

int mmud_console_queue_input(struct mmud_console *c, const void *buf,
			     size_t len)
{
	if (evbuffer_get_length(c->qmp_in) + len > MMUD_CONSOLE_INPUT_MAX)
		return -ENOSPC;
	if (evbuffer_add(c->qmp_in, buf, len) < 0)
		return -ENOMEM;
	feed_buffer(c, c->qmp_in);
	return 0;
}

size_t mmud_console_read(struct mmud_console *c, char *buf, size_t max)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	if (c->total - c->qmp_pos > RING)
		c->qmp_pos = c->total - RING; /* overwritten: lost */
	n = (size_t)(c->total - c->qmp_pos);
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		buf[i] = c->ring[(c->qmp_pos + i) % RING];
	c->qmp_pos += n;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void mmud_console_unread(struct mmud_console *c, size_t n)
{
	pthread_mutex_lock(&c->lock);
	c->qmp_pos -= n;
	pthread_mutex_unlock(&c->lock);
}

char *mmud_console_chardev_filename(const struct mmud_console *c)
{
	char *s;

	/* A server socket nobody is connected to, as QEMU says it. */
	if (c->listener && !c->nr_clients) {
		if (asprintf(&s, "disconnected:%s", c->backend) < 0)
			return NULL;
		return s;
	}
	return strdup(c->backend);
}

void mmud_console_set_input(struct mmud_console *c, mmud_console_input_fn fn,
			    void *ctx)
{
	c->input = fn;
	c->input_ctx = ctx;
}

static int64_t now_msec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether cl has had everything the guest printed (after a pump). */
static bool client_done(struct con_client *cl)
{
	bool done;

	if (evbuffer_get_length(bufferevent_get_output(cl->bev)))
		return false;
	pthread_mutex_lock(&cl->con->lock);
	done = cl->pos == cl->con->total;
	pthread_mutex_unlock(&cl->con->lock);
	return done;
}

/*
 * The end (the loop has stopped, the guest prints no more): every client
 * gets what it has not had, as fast as it reads, and is closed when it
 * has it all, so that the last lines a guest printed before it exited
 * reach a client that was behind; what is left at the deadline is lost.
 */
static void drain_clients(struct mmud_console *c)
{
	int64_t deadline = now_msec() + CLOSE_DRAIN_MSEC;
	struct con_client *cl, *next, *cls[MAX_CLIENTS];
	struct pollfd fds[MAX_CLIENTS];

	for (;;) {
		nfds_t n = 0;
		int64_t left;

		for (cl = LIST_FIRST(&c->clients); cl; cl = next) {
			next = LIST_NEXT(cl, link);
			pump(cl); /* may free it on allocation failure */
		}
		for (cl = LIST_FIRST(&c->clients); cl; cl = next) {
			next = LIST_NEXT(cl, link);
			if (client_done(cl) || n == MAX_CLIENTS) {
				client_free(cl);
				continue;
			}
			cls[n] = cl;
			fds[n].fd = bufferevent_getfd(cl->bev);
			fds[n].events = POLLOUT;
			n++;
		}
		left = deadline - now_msec();
		if (!n || left <= 0)
			return; /* what remains is freed by the caller */
		if (poll(fds, n, (int)left) < 0 && errno != EINTR)
			return;
		for (nfds_t i = 0; i < n; i++) {
			struct evbuffer *out;

			if (!fds[i].revents)
				continue;
			out = bufferevent_get_output(cls[i]->bev);
			evbuffer_unfreeze(out, 1);
			if ((fds[i].revents & (POLLERR | POLLNVAL)) ||
			    (evbuffer_write(out, fds[i].fd) < 0 &&
			     errno != EAGAIN && errno != EINTR))
				client_free(cls[i]); /* gone: nothing to send */
		}
	}
}

void mmud_console_free(struct mmud_console *c)
{
	struct con_client *cl;

	if (!c)
		return;
	if (c->listener)
		evconnlistener_free(c->listener);
	qmp_unix_unlink(c->sock);
	drain_clients(c);
	while ((cl = LIST_FIRST(&c->clients)) != NULL)
		client_free(cl);
	if (c->ev)
		event_free(c->ev);
	if (c->retry)
		event_free(c->retry);
	if (c->qmp_in)
		evbuffer_free(c->qmp_in);
	if (c->efd >= 0)
		close(c->efd);
	if (c->own_fd)
		close(c->fd);
	pthread_mutex_destroy(&c->lock);
	free(c->path);
	free(c->backend);
	free(c);
}
