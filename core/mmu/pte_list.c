/*
 * pte lists: the sets of spte pointers behind rmaps (the leaf sptes that
 * map a gfn) and parent ptes (the non-leaf sptes that point to a shadow
 * page), docs/MMU.md, "Rmaps and parent ptes". One pointer is stored inline in the head word; more
 * go into a chain of descriptors (struct pte_list_desc in mmu_int.h).
 * Everything here runs under mmu_lock but pte_list_walk_lockless(), the
 * write protection's walk of an rmap without it (docs/locking.md,
 * "Lockless rmap walks"): so the fields it reads are atomics, stored
 * with release here and loaded with acquire there, and an rmap's
 * entries move (pte_list_remove_rmap) only inside mmu->rmap_seq's odd
 * section.
 */
#include <stdlib.h>
#include <string.h>

#include "mmu_int.h"

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_release)

static struct pte_list_desc *desc_of(uintptr_t val)
{
	return (struct pte_list_desc *)(val & ~(uintptr_t)1);
}

static struct pte_list_desc *desc_take(struct pte_desc_cache *c)
{
	MMUD_ASSERT(c->nr > 0);
	return c->d[--c->nr];
}

void pte_list_add(struct pte_desc_cache *c, struct pte_list_head *head,
		  _Atomic uint64_t *sptep)
{
	struct pte_list_desc *d;

	uintptr_t val = LD(head->val);
	uint32_t n;

	if (!val) {
		ST(head->val, (uintptr_t)sptep);
		return;
	}
	/* A new descriptor is filled before the release store that
	 * publishes it; an entry before the release store of the count
	 * that covers it. Nothing moves: a walker sees each old entry. */
	if (!(val & 1)) {
		d = desc_take(c);
		memset(d, 0, sizeof(*d));
		d->oldest = d;
		ST(d->sptes[0], (_Atomic uint64_t *)val);
		ST(d->sptes[1], sptep);
		ST(d->spte_count, 2);
		d->total = 2;
		ST(head->val, (uintptr_t)d | 1);
		return;
	}
	d = desc_of(val);
	if (LD(d->spte_count) == PTE_LIST_EXT) {
		struct pte_list_desc *nd = desc_take(c);

		memset(nd, 0, sizeof(*nd));
		ST(nd->more, d);
		nd->oldest = d->oldest;
		nd->total = d->total;
		d->newer = nd;
		d->oldest = NULL;
		ST(head->val, (uintptr_t)nd | 1);
		d = nd;
	}
	n = LD(d->spte_count);
	ST(d->sptes[n], sptep);
	ST(d->spte_count, n + 1);
	d->total++;
}

/*
 * An emptied descriptor: freed at once when no lockless walk can hold
 * it, else kept on mmu->dead_descs. The seq_cst RMW pairs with the
 * walk's begin, a seq_cst RMW of the same word (docs/locking.md #20):
 * either it reads an even value, and a walk that begins later reads
 * from it or after it and so sees the descriptor unlinked; or it reads
 * odd and the descriptor waits for a later free.
 */
static void desc_free(struct mmu *mmu, struct pte_list_desc *d)
{
	if (!mmu) {
		free(d);
		return;
	}
	d->newer = mmu->dead_descs;
	mmu->dead_descs = d;
	pte_list_free_dead(mmu, false);
}

void pte_list_free_dead(struct mmu *mmu, bool force)
{
	struct pte_list_desc *d;

	if (!mmu->dead_descs)
		return;
	if (!force && (atomic_fetch_add_explicit(&mmu->wp_walk_seq, 0,
						 memory_order_seq_cst) &
		       1))
		return;
	while ((d = mmu->dead_descs)) {
		mmu->dead_descs = d->newer;
		free(d);
	}
}

/*
 * Removes entry i of descriptor d from the chain headed by h. The hole is
 * refilled from the oldest descriptor when d is that one, else from the
 * head, so every descriptor between them stays full; the one that gave
 * its last entry is unlinked and freed (desc_free). A moved entry may be
 * missed by a lockless walker that already passed the hole: for an rmap
 * (mmu set) this runs inside rmap_seq's odd section, which makes the
 * walker retry.
 */
static void pte_list_take_out(struct mmu *mmu, struct pte_list_head *head,
			      struct pte_list_desc *h, struct pte_list_desc *d,
			      unsigned i)
{
	struct pte_list_desc *o = h->oldest, *n;
	uint32_t cnt;

	h->total--;
	if (d == o && o != h) {
		cnt = LD(o->spte_count) - 1;
		ST(d->sptes[i], LD(o->sptes[cnt]));
		ST(o->spte_count, cnt);
		ST(o->sptes[cnt], NULL);
		if (cnt)
			return;
		h->oldest = o->newer;
		ST(o->newer->more, NULL);
		desc_free(mmu, o);
		return;
	}
	cnt = LD(h->spte_count) - 1;
	ST(d->sptes[i], LD(h->sptes[cnt]));
	ST(h->spte_count, cnt);
	ST(h->sptes[cnt], NULL);
	if (cnt)
		return;
	n = LD(h->more);
	if (n) {
		n->newer = NULL;
		n->oldest = o;
		n->total = h->total;
		ST(head->val, (uintptr_t)n | 1);
	} else {
		ST(head->val, 0);
	}
	desc_free(mmu, h);
}

static int desc_find(const struct pte_list_desc *d,
		     const _Atomic uint64_t *sptep)
{
	for (unsigned i = 0; i < LD(d->spte_count); i++)
		if (LD(d->sptes[i]) == sptep)
			return (int)i;
	return -1;
}

/* Searches from the newest and the oldest descriptor at once, one
 * descriptor from each end per step, until the two meet. */
static bool remove_from(struct mmu *mmu, struct pte_list_head *head,
			const _Atomic uint64_t *sptep)
{
	uintptr_t val = LD(head->val);
	struct pte_list_desc *h, *f, *b;
	int i;

	if (!val)
		return false;
	if (!(val & 1)) {
		if ((const _Atomic uint64_t *)val != sptep)
			return false;
		ST(head->val, 0);
		return true;
	}
	h = desc_of(val);
	for (f = h, b = h->oldest;; f = LD(f->more), b = b->newer) {
		i = desc_find(f, sptep);
		if (i >= 0) {
			pte_list_take_out(mmu, head, h, f, (unsigned)i);
			return true;
		}
		if (f == b)
			return false;
		i = desc_find(b, sptep);
		if (i >= 0) {
			pte_list_take_out(mmu, head, h, b, (unsigned)i);
			return true;
		}
		if (LD(f->more) == b)
			return false;
	}
}

bool pte_list_remove(struct pte_list_head *head, const _Atomic uint64_t *sptep)
{
	return remove_from(NULL, head, sptep);
}

bool pte_list_remove_rmap(struct mmu *mmu, struct pte_list_head *head,
			  const _Atomic uint64_t *sptep)
{
	bool found;

	/* A single inline entry moves nothing: no section needed. */
	if (!(LD(head->val) & 1))
		return remove_from(mmu, head, sptep);
	/*
	 * Odd before anything moves: acq_rel, so no store below is seen
	 * before it; even after, release (docs/locking.md #19). Under
	 * mmu_lock, so sections never overlap.
	 */
	atomic_fetch_add_explicit(&mmu->rmap_seq, 1, memory_order_acq_rel);
	found = remove_from(mmu, head, sptep);
	atomic_fetch_add_explicit(&mmu->rmap_seq, 1, memory_order_release);
	return found;
}

/* Entries a lockless walk may visit before it gives up: a list changing
 * under it could be followed round a recycled descriptor for ever. */
#define WALK_LIMIT (1u << 20)

bool pte_list_walk_lockless(struct mmu *mmu, const struct pte_list_head *head,
			    void (*fn)(_Atomic uint64_t *sptep, void *arg),
			    void *arg)
{
	uintptr_t val = atomic_load_explicit(&head->val, memory_order_acquire);
	const struct pte_list_desc *d;
	uint64_t seq;
	unsigned steps = 0;

	if (!val)
		return true;
	/* One inline entry: the head word is the whole list. */
	if (!(val & 1)) {
		fn((_Atomic uint64_t *)val, arg);
		return true;
	}
	/*
	 * A seqcount read (docs/locking.md #19): acquire loads of the
	 * sequence, then of every field; one that read a store made inside
	 * a move section synchronises with that release store, so the
	 * re-check below sees the section's odd value or a later one.
	 */
	seq = atomic_load_explicit(&mmu->rmap_seq, memory_order_acquire);
	if (seq & 1)
		return false;
	val = atomic_load_explicit(&head->val, memory_order_acquire);
	if (!(val & 1)) {
		if (val)
			fn((_Atomic uint64_t *)val, arg);
		goto check;
	}
	for (d = desc_of(val); d;
	     d = atomic_load_explicit(&d->more, memory_order_acquire)) {
		uint32_t n = atomic_load_explicit(&d->spte_count,
						  memory_order_acquire);

		if (n > PTE_LIST_EXT || (steps += n + 1) > WALK_LIMIT)
			return false;
		for (uint32_t i = 0; i < n; i++) {
			_Atomic uint64_t *p;

			EXPLORE_POINT(EXPLORE_RMAP_WALK, &d->sptes[i], i);
			p = atomic_load_explicit(&d->sptes[i],
						 memory_order_acquire);

			if (p)
				fn(p, arg);
		}
	}
check:
	return atomic_load_explicit(&mmu->rmap_seq, memory_order_acquire) ==
	       seq;
}

unsigned pte_list_count(const struct pte_list_head *head)
{
	uintptr_t val = LD(head->val);

	if (!val)
		return 0;
	if (!(val & 1))
		return 1;
	return desc_of(val)->total;
}

bool pte_list_for_each(const struct pte_list_head *head,
		       bool (*fn)(_Atomic uint64_t *sptep, void *arg),
		       void *arg)
{
	uintptr_t val = LD(head->val);
	struct pte_list_desc *d;
	unsigned i;

	if (!val)
		return true;
	if (!(val & 1))
		return fn((_Atomic uint64_t *)val, arg);
	for (d = desc_of(val); d; d = LD(d->more))
		for (i = 0; i < LD(d->spte_count); i++)
			if (!fn(LD(d->sptes[i]), arg))
				return false;
	return true;
}

static bool match_sptep(_Atomic uint64_t *sptep, void *arg)
{
	return sptep != arg;
}

bool pte_list_contains(const struct pte_list_head *head,
		       const _Atomic uint64_t *sptep)
{
	return !pte_list_for_each(head, match_sptep, (void *)sptep);
}

_Atomic uint64_t *pte_list_first(const struct pte_list_head *head)
{
	uintptr_t val = LD(head->val);

	if (!val)
		return NULL;
	if (!(val & 1))
		return (_Atomic uint64_t *)val;
	return LD(desc_of(val)->sptes[0]);
}
