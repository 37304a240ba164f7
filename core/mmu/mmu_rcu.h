/*
 * The one place mmud talks to liburcu. liburcu 0.13's inlined
 * _LGPL_SOURCE API is invisible to ThreadSanitizer (it reports races
 * inside liburcu and on every RCU-published object), so everything calls the
 * library's out-of-line functions through these wrappers; publication and
 * dereference are C11 release stores and acquire loads, and in TSan builds
 * a read-side unlock releases and a grace period acquires one shared sync
 * object, which is exactly the happens-before edge RCU provides.
 */
#ifndef MMUD_MMU_RCU_H
#define MMUD_MMU_RCU_H

#include <stdatomic.h>

void mmu_rcu_register_thread(void);
void mmu_rcu_unregister_thread(void);
void mmu_rcu_read_lock(void);
void mmu_rcu_read_unlock(void);
/* Returns after every read-side section that began before the call ended. */
void mmu_rcu_synchronize(void);
/*
 * memslots=rwlock (docs/MMU.md, "Switches"): from now on the read-side
 * sections are a process-wide reader-writer lock's read side and a grace
 * period is taking its write side once, the slots_lock design RCU
 * replaced. Readers are preferred, so nested sections never wait for a
 * writer. Called before any thread enters a section, once per process.
 */
void mmu_rcu_use_rwlock(void);

/*
 * Dereference: acquire, pairs with the release in mmu_rcu_assign() so the
 * pointee's initialisation is visible to the reader.
 */
#define mmu_rcu_dereference(p) atomic_load_explicit(&(p), memory_order_acquire)
/* Publish: release, pairs with the acquire in mmu_rcu_dereference(). */
#define mmu_rcu_assign(p, v) \
	atomic_store_explicit(&(p), (v), memory_order_release)

#endif
