/*
 * The CPU's saved state (x86.h, "saved state"): what migration and
 * snapshots read from a stopped CPU and load into a fresh one
 * (docs/MIGRATION.md, "vCPU state"). Loaded state is checked against
 * what this CPU implements before any of it is loaded: a bad value is
 * refused with the register named, never loaded.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <x86intrin.h>

#include "x86_int.h"

/* The bits this CPU implements, as exec_system.c's MOV to CR and WRMSR
 * accept them (SDM vol. 3, 2.5 and 2.2.1; vol. 4 for the MSRs). */
#define ST_CR3_RESERVED (~0ULL << 46)
#define ST_EFER_VALID \
	(X86_EFER_SCE | X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE)
/* BSP (bit 8), EXTD (10: x2APIC mode), EN (11) and the base below 2^46
 * (SDM vol. 3, 10.12.1); EXTD without EN is dev_lapic_load()'s to
 * refuse. */
#define ST_APIC_BASE_VALID (((1ULL << 46) - 1) & ~0x2ffULL)
/* Descriptor bits 40..47 and 52..55 as struct x86_segment keeps them,
 * and the unusable mark (x86.h). */
#define ST_SEG_ATTR_VALID (0xf0ffu | X86_SEG_UNUSABLE)
/* RFLAGS bits 0-21 less the reserved 3, 5 and 15 (SDM vol. 1, 3.4.3);
 * bit 1 is always set. VM (17) cannot be set in IA-32e mode. */
#define ST_RFLAGS_VALID \
	(0x3fffffULL &  \
	 ~((1ULL << 3) | (1ULL << 5) | (1ULL << 15) | (1ULL << 17)))

static bool fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return false;
}

int x86_get_misc(const struct x86_cpu *cpu, struct x86_misc_state *st)
{
	if (cpu->io.pending || cpu->shutdown)
		return -EBUSY;
	memset(st, 0, sizeof(*st));
	st->msrs = (struct x86_msrs){
		.star = cpu->star,
		.lstar = cpu->lstar,
		.cstar = cpu->cstar,
		.sfmask = cpu->sfmask,
		.kernel_gs_base = cpu->kernel_gs_base,
		.pat = cpu->pat,
		.tsc_aux = cpu->tsc_aux,
		.apic_base = cpu->apic_base,
		.misc_enable = cpu->misc_enable,
	};
	st->guest_tsc = __rdtsc() + (uint64_t)cpu->tsc_offset;
	st->ev.pending = cpu->ev.pending;
	if (cpu->ev.pending) {
		st->ev.vector = cpu->ev.vector;
		st->ev.kind = cpu->ev.kind;
		st->ev.has_error = cpu->ev.has_error;
		st->ev.error = cpu->ev.has_error ? cpu->ev.error : 0;
		st->ev.return_rip = cpu->ev.return_rip;
		st->ev.cr2 = cpu->ev_cr2;
	}
	st->delivering = (int16_t)cpu->delivering;
	st->int_shadow = cpu->int_shadow;
	st->nmi_latched = cpu->irq_lines & X86_IRQ_NMI;
	st->nmi_blocked = cpu->nmi_blocked;
	st->halted = cpu->halted;
	return 0;
}

bool x86_check_regs(const struct x86_regs *regs, char *err, size_t errlen)
{
	if (!x86_is_canonical(regs->rip))
		return fail(err, errlen, "rip %#llx is not canonical",
			    (unsigned long long)regs->rip);
	if ((regs->rflags & ~ST_RFLAGS_VALID) ||
	    !(regs->rflags & X86_RFLAGS_FIXED))
		return fail(err, errlen, "rflags %#llx sets a reserved bit",
			    (unsigned long long)regs->rflags);
	return true;
}

static bool check_seg(const char *name, const struct x86_segment *seg,
		      char *err, size_t errlen)
{
	if (seg->attr & ~ST_SEG_ATTR_VALID)
		return fail(err, errlen, "%s attributes %#x set a reserved bit",
			    name, seg->attr);
	if (!x86_is_canonical(seg->base))
		return fail(err, errlen, "%s base %#llx is not canonical", name,
			    (unsigned long long)seg->base);
	return true;
}

bool x86_check_sregs(const struct x86_sregs *s, char *err, size_t errlen)
{
	static const char *const names[6] = {
		"es", "cs", "ss", "ds", "fs", "gs"
	};
	bool lma;

	for (unsigned int i = 0; i < 6; i++)
		if (!check_seg(names[i], &s->seg[i], err, errlen))
			return false;
	if (!check_seg("ldtr", &s->ldtr, err, errlen) ||
	    !check_seg("tr", &s->tr, err, errlen))
		return false;
	/* L and D both set in CS is reserved (SDM vol. 3, 5.2.1). */
	if ((s->seg[X86_CS].attr & X86_SEG_L) &&
	    (s->seg[X86_CS].attr & X86_SEG_DB))
		return fail(err, errlen, "cs attributes %#x set both L and D/B",
			    s->seg[X86_CS].attr);
	/* In IA-32e mode TR holds a present busy 64-bit TSS (type 11),
	 * as LTR leaves it (SDM vol. 3, 7.2.3 and 7.4). */
	if (X86_SEG_TYPE(s->tr.attr) != 11 || !(s->tr.attr & X86_SEG_P))
		return fail(err, errlen,
			    "tr attributes %#x are not a present busy "
			    "64-bit TSS",
			    s->tr.attr);
	if (!x86_is_canonical(s->gdt.base))
		return fail(err, errlen, "gdt base %#llx is not canonical",
			    (unsigned long long)s->gdt.base);
	if (!x86_is_canonical(s->idt.base))
		return fail(err, errlen, "idt base %#llx is not canonical",
			    (unsigned long long)s->idt.base);
	if ((s->cr0 & ~X86_CR0_IMPLEMENTED) || !(s->cr0 & X86_CR0_ET))
		return fail(err, errlen, "cr0 %#llx sets a reserved bit",
			    (unsigned long long)s->cr0);
	/* The CPU is always in 64-bit mode (exec_system.c, MOV to CR0):
	 * paging, protection, PAE and long mode are always on. */
	if (!(s->cr0 & X86_CR0_PG) || !(s->cr0 & X86_CR0_PE))
		return fail(err, errlen, "cr0 %#llx has paging off",
			    (unsigned long long)s->cr0);
	if ((s->cr0 & X86_CR0_NW) && !(s->cr0 & X86_CR0_CD))
		return fail(err, errlen, "cr0 %#llx sets NW without CD",
			    (unsigned long long)s->cr0);
	if (s->cr3 & ST_CR3_RESERVED)
		return fail(err, errlen, "cr3 %#llx sets a reserved bit",
			    (unsigned long long)s->cr3);
	if (s->cr4 & ~X86_CR4_IMPLEMENTED)
		return fail(err, errlen, "cr4 %#llx sets a reserved bit",
			    (unsigned long long)s->cr4);
	if (!(s->cr4 & X86_CR4_PAE))
		return fail(err, errlen, "cr4 %#llx has PAE off in long mode",
			    (unsigned long long)s->cr4);
	/* CR8 is the TPR's bits 7:4 (SDM vol. 3, 10.8.6.1). */
	if (s->cr8 > 15)
		return fail(err, errlen, "cr8 %#llx sets a reserved bit",
			    (unsigned long long)s->cr8);
	if (s->efer & ~ST_EFER_VALID)
		return fail(err, errlen, "efer %#llx sets a reserved bit",
			    (unsigned long long)s->efer);
	lma = s->efer & X86_EFER_LMA;
	if (!lma || !(s->efer & X86_EFER_LME))
		return fail(err, errlen, "efer %#llx is not in long mode",
			    (unsigned long long)s->efer);
	/* CR3[11:0] is a PCID only with CR4.PCIDE (SDM vol. 3, 4.10.1). */
	return true;
}

static bool pat_ok(uint64_t v)
{
	for (unsigned int i = 0; i < 8; i++) {
		uint8_t t = (uint8_t)(v >> (8 * i));

		/* SDM vol. 3, 13.12.2: types 2, 3 and 8-255 are reserved. */
		if (t > 7 || t == 2 || t == 3)
			return false;
	}
	return true;
}

bool x86_check_misc(const struct x86_misc_state *st, char *err, size_t errlen)
{
	const struct x86_msrs *m = &st->msrs;

	if (!x86_is_canonical(m->lstar))
		return fail(err, errlen, "lstar %#llx is not canonical",
			    (unsigned long long)m->lstar);
	if (!x86_is_canonical(m->cstar))
		return fail(err, errlen, "cstar %#llx is not canonical",
			    (unsigned long long)m->cstar);
	if (!x86_is_canonical(m->kernel_gs_base))
		return fail(err, errlen,
			    "kernel_gs_base %#llx is not canonical",
			    (unsigned long long)m->kernel_gs_base);
	if (m->sfmask >> 32)
		return fail(err, errlen, "sfmask %#llx sets a reserved bit",
			    (unsigned long long)m->sfmask);
	if (m->tsc_aux >> 32)
		return fail(err, errlen, "tsc_aux %#llx sets a reserved bit",
			    (unsigned long long)m->tsc_aux);
	if (!pat_ok(m->pat))
		return fail(err, errlen, "pat %#llx holds a reserved type",
			    (unsigned long long)m->pat);
	if (m->apic_base & ~ST_APIC_BASE_VALID)
		return fail(err, errlen, "apic_base %#llx sets a reserved bit",
			    (unsigned long long)m->apic_base);
	if (st->ev.pending) {
		if (st->ev.kind > X86_EV_NMI)
			return fail(err, errlen, "event kind %u is unknown",
				    st->ev.kind);
		if (!x86_is_canonical(st->ev.return_rip))
			return fail(err, errlen,
				    "event return rip %#llx is not canonical",
				    (unsigned long long)st->ev.return_rip);
	} else if (st->ev.vector || st->ev.kind || st->ev.has_error ||
		   st->ev.error || st->ev.return_rip || st->ev.cr2) {
		return fail(err, errlen, "event fields set with none pending");
	}
	if (!st->ev.has_error && st->ev.error)
		return fail(err, errlen, "event error code without has_error");
	if (st->delivering < -1 || st->delivering > 255)
		return fail(err, errlen, "delivering vector %d out of range",
			    st->delivering);
	if (st->int_shadow > X86_SHADOW_ACTIVE)
		return fail(err, errlen, "interrupt shadow %u out of range",
			    st->int_shadow);
	return true;
}

bool x86_load_state(struct x86_cpu *cpu, const struct x86_regs *regs,
		    const struct x86_sregs *sregs, const uint8_t fpu[512],
		    const struct x86_misc_state *misc, char *err, size_t errlen)
{
	uint32_t mxcsr;

	if (!x86_check_regs(regs, err, errlen) ||
	    !x86_check_sregs(sregs, err, errlen) ||
	    !x86_check_misc(misc, err, errlen))
		return false;
	/* x86_set_fpu() refuses the same MXCSR, but only after the rest
	 * would have been loaded: check it first (FXSAVE bytes 24-27). */
	memcpy(&mxcsr, fpu + 24, sizeof(mxcsr));
	if (mxcsr & ~X86_MXCSR_MASK)
		return fail(err, errlen, "mxcsr %#x sets a reserved bit",
			    mxcsr);
	if (!x86_set_fpu(cpu, fpu))
		return fail(err, errlen, "the FXSAVE image was refused");
	x86_set_regs(cpu, regs);
	x86_set_sregs(cpu, sregs);

	cpu->star = misc->msrs.star;
	cpu->lstar = misc->msrs.lstar;
	cpu->cstar = misc->msrs.cstar;
	cpu->sfmask = misc->msrs.sfmask;
	cpu->kernel_gs_base = misc->msrs.kernel_gs_base;
	cpu->pat = misc->msrs.pat;
	cpu->tsc_aux = misc->msrs.tsc_aux;
	cpu->apic_base = misc->msrs.apic_base;
	cpu->misc_enable = misc->msrs.misc_enable;
	/* The guest's TSC goes on from the value saved: the offset is
	 * recomputed against this host's TSC. */
	cpu->tsc_offset = (int64_t)(misc->guest_tsc - __rdtsc());

	memset(&cpu->ev, 0, sizeof(cpu->ev));
	cpu->ev.pending = misc->ev.pending;
	cpu->ev.vector = misc->ev.vector;
	cpu->ev.kind = misc->ev.kind;
	cpu->ev.has_error = misc->ev.has_error;
	cpu->ev.error = misc->ev.error;
	cpu->ev.return_rip = misc->ev.return_rip;
	cpu->ev_cr2 = misc->ev.cr2;
	cpu->delivering = misc->delivering;
	cpu->chain_len = 0;
	cpu->int_shadow = misc->int_shadow;
	cpu->irq_lines = (uint8_t)((cpu->irq_lines & ~X86_IRQ_NMI) |
				   (misc->nmi_latched ? X86_IRQ_NMI : 0));
	cpu->nmi_blocked = misc->nmi_blocked;
	/* After x86_set_regs(), which ends the HLT state. */
	cpu->halted = misc->halted;
	cpu->shutdown = false;
	memset(&cpu->io, 0, sizeof(cpu->io));
	return true;
}

/* FNV-1a, 64 bits, over 32-bit words in little-endian byte order. */
static uint64_t fnv_words(uint64_t h, const uint32_t *w, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		for (unsigned int b = 0; b < 4; b++) {
			h ^= (w[i] >> (8 * b)) & 0xff;
			h *= 0x100000001b3ULL;
		}
	return h;
}

uint64_t x86_cpuid_signature(const struct x86_cpu *cpu)
{
	static const uint32_t leaves[][2] = {
		{ 0, 0 },	   { 1, 0 },	      { 7, 0 },
		{ 0x80000000, 0 }, { 0x80000001, 0 },
	};
	uint64_t h = 0xcbf29ce484222325ULL;
	uint32_t out[4];

	for (unsigned int i = 0; i < ARRAY_SIZE(leaves); i++) {
		x86_cpuid(cpu, leaves[i][0], leaves[i][1], out);
		if (leaves[i][0] == 1)
			out[1] &= 0x00ffffff; /* the initial APIC ID */
		h = fnv_words(h, &leaves[i][0], 1);
		h = fnv_words(h, out, 4);
	}
	return h;
}

void x86_get_debugregs(const struct x86_cpu *cpu, struct x86_debugregs *d)
{
	memcpy(d->dr, cpu->dr, sizeof(d->dr));
	d->dr6 = cpu->dr6;
	d->dr7 = cpu->dr7;
}

bool x86_set_debugregs(struct x86_cpu *cpu, const struct x86_debugregs *d,
		       char *err, size_t errlen)
{
	if (d->dr6 != ((d->dr6 & X86_DR6_WRITABLE) | X86_DR6_FIXED1)) {
		snprintf(err, errlen, "dr6 %#llx is not a value DR6 can hold",
			 (unsigned long long)d->dr6);
		return false;
	}
	if (d->dr7 != ((d->dr7 & X86_DR7_WRITABLE) | X86_DR7_FIXED1)) {
		snprintf(err, errlen, "dr7 %#llx is not a value DR7 can hold",
			 (unsigned long long)d->dr7);
		return false;
	}
	memcpy(cpu->dr, d->dr, sizeof(cpu->dr));
	cpu->dr6 = d->dr6;
	cpu->dr7 = d->dr7;
	return true;
}
