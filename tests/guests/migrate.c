/*
 * migrate: a guest that notices when its memory is not what it wrote.
 * The control plane may stop it, write-protect its pages for dirty
 * logging, move it between processes: none of that may change a byte.
 *
 * Every vCPU fills its stripe of a region of boot RAM (pages p with
 * p % nr_vcpus == its index) with a pattern that has no zero word (so no
 * page of it is a zero page), then loops: it rewrites a hot set of its
 * pages with the round number mixed in, keeping the model of what each
 * page holds (each hot page must still hold the last round's contents
 * when it rewrites it), reads its whole stripe back against that model
 * and checks that its TSC did not go back. vCPU 0 prints a numbered
 * heartbeat after each of its rounds with a running checksum of the
 * heartbeat numbers (sum of mix(k) for k = 1..n, mod 2^64), which a
 * test recomputes on its own:
 *
 *     migrate: ready (N vcpus, M pages)
 *     migrate: hb 1 sum 0x...
 *
 * A mismatch prints the vCPU, the address and both values and fails the
 * guest. The region is "fill=MIB" MiB (default 16) of boot RAM the
 * runtime allocates. The guest runs until it is stopped.
 */
#include "rt.h"

#define HOT_PAGES 16 /* per vCPU */

static volatile unsigned int filled;
static volatile int failed;
/* Set by vCPU 0 before the others read them (region_pages last). */
static uint64_t region_gpa;
static volatile uint64_t region_pages;

/* A 64-bit mix with no fixed point at zero: never returns 0. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x | 1;
}

static uint64_t fill_mib(void)
{
	const char *s = rt_boot.cmdline;

	for (; *s; s++)
		if ((s == rt_boot.cmdline || s[-1] == ' ') &&
		    !memcmp(s, "fill=", 5)) {
			uint64_t n = 0;

			for (s += 5; *s >= '0' && *s <= '9'; s++)
				n = n * 10 + (uint64_t)(*s - '0');
			return n;
		}
	return 16;
}

/* What word w of page p holds after round r of the page's owner (0:
 * the fill). */
static uint64_t expected(uint64_t p, uint64_t w, uint64_t r)
{
	uint64_t a = region_gpa + p * SIZE_4K + w * 8;

	return mix(a ^ (r << 48));
}

/* Page i of cpu's hot set. */
static uint64_t hot_page(unsigned int cpu, unsigned int nr, unsigned int i)
{
	uint64_t stripe = region_pages / nr;

	return (uint64_t)i * (stripe / HOT_PAGES) * nr + cpu;
}

static bool is_hot(uint64_t p, unsigned int cpu, unsigned int nr)
{
	for (unsigned int i = 0; i < HOT_PAGES; i++)
		if (hot_page(cpu, nr, i) == p)
			return true;
	return false;
}

static uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static void mismatch(unsigned int cpu, uint64_t p, uint64_t w, uint64_t want,
		     uint64_t got)
{
	rt_printf("migrate: MISMATCH vcpu %u gpa %#lx want %#lx got %#lx\n",
		  cpu, (uint64_t)(region_gpa + p * SIZE_4K + w * 8), want, got);
	failed = 1;
}

int guest_main(unsigned int cpu)
{
	unsigned int nr = rt_boot.nr_vcpus;
	volatile uint64_t *region;
	uint64_t round = 0, hb = 0, sum = 0, tsc = 0;

	if (cpu == 0) {
		uint64_t pages = fill_mib() << 8;

		if (pages < (uint64_t)HOT_PAGES * nr) {
			rt_printf("migrate: fill=%lu MiB is too small\n",
				  pages >> 8);
			return 1;
		}
		/* Fails the guest, saying so, when RAM is short. */
		region_gpa = rt_phys_alloc(pages * SIZE_4K, SIZE_2M);
		__atomic_store_n(&region_pages, pages, __ATOMIC_RELEASE);
	}
	while (__atomic_load_n(&region_pages, __ATOMIC_ACQUIRE) == 0)
		rt_pause();
	region = (volatile uint64_t *)region_gpa;
	for (uint64_t p = cpu; p < region_pages; p += nr)
		for (uint64_t w = 0; w < 512; w++)
			region[p * 512 + w] = expected(p, w, 0);
	__atomic_fetch_add(&filled, 1, __ATOMIC_SEQ_CST);
	while (filled < nr)
		rt_pause();
	if (cpu == 0)
		rt_printf("migrate: ready (%u vcpus, %lu pages)\n", nr,
			  region_pages);

	for (;;) {
		uint64_t now = rdtsc();

		/* Its TSC never goes back, here or after a migration (the
		 * destination goes on from the value the source saved). */
		if (now < tsc) {
			rt_printf("migrate: MISMATCH vcpu %u tsc %#lx after "
				  "%#lx\n",
				  cpu, now, tsc);
			failed = 1;
		}
		tsc = now;
		round++;
		for (unsigned int i = 0; i < HOT_PAGES && !failed; i++) {
			uint64_t p = hot_page(cpu, nr, i);

			/* What the last round wrote must still be there
			 * (a page migrated before its last write and not
			 * sent again would hold an older round). */
			for (uint64_t w = 0; w < 512; w++) {
				uint64_t want = expected(p, w, round - 1);
				uint64_t got = region[p * 512 + w];

				if (got != want) {
					mismatch(cpu, p, w, want, got);
					break;
				}
			}
			for (uint64_t w = 0; w < 512; w++)
				region[p * 512 + w] = expected(p, w, round);
		}
		for (uint64_t p = cpu; p < region_pages && !failed; p += nr) {
			uint64_t r = is_hot(p, cpu, nr) ? round : 0;

			for (uint64_t w = 0; w < 512; w++) {
				uint64_t want = expected(p, w, r);
				uint64_t got = region[p * 512 + w];

				if (got != want) {
					mismatch(cpu, p, w, want, got);
					break;
				}
			}
		}
		if (failed) {
			if (cpu == 0)
				return 1;
			for (;;)
				rt_pause();
		}
		if (cpu == 0) {
			hb++;
			sum += mix(hb);
			rt_printf("migrate: hb %lu sum %#lx\n", hb, sum);
		}
	}
}
