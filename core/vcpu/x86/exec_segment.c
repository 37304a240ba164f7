/*
 * Segmentation in the software CPU's 64-bit mode: descriptor reads and
 * checks (SDM vol. 3 ch. 3 and 5), segment register loads (MOV to and
 * from Sreg), far CALL/JMP/RET, INT n/INT3/INTO, IRET, SYSCALL/SYSRET,
 * LTR/LLDT/STR/SLDT (0F 00) with the TSS busy bit, and the descriptor
 * probes VERR/VERW (0F 00 /4 /5), LAR and LSL (0F 02, 0F 03). Null selectors,
 * error codes and the privilege rules are here; event delivery is
 * except.c's.
 *
 * This CPU runs 64-bit code only: a far transfer, IRET or SYSRET that
 * would enter compatibility mode raises #GP(selector) (SYSRET: #UD)
 * instead, and call gates and task switches are not implemented (a far
 * CALL/JMP to a system descriptor raises #GP(selector)).
 */
#include <stdatomic.h>

#include "x86_int.h"

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
	/* SDM vol. 3, 6.7.1: IRET ends the blocking of NMIs (here when it
	 * completes: a faulting IRET leaves them blocked). */
	cpu->nmi_blocked = false;
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
	x86_require_cpl0(cpu);
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

/* 8E: MOV Sreg, r/m. MOV to CS is #UD; MOV to SS blocks events for one
 * instruction (SDM vol. 2, MOV). */
static void op_mov_Sw_Ew(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int sreg = in->reg & 7;
	uint16_t sel;

	if (sreg == X86_CS || sreg > X86_GS)
		x86_raise(cpu, X86_UD, 0);
	sel = x86_get_Ew16(cpu, in);
	load_data_seg(cpu, sreg, sel);
	if (sreg == X86_SS)
		x86_set_int_shadow(cpu);
}

static uint64_t set_busy(struct x86_cpu *cpu, uint64_t old, void *ctx)
{
	(void)cpu;
	(void)ctx;
	/* Only an available 64-bit TSS (type 9) becomes busy (type 0xB). */
	return (old & 0x1f) == 0x09 ? old | 2 : old;
}

/*
 * The 16-byte system descriptor of type `type` (2: LDT, 9: available
 * 64-bit TSS) that a non-null GDT selector names, checked as LLDT and LTR
 * check it (SDM vol. 2, LLDT and LTR): #GP(sel) for an LDT selector, a
 * wrong type or a non-canonical base, #NP(sel) when not present. Returns
 * the low quadword; *base gets the 64-bit base and *where the
 * descriptor's linear address.
 */
static uint64_t load_system_descriptor(struct x86_cpu *cpu, uint16_t sel,
				       unsigned int type, uint64_t *base,
				       gva_t *where)
{
	uint32_t err = sel_error(sel);
	uint64_t raw, hi;

	if (sel & 4)
		x86_raise(cpu, X86_GP, err);
	raw = read_descriptor(cpu, sel, 16, where, &hi);
	if (D_S(raw) || D_TYPE(raw) != type || ((hi >> 40) & 0x1f))
		x86_raise(cpu, X86_GP, err);
	if (!D_P(raw))
		x86_raise(cpu, X86_NP, err);
	*base = ((raw >> 16) & 0xffffff) | ((raw >> 32) & 0xff000000ULL) |
		(hi << 32);
	if (!x86_is_canonical(*base))
		x86_raise(cpu, X86_GP, err);
	return raw;
}

/*
 * LTR (SDM vol. 2, LTR; vol. 3, 7.2.3 and 7.2.4): a 16-byte available
 * 64-bit TSS descriptor in the GDT. The busy bit is set with one locked
 * read-modify-write, so two vCPUs loading the same TSS cannot both
 * succeed.
 */
static void op_ltr(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint16_t sel = x86_get_Ew16(cpu, in);
	uint64_t raw, base;
	gva_t where;

	x86_require_cpl0(cpu);
	if (sel_is_null(sel))
		x86_raise(cpu, X86_GP, 0);
	raw = load_system_descriptor(cpu, sel, 9, &base, &where);
	if ((x86_rmw(cpu, where + 5, 1, X86_DS, true, set_busy, NULL) & 0x1f) !=
	    0x09)
		x86_raise(cpu, X86_GP, sel_error(sel));
	seg_from_descriptor(&cpu->tr, sel, raw | (2ULL << 40));
	cpu->tr.base = base;
}

static void op_lldt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint16_t sel = x86_get_Ew16(cpu, in);
	uint64_t raw, base;
	gva_t where;

	x86_require_cpl0(cpu);
	if (sel_is_null(sel)) {
		seg_null(&cpu->ldtr, sel, 0);
		return;
	}
	raw = load_system_descriptor(cpu, sel, 2, &base, &where);
	seg_from_descriptor(&cpu->ldtr, sel, raw);
	cpu->ldtr.base = base;
}

/* SLDT and STR (allowed at CPL3: UMIP is not reported). */
static void op_sldt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_set_Ew_sel(cpu, in, cpu->ldtr.sel);
}

static void op_str(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_set_Ew_sel(cpu, in, cpu->tr.sel);
}

/* ---- descriptor probes: VERR VERW LAR LSL ------------------------------ */

/*
 * The first quadword of sel's descriptor for a probe, which reports
 * failure in ZF instead of faulting: false for a null selector, an LDT
 * selector with no LDT, or one beyond the table's limit (SDM vol. 2,
 * LAR: "the selector ... is checked"). A page fault on the table itself
 * is still raised.
 */
static bool probe_descriptor(struct x86_cpu *cpu, uint16_t sel, uint64_t *raw)
{
	uint64_t base = cpu->gdt.base;
	uint32_t limit = cpu->gdt.limit;
	uint32_t off = sel & ~7u;

	if (sel_is_null(sel))
		return false;
	if (sel & 4) {
		if (cpu->ldtr.attr & X86_SEG_UNUSABLE)
			return false;
		base = cpu->ldtr.base;
		limit = cpu->ldtr.limit;
	}
	if (off + 7 > limit)
		return false;
	*raw = x86_read_sys(cpu, base + off, 8);
	return true;
}

/* The privilege check of the probes: conforming code passes; anything
 * else needs DPL >= max(CPL, RPL). */
static bool probe_privilege_ok(const struct x86_cpu *cpu, uint64_t raw,
			       uint16_t sel)
{
	unsigned int rpl = sel & 3;

	if (D_CONFORMING(raw))
		return true;
	return D_DPL(raw) >= (cpu->cpl > rpl ? cpu->cpl : rpl);
}

static void set_zf(struct x86_cpu *cpu, bool zf)
{
	uint64_t rf = x86_rflags(cpu) & ~(uint64_t)X86_RFLAGS_ZF;

	x86_set_rflags(cpu, rf | (zf ? X86_RFLAGS_ZF : 0));
}

/* VERR, VERW (SDM vol. 2): ZF = 1 when the segment is a code or data
 * segment the current privilege may read (VERR: data, or readable
 * code) or write (VERW: writable data). */
static void op_verr_verw(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint16_t sel = x86_get_Ew16(cpu, in);
	bool write = ((in->modrm >> 3) & 7) == 5;
	uint64_t raw;
	bool ok;

	ok = probe_descriptor(cpu, sel, &raw) && D_S(raw) &&
	     probe_privilege_ok(cpu, raw, sel);
	if (ok)
		ok = write ? D_WRITABLE_DATA(raw) :
			     (!D_IS_CODE(raw) || (D_TYPE(raw) & 2));
	set_zf(cpu, ok);
}

/* System descriptor types LAR accepts in IA-32e mode (LDT, 64-bit TSS
 * available and busy, 64-bit call gate); LSL the same but call gates. */
static bool lar_system_type(unsigned int type, bool lsl)
{
	return type == 2 || type == 9 || type == 11 || (!lsl && type == 12);
}

/* LAR, LSL (SDM vol. 2): on success ZF = 1 and the destination gets the
 * access rights (the descriptor's second doubleword masked by 00F0FF00H)
 * or the byte-granular segment limit; else ZF = 0 and it is unchanged. */
static void op_lar_lsl(struct x86_cpu *cpu, const struct x86_insn *in)
{
	bool lsl = (in->opcode & 0xff) == 0x03;
	uint16_t sel = x86_get_Ew16(cpu, in);
	uint64_t raw, v;
	bool ok;

	ok = probe_descriptor(cpu, sel, &raw) &&
	     (D_S(raw) || lar_system_type(D_TYPE(raw), lsl)) &&
	     probe_privilege_ok(cpu, raw, sel);
	if (ok) {
		if (lsl) {
			v = (raw & 0xffff) | ((raw >> 32) & 0xf0000);
			if (raw & (1ULL << 55)) /* G */
				v = (v << 12) | 0xfff;
		} else {
			v = (raw >> 32) & 0x00f0ff00;
		}
		x86_set_G(cpu, in, in->opsize == 8 ? v & 0xffffffffULL : v);
	}
	set_zf(cpu, ok);
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
	case 3:
		op_ltr(cpu, in);
		break;
	default:
		op_verr_verw(cpu, in);
		break;
	}
}

#define M X86_D_MODRM
#define BR X86_D_BRANCH

const struct x86_opdesc x86_ops_segment[] = {
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
	{ X86_MAP_0F | 0x00, 4, X86_IMM_NONE, M, op_grp6, "verr" },
	{ X86_MAP_0F | 0x00, 5, X86_IMM_NONE, M, op_grp6, "verw" },
	{ X86_MAP_0F | 0x02, X86_GROUP_ANY, X86_IMM_NONE, M, op_lar_lsl,
	  "lar" },
	{ X86_MAP_0F | 0x03, X86_GROUP_ANY, X86_IMM_NONE, M, op_lar_lsl,
	  "lsl" },
	{ X86_MAP_0F | 0x05, X86_GROUP_ANY, X86_IMM_NONE, BR, op_syscall,
	  "syscall" },
	{ X86_MAP_0F | 0x07, X86_GROUP_ANY, X86_IMM_NONE, BR, op_sysret,
	  "sysret" },
	{ 0, 0, 0, 0, NULL, NULL },
};
