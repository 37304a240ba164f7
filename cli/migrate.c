/*
 * mmuctl's migration commands: `migrate URI [options]` turns its options
 * into migrate-set-capabilities and migrate-set-parameters, sends
 * migrate, and with --wait or --progress polls query-migrate until the
 * migration ends, drawing a progress bar on a terminal (one line a
 * second otherwise); `incoming URI` sends migrate-incoming and says
 * where the destination listens. Everything is QEMU's QMP by QEMU's
 * names (docs/QMP.md, "Migration"); what the numbers mean is the
 * daemon's. `migrate status` and `migrate cancel` are plain commands of
 * cli/mmuctl.c's table.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "console.h"
#include "migrate.h"
#include "rpc.h"

/* How often --wait asks, and how often a non-terminal gets a line. */
#define POLL_MS 200
#define LINE_MS 1000
/* query-migrate with no status this long after migrate: give up. */
#define NO_STATUS_MS 10000

static const char *prog_name = "mmuctl";

void mmuctl_migrate_usage(FILE *f)
{
	fprintf(f,
		"usage: mmuctl [OPTIONS] migrate URI [--bandwidth BYTES]\n"
		"              [--downtime MS] [--auto-converge | "
		"--dirty-limit MBPS]\n"
		"              [--wait] [--progress]\n"
		"       mmuctl [OPTIONS] migrate --to NAME|SOCKET [options as "
		"above]\n"
		"       mmuctl [OPTIONS] migrate status | migrate cancel\n"
		"       mmuctl [OPTIONS] incoming URI\n"
		"\n"
		"migrate sends the VM to the mmud (or QEMU) listening at URI:\n"
		"unix:PATH, tcp:HOST:PORT, tcp:[IPV6]:PORT, fd:NAME (a\n"
		"descriptor passed with getfd) or file:PATH[,offset=N].\n"
		"  --bandwidth BYTES  max-bandwidth in bytes/s (K/M/G suffixes,\n"
		"                     powers of 1024; 0: no limit)\n"
		"  --downtime MS      downtime-limit: the longest pause allowed\n"
		"  --auto-converge    throttle the vCPUs while they dirty memory\n"
		"                     faster than the link sends it\n"
		"  --dirty-limit MBPS cap each vCPU's dirty rate (MB/s) instead\n"
		"  --wait             wait for the end: exit 0 if completed, 1 "
		"if\n"
		"                     failed or cancelled (Ctrl-C cancels)\n"
		"  --progress         --wait, and show progress: a bar on a\n"
		"                     terminal, a line a second otherwise\n"
		"  --to NAME|SOCKET   instead of URI: the mmud of that VM name\n"
		"                     (or QMP socket), started --incoming defer;\n"
		"                     mmuctl joins the two with a socket pair it\n"
		"                     hands each with getfd (fd:mmuctl-migrate),\n"
		"                     so neither needs a network or a shared "
		"folder\n"
		"incoming starts the destination (an mmud started with\n"
		"--incoming defer) listening at, or reading from, URI.\n"
		"migrate status prints query-migrate; migrate cancel stops the\n"
		"migration (the VM runs on here).\n");
}

/* Decimal with an optional K/M/G/T suffix (powers of 1024). */
static int parse_u63(const char *s, bool suffix, int64_t *out)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (suffix && *end) {
		const char *units = "KMGT", *u = strchr(units, *end);

		if (!u || end[1])
			return -1;
		shift = 10 * (int)(u - units + 1);
		end++;
	}
	if (*end || v > (unsigned long long)INT64_MAX >> shift)
		return -1;
	*out = (int64_t)(v << shift);
	return 0;
}

int mmuctl_migrate_opt(struct mmuctl_migrate_opts *o, int opt, const char *arg,
		       const char *prog)
{
	o->any = true;
	switch (opt) {
	case MMUCTL_OPT_BANDWIDTH:
		if (parse_u63(arg, true, &o->bandwidth) < 0) {
			fprintf(stderr,
				"%s: --bandwidth '%s': bytes per second, "
				"with an optional K, M, G or T\n",
				prog, arg);
			return -1;
		}
		return 0;
	case MMUCTL_OPT_DOWNTIME:
		if (parse_u63(arg, false, &o->downtime) < 0) {
			fprintf(stderr, "%s: --downtime '%s': milliseconds\n",
				prog, arg);
			return -1;
		}
		return 0;
	case MMUCTL_OPT_DIRTY_LIMIT:
		if (parse_u63(arg, false, &o->dirty_limit) < 0 ||
		    o->dirty_limit == 0) {
			fprintf(stderr,
				"%s: --dirty-limit '%s': MB/s, 1 or more\n",
				prog, arg);
			return -1;
		}
		return 0;
	case MMUCTL_OPT_AUTO_CONVERGE:
		o->auto_converge = true;
		return 0;
	case MMUCTL_OPT_WAIT:
		o->wait = true;
		return 0;
	case MMUCTL_OPT_PROGRESS:
		o->progress = true;
		return 0;
	case MMUCTL_OPT_TO:
		o->to = arg;
		return 0;
	}
	return -1;
}

/* ---- talking to the daemon -------------------------------------------- */

/*
 * Runs cmd; prints "class: desc" of an error reply. The return value
 * (owned by the caller) or NULL after an error was printed.
 */
static json_t *execute(struct qmp_conn *c, const char *cmd, json_t *args,
		       int timeout_ms)
{
	json_t *reply, *ret, *err;
	int r = qmp_conn_execute(c, cmd, args, timeout_ms, &reply);

	if (r < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog_name, cmd, strerror(-r));
		return NULL;
	}
	err = json_object_get(reply, "error");
	if (err) {
		fprintf(stderr, "%s: %s: %s: %s\n", prog_name, cmd,
			json_string_value(json_object_get(err, "class")) ?:
				"(no class)",
			json_string_value(json_object_get(err, "desc")) ?: "");
		json_decref(reply);
		return NULL;
	}
	ret = json_incref(json_object_get(reply, "return"));
	json_decref(reply);
	if (!ret)
		fprintf(stderr, "%s: %s: a reply with no return value\n",
			prog_name, cmd);
	return ret;
}

static bool execute_ok(struct qmp_conn *c, const char *cmd, json_t *args,
		       int timeout_ms)
{
	json_t *ret = execute(c, cmd, args, timeout_ms);

	json_decref(ret);
	return ret != NULL;
}

/* Capabilities and parameters the options ask for, before migrate. */
static bool configure(struct qmp_conn *c, const struct mmuctl_migrate_opts *o,
		      int timeout_ms)
{
	json_t *params = json_object();

	/* QEMU refuses auto-converge and dirty-limit together: turning
	 * one on turns the other off. */
	if (o->auto_converge || o->dirty_limit > 0) {
		json_t *caps =
			json_pack("{s:[{s:s, s:b}, {s:s, s:b}]}",
				  "capabilities", "capability", "auto-converge",
				  "state", o->auto_converge, "capability",
				  "dirty-limit", "state", o->dirty_limit > 0);

		if (!execute_ok(c, "migrate-set-capabilities", caps,
				timeout_ms)) {
			json_decref(params);
			return false;
		}
	}
	if (o->bandwidth >= 0)
		json_object_set_new(params, "max-bandwidth",
				    json_integer(o->bandwidth));
	if (o->downtime >= 0)
		json_object_set_new(params, "downtime-limit",
				    json_integer(o->downtime));
	if (o->dirty_limit > 0)
		json_object_set_new(params, "vcpu-dirty-limit",
				    json_integer(o->dirty_limit));
	if (json_object_size(params) == 0) {
		json_decref(params);
		return true;
	}
	return execute_ok(c, "migrate-set-parameters", params, timeout_ms);
}

/* ---- following a migration -------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static double num(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (json_is_integer(v))
		return (double)json_integer_value(v);
	return json_is_real(v) ? json_real_value(v) : 0;
}

static bool is_final(const char *status)
{
	return !strcmp(status, "completed") || !strcmp(status, "failed") ||
	       !strcmp(status, "cancelled");
}

#define MIB (1024.0 * 1024.0)

/*
 * One progress report of query-migrate's return value: a bar redrawn in
 * place on a terminal, a line otherwise. percent is how much of RAM is
 * no longer waiting to be sent ((total - remaining) / total), as virsh
 * shows it; ram.mbps is QEMU's megabits per second.
 */
static void show(const json_t *info, bool tty)
{
	const json_t *ram = json_object_get(info, "ram");
	const char *status = json_string_value(json_object_get(info, "status"));
	double total = num(ram, "total"), remaining = num(ram, "remaining");
	double sent = num(ram, "transferred");
	double mibs = num(ram, "mbps") * 1e6 / 8 / MIB;
	double pct = total > 0 ? (total - remaining) * 100 / total : 0;
	char bar[21];
	int fill;

	if (pct < 0)
		pct = 0;
	if (!ram)
		pct = 0;
	if (!tty) {
		printf("%s: %3.0f%% sent %.1f MiB, remaining %.1f MiB, "
		       "%.1f MiB/s, dirty %.0f pages/s, pass %.0f, expected "
		       "downtime %.0f ms\n",
		       status, pct, sent / MIB, remaining / MIB, mibs,
		       num(ram, "dirty-pages-rate"),
		       num(ram, "dirty-sync-count"),
		       num(info, "expected-downtime"));
		fflush(stdout);
		return;
	}
	fill = (int)(pct / 5);
	for (int i = 0; i < 20; i++)
		bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
	bar[20] = '\0';
	printf("\r\033[K[%s] %3.0f%% %.1f/%.1f MiB rem %.1f MiB "
	       "%.1f MiB/s dirty %.0f p/s pass %.0f downtime ~%.0f ms %s",
	       bar, pct, sent / MIB, total / MIB, remaining / MIB, mibs,
	       num(ram, "dirty-pages-rate"), num(ram, "dirty-sync-count"),
	       num(info, "expected-downtime"), status);
	fflush(stdout);
}

/* The end, said once: a summary on stdout, or why not on stderr. */
static int summarize(const json_t *info, bool json)
{
	const char *status = json_string_value(json_object_get(info, "status"));
	const json_t *ram = json_object_get(info, "ram");

	if (json) {
		char *s = json_dumps(info, JSON_INDENT(2) | JSON_SORT_KEYS);

		if (s)
			puts(s);
		free(s);
	}
	if (!strcmp(status, "completed")) {
		if (!json)
			printf("migration completed: %.0f ms, downtime %.0f "
			       "ms, %.1f MiB sent in %.0f passes\n",
			       num(info, "total-time"), num(info, "downtime"),
			       num(ram, "transferred") / MIB,
			       num(ram, "dirty-sync-count"));
		return 0;
	}
	if (!strcmp(status, "failed"))
		fprintf(stderr, "%s: migration failed: %s\n", prog_name,
			json_string_value(json_object_get(info, "error-desc")) ?:
				"(no reason given)");
	else
		fprintf(stderr, "%s: migration %s\n", prog_name, status);
	return EXIT_FAILED;
}

/*
 * Polls query-migrate until the migration ends. Ctrl-C sends
 * migrate_cancel once and goes on waiting for "cancelled".
 */
static int follow(struct qmp_conn *c, const struct mmuctl_migrate_opts *o,
		  bool json, int timeout_ms)
{
	struct sigaction sa = { .sa_handler = on_sigint }, old;
	bool tty = o->progress && isatty(STDOUT_FILENO), cancelled = false;
	uint64_t start = now_ms(), last_line = 0;
	int ret = EXIT_FAILED;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old);
	for (;;) {
		json_t *info;
		const char *status;

		if (interrupted && !cancelled) {
			cancelled = true;
			if (tty)
				printf("\n");
			fprintf(stderr, "%s: cancelling the migration\n",
				prog_name);
			if (!execute_ok(c, "migrate_cancel", NULL, timeout_ms))
				break;
		}
		info = execute(c, "query-migrate", NULL, timeout_ms);
		if (!info)
			break;
		status = json_string_value(json_object_get(info, "status"));
		if (!status) {
			json_decref(info);
			if (now_ms() - start > NO_STATUS_MS) {
				fprintf(stderr,
					"%s: query-migrate reports no "
					"migration\n",
					prog_name);
				break;
			}
		} else if (is_final(status)) {
			if (tty)
				printf("\r\033[K");
			ret = summarize(info, json);
			json_decref(info);
			break;
		} else {
			if (tty) {
				show(info, true);
			} else if (o->progress &&
				   now_ms() - last_line >= LINE_MS) {
				show(info, false);
				last_line = now_ms();
			}
			json_decref(info);
		}
		poll(NULL, 0, POLL_MS);
	}
	sigaction(SIGINT, &old, NULL);
	return ret;
}

/* ---- --to: a socket pair handed to both ends --------------------------- */

#define PAIR_FDNAME "mmuctl-migrate"

/*
 * Runs cmd with fd passed by SCM_RIGHTS in the same sendmsg() as its
 * text (docs/QMP.md, "Passing descriptors"). Events that come before
 * the reply are dropped. As execute().
 */
static json_t *execute_with_fd(struct qmp_conn *c, const char *cmd,
			       json_t *args, int fd, int timeout_ms)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	json_t *msg =
		json_pack("{s:s, s:o}", "execute", cmd, "arguments", args);
	char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	struct iovec iov;
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;
	json_t *reply = NULL, *ret, *err;
	ssize_t n;
	int r = 0;

	json_decref(msg);
	if (!text) {
		fprintf(stderr, "%s: %s: out of memory\n", prog_name, cmd);
		return NULL;
	}
	iov.iov_base = text;
	iov.iov_len = strlen(text);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	memset(&ctl, 0, sizeof(ctl));
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	n = sendmsg(qmp_conn_fd(c), &mh, MSG_NOSIGNAL);
	if (n < 0 || (size_t)n != iov.iov_len) {
		r = n < 0 ? -errno : -EIO;
		free(text);
		fprintf(stderr, "%s: %s: %s\n", prog_name, cmd, strerror(-r));
		return NULL;
	}
	free(text);
	while ((r = qmp_conn_recv(c, timeout_ms, &reply)) == 0 &&
	       json_object_get(reply, "event"))
		json_decref(reply);
	if (r < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog_name, cmd, strerror(-r));
		return NULL;
	}
	err = json_object_get(reply, "error");
	if (err) {
		fprintf(stderr, "%s: %s: %s: %s\n", prog_name, cmd,
			json_string_value(json_object_get(err, "class")) ?:
				"(no class)",
			json_string_value(json_object_get(err, "desc")) ?: "");
		json_decref(reply);
		return NULL;
	}
	ret = json_incref(json_object_get(reply, "return"));
	json_decref(reply);
	return ret;
}

/*
 * The destination at o->to listens on one end of a socket pair
 * (getfd, migrate-incoming fd:NAME); the source gets the other end
 * under the same name. Both ends are the daemons' once given: mmuctl
 * closes its copies. Returns the URI for migrate, or NULL after saying
 * why (the destination, if it got its end, then sees EOF and fails its
 * load, as after any failed migration).
 */
static const char *join_by_pair(struct qmp_conn *src,
				const struct mmuctl_migrate_opts *o,
				int timeout_ms)
{
	struct qmp_conn *dst;
	json_t *ret;
	int sp[2];
	bool ok = false;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		fprintf(stderr, "%s: socketpair: %s\n", prog_name,
			strerror(errno));
		return NULL;
	}
	if (mmuctl_open_qmp(o->to, timeout_ms, &dst) < 0)
		goto out;
	ret = execute_with_fd(dst, "getfd",
			      json_pack("{s:s}", "fdname", PAIR_FDNAME), sp[1],
			      timeout_ms);
	if (ret && execute_ok(dst, "migrate-incoming",
			      json_pack("{s:s}", "uri", "fd:" PAIR_FDNAME),
			      timeout_ms)) {
		json_decref(ret);
		ret = execute_with_fd(src, "getfd",
				      json_pack("{s:s}", "fdname", PAIR_FDNAME),
				      sp[0], timeout_ms);
		ok = ret != NULL;
	} else if (ret) {
		/* Refused: the destination keeps no name of ours. */
		execute_ok(dst, "closefd",
			   json_pack("{s:s}", "fdname", PAIR_FDNAME),
			   timeout_ms);
	}
	json_decref(ret);
	qmp_conn_close(dst);
out:
	close(sp[0]);
	close(sp[1]);
	return ok ? "fd:" PAIR_FDNAME : NULL;
}

/* ---- the commands ----------------------------------------------------- */

static int migrate(struct qmp_conn *c, const char *uri,
		   const struct mmuctl_migrate_opts *o, bool json,
		   int timeout_ms)
{
	if (!configure(c, o, timeout_ms))
		return EXIT_FAILED;
	if (o->to) {
		uri = join_by_pair(c, o, timeout_ms);
		if (!uri)
			return EXIT_FAILED;
	}
	if (!execute_ok(c, "migrate", json_pack("{s:s}", "uri", uri),
			timeout_ms)) {
		/* Not taken: the source's end goes, the destination's load
		 * ends at EOF. */
		if (o->to)
			execute_ok(c, "closefd",
				   json_pack("{s:s}", "fdname", PAIR_FDNAME),
				   timeout_ms);
		return EXIT_FAILED;
	}
	if (!o->wait && !o->progress) {
		if (json)
			puts("{}");
		return 0;
	}
	return follow(c, o, json, timeout_ms);
}

/* Where the destination listens, from query-migrate's socket-address. */
static void print_listening(const json_t *info)
{
	const json_t *a =
		json_array_get(json_object_get(info, "socket-address"), 0);
	const char *type = json_string_value(json_object_get(a, "type"));
	const char *host = json_string_value(json_object_get(a, "host"));
	const char *port = json_string_value(json_object_get(a, "port"));
	const char *path = json_string_value(json_object_get(a, "path"));

	if (type && !strcmp(type, "unix") && path)
		printf("listening on unix:%s\n", path);
	else if (type && !strcmp(type, "inet") && host && port)
		printf(strchr(host, ':') ? "listening on tcp:[%s]:%s\n" :
					   "listening on tcp:%s:%s\n",
		       host, port);
}

static int incoming(struct qmp_conn *c, const char *uri, bool json,
		    int timeout_ms)
{
	json_t *info;

	if (!execute_ok(c, "migrate-incoming", json_pack("{s:s}", "uri", uri),
			timeout_ms))
		return EXIT_FAILED;
	info = execute(c, "query-migrate", NULL, timeout_ms);
	if (!info)
		return EXIT_FAILED;
	if (json) {
		char *s = json_dumps(info, JSON_INDENT(2) | JSON_SORT_KEYS);

		if (s)
			puts(s);
		free(s);
	} else {
		print_listening(info);
	}
	json_decref(info);
	return 0;
}

int mmuctl_migrate(const char *prog, const char *socket_path, bool json,
		   int timeout_ms, const struct mmuctl_migrate_opts *o,
		   int argc, char **argv)
{
	bool is_incoming = !strcmp(argv[0], "incoming");
	struct qmp_conn *c;
	int ret;

	prog_name = prog;
	if (argc != (o->to && !is_incoming ? 1 : 2) ||
	    (is_incoming && o->any)) {
		mmuctl_migrate_usage(stderr);
		return EXIT_USAGE;
	}
	if (o->auto_converge && o->dirty_limit > 0) {
		fprintf(stderr,
			"%s: --auto-converge and --dirty-limit exclude each "
			"other\n",
			prog);
		return EXIT_USAGE;
	}
	if (mmuctl_open_qmp(socket_path, timeout_ms, &c) < 0)
		return EXIT_USAGE;
	if (is_incoming)
		ret = incoming(c, argv[1], json, timeout_ms);
	else
		ret = migrate(c, o->to ? NULL : argv[1], o, json, timeout_ms);
	qmp_conn_close(c);
	return ret;
}
