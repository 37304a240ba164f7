/*
 * Page-table helpers of the guest runtime: new roots sharing the boot
 * identity map, entry lookup with table allocation, map and unmap of
 * 4 KiB, 2 MiB and 1 GiB pages. Tables live in identity-mapped RAM below
 * 4 GiB, so a table's physical address is also its pointer. TLB
 * maintenance is the caller's (rt_invlpg, rt_write_cr3).
 */
#include "rt.h"

#define BOOT_PML4 0x1000ULL

static pte_t *table(uint64_t pa)
{
	return (pte_t *)(pa & PTE_ADDR);
}

static uint64_t table_new(void)
{
	uint64_t pa = rt_phys_alloc(SIZE_4K, SIZE_4K);

	memset((void *)pa, 0, SIZE_4K);
	return pa;
}

uint64_t pt_root_new(void)
{
	uint64_t root = table_new();

	table(root)[0] = table(BOOT_PML4)[0];
	return root;
}

static unsigned int index_of(uint64_t va, int level)
{
	return (va >> (12 + 9 * (level - 1))) & 511;
}

pte_t *pt_entry(uint64_t root, uint64_t va, int level, bool alloc,
		uint64_t upper)
{
	pte_t *t = table(root);

	for (int l = 4; l > level; l--) {
		pte_t *e = &t[index_of(va, l)];

		if (!(*e & PTE_P)) {
			if (!alloc)
				return NULL;
			*e = table_new() | upper | PTE_P;
		} else if (*e & PTE_PS) {
			return NULL;
		}
		t = table(*e);
	}
	return &t[index_of(va, level)];
}

static int size_level(uint64_t size)
{
	if (size == SIZE_4K)
		return 1;
	if (size == SIZE_2M)
		return 2;
	if (size == SIZE_1G)
		return 3;
	rt_fail("page size %#lx\n", size);
}

void pt_map(uint64_t root, uint64_t va, uint64_t pa, uint64_t size,
	    uint64_t flags)
{
	int level = size_level(size);
	pte_t *e = pt_entry(root, va, level, true, PTE_P | PTE_W | PTE_U);

	if (!e || (va | pa) & (size - 1))
		rt_fail("pt_map %#lx -> %#lx size %#lx\n", va, pa, size);
	*e = pa | flags | PTE_P | (level > 1 ? PTE_PS : 0);
}

void pt_unmap(uint64_t root, uint64_t va, uint64_t size)
{
	pte_t *e = pt_entry(root, va, size_level(size), false, 0);

	if (e)
		*e = 0;
}
