/*
 * core/vcpu: the vCPU threads of one VM. Each vCPU is a host thread that
 * runs the software CPU (core/vcpu/x86) in guest mode and, outside it,
 * handles exits (shadow page faults through core/mmu, port and MMIO I/O
 * through the VM's callbacks, HLT, triple fault) and requests. Other
 * threads reach a vCPU only through its request bits and kick, with the
 * mode protocol of KVM (docs/MMU.md, "Requests, modes and the flush with
 * wait"):
 * this module also implements the struct mmu_vcpu_ops core/mmu calls.
 */
#ifndef MMUD_VCPU_H
#define MMUD_VCPU_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "mmu.h"

struct vcpu;
struct vcpu_set;

/* Request bits; the MMU's (enum mmu_request) keep their numbers. */
enum vcpu_request {
	VCPU_REQ_TLB_FLUSH = MMU_REQ_TLB_FLUSH,
	VCPU_REQ_FREE_OBSOLETE_ROOTS = MMU_REQ_FREE_OBSOLETE_ROOTS,
	/* The dirty ring filled or was reset (vcpu_run_once() looks at
	 * it before every entry). */
	VCPU_REQ_DIRTY_RING = MMU_REQ_DIRTY_RING,
	/* Leave the run loop for good: the thread ends. */
	VCPU_REQ_STOP = 8,
	/* Re-read the paused flag (vcpu_set_pause()). */
	VCPU_REQ_PAUSE = 9,
	/* An interrupt or NMI was raised (vcpu_raise_irq(),
	 * vcpu_raise_nmi()): look at the pending events again, as KVM's
	 * KVM_REQ_EVENT. */
	VCPU_REQ_EVENT = 10,
};

/* Why a vCPU stopped running guest code for good. */
enum vcpu_stop_reason {
	VCPU_STOP_TRIPLE_FAULT,
	/*
	 * Every vCPU halted (in HLT or waiting for a SIPI) and none can
	 * be woken from inside the guest: for each, no event pending and,
	 * with RFLAGS.IF = 1, no timer deadline (vcpu_ops.deadline), no
	 * interrupt ready (vcpu_ops.intr_pending), no device that may
	 * still interrupt (vcpu_ops.devices_can_interrupt) and no wake
	 * source registered (vcpu_set_add_wake_source()). Reported for
	 * every vCPU, by the thread of the one that halted last.
	 */
	VCPU_STOP_HALTED,
	VCPU_STOP_INTERNAL_ERROR,
};

/* Callbacks into the VM, made on the vCPU's own thread unless said
 * otherwise. */
struct vcpu_ops {
	/* Port I/O: an IN stores the device's value in *value. */
	void (*pio)(void *opaque, unsigned int vcpu, uint16_t port,
		    unsigned int size, bool in, uint32_t *value);
	/* Guest-physical accesses no memslot covers. */
	uint64_t (*mmio_read)(void *opaque, gpa_t gpa, unsigned int size);
	void (*mmio_write)(void *opaque, gpa_t gpa, unsigned int size,
			   uint64_t value);
	/* The same with the vCPU that accesses (a local APIC's page is
	 * per vCPU): when set, called instead of the two above. */
	uint64_t (*cpu_mmio_read)(void *opaque, unsigned int vcpu, gpa_t gpa,
				  unsigned int size);
	void (*cpu_mmio_write)(void *opaque, unsigned int vcpu, gpa_t gpa,
			       unsigned int size, uint64_t value);
	/* The vCPU stopped for good; detail names what happened (RIP, the
	 * exception chain). The vCPU then waits for VCPU_REQ_STOP. For
	 * VCPU_STOP_HALTED it is called for every vCPU, one after the
	 * other, on the thread of the vCPU that halted last. */
	void (*stopped)(void *opaque, unsigned int vcpu,
			enum vcpu_stop_reason why, const char *detail);
	/*
	 * Timers (optional, both or neither): deadline() is the host time
	 * (CLOCK_MONOTONIC ns) at which this vCPU's next timer event is
	 * due, 0 for none; expire() is called once now_ns has reached it,
	 * and raises what the timer raises. Asked outside guest mode
	 * before every entry (so a running vCPU sees a deadline within a
	 * slice, VCPU_SLICE_INSNS instructions) and as the timeout of HLT's
	 * sleep. An armed deadline is a wake source for this vCPU.
	 */
	uint64_t (*deadline)(void *opaque, unsigned int vcpu);
	void (*expire)(void *opaque, unsigned int vcpu, uint64_t now_ns);
	/*
	 * An interrupt controller (optional, both or neither), beside the
	 * vectors vcpu_raise_irq() queues: intr_pending() says whether it
	 * has a maskable interrupt ready for the CPU (the INTR line),
	 * intr_ack() takes it (the vector, 32-255, or -1: none after all).
	 * The controller makes a VCPU_REQ_EVENT request whenever one may
	 * have become ready. intr_pending() is also asked from other vCPU
	 * threads (whether a halted VM can still wake): any thread.
	 */
	bool (*intr_pending)(void *opaque, unsigned int vcpu);
	int (*intr_ack)(void *opaque, unsigned int vcpu);
	/*
	 * RDMSR/WRMSR of an MSR the VM implements (optional; local APIC,
	 * TSC deadline): 0 done (a read stores *value), -EINVAL for #GP,
	 * -ENOENT when the VM does not implement index (the CPU's own
	 * MSRs answer then).
	 */
	int (*msr)(void *opaque, unsigned int vcpu, uint32_t index, bool write,
		   uint64_t *value);
	/*
	 * Whether a device may still raise an interrupt (optional): asked,
	 * from any vCPU's thread, when every vCPU has gone idle, before the
	 * VM is declared halted for good (VCPU_STOP_HALTED). A device that
	 * can is a wake source for vCPUs with RFLAGS.IF = 1.
	 */
	bool (*devices_can_interrupt)(void *opaque);
	/* MOV to or from CR8 (x86_env.cr8; optional): the interrupt
	 * controller's task priority, on the vCPU's thread. */
	void (*cr8)(void *opaque, unsigned int vcpu, bool write,
		    uint64_t *value);
};

/* The vCPUs of a VM. NULL means -ENOMEM. */
struct vcpu_set *vcpu_set_create(unsigned int nr_vcpus);
/* Every vCPU must have been destroyed. */
void vcpu_set_destroy(struct vcpu_set *set);
/* Pass these, with the set as opaque, to mmu_create(). */
extern const struct mmu_vcpu_ops vcpu_mmu_ops;

/*
 * Creates vCPU index of set (not yet running) in the boot state at entry.
 * NULL means -ENOMEM.
 */
struct vcpu *vcpu_create(struct vcpu_set *set, unsigned int index,
			 struct mmu *mmu, gva_t entry,
			 const struct vcpu_ops *ops, void *opaque);
/* Stops the thread if it runs (VCPU_REQ_STOP, join), then frees. */
void vcpu_destroy(struct vcpu *v);
/* Starts the vCPU thread; -errno if it cannot be created. Returns once
 * the thread runs (its thread id is known). A vCPU paused before it
 * starts parks before its first guest instruction. */
int vcpu_start(struct vcpu *v);

/*
 * Sets the request bit, then kicks the vCPU out of guest mode (and wakes
 * it if it sleeps). With wait, returns only once the vCPU is outside
 * guest mode or has left it since (docs/locking.md #3): the caller's
 * earlier
 * writes are then seen by everything the vCPU does next.
 */
void vcpu_make_request(struct vcpu *v, enum vcpu_request req, bool wait);
void vcpu_set_make_request(struct vcpu_set *set, enum vcpu_request req,
			   bool wait);
enum mmu_vcpu_mode vcpu_mode(const struct vcpu *v);

/*
 * Makes external interrupt vector (32-255) pending on v, from any thread:
 * it is taken at an instruction boundary once RFLAGS.IF allows, the
 * highest vector first, and wakes v from HLT. A vector already pending
 * is not queued twice (as an APIC's IRR). Returns 1 when the vector
 * became pending, 0 when it already was, -EINVAL for a vector below 32
 * (the exceptions' range: nothing changes).
 */
int vcpu_raise_irq(struct vcpu *v, unsigned int vector);
/* Latches an NMI on v, from any thread (one is held while another is
 * handled; SDM vol. 3, 6.7.1). */
void vcpu_raise_nmi(struct vcpu *v);
/*
 * INIT, from any thread: v stops running guest code and waits for a
 * SIPI (SDM vol. 3, 8.4.1), which, without real mode, never starts it
 * again: only vcpu_reset() does. Events raised meanwhile stay pending.
 */
void vcpu_raise_init(struct vcpu *v);
/* Whether v waits for a SIPI after an INIT (relaxed, for reports). */
bool vcpu_wait_for_sipi(const struct vcpu *v);
/*
 * Wake sources: things outside the VM's callbacks that may still raise
 * an interrupt (a test's raiser threads). Halted vCPUs always sleep;
 * when every vCPU is idle and none can be woken (VCPU_STOP_HALTED), the
 * VM has halted for good, as a guest that ends with HLT expects; a wake
 * source keeps that from being decided for vCPUs with RFLAGS.IF = 1. An
 * NMI raised by the operator is not a source.
 */
void vcpu_set_add_wake_source(struct vcpu_set *set);
void vcpu_set_remove_wake_source(struct vcpu_set *set);
/* Whether v sleeps in HLT (for the control plane; relaxed). */
bool vcpu_halted(const struct vcpu *v);
/* Pauses (true) or resumes the vCPU; returns at once. */
void vcpu_set_pause(struct vcpu *v, bool paused);
/*
 * Waits until the vCPU, paused with vcpu_set_pause() (or stopped for
 * good), is parked: outside guest mode, its tracked writes handed to the
 * MMU, blocked until its next request. Returns at once for a vCPU whose
 * thread has not started or has ended. May block for as long as the vCPU
 * takes to reach its next exit: call it from a worker, not the event loop.
 */
void vcpu_wait_parked(struct vcpu *v);
/*
 * Puts a paused vCPU back in the boot state (docs/GUEST-ABI.md, "Entry
 * state") at
 * its entry point (registers, control registers, soft TLB), forgets that
 * it stopped for good, and drops what it was doing. Waits until it is
 * parked first. The caller zaps the shadow MMU itself (the vCPU drops
 * its obsolete root through the MMU's own request).
 */
void vcpu_reset(struct vcpu *v);
/*
 * Linux's 64-bit boot protocol (docs/GUEST-ABI.md, "Platform v2 boot")
 * instead of ABI v1's entry state, on a vCPU not started or parked (call
 * it again after every vcpu_reset()): RSI = boot_params, RDI = 0, CS =
 * cs, DS = ES = SS = ds and the GDT's limit; the rest (entry point, page
 * tables, control registers) stays ABI v1's.
 */
void vcpu_set_linux_boot(struct vcpu *v, gpa_t boot_params, uint16_t cs,
			 uint16_t ds, uint16_t gdt_limit);

struct x86_cpu;
/*
 * Calls fn(cpu, ctx) with the paused vCPU's CPU, once it is parked, and
 * returns what fn returns: how migration saves and loads a vCPU's state
 * (docs/MIGRATION.md, "The daemon's part"). The vCPU cannot leave its
 * parking meanwhile (the same hold as vcpu_reset()); its soft TLB is
 * flushed afterwards, since fn may have loaded other control registers.
 * fn must not touch the MMU or make requests of any vCPU.
 */
int vcpu_with_cpu(struct vcpu *v, int (*fn)(struct x86_cpu *cpu, void *ctx),
		  void *ctx);

struct x86_cpu_stats;
/* The run-loop counters of v's CPU and the engine it runs guest code
 * with (x86_cpu_stats_get(), x86_engine_name()): any thread, no wait. */
void vcpu_cpu_stats(const struct vcpu *v, struct x86_cpu_stats *out);
const char *vcpu_engine(const struct vcpu *v);

/*
 * The guest TSC's offset from the host's (x86_set_tsc_offset()), kept
 * across vcpu_reset(): before vcpu_start(), or waits until v is parked.
 * vcpu_guest_tsc() reads v's TSC, on v's own thread (its callbacks).
 */
void vcpu_set_tsc_offset(struct vcpu *v, int64_t offset);
uint64_t vcpu_guest_tsc(const struct vcpu *v);
/*
 * A store the VM makes into guest RAM for v (kvmclock's structures), on
 * v's own thread, from its callbacks: len bytes at gpa, in address
 * order, as the guest's own stores are made, so dirty logging sees them
 * and a shadowed page table among them is zapped after the instruction.
 * false, storing nothing, unless every byte is in writable RAM (len up
 * to 4096).
 */
bool vcpu_write_guest(struct vcpu *v, gpa_t gpa, const void *buf,
		      unsigned int len);

/* What a vCPU is doing, for the control plane. */
enum vcpu_state {
	VCPU_STATE_RUNNING, /* runs guest code (or is about to) */
	VCPU_STATE_PAUSED, /* paused by vcpu_set_pause() */
	VCPU_STATE_HALTED, /* halted with nothing to wake it */
	VCPU_STATE_CRASHED, /* triple fault or internal error */
};
enum vcpu_state vcpu_state(const struct vcpu *v);
/* "running", "paused", "halted", "crashed". */
const char *vcpu_state_name(enum vcpu_state st);
/* The host thread id (gettid) of the vCPU; 0 before vcpu_start(). */
int vcpu_thread_id(const struct vcpu *v);

struct vcpu_stats {
	uint64_t insns;
	uint64_t exits, shadow_faults, pio_exits, pause_exits, mmio_accesses,
		halts;
	/* Interrupts and NMIs taken by the CPU (acknowledged). */
	uint64_t irqs, nmis;
	uint64_t guest_pf_injected, emulated_writes, requests;
	/* Instructions retired when the vCPU last took its requests: with
	 * requests, read first, it tells whether guest code ran between a
	 * request and its handling. */
	uint64_t request_insns;
};
/* A snapshot; may lag the running vCPU by its current run. */
void vcpu_stats_get(const struct vcpu *v, struct vcpu_stats *st);

/*
 * The dirty limit (docs/MIGRATION.md, "Dirty limit"): vCPU index of set
 * (or every vCPU, index < 0) dirties at most pages_per_sec pages a
 * second, counted at its write faults (with dirty logging on, the first
 * write of each page after a harvest), with bursts of at most one
 * period_ms's worth. Past it, the vCPU sleeps before it enters guest
 * mode again, in sleeps of one page's time (never more than
 * VCPU_DIRTY_LIMIT_MAX_SLEEP_MS), each ended early by any request. 0
 * pages_per_sec turns it off. Any thread.
 */
#define VCPU_DIRTY_LIMIT_MAX_SLEEP_MS 10
void vcpu_set_dirty_limit(struct vcpu_set *set, int index,
			  uint64_t pages_per_sec, uint64_t period_ms);
struct vcpu_dirty_limit_info {
	uint64_t limit; /* pages/s, 0: none */
	uint64_t cur_rate; /* pages/s over the last full period */
	uint64_t pages; /* write faults counted since the vCPU started */
	uint64_t sleep_ns, max_sleep_ns; /* throttled: total, longest */
};
void vcpu_dirty_limit_get(const struct vcpu *v,
			  struct vcpu_dirty_limit_info *out);
/* The set's vCPU index, or NULL (not created, or gone). */
struct vcpu *vcpu_set_get(struct vcpu_set *set, unsigned int index);

#endif
