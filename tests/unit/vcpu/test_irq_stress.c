/*
 * The interrupt stress (concurrency suite, run under ThreadSanitizer in
 * CI): four real vCPU threads run a guest that halts with interrupts
 * enabled, and runs with them disabled and enabled in turn, while this
 * process's threads raise external interrupts, NMIs and timer deadlines
 * at random vCPUs and mix in TLB flush requests (with and without wait),
 * requests to every vCPU, and pauses. Every interrupt is accounted for
 * exactly once: a raiser raises a vector on a vCPU again only once the
 * guest has counted the previous one, so every raise must make its
 * vector pending (vcpu_raise_irq() returns 1; 0 would mean it was taken
 * and still pending: a duplicate), and at the end the guest's count of
 * each vCPU and vector equals the raises exactly. A watchdog fails the
 * test when a vCPU with an interrupt outstanding makes no progress for
 * STUCK_SECONDS (a lost wake-up), naming the vCPU, whether it sleeps in
 * HLT, and what it has not taken. The guest's handler also checks the
 * architecture: an external interrupt is never taken with RFLAGS.IF = 0,
 * and never between `sti` and `hlt` (the STI interrupt shadow, SDM vol.
 * 3, 6.8.3: one taken there returns to HLT and sleeps on, the lost
 * wake-up this shadow exists to prevent). test_irq.c has the single
 * scenarios; this file is the exact accounting under load.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mmu.h"
#include "mmu_rcu.h"
#include "test_vm.h"
#include "vcpu/vcpu.h"

/* External interrupts raised in all, split among the raisers; 10^5
 * under ThreadSanitizer too (about 3 s there: the handshake keeps
 * hundreds outstanding at once). */
#define NR_IRQS 100000UL
#define NR_VCPUS 4
#define NR_RAISERS 4
/* Each raiser owns 48 vectors: 32-79, 80-127, 128-175, 176-223. */
#define RAISER_VECTORS 48
#define TIMER_VECTOR 0xf0
#define NMI_VECTOR 2
/* The guest's own error counters, at vectors nothing raises. */
#define COUNT_IN_SHADOW 0 /* taken between sti and hlt */
#define COUNT_IF_CLEAR 1 /* external interrupt taken with IF = 0 */
/* Bounds that catch hangs, not slowness (the machine is shared). */
#define STUCK_SECONDS 30
#define END_SECONDS 600

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
 * The guest (every vCPU enters at 0 with its index in RSI): stack and
 * counters from the index (R15 = this vCPU's counts), LIDT, then until
 * the flag is set: cli; sti; hlt (IF is 0 before the STI, so its shadow
 * covers the HLT); 200 iterations with IF = 0, 200 with IF = 1. The common handler counts counts[vector]; for an external interrupt
 * (not the NMI) it also counts counts[1] when the interrupted RFLAGS had
 * IF = 0 and counts[0] when the interrupted RIP is the HLT right after
 * the STI (CODE_GPA + HLT_AFTER_STI).
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
	0x0f, 0x01, 0x1c, 0x25, 0x00,
	0x21, 0x10, 0x00, /* 1c: lidt IDTR */
	0xfa, /* 24: cli */
	0x48, 0x83, 0x3c, 0x25, 0x00,
	0x20, 0x10, 0x00, 0x00, /* 25: cmpq $0,FLAG */
	0x75, 0x18, /* 2e: jne 48 */
	0xfb, /* 30: sti (IF was 0: the shadow covers the HLT) */
	0xf4, /* 31: hlt */
	0xfa, /* 32: cli */
	0xb9, 0xc8, 0x00, 0x00, 0x00, /* 33: mov $200,%ecx */
	0xff, 0xc9, /* 38: dec %ecx */
	0x75, 0xfc, /* 3a: jne 38 */
	0xfb, /* 3c: sti */
	0xb9, 0xc8, 0x00, 0x00, 0x00, /* 3d: mov $200,%ecx */
	0xff, 0xc9, /* 42: dec %ecx */
	0x75, 0xfc, /* 44: jne 42 */
	0xeb, 0xdc, /* 46: jmp 24 */
	0xfa, /* 48: cli */
	0xf4, /* 49: hlt */
	0xeb, 0xfd, /* 4a: jmp 49 */
	0x50, /* 4c: common: push %rax */
	0x48, 0x8b, 0x44, 0x24, 0x08, /* 4d: mov 8(%rsp),%rax (vector) */
	0x83, 0xf8, 0x02, /* 52: cmp $2,%eax */
	0x74, 0x1c, /* 55: je 73 */
	0xf7, 0x44, 0x24, 0x20, 0x00,
	0x02, 0x00, 0x00, /* 57: testl $0x200,32(%rsp) (RFLAGS.IF) */
	0x75, 0x04, /* 5f: jne 65 */
	0x49, 0xff, 0x47, 0x08, /* 61: incq 8(%r15) */
	0x48, 0x81, 0x7c, 0x24, 0x10,
	0x31, 0x00, 0x10, 0x00, /* 65: cmpq $0x100031,16(%rsp) (RIP) */
	0x75, 0x03, /* 6e: jne 73 */
	0x49, 0xff, 0x07, /* 70: incq (%r15) */
	0x49, 0xff, 0x04, 0xc7, /* 73: incq (%r15,%rax,8) */
	0x58, /* 77: pop %rax */
	0x48, 0x83, 0xc4, 0x08, /* 78: add $8,%rsp */
	0x48, 0xcf, /* 7c: iretq */
};
#define COMMON 0x4c
#define HLT_AFTER_STI 0x31

/*
 * Legend: (c) constant while the vCPUs run; (l) under lock; (a) atomic,
 * relaxed unless said (each is written by one thread only, read by the
 * watchdog for its report).
 */
struct stress {
	struct test_vm vm;
	unsigned int nr_anomalies; /* (l) vm.lock */
	char anomaly[256]; /* (l) vm.lock: the first anomaly */

	/* (a) Set when the raisers are done: the others stop too. */
	atomic_bool done;
	/* (a) Raises per vCPU and vector that made it pending, each
	 * written by the vector's owner only: raisers for 32-223, the
	 * timer's expire() for TIMER_VECTOR, the NMI thread for vector 2. */
	_Atomic uint64_t raised[NR_VCPUS][256];
	/* (a) Each vCPU's timer deadline (CLOCK_MONOTONIC ns, 0: none):
	 * armed by the timer thread, cleared by expire() on the vCPU. */
	_Atomic uint64_t deadline[NR_VCPUS];
	/* (a) expire(): how late each timer fired, the worst one. */
	_Atomic uint64_t late_sum, late_max;
	/* (a) Pauses made and TLB flush requests sent (the report). */
	_Atomic uint64_t pauses, flushes;
};

static struct stress S;

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *gpa_ptr(uint64_t gpa)
{
	return test_vm_ptr(&S.vm, gpa);
}

/* What the guest counted for vCPU i, vector v (its stores are release
 * stores of the software CPU: docs/ARCHITECTURE.md, "Guest memory is
 * shared memory"). */
static uint64_t guest_count(unsigned int i, unsigned int v)
{
	return __atomic_load_n(
		(uint64_t *)gpa_ptr(COUNTS_GPA + 2048 * i + 8 * v),
		__ATOMIC_ACQUIRE);
}

static uint64_t raised(unsigned int i, unsigned int v)
{
	return atomic_load_explicit(&S.raised[i][v], memory_order_relaxed);
}

static void raised_inc(unsigned int i, unsigned int v)
{
	atomic_store_explicit(&S.raised[i][v], raised(i, v) + 1,
			      memory_order_relaxed);
}

static bool outstanding(unsigned int i, unsigned int v)
{
	return guest_count(i, v) != raised(i, v);
}

__attribute__((format(printf, 1, 2))) static void anomaly(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&S.vm.lock);
	if (S.nr_anomalies++ == 0 && !S.vm.nr_crashed) {
		va_start(ap, fmt);
		vsnprintf(S.anomaly, sizeof(S.anomaly), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&S.vm.lock);
}

static void h_pio(void *opaque, unsigned int vcpu, uint16_t port,
		  unsigned int size, bool in, uint32_t *value)
{
	(void)opaque;
	anomaly("vCPU %u: port I/O to %#x", vcpu, port);
	if (in)
		*value = size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
}

static uint64_t h_mmio_read(void *opaque, gpa_t gpa, unsigned int size)
{
	(void)opaque;
	anomaly("MMIO read at %#llx", (unsigned long long)gpa);
	return size == 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
}

static void h_mmio_write(void *opaque, gpa_t gpa, unsigned int size,
			 uint64_t value)
{
	(void)opaque;
	(void)size;
	(void)value;
	anomaly("MMIO write at %#llx", (unsigned long long)gpa);
}

static void h_stopped(void *opaque, unsigned int vcpu,
		      enum vcpu_stop_reason why, const char *detail)
{
	(void)opaque;
	if (why == VCPU_STOP_HALTED && !atomic_load(&S.done))
		anomaly("vCPU %u stopped for good on HLT before the end: %s",
			vcpu, detail);
	else
		test_vm_record_stop(&S.vm, vcpu, why, detail);
}

static uint64_t h_deadline(void *opaque, unsigned int vcpu)
{
	(void)opaque;
	return atomic_load(&S.deadline[vcpu]);
}

/* On the vCPU's thread, once now_ns has reached the deadline. The
 * deadline is cleared last, after the raise is counted: the timer thread
 * arms the next one only then (seq_cst, as every access to it). */
static void h_expire(void *opaque, unsigned int vcpu, uint64_t now_ns)
{
	uint64_t d = atomic_load(&S.deadline[vcpu]), late, max;

	(void)opaque;
	if (!d)
		return;
	if (now_ns < d)
		anomaly("vCPU %u: timer expired %" PRIu64 " ns early", vcpu,
			d - now_ns);
	late = now_ns - d;
	atomic_fetch_add(&S.late_sum, late);
	max = atomic_load(&S.late_max);
	while (late > max &&
	       !atomic_compare_exchange_weak(&S.late_max, &max, late))
		;
	raised_inc(vcpu, TIMER_VECTOR);
	if (vcpu_raise_irq(S.vm.vcpus[vcpu], TIMER_VECTOR) != 1)
		anomaly("vCPU %u: the timer vector was still pending", vcpu);
	atomic_store(&S.deadline[vcpu], 0);
}

static const struct vcpu_ops h_ops = {
	.pio = h_pio,
	.mmio_read = h_mmio_read,
	.mmio_write = h_mmio_write,
	.stopped = h_stopped,
	.deadline = h_deadline,
	.expire = h_expire,
};

static void stress_create(void)
{
	const struct test_vm_guest g = { .code = guest_code,
					 .code_len = sizeof(guest_code),
					 .code_gpa = CODE_GPA,
					 .data_gpa = DATA_GPA };

	memset(&S, 0, sizeof(S));
	test_vm_create(&S.vm, NR_VCPUS, RAM_SIZE, &g, &h_ops, NULL);
	test_vm_write_idt(&S.vm, IDT_GPA, STUBS_GPA, IDTR_GPA,
			  CODE_GPA + COMMON);
}

/* ---- the threads that raise ------------------------------------------- */

struct raiser {
	pthread_t thread;
	unsigned int first_vector;
	uint64_t seed;
	uint64_t busy; /* picks whose vector was still outstanding */
};

/* Raises NR_IRQS / NR_RAISERS interrupts on its own vectors, each on a
 * vCPU that has taken the previous raise of that vector. */
static void *raiser_main(void *arg)
{
	struct raiser *r = arg;
	unsigned long left = NR_IRQS / NR_RAISERS;
	unsigned int misses = 0;

	mmu_rcu_register_thread();
	while (left) {
		uint64_t x = xorshift(&r->seed);
		unsigned int cpu = (unsigned int)(x % NR_VCPUS);
		unsigned int v = r->first_vector +
				 (unsigned int)((x >> 8) % RAISER_VECTORS);
		int ret;

		if (outstanding(cpu, v)) {
			r->busy++;
			if (++misses % 64 == 0)
				sched_yield();
			continue;
		}
		/* Counted first: the guest never counts more than was
		 * raised, so a count above it is a duplicate at once. */
		raised_inc(cpu, v);
		ret = vcpu_raise_irq(S.vm.vcpus[cpu], v);
		if (ret != 1) {
			anomaly("vCPU %u vector %u: taken %" PRIu64
				" times of %" PRIu64
				", yet raising it again returned %d "
				"(still pending: a duplicate)",
				cpu, v, guest_count(cpu, v), raised(cpu, v) - 1,
				ret);
			break;
		}
		left--;
		/* Pauses, so that vCPUs get to sleep in HLT. */
		if (((x >> 32) & 7) == 0)
			nanosleep(
				&(struct timespec){
					.tv_nsec = (long)((x >> 40) % 20000) },
				NULL);
	}
	mmu_rcu_unregister_thread();
	return NULL;
}

/* The sum of everything vCPU i's guest counted. */
static uint64_t guest_total(unsigned int i)
{
	uint64_t t = 0;

	for (unsigned int v = 0; v < 256; v++)
		t += guest_count(i, v);
	return t;
}

/* Arms each vCPU's timer again (0-300 us ahead) once its last interrupt
 * was taken, and sends NMIs the same way, until the raisers are done. */
static void *timer_nmi_main(void *arg)
{
	uint64_t seed = 0x2545f4914f6cdd1dULL;

	(void)arg;
	mmu_rcu_register_thread();
	while (!atomic_load(&S.done)) {
		uint64_t x = xorshift(&seed);
		unsigned int cpu = (unsigned int)(x % NR_VCPUS);

		if (!atomic_load(&S.deadline[cpu]) &&
		    !outstanding(cpu, TIMER_VECTOR)) {
			atomic_store(&S.deadline[cpu],
				     test_vm_now_ns() + (x >> 16) % 300000);
			/* The sleeping vCPU takes its new deadline as HLT's
			 * timeout once a request wakes it. */
			vcpu_make_request(S.vm.vcpus[cpu], VCPU_REQ_EVENT,
					  false);
		}
		/* NMIs are not maskable: only once the vCPU has an IDT
		 * (it has taken an interrupt, so it ran its LIDT). */
		if (((x >> 40) & 7) == 0 && !outstanding(cpu, NMI_VECTOR) &&
		    guest_total(cpu)) {
			raised_inc(cpu, NMI_VECTOR);
			vcpu_raise_nmi(S.vm.vcpus[cpu]);
		}
		nanosleep(&(struct timespec){ .tv_nsec = 20000 }, NULL);
	}
	mmu_rcu_unregister_thread();
	return NULL;
}

/* TLB flush requests (with and without wait, to one vCPU or all) and
 * pauses: a parked vCPU takes nothing until it is resumed. */
static void *control_main(void *arg)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL;

	(void)arg;
	mmu_rcu_register_thread();
	while (!atomic_load(&S.done)) {
		uint64_t x = xorshift(&seed);
		unsigned int cpu = (unsigned int)(x % NR_VCPUS);
		uint64_t before;

		switch ((x >> 8) % 4) {
		case 0:
		case 1:
			vcpu_make_request(S.vm.vcpus[cpu], VCPU_REQ_TLB_FLUSH,
					  (x >> 16) & 1);
			atomic_fetch_add(&S.flushes, 1);
			break;
		case 2:
			vcpu_set_make_request(S.vm.set, VCPU_REQ_TLB_FLUSH,
					      (x >> 16) & 1);
			atomic_fetch_add(&S.flushes, NR_VCPUS);
			break;
		case 3:
			vcpu_set_pause(S.vm.vcpus[cpu], true);
			vcpu_wait_parked(S.vm.vcpus[cpu]);
			before = guest_total(cpu);
			usleep(200);
			if (guest_total(cpu) != before)
				anomaly("vCPU %u took an interrupt while "
					"parked",
					cpu);
			vcpu_set_pause(S.vm.vcpus[cpu], false);
			atomic_fetch_add(&S.pauses, 1);
			break;
		}
		nanosleep(&(struct timespec){ .tv_nsec = (long)((x >> 24) %
								200000) },
			  NULL);
	}
	mmu_rcu_unregister_thread();
	return NULL;
}

/* ---- the watchdog ------------------------------------------------------ */

static bool anything_outstanding(unsigned int i)
{
	for (unsigned int v = 2; v < 256; v++)
		if (v == 2 || v >= 32)
			if (outstanding(i, v))
				return true;
	return false;
}

static void fail_stuck(unsigned int i, uint64_t since_ns)
{
	char list[512];
	size_t len = 0;

	list[0] = '\0';
	for (unsigned int v = 2; v < 256 && len < sizeof(list) - 40; v++)
		if ((v == 2 || v >= 32) && outstanding(i, v))
			len += (size_t)snprintf(list + len, sizeof(list) - len,
						" %u (%" PRIu64 "/%" PRIu64 ")",
						v, guest_count(i, v),
						raised(i, v));
	fail_msg("vCPU %u stuck: no interrupt taken for %" PRIu64
		 " s with some outstanding; it %s in HLT; vectors (taken/"
		 "raised):%s",
		 i, (test_vm_now_ns() - since_ns) / 1000000000ULL,
		 vcpu_halted(S.vm.vcpus[i]) ? "sleeps" : "is not", list);
}

static void check_anomalies(void)
{
	char msg[256];

	pthread_mutex_lock(&S.vm.lock);
	if (!S.vm.nr_crashed && !S.nr_anomalies) {
		pthread_mutex_unlock(&S.vm.lock);
		return;
	}
	memcpy(msg, S.vm.nr_crashed ? S.vm.crash : S.anomaly, sizeof(msg));
	pthread_mutex_unlock(&S.vm.lock);
	fail_msg("%s", msg);
}

/* Until pred holds: every 10 ms, anomalies and stuck vCPUs fail. */
static void watch(bool (*pred)(void))
{
	uint64_t progress[NR_VCPUS], since[NR_VCPUS];
	uint64_t end = test_vm_now_ns() + (uint64_t)END_SECONDS * 1000000000ULL;

	for (unsigned int i = 0; i < NR_VCPUS; i++) {
		progress[i] = guest_total(i);
		since[i] = test_vm_now_ns();
	}
	while (!pred()) {
		usleep(10000);
		check_anomalies();
		for (unsigned int i = 0; i < NR_VCPUS; i++) {
			uint64_t t = guest_total(i), now = test_vm_now_ns();

			for (unsigned int v = 0; v < 256; v++)
				if (guest_count(i, v) > raised(i, v) &&
				    v != COUNT_IN_SHADOW && v != COUNT_IF_CLEAR)
					fail_msg(
						"vCPU %u vector %u: taken %" PRIu64
						" times, raised %" PRIu64
						" (a duplicate)",
						i, v, guest_count(i, v),
						raised(i, v));
			if (t != progress[i] || !anything_outstanding(i)) {
				progress[i] = t;
				since[i] = now;
			} else if (now - since[i] >
				   (uint64_t)STUCK_SECONDS * 1000000000ULL) {
				fail_stuck(i, since[i]);
			}
		}
		if (test_vm_now_ns() > end)
			fail_msg("not done after %d s", END_SECONDS);
	}
}

static struct raiser raisers[NR_RAISERS];

static bool raisers_done(void)
{
	uint64_t n = 0;

	for (unsigned int i = 0; i < NR_VCPUS; i++)
		for (unsigned int v = 32; v < 32 + NR_RAISERS * RAISER_VECTORS;
		     v++)
			n += raised(i, v);
	return n == NR_IRQS / NR_RAISERS * NR_RAISERS;
}

/* Every raise taken, and no timer armed (one armed before the end fires
 * and is taken too). */
static bool all_taken(void)
{
	for (unsigned int i = 0; i < NR_VCPUS; i++)
		if (anything_outstanding(i) || atomic_load(&S.deadline[i]))
			return false;
	return true;
}

static void test_irq_stress_each_interrupt_taken_once(void **state)
{
	pthread_t timer_nmi, control;
	uint64_t start = test_vm_now_ns(), ext = 0, timers = 0, nmis = 0,
		 busy = 0;
	uint64_t taken = 0, taken_nmis = 0, halts = 0, insns = 0;
	struct vcpu_stats st;

	(void)state;
	stress_create();
	vcpu_set_add_wake_source(S.vm.set);
	for (unsigned int i = 0; i < NR_VCPUS; i++)
		assert_int_equal(vcpu_start(S.vm.vcpus[i]), 0);
	for (unsigned int k = 0; k < NR_RAISERS; k++) {
		raisers[k].first_vector = 32 + k * RAISER_VECTORS;
		raisers[k].seed = 0x9e3779b97f4a7c15ULL * (k + 3);
		assert_int_equal(pthread_create(&raisers[k].thread, NULL,
						raiser_main, &raisers[k]),
				 0);
	}
	assert_int_equal(pthread_create(&timer_nmi, NULL, timer_nmi_main, NULL),
			 0);
	assert_int_equal(pthread_create(&control, NULL, control_main, NULL), 0);

	watch(raisers_done);
	atomic_store(&S.done, true);
	for (unsigned int k = 0; k < NR_RAISERS; k++) {
		pthread_join(raisers[k].thread, NULL);
		busy += raisers[k].busy;
	}
	pthread_join(timer_nmi, NULL);
	pthread_join(control, NULL);
	/* Nothing raises any more, except timers armed before the end. */
	watch(all_taken);
	check_anomalies();

	for (unsigned int i = 0; i < NR_VCPUS; i++) {
		if (guest_count(i, COUNT_IN_SHADOW))
			fail_msg("vCPU %u took %" PRIu64
				 " interrupts between sti and hlt (the STI "
				 "shadow)",
				 i, guest_count(i, COUNT_IN_SHADOW));
		if (guest_count(i, COUNT_IF_CLEAR))
			fail_msg("vCPU %u took %" PRIu64
				 " external interrupts with RFLAGS.IF = 0",
				 i, guest_count(i, COUNT_IF_CLEAR));
		for (unsigned int v = 32; v < 256; v++) {
			if (guest_count(i, v) != raised(i, v))
				fail_msg("vCPU %u vector %u: taken %" PRIu64
					 " times, raised %" PRIu64,
					 i, v, guest_count(i, v), raised(i, v));
			if (v == TIMER_VECTOR)
				timers += raised(i, v);
			else
				ext += raised(i, v);
		}
		assert_int_equal(guest_count(i, NMI_VECTOR),
				 raised(i, NMI_VECTOR));
		nmis += raised(i, NMI_VECTOR);
	}
	assert_int_equal(ext, NR_IRQS / NR_RAISERS * NR_RAISERS);

	/* The end: the flag, then one interrupt each to see it. */
	__atomic_store_n((uint64_t *)gpa_ptr(FLAG_GPA), 1, __ATOMIC_RELEASE);
	for (unsigned int i = 0; i < NR_VCPUS; i++)
		assert_int_equal(vcpu_raise_irq(S.vm.vcpus[i], 32), 1);
	for (uint64_t end = test_vm_now_ns() + 60000000000ULL;; usleep(1000)) {
		unsigned int halted;

		pthread_mutex_lock(&S.vm.lock);
		halted = S.vm.nr_halted;
		pthread_mutex_unlock(&S.vm.lock);
		check_anomalies();
		if (halted == NR_VCPUS)
			break;
		if (test_vm_now_ns() > end)
			fail_msg("%u of %d vCPUs ended", halted, NR_VCPUS);
	}
	for (unsigned int i = 0; i < NR_VCPUS; i++) {
		vcpu_stats_get(S.vm.vcpus[i], &st);
		taken += st.irqs;
		taken_nmis += st.nmis;
		halts += st.halts;
		insns += st.insns;
	}
	print_message(
		"%" PRIu64 " external interrupts, %" PRIu64
		" timer interrupts (late by %" PRIu64 " us on average, %" PRIu64
		" us at worst), %" PRIu64 " NMIs, each taken once; %" PRIu64
		" TLB flushes, %" PRIu64 " pauses; %" PRIu64 " HLTs, %" PRIu64
		" instructions, %" PRIu64 " busy picks; %.1f s\n",
		ext, timers,
		timers ? atomic_load(&S.late_sum) / timers / 1000 : 0,
		atomic_load(&S.late_max) / 1000, nmis, atomic_load(&S.flushes),
		atomic_load(&S.pauses), halts, insns, busy,
		(double)(test_vm_now_ns() - start) / 1e9);
	/* The CPU's own count: every acknowledged interrupt, the final
	 * four included. */
	assert_int_equal(taken, ext + timers + NR_VCPUS);
	assert_int_equal(taken_nmis, nmis);
	assert_true(timers > 0);
	assert_true(nmis > 0);
	vcpu_set_remove_wake_source(S.vm.set);
	test_vm_destroy(&S.vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_irq_stress_each_interrupt_taken_once),
	};
	int r;

	mmu_rcu_register_thread();
	r = cmocka_run_group_tests_name("vcpu_irq_stress", tests, NULL, NULL);
	mmu_rcu_unregister_thread();
	return r;
}
