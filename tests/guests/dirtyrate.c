/*
 * dirtyrate: dirties a known amount of its memory when told, for
 * calc-dirty-rate (tests/integration/test_dirty.py). vCPU 0 takes a
 * region of boot RAM ("fill=MIB", default 192) and, in round r = 1, 2,
 * ..., writes a new value into every page of the next "burst=MIB"
 * (default 64) of it, going round the region, then prints
 *
 *     dirtyrate: round R wrote B MiB
 *
 * Round r starts when the doorbell slot of parity r appears at
 * bell_gpa[r % 2] (the test adds it, and removes the other), so the test
 * decides when the burst lands inside a measurement. Only the burst's
 * pages and a few of the guest's own (its stack, its page tables' A/D
 * bits) change meanwhile. The guest runs until it is stopped.
 */
#include "rt.h"

#define BELL_VA 0x010000000000ULL
#define ONES (~0ULL)

static const uint64_t bell_gpa[2] = { 0x300000000ULL, 0x300200000ULL };

/* The number after "name=" on the command line, or dflt. */
static uint64_t arg(const char *name, uint64_t dflt)
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

int guest_main(unsigned int cpu)
{
	uint64_t fill, burst, gpa, root, page = 0;
	volatile uint64_t *region;

	if (cpu != 0)
		return 0;
	fill = arg("fill", 192) << 8;
	burst = arg("burst", 64) << 8;
	if (burst == 0 || burst > fill) {
		rt_printf("dirtyrate: burst must be from 1 MiB to fill\n");
		return 1;
	}
	/* Fails the guest, saying so, when RAM is short. */
	gpa = rt_phys_alloc(fill * SIZE_4K, SIZE_2M);
	region = (volatile uint64_t *)gpa;
	root = pt_root_new();
	for (int b = 0; b < 2; b++)
		pt_map(root, BELL_VA + (uint64_t)b * SIZE_4K, bell_gpa[b],
		       SIZE_4K, PTE_W);
	rt_write_cr3(root);
	rt_printf("dirtyrate: ready (%lu MiB at %#lx)\n", fill >> 8, gpa);
	for (uint64_t r = 1;; r++) {
		volatile uint64_t *bell =
			(volatile uint64_t *)(BELL_VA + (r % 2) * SIZE_4K);

		while (*bell == ONES)
			rt_pause();
		for (uint64_t k = 0; k < burst; k++) {
			region[page * 512] = r << 32 | page;
			page = (page + 1) % fill;
		}
		rt_printf("dirtyrate: round %lu wrote %lu MiB\n", r,
			  burst >> 8);
	}
}
