/*
 * COM1 (core/dev/serial.c) through its port interface, as a guest driver
 * sees it: transmit, the register file a probe reads back, the
 * receive side (LSR.DR, RBR, the queue's bound, FCR's clear, reset), and
 * the 16550's interrupts (IER/IIR and their priorities, the THRE
 * interrupt's life, FIFO bits, modem status in loopback) with the
 * interrupt line each change drives.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dev.h"

#define RBR 0
#define IER 1
#define FCR 2
#define IIR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7
#define LSR_DR 0x01
#define LSR_THRE 0x20

static char out[64];
static size_t nout;

/* The interrupt line: its level and how many times it rose. */
static bool line;
static unsigned int rises, line_calls;

static void irq(void *ctx, bool level)
{
	(void)ctx;
	line_calls++;
	if (level && !line)
		rises++;
	line = level;
}

static void sink(void *ctx, const char *buf, size_t len)
{
	(void)ctx;
	for (size_t i = 0; i < len && nout < sizeof(out); i++)
		out[nout++] = buf[i];
}

static uint8_t in8(struct dev_serial *s, unsigned int reg)
{
	uint32_t v = 0;

	dev_serial_pio(s, reg, 1, true, &v);
	return (uint8_t)v;
}

static void out8(struct dev_serial *s, unsigned int reg, uint8_t v)
{
	uint32_t x = v;

	dev_serial_pio(s, reg, 1, false, &x);
}

static int setup(void **state)
{
	nout = 0;
	*state = dev_serial_create(sink, NULL);
	if (!*state)
		return -1;
	line = true; /* connecting drives it low */
	dev_serial_connect_irq(*state, irq, NULL);
	rises = line_calls = 0;
	return 0;
}

static int teardown(void **state)
{
	dev_serial_destroy(*state);
	return 0;
}

static void test_serial_transmits_in_order(void **state)
{
	struct dev_serial *s = *state;

	out8(s, RBR, 'h');
	out8(s, RBR, 'i');
	assert_int_equal(nout, 2);
	assert_memory_equal(out, "hi", 2);
	assert_true(in8(s, LSR) & LSR_THRE);
}

static void test_serial_registers_read_back(void **state)
{
	struct dev_serial *s = *state;

	out8(s, SCR, 0x5a);
	assert_int_equal(in8(s, SCR), 0x5a);
	out8(s, LCR, 0x83); /* DLAB */
	out8(s, RBR, 0x0c); /* divisor 12: 9600 baud */
	out8(s, IER, 0x00);
	assert_int_equal(in8(s, RBR), 0x0c);
	out8(s, LCR, 0x03);
	assert_int_equal(in8(s, LCR), 0x03);
	assert_int_equal(nout, 0); /* the divisor write sent nothing */
}

static void test_serial_receive_sets_dr_and_rbr_pops(void **state)
{
	struct dev_serial *s = *state;

	assert_false(in8(s, LSR) & LSR_DR);
	assert_int_equal(in8(s, RBR), 0);
	assert_int_equal(dev_serial_receive(s, "ab", 2), 2);
	assert_true(in8(s, LSR) & LSR_DR);
	/* With DLAB set, offset 0 is the divisor: nothing is taken. */
	out8(s, LCR, 0x83);
	in8(s, RBR);
	out8(s, LCR, 0x03);
	assert_int_equal(in8(s, RBR), 'a');
	assert_true(in8(s, LSR) & LSR_DR);
	assert_int_equal(in8(s, RBR), 'b');
	assert_false(in8(s, LSR) & LSR_DR);
	assert_int_equal(in8(s, RBR), 0);
}

static void test_serial_receive_queue_is_bounded_and_wraps(void **state)
{
	static uint8_t buf[DEV_SERIAL_RX_SIZE + 100];
	struct dev_serial *s = *state;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7);
	/* Half in, half out, so the queue wraps; then fill it. */
	assert_int_equal(dev_serial_receive(s, buf, 1000), 1000);
	for (size_t i = 0; i < 1000; i++)
		assert_int_equal(in8(s, RBR), buf[i]);
	assert_int_equal(dev_serial_receive(s, buf, sizeof(buf)),
			 DEV_SERIAL_RX_SIZE);
	assert_int_equal(dev_serial_receive(s, buf, 1), 0);
	for (size_t i = 0; i < DEV_SERIAL_RX_SIZE; i++)
		if (in8(s, RBR) != buf[i])
			fail_msg("byte %zu of a full queue came out wrong", i);
	assert_false(in8(s, LSR) & LSR_DR);
}

static void test_serial_fcr_and_reset_empty_the_queue(void **state)
{
	struct dev_serial *s = *state;

	dev_serial_receive(s, "xyz", 3);
	out8(s, FCR, 0x07); /* enable FIFOs, clear receive and transmit */
	assert_false(in8(s, LSR) & LSR_DR);
	assert_int_equal(in8(s, FCR) & 0xc0, 0xc0); /* IIR: FIFOs on */
	dev_serial_receive(s, "xyz", 3);
	dev_serial_reset(s);
	assert_false(in8(s, LSR) & LSR_DR);
	assert_int_equal(in8(s, RBR), 0);
}

static void test_serial_polled_use_never_raises_the_line(void **state)
{
	struct dev_serial *s = *state;

	assert_false(line);
	out8(s, RBR, 'x');
	dev_serial_receive(s, "ab", 2);
	/* LSR reports what IIR does not, with IER 0. */
	assert_int_equal(in8(s, LSR) & (LSR_DR | LSR_THRE), LSR_DR | LSR_THRE);
	assert_int_equal(in8(s, IIR), 0x01);
	in8(s, RBR);
	in8(s, RBR);
	assert_int_equal(rises, 0);
	assert_false(line);
}

static void test_serial_rda_when_input_arrives(void **state)
{
	struct dev_serial *s = *state;

	assert_false(dev_serial_input_interrupts(s));
	out8(s, IER, 0x01);
	assert_true(dev_serial_input_interrupts(s));
	assert_false(line);
	dev_serial_receive(s, "hi", 2);
	assert_true(line);
	assert_int_equal(rises, 1);
	assert_int_equal(in8(s, IIR), 0x04);
	assert_int_equal(in8(s, RBR), 'h');
	assert_true(line); /* one byte left */
	assert_int_equal(in8(s, RBR), 'i');
	assert_false(line);
	assert_int_equal(in8(s, IIR), 0x01);
}

static void test_serial_thre_on_enable_read_iir_clears(void **state)
{
	struct dev_serial *s = *state;

	out8(s, IER, 0x02);
	assert_true(line);
	assert_int_equal(in8(s, IIR), 0x02);
	/* Reading IIR while it named THRE ended that interrupt. */
	assert_false(line);
	assert_int_equal(in8(s, IIR), 0x01);
	/* LSR still says THR is empty. */
	assert_true(in8(s, LSR) & LSR_THRE);
}

static void test_serial_thre_after_each_transmit_is_an_edge(void **state)
{
	struct dev_serial *s = *state;

	out8(s, IER, 0x02);
	in8(s, IIR);
	rises = 0;
	out8(s, RBR, 'a');
	assert_true(line);
	assert_int_equal(rises, 1);
	/* Writing THR while THRE is pending: the line falls and rises. */
	out8(s, RBR, 'b');
	assert_int_equal(rises, 2);
	assert_int_equal(in8(s, IIR), 0x02);
	/* Disabling forgets it; enabling raises it again. */
	out8(s, RBR, 'c');
	out8(s, IER, 0x00);
	assert_false(line);
	assert_int_equal(in8(s, IIR), 0x01);
	out8(s, IER, 0x02);
	assert_true(line);
	assert_int_equal(nout, 3);
}

static void test_serial_iir_priorities(void **state)
{
	struct dev_serial *s = *state;

	/* Loopback with RTS: the modem inputs change, deltas latch. */
	out8(s, MCR, 0x12);
	out8(s, IER, 0x0f);
	dev_serial_receive(s, "z", 1);
	/* Received data over THR empty over modem status. */
	assert_int_equal(in8(s, IIR), 0x04);
	assert_int_equal(in8(s, RBR), 'z');
	assert_int_equal(in8(s, IIR), 0x02);
	assert_int_equal(in8(s, IIR), 0x00);
	assert_true(line);
	/* Idle CTS, DSR, DCD became CTS alone: DSR and DCD changed. */
	assert_int_equal(in8(s, MSR), 0x10 | 0x0a);
	assert_int_equal(in8(s, IIR), 0x01);
	assert_false(line);
	/* THRE is ranked below received data even when it came first. */
	out8(s, RBR, 'q');
	dev_serial_receive(s, "y", 1);
	assert_int_equal(in8(s, IIR), 0x04);
	in8(s, RBR);
	assert_int_equal(in8(s, IIR), 0x02);
}

static void test_serial_fifo_bits_trigger_and_timeout(void **state)
{
	struct dev_serial *s = *state;

	assert_int_equal(in8(s, IIR) & 0xc0, 0x00);
	out8(s, FCR, 0xc1); /* FIFOs on, trigger 14 */
	assert_int_equal(in8(s, IIR), 0xc1);
	out8(s, IER, 0x01);
	dev_serial_receive(s, "0123456789abc", 13);
	/* Below the trigger: a character timeout. */
	assert_int_equal(in8(s, IIR), 0xcc);
	dev_serial_receive(s, "d", 1);
	assert_int_equal(in8(s, IIR), 0xc4);
	/* Trigger 1: received data at once. */
	out8(s, FCR, 0x01);
	assert_int_equal(in8(s, IIR), 0xc4);
	assert_true(in8(s, LSR) & LSR_DR);
	/* Receive reset empties the FIFO; the line falls. */
	out8(s, FCR, 0x03);
	assert_false(in8(s, LSR) & LSR_DR);
	assert_false(line);
	/* Turning the FIFOs off resets them too. */
	dev_serial_receive(s, "e", 1);
	out8(s, FCR, 0x00);
	assert_false(in8(s, LSR) & LSR_DR);
	assert_int_equal(in8(s, IIR), 0x01);
	/* Without bit 0 the other bits are not programmed. */
	out8(s, FCR, 0xc0);
	assert_int_equal(in8(s, IIR) & 0xc0, 0x00);
}

static void test_serial_loopback_msr_for_a_probe(void **state)
{
	struct dev_serial *s = *state;

	assert_int_equal(in8(s, MSR), 0xb0);
	/* Linux's 8250 probe: loopback with RTS and OUT2 must read back
	 * CTS and DCD. */
	out8(s, MCR, 0x1a);
	assert_int_equal(in8(s, MSR) & 0xf0, 0x90);
	out8(s, MCR, 0x15); /* DTR, OUT1: DSR, RI */
	assert_int_equal(in8(s, MSR), 0x60 | 0x0b);
	/* RI's trailing edge sets TERI. */
	out8(s, MCR, 0x11);
	assert_int_equal(in8(s, MSR), 0x20 | 0x04);
	assert_int_equal(in8(s, MSR), 0x20);
}

static void test_serial_reset_lowers_the_line(void **state)
{
	struct dev_serial *s = *state;

	out8(s, IER, 0x02);
	assert_true(line);
	dev_serial_reset(s);
	assert_false(line);
	assert_int_equal(in8(s, IER), 0);
}

static void test_serial_load_takes_enabled_thre_as_pending(void **state)
{
	struct dev_serial *s = *state;
	static struct dev_serial_state st;
	char err[64];

	out8(s, IER, 0x02);
	in8(s, IIR); /* THRE taken */
	assert_false(line);
	dev_serial_save(s, &st);
	st.fcr = 0xf5; /* bits 2, 4, 5 as an older mmud kept them */
	assert_true(dev_serial_load(s, &st, err, sizeof(err)));
	assert_true(line);
	assert_int_equal(in8(s, IIR), 0xc2);
	dev_serial_save(s, &st);
	assert_int_equal(st.fcr, 0xc1);
	/* A refused state changes nothing, the line included. */
	st.ier = 0x10;
	assert_false(dev_serial_load(s, &st, err, sizeof(err)));
	assert_string_equal(err, "COM1 ier out of range");
	assert_false(line);
}

/* The interrupt latches migration carries beside the registers
 * (docs/MIGRATION.md, "VM interrupt state"): loaded as they were, the
 * line driven to match; bad delta bits refused, nothing changed. */
static void test_serial_irq_latches_save_and_load(void **state)
{
	struct dev_serial *s = *state;
	struct dev_serial_irq_state st;
	char err[64];

	out8(s, IER, 0x0a); /* THRE and modem status */
	dev_serial_save_irq(s, &st);
	assert_true(st.thre_pending);
	assert_int_equal(st.msr_delta, 0);
	in8(s, IIR); /* THRE taken */
	assert_false(line);
	st.thre_pending = false;
	st.msr_delta = 0x01; /* DCTS */
	assert_true(dev_serial_load_irq(s, &st, err, sizeof(err)));
	assert_true(line);
	assert_int_equal(in8(s, IIR) & 0x0f, 0x00); /* modem status */
	assert_int_equal(in8(s, MSR) & 0x0f, 0x01);
	assert_false(line);
	st.thre_pending = true;
	st.msr_delta = 0;
	assert_true(dev_serial_load_irq(s, &st, err, sizeof(err)));
	assert_true(line);
	assert_int_equal(in8(s, IIR) & 0x0f, 0x02);
	assert_false(line);
	/* Refused: delta bits 4-7; the latches and the line stay. */
	st.thre_pending = true;
	st.msr_delta = 0x10;
	assert_false(dev_serial_load_irq(s, &st, err, sizeof(err)));
	assert_string_equal(err, "COM1 msr_delta 0x10 out of range");
	assert_false(line);
	dev_serial_save_irq(s, &st);
	assert_false(st.thre_pending);
	assert_int_equal(st.msr_delta, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_serial_transmits_in_order,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_irq_latches_save_and_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serial_registers_read_back,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_receive_sets_dr_and_rbr_pops, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_receive_queue_is_bounded_and_wraps, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_fcr_and_reset_empty_the_queue, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_polled_use_never_raises_the_line, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_rda_when_input_arrives, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_thre_on_enable_read_iir_clears, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_thre_after_each_transmit_is_an_edge, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_serial_iir_priorities,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_fifo_bits_trigger_and_timeout, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_loopback_msr_for_a_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_reset_lowers_the_line, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_serial_load_takes_enabled_thre_as_pending, setup,
			teardown),
	};

	return cmocka_run_group_tests_name("dev_serial", tests, NULL, NULL);
}
