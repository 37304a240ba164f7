/*
 * Tests of exec_segment.c: IRETQ, IRETD and far RET to the same level and
 * to CPL3 (and back through a fault), SYSCALL/SYSRET and their selectors
 * and faults, segment register loads and their error codes and accessed
 * bit, LTR's busy bit and the descriptor checks of LTR and LLDT, far
 * JMP/CALL through memory, INTO, and the descriptor probes VERR, VERW,
 * LAR and LSL. Expected values come from the SDM's
 * descriptions of each instruction and of protection (SDM vol. 3, ch. 5).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sys_setup.h"

#define LSTAR_TARGET 0x30000ULL

static void test_segment_iretq_to_cpl3_and_back_via_fault(void **state)
{
	static const uint8_t code[] = {
		0x6a, 0x23, 0x68, 0x00, 0x00, 0x17, 0x00, 0x68, 0x02,
		0x02, 0x00, 0x00, 0x6a, 0x2b, 0x48, 0x8d, 0x05, 0x03,
		0x00, 0x00, 0x00, 0x50, 0x48, 0xcf, 0x0f, 0x0b,
	};
	struct xh *h = sys_new();
	struct x86_sregs s;

	(void)state;
	sys_run_fault(h, code, sizeof(code), X86_UD);
	assert_int_equal(x86_cpl(h->cpu), 0);
	assert_int_equal(sys_reg(h, X86_RSP), SYS_RSP0 - 40);
	/* The user frame: RIP of the UD2, CS 0x2b, IF from the IRET
	 * image, RF of a fault, the user SS:RSP. */
	assert_int_equal(sys_read64(h, SYS_RSP0 - 40), XH_CODE + 24);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 32), SEL_UCODE);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 24), 0x10202);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 16), 0x170000);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 8), SEL_UDATA);
	/* DS/ES (DPL0) became null on the way to CPL3. */
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.seg[X86_DS].sel, 0);
	assert_true(s.seg[X86_DS].attr & X86_SEG_UNUSABLE);
	xh_free(h);
}

static void test_segment_iretq_to_rpl_below_cpl_gp(void **state)
{
	/* At CPL3, IRETQ to CS 0x08 (RPL 0 < CPL 3): #GP(0x08). */
	static const uint8_t code[] = {
		0x6a, 0x10, 0x68, 0x00, 0x00, 0x17, 0x00, 0x68, 0x02,
		0x02, 0x00, 0x00, 0x6a, 0x08, 0x48, 0x8d, 0x05, 0x03,
		0x00, 0x00, 0x00, 0x50, 0x48, 0xcf, 0x0f, 0x0b,
	};
	struct xh *h = sys_new();

	(void)state;
	sys_enter_cpl3(h);
	assert_int_equal(sys_run_fault(h, code, sizeof(code), X86_GP), 0x08);
	/* Nothing was committed: the faulting RIP is the IRETQ. */
	assert_int_equal(sys_read64(h, SYS_RSP0 - 40), XH_CODE + 22);
	xh_free(h);
}

static void test_segment_iretd_pops_five_dwords(void **state)
{
	/* IRET without REX.W in 64-bit mode pops EIP, CS, EFLAGS, ESP and
	 * SS as dwords; at CPL0 the image's IOPL (3) is loaded. */
	static const uint8_t code[] = {
		0x48, 0x83, 0xec, 0x14, 0xc7, 0x04, 0x24, 0x2c, 0x00,
		0x10, 0x00, 0xc7, 0x44, 0x24, 0x04, 0x08, 0x00, 0x00,
		0x00, 0xc7, 0x44, 0x24, 0x08, 0x02, 0x30, 0x00, 0x00,
		0xc7, 0x44, 0x24, 0x0c, 0x00, 0x00, 0x1f, 0x00, 0xc7,
		0x44, 0x24, 0x10, 0x10, 0x00, 0x00, 0x00, 0xcf,
	};
	struct xh *h = sys_new();

	(void)state;
	sys_run_ok(h, code, sizeof(code));
	assert_int_equal(sys_reg(h, X86_RSP), 0x1f0000);
	assert_int_equal(sys_rflags(h) & X86_RFLAGS_IOPL, X86_RFLAGS_IOPL);
	xh_free(h);
}

static void test_segment_iretq_with_nt_gp(void **state)
{
	/* pushfq; orq $NT, (%rsp); popfq; iretq */
	static const uint8_t code[] = { 0x9c, 0x48, 0x81, 0x0c, 0x24, 0x00,
					0x40, 0x00, 0x00, 0x9d, 0x48, 0xcf };
	struct xh *h = sys_new();

	(void)state;
	assert_int_equal(sys_run_fault(h, code, sizeof(code), X86_GP), 0);
	assert_int_equal(sys_read64(h, XH_STACK_TOP - 40), XH_CODE + 10);
	xh_free(h);
}

static void test_segment_lretq_same_level_and_to_cpl3(void **state)
{
	static const uint8_t same[] = { 0x6a, 0x08, 0x48, 0x8d, 0x05, 0x03,
					0x00, 0x00, 0x00, 0x50, 0x48, 0xcb,
					0xbb, 0x07, 0x00, 0x00, 0x00 };
	static const uint8_t outer[] = { 0x6a, 0x23, 0x68, 0x00, 0x00, 0x17,
					 0x00, 0x6a, 0x2b, 0x48, 0x8d, 0x05,
					 0x03, 0x00, 0x00, 0x00, 0x50, 0x48,
					 0xcb, 0x0f, 0x0b };
	struct xh *h = sys_new();

	(void)state;
	sys_run_ok(h, same, sizeof(same));
	assert_int_equal(sys_reg(h, X86_RBX), 7);
	assert_int_equal(sys_reg(h, X86_RSP), XH_STACK_TOP);
	sys_run_fault(h, outer, sizeof(outer), X86_UD);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 32), SEL_UCODE);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 16), 0x170000);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 8), SEL_UDATA);
	xh_free(h);
}

static void test_segment_syscall_sysret_round_trip(void **state)
{
	static const uint8_t code[] = {
		0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x83, 0xc8, 0x01,
		0x0f, 0x30, 0xb9, 0x81, 0x00, 0x00, 0xc0, 0x31, 0xc0, 0xba,
		0x08, 0x00, 0x18, 0x00, 0x0f, 0x30, 0xb9, 0x82, 0x00, 0x00,
		0xc0, 0xb8, 0x00, 0x00, 0x03, 0x00, 0x31, 0xd2, 0x0f, 0x30,
		0xb9, 0x84, 0x00, 0x00, 0xc0, 0xb8, 0x00, 0x02, 0x00, 0x00,
		0x0f, 0x30, 0x48, 0x8d, 0x0d, 0x09, 0x00, 0x00, 0x00, 0x41,
		0xbb, 0x02, 0x02, 0x00, 0x00, 0x48, 0x0f, 0x07, 0x0f, 0x05,
	};
	static const uint8_t hlt = 0xf4;
	struct xh *h = sys_new();
	struct x86_exit exit;
	struct x86_sregs s;

	(void)state;
	xh_load(h, LSTAR_TARGET, &hlt, 1);
	assert_int_equal(sys_run(h, code, sizeof(code), &exit), X86_EXIT_HLT);
	assert_int_equal(sys_rip(h), LSTAR_TARGET + 1);
	assert_int_equal(x86_cpl(h->cpu), 0);
	/* RCX = after the SYSCALL, R11 = the user RFLAGS; SFMASK took IF. */
	assert_int_equal(sys_reg(h, X86_RCX), XH_CODE + sizeof(code));
	assert_int_equal(sys_reg(h, X86_R11), 0x202);
	assert_int_equal(sys_rflags(h) & X86_RFLAGS_IF, 0);
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.seg[X86_CS].sel, 0x08);
	assert_int_equal(s.seg[X86_SS].sel, 0x10);
	xh_free(h);
}

static void test_segment_sysret_to_cpl3_selectors(void **state)
{
	/* The same code without the final SYSCALL: stop at CPL3 by
	 * faulting on the HLT. */
	static const uint8_t code[] = {
		0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x83, 0xc8,
		0x01, 0x0f, 0x30, 0xb9, 0x81, 0x00, 0x00, 0xc0, 0x31,
		0xc0, 0xba, 0x08, 0x00, 0x18, 0x00, 0x0f, 0x30, 0x48,
		0x8d, 0x0d, 0x09, 0x00, 0x00, 0x00, 0x41, 0xbb, 0x02,
		0x02, 0x00, 0x00, 0x48, 0x0f, 0x07, 0x90,
	};
	struct xh *h = sys_new();

	(void)state;
	sys_run_fault(h, code, sizeof(code), X86_GP);
	/* The #GP frame: CS = STAR[63:48] + 16 | 3, SS = + 8 | 3. */
	assert_int_equal(sys_read64(h, SYS_RSP0 - 48 + 16), 0x2b);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 48 + 40), 0x23);
	xh_free(h);
}

static void test_segment_syscall_without_sce_ud(void **state)
{
	static const uint8_t code[] = { 0x0f, 0x05 };
	struct xh *h = sys_new();

	(void)state;
	sys_run_fault(h, code, sizeof(code), X86_UD);
	xh_free(h);
}

static void test_segment_sysret_noncanonical_rcx_gp(void **state)
{
	static const uint8_t code[] = { 0xb9, 0x80, 0x00, 0x00, 0xc0,
					0x0f, 0x32, 0x83, 0xc8, 0x01,
					0x0f, 0x30, 0x48, 0xb9, 0x00,
					0x00, 0x00, 0x00, 0x00, 0x00,
					0x00, 0x80, 0x48, 0x0f, 0x07 };
	struct xh *h = sys_new();

	(void)state;
	assert_int_equal(sys_run_fault(h, code, sizeof(code), X86_GP), 0);
	assert_int_equal(x86_cpl(h->cpu), 0);
	xh_free(h);
}

static void test_segment_ltr_sets_busy_bit(void **state)
{
	static const uint8_t code[] = { 0xb8, 0x30, 0x00, 0x00, 0x00, 0x0f,
					0x00, 0xd8, 0x0f, 0x00, 0xcb };
	struct xh *h = sys_new();
	struct x86_sregs s;

	(void)state;
	sys_gdt(h)[6] = sys_tss_descriptor_low(SYS_TSS, 0x9);
	sys_run_ok(h, code, sizeof(code));
	assert_int_equal((sys_gdt(h)[6] >> 40) & 0xf, 0xb);
	assert_int_equal(sys_reg(h, X86_RBX), SEL_TSS);
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.tr.sel, SEL_TSS);
	assert_int_equal(s.tr.base, SYS_TSS);
	assert_int_equal(s.tr.limit, 0x67);
	assert_int_equal(X86_SEG_TYPE(s.tr.attr), 0xb);
	/* Loading the now-busy TSS again: #GP(selector). */
	assert_int_equal(sys_run_fault(h, code, sizeof(code), X86_GP), SEL_TSS);
	xh_free(h);
}

/* mov $sel,%eax; ltr %ax  and  mov $sel,%eax; lldt %ax */
#define LOAD_SEL(op, sel)                                                  \
	{                                                                  \
		0xb8, (sel)&0xff, (sel) >> 8, 0x00, 0x00, 0x0f, 0x00, (op) \
	}
#define LTR_AX 0xd8
#define LLDT_AX 0xd0

static void test_segment_ltr_lldt_descriptor_checks(void **state)
{
	static const uint8_t ltr_null[] = LOAD_SEL(LTR_AX, 0x0);
	static const uint8_t ltr_ti[] = LOAD_SEL(LTR_AX, SEL_TSS | 4);
	static const uint8_t ltr[] = LOAD_SEL(LTR_AX, SEL_TSS);
	static const uint8_t lldt_null[] = LOAD_SEL(LLDT_AX, 0x0);
	static const uint8_t lldt[] = LOAD_SEL(LLDT_AX, SEL_TSS);
	struct xh *h = sys_new();
	struct x86_sregs s;

	(void)state;
	/* LTR: null #GP(0); a selector into the LDT #GP(sel); the wrong
	 * type (an LDT descriptor) #GP(sel); not present #NP(sel). */
	assert_int_equal(sys_run_fault(h, ltr_null, sizeof(ltr_null), X86_GP),
			 0);
	assert_int_equal(sys_run_fault(h, ltr_ti, sizeof(ltr_ti), X86_GP),
			 SEL_TSS | 4);
	sys_gdt(h)[6] = sys_tss_descriptor_low(SYS_TSS, 0x2);
	assert_int_equal(sys_run_fault(h, ltr, sizeof(ltr), X86_GP), SEL_TSS);
	sys_gdt(h)[6] = sys_tss_descriptor_low(SYS_TSS, 0x9) & ~(1ULL << 47);
	assert_int_equal(sys_run_fault(h, ltr, sizeof(ltr), X86_NP), SEL_TSS);
	/* A non-canonical base (bits 63:32 in the high quadword). */
	sys_gdt(h)[6] = sys_tss_descriptor_low(SYS_TSS, 0x9);
	sys_gdt(h)[7] = 0x80000000ULL;
	assert_int_equal(sys_run_fault(h, ltr, sizeof(ltr), X86_GP), SEL_TSS);
	sys_gdt(h)[7] = SYS_TSS >> 32;

	/* LLDT: an available TSS is the wrong type; an LDT descriptor
	 * loads with its base; a null selector leaves LDTR unusable. */
	assert_int_equal(sys_run_fault(h, lldt, sizeof(lldt), X86_GP), SEL_TSS);
	sys_gdt(h)[6] = sys_tss_descriptor_low(0x123000, 0x2);
	sys_run_ok(h, lldt, sizeof(lldt));
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.ldtr.sel, SEL_TSS);
	assert_int_equal(s.ldtr.base, 0x123000);
	sys_run_ok(h, lldt_null, sizeof(lldt_null));
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.ldtr.sel, 0);
	xh_free(h);

	/* Both are CPL0 only. */
	h = sys_new();
	sys_enter_cpl3(h);
	assert_int_equal(sys_run_fault(h, lldt_null, sizeof(lldt_null), X86_GP),
			 0);
	xh_free(h);
}

static void test_segment_mov_sreg_loads_and_checks(void **state)
{
	static const uint8_t ds[] = { 0xb8, 0x23, 0x00, 0x00, 0x00,
				      0x8e, 0xd8, 0x8c, 0xdb };
	static const uint8_t ss3[] = {
		0xb8, 0x23, 0x00, 0x00, 0x00, 0x8e, 0xd0
	};
	static const uint8_t ssnull[] = { 0x31, 0xc0, 0x8e, 0xd0 };
	static const uint8_t cs[] = { 0x8e, 0xc8 };
	static const uint8_t ds40[] = {
		0xb8, 0x40, 0x00, 0x00, 0x00, 0x8e, 0xd8
	};
	struct xh *h = sys_new();
	struct x86_sregs s;

	(void)state;
	sys_set_reg(h, X86_RBX, ~0ULL);
	sys_run_ok(h, ds, sizeof(ds));
	/* MOV r32, Sreg zero-extends. */
	assert_int_equal(sys_reg(h, X86_RBX), SEL_UDATA);
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.seg[X86_DS].sel, SEL_UDATA);
	assert_int_equal(X86_SEG_DPL(s.seg[X86_DS].attr), 3);

	/* SS needs RPL = DPL = CPL: #GP(selector without RPL). */
	assert_int_equal(sys_run_fault(h, ss3, sizeof(ss3), X86_GP), 0x20);
	xh_free(h);

	/* A null SS with RPL 0 is fine at CPL0 in 64-bit mode. */
	h = sys_new();
	sys_run_ok(h, ssnull, sizeof(ssnull));
	x86_get_sregs(h->cpu, &s);
	assert_true(s.seg[X86_SS].attr & X86_SEG_UNUSABLE);
	xh_free(h);

	h = sys_new();
	sys_run_fault(h, cs, sizeof(cs), X86_UD);
	xh_free(h);

	/* Loading a data descriptor sets its accessed bit. */
	h = sys_new();
	sys_gdt(h)[8] = 0x00cf92000000ffffULL;
	sys_run_ok(h, ds40, sizeof(ds40));
	assert_int_equal(sys_gdt(h)[8], 0x00cf93000000ffffULL);
	/* Not present: #NP(selector). */
	sys_gdt(h)[8] = 0x00cf12000000ffffULL;
	assert_int_equal(sys_run_fault(h, ds40, sizeof(ds40), X86_NP), 0x40);
	xh_free(h);
}

static void test_segment_far_jmp_and_call_through_memory(void **state)
{
	static const uint8_t jmp[] = { 0xb8, 0x00, 0x00, 0x30,
				       0x00, 0x48, 0xff, 0x28 };
	static const uint8_t call[] = { 0xb8, 0x00, 0x00, 0x30,
					0x00, 0x48, 0xff, 0x18 };
	static const uint8_t hlt = 0xf4;
	struct xh *h = sys_new();
	struct x86_exit exit;
	uint64_t target = 0x40000;
	uint16_t sel = SEL_KCODE;

	(void)state;
	xh_load(h, target, &hlt, 1);
	xh_load(h, SYS_DATA, &target, 8);
	xh_load(h, SYS_DATA + 8, &sel, 2);
	assert_int_equal(sys_run(h, jmp, sizeof(jmp), &exit), X86_EXIT_HLT);
	assert_int_equal(sys_rip(h), target + 1);
	assert_int_equal(sys_run(h, call, sizeof(call), &exit), X86_EXIT_HLT);
	assert_int_equal(sys_rip(h), target + 1);
	assert_int_equal(sys_reg(h, X86_RSP), XH_STACK_TOP - 16);
	assert_int_equal(sys_read64(h, XH_STACK_TOP - 16),
			 XH_CODE + sizeof(call));
	assert_int_equal(sys_read64(h, XH_STACK_TOP - 8), SEL_KCODE);

	/* To a 32-bit code segment (compatibility mode): #GP(selector). */
	sel = SEL_UCODE32;
	xh_load(h, SYS_DATA + 8, &sel, 2);
	sys_set_reg(h, X86_RSP, XH_STACK_TOP);
	assert_int_equal(sys_run_fault(h, jmp, sizeof(jmp), X86_GP),
			 SEL_UCODE32 & ~3);
	xh_free(h);
}

static void test_segment_into_in_64bit_mode_ud(void **state)
{
	static const uint8_t into[] = { 0xce };
	struct xh *h = sys_new();

	(void)state;
	sys_run_fault(h, into, sizeof(into), X86_UD);
	xh_free(h);
}

/* Runs one probe (LAR/LSL ecx, eax or VERR/VERW ax) with RAX = sel,
 * at CPL0 or (cpl3) at CPL3, whence a UD2 after it returns to CPL0:
 * returns ZF; *rcx gets RCX after (0xdead... before). */
static bool probe_at(struct xh *h, bool cpl3, const uint8_t code[3],
		     uint16_t sel, uint64_t *rcx)
{
	uint8_t bytes[5];

	memcpy(bytes, code, 3);
	bytes[3] = 0x0f;
	bytes[4] = 0x0b;
	sys_set_reg(h, X86_RAX, sel);
	sys_set_reg(h, X86_RCX, 0xdeadbeefcafef00dULL);
	if (cpl3) {
		sys_enter_cpl3(h);
		sys_run_fault(h, bytes, 5, X86_UD);
	} else {
		sys_run_ok(h, bytes, 3);
	}
	*rcx = sys_reg(h, X86_RCX);
	return sys_rflags(h) & X86_RFLAGS_ZF;
}

static bool probe(struct xh *h, const uint8_t code[3], uint16_t sel,
		  uint64_t *rcx)
{
	return probe_at(h, false, code, sel, rcx);
}

static bool probe3(struct xh *h, const uint8_t code[3], uint16_t sel,
		   uint64_t *rcx)
{
	return probe_at(h, true, code, sel, rcx);
}

/*
 * SDM vol. 2, LAR, LSL, VERR, VERW: ZF = 1 and (LAR, LSL) the access
 * rights masked by 00F0FF00H or the byte-granular limit, when the
 * descriptor is of an accepted type and the privilege allows (conforming
 * code always does); else ZF = 0 and the destination is unchanged. A
 * null selector or one past the GDT limit fails without a fault.
 */
static void test_segment_descriptor_probes(void **state)
{
	static const uint8_t lar[3] = { 0x0f, 0x02, 0xc8 };
	static const uint8_t lsl[3] = { 0x0f, 0x03, 0xc8 };
	static const uint8_t verr[3] = { 0x0f, 0x00, 0xe0 };
	static const uint8_t verw[3] = { 0x0f, 0x00, 0xe8 };
	const uint64_t unchanged = 0xdeadbeefcafef00dULL;
	struct xh *h = sys_new();
	uint64_t *gdt = sys_gdt(h);
	uint64_t rcx;

	(void)state;
	gdt[8] = 0x00cff1000000ffffULL; /* 0x40: read-only data, DPL3 */
	gdt[9] = 0x00cf9c000000ffffULL; /* 0x48: conforming, execute-only */

	assert_true(probe(h, lar, SEL_KCODE, &rcx));
	assert_int_equal(rcx, 0x00a09b00);
	assert_true(probe(h, lsl, SEL_KDATA, &rcx));
	assert_int_equal(rcx, 0xffffffffULL);
	assert_true(probe(h, lsl, SEL_TSS, &rcx)); /* busy 64-bit TSS */
	assert_int_equal(rcx, 0x67);
	assert_false(probe(h, lar, 0, &rcx)); /* null */
	assert_int_equal(rcx, unchanged);
	assert_false(probe(h, lar, 0x50, &rcx)); /* past the GDT limit */
	assert_int_equal(rcx, unchanged);
	assert_false(probe(h, lar, 0x38, &rcx)); /* TSS high half: type 0 */
	{
		/* A descriptor only partly inside the limit fails too. */
		struct x86_sregs sr;

		x86_get_sregs(h->cpu, &sr);
		sr.gdt.limit = 0x4b;
		x86_set_sregs(h->cpu, &sr);
		assert_false(probe(h, lar, 0x48, &rcx));
		sr.gdt.limit = SYS_GDT_ENTRIES * 8 - 1;
		x86_set_sregs(h->cpu, &sr);
		assert_true(probe(h, lar, 0x48, &rcx));
	}

	assert_true(probe(h, verr, SEL_KCODE, &rcx)); /* readable code */
	assert_false(probe(h, verw, SEL_KCODE, &rcx)); /* code: never */
	assert_true(probe(h, verw, SEL_KDATA, &rcx));
	assert_false(probe(h, verw, 0x40, &rcx)); /* read-only data */
	assert_true(probe(h, verr, 0x40, &rcx));
	assert_false(probe(h, verr, 0x48, &rcx)); /* execute-only */
	assert_false(probe(h, verw, SEL_KDATA | 3, &rcx)); /* RPL 3 > DPL */
	assert_false(probe(h, verr, SEL_TSS, &rcx)); /* system */

	assert_false(probe3(h, verr, SEL_KDATA, &rcx)); /* DPL 0 < CPL 3 */
	assert_true(probe3(h, verw, SEL_UDATA, &rcx));
	assert_true(probe3(h, lar, 0x48, &rcx)); /* conforming: no check */
	assert_int_equal(rcx, 0x00c09c00);
	assert_false(probe3(h, lar, SEL_KCODE, &rcx));
	assert_int_equal(rcx, unchanged);
	assert_false(probe3(h, lsl, SEL_TSS, &rcx)); /* DPL 0 */
	xh_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_segment_iretq_to_cpl3_and_back_via_fault),
		cmocka_unit_test(test_segment_iretq_to_rpl_below_cpl_gp),
		cmocka_unit_test(test_segment_iretd_pops_five_dwords),
		cmocka_unit_test(test_segment_iretq_with_nt_gp),
		cmocka_unit_test(test_segment_lretq_same_level_and_to_cpl3),
		cmocka_unit_test(test_segment_syscall_sysret_round_trip),
		cmocka_unit_test(test_segment_sysret_to_cpl3_selectors),
		cmocka_unit_test(test_segment_syscall_without_sce_ud),
		cmocka_unit_test(test_segment_sysret_noncanonical_rcx_gp),
		cmocka_unit_test(test_segment_ltr_sets_busy_bit),
		cmocka_unit_test(test_segment_ltr_lldt_descriptor_checks),
		cmocka_unit_test(test_segment_mov_sreg_loads_and_checks),
		cmocka_unit_test(test_segment_far_jmp_and_call_through_memory),
		cmocka_unit_test(test_segment_into_in_64bit_mode_ud),
		cmocka_unit_test(test_segment_descriptor_probes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
