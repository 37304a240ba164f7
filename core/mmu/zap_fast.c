/*
 * Fast zap-all (docs/MMU.md, "Fast zap-all and obsolete pages"). The
 * caller's part is O(1): bump
 * the VM's 64-bit mmu_valid_gen under mmu_lock, which makes every shadow
 * page obsolete at once (hash lookups skip them, faults on an obsolete
 * root retry), and ask every vCPU, with wait and while still holding the
 * lock, to drop its obsolete root before it next enters guest mode. KVM
 * toggles a one-byte generation and therefore has to free the obsolete
 * pages before it returns; with 64 bits an obsolete page can never look
 * valid again, so they may stay linked among themselves (no current page
 * ever links one) until mmu_zap_obsolete_pages() takes them off the
 * oldest end of the active list in batches, breaking mmu_lock between
 * batches, and frees them after one flush with wait. Roots still pinned
 * are freed by their own vCPU. This file owns only that sequence; the
 * pages, lists and zap primitives are mmu.c's.
 */
#include "mmu_int.h"
#include "mmu_rcu.h"

/* Pages unlinked per mmu_lock hold (KVM's BATCH_ZAP_PAGES is 10; our
 * pages are cheaper to unlink than the flush is to repeat). */
#define ZAP_BATCH 64

void mmu_zap_all_fast(struct mmu *mmu)
{
	mmu_lock_acquire(mmu);
	mmu->mmu_valid_gen++;
	mmu_stat_add(mmu, MMU_STAT_FAST_ZAPS, 1);
	/*
	 * Under the lock, as KVM does: a vCPU cannot drop its root and load
	 * a new one between the bump and the request, and with wait none is
	 * still in guest mode on a root it loaded before the bump when we
	 * return. The request RMW orders the bump before each vCPU's mode
	 * read (docs/locking.md #1).
	 */
	if (mmu->ops)
		mmu->ops->make_all_request(mmu->opaque,
					   MMU_REQ_FREE_OBSOLETE_ROOTS, true);
	mmu_lock_release(mmu);
}

/* The oldest page, if it is obsolete. */
static struct mmu_page *oldest_obsolete(struct mmu *mmu)
{
	struct mmu_page *sp;

	if (list_empty(&mmu->active_pages))
		return NULL;
	sp = container_of(mmu->active_pages.prev, struct mmu_page, link);
	return mmu_page_is_obsolete(mmu, sp) ? sp : NULL;
}

uint64_t mmu_zap_obsolete_pages(struct mmu *mmu)
{
	struct list_node invalid, *n;
	uint64_t freed = 0;
	bool done = false;

	list_init(&invalid);
	while (!done) {
		unsigned batch;

		/* Slots are looked up to unaccount shadowed gfns. */
		mmu_rcu_read_lock();
		mmu_lock_acquire(mmu);
		/*
		 * New pages go in at the head, so the obsolete ones are at
		 * the tail: stop at the first current page. prepare_zap only
		 * unlinks obsolete pages from obsolete pages (no current page
		 * links one), and a pinned root goes to invalid_roots for its
		 * vCPU to free.
		 */
		for (batch = 0; batch < ZAP_BATCH; batch++) {
			struct mmu_page *sp = oldest_obsolete(mmu);

			if (!sp) {
				done = true;
				break;
			}
			mmu_prepare_zap_locked(mmu, sp, &invalid);
		}
		if (done) {
			/*
			 * One flush with wait for everything unlinked
			 * (docs/MMU.md, "Prepare and commit"); then no vCPU can reach the pages and only this
			 * thread knows them, so they are freed after the lock
			 * is dropped.
			 */
			if (!list_empty(&invalid))
				mmu_flush_remote_tlbs(mmu);
			for (n = invalid.next; n != &invalid; n = n->next)
				freed++;
			mmu->nr_pages -= freed;
		}
		mmu_lock_release(mmu);
		mmu_rcu_read_unlock();
	}
	while (!list_empty(&invalid)) {
		struct mmu_page *sp =
			container_of(invalid.next, struct mmu_page, link);

		list_del(&sp->link);
		MMUD_ASSERT(sp->nr_present == 0 && !sp->parent_ptes.val &&
			    !sp->root_count);
		free(sp);
	}
	mmu_stat_add(mmu, MMU_STAT_OBSOLETE_FREED, (int64_t)freed);
	return freed;
}
