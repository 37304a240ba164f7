/*
 * MMIO sptes (docs/MMU.md, "MMIO sptes"): a gfn with no memslot leaves an spte the
 * CPU sees as not present, which answers the next fault without the
 * guest walk; it is stale once the memslot generation moved, never made
 * while an update is in progress, and all of them go when the stamp
 * wraps — tested by starting the generation just below the stamp's
 * maximum, as KVM's tests once did.
 */
#include "mmu_env.h"

#define MMIO_GFN 0x5000
#define MMIO_GVA 0x400000

static void set_generation(struct mmu_env *e, uint64_t gen)
{
	/* No update is in flight: the test owns the memslot set. */
	atomic_store(&mmu_slots_locked(e->mmu)->generation, gen);
}

static void walk_counted(struct mmu_env *e, uint64_t *a_bits)
{
	/* The walker sets A on the leaf gpte; clearing it shows whether
	 * the next fault walked. */
	gfn_t pt = e->next_table - 1;

	*a_bits = gpte_get(&e->m0, 0, pt, 0) & G_A;
	gpte_set(&e->m0, 0, pt, 0, gpte_get(&e->m0, 0, pt, 0) & ~G_A);
}

static void test_mmio_spte_repeat_access_skips_guest_walk(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;
	struct mmu_stats st;
	uint64_t a;

	(void)state;
	env_map(e, PML4, MMIO_GVA, MMIO_GFN, G_W | G_D);
	assert_int_equal(env_fault_info(e, MMIO_GVA + 0x10, MMU_ACCESS_READ,
					&info),
			 MMU_FAULT_MMIO);
	assert_int_equal(info.gpa, (MMIO_GFN << PAGE_SHIFT) + 0x10);
	walk_counted(e, &a);
	assert_true(a);
	/* Not present to the CPU: the access faults again. */
	assert_shadow_misses(e, MMIO_GVA, MMU_ACCESS_READ);
	assert_int_equal(env_fault_info(e, MMIO_GVA + 0x24, MMU_ACCESS_WRITE,
					&info),
			 MMU_FAULT_MMIO);
	assert_int_equal(info.gpa, (MMIO_GFN << PAGE_SHIFT) + 0x24);
	walk_counted(e, &a);
	assert_false(a); /* answered from the spte */
	st = env_stats(e);
	assert_int_equal(st.mmio_sptes, 1);
	assert_int_equal(st.mmio_hits, 1);
	assert_int_equal(st.faults_mmio, 2);
	/* A user access to the supervisor mapping walks and gets #PF. */
	e->cpu.cpl = 3;
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_GUEST_PF);
	e->cpu.cpl = 0;
	env_free(e);
}

static void test_mmio_spte_stale_after_memslot_add_maps_ram(void **state)
{
	struct mmu_env *e = env_new();
	struct tmem m2 = tmem_alloc(1);
	struct mmu_fault_info info;
	char err[128];

	(void)state;
	env_map(e, PML4, MMIO_GVA, MMIO_GFN, G_W | G_D);
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(memslot_add(e->mmu, 2, MMIO_GFN, 1, tmem_hva(&m2), 0,
				     err, sizeof(err)),
			 0);
	/* The audit checks the old spte no longer matches. */
	env_audit(e);
	assert_int_equal(env_fault(e, MMIO_GVA, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, MMIO_GVA, MMU_ACCESS_READ, tmem_hva(&m2));
	assert_int_equal(env_stats(e).mmio_hits, 0);
	assert_int_equal(memslot_delete(e->mmu, 2, err, sizeof(err)), 0);
	/* RAM back to MMIO: the present spte is dropped first. */
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	env_free(e);
	tmem_free(&m2);
}

static void test_mmio_spte_never_made_during_memslot_update(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;
	uint64_t gen;

	(void)state;
	env_map(e, PML4, MMIO_GVA, MMIO_GFN, G_W | G_D);
	gen = memslot_generation(e->mmu);
	set_generation(e, gen | MEMSLOT_GEN_UPDATE_IN_PROGRESS);
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_stats(e).mmio_sptes, 0);
	set_generation(e, gen);
	env_free(e);
}

static void test_mmio_generation_wrap_zaps_every_mmio_spte(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;
	struct mmu_stats st;
	char err[128];

	(void)state;
	env_map(e, PML4, MMIO_GVA, MMIO_GFN, G_W | G_D);
	/* Two updates below the wrap of the stamp. */
	set_generation(e, (7ULL << 40) | (MMIO_GEN_MASK - 1));
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_stats(e).mmio_hits, 1);
	/* One update: stale, nothing zapped yet. */
	assert_int_equal(memslot_set_flags(e->mmu, 1, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	st = env_stats(e);
	assert_int_equal(st.fast_zaps, 0);
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_stats(e).mmio_hits, 1);
	assert_int_equal(env_stats(e).mmio_sptes, 2);
	/* The next one wraps the stamp to zero: everything goes. */
	assert_int_equal(memslot_set_flags(e->mmu, 1, 0, err, sizeof(err)), 0);
	assert_int_equal(memslot_generation(e->mmu) & MMIO_GEN_MASK, 0);
	st = env_stats(e);
	assert_int_equal(st.fast_zaps, 1);
	assert_true(st.obsolete_freed > 0);
	/* Only the vCPU's pinned (zapped) root is left. */
	assert_int_equal(st.pages, 1);
	env_audit(e);
	/* The vCPU reloads and the gfn is MMIO through a fresh spte. */
	mmu_vcpu_free_obsolete_roots(e->v);
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	st = env_stats(e);
	assert_int_equal(st.mmio_sptes, 3);
	assert_int_equal(st.mmio_hits, 1);
	env_free(e);
}

/* Two updates up to the wrap of the stamp, with an MMIO spte and a RAM
 * translation in place before them. */
static void wrap_with_ram_mapped(struct mmu_env *e)
{
	struct mmu_fault_info info;
	char err[128];

	env_map(e, PML4, MMIO_GVA, MMIO_GFN, G_W | G_D);
	env_map(e, PML4, MMIO_GVA + 0x200000, BASE1, G_W | G_D);
	set_generation(e, (7ULL << 40) | (MMIO_GEN_MASK - 1));
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_fault(e, MMIO_GVA + 0x200000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_int_equal(memslot_set_flags(e->mmu, 1, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	assert_int_equal(memslot_set_flags(e->mmu, 1, 0, err, sizeof(err)), 0);
	assert_int_equal(memslot_generation(e->mmu) & MMIO_GEN_MASK, 0);
}

/* mmio-wrap=zap-mmio (docs/MMU.md, "Switches"): the wrap clears the MMIO
 * sptes and nothing else; the RAM translation survives it. */
static void test_mmio_generation_wrap_zap_mmio_keeps_ram_sptes(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;
	struct mmu_stats before, st;

	(void)state;
	mmu_option_set(e->mmu, MMU_OPT_MMIO_WRAP, MMU_MMIO_WRAP_ZAP_MMIO);
	wrap_with_ram_mapped(e);
	st = env_stats(e);
	assert_int_equal(st.fast_zaps, 0);
	assert_int_equal(st.zapped_pages, 0);
	assert_shadow_maps(e, MMIO_GVA + 0x200000, MMU_ACCESS_READ,
			   env_hva(e, BASE1));
	env_audit(e);
	/* The MMIO spte is gone: the next fault walks and makes a new one
	 * rather than answering from the old stamp. */
	before = env_stats(e);
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	st = env_stats(e);
	assert_int_equal(st.mmio_hits, before.mmio_hits);
	assert_int_equal(st.mmio_sptes, before.mmio_sptes + 1);
	env_free(e);
}

/* zap-all=slow: the wrap zaps every page under mmu_lock, no obsolete
 * generation. */
static void test_mmio_generation_wrap_slow_zaps_every_page(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;

	(void)state;
	mmu_option_set(e->mmu, MMU_OPT_ZAP_ALL, MMU_ZAP_ALL_SLOW);
	wrap_with_ram_mapped(e);
	st = env_stats(e);
	assert_int_equal(st.fast_zaps, 0);
	assert_true(st.zapped_pages > 0);
	assert_shadow_misses(e, MMIO_GVA + 0x200000, MMU_ACCESS_READ);
	env_audit(e);
	env_free(e);
}

/*
 * Why the wrap must clear old MMIO sptes, in each of its modes: an spte
 * stamped with the low bits the generation comes back to, for a gfn that
 * became RAM meanwhile, would answer MMIO again. Each mode must leave
 * the fault to map the RAM.
 */
static void test_mmio_generation_wrap_never_revives_old_stamp(void **state)
{
	static const struct {
		enum mmu_option opt;
		unsigned int val;
	} modes[] = {
		{ MMU_OPT_MMIO_WRAP, MMU_MMIO_WRAP_ZAP_ALL },
		{ MMU_OPT_ZAP_ALL, MMU_ZAP_ALL_SLOW },
		{ MMU_OPT_MMIO_WRAP, MMU_MMIO_WRAP_ZAP_MMIO },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct mmu_env *e = env_new();
		struct tmem m2 = tmem_alloc(1);
		struct mmu_fault_info info;
		char err[128];

		mmu_option_set(e->mmu, modes[i].opt, modes[i].val);
		env_map(e, PML4, MMIO_GVA, MMIO_GFN, G_W | G_D);
		/* Stamped with low bits 0. */
		set_generation(e, 5ULL << 40);
		assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ,
						&info),
				 MMU_FAULT_MMIO);
		assert_int_equal(memslot_add(e->mmu, 2, MMIO_GFN, 1,
					     tmem_hva(&m2), 0, err,
					     sizeof(err)),
				 0);
		/* Much later, two updates from the wrap back to 0. */
		set_generation(e, (7ULL << 40) | (MMIO_GEN_MASK - 1));
		assert_int_equal(memslot_set_flags(e->mmu, 1, MEMSLOT_LOG_DIRTY,
						   err, sizeof(err)),
				 0);
		assert_int_equal(
			memslot_set_flags(e->mmu, 1, 0, err, sizeof(err)), 0);
		assert_int_equal(memslot_generation(e->mmu) & MMIO_GEN_MASK, 0);
		mmu_vcpu_free_obsolete_roots(e->v);
		if (env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info) !=
		    MMU_FAULT_FIXED)
			fail_msg("mode %zu: the gfn, RAM now, answered as MMIO "
				 "from an spte of the last cycle",
				 i);
		assert_shadow_maps(e, MMIO_GVA, MMU_ACCESS_READ, tmem_hva(&m2));
		env_audit(e);
		assert_int_equal(memslot_delete(e->mmu, 2, err, sizeof(err)),
				 0);
		env_free(e);
		tmem_free(&m2);
	}
}

/*
 * While a memslot update is between publish and the end of its grace
 * period, an MMIO spte cached before it may be stale even though its
 * stamp still equals the generation's low bits (the bump comes only at
 * the end): the fault must walk instead of answering from the spte.
 */
static void test_mmio_spte_not_used_during_memslot_update(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;
	uint64_t gen, a;

	(void)state;
	env_map(e, PML4, MMIO_GVA, MMIO_GFN, G_W | G_D);
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_stats(e).mmio_sptes, 1);
	walk_counted(e, &a);
	gen = memslot_generation(e->mmu);
	set_generation(e, gen | MEMSLOT_GEN_UPDATE_IN_PROGRESS);
	assert_int_equal(env_fault_info(e, MMIO_GVA + 8, MMU_ACCESS_READ,
					&info),
			 MMU_FAULT_MMIO);
	assert_int_equal(info.gpa, (MMIO_GFN << PAGE_SHIFT) + 8);
	assert_int_equal(env_stats(e).mmio_hits, 0);
	walk_counted(e, &a);
	assert_true(a); /* walked */
	/* Once the update is over, the spte answers again. */
	set_generation(e, gen);
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	env_free(e);
}

/*
 * The MMIO spte caches the access the guest walk granted; a fault the
 * walk would refuse is never answered from it: a write through a
 * read-only mapping, and a supervisor read of a user page under SMAP
 * (SDM vol. 3, 4.6.1) are the guest's #PF.
 */
static void test_mmio_spte_never_answers_what_walk_refuses(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;

	(void)state;
	env_map(e, PML4, MMIO_GVA, MMIO_GFN, G_D);
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_WRITE, &info),
			 MMU_FAULT_GUEST_PF);
	assert_int_equal(info.error_code, PFERR_PRESENT | PFERR_WRITE);
	assert_int_equal(env_stats(e).mmio_hits, 0);

	/* A user page, cached by a user access. */
	env_map(e, PML4, MMIO_GVA + 0x200000, MMIO_GFN + 1, G_W | G_D | G_U);
	e->cpu.cpl = 3;
	assert_int_equal(env_fault_info(e, MMIO_GVA + 0x200000, MMU_ACCESS_READ,
					&info),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_fault_info(e, MMIO_GVA + 0x200000, MMU_ACCESS_READ,
					&info),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_stats(e).mmio_hits, 1);
	e->cpu.cpl = 0;
	e->cpu.cr4 |= X86_CR4_SMAP;
	assert_int_equal(env_fault_info(e, MMIO_GVA + 0x200000, MMU_ACCESS_READ,
					&info),
			 MMU_FAULT_GUEST_PF);
	assert_int_equal(info.error_code, PFERR_PRESENT);
	assert_int_equal(env_stats(e).mmio_hits, 1);
	env_free(e);
}

/*
 * The guest retargets a PTE from an MMIO gfn to RAM by a store the MMU
 * emulates (the table is shadowed): the MMIO spte derived from the old
 * gpte goes with the store, or the next access would still be answered
 * "MMIO" from it while the generation has not moved.
 */
static void test_mmio_spte_zapped_by_emulated_gpte_write(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;
	gfn_t pt;

	(void)state;
	env_map(e, PML4, MMIO_GVA, MMIO_GFN, G_W | G_D);
	pt = e->next_table - 1;
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_stats(e).mmio_sptes, 1);
	assert_int_equal(
		mmu_emulate_write(
			e->v, (pt << PAGE_SHIFT) + spte_index(MMIO_GVA, 1) * 8,
			(BASE1 << PAGE_SHIFT) | G_P | G_W | G_D, 8),
		0);
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, MMIO_GVA, MMU_ACCESS_READ, env_hva(e, BASE1));
	assert_int_equal(env_stats(e).mmio_hits, 0);
	env_free(e);
}

/*
 * Only the wrap of the whole stamp zaps: a generation whose low 15 bits
 * roll over (0x7fff -> 0x8000) still differs from every stamp made
 * since the last wrap, and a needless zap-all drops every shadow page
 * and kicks every vCPU.
 */
static void test_mmio_generation_no_zap_before_stamp_wraps(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;
	char err[128];

	(void)state;
	env_map(e, PML4, MMIO_GVA, MMIO_GFN, G_W | G_D);
	set_generation(e, (3ULL << 40) | (MMIO_GEN_MASK >> 1));
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(memslot_set_flags(e->mmu, 1, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	assert_int_equal(memslot_generation(e->mmu) & MMIO_GEN_MASK,
			 (MMIO_GEN_MASK >> 1) + 1);
	assert_int_equal(env_stats(e).fast_zaps, 0);
	/* Stale all the same: the fault walks and makes a new one. */
	assert_int_equal(env_fault_info(e, MMIO_GVA, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_stats(e).mmio_hits, 0);
	assert_int_equal(env_stats(e).mmio_sptes, 2);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mmio_spte_repeat_access_skips_guest_walk),
		cmocka_unit_test(
			test_mmio_spte_stale_after_memslot_add_maps_ram),
		cmocka_unit_test(
			test_mmio_spte_never_made_during_memslot_update),
		cmocka_unit_test(
			test_mmio_generation_wrap_zaps_every_mmio_spte),
		cmocka_unit_test(test_mmio_spte_not_used_during_memslot_update),
		cmocka_unit_test(
			test_mmio_spte_never_answers_what_walk_refuses),
		cmocka_unit_test(test_mmio_spte_zapped_by_emulated_gpte_write),
		cmocka_unit_test(
			test_mmio_generation_no_zap_before_stamp_wraps),
		cmocka_unit_test(
			test_mmio_generation_wrap_zap_mmio_keeps_ram_sptes),
		cmocka_unit_test(
			test_mmio_generation_wrap_slow_zaps_every_page),
		cmocka_unit_test(
			test_mmio_generation_wrap_never_revives_old_stamp),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
