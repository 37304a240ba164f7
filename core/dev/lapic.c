/*
 * The local APIC in xAPIC mode (SDM vol. 3, chapter 10): registers,
 * interrupt acceptance and priorities (IRR, ISR, TMR, TPR, PPR, EOI),
 * software disable, the error register and the timer's one-shot and
 * periodic modes on host time. lapic.h says what is not here yet.
 *
 * All state is under l->lock, a leaf (docs/locking.md, "`lapic->lock`
 * (pthread mutex, one per local APIC model)"): the vCPU's thread takes
 * it for MMIO and to take an interrupt, other threads to make one
 * pending. notify is called after the lock is dropped.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lapic.h"

/* The LVT entries in register order: 0x320 + 0x10 i. */
enum { LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR };
#define NR_LVT 6

/* Legend: (c) constant after creation; everything else under lock. */
struct dev_lapic {
	pthread_mutex_t lock;
	dev_lapic_notify_fn notify; /* (c) */
	void *ctx; /* (c) */
	unsigned int initial_id; /* (c) */
	uint32_t id, tpr, ldr, dfr, svr;
	uint32_t esr; /* what the last ESR write latched */
	uint32_t esr_pending; /* errors since then */
	uint32_t icr_lo, icr_hi;
	uint32_t lvt[NR_LVT];
	uint32_t irr[8], isr[8], tmr[8];
	uint32_t tmict, dcr;
	/* Timer: armed while deadline != 0; a periodic timer fires at
	 * start + k period. Host nanoseconds. */
	uint64_t start, deadline, period;
};

/*
 * Writable bits of each LVT entry (SDM vol. 3, figure 10-8): vector,
 * delivery mode, polarity, trigger mode, mask, timer mode. Delivery
 * status and remote IRR are read-only (always 0 here: delivery is
 * immediate). The timer's mode is one-shot or periodic: TSC-deadline
 * (bit 18) is not reported by CPUID, so it is reserved.
 */
static const uint32_t lvt_writable[NR_LVT] = {
	[LVT_TIMER] = 0x300ff, [LVT_THERMAL] = 0x107ff, [LVT_PERF] = 0x107ff,
	[LVT_LINT0] = 0x1a7ff, [LVT_LINT1] = 0x1a7ff,	[LVT_ERROR] = 0x100ff,
};

/* Version 14H (an integrated APIC), 6 LVT entries (max LVT entry 5),
 * no EOI-broadcast suppression (SDM vol. 3, 10.4.8). */
#define LAPIC_VERSION_VALUE 0x50014u

static void reset_locked(struct dev_lapic *l)
{
	/* SDM vol. 3, 10.4.7.1: after RESET. */
	l->id = l->initial_id << 24;
	l->tpr = 0;
	l->ldr = 0;
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

/* ---- priorities -------------------------------------------------------- */

static int highest(const uint32_t r[8])
{
	for (int i = 7; i >= 0; i--)
		if (r[i])
			return i * 32 + 31 - __builtin_clz(r[i]);
	return -1;
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

	/* Only a class above the processor priority is dispensed. */
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
	if (vector < 16) {
		/* SDM vol. 3, 10.5.2: vectors 0-15 are illegal. */
		error_locked(l, LAPIC_ESR_RECV_ILLEGAL);
		return false;
	}
	/* SDM vol. 3, 10.4.7.2: a software-disabled APIC takes no fixed
	 * interrupts. */
	if (!(l->svr & LAPIC_SVR_ENABLE))
		return false;
	was = (l->irr[vector / 32] >> (vector % 32)) & 1;
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

bool dev_lapic_match(struct dev_lapic *l, uint8_t dest, bool logical)
{
	uint8_t ldr;
	bool hit;

	if (dest == 0xff)
		return true; /* broadcast, in either mode */
	pthread_mutex_lock(&l->lock);
	ldr = (uint8_t)(l->ldr >> 24);
	if (!logical)
		hit = dest == (uint8_t)(l->id >> 24);
	else if ((l->dfr >> 28) == 0xf) /* flat model */
		hit = (dest & ldr) != 0;
	else /* cluster model (DFR 0000b) */
		hit = (dest >> 4) == (ldr >> 4) && (dest & ldr & 0xf) != 0;
	pthread_mutex_unlock(&l->lock);
	return hit;
}

/* ---- the timer ----------------------------------------------------------- */

/* SDM vol. 3, figure 10-10: DCR bits 0, 1 and 3 encode divide by 2, 4,
 * ... 128, and 111b divide by 1. */
static uint64_t divisor(const struct dev_lapic *l)
{
	unsigned int v = (l->dcr & 3) | ((l->dcr >> 1) & 4);

	return 1ULL << ((v + 1) & 7);
}

#define NS_PER_TICK (1000000000ULL / DEV_LAPIC_TIMER_HZ)

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

	if (!l->deadline)
		return 0;
	if (l->lvt[LVT_TIMER] & LAPIC_LVT_PERIODIC) {
		uint64_t into = now > l->start ? (now - l->start) % l->period :
						 0;

		return (uint32_t)((l->period - into) / tick);
	}
	return now >= l->deadline ? 0 : (uint32_t)((l->deadline - now) / tick);
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
		fired = true;
		lvt = l->lvt[LVT_TIMER];
		/* The mask stops the interrupt, not the count. */
		if (!(lvt & LAPIC_LVT_MASKED))
			accept_locked(l, lvt & 0xff, false);
		if (lvt & LAPIC_LVT_PERIODIC) {
			uint64_t k = (now_ns - l->start) / l->period + 1;

			l->deadline = l->start + k * l->period;
		} else {
			l->deadline = 0;
		}
	}
	pthread_mutex_unlock(&l->lock);
	if (fired)
		notify(l);
	return fired;
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
	v &= lvt_writable[i];
	/* SDM vol. 3, 10.4.7.2: while software disabled, every LVT
	 * entry stays masked. */
	if (!(l->svr & LAPIC_SVR_ENABLE))
		v |= LAPIC_LVT_MASKED;
	l->lvt[i] = v;
}

/* Writes register off (16-aligned); false for a reserved offset. */
static bool write_locked(struct dev_lapic *l, uint32_t off, uint32_t v,
			 uint64_t now)
{
	int isrv;

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
		/* SDM vol. 3, 10.8.5: the highest in-service vector is
		 * done (the value written does not matter). */
		isrv = highest(l->isr);
		if (isrv >= 0)
			clear_bit(l->isr, (unsigned int)isrv);
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
		l->icr_lo = v &
			    0x000ccfffu; /* bit 12, delivery status, reads 0 */
		/* Fixed delivery (mode 000) of an illegal vector. */
		if (!(v & 0x700) && (v & 0xff) < 16)
			error_locked(l, LAPIC_ESR_SEND_ILLEGAL);
		else if (!(v & 0x700) && ((v >> 18) & 3) == 1)
			accept_locked(l, v & 0xff, (v >> 15) & 1); /* self */
		return true;
	case LAPIC_ICR_HI:
		l->icr_hi = v & 0xff000000u;
		return true;
	case LAPIC_TIMER_ICR:
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

	/* SDM vol. 3, 10.4.1: 32-bit accesses at 16-byte boundaries. */
	if (size != 4 || (offset & 0xf) || offset >= DEV_LAPIC_SIZE)
		return 0;
	pthread_mutex_lock(&l->lock);
	if (!read_locked(l, offset, now_ns, &v)) {
		v = 0;
		error_locked(l, LAPIC_ESR_ILLEGAL_REG);
	}
	pthread_mutex_unlock(&l->lock);
	return v;
}

void dev_lapic_mmio_write(struct dev_lapic *l, uint32_t offset,
			  unsigned int size, uint32_t value, uint64_t now_ns)
{
	if (size != 4 || (offset & 0xf) || offset >= DEV_LAPIC_SIZE)
		return;
	pthread_mutex_lock(&l->lock);
	if (!write_locked(l, offset, value, now_ns))
		error_locked(l, LAPIC_ESR_ILLEGAL_REG);
	pthread_mutex_unlock(&l->lock);
	/* TPR, EOI, SVR, a self-IPI or an error may make an interrupt
	 * deliverable. */
	notify(l);
}
