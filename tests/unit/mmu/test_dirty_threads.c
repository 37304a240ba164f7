/*
 * Harvests under running vCPUs (the threaded double of vcpu_double.h):
 * four vCPUs increment words of the 16 pages of a dirty-logged slot
 * while this thread harvests, alternating a manual-protect harvest (clear
 * only) followed by memslot_dirty_log_clear() with a plain ranged
 * harvest, and copies every reported page once the call that protected
 * it has returned (docs/MMU.md, "Manual protection"). At the end, with
 * the vCPUs stopped and a last harvest copied, the copy must equal guest
 * memory: a page written after its last copy and never reported again
 * is a write a migration would lose. MMUD_DIRTY_ROUNDS=N in the
 * environment runs N rounds instead (the long run).
 */
#include <sched.h>
#include <stdlib.h>

#include "dirty_copies.h"
#include "mmu_env.h"
#include "vcpu_double.h"

#if defined(MMUD_TSAN)
#define ROUNDS 200
#elif defined(__SANITIZE_ADDRESS__)
#define ROUNDS 1000
#else
#define ROUNDS 4000
#endif

#define GVA 0x400000ULL
#define NVCPUS 4

static void wait_accesses(struct tenv *t, uint64_t n)
{
	uint64_t start = accesses(t);

	while (accesses(t) < start + n)
		sched_yield();
}

/* One harvest: manual (clear, then clear-and-protect) on even rounds, a
 * plain clearing harvest on odd ones; the pages are copied after the
 * call that protected them. */
static void harvest_once(struct tenv *t, unsigned round, struct copies *c)
{
	uint64_t bits = 0;
	char err[128];

	if (round % 2 == 0) {
		assert_int_equal(
			memslot_dirty_log_fetch(t->vm.mmu, 1, 0, NPAGES1,
						MEMSLOT_FETCH_CLEAR, &bits, err,
						sizeof(err)),
			0);
		assert_int_equal(memslot_dirty_log_clear(t->vm.mmu, 1, 0,
							 NPAGES1, &bits, NULL,
							 err, sizeof(err)),
				 0);
	} else {
		assert_int_equal(
			memslot_dirty_log_fetch(t->vm.mmu, 1, 0, NPAGES1,
						MEMSLOT_FETCH_CLEAR_PROTECT,
						&bits, err, sizeof(err)),
			0);
	}
	copy_pages(t, c, bits);
}

static void harvest_round(struct tenv *t, unsigned round, void *arg)
{
	harvest_once(t, round, arg);
	/* Let the vCPUs write a little before the next harvest. */
	wait_accesses(t, 256);
}

static void test_dirty_threads_every_write_harvested(void **state)
{
	struct tenv *t = tenv_new();
	struct copies *c = calloc(1, sizeof(*c));
	const char *env = getenv("MMUD_DIRTY_ROUNDS");
	unsigned rounds = env ? (unsigned)strtoul(env, NULL, 10) : ROUNDS;
	struct tenv_loop loop = { .rounds = rounds,
				  .check_every = 1000,
				  .check_at = 999,
				  .round = harvest_round,
				  .arg = c };
	struct mmu_stats st;
	char err[128];
	unsigned lost = 0;

	(void)state;
	assert_non_null(c);
	for (unsigned p = 0; p < NPAGES1; p++)
		tenv_map_touched(t, GVA + p * PAGE_SIZE, BASE1 + p, G_W | G_D,
				 true);
	assert_int_equal(memslot_set_flags(t->vm.mmu, 1, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	st = tenv_run(t, NVCPUS, &loop);
	/* At rest: what is still unreported, once more. */
	harvest_once(t, 0, c);
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
	print_message("%u rounds: %llu pages harvested, %llu faults, "
		      "%llu write protects, %llu flushes\n",
		      rounds, (unsigned long long)c->harvested,
		      (unsigned long long)st.faults_fixed,
		      (unsigned long long)st.write_protects,
		      (unsigned long long)st.flushes);
	if (lost)
		fail_msg("%u words changed after their page's last harvest "
			 "were never reported",
			 lost);
	assert_true(c->harvested > rounds / 2);
	free(c);
	tenv_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dirty_threads_every_write_harvested),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
