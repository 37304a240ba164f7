/*
 * The runtime's CPU tables and traps: per-vCPU areas (stacks, TSS), the
 * GDT with user segments and one TSS descriptor per vCPU, the IDT, the
 * trap handler that records a fault and resumes at the armed recovery
 * point, and the switch to CPL3. It does not own page tables (paging.c).
 */
#include "desc.h"
#include "rt.h"

struct tss64 {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

struct rt_cpu_data {
	struct tss64 tss;
	uint64_t try_rsp; /* armed recovery stack pointer, 0 when disarmed */
	struct rt_fault fault;
	struct rt_entry_state entry;
	unsigned int index;
};

struct rt_cpu {
	uint8_t kstack[RT_STACK_SIZE];
	uint8_t istack[RT_STACK_SIZE];
	uint8_t dfstack[RT_CPU_DATA - RT_CPU_DFSTACK];
	struct rt_cpu_data d;
	uint8_t pad[RT_CPU_SIZE - RT_CPU_DATA - sizeof(struct rt_cpu_data)];
} __attribute__((aligned(4096)));

_Static_assert(sizeof(struct rt_cpu) == RT_CPU_SIZE, "rt_cpu layout");
_Static_assert(__builtin_offsetof(struct rt_cpu, d) == RT_CPU_DATA,
	       "rt_cpu data offset");

/*
 * The areas of vCPUs 0 to RT_STATIC_CPUS - 1 are in the image; those of
 * the others are one block vCPU 0 allocates and zeroes at boot
 * (rt_cpus_alloc) before it publishes rt_cpus_hi, which start.S waits
 * for. A 64-vCPU guest needs about 2 MiB more RAM, a small one nothing.
 */
struct rt_cpu rt_cpus[RT_STATIC_CPUS];
struct rt_cpu *rt_cpus_hi;

/* Per-vCPU user stacks, reachable at CPL3 through the user alias: only
 * for the static areas' vCPUs (rt_user_run refuses the others). */
static uint8_t user_stacks[RT_STATIC_CPUS][RT_USTACK_SIZE] RT_USER_DATA
	__attribute__((aligned(4096)));

struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

static uint64_t gdt[6 + 2 * RT_MAX_CPUS] __attribute__((aligned(16))) = {
	0,
	0x00af9b000000ffffULL, /* 0x08 kernel code, 64-bit */
	0x00cf93000000ffffULL, /* 0x10 kernel data */
	0x00cffb000000ffffULL, /* 0x18 user code, 32-bit (SYSRET layout) */
	0x00cff3000000ffffULL, /* 0x20 user data */
	0x00affb000000ffffULL, /* 0x28 user code, 64-bit */
};
static struct idt_gate idt[32] __attribute__((aligned(16)));
static volatile int tables_ready;

extern const uint64_t rt_vector_table[32];
extern char rt_resume[], rt_user_tramp[], rt_user_return[];
extern char __user_start[], __user_text_end[], __user_data_start[],
	__user_end[];
int rt_enter_user(uint64_t rip, uint64_t rsp, uint64_t fn, uint64_t arg,
		  uint64_t rflags);
void rt_arm(uint64_t rsp);
void rt_disarm(void);
void rt_trap(struct trap_frame *f);
void rt_cpu_setup(unsigned int cpu);
void rt_cpus_alloc(unsigned int nr_cpus);

static struct rt_cpu *cpu_area(unsigned int cpu)
{
	if (cpu < RT_STATIC_CPUS)
		return &rt_cpus[cpu];
	return &rt_cpus_hi[cpu - RT_STATIC_CPUS];
}

/* The area whose stacks RSP is on. */
static struct rt_cpu *this_cpu(void)
{
	uint64_t rsp, base = (uint64_t)rt_cpus;

	__asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
	if (rsp - base >= sizeof(rt_cpus))
		base = (uint64_t)rt_cpus_hi;
	return (struct rt_cpu *)base + (rsp - base) / sizeof(struct rt_cpu);
}

void rt_cpus_alloc(unsigned int nr_cpus)
{
	uint64_t size;
	struct rt_cpu *hi;

	if (nr_cpus <= RT_STATIC_CPUS)
		return;
	size = (uint64_t)(nr_cpus - RT_STATIC_CPUS) * sizeof(struct rt_cpu);
	hi = (struct rt_cpu *)rt_phys_alloc(size, SIZE_4K);
	memset(hi, 0, size);
	__atomic_store_n(&rt_cpus_hi, hi, __ATOMIC_RELEASE);
}

unsigned int rt_cpu_index(void)
{
	return this_cpu()->d.index;
}

struct rt_entry_state *rt_entry_slot(unsigned int cpu);
struct rt_entry_state *rt_entry_slot(unsigned int cpu)
{
	return &cpu_area(cpu)->d.entry;
}

const struct rt_entry_state *rt_entry_state(unsigned int cpu)
{
	return &cpu_area(cpu)->d.entry;
}

static void build_tables(void)
{
	for (int v = 0; v < 32; v++) {
		uint64_t off = rt_vector_table[v];

		idt[v].off0 = (uint16_t)off;
		idt[v].sel = RT_KCODE;
		/* #DF runs on its own stack (IST1) so a fault on a bad
		 * stack still reaches the handler. */
		idt[v].ist = v == 8 ? 1 : 0;
		idt[v].type = 0x8e; /* present, DPL0, 64-bit interrupt gate */
		idt[v].off1 = (uint16_t)(off >> 16);
		idt[v].off2 = (uint32_t)(off >> 32);
		idt[v].reserved = 0;
	}
}

void rt_cpu_setup(unsigned int cpu)
{
	struct rt_cpu *c = cpu_area(cpu);
	struct desc_ptr gdtr = { sizeof(gdt) - 1, (uint64_t)gdt };
	struct desc_ptr idtr = { sizeof(idt) - 1, (uint64_t)idt };
	uint64_t base = (uint64_t)&c->d.tss;
	unsigned int slot = 6 + 2 * cpu;

	if (cpu == 0) {
		build_tables();
		__atomic_store_n(&tables_ready, 1, __ATOMIC_RELEASE);
	} else {
		while (!__atomic_load_n(&tables_ready, __ATOMIC_ACQUIRE))
			rt_pause();
	}

	c->d.index = cpu;
	c->d.tss.rsp[0] = (uint64_t)c->istack + sizeof(c->istack);
	c->d.tss.ist[0] = (uint64_t)c->dfstack + sizeof(c->dfstack);
	c->d.tss.iomap_base = sizeof(struct tss64);
	/* Available 64-bit TSS (type 9), present, limit 0x67. */
	gdt[slot] = (sizeof(struct tss64) - 1) | ((base & 0xffffff) << 16) |
		    (0x89ULL << 40) | (((base >> 24) & 0xff) << 56);
	gdt[slot + 1] = base >> 32;

	__asm__ volatile("lgdt %0" ::"m"(gdtr));
	__asm__ volatile("lidt %0" ::"m"(idtr));
	/* Reload CS with a far return, then the data segments. */
	__asm__ volatile("pushq %0\n\t"
			 "leaq 1f(%%rip), %%rax\n\t"
			 "pushq %%rax\n\t"
			 "lretq\n"
			 "1:\n\t"
			 "mov %1, %%ds\n\t"
			 "mov %1, %%es\n\t"
			 "mov %1, %%ss\n\t"
			 :
			 : "i"(RT_KCODE), "r"((uint16_t)RT_KDATA)
			 : "rax", "memory");
	__asm__ volatile("ltr %0" ::"r"((uint16_t)(RT_TSS0 + 16 * cpu)));
}

void rt_arm(uint64_t rsp)
{
	this_cpu()->d.try_rsp = rsp;
}

void rt_disarm(void)
{
	this_cpu()->d.try_rsp = 0;
}

const struct rt_fault *rt_last_fault(void)
{
	return &this_cpu()->d.fault;
}

static void resume(struct rt_cpu *c, struct trap_frame *f, uint64_t rax)
{
	f->rip = (uint64_t)rt_resume;
	f->cs = RT_KCODE;
	f->ss = RT_KDATA;
	f->rsp = c->d.try_rsp;
	/* rt_resume pops the RFLAGS saved at arming time. */
	f->rflags = 0x2;
	f->rax = rax;
	c->d.try_rsp = 0;
}

void rt_trap(struct trap_frame *f)
{
	struct rt_cpu *c = this_cpu();
	unsigned int cpl = f->cs & 3;

	if (cpl == 3 && f->vector == 6 &&
	    f->rip == rt_user_va(rt_user_return) && c->d.try_rsp) {
		resume(c, f, 0);
		return;
	}
	if (c->d.try_rsp) {
		c->d.fault.vector = f->vector;
		c->d.fault.error = f->error;
		c->d.fault.cr2 = f->vector == 14 ? rt_read_cr2() : 0;
		c->d.fault.rip = f->rip;
		c->d.fault.cpl = cpl;
		resume(c, f, 1);
		return;
	}
	rt_fail("cpu %u: unexpected exception %lu error %#lx rip %#lx cr2 %#lx "
		"cpl %u\n",
		c->d.index, f->vector, f->error, f->rip, rt_read_cr2(), cpl);
}

uint64_t rt_user_va(const void *p)
{
	uint64_t a = (uint64_t)p;

	if (a < (uint64_t)__user_start || a >= (uint64_t)__user_end)
		rt_fail("rt_user_va: %p is not in the user sections\n", p);
	return RT_USER_ALIAS + (a - (uint64_t)__user_start);
}

void rt_user_map(uint64_t root)
{
	uint64_t a;

	for (a = (uint64_t)__user_start; a < (uint64_t)__user_text_end;
	     a += SIZE_4K)
		pt_map(root, rt_user_va((void *)a), a, SIZE_4K, PTE_U);
	for (a = (uint64_t)__user_data_start; a < (uint64_t)__user_end;
	     a += SIZE_4K)
		pt_map(root, rt_user_va((void *)a), a, SIZE_4K,
		       PTE_U | PTE_W | PTE_NX);
}

int rt_user_run(void (*fn)(uint64_t), uint64_t arg)
{
	unsigned int cpu = rt_cpu_index();
	uint64_t rsp, rflags = 0x2 | (rt_read_rflags() & X86_RFLAGS_AC);

	if (cpu >= RT_STATIC_CPUS)
		rt_fail("rt_user_run: vcpu %u has no user stack (the runtime "
			"has them for vcpus 0-%d)\n",
			cpu, RT_STATIC_CPUS - 1);
	rsp = rt_user_va(user_stacks[cpu]) + RT_USTACK_SIZE;
	return rt_enter_user(rt_user_va(rt_user_tramp), rsp,
			     rt_user_va((void *)fn), arg, rflags);
}

void rt_set_ac(bool on)
{
	uint64_t f = rt_read_rflags();

	f = on ? f | X86_RFLAGS_AC : f & ~X86_RFLAGS_AC;
	__asm__ volatile("pushq %0; popfq" ::"r"(f) : "memory", "cc");
}

static bool cpuid_bit(uint32_t leaf, int reg, int bit)
{
	uint32_t r[4];

	rt_cpuid(leaf & 0x80000000, 0, r);
	if (r[0] < leaf)
		return false;
	rt_cpuid(leaf, 0, r);
	return (r[reg] >> bit) & 1;
}

bool rt_has_smep(void)
{
	return cpuid_bit(7, 1, 7);
}

bool rt_has_smap(void)
{
	return cpuid_bit(7, 1, 20);
}

bool rt_has_1g_pages(void)
{
	return cpuid_bit(0x80000001, 3, 26);
}
