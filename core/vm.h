/*
 * The VM: guest memory (memfd-backed memslots), the MMU, the vCPUs and the
 * devices of guest ABI v1, wired together. It boots a kernel with the
 * loader, runs and pauses the vCPUs, resets the machine, and reports when
 * the guest ended (debug exit) or crashed. It owns no event loop and no
 * protocol: the daemon drives it and decides what an ending means.
 *
 * Threads: every thread that calls into the VM must be registered with
 * mmu_rcu_register_thread(). Functions that wait for vCPUs (vm_pause,
 * vm_hold, vm_reset, vm_audit, vm_destroy) may block for as long as a
 * vCPU takes to reach its next exit: the daemon calls them from a worker.
 */
#ifndef MMUD_VM_H
#define MMUD_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define VM_MAX_VCPUS 64
#define VM_DEFAULT_RAM (256ULL << 20)
/* Boot RAM: a multiple of 4 KiB in [VM_MIN_RAM, VM_MAX_RAM]. */
#define VM_MIN_RAM (2ULL << 20)
#define VM_MAX_RAM (1ULL << 40)
/* The ceiling of boot RAM plus hot-added memory (QEMU's maxmem): at most
 * the guest's physical address space; by default the larger of
 * VM_MAX_RAM and the boot RAM. */
#define VM_MAX_MAXMEM (1ULL << 46)
#define VM_MAX_MEMSLOTS 80 /* boot RAM and GUESTMEM_MAX_SLOTS hot ones */
#define VM_MAX_WAKE_CHECKS 8 /* vm_add_wake_check() */

struct blk_drive_config;
struct virtio_blk_error;

struct vm_config {
	uint64_t ram_size; /* bytes, a multiple of 4 KiB, >= 2 MiB */
	unsigned int nr_vcpus; /* 1..VM_MAX_VCPUS */
	/* Boot RAM plus hot-added memory at most, in [ram_size,
	 * VM_MAX_MAXMEM]; 0: the default above. */
	uint64_t maxmem;
	/* Guest RAM (boot and hot-added) in the process's core dumps; off,
	 * it is madvise(MADV_DONTDUMP) (QEMU's dump-guest-core). */
	bool dump_guest_core;
	const void *kernel; /* the ELF image; the VM keeps its own copy */
	size_t kernel_len;
	const char *cmdline; /* NULL: empty; copied */
	/* The initrd of a bzImage kernel (docs/GUEST-ABI.md, "Platform v2
	 * boot"); copied. */
	const void *initrd;
	size_t initrd_len;
	/*
	 * Where COM1 output goes: console_fn(console_ctx, ...) when set
	 * (called on vCPU threads, in guest order), else written to
	 * console_fd.
	 */
	void (*console_fn)(void *ctx, const char *buf, size_t len);
	void *console_ctx;
	int console_fd;
	/*
	 * Called once, on the vCPU thread that ended the VM, when the guest
	 * wrote to the debug-exit port or crashed; by then every vCPU has
	 * been asked to pause. vm_result() says how. After vm_reset() it
	 * may be called again.
	 */
	void (*ended_fn)(void *ctx);
	void *ended_ctx;
	/*
	 * Block devices: drive i is virtio-mmio device i (docs/GUEST-ABI.md,
	 * "Virtio-mmio devices"), with one request queue per vCPU. Failed
	 * requests are told to blk_error_fn on an I/O thread; blk_threads
	 * makes every drive use the thread pool instead of io_uring.
	 */
	const struct blk_drive_config *drives;
	unsigned int nr_drives;
	void (*blk_error_fn)(void *ctx, const struct virtio_blk_error *e);
	void *blk_error_ctx;
	bool blk_threads;
};

/* How a VM run ended. */
enum vm_end {
	VM_END_NONE, /* it has not */
	VM_END_DEBUG_EXIT, /* the guest wrote to the debug-exit port */
	VM_END_CRASH, /* triple fault, or every vCPU halted for good */
	VM_END_INTERNAL_ERROR, /* mmud could not go on (out of memory...) */
	/* The sleep control register got S5 (docs/GUEST-ABI.md, "Sleep
	 * and reset registers"): the guest powered off. */
	VM_END_GUEST_SHUTDOWN,
	/* The reset register or the i8042 reset: the daemon resets the VM
	 * (vm_reset()) or, with QEMU's -no-reboot, shuts down. */
	VM_END_GUEST_RESET,
};

struct vm_result {
	enum vm_end how;
	uint32_t exit_value; /* VM_END_DEBUG_EXIT: the value written */
	char detail[256]; /* crashes: what happened, on which vCPU */
};

/* One vCPU, for query-cpus-fast. */
struct vm_vcpu_info {
	int thread_id; /* host tid */
	const char *state; /* vcpu_state_name() */
	uint64_t insns, exits, shadow_faults, pio_exits, mmio_accesses, halts;
	uint64_t guest_pf_injected, emulated_writes, requests;
	bool halted; /* asleep in HLT */
	bool wait_for_sipi; /* stopped by INIT, waiting for a SIPI */
};

/* One memslot, for x-query-memslots. */
struct vm_memslot_info {
	uint32_t slot;
	gpa_t gpa;
	uint64_t size;
	bool readonly, log_dirty;
	hva_t hva; /* where mmud maps it (migration reads and loads pages) */
	int fd; /* the memfd mapped whole at hva, or -1 (not known) */
};

struct vm;
struct mmu;
struct guestmem;
struct vcpu_set;

/*
 * Allocates guest memory, loads the kernel and creates the vCPUs (not
 * running). NULL on failure with a message in err: a refused kernel
 * names its problem.
 */
struct vm *vm_create(const struct vm_config *cfg, char *err, size_t errlen);
/*
 * Starts every vCPU thread; a VM paused with vm_pause() before starts
 * with its vCPUs parked before their first instruction. -errno if one
 * cannot start (the VM has then ended as an internal error).
 */
int vm_start(struct vm *vm);

/*
 * The operator's pause (QMP stop/cont). vm_pause returns once every vCPU
 * is parked; vm_resume returns at once. The vCPUs run only when the
 * operator has not paused them, no hold is taken and the VM has not
 * ended.
 */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/* A hold for the VM's own work (reset, audit, shutdown): counts, and
 * vm_hold returns once every vCPU is parked. */
void vm_hold(struct vm *vm);
void vm_unhold(struct vm *vm);

/* How the VM ended (how == VM_END_NONE while it has not). */
void vm_result(struct vm *vm, struct vm_result *res);

/*
 * system_reset (docs/ARCHITECTURE.md, "Reset and shutdown"), with the
 * caller's hold taken: loads
 * the kernel and low memory again from the copy taken at start, resets
 * the devices, zaps every shadow page and puts every vCPU in the boot
 * state; hot-added memslots stay. The VM is no longer ended afterwards.
 * 0 or -errno with a message.
 */
int vm_reset(struct vm *vm, char *err, size_t errlen);

/*
 * Runs the MMU audit on the live VM (docs/MMU.md, "The live audit"): the
 * structural part while the vCPUs run, then the comparison with the
 * guest's tables in batches, each under a hold (every vCPU parked, their
 * pending page-table writes handed to the MMU) that lasts one batch.
 * 0, or -EINVAL with the first inconsistency in msg.
 */
int vm_audit(struct vm *vm, char *msg, size_t msglen);
/*
 * The same, given up with -ETIMEDOUT (and msg saying where) after
 * budget_ms: the audit at shutdown.
 */
int vm_audit_bounded(struct vm *vm, unsigned int budget_ms, char *msg,
		     size_t msglen);
/*
 * Its two parts, for a caller that lets other work run between batches:
 * vm_audit_begin() returns how many shadow pages are left to compare
 * (>= 0) or -errno; each vm_audit_step() compares one batch under a
 * hold: 1 while some are left, 0 when done, -EINVAL.
 */
int vm_audit_begin(struct vm *vm, uint64_t deadline_ns, char *msg,
		   size_t msglen);
int vm_audit_step(struct vm *vm, char *msg, size_t msglen);

/* The ceiling of boot RAM plus hot-added memory, and the boot RAM. */
uint64_t vm_maxmem(const struct vm *vm);
uint64_t vm_ram_size(const struct vm *vm);
unsigned int vm_nr_vcpus(const struct vm *vm);
void vm_vcpu_info(struct vm *vm, unsigned int index, struct vm_vcpu_info *out);
/* Fills at most max slots sorted by gpa; returns how many exist. */
unsigned int vm_memslots(struct vm *vm, struct vm_memslot_info *out,
			 unsigned int max);

/* The MMU, the hot-added memory and the vCPUs, for the control plane
 * and tests. */
struct mmu *vm_mmu(struct vm *vm);
struct guestmem *vm_guestmem(struct vm *vm);
struct vcpu_set *vm_vcpu_set(struct vm *vm);
/* Console input for the guest: queued for COM1's receive side; returns
 * how many bytes fitted (offer the rest again later). Any thread. */
size_t vm_console_input(struct vm *vm, const void *buf, size_t len);

/*
 * For migration (docs/MIGRATION.md, "The daemon's part"). The VM's
 * COM1, for dev_serial_save()/dev_serial_load(): both take its lock.
 */
struct dev_serial *vm_serial(struct vm *vm);
struct x86_cpu_stats;
/* vCPU index's run-loop counters and execution engine (docs/QMP.md,
 * "x-query-cpu-stats (daemon)"): any thread, no wait. -ENOENT without
 * that vCPU. */
int vm_vcpu_cpu_stats(struct vm *vm, unsigned int index,
		      struct x86_cpu_stats *out, const char **engine);
struct x86_cpu;
/*
 * fn(cpu, ctx) on vCPU index's CPU once it is parked (the caller has
 * paused the vCPUs with vm_hold() or vm_pause(), or they never ran):
 * migrate_vcpu_save() on the source, migrate_vcpu_load() on the
 * destination, which also sets the guest TSC offset from the saved TSC
 * (x86_load_state()). Returns what fn returns. A CPU given new control
 * registers needs a new shadow root: the destination zaps its MMU
 * (mmu_zap_all()) after loading, so every vCPU loads one for its CR3.
 */
int vm_vcpu_with_cpu(struct vm *vm, unsigned int index,
		     int (*fn)(struct x86_cpu *cpu, void *ctx), void *ctx);

/*
 * Interrupts (docs/GUEST-ABI.md, "Interrupts"): delivers an interrupt
 * message (vector, delivery mode, destination and its mode, trigger) to
 * the VM's local APICs as the APIC bus does: what an IOAPIC pin or an
 * MSI sends (msg->shorthand DEV_APIC_DEST_FIELD; struct dev_apic_msg in
 * core/dev/lapic.h). Any thread; takes only the APICs' locks and makes
 * vCPU requests.
 */
struct dev_apic_msg;
void vm_apic_deliver(struct vm *vm, const struct dev_apic_msg *msg);
/*
 * Who hears an EOI of a level-triggered vector, broadcast by every
 * local APIC (an IOAPIC, to clear remote IRR): fn(ctx, vector), on the
 * vCPU thread that wrote EOI, with no lock held. Set once, before
 * vm_start().
 */
void vm_set_eoi_hook(struct vm *vm, void (*fn)(void *ctx, uint8_t vector),
		     void *ctx);
/*
 * A device that may still raise an interrupt while every vCPU sleeps
 * (COM1 with receive interrupts enabled and routed, waiting for console
 * input): fn(ctx) says whether it can now. Asked from a vCPU thread,
 * under the vCPU layer's idle decision, when every vCPU is idle: the VM
 * has halted for good only if no check says yes (docs/GUEST-ABI.md,
 * "Crashes and halts"). fn may take the device's lock and nothing that
 * waits for a vCPU. At most VM_MAX_WAKE_CHECKS, registered before
 * vm_start(); -ENOSPC beyond.
 */
int vm_add_wake_check(struct vm *vm, bool (*fn)(void *ctx), void *ctx);
/*
 * QMP's inject-nmi: an NMI to every vCPU, as QEMU's x86 machines do.
 * Not a wake source (docs/GUEST-ABI.md, "Crashes and halts"). Any
 * thread.
 */
void vm_inject_nmi(struct vm *vm);
/* vCPU index's local APIC (NULL: no such vCPU), for migration's
 * dev_lapic_save()/dev_lapic_load() with the vCPUs parked. */
struct dev_lapic;
struct dev_lapic *vm_lapic(struct vm *vm, unsigned int index);
/* vCPU index's local APIC registers now (x-query-lapic); -ENOENT for no
 * such vCPU. Any thread. */
struct dev_lapic_state;
int vm_lapic_state(struct vm *vm, unsigned int index,
		   struct dev_lapic_state *st);
/* The IOAPIC's registers and pin levels now (x-query-ioapic). Any
 * thread. */
struct dev_ioapic_state;
void vm_ioapic_state(struct vm *vm, struct dev_ioapic_state *st);
/* Migration's handles (docs/MIGRATION.md, "vCPU interrupt state"):
 * the IOAPIC, and vCPU index's kvmclock MSRs (NULL: no such vCPU),
 * used only with the vCPUs parked. */
struct dev_ioapic;
struct dev_ioapic *vm_ioapic(struct vm *vm);
struct x86_kvmclock;
struct x86_kvmclock *vm_kvmclock(struct vm *vm, unsigned int index);
/* An INIT to vCPU index (vcpu_raise_init()): a destination's vCPU that
 * waited for a SIPI on the source waits here too. Any thread. */
void vm_vcpu_raise_init(struct vm *vm, unsigned int index);
/* The guest TSC's frequency in Hz (the host's, measured once). */
uint64_t vm_tsc_hz(const struct vm *vm);

/* Block device i (NULL past the last), for the daemon's query-block,
 * the retry at cont and introspection. */
struct virtio_blk;
struct virtio_blk *vm_blk(struct vm *vm, unsigned int i);

/* Stops and joins every vCPU thread, then frees everything. */
void vm_destroy(struct vm *vm);

#endif
