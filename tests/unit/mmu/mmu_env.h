/*
 * The single-threaded environment of the MMU tests of unsync, fast
 * zap-all, MMIO sptes and large sptes: guest RAM in two memslots, a vCPU
 * whose requests are only recorded (mmu_test.h), and helpers to fault,
 * translate and audit. Internals (mmu_int.h) are read to check state.
 */
#ifndef MMUD_TESTS_MMU_ENV_H
#define MMUD_TESTS_MMU_ENV_H

#include <errno.h>

#include "mmu_test.h"
#include "mmu_int.h"

#define PML4 1
#define NPAGES0 64
#define BASE1 0x100
#define NPAGES1 16

struct penv {
	struct tmem m0, m1;
	struct mmu *mmu;
	struct mmu_vcpu *v;
	struct rec_ops rec;
	gfn_t next_table;
	struct mmu_cpu_state cpu;
};

static inline struct penv *penv_new(void)
{
	struct penv *e = calloc(1, sizeof(*e));
	char err[128];

	e->m0 = tmem_alloc(NPAGES0);
	e->m1 = tmem_alloc(NPAGES1);
	e->mmu = mmu_create(rec_vcpu_ops(), &e->rec);
	e->v = mmu_vcpu_create(e->mmu, 0);
	assert_int_equal(memslot_add(e->mmu, 0, 0, NPAGES0, tmem_hva(&e->m0), 0,
				     err, sizeof(err)),
			 0);
	assert_int_equal(memslot_add(e->mmu, 1, BASE1, NPAGES1,
				     tmem_hva(&e->m1), 0, err, sizeof(err)),
			 0);
	e->next_table = PML4 + 1;
	e->cpu = boot_cpu(PML4);
	return e;
}

static inline void penv_audit(struct penv *e)
{
	char msg[256];

	if (mmu_audit(e->mmu, msg, sizeof(msg)))
		fail_msg("audit: %s", msg);
}

static inline void penv_free(struct penv *e)
{
	penv_audit(e);
	mmu_vcpu_destroy(e->v);
	mmu_destroy(e->mmu);
	tmem_free(&e->m0);
	tmem_free(&e->m1);
	free(e);
}

static inline void penv_map(struct penv *e, gfn_t pml4, gva_t gva, gfn_t gfn,
			    uint64_t bits)
{
	map_4k(&e->m0, 0, pml4, &e->next_table, gva, gfn, bits);
}

static inline int penv_fault_v(struct penv *e, struct mmu_vcpu *v,
			       const struct mmu_cpu_state *cpu, gva_t gva,
			       unsigned access, struct mmu_fault_info *info)
{
	(void)e;
	assert_int_equal(mmu_vcpu_load(v, cpu), 0);
	return mmu_page_fault(v, cpu, gva, access, info);
}

static inline int penv_fault(struct penv *e, gva_t gva, unsigned access)
{
	struct mmu_fault_info info;

	return penv_fault_v(e, e->v, &e->cpu, gva, access, &info);
}

static inline int penv_xlate_v(struct mmu_vcpu *v,
			       const struct mmu_cpu_state *cpu, gva_t gva,
			       unsigned access, hva_t *hva)
{
	const _Atomic uint64_t *root;

	assert_int_equal(mmu_vcpu_load(v, cpu), 0);
	root = mmu_vcpu_root(v);
	if (!root)
		return -EFAULT;
	return mmu_shadow_translate(root, gva, access, cpu, hva);
}

static inline int penv_xlate(struct penv *e, gva_t gva, unsigned access,
			     hva_t *hva)
{
	return penv_xlate_v(e->v, &e->cpu, gva, access, hva);
}

static inline hva_t penv_hva(struct penv *e, gfn_t gfn)
{
	if (gfn >= BASE1)
		return tmem_hva(&e->m1) + (gfn - BASE1) * PAGE_SIZE;
	return tmem_hva(&e->m0) + gfn * PAGE_SIZE;
}

static inline struct mmu_stats penv_stats(struct penv *e)
{
	struct mmu_stats st;

	mmu_stats_get(e->mmu, &st);
	return st;
}

#endif
