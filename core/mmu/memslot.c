/*
 * Memslots: the gfn -> host address map of one VM. The set is an immutable
 * array sorted by base gfn, replaced copy-on-write under slots_lock and
 * published with RCU; readers (the fault path, the walker, the emulator)
 * look slots up inside a read-side section in O(log n), with a per-vCPU
 * hint. Updates follow KVM's kvm_set_memslot order (docs/MMU.md,
 * "Memslots under RCU"):
 * delete and move first publish an INVALID copy and wait a grace period,
 * then zap what maps the slot and flush remote TLBs with wait, then
 * publish the final set, wait again, and only then free. This file owns
 * the arrays, the slot objects and their metadata; the shadow pages and
 * rmap contents belong to mmu.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "mmu_int.h"
#include "mmu_rcu.h"

/* Declared in mmu_int.h. */
int mmu_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

const struct memslot *memslots_find(const struct memslots *slots, gfn_t gfn,
				    unsigned *hint)
{
	unsigned lo = 0, hi = slots->nr;
	const struct memslot *s;

	if (hint && *hint < slots->nr) {
		s = slots->slots[*hint];
		if (gfn >= s->base_gfn && gfn - s->base_gfn < s->npages)
			return s;
	}
	/* Last slot whose base_gfn <= gfn. */
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (slots->slots[mid]->base_gfn <= gfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	s = slots->slots[lo - 1];
	if (gfn - s->base_gfn >= s->npages)
		return NULL;
	if (hint)
		*hint = lo - 1;
	return s;
}

const struct memslot *memslot_lookup(struct mmu *mmu, gfn_t gfn, unsigned *hint)
{
	struct memslots *slots = mmu_rcu_dereference(mmu->slots);

	return memslots_find(slots, gfn, hint);
}

uint64_t memslot_generation(struct mmu *mmu)
{
	struct memslots *slots = mmu_rcu_dereference(mmu->slots);

	/* Acquire: pairs with the release stores in publish(). */
	return atomic_load_explicit(&slots->generation, memory_order_acquire);
}

unsigned memslot_count(struct mmu *mmu)
{
	return mmu_rcu_dereference(mmu->slots)->nr;
}

void memslot_mark_dirty(const struct memslot *slot, gfn_t gfn)
{
	uint64_t i = gfn - slot->base_gfn;

	if (!slot->dirty_bitmap)
		return;
	EXPLORE_POINT(EXPLORE_DIRTY, &slot->dirty_bitmap[i / 64], i);
	/*
	 * Release: on the emulated and tracked-write paths the guest's store
	 * to the page comes before this mark, and a harvester that sees the
	 * bit must see the data when it copies the page; pairs with the
	 * acquire exchange in memslot_dirty_log_get() (docs/locking.md
	 * #8a). An x86 host orders them anyway; a weaker one
	 * would not.
	 */
	atomic_fetch_or_explicit(&slot->dirty_bitmap[i / 64], 1ULL << (i % 64),
				 memory_order_release);
}

void mmu_mark_dirty(struct mmu *mmu, gpa_t gpa)
{
	const struct memslot *slot =
		memslot_lookup(mmu, gpa >> PAGE_SHIFT, NULL);

	if (slot && !(slot->flags & MEMSLOT_READONLY))
		memslot_mark_dirty(slot, gpa >> PAGE_SHIFT);
}

struct memslots *memslots_alloc(unsigned nr)
{
	struct memslots *s = calloc(1, sizeof(*s) + nr * sizeof(s->slots[0]));

	if (s)
		s->nr = nr;
	return s;
}

static struct memslot_meta *meta_alloc(uint64_t npages)
{
	struct memslot_meta *m = calloc(1, sizeof(*m));
	int l;

	if (!m)
		return NULL;
	m->npages = npages;
	for (l = 0; l < MMU_NR_LEAF_LEVELS; l++) {
		/* A level-(l+1) rmap has one head per 512^l pages. */
		uint64_t n = ((npages - 1) >> (9 * l)) + 2;

		m->rmap[l] = calloc(n, sizeof(*m->rmap[l]));
		if (!m->rmap[l])
			goto nomem;
	}
	m->write_track = calloc(npages, sizeof(*m->write_track));
	m->touched = calloc((memslot_nr_chunks(npages) + 63) / 64,
			    sizeof(*m->touched));
	if (!m->write_track || !m->touched || lpage_meta_alloc(m, npages))
		goto nomem;
	return m;
nomem:
	for (l = 0; l < MMU_NR_LEAF_LEVELS; l++)
		free(m->rmap[l]);
	free(m->write_track);
	free(m->touched);
	lpage_meta_free(m);
	free(m);
	return NULL;
}

static void meta_free(struct memslot_meta *m)
{
	int l;

	if (!m)
		return;
	for (l = 0; l < MMU_NR_LEAF_LEVELS; l++)
		free(m->rmap[l]);
	free(m->write_track);
	free(m->touched);
	lpage_meta_free(m);
	free(m);
}

static _Atomic uint64_t *bitmap_alloc(uint64_t npages)
{
	return calloc((npages + 63) / 64, sizeof(uint64_t));
}

static struct memslot *slot_dup(const struct memslot *s)
{
	struct memslot *n = malloc(sizeof(*n));

	if (n)
		*n = *s;
	return n;
}

/* Index of the slot with this id in the array, or -1. */
static int find_id(const struct memslots *slots, uint32_t id)
{
	unsigned i;

	for (i = 0; i < slots->nr; i++)
		if (slots->slots[i]->id == id)
			return (int)i;
	return -1;
}

/* A copy of old with slot i replaced by s (s == NULL removes it). */
static struct memslots *array_replace(const struct memslots *old, unsigned i,
				      const struct memslot *s)
{
	struct memslots *n = memslots_alloc(old->nr - (s ? 0 : 1));
	unsigned j, k = 0;

	if (!n)
		return NULL;
	for (j = 0; j < old->nr; j++) {
		if (j == i) {
			if (s)
				n->slots[k++] = s;
			continue;
		}
		n->slots[k++] = old->slots[j];
	}
	return n;
}

/* A copy of old with s inserted at its sorted position. */
static struct memslots *array_insert(const struct memslots *old,
				     const struct memslot *s)
{
	struct memslots *n = memslots_alloc(old->nr + 1);
	unsigned j, k = 0;
	bool done = false;

	if (!n)
		return NULL;
	for (j = 0; j < old->nr; j++) {
		if (!done && s->base_gfn < old->slots[j]->base_gfn) {
			n->slots[k++] = s;
			done = true;
		}
		n->slots[k++] = old->slots[j];
	}
	if (!done)
		n->slots[k++] = s;
	return n;
}

/*
 * Publish next and wait for a grace period: the generation carries the
 * update-in-progress bit from before the array is visible until after
 * every reader of the previous array is gone, then moves on (docs/MMU.md,
 * "MMIO generation").
 * Returns the previous array, which no reader can hold any more.
 */
static struct memslots *publish(struct mmu *mmu, struct memslots *next)
{
	struct memslots *old = mmu_slots_locked(mmu);
	uint64_t gen =
		atomic_load_explicit(&old->generation, memory_order_relaxed) &
		~MEMSLOT_GEN_UPDATE_IN_PROGRESS;

	/* Relaxed: made visible by the release in mmu_rcu_assign(). */
	atomic_store_explicit(&next->generation,
			      gen | MEMSLOT_GEN_UPDATE_IN_PROGRESS,
			      memory_order_relaxed);
	mmu_rcu_assign(mmu->slots, next);
	mmu_rcu_synchronize();
	/*
	 * MMIO sptes keep only the low bits of the generation: when they
	 * wrap, every MMIO spte goes, and it must go before the new
	 * generation is stored. Until then the update-in-progress bit makes
	 * the fast MMIO path decline; once gen + 1 is visible, an spte
	 * stamped one wrap earlier would match it and answer MMIO for a gfn
	 * that may be RAM now (docs/MMU.md, "MMIO generation").
	 */
	mmu_memslots_updated(mmu, gen + 1);
	EXPLORE_POINT(EXPLORE_GEN, &next->generation, gen + 1);
	/* Release: pairs with the acquire in memslot_generation(). */
	atomic_store_explicit(&next->generation, gen + 1, memory_order_release);
	return old;
}

static int check_range(const struct memslots *slots, int skip, uint32_t id,
		       gfn_t base, uint64_t npages, char *err, size_t errlen)
{
	unsigned i;

	if (npages == 0)
		return mmu_fail(err, errlen, -EINVAL, "memslot %u: zero size",
				id);
	if (base >= MMU_GFN_LIMIT || npages > MMU_GFN_LIMIT - base)
		return mmu_fail(
			err, errlen, -EINVAL,
			"memslot %u: gfn range 0x%llx+0x%llx beyond the "
			"guest's %d-bit physical address space",
			id, (unsigned long long)base,
			(unsigned long long)npages, MMU_GUEST_MAXPHYADDR);
	for (i = 0; i < slots->nr; i++) {
		const struct memslot *s = slots->slots[i];

		if ((int)i == skip)
			continue;
		if (base < s->base_gfn + s->npages &&
		    s->base_gfn < base + npages)
			return mmu_fail(err, errlen, -EEXIST,
					"memslot %u: gfn range 0x%llx+0x%llx "
					"overlaps memslot %u (0x%llx+0x%llx)",
					id, (unsigned long long)base,
					(unsigned long long)npages, s->id,
					(unsigned long long)s->base_gfn,
					(unsigned long long)s->npages);
	}
	return 0;
}

int memslot_add(struct mmu *mmu, uint32_t id, gfn_t base_gfn, uint64_t npages,
		hva_t hva, uint32_t flags, char *err, size_t errlen)
{
	struct memslots *slots, *next;
	struct memslot *s;
	int ret;

	if (id > MEMSLOT_MAX_ID)
		return mmu_fail(err, errlen, -EINVAL,
				"memslot id %u: the largest id is %u", id,
				MEMSLOT_MAX_ID);
	if (flags & ~MEMSLOT_USER_FLAGS)
		return mmu_fail(err, errlen, -EINVAL,
				"memslot %u: unknown flags 0x%x", id,
				flags & ~MEMSLOT_USER_FLAGS);
	if (hva & (PAGE_SIZE - 1))
		return mmu_fail(err, errlen, -EINVAL,
				"memslot %u: host address 0x%llx is not page "
				"aligned",
				id, (unsigned long long)hva);
	if (npages && (hva >> 47 || npages > ((1ULL << 47) - hva) >> 12))
		return mmu_fail(err, errlen, -EINVAL,
				"memslot %u: host range 0x%llx+0x%llx pages is "
				"not below 2^47",
				id, (unsigned long long)hva,
				(unsigned long long)npages);

	mmu_mutex_lock(&mmu->slots_lock);
	slots = mmu_slots_locked(mmu);
	if (find_id(slots, id) >= 0) {
		ret = mmu_fail(err, errlen, -EEXIST,
			       "memslot %u already exists", id);
		goto out;
	}
	ret = check_range(slots, -1, id, base_gfn, npages, err, errlen);
	if (ret)
		goto out;
	ret = -ENOMEM;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto out;
	*s = (struct memslot){ .id = id,
			       .flags = flags,
			       .base_gfn = base_gfn,
			       .npages = npages,
			       .hva = hva };
	s->meta = meta_alloc(npages);
	if (flags & MEMSLOT_LOG_DIRTY)
		s->dirty_bitmap = bitmap_alloc(npages);
	next = s->meta ? array_insert(slots, s) : NULL;
	if (!next || ((flags & MEMSLOT_LOG_DIRTY) && !s->dirty_bitmap)) {
		free(next);
		meta_free(s->meta);
		free((void *)s->dirty_bitmap);
		free(s);
		mmu_fail(err, errlen, -ENOMEM, "memslot %u: out of memory", id);
		goto out;
	}
	/*
	 * Nothing to zap: a gfn without a slot is mapped only by MMIO sptes,
	 * and the generation publish() moves on makes every one of them
	 * stale, so the next fault walks again and finds the new slot
	 * (docs/MMU.md, "MMIO generation"). A vCPU's soft TLB entry for
	 * such a page looks the slot up again on each access (vcpu.c).
	 */
	free(publish(mmu, next));
	ret = 0;
out:
	mmu_mutex_unlock(&mmu->slots_lock);
	return ret;
}

/*
 * Phase one of delete and move: publish an INVALID copy of slot i, wait
 * for every fault that could have seen the valid slot to finish, then zap
 * what maps it and flush with wait. Returns the INVALID copy (in the
 * published array) or NULL on -ENOMEM, with nothing changed.
 */
static const struct memslot *invalidate_slot(struct mmu *mmu, unsigned i)
{
	struct memslots *slots = mmu_slots_locked(mmu), *next;
	const struct memslot *old = slots->slots[i];
	struct memslot *inv = slot_dup(old);

	if (!inv)
		return NULL;
	inv->flags |= MEMSLOT_INVALID;
	next = array_replace(slots, i, inv);
	if (!next) {
		free(inv);
		return NULL;
	}
	/* Faults snapshot invalidate_seq before they look at memslots (the
	 * release pairs with their acquire). Bumped before the publish, it
	 * cannot by itself stop a fault that reads the old array after the
	 * bump; the grace period below does: it waits for every fault that
	 * read the old array, and the zap then removes what it installed
	 * (docs/locking.md #6). */
	atomic_fetch_add_explicit(&mmu->invalidate_seq, 1,
				  memory_order_release);
	free(publish(mmu, next));
	free((void *)old);
	mmu_zap_slot(mmu, inv);
	return inv;
}

int memslot_delete(struct mmu *mmu, uint32_t id, char *err, size_t errlen)
{
	struct memslots *next;
	const struct memslot *inv;
	int i, ret = 0;

	mmu_mutex_lock(&mmu->slots_lock);
	i = find_id(mmu_slots_locked(mmu), id);
	if (i < 0) {
		ret = mmu_fail(err, errlen, -ENOENT,
			       "memslot %u does not exist", id);
		goto out;
	}
	/* Allocate the final array first so no failure can strand an
	 * INVALID slot. */
	next = memslots_alloc(mmu_slots_locked(mmu)->nr - 1);
	if (!next) {
		ret = mmu_fail(err, errlen, -ENOMEM,
			       "memslot %u: out of memory", id);
		goto out;
	}
	inv = invalidate_slot(mmu, (unsigned)i);
	if (!inv) {
		free(next);
		ret = mmu_fail(err, errlen, -ENOMEM,
			       "memslot %u: out of memory", id);
		goto out;
	}
	{
		struct memslots *cur = mmu_slots_locked(mmu);
		unsigned j, k = 0;

		for (j = 0; j < cur->nr; j++)
			if (cur->slots[j] != inv)
				next->slots[k++] = cur->slots[j];
	}
	free(publish(mmu, next));
	/* No reader can see inv any more: its metadata goes too. */
	meta_free(inv->meta);
	free((void *)inv->dirty_bitmap);
	free((void *)inv);
out:
	mmu_mutex_unlock(&mmu->slots_lock);
	return ret;
}

int memslot_move(struct mmu *mmu, uint32_t id, gfn_t new_base_gfn, char *err,
		 size_t errlen)
{
	struct memslots *slots, *tmp, *next;
	const struct memslot *old, *inv;
	struct memslot *moved;
	int i, ret;

	mmu_mutex_lock(&mmu->slots_lock);
	slots = mmu_slots_locked(mmu);
	i = find_id(slots, id);
	if (i < 0) {
		ret = mmu_fail(err, errlen, -ENOENT,
			       "memslot %u does not exist", id);
		goto out;
	}
	old = slots->slots[i];
	ret = check_range(slots, i, id, new_base_gfn, old->npages, err, errlen);
	if (ret)
		goto out;
	ret = -ENOMEM;
	moved = slot_dup(old);
	if (!moved)
		goto out;
	moved->base_gfn = new_base_gfn;
	moved->meta = meta_alloc(old->npages);
	if (!moved->meta) {
		free(moved);
		goto out;
	}
	inv = invalidate_slot(mmu, (unsigned)i);
	if (!inv) {
		meta_free(moved->meta);
		free(moved);
		goto out;
	}
	/* The final array: inv out, moved in at its sorted place. */
	slots = mmu_slots_locked(mmu);
	tmp = array_replace(slots, (unsigned)find_id(slots, id), NULL);
	next = tmp ? array_insert(tmp, moved) : NULL;
	free(tmp);
	if (!next) {
		/*
		 * Cannot publish the move: put the slot back where it was
		 * (KVM reactivates the old slot the same way). The rmaps
		 * were emptied by the zap and refill on demand.
		 */
		struct memslot *back = slot_dup(inv);

		meta_free(moved->meta);
		free(moved);
		if (back) {
			back->flags &= ~MEMSLOT_INVALID;
			next = array_replace(
				slots, (unsigned)find_id(slots, id), back);
		}
		if (!back || !next) {
			/* Leave it INVALID: faults retry, nothing is lost. */
			free(back);
			goto out;
		}
		free(publish(mmu, next));
		free((void *)inv);
		goto out;
	}
	free(publish(mmu, next));
	meta_free(inv->meta);
	free((void *)inv);
	ret = 0;
out:
	mmu_mutex_unlock(&mmu->slots_lock);
	if (ret == -ENOMEM)
		mmu_fail(err, errlen, ret, "memslot %u: out of memory", id);
	return ret;
}

int memslot_set_flags(struct mmu *mmu, uint32_t id, uint32_t flags, char *err,
		      size_t errlen)
{
	struct memslots *slots, *next;
	const struct memslot *old;
	struct memslot *s;
	_Atomic uint64_t *old_bitmap = NULL;
	int i, ret = 0;

	if (flags & ~MEMSLOT_USER_FLAGS)
		return mmu_fail(err, errlen, -EINVAL,
				"memslot %u: unknown flags 0x%x", id,
				flags & ~MEMSLOT_USER_FLAGS);
	mmu_mutex_lock(&mmu->slots_lock);
	slots = mmu_slots_locked(mmu);
	i = find_id(slots, id);
	if (i < 0) {
		ret = mmu_fail(err, errlen, -ENOENT,
			       "memslot %u does not exist", id);
		goto out;
	}
	old = slots->slots[i];
	if ((old->flags ^ flags) & MEMSLOT_READONLY) {
		ret = mmu_fail(err, errlen, -EINVAL,
			       "memslot %u: READONLY can only be set when the "
			       "slot is added",
			       id);
		goto out;
	}
	if (old->flags == flags)
		goto out;
	/* Logging stops: the dirty rings' entries go to the bitmaps, and
	 * a vCPU held at soft-full is let go (docs/MMU.md, "The dirty
	 * ring"). */
	if (!(flags & MEMSLOT_LOG_DIRTY))
		mmu_dirty_ring_to_bitmap_slots_locked(mmu);
	ret = -ENOMEM;
	s = slot_dup(old);
	if (!s)
		goto out;
	s->flags = flags;
	if (flags & MEMSLOT_LOG_DIRTY) {
		s->dirty_bitmap = bitmap_alloc(s->npages);
	} else {
		old_bitmap = old->dirty_bitmap;
		s->dirty_bitmap = NULL;
	}
	next = array_replace(slots, (unsigned)i, s);
	if (!next || ((flags & MEMSLOT_LOG_DIRTY) && !s->dirty_bitmap)) {
		free(next);
		if (flags & MEMSLOT_LOG_DIRTY)
			free((void *)s->dirty_bitmap);
		free(s);
		goto out;
	}
	ret = 0;
	free(publish(mmu, next));
	free((void *)old);
	free((void *)old_bitmap);
	/*
	 * Every fault that saw the slot without its bitmap has finished
	 * (grace period above): write-protect what they made writable so
	 * the next write faults and is logged (docs/MMU.md, "Turning dirty
	 * logging on").
	 */
	if (flags & MEMSLOT_LOG_DIRTY) {
		/* A large spte would log one bit for a whole frame: only
		 * 4 KiB sptes log each page. */
		mmu_zap_large_slot(mmu, s);
		mmu_write_protect_slot(mmu, s);
		/* Every spte is protected again: a new log starts exact
		 * (docs/MMU.md, "Manual protection"). */
		mmu_lock_acquire(mmu);
		s->meta->manual_dirty = false;
		mmu_lock_release(mmu);
	}
out:
	mmu_mutex_unlock(&mmu->slots_lock);
	if (ret == -ENOMEM)
		mmu_fail(err, errlen, ret, "memslot %u: out of memory", id);
	return ret;
}

int memslot_dirty_log_get(struct mmu *mmu, uint32_t id, uint64_t *out,
			  size_t nwords, char *err, size_t errlen)
{
	const struct memslot *s;
	bool flush = false;
	int i, ret = 0;

	mmu_mutex_lock(&mmu->slots_lock);
	i = find_id(mmu_slots_locked(mmu), id);
	if (i < 0) {
		ret = mmu_fail(err, errlen, -ENOENT,
			       "memslot %u does not exist", id);
		goto out;
	}
	s = mmu_slots_locked(mmu)->slots[i];
	if (!s->dirty_bitmap) {
		ret = mmu_fail(err, errlen, -EINVAL,
			       "memslot %u: dirty logging is off", id);
		goto out;
	}
	if (nwords < (s->npages + 63) / 64) {
		ret = mmu_fail(err, errlen, -EINVAL,
			       "memslot %u: bitmap needs %llu words", id,
			       (unsigned long long)(s->npages + 63) / 64);
		goto out;
	}
	/* The dirty ring's pushes first, into the bitmap (docs/MMU.md, "The
	 * dirty ring"). */
	mmu_dirty_ring_to_bitmap_slots_locked(mmu);
	/* Clear bit -> write-protect -> flush -> report (docs/MMU.md, "Dirty
	 * logging"), the protection as the wp switch says (dirty_log.c). */
	flush = mmu_dirty_log_take_protect(mmu, s, 0, s->npages, out);
	if (flush)
		mmu_flush_remote_tlbs(mmu);
out:
	mmu_mutex_unlock(&mmu->slots_lock);
	return ret;
}

void memslots_free_all(struct mmu *mmu)
{
	struct memslots *slots = mmu_slots_locked(mmu);
	unsigned i;

	for (i = 0; i < slots->nr; i++) {
		const struct memslot *s = slots->slots[i];

		meta_free(s->meta);
		free((void *)s->dirty_bitmap);
		free((void *)s);
	}
	free(slots);
}
