/*
 * cr3: two address spaces map the same virtual page to different frames;
 * the guest switches CR3 back and forth and checks that each read and
 * write goes to the frame of the current address space (SDM vol. 3,
 * 4.10.4.1: a MOV to CR3 invalidates the non-global TLB entries). A third
 * root maps the page read-only, so a write after switching to it must
 * fault with error code P|W and CR2 = the address.
 */
#include "rt.h"

#define VA 0x008000000000ULL
#define VA2 0x008000001000ULL /* same page table as VA */
#define SWITCHES 200
#define REMAPS 64

static void write_va(uint64_t v)
{
	*(volatile uint64_t *)VA = v;
}

int guest_main(unsigned int cpu)
{
	uint64_t roots[3], frames[2], boot_cr3 = rt_read_cr3();
	uint64_t counts[2] = { 0, 0 };
	int bad = 0, ro_faults = 0;

	if (cpu != 0)
		return 0;
	for (int i = 0; i < 3; i++)
		roots[i] = pt_root_new();
	for (int i = 0; i < 2; i++) {
		frames[i] = rt_phys_alloc(SIZE_4K, SIZE_4K);
		*(uint64_t *)frames[i] = 0xa5a5000000000000ULL | (uint64_t)i;
		pt_map(roots[i], VA, frames[i], SIZE_4K, PTE_W);
	}
	pt_map(roots[2], VA, frames[0], SIZE_4K, 0);

	for (int s = 0; s < SWITCHES; s++) {
		int as = s & 1;
		volatile uint64_t *p = (volatile uint64_t *)VA;
		uint64_t want = 0xa5a5000000000000ULL | (uint64_t)as |
				(counts[as] << 8);

		rt_write_cr3(roots[as]);
		if (*p != want) {
			if (bad++ < 4)
				rt_printf("switch %d: as %d read %#lx, "
					  "expected %#lx\n",
					  s, as, *p, want);
		}
		counts[as]++;
		*p = 0xa5a5000000000000ULL | (uint64_t)as | (counts[as] << 8);
		if (s % 10 == 9) {
			rt_write_cr3(roots[2]);
			if (*p != (0xa5a5000000000000ULL | (counts[0] << 8)))
				bad++;
			if (rt_try(write_va, 0) &&
			    rt_last_fault()->vector == 14 &&
			    rt_last_fault()->error == 0x3 &&
			    rt_last_fault()->cr2 == VA)
				ro_faults++;
			else
				bad++;
		}
	}
	/*
	 * Page-table writes between switches: while address space 0 is
	 * loaded, repoint VA2 of address space 1 (a table the MMU shadows
	 * since space 1 ran) at another frame, then switch to space 1 and
	 * read it: the CR3 load must make the new PTE visible (SDM vol. 3,
	 * 4.10.4.1), whatever the MMU did with the table meanwhile.
	 */
	{
		uint64_t remap_frames[REMAPS];
		pte_t *pte2;
		int seen = 0;

		for (int k = 0; k < REMAPS; k++) {
			remap_frames[k] = rt_phys_alloc(SIZE_4K, SIZE_4K);
			*(uint64_t *)remap_frames[k] = 0x5232000000000000ULL |
						       (uint64_t)k;
		}
		pt_map(roots[1], VA2, remap_frames[0], SIZE_4K, PTE_W);
		pte2 = pt_entry(roots[1], VA2, 1, false, 0);
		rt_write_cr3(roots[1]);
		(void)*(volatile uint64_t *)VA2;
		for (int k = 1; k < REMAPS; k++) {
			rt_write_cr3(roots[0]);
			*pte2 = remap_frames[k] | PTE_P | PTE_W;
			rt_write_cr3(roots[1]);
			seen += *(volatile uint64_t *)VA2 ==
				(0x5232000000000000ULL | (uint64_t)k);
		}
		rt_printf("inactive address space remapped %d times: %d "
			  "reads saw the new frame\n",
			  REMAPS - 1, seen);
		bad += seen != REMAPS - 1;
	}
	rt_write_cr3(boot_cr3);
	for (int i = 0; i < 2; i++)
		rt_printf("address space %d: %lu switches, frame holds count "
			  "%lu\n",
			  i, counts[i], *(uint64_t *)frames[i] >> 8 & 0xffff);
	rt_printf("read-only address space: %d write faults\n", ro_faults);
	rt_printf("cr3: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
