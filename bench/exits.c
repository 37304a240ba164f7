/*
 * The exits guest of bench/: what a guest exit and re-entry costs each of
 * several vCPUs when all of them exit at once (docs/SEEDS.md, 000: the
 * memslot read side is left and re-entered at every exit, so its cost is
 * paid per exit by every vCPU). Every vCPU runs "n=" (default 200000) OUT
 * instructions to port 0x80, which no device claims, between two
 * barriers, reading the TSC around its own loop, after 1000 untimed ones;
 * then each prints one JSON line with its count and cycles.
 */
#include "bench_guest.h"

#define PORT 0x80
#define WARMUP 1000

static volatile uint64_t cycles[RT_MAX_CPUS];

int guest_main(unsigned int cpu)
{
	uint64_t n = bench_arg("n", 200000), t0, t1;

	for (uint64_t i = WARMUP; i; i--)
		__asm__ volatile("outb %%al, %0" ::"i"(PORT), "a"(0));
	rt_barrier();
	t0 = bench_rdtsc();
	for (uint64_t i = n; i; i--)
		__asm__ volatile("outb %%al, %0" ::"i"(PORT), "a"(0));
	t1 = bench_rdtsc();
	cycles[cpu] = t1 - t0;
	rt_barrier();
	if (cpu == 0)
		for (unsigned int c = 0; c < rt_boot.nr_vcpus; c++)
			rt_printf("{\"figure\":\"exits\",\"cpu\":%u,"
				  "\"vcpus\":%u,\"count\":%lu,"
				  "\"cycles\":%lu}\n",
				  c, rt_boot.nr_vcpus, n, cycles[c]);
	return 0;
}
