/*
 * The lockless write protection and the fast page fault under running
 * vCPUs (the threaded double of vcpu_double.h,
 * which has the lockless walk mode): four vCPUs increment words of the
 * pages of a dirty-logged slot, so every write after a harvest takes the
 * fast page fault (fast-pf=on) or the locked one, while this thread
 * harvests with the lockless or the locked write protection: whole-slot
 * harvests (memslot_dirty_log_get), ranged ones and manual clears, with
 * a fast zap-all now and then that frees shadow pages and rmap
 * descriptors under the lockless walks (docs/MMU.md, "The fast page
 * fault" and "Lockless write protection"). Each page is copied once the
 * call that protected it has returned; at the end the copy must equal
 * guest memory (no lost dirty bit), and the audit finds no writable spte
 * without its mark (no stale writable translation). Run for every
 * combination of the two switches; the concurrency suite runs it under
 * ThreadSanitizer too.
 */
#include <sched.h>
#include <stdlib.h>

#include "dirty_copies.h"
#include "mmu_env.h"
#include "mmu_int.h"
#include "vcpu_double.h"

#if defined(MMUD_TSAN)
#define ROUNDS 150
#elif defined(__SANITIZE_ADDRESS__)
#define ROUNDS 600
#else
#define ROUNDS 2000
#endif

#define GVA 0x400000ULL
#define NVCPUS 4

/* The three harvests in turn; pages copied after the protecting call. */
static void harvest_once(struct tenv *t, unsigned round, struct copies *c)
{
	uint64_t bits[(NPAGES1 + 63) / 64] = { 0 };
	char err[128];

	switch (round % 3) {
	case 0:
		assert_int_equal(memslot_dirty_log_get(t->vm.mmu, 1, bits,
						       ARRAY_SIZE(bits), err,
						       sizeof(err)),
				 0);
		break;
	case 1:
		assert_int_equal(
			memslot_dirty_log_fetch(t->vm.mmu, 1, 0, NPAGES1,
						MEMSLOT_FETCH_CLEAR, bits, err,
						sizeof(err)),
			0);
		assert_int_equal(memslot_dirty_log_clear(t->vm.mmu, 1, 0,
							 NPAGES1, bits, NULL,
							 err, sizeof(err)),
				 0);
		break;
	default:
		assert_int_equal(
			memslot_dirty_log_fetch(t->vm.mmu, 1, 0, NPAGES1,
						MEMSLOT_FETCH_CLEAR_PROTECT,
						bits, err, sizeof(err)),
			0);
	}
	copy_pages(t, c, bits[0]);
}

static void harvest_round(struct tenv *t, unsigned round, void *arg)
{
	uint64_t start = accesses(t);

	harvest_once(t, round, arg);
	/* Shadow pages and descriptors freed under the walks. */
	if (round % 16 == 15) {
		mmu_zap_all_fast(t->vm.mmu);
		mmu_zap_obsolete_pages(t->vm.mmu);
	}
	/* Let the vCPUs write a little before the next harvest. */
	while (accesses(t) < start + 256)
		sched_yield();
}

static void run(enum mmu_wp_mode wp, enum mmu_fast_pf_mode fast_pf)
{
	struct tenv *t = tenv_new();
	struct copies *c = calloc(1, sizeof(*c));
	struct tenv_loop loop = { .rounds = ROUNDS,
				  .check_every = 500,
				  .check_at = 499,
				  .round = harvest_round,
				  .arg = c };
	uint64_t fast, lockless;
	char err[128];
	unsigned lost = 0;

	assert_non_null(c);
	mmu_option_set(t->vm.mmu, MMU_OPT_WP, wp);
	mmu_option_set(t->vm.mmu, MMU_OPT_FAST_PF, fast_pf);
	for (unsigned p = 0; p < NPAGES1; p++)
		tenv_map_touched(t, GVA + p * PAGE_SIZE, BASE1 + p, G_W | G_D,
				 true);
	assert_int_equal(memslot_set_flags(t->vm.mmu, 1, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	tenv_run(t, NVCPUS, &loop);
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
	fast = atomic_load(&t->vm.mmu->stats.c[MMU_STAT_FAST_PF]);
	lockless = atomic_load(&t->vm.mmu->stats.c[MMU_STAT_WP_LOCKLESS]);
	print_message("wp=%s fast-pf=%s: %u rounds, %llu pages harvested, "
		      "%llu fast page faults, %llu gfns protected lockless "
		      "(%llu retries, %llu to mmu_lock)\n",
		      wp == MMU_WP_LOCKLESS ? "lockless" : "locked",
		      fast_pf == MMU_FAST_PF_ON ? "on" : "off", ROUNDS,
		      (unsigned long long)c->harvested,
		      (unsigned long long)fast, (unsigned long long)lockless,
		      (unsigned long long)atomic_load(
			      &t->vm.mmu->stats.c[MMU_STAT_WP_RETRIES]),
		      (unsigned long long)atomic_load(
			      &t->vm.mmu->stats.c[MMU_STAT_WP_FALLBACKS]));
	if (lost)
		fail_msg("%u words changed after their page's last harvest "
			 "were never reported",
			 lost);
	assert_true(c->harvested > ROUNDS / 2);
	/* The switches did what they say. */
	if (fast_pf == MMU_FAST_PF_ON && !fast)
		fail_msg("fast-pf=on, but no write fault took the fast path");
	if (fast_pf == MMU_FAST_PF_OFF && fast)
		fail_msg("fast-pf=off, but %llu write faults took the fast "
			 "path",
			 (unsigned long long)fast);
	if (wp == MMU_WP_LOCKLESS && !lockless)
		fail_msg("wp=lockless, but no gfn was protected lockless");
	if (wp == MMU_WP_LOCKED && lockless)
		fail_msg("wp=locked, but %llu gfns were protected lockless",
			 (unsigned long long)lockless);
	free(c);
	tenv_free(t);
}

static void test_lockless_wp_fast_pf_no_write_lost(void **state)
{
	(void)state;
	run(MMU_WP_LOCKLESS, MMU_FAST_PF_ON);
}

static void test_locked_wp_fast_pf_no_write_lost(void **state)
{
	(void)state;
	run(MMU_WP_LOCKED, MMU_FAST_PF_ON);
}

static void test_lockless_wp_slow_pf_no_write_lost(void **state)
{
	(void)state;
	run(MMU_WP_LOCKLESS, MMU_FAST_PF_OFF);
}

static void test_locked_wp_slow_pf_no_write_lost(void **state)
{
	(void)state;
	run(MMU_WP_LOCKED, MMU_FAST_PF_OFF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lockless_wp_fast_pf_no_write_lost),
		cmocka_unit_test(test_locked_wp_fast_pf_no_write_lost),
		cmocka_unit_test(test_lockless_wp_slow_pf_no_write_lost),
		cmocka_unit_test(test_locked_wp_slow_pf_no_write_lost),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
