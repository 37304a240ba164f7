/*
 * The audit names each kind of inconsistency: corrupt, one at a time, a
 * leaf spte, an rmap entry, a parent pte and a write-track count (through
 * the private structures), check the message, restore, check it is clean.
 */
#include <errno.h>
#include <sys/resource.h>
#include <time.h>

#include "mmu_test.h"
#include "mmu_int.h"

#define PML4 1
#define DATA 0x20
#define GVA 0x400000ULL

struct aenv {
	struct tmem m;
	struct mmu *mmu;
	struct mmu_vcpu *v;
	struct rec_ops rec;
	struct mmu_cpu_state cpu;
};

/* slot_flags for slot 0; ring: entries per vCPU ring, 0 for none. */
static struct aenv *aenv_new_with(uint32_t slot_flags, uint32_t ring)
{
	struct aenv *e = calloc(1, sizeof(*e));
	struct mmu_fault_info info;
	gfn_t next = PML4 + 1;
	char err[128];

	e->m = tmem_alloc(64);
	e->mmu = mmu_create(rec_vcpu_ops(), &e->rec);
	e->v = mmu_vcpu_create(e->mmu, 0);
	assert_int_equal(memslot_add(e->mmu, 0, 0, 64, tmem_hva(&e->m),
				     slot_flags, err, sizeof(err)),
			 0);
	if (ring)
		assert_int_equal(mmu_dirty_ring_enable(e->mmu, ring, err,
						       sizeof(err)),
				 0);
	map_4k(&e->m, 0, PML4, &next, GVA, DATA, G_W | G_D);
	e->cpu = boot_cpu(PML4);
	assert_int_equal(mmu_vcpu_load(e->v, &e->cpu), 0);
	assert_int_equal(mmu_page_fault(e->v, &e->cpu, GVA, MMU_ACCESS_WRITE,
					&info),
			 MMU_FAULT_FIXED);
	return e;
}

static struct aenv *aenv_new(void)
{
	return aenv_new_with(0, 0);
}

static void aenv_free(struct aenv *e)
{
	mmu_vcpu_destroy(e->v);
	mmu_destroy(e->mmu);
	tmem_free(&e->m);
	free(e);
}

/* The spte at level for GVA, following the shadow links from the root. */
static _Atomic uint64_t *sptep_at(struct aenv *e, int level)
{
	struct mmu_page *sp = e->v->root;
	int l;

	for (l = MMU_ROOT_LEVEL; l > level; l--)
		sp = spte_to_child_page(
			atomic_load(&sp->spt[spte_index(GVA, l)]));
	return &sp->spt[spte_index(GVA, level)];
}

static void expect_audit(struct aenv *e, const char *needle)
{
	char msg[256];
	int r = mmu_audit(e->mmu, msg, sizeof(msg));

	if (!needle) {
		if (r)
			fail_msg("audit: %s", msg);
		return;
	}
	assert_int_equal(r, -22);
	if (!strstr(msg, needle))
		fail_msg("audit said \"%s\", expected \"%s\"", msg, needle);
}

static const struct memslot *slot0(struct aenv *e)
{
	const struct memslot *s;

	mmu_rcu_read_lock();
	s = memslot_lookup(e->mmu, 0, NULL);
	mmu_rcu_read_unlock();
	return s;
}

static void test_audit_clean_state_passes(void **state)
{
	struct aenv *e = aenv_new();

	(void)state;
	expect_audit(e, NULL);
	aenv_free(e);
}

static void test_audit_corrupt_spte_named(void **state)
{
	struct aenv *e = aenv_new();
	_Atomic uint64_t *sptep = sptep_at(e, 1);
	uint64_t good = atomic_load(sptep);

	(void)state;
	atomic_store(sptep, good + PAGE_SIZE);
	expect_audit(e, "index 0 (maps gfn 0x20): frame");
	atomic_store(sptep, good | SPTE_U);
	expect_audit(e, "grants access 0x7 beyond the guest's 0x3");
	atomic_store(sptep, good);
	expect_audit(e, NULL);
	aenv_free(e);
}

static void test_audit_corrupt_rmap_named(void **state)
{
	struct aenv *e = aenv_new();
	struct pte_list_head *h = mmu_rmap_head(slot0(e), DATA, 1);
	uintptr_t good = h->val;

	(void)state;
	assert_ptr_equal((void *)good, sptep_at(e, 1));
	/* Lost entry: the spte is on no rmap. */
	h->val = 0;
	expect_audit(e, "on the rmap of memslot 0 0 times");
	/* Wrong entry: the rmap of DATA names a non-leaf spte. */
	h->val = (uintptr_t)sptep_at(e, 2);
	expect_audit(e, "on the rmap of memslot 0 0 times");
	mmu_rmap_head(slot0(e), DATA + 1, 1)->val = good;
	h->val = good;
	expect_audit(e, "rmap of memslot 0 gfn 0x21 level 1");
	mmu_rmap_head(slot0(e), DATA + 1, 1)->val = 0;
	expect_audit(e, NULL);
	aenv_free(e);
}

static void test_audit_corrupt_parent_pte_named(void **state)
{
	struct aenv *e = aenv_new();
	struct mmu_page *leaf_page = sptep_to_page(sptep_at(e, 1));
	uintptr_t good = leaf_page->parent_ptes.val;

	(void)state;
	assert_ptr_equal((void *)good, sptep_at(e, 2));
	leaf_page->parent_ptes.val = 0;
	expect_audit(e, "missing from the child's parent ptes");
	/* A parent entry that points at something else. */
	leaf_page->parent_ptes.val = (uintptr_t)sptep_at(e, 3);
	expect_audit(e, "a parent pte does not point at it");
	leaf_page->parent_ptes.val = good;
	expect_audit(e, NULL);
	aenv_free(e);
}

static void test_audit_corrupt_write_track_named(void **state)
{
	struct aenv *e = aenv_new();
	const struct memslot *s = slot0(e);
	gfn_t pt = sptep_to_page(sptep_at(e, 1))->gfn;

	(void)state;
	s->meta->write_track[pt]++;
	expect_audit(e, "write-track count 2, but 1 shadow pages");
	s->meta->write_track[pt] -= 2;
	expect_audit(e, "write-track count 0, but 1 shadow pages");
	s->meta->write_track[pt]++;
	s->meta->write_track[DATA]++;
	/* A tracked gfn mapped writable is caught at its spte first. */
	expect_audit(e, "writable but the gfn is write-tracked");
	s->meta->write_track[DATA]--;
	expect_audit(e, NULL);
	aenv_free(e);
}

static void test_audit_corrupt_root_count_named(void **state)
{
	struct aenv *e = aenv_new();
	struct mmu_page *root = e->v->root;

	(void)state;
	root->root_count++;
	expect_audit(e, "root_count 2 but 1 vCPUs use it as their root");
	root->root_count--;
	e->v->root = sptep_to_page(sptep_at(e, 1));
	expect_audit(e, "root_count 0 but 1 vCPUs use it as their root");
	e->v->root = root;
	expect_audit(e, NULL);
	aenv_free(e);
}

/*
 * A clean gpte (D=0) is mapped read-only, so the first write faults and
 * the walk sets D (SDM vol. 3, 4.8). An spte that is writable while its
 * gpte is clean, however well formed otherwise, is an inconsistency.
 */
static void test_audit_writable_spte_of_clean_gpte_named(void **state)
{
	struct aenv *e = aenv_new();
	gva_t gva = GVA + 0x200000;
	gfn_t next = 0x30;
	struct mmu_fault_info info;
	_Atomic uint64_t *sptep;
	struct mmu_page *sp;
	uint64_t good;
	int l;

	(void)state;
	map_4k(&e->m, 0, PML4, &next, gva, DATA + 1, G_W);
	assert_int_equal(mmu_page_fault(e->v, &e->cpu, gva, MMU_ACCESS_READ,
					&info),
			 MMU_FAULT_FIXED);
	sp = e->v->root;
	for (l = MMU_ROOT_LEVEL; l > 1; l--)
		sp = spte_to_child_page(
			atomic_load(&sp->spt[spte_index(gva, l)]));
	sptep = &sp->spt[spte_index(gva, 1)];
	good = atomic_load(sptep);
	assert_true(good & SPTE_HOST_WRITABLE);
	assert_false(good & (SPTE_W | SPTE_MMU_WRITABLE));
	expect_audit(e, NULL);
	atomic_store(sptep, good | SPTE_W | SPTE_MMU_WRITABLE);
	expect_audit(e, "grants access 0x3 beyond the guest's 0x1");
	atomic_store(sptep, good);
	expect_audit(e, NULL);
	aenv_free(e);
}

/*
 * A shadowed table or a mapped gfn whose chunk is not marked touched
 * would be skipped by every slot-wide walk (docs/MMU.md, "Touched
 * chunks"): the audit names it.
 */
static void test_audit_untouched_chunk_named(void **state)
{
	struct aenv *e = aenv_new();
	const struct memslot *s = slot0(e);
	uint64_t good = s->meta->touched[0];

	(void)state;
	assert_true(good & 1); /* gfns 0..511: the tables and DATA */
	s->meta->touched[0] = 0;
	expect_audit(e, "chunk of memslot 0 is not marked touched");
	s->meta->touched[0] = good;
	expect_audit(e, NULL);
	aenv_free(e);
}

#define BIG_SLOTS 8
#define BIG_PAGES (1ULL << 24) /* 64 GiB each */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static long maxrss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/*
 * 8 slots of 64 GiB (reserved, never touched), one page of each mapped:
 * the audit, dirty logging on and off and a slot's delete cost what was
 * touched. Walking every gfn, as they did, took 5.5 s or more for the
 * audit and raised the peak RSS by 1.3 GB (docs/BENCHMARKS.md, "The
 * audit and slot walks on big sparse slots"); the bounds here leave a
 * hundredfold margin for a loaded machine.
 */
static void test_audit_big_sparse_slots_cost_what_was_touched(void **state)
{
	struct aenv *e = aenv_new();
	void *big[BIG_SLOTS];
	gfn_t next = 0x30;
	uint64_t t;
	long rss;
	char err[160];
	unsigned i;

	(void)state;
	for (i = 0; i < BIG_SLOTS; i++) {
		struct mmu_fault_info info;
		gva_t gva = 0x40000000ULL + i * 0x200000ULL;
		gfn_t base = (gfn_t)(i + 1) * BIG_PAGES;

		big[i] = mmap(NULL, BIG_PAGES * PAGE_SIZE,
			      PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
			      0);
		assert_true(big[i] != MAP_FAILED);
		assert_int_equal(memslot_add(e->mmu, i + 1, base, BIG_PAGES,
					     (hva_t)(uintptr_t)big[i], 0, err,
					     sizeof(err)),
				 0);
		map_4k(&e->m, 0, PML4, &next, gva, base + i * 4096, G_W | G_D);
		assert_int_equal(mmu_page_fault(e->v, &e->cpu, gva,
						MMU_ACCESS_WRITE, &info),
				 MMU_FAULT_FIXED);
	}
	rss = maxrss_kb();
	t = now_ns();
	expect_audit(e, NULL);
	t = now_ns() - t;
	rss = maxrss_kb() - rss;
	if (t > 1000000000ULL || rss > 64 * 1024)
		fail_msg("audit of 8 x 64 GiB sparse slots: %llu ms, peak RSS "
			 "+%ld KiB (bounds: 1000 ms, 65536 KiB)",
			 (unsigned long long)(t / 1000000), rss);
	t = now_ns();
	assert_int_equal(memslot_set_flags(e->mmu, 1, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	assert_int_equal(memslot_set_flags(e->mmu, 1, 0, err, sizeof(err)), 0);
	assert_int_equal(memslot_delete(e->mmu, 2, err, sizeof(err)), 0);
	t = now_ns() - t;
	if (t > 500000000ULL)
		fail_msg("dirty log on/off and delete of a 64 GiB slot: %llu "
			 "ms (bound: 500 ms)",
			 (unsigned long long)(t / 1000000));
	expect_audit(e, NULL);
	aenv_free(e);
	for (i = 0; i < BIG_SLOTS; i++)
		munmap(big[i], BIG_PAGES * PAGE_SIZE);
}

/*
 * The live audit (docs/MMU.md, "The live audit"): begin checks the
 * structures but not the guest's tables, each step compares at most its
 * budget of pages with them, and what begin left is all that the steps
 * check.
 */
static void test_audit_live_steps_bounded_and_complete(void **state)
{
	struct aenv *e = aenv_new();
	_Atomic uint64_t *sptep = sptep_at(e, 1);
	uint64_t good = atomic_load(sptep);
	struct mmu_page *leaf = sptep_to_page(sptep);
	uint64_t gpte = gpte_get(&e->m, 0, leaf->gfn, spte_index(GVA, 1));
	char msg[256];
	int n, steps;

	(void)state;
	/* 4 pages: root, PDPT, PD, PT; one per step. */
	n = mmu_audit_begin(e->mmu, 0, msg, sizeof(msg));
	assert_int_equal(n, 4);
	for (steps = 0; mmu_audit_step(e->mmu, 1, msg, sizeof(msg)) == 1;)
		steps++;
	assert_int_equal(steps, 3); /* the fourth step ends the pass */
	assert_int_equal(mmu_audit_step(e->mmu, 1, msg, sizeof(msg)), 0);

	/* Pages zapped between steps drop out, the cursor among them, and
	 * pages made after begin are not the pass's. */
	assert_int_equal(mmu_audit_begin(e->mmu, 0, msg, sizeof(msg)), 4);
	assert_int_equal(mmu_audit_step(e->mmu, 1, msg, sizeof(msg)), 1);
	mmu_zap_all(e->mmu);
	mmu_vcpu_free_obsolete_roots(e->v);
	assert_int_equal(mmu_vcpu_load(e->v, &e->cpu), 0);
	assert_int_equal(mmu_audit_step(e->mmu, 1, msg, sizeof(msg)), 0);
	{
		struct mmu_fault_info info;

		assert_int_equal(mmu_page_fault(e->v, &e->cpu, GVA,
						MMU_ACCESS_WRITE, &info),
				 MMU_FAULT_FIXED);
	}
	sptep = sptep_at(e, 1);
	good = atomic_load(sptep);
	leaf = sptep_to_page(sptep);

	/* The guest's table disagrees: not begin's business, a step's. */
	gpte_set(&e->m, 0, leaf->gfn, spte_index(GVA, 1), gpte + PAGE_SIZE);
	assert_int_equal(mmu_audit_begin(e->mmu, 0, msg, sizeof(msg)), 4);
	do
		n = mmu_audit_step(e->mmu, 1, msg, sizeof(msg));
	while (n == 1);
	assert_int_equal(n, -EINVAL);
	if (!strstr(msg, "the gpte") || !strstr(msg, "maps another gfn"))
		fail_msg("step said \"%s\"", msg);
	gpte_set(&e->m, 0, leaf->gfn, spte_index(GVA, 1), gpte);

	/* A leaf's own structure broken: the step that checks its page
	 * names it. */
	atomic_store(sptep, good + PAGE_SIZE);
	assert_int_equal(mmu_audit_begin(e->mmu, 0, msg, sizeof(msg)), 4);
	do
		n = mmu_audit_step(e->mmu, 1, msg, sizeof(msg));
	while (n == 1);
	assert_int_equal(n, -EINVAL);
	if (!strstr(msg, "frame"))
		fail_msg("step said \"%s\"", msg);
	atomic_store(sptep, good);

	/* What needs every page at once (here the rmaps and write-track
	 * counts of the slot) is begin's: a lost rmap entry. */
	{
		struct pte_list_head *h = mmu_rmap_head(slot0(e), DATA, 1);
		uintptr_t val = h->val;

		mmu_rmap_head(slot0(e), DATA + 1, 1)->val = val;
		assert_int_equal(mmu_audit_begin(e->mmu, 0, msg, sizeof(msg)),
				 -EINVAL);
		if (!strstr(msg, "rmap of memslot 0 gfn 0x21 level 1"))
			fail_msg("begin said \"%s\"", msg);
		mmu_rmap_head(slot0(e), DATA + 1, 1)->val = 0;
	}

	/* Past its deadline, begin gives up and says so. */
	assert_int_equal(mmu_audit_begin(e->mmu, 1, msg, sizeof(msg)),
			 -ETIMEDOUT);
	if (!strstr(msg, "audit stopped at its deadline"))
		fail_msg("begin said \"%s\"", msg);

	expect_audit(e, NULL);
	aenv_free(e);
}

/* Bit gfn of slot 0's dirty bitmap. */
static bool bitmap_bit(struct aenv *e, gfn_t gfn)
{
	return atomic_load(&slot0(e)->dirty_bitmap[gfn / 64]) &
	       (1ULL << (gfn % 64));
}

static void bitmap_set(struct aenv *e, gfn_t gfn, bool on)
{
	if (on)
		atomic_fetch_or(&slot0(e)->dirty_bitmap[gfn / 64],
				1ULL << (gfn % 64));
	else
		atomic_fetch_and(&slot0(e)->dirty_bitmap[gfn / 64],
				 ~(1ULL << (gfn % 64)));
}

/*
 * The dirty ring (docs/MMU.md, "The dirty ring"): a writable spte of a
 * logging slot must have its gfn in some vCPU's ring, pushed and not
 * yet reset (or in the bitmap, where a push without room goes). An
 * entry for another page, or one freed without the write protection a
 * reset makes, leaves a writable spte unlogged: the audit names it, in
 * one pass and in the live audit's steps. Harvested entries still
 * count; after a real reset the spte is no longer writable.
 */
static void test_audit_writable_spte_in_no_ring_named(void **state)
{
	struct aenv *e = aenv_new_with(MEMSLOT_LOG_DIRTY, 128);
	_Atomic uint64_t *sptep = sptep_at(e, 1);
	struct mmu_dirty_ring *r = atomic_load(&e->v->ring);
	struct mmu_dirty_gfn *ent;
	struct mmu_dirty_entry out[4];
	uint32_t i, end = atomic_load(&r->dirty_index);
	char msg[256];
	int n;

	(void)state;
	assert_true(atomic_load(sptep) & SPTE_W);
	/* The write fault pushed DATA; the bitmap does not have it. */
	for (i = atomic_load(&r->reset_index), ent = NULL; i != end; i++)
		if (r->e[i & (r->size - 1)].offset == DATA)
			ent = &r->e[i & (r->size - 1)];
	assert_non_null(ent);
	assert_false(bitmap_bit(e, DATA));
	expect_audit(e, NULL);

	/* Pushed for another page. */
	ent->offset = DATA + 1;
	expect_audit(e, "(maps gfn 0x20): writable in a dirty-logged slot "
			"but not marked dirty (in no vCPU's dirty ring");
	/* The same, found by a step of the live audit. */
	assert_int_equal(mmu_audit_begin(e->mmu, 0, msg, sizeof(msg)), 4);
	do
		n = mmu_audit_step(e->mmu, 1, msg, sizeof(msg));
	while (n == 1);
	assert_int_equal(n, -EINVAL);
	if (!strstr(msg, "in no vCPU's dirty ring"))
		fail_msg("step said \"%s\"", msg);
	/* Where a push without room goes, it counts. */
	bitmap_set(e, DATA, true);
	expect_audit(e, NULL);
	bitmap_set(e, DATA, false);
	ent->offset = DATA;
	expect_audit(e, NULL);

	/* Freed (flags 0) as a reset frees, without its protection. */
	atomic_store(&ent->flags, 0);
	expect_audit(e, "in no vCPU's dirty ring");
	atomic_store(&ent->flags, MMU_DIRTY_GFN_DIRTY);

	/* Harvested, not yet reset: still pushed. */
	n = mmu_dirty_ring_harvest(e->mmu, 0, out, 4);
	assert_true(n >= 1);
	expect_audit(e, NULL);
	/* Reset: the page is write-protected with its entry freed. */
	assert_true(mmu_dirty_ring_reset(e->mmu) >= 1);
	assert_false(atomic_load(sptep_at(e, 1)) & SPTE_W);
	expect_audit(e, NULL);
	aenv_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_audit_clean_state_passes),
		cmocka_unit_test(test_audit_corrupt_spte_named),
		cmocka_unit_test(test_audit_corrupt_rmap_named),
		cmocka_unit_test(test_audit_corrupt_parent_pte_named),
		cmocka_unit_test(test_audit_corrupt_write_track_named),
		cmocka_unit_test(test_audit_corrupt_root_count_named),
		cmocka_unit_test(test_audit_writable_spte_of_clean_gpte_named),
		cmocka_unit_test(test_audit_untouched_chunk_named),
		cmocka_unit_test(
			test_audit_big_sparse_slots_cost_what_was_touched),
		cmocka_unit_test(test_audit_live_steps_bounded_and_complete),
		cmocka_unit_test(test_audit_writable_spte_in_no_ring_named),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
