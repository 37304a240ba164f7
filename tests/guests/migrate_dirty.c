/*
 * migrate_dirty: a guest that dirties its memory at a rate it paces
 * itself and measures how long it is ever stopped, for the dirty-limit
 * tests (tests/integration/test_migration.py) and the migration
 * benchmark (bench/migration.py), under mmud and under QEMU TCG alike.
 *
 * Arguments on the command line (defaults in brackets):
 *   fill=MIB     the region it fills and then dirties [16]
 *   rate=PAGES   pages a second it dirties, all vCPUs together; 0: as
 *                fast as it can [0]
 *   tsckhz=KHZ   the TSC's frequency, to pace and to report in us [2000000]
 *   report=MS    how often vCPU 0 reports [100]
 *
 * Every vCPU fills its stripe of the region (pages p with p % nr_vcpus
 * == its index; no word of it zero), then loops: it reads the TSC, keeps
 * the largest gap between two reads (a gap is the time the vCPU did not
 * run: a throttle, the switchover of a migration), and, when it is
 * behind its share of rate, writes the next page of its stripe: the
 * first word of the page changes, so every write dirties one whole page.
 * vCPU 0 prints a numbered report every report ms:
 *
 *     dirty: ready (N vcpus, M pages)
 *     dirty: hb K pages P gap G max M
 *
 * P: pages written by every vCPU since the fill, G: the largest gap of
 * any vCPU since the last report, M: since the fill, both in us. Each
 * page's first word holds how often it was written, plus one: when it
 * writes a page, a vCPU checks the page still holds the count it last
 * wrote there (a migration that lost a write would show), and prints
 * "dirty: MISMATCH ..." and fails if not.
 */
#include "rt.h"

static volatile unsigned int filled;
static volatile int failed;
static uint64_t region_gpa;
static volatile uint64_t region_pages;
static uint64_t written[RT_MAX_CPUS] __attribute__((aligned(64)));
static uint64_t gap_now[RT_MAX_CPUS]; /* since the last report */
static uint64_t gap_max[RT_MAX_CPUS]; /* since the fill */

static uint64_t arg(const char *name, uint64_t dflt)
{
	size_t n = strlen(name);
	const char *s = rt_boot.cmdline;

	for (; *s; s++)
		if ((s == rt_boot.cmdline || s[-1] == ' ') &&
		    !memcmp(s, name, n) && s[n] == '=') {
			uint64_t v = 0;

			for (s += n + 1; *s >= '0' && *s <= '9'; s++)
				v = v * 10 + (uint64_t)(*s - '0');
			return v;
		}
	return dflt;
}

static uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* *slot = max(*slot, v), against vCPU 0's exchange of it. */
static void atomic_max(uint64_t *slot, uint64_t v)
{
	uint64_t o = __atomic_load_n(slot, __ATOMIC_RELAXED);

	while (v > o &&
	       !__atomic_compare_exchange_n(slot, &o, v, false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

int guest_main(unsigned int cpu)
{
	unsigned int nr = rt_boot.nr_vcpus;
	uint64_t khz = arg("tsckhz", 2000000), rate = arg("rate", 0);
	uint64_t report = khz * arg("report", 100), next_report, hb = 0;
	uint64_t per_cpu_rate, start, prev, mine = 0, p, stripe;
	volatile uint64_t *region;

	if (!khz)
		khz = 1;
	if (cpu == 0) {
		uint64_t pages = arg("fill", 16) << 8;

		if (pages < nr)
			rt_fail("dirty: fill=%lu MiB is too small", pages >> 8);
		region_gpa = rt_phys_alloc(pages * SIZE_4K, SIZE_2M);
		__atomic_store_n(&region_pages, pages, __ATOMIC_RELEASE);
	}
	while (__atomic_load_n(&region_pages, __ATOMIC_ACQUIRE) == 0)
		rt_pause();
	region = (volatile uint64_t *)region_gpa;
	stripe = (region_pages - cpu + nr - 1) / nr;
	for (p = cpu; p < region_pages; p += nr)
		for (uint64_t w = 0; w < 512; w++)
			region[p * 512 + w] = w ? (p << 12 | w) : 1;
	__atomic_fetch_add(&filled, 1, __ATOMIC_SEQ_CST);
	while (filled < nr)
		rt_pause();
	if (cpu == 0)
		rt_printf("dirty: ready (%u vcpus, %lu pages)\n", nr,
			  region_pages);
	per_cpu_rate = rate / nr;
	start = prev = rdtsc();
	next_report = start + report;
	p = 0;
	while (!failed) {
		uint64_t now = rdtsc(), gap = now - prev;

		prev = now;
		if (gap > gap_now[cpu]) {
			atomic_max(&gap_now[cpu], gap);
			atomic_max(&gap_max[cpu], gap);
		}
		/* Behind its share (pages due = elapsed x rate)? */
		if (!per_cpu_rate ||
		    mine * khz * 1000 < (now - start) * per_cpu_rate) {
			uint64_t page = p * nr + cpu, want = mine / stripe + 1;
			volatile uint64_t *w0 = &region[page * 512];

			if (*w0 != want) {
				rt_printf("dirty: MISMATCH vcpu %u page %lu "
					  "holds %lu, wrote %lu\n",
					  cpu, page, *w0, want);
				failed = 1;
				break;
			}
			*w0 = want + 1;
			mine++;
			__atomic_store_n(&written[cpu], mine, __ATOMIC_RELAXED);
			if (++p == stripe)
				p = 0;
		}
		if (cpu == 0 && now >= next_report) {
			uint64_t total = 0, g = 0, m = 0;

			for (unsigned int i = 0; i < nr; i++) {
				uint64_t x = __atomic_exchange_n(
					&gap_now[i], 0, __ATOMIC_RELAXED);

				total += __atomic_load_n(&written[i],
							 __ATOMIC_RELAXED);
				g = x > g ? x : g;
				x = __atomic_load_n(&gap_max[i],
						    __ATOMIC_RELAXED);
				m = x > m ? x : m;
			}
			hb++;
			rt_printf("dirty: hb %lu pages %lu gap %lu max %lu\n",
				  hb, total, g * 1000 / khz, m * 1000 / khz);
			next_report += report;
			if (next_report < now)
				next_report = now + report;
			/* The report's own time is not a gap. */
			prev = rdtsc();
		}
	}
	if (cpu == 0)
		return 1;
	for (;;)
		rt_pause();
}
