/*
 * Large sptes under running vCPUs (the threaded double of vcpu_double.h):
 * the vCPUs load and increment words all over a 2 MiB guest page mapped
 * by one large spte, while this thread turns dirty logging on and off
 * (zapping the large spte, then 4 KiB sptes, then large again), shadows
 * and unshadows a page table inside the frame, and fast-zaps. A large
 * spte freed or replaced too early is a use-after-free for ASan / TSan;
 * the audit (large sptes, lpage_disallow counts) runs between rounds.
 */
#include "mmu_env.h"
#include "vcpu_double.h"

#if defined(MMUD_TSAN)
#define ROUNDS 200
#elif defined(__SANITIZE_ADDRESS__)
#define ROUNDS 1000
#else
#define ROUNDS 4000
#endif

#define LBASE 0x200
#define LGVA 0x40000000ULL

/* The rounds: dirty log on, off; the table inside the frame shadowed,
 * then not (and a fast zap). */
static void flip_round(struct tenv *t, unsigned round, void *arg)
{
	gfn_t pd = *(gfn_t *)arg;
	struct mmu *mmu = t->vm.mmu;
	char err[128];
	struct mmu_vcpu *v;
	struct mmu_fault_info info;

	switch (round % 4) {
	case 0:
		assert_int_equal(memslot_set_flags(mmu, 2, MEMSLOT_LOG_DIRTY,
						   err, sizeof(err)),
				 0);
		break;
	case 1:
		assert_int_equal(memslot_set_flags(mmu, 2, 0, err, sizeof(err)),
				 0);
		break;
	case 2:
		/* Shadow the table inside the frame (as a third vCPU would
		 * by touching LGVA + 2 MiB). */
		gpte_set(&t->env.m0, 0, pd, 1,
			 ((gfn_t)(LBASE + 7) << PAGE_SHIFT) | G_P | G_W);
		v = mmu_vcpu_create(mmu, 3);
		assert_int_equal(env_fault_v(v, &t->vm.cpu, LGVA + (2 << 20),
					     MMU_ACCESS_READ, &info),
				 MMU_FAULT_FIXED);
		mmu_vcpu_destroy(v);
		break;
	case 3:
		/* The PDE goes (a host write: the zap follows). */
		gpte_set(&t->env.m0, 0, pd, 1, 0);
		mmu_zap_all_fast(mmu);
		mmu_zap_obsolete_pages(mmu);
		break;
	}
}

static void
test_large_threads_log_dirty_and_tracking_flip_audit_clean(void **state)
{
	struct tenv *t = tenv_new();
	struct big b = big_alloc(2 << 20, 2 << 20);
	struct mmu_stats st;
	char err[128];
	unsigned i;
	gfn_t pd;

	(void)state;
	assert_int_equal(memslot_add(t->vm.mmu, 2, LBASE, 512, b.hva, 0, err,
				     sizeof(err)),
			 0);
	env_map(&t->env, PML4, LGVA, 0x30, G_W | G_D);
	pd = t->env.next_table - 2;
	gpte_set(&t->env.m0, 0, pd, 0,
		 ((gfn_t)LBASE << PAGE_SHIFT) | G_P | G_W | G_D | G_PS);
	/* Page 7 of the frame holds a page table for LGVA + 2 MiB whose
	 * entry 0 maps a page of slot 0; its PDE is set and cleared by the
	 * rounds, so the gfn is shadowed (tracked) now and then. */
	atomic_store((_Atomic uint64_t *)(uintptr_t)(b.hva + 7 * PAGE_SIZE),
		     (0x31ULL << PAGE_SHIFT) | G_P | G_W | G_D);
	/* Pages 8.. of the frame, never the table page. */
	for (i = 0; i < 16; i++)
		tenv_touch(t, LGVA + (8 + i * 31) * PAGE_SIZE, true);
	st = tenv_run(t, 2,
		      &(struct tenv_loop){ .rounds = ROUNDS,
					   .check_every = 8,
					   .check_at = 7,
					   .round = flip_round,
					   .arg = &pd });
	print_message("%u rounds: %llu large sptes, %llu faults, %llu "
		      "write-protects, %llu fast zaps\n",
		      ROUNDS, (unsigned long long)st.large_sptes,
		      (unsigned long long)st.faults_fixed,
		      (unsigned long long)st.write_protects,
		      (unsigned long long)st.fast_zaps);
	assert_true(st.large_sptes > 1);
	tenv_free(t);
	big_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_large_threads_log_dirty_and_tracking_flip_audit_clean),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
