/*
 * The per-vCPU dirty ring, with KVM's semantics (docs/MMU.md, "The dirty
 * ring"): the fault that maps a page of a logging slot writable pushes
 * (slot, offset) to the faulting vCPU's ring; a harvester takes the
 * pushed entries and marks them harvested; a reset write-protects the
 * harvested pages again, so their next write pushes again, and frees the
 * entries. A vCPU whose ring is soft-full stays out of guest mode until
 * a reset makes room (core/vcpu waits). The sptes and rmaps belong to
 * mmu.c and the bitmap to memslot.c: this file owns the rings and orders
 * the steps. The barrier pairs are docs/locking.md #17 and #17a.
 */
#include <errno.h>
#include <stdlib.h>

#include "mmu_int.h"

static bool is_power_of_2(uint32_t n)
{
	return n && !(n & (n - 1));
}

static struct mmu_dirty_ring *ring_alloc(uint32_t size)
{
	struct mmu_dirty_ring *r =
		calloc(1, sizeof(*r) + size * sizeof(r->e[0]));

	if (r) {
		r->size = size;
		r->soft_limit = size - MMU_DIRTY_RING_RESERVE;
	}
	return r;
}

static struct mmu_dirty_ring *ring_of(struct mmu_vcpu *v)
{
	return atomic_load_explicit(&v->ring, memory_order_acquire);
}

static uint32_t ring_used(struct mmu_dirty_ring *r)
{
	/* Acquire: pairs with the reset's release store (#17a), so the
	 * entries it freed are seen free before they are written again. */
	return atomic_load_explicit(&r->dirty_index, memory_order_relaxed) -
	       atomic_load_explicit(&r->reset_index, memory_order_acquire);
}

uint32_t mmu_dirty_ring_size(struct mmu *mmu)
{
	return atomic_load_explicit(&mmu->ring_size, memory_order_relaxed);
}

int mmu_dirty_ring_enable(struct mmu *mmu, uint32_t entries, char *err,
			  size_t errlen)
{
	struct mmu_dirty_ring **rings = NULL;
	struct list_node *n;
	unsigned nr = 0, i = 0;
	int ret = 0;

	if (!is_power_of_2(entries) || entries < MMU_DIRTY_RING_MIN ||
	    entries > MMU_DIRTY_RING_MAX)
		return mmu_fail(err, errlen, -EINVAL,
				"dirty ring: %u entries is not a power of two "
				"from %u to %u",
				entries, MMU_DIRTY_RING_MIN,
				MMU_DIRTY_RING_MAX);
	mmu_mutex_lock(&mmu->slots_lock);
	if (mmu_dirty_ring_size(mmu)) {
		ret = mmu_fail(err, errlen, -EEXIST,
			       "dirty ring: already on, with %u entries",
			       mmu_dirty_ring_size(mmu));
		goto out;
	}
	/* The vCPU list changes only under slots_lock too: count it, then
	 * allocate outside mmu_lock. */
	for (n = mmu->vcpus.next; n != &mmu->vcpus; n = n->next)
		nr++;
	rings = calloc(nr ? nr : 1, sizeof(*rings));
	for (i = 0; rings && i < nr; i++) {
		rings[i] = ring_alloc(entries);
		if (!rings[i])
			break;
	}
	if (!rings || i < nr) {
		while (rings && i)
			free(rings[--i]);
		ret = mmu_fail(err, errlen, -ENOMEM,
			       "dirty ring: out of memory");
		goto out;
	}
	mmu_lock_acquire(mmu);
	i = 0;
	for (n = mmu->vcpus.next; n != &mmu->vcpus; n = n->next) {
		struct mmu_vcpu *v = container_of(n, struct mmu_vcpu, link);

		atomic_store_explicit(&v->ring, rings[i++],
				      memory_order_release);
	}
	atomic_store_explicit(&mmu->ring_size, entries, memory_order_relaxed);
	mmu_lock_release(mmu);
out:
	mmu_mutex_unlock(&mmu->slots_lock);
	free(rings);
	return ret;
}

int mmu_dirty_ring_vcpu_init(struct mmu_vcpu *v)
{
	uint32_t size = mmu_dirty_ring_size(v->mmu);
	struct mmu_dirty_ring *r;

	if (!size)
		return 0;
	r = ring_alloc(size);
	if (!r)
		return -ENOMEM;
	atomic_store_explicit(&v->ring, r, memory_order_release);
	return 0;
}

static const struct memslot *entry_slot(struct mmu *mmu, uint32_t id,
					uint64_t offset);

/*
 * A vCPU going away (slots_lock held, off the list): what it pushed goes
 * to the bitmap, and every page it still holds an entry for is
 * write-protected, so nothing written later goes unseen without its ring.
 */
void mmu_dirty_ring_vcpu_fini(struct mmu_vcpu *v)
{
	struct mmu_dirty_ring *r = ring_of(v);
	struct mmu *mmu = v->mmu;
	bool flush = false;
	uint32_t i, end;

	if (!r)
		return;
	end = atomic_load_explicit(&r->dirty_index, memory_order_relaxed);
	mmu_lock_acquire(mmu);
	for (i = atomic_load_explicit(&r->reset_index, memory_order_relaxed);
	     i != end; i++) {
		struct mmu_dirty_gfn *e = &r->e[i & (r->size - 1)];
		const struct memslot *s = entry_slot(mmu, e->slot, e->offset);

		if (!s)
			continue;
		if (atomic_load_explicit(&e->flags, memory_order_acquire) ==
		    MMU_DIRTY_GFN_DIRTY)
			memslot_mark_dirty(s, s->base_gfn + e->offset);
		flush |= mmu_write_protect_gfn_locked(
			mmu, s, s->base_gfn + e->offset, false);
	}
	mmu_lock_release(mmu);
	if (flush)
		mmu_flush_remote_tlbs(mmu);
	atomic_store_explicit(&v->ring, NULL, memory_order_relaxed);
	free(r);
}

void mmu_dirty_ring_mark_locked(struct mmu_vcpu *v, const struct memslot *slot,
				gfn_t gfn)
{
	struct mmu_dirty_ring *r = ring_of(v);
	struct mmu_dirty_gfn *e;
	uint32_t di, used;

	mmu_assert_locked(v->mmu);
	if (!r || !slot->dirty_bitmap) {
		memslot_mark_dirty(slot, gfn);
		return;
	}
	di = atomic_load_explicit(&r->dirty_index, memory_order_relaxed);
	used = ring_used(r);
	if (used >= r->size) {
		/* Never with the reserve kept (the run loop stops at
		 * soft-full): the bitmap keeps the page reported. */
		mmu_stat_add(v->mmu, MMU_STAT_RING_OVERFLOWS, 1);
		memslot_mark_dirty(slot, gfn);
		return;
	}
	e = &r->e[di & (r->size - 1)];
	e->slot = slot->id;
	e->offset = gfn - slot->base_gfn;
	/*
	 * Release: the entry's fields before its flag, for a harvester that
	 * loads the flag with acquire (docs/locking.md #17). Before the
	 * writable spte's release store too (the caller's), as the bitmap's
	 * mark is (#8): a harvest that misses the entry finds the spte not
	 * yet writable.
	 */
	atomic_store_explicit(&e->flags, MMU_DIRTY_GFN_DIRTY,
			      memory_order_release);
	atomic_store_explicit(&r->dirty_index, di + 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->pushes, 1, memory_order_relaxed);
	mmu_stat_add(v->mmu, MMU_STAT_RING_PUSHES, 1);
	/* The push that makes it soft-full asks the vCPU to look at it
	 * before it enters guest mode again (KVM's soft-full request). */
	if (used + 1 == r->soft_limit && v->mmu->ops)
		v->mmu->ops->make_request(v->mmu->opaque, v->index,
					  MMU_REQ_DIRTY_RING, false);
}

bool mmu_vcpu_dirty_ring_full(struct mmu_vcpu *v)
{
	struct mmu_dirty_ring *r = ring_of(v);

	if (!r)
		return false;
	if (ring_used(r) < r->soft_limit) {
		r->full_counted = false;
		return false;
	}
	if (!r->full_counted) {
		r->full_counted = true;
		atomic_fetch_add_explicit(&r->full_exits, 1,
					  memory_order_relaxed);
		mmu_stat_add(v->mmu, MMU_STAT_RING_FULL_EXITS, 1);
	}
	return true;
}

/* vCPU index's ring, under slots_lock (the list cannot change). */
static struct mmu_dirty_ring *find_ring(struct mmu *mmu, unsigned vcpu,
					int *ret)
{
	struct list_node *n;

	*ret = -EINVAL;
	if (!mmu_dirty_ring_size(mmu))
		return NULL;
	*ret = -ENOENT;
	for (n = mmu->vcpus.next; n != &mmu->vcpus; n = n->next) {
		struct mmu_vcpu *v = container_of(n, struct mmu_vcpu, link);

		if (v->index == vcpu)
			return ring_of(v);
	}
	return NULL;
}

/* The next pushed entry at fetch_index, harvested; false: none. */
static bool harvest_one(struct mmu_dirty_ring *r, struct mmu_dirty_entry *out)
{
	struct mmu_dirty_gfn *e = &r->e[r->fetch_index & (r->size - 1)];

	/* Acquire: pairs with the push's release store (#17). A free
	 * entry reads 0: the reset cleared it before this harvester (under
	 * the same lock) moved fetch_index past it last time round. */
	if (atomic_load_explicit(&e->flags, memory_order_acquire) !=
	    MMU_DIRTY_GFN_DIRTY)
		return false;
	out->slot = e->slot;
	out->offset = e->offset;
	atomic_store_explicit(&e->flags, MMU_DIRTY_GFN_HARVESTED,
			      memory_order_relaxed);
	r->fetch_index++;
	return true;
}

int mmu_dirty_ring_harvest(struct mmu *mmu, unsigned vcpu,
			   struct mmu_dirty_entry *out, unsigned max)
{
	struct mmu_dirty_ring *r;
	int ret;
	unsigned n = 0;

	mmu_mutex_lock(&mmu->slots_lock);
	r = find_ring(mmu, vcpu, &ret);
	if (r) {
		while (n < max && harvest_one(r, &out[n]))
			n++;
		ret = (int)n;
	}
	mmu_mutex_unlock(&mmu->slots_lock);
	return ret;
}

/* The logging slot with this id that still holds offset, or NULL. */
static const struct memslot *entry_slot(struct mmu *mmu, uint32_t id,
					uint64_t offset)
{
	const struct memslots *slots = mmu_slots_locked(mmu);

	for (unsigned i = 0; i < slots->nr; i++) {
		const struct memslot *s = slots->slots[i];

		if (s->id == id)
			return s->dirty_bitmap && offset < s->npages ? s : NULL;
	}
	return NULL;
}

static uint64_t reset_slots_locked(struct mmu *mmu)
{
	struct list_node *n;
	uint64_t total = 0;
	bool flush = false;

	if (!mmu_dirty_ring_size(mmu))
		return 0;
	mmu_lock_acquire(mmu);
	for (n = mmu->vcpus.next; n != &mmu->vcpus; n = n->next) {
		struct mmu_dirty_ring *r =
			ring_of(container_of(n, struct mmu_vcpu, link));
		uint32_t i;

		if (!r)
			continue;
		/* Only this thread (under slots_lock) stores reset_index. */
		i = atomic_load_explicit(&r->reset_index, memory_order_relaxed);
		for (; i != r->fetch_index; i++) {
			struct mmu_dirty_gfn *e = &r->e[i & (r->size - 1)];
			const struct memslot *s =
				entry_slot(mmu, e->slot, e->offset);

			/* A slot gone or no longer logging needs no
			 * protection: its next write is not logged. */
			if (s)
				flush |= mmu_write_protect_gfn_locked(
					mmu, s, s->base_gfn + e->offset, false);
			atomic_store_explicit(&e->flags, 0,
					      memory_order_relaxed);
			total++;
		}
	}
	mmu_lock_release(mmu);
	/* Before the entries are given back: a vCPU that pushes into
	 * one again has dropped the writable translation of the page
	 * it held (docs/locking.md #17a). */
	if (flush)
		mmu_flush_remote_tlbs(mmu);
	for (n = mmu->vcpus.next; n != &mmu->vcpus; n = n->next) {
		struct mmu_vcpu *v = container_of(n, struct mmu_vcpu, link);
		struct mmu_dirty_ring *r = ring_of(v);

		if (!r || atomic_load_explicit(&r->reset_index,
					       memory_order_relaxed) ==
				  r->fetch_index)
			continue;
		/* Release: the cleared flags and the protection before the
		 * room they make (#17a); then the request (seq_cst RMW,
		 * docs/locking.md #1) wakes a vCPU held at soft-full, which
		 * re-reads reset_index after taking it. */
		atomic_store_explicit(&r->reset_index, r->fetch_index,
				      memory_order_release);
		if (mmu->ops)
			mmu->ops->make_request(mmu->opaque, v->index,
					       MMU_REQ_DIRTY_RING, false);
	}
	mmu_stat_add(mmu, MMU_STAT_RING_RESETS, (int64_t)total);
	return total;
}

uint64_t mmu_dirty_ring_reset(struct mmu *mmu)
{
	uint64_t n;

	mmu_mutex_lock(&mmu->slots_lock);
	n = reset_slots_locked(mmu);
	mmu_mutex_unlock(&mmu->slots_lock);
	return n;
}

void mmu_dirty_ring_to_bitmap_slots_locked(struct mmu *mmu)
{
	struct list_node *n;
	struct mmu_dirty_entry e;

	if (!mmu_dirty_ring_size(mmu))
		return;
	for (n = mmu->vcpus.next; n != &mmu->vcpus; n = n->next) {
		struct mmu_dirty_ring *r =
			ring_of(container_of(n, struct mmu_vcpu, link));

		while (r && harvest_one(r, &e)) {
			const struct memslot *s =
				entry_slot(mmu, e.slot, e.offset);

			/* The bit before the reset's protection: a write
			 * after it pushes again (docs/MMU.md, "The dirty
			 * ring"). */
			if (s)
				memslot_mark_dirty(s, s->base_gfn + e.offset);
		}
	}
	reset_slots_locked(mmu);
}

void mmu_dirty_ring_to_bitmap(struct mmu *mmu)
{
	mmu_mutex_lock(&mmu->slots_lock);
	mmu_dirty_ring_to_bitmap_slots_locked(mmu);
	mmu_mutex_unlock(&mmu->slots_lock);
}

int mmu_dirty_ring_stats(struct mmu *mmu, unsigned vcpu,
			 struct mmu_dirty_ring_stats *st)
{
	struct mmu_dirty_ring *r;
	int ret;

	mmu_mutex_lock(&mmu->slots_lock);
	r = find_ring(mmu, vcpu, &ret);
	if (r) {
		st->pushes =
			atomic_load_explicit(&r->pushes, memory_order_relaxed);
		st->full_exits = atomic_load_explicit(&r->full_exits,
						      memory_order_relaxed);
		st->used = ring_used(r);
		ret = 0;
	}
	mmu_mutex_unlock(&mmu->slots_lock);
	return ret;
}
