/*
 * Interrupts raised from other threads to real vCPU threads (core/vcpu:
 * vcpu_raise_irq(), VCPU_REQ_EVENT, HLT that sleeps): a guest that
 * halts with interrupts enabled, runs with them disabled and enabled in
 * turn, and counts in guest memory every interrupt its handlers take,
 * per vCPU and vector, while this process's threads raise interrupts and
 * TLB flush requests at random vCPUs. Every raise that made a vector
 * pending must be taken exactly once (none lost, none twice), and the
 * `sti; hlt` window must never swallow a wake-up: a lost one leaves a
 * vCPU asleep with its interrupt pending, which the final count catches.
 * Also: without a wake source, HLT still stops a vCPU for good (guests
 * that end with HLT), and vectors below 32 are refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "loader.h"
#include "mmu.h"
#include "mmu_rcu.h"
#include "vcpu/vcpu.h"

/* ThreadSanitizer makes everything several times slower. */
#ifdef MMUD_TSAN
#define NR_RAISES 20000UL
#else
#define NR_RAISES 100000UL
#endif
#define NR_VCPUS 4
#define NR_RAISERS 2
/* Bounds that catch hangs, not slowness (the machine is shared). */
#define EVENT_SECONDS 60

#define RAM_SIZE (4ULL << 20)
#define CODE_GPA 0x100000ULL
#define DATA_GPA 0x102000ULL
#define FLAG_GPA DATA_GPA
#define IDTR_GPA (DATA_GPA + 0x100)
#define IDT_GPA 0x103000ULL
#define STUBS_GPA 0x104000ULL /* vector v: push $v; jmp common */
#define COUNTS_GPA 0x106000ULL /* vCPU i, vector v: u64 at + 2048 i + 8 v */
#define STACKS_GPA 0x108000ULL /* vCPU i: the page below + 4096 (i + 1) */

/*
 * The guest. From ENTRY_LOOP each vCPU sets up its stack and counters
 * from its index (RSI at entry), loads the IDT, then loops: if the flag
 * is set, cli; hlt (stops for good); else sti; hlt; then 200 iterations
 * with IF = 0 and 200 with IF = 1. The common handler increments
 * counts[vector] (R15 holds this vCPU's array) and returns with IRETQ.
 * ENTRY_STI_HLT halts with interrupts enabled, ENTRY_HLT with them
 * disabled (the boot state).
 */
static const uint8_t guest_code[] = {
	0x89, 0xf0, /* 00: mov %esi,%eax */
	0xff, 0xc0, /* 02: inc %eax */
	0xc1, 0xe0, 0x0c, /* 04: shl $12,%eax */
	0x05, 0x00, 0x80, 0x10, 0x00, /* 07: add $STACKS_GPA,%eax */
	0x48, 0x89, 0xc4, /* 0c: mov %rax,%rsp */
	0x89, 0xf0, /* 0f: mov %esi,%eax */
	0xc1, 0xe0, 0x0b, /* 11: shl $11,%eax */
	0x05, 0x00, 0x60, 0x10, 0x00, /* 14: add $COUNTS_GPA,%eax */
	0x49, 0x89, 0xc7, /* 19: mov %rax,%r15 */
	0x0f, 0x01, 0x1c, 0x25, 0x00, 0x21, 0x10, 0x00, /* 1c: lidt IDTR */
	0x48, 0x83, 0x3c, 0x25, 0x00, 0x20, 0x10, 0x00,
	0x00, /* 24: cmpq $0,FLAG */
	0x75, 0x18, /* 2d: jne 47 */
	0xfb, /* 2f: sti */
	0xf4, /* 30: hlt */
	0xfa, /* 31: cli */
	0xb9, 0xc8, 0x00, 0x00, 0x00, /* 32: mov $200,%ecx */
	0xff, 0xc9, /* 37: dec %ecx */
	0x75, 0xfc, /* 39: jne 37 */
	0xfb, /* 3b: sti */
	0xb9, 0xc8, 0x00, 0x00, 0x00, /* 3c: mov $200,%ecx */
	0xff, 0xc9, /* 41: dec %ecx */
	0x75, 0xfc, /* 43: jne 41 */
	0xeb, 0xdd, /* 45: jmp 24 */
	0xfa, /* 47: cli */
	0xf4, /* 48: hlt */
	0xeb, 0xfd, /* 49: jmp 48 */
	0x50, /* 4b: common: push %rax */
	0x48, 0x8b, 0x44, 0x24, 0x08, /* 4c: mov 8(%rsp),%rax */
	0x49, 0xff, 0x04, 0xc7, /* 51: incq (%r15,%rax,8) */
	0x58, /* 55: pop %rax */
	0x48, 0x83, 0xc4, 0x08, /* 56: add $8,%rsp */
	0x48, 0xcf, /* 5a: iretq */
	0xfb, /* 5c: sti */
	0xf4, /* 5d: hlt */
	0xeb, 0xfd, /* 5e: jmp 5d */
	0xf4, /* 60: hlt */
	0xeb, 0xfd, /* 61: jmp 60 */
};
#define ENTRY_LOOP 0x00
#define COMMON 0x4b
#define ENTRY_STI_HLT 0x5c
#define ENTRY_HLT 0x60

#define ELF_CODE_OFF 0x1000
#define ELF_SIZE (ELF_CODE_OFF + sizeof(guest_code))

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void put_phdr(uint8_t *ph, uint32_t flags, uint64_t off, uint64_t gpa,
		     uint64_t filesz, uint64_t memsz)
{
	put32(ph + 0, 1); /* PT_LOAD */
	put32(ph + 4, flags);
	put64(ph + 8, off);
	put64(ph + 16, gpa);
	put64(ph + 24, gpa);
	put64(ph + 32, filesz);
	put64(ph + 40, memsz);
	put64(ph + 48, 0x1000);
}

/* An ELF64 image: the code at CODE_GPA, a zeroed data page at DATA_GPA. */
static void build_elf(uint8_t *img, uint64_t entry)
{
	static const uint8_t ident[16] = { 0x7f, 'E', 'L', 'F', 2, 1, 1 };

	memset(img, 0, ELF_SIZE);
	memcpy(img, ident, sizeof(ident));
	put16(img + 16, 2); /* ET_EXEC */
	put16(img + 18, 62); /* EM_X86_64 */
	put32(img + 20, 1);
	put64(img + 24, entry);
	put64(img + 32, 64);
	put16(img + 52, 64);
	put16(img + 54, 56);
	put16(img + 56, 2);
	put_phdr(img + 64, 5, ELF_CODE_OFF, CODE_GPA, sizeof(guest_code),
		 sizeof(guest_code));
	put_phdr(img + 64 + 56, 6, ELF_CODE_OFF, DATA_GPA, 0, 0x1000);
	memcpy(img + ELF_CODE_OFF, guest_code, sizeof(guest_code));
}

/* Legend: (c) constant while the vCPUs run; (l) under lock. */
struct harness {
	unsigned int n; /* (c) */
	void *ram; /* (c) */
	struct vcpu_set *set; /* (c) */
	struct mmu *mmu; /* (c) */
	struct vcpu *vcpus[NR_VCPUS]; /* (c) */

	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	unsigned int nr_halted; /* (l) vCPUs stopped by HLT */
	unsigned int nr_crashed; /* (l) any other stop */
	char crash[200]; /* (l) the first other stop */

	/* vCPU 0's timer: the deadline (0: none), set by the test before
	 * the vCPU starts, cleared by expire(), which raises TIMER_VECTOR
	 * and records when it ran. */
	_Atomic uint64_t deadline;
	_Atomic uint64_t fired_at;
};
#define TIMER_VECTOR 0x55

static void h_pio(void *opaque, unsigned int vcpu, uint16_t port,
		  unsigned int size, bool in, uint32_t *value)
{
	(void)opaque;
	(void)vcpu;
	(void)port;
	if (in)
		*value = size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
}

static uint64_t h_mmio_read(void *opaque, gpa_t gpa, unsigned int size)
{
	(void)opaque;
	(void)gpa;
	return size == 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
}

static void h_mmio_write(void *opaque, gpa_t gpa, unsigned int size,
			 uint64_t value)
{
	(void)opaque;
	(void)gpa;
	(void)size;
	(void)value;
}

static void h_stopped(void *opaque, unsigned int vcpu,
		      enum vcpu_stop_reason why, const char *detail)
{
	struct harness *h = opaque;

	pthread_mutex_lock(&h->lock);
	if (why == VCPU_STOP_HALTED) {
		h->nr_halted++;
	} else if (h->nr_crashed++ == 0) {
		snprintf(h->crash, sizeof(h->crash), "vCPU %u: %s", vcpu,
			 detail);
	}
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

static uint64_t h_deadline(void *opaque, unsigned int vcpu)
{
	struct harness *h = opaque;

	return vcpu ? 0 : atomic_load(&h->deadline);
}

static void h_expire(void *opaque, unsigned int vcpu, uint64_t now_ns)
{
	struct harness *h = opaque;

	atomic_store(&h->deadline, 0);
	atomic_store(&h->fired_at, now_ns);
	vcpu_raise_irq(h->vcpus[vcpu], TIMER_VECTOR);
}

static const struct vcpu_ops h_ops = {
	.pio = h_pio,
	.mmio_read = h_mmio_read,
	.mmio_write = h_mmio_write,
	.stopped = h_stopped,
	.deadline = h_deadline,
	.expire = h_expire,
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void *gpa_ptr(struct harness *h, uint64_t gpa)
{
	return (uint8_t *)h->ram + gpa;
}

/* The IDT (an interrupt gate for NMI and each vector 32-255 to its
 * stub), the stubs and the IDTR image, written before the vCPUs start. */
static void write_idt(struct harness *h)
{
	uint8_t *idtr = gpa_ptr(h, IDTR_GPA);

	for (unsigned int v = 2; v < 256; v = v == 2 ? 32 : v + 1) {
		uint64_t stub = STUBS_GPA + 16 * v;
		uint8_t *s = gpa_ptr(h, stub);
		uint64_t g[2];
		int32_t rel = (int32_t)(CODE_GPA + COMMON - (stub + 10));

		s[0] = 0x68; /* push $v */
		put32(s + 1, v);
		s[5] = 0xe9; /* jmp common */
		put32(s + 6, (uint32_t)rel);
		g[0] = (stub & 0xffff) | ((uint64_t)LOADER_CS << 16) |
		       (0x8eULL << 40) | (((stub >> 16) & 0xffff) << 48);
		g[1] = stub >> 32;
		memcpy(gpa_ptr(h, IDT_GPA + 16 * v), g, sizeof(g));
	}
	put16(idtr, 256 * 16 - 1);
	put64(idtr + 2, IDT_GPA);
}

static void harness_create(struct harness *h, unsigned int n, uint64_t entry)
{
	static uint8_t img[ELF_SIZE];
	struct loader_ram lram;
	struct loader_config lcfg;
	struct loader_result lres;
	pthread_condattr_t ca;
	char err[200];

	memset(h, 0, sizeof(*h));
	h->n = n;
	pthread_mutex_init(&h->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cond, &ca);
	pthread_condattr_destroy(&ca);
	h->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(h->ram != MAP_FAILED);

	build_elf(img, CODE_GPA + entry);
	lram = (struct loader_ram){ .gpa = 0, .size = RAM_SIZE, .hva = h->ram };
	lcfg = (struct loader_config){ .ram = &lram,
				       .nr_ram = 1,
				       .nr_vcpus = n };
	if (loader_load(&lcfg, img, sizeof(img), &lres, err, sizeof(err)))
		fail_msg("loader refused the test kernel: %s", err);
	write_idt(h);

	h->set = vcpu_set_create(n);
	assert_non_null(h->set);
	h->mmu = mmu_create(&vcpu_mmu_ops, h->set);
	assert_non_null(h->mmu);
	if (memslot_add(h->mmu, 0, 0, RAM_SIZE >> PAGE_SHIFT,
			(hva_t)(uintptr_t)h->ram, 0, err, sizeof(err)))
		fail_msg("memslot_add: %s", err);
	for (unsigned int i = 0; i < n; i++) {
		h->vcpus[i] =
			vcpu_create(h->set, i, h->mmu, lres.entry, &h_ops, h);
		assert_non_null(h->vcpus[i]);
	}
}

static void harness_start(struct harness *h)
{
	for (unsigned int i = 0; i < h->n; i++)
		assert_int_equal(vcpu_start(h->vcpus[i]), 0);
}

/* Waits until nr_halted reaches want; false on timeout. */
static bool wait_halted(struct harness *h, unsigned int want)
{
	struct timespec dl;
	bool ok = true;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += EVENT_SECONDS;
	pthread_mutex_lock(&h->lock);
	while (h->nr_halted < want && !h->nr_crashed && ok)
		ok = pthread_cond_timedwait(&h->cond, &h->lock, &dl) == 0;
	ok = h->nr_halted >= want;
	pthread_mutex_unlock(&h->lock);
	return ok;
}

static void harness_destroy(struct harness *h)
{
	for (unsigned int i = 0; i < h->n; i++)
		vcpu_destroy(h->vcpus[i]);
	assert_int_equal(memslot_delete(h->mmu, 0, NULL, 0), 0);
	mmu_destroy(h->mmu);
	vcpu_set_destroy(h->set);
	munmap(h->ram, RAM_SIZE);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
}

/* What the guest counted for vCPU i, vector v. */
static uint64_t guest_count(struct harness *h, unsigned int i, unsigned int v)
{
	return __atomic_load_n(
		(uint64_t *)gpa_ptr(h, COUNTS_GPA + 2048 * i + 8 * v),
		__ATOMIC_ACQUIRE);
}

/* ---- the tests -------------------------------------------------------- */

/* Without a wake source, HLT ends a vCPU as it always did, with
 * interrupts enabled or not (docs/GUEST-ABI.md: guests end with HLT). */
static void halt_for_good(uint64_t entry)
{
	struct harness h;

	harness_create(&h, 1, entry);
	harness_start(&h);
	if (!wait_halted(&h, 1))
		fail_msg("the vCPU did not stop for good on HLT within %d s "
			 "(%s)",
			 EVENT_SECONDS, h.nr_crashed ? h.crash : "no crash");
	assert_int_equal(vcpu_state(h.vcpus[0]), VCPU_STATE_HALTED);
	harness_destroy(&h);
}

static void test_irq_hlt_without_source_stops_for_good(void **state)
{
	(void)state;
	halt_for_good(ENTRY_HLT);
	halt_for_good(ENTRY_STI_HLT);
}

/* With a wake source, HLT with IF = 0 still stops for good: nothing but
 * an NMI or INIT could wake it, and neither has a source. */
static void test_irq_hlt_if_clear_with_source_stops_for_good(void **state)
{
	struct harness h;

	(void)state;
	harness_create(&h, 1, ENTRY_HLT);
	vcpu_set_add_wake_source(h.set);
	harness_start(&h);
	if (!wait_halted(&h, 1))
		fail_msg("cli; hlt with a wake source did not stop the vCPU");
	vcpu_set_remove_wake_source(h.set);
	harness_destroy(&h);
}

/* Vectors 0-31 are the exceptions' (SDM vol. 3, 6.2): refused, and
 * nothing becomes pending. */
static void test_irq_raise_exception_vector_refused(void **state)
{
	struct harness h;

	(void)state;
	harness_create(&h, 1, ENTRY_HLT);
	assert_int_equal(vcpu_raise_irq(h.vcpus[0], 31), -EINVAL);
	assert_int_equal(vcpu_raise_irq(h.vcpus[0], 256), -EINVAL);
	assert_int_equal(vcpu_raise_irq(h.vcpus[0], 32), 1);
	assert_int_equal(vcpu_raise_irq(h.vcpus[0], 32), 0);
	harness_destroy(&h);
}

/* With a wake source, `sti; hlt` sleeps and one interrupt wakes it. */
static void test_irq_wakes_sleeping_hlt(void **state)
{
	struct harness h;
	uint64_t end;

	(void)state;
	harness_create(&h, 1, ENTRY_LOOP);
	vcpu_set_add_wake_source(h.set);
	harness_start(&h);
	end = now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;
	while (!vcpu_halted(h.vcpus[0]) && now_ns() < end)
		usleep(1000);
	assert_true(vcpu_halted(h.vcpus[0]));
	assert_int_equal(vcpu_state(h.vcpus[0]), VCPU_STATE_RUNNING);
	assert_int_equal(guest_count(&h, 0, 0x77), 0);
	assert_int_equal(vcpu_raise_irq(h.vcpus[0], 0x77), 1);
	while (guest_count(&h, 0, 0x77) == 0 && now_ns() < end)
		usleep(1000);
	assert_int_equal(guest_count(&h, 0, 0x77), 1);
	/* End: the flag, then an interrupt to wake it to see it. */
	__atomic_store_n((uint64_t *)gpa_ptr(&h, FLAG_GPA), 1,
			 __ATOMIC_RELEASE);
	vcpu_raise_irq(h.vcpus[0], 0x78);
	assert_true(wait_halted(&h, 1));
	vcpu_set_remove_wake_source(h.set);
	harness_destroy(&h);
}

/* Waits until vCPU 0 sleeps in HLT; false after EVENT_SECONDS. */
static bool wait_asleep(struct harness *h)
{
	uint64_t end = now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;

	while (!vcpu_halted(h->vcpus[0]) && now_ns() < end)
		usleep(1000);
	return vcpu_halted(h->vcpus[0]);
}

/* Waits until the guest counted want of vector v on vCPU 0. */
static bool wait_count(struct harness *h, unsigned int v, uint64_t want)
{
	uint64_t end = now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;

	while (guest_count(h, 0, v) < want && now_ns() < end)
		usleep(1000);
	return guest_count(h, 0, v) == want;
}

/* Ends the ENTRY_LOOP guest on vCPU 0: the flag, then an interrupt to
 * wake it to see it. */
static void finish_loop(struct harness *h)
{
	__atomic_store_n((uint64_t *)gpa_ptr(h, FLAG_GPA), 1, __ATOMIC_RELEASE);
	vcpu_raise_irq(h->vcpus[0], 0x78);
	assert_true(wait_halted(h, 1));
}

/* An NMI wakes `sti; hlt` and goes through vector 2 (SDM vol. 3, 6.7). */
static void test_irq_nmi_wakes_sleeping_hlt(void **state)
{
	struct harness h;

	(void)state;
	harness_create(&h, 1, ENTRY_LOOP);
	vcpu_set_add_wake_source(h.set);
	harness_start(&h);
	assert_true(wait_asleep(&h));
	vcpu_raise_nmi(h.vcpus[0]);
	if (!wait_count(&h, 2, 1))
		fail_msg("NMI taken %" PRIu64 " times, want 1",
			 guest_count(&h, 0, 2));
	finish_loop(&h);
	vcpu_set_remove_wake_source(h.set);
	harness_destroy(&h);
}

/* An interrupt raised while a halted vCPU is paused is taken once it
 * runs again, not before and not lost. */
static void test_irq_raised_while_paused_taken_on_resume(void **state)
{
	struct harness h;

	(void)state;
	harness_create(&h, 1, ENTRY_LOOP);
	vcpu_set_add_wake_source(h.set);
	harness_start(&h);
	assert_true(wait_asleep(&h));
	vcpu_set_pause(h.vcpus[0], true);
	vcpu_wait_parked(h.vcpus[0]);
	assert_int_equal(vcpu_raise_irq(h.vcpus[0], 0x66), 1);
	usleep(20000);
	assert_int_equal(guest_count(&h, 0, 0x66), 0);
	vcpu_set_pause(h.vcpus[0], false);
	if (!wait_count(&h, 0x66, 1))
		fail_msg("vector 0x66 taken %" PRIu64 " times after resume",
			 guest_count(&h, 0, 0x66));
	finish_loop(&h);
	vcpu_set_remove_wake_source(h.set);
	harness_destroy(&h);
}

/*
 * A timer deadline is a wake source: the vCPU sleeps in sti;hlt with
 * HLT's sleep timing out at it, the timer's interrupt is taken no
 * earlier than the deadline, and once no timer is armed (and no source
 * registered) the next HLT stops the vCPU for good again.
 */
static void test_irq_timer_deadline_wakes_hlt(void **state)
{
	const uint64_t delay = 200000000ULL; /* 200 ms */
	struct harness h;
	uint64_t deadline;

	(void)state;
	harness_create(&h, 1, ENTRY_LOOP);
	deadline = now_ns() + delay;
	atomic_store(&h.deadline, deadline);
	harness_start(&h);
	if (!wait_halted(&h, 1))
		fail_msg("the vCPU did not stop for good after its timer "
			 "(%s)",
			 h.nr_crashed ? h.crash : "no crash");
	assert_int_equal(guest_count(&h, 0, TIMER_VECTOR), 1);
	assert_true(atomic_load(&h.fired_at) >= deadline);
	print_message("timer fired %" PRIu64 " us after its deadline\n",
		      (atomic_load(&h.fired_at) - deadline) / 1000);
	harness_destroy(&h);
}

struct raiser {
	pthread_t thread;
	struct harness *h;
	uint64_t seed;
	/* Raises that made the vector pending, per vCPU and vector. */
	uint64_t expected[NR_VCPUS][256];
	uint64_t coalesced;
};

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *raiser_main(void *arg)
{
	struct raiser *r = arg;
	struct harness *h = r->h;

	mmu_rcu_register_thread();
	for (unsigned long i = 0; i < NR_RAISES / NR_RAISERS; i++) {
		uint64_t x = xorshift(&r->seed);
		unsigned int cpu = (unsigned int)(x % h->n);
		unsigned int vector = 32 + (unsigned int)((x >> 8) % 224);
		int ret = vcpu_raise_irq(h->vcpus[cpu], vector);

		if (ret == 1)
			r->expected[cpu][vector]++;
		else
			r->coalesced++;
		/* TLB flush requests mixed in, with and without wait. */
		if (((x >> 20) & 31) == 0)
			vcpu_make_request(h->vcpus[(x >> 25) % h->n],
					  VCPU_REQ_TLB_FLUSH, (x >> 30) & 1);
		/* Pauses, so vCPUs get to sleep in HLT between raises. */
		if (((x >> 32) & 15) == 0)
			nanosleep(
				&(struct timespec){
					.tv_nsec = (long)((x >> 40) % 20000) },
				NULL);
	}
	mmu_rcu_unregister_thread();
	return NULL;
}

static uint64_t total_expected(struct raiser *r, unsigned int cpu,
			       unsigned int v)
{
	uint64_t t = 0;

	for (unsigned int k = 0; k < NR_RAISERS; k++)
		t += r[k].expected[cpu][v];
	return t;
}

static bool counts_match(struct harness *h, struct raiser *r)
{
	for (unsigned int i = 0; i < h->n; i++)
		for (unsigned int v = 32; v < 256; v++)
			if (guest_count(h, i, v) != total_expected(r, i, v))
				return false;
	return true;
}

/*
 * Halted for good is the whole VM's state (vcpu.h, VCPU_STOP_HALTED): a
 * vCPU asleep in HLT with nothing of its own to wake it is not stopped
 * while another vCPU's timer is armed, since that vCPU may still wake
 * and raise something; once the timer has fired and both sleep with
 * nothing armed, both are reported, each once.
 */
static void test_irq_halted_for_good_waits_for_every_vcpu(void **state)
{
	const uint64_t delay = 300000000ULL; /* 300 ms */
	struct harness h;
	uint64_t deadline;

	(void)state;
	harness_create(&h, 2, ENTRY_LOOP);
	deadline = now_ns() + delay;
	atomic_store(&h.deadline, deadline); /* vCPU 0's timer */
	harness_start(&h);
	while (now_ns() < deadline - delay / 3)
		usleep(10000);
	pthread_mutex_lock(&h.lock);
	if (h.nr_halted || h.nr_crashed)
		fail_msg("%u vCPUs reported halted for good while vCPU 0's "
			 "timer was armed (%s)",
			 h.nr_halted, h.nr_crashed ? h.crash : "no crash");
	pthread_mutex_unlock(&h.lock);
	if (!wait_halted(&h, 2))
		fail_msg("%u of 2 vCPUs reported halted after the timer (%s)",
			 h.nr_halted, h.nr_crashed ? h.crash : "no crash");
	assert_true(atomic_load(&h.fired_at) >= deadline);
	assert_int_equal(guest_count(&h, 0, TIMER_VECTOR), 1);
	usleep(50000);
	assert_int_equal(h.nr_halted, 2); /* reported once */
	assert_int_equal(vcpu_state(h.vcpus[0]), VCPU_STATE_HALTED);
	assert_int_equal(vcpu_state(h.vcpus[1]), VCPU_STATE_HALTED);
	harness_destroy(&h);
}

/*
 * INIT (vcpu_raise_init) parks a vCPU waiting for a SIPI, which is never
 * executed: interrupts raised to it stay pending, and it counts as
 * halted, so when the other vCPU ends with cli; hlt the VM has halted
 * for good even with a wake source registered.
 */
static void test_irq_init_parks_vcpu_and_counts_as_halted(void **state)
{
	struct harness h;
	uint64_t end, before;

	(void)state;
	harness_create(&h, 2, ENTRY_LOOP);
	vcpu_set_add_wake_source(h.set);
	harness_start(&h);
	assert_false(vcpu_wait_for_sipi(h.vcpus[1]));
	vcpu_raise_init(h.vcpus[1]);
	end = now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;
	while (!vcpu_wait_for_sipi(h.vcpus[1]) && now_ns() < end)
		usleep(1000);
	assert_true(vcpu_wait_for_sipi(h.vcpus[1]));
	before = guest_count(&h, 1, 40);
	assert_int_equal(vcpu_raise_irq(h.vcpus[1], 40), 1);
	usleep(100000);
	assert_int_equal(guest_count(&h, 1, 40), before);
	assert_int_equal(h.nr_halted, 0);
	/* vCPU 0 ends with cli; hlt. */
	__atomic_store_n((uint64_t *)gpa_ptr(&h, FLAG_GPA), 1,
			 __ATOMIC_RELEASE);
	assert_int_equal(vcpu_raise_irq(h.vcpus[0], 32), 1);
	if (!wait_halted(&h, 2))
		fail_msg("%u of 2 vCPUs reported halted (%s)", h.nr_halted,
			 h.nr_crashed ? h.crash : "no crash");
	assert_int_equal(guest_count(&h, 1, 40), before);
	vcpu_set_remove_wake_source(h.set);
	harness_destroy(&h);
}

static void test_irq_stress_every_interrupt_taken_once(void **state)
{
	static struct raiser r[NR_RAISERS];
	struct harness h;
	uint64_t end, coalesced = 0, taken = 0, halts = 0, insns = 0;
	struct vcpu_stats st;

	(void)state;
	memset(r, 0, sizeof(r));
	harness_create(&h, NR_VCPUS, ENTRY_LOOP);
	vcpu_set_add_wake_source(h.set);
	harness_start(&h);
	for (unsigned int k = 0; k < NR_RAISERS; k++) {
		r[k].h = &h;
		r[k].seed = 0x9e3779b97f4a7c15ULL * (k + 1);
		assert_int_equal(pthread_create(&r[k].thread, NULL, raiser_main,
						&r[k]),
				 0);
	}
	for (unsigned int k = 0; k < NR_RAISERS; k++) {
		pthread_join(r[k].thread, NULL);
		coalesced += r[k].coalesced;
	}

	/* Every interrupt raised must be taken; nothing raises any more. */
	end = now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;
	while (!counts_match(&h, r) && now_ns() < end)
		usleep(1000);
	for (unsigned int i = 0; i < h.n; i++)
		for (unsigned int v = 32; v < 256; v++)
			if (guest_count(&h, i, v) != total_expected(r, i, v))
				fail_msg("vCPU %u vector %u: %" PRIu64
					 " taken, %" PRIu64
					 " raised (vCPU %s in HLT)",
					 i, v, guest_count(&h, i, v),
					 total_expected(r, i, v),
					 vcpu_halted(h.vcpus[i]) ? "asleep" :
								   "not");
	assert_int_equal(h.nr_crashed, 0);

	/* The end: the flag, then one interrupt each to see it. */
	__atomic_store_n((uint64_t *)gpa_ptr(&h, FLAG_GPA), 1,
			 __ATOMIC_RELEASE);
	for (unsigned int i = 0; i < h.n; i++)
		assert_int_equal(vcpu_raise_irq(h.vcpus[i], 32), 1);
	if (!wait_halted(&h, h.n))
		fail_msg("%u of %u vCPUs ended (%s)", h.nr_halted, h.n,
			 h.nr_crashed ? h.crash : "no crash");
	for (unsigned int i = 0; i < h.n; i++) {
		assert_int_equal(guest_count(&h, i, 32),
				 total_expected(r, i, 32) + 1);
		vcpu_stats_get(h.vcpus[i], &st);
		taken += st.irqs;
		halts += st.halts;
		insns += st.insns;
	}
	print_message("%lu raises: %" PRIu64 " taken, %" PRIu64
		      " coalesced; %" PRIu64 " HLTs, %" PRIu64
		      " instructions\n",
		      NR_RAISES + h.n, taken, coalesced, halts, insns);
	assert_int_equal(taken + coalesced, NR_RAISES + h.n);
	vcpu_set_remove_wake_source(h.set);
	harness_destroy(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_irq_hlt_without_source_stops_for_good),
		cmocka_unit_test(
			test_irq_hlt_if_clear_with_source_stops_for_good),
		cmocka_unit_test(test_irq_raise_exception_vector_refused),
		cmocka_unit_test(test_irq_halted_for_good_waits_for_every_vcpu),
		cmocka_unit_test(test_irq_init_parks_vcpu_and_counts_as_halted),
		cmocka_unit_test(test_irq_wakes_sleeping_hlt),
		cmocka_unit_test(test_irq_nmi_wakes_sleeping_hlt),
		cmocka_unit_test(test_irq_raised_while_paused_taken_on_resume),
		cmocka_unit_test(test_irq_timer_deadline_wakes_hlt),
		cmocka_unit_test(test_irq_stress_every_interrupt_taken_once),
	};
	int r;

	mmu_rcu_register_thread();
	r = cmocka_run_group_tests_name("vcpu_irq", tests, NULL, NULL);
	mmu_rcu_unregister_thread();
	return r;
}
