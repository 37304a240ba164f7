/*
 * core/vcpu's internals, shared by its two files: vcpu.c (the thread and
 * its run loop, exits, creation) and request.c (the mode protocol:
 * entering and leaving guest mode, requests, kicks and waits). Not an
 * API: the rest of mmud uses vcpu.h.
 */
#ifndef MMUD_VCPU_INT_H
#define MMUD_VCPU_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vcpu.h"
#include "x86/x86.h"

/* Guest writes to tracked pages one instruction may make (several for
 * event delivery); more than this and the MMU zaps everything. */
#define MAX_TRACKED_WRITES 32

/*
 * Legend: (c) constant after creation; (v) owned by the vCPU thread, or
 * by a thread that holds wake_lock while the vCPU is parked (vcpu_reset:
 * a parked vCPU cannot leave block() without wake_lock); (a) atomic,
 * with the order and pairing at each use; (w) under wake_lock.
 */
struct vcpu {
	struct vcpu_set *set; /* (c) */
	unsigned int index; /* (c) */
	struct mmu *mmu; /* (c) */
	const struct vcpu_ops *ops; /* (c) */
	void *opaque; /* (c) */
	gva_t entry; /* (c) the boot entry point, for vcpu_reset() */
	pthread_t thread; /* (c) once started */
	bool started; /* (c) once started, read by vcpu_destroy */

	struct x86_cpu *cpu; /* (v) */
	struct mmu_vcpu *mmu_vcpu; /* (v) */
	const _Atomic uint64_t *root; /* (v) the root the CPU walks */
	unsigned int slot_hint; /* (v) */
	bool halted; /* (v) stopped for good, waiting for STOP */
	unsigned int nr_tracked; /* (v) */
	struct {
		gpa_t gpa;
		unsigned int len;
	} tracked[MAX_TRACKED_WRITES]; /* (v) */
	bool tracked_overflow; /* (v) */
	/* (v) The guest TSC's offset vcpu_set_tsc_offset() gave, applied
	 * again at vcpu_reset() (when has_tsc_offset). */
	int64_t tsc_offset;
	bool has_tsc_offset;
	/* (v) The retired-instruction count at which the current slice
	 * ends (VCPU_SLICE_INSNS), across however many runs it takes. */
	uint64_t slice_end;
	/* (v) the dirty ring went soft-full and the instruction whose fault
	 * filled it has been let run once (vcpu_run_once()). */
	bool ring_grace;

	/*
	 * (a) Written by this vCPU only, except IN_GUEST_MODE ->
	 * EXITING_GUEST_MODE by a requester's seq_cst cmpxchg. The vCPU's
	 * store of IN_GUEST_MODE is followed by a seq_cst RMW of requests that pairs
	 * with that cmpxchg and with the requester's seq_cst fetch_or of
	 * the request bit (docs/locking.md #1); leaving guest mode is a
	 * release store that pairs with the waiter's acquire load.
	 */
	_Atomic int mode;
	/* (a) Set by anyone with a seq_cst fetch_or; taken by the vCPU with
	 * an acquire exchange (pairs with that fetch_or: what the requester
	 * wrote before is visible to the handler). */
	_Atomic uint64_t requests;
	/* (a) Set (relaxed) by the requester whose cmpxchg moved the vCPU to
	 * EXITING; polled by the CPU at each basic block; cleared by the
	 * vCPU while OUTSIDE_GUEST_MODE, before it stores IN_GUEST_MODE. */
	_Atomic unsigned int kick;
	/* (a) Bumped (seq_cst RMW) each time the vCPU leaves guest mode,
	 * after its OUTSIDE_GUEST_MODE store; a waiter that saw it unchanged
	 * knows the vCPU has not left since. Its acquire loads pair with the
	 * RMW's release half. */
	_Atomic uint64_t exits;
	/*
	 * (a) Requesters asleep (or about to sleep) until this vCPU leaves
	 * guest mode. A waiter increments it (seq_cst RMW) and then reads
	 * exits; the vCPU bumps exits (seq_cst RMW) and then reads this
	 * (seq_cst): of the two, at least one sees the other's write, so
	 * either the waiter does not sleep or the vCPU wakes it.
	 */
	_Atomic unsigned int exit_waiters;
	/* (a) The futex word waiters sleep on: bumped (release) by the vCPU
	 * before FUTEX_WAKE, so a waiter whose snapshot is stale does not
	 * sleep (FUTEX_WAIT compares it in the kernel). */
	_Atomic uint32_t exit_futex;
	/* (a) Paused by vcpu_set_pause(); read by the vCPU after
	 * VCPU_REQ_PAUSE (the request's fetch_or orders it). */
	_Atomic bool paused;
	/*
	 * (a) Pending external interrupts, one bit per vector, and a
	 * latched NMI (docs/locking.md #15): set by any thread with a
	 * seq_cst RMW before its VCPU_REQ_EVENT request; read by the vCPU
	 * after its acquire exchange of requests, and cleared by it alone
	 * (the acknowledge, a seq_cst RMW; reset, parked).
	 */
	_Atomic uint64_t irr[4];
	_Atomic bool nmi;
	/* (a) An INIT (vcpu_raise_init()), as nmi (docs/locking.md #15);
	 * taken by the vCPU, which then waits for a SIPI: wait_sipi, set
	 * by it and cleared by vcpu_reset() (parked), relaxed for reports,
	 * and read by other vCPUs deciding whether the VM halted for good
	 * under set->idle_lock. */
	_Atomic bool init;
	_Atomic bool wait_sipi;
	/* (i) Under set->idle_lock: sleeping with nothing to take (HLT or
	 * wait-for-SIPI), and RFLAGS.IF when it went to sleep. */
	bool idle;
	bool idle_if;
	/* (a) Relaxed: sleeping in HLT, for the control plane. */
	_Atomic bool in_hlt;

	/* (a) VCPU_STATE_HALTED/CRASHED once stopped for good, else
	 * RUNNING; relaxed: a report for the control plane, orders nothing. */
	_Atomic int stop_state;
	/* (a) gettid() of the thread, stored before vcpu_start() returns. */
	_Atomic int tid;

	pthread_mutex_t wake_lock;
	pthread_cond_t wake_cond;
	bool sleeping; /* (w) */
	/* (w) Blocked in block() until the next request; with parked_cond,
	 * broadcast on every change, and on tid/exited. */
	bool parked;
	bool exited; /* (w) the thread has left its loop for good */
	pthread_cond_t parked_cond;

	/*
	 * The dirty limit (vcpu_set_dirty_limit(); docs/MIGRATION.md,
	 * "Dirty limit"). dl_rate (pages/s, 0: off) and dl_period (ns):
	 * (a) relaxed, stored by the control plane, read by the vCPU at
	 * each write fault; a new value applies from the next fault, so
	 * nothing orders them. The bucket is the vCPU's own: dl_tokens
	 * (pages it may still dirty), dl_last (when they were last
	 * refilled), dl_until (host time before which it may not enter
	 * guest mode), dl_win_start and dl_win_pages (the window its
	 * current rate is measured over): (v).
	 */
	_Atomic uint64_t dl_rate, dl_period;
	double dl_tokens;
	uint64_t dl_last, dl_until, dl_win_start, dl_win_pages;

	/* (a) relaxed counters, written by the vCPU, read by anyone. */
	struct {
		_Atomic uint64_t insns, exits, shadow_faults, pio_exits,
			pause_exits, mmio_accesses, halts, irqs, nmis,
			guest_pf_injected, emulated_writes, requests;
		/* The dirty limit: write faults counted, host ns spent
		 * throttled, its longest single sleep, and the rate of the
		 * last full window (pages/s). */
		_Atomic uint64_t dl_pages, dl_sleep_ns, dl_max_sleep_ns,
			dl_cur_rate;
		/* Stored before requests' release increment, read after
		 * its acquire load (vcpu_stats_get). */
		_Atomic uint64_t request_insns;
	} st;
};

/* Legend: (c) constant after creation. vcpus[i] is set by vcpu_create()
 * before the vCPU or anything that could make requests of it runs, and
 * cleared by vcpu_destroy() after it stopped. */
struct vcpu_set {
	unsigned int n; /* (c) */
	struct vcpu *_Atomic *vcpus; /* (c) slots, see above */
	/* (a) Wake sources registered (vcpu_set_add_wake_source()); read
	 * by a halting vCPU with an acquire load. */
	_Atomic unsigned int wake_sources;
	/* Taken by a vCPU going idle or leaving it, never with wake_lock
	 * held, and outside the locks the VM's callbacks take under it
	 * (lapic->lock, device locks; docs/locking.md, "`set->idle_lock`
	 * (pthread mutex, one per VM)"): nr_idle counts the vCPUs idle, and
	 * halted_for_good says the VM was reported halted (vcpu.h,
	 * VCPU_STOP_HALTED) until vcpu_reset(). */
	pthread_mutex_t idle_lock;
	unsigned int nr_idle; /* (i) */
	bool halted_for_good; /* (i) */
};

static inline void vcpu_stat_inc(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/*
 * vcpu.c: one pass of the run loop:
 * requests, root load, guest mode for at most max_insns instructions (0:
 * the rest of the slice), exit handling. The vCPU thread calls it in a
 * loop, inside a read-side section, after x86_set_kick(); the explorer
 * (tests/explorer) calls it one instruction at a time. False when the
 * thread must end (VCPU_REQ_STOP).
 */
bool vcpu_run_once(struct vcpu *v, uint64_t max_insns);

/* request.c: the mode protocol (docs/locking.md #1-#3a). */

/*
 * Enters guest mode: clears the kick, stores IN_GUEST_MODE and checks for
 * requests with the entry's full barrier. False (and back outside guest
 * mode, as a departure) when a request is pending: handle it first.
 */
bool vcpu_enter_guest_mode(struct vcpu *v);
/* Leaves guest mode, and wakes requesters waiting for that. */
void vcpu_leave_guest_mode(struct vcpu *v);

#endif
