/*
 * Tests of the local APIC model (core/dev/lapic.c) through its MMIO
 * registers, with host time given explicitly: reset values, software
 * disable, IRR/ISR/PPR with TPR and EOI, nesting of priority classes,
 * illegal vectors and reserved registers in ESR, self-IPI, and the
 * timer's divide configuration, one-shot and periodic modes. Each test
 * names the SDM (vol. 3, chapter 10) section its rule comes from.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lapic.h"

static _Atomic unsigned int notified; /* notify runs on any thread */

static void count_notify(void *ctx)
{
	(void)ctx;
	notified++;
}

static uint32_t rd(struct dev_lapic *l, uint32_t off)
{
	return dev_lapic_mmio_read(l, off, 4, 0);
}

static void wr(struct dev_lapic *l, uint32_t off, uint32_t v)
{
	dev_lapic_mmio_write(l, off, 4, v, 0);
}

/* ESR as software reads it: write, then read (10.5.3). */
static uint32_t esr(struct dev_lapic *l)
{
	wr(l, LAPIC_ESR, 0);
	return rd(l, LAPIC_ESR);
}

/* IRR and ISR bits, in any mode (the page is gone in x2APIC mode). */
static bool irr_has(struct dev_lapic *l, unsigned int v)
{
	struct dev_lapic_state st;

	dev_lapic_state(l, 0, &st);
	return (st.irr[v / 32] >> (v % 32)) & 1;
}

static bool isr_has(struct dev_lapic *l, unsigned int v)
{
	struct dev_lapic_state st;

	dev_lapic_state(l, 0, &st);
	return (st.isr[v / 32] >> (v % 32)) & 1;
}

/* An APIC software-enabled with spurious vector 0xff. */
static struct dev_lapic *enabled(unsigned int id)
{
	struct dev_lapic *l = dev_lapic_create(id, count_notify, NULL);

	assert_non_null(l);
	wr(l, LAPIC_SVR, LAPIC_SVR_ENABLE | 0xff);
	notified = 0;
	return l;
}

/* 10.4.7.1: the state after RESET. */
static void test_lapic_reset_values(void **state)
{
	struct dev_lapic *l = dev_lapic_create(3, NULL, NULL);

	(void)state;
	assert_int_equal(rd(l, LAPIC_ID), 3u << 24);
	assert_int_equal(rd(l, LAPIC_VERSION), 0x50014);
	assert_int_equal(rd(l, LAPIC_TPR), 0);
	assert_int_equal(rd(l, LAPIC_PPR), 0);
	assert_int_equal(rd(l, LAPIC_LDR), 0);
	assert_int_equal(rd(l, LAPIC_DFR), 0xffffffffu);
	assert_int_equal(rd(l, LAPIC_SVR), 0xff);
	for (uint32_t off = LAPIC_LVT_TIMER; off <= LAPIC_LVT_ERROR;
	     off += 0x10)
		assert_int_equal(rd(l, off), LAPIC_LVT_MASKED);
	assert_int_equal(rd(l, LAPIC_TIMER_ICR), 0);
	assert_int_equal(rd(l, LAPIC_TIMER_CCR), 0);
	assert_int_equal(rd(l, LAPIC_TIMER_DCR), 0);
	assert_int_equal(dev_lapic_deadline(l), 0);
	dev_lapic_destroy(l);
}

/* 10.4.7.2: software disabled, fixed interrupts are not accepted and
 * LVT masks cannot be cleared; disabling masks every entry. */
static void test_lapic_software_disabled(void **state)
{
	struct dev_lapic *l = dev_lapic_create(0, NULL, NULL);

	(void)state;
	dev_lapic_accept(l, 0x40, false);
	assert_false(irr_has(l, 0x40));
	assert_int_equal(dev_lapic_pending(l), -1);
	wr(l, LAPIC_LVT_TIMER, 0x30);
	assert_int_equal(rd(l, LAPIC_LVT_TIMER), LAPIC_LVT_MASKED | 0x30);
	wr(l, LAPIC_SVR, LAPIC_SVR_ENABLE | 0xff);
	wr(l, LAPIC_LVT_TIMER, 0x30);
	assert_int_equal(rd(l, LAPIC_LVT_TIMER), 0x30);
	wr(l, LAPIC_SVR, 0xff);
	assert_int_equal(rd(l, LAPIC_LVT_TIMER), LAPIC_LVT_MASKED | 0x30);
	dev_lapic_destroy(l);
}

/* 10.8.3.1, 10.8.4, 10.8.5: the highest IRR vector is dispensed, goes
 * to ISR and raises PPR to its class, so a lower class waits; EOI ends
 * it and the lower one becomes deliverable. */
static void test_lapic_irr_isr_ppr_eoi(void **state)
{
	struct dev_lapic *l = enabled(0);

	(void)state;
	dev_lapic_accept(l, 0x41, false);
	dev_lapic_accept(l, 0x52, false);
	assert_int_equal(notified, 2);
	assert_int_equal(dev_lapic_pending(l), 0x52);
	assert_int_equal(dev_lapic_ack(l), 0x52);
	assert_false(irr_has(l, 0x52));
	assert_true(isr_has(l, 0x52));
	assert_int_equal(rd(l, LAPIC_PPR), 0x50);
	assert_int_equal(dev_lapic_pending(l), -1);
	assert_int_equal(dev_lapic_ack(l), -1);
	wr(l, LAPIC_EOI, 0);
	assert_false(isr_has(l, 0x52));
	assert_int_equal(rd(l, LAPIC_PPR), 0);
	assert_int_equal(dev_lapic_pending(l), 0x41);
	dev_lapic_destroy(l);
}

/* 10.8.3.1: TPR masks every class at or below its own; PPR is TPR
 * while TPR's class is at least the in-service one. */
static void test_lapic_tpr_masks_priority_class(void **state)
{
	struct dev_lapic *l = enabled(0);

	(void)state;
	dev_lapic_accept(l, 0x52, false);
	wr(l, LAPIC_TPR, 0x50);
	assert_int_equal(rd(l, LAPIC_PPR), 0x50);
	assert_int_equal(dev_lapic_pending(l), -1);
	wr(l, LAPIC_TPR, 0x4f);
	assert_int_equal(rd(l, LAPIC_PPR), 0x4f);
	assert_int_equal(dev_lapic_pending(l), 0x52);
	wr(l, LAPIC_TPR, 0x60);
	dev_lapic_accept(l, 0x71, false);
	assert_int_equal(dev_lapic_pending(l), 0x71);
	dev_lapic_destroy(l);
}

/* 10.8.3 and 10.8.5: a higher class interrupts a handler in service
 * (nesting), and EOIs end the in-service vectors highest first. */
static void test_lapic_isr_nesting_eoi_order(void **state)
{
	struct dev_lapic *l = enabled(0);

	(void)state;
	dev_lapic_accept(l, 0x41, false);
	assert_int_equal(dev_lapic_ack(l), 0x41);
	dev_lapic_accept(l, 0x45, false);
	assert_int_equal(dev_lapic_pending(l), -1); /* same class */
	dev_lapic_accept(l, 0x61, false);
	assert_int_equal(dev_lapic_ack(l), 0x61);
	assert_true(isr_has(l, 0x41) && isr_has(l, 0x61));
	assert_int_equal(rd(l, LAPIC_PPR), 0x60);
	wr(l, LAPIC_EOI, 0);
	assert_false(isr_has(l, 0x61));
	assert_true(isr_has(l, 0x41));
	assert_int_equal(dev_lapic_pending(l), -1);
	wr(l, LAPIC_EOI, 0);
	assert_false(isr_has(l, 0x41));
	assert_int_equal(dev_lapic_pending(l), 0x45);
	dev_lapic_destroy(l);
}

/* 10.5.2 and 10.5.3: vectors 0-15 are illegal: not accepted, ESR's
 * receive bit (bit 6), and the error LVT interrupts when unmasked;
 * ESR shows errors only after a write, which also clears them. */
static void test_lapic_illegal_vector_sets_esr(void **state)
{
	struct dev_lapic *l = enabled(0);

	(void)state;
	dev_lapic_accept(l, 5, false);
	assert_false(irr_has(l, 5));
	assert_int_equal(rd(l, LAPIC_ESR), 0);
	assert_int_equal(esr(l), LAPIC_ESR_RECV_ILLEGAL);
	assert_int_equal(esr(l), 0);
	wr(l, LAPIC_LVT_ERROR, 0xe0);
	dev_lapic_accept(l, 15, false);
	assert_true(irr_has(l, 0xe0));
	/* Fixed IPI of an illegal vector: the send bit (bit 5). */
	wr(l, LAPIC_ICR_LO, 0x4000 | 3);
	assert_int_equal(esr(l),
			 LAPIC_ESR_RECV_ILLEGAL | LAPIC_ESR_SEND_ILLEGAL);
	dev_lapic_destroy(l);
}

/* 10.4.1 and 10.5.3: a reserved offset reads 0 and sets the illegal
 * register address bit; read-only registers ignore writes; accesses
 * that are not 32-bit at a 16-byte boundary do nothing. */
static void test_lapic_reserved_register_and_bad_access(void **state)
{
	struct dev_lapic *l = enabled(1);

	(void)state;
	assert_int_equal(rd(l, 0x40), 0);
	assert_int_equal(esr(l), LAPIC_ESR_ILLEGAL_REG);
	wr(l, 0x3f0, 1);
	assert_int_equal(esr(l), LAPIC_ESR_ILLEGAL_REG);
	wr(l, LAPIC_VERSION, 0);
	wr(l, LAPIC_PPR, 0x80);
	assert_int_equal(rd(l, LAPIC_VERSION), 0x50014);
	assert_int_equal(rd(l, LAPIC_PPR), 0);
	dev_lapic_mmio_write(l, LAPIC_TPR, 1, 0x80, 0);
	dev_lapic_mmio_write(l, LAPIC_TPR + 4, 4, 0x80, 0);
	assert_int_equal(rd(l, LAPIC_TPR), 0);
	assert_int_equal(dev_lapic_mmio_read(l, LAPIC_ID, 2, 0), 0);
	assert_int_equal(esr(l), 0);
	dev_lapic_destroy(l);
}

/* 10.6.1, figure 10-12: a fixed IPI with the self shorthand goes to
 * this APIC's IRR. */
static void test_lapic_self_ipi(void **state)
{
	struct dev_lapic *l = enabled(0);

	(void)state;
	wr(l, LAPIC_ICR_LO, (1u << 18) | 0x1000 | 0x93);
	assert_true(irr_has(l, 0x93));
	assert_int_equal(dev_lapic_pending(l), 0x93);
	assert_int_equal(rd(l, LAPIC_ICR_LO) & 0x1000, 0); /* idle */
	dev_lapic_destroy(l);
}

/* 10.6.2.1: physical destinations name the APIC ID; 0xff is everyone. */
static void test_lapic_match_physical(void **state)
{
	struct dev_lapic *l = enabled(5);

	(void)state;
	assert_true(dev_lapic_match(l, 5, false));
	assert_false(dev_lapic_match(l, 4, false));
	assert_true(dev_lapic_match(l, 0xff, false));
	wr(l, LAPIC_ID, 9u << 24);
	assert_true(dev_lapic_match(l, 9, false));
	assert_false(dev_lapic_match(l, 5, false));
	dev_lapic_destroy(l);
}

/* 10.6.2.2: logical destinations, flat model (DFR 1111b: MDA & LDR)
 * and cluster model (DFR 0000b: cluster equal, then MDA & LDR in the
 * low four bits); LDR 0 matches nothing but the broadcast. */
static void test_lapic_match_logical_flat_and_cluster(void **state)
{
	struct dev_lapic *l = enabled(0);

	(void)state;
	assert_false(dev_lapic_match(l, 0x01, true));
	assert_true(dev_lapic_match(l, 0xff, true));
	wr(l, LAPIC_LDR, 0x04u << 24);
	assert_true(dev_lapic_match(l, 0x04, true));
	assert_true(dev_lapic_match(l, 0x0c, true));
	assert_false(dev_lapic_match(l, 0x03, true));
	wr(l, LAPIC_DFR, 0x0fffffff);
	assert_int_equal(rd(l, LAPIC_DFR), 0x0fffffff);
	wr(l, LAPIC_LDR, 0x32u << 24); /* cluster 3, member bit 1 */
	assert_true(dev_lapic_match(l, 0x32, true));
	assert_true(dev_lapic_match(l, 0x3a, true));
	assert_false(dev_lapic_match(l, 0x22, true));
	assert_false(dev_lapic_match(l, 0x31, true));
	dev_lapic_destroy(l);
}

/* 10.5.4, figure 10-10: the divide configuration's eight encodings. */
static void test_lapic_timer_divide_configuration(void **state)
{
	static const struct {
		uint32_t dcr;
		uint64_t div;
	} t[] = { { 0x0, 2 },  { 0x1, 4 },  { 0x2, 8 },	  { 0x3, 16 },
		  { 0x8, 32 }, { 0x9, 64 }, { 0xa, 128 }, { 0xb, 1 } };
	struct dev_lapic *l = enabled(0);

	(void)state;
	for (unsigned int i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		wr(l, LAPIC_TIMER_DCR, t[i].dcr);
		dev_lapic_mmio_write(l, LAPIC_TIMER_ICR, 4, 10, 1000);
		assert_int_equal(
			dev_lapic_deadline(l),
			1000 + 10 * t[i].div *
					(1000000000ULL / DEV_LAPIC_TIMER_HZ));
	}
	dev_lapic_destroy(l);
}

/* 10.5.4: one-shot: counts down from the initial count, interrupts
 * once at zero and stays at zero; an initial count of 0 stops it. */
static void test_lapic_timer_one_shot(void **state)
{
	struct dev_lapic *l = enabled(0);

	(void)state;
	wr(l, LAPIC_TIMER_DCR, 0xb);
	wr(l, LAPIC_LVT_TIMER, 0x30);
	dev_lapic_mmio_write(l, LAPIC_TIMER_ICR, 4, 1000, 5000);
	assert_int_equal(dev_lapic_deadline(l), 6000);
	assert_int_equal(dev_lapic_mmio_read(l, LAPIC_TIMER_CCR, 4, 5250), 750);
	assert_false(dev_lapic_advance(l, 5999));
	assert_false(irr_has(l, 0x30));
	assert_true(dev_lapic_advance(l, 6000));
	assert_true(irr_has(l, 0x30));
	assert_int_equal(dev_lapic_deadline(l), 0);
	assert_int_equal(dev_lapic_mmio_read(l, LAPIC_TIMER_CCR, 4, 7000), 0);
	assert_false(dev_lapic_advance(l, 9000));
	dev_lapic_mmio_write(l, LAPIC_TIMER_ICR, 4, 1000, 9000);
	dev_lapic_mmio_write(l, LAPIC_TIMER_ICR, 4, 0, 9500);
	assert_int_equal(dev_lapic_deadline(l), 0);
	dev_lapic_destroy(l);
}

/* 10.5.4: periodic: reloads at zero; periods slept through make one
 * interrupt (IRR holds one) and the phase is kept. */
static void test_lapic_timer_periodic(void **state)
{
	struct dev_lapic *l = enabled(0);

	(void)state;
	wr(l, LAPIC_TIMER_DCR, 0x3); /* divide by 16 */
	wr(l, LAPIC_LVT_TIMER, LAPIC_LVT_PERIODIC | 0x31);
	dev_lapic_mmio_write(l, LAPIC_TIMER_ICR, 4, 100, 0); /* 1600 ns */
	assert_int_equal(dev_lapic_deadline(l), 1600);
	assert_true(dev_lapic_advance(l, 1600));
	assert_int_equal(dev_lapic_ack(l), 0x31);
	wr(l, LAPIC_EOI, 0);
	assert_int_equal(dev_lapic_deadline(l), 3200);
	assert_true(dev_lapic_advance(l, 10000));
	assert_int_equal(dev_lapic_deadline(l), 11200);
	assert_int_equal(dev_lapic_mmio_read(l, LAPIC_TIMER_CCR, 4, 11000), 12);
	dev_lapic_destroy(l);
}

/* 10.5.1: a masked LVT timer still counts and reloads, without
 * interrupting. */
static void test_lapic_timer_masked_counts_silently(void **state)
{
	struct dev_lapic *l = enabled(0);

	(void)state;
	wr(l, LAPIC_TIMER_DCR, 0xb);
	wr(l, LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | LAPIC_LVT_PERIODIC | 0x32);
	dev_lapic_mmio_write(l, LAPIC_TIMER_ICR, 4, 100, 0);
	assert_true(dev_lapic_advance(l, 100));
	assert_false(irr_has(l, 0x32));
	assert_int_equal(dev_lapic_deadline(l), 200);
	dev_lapic_destroy(l);
}

/*
 * Other threads make interrupts pending while the owner takes and ends
 * them (as a vCPU does with IPIs arriving): every accept that made a
 * vector pending is taken exactly once. Runs under ThreadSanitizer in
 * the concurrency suite.
 */
#define NR_SENDERS 2
#define NR_SENDS 50000u

struct sender {
	struct dev_lapic *l;
	unsigned int seed;
	uint64_t fresh[256];
};

static _Atomic unsigned int senders_done;

static void *sender_main(void *arg)
{
	struct sender *s = arg;

	for (unsigned int i = 0; i < NR_SENDS; i++) {
		unsigned int v = 16 + (unsigned int)(rand_r(&s->seed) % 240);

		if (dev_lapic_accept(s->l, v, false))
			s->fresh[v]++;
	}
	atomic_fetch_add(&senders_done, 1);
	return NULL;
}

static void test_lapic_accepts_from_threads_taken_once(void **state)
{
	static struct sender s[NR_SENDERS];
	static uint64_t taken[256];
	struct dev_lapic *l = enabled(0);
	pthread_t t[NR_SENDERS];
	int v;

	(void)state;
	memset(s, 0, sizeof(s));
	memset(taken, 0, sizeof(taken));
	atomic_store(&senders_done, 0);
	for (unsigned int i = 0; i < NR_SENDERS; i++) {
		s[i].l = l;
		s[i].seed = i + 1;
		assert_int_equal(
			pthread_create(&t[i], NULL, sender_main, &s[i]), 0);
	}
	for (;;) {
		bool done = atomic_load(&senders_done) == NR_SENDERS;

		while ((v = dev_lapic_ack(l)) >= 0) {
			taken[v]++;
			wr(l, LAPIC_EOI, 0);
		}
		if (done)
			break;
	}
	for (unsigned int i = 0; i < NR_SENDERS; i++)
		pthread_join(t[i], NULL);
	for (unsigned int i = 16; i < 256; i++) {
		uint64_t want = 0;

		for (unsigned int k = 0; k < NR_SENDERS; k++)
			want += s[k].fresh[i];
		if (taken[i] != want)
			fail_msg("vector %u: taken %llu times, made pending "
				 "%llu times",
				 i, (unsigned long long)taken[i],
				 (unsigned long long)want);
	}
	dev_lapic_destroy(l);
}

/* ---- the APIC bus ----------------------------------------------------- */

#define NR_BUS 4

/* A machine of NR_BUS APICs wired as core/vm.c wires them, recording
 * what reaches each. */
struct bus_apic {
	struct dev_lapic *l;
	unsigned int index;
	unsigned int nmis, inits, sipis, eois;
	int sipi_vector, eoi_vector;
};
static struct bus_apic bus[NR_BUS];
static struct dev_lapic *bus_apics[NR_BUS];

static void bus_nmi(void *ctx)
{
	((struct bus_apic *)ctx)->nmis++;
}

static void bus_init(void *ctx)
{
	((struct bus_apic *)ctx)->inits++;
}

static void bus_sipi(void *ctx, uint8_t vector)
{
	struct bus_apic *b = ctx;

	b->sipis++;
	b->sipi_vector = vector;
}

static void bus_send(void *ctx, const struct dev_apic_msg *msg)
{
	struct bus_apic *b = ctx;

	dev_apic_deliver(bus_apics, NR_BUS, (int)b->index, msg);
}

static void bus_eoi(void *ctx, uint8_t vector)
{
	struct bus_apic *b = ctx;

	b->eois++;
	b->eoi_vector = vector;
}

static uint64_t fake_tsc;

static uint64_t bus_tsc(void *ctx)
{
	(void)ctx;
	return fake_tsc;
}

static const struct dev_lapic_bus_ops bus_ops = {
	.nmi = bus_nmi,
	.init = bus_init,
	.sipi = bus_sipi,
	.send = bus_send,
	.eoi = bus_eoi,
	.guest_tsc = bus_tsc,
	.tsc_hz = 2000000000ULL, /* 2 GHz: two ticks a nanosecond */
};

static void bus_setup(void)
{
	memset(bus, 0, sizeof(bus));
	for (unsigned int i = 0; i < NR_BUS; i++) {
		bus[i].index = i;
		bus[i].sipi_vector = bus[i].eoi_vector = -1;
		bus[i].l = enabled(i);
		bus_apics[i] = bus[i].l;
		dev_lapic_set_bus(bus[i].l, &bus_ops, &bus[i]);
	}
}

static void bus_teardown(void)
{
	for (unsigned int i = 0; i < NR_BUS; i++)
		dev_lapic_destroy(bus[i].l);
}

/* What APIC from's ICR sends (xAPIC: high half first, SDM vol. 3,
 * 10.6.1). */
static void icr(unsigned int from, uint32_t dest, uint32_t lo)
{
	wr(bus[from].l, LAPIC_ICR_HI, dest << 24);
	wr(bus[from].l, LAPIC_ICR_LO, lo);
}

/* Which APICs have vector v in IRR, as a bit mask. */
static unsigned int irr_mask(unsigned int v)
{
	unsigned int m = 0;

	for (unsigned int i = 0; i < NR_BUS; i++)
		if (irr_has(bus[i].l, v))
			m |= 1u << i;
	return m;
}

#define ICR_LOGICAL (1u << 11)
#define ICR_ASSERT (1u << 14)
#define ICR_LEVEL (1u << 15)
#define ICR_SELF (1u << 18)
#define ICR_ALL (2u << 18)
#define ICR_ALL_BUT_SELF (3u << 18)
#define ICR_LOWEST (1u << 8)
#define ICR_NMI (4u << 8)
#define ICR_INIT (5u << 8)
#define ICR_SIPI (6u << 8)

/* 10.6.2.1, 10.6.1: a fixed IPI reaches the APIC its physical
 * destination names, 0xff reaches all of them, an ID nobody has
 * reaches nobody (and is no error); the shorthands ignore the
 * destination field. */
static void test_apic_bus_fixed_destinations_and_shorthands(void **state)
{
	(void)state;
	bus_setup();
	icr(0, 2, ICR_ASSERT | 0x40);
	assert_int_equal(irr_mask(0x40), 1u << 2);
	icr(1, 0xff, ICR_ASSERT | 0x41);
	assert_int_equal(irr_mask(0x41), 0xf);
	icr(1, 7, ICR_ASSERT | 0x42); /* no APIC 7 */
	assert_int_equal(irr_mask(0x42), 0);
	assert_int_equal(esr(bus[1].l), 0);
	icr(3, 0, ICR_ALL_BUT_SELF | ICR_ASSERT | 0x43);
	assert_int_equal(irr_mask(0x43), 0x7);
	icr(3, 0, ICR_ALL | ICR_ASSERT | 0x44);
	assert_int_equal(irr_mask(0x44), 0xf);
	icr(2, 0, ICR_SELF | ICR_ASSERT | 0x45);
	assert_int_equal(irr_mask(0x45), 1u << 2);
	/* A level-triggered fixed IPI sets TMR at the destination. */
	icr(0, 1, ICR_LEVEL | ICR_ASSERT | 0x46);
	assert_true((rd(bus[1].l, LAPIC_TMR + 0x20) >> 6) & 1);
	bus_teardown();
}

/* 10.6.2.2: logical destinations in the flat and cluster models. */
static void test_apic_bus_logical_flat_and_cluster(void **state)
{
	(void)state;
	bus_setup();
	for (unsigned int i = 0; i < NR_BUS; i++)
		wr(bus[i].l, LAPIC_LDR, (1u << i) << 24);
	icr(0, 0x06, ICR_LOGICAL | ICR_ASSERT | 0x50);
	assert_int_equal(irr_mask(0x50), 0x6);
	/* Cluster: APICs 0, 1 in cluster 1, APICs 2, 3 in cluster 2. */
	for (unsigned int i = 0; i < NR_BUS; i++) {
		wr(bus[i].l, LAPIC_DFR, 0x0fffffff);
		wr(bus[i].l, LAPIC_LDR,
		   (((1u + i / 2) << 4) | (1u << (i % 2))) << 24);
	}
	icr(0, 0x23, ICR_LOGICAL | ICR_ASSERT | 0x51);
	assert_int_equal(irr_mask(0x51), 0xc);
	icr(0, 0x12, ICR_LOGICAL | ICR_ASSERT | 0x52);
	assert_int_equal(irr_mask(0x52), 0x2);
	bus_teardown();
}

/* 10.6.2.4: lowest priority sends to one APIC of the destination set;
 * ours is the one with the lowest PPR, then the lowest APIC ID. */
static void test_apic_bus_lowest_priority_one_deterministic(void **state)
{
	(void)state;
	bus_setup();
	for (unsigned int i = 0; i < NR_BUS; i++)
		wr(bus[i].l, LAPIC_LDR, (1u << i) << 24);
	wr(bus[1].l, LAPIC_TPR, 0x20);
	wr(bus[2].l, LAPIC_TPR, 0x10);
	wr(bus[3].l, LAPIC_TPR, 0x10);
	icr(0, 0x0e, ICR_LOGICAL | ICR_LOWEST | ICR_ASSERT | 0x60);
	assert_int_equal(irr_mask(0x60), 1u << 2);
	wr(bus[2].l, LAPIC_TPR, 0x30);
	icr(0, 0x0e, ICR_LOGICAL | ICR_LOWEST | ICR_ASSERT | 0x61);
	assert_int_equal(irr_mask(0x61), 1u << 3);
	bus_teardown();
}

/* 10.6.1: NMI goes to the CPU whatever the vector; INIT resets the
 * registers but the ID (10.4.7.3) and leaves the CPU waiting for a
 * SIPI, which is then recorded; a SIPI to a CPU not waiting, and the
 * INIT level de-assert, do nothing. */
static void test_apic_bus_nmi_init_sipi(void **state)
{
	struct dev_lapic_state st;

	(void)state;
	bus_setup();
	icr(0, 1, ICR_NMI | ICR_ASSERT);
	assert_int_equal(bus[1].nmis, 1);
	assert_int_equal(bus[0].nmis + bus[2].nmis + bus[3].nmis, 0);
	icr(0, 2, ICR_SIPI | ICR_ASSERT | 0x9a); /* not waiting: ignored */
	assert_int_equal(bus[2].sipis, 0);

	wr(bus[2].l, LAPIC_TPR, 0x30);
	dev_lapic_accept(bus[2].l, 0x70, false);
	icr(0, 2, ICR_INIT | ICR_LEVEL); /* de-assert: nothing */
	assert_int_equal(bus[2].inits, 0);
	assert_int_equal(rd(bus[2].l, LAPIC_TPR), 0x30);
	icr(0, 2, ICR_INIT | ICR_ASSERT);
	assert_int_equal(bus[2].inits, 1);
	assert_int_equal(rd(bus[2].l, LAPIC_TPR), 0);
	assert_int_equal(rd(bus[2].l, LAPIC_SVR), 0xff);
	assert_int_equal(rd(bus[2].l, LAPIC_ID), 2u << 24);
	assert_false(irr_has(bus[2].l, 0x70));
	dev_lapic_state(bus[2].l, 0, &st);
	assert_true(st.wait_for_sipi);
	assert_int_equal(st.sipis, 0);
	assert_int_equal(st.sipi_vector, -1);
	/* Software disabled after INIT: fixed interrupts are dropped, and
	 * a waiting CPU dispenses none. */
	icr(0, 2, ICR_SIPI | ICR_ASSERT | 0x9a);
	icr(0, 2, ICR_SIPI | ICR_ASSERT | 0x9b);
	assert_int_equal(bus[2].sipis, 2);
	assert_int_equal(bus[2].sipi_vector, 0x9b);
	dev_lapic_state(bus[2].l, 0, &st);
	assert_int_equal(st.sipis, 2);
	assert_int_equal(st.sipi_vector, 0x9b);
	bus_teardown();
}

/* 10.5.3: a fixed IPI with an illegal vector is not sent and sets the
 * sender's ESR bit 5; a message from an IOAPIC with one sets the
 * receiver's bit 6. */
static void test_apic_bus_illegal_vectors(void **state)
{
	struct dev_apic_msg m = { .dest = 1, .vector = 7, .assert = true };

	(void)state;
	bus_setup();
	icr(0, 1, ICR_ASSERT | 0x07);
	assert_int_equal(esr(bus[0].l), LAPIC_ESR_SEND_ILLEGAL);
	assert_int_equal(esr(bus[1].l), 0);
	dev_apic_deliver(bus_apics, NR_BUS, -1, &m);
	assert_int_equal(esr(bus[1].l), LAPIC_ESR_RECV_ILLEGAL);
	bus_teardown();
}

/* 10.8.5: the EOI of a level-triggered vector is broadcast (to the
 * IOAPIC); an edge one's is not. */
static void test_apic_bus_level_eoi_broadcast(void **state)
{
	struct dev_apic_msg m = {
		.dest = 3, .vector = 0x71, .level = true, .assert = true
	};

	(void)state;
	bus_setup();
	dev_apic_deliver(bus_apics, NR_BUS, -1, &m);
	assert_int_equal(dev_lapic_ack(bus[3].l), 0x71);
	wr(bus[3].l, LAPIC_EOI, 0);
	assert_int_equal(bus[3].eois, 1);
	assert_int_equal(bus[3].eoi_vector, 0x71);
	m.level = false;
	m.vector = 0x72;
	dev_apic_deliver(bus_apics, NR_BUS, -1, &m);
	assert_int_equal(dev_lapic_ack(bus[3].l), 0x72);
	wr(bus[3].l, LAPIC_EOI, 0);
	assert_int_equal(bus[3].eois, 1);
	bus_teardown();
}

/* ---- IA32_APIC_BASE and x2APIC ---------------------------------------- */

#define BASE_EN MSR_IA32_APIC_BASE_EN
#define BASE_EXTD MSR_IA32_APIC_BASE_EXTD
#define BASE_BSP MSR_IA32_APIC_BASE_BSP
#define X2(off) (LAPIC_X2APIC_MSR_BASE + ((off) >> 4))

static uint64_t msr_rd(struct dev_lapic *l, uint32_t msr)
{
	uint64_t v = 0xdeadbeef;

	assert_int_equal(dev_lapic_msr_read(l, msr, 0, &v), 0);
	return v;
}

/* 10.12.5, figure 10-27: the transitions of IA32_APIC_BASE and the ones
 * that raise #GP (refused, nothing changed). */
static void test_lapic_base_mode_transitions(void **state)
{
	struct dev_lapic *l = enabled(2);
	uint64_t def = DEV_LAPIC_BASE | BASE_EN;

	(void)state;
	assert_int_equal(dev_lapic_get_base(l), def); /* not the BSP */
	assert_int_equal(dev_lapic_set_base(l, def | 1), -EINVAL);
	assert_int_equal(dev_lapic_set_base(l, def | (1ULL << 46)), -EINVAL);
	assert_int_equal(dev_lapic_set_base(l, DEV_LAPIC_BASE | BASE_EXTD),
			 -EINVAL); /* EXTD without EN */
	assert_int_equal(dev_lapic_get_base(l), def);
	/* Relocated: the page moves. */
	assert_int_equal(dev_lapic_set_base(l, 0xfed00000ULL | BASE_EN), 0);
	assert_false(dev_lapic_mmio_covers(l, DEV_LAPIC_BASE + 0x20));
	assert_true(dev_lapic_mmio_covers(l, 0xfed00020ULL));
	/* xAPIC to x2APIC: the ID and LDR take their x2APIC form, the page
	 * is gone, the rest stays. */
	wr(l, LAPIC_TPR, 0x20);
	assert_int_equal(dev_lapic_set_base(l, def | BASE_EXTD), 0);
	assert_true(dev_lapic_is_x2apic(l));
	assert_false(dev_lapic_mmio_covers(l, DEV_LAPIC_BASE));
	assert_int_equal(msr_rd(l, X2(LAPIC_ID)), 2);
	assert_int_equal(msr_rd(l, X2(LAPIC_LDR)), 1u << 2);
	assert_int_equal(msr_rd(l, X2(LAPIC_TPR)), 0x20);
	/* x2APIC to xAPIC: #GP; to disabled: allowed, registers reset. */
	assert_int_equal(dev_lapic_set_base(l, def), -EINVAL);
	assert_int_equal(dev_lapic_set_base(l, DEV_LAPIC_BASE), 0);
	assert_false(dev_lapic_is_x2apic(l));
	/* Disabled: takes no interrupts, and cannot go to x2APIC. */
	assert_false(dev_lapic_accept(l, 0x40, false));
	assert_int_equal(dev_lapic_set_base(l, def | BASE_EXTD), -EINVAL);
	assert_int_equal(dev_lapic_set_base(l, def), 0);
	assert_int_equal(rd(l, LAPIC_TPR), 0);
	assert_int_equal(rd(l, LAPIC_SVR), 0xff);
	assert_int_equal(rd(l, LAPIC_ID), 2u << 24);
	dev_lapic_destroy(l);

	l = dev_lapic_create(0, NULL, NULL);
	assert_int_equal(dev_lapic_get_base(l), def | BASE_BSP);
	dev_lapic_destroy(l);
}

/* 10.12.1.2, table 10-6: the x2APIC MSRs and their #GP cases. */
static void test_lapic_x2apic_msr_rules(void **state)
{
	struct dev_lapic *l = enabled(0x13);
	uint64_t v;

	(void)state;
	/* Not in x2APIC mode: every x2APIC MSR is #GP. */
	assert_int_equal(dev_lapic_msr_read(l, X2(LAPIC_ID), 0, &v), -EINVAL);
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_TPR), 0, 0), -EINVAL);
	assert_int_equal(
		dev_lapic_set_base(l, DEV_LAPIC_BASE | BASE_EN | BASE_EXTD), 0);
	assert_int_equal(msr_rd(l, X2(LAPIC_ID)), 0x13);
	assert_int_equal(msr_rd(l, X2(LAPIC_VERSION)), 0x50014);
	assert_int_equal(msr_rd(l, X2(LAPIC_LDR)), (1u << 16) | (1u << 3));
	assert_int_equal(msr_rd(l, X2(LAPIC_SVR)), 0x1ff);
	/* Registers that do not exist in x2APIC mode. */
	for (uint32_t off = 0; off < 0x400; off += 0x10) {
		bool absent = off == LAPIC_APR || off == LAPIC_RRD ||
			      off == LAPIC_DFR || off == LAPIC_ICR_HI ||
			      off == 0 || off == 0x10 || off == 0x40 ||
			      off == 0x50 || off == 0x60 || off == 0x70 ||
			      (off >= 0x290 && off < 0x300) ||
			      (off >= 0x3a0 && off < 0x3e0) || off == 0x3f0;

		if (absent || off == LAPIC_EOI)
			assert_int_equal(dev_lapic_msr_read(l, X2(off), 0, &v),
					 -EINVAL);
	}
	assert_int_equal(dev_lapic_msr_read(l, LAPIC_X2APIC_SELF_IPI, 0, &v),
			 -EINVAL); /* write-only */
	/* Read-only registers: a write is #GP. */
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_ID), 5, 0), -EINVAL);
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_LDR), 5, 0), -EINVAL);
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_PPR), 0, 0), -EINVAL);
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_IRR), 0, 0), -EINVAL);
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_TIMER_CCR), 0, 0),
			 -EINVAL);
	/* EOI and ESR take only 0; high halves are reserved. */
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_EOI), 1, 0), -EINVAL);
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_ESR), 1, 0), -EINVAL);
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_TPR), 1ULL << 32, 0),
			 -EINVAL);
	/* SELF_IPI: a fixed interrupt to this APIC; bits 31:8 reserved. */
	assert_int_equal(dev_lapic_msr_write(l, LAPIC_X2APIC_SELF_IPI, 0x1a5,
					     0),
			 -EINVAL);
	assert_int_equal(dev_lapic_msr_write(l, LAPIC_X2APIC_SELF_IPI, 0xa5, 0),
			 0);
	assert_int_equal(dev_lapic_pending(l), 0xa5);
	assert_int_equal(dev_lapic_ack(l), 0xa5);
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_EOI), 0, 0), 0);
	assert_int_equal(msr_rd(l, X2(LAPIC_ISR) + 5), 0);
	/* ICR: one 64-bit register, reserved bits #GP. */
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_ICR_LO),
					     (1u << 12) | 0x40, 0),
			 -EINVAL);
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_ICR_LO),
					     (0x13ULL << 32) | 0x41, 0),
			 0);
	assert_int_equal(msr_rd(l, X2(LAPIC_ICR_LO)), (0x13ULL << 32) | 0x41);
	/* An illegal self IPI: ESR, not IRR. */
	assert_int_equal(dev_lapic_msr_write(l, LAPIC_X2APIC_SELF_IPI, 3, 0),
			 0);
	assert_int_equal(dev_lapic_msr_write(l, X2(LAPIC_ESR), 0, 0), 0);
	assert_int_equal(msr_rd(l, X2(LAPIC_ESR)), LAPIC_ESR_SEND_ILLEGAL);
	/* Not an x2APIC MSR at all. */
	assert_int_equal(dev_lapic_msr_read(l, 0x900, 0, &v), -EINVAL);
	dev_lapic_destroy(l);
}

/* 10.12.9, 10.12.10: x2APIC destinations: 32-bit physical IDs, the
 * broadcast 0xffffffff, and logical cluster IDs from the x2APIC ID. */
static void test_apic_bus_x2apic_destinations(void **state)
{
	(void)state;
	bus_setup();
	for (unsigned int i = 0; i < NR_BUS; i++)
		assert_int_equal(dev_lapic_set_base(bus[i].l,
						    DEV_LAPIC_BASE | BASE_EN |
							    BASE_EXTD),
				 0);
	assert_int_equal(dev_lapic_msr_write(bus[0].l, X2(LAPIC_ICR_LO),
					     (3ULL << 32) | ICR_ASSERT | 0x40,
					     0),
			 0);
	assert_int_equal(irr_mask(0x40), 1u << 3);
	assert_int_equal(dev_lapic_msr_write(
				 bus[0].l, X2(LAPIC_ICR_LO),
				 (0xffffffffULL << 32) | ICR_ASSERT | 0x41, 0),
			 0);
	assert_int_equal(irr_mask(0x41), 0xf);
	/* Cluster 0, members 1 and 2 (bits 1, 2 of the low half). */
	assert_int_equal(dev_lapic_msr_write(bus[0].l, X2(LAPIC_ICR_LO),
					     (0x6ULL << 32) | ICR_LOGICAL |
						     ICR_ASSERT | 0x42,
					     0),
			 0);
	assert_int_equal(irr_mask(0x42), 0x6);
	/* Another cluster: nobody. */
	assert_int_equal(dev_lapic_msr_write(bus[0].l, X2(LAPIC_ICR_LO),
					     (0x10006ULL << 32) | ICR_LOGICAL |
						     ICR_ASSERT | 0x43,
					     0),
			 0);
	assert_int_equal(irr_mask(0x43), 0);
	bus_teardown();
}

/* ---- the TSC-deadline timer ------------------------------------------- */

/* 10.5.4.1: in TSC-deadline mode IA32_TSC_DEADLINE arms the timer for a
 * guest TSC value; host time is only its estimate (here 2 GHz: two
 * ticks a nanosecond), and the timer fires once the TSC itself has
 * reached the deadline, never before; it then reads 0. Outside that
 * mode writes are ignored and reads 0; the initial count is ignored in
 * it; changing the mode disarms. */
static void test_lapic_tsc_deadline(void **state)
{
	struct dev_lapic *l;

	(void)state;
	bus_setup();
	l = bus[0].l;
	fake_tsc = 1000000;
	dev_lapic_set_tsc_deadline(l, 5000000, 100);
	assert_int_equal(dev_lapic_tsc_deadline(l), 0);
	assert_int_equal(dev_lapic_deadline(l), 0);

	wr(l, LAPIC_LVT_TIMER, LAPIC_LVT_TSC_DEADLINE | 0x60);
	dev_lapic_mmio_write(l, LAPIC_TIMER_ICR, 4, 1000, 100);
	assert_int_equal(dev_lapic_deadline(l), 0); /* count ignored */
	assert_int_equal(rd(l, LAPIC_TIMER_ICR), 0);
	dev_lapic_set_tsc_deadline(l, 5000000, 100);
	assert_int_equal(dev_lapic_tsc_deadline(l), 5000000);
	/* 4,000,000 ticks at 2 GHz: 2 ms after host time 100. */
	assert_int_equal(dev_lapic_deadline(l), 100 + 2000000);
	/* Host time says due, the TSC says not yet: no interrupt, the
	 * deadline is estimated again from the TSC. */
	fake_tsc = 4999999;
	assert_false(dev_lapic_advance(l, 2000100));
	assert_false(irr_has(l, 0x60));
	assert_true(dev_lapic_deadline(l) > 2000100);
	fake_tsc = 5000000;
	assert_true(dev_lapic_advance(l, dev_lapic_deadline(l)));
	assert_true(irr_has(l, 0x60));
	assert_int_equal(dev_lapic_tsc_deadline(l), 0);
	assert_int_equal(dev_lapic_deadline(l), 0);

	/* A deadline already past fires at the next look. */
	dev_lapic_set_tsc_deadline(l, 10, 500);
	assert_int_equal(dev_lapic_deadline(l), 500);
	/* 0 disarms; so does leaving the mode. */
	dev_lapic_set_tsc_deadline(l, 0, 500);
	assert_int_equal(dev_lapic_deadline(l), 0);
	dev_lapic_set_tsc_deadline(l, 9000000, 500);
	assert_true(dev_lapic_deadline(l) != 0);
	wr(l, LAPIC_LVT_TIMER, 0x60); /* one-shot */
	assert_int_equal(dev_lapic_deadline(l), 0);
	assert_int_equal(dev_lapic_tsc_deadline(l), 0);
	/* A deadline far beyond what host time can say saturates. */
	wr(l, LAPIC_LVT_TIMER, LAPIC_LVT_TSC_DEADLINE | 0x60);
	dev_lapic_set_tsc_deadline(l, UINT64_MAX, 500);
	assert_true(dev_lapic_deadline(l) > 500);
	bus_teardown();
}

/* ---- migration ---------------------------------------------------------- */

/* A saved APIC loads into another with the same registers, pending and
 * in-service vectors, and its timer's remaining time counted from the
 * load (host times do not travel); the copy then behaves the same. */
static void test_lapic_save_load_round_trip(void **state)
{
	struct dev_lapic *a = enabled(1), *b = dev_lapic_create(1, NULL, NULL);
	struct dev_lapic_saved sv;
	struct dev_lapic_state sa, sb;
	char err[128];

	(void)state;
	wr(a, LAPIC_TPR, 0x20);
	wr(a, LAPIC_LDR, 0x08u << 24);
	wr(a, LAPIC_LVT_ERROR, 0x3e);
	dev_lapic_accept(a, 0x80, true);
	dev_lapic_accept(a, 0x41, false);
	assert_int_equal(dev_lapic_ack(a), 0x80);
	wr(a, LAPIC_ICR_HI, 3u << 24);
	wr(a, LAPIC_LVT_TIMER, LAPIC_LVT_PERIODIC | 0x50);
	wr(a, LAPIC_TIMER_DCR, 0xb);
	dev_lapic_mmio_write(a, LAPIC_TIMER_ICR, 4, 1000000, 1000);
	rd(a, 0x10); /* reserved: ESR bit 7, pending */
	dev_lapic_save(a, 1000 + 400000, &sv);
	assert_true(sv.timer_armed);
	assert_int_equal(sv.timer_remaining_ns, 600000);
	assert_true(dev_lapic_load(b, &sv, 5000000, err, sizeof(err)));
	dev_lapic_state(a, 1000 + 400000, &sa);
	dev_lapic_state(b, 5000000, &sb);
	sa.timer_deadline_ns = sb.timer_deadline_ns = 0;
	assert_memory_equal(&sa, &sb, sizeof(sa));
	assert_int_equal(dev_lapic_deadline(b), 5000000 + 600000);
	/* The copy fires, rearms a period on, and dispenses as a would. */
	assert_true(dev_lapic_advance(b, 5600000));
	assert_int_equal(dev_lapic_deadline(b), 6600000);
	assert_int_equal(esr(b), LAPIC_ESR_ILLEGAL_REG);
	wr(b, LAPIC_EOI, 0); /* 0x80's, level */
	assert_int_equal(dev_lapic_pending(b), 0x50);
	dev_lapic_destroy(a);
	dev_lapic_destroy(b);
}

/* What no APIC could hold is refused, naming it, and changes nothing. */
static void test_lapic_load_refuses_what_cannot_be(void **state)
{
	struct dev_lapic *a = enabled(2), *b = enabled(2);
	struct dev_lapic_saved good, bad;
	struct dev_lapic_state before, after;
	char err[128];

	(void)state;
	wr(b, LAPIC_TPR, 0x30);
	dev_lapic_state(b, 0, &before);
	dev_lapic_save(a, 0, &good);
#define REFUSED(stmt, what)                                                 \
	do {                                                                \
		bad = good;                                                 \
		stmt;                                                       \
		err[0] = 0;                                                 \
		assert_false(dev_lapic_load(b, &bad, 0, err, sizeof(err))); \
		if (!strstr(err, what))                                     \
			fail_msg("%s: refused with \"%s\"", #stmt, err);    \
		dev_lapic_state(b, 0, &after);                              \
		assert_memory_equal(&before, &after, sizeof(before));       \
	} while (0)
	REFUSED(bad.base |= 1, "base");
	REFUSED(bad.base = DEV_LAPIC_BASE | BASE_EXTD, "base");
	REFUSED(bad.base |= BASE_EXTD, "id"); /* xAPIC ID in x2APIC mode */
	REFUSED(bad.id |= 1, "id");
	REFUSED(bad.ldr = 1, "ldr");
	REFUSED(bad.dfr = 0x7fffffff, "dfr");
	REFUSED(bad.tpr = 0x100, "tpr");
	REFUSED(bad.svr = 0x1000, "svr");
	REFUSED(bad.esr_pending = 1, "esr");
	REFUSED(bad.icr_lo = 1u << 12, "icr");
	REFUSED(bad.lvt[3] = 1u << 20, "lvt 3");
	REFUSED((bad.svr = 0xff, bad.lvt[0] = 0x40), "software disabled");
	REFUSED(bad.irr[0] = 1u << 3, "below 16");
	REFUSED(bad.timer_divide = 4, "divide");
	REFUSED((bad.timer_armed = true, bad.timer_initial = 10,
		 bad.timer_remaining_ns = 1000),
		"timer");
	REFUSED(bad.tsc_deadline = 5, "timer");
	REFUSED(bad.sipis = 1, "SIPI");
	REFUSED(bad.sipi_vector = 300, "SIPI");
#undef REFUSED
	assert_true(dev_lapic_load(b, &good, 0, err, sizeof(err)));
	dev_lapic_destroy(a);
	dev_lapic_destroy(b);
}

/* ---- random register sequences ---------------------------------------- */

static uint64_t rnd(uint64_t *x)
{
	/* xorshift64*: a fixed seed, the same run every time. */
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545f4914f6cdd1dULL;
}

/* What must hold whatever a guest wrote (SDM vol. 3, 10.8.3.1): PPR is
 * TPR or the in-service class, whichever is higher; what is dispensed
 * is above it; no vector below 16 is ever pending or in service; an
 * x2APIC's ID is its initial one. */
static void check_invariants(struct dev_lapic *l, unsigned int i, int step)
{
	struct dev_lapic_state st;
	int isrv = -1, v;
	uint32_t ppr;

	dev_lapic_state(l, 0, &st);
	for (int w = 7; w >= 0 && isrv < 0; w--)
		if (st.isr[w])
			isrv = w * 32 + 31 - __builtin_clz(st.isr[w]);
	ppr = (st.tpr & 0xf0) >= (isrv < 0 ? 0u : (uint32_t)isrv & 0xf0) ?
		      st.tpr :
		      (uint32_t)isrv & 0xf0;
	if (st.ppr != ppr || (st.irr[0] | st.isr[0]) & 0xffff ||
	    (st.x2apic && st.id != i))
		fail_msg("APIC %u after step %d: ppr %#x (want %#x), irr0 "
			 "%#x, isr0 %#x, id %#x",
			 i, step, st.ppr, ppr, st.irr[0], st.isr[0], st.id);
	v = dev_lapic_pending(l);
	if (v >= 0 && ((uint32_t)v & 0xf0) <= (st.ppr & 0xf0))
		fail_msg("APIC %u after step %d: dispenses %#x at ppr %#x", i,
			 step, v, st.ppr);
}

/* Random MMIO accesses (every offset and size), x2APIC MSR reads and
 * writes, IA32_APIC_BASE values, deliveries and acknowledges, on four
 * APICs wired as a bus: nothing crashes, every refusal leaves the
 * invariants, and a save of each loads back. */
static void test_lapic_random_sequences_keep_invariants(void **state)
{
	static const uint64_t bases[] = {
		DEV_LAPIC_BASE | BASE_EN, DEV_LAPIC_BASE | BASE_EN | BASE_EXTD,
		DEV_LAPIC_BASE,		  DEV_LAPIC_BASE | BASE_EXTD,
		0xfed00000ULL | BASE_EN,  DEV_LAPIC_BASE | BASE_EN | 0x40,
	};
	uint64_t x = 0x9e3779b97f4a7c15ULL, v;
	char err[128];

	(void)state;
	bus_setup();
	for (int step = 0; step < 200000; step++) {
		unsigned int i = rnd(&x) % NR_BUS;
		struct dev_lapic *l = bus[i].l;
		uint64_t r = rnd(&x);
		uint32_t off = (uint32_t)(r >> 8) & 0xfff;

		switch (r % 8) {
		case 0:
		case 1:
			if (r & 0x100000)
				off &= ~0xfu;
			dev_lapic_mmio_write(l, off, 1u << ((r >> 30) % 4),
					     (uint32_t)rnd(&x), step);
			break;
		case 2:
			dev_lapic_mmio_read(l, off & ~0xfu, 4, step);
			break;
		case 3:
			v = rnd(&x);
			if (r & 0x10000)
				v &= 0xff;
			dev_lapic_msr_write(l,
					    0x800 + (uint32_t)(r >> 40) % 0x100,
					    v, step);
			break;
		case 4:
			dev_lapic_msr_read(l,
					   0x800 + (uint32_t)(r >> 40) % 0x100,
					   step, &v);
			break;
		case 5:
			dev_lapic_set_base(l, bases[(r >> 8) % 6]);
			break;
		case 6:
			if (dev_lapic_ack(l) >= 0 && (r & 0x100))
				wr(l, LAPIC_EOI, 0);
			dev_lapic_advance(l, step);
			break;
		default: {
			struct dev_apic_msg m = {
				.dest = (uint32_t)(r >> 8) & 0xff,
				.vector = (uint8_t)(r >> 16),
				.mode = (r >> 24) % 8,
				.logical = (r >> 27) & 1,
				.level = (r >> 28) & 1,
				.assert = true,
			};

			dev_apic_deliver(bus_apics, NR_BUS, -1, &m);
			break;
		}
		}
		check_invariants(l, i, step);
	}
	for (unsigned int i = 0; i < NR_BUS; i++) {
		struct dev_lapic_saved sv;

		dev_lapic_save(bus[i].l, 0, &sv);
		if (!dev_lapic_load(bus[i].l, &sv, 0, err, sizeof(err)))
			fail_msg("APIC %u: its own state refused: %s", i, err);
	}
	bus_teardown();
}

/* 10.8.6.1: CR8 is TPR[7:4]; writing it clears TPR[3:0], and a lower
 * priority lets a held interrupt in. */
static void test_lapic_cr8_is_tpr_high_nibble(void **state)
{
	struct dev_lapic *l = enabled(0);

	(void)state;
	wr(l, LAPIC_TPR, 0x5a);
	assert_int_equal(dev_lapic_get_cr8(l), 5);
	dev_lapic_accept(l, 0x45, false);
	dev_lapic_set_cr8(l, 6);
	assert_int_equal(rd(l, LAPIC_TPR), 0x60);
	assert_int_equal(dev_lapic_pending(l), -1);
	notified = 0;
	dev_lapic_set_cr8(l, 3);
	assert_int_equal(notified, 1);
	assert_int_equal(dev_lapic_pending(l), 0x45);
	dev_lapic_destroy(l);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lapic_reset_values),
		cmocka_unit_test(test_lapic_software_disabled),
		cmocka_unit_test(test_lapic_irr_isr_ppr_eoi),
		cmocka_unit_test(test_lapic_tpr_masks_priority_class),
		cmocka_unit_test(test_lapic_isr_nesting_eoi_order),
		cmocka_unit_test(test_lapic_illegal_vector_sets_esr),
		cmocka_unit_test(test_lapic_reserved_register_and_bad_access),
		cmocka_unit_test(test_lapic_self_ipi),
		cmocka_unit_test(test_lapic_match_physical),
		cmocka_unit_test(test_lapic_match_logical_flat_and_cluster),
		cmocka_unit_test(test_lapic_timer_divide_configuration),
		cmocka_unit_test(test_lapic_timer_one_shot),
		cmocka_unit_test(test_lapic_timer_periodic),
		cmocka_unit_test(test_lapic_timer_masked_counts_silently),
		cmocka_unit_test(
			test_apic_bus_fixed_destinations_and_shorthands),
		cmocka_unit_test(test_apic_bus_logical_flat_and_cluster),
		cmocka_unit_test(
			test_apic_bus_lowest_priority_one_deterministic),
		cmocka_unit_test(test_apic_bus_nmi_init_sipi),
		cmocka_unit_test(test_apic_bus_illegal_vectors),
		cmocka_unit_test(test_apic_bus_level_eoi_broadcast),
		cmocka_unit_test(test_lapic_base_mode_transitions),
		cmocka_unit_test(test_lapic_x2apic_msr_rules),
		cmocka_unit_test(test_apic_bus_x2apic_destinations),
		cmocka_unit_test(test_lapic_tsc_deadline),
		cmocka_unit_test(test_lapic_save_load_round_trip),
		cmocka_unit_test(test_lapic_load_refuses_what_cannot_be),
		cmocka_unit_test(test_lapic_random_sequences_keep_invariants),
		cmocka_unit_test(test_lapic_cr8_is_tpr_high_nibble),
	};
	const struct CMUnitTest threaded[] = {
		cmocka_unit_test(test_lapic_accepts_from_threads_taken_once),
	};

	if (argc > 1 && !strcmp(argv[1], "threads"))
		return cmocka_run_group_tests_name("dev_lapic_threads",
						   threaded, NULL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
