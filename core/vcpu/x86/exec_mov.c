/*
 * Data movement of the integer ISA: MOV in all its general-register,
 * immediate and moffs forms, MOVZX/MOVSX/MOVSXD, LEA, the exchanges
 * (XCHG, CMPXCHG, XADD, CMPXCHG8B/16B, with their LOCK'd forms as one
 * seq_cst read-modify-write through mem.c), the NOP/PAUSE of 0x90 and the
 * stack's PUSH/POP of registers, immediates and memory. It does not own
 * PUSHF/POPF, MOV to or from segment and control registers (exec_system.c)
 * or the flags (flags.c): CMPXCHG and XADD only record their lazy flags.
 * MOVBE (0F 38 F0/F1) is exec_bmi.c's.
 */
#include "x86_int.h"

/* The E operand at a size other than the instruction's (MOVZX...). */
static inline uint64_t get_E_at(struct x86_cpu *cpu, const struct x86_insn *in,
				unsigned int size)
{
	if (!in->mem)
		return x86_reg_get(cpu, in->rm, size, in->rex);
	return x86_read(cpu, x86_ea(cpu, in), size, in->seg);
}

/* ---- MOV ---------------------------------------------------------------- */

/* 88 /r and 89 /r: the decoder sets opsize, so Eb,Gb shares this. */
static void op_mov_Ev_Gv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_set_E(cpu, in, x86_get_G(cpu, in));
}

/* 8A /r and 8B /r. */
static void op_mov_Gv_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_set_G(cpu, in, x86_get_E(cpu, in));
}

/* C6 /0 ib and C7 /0 iz (the decoder sign-extends iz to 64 bits). */
static void op_mov_Ev_Iz(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_set_E(cpu, in, in->imm);
}

/* B0+r ib and B8+r iv (with REX.W the only 64-bit immediate). */
static void op_mov_Zv_Iv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_reg_set(cpu, in->reg, in->opsize, in->rex, in->imm);
}

/* The linear address of a moffs operand: an address-size offset with no
 * ModRM, in DS unless FS/GS override it (SDM vol. 2, MOV). */
static inline gva_t moffs_la(const struct x86_cpu *cpu,
			     const struct x86_insn *in)
{
	gva_t la = in->addrsize == 4 ? (uint32_t)in->imm : in->imm;

	if (in->seg == X86_FS || in->seg == X86_GS)
		la += cpu->seg[in->seg].base;
	return la;
}

/* A0 and A1. */
static void op_mov_rAX_Ov(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v = x86_read(cpu, moffs_la(cpu, in), in->opsize, in->seg);

	x86_reg_set(cpu, X86_RAX, in->opsize, true, v);
}

/* A2 and A3. */
static void op_mov_Ov_rAX(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_write(cpu, moffs_la(cpu, in), in->opsize, in->seg,
		  x86_reg_get(cpu, X86_RAX, in->opsize, true));
}

/* ---- MOVZX, MOVSX, MOVSXD, LEA ------------------------------------------ */

static void op_movzx_Gv_Eb(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_set_G(cpu, in, get_E_at(cpu, in, 1));
}

static void op_movzx_Gv_Ew(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_set_G(cpu, in, get_E_at(cpu, in, 2));
}

static void op_movsx_Gv_Eb(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_set_G(cpu, in, x86_sext(get_E_at(cpu, in, 1), 1));
}

static void op_movsx_Gv_Ew(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_set_G(cpu, in, x86_sext(get_E_at(cpu, in, 2), 2));
}

/* 63 /r: sign-extends a dword with REX.W; without it the source has the
 * operand size and this is a plain move (SDM vol. 2, MOVSX/MOVSXD). */
static void op_movsxd_Gv_Ed(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->opsize == 8 ? 4 : in->opsize;

	x86_set_G(cpu, in, x86_sext(get_E_at(cpu, in, size), size));
}

/* 8D /r: the effective address, with no segment base (x86_ea() adds FS/GS
 * bases), truncated to the address size and then to the operand size. */
static void op_lea_Gv_M(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t ea = (uint64_t)(int64_t)in->disp;

	if (in->base == X86_RIP_BASE)
		ea += cpu->next_rip;
	else if (in->base != X86_NO_REG)
		ea += cpu->gpr[in->base];
	if (in->index != X86_NO_REG)
		ea += cpu->gpr[in->index] << in->scale;
	if (in->addrsize == 4)
		ea &= 0xffffffffULL;
	x86_set_G(cpu, in, ea);
}

/* ---- exchanges ---------------------------------------------------------- */

static uint64_t rmw_xchg(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	(void)cpu;
	(void)old;
	return *(const uint64_t *)ctx;
}

/* 86 /r and 87 /r. With memory it is locked whether or not LOCK is
 * given (SDM vol. 2, XCHG), so one seq_cst exchange. */
static void op_xchg_Ev_Gv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t g = x86_get_G(cpu, in), e;

	if (in->mem) {
		e = x86_rmw(cpu, x86_ea(cpu, in), in->opsize, in->seg, true,
			    rmw_xchg, &g);
	} else {
		e = x86_reg_get(cpu, in->rm, in->opsize, in->rex);
		x86_reg_set(cpu, in->rm, in->opsize, in->rex, g);
	}
	x86_set_G(cpu, in, e);
}

/* 90+r: XCHG rAX with a register. 90 itself (no REX.B) is NOP, not
 * XCHG EAX,EAX, which would clear RAX[63:32]; F3 90 is PAUSE, a NOP
 * that tells the host's sibling thread we spin, and every
 * X86_PLE_WINDOW-th one exits so the vCPU layer can yield the host CPU
 * (pause-loop exiting: a spinning vCPU should not starve the one it
 * waits for, nor a requester waiting for it to leave guest mode). */
static void op_xchg_Zv_rAX(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t a, r;

	if (in->reg == X86_RAX) {
		if (in->rep == 0xf3) {
#if defined(__x86_64__) || defined(__i386__)
			__builtin_ia32_pause();
#endif
			if (++cpu->pauses >= X86_PLE_WINDOW) {
				cpu->pauses = 0;
				x86_exit_after(cpu, X86_EXIT_PAUSE);
			}
		}
		return;
	}
	a = x86_reg_get(cpu, X86_RAX, in->opsize, true);
	r = x86_reg_get(cpu, in->reg, in->opsize, true);
	x86_reg_set(cpu, X86_RAX, in->opsize, true, r);
	x86_reg_set(cpu, in->reg, in->opsize, true, a);
}

struct cmpxchg_ctx {
	uint64_t expected, desired;
};

static uint64_t rmw_cmpxchg(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	const struct cmpxchg_ctx *c = ctx;

	(void)cpu;
	return old == c->expected ? c->desired : old;
}

/*
 * 0F B0 /r and 0F B1 /r. A memory destination is always written, with
 * its own value when the comparison fails (SDM vol. 2, CMPXCHG). A
 * register destination is written only on success and the accumulator
 * only on failure, so with 32-bit operands only the register written has
 * its upper half cleared (what the hardware does).
 */
static void op_cmpxchg_Ev_Gv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->opsize;
	struct cmpxchg_ctx c = {
		.expected = x86_reg_get(cpu, X86_RAX, size, true),
		.desired = x86_get_G(cpu, in),
	};
	uint64_t old;

	if (in->mem) {
		old = x86_rmw(cpu, x86_ea(cpu, in), size, in->seg, in->lock,
			      rmw_cmpxchg, &c);
	} else {
		old = x86_reg_get(cpu, in->rm, size, in->rex);
		if (old == c.expected)
			x86_reg_set(cpu, in->rm, size, in->rex, c.desired);
	}
	if (old != c.expected)
		x86_reg_set(cpu, X86_RAX, size, true, old);
	/* The flags of CMP accumulator, destination. */
	x86_lf_set(&cpu->lf, X86_LF_SUB, size,
		   x86_trunc(c.expected - old, size), c.expected, old);
}

struct xadd_ctx {
	uint64_t src;
	unsigned int size;
};

static uint64_t rmw_xadd(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	const struct xadd_ctx *c = ctx;

	(void)cpu;
	return x86_trunc(old + c->src, c->size);
}

/* 0F C0 /r and 0F C1 /r: the destination gets the sum, the source the
 * old destination; with one register for both, the sum wins (it is
 * written last). */
static void op_xadd_Ev_Gv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	struct xadd_ctx c = { .src = x86_get_G(cpu, in), .size = in->opsize };
	uint64_t old;

	if (in->mem) {
		old = x86_rmw(cpu, x86_ea(cpu, in), c.size, in->seg, in->lock,
			      rmw_xadd, &c);
		x86_set_G(cpu, in, old);
	} else {
		old = x86_reg_get(cpu, in->rm, c.size, in->rex);
		x86_set_G(cpu, in, old);
		x86_reg_set(cpu, in->rm, c.size, in->rex, old + c.src);
	}
	x86_lf_set(&cpu->lf, X86_LF_ADD, c.size, x86_trunc(old + c.src, c.size),
		   old, c.src);
}

static void set_zf(struct x86_cpu *cpu, bool zf)
{
	uint64_t f = x86_rflags(cpu);

	x86_set_rflags(cpu, zf ? f | X86_RFLAGS_ZF : f & ~X86_RFLAGS_ZF);
}

/*
 * 0F C7 /1: CMPXCHG16B with REX.W (16-byte aligned, else #GP(0), one
 * atomic operation on the host), CMPXCHG8B without. Only ZF changes; RDX
 * and RAX are written only when the comparison fails (SDM vol. 2).
 */
static void op_cmpxchg8b_Mq(struct x86_cpu *cpu, const struct x86_insn *in)
{
	gva_t la = x86_ea(cpu, in);
	bool ok;

	if (in->rex_w) {
		uint64_t expected[2] = { cpu->gpr[X86_RAX], cpu->gpr[X86_RDX] };
		const uint64_t desired[2] = { cpu->gpr[X86_RBX],
					      cpu->gpr[X86_RCX] };

		ok = x86_cmpxchg16(cpu, la, in->seg, expected, desired);
		if (!ok) {
			cpu->gpr[X86_RAX] = expected[0];
			cpu->gpr[X86_RDX] = expected[1];
		}
	} else {
		struct cmpxchg_ctx c = {
			.expected = (uint32_t)cpu->gpr[X86_RAX] |
				    (uint64_t)(uint32_t)cpu->gpr[X86_RDX] << 32,
			.desired = (uint32_t)cpu->gpr[X86_RBX] |
				   (uint64_t)(uint32_t)cpu->gpr[X86_RCX] << 32,
		};
		uint64_t old =
			x86_rmw(cpu, la, 8, in->seg, in->lock, rmw_cmpxchg, &c);

		ok = old == c.expected;
		if (!ok) {
			cpu->gpr[X86_RAX] = (uint32_t)old;
			cpu->gpr[X86_RDX] = old >> 32;
		}
	}
	set_zf(cpu, ok);
}

/* ---- the stack ---------------------------------------------------------- */

/* 50+r: PUSH RSP pushes the value it had before the push. */
static void op_push_Zv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_push(cpu, x86_reg_get(cpu, in->reg, in->opsize, true), in->opsize);
}

/* 58+r: POP RSP leaves RSP = the value popped (written after the
 * increment, SDM vol. 2, POP). */
static void op_pop_Zv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v = x86_pop(cpu, in->opsize);

	x86_reg_set(cpu, in->reg, in->opsize, true, v);
}

/* 6A ib and 68 iz: the immediate is already sign-extended. */
static void op_push_Iz(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_push(cpu, in->imm, in->opsize);
}

/* FF /6: the operand is read (its address computed with the old RSP)
 * before the push. */
static void op_push_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_push(cpu, x86_get_E(cpu, in), in->opsize);
}

/*
 * 8F /0. An address based on RSP is computed with RSP already
 * incremented (SDM vol. 2, POP), but RSP is committed only after the
 * store, so a faulting store leaves RSP as it was.
 */
static void op_pop_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->opsize;
	uint64_t rsp = cpu->gpr[X86_RSP];
	uint64_t v = x86_read(cpu, rsp, size, X86_SS);
	gva_t la;

	cpu->gpr[X86_RSP] = rsp + size;
	if (!in->mem) {
		x86_reg_set(cpu, in->rm, size, true, v);
		return;
	}
	la = x86_ea(cpu, in);
	cpu->gpr[X86_RSP] = rsp;
	x86_write(cpu, la, size, in->seg, v);
	cpu->gpr[X86_RSP] = rsp + size;
}

/* ---- the table ---------------------------------------------------------- */

/* The +r opcodes: one entry per register, since the table is keyed by
 * the opcode byte; the decoder takes the register from its low bits. */
#define OPREG(op, imm, fl, fn, name)                                 \
	{                                                            \
		op, X86_GROUP_ANY, imm, (fl) | X86_D_OPREG, fn, name \
	}
#define OPREG8(op, imm, fl, fn, name)               \
	OPREG((op) + 0, imm, fl, fn, name),         \
		OPREG((op) + 1, imm, fl, fn, name), \
		OPREG((op) + 2, imm, fl, fn, name), \
		OPREG((op) + 3, imm, fl, fn, name), \
		OPREG((op) + 4, imm, fl, fn, name), \
		OPREG((op) + 5, imm, fl, fn, name), \
		OPREG((op) + 6, imm, fl, fn, name), \
		OPREG((op) + 7, imm, fl, fn, name)

#define M X86_D_MODRM
#define B X86_D_BYTE
#define L X86_D_LOCK
#define ANY X86_GROUP_ANY

const struct x86_opdesc x86_ops_mov[] = {
	{ 0x88, ANY, X86_IMM_NONE, M | B, op_mov_Ev_Gv, "mov Eb,Gb" },
	{ 0x89, ANY, X86_IMM_NONE, M, op_mov_Ev_Gv, "mov Ev,Gv" },
	{ 0x8a, ANY, X86_IMM_NONE, M | B, op_mov_Gv_Ev, "mov Gb,Eb" },
	{ 0x8b, ANY, X86_IMM_NONE, M, op_mov_Gv_Ev, "mov Gv,Ev" },
	{ 0xc6, 0, X86_IMM_B, M | B, op_mov_Ev_Iz, "mov Eb,Ib" },
	{ 0xc7, 0, X86_IMM_Z, M, op_mov_Ev_Iz, "mov Ev,Iz" },
	OPREG8(0xb0, X86_IMM_B, B, op_mov_Zv_Iv, "mov Zb,Ib"),
	OPREG8(0xb8, X86_IMM_V, 0, op_mov_Zv_Iv, "mov Zv,Iv"),
	{ 0xa0, ANY, X86_IMM_MOFFS, B, op_mov_rAX_Ov, "mov AL,Ob" },
	{ 0xa1, ANY, X86_IMM_MOFFS, 0, op_mov_rAX_Ov, "mov rAX,Ov" },
	{ 0xa2, ANY, X86_IMM_MOFFS, B, op_mov_Ov_rAX, "mov Ob,AL" },
	{ 0xa3, ANY, X86_IMM_MOFFS, 0, op_mov_Ov_rAX, "mov Ov,rAX" },

	{ X86_MAP_0F | 0xb6, ANY, X86_IMM_NONE, M, op_movzx_Gv_Eb,
	  "movzx Gv,Eb" },
	{ X86_MAP_0F | 0xb7, ANY, X86_IMM_NONE, M, op_movzx_Gv_Ew,
	  "movzx Gv,Ew" },
	{ X86_MAP_0F | 0xbe, ANY, X86_IMM_NONE, M, op_movsx_Gv_Eb,
	  "movsx Gv,Eb" },
	{ X86_MAP_0F | 0xbf, ANY, X86_IMM_NONE, M, op_movsx_Gv_Ew,
	  "movsx Gv,Ew" },
	{ 0x63, ANY, X86_IMM_NONE, M, op_movsxd_Gv_Ed, "movsxd Gv,Ed" },
	{ 0x8d, ANY, X86_IMM_NONE, M | X86_D_MEM, op_lea_Gv_M, "lea Gv,M" },

	{ 0x86, ANY, X86_IMM_NONE, M | B | L, op_xchg_Ev_Gv, "xchg Eb,Gb" },
	{ 0x87, ANY, X86_IMM_NONE, M | L, op_xchg_Ev_Gv, "xchg Ev,Gv" },
	OPREG8(0x90, X86_IMM_NONE, 0, op_xchg_Zv_rAX, "xchg Zv,rAX"),
	{ X86_MAP_0F | 0xb0, ANY, X86_IMM_NONE, M | B | L, op_cmpxchg_Ev_Gv,
	  "cmpxchg Eb,Gb" },
	{ X86_MAP_0F | 0xb1, ANY, X86_IMM_NONE, M | L, op_cmpxchg_Ev_Gv,
	  "cmpxchg Ev,Gv" },
	{ X86_MAP_0F | 0xc0, ANY, X86_IMM_NONE, M | B | L, op_xadd_Ev_Gv,
	  "xadd Eb,Gb" },
	{ X86_MAP_0F | 0xc1, ANY, X86_IMM_NONE, M | L, op_xadd_Ev_Gv,
	  "xadd Ev,Gv" },
	{ X86_MAP_0F | 0xc7, 1, X86_IMM_NONE, M | X86_D_MEM | L,
	  op_cmpxchg8b_Mq, "cmpxchg8b/16b Mq" },

	OPREG8(0x50, X86_IMM_NONE, X86_D_DEF64, op_push_Zv, "push Zv"),
	OPREG8(0x58, X86_IMM_NONE, X86_D_DEF64, op_pop_Zv, "pop Zv"),
	{ 0x6a, ANY, X86_IMM_SB, X86_D_DEF64, op_push_Iz, "push Ib" },
	{ 0x68, ANY, X86_IMM_Z, X86_D_DEF64, op_push_Iz, "push Iz" },
	{ 0xff, 6, X86_IMM_NONE, M | X86_D_DEF64, op_push_Ev, "push Ev" },
	{ 0x8f, 0, X86_IMM_NONE, M | X86_D_DEF64, op_pop_Ev, "pop Ev" },
	{ 0 },
};
