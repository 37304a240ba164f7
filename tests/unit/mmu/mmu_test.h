/*
 * Helpers shared by the core/mmu unit tests: guest RAM in test memory, a
 * builder for 4-level guest page tables written into it, and the CPU
 * state the guest ABI boots with (docs/GUEST-ABI.md, "Entry state").
 */
#ifndef MMUD_TESTS_MMU_TEST_H
#define MMUD_TESTS_MMU_TEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "mmu.h"
#include "mmu_rcu.h"

#define G_P (1ULL << 0)
#define G_W (1ULL << 1)
#define G_U (1ULL << 2)
#define G_A (1ULL << 5)
#define G_D (1ULL << 6)
#define G_PS (1ULL << 7)
#define G_NX (1ULL << 63)

/* Guest RAM: npages of anonymous memory. */
struct tmem {
	void *base;
	uint64_t npages;
};

static inline struct tmem tmem_alloc(uint64_t npages)
{
	struct tmem m = { .npages = npages };

	m.base = mmap(NULL, npages * PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m.base != MAP_FAILED);
	return m;
}

static inline void tmem_free(struct tmem *m)
{
	munmap(m->base, m->npages * PAGE_SIZE);
}

static inline hva_t tmem_hva(const struct tmem *m)
{
	return (hva_t)(uintptr_t)m->base;
}

/* The gpte slot for index idx of the table at gfn (memory at base_gfn). */
static inline _Atomic uint64_t *tmem_entry(const struct tmem *m, gfn_t base,
					   gfn_t table, unsigned idx)
{
	return (_Atomic uint64_t *)((char *)m->base +
				    (table - base) * PAGE_SIZE + idx * 8);
}

static inline void gpte_set(const struct tmem *m, gfn_t base, gfn_t table,
			    unsigned idx, uint64_t val)
{
	atomic_store(tmem_entry(m, base, table, idx), val);
}

static inline uint64_t gpte_get(const struct tmem *m, gfn_t base, gfn_t table,
				unsigned idx)
{
	return atomic_load(tmem_entry(m, base, table, idx));
}

static inline struct mmu_cpu_state boot_cpu(gfn_t pml4)
{
	struct mmu_cpu_state c = {
		.cr0 = X86_CR0_PG | X86_CR0_WP | 0x33,
		.cr3 = pml4 << PAGE_SHIFT,
		.cr4 = X86_CR4_PAE,
		.efer = X86_EFER_NXE | (1ULL << 8) | (1ULL << 10),
		.rflags = 0x2,
		.cpl = 0,
	};
	return c;
}

/*
 * Map gva -> gfn with 4 KiB pages, allocating tables from *next_table
 * (gfns inside m, which starts at base). Upper entries are P|W|U; the
 * leaf gets leaf_bits | P.
 */
static inline void map_4k(const struct tmem *m, gfn_t base, gfn_t pml4,
			  gfn_t *next_table, gva_t gva, gfn_t gfn,
			  uint64_t leaf_bits)
{
	gfn_t table = pml4;
	int level;

	for (level = 4; level > 1; level--) {
		unsigned idx = spte_index(gva, level);
		uint64_t e = gpte_get(m, base, table, idx);

		if (!(e & G_P)) {
			gfn_t t = (*next_table)++;

			memset((char *)m->base + (t - base) * PAGE_SIZE, 0,
			       PAGE_SIZE);
			e = (t << PAGE_SHIFT) | G_P | G_W | G_U;
			gpte_set(m, base, table, idx, e);
		}
		table = (e & 0x00003ffffffff000ULL) >> PAGE_SHIFT;
	}
	gpte_set(m, base, table, spte_index(gva, 1),
		 (gfn << PAGE_SHIFT) | leaf_bits | G_P);
}

/*
 * A vCPU interface for single-threaded tests: the VM has vCPUs that are
 * all outside guest mode, so requests are only recorded (a real wait
 * would return at once for the same reason).
 */
struct rec_ops {
	unsigned flushes, free_roots, waits;
};

static inline void rec_make_all(void *opaque, enum mmu_request req, bool wait)
{
	struct rec_ops *r = opaque;

	if (req == MMU_REQ_TLB_FLUSH)
		r->flushes++;
	if (req == MMU_REQ_FREE_OBSOLETE_ROOTS)
		r->free_roots++;
	r->waits += wait;
}

static inline void rec_make_one(void *opaque, unsigned vcpu,
				enum mmu_request req, bool wait)
{
	(void)vcpu;
	rec_make_all(opaque, req, wait);
}

static inline enum mmu_vcpu_mode rec_mode(void *opaque, unsigned vcpu)
{
	(void)opaque;
	(void)vcpu;
	return OUTSIDE_GUEST_MODE;
}

static inline const struct mmu_vcpu_ops *rec_vcpu_ops(void)
{
	static const struct mmu_vcpu_ops ops = {
		.make_request = rec_make_one,
		.make_all_request = rec_make_all,
		.mode = rec_mode,
	};
	return &ops;
}

/*
 * meson test --setup mmuoptions with memslots=rwlock among its words:
 * the read-side sections are the reader-writer lock for the whole
 * process (docs/MMU.md, "Switches"), set before any thread enters one.
 */
static inline int rcu_setup(void **state)
{
	static bool chosen;
	const char *o = getenv("MMUD_TEST_MMU_OPTIONS");

	(void)state;
	if (!chosen && o && strstr(o, "memslots=rwlock"))
		mmu_rcu_use_rwlock();
	chosen = true;
	mmu_rcu_register_thread();
	return 0;
}

static inline int rcu_teardown(void **state)
{
	(void)state;
	mmu_rcu_unregister_thread();
	return 0;
}

#endif
