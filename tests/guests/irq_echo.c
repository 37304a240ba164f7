/*
 * irq_echo: echo.c's line echo, driven by COM1's receive interrupt
 * instead of polling: IER enables "received data available" (16550
 * datasheet), the FIFOs are on (FCR), and I/O APIC pin 4 (COM1,
 * docs/GUEST-ABI.md) is routed edge-triggered to vector 0x24 on APIC 0.
 * The handler drains RBR while LSR.DR is set into a ring buffer (and,
 * when the ring is full, turns the receive interrupt off until the main
 * loop has made room: flow control) and EOIs; the main loop sleeps in
 * `sti; hlt` while the buffer is empty, so the vCPU is halted whenever
 * it waits for input. Lines work as echo_lines.h says, each echoed as
 * "irq_echo: <line>"; "sum" also says whether interrupts brought them. The integration test (tests/integration/
 * test_irq_echo.py) types into mmud's console; QEMU's runner has no
 * input, so this guest has no transcript test.
 */
#include "echo_lines.h"
#include "irq.h"

#define COM1 0x3f8
#define RBR COM1
#define IER (COM1 + 1)
#define IIR (COM1 + 2)
#define FCR (COM1 + 2)
#define LSR (COM1 + 5)
#define LSR_DR 0x01
#define IER_RDA 0x01
#define VECTOR 0x24
#define PIN 4
#define RING 4096 /* a power of two */

static volatile uint8_t ring[RING];
static volatile unsigned int head, tail; /* head: handler, tail: main */
static volatile unsigned int interrupts;
/* The ring was full: the handler turned the receive interrupt off and
 * left the rest in COM1, whose own queue then fills and makes the
 * console hold back (flow control); the main loop turns it on again
 * once the ring is half empty. */
static volatile bool throttled;

static void on_com1(struct rt_irq_frame *f)
{
	(void)f;
	interrupts++;
	while (rt_inb(LSR) & LSR_DR) {
		if (head - tail == RING) {
			rt_outb(IER, 0);
			throttled = true;
			break;
		}
		ring[head++ % RING] = rt_inb(RBR);
	}
	rt_apic_eoi();
}

/* The next byte: sleeps in HLT until the handler has put one in. */
static char getc_irq(void)
{
	char c;

	rt_cli();
	while (head == tail) {
		rt_sti_hlt();
		rt_cli();
	}
	c = (char)ring[tail % RING];
	tail++;
	if (throttled && head - tail <= RING / 2) {
		/* With data waiting, COM1 raises its line again: a new
		 * edge on pin 4. */
		throttled = false;
		rt_outb(IER, IER_RDA);
	}
	rt_sti();
	return c;
}

static const char *sum_note(void)
{
	return interrupts ? "by receive interrupts" : "without an interrupt";
}

int guest_main(unsigned int cpu)
{
	static const struct echo_lines e = { .name = "irq_echo",
					     .getc = getc_irq,
					     .sum_note = sum_note };

	if (cpu != 0)
		return 0;
	rt_irq_setup();
	rt_apic_enable();
	rt_irq_set_handler(VECTOR, on_com1);
	rt_outb(IER, 0);
	rt_outb(FCR, 0x07); /* FIFOs on and cleared, trigger at 1 byte */
	if ((rt_inb(IIR) & 0xc0) != 0xc0)
		rt_fail("irq_echo: IIR %#x without the FIFO-enabled bits\n",
			rt_inb(IIR));
	rt_ioapic_route(PIN, VECTOR, 0); /* edge, active high */
	rt_outb(IER, IER_RDA);
	rt_printf("irq_echo: ready\n");
	return echo_lines_run(&e);
}
