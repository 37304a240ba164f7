/*
 * bench irq: interrupt latencies, measured by the guest with the TSC
 * (the same on both vCPUs: mmud's is the host's plus one offset per VM,
 * QEMU TCG's is the host's), on 2 vCPUs. One JSON line per figure with
 * the median and the 99th percentile of n samples, in TSC cycles
 * (bench/run_irq.py turns them into microseconds):
 * - ipi_rtt_running / ipi_rtt_halted: vCPU 0 sends a fixed IPI to vCPU
 *   1, whose handler sends one back; from the ICR write to vCPU 0's
 *   handler, with vCPU 1 spinning (IF = 1) or sleeping in `sti; hlt`;
 * - hlt_wake: the same IPIs to the sleeping vCPU 1, from vCPU 0's ICR
 *   write to vCPU 1's handler: how long a halted vCPU takes to wake;
 * - timer_running / timer_halted: the local APIC timer, one-shot 50 us
 *   ahead (1 GHz clock, divide 1), from its deadline (the TSC when the
 *   initial count was written, plus 50 us at tsc_khz, the host's TSC
 *   frequency the runner passes) to the handler, vCPU 0 spinning or
 *   halted. vCPU 1 spins meanwhile, so QEMU's runner never sees every
 *   vCPU halted.
 * Command line: n=SAMPLES (default 2000), tsc_khz=KHZ (required).
 */
#include "bench_guest.h"
#include "irq.h"

#define V_PING 0x40
#define V_PONG 0x41
#define V_TIMER 0x42
#define MAX_SAMPLES 20000
#define TIMER_NS 50000

enum mode { M_IDLE, M_SPIN, M_HALT, M_END };

static volatile unsigned int mode1; /* what vCPU 1 does */
static volatile uint64_t t_ping_seen, t_pong_seen, t_timer_seen;
static volatile unsigned int pongs, timers;
static uint64_t samples[MAX_SAMPLES];
static uint64_t wake[MAX_SAMPLES];

static void on_ping(struct rt_irq_frame *f)
{
	(void)f;
	t_ping_seen = bench_rdtsc();
	rt_apic_send(0, ICR_ASSERT | ICR_FIXED | V_PONG);
	rt_apic_eoi();
}

static void on_pong(struct rt_irq_frame *f)
{
	(void)f;
	t_pong_seen = bench_rdtsc();
	pongs++;
	rt_apic_eoi();
}

static void on_timer(struct rt_irq_frame *f)
{
	(void)f;
	t_timer_seen = bench_rdtsc();
	timers++;
	rt_apic_eoi();
}

/* Shell sort, then the figure's JSON line. */
static void report(const char *figure, uint64_t *v, unsigned int n)
{
	static const unsigned int gaps[] = { 1750, 701, 301, 132, 57,
					     23,   10,	4,   1 };

	for (unsigned int g = 0; g < sizeof(gaps) / sizeof(gaps[0]); g++)
		for (unsigned int i = gaps[g]; i < n; i++) {
			uint64_t x = v[i];
			unsigned int j = i;

			for (; j >= gaps[g] && v[j - gaps[g]] > x; j -= gaps[g])
				v[j] = v[j - gaps[g]];
			v[j] = x;
		}
	rt_printf("{\"figure\":\"%s\",\"samples\":%u,\"median_cycles\":%lu,"
		  "\"p99_cycles\":%lu}\n",
		  figure, n, v[n / 2], v[n - 1 - n / 100]);
}

static void wait_cycles(uint64_t c)
{
	uint64_t end = bench_rdtsc() + c;

	while (bench_rdtsc() < end)
		rt_pause();
}

static void set_mode1(unsigned int m)
{
	__atomic_store_n(&mode1, m, __ATOMIC_RELEASE);
	/* Wakes vCPU 1 from HLT to see it (no sample is running). */
	rt_apic_send(1, ICR_ASSERT | ICR_FIXED | 0x30);
}

static void ipis(unsigned int n, uint64_t tsc_khz, bool halted)
{
	set_mode1(halted ? M_HALT : M_SPIN);
	wait_cycles(tsc_khz); /* 1 ms: vCPU 1 settles */
	for (unsigned int i = 0; i < n; i++) {
		unsigned int before = pongs;
		uint64_t t0;

		/* Halted: give vCPU 1 time to reach HLT again (50 us). */
		if (halted)
			wait_cycles(tsc_khz / 20);
		t0 = bench_rdtsc();
		rt_apic_send(1, ICR_ASSERT | ICR_FIXED | V_PING);
		while (pongs == before)
			rt_pause();
		samples[i] = t_pong_seen - t0;
		wake[i] = t_ping_seen - t0;
	}
	report(halted ? "ipi_rtt_halted" : "ipi_rtt_running", samples, n);
	if (halted)
		report("hlt_wake", wake, n);
}

static void timer(unsigned int n, uint64_t tsc_khz, bool halted)
{
	uint64_t ahead = (uint64_t)TIMER_NS * tsc_khz / 1000000;

	rt_apic_write(APIC_TIMER_DCR, APIC_DCR_DIV1);
	rt_apic_write(APIC_LVT_TIMER, V_TIMER); /* one-shot */
	for (unsigned int i = 0; i < n; i++) {
		unsigned int before = timers;
		uint64_t a, b;

		rt_cli();
		a = bench_rdtsc();
		rt_apic_write(APIC_TIMER_ICR, TIMER_NS);
		b = bench_rdtsc();
		if (halted) {
			while (timers == before) {
				rt_sti_hlt();
				rt_cli();
			}
		} else {
			rt_sti();
			while (timers == before)
				rt_pause();
		}
		rt_sti();
		/* The deadline: the middle of the write, plus 50 us. */
		samples[i] = t_timer_seen - (a + (b - a) / 2 + ahead);
		if ((int64_t)samples[i] < 0)
			samples[i] = 0;
	}
	rt_apic_write(APIC_LVT_TIMER, APIC_LVT_MASKED);
	report(halted ? "timer_halted" : "timer_running", samples, n);
}

static void on_nudge(struct rt_irq_frame *f)
{
	(void)f;
	rt_apic_eoi();
}

int guest_main(unsigned int cpu)
{
	unsigned int n = (unsigned int)bench_arg("n", 2000);
	uint64_t tsc_khz = bench_arg("tsc_khz", 0);

	if (rt_boot.nr_vcpus != 2)
		rt_fail("bench irq: runs with 2 vcpus\n");
	if (!tsc_khz)
		rt_fail("bench irq: tsc_khz=KHZ missing from the command line\n");
	if (n > MAX_SAMPLES)
		n = MAX_SAMPLES;
	rt_irq_setup();
	rt_apic_enable();
	if (cpu == 0) {
		rt_irq_set_handler(V_PING, on_ping);
		rt_irq_set_handler(V_PONG, on_pong);
		rt_irq_set_handler(V_TIMER, on_timer);
		rt_irq_set_handler(0x30, on_nudge);
	}
	rt_barrier();
	if (cpu == 1) {
		for (;;) {
			unsigned int m =
				__atomic_load_n(&mode1, __ATOMIC_ACQUIRE);

			if (m == M_END)
				return 0;
			if (m == M_HALT) {
				rt_cli();
				if (__atomic_load_n(&mode1, __ATOMIC_ACQUIRE) ==
				    M_HALT)
					rt_sti_hlt();
			} else {
				rt_sti();
				rt_pause();
			}
		}
	}
	rt_sti();
	ipis(n, tsc_khz, false);
	ipis(n, tsc_khz, true);
	set_mode1(M_SPIN);
	timer(n, tsc_khz, false);
	timer(n, tsc_khz, true);
	set_mode1(M_END);
	return 0;
}
