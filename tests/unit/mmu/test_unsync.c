/*
 * Unsync and sync of level-1 shadow pages (docs/MMU.md, "Unsync and
 * sync"): a
 * guest store to a leaf page table goes through a writable spte instead
 * of emulation; the shadow may keep the old translation until the guest
 * flushes (INVLPG, MOV CR3), and then sees the new one; a sync covers
 * only what the new root reaches, so an unsync page behind another root
 * stays unsync; upper-level tables stay write-tracked. Every test ends
 * with a clean audit, which checks the unsync bitmaps.
 */
#include "mmu_env.h"

static struct mmu_page *root_page(struct mmu_vcpu *v)
{
	return (struct mmu_page *)(uintptr_t)mmu_vcpu_root(v);
}

/* 0x400000 -> data and a window at 0x402000 onto the PT mapping both. */
static gfn_t map_window(struct mmu_env *e, gfn_t pml4, gfn_t data)
{
	gfn_t pt;

	env_map(e, pml4, 0x400000, data, G_W | G_D);
	pt = e->next_table - 1;
	env_map(e, pml4, 0x402000, pt, G_W | G_D);
	return pt;
}

/*
 * Unsync on and map_window under PML4; the guest writes 0x400000 (its PT
 * gets shadowed) and then accesses the PT through the window, which a
 * write makes unsync. Returns the PT's gfn.
 */
static gfn_t fault_in_window(struct mmu_env *e, unsigned window_access)
{
	gfn_t pt;

	mmu_set_unsync(e->mmu, true);
	pt = map_window(e, PML4, BASE1);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_fault(e, 0x402000, window_access),
			 MMU_FAULT_FIXED);
	return pt;
}

/*
 * The guest stores gpte into PTE 0 of the unsync PT through its writable
 * window at 0x402000: a plain store, which the MMU does not see. Returns
 * the PTE's host address.
 */
static _Atomic uint64_t *store_pte_through_window(struct mmu_env *e,
						  uint64_t gpte)
{
	hva_t pte;

	assert_int_equal(env_xlate(e, 0x402000, MMU_ACCESS_WRITE, &pte), 0);
	atomic_store((_Atomic uint64_t *)(uintptr_t)pte, gpte);
	return (_Atomic uint64_t *)(uintptr_t)pte;
}

static void
test_unsync_leaf_table_write_maps_writable_not_emulated(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;
	gfn_t pt;

	(void)state;
	pt = fault_in_window(e, MMU_ACCESS_WRITE);
	assert_shadow_maps(e, 0x402008, MMU_ACCESS_WRITE, env_hva(e, pt) + 8);
	st = env_stats(e);
	assert_int_equal(st.unsyncs, 1);
	assert_int_equal(st.tracked_write_faults, 1);
	assert_int_equal(st.faults_emulate, 0);
	assert_true(root_page(e->v)->unsync_children == 1);
	env_free(e);
}

static void
test_unsync_guest_pte_store_seen_after_invlpg_not_before(void **state)
{
	struct mmu_env *e = env_new();
	hva_t pte;

	(void)state;
	fault_in_window(e, MMU_ACCESS_WRITE);
	/* The guest retargets PTE 0 through its writable window. */
	store_pte_through_window(e,
				 ((BASE1 + 5) << PAGE_SHIFT) | G_P | G_W | G_D);
	/* No flush yet: the old translation may still be used (SDM vol. 3,
	 * 4.10.4.3), and the audit accepts the unsync page lagging. */
	assert_shadow_maps(e, 0x400000, MMU_ACCESS_READ, env_hva(e, BASE1));
	env_audit(e);
	/* INVLPG of another address syncs nothing on this path. */
	mmu_invlpg(e->v, 0x401000);
	assert_shadow_maps(e, 0x400000, MMU_ACCESS_READ, env_hva(e, BASE1));
	mmu_invlpg(e->v, 0x400000);
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_READ);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x400000, MMU_ACCESS_READ, env_hva(e, BASE1 + 5));
	/* INVLPG leaves the page unsync: the window stays writable. */
	assert_int_equal(env_xlate(e, 0x402000, MMU_ACCESS_WRITE, &pte), 0);
	env_free(e);
}

static void test_unsync_guest_pte_store_seen_after_cr3_reload(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;
	uint64_t flushes;
	hva_t hva;

	(void)state;
	fault_in_window(e, MMU_ACCESS_WRITE);
	store_pte_through_window(e, ((BASE1 + 7) << PAGE_SHIFT) | G_P | G_D);
	assert_int_equal(env_xlate(e, 0x400000, MMU_ACCESS_WRITE, &hva), 0);
	flushes = e->rec.flushes;
	/* MOV CR3 with the same value: a sync point. */
	assert_int_equal(mmu_vcpu_sync(e->v, &e->cpu), 0);
	st = env_stats(e);
	assert_int_equal(st.syncs, 1);
	/* One flush for the write protection, one for the dropped spte. */
	assert_int_equal(e->rec.flushes - flushes, 2);
	assert_int_equal(root_page(e->v)->unsync_children, 0);
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_READ);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x400000, MMU_ACCESS_READ, env_hva(e, BASE1 + 7));
	/* Read-only now, as the new gpte says. */
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_WRITE);
	/* In sync again: the window is write-protected until the next
	 * store unsyncs it again. */
	assert_shadow_misses(e, 0x402000, MMU_ACCESS_WRITE);
	env_audit(e);
	assert_int_equal(env_fault(e, 0x402000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	st = env_stats(e);
	assert_int_equal(st.unsyncs, 2);
	env_free(e);
}

/*
 * A second address space with its own PT and window, its leaf table
 * made unsync by v2's writes, as fault_in_window() does for the first.
 * Returns its CPU state.
 */
static struct mmu_cpu_state second_unsync_window(struct mmu_env *e,
						 struct mmu_vcpu *v2)
{
	gfn_t pml4b = e->next_table++;
	struct mmu_cpu_state cpu2 = boot_cpu(pml4b);
	struct mmu_fault_info info;

	map_window(e, pml4b, BASE1 + 1);
	assert_int_equal(env_fault_v(v2, &cpu2, 0x400000, MMU_ACCESS_WRITE,
				     &info),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_fault_v(v2, &cpu2, 0x402000, MMU_ACCESS_WRITE,
				     &info),
			 MMU_FAULT_FIXED);
	return cpu2;
}

static void test_unsync_sync_of_one_root_leaves_other_root_unsync(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_vcpu *v2 = mmu_vcpu_create(e->mmu, 1);
	struct mmu_cpu_state cpu2;
	struct mmu_stats st;
	hva_t hva;

	(void)state;
	fault_in_window(e, MMU_ACCESS_WRITE);
	cpu2 = second_unsync_window(e, v2);
	st = env_stats(e);
	assert_int_equal(st.unsyncs, 2);
	assert_int_equal(mmu_vcpu_sync(e->v, &e->cpu), 0);
	st = env_stats(e);
	assert_int_equal(st.syncs, 1);
	/* Only what the first root reaches was synced. */
	assert_int_equal(root_page(e->v)->unsync_children, 0);
	assert_int_equal(root_page(v2)->unsync_children, 1);
	assert_shadow_misses(e, 0x402000, MMU_ACCESS_WRITE);
	assert_int_equal(
		env_xlate_v(v2, &cpu2, 0x402000, MMU_ACCESS_WRITE, &hva), 0);
	env_audit(e);
	/* Loading the second root elsewhere is a sync point for it. */
	mmu_vcpu_unload(e->v);
	assert_int_equal(mmu_vcpu_load(e->v, &cpu2), 0);
	st = env_stats(e);
	assert_int_equal(st.syncs, 2);
	assert_int_equal(root_page(v2)->unsync_children, 0);
	mmu_vcpu_destroy(v2);
	env_free(e);
}

/* unsync=all (docs/MMU.md, "Switches"): a sync point syncs the unsync
 * pages of every root, not only those the loaded root reaches. */
static void test_unsync_all_syncs_pages_of_other_roots_too(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_vcpu *v2 = mmu_vcpu_create(e->mmu, 1);
	struct mmu_cpu_state cpu2;
	struct mmu_fault_info info;

	(void)state;
	fault_in_window(e, MMU_ACCESS_WRITE);
	mmu_option_set(e->mmu, MMU_OPT_UNSYNC, MMU_UNSYNC_ALL);
	cpu2 = second_unsync_window(e, v2);
	assert_int_equal(env_stats(e).unsyncs, 2);
	assert_int_equal(mmu_vcpu_sync(e->v, &e->cpu), 0);
	assert_int_equal(env_stats(e).syncs, 2);
	assert_int_equal(root_page(e->v)->unsync_children, 0);
	assert_int_equal(root_page(v2)->unsync_children, 0);
	/* Synced means write-protected again, behind either root. */
	assert_shadow_misses(e, 0x402000, MMU_ACCESS_WRITE);
	assert_int_equal(env_fault_v(v2, &cpu2, 0x402000, MMU_ACCESS_WRITE,
				     &info),
			 MMU_FAULT_FIXED);
	env_audit(e);
	mmu_vcpu_destroy(v2);
	env_free(e);
}

/* unsync=off: a write to a leaf table is emulated, as upper levels are. */
static void test_unsync_off_emulates_leaf_table_writes(void **state)
{
	struct mmu_env *e = env_new();

	(void)state;
	map_window(e, PML4, BASE1);
	mmu_option_set(e->mmu, MMU_OPT_UNSYNC, MMU_UNSYNC_OFF);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_fault(e, 0x402000, MMU_ACCESS_WRITE),
			 MMU_FAULT_EMULATE);
	assert_int_equal(env_stats(e).unsyncs, 0);
	env_audit(e);
	env_free(e);
}

static void test_unsync_upper_level_table_write_still_emulated(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;
	gfn_t pd;

	(void)state;
	mmu_set_unsync(e->mmu, true);
	env_map(e, PML4, 0x400000, BASE1, G_W | G_D);
	pd = e->next_table - 2;
	/* A window onto the page directory (a level-2 table). */
	env_map(e, PML4, 0x403000, pd, G_W | G_D);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_fault(e, 0x403000, MMU_ACCESS_WRITE),
			 MMU_FAULT_EMULATE);
	st = env_stats(e);
	assert_int_equal(st.unsyncs, 0);
	env_free(e);
}

static void test_unsync_page_becoming_upper_table_is_resynced(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;
	gfn_t pt, pdpt;

	(void)state;
	pt = fault_in_window(e, MMU_ACCESS_WRITE);
	pdpt = pt - 2;
	/* The guest now also uses the PT's gfn as a page directory for
	 * 0x40000000 (its entry 0 then names BASE1 as a page table). */
	gpte_set(&e->m0, 0, pdpt, 1, (pt << PAGE_SHIFT) | G_P | G_W | G_U);
	gpte_set(&e->m1, BASE1, BASE1, 0, (0x10ULL << PAGE_SHIFT) | G_P);
	assert_int_equal(env_fault(e, 0x40000000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	st = env_stats(e);
	assert_int_equal(st.syncs, 1);
	/* Write-tracked at level 2 now: no more unsync. */
	assert_int_equal(env_fault(e, 0x402000, MMU_ACCESS_WRITE),
			 MMU_FAULT_EMULATE);
	env_free(e);
}

/*
 * The guest clears D in a PTE of an unsync table (a store through its
 * writable window, which the MMU does not see) and flushes. The sync
 * must take W away from the spte: a clean page is mapped read-only so
 * that the next write faults and the walk sets D again (SDM vol. 3,
 * 4.8); a writable spte would let the guest write without D ever being
 * set, and it would lose its dirty tracking. A stays set, so only the D
 * rule can catch it. Both flush points: INVLPG and MOV CR3.
 */
static void test_unsync_sync_write_protects_clean_gpte(void **state)
{
	int mode;

	(void)state;
	for (mode = 0; mode < 2; mode++) {
		struct mmu_env *e = env_new();
		_Atomic uint64_t *pte;
		unsigned flushes;
		hva_t hva;

		fault_in_window(e, MMU_ACCESS_WRITE);
		assert_int_equal(env_stats(e).unsyncs, 1);
		assert_int_equal(env_xlate(e, 0x400000, MMU_ACCESS_WRITE, &hva),
				 0);
		pte = store_pte_through_window(e, (BASE1 << PAGE_SHIFT) | G_P |
							  G_W | G_A);
		flushes = e->rec.flushes;
		if (mode == 0) {
			mmu_invlpg(e->v, 0x400000);
			/* The dropped writable spte is flushed everywhere. */
			assert_int_equal(e->rec.flushes - flushes, 1);
		} else {
			assert_int_equal(mmu_vcpu_sync(e->v, &e->cpu), 0);
			assert_true(e->rec.flushes - flushes >= 1);
		}
		assert_shadow_misses(e, 0x400000, MMU_ACCESS_WRITE);
		/* The write faults, the walk sets D, and then it is
		 * writable again. */
		assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
				 MMU_FAULT_FIXED);
		assert_true(atomic_load(pte) & G_D);
		assert_shadow_maps(e, 0x400000, MMU_ACCESS_WRITE,
				   env_hva(e, BASE1));
		env_free(e);
	}
}

/*
 * A PTE of an unsync table that the guest made invalid behind the MMU
 * (not present, a reserved address bit, or XD while EFER.NXE=0, which
 * is reserved too: SDM vol. 3, 4.5.4 and table 4-20) must lose its spte
 * at the guest's INVLPG: the next access walks and takes the guest's
 * #PF instead of using the old translation.
 */
static void test_unsync_invlpg_drops_spte_of_invalid_gpte(void **state)
{
	static const struct {
		uint64_t pte;
		uint32_t ec;
	} cases[] = {
		{ (BASE1 << PAGE_SHIFT) | G_W | G_D | G_A, 0 },
		{ (BASE1 << PAGE_SHIFT) | (1ULL << 50) | G_P | G_W | G_D | G_A,
		  PFERR_PRESENT | PFERR_RSVD },
		{ (BASE1 << PAGE_SHIFT) | G_NX | G_P | G_W | G_D | G_A,
		  PFERR_PRESENT | PFERR_RSVD },
	};
	unsigned i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mmu_env *e = env_new();
		struct mmu_fault_info info;
		hva_t hva;

		e->cpu.efer &= ~X86_EFER_NXE;
		fault_in_window(e, MMU_ACCESS_WRITE);
		store_pte_through_window(e, cases[i].pte);
		mmu_invlpg(e->v, 0x400000);
		if (env_xlate(e, 0x400000, MMU_ACCESS_READ, &hva) != -EFAULT)
			fail_msg("case %u: gpte 0x%llx still mapped after "
				 "INVLPG",
				 i, (unsigned long long)cases[i].pte);
		assert_int_equal(env_fault_info(e, 0x400000, MMU_ACCESS_READ,
						&info),
				 MMU_FAULT_GUEST_PF);
		assert_int_equal(info.error_code, cases[i].ec);
		env_free(e);
	}
}

/*
 * After a fast zap-all, the obsolete pages still shadow the guest's
 * tables (and keep them write-tracked) until mmu_zap_obsolete_pages()
 * frees them. A write fault on such a gfn must not unsync: the obsolete
 * page could never be synced (no root reaches it), so the write is
 * emulated instead.
 */
static void test_unsync_not_while_obsolete_page_shadows_gfn(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;
	gfn_t pt;

	(void)state;
	pt = fault_in_window(e, MMU_ACCESS_READ);
	mmu_zap_all_fast(e->mmu);
	/* The vCPU handles its request: it drops the obsolete root. */
	mmu_vcpu_free_obsolete_roots(e->v);
	assert_int_equal(env_fault(e, 0x402000, MMU_ACCESS_WRITE),
			 MMU_FAULT_EMULATE);
	st = env_stats(e);
	assert_int_equal(st.unsyncs, 0);
	assert_shadow_misses(e, 0x402000, MMU_ACCESS_WRITE);
	env_audit(e);
	/* Once they are freed, the same write unsyncs. */
	assert_true(mmu_zap_obsolete_pages(e->mmu) > 0);
	assert_int_equal(env_fault(e, 0x402000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_stats(e).unsyncs, 1);
	assert_shadow_maps(e, 0x402000, MMU_ACCESS_WRITE, env_hva(e, pt));
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_unsync_leaf_table_write_maps_writable_not_emulated),
		cmocka_unit_test(
			test_unsync_guest_pte_store_seen_after_invlpg_not_before),
		cmocka_unit_test(
			test_unsync_guest_pte_store_seen_after_cr3_reload),
		cmocka_unit_test(
			test_unsync_sync_of_one_root_leaves_other_root_unsync),
		cmocka_unit_test(
			test_unsync_all_syncs_pages_of_other_roots_too),
		cmocka_unit_test(test_unsync_off_emulates_leaf_table_writes),
		cmocka_unit_test(
			test_unsync_upper_level_table_write_still_emulated),
		cmocka_unit_test(
			test_unsync_page_becoming_upper_table_is_resynced),
		cmocka_unit_test(test_unsync_sync_write_protects_clean_gpte),
		cmocka_unit_test(test_unsync_invlpg_drops_spte_of_invalid_gpte),
		cmocka_unit_test(
			test_unsync_not_while_obsolete_page_shadows_gfn),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
