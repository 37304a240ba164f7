/*
 * hello: prints the boot info it was given (vCPUs, RAM ranges, command
 * line) and checks the boot state of docs/GUEST-ABI.md, "Entry state",
 * on every vCPU:
 * registers, control registers, segments and descriptor tables at
 * e_entry. vCPU 0 waits for all vCPUs and prints one line per vCPU.
 */
#include "rt.h"

static volatile unsigned int arrived;

static int check_entry(unsigned int cpu)
{
	const struct rt_entry_state *e = rt_entry_state(cpu);
	int bad = 0;

#define EXPECT(what, got, want)                                               \
	do {                                                                  \
		if ((uint64_t)(got) != (uint64_t)(want)) {                    \
			rt_printf("vcpu %u: %s = %#lx, expected %#lx\n", cpu, \
				  what, (uint64_t)(got), (uint64_t)(want));   \
			bad++;                                                \
		}                                                             \
	} while (0)
	EXPECT("rsp", e->rsp, 0);
	EXPECT("rdi", e->rdi, 0x7000);
	EXPECT("rsi", e->rsi, cpu);
	EXPECT("rflags", e->rflags, 0x2);
	EXPECT("cr0", e->cr0, 0x80010033);
	EXPECT("cr3", e->cr3, 0x1000);
	EXPECT("cr4", e->cr4, 0x20);
	EXPECT("efer", e->efer, 0xd00);
	EXPECT("cs", e->cs, 0x08);
	EXPECT("ds", e->ds, 0x10);
	EXPECT("es", e->es, 0x10);
	EXPECT("ss", e->ss, 0x10);
	EXPECT("fs", e->fs, 0);
	EXPECT("gs", e->gs, 0);
	EXPECT("gdtr.base", e->gdt_base, 0x500);
	EXPECT("gdtr.limit", e->gdt_limit, 0x17);
	EXPECT("idtr.limit", e->idt_limit, 0);
#undef EXPECT
	return bad;
}

int guest_main(unsigned int cpu)
{
	int bad = 0;

	if (cpu != 0) {
		__atomic_add_fetch(&arrived, 1, __ATOMIC_RELEASE);
		return 0;
	}
	rt_printf("hello from mmud guest ABI v1\n");
	rt_printf("vcpus: %u\n", rt_boot.nr_vcpus);
	for (uint32_t i = 0; i < rt_boot.nr_ram; i++)
		rt_printf("ram %u: gpa %#lx size %#lx\n", i, rt_boot.ram[i].gpa,
			  rt_boot.ram[i].size);
	rt_printf("cmdline (%u bytes): \"%s\"\n", rt_boot.cmdline_len,
		  rt_boot.cmdline);
	if (rt_boot.cmdline[rt_boot.cmdline_len] != '\0') {
		rt_printf("cmdline is not NUL-terminated at its length\n");
		bad++;
	}

	while (__atomic_load_n(&arrived, __ATOMIC_ACQUIRE) + 1 <
	       rt_boot.nr_vcpus)
		rt_pause();
	for (unsigned int i = 0; i < rt_boot.nr_vcpus; i++) {
		int b = check_entry(i);

		rt_printf("vcpu %u: entry state %s\n", i, b ? "BAD" : "ok");
		bad += b;
	}
	rt_printf("hello: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
