/*
 * Tests of exec_system.c and cpuid.c: HLT, the MSRs and their #GP rules,
 * control-register writes and their #GP rules and paging exits, the
 * descriptor-table loads and stores, the IOPL-sensitive flags, SWAPGS,
 * MOV to and from debug registers, INVLPG, RDTSC, CLAC/STAC, UD2, CPUID, and the PCID rules of CR3/CR4
 * with INVPCID's effect on the soft TLB. Segmentation (IRET, far RET,
 * SYSCALL/SYSRET, segment loads, LTR/LLDT, far JMP/CALL, INTO), which
 * exec_segment.c implements, is tested in test_segment.c. Expected
 * values come from the SDM's descriptions of each instruction.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sys_setup.h"

static void test_system_hlt_exits_after_retiring(void **state)
{
	struct xh *h = sys_new();
	struct x86_exit exit;

	(void)state;
	sys_set_rflags(h, 0x202);
	assert_int_equal(sys_run(h, NULL, 0, &exit), X86_EXIT_HLT);
	assert_true(exit.hlt.interrupts_enabled);
	assert_int_equal(sys_rip(h), XH_CODE + 1);
	xh_free(h);
}

static void test_system_hlt_at_cpl3_gp(void **state)
{
	struct xh *h = sys_new();

	(void)state;
	sys_enter_cpl3(h);
	assert_int_equal(sys_run_fault(h, NULL, 0, X86_GP), 0);
	xh_free(h);
}

static void test_system_rdmsr_unknown_gp(void **state)
{
	static const uint8_t code[] = {
		0xb9, 0x78, 0x56, 0x34, 0x12, 0x0f, 0x32
	};
	struct xh *h = sys_new();

	(void)state;
	assert_int_equal(sys_run_fault(h, code, sizeof(code), X86_GP), 0);
	xh_free(h);
}

/* Runs RDMSR (or WRMSR of EDX:EAX = 0:value) of msr at CPL0: returns the
 * vector it faulted with, or -1 when it ran; *out gets EDX:EAX. */
static int msr_access(bool write, uint32_t msr, uint32_t value, uint64_t *out)
{
	/* mov ecx, msr; mov eax, value; xor edx, edx; rdmsr/wrmsr */
	uint8_t code[] = {
		0xb9, 0, 0, 0,	  0,	0xb8, 0,
		0,    0, 0, 0x31, 0xd2, 0x0f, (uint8_t)(write ? 0x30 : 0x32)
	};
	struct xh *h = sys_new();
	struct x86_exit exit;
	int vector = -1;

	memcpy(code + 1, &msr, 4);
	memcpy(code + 6, &value, 4);
	assert_int_equal(sys_run(h, code, sizeof(code), &exit), X86_EXIT_HLT);
	if (sys_in_handler(h, X86_GP))
		vector = X86_GP;
	*out = (sys_reg(h, X86_RDX) << 32) | (uint32_t)sys_reg(h, X86_RAX);
	xh_free(h);
	return vector;
}

/* SDM vol. 3, 12.11.1 and 16.3.1: no MTRRs and no machine-check banks
 * (CPUID reports neither): MTRRCAP, MTRR_DEF_TYPE and MCG_CAP read 0,
 * MTRR_DEF_TYPE takes only 0, the capability MSRs are read-only, and
 * SPEC_CTRL and ARCH_CAPABILITIES (not in CPUID either) are #GP. */
static void test_system_capability_msrs_say_none(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(msr_access(false, 0xfe, 0, &v), -1);
	assert_int_equal(v, 0);
	assert_int_equal(msr_access(false, 0x2ff, 0, &v), -1);
	assert_int_equal(v, 0);
	assert_int_equal(msr_access(false, 0x179, 0, &v), -1);
	assert_int_equal(v, 0);
	assert_int_equal(msr_access(true, 0x2ff, 0, &v), -1);
	assert_int_equal(msr_access(true, 0x2ff, 0x806, &v), X86_GP);
	assert_int_equal(msr_access(true, 0xfe, 0, &v), X86_GP);
	assert_int_equal(msr_access(true, 0x179, 0, &v), X86_GP);
	assert_int_equal(msr_access(false, 0x48, 0, &v), X86_GP);
	assert_int_equal(msr_access(false, 0x10a, 0, &v), X86_GP);
}

static void test_system_wrmsr_fs_base_canonical_rules(void **state)
{
	static const uint8_t bad[] = {
		0xb9, 0x00, 0x01, 0x00, 0xc0, 0xba, 0x00,
		0x80, 0x00, 0x00, 0x31, 0xc0, 0x0f, 0x30
	};
	static const uint8_t good[] = { 0xb9, 0x00, 0x01, 0x00, 0xc0, 0xba,
					0xff, 0x7f, 0x00, 0x00, 0xb8, 0x00,
					0x50, 0x34, 0x12, 0x0f, 0x30, 0x31,
					0xc0, 0x31, 0xd2, 0x0f, 0x32 };
	struct xh *h = sys_new();
	struct x86_sregs s;

	(void)state;
	assert_int_equal(sys_run_fault(h, bad, sizeof(bad), X86_GP), 0);
	xh_free(h);

	h = sys_new();
	sys_run_ok(h, good, sizeof(good));
	assert_int_equal(sys_reg(h, X86_RAX), 0x12345000);
	assert_int_equal(sys_reg(h, X86_RDX), 0x7fff);
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.seg[X86_FS].base, 0x7fff12345000ULL);
	xh_free(h);
}

static void test_system_wrmsr_pat_reserved_type_gp(void **state)
{
	static const uint8_t bad[] = {
		0xb9, 0x77, 0x02, 0x00, 0x00, 0xb8, 0x02,
		0x00, 0x00, 0x00, 0x31, 0xd2, 0x0f, 0x30
	};
	static const uint8_t good[] = { 0xb9, 0x77, 0x02, 0x00, 0x00,
					0xb8, 0x01, 0x04, 0x05, 0x07,
					0xba, 0x06, 0x06, 0x06, 0x06,
					0x0f, 0x30, 0x0f, 0x32 };
	struct xh *h = sys_new();

	(void)state;
	assert_int_equal(sys_run_fault(h, bad, sizeof(bad), X86_GP), 0);
	xh_free(h);
	h = sys_new();
	sys_run_ok(h, good, sizeof(good));
	assert_int_equal(sys_reg(h, X86_RAX), 0x07050401);
	assert_int_equal(sys_reg(h, X86_RDX), 0x06060606);
	xh_free(h);
}

static void test_system_wrmsr_efer_rules(void **state)
{
	static const uint8_t rsvd[] = { 0xb9, 0x80, 0x00, 0x00, 0xc0,
					0xb8, 0x02, 0x0d, 0x00, 0x00,
					0x31, 0xd2, 0x0f, 0x30 };
	static const uint8_t lme[] = {
		0xb9, 0x80, 0x00, 0x00, 0xc0, 0xb8, 0x00,
		0x0c, 0x00, 0x00, 0x31, 0xd2, 0x0f, 0x30
	};
	static const uint8_t nxe[] = {
		0xb9, 0x80, 0x00, 0x00, 0xc0, 0xb8, 0x00,
		0x05, 0x00, 0x00, 0x31, 0xd2, 0x0f, 0x30
	};
	static const uint8_t rd[] = { 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32 };
	struct xh *h = sys_new();
	struct x86_exit exit;
	struct x86_sregs s;

	(void)state;
	sys_run_ok(h, rd, sizeof(rd));
	assert_int_equal(sys_reg(h, X86_RAX), 0xd00);
	assert_int_equal(sys_run_fault(h, rsvd, sizeof(rsvd), X86_GP), 0);
	xh_free(h);

	/* LME cannot change while paging is on. */
	h = sys_new();
	assert_int_equal(sys_run_fault(h, lme, sizeof(lme), X86_GP), 0);
	xh_free(h);

	/* Clearing NXE changes the shadow tables' meaning: paging exit. */
	h = sys_new();
	assert_int_equal(sys_run(h, nxe, sizeof(nxe), &exit), X86_EXIT_PAGING);
	assert_int_equal(exit.paging.reg, 8);
	assert_int_equal(exit.paging.old_value, 0xd00);
	assert_int_equal(exit.paging.new_value, 0x500);
	assert_int_equal(sys_rip(h), XH_CODE + sizeof(nxe));
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.efer, 0x500);
	xh_free(h);
}

static void test_system_rdmsr_at_cpl3_gp(void **state)
{
	static const uint8_t code[] = {
		0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32
	};
	struct xh *h = sys_new();

	(void)state;
	sys_enter_cpl3(h);
	assert_int_equal(sys_run_fault(h, code, sizeof(code), X86_GP), 0);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 40), XH_CODE + 5);
	xh_free(h);
}

static void test_system_tsc_write_moves_rdtsc(void **state)
{
	static const uint8_t code[] = { 0xb9, 0x10, 0x00, 0x00, 0x00, 0xba,
					0x10, 0x00, 0x00, 0x00, 0x31, 0xc0,
					0x0f, 0x30, 0x0f, 0x31, 0x48, 0xc1,
					0xe2, 0x20, 0x48, 0x09, 0xc2 };
	struct xh *h = sys_new();
	uint64_t tsc;

	(void)state;
	sys_run_ok(h, code, sizeof(code));
	tsc = sys_reg(h, X86_RDX);
	assert_true(tsc >= 0x1000000000ULL);
	assert_true(tsc < 0x1000000000ULL + (1ULL << 40));
	xh_free(h);
}

static void test_system_cr_writes_invalid_gp(void **state)
{
	/* Clearing CR0.PG in long mode; clearing CR4.PAE; CR4.OSXSAVE
	 * (XSAVE is not reported); CR3 bit 63 without PCIDE; CR8 > 15.
	 * Each loads its value with a 5- or 10-byte MOV first. */
	static const uint8_t cr0_pg[] = { 0xb8, 0x33, 0x00, 0x01,
					  0x00, 0x0f, 0x22, 0xc0 };
	static const uint8_t cr4_pae[] = { 0xb8, 0x00, 0x00, 0x00,
					   0x00, 0x0f, 0x22, 0xe0 };
	static const uint8_t cr4_fx[] = { 0xb8, 0x20, 0x00, 0x04,
					  0x00, 0x0f, 0x22, 0xe0 };
	static const uint8_t cr3_63[] = { 0x48, 0xb8, 0x00, 0x10, 0x00,
					  0x00, 0x00, 0x00, 0x00, 0x80,
					  0x0f, 0x22, 0xd8 };
	static const uint8_t cr8[] = { 0xb8, 0x10, 0x00, 0x00, 0x00,
				       0x44, 0x0f, 0x22, 0xc0 };
	const struct {
		const uint8_t *code;
		size_t len, mov;
	} cases[] = {
		{ cr0_pg, sizeof(cr0_pg), 5 }, { cr4_pae, sizeof(cr4_pae), 5 },
		{ cr4_fx, sizeof(cr4_fx), 5 }, { cr3_63, sizeof(cr3_63), 10 },
		{ cr8, sizeof(cr8), 5 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct xh *h = sys_new();

		assert_int_equal(sys_run_fault(h, cases[i].code, cases[i].len,
					       X86_GP),
				 0);
		assert_int_equal(sys_read64(h, XH_STACK_TOP - 40),
				 XH_CODE + cases[i].mov);
		xh_free(h);
	}
}

static void test_system_cr_writes_exit_paging(void **state)
{
	static const uint8_t cr3[] = { 0xb8, 0x00, 0x50, 0x00,
				       0x00, 0x0f, 0x22, 0xd8 };
	static const uint8_t smep[] = { 0xb8, 0x20, 0x00, 0x10,
					0x00, 0x0f, 0x22, 0xe0 };
	static const uint8_t wp[] = { 0xb8, 0x33, 0x00, 0x00,
				      0x80, 0x0f, 0x22, 0xc0 };
	struct xh *h = sys_new();
	struct x86_exit exit;

	(void)state;
	assert_int_equal(sys_run(h, cr3, sizeof(cr3), &exit), X86_EXIT_PAGING);
	assert_int_equal(exit.paging.reg, 3);
	assert_int_equal(exit.paging.old_value, 0x1000);
	assert_int_equal(exit.paging.new_value, 0x5000);
	assert_int_equal(sys_rip(h), XH_CODE + sizeof(cr3));
	assert_int_equal(sys_run(h, wp, sizeof(wp), &exit), X86_EXIT_PAGING);
	assert_int_equal(exit.paging.reg, 0);
	assert_int_equal(exit.paging.new_value, 0x80000033);
	/* Last: with SMEP on, the harness's user pages are not executable
	 * at CPL0 any more. */
	assert_int_equal(sys_run(h, smep, sizeof(smep), &exit),
			 X86_EXIT_PAGING);
	assert_int_equal(exit.paging.reg, 4);
	assert_int_equal(exit.paging.new_value, 0x100020);
	xh_free(h);
}

static void test_system_cr_reads_and_cr2_cr8(void **state)
{
	static const uint8_t code[] = {
		0xb8, 0x05, 0x00, 0x00, 0x00, 0x44, 0x0f, 0x22, 0xc0,
		0x44, 0x0f, 0x20, 0xc3, 0xb8, 0xbc, 0x0a, 0x00, 0x00,
		0x0f, 0x22, 0xd0, 0x0f, 0x20, 0xd2, 0x0f, 0x20, 0xc6,
		0x0f, 0x20, 0xe7, 0x0f, 0x20, 0xdd,
	};
	struct xh *h = sys_new();

	(void)state;
	sys_run_ok(h, code, sizeof(code));
	assert_int_equal(sys_reg(h, X86_RBX), 5);
	assert_int_equal(sys_reg(h, X86_RDX), 0xabc);
	assert_int_equal(sys_reg(h, X86_RSI), 0x80010033);
	assert_int_equal(sys_reg(h, X86_RDI), 0x20);
	assert_int_equal(sys_reg(h, X86_RBP), 0x1000);
	xh_free(h);
}

static void test_system_mov_cr_at_cpl3_gp_and_cr1_ud(void **state)
{
	static const uint8_t rd[] = { 0x0f, 0x20, 0xc0 };
	static const uint8_t cr1[] = { 0x0f, 0x20, 0xc8 };
	struct xh *h = sys_new();

	(void)state;
	sys_run_fault(h, cr1, sizeof(cr1), X86_UD);
	xh_free(h);
	h = sys_new();
	sys_enter_cpl3(h);
	assert_int_equal(sys_run_fault(h, rd, sizeof(rd), X86_GP), 0);
	xh_free(h);
}

static void test_system_mov_dr_round_trip_and_aliases(void **state)
{
	static const uint8_t reset[] = { 0x0f, 0x21, 0xf0, 0x0f, 0x21, 0xfb };
	static const uint8_t code[] = {
		0x48, 0xb8, 0x78, 0x56, 0x34, 0x12, 0x00, 0x80,
		0xff, 0xff, 0x0f, 0x23, 0xc8, /* mov dr1, rax */
		0xb8, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x23, 0xf0, /* dr6 */
		0xb8, 0xff, 0xdf, 0xff, 0xff, 0x0f, 0x23, 0xf8, /* dr7 */
		0x0f, 0x21, 0xce, /* mov rsi, dr1 */
		0x0f, 0x21, 0xf1, /* mov rcx, dr6 */
		0x0f, 0x21, 0xea, /* mov rdx, dr5 (DR7) */
		0x0f, 0x21, 0xe3, /* mov rbx, dr4 (DR6) */
	};
	struct xh *h = sys_new();

	(void)state;
	/* Power-on values (SDM vol. 3, table 10-1). */
	sys_run_ok(h, reset, sizeof(reset));
	assert_int_equal(sys_reg(h, X86_RAX), 0xffff0ff0);
	assert_int_equal(sys_reg(h, X86_RBX), 0x400);
	/* DR0-3 keep all 64 bits; DR6/DR7 keep their writable bits with
	 * the fixed ones set; DR4/DR5 are DR6/DR7 without CR4.DE. */
	sys_run_ok(h, code, sizeof(code));
	assert_int_equal(sys_reg(h, X86_RSI), 0xffff800012345678ULL);
	assert_int_equal(sys_reg(h, X86_RCX), 0xffffefff);
	assert_int_equal(sys_reg(h, X86_RDX), 0xffff07ff);
	assert_int_equal(sys_reg(h, X86_RBX), 0xffffefff);
	xh_free(h);
}

static void test_system_mov_dr_faults(void **state)
{
	static const uint8_t rd[] = { 0x0f, 0x21, 0xc0 };
	static const uint8_t dr8[] = { 0x44, 0x0f, 0x21, 0xc0 };
	static const uint8_t high[] = { 0x48, 0xb8, 0x00, 0x00, 0x00, 0x00,
					0x01, 0x00, 0x00, 0x00, 0x0f, 0x23,
					0xc0, 0x0f, 0x23, 0xf8 };
	static const uint8_t gd[] = { 0xb8, 0x00, 0x20, 0x00, 0x00, 0x0f,
				      0x23, 0xf8, 0x0f, 0x21, 0xc0 };
	static const uint8_t after[] = { 0x0f, 0x21, 0xf1, 0x0f, 0x21, 0xfa };
	struct xh *h = sys_new();

	(void)state;
	/* DR8-15 do not exist. */
	sys_run_fault(h, dr8, sizeof(dr8), X86_UD);
	xh_free(h);
	/* Bits 63:32 of DR7 must be 0 (DR0 takes the same value). */
	h = sys_new();
	assert_int_equal(sys_run_fault(h, high, sizeof(high), X86_GP), 0);
	assert_int_equal(sys_read64(h, XH_STACK_TOP - 40), XH_CODE + 13);
	xh_free(h);
	/* DR7.GD: the next access is a #DB fault at the MOV, with DR6.BD
	 * set and GD cleared for the handler. */
	h = sys_new();
	assert_int_equal(sys_run_fault(h, gd, sizeof(gd), X86_DB), XH_CODE + 8);
	sys_run_ok(h, after, sizeof(after));
	assert_int_equal(sys_reg(h, X86_RCX), 0xffff2ff0);
	assert_int_equal(sys_reg(h, X86_RDX), 0x400);
	xh_free(h);
	/* CPL 3. */
	h = sys_new();
	sys_enter_cpl3(h);
	assert_int_equal(sys_run_fault(h, rd, sizeof(rd), X86_GP), 0);
	xh_free(h);
}

static void test_system_sgdt_sidt_lidt_round_trip(void **state)
{
	static const uint8_t store[] = { 0xb8, 0x00, 0x00, 0x30, 0x00, 0x0f,
					 0x01, 0x00, 0x0f, 0x01, 0x48, 0x10 };
	static const uint8_t load[] = { 0xb8, 0x00, 0x00, 0x30,
					0x00, 0x0f, 0x01, 0x18 };
	struct xh *h = sys_new();
	struct x86_sregs s;
	uint8_t *p = xh_ptr(h, SYS_DATA);
	uint16_t limit;
	uint64_t base;

	(void)state;
	sys_run_ok(h, store, sizeof(store));
	memcpy(&limit, p, 2);
	memcpy(&base, p + 2, 8);
	assert_int_equal(limit, SYS_GDT_ENTRIES * 8 - 1);
	assert_int_equal(base, SYS_GDT);
	memcpy(&limit, p + 16, 2);
	memcpy(&base, p + 18, 8);
	assert_int_equal(limit, 0xfff);
	assert_int_equal(base, SYS_IDT);

	limit = 0x1ff;
	base = 0x45000;
	memcpy(p, &limit, 2);
	memcpy(p + 2, &base, 8);
	sys_run_ok(h, load, sizeof(load));
	x86_get_sregs(h->cpu, &s);
	assert_int_equal(s.idt.limit, 0x1ff);
	assert_int_equal(s.idt.base, 0x45000);

	/* A non-canonical base: #GP(0). */
	base = 0x0000800000000000ULL;
	memcpy(p + 2, &base, 8);
	sys_setup(h);
	assert_int_equal(sys_run_fault(h, load, sizeof(load), X86_GP), 0);
	xh_free(h);
}

static void test_system_cli_at_cpl3_gp_popf_keeps_if_iopl(void **state)
{
	static const uint8_t cli[] = { 0xfa };
	static const uint8_t popf[] = { 0x68, 0x02, 0x30, 0x00,
					0x00, 0x9d, 0x9c, 0x58 };
	struct xh *h = sys_new();

	(void)state;
	sys_enter_cpl3(h);
	assert_int_equal(sys_run_fault(h, cli, sizeof(cli), X86_GP), 0);
	xh_free(h);

	/* POPF at CPL3 > IOPL: IOPL and IF are silently kept. */
	h = sys_new();
	sys_enter_cpl3(h);
	sys_set_rflags(h, 0x202);
	sys_run_fault(h, popf, sizeof(popf), X86_GP); /* the final HLT */
	assert_int_equal(sys_reg(h, X86_RAX), 0x202);
	xh_free(h);
}

static void test_system_swapgs_exchanges_gs_base(void **state)
{
	static const uint8_t code[] = { 0xb9, 0x02, 0x01, 0x00, 0xc0, 0xb8,
					0x00, 0x40, 0x23, 0x01, 0x31, 0xd2,
					0x0f, 0x30, 0x0f, 0x01, 0xf8, 0xb9,
					0x01, 0x01, 0x00, 0xc0, 0x0f, 0x32 };
	struct xh *h = sys_new();

	(void)state;
	sys_run_ok(h, code, sizeof(code));
	assert_int_equal(sys_reg(h, X86_RAX), 0x1234000);
	xh_free(h);
}

static void test_system_invlpg_exits_with_address(void **state)
{
	static const uint8_t code[] = { 0xb8, 0x00, 0x50, 0x34,
					0x00, 0x0f, 0x01, 0x38 };
	struct xh *h = sys_new();
	struct x86_exit exit;

	(void)state;
	assert_int_equal(sys_run(h, code, sizeof(code), &exit),
			 X86_EXIT_INVLPG);
	assert_int_equal(exit.invlpg.gva, 0x345000);
	assert_false(exit.invlpg.all);
	assert_int_equal(sys_rip(h), XH_CODE + sizeof(code));
	xh_free(h);
}

static void test_system_rdtsc_monotonic(void **state)
{
	static const uint8_t code[] = { 0x0f, 0x31, 0x89, 0xc3,
					0x89, 0xd6, 0x0f, 0x31 };
	struct xh *h = sys_new();
	uint64_t a, b;

	(void)state;
	sys_run_ok(h, code, sizeof(code));
	a = (sys_reg(h, X86_RSI) << 32) | sys_reg(h, X86_RBX);
	b = (sys_reg(h, X86_RDX) << 32) | sys_reg(h, X86_RAX);
	assert_true(b >= a);
	xh_free(h);
}

static void test_system_stac_clac_toggle_ac(void **state)
{
	static const uint8_t code[] = { 0x0f, 0x01, 0xcb, 0x9c, 0x5b,
					0x0f, 0x01, 0xca, 0x9c, 0x59 };
	struct xh *h = sys_new();

	(void)state;
	sys_run_ok(h, code, sizeof(code));
	assert_true(sys_reg(h, X86_RBX) & X86_RFLAGS_AC);
	assert_false(sys_reg(h, X86_RCX) & X86_RFLAGS_AC);
	xh_free(h);
	h = sys_new();
	sys_enter_cpl3(h);
	sys_run_fault(h, code, sizeof(code), X86_UD);
	xh_free(h);
}

static void test_system_ud2_ud(void **state)
{
	static const uint8_t ud2[] = { 0x0f, 0x0b };
	struct xh *h = sys_new();

	(void)state;
	sys_run_fault(h, ud2, sizeof(ud2), X86_UD);
	xh_free(h);
}

/* ---- PCID and INVPCID ------------------------------------------------- */

/*
 * The soft TLB is checked through one data page P: a read fills its entry,
 * then P's leaf spte is pointed at page Q behind the CPU's back (no flush,
 * unlike xh_set_page()), so a later read returns Q's value exactly when
 * the instruction in between dropped the entry. In the harness CR3 never
 * selects the shadow root, so any CR3 value translates through it.
 */
#define PCID_P 0x401000ULL
#define PCID_Q 0x402000ULL
#define PCID_DESC SYS_DATA /* the INVPCID descriptor */
#define V_P 0x1111111111111111ULL
#define V_Q 0x2222222222222222ULL
#define CR4_PAE_PCIDE 0x20020ULL
#define CR3_NOFLUSH (1ULL << 63)

/* MOV CR4, RCX. */
static const uint8_t mov_cr4_rcx[] = { 0x0f, 0x22, 0xe1 };
/* MOV CR3, RDX. */
static const uint8_t mov_cr3_rdx[] = { 0x0f, 0x22, 0xda };
/* INVPCID RDI, [RSI]. */
static const uint8_t invpcid_rdi[] = { 0x66, 0x0f, 0x38, 0x82, 0x3e };
/* MOV RBX, [PCID_P]. */
static const uint8_t read_p_rbx[] = { 0x48, 0x8b, 0x1c, 0x25,
				      0x00, 0x10, 0x40, 0x00 };

/* Runs code to its HLT through the exits of CR writes and INVPCID; the
 * last of those exits is returned in *last (reason NONE if none). */
static void run_through(struct xh *h, const uint8_t *code, size_t len,
			struct x86_exit *last)
{
	struct x86_exit exit;
	enum x86_exit_reason r = sys_run(h, code, len, &exit);

	last->reason = X86_EXIT_NONE;
	while (r == X86_EXIT_PAGING || r == X86_EXIT_INVLPG) {
		*last = exit;
		r = xh_run(h, 100000, &exit);
	}
	assert_int_equal(r, X86_EXIT_HLT);
	assert_int_equal(sys_rip(h), XH_CODE + len + 1);
}

static struct x86_exit set_cr4(struct xh *h, uint64_t v)
{
	struct x86_exit last;

	sys_set_reg(h, X86_RCX, v);
	run_through(h, mov_cr4_rcx, sizeof(mov_cr4_rcx), &last);
	return last;
}

static struct x86_exit set_cr3(struct xh *h, uint64_t v)
{
	struct x86_exit last;

	sys_set_reg(h, X86_RDX, v);
	run_through(h, mov_cr3_rdx, sizeof(mov_cr3_rdx), &last);
	return last;
}

static void put_desc(struct xh *h, uint64_t lo, uint64_t la)
{
	sys_write64(h, PCID_DESC, lo);
	sys_write64(h, PCID_DESC + 8, la);
	sys_set_reg(h, X86_RSI, PCID_DESC);
}

static struct x86_exit invpcid(struct xh *h, uint64_t type, uint64_t pcid,
			       gva_t la)
{
	struct x86_exit last;

	put_desc(h, pcid, la);
	sys_set_reg(h, X86_RDI, type);
	run_through(h, invpcid_rdi, sizeof(invpcid_rdi), &last);
	assert_int_equal(last.reason, X86_EXIT_INVLPG);
	return last;
}

/* Runs INVPCID and expects the handler of vector (#GP: error code 0). */
static void invpcid_fault(struct xh *h, uint64_t type, uint64_t pcid, gva_t la,
			  unsigned int vector)
{
	struct x86_regs r;
	uint64_t err;

	put_desc(h, pcid, la);
	sys_set_reg(h, X86_RDI, type);
	err = sys_run_fault(h, invpcid_rdi, sizeof(invpcid_rdi), vector);
	if (vector == X86_GP)
		assert_int_equal(err, 0);
	/* Back to a usable stack and RIP for the next run. */
	x86_get_regs(h->cpu, &r);
	r.gpr[X86_RSP] = XH_STACK_TOP;
	x86_set_regs(h->cpu, &r);
}

static uint64_t read_p(struct xh *h)
{
	struct x86_exit last;

	run_through(h, read_p_rbx, sizeof(read_p_rbx), &last);
	return sys_reg(h, X86_RBX);
}

/* Points P's leaf spte at gpa without flushing anything. */
static void retarget_p(struct xh *h, gpa_t gpa, uint64_t flags)
{
	h->sptes[PCID_P / 4096] = (uint64_t)(uintptr_t)xh_ptr(h, gpa) |
				  X86_PTE_P | X86_PTE_W | X86_PTE_U | flags;
}

static struct xh *pcid_setup(void)
{
	struct xh *h = sys_new();

	sys_write64(h, PCID_P, V_P);
	sys_write64(h, PCID_Q, V_Q);
	return h;
}

static uint64_t cr3_of(struct xh *h)
{
	struct x86_sregs s;

	x86_get_sregs(h->cpu, &s);
	return s.cr3;
}

static uint64_t cr4_of(struct xh *h)
{
	struct x86_sregs s;

	x86_get_sregs(h->cpu, &s);
	return s.cr4;
}

/* SDM vol. 3, 4.10.1: CR4.PCIDE goes from 0 to 1 only while CR3[11:0]
 * is 000H; set, it stays settable whatever CR3[11:0] is; clearing it
 * keeps CR3. */
static void test_system_cr4_pcide_rules(void **state)
{
	struct xh *h = pcid_setup();
	struct x86_exit e;

	(void)state;
	set_cr3(h, 0x1001);
	sys_set_reg(h, X86_RCX, CR4_PAE_PCIDE);
	assert_int_equal(
		sys_run_fault(h, mov_cr4_rcx, sizeof(mov_cr4_rcx), X86_GP), 0);
	assert_int_equal(cr4_of(h), X86_CR4_PAE);
	sys_set_reg(h, X86_RSP, XH_STACK_TOP);

	set_cr3(h, 0x1000);
	e = set_cr4(h, CR4_PAE_PCIDE);
	assert_int_equal(e.reason, X86_EXIT_PAGING);
	assert_int_equal(e.paging.reg, 4);
	assert_int_equal(e.paging.new_value, CR4_PAE_PCIDE);
	set_cr3(h, 0x1005);
	e = set_cr4(h, CR4_PAE_PCIDE | X86_CR4_PGE);
	assert_int_equal(e.reason, X86_EXIT_PAGING);
	assert_int_equal(cr4_of(h), CR4_PAE_PCIDE | X86_CR4_PGE);
	e = set_cr4(h, X86_CR4_PAE);
	assert_int_equal(e.reason, X86_EXIT_PAGING);
	assert_int_equal(e.paging.old_value, CR4_PAE_PCIDE | X86_CR4_PGE);
	assert_int_equal(cr3_of(h), 0x1005);
	xh_free(h);
}

/* CR4.PSE, reported by CPUID, is accepted (IA-32e paging ignores it:
 * SDM vol. 3, 4.1.1) and reads back; CR4.DE, not reported, is #GP. */
static void test_system_cr4_pse_accepted_de_refused(void **state)
{
	struct xh *h = pcid_setup();

	(void)state;
	set_cr4(h, X86_CR4_PAE | X86_CR4_PSE);
	assert_int_equal(cr4_of(h), X86_CR4_PAE | X86_CR4_PSE);
	sys_set_reg(h, X86_RCX, X86_CR4_PAE | X86_CR4_PSE | X86_CR4_DE);
	assert_int_equal(
		sys_run_fault(h, mov_cr4_rcx, sizeof(mov_cr4_rcx), X86_GP), 0);
	assert_int_equal(cr4_of(h), X86_CR4_PAE | X86_CR4_PSE);
	xh_free(h);
}

/* SDM vol. 3, 4.10.4.1 and 4.5: with CR4.PCIDE, bit 63 of the source is
 * never stored (the exit carries the stored value); bits from
 * MAXPHYADDR up and bit 62 stay reserved. */
static void test_system_cr3_bit63_not_stored_reserved_gp(void **state)
{
	static const uint64_t reserved[] = { 1ULL << 62, 1ULL << 46,
					     1ULL << 51 };
	struct xh *h = pcid_setup();
	struct x86_exit e;

	(void)state;
	set_cr4(h, CR4_PAE_PCIDE);
	e = set_cr3(h, CR3_NOFLUSH | 0x5003);
	assert_int_equal(e.reason, X86_EXIT_PAGING);
	assert_int_equal(e.paging.reg, 3);
	assert_int_equal(e.paging.old_value, 0x1000);
	assert_int_equal(e.paging.new_value, 0x5003);
	assert_true(e.paging.noflush);
	assert_int_equal(cr3_of(h), 0x5003);
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		sys_set_reg(h, X86_RDX, CR3_NOFLUSH | reserved[i] | 0x1001);
		assert_int_equal(sys_run_fault(h, mov_cr3_rdx,
					       sizeof(mov_cr3_rdx), X86_GP),
				 0);
		assert_int_equal(cr3_of(h), 0x5003);
		sys_set_reg(h, X86_RSP, XH_STACK_TOP);
	}
	xh_free(h);
}

/* SDM vol. 3, 4.10.4.1: MOV to CR3 with bit 63 clear drops the new PCID's
 * entries; with it set, this TLB keeps them (it may); clearing PCIDE
 * drops everything. */
static void test_system_cr3_flush_follows_bit63(void **state)
{
	struct xh *h = pcid_setup();

	(void)state;
	set_cr4(h, CR4_PAE_PCIDE);
	set_cr3(h, 0x1001);
	assert_int_equal(read_p(h), V_P);
	retarget_p(h, PCID_Q, 0);
	/* The control: nothing dropped the entry yet. */
	assert_int_equal(read_p(h), V_P);
	set_cr3(h, CR3_NOFLUSH | 0x1001);
	assert_int_equal(read_p(h), V_P);
	set_cr3(h, 0x1001);
	assert_int_equal(read_p(h), V_Q);

	retarget_p(h, PCID_P, 0);
	assert_int_equal(read_p(h), V_Q);
	set_cr4(h, X86_CR4_PAE);
	assert_int_equal(read_p(h), V_P);
	xh_free(h);
}

/* SDM vol. 2, INVLPG: the entry of the named page goes (the harness's
 * tables are not the MMU's, which would also flush when it changes an
 * spte: here only INVLPG can drop it). */
static void test_system_invlpg_drops_the_entry(void **state)
{
	/* INVLPG [PCID_P]. */
	static const uint8_t invlpg_p[] = { 0x0f, 0x01, 0x3c, 0x25,
					    0x00, 0x10, 0x40, 0x00 };
	struct xh *h = pcid_setup();
	struct x86_exit last;

	(void)state;
	assert_int_equal(read_p(h), V_P);
	retarget_p(h, PCID_Q, 0);
	assert_int_equal(read_p(h), V_P);
	run_through(h, invlpg_p, sizeof(invlpg_p), &last);
	assert_int_equal(last.reason, X86_EXIT_INVLPG);
	assert_int_equal(last.invlpg.gva, PCID_P);
	assert_int_equal(read_p(h), V_Q);
	xh_free(h);
}

/* SDM vol. 3, 4.10.4.1: MOV to CR3 (bit 63 clear) drops the entries of
 * the PCID it loads, not those of the PCID it leaves. */
static void test_system_cr3_flushes_the_new_pcid(void **state)
{
	struct xh *h = pcid_setup();
	struct x86_exit e;

	(void)state;
	set_cr4(h, CR4_PAE_PCIDE);
	set_cr3(h, 0x1001);
	assert_int_equal(read_p(h), V_P);
	set_cr3(h, CR3_NOFLUSH | 0x1002);
	retarget_p(h, PCID_Q, 0);
	/* The control: PCID 1's entry is still there. */
	set_cr3(h, CR3_NOFLUSH | 0x1001);
	assert_int_equal(read_p(h), V_P);
	set_cr3(h, CR3_NOFLUSH | 0x1002);
	e = set_cr3(h, 0x1001);
	assert_int_equal(e.paging.old_value, 0x1002);
	assert_false(e.paging.noflush);
	assert_int_equal(read_p(h), V_Q);
	xh_free(h);
}

/* SDM vol. 3, 4.10.2.4: an spte's G bit makes a global translation only
 * while CR4.PGE is set; without it the entry belongs to its PCID. */
static void test_system_global_bit_without_pge_not_global(void **state)
{
	struct xh *h = pcid_setup();

	(void)state;
	set_cr4(h, CR4_PAE_PCIDE);
	set_cr3(h, 0x1001);
	retarget_p(h, PCID_P, X86_PTE_G);
	assert_int_equal(read_p(h), V_P);
	retarget_p(h, PCID_Q, X86_PTE_G);
	set_cr3(h, CR3_NOFLUSH | 0x1002);
	assert_int_equal(read_p(h), V_Q);
	xh_free(h);
}

/* SDM vol. 3, 4.10.4.1: without PCIDE, MOV to CR3 drops the non-global
 * entries; with CR4.PGE a global one stays (this TLB keeps it). */
static void test_system_cr3_keeps_global_entries_with_pge(void **state)
{
	struct xh *h = pcid_setup();

	(void)state;
	set_cr4(h, X86_CR4_PAE | X86_CR4_PGE);
	retarget_p(h, PCID_P, X86_PTE_G);
	assert_int_equal(read_p(h), V_P);
	retarget_p(h, PCID_Q, X86_PTE_G);
	set_cr3(h, 0x1000);
	assert_int_equal(read_p(h), V_P);
	/* Clearing PGE drops it (4.10.4.1). */
	set_cr4(h, X86_CR4_PAE);
	assert_int_equal(read_p(h), V_Q);
	xh_free(h);
}

/* SDM vol. 3, 4.10.1: the PCID is all twelve bits CR3[11:0]: PCID 101H
 * does not use PCID 001H's entries. */
static void test_system_pcid_is_twelve_bits(void **state)
{
	struct xh *h = pcid_setup();

	(void)state;
	set_cr4(h, CR4_PAE_PCIDE);
	set_cr3(h, 0x1001);
	assert_int_equal(read_p(h), V_P);
	retarget_p(h, PCID_Q, 0);
	set_cr3(h, CR3_NOFLUSH | 0x1101);
	assert_int_equal(read_p(h), V_Q);
	xh_free(h);
}

/* The soft TLB caches rights of sptes the MMU made for one CR0.WP and
 * one CR4.SMAP (mem.c): a change of either drops every entry, with a
 * paging exit for the MMU. */
static void test_system_wp_and_smap_changes_drop_entries(void **state)
{
	static const uint8_t mov_cr0_rcx[] = { 0x0f, 0x22, 0xc1 };
	struct xh *h = pcid_setup();
	struct x86_sregs s;
	struct x86_exit last;

	(void)state;
	assert_int_equal(read_p(h), V_P);
	retarget_p(h, PCID_Q, 0);
	x86_get_sregs(h->cpu, &s);
	sys_set_reg(h, X86_RCX, s.cr0 ^ X86_CR0_WP);
	run_through(h, mov_cr0_rcx, sizeof(mov_cr0_rcx), &last);
	assert_int_equal(last.reason, X86_EXIT_PAGING);
	assert_int_equal(read_p(h), V_Q);

	retarget_p(h, PCID_P, 0);
	last = set_cr4(h, X86_CR4_PAE | X86_CR4_SMAP);
	assert_int_equal(last.reason, X86_EXIT_PAGING);
	assert_int_equal(last.paging.reg, 4);
	/* Under SMAP a CPL0 read of a user page needs RFLAGS.AC. */
	sys_set_rflags(h, 0x2 | X86_RFLAGS_AC);
	assert_int_equal(read_p(h), V_P);
	xh_free(h);
}

/* SDM vol. 2, INVPCID: every type drops the non-global entries of the
 * current PCID it names (type 0 at the given address); the exit tells the
 * MMU the address, or every address. */
static void test_system_invpcid_types_drop_entries(void **state)
{
	(void)state;
	for (uint64_t type = 0; type < 4; type++) {
		struct xh *h = pcid_setup();
		struct x86_exit e;

		set_cr4(h, CR4_PAE_PCIDE);
		set_cr3(h, 0x1007);
		assert_int_equal(read_p(h), V_P);
		retarget_p(h, PCID_Q, 0);
		e = invpcid(h, type, type < 2 ? 7 : 0, PCID_P);
		assert_int_equal(read_p(h), V_Q);
		assert_int_equal(e.invlpg.all, type != 0);
		if (type == 0)
			assert_int_equal(e.invlpg.gva, PCID_P);
		xh_free(h);
	}
}

/* SDM vol. 3, 4.10.2.4: a global entry serves every PCID; of INVPCID's
 * types only 2 must drop it (this TLB keeps it for 0, 1 and 3). */
static void test_system_invpcid_global_entries(void **state)
{
	struct xh *h = pcid_setup();

	(void)state;
	set_cr4(h, CR4_PAE_PCIDE | X86_CR4_PGE);
	set_cr3(h, 0x1001);
	retarget_p(h, PCID_P, X86_PTE_G);
	assert_int_equal(read_p(h), V_P);
	retarget_p(h, PCID_Q, X86_PTE_G);
	invpcid(h, 0, 1, PCID_P);
	invpcid(h, 1, 1, 0);
	invpcid(h, 3, 0, 0);
	set_cr3(h, 0x1002);
	assert_int_equal(read_p(h), V_P);
	invpcid(h, 2, 0, 0);
	assert_int_equal(read_p(h), V_Q);
	xh_free(h);
}

/* INVPCID types 0 and 1 name any PCID, not just the current one; a PCID
 * they do not name keeps its entries here. */
static void test_system_invpcid_other_pcid(void **state)
{
	struct xh *h = pcid_setup();

	(void)state;
	set_cr4(h, CR4_PAE_PCIDE);
	set_cr3(h, 0x1001);
	assert_int_equal(read_p(h), V_P);
	set_cr3(h, CR3_NOFLUSH | 0x1002);
	retarget_p(h, PCID_Q, 0);
	invpcid(h, 0, 2, PCID_P);
	set_cr3(h, CR3_NOFLUSH | 0x1001);
	assert_int_equal(read_p(h), V_P);
	set_cr3(h, CR3_NOFLUSH | 0x1002);
	invpcid(h, 0, 1, PCID_P);
	set_cr3(h, CR3_NOFLUSH | 0x1001);
	assert_int_equal(read_p(h), V_Q);

	retarget_p(h, PCID_P, 0);
	invpcid(h, 1, 2, 0);
	assert_int_equal(read_p(h), V_Q);
	invpcid(h, 1, 1, 0);
	assert_int_equal(read_p(h), V_P);
	xh_free(h);
}

/* SDM vol. 2, INVPCID, 64-bit mode exceptions, and the opcode map's
 * mandatory 66 prefix. */
static void test_system_invpcid_faults(void **state)
{
	static const uint8_t reg_form[] = { 0x66, 0x0f, 0x38, 0x82, 0xc7 };
	static const uint8_t no_66[] = { 0x0f, 0x38, 0x82, 0x3e };
	static const uint8_t f3[] = { 0x66, 0xf3, 0x0f, 0x38, 0x82, 0x3e };
	static const uint8_t lock[] = { 0xf0, 0x66, 0x0f, 0x38, 0x82, 0x3e };
	const struct {
		const uint8_t *code;
		size_t len;
	} ud[] = {
		{ reg_form, sizeof(reg_form) },
		{ no_66, sizeof(no_66) },
		{ f3, sizeof(f3) },
		{ lock, sizeof(lock) },
	};
	struct xh *h = pcid_setup();
	struct x86_exit exit;

	(void)state;
	/* Without CR4.PCIDE: types 0 and 1 only for PCID 000H; 2 and 3
	 * ignore the descriptor's PCID. */
	invpcid_fault(h, 0, 1, PCID_P, X86_GP);
	invpcid_fault(h, 1, 1, 0, X86_GP);
	invpcid(h, 2, 5, 0);
	invpcid(h, 3, 5, 0);
	invpcid(h, 0, 0, PCID_P);

	set_cr4(h, CR4_PAE_PCIDE);
	invpcid_fault(h, 4, 0, 0, X86_GP);
	invpcid_fault(h, 1ULL << 32, 0, 0, X86_GP);
	invpcid_fault(h, 1, 0x1000, 0, X86_GP);
	invpcid_fault(h, 3, 1ULL << 63, 0, X86_GP);
	invpcid_fault(h, 0, 1, 0x0000800000000000ULL, X86_GP);
	/* The address is not used by the other types. */
	invpcid(h, 1, 1, 0x0000800000000000ULL);
	for (size_t i = 0; i < sizeof(ud) / sizeof(ud[0]); i++) {
		put_desc(h, 0, 0);
		sys_set_reg(h, X86_RDI, 0);
		sys_run_fault(h, ud[i].code, ud[i].len, X86_UD);
		sys_set_reg(h, X86_RSP, XH_STACK_TOP);
	}

	/* The descriptor: a non-canonical address is #GP(0); a page
	 * without an spte is a shadow fault at it. */
	sys_set_reg(h, X86_RDI, 0);
	sys_set_reg(h, X86_RSI, 0x0000800000000000ULL);
	assert_int_equal(
		sys_run_fault(h, invpcid_rdi, sizeof(invpcid_rdi), X86_GP), 0);
	sys_set_reg(h, X86_RSP, XH_STACK_TOP);
	put_desc(h, 0, 0);
	xh_set_page(h, PCID_DESC, 0);
	assert_int_equal(sys_run(h, invpcid_rdi, sizeof(invpcid_rdi), &exit),
			 X86_EXIT_SHADOW_FAULT);
	assert_int_equal(exit.fault.gva, PCID_DESC);
	assert_int_equal(sys_rip(h), XH_CODE);
	xh_set_page(h, PCID_DESC, X86_PTE_P | X86_PTE_W | X86_PTE_U);

	sys_enter_cpl3(h);
	put_desc(h, 0, 0);
	sys_set_reg(h, X86_RDI, 0);
	assert_int_equal(
		sys_run_fault(h, invpcid_rdi, sizeof(invpcid_rdi), X86_GP), 0);
	xh_free(h);
}

static void cpuid(struct xh *h, uint32_t leaf, uint32_t subleaf, uint32_t r[4])
{
	static const uint8_t code[] = { 0x0f, 0xa2 };

	sys_set_reg(h, X86_RAX, leaf);
	sys_set_reg(h, X86_RCX, subleaf);
	sys_run_ok(h, code, sizeof(code));
	r[0] = (uint32_t)sys_reg(h, X86_RAX);
	r[1] = (uint32_t)sys_reg(h, X86_RBX);
	r[2] = (uint32_t)sys_reg(h, X86_RCX);
	r[3] = (uint32_t)sys_reg(h, X86_RDX);
}

static void test_system_cpuid_reports_what_is_implemented(void **state)
{
	struct xh *h = sys_new();
	uint32_t r[4];
	char vendor[13];

	(void)state;
	cpuid(h, 0, 0, r);
	assert_int_equal(r[0], 7);
	memcpy(vendor, &r[1], 4);
	memcpy(vendor + 4, &r[3], 4);
	memcpy(vendor + 8, &r[2], 4);
	vendor[12] = 0;
	assert_string_equal(vendor, "MmudMmudMmud");

	cpuid(h, 1, 0, r);
	assert_int_equal(r[1] >> 24, 0); /* APIC ID = vCPU index */
	assert_true(r[3] & 1); /* x87 FPU */
	assert_int_equal(r[3] & (7u << 24), 7u << 24); /* FXSR, SSE, SSE2 */
	assert_int_equal(r[3] & (1u << 23), 0); /* no MMX */
	assert_int_equal(r[3] & (1u << 19), 0); /* no CLFLUSH */
	assert_int_equal(r[2] & 1, 0); /* no SSE3 */
	assert_int_equal(r[2] & (1u << 26), 0); /* no XSAVE */
	assert_true(r[3] & (1u << 13)); /* PGE */
	assert_true(r[3] & (1u << 6)); /* PAE */
	assert_true(r[3] & (1u << 3)); /* PSE: CR4.PSE is accepted */
	assert_true(r[3] & (1u << 9)); /* APIC: the VM's (core/vm.c) */
	assert_true(r[2] & (1u << 21)); /* x2APIC */
	assert_true(r[2] & (1u << 24)); /* TSC-deadline */
	cpuid(h, 6, 0, r);
	assert_int_equal(r[0], 1u << 2); /* ARAT only */
	cpuid(h, 0x80000007u, 0, r);
	assert_int_equal(r[3], 1u << 8); /* invariant TSC only */
	cpuid(h, 1, 0, r);

	cpuid(h, 7, 0, r);
	assert_true(r[1] & (1u << 7)); /* SMEP */
	assert_true(r[1] & (1u << 20)); /* SMAP */
	assert_true(r[1] & (1u << 10)); /* INVPCID */
	/* The integer extensions exec_bmi.c implements; no AVX anything. */
	assert_int_equal(r[1] & ((1u << 3) | (1u << 8) | (1u << 19)),
			 (1u << 3) | (1u << 8) |
				 (1u << 19)); /* BMI1 BMI2 ADX */
	assert_int_equal(r[1] & (1u << 5), 0); /* AVX2 */
	cpuid(h, 1, 0, r);
	assert_true(r[2] & (1u << 17)); /* PCID */
	assert_true(r[2] & (1u << 22)); /* MOVBE */
	assert_true(r[2] & (1u << 23)); /* POPCNT */
	assert_int_equal(r[2] & ((1u << 27) | (1u << 28)), 0); /* OSXSAVE AVX */

	cpuid(h, 0x80000000u, 0, r);
	assert_int_equal(r[0], 0x80000008u);
	cpuid(h, 0x80000001u, 0, r);
	assert_true(r[3] & (1u << 29)); /* LM */
	assert_true(r[3] & (1u << 20)); /* NX */
	assert_true(r[3] & (1u << 11)); /* SYSCALL */
	assert_true(r[3] & (1u << 26)); /* 1 GiB pages */
	assert_true(r[2] & (1u << 5)); /* LZCNT */
	assert_true(r[2] & (1u << 8)); /* PREFETCHW */
	cpuid(h, 0x80000008u, 0, r);
	assert_int_equal(r[0], 0x302e);
	xh_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_system_hlt_exits_after_retiring),
		cmocka_unit_test(test_system_hlt_at_cpl3_gp),
		cmocka_unit_test(test_system_rdmsr_unknown_gp),
		cmocka_unit_test(test_system_capability_msrs_say_none),
		cmocka_unit_test(test_system_wrmsr_fs_base_canonical_rules),
		cmocka_unit_test(test_system_wrmsr_pat_reserved_type_gp),
		cmocka_unit_test(test_system_wrmsr_efer_rules),
		cmocka_unit_test(test_system_rdmsr_at_cpl3_gp),
		cmocka_unit_test(test_system_tsc_write_moves_rdtsc),
		cmocka_unit_test(test_system_cr_writes_invalid_gp),
		cmocka_unit_test(test_system_cr_writes_exit_paging),
		cmocka_unit_test(test_system_cr_reads_and_cr2_cr8),
		cmocka_unit_test(test_system_mov_dr_round_trip_and_aliases),
		cmocka_unit_test(test_system_mov_dr_faults),
		cmocka_unit_test(test_system_mov_cr_at_cpl3_gp_and_cr1_ud),
		cmocka_unit_test(test_system_sgdt_sidt_lidt_round_trip),
		cmocka_unit_test(test_system_cli_at_cpl3_gp_popf_keeps_if_iopl),
		cmocka_unit_test(test_system_swapgs_exchanges_gs_base),
		cmocka_unit_test(test_system_invlpg_exits_with_address),
		cmocka_unit_test(test_system_rdtsc_monotonic),
		cmocka_unit_test(test_system_stac_clac_toggle_ac),
		cmocka_unit_test(test_system_ud2_ud),
		cmocka_unit_test(test_system_cpuid_reports_what_is_implemented),
		cmocka_unit_test(test_system_cr4_pcide_rules),
		cmocka_unit_test(test_system_cr4_pse_accepted_de_refused),
		cmocka_unit_test(test_system_cr3_bit63_not_stored_reserved_gp),
		cmocka_unit_test(test_system_cr3_flush_follows_bit63),
		cmocka_unit_test(test_system_invlpg_drops_the_entry),
		cmocka_unit_test(test_system_cr3_flushes_the_new_pcid),
		cmocka_unit_test(test_system_global_bit_without_pge_not_global),
		cmocka_unit_test(test_system_cr3_keeps_global_entries_with_pge),
		cmocka_unit_test(test_system_pcid_is_twelve_bits),
		cmocka_unit_test(test_system_wp_and_smap_changes_drop_entries),
		cmocka_unit_test(test_system_invpcid_types_drop_entries),
		cmocka_unit_test(test_system_invpcid_global_entries),
		cmocka_unit_test(test_system_invpcid_other_pcid),
		cmocka_unit_test(test_system_invpcid_faults),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
