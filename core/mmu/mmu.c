/*
 * The shadow MMU proper: shadow pages hashed by (gfn, role), their parent
 * ptes and root pins, rmaps, write tracking of shadowed guest tables, the
 * fault path, emulated writes to shadowed tables, write protection and
 * zapping with the prepare/commit split (docs/MMU.md); the lists
 * behind rmaps and parent ptes are pte_list.c's. Everything
 * here runs under mmu_lock except mmu_shadow_translate(), the lockless
 * walk vCPUs do in guest mode, and the entry points that take the lock.
 * Memslot arrays are memslot.c's; the audit is audit.c's.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "mmu_int.h"
#include "mmu_rcu.h"

#define MMU_PAGE_ALLOC_SIZE \
	((sizeof(struct mmu_page) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
#define NONLEAF_SPTE_BITS (SPTE_P | SPTE_W | SPTE_U | SPTE_A | SPTE_MMU_PRESENT)

static_assert(offsetof(struct mmu_page, spt) == 0,
	      "a non-leaf spte's address is its child mmu_page");

/* ---- shadow page helpers ------------------------------------------------ */

static unsigned hash_gfn(gfn_t gfn)
{
	return (unsigned)((gfn * 0x9e3779b97f4a7c15ULL) >>
			  (64 - MMU_HASH_BITS));
}

static uint64_t level_pages(int level)
{
	return 1ULL << (9 * (level - 1));
}

gfn_t mmu_page_gfn_at(const struct mmu_page *sp, unsigned i)
{
	if (sp->role.direct)
		return sp->gfn + i * level_pages(sp->role.level);
	/* Relaxed: written before the spte's release store (set_spte),
	 * read after an acquire load of it by the fast page fault. */
	return atomic_load_explicit(&sp->gfns[i], memory_order_relaxed);
}

bool mmu_page_is_obsolete(const struct mmu *mmu, const struct mmu_page *sp)
{
	return sp->role.invalid ||
	       sp->mmu_valid_gen != atomic_load_explicit(&mmu->mmu_valid_gen,
							 memory_order_relaxed);
}

struct pte_list_head *mmu_rmap_head(const struct memslot *slot, gfn_t gfn,
				    int level)
{
	unsigned shift = 9 * (unsigned)(level - 1);

	return &slot->meta->rmap[level - 1]
				[(gfn >> shift) - (slot->base_gfn >> shift)];
}

/* ---- touched chunks (docs/MMU.md, "Touched chunks") ------------------- */

void mmu_touch_locked(struct mmu *mmu, const struct memslot *slot, gfn_t gfn,
		      uint64_t n)
{
	gfn_t end = gfn + n;
	uint64_t c, last;

	mmu_assert_locked(mmu);
	if (gfn < slot->base_gfn)
		gfn = slot->base_gfn;
	if (end > slot->base_gfn + slot->npages)
		end = slot->base_gfn + slot->npages;
	if (gfn >= end)
		return;
	last = memslot_chunk(slot, end - 1);
	for (c = memslot_chunk(slot, gfn); c <= last; c++)
		slot->meta->touched[c / 64] |= 1ULL << (c % 64);
}

bool mmu_chunk_is_touched(const struct memslot *slot, gfn_t gfn)
{
	uint64_t c = memslot_chunk(slot, gfn);

	return slot->meta->touched[c / 64] & (1ULL << (c % 64));
}

gfn_t mmu_next_touched(const struct memslot *slot, gfn_t gfn, gfn_t end)
{
	uint64_t c, last, w, bits;
	gfn_t start;

	if (gfn >= end)
		return end;
	c = memslot_chunk(slot, gfn);
	last = memslot_chunk(slot, end - 1);
	w = c / 64;
	bits = slot->meta->touched[w] & (~0ULL << (c % 64));
	while (!bits) {
		if (++w > last / 64)
			return end;
		bits = slot->meta->touched[w];
	}
	c = w * 64 + (uint64_t)__builtin_ctzll(bits);
	if (c > last)
		return end;
	start = (c + (slot->base_gfn >> MMU_CHUNK_SHIFT)) << MMU_CHUNK_SHIFT;
	return start > gfn ? start : gfn;
}

/* Stores to sptes are release: a vCPU's acquire load of a non-leaf spte
 * then sees the initialised child table (mmu_shadow_translate). */
static void spte_set(_Atomic uint64_t *sptep, uint64_t v)
{
	EXPLORE_POINT(EXPLORE_SPTE_STORE, sptep, v);
	atomic_store_explicit(sptep, v, memory_order_release);
}

static uint64_t spte_get(const _Atomic uint64_t *sptep)
{
	/* Relaxed: a decision made on it under mmu_lock is either about a
	 * part no lockless writer changes (the address, MMU-writable, P) or
	 * re-made from spte_xchg's answer. */
	return atomic_load_explicit(sptep, memory_order_relaxed);
}

/*
 * A present leaf may have W set (the fast page fault) or cleared (the
 * lockless write protection) by a cmpxchg without mmu_lock at any
 * moment, so a store that replaces or drops one is an exchange, and
 * whether a flush is owed is decided from the value it returns, never
 * from an earlier load (docs/locking.md, "Lockless shadow walks": a
 * writable translation the fast path gave after that load would
 * otherwise survive without a flush).
 */
static uint64_t spte_xchg(_Atomic uint64_t *sptep, uint64_t v)
{
	EXPLORE_POINT(EXPLORE_SPTE_STORE, sptep, v);
	return atomic_exchange_explicit(sptep, v, memory_order_acq_rel);
}

static const struct memslot *slot_of(struct mmu *mmu, gfn_t gfn)
{
	/* Callers are inside a read-side section or hold slots_lock. */
	return memslot_lookup(mmu, gfn, NULL);
}

/* Drop a present leaf spte and its rmap entry. */
static void drop_spte(struct mmu *mmu, _Atomic uint64_t *sptep)
{
	struct mmu_page *sp = sptep_to_page(sptep);
	gfn_t gfn = mmu_page_gfn_at(sp, (unsigned)(sptep - sp->spt));
	const struct memslot *slot = slot_of(mmu, gfn);
	bool found;

	MMUD_ASSERT(slot);
	found = pte_list_remove_rmap(
		mmu, mmu_rmap_head(slot, gfn, sp->role.level), sptep);
	MMUD_ASSERT(found);
	(void)found;
	spte_xchg(sptep, 0);
	sp->nr_present--;
	mmu_stat_add(mmu, MMU_STAT_SPTES, -1);
	mmu_stat_add(mmu, MMU_STAT_ZAPPED_SPTES, 1);
}

/* Clear one spte of sp: a leaf loses its rmap entry, a link its parent
 * entry in the child. Returns true if it was present. */
static bool zap_pte(struct mmu *mmu, struct mmu_page *sp,
		    _Atomic uint64_t *sptep)
{
	uint64_t spte = spte_get(sptep);
	bool found;

	if (!is_spte_present(spte)) {
		/* An MMIO spte derived from the gpte goes too; the CPU never
		 * walked through it (P = 0), so no flush. */
		if (is_mmio_spte(spte))
			spte_set(sptep, 0);
		return false;
	}
	if (is_last_spte(spte, sp->role.level)) {
		drop_spte(mmu, sptep);
		return true;
	}
	mmu_unlink_unsync_locked(mmu, sp, (unsigned)(sptep - sp->spt));
	found = pte_list_remove(&spte_to_child_page(spte)->parent_ptes, sptep);
	MMUD_ASSERT(found);
	(void)found;
	spte_set(sptep, 0);
	sp->nr_present--;
	return true;
}

/* Returns true if a writable spte of the gfn was write-protected. */
static bool account_shadowed(struct mmu *mmu, struct mmu_page *sp)
{
	const struct memslot *slot;
	bool flush = false;

	/*
	 * The full barrier of docs/locking.md #5, as a seq_cst RMW
	 * (TSan does not model fences): pairs with the seq_cst RMW on the
	 * same counter in mmu_emulate_write(). Either that RMW comes later
	 * and sees this page (and zaps what was derived from the gpte), or
	 * it comes first and its guest-memory store happens before the
	 * fault path's re-read of the gpte (gpte_changed), which retries.
	 */
	atomic_fetch_add_explicit(&mmu->indirect_shadow_pages, 1,
				  memory_order_seq_cst);
	slot = slot_of(mmu, sp->gfn);
	if (!slot)
		return false;
	/* Counts it and zaps a large spte over it (large.c). */
	mmu_track_gfn_locked(mmu, slot, sp->gfn, 1, &flush);
	/* The gfn is a guest page table now: no spte may write it. The
	 * caller flushes before it drops mmu_lock (docs/MMU.md, "The spte
	 * format"). */
	return mmu_write_protect_gfn_locked(mmu, slot, sp->gfn, true) || flush;
}

static void unaccount_shadowed(struct mmu *mmu, struct mmu_page *sp)
{
	const struct memslot *slot = slot_of(mmu, sp->gfn);

	atomic_fetch_sub_explicit(&mmu->indirect_shadow_pages, 1,
				  memory_order_relaxed);
	if (!slot)
		return;
	MMUD_ASSERT(slot->meta->write_track[sp->gfn - slot->base_gfn] > 0);
	mmu_track_gfn_locked(mmu, slot, sp->gfn, -1, NULL);
}

/*
 * Unlink sp from everything (children, parents, hash, write tracking) and
 * queue it for freeing; a root still pinned is only marked invalid and
 * freed by its last mmu_vcpu_unload (docs/MMU.md, "Prepare and commit").
 * Nothing is freed here:
 * commit_zap frees after the remote flush.
 */
static void prepare_zap(struct mmu *mmu, struct mmu_page *sp,
			struct list_node *invalid_list)
{
	unsigned i;
	_Atomic uint64_t *parent;

	mmu_assert_locked(mmu);
	MMUD_ASSERT(!sp->role.invalid);
	mmu_stat_add(mmu, MMU_STAT_ZAPPED_PAGES, 1);
	for (i = 0; i < MMU_PT_ENTRIES; i++)
		zap_pte(mmu, sp, &sp->spt[i]);
	while ((parent = pte_list_first(&sp->parent_ptes)))
		zap_pte(mmu, sptep_to_page(parent), parent);
	if (!sp->role.direct)
		unaccount_shadowed(mmu, sp);
	list_del(&sp->hash_link);
	sp->role.invalid = 1;
	/* The live audit's place in the list moves past us (audit.c). */
	if (mmu->audit_cursor == &sp->link)
		mmu->audit_cursor = sp->link.next;
	list_del(&sp->link);
	if (sp->root_count) {
		list_add(&sp->link, &mmu->invalid_roots);
		/* Its vCPUs must drop it before they next enter. */
		if (mmu->ops)
			mmu->ops->make_all_request(mmu->opaque,
						   MMU_REQ_FREE_OBSOLETE_ROOTS,
						   false);
		return;
	}
	list_add(&sp->link, invalid_list);
}

/*
 * A lockless write-protecting harvest (not a vCPU: the flush's requests
 * do not wait for it) may hold a pointer into any shadow page it found
 * through an rmap. The seq_cst RMW pairs with mmu_wp_walk_begin()'s
 * (docs/locking.md #20): either we read its odd value and wait until it
 * moves on, or its walk begins after our RMW and reads only rmaps from
 * which our caller's unlinked sptes are gone.
 */
static bool wp_walk_moved(void *arg)
{
	uint64_t *a = arg;

	return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)a[0],
				    memory_order_acquire) != a[1];
}

static void wait_wp_walk(struct mmu *mmu)
{
	uint64_t s = atomic_fetch_add_explicit(&mmu->wp_walk_seq, 0,
					       memory_order_seq_cst);
	uint64_t a[2] = { (uint64_t)(uintptr_t)&mmu->wp_walk_seq, s };

	if (!(s & 1))
		return;
#ifdef MMUD_EXPLORE
	explore_wait_until(wp_walk_moved, a);
#else
	while (!wp_walk_moved(a))
		sched_yield();
#endif
}

void mmu_flush_remote_tlbs(struct mmu *mmu)
{
	mmu_stat_add(mmu, MMU_STAT_FLUSHES, 1);
	/*
	 * The request broadcast does, per vCPU, a seq_cst RMW setting the
	 * request bit and then reads the mode: that RMW is the full barrier
	 * ordering our spte stores (unlink, write protect) before the mode
	 * read, pairing with the vCPU's seq_cst RMW on its request word
	 * after it stores IN_GUEST_MODE and before its first spte load
	 * (docs/locking.md #2; struct mmu_vcpu_ops). With wait it
	 * returns when every vCPU that was in guest mode has left it, so
	 * none holds a stale translation.
	 */
	if (mmu->ops)
		mmu->ops->make_all_request(mmu->opaque, MMU_REQ_TLB_FLUSH,
					   true);
	wait_wp_walk(mmu);
}

static void free_page(struct mmu *mmu, struct mmu_page *sp)
{
	mmu->nr_pages--;
	free(sp);
}

/* Free what prepare_zap queued, after the flush with wait (docs/MMU.md,
 * "Prepare and commit"). */
static void commit_zap(struct mmu *mmu, struct list_node *invalid_list)
{
	mmu_assert_locked(mmu);
	if (list_empty(invalid_list))
		return;
	mmu_flush_remote_tlbs(mmu);
	while (!list_empty(invalid_list)) {
		struct mmu_page *sp =
			container_of(invalid_list->next, struct mmu_page, link);

		list_del(&sp->link);
		MMUD_ASSERT(sp->nr_present == 0 && !sp->parent_ptes.val &&
			    !sp->root_count);
		free_page(mmu, sp);
	}
	pte_list_free_dead(mmu, false);
}

static struct mmu_page *find_page(struct mmu *mmu, gfn_t gfn,
				  union mmu_page_role role)
{
	struct list_node *h = &mmu->hash[hash_gfn(gfn)], *n;

	for (n = h->next; n != h; n = n->next) {
		struct mmu_page *sp =
			container_of(n, struct mmu_page, hash_link);

		if (sp->gfn == gfn && sp->role.word == role.word &&
		    !mmu_page_is_obsolete(mmu, sp))
			return sp;
	}
	return NULL;
}

static struct mmu_page *get_page(struct mmu_vcpu *v, gfn_t gfn,
				 union mmu_page_role role, bool *flush)
{
	struct mmu *mmu = v->mmu;
	struct mmu_page *sp = find_page(mmu, gfn, role);

	if (sp)
		return sp;
	MMUD_ASSERT(v->nr_page_cache > 0);
	sp = v->page_cache[--v->nr_page_cache];
	memset(sp, 0, sizeof(*sp));
	sp->gfn = gfn;
	sp->role = role;
	sp->mmu_valid_gen = mmu->mmu_valid_gen;
	/* A gfn shadowed above level 1 is never unsync (docs/MMU.md, "Unsync
	 * and sync"). */
	if (!role.direct && role.level > 1)
		mmu_resync_gfn_before_upper_locked(mmu, gfn, flush);
	list_add(&sp->link, &mmu->active_pages);
	list_add(&sp->hash_link, &mmu->hash[hash_gfn(gfn)]);
	mmu->nr_pages++;
	if (!role.direct && account_shadowed(mmu, sp))
		*flush = true;
	/*
	 * Flush now, not at the end of the fault: the caller re-reads the
	 * gpte it walked (gpte_changed) as soon as we return, and that
	 * re-read proves the walk current only if no vCPU can still store
	 * to the table through a translation from before the write
	 * protection (or through a large spte or an unsync page's leaf
	 * zapped above). With the flush done (with wait) first, a store
	 * either came before it, and the re-read sees it, or it faults and
	 * is emulated, which zaps what we derive (docs/MMU.md, "write
	 * protection before the re-read").
	 */
	if (*flush) {
		mmu_flush_remote_tlbs(mmu);
		*flush = false;
	}
	return sp;
}

/*
 * The child page behind *sptep for (gfn, role): reuse the linked one only
 * if both match (the guest's tables can change without a trap when the
 * host writes guest memory, and a wrong child leaves rmap entries that
 * outlive their page: docs/MMU.md, "Reusing what is already linked");
 * otherwise zap the
 * old link first, then link the right page. *flush is set when a present
 * spte was dropped.
 */
static struct mmu_page *get_child(struct mmu_vcpu *v, struct mmu_page *parent,
				  _Atomic uint64_t *sptep, gfn_t gfn,
				  union mmu_page_role role, bool *flush)
{
	struct mmu *mmu = v->mmu;
	uint64_t spte = spte_get(sptep);
	struct mmu_page *child;

	if (is_spte_present(spte)) {
		child = spte_to_child_page(spte);
		/* A large leaf is no table: never read it as one. */
		if (!is_last_spte(spte, parent->role.level) &&
		    child->gfn == gfn && child->role.word == role.word)
			return child;
		zap_pte(mmu, parent, sptep);
		*flush = true;
	}
	child = get_page(v, gfn, role, flush);
	/* A page found unlinked may be out of date: the guest sees it
	 * linked now, so sync it before any walk can use it (docs/MMU.md,
	 * "Unsync and sync"). */
	if (child->unsync || child->unsync_children)
		mmu_sync_children_locked(mmu, child);
	pte_list_add(&v->descs, &child->parent_ptes, sptep);
	spte_set(sptep, NONLEAF_SPTE_BITS | (uint64_t)(uintptr_t)child);
	parent->nr_present++;
	mmu_link_unsync_locked(mmu, parent, (unsigned)(sptep - parent->spt),
			       child);
	return child;
}

/*
 * Write-protect one spte. A flush is needed when W was set, and also when
 * MMU-writable is cleared from an spte that had it: W may have been
 * cleared a moment ago by a dirty-log harvest whose own flush has not
 * happened yet (it flushes after dropping mmu_lock), so vCPUs may still
 * hold the writable translation (docs/MMU.md, "MMU-writable").
 */
static bool wp_one(_Atomic uint64_t *sptep, void *arg)
{
	uint64_t *acc = arg, spte = spte_get(sptep);
	uint64_t clear = SPTE_W | (acc[0] ? SPTE_MMU_WRITABLE : 0);

	/* W may be set by the fast page fault or cleared by the lockless
	 * write protection meanwhile: an atomic RMW, and the flush decided
	 * from what it found (docs/locking.md #21). */
	if (spte & clear) {
		EXPLORE_POINT(EXPLORE_SPTE_STORE, sptep, spte & ~clear);
		spte = atomic_fetch_and_explicit(sptep, ~clear,
						 memory_order_acq_rel);
		if (spte & (SPTE_W | (clear & SPTE_MMU_WRITABLE)))
			acc[1] = 1;
	}
	return true;
}

bool mmu_write_protect_gfn_locked(struct mmu *mmu, const struct memslot *slot,
				  gfn_t gfn, bool clear_mmu_writable)
{
	uint64_t acc[2] = { clear_mmu_writable, 0 };
	int level;

	mmu_assert_locked(mmu);
	for (level = 1; level <= MMU_NR_LEAF_LEVELS; level++)
		pte_list_for_each(mmu_rmap_head(slot, gfn, level), wp_one, acc);
	if (acc[1])
		mmu_stat_add(mmu, MMU_STAT_WRITE_PROTECTS, 1);
	return acc[1];
}

/* ---- lockless write protection (docs/MMU.md) -------------------------- */

/*
 * The section of a lockless write-protecting walk (docs/locking.md #20):
 * wp_walk_seq odd from a seq_cst RMW (pairs with wait_wp_walk() and
 * pte_list_free_dead(), RMWs of the same word) to a release RMW (its
 * reads of sptes and descriptors before a flusher's or freer's acquire).
 * One walker at a time: the harvests that call it hold slots_lock.
 */
void mmu_wp_walk_begin(struct mmu *mmu)
{
	uint64_t s = atomic_fetch_add_explicit(&mmu->wp_walk_seq, 1,
					       memory_order_seq_cst);

	MMUD_ASSERT(!(s & 1));
	(void)s;
}

void mmu_wp_walk_end(struct mmu *mmu)
{
	atomic_fetch_add_explicit(&mmu->wp_walk_seq, 1, memory_order_release);
}

/* Clears W from a present writable spte by cmpxchg, keeping every other
 * bit (MMU-writable: the next write takes the fast page fault). */
static void wp_lockless_one(_Atomic uint64_t *sptep, void *arg)
{
	bool *flush = arg;
	uint64_t old = atomic_load_explicit(sptep, memory_order_acquire);

	while ((old & (SPTE_P | SPTE_W)) == (SPTE_P | SPTE_W)) {
		EXPLORE_POINT(EXPLORE_SPTE_STORE, sptep, old & ~SPTE_W);
		if (atomic_compare_exchange_weak_explicit(
			    sptep, &old, old & ~SPTE_W, memory_order_acq_rel,
			    memory_order_acquire)) {
			*flush = true;
			return;
		}
	}
}

/* Walks of one rmap before the gfn goes to mmu_lock. */
#define WP_LOCKLESS_TRIES 4

/* A large spte over [gfn, gfn + n): left to the locked walk. */
static bool has_large(const struct memslot *slot, gfn_t gfn, uint64_t n)
{
	for (int level = 2; level <= MMU_NR_LEAF_LEVELS; level++)
		if (atomic_load_explicit(&mmu_rmap_head(slot, gfn, level)->val,
					 memory_order_relaxed) ||
		    atomic_load_explicit(
			    &mmu_rmap_head(slot, gfn + n - 1, level)->val,
			    memory_order_relaxed))
			return true;
	return false;
}

uint64_t mmu_write_protect_bits_lockless(struct mmu *mmu,
					 const struct memslot *slot, gfn_t base,
					 uint64_t bits, bool *flush)
{
	struct pte_list_head *h = mmu_rmap_head(slot, base, 1);
	uint64_t failed = 0, done = 0, retries = 0;

	/* Logging maps 4 KiB pages only; a large spte (which turning
	 * logging on zapped) is the locked walk's. */
	if (has_large(slot, base, 64 - (uint64_t)__builtin_clzll(bits)))
		return bits;
	while (bits) {
		unsigned b = (unsigned)__builtin_ctzll(bits);
		uintptr_t val =
			atomic_load_explicit(&h[b].val, memory_order_acquire);
		int i;

		bits &= bits - 1;
		done++;
		/* No descriptor: the head word is the whole list. */
		if (!(val & 1)) {
			if (val)
				wp_lockless_one((_Atomic uint64_t *)val, flush);
			continue;
		}
		for (i = 0; i < WP_LOCKLESS_TRIES; i++) {
			if (pte_list_walk_lockless(mmu, &h[b], wp_lockless_one,
						   flush))
				break;
			retries++;
		}
		if (i == WP_LOCKLESS_TRIES)
			failed |= 1ULL << b;
	}
	mmu_stat_add(mmu, MMU_STAT_WP_LOCKLESS, (int64_t)done);
	if (retries)
		mmu_stat_add(mmu, MMU_STAT_WP_RETRIES, (int64_t)retries);
	if (failed)
		mmu_stat_add(mmu, MMU_STAT_WP_FALLBACKS,
			     __builtin_popcountll(failed));
	return failed;
}

/* ---- the fast page fault (docs/MMU.md) -------------------------------- */

void mmu_wait_lockless_walks_locked(struct mmu *mmu)
{
	mmu_assert_locked(mmu);
	mmu_flush_remote_tlbs(mmu);
}

/*
 * KVM's fast_page_fault and handle_mmio_page_fault in one walk of the
 * shadow tables, by the vCPU's thread outside guest mode, without
 * mmu_lock, in READING_SHADOW_PAGE_TABLES mode: a flush with wait waits
 * for it, so no page it reaches is freed under it (docs/locking.md #18).
 * Inside the fault's read-side section. MMU_FAULT_MMIO or
 * MMU_FAULT_FIXED when answered, FAST_NONE for the full fault.
 */
#define FAST_NONE (-1)
static int fast_paths(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu,
		      gva_t gva, unsigned access, struct mmu_fault_info *info)
{
	struct mmu *mmu = v->mmu;
	const struct mmu_vcpu_ops *ops = mmu->ops;
	uint64_t gen = memslot_generation(mmu), spte = 0;
	bool user = cpu->cpl == 3 && !(access & MMU_ACCESS_IMPLICIT);
	bool fast_pf = (access & MMU_ACCESS_WRITE) &&
		       !(access & MMU_ACCESS_FETCH) &&
		       mmu_option_get(mmu, MMU_OPT_FAST_PF) == MMU_FAST_PF_ON &&
		       !mmu_dirty_ring_size(mmu);
	_Atomic uint64_t *sptep = NULL;
	struct mmu_page *sp = v->root;
	const struct memslot *slot;
	int level, ret = FAST_NONE;
	gfn_t gfn;

	if (!ops || !ops->lockless_begin)
		return mmu_mmio_fast(v, cpu, gva, access, info) ?
			       MMU_FAULT_MMIO :
			       FAST_NONE;
	/* Our own root, pinned by us. A zapped one has no sptes left, so
	 * its role (mmu_lock's) need not be read; an obsolete one still
	 * links old pages: declined, as under the lock. */
	if (!sp ||
	    sp->mmu_valid_gen != atomic_load_explicit(&mmu->mmu_valid_gen,
						      memory_order_relaxed) ||
	    v->root_gfn != ((cpu->cr3 & ((1ULL << MMU_GUEST_MAXPHYADDR) - 1)) >>
			    PAGE_SHIFT))
		return FAST_NONE;
	ops->lockless_begin(mmu->opaque, v->index);
	/* Re-read after the begin's barrier: a zap-all-fast's bump that
	 * came before it is seen, one after it waits for our end. */
	if (sp->mmu_valid_gen !=
	    atomic_load_explicit(&mmu->mmu_valid_gen, memory_order_relaxed))
		goto out;
	for (level = MMU_ROOT_LEVEL;; level--) {
		sptep = &sp->spt[spte_index(gva, level)];
		/* Acquire: pairs with the release store that linked the
		 * child (docs/locking.md #4). */
		spte = atomic_load_explicit(sptep, memory_order_acquire);
		if (level == 1 || !is_spte_present(spte) ||
		    is_last_spte(spte, level))
			break;
		sp = spte_to_child_page(spte);
	}
	if (level != 1)
		goto out;
	if (is_mmio_spte(spte)) {
		if (mmu_mmio_spte_answer(mmu, spte, gen, cpu, gva, access,
					 info))
			ret = MMU_FAULT_MMIO;
		goto out;
	}
	/* Present, MMU-writable, W clear: protected only for dirty logging
	 * (docs/MMU.md, "MMU-writable"). The guest's rights are the leaf's
	 * (upper sptes grant all); a supervisor access to a user page may
	 * depend on SMAP/SMEP and CR0.WP, which the full fault decides. */
	if (!fast_pf ||
	    (spte & (SPTE_P | SPTE_MMU_WRITABLE | SPTE_W)) !=
		    (SPTE_P | SPTE_MMU_WRITABLE) ||
	    user != !!(spte & SPTE_U))
		goto out;
	gfn = mmu_page_gfn_at(sp, (unsigned)(sptep - sp->spt));
	slot = memslot_lookup(mmu, gfn, &v->slot_hint);
	/* The slot must still map the page the spte maps: a slot being
	 * moved or deleted, or a gfn read while the entry was being
	 * rewritten, goes the slow way. */
	if (!slot || (slot->flags & (MEMSLOT_INVALID | MEMSLOT_READONLY)) ||
	    memslot_gfn_to_hva(slot, gfn) != spte_to_hva(spte))
		goto out;
	EXPLORE_POINT(EXPLORE_SPTE_STORE, sptep, spte | SPTE_W);
	/*
	 * W by cmpxchg, then the mark (docs/locking.md #21): a harvest
	 * clears the bit, then W (an RMW), then flushes. If its W-clear
	 * comes after our cmpxchg, it clears our W and its flush waits for
	 * this walk (and so for our mark) before it reports; if before, our
	 * cmpxchg fails (the value changed) or found it already clear, and
	 * our mark comes after its bit was cleared: the next harvest has it.
	 */
	if (atomic_compare_exchange_strong_explicit(sptep, &spte, spte | SPTE_W,
						    memory_order_acq_rel,
						    memory_order_relaxed)) {
		memslot_mark_dirty(slot, gfn);
		mmu_stat_add(mmu, MMU_STAT_FAST_PF, 1);
		ret = MMU_FAULT_FIXED;
	}
out:
	ops->lockless_end(mmu->opaque, v->index);
	return ret;
}

/* ---- MMU object and vCPUs -------------------------------------------- */

struct mmu *mmu_create(const struct mmu_vcpu_ops *ops, void *opaque)
{
	struct mmu *mmu = calloc(1, sizeof(*mmu));
	unsigned i;

	if (!mmu)
		return NULL;
	mmu->slots = memslots_alloc(0);
	if (!mmu->slots) {
		free(mmu);
		return NULL;
	}
	pthread_mutex_init(&mmu->slots_lock, NULL);
	pthread_mutex_init(&mmu->mmu_lock, NULL);
	list_init(&mmu->active_pages);
	list_init(&mmu->invalid_roots);
	list_init(&mmu->vcpus);
	for (i = 0; i < MMU_HASH_SIZE; i++)
		list_init(&mmu->hash[i]);
	mmu->ops = ops;
	mmu->opaque = opaque;
	/* Off until the vCPU layer calls the sync points (mmu_set_unsync). */
	mmu_option_set(mmu, MMU_OPT_UNSYNC, MMU_UNSYNC_OFF);
	return mmu;
}

void mmu_destroy(struct mmu *mmu)
{
	if (!mmu)
		return;
	mmu_zap_all(mmu);
	MMUD_ASSERT(mmu->nr_pages == 0 && list_empty(&mmu->vcpus));
	pte_list_free_dead(mmu, true);
	memslots_free_all(mmu);
	pthread_mutex_destroy(&mmu->slots_lock);
	pthread_mutex_destroy(&mmu->mmu_lock);
	free(mmu);
}

struct mmu_vcpu *mmu_vcpu_create(struct mmu *mmu, unsigned index)
{
	struct mmu_vcpu *v = calloc(1, sizeof(*v));

	if (v) {
		v->mmu = mmu;
		v->index = index;
		/* slots_lock too: the dirty ring walks the list under it. */
		mmu_mutex_lock(&mmu->slots_lock);
		if (mmu_dirty_ring_vcpu_init(v) < 0) {
			mmu_mutex_unlock(&mmu->slots_lock);
			free(v);
			return NULL;
		}
		mmu_lock_acquire(mmu);
		list_add(&v->link, &mmu->vcpus);
		mmu_lock_release(mmu);
		mmu_mutex_unlock(&mmu->slots_lock);
	}
	return v;
}

void mmu_vcpu_destroy(struct mmu_vcpu *v)
{
	if (!v)
		return;
	mmu_vcpu_unload(v);
	mmu_mutex_lock(&v->mmu->slots_lock);
	mmu_lock_acquire(v->mmu);
	list_del(&v->link);
	mmu_lock_release(v->mmu);
	mmu_dirty_ring_vcpu_fini(v);
	mmu_mutex_unlock(&v->mmu->slots_lock);
	while (v->nr_page_cache)
		free(v->page_cache[--v->nr_page_cache]);
	while (v->descs.nr)
		free(v->descs.d[--v->descs.nr]);
	free(v);
}

/* Allocate outside mmu_lock what one fault can consume. */
static int topup_caches(struct mmu_vcpu *v)
{
	while (v->nr_page_cache < MMU_CACHE_PAGES) {
		void *p = aligned_alloc(PAGE_SIZE, MMU_PAGE_ALLOC_SIZE);

		if (!p)
			return -ENOMEM;
		v->page_cache[v->nr_page_cache++] = p;
	}
	while (v->descs.nr < MMU_CACHE_DESCS) {
		void *p = malloc(sizeof(struct pte_list_desc));

		if (!p)
			return -ENOMEM;
		v->descs.d[v->descs.nr++] = p;
	}
	return 0;
}

static union mmu_page_role root_role(const struct mmu_cpu_state *cpu)
{
	bool wp = cpu->cr0 & X86_CR0_WP;
	union mmu_page_role r = { .word = 0 };

	r.level = MMU_ROOT_LEVEL;
	r.access = MMU_ACC_ALL;
	r.cr0_wp = wp;
	r.efer_nx = !!(cpu->efer & X86_EFER_NXE);
	r.smep_andnot_wp = (cpu->cr4 & X86_CR4_SMEP) && !wp;
	r.smap_andnot_wp = (cpu->cr4 & X86_CR4_SMAP) && !wp;
	return r;
}

static gfn_t cr3_gfn(const struct mmu_cpu_state *cpu)
{
	return (cpu->cr3 & ((1ULL << MMU_GUEST_MAXPHYADDR) - 1)) >> PAGE_SHIFT;
}

/* Drop v's root pin; a zapped root is freed with its last pin. */
static void put_root_locked(struct mmu_vcpu *v, struct list_node *invalid)
{
	struct mmu_page *sp = v->root;

	mmu_assert_locked(v->mmu);
	if (!sp)
		return;
	v->root = NULL;
	MMUD_ASSERT(sp->root_count > 0);
	if (--sp->root_count == 0 && sp->role.invalid) {
		list_del(&sp->link);
		list_add(&sp->link, invalid);
	}
}

void mmu_vcpu_unload(struct mmu_vcpu *v)
{
	struct list_node invalid;

	list_init(&invalid);
	mmu_lock_acquire(v->mmu);
	put_root_locked(v, &invalid);
	commit_zap(v->mmu, &invalid);
	mmu_lock_release(v->mmu);
}

void mmu_vcpu_free_obsolete_roots(struct mmu_vcpu *v)
{
	struct list_node invalid;

	list_init(&invalid);
	mmu_lock_acquire(v->mmu);
	if (v->root && mmu_page_is_obsolete(v->mmu, v->root))
		put_root_locked(v, &invalid);
	commit_zap(v->mmu, &invalid);
	mmu_lock_release(v->mmu);
}

const _Atomic uint64_t *mmu_vcpu_root(const struct mmu_vcpu *v)
{
	return v->root ? v->root->spt : NULL;
}

int mmu_vcpu_load(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu)
{
	struct mmu *mmu = v->mmu;
	union mmu_page_role role = root_role(cpu);
	gfn_t gfn = cr3_gfn(cpu);
	struct list_node invalid;
	const struct memslot *slot;
	bool flush = false;
	int ret;

	/* A zapped root is dropped on MMU_REQ_FREE_OBSOLETE_ROOTS or by a
	 * fault that finds it obsolete, both by this thread. */
	if (v->root && v->root_gfn == gfn && v->root_role.word == role.word)
		return 0;
	ret = topup_caches(v);
	if (ret)
		return ret;
	list_init(&invalid);
	/*
	 * The slot check and the root's creation are in one read-side
	 * section, so a delete's grace period waits for us and its zap then
	 * finds (and invalidates) this root; checked first and created after
	 * the zap, the root would shadow a gfn of a slot that is gone
	 * (docs/MMU.md, "Memslots under RCU").
	 */
	mmu_rcu_read_lock();
	slot = memslot_lookup(mmu, gfn, &v->slot_hint);
	mmu_lock_acquire(mmu);
	put_root_locked(v, &invalid);
	if (slot && !(slot->flags & MEMSLOT_INVALID)) {
		struct mmu_page *sp = get_page(v, gfn, role, &flush);

		/* Root load is a sync point (docs/MMU.md, "Unsync and sync"). */
		mmu_sync_root_locked(mmu, sp);
		sp->root_count++;
		v->root = sp;
		v->root_gfn = gfn;
		v->root_role = role;
	}
	if (flush && list_empty(&invalid))
		mmu_flush_remote_tlbs(mmu);
	commit_zap(mmu, &invalid);
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
	return 0;
}

/* ---- the fault path ------------------------------------------------------ */

/* Re-read the gpte the walk used at level (its table is write-tracked or
 * in the root by now): the guest may have changed it since the walk. */
static bool gpte_changed(struct mmu_vcpu *v, gva_t gva,
			 const struct mmu_walk *w, int level)
{
	const struct memslot *s =
		memslot_lookup(v->mmu, w->table_gfn[level], &v->slot_hint);
	_Atomic uint64_t *p;

	if (!s || (s->flags & MEMSLOT_INVALID))
		return true;
	p = (_Atomic uint64_t *)(uintptr_t)(memslot_gfn_to_hva(
						    s, w->table_gfn[level]) +
					    spte_index(gva, level) * 8);
	EXPLORE_POINT(EXPLORE_GPTE_READ, p, level);
	return atomic_load_explicit(p, memory_order_acquire) != w->gpte[level];
}

static bool gfn_write_tracked(const struct memslot *slot, gfn_t gfn)
{
	return slot->meta->write_track[gfn - slot->base_gfn] != 0;
}

/* Install the leaf spte for gfn at *sptep in sp (level 1). */
static enum mmu_fault_result set_spte(struct mmu_vcpu *v, struct mmu_page *sp,
				      _Atomic uint64_t *sptep, gfn_t gfn,
				      const struct memslot *slot, unsigned acc,
				      bool write, bool *flush)
{
	struct mmu *mmu = v->mmu;
	unsigned i = (unsigned)(sptep - sp->spt);
	hva_t hva = memslot_gfn_to_hva(slot, gfn);
	uint64_t old = spte_get(sptep);
	uint64_t new = SPTE_P | SPTE_MMU_PRESENT | SPTE_A | hva;
	enum mmu_fault_result res = MMU_FAULT_FIXED;
	bool host_writable = !(slot->flags & MEMSLOT_READONLY);

	if (acc & MMU_ACC_USER)
		new |= SPTE_U;
	if (!(acc & MMU_ACC_EXEC))
		new |= SPTE_NX;
	if (host_writable)
		new |= SPTE_HOST_WRITABLE;
	if (write && gfn_write_tracked(slot, gfn))
		mmu_stat_add(mmu, MMU_STAT_TRACKED_WRITE_FAULTS, 1);
	if ((acc & MMU_ACC_WRITE) && host_writable) {
		if (gfn_write_tracked(slot, gfn) &&
		    !(write && mmu_try_unsync_locked(mmu, slot, gfn))) {
			/* A shadowed guest table: writes are emulated. */
			if (write)
				res = MMU_FAULT_EMULATE;
		} else {
			new |= SPTE_W | SPTE_MMU_WRITABLE | SPTE_D;
		}
	}
	if (is_spte_present(old) &&
	    (spte_to_hva(old) != hva || mmu_page_gfn_at(sp, i) != gfn)) {
		/* Never overwrite a present spte (CVE-2026-23401). */
		drop_spte(mmu, sptep);
		*flush = true;
		old = 0;
	}
	if (!sp->role.direct)
		atomic_store_explicit(&sp->gfns[i], gfn, memory_order_relaxed);
	/*
	 * The rmap entry, then the spte, then the dirty mark
	 * (docs/locking.md #8): a lockless harvest that sees the mark (its
	 * acquire exchange reads from our release RMW) walks the rmap after
	 * it and finds the writable spte; one that misses the mark leaves
	 * the bit for the next harvest. Marked before the store, the bit
	 * could be taken by a harvest whose walk comes before our writable
	 * spte, and the page would be written unlogged.
	 */
	if (!is_spte_present(old)) {
		mmu_touch_locked(mmu, slot, gfn, 1);
		pte_list_add(&v->descs, mmu_rmap_head(slot, gfn, 1), sptep);
		sp->nr_present++;
		mmu_stat_add(mmu, MMU_STAT_SPTES, 1);
	}
	old = spte_xchg(sptep, new);
	/* Decided on what the exchange found: the fast page fault may have
	 * set W, or the lockless write protection cleared it, since. */
	if (is_spte_present(old) && (old & SPTE_W) && !(new &SPTE_W))
		*flush = true;
	/* Logged once the spte can be written through; on the dirty ring
	 * once per protection (an spte still writable was pushed when it
	 * became so: docs/MMU.md, "The dirty ring"). */
	if ((new &SPTE_W) &&
	    !(mmu_dirty_ring_size(mmu) && is_spte_present(old) &&
	      (old & SPTE_W) && spte_to_hva(old) == hva))
		mmu_dirty_ring_mark_locked(v, slot, gfn);
	return res;
}

static union mmu_page_role child_role(union mmu_page_role parent, bool direct,
				      unsigned access)
{
	union mmu_page_role r = parent;

	r.level = parent.level - 1;
	r.direct = direct;
	r.access = access;
	return r;
}

/* Under mmu_lock: build the shadow path for w and install the leaf. */
static enum mmu_fault_result fetch(struct mmu_vcpu *v, gva_t gva,
				   unsigned access, const struct mmu_walk *w,
				   const struct memslot *slot, uint64_t seq,
				   bool *flush)
{
	struct mmu *mmu = v->mmu;
	struct mmu_page *sp = v->root;
	bool write = access & MMU_ACCESS_WRITE;
	gfn_t gfn = w->gpa >> PAGE_SHIFT;
	unsigned leaf_acc = w->pte_access;
	int level, goal = 1;

	mmu_assert_locked(mmu);
	/* Pairs with the release bump in invalidate_slot(): a memslot
	 * update that started after our snapshot forces a retry. */
	if (atomic_load_explicit(&mmu->invalidate_seq, memory_order_acquire) !=
	    seq)
		return MMU_FAULT_RETRY;
	if (!sp || v->root_gfn != w->table_gfn[MMU_ROOT_LEVEL])
		return MMU_FAULT_RETRY;
	if (gpte_changed(v, gva, w, MMU_ROOT_LEVEL))
		return MMU_FAULT_RETRY;
	/* Tables a fault walks through are in use, not flooded
	 * (docs/MMU.md, "Write flooding"). */
	sp->write_flooding_count = 0;
	for (level = MMU_ROOT_LEVEL; level > w->level; level--) {
		_Atomic uint64_t *sptep = &sp->spt[spte_index(gva, level)];

		sp = get_child(v, sp, sptep, w->table_gfn[level - 1],
			       child_role(sp->role, false, w->access[level]),
			       flush);
		sp->write_flooding_count = 0;
		/* The table is write-tracked now; if the gpte changed since
		 * the walk, the walk is stale. */
		if (gpte_changed(v, gva, w, level - 1))
			return MMU_FAULT_RETRY;
	}
	/* A clean gpte maps read-only until the first write sets D. */
	if (!write && !(w->gpte[w->level] & SPTE_D))
		leaf_acc &= ~MMU_ACC_WRITE;
	/* After the tables above are shadowed (that changes what may be
	 * mapped large): the largest spte the slot allows (large.c). */
	if (slot && w->level > 1)
		goal = mmu_large_level_locked(mmu, slot, gfn, w->level);
	/*
	 * A guest large page mapped smaller: direct pages split it. The
	 * child of a level-L spte covers level_pages(L) gfns.
	 */
	for (level = w->level; level > goal; level--) {
		_Atomic uint64_t *sptep = &sp->spt[spte_index(gva, level)];

		sp = get_child(v, sp, sptep, gfn & ~(level_pages(level) - 1),
			       child_role(sp->role, true, leaf_acc), flush);
	}
	if (!slot) {
		mmu_mmio_set_spte_locked(mmu, sp, &sp->spt[spte_index(gva, 1)],
					 gfn, leaf_acc, flush);
		return MMU_FAULT_MMIO;
	}
	if (goal > 1)
		return mmu_set_large_spte_locked(
			v, sp, &sp->spt[spte_index(gva, goal)], gfn, slot,
			leaf_acc, flush);
	return set_spte(v, sp, &sp->spt[spte_index(gva, 1)], gfn, slot,
			leaf_acc, write, flush);
}

/* Zap every shadow page with gptes for gfn: it is no longer write-tracked
 * (KVM's kvm_mmu_unprotect_page). */
static void unprotect_gfn_locked(struct mmu *mmu, gfn_t gfn,
				 struct list_node *invalid)
{
	struct list_node *h = &mmu->hash[hash_gfn(gfn)], *n, *next;

	/* prepare_zap unhashes only the page it zaps. */
	for (n = h->next; n != h; n = next) {
		struct mmu_page *sp =
			container_of(n, struct mmu_page, hash_link);

		next = n->next;
		if (sp->gfn == gfn && !sp->role.direct)
			prepare_zap(mmu, sp, invalid);
	}
}

/*
 * fetch() answered a write to a write-tracked gfn with MMU_FAULT_EMULATE:
 * the vCPU maps the page for tracked writes and retries. If the same
 * write faults again before any tracked write was reported, that mapping
 * was lost before the write could use it (in the soft TLB, another
 * access of the same instruction evicted it) and would be each time:
 * unprotect the gfn and retry, so the write goes through a writable
 * spte (docs/MMU.md, "Writes that never complete"). Not when the gfn is
 * a table of the write's own walk: the retry would shadow it again.
 */
static enum mmu_fault_result write_protected_fault(struct mmu_vcpu *v,
						   const struct mmu_walk *w,
						   struct list_node *invalid)
{
	gfn_t gfn = w->gpa >> PAGE_SHIFT;
	bool again = v->emulate_pending && v->emulate_gpa == w->gpa;
	int level;

	v->emulate_pending = true;
	v->emulate_gpa = w->gpa;
	if (!again)
		return MMU_FAULT_EMULATE;
	for (level = w->level; level <= MMU_ROOT_LEVEL; level++)
		if (w->table_gfn[level] == gfn)
			return MMU_FAULT_EMULATE;
	unprotect_gfn_locked(v->mmu, gfn, invalid);
	v->emulate_pending = false;
	mmu_stat_add(v->mmu, MMU_STAT_UNPROTECTS, 1);
	return MMU_FAULT_RETRY;
}

int mmu_page_fault(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu,
		   gva_t gva, unsigned access, struct mmu_fault_info *info)
{
	struct mmu *mmu = v->mmu;
	const struct memslot *slot;
	struct list_node invalid;
	struct mmu_walk w;
	uint64_t seq;
	bool flush = false;
	int ret;

	ret = topup_caches(v);
	if (ret)
		return ret;
	list_init(&invalid);
	info->gpa = 0;
	info->error_code = 0;
	mmu_rcu_read_lock();
	/* Snapshot before looking at memslots (docs/locking.md #6); acquire
	 * pairs with the release bump in invalidate_slot(). */
	seq = atomic_load_explicit(&mmu->invalidate_seq, memory_order_acquire);
	/* A current MMIO spte, or a write to a page protected only for
	 * dirty logging, answers without the guest walk nor mmu_lock. */
	ret = fast_paths(v, cpu, gva, access, info);
	if (ret != FAST_NONE)
		goto out;
	switch (mmu_walk_guest(v, cpu, gva, access, &w)) {
	case MMU_WALK_RETRY:
		ret = MMU_FAULT_RETRY;
		goto out;
	case MMU_WALK_FAULT:
		info->error_code = w.error_code;
		ret = MMU_FAULT_GUEST_PF;
		goto out;
	case MMU_WALK_OK:
		break;
	}
	info->gpa = w.gpa;
	EXPLORE_POINT(EXPLORE_FAULT_WALKED, v, w.gpa);
	slot = memslot_lookup(mmu, w.gpa >> PAGE_SHIFT, &v->slot_hint);
	if (slot && (slot->flags & MEMSLOT_INVALID)) {
		/* Being deleted or moved: never treat it as MMIO. */
		ret = MMU_FAULT_RETRY;
		goto out;
	}
	if (slot && (access & MMU_ACCESS_WRITE) &&
	    (slot->flags & MEMSLOT_READONLY)) {
		ret = MMU_FAULT_MMIO;
		goto out;
	}
	/* No slot: fetch() installs an MMIO spte and answers MMIO. */
	if (slot && (access & MMU_ACCESS_WRITE) &&
	    !(w.pte_access & MMU_ACC_WRITE)) {
		/* Supervisor write under CR0.WP=0 to a read-only page: the
		 * guest may, no spte may (sptes are checked as with WP=1). */
		ret = MMU_FAULT_EMULATE;
		goto out;
	}
	mmu_lock_acquire(mmu);
	if (v->root && mmu_page_is_obsolete(mmu, v->root)) {
		/* Zapped under us: never build on an obsolete root. */
		put_root_locked(v, &invalid);
		ret = MMU_FAULT_RETRY;
	} else {
		ret = fetch(v, gva, access, &w, slot, seq, &flush);
		if (ret == MMU_FAULT_EMULATE)
			ret = write_protected_fault(v, &w, &invalid);
	}
	/* Write protection or a dropped spte must reach every vCPU before
	 * mmu_lock is released (docs/MMU.md, "The spte format"). */
	if (flush && list_empty(&invalid))
		mmu_flush_remote_tlbs(mmu);
	commit_zap(mmu, &invalid);
	mmu_lock_release(mmu);
out:
	mmu_rcu_read_unlock();
	switch (ret) {
	case MMU_FAULT_FIXED:
		mmu_stat_add(mmu, MMU_STAT_FAULT_FIXED, 1);
		break;
	case MMU_FAULT_RETRY:
		mmu_stat_add(mmu, MMU_STAT_FAULT_RETRY, 1);
		break;
	case MMU_FAULT_GUEST_PF:
		mmu_stat_add(mmu, MMU_STAT_FAULT_GUEST_PF, 1);
		break;
	case MMU_FAULT_MMIO:
		mmu_stat_add(mmu, MMU_STAT_FAULT_MMIO, 1);
		break;
	case MMU_FAULT_EMULATE:
		mmu_stat_add(mmu, MMU_STAT_FAULT_EMULATE, 1);
		break;
	}
	return ret;
}

int mmu_shadow_translate(const _Atomic uint64_t *root, gva_t gva,
			 unsigned access, const struct mmu_cpu_state *cpu,
			 hva_t *hva)
{
	bool write = access & MMU_ACCESS_WRITE;
	bool fetch_ = access & MMU_ACCESS_FETCH;
	bool implicit = access & MMU_ACCESS_IMPLICIT;
	bool user = cpu->cpl == 3 && !implicit;
	struct spte_leaf leaf;

	/* The soft TLB's own walk (spte.h); the checks are hardware's with
	 * CR0.WP=1 (SDM vol. 3, 4.6). */
	if (!spte_walk(root, gva, &leaf))
		return -EFAULT;
	if (write && !(leaf.rights & MMU_ACC_WRITE))
		return -EFAULT;
	if (user && !(leaf.rights & MMU_ACC_USER))
		return -EFAULT;
	if (fetch_ && !(leaf.rights & MMU_ACC_EXEC))
		return -EFAULT;
	if (!user && (leaf.rights & MMU_ACC_USER)) {
		if (fetch_ && (cpu->cr4 & X86_CR4_SMEP))
			return -EFAULT;
		if (!fetch_ && (cpu->cr4 & X86_CR4_SMAP) &&
		    (implicit || !(cpu->rflags & X86_RFLAGS_AC)))
			return -EFAULT;
	}
	*hva = leaf.page + (gva & (PAGE_SIZE - 1));
	return 0;
}

/* ---- emulated writes, write protection, zapping ------------------------ */

/*
 * What follows a guest write of a tracked gfn once it is stored: mark it
 * dirty, then zap what the MMU derived from the written gpte (docs/MMU.md,
 * "Emulated writes and the shadow-page count"). Caller: inside mmu_rcu_read_lock(), slot valid for gfn.
 */
static void after_guest_write(struct mmu *mmu, const struct memslot *slot,
			      gpa_t gpa, unsigned len)
{
	gfn_t gfn = gpa >> PAGE_SHIFT;
	struct list_node invalid, *h, *n, *next;
	bool flush = false, misaligned;

	memslot_mark_dirty(slot, gfn);
	mmu_stat_add(mmu, MMU_STAT_EMULATED_WRITES, 1);
	/* Full barrier between the store above and the count: a seq_cst
	 * RMW pairing with the one in account_shadowed() (docs/locking.md
	 * #5). */
	if (!atomic_fetch_add_explicit(&mmu->indirect_shadow_pages, 0,
				       memory_order_seq_cst))
		return;
	list_init(&invalid);
	misaligned = (gpa & 7) + len > 8;
	mmu_lock_acquire(mmu);
	h = &mmu->hash[hash_gfn(gfn)];
	for (n = h->next; n != h; n = next) {
		struct mmu_page *sp =
			container_of(n, struct mmu_page, hash_link);

		next = n->next;
		if (sp->gfn != gfn || sp->role.direct ||
		    mmu_page_is_obsolete(mmu, sp))
			continue;
		/* KVM's detect_write_misaligned / detect_write_flooding: an
		 * upper table written again and again without a fault
		 * walking through it is most likely not one any more
		 * (docs/MMU.md, "Write flooding"). Leaf tables go unsync
		 * instead. */
		if (misaligned) {
			prepare_zap(mmu, sp, &invalid);
		} else if (sp->role.level > 1 &&
			   ++sp->write_flooding_count >=
				   MMU_WRITE_FLOOD_LIMIT) {
			mmu_stat_add(mmu, MMU_STAT_FLOODED_PAGES, 1);
			prepare_zap(mmu, sp, &invalid);
		} else
			flush |= zap_pte(mmu, sp,
					 &sp->spt[(gpa & (PAGE_SIZE - 1)) / 8]);
	}
	if (flush && list_empty(&invalid))
		mmu_flush_remote_tlbs(mmu);
	commit_zap(mmu, &invalid);
	mmu_lock_release(mmu);
}

int mmu_emulate_write(struct mmu_vcpu *v, gpa_t gpa, uint64_t val, unsigned len)
{
	struct mmu *mmu = v->mmu;
	gfn_t gfn = gpa >> PAGE_SHIFT;
	const struct memslot *slot;
	void *p;
	int ret = 0;

	if ((len != 1 && len != 2 && len != 4 && len != 8) ||
	    (gpa & (PAGE_SIZE - 1)) + len > PAGE_SIZE)
		return -EINVAL;
	v->emulate_pending = false;
	mmu_rcu_read_lock();
	slot = memslot_lookup(mmu, gfn, &v->slot_hint);
	if (!slot || (slot->flags & MEMSLOT_READONLY)) {
		mmu_stat_add(mmu, MMU_STAT_FAULT_MMIO, 1);
		goto out;
	}
	if (slot->flags & MEMSLOT_INVALID) {
		ret = -EAGAIN;
		goto out;
	}
	p = (void *)(uintptr_t)(memslot_gfn_to_hva(slot, gfn) +
				(gpa & (PAGE_SIZE - 1)));
	/* Release stores of the access width (docs/ARCHITECTURE.md, "Guest
	 * memory is shared memory"). */
	switch (len) {
	case 1:
		atomic_store_explicit((_Atomic uint8_t *)p, (uint8_t)val,
				      memory_order_release);
		break;
	case 2:
		atomic_store_explicit((_Atomic uint16_t *)p, (uint16_t)val,
				      memory_order_release);
		break;
	case 4:
		atomic_store_explicit((_Atomic uint32_t *)p, (uint32_t)val,
				      memory_order_release);
		break;
	default:
		atomic_store_explicit((_Atomic uint64_t *)p, val,
				      memory_order_release);
		break;
	}
	after_guest_write(mmu, slot, gpa, len);
out:
	mmu_rcu_read_unlock();
	return ret;
}

int mmu_track_write(struct mmu_vcpu *v, gpa_t gpa, unsigned len)
{
	struct mmu *mmu = v->mmu;
	const struct memslot *slot;
	int ret = 0;

	if ((len != 1 && len != 2 && len != 4 && len != 8) ||
	    (gpa & (PAGE_SIZE - 1)) + len > PAGE_SIZE)
		return -EINVAL;
	/* A tracked write completed: the vCPU makes progress. */
	v->emulate_pending = false;
	mmu_rcu_read_lock();
	slot = memslot_lookup(mmu, gpa >> PAGE_SHIFT, &v->slot_hint);
	if (!slot || (slot->flags & MEMSLOT_READONLY))
		goto out;
	if (slot->flags & MEMSLOT_INVALID) {
		/* Being deleted: its sptes are zapped by the delete. */
		ret = -EAGAIN;
		goto out;
	}
	after_guest_write(mmu, slot, gpa, len);
out:
	mmu_rcu_read_unlock();
	return ret;
}

bool mmu_write_protect_gfn(struct mmu *mmu, gfn_t gfn)
{
	const struct memslot *slot;
	bool flush = false;

	mmu_rcu_read_lock();
	slot = memslot_lookup(mmu, gfn, NULL);
	if (slot) {
		mmu_lock_acquire(mmu);
		flush = mmu_write_protect_gfn_locked(mmu, slot, gfn, false);
		if (flush)
			mmu_flush_remote_tlbs(mmu);
		mmu_lock_release(mmu);
	}
	mmu_rcu_read_unlock();
	return flush;
}

void mmu_write_protect_slot(struct mmu *mmu, const struct memslot *slot)
{
	bool flush = false;
	gfn_t gfn, end = slot->base_gfn + slot->npages;

	mmu_rcu_read_lock();
	mmu_lock_acquire(mmu);
	/* Only chunks that ever had an spte (docs/MMU.md, "Touched
	 * chunks"). */
	for (gfn = mmu_next_touched(slot, slot->base_gfn, end); gfn < end;
	     gfn = (gfn + 1) & ((1ULL << MMU_CHUNK_SHIFT) - 1) ?
			   gfn + 1 :
			   mmu_next_touched(slot, gfn + 1, end))
		flush |= mmu_write_protect_gfn_locked(mmu, slot, gfn, false);
	if (flush)
		mmu_flush_remote_tlbs(mmu);
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
}

/* Drop every leaf spte of [start, end) within slot. */
static bool zap_rmaps_locked(struct mmu *mmu, const struct memslot *slot,
			     gfn_t start, gfn_t end)
{
	bool flush = false;
	gfn_t gfn;
	int level;

	mmu_assert_locked(mmu);
	/* A chunk never touched has empty rmaps (docs/MMU.md, "Touched
	 * chunks"): a large spte marks every chunk of its frame. */
	for (gfn = mmu_next_touched(slot, start, end); gfn < end;
	     gfn = (gfn + 1) & ((1ULL << MMU_CHUNK_SHIFT) - 1) ?
			   gfn + 1 :
			   mmu_next_touched(slot, gfn + 1, end)) {
		for (level = 1; level <= MMU_NR_LEAF_LEVELS; level++) {
			struct pte_list_head *h =
				mmu_rmap_head(slot, gfn, level);
			_Atomic uint64_t *sptep;

			while ((sptep = pte_list_first(h))) {
				drop_spte(mmu, sptep);
				flush = true;
			}
		}
	}
	return flush;
}

void mmu_zap_gfn_range(struct mmu *mmu, gfn_t start, gfn_t end)
{
	struct memslots *slots;
	bool flush = false;
	unsigned i;

	mmu_rcu_read_lock();
	slots = mmu_rcu_dereference(mmu->slots);
	mmu_lock_acquire(mmu);
	for (i = 0; i < slots->nr; i++) {
		const struct memslot *s = slots->slots[i];
		gfn_t lo = start > s->base_gfn ? start : s->base_gfn;
		gfn_t hi = end < s->base_gfn + s->npages ?
				   end :
				   s->base_gfn + s->npages;

		if (lo < hi)
			flush |= zap_rmaps_locked(mmu, s, lo, hi);
	}
	atomic_fetch_add_explicit(&mmu->invalidate_seq, 1,
				  memory_order_release);
	if (flush)
		mmu_flush_remote_tlbs(mmu);
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
}

void mmu_zap_slot(struct mmu *mmu, const struct memslot *slot)
{
	struct list_node invalid, *n, *next;

	list_init(&invalid);
	mmu_rcu_read_lock();
	mmu_lock_acquire(mmu);
	zap_rmaps_locked(mmu, slot, slot->base_gfn,
			 slot->base_gfn + slot->npages);
	/*
	 * Pages shadowing gfns of the slot keep their write-track counts in
	 * its metadata, which is about to be freed: they go too (KVM's
	 * kvm_mmu_zap_memslot_pages_and_flush).
	 */
	for (n = mmu->active_pages.next; n != &mmu->active_pages; n = next) {
		struct mmu_page *sp = container_of(n, struct mmu_page, link);

		next = n->next;
		if (sp->gfn >= slot->base_gfn &&
		    sp->gfn - slot->base_gfn < slot->npages)
			prepare_zap(mmu, sp, &invalid);
	}
	/*
	 * Always, with wait, whatever was dropped: a vCPU may hold a host
	 * address into the slot that no spte backs (a page it maps for
	 * emulated writes after MMU_FAULT_EMULATE, in its soft TLB), and
	 * the caller unmaps the memory when we return (mmu.h). The request
	 * makes every vCPU drop its cached translations before it next
	 * enters guest mode; commit_zap() flushes when it has pages.
	 */
	if (list_empty(&invalid))
		mmu_flush_remote_tlbs(mmu);
	commit_zap(mmu, &invalid);
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
}

void mmu_zap_all(struct mmu *mmu)
{
	struct list_node invalid, *n, *next;

	list_init(&invalid);
	mmu_rcu_read_lock();
	mmu_lock_acquire(mmu);
	/* prepare_zap only moves the page it zaps: the next pointer taken
	 * before it stays valid. */
	for (n = mmu->active_pages.next; n != &mmu->active_pages; n = next) {
		next = n->next;
		prepare_zap(mmu, container_of(n, struct mmu_page, link),
			    &invalid);
	}
	atomic_fetch_add_explicit(&mmu->invalidate_seq, 1,
				  memory_order_release);
	commit_zap(mmu, &invalid);
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
}

void mmu_stats_get(struct mmu *mmu, struct mmu_stats *st)
{
	uint64_t c[MMU_STAT_NR];
	unsigned i;

	for (i = 0; i < MMU_STAT_NR; i++)
		c[i] = atomic_load_explicit(&mmu->stats.c[i],
					    memory_order_relaxed);
	mmu_lock_acquire(mmu);
	st->pages = mmu->nr_pages;
	mmu_lock_release(mmu);
	st->sptes = c[MMU_STAT_SPTES];
	st->faults_fixed = c[MMU_STAT_FAULT_FIXED];
	st->faults_guest_pf = c[MMU_STAT_FAULT_GUEST_PF];
	st->faults_mmio = c[MMU_STAT_FAULT_MMIO];
	st->faults_emulate = c[MMU_STAT_FAULT_EMULATE];
	st->retries = c[MMU_STAT_FAULT_RETRY];
	st->zapped_pages = c[MMU_STAT_ZAPPED_PAGES];
	st->zapped_sptes = c[MMU_STAT_ZAPPED_SPTES];
	st->flushes = c[MMU_STAT_FLUSHES];
	st->write_protects = c[MMU_STAT_WRITE_PROTECTS];
	st->emulated_writes = c[MMU_STAT_EMULATED_WRITES];
	st->unsyncs = c[MMU_STAT_UNSYNCS];
	st->syncs = c[MMU_STAT_SYNCS];
	st->fast_zaps = c[MMU_STAT_FAST_ZAPS];
	st->obsolete_freed = c[MMU_STAT_OBSOLETE_FREED];
	st->mmio_sptes = c[MMU_STAT_MMIO_SPTES];
	st->mmio_hits = c[MMU_STAT_MMIO_HITS];
	st->large_sptes = c[MMU_STAT_LARGE_SPTES];
	st->tracked_write_faults = c[MMU_STAT_TRACKED_WRITE_FAULTS];
	st->unsync_refused = c[MMU_STAT_UNSYNC_REFUSED];
	st->ring_pushes = c[MMU_STAT_RING_PUSHES];
	st->ring_full_exits = c[MMU_STAT_RING_FULL_EXITS];
	st->ring_resets = c[MMU_STAT_RING_RESETS];
	st->ring_overflows = c[MMU_STAT_RING_OVERFLOWS];
	st->flooded_pages = c[MMU_STAT_FLOODED_PAGES];
	st->unprotects = c[MMU_STAT_UNPROTECTS];
}

/* ---- for unsync.c, zap_fast.c, mmio_spte.c, large.c (mmu_int.h) -------- */

void mmu_drop_spte_locked(struct mmu *mmu, _Atomic uint64_t *sptep)
{
	mmu_assert_locked(mmu);
	drop_spte(mmu, sptep);
}

bool mmu_zap_pte_locked(struct mmu *mmu, struct mmu_page *sp,
			_Atomic uint64_t *sptep)
{
	mmu_assert_locked(mmu);
	return zap_pte(mmu, sp, sptep);
}

void mmu_prepare_zap_locked(struct mmu *mmu, struct mmu_page *sp,
			    struct list_node *invalid_list)
{
	prepare_zap(mmu, sp, invalid_list);
}

void mmu_commit_zap_locked(struct mmu *mmu, struct list_node *invalid_list)
{
	commit_zap(mmu, invalid_list);
}

void mmu_spte_set(_Atomic uint64_t *sptep, uint64_t val)
{
	spte_set(sptep, val);
}

unsigned mmu_hash_gfn(gfn_t gfn)
{
	return hash_gfn(gfn);
}

void mmu_pte_list_add(struct mmu_vcpu *v, struct pte_list_head *head,
		      _Atomic uint64_t *sptep)
{
	mmu_assert_locked(v->mmu);
	pte_list_add(&v->descs, head, sptep);
}
