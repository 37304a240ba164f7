/*
 * ad: which accesses set the Accessed and Dirty flags, at each level of
 * the walk (SDM vol. 3, 4.8): every entry used for a translation gets A;
 * only the entry that maps the page (the PTE, or the PDE/PDPTE of a large
 * page) gets D, and only on a write; D is ignored in entries that point to
 * a table. Before each probe the flags are cleared in memory and CR3 is
 * reloaded, so no cached translation or paging-structure entry hides the
 * walk. It also checks that a write through a translation cached by an
 * earlier read still sets D (4.8: D is set on the first write even when
 * the TLB holds the entry).
 */
#include "rt.h"

#define VA_4K 0x018000000000ULL /* PML4 entry 3 */
#define VA_2M 0x020000000000ULL /* PML4 entry 4 */
#define VA_1G 0x028000000000ULL /* PML4 entry 5 */

enum access { READ, WRITE, FETCH, READ_THEN_WRITE };
static const char *const access_name[] = { "read", "write", "fetch",
					   "read+write" };

static uint64_t root;

static void do_access(uint64_t va, enum access a)
{
	volatile uint8_t *p = (volatile uint8_t *)va;

	switch (a) {
	case READ:
		(void)*p;
		break;
	case WRITE:
		*p = 0xc3;
		break;
	case FETCH:
		((void (*)(void))va)();
		break;
	case READ_THEN_WRITE:
		(void)*p;
		*p = 0xc3;
		break;
	}
}

/* Clears A and D at every level down to leaf_level, accesses, and prints
 * the flags. Returns the number of entries that differ from the rules. */
static int probe(const char *size, uint64_t va, int leaf_level, enum access a)
{
	static const char *const level_name[] = { "", "pte", "pde", "pdpte",
						  "pml4e" };
	char line[160];
	int n = 0, bad = 0;

	for (int l = 4; l >= leaf_level; l--)
		*pt_entry(root, va, l, false, 0) &= ~(PTE_A | PTE_D);
	rt_write_cr3(root);
	do_access(va, a);
	n += rt_snprintf(line + n, sizeof(line) - n, "%s %-10s:", size,
			 access_name[a]);
	for (int l = 4; l >= leaf_level; l--) {
		pte_t e = *pt_entry(root, va, l, false, 0);
		int acc = !!(e & PTE_A), dirty = !!(e & PTE_D);
		int want_d = l == leaf_level &&
			     (a == WRITE || a == READ_THEN_WRITE);

		n += rt_snprintf(line + n, sizeof(line) - n, " %s A%d D%d",
				 level_name[l], acc, dirty);
		bad += acc != 1;
		bad += dirty != want_d;
	}
	rt_printf("%s%s\n", line, bad ? "  <- against the rules" : "");
	return bad;
}

static int probe_all(const char *size, uint64_t va, int leaf_level)
{
	int bad = 0;

	for (enum access a = READ; a <= READ_THEN_WRITE; a++)
		bad += probe(size, va, leaf_level, a);
	return bad;
}

int guest_main(unsigned int cpu)
{
	uint64_t frame, big;
	int bad = 0;

	if (cpu != 0)
		return 0;
	root = pt_root_new();
	/* Every page holds RET at offset 0 so the fetch probe returns. */
	frame = rt_phys_alloc(SIZE_4K, SIZE_4K);
	*(uint8_t *)frame = 0xc3;
	pt_map(root, VA_4K, frame, SIZE_4K, PTE_W);
	big = rt_phys_alloc(SIZE_2M, SIZE_2M);
	*(uint8_t *)big = 0xc3;
	pt_map(root, VA_2M, big, SIZE_2M, PTE_W);

	bad += probe_all("4k", VA_4K, 1);
	bad += probe_all("2m", VA_2M, 2);
	/* 1 GiB pages only where CPUID reports them (the line set then
	 * differs, see expected/ad.mmud.txt). The page maps guest physical
	 * [0, 1 GiB), so the RET of frame is at VA_1G + frame. */
	if (rt_has_1g_pages()) {
		pt_map(root, VA_1G, 0, SIZE_1G, PTE_W);
		bad += probe_all("1g", VA_1G + frame, 3);
	}
	rt_write_cr3(0x1000);
	rt_printf("ad: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
