/*
 * main() of the fuzz targets when they are not built with libFuzzer: it
 * replays files (raw, or hex text for names ending in .hex) through
 * LLVMFuzzerTestOneInput and fails on an unreadable input or an empty
 * corpus, so a test that silently checks nothing cannot pass.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "replay.h"

#ifndef MMUD_LIBFUZZER

#define REPLAY_MAX_INPUT (4u << 20)

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int run_file(const char *path)
{
	size_t n = 0, len = strlen(path);
	uint8_t *buf = malloc(REPLAY_MAX_INPUT);
	FILE *f = fopen(path, "rb");
	int c, hi = -1;

	if (!buf || !f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		free(buf);
		if (f)
			fclose(f);
		return -1;
	}
	if (len > 4 && !strcmp(path + len - 4, ".hex")) {
		while ((c = fgetc(f)) != EOF && n < REPLAY_MAX_INPUT) {
			int v = hexval(c);

			if (isspace(c))
				continue;
			if (v < 0) {
				fprintf(stderr, "%s: not hex\n", path);
				fclose(f);
				free(buf);
				return -1;
			}
			if (hi < 0) {
				hi = v;
			} else {
				buf[n++] = (uint8_t)(hi << 4 | v);
				hi = -1;
			}
		}
	} else {
		n = fread(buf, 1, REPLAY_MAX_INPUT, f);
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned int inputs = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		DIR *d;
		struct dirent *e;

		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]) < 0)
				return 1;
			inputs++;
			continue;
		}
		d = opendir(argv[i]);
		if (!d)
			return 1;
		while ((e = readdir(d))) {
			char path[4096];

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i],
				 e->d_name);
			if (run_file(path) < 0) {
				closedir(d);
				return 1;
			}
			inputs++;
		}
		closedir(d);
	}
	printf("%u inputs replayed\n", inputs);
	return inputs ? 0 : 1;
}

#endif
