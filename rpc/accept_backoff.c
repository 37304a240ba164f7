/*
 * A libevent listener that backs off while accept() fails, for the QMP
 * server and the daemon's console socket. Out of descriptors (EMFILE,
 * ENFILE) or memory, a pending connection stays in the backlog and the
 * listener would fire again at once, in a loop (libevent logs every
 * failure: tens of thousands of lines a second into the journal). So the
 * listener pauses, 100 ms at first and doubling to 3.2 s while accept()
 * keeps failing; one line is logged when such an episode starts and one
 * when accepting works again. Event-loop thread only.
 */
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"

#define FIRST_MS 100
#define LAST_MS 3200

struct qmp_accept_backoff {
	struct evconnlistener *listener; /* (e) */
	struct event *retry_ev; /* (e) re-enables the listener */
	const char *who; /* (c) the log lines' prefix: "qmp", "console" */
	unsigned int ms; /* (e) the current pause; 0: accepting normally */
	unsigned long failures; /* (e) in the current episode */
};

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qmp_accept_backoff *b = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(b->listener);
}

struct qmp_accept_backoff *qmp_accept_backoff_new(struct evconnlistener *l,
						  const char *who)
{
	struct qmp_accept_backoff *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->listener = l;
	b->who = who;
	b->retry_ev = evtimer_new(evconnlistener_get_base(l), retry_cb, b);
	if (!b->retry_ev) {
		free(b);
		return NULL;
	}
	return b;
}

void qmp_accept_backoff_failed(struct qmp_accept_backoff *b, int err)
{
	struct timeval tv;

	b->failures++;
	if (b->ms == 0) {
		b->ms = FIRST_MS;
		fprintf(stderr,
			"<4>%s: cannot accept a client: %s; pausing new "
			"connections, retrying from %d ms up to every %.1f s\n",
			b->who, strerror(err), FIRST_MS, LAST_MS / 1000.0);
	} else if (b->ms < LAST_MS) {
		b->ms *= 2;
	}
	evconnlistener_disable(b->listener);
	tv.tv_sec = b->ms / 1000;
	tv.tv_usec = b->ms % 1000 * 1000;
	evtimer_add(b->retry_ev, &tv);
}

void qmp_accept_backoff_accepted(struct qmp_accept_backoff *b)
{
	if (!b->ms)
		return;
	fprintf(stderr,
		"<5>%s: accepting clients again after %lu failed accept() "
		"calls\n",
		b->who, b->failures);
	b->ms = 0;
	b->failures = 0;
}

void qmp_accept_backoff_free(struct qmp_accept_backoff *b)
{
	if (!b)
		return;
	event_free(b->retry_ev);
	free(b);
}
