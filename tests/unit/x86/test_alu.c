/*
 * Differential tests of the integer ALU (exec_alu.c) and the lazy flags
 * (flags.c): every form of every instruction, at every operand size,
 * with register and memory operands and the LOCK prefix where it is
 * legal, runs on the host CPU (hostexec.c) and in the software CPU (the
 * harness) from the same registers and flags, over corner values and
 * random ones drawn from a fixed seed; all general registers (RSP
 * aside: it is the host's stack), the arithmetic flags, DF and the
 * memory operand must come out the same. Only what the SDM leaves
 * undefined and vendors do differently is masked (undef_flags): AF after
 * logic ops and shifts, OF for shift and rotate counts above 1, the
 * flags after MUL other than CF/OF, the destination of BSF/BSR with a
 * zero source, OF/SF/AF/PF after LZCNT/TZCNT, and the flags of SHLD/SHRD
 * by more than the operand size. Sequences of a
 * flag-writing instruction and a flag reader check the lazy-flag paths
 * (SETcc after each kind of producer, ADC after ADD, INC keeping CF...).
 * Faults must match too: the host's SIGFPE/SIGILL is our #DE/#UD, which
 * the harness's CPU (no IDT) turns into a triple fault.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "harness.h"
#include "hostexec.h"
#include "rng.h"

#define ARITH X86_RFLAGS_ARITH
#define CF X86_RFLAGS_CF
#define PF X86_RFLAGS_PF
#define AF X86_RFLAGS_AF
#define ZF X86_RFLAGS_ZF
#define SF X86_RFLAGS_SF
#define OF X86_RFLAGS_OF
#define DF X86_RFLAGS_DF

/* The memory operand lives in a buffer: RBX points at its middle on
 * both sides (host buffer, guest GBUF), so [rbx+disp] and BT's signed
 * bit offsets reach the same bytes. */
#define GBUF 0x300000ULL
#define BUF 512
#define MID 256
#define RBX X86_RBX
#define MAX_FAILS 12

static struct xh *h;
static uint8_t hostbuf[BUF] __attribute__((aligned(64)));
static uint64_t rng = 0x6d6d7564a1b2c3d4ULL;
static unsigned int failures, ncases;

static uint64_t rnd(void)
{
	return splitmix64(&rng);
}

static uint64_t mask_of(unsigned int size)
{
	return ~0ULL >> (64 - 8 * size);
}

/* Sign boundaries and small values at an operand size. */
#define NCORNERS 12
static uint64_t corner(unsigned int size, unsigned int i)
{
	uint64_t m = mask_of(size), smax = m >> 1;
	const uint64_t c[NCORNERS] = {
		0,	  1,	    2,	  0xf,
		0x10,	  smax - 1, smax, smax + 1,
		smax + 2, m - 1,    m,	  0x55555555aaaaaaaaULL & m,
	};

	return c[i % NCORNERS];
}

/* An operand value: a corner (index < NCORNERS) or random, with random
 * bits above the operand half of the time. */
static uint64_t value(unsigned int size, unsigned int i)
{
	uint64_t v = i < NCORNERS ? corner(size, i) : rnd() & mask_of(size);

	if (size < 8 && (rnd() & 1))
		v |= rnd() & ~mask_of(size);
	return v;
}

/* Shift counts: every count up to twice the width, then the masked
 * and out-of-range ones. */
static unsigned int count_value(unsigned int size, unsigned int i)
{
	unsigned int w = size * 8;
	static const unsigned int extra[] = { 31, 32, 33, 63, 64, 65, 127, 255 };

	if (i <= 2 * w + 1)
		return i;
	i -= 2 * w + 2;
	if (i < sizeof(extra) / sizeof(extra[0]))
		return extra[i];
	return (unsigned int)rnd() & 0xff;
}

static unsigned int count_cases(unsigned int size)
{
	return size * 16 + 2 + 8 + 8;
}

/* ---- running one case on both CPUs ----------------------------------- */

struct state {
	uint64_t gpr[16];
	uint64_t rflags;
	bool mem; /* RBX is the buffer pointer; compare the buffer */
	uint8_t buf[BUF];
};

static void hexdump(const char *what, const uint8_t *code, size_t len)
{
	fprintf(stderr, "  %s:", what);
	for (size_t i = 0; i < len; i++)
		fprintf(stderr, " %02x", code[i]);
	fprintf(stderr, "\n");
}

static void report(const char *name, const uint8_t *code, size_t len,
		   const struct state *in)
{
	fprintf(stderr, "MISMATCH %s\n", name);
	hexdump("bytes", code, len);
	fprintf(stderr, "  in: flags %03llx", (unsigned long long)in->rflags);
	for (unsigned int i = 0; i < 16; i++)
		if (i != X86_RSP)
			fprintf(stderr, "%s r%u=%llx", i % 4 ? "" : "\n   ", i,
				(unsigned long long)in->gpr[i]);
	fprintf(stderr, "\n");
}

static enum hx_result run_guest_fault(const uint8_t *code, size_t len,
				      unsigned int *vector)
{
	struct x86_exit exit;
	enum x86_exit_reason reason;

	xh_place_code(h, code, len);
	reason = xh_run(h, 1000, &exit);
	/* A triple fault leaves the CPU shut down: start a fresh one. */
	xh_free(h);
	h = xh_new();
	if (reason != X86_EXIT_TRIPLE_FAULT)
		return HX_OK;
	*vector = exit.triple.vectors[0];
	return exit.triple.vectors[0] == X86_DE ? HX_FAULT_DE :
	       exit.triple.vectors[0] == X86_UD ? HX_FAULT_UD :
						  HX_FAULT_OTHER;
}

/*
 * Runs code on the host and in our CPU from *in; undef masks flags,
 * undef_reg (or -1) a register whose value is undefined.
 */
static void run_case(const char *name, const uint8_t *code, size_t len,
		     const struct state *in, uint64_t undef, int undef_reg)
{
	struct hx_regs hr;
	struct x86_regs gr;
	enum hx_result hres, gres;
	unsigned int vector = 0;
	bool bad = false;

	ncases++;
	memcpy(hr.gpr, in->gpr, sizeof(hr.gpr));
	hr.rflags = in->rflags;
	if (in->mem) {
		memcpy(hostbuf, in->buf, BUF);
		hr.gpr[RBX] = (uint64_t)(uintptr_t)hostbuf + MID;
	}
	hres = hx_run(code, len, &hr);

	x86_get_regs(h->cpu, &gr);
	memcpy(gr.gpr, in->gpr, sizeof(gr.gpr));
	gr.gpr[X86_RSP] = XH_STACK_TOP;
	gr.rflags = (in->rflags & (ARITH | DF)) | X86_RFLAGS_FIXED;
	if (in->mem) {
		xh_load(h, GBUF, in->buf, BUF);
		gr.gpr[RBX] = GBUF + MID;
	}
	x86_set_regs(h->cpu, &gr);

	if (hres != HX_OK) {
		gres = run_guest_fault(code, len, &vector);
		if (gres != hres) {
			if (failures < MAX_FAILS) {
				report(name, code, len, in);
				fprintf(stderr,
					"  host fault %d, guest %d (vector %u)\n",
					hres, gres, vector);
			}
			failures++;
		}
		return;
	}
	if (xh_run_code(h, code, len) != 0) {
		if (failures < MAX_FAILS) {
			report(name, code, len, in);
			fprintf(stderr, "  guest did not reach its HLT\n");
		}
		failures++;
		xh_free(h);
		h = xh_new();
		return;
	}
	x86_get_regs(h->cpu, &gr);
	for (unsigned int i = 0; i < 16; i++) {
		if (i == X86_RSP || (int)i == undef_reg ||
		    (in->mem && i == RBX) || hr.gpr[i] == gr.gpr[i])
			continue;
		if (!bad && failures < MAX_FAILS)
			report(name, code, len, in);
		if (failures < MAX_FAILS)
			fprintf(stderr, "  r%u: host %llx guest %llx\n", i,
				(unsigned long long)hr.gpr[i],
				(unsigned long long)gr.gpr[i]);
		bad = true;
	}
	if ((hr.rflags ^ gr.rflags) & (ARITH | DF) & ~undef) {
		if (!bad && failures < MAX_FAILS)
			report(name, code, len, in);
		if (failures < MAX_FAILS)
			fprintf(stderr,
				"  flags: host %03llx guest %03llx (undef %03llx)\n",
				(unsigned long long)(hr.rflags & (ARITH | DF)),
				(unsigned long long)(gr.rflags & (ARITH | DF)),
				(unsigned long long)undef);
		bad = true;
	}
	if (in->mem && memcmp(hostbuf, xh_ptr(h, GBUF), BUF)) {
		if (!bad && failures < MAX_FAILS)
			report(name, code, len, in);
		if (failures < MAX_FAILS)
			fprintf(stderr, "  memory operand differs\n");
		bad = true;
	}
	failures += bad;
}

/* Random registers and arithmetic flags (DF clear but where asked). */
static void random_state(struct state *s, bool mem)
{
	for (unsigned int i = 0; i < 16; i++)
		s->gpr[i] = (rnd() & 3) ? rnd() : corner(8, rnd() % NCORNERS);
	s->rflags = rnd() & (ARITH & ~0ULL);
	s->mem = mem;
	if (mem)
		for (unsigned int i = 0; i < BUF; i++)
			s->buf[i] = (uint8_t)rnd();
}

/* ---- instruction forms ------------------------------------------------ */

enum kind {
	K_MODRM, /* ModRM.reg is the G register */
	K_GRP, /* ModRM.reg is the group number: E only */
	K_ACC, /* AL/AX/EAX/RAX and an immediate, no ModRM */
	K_NONE, /* no explicit operand */
	K_OPREG, /* register in the opcode's low bits */
};

enum imm { I_NONE, I_B, I_Z };
enum count { C_NONE, C_ONE, C_CL, C_IB };
enum undef { U_NONE, U_LOGIC, U_SHIFT, U_ROT, U_MUL, U_SHD, U_BSX, U_XZCNT };

#define SZ_B 1u
#define SZ_V 14u /* 2, 4 and 8 bytes */
#define SZ_4 4u

/* form.flags */
#define F_LOCK 1u /* LOCK is legal with a memory operand */
#define F_BTREG 2u /* G is a bit index into memory */
#define F_DIV 4u /* dividend and divisor chosen to fault less often */
#define F_NOMEM 16u /* ModRM must name a register */

struct form {
	const char *name;
	uint8_t pfx;
	uint8_t op[2], nop;
	uint8_t kind, group, imm, count, undef;
	uint8_t sizes, flags;
};

static size_t put_imm(uint8_t *p, size_t n, uint64_t imm, unsigned int len)
{
	for (unsigned int i = 0; i < len; i++)
		p[n++] = (uint8_t)(imm >> (8 * i));
	return n;
}

/*
 * Encodes f at size with G register reg, E register rm or (rm < 0) the
 * memory operand [rbx + disp8]. rex forces a REX prefix (SPL..DIL
 * instead of AH..BH).
 */
static size_t encode(uint8_t *p, const struct form *f, unsigned int size,
		     unsigned int reg, int rm, int8_t disp, uint64_t imm,
		     bool lock, bool rex)
{
	size_t n = 0;
	uint8_t r = 0x40;

	if (lock)
		p[n++] = 0xf0;
	if (size == 2)
		p[n++] = 0x66;
	if (f->pfx)
		p[n++] = f->pfx;
	if (size == 8)
		r |= 8;
	if (f->kind == K_MODRM && reg >= 8)
		r |= 4;
	if ((f->kind == K_MODRM || f->kind == K_GRP) && rm >= 8)
		r |= 1;
	if (f->kind == K_OPREG && reg >= 8)
		r |= 1;
	if (r != 0x40 || rex)
		p[n++] = r;
	for (unsigned int i = 0; i < f->nop; i++)
		p[n++] = f->op[i];
	if (f->kind == K_OPREG)
		p[n - 1] = (uint8_t)(p[n - 1] + (reg & 7));
	if (f->kind == K_MODRM || f->kind == K_GRP) {
		unsigned int g = f->kind == K_GRP ? f->group : reg & 7;

		if (rm < 0) {
			p[n++] = (uint8_t)(0x40 | (g << 3) | 3);
			p[n++] = (uint8_t)disp;
		} else {
			p[n++] = (uint8_t)(0xc0 | (g << 3) | (rm & 7));
		}
	}
	if (f->imm == I_B)
		n = put_imm(p, n, imm, 1);
	else if (f->imm == I_Z)
		n = put_imm(p, n, imm, size == 2 ? 2 : 4);
	return n;
}

/* A register operand: never RSP, never RBX (or BL/BH) with memory;
 * without REX, 4-7 of a byte operand are AH..BH. */
static unsigned int pick_reg(bool byte, bool rex, bool mem)
{
	for (;;) {
		unsigned int r = (unsigned int)rnd() & (byte && !rex ? 7 : 15);

		if (r == X86_RSP && (rex || !byte))
			continue;
		if (mem && (r == RBX || (byte && !rex && r == 7)))
			continue;
		return r;
	}
}

/* Writes v into register r as the instruction sees it. */
static void set_operand(struct state *s, unsigned int r, unsigned int size,
			bool rex, uint64_t v)
{
	if (size == 1 && !rex && r >= 4 && r < 8) {
		s->gpr[r - 4] = (s->gpr[r - 4] & ~0xff00ULL) |
				((v & 0xff) << 8);
		return;
	}
	if (size == 8)
		s->gpr[r] = v;
	else
		s->gpr[r] = (s->gpr[r] & ~mask_of(size)) | (v & mask_of(size));
	if (size < 8 && (rnd() & 1))
		s->gpr[r] ^= rnd() & ~mask_of(size);
}

static uint64_t undef_flags(const struct form *f, unsigned int size,
			    unsigned int count)
{
	unsigned int c = count & (size == 8 ? 63 : 31);

	switch (f->undef) {
	case U_LOGIC:
		return AF;
	case U_SHIFT:
		return c ? AF | (c > 1 ? OF : 0) : 0;
	case U_ROT:
		return c > 1 ? OF : 0;
	case U_MUL:
		return SF | ZF | AF | PF;
	case U_XZCNT:
		return OF | SF | AF | PF;
	case U_SHD:
		if (!c)
			return 0;
		if (c > size * 8)
			return ARITH;
		return AF | (c > 1 ? OF : 0);
	default:
		return 0;
	}
}

enum variant { V_REG, V_MEM, V_LOCK };

/* One case of form f: case index i picks corners first, then random. */
static void form_case(const struct form *f, unsigned int size, enum variant var,
		      unsigned int i)
{
	bool mem = var != V_REG && (f->kind == K_MODRM || f->kind == K_GRP);
	bool byte = size == 1;
	bool rex = byte && (rnd() & 1);
	unsigned int reg = pick_reg(byte, rex, mem), rm = 0, count = 0;
	int8_t disp = (int8_t)((int)(rnd() % 33) - 16);
	uint64_t imm = 0, e, g, undef;
	uint8_t code[32];
	size_t len;
	struct state s;
	int undef_reg = -1;
	char name[64];

	random_state(&s, mem);
	if (f->kind == K_MODRM || f->kind == K_GRP)
		rm = mem ? 0 : pick_reg(byte, rex, false);
	if (f->kind == K_OPREG)
		reg = pick_reg(false, true, false);

	/* Operand values: corner x corner first, then random. */
	e = value(size, i % (NCORNERS + 4));
	g = value(size, (i / (NCORNERS + 4)) % (NCORNERS + 4));
	if (f->imm == I_B)
		imm = f->count == C_IB ?
			      count_value(size, i) :
			      value(1, (i / (NCORNERS + 4)) % (NCORNERS + 4));
	else if (f->imm == I_Z)
		imm = value(size == 2 ? 2 : 4,
			    (i / (NCORNERS + 4)) % (NCORNERS + 4));
	if (f->count == C_ONE)
		count = 1;
	else if (f->count == C_IB)
		count = (unsigned int)imm;
	else if (f->count == C_CL)
		count = count_value(size, i);
	if (f->count != C_NONE)
		e = value(size, rnd() % (NCORNERS + 4));
	if (f->flags & F_BTREG) {
		/* A bit offset that stays inside the buffer. */
		if (mem)
			g = (uint64_t)((int64_t)(rnd() % 3600) - 1800);
		else
			g = value(size, i % (NCORNERS + 4));
	}
	if (f->flags & F_DIV) {
		uint64_t m = mask_of(size);

		if (i & 1) {
			/* A divisor and a dividend whose quotient fits. */
			e = rnd() & m;
			if (!e)
				e = 1;
			s.gpr[X86_RAX] = rnd();
			s.gpr[X86_RDX] = (rnd() & m) % e;
			if (size == 1)
				s.gpr[X86_RAX] = (s.gpr[X86_RAX] & ~0xff00ULL) |
						 ((rnd() % (e & 0xff)) << 8);
			if (rnd() & 1)
				s.gpr[X86_RDX] = (rnd() & 1) ? 0 : ~0ULL;
		}
	}

	if (f->kind == K_MODRM)
		set_operand(&s, reg, size, rex || size != 1, g);
	if (mem) {
		for (unsigned int b = 0; b < size; b++)
			s.buf[MID + disp + b] = (uint8_t)(e >> (8 * b));
	} else if (f->kind == K_MODRM || f->kind == K_GRP) {
		set_operand(&s, rm, size, rex || size != 1, e);
	} else if (f->kind == K_ACC) {
		set_operand(&s, X86_RAX, size, true, e);
	}
	if (f->flags & F_BTREG)
		set_operand(&s, reg, size, true, g);
	if (f->count == C_CL)
		s.gpr[X86_RCX] = (s.gpr[X86_RCX] & ~0xffULL) | count;
	if (f->kind == K_NONE && (rnd() & 1))
		s.rflags |= DF;

	undef = undef_flags(f, size, count);
	if (f->undef == U_BSX) {
		uint64_t src = mem ? e : s.gpr[rm];

		if (!(src & mask_of(size)))
			undef_reg = (int)reg;
	}
	len = encode(code, f, size, reg, mem ? -1 : (int)rm, disp, imm,
		     var == V_LOCK, rex);
	snprintf(name, sizeof(name), "%s size %u%s", f->name, size,
		 var == V_LOCK ? " lock" :
		 var == V_MEM  ? " mem" :
				 "");
	run_case(name, code, len, &s, undef, undef_reg);
}

static void check_forms(const struct form *forms, size_t n)
{
	failures = 0;
	for (size_t k = 0; k < n; k++) {
		const struct form *f = &forms[k];

		for (unsigned int size = 1; size <= 8; size *= 2) {
			unsigned int ncase = (NCORNERS + 4) * (NCORNERS + 4);

			if (!(f->sizes & size))
				continue;
			if (f->count == C_CL || f->count == C_IB)
				ncase = count_cases(size) * 3;
			if (f->kind == K_NONE || f->kind == K_OPREG)
				ncase = 64;
			for (unsigned int i = 0; i < ncase; i++)
				form_case(f, size, V_REG, i);
			if (f->kind != K_MODRM && f->kind != K_GRP)
				continue;
			if (f->flags & F_NOMEM)
				continue;
			for (unsigned int i = 0; i < ncase / 2; i++)
				form_case(f, size, V_MEM, i);
			if (f->flags & F_LOCK)
				for (unsigned int i = 0; i < ncase / 4; i++)
					form_case(f, size, V_LOCK, i);
		}
	}
	if (failures)
		fprintf(stderr, "%u of %u cases differ\n", failures, ncases);
	assert_int_equal(failures, 0);
}

#define FORM(...) ((struct form){ __VA_ARGS__ })
#define NFORMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the tests -------------------------------------------------------- */

static const char *const alu_names[8] = { "add", "or",	"adc", "sbb",
					  "and", "sub", "xor", "cmp" };

static void test_alu_add_to_cmp_every_form_match_host(void **state)
{
	struct form forms[8 * 9];
	size_t n = 0;

	(void)state;
	for (unsigned int op = 0; op < 8; op++) {
		uint8_t base = (uint8_t)(op * 8), lk = op == 7 ? 0 : F_LOCK;
		uint8_t u = (op == 1 || op == 4 || op == 6) ? U_LOGIC : U_NONE;
		const char *nm = alu_names[op];

		forms[n++] = FORM(nm, 0, { base }, 1, K_MODRM, 0, I_NONE,
				  C_NONE, u, SZ_B, lk);
		forms[n++] = FORM(nm, 0, { (uint8_t)(base + 1) }, 1, K_MODRM, 0,
				  I_NONE, C_NONE, u, SZ_V, lk);
		forms[n++] = FORM(nm, 0, { (uint8_t)(base + 2) }, 1, K_MODRM, 0,
				  I_NONE, C_NONE, u, SZ_B, 0);
		forms[n++] = FORM(nm, 0, { (uint8_t)(base + 3) }, 1, K_MODRM, 0,
				  I_NONE, C_NONE, u, SZ_V, 0);
		forms[n++] = FORM(nm, 0, { (uint8_t)(base + 4) }, 1, K_ACC, 0,
				  I_B, C_NONE, u, SZ_B, 0);
		forms[n++] = FORM(nm, 0, { (uint8_t)(base + 5) }, 1, K_ACC, 0,
				  I_Z, C_NONE, u, SZ_V, 0);
		forms[n++] = FORM(nm, 0, { 0x80 }, 1, K_GRP, (uint8_t)op, I_B,
				  C_NONE, u, SZ_B, lk);
		forms[n++] = FORM(nm, 0, { 0x81 }, 1, K_GRP, (uint8_t)op, I_Z,
				  C_NONE, u, SZ_V, lk);
		forms[n++] = FORM(nm, 0, { 0x83 }, 1, K_GRP, (uint8_t)op, I_B,
				  C_NONE, u, SZ_V, lk);
	}
	check_forms(forms, n);
}

static void test_alu_test_not_neg_inc_dec_match_host(void **state)
{
	const struct form forms[] = {
		FORM("test", 0, { 0x84 }, 1, K_MODRM, 0, I_NONE, C_NONE,
		     U_LOGIC, SZ_B, 0),
		FORM("test", 0, { 0x85 }, 1, K_MODRM, 0, I_NONE, C_NONE,
		     U_LOGIC, SZ_V, 0),
		FORM("test", 0, { 0xa8 }, 1, K_ACC, 0, I_B, C_NONE, U_LOGIC,
		     SZ_B, 0),
		FORM("test", 0, { 0xa9 }, 1, K_ACC, 0, I_Z, C_NONE, U_LOGIC,
		     SZ_V, 0),
		FORM("test /0", 0, { 0xf6 }, 1, K_GRP, 0, I_B, C_NONE, U_LOGIC,
		     SZ_B, 0),
		FORM("test /1", 0, { 0xf6 }, 1, K_GRP, 1, I_B, C_NONE, U_LOGIC,
		     SZ_B, 0),
		FORM("test /0", 0, { 0xf7 }, 1, K_GRP, 0, I_Z, C_NONE, U_LOGIC,
		     SZ_V, 0),
		FORM("test /1", 0, { 0xf7 }, 1, K_GRP, 1, I_Z, C_NONE, U_LOGIC,
		     SZ_V, 0),
		FORM("not", 0, { 0xf6 }, 1, K_GRP, 2, I_NONE, C_NONE, U_NONE,
		     SZ_B, F_LOCK),
		FORM("not", 0, { 0xf7 }, 1, K_GRP, 2, I_NONE, C_NONE, U_NONE,
		     SZ_V, F_LOCK),
		FORM("neg", 0, { 0xf6 }, 1, K_GRP, 3, I_NONE, C_NONE, U_NONE,
		     SZ_B, F_LOCK),
		FORM("neg", 0, { 0xf7 }, 1, K_GRP, 3, I_NONE, C_NONE, U_NONE,
		     SZ_V, F_LOCK),
		FORM("inc", 0, { 0xfe }, 1, K_GRP, 0, I_NONE, C_NONE, U_NONE,
		     SZ_B, F_LOCK),
		FORM("inc", 0, { 0xff }, 1, K_GRP, 0, I_NONE, C_NONE, U_NONE,
		     SZ_V, F_LOCK),
		FORM("dec", 0, { 0xfe }, 1, K_GRP, 1, I_NONE, C_NONE, U_NONE,
		     SZ_B, F_LOCK),
		FORM("dec", 0, { 0xff }, 1, K_GRP, 1, I_NONE, C_NONE, U_NONE,
		     SZ_V, F_LOCK),
	};

	(void)state;
	check_forms(forms, NFORMS(forms));
}

static void test_alu_mul_imul_every_form_match_host(void **state)
{
	const struct form forms[] = {
		FORM("mul", 0, { 0xf6 }, 1, K_GRP, 4, I_NONE, C_NONE, U_MUL,
		     SZ_B, 0),
		FORM("mul", 0, { 0xf7 }, 1, K_GRP, 4, I_NONE, C_NONE, U_MUL,
		     SZ_V, 0),
		FORM("imul", 0, { 0xf6 }, 1, K_GRP, 5, I_NONE, C_NONE, U_MUL,
		     SZ_B, 0),
		FORM("imul", 0, { 0xf7 }, 1, K_GRP, 5, I_NONE, C_NONE, U_MUL,
		     SZ_V, 0),
		FORM("imul Gv,Ev", 0, { 0x0f, 0xaf }, 2, K_MODRM, 0, I_NONE,
		     C_NONE, U_MUL, SZ_V, 0),
		FORM("imul Gv,Ev,Iz", 0, { 0x69 }, 1, K_MODRM, 0, I_Z, C_NONE,
		     U_MUL, SZ_V, 0),
		FORM("imul Gv,Ev,Ib", 0, { 0x6b }, 1, K_MODRM, 0, I_B, C_NONE,
		     U_MUL, SZ_V, 0),
	};

	(void)state;
	check_forms(forms, NFORMS(forms));
}

static void test_alu_div_idiv_any_operands_match_host_and_raise_de(void **state)
{
	const struct form forms[] = {
		FORM("div", 0, { 0xf6 }, 1, K_GRP, 6, I_NONE, C_NONE, U_NONE,
		     SZ_B, F_DIV),
		FORM("div", 0, { 0xf7 }, 1, K_GRP, 6, I_NONE, C_NONE, U_NONE,
		     SZ_V, F_DIV),
		FORM("idiv", 0, { 0xf6 }, 1, K_GRP, 7, I_NONE, C_NONE, U_NONE,
		     SZ_B, F_DIV),
		FORM("idiv", 0, { 0xf7 }, 1, K_GRP, 7, I_NONE, C_NONE, U_NONE,
		     SZ_V, F_DIV),
	};

	(void)state;
	check_forms(forms, NFORMS(forms));
}

/* A DIV or IDIV with fixed RAX, RCX and RDX (the rest random): the host
 * must give expect, and our CPU the same result or fault. */
struct div_case {
	uint8_t code[4];
	size_t len;
	uint64_t rax, rcx, rdx;
};

static void check_div_cases(const char *name, const struct div_case *c,
			    size_t n, enum hx_result expect)
{
	struct state s;

	failures = 0;
	for (size_t i = 0; i < n; i++) {
		struct hx_regs hr;

		random_state(&s, false);
		s.gpr[X86_RAX] = c[i].rax;
		s.gpr[X86_RCX] = c[i].rcx;
		s.gpr[X86_RDX] = c[i].rdx;
		memcpy(hr.gpr, s.gpr, sizeof(hr.gpr));
		hr.rflags = 0;
		assert_int_equal(hx_run(c[i].code, c[i].len, &hr), expect);
		run_case(name, c[i].code, c[i].len, &s, 0, -1);
	}
	assert_int_equal(failures, 0);
}

static void test_alu_div_by_zero_or_overflow_raises_de(void **state)
{
	/* div rcx with rcx = 0; div ecx with edx >= ecx; idiv of the most
	 * negative dividend by -1, at every size. */
	static const struct div_case c[] = {
		{ { 0x48, 0xf7, 0xf1 }, 3, 5, 0, 0 },
		{ { 0xf7, 0xf1 }, 2, 0, 7, 7 },
		{ { 0xf6, 0xf1 }, 2, 0x1000, 0x10, 0 },
		{ { 0xf6, 0xf9 }, 2, 0x8000, 0xff, 0 },
		{ { 0x66, 0xf7, 0xf9 }, 3, 0, 0xffff, 0x8000 },
		{ { 0xf7, 0xf9 }, 2, 0, 0xffffffff, 0x80000000 },
		{ { 0x48, 0xf7, 0xf9 }, 3, 0, ~0ULL, 1ULL << 63 },
		{ { 0x48, 0xf7, 0xf9 }, 3, 0, 0, 0 },
		{ { 0xf6, 0xf9 }, 2, 0x0080, 0x01, 0 }, /* +128 */
		{ { 0x66, 0xf7, 0xf9 }, 3, 0x8000, 0x1, 0 },
		{ { 0x48, 0xf7, 0xf9 }, 3, 1ULL << 63, 1, 0 },
	};

	(void)state;
	check_div_cases("div fault", c, NFORMS(c), HX_FAULT_DE);
}

static void test_alu_idiv_most_negative_quotient_does_not_fault(void **state)
{
	/* The quotient may be the most negative value of its size. */
	static const struct div_case c[] = {
		{ { 0xf6, 0xf9 }, 2, 0xff80, 0x01, 0 }, /* -128 / 1 */
		{ { 0xf6, 0xf9 }, 2, 0x0080, 0xff, 0 }, /* 128 / -1 */
		{ { 0xf6, 0xf9 }, 2, 0xff00, 0x02, 0 }, /* -256 / 2 */
		{ { 0x66, 0xf7, 0xf9 }, 3, 0x8000, 0x1, 0xffff },
		{ { 0xf7, 0xf9 }, 2, 0x80000000, 0xffffffff, 0 },
		{ { 0x48, 0xf7, 0xf9 }, 3, 1ULL << 63, 1, ~0ULL },
		{ { 0x48, 0xf7, 0xf9 }, 3, 1ULL << 63, ~0ULL, 0 },
	};

	(void)state;
	check_div_cases("idiv limit", c, NFORMS(c), HX_OK);
}

static void test_alu_shifts_rotates_every_count_match_host(void **state)
{
	static const char *const names[8] = { "rol", "ror", "rcl", "rcr",
					      "shl", "shr", "sal", "sar" };
	struct form forms[8 * 6];
	size_t n = 0;

	(void)state;
	for (unsigned int g = 0; g < 8; g++) {
		uint8_t u = g < 4 ? U_ROT : U_SHIFT;

		forms[n++] = FORM(names[g], 0, { 0xd0 }, 1, K_GRP, (uint8_t)g,
				  I_NONE, C_ONE, u, SZ_B, 0);
		forms[n++] = FORM(names[g], 0, { 0xd1 }, 1, K_GRP, (uint8_t)g,
				  I_NONE, C_ONE, u, SZ_V, 0);
		forms[n++] = FORM(names[g], 0, { 0xd2 }, 1, K_GRP, (uint8_t)g,
				  I_NONE, C_CL, u, SZ_B, 0);
		forms[n++] = FORM(names[g], 0, { 0xd3 }, 1, K_GRP, (uint8_t)g,
				  I_NONE, C_CL, u, SZ_V, 0);
		forms[n++] = FORM(names[g], 0, { 0xc0 }, 1, K_GRP, (uint8_t)g,
				  I_B, C_IB, u, SZ_B, 0);
		forms[n++] = FORM(names[g], 0, { 0xc1 }, 1, K_GRP, (uint8_t)g,
				  I_B, C_IB, u, SZ_V, 0);
	}
	check_forms(forms, n);
}

static void test_alu_shld_shrd_every_count_match_host(void **state)
{
	const struct form forms[] = {
		FORM("shld Ib", 0, { 0x0f, 0xa4 }, 2, K_MODRM, 0, I_B, C_IB,
		     U_SHD, SZ_V, 0),
		FORM("shld CL", 0, { 0x0f, 0xa5 }, 2, K_MODRM, 0, I_NONE, C_CL,
		     U_SHD, SZ_V, 0),
		FORM("shrd Ib", 0, { 0x0f, 0xac }, 2, K_MODRM, 0, I_B, C_IB,
		     U_SHD, SZ_V, 0),
		FORM("shrd CL", 0, { 0x0f, 0xad }, 2, K_MODRM, 0, I_NONE, C_CL,
		     U_SHD, SZ_V, 0),
	};

	(void)state;
	check_forms(forms, NFORMS(forms));
}

static void
test_alu_bt_family_register_and_memory_offsets_match_host(void **state)
{
	const struct form forms[] = {
		FORM("bt", 0, { 0x0f, 0xa3 }, 2, K_MODRM, 0, I_NONE, C_NONE,
		     U_NONE, SZ_V, F_BTREG),
		FORM("bts", 0, { 0x0f, 0xab }, 2, K_MODRM, 0, I_NONE, C_NONE,
		     U_NONE, SZ_V, F_BTREG | F_LOCK),
		FORM("btr", 0, { 0x0f, 0xb3 }, 2, K_MODRM, 0, I_NONE, C_NONE,
		     U_NONE, SZ_V, F_BTREG | F_LOCK),
		FORM("btc", 0, { 0x0f, 0xbb }, 2, K_MODRM, 0, I_NONE, C_NONE,
		     U_NONE, SZ_V, F_BTREG | F_LOCK),
		FORM("bt Ib", 0, { 0x0f, 0xba }, 2, K_GRP, 4, I_B, C_NONE,
		     U_NONE, SZ_V, 0),
		FORM("bts Ib", 0, { 0x0f, 0xba }, 2, K_GRP, 5, I_B, C_NONE,
		     U_NONE, SZ_V, F_LOCK),
		FORM("btr Ib", 0, { 0x0f, 0xba }, 2, K_GRP, 6, I_B, C_NONE,
		     U_NONE, SZ_V, F_LOCK),
		FORM("btc Ib", 0, { 0x0f, 0xba }, 2, K_GRP, 7, I_B, C_NONE,
		     U_NONE, SZ_V, F_LOCK),
	};

	(void)state;
	check_forms(forms, NFORMS(forms));
}

static void test_alu_bit_scans_and_counts_match_host(void **state)
{
	/* With BMI1 and LZCNT in CPUID (the host has both), F3 0F BC/BD
	 * are TZCNT/LZCNT, and F3 0F B8 is POPCNT. */
	const struct form forms[] = {
		FORM("bsf", 0, { 0x0f, 0xbc }, 2, K_MODRM, 0, I_NONE, C_NONE,
		     U_BSX, SZ_V, 0),
		FORM("bsr", 0, { 0x0f, 0xbd }, 2, K_MODRM, 0, I_NONE, C_NONE,
		     U_BSX, SZ_V, 0),
		FORM("tzcnt", 0xf3, { 0x0f, 0xbc }, 2, K_MODRM, 0, I_NONE,
		     C_NONE, U_XZCNT, SZ_V, 0),
		FORM("lzcnt", 0xf3, { 0x0f, 0xbd }, 2, K_MODRM, 0, I_NONE,
		     C_NONE, U_XZCNT, SZ_V, 0),
		FORM("popcnt", 0xf3, { 0x0f, 0xb8 }, 2, K_MODRM, 0, I_NONE,
		     C_NONE, U_NONE, SZ_V, 0),
	};

	(void)state;
	check_forms(forms, NFORMS(forms));
}

static void test_alu_setcc_cmovcc_any_flags_match_host(void **state)
{
	struct form forms[32];

	(void)state;
	for (unsigned int cc = 0; cc < 16; cc++) {
		forms[cc] = FORM("setcc", 0, { 0x0f, (uint8_t)(0x90 + cc) }, 2,
				 K_GRP, 0, I_NONE, C_NONE, U_NONE, SZ_B, 0);
		forms[16 + cc] =
			FORM("cmovcc", 0, { 0x0f, (uint8_t)(0x40 + cc) }, 2,
			     K_MODRM, 0, I_NONE, C_NONE, U_NONE, SZ_V, 0);
	}
	check_forms(forms, NFORMS(forms));
}

static void test_alu_flag_insns_cbw_cwd_bswap_match_host(void **state)
{
	const struct form forms[] = {
		FORM("clc", 0, { 0xf8 }, 1, K_NONE, 0, 0, 0, 0, SZ_4, 0),
		FORM("stc", 0, { 0xf9 }, 1, K_NONE, 0, 0, 0, 0, SZ_4, 0),
		FORM("cmc", 0, { 0xf5 }, 1, K_NONE, 0, 0, 0, 0, SZ_4, 0),
		FORM("cld", 0, { 0xfc }, 1, K_NONE, 0, 0, 0, 0, SZ_4, 0),
		FORM("std", 0, { 0xfd }, 1, K_NONE, 0, 0, 0, 0, SZ_4, 0),
		FORM("lahf", 0, { 0x9f }, 1, K_NONE, 0, 0, 0, 0, SZ_4, 0),
		FORM("sahf", 0, { 0x9e }, 1, K_NONE, 0, 0, 0, 0, SZ_4, 0),
		FORM("cbw", 0, { 0x98 }, 1, K_NONE, 0, 0, 0, 0, SZ_V, 0),
		FORM("cwd", 0, { 0x99 }, 1, K_NONE, 0, 0, 0, 0, SZ_V, 0),
		FORM("bswap", 0, { 0x0f, 0xc8 }, 2, K_OPREG, 0, 0, 0, 0, SZ_V,
		     0),
	};

	(void)state;
	check_forms(forms, NFORMS(forms));
}

/*
 * Lazy flags: a flag producer, then a reader. The producers cover every
 * lazy op; the readers evaluate each condition code, carry in, kept
 * flags and the whole low byte of RFLAGS.
 */
static void test_alu_flag_readers_after_each_producer_match_host(void **state)
{
	static const struct form producers[] = {
		FORM("add", 0, { 0x01 }, 1, K_MODRM, 0, 0, 0, U_NONE, SZ_V, 0),
		FORM("add", 0, { 0x00 }, 1, K_MODRM, 0, 0, 0, U_NONE, SZ_B, 0),
		FORM("adc", 0, { 0x11 }, 1, K_MODRM, 0, 0, 0, U_NONE, SZ_V, 0),
		FORM("sub", 0, { 0x29 }, 1, K_MODRM, 0, 0, 0, U_NONE, SZ_V, 0),
		FORM("cmp", 0, { 0x38 }, 1, K_MODRM, 0, 0, 0, U_NONE, SZ_B, 0),
		FORM("cmp", 0, { 0x39 }, 1, K_MODRM, 0, 0, 0, U_NONE, SZ_V, 0),
		FORM("sbb", 0, { 0x19 }, 1, K_MODRM, 0, 0, 0, U_NONE, SZ_V, 0),
		FORM("and", 0, { 0x21 }, 1, K_MODRM, 0, 0, 0, U_LOGIC, SZ_V, 0),
		FORM("test", 0, { 0x84 }, 1, K_MODRM, 0, 0, 0, U_LOGIC, SZ_B,
		     0),
		FORM("xor", 0, { 0x31 }, 1, K_MODRM, 0, 0, 0, U_LOGIC, SZ_V, 0),
		FORM("inc", 0, { 0xff }, 1, K_GRP, 0, 0, 0, U_NONE, SZ_V, 0),
		FORM("dec", 0, { 0xfe }, 1, K_GRP, 1, 0, 0, U_NONE, SZ_B, 0),
		FORM("neg", 0, { 0xf7 }, 1, K_GRP, 3, 0, 0, U_NONE, SZ_V, 0),
		FORM("shl", 0, { 0xd3 }, 1, K_GRP, 4, 0, C_CL, U_SHIFT, SZ_V,
		     0),
		FORM("shr", 0, { 0xd3 }, 1, K_GRP, 5, 0, C_CL, U_SHIFT, SZ_V,
		     0),
		FORM("sar", 0, { 0xd2 }, 1, K_GRP, 7, 0, C_CL, U_SHIFT, SZ_B,
		     0),
		FORM("rol", 0, { 0xd3 }, 1, K_GRP, 0, 0, C_CL, U_ROT, SZ_V, 0),
		FORM("rcr", 0, { 0xd1 }, 1, K_GRP, 3, 0, C_ONE, U_ROT, SZ_V, 0),
		FORM("shld", 0, { 0x0f, 0xa5 }, 2, K_MODRM, 0, 0, C_CL, U_SHD,
		     SZ_V, 0),
		FORM("shrd", 0, { 0x0f, 0xad }, 2, K_MODRM, 0, 0, C_CL, U_SHD,
		     SZ_V, 0),
		FORM("imul", 0, { 0x0f, 0xaf }, 2, K_MODRM, 0, 0, 0, U_MUL,
		     SZ_V, 0),
		FORM("bt", 0, { 0x0f, 0xa3 }, 2, K_MODRM, 0, 0, 0, U_NONE, SZ_V,
		     0),
		FORM("bsf", 0, { 0x0f, 0xbc }, 2, K_MODRM, 0, 0, 0, U_BSX, SZ_V,
		     0),
		FORM("sahf", 0, { 0x9e }, 1, K_NONE, 0, 0, 0, U_NONE, SZ_4, 0),
		FORM("stc", 0, { 0xf9 }, 1, K_NONE, 0, 0, 0, U_NONE, SZ_4, 0),
	};
	/* Readers use r8-r15 only; the producers' operands may be
	 * anything else. */
	static const struct {
		const char *name;
		uint8_t code[40];
		uint8_t len;
	} readers[] = {
		{ "setcc 0-7",
		  { 0x41, 0x0f, 0x90, 0xc0, 0x41, 0x0f, 0x91, 0xc1,
		    0x41, 0x0f, 0x92, 0xc2, 0x41, 0x0f, 0x93, 0xc3,
		    0x41, 0x0f, 0x94, 0xc4, 0x41, 0x0f, 0x95, 0xc5,
		    0x41, 0x0f, 0x96, 0xc6, 0x41, 0x0f, 0x97, 0xc7 },
		  32 },
		{ "setcc 8-15",
		  { 0x41, 0x0f, 0x98, 0xc0, 0x41, 0x0f, 0x99, 0xc1,
		    0x41, 0x0f, 0x9a, 0xc2, 0x41, 0x0f, 0x9b, 0xc3,
		    0x41, 0x0f, 0x9c, 0xc4, 0x41, 0x0f, 0x9d, 0xc5,
		    0x41, 0x0f, 0x9e, 0xc6, 0x41, 0x0f, 0x9f, 0xc7 },
		  32 },
		{ "adc r8, r9", { 0x4d, 0x11, 0xc8 }, 3 },
		{ "sbb r8d, r9d", { 0x45, 0x19, 0xc8 }, 3 },
		{ "rcl r10, 1", { 0x49, 0xd1, 0xd2 }, 3 },
		{ "rcr r10b, 3", { 0x41, 0xc0, 0xda, 0x03 }, 4 },
		{ "inc r11", { 0x49, 0xff, 0xc3 }, 3 },
		{ "dec r11w", { 0x66, 0x41, 0xff, 0xcb }, 4 },
		{ "cmc", { 0xf5 }, 1 },
		{ "clc", { 0xf8 }, 1 },
		{ "lahf", { 0x9f }, 1 },
		{ "bt r12, r13", { 0x4d, 0x0f, 0xa3, 0xec }, 4 },
		{ "rol r14d, 3", { 0x41, 0xc1, 0xc6, 0x03 }, 4 },
		{ "cmovbe r8, r9", { 0x4d, 0x0f, 0x46, 0xc1 }, 4 },
		{ "cmovl r8d, r9d", { 0x45, 0x0f, 0x4c, 0xc1 }, 4 },
		{ "cmovg r8w, r9w", { 0x66, 0x45, 0x0f, 0x4f, 0xc1 }, 5 },
		{ "cmovp r8, r9", { 0x4d, 0x0f, 0x4a, 0xc1 }, 4 },
		{ "cmovo r8, r9", { 0x4d, 0x0f, 0x40, 0xc1 }, 4 },
		{ "mul r15b", { 0x41, 0xf6, 0xe7 }, 3 },
	};

	(void)state;
	failures = 0;
	for (size_t p = 0; p < NFORMS(producers); p++) {
		const struct form *f = &producers[p];

		for (size_t r = 0; r < NFORMS(readers); r++) {
			for (unsigned int i = 0; i < 96; i++) {
				unsigned int size = f->sizes == SZ_V ?
							    2u << (rnd() % 3) :
							    f->sizes;
				unsigned int reg, rm, count = 0;
				uint8_t code[64];
				size_t len;
				struct state s;
				uint64_t undef;
				char name[96];

				random_state(&s, false);
				/* Producer operands among rax..rdi. */
				do
					reg = (unsigned int)rnd() & 7;
				while (reg == X86_RSP);
				do
					rm = (unsigned int)rnd() & 7;
				while (rm == X86_RSP || rm == X86_RCX);
				set_operand(&s, reg, size, true,
					    value(size, i % (NCORNERS + 4)));
				set_operand(&s, rm, size, true,
					    value(size,
						  (i / 5) % (NCORNERS + 4)));
				if (f->count == C_CL) {
					count = count_value(size, i % 40);
					s.gpr[X86_RCX] = count;
				} else if (f->count == C_ONE) {
					count = 1;
				}
				len = encode(code, f, size, reg, (int)rm, 0, 0,
					     false, true);
				memcpy(code + len, readers[r].code,
				       readers[r].len);
				len += readers[r].len;
				/* Readers of an undefined flag see what the
				 * host computes: that is what flags.c does. */
				undef = undef_flags(f, size, count);
				snprintf(name, sizeof(name), "%s size %u; %s",
					 f->name, size, readers[r].name);
				run_case(name, code, len, &s, undef, -1);
			}
		}
	}
	assert_int_equal(failures, 0);
}

static void test_alu_lock_on_register_or_unlockable_op_raises_ud(void **state)
{
	static const struct {
		uint8_t code[8];
		size_t len;
	} c[] = {
		{ { 0xf0, 0x48, 0x01, 0xc8 }, 4 }, /* lock add rax, rcx */
		{ { 0xf0, 0x39, 0x0b }, 3 }, /* lock cmp [rbx], ecx */
		{ { 0xf0, 0x85, 0x0b }, 3 }, /* lock test [rbx], ecx */
		{ { 0xf0, 0x0f, 0xa3, 0x0b }, 4 }, /* lock bt [rbx], ecx */
		{ { 0xf0, 0xf7, 0xe1 }, 3 }, /* lock mul ecx */
		{ { 0xf0, 0xfe, 0xc0 }, 3 }, /* lock inc al */
		{ { 0xf0, 0x0f, 0xaf, 0x0b }, 4 }, /* lock imul ecx, [rbx] */
		{ { 0xf0, 0xd1, 0x23 }, 3 }, /* lock shl dword [rbx], 1 */
	};
	struct state s;

	(void)state;
	failures = 0;
	for (size_t i = 0; i < NFORMS(c); i++) {
		struct hx_regs hr;

		random_state(&s, true);
		s.gpr[X86_RCX] &= 7;
		memcpy(hr.gpr, s.gpr, sizeof(hr.gpr));
		hr.gpr[RBX] = (uint64_t)(uintptr_t)hostbuf + MID;
		hr.rflags = 0;
		assert_int_equal(hx_run(c[i].code, c[i].len, &hr), HX_FAULT_UD);
		run_case("lock #UD", c[i].code, c[i].len, &s, 0, -1);
	}
	assert_int_equal(failures, 0);
}

static void
test_alu_shift_by_zero_of_readonly_memory_faults_as_write(void **state)
{
	/* A masked count of 0 leaves the operand alone, but the host
	 * still accesses it for writing. */
	static const struct {
		uint8_t code[8];
		size_t len;
	} c[] = {
		{ { 0xd3, 0x23 }, 2 }, /* shl dword [rbx], cl */
		{ { 0x48, 0xd3, 0x0b }, 3 }, /* ror qword [rbx], cl */
		{ { 0xd2, 0x13 }, 2 }, /* rcl byte [rbx], cl */
		{ { 0xc1, 0x3b, 0x20 }, 3 }, /* sar dword [rbx], 32 */
		{ { 0x0f, 0xa5, 0x03 }, 3 }, /* shld [rbx], eax, cl */
		{ { 0x66, 0x0f, 0xac, 0x03, 0x00 }, 5 }, /* shrd [rbx], ax, 0 */
	};
	uint8_t *ro =
		mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)state;
	assert_true(ro != MAP_FAILED);
	for (size_t i = 0; i < NFORMS(c); i++) {
		struct hx_regs hr;
		struct x86_regs gr;
		struct x86_exit exit;

		memset(&hr, 0, sizeof(hr));
		hr.gpr[RBX] = (uint64_t)(uintptr_t)ro + MID;
		assert_int_equal(hx_run(c[i].code, c[i].len, &hr),
				 HX_FAULT_OTHER);

		xh_set_page(h, GBUF, X86_PTE_P | X86_PTE_U);
		xh_place_code(h, c[i].code, c[i].len);
		x86_get_regs(h->cpu, &gr);
		memset(gr.gpr, 0, sizeof(gr.gpr));
		gr.gpr[X86_RSP] = XH_STACK_TOP;
		gr.gpr[RBX] = GBUF + MID;
		x86_set_regs(h->cpu, &gr);
		assert_int_equal(xh_run(h, 10, &exit), X86_EXIT_SHADOW_FAULT);
		assert_true(exit.fault.access & X86_ACC_WRITE);
		assert_int_equal(exit.fault.gva, GBUF + MID);
		xh_set_page(h, GBUF, X86_PTE_P | X86_PTE_W | X86_PTE_U);
	}
	munmap(ro, 4096);
}

static int setup(void **state)
{
	(void)state;
	h = xh_new();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	xh_free(h);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alu_add_to_cmp_every_form_match_host),
		cmocka_unit_test(test_alu_test_not_neg_inc_dec_match_host),
		cmocka_unit_test(test_alu_mul_imul_every_form_match_host),
		cmocka_unit_test(
			test_alu_div_idiv_any_operands_match_host_and_raise_de),
		cmocka_unit_test(test_alu_div_by_zero_or_overflow_raises_de),
		cmocka_unit_test(
			test_alu_idiv_most_negative_quotient_does_not_fault),
		cmocka_unit_test(
			test_alu_shifts_rotates_every_count_match_host),
		cmocka_unit_test(test_alu_shld_shrd_every_count_match_host),
		cmocka_unit_test(
			test_alu_bt_family_register_and_memory_offsets_match_host),
		cmocka_unit_test(test_alu_bit_scans_and_counts_match_host),
		cmocka_unit_test(test_alu_setcc_cmovcc_any_flags_match_host),
		cmocka_unit_test(test_alu_flag_insns_cbw_cwd_bswap_match_host),
		cmocka_unit_test(
			test_alu_flag_readers_after_each_producer_match_host),
		cmocka_unit_test(
			test_alu_lock_on_register_or_unlockable_op_raises_ud),
		cmocka_unit_test(
			test_alu_shift_by_zero_of_readonly_memory_faults_as_write),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
