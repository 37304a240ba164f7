/*
 * Large sptes (docs/MMU.md, "Large sptes"): a 2 MiB or 1 GiB guest page that
 * one memslot covers, with an aligned host mapping and no write-tracked
 * gfn inside, is mapped by one PS spte; it is zapped when a gfn inside
 * becomes a shadowed page table (then mapped with 4 KiB sptes, the table
 * write-protected) and when its slot starts dirty logging; a misaligned
 * host mapping never gets one. The audit checks each large spte and the
 * lpage_disallow counts.
 */
#include "mmu_env.h"

#define LBASE 0x200 /* gfn of the 2 MiB frame at 2 MiB */
#define LGVA 0x40000000ULL

/*
 * Slot 2 = [base, +npages) at hva, and LGVA mapped by a 2 MiB guest page
 * (a PS PDE) at gfn frame; returns the PD's gfn.
 */
static gfn_t map_2m_page(struct mmu_env *e, gfn_t base, uint64_t npages,
			 hva_t hva, gfn_t frame)
{
	char err[128];
	gfn_t pd;

	assert_int_equal(memslot_add(e->mmu, 2, base, npages, hva, 0, err,
				     sizeof(err)),
			 0);
	env_map(e, PML4, LGVA, BASE1, G_W | G_D);
	pd = e->next_table - 2;
	gpte_set(&e->m0, 0, pd, 0,
		 (frame << PAGE_SHIFT) | G_P | G_W | G_D | G_PS);
	return pd;
}

/* The frame at LBASE is the whole slot 2, at hva. */
static gfn_t setup_2m(struct mmu_env *e, hva_t hva)
{
	return map_2m_page(e, LBASE, 512, hva, LBASE);
}

/* setup_2m, and a write maps the frame with one writable large spte. */
static gfn_t map_large_spte(struct mmu_env *e, hva_t hva)
{
	gfn_t pd = setup_2m(e, hva);

	assert_int_equal(env_fault(e, LGVA, MMU_ACCESS_WRITE), MMU_FAULT_FIXED);
	assert_int_equal(env_stats(e).large_sptes, 1);
	return pd;
}

static void test_large_spte_maps_2m_guest_page_with_one_spte(void **state)
{
	struct mmu_env *e = env_new();
	struct big b = big_alloc(2 << 20, 2 << 20);
	struct mmu_stats st;

	(void)state;
	setup_2m(e, b.hva);
	assert_int_equal(env_fault(e, LGVA + 0x12345, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	st = env_stats(e);
	assert_int_equal(st.large_sptes, 1);
	assert_int_equal(st.sptes, 1);
	assert_shadow_maps(e, LGVA + 0x1fffff, MMU_ACCESS_WRITE,
			   b.hva + 0x1fffff);
	assert_shadow_maps(e, LGVA + 0x12345, MMU_ACCESS_READ, b.hva + 0x12345);
	env_audit(e);
	env_free(e);
	big_free(&b);
}

static void test_large_spte_split_when_gfn_inside_write_tracked(void **state)
{
	struct mmu_env *e = env_new();
	struct big b = big_alloc(2 << 20, 2 << 20);
	struct mmu_stats st;
	gfn_t pd;

	(void)state;
	pd = map_large_spte(e, b.hva);
	/* The guest puts a page table at LBASE + 7, inside the frame, and
	 * uses it for LGVA + 2 MiB. */
	atomic_store((_Atomic uint64_t *)(uintptr_t)(b.hva + 7 * PAGE_SIZE),
		     (BASE1 << PAGE_SHIFT) | G_P | G_W | G_D);
	gpte_set(&e->m0, 0, pd, 1,
		 ((gfn_t)(LBASE + 7) << PAGE_SHIFT) | G_P | G_W);
	assert_int_equal(env_fault(e, LGVA + (2 << 20), MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	/* The large spte over the now-tracked gfn is gone. */
	assert_shadow_misses(e, LGVA, MMU_ACCESS_READ);
	st = env_stats(e);
	assert_true(st.write_protects >= 1);
	env_audit(e);
	/* The frame is mapped 4 KiB at a time now: the table is write-
	 * protected, its neighbours are not. */
	assert_int_equal(env_fault(e, LGVA + 7 * PAGE_SIZE, MMU_ACCESS_WRITE),
			 MMU_FAULT_EMULATE);
	assert_int_equal(env_fault(e, LGVA + 6 * PAGE_SIZE, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, LGVA + 6 * PAGE_SIZE + 8, MMU_ACCESS_WRITE,
			   b.hva + 6 * PAGE_SIZE + 8);
	st = env_stats(e);
	assert_int_equal(st.large_sptes, 1);
	env_audit(e);
	/* Once the table is no longer shadowed, large again. */
	mmu_zap_all(e->mmu);
	mmu_vcpu_free_obsolete_roots(e->v);
	assert_int_equal(env_fault(e, LGVA, MMU_ACCESS_READ), MMU_FAULT_FIXED);
	assert_int_equal(env_stats(e).large_sptes, 2);
	env_free(e);
	big_free(&b);
}

static void test_large_spte_zapped_when_dirty_logging_starts(void **state)
{
	struct mmu_env *e = env_new();
	struct big b = big_alloc(2 << 20, 2 << 20);
	uint64_t bits[8];
	char err[128];

	(void)state;
	map_large_spte(e, b.hva);
	assert_int_equal(memslot_set_flags(e->mmu, 2, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	assert_shadow_misses(e, LGVA, MMU_ACCESS_READ);
	assert_int_equal(env_fault(e, LGVA + 3 * PAGE_SIZE, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_shadow_misses(e, LGVA + 4 * PAGE_SIZE, MMU_ACCESS_READ);
	assert_int_equal(
		memslot_dirty_log_get(e->mmu, 2, bits, 8, err, sizeof(err)), 0);
	assert_int_equal(bits[0], 1ULL << 3);
	assert_int_equal(env_stats(e).large_sptes, 1);
	env_free(e);
	big_free(&b);
}

static void test_large_spte_misaligned_host_maps_4k(void **state)
{
	struct mmu_env *e = env_new();
	struct big b = big_alloc(4 << 20, 2 << 20);

	(void)state;
	setup_2m(e, b.hva + PAGE_SIZE);
	assert_int_equal(env_fault(e, LGVA + 0x5000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_stats(e).large_sptes, 0);
	assert_shadow_maps(e, LGVA + 0x5010, MMU_ACCESS_READ,
			   b.hva + PAGE_SIZE + 0x5010);
	assert_shadow_misses(e, LGVA + 0x6000, MMU_ACCESS_READ);
	env_free(e);
	big_free(&b);
}

static void test_large_spte_maps_1g_guest_page(void **state)
{
	struct mmu_env *e = env_new();
	struct big b = big_alloc(1ULL << 30, 1ULL << 30);
	gfn_t base = 0x40000, pdpt;
	char err[128];

	(void)state;
	assert_int_equal(memslot_add(e->mmu, 3, base, 1ULL << 18, b.hva, 0, err,
				     sizeof(err)),
			 0);
	env_map(e, PML4, LGVA, BASE1, G_W | G_D);
	pdpt = e->next_table - 3;
	gpte_set(&e->m0, 0, pdpt, 2,
		 (base << PAGE_SHIFT) | G_P | G_W | G_D | G_PS);
	assert_int_equal(env_fault(e, 0x80000000ULL + 0x12345678,
				   MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_stats(e).large_sptes, 1);
	assert_shadow_maps(e, 0x80000000ULL + 0x3ffff008, MMU_ACCESS_WRITE,
			   b.hva + 0x3ffff008);
	env_audit(e);
	env_free(e);
	big_free(&b);
}

/*
 * A slot of 256 pages under a 2 MiB guest page: the frame runs past the
 * slot's end, so no large spte (it would map host memory after the
 * guest's RAM); the half inside is mapped 4 KiB at a time, and an access
 * past the end is an access to no memslot (MMIO).
 */
static void test_large_spte_not_past_slot_end(void **state)
{
	struct mmu_env *e = env_new();
	struct big b = big_alloc(2 << 20, 2 << 20);
	struct mmu_fault_info info;

	(void)state;
	map_2m_page(e, LBASE, 256, b.hva, LBASE);
	assert_int_equal(env_fault(e, LGVA + 0x1000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_stats(e).large_sptes, 0);
	assert_shadow_maps(e, LGVA + 0x1008, MMU_ACCESS_READ, b.hva + 0x1008);
	/* The first page past the slot: never host memory. */
	assert_shadow_misses(e, LGVA + 256 * PAGE_SIZE, MMU_ACCESS_READ);
	assert_int_equal(env_fault_info(e, LGVA + 256 * PAGE_SIZE + 0x10,
					MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(info.gpa, ((gfn_t)(LBASE + 256) << PAGE_SHIFT) + 0x10);
	assert_shadow_misses(e, LGVA + 511 * PAGE_SIZE, MMU_ACCESS_READ);
	assert_int_equal(env_stats(e).large_sptes, 0);
	env_free(e);
	big_free(&b);
}

/*
 * The same at the other end: a slot that starts half-way into the guest's
 * 2 MiB frame gets no large spte either; the gfns below the slot are
 * MMIO, not the host memory in front of the slot's mapping.
 */
static void test_large_spte_not_below_slot_start(void **state)
{
	struct mmu_env *e = env_new();
	struct big b = big_alloc(2 << 20, 2 << 20);
	struct mmu_fault_info info;

	(void)state;
	/* [LBASE + 256, LBASE + 512) at the second half of the aligned
	 * mapping, so the frame's would-be host address is aligned. */
	map_2m_page(e, LBASE + 256, 256, b.hva + (1 << 20), LBASE);
	assert_int_equal(env_fault(e, LGVA + (1 << 20), MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_stats(e).large_sptes, 0);
	assert_shadow_maps(e, LGVA + (1 << 20) + 8, MMU_ACCESS_WRITE,
			   b.hva + (1 << 20) + 8);
	assert_shadow_misses(e, LGVA, MMU_ACCESS_READ);
	assert_int_equal(env_fault_info(e, LGVA + 0x10, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(info.gpa, ((gfn_t)LBASE << PAGE_SHIFT) + 0x10);
	env_free(e);
	big_free(&b);
}

/*
 * A slot whose base is not frame aligned: rmap heads and lpage_disallow
 * counts above level 1 are indexed by frame number (gfn >> 9), not by
 * the offset into the slot, or a frame's large spte and its write-
 * tracked gfns land in different buckets. Slot 2 = [0x300, 0x600); the
 * frame [0x400, 0x600) is mapped by a 2 MiB guest page at LGVA, and the
 * guest then uses gfn 0x505, inside that frame, as a page table.
 */
#define UBASE 0x300
#define UPT 0x505

static void test_large_spte_unaligned_slot_tracks_frame_by_number(void **state)
{
	struct mmu_env *e = env_new();
	struct big b = big_alloc(4 << 20, 2 << 20);
	hva_t slot_hva = b.hva + (1 << 20);
	gfn_t pd;

	(void)state;
	pd = map_2m_page(e, UBASE, 0x300, slot_hva, 0x400);
	assert_int_equal(env_fault(e, LGVA, MMU_ACCESS_WRITE), MMU_FAULT_FIXED);
	assert_int_equal(env_stats(e).large_sptes, 1);
	assert_shadow_maps(e, LGVA + (UPT - 0x400) * PAGE_SIZE,
			   MMU_ACCESS_WRITE,
			   slot_hva + (UPT - UBASE) * PAGE_SIZE);
	env_audit(e);
	/* LGVA + 2 MiB goes through a page table at UPT. */
	atomic_store((_Atomic uint64_t *)(uintptr_t)(slot_hva +
						     (UPT - UBASE) * PAGE_SIZE),
		     (BASE1 << PAGE_SHIFT) | G_P | G_W | G_D);
	gpte_set(&e->m0, 0, pd, 1, ((gfn_t)UPT << PAGE_SHIFT) | G_P | G_W);
	assert_int_equal(env_fault(e, LGVA + (2 << 20), MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	/* The large spte over the table went with the tracking... */
	assert_shadow_misses(e, LGVA, MMU_ACCESS_READ);
	/* ...and none comes back while the table is shadowed: a store to
	 * it is emulated, its neighbours are mapped 4 KiB. */
	assert_int_equal(env_fault(e, LGVA + (UPT - 0x400) * PAGE_SIZE,
				   MMU_ACCESS_WRITE),
			 MMU_FAULT_EMULATE);
	assert_shadow_misses(e, LGVA + (UPT - 0x400) * PAGE_SIZE,
			     MMU_ACCESS_WRITE);
	assert_int_equal(env_fault(e, LGVA + 0x1000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, LGVA + 0x1008, MMU_ACCESS_WRITE,
			   slot_hva + (0x401 - UBASE) * PAGE_SIZE + 8);
	assert_int_equal(env_stats(e).large_sptes, 1);
	env_free(e);
	big_free(&b);
}

/* mmu_write_protect_gfn() covers every spte of the gfn, large ones too. */
static void test_large_spte_write_protect_gfn_inside_frame(void **state)
{
	struct mmu_env *e = env_new();
	struct big b = big_alloc(2 << 20, 2 << 20);
	unsigned flushes;

	(void)state;
	map_large_spte(e, b.hva);
	flushes = e->rec.flushes;
	assert_true(mmu_write_protect_gfn(e->mmu, LBASE + 3));
	assert_int_equal(e->rec.flushes - flushes, 1);
	assert_shadow_misses(e, LGVA + 3 * PAGE_SIZE, MMU_ACCESS_WRITE);
	assert_shadow_maps(e, LGVA + 3 * PAGE_SIZE, MMU_ACCESS_READ,
			   b.hva + 3 * PAGE_SIZE);
	/* Nothing writable left: no second flush. */
	assert_false(mmu_write_protect_gfn(e->mmu, LBASE + 3));
	assert_int_equal(e->rec.flushes - flushes, 1);
	env_free(e);
	big_free(&b);
}

/*
 * Dirty logging starts on a slot mapped only by a writable large spte:
 * the zap of that spte must reach every vCPU (remote flush) before
 * memslot_set_flags returns, or a vCPU keeps writing through its cached
 * 2 MiB translation and those pages are never logged.
 */
static void test_large_spte_dirty_log_start_flushes_remote_tlbs(void **state)
{
	struct mmu_env *e = env_new();
	struct big b = big_alloc(2 << 20, 2 << 20);
	unsigned flushes;
	char err[128];

	(void)state;
	map_large_spte(e, b.hva);
	flushes = e->rec.flushes;
	assert_int_equal(memslot_set_flags(e->mmu, 2, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	assert_true(e->rec.flushes - flushes >= 1);
	env_free(e);
	big_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_large_spte_maps_2m_guest_page_with_one_spte),
		cmocka_unit_test(
			test_large_spte_split_when_gfn_inside_write_tracked),
		cmocka_unit_test(
			test_large_spte_zapped_when_dirty_logging_starts),
		cmocka_unit_test(test_large_spte_misaligned_host_maps_4k),
		cmocka_unit_test(test_large_spte_maps_1g_guest_page),
		cmocka_unit_test(test_large_spte_not_past_slot_end),
		cmocka_unit_test(test_large_spte_not_below_slot_start),
		cmocka_unit_test(
			test_large_spte_unaligned_slot_tracks_frame_by_number),
		cmocka_unit_test(
			test_large_spte_write_protect_gfn_inside_frame),
		cmocka_unit_test(
			test_large_spte_dirty_log_start_flushes_remote_tlbs),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
