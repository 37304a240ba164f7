/*
 * core/dev: the local APIC of one vCPU (SDM vol. 3, chapter 10): its
 * registers as the 4 KiB MMIO page at IA32_APIC_BASE presents them in
 * xAPIC mode and as MSRs 0x800-0x8FF in x2APIC mode, IA32_APIC_BASE's
 * mode transitions, IRR/ISR/TMR with TPR/PPR priorities and EOI, SVR's
 * software disable, ESR, the LVT entries, the timer in one-shot,
 * periodic and TSC-deadline modes on host time, and the interrupt
 * messages of the APIC bus: the ICR's IPIs (fixed, lowest priority,
 * NMI, INIT, SIPI, shorthands, physical and logical destinations) and
 * what an IOAPIC sends (dev_apic_deliver()). Like every device it knows
 * nothing of vCPUs: the vCPU layer asks it for the interrupt to take
 * (dev_lapic_pending(), dev_lapic_ack()), and it calls back (struct
 * dev_lapic_bus_ops) when an interrupt may have become deliverable, an
 * NMI or INIT arrived, or a message must go out on the bus.
 *
 * Not here: focus checking and the arbitration of real APIC buses
 * (lowest priority picks the lowest PPR, then the lowest APIC ID),
 * EOI-broadcast suppression, the thermal, performance and CMCI sources.
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
#define LAPIC_LVT_TSC_DEADLINE (1u << 18)
#define LAPIC_LVT_TIMER_MODE (3u << 17)
/* ESR bits (SDM vol. 3, 10.5.3). */
#define LAPIC_ESR_SEND_ILLEGAL (1u << 5)
#define LAPIC_ESR_RECV_ILLEGAL (1u << 6)
#define LAPIC_ESR_ILLEGAL_REG (1u << 7)

/* IA32_APIC_BASE (SDM vol. 3, 10.4.4 and 10.12.1). */
#define MSR_IA32_APIC_BASE_BSP (1ULL << 8)
#define MSR_IA32_APIC_BASE_EXTD (1ULL << 10)
#define MSR_IA32_APIC_BASE_EN (1ULL << 11)
/* x2APIC registers: MSR 0x800 + (MMIO offset >> 4) (SDM vol. 3,
 * table 10-6), and IA32_TSC_DEADLINE (10.5.4.1). */
#define LAPIC_X2APIC_MSR_BASE 0x800u
#define LAPIC_X2APIC_MSR_LAST 0x8ffu
#define LAPIC_X2APIC_SELF_IPI 0x83fu
#define LAPIC_MSR_TSC_DEADLINE 0x6e0u

/* The timer's input clock, before the divide configuration: 1 GHz (one
 * tick a nanosecond). CPUID does not report it; guests calibrate. */
#define DEV_LAPIC_TIMER_HZ 1000000000ULL

/* Called, without the APIC's lock, when an interrupt may have become
 * deliverable (dev_lapic_accept() from any thread, the timer). */
typedef void (*dev_lapic_notify_fn)(void *ctx);

struct dev_lapic;

/* Delivery modes: ICR bits 10:8, the same encoding in IOAPIC
 * redirection entries and MSI data (SDM vol. 3, 10.6.1). */
enum dev_apic_mode {
	DEV_APIC_FIXED = 0,
	DEV_APIC_LOWEST = 1,
	DEV_APIC_SMI = 2,
	DEV_APIC_NMI = 4,
	DEV_APIC_INIT = 5,
	DEV_APIC_SIPI = 6,
	DEV_APIC_EXTINT = 7,
};

/* Destination shorthands: ICR bits 19:18. */
enum dev_apic_shorthand {
	DEV_APIC_DEST_FIELD = 0,
	DEV_APIC_SELF = 1,
	DEV_APIC_ALL = 2,
	DEV_APIC_ALL_BUT_SELF = 3,
};

/*
 * One interrupt message on the APIC bus: an IPI from an ICR, or what an
 * IOAPIC pin or an MSI sends (shorthand DEV_APIC_DEST_FIELD).
 */
struct dev_apic_msg {
	/* xAPIC format (x2apic false): 8 bits, 0xff broadcast; x2APIC
	 * format: 32 bits, 0xffffffff broadcast (SDM vol. 3, 10.12.9). */
	uint32_t dest;
	uint8_t vector;
	uint8_t mode; /* enum dev_apic_mode */
	uint8_t shorthand; /* enum dev_apic_shorthand */
	bool logical; /* destination mode: logical (true) or physical */
	bool level; /* trigger mode: level (true) or edge */
	/* Level: assert (true) or de-assert; an INIT de-assert does
	 * nothing (SDM vol. 3, 10.6.1). Edge messages assert. */
	bool assert;
	bool x2apic; /* dest is in x2APIC format */
};

/*
 * What an APIC asks of the machine around it, each called without the
 * APIC's lock held (from whatever thread caused it), all optional:
 * nmi/init when such a message arrived for it (INIT has already reset
 * the APIC's registers and put it in wait-for-SIPI); sipi when a SIPI
 * arrived while it waits for one (recorded: dev_lapic_state()); send
 * for an IPI its ICR sends (the bus delivers it: dev_apic_deliver() with
 * this APIC as the source); eoi when an EOI ended a level-triggered
 * vector (the broadcast EOI an IOAPIC listens to, SDM vol. 3, 10.8.5);
 * guest_tsc, the guest's TSC now, and tsc_hz, its frequency, for the
 * TSC-deadline mode (without them that mode never fires).
 */
struct dev_lapic_bus_ops {
	void (*nmi)(void *ctx);
	void (*init)(void *ctx);
	void (*sipi)(void *ctx, uint8_t vector);
	void (*send)(void *ctx, const struct dev_apic_msg *msg);
	void (*eoi)(void *ctx, uint8_t vector);
	uint64_t (*guest_tsc)(void *ctx);
	uint64_t tsc_hz;
};

/* The APIC of vCPU id, in its power-on state. NULL means -ENOMEM. */
struct dev_lapic *dev_lapic_create(unsigned int id, dev_lapic_notify_fn notify,
				   void *ctx);
/* Connects the APIC to its machine (before it is used; ops and ctx
 * must outlive it). ctx is passed to every bus op. */
void dev_lapic_set_bus(struct dev_lapic *l, const struct dev_lapic_bus_ops *ops,
		       void *ctx);
void dev_lapic_destroy(struct dev_lapic *l);
/* The power-on / RESET state (SDM vol. 3, 10.4.7.1). */
void dev_lapic_reset(struct dev_lapic *l);

/*
 * An access to the MMIO page at offset (0-0xfff), at host time now_ns
 * (CLOCK_MONOTONIC: the current count and a timer start use it).
 * Registers are 32 bits wide at 16-byte boundaries: any other access
 * reads 0 and writes nothing, as does any access while the APIC is
 * disabled or in x2APIC mode (it has no page then). EOI reads 0, writes to read-only
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

/*
 * IA32_APIC_BASE (SDM vol. 3, 10.4.4, 10.12.5): bits 8 (BSP), 10
 * (EXTD), 11 (EN) and the base's 4 KiB page below 2^46. -EINVAL (the
 * CPU raises #GP) for a reserved bit or a forbidden transition (x2APIC
 * to xAPIC, disabled to x2APIC, EXTD without EN); changes nothing then.
 * Disabling resets the registers; entering x2APIC mode sets the x2APIC
 * ID and LDR. Thread-safe.
 */
uint64_t dev_lapic_get_base(struct dev_lapic *l);
/* CR8 in 64-bit mode is TPR[7:4] (SDM vol. 3, 10.8.6.1): a read gives
 * TPR >> 4, a write of v (0-15) sets TPR to v << 4. Thread-safe. */
uint64_t dev_lapic_get_cr8(struct dev_lapic *l);
void dev_lapic_set_cr8(struct dev_lapic *l, uint64_t v);
int dev_lapic_set_base(struct dev_lapic *l, uint64_t value);
/* Whether the MMIO page answers (enabled in xAPIC mode) at gpa's page,
 * and whether the APIC is in x2APIC mode. Thread-safe. */
bool dev_lapic_mmio_covers(struct dev_lapic *l, uint64_t gpa);
bool dev_lapic_is_x2apic(struct dev_lapic *l);

/*
 * The x2APIC registers, MSRs 0x800-0x8FF (SDM vol. 3, 10.12.1.2): -EINVAL
 * (#GP) outside x2APIC mode, for an MSR that is not a register, a read of
 * a write-only one (EOI, SELF_IPI), a write of a read-only one, a
 * nonzero write of EOI or ESR, or reserved bits set; nothing changes
 * then. The ICR is one 64-bit register (0x830). Thread-safe.
 */
int dev_lapic_msr_read(struct dev_lapic *l, uint32_t msr, uint64_t now_ns,
		       uint64_t *value);
int dev_lapic_msr_write(struct dev_lapic *l, uint32_t msr, uint64_t value,
			uint64_t now_ns);
/*
 * IA32_TSC_DEADLINE (SDM vol. 3, 10.5.4.1): in TSC-deadline mode a
 * write arms the timer for that guest TSC (0 disarms) and a read returns
 * it until it fires; in the other modes writes are ignored and reads 0.
 */
uint64_t dev_lapic_tsc_deadline(struct dev_lapic *l);
void dev_lapic_set_tsc_deadline(struct dev_lapic *l, uint64_t tsc,
				uint64_t now_ns);

/*
 * Delivers msg to the APICs apics[0..n) (index = APIC ID) as the APIC
 * bus does (SDM vol. 3, 10.6): the destination is the shorthand's set
 * (relative to apics[src]; src -1 for a message from an IOAPIC or an
 * MSI) or every APIC the destination matches in its mode (physical,
 * logical flat or cluster, x2APIC); lowest priority picks one of them
 * (the lowest PPR, then the lowest APIC ID). Fixed and lowest priority
 * go to IRR, NMI, INIT and SIPI to the bus ops. A destination no APIC
 * has receives nothing. Thread-safe.
 */
void dev_apic_deliver(struct dev_lapic *const *apics, unsigned int n, int src,
		      const struct dev_apic_msg *msg);

/* One APIC's registers, for debugging (QMP x-query-lapic). */
struct dev_lapic_state {
	uint64_t base; /* IA32_APIC_BASE */
	uint32_t id, version, tpr, ppr, ldr, dfr, svr, esr;
	uint32_t icr_lo, icr_hi;
	uint32_t lvt[6]; /* timer, thermal, perf, LINT0, LINT1, error */
	uint32_t irr[8], isr[8], tmr[8];
	uint32_t timer_initial, timer_current, timer_divide;
	uint64_t tsc_deadline;
	uint64_t timer_deadline_ns; /* host time of the next fire, 0: none */
	bool x2apic;
	/* INIT received, waiting for a SIPI; the SIPIs received meanwhile
	 * and the last one's vector (-1: none). */
	bool wait_for_sipi;
	unsigned int sipis;
	int sipi_vector;
};
void dev_lapic_state(struct dev_lapic *l, uint64_t now_ns,
		     struct dev_lapic_state *st);

/*
 * What a local APIC holds, for migration: its registers as software
 * last wrote them, and the timer's next event relative to the save
 * (host times do not travel). dev_lapic_load() refuses, changing
 * nothing, with the field named in err, a value the APIC could not
 * hold: reserved bits in IA32_APIC_BASE or EXTD without EN, an x2APIC ID
 * or LDR other than the initial ID's, reserved bits in a register or an
 * LVT entry, an LVT entry unmasked while software disabled, vectors
 * 0-15 in IRR/ISR/TMR, an armed timer's remaining time beyond its period
 * (or a TSC deadline outside TSC-deadline mode), a SIPI record without
 * the wait.
 * Thread-safe; sends nothing (the vCPU looks at IRR when it runs).
 */
struct dev_lapic_saved {
	uint64_t base;
	uint32_t id, tpr, ldr, dfr, svr, esr, esr_pending;
	uint32_t icr_lo, icr_hi;
	uint32_t lvt[6];
	uint32_t irr[8], isr[8], tmr[8];
	uint32_t timer_initial, timer_divide;
	bool timer_armed;
	uint64_t timer_remaining_ns; /* armed: from the save to the event */
	uint64_t tsc_deadline;
	bool wait_for_sipi;
	uint32_t sipis;
	int32_t sipi_vector; /* -1: none */
};
void dev_lapic_save(struct dev_lapic *l, uint64_t now_ns,
		    struct dev_lapic_saved *st);
bool dev_lapic_load(struct dev_lapic *l, const struct dev_lapic_saved *st,
		    uint64_t now_ns, char *err, size_t errlen);

#endif
