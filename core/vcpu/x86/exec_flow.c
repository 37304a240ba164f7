/*
 * Near control transfers of the integer ISA: JMP, Jcc, CALL and RET
 * (relative, indirect, RET imm16), LOOP/LOOPE/LOOPNE/JRCXZ, ENTER and
 * LEAVE, and the multi-byte and hint NOPs compilers emit. Far transfers,
 * INT/IRET and SYSCALL/SYSRET are exec_system.c's; condition codes come
 * from flags.c. In 64-bit mode near branches have a 64-bit operand size
 * whatever 66 says (the SDM's rule; AMD parts differ), and a target that
 * is not canonical is #GP(0) at the branch itself, before anything (RSP,
 * RCX) has changed.
 */
#include "x86_int.h"

static inline void jump_to(struct x86_cpu *cpu, uint64_t target)
{
	if (__builtin_expect(!x86_is_canonical(target), 0))
		x86_raise(cpu, X86_GP, 0);
	cpu->next_rip = target;
}

/* EB cb and E9 cd. */
static void op_jmp_Jz(struct x86_cpu *cpu, const struct x86_insn *in)
{
	jump_to(cpu, cpu->next_rip + in->imm);
}

/* 70+cc cb and 0F 80+cc cd. */
static void op_jcc_Jz(struct x86_cpu *cpu, const struct x86_insn *in)
{
	if (x86_cond(cpu, in->opcode & 0xf))
		jump_to(cpu, cpu->next_rip + in->imm);
}

/* E8 cd: the target is checked before the return address is pushed. */
static void op_call_Jz(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t target = cpu->next_rip + in->imm;

	if (__builtin_expect(!x86_is_canonical(target), 0))
		x86_raise(cpu, X86_GP, 0);
	x86_push(cpu, cpu->next_rip, 8);
	cpu->next_rip = target;
}

/* FF /2: the operand (address computed with the old RSP) is read before
 * the push. */
static void op_call_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t target = x86_get_E(cpu, in);

	if (__builtin_expect(!x86_is_canonical(target), 0))
		x86_raise(cpu, X86_GP, 0);
	x86_push(cpu, cpu->next_rip, 8);
	cpu->next_rip = target;
}

/* FF /4. */
static void op_jmp_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	jump_to(cpu, x86_get_E(cpu, in));
}

/* C3 and C2 iw: RSP moves only once the target is known good. */
static void op_ret_Iw(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t rsp = cpu->gpr[X86_RSP];
	uint64_t target = x86_read(cpu, rsp, 8, X86_SS);

	jump_to(cpu, target);
	cpu->gpr[X86_RSP] = rsp + 8 + in->imm;
}

/*
 * E0-E3: the count is RCX, or ECX with 67; writing ECX clears RCX[63:32]
 * like any 32-bit register write (what the hardware does). LOOPNE and
 * LOOPE also need ZF; JRCXZ does not count.
 */
static void op_loop_Jb(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t mask = in->addrsize == 8 ? ~0ULL : 0xffffffffULL;
	uint64_t count = cpu->gpr[X86_RCX] & mask;
	bool taken;

	switch (in->opcode) {
	case 0xe3:
		if (count == 0)
			jump_to(cpu, cpu->next_rip + in->imm);
		return;
	case 0xe2:
		taken = --count & mask;
		break;
	case 0xe1:
		taken = (--count & mask) && x86_cond(cpu, 4);
		break;
	default:
		taken = (--count & mask) && !x86_cond(cpu, 4);
		break;
	}
	if (taken)
		jump_to(cpu, cpu->next_rip + in->imm);
	cpu->gpr[X86_RCX] = count & mask;
}

/*
 * C8 iw ib. Every push goes to a local RSP and the registers change only
 * at the end, so a fault half way (a stack page missing) leaves RSP and
 * RBP as they were; the nesting level's display of outer frame pointers
 * is copied as the SDM's pseudocode does.
 */
static void op_enter_Iw_Ib(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = in->opsize, level = in->imm2 & 31;
	uint64_t rsp = cpu->gpr[X86_RSP], rbp = cpu->gpr[X86_RBP];
	uint64_t frame;

	rsp -= size;
	x86_write(cpu, rsp, size, X86_SS, rbp);
	frame = rsp;
	if (level) {
		for (unsigned int i = 1; i < level; i++) {
			rbp -= size;
			uint64_t v = x86_read(cpu, rbp, size, X86_SS);

			rsp -= size;
			x86_write(cpu, rsp, size, X86_SS, v);
		}
		rsp -= size;
		x86_write(cpu, rsp, size, X86_SS, frame);
	}
	x86_reg_set(cpu, X86_RBP, size, true, frame);
	cpu->gpr[X86_RSP] = rsp - in->imm;
}

/* C9: RSP = RBP, then pop RBP; nothing moves if the pop faults. */
static void op_leave(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t rbp = cpu->gpr[X86_RBP];
	uint64_t v = x86_read(cpu, rbp, in->opsize, X86_SS);

	cpu->gpr[X86_RSP] = rbp + in->opsize;
	x86_reg_set(cpu, X86_RBP, in->opsize, true, v);
}

/* 0F 1F (NOP Ev) and the hint space 0F 18-1E: PREFETCHh, reserved hint
 * NOPs and ENDBR64 (F3 0F 1E FA, CET is not reported); 0F 0D, PREFETCH
 * and PREFETCHW (CPUID 3DNowPrefetch; gcc emits PREFETCHW for
 * __builtin_prefetch(p, 1) from -march=broadwell on), memory forms only
 * (every ModRM.reg: AMD's aliases). The ModRM memory operand is never
 * accessed, so a prefetch never faults. */
static void op_nop_Ev(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)cpu;
	(void)in;
}

#define M X86_D_MODRM
#define BR (X86_D_BRANCH | X86_D_FORCE64)
#define ANY X86_GROUP_ANY
#define JCC(op, imm, fn)                    \
	{                                   \
		op, ANY, imm, BR, fn, "jcc" \
	}
#define JCC16(op, imm, fn)                                        \
	JCC((op) + 0, imm, fn), JCC((op) + 1, imm, fn),           \
		JCC((op) + 2, imm, fn), JCC((op) + 3, imm, fn),   \
		JCC((op) + 4, imm, fn), JCC((op) + 5, imm, fn),   \
		JCC((op) + 6, imm, fn), JCC((op) + 7, imm, fn),   \
		JCC((op) + 8, imm, fn), JCC((op) + 9, imm, fn),   \
		JCC((op) + 10, imm, fn), JCC((op) + 11, imm, fn), \
		JCC((op) + 12, imm, fn), JCC((op) + 13, imm, fn), \
		JCC((op) + 14, imm, fn), JCC((op) + 15, imm, fn)

const struct x86_opdesc x86_ops_flow[] = {
	{ 0xeb, ANY, X86_IMM_SB, BR, op_jmp_Jz, "jmp Jb" },
	{ 0xe9, ANY, X86_IMM_Z, BR, op_jmp_Jz, "jmp Jz" },
	JCC16(0x70, X86_IMM_SB, op_jcc_Jz),
	JCC16(X86_MAP_0F | 0x80, X86_IMM_Z, op_jcc_Jz),
	{ 0xe8, ANY, X86_IMM_Z, BR, op_call_Jz, "call Jz" },
	{ 0xff, 2, X86_IMM_NONE, M | BR, op_call_Ev, "call Ev" },
	{ 0xff, 4, X86_IMM_NONE, M | BR, op_jmp_Ev, "jmp Ev" },
	{ 0xc3, ANY, X86_IMM_NONE, BR, op_ret_Iw, "ret" },
	{ 0xc2, ANY, X86_IMM_W, BR, op_ret_Iw, "ret Iw" },
	{ 0xe0, ANY, X86_IMM_SB, BR, op_loop_Jb, "loopne Jb" },
	{ 0xe1, ANY, X86_IMM_SB, BR, op_loop_Jb, "loope Jb" },
	{ 0xe2, ANY, X86_IMM_SB, BR, op_loop_Jb, "loop Jb" },
	{ 0xe3, ANY, X86_IMM_SB, BR, op_loop_Jb, "jrcxz Jb" },
	{ 0xc8, ANY, X86_IMM_WB, X86_D_DEF64, op_enter_Iw_Ib, "enter Iw,Ib" },
	{ 0xc9, ANY, X86_IMM_NONE, X86_D_DEF64, op_leave, "leave" },
	{ X86_MAP_0F | 0x0d, ANY, X86_IMM_NONE, M | X86_D_MEM, op_nop_Ev,
	  "prefetch/prefetchw" },
	{ X86_MAP_0F | 0x18, ANY, X86_IMM_NONE, M, op_nop_Ev, "prefetch/nop" },
	{ X86_MAP_0F | 0x19, ANY, X86_IMM_NONE, M, op_nop_Ev, "nop Ev" },
	{ X86_MAP_0F | 0x1a, ANY, X86_IMM_NONE, M, op_nop_Ev, "nop Ev" },
	{ X86_MAP_0F | 0x1b, ANY, X86_IMM_NONE, M, op_nop_Ev, "nop Ev" },
	{ X86_MAP_0F | 0x1c, ANY, X86_IMM_NONE, M, op_nop_Ev, "nop Ev" },
	{ X86_MAP_0F | 0x1d, ANY, X86_IMM_NONE, M, op_nop_Ev, "nop Ev" },
	{ X86_MAP_0F | 0x1e, ANY, X86_IMM_NONE, M, op_nop_Ev, "endbr/nop" },
	{ X86_MAP_0F | 0x1f, ANY, X86_IMM_NONE, M, op_nop_Ev, "nop Ev" },
	{ 0 },
};
