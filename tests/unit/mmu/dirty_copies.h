/*
 * What the threaded harvest tests (test_dirty_threads.c,
 * test_dirty_lockless_threads.c) share: the copy of the pages each
 * harvest reported, taken after the call that protected them, and the
 * vCPUs' access count to pace the harvests by. At the end the copy must
 * equal guest memory (docs/MMU.md, "Manual protection").
 */
#ifndef MMUD_TESTS_UNIT_MMU_DIRTY_COPIES_H
#define MMUD_TESTS_UNIT_MMU_DIRTY_COPIES_H

#include <sched.h>

#include "mmu_env.h"
#include "vcpu_double.h"

struct copies {
	uint64_t page[NPAGES1][4]; /* the words the vCPUs increment */
	uint64_t harvested;
};

/* Copies the pages whose bits are set (bit p: page BASE1 + p). */
static inline void copy_pages(struct tenv *t, struct copies *c, uint64_t bits)
{
	while (bits) {
		unsigned p = (unsigned)__builtin_ctzll(bits);
		const _Atomic uint64_t *w =
			(const _Atomic uint64_t *)(uintptr_t)env_hva(&t->env,
								     BASE1 + p);

		bits &= bits - 1;
		for (unsigned i = 0; i < 4; i++)
			c->page[p][i] = atomic_load_explicit(
				&w[i], memory_order_acquire);
		c->harvested++;
	}
}

/* The guest accesses every vCPU has made so far. */
static inline uint64_t accesses(struct tenv *t)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < t->vm.nr; i++)
		n += atomic_load_explicit(&t->vm.vcpus[i].accesses,
					  memory_order_relaxed);
	return n;
}

#endif
