/*
 * core/dev: the local APIC of one vCPU, in xAPIC mode (SDM vol. 3,
 * chapter 10): its registers as the 4 KiB MMIO page at IA32_APIC_BASE
 * presents them, IRR/ISR/TMR with TPR/PPR priorities and EOI, SVR's
 * software disable, ESR, the LVT entries, and the timer in one-shot and
 * periodic modes on host time. Like every device it knows nothing of
 * vCPUs: the vCPU layer asks it for the interrupt to take
 * (dev_lapic_pending(), dev_lapic_ack()), and it calls notify when one
 * may have become deliverable from another thread.
 *
 * Not yet: x2APIC and TSC-deadline mode, the ICR's IPI delivery (ICR
 * writes are stored and reported, nothing is sent but a self-IPI; the
 * destination test an IPI needs is dev_lapic_match()), lowest-priority
 * arbitration, broadcast EOI to an IOAPIC.
 */
#ifndef MMUD_LAPIC_H
#define MMUD_LAPIC_H

#include <stdbool.h>
#include <stdint.h>

#define DEV_LAPIC_BASE 0xfee00000ULL
#define DEV_LAPIC_SIZE 0x1000

/* Register offsets in the MMIO page (SDM vol. 3, table 10-1). */
#define LAPIC_ID 0x20
#define LAPIC_VERSION 0x30
#define LAPIC_TPR 0x80
#define LAPIC_APR 0x90
#define LAPIC_PPR 0xa0
#define LAPIC_EOI 0xb0
#define LAPIC_RRD 0xc0
#define LAPIC_LDR 0xd0
#define LAPIC_DFR 0xe0
#define LAPIC_SVR 0xf0
#define LAPIC_ISR 0x100 /* eight registers, 0x10 apart */
#define LAPIC_TMR 0x180
#define LAPIC_IRR 0x200
#define LAPIC_ESR 0x280
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_THERMAL 0x330
#define LAPIC_LVT_PERF 0x340
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_ERROR 0x370
#define LAPIC_TIMER_ICR 0x380 /* initial count */
#define LAPIC_TIMER_CCR 0x390 /* current count */
#define LAPIC_TIMER_DCR 0x3e0 /* divide configuration */

#define LAPIC_SVR_ENABLE (1u << 8)
#define LAPIC_LVT_MASKED (1u << 16)
#define LAPIC_LVT_PERIODIC (1u << 17)
/* ESR bits (SDM vol. 3, 10.5.3). */
#define LAPIC_ESR_SEND_ILLEGAL (1u << 5)
#define LAPIC_ESR_RECV_ILLEGAL (1u << 6)
#define LAPIC_ESR_ILLEGAL_REG (1u << 7)

/* The timer's input clock, before the divide configuration: 1 GHz (one
 * tick a nanosecond). CPUID does not report it; guests calibrate. */
#define DEV_LAPIC_TIMER_HZ 1000000000ULL

/* Called, without the APIC's lock, when an interrupt may have become
 * deliverable (dev_lapic_accept() from any thread, the timer). */
typedef void (*dev_lapic_notify_fn)(void *ctx);

struct dev_lapic;

/* The APIC of vCPU id, in its power-on state. NULL means -ENOMEM. */
struct dev_lapic *dev_lapic_create(unsigned int id, dev_lapic_notify_fn notify,
				   void *ctx);
void dev_lapic_destroy(struct dev_lapic *l);
/* The power-on / RESET state (SDM vol. 3, 10.4.7.1). */
void dev_lapic_reset(struct dev_lapic *l);

/*
 * An access to the MMIO page at offset (0-0xfff), at host time now_ns
 * (CLOCK_MONOTONIC: the current count and a timer start use it).
 * Registers are 32 bits wide at 16-byte boundaries: any other access
 * reads 0 and writes nothing. EOI reads 0, writes to read-only
 * registers are ignored, and an access to a reserved offset reads 0,
 * writes nothing and sets ESR's illegal-register-address bit (SDM vol.
 * 3, 10.5.3). Thread-safe.
 */
uint32_t dev_lapic_mmio_read(struct dev_lapic *l, uint32_t offset,
			     unsigned int size, uint64_t now_ns);
void dev_lapic_mmio_write(struct dev_lapic *l, uint32_t offset,
			  unsigned int size, uint32_t value, uint64_t now_ns);

/*
 * A fixed interrupt arrives (an IPI, an IOAPIC pin, a device): vector
 * 16-255 goes to IRR (TMR set when level), unless the APIC is software
 * disabled, which drops it (SDM vol. 3, 10.4.7.2); vectors 0-15 are
 * illegal and set ESR's receive-illegal-vector bit instead (10.5.3).
 * Thread-safe; calls notify. Returns whether the vector became pending
 * (false: it already was, illegal, or the APIC is disabled): each true
 * is one dev_lapic_ack() of it later, as IRR holds one of each.
 */
bool dev_lapic_accept(struct dev_lapic *l, unsigned int vector, bool level);

/*
 * Whether this APIC is a destination of an interrupt message with
 * destination dest (8 bits, xAPIC) in physical or logical mode (SDM
 * vol. 3, 10.6.2): physical matches the APIC ID or the broadcast 0xff;
 * logical uses LDR under DFR's model, flat (a bit mask) or cluster
 * (cluster in bits 7:4, a mask of four in bits 3:0), with 0xff
 * addressing everyone. Thread-safe.
 */
bool dev_lapic_match(struct dev_lapic *l, uint8_t dest, bool logical);

/* The vector the CPU would take now: the highest in IRR whose priority
 * class is above PPR's (SDM vol. 3, 10.8.3.1), or -1. Thread-safe. */
int dev_lapic_pending(struct dev_lapic *l);
/* The CPU takes it: moves it from IRR to ISR and returns it (-1: none,
 * nothing changes). Thread-safe. */
int dev_lapic_ack(struct dev_lapic *l);

/*
 * The timer. dev_lapic_deadline() is the host time at which it next
 * fires (0: not armed); dev_lapic_advance() fires it if now_ns has
 * reached that, setting its vector in IRR unless the LVT entry is
 * masked, and rearms a periodic timer for its next period after now
 * (periods the caller slept through make one interrupt, as IRR holds
 * one). Returns whether it fired. Thread-safe.
 */
uint64_t dev_lapic_deadline(struct dev_lapic *l);
bool dev_lapic_advance(struct dev_lapic *l, uint64_t now_ns);

#endif
