/*
 * Handlers specialised at decode time for the hottest instruction forms
 * (docs/BENCHMARKS.md, "Interpreter costs by phase — bench/cpu.c"):
 * ALU operations, MOVs and LEA at 32 and 64 bits, INC/DEC of a register,
 * and a flag-writing instruction fused with the Jcc that ends its block.
 * Each does exactly what the generic handler of its opcode does for that
 * form (exec_alu.c, exec_mov.c, exec_flow.c) with the operand size and
 * direction fixed, so the run loop may use either. The register forms
 * cannot fault, except a fused Jcc to a non-canonical target, which
 * retires the flag-writing half and raises #GP at the Jcc as the pair run
 * one by one would; the memory forms (MOV loads and stores, ALU with a
 * memory source) fault exactly as the generic handlers do, through
 * x86_read()/x86_write().
 *
 * x86_specialise() rewrites a block's handlers after it is decoded. A
 * flag-writing instruction whose flags the block itself overwrites before
 * anything can read them (every instruction in between being one of these
 * forms that neither reads flags nor faults) gets a variant that does not
 * record them: the flags are dead. Dead flags and fused pairs are only
 * safe when nothing can stop between the two instructions, so the run
 * loop uses the specialised handlers only for a block that starts with no
 * interrupt shadow or pending interrupt line and within the instruction
 * budget, and the generic ones (desc->fn) otherwise (cpu.c, x86_run()).
 */
#include "x86_int.h"

#define INLINE static inline __attribute__((always_inline))

enum fop { F_ADD, F_OR, F_AND, F_SUB, F_XOR, F_CMP, F_TEST };

INLINE uint64_t fmask(unsigned int size)
{
	return size == 8 ? ~0ULL : size == 4 ? 0xffffffffULL : 0xffULL;
}

INLINE uint64_t fcompute(enum fop op, uint64_t a, uint64_t b, uint64_t m)
{
	switch (op) {
	case F_ADD:
		return (a + b) & m;
	case F_OR:
		return a | b;
	case F_AND:
	case F_TEST:
		return a & b;
	case F_XOR:
		return a ^ b;
	default: /* F_SUB, F_CMP */
		return (a - b) & m;
	}
}

INLINE void frecord(struct x86_cpu *cpu, enum fop op, unsigned int size,
		    uint64_t r, uint64_t a, uint64_t b)
{
	switch (op) {
	case F_ADD:
		x86_lf_set(&cpu->lf, X86_LF_ADD, size, r, a, b);
		break;
	case F_SUB:
	case F_CMP:
		x86_lf_set(&cpu->lf, X86_LF_SUB, size, r, a, b);
		break;
	default:
		x86_lf_set(&cpu->lf, X86_LF_LOGIC, size, r, a, b);
		break;
	}
}

/*
 * The operands of each form: EG, E (ModRM.rm) op= G (ModRM.reg), opcodes
 * 01 09 21 29 31 39 85; GE, G op= E, opcodes 03 0B 23 2B 33 3B; EI,
 * E op= imm, 81 and 83. dst is the register written (none for CMP and
 * TEST). GM is GE with a memory source. MG and MI are CMP and TEST of a
 * memory E with G (39 85) or an immediate (81 83 F7 /0; 80 /7 and F6 /0
 * at 8 bits): they only read memory.
 */
enum fform { EG, GE, EI, GM, MG, MI };

/* What a flag writer just computed, for the Jcc fused after it. */
struct fres {
	uint64_t r, a, b;
};

INLINE struct fres falu(struct x86_cpu *cpu, const struct x86_insn *in,
			enum fop op, enum fform form, unsigned int size,
			bool flags)
{
	uint64_t m = fmask(size), a, b, r;
	unsigned int dst = form == GE || form == GM ? in->reg : in->rm;

	if (form == MG || form == MI) {
		b = form == MI ? in->imm & m : cpu->gpr[in->reg] & m;
		a = x86_read(cpu, x86_ea(cpu, in), size, in->seg);
	} else {
		if (form == GM)
			b = x86_read(cpu, x86_ea(cpu, in), size, in->seg);
		else if (form == EI)
			b = in->imm & m;
		else
			b = cpu->gpr[form == GE ? in->rm : in->reg] & m;
		a = cpu->gpr[dst] & m;
	}
	r = fcompute(op, a, b, m);
	if (op != F_CMP && op != F_TEST)
		cpu->gpr[dst] = r; /* a 32-bit result zero-extends */
	if (flags)
		frecord(cpu, op, size, r, a, b);
	return (struct fres){ r, a, b };
}

/* INC/DEC of a register (FF /0, FF /1): CF is kept. */
INLINE uint64_t fincdec(struct x86_cpu *cpu, const struct x86_insn *in,
			bool dec, unsigned int size, bool flags)
{
	uint64_t m = fmask(size), old = cpu->gpr[in->rm] & m;
	uint64_t r = (dec ? old - 1 : old + 1) & m;

	if (flags) {
		uint64_t cf = x86_get_cf(cpu);

		x86_lf_set_c(&cpu->lf, dec ? X86_LF_DEC : X86_LF_INC, size, r,
			     old, 1, cf);
	}
	cpu->gpr[in->rm] = r;
	return r;
}

/*
 * The Jcc after a fused flag writer (in + 1, the block's last): where
 * execution continues. A non-canonical target is #GP at the Jcc, with the
 * flag writer retired.
 */
INLINE void fjcc_taken(struct x86_cpu *cpu, const struct x86_insn *in,
		       bool taken)
{
	const struct x86_insn *j = in + 1;
	uint64_t next = cpu->next_rip + j->len;

	if (taken) {
		uint64_t target = next + j->imm;

		if (__builtin_expect(!x86_is_canonical(target), 0)) {
			cpu->retired++;
			cpu->rip = cpu->next_rip;
			cpu->next_rip = next;
			x86_raise(cpu, X86_GP, 0);
		}
		next = target;
	}
	/* The flag writer retires here; the run loop counts the Jcc. */
	cpu->retired++;
	cpu->next_rip = next;
}

INLINE void fjcc(struct x86_cpu *cpu, const struct x86_insn *in)
{
	fjcc_taken(cpu, in, x86_cond(cpu, (in + 1)->opcode & 0xf));
}

/*
 * The condition of the fused Jcc straight from what the flag writer
 * computed (flags.c derives the same from cpu->lf; SDM vol. 1, appendix
 * B, for what each condition tests): after SUB/CMP unsigned and signed
 * comparisons of the sources, after the logic ops CF = OF = 0, after
 * ADD a carry out when the result is below a source. The rest (O and P
 * mostly) from the recorded flags.
 */
INLINE bool fcond(struct x86_cpu *cpu, enum fop op, unsigned int size,
		  struct fres v, unsigned int cc)
{
	unsigned int top = size * 8 - 1, sh = 63 - top;
	bool zf = v.r == 0, sf = (v.r >> top) & 1, res;

	switch (op) {
	case F_SUB:
	case F_CMP:
		switch (cc >> 1) {
		case 1: /* B */
			res = v.a < v.b;
			break;
		case 2: /* Z */
			res = zf;
			break;
		case 3: /* BE */
			res = v.a <= v.b;
			break;
		case 4: /* S */
			res = sf;
			break;
		case 6: /* L */
			res = (int64_t)(v.a << sh) < (int64_t)(v.b << sh);
			break;
		case 7: /* LE */
			res = (int64_t)(v.a << sh) <= (int64_t)(v.b << sh);
			break;
		default:
			return x86_cond(cpu, cc);
		}
		break;
	case F_ADD:
		switch (cc >> 1) {
		case 1:
			res = v.r < v.a;
			break;
		case 2:
			res = zf;
			break;
		case 4:
			res = sf;
			break;
		default:
			return x86_cond(cpu, cc);
		}
		break;
	default: /* OR AND XOR TEST */
		switch (cc >> 1) {
		case 0: /* O */
		case 1: /* B */
			res = false;
			break;
		case 2: /* Z */
		case 3: /* BE */
			res = zf;
			break;
		case 4: /* S */
		case 6: /* L */
			res = sf;
			break;
		case 7: /* LE */
			res = zf || sf;
			break;
		default:
			return x86_cond(cpu, cc);
		}
		break;
	}
	return res ^ (cc & 1);
}

/* INC/DEC then its Jcc: Z and S from the result (DEC; JNZ loops). */
INLINE void fincdec_jcc(struct x86_cpu *cpu, const struct x86_insn *in,
			bool dec, unsigned int size)
{
	uint64_t r = fincdec(cpu, in, dec, size, true);
	unsigned int cc = (in + 1)->opcode & 0xf;
	bool t;

	if (cc >> 1 == 2)
		t = (r == 0) ^ (cc & 1);
	else if (cc >> 1 == 4)
		t = ((r >> (size * 8 - 1)) & 1) ^ (cc & 1);
	else
		t = x86_cond(cpu, cc);
	fjcc_taken(cpu, in, t);
}

INLINE void falu_jcc(struct x86_cpu *cpu, const struct x86_insn *in,
		     enum fop op, enum fform form, unsigned int size)
{
	struct fres v = falu(cpu, in, op, form, size, true);

	fjcc_taken(cpu, in, fcond(cpu, op, size, v, (in + 1)->opcode & 0xf));
}

#define FAST_ALU(name, op, form, size)                           \
	static void fast_##name(struct x86_cpu *cpu,             \
				const struct x86_insn *in)       \
	{                                                        \
		falu(cpu, in, op, form, size, true);             \
	}                                                        \
	static void fast_##name##_nf(struct x86_cpu *cpu,        \
				     const struct x86_insn *in)  \
	{                                                        \
		falu(cpu, in, op, form, size, false);            \
	}                                                        \
	static void fast_##name##_jcc(struct x86_cpu *cpu,       \
				      const struct x86_insn *in) \
	{                                                        \
		falu_jcc(cpu, in, op, form, size);               \
	}

#define FAST_ALU_FORMS(name, op)         \
	FAST_ALU(name##_eg32, op, EG, 4) \
	FAST_ALU(name##_eg64, op, EG, 8) \
	FAST_ALU(name##_ge32, op, GE, 4) \
	FAST_ALU(name##_ge64, op, GE, 8) \
	FAST_ALU(name##_ei32, op, EI, 4) \
	FAST_ALU(name##_ei64, op, EI, 8) \
	FAST_ALU(name##_gm32, op, GM, 4) \
	FAST_ALU(name##_gm64, op, GM, 8)

FAST_ALU_FORMS(add, F_ADD)
FAST_ALU_FORMS(or, F_OR)
FAST_ALU_FORMS(and, F_AND)
FAST_ALU_FORMS(sub, F_SUB)
FAST_ALU_FORMS(xor, F_XOR)
FAST_ALU_FORMS(cmp, F_CMP)
FAST_ALU(test_eg32, F_TEST, EG, 4)
FAST_ALU(test_eg64, F_TEST, EG, 8)
FAST_ALU(test_ei32, F_TEST, EI, 4)
FAST_ALU(test_ei64, F_TEST, EI, 8)
FAST_ALU(cmp_mg32, F_CMP, MG, 4)
FAST_ALU(cmp_mg64, F_CMP, MG, 8)
FAST_ALU(cmp_mi8, F_CMP, MI, 1)
FAST_ALU(cmp_mi32, F_CMP, MI, 4)
FAST_ALU(cmp_mi64, F_CMP, MI, 8)
FAST_ALU(test_mg32, F_TEST, MG, 4)
FAST_ALU(test_mg64, F_TEST, MG, 8)
FAST_ALU(test_mi8, F_TEST, MI, 1)
FAST_ALU(test_mi32, F_TEST, MI, 4)
FAST_ALU(test_mi64, F_TEST, MI, 8)

#define FAST_INCDEC(name, dec, size)                             \
	static void fast_##name(struct x86_cpu *cpu,             \
				const struct x86_insn *in)       \
	{                                                        \
		fincdec(cpu, in, dec, size, true);               \
	}                                                        \
	static void fast_##name##_nf(struct x86_cpu *cpu,        \
				     const struct x86_insn *in)  \
	{                                                        \
		fincdec(cpu, in, dec, size, false);              \
	}                                                        \
	static void fast_##name##_jcc(struct x86_cpu *cpu,       \
				      const struct x86_insn *in) \
	{                                                        \
		fincdec_jcc(cpu, in, dec, size);                 \
	}

FAST_INCDEC(inc32, false, 4)
FAST_INCDEC(inc64, false, 8)
FAST_INCDEC(dec32, true, 4)
FAST_INCDEC(dec64, true, 8)

/* MOV E, G (89) and MOV G, E (8B) between registers. */
static void fast_mov_eg64(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->rm] = cpu->gpr[in->reg];
}

static void fast_mov_eg32(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->rm] = (uint32_t)cpu->gpr[in->reg];
}

static void fast_mov_ge64(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->reg] = cpu->gpr[in->rm];
}

static void fast_mov_ge32(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->reg] = (uint32_t)cpu->gpr[in->rm];
}

/* MOV G, M (8B) and MOV M, G (89). */
static void fast_load64(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->reg] = x86_read(cpu, x86_ea(cpu, in), 8, in->seg);
}

static void fast_load32(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->reg] = x86_read(cpu, x86_ea(cpu, in), 4, in->seg);
}

static void fast_store64(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_write(cpu, x86_ea(cpu, in), 8, in->seg, cpu->gpr[in->reg]);
}

static void fast_store32(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_write(cpu, x86_ea(cpu, in), 4, in->seg,
		  (uint32_t)cpu->gpr[in->reg]);
}

/*
 * The same with the commonest address, [base + disp] with 64-bit
 * addressing and no FS/GS base (fast_form() picks these then): no index,
 * RIP or segment cases to test on the way.
 */
INLINE gva_t fea_bd(const struct x86_cpu *cpu, const struct x86_insn *in)
{
	return cpu->gpr[in->base] + (uint64_t)(int64_t)in->disp;
}

static void fast_load64_bd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->reg] = x86_read(cpu, fea_bd(cpu, in), 8, in->seg);
}

static void fast_load32_bd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->reg] = x86_read(cpu, fea_bd(cpu, in), 4, in->seg);
}

static void fast_store64_bd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_write(cpu, fea_bd(cpu, in), 8, in->seg, cpu->gpr[in->reg]);
}

static void fast_store32_bd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_write(cpu, fea_bd(cpu, in), 4, in->seg,
		  (uint32_t)cpu->gpr[in->reg]);
}

/* MOV r, imm (B8+r: reg) and MOV E, imm (C7 /0: rm). */
static void fast_mov_ri64(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->reg] = in->imm;
}

static void fast_mov_ri32(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->reg] = (uint32_t)in->imm;
}

static void fast_mov_ei64(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->rm] = in->imm;
}

static void fast_mov_ei32(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->rm] = (uint32_t)in->imm;
}

/* LEA with 64-bit addressing (8D; no segment base, SDM vol. 2, LEA). */
INLINE uint64_t flea(const struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t ea = (uint64_t)(int64_t)in->disp;

	if (in->base == X86_RIP_BASE)
		ea += cpu->next_rip;
	else if (in->base != X86_NO_REG)
		ea += cpu->gpr[in->base];
	if (in->index != X86_NO_REG)
		ea += cpu->gpr[in->index] << in->scale;
	return ea;
}

static void fast_lea64(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->reg] = flea(cpu, in);
}

static void fast_lea32(struct x86_cpu *cpu, const struct x86_insn *in)
{
	cpu->gpr[in->reg] = (uint32_t)flea(cpu, in);
}

/*
 * SHL, SHR and SAR of a register by an immediate (C1 /4 /5 /7; D1: by
 * one) whose masked count is not 0 (fast_form() sees to it: a count of 0
 * changes no flag). The flags as exec_alu.c records them: CF the last
 * bit shifted out, the rest from the result (x86_int.h, the lazy flags).
 */
enum fsh { SH_SHL, SH_SHR, SH_SAR };

INLINE void fshift(struct x86_cpu *cpu, const struct x86_insn *in, enum fsh op,
		   unsigned int size, bool one, bool flags)
{
	unsigned int w = size * 8;
	unsigned int c = one ? 1 : (unsigned int)in->imm & (w - 1);
	uint64_t m = fmask(size), v = cpu->gpr[in->rm] & m, r, cf;
	int64_t sv = size == 8 ? (int64_t)v : (int64_t)(int32_t)v;

	switch (op) {
	case SH_SHL:
		r = (v << c) & m;
		cf = (v >> (w - c)) & 1;
		break;
	case SH_SHR:
		r = v >> c;
		cf = (v >> (c - 1)) & 1;
		break;
	default:
		r = (uint64_t)(sv >> c) & m;
		cf = (uint64_t)(sv >> (c - 1)) & 1;
		break;
	}
	cpu->gpr[in->rm] = r;
	if (flags)
		x86_lf_set_c(&cpu->lf,
			     op == SH_SHL ? X86_LF_SHL :
			     op == SH_SHR ? X86_LF_SHR :
					    X86_LF_SAR,
			     size, r, v, 0, cf);
}

#define FAST_SHIFT(name, op, size, one)                          \
	static void fast_##name(struct x86_cpu *cpu,             \
				const struct x86_insn *in)       \
	{                                                        \
		fshift(cpu, in, op, size, one, true);            \
	}                                                        \
	static void fast_##name##_nf(struct x86_cpu *cpu,        \
				     const struct x86_insn *in)  \
	{                                                        \
		fshift(cpu, in, op, size, one, false);           \
	}                                                        \
	static void fast_##name##_jcc(struct x86_cpu *cpu,       \
				      const struct x86_insn *in) \
	{                                                        \
		fshift(cpu, in, op, size, one, true);            \
		fjcc(cpu, in);                                   \
	}

#define FAST_SHIFT_FORMS(name, op)           \
	FAST_SHIFT(name##_i32, op, 4, false) \
	FAST_SHIFT(name##_i64, op, 8, false) \
	FAST_SHIFT(name##_1_32, op, 4, true) \
	FAST_SHIFT(name##_1_64, op, 8, true)

FAST_SHIFT_FORMS(shl, SH_SHL)
FAST_SHIFT_FORMS(shr, SH_SHR)
FAST_SHIFT_FORMS(sar, SH_SAR)

/*
 * MOVZX and MOVSX Gv, Eb/Ew (0F B6 B7 BE BF) and MOVSXD Gv, Ed (63 with
 * REX.W): a source of ssz bytes from a register (8-bit: only one named
 * without AH..BH, fast_form() sees to it) or memory, zero- or
 * sign-extended into a 32- or 64-bit G. No flags.
 */
INLINE void fext(struct x86_cpu *cpu, const struct x86_insn *in,
		 unsigned int ssz, bool sx, bool mem, unsigned int dsz)
{
	uint64_t v = mem ? x86_read(cpu, x86_ea(cpu, in), ssz, in->seg) :
			   cpu->gpr[in->rm];

	v = sx ? x86_sext(v, ssz) : x86_trunc(v, ssz);
	cpu->gpr[in->reg] = dsz == 8 ? v : (uint32_t)v;
}

#define FAST_EXT(name, ssz, sx)                                  \
	static void fast_##name##_r32(struct x86_cpu *cpu,       \
				      const struct x86_insn *in) \
	{                                                        \
		fext(cpu, in, ssz, sx, false, 4);                \
	}                                                        \
	static void fast_##name##_r64(struct x86_cpu *cpu,       \
				      const struct x86_insn *in) \
	{                                                        \
		fext(cpu, in, ssz, sx, false, 8);                \
	}                                                        \
	static void fast_##name##_m32(struct x86_cpu *cpu,       \
				      const struct x86_insn *in) \
	{                                                        \
		fext(cpu, in, ssz, sx, true, 4);                 \
	}                                                        \
	static void fast_##name##_m64(struct x86_cpu *cpu,       \
				      const struct x86_insn *in) \
	{                                                        \
		fext(cpu, in, ssz, sx, true, 8);                 \
	}

FAST_EXT(movzxb, 1, false)
FAST_EXT(movzxw, 2, false)
FAST_EXT(movsxb, 1, true)
FAST_EXT(movsxw, 2, true)
FAST_EXT(movsxd, 4, true)

/*
 * IMUL Gv, Ev (0F AF) and IMUL Gv, Ev, imm (69, 6B) at 32 and 64 bits:
 * the truncated signed product, CF = OF = whether it lost bits; the other
 * arithmetic flags are kept, as exec_alu.c's mul_flags() keeps them.
 */
enum fim { IM_GE, IM_GM, IM_GEI };

INLINE void fimul(struct x86_cpu *cpu, const struct x86_insn *in, enum fim form,
		  unsigned int size, bool flags)
{
	uint64_t a, b, res;
	bool ov;

	if (form == IM_GEI) {
		a = cpu->gpr[in->rm];
		b = in->imm;
	} else {
		b = form == IM_GM ?
			    x86_read(cpu, x86_ea(cpu, in), size, in->seg) :
			    cpu->gpr[in->rm];
		a = cpu->gpr[in->reg];
	}
	if (size == 8) {
		__int128 p = (__int128)(int64_t)a * (int64_t)b;

		res = (uint64_t)p;
		ov = p != (int64_t)res;
	} else {
		int64_t p = (int64_t)(int32_t)a * (int64_t)(int32_t)b;

		res = (uint32_t)p;
		ov = p != (int64_t)(int32_t)res;
	}
	cpu->gpr[in->reg] = res;
	if (flags) {
		x86_rflags(cpu);
		cpu->rflags = (cpu->rflags & ~(X86_RFLAGS_CF | X86_RFLAGS_OF)) |
			      (ov ? X86_RFLAGS_CF | X86_RFLAGS_OF : 0);
	}
}

#define FAST_IMUL(name, form, size)                              \
	static void fast_##name(struct x86_cpu *cpu,             \
				const struct x86_insn *in)       \
	{                                                        \
		fimul(cpu, in, form, size, true);                \
	}                                                        \
	static void fast_##name##_nf(struct x86_cpu *cpu,        \
				     const struct x86_insn *in)  \
	{                                                        \
		fimul(cpu, in, form, size, false);               \
	}                                                        \
	static void fast_##name##_jcc(struct x86_cpu *cpu,       \
				      const struct x86_insn *in) \
	{                                                        \
		fimul(cpu, in, form, size, true);                \
		fjcc(cpu, in);                                   \
	}

FAST_IMUL(imul_ge32, IM_GE, 4)
FAST_IMUL(imul_ge64, IM_GE, 8)
FAST_IMUL(imul_gm32, IM_GM, 4)
FAST_IMUL(imul_gm64, IM_GM, 8)
FAST_IMUL(imul_gei32, IM_GEI, 4)
FAST_IMUL(imul_gei64, IM_GEI, 8)

/* MOV M, imm (C7 /0, C6 /0) and the 8-bit MOVs with memory (88, 8A)
 * of a register named without AH..BH (fast_form()). */
static void fast_store_i64(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_write(cpu, x86_ea(cpu, in), 8, in->seg, in->imm);
}

static void fast_store_i32(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_write(cpu, x86_ea(cpu, in), 4, in->seg, (uint32_t)in->imm);
}

static void fast_store_i8(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_write(cpu, x86_ea(cpu, in), 1, in->seg, (uint8_t)in->imm);
}

static void fast_store8(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_write(cpu, x86_ea(cpu, in), 1, in->seg, (uint8_t)cpu->gpr[in->reg]);
}

static void fast_load8(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v = x86_read(cpu, x86_ea(cpu, in), 1, in->seg);

	cpu->gpr[in->reg] = (cpu->gpr[in->reg] & ~0xffULL) | v;
}

/* What a specialised form does with the flags. */
enum fflags {
	FL_NONE, /* neither reads nor writes them */
	FL_WRITE, /* writes all six arithmetic flags from its operands */
	FL_RW, /* writes some, keeps others (INC/DEC keep CF) */
};

struct fentry {
	x86_handler_t fn, nf, jcc;
	enum fflags flags;
	/* May fault: the flags must be right before it (an exception
	 * handler sees them), so no writer before it has dead flags. */
	bool faults;
};

#define FE(n)                                                            \
	{                                                                \
		fast_##n, fast_##n##_nf, fast_##n##_jcc, FL_WRITE, false \
	}
#define FE_M(n)                                                         \
	{                                                               \
		fast_##n, fast_##n##_nf, fast_##n##_jcc, FL_WRITE, true \
	}
#define FE_RW(n)                                                      \
	{                                                             \
		fast_##n, fast_##n##_nf, fast_##n##_jcc, FL_RW, false \
	}
#define FE_RW_M(n)                                                   \
	{                                                            \
		fast_##n, fast_##n##_nf, fast_##n##_jcc, FL_RW, true \
	}
#define FE_PLAIN(n)                                  \
	{                                            \
		fast_##n, NULL, NULL, FL_NONE, false \
	}
#define FE_PLAIN_M(n)                               \
	{                                           \
		fast_##n, NULL, NULL, FL_NONE, true \
	}

/* [op][form][size 8] for the eight ALU operations of 01-3B and 81/83 by
 * ModRM.reg order (ADC and SBB are not specialised). */
#define ALU_ROW(n)                             \
	[EG] = { FE(n##_eg32), FE(n##_eg64) }, \
	[GE] = { FE(n##_ge32), FE(n##_ge64) }, \
	[EI] = { FE(n##_ei32), FE(n##_ei64) }, \
	[GM] = { FE_M(n##_gm32), FE_M(n##_gm64) }
static const struct fentry alu_table[8][4][2] = {
	[0] = { ALU_ROW(add) }, [1] = { ALU_ROW(or) },	[4] = { ALU_ROW(and) },
	[5] = { ALU_ROW(sub) }, [6] = { ALU_ROW(xor) }, [7] = { ALU_ROW(cmp) },
};
static const struct fentry test_table[2] = { FE(test_eg32), FE(test_eg64) };
static const struct fentry test_ei[2] = { FE(test_ei32), FE(test_ei64) };
static const struct fentry cmp_mg[2] = { FE_M(cmp_mg32), FE_M(cmp_mg64) };
static const struct fentry test_mg[2] = { FE_M(test_mg32), FE_M(test_mg64) };
/* [size 1, 4, 8] */
static const struct fentry cmp_mi[3] = { FE_M(cmp_mi8), FE_M(cmp_mi32),
					 FE_M(cmp_mi64) };
static const struct fentry test_mi[3] = { FE_M(test_mi8), FE_M(test_mi32),
					  FE_M(test_mi64) };
/* [SHL SHR SAR][by imm8, by 1][size 4, 8] */
static const struct fentry shift_table[3][2][2] = {
	{ { FE(shl_i32), FE(shl_i64) }, { FE(shl_1_32), FE(shl_1_64) } },
	{ { FE(shr_i32), FE(shr_i64) }, { FE(shr_1_32), FE(shr_1_64) } },
	{ { FE(sar_i32), FE(sar_i64) }, { FE(sar_1_32), FE(sar_1_64) } },
};
#define FE_EXT(n)                                                \
	{                                                        \
		{ FE_PLAIN(n##_r32), FE_PLAIN(n##_r64) },        \
		{                                                \
			FE_PLAIN_M(n##_m32), FE_PLAIN_M(n##_m64) \
		}                                                \
	}
/* [register, memory][size 4, 8] */
static const struct fentry movzxb[2][2] = FE_EXT(movzxb);
static const struct fentry movzxw[2][2] = FE_EXT(movzxw);
static const struct fentry movsxb[2][2] = FE_EXT(movsxb);
static const struct fentry movsxw[2][2] = FE_EXT(movsxw);
static const struct fentry movsxd[2][2] = FE_EXT(movsxd);
static const struct fentry store_i[3] = { FE_PLAIN_M(store_i8),
					  FE_PLAIN_M(store_i32),
					  FE_PLAIN_M(store_i64) };
/* [G *= E register, G *= E memory, G = E * imm][size 4, 8] */
static const struct fentry imul_table[3][2] = {
	{ FE_RW(imul_ge32), FE_RW(imul_ge64) },
	{ FE_RW_M(imul_gm32), FE_RW_M(imul_gm64) },
	{ FE_RW(imul_gei32), FE_RW(imul_gei64) },
};
static const struct fentry store8 = FE_PLAIN_M(store8);
static const struct fentry load8 = FE_PLAIN_M(load8);
static const struct fentry inc_table[2] = { FE_RW(inc32), FE_RW(inc64) };
static const struct fentry dec_table[2] = { FE_RW(dec32), FE_RW(dec64) };
static const struct fentry mov_eg[2] = { FE_PLAIN(mov_eg32),
					 FE_PLAIN(mov_eg64) };
static const struct fentry mov_ge[2] = { FE_PLAIN(mov_ge32),
					 FE_PLAIN(mov_ge64) };
static const struct fentry mov_ri[2] = { FE_PLAIN(mov_ri32),
					 FE_PLAIN(mov_ri64) };
static const struct fentry mov_ei[2] = { FE_PLAIN(mov_ei32),
					 FE_PLAIN(mov_ei64) };
static const struct fentry lea[2] = { FE_PLAIN(lea32), FE_PLAIN(lea64) };
static const struct fentry load[2] = { FE_PLAIN_M(load32), FE_PLAIN_M(load64) };
static const struct fentry store[2] = { FE_PLAIN_M(store32),
					FE_PLAIN_M(store64) };
static const struct fentry load_bd[2] = { FE_PLAIN_M(load32_bd),
					  FE_PLAIN_M(load64_bd) };
static const struct fentry store_bd[2] = { FE_PLAIN_M(store32_bd),
					   FE_PLAIN_M(store64_bd) };

/* An 8-bit register operand that is not AH..BH (those need no REX and
 * registers 4-7). */
static bool low_byte_reg(const struct x86_insn *in, unsigned int reg)
{
	return in->rex || reg < 4;
}

/* The 8-bit forms (opsize 1) of fast_form(). */
static const struct fentry *fast_form8(const struct x86_insn *in)
{
	unsigned int grp = (in->modrm >> 3) & 7;

	if (!in->mem)
		return NULL;
	switch (in->opcode) {
	case 0x80:
		return grp == 7 ? &cmp_mi[0] : NULL;
	case 0xf6:
		return grp == 0 ? &test_mi[0] : NULL;
	case 0xc6:
		return grp == 0 ? &store_i[0] : NULL;
	case 0x88:
		return low_byte_reg(in, in->reg) ? &store8 : NULL;
	case 0x8a:
		return low_byte_reg(in, in->reg) ? &load8 : NULL;
	default:
		return NULL;
	}
}

/* MOVZX, MOVSX, MOVSXD, the shifts by an immediate or one (C1, D1) and
 * CMP/TEST/MOV with a memory E of fast_form(); sz: opsize 8. */
static const struct fentry *fast_form_more(const struct x86_insn *in,
					   unsigned int sz)
{
	unsigned int op = in->opcode, grp = (in->modrm >> 3) & 7;
	unsigned int m = in->mem;

	switch (op) {
	case X86_MAP_0F | 0xb6:
		return m || low_byte_reg(in, in->rm) ? &movzxb[m][sz] : NULL;
	case X86_MAP_0F | 0xbe:
		return m || low_byte_reg(in, in->rm) ? &movsxb[m][sz] : NULL;
	case X86_MAP_0F | 0xb7:
		return &movzxw[m][sz];
	case X86_MAP_0F | 0xbf:
		return &movsxw[m][sz];
	case 0x63: /* without REX.W a plain 32-bit move */
		return sz ? &movsxd[m][sz] : NULL;
	case X86_MAP_0F | 0xaf:
		return &imul_table[m][sz];
	case 0x69:
	case 0x6b:
		return m ? NULL : &imul_table[2][sz];
	case 0xc1:
	case 0xd1:
		if (m || (grp != 4 && grp != 5 && grp != 7))
			return NULL;
		if (op == 0xc1 && !(in->imm & (sz ? 63 : 31)))
			return NULL; /* count 0: no flag changes */
		return &shift_table[grp == 4 ? 0 :
				    grp == 5 ? 1 :
					       2][op == 0xd1][sz];
	default:
		break;
	}
	if (!m)
		return op == 0xf7 && grp == 0 ? &test_ei[sz] : NULL;
	switch (op) {
	case 0x39:
		return &cmp_mg[sz];
	case 0x85:
		return &test_mg[sz];
	case 0x81:
	case 0x83:
		return grp == 7 ? &cmp_mi[1 + sz] : NULL;
	case 0xf7:
		return grp == 0 ? &test_mi[1 + sz] : NULL;
	case 0xc7:
		return grp == 0 ? &store_i[1 + sz] : NULL;
	default:
		return NULL;
	}
}

/* The specialised form of in, or NULL. */
static const struct fentry *fast_form(const struct x86_insn *in)
{
	unsigned int op = in->opcode, sz;
	const struct fentry *f;

	if (in->lock || in->rep || in->desc->opcode != op)
		return NULL;
	if (in->opsize == 1)
		return fast_form8(in);
	if (in->opsize != 4 && in->opsize != 8)
		return NULL;
	sz = in->opsize == 8;
	f = fast_form_more(in, sz);
	if (f)
		return f;
	if (op == 0xb8 + (op & 7) && op < 0xc0) /* MOV r, imm */
		return &mov_ri[sz];
	if (op == 0x8d) /* LEA: memory operand by the decoder's rule */
		return in->addrsize == 8 ? &lea[sz] : NULL;
	if (!(in->desc->flags & X86_D_MODRM))
		return NULL;
	if (in->mem) {
		bool bd = in->base < 16 && in->index == X86_NO_REG &&
			  in->addrsize == 8 && in->seg != X86_FS &&
			  in->seg != X86_GS;

		if (op == 0x8b)
			return bd ? &load_bd[sz] : &load[sz];
		if (op == 0x89)
			return bd ? &store_bd[sz] : &store[sz];
		/* G op= M: 03 0B 23 2B 33 3B (ADC, SBB aside). */
		if (op < 0x40 && (op & 7) == 3 && op >> 3 != 2 && op >> 3 != 3)
			return &alu_table[op >> 3][GM][sz];
		return NULL;
	}
	if (op < 0x40 && (op & 7) <= 3 && (op & 1)) {
		unsigned int alu = op >> 3;

		if (alu == 2 || alu == 3) /* ADC, SBB */
			return NULL;
		return &alu_table[alu][(op & 2) ? GE : EG][sz];
	}
	switch (op) {
	case 0x81:
	case 0x83: {
		unsigned int alu = (in->modrm >> 3) & 7;

		if (alu == 2 || alu == 3)
			return NULL;
		return &alu_table[alu][EI][sz];
	}
	case 0x85:
		return &test_table[sz];
	case 0x89:
		return &mov_eg[sz];
	case 0x8b:
		return &mov_ge[sz];
	case 0xc7:
		return ((in->modrm >> 3) & 7) == 0 ? &mov_ei[sz] : NULL;
	case 0xff:
		switch ((in->modrm >> 3) & 7) {
		case 0:
			return &inc_table[sz];
		case 1:
			return &dec_table[sz];
		default:
			return NULL;
		}
	default:
		return NULL;
	}
}

static bool is_jcc(const struct x86_insn *in)
{
	return (in->opcode >= 0x70 && in->opcode <= 0x7f) ||
	       (in->opcode >= (X86_MAP_0F | 0x80) &&
		in->opcode <= (X86_MAP_0F | 0x8f));
}

void x86_specialise(struct x86_insn *in, unsigned int n)
{
	const struct fentry *f[X86_BLOCK_INSNS];

	for (unsigned int i = 0; i < n; i++) {
		f[i] = fast_form(&in[i]);
		if (f[i])
			in[i].fn = f[i]->fn;
	}
	for (unsigned int i = 0; i < n; i++) {
		if (!f[i] || f[i]->flags == FL_NONE)
			continue;
		/* Fused with the Jcc that ends the block. */
		if (i + 2 == n && is_jcc(&in[i + 1])) {
			in[i].fn = f[i]->jcc;
			continue;
		}
		/* Dead when the next instruction that touches the flags
		 * overwrites them all, with only flag-free specialised
		 * forms in between. */
		for (unsigned int j = i + 1; j < n && f[j]; j++) {
			if (f[j]->faults)
				break;
			if (f[j]->flags == FL_WRITE) {
				in[i].fn = f[i]->nf;
				break;
			}
			if (f[j]->flags != FL_NONE)
				break;
		}
	}
}
