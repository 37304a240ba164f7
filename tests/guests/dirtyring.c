/*
 * dirtyring: every vCPU writes its own pages of a hot-added, dirty-logged
 * memslot in rounds, each page at most once a round, and reports which,
 * for the dirty ring's tests (tests/integration/test_dirty_ring.py): the
 * test checks that each round's ring entries are exactly the pages the
 * round wrote, each once, in the ring of the vCPU that wrote it.
 *
 * The slot is at DATA_GPA, PER_CPU pages per vCPU (vCPU c owns pages
 * c * PER_CPU ..); the guest starts when it appears and prints
 * "dirtyring: ready" once every vCPU has seen it. Round r starts when the
 * doorbell slot of parity r appears at bell_gpa[r % 2] (the test adds it
 * and removes the other). In round r each vCPU writes about three
 * quarters of its pages, one store each, then prints
 *
 *     dirtyring: cpu C round R wrote HEX
 *
 * HEX being the bitmap of its pages written (bit p: its page p), and
 * after the last round, once the next doorbell appears, "dirtyring: cpu C
 * done", and "dirtyring: done"
 * once every vCPU is, before the VM exits. The page tables live in
 * boot RAM, so their A/D updates never touch the data slot.
 */
#include "rt.h"

#define DATA_GPA 0x200000000ULL /* 8 GiB */
#define PER_CPU 128
#define ROUNDS 4
#define DATA_VA 0x008000000000ULL
#define BELL_VA 0x010000000000ULL
#define ONES (~0ULL)

static const uint64_t bell_gpa[2] = { 0x300000000ULL, 0x300200000ULL };
static volatile uint64_t shared_root;
static volatile unsigned int seen_slot, finished;

/* Whether vCPU c writes its page p in round r: a fixed pseudo-random
 * three quarters. */
static bool writes(unsigned int c, unsigned int r, unsigned int p)
{
	uint64_t h = (uint64_t)((c * 7 + r) * 1031 + p) * 0x9e3779b97f4a7c15ULL;

	return (h >> 60) % 4 != 0;
}

int guest_main(unsigned int cpu)
{
	volatile uint64_t *data =
		(volatile uint64_t *)(DATA_VA + cpu * PER_CPU * SIZE_4K);
	unsigned int nr = rt_boot.nr_vcpus;
	uint64_t root;

	if (cpu == 0) {
		root = pt_root_new();
		for (uint64_t p = 0; p < PER_CPU * nr; p++)
			pt_map(root, DATA_VA + p * SIZE_4K,
			       DATA_GPA + p * SIZE_4K, SIZE_4K, PTE_W);
		for (int b = 0; b < 2; b++)
			pt_map(root, BELL_VA + (uint64_t)b * SIZE_4K,
			       bell_gpa[b], SIZE_4K, PTE_W);
		__atomic_store_n(&shared_root, root, __ATOMIC_RELEASE);
		rt_printf("dirtyring: waiting for the slot at %#lx\n",
			  (uint64_t)DATA_GPA);
	}
	while (!(root = __atomic_load_n(&shared_root, __ATOMIC_ACQUIRE)))
		rt_pause();
	rt_write_cr3(root);
	while (data[0] == ONES)
		rt_pause();
	if (__atomic_add_fetch(&seen_slot, 1, __ATOMIC_SEQ_CST) == nr)
		rt_printf("dirtyring: ready (%u vcpus, %u pages each)\n", nr,
			  PER_CPU);

	for (unsigned int r = 1; r <= ROUNDS; r++) {
		volatile uint64_t *bell =
			(volatile uint64_t *)(BELL_VA + (r % 2) * SIZE_4K);
		uint64_t wrote[PER_CPU / 64] = { 0 };

		while (*bell == ONES)
			rt_pause();
		for (unsigned int p = 0; p < PER_CPU; p++) {
			if (!writes(cpu, r, p))
				continue;
			data[p * 512 + (r % 512)] = r;
			wrote[p / 64] |= 1ULL << (p % 64);
		}
		rt_printf("dirtyring: cpu %u round %u wrote %016lx%016lx\n",
			  cpu, r, wrote[1], wrote[0]);
	}
	/* The end waits for one more doorbell, as a round would: the test
	 * reads the statistics first. */
	while (*(volatile uint64_t *)(BELL_VA + ((ROUNDS + 1) % 2) * SIZE_4K) ==
	       ONES)
		rt_pause();
	rt_printf("dirtyring: cpu %u done\n", cpu);
	/* vCPU 0's return ends the VM: after everyone's. */
	__atomic_add_fetch(&finished, 1, __ATOMIC_SEQ_CST);
	while (cpu == 0 && __atomic_load_n(&finished, __ATOMIC_ACQUIRE) < nr)
		rt_pause();
	if (cpu == 0)
		rt_printf("dirtyring: done\n");
	return 0;
}
