/*
 * Tests of the local APIC model (core/dev/lapic.c) through its MMIO
 * registers, with host time given explicitly: reset values, software
 * disable, IRR/ISR/PPR with TPR and EOI, nesting of priority classes,
 * illegal vectors and reserved registers in ESR, self-IPI, and the
 * timer's divide configuration, one-shot and periodic modes. Each test
 * names the SDM (vol. 3, chapter 10) section its rule comes from.
 */
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

static bool irr_has(struct dev_lapic *l, unsigned int v)
{
	return (rd(l, LAPIC_IRR + 0x10 * (v / 32)) >> (v % 32)) & 1;
}

static bool isr_has(struct dev_lapic *l, unsigned int v)
{
	return (rd(l, LAPIC_ISR + 0x10 * (v / 32)) >> (v % 32)) & 1;
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
	};
	const struct CMUnitTest threaded[] = {
		cmocka_unit_test(test_lapic_accepts_from_threads_taken_once),
	};

	if (argc > 1 && !strcmp(argv[1], "threads"))
		return cmocka_run_group_tests_name("dev_lapic_threads",
						   threaded, NULL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
