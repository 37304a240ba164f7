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

static void test_unsync_threads_sync_while_vcpus_store_audit_clean(void **state)
{
	struct tmem m0 = tmem_alloc(NPAGES0), m1 = tmem_alloc(NPAGES1);
	struct mmu_vcpu *v;
	struct mmu_stats st;
	struct tvm vm;
	gfn_t next = PML4 + 1, ptx;
	char err[128], msg[256];
	unsigned round, i;

	(void)state;
	memset(&vm, 0, sizeof(vm));
	vm.mmu = mmu_create(tv_ops(), &vm);
	mmu_set_unsync(vm.mmu, true);
	assert_int_equal(memslot_add(vm.mmu, 0, 0, NPAGES0, tmem_hva(&m0), 0,
				     err, sizeof(err)),
			 0);
	assert_int_equal(memslot_add(vm.mmu, 1, BASE1, NPAGES1, tmem_hva(&m1),
				     0, err, sizeof(err)),
			 0);
	for (i = 0; i < 8; i++) {
		map_4k(&m0, 0, PML4, &next, 0x400000 + i * PAGE_SIZE, BASE1 + i,
		       G_W | G_D);
		vm.gvas[vm.npages] = 0x400000 + i * PAGE_SIZE;
		vm.writes[vm.npages++] = true;
	}
	map_4k(&m0, 0, PML4, &next, PTGVA, BASE1 + 8, G_W | G_D);
	ptx = next - 1;
	vm.gvas[vm.npages] = PTGVA;
	vm.writes[vm.npages++] = false;
	/* Stores land in PTX entries 32 and up (gvas nobody uses). */
	map_4k(&m0, 0, PML4, &next, WINDOW, ptx, G_W | G_D);
	vm.gvas[vm.npages] = WINDOW + 32 * 8;
	vm.writes[vm.npages++] = true;
	vm.cpu = boot_cpu(PML4);
	v = mmu_vcpu_create(vm.mmu, 3);
	tvm_start(&vm, 2);
	tvm_wait_entries(&vm, 1);
	for (round = 0; round < ROUNDS; round++) {
		assert_int_equal(mmu_vcpu_sync(v, &vm.cpu), 0);
		mmu_invlpg(v, PTGVA + 32 * PAGE_SIZE);
		if (round % 16 == 0) {
			if (mmu_audit(vm.mmu, msg, sizeof(msg)))
				fail_msg("round %u: audit: %s", round, msg);
			tvm_wait_entries(&vm, 1);
		}
	}
	assert_int_equal(tvm_stop(&vm), 0);
	mmu_stats_get(vm.mmu, &st);
	print_message("%u rounds: %llu unsyncs, %llu syncs, %llu flushes, "
		      "%llu emulated\n",
		      ROUNDS, (unsigned long long)st.unsyncs,
		      (unsigned long long)st.syncs,
		      (unsigned long long)st.flushes,
		      (unsigned long long)st.faults_emulate);
	assert_true(st.unsyncs > 0 && st.syncs > 0);
	assert_int_equal(st.faults_emulate, 0);
	if (mmu_audit(vm.mmu, msg, sizeof(msg)))
		fail_msg("end: audit: %s", msg);
	mmu_vcpu_destroy(v);
	mmu_destroy(vm.mmu);
	tmem_free(&m0);
	tmem_free(&m1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_unsync_threads_sync_while_vcpus_store_audit_clean),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
