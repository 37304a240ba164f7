/*
 * core/mmu: the shadow MMU of one VM, built the way KVM's x86 shadow MMU
 * is (docs/MMU.md). It owns the memslot set, the
 * shadow page tables and their metadata (hash, rmaps, parent ptes, write
 * tracking), the guest page-table walker and the audit. It has no threads
 * and does no I/O: vCPU threads call the fault path, the control plane
 * calls the memslot functions, and the MMU reaches vCPUs only through the
 * struct mmu_vcpu_ops interface below (implemented by core/vcpu).
 *
 * Threads that call into the MMU must be registered with
 * mmu_rcu_register_thread() (mmu_rcu.h).
 */
#ifndef MMUD_MMU_H
#define MMUD_MMU_H

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "spte.h"
#include "x86_arch.h"

/* ---- guest CPU state and accesses ------------------------------------- */

/* The part of the vCPU state address translation depends on. */
struct mmu_cpu_state {
	uint64_t cr0, cr3, cr4, efer, rflags;
	unsigned cpl;
};

/* An access: flags combined. */
#define MMU_ACCESS_READ 0u
#define MMU_ACCESS_WRITE (1u << 0)
#define MMU_ACCESS_FETCH (1u << 1)
/* Implicit supervisor access (descriptor tables...), even at CPL 3. */
#define MMU_ACCESS_IMPLICIT (1u << 2)

/* Guest MAXPHYADDR (CPUID 0x80000008, docs/GUEST-ABI.md, "CPUID"). */
#define MMU_GUEST_MAXPHYADDR 46
#define MMU_GFN_LIMIT (1ULL << (MMU_GUEST_MAXPHYADDR - PAGE_SHIFT))

/* ---- the VM's MMU and the vCPU interface ------------------------------ */

enum mmu_vcpu_mode {
	OUTSIDE_GUEST_MODE,
	IN_GUEST_MODE,
	EXITING_GUEST_MODE,
	READING_SHADOW_PAGE_TABLES,
};

/* Request bits the MMU makes of vCPUs (core/vcpu owns the others). */
enum mmu_request {
	/* Drop every cached translation (soft TLB, decoded blocks). */
	MMU_REQ_TLB_FLUSH = 0,
	/* Call mmu_vcpu_free_obsolete_roots() before entering guest mode. */
	MMU_REQ_FREE_OBSOLETE_ROOTS = 1,
	/* The dirty ring was pushed to soft-full, or reset: look at it
	 * again (mmu_vcpu_dirty_ring_full()). */
	MMU_REQ_DIRTY_RING = 2,
};

/*
 * Implemented by core/vcpu (and by the unit tests' threaded double).
 * make_request sets the request bit with a seq_cst read-modify-write,
 * then reads the target's mode and kicks it out of IN_GUEST_MODE; with
 * wait it returns only when every target that was not OUTSIDE_GUEST_MODE
 * has left that mode (docs/MMU.md, "Requests, modes and the flush with
 * wait"). The vCPU, after storing
 * IN_GUEST_MODE, must do a seq_cst RMW on its request word (e.g. fetch_or
 * 0) before it checks requests and before its first spte load: the two
 * RMWs on one word are the Dekker pair for both the request and the spte
 * stores the MMU made before asking (ThreadSanitizer models RMWs, not
 * fences). The MMU calls these with mmu_lock held, so an implementation
 * must not take MMU locks nor wait for a vCPU outside guest mode.
 */
struct mmu_vcpu_ops {
	void (*make_request)(void *opaque, unsigned vcpu, enum mmu_request req,
			     bool wait);
	void (*make_all_request)(void *opaque, enum mmu_request req, bool wait);
	enum mmu_vcpu_mode (*mode)(void *opaque, unsigned vcpu);
	/*
	 * Around a walk of shadow pages by the vCPU's own thread outside
	 * guest mode without mmu_lock (the fast page fault, the MMIO fast
	 * path): begin stores READING_SHADOW_PAGE_TABLES and then does the
	 * same seq_cst RMW of the request word as a guest entry, so a flush
	 * with wait either waits for the walk or the walk sees the unlinked
	 * tables; end leaves that mode as a guest exit does, waking a
	 * waiter (docs/locking.md, "Lockless shadow walks"). May be NULL
	 * (a VM without vCPU threads): the MMU then takes no fast path.
	 */
	void (*lockless_begin)(void *opaque, unsigned vcpu);
	void (*lockless_end)(void *opaque, unsigned vcpu);
};

struct mmu;
struct mmu_vcpu;

/* NULL means -ENOMEM. ops may be NULL for a VM that has no vCPUs. */
struct mmu *mmu_create(const struct mmu_vcpu_ops *ops, void *opaque);
/* No vCPU may run; every mmu_vcpu must have been destroyed. */
void mmu_destroy(struct mmu *mmu);

/* Per-vCPU MMU state; the vCPU thread owns it. NULL means -ENOMEM. */
struct mmu_vcpu *mmu_vcpu_create(struct mmu *mmu, unsigned index);
void mmu_vcpu_destroy(struct mmu_vcpu *v);

/* ---- memslots --------------------------------------------------------- */

#define MEMSLOT_READONLY (1u << 0)
#define MEMSLOT_LOG_DIRTY (1u << 1)
/* Internal: published while a delete/move is in progress (docs/MMU.md,
 * "Memslots under RCU"). */
#define MEMSLOT_INVALID (1u << 31)
#define MEMSLOT_USER_FLAGS (MEMSLOT_READONLY | MEMSLOT_LOG_DIRTY)
#define MEMSLOT_MAX_ID 511
/* Bit 63 of the generation: an update is between publish and grace end. */
#define MEMSLOT_GEN_UPDATE_IN_PROGRESS (1ULL << 63)

struct memslot_meta;

/*
 * One memslot. Immutable once published: an update publishes a new copy.
 * All fields (c).
 */
struct memslot {
	uint32_t id;
	uint32_t flags;
	gfn_t base_gfn;
	uint64_t npages;
	hva_t hva;
	/* Dirty bitmap, one bit per page, set atomically; NULL unless
	 * LOG_DIRTY. Shared by copies of the slot while logging stays on. */
	_Atomic uint64_t *dirty_bitmap;
	/* rmaps and write tracking, shared by the copies of one slot. */
	struct memslot_meta *meta;
};

/*
 * Every memslot function takes slots_lock; the control plane calls them
 * while vCPUs run. On error they return -EINVAL (zero size, hva not page
 * aligned, range beyond MAXPHYADDR, bad id or flags), -EEXIST (id in use,
 * or the range overlaps another slot), -ENOENT (no such id) or -ENOMEM,
 * write a message naming the problem into err (if errlen > 0) and change
 * nothing.
 */
int memslot_add(struct mmu *mmu, uint32_t id, gfn_t base_gfn, uint64_t npages,
		hva_t hva, uint32_t flags, char *err, size_t errlen);
/* On return no spte maps the slot and no vCPU can reach its memory:
 * the caller may unmap it. */
int memslot_delete(struct mmu *mmu, uint32_t id, char *err, size_t errlen);
int memslot_move(struct mmu *mmu, uint32_t id, gfn_t new_base_gfn, char *err,
		 size_t errlen);
/* READONLY cannot change after creation; LOG_DIRTY may. */
int memslot_set_flags(struct mmu *mmu, uint32_t id, uint32_t flags, char *err,
		      size_t errlen);
/*
 * Harvest: copy the slot's dirty bitmap into out (npages bits, words of
 * 64) and clear it, write-protecting the reported pages and flushing
 * remote TLBs before returning (docs/MMU.md, "Dirty logging"). -EINVAL
 * if not logging.
 */
int memslot_dirty_log_get(struct mmu *mmu, uint32_t id, uint64_t *out,
			  size_t nwords, char *err, size_t errlen);

/* What memslot_dirty_log_fetch() does to the bits it reports. */
enum memslot_fetch {
	MEMSLOT_FETCH_PEEK, /* nothing: only read them */
	/* clear them, write-protect their pages, flush (as _get) */
	MEMSLOT_FETCH_CLEAR_PROTECT,
	/* clear them only; memslot_dirty_log_clear() protects later */
	MEMSLOT_FETCH_CLEAR,
};

/*
 * The pages [first, first + num) of the slot's dirty log into out
 * ((num + 63) / 64 words, bit i of word j is page first + 64j + i),
 * read, cleared or cleared and write-protected as mode says; the bits
 * outside the range are left alone (core/mmu/dirty_log.c). first must be
 * a multiple of 64 and the range inside the slot. -ENOENT, or -EINVAL
 * with err naming the argument (not logging, first-page, num-pages).
 */
int memslot_dirty_log_fetch(struct mmu *mmu, uint32_t id, uint64_t first,
			    uint64_t num, enum memslot_fetch mode,
			    uint64_t *out, char *err, size_t errlen);
/*
 * KVM_CLEAR_DIRTY_LOG: clear the bits of mask (laid out as fetch's out)
 * in the log, then write-protect exactly those pages and flush remote
 * TLBs before returning, so the caller's copy of them comes after every
 * vCPU dropped its writable translation (docs/MMU.md, "Manual
 * protection"). *cleared (may be NULL): the pages in mask. Errors as
 * fetch, and -EINVAL for a mask bit past num.
 */
int memslot_dirty_log_clear(struct mmu *mmu, uint32_t id, uint64_t first,
			    uint64_t num, const uint64_t *mask,
			    uint64_t *cleared, char *err, size_t errlen);

/*
 * Readers: inside mmu_rcu_read_lock(). The returned slot stays valid until
 * the read-side section ends. memslot_lookup() returns INVALID slots too
 * (callers decide: the fault path retries); hint is a per-vCPU last-slot
 * index (may be NULL).
 */
const struct memslot *memslot_lookup(struct mmu *mmu, gfn_t gfn,
				     unsigned *hint);
uint64_t memslot_generation(struct mmu *mmu);
unsigned memslot_count(struct mmu *mmu);

static inline hva_t memslot_gfn_to_hva(const struct memslot *slot, gfn_t gfn)
{
	return slot->hva + ((gfn - slot->base_gfn) << PAGE_SHIFT);
}

/* ---- guest page-table walker ------------------------------------------ */

struct mmu_walk {
	/* Level of the leaf gpte: 1 (4 KiB), 2 (2 MiB), 3 (1 GiB). */
	int level;
	gpa_t gpa;
	/* Indexed by level 1..4: gfn of the table read at that level, the
	 * gpte read from it, and the access ANDed over levels 4..level. */
	gfn_t table_gfn[MMU_ROOT_LEVEL + 1];
	uint64_t gpte[MMU_ROOT_LEVEL + 1];
	unsigned access[MMU_ROOT_LEVEL + 1];
	/* The leaf's access (access[level]). */
	unsigned pte_access;
	/* On MMU_WALK_FAULT: the #PF error code. */
	uint32_t error_code;
};

enum mmu_walk_result {
	MMU_WALK_OK,
	MMU_WALK_FAULT, /* deliver #PF with error_code, CR2 = gva */
	MMU_WALK_RETRY, /* a table lies in a slot being deleted */
};

/*
 * Translate gva as the guest's 4-level page tables say (SDM vol. 3,
 * chapter 4), checking permissions and reserved bits, and set A (and D
 * for writes) with compare-exchange in guest memory when it succeeds.
 * Tables in gfns without a memslot read as all ones. Caller: inside
 * mmu_rcu_read_lock(). Bits 63..48 of gva are ignored (canonicality is
 * the CPU's #GP check).
 */
enum mmu_walk_result mmu_walk_guest(struct mmu_vcpu *v,
				    const struct mmu_cpu_state *cpu, gva_t gva,
				    unsigned access, struct mmu_walk *w);

/* ---- vCPU roots, the fault path, emulated writes ---------------------- */

/*
 * Make sure v has a root for cpu's CR3 and paging mode (allocating the
 * shadow root, pinned by root_count). Called by the vCPU thread outside
 * guest mode. 0, or -ENOMEM. A CR3 outside every memslot (or in one being
 * deleted) leaves no root: the shadow walk misses and the fault path says
 * what the guest sees.
 */
int mmu_vcpu_load(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu);
/* Drop the root (CR3 change the caller wants to forget, vCPU teardown). */
void mmu_vcpu_unload(struct mmu_vcpu *v);
/* On MMU_REQ_FREE_OBSOLETE_ROOTS: drop the root if it was zapped. */
void mmu_vcpu_free_obsolete_roots(struct mmu_vcpu *v);
/* The shadow table the software CPU walks (NULL: none loaded). */
const _Atomic uint64_t *mmu_vcpu_root(const struct mmu_vcpu *v);

/*
 * The lockless shadow walk a vCPU does in guest mode (the hardware walk
 * of the software CPU): each spte is one acquire load. Checks the leaf as
 * hardware with CR0.WP=1 would, plus the guest's SMEP/SMAP/AC and CPL.
 * 0 with *hva set, or -EFAULT: no spte allows the access (take a shadow
 * page fault).
 */
int mmu_shadow_translate(const _Atomic uint64_t *root, gva_t gva,
			 unsigned access, const struct mmu_cpu_state *cpu,
			 hva_t *hva);

enum mmu_fault_result {
	/* An spte for the access is installed: retry the access. */
	MMU_FAULT_FIXED,
	/* Raced with an invalidation, or the root is gone: handle
	 * requests, mmu_vcpu_load(), retry. */
	MMU_FAULT_RETRY,
	/* Deliver #PF: info->error_code, CR2 = the faulting gva. */
	MMU_FAULT_GUEST_PF,
	/* info->gpa has no memslot (or is a write to a READONLY slot):
	 * reads return all ones, writes are dropped (docs/GUEST-ABI.md,
	 * "Unbacked addresses"). */
	MMU_FAULT_MMIO,
	/* A write the guest may do but no spte may allow (a shadowed page
	 * table, or a supervisor write under CR0.WP=0 to a read-only page):
	 * perform it with mmu_emulate_write(info->gpa). */
	MMU_FAULT_EMULATE,
};

struct mmu_fault_info {
	gpa_t gpa;
	uint32_t error_code;
};

/*
 * The shadow page fault (docs/MMU.md, "The fault path"): guest walk,
 * shadow pages along the
 * path, write-protect the tables it shadows, install the spte, rmap it,
 * mark the page dirty. Called by the vCPU thread outside guest mode.
 * Returns an enum mmu_fault_result, or -ENOMEM.
 */
int mmu_page_fault(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu,
		   gva_t gva, unsigned access, struct mmu_fault_info *info);

/*
 * An emulated guest write of len (1, 2, 4, 8) bytes at gpa, within one
 * page: stored atomically, dirty-logged, and any spte derived from the
 * written gpte zapped (docs/MMU.md, "Emulated writes and the shadow-page
 * count"). 0; -EINVAL for a bad length;
 * -EAGAIN if the slot is being deleted (retry the instruction). Writes
 * without a slot or to a READONLY slot are dropped.
 */
int mmu_emulate_write(struct mmu_vcpu *v, gpa_t gpa, uint64_t val,
		      unsigned len);

/*
 * The MMU's half of a guest write the software CPU already stored to a
 * tracked gfn (a page the vCPU mapped for writing after MMU_FAULT_EMULATE):
 * mark it dirty and zap any spte derived from the written gpte, as
 * mmu_emulate_write() does after its own store (KVM's order: the write,
 * then kvm_page_track_write). Called by the vCPU thread outside guest mode.
 * 0; -EINVAL for a bad length; -EAGAIN if the slot is being deleted (its
 * sptes go with it).
 */
int mmu_track_write(struct mmu_vcpu *v, gpa_t gpa, unsigned len);

/*
 * Log a guest store to gpa in the dirty bitmap of the slot that maps it
 * now, a slot being deleted or moved included (its copies share the
 * bitmap). For stores the software CPU makes in guest mode through a
 * page mapped for emulated writes: mark at the store, as KVM marks an
 * emulated write while it holds SRCU, because by the time the vCPU
 * reports the write (mmu_track_write, after leaving guest mode) a move
 * may have completed and the gpa may no longer be in the slot. Caller:
 * inside mmu_rcu_read_lock().
 */
void mmu_mark_dirty(struct mmu *mmu, gpa_t gpa);

/* ---- the dirty ring (core/mmu/dirty_ring.c) -------------------------- */

/*
 * KVM's dirty ring (docs/MMU.md, "The dirty ring"): with it on, a fault
 * that maps a page of a logging slot writable pushes (slot, offset) to
 * the faulting vCPU's ring instead of setting the slot's bitmap bit.
 * Entries per vCPU: a power of two in [MMU_DIRTY_RING_MIN,
 * MMU_DIRTY_RING_MAX]; a vCPU whose ring holds size -
 * MMU_DIRTY_RING_RESERVE unreset entries (soft-full) does not enter
 * guest mode until a reset makes room.
 */
#define MMU_DIRTY_RING_RESERVE 64u
#define MMU_DIRTY_RING_MIN 128u
#define MMU_DIRTY_RING_MAX 65536u

/* One harvested entry: the memslot id and the page's offset in it. */
struct mmu_dirty_entry {
	uint32_t slot;
	uint64_t offset;
};

/*
 * Turns the ring on with entries per vCPU, for the vCPUs made so far and
 * those made later. Before any vCPU runs, once. 0; -EINVAL (entries out
 * of bounds or not a power of two, with err saying so), -EEXIST (on
 * already) or -ENOMEM; nothing changes on error.
 */
int mmu_dirty_ring_enable(struct mmu *mmu, uint32_t entries, char *err,
			  size_t errlen);
/* Entries per vCPU, 0 while the ring is off. Any thread. */
uint32_t mmu_dirty_ring_size(struct mmu *mmu);
/*
 * Harvest: copies up to max pushed entries of vCPU vcpu's ring, oldest
 * first, into out and marks them harvested. The pages stay writable
 * until mmu_dirty_ring_reset(). Returns how many (0: none pushed since),
 * -ENOENT for a vCPU the MMU does not have, -EINVAL with the ring off.
 * Takes slots_lock; vCPUs push meanwhile.
 */
int mmu_dirty_ring_harvest(struct mmu *mmu, unsigned vcpu,
			   struct mmu_dirty_entry *out, unsigned max);
/*
 * Reset: write-protect again the page of every harvested entry of every
 * ring (those of slots still logging), flush remote TLBs, then free the
 * entries and wake the vCPUs held at soft-full. Returns the entries
 * reset. Entries pushed but not harvested stay.
 */
uint64_t mmu_dirty_ring_reset(struct mmu *mmu);
/*
 * Moves every ring's pushed entries into their slots' bitmaps and resets
 * them: what the bitmap readers (memslot_dirty_log_get/_fetch) do first,
 * so the bitmap API reports ring pushes too. Caller holds no MMU lock.
 */
void mmu_dirty_ring_to_bitmap(struct mmu *mmu);

struct mmu_dirty_ring_stats {
	uint64_t pushes; /* entries pushed since the vCPU was made */
	uint64_t full_exits; /* times it stopped at soft-full */
	uint32_t used; /* entries pushed and not yet reset */
};
/* vCPU vcpu's counters (relaxed snapshots); -ENOENT, -EINVAL as harvest. */
int mmu_dirty_ring_stats(struct mmu *mmu, unsigned vcpu,
			 struct mmu_dirty_ring_stats *st);
/*
 * The vCPU thread, before it enters guest mode: true while its ring is
 * soft-full, when it must not enter but wait for a request (a reset
 * makes MMU_REQ_DIRTY_RING of it). Counts a soft-full exit the first
 * time it answers true for a fill.
 */
bool mmu_vcpu_dirty_ring_full(struct mmu_vcpu *v);

/* ---- control: write-protect, zap, statistics, audit ------------------- */

/* Write-protect every spte of gfn and flush; true if one was writable. */
bool mmu_write_protect_gfn(struct mmu *mmu, gfn_t gfn);
/* Zap every leaf spte mapping [start, end) and flush. */
void mmu_zap_gfn_range(struct mmu *mmu, gfn_t start, gfn_t end);
/* Zap every shadow page (slow: under mmu_lock, then flush and free). */
void mmu_zap_all(struct mmu *mmu);

struct mmu_stats {
	uint64_t pages; /* shadow pages allocated */
	uint64_t sptes; /* present leaf sptes */
	uint64_t faults_fixed, faults_guest_pf, faults_mmio, faults_emulate;
	uint64_t retries;
	uint64_t zapped_pages, zapped_sptes;
	uint64_t flushes, write_protects, emulated_writes;
	/* Leaf tables made unsync, unsync pages synced, fast
	 * zap-alls, obsolete pages freed after one, MMIO sptes installed
	 * and faults answered from one, large (2 MiB / 1 GiB) sptes
	 * installed. */
	uint64_t unsyncs, syncs, fast_zaps, obsolete_freed;
	/* Write faults on a write-tracked (shadowed) gfn, whether they
	 * ended in unsync or in emulation. */
	uint64_t tracked_write_faults;
	/* Of those, the ones that could not unsync because the gfn is
	 * shadowed above level 1 (docs/MMU.md, "Unsync and sync"); upper
	 * tables zapped for write flooding; gfns unprotected because a
	 * write to them never completed (docs/MMU.md, "Write flooding",
	 * "Writes that never complete"). */
	uint64_t unsync_refused, flooded_pages, unprotects;
	uint64_t mmio_sptes, mmio_hits, large_sptes;
	/* The dirty ring: entries pushed, soft-full exits, entries reset,
	 * pushes that found the ring full and went to the bitmap. */
	uint64_t ring_pushes, ring_full_exits, ring_resets, ring_overflows;
};

void mmu_stats_get(struct mmu *mmu, struct mmu_stats *st);

/*
 * Check every spte of every shadow page against the guest page tables and
 * the memslots, every rmap and parent-pte entry and every write-track
 * count (docs/MMU.md, "What the audit checks"). 0, or -EINVAL with the
 * first
 * inconsistency named in msg. Guest tables changed behind the MMU's back
 * (not through mmu_emulate_write) are reported as inconsistencies too.
 */
int mmu_audit(struct mmu *mmu, char *msg, size_t msglen);

/*
 * The live audit, in two parts (docs/MMU.md, "The live audit"), one at a
 * time per MMU. mmu_audit_begin() makes the checks that need every page
 * at once (links to live pages, roots, the memslots' rmaps and counts),
 * none of which reads guest memory, in one mmu_lock section: vCPUs may
 * run meanwhile. It gives up with -ETIMEDOUT once CLOCK_MONOTONIC passes
 * deadline_ns (0: never). It returns the number of shadow pages left for
 * the steps, or -EINVAL with the first inconsistency in msg. Each
 * mmu_audit_step() then checks at most max_pages of those whole, against
 * the memslots and the guest's tables (the pages zapped meanwhile drop
 * out, the ones made since are not this pass's): 1 if some are left, 0
 * when done, -EINVAL. Call the steps with the guest's page-table writes
 * quiescent (every vCPU parked), as mmu_audit().
 */
int mmu_audit_begin(struct mmu *mmu, uint64_t deadline_ns, char *msg,
		    size_t msglen);
int mmu_audit_step(struct mmu *mmu, unsigned max_pages, char *msg,
		   size_t msglen);

/* ---- switches (docs/MMU.md, "Switches") -------------------------------- */

enum mmu_option {
	MMU_OPT_UNSYNC, /* enum mmu_unsync_mode */
	MMU_OPT_ZAP_ALL, /* enum mmu_zap_all_mode */
	MMU_OPT_MMIO_WRAP, /* enum mmu_mmio_wrap_mode */
	MMU_OPT_MEMSLOTS, /* enum mmu_memslots_mode */
	MMU_OPT_WP, /* enum mmu_wp_mode */
	MMU_OPT_FAST_PF, /* enum mmu_fast_pf_mode */
	MMU_OPT_NR,
};

/* Values in the order of each option's names (core/mmu/options.c); the
 * first is what a VM runs with unless told otherwise. */
enum mmu_unsync_mode {
	MMU_UNSYNC_REACHABLE, /* sync the unsync pages a root reaches */
	MMU_UNSYNC_OFF, /* never unsync: emulate every write to a table */
	MMU_UNSYNC_ALL, /* sync every unsync page at each sync point */
};
enum mmu_zap_all_mode {
	MMU_ZAP_ALL_FAST, /* x-mmu-zap-all: obsolete generation, then free */
	MMU_ZAP_ALL_SLOW, /* every page zapped under one mmu_lock hold */
};
enum mmu_mmio_wrap_mode {
	MMU_MMIO_WRAP_ZAP_ALL, /* a stamp wrap zaps every page (fast) */
	MMU_MMIO_WRAP_ZAP_MMIO, /* it clears the MMIO sptes only */
};
enum mmu_memslots_mode {
	MMU_MEMSLOTS_RCU, /* lookups in RCU read-side sections */
	MMU_MEMSLOTS_RWLOCK, /* the same sections as a reader-writer lock */
};
enum mmu_wp_mode {
	MMU_WP_LOCKLESS, /* dirty-log write protection walks rmaps lockless */
	MMU_WP_LOCKED, /* ... under mmu_lock */
};
enum mmu_fast_pf_mode {
	MMU_FAST_PF_ON, /* a dirty-logging write fault is fixed by cmpxchg */
	MMU_FAST_PF_OFF, /* every write fault takes mmu_lock */
};

struct mmu_option_desc {
	const char *name;
	const char *const *values; /* NULL-terminated, the default first */
	bool runtime; /* may change while vCPUs run */
};

const struct mmu_option_desc *mmu_option_desc(enum mmu_option opt);
/*
 * An option and its value by name ("unsync", "all"), or "NAME=VALUE":
 * 0, or -EINVAL with err naming the unknown option (and the known ones)
 * or the value (and the option's values). Needs no MMU.
 */
int mmu_option_lookup(const char *name, const char *value, enum mmu_option *opt,
		      unsigned int *val, char *err, size_t errlen);
int mmu_option_parse(const char *s, enum mmu_option *opt, unsigned int *val,
		     char *err, size_t errlen);
/* Takes effect at the next decision it governs; any thread. */
void mmu_option_set(struct mmu *mmu, enum mmu_option opt, unsigned int val);
unsigned int mmu_option_get(struct mmu *mmu, enum mmu_option opt);

/* ---- unsync and sync, fast zap-all, MMIO sptes, large sptes ---------- */

/*
 * Unsync (docs/MMU.md, "Unsync and sync"): with it on, a guest write to a
 * gfn that
 * is shadowed only as a level-1 table makes those pages unsync and maps
 * the gfn writable instead of asking for emulation; upper levels stay
 * write-tracked. The vCPU layer turns it on once it calls the sync entry
 * points below at the guest's flush points (off by default: without
 * them a guest would keep seeing stale translations).
 */
void mmu_set_unsync(struct mmu *mmu, bool on);

/*
 * Bring every unsync page reachable from the root for cpu (loading that
 * root as mmu_vcpu_load() does) back in sync, with one remote flush for
 * the write protection and one for what the sync dropped. Call at MOV
 * CR3 (unless the PCID no-flush bit is set), at CR4.PGE changes and for
 * whole-TLB guest flushes (INVPCID all-context). mmu_vcpu_load() syncs
 * on its own when it loads a root other than the current one. 0 or
 * -ENOMEM. The vCPU thread, outside guest mode.
 */
int mmu_vcpu_sync(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu);

/*
 * INVLPG of gva (docs/MMU.md, "Unsync and sync"): re-derive the one spte
 * for gva in each
 * unsync page on the root's path to it; pages stay unsync. The vCPU
 * thread, outside guest mode, after its own TLB dropped gva.
 */
void mmu_invlpg(struct mmu_vcpu *v, gva_t gva);

/*
 * Fast zap-all (docs/MMU.md, "Fast zap-all and obsolete pages"): under
 * mmu_lock bump the 64-bit
 * mmu_valid_gen, so every page becomes obsolete and can never look valid
 * again, and ask every vCPU (with wait) to drop obsolete roots; O(1) for
 * the caller. The obsolete pages stay linked among themselves, reachable
 * from no current root, until mmu_zap_obsolete_pages() frees them.
 */
void mmu_zap_all_fast(struct mmu *mmu);
/*
 * Free obsolete pages in batches, dropping mmu_lock between batches;
 * returns how many were freed. Safe to call from any thread at any time,
 * concurrently with faults and further fast zaps.
 */
uint64_t mmu_zap_obsolete_pages(struct mmu *mmu);

#endif
