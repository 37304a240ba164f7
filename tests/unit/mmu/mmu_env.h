/*
 * The environment of the MMU unit tests (mmu_env.c): guest RAM in two
 * memslots (slot 0 at gfn 0 holds the guest's page tables, slot 1 at
 * BASE1 its data), 4-level guest page tables built in slot 0 under the
 * boot CPU state's CR3, and either one vCPU whose requests are only
 * recorded (struct mmu_env, single-threaded) or the threaded vCPU double
 * of vcpu_double.h running over the same memory (struct tenv). Helpers
 * fault, translate through the shadow tables and audit. Internals
 * (mmu_int.h) are read to check state.
 */
#ifndef MMUD_TESTS_MMU_ENV_H
#define MMUD_TESTS_MMU_ENV_H

#include <errno.h>

#include "mmu_test.h"
#include "mmu_int.h"
#include "vcpu_double.h"

#define PML4 1
#define NPAGES0 64
#define BASE1 0x100
#define NPAGES1 16

struct mmu_env {
	struct tmem m0, m1; /* slot 0 at gfn 0, slot 1 at BASE1 */
	struct mmu *mmu;
	struct mmu_vcpu *v; /* vCPU 0; NULL in a struct tenv */
	struct rec_ops rec; /* what the MMU asked of the vCPUs */
	gfn_t next_table; /* the next free gfn for a guest table */
	struct mmu_cpu_state cpu; /* boot state, CR3 = PML4 */
};

/* Both slots writable, no dirty log. */
struct mmu_env *env_new(void);
/* The same with slot flags (MEMSLOT_READONLY, MEMSLOT_LOG_DIRTY). */
struct mmu_env *env_new_flags(uint32_t flags0, uint32_t flags1);
/* Audits (a failure fails the test), then frees everything. */
void env_free(struct mmu_env *e);
void env_audit(struct mmu_env *e);

/* Maps gva -> gfn (4 KiB) under the PML4 at gfn pml4; tables in slot 0. */
void env_map(struct mmu_env *e, gfn_t pml4, gva_t gva, gfn_t gfn,
	     uint64_t bits);

/* Loads v's root for cpu, then takes the fault as the vCPU layer does. */
int env_fault_v(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu, gva_t gva,
		unsigned access, struct mmu_fault_info *info);
/* The same for vCPU 0 in e->cpu, with or without the fault's info. */
int env_fault_info(struct mmu_env *e, gva_t gva, unsigned access,
		   struct mmu_fault_info *info);
int env_fault(struct mmu_env *e, gva_t gva, unsigned access);

/*
 * The soft TLB's view: loads v's root for cpu and walks the shadow
 * tables; 0 and the host address, or -EFAULT where the access would
 * exit with a shadow fault.
 */
int env_xlate_v(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu, gva_t gva,
		unsigned access, hva_t *hva);
int env_xlate(struct mmu_env *e, gva_t gva, unsigned access, hva_t *hva);

/* The shadow maps gva for access, to host address want. */
#define assert_shadow_maps(e, gva, access, want)                             \
	do {                                                                 \
		hva_t hva_;                                                  \
		assert_int_equal(env_xlate((e), (gva), (access), &hva_), 0); \
		assert_int_equal(hva_, (want));                              \
	} while (0)

/* The shadow does not map gva for access: it would fault. */
#define assert_shadow_misses(e, gva, access)                             \
	do {                                                             \
		hva_t hva_;                                              \
		assert_int_equal(env_xlate((e), (gva), (access), &hva_), \
				 -EFAULT);                               \
	} while (0)

/* The host address of a gfn of slot 0 or 1. */
hva_t env_hva(struct mmu_env *e, gfn_t gfn);
struct mmu_stats env_stats(struct mmu_env *e);

/* Host memory with an aligned start, for large sptes. */
struct big {
	void *map;
	size_t len;
	hva_t hva; /* aligned */
};

struct big big_alloc(size_t size, size_t align);
void big_free(struct big *b);

/*
 * The threaded environment: the same memory and page tables, and the
 * vCPU double's threads as the VM's vCPUs (env.v is NULL; env.rec stays
 * zero, the requests go to the threads).
 */
struct tenv {
	struct mmu_env env;
	struct tvm vm;
};

/* A round of a test's main thread while the vCPUs run. */
struct tenv_loop {
	unsigned rounds;
	/* After each round r with r % check_every == check_at: audit, and
	 * wait until every vCPU has entered guest mode again. */
	unsigned check_every, check_at;
	void (*round)(struct tenv *t, unsigned round, void *arg);
	void *arg;
};

struct tenv *tenv_new(void);
/* Maps gva -> gfn like env_map under PML4, and has the vCPUs touch gva
 * (loads and, when write, increments). */
void tenv_map_touched(struct tenv *t, gva_t gva, gfn_t gfn, uint64_t bits,
		      bool write);
/* Has the vCPUs touch gva, mapped by the caller. */
void tenv_touch(struct tenv *t, gva_t gva, bool write);
/* Fails the test naming round (~0u: after the vCPUs stopped). */
void tenv_audit(struct tenv *t, unsigned round);
/*
 * Starts nr vCPUs, runs the rounds while they run, stops them (a vCPU
 * that saw something a correct MMU never does fails the test) and
 * audits. The MMU's statistics then.
 */
struct mmu_stats tenv_run(struct tenv *t, unsigned nr,
			  const struct tenv_loop *loop);
/* Audits, then frees everything. */
void tenv_free(struct tenv *t);

#endif
