/*
 * Unsync and sync of level-1 shadow pages (docs/MMU.md, "Unsync and
 * sync"): a guest
 * write to a gfn shadowed only by current level-1 pages marks those pages
 * unsync and lets the spte become writable, instead of emulating every
 * PTE store; each ancestor records the path in its unsync_child_bitmap.
 * At the guest's flush points (root load, MOV CR3, INVLPG) only what is
 * reachable from the root is brought back in sync: write-protect the
 * gfns, one flush, re-derive every spte from the gpte (dropping what no
 * longer matches), one flush. Upper-level tables stay write-tracked. This
 * file owns the unsync flags and bitmaps; shadow pages, rmaps and the
 * fault path are mmu.c's. Everything runs under mmu_lock, inside a
 * read-side section (slots are looked up), so the unsync flags need no
 * barrier of their own: no lockless reader looks at them (KVM's
 * is_unsync_root smp_rmb has no counterpart here).
 */
#include <errno.h>

#include "mmu_int.h"
#include "mmu_rcu.h"

#define GPTE_ADDR_MASK (((1ULL << MMU_GUEST_MAXPHYADDR) - 1) & ~(PAGE_SIZE - 1))
#define GPTE_RSVD_HIGH \
	(((1ULL << 52) - 1) & ~((1ULL << MMU_GUEST_MAXPHYADDR) - 1))
/* Pages synced per write-protect + flush round (KVM's 16). */
#define SYNC_BATCH 16

static bool test_bit(const uint64_t *map, unsigned i)
{
	return map[i / 64] & (1ULL << (i % 64));
}

void mmu_set_unsync(struct mmu *mmu, bool on)
{
	mmu_option_set(mmu, MMU_OPT_UNSYNC,
		       on ? MMU_UNSYNC_REACHABLE : MMU_UNSYNC_OFF);
}

static void mark_parents(struct mmu_page *sp);

/* mark_unsync: set bit index in parent; the first bit set propagates
 * upward. Bounded by the levels above. */
static void mark_unsync(struct mmu_page *parent, unsigned index)
{
	if (test_bit(parent->unsync_child_bitmap, index))
		return;
	parent->unsync_child_bitmap[index / 64] |= 1ULL << (index % 64);
	if (parent->unsync_children++ == 0)
		mark_parents(parent);
}

static bool parent_set(_Atomic uint64_t *sptep, void *arg)
{
	struct mmu_page *p = sptep_to_page(sptep);

	(void)arg;
	mark_unsync(p, (unsigned)(sptep - p->spt));
	return true;
}

static void clear_bit_up(struct mmu_page *parent, unsigned index);

static bool parent_clear(_Atomic uint64_t *sptep, void *arg)
{
	struct mmu_page *p = sptep_to_page(sptep);

	(void)arg;
	clear_bit_up(p, (unsigned)(sptep - p->spt));
	return true;
}

static void mark_parents(struct mmu_page *sp)
{
	pte_list_for_each(&sp->parent_ptes, parent_set, NULL);
}

void mmu_mark_parents_unsync_locked(struct mmu *mmu, struct mmu_page *sp)
{
	mmu_assert_locked(mmu);
	mark_parents(sp);
}

/* A new link at index of parent to child (get_child). */
void mmu_link_unsync_locked(struct mmu *mmu, struct mmu_page *parent,
			    unsigned index, struct mmu_page *child)
{
	mmu_assert_locked(mmu);
	if (child->unsync || child->unsync_children)
		mark_unsync(parent, index);
}

/*
 * The link at index of parent is going away or its child became synced:
 * clear the bit, and when parent has no unsync child left, clear its own
 * bit in each of its parents, so a set bit always leads to an unsync
 * page (the audit checks both directions). Bounded by the levels above.
 */
static void clear_bit_up(struct mmu_page *parent, unsigned index)
{
	if (!test_bit(parent->unsync_child_bitmap, index))
		return;
	parent->unsync_child_bitmap[index / 64] &= ~(1ULL << (index % 64));
	MMUD_ASSERT(parent->unsync_children > 0);
	if (--parent->unsync_children == 0 && !parent->unsync)
		pte_list_for_each(&parent->parent_ptes, parent_clear, NULL);
}

void mmu_unlink_unsync_locked(struct mmu *mmu, struct mmu_page *parent,
			      unsigned index)
{
	mmu_assert_locked(mmu);
	clear_bit_up(parent, index);
}

/* Every shadow page with gptes for gfn, current or obsolete, unless
 * it is invalid (off the hash). */
#define for_each_gfn_page(mmu, gfn, sp, n)                               \
	for (n = (mmu)->hash[mmu_hash_gfn(gfn)].next;                    \
	     n != &(mmu)->hash[mmu_hash_gfn(gfn)] &&                     \
	     ((sp = container_of(n, struct mmu_page, hash_link)), true); \
	     n = n->next)                                                \
		if (sp->gfn != (gfn) || sp->role.direct)                 \
			continue;                                        \
		else

/*
 * mmu_try_to_unsync_pages: the gfn may become writable only if every
 * page shadowing it is a current level-1 page (an upper-level table or
 * an obsolete page keeps it write-protected and the write is emulated);
 * then each is marked unsync, with its path in its ancestors' bitmaps,
 * before the caller stores the writable spte.
 */
bool mmu_try_unsync_locked(struct mmu *mmu, const struct memslot *slot,
			   gfn_t gfn)
{
	struct list_node *n;
	struct mmu_page *sp;

	mmu_assert_locked(mmu);
	(void)slot;
	if (mmu_option_get(mmu, MMU_OPT_UNSYNC) == MMU_UNSYNC_OFF)
		return false;
	for_each_gfn_page(mmu, gfn, sp, n)
	{
		if (sp->role.level > 1 || mmu_page_is_obsolete(mmu, sp)) {
			mmu_stat_add(mmu, MMU_STAT_UNSYNC_REFUSED, 1);
			return false;
		}
	}
	for_each_gfn_page(mmu, gfn, sp, n)
	{
		if (sp->unsync)
			continue;
		sp->unsync = true;
		mmu_stat_add(mmu, MMU_STAT_UNSYNCS, 1);
		mmu_mark_parents_unsync_locked(mmu, sp);
	}
	return true;
}

bool mmu_gfn_all_unsync_locked(struct mmu *mmu, gfn_t gfn)
{
	struct list_node *n;
	struct mmu_page *sp;
	bool any = false;

	mmu_assert_locked(mmu);
	for_each_gfn_page(mmu, gfn, sp, n)
	{
		if (!sp->unsync)
			return false;
		any = true;
	}
	return any;
}

/* sp is in sync again: clear its flag and its bits up the tree. */
static void clear_unsync(struct mmu_page *sp)
{
	sp->unsync = false;
	pte_list_for_each(&sp->parent_ptes, parent_clear, NULL);
}

/*
 * FNAME(sync_spte): re-derive entry i of the level-1 page sp from its
 * gpte. An spte that maps another gfn, or grants more than the gpte
 * (and the role) now allow, is dropped; one that grants less stays and
 * faults up later. An MMIO spte is dropped (it refaults cheaply).
 * Returns true if a present spte was dropped (a flush is needed).
 */
static bool sync_spte(struct mmu *mmu, struct mmu_page *sp, unsigned i,
		      const struct memslot *table_slot)
{
	_Atomic uint64_t *sptep = &sp->spt[i];
	uint64_t spte = atomic_load_explicit(sptep, memory_order_relaxed);
	uint64_t gpte;
	unsigned allowed;

	if (is_mmio_spte(spte)) {
		mmu_spte_set(sptep, 0);
		return false;
	}
	if (!is_spte_present(spte))
		return false;
	if (!table_slot || (table_slot->flags & MEMSLOT_INVALID))
		goto drop;
	/* Acquire: guest memory written by other vCPUs with release
	 * stores (docs/ARCHITECTURE.md, "Guest memory is shared memory"). */
	gpte = atomic_load_explicit(
		(_Atomic uint64_t *)(uintptr_t)(memslot_gfn_to_hva(table_slot,
								   sp->gfn) +
						i * 8),
		memory_order_acquire);
	if (!(gpte & SPTE_P) || (gpte & GPTE_RSVD_HIGH) ||
	    (!sp->role.efer_nx && (gpte & SPTE_NX)))
		goto drop;
	if ((gpte & GPTE_ADDR_MASK) >> PAGE_SHIFT != sp->gfns[i])
		goto drop;
	allowed = sp->role.access & mmu_gpte_access(gpte, sp->role.efer_nx);
	if (!(gpte & SPTE_D))
		allowed &= ~MMU_ACC_WRITE;
	if (mmu_spte_access(spte) & ~allowed)
		goto drop;
	return false;
drop:
	mmu_drop_spte_locked(mmu, sptep);
	return true;
}

static bool sync_page(struct mmu *mmu, struct mmu_page *sp)
{
	const struct memslot *s = memslot_lookup(mmu, sp->gfn, NULL);
	bool flush = false;
	unsigned i;

	for (i = 0; i < MMU_PT_ENTRIES; i++)
		flush |= sync_spte(mmu, sp, i, s);
	clear_unsync(sp);
	mmu_stat_add(mmu, MMU_STAT_SYNCS, 1);
	return flush;
}

struct collect {
	struct mmu_page *pages[SYNC_BATCH];
	unsigned n;
};

static bool collect_add(struct collect *c, struct mmu_page *sp)
{
	unsigned i;

	for (i = 0; i < c->n; i++)
		if (c->pages[i] == sp)
			return true;
	if (c->n == SYNC_BATCH)
		return false;
	c->pages[c->n++] = sp;
	return true;
}

/* mmu_unsync_walk: gather unsync pages below sp; false when full.
 * Bounded: the recursion follows the tree down four levels. */
static bool collect_unsync(struct mmu_page *sp, struct collect *c)
{
	unsigned w;

	if (sp->unsync && !collect_add(c, sp))
		return false;
	for (w = 0; w < MMU_PT_ENTRIES / 64; w++) {
		uint64_t bits = sp->unsync_child_bitmap[w];

		while (bits) {
			unsigned i = w * 64 + (unsigned)__builtin_ctzll(bits);
			uint64_t spte = atomic_load_explicit(
				&sp->spt[i], memory_order_relaxed);

			bits &= bits - 1;
			MMUD_ASSERT(is_spte_present(spte) &&
				    !is_last_spte(spte, sp->role.level));
			if (!collect_unsync(spte_to_child_page(spte), c))
				return false;
		}
	}
	return true;
}

/* Write-protect the gfns of c's pages, flush if one was writable, sync
 * them, flush if an spte was dropped: one round of a sync. */
static void sync_batch(struct mmu *mmu, struct collect *c)
{
	bool flush = false;
	unsigned i;

	for (i = 0; i < c->n; i++) {
		const struct memslot *s =
			memslot_lookup(mmu, c->pages[i]->gfn, NULL);

		if (s)
			flush |= mmu_write_protect_gfn_locked(
				mmu, s, c->pages[i]->gfn, true);
	}
	if (flush)
		mmu_flush_remote_tlbs(mmu);
	flush = false;
	for (i = 0; i < c->n; i++)
		flush |= sync_page(mmu, c->pages[i]);
	if (flush)
		mmu_flush_remote_tlbs(mmu);
	c->n = 0;
}

/*
 * mmu_sync_children: bring every unsync page at or below top back in
 * sync, SYNC_BATCH pages at a time. Per batch: write-protect their gfns
 * (clearing MMU-writable), flush with wait if anything was writable, so
 * no vCPU can still store through a stale translation while we read the
 * gptes; then sync each page and flush once more if an spte was dropped
 * (docs/MMU.md, "Unsync and sync").
 */
void mmu_sync_children_locked(struct mmu *mmu, struct mmu_page *top)
{
	mmu_assert_locked(mmu);
	for (;;) {
		struct collect c = { .n = 0 };
		bool more = !collect_unsync(top, &c);

		if (!c.n)
			return;
		sync_batch(mmu, &c);
		if (!more && !top->unsync && !top->unsync_children)
			return;
	}
}

/*
 * unsync=all (docs/MMU.md, "Switches"): every unsync page of the VM,
 * reachable from the root or not, brought back in sync at a sync point,
 * as the alternative to syncing the root's subtree argued. One pass over
 * the active list: syncing neither frees nor moves a page.
 */
static void sync_all_locked(struct mmu *mmu)
{
	struct collect c = { .n = 0 };
	struct list_node *n;

	mmu_assert_locked(mmu);
	for (n = mmu->active_pages.next; n != &mmu->active_pages; n = n->next) {
		struct mmu_page *sp = container_of(n, struct mmu_page, link);

		if (!sp->unsync || mmu_page_is_obsolete(mmu, sp))
			continue;
		c.pages[c.n++] = sp;
		if (c.n == SYNC_BATCH)
			sync_batch(mmu, &c);
	}
	if (c.n)
		sync_batch(mmu, &c);
}

void mmu_sync_root_locked(struct mmu *mmu, struct mmu_page *root)
{
	if (mmu_option_get(mmu, MMU_OPT_UNSYNC) == MMU_UNSYNC_ALL)
		sync_all_locked(mmu);
	else if (root->unsync_children)
		mmu_sync_children_locked(mmu, root);
}

/*
 * A gfn is about to be shadowed above level 1, so it is write-tracked
 * from now on and may not stay unsync (docs/MMU.md, "Unsync and sync"):
 * its unsync
 * pages lose every leaf spte (KVM zaps them) and become synced with an
 * empty table that refaults. The caller flushes before mmu_lock goes.
 */
void mmu_resync_gfn_before_upper_locked(struct mmu *mmu, gfn_t gfn, bool *flush)
{
	struct list_node *n;
	struct mmu_page *sp;
	unsigned i;

	mmu_assert_locked(mmu);
	for_each_gfn_page(mmu, gfn, sp, n)
	{
		if (!sp->unsync)
			continue;
		for (i = 0; i < MMU_PT_ENTRIES; i++)
			*flush |= mmu_zap_pte_locked(mmu, sp, &sp->spt[i]);
		clear_unsync(sp);
		mmu_stat_add(mmu, MMU_STAT_SYNCS, 1);
	}
}

int mmu_vcpu_sync(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu)
{
	struct mmu *mmu = v->mmu;
	int ret = mmu_vcpu_load(v, cpu);

	if (ret)
		return ret;
	mmu_rcu_read_lock();
	mmu_lock_acquire(mmu);
	if (v->root && !mmu_page_is_obsolete(mmu, v->root))
		mmu_sync_root_locked(mmu, v->root);
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
	return 0;
}

void mmu_invlpg(struct mmu_vcpu *v, gva_t gva)
{
	struct mmu *mmu = v->mmu;
	struct mmu_page *sp;
	bool flush = false;
	int level;

	mmu_rcu_read_lock();
	mmu_lock_acquire(mmu);
	sp = v->root;
	if (!sp || mmu_page_is_obsolete(mmu, sp))
		goto out;
	/* Only the path to gva, and only while it leads to unsync pages
	 * (kvm_mmu_invalidate_addr). */
	for (level = MMU_ROOT_LEVEL; level > 1; level--) {
		uint64_t spte;

		if (!sp->unsync_children)
			goto out;
		spte = atomic_load_explicit(&sp->spt[spte_index(gva, level)],
					    memory_order_relaxed);
		if (!is_spte_present(spte) || is_last_spte(spte, level))
			goto out;
		sp = spte_to_child_page(spte);
	}
	if (sp->unsync)
		flush = sync_spte(mmu, sp, spte_index(gva, 1),
				  memslot_lookup(mmu, sp->gfn, NULL));
	if (flush)
		mmu_flush_remote_tlbs(mmu);
out:
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
}
