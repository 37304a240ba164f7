/*
 * bench_audit: what the MMU's slot-wide walks cost on big sparse slots,
 * measured in-process with the core/mmu library and no guest CPU, in
 * bench_mmu's JSON shape (docs/BENCHMARKS.md). A guest with 8 slots of
 * 64 GiB has touched 64 pages of each (one per GiB); the figures:
 *
 *   audit_8x64g_sparse_ns      mmu_audit() of that VM
 *   audit_8x64g_sparse_rss_kb  how much the first audit raised the
 *                              process's peak RSS (KiB, not ns)
 *   audit_live_begin_ns        mmu_audit_begin(): the structural part
 *   audit_live_step_max_ns     the longest mmu_audit_step() of 256 pages,
 *                              the time vCPUs are held for
 *   dirty_log_on_off_64g_ns    dirty logging on then off on one slot
 *   memslot_delete_64g_ns      deleting one of the slots
 *
 * Guest data memory is reserved, never touched; the page tables are real
 * memory in a slot of their own at gfn 0. Built with -DBENCH_NO_LIVE
 * against a core/mmu without the live audit, it measures the rest.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include "mmu.h"
#include "mmu_bench.h"
#include "mmu_rcu.h"

#define G_P 1ULL
#define G_W 2ULL
#define G_A 0x20ULL
#define G_D 0x40ULL
#define RUNS 5
#define SLOTS 8
#define SLOT_PAGES (1ULL << 24) /* 64 GiB */
#define TOUCHED 64 /* pages per slot, one per GiB */
#define TABLE_PAGES 2048

static long maxrss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

struct vm {
	struct mmu *mmu;
	struct mmu_vcpu *v;
	struct mmu_cpu_state cpu;
	uint64_t *tables;
	gfn_t next_table;
};

static gfn_t slot_base(unsigned i)
{
	return (gfn_t)(i + 1) * SLOT_PAGES;
}

static void set(struct vm *vm, gfn_t table, unsigned idx, uint64_t v)
{
	atomic_store((_Atomic uint64_t *)&vm->tables[table * 512 + idx], v);
}

static gfn_t new_table(struct vm *vm)
{
	if (vm->next_table == TABLE_PAGES)
		die("out of table pages");
	return vm->next_table++;
}

/*
 * gva (i << 39 | k << 30) maps the first page of GiB k of slot i: PML4
 * entry i, one PDPT per slot, one PD and one PT per GiB.
 */
static void vm_new(struct vm *vm)
{
	char err[160];
	unsigned i, k;

	memset(vm, 0, sizeof(*vm));
	vm->mmu = mmu_create(&nop_ops, NULL);
	vm->v = vm->mmu ? mmu_vcpu_create(vm->mmu, 0) : NULL;
	vm->tables = reserve(TABLE_PAGES * 4096, 4096);
	if (!vm->v)
		die("out of memory");
	if (memslot_add(vm->mmu, 0, 0, TABLE_PAGES,
			(hva_t)(uintptr_t)vm->tables, 0, err, sizeof(err)))
		die(err);
	vm->next_table = 1;
	vm->cpu = (struct mmu_cpu_state){
		.cr0 = X86_CR0_PG | X86_CR0_WP | 0x33,
		.cr3 = new_table(vm) << PAGE_SHIFT,
		.cr4 = X86_CR4_PAE,
		.efer = X86_EFER_NXE | (1ULL << 8) | (1ULL << 10),
		.rflags = 2,
	};
	for (i = 0; i < SLOTS; i++) {
		gfn_t pdpt = new_table(vm);

		if (memslot_add(vm->mmu, i + 1, slot_base(i), SLOT_PAGES,
				(hva_t)(uintptr_t)reserve(SLOT_PAGES * 4096,
							  4096),
				0, err, sizeof(err)))
			die(err);
		set(vm, vm->cpu.cr3 >> PAGE_SHIFT, i,
		    (pdpt << PAGE_SHIFT) | G_P | G_W | G_A);
		for (k = 0; k < TOUCHED; k++) {
			gfn_t pd = new_table(vm), pt = new_table(vm);
			gfn_t data = slot_base(i) + ((gfn_t)k << 18);
			struct mmu_fault_info info;

			set(vm, pdpt, k, (pd << PAGE_SHIFT) | G_P | G_W | G_A);
			set(vm, pd, 0, (pt << PAGE_SHIFT) | G_P | G_W | G_A);
			set(vm, pt, 0,
			    (data << PAGE_SHIFT) | G_P | G_W | G_A | G_D);
			if (mmu_vcpu_load(vm->v, &vm->cpu) ||
			    mmu_page_fault(vm->v, &vm->cpu,
					   ((gva_t)i << 39) | ((gva_t)k << 30),
					   MMU_ACCESS_WRITE,
					   &info) != MMU_FAULT_FIXED)
				die("fault failed");
		}
	}
}

static void vm_free(struct vm *vm)
{
	mmu_vcpu_destroy(vm->v);
	mmu_destroy(vm->mmu);
}

static void bench_audit(void)
{
	uint64_t t[RUNS], rss[1];
	char msg[256];
	struct vm vm;
	long before;
	unsigned r;

	vm_new(&vm);
	before = maxrss_kb();
	for (r = 0; r < RUNS; r++) {
		t[r] = now_ns();
		if (mmu_audit(vm.mmu, msg, sizeof(msg)))
			die(msg);
		t[r] = now_ns() - t[r];
		if (r == 0)
			rss[0] = (uint64_t)(maxrss_kb() - before);
	}
	print_figure("audit_8x64g_sparse_ns", t, RUNS, "ns");
	print_figure("audit_8x64g_sparse_rss_kb", rss, 1, "KiB");
#ifndef BENCH_NO_LIVE
	{
		uint64_t b[RUNS], s[RUNS];

		for (r = 0; r < RUNS; r++) {
			int k;

			b[r] = now_ns();
			if (mmu_audit_begin(vm.mmu, 0, msg, sizeof(msg)) < 0)
				die(msg);
			b[r] = now_ns() - b[r];
			s[r] = 0;
			do {
				uint64_t t0 = now_ns();

				k = mmu_audit_step(vm.mmu, 256, msg,
						   sizeof(msg));
				t0 = now_ns() - t0;
				if (t0 > s[r])
					s[r] = t0;
			} while (k > 0);
			if (k < 0)
				die(msg);
		}
		print_figure("audit_live_begin_ns", b, RUNS, "ns");
		print_figure("audit_live_step_max_ns", s, RUNS, "ns");
	}
#endif
	for (r = 0; r < RUNS; r++) {
		t[r] = now_ns();
		if (memslot_set_flags(vm.mmu, 1, MEMSLOT_LOG_DIRTY, msg,
				      sizeof(msg)) ||
		    memslot_set_flags(vm.mmu, 1, 0, msg, sizeof(msg)))
			die(msg);
		t[r] = now_ns() - t[r];
	}
	print_figure("dirty_log_on_off_64g_ns", t, RUNS, "ns");
	t[0] = now_ns();
	if (memslot_delete(vm.mmu, SLOTS, msg, sizeof(msg)))
		die(msg);
	t[0] = now_ns() - t[0];
	print_figure("memslot_delete_64g_ns", t, 1, "ns");
	vm_free(&vm);
}

int main(void)
{
	mmu_rcu_register_thread();
	bench_audit();
	mmu_rcu_unregister_thread();
	return 0;
}
