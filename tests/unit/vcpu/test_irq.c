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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mmu.h"
#include "mmu_rcu.h"
#include "test_vm.h"
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

struct harness {
	struct test_vm vm;
	/* vCPU 0's timer: the deadline (0: none), set by the test before
	 * the vCPU starts, cleared by expire(), which raises TIMER_VECTOR
	 * and records when it ran. */
	_Atomic uint64_t deadline;
	_Atomic uint64_t fired_at;
};
#define TIMER_VECTOR 0x55

static void h_stopped(void *opaque, unsigned int vcpu,
		      enum vcpu_stop_reason why, const char *detail)
{
	struct harness *h = opaque;

	test_vm_record_stop(&h->vm, vcpu, why, detail);
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
	vcpu_raise_irq(h->vm.vcpus[vcpu], TIMER_VECTOR);
}

static const struct vcpu_ops h_ops = {
	.pio = test_vm_pio_none,
	.mmio_read = test_vm_mmio_read_none,
	.mmio_write = test_vm_mmio_write_none,
	.stopped = h_stopped,
	.deadline = h_deadline,
	.expire = h_expire,
};

static void *gpa_ptr(struct harness *h, uint64_t gpa)
{
	return test_vm_ptr(&h->vm, gpa);
}

static void harness_create(struct harness *h, unsigned int n, uint64_t entry)
{
	const struct test_vm_guest g = { .code = guest_code,
					 .code_len = sizeof(guest_code),
					 .code_gpa = CODE_GPA,
					 .data_gpa = DATA_GPA,
					 .entry = entry };

	memset(h, 0, sizeof(*h));
	test_vm_create(&h->vm, n, RAM_SIZE, &g, &h_ops, h);
	test_vm_write_idt(&h->vm, IDT_GPA, STUBS_GPA, IDTR_GPA,
			  CODE_GPA + COMMON);
}

/* Waits until nr_halted reaches want; false on timeout. */
static bool wait_halted(struct harness *h, unsigned int want)
{
	return test_vm_wait_count(&h->vm, &h->vm.nr_halted, want,
				  EVENT_SECONDS);
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
	test_vm_start(&h.vm);
	if (!wait_halted(&h, 1))
		fail_msg("the vCPU did not stop for good on HLT within %d s "
			 "(%s)",
			 EVENT_SECONDS,
			 h.vm.nr_crashed ? h.vm.crash : "no crash");
	assert_int_equal(vcpu_state(h.vm.vcpus[0]), VCPU_STATE_HALTED);
	test_vm_destroy(&h.vm);
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
	vcpu_set_add_wake_source(h.vm.set);
	test_vm_start(&h.vm);
	if (!wait_halted(&h, 1))
		fail_msg("cli; hlt with a wake source did not stop the vCPU");
	vcpu_set_remove_wake_source(h.vm.set);
	test_vm_destroy(&h.vm);
}

/* Vectors 0-31 are the exceptions' (SDM vol. 3, 6.2): refused, and
 * nothing becomes pending. */
static void test_irq_raise_exception_vector_refused(void **state)
{
	struct harness h;

	(void)state;
	harness_create(&h, 1, ENTRY_HLT);
	assert_int_equal(vcpu_raise_irq(h.vm.vcpus[0], 31), -EINVAL);
	assert_int_equal(vcpu_raise_irq(h.vm.vcpus[0], 256), -EINVAL);
	assert_int_equal(vcpu_raise_irq(h.vm.vcpus[0], 32), 1);
	assert_int_equal(vcpu_raise_irq(h.vm.vcpus[0], 32), 0);
	test_vm_destroy(&h.vm);
}

/* With a wake source, `sti; hlt` sleeps and one interrupt wakes it. */
static void test_irq_wakes_sleeping_hlt(void **state)
{
	struct harness h;
	uint64_t end;

	(void)state;
	harness_create(&h, 1, ENTRY_LOOP);
	vcpu_set_add_wake_source(h.vm.set);
	test_vm_start(&h.vm);
	end = test_vm_now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;
	while (!vcpu_halted(h.vm.vcpus[0]) && test_vm_now_ns() < end)
		usleep(1000);
	assert_true(vcpu_halted(h.vm.vcpus[0]));
	assert_int_equal(vcpu_state(h.vm.vcpus[0]), VCPU_STATE_RUNNING);
	assert_int_equal(guest_count(&h, 0, 0x77), 0);
	assert_int_equal(vcpu_raise_irq(h.vm.vcpus[0], 0x77), 1);
	while (guest_count(&h, 0, 0x77) == 0 && test_vm_now_ns() < end)
		usleep(1000);
	assert_int_equal(guest_count(&h, 0, 0x77), 1);
	/* End: the flag, then an interrupt to wake it to see it. */
	__atomic_store_n((uint64_t *)gpa_ptr(&h, FLAG_GPA), 1,
			 __ATOMIC_RELEASE);
	vcpu_raise_irq(h.vm.vcpus[0], 0x78);
	assert_true(wait_halted(&h, 1));
	vcpu_set_remove_wake_source(h.vm.set);
	test_vm_destroy(&h.vm);
}

/* Waits until vCPU 0 sleeps in HLT; false after EVENT_SECONDS. */
static bool wait_asleep(struct harness *h)
{
	uint64_t end =
		test_vm_now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;

	while (!vcpu_halted(h->vm.vcpus[0]) && test_vm_now_ns() < end)
		usleep(1000);
	return vcpu_halted(h->vm.vcpus[0]);
}

/* Waits until the guest counted want of vector v on vCPU 0. */
static bool wait_count(struct harness *h, unsigned int v, uint64_t want)
{
	uint64_t end =
		test_vm_now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;

	while (guest_count(h, 0, v) < want && test_vm_now_ns() < end)
		usleep(1000);
	return guest_count(h, 0, v) == want;
}

/* Ends the ENTRY_LOOP guest on vCPU 0: the flag, then an interrupt to
 * wake it to see it. */
static void finish_loop(struct harness *h)
{
	__atomic_store_n((uint64_t *)gpa_ptr(h, FLAG_GPA), 1, __ATOMIC_RELEASE);
	vcpu_raise_irq(h->vm.vcpus[0], 0x78);
	assert_true(wait_halted(h, 1));
}

/* An NMI wakes `sti; hlt` and goes through vector 2 (SDM vol. 3, 6.7). */
static void test_irq_nmi_wakes_sleeping_hlt(void **state)
{
	struct harness h;

	(void)state;
	harness_create(&h, 1, ENTRY_LOOP);
	vcpu_set_add_wake_source(h.vm.set);
	test_vm_start(&h.vm);
	assert_true(wait_asleep(&h));
	vcpu_raise_nmi(h.vm.vcpus[0]);
	if (!wait_count(&h, 2, 1))
		fail_msg("NMI taken %" PRIu64 " times, want 1",
			 guest_count(&h, 0, 2));
	finish_loop(&h);
	vcpu_set_remove_wake_source(h.vm.set);
	test_vm_destroy(&h.vm);
}

/* An interrupt raised while a halted vCPU is paused is taken once it
 * runs again, not before and not lost. */
static void test_irq_raised_while_paused_taken_on_resume(void **state)
{
	struct harness h;

	(void)state;
	harness_create(&h, 1, ENTRY_LOOP);
	vcpu_set_add_wake_source(h.vm.set);
	test_vm_start(&h.vm);
	assert_true(wait_asleep(&h));
	vcpu_set_pause(h.vm.vcpus[0], true);
	vcpu_wait_parked(h.vm.vcpus[0]);
	assert_int_equal(vcpu_raise_irq(h.vm.vcpus[0], 0x66), 1);
	usleep(20000);
	assert_int_equal(guest_count(&h, 0, 0x66), 0);
	vcpu_set_pause(h.vm.vcpus[0], false);
	if (!wait_count(&h, 0x66, 1))
		fail_msg("vector 0x66 taken %" PRIu64 " times after resume",
			 guest_count(&h, 0, 0x66));
	finish_loop(&h);
	vcpu_set_remove_wake_source(h.vm.set);
	test_vm_destroy(&h.vm);
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
	deadline = test_vm_now_ns() + delay;
	atomic_store(&h.deadline, deadline);
	test_vm_start(&h.vm);
	if (!wait_halted(&h, 1))
		fail_msg("the vCPU did not stop for good after its timer "
			 "(%s)",
			 h.vm.nr_crashed ? h.vm.crash : "no crash");
	assert_int_equal(guest_count(&h, 0, TIMER_VECTOR), 1);
	assert_true(atomic_load(&h.fired_at) >= deadline);
	print_message("timer fired %" PRIu64 " us after its deadline\n",
		      (atomic_load(&h.fired_at) - deadline) / 1000);
	test_vm_destroy(&h.vm);
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
		unsigned int cpu = (unsigned int)(x % h->vm.n);
		unsigned int vector = 32 + (unsigned int)((x >> 8) % 224);
		int ret = vcpu_raise_irq(h->vm.vcpus[cpu], vector);

		if (ret == 1)
			r->expected[cpu][vector]++;
		else
			r->coalesced++;
		/* TLB flush requests mixed in, with and without wait. */
		if (((x >> 20) & 31) == 0)
			vcpu_make_request(h->vm.vcpus[(x >> 25) % h->vm.n],
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
	for (unsigned int i = 0; i < h->vm.n; i++)
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
	deadline = test_vm_now_ns() + delay;
	atomic_store(&h.deadline, deadline); /* vCPU 0's timer */
	test_vm_start(&h.vm);
	while (test_vm_now_ns() < deadline - delay / 3)
		usleep(10000);
	pthread_mutex_lock(&h.vm.lock);
	if (h.vm.nr_halted || h.vm.nr_crashed)
		fail_msg("%u vCPUs reported halted for good while vCPU 0's "
			 "timer was armed (%s)",
			 h.vm.nr_halted,
			 h.vm.nr_crashed ? h.vm.crash : "no crash");
	pthread_mutex_unlock(&h.vm.lock);
	if (!wait_halted(&h, 2))
		fail_msg("%u of 2 vCPUs reported halted after the timer (%s)",
			 h.vm.nr_halted,
			 h.vm.nr_crashed ? h.vm.crash : "no crash");
	assert_true(atomic_load(&h.fired_at) >= deadline);
	assert_int_equal(guest_count(&h, 0, TIMER_VECTOR), 1);
	usleep(50000);
	assert_int_equal(h.vm.nr_halted, 2); /* reported once */
	assert_int_equal(vcpu_state(h.vm.vcpus[0]), VCPU_STATE_HALTED);
	assert_int_equal(vcpu_state(h.vm.vcpus[1]), VCPU_STATE_HALTED);
	test_vm_destroy(&h.vm);
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
	vcpu_set_add_wake_source(h.vm.set);
	test_vm_start(&h.vm);
	assert_false(vcpu_wait_for_sipi(h.vm.vcpus[1]));
	vcpu_raise_init(h.vm.vcpus[1]);
	end = test_vm_now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;
	while (!vcpu_wait_for_sipi(h.vm.vcpus[1]) && test_vm_now_ns() < end)
		usleep(1000);
	assert_true(vcpu_wait_for_sipi(h.vm.vcpus[1]));
	before = guest_count(&h, 1, 40);
	assert_int_equal(vcpu_raise_irq(h.vm.vcpus[1], 40), 1);
	usleep(100000);
	assert_int_equal(guest_count(&h, 1, 40), before);
	assert_int_equal(h.vm.nr_halted, 0);
	/* vCPU 0 ends with cli; hlt. */
	__atomic_store_n((uint64_t *)gpa_ptr(&h, FLAG_GPA), 1,
			 __ATOMIC_RELEASE);
	assert_int_equal(vcpu_raise_irq(h.vm.vcpus[0], 32), 1);
	if (!wait_halted(&h, 2))
		fail_msg("%u of 2 vCPUs reported halted (%s)", h.vm.nr_halted,
			 h.vm.nr_crashed ? h.vm.crash : "no crash");
	assert_int_equal(guest_count(&h, 1, 40), before);
	vcpu_set_remove_wake_source(h.vm.set);
	test_vm_destroy(&h.vm);
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
	vcpu_set_add_wake_source(h.vm.set);
	test_vm_start(&h.vm);
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
	end = test_vm_now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;
	while (!counts_match(&h, r) && test_vm_now_ns() < end)
		usleep(1000);
	for (unsigned int i = 0; i < h.vm.n; i++)
		for (unsigned int v = 32; v < 256; v++)
			if (guest_count(&h, i, v) != total_expected(r, i, v))
				fail_msg("vCPU %u vector %u: %" PRIu64
					 " taken, %" PRIu64
					 " raised (vCPU %s in HLT)",
					 i, v, guest_count(&h, i, v),
					 total_expected(r, i, v),
					 vcpu_halted(h.vm.vcpus[i]) ? "asleep" :
								      "not");
	assert_int_equal(h.vm.nr_crashed, 0);

	/* The end: the flag, then one interrupt each to see it. Each vCPU
	 * first gets back to its `sti; hlt` (nothing is pending now): one
	 * still in its loops would read the flag on its way there and stop
	 * with `cli; hlt` before the interrupt below could reach it. */
	end = test_vm_now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;
	for (unsigned int i = 0; i < h.vm.n; i++)
		while (!vcpu_halted(h.vm.vcpus[i]) && test_vm_now_ns() < end)
			usleep(1000);
	__atomic_store_n((uint64_t *)gpa_ptr(&h, FLAG_GPA), 1,
			 __ATOMIC_RELEASE);
	for (unsigned int i = 0; i < h.vm.n; i++)
		assert_int_equal(vcpu_raise_irq(h.vm.vcpus[i], 32), 1);
	if (!wait_halted(&h, h.vm.n))
		fail_msg("%u of %u vCPUs ended (%s)", h.vm.nr_halted, h.vm.n,
			 h.vm.nr_crashed ? h.vm.crash : "no crash");
	for (unsigned int i = 0; i < h.vm.n; i++) {
		assert_int_equal(guest_count(&h, i, 32),
				 total_expected(r, i, 32) + 1);
		vcpu_stats_get(h.vm.vcpus[i], &st);
		taken += st.irqs;
		halts += st.halts;
		insns += st.insns;
	}
	print_message("%lu raises: %" PRIu64 " taken, %" PRIu64
		      " coalesced; %" PRIu64 " HLTs, %" PRIu64
		      " instructions\n",
		      NR_RAISES + h.vm.n, taken, coalesced, halts, insns);
	assert_int_equal(taken + coalesced, NR_RAISES + h.vm.n);
	vcpu_set_remove_wake_source(h.vm.set);
	test_vm_destroy(&h.vm);
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
