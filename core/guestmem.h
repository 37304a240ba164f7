/*
 * Hot-added guest memory: memslots the control plane adds and removes
 * while the vCPUs run (QMP's x-memslot-add, docs/QMP.md), each backed by its
 * own memfd mapping, with dirty logging and harvest. It validates every
 * request against the boot RAM, the MMIO hole and the other slots before
 * anything changes, and unmaps a removed slot's memory only after the MMU
 * says no vCPU can reach it. The boot RAM itself belongs to the VM.
 */
#ifndef MMUD_GUESTMEM_H
#define MMUD_GUESTMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "mmu.h"

struct mmu;
struct guestmem;

/*
 * A range the hot-added slots may not overlap (boot RAM, MMIO hole).
 * slot >= 0 names the VM's own memslot there (boot RAM): dirty logging
 * and harvest work on it too; -1 for a range with no memory.
 */
struct guestmem_range {
	gpa_t gpa;
	uint64_t size;
	const char *what; /* named in refusals, e.g. "RAM" */
	int slot;
};

#define GUESTMEM_MAX_SLOTS 64
#define GUESTMEM_MAX_SIZE (64ULL << 30)
#define GUESTMEM_FIRST_ID 16 /* ids below belong to the VM */

struct guestmem_slot_info {
	uint32_t slot;
	gpa_t gpa;
	uint64_t size;
	bool readonly, log_dirty;
	hva_t hva; /* for tests: where the host maps it */
	/* The memfd mapped at hva from offset 0 (the migration reads its
	 * holes and writes through it); valid while the slot is. */
	int fd;
};

/* NULL means -ENOMEM. reserved is copied. */
struct guestmem *guestmem_create(struct mmu *mmu,
				 const struct guestmem_range *reserved,
				 unsigned int nr_reserved);
/*
 * The ceiling of hot-added memory: guestmem_add() refuses a slot that
 * would take the boot RAM (base bytes) plus every hot-added slot beyond
 * maxmem (QEMU's -m maxmem), naming the numbers; without a call there is
 * none. Slots are left out of core dumps (MADV_DONTDUMP) unless
 * guestmem_set_dump(gm, true) (QEMU's dump-guest-core). Both before the
 * first guestmem_add().
 */
void guestmem_set_limit(struct guestmem *gm, uint64_t maxmem, uint64_t base);
void guestmem_set_dump(struct guestmem *gm, bool dump);
/* Removes every hot-added slot. No vCPU may run. */
void guestmem_destroy(struct guestmem *gm);

/*
 * Adds a zero-filled slot at gpa of size bytes: both page-aligned, size
 * non-zero and at most GUESTMEM_MAX_SIZE, below 2^46, overlapping no
 * reserved range and no other slot. 0 with *slot set, or -errno (EINVAL,
 * EEXIST, ENOSPC, ENOMEM) with a message naming the field; nothing
 * changes then.
 */
int guestmem_add(struct guestmem *gm, gpa_t gpa, uint64_t size, bool readonly,
		 bool log_dirty, uint32_t *slot, char *err, size_t errlen);
/* Deletes the slot in KVM's order, then unmaps its memory. -ENOENT. */
int guestmem_remove(struct guestmem *gm, uint32_t slot, char *err,
		    size_t errlen);
/* Starts or stops dirty logging of a hot-added slot or of boot RAM. */
int guestmem_set_dirty_log(struct guestmem *gm, uint32_t slot, bool on,
			   char *err, size_t errlen);
/* Pages of the slot, for sizing a harvest bitmap; -ENOENT. */
int64_t guestmem_npages(struct guestmem *gm, uint32_t slot);
/*
 * Copies the slot's dirty bitmap (one bit per page, bit i of word j is
 * page 64j + i) into bitmap (nwords words) and counts the dirty pages.
 * With clear, the reported pages are cleared and write-protected, and
 * remote TLBs flushed, before it returns (KVM's order); without, it only
 * reads. -EINVAL when the slot is not logging.
 */
int guestmem_harvest(struct guestmem *gm, uint32_t slot, bool clear,
		     uint64_t *bitmap, size_t nwords, uint64_t *ndirty,
		     char *err, size_t errlen);
/*
 * The pages [first, first + num) of the slot's log into bitmap
 * ((num + 63) / 64 words, bit i of word j is page first + 64j + i), read,
 * cleared and protected, or only cleared as mode says
 * (memslot_dirty_log_fetch()); a reader set with guestmem_set_reader() is
 * handed what was cleared, and then clearing always protects too.
 */
int guestmem_harvest_range(struct guestmem *gm, uint32_t slot,
			   enum memslot_fetch mode, uint64_t first,
			   uint64_t num, uint64_t *bitmap, uint64_t *ndirty,
			   char *err, size_t errlen);
/*
 * Marks [gpa, gpa + len) dirty in whatever logging memslot covers it:
 * for writes mmud itself makes to guest RAM behind the MMU (the loader
 * at system_reset).
 */
void guestmem_mark_dirty(struct guestmem *gm, gpa_t gpa, uint64_t len);
/*
 * A second reader of the dirty log, beside the operator's harvests: the
 * migration (docs/MIGRATION.md, "Dirty logging during a migration").
 * While one is set, every clearing guestmem_harvest() hands it the pages
 * it reports and clears, fn(ctx, slot, bitmap, nwords) under the
 * harvest's lock, so they are not lost to it; and guestmem_add(),
 * guestmem_remove() and guestmem_set_dirty_log() are refused with
 * -EBUSY and busy in err, so no slot it reads goes away under it and no
 * log it harvests stops. fn NULL: none. fn must not call guestmem.
 */
typedef void guestmem_reader_fn(void *ctx, uint32_t slot,
				const uint64_t *bitmap, size_t nwords);
void guestmem_set_reader(struct guestmem *gm, guestmem_reader_fn *fn, void *ctx,
			 const char *busy);
/* Whether such a reader is set now (the dirty ring's QMP harvest, which
 * would take entries from it, refuses then). */
bool guestmem_has_reader(struct guestmem *gm);
/* Up to max slots sorted by gpa; returns how many exist. */
unsigned int guestmem_list(struct guestmem *gm, struct guestmem_slot_info *out,
			   unsigned int max);

#endif
