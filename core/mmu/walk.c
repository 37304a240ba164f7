/*
 * The guest page-table walker: 4-level paging as SDM vol. 3 chapter 4
 * describes it (4.5 translation, 4.6 access rights, 4.7 page-fault error
 * codes, 4.8 accessed and dirty flags), for the fault path and for the
 * software CPU's own translations. Guest memory is untrusted and shared:
 * gptes are read with single atomic loads and A/D bits are set with
 * compare-exchange, re-walking when another writer got there first. It
 * owns no state; shadow pages are mmu.c's.
 */
#include "mmu_int.h"

#define GPTE_P (1ULL << 0)
#define GPTE_W (1ULL << 1)
#define GPTE_U (1ULL << 2)
#define GPTE_A (1ULL << 5)
#define GPTE_D (1ULL << 6)
#define GPTE_PS (1ULL << 7)
#define GPTE_NX (1ULL << 63)
/* Address bits 12..MAXPHYADDR-1. */
#define GPTE_ADDR_MASK (((1ULL << MMU_GUEST_MAXPHYADDR) - 1) & ~(PAGE_SIZE - 1))
/* Bits MAXPHYADDR..51 are reserved in every entry. */
#define GPTE_RSVD_HIGH \
	(((1ULL << 52) - 1) & ~((1ULL << MMU_GUEST_MAXPHYADDR) - 1))
#define WALK_MAX_RETRIES 16

/* Reserved bits of a present entry at level (SDM vol. 3, 4.5.4 tables). */
static uint64_t rsvd_bits(int level, uint64_t gpte, bool nxe)
{
	uint64_t r = GPTE_RSVD_HIGH;

	if (!nxe)
		r |= GPTE_NX;
	if (level == 4)
		r |= GPTE_PS; /* PML4E bit 7 must be 0 */
	else if (level == 3 && (gpte & GPTE_PS))
		r |= ((1ULL << 30) - 1) & ~((1ULL << 13) - 1); /* 1 GiB */
	else if (level == 2 && (gpte & GPTE_PS))
		r |= ((1ULL << 21) - 1) & ~((1ULL << 13) - 1); /* 2 MiB */
	return r;
}

/*
 * True if the accumulated access rights acc forbid the access. User
 * accesses need a user page (and W / X); supervisor fetches need X and,
 * with SMEP, a supervisor page; supervisor data accesses to user pages
 * are refused under SMAP unless explicit with AC=1; supervisor writes
 * need W only with CR0.WP=1.
 */
static bool permission_fault(unsigned acc, unsigned access,
			     const struct mmu_cpu_state *cpu)
{
	bool write = access & MMU_ACCESS_WRITE;
	bool fetch = access & MMU_ACCESS_FETCH;
	bool implicit = access & MMU_ACCESS_IMPLICIT;
	bool user = cpu->cpl == 3 && !implicit;
	bool upage = acc & MMU_ACC_USER;

	if (fetch && !(acc & MMU_ACC_EXEC))
		return true;
	if (user)
		return !upage || (write && !(acc & MMU_ACC_WRITE));
	if (fetch)
		return upage && (cpu->cr4 & X86_CR4_SMEP);
	if (upage && (cpu->cr4 & X86_CR4_SMAP) &&
	    (implicit || !(cpu->rflags & X86_RFLAGS_AC)))
		return true;
	return write && !(acc & MMU_ACC_WRITE) && (cpu->cr0 & X86_CR0_WP);
}

static uint32_t base_error_code(unsigned access,
				const struct mmu_cpu_state *cpu)
{
	uint32_t ec = 0;

	if (access & MMU_ACCESS_WRITE)
		ec |= PFERR_WRITE;
	if (cpu->cpl == 3 && !(access & MMU_ACCESS_IMPLICIT))
		ec |= PFERR_USER;
	/* SDM 4.7: I/D is reported only with SMEP or (PAE and NXE). */
	if ((access & MMU_ACCESS_FETCH) &&
	    ((cpu->cr4 & X86_CR4_SMEP) || (cpu->efer & X86_EFER_NXE)))
		ec |= PFERR_FETCH;
	return ec;
}

/* 1: read, 0: no slot (all ones), -1: slot being deleted (retry). */
static int read_gpte(struct mmu_vcpu *v, gfn_t table, unsigned idx,
		     uint64_t *gpte)
{
	const struct memslot *s = memslot_lookup(v->mmu, table, &v->slot_hint);
	_Atomic uint64_t *p;

	if (!s) {
		/* docs/GUEST-ABI.md, "Unbacked addresses": all ones. */
		*gpte = ~0ULL;
		return 0;
	}
	if (s->flags & MEMSLOT_INVALID)
		return -1;
	p = (_Atomic uint64_t *)(uintptr_t)(memslot_gfn_to_hva(s, table) +
					    idx * 8);
	/* Acquire: the gpte is guest memory other vCPUs write with release
	 * stores (docs/ARCHITECTURE.md, "Guest memory is shared memory"). */
	*gpte = atomic_load_explicit(p, memory_order_acquire);
	return 1;
}

/*
 * Set A on every entry used, and D on the leaf of a write (SDM 4.8).
 * Returns false if a gpte changed under us (the caller re-walks).
 */
static bool update_ad(struct mmu_vcpu *v, gva_t gva, unsigned access,
		      struct mmu_walk *w)
{
	int level;

	for (level = MMU_ROOT_LEVEL; level >= w->level; level--) {
		uint64_t old = w->gpte[level], new = old | GPTE_A;
		const struct memslot *s;
		_Atomic uint64_t *p;

		if (level == w->level && (access & MMU_ACCESS_WRITE))
			new |= GPTE_D;
		if (new == old)
			continue;
		s = memslot_lookup(v->mmu, w->table_gfn[level], &v->slot_hint);
		/* No slot: the gpte was all ones and faulted already. A
		 * read-only slot keeps the guest's table as it is. */
		if (!s || (s->flags & (MEMSLOT_READONLY | MEMSLOT_INVALID)))
			continue;
		p = (_Atomic uint64_t
			     *)(uintptr_t)(memslot_gfn_to_hva(
						   s, w->table_gfn[level]) +
					   spte_index(gva, level) * 8);
		/* seq_cst: a locked RMW on guest memory, like the CPU's. */
		if (!atomic_compare_exchange_strong(p, &old, new))
			return false;
		memslot_mark_dirty(s, w->table_gfn[level]);
		w->gpte[level] = new;
	}
	return true;
}

enum mmu_walk_result mmu_walk_guest(struct mmu_vcpu *v,
				    const struct mmu_cpu_state *cpu, gva_t gva,
				    unsigned access, struct mmu_walk *w)
{
	bool nxe = cpu->efer & X86_EFER_NXE;
	int tries;

	for (tries = 0; tries < WALK_MAX_RETRIES; tries++) {
		gfn_t table = (cpu->cr3 & GPTE_ADDR_MASK) >> PAGE_SHIFT;
		unsigned acc = MMU_ACC_ALL;
		int level;

		w->error_code = base_error_code(access, cpu);
		for (level = MMU_ROOT_LEVEL; level >= 1; level--) {
			uint64_t gpte;
			int r = read_gpte(v, table, spte_index(gva, level),
					  &gpte);

			if (r < 0)
				return MMU_WALK_RETRY;
			w->table_gfn[level] = table;
			w->gpte[level] = gpte;
			if (!(gpte & GPTE_P))
				return MMU_WALK_FAULT;
			if (gpte & rsvd_bits(level, gpte, nxe)) {
				w->error_code |= PFERR_PRESENT | PFERR_RSVD;
				return MMU_WALK_FAULT;
			}
			acc &= mmu_gpte_access(gpte, nxe);
			w->access[level] = acc;
			if (level == 1 || (gpte & GPTE_PS))
				break;
			table = (gpte & GPTE_ADDR_MASK) >> PAGE_SHIFT;
		}
		w->level = level;
		w->pte_access = acc;
		{
			uint64_t span = 1ULL << (PAGE_SHIFT + 9 * (level - 1));

			w->gpa = (w->gpte[level] & GPTE_ADDR_MASK &
				  ~(span - 1)) |
				 (gva & (span - 1));
		}
		if (permission_fault(acc, access, cpu)) {
			w->error_code |= PFERR_PRESENT;
			return MMU_WALK_FAULT;
		}
		if (update_ad(v, gva, access, w))
			return MMU_WALK_OK;
	}
	/* Another writer keeps changing the tables: let the vCPU retry. */
	return MMU_WALK_RETRY;
}
