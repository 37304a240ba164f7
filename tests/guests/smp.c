/*
 * smp: every vCPU touches its own pages and bumps shared counters with
 * LOCK'd read-modify-writes; then vCPU 0 changes a PTE every vCPU uses and
 * performs a software TLB shootdown (a generation flag in memory, INVLPG
 * on each vCPU, acknowledgements, spin barriers), after which every vCPU
 * must see the new frame. Each vCPU records what it saw; vCPU 0 prints
 * the totals, so the transcript depends only on the vCPU count.
 */
#include "rt.h"

#define PRIVATE_VA 0x008000000000ULL /* + cpu * 1 GiB */
#define SHARED_VA 0x010000000000ULL
#define PAGES 32
#define INCREMENTS 2000
#define SHOOTDOWNS 8

static uint64_t root;
static uint64_t shared_frames[SHOOTDOWNS + 1];
static volatile uint64_t counter, locked_counter;
static rt_lock_t lock;
static volatile unsigned int generation, acks;
static volatile unsigned int private_ok[RT_MAX_CPUS], seen_ok[RT_MAX_CPUS];

static uint64_t tag(unsigned int cpu, int page)
{
	return 0x534d500000000000ULL | ((uint64_t)cpu << 16) | (uint64_t)page;
}

static void touch_private(unsigned int cpu)
{
	uint64_t base = PRIVATE_VA + cpu * SIZE_1G;
	unsigned int ok = 0;

	for (int i = 0; i < PAGES; i++)
		*(volatile uint64_t *)(base + i * SIZE_4K) = tag(cpu, i);
	for (int i = 0; i < PAGES; i++)
		ok += *(volatile uint64_t *)(base + i * SIZE_4K) == tag(cpu, i);
	private_ok[cpu] = ok;
}

static void count(void)
{
	for (int i = 0; i < INCREMENTS; i++) {
		__atomic_fetch_add(&counter, 1, __ATOMIC_SEQ_CST);
		/* rt_lock takes the lock with XCHG (implicitly locked), so
		 * the plain increment inside is never lost. */
		rt_lock(&lock);
		locked_counter = locked_counter + 1;
		rt_unlock(&lock);
	}
}

/* One shootdown round: vCPU 0 repoints SHARED_VA at frame g and bumps
 * the generation; every vCPU (vCPU 0 included) flushes its entry,
 * acknowledges and, once all have, reads the page. */
static void shootdown(unsigned int cpu, unsigned int g)
{
	if (cpu == 0) {
		*pt_entry(root, SHARED_VA, 1, false, 0) = shared_frames[g] |
							  PTE_P | PTE_W;
		__atomic_store_n(&acks, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&generation, g, __ATOMIC_RELEASE);
	}
	while (__atomic_load_n(&generation, __ATOMIC_ACQUIRE) != g)
		rt_pause();
	rt_invlpg(SHARED_VA);
	__atomic_add_fetch(&acks, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(&acks, __ATOMIC_ACQUIRE) < rt_boot.nr_vcpus)
		rt_pause();
	if (*(volatile uint64_t *)SHARED_VA == tag(99, (int)g))
		seen_ok[cpu]++;
	rt_barrier();
}

int guest_main(unsigned int cpu)
{
	unsigned int n = rt_boot.nr_vcpus;
	int bad = 0;

	if (cpu >= RT_MAX_CPUS)
		return 0;
	if (cpu == 0) {
		root = pt_root_new();
		for (unsigned int c = 0; c < n; c++)
			for (int i = 0; i < PAGES; i++)
				pt_map(root,
				       PRIVATE_VA + c * SIZE_1G + i * SIZE_4K,
				       rt_phys_alloc(SIZE_4K, SIZE_4K), SIZE_4K,
				       PTE_W);
		for (int g = 0; g <= SHOOTDOWNS; g++) {
			shared_frames[g] = rt_phys_alloc(SIZE_4K, SIZE_4K);
			*(uint64_t *)shared_frames[g] = tag(99, g);
		}
		pt_map(root, SHARED_VA, shared_frames[0], SIZE_4K, PTE_W);
	}
	rt_barrier();
	rt_write_cr3(root);
	touch_private(cpu);
	rt_barrier();
	count();
	rt_barrier();
	for (unsigned int g = 1; g <= SHOOTDOWNS; g++)
		shootdown(cpu, g);
	if (cpu != 0)
		return 0;

	rt_write_cr3(0x1000);
	rt_printf("vcpus: %u\n", n);
	for (unsigned int c = 0; c < n; c++) {
		rt_printf("vcpu %u: %u/%u private pages, %u/%u shootdowns "
			  "seen\n",
			  c, private_ok[c], PAGES, seen_ok[c], SHOOTDOWNS);
		bad += private_ok[c] != PAGES || seen_ok[c] != SHOOTDOWNS;
	}
	rt_printf("counter: %lu (expected %lu)\n", counter,
		  (uint64_t)n * INCREMENTS);
	rt_printf("locked counter: %lu (expected %lu)\n", locked_counter,
		  (uint64_t)n * INCREMENTS);
	bad += counter != (uint64_t)n * INCREMENTS;
	bad += locked_counter != (uint64_t)n * INCREMENTS;
	rt_printf("smp: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
