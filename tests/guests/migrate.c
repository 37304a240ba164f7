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
 *
 * With "hot=1", vCPU 0 also watches a hot-plug window of HOT_PAGES pages
 * at HOT_GPA (8 GiB; docs/GUEST-ABI.md, "Unbacked addresses": all ones
 * while no memslot is there). Once a slot appears (zeros), it fills
 * every page with its own pattern and prints "migrate: hot ready"; from
 * then on, each round it rewrites one page with the round mixed in
 * (keeping which round wrote each page) and checks the whole window
 * against that model, printing "migrate: hot verified N" after the N-th
 * check: a migration must carry the slot's pages, and the ones written
 * during it, like boot RAM's.
 */
#include "rt.h"

#define HOT_PAGES 16 /* per vCPU */
#define HOT_GPA 0x200000000ULL /* 8 GiB: the hot-plug window */
#define HOT_SLOT_PAGES 256
#define HOT_VA 0x008000000000ULL /* PML4 entry 1 */
#define ONES (~0ULL)

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

/* The number after "name=" on the command line, or dflt. */
static uint64_t arg_num(const char *name, uint64_t dflt)
{
	const char *s = rt_boot.cmdline;
	size_t len = strlen(name);

	for (; *s; s++)
		if ((s == rt_boot.cmdline || s[-1] == ' ') &&
		    !memcmp(s, name, len) && s[len] == '=') {
			uint64_t n = 0;

			for (s += len + 1; *s >= '0' && *s <= '9'; s++)
				n = n * 10 + (uint64_t)(*s - '0');
			return n;
		}
	return dflt;
}

/* The hot window (vCPU 0 only): which round last wrote each page, 0
 * for the fill; hot_state: 0 off, -1 no slot yet, 1 filled. */
static uint64_t hot_round[HOT_SLOT_PAGES];
static int hot_state;
static uint64_t hot_checks;

static uint64_t hot_word(uint64_t p, uint64_t w, uint64_t r)
{
	return mix(HOT_GPA + p * SIZE_4K + w * 8 + (r << 40));
}

/* One round of the hot window: 0, or 1 after a mismatch (printed). */
static int hot_round_once(uint64_t round)
{
	volatile uint64_t *win = (volatile uint64_t *)HOT_VA;

	if (hot_state < 0) {
		if (win[0] == ONES)
			return 0; /* no slot yet */
		for (uint64_t p = 0; p < HOT_SLOT_PAGES; p++)
			for (uint64_t w = 0; w < 512; w++)
				win[p * 512 + w] = hot_word(p, w, 0);
		hot_state = 1;
		rt_printf("migrate: hot ready (%u pages at %#lx)\n",
			  HOT_SLOT_PAGES, (uint64_t)HOT_GPA);
		return 0;
	}
	{
		uint64_t p = round % HOT_SLOT_PAGES;

		for (uint64_t w = 0; w < 512; w++)
			win[p * 512 + w] = hot_word(p, w, round);
		hot_round[p] = round;
	}
	for (uint64_t p = 0; p < HOT_SLOT_PAGES; p++)
		for (uint64_t w = 0; w < 512; w++) {
			uint64_t want = hot_word(p, w, hot_round[p]);
			uint64_t got = win[p * 512 + w];

			if (got != want) {
				rt_printf("migrate: MISMATCH hot gpa %#lx want "
					  "%#lx got %#lx\n",
					  (uint64_t)(HOT_GPA + p * SIZE_4K +
						     w * 8),
					  want, got);
				return 1;
			}
		}
	hot_checks++;
	rt_printf("migrate: hot verified %lu\n", hot_checks);
	return 0;
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

	if (cpu == 0 && arg_num("hot", 0)) {
		/* Its own root: the boot identity map, and the window. */
		uint64_t root = pt_root_new();

		for (uint64_t p = 0; p < HOT_SLOT_PAGES; p++)
			pt_map(root, HOT_VA + p * SIZE_4K,
			       HOT_GPA + p * SIZE_4K, SIZE_4K, PTE_W);
		rt_write_cr3(root);
		hot_state = -1; /* watching, no slot yet */
	}
	if (cpu == 0) {
		uint64_t pages = arg_num("fill", 16) << 8;

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
		if (cpu == 0 && hot_state && hot_round_once(round)) {
			failed = 1;
			return 1;
		}
		if (cpu == 0) {
			hb++;
			sum += mix(hb);
			rt_printf("migrate: hb %lu sum %#lx\n", hb, sum);
		}
	}
}
