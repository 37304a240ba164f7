/*
 * The local APIC (SDM vol. 3, chapter 10): registers through MMIO
 * (xAPIC) and MSRs (x2APIC), IA32_APIC_BASE's modes, interrupt
 * acceptance and priorities (IRR, ISR, TMR, TPR, PPR, EOI), software
 * disable, the error register, the timer's one-shot, periodic and
 * TSC-deadline modes on host time, and the APIC bus: destinations,
 * lowest priority, NMI, INIT and SIPI (dev_apic_deliver()). lapic.h
 * says what is not here.
 *
 * All state is under l->lock, a leaf (docs/locking.md, "`lapic->lock`
 * (pthread mutex, one per local APIC model)"): the vCPU's thread takes
 * it for MMIO and MSRs and to take an interrupt, other threads to make
 * one pending. Every callback (notify, the bus ops) is made after the
 * lock is dropped: what a register write must send is collected in a
 * struct after under the lock and sent once it is released, so an IPI
 * to oneself or an EOI that reaches an IOAPIC which delivers again
 * never takes the lock twice.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lapic.h"

/* The LVT entries in register order: 0x320 + 0x10 i. */
enum { LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR };
#define NR_LVT 6

/* Legend: (c) constant after creation (bus and bus_ctx: set once by
 * dev_lapic_set_bus() before use); everything else under lock. */
struct dev_lapic {
	pthread_mutex_t lock;
	dev_lapic_notify_fn notify; /* (c) */
	void *ctx; /* (c) */
	const struct dev_lapic_bus_ops *bus; /* (c) */
	void *bus_ctx; /* (c) */
	unsigned int initial_id; /* (c) */
	uint64_t base; /* IA32_APIC_BASE */
	uint32_t id, tpr, ldr, dfr, svr;
	uint32_t esr; /* what the last ESR write latched */
	uint32_t esr_pending; /* errors since then */
	uint32_t icr_lo, icr_hi;
	uint32_t lvt[NR_LVT];
	uint32_t irr[8], isr[8], tmr[8];
	uint32_t tmict, dcr;
	/* Timer: armed while deadline != 0; a periodic timer fires at
	 * start + k period. Host nanoseconds. In TSC-deadline mode,
	 * tsc_deadline is the guest TSC it fires at (0: disarmed) and
	 * deadline the host time that TSC is expected. */
	uint64_t start, deadline, period;
	uint64_t tsc_deadline;
	bool wait_for_sipi;
	unsigned int sipis;
	int sipi_vector;
};

/* What a register access must do once the lock is dropped. */
struct after {
	bool notify;
	bool send;
	struct dev_apic_msg msg;
	int eoi; /* a level-triggered vector that got its EOI, or -1 */
};

/*
 * Writable bits of each LVT entry (SDM vol. 3, figure 10-8): vector,
 * delivery mode, polarity, trigger mode, mask, timer mode. Delivery
 * status and remote IRR are read-only (always 0 here: delivery is
 * immediate). The timer's mode is one-shot, periodic or TSC-deadline.
 */
static const uint32_t lvt_writable[NR_LVT] = {
	[LVT_TIMER] = 0x700ff, [LVT_THERMAL] = 0x107ff, [LVT_PERF] = 0x107ff,
	[LVT_LINT0] = 0x1a7ff, [LVT_LINT1] = 0x1a7ff,	[LVT_ERROR] = 0x100ff,
};

/* Version 14H (an integrated APIC), 6 LVT entries (max LVT entry 5),
 * no EOI-broadcast suppression (SDM vol. 3, 10.4.8). */
#define LAPIC_VERSION_VALUE 0x50014u

/* IA32_APIC_BASE: BSP, EXTD, EN and a base below 2^46 (the guest's
 * physical address width, docs/GUEST-ABI.md). */
#define BASE_VALID (((1ULL << 46) - 1) & ~0x2ffULL)

static bool is_x2apic_locked(const struct dev_lapic *l)
{
	return (l->base & MSR_IA32_APIC_BASE_EXTD) != 0;
}

static bool is_hw_enabled_locked(const struct dev_lapic *l)
{
	return (l->base & MSR_IA32_APIC_BASE_EN) != 0;
}

/* The registers' RESET state (SDM vol. 3, 10.4.7.1), IA32_APIC_BASE
 * aside: the ID is the initial one, in the mode's format. */
static void reset_regs_locked(struct dev_lapic *l)
{
	l->id = is_x2apic_locked(l) ? l->initial_id : l->initial_id << 24;
	l->tpr = 0;
	/* SDM vol. 3, 10.12.10.2: in x2APIC mode LDR is derived from the
	 * ID: cluster in bits 31:16, one bit of 16 in 15:0. */
	l->ldr = is_x2apic_locked(l) ? ((l->initial_id >> 4) << 16) |
					       (1u << (l->initial_id & 0xf)) :
				       0;
	l->dfr = 0xffffffffu;
	l->svr = 0xff;
	l->esr = l->esr_pending = 0;
	l->icr_lo = l->icr_hi = 0;
	for (unsigned int i = 0; i < NR_LVT; i++)
		l->lvt[i] = LAPIC_LVT_MASKED;
	memset(l->irr, 0, sizeof(l->irr));
	memset(l->isr, 0, sizeof(l->isr));
	memset(l->tmr, 0, sizeof(l->tmr));
	l->tmict = 0;
	l->dcr = 0;
	l->start = l->deadline = l->period = 0;
	l->tsc_deadline = 0;
}

static void reset_locked(struct dev_lapic *l)
{
	/* Enabled in xAPIC mode at the default base; the BSP flag on
	 * APIC 0 (SDM vol. 3, 10.4.4, 8.4.1). */
	l->base = DEV_LAPIC_BASE | MSR_IA32_APIC_BASE_EN |
		  (l->initial_id ? 0 : MSR_IA32_APIC_BASE_BSP);
	reset_regs_locked(l);
	l->wait_for_sipi = false;
	l->sipis = 0;
	l->sipi_vector = -1;
}

struct dev_lapic *dev_lapic_create(unsigned int id, dev_lapic_notify_fn notify,
				   void *ctx)
{
	struct dev_lapic *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	pthread_mutex_init(&l->lock, NULL);
	l->notify = notify;
	l->ctx = ctx;
	l->initial_id = id & 0xff;
	reset_locked(l);
	return l;
}

void dev_lapic_set_bus(struct dev_lapic *l, const struct dev_lapic_bus_ops *ops,
		       void *ctx)
{
	l->bus = ops;
	l->bus_ctx = ctx;
}

void dev_lapic_destroy(struct dev_lapic *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

void dev_lapic_reset(struct dev_lapic *l)
{
	pthread_mutex_lock(&l->lock);
	reset_locked(l);
	pthread_mutex_unlock(&l->lock);
}

static void notify(struct dev_lapic *l)
{
	if (l->notify)
		l->notify(l->ctx);
}

static void run_after(struct dev_lapic *l, const struct after *a)
{
	if (a->notify)
		notify(l);
	if (a->eoi >= 0 && l->bus && l->bus->eoi)
		l->bus->eoi(l->bus_ctx, (uint8_t)a->eoi);
	if (a->send && l->bus && l->bus->send)
		l->bus->send(l->bus_ctx, &a->msg);
}

/* ---- priorities -------------------------------------------------------- */

static int highest(const uint32_t r[8])
{
	for (int i = 7; i >= 0; i--)
		if (r[i])
			return i * 32 + 31 - __builtin_clz(r[i]);
	return -1;
}

static bool test_bit(const uint32_t r[8], unsigned int v)
{
	return (r[v / 32] >> (v % 32)) & 1;
}

static void set_bit(uint32_t r[8], unsigned int v)
{
	r[v / 32] |= 1u << (v % 32);
}

static void clear_bit(uint32_t r[8], unsigned int v)
{
	r[v / 32] &= ~(1u << (v % 32));
}

/* SDM vol. 3, 10.8.3.1: PPR is TPR when TPR's class is at least that of
 * the highest in-service vector, else that vector's class. */
static uint32_t ppr_locked(const struct dev_lapic *l)
{
	int isrv = highest(l->isr);
	uint32_t isr_class = isrv < 0 ? 0 : (uint32_t)isrv & 0xf0;

	return (l->tpr & 0xf0) >= isr_class ? l->tpr & 0xff : isr_class;
}

static int pending_locked(const struct dev_lapic *l)
{
	int irrv = highest(l->irr);

	/* A globally disabled APIC dispenses nothing (SDM vol. 3,
	 * 10.4.3); only a class above the processor priority is. */
	if (!is_hw_enabled_locked(l) || l->wait_for_sipi)
		return -1;
	if (irrv < 0 || ((uint32_t)irrv & 0xf0) <= (ppr_locked(l) & 0xf0))
		return -1;
	return irrv;
}

/* ---- errors and acceptance ---------------------------------------------- */

static bool accept_locked(struct dev_lapic *l, unsigned int vector, bool level);

/* SDM vol. 3, 10.5.3: an error is recorded, and the error LVT entry
 * interrupts unless masked. */
static void error_locked(struct dev_lapic *l, uint32_t bit)
{
	uint32_t lvt = l->lvt[LVT_ERROR];

	l->esr_pending |= bit;
	if (!(lvt & LAPIC_LVT_MASKED) && (lvt & 0xff) >= 16)
		accept_locked(l, lvt & 0xff, false);
}

static bool accept_locked(struct dev_lapic *l, unsigned int vector, bool level)
{
	bool was;

	vector &= 0xff;
	if (!is_hw_enabled_locked(l))
		return false; /* SDM vol. 3, 10.4.3: the APIC is off */
	if (vector < 16) {
		/* SDM vol. 3, 10.5.2: vectors 0-15 are illegal. */
		error_locked(l, LAPIC_ESR_RECV_ILLEGAL);
		return false;
	}
	/* SDM vol. 3, 10.4.7.2: a software-disabled APIC takes no fixed
	 * interrupts. */
	if (!(l->svr & LAPIC_SVR_ENABLE))
		return false;
	was = test_bit(l->irr, vector);
	set_bit(l->irr, vector);
	if (level)
		set_bit(l->tmr, vector);
	else
		clear_bit(l->tmr, vector);
	return !was;
}

bool dev_lapic_accept(struct dev_lapic *l, unsigned int vector, bool level)
{
	bool fresh;

	pthread_mutex_lock(&l->lock);
	fresh = accept_locked(l, vector, level);
	pthread_mutex_unlock(&l->lock);
	notify(l);
	return fresh;
}

int dev_lapic_pending(struct dev_lapic *l)
{
	int v;

	pthread_mutex_lock(&l->lock);
	v = pending_locked(l);
	pthread_mutex_unlock(&l->lock);
	return v;
}

int dev_lapic_ack(struct dev_lapic *l)
{
	int v;

	pthread_mutex_lock(&l->lock);
	v = pending_locked(l);
	if (v >= 0) {
		/* SDM vol. 3, 10.8.4: IRR to ISR when the CPU takes it. */
		clear_bit(l->irr, (unsigned int)v);
		set_bit(l->isr, (unsigned int)v);
	}
	pthread_mutex_unlock(&l->lock);
	return v;
}

/* ---- destinations ------------------------------------------------------- */

/*
 * Whether this APIC is a destination of msg's destination field (SDM
 * vol. 3, 10.6.2, 10.12.9). xAPIC: physical matches the APIC ID, flat
 * logical LDR as a bit mask, cluster logical bits 7:4 as the cluster and
 * 3:0 as a mask of four; 0xff is everyone. x2APIC: physical matches the
 * 32-bit ID, logical the cluster in 31:16 and a mask of 16 in 15:0;
 * 0xffffffff is everyone. A message in xAPIC format reaching an APIC in
 * x2APIC mode (an IOAPIC's) compares its 8 bits the same way.
 */
static bool match_locked(const struct dev_lapic *l, uint32_t dest, bool logical,
			 bool x2apic_msg)
{
	uint32_t bcast = x2apic_msg ? 0xffffffffu : 0xffu;
	uint8_t ldr8;

	if (!is_hw_enabled_locked(l))
		return false;
	if (dest == bcast)
		return true;
	if (is_x2apic_locked(l)) {
		if (!logical)
			return dest == l->id;
		return (dest >> 16) == (l->ldr >> 16) &&
		       (dest & l->ldr & 0xffff) != 0;
	}
	if (x2apic_msg && (dest >> 8))
		return false;
	ldr8 = (uint8_t)(l->ldr >> 24);
	if (!logical)
		return (dest & 0xff) == (l->id >> 24);
	if ((l->dfr >> 28) == 0xf) /* flat model */
		return (dest & ldr8) != 0;
	/* cluster model (DFR 0000b) */
	return ((dest >> 4) & 0xf) == (uint32_t)(ldr8 >> 4) &&
	       (dest & ldr8 & 0xf) != 0;
}

bool dev_lapic_match(struct dev_lapic *l, uint8_t dest, bool logical)
{
	bool hit;

	pthread_mutex_lock(&l->lock);
	hit = match_locked(l, dest, logical, false);
	pthread_mutex_unlock(&l->lock);
	return hit;
}

/* ---- the timer ----------------------------------------------------------- */

/* SDM vol. 3, figure 10-10: DCR bits 0, 1 and 3 encode divide by 2, 4,
 * ... 128, and 111b divide by 1. */
static uint64_t divisor_of(uint32_t dcr)
{
	unsigned int v = (dcr & 3) | ((dcr >> 1) & 4);

	return 1ULL << ((v + 1) & 7);
}

static uint64_t divisor(const struct dev_lapic *l)
{
	return divisor_of(l->dcr);
}

#define NS_PER_TICK (1000000000ULL / DEV_LAPIC_TIMER_HZ)

static bool is_tsc_deadline_locked(const struct dev_lapic *l)
{
	return (l->lvt[LVT_TIMER] & LAPIC_LVT_TIMER_MODE) ==
	       LAPIC_LVT_TSC_DEADLINE;
}

/* SDM vol. 3, 10.5.4: a write of the initial count starts the timer;
 * zero stops it. */
static void timer_start_locked(struct dev_lapic *l, uint64_t now)
{
	l->period = (uint64_t)l->tmict * divisor(l) * NS_PER_TICK;
	l->start = now;
	l->deadline = l->tmict ? now + l->period : 0;
}

static uint32_t timer_current_locked(const struct dev_lapic *l, uint64_t now)
{
	uint64_t tick = divisor(l) * NS_PER_TICK;

	if (!l->deadline || is_tsc_deadline_locked(l))
		return 0;
	if (l->lvt[LVT_TIMER] & LAPIC_LVT_PERIODIC) {
		uint64_t into = now > l->start ? (now - l->start) % l->period :
						 0;

		return (uint32_t)((l->period - into) / tick);
	}
	return now >= l->deadline ? 0 : (uint32_t)((l->deadline - now) / tick);
}

/*
 * The host time at which the guest's TSC reaches tsc, rounded up so the
 * timer never fires before it (the expiry checks the TSC again).
 */
static uint64_t tsc_to_host_locked(const struct dev_lapic *l, uint64_t tsc,
				   uint64_t now_ns)
{
	uint64_t cur, ns;
	unsigned __int128 delta;

	if (!l->bus || !l->bus->guest_tsc || !l->bus->tsc_hz)
		return 0;
	cur = l->bus->guest_tsc(l->bus_ctx);
	if (tsc <= cur)
		return now_ns;
	delta = (unsigned __int128)(tsc - cur) * 1000000000u;
	delta = (delta + l->bus->tsc_hz - 1) / l->bus->tsc_hz;
	ns = delta > (unsigned __int128)(UINT64_MAX - now_ns) ?
		     UINT64_MAX :
		     now_ns + (uint64_t)delta;
	return ns ? ns : 1;
}

uint64_t dev_lapic_deadline(struct dev_lapic *l)
{
	uint64_t d;

	pthread_mutex_lock(&l->lock);
	d = l->deadline;
	pthread_mutex_unlock(&l->lock);
	return d;
}

bool dev_lapic_advance(struct dev_lapic *l, uint64_t now_ns)
{
	uint32_t lvt;
	bool fired = false;

	pthread_mutex_lock(&l->lock);
	if (l->deadline && now_ns >= l->deadline) {
		lvt = l->lvt[LVT_TIMER];
		if (is_tsc_deadline_locked(l)) {
			/* Host time is only an estimate of the guest TSC:
			 * fire once the TSC itself has reached the
			 * deadline, else wait for the rest. */
			uint64_t cur = l->bus && l->bus->guest_tsc ?
					       l->bus->guest_tsc(l->bus_ctx) :
					       0;

			if (cur < l->tsc_deadline) {
				l->deadline = tsc_to_host_locked(
					l, l->tsc_deadline, now_ns);
				if (l->deadline <= now_ns)
					l->deadline = now_ns + 1;
				goto out;
			}
			l->tsc_deadline = 0;
			l->deadline = 0;
		} else if (lvt & LAPIC_LVT_PERIODIC) {
			uint64_t k = (now_ns - l->start) / l->period + 1;

			l->deadline = l->start + k * l->period;
		} else {
			l->deadline = 0;
		}
		fired = true;
		/* The mask stops the interrupt, not the count. */
		if (!(lvt & LAPIC_LVT_MASKED))
			accept_locked(l, lvt & 0xff, false);
	}
out:
	pthread_mutex_unlock(&l->lock);
	if (fired)
		notify(l);
	return fired;
}

uint64_t dev_lapic_tsc_deadline(struct dev_lapic *l)
{
	uint64_t v;

	pthread_mutex_lock(&l->lock);
	v = is_tsc_deadline_locked(l) ? l->tsc_deadline : 0;
	pthread_mutex_unlock(&l->lock);
	return v;
}

void dev_lapic_set_tsc_deadline(struct dev_lapic *l, uint64_t tsc,
				uint64_t now_ns)
{
	pthread_mutex_lock(&l->lock);
	/* SDM vol. 3, 10.5.4.1: ignored outside TSC-deadline mode. */
	if (is_tsc_deadline_locked(l)) {
		l->tsc_deadline = tsc;
		l->deadline = tsc ? tsc_to_host_locked(l, tsc, now_ns) : 0;
	}
	pthread_mutex_unlock(&l->lock);
}

/* ---- registers ----------------------------------------------------------- */

static bool is_lvt(uint32_t off)
{
	return off >= LAPIC_LVT_TIMER && off <= LAPIC_LVT_ERROR;
}

/* Reads register off (16-aligned); false for a reserved offset. */
static bool read_locked(struct dev_lapic *l, uint32_t off, uint64_t now,
			uint32_t *v)
{
	if (off >= LAPIC_ISR && off < LAPIC_ISR + 0x80) {
		*v = l->isr[(off - LAPIC_ISR) / 16];
		return true;
	}
	if (off >= LAPIC_TMR && off < LAPIC_TMR + 0x80) {
		*v = l->tmr[(off - LAPIC_TMR) / 16];
		return true;
	}
	if (off >= LAPIC_IRR && off < LAPIC_IRR + 0x80) {
		*v = l->irr[(off - LAPIC_IRR) / 16];
		return true;
	}
	if (is_lvt(off)) {
		*v = l->lvt[(off - LAPIC_LVT_TIMER) / 16];
		return true;
	}
	switch (off) {
	case LAPIC_ID:
		*v = l->id;
		return true;
	case LAPIC_VERSION:
		*v = LAPIC_VERSION_VALUE;
		return true;
	case LAPIC_TPR:
		*v = l->tpr;
		return true;
	case LAPIC_APR: /* arbitration: no APIC bus */
	case LAPIC_RRD: /* remote read: not supported */
	case LAPIC_EOI: /* write-only */
		*v = 0;
		return true;
	case LAPIC_PPR:
		*v = ppr_locked(l);
		return true;
	case LAPIC_LDR:
		*v = l->ldr;
		return true;
	case LAPIC_DFR:
		*v = l->dfr;
		return true;
	case LAPIC_SVR:
		*v = l->svr;
		return true;
	case LAPIC_ESR:
		*v = l->esr;
		return true;
	case LAPIC_ICR_LO:
		*v = l->icr_lo; /* delivery status 0: sent at once */
		return true;
	case LAPIC_ICR_HI:
		*v = l->icr_hi;
		return true;
	case LAPIC_TIMER_ICR:
		*v = l->tmict;
		return true;
	case LAPIC_TIMER_CCR:
		*v = timer_current_locked(l, now);
		return true;
	case LAPIC_TIMER_DCR:
		*v = l->dcr;
		return true;
	default:
		return false;
	}
}

static void write_lvt_locked(struct dev_lapic *l, unsigned int i, uint32_t v)
{
	uint32_t old = l->lvt[i];

	v &= lvt_writable[i];
	/* SDM vol. 3, 10.4.7.2: while software disabled, every LVT
	 * entry stays masked. */
	if (!(l->svr & LAPIC_SVR_ENABLE))
		v |= LAPIC_LVT_MASKED;
	l->lvt[i] = v;
	/* SDM vol. 3, 10.5.4.1: a change of the timer's mode disarms
	 * it. */
	if (i == LVT_TIMER && ((old ^ v) & LAPIC_LVT_TIMER_MODE)) {
		l->deadline = 0;
		l->tsc_deadline = 0;
		l->tmict = 0;
	}
}

/* The ICR (low and high halves, xAPIC layout) as a bus message. */
static void send_icr_locked(struct dev_lapic *l, uint32_t lo, uint32_t dest,
			    struct after *a)
{
	struct dev_apic_msg m = {
		.dest = dest,
		.vector = (uint8_t)lo,
		.mode = (lo >> 8) & 7,
		.logical = (lo >> 11) & 1,
		.assert = (lo >> 14) & 1,
		.level = (lo >> 15) & 1,
		.shorthand = (lo >> 18) & 3,
		.x2apic = is_x2apic_locked(l),
	};

	/* SDM vol. 3, 10.5.3: a fixed or lowest-priority IPI with vector
	 * 0-15 is not sent; the sender's ESR says why. */
	if ((m.mode == DEV_APIC_FIXED || m.mode == DEV_APIC_LOWEST) &&
	    m.vector < 16) {
		error_locked(l, LAPIC_ESR_SEND_ILLEGAL);
		a->notify = true;
		return;
	}
	if (m.shorthand == DEV_APIC_SELF && m.mode == DEV_APIC_FIXED) {
		/* A fixed self-IPI never leaves the APIC. Other modes to
		 * oneself (SDM vol. 3, table 10-3 lists only fixed) go
		 * round the bus as KVM and QEMU deliver them: an NMI to
		 * oneself is taken. */
		accept_locked(l, m.vector, m.level);
		return;
	}
	if (m.mode != DEV_APIC_INIT)
		m.assert = true; /* only INIT has a de-assert form */
	a->send = true;
	a->msg = m;
}

static void eoi_locked(struct dev_lapic *l, struct after *a)
{
	/* SDM vol. 3, 10.8.5: the highest in-service vector is done; a
	 * level-triggered one is broadcast to the IOAPICs. */
	int isrv = highest(l->isr);

	if (isrv < 0)
		return;
	clear_bit(l->isr, (unsigned int)isrv);
	if (test_bit(l->tmr, (unsigned int)isrv))
		a->eoi = isrv;
}

/* Writes register off (16-aligned); false for a reserved offset. */
static bool write_locked(struct dev_lapic *l, uint32_t off, uint32_t v,
			 uint64_t now, struct after *a)
{
	if (is_lvt(off)) {
		write_lvt_locked(l, (off - LAPIC_LVT_TIMER) / 16, v);
		return true;
	}
	if (off >= LAPIC_ISR && off < LAPIC_IRR + 0x80)
		return true; /* read-only: ignored */
	switch (off) {
	case LAPIC_ID:
		l->id = v & 0xff000000u;
		return true;
	case LAPIC_VERSION:
	case LAPIC_APR:
	case LAPIC_PPR:
	case LAPIC_RRD:
	case LAPIC_TIMER_CCR:
		return true; /* read-only: ignored */
	case LAPIC_TPR:
		l->tpr = v & 0xff;
		return true;
	case LAPIC_EOI:
		/* The value written does not matter (xAPIC). */
		eoi_locked(l, a);
		return true;
	case LAPIC_LDR:
		l->ldr = v & 0xff000000u;
		return true;
	case LAPIC_DFR:
		l->dfr = v | 0x0fffffffu;
		return true;
	case LAPIC_SVR:
		/* Vector, APIC enable, focus checking (SDM vol. 3,
		 * figure 10-23); EOI-broadcast suppression is reserved
		 * (not in the version register). */
		l->svr = v & 0x3ff;
		if (!(l->svr & LAPIC_SVR_ENABLE))
			for (unsigned int i = 0; i < NR_LVT; i++)
				l->lvt[i] |= LAPIC_LVT_MASKED;
		return true;
	case LAPIC_ESR:
		/* SDM vol. 3, 10.5.3: a write latches the errors since the
		 * last write into the readable register. */
		l->esr = l->esr_pending;
		l->esr_pending = 0;
		return true;
	case LAPIC_ICR_LO:
		/* Bit 12, delivery status, reads 0: sent at once. */
		l->icr_lo = v & 0x000ccfffu;
		send_icr_locked(l, l->icr_lo, l->icr_hi >> 24, a);
		return true;
	case LAPIC_ICR_HI:
		l->icr_hi = v & 0xff000000u;
		return true;
	case LAPIC_TIMER_ICR:
		/* SDM vol. 3, 10.5.4.1: ignored in TSC-deadline mode. */
		if (is_tsc_deadline_locked(l))
			return true;
		l->tmict = v;
		timer_start_locked(l, now);
		return true;
	case LAPIC_TIMER_DCR:
		l->dcr = v & 0xb;
		return true;
	default:
		return false;
	}
}

uint32_t dev_lapic_mmio_read(struct dev_lapic *l, uint32_t offset,
			     unsigned int size, uint64_t now_ns)
{
	uint32_t v = 0;
	bool err = false;

	/* SDM vol. 3, 10.4.1: 32-bit accesses at 16-byte boundaries. */
	if (size != 4 || (offset & 0xf) || offset >= DEV_LAPIC_SIZE)
		return 0;
	pthread_mutex_lock(&l->lock);
	/* SDM vol. 3, 10.4.3, 10.12.1.2: a disabled APIC or one in x2APIC
	 * mode has no page (the VM does not route it here then). */
	if (!is_hw_enabled_locked(l) || is_x2apic_locked(l)) {
		v = 0;
	} else if (!read_locked(l, offset, now_ns, &v)) {
		v = 0;
		error_locked(l, LAPIC_ESR_ILLEGAL_REG);
		err = true;
	}
	pthread_mutex_unlock(&l->lock);
	if (err)
		notify(l); /* the error LVT entry may interrupt */
	return v;
}

void dev_lapic_mmio_write(struct dev_lapic *l, uint32_t offset,
			  unsigned int size, uint32_t value, uint64_t now_ns)
{
	struct after a = { .notify = true, .eoi = -1 };

	if (size != 4 || (offset & 0xf) || offset >= DEV_LAPIC_SIZE)
		return;
	pthread_mutex_lock(&l->lock);
	if (!is_hw_enabled_locked(l) || is_x2apic_locked(l))
		a.notify = false; /* no page: see dev_lapic_mmio_read() */
	else if (!write_locked(l, offset, value, now_ns, &a))
		error_locked(l, LAPIC_ESR_ILLEGAL_REG);
	pthread_mutex_unlock(&l->lock);
	/* TPR, EOI, SVR, a self-IPI or an error may make an interrupt
	 * deliverable. */
	run_after(l, &a);
}

/* ---- IA32_APIC_BASE and x2APIC ---------------------------------------- */

uint64_t dev_lapic_get_base(struct dev_lapic *l)
{
	uint64_t v;

	pthread_mutex_lock(&l->lock);
	v = l->base;
	pthread_mutex_unlock(&l->lock);
	return v;
}

uint64_t dev_lapic_get_cr8(struct dev_lapic *l)
{
	uint64_t v;

	pthread_mutex_lock(&l->lock);
	v = (l->tpr >> 4) & 0xf;
	pthread_mutex_unlock(&l->lock);
	return v;
}

void dev_lapic_set_cr8(struct dev_lapic *l, uint64_t v)
{
	pthread_mutex_lock(&l->lock);
	l->tpr = (uint32_t)(v & 0xf) << 4;
	pthread_mutex_unlock(&l->lock);
	notify(l); /* a lower priority may let an interrupt in */
}

int dev_lapic_set_base(struct dev_lapic *l, uint64_t value)
{
	bool en = value & MSR_IA32_APIC_BASE_EN,
	     extd = value & MSR_IA32_APIC_BASE_EXTD;
	bool was_en, was_x2;

	if (value & ~BASE_VALID)
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	was_en = is_hw_enabled_locked(l);
	was_x2 = is_x2apic_locked(l);
	/* SDM vol. 3, 10.12.5, figure 10-27: EXTD without EN is invalid;
	 * x2APIC may be left only for disabled, and entered only from
	 * xAPIC. */
	if ((extd && !en) || (was_x2 && en && !extd) ||
	    (!was_en && en && extd)) {
		pthread_mutex_unlock(&l->lock);
		return -EINVAL;
	}
	l->base = value;
	if (!en && was_en) {
		/* SDM vol. 3, 10.4.3: a disabled APIC comes back in its
		 * power-up state. */
		reset_regs_locked(l);
	} else if (extd && !was_x2) {
		/* SDM vol. 3, 10.12.5.1: xAPIC to x2APIC keeps the state
		 * but gives the ID and LDR their x2APIC form. */
		l->id = l->initial_id;
		l->ldr = ((l->initial_id >> 4) << 16) |
			 (1u << (l->initial_id & 0xf));
	} else if (en && !was_en) {
		reset_regs_locked(l);
	}
	pthread_mutex_unlock(&l->lock);
	notify(l);
	return 0;
}

bool dev_lapic_mmio_covers(struct dev_lapic *l, uint64_t gpa)
{
	bool hit;

	pthread_mutex_lock(&l->lock);
	/* SDM vol. 3, 10.12.1.2: in x2APIC mode the MMIO page is off. */
	hit = is_hw_enabled_locked(l) && !is_x2apic_locked(l) &&
	      (gpa & ~0xfffULL) == (l->base & ~0xfffULL);
	pthread_mutex_unlock(&l->lock);
	return hit;
}

bool dev_lapic_is_x2apic(struct dev_lapic *l)
{
	bool x2;

	pthread_mutex_lock(&l->lock);
	x2 = is_x2apic_locked(l);
	pthread_mutex_unlock(&l->lock);
	return x2;
}

/* x2APIC MSRs that are no register (SDM vol. 3, table 10-6): APR, RRD,
 * DFR, the ICR's high half, and the offsets xAPIC leaves reserved. */
static bool x2apic_exists(uint32_t off)
{
	switch (off) {
	case LAPIC_APR:
	case LAPIC_RRD:
	case LAPIC_DFR:
	case LAPIC_ICR_HI:
		return false;
	default:
		return true;
	}
}

int dev_lapic_msr_read(struct dev_lapic *l, uint32_t msr, uint64_t now_ns,
		       uint64_t *value)
{
	uint32_t off = (msr - LAPIC_X2APIC_MSR_BASE) << 4, v;
	int r = 0;

	if (msr < LAPIC_X2APIC_MSR_BASE || msr > LAPIC_X2APIC_MSR_LAST)
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	if (!is_x2apic_locked(l) || !x2apic_exists(off) || off == LAPIC_EOI ||
	    msr == LAPIC_X2APIC_SELF_IPI) {
		r = -EINVAL; /* write-only, or no register */
	} else if (off == LAPIC_ICR_LO) {
		*value = ((uint64_t)l->icr_hi << 32) | l->icr_lo;
	} else if (read_locked(l, off, now_ns, &v)) {
		*value = v;
	} else {
		r = -EINVAL;
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

int dev_lapic_msr_write(struct dev_lapic *l, uint32_t msr, uint64_t value,
			uint64_t now_ns)
{
	uint32_t off = (msr - LAPIC_X2APIC_MSR_BASE) << 4;
	struct after a = { .notify = true, .eoi = -1 };
	int r = 0;

	if (msr < LAPIC_X2APIC_MSR_BASE || msr > LAPIC_X2APIC_MSR_LAST)
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	if (!is_x2apic_locked(l) || !x2apic_exists(off)) {
		r = -EINVAL;
		goto out;
	}
	if (off == LAPIC_ICR_LO) {
		/* One 64-bit register: destination in 63:32; bits 12,
		 * 16-17 and 20-31 reserved (SDM vol. 3, figure 10-28). */
		if (value & 0xfff33000ULL) {
			r = -EINVAL;
			goto out;
		}
		l->icr_lo = (uint32_t)value;
		l->icr_hi = (uint32_t)(value >> 32);
		send_icr_locked(l, l->icr_lo, l->icr_hi, &a);
		goto out;
	}
	if (value >> 32) {
		r = -EINVAL;
		goto out;
	}
	if (msr == LAPIC_X2APIC_SELF_IPI) {
		/* SDM vol. 3, 10.12.11: a fixed, edge IPI to oneself;
		 * bits 31:8 are reserved. */
		if (value & ~0xffULL) {
			r = -EINVAL;
			goto out;
		}
		if (value < 16)
			error_locked(l, LAPIC_ESR_SEND_ILLEGAL);
		else
			accept_locked(l, (unsigned int)value, false);
		goto out;
	}
	switch (off) {
	case LAPIC_ID:
	case LAPIC_VERSION:
	case LAPIC_PPR:
	case LAPIC_LDR:
	case LAPIC_TIMER_CCR:
		r = -EINVAL; /* read-only */
		goto out;
	case LAPIC_EOI:
	case LAPIC_ESR:
		/* SDM vol. 3, 10.12.1.2: a nonzero write is #GP. */
		if (value) {
			r = -EINVAL;
			goto out;
		}
		break;
	case LAPIC_SVR:
		if (value & ~0x13ffULL) {
			r = -EINVAL;
			goto out;
		}
		break;
	default:
		if (off >= LAPIC_ISR && off < LAPIC_IRR + 0x80) {
			r = -EINVAL; /* read-only */
			goto out;
		}
		break;
	}
	if (!write_locked(l, off, (uint32_t)value, now_ns, &a))
		r = -EINVAL;
out:
	pthread_mutex_unlock(&l->lock);
	if (r == 0)
		run_after(l, &a);
	return r;
}

/* ---- the bus ------------------------------------------------------------ */

static bool is_destination(struct dev_lapic *const *apics, unsigned int i,
			   int src, const struct dev_apic_msg *m)
{
	struct dev_lapic *l = apics[i];
	bool hit;

	switch (m->shorthand) {
	case DEV_APIC_SELF:
		return (int)i == src;
	case DEV_APIC_ALL:
		hit = true;
		break;
	case DEV_APIC_ALL_BUT_SELF:
		hit = (int)i != src;
		break;
	default:
		pthread_mutex_lock(&l->lock);
		hit = match_locked(l, m->dest, m->logical, m->x2apic);
		pthread_mutex_unlock(&l->lock);
		return hit;
	}
	if (hit) {
		pthread_mutex_lock(&l->lock);
		hit = is_hw_enabled_locked(l);
		pthread_mutex_unlock(&l->lock);
	}
	return hit;
}

static void deliver_one(struct dev_lapic *l, const struct dev_apic_msg *m)
{
	bool sipi = false;

	switch (m->mode) {
	case DEV_APIC_FIXED:
	case DEV_APIC_LOWEST:
		dev_lapic_accept(l, m->vector, m->level);
		return;
	case DEV_APIC_NMI:
		if (l->bus && l->bus->nmi)
			l->bus->nmi(l->bus_ctx);
		return;
	case DEV_APIC_INIT:
		/* SDM vol. 3, 10.6.1: the level de-assert form only syncs
		 * arbitration IDs. */
		if (m->level && !m->assert)
			return;
		/* SDM vol. 3, 10.4.7.3: INIT resets the APIC's registers
		 * but its ID and IA32_APIC_BASE; the CPU waits for a
		 * SIPI (8.4.1). */
		pthread_mutex_lock(&l->lock);
		reset_regs_locked(l);
		l->wait_for_sipi = true;
		l->sipis = 0;
		l->sipi_vector = -1;
		pthread_mutex_unlock(&l->lock);
		if (l->bus && l->bus->init)
			l->bus->init(l->bus_ctx);
		return;
	case DEV_APIC_SIPI:
		/* Only a CPU waiting for one takes a SIPI (SDM vol. 3,
		 * 8.4.3); others ignore it. */
		pthread_mutex_lock(&l->lock);
		if (l->wait_for_sipi) {
			l->sipis++;
			l->sipi_vector = m->vector;
			sipi = true;
		}
		pthread_mutex_unlock(&l->lock);
		if (sipi && l->bus && l->bus->sipi)
			l->bus->sipi(l->bus_ctx, m->vector);
		return;
	default:
		/* SMI, ExtINT and the reserved modes: nothing here
		 * takes them. */
		return;
	}
}

void dev_apic_deliver(struct dev_lapic *const *apics, unsigned int n, int src,
		      const struct dev_apic_msg *m)
{
	if (m->mode == DEV_APIC_LOWEST && m->shorthand == DEV_APIC_DEST_FIELD) {
		/* One destination: the lowest PPR, then the lowest ID
		 * (SDM vol. 3, 10.6.2.4 leaves the choice to the
		 * platform). */
		int best = -1;
		uint32_t best_ppr = 0;

		for (unsigned int i = 0; i < n; i++) {
			uint32_t ppr;

			if (!apics[i] || !is_destination(apics, i, src, m))
				continue;
			pthread_mutex_lock(&apics[i]->lock);
			ppr = ppr_locked(apics[i]) & 0xf0;
			if (!(apics[i]->svr & LAPIC_SVR_ENABLE))
				ppr = 0x100; /* last resort */
			pthread_mutex_unlock(&apics[i]->lock);
			if (best < 0 || ppr < best_ppr) {
				best = (int)i;
				best_ppr = ppr;
			}
		}
		if (best >= 0)
			deliver_one(apics[best], m);
		return;
	}
	for (unsigned int i = 0; i < n; i++)
		if (apics[i] && is_destination(apics, i, src, m))
			deliver_one(apics[i], m);
}

void dev_lapic_state(struct dev_lapic *l, uint64_t now_ns,
		     struct dev_lapic_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&l->lock);
	st->base = l->base;
	st->id = l->id;
	st->version = LAPIC_VERSION_VALUE;
	st->tpr = l->tpr;
	st->ppr = ppr_locked(l);
	st->ldr = l->ldr;
	st->dfr = l->dfr;
	st->svr = l->svr;
	st->esr = l->esr;
	st->icr_lo = l->icr_lo;
	st->icr_hi = l->icr_hi;
	memcpy(st->lvt, l->lvt, sizeof(st->lvt));
	memcpy(st->irr, l->irr, sizeof(st->irr));
	memcpy(st->isr, l->isr, sizeof(st->isr));
	memcpy(st->tmr, l->tmr, sizeof(st->tmr));
	st->timer_initial = l->tmict;
	st->timer_current = timer_current_locked(l, now_ns);
	st->timer_divide = l->dcr;
	st->tsc_deadline = l->tsc_deadline;
	st->timer_deadline_ns = l->deadline;
	st->x2apic = is_x2apic_locked(l);
	st->wait_for_sipi = l->wait_for_sipi;
	st->sipis = l->sipis;
	st->sipi_vector = l->sipi_vector;
	pthread_mutex_unlock(&l->lock);
}

/* ---- migration ---------------------------------------------------------- */

void dev_lapic_save(struct dev_lapic *l, uint64_t now_ns,
		    struct dev_lapic_saved *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&l->lock);
	st->base = l->base;
	st->id = l->id;
	st->tpr = l->tpr;
	st->ldr = l->ldr;
	st->dfr = l->dfr;
	st->svr = l->svr;
	st->esr = l->esr;
	st->esr_pending = l->esr_pending;
	st->icr_lo = l->icr_lo;
	st->icr_hi = l->icr_hi;
	memcpy(st->lvt, l->lvt, sizeof(st->lvt));
	memcpy(st->irr, l->irr, sizeof(st->irr));
	memcpy(st->isr, l->isr, sizeof(st->isr));
	memcpy(st->tmr, l->tmr, sizeof(st->tmr));
	st->timer_initial = l->tmict;
	st->timer_divide = l->dcr;
	st->timer_armed = l->deadline != 0;
	st->timer_remaining_ns = l->deadline > now_ns ? l->deadline - now_ns :
							0;
	st->tsc_deadline = l->tsc_deadline;
	st->wait_for_sipi = l->wait_for_sipi;
	st->sipis = l->sipis;
	st->sipi_vector = l->sipi_vector;
	pthread_mutex_unlock(&l->lock);
}

static bool refuse(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool refuse(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return false;
}

static bool check_saved(const struct dev_lapic *l,
			const struct dev_lapic_saved *st, char *err,
			size_t errlen)
{
	bool x2 = st->base & MSR_IA32_APIC_BASE_EXTD;
	uint32_t mode = st->lvt[LVT_TIMER] & LAPIC_LVT_TIMER_MODE;
	uint64_t period;

	if ((st->base & ~BASE_VALID) ||
	    (x2 && !(st->base & MSR_IA32_APIC_BASE_EN)))
		return refuse(err, errlen, "lapic base %#llx is invalid",
			      (unsigned long long)st->base);
	if (x2 ? st->id != l->initial_id : (st->id & 0x00ffffffu) != 0)
		return refuse(err, errlen, "lapic id %#x is invalid", st->id);
	if (x2 ? st->ldr != (((l->initial_id >> 4) << 16) |
			     (1u << (l->initial_id & 0xf))) :
		 (st->ldr & 0x00ffffffu) != 0)
		return refuse(err, errlen, "lapic ldr %#x is invalid", st->ldr);
	if ((st->dfr & 0x0fffffffu) != 0x0fffffffu ||
	    ((st->dfr >> 28) != 0 && (st->dfr >> 28) != 0xf))
		return refuse(err, errlen, "lapic dfr %#x is invalid", st->dfr);
	if (st->tpr & ~0xffu)
		return refuse(err, errlen, "lapic tpr %#x sets a reserved bit",
			      st->tpr);
	if (st->svr & ~0x3ffu)
		return refuse(err, errlen, "lapic svr %#x sets a reserved bit",
			      st->svr);
	if ((st->esr | st->esr_pending) &
	    ~(LAPIC_ESR_SEND_ILLEGAL | LAPIC_ESR_RECV_ILLEGAL |
	      LAPIC_ESR_ILLEGAL_REG))
		return refuse(err, errlen, "lapic esr %#x/%#x is invalid",
			      st->esr, st->esr_pending);
	if ((st->icr_lo & ~0x000ccfffu) || (!x2 && (st->icr_hi & 0x00ffffffu)))
		return refuse(err, errlen, "lapic icr %#x:%#x is invalid",
			      st->icr_hi, st->icr_lo);
	for (unsigned int i = 0; i < NR_LVT; i++) {
		if (st->lvt[i] & ~lvt_writable[i])
			return refuse(err, errlen,
				      "lapic lvt %u (%#x) sets a reserved bit",
				      i, st->lvt[i]);
		if (!(st->svr & LAPIC_SVR_ENABLE) &&
		    !(st->lvt[i] & LAPIC_LVT_MASKED))
			return refuse(err, errlen,
				      "lapic lvt %u is unmasked while the APIC "
				      "is software disabled",
				      i);
	}
	if ((st->irr[0] | st->isr[0] | st->tmr[0]) & 0xffffu)
		return refuse(err, errlen,
			      "lapic irr/isr/tmr hold a vector below 16");
	if (st->timer_divide & ~0xbu)
		return refuse(err, errlen, "lapic timer divide %#x is invalid",
			      st->timer_divide);
	if (mode == LAPIC_LVT_TSC_DEADLINE) {
		if (st->timer_initial || st->timer_armed != !!st->tsc_deadline)
			return refuse(err, errlen,
				      "lapic TSC-deadline timer state is "
				      "inconsistent");
	} else {
		period = (uint64_t)st->timer_initial *
			 divisor_of(st->timer_divide) * NS_PER_TICK;
		if (st->tsc_deadline || (st->timer_armed && !period) ||
		    (st->timer_armed && st->timer_remaining_ns > period))
			return refuse(err, errlen,
				      "lapic timer state is inconsistent");
	}
	if (st->sipi_vector < -1 || st->sipi_vector > 255 ||
	    (!st->wait_for_sipi && (st->sipis || st->sipi_vector >= 0)))
		return refuse(err, errlen, "lapic SIPI record is invalid");
	return true;
}

bool dev_lapic_load(struct dev_lapic *l, const struct dev_lapic_saved *st,
		    uint64_t now_ns, char *err, size_t errlen)
{
	if (!check_saved(l, st, err, errlen))
		return false;
	pthread_mutex_lock(&l->lock);
	l->base = st->base;
	l->id = st->id;
	l->tpr = st->tpr;
	l->ldr = st->ldr;
	l->dfr = st->dfr;
	l->svr = st->svr;
	l->esr = st->esr;
	l->esr_pending = st->esr_pending;
	l->icr_lo = st->icr_lo;
	l->icr_hi = st->icr_hi;
	memcpy(l->lvt, st->lvt, sizeof(l->lvt));
	memcpy(l->irr, st->irr, sizeof(l->irr));
	memcpy(l->isr, st->isr, sizeof(l->isr));
	memcpy(l->tmr, st->tmr, sizeof(l->tmr));
	l->tmict = st->timer_initial;
	l->dcr = st->timer_divide;
	l->tsc_deadline = st->tsc_deadline;
	l->period = (uint64_t)l->tmict * divisor(l) * NS_PER_TICK;
	/* The next event where the source had it, from now; a periodic
	 * timer's start one period before (advance() counts from it). The
	 * TSC-deadline timer checks the TSC itself when it comes. */
	l->deadline = st->timer_armed ? now_ns + st->timer_remaining_ns : 0;
	if (l->deadline == 0 && st->timer_armed)
		l->deadline = 1;
	l->start = l->deadline > l->period ? l->deadline - l->period : 0;
	l->wait_for_sipi = st->wait_for_sipi;
	l->sipis = st->sipis;
	l->sipi_vector = st->sipi_vector;
	pthread_mutex_unlock(&l->lock);
	return true;
}
