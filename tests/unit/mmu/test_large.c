/*
 * Large sptes (digest 2.7, 3.1 step 9): a 2 MiB or 1 GiB guest page that
 * one memslot covers, with an aligned host mapping and no write-tracked
 * gfn inside, is mapped by one PS spte; it is zapped when a gfn inside
 * becomes a shadowed page table (then mapped with 4 KiB sptes, the table
 * write-protected) and when its slot starts dirty logging; a misaligned
 * host mapping never gets one. The audit checks each large spte and the
 * lpage_disallow counts.
 */
#include "part2_env.h"

#define LBASE 0x200 /* gfn of the 2 MiB frame at 2 MiB */
#define LGVA 0x40000000ULL

struct big {
	void *map;
	size_t len;
	hva_t hva; /* aligned */
};

static struct big big_alloc(size_t size, size_t align)
{
	struct big b = { .len = size + align };

	b.map = mmap(NULL, b.len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(b.map != MAP_FAILED);
	b.hva = ((hva_t)(uintptr_t)b.map + align - 1) & ~(hva_t)(align - 1);
	return b;
}

static void big_free(struct big *b)
{
	munmap(b->map, b->len);
}

/* Slot 2 = [LBASE, +512) at hva; LGVA mapped by a 2 MiB PDE onto it. */
static gfn_t setup_2m(struct penv *e, hva_t hva)
{
	char err[128];
	gfn_t pd;

	assert_int_equal(memslot_add(e->mmu, 2, LBASE, 512, hva, 0, err,
				     sizeof(err)),
			 0);
	penv_map(e, PML4, LGVA, BASE1, G_W | G_D);
	pd = e->next_table - 2;
	gpte_set(&e->m0, 0, pd, 0,
		 ((gfn_t)LBASE << PAGE_SHIFT) | G_P | G_W | G_D | G_PS);
	return pd;
}

static void test_large_spte_maps_2m_guest_page_with_one_spte(void **state)
{
	struct penv *e = penv_new();
	struct big b = big_alloc(2 << 20, 2 << 20);
	struct mmu_stats st;
	hva_t hva;

	(void)state;
	setup_2m(e, b.hva);
	assert_int_equal(penv_fault(e, LGVA + 0x12345, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	st = penv_stats(e);
	assert_int_equal(st.large_sptes, 1);
	assert_int_equal(st.sptes, 1);
	assert_int_equal(penv_xlate(e, LGVA + 0x1fffff, MMU_ACCESS_WRITE, &hva),
			 0);
	assert_int_equal(hva, b.hva + 0x1fffff);
	assert_int_equal(penv_xlate(e, LGVA + 0x12345, MMU_ACCESS_READ, &hva),
			 0);
	assert_int_equal(hva, b.hva + 0x12345);
	penv_audit(e);
	penv_free(e);
	big_free(&b);
}

static void test_large_spte_split_when_gfn_inside_write_tracked(void **state)
{
	struct penv *e = penv_new();
	struct big b = big_alloc(2 << 20, 2 << 20);
	struct mmu_stats st;
	hva_t hva;
	gfn_t pd;

	(void)state;
	pd = setup_2m(e, b.hva);
	assert_int_equal(penv_fault(e, LGVA, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(penv_stats(e).large_sptes, 1);
	/* The guest puts a page table at LBASE + 7, inside the frame, and
	 * uses it for LGVA + 2 MiB. */
	atomic_store((_Atomic uint64_t *)(uintptr_t)(b.hva + 7 * PAGE_SIZE),
		     (BASE1 << PAGE_SHIFT) | G_P | G_W | G_D);
	gpte_set(&e->m0, 0, pd, 1,
		 ((gfn_t)(LBASE + 7) << PAGE_SHIFT) | G_P | G_W);
	assert_int_equal(penv_fault(e, LGVA + (2 << 20), MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	/* The large spte over the now-tracked gfn is gone. */
	assert_int_equal(penv_xlate(e, LGVA, MMU_ACCESS_READ, &hva), -EFAULT);
	st = penv_stats(e);
	assert_true(st.write_protects >= 1);
	penv_audit(e);
	/* The frame is mapped 4 KiB at a time now: the table is write-
	 * protected, its neighbours are not. */
	assert_int_equal(penv_fault(e, LGVA + 7 * PAGE_SIZE, MMU_ACCESS_WRITE),
			 MMU_FAULT_EMULATE);
	assert_int_equal(penv_fault(e, LGVA + 6 * PAGE_SIZE, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(penv_xlate(e, LGVA + 6 * PAGE_SIZE + 8,
				    MMU_ACCESS_WRITE, &hva),
			 0);
	assert_int_equal(hva, b.hva + 6 * PAGE_SIZE + 8);
	st = penv_stats(e);
	assert_int_equal(st.large_sptes, 1);
	penv_audit(e);
	/* Once the table is no longer shadowed, large again. */
	mmu_zap_all(e->mmu);
	mmu_vcpu_free_obsolete_roots(e->v);
	assert_int_equal(penv_fault(e, LGVA, MMU_ACCESS_READ), MMU_FAULT_FIXED);
	assert_int_equal(penv_stats(e).large_sptes, 2);
	penv_free(e);
	big_free(&b);
}

static void test_large_spte_zapped_when_dirty_logging_starts(void **state)
{
	struct penv *e = penv_new();
	struct big b = big_alloc(2 << 20, 2 << 20);
	uint64_t bits[8];
	char err[128];
	hva_t hva;

	(void)state;
	setup_2m(e, b.hva);
	assert_int_equal(penv_fault(e, LGVA, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(memslot_set_flags(e->mmu, 2, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	assert_int_equal(penv_xlate(e, LGVA, MMU_ACCESS_READ, &hva), -EFAULT);
	assert_int_equal(penv_fault(e, LGVA + 3 * PAGE_SIZE, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(penv_xlate(e, LGVA + 4 * PAGE_SIZE, MMU_ACCESS_READ,
				    &hva),
			 -EFAULT);
	assert_int_equal(
		memslot_dirty_log_get(e->mmu, 2, bits, 8, err, sizeof(err)), 0);
	assert_int_equal(bits[0], 1ULL << 3);
	assert_int_equal(penv_stats(e).large_sptes, 1);
	penv_free(e);
	big_free(&b);
}

static void test_large_spte_misaligned_host_maps_4k(void **state)
{
	struct penv *e = penv_new();
	struct big b = big_alloc(4 << 20, 2 << 20);
	hva_t hva;

	(void)state;
	setup_2m(e, b.hva + PAGE_SIZE);
	assert_int_equal(penv_fault(e, LGVA + 0x5000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_int_equal(penv_stats(e).large_sptes, 0);
	assert_int_equal(penv_xlate(e, LGVA + 0x5010, MMU_ACCESS_READ, &hva),
			 0);
	assert_int_equal(hva, b.hva + PAGE_SIZE + 0x5010);
	assert_int_equal(penv_xlate(e, LGVA + 0x6000, MMU_ACCESS_READ, &hva),
			 -EFAULT);
	penv_free(e);
	big_free(&b);
}

static void test_large_spte_maps_1g_guest_page(void **state)
{
	struct penv *e = penv_new();
	struct big b = big_alloc(1ULL << 30, 1ULL << 30);
	gfn_t base = 0x40000, pdpt;
	char err[128];
	hva_t hva;

	(void)state;
	assert_int_equal(memslot_add(e->mmu, 3, base, 1ULL << 18, b.hva, 0, err,
				     sizeof(err)),
			 0);
	penv_map(e, PML4, LGVA, BASE1, G_W | G_D);
	pdpt = e->next_table - 3;
	gpte_set(&e->m0, 0, pdpt, 2,
		 (base << PAGE_SHIFT) | G_P | G_W | G_D | G_PS);
	assert_int_equal(penv_fault(e, 0x80000000ULL + 0x12345678,
				    MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(penv_stats(e).large_sptes, 1);
	assert_int_equal(penv_xlate(e, 0x80000000ULL + 0x3ffff008,
				    MMU_ACCESS_WRITE, &hva),
			 0);
	assert_int_equal(hva, b.hva + 0x3ffff008);
	penv_audit(e);
	penv_free(e);
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
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
