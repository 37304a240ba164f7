/*
 * apic_periodic: the local APIC timer in periodic mode at 1 kHz (divide 1,
 * initial count 10^6 of its 1 GHz clock) for 2000 ticks: 1000 with the
 * vCPU running (a PAUSE loop), 400 with it halted between ticks
 * (`sti; hlt`), 600 running again. The transcript is the tick counts;
 * the time is checked by the test (tests/guests/timed-guest.py) against
 * host time: the lines "apic_periodic: start" and "apic_periodic: 2000
 * ticks" must come 2 s apart within 5%, counting the ticks a loaded host
 * made the guest miss (found by the guest's TSC, which runs at the
 * host's rate under mmud and QEMU alike), and the timer's period, in
 * host time through the TSC, must be 1 ms within 5%. The halted stretch is shorter than the
 * QEMU runner's 0.5 s between looks for a halted guest
 * (docs/REFERENCE-RUNNERS.md, "qemu-run"), so it never looks stopped.
 * Also: the current count stays within the initial count and reloads
 * (a periodic timer never rests at 0), and masking the LVT stops the
 * ticks.
 */
#include "irq.h"

#define VECTOR 0x70
#define PERIOD 1000000 /* 1 ms at 1 GHz */

#define TICKS 2000

static volatile unsigned int ticks;
static volatile unsigned int taken_if_clear;
static uint64_t tsc_at[TICKS + 1];

static void tick(struct rt_irq_frame *f)
{
	if (!(f->rflags & 0x200))
		taken_if_clear++;
	if (ticks < TICKS)
		tsc_at[ticks] = rt_rdtsc();
	ticks++;
	rt_apic_eoi();
}

/* The median of the TSC intervals between ticks: the period in TSC
 * cycles, whatever ticks a loaded host made the guest miss. */
static uint64_t median_interval(void)
{
	static uint64_t d[TICKS];
	unsigned int n = TICKS - 1;

	for (unsigned int i = 0; i < n; i++)
		d[i] = tsc_at[i + 1] - tsc_at[i];
	/* Insertion sort: 2000 numbers, once. */
	for (unsigned int i = 1; i < n; i++) {
		uint64_t x = d[i];
		unsigned int j = i;

		for (; j > 0 && d[j - 1] > x; j--)
			d[j] = d[j - 1];
		d[j] = x;
	}
	return d[n / 2];
}

/*
 * The line timed-guest.py reads (its "~ " lines are not transcript):
 * the TSC cycles from "start" to the last tick, the median period in
 * TSC cycles, and how many periods passed without a tick (a tick
 * coalesced while the vCPU did not run: the host was busy). With the
 * host time between the two lines the script gets the TSC's rate and
 * from it the timer's period in host time.
 */
static void report_timing(uint64_t start)
{
	uint64_t med = median_interval(), missed = 0;

	for (unsigned int i = 0; i + 1 < TICKS; i++) {
		uint64_t d = tsc_at[i + 1] - tsc_at[i];

		missed += (d + med / 2) / med - 1;
	}
	rt_printf("~ tsc_elapsed %lu tsc_period %lu missed %lu\n",
		  tsc_at[TICKS - 1] - start, med, missed);
}

int guest_main(unsigned int cpu)
{
	unsigned int zero_reads = 0, out_of_range = 0, after_mask;
	uint64_t start;
	int bad = 0;

	if (cpu != 0)
		return 0;
	rt_irq_setup();
	rt_apic_enable();
	rt_irq_set_handler(VECTOR, tick);
	rt_apic_write(APIC_TIMER_DCR, APIC_DCR_DIV1);
	rt_apic_write(APIC_LVT_TIMER, APIC_TIMER_PERIODIC | VECTOR);
	rt_printf("apic_periodic: start\n");
	start = rt_rdtsc();
	rt_apic_write(APIC_TIMER_ICR, PERIOD);
	rt_sti();
	while (ticks < 1000) {
		uint32_t c = rt_apic_read(APIC_TIMER_CCR);

		zero_reads += c == 0;
		out_of_range += c > PERIOD;
		rt_pause();
	}
	while (ticks < 1400)
		rt_sti_hlt();
	while (ticks < TICKS)
		rt_pause();
	rt_printf("apic_periodic: %u ticks\n", TICKS);
	rt_apic_write(APIC_LVT_TIMER,
		      APIC_LVT_MASKED | APIC_TIMER_PERIODIC | VECTOR);
	after_mask = ticks;
	for (volatile unsigned long i = 0; i < 2000000; i++)
		rt_pause();
	rt_cli();
	report_timing(start);
	rt_printf("apic_periodic: current count never 0 and never above the "
		  "initial count: %s\n",
		  zero_reads < 10 && !out_of_range ? "ok" : "FAIL");
	bad += zero_reads >= 10 || out_of_range;
	rt_printf("apic_periodic: masked, at most one tick after: %s\n",
		  ticks - after_mask <= 1 ? "ok" : "FAIL");
	bad += ticks - after_mask > 1;
	rt_printf("apic_periodic: no tick with IF = 0: %s\n",
		  taken_if_clear ? "FAIL" : "ok");
	bad += taken_if_clear != 0;
	rt_apic_write(APIC_TIMER_ICR, 0);
	rt_printf("apic_periodic: %s\n", bad ? "FAIL" : "PASS");
	return bad;
}
