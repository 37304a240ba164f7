/*
 * The pure parts of QMP, with no sockets: the framer that cuts a byte
 * stream into JSON texts, the argument validator with QEMU's error texts,
 * and the serializer that makes every outgoing message one ASCII line
 * ending in CRLF. The server (qmp_server.c) and the client
 * (qmp_client.c) build on these; the unit tests call them directly.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		return json_is_string(v);
	case QMP_ARG_INT:
		return json_is_integer(v);
	case QMP_ARG_BOOL:
		return json_is_boolean(v);
	case QMP_ARG_NUMBER:
		return json_is_number(v);
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

char *qmp_dump_line(const json_t *msg, size_t *len)
{
	/*
	 * No JSON_COMPACT: jansson then writes one line with ", " and ": "
	 * separators, the way QEMU's replies look. JSON_ENSURE_ASCII makes
	 * the output ASCII as the spec says.
	 */
	char *s = json_dumps(msg, JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER |
					  JSON_ENCODE_ANY);
	size_t n;
	char *line;

	if (!s)
		return NULL;
	n = strlen(s);
	line = realloc(s, n + 3);
	if (!line) {
		free(s);
		return NULL;
	}
	line[n] = '\r';
	line[n + 1] = '\n';
	line[n + 2] = '\0';
	*len = n + 2;
	return line;
}
