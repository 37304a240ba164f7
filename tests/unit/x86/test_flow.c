/*
 * Tests of exec_flow.c: JMP, Jcc, CALL, RET, LOOP/JRCXZ, ENTER/LEAVE and
 * the NOP forms, run through the harness. Jcc and LOOP/JRCXZ are
 * differential against the host CPU (hostexec) over every condition and
 * flag combination; CALL/RET/ENTER are checked by their stack contents,
 * non-canonical targets by the #GP they must raise with nothing changed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "hostexec.h"
#include "rng.h"

#define DATA 0x300000ULL /* a scratch data page */
#define FLAGS_ARITH 0x8d5ULL /* CF PF AF ZF SF OF */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	return splitmix64(&rng_state);
}

static void test_flow_jcc_every_condition_matches_host(void **state)
{
	static const uint64_t bits[] = { X86_RFLAGS_CF, X86_RFLAGS_PF,
					 X86_RFLAGS_ZF, X86_RFLAGS_SF,
					 X86_RFLAGS_OF };
	struct xh *h = xh_new();
	uint64_t gpr[16] = { 0 };

	(void)state;
	for (unsigned int cc = 0; cc < 16; cc++) {
		/* mov eax, 0; jcc +5; mov eax, 1 -- short and near. */
		const uint8_t s[] = { 0xb8, 0,	  0, 0, 0, (uint8_t)(0x70 | cc),
				      5,    0xb8, 1, 0, 0, 0 };
		const uint8_t n[] = {
			0xb8, 0, 0, 0, 0,    0x0f, (uint8_t)(0x80 | cc),
			5,    0, 0, 0, 0xb8, 1,	   0,
			0,    0
		};

		for (unsigned int f = 0; f < 32; f++) {
			uint64_t flags = 0;

			for (unsigned int b = 0; b < 5; b++)
				if (f & (1u << b))
					flags |= bits[b];
			xh_diff_host(h, "jcc short", s, sizeof(s), gpr, flags,
				     FLAGS_ARITH);
			xh_diff_host(h, "jcc near", n, sizeof(n), gpr, flags,
				     FLAGS_ARITH);
		}
	}
	xh_free(h);
}

static void test_flow_loop_jrcxz_with_address_sizes_match_host(void **state)
{
	static const struct {
		const char *name;
		uint8_t code[8];
		size_t len;
	} cases[] = {
		{ "loop", { 0xe2, 0xfe }, 2 },
		{ "addr32 loop", { 0x67, 0xe2, 0xfd }, 3 },
		{ "loope", { 0xe1, 0xfe }, 2 },
		{ "addr32 loope", { 0x67, 0xe1, 0xfd }, 3 },
		{ "loopne", { 0xe0, 0xfe }, 2 },
		{ "addr32 loopne", { 0x67, 0xe0, 0xfd }, 3 },
		/* jrcxz +2 over mov al, 1 */
		{ "jrcxz", { 0xe3, 0x02, 0xb0, 0x01 }, 4 },
		{ "jecxz", { 0x67, 0xe3, 0x02, 0xb0, 0x01 }, 5 },
	};
	struct xh *h = xh_new();
	uint64_t gpr[16] = { 0 };

	(void)state;
	for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
		for (unsigned int i = 0; i < 64; i++) {
			bool a32 = cases[c].code[0] == 0x67;
			bool jcxz = cases[c].code[a32] == 0xe3;
			uint64_t up = a32 ? rnd() << 32 : 0;

			gpr[X86_RAX] = rnd();
			/* The count's upper half only matters with 67;
			 * LOOP counts stay nonzero and short. */
			if (jcxz)
				gpr[X86_RCX] = (rnd() << 32) * (i & 1) +
					       (i & 2 ? 0 : 1 + rnd() % 3);
			else
				gpr[X86_RCX] = up | (1 + rnd() % 40);
			xh_diff_host(h, cases[c].name, cases[c].code,
				     cases[c].len, gpr,
				     (i & 2) ? X86_RFLAGS_ZF : 0, FLAGS_ARITH);
		}
	}
	xh_free(h);
}

static void test_flow_call_ret_stack_contents(void **state)
{
	static const uint8_t code[] = {
		0xe8, 0x06, 0x00, 0x00, 0x00, /* 0: call 11 */
		0x48, 0x89, 0xe3, /* 5: mov rbx, rsp */
		0xeb, 0x0a, /* 8: jmp 20 */
		0x90, /* 10 */
		0x48, 0x8b, 0x0c, 0x24, /* 11: mov rcx, [rsp] */
		0x48, 0x89, 0xe2, /* 15: mov rdx, rsp */
		0xc3, /* 18: ret */
		0x90, /* 19 */
	};
	struct xh *h = xh_new();

	(void)state;
	xh_run_ok(h, code, sizeof(code));
	assert_int_equal(xh_reg(h, X86_RCX), XH_CODE + 5);
	assert_int_equal(xh_reg(h, X86_RDX), XH_STACK_TOP - 8);
	assert_int_equal(xh_reg(h, X86_RBX), XH_STACK_TOP);
	assert_int_equal(*(uint64_t *)xh_ptr(h, XH_STACK_TOP - 8), XH_CODE + 5);
	xh_free(h);
}

static void test_flow_ret_imm16_releases_arguments(void **state)
{
	static const uint8_t code[] = {
		0x6a, 0x01, /* 0: push 1 */
		0x6a, 0x02, /* 2: push 2 */
		0xe8, 0x02, 0x00, 0x00, 0x00, /* 4: call 11 */
		0xeb, 0x03, /* 9: jmp 14 */
		0xc2, 0x10, 0x00, /* 11: ret 16 */
	};
	struct xh *h = xh_new();

	(void)state;
	xh_run_ok(h, code, sizeof(code));
	assert_int_equal(xh_reg(h, X86_RSP), XH_STACK_TOP);
	xh_free(h);
}

static void test_flow_indirect_call_and_jmp_reach_targets(void **state)
{
	static const uint8_t code[] = {
		0xff, 0x13, /* 0: call [rbx] -> 16 */
		0xff, 0xd0, /* 2: call rax -> 21 */
		0xff, 0x63, 0x08, /* 4: jmp [rbx+8] -> 26 */
		0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
		0x90, 0x90, 0x90, 0x41, 0x5a, /* 16: pop r10 */
		0x41, 0xff, 0xe2, /* 18: jmp r10 */
		0x41, 0x5b, /* 21: pop r11 */
		0x41, 0xff, 0xe3, /* 23: jmp r11 */
	};
	struct xh *h = xh_new();
	uint64_t *m = xh_ptr(h, DATA);

	(void)state;
	m[0] = XH_CODE + 16;
	m[1] = XH_CODE + 26;
	xh_set_reg(h, X86_RBX, DATA);
	xh_set_reg(h, X86_RAX, XH_CODE + 21);
	xh_run_ok(h, code, sizeof(code));
	assert_int_equal(xh_reg(h, X86_R10), XH_CODE + 2);
	assert_int_equal(xh_reg(h, X86_R11), XH_CODE + 4);
	assert_int_equal(xh_reg(h, X86_RSP), XH_STACK_TOP);
	xh_free(h);
}

#define NONCANON 0x0000800000000000ULL

static void test_flow_noncanonical_jmp_gp_at_branch(void **state)
{
	static const uint8_t jmp[] = { 0xff, 0xe0 }; /* jmp rax */
	struct xh *h = xh_new();

	(void)state;
	xh_set_reg(h, X86_RAX, NONCANON);
	xh_expect_fault(h, jmp, sizeof(jmp), X86_GP);
	xh_free(h);
}

static void test_flow_noncanonical_call_gp_pushes_nothing(void **state)
{
	static const uint8_t call[] = { 0xff, 0xd0 }; /* call rax */
	struct xh *h = xh_new();

	(void)state;
	xh_set_reg(h, X86_RAX, 0xfffe000000000000ULL);
	*(uint64_t *)xh_ptr(h, XH_STACK_TOP - 8) = 0x5555;
	xh_expect_fault(h, call, sizeof(call), X86_GP);
	assert_int_equal(*(uint64_t *)xh_ptr(h, XH_STACK_TOP - 8), 0x5555);
	xh_free(h);
}

static void test_flow_noncanonical_ret_gp_keeps_rsp(void **state)
{
	static const uint8_t ret[] = { 0xc3 };
	struct xh *h = xh_new();

	(void)state;
	*(uint64_t *)xh_ptr(h, XH_STACK_TOP - 8) = NONCANON;
	xh_set_reg(h, X86_RSP, XH_STACK_TOP - 8);
	xh_expect_fault(h, ret, sizeof(ret), X86_GP);
	xh_free(h);
}

static void test_flow_ret_from_unmapped_stack_shadow_fault(void **state)
{
	static const uint8_t ret[] = { 0xc2, 0x08, 0x00 };
	struct xh *h = xh_new();
	struct x86_exit exit;

	(void)state;
	xh_set_reg(h, X86_RSP, DATA + 0x10);
	xh_set_page(h, DATA, 0);
	assert_int_equal(xh_run_at(h, ret, sizeof(ret), &exit),
			 X86_EXIT_SHADOW_FAULT);
	assert_int_equal(xh_reg(h, X86_RSP), DATA + 0x10);
	assert_int_equal(xh_rip(h), XH_CODE);
	xh_set_page(h, DATA, X86_PTE_P | X86_PTE_W | X86_PTE_U);
	*(uint64_t *)xh_ptr(h, DATA + 0x10) = XH_CODE + 3; /* the HLT */
	assert_int_equal(xh_run(h, 100, &exit), X86_EXIT_HLT);
	assert_int_equal(xh_reg(h, X86_RSP), DATA + 0x20);
	xh_free(h);
}

static void test_flow_enter_leave_level_zero(void **state)
{
	static const uint8_t enter[] = { 0xc8, 0x20, 0x00, 0x00 };
	static const uint8_t leave[] = { 0xc9 };
	struct xh *h = xh_new();

	(void)state;
	xh_set_reg(h, X86_RBP, 0x1234);
	xh_run_ok(h, enter, sizeof(enter));
	assert_int_equal(xh_reg(h, X86_RBP), XH_STACK_TOP - 8);
	assert_int_equal(xh_reg(h, X86_RSP), XH_STACK_TOP - 8 - 0x20);
	assert_int_equal(*(uint64_t *)xh_ptr(h, XH_STACK_TOP - 8), 0x1234);
	xh_run_ok(h, leave, sizeof(leave));
	assert_int_equal(xh_reg(h, X86_RBP), 0x1234);
	assert_int_equal(xh_reg(h, X86_RSP), XH_STACK_TOP);
	xh_free(h);
}

static void test_flow_enter_nested_copies_display(void **state)
{
	static const uint8_t enter[] = { 0xc8, 0x10, 0x00, 0x03 };
	struct xh *h = xh_new();
	const uint64_t f = DATA + 0x100, top = XH_STACK_TOP;

	(void)state;
	*(uint64_t *)xh_ptr(h, f - 8) = 0xaaaa;
	*(uint64_t *)xh_ptr(h, f - 16) = 0xbbbb;
	xh_set_reg(h, X86_RBP, f);
	xh_run_ok(h, enter, sizeof(enter));
	assert_int_equal(*(uint64_t *)xh_ptr(h, top - 8), f);
	assert_int_equal(*(uint64_t *)xh_ptr(h, top - 16), 0xaaaa);
	assert_int_equal(*(uint64_t *)xh_ptr(h, top - 24), 0xbbbb);
	assert_int_equal(*(uint64_t *)xh_ptr(h, top - 32), top - 8);
	assert_int_equal(xh_reg(h, X86_RBP), top - 8);
	assert_int_equal(xh_reg(h, X86_RSP), top - 32 - 0x10);
	xh_free(h);
}

static void test_flow_enter_fault_in_display_changes_nothing(void **state)
{
	static const uint8_t enter[] = { 0xc8, 0x10, 0x00, 0x02 };
	struct xh *h = xh_new();
	struct x86_exit exit;

	(void)state;
	xh_set_reg(h, X86_RBP, DATA + 0x1008);
	xh_set_page(h, DATA + 0x1000, 0);
	assert_int_equal(xh_run_at(h, enter, sizeof(enter), &exit),
			 X86_EXIT_SHADOW_FAULT);
	assert_int_equal(exit.fault.gva, DATA + 0x1000);
	assert_int_equal(xh_reg(h, X86_RBP), DATA + 0x1008);
	assert_int_equal(xh_reg(h, X86_RSP), XH_STACK_TOP);
	assert_int_equal(xh_rip(h), XH_CODE);
	xh_free(h);
}

static void test_flow_nop_forms_touch_nothing(void **state)
{
	static const uint8_t code[] = {
		0x0f, 0x1f, 0x00, /* nop [rax] */
		0x0f, 0x1f, 0x44, 0x00, 0x00, /* nop [rax+rax+0] */
		0x66, 0x2e, 0x0f, 0x1f, 0x84,
		0x00, 0x00, 0x00, 0x00, 0x00, /* nopw cs:[rax+rax+0] */
		0x0f, 0x18, 0x08, /* prefetcht0 [rax] */
		0x0f, 0x18, 0x03, /* prefetchnta [rbx] */
		0x0f, 0x0d, 0x0b, /* prefetchw [rbx] */
		0x0f, 0x0d, 0x00, /* prefetch [rax] */
		0xf3, 0x0f, 0x1e, 0xfa, /* endbr64 */
		0x0f, 0x1e, 0xc8, /* hint nop */
		0x90, /* nop */
		0xf3, 0x90, /* pause */
	};
	struct xh *h = xh_new();
	struct x86_regs before, after;

	(void)state;
	xh_set_reg(h, X86_RAX, NONCANON);
	xh_set_reg(h, X86_RBX, DATA);
	xh_set_page(h, DATA, 0);
	x86_get_regs(h->cpu, &before);
	xh_run_ok(h, code, sizeof(code));
	x86_get_regs(h->cpu, &after);
	assert_memory_equal(before.gpr, after.gpr, sizeof(before.gpr));
	/* 0F 0D names memory: a register form is #UD. */
	xh_expect_fault(h, (const uint8_t[]){ 0x0f, 0x0d, 0xc8 }, 3, X86_UD);
	xh_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flow_jcc_every_condition_matches_host),
		cmocka_unit_test(
			test_flow_loop_jrcxz_with_address_sizes_match_host),
		cmocka_unit_test(test_flow_call_ret_stack_contents),
		cmocka_unit_test(test_flow_ret_imm16_releases_arguments),
		cmocka_unit_test(test_flow_indirect_call_and_jmp_reach_targets),
		cmocka_unit_test(test_flow_noncanonical_jmp_gp_at_branch),
		cmocka_unit_test(test_flow_noncanonical_call_gp_pushes_nothing),
		cmocka_unit_test(test_flow_noncanonical_ret_gp_keeps_rsp),
		cmocka_unit_test(
			test_flow_ret_from_unmapped_stack_shadow_fault),
		cmocka_unit_test(test_flow_enter_leave_level_zero),
		cmocka_unit_test(test_flow_enter_nested_copies_display),
		cmocka_unit_test(
			test_flow_enter_fault_in_display_changes_nothing),
		cmocka_unit_test(test_flow_nop_forms_touch_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
