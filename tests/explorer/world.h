/*
 * A small VM for the explorer: guest RAM in three regions, identity page
 * tables, one leaf table T whose entries scenarios choose, vCPUs running
 * a few scripted guest instructions each on core/vcpu's real run loop,
 * and a control actor doing memory operations, with the oracle that
 * checks every translation a vCPU can use (docs/EXPLORER.md).
 */
#ifndef MMUD_EXPLORER_WORLD_H
#define MMUD_EXPLORER_WORLD_H

#include "explorer.h"
#include "base.h"
#include "mmu.h"

#define WORLD_MAX_VCPUS 3
#define WORLD_MAX_OPS 16
#define WORLD_MAX_CTL 8
#define WORLD_MAX_WATCH 8

/* Guest-physical layout. Region 0 (slot 0): the page tables, the code
 * and scratch pages. Region 1 (slot 1): data. Region 2: a spare for
 * scenarios that add a slot. */
#define W_LOW_PAGES 64 /* gpa 0 .. 0x40000 */
#define W_PML4 0x1000
#define W_PDPT 0x2000
#define W_PD 0x3000
#define W_PT0 0x4000 /* maps gva [0, 2 MiB) identity */
#define W_T 0x5000 /* the table T: maps gva [2 MiB, 4 MiB) */
#define W_T_GVA 0x200000ULL /* gva of T's entry 0 */
#define W_CODE 0x10000 /* + 0x1000 per vCPU */
#define W_DATA_GPA 0x100000ULL /* slot 1, identity-mapped by PT0 */
#define W_DATA_PAGES 16
#define W_SPARE_GPA 0x180000ULL /* region 2 when a scenario adds it */
#define W_SPARE_PAGES 16
#define W_PTE_PW 0x3ULL /* P|W */

enum world_op_kind {
	OP_LOAD, /* mov rax, [gva] */
	OP_STORE, /* mov [gva], val */
	OP_INVLPG, /* invlpg [gva] */
	OP_CR3, /* mov cr3, val */
};

struct world_op {
	enum world_op_kind kind;
	gva_t gva;
	uint64_t val;
};

enum ctl_kind {
	CTL_ADD, /* slot id at gfn, npages, from region */
	CTL_DELETE,
	CTL_MOVE, /* to gfn */
	CTL_LOG_START,
	CTL_HARVEST,
	CTL_ZAP_FAST, /* and free the obsolete pages */
	CTL_ZAP_ALL,
	CTL_SET_GEN, /* jump the memslot generation to val (as if val -
		      * now updates had passed) */
	CTL_HARVEST_MANUAL, /* clear the whole log, protect nothing */
	CTL_CLEAR, /* protect what the last CTL_HARVEST_MANUAL reported;
		    * the caller copies those pages after it returns */
};

struct ctl_op {
	enum ctl_kind kind;
	uint32_t id;
	gfn_t gfn;
	uint64_t npages;
	unsigned region;
	uint64_t val;
};

struct scenario {
	const char *name;
	const char *what; /* one line: what it exercises */
	unsigned nvcpus;
	struct world_op ops[WORLD_MAX_VCPUS][WORLD_MAX_OPS];
	unsigned nops[WORLD_MAX_VCPUS];
	struct ctl_op ctl[WORLD_MAX_CTL];
	unsigned nctl;
	bool unsync; /* mmu_set_unsync() */
	/* The MMU's switches (docs/MMU.md, "Switches") after it, by enum
	 * mmu_option: 0 as mmu_create() leaves it, else the value + 1;
	 * explorer --mmu-option sets them. */
	unsigned char mmu_options[MMU_OPT_NR];
	bool wp_off; /* CR0.WP = 0 on every vCPU */
	bool log_slot0, log_slot1; /* dirty logging from the start */
	uint64_t gen; /* start the memslot generation here (0: as is) */
	/* T's entries at the start: gva W_T_GVA + i * 4K -> t_gpa[i] with
	 * t_flags[i] (0 entries stay not present). */
	uint64_t t_gpa[8];
	uint64_t t_flags[8];
	gva_t watch[WORLD_MAX_WATCH];
	unsigned nwatch;
};

/* Runs sc once under cfg; run says what happened. */
void world_run(const struct scenario *sc, const struct explorer_config *cfg,
	       struct explorer_run *run);

/* scenarios.c */
extern const struct scenario *const scenarios[];
extern const unsigned nr_scenarios;
const struct scenario *scenario_find(const char *name);

#endif
