/*
 * Lazy arithmetic flags: deriving CF, PF, AF, ZF, SF and OF from what the
 * last flag-writing instruction recorded in cpu->lf (the conventions are
 * in x86_int.h), evaluating condition codes without building RFLAGS in
 * the common cases (CMP/SUB and TEST/logic before a Jcc), and replacing
 * RFLAGS as a whole. The instructions themselves, and the choices made
 * where the SDM leaves a flag undefined, live in exec_alu.c.
 */
#include "x86_int.h"

static inline unsigned int top_bit(const struct x86_lazy *lf)
{
	return lf->size * 8u - 1;
}

/* PF: set when the low byte of the result has an even number of ones. */
static inline uint64_t parity_flag(uint64_t res)
{
	return __builtin_parity((unsigned int)(res & 0xff)) ? 0 : X86_RFLAGS_PF;
}

/* The arithmetic bits of RFLAGS for the recorded operation. */
static uint64_t lazy_arith(const struct x86_cpu *cpu)
{
	const struct x86_lazy *lf = &cpu->lf;
	unsigned int top = top_bit(lf);
	uint64_t res = lf->res, s1 = lf->src1, s2 = lf->src2;
	uint64_t cf, of, af;

	switch (lf->op) {
	case X86_LF_ADD:
		cf = res < s1;
		of = ((s1 ^ res) & (s2 ^ res)) >> top;
		af = s1 ^ s2 ^ res;
		break;
	case X86_LF_ADC:
		cf = lf->carry ? res <= s1 : res < s1;
		of = ((s1 ^ res) & (s2 ^ res)) >> top;
		af = s1 ^ s2 ^ res;
		break;
	case X86_LF_SUB:
		cf = s1 < s2;
		of = ((s1 ^ s2) & (s1 ^ res)) >> top;
		af = s1 ^ s2 ^ res;
		break;
	case X86_LF_SBB:
		cf = lf->carry ? s1 <= s2 : s1 < s2;
		of = ((s1 ^ s2) & (s1 ^ res)) >> top;
		af = s1 ^ s2 ^ res;
		break;
	case X86_LF_NEG:
		cf = s1 != 0;
		of = (s1 & res) >> top;
		af = s1 ^ res;
		break;
	case X86_LF_INC:
		cf = lf->carry;
		of = res == 1ULL << top;
		af = s1 ^ res;
		break;
	case X86_LF_DEC:
		cf = lf->carry;
		of = s1 == 1ULL << top;
		af = s1 ^ res;
		break;
	case X86_LF_SHL:
		cf = lf->carry;
		of = (res >> top) ^ cf;
		af = X86_RFLAGS_AF;
		break;
	case X86_LF_SHR:
	case X86_LF_SAR:
		cf = lf->carry;
		of = (res ^ (res << 1)) >> top;
		af = X86_RFLAGS_AF;
		break;
	case X86_LF_SHLD:
		cf = lf->carry;
		of = (s1 >> top) ^ cf;
		af = X86_RFLAGS_AF;
		break;
	case X86_LF_MUL:
		return (cpu->rflags & X86_RFLAGS_ARITH &
			~(X86_RFLAGS_CF | X86_RFLAGS_OF)) |
		       (s1 ? X86_RFLAGS_CF | X86_RFLAGS_OF : 0);
	case X86_LF_LOGIC:
	default:
		cf = of = af = 0;
		break;
	}
	return (cf & 1) | parity_flag(res) | (af & X86_RFLAGS_AF) |
	       (res ? 0 : X86_RFLAGS_ZF) | (((res >> top) & 1) << 7) |
	       ((of & 1) << 11);
}

uint64_t x86_rflags(struct x86_cpu *cpu)
{
	if (cpu->lf.op != X86_LF_NONE) {
		cpu->rflags = (cpu->rflags & ~X86_RFLAGS_ARITH) |
			      lazy_arith(cpu);
		cpu->lf.op = X86_LF_NONE;
	}
	return cpu->rflags;
}

void x86_set_rflags(struct x86_cpu *cpu, uint64_t rflags)
{
	cpu->rflags = rflags | X86_RFLAGS_FIXED;
	cpu->lf.op = X86_LF_NONE;
}

bool x86_get_cf(struct x86_cpu *cpu)
{
	const struct x86_lazy *lf = &cpu->lf;

	switch (lf->op) {
	case X86_LF_NONE:
		return cpu->rflags & X86_RFLAGS_CF;
	case X86_LF_ADD:
		return lf->res < lf->src1;
	case X86_LF_SUB:
		return lf->src1 < lf->src2;
	case X86_LF_LOGIC:
		return false;
	case X86_LF_INC:
	case X86_LF_DEC:
	case X86_LF_SHL:
	case X86_LF_SHR:
	case X86_LF_SAR:
	case X86_LF_SHLD:
		return lf->carry & 1;
	default:
		return lazy_arith(cpu) & X86_RFLAGS_CF;
	}
}

/* cc from the whole flags; odd cc negates the even one below it. */
static bool cond_from_flags(uint64_t f, unsigned int cc)
{
	bool sf_ne_of = !(f & X86_RFLAGS_SF) != !(f & X86_RFLAGS_OF);
	bool r;

	switch (cc >> 1) {
	case 0: /* O */
		r = f & X86_RFLAGS_OF;
		break;
	case 1: /* B */
		r = f & X86_RFLAGS_CF;
		break;
	case 2: /* Z */
		r = f & X86_RFLAGS_ZF;
		break;
	case 3: /* BE */
		r = f & (X86_RFLAGS_CF | X86_RFLAGS_ZF);
		break;
	case 4: /* S */
		r = f & X86_RFLAGS_SF;
		break;
	case 5: /* P */
		r = f & X86_RFLAGS_PF;
		break;
	case 6: /* L */
		r = sf_ne_of;
		break;
	default: /* LE */
		r = (f & X86_RFLAGS_ZF) || sf_ne_of;
		break;
	}
	return r ^ (cc & 1);
}

/* After SUB/CMP: compare the sources directly. */
static bool cond_sub(const struct x86_cpu *cpu, unsigned int cc)
{
	const struct x86_lazy *lf = &cpu->lf;
	unsigned int sh = 64 - lf->size * 8u;
	int64_t a = (int64_t)(lf->src1 << sh), b = (int64_t)(lf->src2 << sh);
	bool r;

	switch (cc >> 1) {
	case 1:
		r = lf->src1 < lf->src2;
		break;
	case 2:
		r = lf->res == 0;
		break;
	case 3:
		r = lf->src1 <= lf->src2;
		break;
	case 4:
		r = (lf->res >> (63 - sh)) & 1;
		break;
	case 6:
		r = a < b;
		break;
	case 7:
		r = a <= b;
		break;
	default: /* O, P */
		return cond_from_flags(lazy_arith(cpu), cc);
	}
	return r ^ (cc & 1);
}

bool x86_cond(struct x86_cpu *cpu, unsigned int cc)
{
	const struct x86_lazy *lf = &cpu->lf;
	bool zf, sf;

	cc &= 15;
	if (lf->op == X86_LF_NONE)
		return cond_from_flags(cpu->rflags, cc);
	if (lf->op == X86_LF_SUB)
		return cond_sub(cpu, cc);
	if (lf->op == X86_LF_MUL)
		return cond_from_flags(lazy_arith(cpu), cc);
	/* Every other op takes ZF and SF from res (DEC; JNZ and friends). */
	zf = lf->res == 0;
	sf = (lf->res >> top_bit(lf)) & 1;
	switch (cc >> 1) {
	case 2:
		return zf ^ (cc & 1);
	case 4:
		return sf ^ (cc & 1);
	default:
		break;
	}
	if (lf->op == X86_LF_LOGIC) {
		/* CF = OF = 0: O and B never, BE = Z, L = S, LE = Z | S. */
		switch (cc >> 1) {
		case 0:
		case 1:
			return cc & 1;
		case 3:
			return zf ^ (cc & 1);
		case 6:
			return sf ^ (cc & 1);
		case 7:
			return (zf || sf) ^ (cc & 1);
		default:
			break;
		}
	}
	return cond_from_flags(lazy_arith(cpu), cc);
}
