/*
 * A small VM for the vCPU tests: guest RAM (2 MiB aligned, so the MMU
 * may map it with large sptes as core/vm.c lets it), an MMU with that RAM
 * as memslot 0, a vCPU set and its vCPUs, built from a few bytes of
 * guest code wrapped in the ELF image the loader takes (docs/GUEST-ABI.md,
 * "The kernel file"). And the bookkeeping most of these tests share:
 * which vCPUs stopped by HLT and the first that stopped any other way.
 */
#ifndef MMUD_TEST_VM_H
#define MMUD_TEST_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmu.h"
#include "vcpu/vcpu.h"

#define TEST_VM_MAX_VCPUS 8

/* The guest: code at code_gpa, a zeroed read-write page at data_gpa,
 * the vCPUs entering at code_gpa + entry. */
struct test_vm_guest {
	const uint8_t *code;
	size_t code_len;
	uint64_t code_gpa;
	uint64_t data_gpa;
	uint64_t entry;
};

/* Legend: (c) constant while the vCPUs run; (l) under lock, cond
 * broadcast when it changes. */
struct test_vm {
	unsigned int n; /* (c) */
	size_t ram_size; /* (c) */
	void *res; /* (c) the reservation the RAM is aligned in */
	size_t res_len; /* (c) */
	void *ram; /* (c) */
	struct vcpu_set *set; /* (c) */
	struct mmu *mmu; /* (c) */
	struct vcpu *vcpus[TEST_VM_MAX_VCPUS]; /* (c) */

	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	unsigned int nr_halted; /* (l) vCPUs stopped by HLT */
	unsigned int nr_crashed; /* (l) any other stop */
	char crash[256]; /* (l) the first other stop */
};

/*
 * Creates the VM with n vCPUs (not started) whose callbacks are ops with
 * opaque; fails the test if any part is refused. Writes into the RAM
 * before vcpu start are the guest's initial memory.
 */
void test_vm_create(struct test_vm *vm, unsigned int n, size_t ram_size,
		    const struct test_vm_guest *g, const struct vcpu_ops *ops,
		    void *opaque);
void test_vm_start(struct test_vm *vm);
/* Destroys the vCPUs (stopping them), the MMU and the RAM. */
void test_vm_destroy(struct test_vm *vm);

/* The host address of guest physical address gpa in the RAM. */
void *test_vm_ptr(const struct test_vm *vm, uint64_t gpa);

/* Records a vCPU stop as ops->stopped sees it (HLT counted, anything
 * else kept as the first crash), under vm->lock. */
void test_vm_record_stop(struct test_vm *vm, unsigned int vcpu,
			 enum vcpu_stop_reason why, const char *detail);
/* Waits until *counter (under vm->lock) reaches want, a vCPU crashes or
 * seconds pass; true when it reached want. */
bool test_vm_wait_count(struct test_vm *vm, const unsigned int *counter,
			unsigned int want, unsigned int seconds);

/* Callbacks for a guest that does no I/O: reads return all ones, writes
 * are dropped, as on a bus with nothing on it. */
void test_vm_pio_none(void *opaque, unsigned int vcpu, uint16_t port,
		      unsigned int size, bool in, uint32_t *value);
uint64_t test_vm_mmio_read_none(void *opaque, gpa_t gpa, unsigned int size);
void test_vm_mmio_write_none(void *opaque, gpa_t gpa, unsigned int size,
			     uint64_t value);

/*
 * Writes an IDT at idt_gpa with an interrupt gate for NMI (vector 2) and
 * each vector 32-255, the gate of vector v to a stub at stubs_gpa + 16 v
 * that pushes v and jumps to common_gpa; and the IDTR image (limit,
 * base) at idtr_gpa for the guest's LIDT. Before the vCPUs start.
 */
void test_vm_write_idt(struct test_vm *vm, uint64_t idt_gpa, uint64_t stubs_gpa,
		       uint64_t idtr_gpa, uint64_t common_gpa);

uint64_t test_vm_now_ns(void);
void test_vm_put16(uint8_t *p, uint16_t v);
void test_vm_put32(uint8_t *p, uint32_t v);
void test_vm_put64(uint8_t *p, uint64_t v);

#endif
