/*
 * apic_base: IA32_APIC_BASE as a guest sees it (SDM vol. 3, 10.4.4 and
 * 10.12.5): its reset value, the #GP of reserved bits and of the
 * forbidden mode transitions, the xAPIC page moved by a new base (the
 * old page then unbacked), the x2APIC MSRs refused outside x2APIC mode
 * and the page gone inside it, and a disabled APIC coming back in its
 * reset state. mmud only (expected/apic_base.mmud.txt): QEMU 7.2 TCG
 * neither moves the page nor offers x2APIC.
 */
#include "irq.h"

#define NEW_BASE 0xfe000000ULL

static void wrmsr_base(uint64_t v)
{
	rt_wrmsr(MSR_APIC_BASE, v);
}

static void rdmsr_x2apic_id(uint64_t unused)
{
	(void)unused;
	(void)rt_rdmsr(0x802);
}

static uint32_t mmio(uint64_t base, unsigned int reg)
{
	return *(volatile uint32_t *)(base + reg);
}

static void try_base(const char *what, uint64_t v)
{
	int faulted = rt_try(wrmsr_base, v);

	rt_printf("apic_base: %s: %s\n", what,
		  faulted && rt_last_fault()->vector == 13 ? "#GP" :
		  faulted				   ? "other fault" :
							     "accepted");
}

int guest_main(unsigned int cpu)
{
	uint64_t base;

	if (cpu != 0)
		for (;;)
			__asm__ volatile("cli; hlt");
	base = rt_rdmsr(MSR_APIC_BASE);
	rt_printf("apic_base: reset value %#lx\n", base);
	try_base("reserved bit 0", base | 1);
	try_base("bit 46", base | (1ULL << 46));
	try_base("EXTD without EN", APIC_BASE + APIC_BASE_EXTD);
	rt_printf("apic_base: x2APIC ID MSR in xAPIC mode: %s\n",
		  rt_try(rdmsr_x2apic_id, 0) ? "#GP" : "read");

	/* Moved: the page answers at the new base, the old one is
	 * unbacked (all ones). */
	wrmsr_base(NEW_BASE | APIC_BASE_EN | APIC_BASE_BSP);
	rt_printf("apic_base: moved: version %#x at the new base, %#x at the "
		  "old\n",
		  mmio(NEW_BASE, APIC_VER), mmio(APIC_BASE, APIC_VER));
	wrmsr_base(base);
	rt_printf("apic_base: back: version %#x\n", mmio(APIC_BASE, APIC_VER));

	/* x2APIC: the page is gone, the MSRs answer, xAPIC is refused. */
	rt_apic_write(APIC_TPR, 0x30);
	try_base("to x2APIC", base | APIC_BASE_EXTD);
	rt_printf("apic_base: x2APIC: id %lu, tpr %#lx kept, page reads %#x\n",
		  rt_rdmsr(0x802), rt_rdmsr(0x808), mmio(APIC_BASE, APIC_VER));
	try_base("x2APIC to xAPIC", base);
	try_base("x2APIC to disabled", base & ~(APIC_BASE_EN | APIC_BASE_EXTD));
	rt_printf("apic_base: disabled: page reads %#x\n",
		  mmio(APIC_BASE, APIC_VER));
	try_base("disabled to x2APIC", base | APIC_BASE_EXTD);
	try_base("disabled to xAPIC", base);
	rt_printf("apic_base: re-enabled: tpr %#x, svr %#x (reset)\n",
		  mmio(APIC_BASE, APIC_TPR), mmio(APIC_BASE, APIC_SVR));
	return 0;
}
