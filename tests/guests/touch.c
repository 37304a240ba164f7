/*
 * touch: touches every 4 KiB page of a region mapped with 4 KiB pages,
 * then again, and the same for a region mapped with 2 MiB pages. The
 * first pass writes a per-page pattern (first touch: the MMU builds the
 * mapping), the second reads it back and rewrites it (the mapping exists),
 * and a final check reads every page through the boot identity map, so a
 * page that landed on the wrong frame is caught.
 */
#include "rt.h"

#define SMALL_VA 0x008000000000ULL /* PML4 entry 1 */
#define SMALL_PAGES 1024 /* 4 MiB */
#define LARGE_VA 0x010000000000ULL /* PML4 entry 2 */
#define LARGE_PAGES 4 /* 8 MiB of 2 MiB pages */

static uint64_t pattern(uint64_t region, uint64_t page, int pass)
{
	return (region << 48) ^ (page * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)pass;
}

/* One pass over npages 4 KiB pages at va: check what the previous pass
 * left (pass > 0) and write this pass's pattern at both ends of the page. */
static int touch_pages(uint64_t region, uint64_t va, uint64_t npages, int pass)
{
	int bad = 0;

	for (uint64_t i = 0; i < npages; i++) {
		volatile uint64_t *p = (volatile uint64_t *)(va + i * SIZE_4K);

		if (pass > 0 && (p[0] != pattern(region, i, pass - 1) ||
				 p[511] != ~pattern(region, i, pass - 1))) {
			if (bad++ < 4)
				rt_printf("region %lu pass %d page %lu: read "
					  "%#lx/%#lx\n",
					  region, pass, i, p[0], p[511]);
		}
		p[0] = pattern(region, i, pass);
		p[511] = ~pattern(region, i, pass);
	}
	return bad;
}

/* Reads each page's frame through the identity map. */
static int check_frames(uint64_t region, const uint64_t *frames,
			uint64_t npages, int pass)
{
	int bad = 0;

	for (uint64_t i = 0; i < npages; i++) {
		const uint64_t *p = (const uint64_t *)frames[i];

		if (p[0] != pattern(region, i, pass) ||
		    p[511] != ~pattern(region, i, pass))
			bad++;
	}
	return bad;
}

static uint64_t small_frames[SMALL_PAGES];
static uint64_t large_frames[LARGE_PAGES * 512];

int guest_main(unsigned int cpu)
{
	uint64_t root;
	int bad = 0, b;

	if (cpu != 0)
		return 0;
	root = pt_root_new();
	/* Scatter the 4 KiB frames: allocate in reverse so virtual order
	 * and physical order differ. */
	for (int i = SMALL_PAGES - 1; i >= 0; i--) {
		small_frames[i] = rt_phys_alloc(SIZE_4K, SIZE_4K);
		pt_map(root, SMALL_VA + i * SIZE_4K, small_frames[i], SIZE_4K,
		       PTE_W);
	}
	for (int i = 0; i < LARGE_PAGES; i++) {
		uint64_t pa = rt_phys_alloc(SIZE_2M, SIZE_2M);

		pt_map(root, LARGE_VA + i * SIZE_2M, pa, SIZE_2M, PTE_W);
		for (int j = 0; j < 512; j++)
			large_frames[i * 512 + j] = pa + j * SIZE_4K;
	}
	rt_write_cr3(root);

	for (int pass = 0; pass < 3; pass++) {
		b = touch_pages(1, SMALL_VA, SMALL_PAGES, pass);
		b += check_frames(1, small_frames, SMALL_PAGES, pass);
		rt_printf("4k: pass %d: %u pages, %d bad\n", pass, SMALL_PAGES,
			  b);
		bad += b;
	}
	for (int pass = 0; pass < 3; pass++) {
		b = touch_pages(2, LARGE_VA, LARGE_PAGES * 512, pass);
		b += check_frames(2, large_frames, LARGE_PAGES * 512, pass);
		rt_printf("2m: pass %d: %u pages in %u large pages, %d bad\n",
			  pass, LARGE_PAGES * 512, LARGE_PAGES, b);
		bad += b;
	}
	rt_printf("touch: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
