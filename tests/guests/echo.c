/*
 * echo: a guest that reads COM1 (docs/GUEST-ABI.md, "COM1") by polling
 * LSR.DR and echoes each line it receives as "echo: <line>", for the
 * daemon's console tests (tests/integration). A line ends at CR, LF or
 * CR LF, as a serial line's does: a terminal in raw mode (mmuctl console,
 * virsh console) sends CR for Enter, a pipe sends LF. It first checks the
 * receive side at rest (LSR.DR clear, RBR reads 0), then prints "echo:
 * ready". The line "sum" makes it print how many bytes it has received
 * before that line and their hash (h = h * 31 + byte, from 0, each line
 * counted with one LF whatever ended it, command lines excluded); "quit"
 * ends it with status 0 (mmud exits 1). A line longer than its buffer is
 * echoed in pieces.
 */
#include "rt.h"

#define COM1 0x3f8
#define LSR_DR 0x01

static char line[256];
static uint64_t count, hash;

static uint8_t getc_poll(void)
{
	while (!(rt_inb(COM1 + 5) & LSR_DR))
		__asm__ volatile("pause");
	return rt_inb(COM1);
}

static bool is(const char *s, size_t n, const char *word)
{
	return n == strlen(word) && !memcmp(s, word, n);
}

static void account(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		hash = hash * 31 + (uint8_t)s[i];
		count++;
	}
}

int guest_main(unsigned int cpu)
{
	bool after_cr = false;
	size_t n = 0;

	if (cpu != 0)
		return 0;
	if (rt_inb(COM1 + 5) & LSR_DR)
		rt_fail("echo: LSR.DR set before any input\n");
	if (rt_inb(COM1) != 0)
		rt_fail("echo: RBR not 0 with nothing received\n");
	rt_printf("echo: ready\n");
	for (;;) {
		char c = (char)getc_poll();
		bool lf_of_crlf = c == '\n' && after_cr && n == 0;

		after_cr = c == '\r';
		if (lf_of_crlf)
			continue; /* the CR before it ended the line */
		if (c != '\n' && c != '\r') {
			line[n++] = c;
			if (n < sizeof(line) - 1)
				continue;
			/* Full: echo this piece, go on with the line. */
			line[n] = '\0';
			account(line, n);
			rt_printf("echo: %s\n", line);
			n = 0;
			continue;
		}
		if (is(line, n, "quit")) {
			rt_printf("echo: bye\n");
			return 0;
		}
		if (is(line, n, "sum")) {
			rt_printf("echo: %lu bytes, hash %lx\n", count, hash);
		} else {
			line[n] = '\0';
			account(line, n);
			account("\n", 1);
			rt_printf("echo: %s\n", line);
		}
		n = 0;
	}
}
