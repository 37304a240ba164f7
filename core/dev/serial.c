/*
 * COM1, the 8250/16550 UART of guest ABI v1 (docs/GUEST-ABI.md, "COM1"): the
 * transmit path and enough of the register file (divisor latch, LCR, MCR,
 * scratch, FIFO control) that a driver's probe and set-up read back what
 * they wrote. Transmission is immediate, so LSR always reports the holding
 * register and transmitter empty. Input arrives from the host side
 * (dev_serial_receive) into a receive queue of DEV_SERIAL_RX_SIZE bytes:
 * LSR.DR is set while it holds a byte and each read of RBR takes one
 * (0 when empty); FCR bit 1 and reset empty it. No interrupt is raised
 * (guest ABI v1 has no interrupt controller): drivers poll LSR.
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
#define IIR_NO_INT 0x01
#define IIR_FIFO 0xc0
#define FCR_CLEAR_RX 0x02

/* Legend: every field but out/ctx (c) is under lock: vCPUs of one VM may
 * use the UART at once, and the host side adds input from its own
 * thread. */
struct dev_serial {
	pthread_mutex_t lock;
	dev_serial_out_fn out; /* (c) */
	void *ctx; /* (c) */
	uint8_t ier, lcr, mcr, scr, fcr;
	uint16_t divisor;
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

void dev_serial_reset(struct dev_serial *s)
{
	pthread_mutex_lock(&s->lock);
	s->ier = s->mcr = s->scr = s->fcr = 0;
	s->lcr = 0x03; /* 8N1 */
	s->divisor = 1; /* 115200 baud */
	s->rx_head = s->rx_len = 0;
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

	/* The bits reg_write() keeps: IER 0-3, MCR 0-4, FCR less bit 1. */
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
	s->fcr = st->fcr;
	s->divisor = st->divisor;
	s->rx_head = 0;
	s->rx_len = st->rx_len;
	for (unsigned int i = 0; i < st->rx_len; i++)
		s->rx[i] = st->rx[i];
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
	case REG_IIR:
		return IIR_NO_INT | ((s->fcr & 1) ? IIR_FIFO : 0);
	case REG_LCR:
		return s->lcr;
	case REG_MCR:
		return s->mcr;
	case REG_LSR:
		return LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0);
	case REG_MSR:
		/* Loopback reflects MCR; otherwise DSR|CTS|DCD asserted. */
		if (s->mcr & 0x10)
			return (uint8_t)(((s->mcr & 0x0c) << 4) |
					 ((s->mcr & 0x03) << 4));
		return 0xb0;
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

			s->out(s->ctx, &c, 1);
		}
		break;
	case REG_IER:
		if (dlab)
			s->divisor = (uint16_t)((s->divisor & 0xff) | (v << 8));
		else
			s->ier = v & 0x0f;
		break;
	case REG_IIR:
		s->fcr = v & ~FCR_CLEAR_RX; /* self-clearing */
		if (v & FCR_CLEAR_RX)
			s->rx_head = s->rx_len = 0;
		break;
	case REG_LCR:
		s->lcr = v;
		break;
	case REG_MCR:
		s->mcr = v & 0x1f;
		break;
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
