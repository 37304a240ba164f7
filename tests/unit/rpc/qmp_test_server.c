/*
 * A QMP server with a handful of test commands and no VM, for the rpc
 * tests: a synchronous echo, a command with typed required and optional
 * arguments, one that completes later from a timer on the loop, one that
 * completes from another thread through qmp_server_call_soon(), one that
 * emits an event, and stand-ins for the daemon's commands that mmuctl
 * drives (they echo their arguments so the tests can check key=value
 * typing). Usage: qmp_test_server SOCKET; prints "ready" on stdout once
 * it listens, and exits 0 after quit or SIGTERM.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "memops_args.h"
#include "rpc.h"

static struct event_base *base;
static struct qmp_server *srv;

static void cmd_echo(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)opaque;
	qmp_reply_return(req, json_deep_copy(args));
}

static const struct qmp_arg echo_args[] = {
	{ "value", QMP_ARG_ANY, true },
	QMP_ARGS_END,
};

static const struct qmp_arg typed_args[] = {
	{ "s", QMP_ARG_STRING, false },
	{ "i", QMP_ARG_INT, false },
	{ "b", QMP_ARG_BOOL, true },
	{ "n", QMP_ARG_NUMBER, true },
	{ "o", QMP_ARG_OBJECT, true },
	{ "a", QMP_ARG_ARRAY, true },
	QMP_ARGS_END,
};

/* Counts side effects so a test can prove a refused call had none. */
static long long typed_calls;

static void cmd_typed(struct qmp_request *req, json_t *args, void *opaque)
{
	json_t *ret = json_deep_copy(args);

	(void)opaque;
	typed_calls++;
	json_object_set_new(ret, "calls", json_integer(typed_calls));
	qmp_reply_return(req, ret);
}

struct later {
	struct qmp_request *req;
	struct event *ev;
	long long value;
	pthread_t thread;
};

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct later *l = arg;

	(void)fd;
	(void)what;
	qmp_reply_return(l->req, json_pack("{s:I}", "slept", l->value));
	event_free(l->ev);
	free(l);
}

static const struct qmp_arg sleep_args[] = {
	{ "ms", QMP_ARG_INT, false },
	QMP_ARGS_END,
};

/* Answers from a timer: the reply comes after later requests arrive. */
static void cmd_async_sleep(struct qmp_request *req, json_t *args, void *opaque)
{
	long long ms = json_integer_value(json_object_get(args, "ms"));
	struct timeval tv;
	struct later *l;

	(void)opaque;
	if (ms < 0 || ms > 10000) {
		qmp_reply_invalid_value(req, "ms", "a value in [0, 10000]");
		return;
	}
	l = calloc(1, sizeof(*l));
	l->req = req;
	l->value = ms;
	l->ev = evtimer_new(base, later_cb, l);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(l->ev, &tv);
}

static void thread_done(void *arg)
{
	struct later *l = arg;

	pthread_join(l->thread, NULL);
	qmp_reply_return(l->req, json_pack("{s:I}", "value", l->value));
	free(l);
}

static void *thread_main(void *arg)
{
	struct later *l = arg;

	l->value *= 2;
	qmp_server_call_soon(srv, thread_done, l);
	return NULL;
}

static const struct qmp_arg thread_args[] = {
	{ "value", QMP_ARG_INT, false },
	QMP_ARGS_END,
};

/* Answers from another thread's completion. */
static void cmd_thread_work(struct qmp_request *req, json_t *args, void *opaque)
{
	struct later *l = calloc(1, sizeof(*l));

	(void)opaque;
	l->req = req;
	l->value = json_integer_value(json_object_get(args, "value"));
	if (pthread_create(&l->thread, NULL, thread_main, l)) {
		free(l);
		qmp_reply_error(req, QMP_ERROR_GENERIC, "no thread");
	}
}

static const struct qmp_arg emit_args[] = {
	{ "name", QMP_ARG_STRING, false },
	{ "data", QMP_ARG_OBJECT, true },
	QMP_ARGS_END,
};

static void cmd_emit(struct qmp_request *req, json_t *args, void *opaque)
{
	json_t *data = json_object_get(args, "data");
	char *name = strdup(json_string_value(json_object_get(args, "name")));

	(void)opaque;
	if (data)
		json_incref(data);
	/* The reply first, as QEMU's stop/STOP; args die with the reply. */
	qmp_reply_ok(req);
	qmp_server_emit_event(srv, name, data);
	free(name);
}

static void cmd_nr_clients(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)args;
	(void)opaque;
	qmp_reply_return(req, json_integer(qmp_server_nr_clients(srv)));
}

static void cmd_fail(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)args;
	(void)opaque;
	qmp_reply_error(req, QMP_ERROR_GENERIC, "failed on purpose");
}

/* Stand-ins for the daemon's commands, shaped as docs/QMP.md says. */
static bool running = true;

static void cmd_query_status(struct qmp_request *req, json_t *args,
			     void *opaque)
{
	(void)args;
	(void)opaque;
	qmp_reply_return(req,
			 json_pack("{s:b, s:s}", "running", running, "status",
				   running ? "running" : "paused"));
}

static void cmd_stop(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)args;
	(void)opaque;
	running = false;
	qmp_reply_ok(req);
	qmp_server_emit_event(srv, "STOP", NULL);
}

static void cmd_cont(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)args;
	(void)opaque;
	running = true;
	qmp_reply_ok(req);
	qmp_server_emit_event(srv, "RESUME", NULL);
}

static void cmd_quit(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)args;
	(void)opaque;
	qmp_reply_ok(req);
	qmp_server_emit_event(srv, "SHUTDOWN",
			      json_pack("{s:b, s:s}", "guest", 0, "reason",
					"host-qmp-quit"));
	event_base_loopexit(base, NULL);
}

static void cmd_cpus(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)args;
	(void)opaque;
	qmp_reply_return(
		req, json_pack("[{s:i, s:s, s:i, s:s}, {s:i, s:s, s:i, s:s}]",
			       "cpu-index", 0, "qom-path", "/machine/cpu[0]",
			       "thread-id", 1234, "target", "x86_64",
			       "cpu-index", 1, "qom-path", "/machine/cpu[1]",
			       "thread-id", 1235, "target", "x86_64"));
}

static void cmd_memslots(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)args;
	(void)opaque;
	qmp_reply_return(req, json_pack("[{s:i, s:I, s:I, s:b, s:b}]", "slot",
					0, "gpa", (json_int_t)0, "size",
					(json_int_t)256 << 20, "readonly", 0,
					"log-dirty", 0));
}

static void cmd_stats(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)args;
	(void)opaque;
	qmp_reply_return(req,
			 json_pack("{s:{s:i, s:i}, s:[{s:i, s:i}]}", "vm",
				   "mmu_shadow_zapped", 3, "pages_4k", 10,
				   "vcpus", "cpu-index", 0, "pf_fixed", 7));
}

/* Returns its arguments beside a slot number. */
static void cmd_echo_slot(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)opaque;
	qmp_reply_return(req, json_pack("{s:i, s:O}", "slot", 1, "args", args));
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopexit(base, NULL);
}

struct reg {
	const char *name;
	const struct qmp_arg *args;
	qmp_handler_fn *fn;
};

static const struct reg regs[] = {
	{ "echo", echo_args, cmd_echo },
	{ "typed", typed_args, cmd_typed },
	{ "async-sleep", sleep_args, cmd_async_sleep },
	{ "thread-work", thread_args, cmd_thread_work },
	{ "emit", emit_args, cmd_emit },
	{ "nr-clients", NULL, cmd_nr_clients },
	{ "fail", NULL, cmd_fail },
	{ "query-status", NULL, cmd_query_status },
	{ "stop", NULL, cmd_stop },
	{ "cont", NULL, cmd_cont },
	{ "quit", NULL, cmd_quit },
	{ "query-cpus-fast", NULL, cmd_cpus },
	{ "x-query-memslots", NULL, cmd_memslots },
	{ "x-query-mmu-stats", NULL, cmd_stats },
	{ "x-memslot-add", mmud_memslot_add_args, cmd_echo_slot },
	{ "x-memslot-remove", mmud_slot_args, cmd_echo_slot },
	{ "x-dirty-log-harvest", mmud_harvest_args, cmd_echo_slot },
};

int main(int argc, char **argv)
{
	struct qmp_version ver = { 0, 1, 0, "" };
	struct event *sigterm, *sigint;
	size_t i;
	int ret;

	if (argc != 2) {
		fprintf(stderr, "usage: qmp_test_server SOCKET\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	ret = qmp_server_new(base, argv[1], &ver, &srv);
	if (ret < 0) {
		fprintf(stderr, "qmp_server_new: %s\n", strerror(-ret));
		return 1;
	}
	for (i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		if (qmp_server_register(srv, regs[i].name, regs[i].args,
					regs[i].fn, NULL) < 0)
			return 1;
	if (qmp_server_register(srv, "echo", NULL, cmd_echo, NULL) != -EEXIST)
		return 1;
	sigterm = evsignal_new(base, SIGTERM, on_signal, NULL);
	sigint = evsignal_new(base, SIGINT, on_signal, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	printf("ready\n");
	fflush(stdout);
	event_base_dispatch(base);
	qmp_server_free(srv);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(base);
	return 0;
}
