/*
 * The daemon's text codecs: base64 (x-dirty-log-harvest's bitmap,
 * ringbuf-read/-write's base64 format) and UTF-8 (ringbuf-read's utf8
 * format, which must give valid JSON text for any bytes a guest prints).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mmud.h"

#define REPL "\xef\xbf\xbd" /* U+FFFD */

/* RFC 4648 section 10's test vectors, both ways. */
static void test_base64_rfc4648_vectors(void **state)
{
	static const char *const vec[][2] = {
		{ "", "" },
		{ "f", "Zg==" },
		{ "fo", "Zm8=" },
		{ "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" },
		{ "foobar", "Zm9vYmFy" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		char *enc = mmud_base64_encode((const uint8_t *)vec[i][0],
					       strlen(vec[i][0]));
		uint8_t *dec;
		size_t len;

		assert_non_null(enc);
		assert_string_equal(enc, vec[i][1]);
		free(enc);
		assert_int_equal(mmud_base64_decode(vec[i][1],
						    strlen(vec[i][1]), &dec,
						    &len),
				 0);
		assert_int_equal(len, strlen(vec[i][0]));
		assert_memory_equal(dec, vec[i][0], len);
		free(dec);
	}
}

/* Every length up to 300 (each padding case many times) and every byte
 * value come back as they went. */
static void test_base64_round_trip(void **state)
{
	uint8_t data[300];
	uint32_t x = 12345;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++) {
		x = x * 1103515245u + 12345u;
		data[i] = i < 256 ? (uint8_t)i : (uint8_t)(x >> 16);
	}
	for (size_t n = 0; n <= sizeof(data); n++) {
		char *enc = mmud_base64_encode(data, n);
		uint8_t *dec;
		size_t len;

		assert_non_null(enc);
		assert_int_equal(strlen(enc), (n + 2) / 3 * 4);
		assert_int_equal(
			mmud_base64_decode(enc, strlen(enc), &dec, &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(dec, data, n);
		free(dec);
		free(enc);
	}
}

/* Strict: anything but whole quanta of the standard alphabet with
 * padding only at the very end is refused, and nothing is allocated. */
static void test_base64_refuses_what_is_not_strict(void **state)
{
	static const char *const bad[] = {
		"Zg", /* no padding */
		"Zg=", /* not a whole quantum */
		"Zm9vY", /* 5 characters */
		"Z===", /* three padding characters */
		"=Zg=", /* padding first */
		"Zg=a", /* a character after padding */
		"Zg==Zm8=", /* padding before the end */
		"Zm9v\nZm8=", "Zm 9",	 "Zm-9", /* URL-safe alphabet */
		"Zm_9",	      "Zm9\x80",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *dec = (uint8_t *)"untouched";
		size_t len = 7;

		if (mmud_base64_decode(bad[i], strlen(bad[i]), &dec, &len) !=
		    -EINVAL)
			fail_msg("\"%s\" was accepted", bad[i]);
		assert_string_equal((const char *)dec, "untouched");
		assert_int_equal(len, 7);
	}
}

/* Sanitizes buf and compares with want. */
static void check_sanitize(const char *buf, size_t n, const char *want,
			   size_t want_len)
{
	size_t len;
	char *out = mmud_utf8_sanitize(buf, n, &len);

	assert_non_null(out);
	if (len != want_len || memcmp(out, want, len))
		fail_msg("%zu bytes gave \"%s\", want \"%s\"", n, out, want);
	assert_int_equal(out[len], '\0');
	free(out);
}

#define SANITIZE(lit, want) \
	check_sanitize(lit, sizeof(lit) - 1, want, sizeof(want) - 1)

static void test_utf8_valid_text_passes_unchanged(void **state)
{
	(void)state;
	SANITIZE("", "");
	SANITIZE("plain ASCII\n", "plain ASCII\n");
	SANITIZE("h\xc3\xa9llo", "h\xc3\xa9llo"); /* U+00E9 */
	SANITIZE("\xe2\x82\xac", "\xe2\x82\xac"); /* U+20AC */
	SANITIZE("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"); /* U+1F600 */
	SANITIZE("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
	SANITIZE("\xed\x9f\xbf", "\xed\x9f\xbf"); /* U+D7FF */
	/* NUL is a character: it stays (JSON escapes it). */
	SANITIZE("a\0b", "a\0b");
}

/* Each byte that does not begin a valid sequence is one U+FFFD; what
 * follows it is looked at afresh. */
static void test_utf8_invalid_bytes_become_replacement_characters(void **state)
{
	(void)state;
	SANITIZE("\xff\xfe\n", REPL REPL "\n");
	SANITIZE("\xc0\xaf", REPL REPL); /* overlong '/' */
	SANITIZE("\xe0\x80\xaf", REPL REPL REPL); /* overlong */
	/* U+0080 in three bytes: overlong though above 0x7f. */
	SANITIZE("\xe0\x82\x80", REPL REPL REPL);
	SANITIZE("\xed\xa0\x80", REPL REPL REPL); /* surrogate */
	SANITIZE("\xf4\x90\x80\x80", REPL REPL REPL REPL); /* > U+10FFFF */
	SANITIZE("\x80x", REPL "x"); /* lone continuation */
	SANITIZE("\xc3x", REPL "x"); /* lead, no continuation */
	SANITIZE("a\xe2\x82", "a" REPL REPL); /* cut at the end */
	SANITIZE("\xe2\x82\xc3\xa9",
		 REPL REPL "\xc3\xa9"); /* cut, then valid */
}

static void check_cut(const char *buf, size_t n, size_t want, size_t need)
{
	size_t got_need = 0, got = mmud_utf8_cut_tail(buf, n, &got_need);

	if (got != want || (want && got_need != need))
		fail_msg("cut tail of %zu bytes: %zu (needs %zu), want %zu "
			 "(needs %zu)",
			 n, got, got_need, want, need);
}

#define CUT(lit, want, need) check_cut(lit, sizeof(lit) - 1, want, need)

/* What a read must leave for the next one: a lead byte and fewer
 * continuation bytes than it announces, at the very end. */
static void test_utf8_cut_tail(void **state)
{
	(void)state;
	CUT("", 0, 0);
	CUT("abc", 0, 0);
	CUT("ab\xc3", 1, 2);
	CUT("a\xe2", 1, 3);
	CUT("a\xe2\x82", 2, 3);
	CUT("\xf0", 1, 4);
	CUT("\xf0\x9f\x98", 3, 4);
	/* Whole characters at the end: nothing to leave. */
	CUT("a\xc3\xa9", 0, 0);
	CUT("\xe2\x82\xac", 0, 0);
	CUT("\xf0\x9f\x98\x80", 0, 0);
	/* Bytes no character begins with are not waited for. */
	CUT("a\xff", 0, 0);
	CUT("\xc0", 0, 0);
	CUT("\xf5\x80", 0, 0);
	CUT("\x80\x80\x80", 0, 0);
	CUT("a\x80", 0, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64_rfc4648_vectors),
		cmocka_unit_test(test_base64_round_trip),
		cmocka_unit_test(test_base64_refuses_what_is_not_strict),
		cmocka_unit_test(test_utf8_valid_text_passes_unchanged),
		cmocka_unit_test(
			test_utf8_invalid_bytes_become_replacement_characters),
		cmocka_unit_test(test_utf8_cut_tail),
	};

	return cmocka_run_group_tests_name("daemon_text", tests, NULL, NULL);
}
