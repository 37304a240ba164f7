/*
 * Tests of exec_io.c: IN/OUT exits with port, size and value,
 * x86_io_complete() writing AL/AX/EAX (EAX zero-extended into RAX), the
 * string forms with REP (one exit per element, RSI/RDI/RCX stepping,
 * DF), and the I/O privilege check: IOPL, then the TSS I/O permission
 * bitmap (SDM vol. 1, 19.5).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sys_setup.h"

static void test_io_out_exits_with_port_size_value(void **state)
{
	/* out %al,$0x80; out %eax,%dx; out %ax,%dx (DX = 0x3f8) */
	static const uint8_t code[] = { 0xb0, 0x41, 0xe6, 0x80, 0x66, 0xba,
					0xf8, 0x03, 0xb8, 0x78, 0x56, 0x34,
					0x12, 0xef, 0x66, 0xef };
	struct xh *h = sys_new();

	(void)state;
	sys_run_ok(h, code, sizeof(code));
	assert_int_equal(h->nr_outs, 3);
	assert_int_equal(h->outs[0].port, 0x80);
	assert_int_equal(h->outs[0].size, 1);
	assert_int_equal(h->outs[0].value, 0x41);
	assert_int_equal(h->outs[1].port, 0x3f8);
	assert_int_equal(h->outs[1].size, 4);
	assert_int_equal(h->outs[1].value, 0x12345678);
	assert_int_equal(h->outs[2].size, 2);
	assert_int_equal(h->outs[2].value, 0x5678);
	xh_free(h);
}

static void test_io_out_exit_retired_before_exit(void **state)
{
	static const uint8_t code[] = { 0xe6, 0x80 };
	struct xh *h = sys_new();
	struct x86_exit exit;

	(void)state;
	xh_place_code(h, code, sizeof(code));
	assert_int_equal(x86_run(h->cpu, 10, &exit), X86_EXIT_IO);
	assert_false(exit.io.in);
	assert_int_equal(sys_rip(h), XH_CODE + 2);
	xh_free(h);
}

static void test_io_in_widths_zero_extend_only_eax(void **state)
{
	static const uint8_t code[] = { 0xe4, 0x60, 0x48, 0x89, 0xc3, 0x66,
					0xba, 0xf8, 0x03, 0xed, 0x48, 0x89,
					0xc1, 0x48, 0xc7, 0xc0, 0xff, 0xff,
					0xff, 0xff, 0x66, 0xed };
	struct xh *h = sys_new();

	(void)state;
	h->in_value = 0xaabbccdd;
	sys_set_reg(h, X86_RAX, 0x1111111111111100ULL);
	sys_run_ok(h, code, sizeof(code));
	assert_int_equal(sys_reg(h, X86_RBX), 0x11111111111111ddULL);
	assert_int_equal(sys_reg(h, X86_RCX), 0xaabbccddULL);
	assert_int_equal(sys_reg(h, X86_RAX), 0xffffffffffffccddULL);
	xh_free(h);
}

static void test_io_in_exit_then_complete_writes_al(void **state)
{
	static const uint8_t code[] = { 0xe4, 0x60 };
	struct xh *h = sys_new();
	struct x86_exit exit;

	(void)state;
	xh_place_code(h, code, sizeof(code));
	sys_set_reg(h, X86_RAX, 0x1234);
	assert_int_equal(x86_run(h->cpu, 10, &exit), X86_EXIT_IO);
	assert_true(exit.io.in);
	assert_int_equal(exit.io.port, 0x60);
	assert_int_equal(exit.io.size, 1);
	x86_io_complete(h->cpu, 0x5a);
	assert_int_equal(sys_reg(h, X86_RAX), 0x125a);
	xh_free(h);
}

static void test_io_rep_outsb_one_exit_per_element(void **state)
{
	static const uint8_t code[] = { 0xbe, 0x00, 0x00, 0x30, 0x00, 0xb9,
					0x03, 0x00, 0x00, 0x00, 0x66, 0xba,
					0xf8, 0x03, 0xf3, 0x6e };
	struct xh *h = sys_new();

	(void)state;
	xh_load(h, SYS_DATA, "abc", 3);
	sys_run_ok(h, code, sizeof(code));
	assert_int_equal(h->nr_outs, 3);
	assert_int_equal(h->outs[0].value, 'a');
	assert_int_equal(h->outs[1].value, 'b');
	assert_int_equal(h->outs[2].value, 'c');
	assert_int_equal(sys_reg(h, X86_RSI), SYS_DATA + 3);
	assert_int_equal(sys_reg(h, X86_RCX), 0);
	xh_free(h);
}

static void test_io_rep_insb_stores_each_element(void **state)
{
	static const uint8_t code[] = { 0xbf, 0x00, 0x00, 0x30, 0x00, 0xb9,
					0x04, 0x00, 0x00, 0x00, 0x66, 0xba,
					0xf8, 0x03, 0xf3, 0x6c };
	struct xh *h = sys_new();
	struct x86_exit exit;
	unsigned int exits = 0;
	uint8_t *p = xh_ptr(h, SYS_DATA);

	(void)state;
	xh_place_code(h, code, sizeof(code));
	while (x86_run(h->cpu, 1000, &exit) == X86_EXIT_IO) {
		assert_true(exit.io.in);
		assert_int_equal(exit.io.port, 0x3f8);
		x86_io_complete(h->cpu, 0x50 + exits);
		exits++;
	}
	assert_int_equal(exit.reason, X86_EXIT_HLT);
	assert_int_equal(exits, 4);
	assert_int_equal(p[0], 0x50);
	assert_int_equal(p[3], 0x53);
	assert_int_equal(sys_reg(h, X86_RDI), SYS_DATA + 4);
	assert_int_equal(sys_reg(h, X86_RCX), 0);
	xh_free(h);
}

static void test_io_insw_with_df_steps_down(void **state)
{
	static const uint8_t code[] = { 0xfd, 0xbf, 0x10, 0x00, 0x30,
					0x00, 0x66, 0xba, 0xf8, 0x03,
					0x66, 0x6d, 0xfc };
	struct xh *h = sys_new();
	uint16_t v;

	(void)state;
	h->in_value = 0xbeef;
	sys_run_ok(h, code, sizeof(code));
	memcpy(&v, xh_ptr(h, SYS_DATA + 0x10), 2);
	assert_int_equal(v, 0xbeef);
	assert_int_equal(sys_reg(h, X86_RDI), SYS_DATA + 0x0e);
	xh_free(h);
}

static void test_io_cpl3_without_bitmap_gp(void **state)
{
	static const uint8_t code[] = { 0xe6, 0x80 };
	struct xh *h = sys_new();

	(void)state;
	sys_enter_cpl3(h);
	sys_run_fault(h, code, sizeof(code), X86_GP);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 48), 0);
	assert_int_equal(h->nr_outs, 0);
	xh_free(h);
}

static void test_io_cpl3_iopl3_allowed(void **state)
{
	static const uint8_t code[] = { 0xe6, 0x80 };
	struct xh *h = sys_new();

	(void)state;
	sys_enter_cpl3(h);
	sys_set_rflags(h, 0x3002);
	/* The OUT goes through; the final HLT faults at CPL3. */
	sys_run_fault(h, code, sizeof(code), X86_GP);
	assert_int_equal(h->nr_outs, 1);
	xh_free(h);
}

static void test_io_cpl3_bitmap_grants_single_port(void **state)
{
	static const uint8_t ok[] = { 0xe6, 0x80 };
	static const uint8_t other[] = { 0xe6, 0x81 };
	static const uint8_t wide[] = { 0x66, 0xe7, 0x80 };
	struct xh *h = sys_new();
	struct x86_exit exit;
	struct x86_sregs s;
	uint8_t *bitmap = xh_ptr(h, SYS_TSS + 0x68);

	(void)state;
	/* A bitmap covering ports 0-0x8f (the TSS limit ends it; ports
	 * beyond are denied), every port denied but 0x80. */
	memset(bitmap, 0xff, 0x12);
	bitmap[0x80 / 8] &= (uint8_t)~1u;
	x86_get_sregs(h->cpu, &s);
	s.tr.limit = 0x68 + 0x11;
	x86_set_sregs(h->cpu, &s);
	sys_enter_cpl3(h);

	sys_run_fault(h, ok, sizeof(ok), X86_GP); /* the HLT */
	assert_int_equal(sys_read64(h, SYS_RSP0 - 40), XH_CODE + 2);
	assert_int_equal(h->nr_outs, 1);

	sys_enter_cpl3(h);
	assert_int_equal(sys_run(h, other, sizeof(other), &exit), X86_EXIT_HLT);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 40), XH_CODE);

	/* A 16-bit access also needs port 0x81's bit. */
	sys_enter_cpl3(h);
	assert_int_equal(sys_run(h, wide, sizeof(wide), &exit), X86_EXIT_HLT);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 40), XH_CODE);
	assert_int_equal(h->nr_outs, 1);
	xh_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_io_out_exits_with_port_size_value),
		cmocka_unit_test(test_io_out_exit_retired_before_exit),
		cmocka_unit_test(test_io_in_widths_zero_extend_only_eax),
		cmocka_unit_test(test_io_in_exit_then_complete_writes_al),
		cmocka_unit_test(test_io_rep_outsb_one_exit_per_element),
		cmocka_unit_test(test_io_rep_insb_stores_each_element),
		cmocka_unit_test(test_io_insw_with_df_steps_down),
		cmocka_unit_test(test_io_cpl3_without_bitmap_gp),
		cmocka_unit_test(test_io_cpl3_iopl3_allowed),
		cmocka_unit_test(test_io_cpl3_bitmap_grants_single_port),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
