/*
 * Memslots: add/delete/move/flags, lookups with and without the hint, the
 * generation, and refusal of bad requests with a message and nothing
 * changed.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>

#include "mmu_test.h"

#define HVA0 0x10000000ULL

static void expect_slots(struct mmu *mmu, unsigned nr)
{
	mmu_rcu_read_lock();
	assert_int_equal(memslot_count(mmu), nr);
	mmu_rcu_read_unlock();
}

static const struct memslot *lookup(struct mmu *mmu, gfn_t gfn)
{
	const struct memslot *s;

	/* The tests are the only thread: the slot outlives the section. */
	mmu_rcu_read_lock();
	s = memslot_lookup(mmu, gfn, NULL);
	mmu_rcu_read_unlock();
	return s;
}

static void test_memslot_add_lookup_finds_each_slot(void **state)
{
	struct mmu *mmu = mmu_create(NULL, NULL);
	char err[160];
	unsigned hint = 0, i;

	(void)state;
	/* Added out of order; kept sorted. */
	for (i = 0; i < 8; i++) {
		unsigned id = (i * 5) % 8;

		assert_int_equal(memslot_add(mmu, id, id * 0x100, 0x80,
					     HVA0 + id * 0x100000, 0, err,
					     sizeof(err)),
				 0);
	}
	expect_slots(mmu, 8);
	for (i = 0; i < 8 * 0x100; i++) {
		const struct memslot *s;

		mmu_rcu_read_lock();
		s = memslot_lookup(mmu, i, &hint);
		if ((i & 0xff) < 0x80) {
			assert_non_null(s);
			assert_int_equal(s->id, i / 0x100);
			assert_int_equal(memslot_gfn_to_hva(s, i),
					 HVA0 + (i / 0x100) * 0x100000 +
						 (i & 0xff) * PAGE_SIZE);
			assert_ptr_equal(memslot_lookup(mmu, i, NULL), s);
		} else {
			assert_null(s);
		}
		mmu_rcu_read_unlock();
	}
	assert_null(lookup(mmu, 0x1000000));
	mmu_destroy(mmu);
}

static void test_memslot_bad_requests_refused_nothing_changed(void **state)
{
	struct mmu *mmu = mmu_create(NULL, NULL);
	char err[160];
	uint64_t gen;

	(void)state;
	assert_int_equal(memslot_add(mmu, 1, 0x100, 0x100, HVA0, 0, err,
				     sizeof(err)),
			 0);
	mmu_rcu_read_lock();
	gen = memslot_generation(mmu);
	mmu_rcu_read_unlock();

	assert_int_equal(memslot_add(mmu, 2, 0x1ff, 0x10, HVA0, 0, err,
				     sizeof(err)),
			 -EEXIST);
	assert_non_null(strstr(err, "overlaps memslot 1"));
	assert_int_equal(memslot_add(mmu, 2, 0xf0, 0x11, HVA0, 0, err,
				     sizeof(err)),
			 -EEXIST);
	assert_int_equal(memslot_add(mmu, 1, 0x1000, 0x10, HVA0, 0, err,
				     sizeof(err)),
			 -EEXIST);
	assert_non_null(strstr(err, "already exists"));
	assert_int_equal(memslot_add(mmu, 2, 0x1000, 0, HVA0, 0, err,
				     sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "zero size"));
	assert_int_equal(memslot_add(mmu, 2, 0x1000, 1, HVA0 + 8, 0, err,
				     sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "not page aligned"));
	assert_int_equal(memslot_add(mmu, 2, MMU_GFN_LIMIT - 1, 2, HVA0, 0, err,
				     sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "beyond"));
	assert_int_equal(memslot_add(mmu, 2, ~0ULL - 1, 4, HVA0, 0, err,
				     sizeof(err)),
			 -EINVAL);
	assert_int_equal(memslot_add(mmu, 2, 0x1000, 1, 1ULL << 47, 0, err,
				     sizeof(err)),
			 -EINVAL);
	assert_int_equal(memslot_add(mmu, MEMSLOT_MAX_ID + 1, 0x1000, 1, HVA0,
				     0, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(memslot_add(mmu, 2, 0x1000, 1, HVA0, 0x80, err,
				     sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "unknown flags"));
	assert_int_equal(memslot_delete(mmu, 7, err, sizeof(err)), -ENOENT);
	assert_int_equal(memslot_move(mmu, 7, 0, err, sizeof(err)), -ENOENT);
	assert_int_equal(memslot_set_flags(mmu, 1, MEMSLOT_READONLY, err,
					   sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "READONLY"));
	assert_int_equal(memslot_add(mmu, 2, 0x400, 0x100, HVA0, 0, err,
				     sizeof(err)),
			 0);
	assert_int_equal(memslot_move(mmu, 2, 0x180, err, sizeof(err)),
			 -EEXIST);

	/* Only the one good add changed anything. */
	expect_slots(mmu, 2);
	assert_int_equal(lookup(mmu, 0x100)->npages, 0x100);
	assert_int_equal(lookup(mmu, 0x1ff)->id, 1);
	assert_int_equal(lookup(mmu, 0x400)->id, 2);
	assert_null(lookup(mmu, 0x1000));
	mmu_rcu_read_lock();
	assert_int_equal(memslot_generation(mmu), gen + 1);
	mmu_rcu_read_unlock();
	mmu_destroy(mmu);
}

static void test_memslot_delete_move_flags_update_set(void **state)
{
	struct mmu *mmu = mmu_create(NULL, NULL);
	char err[160];
	uint64_t gen0, gen1;

	(void)state;
	mmu_rcu_read_lock();
	gen0 = memslot_generation(mmu);
	mmu_rcu_read_unlock();
	assert_int_equal(
		memslot_add(mmu, 3, 0x10, 0x10, HVA0, 0, err, sizeof(err)), 0);
	assert_int_equal(memslot_move(mmu, 3, 0x800, err, sizeof(err)), 0);
	assert_null(lookup(mmu, 0x10));
	assert_int_equal(lookup(mmu, 0x805)->id, 3);
	assert_int_equal(memslot_gfn_to_hva(lookup(mmu, 0x805), 0x805),
			 HVA0 + 5 * PAGE_SIZE);
	assert_int_equal(memslot_set_flags(mmu, 3, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	assert_non_null(lookup(mmu, 0x805)->dirty_bitmap);
	assert_int_equal(memslot_set_flags(mmu, 3, 0, err, sizeof(err)), 0);
	assert_null(lookup(mmu, 0x805)->dirty_bitmap);
	assert_int_equal(memslot_dirty_log_get(mmu, 3, NULL, 0, err,
					       sizeof(err)),
			 -EINVAL);
	assert_int_equal(memslot_delete(mmu, 3, err, sizeof(err)), 0);
	assert_null(lookup(mmu, 0x805));
	expect_slots(mmu, 0);
	mmu_rcu_read_lock();
	gen1 = memslot_generation(mmu);
	mmu_rcu_read_unlock();
	/* Each publish moved the generation; none is left in progress. */
	assert_true(gen1 > gen0 + 4);
	assert_false(gen1 & MEMSLOT_GEN_UPDATE_IN_PROGRESS);
	mmu_destroy(mmu);
}

struct gen_reader {
	struct mmu *mmu;
	_Atomic int ready;
	uint64_t seen_gen;
	int add_ret;
};

/*
 * A reader inside one read-side section: it holds up the add's grace
 * period, so once it sees the new array published it must see the
 * update-in-progress bit in its generation.
 */
static void *gen_reader_thread(void *arg)
{
	struct gen_reader *r = arg;

	mmu_rcu_register_thread();
	mmu_rcu_read_lock();
	atomic_store(&r->ready, 1);
	while (memslot_count(r->mmu) == 0)
		sched_yield();
	r->seen_gen = memslot_generation(r->mmu);
	mmu_rcu_read_unlock();
	mmu_rcu_unregister_thread();
	return NULL;
}

static void *add_thread(void *arg)
{
	struct gen_reader *r = arg;
	char err[128];

	/* cmocka asserts only on the main thread: report the result. */
	mmu_rcu_register_thread();
	r->add_ret = memslot_add(r->mmu, 0, 0, 16, HVA0, 0, err, sizeof(err));
	mmu_rcu_unregister_thread();
	return NULL;
}

static void
test_memslot_generation_in_progress_until_grace_period_ends(void **state)
{
	struct gen_reader r = { .mmu = mmu_create(NULL, NULL) };
	pthread_t reader, adder;
	uint64_t gen0;

	(void)state;
	mmu_rcu_read_lock();
	gen0 = memslot_generation(r.mmu);
	mmu_rcu_read_unlock();
	assert_int_equal(pthread_create(&reader, NULL, gen_reader_thread, &r),
			 0);
	while (!atomic_load(&r.ready))
		sched_yield();
	assert_int_equal(pthread_create(&adder, NULL, add_thread, &r), 0);
	pthread_join(reader, NULL);
	pthread_join(adder, NULL);
	assert_int_equal(r.add_ret, 0);
	assert_int_equal(r.seen_gen, gen0 | MEMSLOT_GEN_UPDATE_IN_PROGRESS);
	mmu_rcu_read_lock();
	assert_int_equal(memslot_generation(r.mmu), gen0 + 1);
	mmu_rcu_read_unlock();
	mmu_destroy(r.mmu);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memslot_add_lookup_finds_each_slot),
		cmocka_unit_test(
			test_memslot_bad_requests_refused_nothing_changed),
		cmocka_unit_test(test_memslot_delete_move_flags_update_set),
		cmocka_unit_test(
			test_memslot_generation_in_progress_until_grace_period_ends),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
