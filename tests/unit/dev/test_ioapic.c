/*
 * Tests of the I/O APIC (core/dev/ioapic.c) through its MMIO window, as
 * a guest driver sees it, with a recording deliver callback standing in
 * for the local APICs: reset values, the ID/version/arbitration
 * registers, the redirection entries' writable bits, edge pins (one
 * message per asserting edge, lost while masked, polarity), level pins
 * (remote IRR, EOI through the register and by broadcast, re-delivery of
 * a still-asserted line), the message fields, and indexes, offsets and
 * sizes that name nothing. Rules are from the 82093AA datasheet and the
 * ICH I/O xAPIC (version 20H) description.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ioapic.h"

#define MAX_SENT 64

static struct dev_ioapic_msg sent[MAX_SENT];
static unsigned int nsent;
static struct dev_ioapic *eoi_from_deliver; /* EOI from inside deliver */

static void record(void *ctx, const struct dev_ioapic_msg *msg)
{
	(void)ctx;
	if (nsent < MAX_SENT)
		sent[nsent] = *msg;
	nsent++;
	/* A local APIC may answer on the same thread: must not deadlock.
	 * Once only: the line stays asserted, so each EOI sends again. */
	if (eoi_from_deliver) {
		struct dev_ioapic *io = eoi_from_deliver;

		eoi_from_deliver = NULL;
		dev_ioapic_eoi(io, 0x99);
	}
}

static uint32_t rd(struct dev_ioapic *io, unsigned int idx)
{
	dev_ioapic_mmio_write(io, IOAPIC_IOREGSEL, 4, idx);
	return (uint32_t)dev_ioapic_mmio_read(io, IOAPIC_IOWIN, 4);
}

static void wr(struct dev_ioapic *io, unsigned int idx, uint32_t v)
{
	dev_ioapic_mmio_write(io, IOAPIC_IOREGSEL, 4, idx);
	dev_ioapic_mmio_write(io, IOAPIC_IOWIN, 4, v);
}

static uint64_t rte(struct dev_ioapic *io, unsigned int pin)
{
	return rd(io, 0x10 + 2 * pin) | (uint64_t)rd(io, 0x11 + 2 * pin) << 32;
}

static void set_rte(struct dev_ioapic *io, unsigned int pin, uint64_t v)
{
	wr(io, 0x11 + 2 * pin, (uint32_t)(v >> 32));
	wr(io, 0x10 + 2 * pin, (uint32_t)v);
}

static int setup(void **state)
{
	nsent = 0;
	eoi_from_deliver = NULL;
	*state = dev_ioapic_create(record, NULL);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	dev_ioapic_destroy(*state);
	return 0;
}

static void test_ioapic_reset_values(void **state)
{
	struct dev_ioapic *io = *state;

	assert_int_equal(rd(io, IOAPIC_REG_ID), 0);
	/* Version 20H, maximum redirection entry 23. */
	assert_int_equal(rd(io, IOAPIC_REG_VERSION), 0x00170020);
	assert_int_equal(rd(io, IOAPIC_REG_ARB), 0);
	for (unsigned int pin = 0; pin < DEV_IOAPIC_PINS; pin++)
		assert_int_equal(rte(io, pin), IOAPIC_RTE_MASK);
	/* IOREGSEL reads back the index. */
	dev_ioapic_mmio_write(io, IOAPIC_IOREGSEL, 4, 0x2b);
	assert_int_equal(dev_ioapic_mmio_read(io, IOAPIC_IOREGSEL, 4), 0x2b);
}

static void test_ioapic_id_loads_arbitration_id(void **state)
{
	struct dev_ioapic *io = *state;

	wr(io, IOAPIC_REG_ID, 0xffffffff);
	assert_int_equal(rd(io, IOAPIC_REG_ID), 0x0f000000);
	assert_int_equal(rd(io, IOAPIC_REG_ARB), 0x0f000000);
	/* Version and arbitration are read-only. */
	wr(io, IOAPIC_REG_VERSION, 0);
	wr(io, IOAPIC_REG_ARB, 0x03000000);
	assert_int_equal(rd(io, IOAPIC_REG_VERSION), 0x00170020);
	assert_int_equal(rd(io, IOAPIC_REG_ARB), 0x0f000000);
	dev_ioapic_reset(io);
	assert_int_equal(rd(io, IOAPIC_REG_ID), 0);
	assert_int_equal(rd(io, IOAPIC_REG_ARB), 0);
}

static void test_ioapic_rte_writable_bits(void **state)
{
	struct dev_ioapic *io = *state;

	set_rte(io, 3, ~0ULL);
	/* Delivery status, remote IRR and bits 55:17 stay 0. */
	assert_int_equal(rte(io, 3), 0xff0000000001afffULL);
	set_rte(io, 3, 0);
	assert_int_equal(rte(io, 3), 0);
	/* The neighbours are untouched. */
	assert_int_equal(rte(io, 2), IOAPIC_RTE_MASK);
	assert_int_equal(rte(io, 4), IOAPIC_RTE_MASK);
}

static void test_ioapic_edge_sends_once_per_rising_edge(void **state)
{
	struct dev_ioapic *io = *state;

	assert_true(dev_ioapic_is_masked(io, 4));
	set_rte(io, 4, 0x31 | (2ULL << 56));
	assert_false(dev_ioapic_is_masked(io, 4));
	assert_true(dev_ioapic_is_masked(io, DEV_IOAPIC_PINS));
	dev_ioapic_set_irq(io, 4, true);
	assert_int_equal(nsent, 1);
	assert_int_equal(sent[0].vector, 0x31);
	assert_int_equal(sent[0].dest, 2);
	assert_int_equal(sent[0].delivery_mode, IOAPIC_DM_FIXED);
	assert_false(sent[0].logical);
	assert_false(sent[0].level);
	assert_int_equal(sent[0].pin, 4);
	/* Staying high is not an edge; neither is falling. */
	dev_ioapic_set_irq(io, 4, true);
	dev_ioapic_set_irq(io, 4, false);
	assert_int_equal(nsent, 1);
	dev_ioapic_set_irq(io, 4, true);
	assert_int_equal(nsent, 2);
	/* Edge entries have no remote IRR. */
	assert_int_equal(rte(io, 4) & IOAPIC_RTE_REMOTE_IRR, 0);
}

static void test_ioapic_edge_lost_while_masked(void **state)
{
	struct dev_ioapic *io = *state;

	set_rte(io, 4, 0x31 | IOAPIC_RTE_MASK);
	dev_ioapic_set_irq(io, 4, true);
	dev_ioapic_set_irq(io, 4, false);
	dev_ioapic_set_irq(io, 4, true);
	set_rte(io, 4, 0x31);
	/* Unmasking while high is not an edge. */
	assert_int_equal(nsent, 0);
	dev_ioapic_set_irq(io, 4, false);
	dev_ioapic_set_irq(io, 4, true);
	assert_int_equal(nsent, 1);
}

static void test_ioapic_active_low_asserts_on_falling_edge(void **state)
{
	struct dev_ioapic *io = *state;

	dev_ioapic_set_irq(io, 7, true); /* idle high */
	set_rte(io, 7, 0x40 | IOAPIC_RTE_POLARITY);
	dev_ioapic_set_irq(io, 7, false);
	assert_int_equal(nsent, 1);
	assert_int_equal(sent[0].vector, 0x40);
	dev_ioapic_set_irq(io, 7, true);
	assert_int_equal(nsent, 1);
}

static void test_ioapic_level_remote_irr_and_eoi_register(void **state)
{
	struct dev_ioapic *io = *state;

	set_rte(io, 9,
		0x55 | IOAPIC_RTE_LEVEL | IOAPIC_RTE_DESTMODE |
			(0x0fULL << 56));
	dev_ioapic_set_irq(io, 9, true);
	assert_int_equal(nsent, 1);
	assert_true(sent[0].level);
	assert_true(sent[0].logical);
	assert_int_equal(sent[0].dest, 0x0f);
	assert_true(rte(io, 9) & IOAPIC_RTE_REMOTE_IRR);
	/* While remote IRR is set, the asserted line sends nothing more. */
	dev_ioapic_set_irq(io, 9, false);
	dev_ioapic_set_irq(io, 9, true);
	assert_int_equal(nsent, 1);
	/* EOI of another vector changes nothing. */
	dev_ioapic_mmio_write(io, IOAPIC_EOI, 4, 0x56);
	assert_true(rte(io, 9) & IOAPIC_RTE_REMOTE_IRR);
	assert_int_equal(nsent, 1);
	/* EOI of ours, line still asserted: delivered again. */
	dev_ioapic_mmio_write(io, IOAPIC_EOI, 4, 0x55);
	assert_int_equal(nsent, 2);
	assert_true(rte(io, 9) & IOAPIC_RTE_REMOTE_IRR);
	/* Deasserted, then EOI: remote IRR clears, nothing is sent. */
	dev_ioapic_set_irq(io, 9, false);
	dev_ioapic_mmio_write(io, IOAPIC_EOI, 1, 0x55);
	assert_int_equal(nsent, 2);
	assert_int_equal(rte(io, 9) & IOAPIC_RTE_REMOTE_IRR, 0);
	/* EOI reads 0. */
	assert_int_equal(dev_ioapic_mmio_read(io, IOAPIC_EOI, 4), 0);
}

static void test_ioapic_level_broadcast_eoi(void **state)
{
	struct dev_ioapic *io = *state;

	/* Two pins share the vector: one EOI clears both. */
	set_rte(io, 10, 0x60 | IOAPIC_RTE_LEVEL);
	set_rte(io, 11, 0x60 | IOAPIC_RTE_LEVEL);
	dev_ioapic_set_irq(io, 10, true);
	dev_ioapic_set_irq(io, 11, true);
	assert_int_equal(nsent, 2);
	dev_ioapic_set_irq(io, 11, false);
	dev_ioapic_eoi(io, 0x60);
	assert_int_equal(rte(io, 11) & IOAPIC_RTE_REMOTE_IRR, 0);
	/* Pin 10 is still asserted: sent again, remote IRR set again. */
	assert_int_equal(nsent, 3);
	assert_int_equal(sent[2].pin, 10);
	assert_true(rte(io, 10) & IOAPIC_RTE_REMOTE_IRR);
}

static void test_ioapic_level_masked_sends_on_unmask(void **state)
{
	struct dev_ioapic *io = *state;

	set_rte(io, 12, 0x70 | IOAPIC_RTE_LEVEL | IOAPIC_RTE_MASK);
	dev_ioapic_set_irq(io, 12, true);
	assert_int_equal(nsent, 0);
	assert_int_equal(rte(io, 12) & IOAPIC_RTE_REMOTE_IRR, 0);
	set_rte(io, 12, 0x70 | IOAPIC_RTE_LEVEL);
	assert_int_equal(nsent, 1);
	assert_true(rte(io, 12) & IOAPIC_RTE_REMOTE_IRR);
	/* Switched to edge, the entry forgets remote IRR. */
	set_rte(io, 12, 0x70);
	assert_int_equal(rte(io, 12) & IOAPIC_RTE_REMOTE_IRR, 0);
}

static void test_ioapic_nmi_level_entry_acts_as_edge(void **state)
{
	struct dev_ioapic *io = *state;

	set_rte(io, 5, 0x02 | (IOAPIC_DM_NMI << 8) | IOAPIC_RTE_LEVEL);
	dev_ioapic_set_irq(io, 5, true);
	assert_int_equal(nsent, 1);
	assert_int_equal(sent[0].delivery_mode, IOAPIC_DM_NMI);
	assert_false(sent[0].level);
	assert_int_equal(rte(io, 5) & IOAPIC_RTE_REMOTE_IRR, 0);
	dev_ioapic_eoi(io, 0x02);
	assert_int_equal(nsent, 1);
}

static void test_ioapic_eoi_from_inside_deliver(void **state)
{
	struct dev_ioapic *io = *state;

	eoi_from_deliver = io;
	set_rte(io, 1, 0x99 | IOAPIC_RTE_LEVEL);
	dev_ioapic_set_irq(io, 1, true);
	/* The delivery, and the one the EOI made from inside it. */
	assert_int_equal(nsent, 2);
	assert_true(rte(io, 1) & IOAPIC_RTE_REMOTE_IRR);
}

static void test_ioapic_bad_index_offset_and_size(void **state)
{
	struct dev_ioapic *io = *state;
	struct dev_ioapic_state before, after;

	/* Compared whole below: the padding after ioregsel must match. */
	memset(&before, 0, sizeof(before));
	memset(&after, 0, sizeof(after));
	dev_ioapic_save(io, &before);
	/* Indexes past the last entry and between the registers. */
	for (unsigned int idx = 0x03; idx < 0x100; idx++) {
		if (idx >= 0x10 && idx < 0x40)
			continue;
		wr(io, idx, 0xffffffff);
		assert_int_equal(rd(io, idx), 0);
	}
	/* Offsets that are no register, sizes that are no access. */
	dev_ioapic_mmio_write(io, 0x20, 4, 0xffffffff);
	dev_ioapic_mmio_write(io, 0xffc, 8, ~0ULL);
	dev_ioapic_mmio_write(io, 0x1000, 4, 0xffffffff);
	dev_ioapic_mmio_write(io, IOAPIC_IOWIN, 3, 0xffffffff);
	assert_int_equal(dev_ioapic_mmio_read(io, 0x20, 4), 0);
	assert_int_equal(dev_ioapic_mmio_read(io, 0xffc, 8), 0);
	assert_int_equal(dev_ioapic_mmio_read(io, 0x2000, 4), 0);
	dev_ioapic_set_irq(io, DEV_IOAPIC_PINS, true);
	dev_ioapic_set_irq(io, ~0u, true);
	dev_ioapic_save(io, &after);
	after.ioregsel = before.ioregsel;
	assert_memory_equal(&before, &after, sizeof(before));
	assert_int_equal(nsent, 0);
}

static void test_ioapic_narrow_accesses_use_byte_lanes(void **state)
{
	struct dev_ioapic *io = *state;

	dev_ioapic_mmio_write(io, IOAPIC_IOREGSEL, 1, 0x10 + 2 * 6);
	/* Byte 1 of the low half: delivery mode NMI (bits 10:8). */
	dev_ioapic_mmio_write(io, IOAPIC_IOWIN + 1, 1, 0x04);
	assert_int_equal(rte(io, 6), IOAPIC_RTE_MASK | (4ULL << 8));
	dev_ioapic_mmio_write(io, IOAPIC_IOREGSEL, 1, 0x10 + 2 * 6);
	assert_int_equal(dev_ioapic_mmio_read(io, IOAPIC_IOWIN + 1, 1), 0x04);
	assert_int_equal(dev_ioapic_mmio_read(io, IOAPIC_IOWIN + 2, 2), 0x01);
	/* An 8-byte read at 0 sees IOREGSEL and nothing else. */
	assert_int_equal(dev_ioapic_mmio_read(io, 0, 8), 0x10 + 2 * 6);
}

static void test_ioapic_reset_keeps_pin_levels(void **state)
{
	struct dev_ioapic *io = *state;
	struct dev_ioapic_state st;

	set_rte(io, 4, 0x31);
	dev_ioapic_set_irq(io, 4, true);
	dev_ioapic_reset(io);
	dev_ioapic_save(io, &st);
	assert_int_equal(st.pin_levels, 1u << 4);
	assert_int_equal(st.redir[4], IOAPIC_RTE_MASK);
}

static void test_ioapic_save_load_round_trip_and_refusals(void **state)
{
	struct dev_ioapic *io = *state,
			  *other = dev_ioapic_create(record, NULL);
	struct dev_ioapic_state st, bad, after;
	char err[96];

	assert_non_null(other);
	wr(io, IOAPIC_REG_ID, 0x05000000);
	set_rte(io, 9, 0x55 | IOAPIC_RTE_LEVEL | (3ULL << 56));
	dev_ioapic_set_irq(io, 9, true);
	set_rte(io, 4, 0x31);
	memset(&st, 0, sizeof(st)); /* padding, for the compares */
	memset(&after, 0, sizeof(after));
	dev_ioapic_save(io, &st);
	assert_true(st.redir[9] & IOAPIC_RTE_REMOTE_IRR);
	assert_true(dev_ioapic_load(other, &st, err, sizeof(err)));
	dev_ioapic_save(other, &after);
	assert_memory_equal(&st, &after, sizeof(st));
	/* Loading sends nothing; the EOI then re-sends the held level. */
	nsent = 0;
	dev_ioapic_eoi(other, 0x55);
	assert_int_equal(nsent, 1);
	assert_int_equal(sent[0].dest, 3);

	bad = st;
	bad.id = 16;
	bad.arb = 16;
	assert_false(dev_ioapic_load(other, &bad, err, sizeof(err)));
	assert_string_equal(err, "IOAPIC id out of range");
	bad = st;
	bad.arb = 1;
	assert_false(dev_ioapic_load(other, &bad, err, sizeof(err)));
	assert_string_equal(err, "IOAPIC arbitration id out of range");
	bad = st;
	bad.pin_levels = 1u << 24;
	assert_false(dev_ioapic_load(other, &bad, err, sizeof(err)));
	bad = st;
	bad.redir[7] = IOAPIC_RTE_MASK | (1ULL << 40);
	assert_false(dev_ioapic_load(other, &bad, err, sizeof(err)));
	assert_string_equal(err, "IOAPIC entry 7: reserved bits set");
	bad = st;
	bad.redir[4] |= IOAPIC_RTE_REMOTE_IRR;
	assert_false(dev_ioapic_load(other, &bad, err, sizeof(err)));
	assert_string_equal(err, "IOAPIC entry 4: remote IRR on an edge entry");
	bad = st;
	bad.redir[2] = IOAPIC_RTE_DELIVS;
	assert_false(dev_ioapic_load(other, &bad, err, sizeof(err)));
	/* None of the refusals changed anything (the EOI above sent pin
	 * 9 again, so its remote IRR is set as saved). */
	dev_ioapic_save(other, &after);
	assert_memory_equal(&st, &after, sizeof(st));
	dev_ioapic_destroy(other);
}

/* ---- from several threads at once ------------------------------------ */

#ifdef MMUD_TSAN
#define ROUNDS 20000
#else
#define ROUNDS 200000
#endif

static _Atomic unsigned long edge_sent, level_sent, eois;

static void count_sent(void *ctx, const struct dev_ioapic_msg *msg)
{
	(void)ctx;
	if (msg->pin == 4)
		edge_sent++;
	else
		level_sent++;
}

/* A device toggling edge pin 4: ROUNDS rising edges. */
static void *toggler(void *arg)
{
	struct dev_ioapic *io = arg;

	for (unsigned int i = 0; i < ROUNDS; i++) {
		dev_ioapic_set_irq(io, 4, true);
		dev_ioapic_set_irq(io, 4, false);
	}
	return NULL;
}

/* A vCPU ending level vector 0x60 over and over. */
static void *eoier(void *arg)
{
	struct dev_ioapic *io = arg;

	for (unsigned int i = 0; i < ROUNDS; i++) {
		if (i & 1)
			dev_ioapic_eoi(io, 0x60);
		else
			dev_ioapic_mmio_write(io, IOAPIC_EOI, 4, 0x60);
		eois++;
	}
	return NULL;
}

/* A vCPU reading the table through the window (IOREGSEL is shared: the
 * values it reads are whatever the last selection named). */
static void *reader(void *arg)
{
	struct dev_ioapic *io = arg;

	for (unsigned int i = 0; i < ROUNDS; i++) {
		dev_ioapic_mmio_write(io, IOAPIC_IOREGSEL, 4, 0x10 + i % 48);
		(void)dev_ioapic_mmio_read(io, IOAPIC_IOWIN, 4);
	}
	return NULL;
}

/*
 * Pin 9 held asserted, level-triggered: every EOI finds remote IRR set
 * (the re-delivery sets it again under the same lock), so the level pin
 * sends exactly once more than there were EOIs; pin 4, edge, sends once
 * per rising edge. Nothing lost, nothing doubled, no deadlock.
 */
static void test_ioapic_threads_count_every_message(void **state)
{
	struct dev_ioapic *io = dev_ioapic_create(count_sent, NULL);
	pthread_t t[3];

	(void)state;
	assert_non_null(io);
	edge_sent = level_sent = eois = 0;
	set_rte(io, 4, 0x31);
	set_rte(io, 9, 0x60 | IOAPIC_RTE_LEVEL);
	dev_ioapic_set_irq(io, 9, true);
	assert_int_equal(level_sent, 1);
	assert_int_equal(pthread_create(&t[0], NULL, toggler, io), 0);
	assert_int_equal(pthread_create(&t[1], NULL, eoier, io), 0);
	assert_int_equal(pthread_create(&t[2], NULL, reader, io), 0);
	for (unsigned int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	if (edge_sent != ROUNDS)
		fail_msg("pin 4: %lu messages for %u rising edges", edge_sent,
			 ROUNDS);
	if (level_sent != eois + 1)
		fail_msg("pin 9: %lu messages for %lu EOIs", level_sent, eois);
	assert_true(rte(io, 9) & IOAPIC_RTE_REMOTE_IRR);
	dev_ioapic_destroy(io);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_ioapic_reset_values),
		T(test_ioapic_id_loads_arbitration_id),
		T(test_ioapic_rte_writable_bits),
		T(test_ioapic_edge_sends_once_per_rising_edge),
		T(test_ioapic_edge_lost_while_masked),
		T(test_ioapic_active_low_asserts_on_falling_edge),
		T(test_ioapic_level_remote_irr_and_eoi_register),
		T(test_ioapic_level_broadcast_eoi),
		T(test_ioapic_level_masked_sends_on_unmask),
		T(test_ioapic_nmi_level_entry_acts_as_edge),
		T(test_ioapic_eoi_from_inside_deliver),
		T(test_ioapic_bad_index_offset_and_size),
		T(test_ioapic_narrow_accesses_use_byte_lanes),
		T(test_ioapic_reset_keeps_pin_levels),
		T(test_ioapic_save_load_round_trip_and_refusals),
#undef T
	};
	const struct CMUnitTest threaded[] = {
		cmocka_unit_test(test_ioapic_threads_count_every_message),
	};

	if (argc > 1 && !strcmp(argv[1], "threads"))
		return cmocka_run_group_tests_name("dev_ioapic_threads",
						   threaded, NULL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
