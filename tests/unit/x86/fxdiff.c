/* The differential runner of the x87 and SSE tests (fxdiff.h). */
#include "fxdiff.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hostexec.h"
#include "rng.h"

#define MAX_FAILS 12

struct xh *fxd_h;
static uint8_t hostbuf[FXD_BUF] __attribute__((aligned(64)));
static uint64_t rng = 0x55aa55aa12345678ULL;
unsigned int fxd_failures, fxd_ncases, fxd_nfaults;

uint64_t fxd_rnd(void)
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

struct xh *fxd_fresh(void)
{
	struct xh *x = xh_new();

	enable_sse(x);
	return x;
}

uint32_t fxd_lane32(void)
{
	static const uint32_t special[] = {
		0,	     1,		  0xffffffffu, 0x7fffffffu,
		0x80000000u, 0x7f7f7f7f,  0x80808080u, 0x00ff00ffu,
		0xff00ff00u, 0x0000ffffu, 0x7fff8000u, 0x01000100u,
	};

	if (fxd_rnd() & 1)
		return (uint32_t)fxd_rnd();
	return special[fxd_rnd() % (sizeof(special) / sizeof(special[0]))];
}

/* Single-precision specials: zeros, infinities, quiet and signalling
 * NaNs with payloads, denormals, the normal limits, ones, the integer
 * conversion limits (2^31, 2^63) and values halfway between integers. */
uint32_t fxd_fp32(void)
{
	static const uint32_t special[] = {
		0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000,
		0xffc00001, 0x7f800001, 0xff912345, 0x00000001, 0x807fffff,
		0x00400000, 0x00800000, 0x7f7fffff, 0x3f800000, 0xbf800000,
		0x4f000000, 0xcf000000, 0x5f000000, 0xdf000000, 0x3f000000,
		0x3fc00000, 0x40200000, 0x4effffff, 0x0d800000,
	};

	if (fxd_rnd() & 1)
		return special[fxd_rnd() %
			       (sizeof(special) / sizeof(special[0]))];
	/* Random sign and mantissa, exponents near 1 or anywhere. */
	if (fxd_rnd() & 1)
		return (uint32_t)((fxd_rnd() & 0x807fffff) |
				  ((uint64_t)(120 + fxd_rnd() % 16) << 23));
	return (uint32_t)fxd_rnd();
}

uint64_t fxd_fp64(void)
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

	if (fxd_rnd() & 1)
		return special[fxd_rnd() %
			       (sizeof(special) / sizeof(special[0]))];
	if (fxd_rnd() & 1)
		return (fxd_rnd() & 0x800fffffffffffffULL) |
		       ((uint64_t)(1016 + fxd_rnd() % 16) << 52);
	return fxd_rnd();
}

bool fxd_fx_compared(unsigned int i)
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

	xh_place_code(fxd_h, code, len);
	reason = xh_run(fxd_h, 1000, &exit);
	if (reason == X86_EXIT_TRIPLE_FAULT) {
		x86_get_fpu(fxd_h->cpu, img);
		memcpy(&xm_mxcsr, img + FX_MXCSR, 4);
		xh_free(fxd_h);
		fxd_h = fxd_fresh();
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
	case HX_FAULT_DE: /* SIGFPE: #DE, #XM (CR4.OSXMMEXCPT is set), #MF */
		return vector == X86_DE || vector == X86_XM || vector == X86_MF;
	case HX_FAULT_OTHER:
		return vector == X86_GP || vector == X86_SSF ||
		       vector == X86_PF;
	default:
		return false;
	}
}

static bool buffers_differ(const uint8_t *a, const uint8_t *b,
			   fxd_skip_fn ignore)
{
	for (size_t i = 0; i < FXD_BUF; i++)
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
static uint32_t xm_flags_compared(const struct fxd_state *in)
{
	uint32_t mxcsr;

	memcpy(&mxcsr, in->fx + FX_MXCSR, 4);
	return (~mxcsr & 0x0c00) ? 0x1f : 0x3f; /* OM, UM are bits 10, 11 */
}

void fxd_run_case_skip(const char *name, const uint8_t *code, size_t len,
		       const struct fxd_state *in, fxd_skip_fn ignore)
{
	struct hx_fx_regs hr;
	struct x86_regs gr;
	uint8_t gfx[512];
	enum hx_result hres;
	bool bad = false;
	int vector;

	fxd_ncases++;
	memcpy(hr.r.gpr, in->gpr, sizeof(hr.r.gpr));
	hr.r.rflags = in->rflags;
	hr.r.gpr[X86_RBX] = (uint64_t)(uintptr_t)hostbuf + FXD_MID;
	memcpy(hr.fx, in->fx, sizeof(hr.fx));
	memcpy(hostbuf, in->buf, FXD_BUF);
	hres = hx_run_fx(code, len, &hr);

	x86_get_regs(fxd_h->cpu, &gr);
	memcpy(gr.gpr, in->gpr, sizeof(gr.gpr));
	gr.gpr[X86_RSP] = XH_STACK_TOP;
	gr.gpr[X86_RBX] = FXD_GBUF + FXD_MID;
	gr.rflags = in->rflags | X86_RFLAGS_FIXED;
	x86_set_regs(fxd_h->cpu, &gr);
	assert_true(x86_set_fpu(fxd_h->cpu, in->fx));
	xh_load(fxd_h, FXD_GBUF, in->buf, FXD_BUF);

	vector = guest_vector(code, len);
	if (hres != HX_OK || vector >= 0) {
		fxd_nfaults += fault_agrees(hres, vector);
		if (vector == X86_XM && hres == HX_FAULT_DE &&
		    ((xm_mxcsr ^ hx_fault_mxcsr()) & xm_flags_compared(in))) {
			if (fxd_failures < MAX_FAILS) {
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
			fxd_failures++;
			return;
		}
		if (!fault_agrees(hres, vector)) {
			if (fxd_failures < MAX_FAILS) {
				fprintf(stderr,
					"MISMATCH %s: host fault %s, guest "
					"vector %d (-1: none)\n",
					name, host_fault_name(hres), vector);
				hexdump("bytes", code, len);
			}
			fxd_failures++;
		}
		return;
	}

	x86_get_regs(fxd_h->cpu, &gr);
	x86_get_fpu(fxd_h->cpu, gfx);
	for (unsigned int i = 0; i < 16; i++) {
		if (i == X86_RSP || i == X86_RBX || gr.gpr[i] == hr.r.gpr[i])
			continue;
		if (fxd_failures < MAX_FAILS)
			fprintf(stderr,
				"MISMATCH %s: r%u host %llx guest %llx\n", name,
				i, (unsigned long long)hr.r.gpr[i],
				(unsigned long long)gr.gpr[i]);
		bad = true;
	}
	if ((gr.rflags ^ hr.r.rflags) & 0x8d5) {
		if (fxd_failures < MAX_FAILS)
			fprintf(stderr,
				"MISMATCH %s: flags host %llx guest %llx\n",
				name, (unsigned long long)hr.r.rflags,
				(unsigned long long)gr.rflags);
		bad = true;
	}
	for (unsigned int i = 0; i < 416; i++) {
		if (!fxd_fx_compared(i) || gfx[i] == hr.fx[i])
			continue;
		if (fxd_failures < MAX_FAILS) {
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
	if (buffers_differ(hostbuf, xh_ptr(fxd_h, FXD_GBUF), ignore)) {
		if (fxd_failures < MAX_FAILS)
			fprintf(stderr, "MISMATCH %s: memory differs\n", name);
		bad = true;
	}
	if (bad && fxd_failures < MAX_FAILS)
		hexdump("bytes", code, len);
	fxd_failures += bad;
}

void fxd_run_case(const char *name, const uint8_t *code, size_t len,
		  const struct fxd_state *in)
{
	fxd_run_case_skip(name, code, len, in, NULL);
}

/* A fresh CPU (a fault ends in a triple fault that shuts the CPU down)
 * with CR0 bits set and CR4 bits cleared, RBX at the buffer; code's
 * first instruction must fault with vector. */
void fxd_expect_fault_with(uint64_t cr0_set, uint64_t cr4_clear,
			   const uint8_t *code, size_t len, unsigned int vector)
{
	struct x86_sregs s;

	xh_free(fxd_h);
	fxd_h = fxd_fresh();
	xh_set_reg(fxd_h, X86_RBX, FXD_GBUF);
	x86_get_sregs(fxd_h->cpu, &s);
	s.cr0 |= cr0_set;
	s.cr4 &= ~cr4_clear;
	x86_set_sregs(fxd_h->cpu, &s);
	xh_expect_fault(fxd_h, code, len, vector);
	xh_free(fxd_h);
	fxd_h = fxd_fresh();
}

int fxd_setup(void **state)
{
	(void)state;
	fxd_h = fxd_fresh();
	return 0;
}

int fxd_teardown(void **state)
{
	(void)state;
	xh_free(fxd_h);
	return 0;
}
