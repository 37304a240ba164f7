/*
 * Writes to gfns the MMU write-protects because they are (or were) guest
 * page tables above level 1 (docs/MMU.md, "Write flooding" and "Writes
 * that never complete"). The pattern is Linux's pgd_alloc: a frame that
 * was a page directory of a dead address space is reused as a new one
 * and filled through the kernel's data mapping. A write whose tracked
 * mapping is lost before it completes (the soft TLB evicted it while the
 * same REP MOVSQ read its source) faults again at the same gpa: the MMU
 * then unprotects the gfn, so the write can go through a writable spte.
 * Emulated writes to an upper table no fault walks through any more zap
 * it after MMU_WRITE_FLOOD_LIMIT. Every test ends with a clean audit.
 */
#include "mmu_env.h"

#define OLD_VA 0x600000ULL /* data in the old address space */
#define Y 0x400000ULL /* the live space's data mapping of the old root */

struct old_space {
	gfn_t root; /* the old address space's PML4 */
	gfn_t pd; /* its page directory for OLD_VA */
	struct mmu_cpu_state cpu;
};

/*
 * The guest ran on a second address space (its PML4 and tables are
 * shadowed), went back to PML4 and maps the old PML4's frame writable at
 * Y, as the kernel's direct map does.
 */
static struct old_space old_space_left(struct mmu_env *e)
{
	struct old_space o;

	mmu_set_unsync(e->mmu, true);
	o.root = e->next_table++;
	o.cpu = boot_cpu(o.root);
	env_map(e, o.root, OLD_VA, BASE1, G_W | G_D);
	o.pd = e->next_table - 2;
	assert_int_equal(env_fault_v(e->v, &o.cpu, OLD_VA, MMU_ACCESS_READ,
				     &(struct mmu_fault_info){ 0 }),
			 MMU_FAULT_FIXED);
	env_map(e, PML4, Y, o.root, G_W | G_D);
	return o;
}

/* The number of shadow pages with gptes for gfn. */
static unsigned shadowed(struct mmu_env *e, gfn_t gfn)
{
	struct list_node *h = &e->mmu->hash[mmu_hash_gfn(gfn)], *n;
	unsigned nr = 0;

	for (n = h->next; n != h; n = n->next) {
		struct mmu_page *sp =
			container_of(n, struct mmu_page, hash_link);

		nr += sp->gfn == gfn && !sp->role.direct;
	}
	return nr;
}

static void
test_wp_write_faulting_twice_unprotects_gfn_then_maps_it(void **state)
{
	struct mmu_env *e = env_new();
	struct old_space o;
	struct mmu_stats st;

	(void)state;
	o = old_space_left(e);
	assert_int_equal(shadowed(e, o.root), 1);
	/* The tracked mapping the vCPU makes is evicted before the store:
	 * the same write faults again, with no tracked write reported. */
	assert_int_equal(env_fault(e, Y + 8, MMU_ACCESS_WRITE),
			 MMU_FAULT_EMULATE);
	assert_int_equal(env_fault(e, Y + 8, MMU_ACCESS_WRITE),
			 MMU_FAULT_RETRY);
	st = env_stats(e);
	assert_int_equal(st.unprotects, 1);
	assert_int_equal(st.unsync_refused, 2);
	assert_int_equal(shadowed(e, o.root), 0);
	/* Retried: the gfn is plain data now and the write completes. */
	assert_int_equal(env_fault(e, Y + 8, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, Y + 8, MMU_ACCESS_WRITE, env_hva(e, o.root) + 8);
	env_audit(e);
	/* Used as a root again, it is shadowed and protected again. */
	assert_int_equal(env_fault_v(e->v, &o.cpu, OLD_VA, MMU_ACCESS_READ,
				     &(struct mmu_fault_info){ 0 }),
			 MMU_FAULT_FIXED);
	assert_int_equal(shadowed(e, o.root), 1);
	assert_shadow_misses(e, Y + 8, MMU_ACCESS_WRITE);
	env_free(e);
}

static void test_wp_completed_tracked_write_keeps_emulating(void **state)
{
	struct mmu_env *e = env_new();
	struct old_space o;
	int i;

	(void)state;
	o = old_space_left(e);
	/* Each fault is followed by the store it was for (reported as the
	 * vCPU reports tracked writes): progress, nothing is unprotected.
	 * Entries past those the old space uses, so nothing derived from
	 * them is zapped and the page does not flood either. */
	for (i = 0; i < 2; i++) {
		gpa_t gpa = (o.root << PAGE_SHIFT) + 256 * 8;

		assert_int_equal(env_fault(e, Y + 256 * 8, MMU_ACCESS_WRITE),
				 MMU_FAULT_EMULATE);
		assert_int_equal(mmu_track_write(e->v, gpa, 8), 0);
	}
	assert_int_equal(env_stats(e).unprotects, 0);
	assert_int_equal(shadowed(e, o.root), 1);
	env_free(e);
}

static void test_wp_write_to_table_of_own_walk_stays_emulated(void **state)
{
	struct mmu_env *e = env_new();
	gfn_t pd;

	(void)state;
	mmu_set_unsync(e->mmu, true);
	env_map(e, PML4, Y, BASE1, G_W | G_D);
	pd = e->next_table - 2;
	/* 0x403000 maps the page directory its own walk goes through:
	 * unprotecting it could not help, the retry shadows it again. */
	env_map(e, PML4, 0x403000, pd, G_W | G_D);
	assert_int_equal(env_fault(e, Y, MMU_ACCESS_READ), MMU_FAULT_FIXED);
	assert_int_equal(env_fault(e, 0x403000, MMU_ACCESS_WRITE),
			 MMU_FAULT_EMULATE);
	assert_int_equal(env_fault(e, 0x403000, MMU_ACCESS_WRITE),
			 MMU_FAULT_EMULATE);
	assert_int_equal(env_stats(e).unprotects, 0);
	assert_int_equal(shadowed(e, pd), 1);
	env_free(e);
}

/* Emulated 8-byte writes of zero to entries first.. of gfn. */
static void emulate_writes(struct mmu_env *e, gfn_t gfn, unsigned first,
			   unsigned nr)
{
	for (unsigned i = first; i < first + nr; i++)
		assert_int_equal(mmu_emulate_write(e->v,
						   (gfn << PAGE_SHIFT) + i * 8,
						   0, 8),
				 0);
}

static void test_wp_upper_table_flooded_by_writes_is_zapped(void **state)
{
	struct mmu_env *e = env_new();
	struct old_space o;
	struct mmu_stats st;

	(void)state;
	o = old_space_left(e);
	emulate_writes(e, o.root, 256, MMU_WRITE_FLOOD_LIMIT - 1);
	assert_int_equal(shadowed(e, o.root), 1);
	emulate_writes(e, o.root, 256 + MMU_WRITE_FLOOD_LIMIT - 1, 1);
	st = env_stats(e);
	assert_int_equal(st.flooded_pages, 1);
	assert_int_equal(shadowed(e, o.root), 0);
	/* Not a page table any more: the next write maps it writable. */
	assert_int_equal(env_fault(e, Y, MMU_ACCESS_WRITE), MMU_FAULT_FIXED);
	assert_shadow_maps(e, Y, MMU_ACCESS_WRITE, env_hva(e, o.root));
	env_free(e);
}

static void test_wp_fault_through_table_resets_its_flood_count(void **state)
{
	struct mmu_env *e = env_new();
	struct old_space o;

	(void)state;
	o = old_space_left(e);
	emulate_writes(e, o.root, 256, MMU_WRITE_FLOOD_LIMIT - 1);
	/* A fault walks through the old root: it is in use. */
	assert_int_equal(env_fault_v(e->v, &o.cpu, OLD_VA, MMU_ACCESS_READ,
				     &(struct mmu_fault_info){ 0 }),
			 MMU_FAULT_FIXED);
	emulate_writes(e, o.root, 300, MMU_WRITE_FLOOD_LIMIT - 1);
	assert_int_equal(env_stats(e).flooded_pages, 0);
	assert_int_equal(shadowed(e, o.root), 1);
	env_free(e);
}

static void
test_wp_fault_through_lower_table_resets_its_flood_count(void **state)
{
	struct mmu_env *e = env_new();
	struct old_space o;

	(void)state;
	o = old_space_left(e);
	assert_int_equal(shadowed(e, o.pd), 1);
	emulate_writes(e, o.pd, 256, MMU_WRITE_FLOOD_LIMIT - 1);
	/* The fault goes through the page directory below the root. */
	assert_int_equal(env_fault_v(e->v, &o.cpu, OLD_VA, MMU_ACCESS_READ,
				     &(struct mmu_fault_info){ 0 }),
			 MMU_FAULT_FIXED);
	emulate_writes(e, o.pd, 300, MMU_WRITE_FLOOD_LIMIT - 1);
	assert_int_equal(env_stats(e).flooded_pages, 0);
	assert_int_equal(shadowed(e, o.pd), 1);
	env_free(e);
}

static void test_wp_leaf_table_writes_never_flood(void **state)
{
	struct mmu_env *e = env_new();
	gfn_t pt;

	(void)state;
	env_map(e, PML4, Y, BASE1, G_W | G_D);
	pt = e->next_table - 1;
	assert_int_equal(env_fault(e, Y, MMU_ACCESS_READ), MMU_FAULT_FIXED);
	/* Leaf tables go unsync instead (docs/MMU.md, "Unsync and sync"). */
	emulate_writes(e, pt, 256, 2 * MMU_WRITE_FLOOD_LIMIT);
	assert_int_equal(env_stats(e).flooded_pages, 0);
	assert_int_equal(shadowed(e, pt), 1);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_wp_write_faulting_twice_unprotects_gfn_then_maps_it),
		cmocka_unit_test(
			test_wp_completed_tracked_write_keeps_emulating),
		cmocka_unit_test(
			test_wp_write_to_table_of_own_walk_stays_emulated),
		cmocka_unit_test(
			test_wp_upper_table_flooded_by_writes_is_zapped),
		cmocka_unit_test(
			test_wp_fault_through_table_resets_its_flood_count),
		cmocka_unit_test(
			test_wp_fault_through_lower_table_resets_its_flood_count),
		cmocka_unit_test(test_wp_leaf_table_writes_never_flood),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
