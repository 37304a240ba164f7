/*
 * The line protocol of the echo guests (echo.c polls COM1, irq_echo.c
 * takes its receive interrupt): a line ends at CR, LF or CR LF, as a
 * serial line's does (a terminal in raw mode sends CR for Enter, a pipe
 * LF); each is echoed as "NAME: <line>"; a line longer than the buffer
 * is echoed in pieces. "sum" prints how many bytes were received before
 * it and their hash (h = h * 31 + byte, from 0, each line counted with
 * one LF whatever ended it, command lines excluded); "quit" prints
 * "NAME: bye" and returns 0.
 */
#ifndef ECHO_LINES_H
#define ECHO_LINES_H

#include "rt.h"

struct echo_lines {
	const char *name;
	char (*getc)(void);
	/* Appended to the "sum" line after ", " when not NULL. */
	const char *(*sum_note)(void);
};

static char echo_line[256];
static uint64_t echo_count, echo_hash;

static bool echo_is(const char *s, size_t n, const char *word)
{
	return n == strlen(word) && !memcmp(s, word, n);
}

static void echo_account(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		echo_hash = echo_hash * 31 + (uint8_t)s[i];
		echo_count++;
	}
}

static int echo_lines_run(const struct echo_lines *e)
{
	bool after_cr = false;
	size_t n = 0;

	for (;;) {
		char c = e->getc();
		bool lf_of_crlf = c == '\n' && after_cr && n == 0;

		after_cr = c == '\r';
		if (lf_of_crlf)
			continue; /* the CR before it ended the line */
		if (c != '\n' && c != '\r') {
			echo_line[n++] = c;
			if (n < sizeof(echo_line) - 1)
				continue;
			/* Full: echo this piece, go on with the line. */
			echo_line[n] = '\0';
			echo_account(echo_line, n);
			rt_printf("%s: %s\n", e->name, echo_line);
			n = 0;
			continue;
		}
		if (echo_is(echo_line, n, "quit")) {
			rt_printf("%s: bye\n", e->name);
			return 0;
		}
		if (echo_is(echo_line, n, "sum") && e->sum_note) {
			rt_printf("%s: %lu bytes, hash %lx, %s\n", e->name,
				  echo_count, echo_hash, e->sum_note());
		} else if (echo_is(echo_line, n, "sum")) {
			rt_printf("%s: %lu bytes, hash %lx\n", e->name,
				  echo_count, echo_hash);
		} else {
			echo_line[n] = '\0';
			echo_account(echo_line, n);
			echo_account("\n", 1);
			rt_printf("%s: %s\n", e->name, echo_line);
		}
		n = 0;
	}
}

#endif
