/*
 * SSE/SSE2 moves, logic, shuffles and integer SIMD, and FXSAVE/FXRSTOR,
 * checked against the host CPU (hostexec.h): the same bytes run from the
 * same registers, XMM state, MXCSR and memory on both, and every XMM
 * register, MXCSR, general register, the arithmetic flags and the memory
 * buffer must agree, or both must fault alike. Each form runs with
 * register and memory operands (aligned and misaligned where the form
 * allows), REX-extended registers, and lane values mixing random bits
 * with the boundaries (0, -1, the signed limits, equal lanes).
 *
 * The FXSAVE image fields that differ by vendor are left out of the
 * comparison (SDM vol. 1, 10.5.1): MXCSR_MASK (bytes 28-31: 0xFFFF
 * here, 0x2FFFF on AMD hosts, whose bit 17 is a mode this CPU does not
 * have) and FOP/FIP/FDP with their selectors (bytes 6-23: AMD hosts
 * store them only while an x87 exception is pending).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "hostexec.h"
#include "rng.h"

#define GBUF 0x300000ULL
#define BUF 2048
#define MID 1024
#define CASES 400
#define MAX_FAILS 12

static struct xh *h;
static uint8_t hostbuf[BUF] __attribute__((aligned(64)));
static uint64_t rng = 0x55aa55aa12345678ULL;
/* Cases run, cases that disagreed, cases where both CPUs faulted alike. */
static unsigned int failures, ncases, nfaults;

static uint64_t rnd(void)
{
	return splitmix64(&rng);
}

/* ---- the CPU under test ------------------------------------------------ */

static void enable_sse(struct xh *x)
{
	struct x86_sregs s;

	x86_get_sregs(x->cpu, &s);
	s.cr4 |= X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT;
	x86_set_sregs(x->cpu, &s);
}

static struct xh *fresh(void)
{
	struct xh *x = xh_new();

	enable_sse(x);
	return x;
}

/* ---- state -------------------------------------------------------------- */

struct state {
	uint64_t gpr[16];
	uint64_t rflags;
	uint8_t fx[512] __attribute__((aligned(16)));
	uint8_t buf[BUF];
};

#define FX_MXCSR 24
#define FX_XMM 160

static uint32_t lane32(void)
{
	static const uint32_t special[] = {
		0,	     1,		  0xffffffffu, 0x7fffffffu,
		0x80000000u, 0x7f7f7f7f,  0x80808080u, 0x00ff00ffu,
		0xff00ff00u, 0x0000ffffu, 0x7fff8000u, 0x01000100u,
	};

	if (rnd() & 1)
		return (uint32_t)rnd();
	return special[rnd() % (sizeof(special) / sizeof(special[0]))];
}

/* Single-precision specials: zeros, infinities, quiet and signalling
 * NaNs with payloads, denormals, the normal limits, ones, the integer
 * conversion limits (2^31, 2^63) and values halfway between integers. */
static uint32_t fp32(void)
{
	static const uint32_t special[] = {
		0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000,
		0xffc00001, 0x7f800001, 0xff912345, 0x00000001, 0x807fffff,
		0x00400000, 0x00800000, 0x7f7fffff, 0x3f800000, 0xbf800000,
		0x4f000000, 0xcf000000, 0x5f000000, 0xdf000000, 0x3f000000,
		0x3fc00000, 0x40200000, 0x4effffff, 0x0d800000,
	};

	if (rnd() & 1)
		return special[rnd() % (sizeof(special) / sizeof(special[0]))];
	/* Random sign and mantissa, exponents near 1 or anywhere. */
	if (rnd() & 1)
		return (uint32_t)((rnd() & 0x807fffff) |
				  ((uint64_t)(120 + rnd() % 16) << 23));
	return (uint32_t)rnd();
}

static uint64_t fp64(void)
{
	static const uint64_t special[] = {
		0x0000000000000000ULL, 0x8000000000000000ULL,
		0x7ff0000000000000ULL, 0xfff0000000000000ULL,
		0x7ff8000000000000ULL, 0xfff8000000000123ULL,
		0x7ff0000000000001ULL, 0xfff4000000abcdefULL,
		0x0000000000000001ULL, 0x800fffffffffffffULL,
		0x0010000000000000ULL, 0x7fefffffffffffffULL,
		0x3ff0000000000000ULL, 0xbff0000000000000ULL,
		0x41e0000000000000ULL, 0xc1e0000000000000ULL,
		0x43e0000000000000ULL, 0xc3e0000000000000ULL,
		0x3fe0000000000000ULL, 0x3ff8000000000000ULL,
		0x41dfffffffc00000ULL, 0x47efffffe0000000ULL,
		0x3690000000000000ULL, 0x36a0000000000001ULL,
	};

	if (rnd() & 1)
		return special[rnd() % (sizeof(special) / sizeof(special[0]))];
	if (rnd() & 1)
		return (rnd() & 0x800fffffffffffffULL) |
		       ((uint64_t)(1016 + rnd() % 16) << 52);
	return rnd();
}

/* MXCSR for a floating-point case: every rounding mode, DAZ and FZ, and
 * (one case in four) random exception masks; the flags start random. */
static uint32_t random_mxcsr(bool fp)
{
	uint32_t m = 0x1f80;

	if (!fp)
		return m;
	m |= (uint32_t)rnd() & 0x603f; /* RC, flags */
	if (rnd() & 1)
		m |= 0x0040; /* DAZ */
	if (rnd() & 1)
		m |= 0x8000; /* FZ */
	if ((rnd() & 3) == 0)
		m &= ~((uint32_t)rnd() & 0x1f80);
	return m;
}

static bool fp_lanes;

static void random_state(struct state *s)
{
	uint32_t mxcsr = random_mxcsr(fp_lanes);

	memset(s->fx, 0, sizeof(s->fx));
	/* FCW: FNINIT's; the x87 registers are left empty. */
	s->fx[0] = 0x7f;
	s->fx[1] = 0x03;
	memcpy(s->fx + FX_MXCSR, &mxcsr, 4);
	for (unsigned int r = 0; r < 16; r++)
		for (unsigned int l = 0; l < 4; l++) {
			uint32_t v = lane32();

			if (fp_lanes && (r & 1)) {
				uint64_t q = fp64();

				memcpy(s->fx + FX_XMM + 16 * r + 4 * l, &q, 8);
				l++;
				continue;
			}
			if (fp_lanes)
				v = fp32();
			memcpy(s->fx + FX_XMM + 16 * r + 4 * l, &v, 4);
		}
	/* Equal lanes across registers, for the compares. */
	for (unsigned int k = 0; k < 8; k++) {
		unsigned int a = rnd() % 16, b = rnd() % 16,
			     off = (unsigned int)(rnd() % 16);

		s->fx[FX_XMM + 16 * a + off] = s->fx[FX_XMM + 16 * b + off];
	}
	for (unsigned int i = 0; i < 16; i++)
		s->gpr[i] = (rnd() & 1) ? rnd() : (uint64_t)lane32();
	s->rflags = rnd() & 0x8d5;
	for (unsigned int i = 0; i < BUF; i += 8) {
		uint64_t q = fp64();
		uint32_t v[2] = { lane32(), fp_lanes ? fp32() : lane32() };

		if (fp_lanes && (rnd() & 1))
			memcpy(s->buf + i, &q, 8);
		else
			memcpy(s->buf + i, v, 8);
	}
	/* Integer sources of the conversions: small values too. */
	if (fp_lanes)
		for (unsigned int i = 0; i < 16; i++)
			if (rnd() & 1)
				s->gpr[i] =
					(uint64_t)(int64_t)(int32_t)(rnd() % 2001 -
								     1000);
}

/* Bytes of the FXSAVE image compared (see the header comment). */
static bool fx_compared(unsigned int i)
{
	return i < 6 || (i >= 24 && i < 28) || (i >= 32 && i < 416);
}

/* ---- one case on both CPUs ---------------------------------------------- */

static void hexdump(const char *what, const uint8_t *p, size_t len)
{
	fprintf(stderr, "  %s:", what);
	for (size_t i = 0; i < len; i++)
		fprintf(stderr, " %02x", p[i]);
	fprintf(stderr, "\n");
}

/* MXCSR of our CPU when its last case faulted. */
static uint32_t xm_mxcsr;

static int guest_vector(const uint8_t *code, size_t len)
{
	struct x86_exit exit;
	enum x86_exit_reason reason;
	uint8_t img[512];

	xh_place_code(h, code, len);
	reason = xh_run(h, 1000, &exit);
	if (reason == X86_EXIT_TRIPLE_FAULT) {
		x86_get_fpu(h->cpu, img);
		memcpy(&xm_mxcsr, img + FX_MXCSR, 4);
		xh_free(h);
		h = fresh();
		return exit.triple.vectors[0];
	}
	return reason == X86_EXIT_HLT ? -1 : 256 + (int)reason;
}

static const char *host_fault_name(enum hx_result r)
{
	return r == HX_OK	? "none" :
	       r == HX_FAULT_UD ? "#UD" :
	       r == HX_FAULT_DE ? "SIGFPE" :
				  "SIGSEGV/SIGBUS";
}

static bool fault_agrees(enum hx_result host, int vector)
{
	switch (host) {
	case HX_FAULT_UD:
		return vector == X86_UD;
	case HX_FAULT_DE: /* SIGFPE: #DE, #XM (CR4.OSXMMEXCPT is set) */
		return vector == X86_DE || vector == X86_XM;
	case HX_FAULT_OTHER:
		return vector == X86_GP || vector == X86_SSF ||
		       vector == X86_PF;
	default:
		return false;
	}
}

/* Buffer bytes that are not compared (NULL: all are). */
typedef bool (*skip_fn)(size_t off);

static bool buffers_differ(const uint8_t *a, const uint8_t *b, skip_fn ignore)
{
	for (size_t i = 0; i < BUF; i++)
		if (a[i] != b[i] && !(ignore && ignore(i)))
			return true;
	return false;
}

/*
 * The MXCSR flags compared after an #XM: all six, but PE when overflow
 * or underflow is unmasked. The hardware then sets PE by the exactness
 * of the result rounded with an unbounded exponent, which our CPU does
 * not compute (core/vcpu/x86/exec_ssefp.c, fp_raise(), says why).
 */
static uint32_t xm_flags_compared(const struct state *in)
{
	uint32_t mxcsr;

	memcpy(&mxcsr, in->fx + FX_MXCSR, 4);
	return (~mxcsr & 0x0c00) ? 0x1f : 0x3f; /* OM, UM are bits 10, 11 */
}

static void run_case_skip(const char *name, const uint8_t *code, size_t len,
			  const struct state *in, skip_fn ignore)
{
	struct hx_fx_regs hr;
	struct x86_regs gr;
	uint8_t gfx[512];
	enum hx_result hres;
	bool bad = false;
	int vector;

	ncases++;
	memcpy(hr.r.gpr, in->gpr, sizeof(hr.r.gpr));
	hr.r.rflags = in->rflags;
	hr.r.gpr[X86_RBX] = (uint64_t)(uintptr_t)hostbuf + MID;
	memcpy(hr.fx, in->fx, sizeof(hr.fx));
	memcpy(hostbuf, in->buf, BUF);
	hres = hx_run_fx(code, len, &hr);

	x86_get_regs(h->cpu, &gr);
	memcpy(gr.gpr, in->gpr, sizeof(gr.gpr));
	gr.gpr[X86_RSP] = XH_STACK_TOP;
	gr.gpr[X86_RBX] = GBUF + MID;
	gr.rflags = in->rflags | X86_RFLAGS_FIXED;
	x86_set_regs(h->cpu, &gr);
	assert_true(x86_set_fpu(h->cpu, in->fx));
	xh_load(h, GBUF, in->buf, BUF);

	vector = guest_vector(code, len);
	if (hres != HX_OK || vector >= 0) {
		nfaults += fault_agrees(hres, vector);
		if (vector == X86_XM && hres == HX_FAULT_DE &&
		    ((xm_mxcsr ^ hx_fault_mxcsr()) & xm_flags_compared(in))) {
			if (failures < MAX_FAILS) {
				fprintf(stderr,
					"MISMATCH %s: #XM flags host %02x guest "
					"%02x (MXCSR before %04x)\n",
					name, hx_fault_mxcsr() & 0x3f,
					xm_mxcsr & 0x3f,
					(unsigned int)(in->fx[FX_MXCSR] |
						       in->fx[FX_MXCSR + 1]
							       << 8));
				hexdump("bytes", code, len);
			}
			failures++;
			return;
		}
		if (!fault_agrees(hres, vector)) {
			if (failures < MAX_FAILS) {
				fprintf(stderr,
					"MISMATCH %s: host fault %s, guest "
					"vector %d (-1: none)\n",
					name, host_fault_name(hres), vector);
				hexdump("bytes", code, len);
			}
			failures++;
		}
		return;
	}

	x86_get_regs(h->cpu, &gr);
	x86_get_fpu(h->cpu, gfx);
	for (unsigned int i = 0; i < 16; i++) {
		if (i == X86_RSP || i == X86_RBX || gr.gpr[i] == hr.r.gpr[i])
			continue;
		if (failures < MAX_FAILS)
			fprintf(stderr,
				"MISMATCH %s: r%u host %llx guest %llx\n", name,
				i, (unsigned long long)hr.r.gpr[i],
				(unsigned long long)gr.gpr[i]);
		bad = true;
	}
	if ((gr.rflags ^ hr.r.rflags) & 0x8d5) {
		if (failures < MAX_FAILS)
			fprintf(stderr,
				"MISMATCH %s: flags host %llx guest %llx\n",
				name, (unsigned long long)hr.r.rflags,
				(unsigned long long)gr.rflags);
		bad = true;
	}
	for (unsigned int i = 0; i < 416; i++) {
		if (!fx_compared(i) || gfx[i] == hr.fx[i])
			continue;
		if (failures < MAX_FAILS) {
			fprintf(stderr, "MISMATCH %s: FXSAVE byte %u", name, i);
			if (i >= FX_XMM)
				fprintf(stderr, " (xmm%u byte %u)",
					(i - FX_XMM) / 16, (i - FX_XMM) % 16);
			fprintf(stderr, ": host %02x guest %02x\n", hr.fx[i],
				gfx[i]);
		}
		bad = true;
		break;
	}
	if (buffers_differ(hostbuf, xh_ptr(h, GBUF), ignore)) {
		if (failures < MAX_FAILS)
			fprintf(stderr, "MISMATCH %s: memory differs\n", name);
		bad = true;
	}
	if (bad && failures < MAX_FAILS)
		hexdump("bytes", code, len);
	failures += bad;
}

static void run_case(const char *name, const uint8_t *code, size_t len,
		     const struct state *in)
{
	run_case_skip(name, code, len, in, NULL);
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

	return r[rnd() % 6];
}

/* Builds one encoding of f: register or memory form, REX bits random
 * (REX.W too), displacement aligned or not. Returns the length. */
static size_t encode(const struct form *f, bool mem, uint8_t *code)
{
	unsigned int reg = f->group >= 0 ? (unsigned int)f->group : pick_reg();
	unsigned int rm = mem ? 3 : pick_reg();
	unsigned int rex = 0x40 | (unsigned int)(rnd() & 8); /* W */
	size_t n = 0;

	if (f->group < 0 && (rnd() & 1))
		rex |= 4; /* R */
	if (!mem && (rnd() & 1))
		rex |= 1; /* B */
	if (f->pfx)
		code[n++] = f->pfx;
	if (rex != 0x40 || (rnd() & 1))
		code[n++] = (uint8_t)rex;
	code[n++] = 0x0f;
	code[n++] = f->op;
	if (mem) {
		int disp = f->aligned && (rnd() & 7) ?
				   16 * ((int)(rnd() % 8) - 4) :
				   (int)(rnd() % 128) - 64;

		code[n++] = (uint8_t)(0x40 | (reg << 3) | rm);
		code[n++] = (uint8_t)(int8_t)disp;
	} else {
		code[n++] = (uint8_t)(0xc0 | (reg << 3) | rm);
	}
	if (f->imm)
		code[n++] = (uint8_t)rnd();
	return n;
}

static void check_forms(const struct form *forms, size_t n)
{
	struct state *s = test_malloc(sizeof(*s));

	failures = ncases = nfaults = 0;
	for (size_t i = 0; i < n; i++) {
		const struct form *f = &forms[i];
		bool reg_ok = f->ops != XM && f->ops != GM;
		bool mem_ok = f->ops != XR && f->ops != GR;

		for (unsigned int c = 0; c < CASES; c++) {
			uint8_t code[16];
			bool mem = mem_ok && (!reg_ok || (c & 1));
			size_t len = encode(f, mem, code);

			random_state(s);
			run_case(f->name, code, len, s);
		}
	}
	test_free(s);
	print_message("%u cases (%u faulted on both), %u mismatches\n", ncases,
		      nfaults, failures);
	assert_int_equal(failures, 0);
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
	assert_true(nfaults > 0);
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

/* A fresh CPU (a fault ends in a triple fault that shuts the CPU down)
 * with CR0 bits set and CR4 bits cleared, RBX at the buffer; code's
 * first instruction must fault with vector. */
static void expect_fault_with(uint64_t cr0_set, uint64_t cr4_clear,
			      const uint8_t *code, size_t len,
			      unsigned int vector)
{
	struct x86_sregs s;

	xh_free(h);
	h = fresh();
	xh_set_reg(h, X86_RBX, GBUF);
	x86_get_sregs(h->cpu, &s);
	s.cr0 |= cr0_set;
	s.cr4 &= ~cr4_clear;
	x86_set_sregs(h->cpu, &s);
	xh_expect_fault(h, code, len, vector);
	xh_free(h);
	h = fresh();
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
		expect_fault_with(0, 0, cases[i] + 1, cases[i][0] - 1U, X86_UD);
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
	expect_fault_with(0, X86_CR4_OSFXSR, pxor, sizeof(pxor), X86_UD);
	expect_fault_with(0, X86_CR4_OSFXSR, ldmxcsr, sizeof(ldmxcsr), X86_UD);
	expect_fault_with(X86_CR0_TS, X86_CR4_OSFXSR, pxor, sizeof(pxor),
			  X86_UD);
	expect_fault_with(X86_CR0_TS, 0, pxor, sizeof(pxor), X86_NM);
	expect_fault_with(X86_CR0_TS, 0, movdqa_ld, sizeof(movdqa_ld), X86_NM);
	expect_fault_with(X86_CR0_TS, 0, ldmxcsr, sizeof(ldmxcsr), X86_NM);
	expect_fault_with(X86_CR0_TS, 0, fxsave, sizeof(fxsave), X86_NM);
	expect_fault_with(X86_CR0_EM, 0, pxor, sizeof(pxor), X86_UD);
	expect_fault_with(X86_CR0_EM | X86_CR0_TS, 0, pxor, sizeof(pxor),
			  X86_UD);
	expect_fault_with(X86_CR0_EM, 0, fxsave, sizeof(fxsave), X86_NM);
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
	for (int base = MID - 512; base <= MID + 512; base += 1024)
		if (off >= (size_t)base && off < (size_t)base + 416 &&
		    !fx_compared((unsigned int)(off - (size_t)base)))
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
	struct state *s = test_malloc(sizeof(*s));

	(void)state;
	failures = ncases = 0;
	for (unsigned int c = 0; c < 300; c++) {
		uint32_t mxcsr = (uint32_t)rnd() & 0xffff;

		random_state(s);
		/* The image: random x87 registers and words, a valid or
		 * (one case in eight) a reserved-bit MXCSR. */
		for (unsigned int i = 0; i < 8; i++)
			for (unsigned int b = 0; b < 10; b++)
				s->buf[MID + 32 + 16 * i + b] = (uint8_t)rnd();
		for (unsigned int b = 0; b < 5; b++)
			s->buf[MID + b] = (uint8_t)rnd();
		/* A bit reserved on both CPUs (the host's MXCSR_MASK may
		 * allow more than ours: AMD's bit 17). */
		if ((c & 7) == 7)
			mxcsr |= 1u << (18 + rnd() % 14);
		memcpy(s->buf + MID + FX_MXCSR, &mxcsr, 4);
		memcpy(s->buf + MID + FX_XMM, s->fx + FX_XMM, 256);
		run_case_skip("fxrstor/fxsave", seq, sizeof(seq), s,
			      skip_saved_images);
		run_case("ldmxcsr/stmxcsr", mxcsr_seq, sizeof(mxcsr_seq), s);
		run_case("fxsave misaligned", misaligned[0], 5, s);
		run_case("fxrstor misaligned", misaligned[1], 5, s);
	}
	test_free(s);
	print_message("%u cases, %u mismatches\n", ncases, failures);
	assert_int_equal(failures, 0);
}

static int setup(void **state)
{
	(void)state;
	h = fresh();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	xh_free(h);
	return 0;
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
		cmocka_unit_test(test_fxsave_fxrstor_match_host),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
