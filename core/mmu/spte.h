/*
 * The shadow page-table entry (spte) format and the walk of shadow tables:
 * the one owner of both. core/mmu builds sptes; the software CPU's soft
 * TLB (core/vcpu/x86/mem.c) fills itself with spte_walk(), the hardware
 * walk of our CPU, and mmu_shadow_translate() (mmu.c) checks what that
 * walk found for the MMU's tests, so the tests exercise the walker that
 * runs (docs/MMU.md). Nothing here takes a lock.
 */
#ifndef MMUD_SPTE_H
#define MMUD_SPTE_H

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base.h"

/*
 * An spte is an x86-64 paging-structure entry whose address field holds a
 * host virtual address (< 2^47) instead of a physical one, so the software
 * CPU walks shadow tables exactly as hardware walks page tables. Non-leaf
 * sptes are always P|W|U|A with NX clear: permissions live in the leaves.
 * Leaves are 4 KiB, or large (PS at level 2 or 3, the host address of the
 * whole aligned 2 MiB / 1 GiB frame; large.c) where the slot allows; a
 * guest large page that may not be mapped large is split by direct pages.
 */
#define SPTE_P (1ULL << 0)
#define SPTE_W (1ULL << 1)
#define SPTE_U (1ULL << 2)
#define SPTE_A (1ULL << 5)
#define SPTE_D (1ULL << 6)
#define SPTE_PS (1ULL << 7)
/* Software: the host mapping allows writes (not a READONLY slot). */
#define SPTE_HOST_WRITABLE (1ULL << 9)
/* Software: the MMU allows W (the gfn is not a shadowed page table). */
#define SPTE_MMU_WRITABLE (1ULL << 10)
/* Software: a real mapping (set on every installed spte). */
#define SPTE_MMU_PRESENT (1ULL << 11)
#define SPTE_NX (1ULL << 63)
#define SPTE_ADDR_MASK 0x00007ffffffff000ULL /* bits 12..46 */

static_assert(SPTE_P == 0x1 && SPTE_W == 0x2 && SPTE_U == 0x4,
	      "x86 PTE P/W/U bits");
static_assert(SPTE_A == 0x20 && SPTE_D == 0x40 && SPTE_PS == 0x80,
	      "x86 PTE A/D/PS bits");
static_assert(SPTE_NX == 0x8000000000000000ULL, "x86 PTE XD bit");
static_assert(((SPTE_HOST_WRITABLE | SPTE_MMU_WRITABLE | SPTE_MMU_PRESENT) &
	       0xe00) == (SPTE_HOST_WRITABLE | SPTE_MMU_WRITABLE |
			  SPTE_MMU_PRESENT),
	      "software bits live in bits 9-11, ignored by x86 walkers");
static_assert((SPTE_ADDR_MASK & 0xfff) == 0 && (SPTE_ADDR_MASK >> 47) == 0,
	      "frame field holds a page-aligned host address below 2^47");

#define MMU_PT_ENTRIES 512
#define MMU_ROOT_LEVEL 4

static inline bool is_spte_present(uint64_t spte)
{
	return spte & SPTE_MMU_PRESENT;
}

static inline hva_t spte_to_hva(uint64_t spte)
{
	return spte & SPTE_ADDR_MASK;
}

static inline unsigned spte_index(gva_t gva, int level)
{
	return (gva >> (PAGE_SHIFT + 9 * (level - 1))) & 511;
}

/* The access rights of a translation (KVM's ACC_*). */
#define MMU_ACC_EXEC 1u
#define MMU_ACC_WRITE 2u
#define MMU_ACC_USER 4u
#define MMU_ACC_ALL 7u

static inline bool is_last_spte(uint64_t spte, int level)
{
	return level == 1 || (spte & SPTE_PS);
}

/*
 * MMIO sptes (docs/MMU.md, "MMIO generation"): a gfn with no memslot gets
 * a non-present spte (P = 0, so the CPU takes a shadow fault) that caches
 * the gfn, the guest's access and the low bits of the memslot generation.
 */
#define SPTE_MMIO (1ULL << 62)
#define SPTE_MMIO_ACC_SHIFT 1 /* MMU_ACC_* in bits 1..3 */
#define SPTE_MMIO_GFN_MASK 0x00003ffffffff000ULL /* bits 12..45 */
#define SPTE_MMIO_GEN_SHIFT 46
#define SPTE_MMIO_GEN_BITS 16 /* bits 46..61 */
#define MMIO_GEN_MASK ((1ULL << SPTE_MMIO_GEN_BITS) - 1)

static_assert((SPTE_MMIO & (SPTE_P | SPTE_MMU_PRESENT)) == 0,
	      "an MMIO spte is not present to the CPU nor to the MMU");
static_assert(SPTE_MMIO_GEN_SHIFT + SPTE_MMIO_GEN_BITS == 62,
	      "the MMIO generation ends below the MMIO tag");

static inline bool is_mmio_spte(uint64_t spte)
{
	return (spte & (SPTE_MMIO | SPTE_P)) == SPTE_MMIO;
}

/* What a walk of shadow tables found for one address. */
struct spte_leaf {
	uint64_t spte; /* the leaf (P set) */
	int level; /* 1 (4 KiB), 2 (2 MiB), 3 (1 GiB) */
	hva_t page; /* host address of the 4 KiB page holding the address */
	unsigned rights; /* MMU_ACC_* every level allows */
};

/*
 * The lockless walk a vCPU does in guest mode, as hardware walks page
 * tables: each spte is one acquire load, which pairs with the MMU's
 * release store of it (a linked child table is seen initialised); a
 * table unlinked meanwhile is freed only after every vCPU has left guest
 * mode (docs/locking.md #2, #4). False when an entry is not present (the
 * vCPU takes a shadow fault). Bits 63..48 of gva are ignored.
 */
static inline bool spte_walk(const _Atomic uint64_t *root, gva_t gva,
			     struct spte_leaf *out)
{
	const _Atomic uint64_t *table = root;
	unsigned rights = MMU_ACC_ALL;

	for (int level = MMU_ROOT_LEVEL; table; level--) {
		uint64_t spte = atomic_load_explicit(
			&table[spte_index(gva, level)], memory_order_acquire);

		if (!(spte & SPTE_P))
			return false;
		if (!(spte & SPTE_W))
			rights &= ~MMU_ACC_WRITE;
		if (!(spte & SPTE_U))
			rights &= ~MMU_ACC_USER;
		if (spte & SPTE_NX)
			rights &= ~MMU_ACC_EXEC;
		if (!is_last_spte(spte, level)) {
			table = (const _Atomic uint64_t *)(uintptr_t)
				spte_to_hva(spte);
			continue;
		}
		out->spte = spte;
		out->level = level;
		out->rights = rights;
		/* A large leaf maps the whole aligned frame. */
		out->page = (spte_to_hva(spte) &
			     ~((PAGE_SIZE << (9 * (level - 1))) - 1)) +
			    (gva & ((PAGE_SIZE << (9 * (level - 1))) - 1) &
			     PAGE_MASK);
		return true;
	}
	return false;
}

#endif
