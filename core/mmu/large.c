/*
 * Large sptes (docs/MMU.md, "Large sptes"): where the guest maps 2 MiB or
 * 1 GiB, one memslot covers the whole frame, the frame's host address is
 * aligned to its size (core/vm.c aligns guest RAM), no gfn inside is
 * write-tracked and the slot is not dirty-logged, the fault installs one
 * PS spte at level 2 or 3 instead of splitting the guest page into 4 KiB
 * sptes. Per slot and level, lpage_disallow counts the write-tracked gfns
 * of each frame (KVM's disallow_lpage); a gfn that becomes write-tracked
 * zaps the large sptes over it, and dirty logging zaps every large spte
 * of its slot, so each page is logged by a 4 KiB spte. This file owns the
 * counts and those decisions; rmaps and shadow pages are mmu.c's.
 */
#include <errno.h>

#include "mmu_int.h"
#include "mmu_rcu.h"

static uint64_t frame_pages(int level)
{
	return 1ULL << (9 * (level - 1));
}

static uint32_t *disallow(const struct memslot *slot, gfn_t gfn, int level)
{
	unsigned shift = 9 * (unsigned)(level - 1);

	return &slot->meta->lpage_disallow[level - 2][(gfn >> shift) -
						      (slot->base_gfn >> shift)];
}

int lpage_meta_alloc(struct memslot_meta *m, uint64_t npages)
{
	int level;

	for (level = 2; level <= MMU_NR_LEAF_LEVELS; level++) {
		/* Indexed as the rmap heads of the level (memslot.c). */
		uint64_t n = ((npages - 1) >> (9 * (level - 1))) + 2;

		m->lpage_disallow[level - 2] =
			calloc(n, sizeof(*m->lpage_disallow[0]));
		if (!m->lpage_disallow[level - 2])
			return -ENOMEM;
	}
	return 0;
}

void lpage_meta_free(struct memslot_meta *m)
{
	int level;

	for (level = 2; level <= MMU_NR_LEAF_LEVELS; level++)
		free(m->lpage_disallow[level - 2]);
}

/*
 * Write tracking of gfn changes by delta (account_shadowed and
 * unaccount_shadowed): the per-gfn count and its frames' counts. A gfn
 * that becomes tracked may not stay under a large spte: zap them (the
 * caller flushes before mmu_lock goes; flush may be NULL for delta < 0).
 */
void mmu_track_gfn_locked(struct mmu *mmu, const struct memslot *slot,
			  gfn_t gfn, int delta, bool *flush)
{
	int level;

	mmu_assert_locked(mmu);
	if (delta > 0)
		mmu_touch_locked(mmu, slot, gfn, 1);
	slot->meta->write_track[gfn - slot->base_gfn] =
		(uint16_t)(slot->meta->write_track[gfn - slot->base_gfn] +
			   delta);
	for (level = 2; level <= MMU_NR_LEAF_LEVELS; level++) {
		uint32_t *c = disallow(slot, gfn, level);

		MMUD_ASSERT(delta > 0 || *c > 0);
		*c = (uint32_t)((int64_t)*c + delta);
		if (delta > 0) {
			struct pte_list_head *h =
				mmu_rmap_head(slot, gfn, level);
			_Atomic uint64_t *sptep;

			while ((sptep = pte_list_first(h))) {
				/* Write protection by zapping: counted as one
				 * when the spte was writable. */
				if (atomic_load_explicit(sptep,
							 memory_order_relaxed) &
				    SPTE_W)
					mmu_stat_add(mmu,
						     MMU_STAT_WRITE_PROTECTS,
						     1);
				mmu_drop_spte_locked(mmu, sptep);
				*flush = true;
			}
		}
	}
}

/* kvm_mmu_hugepage_adjust: the largest level <= guest_level at which
 * the frame around gfn may be one spte; 1 if none. */
int mmu_large_level_locked(struct mmu *mmu, const struct memslot *slot,
			   gfn_t gfn, int guest_level)
{
	int level;

	mmu_assert_locked(mmu);
	if (slot->flags & (MEMSLOT_LOG_DIRTY | MEMSLOT_INVALID))
		return 1;
	for (level = guest_level; level > 1; level--) {
		uint64_t n = frame_pages(level);
		gfn_t frame = gfn & ~(n - 1);

		if (frame < slot->base_gfn ||
		    frame + n > slot->base_gfn + slot->npages)
			continue;
		if (memslot_gfn_to_hva(slot, frame) & (n * PAGE_SIZE - 1))
			continue;
		if (*disallow(slot, frame, level))
			continue;
		return level;
	}
	return 1;
}

/*
 * Install the large leaf for gfn's frame at *sptep of sp (level 2 or 3).
 * A link to a child table there is dropped first (KVM's drop_large_spte
 * counterpart: the child's parent entry and unsync bit go with it).
 */
enum mmu_fault_result
mmu_set_large_spte_locked(struct mmu_vcpu *v, struct mmu_page *sp,
			  _Atomic uint64_t *sptep, gfn_t gfn,
			  const struct memslot *slot, unsigned acc, bool *flush)
{
	struct mmu *mmu = v->mmu;
	int level = sp->role.level;
	gfn_t frame = gfn & ~(frame_pages(level) - 1);
	hva_t hva = memslot_gfn_to_hva(slot, frame);
	uint64_t old = atomic_load_explicit(sptep, memory_order_relaxed);
	uint64_t new = SPTE_P | SPTE_MMU_PRESENT | SPTE_A | SPTE_PS | hva;
	bool host_writable = !(slot->flags & MEMSLOT_READONLY);
	unsigned i = (unsigned)(sptep - sp->spt);

	mmu_assert_locked(mmu);
	MMUD_ASSERT(level > 1 && !(slot->flags & MEMSLOT_LOG_DIRTY));
	if (acc & MMU_ACC_USER)
		new |= SPTE_U;
	if (!(acc & MMU_ACC_EXEC))
		new |= SPTE_NX;
	if (host_writable)
		new |= SPTE_HOST_WRITABLE;
	/* No gfn inside is tracked (lpage_disallow is zero) and the slot
	 * is not logged: nothing to unsync, nothing to mark dirty. */
	if ((acc & MMU_ACC_WRITE) && host_writable)
		new |= SPTE_W | SPTE_MMU_WRITABLE | SPTE_D;
	if (is_spte_present(old)) {
		if (!is_last_spte(old, level) || spte_to_hva(old) != hva ||
		    mmu_page_gfn_at(sp, i) != frame) {
			mmu_zap_pte_locked(mmu, sp, sptep);
			*flush = true;
			old = 0;
		} else if ((old & SPTE_W) && !(new &SPTE_W)) {
			*flush = true;
		}
	}
	if (!sp->role.direct)
		sp->gfns[i] = frame;
	mmu_spte_set(sptep, new);
	if (!is_spte_present(old)) {
		/* Every chunk of the frame: a zap of part of it finds the
		 * head from any gfn inside (docs/MMU.md, "Touched chunks"). */
		mmu_touch_locked(mmu, slot, frame, frame_pages(level));
		mmu_pte_list_add(v, mmu_rmap_head(slot, frame, level), sptep);
		sp->nr_present++;
		mmu_stat_add(mmu, MMU_STAT_SPTES, 1);
		mmu_stat_add(mmu, MMU_STAT_LARGE_SPTES, 1);
	}
	return MMU_FAULT_FIXED;
}

/* Dirty logging starts: every large spte of the slot goes, then the
 * caller write-protects the rest (docs/MMU.md, "Turning dirty logging
 * on"). */
void mmu_zap_large_slot(struct mmu *mmu, const struct memslot *slot)
{
	bool flush = false;
	int level;

	mmu_rcu_read_lock();
	mmu_lock_acquire(mmu);
	for (level = 2; level <= MMU_NR_LEAF_LEVELS; level++) {
		uint64_t n = frame_pages(level);
		gfn_t gfn;

		gfn_t end = slot->base_gfn + slot->npages;

		/* Frames with no touched chunk have no large spte
		 * (docs/MMU.md, "Touched chunks"). */
		for (gfn = mmu_next_touched(slot, slot->base_gfn, end);
		     gfn < end;
		     gfn = mmu_next_touched(slot, (gfn & ~(n - 1)) + n, end)) {
			struct pte_list_head *h =
				mmu_rmap_head(slot, gfn, level);
			_Atomic uint64_t *sptep;

			while ((sptep = pte_list_first(h))) {
				mmu_drop_spte_locked(mmu, sptep);
				flush = true;
			}
		}
	}
	if (flush)
		mmu_flush_remote_tlbs(mmu);
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
}
