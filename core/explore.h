/*
 * Schedule points for the interleaving explorer (tests/explorer,
 * docs/EXPLORER.md). The explorer builds core/mmu and core/vcpu a second
 * time with -DMMUD_EXPLORE and runs their real code on actor threads of
 * which exactly one runs at a time; at each point below the running actor
 * hands control back to the explorer's scheduler, which decides who runs
 * next. In every other build the macros are empty and the functions are
 * not declared, so the production code is the code the explorer tests.
 *
 * A point is placed where the order of two threads can change an
 * outcome: lock acquire and release, spte stores, guest page-table reads
 * on the fault path, request bits, mode changes, kicks, waits for a vCPU
 * to leave guest mode, RCU read-side sections and grace periods.
 */
#ifndef MMUD_EXPLORE_H
#define MMUD_EXPLORE_H

#ifdef MMUD_EXPLORE
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum explore_point {
	EXPLORE_SPTE_STORE, /* obj: the spte, val: the new value */
	EXPLORE_GPTE_READ, /* obj: the gpte the fault path re-reads */
	EXPLORE_FAULT_WALKED, /* the fault path walked the guest tables */
	EXPLORE_REQUEST, /* obj: the request word, val: the bit */
	EXPLORE_KICK, /* obj: the mode word the requester moves */
	EXPLORE_MODE, /* obj: the mode word, val: the new mode */
	EXPLORE_GUEST_INSN, /* a vCPU is about to run guest code */
	EXPLORE_DIRTY, /* obj: the bitmap word marked or harvested */
	EXPLORE_GEN, /* obj: the memslot generation, val: the new value */
	EXPLORE_RMAP_WALK, /* obj: an rmap entry a lockless walk reads */
};

/* Hand control to the scheduler; returns when it picks us again. */
void explore_yield(enum explore_point p, const void *obj, uint64_t val);
/* A mutex the scheduler knows: a thread never blocks in the kernel on a
 * lock whose holder the scheduler has paused. */
void explore_mutex_lock(pthread_mutex_t *m);
bool explore_mutex_trylock(pthread_mutex_t *m);
void explore_mutex_unlock(pthread_mutex_t *m);
/* Yields until done(arg) holds (the scheduler evaluates it). */
void explore_wait_until(bool (*done)(void *arg), void *arg);
/* The RCU flavour of an explored run: read-side sections per actor and
 * grace periods that wait for the sections open when they began. */
void explore_rcu_read_lock(void);
void explore_rcu_read_unlock(void);
void explore_rcu_synchronize(void);

#define EXPLORE_POINT(p, obj, val) \
	explore_yield((p), (const void *)(obj), (uint64_t)(val))
#else
#define EXPLORE_POINT(p, obj, val) ((void)0)
#endif

#endif
