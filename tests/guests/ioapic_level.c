/*
 * ioapic_level: a level-triggered I/O APIC pin (82093AA datasheet, I/O
 * APIC version 0x20) with COM1 as the level source: COM1's interrupt
 * line (I/O APIC pin 4) stays asserted while the UART has an interrupt
 * pending and enabled in IER (16550 datasheet: here THR empty, cleared
 * by reading IIR). Pin 4's redirection entry is made level-triggered,
 * active high, to vector 0x44 on APIC 0:
 * - the handler finds remote IRR set and the vector's TMR bit set (a
 *   level interrupt, SDM vol. 3, 10.8.4);
 * - an EOI with the line still asserted delivers the interrupt again
 *   (remote IRR cleared by the EOI broadcast, the level still there);
 * - once the source is cleared (IIR read), an EOI clears remote IRR and
 *   nothing more comes;
 * - a masked pin holds the level and delivers it when unmasked;
 * - the version register says version 0x20 and 24 pins; an index past
 *   the last register is ignored.
 * Nothing is printed while COM1's THR-empty interrupt is enabled: each
 * byte sent would raise it again.
 */
#include "irq.h"

#define COM1 0x3f8
#define IER (COM1 + 1)
#define IIR (COM1 + 2)
#define IER_THRE 0x02
#define IIR_NO_INT 0x01
#define IIR_THRE 0x02
#define VECTOR 0x44
#define PIN 4

static volatile unsigned int count;
static volatile bool remote_irr_seen[4], tmr_seen[4];
static volatile unsigned int clear_on; /* which call clears the source */

static void spin(unsigned long n)
{
	for (volatile unsigned long i = 0; i < n; i++)
		rt_pause();
}

static bool remote_irr(void)
{
	return rt_ioapic_read(IOAPIC_REDTBL(PIN)) & IOREDTBL_REMOTE_IRR;
}

static void handler(struct rt_irq_frame *f)
{
	unsigned int n = count;

	(void)f;
	if (n < 4) {
		remote_irr_seen[n] = remote_irr();
		tmr_seen[n] = rt_apic_bit(APIC_TMR, VECTOR);
	}
	count = n + 1;
	if (count == clear_on) {
		/* Reading IIR with THR-empty the pending source clears it;
		 * then turn the source off for good. */
		(void)rt_inb(IIR);
		rt_outb(IER, 0);
	}
	rt_apic_eoi();
}

static void check(bool ok, const char *what, int *bad)
{
	rt_printf("ioapic_level: %s: %s\n", what, ok ? "ok" : "FAIL");
	*bad += !ok;
}

int guest_main(unsigned int cpu)
{
	uint32_t ver, entry;
	bool all_irr, all_tmr;
	int bad = 0;

	if (cpu != 0)
		return 0;
	rt_irq_setup();
	rt_apic_enable();
	rt_irq_set_handler(VECTOR, handler);
	ver = rt_ioapic_read(IOAPIC_VER);
	check((ver & 0xff) == 0x20 && ((ver >> 16) & 0xff) == 23,
	      "version 0x20, 24 pins", &bad);

	rt_outb(IER, 0);
	rt_ioapic_route(PIN, IOREDTBL_LEVEL | VECTOR, 0);
	entry = rt_ioapic_read(IOAPIC_REDTBL(PIN));
	check((entry & 0x1ffff) == (IOREDTBL_LEVEL | VECTOR),
	      "pin 4 level, active high, unmasked, vector 0x44", &bad);

	/* THR empty and enabled: the line goes up and stays up until the
	 * second handler call reads IIR. */
	clear_on = 2;
	rt_sti();
	rt_outb(IER, IER_THRE);
	spin(100000);
	rt_cli();
	all_irr = remote_irr_seen[0] && remote_irr_seen[1];
	all_tmr = tmr_seen[0] && tmr_seen[1];
	check(count == 2,
	      "EOI with the line up: delivered again, once "
	      "cleared: no more",
	      &bad);
	check(all_irr, "remote IRR set in the handler", &bad);
	check(all_tmr, "TMR set for the level vector", &bad);
	check(!remote_irr(), "remote IRR clear after the last EOI", &bad);
	check((rt_inb(IIR) & 0x0f) == IIR_NO_INT, "COM1: no interrupt pending",
	      &bad);

	/* Masked: the level waits; unmasked: it comes. */
	rt_ioapic_write(IOAPIC_REDTBL(PIN),
			IOREDTBL_MASKED | IOREDTBL_LEVEL | VECTOR);
	clear_on = 3;
	rt_sti();
	rt_outb(IER, IER_THRE);
	spin(100000);
	rt_cli();
	check(count == 2, "masked: nothing delivered", &bad);
	rt_sti();
	rt_ioapic_write(IOAPIC_REDTBL(PIN), IOREDTBL_LEVEL | VECTOR);
	spin(100000);
	rt_cli();
	check(count == 3, "unmasked: the held level delivered once", &bad);
	check(!remote_irr(), "remote IRR clear again", &bad);

	/* Bad input: past the last register (0x3f), nothing changes. */
	rt_ioapic_write(0x40, 0xffffffff);
	(void)rt_ioapic_read(0x40);
	rt_ioapic_write(0xff, 0xffffffff);
	check((rt_ioapic_read(IOAPIC_REDTBL(PIN)) & 0x1ffff) ==
		      (IOREDTBL_LEVEL | VECTOR),
	      "writes past the last register change nothing", &bad);

	rt_ioapic_write(IOAPIC_REDTBL(PIN), IOREDTBL_MASKED);
	rt_printf("ioapic_level: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
