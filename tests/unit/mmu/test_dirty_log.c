/*
 * Ranged harvests and manual protection (core/mmu/dirty_log.c,
 * docs/MMU.md, "Manual protection"): a ranged harvest reports, clears
 * and protects its range only; a clearing-only harvest leaves the
 * translations writable; memslot_dirty_log_clear() write-protects
 * exactly the pages it is given and flushes before it returns; every
 * bad argument is refused with nothing changed.
 */
#include "mmu_env.h"

/* A third slot of 256 pages at gfn 0x200, dirty-logged, with gva
 * 0x600000 + i * 4K mapped writable (and dirty) to its page i for the
 * pages listed. */
#define S2 2
#define S2_BASE 0x200
#define S2_PAGES 256

/* The host address of the slot's page 0. */
static hva_t s2_hva;

static struct tmem slot2_add(struct mmu_env *e, const unsigned *pages,
			     unsigned n)
{
	struct tmem m = tmem_alloc(S2_PAGES);
	char err[128];

	assert_int_equal(memslot_add(e->mmu, S2, S2_BASE, S2_PAGES,
				     tmem_hva(&m), MEMSLOT_LOG_DIRTY, err,
				     sizeof(err)),
			 0);
	s2_hva = tmem_hva(&m);
	for (unsigned i = 0; i < n; i++)
		env_map(e, PML4, 0x600000 + pages[i] * PAGE_SIZE,
			S2_BASE + pages[i], G_W | G_D);
	return m;
}

static gva_t gva_of(unsigned page)
{
	return 0x600000 + (gva_t)page * PAGE_SIZE;
}

static void write_fault(struct mmu_env *e, unsigned page)
{
	assert_int_equal(env_fault(e, gva_of(page), MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, gva_of(page), MMU_ACCESS_WRITE,
			   s2_hva + page * PAGE_SIZE);
}

static void slot2_free(struct mmu_env *e, struct tmem *m)
{
	char err[128];

	env_audit(e);
	assert_int_equal(memslot_delete(e->mmu, S2, err, sizeof(err)), 0);
	env_free(e);
	tmem_free(m);
}

static void test_dirty_fetch_range_reports_and_protects_only_it(void **state)
{
	static const unsigned pages[] = { 3, 70, 130 };
	struct mmu_env *e = env_new();
	struct tmem m = slot2_add(e, pages, 3);
	uint64_t out[4];
	char err[128];

	(void)state;
	for (unsigned i = 0; i < 3; i++)
		write_fault(e, pages[i]);
	/* Pages 64..191: 70 and 130 (bits 6 and 66 of the range). */
	memset(out, 0xff, sizeof(out));
	assert_int_equal(memslot_dirty_log_fetch(e->mmu, S2, 64, 128,
						 MEMSLOT_FETCH_CLEAR_PROTECT,
						 out, err, sizeof(err)),
			 0);
	assert_int_equal(out[0], 1ULL << 6);
	assert_int_equal(out[1], 1ULL << 2);
	assert_shadow_misses(e, gva_of(70), MMU_ACCESS_WRITE);
	assert_shadow_misses(e, gva_of(130), MMU_ACCESS_WRITE);
	/* Page 3 is outside: still dirty, still writable. */
	assert_shadow_maps(e, gva_of(3), MMU_ACCESS_WRITE,
			   s2_hva + PAGE_SIZE * 3);
	assert_int_equal(memslot_dirty_log_fetch(e->mmu, S2, 0, S2_PAGES,
						 MEMSLOT_FETCH_PEEK, out, err,
						 sizeof(err)),
			 0);
	assert_int_equal(out[0], 1ULL << 3);
	assert_int_equal(out[1] | out[2] | out[3], 0);
	/* A range ending inside a word leaves the word's other bits. */
	write_fault(e, 70);
	assert_int_equal(memslot_dirty_log_fetch(e->mmu, S2, 64, 6,
						 MEMSLOT_FETCH_CLEAR_PROTECT,
						 out, err, sizeof(err)),
			 0);
	assert_int_equal(out[0], 0);
	assert_int_equal(memslot_dirty_log_fetch(e->mmu, S2, 64, 7,
						 MEMSLOT_FETCH_PEEK, out, err,
						 sizeof(err)),
			 0);
	assert_int_equal(out[0], 1ULL << 6);
	slot2_free(e, &m);
}

static void test_dirty_manual_harvest_clears_then_clear_protects(void **state)
{
	static const unsigned pages[] = { 1, 2, 65 };
	struct mmu_env *e = env_new();
	struct tmem m = slot2_add(e, pages, 3);
	uint64_t out[2], mask[2], n = 0;
	unsigned flushes;
	char err[128];

	(void)state;
	for (unsigned i = 0; i < 3; i++)
		write_fault(e, pages[i]);
	flushes = e->rec.flushes;
	assert_int_equal(memslot_dirty_log_fetch(e->mmu, S2, 0, 128,
						 MEMSLOT_FETCH_CLEAR, out, err,
						 sizeof(err)),
			 0);
	assert_int_equal(out[0], (1ULL << 1) | (1ULL << 2));
	assert_int_equal(out[1], 1ULL << 1);
	/* Only read and cleared: nothing protected, nothing flushed. */
	assert_int_equal(e->rec.flushes, flushes);
	for (unsigned i = 0; i < 3; i++)
		assert_shadow_maps(e, gva_of(pages[i]), MMU_ACCESS_WRITE,
				   s2_hva + PAGE_SIZE * pages[i]);
	assert_int_equal(memslot_dirty_log_fetch(e->mmu, S2, 0, 128,
						 MEMSLOT_FETCH_PEEK, out, err,
						 sizeof(err)),
			 0);
	assert_int_equal(out[0] | out[1], 0);
	/* Clear pages 2 and 65 only: exactly those lose W, with a flush. */
	mask[0] = 1ULL << 2;
	mask[1] = 1ULL << 1;
	assert_int_equal(memslot_dirty_log_clear(e->mmu, S2, 0, 128, mask, &n,
						 err, sizeof(err)),
			 0);
	assert_int_equal(n, 2);
	assert_int_equal(e->rec.flushes - flushes, 1);
	assert_shadow_misses(e, gva_of(2), MMU_ACCESS_WRITE);
	assert_shadow_misses(e, gva_of(65), MMU_ACCESS_WRITE);
	assert_shadow_maps(e, gva_of(1), MMU_ACCESS_WRITE,
			   s2_hva + PAGE_SIZE * 1);
	/* The next write faults and is logged again. */
	write_fault(e, 65);
	assert_int_equal(memslot_dirty_log_fetch(e->mmu, S2, 64, 64,
						 MEMSLOT_FETCH_PEEK, out, err,
						 sizeof(err)),
			 0);
	assert_int_equal(out[0], 1ULL << 1);
	slot2_free(e, &m);
}

/* A bit set since the harvest (a store that faulted after an earlier
 * protection) is cleared by the clear: the caller's copy after the clear
 * holds that store, and the page is protected again. */
static void test_dirty_clear_clears_bits_set_since_the_harvest(void **state)
{
	static const unsigned pages[] = { 5 };
	struct mmu_env *e = env_new();
	struct tmem m = slot2_add(e, pages, 1);
	uint64_t out[4], mask[4] = { 1ULL << 5 };
	char err[128];

	(void)state;
	write_fault(e, 5);
	assert_int_equal(memslot_dirty_log_fetch(e->mmu, S2, 0, S2_PAGES,
						 MEMSLOT_FETCH_CLEAR, out, err,
						 sizeof(err)),
			 0);
	assert_int_equal(out[0], 1ULL << 5);
	assert_int_equal(memslot_dirty_log_clear(e->mmu, S2, 0, S2_PAGES, mask,
						 NULL, err, sizeof(err)),
			 0);
	write_fault(e, 5);
	assert_int_equal(memslot_dirty_log_clear(e->mmu, S2, 0, S2_PAGES, mask,
						 NULL, err, sizeof(err)),
			 0);
	assert_shadow_misses(e, gva_of(5), MMU_ACCESS_WRITE);
	assert_int_equal(memslot_dirty_log_fetch(e->mmu, S2, 0, S2_PAGES,
						 MEMSLOT_FETCH_PEEK, out, err,
						 sizeof(err)),
			 0);
	assert_int_equal(out[0], 0);
	slot2_free(e, &m);
}

static void expect_refused(struct mmu_env *e, uint32_t id, uint64_t first,
			   uint64_t num, const uint64_t *mask,
			   const char *needle)
{
	uint64_t out[8] = { 0 };
	char err[160] = "";

	assert_int_equal(memslot_dirty_log_clear(e->mmu, id, first, num, mask,
						 NULL, err, sizeof(err)),
			 id == 9 ? -ENOENT : -EINVAL);
	if (!strstr(err, needle))
		fail_msg("clear(%u, %llu, %llu): \"%s\" does not name %s", id,
			 (unsigned long long)first, (unsigned long long)num,
			 err, needle);
	err[0] = 0;
	if (mask[0] || mask[1])
		return;
	assert_true(memslot_dirty_log_fetch(e->mmu, id, first, num,
					    MEMSLOT_FETCH_CLEAR_PROTECT, out,
					    err, sizeof(err)) < 0);
	if (!strstr(err, needle))
		fail_msg("fetch(%u, %llu, %llu): \"%s\" does not name %s", id,
			 (unsigned long long)first, (unsigned long long)num,
			 err, needle);
}

static void test_dirty_bad_ranges_refused_and_change_nothing(void **state)
{
	static const unsigned pages[] = { 7 };
	struct mmu_env *e = env_new();
	struct tmem m = slot2_add(e, pages, 1);
	uint64_t zero[8] = { 0 }, past[8] = { 0, 1ULL << 63 }, out[4];
	unsigned flushes;
	char err[128];

	(void)state;
	write_fault(e, 7);
	flushes = e->rec.flushes;
	expect_refused(e, S2, 32, 64, zero, "first-page");
	expect_refused(e, S2, S2_PAGES, 1, zero, "first-page");
	expect_refused(e, S2, 0, 0, zero, "num-pages");
	expect_refused(e, S2, 192, 65, zero, "num-pages");
	expect_refused(e, 9, 0, 64, zero, "does not exist");
	expect_refused(e, 1, 0, 16, zero, "dirty logging is off");
	/* Page 127 of a 100-page range: past it. */
	expect_refused(e, S2, 0, 100, past, "bitmap: page 127");
	assert_int_equal(e->rec.flushes, flushes);
	assert_shadow_maps(e, gva_of(7), MMU_ACCESS_WRITE,
			   s2_hva + PAGE_SIZE * 7);
	assert_int_equal(memslot_dirty_log_fetch(e->mmu, S2, 0, S2_PAGES,
						 MEMSLOT_FETCH_PEEK, out, err,
						 sizeof(err)),
			 0);
	assert_int_equal(out[0], 1ULL << 7);
	slot2_free(e, &m);
}

/*
 * One flush for a harvest whose first pages were writable and whose
 * last was not (marked dirty without a translation): the need to flush
 * is kept across the pages, not decided by the last one; and each page
 * protected is the one its bit names, in every bitmap word. Both ways of
 * write protection (docs/MMU.md, "Switches").
 */
static void test_dirty_harvest_protects_its_pages_and_flushes(void **state)
{
	static const unsigned pages[] = { 3, 70 };
	uint64_t out[4];
	char err[128];

	(void)state;
	for (unsigned wp = 0; wp < 2; wp++) {
		struct mmu_env *e = env_new();
		struct tmem m = slot2_add(e, pages, 2);
		unsigned flushes;

		mmu_option_set(e->mmu, MMU_OPT_WP,
			       wp ? MMU_WP_LOCKED : MMU_WP_LOCKLESS);
		write_fault(e, 3);
		write_fault(e, 70);
		mmu_mark_dirty(e->mmu, (gpa_t)(S2_BASE + 130) << PAGE_SHIFT);
		flushes = e->rec.flushes;
		assert_int_equal(
			memslot_dirty_log_fetch(e->mmu, S2, 0, S2_PAGES,
						MEMSLOT_FETCH_CLEAR_PROTECT,
						out, err, sizeof(err)),
			0);
		assert_int_equal(out[0], 1ULL << 3);
		assert_int_equal(out[1], 1ULL << 6);
		assert_int_equal(out[2], 1ULL << 2);
		if (e->rec.flushes - flushes != 1)
			fail_msg("wp=%s: %u flushes for a harvest that "
				 "protected a writable page, not 1",
				 wp ? "locked" : "lockless",
				 e->rec.flushes - flushes);
		assert_shadow_misses(e, gva_of(3), MMU_ACCESS_WRITE);
		assert_shadow_misses(e, gva_of(70), MMU_ACCESS_WRITE);
		slot2_free(e, &m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_dirty_fetch_range_reports_and_protects_only_it),
		cmocka_unit_test(
			test_dirty_manual_harvest_clears_then_clear_protects),
		cmocka_unit_test(
			test_dirty_clear_clears_bits_set_since_the_harvest),
		cmocka_unit_test(
			test_dirty_bad_ranges_refused_and_change_nothing),
		cmocka_unit_test(
			test_dirty_harvest_protects_its_pages_and_flushes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
