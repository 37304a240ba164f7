/*
 * mmuctl, the operator CLI of mmud: turns a subcommand and key=value
 * arguments into one QMP command (typed by the argument table below),
 * sends it over rpc's client half, and prints the return value as a
 * table or key: value lines, or as JSON with --json. It also attaches to
 * a VM's console socket and passes raw QMP through. It knows commands
 * only by name and argument types; what they do is the daemon's. Options
 * may come anywhere on the line, as git's do. Exit status: 0 success, 1
 * the command failed (class and desc on stderr), 2 usage error or no
 * connection.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "console.h"
#include "migrate.h"
#include "rpc.h"
#include "vm_paths.h"

#define MAX_NAME 64

enum kv_type {
	KV_INT, /* decimal or 0x hex */
	KV_SIZE, /* like KV_INT, plus K/M/G/T suffixes (powers of 1024) */
	KV_BOOL, /* true/false, on/off, yes/no */
	KV_STR,
};

struct kv_arg {
	const char *name;
	enum kv_type type;
	bool required;
	const char *help;
	bool local; /* mmuctl's own: changes the output, never sent */
};

enum output {
	OUT_NONE, /* success prints nothing */
	OUT_STATUS, /* query-status */
	OUT_VERSION, /* query-version: "0.1.0 (mmud 0.1.0)" */
	OUT_HARVEST, /* x-dirty-log-harvest: the count; bitmap=true adds it */
	OUT_DIRTY_RATE, /* calc-dirty-rate, then query-dirty-rate until done */
	OUT_AUTO, /* tables for lists of objects, key: value otherwise */
};

struct subcmd {
	const char *name; /* one or two words */
	const char *qmp;
	const struct kv_arg *args;
	enum output out;
	const char *summary;
};

static const struct kv_arg memslot_add_args[] = {
	{ "gpa", KV_SIZE, true, "guest physical base, page-aligned", false },
	{ "size", KV_SIZE, true, "bytes, page-aligned", false },
	{ "readonly", KV_BOOL, false, "guest writes exit as MMIO", false },
	{ "log-dirty", KV_BOOL, false, "start with dirty logging on", false },
	{ NULL, KV_STR, false, NULL, false },
};

static const struct kv_arg slot_args[] = {
	{ "slot", KV_INT, true, "memslot id (see memslot list)", false },
	{ NULL, KV_STR, false, NULL, false },
};

static const struct kv_arg log_start_args[] = {
	{ "slot", KV_INT, true, "memslot id (see memslot list)", false },
	{ "manual-protect", KV_BOOL, false,
	  "harvests only clear; x-dirty-log-clear protects (default false)",
	  false },
	{ NULL, KV_STR, false, NULL, false },
};

static const struct kv_arg dirty_rate_args[] = {
	{ "calc-time", KV_INT, true, "seconds to measure (1 to 60)", false },
	{ "sample-pages", KV_INT, false,
	  "pages sampled per GiB, 128 to 4096 (default 512)", false },
	{ "mode", KV_STR, false, "page-sampling (default) or dirty-bitmap",
	  false },
	{ NULL, KV_STR, false, NULL, false },
};

static const struct kv_arg harvest_args[] = {
	{ "slot", KV_INT, true, "memslot id", false },
	{ "clear", KV_BOOL, false, "re-protect what is reported (default true)",
	  false },
	{ "first-page", KV_INT, false,
	  "only from this page on (a multiple of 64)", false },
	{ "num-pages", KV_INT, false,
	  "only this many pages (default: the whole slot, in parts)", false },
	{ "bitmap", KV_BOOL, false,
	  "also print the bitmap (base64, bit i = page i; default false)",
	  true },
	{ NULL, KV_STR, false, NULL, false },
};

static const struct kv_arg zap_args[] = {
	{ "slow", KV_BOOL, false, "zap page by page instead of fast zap",
	  false },
	{ NULL, KV_STR, false, NULL, false },
};

static const struct subcmd subcmds[] = {
	{ "audit", "x-mmu-audit", NULL, OUT_AUTO,
	  "check every shadow pte against guest tables and memslots" },
	{ "commands", "query-commands", NULL, OUT_AUTO,
	  "list the commands the daemon knows" },
	{ "cont", "cont", NULL, OUT_NONE, "resume the vCPUs" },
	{ "cpus", "query-cpus-fast", NULL, OUT_AUTO,
	  "list the vCPUs with their host threads" },
	{ "dirty harvest", "x-dirty-log-harvest", harvest_args, OUT_HARVEST,
	  "count (and by default clear) a slot's dirty pages" },
	{ "dirty start", "x-dirty-log-start", log_start_args, OUT_NONE,
	  "start dirty logging on a slot" },
	{ "dirty stop", "x-dirty-log-stop", slot_args, OUT_NONE,
	  "stop dirty logging on a slot" },
	{ "dirty-rate", "calc-dirty-rate", dirty_rate_args, OUT_DIRTY_RATE,
	  "measure how fast the guest dirties memory, in MiB/s" },
	{ "memory", "query-memory-size-summary", NULL, OUT_AUTO,
	  "boot RAM and hot-plugged memory, in bytes" },
	{ "memslot add", "x-memslot-add", memslot_add_args, OUT_AUTO,
	  "add a memslot of new memory" },
	{ "memslot list", "x-query-memslots", NULL, OUT_AUTO,
	  "list the memslots" },
	{ "memslot remove", "x-memslot-remove", slot_args, OUT_NONE,
	  "remove a memslot" },
	{ "migrate cancel", "migrate_cancel", NULL, OUT_NONE,
	  "cancel the outgoing migration (the VM runs on here)" },
	{ "migrate status", "query-migrate", NULL, OUT_AUTO,
	  "the migration's state and progress" },
	{ "quit", "quit", NULL, OUT_NONE, "stop the VM and end mmud" },
	{ "reset", "system_reset", NULL, OUT_NONE,
	  "reset the VM to its boot state" },
	{ "stats", "x-query-mmu-stats", NULL, OUT_AUTO,
	  "MMU counters of the VM and each vCPU" },
	{ "status", "query-status", NULL, OUT_STATUS, "the VM's run state" },
	{ "stop", "stop", NULL, OUT_NONE, "pause the vCPUs" },
	{ "version", "query-version", NULL, OUT_VERSION,
	  "the version of the mmud at the socket" },
	{ "zap-all", "x-mmu-zap-all", zap_args, OUT_AUTO,
	  "drop every shadow page" },
};

#define NR_SUBCMDS (sizeof(subcmds) / sizeof(subcmds[0]))

static const char *prog = "mmuctl";

static void usage(FILE *f)
{
	size_t i;

	fprintf(f,
		"usage: mmuctl [--socket PATH | --name NAME] [--json]\n"
		"              [--timeout SECONDS] COMMAND [key=value ...]\n"
		"       mmuctl [--console-socket PATH | --name NAME | --socket "
		"PATH] console\n"
		"       mmuctl [...] qmp '{\"execute\": ...}'\n"
		"       mmuctl help [COMMAND]   or   mmuctl COMMAND --help\n"
		"\n"
		"Talks QMP to one mmud. --name NAME means %s/NAME/qmp.sock;\n"
		"without --socket or --name, $QMP_SOCKET is used. Options may\n"
		"come before or after COMMAND.\n"
		"\n"
		"Commands:\n",
		QMP_VM_RUN_DIR);
	for (i = 0; i < NR_SUBCMDS; i++)
		fprintf(f, "  %-16s %s\n", subcmds[i].name, subcmds[i].summary);
	fprintf(f, "  %-16s %s\n  %-16s %s\n", "console",
		"attach to the serial console (stdin types into it)", "qmp",
		"send one raw QMP command, print the whole reply");
	fprintf(f, "  %-16s %s\n  %-16s %s\n", "migrate URI",
		"send the VM to URI (mmuctl help migrate)", "incoming URI",
		"receive a VM at URI (an mmud started --incoming defer)");
	fprintf(f,
		"\nOptions:\n"
		"  -s, --socket PATH        the QMP socket\n"
		"  -n, --name NAME          the VM's name\n"
		"  -j, --json               print the return value as JSON\n"
		"  -t, --timeout SECONDS    wait at most this long (60)\n"
		"  --console-socket PATH    the console socket for console\n"
		"  -h, --help               this text\n"
		"  -V, --version            mmuctl's version\n"
		"\nExit status: 0 ok, 1 the command failed, 2 usage error or\n"
		"no connection.\n");
}

static const char *type_help(enum kv_type t)
{
	switch (t) {
	case KV_INT:
		return "integer";
	case KV_SIZE:
		return "integer, K/M/G/T suffixes";
	case KV_BOOL:
		return "true|false";
	case KV_STR:
		break;
	}
	return "string";
}

static void sub_usage(FILE *f, const struct subcmd *s)
{
	const struct kv_arg *a;

	fprintf(f, "usage: mmuctl [OPTIONS] %s", s->name);
	for (a = s->args; a && a->name; a++)
		fprintf(f, a->required ? " %s=VALUE" : " [%s=VALUE]", a->name);
	fprintf(f, "\n\n%s (QMP %s).\n", s->summary, s->qmp);
	if (s->args && s->args->name) {
		fprintf(f, "\nArguments:\n");
		for (a = s->args; a->name; a++)
			fprintf(f, "  %-10s %s (%s%s)\n", a->name, a->help,
				type_help(a->type),
				a->required ? ", required" : "");
	}
}

static void console_usage(FILE *f)
{
	fprintf(f,
		"usage: mmuctl [--console-socket PATH | --name NAME | "
		"--socket PATH] console\n\n"
		"Copies the VM's serial console to stdout, and stdin to the\n"
		"guest's COM1 input, until the daemon closes it. On a terminal\n"
		"keys go to the guest as typed (Enter sends CR, Ctrl-C is\n"
		"0x03 for the guest) and Ctrl-] leaves; otherwise SIGINT or\n"
		"SIGTERM ends it. The socket is --console-socket PATH, or\n"
		"%s/NAME/console.sock with --name, or the one the\n"
		"mmud at --socket (or $QMP_SOCKET) reports for serial0 in\n"
		"query-chardev.\n",
		QMP_VM_RUN_DIR);
}

static void qmp_usage(FILE *f)
{
	fprintf(f, "usage: mmuctl [OPTIONS] qmp JSON\n\n"
		   "Sends JSON (one QMP command object) after negotiation and\n"
		   "prints the reply as it came. Exit status 1 on an error "
		   "reply.\n");
}

/* ---- key=value typing -------------------------------------------------- */

static int parse_int(const char *s, bool suffix, long long *out)
{
	unsigned long long v, mul = 1;
	bool neg = false;
	char *end;

	if (*s == '-') {
		neg = true;
		s++;
	}
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno)
		return -ERANGE;
	if (suffix && *end) {
		switch (*end) {
		case 'k':
		case 'K':
			mul = 1ULL << 10;
			break;
		case 'm':
		case 'M':
			mul = 1ULL << 20;
			break;
		case 'g':
		case 'G':
			mul = 1ULL << 30;
			break;
		case 't':
		case 'T':
			mul = 1ULL << 40;
			break;
		default:
			return -EINVAL;
		}
		end++;
		if (*end == 'i' && end[1] == 'B')
			end += 2;
		else if (*end == 'B')
			end++;
	}
	if (*end)
		return -EINVAL;
	if (v > (unsigned long long)LLONG_MAX / mul)
		return -ERANGE;
	v *= mul;
	*out = neg ? -(long long)v : (long long)v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "on", "yes", "1" };
	static const char *const no[] = { "false", "off", "no", "0" };
	size_t i;

	for (i = 0; i < 4; i++) {
		if (!strcmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Builds the arguments object; prints why and returns NULL on bad input. */
static json_t *build_args(const struct subcmd *s, int argc, char **argv)
{
	json_t *args = json_object();
	const struct kv_arg *a;
	int i;

	for (i = 0; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		char key[MAX_NAME];
		const char *val;
		json_t *v = NULL;

		if (!eq || eq == argv[i] ||
		    (size_t)(eq - argv[i]) >= MAX_NAME) {
			fprintf(stderr,
				"%s: %s: expected key=value, got '%s'\n", prog,
				s->name, argv[i]);
			goto bad;
		}
		memcpy(key, argv[i], (size_t)(eq - argv[i]));
		key[eq - argv[i]] = '\0';
		val = eq + 1;
		for (a = s->args; a && a->name; a++)
			if (!strcmp(a->name, key))
				break;
		if (!a || !a->name) {
			fprintf(stderr, "%s: %s: unknown argument '%s'\n", prog,
				s->name, key);
			goto bad;
		}
		if (json_object_get(args, key)) {
			fprintf(stderr, "%s: %s: '%s' given twice\n", prog,
				s->name, key);
			goto bad;
		}
		switch (a->type) {
		case KV_INT:
		case KV_SIZE: {
			long long n;

			if (parse_int(val, a->type == KV_SIZE, &n) == 0)
				v = json_integer(n);
			break;
		}
		case KV_BOOL: {
			bool b;

			if (parse_bool(val, &b) == 0)
				v = json_boolean(b);
			break;
		}
		case KV_STR:
			v = json_string(val);
			break;
		}
		if (!v) {
			fprintf(stderr, "%s: %s: '%s' must be %s, got '%s'\n",
				prog, s->name, key, type_help(a->type), val);
			goto bad;
		}
		json_object_set_new(args, key, v);
	}
	for (a = s->args; a && a->name; a++) {
		if (a->required && !json_object_get(args, a->name)) {
			fprintf(stderr, "%s: %s: missing %s=VALUE\n", prog,
				s->name, a->name);
			goto bad;
		}
	}
	return args;
bad:
	json_decref(args);
	return NULL;
}

/* ---- output ----------------------------------------------------------- */

static void print_scalar(FILE *f, const json_t *v)
{
	char *s;

	switch (json_typeof(v)) {
	case JSON_STRING:
		fputs(json_string_value(v), f);
		return;
	case JSON_INTEGER:
		fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return;
	case JSON_TRUE:
		fputs("true", f);
		return;
	case JSON_FALSE:
		fputs("false", f);
		return;
	default:
		s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT |
					  JSON_PRESERVE_ORDER);
		fputs(s ? s : "?", f);
		free(s);
	}
}

static char *scalar_string(const json_t *v)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	print_scalar(f, v);
	fclose(f);
	return buf;
}

/* "key: value" lines, nested members flattened as a.b and a[0].b. */
static void print_flat(const char *prefix, const json_t *v)
{
	const char *key;
	json_t *m;
	size_t i;
	char *p;

	if (json_is_object(v) && json_object_size(v)) {
		json_object_foreach((json_t *)v, key, m)
		{
			if (asprintf(&p, "%s%s%s", prefix, *prefix ? "." : "",
				     key) < 0)
				return;
			print_flat(p, m);
			free(p);
		}
		return;
	}
	if (json_is_array(v) && json_array_size(v)) {
		json_array_foreach(v, i, m)
		{
			if (asprintf(&p, "%s[%zu]", prefix, i) < 0)
				return;
			print_flat(p, m);
			free(p);
		}
		return;
	}
	if (*prefix)
		printf("%s: ", prefix);
	print_scalar(stdout, v);
	putchar('\n');
}

static bool is_table(const json_t *v)
{
	json_t *m;
	size_t i;

	if (!json_is_array(v) || !json_array_size(v))
		return false;
	json_array_foreach(v, i, m) if (!json_is_object(m)) return false;
	return true;
}

/* Columns are the members in order of first appearance. */
static void print_table(const json_t *rows)
{
	json_t *cols = json_array(), *row, *m;
	const char *key;
	size_t i, j, ncols, *width;

	json_array_foreach(rows, i, row)
	{
		json_object_foreach(row, key, m)
		{
			bool seen = false;
			json_t *c;

			json_array_foreach(cols, j,
					   c) if (!strcmp(json_string_value(c),
							  key)) seen = true;
			if (!seen)
				json_array_append_new(cols, json_string(key));
		}
	}
	ncols = json_array_size(cols);
	width = calloc(ncols ? ncols : 1, sizeof(*width));
	for (j = 0; j < ncols; j++) {
		const char *name = json_string_value(json_array_get(cols, j));

		width[j] = strlen(name);
		json_array_foreach(rows, i, row)
		{
			char *s;

			m = json_object_get(row, name);
			s = m ? scalar_string(m) : NULL;
			if (s && strlen(s) > width[j])
				width[j] = strlen(s);
			free(s);
		}
	}
	for (j = 0; j < ncols; j++)
		printf("%-*s%s", (int)width[j],
		       json_string_value(json_array_get(cols, j)),
		       j + 1 < ncols ? "  " : "\n");
	json_array_foreach(rows, i, row)
	{
		for (j = 0; j < ncols; j++) {
			const char *name =
				json_string_value(json_array_get(cols, j));
			char *s;

			m = json_object_get(row, name);
			s = m ? scalar_string(m) : strdup("-");
			if (j + 1 < ncols)
				printf("%-*s  ", (int)width[j], s ? s : "");
			else
				printf("%s\n", s ? s : "");
			free(s);
		}
	}
	free(width);
	json_decref(cols);
}

static void print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_PRESERVE_ORDER |
					JSON_COMPACT);

	if (s)
		puts(s);
	free(s);
}

/* Drops a harvest's bitmap member unless bitmap=true asked for it. */
static void trim_return(const struct subcmd *s, json_t *ret,
			const json_t *local)
{
	if (s->out == OUT_HARVEST &&
	    !json_is_true(json_object_get(local, "bitmap")))
		json_object_del(ret, "bitmap");
}

static void print_return(const struct subcmd *s, const json_t *ret)
{
	const json_t *q;

	switch (s->out) {
	case OUT_NONE:
		return;
	case OUT_STATUS:
		printf("status: ");
		print_scalar(stdout, json_object_get(ret, "status"));
		printf(" (%s)\n",
		       json_is_true(json_object_get(ret, "running")) ?
			       "running" :
			       "not running");
		return;
	case OUT_VERSION:
		/* As QEMU's "info version": MAJOR.MINOR.MICRO (package). */
		q = json_object_get(ret, "qemu");
		printf("%" JSON_INTEGER_FORMAT ".%" JSON_INTEGER_FORMAT
		       ".%" JSON_INTEGER_FORMAT,
		       json_integer_value(json_object_get(q, "major")),
		       json_integer_value(json_object_get(q, "minor")),
		       json_integer_value(json_object_get(q, "micro")));
		if (json_string_length(json_object_get(ret, "package")))
			printf(" (%s)", json_string_value(json_object_get(
						ret, "package")));
		putchar('\n');
		return;
	case OUT_HARVEST:
	case OUT_DIRTY_RATE:
	case OUT_AUTO:
		break;
	}
	if (is_table(ret))
		print_table(ret);
	else if (!(json_is_object(ret) && json_object_size(ret) == 0))
		print_flat("", ret);
}

/* Prints "class: desc" for an error reply; returns the exit status. */
static int report(const json_t *reply)
{
	json_t *err = json_object_get(reply, "error");

	if (!err)
		return 0;
	fprintf(stderr, "%s: %s: %s\n", prog,
		json_string_value(json_object_get(err, "class")) ?:
								   "(no class)",
		json_string_value(json_object_get(err, "desc")) ?: "");
	return EXIT_FAILED;
}

/* ---- connection ------------------------------------------------------- */

static int open_qmp(const char *path, int timeout_ms, struct qmp_conn **c)
{
	int ret = qmp_conn_open(path, timeout_ms, c);

	if (ret == 0) {
		ret = qmp_conn_negotiate(*c, timeout_ms);
		if (ret < 0)
			qmp_conn_close(*c);
	}
	/* A socket file nobody listens on is what a mmud that was killed
	 * leaves behind: name the cause, not only connect()'s errno. */
	if (ret == -ECONNREFUSED)
		fprintf(stderr,
			"%s: mmud is not running at %s (nothing listens on "
			"the socket; a mmud that was killed leaves it)\n",
			prog, path);
	else if (ret == -ENOENT)
		fprintf(stderr,
			"%s: mmud is not running at %s (no such socket)\n",
			prog, path);
	else if (ret < 0)
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(-ret));
	return ret;
}

int mmuctl_open_qmp(const char *path, int timeout_ms, struct qmp_conn **c)
{
	return open_qmp(path, timeout_ms, c);
}

/* Moves mmuctl's own arguments (struct kv_arg.local) out of args. */
static json_t *split_local(const struct subcmd *s, json_t *args)
{
	json_t *local = json_object();
	const struct kv_arg *a;

	for (a = s->args; a && a->name; a++) {
		json_t *v = json_object_get(args, a->name);

		if (a->local && v) {
			json_object_set(local, a->name, v);
			json_object_del(args, a->name);
		}
	}
	return local;
}

/*
 * The most pages one x-dirty-log-harvest reports (docs/QMP.md,
 * "x-dirty-log-harvest (daemon #8)"): a reply under 64 KiB. A multiple
 * of 64 (first-page must be) and of 24, so that every part's base64 has
 * no padding and the parts join into the whole slot's.
 */
#define HARVEST_PART_PAGES 391680

/* The size in bytes of memslot id slot, or 0 if there is none. */
static uint64_t slot_size(struct qmp_conn *c, json_int_t slot, int timeout_ms)
{
	json_t *reply, *m;
	uint64_t size = 0;
	size_t i;

	if (qmp_conn_execute(c, "x-query-memslots", NULL, timeout_ms, &reply) <
	    0)
		return 0;
	json_array_foreach(json_object_get(reply, "return"), i, m)
	{
		if (json_integer_value(json_object_get(m, "slot")) == slot)
			size = (uint64_t)json_integer_value(
				json_object_get(m, "size"));
	}
	json_decref(reply);
	return size;
}

/*
 * dirty harvest of a whole slot too large for one reply: in parts of
 * HARVEST_PART_PAGES, over one connection, put together as one reply of
 * the whole slot's shape. The parts are harvested one after the other,
 * not at one instant (as KVM's own harvest, page by page). The first
 * error reply ends it and is the reply. Takes args.
 */
static int harvest_in_parts(struct qmp_conn *c, json_t *args, int timeout_ms,
			    json_t **reply)
{
	json_int_t slot = json_integer_value(json_object_get(args, "slot"));
	uint64_t pages = slot_size(c, slot, timeout_ms) / 4096, first;
	json_int_t dirty = 0;
	char *bitmap = NULL;
	size_t len = 0;
	int ret;

	if (json_object_get(args, "first-page") ||
	    json_object_get(args, "num-pages") || pages <= HARVEST_PART_PAGES)
		return qmp_conn_execute(c, "x-dirty-log-harvest", args,
					timeout_ms, reply);
	for (first = 0; first < pages; first += HARVEST_PART_PAGES) {
		json_t *part = json_deep_copy(args), *r;
		const char *b;
		char *grown;

		json_object_set_new(part, "first-page",
				    json_integer((json_int_t)first));
		json_object_set_new(part, "num-pages",
				    json_integer(HARVEST_PART_PAGES));
		ret = qmp_conn_execute(c, "x-dirty-log-harvest", part,
				       timeout_ms, reply);
		if (ret < 0 || !(r = json_object_get(*reply, "return")))
			goto out; /* an error reply, or none */
		dirty += json_integer_value(json_object_get(r, "dirty-pages"));
		b = json_string_value(json_object_get(r, "bitmap")) ?: "";
		grown = realloc(bitmap, len + strlen(b) + 1);
		if (!grown) {
			json_decref(*reply);
			ret = -ENOMEM;
			goto out;
		}
		bitmap = grown;
		memcpy(bitmap + len, b, strlen(b) + 1);
		len += strlen(b);
		json_decref(*reply);
	}
	*reply = json_pack("{s:{s:I, s:I, s:s}}", "return", "slot", slot,
			   "dirty-pages", dirty, "bitmap", bitmap);
	ret = *reply ? 0 : -ENOMEM;
out:
	free(bitmap);
	json_decref(args);
	return ret;
}

/*
 * dirty-rate: calc-dirty-rate, then query-dirty-rate every 100 ms until
 * it says measured (docs/QMP.md, "calc-dirty-rate / query-dirty-rate (QEMU)"),
 * over one connection; the last query is the reply. An error reply to
 * either ends it and is the reply. Takes args.
 */
static int measure_dirty_rate(struct qmp_conn *c, json_t *args, int timeout_ms,
			      json_t **reply)
{
	json_int_t secs =
		json_integer_value(json_object_get(args, "calc-time"));
	struct timespec pause = { 0, 100 * 1000 * 1000 };
	long polls = (long)(secs * 1000 + timeout_ms) / 100 + 1;
	int ret;

	ret = qmp_conn_execute(c, "calc-dirty-rate", args, timeout_ms, reply);
	if (ret < 0 || !json_object_get(*reply, "return"))
		return ret;
	for (;;) {
		json_t *st;

		json_decref(*reply);
		ret = qmp_conn_execute(c, "query-dirty-rate", NULL, timeout_ms,
				       reply);
		if (ret < 0)
			return ret;
		st = json_object_get(json_object_get(*reply, "return"),
				     "status");
		if (!st || !strcmp(json_string_value(st) ?: "", "measured"))
			return 0;
		if (--polls <= 0) {
			json_decref(*reply);
			return -ETIMEDOUT;
		}
		nanosleep(&pause, NULL);
	}
}

static int run_subcmd(const struct subcmd *s, const char *path, bool json,
		      int timeout_ms, json_t *args)
{
	json_t *reply, *ret_val, *local = split_local(s, args);
	struct qmp_conn *c;
	int ret, status;

	if (open_qmp(path, timeout_ms, &c) < 0) {
		json_decref(args);
		json_decref(local);
		return EXIT_USAGE;
	}
	if (s->out == OUT_HARVEST)
		ret = harvest_in_parts(c, args, timeout_ms, &reply);
	else if (s->out == OUT_DIRTY_RATE)
		ret = measure_dirty_rate(c, args, timeout_ms, &reply);
	else
		ret = qmp_conn_execute(c, s->qmp, args, timeout_ms, &reply);
	qmp_conn_close(c);
	if (ret < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, s->qmp, strerror(-ret));
		json_decref(local);
		return EXIT_USAGE;
	}
	/* The id is the one mmuctl chose: not the user's business. */
	json_object_del(reply, "id");
	ret_val = json_object_get(reply, "return");
	if (ret_val)
		trim_return(s, ret_val, local);
	status = report(reply);
	if (json && status)
		print_json(reply);
	else if (json)
		print_json(ret_val);
	else if (!status)
		print_return(s, ret_val);
	json_decref(reply);
	json_decref(local);
	return status;
}

/*
 * The console socket of the mmud at qmp_path, as its query-chardev
 * reports serial0 (docs/QMP.md, "query-chardev (daemon)"):
 * "unix:PATH,server=on", "disconnected:" first while no client is
 * attached. 0 with the path in out; EXIT_USAGE after saying why not.
 */
static int console_from_qmp(const char *qmp_path, int timeout_ms, char *out,
			    size_t len)
{
	static const char unix_pfx[] = "unix:", server_sfx[] = ",server=on";
	const char *fn = NULL;
	struct qmp_conn *c;
	json_t *reply, *dev;
	size_t i, n;
	int ret;

	if (open_qmp(qmp_path, timeout_ms, &c) < 0)
		return EXIT_USAGE;
	ret = qmp_conn_execute(c, "query-chardev", NULL, timeout_ms, &reply);
	qmp_conn_close(c);
	if (ret < 0) {
		fprintf(stderr, "%s: query-chardev: %s\n", prog,
			strerror(-ret));
		return EXIT_USAGE;
	}
	if (report(reply)) {
		json_decref(reply);
		return EXIT_USAGE;
	}
	json_array_foreach(json_object_get(reply, "return"), i, dev)
	{
		if (!strcmp(json_string_value(json_object_get(dev, "label")) ?:
									       "",
			    "serial0"))
			fn = json_string_value(
				json_object_get(dev, "filename"));
	}
	if (fn && !strncmp(fn, "disconnected:", 13))
		fn += 13;
	n = fn ? strlen(fn) : 0;
	if (!fn || strncmp(fn, unix_pfx, 5) || n < 5 + sizeof(server_sfx) ||
	    strcmp(fn + n - (sizeof(server_sfx) - 1), server_sfx)) {
		fprintf(stderr,
			"%s: console: the mmud at %s has its console on '%s', "
			"not on a socket (start it with --console "
			"socket:PATH)\n",
			prog, qmp_path, fn ? fn : "(no serial0)");
		json_decref(reply);
		return EXIT_USAGE;
	}
	n -= 5 + sizeof(server_sfx) - 1;
	if (n >= len) {
		fprintf(stderr, "%s: console: path too long: %s\n", prog, fn);
		json_decref(reply);
		return EXIT_USAGE;
	}
	memcpy(out, fn + 5, n);
	out[n] = '\0';
	json_decref(reply);
	return 0;
}

static int run_raw(const char *path, int timeout_ms, const char *text)
{
	json_error_t jerr;
	struct qmp_conn *c;
	json_t *msg, *reply = NULL;
	int ret, status;

	msg = json_loads(text, JSON_DECODE_ANY, &jerr);
	if (!msg) {
		fprintf(stderr, "%s: qmp: not JSON: %s\n", prog, jerr.text);
		return EXIT_USAGE;
	}
	if (open_qmp(path, timeout_ms, &c) < 0) {
		json_decref(msg);
		return EXIT_USAGE;
	}
	ret = qmp_conn_send(c, msg);
	json_decref(msg);
	/* The first message that is not an event is the reply. */
	while (ret == 0) {
		ret = qmp_conn_recv(c, timeout_ms, &reply);
		if (ret == 0 && !json_object_get(reply, "event"))
			break;
		if (ret == 0)
			json_decref(reply);
		reply = NULL;
	}
	qmp_conn_close(c);
	if (ret < 0) {
		fprintf(stderr, "%s: qmp: %s\n", prog, strerror(-ret));
		return EXIT_USAGE;
	}
	status = report(reply);
	print_json(reply);
	json_decref(reply);
	return status;
}

/* ---- main ------------------------------------------------------------- */

/* Finds the subcommand of argv (one or two words); *used says how many. */
static const struct subcmd *find_subcmd(int argc, char **argv, int *used)
{
	size_t i, n0 = strlen(argv[0]);

	for (i = 0; i < NR_SUBCMDS; i++) {
		const char *name = subcmds[i].name;
		const char *sp = strchr(name, ' ');

		if (!sp && !strcmp(name, argv[0])) {
			*used = 1;
			return &subcmds[i];
		}
		if (sp && (size_t)(sp - name) == n0 &&
		    !strncmp(name, argv[0], n0) && argc > 1 &&
		    !strcmp(sp + 1, argv[1])) {
			*used = 2;
			return &subcmds[i];
		}
	}
	return NULL;
}

static bool is_group(const char *word)
{
	size_t i, n = strlen(word);

	for (i = 0; i < NR_SUBCMDS; i++)
		if (!strncmp(subcmds[i].name, word, n) &&
		    subcmds[i].name[n] == ' ')
			return true;
	return false;
}

static void group_usage(FILE *f, const char *group)
{
	size_t i, n = strlen(group);

	fprintf(f, "usage: mmuctl [OPTIONS] %s SUBCOMMAND [key=value ...]\n\n",
		group);
	for (i = 0; i < NR_SUBCMDS; i++)
		if (!strncmp(subcmds[i].name, group, n) &&
		    subcmds[i].name[n] == ' ')
			fprintf(f, "  %-16s %s\n", subcmds[i].name,
				subcmds[i].summary);
}

/* `migrate URI` or `incoming URI` (cli/migrate.c), not `migrate status`
 * or `migrate cancel`. */
static bool is_migrate(int argc, char **argv)
{
	if (!strcmp(argv[0], "incoming"))
		return true;
	return !strcmp(argv[0], "migrate") &&
	       !(argc > 1 &&
		 (!strcmp(argv[1], "status") || !strcmp(argv[1], "cancel")));
}

/* `help [WORDS]` and `WORDS --help`: 0, or 2 for an unknown command. */
static int help_for(int argc, char **argv)
{
	const struct subcmd *s;
	int used;

	if (argc == 0) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[0], "console")) {
		console_usage(stdout);
		return 0;
	}
	if (!strcmp(argv[0], "qmp")) {
		qmp_usage(stdout);
		return 0;
	}
	if (is_migrate(argc, argv)) {
		mmuctl_migrate_usage(stdout);
		return 0;
	}
	s = find_subcmd(argc, argv, &used);
	if (s) {
		sub_usage(stdout, s);
		return 0;
	}
	if (is_group(argv[0])) {
		group_usage(stdout, argv[0]);
		return 0;
	}
	fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[0]);
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "name", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "console-socket", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "bandwidth", required_argument, NULL, MMUCTL_OPT_BANDWIDTH },
		{ "downtime", required_argument, NULL, MMUCTL_OPT_DOWNTIME },
		{ "dirty-limit", required_argument, NULL,
		  MMUCTL_OPT_DIRTY_LIMIT },
		{ "auto-converge", no_argument, NULL,
		  MMUCTL_OPT_AUTO_CONVERGE },
		{ "wait", no_argument, NULL, MMUCTL_OPT_WAIT },
		{ "progress", no_argument, NULL, MMUCTL_OPT_PROGRESS },
		{ "to", required_argument, NULL, MMUCTL_OPT_TO },
		{ NULL, 0, NULL, 0 },
	};
	struct mmuctl_migrate_opts mo = { .bandwidth = -1,
					  .downtime = -1,
					  .dirty_limit = -1 };
	const char *socket_path = NULL, *name = NULL, *console = NULL;
	char path[PATH_MAX], to_path[PATH_MAX];
	const struct subcmd *s = NULL;
	bool json = false, help = false, migrate_cmd = false;
	int timeout_ms = 60000, opt, used;
	json_t *args = NULL;

	signal(SIGPIPE, SIG_IGN);
	/*
	 * Options may follow COMMAND (`mmuctl status --json`): getopt moves
	 * the words that are not options, in their order, behind them. No
	 * word of a command starts with '-' (key=value, JSON); "--" ends the
	 * options for one that would.
	 */
	while ((opt = getopt_long(argc, argv, "s:n:jt:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			socket_path = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 't': {
			long long sec;

			if (parse_int(optarg, false, &sec) < 0 || sec <= 0 ||
			    sec > INT_MAX / 1000) {
				fprintf(stderr, "%s: bad --timeout '%s'\n",
					prog, optarg);
				return EXIT_USAGE;
			}
			timeout_ms = (int)sec * 1000;
			break;
		}
		case 'c':
			console = optarg;
			break;
		case 'h':
			help = true;
			break;
		case 'V':
			printf("mmuctl %s\n", MMUD_VERSION);
			return 0;
		case MMUCTL_OPT_BANDWIDTH:
		case MMUCTL_OPT_DOWNTIME:
		case MMUCTL_OPT_DIRTY_LIMIT:
		case MMUCTL_OPT_AUTO_CONVERGE:
		case MMUCTL_OPT_WAIT:
		case MMUCTL_OPT_PROGRESS:
		case MMUCTL_OPT_TO:
			if (mmuctl_migrate_opt(&mo, opt, optarg, prog) < 0)
				return EXIT_USAGE;
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (help)
		return help_for(argc, argv);
	if (argc == 0) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[0], "help"))
		return help_for(argc - 1, argv + 1);
	if (mo.any && !is_migrate(argc, argv)) {
		fprintf(stderr,
			"%s: --bandwidth, --downtime, --auto-converge, "
			"--dirty-limit, --wait, --progress and --to go with "
			"migrate\n",
			prog);
		return EXIT_USAGE;
	}
	/* --to NAME is that VM's socket, checked as --name's is. */
	if (mo.to && !strchr(mo.to, '/')) {
		if (!qmp_vm_name_ok(mo.to)) {
			fprintf(stderr, "%s: bad VM name '%s' for --to\n", prog,
				mo.to);
			return EXIT_USAGE;
		}
		if (qmp_vm_dir_check(mo.to, true, to_path, sizeof(to_path)) ==
		    -EPERM) {
			fprintf(stderr, "%s: not connecting: %s\n", prog,
				to_path);
			return EXIT_USAGE;
		}
		qmp_vm_socket_path(to_path, sizeof(to_path), mo.to, "qmp.sock");
		mo.to = to_path;
	}
	if (socket_path && name) {
		fprintf(stderr, "%s: --socket and --name exclude each other\n",
			prog);
		return EXIT_USAGE;
	}
	if (name && !qmp_vm_name_ok(name)) {
		fprintf(stderr, "%s: bad VM name '%s'\n", prog, name);
		return EXIT_USAGE;
	}
	if (name &&
	    qmp_vm_dir_check(name, true, path, sizeof(path)) == -EPERM) {
		fprintf(stderr, "%s: not connecting: %s\n", prog, path);
		return EXIT_USAGE;
	}

	if (!strcmp(argv[0], "console")) {
		if (argc != 1) {
			console_usage(stderr);
			return EXIT_USAGE;
		}
		if (!console && name) {
			qmp_vm_socket_path(path, sizeof(path), name,
					   "console.sock");
			console = path;
		} else if (!console) {
			/* Ask the daemon rather than guess a file name. */
			if (!socket_path)
				socket_path = getenv("QMP_SOCKET");
			if (!socket_path || !*socket_path) {
				fprintf(stderr,
					"%s: console: give --console-socket "
					"PATH, --name NAME or --socket PATH\n",
					prog);
				return EXIT_USAGE;
			}
			if (console_from_qmp(socket_path, timeout_ms, path,
					     sizeof(path)))
				return EXIT_USAGE;
			console = path;
		}
		return mmuctl_console(prog, console);
	}

	/* What to send is checked before where: a usage error says so
	 * even without a socket. */
	if (!strcmp(argv[0], "qmp")) {
		if (argc != 2) {
			qmp_usage(stderr);
			return EXIT_USAGE;
		}
	} else if (is_migrate(argc, argv)) {
		migrate_cmd = true;
	} else {
		s = find_subcmd(argc, argv, &used);
		if (!s) {
			if (is_group(argv[0]))
				group_usage(stderr, argv[0]);
			else
				fprintf(stderr,
					"%s: unknown command '%s' (try "
					"--help)\n",
					prog, argv[0]);
			return EXIT_USAGE;
		}
		args = build_args(s, argc - used, argv + used);
		if (!args)
			return EXIT_USAGE;
	}

	if (name) {
		qmp_vm_socket_path(path, sizeof(path), name, "qmp.sock");
		socket_path = path;
	}
	if (!socket_path)
		socket_path = getenv("QMP_SOCKET");
	if (!socket_path || !*socket_path) {
		fprintf(stderr,
			"%s: no socket: give --socket PATH or --name "
			"NAME (or set QMP_SOCKET)\n",
			prog);
		json_decref(args);
		return EXIT_USAGE;
	}
	if (migrate_cmd)
		return mmuctl_migrate(prog, socket_path, json, timeout_ms, &mo,
				      argc, argv);
	if (!s)
		return run_raw(socket_path, timeout_ms, argv[1]);
	return run_subcmd(s, socket_path, json, timeout_ms, args);
}
