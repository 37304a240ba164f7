/*
 * COM1 (core/dev/serial.c) through its port interface, as a guest driver
 * sees it: transmit, the register file a probe reads back, and the
 * receive side (LSR.DR, RBR, the queue's bound, FCR's clear, reset).
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
#define LCR 3
#define LSR 5
#define SCR 7
#define LSR_DR 0x01
#define LSR_THRE 0x20

static char out[64];
static size_t nout;

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
	return *state ? 0 : -1;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_serial_transmits_in_order,
						setup, teardown),
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
	};

	return cmocka_run_group_tests_name("dev_serial", tests, NULL, NULL);
}
