/*
 * Fast zap-all (docs/MMU.md, "Fast zap-all and obsolete pages"): the
 * caller only bumps the 64-bit
 * generation and asks every vCPU to drop its obsolete root; faults on an
 * obsolete root retry; obsolete pages are freed later, in batches, by
 * mmu_zap_obsolete_pages(). Under the threaded vCPU double, fast zaps
 * back to back while vCPUs fault and touch memory: the audit checks after
 * every round that no obsolete page is linked from a current one (so
 * none is reachable from a current root), and in the end every page is
 * freed.
 */
#include "mmu_env.h"
#include "vcpu_double.h"

#if defined(MMUD_TSAN)
#define ROUNDS 400
#elif defined(__SANITIZE_ADDRESS__)
#define ROUNDS 2000
#else
#define ROUNDS 10000
#endif

/*
 * The guest writes BASE1 at 0x400000 and BASE1 + 1 at gva, shadowing the
 * tables on both paths; returns how many shadow pages that made.
 */
static uint64_t write_two_pages(struct mmu_env *e, gva_t gva)
{
	env_map(e, PML4, 0x400000, BASE1, G_W | G_D);
	env_map(e, PML4, gva, BASE1 + 1, G_W | G_D);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_fault(e, gva, MMU_ACCESS_WRITE), MMU_FAULT_FIXED);
	return env_stats(e).pages;
}

static void
test_zap_fast_caller_returns_pages_obsolete_until_freed(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;
	uint64_t pages, freed;

	(void)state;
	pages = write_two_pages(e, 0x800000);
	mmu_zap_all_fast(e->mmu);
	/* O(1): nothing freed yet; every vCPU was asked, with wait. */
	st = env_stats(e);
	assert_int_equal(st.pages, pages);
	assert_int_equal(st.fast_zaps, 1);
	assert_int_equal(e->rec.free_roots, 1);
	assert_true(e->rec.waits >= 1);
	env_audit(e);
	/* A back-to-back second zap is harmless. */
	mmu_zap_all_fast(e->mmu);
	env_audit(e);
	/* The vCPU still holds its obsolete root until it handles the
	 * request: a fault on it drops it and retries. */
	{
		struct mmu_fault_info info;

		assert_int_equal(mmu_page_fault(e->v, &e->cpu, 0x400000,
						MMU_ACCESS_READ, &info),
				 MMU_FAULT_RETRY);
	}
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x400000, MMU_ACCESS_READ, env_hva(e, BASE1));
	/* The new root reaches nothing of the old generations. */
	assert_shadow_misses(e, 0x800000, MMU_ACCESS_READ);
	env_audit(e);
	freed = mmu_zap_obsolete_pages(e->mmu);
	assert_int_equal(freed, pages);
	st = env_stats(e);
	assert_int_equal(st.obsolete_freed, pages);
	assert_int_equal(st.pages, 4);
	assert_int_equal(mmu_zap_obsolete_pages(e->mmu), 0);
	env_free(e);
}

/*
 * The obsolete pages are unlinked from each other, then freed: a vCPU
 * that was in guest mode on a walk through them must have left it
 * first, so one remote flush with wait comes between (and only one, for
 * every batch).
 */
static void test_zap_fast_obsolete_pages_freed_after_one_flush(void **state)
{
	struct mmu_env *e = env_new();
	unsigned flushes, waits;
	uint64_t pages;

	(void)state;
	pages = write_two_pages(e, 0x40000000);
	mmu_zap_all_fast(e->mmu);
	mmu_vcpu_free_obsolete_roots(e->v);
	flushes = e->rec.flushes;
	waits = e->rec.waits;
	assert_int_equal(mmu_zap_obsolete_pages(e->mmu), pages);
	assert_int_equal(e->rec.flushes - flushes, 1);
	assert_int_equal(e->rec.waits - waits, 1);
	assert_int_equal(env_stats(e).pages, 0);
	env_free(e);
}

/* Slot 1's pages spread over several page tables and directories, half
 * of them clean, and one gfn with no memslot (MMIO). */
static void map_spread(struct tenv *t)
{
	unsigned i;

	for (i = 0; i < NPAGES1; i++)
		tenv_map_touched(t, 0x400000 + i * 0x201000ULL, BASE1 + i,
				 G_W | (i & 1 ? G_D : 0), true);
	tenv_map_touched(t, 0x7000000, 0x5000, G_W | G_D, false);
}

/* A round: one or two fast zaps, the audit with the obsolete pages still
 * there, and now and then a batch of them freed. */
static void zap_round(struct tenv *t, unsigned round, void *arg)
{
	uint64_t *freed = arg;

	mmu_zap_all_fast(t->vm.mmu);
	if (round % 3 == 0)
		mmu_zap_all_fast(t->vm.mmu);
	tenv_audit(t, round);
	if (round % 4 == 3)
		*freed += mmu_zap_obsolete_pages(t->vm.mmu);
	/* After the last round, what is left, with the vCPUs running. */
	if (round == ROUNDS - 1)
		*freed += mmu_zap_obsolete_pages(t->vm.mmu);
}

static void test_zap_fast_back_to_back_under_vcpus_frees_all(void **state)
{
	struct tenv *t = tenv_new();
	struct mmu_stats st;
	uint64_t freed = 0, accesses = 0;
	unsigned i;

	(void)state;
	map_spread(t);
	tenv_run(t, 2,
		 &(struct tenv_loop){ .rounds = ROUNDS,
				      .check_every = 8,
				      .check_at = 0,
				      .round = zap_round,
				      .arg = &freed });
	for (i = 0; i < 2; i++)
		accesses += atomic_load(&t->vm.vcpus[i].accesses);
	/* Eventually: with the vCPUs gone, one more zap frees the rest. */
	mmu_zap_all_fast(t->vm.mmu);
	freed += mmu_zap_obsolete_pages(t->vm.mmu);
	mmu_stats_get(t->vm.mmu, &st);
	print_message("%u rounds: %llu accesses, %llu faults, %llu retries, "
		      "%llu fast zaps, %llu obsolete pages freed, %llu MMIO "
		      "hits\n",
		      ROUNDS, (unsigned long long)accesses,
		      (unsigned long long)st.faults_fixed,
		      (unsigned long long)st.retries,
		      (unsigned long long)st.fast_zaps,
		      (unsigned long long)st.obsolete_freed,
		      (unsigned long long)st.mmio_hits);
	assert_int_equal(st.pages, 0);
	assert_int_equal(st.obsolete_freed, freed);
	assert_true(freed > 0 && accesses > 0);
	tenv_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_zap_fast_caller_returns_pages_obsolete_until_freed),
		cmocka_unit_test(
			test_zap_fast_obsolete_pages_freed_after_one_flush),
		cmocka_unit_test(
			test_zap_fast_back_to_back_under_vcpus_frees_all),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
