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
	return size == 8 ? ~0ULL : 0xffffffffULL;
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
 * TEST). GM is GE with a memory source.
 */
enum fform { EG, GE, EI, GM };

INLINE void falu(struct x86_cpu *cpu, const struct x86_insn *in, enum fop op,
		 enum fform form, unsigned int size, bool flags)
{
	uint64_t m = fmask(size), a, b, r;
	unsigned int dst = form == GE || form == GM ? in->reg : in->rm;

	if (form == GM)
		b = x86_read(cpu, x86_ea(cpu, in), size, in->seg);
	else if (form == EI)
		b = in->imm & m;
	else
		b = cpu->gpr[form == GE ? in->rm : in->reg] & m;
	a = cpu->gpr[dst] & m;
	r = fcompute(op, a, b, m);
	if (op != F_CMP && op != F_TEST)
		cpu->gpr[dst] = r; /* a 32-bit result zero-extends */
	if (flags)
		frecord(cpu, op, size, r, a, b);
}

/* INC/DEC of a register (FF /0, FF /1): CF is kept. */
INLINE void fincdec(struct x86_cpu *cpu, const struct x86_insn *in, bool dec,
		    unsigned int size, bool flags)
{
	uint64_t m = fmask(size), old = cpu->gpr[in->rm] & m;
	uint64_t r = (dec ? old - 1 : old + 1) & m;

	if (flags) {
		uint64_t cf = x86_get_cf(cpu);

		x86_lf_set_c(&cpu->lf, dec ? X86_LF_DEC : X86_LF_INC, size, r,
			     old, 1, cf);
	}
	cpu->gpr[in->rm] = r;
}

/*
 * The Jcc after a fused flag writer (in + 1, the block's last): where
 * execution continues. A non-canonical target is #GP at the Jcc, with the
 * flag writer retired.
 */
INLINE void fjcc(struct x86_cpu *cpu, const struct x86_insn *in)
{
	const struct x86_insn *j = in + 1;
	uint64_t next = cpu->next_rip + j->len;

	if (x86_cond(cpu, j->opcode & 0xf)) {
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
		falu(cpu, in, op, form, size, true);             \
		fjcc(cpu, in);                                   \
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
		fincdec(cpu, in, dec, size, true);               \
		fjcc(cpu, in);                                   \
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

/* The specialised form of in, or NULL. */
static const struct fentry *fast_form(const struct x86_insn *in)
{
	unsigned int op = in->opcode, sz;

	if ((in->opsize != 4 && in->opsize != 8) || in->lock || in->rep ||
	    in->desc->opcode != op)
		return NULL;
	sz = in->opsize == 8;
	if (op == 0xb8 + (op & 7) && op < 0xc0) /* MOV r, imm */
		return &mov_ri[sz];
	if (op == 0x8d) /* LEA: memory operand by the decoder's rule */
		return in->addrsize == 8 ? &lea[sz] : NULL;
	if (!(in->desc->flags & X86_D_MODRM))
		return NULL;
	if (in->mem) {
		if (op == 0x8b)
			return &load[sz];
		if (op == 0x89)
			return &store[sz];
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
