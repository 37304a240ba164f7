/*
 * ptwrite: the guest writes its own page tables through a second, data
 * mapping of the table pages — the writes a shadow MMU must notice through
 * write tracking. It rewrites PTEs and a PDE that way (with the
 * invalidation the architecture requires: INVLPG or a CR3 reload, SDM
 * vol. 3, 4.10.4), clears a PTE's present bit and expects a not-present
 * #PF, frees a page table and reuses its frame as plain data (filled with
 * values that would look like PTEs), then turns the frame back into a
 * page table by data writes and checks every translation at the end.
 */
#include "rt.h"

#define X 0x008000000000ULL /* data pages, PML4 entry 1 */
#define Y 0x010000000000ULL /* second mappings of table pages, entry 2 */
#define NPAGES 16

static uint64_t root;
static uint64_t frames[3][NPAGES]; /* F, G and H frame sets */
static int bad;

static uint64_t tag(int set, int i)
{
	return 0x5054000000000000ULL | ((uint64_t)set << 16) | (uint64_t)i;
}

static void read_x(uint64_t va)
{
	(void)*(volatile uint64_t *)va;
}

static void expect_set(const char *what, int set)
{
	int wrong = 0;

	for (int i = 0; i < NPAGES; i++)
		if (*(volatile uint64_t *)(X + i * SIZE_4K) != tag(set, i))
			wrong++;
	rt_printf("%s: %d of %d pages read the expected frame\n", what,
		  NPAGES - wrong, NPAGES);
	bad += wrong;
}

static void expect_fault(const char *what, uint64_t va)
{
	const struct rt_fault *f = rt_last_fault();
	int faulted = rt_try(read_x, va);
	bool ok = faulted && f->vector == 14 && f->error == 0 && f->cr2 == va;

	rt_printf("%s: %s\n", what,
		  ok ? "#PF, error code 0 (not present, read, supervisor)" :
		       "no fault or the wrong one");
	bad += !ok;
}

int guest_main(unsigned int cpu)
{
	volatile pte_t *pt_alias, *pd_alias;
	uint64_t pt1, pt2, pd;
	int wrong = 0;

	if (cpu != 0)
		return 0;
	root = pt_root_new();
	for (int s = 0; s < 3; s++)
		for (int i = 0; i < NPAGES; i++) {
			frames[s][i] = rt_phys_alloc(SIZE_4K, SIZE_4K);
			*(uint64_t *)frames[s][i] = tag(s, i);
		}
	for (int i = 0; i < NPAGES; i++)
		pt_map(root, X + i * SIZE_4K, frames[0][i], SIZE_4K, PTE_W);
	pt1 = *pt_entry(root, X, 2, false, 0) & PTE_ADDR;
	pd = *pt_entry(root, X, 3, false, 0) & PTE_ADDR;
	/* The second mappings: the PT and the PD of X as writable data. */
	pt_map(root, Y, pt1, SIZE_4K, PTE_W);
	pt_map(root, Y + SIZE_4K, pd, SIZE_4K, PTE_W);
	pt_alias = (volatile pte_t *)Y;
	pd_alias = (volatile pte_t *)(Y + SIZE_4K);
	rt_write_cr3(root);

	expect_set("initial mapping", 0);

	/* PTE rewrites through the alias, one INVLPG each. */
	for (int i = 0; i < NPAGES; i++) {
		pt_alias[i] = frames[1][i] | PTE_P | PTE_W;
		rt_invlpg(X + i * SIZE_4K);
	}
	expect_set("PTEs rewritten through the alias", 1);

	pt_alias[3] &= ~PTE_P;
	rt_invlpg(X + 3 * SIZE_4K);
	expect_fault("PTE 3 made not present", X + 3 * SIZE_4K);
	pt_alias[3] |= PTE_P;
	rt_invlpg(X + 3 * SIZE_4K);

	/* A PDE rewrite through the alias: point X at a second table. */
	pt2 = rt_phys_alloc(SIZE_4K, SIZE_4K);
	memset((void *)pt2, 0, SIZE_4K);
	for (int i = 0; i < NPAGES; i++)
		((pte_t *)pt2)[i] = frames[2][i] | PTE_P | PTE_W;
	pd_alias[0] = pt2 | PTE_P | PTE_W | PTE_U;
	rt_write_cr3(root);
	expect_set("PDE rewritten to a new table", 2);

	/* pt1 is no longer a page table: reuse it as data. The values look
	 * like PTEs to the G frames, which a stale shadow would follow. */
	for (int i = 0; i < 512; i++)
		pt_alias[i] = frames[1][i % NPAGES] | PTE_P | PTE_W | (i << 9);
	for (int i = 0; i < 512; i++)
		if (pt_alias[i] !=
		    (frames[1][i % NPAGES] | PTE_P | PTE_W | (i << 9)))
			wrong++;
	rt_printf("old table frame reused as data: %s\n",
		  wrong ? "readback differs" : "reads back");
	bad += wrong;
	expect_set("X still maps the new table", 2);

	/* Unmap the whole table, then check the fault. */
	pd_alias[0] = 0;
	rt_write_cr3(root);
	expect_fault("PDE cleared", X + 5 * SIZE_4K);

	/* Turn the data frame back into a page table by data writes. */
	for (int i = 0; i < 512; i++)
		pt_alias[i] = i < NPAGES ? frames[0][i] | PTE_P | PTE_W : 0;
	pd_alias[0] = pt1 | PTE_P | PTE_W | PTE_U;
	rt_write_cr3(root);
	expect_set("old frame is a page table again", 0);

	/* Every translation, once more, through both mappings. */
	for (int i = 0; i < NPAGES; i++)
		if ((pt_alias[i] & PTE_ADDR) != frames[0][i])
			bad++;
	expect_set("final check", 0);
	rt_write_cr3(0x1000);
	rt_printf("ptwrite: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
