/*
 * Tests of except.c: delivery through the 64-bit IDT with and without a
 * privilege change, IST stacks, 16-byte alignment, error codes, gate
 * checks, the double-fault rules and the triple fault with its chain,
 * #PF injection with CR2, and faults during delivery (shadow faults that
 * restart it, #PF that turns it into #DF). Expected frames follow SDM
 * vol. 3, 6.12 to 6.15.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sys_setup.h"

static const uint8_t ud2[] = { 0x0f, 0x0b };

/* The frame at rsp: [error,] RIP, CS, RFLAGS, RSP, SS. */
static void expect_frame(struct xh *h, uint64_t rsp, bool has_error,
			 uint64_t error, uint64_t rip, uint64_t cs,
			 uint64_t rflags, uint64_t old_rsp, uint64_t ss)
{
	unsigned int i = 0;

	if (has_error)
		assert_int_equal(sys_read64(h, rsp + 8 * i++), error);
	assert_int_equal(sys_read64(h, rsp + 8 * i++), rip);
	assert_int_equal(sys_read64(h, rsp + 8 * i++), cs);
	assert_int_equal(sys_read64(h, rsp + 8 * i++), rflags);
	assert_int_equal(sys_read64(h, rsp + 8 * i++), old_rsp);
	assert_int_equal(sys_read64(h, rsp + 8 * i++), ss);
}

static void test_except_ud_same_cpl_frame_on_current_stack(void **state)
{
	struct xh *h = sys_new();
	struct x86_sregs s;

	(void)state;
	sys_set_rflags(h, 0x202);
	sys_run_fault(h, ud2, sizeof(ud2), X86_UD);
	assert_int_equal(sys_reg(h, X86_RSP), XH_STACK_TOP - 40);
	/* A fault pushes RF set; the interrupt gate clears IF. */
	expect_frame(h, XH_STACK_TOP - 40, false, 0, XH_CODE, SEL_KCODE,
		     0x10202, XH_STACK_TOP, SEL_KDATA);
	assert_int_equal(sys_rflags(h) & X86_RFLAGS_IF, 0);
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.seg[X86_SS].sel, SEL_KDATA);
	assert_int_equal(x86_cpl(h->cpu), 0);
	xh_free(h);
}

static void test_except_gp_selector_error_code_pushed(void **state)
{
	/* mov $0x48, %eax; mov %eax, %ds: 0x48 is beyond the GDT limit. */
	static const uint8_t code[] = { 0xb8, 0x48, 0, 0, 0, 0x8e, 0xd8 };
	struct xh *h = sys_new();

	(void)state;
	sys_run_fault(h, code, sizeof(code), X86_GP);
	expect_frame(h, XH_STACK_TOP - 48, true, 0x48, XH_CODE + 5, SEL_KCODE,
		     0x10002, XH_STACK_TOP, SEL_KDATA);
	xh_free(h);
}

static void test_except_stack_misaligned_aligned_to_16(void **state)
{
	struct xh *h = sys_new();

	(void)state;
	sys_set_reg(h, X86_RSP, XH_STACK_TOP - 8);
	sys_run_fault(h, ud2, sizeof(ud2), X86_UD);
	assert_int_equal(sys_reg(h, X86_RSP), XH_STACK_TOP - 16 - 40);
	expect_frame(h, XH_STACK_TOP - 56, false, 0, XH_CODE, SEL_KCODE,
		     0x10002, XH_STACK_TOP - 8, SEL_KDATA);
	xh_free(h);
}

static void test_except_cpl3_fault_switches_to_rsp0(void **state)
{
	struct xh *h = sys_new();
	struct x86_sregs s;

	(void)state;
	sys_enter_cpl3(h);
	assert_int_equal(x86_cpl(h->cpu), 3);
	sys_run_fault(h, ud2, sizeof(ud2), X86_UD);
	assert_int_equal(x86_cpl(h->cpu), 0);
	assert_int_equal(sys_reg(h, X86_RSP), SYS_RSP0 - 40);
	expect_frame(h, SYS_RSP0 - 40, false, 0, XH_CODE, SEL_UCODE, 0x10002,
		     SYS_USER_STACK, SEL_UDATA);
	/* SS is a null selector with RPL = the new CPL. */
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.seg[X86_SS].sel, 0);
	assert_true(s.seg[X86_SS].attr & X86_SEG_UNUSABLE);
	assert_int_equal(s.seg[X86_CS].sel, SEL_KCODE);
	xh_free(h);
}

static void test_except_ist_gate_uses_ist_stack(void **state)
{
	struct xh *h = sys_new();

	(void)state;
	sys_set_gate(h, X86_UD, sys_handler(X86_UD), SEL_KCODE, 1, GATE_INTR);
	sys_run_fault(h, ud2, sizeof(ud2), X86_UD);
	assert_int_equal(sys_reg(h, X86_RSP), SYS_IST1 - 40);
	expect_frame(h, SYS_IST1 - 40, false, 0, XH_CODE, SEL_KCODE, 0x10002,
		     XH_STACK_TOP, SEL_KDATA);
	xh_free(h);
}

static void test_except_trap_gate_keeps_if(void **state)
{
	struct xh *h = sys_new();

	(void)state;
	sys_set_gate(h, X86_UD, sys_handler(X86_UD), SEL_KCODE, 0, GATE_TRAP);
	sys_set_rflags(h, 0x202);
	sys_run_fault(h, ud2, sizeof(ud2), X86_UD);
	assert_true(sys_rflags(h) & X86_RFLAGS_IF);
	xh_free(h);
}

static void test_except_gp_during_gp_delivery_double_fault(void **state)
{
	/* WRMSR to an unknown MSR raises #GP(0); #GP's gate names a
	 * selector beyond the GDT, so its delivery raises #GP again. */
	static const uint8_t code[] = {
		0xb9, 0x78, 0x56, 0x34, 0x12, 0x0f, 0x30
	};
	struct xh *h = sys_new();

	(void)state;
	sys_set_gate(h, X86_GP, sys_handler(X86_GP), 0x50, 0, GATE_INTR);
	sys_run_fault(h, code, sizeof(code), X86_DF);
	/* #DF pushes error code 0. */
	assert_int_equal(sys_read64(h, XH_STACK_TOP - 48), 0);
	xh_free(h);
}

static void test_except_benign_then_gp_handled_serially(void **state)
{
	/* #UD's gate is not present: #NP(6 * 8 + 2 + EXT) is delivered,
	 * not #DF (#UD is benign). */
	struct xh *h = sys_new();

	(void)state;
	sys_set_gate(h, X86_UD, sys_handler(X86_UD), SEL_KCODE, 0, 0x0e);
	sys_run_fault(h, ud2, sizeof(ud2), X86_NP);
	assert_int_equal(sys_read64(h, XH_STACK_TOP - 48), 6 * 8 + 2 + 1);
	assert_int_equal(sys_read64(h, XH_STACK_TOP - 40), XH_CODE);
	xh_free(h);
}

static void test_except_fault_during_df_triple_fault_chain(void **state)
{
	static const uint8_t code[] = {
		0xb9, 0x78, 0x56, 0x34, 0x12, 0x0f, 0x30
	};
	struct xh *h = sys_new();
	struct x86_exit exit;

	(void)state;
	sys_set_gate(h, X86_GP, sys_handler(X86_GP), 0x50, 0, GATE_INTR);
	sys_set_gate(h, X86_DF, sys_handler(X86_DF), 0x50, 0, GATE_INTR);
	assert_int_equal(sys_run(h, code, sizeof(code), &exit),
			 X86_EXIT_TRIPLE_FAULT);
	assert_int_equal(exit.triple.vectors[0], X86_GP);
	assert_int_equal(exit.triple.vectors[1], X86_GP);
	assert_int_equal(exit.triple.vectors[2], X86_DF);
	assert_int_equal(exit.triple.rip, XH_CODE + 5);
	/* Shut down: the CPU keeps reporting it. */
	assert_int_equal(x86_run(h->cpu, 100, &exit), X86_EXIT_TRIPLE_FAULT);
	xh_free(h);
}

static void test_except_no_idt_ud_triple_fault_names_ud(void **state)
{
	struct xh *h = xh_new(); /* boot state: IDT limit 0 */
	struct x86_exit exit;

	(void)state;
	assert_int_equal(sys_run(h, ud2, sizeof(ud2), &exit),
			 X86_EXIT_TRIPLE_FAULT);
	assert_int_equal(exit.triple.vectors[0], X86_UD);
	assert_int_equal(exit.triple.vectors[1], X86_GP);
	assert_int_equal(exit.triple.vectors[2], X86_DF);
	assert_int_equal(exit.triple.rip, XH_CODE);
	assert_int_equal(sys_rip(h), XH_CODE);
	xh_free(h);
}

static void test_except_inject_pf_sets_cr2_and_error(void **state)
{
	static const uint8_t nop = 0x90;
	struct xh *h = sys_new();
	struct x86_exit exit;
	struct x86_sregs s;

	(void)state;
	xh_place_code(h, &nop, 1);
	x86_inject_exception(h->cpu, X86_PF, PFERR_WRITE | PFERR_PRESENT,
			     0xdead0000ULL);
	assert_int_equal(xh_run(h, 1000, &exit), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, X86_PF));
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.cr2, 0xdead0000ULL);
	expect_frame(h, XH_STACK_TOP - 48, true, PFERR_WRITE | PFERR_PRESENT,
		     XH_CODE, SEL_KCODE, 0x10002, XH_STACK_TOP, SEL_KDATA);
	xh_free(h);
}

static void test_except_shadow_fault_in_delivery_restarts(void **state)
{
	struct xh *h = sys_new();
	struct x86_exit exit;

	(void)state;
	/* The handler's stack page is missing from the shadow tables:
	 * delivery exits for the MMU and nothing changes yet. */
	xh_set_page(h, XH_STACK_TOP - 40, 0);
	assert_int_equal(sys_run(h, ud2, sizeof(ud2), &exit),
			 X86_EXIT_SHADOW_FAULT);
	assert_int_equal(exit.fault.gva & ~0xfffULL,
			 (XH_STACK_TOP - 40) & ~0xfffULL);
	assert_int_equal(sys_rip(h), XH_CODE);
	assert_int_equal(sys_reg(h, X86_RSP), XH_STACK_TOP);
	assert_int_equal(x86_cpl(h->cpu), 0);
	/* The MMU fixes the spte; delivery runs again and completes. */
	xh_set_page(h, XH_STACK_TOP - 40, X86_PTE_P | X86_PTE_W | X86_PTE_U);
	assert_int_equal(xh_run(h, 1000, &exit), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, X86_UD));
	expect_frame(h, XH_STACK_TOP - 40, false, 0, XH_CODE, SEL_KCODE,
		     0x10002, XH_STACK_TOP, SEL_KDATA);
	xh_free(h);
}

static void test_except_pf_during_pf_delivery_double_fault(void **state)
{
	static const uint8_t nop = 0x90;
	struct xh *h = sys_new();
	struct x86_exit exit;
	struct x86_sregs s;
	uint64_t stack_page = (XH_STACK_TOP - 48) & ~0xfffULL;

	(void)state;
	/* #DF runs on IST1, which stays mapped. */
	sys_set_gate(h, X86_DF, sys_handler(X86_DF), SEL_KCODE, 1, GATE_INTR);
	xh_place_code(h, &nop, 1);
	xh_set_page(h, stack_page, 0);
	x86_inject_exception(h->cpu, X86_PF, PFERR_USER, 0x1000ULL);
	assert_int_equal(xh_run(h, 1000, &exit), X86_EXIT_SHADOW_FAULT);
	/* The MMU's walk of the guest tables fails: it injects #PF for
	 * the stack push, during the first #PF's delivery. */
	x86_inject_exception(h->cpu, X86_PF, PFERR_WRITE, exit.fault.gva);
	assert_int_equal(xh_run(h, 1000, &exit), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, X86_DF));
	assert_int_equal(sys_reg(h, X86_RSP), SYS_IST1 - 48);
	assert_int_equal(sys_read64(h, SYS_IST1 - 48), 0);
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.cr2 & ~0xfffULL, stack_page);
	xh_free(h);
}

static void test_except_int_gate_dpl0_at_cpl3_gp(void **state)
{
	static const uint8_t code[] = { 0xcd, 0x80 }; /* int $0x80 */
	struct xh *h = sys_new();

	(void)state;
	sys_enter_cpl3(h);
	sys_run_fault(h, code, sizeof(code), X86_GP);
	/* #GP(vector * 8 + 2), EXT clear: INT n is the program's own. */
	assert_int_equal(sys_read64(h, SYS_RSP0 - 48), 0x80 * 8 + 2);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 40), XH_CODE);
	xh_free(h);
}

static void test_except_int_gate_dpl3_at_cpl3_delivers(void **state)
{
	static const uint8_t code[] = { 0xcd, 0x80, 0xcc };
	struct xh *h = sys_new();

	(void)state;
	sys_set_gate(h, 0x80, sys_handler(0x80), SEL_KCODE, 0,
		     GATE_INTR | GATE_DPL3);
	sys_enter_cpl3(h);
	sys_run_fault(h, code, sizeof(code), 0x80);
	/* No error code; the return address is the next instruction. */
	expect_frame(h, SYS_RSP0 - 40, false, 0, XH_CODE + 2, SEL_UCODE, 0x2,
		     SYS_USER_STACK, SEL_UDATA);
	xh_free(h);
}

static void test_except_int3_returns_after_cc(void **state)
{
	static const uint8_t code[] = { 0xcc };
	struct xh *h = sys_new();

	(void)state;
	sys_run_fault(h, code, sizeof(code), X86_BP);
	/* A trap, not a fault: RF stays clear in the image (SDM vol. 3,
	 * 17.3.1.1). */
	expect_frame(h, XH_STACK_TOP - 40, false, 0, XH_CODE + 1, SEL_KCODE,
		     0x2, XH_STACK_TOP, SEL_KDATA);
	xh_free(h);
}

static void test_except_gate_not_64bit_code_gp(void **state)
{
	struct xh *h = sys_new();

	(void)state;
	/* #UD's gate targets the 32-bit user code segment: #GP(sel+EXT),
	 * then (benign first) delivered serially. */
	sys_set_gate(h, X86_UD, sys_handler(X86_UD), SEL_UCODE32 & ~3, 0,
		     GATE_INTR);
	sys_run_fault(h, ud2, sizeof(ud2), X86_GP);
	assert_int_equal(sys_read64(h, XH_STACK_TOP - 48),
			 (SEL_UCODE32 & ~3) | 1);
	xh_free(h);
}

/* SDM vol. 3, 6.15, table 6-5: a contributory fault while a #PF is
 * delivered is a double fault. */
static void test_except_gp_during_pf_delivery_double_fault(void **state)
{
	static const uint8_t nop = 0x90;
	struct xh *h = sys_new();
	struct x86_exit exit;

	(void)state;
	/* #PF's gate names a selector beyond the GDT: #GP(0x50 + EXT). */
	sys_set_gate(h, X86_PF, sys_handler(X86_PF), 0x50, 0, GATE_INTR);
	xh_place_code(h, &nop, 1);
	x86_inject_exception(h->cpu, X86_PF, PFERR_WRITE, 0x1000ULL);
	assert_int_equal(xh_run(h, 1000, &exit), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, X86_DF));
	expect_frame(h, XH_STACK_TOP - 48, true, 0, XH_CODE, SEL_KCODE, 0x10002,
		     XH_STACK_TOP, SEL_KDATA);
	xh_free(h);
}

/* Table 6-5 the other way round: a #PF while a contributory fault is
 * delivered is handled serially: the #PF is delivered, not #DF. */
static void test_except_pf_during_gp_delivery_serial(void **state)
{
	/* WRMSR to an unknown MSR: #GP(0). */
	static const uint8_t code[] = {
		0xb9, 0x78, 0x56, 0x34, 0x12, 0x0f, 0x30
	};
	struct xh *h = sys_new();
	struct x86_exit exit;
	struct x86_sregs s;
	uint64_t stack_page = (XH_STACK_TOP - 48) & ~0xfffULL;

	(void)state;
	/* #PF and #DF run on IST1, which stays mapped. */
	sys_set_gate(h, X86_PF, sys_handler(X86_PF), SEL_KCODE, 1, GATE_INTR);
	sys_set_gate(h, X86_DF, sys_handler(X86_DF), SEL_KCODE, 1, GATE_INTR);
	xh_set_page(h, stack_page, 0);
	assert_int_equal(sys_run(h, code, sizeof(code), &exit),
			 X86_EXIT_SHADOW_FAULT);
	/* The MMU's walk of the guest tables fails for the push of the
	 * #GP frame: it injects #PF during #GP's delivery. */
	x86_inject_exception(h->cpu, X86_PF, PFERR_WRITE, exit.fault.gva);
	assert_int_equal(xh_run(h, 1000, &exit), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, X86_PF));
	assert_int_equal(sys_read64(h, SYS_IST1 - 48), PFERR_WRITE);
	assert_int_equal(sys_read64(h, SYS_IST1 - 40), XH_CODE + 5);
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.cr2 & ~0xfffULL, stack_page);
	xh_free(h);
}

/* SDM vol. 3, 6.13: a selector error code is the selector's index and TI
 * bit with EXT (and IDT) in bits 0 and 1, never the selector's RPL. */
static void test_except_gate_selector_error_code_drops_rpl(void **state)
{
	static const struct {
		uint16_t sel;
		uint64_t error;
	} cases[] = {
		/* A data segment: not a code segment. */
		{ SEL_KDATA | 3, SEL_KDATA | 1 },
		{ SEL_KDATA | 2, SEL_KDATA | 1 },
		/* Beyond the GDT's limit. */
		{ 0x50 | 2, 0x50 | 1 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct xh *h = sys_new();

		sys_set_gate(h, X86_UD, sys_handler(X86_UD), cases[i].sel, 0,
			     GATE_INTR);
		sys_run_fault(h, ud2, sizeof(ud2), X86_GP);
		assert_int_equal(sys_read64(h, XH_STACK_TOP - 48),
				 cases[i].error);
		xh_free(h);
	}
}

/* SDM vol. 3, 6.13: EXT is set only for faults while an event external
 * to the program is delivered; INT n is the program's own. */
static void test_except_int_n_gate_fault_error_without_ext(void **state)
{
	static const uint8_t code[] = { 0xcd, 0x80 }; /* int $0x80 */
	struct xh *h = sys_new();

	(void)state;
	sys_set_gate(h, 0x80, sys_handler(0x80), 0x50, 0,
		     GATE_INTR | GATE_DPL3);
	sys_run_fault(h, code, sizeof(code), X86_GP);
	assert_int_equal(sys_read64(h, XH_STACK_TOP - 48), 0x50);
	xh_free(h);
}

/* SDM vol. 3, 6.15 (interrupt 17): #AC at CPL3 with CR0.AM and
 * RFLAGS.AC pushes an error code of 0. */
static void test_except_ac_pushes_error_code_zero(void **state)
{
	/* mov 0x300001, %rax: a misaligned 8-byte load. */
	static const uint8_t code[] = { 0x48, 0x8b, 0x04, 0x25,
					0x01, 0x00, 0x30, 0x00 };
	struct xh *h = sys_new();
	struct x86_sregs s;

	(void)state;
	x86_get_sregs(h->cpu, &s);
	s.cr0 |= X86_CR0_AM;
	x86_set_sregs(h->cpu, &s);
	sys_enter_cpl3(h);
	sys_set_rflags(h, 0x2 | X86_RFLAGS_AC);
	sys_run_fault(h, code, sizeof(code), X86_AC);
	assert_int_equal(sys_reg(h, X86_RSP), SYS_RSP0 - 48);
	expect_frame(h, SYS_RSP0 - 48, true, 0, XH_CODE, SEL_UCODE,
		     0x2 | X86_RFLAGS_AC | X86_RFLAGS_RF, SYS_USER_STACK,
		     SEL_UDATA);
	xh_free(h);
}

/* SDM vol. 3, 4.6.1: under CR4.SMAP, RFLAGS.AC lets explicit supervisor
 * data accesses reach user pages (every harness page is one) but never
 * implicit ones: delivery's read of the IDT leaves for the MMU. */
static void test_except_smap_implicit_access_ignores_ac(void **state)
{
	/* mov 0x300000, %rax. */
	static const uint8_t load[] = { 0x48, 0x8b, 0x04, 0x25,
					0x00, 0x00, 0x30, 0x00 };
	struct xh *h = sys_new();
	struct x86_exit exit;
	struct x86_sregs s;

	(void)state;
	x86_get_sregs(h->cpu, &s);
	s.cr4 |= X86_CR4_SMAP;
	x86_set_sregs(h->cpu, &s);
	sys_set_rflags(h, 0x2 | X86_RFLAGS_AC);
	assert_int_equal(sys_run(h, load, sizeof(load), &exit), X86_EXIT_HLT);
	assert_int_equal(sys_rip(h), XH_CODE + sizeof(load) + 1);
	assert_int_equal(sys_run(h, ud2, sizeof(ud2), &exit),
			 X86_EXIT_SHADOW_FAULT);
	assert_int_equal(exit.fault.gva & ~0xfffULL, SYS_IDT);
	assert_true(exit.fault.access & X86_ACC_IMPLICIT);
	xh_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_except_ud_same_cpl_frame_on_current_stack),
		cmocka_unit_test(test_except_gp_selector_error_code_pushed),
		cmocka_unit_test(test_except_stack_misaligned_aligned_to_16),
		cmocka_unit_test(test_except_cpl3_fault_switches_to_rsp0),
		cmocka_unit_test(test_except_ist_gate_uses_ist_stack),
		cmocka_unit_test(test_except_trap_gate_keeps_if),
		cmocka_unit_test(
			test_except_gp_during_gp_delivery_double_fault),
		cmocka_unit_test(test_except_benign_then_gp_handled_serially),
		cmocka_unit_test(
			test_except_fault_during_df_triple_fault_chain),
		cmocka_unit_test(test_except_no_idt_ud_triple_fault_names_ud),
		cmocka_unit_test(test_except_inject_pf_sets_cr2_and_error),
		cmocka_unit_test(test_except_shadow_fault_in_delivery_restarts),
		cmocka_unit_test(
			test_except_pf_during_pf_delivery_double_fault),
		cmocka_unit_test(test_except_int_gate_dpl0_at_cpl3_gp),
		cmocka_unit_test(test_except_int_gate_dpl3_at_cpl3_delivers),
		cmocka_unit_test(test_except_int3_returns_after_cc),
		cmocka_unit_test(test_except_gate_not_64bit_code_gp),
		cmocka_unit_test(
			test_except_gp_during_pf_delivery_double_fault),
		cmocka_unit_test(test_except_pf_during_gp_delivery_serial),
		cmocka_unit_test(
			test_except_int_n_gate_fault_error_without_ext),
		cmocka_unit_test(test_except_ac_pushes_error_code_zero),
		cmocka_unit_test(test_except_smap_implicit_access_ignores_ac),
		cmocka_unit_test(
			test_except_gate_selector_error_code_drops_rpl),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
