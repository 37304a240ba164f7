/*
 * The pure parts of QMP, with no sockets: the framer that cuts a byte
 * stream into JSON texts, the parser that reads integers as QEMU does
 * (64-bit unsigned ones included), the argument validator with QEMU's
 * error texts, and the serializer that makes every outgoing message one
 * ASCII line ending in CRLF, numbers written as QEMU writes them. The
 * server (qmp_server.c) and the client (qmp_client.c) build on these;
 * the unit tests call them directly.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "rpc_int.h"

void qmp_framer_init(struct qmp_framer *f)
{
	memset(f, 0, sizeof(*f));
}

static bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A byte that resets the parser: QEMU's "known-good state" escape. */
static bool is_reset(unsigned char c)
{
	return (c < 0x20 && !is_ws(c)) || c == 0xff;
}

static bool ends_bare(unsigned char c)
{
	return is_ws(c) || c == '{' || c == '}' || c == '[' || c == ']' ||
	       c == ',' || c == ':' || c == '"';
}

enum qmp_frame qmp_framer_scan(struct qmp_framer *f, const char *buf,
			       size_t len, size_t *start, size_t *end,
			       size_t *drop)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t i;

	*drop = 0;
	for (i = f->pos; i < len; i++) {
		unsigned char c = p[i];
		bool complete = false;

		if (!f->started) {
			if (is_ws(c) || is_reset(c))
				continue;
			f->started = true;
			f->start = i;
			f->depth = 0;
			f->bare = false;
			f->in_string = false;
			f->escape = false;
			if (c == '{' || c == '[') {
				f->depth = 1;
			} else if (c == '"') {
				f->in_string = true;
			} else if (c == '}' || c == ']') {
				/* A stray closer is a text of its own: the
				 * JSON parser reports it. */
				complete = true;
			} else {
				f->bare = true;
			}
		} else if (is_reset(c)) {
			/* Drop the partial text and the reset byte. */
			f->started = false;
			f->pos = 0;
			*drop = i + 1;
			return QMP_FRAME_DISCARD;
		} else if (f->in_string) {
			if (f->escape) {
				f->escape = false;
			} else if (c == '\\') {
				f->escape = true;
			} else if (c == '"') {
				f->in_string = false;
				complete = f->depth == 0;
			}
		} else if (f->bare) {
			if (ends_bare(c)) {
				/* The terminator is not part of the text (whose
				 * bytes were all counted below already). */
				*start = f->start;
				*end = i;
				*drop = i;
				f->started = false;
				f->pos = 0;
				return QMP_FRAME_TEXT;
			}
		} else if (c == '{' || c == '[') {
			if (++f->depth > QMP_MAX_DEPTH)
				return QMP_FRAME_TOO_DEEP;
		} else if (c == '}' || c == ']') {
			complete = --f->depth == 0;
		} else if (c == '"') {
			f->in_string = true;
		}
		/* Byte i is part of the text, the one that completes it too:
		 * a text of QMP_MAX_MESSAGE bytes passes, one byte more is
		 * refused however it ends (rpc.h). */
		if (i + 1 - f->start > QMP_MAX_MESSAGE)
			return QMP_FRAME_TOO_BIG;
		if (!complete)
			continue;
		*start = f->start;
		*end = i + 1;
		*drop = i + 1;
		f->started = false;
		f->pos = 0;
		return QMP_FRAME_TEXT;
	}
	if (!f->started) {
		/* Whitespace and resets only: nothing worth keeping. */
		*drop = len;
		f->pos = 0;
		return QMP_FRAME_MORE;
	}
	/* Keep the pending text at the front of the buffer. */
	*drop = f->start;
	f->pos = len - f->start;
	f->start = 0;
	return QMP_FRAME_MORE;
}

/* ---- integers as QEMU reads them ----------------------------------------
 *
 * QEMU's JSON parser reads an integer token as a signed 64-bit number if
 * it fits, else as an unsigned 64-bit one if it fits, else as a double.
 * jansson's integers are long long only and it refuses a larger token
 * outright, so before jansson sees a text we rewrite the tokens it would
 * refuse: one past unsigned 64 bits becomes a real (QEMU's double), and
 * one in (2^63 - 1, 2^64) becomes a marker string, NUL, a per-process
 * nonce, ':' and the digits. A client cannot forge one: a NUL in a
 * client's string is refused (it is without JSON_ALLOW_NUL), and the
 * nonce keeps a NUL-led string from elsewhere (guest console bytes) from
 * being taken for one. The validator counts a marker as an integer, and
 * the serializer writes it back as the bare digits, so an id of 2^63
 * round-trips exactly.
 */

#define NONCE_LEN 16

static char nonce[NONCE_LEN + 1];
static pthread_once_t nonce_once = PTHREAD_ONCE_INIT;

static void make_nonce(void)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[NONCE_LEN];

	if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd)) {
		/* No entropy yet: still unguessable enough from a guest. */
		uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
			     (uintptr_t)&rnd;

		for (size_t i = 0; i < sizeof(rnd); i++) {
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			rnd[i] = (unsigned char)(x >> 56);
		}
	}
	for (size_t i = 0; i < NONCE_LEN; i++)
		nonce[i] = hex[rnd[i] & 15];
	nonce[NONCE_LEN] = '\0';
}

static const char *get_nonce(void)
{
	pthread_once(&nonce_once, make_nonce);
	return nonce;
}

bool qmp_json_u64(const json_t *v, uint64_t *out)
{
	const char *s;
	size_t n;

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return false;
		*out = (uint64_t)json_integer_value(v);
		return true;
	}
	if (!json_is_string(v))
		return false;
	s = json_string_value(v);
	n = json_string_length(v);
	if (n < 2 + NONCE_LEN + 1 || s[0] != '\0' ||
	    memcmp(s + 1, get_nonce(), NONCE_LEN) || s[1 + NONCE_LEN] != ':')
		return false;
	*out = strtoull(s + 2 + NONCE_LEN, NULL, 10);
	return true;
}

bool qmp_json_is_u64_only(const json_t *v)
{
	uint64_t u;

	return json_is_string(v) && qmp_json_u64(v, &u);
}

bool qmp_json_is_integer(const json_t *v)
{
	return json_is_integer(v) || qmp_json_is_u64_only(v);
}

/*
 * What a parse may allocate. jansson's values are far larger than their
 * text (an empty array is three bytes of text and over 100 bytes
 * parsed), so a text within QMP_MAX_MESSAGE could still take tens of MiB.
 * jansson allocates through one hook for the whole process; ours counts
 * what the parse running on this thread takes and fails it past
 * QMP_MAX_PARSED. Everywhere else (other threads, or this one outside a
 * parse) it is plain malloc.
 */
static __thread size_t *parse_budget;
static __thread bool parse_over;
static pthread_once_t alloc_once = PTHREAD_ONCE_INIT;

static void *counting_malloc(size_t n)
{
	if (parse_budget) {
		if (n > *parse_budget) {
			parse_over = true;
			return NULL;
		}
		*parse_budget -= n;
	}
	return malloc(n);
}

static void set_alloc(void)
{
	json_set_alloc_funcs(counting_malloc, free);
}

void qmp_parse_init(void)
{
	pthread_once(&alloc_once, set_alloc);
}

static json_t *load_budgeted(const char *text, size_t len, size_t flags,
			     json_error_t *err)
{
	size_t budget = QMP_MAX_PARSED;
	json_t *msg;

	qmp_parse_init();
	parse_budget = &budget;
	parse_over = false;
	msg = json_loadb(text, len, flags, err);
	parse_budget = NULL;
	if (!msg && parse_over)
		snprintf(err->text, sizeof(err->text),
			 "the message takes more than %u MiB once parsed",
			 QMP_MAX_PARSED >> 20);
	return msg;
}

static bool is_num_char(char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' ||
	       c == 'e' || c == 'E';
}

/* How [p, p + n) must be rewritten: 0 not at all, 1 as a u64 marker,
 * 2 as a real. */
static int classify_int(const char *p, size_t n)
{
	const char *d = p;
	char buf[32];
	size_t k;

	if (*d == '-')
		d++;
	k = n - (size_t)(d - p);
	if (k == 0 || (d[0] == '0' && k > 1))
		return 0; /* not an integer jansson would take: it says why */
	for (size_t i = 0; i < k; i++)
		if (d[i] < '0' || d[i] > '9')
			return 0;
	if (k < 19)
		return 0;
	if (k > 20)
		return 2;
	memcpy(buf, p, n);
	buf[n] = '\0';
	errno = 0;
	(void)strtoll(buf, NULL, 10);
	if (errno != ERANGE)
		return 0;
	if (*p == '-')
		return 2;
	errno = 0;
	(void)strtoull(buf, NULL, 10);
	return errno == ERANGE ? 2 : 1;
}

/* Appends [p, p + n) to the growing copy (*out, *len, *cap). */
static bool append(char **out, size_t *len, size_t *cap, const char *p,
		   size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = (*cap ? *cap * 2 : 256) + n;
		char *q = realloc(*out, c);

		if (!q)
			return false;
		*out = q;
		*cap = c;
	}
	memcpy(*out + *len, p, n);
	*len += n;
	return true;
}

json_t *qmp_parse(const char *text, size_t len, size_t flags, json_error_t *err)
{
	char *copy = NULL;
	size_t clen = 0, cap = 0, done = 0, i = 0;
	bool in_string = false;
	json_t *msg;

	while (i < len) {
		char c = text[i];

		if (in_string) {
			if (c == '\\' && i + 1 < len) {
				if (text[i + 1] == 'u' && i + 6 <= len &&
				    !memcmp(text + i + 2, "0000", 4)) {
					/* jansson's own refusal, before our
					 * markers make it allow NUL. */
					free(copy);
					memset(err, 0, sizeof(*err));
					snprintf(err->text, sizeof(err->text),
						 "\\u0000 is not allowed");
					return NULL;
				}
				i += 2;
				continue;
			}
			if (c == '"')
				in_string = false;
			i++;
			continue;
		}
		if (c == '"') {
			in_string = true;
			i++;
			continue;
		}
		if (c == '-' || (c >= '0' && c <= '9')) {
			size_t j = i;
			int kind;

			while (j < len && is_num_char(text[j]))
				j++;
			kind = classify_int(text + i, j - i);
			if (kind) {
				char pre[8 + NONCE_LEN + 2];
				bool ok = append(&copy, &clen, &cap,
						 text + done, i - done);

				if (kind == 1) {
					snprintf(pre, sizeof(pre),
						 "\"\\u0000%s:", get_nonce());
					ok = ok &&
					     append(&copy, &clen, &cap, pre,
						    strlen(pre)) &&
					     append(&copy, &clen, &cap,
						    text + i, j - i) &&
					     append(&copy, &clen, &cap, "\"",
						    1);
				} else {
					ok = ok &&
					     append(&copy, &clen, &cap,
						    text + i, j - i) &&
					     append(&copy, &clen, &cap, ".0",
						    2);
				}
				if (!ok) {
					free(copy);
					memset(err, 0, sizeof(*err));
					snprintf(err->text, sizeof(err->text),
						 "out of memory");
					return NULL;
				}
				done = j;
			}
			i = j;
			continue;
		}
		i++;
	}
	if (!copy)
		return load_budgeted(text, len, flags, err);
	if (!append(&copy, &clen, &cap, text + done, len - done)) {
		free(copy);
		memset(err, 0, sizeof(*err));
		snprintf(err->text, sizeof(err->text), "out of memory");
		return NULL;
	}
	msg = load_budgeted(copy, clen, flags | JSON_ALLOW_NUL, err);
	free(copy);
	return msg;
}

static const char *type_name(enum qmp_arg_type t)
{
	switch (t) {
	case QMP_ARG_STRING:
		return "string";
	case QMP_ARG_INT:
		return "integer";
	case QMP_ARG_BOOL:
		return "boolean";
	case QMP_ARG_NUMBER:
		return "number";
	case QMP_ARG_OBJECT:
		return "object";
	case QMP_ARG_ARRAY:
		return "array";
	case QMP_ARG_ANY:
		break;
	}
	return "any";
}

static bool type_fits(enum qmp_arg_type t, const json_t *v)
{
	switch (t) {
	case QMP_ARG_STRING:
		return json_is_string(v) && !qmp_json_is_u64_only(v);
	case QMP_ARG_INT:
		return qmp_json_is_integer(v);
	case QMP_ARG_BOOL:
		return json_is_boolean(v);
	case QMP_ARG_NUMBER:
		return json_is_number(v) || qmp_json_is_u64_only(v);
	case QMP_ARG_OBJECT:
		return json_is_object(v);
	case QMP_ARG_ARRAY:
		return json_is_array(v);
	case QMP_ARG_ANY:
		return true;
	}
	return false;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

char *qmp_args_check(const struct qmp_arg *spec, json_t *args)
{
	const struct qmp_arg *a;
	const char *key;
	json_t *v;

	/*
	 * QEMU's input visitor reports unknown members last, after the
	 * declared ones were visited; we do the same so the message a
	 * client sees for a request with two faults matches.
	 */
	for (a = spec; a && a->name; a++) {
		v = json_object_get(args, a->name);
		if (!v) {
			if (!a->optional)
				return fmt("Parameter '%s' is missing",
					   a->name);
			continue;
		}
		if (!type_fits(a->type, v))
			return fmt("Invalid parameter type for '%s', "
				   "expected: %s",
				   a->name, type_name(a->type));
	}
	json_object_foreach(args, key, v)
	{
		bool known = false;

		for (a = spec; a && a->name; a++)
			if (!strcmp(a->name, key)) {
				known = true;
				break;
			}
		if (!known)
			return fmt("Parameter '%s' is unexpected", key);
	}
	return NULL;
}

/*
 * A real that QEMU writes as an integer: its "%.17g" has neither a point
 * nor an exponent (jansson would add ".0"). Such a real is below 1e17 in
 * magnitude, so a long long holds it exactly. -0 stays a real.
 */
static bool is_integral_real(const json_t *v)
{
	double x;

	if (!json_is_real(v))
		return false;
	x = json_real_value(v);
	return isfinite(x) && fabs(x) < 1e17 && x == trunc(x) &&
	       !(x == 0 && signbit(x));
}

static bool has_integral_real(const json_t *v)
{
	const char *key;
	json_t *e;
	size_t i;

	if (is_integral_real(v))
		return true;
	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, key,
				    e) if (has_integral_real(e)) return true;
	} else if (json_is_array(v)) {
		json_array_foreach(v, i,
				   e) if (has_integral_real(e)) return true;
	}
	return false;
}

/* Replaces, in a copy of ours, every integral real by its integer. */
static void fix_reals(json_t *v)
{
	const char *key;
	json_t *e;
	size_t i;

	if (json_is_object(v)) {
		json_object_foreach(v, key, e)
		{
			if (is_integral_real(e))
				json_object_set_new(
					v, key,
					json_integer((
						json_int_t)json_real_value(e)));
			else
				fix_reals(e);
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, e)
		{
			if (is_integral_real(e))
				json_array_set_new(
					v, i,
					json_integer((
						json_int_t)json_real_value(e)));
			else
				fix_reals(e);
		}
	}
}

/* Writes every u64 marker ("\u0000NONCE:DIGITS", quotes included) of the
 * dumped text @s back as its bare digits, in place. */
static void unmark_u64(char *s)
{
	char pat[8 + NONCE_LEN + 2];
	size_t plen;
	char *r = s, *w = s, *hit;

	plen = (size_t)snprintf(pat, sizeof(pat), "\"\\u0000%s:", get_nonce());
	while ((hit = strstr(r, pat)) != NULL) {
		size_t k = (size_t)(hit - r);
		char *d = hit + plen;

		memmove(w, r, k);
		w += k;
		while (*d >= '0' && *d <= '9')
			*w++ = *d++;
		if (*d == '"')
			d++;
		r = d;
	}
	memmove(w, r, strlen(r) + 1);
}

char *qmp_dump_text(const json_t *msg, size_t *len)
{
	json_t *copy = NULL;
	char *s;

	/* QEMU writes a double with "%.17g": 1.5e3 is 1500, not 1500.0. */
	if (has_integral_real(msg)) {
		copy = json_deep_copy(msg);
		if (!copy)
			return NULL;
		if (is_integral_real(copy)) {
			json_t *i =
				json_integer((json_int_t)json_real_value(copy));

			json_decref(copy);
			copy = i;
		} else {
			fix_reals(copy);
		}
		msg = copy;
	}
	/*
	 * No JSON_COMPACT: jansson then writes one line with ", " and ": "
	 * separators, the way QEMU's replies look. JSON_ENSURE_ASCII makes
	 * the output ASCII as the spec says.
	 */
	s = json_dumps(msg, JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER |
				    JSON_ENCODE_ANY);
	json_decref(copy);
	if (!s)
		return NULL;
	if (strstr(s, "\\u0000"))
		unmark_u64(s);
	*len = strlen(s);
	return s;
}

char *qmp_dump_line_id(const json_t *msg, const char *id_text, size_t *len)
{
	size_t n, k = id_text ? strlen(id_text) : 0;
	char *s = qmp_dump_text(msg, &n);
	char *line;

	if (!s)
		return NULL;
	RPC_ASSERT(!id_text || (json_is_object(msg) && s[n - 1] == '}'));
	line = realloc(s, n + (id_text ? k + 8 : 0) + 3);
	if (!line) {
		free(s);
		return NULL;
	}
	if (id_text) {
		/* The id goes last, as json_object_set() would put it. */
		const char *sep = n > 2 ? ", \"id\": " : "\"id\": ";
		size_t m = strlen(sep);

		n--; /* over the closing brace */
		memcpy(line + n, sep, m);
		memcpy(line + n + m, id_text, k);
		n += m + k;
		line[n++] = '}';
	}
	line[n] = '\r';
	line[n + 1] = '\n';
	line[n + 2] = '\0';
	*len = n + 2;
	return line;
}

char *qmp_dump_line(const json_t *msg, size_t *len)
{
	return qmp_dump_line_id(msg, NULL, len);
}
