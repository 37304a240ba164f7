/*
 * SSE and SSE2 floating point (SDM vol. 2 by mnemonic; vol. 1, 10.4,
 * 11.4 and 11.5): arithmetic, square root, reciprocal approximations,
 * min/max, compares (CMPcc and the EFLAGS-setting COMIS/UCOMIS), and
 * every conversion between single, double and 32/64-bit integers.
 *
 * Each operation runs as the same instruction on the host CPU, whose
 * MXCSR is loaded for the duration with the guest's rounding control,
 * DAZ and FZ and every exception masked: the result is the one the
 * guest's instruction produces bit for bit (NaN payloads, denormals,
 * rounding, the integer indefinite value), and the flags it raises are
 * those the guest's MXCSR collects. What the guest's own masks change
 * is applied here (SDM vol. 1, 11.5.1 and 11.5.2): an unmasked
 * pre-computation exception (invalid, denormal, divide by zero) sets
 * only those flags and raises #XM (#UD with CR4.OSXMMEXCPT clear)
 * leaving the destination untouched; else an unmasked post-computation
 * one (overflow, underflow, precision) sets every flag seen and raises
 * the same way; else the flags are ORed in and the result is written.
 * Underflow differs between its masked response (signaled when tiny and
 * inexact) and its unmasked one (signaled when tiny): with it unmasked
 * the operation runs a second time with FZ set, whose flush reports
 * tininess alone.
 */
#include <string.h>

#include "x86_int.h"

typedef union x86_xmm xmm_t;
typedef long long v2di __attribute__((vector_size(16)));

#define MX_IE 0x01u
#define MX_DE 0x02u
#define MX_ZE 0x04u
#define MX_OE 0x08u
#define MX_UE 0x10u
#define MX_PE 0x20u
#define MX_FLAGS 0x3fu
#define MX_MASKS 0x1f80u
#define MX_FZ 0x8000u

static inline unsigned int pfx(const struct x86_insn *in)
{
	return in->rep ? in->rep : in->opsize_prefix ? 0x66 : 0;
}

static _Noreturn void ud(struct x86_cpu *cpu)
{
	x86_raise(cpu, X86_UD, 0);
}

static inline v2di to_v(const xmm_t *x)
{
	v2di v;

	memcpy(&v, x, 16);
	return v;
}

static inline void from_v(xmm_t *x, v2di v)
{
	memcpy(x, &v, 16);
}

/* The host MXCSR an operation runs under: the guest's RC, DAZ and FZ,
 * every exception masked, no flag set. */
static inline uint32_t run_mxcsr(const struct x86_cpu *cpu)
{
	return (cpu->fpu.mxcsr & ~MX_FLAGS) | MX_MASKS;
}

/*
 * Host helpers: run one instruction under mx (in: the MXCSR to use, out:
 * the MXCSR after it), restoring the host's own MXCSR after.
 */
#define HOST_BIN(name, insn)                                            \
	static uint32_t host_##name(v2di *d, v2di s, uint32_t mx)       \
	{                                                               \
		uint32_t saved;                                         \
		__asm__ volatile(                                       \
			"stmxcsr %[sv]\n\t"                             \
			"ldmxcsr %[mx]\n\t" insn " %[s], %[d]\n\t"      \
			"stmxcsr %[mx]\n\t"                             \
			"ldmxcsr %[sv]"                                 \
			: [d] "+x"(*d), [mx] "+m"(mx), [sv] "=m"(saved) \
			: [s] "x"(s));                                  \
		return mx;                                              \
	}

#define HOST_BIN4(op)              \
	HOST_BIN(op##ps, #op "ps") \
	HOST_BIN(op##pd, #op "pd") \
	HOST_BIN(op##ss, #op "ss") \
	HOST_BIN(op##sd, #op "sd")

HOST_BIN4(add)
HOST_BIN4(sub)
HOST_BIN4(mul)
HOST_BIN4(div)
HOST_BIN4(min)
HOST_BIN4(max)
HOST_BIN4(sqrt)
HOST_BIN(rsqrtps, "rsqrtps")
HOST_BIN(rsqrtss, "rsqrtss")
HOST_BIN(rcpps, "rcpps")
HOST_BIN(rcpss, "rcpss")
HOST_BIN(cvtps2pd, "cvtps2pd")
HOST_BIN(cvtpd2ps, "cvtpd2ps")
HOST_BIN(cvtss2sd, "cvtss2sd")
HOST_BIN(cvtsd2ss, "cvtsd2ss")
HOST_BIN(cvtdq2ps, "cvtdq2ps")
HOST_BIN(cvtps2dq, "cvtps2dq")
HOST_BIN(cvttps2dq, "cvttps2dq")
HOST_BIN(cvttpd2dq, "cvttpd2dq")
HOST_BIN(cvtdq2pd, "cvtdq2pd")
HOST_BIN(cvtpd2dq, "cvtpd2dq")

typedef uint32_t (*host_bin_fn)(v2di *d, v2di s, uint32_t mx);

/* CMPccPS/PD/SS/SD: the predicate is an immediate of the instruction. */
#define HOST_CMP(name, insn, imm)                                         \
	static uint32_t host_##name##_##imm(v2di *d, v2di s, uint32_t mx) \
	{                                                                 \
		uint32_t saved;                                           \
		__asm__ volatile(                                         \
			"stmxcsr %[sv]\n\t"                               \
			"ldmxcsr %[mx]\n\t" insn " %[i], %[s], %[d]\n\t"  \
			"stmxcsr %[mx]\n\t"                               \
			"ldmxcsr %[sv]"                                   \
			: [d] "+x"(*d), [mx] "+m"(mx), [sv] "=m"(saved)   \
			: [s] "x"(s), [i] "i"(imm));                      \
		return mx;                                                \
	}

#define HOST_CMP8(name, insn)                                      \
	HOST_CMP(name, insn, 0)                                    \
	HOST_CMP(name, insn, 1)                                    \
	HOST_CMP(name, insn, 2)                                    \
	HOST_CMP(name, insn, 3)                                    \
	HOST_CMP(name, insn, 4)                                    \
	HOST_CMP(name, insn, 5)                                    \
	HOST_CMP(name, insn, 6)                                    \
	HOST_CMP(name, insn, 7)                                    \
	static const host_bin_fn host_##name[8] = {                \
		host_##name##_0, host_##name##_1, host_##name##_2, \
		host_##name##_3, host_##name##_4, host_##name##_5, \
		host_##name##_6, host_##name##_7,                  \
	};

HOST_CMP8(cmpps, "cmpps")
HOST_CMP8(cmppd, "cmppd")
HOST_CMP8(cmpss, "cmpss")
HOST_CMP8(cmpsd, "cmpsd")

/*
 * An unmasked exception: the flags the guest's MXCSR collects, then #XM
 * (#UD with CR4.OSXMMEXCPT clear). An unmasked pre-computation exception
 * stops before the computation: only those flags; else every flag seen.
 *
 * Known difference: with overflow or underflow unmasked and raised, the
 * hardware sets PE by the inexactness of the result rounded with an
 * unbounded exponent (the value a handler would rescale), which the
 * masked run here does not compute; PE is the masked response's (set
 * whenever an overflow or a tiny inexact result occurred). Only PE, and
 * only on that #XM path; tests/unit/x86/test_sse.c lists it.
 */
static _Noreturn void fp_raise(struct x86_cpu *cpu, uint32_t flags,
			       uint32_t unmasked_bits)
{
	uint32_t pre = flags & (MX_IE | MX_DE | MX_ZE);

	cpu->fpu.mxcsr |= (pre & unmasked_bits) ? pre : flags;
	x86_raise(cpu, (cpu->cr4 & X86_CR4_OSXMMEXCPT) ? X86_XM : X86_UD, 0);
}

/* The flags of fn on (d, s): with underflow unmasked, its tininess
 * alone (a run with FZ set, whose flush reports every tiny result). */
static uint32_t fp_flags_of(const struct x86_cpu *cpu, host_bin_fn fn, v2di *r,
			    v2di d, v2di s, uint32_t unmasked_bits)
{
	uint32_t flags;

	*r = d;
	flags = fn(r, s, run_mxcsr(cpu)) & MX_FLAGS;
	if (unmasked_bits & MX_UE) {
		v2di t = d;

		flags = (flags & ~MX_UE) |
			(fn(&t, s, run_mxcsr(cpu) | MX_FZ) & MX_UE);
	}
	return flags;
}

/*
 * Runs fn on (d, s) under the guest's MXCSR and commits per the masks
 * (see the header comment): returns only when the result is written.
 */
static void fp_commit(struct x86_cpu *cpu, host_bin_fn fn, xmm_t *dst, v2di d,
		      v2di s)
{
	uint32_t unmasked_bits = ~(cpu->fpu.mxcsr >> 7) & MX_FLAGS;
	v2di r;
	uint32_t flags = fp_flags_of(cpu, fn, &r, d, s, unmasked_bits);

	if (flags & unmasked_bits)
		fp_raise(cpu, flags, unmasked_bits);
	cpu->fpu.mxcsr |= flags;
	from_v(dst, r);
}

/* The source operand: an XMM register, 16 aligned bytes of memory
 * (packed), or size bytes of memory in the low lane (scalar, any
 * alignment), the rest zero. */
static v2di fp_src(struct x86_cpu *cpu, const struct x86_insn *in,
		   unsigned int size)
{
	xmm_t v = { .q = { 0, 0 } };
	gva_t la;

	if (!in->mem)
		return to_v(&cpu->fpu.xmm[in->rm]);
	la = x86_ea(cpu, in);
	if (size == 16) {
		if (la & 15)
			x86_raise(cpu, X86_GP, 0);
		x86_read_block(cpu, la, &v, 16, in->seg);
	} else {
		v.q[0] = x86_read(cpu, la, size, in->seg);
	}
	return to_v(&v);
}

/* Operand size of the memory source by prefix: PS/PD 16, SS 4, SD 8. */
static inline unsigned int arith_size(unsigned int p)
{
	return p == 0xf3 ? 4 : p == 0xf2 ? 8 : 16;
}

/* 0F 51 58 59 5C 5D 5E 5F: SQRT ADD MUL SUB MIN DIV MAX, all four forms. */
static void op_arith(struct x86_cpu *cpu, const struct x86_insn *in)
{
	static const host_bin_fn fns[8][4] = {
		[0] = { host_sqrtps, host_sqrtpd, host_sqrtss, host_sqrtsd },
		[1] = { host_addps, host_addpd, host_addss, host_addsd },
		[2] = { host_mulps, host_mulpd, host_mulss, host_mulsd },
		[3] = { host_subps, host_subpd, host_subss, host_subsd },
		[4] = { host_minps, host_minpd, host_minss, host_minsd },
		[5] = { host_divps, host_divpd, host_divss, host_divsd },
		[6] = { host_maxps, host_maxpd, host_maxss, host_maxsd },
	};
	static const uint8_t row[16] = {
		[0x1] = 0, [0x8] = 1, [0x9] = 2, [0xc] = 3,
		[0xd] = 4, [0xe] = 5, [0xf] = 6
	};
	unsigned int p = pfx(in);
	unsigned int col = p == 0 ? 0 : p == 0x66 ? 1 : p == 0xf3 ? 2 : 3;
	xmm_t *dst = &cpu->fpu.xmm[in->reg];
	v2di s;

	x86_sse_check(cpu);
	s = fp_src(cpu, in, arith_size(p));
	fp_commit(cpu, fns[row[in->opcode & 0xf]][col], dst, to_v(dst), s);
}

/* 0F 52 / 0F 53: RSQRTPS/RSQRTSS (F3), RCPPS/RCPSS (F3). The host's
 * approximation is the CPU's (the SDM bounds its error, not its bits);
 * they raise no exception. */
static void op_approx(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bool rcp = (in->opcode & 0xff) == 0x53;
	unsigned int p = pfx(in);
	xmm_t *dst = &cpu->fpu.xmm[in->reg];
	v2di s;

	if (p == 0x66 || p == 0xf2)
		ud(cpu);
	x86_sse_check(cpu);
	s = fp_src(cpu, in, p ? 4 : 16);
	fp_commit(cpu,
		  p ? (rcp ? host_rcpss : host_rsqrtss) :
		      (rcp ? host_rcpps : host_rsqrtps),
		  dst, to_v(dst), s);
}

/* 0F 5A: CVTPS2PD (m64), CVTPD2PS (66), CVTSS2SD (F3, m32), CVTSD2SS
 * (F2, m64). 0F 5B: CVTDQ2PS, CVTPS2DQ (66), CVTTPS2DQ (F3). 0F E6:
 * CVTTPD2DQ (66), CVTDQ2PD (F3, m64), CVTPD2DQ (F2). */
static void op_cvt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int p = pfx(in), col = p == 0	  ? 0 :
					p == 0x66 ? 1 :
					p == 0xf3 ? 2 :
						    3;
	xmm_t *dst = &cpu->fpu.xmm[in->reg];
	host_bin_fn fn;
	unsigned int size;
	v2di s;

	switch (in->opcode & 0xff) {
	case 0x5a: {
		static const host_bin_fn f[4] = { host_cvtps2pd, host_cvtpd2ps,
						  host_cvtss2sd,
						  host_cvtsd2ss };
		static const uint8_t sz[4] = { 8, 16, 4, 8 };

		fn = f[col];
		size = sz[col];
		break;
	}
	case 0x5b: {
		static const host_bin_fn f[4] = { host_cvtdq2ps, host_cvtps2dq,
						  host_cvttps2dq, NULL };

		fn = f[col];
		size = 16;
		break;
	}
	default: {
		static const host_bin_fn f[4] = { NULL, host_cvttpd2dq,
						  host_cvtdq2pd,
						  host_cvtpd2dq };

		fn = f[col];
		size = col == 2 ? 8 : 16;
		break;
	}
	}
	if (!fn)
		ud(cpu);
	x86_sse_check(cpu);
	s = fp_src(cpu, in, size);
	fp_commit(cpu, fn, dst, to_v(dst), s);
}

/* 0F C2 ib: CMPPS, CMPPD (66), CMPSS (F3), CMPSD (F2); predicates 0-7
 * (imm8 bits 2:0; the legacy encodings have no others). */
static void op_cmp(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int p = pfx(in), pred = (unsigned int)in->imm & 7;
	xmm_t *dst = &cpu->fpu.xmm[in->reg];
	const host_bin_fn *fns = p == 0	   ? host_cmpps :
				 p == 0x66 ? host_cmppd :
				 p == 0xf3 ? host_cmpss :
					     host_cmpsd;
	v2di s;

	x86_sse_check(cpu);
	s = fp_src(cpu, in, arith_size(p));
	fp_commit(cpu, fns[pred], dst, to_v(dst), s);
}

/* ---- results outside XMM: EFLAGS and general registers ------------------ */

/* Runs a compare that sets EFLAGS; returns MXCSR after, *zpc the ZF, PF
 * and CF it set (in their RFLAGS positions). */
#define HOST_COMI(name, insn)                                                  \
	static uint32_t host_##name(v2di a, v2di b, uint32_t mx,               \
				    uint64_t *zpc)                             \
	{                                                                      \
		uint32_t saved;                                                \
		bool z, p, c;                                                  \
		__asm__ volatile("stmxcsr %[sv]\n\t"                           \
				 "ldmxcsr %[mx]\n\t" insn " %[b], %[a]\n\t"    \
				 "stmxcsr %[mx]\n\t"                           \
				 "ldmxcsr %[sv]"                               \
				 : "=@ccz"(z), "=@ccp"(p),                     \
				   "=@ccc"(c), [mx] "+m"(mx), [sv] "=m"(saved) \
				 : [a] "x"(a), [b] "x"(b));                    \
		*zpc = (z ? X86_RFLAGS_ZF : 0) | (p ? X86_RFLAGS_PF : 0) |     \
		       (c ? X86_RFLAGS_CF : 0);                                \
		return mx;                                                     \
	}

HOST_COMI(comiss, "comiss")
HOST_COMI(comisd, "comisd")
HOST_COMI(ucomiss, "ucomiss")
HOST_COMI(ucomisd, "ucomisd")

/* Commits MXCSR flags of an operation with no XMM destination: raises
 * for an unmasked one (nothing else changes), else ORs them in. These
 * operations have no post-computation exception but precision. */
static void fp_flags(struct x86_cpu *cpu, uint32_t flags)
{
	uint32_t unmasked_bits = ~(cpu->fpu.mxcsr >> 7) & MX_FLAGS;

	flags &= MX_FLAGS;
	if (flags & unmasked_bits)
		fp_raise(cpu, flags, unmasked_bits);
	cpu->fpu.mxcsr |= flags;
}

/* 0F 2E / 0F 2F: UCOMISS, COMISS, and the SD forms with 66. ZF PF CF
 * from the compare, OF SF AF cleared. */
static void op_comi(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bool ordered = (in->opcode & 0xff) == 0x2f;
	unsigned int p = pfx(in);
	uint64_t zpc, rf;
	uint32_t flags;
	v2di s;

	if (in->rep)
		ud(cpu);
	x86_sse_check(cpu);
	s = fp_src(cpu, in, p ? 8 : 4);
	flags = (p ? (ordered ? host_comisd : host_ucomisd) :
		     (ordered ? host_comiss : host_ucomiss))(
		to_v(&cpu->fpu.xmm[in->reg]), s, run_mxcsr(cpu), &zpc);
	fp_flags(cpu, flags);
	rf = x86_rflags(cpu) & ~(uint64_t)X86_RFLAGS_ARITH;
	x86_set_rflags(cpu, rf | zpc);
}

/* CVT(T)SS2SI / CVT(T)SD2SI: to a 32- or 64-bit integer (REX.W). */
#define HOST_TOINT(name, insn)                                               \
	static uint32_t host_##name##32(v2di a, uint32_t mx, uint64_t * out) \
	{                                                                    \
		uint32_t saved, r;                                           \
		__asm__ volatile(                                            \
			"stmxcsr %[sv]\n\t"                                  \
			"ldmxcsr %[mx]\n\t" insn " %[a], %k[r]\n\t"          \
			"stmxcsr %[mx]\n\t"                                  \
			"ldmxcsr %[sv]"                                      \
			: [r] "=r"(r), [mx] "+m"(mx), [sv] "=m"(saved)       \
			: [a] "x"(a));                                       \
		*out = r;                                                    \
		return mx;                                                   \
	}                                                                    \
	static uint32_t host_##name##64(v2di a, uint32_t mx, uint64_t * out) \
	{                                                                    \
		uint32_t saved;                                              \
		uint64_t r;                                                  \
		__asm__ volatile(                                            \
			"stmxcsr %[sv]\n\t"                                  \
			"ldmxcsr %[mx]\n\t" insn " %[a], %q[r]\n\t"          \
			"stmxcsr %[mx]\n\t"                                  \
			"ldmxcsr %[sv]"                                      \
			: [r] "=r"(r), [mx] "+m"(mx), [sv] "=m"(saved)       \
			: [a] "x"(a));                                       \
		*out = r;                                                    \
		return mx;                                                   \
	}

HOST_TOINT(cvtss2si, "cvtss2si")
HOST_TOINT(cvttss2si, "cvttss2si")
HOST_TOINT(cvtsd2si, "cvtsd2si")
HOST_TOINT(cvttsd2si, "cvttsd2si")

typedef uint32_t (*host_toint_fn)(v2di a, uint32_t mx, uint64_t *out);

/* 0F 2C / 0F 2D with F3 or F2: CVTTSS2SI, CVTSS2SI, CVTTSD2SI,
 * CVTSD2SI; the MMX forms (no prefix, 66) are #UD. */
static void op_cvt_toint(struct x86_cpu *cpu, const struct x86_insn *in)
{
	static const host_toint_fn fns[2][2][2] = {
		/* [sd][truncate][w] */
		{ { host_cvtss2si32, host_cvtss2si64 },
		  { host_cvttss2si32, host_cvttss2si64 } },
		{ { host_cvtsd2si32, host_cvtsd2si64 },
		  { host_cvttsd2si32, host_cvttsd2si64 } },
	};
	bool sd = in->rep == 0xf2, trunc = (in->opcode & 0xff) == 0x2c;
	uint64_t out;
	uint32_t flags;
	v2di s;

	if (!in->rep)
		ud(cpu);
	x86_sse_check(cpu);
	s = fp_src(cpu, in, sd ? 8 : 4);
	flags = fns[sd][trunc][in->rex_w](s, run_mxcsr(cpu), &out);
	fp_flags(cpu, flags);
	x86_reg_set(cpu, in->reg, in->rex_w ? 8 : 4, true, out);
}

/* CVTSI2SS / CVTSI2SD: from a 32- or 64-bit integer into the low lane. */
#define HOST_FROMINT(name, insn)                                           \
	static uint32_t host_##name##32(v2di * d, uint64_t v, uint32_t mx) \
	{                                                                  \
		uint32_t saved, w = (uint32_t)v;                           \
		__asm__ volatile(                                          \
			"stmxcsr %[sv]\n\t"                                \
			"ldmxcsr %[mx]\n\t" insn "l %[v], %[d]\n\t"        \
			"stmxcsr %[mx]\n\t"                                \
			"ldmxcsr %[sv]"                                    \
			: [d] "+x"(*d), [mx] "+m"(mx), [sv] "=m"(saved)    \
			: [v] "r"(w));                                     \
		return mx;                                                 \
	}                                                                  \
	static uint32_t host_##name##64(v2di * d, uint64_t v, uint32_t mx) \
	{                                                                  \
		uint32_t saved;                                            \
		__asm__ volatile(                                          \
			"stmxcsr %[sv]\n\t"                                \
			"ldmxcsr %[mx]\n\t" insn "q %[v], %[d]\n\t"        \
			"stmxcsr %[mx]\n\t"                                \
			"ldmxcsr %[sv]"                                    \
			: [d] "+x"(*d), [mx] "+m"(mx), [sv] "=m"(saved)    \
			: [v] "r"(v));                                     \
		return mx;                                                 \
	}

HOST_FROMINT(cvtsi2ss, "cvtsi2ss")
HOST_FROMINT(cvtsi2sd, "cvtsi2sd")

/* 0F 2A with F3 or F2: CVTSI2SS, CVTSI2SD xmm, r/m32 (r/m64 with REX.W).
 * Only precision can be raised. */
static void op_cvt_fromint(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->rex_w ? 8 : 4;
	xmm_t *dst = &cpu->fpu.xmm[in->reg];
	uint64_t v;
	uint32_t flags;
	v2di r;

	if (!in->rep)
		ud(cpu);
	x86_sse_check(cpu);
	v = in->mem ? x86_read(cpu, x86_ea(cpu, in), size, in->seg) :
		      x86_trunc(cpu->gpr[in->rm], size);
	r = to_v(dst);
	if (in->rep == 0xf3)
		flags = (size == 8 ? host_cvtsi2ss64 :
				     host_cvtsi2ss32)(&r, v, run_mxcsr(cpu));
	else
		flags = (size == 8 ? host_cvtsi2sd64 :
				     host_cvtsi2sd32)(&r, v, run_mxcsr(cpu));
	fp_flags(cpu, flags);
	from_v(dst, r);
}

#define M X86_D_MODRM
#define ANY X86_GROUP_ANY
#define OP(byte, fn, name)                                              \
	{                                                               \
		X86_MAP_0F | (byte), ANY, X86_IMM_NONE, M, (fn), (name) \
	}

const struct x86_opdesc x86_ops_ssefp[] = {
	OP(0x2a, op_cvt_fromint, "cvtsi2ss"),
	OP(0x2c, op_cvt_toint, "cvttss2si"),
	OP(0x2d, op_cvt_toint, "cvtss2si"),
	OP(0x2e, op_comi, "ucomiss"),
	OP(0x2f, op_comi, "comiss"),
	OP(0x51, op_arith, "sqrtps"),
	OP(0x52, op_approx, "rsqrtps"),
	OP(0x53, op_approx, "rcpps"),
	OP(0x58, op_arith, "addps"),
	OP(0x59, op_arith, "mulps"),
	OP(0x5a, op_cvt, "cvtps2pd"),
	OP(0x5b, op_cvt, "cvtdq2ps"),
	OP(0x5c, op_arith, "subps"),
	OP(0x5d, op_arith, "minps"),
	OP(0x5e, op_arith, "divps"),
	OP(0x5f, op_arith, "maxps"),
	{ X86_MAP_0F | 0xc2, ANY, X86_IMM_B, M, op_cmp, "cmpps" },
	OP(0xe6, op_cvt, "cvtpd2dq"),
	{ 0, 0, 0, 0, NULL, NULL },
};
