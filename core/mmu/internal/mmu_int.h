/*
 * core/mmu private definitions: the VM's MMU object, the memslot array,
 * shadow pages, pte lists (rmaps and parent ptes). Shared by the files of
 * core/mmu, by its unit tests (which corrupt these structures on purpose
 * to test the audit), by the explorer (tests/explorer/world.c) and by
 * bench/bench_mmu.c, which look behind the API; nothing else
 * includes it.
 *
 * Lock legend used below (docs/locking.md):
 *   (c) constant after creation      (v) the owning vCPU thread
 *   (m) mmu->mmu_lock                (s) mmu->slots_lock
 *   (r) RCU-published (read under mmu_rcu_read_lock, freed after a grace
 *       period)
 *   (a) atomic; the memory order and its pair are given at the field
 */
#ifndef MMUD_MMU_INT_H
#define MMUD_MMU_INT_H

#include <pthread.h>

#include "explore.h"
#include "mmu.h"

/* ---- lists ----------------------------------------------------------- */

struct list_node {
	struct list_node *prev, *next;
};

static inline void list_init(struct list_node *h)
{
	h->prev = h->next = h;
}

static inline bool list_empty(const struct list_node *h)
{
	return h->next == h;
}

static inline void list_add(struct list_node *n, struct list_node *h)
{
	n->next = h->next;
	n->prev = h;
	h->next->prev = n;
	h->next = n;
}

static inline void list_del(struct list_node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- pte lists: rmaps and parent ptes (docs/MMU.md) ------------------ */

#define PTE_LIST_EXT 14

/*
 * A chain of spte pointers, newest descriptor first. The head and the
 * oldest descriptor may be partial, every one between is full. The chain
 * is linked both ways and the head knows the oldest descriptor, so a
 * removal searches from both ends and refills a hole from the end it is
 * nearer: zapping pages oldest-first (fast zap-all) or newest-first (slow
 * zap-all) then finds each spte at once even in a long chain (one gfn
 * mapped by 100k page tables). Changed under mmu_lock (m); an rmap is
 * also read by the lockless write protection (pte_list_walk_lockless,
 * docs/locking.md "Lockless rmap walks"): `more`, `spte_count`, `sptes`
 * and the head word are (a), stored with release under mmu_lock and
 * loaded with acquire by that walker, which re-checks mmu->rmap_seq.
 */
struct pte_list_desc {
	/* Legend: (c) (v) (m) (s) (r) (a) as at the top of this file. */
	struct pte_list_desc *_Atomic more; /* the next older descriptor */
	struct pte_list_desc *newer; /* NULL in the head (m) */
	struct pte_list_desc *oldest; /* head only: the last of the chain (m) */
	_Atomic uint32_t spte_count;
	uint32_t total; /* head only: the entries of the whole chain (m) */
	_Atomic uint64_t *_Atomic sptes[PTE_LIST_EXT];
};

/*
 * val: 0 = empty; bit 0 clear = the one spte pointer; bit 0 set = the head
 * pte_list_desc. (m) for writers; (a) release store, acquire load by the
 * lockless walker.
 */
struct pte_list_head {
	_Atomic uintptr_t val;
};

/* Descriptors allocated before mmu_lock is taken, for pte_list_add()
 * (docs/MMU.md, "The fault path"); one fault consumes at most
 * MMU_CACHE_DESCS. (v) */
#define MMU_CACHE_DESCS 8
struct pte_desc_cache {
	struct pte_list_desc *d[MMU_CACHE_DESCS];
	unsigned nr;
};

/* pte_list.c: all under mmu_lock. */
/* Adds sptep; takes a descriptor from c when it needs one (c must have
 * one then: callers top it up before taking mmu_lock). */
void pte_list_add(struct pte_desc_cache *c, struct pte_list_head *head,
		  _Atomic uint64_t *sptep);
/* Removes sptep; false if it was not on the list. Frees an emptied
 * descriptor at once: for lists no lockless walker reads (parent ptes). */
bool pte_list_remove(struct pte_list_head *head, const _Atomic uint64_t *sptep);
/* The same for an rmap (read by the lockless write protection): moves of
 * entries are inside mmu->rmap_seq's odd section, and an emptied
 * descriptor is freed only while no lockless walk is in progress, else
 * kept on mmu->dead_descs (docs/locking.md, "Lockless rmap walks"). */
bool pte_list_remove_rmap(struct mmu *mmu, struct pte_list_head *head,
			  const _Atomic uint64_t *sptep);
/* Frees mmu->dead_descs if no lockless walk is in progress (under
 * mmu_lock), or unconditionally with force (mmu_destroy). */
void pte_list_free_dead(struct mmu *mmu, bool force);
/*
 * Without mmu_lock, inside a lockless walk section (mmu_wp_walk_begin):
 * calls fn on each entry of an rmap, as it was at some moment of the
 * call. False when the list was being changed (an entry may have been
 * missed): the caller retries, then falls back to mmu_lock. fn may have
 * been called on some entries even then.
 */
bool pte_list_walk_lockless(struct mmu *mmu, const struct pte_list_head *head,
			    void (*fn)(_Atomic uint64_t *sptep, void *arg),
			    void *arg);
unsigned pte_list_count(const struct pte_list_head *head);
bool pte_list_contains(const struct pte_list_head *head,
		       const _Atomic uint64_t *sptep);
_Atomic uint64_t *pte_list_first(const struct pte_list_head *head);
/* Calls fn on each entry; stops early (returns false) when fn does. */
bool pte_list_for_each(const struct pte_list_head *head,
		       bool (*fn)(_Atomic uint64_t *sptep, void *arg),
		       void *arg);

/* ---- memslots --------------------------------------------------------- */

#define MMU_NR_LEAF_LEVELS 3 /* rmaps for 4K, 2M, 1G leaves */

/*
 * Per-slot metadata, shared by the INVALID and flag-changed copies of a
 * slot and freed with the last of them (after a grace period).
 */
struct memslot_meta {
	/* Legend: (c) (v) (m) (s) (r) (a) as at the top of this file. */
	uint64_t npages; /* (c) */
	/* rmap[level - 1][gfn - base]: leaf sptes mapping the gfn. (m) */
	struct pte_list_head *rmap[MMU_NR_LEAF_LEVELS];
	/* Shadow pages with gptes for each gfn: the gfn must never become
	 * writable while its count is non-zero (docs/MMU.md, "Write
	 * tracking"). (m) */
	uint16_t *write_track;
	/* lpage_disallow[level - 2][frame]: write-tracked gfns inside each
	 * 2 MiB / 1 GiB frame, indexed as the rmap heads of that level; a
	 * large spte maps a frame only while its count is zero (docs/MMU.md,
	 * "Large sptes"). (m) */
	uint32_t *lpage_disallow[MMU_NR_LEAF_LEVELS - 1];
	/* One bit per chunk, the 512 gfns of a 2 MiB frame (indexed as the
	 * level-2 rmap heads): set before any rmap head of the chunk gets
	 * an entry or any of its gfns a write-track count, and never
	 * cleared while the slot lives. Whatever walks the slot's rmaps
	 * or counts (zap, write protection, the audit) skips the chunks
	 * without it, so it costs what the guest touched, not the slot's
	 * size (docs/MMU.md, "Touched chunks"). (m) */
	uint64_t *touched;
	/* A harvest only cleared bits of this slot's log since logging
	 * started (manual protection): a writable spte may then map a page
	 * whose bit is clear until memslot_dirty_log_clear() protects it,
	 * and the audit allows that (docs/MMU.md, "Manual protection"). (m) */
	bool manual_dirty;
};

/* A slot's chunks: 512 gfns aligned as the slot's 2 MiB frames. */
#define MMU_CHUNK_SHIFT 9

static inline uint64_t memslot_chunk(const struct memslot *slot, gfn_t gfn)
{
	return (gfn >> MMU_CHUNK_SHIFT) - (slot->base_gfn >> MMU_CHUNK_SHIFT);
}

static inline uint64_t memslot_nr_chunks(uint64_t npages)
{
	/* As many as the level-2 rmap heads (memslot.c). */
	return ((npages - 1) >> MMU_CHUNK_SHIFT) + 2;
}

/*
 * The memslot set: immutable sorted array (by base_gfn), replaced
 * copy-on-write under slots_lock and published with mmu_rcu_assign().
 */
struct memslots {
	/* Legend: (c) (v) (m) (s) (r) (a) as at the top of this file. */
	/* (a) written by the slots_lock holder with release, read with
	 * acquire: the update-in-progress bit is set before the array is
	 * published and cleared (with the generation bumped) after the
	 * grace period (docs/MMU.md, "MMIO generation"). */
	_Atomic uint64_t generation;
	unsigned nr; /* (c) */
	const struct memslot *slots[]; /* (c) sorted by base_gfn */
};

/* ---- shadow pages ----------------------------------------------------- */

/* The hash key with the gfn (docs/MMU.md, "Shadow pages, roles and the
 * hash"); compared as a word. */
union mmu_page_role {
	uint32_t word;
	struct {
		unsigned level : 4;
		unsigned direct : 1;
		unsigned access : 3;
		unsigned invalid : 1;
		unsigned cr0_wp : 1;
		unsigned smep_andnot_wp : 1;
		unsigned smap_andnot_wp : 1;
		unsigned efer_nx : 1;
		unsigned quadrant : 2; /* 0: 64-bit guests only */
	};
};

/*
 * A shadow page. spt comes first and the object is 4 KiB aligned, so the
 * host address in a non-leaf spte is the child mmu_page itself
 * (spte_to_child_page) and an spte pointer finds its page by masking.
 */
struct mmu_page {
	/* Legend: (c) (v) (m) (s) (r) (a) as at the top of this file. */
	/* The table vCPUs walk. (m) for writers, release stores; (a) vCPUs
	 * in guest mode load entries with acquire, without locks. A writer
	 * that unlinks or changes an entry orders it before the vCPUs'
	 * modes with the seq_cst request RMW of the flush (docs/locking.md
	 * #2). */
	_Atomic uint64_t spt[MMU_PT_ENTRIES];
	gfn_t gfn; /* (m) (c while hashed) */
	union mmu_page_role role; /* (m) invalid only changes */
	struct list_node link; /* (m) active list or zap list */
	struct list_node hash_link; /* (m) hash bucket; self when unhashed */
	struct pte_list_head parent_ptes; /* (m) non-leaf sptes to us */
	int root_count; /* (m) vCPU roots pinning us */
	uint64_t mmu_valid_gen; /* (m) */
	unsigned nr_present; /* (m) present sptes */
	/* Indirect pages: the gfn each leaf spte maps. (m) for writers,
	 * stored before the spte's release store; (a) the fast page fault
	 * loads it after its acquire load of the spte, without the lock. */
	_Atomic gfn_t gfns[MMU_PT_ENTRIES];
	/* Unsync (docs/MMU.md, "Unsync and sync"): this level-1 page may be out of
	 * date with its guest table; unsync_children counts the bits set
	 * in unsync_child_bitmap, one per spte whose child is unsync or
	 * has unsync children. (m) */
	bool unsync;
	unsigned unsync_children;
	uint64_t unsync_child_bitmap[MMU_PT_ENTRIES / 64];
	/* Emulated guest writes to this upper-level table since a fault
	 * last walked through it; at MMU_WRITE_FLOOD_LIMIT it is zapped
	 * (docs/MMU.md, "Write flooding"). (m) */
	unsigned write_flooding_count;
	/* Equal to mmu->audit_seq: the running live audit has still to
	 * check this page against the guest's tables (audit.c). (m) */
	uint64_t audit_seq;
};

/*
 * One vCPU's dirty ring (docs/MMU.md, "The dirty ring"; barriers
 * docs/locking.md #17, #17a). Indices run free (u32, wrapping); entry i
 * is e[i & (size - 1)]. dirty_index - reset_index entries are in use:
 * pushed (DIRTY) from fetch_index on, harvested (HARVESTED) before it.
 */
#define MMU_DIRTY_GFN_DIRTY 1u
#define MMU_DIRTY_GFN_HARVESTED 2u

struct mmu_dirty_gfn {
	/* (a) 0 free, DIRTY (release store by the pushing vCPU, #17),
	 * HARVESTED (relaxed, by the harvester under slots_lock). */
	_Atomic uint32_t flags;
	/* Written by the vCPU before its release store of flags, read by
	 * the harvester after its acquire load of them (#17). */
	uint32_t slot;
	uint64_t offset;
};

struct mmu_dirty_ring {
	/* Legend: (c) (v) (s) (a) as at the top of this file. */
	uint32_t size, soft_limit; /* (c) */
	/* (v) next entry to push; (a) relaxed stores for the statistics. */
	_Atomic uint32_t dirty_index;
	uint32_t fetch_index; /* (s) next entry to harvest */
	/* (a) next entry to reset: the release store under slots_lock
	 * after the re-protection, acquire load by the vCPU before it
	 * reuses entries (#17a). */
	_Atomic uint32_t reset_index;
	bool full_counted; /* (v) this fill's soft-full exit is counted */
	/* (a) relaxed: statistics. */
	_Atomic uint64_t pushes, full_exits;
	struct mmu_dirty_gfn e[];
};

#define MMU_HASH_BITS 12
#define MMU_HASH_SIZE (1u << MMU_HASH_BITS)
#define MMU_CACHE_PAGES 4
/* Emulated writes that make an upper-level table a flooded one (KVM's
 * detect_write_flooding threshold). */
#define MMU_WRITE_FLOOD_LIMIT 3

struct mmu_stats_atomic {
	/* (a) relaxed: statistics, ordered with nothing. */
	_Atomic uint64_t c[32];
};

struct mmu {
	/* Legend: (c) (v) (m) (s) (r) (a) as at the top of this file. */
	/* Serialises memslot updates; held across grace periods. */
	pthread_mutex_t slots_lock;
	/* The published memslot set. (r) under slots_lock for writers */
	struct memslots *_Atomic slots;
	/* All shadow-MMU state below. Never held across a grace period.
	 * Taken with mmu_lock_acquire()/mmu_lock_release() only. */
	pthread_mutex_t mmu_lock;
	/* (a) relaxed: the holder of mmu_lock, for mmu_assert_locked(); only
	 * the holder stores it, and a thread compares it with itself. */
	_Atomic uintptr_t mmu_lock_owner;
	struct list_node active_pages; /* (m) newest first */
	/* (m) zapped roots still pinned by a vCPU (role.invalid set). */
	struct list_node invalid_roots;
	/* (m) every mmu_vcpu, for the audit's root_count check; changed
	 * under slots_lock too, so the dirty ring's harvest and reset walk
	 * it under slots_lock alone. */
	struct list_node vcpus;
	struct list_node hash[MMU_HASH_SIZE]; /* (m) */
	/* (m) for writers; (a) relaxed load by the lockless walks, ordered
	 * by the FREE_OBSOLETE_ROOTS request the bump makes (#18). */
	_Atomic uint64_t mmu_valid_gen;
	uint64_t nr_pages; /* (m) */
	/*
	 * Lockless rmap walks (docs/locking.md, "Lockless rmap walks", #19,
	 * #20). rmap_seq: odd while an rmap's entries are moved or a
	 * descriptor unlinked (pte_list_remove_rmap, under mmu_lock: an
	 * acq_rel RMW to odd, release stores, a release RMW to even); the
	 * walker loads it with acquire before and after. wp_walk_seq: odd
	 * while the (one, under slots_lock) lockless write-protecting
	 * harvest walks; seq_cst RMWs on both sides, so a flush with wait
	 * (before shadow pages are freed) and a descriptor free either see
	 * it odd and wait or defer, or the walk that starts later sees what
	 * they unlinked. dead_descs: descriptors unlinked while a walk was
	 * in progress, freed later (m).
	 */
	_Atomic uint64_t rmap_seq;
	_Atomic uint64_t wp_walk_seq;
	struct pte_list_desc *dead_descs;
	/* (a) bumped (release) by every invalidation of sptes derived from
	 * memslots; the fault path snapshots it (acquire) before it reads
	 * memslots and re-checks it under mmu_lock (docs/locking.md #6). */
	_Atomic uint64_t invalidate_seq;
	/* (a) shadow pages with gptes. seq_cst increment in
	 * account_shadowed, pairs with the seq_cst fetch_add(0) after the
	 * guest-memory store in mmu_emulate_write / mmu_track_write
	 * (docs/locking.md #5). */
	_Atomic long indirect_shadow_pages;
	const struct mmu_vcpu_ops *ops; /* (c) */
	void *opaque; /* (c) */
	struct mmu_stats_atomic stats;
	/* (a) relaxed: the switches (mmu_option_set(), core/mmu/options.c),
	 * each read where it decides (unsync: under mmu_lock by the fault
	 * path and the sync points; zap-all and mmio-wrap by the thread
	 * that zaps). A decision taken on the old value is one the old
	 * value allowed: no switch needs an ordering with other data. */
	_Atomic unsigned char options[MMU_OPT_NR];
	/* The live audit's pass; its pages carry it until they are checked
	 * against the guest's tables (docs/MMU.md, "The live audit"). The
	 * cursor is the next active page to check, or NULL: every page
	 * after it was alive at mmu_audit_begin() (new pages go in at the
	 * head), and a page leaving the list moves it on (prepare_zap).
	 * (m) */
	uint64_t audit_seq;
	struct list_node *audit_cursor;
	/* Dirty-ring entries per vCPU, 0: off. Set once under slots_lock
	 * before any vCPU runs; (a) relaxed loads elsewhere. */
	_Atomic uint32_t ring_size;
};

struct mmu_vcpu {
	/* Legend: (c) (v) (m) (s) (r) (a) as at the top of this file. */
	struct mmu *mmu; /* (c) */
	unsigned index; /* (c) */
	unsigned slot_hint; /* (v) index into the current memslot array */
	/* The current root (NULL: none loaded); its root_count is (m).
	 * (v) written by the vCPU with mmu_lock held, so the audit may read
	 * it under (m); the vCPU reads it without the lock. */
	struct mmu_page *root;
	struct list_node link; /* (m) on mmu->vcpus */
	union mmu_page_role root_role; /* (v) */
	gfn_t root_gfn; /* (v) */
	/* Objects allocated before mmu_lock is taken (docs/MMU.md, "The fault
	 * path"). (v) */
	struct mmu_page *page_cache[MMU_CACHE_PAGES];
	unsigned nr_page_cache;
	struct pte_desc_cache descs;
	/* The gpa of this vCPU's last write fault answered with
	 * MMU_FAULT_EMULATE, while no write to a tracked page has been
	 * reported since (docs/MMU.md, "Writes that never complete"). (v) */
	gpa_t emulate_gpa;
	bool emulate_pending;
	/* The dirty ring, NULL while it is off: stored under slots_lock and
	 * mmu_lock, so read under either (the vCPU reads its own at will:
	 * it is set before the vCPU runs). (a) release store, acquire
	 * load. */
	struct mmu_dirty_ring *_Atomic ring;
};

/* Statistic indices (see struct mmu_stats in mmu.h). */
enum {
	MMU_STAT_FAULT_FIXED,
	MMU_STAT_FAULT_GUEST_PF,
	MMU_STAT_FAULT_MMIO,
	MMU_STAT_FAULT_EMULATE,
	MMU_STAT_FAULT_RETRY,
	MMU_STAT_ZAPPED_PAGES,
	MMU_STAT_ZAPPED_SPTES,
	MMU_STAT_FLUSHES,
	MMU_STAT_WRITE_PROTECTS,
	MMU_STAT_EMULATED_WRITES,
	MMU_STAT_SPTES,
	MMU_STAT_UNSYNCS,
	MMU_STAT_SYNCS,
	MMU_STAT_FAST_ZAPS,
	MMU_STAT_OBSOLETE_FREED,
	MMU_STAT_MMIO_SPTES,
	MMU_STAT_MMIO_HITS,
	MMU_STAT_LARGE_SPTES,
	MMU_STAT_TRACKED_WRITE_FAULTS,
	MMU_STAT_UNSYNC_REFUSED,
	MMU_STAT_FLOODED_PAGES,
	MMU_STAT_UNPROTECTS,
	MMU_STAT_RING_PUSHES,
	MMU_STAT_RING_FULL_EXITS,
	MMU_STAT_RING_RESETS,
	MMU_STAT_RING_OVERFLOWS,
	MMU_STAT_FAST_PF, /* write faults fixed by the fast page fault */
	MMU_STAT_WP_LOCKLESS, /* gfns write-protected by the lockless walk */
	MMU_STAT_WP_RETRIES, /* lockless rmap walks that had to retry */
	MMU_STAT_WP_FALLBACKS, /* ... and went to mmu_lock after that */
	MMU_STAT_NR,
};

static_assert(MMU_STAT_NR <= 32, "struct mmu_stats_atomic holds them all");

static inline void mmu_stat_add(struct mmu *mmu, unsigned i, int64_t n)
{
	atomic_fetch_add_explicit(&mmu->stats.c[i], (uint64_t)n,
				  memory_order_relaxed);
}

static inline struct memslots *mmu_slots_locked(struct mmu *mmu)
{
	/* Under slots_lock the pointer cannot change under us. */
	return atomic_load_explicit(&mmu->slots, memory_order_relaxed);
}

/* The MMU's two locks go through these, so that an explored build
 * (core/explore.h) schedules around them. */
static inline void mmu_mutex_lock(pthread_mutex_t *m)
{
#ifdef MMUD_EXPLORE
	explore_mutex_lock(m);
#else
	pthread_mutex_lock(m);
#endif
}

static inline bool mmu_mutex_trylock(pthread_mutex_t *m)
{
#ifdef MMUD_EXPLORE
	return explore_mutex_trylock(m);
#else
	return pthread_mutex_trylock(m) == 0;
#endif
}

static inline void mmu_mutex_unlock(pthread_mutex_t *m)
{
#ifdef MMUD_EXPLORE
	explore_mutex_unlock(m);
#else
	pthread_mutex_unlock(m);
#endif
}

static inline void mmu_lock_acquire(struct mmu *mmu)
{
	mmu_mutex_lock(&mmu->mmu_lock);
	atomic_store_explicit(&mmu->mmu_lock_owner, (uintptr_t)pthread_self(),
			      memory_order_relaxed);
}

/* Only when mmu_lock is free; true if taken. */
static inline bool mmu_lock_try_acquire(struct mmu *mmu)
{
	if (!mmu_mutex_trylock(&mmu->mmu_lock))
		return false;
	atomic_store_explicit(&mmu->mmu_lock_owner, (uintptr_t)pthread_self(),
			      memory_order_relaxed);
	return true;
}

static inline void mmu_lock_release(struct mmu *mmu)
{
	atomic_store_explicit(&mmu->mmu_lock_owner, 0, memory_order_relaxed);
	mmu_mutex_unlock(&mmu->mmu_lock);
}

/* Functions named *_locked, and the helpers they call, check this. */
static inline void mmu_assert_locked(struct mmu *mmu)
{
	MMUD_ASSERT(atomic_load_explicit(&mmu->mmu_lock_owner,
					 memory_order_relaxed) ==
		    (uintptr_t)pthread_self());
	(void)mmu;
}

/* memslot.c */
const struct memslot *memslots_find(const struct memslots *slots, gfn_t gfn,
				    unsigned *hint);
void memslot_mark_dirty(const struct memslot *slot, gfn_t gfn);
/* Formats a refusal into err (when errlen is not 0) and returns ret: the
 * memslot and dirty-log calls' "clear error naming what was wrong". */
int mmu_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
struct memslots *memslots_alloc(unsigned nr);
void memslots_free_all(struct mmu *mmu);

/* dirty_ring.c, for mmu.c and memslot.c */
/* Ring of a new vCPU (mmu_vcpu_create), freed by _fini; 0 or -ENOMEM. */
int mmu_dirty_ring_vcpu_init(struct mmu_vcpu *v);
void mmu_dirty_ring_vcpu_fini(struct mmu_vcpu *v);
/*
 * The fault path, under mmu_lock, for a page of a logging slot that it
 * maps writable: push (slot, gfn) to v's ring, or with the ring off (or,
 * never with the reserve kept, full) mark the bitmap.
 */
void mmu_dirty_ring_mark_locked(struct mmu_vcpu *v, const struct memslot *slot,
				gfn_t gfn);
/* mmu_dirty_ring_to_bitmap() with slots_lock held. */
void mmu_dirty_ring_to_bitmap_slots_locked(struct mmu *mmu);

/* mmu.c: the lockless write protection of dirty logging (docs/MMU.md,
 * "Lockless write protection"); dirty_log.c calls them under slots_lock,
 * inside a read-side section, without mmu_lock. */
void mmu_wp_walk_begin(struct mmu *mmu);
void mmu_wp_walk_end(struct mmu *mmu);
/* Clears W from every spte (level 1) of the gfns base + b for each bit
 * b of bits, without mmu_lock, with a bounded retry per rmap, setting
 * *flush if one was writable; returns the bits of the gfns left to the
 * caller's locked walk: an rmap that kept changing, or a large spte in
 * the range (*flush may be set even then). base: a multiple of 64 pages
 * from the slot's start. */
uint64_t mmu_write_protect_bits_lockless(struct mmu *mmu,
					 const struct memslot *slot, gfn_t base,
					 uint64_t bits, bool *flush);

/* dirty_log.c, for memslot.c: clear the bits of pages [first, first +
 * num) of s (first a multiple of 64) into out and write-protect those
 * pages, lockless or under mmu_lock as the wp switch says; true if a
 * flush is owed before the bits are reported. slots_lock held. */
bool mmu_dirty_log_take_protect(struct mmu *mmu, const struct memslot *s,
				uint64_t first, uint64_t num, uint64_t *out);

/* Under mmu_lock: returns once every lockless walk of a vCPU that was in
 * progress has ended (a flush with wait, docs/locking.md #18), so a W
 * set by the fast page fault has its dirty mark (#21). For the audit. */
void mmu_wait_lockless_walks_locked(struct mmu *mmu);

/* mmu.c, for memslot.c and audit.c */
void mmu_zap_slot(struct mmu *mmu, const struct memslot *slot);
void mmu_write_protect_slot(struct mmu *mmu, const struct memslot *slot);
bool mmu_write_protect_gfn_locked(struct mmu *mmu, const struct memslot *slot,
				  gfn_t gfn, bool clear_mmu_writable);
void mmu_flush_remote_tlbs(struct mmu *mmu);
struct pte_list_head *mmu_rmap_head(const struct memslot *slot, gfn_t gfn,
				    int level);
gfn_t mmu_page_gfn_at(const struct mmu_page *sp, unsigned i);
bool mmu_page_is_obsolete(const struct mmu *mmu, const struct mmu_page *sp);

/* mmu.c, for the other files of the MMU (unsync.c, zap_fast.c, mmio_spte.c,
 * large.c, audit_ext.c); each asserts mmu_lock. */
void mmu_drop_spte_locked(struct mmu *mmu, _Atomic uint64_t *sptep);
bool mmu_zap_pte_locked(struct mmu *mmu, struct mmu_page *sp,
			_Atomic uint64_t *sptep);
void mmu_prepare_zap_locked(struct mmu *mmu, struct mmu_page *sp,
			    struct list_node *invalid_list);
void mmu_commit_zap_locked(struct mmu *mmu, struct list_node *invalid_list);
void mmu_spte_set(_Atomic uint64_t *sptep, uint64_t val);
unsigned mmu_hash_gfn(gfn_t gfn);
void mmu_pte_list_add(struct mmu_vcpu *v, struct pte_list_head *head,
		      _Atomic uint64_t *sptep);

/* unsync.c */
bool mmu_try_unsync_locked(struct mmu *mmu, const struct memslot *slot,
			   gfn_t gfn);
void mmu_mark_parents_unsync_locked(struct mmu *mmu, struct mmu_page *sp);
void mmu_link_unsync_locked(struct mmu *mmu, struct mmu_page *parent,
			    unsigned index, struct mmu_page *child);
void mmu_unlink_unsync_locked(struct mmu *mmu, struct mmu_page *parent,
			      unsigned index);
void mmu_resync_gfn_before_upper_locked(struct mmu *mmu, gfn_t gfn,
					bool *flush);
void mmu_sync_children_locked(struct mmu *mmu, struct mmu_page *top);
/* A sync point's sync for root: its unsync subtree, or every unsync page
 * with unsync=all (core/mmu/unsync.c). */
void mmu_sync_root_locked(struct mmu *mmu, struct mmu_page *root);
bool mmu_gfn_all_unsync_locked(struct mmu *mmu, gfn_t gfn);

/* mmio_spte.c */
bool mmu_mmio_fast(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu,
		   gva_t gva, unsigned access, struct mmu_fault_info *info);
/* The answer of the level-1 MMIO spte a lockless walk found, with gen
 * the memslot generation read before the walk; false: the full fault. */
bool mmu_mmio_spte_answer(struct mmu *mmu, uint64_t spte, uint64_t gen,
			  const struct mmu_cpu_state *cpu, gva_t gva,
			  unsigned access, struct mmu_fault_info *info);
void mmu_mmio_set_spte_locked(struct mmu *mmu, struct mmu_page *sp,
			      _Atomic uint64_t *sptep, gfn_t gfn, unsigned acc,
			      bool *flush);
void mmu_memslots_updated(struct mmu *mmu, uint64_t gen);
uint64_t mmu_mmio_spte_gen(uint64_t spte);

/* large.c */
void mmu_track_gfn_locked(struct mmu *mmu, const struct memslot *slot,
			  gfn_t gfn, int delta, bool *flush);
int mmu_large_level_locked(struct mmu *mmu, const struct memslot *slot,
			   gfn_t gfn, int guest_level);
enum mmu_fault_result mmu_set_large_spte_locked(
	struct mmu_vcpu *v, struct mmu_page *sp, _Atomic uint64_t *sptep,
	gfn_t gfn, const struct memslot *slot, unsigned acc, bool *flush);
void mmu_zap_large_slot(struct mmu *mmu, const struct memslot *slot);
int lpage_meta_alloc(struct memslot_meta *m, uint64_t npages);
void lpage_meta_free(struct memslot_meta *m);

/* mmu.c: touched chunks (docs/MMU.md, "Touched chunks"). */
/* Marks the chunks of [gfn, gfn + n) within slot, under mmu_lock. */
void mmu_touch_locked(struct mmu *mmu, const struct memslot *slot, gfn_t gfn,
		      uint64_t n);
bool mmu_chunk_is_touched(const struct memslot *slot, gfn_t gfn);
/* The first gfn in [gfn, end) whose chunk is touched, or end. */
gfn_t mmu_next_touched(const struct memslot *slot, gfn_t gfn, gfn_t end);

/* audit_ext.c: the checks of unsync, fast zap-all, MMIO and large sptes,
 * called by the audit (audit.c) for each page it checks and then once for
 * the slots. */
int mmu_audit_ext_page_locked(struct mmu *mmu, struct mmu_page *sp, char *msg,
			      size_t msglen);
int mmu_audit_ext_slots_locked(struct mmu *mmu, char *msg, size_t msglen);

static inline struct mmu_page *sptep_to_page(const _Atomic uint64_t *sptep)
{
	return (struct mmu_page *)((uintptr_t)sptep & ~(uintptr_t)4095);
}

static inline struct mmu_page *spte_to_child_page(uint64_t spte)
{
	return (struct mmu_page *)(uintptr_t)spte_to_hva(spte);
}

/*
 * The access rights (MMU_ACC_*) one guest paging entry grants: W, U, and
 * execute unless NX is set while EFER.NXE is on (SDM vol. 3, 4.6). Guest
 * entries and sptes share the x86 bit layout (mmu.h's static_asserts).
 */
static inline unsigned mmu_gpte_access(uint64_t gpte, bool nxe)
{
	unsigned acc = 0;

	if (gpte & SPTE_W)
		acc |= MMU_ACC_WRITE;
	if (gpte & SPTE_U)
		acc |= MMU_ACC_USER;
	if (!(nxe && (gpte & SPTE_NX)))
		acc |= MMU_ACC_EXEC;
	return acc;
}

/*
 * The rights an spte grants (NX always meaningful in sptes). MMU-writable
 * counts as W: the fast page fault may set W on such an spte without
 * mmu_lock (docs/MMU.md, "The fast page fault"), so a sync that finds the
 * gpte no longer writable must drop it, not keep it as "granting less".
 */
static inline unsigned mmu_spte_access(uint64_t spte)
{
	return mmu_gpte_access(spte, true) |
	       ((spte & SPTE_MMU_WRITABLE) ? MMU_ACC_WRITE : 0);
}

#endif
