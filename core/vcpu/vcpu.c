/*
 * vCPU threads: the run loop (docs/ARCHITECTURE.md, "The vCPU run loop":
 * requests, root load,
 * entering guest mode, guest execution, exit handling), halting, pausing
 * and reschedule points, creation and statistics. The mode protocol
 * (requests, kicks, waits) is request.c's; the instruction set is
 * core/vcpu/x86; translation policy is core/mmu; devices belong to the
 * VM (vcpu_ops).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "explore.h"
#include "mmu_rcu.h"
#include "vcpu_int.h"

/*
 * Guest instructions a vCPU runs before it passes a reschedule point
 * (about 100 us at full speed). KVM's run loop reschedules between
 * entries when the host wants the CPU (need_resched), and a vCPU thread
 * the host preempts is outside guest mode there. Ours stays in guest mode
 * when preempted, so a requester waiting for it waits until the host runs
 * it again; yielding at the end of each slice, outside guest mode, bounds
 * that by the slices of the threads sharing its CPU instead of the host's
 * time slice (milliseconds). A yield with nobody else runnable returns at
 * once.
 */
#define VCPU_SLICE_INSNS 16384

struct vcpu_set *vcpu_set_create(unsigned int nr_vcpus)
{
	struct vcpu_set *set = calloc(1, sizeof(*set));

	if (!set)
		return NULL;
	set->n = nr_vcpus;
	pthread_mutex_init(&set->idle_lock, NULL);
	set->vcpus = calloc(nr_vcpus ? nr_vcpus : 1, sizeof(*set->vcpus));
	if (!set->vcpus) {
		free(set);
		return NULL;
	}
	return set;
}

void vcpu_set_destroy(struct vcpu_set *set)
{
	if (!set)
		return;
	pthread_mutex_destroy(&set->idle_lock);
	free(set->vcpus);
	free(set);
}

/* ---- callbacks from the CPU (guest mode, this vCPU's thread) ---------- */

/*
 * Guest-physical accesses the soft TLB routes here: pages without a
 * memslot when they were mapped. A slot may have appeared since (a
 * hot-plugged window), so look again under a read-side section: RAM wins.
 */
static uint64_t env_mmio_read(void *opaque, gpa_t gpa, unsigned int size)
{
	struct vcpu *v = opaque;
	const struct memslot *slot;
	uint64_t val = 0;

	vcpu_stat_inc(&v->st.mmio_accesses);
	mmu_rcu_read_lock();
	slot = memslot_lookup(v->mmu, gpa >> PAGE_SHIFT, &v->slot_hint);
	if (slot && !(slot->flags & MEMSLOT_INVALID)) {
		const uint8_t *p =
			(const uint8_t *)(uintptr_t)memslot_gfn_to_hva(
				slot, gpa >> PAGE_SHIFT) +
			(gpa & (PAGE_SIZE - 1));

		for (unsigned int i = 0; i < size; i++)
			val |= (uint64_t)__atomic_load_n(p + i,
							 __ATOMIC_ACQUIRE)
			       << (8 * i);
	} else if (v->ops->cpu_mmio_read) {
		val = v->ops->cpu_mmio_read(v->opaque, v->index, gpa, size);
	} else {
		val = v->ops->mmio_read(v->opaque, gpa, size);
	}
	mmu_rcu_read_unlock();
	return val;
}

static void env_tracked_write(void *opaque, gpa_t gpa, unsigned int size);

static void env_mmio_write(void *opaque, gpa_t gpa, unsigned int size,
			   uint64_t value)
{
	struct vcpu *v = opaque;
	const struct memslot *slot;

	vcpu_stat_inc(&v->st.mmio_accesses);
	mmu_rcu_read_lock();
	slot = memslot_lookup(v->mmu, gpa >> PAGE_SHIFT, &v->slot_hint);
	if (!slot || (slot->flags & MEMSLOT_INVALID)) {
		if (v->ops->cpu_mmio_write)
			v->ops->cpu_mmio_write(v->opaque, v->index, gpa, size,
					       value);
		else
			v->ops->mmio_write(v->opaque, gpa, size, value);
	} else if (!(slot->flags & MEMSLOT_READONLY)) {
		/*
		 * RAM appeared under an MMIO mapping (a hot-added slot): store
		 * in place, byte by byte within the page as the CPU split it,
		 * inside this read-side section (the slot cannot be unmapped
		 * under us), and tell the MMU after the instruction, outside
		 * guest mode, as for a tracked page: it may zap and flush
		 * with wait, which it cannot do while we are in guest mode.
		 */
		uint8_t *p = (uint8_t *)(uintptr_t)memslot_gfn_to_hva(
				     slot, gpa >> PAGE_SHIFT) +
			     (gpa & (PAGE_SIZE - 1));

		for (unsigned int i = 0; i < size; i++)
			__atomic_store_n(p + i, (uint8_t)(value >> (8 * i)),
					 __ATOMIC_RELEASE);
		env_tracked_write(v, gpa, size);
	}
	mmu_rcu_read_unlock();
}

static void env_tracked_write(void *opaque, gpa_t gpa, unsigned int size)
{
	struct vcpu *v = opaque;

	/* Logged now, while the slot that took the store is still the one
	 * that maps gpa (mmu_mark_dirty()). */
	mmu_rcu_read_lock();
	mmu_mark_dirty(v->mmu, gpa);
	mmu_rcu_read_unlock();

	/* The MMU must zap what it derived from this guest page table;
	 * it may flush remote TLBs with wait, which it cannot do while
	 * this vCPU is in guest mode, so it happens after the instruction. */
	if (v->nr_tracked < MAX_TRACKED_WRITES) {
		v->tracked[v->nr_tracked].gpa = gpa;
		v->tracked[v->nr_tracked].len = size;
		v->nr_tracked++;
	} else {
		v->tracked_overflow = true;
	}
	x86_request_exit(v->cpu);
}

/* The pieces the MMU tracks (1, 2, 4 or 8 bytes within a page) that
 * cover [gpa, gpa + len) of one page. */
static void track_range(struct vcpu *v, gpa_t gpa, unsigned int len)
{
	while (len) {
		unsigned int n = len >= 8 ? 8 : len >= 4 ? 4 : len >= 2 ? 2 : 1;

		env_tracked_write(v, gpa, n);
		gpa += n;
		len -= n;
	}
}

bool vcpu_write_guest(struct vcpu *v, gpa_t gpa, const void *buf,
		      unsigned int len)
{
	const uint8_t *p = buf;
	/* len <= PAGE_SIZE: the range spans two pages at most. Each slot
	 * stays valid to the end of this read-side section. */
	const struct memslot *slot[2] = { NULL, NULL };
	unsigned int npages;
	bool ok = true;

	/* gpa and len are the guest's: bound both before any sum. */
	if (!len || len > PAGE_SIZE || gpa > (1ULL << 52) - len)
		return false;
	npages = ((gpa + len - 1) >> PAGE_SHIFT) - (gpa >> PAGE_SHIFT) + 1;
	mmu_rcu_read_lock();
	/* Every page of the range is writable RAM, or nothing is stored. */
	for (unsigned int k = 0; ok && k < npages; k++) {
		slot[k] = memslot_lookup(v->mmu, (gpa >> PAGE_SHIFT) + k,
					 &v->slot_hint);
		ok = slot[k] &&
		     !(slot[k]->flags & (MEMSLOT_INVALID | MEMSLOT_READONLY));
	}
	for (unsigned int i = 0, k = 0; ok && i < len; k++) {
		gpa_t a = gpa + i;
		unsigned int n =
			PAGE_SIZE - (unsigned int)(a & (PAGE_SIZE - 1));
		uint8_t *h;

		if (n > len - i)
			n = len - i;
		h = (uint8_t *)(uintptr_t)memslot_gfn_to_hva(slot[k],
							     a >> PAGE_SHIFT) +
		    (a & (PAGE_SIZE - 1));
		/* In address order, each a release store, as a guest's
		 * own stores (docs/ARCHITECTURE.md, "Guest memory is
		 * shared memory"). */
		for (unsigned int j = 0; j < n; j++)
			__atomic_store_n(h + j, p[i + j], __ATOMIC_RELEASE);
		track_range(v, a, n);
		i += n;
	}
	mmu_rcu_read_unlock();
	return ok;
}

static bool irr_pending(struct vcpu *v)
{
	for (unsigned int i = 0; i < 4; i++)
		if (atomic_load_explicit(&v->irr[i], memory_order_acquire))
			return true;
	return false;
}

/* The INTR line: a queued vector or the interrupt controller's. */
static bool intr_line(struct vcpu *v)
{
	return irr_pending(v) || (v->ops->intr_pending &&
				  v->ops->intr_pending(v->opaque, v->index));
}

/*
 * The CPU takes an interrupt: the highest pending vector (an APIC's
 * order, SDM vol. 3, 10.8.3.1, without its priority classes). Only this
 * thread clears bits, so the one found is still set; the RMW keeps bits
 * other threads set meanwhile.
 */
static int env_intr_ack(void *opaque)
{
	struct vcpu *v = opaque;
	int vector = -1;

	for (int i = 3; i >= 0 && vector < 0; i--) {
		uint64_t w =
			atomic_load_explicit(&v->irr[i], memory_order_acquire);

		if (!w)
			continue;
		vector = i * 64 + 63 - __builtin_clzll(w);
		atomic_fetch_and_explicit(&v->irr[i], ~(1ULL << (vector % 64)),
					  memory_order_seq_cst);
	}
	/* Then the controller's, below the queued ones. */
	if (vector < 0 && v->ops->intr_ack)
		vector = v->ops->intr_ack(v->opaque, v->index);
	if (vector >= 0)
		vcpu_stat_inc(&v->st.irqs);
	x86_set_intr(v->cpu, intr_line(v));
	return vector;
}

static int env_msr(void *opaque, uint32_t index, bool write, uint64_t *value)
{
	struct vcpu *v = opaque;

	if (!v->ops->msr)
		return -ENOENT;
	return v->ops->msr(v->opaque, v->index, index, write, value);
}

static void env_cr8(void *opaque, bool write, uint64_t *value)
{
	struct vcpu *v = opaque;

	if (v->ops->cr8)
		v->ops->cr8(v->opaque, v->index, write, value);
}

static const struct x86_env vcpu_x86_env = {
	.mmio_read = env_mmio_read,
	.mmio_write = env_mmio_write,
	.tracked_write = env_tracked_write,
	.intr_ack = env_intr_ack,
	.msr = env_msr,
	.cr8 = env_cr8,
};

/* ---- the run loop ----------------------------------------------------- */

static void cpu_state(struct vcpu *v, struct mmu_cpu_state *st)
{
	struct x86_sregs s;
	struct x86_regs r;

	x86_get_sregs(v->cpu, &s);
	x86_get_regs(v->cpu, &r);
	st->cr0 = s.cr0;
	st->cr3 = s.cr3;
	st->cr4 = s.cr4;
	st->efer = s.efer;
	st->rflags = r.rflags;
	st->cpl = x86_cpl(v->cpu);
}

static void stop_for_good(struct vcpu *v, enum vcpu_stop_reason why,
			  const char *detail)
{
	v->halted = true;
	atomic_store_explicit(&v->stop_state,
			      why == VCPU_STOP_HALTED ? VCPU_STATE_HALTED :
							VCPU_STATE_CRASHED,
			      memory_order_relaxed);
	v->ops->stopped(v->opaque, v->index, why, detail);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The vCPU's next timer deadline (vcpu_ops.deadline), 0 for none. */
static uint64_t timer_deadline(struct vcpu *v)
{
	return v->ops->deadline ? v->ops->deadline(v->opaque, v->index) : 0;
}

/*
 * Blocks until a request arrives, or until host time deadline
 * (CLOCK_MONOTONIC ns, 0: none), dropping the read side meanwhile (as
 * KVM drops SRCU while it blocks). A halted vCPU sleeps here too: every
 * event that can wake it comes with a request (docs/locking.md #15),
 * or is its own timer's.
 */
static void block(struct vcpu *v, uint64_t deadline)
{
	struct timespec ts = { .tv_sec = (time_t)(deadline / 1000000000ULL),
			       .tv_nsec = (long)(deadline % 1000000000ULL) };

	mmu_rcu_read_unlock();
	pthread_mutex_lock(&v->wake_lock);
	v->sleeping = true;
	v->parked = true;
	pthread_cond_broadcast(&v->parked_cond);
	while (!atomic_load_explicit(&v->requests, memory_order_acquire)) {
		if (!deadline) {
			pthread_cond_wait(&v->wake_cond, &v->wake_lock);
		} else if (pthread_cond_timedwait(&v->wake_cond, &v->wake_lock,
						  &ts) == ETIMEDOUT) {
			break;
		}
	}
	v->sleeping = false;
	v->parked = false;
	pthread_mutex_unlock(&v->wake_lock);
	mmu_rcu_read_lock();
}

/* Returns false when the thread must end. */
static bool handle_requests(struct vcpu *v)
{
	uint64_t req =
		atomic_exchange_explicit(&v->requests, 0, memory_order_acquire);

	if (!req)
		return true;
	atomic_store_explicit(&v->st.request_insns, x86_insns_retired(v->cpu),
			      memory_order_relaxed);
	atomic_fetch_add_explicit(&v->st.requests, 1, memory_order_release);
	if (req & (1ULL << VCPU_REQ_STOP))
		return false;
	if (req & (1ULL << VCPU_REQ_FREE_OBSOLETE_ROOTS)) {
		mmu_vcpu_free_obsolete_roots(v->mmu_vcpu);
		x86_tlb_flush(v->cpu);
	}
	if (req & (1ULL << VCPU_REQ_TLB_FLUSH))
		x86_tlb_flush(v->cpu);
	if (req & (1ULL << VCPU_REQ_EVENT)) {
		/* After the acquire exchange: the raiser's event is seen
		 * (docs/locking.md #15). */
		if (atomic_exchange_explicit(&v->init, false,
					     memory_order_acquire))
			atomic_store_explicit(&v->wait_sipi, true,
					      memory_order_relaxed);
		/* SDM vol. 3, 8.4.1: waiting for a SIPI blocks NMIs and
		 * interrupts; they stay pending. */
		if (atomic_load_explicit(&v->wait_sipi, memory_order_relaxed))
			return true;
		if (atomic_exchange_explicit(&v->nmi, false,
					     memory_order_acquire)) {
			x86_inject_nmi(v->cpu);
			vcpu_stat_inc(&v->st.nmis);
		}
		x86_set_intr(v->cpu, intr_line(v));
	}
	return true;
}

/*
 * Whether idle vCPU u can still be woken from inside the guest (vcpu.h,
 * VCPU_STOP_HALTED): an NMI pending, or with RFLAGS.IF = 1 an interrupt
 * pending or ready, its timer armed, or a wake source. Under
 * set->idle_lock, from any vCPU's thread: it reads only u's atomics and
 * what the VM's callbacks answer for any thread.
 */
static bool idle_can_wake(struct vcpu *u)
{
	if (atomic_load_explicit(&u->wait_sipi, memory_order_relaxed))
		return false; /* only a SIPI, which is not executed */
	if (atomic_load_explicit(&u->nmi, memory_order_acquire))
		return true;
	if (!u->idle_if)
		return false;
	return intr_line(u) || timer_deadline(u) ||
	       atomic_load_explicit(&u->set->wake_sources,
				    memory_order_acquire) ||
	       (u->ops->devices_can_interrupt &&
		u->ops->devices_can_interrupt(u->opaque));
}

/*
 * v is about to sleep with nothing to take (in HLT with RFLAGS.IF as
 * given, or waiting for a SIPI). True when that makes every vCPU idle
 * with none able to wake: the VM has halted for good (reported once,
 * until vcpu_reset()). Every event raised for an idle vCPU is set
 * before its request (docs/locking.md #15), and its vCPU leaves idle
 * only after taking that request, so the last vCPU to go idle sees
 * every event the others have not taken.
 */
static bool idle_enter(struct vcpu *v, bool interrupts_enabled)
{
	struct vcpu_set *set = v->set;
	bool all = false;

	pthread_mutex_lock(&set->idle_lock);
	if (!v->idle) {
		v->idle = true;
		set->nr_idle++;
	}
	v->idle_if = interrupts_enabled;
	if (set->nr_idle == set->n && !set->halted_for_good) {
		all = true;
		for (unsigned int i = 0; i < set->n && all; i++) {
			struct vcpu *u = atomic_load_explicit(
				&set->vcpus[i], memory_order_acquire);

			if (u && idle_can_wake(u))
				all = false;
		}
		set->halted_for_good = all;
	}
	pthread_mutex_unlock(&set->idle_lock);
	return all;
}

static void idle_leave(struct vcpu *v)
{
	pthread_mutex_lock(&v->set->idle_lock);
	if (v->idle) {
		v->idle = false;
		v->set->nr_idle--;
	}
	pthread_mutex_unlock(&v->set->idle_lock);
}

/* Every vCPU of the set is halted for good: each is reported stopped
 * (vcpu_ops.stopped), from this thread; v, the last, with its RIP. The
 * others are read under set->idle_lock (64 at a time), which
 * vcpu_destroy() takes to take a vCPU out of the set before it frees
 * it: stopped() is then called with their indexes only, outside the
 * lock. */
static void all_halted(struct vcpu *v)
{
	struct vcpu_set *set = v->set;
	struct x86_regs r;
	char msg[160];
	struct {
		unsigned int index;
		const char *why;
	} batch[64];

	x86_get_regs(v->cpu, &r);
	for (unsigned int first = 0; first < set->n; first += 64) {
		unsigned int n = 0;

		pthread_mutex_lock(&set->idle_lock);
		for (unsigned int i = first; i < set->n && i < first + 64;
		     i++) {
			struct vcpu *u = atomic_load_explicit(
				&set->vcpus[i], memory_order_acquire);

			if (!u || u == v)
				continue;
			atomic_store_explicit(&u->stop_state, VCPU_STATE_HALTED,
					      memory_order_relaxed);
			batch[n].index = u->index;
			batch[n].why =
				atomic_load_explicit(&u->wait_sipi,
						     memory_order_relaxed) ?
					"waiting for SIPI" :
				u->idle_if ? "halted with interrupts enabled" :
					     "halted with interrupts disabled";
			n++;
		}
		pthread_mutex_unlock(&set->idle_lock);
		for (unsigned int i = 0; i < n; i++)
			v->ops->stopped(v->opaque, batch[i].index,
					VCPU_STOP_HALTED, batch[i].why);
	}
	if (atomic_load_explicit(&v->wait_sipi, memory_order_relaxed))
		snprintf(msg, sizeof(msg), "waiting for SIPI");
	else
		snprintf(msg, sizeof(msg),
			 "halted at rip %#llx with interrupts %s",
			 (unsigned long long)r.rip,
			 (r.rflags & X86_RFLAGS_IF) ? "enabled" : "disabled");
	stop_for_good(v, VCPU_STOP_HALTED, msg);
}

/* Fires this vCPU's timer if its deadline has passed; returns the
 * deadline still ahead (0: none). */
static uint64_t run_timer(struct vcpu *v)
{
	uint64_t d = timer_deadline(v), now;

	if (!d)
		return 0;
	now = now_ns();
	if (now < d)
		return d;
	v->ops->expire(v->opaque, v->index, now);
	return timer_deadline(v);
}

static void flush_tracked_writes(struct vcpu *v)
{
	for (unsigned int i = 0; i < v->nr_tracked; i++) {
		mmu_track_write(v->mmu_vcpu, v->tracked[i].gpa,
				v->tracked[i].len);
		vcpu_stat_inc(&v->st.emulated_writes);
	}
	if (v->tracked_overflow)
		mmu_zap_all(v->mmu);
	v->nr_tracked = 0;
	v->tracked_overflow = false;
}

/*
 * The dirty limit's token bucket (docs/MIGRATION.md, "Dirty limit"):
 * one token a page, refilled at dl_rate a second up to one period's
 * worth. A fault that finds the bucket empty owes a page: the vCPU may
 * enter guest mode again only once the refill has paid it (dl_until),
 * which is one page's time at the limit. The fault path itself does not
 * sleep: the wait is in vcpu_run_once(), outside mmu_lock, where any
 * request ends it.
 */
static void dirty_limit_charge(struct vcpu *v)
{
	uint64_t rate = atomic_load_explicit(&v->dl_rate, memory_order_relaxed);
	uint64_t period =
		atomic_load_explicit(&v->dl_period, memory_order_relaxed);
	uint64_t now;
	double cap;

	vcpu_stat_inc(&v->st.dl_pages);
	if (!rate)
		return;
	now = now_ns();
	if (!v->dl_last || now - v->dl_win_start >= period) {
		if (v->dl_last && now > v->dl_win_start)
			atomic_store_explicit(&v->st.dl_cur_rate,
					      v->dl_win_pages * 1000000000ULL /
						      (now - v->dl_win_start),
					      memory_order_relaxed);
		v->dl_win_start = now;
		v->dl_win_pages = 0;
	}
	v->dl_win_pages++;
	cap = (double)rate * (double)period / 1e9;
	if (cap < 1)
		cap = 1;
	if (!v->dl_last)
		v->dl_tokens = cap; /* a new limit starts full */
	else
		v->dl_tokens += (double)(now - v->dl_last) * (double)rate / 1e9;
	if (v->dl_tokens > cap)
		v->dl_tokens = cap;
	v->dl_last = now;
	v->dl_tokens -= 1;
	if (v->dl_tokens < 0)
		v->dl_until =
			now + (uint64_t)(-v->dl_tokens * 1e9 / (double)rate);
}

/*
 * Sleeps off what dirty_limit_charge() found owed, at most
 * VCPU_DIRTY_LIMIT_MAX_SLEEP_MS at a time; true if it slept (the caller
 * goes round its loop again: requests first). Off or paid: false.
 */
static bool dirty_limit_wait(struct vcpu *v)
{
	uint64_t now, until, max = VCPU_DIRTY_LIMIT_MAX_SLEEP_MS * 1000000ULL;

	if (!v->dl_until)
		return false;
	now = now_ns();
	if (now >= v->dl_until ||
	    !atomic_load_explicit(&v->dl_rate, memory_order_relaxed)) {
		v->dl_until = 0;
		return false;
	}
	until = v->dl_until - now > max ? now + max : v->dl_until;
	block(v, until);
	now = now_ns() - now;
	atomic_fetch_add_explicit(&v->st.dl_sleep_ns, now,
				  memory_order_relaxed);
	if (now >
	    atomic_load_explicit(&v->st.dl_max_sleep_ns, memory_order_relaxed))
		atomic_store_explicit(&v->st.dl_max_sleep_ns, now,
				      memory_order_relaxed);
	return true;
}

void vcpu_set_dirty_limit(struct vcpu_set *set, int index,
			  uint64_t pages_per_sec, uint64_t period_ms)
{
	for (unsigned int i = 0; i < set->n; i++) {
		struct vcpu *v;

		if (index >= 0 && (unsigned int)index != i)
			continue;
		v = atomic_load_explicit(&set->vcpus[i], memory_order_acquire);
		if (!v)
			continue;
		atomic_store_explicit(&v->dl_period,
				      (period_ms ? period_ms : 1000) *
					      1000000ULL,
				      memory_order_relaxed);
		atomic_store_explicit(&v->dl_rate, pages_per_sec,
				      memory_order_relaxed);
	}
}

struct vcpu *vcpu_set_get(struct vcpu_set *set, unsigned int index)
{
	if (index >= set->n)
		return NULL;
	return atomic_load_explicit(&set->vcpus[index], memory_order_acquire);
}

void vcpu_dirty_limit_get(const struct vcpu *v,
			  struct vcpu_dirty_limit_info *out)
{
	struct vcpu *m = (struct vcpu *)v;

	out->limit = atomic_load_explicit(&m->dl_rate, memory_order_relaxed);
	out->cur_rate =
		atomic_load_explicit(&m->st.dl_cur_rate, memory_order_relaxed);
	out->pages =
		atomic_load_explicit(&m->st.dl_pages, memory_order_relaxed);
	out->sleep_ns =
		atomic_load_explicit(&m->st.dl_sleep_ns, memory_order_relaxed);
	out->max_sleep_ns = atomic_load_explicit(&m->st.dl_max_sleep_ns,
						 memory_order_relaxed);
}

static void handle_shadow_fault(struct vcpu *v, const struct x86_exit *e)
{
	unsigned int acc = e->fault.access, macc = 0, rights;
	struct mmu_fault_info info;
	struct mmu_cpu_state st;
	const struct memslot *slot;
	char msg[96];
	int r;

	vcpu_stat_inc(&v->st.shadow_faults);
	if (acc & X86_ACC_WRITE)
		macc |= MMU_ACCESS_WRITE;
	if (acc & X86_ACC_FETCH)
		macc |= MMU_ACCESS_FETCH;
	if (acc & X86_ACC_IMPLICIT)
		macc |= MMU_ACCESS_IMPLICIT;
	cpu_state(v, &st);
	r = mmu_page_fault(v->mmu_vcpu, &st, e->fault.gva, macc, &info);
	if (r == MMU_FAULT_FIXED && (macc & MMU_ACCESS_WRITE))
		dirty_limit_charge(v);
	/* What the guest walk allowed: this access (reads always). */
	rights = acc & (X86_ACC_WRITE | X86_ACC_USER | X86_ACC_FETCH);
	switch (r) {
	case MMU_FAULT_FIXED:
	case MMU_FAULT_RETRY:
		break;
	case MMU_FAULT_GUEST_PF:
		vcpu_stat_inc(&v->st.guest_pf_injected);
		x86_inject_exception(v->cpu, X86_PF, info.error_code,
				     e->fault.gva);
		break;
	case MMU_FAULT_MMIO:
		x86_map_mmio(v->cpu, e->fault.gva, info.gpa, rights);
		break;
	case MMU_FAULT_EMULATE:
		slot = memslot_lookup(v->mmu, info.gpa >> PAGE_SHIFT,
				      &v->slot_hint);
		if (!slot || (slot->flags & MEMSLOT_INVALID))
			break; /* retry: the next fault sees the change */
		x86_map_tracked(v->cpu, e->fault.gva,
				memslot_gfn_to_hva(slot,
						   info.gpa >> PAGE_SHIFT),
				info.gpa, rights);
		break;
	default:
		snprintf(msg, sizeof(msg), "shadow page fault at %#llx: %s",
			 (unsigned long long)e->fault.gva, strerror(-r));
		stop_for_good(v, VCPU_STOP_INTERNAL_ERROR, msg);
		break;
	}
}

/* Syncs the unsync pages reachable from the root for the CPU's state. */
static void sync_mmu(struct vcpu *v)
{
	struct mmu_cpu_state st;

	cpu_state(v, &st);
	if (mmu_vcpu_sync(v->mmu_vcpu, &st) < 0)
		stop_for_good(v, VCPU_STOP_INTERNAL_ERROR,
			      "out of memory syncing shadow pages");
}

/*
 * A reschedule point: outside guest mode, so no requester waits for us
 * meanwhile, and outside the read-side section, as KVM drops SRCU where
 * it reschedules (a reader the host deschedules would hold up memslot
 * updates).
 */
static void reschedule(void)
{
	mmu_rcu_read_unlock();
	sched_yield();
	mmu_rcu_read_lock();
}

/* Instructions left in the current slice, at least 1. */
static uint64_t slice_left(const struct vcpu *v)
{
	uint64_t r = x86_insns_retired(v->cpu);

	return v->slice_end > r ? v->slice_end - r : 1;
}

static void handle_exit(struct vcpu *v, const struct x86_exit *e)
{
	uint32_t value;
	char msg[160];

	vcpu_stat_inc(&v->st.exits);
	switch (e->reason) {
	case X86_EXIT_SHADOW_FAULT:
		handle_shadow_fault(v, e);
		break;
	case X86_EXIT_IO:
		vcpu_stat_inc(&v->st.pio_exits);
		value = e->io.value;
		v->ops->pio(v->opaque, v->index, e->io.port, e->io.size,
			    e->io.in, &value);
		if (e->io.in)
			x86_io_complete(v->cpu, value);
		break;
	case X86_EXIT_HLT:
		/* The vCPU sleeps in vcpu_run_once(), where the last one to
		 * go idle decides whether the VM has halted for good, as
		 * guests that end with HLT expect. */
		vcpu_stat_inc(&v->st.halts);
		break;
	case X86_EXIT_TRIPLE_FAULT:
		snprintf(
			msg, sizeof(msg),
			"triple fault at rip %#llx, exception chain %u, %u, %u",
			(unsigned long long)e->triple.rip, e->triple.vectors[0],
			e->triple.vectors[1], e->triple.vectors[2]);
		stop_for_good(v, VCPU_STOP_TRIPLE_FAULT, msg);
		break;
	case X86_EXIT_PAGING:
		/* The guest's TLB flush points are where unsync pages are
		 * synced (docs/MMU.md, "Unsync and sync"): every CR0/CR4/EFER
		 * change the CPU
		 * exits for flushes its TLB, and so does a MOV to CR3 but
		 * the PCID no-flush form. A new root, if any, is loaded at
		 * the next entry. */
		if (!(e->paging.reg == 3 && e->paging.noflush))
			sync_mmu(v);
		break;
	case X86_EXIT_INVLPG:
		if (e->invlpg.all)
			sync_mmu(v);
		else
			mmu_invlpg(v->mmu_vcpu, e->invlpg.gva);
		break;
	case X86_EXIT_PAUSE:
		/* Pause-loop exit: the guest spins, most likely waiting for
		 * another vCPU; let the host run someone else (the slice
		 * ends here). */
		vcpu_stat_inc(&v->st.pause_exits);
		v->slice_end = 0;
		break;
	case X86_EXIT_BUDGET:
		/* The end of a slice: handled below. */
	case X86_EXIT_NONE:
	case X86_EXIT_KICK:
		break;
	}
	/* Any exit may end a slice: a guest that exits often (port I/O,
	 * faults) starts a new run each time but must yield as well. */
	if (x86_insns_retired(v->cpu) >= v->slice_end) {
		reschedule();
		v->slice_end = x86_insns_retired(v->cpu) + VCPU_SLICE_INSNS;
	}
}

/* Makes sure the CPU walks the root the MMU has for its state now. */
static bool load_root(struct vcpu *v)
{
	struct mmu_cpu_state st;
	const _Atomic uint64_t *root;

	cpu_state(v, &st);
	if (mmu_vcpu_load(v->mmu_vcpu, &st) < 0) {
		stop_for_good(v, VCPU_STOP_INTERNAL_ERROR,
			      "out of memory loading the shadow root");
		return false;
	}
	root = mmu_vcpu_root(v->mmu_vcpu);
	if (root != v->root) {
		v->root = root;
		x86_set_shadow_root(v->cpu, (hva_t)(uintptr_t)root);
	}
	return true;
}

bool vcpu_run_once(struct vcpu *v, uint64_t max_insns)
{
	struct x86_exit exit;
	uint64_t budget, deadline;

	if (!handle_requests(v))
		return false;
	if (v->halted ||
	    atomic_load_explicit(&v->paused, memory_order_relaxed)) {
		block(v, 0);
		return true;
	}
	/* A timer event raises its interrupt with a request to ourselves:
	 * the entry below sees it and goes round again to take it. */
	deadline = run_timer(v);
	if (atomic_load_explicit(&v->wait_sipi, memory_order_relaxed)) {
		/* INIT parked it: only vcpu_reset() starts it again. */
		if (idle_enter(v, false))
			all_halted(v);
		if (!v->halted)
			block(v, 0);
		idle_leave(v);
		return true;
	}
	if (x86_halted(v->cpu) && !x86_event_ready(v->cpu)) {
		struct x86_regs r;

		/* In HLT with nothing to take: sleep until the next request
		 * (an event's, or any other). The requests were taken above
		 * and the CPU's lines set from them: one raised since has
		 * its request bit set, which block() sees. */
		x86_get_regs(v->cpu, &r);
		atomic_store_explicit(&v->in_hlt, true, memory_order_relaxed);
		if (idle_enter(v, r.rflags & X86_RFLAGS_IF))
			all_halted(v);
		if (!v->halted)
			block(v, deadline);
		idle_leave(v);
		atomic_store_explicit(&v->in_hlt, false, memory_order_relaxed);
		return true;
	}
	if (dirty_limit_wait(v))
		return true;
	/*
	 * A soft-full dirty ring (docs/MMU.md, "The dirty ring"): no guest
	 * code until a reset makes room, but for one instruction first, the
	 * one whose write fault filled it, so its store is made before the
	 * harvest (a reset in between would protect the page again and the
	 * store would push it twice). The reset's request wakes us, and so
	 * do pause, stop and every other request, which go round the loop
	 * first; block() drops the read side, so a memslot update (and the
	 * harvest behind it) never waits for us.
	 */
	if (!mmu_vcpu_dirty_ring_full(v->mmu_vcpu)) {
		v->ring_grace = false;
	} else if (v->ring_grace) {
		block(v, 0);
		return true;
	} else {
		v->ring_grace = true;
		max_insns = 1;
	}
	if (!load_root(v))
		return true;

	if (!vcpu_enter_guest_mode(v))
		return true; /* a request came: handle it first */
	mmu_rcu_read_unlock();

	budget = slice_left(v);
	if (max_insns && max_insns < budget)
		budget = max_insns;
	EXPLORE_POINT(EXPLORE_GUEST_INSN, v, budget);
	x86_run(v->cpu, budget, &exit);

	/* The instruction count first, so whoever sees us leave
	 * (below) sees every instruction of this run counted. */
	atomic_store_explicit(&v->st.insns, x86_insns_retired(v->cpu),
			      memory_order_relaxed);
	vcpu_leave_guest_mode(v);
	mmu_rcu_read_lock();
	if (v->nr_tracked || v->tracked_overflow)
		flush_tracked_writes(v);
	handle_exit(v, &exit);
	return true;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;

	pthread_mutex_lock(&v->wake_lock);
	atomic_store_explicit(&v->tid, (int)syscall(SYS_gettid),
			      memory_order_relaxed);
	pthread_cond_broadcast(&v->parked_cond);
	pthread_mutex_unlock(&v->wake_lock);
	/* A halted vCPU's timed futex wait is the guest's timer: Linux's
	 * default 50 us of timer slack would make every deadline of a
	 * halted guest that late (bench/run_irq.py measures it). Best
	 * effort: a refused prctl leaves the default. */
	(void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	mmu_rcu_register_thread();
	mmu_rcu_read_lock();
	x86_set_kick(v->cpu, &v->kick);
	while (vcpu_run_once(v, 0))
		;
	mmu_rcu_read_unlock();
	mmu_rcu_unregister_thread();
	pthread_mutex_lock(&v->wake_lock);
	v->exited = true;
	pthread_cond_broadcast(&v->parked_cond);
	pthread_mutex_unlock(&v->wake_lock);
	return NULL;
}

/* ---- creation --------------------------------------------------------- */

struct vcpu *vcpu_create(struct vcpu_set *set, unsigned int index,
			 struct mmu *mmu, gva_t entry,
			 const struct vcpu_ops *ops, void *opaque)
{
	pthread_condattr_t ca;
	struct vcpu *v;

	if (index >= set->n)
		return NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->set = set;
	v->index = index;
	v->mmu = mmu;
	v->ops = ops;
	v->opaque = opaque;
	v->entry = entry;
	atomic_init(&v->mode, OUTSIDE_GUEST_MODE);
	atomic_init(&v->stop_state, VCPU_STATE_RUNNING);
	pthread_mutex_init(&v->wake_lock, NULL);
	/* CLOCK_MONOTONIC: HLT's sleep times out at timer deadlines. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&v->wake_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&v->parked_cond, NULL);
	v->cpu = x86_cpu_new(index, set->n, &vcpu_x86_env, v);
	v->mmu_vcpu = mmu_vcpu_create(mmu, index);
	if (!v->cpu || !v->mmu_vcpu) {
		if (v->mmu_vcpu)
			mmu_vcpu_destroy(v->mmu_vcpu);
		x86_cpu_free(v->cpu);
		free(v);
		return NULL;
	}
	x86_reset_boot(v->cpu, entry, 0x7000);
	atomic_store_explicit(&set->vcpus[index], v, memory_order_release);
	return v;
}

int vcpu_start(struct vcpu *v)
{
	int r = pthread_create(&v->thread, NULL, vcpu_thread, v);

	if (r)
		return -r;
	v->started = true;
	/* The thread id is what query-cpus-fast reports from now on. */
	pthread_mutex_lock(&v->wake_lock);
	while (!atomic_load_explicit(&v->tid, memory_order_relaxed))
		pthread_cond_wait(&v->parked_cond, &v->wake_lock);
	pthread_mutex_unlock(&v->wake_lock);
	return 0;
}

void vcpu_wait_parked(struct vcpu *v)
{
	if (!v->started)
		return;
	pthread_mutex_lock(&v->wake_lock);
	while (!v->parked && !v->exited)
		pthread_cond_wait(&v->parked_cond, &v->wake_lock);
	pthread_mutex_unlock(&v->wake_lock);
}

void vcpu_reset(struct vcpu *v)
{
	/*
	 * Held from "parked" to the end: the vCPU cannot leave block()
	 * meanwhile, so its (v) state is ours. Only the CPU is touched here,
	 * never the MMU: the MMU takes mmu_lock and then wake_lock (requests
	 * wake sleepers), so wake_lock is innermost.
	 */
	pthread_mutex_lock(&v->wake_lock);
	while (v->started && !v->parked && !v->exited)
		pthread_cond_wait(&v->parked_cond, &v->wake_lock);
	x86_reset_boot(v->cpu, v->entry, 0x7000);
	if (v->has_tsc_offset)
		x86_set_tsc_offset(v->cpu, v->tsc_offset);
	x86_tlb_flush(v->cpu);
	v->slice_end = 0;
	v->halted = false;
	/* Pending events die with the state they were raised against. */
	for (unsigned int i = 0; i < 4; i++)
		atomic_store_explicit(&v->irr[i], 0, memory_order_relaxed);
	atomic_store_explicit(&v->nmi, false, memory_order_relaxed);
	atomic_store_explicit(&v->init, false, memory_order_relaxed);
	atomic_store_explicit(&v->wait_sipi, false, memory_order_relaxed);
	atomic_store_explicit(&v->in_hlt, false, memory_order_relaxed);
	v->nr_tracked = 0;
	v->tracked_overflow = false;
	atomic_store_explicit(&v->stop_state, VCPU_STATE_RUNNING,
			      memory_order_relaxed);
	pthread_mutex_unlock(&v->wake_lock);
	/* After wake_lock: idle_lock is taken before the VM's device
	 * locks (devices_can_interrupt), which come before wake_lock. */
	pthread_mutex_lock(&v->set->idle_lock);
	v->set->halted_for_good = false;
	pthread_mutex_unlock(&v->set->idle_lock);
}

int vcpu_with_cpu(struct vcpu *v, int (*fn)(struct x86_cpu *cpu, void *ctx),
		  void *ctx)
{
	int r;

	/* As vcpu_reset(): from "parked" to the end, the (v) state is ours;
	 * wake_lock is innermost, so fn takes no other lock. */
	pthread_mutex_lock(&v->wake_lock);
	while (v->started && !v->parked && !v->exited)
		pthread_cond_wait(&v->parked_cond, &v->wake_lock);
	r = fn(v->cpu, ctx);
	x86_tlb_flush(v->cpu);
	v->slice_end = 0;
	pthread_mutex_unlock(&v->wake_lock);
	return r;
}

void vcpu_cpu_stats(const struct vcpu *v, struct x86_cpu_stats *out)
{
	x86_cpu_stats_get(v->cpu, out);
}

const char *vcpu_engine(const struct vcpu *v)
{
	return x86_engine_name(v->cpu);
}

void vcpu_set_tsc_offset(struct vcpu *v, int64_t offset)
{
	/* As vcpu_reset(): parked, the (v) state is ours. */
	pthread_mutex_lock(&v->wake_lock);
	while (v->started && !v->parked && !v->exited)
		pthread_cond_wait(&v->parked_cond, &v->wake_lock);
	v->tsc_offset = offset;
	v->has_tsc_offset = true;
	x86_set_tsc_offset(v->cpu, offset);
	pthread_mutex_unlock(&v->wake_lock);
}

uint64_t vcpu_guest_tsc(const struct vcpu *v)
{
	return x86_guest_tsc(v->cpu);
}

enum vcpu_state vcpu_state(const struct vcpu *v)
{
	struct vcpu *m = (struct vcpu *)v;
	int st = atomic_load_explicit(&m->stop_state, memory_order_relaxed);

	if (st != VCPU_STATE_RUNNING)
		return (enum vcpu_state)st;
	return atomic_load_explicit(&m->paused, memory_order_relaxed) ?
		       VCPU_STATE_PAUSED :
		       VCPU_STATE_RUNNING;
}

const char *vcpu_state_name(enum vcpu_state st)
{
	switch (st) {
	case VCPU_STATE_RUNNING:
		break;
	case VCPU_STATE_PAUSED:
		return "paused";
	case VCPU_STATE_HALTED:
		return "halted";
	case VCPU_STATE_CRASHED:
		return "crashed";
	}
	return "running";
}

bool vcpu_halted(const struct vcpu *v)
{
	return atomic_load_explicit(&((struct vcpu *)v)->in_hlt,
				    memory_order_relaxed);
}

int vcpu_thread_id(const struct vcpu *v)
{
	return atomic_load_explicit(&((struct vcpu *)v)->tid,
				    memory_order_relaxed);
}

void vcpu_destroy(struct vcpu *v)
{
	if (!v)
		return;
	if (v->started) {
		vcpu_make_request(v, VCPU_REQ_STOP, false);
		pthread_join(v->thread, NULL);
	}
	/* Under idle_lock: a last vCPU reporting every vCPU halted
	 * (all_halted()) reads the others under it. */
	pthread_mutex_lock(&v->set->idle_lock);
	atomic_store_explicit(&v->set->vcpus[v->index], NULL,
			      memory_order_release);
	pthread_mutex_unlock(&v->set->idle_lock);
	mmu_vcpu_destroy(v->mmu_vcpu);
	x86_cpu_free(v->cpu);
	pthread_cond_destroy(&v->parked_cond);
	pthread_cond_destroy(&v->wake_cond);
	pthread_mutex_destroy(&v->wake_lock);
	free(v);
}

void vcpu_stats_get(const struct vcpu *v, struct vcpu_stats *st)
{
	struct vcpu *m = (struct vcpu *)v;

	/* In this order, each acquire keeping the next load after it: the
	 * instruction count, then the request count (pairs with
	 * handle_requests()'s release increment, so request_insns is at
	 * least that handling's). A request count that has not moved since
	 * an earlier snapshot then vouches for that snapshot's insns. */
	st->insns = atomic_load_explicit(&m->st.insns, memory_order_acquire);
	st->requests =
		atomic_load_explicit(&m->st.requests, memory_order_acquire);
	st->request_insns = atomic_load_explicit(&m->st.request_insns,
						 memory_order_relaxed);
	st->exits = atomic_load_explicit(&m->st.exits, memory_order_relaxed);
	st->shadow_faults = atomic_load_explicit(&m->st.shadow_faults,
						 memory_order_relaxed);
	st->pio_exits =
		atomic_load_explicit(&m->st.pio_exits, memory_order_relaxed);
	st->pause_exits =
		atomic_load_explicit(&m->st.pause_exits, memory_order_relaxed);
	st->mmio_accesses = atomic_load_explicit(&m->st.mmio_accesses,
						 memory_order_relaxed);
	st->halts = atomic_load_explicit(&m->st.halts, memory_order_relaxed);
	st->irqs = atomic_load_explicit(&m->st.irqs, memory_order_relaxed);
	st->nmis = atomic_load_explicit(&m->st.nmis, memory_order_relaxed);
	st->guest_pf_injected = atomic_load_explicit(&m->st.guest_pf_injected,
						     memory_order_relaxed);
	st->emulated_writes = atomic_load_explicit(&m->st.emulated_writes,
						   memory_order_relaxed);
}

void vcpu_set_linux_boot(struct vcpu *v, gpa_t boot_params, uint16_t cs,
			 uint16_t ds, uint16_t gdt_limit)
{
	struct x86_sregs s;
	struct x86_regs r;

	/* As vcpu_reset(): parked (or not started), the (v) state is ours. */
	pthread_mutex_lock(&v->wake_lock);
	while (v->started && !v->parked && !v->exited)
		pthread_cond_wait(&v->parked_cond, &v->wake_lock);
	x86_get_regs(v->cpu, &r);
	r.gpr[X86_RSI] = boot_params;
	r.gpr[X86_RDI] = 0;
	x86_set_regs(v->cpu, &r);
	/* The boot GDT's descriptors have ABI v1's attributes: only the
	 * selectors and the table's limit differ. */
	x86_get_sregs(v->cpu, &s);
	s.seg[X86_CS].sel = cs;
	s.seg[X86_DS].sel = ds;
	s.seg[X86_ES].sel = ds;
	s.seg[X86_SS].sel = ds;
	s.gdt.limit = gdt_limit;
	x86_set_sregs(v->cpu, &s);
	pthread_mutex_unlock(&v->wake_lock);
}
