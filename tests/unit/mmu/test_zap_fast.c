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

static void
test_zap_fast_caller_returns_pages_obsolete_until_freed(void **state)
{
	struct penv *e = penv_new();
	struct mmu_stats st;
	uint64_t pages, freed;
	hva_t hva;

	(void)state;
	penv_map(e, PML4, 0x400000, BASE1, G_W | G_D);
	penv_map(e, PML4, 0x800000, BASE1 + 1, G_W | G_D);
	assert_int_equal(penv_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(penv_fault(e, 0x800000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	pages = penv_stats(e).pages;
	mmu_zap_all_fast(e->mmu);
	/* O(1): nothing freed yet; every vCPU was asked, with wait. */
	st = penv_stats(e);
	assert_int_equal(st.pages, pages);
	assert_int_equal(st.fast_zaps, 1);
	assert_int_equal(e->rec.free_roots, 1);
	assert_true(e->rec.waits >= 1);
	penv_audit(e);
	/* A back-to-back second zap is harmless. */
	mmu_zap_all_fast(e->mmu);
	penv_audit(e);
	/* The vCPU still holds its obsolete root until it handles the
	 * request: a fault on it drops it and retries. */
	{
		struct mmu_fault_info info;

		assert_int_equal(mmu_page_fault(e->v, &e->cpu, 0x400000,
						MMU_ACCESS_READ, &info),
				 MMU_FAULT_RETRY);
	}
	assert_int_equal(penv_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_int_equal(penv_xlate(e, 0x400000, MMU_ACCESS_READ, &hva), 0);
	assert_int_equal(hva, penv_hva(e, BASE1));
	/* The new root reaches nothing of the old generations. */
	assert_int_equal(penv_xlate(e, 0x800000, MMU_ACCESS_READ, &hva),
			 -EFAULT);
	penv_audit(e);
	freed = mmu_zap_obsolete_pages(e->mmu);
	assert_int_equal(freed, pages);
	st = penv_stats(e);
	assert_int_equal(st.obsolete_freed, pages);
	assert_int_equal(st.pages, 4);
	assert_int_equal(mmu_zap_obsolete_pages(e->mmu), 0);
	penv_free(e);
}

/*
 * The obsolete pages are unlinked from each other, then freed: a vCPU
 * that was in guest mode on a walk through them must have left it
 * first, so one remote flush with wait comes between (and only one, for
 * every batch).
 */
static void test_zap_fast_obsolete_pages_freed_after_one_flush(void **state)
{
	struct penv *e = penv_new();
	unsigned flushes, waits;
	uint64_t pages;

	(void)state;
	penv_map(e, PML4, 0x400000, BASE1, G_W | G_D);
	penv_map(e, PML4, 0x40000000, BASE1 + 1, G_W | G_D);
	assert_int_equal(penv_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(penv_fault(e, 0x40000000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	pages = penv_stats(e).pages;
	mmu_zap_all_fast(e->mmu);
	mmu_vcpu_free_obsolete_roots(e->v);
	flushes = e->rec.flushes;
	waits = e->rec.waits;
	assert_int_equal(mmu_zap_obsolete_pages(e->mmu), pages);
	assert_int_equal(e->rec.flushes - flushes, 1);
	assert_int_equal(e->rec.waits - waits, 1);
	assert_int_equal(penv_stats(e).pages, 0);
	penv_free(e);
}

/* The threaded environment of test_concurrency.c, in small. */
struct zenv {
	struct tmem m0, m1;
	struct tvm vm;
};

static void zenv_init(struct zenv *z)
{
	gfn_t next = PML4 + 1;
	char err[128];
	unsigned i;

	memset(z, 0, sizeof(*z));
	z->m0 = tmem_alloc(NPAGES0);
	z->m1 = tmem_alloc(NPAGES1);
	z->vm.mmu = mmu_create(tv_ops(), &z->vm);
	assert_non_null(z->vm.mmu);
	assert_int_equal(memslot_add(z->vm.mmu, 0, 0, NPAGES0, tmem_hva(&z->m0),
				     0, err, sizeof(err)),
			 0);
	assert_int_equal(memslot_add(z->vm.mmu, 1, BASE1, NPAGES1,
				     tmem_hva(&z->m1), 0, err, sizeof(err)),
			 0);
	for (i = 0; i < NPAGES1; i++) {
		/* Spread over several page tables and directories. */
		gva_t gva = 0x400000 + i * 0x201000ULL;

		map_4k(&z->m0, 0, PML4, &next, gva, BASE1 + i,
		       G_W | (i & 1 ? G_D : 0));
		z->vm.gvas[z->vm.npages] = gva;
		z->vm.writes[z->vm.npages++] = true;
	}
	/* And one gfn with no memslot: MMIO. */
	map_4k(&z->m0, 0, PML4, &next, 0x7000000, 0x5000, G_W | G_D);
	z->vm.gvas[z->vm.npages] = 0x7000000;
	z->vm.writes[z->vm.npages++] = false;
	z->vm.cpu = boot_cpu(PML4);
}

static void zaudit(struct zenv *z, unsigned round)
{
	char msg[256];

	if (mmu_audit(z->vm.mmu, msg, sizeof(msg)))
		fail_msg("round %u: audit: %s", round, msg);
}

static void test_zap_fast_back_to_back_under_vcpus_frees_all(void **state)
{
	struct zenv z;
	struct mmu_stats st;
	uint64_t freed = 0, accesses = 0;
	unsigned round, i;

	(void)state;
	zenv_init(&z);
	tvm_start(&z.vm, 2);
	tvm_wait_entries(&z.vm, 1);
	for (round = 0; round < ROUNDS; round++) {
		mmu_zap_all_fast(z.vm.mmu);
		if (round % 3 == 0)
			mmu_zap_all_fast(z.vm.mmu);
		zaudit(&z, round);
		if (round % 4 == 3)
			freed += mmu_zap_obsolete_pages(z.vm.mmu);
		if (round % 8 == 0)
			tvm_wait_entries(&z.vm, 1);
	}
	freed += mmu_zap_obsolete_pages(z.vm.mmu);
	assert_int_equal(tvm_stop(&z.vm), 0);
	for (i = 0; i < 2; i++)
		accesses += atomic_load(&z.vm.vcpus[i].accesses);
	zaudit(&z, ~0u);
	/* Eventually: with the vCPUs gone, one more zap frees the rest. */
	mmu_zap_all_fast(z.vm.mmu);
	freed += mmu_zap_obsolete_pages(z.vm.mmu);
	mmu_stats_get(z.vm.mmu, &st);
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
	zaudit(&z, ~0u);
	mmu_destroy(z.vm.mmu);
	tmem_free(&z.m0);
	tmem_free(&z.m1);
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
