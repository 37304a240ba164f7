/*
 * The first-touch guest of bench/: the cost of the first access to a
 * guest page, which under mmud is a shadow page fault (guest walk, shadow
 * page and spte, the host page behind it) and under KVM here the same
 * done by KVM. At CPL0 it maps two regions for CPL3 (user, writable): n4k
 * 4 KiB pages ("n4k=", default 4096) and n2m 2 MiB pages ("n2m=", default
 * 32), on RAM nothing has touched. At CPL3 it first touches a separate
 * warm-up region (untimed), then writes one quadword in each page of a
 * region, reading the time stamp counter before and after the loop, then
 * does the same again (pages now mapped: the loop's own cost). It prints
 * one JSON line per region; bench/run.py turns cycles into figures.
 *
 * With "hostwarm=1" it first writes, at CPL0 through the boot identity
 * map, the very words the timed loop will write: the host memory behind
 * them is then allocated (the host's own page fault is paid), but the
 * CPL3 mapping of the region is still untouched, so the timed loop
 * measures the shadow MMU's part of a first touch alone.
 */
#include "bench_guest.h"

#define WARM_VA 0x00c000000000ULL /* PML4 entry 24 */
#define WARM_PAGES 256
#define SMALL_VA 0x008000000000ULL /* PML4 entry 16 */
#define LARGE_VA 0x010000000000ULL /* PML4 entry 32 */

/* arg: the user alias of struct run. */
struct run {
	uint64_t va, npages, stride;
	uint64_t first, again; /* cycles */
};

RT_USER static void touch(uint64_t arg)
{
	struct run *r = (struct run *)arg;
	uint64_t va = r->va, n = r->npages, stride = r->stride, t0, t1, t2;

	t0 = bench_rdtsc();
	for (uint64_t i = 0; i < n; i++)
		*(volatile uint64_t *)(va + i * stride) = i;
	t1 = bench_rdtsc();
	for (uint64_t i = 0; i < n; i++)
		*(volatile uint64_t *)(va + i * stride) = ~i;
	t2 = bench_rdtsc();
	r->first = t1 - t0;
	r->again = t2 - t1;
}

static struct run run RT_USER_DATA;

static void measure(const char *figure, uint64_t va, uint64_t npages,
		    uint64_t stride)
{
	run = (struct run){ .va = va, .npages = npages, .stride = stride };
	if (rt_user_run(touch, rt_user_va(&run)) != 0)
		rt_fail("touch: faulted at CPL3 (vector %lu, cr2 %#lx)\n",
			rt_last_fault()->vector, rt_last_fault()->cr2);
	rt_printf("{\"figure\":\"%s\",\"pages\":%lu,\"first_cycles\":%lu,"
		  "\"again_cycles\":%lu}\n",
		  figure, npages, run.first, run.again);
}

int guest_main(unsigned int cpu)
{
	uint64_t n4k = bench_arg("n4k", 4096), n2m = bench_arg("n2m", 32);
	uint64_t root, pa, pa4k, pa2m;

	if (cpu != 0)
		return 0;
	root = pt_root_new();
	rt_user_map(root);
	pa = rt_phys_alloc(WARM_PAGES * SIZE_4K, SIZE_4K);
	for (uint64_t i = 0; i < WARM_PAGES; i++)
		pt_map(root, WARM_VA + i * SIZE_4K, pa + i * SIZE_4K, SIZE_4K,
		       PTE_U | PTE_W | PTE_NX);
	pa4k = rt_phys_alloc(n4k * SIZE_4K, SIZE_2M);
	for (uint64_t i = 0; i < n4k; i++)
		pt_map(root, SMALL_VA + i * SIZE_4K, pa4k + i * SIZE_4K,
		       SIZE_4K, PTE_U | PTE_W | PTE_NX);
	pa2m = rt_phys_alloc(n2m * SIZE_2M, SIZE_2M);
	for (uint64_t i = 0; i < n2m; i++)
		pt_map(root, LARGE_VA + i * SIZE_2M, pa2m + i * SIZE_2M,
		       SIZE_2M, PTE_U | PTE_W | PTE_NX);
	rt_write_cr3(root);
	if (bench_arg("hostwarm", 0)) {
		uint64_t small = pa4k, large = pa2m;

		for (uint64_t i = 0; i < n4k; i++)
			*(volatile uint64_t *)(small + i * SIZE_4K) = 0;
		for (uint64_t i = 0; i < n2m; i++)
			*(volatile uint64_t *)(large + i * SIZE_2M) = 0;
	}

	measure("warmup_4k", WARM_VA, WARM_PAGES, SIZE_4K);
	measure("first_touch_4k", SMALL_VA, n4k, SIZE_4K);
	measure("first_touch_2m", LARGE_VA, n2m, SIZE_2M);
	return 0;
}
