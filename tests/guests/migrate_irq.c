/*
 * migrate_irq: a guest that lives on interrupts, for the migration tests
 * (tests/integration/test_migration.py, group irq). vCPU 0 runs the
 * local APIC timer in periodic mode every PERIOD (10 ms) and sleeps
 * with `sti; hlt` between ticks: only a timer interrupt wakes it. Every
 * TICKS_PER_HB ticks it prints a numbered heartbeat, "migrate_irq: hb N
 * ticks T", so heartbeats stop if the APIC's state (enabled, LVT timer,
 * the armed timer, ISR after the EOI) does not survive a switchover. It
 * also keeps a value in DR0 and DR7 and checks them at each heartbeat
 * (docs/MIGRATION.md, "vCPU interrupt state"), printing MISMATCH if they
 * changed. With more than one vCPU it stops vCPU 1 with an INIT IPI and
 * sends it one SIPI (which, without real mode, records it and starts
 * nothing): vCPU 1 must still wait for a SIPI after each hop.
 * Runs until stopped; other vCPUs return at once.
 */
#include "irq.h"

#define VECTOR 0x68
#define PERIOD 10000000 /* 10 ms of the APIC's 1 GHz clock */
#define TICKS_PER_HB 5
#define DR0_VALUE 0x0000123456789abcULL
#define DR7_VALUE 0x0000000000000402ULL /* G0, bit 10 reads 1 */
#define SIPI_VECTOR 0x9a

static volatile unsigned int ticks;

static void tick(struct rt_irq_frame *f)
{
	(void)f;
	ticks++;
	rt_apic_eoi();
}

static uint64_t read_dr0(void)
{
	uint64_t v;

	__asm__ volatile("mov %%dr0, %0" : "=r"(v));
	return v;
}

static uint64_t read_dr7(void)
{
	uint64_t v;

	__asm__ volatile("mov %%dr7, %0" : "=r"(v));
	return v;
}

int guest_main(unsigned int cpu)
{
	unsigned int hb = 0, next, seen;

	if (cpu != 0)
		return 0;
	__asm__ volatile("mov %0, %%dr0" : : "r"(DR0_VALUE));
	__asm__ volatile("mov %0, %%dr7" : : "r"(DR7_VALUE));
	rt_irq_setup();
	rt_apic_enable();
	rt_irq_set_handler(VECTOR, tick);
	rt_apic_write(APIC_TIMER_DCR, APIC_DCR_DIV1);
	rt_apic_write(APIC_LVT_TIMER, APIC_TIMER_PERIODIC | VECTOR);
	rt_apic_write(APIC_TIMER_ICR, PERIOD);
	if (rt_boot.nr_vcpus > 1) {
		rt_apic_send(1, ICR_INIT | ICR_ASSERT);
		rt_apic_send(1, (6u << 8) | ICR_ASSERT | SIPI_VECTOR);
	}
	rt_printf("migrate_irq: ready\n");
	next = TICKS_PER_HB;
	for (;;) {
		rt_cli();
		while (ticks < next) {
			rt_sti_hlt();
			rt_cli();
		}
		/* Read before interrupts are on again: on a busy host the
		 * next tick may come before the print reads it. */
		seen = ticks;
		rt_sti();
		next += TICKS_PER_HB;
		hb++;
		if (read_dr0() != DR0_VALUE || read_dr7() != DR7_VALUE)
			rt_printf("migrate_irq: MISMATCH dr0 %#lx dr7 %#lx\n",
				  read_dr0(), read_dr7());
		rt_printf("migrate_irq: hb %u ticks %u\n", hb, seen);
	}
}
