/*
 * The MMU under running vCPUs (the threaded double of vcpu_double.h):
 * memslot delete while vCPUs fault and touch the slot's memory, whose
 * host mapping is made inaccessible as soon as the delete returns (a vCPU
 * that could still reach it would crash the test); and zapping,
 * write-protection and dirty logging under running vCPUs, where a page
 * freed too early is a use-after-free for ASan and TSan to see. The audit
 * runs after every round.
 */
#include <errno.h>
#include <sys/mman.h>

#include "mmu_test.h"
#include "vcpu_double.h"

#define PML4 1
#define DATA0 0x20
#define NDATA0 8
#define BASE1 0x100
#define NPAGES1 16
#define NVCPUS 2

#if defined(MMUD_TSAN)
#define ROUNDS 20000
#elif defined(__SANITIZE_ADDRESS__)
#define ROUNDS 10000
#else
#define ROUNDS 100000
#endif

struct cenv {
	struct tmem m0;
	void *buf[2];
	struct tvm vm;
};

static void cenv_init(struct cenv *e)
{
	gfn_t next = PML4 + 1;
	char err[128];
	unsigned i;

	memset(e, 0, sizeof(*e));
	e->m0 = tmem_alloc(64);
	for (i = 0; i < 2; i++) {
		e->buf[i] = mmap(NULL, NPAGES1 * PAGE_SIZE,
				 PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_true(e->buf[i] != MAP_FAILED);
	}
	e->vm.mmu = mmu_create(tv_ops(), &e->vm);
	assert_non_null(e->vm.mmu);
	assert_int_equal(memslot_add(e->vm.mmu, 0, 0, 64, tmem_hva(&e->m0), 0,
				     err, sizeof(err)),
			 0);
	assert_int_equal(memslot_add(e->vm.mmu, 1, BASE1, NPAGES1,
				     (hva_t)(uintptr_t)e->buf[0], 0, err,
				     sizeof(err)),
			 0);
	for (i = 0; i < NPAGES1; i++) {
		gva_t gva = 0x400000 + i * PAGE_SIZE;

		/* Half clean, so writes also set D through the walker. */
		map_4k(&e->m0, 0, PML4, &next, gva, BASE1 + i,
		       G_W | (i & 1 ? G_D : 0));
		e->vm.gvas[e->vm.npages] = gva;
		e->vm.writes[e->vm.npages++] = true;
	}
	for (i = 0; i < NDATA0; i++) {
		gva_t gva = 0x600000 + i * PAGE_SIZE;

		map_4k(&e->m0, 0, PML4, &next, gva, DATA0 + i,
		       i < 4 ? G_W | G_D : 0);
		e->vm.gvas[e->vm.npages] = gva;
		e->vm.writes[e->vm.npages++] = i < 4;
	}
	e->vm.cpu = boot_cpu(PML4);
}

static void audit_ok(struct cenv *e, unsigned round)
{
	char msg[256];

	if (mmu_audit(e->vm.mmu, msg, sizeof(msg)))
		fail_msg("round %u: audit: %s", round, msg);
}

static void cenv_fini(struct cenv *e)
{
	unsigned i;

	assert_int_equal(tvm_stop(&e->vm), 0);
	audit_ok(e, ~0u);
	mmu_destroy(e->vm.mmu);
	tmem_free(&e->m0);
	for (i = 0; i < 2; i++)
		munmap(e->buf[i], NPAGES1 * PAGE_SIZE);
}

static bool any_failed(struct cenv *e)
{
	unsigned i;

	for (i = 0; i < e->vm.nr; i++)
		if (atomic_load(&e->vm.vcpus[i].failed))
			return true;
	return false;
}

static uint64_t sum(struct cenv *e, size_t field)
{
	uint64_t s = 0;
	unsigned i;

	for (i = 0; i < e->vm.nr; i++)
		s += atomic_load(
			(_Atomic uint64_t *)((char *)&e->vm.vcpus[i] + field));
	return s;
}

static void
test_concurrency_memslot_delete_leaves_no_spte_into_slot(void **state)
{
	struct cenv e;
	struct mmu_stats st;
	char err[128];
	unsigned round, cur = 0;

	(void)state;
	cenv_init(&e);
	tvm_start(&e.vm, NVCPUS);
	tvm_wait_entries(&e.vm, 1);
	for (round = 0; round < ROUNDS; round++) {
		assert_int_equal(memslot_delete(e.vm.mmu, 1, err, sizeof(err)),
				 0);
		/*
		 * The delete returned: no vCPU may reach the old memory any
		 * more. Take it away; a stale translation now faults the
		 * whole test.
		 */
		assert_int_equal(mprotect(e.buf[cur], NPAGES1 * PAGE_SIZE,
					  PROT_NONE),
				 0);
		audit_ok(&e, round);
		cur ^= 1;
		assert_int_equal(mprotect(e.buf[cur], NPAGES1 * PAGE_SIZE,
					  PROT_READ | PROT_WRITE),
				 0);
		assert_int_equal(memslot_add(e.vm.mmu, 1, BASE1, NPAGES1,
					     (hva_t)(uintptr_t)e.buf[cur], 0,
					     err, sizeof(err)),
				 0);
		if (round % 8 == 7) {
			/* A move away and back: nothing may keep mapping the
			 * guest's gfns to the slot while it is elsewhere. */
			assert_int_equal(memslot_move(e.vm.mmu, 1, 0x300, err,
						      sizeof(err)),
					 0);
			audit_ok(&e, round);
			assert_int_equal(memslot_move(e.vm.mmu, 1, BASE1, err,
						      sizeof(err)),
					 0);
		}
		/* Let the vCPUs run into the new slot now and then. */
		if (round % 64 == 0)
			tvm_wait_entries(&e.vm, 1);
	}
	mmu_stats_get(e.vm.mmu, &st);
	print_message("%u rounds: %llu accesses, %llu faults, %llu mmio, "
		      "%llu retries, %llu zapped sptes, %llu flushes\n",
		      ROUNDS,
		      (unsigned long long)sum(&e,
					      offsetof(struct tvcpu, accesses)),
		      (unsigned long long)st.faults_fixed,
		      (unsigned long long)st.faults_mmio,
		      (unsigned long long)st.retries,
		      (unsigned long long)st.zapped_sptes,
		      (unsigned long long)st.flushes);
	assert_true(sum(&e, offsetof(struct tvcpu, accesses)) > 0);
	assert_true(st.zapped_sptes > 0);
	cenv_fini(&e);
}

static void test_concurrency_zap_frees_nothing_vcpus_reach(void **state)
{
	struct cenv e;
	struct mmu_stats st;
	uint64_t bits;
	char err[128];
	unsigned round;

	(void)state;
	cenv_init(&e);
	tvm_start(&e.vm, NVCPUS);
	tvm_wait_entries(&e.vm, 1);
	for (round = 0; round < ROUNDS / 4; round++) {
		switch (round % 4) {
		case 0:
			mmu_zap_all(e.vm.mmu);
			break;
		case 1:
			mmu_zap_gfn_range(e.vm.mmu, BASE1, BASE1 + NPAGES1 / 2);
			break;
		case 2:
			assert_int_equal(memslot_set_flags(e.vm.mmu, 1,
							   MEMSLOT_LOG_DIRTY,
							   err, sizeof(err)),
					 0);
			break;
		case 3:
			assert_int_equal(memslot_dirty_log_get(e.vm.mmu, 1,
							       &bits, 1, err,
							       sizeof(err)),
					 0);
			assert_int_equal(memslot_set_flags(e.vm.mmu, 1, 0, err,
							   sizeof(err)),
					 0);
			mmu_write_protect_gfn(e.vm.mmu, DATA0);
			break;
		}
		audit_ok(&e, round);
		if (round % 16 == 0)
			tvm_wait_entries(&e.vm, 1);
	}
	mmu_stats_get(e.vm.mmu, &st);
	print_message("%u rounds: %llu accesses, %llu faults, %llu retries, "
		      "%llu zapped pages, %llu flushes\n",
		      ROUNDS / 4,
		      (unsigned long long)sum(&e,
					      offsetof(struct tvcpu, accesses)),
		      (unsigned long long)st.faults_fixed,
		      (unsigned long long)st.retries,
		      (unsigned long long)st.zapped_pages,
		      (unsigned long long)st.flushes);
	assert_true(st.zapped_pages > 0);
	cenv_fini(&e);
}

static void
test_concurrency_emulated_pte_writes_keep_shadow_in_sync(void **state)
{
	struct cenv e;
	struct mmu_stats st;
	gfn_t pdpt, pd, pt;
	uint64_t target = ROUNDS / 20;

	(void)state;
	cenv_init(&e);
	/*
	 * vCPU 0 rewrites, through the guest's own mapping of the page
	 * table (a window at 0x700000 onto the PT that maps 0x600000..),
	 * the PTE of the read-only page 0x607000, alternating between two
	 * data gfns; the others keep reading through it.
	 */
	pdpt = (gpte_get(&e.m0, 0, PML4, 0) >> 12) & 0xffff;
	pd = (gpte_get(&e.m0, 0, pdpt, 0) >> 12) & 0xffff;
	pt = (gpte_get(&e.m0, 0, pd, 3) >> 12) & 0xffff;
	{
		gfn_t next = 0x30;

		map_4k(&e.m0, 0, PML4, &next, 0x700000, pt, G_W | G_D);
		assert_int_equal(next, 0x30);
	}
	e.vm.pt_gva = 0x700000 + 7 * 8;
	e.vm.pt_vals[0] = ((DATA0 + 6) << PAGE_SHIFT) | G_P;
	e.vm.pt_vals[1] = ((DATA0 + 7) << PAGE_SHIFT) | G_P;
	e.vm.pt_target = 0x607000;
	e.vm.pt_hvas[0] = tmem_hva(&e.m0) + (DATA0 + 6) * PAGE_SIZE;
	e.vm.pt_hvas[1] = tmem_hva(&e.m0) + (DATA0 + 7) * PAGE_SIZE;
	tvm_start(&e.vm, NVCPUS);
	/* Until enough stores, or a vCPU saw the MMU go wrong (then
	 * cenv_fini fails the test instead of this loop spinning on). */
	while (atomic_load(&e.vm.pt_writes) < target && !any_failed(&e)) {
		/* Zaps race with the emulated writes and the faults. */
		mmu_zap_gfn_range(e.vm.mmu, DATA0, DATA0 + NDATA0);
		tvm_wait_entries(&e.vm, 1);
	}
	mmu_stats_get(e.vm.mmu, &st);
	print_message("%llu page-table stores emulated, %llu faults, "
		      "%llu retries\n",
		      (unsigned long long)st.emulated_writes,
		      (unsigned long long)st.faults_fixed,
		      (unsigned long long)st.retries);
	assert_true(st.emulated_writes >= target || any_failed(&e));
	/* cenv_fini audits: every spte agrees with the final gptes. */
	cenv_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_concurrency_memslot_delete_leaves_no_spte_into_slot),
		cmocka_unit_test(
			test_concurrency_zap_frees_nothing_vcpus_reach),
		cmocka_unit_test(
			test_concurrency_emulated_pte_writes_keep_shadow_in_sync),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
