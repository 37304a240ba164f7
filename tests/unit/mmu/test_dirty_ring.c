/*
 * The dirty ring (core/mmu/dirty_ring.c, docs/MMU.md, "The dirty ring"):
 * the fault that maps a page of a logging slot writable pushes it once;
 * a harvest takes the pushed entries in order and leaves the pages
 * writable; a reset write-protects exactly the harvested ones, so their
 * next write pushes again; the ring wraps; soft-full is size minus the
 * reserve, not one entry more or less; a ring with no room left spills
 * into the bitmap; the bitmap readers take the ring's entries first; and
 * sizes out of KVM's bounds are refused with nothing changed.
 */
#include "mmu_env.h"

/* A dirty-logged slot of 256 pages at gfn 0x200, gva 0x600000 + i * 4K
 * mapped writable to its page i. */
#define S2 2
#define S2_BASE 0x200
#define S2_PAGES 256
#define RING 128

static hva_t s2_hva;

static struct tmem slot2_add(struct mmu_env *e)
{
	struct tmem m = tmem_alloc(S2_PAGES);
	char err[128];

	assert_int_equal(memslot_add(e->mmu, S2, S2_BASE, S2_PAGES,
				     tmem_hva(&m), MEMSLOT_LOG_DIRTY, err,
				     sizeof(err)),
			 0);
	s2_hva = tmem_hva(&m);
	for (unsigned i = 0; i < S2_PAGES; i++)
		env_map(e, PML4, 0x600000 + i * PAGE_SIZE, S2_BASE + i,
			G_W | G_D);
	return m;
}

static gva_t gva_of(unsigned page)
{
	return 0x600000 + (gva_t)page * PAGE_SIZE;
}

static struct mmu_env *ring_env(struct tmem *m)
{
	struct mmu_env *e = env_new();
	char err[128];

	*m = slot2_add(e);
	assert_int_equal(mmu_dirty_ring_enable(e->mmu, RING, err, sizeof(err)),
			 0);
	return e;
}

static void write_fault(struct mmu_env *e, unsigned page)
{
	assert_int_equal(env_fault(e, gva_of(page), MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, gva_of(page), MMU_ACCESS_WRITE,
			   s2_hva + page * PAGE_SIZE);
}

static void ring_free(struct mmu_env *e, struct tmem *m)
{
	char err[128];

	env_audit(e);
	assert_int_equal(memslot_delete(e->mmu, S2, err, sizeof(err)), 0);
	env_free(e);
	tmem_free(m);
}

/* Harvests vCPU 0 and checks the entries are pages want[0..n). */
static void expect_harvest(struct mmu_env *e, const unsigned *want, unsigned n)
{
	struct mmu_dirty_entry out[RING + 1];
	int got = mmu_dirty_ring_harvest(e->mmu, 0, out, RING + 1);

	if (got != (int)n)
		fail_msg("harvest: %d entries, want %u", got, n);
	for (unsigned i = 0; i < n; i++)
		if (out[i].slot != S2 || out[i].offset != want[i])
			fail_msg("entry %u: slot %u offset %llu, want slot %u "
				 "offset %u",
				 i, out[i].slot,
				 (unsigned long long)out[i].offset, S2,
				 want[i]);
}

static uint64_t bitmap_word(struct mmu_env *e, unsigned w)
{
	const struct memslots *slots = atomic_load(&e->mmu->slots);

	for (unsigned i = 0; i < slots->nr; i++)
		if (slots->slots[i]->id == S2)
			return atomic_load(&slots->slots[i]->dirty_bitmap[w]);
	fail_msg("slot %u is gone", S2);
	return 0;
}

static void test_ring_sizes_out_of_bounds_refused(void **state)
{
	static const uint32_t bad[] = { 0, 64, 100, 127, 129, 131072 };
	struct mmu_env *e = env_new();
	char err[128];

	(void)state;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(mmu_dirty_ring_enable(e->mmu, bad[i], err,
						       sizeof(err)),
				 -EINVAL);
		assert_non_null(strstr(err, "power of two"));
		assert_int_equal(mmu_dirty_ring_size(e->mmu), 0);
	}
	assert_int_equal(mmu_dirty_ring_harvest(e->mmu, 0, NULL, 0), -EINVAL);
	assert_int_equal(mmu_dirty_ring_enable(e->mmu, MMU_DIRTY_RING_MAX, err,
					       sizeof(err)),
			 0);
	assert_int_equal(mmu_dirty_ring_enable(e->mmu, RING, err, sizeof(err)),
			 -EEXIST);
	assert_int_equal(mmu_dirty_ring_size(e->mmu), MMU_DIRTY_RING_MAX);
	assert_int_equal(mmu_dirty_ring_harvest(e->mmu, 7, NULL, 0), -ENOENT);
	env_free(e);
}

static void test_ring_push_harvest_reset_reprotects(void **state)
{
	static const unsigned pages[] = { 3, 70, 130 };
	struct tmem m;
	struct mmu_env *e = ring_env(&m);
	struct mmu_stats st;

	(void)state;
	for (unsigned i = 0; i < 3; i++)
		write_fault(e, pages[i]);
	/* Again on a page already writable: not pushed twice. */
	assert_int_equal(env_fault(e, gva_of(3), MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(
		bitmap_word(e, 0) | bitmap_word(e, 1) | bitmap_word(e, 2), 0);
	expect_harvest(e, pages, 3);
	expect_harvest(e, NULL, 0);
	/* Harvested, not reset: still writable. */
	for (unsigned i = 0; i < 3; i++)
		assert_shadow_maps(e, gva_of(pages[i]), MMU_ACCESS_WRITE,
				   s2_hva + pages[i] * PAGE_SIZE);
	assert_int_equal(mmu_dirty_ring_reset(e->mmu), 3);
	for (unsigned i = 0; i < 3; i++)
		assert_shadow_misses(e, gva_of(pages[i]), MMU_ACCESS_WRITE);
	assert_int_equal(mmu_dirty_ring_reset(e->mmu), 0);
	/* The next write pushes again. */
	write_fault(e, 70);
	expect_harvest(e, &pages[1], 1);
	st = env_stats(e);
	assert_int_equal(st.ring_pushes, 4);
	assert_int_equal(st.ring_resets, 3);
	assert_int_equal(st.ring_overflows, 0);
	ring_free(e, &m);
}

static void test_ring_reset_only_the_harvested(void **state)
{
	static const unsigned pages[] = { 5, 6, 7 };
	struct mmu_dirty_entry out[2];
	struct tmem m;
	struct mmu_env *e = ring_env(&m);

	(void)state;
	for (unsigned i = 0; i < 3; i++)
		write_fault(e, pages[i]);
	assert_int_equal(mmu_dirty_ring_harvest(e->mmu, 0, out, 2), 2);
	assert_int_equal(mmu_dirty_ring_reset(e->mmu), 2);
	assert_shadow_misses(e, gva_of(5), MMU_ACCESS_WRITE);
	assert_shadow_misses(e, gva_of(6), MMU_ACCESS_WRITE);
	/* Pushed, not harvested: neither protected nor lost. */
	assert_shadow_maps(e, gva_of(7), MMU_ACCESS_WRITE,
			   s2_hva + 7 * PAGE_SIZE);
	expect_harvest(e, &pages[2], 1);
	assert_int_equal(mmu_dirty_ring_reset(e->mmu), 1);
	assert_shadow_misses(e, gva_of(7), MMU_ACCESS_WRITE);
	ring_free(e, &m);
}

static void test_ring_soft_full_at_size_minus_reserve_and_wraps(void **state)
{
	const unsigned soft = RING - MMU_DIRTY_RING_RESERVE;
	struct mmu_dirty_ring_stats rs;
	unsigned next = 0, want[RING];
	struct tmem m;
	struct mmu_env *e = ring_env(&m);

	(void)state;
	/* Three laps of the ring, each filled to soft-full. */
	for (unsigned lap = 0; lap < 3 * RING / soft; lap++) {
		for (unsigned i = 0; i < soft; i++) {
			if (mmu_vcpu_dirty_ring_full(e->v))
				fail_msg("lap %u: soft-full after %u pushes, "
					 "want %u",
					 lap, i, soft);
			want[i] = next;
			write_fault(e, next);
			next = (next + 1) % S2_PAGES;
		}
		if (!mmu_vcpu_dirty_ring_full(e->v))
			fail_msg("lap %u: not soft-full after %u pushes", lap,
				 soft);
		/* Asked again while held: one exit, counted once. */
		assert_true(mmu_vcpu_dirty_ring_full(e->v));
		assert_int_equal(mmu_dirty_ring_stats(e->mmu, 0, &rs), 0);
		assert_int_equal(rs.full_exits, lap + 1);
		assert_int_equal(rs.used, soft);
		expect_harvest(e, want, soft);
		/* Harvested is not enough: only the reset makes room. */
		assert_true(mmu_vcpu_dirty_ring_full(e->v));
		assert_int_equal(mmu_dirty_ring_reset(e->mmu), soft);
		assert_false(mmu_vcpu_dirty_ring_full(e->v));
	}
	assert_int_equal(env_stats(e).ring_full_exits, 3 * RING / soft);
	ring_free(e, &m);
}

static void test_ring_without_room_spills_into_bitmap(void **state)
{
	struct tmem m;
	struct mmu_env *e = ring_env(&m);

	(void)state;
	/* The fault path never stops; the vCPU layer does. Past the
	 * whole ring the page goes to the bitmap, not lost. */
	for (unsigned i = 0; i <= RING; i++)
		write_fault(e, i);
	assert_int_equal(env_stats(e).ring_overflows, 1);
	assert_int_equal(env_stats(e).ring_pushes, RING);
	assert_int_equal(bitmap_word(e, RING / 64), 1);
	ring_free(e, &m);
}

static void test_ring_bitmap_readers_take_the_ring_first(void **state)
{
	static const unsigned pages[] = { 1, 65, 200 };
	uint64_t out[S2_PAGES / 64];
	struct tmem m;
	struct mmu_env *e = ring_env(&m);
	char err[128];

	(void)state;
	for (unsigned i = 0; i < 3; i++)
		write_fault(e, pages[i]);
	assert_int_equal(memslot_dirty_log_get(e->mmu, S2, out, S2_PAGES / 64,
					       err, sizeof(err)),
			 0);
	assert_int_equal(out[0], 1ULL << 1);
	assert_int_equal(out[1], 1ULL << 1);
	assert_int_equal(out[2], 0);
	assert_int_equal(out[3], 1ULL << 8);
	for (unsigned i = 0; i < 3; i++)
		assert_shadow_misses(e, gva_of(pages[i]), MMU_ACCESS_WRITE);
	expect_harvest(e, NULL, 0);
	/* And a peek too, which leaves the bits for the next reader. */
	write_fault(e, 9);
	assert_int_equal(memslot_dirty_log_fetch(e->mmu, S2, 0, 64,
						 MEMSLOT_FETCH_PEEK, out, err,
						 sizeof(err)),
			 0);
	assert_int_equal(out[0], 1ULL << 9);
	assert_int_equal(bitmap_word(e, 0), 1ULL << 9);
	ring_free(e, &m);
}

static void test_ring_logging_off_drains_and_lets_go(void **state)
{
	struct tmem m;
	struct mmu_env *e = ring_env(&m);
	char err[128];

	(void)state;
	for (unsigned i = 0; i < RING - MMU_DIRTY_RING_RESERVE; i++)
		write_fault(e, i);
	struct mmu_dirty_entry one;

	/* One harvested, the rest only pushed. */
	assert_int_equal(mmu_dirty_ring_harvest(e->mmu, 0, &one, 1), 1);
	assert_true(mmu_vcpu_dirty_ring_full(e->v));
	assert_int_equal(memslot_set_flags(e->mmu, S2, 0, err, sizeof(err)), 0);
	/* Every entry freed, the vCPU free to run, nothing left over. */
	assert_false(mmu_vcpu_dirty_ring_full(e->v));
	assert_int_equal(env_stats(e).ring_resets,
			 RING - MMU_DIRTY_RING_RESERVE);
	expect_harvest(e, NULL, 0);
	/* Not logging: writes push nothing. */
	write_fault(e, 200);
	expect_harvest(e, NULL, 0);
	ring_free(e, &m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ring_sizes_out_of_bounds_refused),
		cmocka_unit_test(test_ring_push_harvest_reset_reprotects),
		cmocka_unit_test(test_ring_reset_only_the_harvested),
		cmocka_unit_test(
			test_ring_soft_full_at_size_minus_reserve_and_wraps),
		cmocka_unit_test(test_ring_without_room_spills_into_bitmap),
		cmocka_unit_test(test_ring_bitmap_readers_take_the_ring_first),
		cmocka_unit_test(test_ring_logging_off_drains_and_lets_go),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
