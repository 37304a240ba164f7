/*
 * pgdcopy: the copy Linux's pgd_alloc makes of a page directory with
 * REP MOVSQ, from a live page table into a frame that was itself a page
 * table a moment ago (so the shadow MMU still write-protects it). The
 * source and destination addresses are 2 MiB apart: a direct-mapped
 * translation cache of up to 512 entries puts both pages in the same
 * slot, so each access evicts the other's translation. The guest then
 * runs on the copy. Under a shadow MMU whose write to the protected
 * frame only ever completes through a translation the source's access
 * evicts first, the copy never ends (docs/MMU.md, "Writes that never
 * complete").
 */
#include "rt.h"

#define X 0x008000000000ULL /* the source table, PML4 entry 1 */
#define Y (X + SIZE_2M) /* the destination: same cache slot as X */
#define Z 0x010000000000ULL /* data mapped in the first old root */

static int bad;

/* REP MOVSQ of n qwords from s to d, forward. */
static void rep_movsq(volatile void *d, const volatile void *s, uint64_t n)
{
	__asm__ volatile("cld; rep movsq"
			 : "+D"(d), "+S"(s), "+c"(n)
			 :
			 : "memory");
}

/*
 * Copies the 512 entries of the live table src (mapped at X) into the
 * frame dst (mapped at Y), which the guest used as a page table of the
 * given level before, and checks every entry.
 */
static void copy_table(uint64_t root, uint64_t src, uint64_t dst,
		       const char *what)
{
	int wrong = 0;

	pt_map(root, X, src, SIZE_4K, 0);
	pt_map(root, Y, dst, SIZE_4K, PTE_W);
	rt_write_cr3(root);
	rep_movsq((volatile void *)Y, (const volatile void *)X, 512);
	for (int i = 0; i < 512; i++)
		if (((volatile pte_t *)Y)[i] != ((volatile pte_t *)X)[i])
			wrong++;
	rt_printf("%s: 512 entries copied by REP MOVSQ, %d differ\n", what,
		  wrong);
	bad += wrong;
}

int guest_main(unsigned int cpu)
{
	uint64_t live, old, old_pd, data;
	volatile uint64_t *p;

	if (cpu != 0)
		return 0;
	live = pt_root_new();
	old = pt_root_new();
	data = rt_phys_alloc(SIZE_4K, SIZE_4K);
	*(volatile uint64_t *)data = 0x5047440000000001ULL;
	/* The old address space: a root and, below it, a page directory,
	 * both page tables while the guest runs on them. */
	pt_map(old, Z, data, SIZE_4K, PTE_W);
	old_pd = *pt_entry(old, Z, 3, false, 0) & PTE_ADDR;
	rt_write_cr3(old);
	(void)*(volatile uint64_t *)Z;
	/* Leave it: both frames are free now, as Linux frees a dead
	 * process's tables, and get reused as a new page directory. */
	rt_write_cr3(live);
	copy_table(live, live, old_pd, "into a frame that was a PD");
	copy_table(live, live, old, "into a frame that was a PML4");
	/* Run on the copy: it maps X to the live root, like the original. */
	rt_write_cr3(old);
	p = (volatile uint64_t *)X;
	rt_printf("running on the copy: X reads the live root's entry 0 %s\n",
		  p[0] == *(volatile uint64_t *)live ? "as the original" :
						       "wrongly");
	bad += p[0] != *(volatile uint64_t *)live;
	rt_write_cr3(live);
	rt_printf("pgdcopy: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
