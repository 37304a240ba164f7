/*
 * The x87 FPU instructions (escape opcodes D8-DF, SDM vol. 2 appendix
 * A.4; vol. 1 chapter 8) and FWAIT.
 *
 * Each instruction runs on the host's x87 through a fixed routine of
 * x87_stubs.S that loads the guest's state, executes that one encoding
 * (a memory operand rewritten to a host buffer) and saves the state
 * back: every result, flag, tag, rounding, precision control and
 * unmasked-exception response is the hardware's own, bit for bit,
 * transcendentals included. This file owns what is architectural around
 * it and must not come from the host:
 *
 *   - which encodings exist: the reserved ones are #UD here (the host
 *     may execute some as undocumented aliases), and FISTTP is #UD since
 *     CPUID does not report SSE3;
 *   - #NM for CR0.EM or CR0.TS; #MF before a waiting instruction while
 *     an unmasked exception is pending (FSW.ES; vol. 1, 8.6), whatever
 *     CR0.NE says (there is no FERR# line to route it to);
 *   - the guest's memory operands: read before anything changes, and a
 *     store's destination checked writable before the state commits;
 *   - the last-instruction pointers FIP/FCS, FDP/FDS and FOP, which the
 *     host would fill with host addresses (or, on AMD, not at all):
 *     kept from the guest's RIP, operand and opcode (vol. 1, 8.1.8),
 *     and written into FNSTENV/FNSAVE images the same way.
 */
#include <string.h>

#include "x86_int.h"

extern const uint8_t x86_x87_stubs[];
#define STUB_SIZE 32
#define STUBS_PER_OP 72
/* The 66-prefixed FLDENV, FNSTENV, FRSTOR, FNSAVE after the others. */
#define STUB_O16 (8 * STUBS_PER_OP)

typedef uint64_t (*x87_stub_fn)(uint8_t *image, void *operand, void *host);

static x87_stub_fn stub_at(unsigned int index)
{
	return (x87_stub_fn)(uintptr_t)(x86_x87_stubs + STUB_SIZE * index);
}

/* ---- the encodings ----------------------------------------------------- */

#define MEM_LOAD 0x01u
#define MEM_STORE 0x02u
/* Control instructions (vol. 1, 8.1.8): FIP, FDP and FOP unchanged. */
#define CTRL 0x04u
/* Non-waiting: no #MF check (FNINIT, FNCLEX, FNSTSW, FNSTCW, FNSTENV,
 * FNSAVE). */
#define NOWAIT 0x08u
/* FLDENV/FRSTOR (load the pointers), FNSTENV/FNSAVE (store them). */
#define ENV 0x10u
/* FNINIT and FNSAVE: the pointers are reset to zero. */
#define INIT 0x20u

struct mem_form {
	uint8_t size; /* bytes; 0: #UD */
	uint8_t flags;
};

#define L(n)                \
	{                   \
		n, MEM_LOAD \
	}
#define S(n)                 \
	{                    \
		n, MEM_STORE \
	}
#define UD           \
	{            \
		0, 0 \
	}
static const struct mem_form mem_forms[8][8] = {
	/* D8: FADD FMUL FCOM FCOMP FSUB FSUBR FDIV FDIVR m32fp */
	{ L(4), L(4), L(4), L(4), L(4), L(4), L(4), L(4) },
	/* D9: FLD m32fp, -, FST, FSTP, FLDENV, FLDCW, FNSTENV, FNSTCW */
	{ L(4),
	  UD,
	  S(4),
	  S(4),
	  { 28, MEM_LOAD | CTRL | ENV },
	  { 2, MEM_LOAD | CTRL },
	  { 28, MEM_STORE | CTRL | NOWAIT | ENV },
	  { 2, MEM_STORE | CTRL | NOWAIT } },
	/* DA: FIADD .. FIDIVR m32int */
	{ L(4), L(4), L(4), L(4), L(4), L(4), L(4), L(4) },
	/* DB: FILD m32int, FISTTP (SSE3), FIST, FISTP, -, FLD m80fp, -,
	 * FSTP m80fp */
	{ L(4), UD, S(4), S(4), UD, L(10), UD, S(10) },
	/* DC: FADD .. FDIVR m64fp */
	{ L(8), L(8), L(8), L(8), L(8), L(8), L(8), L(8) },
	/* DD: FLD m64fp, FISTTP (SSE3), FST, FSTP, FRSTOR, -, FNSAVE,
	 * FNSTSW m16 */
	{ L(8),
	  UD,
	  S(8),
	  S(8),
	  { 108, MEM_LOAD | CTRL | ENV },
	  UD,
	  { 108, MEM_STORE | CTRL | NOWAIT | ENV | INIT },
	  { 2, MEM_STORE | CTRL | NOWAIT } },
	/* DE: FIADD .. FIDIVR m16int */
	{ L(2), L(2), L(2), L(2), L(2), L(2), L(2), L(2) },
	/* DF: FILD m16int, FISTTP (SSE3), FIST, FISTP, FBLD, FILD m64int,
	 * FBSTP, FISTP m64int */
	{ L(2), UD, S(2), S(2), L(10), L(8), S(10), S(8) },
};

/*
 * Register forms that exist: per escape byte, one bit per ModRM C0-FF
 * (bit 8 * reg + rm). 0xff is a whole /reg row.
 */
#define ROW(reg, rms) ((uint64_t)(rms) << (8 * (reg)))
static const uint64_t reg_forms[8] = {
	/* D8: FADD FMUL FCOM FCOMP FSUB FSUBR FDIV FDIVR */
	~0ULL,
	/* D9: FLD, FXCH, FNOP, -, FCHS FABS FTST FXAM, constants but EF,
	 * F2XM1..FINCSTP, FPREM..FCOS */
	ROW(0, 0xff) | ROW(1, 0xff) | ROW(2, 0x01) | ROW(4, 0x33) |
		ROW(5, 0x7f) | ROW(6, 0xff) | ROW(7, 0xff),
	/* DA: FCMOVB FCMOVE FCMOVBE FCMOVU, FUCOMPP */
	ROW(0, 0xff) | ROW(1, 0xff) | ROW(2, 0xff) | ROW(3, 0xff) |
		ROW(5, 0x02),
	/* DB: FCMOVNB FCMOVNE FCMOVNBE FCMOVNU, FNCLEX FNINIT, FUCOMI,
	 * FCOMI */
	ROW(0, 0xff) | ROW(1, 0xff) | ROW(2, 0xff) | ROW(3, 0xff) |
		ROW(4, 0x0c) | ROW(5, 0xff) | ROW(6, 0xff),
	/* DC: FADD FMUL ST(i),ST, FSUBR FSUB FDIVR FDIV ST(i),ST */
	ROW(0, 0xff) | ROW(1, 0xff) | ROW(4, 0xff) | ROW(5, 0xff) |
		ROW(6, 0xff) | ROW(7, 0xff),
	/* DD: FFREE, FST, FSTP, FUCOM, FUCOMP */
	ROW(0, 0xff) | ROW(2, 0xff) | ROW(3, 0xff) | ROW(4, 0xff) |
		ROW(5, 0xff),
	/* DE: FADDP FMULP, FCOMPP, FSUBRP FSUBP FDIVRP FDIVP */
	ROW(0, 0xff) | ROW(1, 0xff) | ROW(3, 0x02) | ROW(4, 0xff) |
		ROW(5, 0xff) | ROW(6, 0xff) | ROW(7, 0xff),
	/* DF: FNSTSW AX, FUCOMIP, FCOMIP */
	ROW(4, 0x01) | ROW(5, 0xff) | ROW(6, 0xff),
};

/* Flags of a register form: FNCLEX, FNINIT and FNSTSW AX are control,
 * non-waiting instructions. */
static unsigned int reg_form_flags(unsigned int esc, unsigned int modrm)
{
	if (esc == 3 && modrm == 0xe2)
		return CTRL | NOWAIT;
	if (esc == 3 && modrm == 0xe3)
		return CTRL | NOWAIT | INIT;
	if (esc == 7 && modrm == 0xe0)
		return CTRL | NOWAIT;
	return 0;
}

/* FCOMI, FCOMIP, FUCOMI, FUCOMIP: ZF PF CF from the compare. */
static bool sets_eflags(unsigned int esc, unsigned int modrm)
{
	unsigned int reg = (modrm >> 3) & 7;

	return (esc == 3 || esc == 7) && (reg == 5 || reg == 6);
}

/* FCMOVcc reads CF, ZF, PF. */
static bool reads_eflags(unsigned int esc, unsigned int modrm)
{
	return (esc == 2 || esc == 3) && ((modrm >> 3) & 7) < 4;
}

/* ---- the checks before any x87 instruction ------------------------------ */

/* #NM for CR0.EM or CR0.TS (vol. 3, 2.5), then #MF for a pending
 * unmasked exception before a waiting instruction. */
static void x87_checks(struct x86_cpu *cpu, bool waiting)
{
	if (cpu->cr0 & (X86_CR0_EM | X86_CR0_TS))
		x86_raise(cpu, X86_NM, 0);
	if (waiting && (cpu->fpu.fsw & 0x80))
		x86_raise(cpu, X86_MF, 0);
}

/* FWAIT (9B): #NM only with CR0.MP and CR0.TS both set (vol. 3, 2.5),
 * then #MF for a pending unmasked exception. */
static void op_fwait(struct x86_cpu *cpu, const struct x86_insn *in)
{
	(void)in;
	if ((cpu->cr0 & (X86_CR0_MP | X86_CR0_TS)) == (X86_CR0_MP | X86_CR0_TS))
		x86_raise(cpu, X86_NM, 0);
	if (cpu->fpu.fsw & 0x80)
		x86_raise(cpu, X86_MF, 0);
}

/* ---- guest memory --------------------------------------------------------- */

static void read_operand(struct x86_cpu *cpu, gva_t la, uint8_t *buf,
			 unsigned int n, unsigned int seg)
{
	unsigned int i = 0;

	for (unsigned int step = 8; step; step >>= 1)
		for (; i + step <= n; i += step) {
			uint64_t v = x86_read(cpu, la + i, step, seg);

			memcpy(buf + i, &v, step);
		}
}

static void write_operand(struct x86_cpu *cpu, gva_t la, const uint8_t *buf,
			  unsigned int n, unsigned int seg)
{
	unsigned int i = 0;

	for (unsigned int step = 8; step; step >>= 1)
		for (; i + step <= n; i += step) {
			uint64_t v = 0;

			memcpy(&v, buf + i, step);
			x86_write(cpu, la + i, step, seg, v);
		}
}

/* ---- the pointers in an FLDENV/FNSTENV image ---------------------------- */

/*
 * The environment's layout (vol. 1, 8.1.10, figures 8-9 and 8-10): 28
 * bytes in the 32-bit format (FIP at 12, FCS and FOP at 16, FDP at 20,
 * FDS at 24), 14 in the 16-bit one (FIP at 6, FCS at 8, FDP at 10, FDS
 * at 12, no FOP). FRSTOR/FNSAVE images start with it.
 */
static void env_put_pointers(uint8_t *env, bool o16, const struct x86_fpu *f)
{
	if (o16) {
		uint16_t v[4] = { (uint16_t)f->fip, f->fcs, (uint16_t)f->fdp,
				  f->fds };

		memcpy(env + 6, v, sizeof(v));
	} else {
		uint32_t v[4] = { (uint32_t)f->fip,
				  f->fcs | ((uint32_t)(f->fop & 0x7ff) << 16),
				  (uint32_t)f->fdp, f->fds };

		memcpy(env + 12, v, sizeof(v));
	}
}

static void env_get_pointers(const uint8_t *env, bool o16, struct x86_fpu *f)
{
	if (o16) {
		uint16_t v[4];

		memcpy(v, env + 6, sizeof(v));
		f->fip = v[0];
		f->fcs = v[1];
		f->fdp = v[2];
		f->fds = v[3];
		f->fop = 0;
	} else {
		uint32_t v[4];

		memcpy(v, env + 12, sizeof(v));
		f->fip = v[0];
		f->fcs = (uint16_t)v[1];
		f->fop = (v[1] >> 16) & 0x7ff;
		f->fdp = v[2];
		f->fds = (uint16_t)v[3];
	}
}

/* ---- the instruction ------------------------------------------------------- */

struct x87_frame {
	uint64_t rflags; /* image - 16 */
	uint64_t pad;
	uint8_t image[512];
} __attribute__((aligned(16)));

static void op_x87(struct x86_cpu *cpu, const struct x86_insn *in)
{
	static const uint64_t eflags_in = X86_RFLAGS_CF | X86_RFLAGS_PF |
					  X86_RFLAGS_ZF;
	unsigned int esc = in->opcode & 7, reg = (in->modrm >> 3) & 7;
	uint8_t operand[108] __attribute__((aligned(16)));
	uint8_t host[512] __attribute__((aligned(16)));
	struct x87_frame fr;
	struct x86_fpu *f = &cpu->fpu;
	struct x86_fpu before;
	unsigned int flags, size = 0, index;
	bool o16 = in->opsize_prefix;
	gva_t la = 0;
	uint64_t rax;

	if (in->mem) {
		const struct mem_form *m = &mem_forms[esc][reg];

		if (!m->size)
			x86_raise(cpu, X86_UD, 0);
		flags = m->flags;
		size = m->size;
		index = esc * STUBS_PER_OP + reg;
		if ((flags & ENV) && o16) {
			/* 14-byte environment, 94-byte state. */
			size = size == 28 ? 14 : 94;
			index = STUB_O16 + (esc == 5 ? 2 : 0) + (reg == 6);
		}
	} else {
		if (!(reg_forms[esc] >> (in->modrm & 63) & 1))
			x86_raise(cpu, X86_UD, 0);
		flags = reg_form_flags(esc, in->modrm);
		index = esc * STUBS_PER_OP + 8 + (in->modrm & 63);
	}
	x87_checks(cpu, !(flags & NOWAIT));
	if (in->mem) {
		la = x86_ea(cpu, in);
		if (flags & MEM_LOAD)
			read_operand(cpu, la, operand, size, in->seg);
		else
			x86_probe_write(cpu, la, size, in->seg);
	}

	before = *f;
	x86_fpu_fxsave_image(cpu, fr.image, true);
	fr.rflags = reads_eflags(esc, in->modrm) ?
			    (x86_rflags(cpu) & eflags_in) | 2 :
			    2;
	rax = stub_at(index)(fr.image, operand, host);
	x86_fpu_fxrstor_image(cpu, fr.image);

	/* The pointers (vol. 1, 8.1.8): never the host's. */
	if (flags & INIT) {
		f->fip = f->fdp = 0;
		f->fcs = f->fds = f->fop = 0;
	} else if (flags & CTRL) {
		if ((flags & ENV) && (flags & MEM_LOAD)) {
			env_get_pointers(operand, o16, f);
		} else {
			f->fip = before.fip;
			f->fdp = before.fdp;
			f->fcs = before.fcs;
			f->fds = before.fds;
			f->fop = before.fop;
		}
	} else {
		f->fip = cpu->rip;
		f->fcs = cpu->seg[X86_CS].sel;
		f->fop = (uint16_t)(((in->opcode & 7) << 8) | in->modrm);
		if (in->mem) {
			f->fdp = la;
			f->fds = cpu->seg[in->seg].sel;
		} else {
			f->fdp = before.fdp;
			f->fds = before.fds;
		}
	}
	if ((flags & ENV) && (flags & MEM_STORE))
		env_put_pointers(operand, o16, &before);

	/* A store stays undone when the instruction raised an unmasked
	 * exception other than precision (vol. 1, 8.5: the destination is
	 * left unchanged for an unmasked invalid operation, overflow or
	 * underflow); none was pending before it (x87_checks()). */
	if (in->mem && (flags & MEM_STORE) &&
	    ((flags & CTRL) || !(f->fsw & ~before.fcw & 0x1f)))
		write_operand(cpu, la, operand, size, in->seg);
	if (!in->mem && sets_eflags(esc, in->modrm))
		x86_set_rflags(cpu,
			       (x86_rflags(cpu) & ~(uint64_t)X86_RFLAGS_ARITH) |
				       (fr.rflags & eflags_in));
	if (!in->mem && esc == 7 && in->modrm == 0xe0)
		x86_reg_set(cpu, X86_RAX, 2, false, rax);
}

#define ANY X86_GROUP_ANY
const struct x86_opdesc x86_ops_x87[] = {
	{ 0xd8, ANY, X86_IMM_NONE, X86_D_MODRM, op_x87, "fadd" },
	{ 0xd9, ANY, X86_IMM_NONE, X86_D_MODRM, op_x87, "fld" },
	{ 0xda, ANY, X86_IMM_NONE, X86_D_MODRM, op_x87, "fiadd" },
	{ 0xdb, ANY, X86_IMM_NONE, X86_D_MODRM, op_x87, "fild" },
	{ 0xdc, ANY, X86_IMM_NONE, X86_D_MODRM, op_x87, "fadd" },
	{ 0xdd, ANY, X86_IMM_NONE, X86_D_MODRM, op_x87, "fld" },
	{ 0xde, ANY, X86_IMM_NONE, X86_D_MODRM, op_x87, "fiadd" },
	{ 0xdf, ANY, X86_IMM_NONE, X86_D_MODRM, op_x87, "fild" },
	{ 0x9b, ANY, X86_IMM_NONE, 0, op_fwait, "fwait" },
	{ 0, 0, 0, 0, NULL, NULL },
};
