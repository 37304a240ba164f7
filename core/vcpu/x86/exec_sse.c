/*
 * SSE and SSE2 instructions that move, combine and compute on XMM
 * registers without floating-point arithmetic (SDM vol. 2 by mnemonic;
 * vol. 1, chapters 10 and 11): the moves (aligned, unaligned,
 * non-temporal, scalar, low/high halves, MOVD/MOVQ), the packed logic,
 * MOVMSKPS/PD, the shuffles and unpacks, and the whole 128-bit integer
 * set of SSE2 (66-prefixed 0F 60-7F and D0-FF, PINSRW/PEXTRW), plus
 * MOVNTI. The MMX forms of the same opcodes (no prefix) are #UD: CPUID
 * does not report MMX.
 *
 * Every handler starts with x86_sse_check() (#UD, then #NM) before it
 * touches memory, so a memory fault never wins over them; the aligned
 * forms raise #GP(0) for a memory operand that is not 16-byte aligned.
 * The mandatory prefix selects the instruction: F2 or F3 wins over 66
 * (the last of F2/F3 counts, as the decoder records it in in->rep).
 */
#include <string.h>

#include "x86_int.h"

typedef union x86_xmm xmm_t;

static inline unsigned int pfx(const struct x86_insn *in)
{
	return in->rep ? in->rep : in->opsize_prefix ? 0x66 : 0;
}

static _Noreturn void ud(struct x86_cpu *cpu)
{
	x86_raise(cpu, X86_UD, 0);
}

static inline xmm_t *xr(struct x86_cpu *cpu, unsigned int r)
{
	return &cpu->fpu.xmm[r];
}

/* The W operand (ModRM.rm): an XMM register or 16 bytes of memory. */
static inline void get_W(struct x86_cpu *cpu, const struct x86_insn *in,
			 xmm_t *v, bool aligned)
{
	gva_t la;

	if (!in->mem) {
		*v = *xr(cpu, in->rm);
		return;
	}
	la = x86_ea(cpu, in);
	if (aligned && (la & 15))
		x86_raise(cpu, X86_GP, 0);
	x86_read_block(cpu, la, v, 16, in->seg);
}

static inline void set_W(struct x86_cpu *cpu, const struct x86_insn *in,
			 const xmm_t *v, bool aligned)
{
	gva_t la;

	if (!in->mem) {
		*xr(cpu, in->rm) = *v;
		return;
	}
	la = x86_ea(cpu, in);
	if (aligned && (la & 15))
		x86_raise(cpu, X86_GP, 0);
	x86_write_block(cpu, la, v, 16, in->seg);
}

/* A 64-bit half from memory (or nothing: the caller handles registers). */
static inline uint64_t read_m64(struct x86_cpu *cpu, const struct x86_insn *in)
{
	return x86_read(cpu, x86_ea(cpu, in), 8, in->seg);
}

/* ---- moves ------------------------------------------------------------ */

/* 0F 10: MOVUPS, MOVUPD (66), MOVSS (F3), MOVSD (F2), loads. */
static void op_movu_load(struct x86_cpu *cpu, const struct x86_insn *in)
{
	xmm_t *d = xr(cpu, in->reg);
	xmm_t v;

	x86_sse_check(cpu);
	switch (pfx(in)) {
	case 0xf3:
		if (in->mem) {
			v.q[0] = x86_read(cpu, x86_ea(cpu, in), 4, in->seg);
			v.q[1] = 0;
			*d = v;
		} else {
			d->d[0] = xr(cpu, in->rm)->d[0];
		}
		return;
	case 0xf2:
		if (in->mem) {
			v.q[0] = read_m64(cpu, in);
			v.q[1] = 0;
			*d = v;
		} else {
			d->q[0] = xr(cpu, in->rm)->q[0];
		}
		return;
	default:
		get_W(cpu, in, &v, false);
		*d = v;
	}
}

/* 0F 11: the same, stores. */
static void op_movu_store(struct x86_cpu *cpu, const struct x86_insn *in)
{
	const xmm_t *s = xr(cpu, in->reg);
	xmm_t v = *s;

	x86_sse_check(cpu);
	switch (pfx(in)) {
	case 0xf3:
		if (in->mem)
			x86_write(cpu, x86_ea(cpu, in), 4, in->seg, v.d[0]);
		else
			xr(cpu, in->rm)->d[0] = v.d[0];
		return;
	case 0xf2:
		if (in->mem)
			x86_write(cpu, x86_ea(cpu, in), 8, in->seg, v.q[0]);
		else
			xr(cpu, in->rm)->q[0] = v.q[0];
		return;
	default:
		set_W(cpu, in, &v, false);
	}
}

/* 0F 28 / 0F 29: MOVAPS, MOVAPD (66). */
static void op_mova_load(struct x86_cpu *cpu, const struct x86_insn *in)
{
	xmm_t v;

	if (in->rep)
		ud(cpu);
	x86_sse_check(cpu);
	get_W(cpu, in, &v, true);
	*xr(cpu, in->reg) = v;
}

static void op_mova_store(struct x86_cpu *cpu, const struct x86_insn *in)
{
	xmm_t v;

	if (in->rep)
		ud(cpu);
	x86_sse_check(cpu);
	v = *xr(cpu, in->reg);
	set_W(cpu, in, &v, true);
}

/* 0F 2B: MOVNTPS, MOVNTPD (66); 66 0F E7: MOVNTDQ. Memory only, aligned.
 * The non-temporal hint changes nothing here: guest stores are release
 * stores like any other (docs/ARCHITECTURE.md, "Guest memory is shared
 * memory"), which is stronger than the weak order a non-temporal store
 * may have. */
static void op_movnt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	xmm_t v;

	if (in->rep || !in->mem ||
	    ((in->opcode & 0xff) == 0xe7 && !in->opsize_prefix))
		ud(cpu);
	x86_sse_check(cpu);
	v = *xr(cpu, in->reg);
	set_W(cpu, in, &v, true);
}

/* 0F 6F / 0F 7F: MOVDQA (66), MOVDQU (F3). */
static void op_movdq_load(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int p = pfx(in);
	xmm_t v;

	if (p != 0x66 && p != 0xf3)
		ud(cpu);
	x86_sse_check(cpu);
	get_W(cpu, in, &v, p == 0x66);
	*xr(cpu, in->reg) = v;
}

static void op_movdq_store(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int p = pfx(in);
	xmm_t v;

	if (p != 0x66 && p != 0xf3)
		ud(cpu);
	x86_sse_check(cpu);
	v = *xr(cpu, in->reg);
	set_W(cpu, in, &v, p == 0x66);
}

/* 66 0F 6E: MOVD xmm, r/m32; with REX.W, MOVQ xmm, r/m64. */
static void op_movd_to_xmm(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->rex_w ? 8 : 4;
	xmm_t v = { .q = { 0, 0 } };

	if (pfx(in) != 0x66)
		ud(cpu);
	x86_sse_check(cpu);
	v.q[0] = in->mem ? x86_read(cpu, x86_ea(cpu, in), size, in->seg) :
			   x86_trunc(cpu->gpr[in->rm], size);
	*xr(cpu, in->reg) = v;
}

/* 0F 7E: MOVD/MOVQ r/m, xmm (66); MOVQ xmm, xmm/m64 (F3). */
static void op_movd_from_xmm(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->rex_w ? 8 : 4;
	xmm_t v = { .q = { 0, 0 } };

	switch (pfx(in)) {
	case 0x66:
		x86_sse_check(cpu);
		v = *xr(cpu, in->reg);
		if (in->mem)
			x86_write(cpu, x86_ea(cpu, in), size, in->seg,
				  x86_trunc(v.q[0], size));
		else
			x86_reg_set(cpu, in->rm, size, true, v.q[0]);
		return;
	case 0xf3:
		x86_sse_check(cpu);
		v.q[0] = in->mem ? read_m64(cpu, in) : xr(cpu, in->rm)->q[0];
		*xr(cpu, in->reg) = v;
		return;
	default:
		ud(cpu);
	}
}

/* 66 0F D6: MOVQ xmm/m64, xmm (a register destination's high half is
 * zeroed). */
static void op_movq_store(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t q;

	if (pfx(in) != 0x66)
		ud(cpu);
	x86_sse_check(cpu);
	q = xr(cpu, in->reg)->q[0];
	if (in->mem) {
		x86_write(cpu, x86_ea(cpu, in), 8, in->seg, q);
	} else {
		xr(cpu, in->rm)->q[0] = q;
		xr(cpu, in->rm)->q[1] = 0;
	}
}

/* 0F 12 / 0F 16: MOVLPS/MOVHPS (memory), MOVHLPS/MOVLHPS (registers),
 * MOVLPD/MOVHPD (66, memory only). */
static void op_movlh_load(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bool high = (in->opcode & 0xff) == 0x16;
	unsigned int p = pfx(in);
	xmm_t *d = xr(cpu, in->reg);
	uint64_t q;

	if (p == 0xf2 || p == 0xf3 || (p == 0x66 && !in->mem))
		ud(cpu);
	x86_sse_check(cpu);
	if (in->mem)
		q = read_m64(cpu, in);
	else
		q = xr(cpu, in->rm)->q[high ? 0 : 1];
	d->q[high ? 1 : 0] = q;
}

/* 0F 13 / 0F 17: MOVLPS/MOVHPS, MOVLPD/MOVHPD (66) stores; memory only. */
static void op_movlh_store(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bool high = (in->opcode & 0xff) == 0x17;

	if (in->rep || !in->mem)
		ud(cpu);
	x86_sse_check(cpu);
	x86_write(cpu, x86_ea(cpu, in), 8, in->seg,
		  xr(cpu, in->reg)->q[high ? 1 : 0]);
}

/* 0F C3: MOVNTI m32/m64, r32/r64 (a general-register store). */
static void op_movnti(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->rex_w ? 8 : 4;

	if (pfx(in))
		ud(cpu);
	x86_write(cpu, x86_ea(cpu, in), size, in->seg,
		  x86_trunc(cpu->gpr[in->reg], size));
}

/* 0F 50: MOVMSKPS, MOVMSKPD (66); 66 0F D7: PMOVMSKB. The sign bits of
 * the lanes into a general register, zero-extended. */
static void op_movmsk(struct x86_cpu *cpu, const struct x86_insn *in)
{
	const xmm_t *s = xr(cpu, in->rm);
	unsigned int p = pfx(in);
	uint64_t m = 0;

	if (p == 0xf2 || p == 0xf3 ||
	    ((in->opcode & 0xff) == 0xd7 && p != 0x66))
		ud(cpu);
	x86_sse_check(cpu);
	if ((in->opcode & 0xff) == 0xd7) {
		for (unsigned int i = 0; i < 16; i++)
			m |= (uint64_t)(s->b[i] >> 7) << i;
	} else if (p == 0x66) {
		m = (s->q[0] >> 63) | ((s->q[1] >> 63) << 1);
	} else {
		for (unsigned int i = 0; i < 4; i++)
			m |= (uint64_t)(s->d[i] >> 31) << i;
	}
	cpu->gpr[in->reg] = m;
}

/* ---- packed logic, shuffles, unpacks of PS/PD ------------------------- */

/* 0F 54-57: ANDPS ANDNPS ORPS XORPS, the PD forms with 66. */
static void op_logic_ps(struct x86_cpu *cpu, const struct x86_insn *in)
{
	xmm_t *d = xr(cpu, in->reg);
	xmm_t s;

	if (in->rep)
		ud(cpu);
	x86_sse_check(cpu);
	get_W(cpu, in, &s, true);
	for (unsigned int i = 0; i < 2; i++) {
		switch (in->opcode & 0xff) {
		case 0x54:
			d->q[i] &= s.q[i];
			break;
		case 0x55:
			d->q[i] = ~d->q[i] & s.q[i];
			break;
		case 0x56:
			d->q[i] |= s.q[i];
			break;
		default:
			d->q[i] ^= s.q[i];
			break;
		}
	}
}

/* 0F 14 / 0F 15: UNPCKLPS/UNPCKHPS, UNPCKLPD/UNPCKHPD (66). */
static void op_unpck_ps(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bool high = (in->opcode & 0xff) == 0x15;
	xmm_t *d = xr(cpu, in->reg);
	xmm_t s, r;

	if (in->rep)
		ud(cpu);
	x86_sse_check(cpu);
	get_W(cpu, in, &s, true);
	if (in->opsize_prefix) {
		r.q[0] = d->q[high];
		r.q[1] = s.q[high];
	} else {
		unsigned int o = high ? 2 : 0;

		r.d[0] = d->d[o];
		r.d[1] = s.d[o];
		r.d[2] = d->d[o + 1];
		r.d[3] = s.d[o + 1];
	}
	*d = r;
}

/* 0F C6 ib: SHUFPS, SHUFPD (66). */
static void op_shufps(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int imm = (unsigned int)in->imm;
	xmm_t *d = xr(cpu, in->reg);
	xmm_t s, r;

	if (in->rep)
		ud(cpu);
	x86_sse_check(cpu);
	get_W(cpu, in, &s, true);
	if (in->opsize_prefix) {
		r.q[0] = d->q[imm & 1];
		r.q[1] = s.q[(imm >> 1) & 1];
	} else {
		r.d[0] = d->d[imm & 3];
		r.d[1] = d->d[(imm >> 2) & 3];
		r.d[2] = s.d[(imm >> 4) & 3];
		r.d[3] = s.d[(imm >> 6) & 3];
	}
	*d = r;
}

/* ---- 128-bit integer SIMD (SSE2, 66 prefix) ---------------------------- */

/* The operands of a 66-prefixed integer instruction: dst = XMM(reg),
 * s = xmm/m128 (aligned). */
static inline xmm_t *int_operands(struct x86_cpu *cpu,
				  const struct x86_insn *in, xmm_t *s)
{
	if (pfx(in) != 0x66)
		ud(cpu);
	x86_sse_check(cpu);
	get_W(cpu, in, s, true);
	return xr(cpu, in->reg);
}

static inline int8_t sat8(int32_t v)
{
	return (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
}

static inline uint8_t usat8(int32_t v)
{
	return (uint8_t)(v > 255 ? 255 : v < 0 ? 0 : v);
}

static inline int16_t sat16(int32_t v)
{
	return (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
}

static inline uint16_t usat16(int32_t v)
{
	return (uint16_t)(v > 65535 ? 65535 : v < 0 ? 0 : v);
}

/*
 * One handler per instruction: INT_OP(name, lanes, statement) computes
 * the statement for i in 0..lanes-1 over d (the destination, updated in
 * place) and s (the source). The statements read lane i of both only.
 */
#define INT_OP(name, lanes, stmt)                                             \
	static void op_##name(struct x86_cpu *cpu, const struct x86_insn *in) \
	{                                                                     \
		xmm_t s;                                                      \
		xmm_t *d = int_operands(cpu, in, &s);                         \
		for (unsigned int i = 0; i < (lanes); i++)                    \
			stmt;                                                 \
	}

INT_OP(paddb, 16, d->b[i] = (uint8_t)(d->b[i] + s.b[i]))
INT_OP(paddw, 8, d->w[i] = (uint16_t)(d->w[i] + s.w[i]))
INT_OP(paddd, 4, d->d[i] += s.d[i])
INT_OP(paddq, 2, d->q[i] += s.q[i])
INT_OP(psubb, 16, d->b[i] = (uint8_t)(d->b[i] - s.b[i]))
INT_OP(psubw, 8, d->w[i] = (uint16_t)(d->w[i] - s.w[i]))
INT_OP(psubd, 4, d->d[i] -= s.d[i])
INT_OP(psubq, 2, d->q[i] -= s.q[i])
INT_OP(paddsb, 16, d->b[i] = (uint8_t)sat8((int8_t)d->b[i] + (int8_t)s.b[i]))
INT_OP(paddsw, 8, d->w[i] = (uint16_t)sat16((int16_t)d->w[i] + (int16_t)s.w[i]))
INT_OP(paddusb, 16, d->b[i] = usat8(d->b[i] + s.b[i]))
INT_OP(paddusw, 8, d->w[i] = usat16(d->w[i] + s.w[i]))
INT_OP(psubsb, 16, d->b[i] = (uint8_t)sat8((int8_t)d->b[i] - (int8_t)s.b[i]))
INT_OP(psubsw, 8, d->w[i] = (uint16_t)sat16((int16_t)d->w[i] - (int16_t)s.w[i]))
INT_OP(psubusb, 16, d->b[i] = usat8(d->b[i] - s.b[i]))
INT_OP(psubusw, 8, d->w[i] = usat16(d->w[i] - s.w[i]))
INT_OP(pmullw, 8, d->w[i] = (uint16_t)((uint32_t)d->w[i] * s.w[i]))
INT_OP(pmulhw, 8,
       d->w[i] = (uint16_t)(((int32_t)(int16_t)d->w[i] * (int16_t)s.w[i]) >>
			    16))
INT_OP(pmulhuw, 8, d->w[i] = (uint16_t)(((uint32_t)d->w[i] * s.w[i]) >> 16))
INT_OP(pmuludq, 2, d->q[i] = (uint64_t)d->d[2 * i] * s.d[2 * i])
INT_OP(pmaddwd, 4,
       d->d[i] = (uint32_t)((int32_t)(int16_t)d->w[2 * i] *
				    (int16_t)s.w[2 * i] +
			    (int64_t)(int16_t)d->w[2 * i + 1] *
				    (int16_t)s.w[2 * i + 1]))
INT_OP(pavgb, 16, d->b[i] = (uint8_t)((d->b[i] + s.b[i] + 1) >> 1))
INT_OP(pavgw, 8, d->w[i] = (uint16_t)((d->w[i] + s.w[i] + 1) >> 1))
INT_OP(pminub, 16, d->b[i] = d->b[i] < s.b[i] ? d->b[i] : s.b[i])
INT_OP(pmaxub, 16, d->b[i] = d->b[i] > s.b[i] ? d->b[i] : s.b[i])
INT_OP(pminsw, 8,
       d->w[i] = (int16_t)d->w[i] < (int16_t)s.w[i] ? d->w[i] : s.w[i])
INT_OP(pmaxsw, 8,
       d->w[i] = (int16_t)d->w[i] > (int16_t)s.w[i] ? d->w[i] : s.w[i])
INT_OP(pand, 2, d->q[i] &= s.q[i])
INT_OP(pandn, 2, d->q[i] = ~d->q[i] & s.q[i])
INT_OP(por, 2, d->q[i] |= s.q[i])
INT_OP(pxor, 2, d->q[i] ^= s.q[i])
INT_OP(pcmpeqb, 16, d->b[i] = d->b[i] == s.b[i] ? 0xff : 0)
INT_OP(pcmpeqw, 8, d->w[i] = d->w[i] == s.w[i] ? 0xffff : 0)
INT_OP(pcmpeqd, 4, d->d[i] = d->d[i] == s.d[i] ? 0xffffffffu : 0)
INT_OP(pcmpgtb, 16, d->b[i] = (int8_t)d->b[i] > (int8_t)s.b[i] ? 0xff : 0)
INT_OP(pcmpgtw, 8, d->w[i] = (int16_t)d->w[i] > (int16_t)s.w[i] ? 0xffff : 0)
INT_OP(pcmpgtd, 4,
       d->d[i] = (int32_t)d->d[i] > (int32_t)s.d[i] ? 0xffffffffu : 0)

/* PSADBW: per 8-byte half, the sum of absolute byte differences in the
 * low word, the rest zero. */
static void op_psadbw(struct x86_cpu *cpu, const struct x86_insn *in)
{
	xmm_t s;
	xmm_t *d = int_operands(cpu, in, &s);

	for (unsigned int h = 0; h < 2; h++) {
		uint64_t sum = 0;

		for (unsigned int i = 8 * h; i < 8 * h + 8; i++)
			sum += (uint64_t)(d->b[i] > s.b[i] ? d->b[i] - s.b[i] :
							     s.b[i] - d->b[i]);
		d->q[h] = sum;
	}
}

/* PUNPCKL/H BW WD DQ QDQ (60-62, 68-6A, 6C, 6D): interleave the low or
 * high halves of d and s, lanes of size bytes. */
static void unpack(xmm_t *d, const xmm_t *s, unsigned int size, bool high)
{
	unsigned int n = 16 / size;
	unsigned int base = high ? 8 : 0;
	xmm_t r;

	for (unsigned int i = 0; i < n / 2; i++) {
		memcpy(&r.b[2 * i * size], &d->b[base + i * size], size);
		memcpy(&r.b[(2 * i + 1) * size], &s->b[base + i * size], size);
	}
	*d = r;
}

static void op_punpck(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int op = in->opcode & 0xff;
	xmm_t s;
	xmm_t *d = int_operands(cpu, in, &s);

	switch (op) {
	case 0x6c:
	case 0x6d:
		unpack(d, &s, 8, op == 0x6d);
		break;
	default:
		unpack(d, &s, 1u << (op & 3), op >= 0x68);
		break;
	}
}

/* PACKSSWB (63), PACKUSWB (67), PACKSSDW (6B). */
static void op_pack(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int op = in->opcode & 0xff;
	xmm_t s, r;
	xmm_t *d = int_operands(cpu, in, &s);

	for (unsigned int i = 0; i < 8; i++) {
		const xmm_t *from = i < 4 ? d : &s;

		if (op == 0x6b) {
			r.w[i] = (uint16_t)sat16((int32_t)from->d[i & 3]);
			continue;
		}
		for (unsigned int j = 0; j < 2; j++) {
			unsigned int k = 2 * i + j; /* result byte */
			const xmm_t *src = k < 8 ? d : &s;
			int32_t v = (int16_t)src->w[k & 7];

			r.b[k] = op == 0x63 ? (uint8_t)sat8(v) : usat8(v);
		}
	}
	*d = r;
}

/* Shifts of every lane by count (logical: a count past the lane clears
 * it; arithmetic: it fills with the sign). kind: 0 right logical, 1
 * right arithmetic, 2 left. */
static void shift_lanes(xmm_t *d, unsigned int size, unsigned int kind,
			uint64_t count)
{
	unsigned int bits = size * 8;

	for (unsigned int i = 0; i < 16 / size; i++) {
		uint64_t v = 0;
		int64_t sv;

		memcpy(&v, &d->b[i * size], size);
		switch (kind) {
		case 0:
			v = count >= bits ? 0 : v >> count;
			break;
		case 1:
			sv = (int64_t)(v << (64 - bits)) >> (64 - bits);
			v = (uint64_t)(sv >>
				       (count >= bits ? bits - 1 : count));
			break;
		default:
			v = count >= bits ? 0 : v << count;
			break;
		}
		memcpy(&d->b[i * size], &v, size);
	}
}

/* PSRLW/D/Q (D1-D3), PSRAW/D (E1, E2), PSLLW/D/Q (F1-F3): count from the
 * low quadword of xmm/m128. */
static void op_shift_xmm(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int op = in->opcode & 0xff;
	unsigned int kind = op < 0xe0 ? 0 : op < 0xf0 ? 1 : 2;
	xmm_t s;
	xmm_t *d = int_operands(cpu, in, &s);

	shift_lanes(d, 1u << (op & 3), kind, s.q[0]);
}

/* 66 0F 71/72/73 ib: shifts of XMM(rm) by an immediate, and PSRLDQ /
 * PSLLDQ (73 /3 /7) by bytes. */
static void op_shift_imm(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int op = in->opcode & 0xff, grp = (in->modrm >> 3) & 7;
	unsigned int size = op == 0x71 ? 2 : op == 0x72 ? 4 : 8;
	unsigned int count = (unsigned int)(in->imm & 0xff);
	xmm_t *d = xr(cpu, in->rm);

	/* The table names the groups that exist (the rest are #UD). */
	if (pfx(in) != 0x66)
		ud(cpu);
	x86_sse_check(cpu);
	if (op == 0x73 && (grp == 3 || grp == 7)) {
		xmm_t r = { .q = { 0, 0 } };
		unsigned int n = count > 16 ? 16 : count;

		if (grp == 3)
			memcpy(&r.b[0], &d->b[n], 16 - n);
		else
			memcpy(&r.b[n], &d->b[0], 16 - n);
		*d = r;
		return;
	}
	shift_lanes(d, size, grp == 2 ? 0 : grp == 4 ? 1 : 2, count);
}

/* 0F 70 ib: PSHUFD (66), PSHUFHW (F3), PSHUFLW (F2). */
static void op_pshuf(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int imm = (unsigned int)in->imm, p = pfx(in);
	xmm_t s, r;

	if (!p)
		ud(cpu);
	x86_sse_check(cpu);
	get_W(cpu, in, &s, true);
	r = s;
	for (unsigned int i = 0; i < 4; i++) {
		unsigned int sel = (imm >> (2 * i)) & 3;

		if (p == 0x66)
			r.d[i] = s.d[sel];
		else if (p == 0xf3)
			r.w[4 + i] = s.w[4 + sel];
		else
			r.w[i] = s.w[sel];
	}
	*xr(cpu, in->reg) = r;
}

/* 66 0F C4 ib: PINSRW xmm, r32/m16, imm8. */
static void op_pinsrw(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint16_t v;

	if (pfx(in) != 0x66)
		ud(cpu);
	x86_sse_check(cpu);
	v = in->mem ? (uint16_t)x86_read(cpu, x86_ea(cpu, in), 2, in->seg) :
		      (uint16_t)cpu->gpr[in->rm];
	xr(cpu, in->reg)->w[in->imm & 7] = v;
}

/* 66 0F C5 ib: PEXTRW r32, xmm, imm8 (zero-extended). */
static void op_pextrw(struct x86_cpu *cpu, const struct x86_insn *in)
{
	if (pfx(in) != 0x66)
		ud(cpu);
	x86_sse_check(cpu);
	cpu->gpr[in->reg] = xr(cpu, in->rm)->w[in->imm & 7];
}

/* 66 0F F7: MASKMOVDQU xmm1, xmm2: the bytes of xmm1 whose byte in xmm2
 * has its top bit set go to DS:rDI. Every selected byte's page is
 * checked before any byte is stored. */
static void op_maskmovdqu(struct x86_cpu *cpu, const struct x86_insn *in)
{
	const xmm_t *v = xr(cpu, in->reg), *m = xr(cpu, in->rm);
	gva_t la = x86_trunc(cpu->gpr[X86_RDI], in->addrsize);

	if (pfx(in) != 0x66)
		ud(cpu);
	x86_sse_check(cpu);
	if (in->seg == X86_FS || in->seg == X86_GS)
		la += cpu->seg[in->seg].base;
	for (unsigned int i = 0; i < 16; i++)
		if (m->b[i] & 0x80)
			x86_probe_write(cpu, la + i, 1, in->seg);
	for (unsigned int i = 0; i < 16; i++)
		if (m->b[i] & 0x80)
			x86_write(cpu, la + i, 1, in->seg, v->b[i]);
}

#define M X86_D_MODRM
#define R (X86_D_MODRM | X86_D_REG)
#define MEM (X86_D_MODRM | X86_D_MEM)
#define ANY X86_GROUP_ANY
#define OP(byte, fl, fn, name)                                             \
	{                                                                  \
		X86_MAP_0F | (byte), ANY, X86_IMM_NONE, (fl), (fn), (name) \
	}
#define OPI(byte, fl, fn, name)                                         \
	{                                                               \
		X86_MAP_0F | (byte), ANY, X86_IMM_B, (fl), (fn), (name) \
	}
#define OPG(byte, g, fn, name)                                       \
	{                                                            \
		X86_MAP_0F | (byte), (g), X86_IMM_B, R, (fn), (name) \
	}

const struct x86_opdesc x86_ops_sse[] = {
	OP(0x10, M, op_movu_load, "movups"),
	OP(0x11, M, op_movu_store, "movups"),
	OP(0x12, M, op_movlh_load, "movlps"),
	OP(0x13, M, op_movlh_store, "movlps"),
	OP(0x14, M, op_unpck_ps, "unpcklps"),
	OP(0x15, M, op_unpck_ps, "unpckhps"),
	OP(0x16, M, op_movlh_load, "movhps"),
	OP(0x17, M, op_movlh_store, "movhps"),
	OP(0x28, M, op_mova_load, "movaps"),
	OP(0x29, M, op_mova_store, "movaps"),
	OP(0x2b, M, op_movnt, "movntps"),
	OP(0x50, R, op_movmsk, "movmskps"),
	OP(0x54, M, op_logic_ps, "andps"),
	OP(0x55, M, op_logic_ps, "andnps"),
	OP(0x56, M, op_logic_ps, "orps"),
	OP(0x57, M, op_logic_ps, "xorps"),
	OP(0x60, M, op_punpck, "punpcklbw"),
	OP(0x61, M, op_punpck, "punpcklwd"),
	OP(0x62, M, op_punpck, "punpckldq"),
	OP(0x63, M, op_pack, "packsswb"),
	OP(0x64, M, op_pcmpgtb, "pcmpgtb"),
	OP(0x65, M, op_pcmpgtw, "pcmpgtw"),
	OP(0x66, M, op_pcmpgtd, "pcmpgtd"),
	OP(0x67, M, op_pack, "packuswb"),
	OP(0x68, M, op_punpck, "punpckhbw"),
	OP(0x69, M, op_punpck, "punpckhwd"),
	OP(0x6a, M, op_punpck, "punpckhdq"),
	OP(0x6b, M, op_pack, "packssdw"),
	OP(0x6c, M, op_punpck, "punpcklqdq"),
	OP(0x6d, M, op_punpck, "punpckhqdq"),
	OP(0x6e, M, op_movd_to_xmm, "movd"),
	OP(0x6f, M, op_movdq_load, "movdqa"),
	OPI(0x70, M, op_pshuf, "pshufd"),
	OPG(0x71, 2, op_shift_imm, "psrlw"),
	OPG(0x71, 4, op_shift_imm, "psraw"),
	OPG(0x71, 6, op_shift_imm, "psllw"),
	OPG(0x72, 2, op_shift_imm, "psrld"),
	OPG(0x72, 4, op_shift_imm, "psrad"),
	OPG(0x72, 6, op_shift_imm, "pslld"),
	OPG(0x73, 2, op_shift_imm, "psrlq"),
	OPG(0x73, 3, op_shift_imm, "psrldq"),
	OPG(0x73, 6, op_shift_imm, "psllq"),
	OPG(0x73, 7, op_shift_imm, "pslldq"),
	OP(0x74, M, op_pcmpeqb, "pcmpeqb"),
	OP(0x75, M, op_pcmpeqw, "pcmpeqw"),
	OP(0x76, M, op_pcmpeqd, "pcmpeqd"),
	OP(0x7e, M, op_movd_from_xmm, "movd"),
	OP(0x7f, M, op_movdq_store, "movdqa"),
	OP(0xc3, MEM, op_movnti, "movnti"),
	OPI(0xc4, M, op_pinsrw, "pinsrw"),
	OPI(0xc5, R, op_pextrw, "pextrw"),
	OPI(0xc6, M, op_shufps, "shufps"),
	OP(0xd1, M, op_shift_xmm, "psrlw"),
	OP(0xd2, M, op_shift_xmm, "psrld"),
	OP(0xd3, M, op_shift_xmm, "psrlq"),
	OP(0xd4, M, op_paddq, "paddq"),
	OP(0xd5, M, op_pmullw, "pmullw"),
	OP(0xd6, M, op_movq_store, "movq"),
	OP(0xd7, R, op_movmsk, "pmovmskb"),
	OP(0xd8, M, op_psubusb, "psubusb"),
	OP(0xd9, M, op_psubusw, "psubusw"),
	OP(0xda, M, op_pminub, "pminub"),
	OP(0xdb, M, op_pand, "pand"),
	OP(0xdc, M, op_paddusb, "paddusb"),
	OP(0xdd, M, op_paddusw, "paddusw"),
	OP(0xde, M, op_pmaxub, "pmaxub"),
	OP(0xdf, M, op_pandn, "pandn"),
	OP(0xe0, M, op_pavgb, "pavgb"),
	OP(0xe1, M, op_shift_xmm, "psraw"),
	OP(0xe2, M, op_shift_xmm, "psrad"),
	OP(0xe3, M, op_pavgw, "pavgw"),
	OP(0xe4, M, op_pmulhuw, "pmulhuw"),
	OP(0xe5, M, op_pmulhw, "pmulhw"),
	OP(0xe7, MEM, op_movnt, "movntdq"),
	OP(0xe8, M, op_psubsb, "psubsb"),
	OP(0xe9, M, op_psubsw, "psubsw"),
	OP(0xea, M, op_pminsw, "pminsw"),
	OP(0xeb, M, op_por, "por"),
	OP(0xec, M, op_paddsb, "paddsb"),
	OP(0xed, M, op_paddsw, "paddsw"),
	OP(0xee, M, op_pmaxsw, "pmaxsw"),
	OP(0xef, M, op_pxor, "pxor"),
	OP(0xf1, M, op_shift_xmm, "psllw"),
	OP(0xf2, M, op_shift_xmm, "pslld"),
	OP(0xf3, M, op_shift_xmm, "psllq"),
	OP(0xf4, M, op_pmuludq, "pmuludq"),
	OP(0xf5, M, op_pmaddwd, "pmaddwd"),
	OP(0xf6, M, op_psadbw, "psadbw"),
	OP(0xf7, R, op_maskmovdqu, "maskmovdqu"),
	OP(0xf8, M, op_psubb, "psubb"),
	OP(0xf9, M, op_psubw, "psubw"),
	OP(0xfa, M, op_psubd, "psubd"),
	OP(0xfb, M, op_psubq, "psubq"),
	OP(0xfc, M, op_paddb, "paddb"),
	OP(0xfd, M, op_paddw, "paddw"),
	OP(0xfe, M, op_paddd, "paddd"),
	{ 0, 0, 0, 0, NULL, NULL },
};
