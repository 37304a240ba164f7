/*
 * Boot of the guest runtime: what runs between _start and guest_main on
 * every vCPU. It records the state the vCPU was started in, parses the
 * boot info (vCPU 0), sets up the CPU tables, and owns exit, the physical
 * page allocator and the all-vCPU barrier.
 */
#include "rt.h"

#define BOOTINFO_MAGIC 0x544f4f4244554d4dULL

struct rt_bootinfo rt_boot;

void rt_start(uint64_t bootinfo, uint64_t cpu, uint64_t entry_rsp,
	      uint64_t entry_rflags);
void rt_cpu_setup(unsigned int cpu);
void rt_cpus_alloc(unsigned int nr_cpus);
struct rt_entry_state *rt_entry_slot(unsigned int cpu);

extern char _end[];
static volatile int boot_ready;
static uint64_t phys_next; /* next free byte; atomic bump */
static uint64_t phys_limit;

static void record_entry(unsigned int cpu, uint64_t bootinfo, uint64_t rsp,
			 uint64_t rflags)
{
	struct rt_entry_state *e = rt_entry_slot(cpu);
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) d;

	e->rsp = rsp;
	e->rdi = bootinfo;
	e->rsi = cpu;
	e->rflags = rflags;
	e->cr0 = rt_read_cr0();
	e->cr3 = rt_read_cr3();
	e->cr4 = rt_read_cr4();
	e->efer = rt_rdmsr(MSR_EFER);
	__asm__ volatile("mov %%cs, %0" : "=r"(e->cs));
	__asm__ volatile("mov %%ds, %0" : "=r"(e->ds));
	__asm__ volatile("mov %%es, %0" : "=r"(e->es));
	__asm__ volatile("mov %%ss, %0" : "=r"(e->ss));
	__asm__ volatile("mov %%fs, %0" : "=r"(e->fs));
	__asm__ volatile("mov %%gs, %0" : "=r"(e->gs));
	__asm__ volatile("str %0" : "=r"(e->tr));
	__asm__ volatile("sgdt %0" : "=m"(d));
	e->gdt_limit = d.limit;
	e->gdt_base = d.base;
	__asm__ volatile("sidt %0" : "=m"(d));
	e->idt_limit = d.limit;
}

static void parse_bootinfo(uint64_t p)
{
	const uint8_t *b = (const uint8_t *)p;
	uint64_t magic;
	uint32_t version;

	memcpy(&magic, b, 8);
	memcpy(&version, b + 8, 4);
	if (magic != BOOTINFO_MAGIC || version != 1)
		rt_fail("boot info at %#lx: magic %#lx version %u\n", p, magic,
			version);
	memcpy(&rt_boot.nr_vcpus, b + 12, 4);
	memcpy(&rt_boot.nr_ram, b + 16, 4);
	rt_boot.ram = (const struct rt_ram_range *)(b + 24);
	b += 24 + 16 * (uint64_t)rt_boot.nr_ram;
	memcpy(&rt_boot.cmdline_len, b, 4);
	rt_boot.cmdline = (const char *)(b + 4);

	/* Page tables and test pages come from the low RAM range above the
	 * image, 2 MiB aligned so large pages fit. */
	phys_next = ((uint64_t)_end + SIZE_2M - 1) & ~(SIZE_2M - 1);
	for (uint32_t i = 0; i < rt_boot.nr_ram; i++) {
		const struct rt_ram_range *r = &rt_boot.ram[i];

		if (r->gpa <= (uint64_t)_end && r->gpa + r->size > phys_next)
			phys_limit = r->gpa + r->size;
	}
	if (phys_limit > (4ULL << 30))
		phys_limit = 4ULL << 30;
	/* A vCPU the runtime has no area for halts in start.S: say so
	 * rather than wait for it. */
	if (rt_boot.nr_vcpus > RT_MAX_CPUS)
		rt_fail("%u vcpus: the guest runtime supports at most %d\n",
			rt_boot.nr_vcpus, RT_MAX_CPUS);
	rt_cpus_alloc(rt_boot.nr_vcpus);
}

void rt_start(uint64_t bootinfo, uint64_t cpu, uint64_t entry_rsp,
	      uint64_t entry_rflags)
{
	int status;

	record_entry(cpu, bootinfo, entry_rsp, entry_rflags);
	if (cpu == 0) {
		parse_bootinfo(bootinfo);
		__atomic_store_n(&boot_ready, 1, __ATOMIC_RELEASE);
	} else {
		while (!__atomic_load_n(&boot_ready, __ATOMIC_ACQUIRE))
			rt_pause();
	}
	rt_cpu_setup(cpu);
	status = guest_main(cpu);
	if (cpu == 0)
		rt_exit(status);
	for (;;)
		__asm__ volatile("cli; hlt");
}

void rt_exit(int status)
{
	__asm__ volatile("outl %0, %1" ::"a"((uint32_t)status), "Nd"(0xf4));
	for (;;)
		__asm__ volatile("cli; hlt");
}

void rt_fail(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	rt_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	rt_printf("FAIL: %s", buf);
	rt_exit(1);
}

uint64_t rt_phys_alloc(uint64_t size, uint64_t align)
{
	uint64_t old, start, end;

	size = (size + SIZE_4K - 1) & ~(SIZE_4K - 1);
	if (align < SIZE_4K)
		align = SIZE_4K;
	old = __atomic_load_n(&phys_next, __ATOMIC_RELAXED);
	do {
		start = (old + align - 1) & ~(align - 1);
		end = start + size;
		if (end > phys_limit)
			rt_fail("out of guest RAM: %#lx bytes at %#lx, limit "
				"%#lx\n",
				size, start, phys_limit);
	} while (!__atomic_compare_exchange_n(&phys_next, &old, end, false,
					      __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return start;
}

static volatile unsigned int barrier_count, barrier_sense;

void rt_barrier(void)
{
	unsigned int sense = __atomic_load_n(&barrier_sense, __ATOMIC_ACQUIRE);

	if (__atomic_add_fetch(&barrier_count, 1, __ATOMIC_ACQ_REL) ==
	    rt_boot.nr_vcpus) {
		__atomic_store_n(&barrier_count, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&barrier_sense, sense + 1, __ATOMIC_RELEASE);
		return;
	}
	while (__atomic_load_n(&barrier_sense, __ATOMIC_ACQUIRE) == sense)
		rt_pause();
}

void rt_lock(rt_lock_t *l)
{
	while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&l->locked, __ATOMIC_RELAXED))
			rt_pause();
}

void rt_unlock(rt_lock_t *l)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}
