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
 *   audit_100k_ns, audit_100k_live_{begin,step_max}_ns
 *                           the audit of ~100k shadow pages, whole, and
 *                           the live audit's structural part and longest
 *                           batch of 256 pages (docs/MMU.md, "The live
 *                           audit")
 *
 * `bench_mmu WHICH memslots=rwlock` runs them with the memslot lookups'
 * read-side sections as a reader-writer lock (docs/SEEDS.md, 000).
 *
 * Each figure: a warm-up run, then a fixed number of measured runs; the
 * median is reported with min and max. Guest data memory is reserved,
 * never touched (the MMU only stores its host address in sptes); guest
 * page tables are real memory, and 100 memslots alias one 4 MiB block of
 * page tables to give 100k distinct page-table gfns cheaply.
 */
#include <pthread.h>
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
	if (r < 0 || r == MMU_FAULT_GUEST_PF)
		die("fault failed");
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

/* mode 0: 4 KiB PTEs; 1: 2 MiB PDEs; 2: 2 MiB PDEs, host misaligned */
static void one_g_new(struct one_g *g, int mode)
{
	unsigned i;

	g->mmu = mmu_create(&nop_ops, NULL);
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

		if (mode == 0) {
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
		if (opt != MMU_OPT_MEMSLOTS) {
			fprintf(stderr, "bench_mmu: %s: only memslots= here\n",
				argv[i]);
			return 2;
		}
		if (val == MMU_MEMSLOTS_RWLOCK)
			mmu_rcu_use_rwlock();
	}
	mmu_rcu_register_thread();
	if (!*only || strstr(only, "fault"))
		bench_faults();
	if (!*only || strstr(only, "zap")) {
		bench_zap_all(false);
		bench_zap_all(true);
	}
	if (!*only || strstr(only, "delete"))
		bench_memslot_delete();
	if (!*only || strstr(only, "audit"))
		bench_audit_many();
	mmu_rcu_unregister_thread();
	return 0;
}
