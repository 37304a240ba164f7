/*
 * dirty: writes pages of a hot-added, dirty-logged memslot in rounds and
 * reports on the console which pages each round wrote, so the control
 * plane can check that every page written between two harvests appears
 * in the second and that no other page does. The slot is at DATA_GPA
 * (DATA_PAGES pages); the guest starts when it appears. After round r
 * the guest waits for the doorbell slot of parity r + 1 (bell_gpa): the
 * test harvests, then rings by adding that slot (and removing the
 * other); after the last round the same doorbell lets it finish. The guest's page tables live in boot RAM, so their A/D updates
 * never touch the data slot.
 */
#include "rt.h"

#define DATA_GPA 0x200000000ULL /* 8 GiB */
#define DATA_PAGES 64
#define ROUNDS 8
#define DATA_VA 0x008000000000ULL
#define BELL_VA 0x010000000000ULL
#define ONES (~0ULL)

static const uint64_t bell_gpa[2] = { 0x300000000ULL, 0x300200000ULL };

/* Whether round r writes page p: a fixed pseudo-random third. */
static bool writes(unsigned int r, unsigned int p)
{
	uint64_t h = (uint64_t)(r * 131 + p) * 0x9e3779b97f4a7c15ULL;

	return (h >> 59) % 3 == 0;
}

int guest_main(unsigned int cpu)
{
	volatile uint64_t *data = (volatile uint64_t *)DATA_VA;
	uint64_t root;
	char line[512];

	if (cpu != 0)
		return 0;
	root = pt_root_new();
	for (uint64_t p = 0; p < DATA_PAGES; p++)
		pt_map(root, DATA_VA + p * SIZE_4K, DATA_GPA + p * SIZE_4K,
		       SIZE_4K, PTE_W);
	for (int b = 0; b < 2; b++)
		pt_map(root, BELL_VA + (uint64_t)b * SIZE_4K, bell_gpa[b],
		       SIZE_4K, PTE_W);
	rt_write_cr3(root);
	rt_printf("dirty: waiting for the slot at %#lx\n", (uint64_t)DATA_GPA);
	while (data[0] == ONES)
		rt_pause();

	for (unsigned int r = 1; r <= ROUNDS; r++) {
		volatile uint64_t *bell =
			(volatile uint64_t *)(BELL_VA +
					      ((r + 1) % 2) * SIZE_4K);
		int n = 0;

		n += rt_snprintf(line + n, sizeof(line) - n,
				 "dirty: round %u:", r);
		for (unsigned int p = 0; p < DATA_PAGES; p++) {
			if (!writes(r, p))
				continue;
			data[p * 512 + (r % 512)] = r;
			n += rt_snprintf(line + n, sizeof(line) - n, " %u", p);
		}
		rt_printf("%s\n", line);
		/* The next round (or the end) waits for the test's harvest:
		 * the doorbell of the next parity. */
		while (*bell == ONES)
			rt_pause();
	}
	rt_printf("dirty: done\n");
	return 0;
}
