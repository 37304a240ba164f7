/*
 * vcpu_write_guest() (core/vcpu/vcpu.c), the store the VM makes into
 * guest RAM for a vCPU (kvmclock's structures): the bytes land in order,
 * a dirty log sees every page written, a range that crosses pages is
 * whole, and a range any byte of which is not writable RAM (no memslot,
 * a read-only slot, past the physical address space) is refused with
 * nothing stored. The vCPU is not started: its (v) state is the test
 * thread's, as it is its own thread's in a callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "mmu.h"
#include "mmu_rcu.h"
#include "vcpu/vcpu.h"

#define RW_PAGES 16 /* slot 0: gpa 0, writable, dirty-logged */
#define RO_GPA (RW_PAGES * PAGE_SIZE) /* slot 1 right after: read-only */
#define RO_PAGES 4

static uint8_t *rw, *ro;
static struct vcpu_set *set;
static struct mmu *mmu;
static struct vcpu *v;

static void h_pio(void *opaque, unsigned int vcpu, uint16_t port,
		  unsigned int size, bool in, uint32_t *value)
{
	(void)opaque;
	(void)vcpu;
	(void)port;
	(void)size;
	(void)in;
	(void)value;
}

static void h_stopped(void *opaque, unsigned int vcpu,
		      enum vcpu_stop_reason why, const char *detail)
{
	(void)opaque;
	(void)vcpu;
	(void)why;
	(void)detail;
}

static const struct vcpu_ops ops = {
	.pio = h_pio,
	.stopped = h_stopped,
};

static int setup(void **state)
{
	char err[200];

	(void)state;
	mmu_rcu_register_thread();
	rw = mmap(NULL, RW_PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro = mmap(NULL, RO_PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rw == MAP_FAILED || ro == MAP_FAILED)
		return -1;
	memset(rw, 0xaa, RW_PAGES * PAGE_SIZE);
	memset(ro, 0xbb, RO_PAGES * PAGE_SIZE);
	set = vcpu_set_create(1);
	mmu = set ? mmu_create(&vcpu_mmu_ops, set) : NULL;
	if (!mmu ||
	    memslot_add(mmu, 0, 0, RW_PAGES, (hva_t)(uintptr_t)rw, 0, err,
			sizeof(err)) ||
	    memslot_add(mmu, 1, RO_GPA >> PAGE_SHIFT, RO_PAGES,
			(hva_t)(uintptr_t)ro, MEMSLOT_READONLY, err,
			sizeof(err)) ||
	    memslot_set_flags(mmu, 0, MEMSLOT_LOG_DIRTY, err, sizeof(err)))
		return -1;
	v = vcpu_create(set, 0, mmu, 0, &ops, NULL);
	return v ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	vcpu_destroy(v);
	memslot_delete(mmu, 0, NULL, 0);
	memslot_delete(mmu, 1, NULL, 0);
	mmu_destroy(mmu);
	vcpu_set_destroy(set);
	munmap(rw, RW_PAGES * PAGE_SIZE);
	munmap(ro, RO_PAGES * PAGE_SIZE);
	mmu_rcu_unregister_thread();
	return 0;
}

/* The pages of slot 0 logged dirty since the last harvest. */
static uint64_t harvest(void)
{
	uint64_t bits = 0;
	char err[200];

	if (memslot_dirty_log_get(mmu, 0, &bits, 1, err, sizeof(err)))
		fail_msg("dirty log: %s", err);
	return bits;
}

static void test_write_guest_stores_and_logs_dirty(void **state)
{
	uint8_t buf[32];

	(void)state;
	harvest();
	for (unsigned int i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i + 1);
	assert_true(vcpu_write_guest(v, 0x1fe0, buf, sizeof(buf)));
	assert_memory_equal(rw + 0x1fe0, buf, sizeof(buf));
	assert_int_equal(rw[0x1fdf], 0xaa);
	assert_int_equal(rw[0x2000], 0xaa);
	assert_int_equal(harvest(), 1ULL << 1);
}

static void test_write_guest_across_a_page(void **state)
{
	static const uint8_t buf[12] = "across pages";

	(void)state;
	harvest();
	assert_true(vcpu_write_guest(v, 0x2ffa, buf, sizeof(buf)));
	assert_memory_equal(rw + 0x2ffa, buf, sizeof(buf));
	assert_int_equal(harvest(), (1ULL << 2) | (1ULL << 3));
}

static void test_write_guest_refuses_what_is_not_writable_ram(void **state)
{
	static const gpa_t bad[] = {
		RO_GPA, /* a read-only slot */
		RO_GPA - 8, /* the last 8 bytes of RAM, then read-only */
		RO_GPA + RO_PAGES * PAGE_SIZE, /* no slot */
		0xfee00000ULL, /* MMIO */
		(1ULL << 52) - 8, /* the end of the address space */
		~0ULL - 4, /* past it, and a sum that would wrap */
	};
	uint8_t buf[32], rw_before[PAGE_SIZE];

	(void)state;
	memset(buf, 0x11, sizeof(buf));
	harvest();
	memcpy(rw_before, rw + RO_GPA - PAGE_SIZE, PAGE_SIZE);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (vcpu_write_guest(v, bad[i], buf, sizeof(buf)))
			fail_msg("a write at %#llx was taken",
				 (unsigned long long)bad[i]);
	/* Nothing of the range that began in RAM was stored. */
	assert_memory_equal(rw + RO_GPA - PAGE_SIZE, rw_before, PAGE_SIZE);
	for (unsigned int i = 0; i < RO_PAGES * PAGE_SIZE; i++)
		if (ro[i] != 0xbb)
			fail_msg("read-only RAM changed at +%#x", i);
	assert_int_equal(harvest(), 0);
	/* Lengths it does not take. */
	assert_false(vcpu_write_guest(v, 0x1000, buf, 0));
	assert_false(vcpu_write_guest(v, 0x1000, rw, PAGE_SIZE + 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_guest_stores_and_logs_dirty),
		cmocka_unit_test(test_write_guest_across_a_page),
		cmocka_unit_test(
			test_write_guest_refuses_what_is_not_writable_ram),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
