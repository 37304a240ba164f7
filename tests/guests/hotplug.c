/*
 * hotplug: polls a hot-plug window of guest-physical memory above 4 GiB
 * while the control plane adds and removes memslots there
 * (docs/GUEST-ABI.md, "Unbacked addresses": an address no memslot covers reads as all ones and ignores
 * writes). For each 4 KiB page of the window: all ones means no slot;
 * zero means a new slot, which the guest fills with its pattern and
 * verifies; any value that is neither its pattern, zero nor all ones is
 * a failure (memory that is not what the guest wrote, or a slot that
 * came back with old contents). It runs until a slot appears at the
 * control page, then reports how many slots it filled.
 * Window: guest-physical HOTPLUG_GPA, HOTPLUG_PAGES pages; control page
 * at CONTROL_GPA. The daemon tests (tests/integration) drive it.
 */
#include "rt.h"

#define HOTPLUG_GPA 0x200000000ULL /* 8 GiB */
#define HOTPLUG_PAGES 256 /* 1 MiB */
#define CONTROL_GPA 0x300000000ULL /* 12 GiB */
#define WINDOW_VA 0x008000000000ULL /* PML4 entry 1 */
#define CONTROL_VA 0x010000000000ULL /* PML4 entry 2 */
#define ONES (~0ULL)

static uint64_t pattern(uint64_t page, uint64_t i)
{
	return 0x4850000000000000ULL | (page << 20) | i;
}

int guest_main(unsigned int cpu)
{
	uint64_t fills = 0, checks = 0, bad = 0, root;
	volatile uint64_t *control = (volatile uint64_t *)CONTROL_VA;

	if (cpu != 0)
		return 0;
	root = pt_root_new();
	for (uint64_t p = 0; p < HOTPLUG_PAGES; p++)
		pt_map(root, WINDOW_VA + p * SIZE_4K, HOTPLUG_GPA + p * SIZE_4K,
		       SIZE_4K, PTE_W);
	pt_map(root, CONTROL_VA, CONTROL_GPA, SIZE_4K, PTE_W);
	rt_write_cr3(root);
	rt_printf("hotplug: polling %u pages at %#lx\n", HOTPLUG_PAGES,
		  (uint64_t)HOTPLUG_GPA);

	while (*control == ONES && bad < 8) {
		for (uint64_t p = 0; p < HOTPLUG_PAGES; p++) {
			volatile uint64_t *q =
				(volatile uint64_t *)(WINDOW_VA + p * SIZE_4K);
			uint64_t v = q[0];
			int wrong = 0;

			if (v == ONES)
				continue;
			if (v == 0) {
				/* A new slot: fill the page, then check it. */
				for (uint64_t i = 0; i < 512; i++)
					q[i] = pattern(p, i);
				fills++;
			} else if (v != pattern(p, 0)) {
				wrong = 1;
			}
			checks++;
			for (uint64_t i = 0; i < 512 && !wrong; i++) {
				uint64_t w = q[i];

				/* The slot may go (all ones) or come back
				 * fresh (zero) while we look. */
				if (w != pattern(p, i) && w != 0 && w != ONES)
					wrong = 1;
			}
			if (wrong) {
				bad++;
				rt_printf("hotplug: page %lu holds %#lx\n", p,
					  q[0]);
			}
		}
	}
	rt_printf("hotplug: %lu slot fills, %lu page checks, %lu bad\n", fills,
		  checks, bad);
	rt_printf("hotplug: %s\n", bad || !fills ? "FAIL" : "PASS");
	return bad || !fills ? 1 : 0;
}
