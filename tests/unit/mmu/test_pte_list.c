/*
 * pte lists (core/mmu/pte_list.c) on their own: adds and removals in the
 * orders the MMU makes them (oldest first, as fast zap-all frees obsolete
 * pages; newest first, as slow zap-all does; from the middle; random),
 * checking after each step what the list holds, its count, and the shape
 * of its descriptor chain (links both ways, the head's oldest pointer,
 * every descriptor between the head and the oldest full). The entries are
 * addresses in an array: the lists never dereference them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mmu_int.h"

#define N 1000 /* about 70 descriptors */

static _Atomic uint64_t sptes[N];

struct list {
	struct pte_list_head head;
	struct pte_desc_cache cache;
	bool present[N];
	unsigned count;
};

static void topup(struct list *l)
{
	while (l->cache.nr < MMU_CACHE_DESCS) {
		l->cache.d[l->cache.nr] = malloc(sizeof(struct pte_list_desc));
		assert_non_null(l->cache.d[l->cache.nr]);
		l->cache.nr++;
	}
}

static void add(struct list *l, unsigned i)
{
	topup(l);
	pte_list_add(&l->cache, &l->head, &sptes[i]);
	l->present[i] = true;
	l->count++;
}

static bool mark_seen(_Atomic uint64_t *sptep, void *arg)
{
	unsigned *seen = arg;
	ptrdiff_t i = sptep - sptes;

	if (i < 0 || i >= N)
		fail_msg("the list holds %p, never added", (void *)sptep);
	seen[i]++;
	return true;
}

/* What the list holds is exactly present[], and its chain is well formed. */
static void check(const struct list *l, const char *when)
{
	static unsigned seen[N];
	const struct pte_list_desc *h, *d, *prev = NULL;
	unsigned total = 0;

	memset(seen, 0, sizeof(seen));
	assert_true(pte_list_for_each(&l->head, mark_seen, seen));
	for (unsigned i = 0; i < N; i++)
		if (seen[i] != (l->present[i] ? 1u : 0u))
			fail_msg("%s: entry %u seen %u times, expected %u",
				 when, i, seen[i], l->present[i] ? 1 : 0);
	if (pte_list_count(&l->head) != l->count)
		fail_msg("%s: count %u, expected %u", when,
			 pte_list_count(&l->head), l->count);
	if (!(l->head.val & 1))
		return;
	h = (const struct pte_list_desc *)(l->head.val & ~(uintptr_t)1);
	if (h->newer)
		fail_msg("%s: the head has a newer descriptor", when);
	for (d = h; d; prev = d, d = d->more) {
		if (d != h && d->newer != prev)
			fail_msg("%s: a descriptor's newer link is wrong",
				 when);
		if (!d->spte_count)
			fail_msg("%s: an empty descriptor stays", when);
		if (d != h && d->more && d->spte_count != PTE_LIST_EXT)
			fail_msg("%s: a middle descriptor holds %u of %u", when,
				 d->spte_count, PTE_LIST_EXT);
		total += d->spte_count;
	}
	if (h->oldest != prev)
		fail_msg("%s: the head's oldest is not the last descriptor",
			 when);
	if (h->total != total)
		fail_msg("%s: the head says %u entries, the chain holds %u",
			 when, h->total, total);
}

static void remove_one(struct list *l, unsigned i)
{
	if (!pte_list_remove(&l->head, &sptes[i]))
		fail_msg("entry %u (of %u left) not found", i, l->count);
	l->present[i] = false;
	l->count--;
	/* Not found once gone. */
	assert_false(pte_list_remove(&l->head, &sptes[i]));
}

static void fill(struct list *l)
{
	memset(l, 0, sizeof(*l));
	for (unsigned i = 0; i < N; i++)
		add(l, i);
	check(l, "after adding");
}

static void drain(struct list *l, const unsigned *order)
{
	char when[64];

	for (unsigned k = 0; k < N; k++) {
		remove_one(l, order[k]);
		snprintf(when, sizeof(when), "after %u removals", k + 1);
		check(l, when);
	}
	assert_int_equal(l->head.val, 0);
	while (l->cache.nr)
		free(l->cache.d[--l->cache.nr]);
}

static void test_pte_list_remove_oldest_first(void **state)
{
	static unsigned order[N];
	struct list l;

	(void)state;
	fill(&l);
	for (unsigned k = 0; k < N; k++)
		order[k] = k;
	drain(&l, order);
}

static void test_pte_list_remove_newest_first(void **state)
{
	static unsigned order[N];
	struct list l;

	(void)state;
	fill(&l);
	for (unsigned k = 0; k < N; k++)
		order[k] = N - 1 - k;
	drain(&l, order);
}

/* From the middle outwards: every removal lands between the ends. */
static void test_pte_list_remove_middle_out(void **state)
{
	static unsigned order[N];
	struct list l;

	(void)state;
	fill(&l);
	for (unsigned k = 0; k < N; k++)
		order[k] = k % 2 ? N / 2 + k / 2 : N / 2 - 1 - k / 2;
	drain(&l, order);
}

static void test_pte_list_random_adds_and_removals(void **state)
{
	struct list l;
	unsigned seed = 12345;
	char when[64];

	(void)state;
	memset(&l, 0, sizeof(l));
	for (unsigned step = 0; step < 20000; step++) {
		unsigned i;

		seed = seed * 1103515245u + 12345u;
		i = (seed >> 8) % N;
		if (l.present[i])
			remove_one(&l, i);
		else
			add(&l, i);
		if (step % 97 == 0) {
			snprintf(when, sizeof(when), "at step %u", step);
			check(&l, when);
		}
	}
	check(&l, "at the end");
	for (unsigned i = 0; i < N; i++)
		if (l.present[i])
			remove_one(&l, i);
	check(&l, "emptied");
	assert_int_equal(l.head.val, 0);
	while (l.cache.nr)
		free(l.cache.d[--l.cache.nr]);
}

/* One entry is stored inline, without a descriptor. */
static void test_pte_list_single_entry_inline(void **state)
{
	struct list l;

	(void)state;
	memset(&l, 0, sizeof(l));
	assert_false(pte_list_remove(&l.head, &sptes[0]));
	add(&l, 7);
	assert_int_equal(l.head.val & 1, 0);
	assert_ptr_equal(pte_list_first(&l.head), &sptes[7]);
	assert_false(pte_list_remove(&l.head, &sptes[8]));
	check(&l, "one entry");
	remove_one(&l, 7);
	assert_int_equal(l.head.val, 0);
	while (l.cache.nr)
		free(l.cache.d[--l.cache.nr]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pte_list_remove_oldest_first),
		cmocka_unit_test(test_pte_list_remove_newest_first),
		cmocka_unit_test(test_pte_list_remove_middle_out),
		cmocka_unit_test(test_pte_list_random_adds_and_removals),
		cmocka_unit_test(test_pte_list_single_entry_inline),
	};

	return cmocka_run_group_tests_name("pte_list", tests, NULL, NULL);
}
