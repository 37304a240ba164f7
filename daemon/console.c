/*
 * The guest's serial console as mmud presents it. Every byte COM1
 * transmits goes into a 64 KiB ring; vCPU threads only append to it and
 * wake the loop, which copies from it to the console's sink: stdout or a
 * file (written without blocking, see "The output sink" below), or a
 * Unix socket where each client gets the ring's contents when it
 * connects and then everything the guest prints. The loop copies to each
 * reader as fast as it reads, so a slow or stuck reader (a client, a
 * pipe nobody empties, a terminal on hold) loses the oldest output (it
 * falls more than the ring behind; the loss is counted and logged) but
 * never stalls a vCPU, the loop or the worker, nor grows our memory.
 * What clients type goes to the guest (COM1's receive side, through the
 * input function main.c sets); when the UART's queue is full, that
 * client's input waits in its socket (reading is paused and retried on a
 * timer), so a paste of any size arrives whole and in order.
 *
 * Whatever the kind, the ring also keeps the last MMUD_CONSOLE_REPLAY
 * bytes for QMP (ringbuf-read: one read cursor, consumed as it is read)
 * and QMP input (ringbuf-write) waits in a bounded queue of its own,
 * paced like a client's.
 *
 * The output sink. A file is opened without following a symbolic link,
 * mode 0600 when new, and only a regular file with one link is taken
 * (anything else could be a FIFO that blocks us or another file under a
 * new name). stdout is whatever we were given: a pipe or a terminal is
 * reopened through /proc/self/fd/1 as a non-blocking file description
 * of our own (setting O_NONBLOCK on the one we share with the shell
 * would change it for the shell too; that is the fallback, undone at
 * the end), a socket is written with MSG_DONTWAIT, a regular file as
 * is. When a write would block, the loop waits for the fd to be
 * writable and meanwhile the ring moves on.
 *
 * Log lines. When stderr is the same terminal as stdout and stdout is
 * the console, what mmud logs would land inside the guest's lines; then
 * stderr (fd 2) becomes a pipe the loop reads, and each whole log line
 * goes to the terminal between two of the guest's lines: at once if the
 * guest's last line is complete, else when it completes, or after
 * LOG_HOLD_MSEC on a line of its own.
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
/* How long a log line waits for the guest to end its line (terminal). */
#define LOG_HOLD_MSEC 200
/* Log text waiting for the terminal; past it, log lines are dropped. */
#define LOG_BACKLOG (64u << 10)

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
	int fd; /* (c) the output sink (stdout, the file); -1: none */
	bool own_fd; /* (c) we opened fd */
	bool fd_send; /* (c) fd is a socket: send(MSG_DONTWAIT) */
	int fd_flags; /* (c) fd's flags to restore, or -1 */
	struct event *fd_ev; /* (c) fd writable again; NULL: never waits */
	uint64_t fd_pos; /* (e) stream offset of the next byte for fd */
	uint64_t dropped; /* (e) bytes the sink lost, too slow or gone */
	bool fd_dead; /* (e) the sink failed: output to it stops */
	bool fd_bol; /* (e) the last byte written to fd was '\n' */
	int log_rfd; /* (c) the pipe fd 2 now writes to, or -1 */
	int saved_stderr; /* (c) the terminal fd 2 was, or -1 */
	struct event *log_ev; /* (c) log_rfd readable */
	struct event *log_hold; /* (c) a log line waited long enough */
	struct evbuffer *logs; /* (e) log text not yet on the terminal */
	bool log_break; /* (e) the hold expired: break the guest's line */
	char *path; /* (c) the socket, or NULL */
	struct qmp_unix_socket *sock; /* (c) the socket file, for unlink */
	char *backend; /* (c) QEMU's chardev filename, without the state */
	struct evconnlistener *listener; /* (c) */
	int efd; /* (c) eventfd: the ring grew */
	struct event *ev; /* (c) */
	LIST_HEAD(, con_client) clients; /* (e) */
	unsigned int nr_clients; /* (e) */
	struct qmp_accept_backoff *backoff; /* (c) while accept() fails */
	time_t replaced_logged; /* (e) when a replaced client was logged */
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

void mmud_console_write(void *console, const char *buf, size_t len)
{
	struct mmud_console *c = console;
	uint64_t one = 1;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < len; i++)
		c->ring[(c->total + i) % RING] = buf[i];
	c->total += len;
	pthread_mutex_unlock(&c->lock);
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

/* One write to the sink that never blocks: bytes written, 0 if it
 * would block, -1 when the sink is gone (a closed pipe, an I/O error). */
static ssize_t sink_write(struct mmud_console *c, const char *buf, size_t n)
{
	for (;;) {
		ssize_t r = c->fd_send ? send(c->fd, buf, n,
					      MSG_DONTWAIT | MSG_NOSIGNAL) :
					 write(c->fd, buf, n);

		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -1;
	}
}

/* Writes what it can of buf; false when the sink would block or died.
 * *done: how much went. */
static bool sink_put(struct mmud_console *c, const char *buf, size_t n,
		     size_t *done)
{
	*done = 0;
	while (*done < n) {
		ssize_t r = sink_write(c, buf + *done, n - *done);

		if (r < 0) {
			/* Said once, when it happens (a full disk, a file
			 * size limit, a closed pipe); the bytes lost from
			 * here on are counted and said at the end. */
			fprintf(stderr,
				"<3>mmud: console: writing to %s failed: %s; "
				"guest output to it stops here\n",
				c->backend ? c->backend : "the console",
				strerror(errno));
			c->fd_dead = true;
			return false;
		}
		if (r == 0) {
			if (c->fd_ev)
				event_add(c->fd_ev, NULL);
			return false;
		}
		*done += (size_t)r;
	}
	return true;
}

/* Whole log lines waiting, to the terminal; false if it would block. */
static bool put_logs(struct mmud_console *c)
{
	size_t n, done;
	struct evbuffer_ptr nl;
	char buf[1024];

	for (;;) {
		nl = evbuffer_search(c->logs, "\n", 1, NULL);
		if (nl.pos < 0)
			return true;
		if (!c->fd_bol) {
			if (!sink_put(c, "\n", 1, &done))
				return false;
			c->fd_bol = true;
		}
		n = (size_t)nl.pos + 1;
		if (n > sizeof(buf))
			n = sizeof(buf);
		evbuffer_copyout(c->logs, buf, n);
		sink_put(c, buf, n, &done);
		evbuffer_drain(c->logs, done);
		if (done < n)
			return false; /* the rest of the line follows later */
	}
}

/*
 * Copies the guest's output from the ring to the sink until it is all
 * written or the sink would block (then fd_ev calls again when it can
 * take more). A sink more than the ring behind loses the oldest bytes,
 * counted in dropped. Log lines waiting go between two guest lines.
 */
static void flush_out(struct mmud_console *c)
{
	char buf[4096];

	if (c->fd < 0 || c->fd_dead)
		return;
	for (;;) {
		bool logs = c->logs && evbuffer_get_length(c->logs);
		size_t n, done;

		if (logs && (c->fd_bol || c->log_break)) {
			c->log_break = false;
			if (!put_logs(c))
				return;
			/* Written at a line's end: no break is due. */
			evtimer_del(c->log_hold);
			logs = false;
		}
		pthread_mutex_lock(&c->lock);
		if (c->total - c->fd_pos > RING) {
			c->dropped += c->total - RING - c->fd_pos;
			c->fd_pos = c->total - RING;
		}
		n = (size_t)(c->total - c->fd_pos);
		if (n > sizeof(buf))
			n = sizeof(buf);
		for (size_t i = 0; i < n; i++)
			buf[i] = c->ring[(c->fd_pos + i) % RING];
		pthread_mutex_unlock(&c->lock);
		if (logs) {
			/* Only up to the end of the guest's line. */
			char *nl = memchr(buf, '\n', n);

			if (nl)
				n = (size_t)(nl - buf) + 1;
			else if (!evtimer_pending(c->log_hold, NULL))
				evtimer_add(c->log_hold,
					    &(struct timeval){
						    .tv_usec = LOG_HOLD_MSEC *
							       1000 });
		}
		if (n == 0)
			return;
		sink_put(c, buf, n, &done);
		c->fd_pos += done;
		if (done)
			c->fd_bol = buf[done - 1] == '\n';
		if (done < n)
			return;
		if (logs && !c->fd_bol && n < sizeof(buf))
			return; /* the line goes on later, or the hold ends */
	}
}

static void fd_writable_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush_out(arg);
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
	flush_out(c);
}

/* Log text written to fd 2: kept (up to LOG_BACKLOG) for flush_out. */
static void read_logs(struct mmud_console *c)
{
	char buf[4096];
	ssize_t n;

	while ((n = read(c->log_rfd, buf, sizeof(buf))) > 0) {
		if (evbuffer_get_length(c->logs) + (size_t)n <= LOG_BACKLOG)
			evbuffer_add(c->logs, buf, (size_t)n);
	}
}

static void log_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	read_logs(arg);
	flush_out(arg);
}

static void log_hold_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mmud_console *c = arg;

	(void)fd;
	(void)what;
	c->log_break = evbuffer_get_length(c->logs) != 0;
	flush_out(c);
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

/* accept() failed: pause the listener (rpc/accept_backoff.c). */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct mmud_console *c = arg;

	(void)l;
	qmp_accept_backoff_failed(c->backoff, EVUTIL_SOCKET_ERROR());
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	struct mmud_console *c = arg;
	struct con_client *cl;

	(void)l;
	(void)sa;
	(void)socklen;
	qmp_accept_backoff_accepted(c->backoff);
	if (c->nr_clients >= MAX_CLIENTS) {
		/* A new reader is let in, and the oldest (most likely a
		 * forgotten one) closed, so that readers that never go away
		 * cannot lock the operator out; logged at most once a
		 * second. */
		struct con_client *oldest = LIST_FIRST(&c->clients);
		time_t now = time(NULL);

		while (LIST_NEXT(oldest, link))
			oldest = LIST_NEXT(oldest, link);
		if (now != c->replaced_logged) {
			c->replaced_logged = now;
			fprintf(stderr,
				"<5>mmud: console: %d clients connected: "
				"closing the oldest to let a new one in\n",
				MAX_CLIENTS);
		}
		client_free(oldest);
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

/*
 * --console FILE: never through a symbolic link, never anything but a
 * regular file with one name (a FIFO would block, a device or another
 * file's hard link would be overwritten), created 0600; truncated only
 * once it passed. O_NONBLOCK: opening a FIFO must not wait for a reader.
 */
static int open_file(const char *path, int *out)
{
	struct stat st;
	int fd = open(path,
		      O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
			      O_NONBLOCK,
		      0600);

	if (fd < 0)
		return errno == ELOOP ? -ELOOP :
		       errno == ENXIO ? -ENODEV :
					-errno;
	if (fstat(fd, &st) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		return S_ISREG(st.st_mode) ? -EMLINK : -ENODEV;
	}
	if (ftruncate(fd, 0) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	*out = fd;
	return 0;
}

/* The reasons open_file() adds to the errno ones. */
const char *mmud_console_strerror(int err)
{
	switch (err) {
	case -ELOOP:
		return "a symbolic link (give the file itself)";
	case -ENODEV:
		return "not a regular file (a FIFO, device or folder)";
	case -EMLINK:
		return "a file with other hard links";
	default:
		return strerror(-err);
	}
}

/* Whether fds a and b are the same terminal. */
static bool same_tty(int a, int b)
{
	struct stat sa, sb;

	return isatty(a) && isatty(b) && fstat(a, &sa) == 0 &&
	       fstat(b, &sb) == 0 && sa.st_rdev == sb.st_rdev;
}

/* stdout as a sink that never blocks (see "The output sink" above). */
static void open_stdout(struct mmud_console *c)
{
	struct stat st;
	int fl, fd;

	if (fstat(STDOUT_FILENO, &st) < 0)
		return; /* closed: the output goes nowhere */
	c->fd = STDOUT_FILENO;
	if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
		return;
	if (S_ISSOCK(st.st_mode)) {
		c->fd_send = true; /* journald's stream, say */
		return;
	}
	fl = fcntl(STDOUT_FILENO, F_GETFL);
	fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC |
					     O_NOCTTY |
					     (fl >= 0 ? fl & O_APPEND : 0));
	if (fd >= 0) {
		c->fd = fd;
		c->own_fd = true;
	} else if (fl >= 0 &&
		   fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK) == 0) {
		c->fd_flags = fl;
	}
}

/*
 * stderr the same terminal as the console: fd 2 becomes a pipe whose
 * lines flush_out() places between the guest's (header comment, "Log
 * lines"). Failing leaves stderr as it was.
 */
static void capture_logs(struct mmud_console *c, struct event_base *base)
{
	int p[2];

	if (!same_tty(c->fd, STDERR_FILENO))
		return;
	c->logs = evbuffer_new();
	c->log_ev = NULL;
	if (!c->logs || pipe2(p, O_CLOEXEC) < 0)
		return;
	c->saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	c->log_ev = event_new(base, p[0], EV_READ | EV_PERSIST, log_read_cb, c);
	c->log_hold = evtimer_new(base, log_hold_cb, c);
	if (c->saved_stderr < 0 || !c->log_ev || !c->log_hold ||
	    fcntl(p[0], F_SETFL, O_NONBLOCK) < 0 ||
	    event_add(c->log_ev, NULL) < 0 || dup2(p[1], STDERR_FILENO) < 0) {
		close(p[0]);
		close(p[1]);
		if (c->saved_stderr >= 0)
			close(c->saved_stderr);
		c->saved_stderr = -1;
		return;
	}
	close(p[1]);
	c->log_rfd = p[0];
}

int mmud_console_new(struct event_base *base, const struct mmud_config *cfg,
		     struct mmud_console **out)
{
	struct mmud_console *c = calloc(1, sizeof(*c));
	int fd, r = -ENOMEM;

	if (!c)
		return -ENOMEM;
	c->fd = -1;
	c->fd_flags = -1;
	c->fd_bol = true;
	c->efd = -1;
	c->log_rfd = -1;
	c->saved_stderr = -1;
	pthread_mutex_init(&c->lock, NULL);
	LIST_INIT(&c->clients);
	c->retry = evtimer_new(base, retry_cb, c);
	c->retry_usec = INPUT_RETRY_USEC;
	c->qmp_in = evbuffer_new();
	if (!c->retry || !c->qmp_in)
		goto fail;
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd < 0) {
		r = -errno;
		goto fail;
	}
	c->ev = event_new(base, c->efd, EV_READ | EV_PERSIST, pump_all, c);
	if (!c->ev || event_add(c->ev, NULL) < 0)
		goto fail;
	switch (cfg->console_kind) {
	case MMUD_CONSOLE_STDOUT:
		open_stdout(c);
		c->backend = strdup("stdio");
		if (!c->backend)
			goto fail;
		break;
	case MMUD_CONSOLE_FILE:
		r = open_file(cfg->console_path, &c->fd);
		if (r < 0)
			goto fail;
		r = -ENOMEM;
		c->own_fd = true;
		if (asprintf(&c->backend, "file:%s", cfg->console_path) < 0) {
			c->backend = NULL;
			goto fail;
		}
		break;
	case MMUD_CONSOLE_SOCKET:
		break;
	}
	if (c->fd >= 0) {
		struct stat st;

		/* epoll refuses regular files: they never block anyway. */
		if (fstat(c->fd, &st) == 0 && !S_ISREG(st.st_mode) &&
		    !S_ISBLK(st.st_mode)) {
			c->fd_ev = event_new(base, c->fd, EV_WRITE,
					     fd_writable_cb, c);
			if (!c->fd_ev)
				goto fail;
		}
		capture_logs(c, base);
		*out = c;
		return 0;
	}
	if (cfg->console_kind != MMUD_CONSOLE_SOCKET) {
		*out = c;
		return 0;
	}
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
	c->backoff = qmp_accept_backoff_new(c->listener, "mmud: console");
	if (!c->backoff)
		goto fail;
	evconnlistener_set_error_cb(c->listener, accept_error_cb);
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

/*
 * The end for the output sink: fd 2 back to the terminal, then what the
 * guest printed and mmud logged that is not out yet, as fast as the sink
 * takes it until the deadline (a pipe nobody reads must not hold up
 * quit or SIGTERM); the count of what was lost goes to stderr.
 */
static void drain_out(struct mmud_console *c)
{
	int64_t deadline = now_msec() + CLOSE_DRAIN_MSEC;
	char msg[200];

	if (c->saved_stderr >= 0) {
		dup2(c->saved_stderr, STDERR_FILENO);
		close(c->saved_stderr);
		c->saved_stderr = -1;
		read_logs(c); /* every writer of the pipe's end is gone */
	}
	if (c->fd_ev)
		event_del(c->fd_ev);
	for (;;) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
		int64_t left;
		bool more;

		struct evbuffer *logs = c->logs;

		/* The guest's last output, then the last log lines. */
		c->logs = NULL;
		flush_out(c);
		c->logs = logs;
		if (c->fd < 0 || c->fd_dead)
			break;
		pthread_mutex_lock(&c->lock);
		more = c->fd_pos != c->total;
		pthread_mutex_unlock(&c->lock);
		if (!more && logs) {
			c->log_break = true;
			flush_out(c);
			if (c->fd_dead)
				break;
		}
		if (!more && !(logs && evbuffer_get_length(logs)))
			break;
		left = deadline - now_msec();
		if (left <= 0 ||
		    (poll(&pfd, 1, (int)left) < 0 && errno != EINTR))
			break;
	}
	if (c->fd >= 0) {
		pthread_mutex_lock(&c->lock);
		c->dropped += c->total - c->fd_pos;
		pthread_mutex_unlock(&c->lock);
	}
	if (c->fd_ev)
		event_free(c->fd_ev);
	c->fd_ev = NULL;
	if (!c->dropped)
		return;
	snprintf(msg, sizeof(msg),
		 "<4>mmud: console: %llu bytes of guest output were dropped: "
		 "%s %s\n",
		 (unsigned long long)c->dropped,
		 c->backend ? c->backend : "the sink",
		 c->fd_dead ? "had failed" : "did not take them in time");
	if (c->logs) {
		/* The console's terminal: on a line of its own, if it can
		 * take it now. */
		evbuffer_add(c->logs, msg, strlen(msg));
		c->log_break = true;
		flush_out(c);
	} else {
		fputs(msg, stderr);
	}
}

void mmud_console_free(struct mmud_console *c)
{
	struct con_client *cl;

	if (!c)
		return;
	if (c->listener)
		evconnlistener_free(c->listener);
	qmp_accept_backoff_free(c->backoff);
	qmp_unix_unlink(c->sock);
	drain_out(c);
	drain_clients(c);
	while ((cl = LIST_FIRST(&c->clients)) != NULL)
		client_free(cl);
	if (c->ev)
		event_free(c->ev);
	if (c->retry)
		event_free(c->retry);
	if (c->log_ev)
		event_free(c->log_ev);
	if (c->log_hold)
		event_free(c->log_hold);
	if (c->logs)
		evbuffer_free(c->logs);
	if (c->log_rfd >= 0)
		close(c->log_rfd);
	if (c->qmp_in)
		evbuffer_free(c->qmp_in);
	if (c->efd >= 0)
		close(c->efd);
	if (c->fd_flags >= 0)
		fcntl(c->fd, F_SETFL, c->fd_flags);
	if (c->own_fd)
		close(c->fd);
	pthread_mutex_destroy(&c->lock);
	free(c->path);
	free(c->backend);
	free(c);
}
