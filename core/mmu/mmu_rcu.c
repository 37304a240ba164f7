/*
 * Thin wrapper over liburcu's default (memb) flavour, called out of line
 * (no _LGPL_SOURCE) so ThreadSanitizer sees only our annotations; see
 * mmu_rcu.h. It owns no RCU-protected data itself.
 */
#include <pthread.h>
#include <stdbool.h>
#include <urcu.h>

#include "explore.h"
#include "mmu_rcu.h"

#ifdef MMUD_TSAN
#include <sanitizer/tsan_interface.h>
/*
 * The happens-before edge of a grace period: every read-side unlock
 * releases it, every synchronize acquires it after the grace period, so
 * TSan orders a reader's loads before the updater's free.
 */
static char rcu_tsan_sync;
#endif

/*
 * memslots=rwlock: set once before any thread enters a section (so no
 * section straddles the switch) and read plainly after; the thread
 * creation that follows orders the store before every reader.
 */
static bool use_rwlock;
/* Reader-preferring, so a section nested in another never blocks behind
 * a waiting writer. (init: mmu_rcu_use_rwlock) */
static pthread_rwlock_t slots_rw;

void mmu_rcu_use_rwlock(void)
{
	pthread_rwlockattr_t a;

	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_READER_NP);
	pthread_rwlock_init(&slots_rw, &a);
	pthread_rwlockattr_destroy(&a);
	use_rwlock = true;
}

void mmu_rcu_register_thread(void)
{
	rcu_register_thread();
}

void mmu_rcu_unregister_thread(void)
{
	rcu_unregister_thread();
}

void mmu_rcu_read_lock(void)
{
	if (use_rwlock) {
		pthread_rwlock_rdlock(&slots_rw);
		return;
	}
#ifdef MMUD_EXPLORE
	explore_rcu_read_lock();
#else
	rcu_read_lock();
#endif
}

void mmu_rcu_read_unlock(void)
{
	if (use_rwlock) {
		pthread_rwlock_unlock(&slots_rw);
		return;
	}
#ifdef MMUD_TSAN
	__tsan_release(&rcu_tsan_sync);
#endif
#ifdef MMUD_EXPLORE
	explore_rcu_read_unlock();
#else
	rcu_read_unlock();
#endif
}

void mmu_rcu_synchronize(void)
{
	if (use_rwlock) {
		/* Every reader that holds it now has left when we get it. */
		pthread_rwlock_wrlock(&slots_rw);
		pthread_rwlock_unlock(&slots_rw);
		return;
	}
#ifdef MMUD_EXPLORE
	explore_rcu_synchronize();
#else
	synchronize_rcu();
#endif
#ifdef MMUD_TSAN
	__tsan_acquire(&rcu_tsan_sync);
#endif
}
