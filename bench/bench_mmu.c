/*
 * bench_mmu: the shadow MMU's own costs, measured in-process with the
 * core/mmu library and no guest CPU. One JSON line per figure,
 * in bench/run.py's shape ("kvm" is null: KVM's MMU cannot be driven
 * from here; docs/BENCHMARKS.md has its end-to-end figures):
 *
 *   fault_4k_ns             first-touch fault of one 4 KiB guest page
 *   fault_2m_large_ns       first-touch fault of a 2 MiB guest page that
 *                           gets one large spte
 *   fault_2m_split_ns       faulting all 512 pages of a 2 MiB guest page
 *                           whose host mapping is not 2 MiB aligned
 *   wp_1g_slot_ns           write-protect a 1 GiB slot mapped by 4 KiB
 *                           writable sptes (what dirty logging starts with)
 *   zap_all_{slow,fast}_100k_{caller,total}_ns
 *                           zap-all of ~100k shadow pages: how long the
 *                           caller waits, and until every page is freed
 *   zap_all_{slow,fast}_100k_shared_{caller,total}_ns
 *                           the same when every page table maps one gfn
 *   memslot_delete_{p50,p99}_ns
 *                           memslot delete while 2 threads keep faulting
 *   harvest_1g_ns           1 GiB slot, every page dirtied (one write
 *                           fault each), then memslot_dirty_log_get:
 *                           take the bits and write-protect every page
 *   refault_1t_ns           one write fault on a page protected only for
 *                           dirty logging, one thread, nothing else running
 *   refault_4v_{p50,p99}_ns such a fault with 4 vCPU threads faulting and
 *                           a harvester looping (docs/SEEDS.md, 002)
 *   harvest_4v_1g_ns        that harvester's harvest of the 1 GiB slot
 *   harvest_4v_1g_cpu_ns    the CPU time it took (the wall time above
 *                           includes waiting for a CPU the 4 vCPU
 *                           threads keep busy)
 *   audit_100k_ns, audit_100k_live_{begin,step_max}_ns
 *                           the audit of ~100k shadow pages, whole, and
 *                           the live audit's structural part and longest
 *                           batch of 256 pages (docs/MMU.md, "The live
 *                           audit")
 *
 * `bench_mmu WHICH memslots=rwlock` runs them with the memslot lookups'
 * read-side sections as a reader-writer lock (docs/SEEDS.md, 000);
 * `wp=locked`, `fast-pf=off` (docs/MMU.md, "Switches") likewise.
 *
 * Each figure: a warm-up run, then a fixed number of measured runs; the
 * median is reported with min and max. Guest data memory is reserved,
 * never touched (the MMU only stores its host address in sptes); guest
 * page tables are real memory, and 100 memslots alias one 4 MiB block of
 * page tables to give 100k distinct page-table gfns cheaply.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "mmu.h"
#include "mmu_bench.h"
#include "mmu_int.h"
#include "mmu_rcu.h"

#define G_P 1ULL
#define G_W 2ULL
#define G_A 0x20ULL
#define G_D 0x40ULL
#define G_PS 0x80ULL
#define RUNS 5

/* The wp and fast-pf switches given on the command line, value + 1. */
static unsigned char opt_wp, opt_fast_pf;

static void apply_options(struct mmu *mmu)
{
	if (opt_wp)
		mmu_option_set(mmu, MMU_OPT_WP, opt_wp - 1u);
	if (opt_fast_pf)
		mmu_option_set(mmu, MMU_OPT_FAST_PF, opt_fast_pf - 1u);
}

/*
 * vCPUs that are never in guest mode but do the lockless walk mode of
 * core/vcpu/request.c (docs/locking.md #18), so the fast page fault runs
 * and a flush waits for a walk as it would for a real vCPU.
 */
#define BV_MAX 8
static struct bench_vcpu {
	_Atomic int mode;
	_Atomic uint64_t requests, exits;
} bv[BV_MAX];

static void bv_request(struct bench_vcpu *c, enum mmu_request req, bool wait)
{
	uint64_t exits;

	atomic_fetch_or_explicit(&c->requests, 1ULL << req,
				 memory_order_seq_cst);
	exits = atomic_load_explicit(&c->exits, memory_order_acquire);
	if (atomic_load_explicit(&c->mode, memory_order_seq_cst) ==
		    OUTSIDE_GUEST_MODE ||
	    !wait)
		return;
	while (atomic_load_explicit(&c->exits, memory_order_acquire) == exits &&
	       atomic_load_explicit(&c->mode, memory_order_acquire) !=
		       OUTSIDE_GUEST_MODE)
		sched_yield();
}

static void bv_one(void *opaque, unsigned vcpu, enum mmu_request req, bool wait)
{
	(void)opaque;
	bv_request(&bv[vcpu % BV_MAX], req, wait);
}

static void bv_all(void *opaque, enum mmu_request req, bool wait)
{
	(void)opaque;
	for (unsigned i = 0; i < BV_MAX; i++)
		bv_request(&bv[i], req, wait);
}

static enum mmu_vcpu_mode bv_mode(void *opaque, unsigned vcpu)
{
	(void)opaque;
	return (enum mmu_vcpu_mode)atomic_load(&bv[vcpu % BV_MAX].mode);
}

static void bv_begin(void *opaque, unsigned vcpu)
{
	struct bench_vcpu *c = &bv[vcpu % BV_MAX];

	(void)opaque;
	atomic_store_explicit(&c->mode, READING_SHADOW_PAGE_TABLES,
			      memory_order_relaxed);
	atomic_fetch_or_explicit(&c->requests, 0, memory_order_seq_cst);
}

static void bv_end(void *opaque, unsigned vcpu)
{
	struct bench_vcpu *c = &bv[vcpu % BV_MAX];

	(void)opaque;
	atomic_store_explicit(&c->mode, OUTSIDE_GUEST_MODE,
			      memory_order_release);
	atomic_fetch_add_explicit(&c->exits, 1, memory_order_seq_cst);
}

static const struct mmu_vcpu_ops walk_ops = {
	.make_request = bv_one,
	.make_all_request = bv_all,
	.mode = bv_mode,
	.lockless_begin = bv_begin,
	.lockless_end = bv_end,
};

/* ---- a VM whose vCPUs are never in guest mode (nop_ops) ------------ */

static void add_slot(struct mmu *mmu, uint32_t id, gfn_t base, uint64_t n,
		     void *hva)
{
	char err[160];

	if (memslot_add(mmu, id, base, n, (hva_t)(uintptr_t)hva, 0, err,
			sizeof(err)))
		die(err);
}

static void set(uint64_t *tables, gfn_t table, unsigned idx, uint64_t v)
{
	atomic_store((_Atomic uint64_t *)&tables[table * 512 + idx], v);
}

static int fault(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu, gva_t gva,
		 unsigned access)
{
	struct mmu_fault_info info;
	int r;

	if (mmu_vcpu_load(v, cpu))
		die("out of memory");
	r = mmu_page_fault(v, cpu, gva, access, &info);
	if (r < 0 || r == MMU_FAULT_GUEST_PF) {
		fprintf(stderr, "fault at %#llx: %d\n", (unsigned long long)gva,
			r);
		die("fault failed");
	}
	return r;
}

static struct mmu_cpu_state cpu_at(gfn_t pml4)
{
	struct mmu_cpu_state c = {
		.cr0 = X86_CR0_PG | X86_CR0_WP | 0x33,
		.cr3 = pml4 << PAGE_SHIFT,
		.cr4 = X86_CR4_PAE,
		.efer = X86_EFER_NXE | (1ULL << 8) | (1ULL << 10),
		.rflags = 2,
	};
	return c;
}

/*
 * Guest: PML4 at gfn 1, PDPT at 2, PDs at 3.., and (for 4 KiB maps)
 * PTs after them, all in one table slot at gfn 0; data in a 1 GiB slot
 * at gfn 0x40000 (GPA 1 GiB) mapped at gva 1 GiB.
 */
#define DATA_GFN 0x40000ULL
#define DATA_PAGES (1ULL << 18)
#define TABLE_PAGES 1024

struct one_g {
	struct mmu *mmu;
	struct mmu_vcpu *v;
	struct mmu_cpu_state cpu;
	uint64_t *tables;
	char *data;
};

/* mode 0: 4 KiB PTEs; 1: 2 MiB PDEs; 2: 2 MiB PDEs, host misaligned;
 * 3: 4 KiB PTEs with walk_ops (the fast paths on) */
static void one_g_new(struct one_g *g, int mode)
{
	unsigned i;

	g->mmu = mmu_create(mode == 3 ? &walk_ops : &nop_ops, NULL);
	if (g->mmu)
		apply_options(g->mmu);
	g->v = mmu_vcpu_create(g->mmu, 0);
	if (!g->mmu || !g->v)
		die("out of memory");
	if (!g->tables)
		g->tables = reserve(TABLE_PAGES * PAGE_SIZE, PAGE_SIZE);
	if (!g->data)
		g->data =
			reserve(DATA_PAGES * PAGE_SIZE + PAGE_SIZE, 1ULL << 30);
	memset(g->tables, 0, 8 * PAGE_SIZE);
	add_slot(g->mmu, 0, 0, TABLE_PAGES, g->tables);
	add_slot(g->mmu, 1, DATA_GFN, DATA_PAGES,
		 g->data + (mode == 2 ? PAGE_SIZE : 0));
	set(g->tables, 1, 0, (2ULL << 12) | G_P | G_W);
	set(g->tables, 2, 1, (3ULL << 12) | G_P | G_W);
	for (i = 0; i < 512; i++) {
		gfn_t frame = DATA_GFN + i * 512ULL;

		if (mode == 0 || mode == 3) {
			gfn_t pt = 4 + i;
			unsigned j;

			set(g->tables, 3, i, (pt << 12) | G_P | G_W);
			for (j = 0; j < 512; j++)
				set(g->tables, pt, j,
				    ((frame + j) << 12) | G_P | G_W | G_A |
					    G_D);
		} else {
			set(g->tables, 3, i,
			    (frame << 12) | G_P | G_W | G_A | G_D | G_PS);
		}
	}
	g->cpu = cpu_at(1);
}

static void one_g_free(struct one_g *g)
{
	mmu_vcpu_destroy(g->v);
	mmu_destroy(g->mmu);
}

static void bench_faults(void)
{
	static struct one_g g;
	uint64_t f4[RUNS], f2l[RUNS], f2s[RUNS], wp[RUNS];
	unsigned run, i;

	for (run = 0; run <= RUNS; run++) {
		uint64_t t0, t1;
		struct memslots *slots;

		/* 4 KiB: the first 32768 pages (64 MiB). */
		one_g_new(&g, 0);
		t0 = now_ns();
		for (i = 0; i < 32768; i++)
			fault(g.v, &g.cpu, (1ULL << 30) + i * PAGE_SIZE,
			      MMU_ACCESS_WRITE);
		t1 = now_ns();
		if (run)
			f4[run - 1] = (t1 - t0) / 32768;
		/* Write-protect of the 1 GiB slot, all mapped writable. */
		for (; i < DATA_PAGES; i++)
			fault(g.v, &g.cpu, (1ULL << 30) + i * PAGE_SIZE,
			      MMU_ACCESS_WRITE);
		mmu_rcu_read_lock();
		slots = mmu_rcu_dereference(g.mmu->slots);
		t0 = now_ns();
		mmu_write_protect_slot(g.mmu,
				       memslots_find(slots, DATA_GFN, NULL));
		t1 = now_ns();
		mmu_rcu_read_unlock();
		if (run)
			wp[run - 1] = t1 - t0;
		if (getenv("BENCH_MMU_DEBUG")) {
			struct mmu_stats st;

			mmu_stats_get(g.mmu, &st);
			fprintf(stderr, "sptes %llu fixed %llu mmio %llu\n",
				(unsigned long long)st.sptes,
				(unsigned long long)st.faults_fixed,
				(unsigned long long)st.faults_mmio);
		}
		one_g_free(&g);

		one_g_new(&g, 1);
		t0 = now_ns();
		for (i = 0; i < 512; i++)
			fault(g.v, &g.cpu, (1ULL << 30) + i * (2ULL << 20),
			      MMU_ACCESS_WRITE);
		t1 = now_ns();
		if (run)
			f2l[run - 1] = (t1 - t0) / 512;
		one_g_free(&g);

		one_g_new(&g, 2);
		t0 = now_ns();
		for (i = 0; i < 64 * 512; i++)
			fault(g.v, &g.cpu, (1ULL << 30) + i * PAGE_SIZE,
			      MMU_ACCESS_WRITE);
		t1 = now_ns();
		if (run)
			f2s[run - 1] = (t1 - t0) / 64;
		one_g_free(&g);
	}
	print_figure("fault_4k_ns", f4, RUNS, "ns");
	print_figure("fault_2m_large_ns", f2l, RUNS, "ns");
	print_figure("fault_2m_split_ns", f2s, RUNS, "ns");
	print_figure("wp_1g_slot_ns", wp, RUNS, "ns");
}

/*
 * ~100k shadow pages: PML4 (gfn 1) -> PDPT (2) -> 196 PDs (3..) -> 100000
 * page tables, gfn PT_BASE + n, in 100 memslots of 1024 pages that all
 * alias one block: entry e of block page p maps data gfn DATA_BASE +
 * p * 512 + e. Faulting gva n << 21 | s << 12, s = n / 1024 (n's slot),
 * shadows table n and maps a gfn no other table maps (rmap chains of
 * one, as in a real guest). With shared, the tables alias a second block
 * whose every entry maps DATA_BASE: one gfn with a 100k-entry rmap (the
 * zero page of a guest with many processes).
 */
#define NPT 100000u
#define PT_BASE 0x100000ULL
#define PT_SLOT 1024u
#define DATA_BASE 0x200000ULL

struct many {
	struct mmu *mmu;
	struct mmu_vcpu *v;
	struct mmu_cpu_state cpu;
};

static uint64_t *many_tables, *many_pts, *many_pts_shared;
static void *many_data;

static void many_new(struct many *m, bool shared)
{
	unsigned i;

	m->mmu = mmu_create(&nop_ops, NULL);
	m->v = mmu_vcpu_create(m->mmu, 0);
	if (!m->mmu || !m->v)
		die("out of memory");
	if (!many_tables) {
		many_tables = reserve(4096 * PAGE_SIZE, PAGE_SIZE);
		many_pts = reserve(PT_SLOT * PAGE_SIZE, PAGE_SIZE);
		set(many_tables, 1, 0, (2ULL << 12) | G_P | G_W);
		for (i = 0; i < (NPT + 511) / 512; i++)
			set(many_tables, 2, i, ((3ULL + i) << 12) | G_P | G_W);
		for (i = 0; i < NPT; i++)
			set(many_tables, 3 + i / 512, i % 512,
			    ((PT_BASE + i) << 12) | G_P | G_W);
		for (i = 0; i < PT_SLOT * 512; i++)
			set(many_pts, i / 512, i % 512,
			    ((DATA_BASE + i) << 12) | G_P | G_W | G_A | G_D);
		many_data = reserve(PT_SLOT * 512 * PAGE_SIZE, PAGE_SIZE);
		many_pts_shared = reserve(PT_SLOT * PAGE_SIZE, PAGE_SIZE);
		for (i = 0; i < PT_SLOT * 512; i++)
			set(many_pts_shared, i / 512, i % 512,
			    (DATA_BASE << 12) | G_P | G_W | G_A | G_D);
	}
	add_slot(m->mmu, 0, 0, 4096, many_tables);
	for (i = 0; i < (NPT + PT_SLOT - 1) / PT_SLOT; i++)
		add_slot(m->mmu, 1 + i, PT_BASE + (uint64_t)i * PT_SLOT,
			 PT_SLOT, shared ? many_pts_shared : many_pts);
	add_slot(m->mmu, 200, DATA_BASE, PT_SLOT * 512, many_data);
	m->cpu = cpu_at(1);
	for (i = 0; i < NPT; i++)
		fault(m->v, &m->cpu,
		      (uint64_t)i << 21 | (uint64_t)(i / PT_SLOT) << 12,
		      MMU_ACCESS_READ);
}

static void many_free(struct many *m)
{
	mmu_vcpu_destroy(m->v);
	mmu_destroy(m->mmu);
}

static void bench_zap_all(bool shared)
{
	uint64_t sc[3], st[3], fc[3], ft[3];
	struct mmu_stats s;
	struct many m;
	unsigned run;

	for (run = 0; run <= 3; run++) {
		uint64_t t0, t1, t2;

		many_new(&m, shared);
		mmu_stats_get(m.mmu, &s);
		if (s.pages < NPT)
			die("fewer shadow pages than planned");
		t0 = now_ns();
		mmu_zap_all(m.mmu);
		t1 = now_ns();
		if (run)
			sc[run - 1] = st[run - 1] = t1 - t0;
		many_free(&m);

		many_new(&m, shared);
		t0 = now_ns();
		mmu_zap_all_fast(m.mmu);
		t1 = now_ns();
		mmu_zap_obsolete_pages(m.mmu);
		t2 = now_ns();
		if (run) {
			fc[run - 1] = t1 - t0;
			ft[run - 1] = t2 - t0;
		}
		many_free(&m);
	}
	print_figure(shared ? "zap_all_slow_100k_shared_caller_ns" :
			      "zap_all_slow_100k_caller_ns",
		     sc, 3, "ns");
	print_figure(shared ? "zap_all_slow_100k_shared_total_ns" :
			      "zap_all_slow_100k_total_ns",
		     st, 3, "ns");
	print_figure(shared ? "zap_all_fast_100k_shared_caller_ns" :
			      "zap_all_fast_100k_caller_ns",
		     fc, 3, "ns");
	print_figure(shared ? "zap_all_fast_100k_shared_total_ns" :
			      "zap_all_fast_100k_total_ns",
		     ft, 3, "ns");
}

/*
 * The audit of ~100k shadow pages: whole (mmu_audit), and as the live
 * audit runs it (docs/MMU.md, "The live audit"): the structural part,
 * during which faults wait for mmu_lock, and the longest batch of 256
 * pages compared with the guest's tables, the time vCPUs are held for.
 */
static void bench_audit_many(void)
{
	uint64_t full[3], begin[3], step[3];
	char msg[256];
	struct many m;
	unsigned run;

	many_new(&m, false);
	for (run = 0; run <= 3; run++) {
		uint64_t t0 = now_ns(), worst = 0;
		int r;

		if (mmu_audit(m.mmu, msg, sizeof(msg)))
			die(msg);
		t0 = now_ns() - t0;
		if (run)
			full[run - 1] = t0;
		t0 = now_ns();
		if (mmu_audit_begin(m.mmu, 0, msg, sizeof(msg)) < 0)
			die(msg);
		t0 = now_ns() - t0;
		do {
			uint64_t t1 = now_ns();

			r = mmu_audit_step(m.mmu, 256, msg, sizeof(msg));
			t1 = now_ns() - t1;
			if (t1 > worst)
				worst = t1;
		} while (r > 0);
		if (r < 0)
			die(msg);
		if (run) {
			begin[run - 1] = t0;
			step[run - 1] = worst;
		}
	}
	many_free(&m);
	print_figure("audit_100k_ns", full, 3, "ns");
	print_figure("audit_100k_live_begin_ns", begin, 3, "ns");
	print_figure("audit_100k_live_step_max_ns", step, 3, "ns");
}

/* ---- dirty logging: harvest and re-fault (docs/SEEDS.md, 002) ------ */

static void log_on(struct mmu *mmu)
{
	char err[160];

	if (memslot_set_flags(mmu, 1, MEMSLOT_LOG_DIRTY, err, sizeof(err)))
		die(err);
}

static uint64_t harvest(struct mmu *mmu, uint64_t *bits)
{
	char err[160];
	uint64_t t0 = now_ns();

	if (memslot_dirty_log_get(mmu, 1, bits, DATA_PAGES / 64, err,
				  sizeof(err)))
		die(err);
	return now_ns() - t0;
}

static void bench_harvest(void)
{
	static struct one_g g;
	static uint64_t bits[DATA_PAGES / 64];
	uint64_t hv[RUNS], rf[RUNS];
	unsigned run;
	uint64_t i;

	one_g_new(&g, 3);
	for (i = 0; i < DATA_PAGES; i++)
		fault(g.v, &g.cpu, (1ULL << 30) + i * PAGE_SIZE,
		      MMU_ACCESS_WRITE);
	log_on(g.mmu);
	for (run = 0; run <= RUNS; run++) {
		uint64_t t0 = now_ns(), n = 0;

		/* Every page written once: a write-protect re-fault each. */
		for (i = 0; i < DATA_PAGES; i++)
			fault(g.v, &g.cpu, (1ULL << 30) + i * PAGE_SIZE,
			      MMU_ACCESS_WRITE);
		t0 = now_ns() - t0;
		hv[run ? run - 1 : 0] = harvest(g.mmu, bits);
		for (i = 0; i < DATA_PAGES / 64; i++)
			n += (uint64_t)__builtin_popcountll(bits[i]);
		if (n != DATA_PAGES)
			die("harvest: not every written page was reported");
		if (run)
			rf[run - 1] = t0 / DATA_PAGES;
	}
	if (getenv("BENCH_MMU_DEBUG")) {
		struct mmu_stats st;

		mmu_stats_get(g.mmu, &st);
		fprintf(stderr,
			"fixed %llu fast %llu wp lockless %llu "
			"retries %llu fallbacks %llu\n",
			(unsigned long long)st.faults_fixed,
			(unsigned long long)atomic_load(
				&g.mmu->stats.c[MMU_STAT_FAST_PF]),
			(unsigned long long)atomic_load(
				&g.mmu->stats.c[MMU_STAT_WP_LOCKLESS]),
			(unsigned long long)atomic_load(
				&g.mmu->stats.c[MMU_STAT_WP_RETRIES]),
			(unsigned long long)atomic_load(
				&g.mmu->stats.c[MMU_STAT_WP_FALLBACKS]));
	}
	one_g_free(&g);
	print_figure("harvest_1g_ns", hv, RUNS, "ns");
	print_figure("refault_1t_ns", rf, RUNS, "ns");
}

#define RF_VCPUS 4
#define RF_SAMPLES (1u << 20)

struct refaulter {
	struct one_g *g;
	unsigned index;
	_Atomic bool *stop;
	uint64_t *lat;
	unsigned n;
	pthread_t thread;
};

/* Writes its quarter of the slot in a loop, one fault per page per
 * harvest; records each fault's latency. */
static void *refault_thread(void *arg)
{
	struct refaulter *r = arg;
	struct mmu_vcpu *v = mmu_vcpu_create(r->g->mmu, r->index);
	uint64_t quarter = DATA_PAGES / RF_VCPUS, i = 0;

	mmu_rcu_register_thread();
	while (!atomic_load_explicit(r->stop, memory_order_relaxed) &&
	       r->n < RF_SAMPLES) {
		gva_t gva =
			(1ULL << 30) +
			((r->index - 1) * quarter + i % quarter) * PAGE_SIZE;
		const _Atomic uint64_t *root = mmu_vcpu_root(v);
		uint64_t t0;
		hva_t hva;

		i++;
		/* Only what a vCPU would fault on: a page its walk of the
		 * shadow tables does not let it write. */
		if (root && !mmu_shadow_translate(root, gva, MMU_ACCESS_WRITE,
						  &r->g->cpu, &hva))
			continue;
		t0 = now_ns();
		fault(v, &r->g->cpu, gva, MMU_ACCESS_WRITE);
		r->lat[r->n++] = now_ns() - t0;
	}
	mmu_vcpu_destroy(v);
	mmu_rcu_unregister_thread();
	return NULL;
}

static void bench_refault_4v(void)
{
	static struct one_g g;
	static uint64_t bits[DATA_PAGES / 64];
	struct refaulter r[RF_VCPUS];
	_Atomic bool stop = false;
	uint64_t hv[16], cpu[16], dirty[16], p50[1], p99[1], *all;
	unsigned nh = 0, i;
	size_t total = 0;

	one_g_new(&g, 3);
	for (uint64_t p = 0; p < DATA_PAGES; p++)
		fault(g.v, &g.cpu, (1ULL << 30) + p * PAGE_SIZE,
		      MMU_ACCESS_WRITE);
	log_on(g.mmu);
	for (i = 0; i < RF_VCPUS; i++) {
		r[i] = (struct refaulter){ .g = &g,
					   .index = i + 1,
					   .stop = &stop,
					   .lat = malloc(RF_SAMPLES * 8) };
		if (!r[i].lat ||
		    pthread_create(&r[i].thread, NULL, refault_thread, &r[i]))
			die("refault threads");
	}
	/* The harvester: 16 harvests of the whole slot, each after a pause
	 * that lets the vCPUs dirty pages again. */
	for (nh = 0; nh < 16; nh++) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		uint64_t n = 0;

		struct timespec c0, c1;

		nanosleep(&ts, NULL);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
		hv[nh] = harvest(g.mmu, bits);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
		cpu[nh] = (uint64_t)(c1.tv_sec - c0.tv_sec) * 1000000000ULL +
			  (uint64_t)c1.tv_nsec - (uint64_t)c0.tv_nsec;
		for (uint64_t w = 0; w < DATA_PAGES / 64; w++)
			n += (uint64_t)__builtin_popcountll(bits[w]);
		dirty[nh] = n;
	}
	atomic_store(&stop, true);
	for (i = 0; i < RF_VCPUS; i++) {
		pthread_join(r[i].thread, NULL);
		total += r[i].n;
	}
	all = malloc(total * 8);
	if (!all)
		die("out of memory");
	total = 0;
	for (i = 0; i < RF_VCPUS; i++) {
		memcpy(all + total, r[i].lat, r[i].n * 8);
		total += r[i].n;
		free(r[i].lat);
	}
	qsort(all, total, sizeof(all[0]), cmp_u64);
	p50[0] = all[total / 2];
	p99[0] = all[total * 99 / 100];
	qsort(dirty, 16, sizeof(dirty[0]), cmp_u64);
	if (getenv("BENCH_MMU_DEBUG"))
		fprintf(stderr,
			"%zu faults, fast %llu; pages per harvest: median "
			"%llu, min %llu, max %llu\n",
			total,
			(unsigned long long)atomic_load(
				&g.mmu->stats.c[MMU_STAT_FAST_PF]),
			(unsigned long long)dirty[8],
			(unsigned long long)dirty[0],
			(unsigned long long)dirty[15]);
	free(all);
	one_g_free(&g);
	qsort(hv, 16, sizeof(hv[0]), cmp_u64);
	print_figure("refault_4v_p50_ns", p50, 1, "ns");
	print_figure("refault_4v_p99_ns", p99, 1, "ns");
	print_figure("harvest_4v_1g_ns", hv, 16, "ns");
	print_figure("harvest_4v_1g_cpu_ns", cpu, 16, "ns");
}

/* ---- memslot delete while two threads fault ----------------------- */

#define DEL_PAGES 64
#define DEL_ROUNDS 200

struct faulter {
	struct mmu *mmu;
	struct mmu_cpu_state cpu;
	_Atomic bool *stop;
	_Atomic uint64_t *faults;
	pthread_t thread;
	unsigned index;
};

static void *faulter_thread(void *arg)
{
	struct faulter *f = arg;
	struct mmu_vcpu *v = mmu_vcpu_create(f->mmu, f->index);
	unsigned i = 0;

	mmu_rcu_register_thread();
	while (!atomic_load_explicit(f->stop, memory_order_relaxed)) {
		fault(v, &f->cpu, 0x400000 + (i % DEL_PAGES) * PAGE_SIZE,
		      MMU_ACCESS_WRITE);
		i++;
	}
	atomic_fetch_add(f->faults, i);
	mmu_vcpu_destroy(v);
	mmu_rcu_unregister_thread();
	return NULL;
}

static void bench_memslot_delete(void)
{
	uint64_t *tables = reserve(8 * PAGE_SIZE, PAGE_SIZE);
	char *data = reserve(DEL_PAGES * PAGE_SIZE, PAGE_SIZE);
	uint64_t lat[DEL_ROUNDS], p50[1], p99[1];
	struct faulter f[2];
	_Atomic bool stop = false;
	_Atomic uint64_t faults = 0;
	struct mmu *mmu = mmu_create(&nop_ops, NULL);
	char err[160];
	unsigned i;

	add_slot(mmu, 0, 0, 8, tables);
	set(tables, 1, 0, (2ULL << 12) | G_P | G_W);
	set(tables, 2, 0, (3ULL << 12) | G_P | G_W);
	set(tables, 3, 2, (4ULL << 12) | G_P | G_W);
	for (i = 0; i < DEL_PAGES; i++)
		set(tables, 4, i, ((0x100ULL + i) << 12) | G_P | G_W | G_A);
	add_slot(mmu, 1, 0x100, DEL_PAGES, data);
	for (i = 0; i < 2; i++) {
		f[i] = (struct faulter){ .mmu = mmu,
					 .cpu = cpu_at(1),
					 .stop = &stop,
					 .faults = &faults,
					 .index = i };
		if (pthread_create(&f[i].thread, NULL, faulter_thread, &f[i]))
			die("pthread_create");
	}
	for (i = 0; i < DEL_ROUNDS + 20; i++) {
		uint64_t t0 = now_ns(), t1;

		if (memslot_delete(mmu, 1, err, sizeof(err)))
			die(err);
		t1 = now_ns();
		if (i >= 20) /* warm-up */
			lat[i - 20] = t1 - t0;
		add_slot(mmu, 1, 0x100, DEL_PAGES, data);
	}
	atomic_store(&stop, true);
	for (i = 0; i < 2; i++)
		pthread_join(f[i].thread, NULL);
	if (getenv("BENCH_MMU_DEBUG"))
		fprintf(stderr, "%llu faults during the deletes\n",
			(unsigned long long)atomic_load(&faults));
	mmu_destroy(mmu);
	qsort(lat, DEL_ROUNDS, sizeof(lat[0]), cmp_u64);
	p50[0] = lat[DEL_ROUNDS / 2];
	p99[0] = lat[DEL_ROUNDS * 99 / 100];
	print_figure("memslot_delete_p50_ns", p50, 1, "ns");
	print_figure("memslot_delete_p99_ns", p99, 1, "ns");
}

int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : "";

	/* bench_mmu WHICH memslots=rwlock: the read-side sections as the
	 * reader-writer lock (docs/MMU.md, "Switches"; docs/SEEDS.md). */
	for (int i = 2; i < argc; i++) {
		enum mmu_option opt;
		unsigned int val;
		char err[200];

		if (mmu_option_parse(argv[i], &opt, &val, err, sizeof(err)) <
		    0) {
			fprintf(stderr, "bench_mmu: %s\n", err);
			return 2;
		}
		if (opt == MMU_OPT_WP) {
			opt_wp = (unsigned char)(val + 1);
			continue;
		}
		if (opt == MMU_OPT_FAST_PF) {
			opt_fast_pf = (unsigned char)(val + 1);
			continue;
		}
		if (opt != MMU_OPT_MEMSLOTS) {
			fprintf(stderr,
				"bench_mmu: %s: only memslots=, wp=, fast-pf= "
				"here\n",
				argv[i]);
			return 2;
		}
		if (val == MMU_MEMSLOTS_RWLOCK)
			mmu_rcu_use_rwlock();
	}
	mmu_rcu_register_thread();
	if (!*only || (strstr(only, "fault") && !strstr(only, "refault")))
		bench_faults();
	if (!*only || strstr(only, "zap")) {
		bench_zap_all(false);
		bench_zap_all(true);
	}
	if (!*only || strstr(only, "delete"))
		bench_memslot_delete();
	if (!*only || strstr(only, "audit"))
		bench_audit_many();
	if (!*only || strstr(only, "harvest"))
		bench_harvest();
	if (!*only || strstr(only, "refault"))
		bench_refault_4v();
	mmu_rcu_unregister_thread();
	return 0;
}
