/*
 * The guests' interrupts (irq.h): the 256-entry IDT and the handler
 * table, the local APIC in xAPIC or x2APIC mode, the IOAPIC. The
 * runtime's own IDT (cpu.c) serves exceptions until a guest calls
 * rt_irq_setup(), and this one reuses its 32 exception gates.
 */
#include "desc.h"
#include "irq.h"

extern char rt_irq_stubs[];
void rt_irq_dispatch(struct rt_irq_frame *f);

static struct idt_gate idt[256] __attribute__((aligned(16)));
static rt_irq_handler handlers[256];
static volatile int idt_state; /* 0 none, 1 being built, 2 ready */
static bool x2apic[RT_MAX_CPUS];

static void set_gate(unsigned int v, uint64_t off)
{
	idt[v].off0 = (uint16_t)off;
	idt[v].sel = RT_KCODE;
	idt[v].ist = 0;
	idt[v].type = 0x8e; /* present, DPL0, 64-bit interrupt gate */
	idt[v].off1 = (uint16_t)(off >> 16);
	idt[v].off2 = (uint32_t)(off >> 32);
	idt[v].reserved = 0;
}

void rt_irq_setup(void)
{
	struct desc_ptr cur, idtr = { sizeof(idt) - 1, (uint64_t)idt };
	int expect = 0;

	if (__atomic_compare_exchange_n(&idt_state, &expect, 1, false,
					__ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
		/* The runtime's exception gates, then ours. */
		__asm__ volatile("sidt %0" : "=m"(cur));
		memcpy(idt, (const void *)cur.base, 32 * sizeof(idt[0]));
		for (unsigned int v = 32; v < 256; v++)
			set_gate(v, (uint64_t)rt_irq_stubs + 16 * v);
		if (handlers[2])
			set_gate(2, (uint64_t)rt_irq_stubs + 16 * 2);
		__atomic_store_n(&idt_state, 2, __ATOMIC_RELEASE);
	}
	while (__atomic_load_n(&idt_state, __ATOMIC_ACQUIRE) != 2)
		rt_pause();
	__asm__ volatile("lidt %0" ::"m"(idtr));
}

void rt_irq_set_handler(unsigned int vector, rt_irq_handler fn)
{
	if (vector != 2 && (vector < 32 || vector > 255))
		rt_fail("rt_irq_set_handler: vector %u\n", vector);
	__atomic_store_n(&handlers[vector], fn, __ATOMIC_RELEASE);
	if (vector == 2 && __atomic_load_n(&idt_state, __ATOMIC_ACQUIRE) == 2)
		set_gate(2, (uint64_t)rt_irq_stubs + 16 * 2);
}

void rt_irq_dispatch(struct rt_irq_frame *f)
{
	rt_irq_handler fn =
		__atomic_load_n(&handlers[f->vector & 0xff], __ATOMIC_ACQUIRE);

	if (fn) {
		fn(f);
		return;
	}
	/* The APIC's spurious vector needs no EOI (SDM vol. 3, 10.9). */
	if (f->vector == 0xff)
		return;
	rt_fail("cpu %u: interrupt %lu with no handler at rip %#lx\n",
		rt_cpu_index(), f->vector, f->rip);
}

/* ---- local APIC ----------------------------------------------------- */

bool rt_apic_is_x2apic(void)
{
	return x2apic[rt_cpu_index()];
}

uint32_t rt_apic_read(unsigned int reg)
{
	if (rt_apic_is_x2apic())
		return (uint32_t)rt_rdmsr(0x800 + reg / 16);
	return *(volatile uint32_t *)(APIC_BASE + reg);
}

void rt_apic_write(unsigned int reg, uint32_t v)
{
	if (rt_apic_is_x2apic())
		rt_wrmsr(0x800 + reg / 16, v);
	else
		*(volatile uint32_t *)(APIC_BASE + reg) = v;
}

void rt_apic_enable(void)
{
	rt_apic_write(APIC_SVR, APIC_SVR_ENABLE | 0xff);
	rt_apic_write(APIC_TPR, 0);
	rt_apic_write(APIC_LVT_TIMER, APIC_LVT_MASKED);
	rt_apic_write(APIC_LVT_LINT0, APIC_LVT_MASKED);
	rt_apic_write(APIC_LVT_LINT1, APIC_LVT_MASKED);
	rt_apic_write(APIC_LVT_ERROR, APIC_LVT_MASKED);
	/* ESR: a write arms it, the read that follows sees the errors
	 * since (SDM vol. 3, 10.5.3). */
	rt_apic_write(APIC_ESR, 0);
	(void)rt_apic_read(APIC_ESR);
}

bool rt_apic_x2apic_enable(void)
{
	uint32_t r[4];

	rt_cpuid(1, 0, r);
	if (!(r[2] & (1u << 21)))
		return false;
	rt_wrmsr(MSR_APIC_BASE,
		 rt_rdmsr(MSR_APIC_BASE) | APIC_BASE_EN | APIC_BASE_EXTD);
	x2apic[rt_cpu_index()] = true;
	return true;
}

unsigned int rt_apic_id(void)
{
	uint32_t id = rt_apic_read(APIC_ID);

	return rt_apic_is_x2apic() ? id : id >> 24;
}

void rt_apic_send(uint32_t dest, uint32_t icr_lo)
{
	if (rt_apic_is_x2apic()) {
		rt_wrmsr(0x830, ((uint64_t)dest << 32) | icr_lo);
		return;
	}
	rt_apic_write(APIC_ICR_HI, dest << 24);
	rt_apic_write(APIC_ICR_LO, icr_lo);
	while (rt_apic_read(APIC_ICR_LO) & ICR_PENDING)
		rt_pause();
}

bool rt_apic_bit(unsigned int base, unsigned int vector)
{
	return (rt_apic_read(base + 0x10 * (vector / 32)) >> (vector % 32)) & 1;
}

/* ---- IOAPIC ----------------------------------------------------------- */

uint32_t rt_ioapic_read(unsigned int index)
{
	*(volatile uint32_t *)IOAPIC_BASE = index;
	return *(volatile uint32_t *)(IOAPIC_BASE + 0x10);
}

void rt_ioapic_write(unsigned int index, uint32_t v)
{
	*(volatile uint32_t *)IOAPIC_BASE = index;
	*(volatile uint32_t *)(IOAPIC_BASE + 0x10) = v;
}

void rt_ioapic_route(unsigned int pin, uint32_t lo, uint8_t dest)
{
	rt_ioapic_write(IOAPIC_REDTBL(pin), IOREDTBL_MASKED);
	rt_ioapic_write(IOAPIC_REDTBL(pin) + 1, (uint32_t)dest << 24);
	rt_ioapic_write(IOAPIC_REDTBL(pin), lo);
}
