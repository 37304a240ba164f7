/*
 * The threaded vCPU double of vcpu_double.h: request bits, modes, kicks
 * and waits as core/vcpu will do them, and a guest that only loads and
 * increments words through the shadow tables. It owns its threads and
 * soft TLBs; everything else belongs to the MMU under test.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "vcpu_double.h"
#include "mmu_rcu.h"

enum exit_reason { EXIT_REQUEST, EXIT_TIMER, EXIT_FAULT };

#define GUEST_BURST 256

/*
 * Set the request bit and kick the vCPU out of guest mode; returns what a
 * waiter must see change (exits) and the mode it sampled.
 */
static void kick(struct tvcpu *c, enum mmu_request req, uint64_t *exits0,
		 int *mode0)
{
	int m, expect = IN_GUEST_MODE;

	/*
	 * Dekker, docs/locking.md #1 and #2, as RMWs on one word: pairs
	 * with the vCPU's seq_cst fetch_or on its request word after its
	 * IN_GUEST_MODE store (vcpu_thread()). If the vCPU's RMW comes
	 * later it reads our bit, and our earlier spte stores happen before
	 * its spte loads; if it came first, its mode store happens before
	 * our mode load below, so we see it in guest mode, kick and wait.
	 */
	atomic_fetch_or_explicit(&c->requests, 1ULL << req,
				 memory_order_seq_cst);
	*exits0 = atomic_load_explicit(&c->exits, memory_order_acquire);
	m = atomic_load_explicit(&c->mode, memory_order_acquire);
	if (m == IN_GUEST_MODE)
		atomic_compare_exchange_strong(&c->mode, &expect,
					       EXITING_GUEST_MODE);
	*mode0 = m;
}

static void wait_exit(struct tvcpu *c, uint64_t exits0, int mode0)
{
	if (mode0 == OUTSIDE_GUEST_MODE)
		return;
	/* Acquire: pairs with the release stores in leave_guest(), so the
	 * vCPU's guest-mode loads happen before what the caller frees. */
	while (atomic_load_explicit(&c->exits, memory_order_acquire) ==
		       exits0 &&
	       atomic_load_explicit(&c->mode, memory_order_acquire) !=
		       OUTSIDE_GUEST_MODE)
		sched_yield();
}

static void tv_make_request(void *opaque, unsigned vcpu, enum mmu_request req,
			    bool wait)
{
	struct tvm *vm = opaque;
	uint64_t exits0;
	int mode0;

	kick(&vm->vcpus[vcpu], req, &exits0, &mode0);
	if (wait)
		wait_exit(&vm->vcpus[vcpu], exits0, mode0);
}

static void tv_make_all_request(void *opaque, enum mmu_request req, bool wait)
{
	struct tvm *vm = opaque;
	uint64_t exits0[TV_MAX_VCPUS];
	int mode0[TV_MAX_VCPUS];
	unsigned i;

	for (i = 0; i < vm->nr; i++)
		kick(&vm->vcpus[i], req, &exits0[i], &mode0[i]);
	if (wait)
		for (i = 0; i < vm->nr; i++)
			wait_exit(&vm->vcpus[i], exits0[i], mode0[i]);
}

static enum mmu_vcpu_mode tv_mode(void *opaque, unsigned vcpu)
{
	struct tvm *vm = opaque;

	return (enum mmu_vcpu_mode)atomic_load(&vm->vcpus[vcpu].mode);
}

/* The lockless walk mode as core/vcpu/request.c does it (docs/locking.md
 * #18): the mode, then the entry's RMW of the request word; the end is an
 * exit. */
static void tv_lockless_begin(void *opaque, unsigned vcpu)
{
	struct tvcpu *c = &((struct tvm *)opaque)->vcpus[vcpu];

	atomic_store_explicit(&c->mode, READING_SHADOW_PAGE_TABLES,
			      memory_order_relaxed);
	atomic_fetch_or_explicit(&c->requests, 0, memory_order_seq_cst);
}

static void tv_lockless_end(void *opaque, unsigned vcpu)
{
	struct tvcpu *c = &((struct tvm *)opaque)->vcpus[vcpu];

	atomic_fetch_add_explicit(&c->exits, 1, memory_order_release);
	atomic_store_explicit(&c->mode, OUTSIDE_GUEST_MODE,
			      memory_order_release);
}

const struct mmu_vcpu_ops *tv_ops(void)
{
	static const struct mmu_vcpu_ops ops = {
		.make_request = tv_make_request,
		.make_all_request = tv_make_all_request,
		.mode = tv_mode,
		.lockless_begin = tv_lockless_begin,
		.lockless_end = tv_lockless_end,
	};
	return &ops;
}

static uint64_t rnd(struct tvcpu *c)
{
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	return c->rng;
}

static void tlb_flush(struct tvcpu *c)
{
	memset(c->tlb, 0, sizeof(c->tlb));
}

static void fail_vcpu(struct tvcpu *c)
{
	atomic_store_explicit(&c->failed, 1, memory_order_relaxed);
}

/*
 * Guest mode: load or increment words through the soft TLB and the
 * shadow tables, with no lock and no RCU read side, checking for a kick
 * before every access (the "basic block" boundary).
 */
static enum exit_reason run_guest(struct tvcpu *c, const _Atomic uint64_t *root,
				  gva_t *gva_out, unsigned *access_out)
{
	struct tvm *vm = c->vm;
	unsigned n;

	for (n = 0; n < GUEST_BURST; n++) {
		uint64_t r = rnd(c);
		unsigned i = (unsigned)(r % vm->npages);
		bool write = vm->writes[i] && (r & 0x100);
		unsigned access = write ? MMU_ACCESS_WRITE : MMU_ACCESS_READ;
		gva_t gva = vm->gvas[i] + c->index * 8;
		unsigned t = (unsigned)((gva >> PAGE_SHIFT) % TV_TLB_SIZE);
		hva_t hva;

		if (atomic_load_explicit(&c->mode, memory_order_relaxed) !=
			    IN_GUEST_MODE ||
		    atomic_load_explicit(&c->requests, memory_order_relaxed) ||
		    atomic_load_explicit(&vm->stop, memory_order_relaxed))
			return EXIT_REQUEST;
		if (c->index == 0 && vm->pt_gva && (r & 0x3f0) == 0) {
			/* A guest page-table store: never through an spte. */
			if (!mmu_shadow_translate(root, vm->pt_gva,
						  MMU_ACCESS_WRITE, &vm->cpu,
						  &hva)) {
				fail_vcpu(c);
				return EXIT_REQUEST;
			}
			c->pt_pending = true;
			*gva_out = vm->pt_gva;
			*access_out = MMU_ACCESS_WRITE;
			return EXIT_FAULT;
		}
		if (c->tlb[t].page == (gva >> PAGE_SHIFT) + 1 &&
		    (!write || c->tlb[t].writable)) {
			hva = c->tlb[t].hva | (gva & (PAGE_SIZE - 1));
		} else {
			if (mmu_shadow_translate(root, gva, access, &vm->cpu,
						 &hva)) {
				*gva_out = gva;
				*access_out = access;
				return EXIT_FAULT;
			}
			c->tlb[t].page = (gva >> PAGE_SHIFT) + 1;
			c->tlb[t].hva = hva & PAGE_MASK;
			c->tlb[t].writable = write;
		}
		/* docs/ARCHITECTURE.md, "Guest memory is shared memory": a locked
		 * increment or an acquire load of the host address. */
		if (write)
			atomic_fetch_add((_Atomic uint64_t *)(uintptr_t)hva, 1);
		else
			(void)atomic_load_explicit(
				(_Atomic uint64_t *)(uintptr_t)hva,
				memory_order_acquire);
		atomic_fetch_add_explicit(&c->accesses, 1,
					  memory_order_relaxed);
	}
	return EXIT_TIMER;
}

static int handle_fault(struct tvcpu *c, gva_t gva, unsigned access)
{
	struct mmu_fault_info info;
	bool pt = c->pt_pending;
	int r = mmu_page_fault(c->mmu, &c->vm->cpu, gva, access, &info), e;

	c->pt_pending = false;
	atomic_fetch_add_explicit(&c->faults, 1, memory_order_relaxed);
	switch (r) {
	case MMU_FAULT_FIXED:
		/* A page-table store can never be fixed by an spte. */
		if (pt)
			fail_vcpu(c);
		break;
	case MMU_FAULT_RETRY:
		break;
	case MMU_FAULT_MMIO:
		/* Reads return all ones, writes are dropped: no access. */
		if (pt)
			fail_vcpu(c);
		atomic_fetch_add_explicit(&c->mmio, 1, memory_order_relaxed);
		break;
	case MMU_FAULT_EMULATE:
		/* Only the page-table stores may need emulation. */
		if (!pt) {
			fail_vcpu(c);
			break;
		}
		e = mmu_emulate_write(c->mmu, info.gpa,
				      c->vm->pt_vals[c->pt_next], 8);
		if (e == 0) {
			const _Atomic uint64_t *root = mmu_vcpu_root(c->mmu);
			hva_t hva;

			/* The spte derived from the old gpte is gone: no
			 * translation to the old page may survive the
			 * store (docs/MMU.md, "Emulated writes and the
			 * shadow-page count"). */
			if (root &&
			    !mmu_shadow_translate(root, c->vm->pt_target,
						  MMU_ACCESS_READ, &c->vm->cpu,
						  &hva) &&
			    (hva & PAGE_MASK) != c->vm->pt_hvas[c->pt_next])
				fail_vcpu(c);
			c->pt_next ^= 1;
			/* Release: the MMU counted the emulated store first
			 * (this thread); pairs with the test's load. */
			atomic_fetch_add_explicit(&c->vm->pt_writes, 1,
						  memory_order_release);
		} else if (e != -EAGAIN) {
			fail_vcpu(c);
		}
		atomic_fetch_add_explicit(&c->emulated, 1,
					  memory_order_relaxed);
		break;
	default:
		/* The guest's tables always map these gvas. */
		fail_vcpu(c);
		break;
	}
	return r;
}

static void *vcpu_thread(void *arg)
{
	struct tvcpu *c = arg;
	struct tvm *vm = c->vm;
	const _Atomic uint64_t *last_root = NULL;

	mmu_rcu_register_thread();
	/* Outside guest mode a vCPU is inside a read-side section. */
	mmu_rcu_read_lock();
	while (!atomic_load_explicit(&vm->stop, memory_order_relaxed)) {
		/* seq_cst exchange: take every request made so far; the
		 * ones that come later are seen at the entry RMW below. */
		uint64_t req = atomic_exchange(&c->requests, 0);
		const _Atomic uint64_t *root;
		enum exit_reason why;
		unsigned access = 0;
		gva_t gva = 0;

		if (req & (1ULL << MMU_REQ_FREE_OBSOLETE_ROOTS))
			mmu_vcpu_free_obsolete_roots(c->mmu);
		if (req & (1ULL << MMU_REQ_TLB_FLUSH))
			tlb_flush(c);
		if (mmu_vcpu_load(c->mmu, &vm->cpu)) {
			fail_vcpu(c);
			break;
		}
		root = mmu_vcpu_root(c->mmu);
		if (root != last_root)
			tlb_flush(c); /* a new root starts with no TLB */
		last_root = root;

		atomic_store_explicit(&c->mode, IN_GUEST_MODE,
				      memory_order_relaxed);
		mmu_rcu_read_unlock();
		atomic_fetch_add_explicit(&c->entries, 1, memory_order_relaxed);
		/*
		 * The full barrier after the mode store, as a seq_cst RMW on
		 * the request word: pairs with kick()'s fetch_or. Orders the
		 * mode store before the request check and before every spte
		 * load in run_guest() (docs/locking.md #1 and #2).
		 */
		if (atomic_fetch_or_explicit(&c->requests, 0,
					     memory_order_seq_cst))
			why = EXIT_REQUEST;
		else
			why = run_guest(c, root, &gva, &access);
		/* Release: our guest-mode loads happen before a waiter's
		 * free (pairs with the acquires in wait_exit()). */
		atomic_fetch_add_explicit(&c->exits, 1, memory_order_release);
		atomic_store_explicit(&c->mode, OUTSIDE_GUEST_MODE,
				      memory_order_release);
		mmu_rcu_read_lock();
		if (why == EXIT_FAULT) {
			int r = handle_fault(c, gva, access);

			/* A retry storm or an MMIO exit is a reschedule
			 * point too. */
			if (r == MMU_FAULT_RETRY || r == MMU_FAULT_MMIO)
				why = EXIT_TIMER;
		}
		if (why == EXIT_TIMER) {
			/*
			 * Reschedule point, where KVM's run loop drops SRCU
			 * too: a descheduled vCPU must not hold up grace
			 * periods (2 cores, more threads).
			 */
			mmu_rcu_read_unlock();
			sched_yield();
			mmu_rcu_read_lock();
		}
	}
	mmu_rcu_read_unlock();
	mmu_rcu_unregister_thread();
	return NULL;
}

void tvm_start(struct tvm *vm, unsigned nr)
{
	unsigned i;

	MMUD_ASSERT(nr <= TV_MAX_VCPUS);
	vm->nr = nr;
	atomic_store(&vm->stop, false);
	/* Create the MMU vCPUs here so teardown order is simple. */
	for (i = 0; i < nr; i++) {
		struct tvcpu *c = &vm->vcpus[i];

		c->vm = vm;
		c->index = i;
		c->rng = 0x9e3779b97f4a7c15ULL * (i + 1);
		c->mmu = mmu_vcpu_create(vm->mmu, i);
		MMUD_ASSERT(c->mmu);
		atomic_store(&c->mode, OUTSIDE_GUEST_MODE);
	}
	for (i = 0; i < nr; i++)
		MMUD_ASSERT(pthread_create(&vm->vcpus[i].thread, NULL,
					   vcpu_thread, &vm->vcpus[i]) == 0);
}

int tvm_stop(struct tvm *vm)
{
	unsigned i;
	int failed = 0;

	atomic_store(&vm->stop, true);
	for (i = 0; i < vm->nr; i++) {
		pthread_join(vm->vcpus[i].thread, NULL);
		failed += atomic_load(&vm->vcpus[i].failed);
	}
	for (i = 0; i < vm->nr; i++)
		mmu_vcpu_destroy(vm->vcpus[i].mmu);
	return failed;
}

void tvm_wait_entries(struct tvm *vm, uint64_t n)
{
	uint64_t start[TV_MAX_VCPUS];
	unsigned i;

	for (i = 0; i < vm->nr; i++)
		start[i] = atomic_load_explicit(&vm->vcpus[i].entries,
						memory_order_relaxed);
	/* A failed vCPU may have stopped: the caller's checks report it. */
	for (i = 0; i < vm->nr; i++)
		while (atomic_load_explicit(&vm->vcpus[i].entries,
					    memory_order_relaxed) <
			       start[i] + n &&
		       !atomic_load_explicit(&vm->vcpus[i].failed,
					     memory_order_relaxed))
			sched_yield();
}
