/*
 * rpc's internals shared between its files and its unit tests: the
 * streaming framer that cuts client input into JSON texts, the argument
 * validator, and the one serializer every outgoing message goes through.
 */
#ifndef MMUD_RPC_INT_H
#define MMUD_RPC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "rpc.h"

/*
 * For programming errors only (core's MMUD_ASSERT, which rpc cannot
 * include): never for what a client sent.
 */
#ifdef NDEBUG
#define RPC_ASSERT(cond) ((void)sizeof(!(cond)))
#else
#define RPC_ASSERT(cond)                                                      \
	do {                                                                  \
		if (__builtin_expect(!(cond), 0)) {                           \
			fprintf(stderr, "%s:%d: %s: assertion '%s' failed\n", \
				__FILE__, __LINE__, __func__, #cond);         \
			abort();                                              \
		}                                                             \
	} while (0)
#endif

/*
 * The framer finds where one JSON text ends without parsing it, the way
 * QEMU's json-streamer does: it counts braces and brackets outside
 * strings and escapes. A bare scalar at top level ends at whitespace or
 * a structural character. A control character other than tab, CR and LF
 * (or a 0xff byte) outside a complete text throws away what was pending,
 * so a client can force the parser back to a known state. The framer
 * keeps its scan position so every byte is looked at once.
 */
enum qmp_frame {
	QMP_FRAME_MORE, /* no complete text yet */
	QMP_FRAME_TEXT, /* [start, end) is one text */
	QMP_FRAME_DISCARD, /* a control character dropped a partial text */
	QMP_FRAME_TOO_BIG, /* the pending text exceeds QMP_MAX_MESSAGE */
	QMP_FRAME_TOO_DEEP, /* the pending text nests past QMP_MAX_DEPTH */
};

struct qmp_framer {
	size_t pos; /* bytes of the buffer already scanned */
	size_t start; /* where the pending text begins */
	unsigned int depth;
	bool started; /* a text has begun at start */
	bool in_string;
	bool escape; /* the previous byte was a backslash in a string */
	bool bare; /* the pending text is a bare scalar */
};

void qmp_framer_init(struct qmp_framer *f);

/*
 * Scans @buf[0, @len) (the same buffer, grown, on every call; the caller
 * drops bytes only as told). Sets *drop to the count of leading bytes the
 * caller must now remove from the buffer (after using [start, end) for
 * QMP_FRAME_TEXT); positions are relative to the buffer before the drop.
 */
enum qmp_frame qmp_framer_scan(struct qmp_framer *f, const char *buf,
			       size_t len, size_t *start, size_t *end,
			       size_t *drop);

/*
 * Checks @args against @spec (NULL: no arguments). On failure returns a
 * malloc'd QEMU-worded message naming the field; NULL when @args fits.
 */
char *qmp_args_check(const struct qmp_arg *spec, json_t *args);

/*
 * Parses one JSON text as QEMU reads it (json_loadb() with @flags, plus
 * integers: up to 2^63 - 1 an integer, up to 2^64 - 1 an unsigned marker
 * that qmp_json_u64() reads and qmp_dump_line() writes back as digits,
 * beyond either a real). A NUL in a string is refused.
 */
json_t *qmp_parse(const char *text, size_t len, size_t flags,
		  json_error_t *err);
/*
 * Installs the counting allocator qmp_parse() needs (jansson's hook is
 * the process's). qmp_parse() calls it too; the server calls it before
 * it serves anyone, so the hook never changes while another thread uses
 * jansson.
 */
void qmp_parse_init(void);

/* True for a value only an unsigned 64-bit integer can hold. */
bool qmp_json_is_u64_only(const json_t *v);

/*
 * Serializes @msg as one line of ASCII JSON followed by CRLF (malloc'd,
 * length in *len), or NULL on allocation failure. Numbers are written
 * as QEMU writes them: a real with an integral value below 1e17 without
 * ".0", an unsigned marker as its digits.
 */
char *qmp_dump_line(const json_t *msg, size_t *len);
/* The same with "id": @id_text (serialized) as @msg's last member, when
 * not NULL; @msg is then an object. */
char *qmp_dump_line_id(const json_t *msg, const char *id_text, size_t *len);
/* @msg serialized as qmp_dump_line() does, without the CRLF. */
char *qmp_dump_text(const json_t *msg, size_t *len);

#endif
