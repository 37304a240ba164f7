/*
 * System instructions of the software CPU: HLT, CLI/STI, PUSHF/POPF,
 * CLAC/STAC, MOV to and from control and segment registers, far
 * CALL/JMP/RET, IRET, INT n/INT3, SYSCALL/SYSRET, SWAPGS, the descriptor
 * table loads and stores (LGDT/LIDT/SGDT/SIDT/LLDT/SLDT/LTR/STR,
 * SMSW/LMSW), INVLPG, INVPCID, RDTSC/RDTSCP, RDMSR/WRMSR, CLTS,
 * WBINVD/INVD, the fences and UD2; with them the segment loading rules
 * of 64-bit mode (descriptor checks, null selectors, error codes), the
 * PCID rules of CR3 and CR4 and x86_mode_changed(). It does not deliver
 * events (except.c), answer CPUID (cpuid.c) or do port I/O (exec_io.c).
 *
 * This CPU runs 64-bit code only: a far transfer, IRET or SYSRET that
 * would enter compatibility mode raises #GP(selector) (SYSRET: #UD)
 * instead, and call gates and task switches are not implemented (a far
 * CALL/JMP to a system descriptor raises #GP(selector)).
 */
#include <stdatomic.h>
#include <x86intrin.h>

#include "x86_int.h"

static void require_cpl0(struct x86_cpu *cpu)
{
	if (cpu->cpl != 0)
		x86_raise(cpu, X86_GP, 0);
}

static unsigned int iopl(struct x86_cpu *cpu)
{
	return (unsigned int)(x86_rflags(cpu) >> 12) & 3;
}

void x86_mode_changed(struct x86_cpu *cpu)
{
	/* SDM vol. 3, 5.5: CPL is the RPL of CS (it equals SS.DPL). */
	cpu->cpl = cpu->seg[X86_CS].sel & 3;
	/* SDM vol. 3, 4.10.1: with CR4.PCIDE the current PCID is CR3[11:0];
	 * without, it is 000H. */
	cpu->pcid_tag = (cpu->cr4 & X86_CR4_PCIDE) ?
				(cpu->cr3 & 0xfffULL) << X86_TLB_PCID_SHIFT :
				0;
}

/* ---- descriptors ------------------------------------------------------ */

/* Fields of a raw 8-byte segment descriptor (SDM vol. 3, 3.4.5). */
#define D_TYPE(d) ((unsigned int)((d) >> 40) & 0xf)
#define D_S(d) (((d) >> 44) & 1)
#define D_DPL(d) ((unsigned int)((d) >> 45) & 3)
#define D_P(d) (((d) >> 47) & 1)
#define D_L(d) (((d) >> 53) & 1)
#define D_DB(d) (((d) >> 54) & 1)
#define D_IS_CODE(d) (D_S(d) && (D_TYPE(d) & 8))
#define D_CONFORMING(d) (D_IS_CODE(d) && (D_TYPE(d) & 4))
#define D_WRITABLE_DATA(d) (D_S(d) && (D_TYPE(d) & 0xa) == 2)

static uint32_t sel_error(uint16_t sel)
{
	return sel & 0xfffcu;
}

static bool sel_is_null(uint16_t sel)
{
	return (sel & 0xfffcu) == 0;
}

/*
 * Reads the descriptor of a non-null selector from the GDT or LDT (an
 * implicit supervisor access). bytes is 8, or 16 for a system
 * descriptor of 64-bit mode; hi receives the second quadword. A
 * selector beyond the table's limit raises #GP(selector).
 */
static uint64_t read_descriptor(struct x86_cpu *cpu, uint16_t sel,
				unsigned int bytes, gva_t *where, uint64_t *hi)
{
	uint64_t base = cpu->gdt.base;
	uint32_t limit = cpu->gdt.limit;
	uint32_t off = sel & ~7u;

	if (sel & 4) {
		if (cpu->ldtr.attr & X86_SEG_UNUSABLE)
			x86_raise(cpu, X86_GP, sel_error(sel));
		base = cpu->ldtr.base;
		limit = cpu->ldtr.limit;
	}
	if (off + bytes - 1 > limit)
		x86_raise(cpu, X86_GP, sel_error(sel));
	*where = base + off;
	if (hi)
		*hi = x86_read_sys(cpu, *where + 8, 8);
	return x86_read_sys(cpu, *where, 8);
}

/* Loading a code or data descriptor sets its accessed bit (SDM vol. 3,
 * 3.4.5.1). One byte store: a concurrent writer of the same descriptor
 * byte is the guest's race, as on hardware without a locked update. */
static void mark_accessed(struct x86_cpu *cpu, uint64_t raw, gva_t where)
{
	if (D_S(raw) && !(raw & (1ULL << 40)))
		x86_write_sys(cpu, where + 5, 1, ((raw >> 40) & 0xff) | 1);
}

static void seg_from_descriptor(struct x86_segment *s, uint16_t sel,
				uint64_t raw)
{
	s->sel = sel;
	s->base = ((raw >> 16) & 0xffffff) | ((raw >> 32) & 0xff000000ULL);
	s->limit = (uint32_t)((raw & 0xffff) | ((raw >> 32) & 0xf0000));
	if ((raw >> 55) & 1)
		s->limit = (s->limit << 12) | 0xfff;
	s->attr = (uint32_t)((raw >> 40) & 0xf0ff);
}

static void seg_null(struct x86_segment *s, uint16_t sel, unsigned int dpl)
{
	s->sel = sel;
	s->base = 0;
	s->limit = 0;
	s->attr = X86_SEG_UNUSABLE | (dpl << 5);
}

/*
 * MOV to DS/ES/FS/GS/SS (SDM vol. 2, MOV; vol. 3, 5.4 and 5.6). In 64-bit
 * mode a null selector may be loaded into DS/ES/FS/GS, and into SS at
 * CPL < 3 when its RPL is CPL. Loading a null selector into FS or GS
 * clears the base as Intel processors do.
 */
static void load_data_seg(struct x86_cpu *cpu, unsigned int sreg, uint16_t sel)
{
	uint32_t err = sel_error(sel);
	unsigned int rpl = sel & 3, dpl;
	gva_t where;
	uint64_t raw;

	if (sel_is_null(sel)) {
		if (sreg == X86_SS && (cpu->cpl == 3 || rpl != cpu->cpl))
			x86_raise(cpu, X86_GP, 0);
		seg_null(&cpu->seg[sreg], sel, sreg == X86_SS ? cpu->cpl : 0);
		return;
	}
	raw = read_descriptor(cpu, sel, 8, &where, NULL);
	dpl = D_DPL(raw);
	if (sreg == X86_SS) {
		if (rpl != cpu->cpl || !D_WRITABLE_DATA(raw) || dpl != cpu->cpl)
			x86_raise(cpu, X86_GP, err);
		if (!D_P(raw))
			x86_raise(cpu, X86_SSF, err);
	} else {
		/* Data, or readable code; privilege checks except for
		 * conforming code. */
		if (!D_S(raw) || (D_IS_CODE(raw) && !(D_TYPE(raw) & 2)))
			x86_raise(cpu, X86_GP, err);
		if (!D_CONFORMING(raw) && (rpl > dpl || cpu->cpl > dpl))
			x86_raise(cpu, X86_GP, err);
		if (!D_P(raw))
			x86_raise(cpu, X86_NP, err);
	}
	mark_accessed(cpu, raw, where);
	seg_from_descriptor(&cpu->seg[sreg], sel, raw);
}

/* A 64-bit code segment: L = 1 and D = 0 (SDM vol. 3, 5.2.1). */
static void require_64bit_code(struct x86_cpu *cpu, uint64_t raw, uint16_t sel)
{
	if (!D_L(raw) || D_DB(raw))
		x86_raise(cpu, X86_GP, sel_error(sel));
}

/* The target of a far JMP or CALL through memory (SDM vol. 2, JMP and
 * CALL, protected-mode branches): a code segment at the current CPL. */
static uint64_t far_branch_target(struct x86_cpu *cpu, uint16_t sel,
				  gva_t *where)
{
	uint32_t err = sel_error(sel);
	uint64_t raw;

	if (sel_is_null(sel))
		x86_raise(cpu, X86_GP, 0);
	raw = read_descriptor(cpu, sel, 8, where, NULL);
	if (!D_IS_CODE(raw))
		x86_raise(cpu, X86_GP, err); /* incl. call gates, TSS */
	if (D_CONFORMING(raw) ?
		    D_DPL(raw) > cpu->cpl :
		    ((sel & 3u) > cpu->cpl || D_DPL(raw) != cpu->cpl))
		x86_raise(cpu, X86_GP, err);
	if (!D_P(raw))
		x86_raise(cpu, X86_NP, err);
	require_64bit_code(cpu, raw, sel);
	return raw;
}

/* The code segment of a far RET or IRET: its RPL is the new CPL, which
 * may not be more privileged than the current one. */
static uint64_t return_code_target(struct x86_cpu *cpu, uint16_t sel,
				   gva_t *where)
{
	uint32_t err = sel_error(sel);
	unsigned int rpl = sel & 3;
	uint64_t raw;

	if (sel_is_null(sel))
		x86_raise(cpu, X86_GP, 0);
	raw = read_descriptor(cpu, sel, 8, where, NULL);
	if (!D_IS_CODE(raw) || rpl < cpu->cpl)
		x86_raise(cpu, X86_GP, err);
	if (D_CONFORMING(raw) ? D_DPL(raw) > rpl : D_DPL(raw) != rpl)
		x86_raise(cpu, X86_GP, err);
	if (!D_P(raw))
		x86_raise(cpu, X86_NP, err);
	require_64bit_code(cpu, raw, sel);
	return raw;
}

/* The SS of a return to new_cpl (far RET to an outer level, IRET): in
 * 64-bit mode a null SS is allowed only for CPL < 3 with RPL = CPL.
 * Returns 0 for a null selector. */
static uint64_t return_stack_target(struct x86_cpu *cpu, uint16_t sel,
				    unsigned int new_cpl, gva_t *where)
{
	uint32_t err = sel_error(sel);
	uint64_t raw;

	if (sel_is_null(sel)) {
		if (new_cpl == 3 || (sel & 3u) != new_cpl)
			x86_raise(cpu, X86_GP, 0);
		return 0;
	}
	raw = read_descriptor(cpu, sel, 8, where, NULL);
	if ((sel & 3u) != new_cpl || !D_WRITABLE_DATA(raw) ||
	    D_DPL(raw) != new_cpl)
		x86_raise(cpu, X86_GP, err);
	if (!D_P(raw))
		x86_raise(cpu, X86_SSF, err);
	return raw;
}

static void commit_cs(struct x86_cpu *cpu, uint16_t sel, unsigned int cpl,
		      uint64_t raw)
{
	seg_from_descriptor(&cpu->seg[X86_CS], (uint16_t)((sel & ~3u) | cpl),
			    raw);
}

static void commit_ss(struct x86_cpu *cpu, uint16_t sel, unsigned int cpl,
		      uint64_t raw)
{
	if (raw)
		seg_from_descriptor(&cpu->seg[X86_SS], sel, raw);
	else
		seg_null(&cpu->seg[X86_SS], sel, cpl);
}

/* After a return to an outer level, data segments the new CPL may not
 * use become null (SDM vol. 2, RET and IRET). */
static void null_inaccessible_segs(struct x86_cpu *cpu, unsigned int cpl)
{
	static const unsigned int sregs[] = { X86_ES, X86_DS, X86_FS, X86_GS };

	for (unsigned int i = 0; i < 4; i++) {
		struct x86_segment *s = &cpu->seg[sregs[i]];
		bool code = (s->attr & X86_SEG_S) && (s->attr & 8);
		bool conforming = code && (s->attr & 4);

		if (s->attr & X86_SEG_UNUSABLE)
			continue;
		if (!conforming && X86_SEG_DPL(s->attr) < cpl) {
			s->sel = 0;
			s->attr |= X86_SEG_UNUSABLE;
		}
	}
}

/* ---- simple instructions ---------------------------------------------- */

static void op_hlt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	require_cpl0(cpu);
	x86_exit_after(cpu, X86_EXIT_HLT)->hlt.interrupts_enabled =
		(x86_rflags(cpu) & X86_RFLAGS_IF) != 0;
}

static void op_cli(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	/* SDM vol. 2, CLI: IOPL-sensitive; no VME/PVI (not reported). */
	if (cpu->cpl > iopl(cpu))
		x86_raise(cpu, X86_GP, 0);
	x86_set_rflags(cpu, x86_rflags(cpu) & ~X86_RFLAGS_IF);
}

static void op_sti(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t rflags = x86_rflags(cpu);

	(void)in;
	if (cpu->cpl > iopl(cpu))
		x86_raise(cpu, X86_GP, 0);
	/* SDM vol. 2, STI: setting IF blocks interrupts until the next
	 * instruction has completed. */
	if (!(rflags & X86_RFLAGS_IF))
		cpu->int_shadow = true;
	x86_set_rflags(cpu, rflags | X86_RFLAGS_IF);
}

static void op_pushf(struct x86_cpu *cpu, const struct x86_insn *in)
{
	/* VM and RF are cleared in the image (SDM vol. 2, PUSHF). */
	uint64_t v = x86_rflags(cpu) & ~(X86_RFLAGS_VM | X86_RFLAGS_RF);

	x86_push(cpu, x86_trunc(v, in->opsize), in->opsize);
}

static void op_popf(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t old = x86_rflags(cpu);
	uint64_t mask = X86_RFLAGS_ARITH | X86_RFLAGS_TF | X86_RFLAGS_DF |
			X86_RFLAGS_NT | X86_RFLAGS_AC | X86_RFLAGS_ID;
	uint64_t v = x86_pop(cpu, in->opsize);

	/* SDM vol. 2, POPF (64-bit mode): IOPL changes only at CPL0, IF
	 * only at CPL <= IOPL, silently; VM, VIF, VIP are kept and RF is
	 * cleared. */
	if (cpu->cpl == 0)
		mask |= X86_RFLAGS_IOPL | X86_RFLAGS_IF;
	else if (cpu->cpl <= ((old >> 12) & 3))
		mask |= X86_RFLAGS_IF;
	if (in->opsize == 2)
		mask &= 0xffff;
	x86_set_rflags(cpu, ((old & ~mask) | (v & mask)) & ~X86_RFLAGS_RF);
}

static void op_clts(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	require_cpl0(cpu);
	cpu->cr0 &= ~X86_CR0_TS;
}

/* WBINVD, INVD: caches are coherent host memory here. */
static void op_wbinvd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	require_cpl0(cpu);
}

static void op_ud2(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	x86_raise(cpu, X86_UD, 0);
}

/*
 * LFENCE, MFENCE, SFENCE (0F AE /5 /6 /7, register forms). Guest loads
 * are host acquire loads and guest stores release stores (DESIGN.md
 * section 3), so only MFENCE adds ordering: the store-load order of a
 * guest's Dekker-style protocol, pairing with the MFENCE (or LOCK'd
 * access) on the other vCPU. LFENCE and SFENCE keep fences of their
 * own kind for clarity; they pair with the guest's matching fence.
 */
static void op_fence(struct x86_cpu *cpu, const struct x86_insn *in)
{
	if (in->rep || in->opsize_prefix)
		x86_raise(cpu, X86_UD, 0);
	switch ((in->modrm >> 3) & 7) {
	case 5:
		atomic_thread_fence(memory_order_acquire);
		break;
	case 6:
		atomic_thread_fence(memory_order_seq_cst);
		break;
	default:
		atomic_thread_fence(memory_order_release);
		break;
	}
}

/* ---- interrupts and returns ------------------------------------------- */

static void op_int_Ib(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_raise_event(cpu, (unsigned int)in->imm & 0xff, X86_EV_SOFT_INT,
			false, 0);
}

static void op_int3(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	x86_raise_event(cpu, X86_BP, X86_EV_SOFT_INT, false, 0);
}

/* INTO is invalid in 64-bit mode. */
static void op_into(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	x86_raise(cpu, X86_UD, 0);
}

static uint64_t stack_read(struct x86_cpu *cpu, uint64_t rsp, unsigned int off,
			   unsigned int size)
{
	return x86_read(cpu, rsp + off, size, X86_SS);
}

/*
 * IRET in IA-32e mode (SDM vol. 2, IRET; vol. 3, 6.14.3): NT set is
 * #GP(0); RIP, CS, RFLAGS, RSP and SS are popped at the operand size
 * whatever the privilege levels, and SS:RSP is always reloaded.
 */
static void op_iret(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int os = in->opsize, old_cpl = cpu->cpl, new_cpl;
	uint64_t old = x86_rflags(cpu), rsp = cpu->gpr[X86_RSP];
	uint64_t rip, fl, new_rsp, cs_raw, ss_raw, mask;
	uint16_t cs, ss;
	gva_t cs_where, ss_where = 0;

	if (old & X86_RFLAGS_NT)
		x86_raise(cpu, X86_GP, 0);
	rip = stack_read(cpu, rsp, 0, os);
	cs = (uint16_t)stack_read(cpu, rsp, os, 2);
	fl = stack_read(cpu, rsp, 2 * os, os);
	new_rsp = stack_read(cpu, rsp, 3 * os, os);
	ss = (uint16_t)stack_read(cpu, rsp, 4 * os, 2);

	cs_raw = return_code_target(cpu, cs, &cs_where);
	new_cpl = cs & 3;
	ss_raw = return_stack_target(cpu, ss, new_cpl, &ss_where);
	if (!x86_is_canonical(rip))
		x86_raise(cpu, X86_GP, 0);
	mark_accessed(cpu, cs_raw, cs_where);
	if (ss_raw)
		mark_accessed(cpu, ss_raw, ss_where);

	/* Which RFLAGS bits the image may change depends on the CPL and
	 * IOPL before the return. RF is dropped: no instruction
	 * breakpoints exist here for it to suppress. */
	mask = X86_RFLAGS_ARITH | X86_RFLAGS_TF | X86_RFLAGS_DF | X86_RFLAGS_NT;
	if (os >= 4)
		mask |= X86_RFLAGS_AC | X86_RFLAGS_ID;
	if (old_cpl <= ((old >> 12) & 3))
		mask |= X86_RFLAGS_IF;
	if (old_cpl == 0) {
		mask |= X86_RFLAGS_IOPL;
		if (os >= 4)
			mask |= X86_RFLAGS_VIF | X86_RFLAGS_VIP;
	}
	if (os == 2)
		mask &= 0xffff;

	commit_cs(cpu, cs, new_cpl, cs_raw);
	commit_ss(cpu, ss, new_cpl, ss_raw);
	cpu->gpr[X86_RSP] = new_rsp;
	x86_set_rflags(cpu, (old & ~mask) | (fl & mask));
	cpu->next_rip = x86_trunc(rip, os);
	if (new_cpl > old_cpl)
		null_inaccessible_segs(cpu, new_cpl);
	x86_mode_changed(cpu);
}

/* Far RET (CB, CA iw) in 64-bit mode (SDM vol. 2, RET): to the same
 * level pops RIP and CS; to an outer level also RSP and SS, and the
 * immediate is released from both stacks. */
static void op_retf(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int os = in->opsize, new_cpl;
	uint64_t rsp = cpu->gpr[X86_RSP], imm = in->imm & 0xffff;
	uint64_t rip, cs_raw, ss_raw = 0, new_rsp;
	uint16_t cs, ss = 0;
	gva_t cs_where, ss_where = 0;

	rip = stack_read(cpu, rsp, 0, os);
	cs = (uint16_t)stack_read(cpu, rsp, os, 2);
	cs_raw = return_code_target(cpu, cs, &cs_where);
	new_cpl = cs & 3;
	new_rsp = rsp + 2 * os + imm;
	if (new_cpl > cpu->cpl) {
		uint64_t outer = new_rsp;

		new_rsp = stack_read(cpu, outer, 0, os) + imm;
		ss = (uint16_t)stack_read(cpu, outer, os, 2);
		ss_raw = return_stack_target(cpu, ss, new_cpl, &ss_where);
	}
	if (!x86_is_canonical(rip))
		x86_raise(cpu, X86_GP, 0);
	mark_accessed(cpu, cs_raw, cs_where);
	if (ss_raw)
		mark_accessed(cpu, ss_raw, ss_where);

	if (new_cpl > cpu->cpl) {
		commit_ss(cpu, ss, new_cpl, ss_raw);
		null_inaccessible_segs(cpu, new_cpl);
	}
	commit_cs(cpu, cs, new_cpl, cs_raw);
	cpu->gpr[X86_RSP] = new_rsp;
	cpu->next_rip = x86_trunc(rip, os);
	x86_mode_changed(cpu);
}

/* FF /3 and FF /5: the memory operand is offset then selector (m16:16,
 * m16:32, or m16:64 with REX.W). */
static void far_pointer(struct x86_cpu *cpu, const struct x86_insn *in,
			uint64_t *off, uint16_t *sel)
{
	gva_t ea = x86_ea(cpu, in);

	*off = x86_read(cpu, ea, in->opsize, in->seg);
	*sel = (uint16_t)x86_read(cpu, ea + in->opsize, 2, in->seg);
}

static void op_jmp_far_Mp(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t off, raw;
	uint16_t sel;
	gva_t where;

	far_pointer(cpu, in, &off, &sel);
	raw = far_branch_target(cpu, sel, &where);
	if (!x86_is_canonical(off))
		x86_raise(cpu, X86_GP, 0);
	mark_accessed(cpu, raw, where);
	commit_cs(cpu, sel, cpu->cpl, raw);
	cpu->next_rip = off;
}

static void op_call_far_Mp(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int os = in->opsize;
	uint64_t off, raw, rsp = cpu->gpr[X86_RSP];
	uint16_t sel;
	gva_t where;

	far_pointer(cpu, in, &off, &sel);
	raw = far_branch_target(cpu, sel, &where);
	if (!x86_is_canonical(off))
		x86_raise(cpu, X86_GP, 0);
	/* Both pushes before any state changes, so a fault on the second
	 * restarts the instruction cleanly. */
	x86_write(cpu, rsp - os, os, X86_SS, cpu->seg[X86_CS].sel);
	x86_write(cpu, rsp - 2 * os, os, X86_SS, x86_trunc(cpu->next_rip, os));
	mark_accessed(cpu, raw, where);
	commit_cs(cpu, sel, cpu->cpl, raw);
	cpu->gpr[X86_RSP] = rsp - 2 * os;
	cpu->next_rip = off;
}

/* SYSCALL and SYSRET (SDM vol. 2): fixed flat segments from IA32_STAR;
 * the descriptors in the GDT are not read. */
#define FLAT_CODE64_ATTR (0x9bu | X86_SEG_L | X86_SEG_G)
#define FLAT_DATA_ATTR (0x93u | X86_SEG_DB | X86_SEG_G)

static void flat_seg(struct x86_segment *s, uint16_t sel, uint32_t attr)
{
	s->sel = sel;
	s->base = 0;
	s->limit = 0xffffffff;
	s->attr = attr;
}

static void op_syscall(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t rflags = x86_rflags(cpu) & ~X86_RFLAGS_RF;
	uint16_t sel = (uint16_t)(cpu->star >> 32);

	(void)in;
	if (!(cpu->efer & X86_EFER_SCE))
		x86_raise(cpu, X86_UD, 0);
	cpu->gpr[X86_RCX] = cpu->next_rip;
	cpu->gpr[X86_R11] = rflags;
	x86_set_rflags(cpu, rflags & ~cpu->sfmask);
	flat_seg(&cpu->seg[X86_CS], sel & 0xfffc, FLAT_CODE64_ATTR);
	flat_seg(&cpu->seg[X86_SS], (uint16_t)(sel + 8), FLAT_DATA_ATTR);
	cpu->next_rip = cpu->lstar;
	x86_mode_changed(cpu);
}

static void op_sysret(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint16_t sel = (uint16_t)(cpu->star >> 48);
	uint64_t rcx = cpu->gpr[X86_RCX];

	if (!(cpu->efer & X86_EFER_SCE))
		x86_raise(cpu, X86_UD, 0);
	require_cpl0(cpu);
	/* Without REX.W SYSRET enters compatibility mode, which this CPU
	 * does not run. */
	if (!in->rex_w)
		x86_raise(cpu, X86_UD, 0);
	if (!x86_is_canonical(rcx))
		x86_raise(cpu, X86_GP, 0);
	x86_set_rflags(cpu, (cpu->gpr[X86_R11] & 0x3c7fd7) | 2);
	flat_seg(&cpu->seg[X86_CS], (uint16_t)((sel + 16) | 3),
		 FLAT_CODE64_ATTR | (3u << 5));
	flat_seg(&cpu->seg[X86_SS], (uint16_t)((sel + 8) | 3),
		 FLAT_DATA_ATTR | (3u << 5));
	cpu->next_rip = rcx;
	x86_mode_changed(cpu);
}

/* ---- control registers ------------------------------------------------ */

#define CR0_VALID                                                         \
	(X86_CR0_PE | X86_CR0_MP | X86_CR0_EM | X86_CR0_TS | X86_CR0_ET | \
	 X86_CR0_NE | X86_CR0_WP | X86_CR0_AM | X86_CR0_NW | X86_CR0_CD | \
	 X86_CR0_PG)
/* CR4 bits of the features CPUID reports (cpuid.c). */
#define CR4_VALID                                                  \
	(X86_CR4_TSD | X86_CR4_PAE | X86_CR4_PGE | X86_CR4_PCIDE | \
	 X86_CR4_SMEP | X86_CR4_SMAP)
/* CR3 bits from MAXPHYADDR (46) up are reserved (SDM vol. 3, 4.5, tables
 * 4-12 and 4-13); so is bit 63 of a MOV to CR3 without CR4.PCIDE, while
 * with it bit 63 is the no-flush hint and never reaches CR3 (4.10.4.1).
 * No linear-address masking is reported, so bits 61 and 62 stay
 * reserved too. */
/* CR4 bits whose change the MMU must see (its roles, the PCID rules). */
#define CR4_PAGING                                                  \
	(X86_CR4_PGE | X86_CR4_PAE | X86_CR4_PCIDE | X86_CR4_SMEP | \
	 X86_CR4_SMAP)
#define CR3_RESERVED (~0ULL << 46)
#define CR3_NOFLUSH (1ULL << 63)
#define CR3_PCID 0xfffULL

static void paging_exit(struct x86_cpu *cpu, unsigned int reg, uint64_t old,
			uint64_t new)
{
	struct x86_exit *exit = x86_exit_after(cpu, X86_EXIT_PAGING);

	exit->paging.reg = (uint8_t)reg;
	exit->paging.old_value = old;
	exit->paging.new_value = new;
	exit->paging.noflush = false;
}

/* SDM vol. 2, MOV to CR; vol. 3, 2.5 and 9.8.5. The CPU is always in
 * 64-bit mode, so paging and PAE can never be turned off. */
static void write_cr0(struct x86_cpu *cpu, uint64_t v)
{
	uint64_t old = cpu->cr0;

	if (v >> 32)
		x86_raise(cpu, X86_GP, 0);
	/* Reserved bits of CR0[31:0] are ignored; ET is fixed at 1. */
	v = (v & CR0_VALID) | X86_CR0_ET;
	if (((v & X86_CR0_PG) && !(v & X86_CR0_PE)) ||
	    ((v & X86_CR0_NW) && !(v & X86_CR0_CD)) ||
	    ((cpu->efer & X86_EFER_LMA) && !(v & X86_CR0_PG)))
		x86_raise(cpu, X86_GP, 0);
	cpu->cr0 = v;
	/* The soft TLB caches rights of sptes made for one CR0.WP (the MMU
	 * encodes WP=0 in them), so a WP change drops them all. */
	if ((old ^ v) & (X86_CR0_PG | X86_CR0_WP))
		x86_tlb_flush(cpu);
	if ((old ^ v) & (X86_CR0_PG | X86_CR0_PE | X86_CR0_WP))
		paging_exit(cpu, 0, old, v);
}

/*
 * MOV to CR3 (SDM vol. 2, MOV to CR; vol. 3, 4.10.4.1). With CR4.PCIDE,
 * CR3[11:0] is the new current PCID (4.10.1); bit 63 of the source set
 * means no invalidation at all, clear means the non-global translations
 * of the new PCID go. Without PCIDE the current PCID is 000H and the
 * non-global translations go. The paging exit comes either way: the MMU
 * must load the root of the new CR3, whose PCID bits it ignores.
 */
static void write_cr3(struct x86_cpu *cpu, uint64_t v)
{
	uint64_t old = cpu->cr3;
	bool pcide = cpu->cr4 & X86_CR4_PCIDE;
	bool noflush = pcide && (v & CR3_NOFLUSH);

	if (pcide)
		v &= ~CR3_NOFLUSH;
	if (v & CR3_RESERVED)
		x86_raise(cpu, X86_GP, 0);
	cpu->cr3 = v;
	x86_mode_changed(cpu);
	if (noflush) {
		/* Not required to invalidate anything (4.10.4.1). */
	} else if (pcide) {
		/* Global entries only exist while CR4.PGE is set. */
		x86_tlb_flush_pcid(cpu, (uint16_t)(v & CR3_PCID));
	} else if (cpu->cr4 & X86_CR4_PGE) {
		x86_tlb_flush_nonglobal(cpu);
	} else {
		x86_tlb_flush(cpu);
	}
	paging_exit(cpu, 3, old, v);
	cpu->exit->paging.noflush = noflush;
}

/*
 * MOV to CR4 (SDM vol. 2, MOV to CR; vol. 3, 4.10.1 and 4.10.4.1).
 * CR4.PCIDE may be set only in IA-32e mode and, when it goes from 0 to 1,
 * only while CR3[11:0] is 000H (so the current PCID stays 000H);
 * otherwise #GP(0). Clearing it makes the current PCID 000H again and
 * drops every translation of every PCID.
 */
static void write_cr4(struct x86_cpu *cpu, uint64_t v)
{
	uint64_t old = cpu->cr4;

	if ((v & ~CR4_VALID) ||
	    ((cpu->efer & X86_EFER_LMA) && !(v & X86_CR4_PAE)))
		x86_raise(cpu, X86_GP, 0);
	if ((v & X86_CR4_PCIDE) &&
	    (!(cpu->efer & X86_EFER_LMA) ||
	     (!(old & X86_CR4_PCIDE) && (cpu->cr3 & CR3_PCID))))
		x86_raise(cpu, X86_GP, 0);
	cpu->cr4 = v;
	x86_mode_changed(cpu);
	/* SDM vol. 3, 4.10.4.1: changing PGE, or PCIDE from 1 to 0, drops
	 * every entry of every PCID, global ones too; changing PAE, or SMEP
	 * from 0 to 1, those of the current PCID. Dropping everything for
	 * any change of these (and of SMAP, whose rights the entries cache)
	 * is always allowed. */
	if ((old ^ v) & CR4_PAGING) {
		x86_tlb_flush(cpu);
		paging_exit(cpu, 4, old, v);
	}
}

/* 0F 20: MOV r64, CRn. 0F 22: MOV CRn, r64. CR8 is the TPR. */
static void op_mov_Rd_Cd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v;

	switch (in->reg) {
	case 0:
		v = cpu->cr0;
		break;
	case 2:
		v = cpu->cr2;
		break;
	case 3:
		v = cpu->cr3;
		break;
	case 4:
		v = cpu->cr4;
		break;
	case 8:
		v = cpu->cr8;
		break;
	default:
		x86_raise(cpu, X86_UD, 0);
	}
	require_cpl0(cpu);
	cpu->gpr[in->rm] = v;
}

static void op_mov_Cd_Rd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v = cpu->gpr[in->rm];

	if (in->reg != 0 && in->reg != 2 && in->reg != 3 && in->reg != 4 &&
	    in->reg != 8)
		x86_raise(cpu, X86_UD, 0);
	require_cpl0(cpu);
	switch (in->reg) {
	case 0:
		write_cr0(cpu, v);
		break;
	case 2:
		cpu->cr2 = v;
		break;
	case 3:
		write_cr3(cpu, v);
		break;
	case 4:
		write_cr4(cpu, v);
		break;
	default:
		if (v >> 4)
			x86_raise(cpu, X86_GP, 0);
		cpu->cr8 = v;
		break;
	}
}

/* ---- segment registers ------------------------------------------------ */

/* 8C: MOV r/m, Sreg. A register destination gets the selector
 * zero-extended at 32 and 64 bits; memory gets 16 bits. */
static void op_mov_Ev_Sw(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int sreg = in->reg & 7;
	uint16_t sel;

	if (sreg > X86_GS)
		x86_raise(cpu, X86_UD, 0);
	sel = cpu->seg[sreg].sel;
	if (in->mem)
		x86_write(cpu, x86_ea(cpu, in), 2, in->seg, sel);
	else
		x86_reg_set(cpu, in->rm, in->opsize, in->rex, sel);
}

static uint16_t get_Ew(struct x86_cpu *cpu, const struct x86_insn *in)
{
	if (in->mem)
		return (uint16_t)x86_read(cpu, x86_ea(cpu, in), 2, in->seg);
	return (uint16_t)cpu->gpr[in->rm];
}

static void set_Ew_sel(struct x86_cpu *cpu, const struct x86_insn *in,
		       uint64_t v)
{
	if (in->mem)
		x86_write(cpu, x86_ea(cpu, in), 2, in->seg, v & 0xffff);
	else
		x86_reg_set(cpu, in->rm, in->opsize, in->rex, v);
}

/* 8E: MOV Sreg, r/m. MOV to CS is #UD; MOV to SS blocks events for one
 * instruction (SDM vol. 2, MOV). */
static void op_mov_Sw_Ew(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int sreg = in->reg & 7;
	uint16_t sel;

	if (sreg == X86_CS || sreg > X86_GS)
		x86_raise(cpu, X86_UD, 0);
	sel = get_Ew(cpu, in);
	load_data_seg(cpu, sreg, sel);
	if (sreg == X86_SS)
		cpu->int_shadow = true;
}

/* ---- descriptor tables (0F 00, 0F 01) ---------------------------------- */

static void store_dtable(struct x86_cpu *cpu, const struct x86_insn *in,
			 const struct x86_dtable *dt)
{
	gva_t ea = x86_ea(cpu, in);

	/* 64-bit mode stores a 2-byte limit and an 8-byte base. */
	x86_probe_write(cpu, ea, 10, in->seg);
	x86_write(cpu, ea, 2, in->seg, dt->limit);
	x86_write(cpu, ea + 2, 8, in->seg, dt->base);
}

static void load_dtable(struct x86_cpu *cpu, const struct x86_insn *in,
			struct x86_dtable *dt)
{
	gva_t ea;
	uint64_t limit, base;

	require_cpl0(cpu);
	ea = x86_ea(cpu, in);
	limit = x86_read(cpu, ea, 2, in->seg);
	base = x86_read(cpu, ea + 2, 8, in->seg);
	if (!x86_is_canonical(base))
		x86_raise(cpu, X86_GP, 0);
	dt->limit = (uint16_t)limit;
	dt->base = base;
}

static uint64_t set_busy(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	(void)cpu;
	(void)ctx;
	/* Only an available 64-bit TSS (type 9) becomes busy (type 0xB). */
	return (old & 0x1f) == 0x09 ? old | 2 : old;
}

/*
 * LTR (SDM vol. 2, LTR; vol. 3, 7.2.3 and 7.2.4): a 16-byte available
 * 64-bit TSS descriptor in the GDT. The busy bit is set with one locked
 * read-modify-write, so two vCPUs loading the same TSS cannot both
 * succeed.
 */
static void op_ltr(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint16_t sel = get_Ew(cpu, in);
	uint32_t err = sel_error(sel);
	uint64_t raw, hi, base;
	gva_t where;

	require_cpl0(cpu);
	if (sel_is_null(sel))
		x86_raise(cpu, X86_GP, 0);
	if (sel & 4)
		x86_raise(cpu, X86_GP, err);
	raw = read_descriptor(cpu, sel, 16, &where, &hi);
	if (D_S(raw) || D_TYPE(raw) != 9 || ((hi >> 40) & 0x1f))
		x86_raise(cpu, X86_GP, err);
	if (!D_P(raw))
		x86_raise(cpu, X86_NP, err);
	base = ((raw >> 16) & 0xffffff) | ((raw >> 32) & 0xff000000ULL) |
	       (hi << 32);
	if (!x86_is_canonical(base))
		x86_raise(cpu, X86_GP, err);
	if ((x86_rmw(cpu, where + 5, 1, X86_DS, true, set_busy, NULL) & 0x1f) !=
	    0x09)
		x86_raise(cpu, X86_GP, err);
	seg_from_descriptor(&cpu->tr, sel, raw | (2ULL << 40));
	cpu->tr.base = base;
}

static void op_lldt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint16_t sel = get_Ew(cpu, in);
	uint32_t err = sel_error(sel);
	uint64_t raw, hi, base;
	gva_t where;

	require_cpl0(cpu);
	if (sel_is_null(sel)) {
		seg_null(&cpu->ldtr, sel, 0);
		return;
	}
	if (sel & 4)
		x86_raise(cpu, X86_GP, err);
	raw = read_descriptor(cpu, sel, 16, &where, &hi);
	if (D_S(raw) || D_TYPE(raw) != 2 || ((hi >> 40) & 0x1f))
		x86_raise(cpu, X86_GP, err);
	if (!D_P(raw))
		x86_raise(cpu, X86_NP, err);
	base = ((raw >> 16) & 0xffffff) | ((raw >> 32) & 0xff000000ULL) |
	       (hi << 32);
	if (!x86_is_canonical(base))
		x86_raise(cpu, X86_GP, err);
	seg_from_descriptor(&cpu->ldtr, sel, raw);
	cpu->ldtr.base = base;
}

/* SLDT and STR (allowed at CPL3: UMIP is not reported). */
static void op_sldt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	set_Ew_sel(cpu, in, cpu->ldtr.sel);
}

static void op_str(struct x86_cpu *cpu, const struct x86_insn *in)
{
	set_Ew_sel(cpu, in, cpu->tr.sel);
}

static void op_grp6(struct x86_cpu *cpu, const struct x86_insn *in)
{
	switch ((in->modrm >> 3) & 7) {
	case 0:
		op_sldt(cpu, in);
		break;
	case 1:
		op_str(cpu, in);
		break;
	case 2:
		op_lldt(cpu, in);
		break;
	default:
		op_ltr(cpu, in);
		break;
	}
}

static void op_clac_stac(struct x86_cpu *cpu, bool set)
{
	uint64_t rflags = x86_rflags(cpu);

	/* SDM vol. 2, CLAC/STAC: #UD at CPL3. */
	if (cpu->cpl == 3)
		x86_raise(cpu, X86_UD, 0);
	x86_set_rflags(cpu,
		       set ? rflags | X86_RFLAGS_AC : rflags & ~X86_RFLAGS_AC);
}

static uint64_t guest_tsc(const struct x86_cpu *cpu)
{
	return __rdtsc() + (uint64_t)cpu->tsc_offset;
}

static void require_tsc_allowed(struct x86_cpu *cpu)
{
	if ((cpu->cr4 & X86_CR4_TSD) && cpu->cpl != 0)
		x86_raise(cpu, X86_GP, 0);
}

static void op_rdtsc(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t tsc;

	(void)in;
	require_tsc_allowed(cpu);
	tsc = guest_tsc(cpu);
	cpu->gpr[X86_RAX] = tsc & 0xffffffff;
	cpu->gpr[X86_RDX] = tsc >> 32;
}

static void op_rdtscp(struct x86_cpu *cpu)
{
	uint64_t tsc;

	require_tsc_allowed(cpu);
	tsc = guest_tsc(cpu);
	cpu->gpr[X86_RAX] = tsc & 0xffffffff;
	cpu->gpr[X86_RDX] = tsc >> 32;
	cpu->gpr[X86_RCX] = cpu->tsc_aux & 0xffffffff;
}

static void op_swapgs(struct x86_cpu *cpu)
{
	uint64_t t = cpu->seg[X86_GS].base;

	require_cpl0(cpu);
	cpu->seg[X86_GS].base = cpu->kernel_gs_base;
	cpu->kernel_gs_base = t;
}

/* INVLPG: a non-canonical address names no translation and is a NOP. */
static void op_invlpg(struct x86_cpu *cpu, const struct x86_insn *in)
{
	gva_t ea;
	struct x86_exit *exit;

	require_cpl0(cpu);
	ea = x86_ea(cpu, in);
	if (!x86_is_canonical(ea))
		return;
	x86_tlb_flush_page(cpu, ea);
	exit = x86_exit_after(cpu, X86_EXIT_INVLPG);
	exit->invlpg.gva = ea;
	exit->invlpg.all = false;
}

/* INVPCID types (SDM vol. 2, INVPCID). */
enum {
	INVPCID_ADDRESS, /* one address of one PCID, globals kept */
	INVPCID_SINGLE, /* every address of one PCID, globals kept */
	INVPCID_ALL_GLOBAL, /* every PCID, globals too */
	INVPCID_ALL, /* every PCID, globals kept */
};

/*
 * 66 0F 38 82 /r: INVPCID r64, m128 (SDM vol. 2, INVPCID; vol. 3,
 * 4.10.4.1). The register is the type (all 64 bits in 64-bit mode,
 * whatever REX.W says); the memory operand is the 16-byte descriptor:
 * PCID in bits 11:0, bits 63:12 reserved, the linear address in bits
 * 127:64. The decoder has already refused the register form and LOCK
 * (#UD). Type > 3, reserved descriptor bits, a non-canonical address for
 * type 0 and a nonzero PCID for types 0 and 1 without CR4.PCIDE (which
 * caches nothing for other PCIDs) are #GP(0). The MMU then syncs what
 * it shadows, for every address unless the type names one.
 */
static void op_invpcid(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t type, desc, la;
	uint16_t pcid;
	gva_t ea;
	struct x86_exit *exit;

	/* 66 is the mandatory prefix; none, or F2/F3, name no instruction
	 * (opcode map, SDM vol. 2, table A-4). */
	if (!in->opsize_prefix || in->rep)
		x86_raise(cpu, X86_UD, 0);
	require_cpl0(cpu);
	type = cpu->gpr[in->reg];
	if (type > INVPCID_ALL)
		x86_raise(cpu, X86_GP, 0);
	ea = x86_ea(cpu, in);
	desc = x86_read(cpu, ea, 8, in->seg);
	la = x86_read(cpu, ea + 8, 8, in->seg);
	if (desc & ~CR3_PCID)
		x86_raise(cpu, X86_GP, 0);
	pcid = (uint16_t)desc;
	if (!(cpu->cr4 & X86_CR4_PCIDE) && type <= INVPCID_SINGLE && pcid)
		x86_raise(cpu, X86_GP, 0);
	switch (type) {
	case INVPCID_ADDRESS:
		if (!x86_is_canonical(la))
			x86_raise(cpu, X86_GP, 0);
		x86_tlb_flush_page_pcid(cpu, la, pcid, false);
		break;
	case INVPCID_SINGLE:
		x86_tlb_flush_pcid(cpu, pcid);
		break;
	case INVPCID_ALL_GLOBAL:
		x86_tlb_flush(cpu);
		break;
	default:
		/* Without CR4.PCIDE only PCID 000H has entries: the same. */
		x86_tlb_flush_nonglobal(cpu);
		break;
	}
	exit = x86_exit_after(cpu, X86_EXIT_INVLPG);
	exit->invlpg.gva = type == INVPCID_ADDRESS ? la : 0;
	exit->invlpg.all = type != INVPCID_ADDRESS;
}

/* SMSW (allowed at CPL3 without UMIP) and LMSW, which changes only PE,
 * MP, EM and TS and cannot clear PE (SDM vol. 2). */
static void op_smsw(struct x86_cpu *cpu, const struct x86_insn *in)
{
	set_Ew_sel(cpu, in, in->mem ? cpu->cr0 & 0xffff : cpu->cr0);
}

static void op_lmsw(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint16_t v = get_Ew(cpu, in);

	require_cpl0(cpu);
	cpu->cr0 = (cpu->cr0 & ~0xeULL) | (v & 0xf) | (cpu->cr0 & X86_CR0_PE);
}

static void op_grp7(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int reg = (in->modrm >> 3) & 7, rm = in->modrm & 7;

	if (!in->mem) {
		if (reg == 1 && rm == 2)
			op_clac_stac(cpu, false);
		else if (reg == 1 && rm == 3)
			op_clac_stac(cpu, true);
		else if (reg == 4)
			op_smsw(cpu, in);
		else if (reg == 6)
			op_lmsw(cpu, in);
		else if (reg == 7 && rm == 0)
			op_swapgs(cpu);
		else if (reg == 7 && rm == 1)
			op_rdtscp(cpu);
		else
			x86_raise(cpu, X86_UD, 0);
		return;
	}
	switch (reg) {
	case 0:
		store_dtable(cpu, in, &cpu->gdt);
		break;
	case 1:
		store_dtable(cpu, in, &cpu->idt);
		break;
	case 2:
		load_dtable(cpu, in, &cpu->gdt);
		break;
	case 3:
		load_dtable(cpu, in, &cpu->idt);
		break;
	case 4:
		op_smsw(cpu, in);
		break;
	case 6:
		op_lmsw(cpu, in);
		break;
	case 7:
		op_invlpg(cpu, in);
		break;
	default:
		x86_raise(cpu, X86_UD, 0);
	}
}

/* ---- MSRs ------------------------------------------------------------- */

#define EFER_VALID (X86_EFER_SCE | X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE)
/* IA32_APIC_BASE: BSP (8), enable (11) and the base below MAXPHYADDR;
 * x2APIC (10) is not reported. */
#define APIC_BASE_VALID (((1ULL << 46) - 1) & ~0x6ffULL)

static bool pat_valid(uint64_t v)
{
	for (unsigned int i = 0; i < 8; i++) {
		uint8_t t = (uint8_t)(v >> (8 * i));

		/* SDM vol. 3, 13.12.2: types 2, 3 and 8-255 are reserved. */
		if (t > 7 || t == 2 || t == 3)
			return false;
	}
	return true;
}

static void op_rdmsr(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v;

	(void)in;
	require_cpl0(cpu);
	switch ((uint32_t)cpu->gpr[X86_RCX]) {
	case MSR_IA32_TSC:
		v = guest_tsc(cpu);
		break;
	case MSR_IA32_APIC_BASE:
		v = cpu->apic_base;
		break;
	case MSR_IA32_MISC_ENABLE:
		v = cpu->misc_enable;
		break;
	case MSR_IA32_PAT:
		v = cpu->pat;
		break;
	case MSR_EFER:
		v = cpu->efer;
		break;
	case MSR_STAR:
		v = cpu->star;
		break;
	case MSR_LSTAR:
		v = cpu->lstar;
		break;
	case MSR_CSTAR:
		v = cpu->cstar;
		break;
	case MSR_SFMASK:
		v = cpu->sfmask;
		break;
	case MSR_FS_BASE:
		v = cpu->seg[X86_FS].base;
		break;
	case MSR_GS_BASE:
		v = cpu->seg[X86_GS].base;
		break;
	case MSR_KERNEL_GS_BASE:
		v = cpu->kernel_gs_base;
		break;
	case MSR_TSC_AUX:
		v = cpu->tsc_aux;
		break;
	default:
		x86_raise(cpu, X86_GP, 0);
	}
	cpu->gpr[X86_RAX] = v & 0xffffffff;
	cpu->gpr[X86_RDX] = v >> 32;
}

/* SDM vol. 3, 2.2.1 and vol. 4: LME cannot change while paging is on,
 * LMA is read-only (a write keeps the current value), NXE and SCE are
 * free. An NXE change alters what the shadow tables encode. */
static void write_efer(struct x86_cpu *cpu, uint64_t v)
{
	uint64_t old = cpu->efer;

	if (v & ~EFER_VALID)
		x86_raise(cpu, X86_GP, 0);
	if ((cpu->cr0 & X86_CR0_PG) && ((old ^ v) & X86_EFER_LME))
		x86_raise(cpu, X86_GP, 0);
	v = (v & ~X86_EFER_LMA) | (old & X86_EFER_LMA);
	cpu->efer = v;
	/* Cached translations encode what bit 63 meant when they were
	 * made. */
	if ((old ^ v) & X86_EFER_NXE) {
		x86_tlb_flush(cpu);
		paging_exit(cpu, 8, old, v);
	}
}

static void require_canonical(struct x86_cpu *cpu, uint64_t v)
{
	if (!x86_is_canonical(v))
		x86_raise(cpu, X86_GP, 0);
}

static void op_wrmsr(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v = (cpu->gpr[X86_RDX] << 32) |
		     (cpu->gpr[X86_RAX] & 0xffffffff);

	(void)in;
	require_cpl0(cpu);
	switch ((uint32_t)cpu->gpr[X86_RCX]) {
	case MSR_IA32_TSC:
		cpu->tsc_offset = (int64_t)(v - __rdtsc());
		break;
	case MSR_IA32_APIC_BASE:
		if (v & ~APIC_BASE_VALID)
			x86_raise(cpu, X86_GP, 0);
		cpu->apic_base = v;
		break;
	case MSR_IA32_MISC_ENABLE:
		cpu->misc_enable = v;
		break;
	case MSR_IA32_PAT:
		if (!pat_valid(v))
			x86_raise(cpu, X86_GP, 0);
		cpu->pat = v;
		break;
	case MSR_EFER:
		write_efer(cpu, v);
		break;
	case MSR_STAR:
		cpu->star = v;
		break;
	case MSR_LSTAR:
		require_canonical(cpu, v);
		cpu->lstar = v;
		break;
	case MSR_CSTAR:
		require_canonical(cpu, v);
		cpu->cstar = v;
		break;
	case MSR_SFMASK:
		/* Bits 63:32 are reserved and read as zero. */
		cpu->sfmask = v & 0xffffffff;
		break;
	case MSR_FS_BASE:
		require_canonical(cpu, v);
		cpu->seg[X86_FS].base = v;
		break;
	case MSR_GS_BASE:
		require_canonical(cpu, v);
		cpu->seg[X86_GS].base = v;
		break;
	case MSR_KERNEL_GS_BASE:
		require_canonical(cpu, v);
		cpu->kernel_gs_base = v;
		break;
	case MSR_TSC_AUX:
		if (v >> 32)
			x86_raise(cpu, X86_GP, 0);
		cpu->tsc_aux = v;
		break;
	default:
		x86_raise(cpu, X86_GP, 0);
	}
}

static void op_cpuid(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint32_t out[4];

	(void)in;
	x86_cpuid(cpu, (uint32_t)cpu->gpr[X86_RAX], (uint32_t)cpu->gpr[X86_RCX],
		  out);
	cpu->gpr[X86_RAX] = out[0];
	cpu->gpr[X86_RBX] = out[1];
	cpu->gpr[X86_RCX] = out[2];
	cpu->gpr[X86_RDX] = out[3];
}

/* ---- the table -------------------------------------------------------- */

#define M X86_D_MODRM
#define BR X86_D_BRANCH

const struct x86_opdesc x86_ops_system[] = {
	{ 0xf4, X86_GROUP_ANY, X86_IMM_NONE, 0, op_hlt, "hlt" },
	{ 0xfa, X86_GROUP_ANY, X86_IMM_NONE, 0, op_cli, "cli" },
	{ 0xfb, X86_GROUP_ANY, X86_IMM_NONE, 0, op_sti, "sti" },
	{ 0x9c, X86_GROUP_ANY, X86_IMM_NONE, X86_D_DEF64, op_pushf, "pushf" },
	{ 0x9d, X86_GROUP_ANY, X86_IMM_NONE, X86_D_DEF64, op_popf, "popf" },
	{ 0x8c, X86_GROUP_ANY, X86_IMM_NONE, M, op_mov_Ev_Sw, "mov" },
	{ 0x8e, X86_GROUP_ANY, X86_IMM_NONE, M, op_mov_Sw_Ew, "mov" },
	{ 0xff, 3, X86_IMM_NONE, M | X86_D_MEM | BR, op_call_far_Mp, "lcall" },
	{ 0xff, 5, X86_IMM_NONE, M | X86_D_MEM | BR, op_jmp_far_Mp, "ljmp" },
	{ 0xca, X86_GROUP_ANY, X86_IMM_W, BR, op_retf, "lret" },
	{ 0xcb, X86_GROUP_ANY, X86_IMM_NONE, BR, op_retf, "lret" },
	{ 0xcc, X86_GROUP_ANY, X86_IMM_NONE, BR, op_int3, "int3" },
	{ 0xcd, X86_GROUP_ANY, X86_IMM_B, BR, op_int_Ib, "int" },
	{ 0xce, X86_GROUP_ANY, X86_IMM_NONE, 0, op_into, "into" },
	{ 0xcf, X86_GROUP_ANY, X86_IMM_NONE, BR, op_iret, "iret" },
	{ X86_MAP_0F | 0x00, 0, X86_IMM_NONE, M, op_grp6, "sldt" },
	{ X86_MAP_0F | 0x00, 1, X86_IMM_NONE, M, op_grp6, "str" },
	{ X86_MAP_0F | 0x00, 2, X86_IMM_NONE, M, op_grp6, "lldt" },
	{ X86_MAP_0F | 0x00, 3, X86_IMM_NONE, M, op_grp6, "ltr" },
	{ X86_MAP_0F | 0x01, 0, X86_IMM_NONE, M, op_grp7, "sgdt" },
	{ X86_MAP_0F | 0x01, 1, X86_IMM_NONE, M, op_grp7, "sidt" },
	{ X86_MAP_0F | 0x01, 2, X86_IMM_NONE, M, op_grp7, "lgdt" },
	{ X86_MAP_0F | 0x01, 3, X86_IMM_NONE, M, op_grp7, "lidt" },
	{ X86_MAP_0F | 0x01, 4, X86_IMM_NONE, M, op_grp7, "smsw" },
	{ X86_MAP_0F | 0x01, 6, X86_IMM_NONE, M, op_grp7, "lmsw" },
	{ X86_MAP_0F | 0x01, 7, X86_IMM_NONE, M | BR, op_grp7, "invlpg" },
	{ X86_MAP_0F | 0x05, X86_GROUP_ANY, X86_IMM_NONE, BR, op_syscall,
	  "syscall" },
	{ X86_MAP_0F | 0x06, X86_GROUP_ANY, X86_IMM_NONE, 0, op_clts, "clts" },
	{ X86_MAP_0F | 0x07, X86_GROUP_ANY, X86_IMM_NONE, BR, op_sysret,
	  "sysret" },
	{ X86_MAP_0F | 0x08, X86_GROUP_ANY, X86_IMM_NONE, 0, op_wbinvd,
	  "invd" },
	{ X86_MAP_0F | 0x09, X86_GROUP_ANY, X86_IMM_NONE, 0, op_wbinvd,
	  "wbinvd" },
	{ X86_MAP_0F | 0x0b, X86_GROUP_ANY, X86_IMM_NONE, 0, op_ud2, "ud2" },
	{ X86_MAP_0F | 0x20, X86_GROUP_ANY, X86_IMM_NONE,
	  M | X86_D_REG | X86_D_FORCE64, op_mov_Rd_Cd, "mov" },
	{ X86_MAP_0F | 0x22, X86_GROUP_ANY, X86_IMM_NONE,
	  M | X86_D_REG | X86_D_FORCE64 | BR, op_mov_Cd_Rd, "mov" },
	{ X86_MAP_0F | 0x30, X86_GROUP_ANY, X86_IMM_NONE, BR, op_wrmsr,
	  "wrmsr" },
	{ X86_MAP_0F | 0x31, X86_GROUP_ANY, X86_IMM_NONE, 0, op_rdtsc,
	  "rdtsc" },
	{ X86_MAP_0F | 0x32, X86_GROUP_ANY, X86_IMM_NONE, 0, op_rdmsr,
	  "rdmsr" },
	{ X86_MAP_0F | 0xa2, X86_GROUP_ANY, X86_IMM_NONE, 0, op_cpuid,
	  "cpuid" },
	{ X86_MAP_0F | 0xae, 5, X86_IMM_NONE, M | X86_D_REG, op_fence,
	  "lfence" },
	{ X86_MAP_0F | 0xae, 6, X86_IMM_NONE, M | X86_D_REG, op_fence,
	  "mfence" },
	{ X86_MAP_0F | 0xae, 7, X86_IMM_NONE, M | X86_D_REG, op_fence,
	  "sfence" },
	{ X86_MAP_0F38 | 0x82, X86_GROUP_ANY, X86_IMM_NONE,
	  M | X86_D_MEM | X86_D_FORCE64 | BR, op_invpcid, "invpcid" },
	{ 0, 0, 0, 0, NULL, NULL },
};
