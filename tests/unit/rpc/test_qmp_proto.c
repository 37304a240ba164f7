/*
 * Unit tests of rpc's socket-free parts: the framer that cuts a byte
 * stream into JSON texts (split reads, several texts per read, strings
 * with braces and escapes, bare scalars, control-character resets and
 * the size and depth limits), the argument validator's QEMU texts, and
 * the serializer's one-line ASCII output with CRLF.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rpc_int.h"

/* Feeds @in in pieces of @step bytes; collects the texts found. */
struct feed {
	char buf[8192];
	size_t len;
	char texts[16][256];
	int nr_texts;
	int discards;
	enum qmp_frame last;
};

static void feed(struct qmp_framer *f, struct feed *st, const char *in,
		 size_t n, size_t step)
{
	size_t off = 0;

	while (off < n) {
		size_t k = n - off < step ? n - off : step;

		memcpy(st->buf + st->len, in + off, k);
		st->len += k;
		off += k;
		for (;;) {
			size_t start = 0, end = 0, drop = 0;
			enum qmp_frame r = qmp_framer_scan(f, st->buf, st->len,
							   &start, &end, &drop);

			st->last = r;
			if (r == QMP_FRAME_TOO_BIG || r == QMP_FRAME_TOO_DEEP)
				return;
			if (r == QMP_FRAME_TEXT) {
				memcpy(st->texts[st->nr_texts], st->buf + start,
				       end - start);
				st->texts[st->nr_texts][end - start] = '\0';
				st->nr_texts++;
			}
			if (r == QMP_FRAME_DISCARD)
				st->discards++;
			memmove(st->buf, st->buf + drop, st->len - drop);
			st->len -= drop;
			if (r == QMP_FRAME_MORE)
				break;
		}
	}
}

static void test_framer_split_any_step_same_texts(void **state)
{
	static const char in[] =
		" {\"execute\": \"a\", \"arguments\": {\"s\": \"}{][\\\"\"}}\r\n"
		"[1, [2]]{\"x\":{}}  \"str\\\\\" 42 true\n";
	size_t step;

	(void)state;
	for (step = 1; step <= sizeof(in); step++) {
		struct qmp_framer f;
		struct feed *st = calloc(1, sizeof(*st));

		qmp_framer_init(&f);
		feed(&f, st, in, sizeof(in) - 1, step);
		assert_int_equal(st->nr_texts, 6);
		assert_string_equal(st->texts[0],
				    "{\"execute\": \"a\", \"arguments\": "
				    "{\"s\": \"}{][\\\"\"}}");
		assert_string_equal(st->texts[1], "[1, [2]]");
		assert_string_equal(st->texts[2], "{\"x\":{}}");
		assert_string_equal(st->texts[3], "\"str\\\\\"");
		assert_string_equal(st->texts[4], "42");
		assert_string_equal(st->texts[5], "true");
		assert_int_equal(st->len, 0);
		free(st);
	}
}

static void test_framer_control_char_discards_partial(void **state)
{
	static const char in[] = "{\"execute\": \x1b {\"a\":1}\x01\x01";
	struct qmp_framer f;
	struct feed *st = calloc(1, sizeof(*st));

	(void)state;
	qmp_framer_init(&f);
	feed(&f, st, in, sizeof(in) - 1, 3);
	/* The partial text is dropped with an error; idle resets are not. */
	assert_int_equal(st->discards, 1);
	assert_int_equal(st->nr_texts, 1);
	assert_string_equal(st->texts[0], "{\"a\":1}");
	free(st);
}

/* A 0xff byte (never valid in UTF-8) resets the parser as a control
 * character does, QEMU's way back to a known state. */
static void test_framer_0xff_discards_partial(void **state)
{
	static const char in[] = "{\"execute\": \xff{\"a\":1}\xff";
	struct qmp_framer f;
	struct feed *st = calloc(1, sizeof(*st));

	(void)state;
	qmp_framer_init(&f);
	feed(&f, st, in, sizeof(in) - 1, 4);
	assert_int_equal(st->discards, 1);
	assert_int_equal(st->nr_texts, 1);
	assert_string_equal(st->texts[0], "{\"a\":1}");
	free(st);
}

static void test_framer_stray_closer_is_a_text(void **state)
{
	struct qmp_framer f;
	struct feed *st = calloc(1, sizeof(*st));

	(void)state;
	qmp_framer_init(&f);
	feed(&f, st, "} {}", 4, 4);
	assert_int_equal(st->nr_texts, 2);
	assert_string_equal(st->texts[0], "}");
	free(st);
}

static void test_framer_deep_nesting_refused(void **state)
{
	struct qmp_framer f;
	char *buf = malloc(QMP_MAX_DEPTH + 2);
	size_t start, end, drop;

	(void)state;
	memset(buf, '[', QMP_MAX_DEPTH + 1);
	qmp_framer_init(&f);
	assert_int_equal(qmp_framer_scan(&f, buf, QMP_MAX_DEPTH, &start, &end,
					 &drop),
			 QMP_FRAME_MORE);
	qmp_framer_init(&f);
	assert_int_equal(qmp_framer_scan(&f, buf, QMP_MAX_DEPTH + 1, &start,
					 &end, &drop),
			 QMP_FRAME_TOO_DEEP);
	free(buf);
}

static void test_framer_oversized_text_refused(void **state)
{
	size_t n = QMP_MAX_MESSAGE + 16, start, end, drop;
	char *buf = malloc(n);
	struct qmp_framer f;

	(void)state;
	buf[0] = '"';
	memset(buf + 1, 'a', n - 1);
	qmp_framer_init(&f);
	assert_int_equal(qmp_framer_scan(&f, buf, QMP_MAX_MESSAGE, &start, &end,
					 &drop),
			 QMP_FRAME_MORE);
	assert_int_equal(drop, 0);
	assert_int_equal(qmp_framer_scan(&f, buf, n, &start, &end, &drop),
			 QMP_FRAME_TOO_BIG);
	free(buf);
}

/*
 * A text of n bytes that ends in each way a text can end: an object's
 * closing brace, a string's closing quote, a bare scalar (whose
 * terminator, a space here, is not part of it). Returns the bytes to
 * scan: n, plus the terminator of the bare one.
 */
static size_t make_text(char *buf, size_t n, int kind)
{
	switch (kind) {
	case 0: /* {"a":"aaa...a"} */
		memcpy(buf, "{\"a\":\"", 6);
		memset(buf + 6, 'a', n - 8);
		memcpy(buf + n - 2, "\"}", 2);
		return n;
	case 1: /* "aaa...a" */
		buf[0] = '"';
		memset(buf + 1, 'a', n - 2);
		buf[n - 1] = '"';
		return n;
	default: /* 111...1 */
		memset(buf, '1', n);
		buf[n] = ' ';
		return n + 1;
	}
}

/* rpc.h: a message larger than QMP_MAX_MESSAGE gets an error, so a whole
 * text of exactly the limit is accepted and one of a byte more is not,
 * whichever byte completes it. */
static void test_framer_limit_exact_accepted_one_more_refused(void **state)
{
	char *buf = malloc(QMP_MAX_MESSAGE + 2);

	(void)state;
	assert_non_null(buf);
	for (int kind = 0; kind < 3; kind++) {
		size_t start = 0, end = 0, drop = 0;
		struct qmp_framer f;
		size_t len = make_text(buf, QMP_MAX_MESSAGE, kind);

		qmp_framer_init(&f);
		assert_int_equal(qmp_framer_scan(&f, buf, len, &start, &end,
						 &drop),
				 QMP_FRAME_TEXT);
		assert_int_equal(start, 0);
		assert_int_equal(end, QMP_MAX_MESSAGE);

		len = make_text(buf, QMP_MAX_MESSAGE + 1, kind);
		qmp_framer_init(&f);
		assert_int_equal(qmp_framer_scan(&f, buf, len, &start, &end,
						 &drop),
				 QMP_FRAME_TOO_BIG);
		/* The same when the bytes arrive one read short of the end:
		 * the pending text is already too big or it is not. */
		qmp_framer_init(&f);
		assert_int_equal(qmp_framer_scan(&f, buf, QMP_MAX_MESSAGE,
						 &start, &end, &drop),
				 QMP_FRAME_MORE);
		assert_int_equal(qmp_framer_scan(&f, buf, len, &start, &end,
						 &drop),
				 QMP_FRAME_TOO_BIG);
	}
	free(buf);
}

static const struct qmp_arg spec[] = {
	{ "name", QMP_ARG_STRING, false }, { "n", QMP_ARG_INT, false },
	{ "flag", QMP_ARG_BOOL, true },	   { "x", QMP_ARG_NUMBER, true },
	{ "any", QMP_ARG_ANY, true },	   QMP_ARGS_END,
};

static void check(const char *json, const char *want)
{
	json_t *args = json_loads(json, 0, NULL);
	char *msg;

	assert_non_null(args);
	msg = qmp_args_check(spec, args);
	if (want) {
		assert_non_null(msg);
		assert_string_equal(msg, want);
	} else {
		assert_null(msg);
	}
	free(msg);
	json_decref(args);
}

static void test_args_check_qemu_texts(void **state)
{
	(void)state;
	check("{\"name\": \"a\", \"n\": 1}", NULL);
	check("{\"name\": \"a\", \"n\": 1, \"x\": 1, \"any\": [null]}", NULL);
	check("{\"name\": \"a\", \"n\": 1, \"x\": 1.5, \"flag\": false}", NULL);
	check("{\"n\": 1}", "Parameter 'name' is missing");
	check("{\"name\": 1, \"n\": 1}",
	      "Invalid parameter type for 'name', expected: string");
	check("{\"name\": \"a\", \"n\": 1.0}",
	      "Invalid parameter type for 'n', expected: integer");
	check("{\"name\": \"a\", \"n\": 1, \"flag\": 0}",
	      "Invalid parameter type for 'flag', expected: boolean");
	check("{\"name\": \"a\", \"n\": 1, \"x\": \"1\"}",
	      "Invalid parameter type for 'x', expected: number");
	check("{\"name\": \"a\", \"n\": 1, \"bogus\": 1}",
	      "Parameter 'bogus' is unexpected");
}

static void test_args_check_no_spec_refuses_any_argument(void **state)
{
	json_t *args = json_pack("{s:i}", "a", 1);
	json_t *none = json_object();
	char *msg;

	(void)state;
	msg = qmp_args_check(NULL, args);
	assert_string_equal(msg, "Parameter 'a' is unexpected");
	free(msg);
	assert_null(qmp_args_check(NULL, none));
	json_decref(args);
	json_decref(none);
}

static void test_dump_line_ascii_crlf(void **state)
{
	json_t *msg = json_pack("{s:s, s:{}}", "s", "caf\xc3\xa9\n", "o");
	size_t len, i;
	char *line;

	(void)state;
	line = qmp_dump_line(msg, &len);
	assert_string_equal(line, "{\"s\": \"caf\\u00E9\\n\", \"o\": {}}\r\n");
	assert_int_equal(len, strlen(line));
	for (i = 0; i < len; i++)
		assert_true((unsigned char)line[i] < 0x80);
	free(line);
	json_decref(msg);
}

/* Parses @in with qmp_parse() and dumps it back: QEMU's text, @want. */
static void roundtrip(const char *in, const char *want)
{
	json_error_t err;
	json_t *msg = qmp_parse(in, strlen(in), JSON_DECODE_ANY, &err);
	size_t len;
	char *line;

	assert_non_null(msg);
	line = qmp_dump_line(msg, &len);
	assert_non_null(line);
	line[len - 2] = '\0';
	assert_string_equal(line, want);
	free(line);
	json_decref(msg);
}

static void test_parse_u64_and_reals_roundtrip_as_qemu(void **state)
{
	(void)state;
	roundtrip("9223372036854775807", "9223372036854775807");
	roundtrip("9223372036854775808", "9223372036854775808");
	roundtrip(
		"{\"id\": 18446744073709551615, \"s\": \"18446744073709551615\"}",
		"{\"id\": 18446744073709551615, \"s\": \"18446744073709551615\"}");
	roundtrip("[-9223372036854775808, 10000000000000000000]",
		  "[-9223372036854775808, 10000000000000000000]");
	/* Past u64 (or below int64) QEMU reads a double. */
	roundtrip("18446744073709551616", "1.8446744073709552e19");
	roundtrip("-9223372036854775809", "-9.2233720368547758e18");
	/* QEMU writes an integral double without ".0". */
	roundtrip("[1.5e3, 2.5, -0.0, 1e300]",
		  "[1500, 2.5, -0.0, 1.0000000000000001e300]");
}

static void test_parse_refuses_nul_and_keeps_errors(void **state)
{
	json_error_t err;

	(void)state;
	assert_null(qmp_parse("\"a\\u0000\"", 9, JSON_DECODE_ANY, &err));
	assert_non_null(strstr(err.text, "u0000"));
	/* A leading zero is jansson's to refuse, however long. */
	assert_null(
		qmp_parse("012345678901234567890", 21, JSON_DECODE_ANY, &err));
	assert_null(qmp_parse("[99999999999999999999 x]", 24, JSON_DECODE_ANY,
			      &err));
}

static void test_args_check_u64_is_an_integer_only(void **state)
{
	const char *in = "{\"name\": 18446744073709551615, \"n\": 1}";
	json_error_t err;
	json_t *args = qmp_parse(in, strlen(in), 0, &err);
	char *msg;
	uint64_t v;

	(void)state;
	assert_non_null(args);
	msg = qmp_args_check(spec, args);
	assert_string_equal(
		msg, "Invalid parameter type for 'name', expected: string");
	free(msg);
	json_object_set_new(args, "name", json_string("a"));
	json_object_set(args, "x", json_object_get(args, "n"));
	in = "18446744073709551615";
	json_object_set_new(args, "n",
			    qmp_parse(in, strlen(in), JSON_DECODE_ANY, &err));
	assert_null(qmp_args_check(spec, args));
	assert_true(qmp_json_u64(json_object_get(args, "n"), &v));
	assert_true(v == UINT64_MAX);
	assert_true(qmp_json_is_integer(json_object_get(args, "n")));
	/* A NUL-led string is no integer without the process's nonce. */
	json_object_set_new(args, "n", json_stringn("\0x:5", 4));
	assert_false(qmp_json_u64(json_object_get(args, "n"), &v));
	json_object_set_new(args, "n", json_integer(-1));
	assert_false(qmp_json_u64(json_object_get(args, "n"), &v));
	json_decref(args);
}

static void test_parse_budget_refuses_amplifying_text(void **state)
{
	/* ~1 MiB of empty arrays: far more than 8 MiB once parsed. */
	size_t n = 349000, len = 2 + 3 * n, i;
	char *text = malloc(len + 1);
	json_error_t err;
	json_t *v;

	(void)state;
	assert_non_null(text);
	text[0] = '[';
	for (i = 0; i < n; i++)
		memcpy(text + 1 + 3 * i, "[],", 3);
	memcpy(text + 1 + 3 * n - 1, "]]", 2);
	text[len] = '\0';
	assert_null(qmp_parse(text, len, JSON_DECODE_ANY, &err));
	assert_string_equal(err.text,
			    "the message takes more than 8 MiB once parsed");
	/* A long string of the same size is fine, and outside a parse
	 * jansson allocates freely. */
	memset(text, 'x', len);
	text[0] = '"';
	text[len - 1] = '"';
	v = qmp_parse(text, len, JSON_DECODE_ANY, &err);
	assert_non_null(v);
	json_decref(v);
	v = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(v, json_array());
	assert_int_equal(json_array_size(v), n);
	json_decref(v);
	free(text);
}

static void test_dump_line_id_last_member(void **state)
{
	json_t *ok = json_pack("{s:{}}", "return");
	json_t *empty = json_object();
	size_t len;
	char *line;

	(void)state;
	line = qmp_dump_line_id(ok, "[1, \"x\"]", &len);
	assert_string_equal(line, "{\"return\": {}, \"id\": [1, \"x\"]}\r\n");
	assert_int_equal(len, strlen(line));
	free(line);
	line = qmp_dump_line_id(empty, "7", &len);
	assert_string_equal(line, "{\"id\": 7}\r\n");
	free(line);
	line = qmp_dump_line_id(ok, NULL, &len);
	assert_string_equal(line, "{\"return\": {}}\r\n");
	free(line);
	json_decref(ok);
	json_decref(empty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_framer_split_any_step_same_texts),
		cmocka_unit_test(test_framer_control_char_discards_partial),
		cmocka_unit_test(test_framer_0xff_discards_partial),
		cmocka_unit_test(test_framer_stray_closer_is_a_text),
		cmocka_unit_test(test_framer_deep_nesting_refused),
		cmocka_unit_test(test_framer_oversized_text_refused),
		cmocka_unit_test(
			test_framer_limit_exact_accepted_one_more_refused),
		cmocka_unit_test(test_args_check_qemu_texts),
		cmocka_unit_test(test_args_check_no_spec_refuses_any_argument),
		cmocka_unit_test(test_dump_line_ascii_crlf),
		cmocka_unit_test(test_parse_u64_and_reals_roundtrip_as_qemu),
		cmocka_unit_test(test_parse_refuses_nul_and_keeps_errors),
		cmocka_unit_test(test_args_check_u64_is_an_integer_only),
		cmocka_unit_test(test_parse_budget_refuses_amplifying_text),
		cmocka_unit_test(test_dump_line_id_last_member),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
