/*
 * MMIO sptes (docs/MMU.md, "MMIO sptes" and "MMIO generation"): a
 * guest access to a gfn that
 * no memslot covers leaves behind a non-present spte (P = 0 and
 * MMU-present clear, so the software CPU takes a shadow fault and the
 * MMU's own walkers skip it) holding SPTE_MMIO, the gfn, the access the
 * guest walk granted and the low SPTE_MMIO_GEN_BITS bits of the memslot
 * generation. The next fault on it answers MMU_FAULT_MMIO from the spte
 * without walking the guest tables, as long as the stamp equals the
 * current generation and no memslot update is in progress. The stamp is
 * never taken from a generation with the update-in-progress bit, so an
 * spte made by a fault that decided "no slot" from the array being
 * replaced can never match afterwards. When the truncated stamp wraps,
 * every MMIO spte goes (a fast zap-all). This file owns the encoding and
 * those checks; the shadow pages are mmu.c's.
 */
#include "mmu_int.h"
#include "mmu_rcu.h"

static_assert((SPTE_MMIO_GFN_MASK >> PAGE_SHIFT) + 1 == MMU_GFN_LIMIT,
	      "an MMIO spte holds every guest gfn");

uint64_t mmu_mmio_spte_gen(uint64_t spte)
{
	return (spte >> SPTE_MMIO_GEN_SHIFT) & MMIO_GEN_MASK;
}

static gfn_t mmio_spte_gfn(uint64_t spte)
{
	return (spte & SPTE_MMIO_GFN_MASK) >> PAGE_SHIFT;
}

static unsigned mmio_spte_access(uint64_t spte)
{
	return (unsigned)(spte >> SPTE_MMIO_ACC_SHIFT) & MMU_ACC_ALL;
}

/*
 * mark_mmio_spte, under mmu_lock inside the fault's read-side section.
 * A present spte is dropped first (CVE-2026-23401: the host can turn a
 * gpte from RAM to MMIO without a trap, and overwriting would leak the
 * rmap entry).
 */
void mmu_mmio_set_spte_locked(struct mmu *mmu, struct mmu_page *sp,
			      _Atomic uint64_t *sptep, gfn_t gfn, unsigned acc,
			      bool *flush)
{
	uint64_t old = atomic_load_explicit(sptep, memory_order_relaxed);
	uint64_t gen = memslot_generation(mmu);

	mmu_assert_locked(mmu);
	if (is_spte_present(old)) {
		mmu_zap_pte_locked(mmu, sp, sptep);
		*flush = true;
	}
	/* Made while an update is in flight: never cache it. */
	if (gen & MEMSLOT_GEN_UPDATE_IN_PROGRESS) {
		mmu_spte_set(sptep, 0);
		return;
	}
	mmu_spte_set(sptep,
		     SPTE_MMIO | ((gfn << PAGE_SHIFT) & SPTE_MMIO_GFN_MASK) |
			     ((uint64_t)acc << SPTE_MMIO_ACC_SHIFT) |
			     ((gen & MMIO_GEN_MASK) << SPTE_MMIO_GEN_SHIFT));
	if (!sp->role.direct)
		sp->gfns[sptep - sp->spt] = gfn;
	mmu_stat_add(mmu, MMU_STAT_MMIO_SPTES, 1);
}

/*
 * Would the guest walk allow access, given the access it granted when
 * the spte was made? Only the plain cases: a supervisor access to a
 * user page (SMEP / SMAP) or a supervisor write under CR0.WP=0 takes the
 * full walk, which decides exactly.
 */
static bool access_ok(unsigned acc, unsigned access,
		      const struct mmu_cpu_state *cpu)
{
	bool user = cpu->cpl == 3 && !(access & MMU_ACCESS_IMPLICIT);

	if ((access & MMU_ACCESS_WRITE) && !(acc & MMU_ACC_WRITE))
		return false;
	if ((access & MMU_ACCESS_FETCH) && !(acc & MMU_ACC_EXEC))
		return false;
	return user ? (acc & MMU_ACC_USER) != 0 : !(acc & MMU_ACC_USER);
}

bool mmu_mmio_spte_answer(struct mmu *mmu, uint64_t spte, uint64_t gen,
			  const struct mmu_cpu_state *cpu, gva_t gva,
			  unsigned access, struct mmu_fault_info *info)
{
	if ((gen & MEMSLOT_GEN_UPDATE_IN_PROGRESS) || !is_mmio_spte(spte) ||
	    mmu_mmio_spte_gen(spte) != (gen & MMIO_GEN_MASK) ||
	    !access_ok(mmio_spte_access(spte), access, cpu))
		return false;
	info->gpa = (mmio_spte_gfn(spte) << PAGE_SHIFT) |
		    (gva & (PAGE_SIZE - 1));
	info->error_code = 0;
	mmu_stat_add(mmu, MMU_STAT_MMIO_HITS, 1);
	return true;
}

/*
 * handle_mmio_page_fault for a VM whose vCPU interface has no lockless
 * walk mode (struct mmu_vcpu_ops, lockless_begin: the unit tests'
 * doubles): the shadow walk to gva's level-1 spte under mmu_lock, if it
 * is free, then the generation check. With the mode, mmu.c's fast_paths()
 * walks in READING_SHADOW_PAGE_TABLES instead (docs/MMU.md, "MMIO
 * sptes"). Inside the fault's read-side section. True if answered.
 */
bool mmu_mmio_fast(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu,
		   gva_t gva, unsigned access, struct mmu_fault_info *info)
{
	struct mmu *mmu = v->mmu;
	uint64_t gen = memslot_generation(mmu), spte = 0;
	struct mmu_page *sp;
	bool hit = false;
	int level;

	if (gen & MEMSLOT_GEN_UPDATE_IN_PROGRESS)
		return false;
	/* An optimisation only: when mmu_lock is busy, walk the guest
	 * tables first as any fault does (they need no lock). */
	if (!mmu_lock_try_acquire(mmu))
		return false;
	sp = v->root;
	if (!sp || mmu_page_is_obsolete(mmu, sp) ||
	    v->root_gfn != ((cpu->cr3 & ((1ULL << MMU_GUEST_MAXPHYADDR) - 1)) >>
			    PAGE_SHIFT))
		goto out;
	for (level = MMU_ROOT_LEVEL;; level--) {
		spte = atomic_load_explicit(&sp->spt[spte_index(gva, level)],
					    memory_order_relaxed);
		if (level == 1 || !is_spte_present(spte) ||
		    is_last_spte(spte, level))
			break;
		sp = spte_to_child_page(spte);
	}
	if (level == 1)
		hit = mmu_mmio_spte_answer(mmu, spte, gen, cpu, gva, access,
					   info);
out:
	mmu_lock_release(mmu);
	return hit;
}

/*
 * mmio-wrap=zap-mmio (docs/MMU.md, "Switches"): clear every MMIO spte
 * and keep the rest. Under mmu_lock, where MMIO sptes are installed, so
 * none of an old stamp survives; an MMIO spte maps nothing and no TLB
 * holds it, so no flush is owed. O(shadow pages x 512).
 */
static void zap_mmio_sptes(struct mmu *mmu)
{
	struct list_node *n;

	mmu_rcu_read_lock();
	mmu_lock_acquire(mmu);
	for (n = mmu->active_pages.next; n != &mmu->active_pages; n = n->next) {
		struct mmu_page *sp = container_of(n, struct mmu_page, link);

		for (unsigned int i = 0; i < MMU_PT_ENTRIES; i++)
			if (is_mmio_spte(atomic_load_explicit(
				    &sp->spt[i], memory_order_relaxed)))
				mmu_spte_set(&sp->spt[i], 0);
	}
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
}

/*
 * kvm_mmu_invalidate_mmio_sptes: called by publish() with slots_lock
 * held before it stores gen, while the update-in-progress bit still
 * makes the fast path decline. When the stamp bits wrap to zero an old
 * stamp could match again: make every page obsolete (no current root
 * reaches an old MMIO spte any more) and free them, the slow way with
 * zap-all=slow; or, with mmio-wrap=zap-mmio, clear the MMIO sptes alone.
 */
void mmu_memslots_updated(struct mmu *mmu, uint64_t gen)
{
	if (gen & MMIO_GEN_MASK)
		return;
	if (mmu_option_get(mmu, MMU_OPT_MMIO_WRAP) == MMU_MMIO_WRAP_ZAP_MMIO) {
		zap_mmio_sptes(mmu);
		return;
	}
	if (mmu_option_get(mmu, MMU_OPT_ZAP_ALL) == MMU_ZAP_ALL_SLOW) {
		mmu_zap_all(mmu);
		return;
	}
	mmu_zap_all_fast(mmu);
	mmu_zap_obsolete_pages(mmu);
}
