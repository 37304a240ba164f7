/*
 * COM1, the 8250/16550 UART of guest ABI v1 and platform v2
 * (docs/GUEST-ABI.md, "COM1"): the transmit path, the register file a
 * driver's probe and set-up read back, the receive queue and the
 * 16550's interrupts. Transmission is immediate, so LSR always reports
 * the holding register and transmitter empty. Input arrives from the
 * host side (dev_serial_receive) into a receive queue of
 * DEV_SERIAL_RX_SIZE bytes, which stands in for the receive FIFO (and
 * for RBR with the FIFOs off): LSR.DR is set while it holds a byte and
 * each read of RBR takes one (0 when empty). Nothing overruns (the host
 * side keeps what does not fit), so LSR never reports an error.
 *
 * Interrupts as the 16550 raises them: IIR names the highest-priority
 * condition that IER enables (line status, then received data or a
 * character timeout, then THR empty, then modem status), and the
 * interrupt line is high while there is one. LSR and MSR report their
 * conditions whether enabled or not, so polled drivers read those. The
 * line is not gated by MCR's OUT2, as in QEMU's 16550.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "dev.h"

#define REG_THR 0 /* DLAB=0: transmit / receive; DLAB=1: divisor low */
#define REG_IER 1 /* DLAB=0: interrupt enable; DLAB=1: divisor high */
#define REG_IIR 2 /* read: interrupt identification; write: FCR */
#define REG_LCR 3
#define REG_MCR 4
#define REG_LSR 5
#define REG_MSR 6
#define REG_SCR 7

#define LCR_DLAB 0x80
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_LOOP 0x10
#define IER_RDA 0x01 /* received data available (and character timeout) */
#define IER_THRE 0x02 /* transmitter holding register empty */
#define IER_RLS 0x04 /* receiver line status */
#define IER_MS 0x08 /* modem status */
#define IIR_NO_INT 0x01
#define IIR_MS 0x00
#define IIR_THRE 0x02
#define IIR_RDA 0x04
#define IIR_RLS 0x06
#define IIR_TIMEOUT 0x0c
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04
/* What FCR keeps: enable, DMA mode, the receive trigger (bits 7:6);
 * bits 1-2 clear themselves and bits 4-5 are reserved on a 16550. */
#define FCR_KEPT 0xc9
/* MSR: delta bits 0-3, inputs 4-7 (CTS, DSR, RI, DCD). */
#define MSR_TERI 0x04
#define MSR_RI 0x40
/* The inputs outside loopback: CTS, DSR and DCD asserted. */
#define MSR_INPUTS_IDLE 0xb0

/* Legend: every field but out/ctx and irq/irq_ctx (c, the latter set
 * before the guest runs) is under lock: vCPUs of one VM may use the UART
 * at once, and the host side adds input from its own thread. */
struct dev_serial {
	pthread_mutex_t lock;
	dev_serial_out_fn out; /* (c) */
	void *ctx; /* (c) */
	dev_serial_irq_fn irq; /* (c) */
	void *irq_ctx; /* (c) */
	uint8_t ier, lcr, mcr, scr, fcr;
	uint16_t divisor;
	bool thre_pending; /* the THR-empty interrupt is latched */
	uint8_t msr_delta; /* MSR bits 0-3 since the last MSR read */
	bool irq_level; /* the interrupt line as last driven */
	/* The receive queue: rx_len bytes from rx[rx_head], wrapping. */
	uint8_t rx[DEV_SERIAL_RX_SIZE];
	unsigned int rx_head, rx_len;
};

struct dev_serial *dev_serial_create(dev_serial_out_fn out, void *ctx)
{
	struct dev_serial *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	s->out = out;
	s->ctx = ctx;
	dev_serial_reset(s);
	return s;
}

/* ---- interrupts ---------------------------------------------------- */

/* The receive FIFO's trigger level, FCR bits 7:6. */
static unsigned int rx_trigger(const struct dev_serial *s)
{
	static const unsigned int level[4] = { 1, 4, 8, 14 };

	return level[s->fcr >> 6];
}

/* IIR bits 3:0: the highest-priority enabled condition. */
static uint8_t iir_id(const struct dev_serial *s)
{
	/* Line status (IER_RLS) never: nothing overruns, nothing errs. */
	if ((s->ier & IER_RDA) && s->rx_len) {
		/* Below the FIFO's trigger the 16550 reports the bytes by
		 * a character timeout; input here has arrived at once, so
		 * the timeout has run. */
		if ((s->fcr & FCR_ENABLE) && s->rx_len < rx_trigger(s))
			return IIR_TIMEOUT;
		return IIR_RDA;
	}
	if ((s->ier & IER_THRE) && s->thre_pending)
		return IIR_THRE;
	if ((s->ier & IER_MS) && s->msr_delta)
		return IIR_MS;
	return IIR_NO_INT;
}

/* Drives the line to whether an enabled condition is pending. Called
 * with the lock held, so that line changes leave in the order the
 * register changes happened (docs/locking.md, "Order"). */
static void update_irq(struct dev_serial *s)
{
	bool level = iir_id(s) != IIR_NO_INT;

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	if (s->irq)
		s->irq(s->irq_ctx, level);
}

/* MSR's inputs: in loopback, MCR's DTR, RTS, OUT1, OUT2 drive DSR,
 * CTS, RI and DCD. */
static uint8_t msr_inputs(const struct dev_serial *s)
{
	uint8_t m = s->mcr;

	if (!(m & MCR_LOOP))
		return MSR_INPUTS_IDLE;
	return (uint8_t)(((m & 0x01) << 5) | ((m & 0x02) << 3) |
			 ((m & 0x04) << 4) | ((m & 0x08) << 4));
}

/* The inputs changed from old: latch the deltas (RI only on its
 * trailing edge). */
static void msr_changed(struct dev_serial *s, uint8_t old)
{
	uint8_t now = msr_inputs(s), diff = old ^ now;

	s->msr_delta |= (diff >> 4) & 0x0b;
	if ((old & MSR_RI) && !(now & MSR_RI))
		s->msr_delta |= MSR_TERI;
}

void dev_serial_connect_irq(struct dev_serial *s, dev_serial_irq_fn irq,
			    void *ctx)
{
	pthread_mutex_lock(&s->lock);
	s->irq = irq;
	s->irq_ctx = ctx;
	s->irq_level = false;
	if (irq)
		irq(ctx, false);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

bool dev_serial_input_interrupts(struct dev_serial *s)
{
	bool on;

	pthread_mutex_lock(&s->lock);
	on = s->ier & IER_RDA;
	pthread_mutex_unlock(&s->lock);
	return on;
}

void dev_serial_reset(struct dev_serial *s)
{
	pthread_mutex_lock(&s->lock);
	s->ier = s->mcr = s->scr = s->fcr = 0;
	s->lcr = 0x03; /* 8N1 */
	s->divisor = 1; /* 115200 baud */
	s->rx_head = s->rx_len = 0;
	s->thre_pending = false;
	s->msr_delta = 0;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

size_t dev_serial_receive(struct dev_serial *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = DEV_SERIAL_RX_SIZE - s->rx_len;
	if (n > len)
		n = len;
	for (size_t i = 0; i < n; i++)
		s->rx[(s->rx_head + s->rx_len + i) % DEV_SERIAL_RX_SIZE] = p[i];
	s->rx_len += (unsigned int)n;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

void dev_serial_save(struct dev_serial *s, struct dev_serial_state *st)
{
	pthread_mutex_lock(&s->lock);
	st->ier = s->ier;
	st->lcr = s->lcr;
	st->mcr = s->mcr;
	st->scr = s->scr;
	st->fcr = s->fcr;
	st->divisor = s->divisor;
	st->rx_len = s->rx_len;
	for (unsigned int i = 0; i < DEV_SERIAL_RX_SIZE; i++)
		st->rx[i] =
			i < s->rx_len ?
				s->rx[(s->rx_head + i) % DEV_SERIAL_RX_SIZE] :
				0;
	pthread_mutex_unlock(&s->lock);
}

bool dev_serial_load(struct dev_serial *s, const struct dev_serial_state *st,
		     char *err, size_t errlen)
{
	const char *bad = NULL;

	/* The bits reg_write() keeps: IER 0-3, MCR 0-4, FCR less bit 1
	 * (bits 2, 4 and 5, which older mmud kept, are dropped below). */
	if (st->ier & ~0x0f)
		bad = "ier";
	else if (st->mcr & ~0x1f)
		bad = "mcr";
	else if (st->fcr & FCR_CLEAR_RX)
		bad = "fcr";
	else if (st->rx_len > DEV_SERIAL_RX_SIZE)
		bad = "rx_len";
	if (bad) {
		snprintf(err, errlen, "COM1 %s out of range", bad);
		return false;
	}
	pthread_mutex_lock(&s->lock);
	s->ier = st->ier;
	s->lcr = st->lcr;
	s->mcr = st->mcr;
	s->scr = st->scr;
	s->fcr = st->fcr & FCR_ENABLE ? st->fcr & FCR_KEPT : 0;
	s->divisor = st->divisor;
	s->rx_head = 0;
	s->rx_len = st->rx_len;
	for (unsigned int i = 0; i < st->rx_len; i++)
		s->rx[i] = st->rx[i];
	/* The stream does not carry the THR-empty latch or MSR's deltas.
	 * THR is always empty, so an enabled THRE interrupt is taken as
	 * pending: at worst the driver sees one THRE it has no data for,
	 * where a lost one would stall an interrupt-driven transmitter. */
	s->thre_pending = s->ier & IER_THRE;
	s->msr_delta = 0;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return true;
}

void dev_serial_save_irq(struct dev_serial *s, struct dev_serial_irq_state *st)
{
	pthread_mutex_lock(&s->lock);
	st->thre_pending = s->thre_pending;
	st->msr_delta = s->msr_delta;
	pthread_mutex_unlock(&s->lock);
}

bool dev_serial_load_irq(struct dev_serial *s,
			 const struct dev_serial_irq_state *st, char *err,
			 size_t errlen)
{
	if (st->msr_delta & ~0x0f) {
		snprintf(err, errlen, "COM1 msr_delta %#x out of range",
			 st->msr_delta);
		return false;
	}
	pthread_mutex_lock(&s->lock);
	s->thre_pending = st->thre_pending;
	s->msr_delta = st->msr_delta;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return true;
}

static uint8_t rx_take(struct dev_serial *s)
{
	uint8_t c;

	if (!s->rx_len)
		return 0;
	c = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % DEV_SERIAL_RX_SIZE;
	s->rx_len--;
	update_irq(s);
	return c;
}

void dev_serial_destroy(struct dev_serial *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static uint8_t reg_read(struct dev_serial *s, unsigned int reg)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (reg) {
	case REG_THR:
		return dlab ? (uint8_t)s->divisor : rx_take(s);
	case REG_IER:
		return dlab ? (uint8_t)(s->divisor >> 8) : s->ier;
	case REG_IIR: {
		uint8_t id = iir_id(s);

		/* Reading IIR while it names THRE ends that interrupt. */
		if (id == IIR_THRE) {
			s->thre_pending = false;
			update_irq(s);
		}
		return id | ((s->fcr & FCR_ENABLE) ? IIR_FIFO : 0);
	}
	case REG_LCR:
		return s->lcr;
	case REG_MCR:
		return s->mcr;
	case REG_LSR:
		return LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0);
	case REG_MSR: {
		uint8_t v = msr_inputs(s) | s->msr_delta;

		/* Reading MSR clears its deltas (and their interrupt). */
		s->msr_delta = 0;
		update_irq(s);
		return v;
	}
	default:
		return s->scr;
	}
}

static void reg_write(struct dev_serial *s, unsigned int reg, uint8_t v)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (reg) {
	case REG_THR:
		if (dlab) {
			s->divisor = (s->divisor & 0xff00) | v;
		} else {
			char c = (char)v;

			/* Writing THR ends a THRE interrupt; the byte leaves
			 * at once and THR is empty again, a new THRE: the
			 * line falls and rises, a fresh edge. */
			s->thre_pending = false;
			update_irq(s);
			s->out(s->ctx, &c, 1);
			s->thre_pending = true;
			update_irq(s);
		}
		break;
	case REG_IER:
		if (dlab) {
			s->divisor = (uint16_t)((s->divisor & 0xff) | (v << 8));
			break;
		}
		/* Enabling THRE with THR empty (it always is) raises it;
		 * disabling forgets it. */
		if ((s->ier ^ v) & IER_THRE)
			s->thre_pending = v & IER_THRE;
		s->ier = v & 0x0f;
		update_irq(s);
		break;
	case REG_IIR:
		/* FCR. Changing the enable bit resets both FIFOs, and
		 * without it set the other bits are not programmed. The
		 * transmit FIFO is always empty: its reset changes
		 * nothing. */
		if (((s->fcr ^ v) & FCR_ENABLE) || (v & FCR_CLEAR_RX))
			s->rx_head = s->rx_len = 0;
		s->fcr = v & FCR_ENABLE ? v & FCR_KEPT : 0;
		update_irq(s);
		break;
	case REG_LCR:
		s->lcr = v;
		break;
	case REG_MCR: {
		uint8_t old = msr_inputs(s);

		s->mcr = v & 0x1f;
		msr_changed(s, old);
		update_irq(s);
		break;
	}
	case REG_LSR:
	case REG_MSR:
		break; /* read-only */
	default:
		s->scr = v;
		break;
	}
}

void dev_serial_pio(struct dev_serial *s, unsigned int offset,
		    unsigned int size, bool in, uint32_t *value)
{
	uint32_t v = in ? 0 : *value;

	pthread_mutex_lock(&s->lock);
	for (unsigned int i = 0; i < size; i++) {
		unsigned int reg = (offset + i) & 7;

		if (in)
			v |= (uint32_t)reg_read(s, reg) << (8 * i);
		else
			reg_write(s, reg, (uint8_t)(v >> (8 * i)));
	}
	pthread_mutex_unlock(&s->lock);
	if (in)
		*value = v;
}
