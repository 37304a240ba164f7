/*
 * The dirty ring under running vCPUs (the threaded double of
 * vcpu_double.h; docs/locking.md #17, #17a): four vCPUs increment words
 * of the 16 pages of a dirty-logged slot, pushing to their rings, while
 * this thread harvests every ring, resets, and copies each harvested
 * page after the reset returned. Within one round no page may be
 * reported twice (one protection epoch, one push), every push is
 * harvested once, and at the end, with the vCPUs stopped and a last
 * round copied, the copies must equal guest memory: a write never
 * reported is one a migration would lose. Under ThreadSanitizer (the
 * concurrency suite) it checks the push/harvest barrier pair.
 */
#include <sched.h>
#include <stdlib.h>

#include "mmu_env.h"
#include "vcpu_double.h"

#if defined(MMUD_TSAN)
#define ROUNDS 200
#elif defined(__SANITIZE_ADDRESS__)
#define ROUNDS 1000
#else
#define ROUNDS 3000
#endif

#define GVA 0x400000ULL
#define NVCPUS 4
#define RING 128

struct copies {
	uint64_t page[NPAGES1][NVCPUS];
	uint64_t harvested;
	unsigned dups;
};

static void copy_page(struct tenv *t, struct copies *c, unsigned p)
{
	const _Atomic uint64_t *w =
		(const _Atomic uint64_t *)(uintptr_t)env_hva(&t->env,
							     BASE1 + p);

	for (unsigned i = 0; i < NVCPUS; i++)
		c->page[p][i] =
			atomic_load_explicit(&w[i], memory_order_acquire);
}

static uint64_t accesses(struct tenv *t)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < t->vm.nr; i++)
		n += atomic_load_explicit(&t->vm.vcpus[i].accesses,
					  memory_order_relaxed);
	return n;
}

static void harvest_once(struct tenv *t, struct copies *c)
{
	struct mmu_dirty_entry out[RING];
	uint32_t seen = 0; /* pages of slot 1 reported this round */

	for (unsigned v = 0; v < NVCPUS; v++) {
		int n = mmu_dirty_ring_harvest(t->vm.mmu, v, out, RING);

		/* A vCPU thread not started yet has no ring. */
		if (n == -ENOENT)
			continue;
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			if (out[i].slot != 1 || out[i].offset >= NPAGES1)
				fail_msg("vCPU %u entry %d: slot %u offset "
					 "%llu is not a page of slot 1",
					 v, i, out[i].slot,
					 (unsigned long long)out[i].offset);
			if (seen & (1u << out[i].offset)) {
				print_error("page %llu reported twice in one "
					    "round\n",
					    (unsigned long long)out[i].offset);
				c->dups++;
			}
			seen |= 1u << out[i].offset;
			c->harvested++;
		}
	}
	mmu_dirty_ring_reset(t->vm.mmu);
	/* After the reset's flush: a store before it is in the copy, one
	 * after it faults and pushes again. */
	for (unsigned p = 0; p < NPAGES1; p++)
		if (seen & (1u << p))
			copy_page(t, c, p);
}

static void harvest_round(struct tenv *t, unsigned round, void *arg)
{
	uint64_t start = accesses(t);

	(void)round;
	harvest_once(t, arg);
	while (accesses(t) < start + 256)
		sched_yield();
}

static void test_dirty_ring_threads_every_write_reported_once(void **state)
{
	struct tenv *t = tenv_new();
	struct copies *c = calloc(1, sizeof(*c));
	struct tenv_loop loop = { .rounds = ROUNDS,
				  .check_every = 1000,
				  .check_at = 999,
				  .round = harvest_round,
				  .arg = c };
	struct mmu_stats st;
	char err[128];
	unsigned lost = 0;
	uint64_t bits = 0;

	(void)state;
	assert_non_null(c);
	assert_int_equal(
		mmu_dirty_ring_enable(t->vm.mmu, RING, err, sizeof(err)), 0);
	for (unsigned p = 0; p < NPAGES1; p++)
		tenv_map_touched(t, GVA + p * PAGE_SIZE, BASE1 + p, G_W | G_D,
				 true);
	assert_int_equal(memslot_set_flags(t->vm.mmu, 1, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	st = tenv_run(t, NVCPUS, &loop);
	/* The vCPUs are gone, and with them their rings: what they still
	 * held went to the bitmap (mmu_vcpu_destroy()). */
	assert_int_equal(memslot_dirty_log_get(t->vm.mmu, 1, &bits, 1, err,
					       sizeof(err)),
			 0);
	for (unsigned p = 0; p < NPAGES1; p++)
		if (bits & (1ULL << p))
			copy_page(t, c, p);
	for (unsigned p = 0; p < NPAGES1; p++) {
		const uint64_t *w = (const uint64_t *)(uintptr_t)env_hva(
			&t->env, BASE1 + p);

		for (unsigned i = 0; i < NVCPUS; i++)
			if (c->page[p][i] != w[i]) {
				print_error("page %u word %u: copy %llu, "
					    "memory %llu\n",
					    p, i,
					    (unsigned long long)c->page[p][i],
					    (unsigned long long)w[i]);
				lost++;
			}
	}
	print_message("%u rounds: %llu entries harvested, %llu pushes, "
		      "%llu resets, %llu overflows\n",
		      ROUNDS, (unsigned long long)c->harvested,
		      (unsigned long long)st.ring_pushes,
		      (unsigned long long)st.ring_resets,
		      (unsigned long long)st.ring_overflows);
	if (lost)
		fail_msg("%u words changed after their page's last harvest "
			 "were never reported",
			 lost);
	if (c->dups)
		fail_msg("%u pages reported twice within one protection",
			 c->dups);
	/* Every push harvested once, but the last of each page, maybe, which
	 * the bitmap took; none spilled there for want of room. */
	assert_int_equal(st.ring_overflows, 0);
	assert_true(st.ring_pushes >= c->harvested &&
		    st.ring_pushes - c->harvested <= NPAGES1);
	assert_true(c->harvested > ROUNDS / 2);
	free(c);
	tenv_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_dirty_ring_threads_every_write_reported_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
