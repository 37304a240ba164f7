/*
 * The explorer's scenarios: small guests whose vCPUs and control plane
 * race in the ways the shadow MMU must survive (docs/EXPLORER.md lists
 * them with the mechanism each one exercises). Every scenario ends with
 * each vCPU invalidating what it watched, so a translation left stale by
 * the MMU (not by the guest's own missing INVLPG) shows up.
 */
#include <string.h>

#include "world.h"

#define DATA(n) (W_DATA_GPA + (n)*PAGE_SIZE)
#define T_ENTRY(i) (W_T + (i)*8)
#define T_GVA(i) (W_T_GVA + (i)*PAGE_SIZE)

/*
 * vCPU0 reads through T (shadowing it), invalidates and reads again;
 * vCPU1 first writes T[1] (so it holds a writable translation of T), then
 * rewrites T[0], invalidates and reads. A stale shadow pte for T_GVA(0)
 * after both invalidated is an MMU bug.
 */
#define TABLE_RACE_OPS \
	.t_gpa = { DATA(1), DATA(2) }, .t_flags = { W_PTE_PW, W_PTE_PW }, \
	.ops = {                                                         \
		{ { OP_LOAD, T_GVA(0), 0 },                              \
		  { OP_INVLPG, T_GVA(0), 0 },                            \
		  { OP_LOAD, T_GVA(0), 0 } },                            \
		{ { OP_STORE, T_ENTRY(1), DATA(4) | W_PTE_PW },          \
		  { OP_STORE, T_ENTRY(0), DATA(3) | W_PTE_PW },          \
		  { OP_INVLPG, T_GVA(0), 0 },                            \
		  { OP_LOAD, T_GVA(0), 0 } },                            \
	},                                                               \
	.nops = { 3, 4 },                                                \
	.watch = { T_GVA(0), T_GVA(1), W_T }, .nwatch = 3

/* Write protection of a new shadow page must reach a vCPU that holds a
 * writable translation of the table before the fault re-reads the gpte
 * it walked (docs/MMU.md, "write protection before the re-read"). */
static const struct scenario wp_before_reread = {
	.name = "wp-before-reread",
	.what = "a store through a writable TLB entry for a table the "
		"other vCPU is shadowing",
	.nvcpus = 2,
	.unsync = true,
	TABLE_RACE_OPS,
};

/* Clearing MMU-writable must flush even when a harvest cleared W a
 * moment before and has not flushed yet (docs/MMU.md, "MMU-writable"). */
static const struct scenario harvest_then_shadow = {
	.name = "harvest-then-shadow",
	.what = "a harvest write-protects a page the other vCPU then "
		"shadows as a table, while a third holds it writable",
	.nvcpus = 2,
	.unsync = false,
	.log_slot0 = true,
	TABLE_RACE_OPS,
	.ctl = { { CTL_HARVEST, 0, 0, 0, 0, 0 } },
	.nctl = 1,
};

/* An MMIO spte made one generation wrap earlier must be gone before the
 * new generation is visible (docs/MMU.md, "MMIO generation"). */
static const struct scenario mmio_gen_wrap = {
	.name = "mmio-gen-wrap",
	.what = "RAM added under a cached MMIO spte, then the generation "
		"wraps to the spte's stamp",
	.nvcpus = 1,
	.unsync = true,
	.gen = 0x10000, /* low bits 0: the MMIO spte is stamped 0 */
	.ops = {
		{ { OP_LOAD, W_SPARE_GPA, 0 },
		  { OP_INVLPG, W_SPARE_GPA, 0 },
		  { OP_LOAD, W_SPARE_GPA, 0 },
		  { OP_INVLPG, W_SPARE_GPA, 0 },
		  { OP_LOAD, W_SPARE_GPA, 0 } },
	},
	.nops = { 5 },
	.ctl = { { CTL_ADD, 2, W_SPARE_GPA >> 12, W_SPARE_PAGES, 2, 0 },
		 { CTL_SET_GEN, 0, 0, 0, 0, 0x1ffff },
		 { CTL_LOG_START, 1, 0, 0, 0, 0 } },
	.nctl = 3,
	.watch = { W_SPARE_GPA },
	.nwatch = 1,
};

/* A page mapped for emulated writes has no spte: delete must still make
 * the vCPU drop it before it returns (mmu.h, memslot_delete). */
static const struct scenario delete_emulated = {
	.name = "delete-emulated",
	.what = "CR0.WP=0 supervisor stores to a read-only page while its "
		"memslot is deleted",
	.nvcpus = 1,
	.unsync = true,
	.wp_off = true,
	.t_gpa = { DATA(1) },
	.t_flags = { 0x1 }, /* present, read-only */
	.ops = {
		{ { OP_STORE, T_GVA(0), 0x1111 },
		  { OP_STORE, T_GVA(0) + 8, 0x2222 },
		  { OP_STORE, T_GVA(0) + 16, 0x3333 },
		  { OP_STORE, T_GVA(0) + 24, 0x4444 },
		  { OP_STORE, T_GVA(0) + 32, 0x5555 } },
	},
	.nops = { 5 },
	.ctl = { { CTL_DELETE, 1, 0, 0, 0, 0 } },
	.nctl = 1,
	.watch = { T_GVA(0) },
	.nwatch = 1,
};

/* The same on a move: the vCPU would keep writing the old page and
 * report the old gfn dirty. */
static const struct scenario move_emulated = {
	.name = "move-emulated",
	.what = "CR0.WP=0 supervisor stores to a read-only page while its "
		"memslot moves",
	.nvcpus = 1,
	.unsync = true,
	.wp_off = true,
	.log_slot1 = true,
	.t_gpa = { DATA(1) },
	.t_flags = { 0x1 },
	.ops = {
		{ { OP_STORE, T_GVA(0), 0x1111 },
		  { OP_STORE, T_GVA(0) + 8, 0x2222 },
		  { OP_STORE, T_GVA(0) + 16, 0x3333 },
		  { OP_STORE, T_GVA(0) + 24, 0x4444 } },
	},
	.nops = { 4 },
	.ctl = { { CTL_MOVE, 1, W_SPARE_GPA >> 12, 0, 0, 0 } },
	.nctl = 1,
	.watch = { T_GVA(0) },
	.nwatch = 1,
};

/* Starting the dirty log write-protects the whole slot: the flush must
 * not depend on the last page alone. */
static const struct scenario log_start_writes = {
	.name = "log-start-writes",
	.what = "stores through a writable TLB entry while dirty logging "
		"starts and is harvested",
	.nvcpus = 1,
	.unsync = true,
	.ops = {
		{ { OP_STORE, DATA(0), 0x1111 },
		  { OP_STORE, DATA(0) + 8, 0x2222 },
		  { OP_STORE, DATA(0) + 16, 0x3333 },
		  { OP_STORE, DATA(0) + 24, 0x4444 },
		  { OP_STORE, DATA(0) + 32, 0x5555 } },
	},
	.nops = { 5 },
	.ctl = { { CTL_LOG_START, 1, 0, 0, 0, 0 },
		 { CTL_HARVEST, 1, 0, 0, 0, 0 } },
	.nctl = 2,
	.watch = { DATA(0) },
	.nwatch = 1,
};

/* A harvest whose last reported page was not writable (an emulated
 * store to the table T, gfn 5) must still flush for the pages before it
 * (gfn 0, written through the TLB). */
static const struct scenario harvest_mixed = {
	.name = "harvest-mixed",
	.what = "a harvest of a writable page and of a shadowed table, "
		"with stores continuing through the TLB",
	.nvcpus = 1,
	.unsync = false,
	.log_slot0 = true,
	.t_gpa = { DATA(1) },
	.t_flags = { W_PTE_PW },
	.ops = {
		{ { OP_LOAD, T_GVA(0), 0 },
		  { OP_STORE, 0x0, 0x1111 },
		  { OP_STORE, T_ENTRY(5), DATA(5) | W_PTE_PW },
		  { OP_STORE, 0x8, 0x2222 },
		  { OP_STORE, 0x10, 0x3333 },
		  { OP_STORE, 0x18, 0x4444 } },
	},
	.nops = { 6 },
	.ctl = { { CTL_HARVEST, 0, 0, 0, 0, 0 },
		 { CTL_HARVEST, 0, 0, 0, 0, 0 } },
	.nctl = 2,
	.watch = { 0x0, T_GVA(0) },
	.nwatch = 2,
};

/* Manual protection: a harvest that only clears, stores through the
 * still-writable translation, then the clear that protects. Clearing
 * the bits after protecting would erase the bit of a store that faulted
 * in between and leave its spte writable (docs/MMU.md, "Manual
 * protection"). */
static const struct scenario manual_clear = {
	.name = "manual-clear",
	.what = "stores while a manual harvest clears the log and the "
		"clear protects the pages again",
	.nvcpus = 1,
	.unsync = true,
	.log_slot1 = true,
	.ops = {
		{ { OP_STORE, DATA(0), 0x1111 },
		  { OP_STORE, DATA(0) + 8, 0x2222 },
		  { OP_STORE, DATA(0) + 16, 0x3333 },
		  { OP_STORE, DATA(0) + 24, 0x4444 },
		  { OP_STORE, DATA(0) + 32, 0x5555 },
		  { OP_STORE, DATA(0) + 40, 0x6666 } },
	},
	.nops = { 6 },
	.ctl = { { CTL_HARVEST_MANUAL, 1, 0, 0, 0, 0 },
		 { CTL_CLEAR, 1, 0, 0, 0, 0 },
		 { CTL_HARVEST_MANUAL, 1, 0, 0, 0, 0 },
		 { CTL_CLEAR, 1, 0, 0, 0, 0 } },
	.nctl = 4,
	.watch = { DATA(0) },
	.nwatch = 1,
};

/* Unsync pages, synced at INVLPG and MOV CR3, under zap-alls. */
static const struct scenario unsync_zap = {
	.name = "unsync-zap",
	.what = "guest page-table stores (unsync), INVLPG and CR3 reloads "
		"racing fast and slow zap-all",
	.nvcpus = 2,
	.unsync = true,
	.t_gpa = { DATA(1), DATA(2) },
	.t_flags = { W_PTE_PW, W_PTE_PW },
	.ops = {
		{ { OP_LOAD, T_GVA(0), 0 },
		  { OP_STORE, T_ENTRY(0), DATA(6) | W_PTE_PW },
		  { OP_STORE, T_ENTRY(1), DATA(7) | W_PTE_PW },
		  { OP_INVLPG, T_GVA(0), 0 },
		  { OP_LOAD, T_GVA(0), 0 },
		  { OP_CR3, 0, W_PML4 },
		  { OP_LOAD, T_GVA(1), 0 } },
		{ { OP_LOAD, T_GVA(1), 0 },
		  { OP_STORE, T_GVA(0), 0x77 },
		  { OP_CR3, 0, W_PML4 },
		  { OP_LOAD, T_GVA(0), 0 },
		  { OP_LOAD, T_GVA(1), 0 } },
	},
	.nops = { 7, 5 },
	.ctl = { { CTL_ZAP_FAST, 0, 0, 0, 0, 0 },
		 { CTL_ZAP_ALL, 0, 0, 0, 0, 0 } },
	.nctl = 2,
	.watch = { T_GVA(0), T_GVA(1), W_T },
	.nwatch = 3,
};

/* Data moving under two vCPUs: delete, re-add elsewhere, harvest. */
static const struct scenario slots_churn = {
	.name = "slots-churn",
	.what = "loads and stores to a slot that is logged, harvested, "
		"moved and deleted while two vCPUs use it",
	.nvcpus = 2,
	.unsync = true,
	.log_slot1 = true,
	.ops = {
		{ { OP_STORE, DATA(0), 0x11 },
		  { OP_LOAD, DATA(1), 0 },
		  { OP_STORE, DATA(0) + 8, 0x12 },
		  { OP_STORE, DATA(2), 0x13 } },
		{ { OP_LOAD, DATA(0), 0 },
		  { OP_STORE, DATA(1), 0x21 },
		  { OP_STORE, DATA(2) + 8, 0x22 },
		  { OP_LOAD, DATA(0), 0 } },
	},
	.nops = { 4, 4 },
	.ctl = { { CTL_HARVEST, 1, 0, 0, 0, 0 },
		 { CTL_MOVE, 1, W_SPARE_GPA >> 12, 0, 0, 0 },
		 { CTL_DELETE, 1, 0, 0, 0, 0 } },
	.nctl = 3,
	.watch = { DATA(0), DATA(1), DATA(2) },
	.nwatch = 3,
};

/*
 * The fast page fault against the lockless write protection (docs/MMU.md,
 * "The fast page fault" and "Lockless write protection"): after each
 * harvest the next store to a page faults on an spte that is only
 * protected for dirty logging and gets W back by cmpxchg, without
 * mmu_lock, while the next harvest clears bits and W again without it.
 * A store after a harvest that is in no later harvest, or a writable
 * translation a harvest's flush left behind, is an MMU bug.
 */
static const struct scenario fast_pf_harvest = {
	.name = "fast-pf-harvest",
	.what = "two vCPUs store to a logged page each (fast page faults) "
		"while harvests write-protect them without mmu_lock",
	.nvcpus = 2,
	.unsync = true,
	.log_slot1 = true,
	.ops = {
		{ { OP_STORE, DATA(0), 0x11 },
		  { OP_STORE, DATA(0) + 8, 0x12 },
		  { OP_STORE, DATA(0) + 16, 0x13 },
		  { OP_STORE, DATA(0) + 24, 0x14 },
		  { OP_STORE, DATA(0) + 32, 0x15 } },
		{ { OP_STORE, DATA(1), 0x21 },
		  { OP_STORE, DATA(1) + 8, 0x22 },
		  { OP_STORE, DATA(1) + 16, 0x23 },
		  { OP_STORE, DATA(1) + 24, 0x24 } },
	},
	.nops = { 5, 4 },
	.ctl = { { CTL_HARVEST, 1, 0, 0, 0, 0 },
		 { CTL_HARVEST, 1, 0, 0, 0, 0 },
		 { CTL_HARVEST, 1, 0, 0, 0, 0 } },
	.nctl = 3,
	.watch = { DATA(0), DATA(1) },
	.nwatch = 2,
};

/*
 * One logged page mapped at four addresses (the identity map and three
 * entries of T), so its rmap is a chain of descriptors, while a guest
 * page-table store and zap-alls drop sptes from it (moving entries and
 * freeing descriptors under a lockless walk) and harvests walk it
 * without mmu_lock.
 */
static const struct scenario fast_pf_zap = {
	.name = "fast-pf-zap",
	.what = "stores to a page mapped four times while harvests walk its "
		"rmap without mmu_lock and zaps change it",
	.nvcpus = 2,
	.unsync = true,
	.log_slot1 = true,
	.t_gpa = { DATA(1), DATA(1), DATA(1) },
	.t_flags = { W_PTE_PW, W_PTE_PW, W_PTE_PW },
	.ops = {
		{ { OP_STORE, T_GVA(0), 0x11 },
		  { OP_STORE, T_GVA(1) + 8, 0x12 },
		  { OP_STORE, T_GVA(2) + 16, 0x13 },
		  { OP_STORE, DATA(1) + 24, 0x14 },
		  { OP_STORE, T_GVA(0) + 32, 0x15 } },
		{ { OP_STORE, T_GVA(2) + 40, 0x21 },
		  { OP_STORE, T_ENTRY(1), DATA(2) | W_PTE_PW },
		  { OP_INVLPG, T_GVA(1), 0 },
		  { OP_STORE, T_GVA(0) + 48, 0x22 },
		  { OP_STORE, DATA(1) + 56, 0x23 } },
	},
	.nops = { 5, 5 },
	.ctl = { { CTL_HARVEST, 1, 0, 0, 0, 0 },
		 { CTL_ZAP_FAST, 0, 0, 0, 0, 0 },
		 { CTL_HARVEST, 1, 0, 0, 0, 0 },
		 { CTL_ZAP_ALL, 0, 0, 0, 0, 0 },
		 { CTL_HARVEST, 1, 0, 0, 0, 0 } },
	.nctl = 5,
	.watch = { DATA(1), T_GVA(0), T_GVA(2) },
	.nwatch = 3,
};

const struct scenario *const scenarios[] = {
	&wp_before_reread, &harvest_then_shadow, &mmio_gen_wrap,
	&delete_emulated,  &move_emulated,	 &log_start_writes,
	&harvest_mixed,	   &unsync_zap,		 &slots_churn,
	&manual_clear,	   &fast_pf_harvest,	 &fast_pf_zap,
};
const unsigned nr_scenarios = ARRAY_SIZE(scenarios);

const struct scenario *scenario_find(const char *name)
{
	for (unsigned i = 0; i < nr_scenarios; i++)
		if (!strcmp(scenarios[i]->name, name))
			return scenarios[i];
	return NULL;
}
