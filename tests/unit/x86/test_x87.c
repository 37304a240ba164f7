/*
 * The x87 FPU (escape opcodes D8-DF and FWAIT) against the host CPU with
 * the differential runner (fxdiff.h): every defined encoding, register
 * and memory forms, from random x87 states (stack tops, tags, the
 * specials of the 80-bit format among the registers: signed zeros,
 * infinities, quiet and signalling NaNs, denormals, pseudo-denormals,
 * unnormals, the integer limits), under every precision and rounding
 * control, with masked and unmasked exceptions and pending ones (#MF).
 *
 * The SDM's table of the escape opcodes (vol. 2, appendix A.4) is
 * restated here: an encoding it leaves reserved must be #UD on our CPU
 * (the host may run some as undocumented aliases), as must FISTTP, which
 * is SSE3's. What only our CPU can show is checked on it alone: the
 * last-instruction pointers FIP/FDP/FOP (the host's are host addresses,
 * or zero on AMD), #NM and #MF, and that the host's own FPU state is
 * untouched by the guest's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fxdiff.h"

#define CASES 60

/* ---- the SDM's encodings ---------------------------------------------------- */

/* Memory forms /reg per escape byte D8+esc that exist (FISTTP excluded:
 * SSE3). */
static const uint8_t mem_defined[8] = {
	0xff, /* D8 */
	0xfd, /* D9: /1 reserved */
	0xff, /* DA */
	0xad, /* DB: /1 FISTTP, /4, /6 reserved */
	0xff, /* DC */
	0xdd, /* DD: /1 FISTTP, /5 reserved */
	0xff, /* DE */
	0xfd, /* DF: /1 FISTTP */
};

/* Register forms (ModRM C0-FF) that exist, as ranges of ModRM bytes. */
static bool reg_defined(unsigned int esc, unsigned int m)
{
	switch (esc) {
	case 0: /* FADD FMUL FCOM FCOMP FSUB FSUBR FDIV FDIVR */
		return true;
	case 1:
		return m <= 0xd0 || m == 0xe0 || m == 0xe1 || m == 0xe4 ||
		       m == 0xe5 || (m >= 0xe8 && m <= 0xee) || m >= 0xf0;
	case 2: /* FCMOVcc, FUCOMPP */
		return m <= 0xdf || m == 0xe9;
	case 3: /* FCMOVNcc, FNCLEX, FNINIT, FUCOMI, FCOMI */
		return m <= 0xdf || m == 0xe2 || m == 0xe3 ||
		       (m >= 0xe8 && m <= 0xf7);
	case 4: /* FADD FMUL to ST(i), FSUBR FSUB FDIVR FDIV to ST(i) */
		return m <= 0xcf || m >= 0xe0;
	case 5: /* FFREE, FST, FSTP, FUCOM, FUCOMP */
		return m <= 0xc7 || (m >= 0xd0 && m <= 0xef);
	case 6: /* FADDP FMULP, FCOMPP, FSUBRP FSUBP FDIVRP FDIVP */
		return m <= 0xcf || m == 0xd9 || m >= 0xe0;
	default: /* FNSTSW AX, FUCOMIP, FCOMIP */
		return m == 0xe0 || (m >= 0xe8 && m <= 0xf7);
	}
}

/* Memory operand sizes, for the comparison of FNSTENV/FNSAVE images. */
static bool stores_env(unsigned int esc, unsigned int reg)
{
	return (esc == 1 || esc == 5) && reg == 6;
}

/* ---- states -------------------------------------------------------------- */

struct f80 {
	uint64_t mant;
	uint16_t sexp;
};

static struct f80 value80(void)
{
	static const struct f80 special[] = {
		{ 0, 0 },
		{ 0, 0x8000 },
		{ 1ULL << 63, 0x7fff }, /* +inf */
		{ 1ULL << 63, 0xffff }, /* -inf */
		{ 0xc000000000000000ULL, 0x7fff }, /* QNaN */
		{ 0xc000000000000000ULL, 0xffff }, /* real indefinite */
		{ 0x8000000000000001ULL, 0x7fff }, /* SNaN */
		{ 0xc123456789abcdefULL, 0xffff }, /* QNaN, payload */
		{ 1, 0 }, /* denormal */
		{ 0x7fffffffffffffffULL, 0x8000 }, /* -denormal */
		{ 0x8000000000000000ULL, 0 }, /* pseudo-denormal */
		{ 0x4000000000000000ULL, 0x3fff }, /* unnormal */
		{ 0, 0x7fff }, /* pseudo-infinity */
		{ 1ULL << 63, 0x3fff }, /* 1.0 */
		{ 1ULL << 63, 0xbfff }, /* -1.0 */
		{ 0xc90fdaa22168c235ULL, 0x4000 }, /* pi */
		{ ~0ULL, 0x7ffe }, /* the largest */
		{ 1ULL << 63, 1 }, /* the smallest normal */
		{ 1ULL << 63, 0x3fff + 63 }, /* 2^63 */
		{ 1ULL << 63, 0x3fff + 31 }, /* 2^31 */
		{ 1ULL << 63, 0x3fff + 15 }, /* 2^15 */
		{ 0xc000000000000000ULL, 0x3ffe }, /* 0.75 */
		{ 1ULL << 63, 0x3ffe }, /* 0.5 */
	};
	struct f80 v;

	if (fxd_rnd() & 1)
		return special[fxd_rnd() % (sizeof(special) / sizeof(*special))];
	v.mant = fxd_rnd() | (fxd_rnd() & 7 ? 1ULL << 63 : 0);
	v.sexp = (uint16_t)((fxd_rnd() & 0x8000) |
			    (fxd_rnd() & 1 ? 0x3fff - 70 + fxd_rnd() % 140 :
					     fxd_rnd() & 0x7fff));
	return v;
}

static void put80(uint8_t *p, struct f80 v)
{
	memcpy(p, &v.mant, 8);
	memcpy(p + 8, &v.sexp, 2);
}

/* A control word: every precision (00, 10, 11) and rounding control;
 * exceptions masked but in one case in four. */
static uint16_t random_fcw(void)
{
	static const uint16_t pc[] = { 0x000, 0x200, 0x300, 0x300 };
	uint16_t fcw = 0x0040 | pc[fxd_rnd() & 3] |
		       (uint16_t)((fxd_rnd() & 3) << 10) | 0x3f;

	if ((fxd_rnd() & 3) == 0)
		fcw &= (uint16_t) ~(fxd_rnd() & 0x3f);
	return fcw;
}

static void random_state(struct fxd_state *s)
{
	uint16_t fcw = random_fcw(), fsw;
	uint32_t mxcsr = 0x1f80;

	memset(s->fx, 0, sizeof(s->fx));
	/* TOP random, flags clear but (one case in eight) random: then an
	 * unmasked one is pending and a waiting instruction is #MF. */
	fsw = (uint16_t)((fxd_rnd() & 7) << 11);
	if ((fxd_rnd() & 7) == 0)
		fsw |= (uint16_t)(fxd_rnd() & 0x3f);
	if (fsw & ~fcw & 0x3f)
		fsw |= 0x8080;
	memcpy(s->fx + FX_FCW, &fcw, 2);
	memcpy(s->fx + FX_FSW, &fsw, 2);
	s->fx[FX_FTW] = (uint8_t)fxd_rnd();
	memcpy(s->fx + FX_MXCSR, &mxcsr, 4);
	for (unsigned int i = 0; i < 8; i++)
		put80(s->fx + FX_ST + 16 * i, value80());
	for (unsigned int i = 0; i < 16; i++)
		s->gpr[i] = fxd_rnd();
	s->rflags = fxd_rnd() & 0x8d5;
	/* Memory: 16-byte cells holding an 80-bit value, doubles, singles
	 * or integers, so every operand size meets meaningful values. */
	for (unsigned int i = 0; i < FXD_BUF; i += 16) {
		uint64_t q[2];
		uint32_t d[4];

		switch (fxd_rnd() & 3) {
		case 0:
			put80(s->buf + i, value80());
			memset(s->buf + i + 10, 0, 6);
			break;
		case 1:
			q[0] = fxd_fp64();
			q[1] = fxd_fp64();
			memcpy(s->buf + i, q, 16);
			break;
		case 2:
			for (unsigned int k = 0; k < 4; k++)
				d[k] = fxd_fp32();
			memcpy(s->buf + i, d, 16);
			break;
		default:
			for (unsigned int k = 0; k < 4; k++)
				d[k] = fxd_lane32();
			memcpy(s->buf + i, d, 16);
			break;
		}
	}
}

/* ---- forms ---------------------------------------------------------------- */

static int env_disp; /* displacement of the case being run */

/* An FNSTENV/FNSAVE image's pointer fields (bytes 12-27 of the 32-bit
 * environment): the host's are host addresses. */
static bool skip_env_pointers(size_t off)
{
	size_t at = (size_t)(FXD_MID + env_disp);

	return off >= at + 12 && off < at + 28;
}

static void check(const char *name, const uint8_t *code, size_t len,
		  fxd_skip_fn ignore)
{
	struct fxd_state *s = test_malloc(sizeof(*s));

	for (unsigned int c = 0; c < CASES; c++) {
		random_state(s);
		fxd_run_case_skip(name, code, len, s, ignore);
	}
	test_free(s);
}

static void test_x87_register_forms_match_host(void **state)
{
	char name[32];

	(void)state;
	fxd_failures = fxd_ncases = fxd_nfaults = 0;
	for (unsigned int esc = 0; esc < 8; esc++)
		for (unsigned int m = 0xc0; m <= 0xff; m++) {
			uint8_t code[2] = { (uint8_t)(0xd8 + esc), (uint8_t)m };

			if (!reg_defined(esc, m)) {
				fxd_expect_fault_with(0, 0, code, 2, X86_UD);
				continue;
			}
			snprintf(name, sizeof(name), "%02x %02x", code[0], m);
			check(name, code, 2, NULL);
		}
	print_message("%u cases (%u faulted on both), %u mismatches\n",
		      fxd_ncases, fxd_nfaults, fxd_failures);
	assert_int_equal(fxd_failures, 0);
	assert_true(fxd_nfaults > 0);
}

static void test_x87_memory_forms_match_host(void **state)
{
	char name[32];

	(void)state;
	fxd_failures = fxd_ncases = fxd_nfaults = 0;
	for (unsigned int o16 = 0; o16 < 2; o16++)
		for (unsigned int esc = 0; esc < 8; esc++)
			for (unsigned int reg = 0; reg < 8; reg++) {
				uint8_t code[4];
				size_t n = 0;

				if (o16 && !((esc == 1 || esc == 5) &&
					     (reg == 4 || reg == 6)))
					continue;
				if (o16)
					code[n++] = 0x66;
				code[n++] = (uint8_t)(0xd8 + esc);
				code[n++] = (uint8_t)(0x43 | (reg << 3));
				if (!(mem_defined[esc] >> reg & 1)) {
					code[n++] = 0;
					fxd_expect_fault_with(0, 0, code, n,
							      X86_UD);
					continue;
				}
				env_disp = (int)(fxd_rnd() % 96) - 64;
				code[n++] = (uint8_t)(int8_t)env_disp;
				snprintf(name, sizeof(name), "%s%02x /%u",
					 o16 ? "66 " : "", code[n - 3], reg);
				/* The 16-bit environment has no FOP and puts
				 * its pointers at bytes 6-13. */
				check(name, code, n,
				      stores_env(esc, reg) && !o16 ?
					      skip_env_pointers :
					      NULL);
			}
	print_message("%u cases (%u faulted on both), %u mismatches\n",
		      fxd_ncases, fxd_nfaults, fxd_failures);
	assert_int_equal(fxd_failures, 0);
}

/* ---- what only our CPU shows ------------------------------------------- */

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

/*
 * SDM vol. 1, 8.1.8: after FLD m64 at XH_CODE, FNSTENV's environment
 * holds that instruction's address, its opcode's low 11 bits and its
 * operand's address; a register instruction after it moves FIP and FOP
 * but not FDP; a control instruction (FNSTCW) moves nothing.
 */
static void test_x87_pointers_are_the_guests(void **state)
{
	/* fld qword [rbx+8]; fnstcw [rbx+4]; fnstenv [rbx+64];
	 * fadd st, st(0); fnstenv [rbx+96] */
	static const uint8_t code[] = { 0xdd, 0x43, 0x08, 0xd9, 0x7b,
					0x04, 0xd9, 0x73, 0x40, 0xd8,
					0xc0, 0xd9, 0x73, 0x60 };
	uint8_t *env;

	(void)state;
	xh_free(fxd_h);
	fxd_h = fxd_fresh();
	xh_set_reg(fxd_h, X86_RBX, FXD_GBUF + FXD_MID);
	memset(xh_ptr(fxd_h, FXD_GBUF), 0, FXD_BUF);
	xh_run_ok(fxd_h, code, sizeof(code));
	env = xh_ptr(fxd_h, FXD_GBUF + FXD_MID + 64);
	assert_int_equal(get32(env + 12), XH_CODE);
	assert_int_equal(get32(env + 16) >> 16, 0x543); /* DD /0, 0x43 */
	assert_int_equal(get32(env + 20), FXD_GBUF + FXD_MID + 8);
	env = xh_ptr(fxd_h, FXD_GBUF + FXD_MID + 96);
	assert_int_equal(get32(env + 12), XH_CODE + 9);
	assert_int_equal(get32(env + 16) >> 16, 0x0c0); /* D8 C0 */
	assert_int_equal(get32(env + 20), FXD_GBUF + FXD_MID + 8);
}

/* SDM vol. 3, 2.5: CR0.EM or CR0.TS make an x87 instruction #NM; FWAIT
 * only with CR0.MP and CR0.TS both. */
static void test_x87_nm_rules(void **state)
{
	static const uint8_t fld1[] = { 0xd9, 0xe8 };
	static const uint8_t fninit[] = { 0xdb, 0xe3 };
	static const uint8_t fwait_nop[] = { 0x9b, 0x90 };

	(void)state;
	fxd_expect_fault_with(X86_CR0_EM, 0, fld1, 2, X86_NM);
	fxd_expect_fault_with(X86_CR0_TS, 0, fld1, 2, X86_NM);
	fxd_expect_fault_with(X86_CR0_TS, 0, fninit, 2, X86_NM);
	fxd_expect_fault_with(X86_CR0_TS | X86_CR0_MP, 0, fwait_nop, 2, X86_NM);
	/* TS without MP: FWAIT runs. */
	xh_free(fxd_h);
	fxd_h = fxd_fresh();
	{
		struct x86_sregs s;

		x86_get_sregs(fxd_h->cpu, &s);
		s.cr0 = (s.cr0 | X86_CR0_TS) & ~X86_CR0_MP;
		x86_set_sregs(fxd_h->cpu, &s);
	}
	xh_run_ok(fxd_h, fwait_nop, sizeof(fwait_nop));
}

/*
 * SDM vol. 1, 8.6: an unmasked exception is pending after the
 * instruction that raised it and is #MF at the next waiting instruction
 * (FWAIT, FLD1), not at a non-waiting one (FNSTSW); FNCLEX clears it.
 */
static void test_x87_pending_exception_is_mf_at_next_wait(void **state)
{
	/* fldcw [rbx]: ZE unmasked; fldz; fld1; fdiv st, st(1) */
	static const uint8_t setup[] = { 0xd9, 0x2b, 0xd9, 0xee,
					 0xd9, 0xe8, 0xd8, 0xf1 };
	uint8_t code[32];
	uint16_t fcw = 0x037b; /* ZE (bit 2) unmasked */

	(void)state;
	for (unsigned int k = 0; k < 3; k++) {
		/* then: fwait | fld1 | fnstsw ax; fnclex; fwait */
		static const uint8_t tails[3][6] = {
			{ 1, 0x9b },
			{ 2, 0xd9, 0xe8 },
			{ 5, 0xdf, 0xe0, 0xdb, 0xe2, 0x9b },
		};
		size_t n = sizeof(setup);

		memcpy(code, setup, n);
		memcpy(code + n, tails[k] + 1, tails[k][0]);
		n += tails[k][0];
		xh_free(fxd_h);
		fxd_h = fxd_fresh();
		xh_set_reg(fxd_h, X86_RBX, FXD_GBUF);
		memcpy(xh_ptr(fxd_h, FXD_GBUF), &fcw, 2);
		if (k < 2) {
			struct x86_exit exit;

			assert_int_equal(xh_run_at(fxd_h, code, n, &exit),
					 X86_EXIT_TRIPLE_FAULT);
			assert_int_equal(exit.triple.vectors[0], X86_MF);
			assert_int_equal(xh_rip(fxd_h),
					 XH_CODE + sizeof(setup));
		} else {
			xh_run_ok(fxd_h, code, n);
			/* FNSTSW saw ZE and ES. */
			assert_int_equal(xh_reg(fxd_h, X86_RAX) & 0x84, 0x84);
		}
	}
}

/* The guest's x87 and SSE state never leaks into the host thread's: the
 * control words the vCPU thread runs with stay its own. */
static void test_x87_host_state_untouched(void **state)
{
	/* fldcw [rbx]; ldmxcsr [rbx+4]; fld1; fldpi; fdiv st, st(1) */
	static const uint8_t code[] = { 0xd9, 0x2b, 0x0f, 0xae, 0x53, 0x04,
					0xd9, 0xe8, 0xd9, 0xeb, 0xd8, 0xf1 };
	uint16_t fcw = 0x0c62, host_fcw_before, host_fcw_after;
	uint32_t mxcsr = 0x7f00, host_mx_before, host_mx_after;

	(void)state;
	xh_free(fxd_h);
	fxd_h = fxd_fresh();
	xh_set_reg(fxd_h, X86_RBX, FXD_GBUF);
	memcpy(xh_ptr(fxd_h, FXD_GBUF), &fcw, 2);
	memcpy(xh_ptr(fxd_h, FXD_GBUF + 4), &mxcsr, 4);
	__asm__ volatile("fnstcw %0; stmxcsr %1"
			 : "=m"(host_fcw_before), "=m"(host_mx_before));
	xh_run_ok(fxd_h, code, sizeof(code));
	__asm__ volatile("fnstcw %0; stmxcsr %1"
			 : "=m"(host_fcw_after), "=m"(host_mx_after));
	assert_int_equal(host_fcw_after, host_fcw_before);
	assert_int_equal(host_mx_after, host_mx_before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_x87_register_forms_match_host),
		cmocka_unit_test(test_x87_memory_forms_match_host),
		cmocka_unit_test(test_x87_pointers_are_the_guests),
		cmocka_unit_test(test_x87_nm_rules),
		cmocka_unit_test(test_x87_pending_exception_is_mf_at_next_wait),
		cmocka_unit_test(test_x87_host_state_untouched),
	};

	return cmocka_run_group_tests(tests, fxd_setup, fxd_teardown);
}
