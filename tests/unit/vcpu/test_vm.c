/* A small VM for the vCPU tests: see test_vm.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <cmocka.h>

#include "loader.h"
#include "test_vm.h"

#define LARGE_PAGE (2ULL << 20)
#define ELF_CODE_OFF 0x1000

void test_vm_put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

void test_vm_put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

void test_vm_put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

uint64_t test_vm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void put_phdr(uint8_t *ph, uint32_t flags, uint64_t off, uint64_t gpa,
		     uint64_t filesz, uint64_t memsz)
{
	test_vm_put32(ph + 0, 1); /* PT_LOAD */
	test_vm_put32(ph + 4, flags);
	test_vm_put64(ph + 8, off);
	test_vm_put64(ph + 16, gpa); /* p_vaddr */
	test_vm_put64(ph + 24, gpa); /* p_paddr */
	test_vm_put64(ph + 32, filesz);
	test_vm_put64(ph + 40, memsz);
	test_vm_put64(ph + 48, 0x1000); /* p_align */
}

/*
 * The kernel image: an ELF64 header, two program headers (the code, read
 * and execute; a zeroed read-write page at data_gpa) and the code at file
 * offset 0x1000. img holds ELF_CODE_OFF + g->code_len bytes.
 */
static void build_elf(uint8_t *img, const struct test_vm_guest *g)
{
	static const uint8_t ident[16] = { 0x7f, 'E', 'L', 'F', 2, 1, 1 };

	memset(img, 0, ELF_CODE_OFF);
	memcpy(img, ident, sizeof(ident));
	test_vm_put16(img + 16, 2); /* ET_EXEC */
	test_vm_put16(img + 18, 62); /* EM_X86_64 */
	test_vm_put32(img + 20, 1);
	test_vm_put64(img + 24, g->code_gpa + g->entry);
	test_vm_put64(img + 32, 64); /* e_phoff */
	test_vm_put16(img + 52, 64); /* e_ehsize */
	test_vm_put16(img + 54, 56); /* e_phentsize */
	test_vm_put16(img + 56, 2); /* e_phnum */
	put_phdr(img + 64, 5, ELF_CODE_OFF, g->code_gpa, g->code_len,
		 g->code_len);
	put_phdr(img + 64 + 56, 6, ELF_CODE_OFF, g->data_gpa, 0, 0x1000);
	memcpy(img + ELF_CODE_OFF, g->code, g->code_len);
}

void test_vm_create(struct test_vm *vm, unsigned int n, size_t ram_size,
		    const struct test_vm_guest *g, const struct vcpu_ops *ops,
		    void *opaque)
{
	size_t img_len = ELF_CODE_OFF + g->code_len;
	uint8_t *img = malloc(img_len);
	struct loader_ram lram;
	struct loader_config lcfg;
	struct loader_result lres;
	pthread_condattr_t ca;
	char err[200];

	assert_true(n <= TEST_VM_MAX_VCPUS);
	memset(vm, 0, sizeof(*vm));
	vm->n = n;
	vm->ram_size = ram_size;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &ca);
	pthread_condattr_destroy(&ca);

	vm->res_len = ram_size + LARGE_PAGE;
	vm->res = mmap(NULL, vm->res_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(vm->res != MAP_FAILED);
	vm->ram = (void *)(((uintptr_t)vm->res + LARGE_PAGE - 1) &
			   ~(uintptr_t)(LARGE_PAGE - 1));

	build_elf(img, g);
	lram = (struct loader_ram){ .gpa = 0,
				    .size = ram_size,
				    .hva = vm->ram };
	lcfg = (struct loader_config){ .ram = &lram,
				       .nr_ram = 1,
				       .nr_vcpus = n };
	if (loader_load(&lcfg, img, img_len, &lres, err, sizeof(err)))
		fail_msg("loader refused the test kernel: %s", err);
	free(img);

	vm->set = vcpu_set_create(n);
	assert_non_null(vm->set);
	vm->mmu = mmu_create(&vcpu_mmu_ops, vm->set);
	assert_non_null(vm->mmu);
	if (memslot_add(vm->mmu, 0, 0, ram_size >> PAGE_SHIFT,
			(hva_t)(uintptr_t)vm->ram, 0, err, sizeof(err)))
		fail_msg("memslot_add: %s", err);
	for (unsigned int i = 0; i < n; i++) {
		vm->vcpus[i] = vcpu_create(vm->set, i, vm->mmu, lres.entry, ops,
					   opaque);
		assert_non_null(vm->vcpus[i]);
	}
}

void test_vm_start(struct test_vm *vm)
{
	for (unsigned int i = 0; i < vm->n; i++)
		assert_int_equal(vcpu_start(vm->vcpus[i]), 0);
}

void test_vm_destroy(struct test_vm *vm)
{
	for (unsigned int i = 0; i < vm->n; i++)
		vcpu_destroy(vm->vcpus[i]);
	assert_int_equal(memslot_delete(vm->mmu, 0, NULL, 0), 0);
	mmu_destroy(vm->mmu);
	vcpu_set_destroy(vm->set);
	munmap(vm->res, vm->res_len);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
}

void *test_vm_ptr(const struct test_vm *vm, uint64_t gpa)
{
	return (uint8_t *)vm->ram + gpa;
}

void test_vm_record_stop(struct test_vm *vm, unsigned int vcpu,
			 enum vcpu_stop_reason why, const char *detail)
{
	pthread_mutex_lock(&vm->lock);
	if (why == VCPU_STOP_HALTED) {
		vm->nr_halted++;
	} else if (vm->nr_crashed++ == 0) {
		snprintf(vm->crash, sizeof(vm->crash), "vCPU %u: %s", vcpu,
			 detail);
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

bool test_vm_wait_count(struct test_vm *vm, const unsigned int *counter,
			unsigned int want, unsigned int seconds)
{
	struct timespec dl;
	bool ok = true;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += seconds;
	pthread_mutex_lock(&vm->lock);
	while (*counter < want && !vm->nr_crashed && ok)
		ok = pthread_cond_timedwait(&vm->cond, &vm->lock, &dl) == 0;
	ok = *counter >= want;
	pthread_mutex_unlock(&vm->lock);
	return ok;
}

void test_vm_pio_none(void *opaque, unsigned int vcpu, uint16_t port,
		      unsigned int size, bool in, uint32_t *value)
{
	(void)opaque;
	(void)vcpu;
	(void)port;
	if (in)
		*value = size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
}

uint64_t test_vm_mmio_read_none(void *opaque, gpa_t gpa, unsigned int size)
{
	(void)opaque;
	(void)gpa;
	return size == 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
}

void test_vm_mmio_write_none(void *opaque, gpa_t gpa, unsigned int size,
			     uint64_t value)
{
	(void)opaque;
	(void)gpa;
	(void)size;
	(void)value;
}

void test_vm_write_idt(struct test_vm *vm, uint64_t idt_gpa, uint64_t stubs_gpa,
		       uint64_t idtr_gpa, uint64_t common_gpa)
{
	uint8_t *idtr = test_vm_ptr(vm, idtr_gpa);

	for (unsigned int v = 2; v < 256; v = v == 2 ? 32 : v + 1) {
		uint64_t stub = stubs_gpa + 16 * v;
		uint8_t *s = test_vm_ptr(vm, stub);
		uint64_t g[2];
		int32_t rel = (int32_t)(common_gpa - (stub + 10));

		s[0] = 0x68; /* push $v */
		test_vm_put32(s + 1, v);
		s[5] = 0xe9; /* jmp common */
		test_vm_put32(s + 6, (uint32_t)rel);
		/* A 64-bit interrupt gate, present, DPL 0 (SDM vol. 3,
		 * 6.14.1). */
		g[0] = (stub & 0xffff) | ((uint64_t)LOADER_CS << 16) |
		       (0x8eULL << 40) | (((stub >> 16) & 0xffff) << 48);
		g[1] = stub >> 32;
		memcpy(test_vm_ptr(vm, idt_gpa + 16 * v), g, sizeof(g));
	}
	test_vm_put16(idtr, 256 * 16 - 1);
	test_vm_put64(idtr + 2, idt_gpa);
}
