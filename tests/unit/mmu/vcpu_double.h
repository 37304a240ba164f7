/*
 * A threaded test double of core/vcpu for the MMU's concurrency tests. It
 * implements struct mmu_vcpu_ops with KVM's request/mode protocol
 * (docs/MMU.md, "Requests, modes and the flush with wait"), and its threads really behave as vCPUs in guest mode:
 * they drop the RCU read side, translate through the shadow tables
 * without locks (with a small soft TLB), dereference the host addresses
 * they get, and leave guest mode only when a request or kick tells them
 * to (or after a bounded number of accesses, like a timer tick).
 */
#ifndef MMUD_TESTS_VCPU_DOUBLE_H
#define MMUD_TESTS_VCPU_DOUBLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mmu.h"

#define TV_MAX_VCPUS 4
#define TV_TLB_SIZE 16
#define TV_MAX_PAGES 64

struct tvm;

/*
 * Legend: (c) constant after tvm_start, (v) the vCPU thread,
 * (a) atomic, order given at the field.
 */
struct tvcpu {
	struct tvm *vm; /* (c) */
	unsigned index; /* (c) */
	pthread_t thread; /* (c) */
	struct mmu_vcpu *mmu; /* (v) */
	/* (a) only the vCPU writes it, except the kicker's IN_GUEST ->
	 * EXITING compare-exchange. The vCPU's store of IN_GUEST_MODE is
	 * followed by a seq_cst fetch_or(requests, 0) that pairs with the
	 * seq_cst fetch_or in kick() made before it reads this mode (after
	 * setting a request bit, or after the MMU unlinked sptes). Release
	 * stores of OUTSIDE_GUEST_MODE pair with the waiter's acquires. */
	_Atomic int mode;
	/* (a) request bits: seq_cst fetch_or by requesters and by the vCPU
	 * on entry (the pair above), seq_cst exchange when it handles
	 * them. */
	_Atomic uint64_t requests;
	/* (a) bumped with release by the vCPU every time it leaves guest
	 * mode; a waiting requester acquires it. */
	_Atomic uint64_t exits;
	/* (a) relaxed progress counters for the test, read by main. */
	_Atomic uint64_t entries, accesses, mmio, emulated, faults;
	/* (a) relaxed: set when the vCPU saw something a correct MMU never
	 * produces (a guest #PF on mapped memory, an error). */
	_Atomic int failed;
	/* Soft TLB. (v) */
	struct {
		gva_t page; /* gva page + 1; 0 = empty */
		hva_t hva;
		bool writable;
	} tlb[TV_TLB_SIZE];
	uint64_t rng; /* (v) */
	bool pt_pending; /* (v) the faulting store is a page-table store */
	unsigned pt_next; /* (v) which of pt_vals to store next */
};

struct tvm {
	struct mmu *mmu; /* (c) */
	unsigned nr; /* (c) */
	struct mmu_cpu_state cpu; /* (c) */
	/* (c) the gvas the vCPUs touch and whether they may write them. */
	gva_t gvas[TV_MAX_PAGES];
	bool writes[TV_MAX_PAGES];
	unsigned npages;
	/*
	 * (c) If pt_gva is set, vCPU 0 now and then stores pt_vals[0] or
	 * [1] (alternately) at pt_gva, a window onto one of the guest's
	 * page tables: the MMU must trap and emulate every such store.
	 */
	gva_t pt_gva;
	uint64_t pt_vals[2];
	/* (c) the gva whose PTE pt_gva stores, and the host page each of
	 * pt_vals maps it to: right after an emulated store, the shadow
	 * may map pt_target only to the new page. */
	gva_t pt_target;
	hva_t pt_hvas[2];
	/* (a) emulated stores done: release increments after the MMU's
	 * count, so a reader's acquire load that sees n also sees the MMU's
	 * emulated_writes >= n. */
	_Atomic uint64_t pt_writes;
	_Atomic bool stop; /* (a) relaxed: checked in the guest loop */
	struct tvcpu vcpus[TV_MAX_VCPUS];
};

/* The ops to pass to mmu_create() with the tvm as opaque. */
const struct mmu_vcpu_ops *tv_ops(void);
/* Start nr vCPU threads over vm->mmu (fill gvas/writes/cpu first). */
void tvm_start(struct tvm *vm, unsigned nr);
/* Stop and join them; returns the number of vCPUs that failed. */
int tvm_stop(struct tvm *vm);
/* Wait until every vCPU has entered guest mode at least n more times. */
void tvm_wait_entries(struct tvm *vm, uint64_t n);

#endif
