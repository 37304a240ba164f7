/*
 * apic_tscdl: the local APIC timer in TSC-deadline mode (SDM vol. 3,
 * 10.5.4.1), mmud only (QEMU 7.2's TCG refuses it). ROUNDS one-shots at
 * random deadlines 1000 to 2^20 TSC cycles ahead, half waited for
 * running (a PAUSE loop), half halted (`sti; hlt`): the handler reads
 * the TSC first thing and must find it at or past the deadline (never
 * early), exactly one interrupt per deadline, and IA32_TSC_DEADLINE
 * reads 0 once it fired (the timer disarms itself). Also: a deadline
 * already past fires at once; writing 0 disarms an armed one; in this
 * mode the current count reads 0 and a write of the initial count is
 * ignored.
 */
#include "irq.h"

#define ROUNDS 2000
#define VECTOR 0x61

static volatile unsigned int fired;
static volatile uint64_t fired_tsc;

static void on_deadline(struct rt_irq_frame *f)
{
	uint64_t now = rt_rdtsc();

	(void)f;
	fired_tsc = now;
	fired++;
	rt_apic_eoi();
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void check(bool ok, const char *what, int *bad)
{
	rt_printf("apic_tscdl: %s: %s\n", what, ok ? "ok" : "FAIL");
	*bad += !ok;
}

static void spin(unsigned long n)
{
	for (volatile unsigned long i = 0; i < n; i++)
		rt_pause();
}

int guest_main(unsigned int cpu)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	unsigned int early = 0, extra = 0, not_cleared = 0;
	uint32_t r[4];
	int bad = 0;

	if (cpu != 0)
		return 0;
	rt_cpuid(1, 0, r);
	if (!(r[2] & (1u << 24)))
		rt_fail("apic_tscdl: CPUID reports no TSC-deadline timer\n");
	rt_irq_setup();
	rt_apic_enable();
	rt_irq_set_handler(VECTOR, on_deadline);
	rt_apic_write(APIC_LVT_TIMER, APIC_TIMER_TSC_DEADLINE | VECTOR);

	for (unsigned int i = 0; i < ROUNDS; i++) {
		uint64_t ahead = 1000 + xorshift(&seed) % ((1u << 20) - 1000);
		uint64_t deadline;
		unsigned int before = fired;

		rt_cli();
		deadline = rt_rdtsc() + ahead;
		rt_wrmsr(MSR_TSC_DEADLINE, deadline);
		if (i & 1) {
			while (fired == before) {
				rt_sti_hlt();
				rt_cli();
			}
		} else {
			rt_sti();
			while (fired == before)
				rt_pause();
			rt_cli();
		}
		early += fired_tsc < deadline;
		extra += fired != before + 1;
		not_cleared += rt_rdmsr(MSR_TSC_DEADLINE) != 0;
	}
	rt_printf("apic_tscdl: %u deadlines, half waited for running, half "
		  "halted\n",
		  ROUNDS);
	check(!early, "none fired before its deadline", &bad);
	check(!extra, "each fired once", &bad);
	check(!not_cleared, "IA32_TSC_DEADLINE reads 0 after firing", &bad);

	/* A deadline in the past fires at once. */
	fired = 0;
	rt_sti();
	rt_wrmsr(MSR_TSC_DEADLINE, 1);
	spin(1000);
	rt_cli();
	check(fired == 1, "a deadline in the past fires at once", &bad);

	/* Writing 0 disarms: nothing comes by twice the deadline. */
	fired = 0;
	{
		uint64_t d = rt_rdtsc() + (1ULL << 24);

		rt_wrmsr(MSR_TSC_DEADLINE, d);
		rt_wrmsr(MSR_TSC_DEADLINE, 0);
		rt_sti();
		while (rt_rdtsc() < d + (1ULL << 24))
			rt_pause();
		rt_cli();
	}
	check(fired == 0, "writing 0 disarms", &bad);

	/* The count registers have no part in this mode. */
	rt_apic_write(APIC_TIMER_ICR, 1000);
	spin(10000);
	check(rt_apic_read(APIC_TIMER_CCR) == 0 && fired == 0,
	      "initial count ignored, current count 0", &bad);

	rt_apic_write(APIC_LVT_TIMER, APIC_LVT_MASKED);
	rt_printf("apic_tscdl: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
