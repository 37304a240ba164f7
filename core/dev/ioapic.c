/*
 * The I/O APIC (version 20H, 24 pins): the indirect register window, the
 * redirection table, pin levels with their edge and level semantics,
 * remote IRR, and EOI both from the EOI register and from the local
 * APICs' broadcast. The messages it sends go through the deliver
 * callback; what a message does at the local APICs is the VM's business
 * (core/vm.c), and which device drives which pin too.
 *
 * All state is under io->lock, a leaf (docs/locking.md, "`ioapic->lock`
 * (pthread mutex, one per I/O APIC)"): messages are collected under it
 * and sent after it is released, so that a local APIC that answers a
 * delivery with an EOI on the same thread cannot deadlock here.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "ioapic.h"

/* Legend: (c) constant after creation; everything else under lock. */
struct dev_ioapic {
	pthread_mutex_t lock;
	dev_ioapic_deliver_fn deliver; /* (c) */
	void *ctx; /* (c) */
	uint8_t id; /* bits 27:24 of the ID register */
	uint8_t arb; /* the arbitration ID, loaded from the ID */
	uint8_t ioregsel;
	uint32_t levels; /* bit n: input pin n is electrically high */
	uint64_t redir[DEV_IOAPIC_PINS];
};

/* Messages collected under the lock, sent after it. A pin sends at most
 * once per operation. */
struct outbox {
	unsigned int n;
	struct dev_ioapic_msg msg[DEV_IOAPIC_PINS];
};

static void reset_locked(struct dev_ioapic *io)
{
	io->id = io->arb = 0;
	io->ioregsel = 0;
	for (unsigned int i = 0; i < DEV_IOAPIC_PINS; i++)
		io->redir[i] = IOAPIC_RTE_MASK;
}

struct dev_ioapic *dev_ioapic_create(dev_ioapic_deliver_fn deliver, void *ctx)
{
	struct dev_ioapic *io = calloc(1, sizeof(*io));

	if (!io)
		return NULL;
	pthread_mutex_init(&io->lock, NULL);
	io->deliver = deliver;
	io->ctx = ctx;
	reset_locked(io);
	return io;
}

void dev_ioapic_destroy(struct dev_ioapic *io)
{
	if (!io)
		return;
	pthread_mutex_destroy(&io->lock);
	free(io);
}

void dev_ioapic_reset(struct dev_ioapic *io)
{
	pthread_mutex_lock(&io->lock);
	reset_locked(io);
	pthread_mutex_unlock(&io->lock);
}

static void send(struct dev_ioapic *io, const struct outbox *box)
{
	for (unsigned int i = 0; i < box->n; i++)
		if (io->deliver)
			io->deliver(io->ctx, &box->msg[i]);
}

/* ---- pins -------------------------------------------------------------- */

static unsigned int delivery_mode(uint64_t e)
{
	return (unsigned int)((e & IOAPIC_RTE_DELMODE) >>
			      IOAPIC_RTE_DELMODE_SHIFT);
}

/* Level semantics apply to fixed and lowest-priority entries only: the
 * datasheet makes SMI, NMI, INIT and ExtINT edge whatever bit 15 says. */
static bool is_level(uint64_t e)
{
	unsigned int dm = delivery_mode(e);

	return (e & IOAPIC_RTE_LEVEL) &&
	       (dm == IOAPIC_DM_FIXED || dm == IOAPIC_DM_LOWEST);
}

static bool is_asserted(const struct dev_ioapic *io, unsigned int pin)
{
	bool high = io->levels & (1u << pin);

	return high != !!(io->redir[pin] & IOAPIC_RTE_POLARITY);
}

static void queue_locked(struct dev_ioapic *io, unsigned int pin,
			 struct outbox *box)
{
	uint64_t e = io->redir[pin];
	struct dev_ioapic_msg *m;

	MMUD_ASSERT(box->n < DEV_IOAPIC_PINS);
	m = &box->msg[box->n++];

	m->vector = (uint8_t)(e & IOAPIC_RTE_VECTOR);
	m->delivery_mode = (uint8_t)delivery_mode(e);
	m->dest = (uint8_t)(e >> IOAPIC_RTE_DEST_SHIFT);
	m->logical = e & IOAPIC_RTE_DESTMODE;
	m->level = is_level(e);
	m->pin = (uint8_t)pin;
}

/* A level-triggered pin sends while asserted, unmasked and not waiting
 * for its EOI; sending sets remote IRR until the EOI. */
static void service_level_locked(struct dev_ioapic *io, unsigned int pin,
				 struct outbox *box)
{
	uint64_t e = io->redir[pin];

	if (!is_level(e) || (e & (IOAPIC_RTE_MASK | IOAPIC_RTE_REMOTE_IRR)) ||
	    !is_asserted(io, pin))
		return;
	io->redir[pin] |= IOAPIC_RTE_REMOTE_IRR;
	queue_locked(io, pin, box);
}

void dev_ioapic_set_irq(struct dev_ioapic *io, unsigned int pin, bool level)
{
	struct outbox box = { 0 };
	bool was;

	if (pin >= DEV_IOAPIC_PINS)
		return;
	pthread_mutex_lock(&io->lock);
	was = is_asserted(io, pin);
	if (level)
		io->levels |= 1u << pin;
	else
		io->levels &= ~(1u << pin);
	if (is_level(io->redir[pin]))
		service_level_locked(io, pin, &box);
	else if (!was && is_asserted(io, pin) &&
		 !(io->redir[pin] & IOAPIC_RTE_MASK))
		queue_locked(io, pin, &box);
	pthread_mutex_unlock(&io->lock);
	send(io, &box);
}

static void eoi_locked(struct dev_ioapic *io, uint8_t vector,
		       struct outbox *box)
{
	for (unsigned int pin = 0; pin < DEV_IOAPIC_PINS; pin++) {
		if ((io->redir[pin] & IOAPIC_RTE_VECTOR) != vector ||
		    !(io->redir[pin] & IOAPIC_RTE_REMOTE_IRR))
			continue;
		io->redir[pin] &= ~IOAPIC_RTE_REMOTE_IRR;
		service_level_locked(io, pin, box);
	}
}

void dev_ioapic_eoi(struct dev_ioapic *io, uint8_t vector)
{
	struct outbox box = { 0 };

	pthread_mutex_lock(&io->lock);
	eoi_locked(io, vector, &box);
	pthread_mutex_unlock(&io->lock);
	send(io, &box);
}

/* ---- registers --------------------------------------------------------- */

/* The register IOREGSEL selects; an index that names none reads 0. */
static uint32_t reg_read_locked(const struct dev_ioapic *io)
{
	unsigned int idx = io->ioregsel;

	switch (idx) {
	case IOAPIC_REG_ID:
		return (uint32_t)io->id << 24;
	case IOAPIC_REG_VERSION:
		return IOAPIC_VERSION_VALUE;
	case IOAPIC_REG_ARB:
		return (uint32_t)io->arb << 24;
	}
	if (idx < IOAPIC_REG_REDIR ||
	    idx >= IOAPIC_REG_REDIR + 2 * DEV_IOAPIC_PINS)
		return 0;
	idx -= IOAPIC_REG_REDIR;
	return (uint32_t)(io->redir[idx / 2] >> (idx & 1 ? 32 : 0));
}

/* Writes the selected register; an index that names none, and the
 * read-only version and arbitration registers, ignore it. */
static void reg_write_locked(struct dev_ioapic *io, uint32_t v,
			     struct outbox *box)
{
	unsigned int idx = io->ioregsel, pin;
	uint64_t e, half;

	if (idx == IOAPIC_REG_ID) {
		/* The arbitration ID follows each write of the ID
		 * (82093AA datasheet, 3.2.3). */
		io->id = io->arb = (v >> 24) & 0xf;
		return;
	}
	if (idx < IOAPIC_REG_REDIR ||
	    idx >= IOAPIC_REG_REDIR + 2 * DEV_IOAPIC_PINS)
		return;
	idx -= IOAPIC_REG_REDIR;
	pin = idx / 2;
	half = idx & 1 ? 0xffffffff00000000ULL : 0x00000000ffffffffULL;
	e = io->redir[pin];
	e &= ~(half & IOAPIC_RTE_WRITABLE);
	e |= ((uint64_t)v << (idx & 1 ? 32 : 0)) & half & IOAPIC_RTE_WRITABLE;
	/* Remote IRR means nothing for an edge entry: an entry switched to
	 * edge forgets it, so a later switch back to level is not stuck
	 * waiting for an EOI that will never come (as KVM does). */
	if (!is_level(e))
		e &= ~IOAPIC_RTE_REMOTE_IRR;
	io->redir[pin] = e;
	/* Unmasking an asserted level pin sends at once. */
	service_level_locked(io, pin, box);
}

/* The bytes of the access [offset, offset + size) that fall in the
 * 32-bit register at reg: their value in the register's lanes and their
 * mask. */
static uint32_t lanes(uint32_t offset, unsigned int size, uint64_t value,
		      uint32_t reg, uint32_t *mask)
{
	uint32_t v = 0;

	*mask = 0;
	for (unsigned int i = 0; i < size; i++) {
		uint32_t off = offset + i;

		if (off < reg || off >= reg + 4)
			continue;
		v |= (uint32_t)((value >> (8 * i)) & 0xff) << (8 * (off - reg));
		*mask |= 0xffu << (8 * (off - reg));
	}
	return v;
}

static bool is_valid_access(uint32_t offset, unsigned int size)
{
	return (size == 1 || size == 2 || size == 4 || size == 8) &&
	       offset < DEV_IOAPIC_SIZE && size <= DEV_IOAPIC_SIZE - offset;
}

uint64_t dev_ioapic_mmio_read(struct dev_ioapic *io, uint32_t offset,
			      unsigned int size)
{
	uint64_t v = 0;
	uint32_t win;

	if (!is_valid_access(offset, size))
		return 0;
	pthread_mutex_lock(&io->lock);
	win = reg_read_locked(io);
	for (unsigned int i = 0; i < size; i++) {
		uint32_t off = offset + i, r;

		if ((off & ~3u) == IOAPIC_IOREGSEL)
			r = io->ioregsel;
		else if ((off & ~3u) == IOAPIC_IOWIN)
			r = win;
		else
			r = 0; /* EOI is write-only; the rest is unused */
		v |= (uint64_t)((r >> (8 * (off & 3))) & 0xff) << (8 * i);
	}
	pthread_mutex_unlock(&io->lock);
	return v;
}

void dev_ioapic_mmio_write(struct dev_ioapic *io, uint32_t offset,
			   unsigned int size, uint64_t value)
{
	struct outbox box = { 0 };
	uint32_t v, mask;

	if (!is_valid_access(offset, size))
		return;
	pthread_mutex_lock(&io->lock);
	v = lanes(offset, size, value, IOAPIC_IOREGSEL, &mask);
	if (mask & 0xff)
		io->ioregsel = (uint8_t)v;
	v = lanes(offset, size, value, IOAPIC_IOWIN, &mask);
	if (mask)
		reg_write_locked(io, (reg_read_locked(io) & ~mask) | (v & mask),
				 &box);
	v = lanes(offset, size, value, IOAPIC_EOI, &mask);
	if (mask & 0xff)
		eoi_locked(io, (uint8_t)v, &box);
	pthread_mutex_unlock(&io->lock);
	send(io, &box);
}

bool dev_ioapic_is_masked(struct dev_ioapic *io, unsigned int pin)
{
	bool masked;

	if (pin >= DEV_IOAPIC_PINS)
		return true;
	pthread_mutex_lock(&io->lock);
	masked = io->redir[pin] & IOAPIC_RTE_MASK;
	pthread_mutex_unlock(&io->lock);
	return masked;
}

void dev_ioapic_save(struct dev_ioapic *io, struct dev_ioapic_state *st)
{
	pthread_mutex_lock(&io->lock);
	st->id = io->id;
	st->arb = io->arb;
	st->ioregsel = io->ioregsel;
	st->pin_levels = io->levels;
	memcpy(st->redir, io->redir, sizeof(st->redir));
	pthread_mutex_unlock(&io->lock);
}

bool dev_ioapic_load(struct dev_ioapic *io, const struct dev_ioapic_state *st,
		     char *err, size_t errlen)
{
	if (st->id > 15 || st->arb != st->id) {
		snprintf(err, errlen, "IOAPIC %s out of range",
			 st->id > 15 ? "id" : "arbitration id");
		return false;
	}
	if (st->pin_levels >> DEV_IOAPIC_PINS) {
		snprintf(err, errlen, "IOAPIC pin levels beyond pin %u",
			 DEV_IOAPIC_PINS - 1);
		return false;
	}
	for (unsigned int i = 0; i < DEV_IOAPIC_PINS; i++) {
		uint64_t e = st->redir[i];

		if (e & ~(IOAPIC_RTE_WRITABLE | IOAPIC_RTE_REMOTE_IRR)) {
			snprintf(err, errlen,
				 "IOAPIC entry %u: reserved bits set", i);
			return false;
		}
		if ((e & IOAPIC_RTE_REMOTE_IRR) && !is_level(e)) {
			snprintf(err, errlen,
				 "IOAPIC entry %u: remote IRR on an edge entry",
				 i);
			return false;
		}
	}
	pthread_mutex_lock(&io->lock);
	io->id = st->id;
	io->arb = st->arb;
	io->ioregsel = st->ioregsel;
	io->levels = st->pin_levels;
	memcpy(io->redir, st->redir, sizeof(io->redir));
	pthread_mutex_unlock(&io->lock);
	return true;
}
