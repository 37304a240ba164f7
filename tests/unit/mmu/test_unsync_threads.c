/*
 * Unsync under running vCPUs (the threaded double of vcpu_double.h):
 * the vCPUs store into a guest page table through its writable window
 * (an unsync page) while this thread, as a third vCPU on the same CR3,
 * syncs at MOV CR3 and INVLPG over and over. A sync write-protects the
 * table and flushes with wait before it reads the gptes, so a store
 * either lands before the read or faults and unsyncs the page again;
 * the audit, which holds the synced pages to their gptes, runs between
 * rounds, and a vCPU that ever needs emulation for the leaf table fails.
 */
#include "mmu_env.h"
#include "vcpu_double.h"

#if defined(MMUD_TSAN)
#define ROUNDS 300
#elif defined(__SANITIZE_ADDRESS__)
#define ROUNDS 1500
#else
#define ROUNDS 6000
#endif

#define PTGVA 0x800000ULL /* mapped through table PTX */
#define WINDOW 0xa00000ULL /* a window onto PTX */

/* A round: this thread, a third vCPU on the vCPUs' CR3, syncs at MOV CR3
 * and at an INVLPG of a gva the stores retarget. */
static void sync_round(struct tenv *t, unsigned round, void *arg)
{
	struct mmu_vcpu *v = arg;

	(void)round;
	assert_int_equal(mmu_vcpu_sync(v, &t->vm.cpu), 0);
	mmu_invlpg(v, PTGVA + 32 * PAGE_SIZE);
}

static void test_unsync_threads_sync_while_vcpus_store_audit_clean(void **state)
{
	struct tenv *t = tenv_new();
	struct mmu_vcpu *v;
	struct mmu_stats st;
	unsigned i;
	gfn_t ptx;

	(void)state;
	mmu_set_unsync(t->vm.mmu, true);
	for (i = 0; i < 8; i++)
		tenv_map_touched(t, 0x400000 + i * PAGE_SIZE, BASE1 + i,
				 G_W | G_D, true);
	tenv_map_touched(t, PTGVA, BASE1 + 8, G_W | G_D, false);
	ptx = t->env.next_table - 1;
	/* Stores land in PTX entries 32 and up (gvas nobody uses). */
	env_map(&t->env, PML4, WINDOW, ptx, G_W | G_D);
	tenv_touch(t, WINDOW + 32 * 8, true);
	v = mmu_vcpu_create(t->vm.mmu, 3);
	st = tenv_run(t, 2,
		      &(struct tenv_loop){ .rounds = ROUNDS,
					   .check_every = 16,
					   .check_at = 0,
					   .round = sync_round,
					   .arg = v });
	print_message("%u rounds: %llu unsyncs, %llu syncs, %llu flushes, "
		      "%llu emulated\n",
		      ROUNDS, (unsigned long long)st.unsyncs,
		      (unsigned long long)st.syncs,
		      (unsigned long long)st.flushes,
		      (unsigned long long)st.faults_emulate);
	assert_true(st.unsyncs > 0 && st.syncs > 0);
	assert_int_equal(st.faults_emulate, 0);
	mmu_vcpu_destroy(v);
	tenv_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_unsync_threads_sync_while_vcpus_store_audit_clean),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
