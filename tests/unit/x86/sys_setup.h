/*
 * System tables for the software CPU's system-level tests (test_except,
 * test_system, test_io): a GDT with kernel and user segments and a
 * 64-bit TSS, an IDT whose every gate leads to a HLT of its own, and the
 * TSS stacks, all in harness memory below XH_CODE, and the runs the
 * tests make on them. Header-only so each test executable stays one file
 * plus the harness.
 */
#ifndef X86_SYS_SETUP_H
#define X86_SYS_SETUP_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define SYS_GDT 0x10000ULL
#define SYS_TSS 0x11000ULL
#define SYS_IDT 0x12000ULL
#define SYS_HANDLERS 0x20000ULL /* vector v: a HLT at SYS_HANDLERS + 16 v */
#define SYS_RSP0 0x80000ULL
#define SYS_IST1 0x90000ULL
#define SYS_USER_STACK 0x180000ULL
#define SYS_DATA 0x300000ULL

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UCODE32 0x1b
#define SEL_UDATA 0x23
#define SEL_UCODE 0x2b
#define SEL_TSS 0x30
#define SYS_GDT_ENTRIES 10 /* 8 used, 0x40 and 0x48 spare */

#define GATE_INTR 0x8e /* present, DPL0, 64-bit interrupt gate */
#define GATE_TRAP 0x8f
#define GATE_DPL3 0x60

static inline uint64_t sys_handler(unsigned int vector)
{
	return SYS_HANDLERS + 16 * vector;
}

static inline uint64_t *sys_gdt(struct xh *h)
{
	return xh_ptr(h, SYS_GDT);
}

static inline void sys_set_gate(struct xh *h, unsigned int vector,
				uint64_t target, uint16_t sel, unsigned int ist,
				unsigned int type_attr)
{
	uint64_t g[2];

	g[0] = (target & 0xffff) | ((uint64_t)sel << 16) |
	       ((uint64_t)ist << 32) | ((uint64_t)type_attr << 40) |
	       (((target >> 16) & 0xffff) << 48);
	g[1] = target >> 32;
	xh_load(h, SYS_IDT + 16 * vector, g, sizeof(g));
}

static inline void sys_write64(struct xh *h, uint64_t gpa, uint64_t v)
{
	xh_load(h, gpa, &v, 8);
}

static inline uint64_t sys_read64(struct xh *h, uint64_t gpa)
{
	uint64_t v;

	memcpy(&v, xh_ptr(h, gpa), 8);
	return v;
}

static inline uint64_t sys_tss_descriptor_low(uint64_t base, unsigned int type)
{
	return 0x67 | ((base & 0xffffff) << 16) |
	       ((uint64_t)(0x80 | type) << 40) | (((base >> 24) & 0xff) << 56);
}

/* GDT, TSS (RSP0, IST1, no I/O bitmap), IDT; TR loaded, busy. */
static inline void sys_setup(struct xh *h)
{
	uint64_t *gdt = sys_gdt(h);
	struct x86_sregs s;

	memset(gdt, 0, SYS_GDT_ENTRIES * 8);
	gdt[1] = 0x00af9b000000ffffULL;
	gdt[2] = 0x00cf93000000ffffULL;
	gdt[3] = 0x00cffb000000ffffULL;
	gdt[4] = 0x00cff3000000ffffULL;
	gdt[5] = 0x00affb000000ffffULL;
	gdt[6] = sys_tss_descriptor_low(SYS_TSS, 0xb);
	gdt[7] = SYS_TSS >> 32;

	memset(xh_ptr(h, SYS_TSS), 0, 0x68);
	sys_write64(h, SYS_TSS + 4, SYS_RSP0);
	sys_write64(h, SYS_TSS + 0x24, SYS_IST1);
	*(uint16_t *)xh_ptr(h, SYS_TSS + 0x66) = 0x68;

	memset(xh_ptr(h, SYS_HANDLERS), 0xf4, 16 * 256);
	for (unsigned int v = 0; v < 256; v++)
		sys_set_gate(h, v, sys_handler(v), SEL_KCODE, 0, GATE_INTR);

	x86_get_sregs(h->cpu, &s);
	s.gdt.base = SYS_GDT;
	s.gdt.limit = SYS_GDT_ENTRIES * 8 - 1;
	s.idt.base = SYS_IDT;
	s.idt.limit = 256 * 16 - 1;
	s.tr.sel = SEL_TSS;
	s.tr.base = SYS_TSS;
	s.tr.limit = 0x67;
	s.tr.attr = 0x8b;
	x86_set_sregs(h->cpu, &s);
}

static inline struct x86_segment sys_flat(uint16_t sel, uint32_t attr)
{
	struct x86_segment seg = { sel, 0, 0xffffffff, attr };

	return seg;
}

static inline uint64_t sys_reg(struct xh *h, unsigned int r)
{
	struct x86_regs regs;

	x86_get_regs(h->cpu, &regs);
	return regs.gpr[r];
}

static inline void sys_set_reg(struct xh *h, unsigned int r, uint64_t v)
{
	struct x86_regs regs;

	x86_get_regs(h->cpu, &regs);
	regs.gpr[r] = v;
	x86_set_regs(h->cpu, &regs);
}

static inline uint64_t sys_rip(struct xh *h)
{
	struct x86_regs regs;

	x86_get_regs(h->cpu, &regs);
	return regs.rip;
}

static inline uint64_t sys_rflags(struct xh *h)
{
	struct x86_regs regs;

	x86_get_regs(h->cpu, &regs);
	return regs.rflags;
}

static inline void sys_set_rflags(struct xh *h, uint64_t v)
{
	struct x86_regs regs;

	x86_get_regs(h->cpu, &regs);
	regs.rflags = v;
	x86_set_regs(h->cpu, &regs);
}

/* CS = 0x2b, SS = 0x23 (CPL3), RSP = SYS_USER_STACK. */
static inline void sys_enter_cpl3(struct xh *h)
{
	struct x86_sregs s;

	x86_get_sregs(h->cpu, &s);
	s.seg[X86_CS] = sys_flat(SEL_UCODE, 0xa0fb);
	s.seg[X86_SS] = sys_flat(SEL_UDATA, 0xc0f3);
	x86_set_sregs(h->cpu, &s);
	sys_set_reg(h, X86_RSP, SYS_USER_STACK);
}

/* Places code (then HLT) at XH_CODE, runs it from there. */
static inline enum x86_exit_reason sys_run(struct xh *h, const void *code,
					   size_t len, struct x86_exit *exit)
{
	return xh_run_at(h, code, len, exit);
}

/* True when the last run stopped at the HLT of vector's handler. */
static inline bool sys_in_handler(struct xh *h, unsigned int vector)
{
	return sys_rip(h) == sys_handler(vector) + 1;
}

/* A harness CPU with the tables of sys_setup(). */
static inline struct xh *sys_new(void)
{
	struct xh *h = xh_new();

	sys_setup(h);
	return h;
}

/* Runs code and expects it to reach its final HLT. */
static inline void sys_run_ok(struct xh *h, const uint8_t *code, size_t len)
{
	struct x86_exit exit;

	assert_int_equal(sys_run(h, code, len, &exit), X86_EXIT_HLT);
	assert_int_equal(sys_rip(h), XH_CODE + len + 1);
}

/* Runs code and expects its fault vector's handler; returns the word on
 * top of the handler's stack (the error code, for a vector with one). */
static inline uint64_t sys_run_fault(struct xh *h, const uint8_t *code,
				     size_t len, unsigned int vector)
{
	struct x86_exit exit;

	assert_int_equal(sys_run(h, code, len, &exit), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, vector));
	return sys_read64(h, sys_reg(h, X86_RSP));
}

#endif
