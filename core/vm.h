/*
 * The VM: guest memory (memfd-backed memslots), the MMU, the vCPUs and the
 * devices of guest ABI v1, wired together. It boots a kernel with the
 * loader, runs the vCPUs until the guest exits or crashes, and reports
 * how it ended. It owns no event loop and no protocol: the daemon drives
 * it.
 */
#ifndef MMUD_VM_H
#define MMUD_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VM_MAX_VCPUS 64
#define VM_DEFAULT_RAM (256ULL << 20)

struct vm_config {
	uint64_t ram_size; /* bytes, a multiple of 4 KiB, >= 2 MiB */
	unsigned int nr_vcpus; /* 1..VM_MAX_VCPUS */
	const void *kernel; /* the ELF image */
	size_t kernel_len;
	const char *cmdline; /* NULL: empty */
	int console_fd; /* where COM1 output goes */
};

/* How a VM run ended. */
enum vm_end {
	VM_END_DEBUG_EXIT, /* the guest wrote to the debug-exit port */
	VM_END_CRASH, /* triple fault, every vCPU halted, internal error */
};

struct vm_result {
	enum vm_end how;
	uint32_t exit_value; /* VM_END_DEBUG_EXIT: the value written */
	char detail[256]; /* VM_END_CRASH: what happened, on which vCPU */
	bool audit_ok; /* the MMU audit after the run */
	char audit_msg[256];
};

struct vm;
struct mmu;
struct vcpu_set;

/*
 * Allocates guest memory, loads the kernel and creates the vCPUs (not
 * running). The calling thread, and every thread that calls into the VM,
 * must be registered with mmu_rcu_register_thread(). NULL on failure with a message in err: a refused kernel names
 * its problem.
 */
struct vm *vm_create(const struct vm_config *cfg, char *err, size_t errlen);
/* Starts every vCPU; -errno if one cannot start (the VM has then ended
 * as a crash, and vm_wait() reports it). */
int vm_start(struct vm *vm);
/* Waits until the VM ends, stops every vCPU and audits the MMU. */
void vm_wait(struct vm *vm, struct vm_result *res);
/* vm_start() then vm_wait(). */
int vm_run(struct vm *vm, struct vm_result *res);
/* The MMU and the vCPUs, for the control plane and tests. */
struct mmu *vm_mmu(struct vm *vm);
struct vcpu_set *vm_vcpu_set(struct vm *vm);
void vm_destroy(struct vm *vm);

#endif
