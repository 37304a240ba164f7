/*
 * The integer ALU: ADD/OR/ADC/SBB/AND/SUB/XOR/CMP and TEST in every form,
 * NOT/NEG/INC/DEC, MUL/IMUL/DIV/IDIV, the shift and rotate groups,
 * SHLD/SHRD, the bit tests, SETcc/CMOVcc, the flag instructions
 * (CLC STC CMC CLD STD LAHF SAHF), CBW..CQO and BSWAP. Handlers record
 * flags lazily (flags.c) wherever an instruction writes them all from its
 * operands; ones that keep some old flags materialize RFLAGS first.
 * Memory destinations go through x86_rmw_E()/x86_rmw(), which makes the
 * LOCK forms one seq_cst host read-modify-write. Moves, XCHG, CMPXCHG and
 * XADD belong to exec_mov.c; Jcc to exec_flow.c; BSF/BSR, with the other
 * bit scans and counts, to exec_bmi.c.
 *
 * Where the SDM leaves a result undefined we do what the host, an AMD
 * EPYC (Zen), was measured to do, so that differential tests need mask
 * only what vendors disagree on (the list is in
 * tests/unit/x86/test_alu.c):
 * - AND/OR/XOR/TEST clear AF;
 * - shifts with a nonzero count (SHL SHR SAR SHLD SHRD) set AF; OF is
 *   MSB(res) ^ CF after SHL and MSB(res) ^ the next bit after SHR, SAR
 *   and SHRD for every count, not only 1; after SHLD it is CF ^ the MSB
 *   of the destination shifted alone; SHL/SHR of an 8- or 16-bit
 *   operand by more than its width leave CF = 0 (the bit shifted out of
 *   a zero-extended register);
 * - rotates compute OF with the count-1 formula for every count, also
 *   when RCL/RCR's count is a multiple of width + 1 (CF then unchanged);
 * - 16-bit SHLD/SHRD by 17..31 shift through dest:src:src (SHLD) and
 *   src:src:dest (SHRD) and leave CF = 0;
 * - MUL/IMUL keep SF ZF AF PF; DIV/IDIV keep CF and OF, clear SF ZF PF
 *   and set AF;
 * - BT* keep every flag but CF; BSF/BSR clear CF OF SF AF, set ZF for a
 *   zero source and PF from the index (set for a zero source), and leave
 *   the destination untouched when the source is zero (no zero-extension
 *   of a 32-bit destination either) (exec_bmi.c implements them);
 * - 16-bit BSWAP zeroes the low 16 bits.
 */
#include "x86_int.h"

#define CF X86_RFLAGS_CF
#define PF X86_RFLAGS_PF
#define AF X86_RFLAGS_AF
#define ZF X86_RFLAGS_ZF
#define SF X86_RFLAGS_SF
#define OF X86_RFLAGS_OF
#define DF X86_RFLAGS_DF

#define INLINE static inline __attribute__((always_inline))

INLINE uint64_t size_mask(unsigned int size)
{
	return ~0ULL >> (64 - 8 * size);
}

INLINE uint64_t msb(uint64_t v, unsigned int size)
{
	return (v >> (size * 8 - 1)) & 1;
}

/* RFLAGS with its arithmetic bits current, ready to be edited in place. */
INLINE uint64_t *flags_now(struct x86_cpu *cpu)
{
	x86_rflags(cpu);
	return &cpu->rflags;
}

/* ---- ADD OR ADC SBB AND SUB XOR CMP TEST ----------------------------- */

/* ModRM.reg order of the 80-83 groups. */
enum alu { ADD, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST };

struct alu_ctx {
	uint64_t src, cf, mask;
};

INLINE uint64_t alu(enum alu op, uint64_t a, uint64_t b, uint64_t cf,
		    uint64_t mask)
{
	switch (op) {
	case ADD:
		return (a + b) & mask;
	case OR:
		return a | b;
	case ADC:
		return (a + b + cf) & mask;
	case SBB:
		return (a - b - cf) & mask;
	case AND:
	case TEST:
		return a & b;
	case XOR:
		return a ^ b;
	default: /* SUB, CMP */
		return (a - b) & mask;
	}
}

INLINE void alu_flags(struct x86_cpu *cpu, enum alu op, unsigned int size,
		      uint64_t res, uint64_t a, uint64_t b, uint64_t cf)
{
	switch (op) {
	case ADD:
		x86_lf_set(&cpu->lf, X86_LF_ADD, size, res, a, b);
		break;
	case ADC:
		x86_lf_set_c(&cpu->lf, X86_LF_ADC, size, res, a, b, cf);
		break;
	case SBB:
		x86_lf_set_c(&cpu->lf, X86_LF_SBB, size, res, a, b, cf);
		break;
	case SUB:
	case CMP:
		x86_lf_set(&cpu->lf, X86_LF_SUB, size, res, a, b);
		break;
	default:
		x86_lf_set(&cpu->lf, X86_LF_LOGIC, size, res, a, b);
		break;
	}
}

#define ALU_RMW(name, OP)                                             \
	static uint64_t rmw_##name(struct x86_cpu *cpu, uint64_t old, \
				   void *ctx)                         \
	{                                                             \
		const struct alu_ctx *c = ctx;                        \
		(void)cpu;                                            \
		return alu(OP, old, c->src, c->cf, c->mask);          \
	}

ALU_RMW(add, ADD)
ALU_RMW(or, OR)
ALU_RMW(adc, ADC)
ALU_RMW(sbb, SBB)
ALU_RMW(and, AND)
ALU_RMW(sub, SUB)
ALU_RMW(xor, XOR)

/* E op= src (CMP, TEST: flags only). */
INLINE void alu_E(struct x86_cpu *cpu, const struct x86_insn *in, enum alu op,
		  uint64_t src, x86_rmw_fn fn)
{
	unsigned int size = in->opsize;
	uint64_t mask = size_mask(size), dst, res, cf = 0;

	src &= mask;
	if (op == ADC || op == SBB)
		cf = x86_get_cf(cpu);
	if (!in->mem) {
		dst = x86_reg_get(cpu, in->rm, size, in->rex);
		res = alu(op, dst, src, cf, mask);
		if (op != CMP && op != TEST)
			x86_reg_set(cpu, in->rm, size, in->rex, res);
	} else if (op == CMP || op == TEST) {
		dst = x86_read(cpu, x86_ea(cpu, in), size, in->seg);
		res = alu(op, dst, src, cf, mask);
	} else {
		struct alu_ctx c = { src, cf, mask };

		dst = x86_rmw_E(cpu, in, fn, &c);
		res = alu(op, dst, src, cf, mask);
	}
	alu_flags(cpu, op, size, res, dst, src, cf);
}

/* G op= E. */
INLINE void alu_G(struct x86_cpu *cpu, const struct x86_insn *in, enum alu op)
{
	unsigned int size = in->opsize;
	uint64_t mask = size_mask(size), src, dst, res, cf = 0;

	src = x86_get_E(cpu, in);
	if (op == ADC || op == SBB)
		cf = x86_get_cf(cpu);
	dst = x86_get_G(cpu, in);
	res = alu(op, dst, src, cf, mask);
	if (op != CMP)
		x86_set_G(cpu, in, res);
	alu_flags(cpu, op, size, res, dst, src, cf);
}

/* AL/AX/EAX/RAX op= imm. */
INLINE void alu_A(struct x86_cpu *cpu, const struct x86_insn *in, enum alu op)
{
	unsigned int size = in->opsize;
	uint64_t mask = size_mask(size), src = in->imm & mask, dst, res;
	uint64_t cf = 0;

	if (op == ADC || op == SBB)
		cf = x86_get_cf(cpu);
	dst = cpu->gpr[X86_RAX] & mask;
	res = alu(op, dst, src, cf, mask);
	if (op != CMP && op != TEST)
		x86_reg_set(cpu, X86_RAX, size, false, res);
	alu_flags(cpu, op, size, res, dst, src, cf);
}

#define ALU_HANDLERS(name, OP, FN)                                \
	static void op_##name##_Eb_Gb(struct x86_cpu *cpu,        \
				      const struct x86_insn *in)  \
	{                                                         \
		alu_E(cpu, in, OP, x86_get_G(cpu, in), FN);       \
	}                                                         \
	static void op_##name##_Ev_Gv(struct x86_cpu *cpu,        \
				      const struct x86_insn *in)  \
	{                                                         \
		alu_E(cpu, in, OP, x86_get_G(cpu, in), FN);       \
	}                                                         \
	static void op_##name##_Gb_Eb(struct x86_cpu *cpu,        \
				      const struct x86_insn *in)  \
	{                                                         \
		alu_G(cpu, in, OP);                               \
	}                                                         \
	static void op_##name##_Gv_Ev(struct x86_cpu *cpu,        \
				      const struct x86_insn *in)  \
	{                                                         \
		alu_G(cpu, in, OP);                               \
	}                                                         \
	static void op_##name##_AL_Ib(struct x86_cpu *cpu,        \
				      const struct x86_insn *in)  \
	{                                                         \
		alu_A(cpu, in, OP);                               \
	}                                                         \
	static void op_##name##_rAX_Iz(struct x86_cpu *cpu,       \
				       const struct x86_insn *in) \
	{                                                         \
		alu_A(cpu, in, OP);                               \
	}                                                         \
	static void op_##name##_Eb_Ib(struct x86_cpu *cpu,        \
				      const struct x86_insn *in)  \
	{                                                         \
		alu_E(cpu, in, OP, in->imm, FN);                  \
	}                                                         \
	static void op_##name##_Ev_Iz(struct x86_cpu *cpu,        \
				      const struct x86_insn *in)  \
	{                                                         \
		alu_E(cpu, in, OP, in->imm, FN);                  \
	}                                                         \
	static void op_##name##_Ev_Ib(struct x86_cpu *cpu,        \
				      const struct x86_insn *in)  \
	{                                                         \
		alu_E(cpu, in, OP, in->imm, FN);                  \
	}

ALU_HANDLERS(add, ADD, rmw_add)
ALU_HANDLERS(or, OR, rmw_or)
ALU_HANDLERS(adc, ADC, rmw_adc)
ALU_HANDLERS(sbb, SBB, rmw_sbb)
ALU_HANDLERS(and, AND, rmw_and)
ALU_HANDLERS(sub, SUB, rmw_sub)
ALU_HANDLERS(xor, XOR, rmw_xor)
ALU_HANDLERS(cmp, CMP, NULL)

static void op_test_Eb_Gb(struct x86_cpu *cpu, const struct x86_insn *in)
{
	alu_E(cpu, in, TEST, x86_get_G(cpu, in), NULL);
}

static void op_test_Ev_Gv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	alu_E(cpu, in, TEST, x86_get_G(cpu, in), NULL);
}

static void op_test_AL_Ib(struct x86_cpu *cpu, const struct x86_insn *in)
{
	alu_A(cpu, in, TEST);
}

static void op_test_rAX_Iz(struct x86_cpu *cpu, const struct x86_insn *in)
{
	alu_A(cpu, in, TEST);
}

static void op_test_Eb_Ib(struct x86_cpu *cpu, const struct x86_insn *in)
{
	alu_E(cpu, in, TEST, in->imm, NULL);
}

static void op_test_Ev_Iz(struct x86_cpu *cpu, const struct x86_insn *in)
{
	alu_E(cpu, in, TEST, in->imm, NULL);
}

/* ---- NOT NEG INC DEC ------------------------------------------------- */

static uint64_t rmw_not(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	(void)cpu;
	return ~old & *(const uint64_t *)ctx;
}

static uint64_t rmw_neg(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	(void)cpu;
	return -old & *(const uint64_t *)ctx;
}

static uint64_t rmw_inc(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	(void)cpu;
	return (old + 1) & *(const uint64_t *)ctx;
}

static uint64_t rmw_dec(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	(void)cpu;
	return (old - 1) & *(const uint64_t *)ctx;
}

static void op_not_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t mask = size_mask(in->opsize);

	x86_rmw_E(cpu, in, rmw_not, &mask);
}

static void op_neg_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t mask = size_mask(in->opsize);
	uint64_t old = x86_rmw_E(cpu, in, rmw_neg, &mask);

	x86_lf_set(&cpu->lf, X86_LF_NEG, in->opsize, -old & mask, old, 0);
}

static void op_inc_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t mask = size_mask(in->opsize), old, cf = x86_get_cf(cpu);

	if (!in->mem) {
		old = x86_reg_get(cpu, in->rm, in->opsize, in->rex);
		x86_reg_set(cpu, in->rm, in->opsize, in->rex, old + 1);
	} else {
		old = x86_rmw_E(cpu, in, rmw_inc, &mask);
	}
	x86_lf_set_c(&cpu->lf, X86_LF_INC, in->opsize, (old + 1) & mask, old, 1,
		     cf);
}

static void op_dec_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t mask = size_mask(in->opsize), old, cf = x86_get_cf(cpu);

	if (!in->mem) {
		old = x86_reg_get(cpu, in->rm, in->opsize, in->rex);
		x86_reg_set(cpu, in->rm, in->opsize, in->rex, old - 1);
	} else {
		old = x86_rmw_E(cpu, in, rmw_dec, &mask);
	}
	x86_lf_set_c(&cpu->lf, X86_LF_DEC, in->opsize, (old - 1) & mask, old, 1,
		     cf);
}

/* ---- MUL IMUL DIV IDIV ----------------------------------------------- */

/* MUL/IMUL: CF = OF = the high half was needed; SF ZF AF PF kept. */
static void mul_flags(struct x86_cpu *cpu, bool overflow)
{
	uint64_t *f = flags_now(cpu);

	*f = (*f & ~(CF | OF)) | (overflow ? CF | OF : 0);
}

/* DIV/IDIV: all six undefined; the host keeps CF and OF, clears SF ZF
 * PF and sets AF. */
static void div_flags(struct x86_cpu *cpu)
{
	uint64_t *f = flags_now(cpu);

	*f = (*f & ~(SF | ZF | PF)) | AF;
}

static void op_mul_Eb(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t r = (cpu->gpr[X86_RAX] & 0xff) * x86_get_E(cpu, in);

	x86_reg_set(cpu, X86_RAX, 2, false, r);
	mul_flags(cpu, r > 0xff);
}

static void op_imul_Eb(struct x86_cpu *cpu, const struct x86_insn *in)
{
	int64_t r = (int64_t)(int8_t)cpu->gpr[X86_RAX] *
		    (int64_t)(int8_t)x86_get_E(cpu, in);

	x86_reg_set(cpu, X86_RAX, 2, false, (uint64_t)r);
	mul_flags(cpu, r != (int8_t)r);
}

static void op_mul_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->opsize;
	uint64_t src = x86_get_E(cpu, in), a = cpu->gpr[X86_RAX], lo, hi;

	if (size == 8) {
		unsigned __int128 p = (unsigned __int128)a * src;

		lo = (uint64_t)p;
		hi = (uint64_t)(p >> 64);
	} else {
		uint64_t p = (a & size_mask(size)) * src;

		lo = p;
		hi = p >> (size * 8);
	}
	x86_reg_set(cpu, X86_RAX, size, false, lo);
	x86_reg_set(cpu, X86_RDX, size, false, hi);
	mul_flags(cpu, (hi & size_mask(size)) != 0);
}

static void op_imul_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->opsize;
	uint64_t src = x86_get_E(cpu, in), a = cpu->gpr[X86_RAX], lo, hi;
	bool overflow;

	if (size == 8) {
		__int128 p = (__int128)(int64_t)a * (int64_t)src;

		lo = (uint64_t)p;
		hi = (uint64_t)(p >> 64);
		overflow = p != (int64_t)lo;
	} else {
		int64_t p = (int64_t)x86_sext(a, size) *
			    (int64_t)x86_sext(src, size);

		lo = (uint64_t)p;
		hi = (uint64_t)(p >> (size * 8));
		overflow = p != (int64_t)x86_sext(lo, size);
	}
	x86_reg_set(cpu, X86_RAX, size, false, lo);
	x86_reg_set(cpu, X86_RDX, size, false, hi);
	mul_flags(cpu, overflow);
}

/* G = a * b truncated, for the two- and three-operand IMUL. */
static void imul_to_G(struct x86_cpu *cpu, const struct x86_insn *in,
		      uint64_t a, uint64_t b)
{
	unsigned int size = in->opsize;
	uint64_t res;
	bool overflow;

	if (size == 8) {
		__int128 p = (__int128)(int64_t)a * (int64_t)b;

		res = (uint64_t)p;
		overflow = p != (int64_t)res;
	} else {
		int64_t p =
			(int64_t)x86_sext(a, size) * (int64_t)x86_sext(b, size);

		res = (uint64_t)p;
		overflow = p != (int64_t)x86_sext(res, size);
	}
	x86_set_G(cpu, in, res);
	mul_flags(cpu, overflow);
}

static void op_imul_Gv_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t src = x86_get_E(cpu, in);

	imul_to_G(cpu, in, x86_get_G(cpu, in), src);
}

static void op_imul_Gv_Ev_Iz(struct x86_cpu *cpu, const struct x86_insn *in)
{
	imul_to_G(cpu, in, x86_get_E(cpu, in), in->imm);
}

static void op_imul_Gv_Ev_Ib(struct x86_cpu *cpu, const struct x86_insn *in)
{
	imul_to_G(cpu, in, x86_get_E(cpu, in), in->imm);
}

static void op_div_Eb(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t d = x86_get_E(cpu, in), n = cpu->gpr[X86_RAX] & 0xffff, q;

	if (!d)
		x86_raise(cpu, X86_DE, 0);
	q = n / d;
	if (q > 0xff)
		x86_raise(cpu, X86_DE, 0);
	x86_reg_set(cpu, X86_RAX, 2, false, ((n % d) << 8) | q);
	div_flags(cpu);
}

static void op_idiv_Eb(struct x86_cpu *cpu, const struct x86_insn *in)
{
	int64_t d = (int8_t)x86_get_E(cpu, in);
	int64_t n = (int16_t)cpu->gpr[X86_RAX], q;

	if (!d)
		x86_raise(cpu, X86_DE, 0);
	q = n / d;
	if (q != (int8_t)q)
		x86_raise(cpu, X86_DE, 0);
	x86_reg_set(cpu, X86_RAX, 2, false,
		    (((uint64_t)(n % d) & 0xff) << 8) | ((uint64_t)q & 0xff));
	div_flags(cpu);
}

static void op_div_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->opsize;
	uint64_t mask = size_mask(size), d = x86_get_E(cpu, in);
	uint64_t lo = cpu->gpr[X86_RAX] & mask, hi = cpu->gpr[X86_RDX] & mask;
	uint64_t q, r;

	/* The quotient fits iff the high half is below the divisor; that
	 * also rules out a zero divisor. */
	if (hi >= d)
		x86_raise(cpu, X86_DE, 0);
	if (size == 8) {
		unsigned __int128 n = ((unsigned __int128)hi << 64) | lo;

		q = (uint64_t)(n / d);
		r = (uint64_t)(n % d);
	} else {
		uint64_t n = (hi << (size * 8)) | lo;

		q = n / d;
		r = n % d;
	}
	x86_reg_set(cpu, X86_RAX, size, false, q);
	x86_reg_set(cpu, X86_RDX, size, false, r);
	div_flags(cpu);
}

static void op_idiv_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->opsize;
	uint64_t mask = size_mask(size), src = x86_get_E(cpu, in);
	uint64_t lo = cpu->gpr[X86_RAX] & mask, hi = cpu->gpr[X86_RDX] & mask;
	int64_t d = (int64_t)x86_sext(src, size), q, r;

	if (!d)
		x86_raise(cpu, X86_DE, 0);
	if (size == 8) {
		__int128 n = (__int128)(((unsigned __int128)hi << 64) | lo);
		__int128 q128;

		/* -2^127 / -1 overflows the host's division too. */
		if (d == -1 && hi == 1ULL << 63 && !lo)
			x86_raise(cpu, X86_DE, 0);
		q128 = n / d;
		if (q128 != (int64_t)q128)
			x86_raise(cpu, X86_DE, 0);
		q = (int64_t)q128;
		r = (int64_t)(n % d);
	} else {
		int64_t n = (int64_t)((hi << (size * 8)) | lo);

		if (size == 2)
			n = (int32_t)n;
		if (d == -1 && n == INT64_MIN)
			x86_raise(cpu, X86_DE, 0);
		q = n / d;
		r = n % d;
		if (q != (int64_t)x86_sext((uint64_t)q, size))
			x86_raise(cpu, X86_DE, 0);
	}
	x86_reg_set(cpu, X86_RAX, size, false, (uint64_t)q);
	x86_reg_set(cpu, X86_RDX, size, false, (uint64_t)r);
	div_flags(cpu);
}

/* ---- shifts and rotates ---------------------------------------------- */

/*
 * A shift or rotate by a (masked) count of 0 changes neither flags nor
 * value, yet the host still writes a 32-bit register (zeroing its upper
 * half) and faults on a memory operand it may not write: it is accessed
 * for writing, value unchanged.
 */
static void unchanged_E(struct x86_cpu *cpu, const struct x86_insn *in)
{
	gva_t la;

	if (!in->mem) {
		x86_reg_set(cpu, in->rm, in->opsize, in->rex,
			    x86_reg_get(cpu, in->rm, in->opsize, in->rex));
		return;
	}
	la = x86_ea(cpu, in);
	x86_probe_write(cpu, la, in->opsize, in->seg);
	x86_read(cpu, la, in->opsize, in->seg);
}

/* ModRM.reg order of the C0/C1/D0-D3 groups (6 is SAL = SHL). */
enum shift { ROL, ROR, RCL, RCR, SHL, SHR, SAL, SAR };

/* v (truncated) by a masked, nonzero count; *cf gets the new CF. */
INLINE uint64_t shift(enum shift op, unsigned int size, uint64_t v,
		      unsigned int count, uint64_t cf_in, uint64_t *cf)
{
	unsigned int w = size * 8, c;
	uint64_t mask = size_mask(size), res;

	switch (op) {
	case ROL:
		c = count & (w - 1);
		res = c ? ((v << c) | (v >> (w - c))) & mask : v;
		*cf = res & 1;
		return res;
	case ROR:
		c = count & (w - 1);
		res = c ? ((v >> c) | (v << (w - c))) & mask : v;
		*cf = res >> (w - 1);
		return res;
	case RCL:
	case RCR: {
		/* Rotate the (w + 1)-bit value CF:v. */
		unsigned __int128 x = ((unsigned __int128)cf_in << w) | v;
		unsigned __int128 m = ((unsigned __int128)1 << (w + 1)) - 1;

		c = size >= 4 ? count : count % (w + 1);
		if (c && op == RCL)
			x = ((x << c) | (x >> (w + 1 - c))) & m;
		else if (c)
			x = ((x >> c) | (x << (w + 1 - c))) & m;
		*cf = (uint64_t)(x >> w) & 1;
		return (uint64_t)x & mask;
	}
	case SHL:
	case SAL:
		*cf = count <= w ? (v >> (w - count)) & 1 : 0;
		return (v << count) & mask;
	case SHR:
		*cf = (v >> (count - 1)) & 1;
		return v >> count;
	default: { /* SAR */
		int64_t sv = (int64_t)x86_sext(v, size);

		*cf = (uint64_t)(sv >> (count - 1)) & 1;
		return (uint64_t)(sv >> count) & mask;
	}
	}
}

INLINE void shift_flags(struct x86_cpu *cpu, enum shift op, unsigned int size,
			uint64_t res, uint64_t src, uint64_t cf)
{
	uint64_t *f, of;

	switch (op) {
	case SHL:
	case SAL:
		x86_lf_set_c(&cpu->lf, X86_LF_SHL, size, res, src, 0, cf);
		return;
	case SHR:
		x86_lf_set_c(&cpu->lf, X86_LF_SHR, size, res, src, 0, cf);
		return;
	case SAR:
		x86_lf_set_c(&cpu->lf, X86_LF_SAR, size, res, src, 0, cf);
		return;
	case ROL:
	case RCL:
		of = msb(res, size) ^ cf;
		break;
	default: /* ROR, RCR */
		of = msb(res ^ (res << 1), size);
		break;
	}
	/* Rotates change only CF and OF. */
	f = flags_now(cpu);
	*f = (*f & ~(CF | OF)) | cf | (of << 11);
}

struct shift_ctx {
	enum shift op;
	unsigned int size, count;
	uint64_t cf_in;
};

static uint64_t rmw_shift(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	const struct shift_ctx *c = ctx;
	uint64_t cf;

	(void)cpu;
	return shift(c->op, c->size, old, c->count, c->cf_in, &cf);
}

INLINE void shift_E(struct x86_cpu *cpu, const struct x86_insn *in,
		    enum shift op, unsigned int count)
{
	unsigned int size = in->opsize;
	uint64_t v, res, cf, cf_in = 0;

	count &= size == 8 ? 63 : 31;
	if (!count) {
		unchanged_E(cpu, in);
		return;
	}
	if (op == RCL || op == RCR)
		cf_in = x86_get_cf(cpu);
	if (!in->mem) {
		v = x86_reg_get(cpu, in->rm, size, in->rex);
		res = shift(op, size, v, count, cf_in, &cf);
		x86_reg_set(cpu, in->rm, size, in->rex, res);
	} else {
		struct shift_ctx c = { op, size, count, cf_in };

		v = x86_rmw_E(cpu, in, rmw_shift, &c);
		res = shift(op, size, v, count, cf_in, &cf);
	}
	shift_flags(cpu, op, size, res, v, cf);
}

#define SHIFT_HANDLERS(name, OP)                                       \
	static void op_##name##_Eb_1(struct x86_cpu *cpu,              \
				     const struct x86_insn *in)        \
	{                                                              \
		shift_E(cpu, in, OP, 1);                               \
	}                                                              \
	static void op_##name##_Ev_1(struct x86_cpu *cpu,              \
				     const struct x86_insn *in)        \
	{                                                              \
		shift_E(cpu, in, OP, 1);                               \
	}                                                              \
	static void op_##name##_Eb_CL(struct x86_cpu *cpu,             \
				      const struct x86_insn *in)       \
	{                                                              \
		shift_E(cpu, in, OP, (unsigned int)cpu->gpr[X86_RCX]); \
	}                                                              \
	static void op_##name##_Ev_CL(struct x86_cpu *cpu,             \
				      const struct x86_insn *in)       \
	{                                                              \
		shift_E(cpu, in, OP, (unsigned int)cpu->gpr[X86_RCX]); \
	}                                                              \
	static void op_##name##_Eb_Ib(struct x86_cpu *cpu,             \
				      const struct x86_insn *in)       \
	{                                                              \
		shift_E(cpu, in, OP, (unsigned int)in->imm);           \
	}                                                              \
	static void op_##name##_Ev_Ib(struct x86_cpu *cpu,             \
				      const struct x86_insn *in)       \
	{                                                              \
		shift_E(cpu, in, OP, (unsigned int)in->imm);           \
	}

SHIFT_HANDLERS(rol, ROL)
SHIFT_HANDLERS(ror, ROR)
SHIFT_HANDLERS(rcl, RCL)
SHIFT_HANDLERS(rcr, RCR)
SHIFT_HANDLERS(shl, SHL)
SHIFT_HANDLERS(shr, SHR)
SHIFT_HANDLERS(sar, SAR)

/* ---- SHLD SHRD ------------------------------------------------------- */

struct shd_ctx {
	bool right;
	unsigned int size, count;
	uint64_t src;
};

/* dst shifted by count (masked, nonzero) with bits of src shifted in. */
static uint64_t shd(bool right, unsigned int size, uint64_t dst, uint64_t src,
		    unsigned int count, uint64_t *cf)
{
	unsigned int w = size * 8;
	uint64_t res;

	if (size == 2) {
		/* Counts 17..31 run on through a second copy of src. */
		uint64_t t;

		if (right) {
			t = (src << 32) | (src << 16) | dst;
			*cf = count > 16 ? 0 : (t >> (count - 1)) & 1;
			return (t >> count) & 0xffff;
		}
		t = (dst << 32) | (src << 16) | src;
		*cf = count > 16 ? 0 : (t >> (48 - count)) & 1;
		return (t >> (32 - count)) & 0xffff;
	}
	if (right) {
		*cf = (dst >> (count - 1)) & 1;
		res = (dst >> count) | (src << (w - count));
	} else {
		*cf = (dst >> (w - count)) & 1;
		res = (dst << count) | (src >> (w - count));
	}
	return res & size_mask(size);
}

static uint64_t rmw_shd(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	const struct shd_ctx *c = ctx;
	uint64_t cf;

	(void)cpu;
	return shd(c->right, c->size, old, c->src, c->count, &cf);
}

static void shd_E(struct x86_cpu *cpu, const struct x86_insn *in, bool right,
		  unsigned int count)
{
	unsigned int size = in->opsize;
	uint64_t src = x86_get_G(cpu, in), dst, res, cf;

	count &= size == 8 ? 63 : 31;
	if (!count) {
		unchanged_E(cpu, in);
		return;
	}
	if (!in->mem) {
		dst = x86_reg_get(cpu, in->rm, size, in->rex);
		res = shd(right, size, dst, src, count, &cf);
		x86_reg_set(cpu, in->rm, size, in->rex, res);
	} else {
		struct shd_ctx c = { right, size, count, src };

		dst = x86_rmw_E(cpu, in, rmw_shd, &c);
		res = shd(right, size, dst, src, count, &cf);
	}
	if (right)
		x86_lf_set_c(&cpu->lf, X86_LF_SHR, size, res, dst, 0, cf);
	else
		x86_lf_set_c(&cpu->lf, X86_LF_SHLD, size, res,
			     (dst << count) & size_mask(size), 0, cf);
}

static void op_shld_Ev_Gv_Ib(struct x86_cpu *cpu, const struct x86_insn *in)
{
	shd_E(cpu, in, false, (unsigned int)in->imm);
}

static void op_shld_Ev_Gv_CL(struct x86_cpu *cpu, const struct x86_insn *in)
{
	shd_E(cpu, in, false, (unsigned int)cpu->gpr[X86_RCX]);
}

static void op_shrd_Ev_Gv_Ib(struct x86_cpu *cpu, const struct x86_insn *in)
{
	shd_E(cpu, in, true, (unsigned int)in->imm);
}

static void op_shrd_Ev_Gv_CL(struct x86_cpu *cpu, const struct x86_insn *in)
{
	shd_E(cpu, in, true, (unsigned int)cpu->gpr[X86_RCX]);
}

/* ---- BT BTS BTR BTC -------------------------------------------------- */

enum bt { BT, BTS, BTR, BTC };

struct bt_ctx {
	enum bt op;
	uint64_t bit;
};

INLINE uint64_t bt_apply(enum bt op, uint64_t v, uint64_t bit)
{
	switch (op) {
	case BTS:
		return v | bit;
	case BTR:
		return v & ~bit;
	case BTC:
		return v ^ bit;
	default:
		return v;
	}
}

static uint64_t rmw_bt(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	const struct bt_ctx *c = ctx;

	(void)cpu;
	return bt_apply(c->op, old, c->bit);
}

/*
 * The bit index comes from a register (which, with a memory operand,
 * also selects the operand-sized word: SDM vol. 2, "BT", bit offset
 * -2^63..2^63-1 relative to the effective address) or from an
 * immediate taken modulo the operand width.
 */
INLINE void bt_E(struct x86_cpu *cpu, const struct x86_insn *in, enum bt op,
		 uint64_t index, bool reg_index)
{
	unsigned int size = in->opsize;
	unsigned int pos = (unsigned int)index & (size * 8 - 1);
	uint64_t bit = 1ULL << pos, v, *f;

	if (!in->mem) {
		v = x86_reg_get(cpu, in->rm, size, in->rex);
		if (op != BT)
			x86_reg_set(cpu, in->rm, size, in->rex,
				    bt_apply(op, v, bit));
	} else {
		gva_t la = x86_ea(cpu, in);

		if (reg_index) {
			bool fsgs = in->seg == X86_FS || in->seg == X86_GS;
			uint64_t base = fsgs ? cpu->seg[in->seg].base : 0;
			int64_t off = (int64_t)x86_sext(index, size);
			uint64_t ea =
				la - base +
				((uint64_t)(off >> 3) & ~(uint64_t)(size - 1));

			if (in->addrsize == 4)
				ea &= 0xffffffffULL;
			la = base + ea;
		}
		if (op == BT) {
			v = x86_read(cpu, la, size, in->seg);
		} else {
			struct bt_ctx c = { op, bit };

			v = x86_rmw(cpu, la, size, in->seg, in->lock, rmw_bt,
				    &c);
		}
	}
	f = flags_now(cpu);
	*f = (*f & ~CF) | ((v >> pos) & 1);
}

static void op_bt_Ev_Gv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bt_E(cpu, in, BT, x86_get_G(cpu, in), true);
}

static void op_bts_Ev_Gv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bt_E(cpu, in, BTS, x86_get_G(cpu, in), true);
}

static void op_btr_Ev_Gv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bt_E(cpu, in, BTR, x86_get_G(cpu, in), true);
}

static void op_btc_Ev_Gv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bt_E(cpu, in, BTC, x86_get_G(cpu, in), true);
}

static void op_bt_Ev_Ib(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bt_E(cpu, in, BT, in->imm, false);
}

static void op_bts_Ev_Ib(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bt_E(cpu, in, BTS, in->imm, false);
}

static void op_btr_Ev_Ib(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bt_E(cpu, in, BTR, in->imm, false);
}

static void op_btc_Ev_Ib(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bt_E(cpu, in, BTC, in->imm, false);
}

/* ---- SETcc CMOVcc ---------------------------------------------------- */

static void op_setcc_Eb(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_set_E(cpu, in, x86_cond(cpu, in->opcode & 0xf));
}

static void op_cmovcc_Gv_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	/* The source is read (and may fault) whatever the condition. */
	uint64_t v = x86_get_E(cpu, in);

	if (x86_cond(cpu, in->opcode & 0xf))
		x86_set_G(cpu, in, v);
	else if (in->opsize == 4)
		cpu->gpr[in->reg] &= 0xffffffffULL;
}

/* ---- flag instructions ----------------------------------------------- */

static void op_clc(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	*flags_now(cpu) &= ~CF;
}

static void op_stc(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	*flags_now(cpu) |= CF;
}

static void op_cmc(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	*flags_now(cpu) ^= CF;
}

/* DF is not an arithmetic flag: cpu->rflags holds it even while lazy. */
static void op_cld(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	cpu->rflags &= ~DF;
}

static void op_std(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	cpu->rflags |= DF;
}

static void op_lahf(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	x86_reg_set(cpu, 4, 1, false,
		    (x86_rflags(cpu) & (SF | ZF | AF | PF | CF)) |
			    X86_RFLAGS_FIXED);
}

static void op_sahf(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t *f = flags_now(cpu), ah = cpu->gpr[X86_RAX] >> 8;

	(void)in;
	*f = (*f & ~(SF | ZF | AF | PF | CF)) | (ah & (SF | ZF | AF | PF | CF));
}

/* ---- CBW CWD BSWAP --------------------------------------------------- */

static void op_cbw(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->opsize;

	x86_reg_set(cpu, X86_RAX, size, false,
		    x86_sext(cpu->gpr[X86_RAX], size / 2));
}

static void op_cwd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->opsize;

	x86_reg_set(cpu, X86_RDX, size, false, -msb(cpu->gpr[X86_RAX], size));
}

static void op_bswap_Zv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v = cpu->gpr[in->reg];

	switch (in->opsize) {
	case 8:
		cpu->gpr[in->reg] = __builtin_bswap64(v);
		break;
	case 4:
		cpu->gpr[in->reg] = __builtin_bswap32((uint32_t)v);
		break;
	default:
		/* Undefined in the SDM; the host clears the low word. */
		cpu->gpr[in->reg] = v & ~0xffffULL;
		break;
	}
}

/* ---- the opcode table ------------------------------------------------ */

#define M X86_D_MODRM
#define B X86_D_BYTE
#define L X86_D_LOCK
#define ANY X86_GROUP_ANY
#define F(op) (X86_MAP_0F | (op))

#define ALU_ENTRIES(base, grp, name, lk)                                            \
	{                                                                           \
		(base) + 0,	   ANY,	 X86_IMM_NONE, M | B | (lk),                \
		op_##name##_Eb_Gb, #name                                            \
	},                                                                          \
		{ (base) + 1,	     ANY,  X86_IMM_NONE, M | (lk),                  \
		  op_##name##_Ev_Gv, #name },                                       \
		{ (base) + 2, ANY, X86_IMM_NONE, M | B, op_##name##_Gb_Eb, #name }, \
		{ (base) + 3, ANY, X86_IMM_NONE, M, op_##name##_Gv_Ev, #name },     \
		{ (base) + 4, ANY, X86_IMM_B, B, op_##name##_AL_Ib, #name },        \
		{ (base) + 5, ANY, X86_IMM_Z, 0, op_##name##_rAX_Iz, #name },       \
		{ 0x80, grp, X86_IMM_B, M | B | (lk), op_##name##_Eb_Ib, #name },   \
		{ 0x81, grp, X86_IMM_Z, M | (lk), op_##name##_Ev_Iz, #name },       \
	{                                                                           \
		0x83, grp, X86_IMM_SB, M | (lk), op_##name##_Ev_Ib, #name           \
	}

#define SHIFT_ENTRIES(grp, name, fn)                                        \
	{ 0xc0, grp, X86_IMM_B, M | B, op_##fn##_Eb_Ib, #name },            \
		{ 0xc1, grp, X86_IMM_B, M, op_##fn##_Ev_Ib, #name },        \
		{ 0xd0, grp, X86_IMM_NONE, M | B, op_##fn##_Eb_1, #name },  \
		{ 0xd1, grp, X86_IMM_NONE, M, op_##fn##_Ev_1, #name },      \
		{ 0xd2, grp, X86_IMM_NONE, M | B, op_##fn##_Eb_CL, #name }, \
	{                                                                   \
		0xd3, grp, X86_IMM_NONE, M, op_##fn##_Ev_CL, #name          \
	}

#define CC_ENTRIES(base, fn, flags, name)                             \
	{ (base) + 0x0, ANY, X86_IMM_NONE, flags, fn, name },         \
		{ (base) + 0x1, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0x2, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0x3, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0x4, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0x5, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0x6, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0x7, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0x8, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0x9, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0xa, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0xb, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0xc, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0xd, ANY, X86_IMM_NONE, flags, fn, name }, \
		{ (base) + 0xe, ANY, X86_IMM_NONE, flags, fn, name }, \
	{                                                             \
		(base) + 0xf, ANY, X86_IMM_NONE, flags, fn, name      \
	}

const struct x86_opdesc x86_ops_alu[] = {
	ALU_ENTRIES(0x00, 0, add, L),
	ALU_ENTRIES(0x08, 1, or, L),
	ALU_ENTRIES(0x10, 2, adc, L),
	ALU_ENTRIES(0x18, 3, sbb, L),
	ALU_ENTRIES(0x20, 4, and, L),
	ALU_ENTRIES(0x28, 5, sub, L),
	ALU_ENTRIES(0x30, 6, xor, L),
	ALU_ENTRIES(0x38, 7, cmp, 0),

	{ 0x84, ANY, X86_IMM_NONE, M | B, op_test_Eb_Gb, "test" },
	{ 0x85, ANY, X86_IMM_NONE, M, op_test_Ev_Gv, "test" },
	{ 0xa8, ANY, X86_IMM_B, B, op_test_AL_Ib, "test" },
	{ 0xa9, ANY, X86_IMM_Z, 0, op_test_rAX_Iz, "test" },

	/* F6/F7: /1 is an alias of TEST on Intel and AMD alike. */
	{ 0xf6, 0, X86_IMM_B, M | B, op_test_Eb_Ib, "test" },
	{ 0xf6, 1, X86_IMM_B, M | B, op_test_Eb_Ib, "test" },
	{ 0xf6, 2, X86_IMM_NONE, M | B | L, op_not_Ev, "not" },
	{ 0xf6, 3, X86_IMM_NONE, M | B | L, op_neg_Ev, "neg" },
	{ 0xf6, 4, X86_IMM_NONE, M | B, op_mul_Eb, "mul" },
	{ 0xf6, 5, X86_IMM_NONE, M | B, op_imul_Eb, "imul" },
	{ 0xf6, 6, X86_IMM_NONE, M | B, op_div_Eb, "div" },
	{ 0xf6, 7, X86_IMM_NONE, M | B, op_idiv_Eb, "idiv" },
	{ 0xf7, 0, X86_IMM_Z, M, op_test_Ev_Iz, "test" },
	{ 0xf7, 1, X86_IMM_Z, M, op_test_Ev_Iz, "test" },
	{ 0xf7, 2, X86_IMM_NONE, M | L, op_not_Ev, "not" },
	{ 0xf7, 3, X86_IMM_NONE, M | L, op_neg_Ev, "neg" },
	{ 0xf7, 4, X86_IMM_NONE, M, op_mul_Ev, "mul" },
	{ 0xf7, 5, X86_IMM_NONE, M, op_imul_Ev, "imul" },
	{ 0xf7, 6, X86_IMM_NONE, M, op_div_Ev, "div" },
	{ 0xf7, 7, X86_IMM_NONE, M, op_idiv_Ev, "idiv" },

	{ 0xfe, 0, X86_IMM_NONE, M | B | L, op_inc_Ev, "inc" },
	{ 0xfe, 1, X86_IMM_NONE, M | B | L, op_dec_Ev, "dec" },
	{ 0xff, 0, X86_IMM_NONE, M | L, op_inc_Ev, "inc" },
	{ 0xff, 1, X86_IMM_NONE, M | L, op_dec_Ev, "dec" },

	{ F(0xaf), ANY, X86_IMM_NONE, M, op_imul_Gv_Ev, "imul" },
	{ 0x69, ANY, X86_IMM_Z, M, op_imul_Gv_Ev_Iz, "imul" },
	{ 0x6b, ANY, X86_IMM_SB, M, op_imul_Gv_Ev_Ib, "imul" },

	SHIFT_ENTRIES(0, rol, rol),
	SHIFT_ENTRIES(1, ror, ror),
	SHIFT_ENTRIES(2, rcl, rcl),
	SHIFT_ENTRIES(3, rcr, rcr),
	SHIFT_ENTRIES(4, shl, shl),
	SHIFT_ENTRIES(5, shr, shr),
	SHIFT_ENTRIES(6, sal, shl),
	SHIFT_ENTRIES(7, sar, sar),

	{ F(0xa4), ANY, X86_IMM_B, M, op_shld_Ev_Gv_Ib, "shld" },
	{ F(0xa5), ANY, X86_IMM_NONE, M, op_shld_Ev_Gv_CL, "shld" },
	{ F(0xac), ANY, X86_IMM_B, M, op_shrd_Ev_Gv_Ib, "shrd" },
	{ F(0xad), ANY, X86_IMM_NONE, M, op_shrd_Ev_Gv_CL, "shrd" },

	{ F(0xa3), ANY, X86_IMM_NONE, M, op_bt_Ev_Gv, "bt" },
	{ F(0xab), ANY, X86_IMM_NONE, M | L, op_bts_Ev_Gv, "bts" },
	{ F(0xb3), ANY, X86_IMM_NONE, M | L, op_btr_Ev_Gv, "btr" },
	{ F(0xbb), ANY, X86_IMM_NONE, M | L, op_btc_Ev_Gv, "btc" },
	{ F(0xba), 4, X86_IMM_B, M, op_bt_Ev_Ib, "bt" },
	{ F(0xba), 5, X86_IMM_B, M | L, op_bts_Ev_Ib, "bts" },
	{ F(0xba), 6, X86_IMM_B, M | L, op_btr_Ev_Ib, "btr" },
	{ F(0xba), 7, X86_IMM_B, M | L, op_btc_Ev_Ib, "btc" },

	CC_ENTRIES(F(0x90), op_setcc_Eb, M | B, "setcc"),
	CC_ENTRIES(F(0x40), op_cmovcc_Gv_Ev, M, "cmovcc"),

	{ 0xf8, ANY, X86_IMM_NONE, 0, op_clc, "clc" },
	{ 0xf9, ANY, X86_IMM_NONE, 0, op_stc, "stc" },
	{ 0xf5, ANY, X86_IMM_NONE, 0, op_cmc, "cmc" },
	{ 0xfc, ANY, X86_IMM_NONE, 0, op_cld, "cld" },
	{ 0xfd, ANY, X86_IMM_NONE, 0, op_std, "std" },
	{ 0x9f, ANY, X86_IMM_NONE, 0, op_lahf, "lahf" },
	{ 0x9e, ANY, X86_IMM_NONE, 0, op_sahf, "sahf" },
	{ 0x98, ANY, X86_IMM_NONE, 0, op_cbw, "cbw" },
	{ 0x99, ANY, X86_IMM_NONE, 0, op_cwd, "cwd" },

	{ F(0xc8), ANY, X86_IMM_NONE, X86_D_OPREG, op_bswap_Zv, "bswap" },
	{ F(0xc9), ANY, X86_IMM_NONE, X86_D_OPREG, op_bswap_Zv, "bswap" },
	{ F(0xca), ANY, X86_IMM_NONE, X86_D_OPREG, op_bswap_Zv, "bswap" },
	{ F(0xcb), ANY, X86_IMM_NONE, X86_D_OPREG, op_bswap_Zv, "bswap" },
	{ F(0xcc), ANY, X86_IMM_NONE, X86_D_OPREG, op_bswap_Zv, "bswap" },
	{ F(0xcd), ANY, X86_IMM_NONE, X86_D_OPREG, op_bswap_Zv, "bswap" },
	{ F(0xce), ANY, X86_IMM_NONE, X86_D_OPREG, op_bswap_Zv, "bswap" },
	{ F(0xcf), ANY, X86_IMM_NONE, X86_D_OPREG, op_bswap_Zv, "bswap" },

	{ 0, 0, 0, 0, NULL, NULL },
};
