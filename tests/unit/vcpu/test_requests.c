/*
 * Requests and kicks of core/vcpu under load: real vCPU threads running a
 * guest (an ELF image built here, loaded by core/loader into RAM of a
 * core/mmu memslot) while this process's threads make TLB_FLUSH requests
 * with and without wait. It checks the promise of vcpu_make_request():
 * a request with wait returns, and only once every vCPU that could still
 * be running guest code from before the request has left guest mode; a
 * vCPU outside guest mode (halted) is not waited for; no request bit is
 * lost. It builds its own small VM (not core/vm) because the checks need
 * each struct vcpu for vcpu_mode() and vcpu_stats_get(), which core/vm
 * does not hand out; the wiring is the same as vm.c's.
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
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mmu.h"
#include "mmu_rcu.h"
#include "test_vm.h"
#include "vcpu/vcpu.h"

/*
 * Each stress runs NR_VCPUS vCPU threads (more than the 2 CPUs of the
 * machines here) and must complete all NR_STRESS_REQUESTS requests with
 * wait; STRESS_BOUND_SECONDS only catches a protocol that has become a
 * host scheduling latency per request (a preempted vCPU thread is in
 * guest mode until it runs again: core/vcpu's slices bound that). meson
 * runs the stress alone (is_parallel false). ThreadSanitizer makes
 * everything several times slower: smaller counts.
 */
#ifdef MMUD_TSAN
#define NR_STRESS_REQUESTS 10000UL
#define NR_HALTED_REQUESTS 2000UL
#else
#define NR_STRESS_REQUESTS 100000UL
#define NR_HALTED_REQUESTS 20000UL
#endif
#define STRESS_BOUND_SECONDS 120
#define NR_VCPUS 4
/* Bounds on waiting for an event; reaching one is a failure. They are
 * generous because the machine is shared: they catch hangs, not slowness. */
#define STALL_SECONDS 30
#define EVENT_SECONDS 60
/*
 * A request with wait to halted vCPUs must not wait for them: a wrong
 * wait lasts for ever (nothing kicks a vCPU outside guest mode), so this
 * bound catches it while leaving room for a loaded machine (the longest
 * wait seen is printed).
 */
#define HALTED_WAIT_MAX_NS 10000000000ULL

#define RAM_SIZE (4ULL << 20)
#define CODE_GPA 0x100000ULL
#define DATA_GPA 0x102000ULL
#define FLAG_GPA DATA_GPA
#define DEBUG_EXIT_PORT 0xf4

/*
 * The guest. At CODE_GPA + ENTRY_SPIN every vCPU reads the flag until it
 * is nonzero (a three-instruction basic block: the tight loop a kick must
 * interrupt), then writes 0 to the debug-exit port and halts. At
 * CODE_GPA + ENTRY_SPIN_IO it does the same but also writes to port 0x80
 * (no device) every 1000 reads, so it leaves guest mode on its own too,
 * as vCPUs doing I/O do. At CODE_GPA + ENTRY_SPIN_PAUSE it spins with a
 * PAUSE in the loop, as spin locks do, so it also leaves guest mode
 * through pause-loop exits. At CODE_GPA + ENTRY_HALT it halts at once;
 * RFLAGS.IF is 0 at boot, so nothing can wake it.
 */
static const uint8_t guest_code[] = {
	0x48, 0x8b, 0x04, 0x25, 0x00,
	0x20, 0x10, 0x00, /* 0: mov 0x102000,%rax */
	0x48, 0x85, 0xc0, /* 8: test %rax,%rax */
	0x74, 0xf3, /* b: je 0 */
	0x31, 0xc0, /* d: xor %eax,%eax */
	0xe6, 0xf4, /* f: out %al,$0xf4 */
	0xf4, /* 11: hlt */
	0xeb, 0xfd, /* 12: jmp 11 */
	0xf4, /* 14: hlt */
	0xeb, 0xfd, /* 15: jmp 14 */
	0xb9, 0xe8, 0x03, 0x00, 0x00, /* 17: mov $1000,%ecx */
	0x48, 0x8b, 0x04, 0x25, 0x00,
	0x20, 0x10, 0x00, /* 1c: mov 0x102000,%rax */
	0x48, 0x85, 0xc0, /* 24: test %rax,%rax */
	0x75, 0x08, /* 27: jne 31 */
	0xff, 0xc9, /* 29: dec %ecx */
	0x75, 0xef, /* 2b: jne 1c */
	0xe6, 0x80, /* 2d: out %al,$0x80 */
	0xeb, 0xe6, /* 2f: jmp 17 */
	0x31, 0xc0, /* 31: xor %eax,%eax */
	0xe6, 0xf4, /* 33: out %al,$0xf4 */
	0xeb, 0xda, /* 35: jmp 11 */
	0x48, 0x8b, 0x04, 0x25, 0x00,
	0x20, 0x10, 0x00, /* 37: mov 0x102000,%rax */
	0xf3, 0x90, /* 3f: pause */
	0x48, 0x85, 0xc0, /* 41: test %rax,%rax */
	0x74, 0xf1, /* 44: je 37 */
	0x31, 0xc0, /* 46: xor %eax,%eax */
	0xe6, 0xf4, /* 48: out %al,$0xf4 */
	0xeb, 0xc5, /* 4a: jmp 11 */
};
#define ENTRY_SPIN 0x0
#define ENTRY_HALT 0x14
#define ENTRY_SPIN_IO 0x17
#define ENTRY_SPIN_PAUSE 0x37

/* ---- a small VM: RAM, MMU, vCPUs, and the events they report --------- */

struct harness {
	struct test_vm vm;
	_Atomic uint64_t *flag; /* (c) the guest's flag, through its memslot */
	unsigned int nr_exited; /* vm.lock: OUTs to the debug-exit port */
};

static void h_pio(void *opaque, unsigned int vcpu, uint16_t port,
		  unsigned int size, bool in, uint32_t *value)
{
	struct harness *h = opaque;

	(void)vcpu;
	if (in) {
		*value = size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
		return;
	}
	if (port != DEBUG_EXIT_PORT)
		return;
	pthread_mutex_lock(&h->vm.lock);
	h->nr_exited++;
	pthread_cond_broadcast(&h->vm.cond);
	pthread_mutex_unlock(&h->vm.lock);
}

static void h_stopped(void *opaque, unsigned int vcpu,
		      enum vcpu_stop_reason why, const char *detail)
{
	struct harness *h = opaque;

	test_vm_record_stop(&h->vm, vcpu, why, detail);
}

static const struct vcpu_ops h_ops = {
	.pio = h_pio,
	.mmio_read = test_vm_mmio_read_none,
	.mmio_write = test_vm_mmio_write_none,
	.stopped = h_stopped,
};

static struct timespec deadline_in(unsigned int seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += seconds;
	return ts;
}

/* Creates the VM with n vCPUs entering at entry; does not start them. */
static void harness_create(struct harness *h, unsigned int n, uint64_t entry)
{
	const struct test_vm_guest g = { .code = guest_code,
					 .code_len = sizeof(guest_code),
					 .code_gpa = CODE_GPA,
					 .data_gpa = DATA_GPA,
					 .entry = entry };
	const struct memslot *slot;

	memset(h, 0, sizeof(*h));
	test_vm_create(&h->vm, n, RAM_SIZE, &g, &h_ops, h);

	/* The flag's host address, the way a device model finds guest
	 * memory: through the memslot, inside a read-side section. */
	mmu_rcu_read_lock();
	slot = memslot_lookup(h->vm.mmu, FLAG_GPA >> PAGE_SHIFT, NULL);
	assert_non_null(slot);
	h->flag = (_Atomic uint64_t *)(uintptr_t)(memslot_gfn_to_hva(
							  slot,
							  FLAG_GPA >>
								  PAGE_SHIFT) +
						  (FLAG_GPA & (PAGE_SIZE - 1)));
	mmu_rcu_read_unlock();
}

/* Waits until *counter (under vm.lock) reaches want; false on timeout. */
static bool harness_wait_count(struct harness *h, const unsigned int *counter,
			       unsigned int want)
{
	return test_vm_wait_count(&h->vm, counter, want, EVENT_SECONDS);
}

/* Lets the spinning guest finish and checks that every vCPU did. */
static void harness_finish_spin(struct harness *h)
{
	atomic_store_explicit(h->flag, 1, memory_order_release);
	if (!harness_wait_count(h, &h->nr_exited, h->vm.n))
		fail_msg("%u of %u vCPUs reached the debug-exit port within "
			 "%d s after the flag was set (%s)",
			 h->nr_exited, h->vm.n, EVENT_SECONDS,
			 h->vm.nr_crashed ? h->vm.crash : "no crash");
	assert_int_equal(h->vm.nr_crashed, 0);
}

static uint64_t requests_of(const struct vcpu *v)
{
	struct vcpu_stats st;

	vcpu_stats_get(v, &st);
	return st.requests;
}

/*
 * Waits until vCPU v has handled a request since its requests counter
 * read before; true when it did within bound_ns. Nothing signals this, so
 * it polls, sleeping between looks so that a vCPU sharing this host CPU
 * runs (yielding hands over only whole slices at the vCPU's own yields).
 */
static bool wait_handled(const struct vcpu *v, uint64_t before,
			 uint64_t bound_ns, struct vcpu_stats *st)
{
	uint64_t end = test_vm_now_ns() + bound_ns;

	for (;;) {
		vcpu_stats_get(v, st);
		if (st->requests > before)
			return true;
		if (test_vm_now_ns() > end)
			return false;
		nanosleep(&(struct timespec){ .tv_nsec = 10000 }, NULL);
	}
}

/*
 * Waits until every vCPU of h has retired guest instructions (its first
 * instruction reads the flag: code and data are then mapped), kicking
 * them so that their counters are published. Without wait: a wait here
 * would not be bounded by the stress's watchdog.
 */
static void harness_wait_running(struct harness *h)
{
	uint64_t end =
		test_vm_now_ns() + (uint64_t)EVENT_SECONDS * 1000000000ULL;

	for (unsigned int i = 0; i < h->vm.n; i++) {
		struct vcpu_stats st;

		for (;;) {
			vcpu_stats_get(h->vm.vcpus[i], &st);
			if (st.insns > 0)
				break;
			if (test_vm_now_ns() > end)
				fail_msg("vCPU %u retired no instruction in "
					 "%d s",
					 i, EVENT_SECONDS);
			vcpu_make_request(h->vm.vcpus[i], VCPU_REQ_TLB_FLUSH,
					  false);
			sched_yield();
		}
	}
}

/* ---- the stress: requests with wait to spinning vCPUs ------------------ */

/*
 * Legend: (c) set before the thread starts; (a) atomic, read by the
 * watchdog (the main thread) while the requester runs; (j) written by
 * the requester, read after join.
 */
struct stress {
	struct harness *h; /* (c) */
	unsigned long nr; /* (c) */
	unsigned int budget_s; /* (c) */
	/* (c) Before each request, wait until a vCPU is in guest mode, so
	 * that each request must kick at least one out. (Not all of them:
	 * with more vCPUs than host CPUs, those waiting for a CPU wait
	 * outside guest mode, at the end of a slice.) */
	bool kick_running;
	/* (c) Before each request with wait, another request without wait
	 * to every vCPU, as a second requester's would be: the waiting one
	 * then finds in-guest vCPUs already EXITING_GUEST_MODE and must
	 * still wait for them to leave (KVM waits for every vCPU not
	 * OUTSIDE_GUEST_MODE). */
	bool pre_kick;
	_Atomic unsigned long progress; /* (a) requests completed */
	_Atomic bool abandon; /* (a) the watchdog gave up: stop early */
	_Atomic bool finished; /* (a) signalled on h->vm.cond under h->vm.lock */
	unsigned long outside, handled, deferred; /* (j) how each was seen */
	unsigned long violations; /* (j) */
	char violation[300]; /* (j) the first */
	uint64_t max_wait_ns; /* (j) */
};

static void violation(struct stress *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void violation(struct stress *s, const char *fmt, ...)
{
	va_list ap;

	if (s->violations++)
		return;
	va_start(ap, fmt);
	vsnprintf(s->violation, sizeof(s->violation), fmt, ap);
	va_end(ap);
}

/*
 * What "observed" means, checked for every vCPU after each request with
 * wait returns (once the guest runs, nobody else makes requests, and its
 * only exits are our kicks and, for ENTRY_SPIN_IO, its own OUTs):
 *  - the vCPU is outside guest mode: it handles its requests before it
 *    runs guest code again; or
 *  - it has handled a request since this one was made (its requests
 *    counter, read before the request, advanced), so it left guest mode
 *    and re-entered with the bit seen; or
 *  - it is in guest mode having handled nothing, which is correct only
 *    in the window between its IN_GUEST_MODE store and the request
 *    recheck after the fence, where it retires no instruction before it
 *    leaves and handles the bit. So: wait (bounded) until it handles a
 *    request, and check that the instruction count it recorded when it
 *    did (request_insns) is the one published at its last exit before
 *    this check. If not, the wait returned while it still ran guest code
 *    from before the request: a violation. (Its instruction count now
 *    proves nothing: once it has handled the request it runs on, and
 *    may exit and publish more before this thread looks.)
 */
static void check_observed(struct stress *s, unsigned int i,
			   const struct vcpu_stats *before)
{
	const struct vcpu *v = s->h->vm.vcpus[i];
	enum mmu_vcpu_mode m = vcpu_mode(v);
	struct vcpu_stats now, later;

	vcpu_stats_get(v, &now);
	if (m == OUTSIDE_GUEST_MODE) {
		s->outside++;
		return;
	}
	if (now.requests > before->requests) {
		s->handled++;
		return;
	}
	/* Between the check and the handling, this vCPU cannot have run
	 * guest code unless it was running it already: its own exits
	 * (ENTRY_SPIN_IO) happen only inside a run. */
	s->deferred++;
	if (!wait_handled(v, before->requests,
			  (uint64_t)EVENT_SECONDS * 1000000000ULL, &later)) {
		violation(s,
			  "request %lu: vCPU %u in mode %d did not handle it "
			  "within %d s",
			  atomic_load(&s->progress), i, (int)m, EVENT_SECONDS);
		return;
	}
	if (later.request_insns != now.insns)
		violation(s,
			  "request %lu: wait returned while vCPU %u (mode %d) "
			  "still ran guest code from before the request: "
			  "%" PRIu64 " -> %" PRIu64 " instructions before it "
			  "handled it",
			  atomic_load(&s->progress), i, (int)m, now.insns,
			  later.request_insns);
}

static bool any_in_guest_mode(const struct harness *h)
{
	for (unsigned int i = 0; i < h->vm.n; i++)
		if (vcpu_mode(h->vm.vcpus[i]) == IN_GUEST_MODE)
			return true;
	return false;
}

static void *requester(void *arg)
{
	struct stress *s = arg;
	struct harness *h = s->h;
	struct vcpu_stats before[NR_VCPUS];

	mmu_rcu_register_thread();
	/* Short sleeps while waiting for guest mode (kick_running). */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	uint64_t end = test_vm_now_ns() + (uint64_t)s->budget_s * 1000000000ULL;

	for (unsigned long k = 0; k < s->nr; k++) {
		uint64_t t0, dt;

		if (atomic_load(&s->abandon) || test_vm_now_ns() > end)
			break;
		/* Sleeping, not yielding: a yield hands this CPU to a vCPU
		 * for its whole slice. The watchdog bounds the loop (it sets
		 * abandon). */
		while (s->kick_running && !any_in_guest_mode(h) &&
		       !atomic_load(&s->abandon))
			nanosleep(&(struct timespec){ .tv_nsec = 10000 }, NULL);
		for (unsigned int i = 0; i < h->vm.n; i++)
			vcpu_stats_get(h->vm.vcpus[i], &before[i]);
		if (s->pre_kick)
			vcpu_set_make_request(h->vm.set, VCPU_REQ_TLB_FLUSH,
					      false);
		t0 = test_vm_now_ns();
		vcpu_set_make_request(h->vm.set, VCPU_REQ_TLB_FLUSH, true);
		dt = test_vm_now_ns() - t0;
		if (dt > s->max_wait_ns)
			s->max_wait_ns = dt;
		for (unsigned int i = 0; i < h->vm.n; i++)
			check_observed(s, i, &before[i]);
		atomic_store(&s->progress, k + 1);
	}
	mmu_rcu_unregister_thread();
	pthread_mutex_lock(&h->vm.lock);
	atomic_store(&s->finished, true);
	pthread_cond_broadcast(&h->vm.cond);
	pthread_mutex_unlock(&h->vm.lock);
	return NULL;
}

/*
 * The watchdog: waits for the requester, and when it makes no progress
 * for STALL_SECONDS, records where it is stuck and sets the flag, which
 * makes every vCPU leave guest mode (OUT, then HLT) and so releases any
 * wait. Returns false, with msg filled, on a stall.
 */
static bool watch(struct stress *s, char *msg, size_t len)
{
	struct harness *h = s->h;
	unsigned long last = 0;
	uint64_t last_change = test_vm_now_ns();
	bool stalled = false;

	pthread_mutex_lock(&h->vm.lock);
	while (!atomic_load(&s->finished)) {
		struct timespec dl = deadline_in(1);
		unsigned long p;
		int off;

		pthread_cond_timedwait(&h->vm.cond, &h->vm.lock, &dl);
		p = atomic_load(&s->progress);
		if (p != last) {
			last = p;
			last_change = test_vm_now_ns();
			continue;
		}
		if (stalled || test_vm_now_ns() - last_change <
				       (uint64_t)STALL_SECONDS * 1000000000ULL)
			continue;
		stalled = true;
		off = snprintf(msg, len,
			       "request %lu with wait made no progress for "
			       "%d s; vCPU modes:",
			       p, STALL_SECONDS);
		for (unsigned int i = 0;
		     i < h->vm.n && off > 0 && (size_t)off < len; i++) {
			struct vcpu_stats st;

			vcpu_stats_get(h->vm.vcpus[i], &st);
			off += snprintf(msg + off, len - (size_t)off,
					" %u:%d (exits %" PRIu64
					", requests %" PRIu64 ")",
					i, (int)vcpu_mode(h->vm.vcpus[i]),
					st.exits, st.requests);
		}
		atomic_store(&s->abandon, true);
		atomic_store_explicit(h->flag, 1, memory_order_release);
	}
	pthread_mutex_unlock(&h->vm.lock);
	return !stalled;
}

/* kick_running, pre_kick: see struct stress. */
static void stress(uint64_t entry, bool kick_running, bool pre_kick)
{
	struct harness h;
	struct stress s = {
		.nr = NR_STRESS_REQUESTS,
		.budget_s = STRESS_BOUND_SECONDS,
		.kick_running = kick_running,
		.pre_kick = pre_kick,
	};
	char stall[512] = "";
	pthread_t t;
	uint64_t t0;
	bool ok;

	harness_create(&h, NR_VCPUS, entry);
	s.h = &h;
	test_vm_start(&h.vm);
	harness_wait_running(&h);

	t0 = test_vm_now_ns();
	assert_int_equal(pthread_create(&t, NULL, requester, &s), 0);
	ok = watch(&s, stall, sizeof(stall));
	pthread_join(t, NULL);
	print_message("%lu requests with wait to %u vCPUs in %.2f s "
		      "(longest %.3f ms); seen outside guest mode %lu, "
		      "handled %lu, in the entry window %lu\n",
		      atomic_load(&s.progress), h.vm.n,
		      (double)(test_vm_now_ns() - t0) / 1e9,
		      (double)s.max_wait_ns / 1e6, s.outside, s.handled,
		      s.deferred);
	if (!ok) {
		/* The flag is set: the vCPUs stop; let them, then report. */
		harness_wait_count(&h, &h.nr_exited, h.vm.n);
		test_vm_destroy(&h.vm);
		fail_msg("%s", stall);
	}
	if (s.violations) {
		harness_finish_spin(&h);
		test_vm_destroy(&h.vm);
		fail_msg("%lu violations; the first: %s", s.violations,
			 s.violation);
	}
	assert_int_equal(s.outside + s.handled + s.deferred,
			 atomic_load(&s.progress) * h.vm.n);
	if (atomic_load(&s.progress) < s.nr)
		fail_msg("only %lu of %lu requests in %u s: each waits for a "
			 "host scheduling latency?",
			 atomic_load(&s.progress), s.nr, s.budget_s);
	if (kick_running && !s.handled && !s.deferred)
		fail_msg("no request found a vCPU in guest mode");

	/*
	 * Every vCPU handles requests, and the guest still finishes. A vCPU
	 * the host did not run while the requests went by (all of them can
	 * find it outside guest mode on a loaded host) takes the pending
	 * bit at its next entry: wait for that, boundedly.
	 */
	for (unsigned int i = 0; i < h.vm.n; i++) {
		uint64_t end = test_vm_now_ns() + 10000000000ULL;

		while (!requests_of(h.vm.vcpus[i]) && test_vm_now_ns() < end)
			sched_yield();
		if (!requests_of(h.vm.vcpus[i]))
			fail_msg("vCPU %u handled no request within 10 s of "
				 "the last one",
				 i);
	}
	harness_finish_spin(&h);
	test_vm_destroy(&h.vm);
}

static void test_requests_flush_wait_spinning_vcpus_all_observed(void **state)
{
	(void)state;
	stress(ENTRY_SPIN, false, false);
}

/* Every request finds a vCPU running guest code: each one is a kick out
 * of the tight loop and a wait for it. */
static void test_requests_flush_wait_kicks_each_running_vcpu_out(void **state)
{
	(void)state;
	stress(ENTRY_SPIN, true, false);
}

/* Each request with wait finds the running vCPUs already kicked by a
 * request without wait: it must wait for them all the same. */
static void
test_requests_flush_wait_already_kicked_vcpus_waited_for(void **state)
{
	(void)state;
	stress(ENTRY_SPIN, true, true);
}

/* vCPUs that also exit on their own: a wait must not take one of their
 * exits for the one its request caused. */
static void test_requests_flush_wait_exiting_vcpus_all_observed(void **state)
{
	(void)state;
	stress(ENTRY_SPIN_IO, false, false);
}

/* Spin-lock loops (PAUSE): pause-loop exits, as under KVM's PLE. */
static void test_requests_flush_wait_pausing_vcpus_all_observed(void **state)
{
	(void)state;
	stress(ENTRY_SPIN_PAUSE, false, false);
}

/* ---- requests to halted vCPUs ----------------------------------------- */

static void test_requests_flush_wait_halted_vcpus_not_waited_for(void **state)
{
	struct harness h;
	uint64_t before[NR_VCPUS], max_ns = 0, t0;

	(void)state;
	harness_create(&h, NR_VCPUS, ENTRY_HALT);
	test_vm_start(&h.vm);
	if (!harness_wait_count(&h, &h.vm.nr_halted, h.vm.n))
		fail_msg("%u of %u vCPUs halted within %d s", h.vm.nr_halted,
			 h.vm.n, EVENT_SECONDS);
	for (unsigned int i = 0; i < h.vm.n; i++) {
		before[i] = requests_of(h.vm.vcpus[i]);
		assert_int_equal(vcpu_mode(h.vm.vcpus[i]), OUTSIDE_GUEST_MODE);
	}

	t0 = test_vm_now_ns();
	for (unsigned long k = 0; k < NR_HALTED_REQUESTS; k++) {
		uint64_t s = test_vm_now_ns(), dt;

		vcpu_set_make_request(h.vm.set, VCPU_REQ_TLB_FLUSH, true);
		dt = test_vm_now_ns() - s;
		if (dt > max_ns)
			max_ns = dt;
		for (unsigned int i = 0; i < h.vm.n; i++)
			assert_int_equal(vcpu_mode(h.vm.vcpus[i]),
					 OUTSIDE_GUEST_MODE);
	}
	print_message("%lu requests with wait to %u halted vCPUs in %.3f s "
		      "(longest %.3f ms)\n",
		      NR_HALTED_REQUESTS, h.vm.n,
		      (double)(test_vm_now_ns() - t0) / 1e9,
		      (double)max_ns / 1e6);
	if (max_ns > HALTED_WAIT_MAX_NS)
		fail_msg("a request with wait to halted vCPUs took %.3f s",
			 (double)max_ns / 1e9);

	/* A halted vCPU still wakes for its requests and handles them. */
	for (unsigned int i = 0; i < h.vm.n; i++) {
		struct vcpu_stats st;

		if (!wait_handled(h.vm.vcpus[i], before[i],
				  (uint64_t)EVENT_SECONDS * 1000000000ULL, &st))
			fail_msg("halted vCPU %u handled no request in %d s", i,
				 EVENT_SECONDS);
		assert_int_equal(st.halts, 1);
	}
	assert_int_equal(h.vm.nr_crashed, 0);
	test_vm_destroy(&h.vm);
}

/* ---- a request without wait kicks a spinning vCPU out ----------------- */

static void test_requests_nowait_kick_spinning_vcpu_leaves(void **state)
{
	struct harness h;
	struct vcpu_stats start, st0, st;

	(void)state;
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* short sleeps */
	harness_create(&h, 1, ENTRY_SPIN);
	test_vm_start(&h.vm);
	harness_wait_running(&h);
	vcpu_stats_get(h.vm.vcpus[0], &start);
	for (int k = 0; k < 100; k++) {
		uint64_t end = test_vm_now_ns() +
			       (uint64_t)EVENT_SECONDS * 1000000000ULL;

		/* Ask while it is in guest mode (it may be between runs
		 * after the last request, the longer so the slower the
		 * build): then only a kick can make it handle this one.
		 * Sleeping, not yielding, between looks: when this thread
		 * and the vCPU share a host CPU, a yield runs only while the
		 * vCPU yields at the end of a slice, outside guest mode,
		 * every time; a timer wake-up can find it inside. */
		while (vcpu_mode(h.vm.vcpus[0]) != IN_GUEST_MODE) {
			if (test_vm_now_ns() > end) {
				vcpu_stats_get(h.vm.vcpus[0], &st);
				fail_msg(
					"request %d: the vCPU did not re-enter "
					"guest mode in %d s (mode %d, %" PRIu64
					" exits, %" PRIu64 " requests, %" PRIu64
					" instructions; %s)",
					k, EVENT_SECONDS,
					(int)vcpu_mode(h.vm.vcpus[0]), st.exits,
					st.requests, st.insns,
					h.vm.nr_crashed ? h.vm.crash :
							  "no crash");
			}
			nanosleep(&(struct timespec){ .tv_nsec = 10000 }, NULL);
		}
		vcpu_stats_get(h.vm.vcpus[0], &st0);
		vcpu_make_request(h.vm.vcpus[0], VCPU_REQ_TLB_FLUSH, false);
		/* The guest never exits by itself: only the kick can make
		 * it leave guest mode and handle the request. */
		if (!wait_handled(h.vm.vcpus[0], st0.requests,
				  (uint64_t)EVENT_SECONDS * 1000000000ULL, &st))
			fail_msg("request %d without wait: the spinning vCPU "
				 "did not handle it in %d s",
				 k, EVENT_SECONDS);
	}
	/* Each request found it in guest mode: kicks out of guest code
	 * (one that lands in the entry window, before its request check,
	 * leaves without a run, so not every one need count). */
	assert_true(st.exits > start.exits);
	harness_finish_spin(&h);
	test_vm_destroy(&h.vm);
}

/* With the arguments "stress PATTERN", runs the stresses whose names match
 * PATTERN (cmocka's filter: meson runs each alone, with its own timeout);
 * without, the other tests. */
int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_requests_nowait_kick_spinning_vcpu_leaves),
		cmocka_unit_test(
			test_requests_flush_wait_halted_vcpus_not_waited_for),
	};
	const struct CMUnitTest stress[] = {
		cmocka_unit_test(
			test_requests_flush_wait_spinning_vcpus_all_observed),
		cmocka_unit_test(
			test_requests_flush_wait_exiting_vcpus_all_observed),
		cmocka_unit_test(
			test_requests_flush_wait_kicks_each_running_vcpu_out),
		cmocka_unit_test(
			test_requests_flush_wait_pausing_vcpus_all_observed),
		cmocka_unit_test(
			test_requests_flush_wait_already_kicked_vcpus_waited_for),
	};
	int r;

	mmu_rcu_register_thread();
	if (argc > 1 && !strcmp(argv[1], "stress")) {
		if (argc > 2)
			cmocka_set_test_filter(argv[2]);
		r = cmocka_run_group_tests_name("vcpu_requests_stress", stress,
						NULL, NULL);
	} else
		r = cmocka_run_group_tests_name("vcpu_requests", tests, NULL,
						NULL);
	mmu_rcu_unregister_thread();
	return r;
}
