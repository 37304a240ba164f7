/*
 * SSE/SSE2 moves, logic, shuffles, integer SIMD and floating point, and
 * FXSAVE/FXRSTOR, checked against the host CPU by the differential
 * runner (fxdiff.h): every XMM register, MXCSR, general register, the
 * arithmetic flags and the memory buffer must agree. Each form runs with
 * register and memory operands (aligned and misaligned where the form
 * allows), REX-extended registers, and lane values mixing random bits
 * with the boundaries (0, -1, the signed limits, equal lanes) or, for
 * floating point, the specials under every rounding mode, DAZ/FZ and
 * random exception masks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fxdiff.h"

#define CASES 400

/* ---- state -------------------------------------------------------------- */

/* MXCSR for a floating-point case: every rounding mode, DAZ and FZ, and
 * (one case in four) random exception masks; the flags start random. */
static uint32_t random_mxcsr(bool fp)
{
	uint32_t m = 0x1f80;

	if (!fp)
		return m;
	m |= (uint32_t)fxd_rnd() & 0x603f; /* RC, flags */
	if (fxd_rnd() & 1)
		m |= 0x0040; /* DAZ */
	if (fxd_rnd() & 1)
		m |= 0x8000; /* FZ */
	if ((fxd_rnd() & 3) == 0)
		m &= ~((uint32_t)fxd_rnd() & 0x1f80);
	return m;
}

static bool fp_lanes;

static void random_state(struct fxd_state *s)
{
	uint32_t mxcsr = random_mxcsr(fp_lanes);

	memset(s->fx, 0, sizeof(s->fx));
	/* FCW: FNINIT's; the x87 registers are left empty. */
	s->fx[0] = 0x7f;
	s->fx[1] = 0x03;
	memcpy(s->fx + FX_MXCSR, &mxcsr, 4);
	for (unsigned int r = 0; r < 16; r++)
		for (unsigned int l = 0; l < 4; l++) {
			uint32_t v = fxd_lane32();

			if (fp_lanes && (r & 1)) {
				uint64_t q = fxd_fp64();

				memcpy(s->fx + FX_XMM + 16 * r + 4 * l, &q, 8);
				l++;
				continue;
			}
			if (fp_lanes)
				v = fxd_fp32();
			memcpy(s->fx + FX_XMM + 16 * r + 4 * l, &v, 4);
		}
	/* Equal lanes across registers, for the compares. */
	for (unsigned int k = 0; k < 8; k++) {
		unsigned int a = fxd_rnd() % 16, b = fxd_rnd() % 16,
			     off = (unsigned int)(fxd_rnd() % 16);

		s->fx[FX_XMM + 16 * a + off] = s->fx[FX_XMM + 16 * b + off];
	}
	for (unsigned int i = 0; i < 16; i++)
		s->gpr[i] = (fxd_rnd() & 1) ? fxd_rnd() :
					      (uint64_t)fxd_lane32();
	s->rflags = fxd_rnd() & 0x8d5;
	for (unsigned int i = 0; i < FXD_BUF; i += 8) {
		uint64_t q = fxd_fp64();
		uint32_t v[2] = { fxd_lane32(),
				  fp_lanes ? fxd_fp32() : fxd_lane32() };

		if (fp_lanes && (fxd_rnd() & 1))
			memcpy(s->buf + i, &q, 8);
		else
			memcpy(s->buf + i, v, 8);
	}
	/* Integer sources of the conversions: small values too. */
	if (fp_lanes)
		for (unsigned int i = 0; i < 16; i++)
			if (fxd_rnd() & 1)
				s->gpr[i] =
					(uint64_t)(int64_t)(int32_t)(fxd_rnd() %
									     2001 -
								     1000);
}

/* ---- the forms ------------------------------------------------------------ */

enum operands {
	XX, /* xmm, xmm/m */
	XR, /* xmm, xmm only */
	XM, /* memory only */
	GX, /* a general register and an xmm register or memory */
	GR, /* a general register and an xmm register only */
	GM, /* general register, memory only */
};

struct form {
	const char *name;
	uint8_t pfx; /* 0, 0x66, 0xf2, 0xf3 */
	uint8_t op; /* 0F op */
	uint8_t ops; /* enum operands */
	bool aligned; /* a memory operand must be 16-aligned */
	bool imm;
	int8_t group; /* ModRM.reg fixed (shifts by immediate), or -1 */
};

/* Register numbers for ModRM fields: never 4 (RSP, the host's stack
 * for a general register), 3 only as the base (RBX). */
static unsigned int pick_reg(void)
{
	static const unsigned int r[] = { 0, 1, 2, 5, 6, 7 };

	return r[fxd_rnd() % 6];
}

/* Builds one encoding of f: register or memory form, REX bits random
 * (REX.W too), displacement aligned or not. Returns the length. */
static size_t encode(const struct form *f, bool mem, uint8_t *code)
{
	unsigned int reg = f->group >= 0 ? (unsigned int)f->group : pick_reg();
	unsigned int rm = mem ? 3 : pick_reg();
	unsigned int rex = 0x40 | (unsigned int)(fxd_rnd() & 8); /* W */
	size_t n = 0;

	if (f->group < 0 && (fxd_rnd() & 1))
		rex |= 4; /* R */
	if (!mem && (fxd_rnd() & 1))
		rex |= 1; /* B */
	if (f->pfx)
		code[n++] = f->pfx;
	if (rex != 0x40 || (fxd_rnd() & 1))
		code[n++] = (uint8_t)rex;
	code[n++] = 0x0f;
	code[n++] = f->op;
	if (mem) {
		int disp = f->aligned && (fxd_rnd() & 7) ?
				   16 * ((int)(fxd_rnd() % 8) - 4) :
				   (int)(fxd_rnd() % 128) - 64;

		code[n++] = (uint8_t)(0x40 | (reg << 3) | rm);
		code[n++] = (uint8_t)(int8_t)disp;
	} else {
		code[n++] = (uint8_t)(0xc0 | (reg << 3) | rm);
	}
	if (f->imm)
		code[n++] = (uint8_t)fxd_rnd();
	return n;
}

static void check_forms(const struct form *forms, size_t n)
{
	struct fxd_state *s = test_malloc(sizeof(*s));

	fxd_failures = fxd_ncases = fxd_nfaults = 0;
	for (size_t i = 0; i < n; i++) {
		const struct form *f = &forms[i];
		bool reg_ok = f->ops != XM && f->ops != GM;
		bool mem_ok = f->ops != XR && f->ops != GR;

		for (unsigned int c = 0; c < CASES; c++) {
			uint8_t code[16];
			bool mem = mem_ok && (!reg_ok || (c & 1));
			size_t len = encode(f, mem, code);

			random_state(s);
			fxd_run_case(f->name, code, len, s);
		}
	}
	test_free(s);
	print_message("%u cases (%u faulted on both), %u mismatches\n",
		      fxd_ncases, fxd_nfaults, fxd_failures);
	assert_int_equal(fxd_failures, 0);
}

#define NFORMS(a) (sizeof(a) / sizeof((a)[0]))

static void test_sse_moves_match_host(void **state)
{
	static const struct form forms[] = {
		{ "movups", 0, 0x10, XX, false, false, -1 },
		{ "movupd", 0x66, 0x10, XX, false, false, -1 },
		{ "movss", 0xf3, 0x10, XX, false, false, -1 },
		{ "movsd", 0xf2, 0x10, XX, false, false, -1 },
		{ "movups st", 0, 0x11, XX, false, false, -1 },
		{ "movupd st", 0x66, 0x11, XX, false, false, -1 },
		{ "movss st", 0xf3, 0x11, XX, false, false, -1 },
		{ "movsd st", 0xf2, 0x11, XX, false, false, -1 },
		{ "movlps/movhlps", 0, 0x12, XX, false, false, -1 },
		{ "movlpd", 0x66, 0x12, XM, false, false, -1 },
		{ "movlps st", 0, 0x13, XM, false, false, -1 },
		{ "movlpd st", 0x66, 0x13, XM, false, false, -1 },
		{ "movhps/movlhps", 0, 0x16, XX, false, false, -1 },
		{ "movhpd", 0x66, 0x16, XM, false, false, -1 },
		{ "movhps st", 0, 0x17, XM, false, false, -1 },
		{ "movhpd st", 0x66, 0x17, XM, false, false, -1 },
		{ "movaps", 0, 0x28, XX, true, false, -1 },
		{ "movapd", 0x66, 0x28, XX, true, false, -1 },
		{ "movaps st", 0, 0x29, XX, true, false, -1 },
		{ "movapd st", 0x66, 0x29, XX, true, false, -1 },
		{ "movntps", 0, 0x2b, XM, true, false, -1 },
		{ "movntpd", 0x66, 0x2b, XM, true, false, -1 },
		{ "movd/movq xmm, r/m", 0x66, 0x6e, GX, false, false, -1 },
		{ "movdqa", 0x66, 0x6f, XX, true, false, -1 },
		{ "movdqu", 0xf3, 0x6f, XX, false, false, -1 },
		{ "movd/movq r/m, xmm", 0x66, 0x7e, GX, false, false, -1 },
		{ "movq xmm, xmm/m64", 0xf3, 0x7e, XX, false, false, -1 },
		{ "movdqa st", 0x66, 0x7f, XX, true, false, -1 },
		{ "movdqu st", 0xf3, 0x7f, XX, false, false, -1 },
		{ "movnti", 0, 0xc3, GM, false, false, -1 },
		{ "movq st", 0x66, 0xd6, XX, false, false, -1 },
		{ "movntdq", 0x66, 0xe7, XM, true, false, -1 },
		{ "movmskps", 0, 0x50, GR, false, false, -1 },
		{ "movmskpd", 0x66, 0x50, GR, false, false, -1 },
		{ "pmovmskb", 0x66, 0xd7, GR, false, false, -1 },
	};

	(void)state;
	check_forms(forms, NFORMS(forms));
}

static void test_sse_logic_shuffles_match_host(void **state)
{
	static const struct form forms[] = {
		{ "unpcklps", 0, 0x14, XX, true, false, -1 },
		{ "unpcklpd", 0x66, 0x14, XX, true, false, -1 },
		{ "unpckhps", 0, 0x15, XX, true, false, -1 },
		{ "unpckhpd", 0x66, 0x15, XX, true, false, -1 },
		{ "andps", 0, 0x54, XX, true, false, -1 },
		{ "andpd", 0x66, 0x54, XX, true, false, -1 },
		{ "andnps", 0, 0x55, XX, true, false, -1 },
		{ "andnpd", 0x66, 0x55, XX, true, false, -1 },
		{ "orps", 0, 0x56, XX, true, false, -1 },
		{ "orpd", 0x66, 0x56, XX, true, false, -1 },
		{ "xorps", 0, 0x57, XX, true, false, -1 },
		{ "xorpd", 0x66, 0x57, XX, true, false, -1 },
		{ "shufps", 0, 0xc6, XX, true, true, -1 },
		{ "shufpd", 0x66, 0xc6, XX, true, true, -1 },
		{ "pshufd", 0x66, 0x70, XX, true, true, -1 },
		{ "pshufhw", 0xf3, 0x70, XX, true, true, -1 },
		{ "pshuflw", 0xf2, 0x70, XX, true, true, -1 },
		{ "pinsrw", 0x66, 0xc4, GX, false, true, -1 },
		{ "pextrw", 0x66, 0xc5, GR, false, true, -1 },
	};

	(void)state;
	check_forms(forms, NFORMS(forms));
}

static void test_sse2_integer_match_host(void **state)
{
	static const struct form forms[] = {
		{ "punpcklbw", 0x66, 0x60, XX, true, false, -1 },
		{ "punpcklwd", 0x66, 0x61, XX, true, false, -1 },
		{ "punpckldq", 0x66, 0x62, XX, true, false, -1 },
		{ "packsswb", 0x66, 0x63, XX, true, false, -1 },
		{ "pcmpgtb", 0x66, 0x64, XX, true, false, -1 },
		{ "pcmpgtw", 0x66, 0x65, XX, true, false, -1 },
		{ "pcmpgtd", 0x66, 0x66, XX, true, false, -1 },
		{ "packuswb", 0x66, 0x67, XX, true, false, -1 },
		{ "punpckhbw", 0x66, 0x68, XX, true, false, -1 },
		{ "punpckhwd", 0x66, 0x69, XX, true, false, -1 },
		{ "punpckhdq", 0x66, 0x6a, XX, true, false, -1 },
		{ "packssdw", 0x66, 0x6b, XX, true, false, -1 },
		{ "punpcklqdq", 0x66, 0x6c, XX, true, false, -1 },
		{ "punpckhqdq", 0x66, 0x6d, XX, true, false, -1 },
		{ "pcmpeqb", 0x66, 0x74, XX, true, false, -1 },
		{ "pcmpeqw", 0x66, 0x75, XX, true, false, -1 },
		{ "pcmpeqd", 0x66, 0x76, XX, true, false, -1 },
		{ "psrlw", 0x66, 0xd1, XX, true, false, -1 },
		{ "psrld", 0x66, 0xd2, XX, true, false, -1 },
		{ "psrlq", 0x66, 0xd3, XX, true, false, -1 },
		{ "paddq", 0x66, 0xd4, XX, true, false, -1 },
		{ "pmullw", 0x66, 0xd5, XX, true, false, -1 },
		{ "psubusb", 0x66, 0xd8, XX, true, false, -1 },
		{ "psubusw", 0x66, 0xd9, XX, true, false, -1 },
		{ "pminub", 0x66, 0xda, XX, true, false, -1 },
		{ "pand", 0x66, 0xdb, XX, true, false, -1 },
		{ "paddusb", 0x66, 0xdc, XX, true, false, -1 },
		{ "paddusw", 0x66, 0xdd, XX, true, false, -1 },
		{ "pmaxub", 0x66, 0xde, XX, true, false, -1 },
		{ "pandn", 0x66, 0xdf, XX, true, false, -1 },
		{ "pavgb", 0x66, 0xe0, XX, true, false, -1 },
		{ "psraw", 0x66, 0xe1, XX, true, false, -1 },
		{ "psrad", 0x66, 0xe2, XX, true, false, -1 },
		{ "pavgw", 0x66, 0xe3, XX, true, false, -1 },
		{ "pmulhuw", 0x66, 0xe4, XX, true, false, -1 },
		{ "pmulhw", 0x66, 0xe5, XX, true, false, -1 },
		{ "psubsb", 0x66, 0xe8, XX, true, false, -1 },
		{ "psubsw", 0x66, 0xe9, XX, true, false, -1 },
		{ "pminsw", 0x66, 0xea, XX, true, false, -1 },
		{ "por", 0x66, 0xeb, XX, true, false, -1 },
		{ "paddsb", 0x66, 0xec, XX, true, false, -1 },
		{ "paddsw", 0x66, 0xed, XX, true, false, -1 },
		{ "pmaxsw", 0x66, 0xee, XX, true, false, -1 },
		{ "pxor", 0x66, 0xef, XX, true, false, -1 },
		{ "psllw", 0x66, 0xf1, XX, true, false, -1 },
		{ "pslld", 0x66, 0xf2, XX, true, false, -1 },
		{ "psllq", 0x66, 0xf3, XX, true, false, -1 },
		{ "pmuludq", 0x66, 0xf4, XX, true, false, -1 },
		{ "pmaddwd", 0x66, 0xf5, XX, true, false, -1 },
		{ "psadbw", 0x66, 0xf6, XX, true, false, -1 },
		{ "psubb", 0x66, 0xf8, XX, true, false, -1 },
		{ "psubw", 0x66, 0xf9, XX, true, false, -1 },
		{ "psubd", 0x66, 0xfa, XX, true, false, -1 },
		{ "psubq", 0x66, 0xfb, XX, true, false, -1 },
		{ "paddb", 0x66, 0xfc, XX, true, false, -1 },
		{ "paddw", 0x66, 0xfd, XX, true, false, -1 },
		{ "paddd", 0x66, 0xfe, XX, true, false, -1 },
		{ "psrlw imm", 0x66, 0x71, XR, false, true, 2 },
		{ "psraw imm", 0x66, 0x71, XR, false, true, 4 },
		{ "psllw imm", 0x66, 0x71, XR, false, true, 6 },
		{ "psrld imm", 0x66, 0x72, XR, false, true, 2 },
		{ "psrad imm", 0x66, 0x72, XR, false, true, 4 },
		{ "pslld imm", 0x66, 0x72, XR, false, true, 6 },
		{ "psrlq imm", 0x66, 0x73, XR, false, true, 2 },
		{ "psrldq", 0x66, 0x73, XR, false, true, 3 },
		{ "psllq imm", 0x66, 0x73, XR, false, true, 6 },
		{ "pslldq", 0x66, 0x73, XR, false, true, 7 },
	};

	(void)state;
	check_forms(forms, NFORMS(forms));
}

/* With unmasked exceptions in a quarter of the cases, some must have
 * raised #XM on both CPUs, or the unmasked paths went untested. */
static void check_fp_forms(const struct form *forms, size_t n)
{
	fp_lanes = true;
	check_forms(forms, n);
	fp_lanes = false;
	assert_true(fxd_nfaults > 0);
}

#define FP4(name, op)                                          \
	{ name "ps", 0, op, XX, true, false, -1 },             \
		{ name "pd", 0x66, op, XX, true, false, -1 },  \
		{ name "ss", 0xf3, op, XX, false, false, -1 }, \
	{                                                      \
		name "sd", 0xf2, op, XX, false, false, -1      \
	}

static void test_sse_fp_arith_match_host(void **state)
{
	static const struct form forms[] = {
		FP4("sqrt", 0x51),
		FP4("add", 0x58),
		FP4("mul", 0x59),
		FP4("sub", 0x5c),
		FP4("min", 0x5d),
		FP4("div", 0x5e),
		FP4("max", 0x5f),
		{ "rsqrtps", 0, 0x52, XX, true, false, -1 },
		{ "rsqrtss", 0xf3, 0x52, XX, false, false, -1 },
		{ "rcpps", 0, 0x53, XX, true, false, -1 },
		{ "rcpss", 0xf3, 0x53, XX, false, false, -1 },
		/* CMPcc: the immediate is the predicate (bits 2:0). */
		{ "cmpps", 0, 0xc2, XX, true, true, -1 },
		{ "cmppd", 0x66, 0xc2, XX, true, true, -1 },
		{ "cmpss", 0xf3, 0xc2, XX, false, true, -1 },
		{ "cmpsd", 0xf2, 0xc2, XX, false, true, -1 },
	};

	(void)state;
	check_fp_forms(forms, NFORMS(forms));
}

static void test_sse_fp_convert_compare_match_host(void **state)
{
	static const struct form forms[] = {
		{ "cvtps2pd", 0, 0x5a, XX, false, false, -1 },
		{ "cvtpd2ps", 0x66, 0x5a, XX, true, false, -1 },
		{ "cvtss2sd", 0xf3, 0x5a, XX, false, false, -1 },
		{ "cvtsd2ss", 0xf2, 0x5a, XX, false, false, -1 },
		{ "cvtdq2ps", 0, 0x5b, XX, true, false, -1 },
		{ "cvtps2dq", 0x66, 0x5b, XX, true, false, -1 },
		{ "cvttps2dq", 0xf3, 0x5b, XX, true, false, -1 },
		{ "cvttpd2dq", 0x66, 0xe6, XX, true, false, -1 },
		{ "cvtdq2pd", 0xf3, 0xe6, XX, false, false, -1 },
		{ "cvtpd2dq", 0xf2, 0xe6, XX, true, false, -1 },
		{ "cvtsi2ss", 0xf3, 0x2a, GX, false, false, -1 },
		{ "cvtsi2sd", 0xf2, 0x2a, GX, false, false, -1 },
		{ "cvttss2si", 0xf3, 0x2c, GX, false, false, -1 },
		{ "cvttsd2si", 0xf2, 0x2c, GX, false, false, -1 },
		{ "cvtss2si", 0xf3, 0x2d, GX, false, false, -1 },
		{ "cvtsd2si", 0xf2, 0x2d, GX, false, false, -1 },
		{ "ucomiss", 0, 0x2e, XX, false, false, -1 },
		{ "ucomisd", 0x66, 0x2e, XX, false, false, -1 },
		{ "comiss", 0, 0x2f, XX, false, false, -1 },
		{ "comisd", 0x66, 0x2f, XX, false, false, -1 },
	};

	(void)state;
	check_fp_forms(forms, NFORMS(forms));
}

/* The MMX forms (no prefix) and the SSE3 forms of these opcodes are not
 * implemented and CPUID does not claim them: #UD on our CPU (the host
 * has them, so these are checked on ours alone). */
static void test_sse_unclaimed_forms_are_ud(void **state)
{
	static const uint8_t cases[][5] = {
		{ 4, 0x0f, 0xef, 0xca }, /* pxor mm1, mm2 */
		{ 4, 0x0f, 0x6f, 0xca }, /* movq mm1, mm2 */
		{ 4, 0x0f, 0xd7, 0xca }, /* pmovmskb ecx, mm2 */
		{ 5, 0xf2, 0x0f, 0x12, 0xca }, /* movddup */
		{ 5, 0xf3, 0x0f, 0x12, 0xca }, /* movsldup */
		{ 5, 0xf3, 0x0f, 0x28, 0xca }, /* f3 0f 28: nothing */
	};

	(void)state;
	for (size_t i = 0; i < NFORMS(cases); i++)
		fxd_expect_fault_with(0, 0, cases[i] + 1, cases[i][0] - 1U,
				      X86_UD);
}

/* SDM vol. 3, chapter 13: CR4.OSFXSR clear or CR0.EM set makes every
 * SSE instruction #UD, and CR0.TS #NM; FXSAVE is #NM for TS and for EM.
 * The #UD wins over the #NM. */
static void test_sse_cr0_cr4_checks(void **state)
{
	static const uint8_t pxor[] = { 0x66, 0x0f, 0xef, 0xca };
	static const uint8_t movdqa_ld[] = { 0x66, 0x0f, 0x6f, 0x0b };
	static const uint8_t fxsave[] = { 0x48, 0x0f, 0xae, 0x03 };
	static const uint8_t ldmxcsr[] = { 0x0f, 0xae, 0x13 };

	(void)state;
	fxd_expect_fault_with(0, X86_CR4_OSFXSR, pxor, sizeof(pxor), X86_UD);
	fxd_expect_fault_with(0, X86_CR4_OSFXSR, ldmxcsr, sizeof(ldmxcsr),
			      X86_UD);
	fxd_expect_fault_with(X86_CR0_TS, X86_CR4_OSFXSR, pxor, sizeof(pxor),
			      X86_UD);
	fxd_expect_fault_with(X86_CR0_TS, 0, pxor, sizeof(pxor), X86_NM);
	fxd_expect_fault_with(X86_CR0_TS, 0, movdqa_ld, sizeof(movdqa_ld),
			      X86_NM);
	fxd_expect_fault_with(X86_CR0_TS, 0, ldmxcsr, sizeof(ldmxcsr), X86_NM);
	fxd_expect_fault_with(X86_CR0_TS, 0, fxsave, sizeof(fxsave), X86_NM);
	fxd_expect_fault_with(X86_CR0_EM, 0, pxor, sizeof(pxor), X86_UD);
	fxd_expect_fault_with(X86_CR0_EM | X86_CR0_TS, 0, pxor, sizeof(pxor),
			      X86_UD);
	fxd_expect_fault_with(X86_CR0_EM, 0, fxsave, sizeof(fxsave), X86_NM);
}

/* SDM vol. 1, 11.5.1 and vol. 3, chapter 13: an unmasked SIMD
 * floating-point exception is #XM with CR4.OSXMMEXCPT set and #UD with it
 * clear; the destination is unchanged either way and the flag is set. */
static void test_sse_unmasked_exception_xm_or_ud(void **state)
{
	/* divsd xmm0, xmm1: a finite xmm0 divided by 0 */
	static const uint8_t divsd[] = { 0xf2, 0x0f, 0x5e, 0xc1 };
	uint8_t img[512];
	uint32_t mxcsr = 0x1f80 & ~0x200u; /* divide by zero unmasked */

	(void)state;
	for (int osxmmexcpt = 0; osxmmexcpt < 2; osxmmexcpt++) {
		struct x86_sregs s;
		uint32_t after;

		xh_free(fxd_h);
		fxd_h = fxd_fresh();
		x86_get_sregs(fxd_h->cpu, &s);
		if (!osxmmexcpt)
			s.cr4 &= ~X86_CR4_OSXMMEXCPT;
		x86_set_sregs(fxd_h->cpu, &s);
		x86_get_fpu(fxd_h->cpu, img);
		memcpy(img + FX_MXCSR, &mxcsr, 4);
		memset(img + FX_XMM, 0xab, 16); /* xmm0: finite, nonzero */
		memset(img + FX_XMM + 16, 0, 16); /* xmm1 = 0 */
		assert_true(x86_set_fpu(fxd_h->cpu, img));
		xh_expect_fault(fxd_h, divsd, sizeof(divsd),
				osxmmexcpt ? X86_XM : X86_UD);
		x86_get_fpu(fxd_h->cpu, img);
		memcpy(&after, img + FX_MXCSR, 4);
		assert_int_equal(after & 0x3f, 0x04); /* ZE */
		assert_int_equal(img[FX_XMM], 0xab);
	}
	xh_free(fxd_h);
	fxd_h = fxd_fresh();
}

/* CPUID reports FXSR and SSE, so the guest may set CR4.OSFXSR and
 * OSXMMEXCPT itself (MOV to CR4), after which SSE runs. */
static void test_sse_guest_enables_osfxsr(void **state)
{
	/* mov eax, 0x620 (PAE | OSFXSR | OSXMMEXCPT); mov cr4, rax;
	 * pxor xmm1, xmm2 */
	static const uint8_t code[] = { 0xb8, 0x20, 0x06, 0x00, 0x00, 0x0f,
					0x22, 0xe0, 0x66, 0x0f, 0xef, 0xca };
	struct x86_sregs s;

	(void)state;
	xh_free(fxd_h);
	fxd_h = xh_new();
	xh_run_ok(fxd_h, code, sizeof(code));
	x86_get_sregs(fxd_h->cpu, &s);
	assert_int_equal(s.cr4 & (X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT),
			 X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT);
	xh_free(fxd_h);
	fxd_h = fxd_fresh();
}

/*
 * FXRSTOR64 of a random image, then FXSAVE64 and FXSAVE (no REX.W) of
 * what it loaded, on both CPUs: the x87 registers, tag, status and
 * control words, MXCSR and every XMM register round-trip into the same
 * bytes as the host's; a misaligned operand is #GP on both; a reserved
 * MXCSR bit in the image is #GP on both (SDM vol. 2, FXRSTOR).
 */
/* The vendor-specific fields of the two images the sequence stores. */
static bool skip_saved_images(size_t off)
{
	for (int base = FXD_MID - 512; base <= FXD_MID + 512; base += 1024)
		if (off >= (size_t)base && off < (size_t)base + 416 &&
		    !fxd_fx_compared((unsigned int)(off - (size_t)base)))
			return true;
	return false;
}

static void test_fxsave_fxrstor_match_host(void **state)
{
	/* fxrstor64 [rbx]; fxsave64 [rbx+512]; fxsave [rbx-512] */
	static const uint8_t seq[] = { 0x48, 0x0f, 0xae, 0x0b, 0x48, 0x0f, 0xae,
				       0x83, 0x00, 0x02, 0x00, 0x00, 0x0f, 0xae,
				       0x83, 0x00, 0xfe, 0xff, 0xff };
	/* fxsave64 [rbx+8]; fxrstor64 [rbx+8] */
	static const uint8_t misaligned[][5] = {
		{ 0x48, 0x0f, 0xae, 0x43, 0x08 },
		{ 0x48, 0x0f, 0xae, 0x4b, 0x08 },
	};
	/* ldmxcsr [rbx]; stmxcsr [rbx+4] */
	static const uint8_t mxcsr_seq[] = { 0x0f, 0xae, 0x13, 0x0f,
					     0xae, 0x5b, 0x04 };
	struct fxd_state *s = test_malloc(sizeof(*s));

	(void)state;
	fxd_failures = fxd_ncases = 0;
	for (unsigned int c = 0; c < 300; c++) {
		uint32_t mxcsr = (uint32_t)fxd_rnd() & 0xffff;

		random_state(s);
		/* The image: random x87 registers and words, a valid or
		 * (one case in eight) a reserved-bit MXCSR. */
		for (unsigned int i = 0; i < 8; i++)
			for (unsigned int b = 0; b < 10; b++)
				s->buf[FXD_MID + 32 + 16 * i + b] =
					(uint8_t)fxd_rnd();
		for (unsigned int b = 0; b < 5; b++)
			s->buf[FXD_MID + b] = (uint8_t)fxd_rnd();
		/* A bit reserved on both CPUs (the host's MXCSR_MASK may
		 * allow more than ours: AMD's bit 17). */
		if ((c & 7) == 7)
			mxcsr |= 1u << (18 + fxd_rnd() % 14);
		memcpy(s->buf + FXD_MID + FX_MXCSR, &mxcsr, 4);
		memcpy(s->buf + FXD_MID + FX_XMM, s->fx + FX_XMM, 256);
		fxd_run_case_skip("fxrstor/fxsave", seq, sizeof(seq), s,
				  skip_saved_images);
		fxd_run_case("ldmxcsr/stmxcsr", mxcsr_seq, sizeof(mxcsr_seq),
			     s);
		fxd_run_case("fxsave misaligned", misaligned[0], 5, s);
		fxd_run_case("fxrstor misaligned", misaligned[1], 5, s);
	}
	test_free(s);
	print_message("%u cases, %u mismatches\n", fxd_ncases, fxd_failures);
	assert_int_equal(fxd_failures, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sse_moves_match_host),
		cmocka_unit_test(test_sse_logic_shuffles_match_host),
		cmocka_unit_test(test_sse2_integer_match_host),
		cmocka_unit_test(test_sse_fp_arith_match_host),
		cmocka_unit_test(test_sse_fp_convert_compare_match_host),
		cmocka_unit_test(test_sse_unclaimed_forms_are_ud),
		cmocka_unit_test(test_sse_cr0_cr4_checks),
		cmocka_unit_test(test_sse_guest_enables_osfxsr),
		cmocka_unit_test(test_sse_unmasked_exception_xm_or_ud),
		cmocka_unit_test(test_fxsave_fxrstor_match_host),
	};

	return cmocka_run_group_tests(tests, fxd_setup, fxd_teardown);
}
