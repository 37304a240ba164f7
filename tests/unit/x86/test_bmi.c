/*
 * Tests of exec_bmi.c's VEX-encoded BMI1/BMI2 instructions and of
 * ADCX/ADOX, MOVBE and the VEX decoding rules. The instructions are
 * differential: the same bytes run on the host (which has BMI1, BMI2
 * and ADX: the test fails, not skips, on a host without them, since
 * CPUID here promises them) and in the CPU, from random registers and
 * flags, at 32 and 64 bits, with every flag the SDM defines compared.
 * (POPCNT, TZCNT and LZCNT are test_alu.c's, in its forms.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "rng.h"
#include "x86_int.h"

#define CF X86_RFLAGS_CF
#define PF X86_RFLAGS_PF
#define AF X86_RFLAGS_AF
#define ZF X86_RFLAGS_ZF
#define SF X86_RFLAGS_SF
#define OF X86_RFLAGS_OF
#define ARITH X86_RFLAGS_ARITH

#define CASES 3000

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	return splitmix64(&rng);
}

/* Interesting values first: 0, all ones, single bits, small counts. */
static uint64_t value(void)
{
	switch (rnd() % 8) {
	case 0:
		return 0;
	case 1:
		return ~0ULL;
	case 2:
		return 1ULL << (rnd() % 64);
	case 3:
		return rnd() % 80; /* counts, BEXTR/BZHI controls */
	case 4:
		return (rnd() % 80) | (rnd() % 80) << 8; /* BEXTR start+len */
	case 5:
		return rnd() & 0xffffffffULL;
	default:
		return rnd();
	}
}

struct vex_form {
	const char *name;
	uint8_t map; /* 2: 0F38, 3: 0F3A */
	uint8_t pp; /* 0 none, 1 66, 2 F3, 3 F2 */
	uint8_t op;
	int8_t group; /* ModRM.reg when fixed, else -1 */
	bool uses_vvvv;
	bool imm8;
	uint64_t defined; /* flags the SDM defines */
};

/* C4 RXB.map W.vvvv.L.pp op ModRM(mod 3) [imm8]. */
static size_t encode_vex(uint8_t *p, const struct vex_form *f, bool w,
			 unsigned int reg, unsigned int vvvv, unsigned int rm,
			 uint8_t imm)
{
	size_t n = 0;

	p[n++] = 0xc4;
	p[n++] = (uint8_t)((reg & 8 ? 0 : 0x80) | 0x40 | (rm & 8 ? 0 : 0x20) |
			   f->map);
	p[n++] = (uint8_t)((w ? 0x80 : 0) | ((~vvvv & 15) << 3) | f->pp);
	p[n++] = f->op;
	p[n++] = (uint8_t)(0xc0 | (reg & 7) << 3 | (rm & 7));
	if (f->imm8)
		p[n++] = imm;
	return n;
}

/* A general register other than RSP. */
static unsigned int any_reg(void)
{
	unsigned int r;

	do
		r = (unsigned int)(rnd() % 16);
	while (r == X86_RSP);
	return r;
}

static void check_vex_form(struct xh *h, const struct vex_form *f)
{
	for (unsigned int i = 0; i < CASES; i++) {
		bool w = i & 1;
		unsigned int reg = any_reg(), rm = any_reg();
		unsigned int vvvv = f->uses_vvvv ? any_reg() : 0;
		uint64_t gpr[16];
		uint8_t code[16];
		size_t len;
		char name[96];

		if (f->group >= 0)
			reg = (unsigned int)f->group;
		for (unsigned int r = 0; r < 16; r++)
			gpr[r] = value();
		len = encode_vex(code, f, w, reg, vvvv, rm, (uint8_t)rnd());
		snprintf(name, sizeof(name), "%s W%d reg %u vvvv %u rm %u",
			 f->name, w, reg, vvvv, rm);
		xh_diff_host(h, name, code, len, gpr, rnd() & ARITH,
			     f->defined);
	}
}

static void test_bmi_vex_instructions_match_host(void **state)
{
	static const struct vex_form forms[] = {
		{ "andn", 2, 0, 0xf2, -1, true, false, ZF | SF | CF | OF },
		{ "bextr", 2, 0, 0xf7, -1, true, false, ZF | CF | OF },
		{ "blsr", 2, 0, 0xf3, 1, true, false, ZF | SF | CF | OF },
		{ "blsmsk", 2, 0, 0xf3, 2, true, false, ZF | SF | CF | OF },
		{ "blsi", 2, 0, 0xf3, 3, true, false, ZF | SF | CF | OF },
		{ "bzhi", 2, 0, 0xf5, -1, true, false, ZF | SF | CF | OF },
		{ "pext", 2, 2, 0xf5, -1, true, false, ARITH },
		{ "pdep", 2, 3, 0xf5, -1, true, false, ARITH },
		{ "mulx", 2, 3, 0xf6, -1, true, false, ARITH },
		{ "shlx", 2, 1, 0xf7, -1, true, false, ARITH },
		{ "sarx", 2, 2, 0xf7, -1, true, false, ARITH },
		{ "shrx", 2, 3, 0xf7, -1, true, false, ARITH },
		{ "rorx", 3, 3, 0xf0, -1, false, true, ARITH },
	};
	struct xh *h = xh_new();

	(void)state;
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
		check_vex_form(h, &forms[i]);
	xh_free(h);
}

/* 66 / F3 [REX.W] 0F 38 F6 /r: only CF (ADCX) or OF (ADOX) is written. */
static void test_bmi_adcx_adox_match_host(void **state)
{
	struct xh *h = xh_new();

	(void)state;
	for (unsigned int i = 0; i < 4 * CASES; i++) {
		bool adox = i & 1, w = i & 2;
		unsigned int reg = any_reg(), rm = any_reg();
		uint64_t gpr[16];
		uint8_t code[8];
		size_t n = 0;

		for (unsigned int r = 0; r < 16; r++)
			gpr[r] = value();
		code[n++] = adox ? 0xf3 : 0x66;
		code[n++] = (uint8_t)(0x40 | (w ? 8 : 0) | (reg & 8 ? 4 : 0) |
				      (rm & 8 ? 1 : 0));
		code[n++] = 0x0f;
		code[n++] = 0x38;
		code[n++] = 0xf6;
		code[n++] = (uint8_t)(0xc0 | (reg & 7) << 3 | (rm & 7));
		xh_diff_host(h, adox ? "adox" : "adcx", code, n, gpr,
			     rnd() & ARITH, ARITH);
	}
	xh_free(h);
}

/* The memory forms read the same operand as the register forms. */
static void test_bmi_memory_operands(void **state)
{
	static const uint8_t code[] = {
		0xc4, 0xe2, 0xf0, 0xf2, 0x03, /* andn rax, rcx, [rbx] */
		0xc4, 0xe2, 0xf0, 0xf5, 0x13, /* bzhi rdx, [rbx], rcx */
		0xc4, 0x62, 0xb3, 0xf6, 0x03, /* mulx r8, r9, [rbx] */
		0xc4, 0xe2, 0xc8, 0xf3, 0x1b, /* blsi rsi, [rbx] */
		0xc4, 0xe3, 0xfb, 0xf0, 0x3b, 0x08, /* rorx rdi, [rbx], 8 */
	};
	const uint64_t m = 0x8877665544332210ULL;
	struct xh *h = xh_new();

	(void)state;
	memcpy(xh_ptr(h, 0x300000), &m, 8);
	xh_set_reg(h, X86_RBX, 0x300000);
	xh_set_reg(h, X86_RCX, 12);
	xh_set_reg(h, X86_RDX, 3);
	xh_run_ok(h, code, sizeof(code));
	assert_int_equal(xh_reg(h, X86_RAX), ~12ULL & m);
	/* BZHI ran first and left RDX = m & 0xfff: MULX's multiplier. */
	assert_int_equal(xh_reg(h, X86_RDX), m & 0xfff);
	assert_int_equal(xh_reg(h, X86_R9),
			 (uint64_t)((unsigned __int128)m * (m & 0xfff)));
	assert_int_equal(xh_reg(h, X86_R8),
			 (uint64_t)(((unsigned __int128)m * (m & 0xfff)) >>
				    64));
	assert_int_equal(xh_reg(h, X86_RSI), m & -m);
	assert_int_equal(xh_reg(h, X86_RDI), m >> 8 | m << 56);
	xh_free(h);
}

static void test_bmi_movbe_loads_and_stores_swapped(void **state)
{
	static const uint8_t code[] = {
		0x48, 0x0f, 0x38, 0xf0, 0x03, /* movbe rax, [rbx] */
		0x0f, 0x38, 0xf0, 0x4b, 0x08, /* movbe ecx, [rbx + 8] */
		0x66, 0x0f, 0x38, 0xf1, 0x53, 0x10, /* movbe [rbx + 16], dx */
	};
	const uint64_t m = 0x0102030405060708ULL;
	uint16_t out;
	struct xh *h = xh_new();

	(void)state;
	memcpy(xh_ptr(h, 0x300000), &m, 8);
	memcpy(xh_ptr(h, 0x300008), &m, 8);
	xh_set_reg(h, X86_RBX, 0x300000);
	xh_set_reg(h, X86_RCX, ~0ULL);
	xh_set_reg(h, X86_RDX, 0xabcd);
	xh_run_ok(h, code, sizeof(code));
	assert_int_equal(xh_reg(h, X86_RAX), 0x0807060504030201ULL);
	assert_int_equal(xh_reg(h, X86_RCX), 0x08070605ULL); /* zero-ext. */
	memcpy(&out, xh_ptr(h, 0x300010), 2);
	assert_int_equal(out, 0xcdab);
	xh_free(h);
}

/* What the SDM makes #UD, each checked alone. */
static void test_bmi_undefined_encodings(void **state)
{
	static const struct {
		const char *what;
		uint8_t code[8];
		uint8_t len;
	} ud[] = {
		{ "VEX.L = 1", { 0xc4, 0xe2, 0xf4, 0xf2, 0xc1 }, 5 },
		{ "66 before VEX", { 0x66, 0xc4, 0xe2, 0xf0, 0xf2, 0xc1 }, 6 },
		{ "F3 before VEX", { 0xf3, 0xc4, 0xe2, 0xf0, 0xf2, 0xc1 }, 6 },
		{ "REX before VEX", { 0x48, 0xc4, 0xe2, 0xf0, 0xf2, 0xc1 }, 6 },
		{ "LOCK VEX", { 0xf0, 0xc4, 0xe2, 0xf0, 0xf2, 0x03 }, 6 },
		{ "two-byte VEX (map 0F)", { 0xc5, 0xf8, 0x77 }, 3 },
		{ "VEX map 0", { 0xc4, 0xe0, 0xf0, 0xf2, 0xc1 }, 5 },
		{ "group 17 /0", { 0xc4, 0xe2, 0xf0, 0xf3, 0xc1 }, 5 },
		{ "group 17 /4", { 0xc4, 0xe2, 0xf0, 0xf3, 0xe1 }, 5 },
		{ "andn with 66 (pp 1)", { 0xc4, 0xe2, 0xf1, 0xf2, 0xc1 }, 5 },
		{ "mulx without F2", { 0xc4, 0xe2, 0xf0, 0xf6, 0xc1 }, 5 },
		{ "rorx with vvvv", { 0xc4, 0xe3, 0xf3, 0xf0, 0xc1, 1 }, 6 },
		{ "movbe register", { 0x0f, 0x38, 0xf0, 0xc1 }, 4 },
		{ "movbe F2 (crc32)", { 0xf2, 0x0f, 0x38, 0xf0, 0x03 }, 5 },
		{ "popcnt without F3", { 0x0f, 0xb8, 0xc1 }, 3 },
		{ "0F38 F6 without 66/F3", { 0x0f, 0x38, 0xf6, 0xc1 }, 4 },
		{ "lock popcnt", { 0xf0, 0xf3, 0x0f, 0xb8, 0x03 }, 5 },
	};
	struct xh *h = xh_new();

	(void)state;
	xh_set_reg(h, X86_RBX, 0x300000);
	for (size_t i = 0; i < sizeof(ud) / sizeof(ud[0]); i++) {
		print_message("%s\n", ud[i].what);
		xh_expect_fault(h, ud[i].code, ud[i].len, X86_UD);
	}
	xh_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bmi_vex_instructions_match_host),
		cmocka_unit_test(test_bmi_adcx_adox_match_host),
		cmocka_unit_test(test_bmi_memory_operands),
		cmocka_unit_test(test_bmi_movbe_loads_and_stores_swapped),
		cmocka_unit_test(test_bmi_undefined_encodings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
