/*
 * The guest of the memory-operation benchmarks (bench/run_memops.py,
 * bench/kvm_memops.c): it keeps a vCPU busy at CPL3 (native under
 * kvm_pvm, interpreted under mmud) while the host removes memslots, zaps
 * the shadow MMU or harvests the dirty log, and talks to the host only
 * through a 4 KiB control page at CTRL_GPA, a memslot the host adds
 * before the vCPU starts: the guest counts its progress there and, in
 * the dirty mode, waits there for the host's go. It never prints unless
 * it fails. "mode=" picks the work:
 *
 * - 1, touch: writes one quadword in each of n ("n=", default 4096)
 *   4 KiB pages of boot RAM, round and round, adding n to the progress
 *   counter after each pass: touches per second.
 * - 2, shadow: maps n ("n=", default 100000) 2 MiB-apart virtual pages,
 *   each through its own page table, and reads them round and round,
 *   adding 1 to the progress counter per pass: each pass after a zap
 *   rebuilds about n + n / 512 shadow pages. Each virtual page maps its
 *   own page table's page (read-only), so every gfn has one rmap entry;
 *   with "shared=1" all map one data page instead, whose rmap then holds
 *   n entries. The tables are written at CPL3 through a user alias,
 *   since CPL0 code runs in KVM's instruction emulator here (this
 *   machine's /dev/kvm has no hardware virtualization; CPL3 code runs
 *   natively).
 * - 3, dirty: maps the 1 GiB memslot at DIRTY_GPA with 2 MiB guest
 *   pages; whenever the host raises the go word, writes one quadword in
 *   every 4 KiB page of it, then sets progress to go.
 */
#include "bench_guest.h"

#define CTRL_GPA (64ULL << 30)
#define DIRTY_GPA (16ULL << 30)
#define DIRTY_SIZE SIZE_1G
#define DATA_VA 0x010000000000ULL /* PML4 entry 2 */
#define CTRL_VA 0x018000000000ULL /* PML4 entry 3 */
#define ALIAS_VA 0x020000000000ULL /* PML4 entry 4 */

/* The control page, as the host sees it (little-endian quadwords). */
struct ctrl {
	volatile uint64_t progress; /* guest -> host */
	volatile uint64_t go; /* host -> guest (dirty mode) */
};

/* arg of the CPL3 functions: the user alias of struct work. */
struct work {
	uint64_t n;
	struct ctrl *ctrl;
	uint64_t alias, tables_pa, npd;
	uint64_t data_pa; /* shadow mode: 0, or the shared data page */
};

static struct work work RT_USER_DATA;

RT_USER static void touch_forever(uint64_t arg)
{
	struct work *w = (struct work *)arg;
	uint64_t n = w->n;

	for (uint64_t pass = 0;; pass++) {
		for (uint64_t i = 0; i < n; i++)
			*(volatile uint64_t *)(DATA_VA + i * SIZE_4K) = pass;
		w->ctrl->progress += n;
	}
}

/* Page directories first, then one page table per 2 MiB of DATA_VA. */
RT_USER static void shadow_forever(uint64_t arg)
{
	struct work *w = (struct work *)arg;
	uint64_t n = w->n, npd = w->npd;
	volatile uint64_t *t = (volatile uint64_t *)w->alias;

	for (uint64_t i = 0; i < (npd + n) * 512; i++)
		t[i] = 0;
	for (uint64_t k = 0; k < n; k++) {
		t[k] = (w->tables_pa + (npd + k) * SIZE_4K) | PTE_P | PTE_W |
		       PTE_U;
		t[(npd + k) * 512] =
			(w->data_pa ? w->data_pa :
				      w->tables_pa + (npd + k) * SIZE_4K) |
			PTE_P | PTE_U | PTE_NX;
	}
	for (;;) {
		for (uint64_t k = 0; k < n; k++)
			(void)*(volatile uint64_t *)(DATA_VA + k * SIZE_2M);
		w->ctrl->progress++;
	}
}

RT_USER static void dirty_forever(uint64_t arg)
{
	struct work *w = (struct work *)arg;
	uint64_t done = 0;

	for (;;) {
		while (w->ctrl->go == done)
			__asm__ volatile("pause" ::: "memory");
		done = w->ctrl->go;
		for (uint64_t i = 0; i < DIRTY_SIZE / SIZE_4K; i++)
			*(volatile uint64_t *)(DATA_VA + i * SIZE_4K) = done;
		w->ctrl->progress = done;
	}
}

static void setup_shadow(uint64_t root, uint64_t n)
{
	uint64_t npd = (n + 511) / 512, pdpt, size;
	pte_t *pml4 = (pte_t *)root, *p;

	if (npd > 512)
		rt_fail("memops: n=%lu needs more than one PDPT\n", n);
	size = ((npd + n) * SIZE_4K + SIZE_2M - 1) & ~(SIZE_2M - 1);
	work.tables_pa = rt_phys_alloc(size, SIZE_2M);
	work.data_pa =
		bench_arg("shared", 0) ? rt_phys_alloc(SIZE_4K, SIZE_4K) : 0;
	work.npd = npd;
	work.alias = ALIAS_VA;
	for (uint64_t off = 0; off < size; off += SIZE_2M)
		pt_map(root, ALIAS_VA + off, work.tables_pa + off, SIZE_2M,
		       PTE_U | PTE_W | PTE_NX);
	pdpt = rt_phys_alloc(SIZE_4K, SIZE_4K);
	p = (pte_t *)pdpt;
	for (unsigned int i = 0; i < 512; i++)
		p[i] = i < npd ? (work.tables_pa + i * SIZE_4K) | PTE_P |
					 PTE_W | PTE_U :
				 0;
	pml4[(DATA_VA >> 39) & 511] = pdpt | PTE_P | PTE_W | PTE_U;
}

int guest_main(unsigned int cpu)
{
	uint64_t mode = bench_arg("mode", 1), root;
	void (*fn)(uint64_t) = NULL;

	if (cpu != 0)
		return 0;
	root = pt_root_new();
	rt_user_map(root);
	pt_map(root, CTRL_VA, CTRL_GPA, SIZE_4K, PTE_U | PTE_W | PTE_NX);
	work.ctrl = (struct ctrl *)CTRL_VA;
	if (mode == 1) {
		uint64_t pa;

		work.n = bench_arg("n", 4096);
		pa = rt_phys_alloc(work.n * SIZE_4K, SIZE_4K);
		for (uint64_t i = 0; i < work.n; i++)
			pt_map(root, DATA_VA + i * SIZE_4K, pa + i * SIZE_4K,
			       SIZE_4K, PTE_U | PTE_W | PTE_NX);
		fn = touch_forever;
	} else if (mode == 2) {
		work.n = bench_arg("n", 100000);
		setup_shadow(root, work.n);
		fn = shadow_forever;
	} else if (mode == 3) {
		for (uint64_t off = 0; off < DIRTY_SIZE; off += SIZE_2M)
			pt_map(root, DATA_VA + off, DIRTY_GPA + off, SIZE_2M,
			       PTE_U | PTE_W | PTE_NX);
		fn = dirty_forever;
	} else {
		rt_fail("memops: unknown mode=%lu\n", mode);
	}
	rt_write_cr3(root);
	if (rt_user_run(fn, rt_user_va(&work)) != 0)
		rt_fail("memops: faulted at CPL3 (vector %lu, cr2 %#lx, "
			"rip %#lx)\n",
			rt_last_fault()->vector, rt_last_fault()->cr2,
			rt_last_fault()->rip);
	return 1;
}
