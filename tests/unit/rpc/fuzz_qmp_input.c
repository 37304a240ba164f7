/*
 * Fuzz target for what a QMP client controls before any handler runs:
 * the framer (fed the input in pieces whose sizes come from the input
 * itself), the JSON parse of each text (qmp_parse(): integers as QEMU
 * reads them, the parse budget), the argument check against a schema
 * with every argument type, and the serializer the replies go through,
 * whose output must parse back to itself. With libFuzzer (-fsanitize=fuzzer, MMUD_LIBFUZZER defined)
 * it is an ordinary target; otherwise main() replays the files named on
 * the command line (the corpus and crash reproducers kept in
 * tests/unit/rpc/corpus), which meson runs as a test.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct qmp_arg spec[] = {
	{ "s", QMP_ARG_STRING, false }, { "i", QMP_ARG_INT, true },
	{ "b", QMP_ARG_BOOL, true },	{ "n", QMP_ARG_NUMBER, true },
	{ "o", QMP_ARG_OBJECT, true },	{ "a", QMP_ARG_ARRAY, true },
	{ "x", QMP_ARG_ANY, true },	QMP_ARGS_END,
};

/*
 * What the server writes back re-reads to the same text: integers up
 * to 2^64 - 1 and integral reals included (qmp_parse(), qmp_dump_text()).
 */
static void check_roundtrip(const char *s, size_t n)
{
	json_error_t err;
	json_t *again = qmp_parse(s, n, JSON_DECODE_ANY, &err);
	size_t m;
	char *t;

	if (!again) {
		/* Only the parse budget may refuse what we wrote. */
		if (!strstr(err.text, "once parsed"))
			abort();
		return;
	}
	t = qmp_dump_text(again, &m);
	if (t && (m != n || memcmp(s, t, n)))
		abort();
	free(t);
	json_decref(again);
}

static void use_text(const char *text, size_t len)
{
	json_error_t err;
	json_t *msg = qmp_parse(text, len,
				JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
	json_t *args;
	size_t n;
	char *s;

	if (!msg)
		return;
	args = json_object_get(msg, "arguments");
	if (json_is_object(args)) {
		s = qmp_args_check(spec, args);
		free(s);
		s = qmp_args_check(NULL, args);
		free(s);
	}
	s = qmp_dump_line(msg, &n);
	/* The output must be one ASCII line ending in CRLF. */
	if (s) {
		size_t i;

		for (i = 0; i + 2 < n; i++)
			if ((unsigned char)s[i] >= 0x80 || s[i] == '\n' ||
			    s[i] == '\r')
				abort();
		if (n < 2 || s[n - 2] != '\r' || s[n - 1] != '\n')
			abort();
		check_roundtrip(s, n - 2);
	}
	free(s);
	json_decref(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmp_framer f;
	char *buf;
	size_t len = 0, off = 0, step;

	if (size == 0)
		return 0;
	/* The first byte picks the piece size, so splits get explored. */
	step = 1 + data[0] % 64;
	data++;
	size--;
	buf = malloc(size + 1);
	if (!buf)
		return 0;
	qmp_framer_init(&f);
	while (off < size) {
		size_t k = size - off < step ? size - off : step;

		memcpy(buf + len, data + off, k);
		len += k;
		off += k;
		for (;;) {
			size_t start = 0, end = 0, drop = 0;
			enum qmp_frame r = qmp_framer_scan(&f, buf, len, &start,
							   &end, &drop);

			if (r == QMP_FRAME_TOO_BIG || r == QMP_FRAME_TOO_DEEP)
				goto out;
			if (drop > len || (r == QMP_FRAME_TEXT && end > len))
				abort();
			if (r == QMP_FRAME_TEXT)
				use_text(buf + start, end - start);
			memmove(buf, buf + drop, len - drop);
			len -= drop;
			if (r == QMP_FRAME_MORE)
				break;
		}
	}
out:
	free(buf);
	return 0;
}

#ifndef MMUD_LIBFUZZER
static int replay(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data;
	long n;

	if (!f) {
		perror(path);
		return -1;
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	data = malloc(n > 0 ? (size_t)n : 1);
	if (!data || fread(data, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "%s: read error\n", path);
		fclose(f);
		free(data);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(data, (size_t)n);
	free(data);
	return 0;
}

/* Replays every file of each directory named (or each file named). */
int main(int argc, char **argv)
{
	int i, count = 0;

	for (i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		struct dirent *e;
		char path[4096];

		if (!d) {
			if (replay(argv[i]) < 0)
				return 1;
			count++;
			continue;
		}
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i],
				 e->d_name);
			if (replay(path) < 0) {
				closedir(d);
				return 1;
			}
			count++;
		}
		closedir(d);
	}
	printf("replayed %d inputs\n", count);
	return count ? 0 : 1;
}
#endif
