/*
 * The vCPU mode protocol, as KVM's (docs/MMU.md, "Requests, modes and the
 * flush with wait"; docs/locking.md #1-#3a):
 * a vCPU enters guest mode with a store and a full barrier before it
 * checks its requests; a requester sets a request bit with a full
 * barrier and then moves a vCPU it finds in guest mode to
 * EXITING_GUEST_MODE, kicking it (the CPU polls the kick at every basic
 * block); with wait it returns only once every vCPU that could still run
 * guest code from before the request has left guest mode, sleeping on the
 * vCPU's futex while it waits. Also the struct mmu_vcpu_ops the MMU
 * calls to make requests.
 */
#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "explore.h"
#include "vcpu_int.h"

static void wake(struct vcpu *v)
{
	pthread_mutex_lock(&v->wake_lock);
	if (v->sleeping)
		pthread_cond_signal(&v->wake_cond);
	pthread_mutex_unlock(&v->wake_lock);
}

/*
 * True while v is in guest mode (or being kicked out of it) and has not
 * left since its exit count was seen (docs/locking.md #3: a transition
 * counter,
 * not the mode alone, since it may leave and re-enter between two looks;
 * any entry after the request sees the bit and leaves again). Acquire
 * pairs with the vCPU's release store of OUTSIDE_GUEST_MODE and its RMW
 * of exits.
 */
static bool still_inside(struct vcpu *v, uint64_t seen)
{
	return atomic_load_explicit(&v->mode, memory_order_acquire) !=
		       OUTSIDE_GUEST_MODE &&
	       atomic_load_explicit(&v->exits, memory_order_acquire) == seen;
}

/* A kicked vCPU that is running leaves within a basic block; spin that
 * long before sleeping. */
#define EXIT_SPINS 512

/*
 * Waits until v is outside guest mode or has left it since seen. Spins
 * briefly, then sleeps on the vCPU's futex: a vCPU thread the host has
 * preempted stays in guest mode until it runs again (KVM's would have
 * left it on the host interrupt), and a requester that spun or yielded
 * would hold the host CPU the vCPU needs to see its kick.
 */
#ifdef MMUD_EXPLORE
struct exit_wait {
	struct vcpu *v;
	uint64_t seen;
};

static bool has_left(void *arg)
{
	struct exit_wait *w = arg;

	return !still_inside(w->v, w->seen);
}
#endif

static void wait_for_exit(struct vcpu *v, uint64_t seen)
{
#ifdef MMUD_EXPLORE
	/* The explorer's scheduler runs the vCPU until it has left. */
	struct exit_wait w = { v, seen };

	explore_wait_until(has_left, &w);
	return;
#endif
	for (unsigned int i = 0; i < EXIT_SPINS; i++) {
		if (!still_inside(v, seen))
			return;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	}
	for (;;) {
		/* The snapshot before we announce ourselves: a wake-up after
		 * it changes the word, and FUTEX_WAIT then returns at once. */
		uint32_t word = atomic_load_explicit(&v->exit_futex,
						     memory_order_acquire);
		bool inside;

		/* seq_cst RMW, then a seq_cst load of exits: pairs with the
		 * vCPU's seq_cst RMW of exits and load of exit_waiters
		 * (leave_guest_mode). The mode store precedes that RMW, so
		 * the count alone tells whether it left since. */
		atomic_fetch_add_explicit(&v->exit_waiters, 1,
					  memory_order_seq_cst);
		inside = atomic_load_explicit(&v->exits,
					      memory_order_seq_cst) == seen &&
			 atomic_load_explicit(&v->mode, memory_order_acquire) !=
				 OUTSIDE_GUEST_MODE;
		if (inside)
			syscall(SYS_futex, &v->exit_futex, FUTEX_WAIT_PRIVATE,
				word, NULL, NULL, 0);
		atomic_fetch_sub_explicit(&v->exit_waiters, 1,
					  memory_order_relaxed);
		if (!inside)
			return;
	}
}

/*
 * Posts the request and kicks; true when a requester that waits must
 * wait for the vCPU to leave guest mode after exit count *seen.
 */
static bool post_request(struct vcpu *v, enum vcpu_request req, uint64_t *seen)
{
	int mode = IN_GUEST_MODE;

	/* seq_cst: orders everything the caller wrote before (zapped
	 * sptes, a new memslot array) before the mode read below, and pairs
	 * with the vCPU's fence after it stores IN_GUEST_MODE: either the
	 * vCPU sees this bit before it runs guest code, or we see it in
	 * guest mode and kick it (docs/locking.md #1). */
	EXPLORE_POINT(EXPLORE_REQUEST, &v->requests, req);
	atomic_fetch_or_explicit(&v->requests, 1ULL << req,
				 memory_order_seq_cst);
	/*
	 * The exit count, between the request and the kick: not before the
	 * request (an exit and re-entry in between would look like "left
	 * since"), not after the kick (see below). Acquire, after the
	 * seq_cst RMW, pairs with the vCPU's RMW of it on leaving.
	 */
	*seen = atomic_load_explicit(&v->exits, memory_order_acquire);
	EXPLORE_POINT(EXPLORE_KICK, &v->mode, 0);
	/* On failure, mode holds what the vCPU was doing instead. */
	if (atomic_compare_exchange_strong_explicit(
		    &v->mode, &mode, EXITING_GUEST_MODE, memory_order_seq_cst,
		    memory_order_seq_cst))
		atomic_store_explicit(&v->kick, 1, memory_order_relaxed);
	wake(v);
	/*
	 * Outside guest mode after our request: its next entry sees the bit
	 * (the Dekker pair above), so there is nothing to wait for, as KVM
	 * sends no IPI there. Waiting anyway could last for ever: the vCPU
	 * may take the bit outside guest mode and go back in with its exit
	 * count unchanged and nothing left to kick it out.
	 */
	return mode != OUTSIDE_GUEST_MODE;
}

void vcpu_make_request(struct vcpu *v, enum vcpu_request req, bool wait)
{
	uint64_t seen;

	if (post_request(v, req, &seen) && wait)
		wait_for_exit(v, seen);
}

/*
 * Every vCPU's request is posted and kicked before the first wait, as
 * KVM kicks all vCPUs and then waits for them together: a requester
 * that waited for each in turn would pay a host scheduling period for
 * every preempted vCPU (64 spinning vCPUs: up to 64 periods), instead
 * of about one. In chunks of KICK_BATCH vCPUs.
 */
#define KICK_BATCH 64

void vcpu_set_make_request(struct vcpu_set *set, enum vcpu_request req,
			   bool wait)
{
	for (unsigned int base = 0; base < set->n; base += KICK_BATCH) {
		struct vcpu *pending[KICK_BATCH];
		uint64_t seen[KICK_BATCH];
		unsigned int n = 0;

		for (unsigned int i = base; i < set->n && i < base + KICK_BATCH;
		     i++) {
			struct vcpu *v = atomic_load_explicit(
				&set->vcpus[i], memory_order_acquire);

			if (v && post_request(v, req, &seen[n]) && wait)
				pending[n++] = v;
		}
		for (unsigned int i = 0; i < n; i++)
			wait_for_exit(pending[i], seen[i]);
	}
}

enum mmu_vcpu_mode vcpu_mode(const struct vcpu *v)
{
	return (enum mmu_vcpu_mode)atomic_load_explicit(
		&((struct vcpu *)v)->mode, memory_order_acquire);
}

void vcpu_set_pause(struct vcpu *v, bool paused)
{
	atomic_store_explicit(&v->paused, paused, memory_order_relaxed);
	/* The request's seq_cst fetch_or publishes the flag. */
	vcpu_make_request(v, VCPU_REQ_PAUSE, false);
}

/*
 * docs/locking.md #15: the event's seq_cst RMW before the request's
 * seq_cst fetch_or (#1). The vCPU takes the request with an acquire
 * exchange and only then looks at irr and nmi, so it sees the event;
 * the request itself kicks it out of guest mode or wakes it from HLT.
 */
int vcpu_raise_irq(struct vcpu *v, unsigned int vector)
{
	uint64_t bit, old;

	if (vector < 32 || vector > 255)
		return -EINVAL;
	bit = 1ULL << (vector % 64);
	old = atomic_fetch_or_explicit(&v->irr[vector / 64], bit,
				       memory_order_seq_cst);
	vcpu_make_request(v, VCPU_REQ_EVENT, false);
	return (old & bit) ? 0 : 1;
}

void vcpu_raise_nmi(struct vcpu *v)
{
	atomic_exchange_explicit(&v->nmi, true, memory_order_seq_cst);
	vcpu_make_request(v, VCPU_REQ_EVENT, false);
}

void vcpu_raise_init(struct vcpu *v)
{
	atomic_exchange_explicit(&v->init, true, memory_order_seq_cst);
	vcpu_make_request(v, VCPU_REQ_EVENT, false);
}

bool vcpu_wait_for_sipi(const struct vcpu *v)
{
	return atomic_load_explicit(&((struct vcpu *)v)->wait_sipi,
				    memory_order_relaxed);
}

void vcpu_set_add_wake_source(struct vcpu_set *set)
{
	atomic_fetch_add_explicit(&set->wake_sources, 1, memory_order_release);
}

void vcpu_set_remove_wake_source(struct vcpu_set *set)
{
	atomic_fetch_sub_explicit(&set->wake_sources, 1, memory_order_release);
}

static void ops_make_request(void *opaque, unsigned int vcpu,
			     enum mmu_request req, bool wait)
{
	struct vcpu_set *set = opaque;
	struct vcpu *v;

	if (vcpu >= set->n)
		return;
	v = atomic_load_explicit(&set->vcpus[vcpu], memory_order_acquire);
	if (v)
		vcpu_make_request(v, (enum vcpu_request)req, wait);
}

static void ops_make_all_request(void *opaque, enum mmu_request req, bool wait)
{
	vcpu_set_make_request(opaque, (enum vcpu_request)req, wait);
}

static enum mmu_vcpu_mode ops_mode(void *opaque, unsigned int vcpu)
{
	struct vcpu_set *set = opaque;
	struct vcpu *v;

	if (vcpu >= set->n)
		return OUTSIDE_GUEST_MODE;
	v = atomic_load_explicit(&set->vcpus[vcpu], memory_order_acquire);
	return v ? vcpu_mode(v) : OUTSIDE_GUEST_MODE;
}

/*
 * KVM's walk_shadow_page_lockless_begin/end, for this vCPU's own thread
 * outside guest mode (docs/locking.md, "Lockless shadow walks", #18).
 * Begin: the mode store, then the seq_cst RMW of the request word that a
 * guest entry does (#1, #2), which pairs with a flusher's seq_cst RMW of
 * the same word: either the flusher's RMW comes first, and the walk,
 * which loads sptes after ours, sees every spte it unlinked before it;
 * or ours comes first, and the flusher's mode read after its RMW sees
 * READING_SHADOW_PAGE_TABLES (its cmpxchg from IN_GUEST_MODE fails) and
 * it waits for our end. Pending requests are left for the next guest
 * entry: a walk takes none. End: exactly a guest exit (#3, #3a), so a
 * sleeping flusher is woken.
 */
static void ops_lockless_begin(void *opaque, unsigned int vcpu)
{
	struct vcpu_set *set = opaque;
	struct vcpu *v =
		atomic_load_explicit(&set->vcpus[vcpu], memory_order_relaxed);

	atomic_store_explicit(&v->mode, READING_SHADOW_PAGE_TABLES,
			      memory_order_relaxed);
	EXPLORE_POINT(EXPLORE_MODE, &v->mode, READING_SHADOW_PAGE_TABLES);
	atomic_fetch_or_explicit(&v->requests, 0, memory_order_seq_cst);
}

static void ops_lockless_end(void *opaque, unsigned int vcpu)
{
	struct vcpu_set *set = opaque;

	vcpu_leave_guest_mode(
		atomic_load_explicit(&set->vcpus[vcpu], memory_order_relaxed));
}

const struct mmu_vcpu_ops vcpu_mmu_ops = {
	.make_request = ops_make_request,
	.make_all_request = ops_make_all_request,
	.mode = ops_mode,
	.lockless_begin = ops_lockless_begin,
	.lockless_end = ops_lockless_end,
};

/*
 * Leaves guest mode: everything this vCPU did in guest mode is before the
 * release store (pairs with a waiting requester's acquire loads); the
 * exit count's seq_cst RMW then the seq_cst load of exit_waiters pair
 * with a sleeping requester's RMW of exit_waiters then load of exits
 * (wait_for_exit): either it sees the new count or we see it and wake it.
 */
void vcpu_leave_guest_mode(struct vcpu *v)
{
	EXPLORE_POINT(EXPLORE_MODE, &v->mode, OUTSIDE_GUEST_MODE);
	atomic_store_explicit(&v->mode, OUTSIDE_GUEST_MODE,
			      memory_order_release);
	atomic_fetch_add_explicit(&v->exits, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&v->exit_waiters, memory_order_seq_cst)) {
		atomic_fetch_add_explicit(&v->exit_futex, 1,
					  memory_order_release);
		syscall(SYS_futex, &v->exit_futex, FUTEX_WAKE_PRIVATE,
			INT32_MAX, NULL, NULL, 0);
	}
}

bool vcpu_enter_guest_mode(struct vcpu *v)
{
	/* Only OUTSIDE_GUEST_MODE clears the kick: a requester sets it only
	 * after moving us from IN_GUEST_MODE. */
	atomic_store_explicit(&v->kick, 0, memory_order_relaxed);
	atomic_store_explicit(&v->mode, IN_GUEST_MODE, memory_order_release);
	EXPLORE_POINT(EXPLORE_MODE, &v->mode, IN_GUEST_MODE);
	/*
	 * The one full barrier of guest entry (docs/locking.md #1, #2), as a
	 * seq_cst read-modify-write of the request word (which
	 * ThreadSanitizer models, unlike a fence): orders the mode store
	 * before the request check and before every spte read in guest mode.
	 * Pairs with the requester's seq_cst fetch_or/cmpxchg and, through
	 * them, with the MMU's zap-then-flush.
	 */
	if (atomic_fetch_or_explicit(&v->requests, 0, memory_order_seq_cst)) {
		vcpu_leave_guest_mode(v);
		return false;
	}
	return true;
}
