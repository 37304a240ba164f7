/*
 * System instructions of the software CPU: HLT, CLI/STI, PUSHF/POPF,
 * CLAC/STAC, MOV to and from control registers, SWAPGS, the descriptor
 * table loads and stores (LGDT/LIDT/SGDT/SIDT, SMSW/LMSW), INVLPG,
 * INVPCID, RDTSC/RDTSCP, RDMSR/WRMSR, CLTS, WBINVD/INVD, the fences and
 * UD2; with them the PCID rules of CR3 and CR4 and x86_mode_changed().
 * Segmentation (segment loads, far transfers, IRET, INT n,
 * SYSCALL/SYSRET, LTR/LLDT) is exec_segment.c's; it does not deliver
 * events (except.c), answer CPUID (cpuid.c) or do port I/O (exec_io.c).
 */
#include <errno.h>
#include <stdatomic.h>
#include <x86intrin.h>

#include "x86_int.h"

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

/* ---- simple instructions ---------------------------------------------- */

static void op_hlt(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	x86_require_cpl0(cpu);
	/* SDM vol. 2, HLT: stopped until an enabled interrupt or NMI
	 * (x86_run() keeps it so, cpu.c). */
	cpu->halted = true;
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
		x86_set_int_shadow(cpu);
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
	x86_require_cpl0(cpu);
	cpu->cr0 &= ~X86_CR0_TS;
}

/* WBINVD, INVD: caches are coherent host memory here. */
static void op_wbinvd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	x86_require_cpl0(cpu);
}

static void op_ud2(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	x86_raise(cpu, X86_UD, 0);
}

/*
 * LFENCE, MFENCE, SFENCE (0F AE /5 /6 /7, register forms). Guest loads
 * are host acquire loads and guest stores release stores
 * (docs/ARCHITECTURE.md, "Guest memory is shared memory"), so only MFENCE adds ordering: the store-load order of a
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

/* ---- control registers ------------------------------------------------ */

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
	v = (v & X86_CR0_IMPLEMENTED) | X86_CR0_ET;
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

	if ((v & ~X86_CR4_IMPLEMENTED) ||
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
	x86_require_cpl0(cpu);
	if (in->reg == 8 && cpu->env->cr8)
		cpu->env->cr8(cpu->opaque, false, &v);
	cpu->gpr[in->rm] = v;
}

static void op_mov_Cd_Rd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v = cpu->gpr[in->rm];

	if (in->reg != 0 && in->reg != 2 && in->reg != 3 && in->reg != 4 &&
	    in->reg != 8)
		x86_raise(cpu, X86_UD, 0);
	x86_require_cpl0(cpu);
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
		if (cpu->env->cr8)
			cpu->env->cr8(cpu->opaque, true, &v);
		break;
	}
}

/*
 * 0F 21: MOV r64, DRn. 0F 23: MOV DRn, r64 (SDM vol. 2, MOV--Move
 * to/from Debug Registers; vol. 3, 18.2). CR4.DE is never set (CPUID
 * does not report DE), so DR4 and DR5 are DR6 and DR7; DR8-DR15 (REX.R)
 * do not exist. The checks go in the order KVM's emulator uses: CPL,
 * then the register, then DR7.GD's general-detect #DB (a fault, with
 * DR6.BD set and GD cleared so the handler can use the registers).
 */
static unsigned int dr_access(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int dr = in->reg;

	x86_require_cpl0(cpu);
	if (dr > 7)
		x86_raise(cpu, X86_UD, 0);
	if (cpu->dr7 & X86_DR7_GD) {
		cpu->dr6 = (cpu->dr6 & ~X86_DR6_WRITABLE) | X86_DR6_FIXED1 |
			   X86_DR6_BD;
		cpu->dr7 &= ~X86_DR7_GD;
		x86_raise(cpu, X86_DB, 0);
	}
	return dr == 4 || dr == 5 ? dr + 2 : dr;
}

static void op_mov_Rd_Dd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int dr = dr_access(cpu, in);

	if (dr < 4)
		cpu->gpr[in->rm] = cpu->dr[dr];
	else if (dr == 6)
		cpu->gpr[in->rm] = cpu->dr6;
	else
		cpu->gpr[in->rm] = cpu->dr7;
}

static void op_mov_Dd_Rd(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v = cpu->gpr[in->rm];
	unsigned int dr = dr_access(cpu, in);

	if (dr < 4) {
		cpu->dr[dr] = v;
		return;
	}
	if (v >> 32)
		x86_raise(cpu, X86_GP, 0);
	if (dr == 6)
		cpu->dr6 = (v & X86_DR6_WRITABLE) | X86_DR6_FIXED1;
	else
		cpu->dr7 = (v & X86_DR7_WRITABLE) | X86_DR7_FIXED1;
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

	x86_require_cpl0(cpu);
	ea = x86_ea(cpu, in);
	limit = x86_read(cpu, ea, 2, in->seg);
	base = x86_read(cpu, ea + 2, 8, in->seg);
	if (!x86_is_canonical(base))
		x86_raise(cpu, X86_GP, 0);
	dt->limit = (uint16_t)limit;
	dt->base = base;
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

	x86_require_cpl0(cpu);
	cpu->seg[X86_GS].base = cpu->kernel_gs_base;
	cpu->kernel_gs_base = t;
}

/* INVLPG: a non-canonical address names no translation and is a NOP. */
static void op_invlpg(struct x86_cpu *cpu, const struct x86_insn *in)
{
	gva_t ea;
	struct x86_exit *exit;

	x86_require_cpl0(cpu);
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
	x86_require_cpl0(cpu);
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
	x86_set_Ew_sel(cpu, in, in->mem ? cpu->cr0 & 0xffff : cpu->cr0);
}

static void op_lmsw(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint16_t v = x86_get_Ew16(cpu, in);

	x86_require_cpl0(cpu);
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

/* The VM's MSRs (x86_env.msr): true when it answered. */
static bool env_msr(struct x86_cpu *cpu, bool write, uint64_t *v)
{
	uint32_t index = (uint32_t)cpu->gpr[X86_RCX];
	int r;

	if (!cpu->env->msr)
		return false;
	r = cpu->env->msr(cpu->opaque, index, write, v);
	if (r == -ENOENT)
		return false;
	if (r < 0)
		x86_raise(cpu, X86_GP, 0);
	if (write && index == MSR_IA32_APIC_BASE)
		cpu->apic_base = *v;
	return true;
}

static void op_rdmsr(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t v;

	(void)in;
	x86_require_cpl0(cpu);
	if (env_msr(cpu, false, &v))
		goto done;
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
	/* No MTRRs and no machine-check banks (SDM vol. 3, 12.11.1 and
	 * 16.3.1): the capability MSRs a kernel reads say so, and MTRRs
	 * are disabled. CPUID reports neither MTRR nor MCA. */
	case MSR_IA32_MTRRCAP:
	case MSR_IA32_MTRR_DEF_TYPE:
	case MSR_IA32_MCG_CAP:
		v = 0;
		break;
	default:
		x86_raise(cpu, X86_GP, 0);
	}
done:
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
	x86_require_cpl0(cpu);
	if (env_msr(cpu, true, &v))
		return;
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
	case MSR_IA32_MTRR_DEF_TYPE:
		/* MTRRs stay disabled: only 0 is accepted. */
		if (v)
			x86_raise(cpu, X86_GP, 0);
		break;
	default:
		/* MTRRCAP and MCG_CAP are read-only, like every other
		 * MSR not named here. */
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
	{ X86_MAP_0F | 0x01, 0, X86_IMM_NONE, M, op_grp7, "sgdt" },
	{ X86_MAP_0F | 0x01, 1, X86_IMM_NONE, M, op_grp7, "sidt" },
	{ X86_MAP_0F | 0x01, 2, X86_IMM_NONE, M, op_grp7, "lgdt" },
	{ X86_MAP_0F | 0x01, 3, X86_IMM_NONE, M, op_grp7, "lidt" },
	{ X86_MAP_0F | 0x01, 4, X86_IMM_NONE, M, op_grp7, "smsw" },
	{ X86_MAP_0F | 0x01, 6, X86_IMM_NONE, M, op_grp7, "lmsw" },
	{ X86_MAP_0F | 0x01, 7, X86_IMM_NONE, M | BR, op_grp7, "invlpg" },
	{ X86_MAP_0F | 0x06, X86_GROUP_ANY, X86_IMM_NONE, 0, op_clts, "clts" },
	{ X86_MAP_0F | 0x08, X86_GROUP_ANY, X86_IMM_NONE, 0, op_wbinvd,
	  "invd" },
	{ X86_MAP_0F | 0x09, X86_GROUP_ANY, X86_IMM_NONE, 0, op_wbinvd,
	  "wbinvd" },
	{ X86_MAP_0F | 0x0b, X86_GROUP_ANY, X86_IMM_NONE, 0, op_ud2, "ud2" },
	{ X86_MAP_0F | 0x20, X86_GROUP_ANY, X86_IMM_NONE,
	  M | X86_D_REG | X86_D_FORCE64, op_mov_Rd_Cd, "mov" },
	{ X86_MAP_0F | 0x22, X86_GROUP_ANY, X86_IMM_NONE,
	  M | X86_D_REG | X86_D_FORCE64 | BR, op_mov_Cd_Rd, "mov" },
	{ X86_MAP_0F | 0x21, X86_GROUP_ANY, X86_IMM_NONE,
	  M | X86_D_REG | X86_D_FORCE64, op_mov_Rd_Dd, "mov" },
	{ X86_MAP_0F | 0x23, X86_GROUP_ANY, X86_IMM_NONE,
	  M | X86_D_REG | X86_D_FORCE64, op_mov_Dd_Rd, "mov" },
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
