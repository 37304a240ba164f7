/*
 * Interrupts for the test guests: a 256-entry IDT whose vectors 32-255
 * (and the NMI, vector 2) go to C handlers, the local APIC in xAPIC
 * (MMIO at 0xFEE00000) or x2APIC (MSRs 0x800-0x8FF) mode, the IOAPIC at
 * 0xFEC00000, and the TSC. The addresses are the platform's
 * (docs/GUEST-ABI.md); QEMU's pc machine has its APICs at the same
 * ones. Handlers run with IF = 0 on the interrupted stack and must not
 * print (rt_printf takes a lock the interrupted code may hold).
 */
#ifndef RT_IRQ_H
#define RT_IRQ_H

#include "rt.h"

/* What a handler sees of the interrupted context (the CPU's frame). */
struct rt_irq_frame {
	uint64_t vector;
	uint64_t rip, cs, rflags, rsp, ss;
};

typedef void (*rt_irq_handler)(struct rt_irq_frame *f);

/*
 * Loads the interrupt IDT on this vCPU (every vCPU calls it; the first
 * call builds it): the runtime's exception gates for 0-31, the handler
 * stubs for 32-255, and for vector 2 once a handler is set. A vector
 * without a handler fails the guest when taken.
 */
void rt_irq_setup(void);
/* Sets the handler of vector (2 or 32-255) for every vCPU. */
void rt_irq_set_handler(unsigned int vector, rt_irq_handler fn);

static inline void rt_sti(void)
{
	__asm__ volatile("sti" ::: "memory");
}
static inline void rt_cli(void)
{
	__asm__ volatile("cli" ::: "memory");
}
/* sti; hlt: the STI shadow covers the HLT, so an interrupt pending at
 * the STI wakes the HLT instead of being taken before it (SDM vol. 2,
 * STI). Returns with IF = 1. */
static inline void rt_sti_hlt(void)
{
	__asm__ volatile("sti; hlt" ::: "memory");
}
/* The address right after the HLT of the last rt_sti_hlt_at() call:
 * where an interrupt that woke it returns. */
extern char rt_after_hlt[];
/* cli first, then the same sti; hlt at one known address. */
void rt_sti_hlt_at(void);

static inline uint64_t rt_rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* ---- the local APIC ------------------------------------------------- */

#define APIC_BASE 0xfee00000ULL
#define MSR_APIC_BASE 0x1b
#define APIC_BASE_BSP (1ULL << 8)
#define APIC_BASE_EXTD (1ULL << 10)
#define APIC_BASE_EN (1ULL << 11)
#define MSR_TSC_DEADLINE 0x6e0

/* Register offsets in the xAPIC page (SDM vol. 3, table 10-1); the
 * x2APIC MSR is 0x800 + offset / 16. */
#define APIC_ID 0x20
#define APIC_VER 0x30
#define APIC_TPR 0x80
#define APIC_PPR 0xa0
#define APIC_EOI 0xb0
#define APIC_LDR 0xd0
#define APIC_DFR 0xe0
#define APIC_SVR 0xf0
#define APIC_ISR 0x100 /* + 0x10 per 32 vectors */
#define APIC_TMR 0x180
#define APIC_IRR 0x200
#define APIC_ESR 0x280
#define APIC_ICR_LO 0x300
#define APIC_ICR_HI 0x310
#define APIC_LVT_TIMER 0x320
#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_LVT_ERROR 0x370
#define APIC_TIMER_ICR 0x380
#define APIC_TIMER_CCR 0x390
#define APIC_TIMER_DCR 0x3e0
#define APIC_SELF_IPI 0x3f0 /* x2APIC only */

#define APIC_SVR_ENABLE 0x100
#define APIC_LVT_MASKED (1u << 16)
#define APIC_TIMER_PERIODIC (1u << 17)
#define APIC_TIMER_TSC_DEADLINE (2u << 17)
#define APIC_DCR_DIV1 0xb

/* ICR: delivery mode, destination mode, level, shorthand. */
#define ICR_FIXED (0u << 8)
#define ICR_LOWEST (1u << 8)
#define ICR_NMI (4u << 8)
#define ICR_INIT (5u << 8)
#define ICR_LOGICAL (1u << 11)
#define ICR_PENDING (1u << 12)
#define ICR_ASSERT (1u << 14)
#define ICR_SELF (1u << 18)
#define ICR_ALL (2u << 18)
#define ICR_OTHERS (3u << 18)

/* The timer's input clock before the divide: 1 GHz, mmud's
 * (core/dev/lapic.h) and QEMU's. */
#define APIC_TIMER_HZ 1000000000ULL

/* Whether this vCPU's APIC is accessed through the x2APIC MSRs
 * (rt_apic_x2apic_enable() was called on it). */
bool rt_apic_is_x2apic(void);
uint32_t rt_apic_read(unsigned int reg);
void rt_apic_write(unsigned int reg, uint32_t v);
/* Software-enables the APIC (SVR: enable, spurious vector 0xff), TPR 0,
 * every LVT masked, ESR cleared. */
void rt_apic_enable(void);
/* Switches this vCPU's APIC to x2APIC mode (IA32_APIC_BASE.EXTD);
 * false when CPUID does not report x2APIC. */
bool rt_apic_x2apic_enable(void);
static inline void rt_apic_eoi(void)
{
	rt_apic_write(APIC_EOI, 0);
}
unsigned int rt_apic_id(void);
/* Sends an IPI: icr_lo (vector | mode | shorthand...) to dest (APIC ID
 * or logical mask; ignored with a shorthand); waits until the xAPIC
 * reports it sent. */
void rt_apic_send(uint32_t dest, uint32_t icr_lo);
/* Bit vector of the ISR, TMR or IRR (base APIC_ISR...) set? */
bool rt_apic_bit(unsigned int base, unsigned int vector);

/* ---- the IOAPIC ------------------------------------------------------ */

#define IOAPIC_BASE 0xfec00000ULL
#define IOAPIC_ID 0x00
#define IOAPIC_VER 0x01
#define IOAPIC_ARB 0x02
#define IOAPIC_REDTBL(pin) (0x10 + 2 * (pin))

#define IOREDTBL_LEVEL (1u << 15)
#define IOREDTBL_REMOTE_IRR (1u << 14)
#define IOREDTBL_LOW (1u << 13)
#define IOREDTBL_PENDING (1u << 12)
#define IOREDTBL_LOGICAL (1u << 11)
#define IOREDTBL_MASKED (1u << 16)

uint32_t rt_ioapic_read(unsigned int index);
void rt_ioapic_write(unsigned int index, uint32_t v);
/* Programs pin's redirection entry: low 32 bits lo, destination APIC ID
 * dest (physical mode). */
void rt_ioapic_route(unsigned int pin, uint32_t lo, uint8_t dest);

#endif
