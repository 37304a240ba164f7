/*
 * Thin wrapper over liburcu's default (memb) flavour, called out of line
 * (no _LGPL_SOURCE) so ThreadSanitizer sees only our annotations; see
 * mmu_rcu.h. It owns no RCU-protected data itself.
 */
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
#ifdef MMUD_EXPLORE
	explore_rcu_read_lock();
#else
	rcu_read_lock();
#endif
}

void mmu_rcu_read_unlock(void)
{
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
#ifdef MMUD_EXPLORE
	explore_rcu_synchronize();
#else
	synchronize_rcu();
#endif
#ifdef MMUD_TSAN
	__tsan_acquire(&rcu_tsan_sync);
#endif
}
