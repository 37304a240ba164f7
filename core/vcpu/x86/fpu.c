/*
 * The x87 and SSE register state and the instructions that move it as a
 * whole: FXSAVE/FXRSTOR (0F AE /0 /1, SDM vol. 2), LDMXCSR/STMXCSR
 * (0F AE /2 /3), and the FXSAVE image as the vCPU layer and the tests
 * read and write it (x86_get_fpu(), x86_set_fpu()).
 *
 * The instructions that compute on this state live in their own files:
 * exec_sse.c (SSE/SSE2 moves and integer SIMD), exec_ssefp.c (SSE/SSE2
 * floating point), exec_x87.c (the x87). CPUID reports FPU, FXSR, SSE
 * and SSE2 (cpuid.c) and CR4.OSFXSR/OSXMMEXCPT may be set.
 */
#include <string.h>

#include "x86_int.h"

/* FXSAVE image offsets (SDM vol. 1, 10.5.1, the 64-bit format). */
#define FX_FCW 0
#define FX_FSW 2
#define FX_FTW 4
#define FX_FOP 6
#define FX_FIP 8
#define FX_FCS 12 /* without REX.W: FIP is 32 bits, then the selector */
#define FX_FDP 16
#define FX_FDS 20
#define FX_MXCSR 24
#define FX_MXCSR_MASK 28
#define FX_ST 32 /* ST(0)..ST(7), 16 bytes each */
#define FX_XMM 160 /* XMM0..XMM15, 16 bytes each */
/* The processor writes bytes 0-415; 416-511 are reserved or the
 * software's own and stay untouched. */
#define FX_WRITTEN 416

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static unsigned int fpu_top(const struct x86_fpu *f)
{
	return (f->fsw >> 11) & 7;
}

void x86_fpu_reset(struct x86_cpu *cpu)
{
	memset(&cpu->fpu, 0, sizeof(cpu->fpu));
	cpu->fpu.fcw = X86_FCW_RESET;
	cpu->fpu.mxcsr = X86_MXCSR_RESET;
}

void x86_fpu_fxsave_image(const struct x86_cpu *cpu, uint8_t img[512],
			  bool rex_w)
{
	const struct x86_fpu *f = &cpu->fpu;
	unsigned int top = fpu_top(f);

	memset(img, 0, FX_WRITTEN);
	put16(img + FX_FCW, f->fcw);
	put16(img + FX_FSW, f->fsw);
	img[FX_FTW] = f->ftw;
	put16(img + FX_FOP, f->fop);
	if (rex_w) {
		put64(img + FX_FIP, f->fip);
		put64(img + FX_FDP, f->fdp);
	} else {
		put32(img + FX_FIP, (uint32_t)f->fip);
		put16(img + FX_FCS, f->fcs);
		put32(img + FX_FDP, (uint32_t)f->fdp);
		put16(img + FX_FDS, f->fds);
	}
	put32(img + FX_MXCSR, f->mxcsr);
	put32(img + FX_MXCSR_MASK, X86_MXCSR_MASK);
	for (unsigned int i = 0; i < 8; i++) {
		const struct x86_st *st = &f->st[(top + i) & 7];

		put64(img + FX_ST + 16 * i, st->mant);
		put16(img + FX_ST + 16 * i + 8, st->sexp);
	}
	memcpy(img + FX_XMM, f->xmm, sizeof(f->xmm));
}

/* Loads an FXSAVE image; false (nothing changed) when its MXCSR has a
 * bit set that the CPU does not implement. */
static bool fxrstor_image(struct x86_cpu *cpu, const uint8_t *img, bool rex_w)
{
	struct x86_fpu *f = &cpu->fpu;
	uint32_t mxcsr = get32(img + FX_MXCSR);
	unsigned int top;

	if (mxcsr & ~X86_MXCSR_MASK)
		return false;
	/* FCW bits 7 and 13-15 are reserved (zero) and bit 6 reads as 1
	 * (SDM vol. 1, 8.1.5). */
	f->fcw = (get16(img + FX_FCW) & 0x1f3f) | 0x40;
	/* FSW.ES (bit 7) and B (bit 15) say whether an unmasked exception
	 * is pending: derived from the flags and the masks, not loaded
	 * (SDM vol. 1, 8.1.3.1 and 8.1.3.6). */
	f->fsw = get16(img + FX_FSW) & 0x7f7f;
	if (f->fsw & ~f->fcw & 0x3f)
		f->fsw |= 0x8080;
	f->ftw = img[FX_FTW];
	f->fop = get16(img + FX_FOP) & 0x7ff;
	if (rex_w) {
		f->fip = get64(img + FX_FIP);
		f->fdp = get64(img + FX_FDP);
		f->fcs = f->fds = 0;
	} else {
		f->fip = get32(img + FX_FIP);
		f->fcs = get16(img + FX_FCS);
		f->fdp = get32(img + FX_FDP);
		f->fds = get16(img + FX_FDS);
	}
	f->mxcsr = mxcsr;
	top = fpu_top(f);
	for (unsigned int i = 0; i < 8; i++) {
		struct x86_st *st = &f->st[(top + i) & 7];

		st->mant = get64(img + FX_ST + 16 * i);
		st->sexp = get16(img + FX_ST + 16 * i + 8);
	}
	memcpy(f->xmm, img + FX_XMM, sizeof(f->xmm));
	return true;
}

void x86_fpu_fxrstor_image(struct x86_cpu *cpu, const uint8_t img[512])
{
	bool ok = fxrstor_image(cpu, img, true);

	MMUD_ASSERT(ok);
}

void x86_get_fpu(const struct x86_cpu *cpu, uint8_t img[512])
{
	memset(img + FX_WRITTEN, 0, 512 - FX_WRITTEN);
	x86_fpu_fxsave_image(cpu, img, true);
}

bool x86_set_fpu(struct x86_cpu *cpu, const uint8_t img[512])
{
	return fxrstor_image(cpu, img, true);
}

/*
 * The checks FXSAVE and FXRSTOR make (SDM vol. 2, FXSAVE): CR0.TS or
 * CR0.EM set is #NM; the operand must be 16-byte aligned, else #GP(0)
 * whatever alignment checking says.
 */
static gva_t fx_operand(struct x86_cpu *cpu, const struct x86_insn *in)
{
	gva_t la;

	if (cpu->cr0 & (X86_CR0_TS | X86_CR0_EM))
		x86_raise(cpu, X86_NM, 0);
	la = x86_ea(cpu, in);
	if (la & 15)
		x86_raise(cpu, X86_GP, 0);
	return la;
}

static void op_fxsave(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint8_t img[512];
	gva_t la = fx_operand(cpu, in);

	x86_fpu_fxsave_image(cpu, img, in->rex_w);
	x86_write_block(cpu, la, img, FX_WRITTEN, in->seg);
}

static void op_fxrstor(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint8_t img[512];
	gva_t la = fx_operand(cpu, in);

	x86_read_block(cpu, la, img, sizeof(img), in->seg);
	if (!fxrstor_image(cpu, img, in->rex_w))
		x86_raise(cpu, X86_GP, 0);
}

/* LDMXCSR and STMXCSR (SDM vol. 2): SSE instructions for their checks;
 * a reserved MXCSR bit is #GP(0). */
static void op_ldmxcsr(struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint32_t v;

	x86_sse_check(cpu);
	v = (uint32_t)x86_read(cpu, x86_ea(cpu, in), 4, in->seg);
	if (v & ~X86_MXCSR_MASK)
		x86_raise(cpu, X86_GP, 0);
	cpu->fpu.mxcsr = v;
}

static void op_stmxcsr(struct x86_cpu *cpu, const struct x86_insn *in)
{
	x86_sse_check(cpu);
	x86_write(cpu, x86_ea(cpu, in), 4, in->seg, cpu->fpu.mxcsr);
}

#define M X86_D_MODRM
const struct x86_opdesc x86_ops_fpu[] = {
	{ X86_MAP_0F | 0xae, 0, X86_IMM_NONE, M | X86_D_MEM, op_fxsave,
	  "fxsave" },
	{ X86_MAP_0F | 0xae, 1, X86_IMM_NONE, M | X86_D_MEM, op_fxrstor,
	  "fxrstor" },
	{ X86_MAP_0F | 0xae, 2, X86_IMM_NONE, M | X86_D_MEM, op_ldmxcsr,
	  "ldmxcsr" },
	{ X86_MAP_0F | 0xae, 3, X86_IMM_NONE, M | X86_D_MEM, op_stmxcsr,
	  "stmxcsr" },
	{ 0, 0, 0, 0, NULL, NULL },
};
