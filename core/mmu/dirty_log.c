/*
 * Ranged dirty-log reads and KVM_CLEAR_DIRTY_LOG's manual protection: a
 * harvest of part of a slot's bitmap that clears and write-protects it
 * (the whole-slot memslot_dirty_log_get() in memslot.c, on a range), one
 * that only clears it, one that only reads it, and the clear that
 * write-protects exactly the pages a client names (docs/MMU.md, "Manual
 * protection"). The bitmap and the slot objects belong to memslot.c, the
 * rmaps and sptes to mmu.c: this file only orders the steps.
 */
#include <errno.h>
#include <string.h>

#include "mmu_int.h"

/*
 * The logging slot with this id, with [first, first + num) checked
 * against it: first a multiple of 64 (whole bitmap words), num at least
 * one page, the range inside the slot. Caller holds slots_lock.
 */
static const struct memslot *find_range(struct mmu *mmu, uint32_t id,
					uint64_t first, uint64_t num, char *err,
					size_t errlen, int *ret)
{
	const struct memslots *slots = mmu_slots_locked(mmu);
	const struct memslot *s = NULL;

	for (unsigned i = 0; i < slots->nr; i++)
		if (slots->slots[i]->id == id)
			s = slots->slots[i];
	if (!s) {
		*ret = mmu_fail(err, errlen, -ENOENT,
				"memslot %u does not exist", id);
		return NULL;
	}
	if (!s->dirty_bitmap) {
		*ret = mmu_fail(err, errlen, -EINVAL,
				"memslot %u: dirty logging is off", id);
		return NULL;
	}
	if (first % 64) {
		*ret = mmu_fail(err, errlen, -EINVAL,
				"first-page: %llu is not a multiple of 64",
				(unsigned long long)first);
		return NULL;
	}
	if (first >= s->npages) {
		*ret = mmu_fail(
			err, errlen, -EINVAL,
			"first-page: %llu is not below the %llu pages of "
			"memslot %u",
			(unsigned long long)first,
			(unsigned long long)s->npages, id);
		return NULL;
	}
	if (num == 0 || num > s->npages - first) {
		*ret = mmu_fail(
			err, errlen, -EINVAL,
			"num-pages: %llu pages from page %llu do not fit "
			"in the %llu pages of memslot %u",
			(unsigned long long)num, (unsigned long long)first,
			(unsigned long long)s->npages, id);
		return NULL;
	}
	return s;
}

/*
 * wp=lockless (docs/MMU.md, "Lockless write protection"): clear the
 * bits of `bits` (page numbers base + b) from the slot's sptes without
 * mmu_lock, the rmaps walked inside a lockless walk section; a gfn whose
 * rmap keeps changing is protected under mmu_lock after the section.
 * Sections end every WP_SECTION_WORDS words, so a flush waiting for one
 * (before it frees shadow pages) waits for at most that many.
 */
#define WP_SECTION_WORDS 64

struct wp_batch {
	struct mmu *mmu;
	const struct memslot *slot;
	unsigned words; /* in this section */
	bool in_section;
	bool flush;
};

static void wp_section_end(struct wp_batch *b)
{
	if (b->in_section)
		mmu_wp_walk_end(b->mmu);
	b->in_section = false;
	b->words = 0;
}

static void wp_word_lockless(struct wp_batch *b, gfn_t base, uint64_t bits)
{
	if (!b->in_section) {
		mmu_wp_walk_begin(b->mmu);
		b->in_section = true;
	}
	bits = mmu_write_protect_bits_lockless(b->mmu, b->slot, base, bits,
					       &b->flush);
	if (bits) {
		/* The locked fallback: never inside the section (a flush
		 * under mmu_lock may be waiting for it). */
		wp_section_end(b);
		mmu_lock_acquire(b->mmu);
		while (bits) {
			gfn_t gfn = base + (unsigned)__builtin_ctzll(bits);

			bits &= bits - 1;
			b->flush |= mmu_write_protect_gfn_locked(
				b->mmu, b->slot, gfn, false);
		}
		mmu_lock_release(b->mmu);
		return;
	}
	if (++b->words == WP_SECTION_WORDS)
		wp_section_end(b);
}

static bool wp_lockless(struct mmu *mmu)
{
	return mmu_option_get(mmu, MMU_OPT_WP) == MMU_WP_LOCKLESS;
}

/* The bits of word w of a range of num pages that lie inside it. */
static uint64_t range_mask(uint64_t num, uint64_t w)
{
	uint64_t left = num - w * 64;

	return left >= 64 ? ~0ULL : (1ULL << left) - 1;
}

bool mmu_dirty_log_take_protect(struct mmu *mmu, const struct memslot *s,
				uint64_t first, uint64_t num, uint64_t *out)
{
	_Atomic uint64_t *words = s->dirty_bitmap + first / 64;
	uint64_t nwords = (num + 63) / 64, w;
	bool flush = false;

	if (wp_lockless(mmu)) {
		struct wp_batch b = { mmu, s, 0, false, false };

		for (w = 0; w < nwords; w++) {
			uint64_t mask = range_mask(num, w), bits;

			EXPLORE_POINT(EXPLORE_DIRTY, &words[w], 0);
			/* Acquire: pairs with the release fetch_or of every
			 * mark (docs/locking.md #8, #8a, #21): what the
			 * marker did before (the fault's rmap entry and
			 * writable spte) is seen by the walk below. */
			bits = atomic_fetch_and_explicit(&words[w], ~mask,
							 memory_order_acquire) &
			       mask;
			out[w] = bits;
			if (bits)
				wp_word_lockless(
					&b, s->base_gfn + first + w * 64, bits);
		}
		wp_section_end(&b);
		return b.flush;
	}
	mmu_lock_acquire(mmu);
	for (w = 0; w < nwords; w++) {
		uint64_t mask = range_mask(num, w), bits;

		EXPLORE_POINT(EXPLORE_DIRTY, &words[w], 0);
		/* Acquire: pairs with the release fetch_or of
		 * memslot_mark_dirty() (docs/locking.md #8a). */
		bits = atomic_fetch_and_explicit(&words[w], ~mask,
						 memory_order_acquire) &
		       mask;
		out[w] = bits;
		while (bits) {
			unsigned b = (unsigned)__builtin_ctzll(bits);

			bits &= bits - 1;
			flush |= mmu_write_protect_gfn_locked(
				mmu, s, s->base_gfn + first + w * 64 + b,
				false);
		}
	}
	mmu_lock_release(mmu);
	return flush;
}

int memslot_dirty_log_fetch(struct mmu *mmu, uint32_t id, uint64_t first,
			    uint64_t num, enum memslot_fetch mode,
			    uint64_t *out, char *err, size_t errlen)
{
	const struct memslot *s;
	_Atomic uint64_t *words;
	uint64_t nwords = (num + 63) / 64, w;
	bool flush = false;
	int ret = 0;

	mmu_mutex_lock(&mmu->slots_lock);
	s = find_range(mmu, id, first, num, err, errlen, &ret);
	if (!s)
		goto out;
	words = s->dirty_bitmap + first / 64;
	/* What the vCPUs pushed to their dirty rings, into the bitmap first
	 * (docs/MMU.md, "The dirty ring"), so a peek sees it too. */
	mmu_dirty_ring_to_bitmap_slots_locked(mmu);

	if (mode == MEMSLOT_FETCH_PEEK) {
		for (w = 0; w < nwords; w++)
			out[w] = atomic_load_explicit(&words[w],
						      memory_order_acquire) &
				 range_mask(num, w);
		goto out;
	}
	/*
	 * Clear each word before anything is write-protected: a store
	 * after the clear either faults on the protection and marks the bit
	 * again, or goes through a translation the flush below (or, in
	 * manual mode, the clear's flush) has not reached yet, and the
	 * caller copies the page after that flush (docs/MMU.md, "Dirty
	 * logging" and "Manual protection").
	 */
	if (mode == MEMSLOT_FETCH_CLEAR_PROTECT) {
		flush = mmu_dirty_log_take_protect(mmu, s, first, num, out);
		goto flush;
	}
	/* Clear only (manual protection): nothing is protected. */
	mmu_lock_acquire(mmu);
	s->meta->manual_dirty = true;
	for (w = 0; w < nwords; w++) {
		EXPLORE_POINT(EXPLORE_DIRTY, &words[w], 0);
		/* Acquire: pairs with the release fetch_or of
		 * memslot_mark_dirty() (docs/locking.md #8a). Only the
		 * range's bits: the pages after it stay to be reported. */
		out[w] = atomic_fetch_and_explicit(&words[w],
						   ~range_mask(num, w),
						   memory_order_acquire) &
			 range_mask(num, w);
	}
	mmu_lock_release(mmu);
flush:
	if (flush)
		mmu_flush_remote_tlbs(mmu);
out:
	mmu_mutex_unlock(&mmu->slots_lock);
	return ret;
}

int memslot_dirty_log_clear(struct mmu *mmu, uint32_t id, uint64_t first,
			    uint64_t num, const uint64_t *mask,
			    uint64_t *cleared, char *err, size_t errlen)
{
	const struct memslot *s;
	_Atomic uint64_t *words;
	uint64_t nwords = (num + 63) / 64, w, n = 0;
	bool flush = false;
	int ret = 0;

	mmu_mutex_lock(&mmu->slots_lock);
	s = find_range(mmu, id, first, num, err, errlen, &ret);
	if (!s)
		goto out;
	for (w = 0; w < nwords; w++) {
		uint64_t past = mask[w] & ~range_mask(num, w);

		if (past) {
			ret = mmu_fail(
				err, errlen, -EINVAL,
				"bitmap: page %llu is set, past the %llu "
				"pages of the range",
				(unsigned long long)(first + w * 64 +
						     __builtin_ctzll(past)),
				(unsigned long long)num);
			goto out;
		}
	}
	words = s->dirty_bitmap + first / 64;
	if (wp_lockless(mmu)) {
		struct wp_batch b = { mmu, s, 0, false, false };

		for (w = 0; w < nwords; w++) {
			uint64_t bits = mask[w];

			if (!bits)
				continue;
			/* Clear, then protect, as below. */
			EXPLORE_POINT(EXPLORE_DIRTY, &words[w], 0);
			atomic_fetch_and_explicit(&words[w], ~bits,
						  memory_order_acquire);
			n += (uint64_t)__builtin_popcountll(bits);
			wp_word_lockless(&b, s->base_gfn + first + w * 64,
					 bits);
		}
		wp_section_end(&b);
		flush = b.flush;
		goto flush;
	}
	mmu_lock_acquire(mmu);
	for (w = 0; w < nwords; w++) {
		uint64_t bits = mask[w];

		if (!bits)
			continue;
		/*
		 * Clear, then protect (docs/MMU.md, "Manual protection"): a
		 * bit set since the harvest stands for a store the caller's
		 * copy after this call will see; a store after the
		 * protection faults and sets it again. Protecting first
		 * would let such a fault's bit be cleared here while its
		 * writable spte stays: every later store would go unseen.
		 */
		EXPLORE_POINT(EXPLORE_DIRTY, &words[w], 0);
		atomic_fetch_and_explicit(&words[w], ~bits,
					  memory_order_acquire);
		n += (uint64_t)__builtin_popcountll(bits);
		while (bits) {
			unsigned b = (unsigned)__builtin_ctzll(bits);

			bits &= bits - 1;
			flush |= mmu_write_protect_gfn_locked(
				mmu, s, s->base_gfn + first + w * 64 + b,
				false);
		}
	}
	mmu_lock_release(mmu);
flush:
	/* Before the return, so the caller copies after every vCPU has
	 * dropped the writable translations (docs/locking.md #8). */
	if (flush)
		mmu_flush_remote_tlbs(mmu);
	if (cleared)
		*cleared = n;
out:
	mmu_mutex_unlock(&mmu->slots_lock);
	return ret;
}
