/*
 * The lockless rmap walk's guards, one at a time and deterministically
 * (docs/locking.md, "Lockless rmap walks", #19 and #20): a removal that
 * moves an entry while a walk is between two entries makes the walk
 * report the change (so the write protection retries), never a walk
 * that quietly missed the moved entry; a descriptor emptied while a
 * lockless write-protecting walk is in progress is kept, not freed, and
 * freed after it; and a remote flush, which comes before shadow pages
 * are freed, waits for that walk to end. The removal happens inside the
 * walk's own callback, which is exactly "between two entries".
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "mmu_int.h"

#define N 6

static _Atomic uint64_t sptes[N];

struct walk {
	struct mmu *mmu;
	struct pte_list_head *head;
	unsigned calls, remove_at;
	const _Atomic uint64_t *victim;
	bool seen[N];
};

static void visit(_Atomic uint64_t *sptep, void *arg)
{
	struct walk *w = arg;

	w->seen[sptep - sptes] = true;
	/* A remover under mmu_lock, between this entry and the next. */
	if (++w->calls == w->remove_at)
		assert_true(pte_list_remove_rmap(w->mmu, w->head, w->victim));
}

static void fill(struct mmu *mmu, struct pte_list_head *h, unsigned n)
{
	struct pte_desc_cache c = { .nr = 0 };

	(void)mmu;
	for (unsigned i = 0; i < MMU_CACHE_DESCS; i++) {
		c.d[i] = malloc(sizeof(struct pte_list_desc));
		assert_non_null(c.d[i]);
		c.nr++;
	}
	for (unsigned i = 0; i < n; i++)
		pte_list_add(&c, h, &sptes[i]);
	while (c.nr)
		free(c.d[--c.nr]);
}

static void empty(struct mmu *mmu, struct pte_list_head *h)
{
	_Atomic uint64_t *p;

	while ((p = pte_list_first(h)))
		assert_true(pte_list_remove_rmap(mmu, h, p));
	pte_list_free_dead(mmu, false);
}

/* Entry 0 removed while the walk is past it: the last entry moves into
 * its hole, behind the walk. */
static void test_rmap_walk_reports_a_move_behind_it(void **state)
{
	struct mmu *mmu = mmu_create(NULL, NULL);
	struct pte_list_head h = { 0 };
	struct walk w = { 0 };
	bool complete;

	(void)state;
	assert_non_null(mmu);
	fill(mmu, &h, 5);
	w = (struct walk){
		.mmu = mmu, .head = &h, .remove_at = 3, .victim = &sptes[0]
	};
	complete = pte_list_walk_lockless(mmu, &h, visit, &w);
	if (complete)
		for (unsigned i = 1; i < 5; i++)
			if (!w.seen[i])
				fail_msg("the walk reported the list whole but "
					 "missed entry %u, moved behind it by "
					 "the removal of entry 0",
					 i);
	assert_false(complete);
	/* The retry sees every entry left. */
	w = (struct walk){ .mmu = mmu, .head = &h };
	assert_true(pte_list_walk_lockless(mmu, &h, visit, &w));
	for (unsigned i = 1; i < 5; i++)
		assert_true(w.seen[i]);
	empty(mmu, &h);
	mmu_destroy(mmu);
}

static void test_rmap_descriptor_kept_while_a_walk_runs(void **state)
{
	struct mmu *mmu = mmu_create(NULL, NULL);
	struct pte_list_head h = { 0 };

	(void)state;
	assert_non_null(mmu);
	fill(mmu, &h, 3);
	mmu_wp_walk_begin(mmu);
	for (unsigned i = 0; i < 3; i++)
		assert_true(pte_list_remove_rmap(mmu, &h, &sptes[i]));
	if (!mmu->dead_descs)
		fail_msg("a descriptor emptied during a lockless walk was "
			 "freed at once; the walk may still read it");
	mmu_wp_walk_end(mmu);
	pte_list_free_dead(mmu, false);
	assert_null(mmu->dead_descs);
	mmu_destroy(mmu);
}

struct flusher {
	struct mmu *mmu;
	_Atomic bool done;
};

static void *flush_thread(void *arg)
{
	struct flusher *f = arg;

	mmu_flush_remote_tlbs(f->mmu);
	atomic_store(&f->done, true);
	return NULL;
}

static void test_rmap_flush_waits_for_the_walk(void **state)
{
	struct flusher f = { .mmu = mmu_create(NULL, NULL) };
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	pthread_t t;

	(void)state;
	assert_non_null(f.mmu);
	mmu_wp_walk_begin(f.mmu);
	assert_int_equal(pthread_create(&t, NULL, flush_thread, &f), 0);
	nanosleep(&ts, NULL);
	if (atomic_load(&f.done))
		fail_msg("the flush returned while a lockless walk was in "
			 "progress: the shadow pages it frees after may be "
			 "under that walk");
	mmu_wp_walk_end(f.mmu);
	pthread_join(t, NULL);
	assert_true(atomic_load(&f.done));
	mmu_destroy(f.mmu);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rmap_walk_reports_a_move_behind_it),
		cmocka_unit_test(test_rmap_descriptor_kept_while_a_walk_runs),
		cmocka_unit_test(test_rmap_flush_waits_for_the_walk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
