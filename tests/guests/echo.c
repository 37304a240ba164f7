/*
 * echo: a guest that reads COM1 (docs/GUEST-ABI.md, "COM1") by polling
 * LSR.DR and echoes each line it receives as "echo: <line>", for the
 * daemon's console tests (tests/integration), with the line protocol of
 * echo_lines.h (mmuctl console and virsh console send CR for Enter, a
 * pipe LF; "sum", "quit"). It first checks the receive side at rest
 * (LSR.DR clear, RBR reads 0), then prints "echo: ready". "quit" ends it
 * with status 0 (mmud exits 1).
 */
#include "echo_lines.h"

#define COM1 0x3f8
#define LSR_DR 0x01

static char getc_poll(void)
{
	while (!(rt_inb(COM1 + 5) & LSR_DR))
		__asm__ volatile("pause");
	return (char)rt_inb(COM1);
}

int guest_main(unsigned int cpu)
{
	static const struct echo_lines e = { .name = "echo",
					     .getc = getc_poll };

	if (cpu != 0)
		return 0;
	if (rt_inb(COM1 + 5) & LSR_DR)
		rt_fail("echo: LSR.DR set before any input\n");
	if (rt_inb(COM1) != 0)
		rt_fail("echo: RBR not 0 with nothing received\n");
	rt_printf("echo: ready\n");
	return echo_lines_run(&e);
}
