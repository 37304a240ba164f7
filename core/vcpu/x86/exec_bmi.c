/*
 * Bit scans and the integer extensions that CPUID reports one by one:
 * BSF/BSR and, with an F3 prefix, TZCNT (BMI1) and LZCNT (LZCNT); POPCNT;
 * MOVBE; ADCX/ADOX (ADX); and the VEX-encoded general-register
 * instructions of BMI1 (ANDN, BEXTR, BLSI, BLSMSK, BLSR) and BMI2 (BZHI,
 * MULX, PDEP, PEXT, RORX, SARX, SHLX, SHRX). gcc emits all of them for
 * -march=haswell and later even with -mgeneral-regs-only.
 *
 * Mandatory prefixes select the instruction: legacy ones arrive as
 * in->rep / in->opsize_prefix, VEX's as in->vex_pfx; an encoding with
 * another prefix is #UD. Flags the SDM leaves undefined: BSF/BSR keep
 * exec_alu.c's measured rules (below); for the others AF and PF (and SF
 * where undefined) are cleared, ZF follows the result where defined.
 * Operands of the BMI instructions are 32 or 64 bits (VEX.W); 32-bit
 * results zero-extend as every 32-bit register write does.
 */
#include "x86_int.h"

#define CF X86_RFLAGS_CF
#define PF X86_RFLAGS_PF
#define AF X86_RFLAGS_AF
#define ZF X86_RFLAGS_ZF
#define SF X86_RFLAGS_SF
#define OF X86_RFLAGS_OF
#define ARITH X86_RFLAGS_ARITH

#define M X86_D_MODRM
#define ANY X86_GROUP_ANY

static bool sign_of(uint64_t v, unsigned int size)
{
	return (v >> (8 * size - 1)) & 1;
}

/* Writes every arithmetic flag at once (the lazy state is dropped). */
static void set_arith(struct x86_cpu *cpu, uint64_t flags)
{
	cpu->rflags = (cpu->rflags & ~ARITH) | flags;
	cpu->lf.op = X86_LF_NONE;
}

/* ZF and SF of a result, the rest clear: the BMI flag pattern. */
static uint64_t zs(uint64_t v, unsigned int size)
{
	return (v ? 0 : ZF) | (sign_of(v, size) ? SF : 0);
}

static void need_prefix(struct x86_cpu *cpu, bool ok)
{
	if (!ok)
		x86_raise(cpu, X86_UD, 0);
}

/* The VEX.vvvv register at the operand size. */
static uint64_t get_V(const struct x86_cpu *cpu, const struct x86_insn *in)
{
	return x86_reg_get(cpu, in->vex_reg, in->opsize, true);
}

static void set_V(struct x86_cpu *cpu, const struct x86_insn *in, uint64_t v)
{
	x86_reg_set(cpu, in->vex_reg, in->opsize, true, v);
}

/* ---- BSF BSR TZCNT LZCNT POPCNT --------------------------------------- */

/*
 * BSF/BSR (no F3): as measured on the host (exec_alu.c's header): CF OF
 * SF AF cleared, ZF set for a zero source and PF from the index (set for
 * a zero source), the destination untouched when the source is zero.
 */
static void bsx(struct x86_cpu *cpu, const struct x86_insn *in, bool reverse)
{
	uint64_t v = x86_get_E(cpu, in), f = 0;
	unsigned int idx;

	if (!v) {
		f = ZF | PF;
	} else {
		idx = reverse ? 63 - (unsigned int)__builtin_clzll(v) :
				(unsigned int)__builtin_ctzll(v);
		x86_set_G(cpu, in, idx);
		f = __builtin_parity(idx) ? 0 : PF;
	}
	set_arith(cpu, f);
}

/* TZCNT/LZCNT: the count (the operand width for a zero source); CF says
 * the source was zero, ZF the count is; OF SF AF PF undefined: cleared. */
static void xzcnt(struct x86_cpu *cpu, const struct x86_insn *in, bool leading)
{
	unsigned int bits = 8 * in->opsize;
	uint64_t v = x86_get_E(cpu, in), n;

	if (!v)
		n = bits;
	else if (leading)
		n = (uint64_t)__builtin_clzll(v) - (64 - bits);
	else
		n = (uint64_t)__builtin_ctzll(v);
	x86_set_G(cpu, in, n);
	set_arith(cpu, (v ? 0 : CF) | (n ? 0 : ZF));
}

static void op_bsf_tzcnt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	if (in->rep == 0xf3)
		xzcnt(cpu, in, false);
	else
		bsx(cpu, in, false);
}

static void op_bsr_lzcnt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	if (in->rep == 0xf3)
		xzcnt(cpu, in, true);
	else
		bsx(cpu, in, true);
}

/* F3 0F B8: every flag cleared but ZF, set for a zero source. */
static void op_popcnt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v;

	need_prefix(cpu, in->rep == 0xf3);
	v = x86_get_E(cpu, in);
	x86_set_G(cpu, in, (uint64_t)__builtin_popcountll(v));
	set_arith(cpu, v ? 0 : ZF);
}

/* ---- MOVBE ADCX ADOX -------------------------------------------------- */

static uint64_t byteswap(uint64_t v, unsigned int size)
{
	switch (size) {
	case 2:
		return __builtin_bswap16((uint16_t)v);
	case 4:
		return __builtin_bswap32((uint32_t)v);
	default:
		return __builtin_bswap64(v);
	}
}

/* 0F38 F0 / F1: a load or store with the bytes reversed (memory only;
 * F2 would be CRC32, absent with SSE4.2). */
static void op_movbe_Gv_Mv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	need_prefix(cpu, !in->rep);
	x86_set_G(cpu, in, byteswap(x86_get_E(cpu, in), in->opsize));
}

static void op_movbe_Mv_Gv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	need_prefix(cpu, !in->rep);
	x86_set_E(cpu, in, byteswap(x86_get_G(cpu, in), in->opsize));
}

/*
 * 66 0F38 F6 (ADCX) adds with CF as carry in and out, F3 0F38 F6 (ADOX)
 * with OF; no other flag changes. The 66 is mandatory, not an operand
 * size: the operands are 32 or 64 bits (REX.W).
 */
static void op_adcx_adox(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bool adox = in->rep == 0xf3;
	struct x86_insn op = *in;
	uint64_t flags, carry_flag = adox ? OF : CF, a, b, sum;
	bool carry;

	need_prefix(cpu, adox ? !in->opsize_prefix :
				(in->opsize_prefix && !in->rep));
	op.opsize = in->rex_w ? 8 : 4;
	flags = x86_rflags(cpu);
	a = x86_get_G(cpu, &op);
	b = x86_get_E(cpu, &op);
	carry = flags & carry_flag;
	sum = x86_trunc(a + b + carry, op.opsize);
	carry = sum < a || (carry && sum == a);
	x86_set_G(cpu, &op, sum);
	set_arith(cpu,
		  (flags & ARITH & ~carry_flag) | (carry ? carry_flag : 0));
}

/* ---- BMI1 (VEX) ------------------------------------------------------- */

static void op_andn(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t r;

	need_prefix(cpu, !in->vex_pfx);
	r = x86_trunc(~get_V(cpu, in) & x86_get_E(cpu, in), in->opsize);
	x86_set_G(cpu, in, r);
	set_arith(cpu, zs(r, in->opsize));
}

/* Start in bits 7:0 of the VEX register, length in bits 15:8. */
static void op_bextr(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int bits = 8 * in->opsize, start, len;
	uint64_t ctl, src, r;

	need_prefix(cpu, !in->vex_pfx);
	ctl = get_V(cpu, in);
	src = x86_get_E(cpu, in);
	start = ctl & 0xff;
	len = (ctl >> 8) & 0xff;
	r = start < bits ? src >> start : 0;
	if (len < 64)
		r &= (1ULL << len) - 1;
	x86_set_G(cpu, in, r);
	set_arith(cpu, r ? 0 : ZF);
}

/* Group 17 (VEX 0F38 F3 /1 /2 /3): the result goes to the VEX register;
 * CF says the source was nonzero (BLSI) or zero (BLSMSK, BLSR). */
static void op_blsr(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t s, r;

	need_prefix(cpu, !in->vex_pfx);
	s = x86_get_E(cpu, in);
	r = x86_trunc(s & (s - 1), in->opsize);
	set_V(cpu, in, r);
	set_arith(cpu, zs(r, in->opsize) | (s ? 0 : CF));
}

static void op_blsmsk(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t s, r;

	need_prefix(cpu, !in->vex_pfx);
	s = x86_get_E(cpu, in);
	r = x86_trunc(s ^ (s - 1), in->opsize);
	set_V(cpu, in, r);
	/* ZF is cleared, not computed (SDM: BLSMSK). */
	set_arith(cpu, (sign_of(r, in->opsize) ? SF : 0) | (s ? 0 : CF));
}

static void op_blsi(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t s, r;

	need_prefix(cpu, !in->vex_pfx);
	s = x86_get_E(cpu, in);
	r = x86_trunc(s & -s, in->opsize);
	set_V(cpu, in, r);
	set_arith(cpu, zs(r, in->opsize) | (s ? CF : 0));
}

/* ---- BMI2 (VEX) ------------------------------------------------------- */

/* VEX 0F38 F5 with no prefix: zero the bits from index (VEX register
 * bits 7:0) up; CF says the index was past the operand. */
static void bzhi(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int bits = 8 * in->opsize, n = get_V(cpu, in) & 0xff;
	uint64_t r = x86_get_E(cpu, in);

	if (n < bits)
		r &= (1ULL << n) - 1;
	x86_set_G(cpu, in, r);
	set_arith(cpu, zs(r, in->opsize) | (n > bits - 1 ? CF : 0));
}

/* PDEP: the low bits of the source to the mask's set bits, in order. */
static uint64_t pdep(uint64_t src, uint64_t mask)
{
	uint64_t r = 0;

	for (uint64_t bit = 1; mask; bit <<= 1) {
		uint64_t low = mask & -mask;

		if (src & bit)
			r |= low;
		mask ^= low;
	}
	return r;
}

/* PEXT: the source's bits at the mask's set bits, packed low. */
static uint64_t pext(uint64_t src, uint64_t mask)
{
	uint64_t r = 0;

	for (uint64_t bit = 1; mask; bit <<= 1) {
		uint64_t low = mask & -mask;

		if (src & low)
			r |= bit;
		mask ^= low;
	}
	return r;
}

/* VEX 0F38 F5: BZHI (none), PEXT (F3), PDEP (F2); the last two take the
 * source from the VEX register, the mask from E, and set no flags. */
static void op_vex_f5(struct x86_cpu *cpu, const struct x86_insn *in)
{
	switch (in->vex_pfx) {
	case 0:
		bzhi(cpu, in);
		break;
	case 0xf3:
		x86_set_G(cpu, in, pext(get_V(cpu, in), x86_get_E(cpu, in)));
		break;
	case 0xf2:
		x86_set_G(cpu, in, pdep(get_V(cpu, in), x86_get_E(cpu, in)));
		break;
	default:
		x86_raise(cpu, X86_UD, 0);
	}
}

/* F2 VEX 0F38 F6: RDX (EDX) times E, unsigned; low half to the VEX
 * register, then high half to G (G wins when they are one register). */
static void op_mulx(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t src, d, lo, hi;

	need_prefix(cpu, in->vex_pfx == 0xf2);
	src = x86_get_E(cpu, in);
	d = x86_reg_get(cpu, X86_RDX, in->opsize, true);
	if (in->opsize == 8) {
		unsigned __int128 p = (unsigned __int128)src * d;

		lo = (uint64_t)p;
		hi = (uint64_t)(p >> 64);
	} else {
		uint64_t p = src * d;

		lo = p & 0xffffffffULL;
		hi = p >> 32;
	}
	set_V(cpu, in, lo);
	x86_set_G(cpu, in, hi);
}

/* VEX 0F38 F7: BEXTR (none), SHLX (66), SARX (F3), SHRX (F2); the count
 * comes from the VEX register, masked to the width; no flags. */
static void op_vex_f7(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->opsize, count;
	uint64_t v, r;

	if (!in->vex_pfx) {
		op_bextr(cpu, in);
		return;
	}
	count = get_V(cpu, in) & (size == 8 ? 63 : 31);
	v = x86_get_E(cpu, in);
	switch (in->vex_pfx) {
	case 0x66:
		r = v << count;
		break;
	case 0xf3:
		r = (uint64_t)((size == 8 ? (int64_t)v : (int64_t)(int32_t)v) >>
			       count);
		break;
	default:
		r = v >> count;
		break;
	}
	x86_set_G(cpu, in, x86_trunc(r, size));
}

/* F2 VEX 0F3A F0: rotate right by an immediate; no flags; vvvv unused
 * (must be 1111b). */
static void op_rorx(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int bits = 8 * in->opsize, n = in->imm & (bits - 1);
	uint64_t v;

	need_prefix(cpu, in->vex_pfx == 0xf2 && !in->vex_reg);
	v = x86_get_E(cpu, in);
	if (n)
		v = x86_trunc(v >> n | v << (bits - n), in->opsize);
	x86_set_G(cpu, in, v);
}

#define F(b) (X86_MAP_0F | (b))
#define F38(b) (X86_MAP_0F38 | (b))
#define V38(b) (X86_MAP_VEX_0F38 | (b))
#define V3A(b) (X86_MAP_VEX_0F3A | (b))

const struct x86_opdesc x86_ops_bmi[] = {
	{ F(0xbc), ANY, X86_IMM_NONE, M, op_bsf_tzcnt, "bsf/tzcnt" },
	{ F(0xbd), ANY, X86_IMM_NONE, M, op_bsr_lzcnt, "bsr/lzcnt" },
	{ F(0xb8), ANY, X86_IMM_NONE, M, op_popcnt, "popcnt" },
	{ F38(0xf0), ANY, X86_IMM_NONE, M | X86_D_MEM, op_movbe_Gv_Mv,
	  "movbe" },
	{ F38(0xf1), ANY, X86_IMM_NONE, M | X86_D_MEM, op_movbe_Mv_Gv,
	  "movbe" },
	{ F38(0xf6), ANY, X86_IMM_NONE, M, op_adcx_adox, "adcx/adox" },
	{ V38(0xf2), ANY, X86_IMM_NONE, M, op_andn, "andn" },
	{ V38(0xf3), 1, X86_IMM_NONE, M, op_blsr, "blsr" },
	{ V38(0xf3), 2, X86_IMM_NONE, M, op_blsmsk, "blsmsk" },
	{ V38(0xf3), 3, X86_IMM_NONE, M, op_blsi, "blsi" },
	{ V38(0xf5), ANY, X86_IMM_NONE, M, op_vex_f5, "bzhi/pext/pdep" },
	{ V38(0xf6), ANY, X86_IMM_NONE, M, op_mulx, "mulx" },
	{ V38(0xf7), ANY, X86_IMM_NONE, M, op_vex_f7, "bextr/shlx/sarx/shrx" },
	{ V3A(0xf0), ANY, X86_IMM_B, M, op_rorx, "rorx" },
	{ 0, 0, 0, 0, NULL, NULL },
};
