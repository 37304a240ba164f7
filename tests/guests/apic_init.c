/*
 * apic_init: INIT and SIPI between vCPUs (SDM vol. 3, 8.4 and 10.6.1).
 * vCPU 1 counts in a loop; vCPU 0 sends it INIT (then the INIT level
 * de-assert and two SIPIs, as an operating system starting an AP does)
 * and checks that it stopped counting, and that a fixed IPI sent to it
 * afterwards is not taken. The SIPI vector's page holds `cli; hlt` in
 * case an implementation starts the vCPU in real mode (QEMU does; mmud
 * records the SIPI and leaves the vCPU waiting), so the transcript is
 * the same either way.
 *
 * The command line picks what follows: "wait" keeps vCPU 0 running
 * (printing each NMI it takes) for the QMP tests (test_interrupts.py:
 * x-query-lapic, query-cpus-fast, inject-nmi); "sleep" does the same
 * from `sti; hlt`, woken by a slow periodic timer; "halt" ends with
 * `cli; hlt` on vCPU 0, so that every vCPU is halted or waiting for a
 * SIPI and nothing can wake any: the VM has halted for good. Otherwise
 * it exits through the debug-exit port.
 */
#include "irq.h"

#define IPI_VECTOR 0x48
#define SIPI_VECTOR 0x9a
#define TIMER_VECTOR 0x49

static volatile uint64_t counter;
static volatile unsigned int started, ipis, nmis;

static void ipi_handler(struct rt_irq_frame *f)
{
	(void)f;
	ipis++;
	rt_apic_eoi();
}

static void timer_handler(struct rt_irq_frame *f)
{
	(void)f;
	rt_apic_eoi();
}

static void nmi_handler(struct rt_irq_frame *f)
{
	(void)f;
	nmis++;
}

static bool has_word(const char *s, const char *w)
{
	size_t n = strlen(w);

	for (; *s; s++)
		if (!memcmp(s, w, n) && (s[n] == ' ' || s[n] == '\0'))
			return true;
	return false;
}

static void spin(unsigned int n)
{
	for (volatile unsigned int i = 0; i < n; i++)
		rt_pause();
}

int guest_main(unsigned int cpu)
{
	uint64_t before;
	unsigned int seen = 0;

	rt_irq_set_handler(IPI_VECTOR, ipi_handler);
	rt_irq_set_handler(2, nmi_handler);
	rt_irq_set_handler(TIMER_VECTOR, timer_handler);
	rt_irq_setup();
	rt_apic_enable();
	if (cpu == 1) {
		started = 1;
		rt_sti();
		for (;;)
			counter++;
	}
	if (cpu != 0)
		for (;;)
			__asm__ volatile("cli; hlt");

	/* Real-mode `cli; hlt; jmp $-1` where a SIPI would start. */
	*(volatile uint32_t *)(SIPI_VECTOR * 0x1000UL) = 0xfdebf4fa;
	while (!started || counter < 1000)
		rt_pause();
	rt_apic_send(1, ICR_INIT | ICR_ASSERT);
	rt_apic_send(1, ICR_INIT | (1u << 15)); /* level de-assert */
	rt_apic_send(1, (6u << 8) | ICR_ASSERT | SIPI_VECTOR);
	spin(100000);
	rt_apic_send(1, (6u << 8) | ICR_ASSERT | SIPI_VECTOR);
	spin(100000);
	before = counter;
	spin(1000000);
	rt_printf("apic_init: vcpu 1 stopped counting after INIT: %s\n",
		  counter == before ? "yes" : "no");
	rt_apic_send(1, ICR_ASSERT | IPI_VECTOR);
	spin(1000000);
	rt_printf("apic_init: a fixed IPI to it afterwards taken: %s\n",
		  ipis ? "yes" : "no");
	rt_printf("apic_init: ICR idle: %s\n",
		  rt_apic_read(APIC_ICR_LO) & ICR_PENDING ? "no" : "yes");

	if (has_word(rt_boot.cmdline, "wait")) {
		rt_printf("apic_init: waiting\n");
		for (;;) {
			if (nmis != seen) {
				seen = nmis;
				rt_printf("apic_init: NMI %u\n", seen);
			}
			rt_pause();
		}
	}
	if (has_word(rt_boot.cmdline, "sleep")) {
		/* Every 50 ms (the timer counts at 1 GHz). */
		rt_apic_write(APIC_TIMER_DCR, APIC_DCR_DIV1);
		rt_apic_write(APIC_LVT_TIMER,
			      TIMER_VECTOR | APIC_TIMER_PERIODIC);
		rt_apic_write(APIC_TIMER_ICR, 50000000);
		rt_printf("apic_init: sleeping\n");
		for (;;) {
			rt_sti_hlt();
			rt_cli();
			if (nmis != seen) {
				seen = nmis;
				rt_printf("apic_init: NMI %u\n", seen);
			}
		}
	}
	if (has_word(rt_boot.cmdline, "halt")) {
		rt_printf("apic_init: halting\n");
		for (;;)
			__asm__ volatile("cli; hlt");
	}
	return 0;
}
