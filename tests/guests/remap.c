/*
 * remap: rewrites one PTE to many frames, with INVLPG after each rewrite,
 * and checks that every read through the virtual page sees the frame the
 * PTE names now and every write lands in it (SDM vol. 3, 4.10.4.1: INVLPG
 * drops the TLB entry, so the next access walks the new PTE). It also
 * flips the PTE between writable and read-only and expects the write to
 * fault exactly when the current PTE forbids it.
 */
#include "rt.h"

#define VA 0x008000000000ULL
#define FRAMES 64
#define ROUNDS 4

static uint64_t frames[FRAMES];

static void write_va(uint64_t v)
{
	*(volatile uint64_t *)VA = v;
}

static uint64_t value(int frame, int round)
{
	return 0x5245000000000000ULL | ((uint64_t)round << 16) |
	       (uint64_t)frame;
}

int guest_main(unsigned int cpu)
{
	int bad = 0, faults = 0, expected_faults = 0;
	uint64_t root;
	pte_t *pte;

	if (cpu != 0)
		return 0;
	root = pt_root_new();
	for (int i = 0; i < FRAMES; i++) {
		frames[i] = rt_phys_alloc(SIZE_4K, SIZE_4K);
		*(uint64_t *)frames[i] = value(i, 0);
	}
	pt_map(root, VA, frames[0], SIZE_4K, PTE_W);
	pte = pt_entry(root, VA, 1, false, 0);
	rt_write_cr3(root);

	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < FRAMES; i++) {
			/* Odd frames are mapped read-only in odd rounds. */
			bool ro = (round & 1) && (i & 1);
			uint64_t got;
			int f;

			*pte = frames[i] | PTE_P | (ro ? 0 : PTE_W);
			rt_invlpg(VA);
			got = *(volatile uint64_t *)VA;
			if (got != value(i, round)) {
				if (bad++ < 4)
					rt_printf("round %d frame %d: read "
						  "%#lx\n",
						  round, i, got);
			}
			f = rt_try(write_va, value(i, round + 1));
			expected_faults += ro;
			faults += f;
			if (f != ro || (f && (rt_last_fault()->vector != 14 ||
					      rt_last_fault()->error != 0x3 ||
					      rt_last_fault()->cr2 != VA))) {
				if (bad++ < 4)
					rt_printf("round %d frame %d: write "
						  "fault %d (ro %d)\n",
						  round, i, f, ro);
			}
			if (ro) /* the write did not happen: do it here */
				*(uint64_t *)frames[i] = value(i, round + 1);
			if (*(uint64_t *)frames[i] != value(i, round + 1))
				bad++;
		}
		rt_printf("round %d: %d frames remapped, %d write faults "
			  "(%d expected)\n",
			  round, FRAMES, faults, expected_faults);
		faults = expected_faults = 0;
	}
	rt_printf("remap: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
