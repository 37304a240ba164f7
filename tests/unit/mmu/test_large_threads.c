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

static void
test_large_threads_log_dirty_and_tracking_flip_audit_clean(void **state)
{
	struct tmem m0 = tmem_alloc(NPAGES0);
	char *raw = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	hva_t big = ((hva_t)(uintptr_t)raw + (2 << 20) - 1) &
		    ~(hva_t)((2 << 20) - 1);
	struct mmu_stats st;
	struct tvm vm;
	gfn_t next = PML4 + 1, pd;
	char err[128], msg[256];
	unsigned round, i;

	(void)state;
	assert_true(raw != MAP_FAILED);
	memset(&vm, 0, sizeof(vm));
	vm.mmu = mmu_create(tv_ops(), &vm);
	assert_int_equal(memslot_add(vm.mmu, 0, 0, NPAGES0, tmem_hva(&m0), 0,
				     err, sizeof(err)),
			 0);
	assert_int_equal(memslot_add(vm.mmu, 2, LBASE, 512, big, 0, err,
				     sizeof(err)),
			 0);
	map_4k(&m0, 0, PML4, &next, LGVA, 0x30, G_W | G_D);
	pd = next - 2;
	gpte_set(&m0, 0, pd, 0,
		 ((gfn_t)LBASE << PAGE_SHIFT) | G_P | G_W | G_D | G_PS);
	/* Page 7 of the frame holds a page table for LGVA + 2 MiB whose
	 * entry 0 maps a page of slot 0; its PDE is set and cleared below,
	 * so the gfn is shadowed (tracked) now and then. */
	atomic_store((_Atomic uint64_t *)(uintptr_t)(big + 7 * PAGE_SIZE),
		     (0x31ULL << PAGE_SHIFT) | G_P | G_W | G_D);
	for (i = 0; i < 16; i++) {
		/* Pages 8.. of the frame, never the table page. */
		vm.gvas[vm.npages] = LGVA + (8 + i * 31) * PAGE_SIZE;
		vm.writes[vm.npages++] = true;
	}
	vm.cpu = boot_cpu(PML4);
	tvm_start(&vm, 2);
	tvm_wait_entries(&vm, 1);
	for (round = 0; round < ROUNDS; round++) {
		struct mmu_vcpu *v;
		struct mmu_fault_info info;

		switch (round % 4) {
		case 0:
			assert_int_equal(memslot_set_flags(vm.mmu, 2,
							   MEMSLOT_LOG_DIRTY,
							   err, sizeof(err)),
					 0);
			break;
		case 1:
			assert_int_equal(memslot_set_flags(vm.mmu, 2, 0, err,
							   sizeof(err)),
					 0);
			break;
		case 2:
			/* Shadow the table inside the frame (as a third
			 * vCPU would by touching LGVA + 2 MiB). */
			gpte_set(&m0, 0, pd, 1,
				 ((gfn_t)(LBASE + 7) << PAGE_SHIFT) | G_P |
					 G_W);
			v = mmu_vcpu_create(vm.mmu, 3);
			assert_int_equal(mmu_vcpu_load(v, &vm.cpu), 0);
			assert_int_equal(mmu_page_fault(v, &vm.cpu,
							LGVA + (2 << 20),
							MMU_ACCESS_READ, &info),
					 MMU_FAULT_FIXED);
			mmu_vcpu_destroy(v);
			break;
		case 3:
			/* The PDE goes (a host write: the zap follows). */
			gpte_set(&m0, 0, pd, 1, 0);
			mmu_zap_all_fast(vm.mmu);
			mmu_zap_obsolete_pages(vm.mmu);
			break;
		}
		if (round % 8 == 7) {
			if (mmu_audit(vm.mmu, msg, sizeof(msg)))
				fail_msg("round %u: audit: %s", round, msg);
			tvm_wait_entries(&vm, 1);
		}
	}
	assert_int_equal(tvm_stop(&vm), 0);
	mmu_stats_get(vm.mmu, &st);
	print_message("%u rounds: %llu large sptes, %llu faults, %llu "
		      "write-protects, %llu fast zaps\n",
		      ROUNDS, (unsigned long long)st.large_sptes,
		      (unsigned long long)st.faults_fixed,
		      (unsigned long long)st.write_protects,
		      (unsigned long long)st.fast_zaps);
	assert_true(st.large_sptes > 1);
	if (mmu_audit(vm.mmu, msg, sizeof(msg)))
		fail_msg("end: audit: %s", msg);
	mmu_destroy(vm.mmu);
	tmem_free(&m0);
	munmap(raw, 4 << 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_large_threads_log_dirty_and_tracking_flip_audit_clean),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
