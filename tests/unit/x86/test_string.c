/*
 * Tests of exec_string.c: MOVS, STOS, LODS, CMPS and SCAS at every width,
 * with and without REP/REPE/REPNE, both directions and both address
 * sizes, differential against the host CPU (hostexec) on buffers below
 * 4 GiB; then what the host cannot show: restart after a shadow fault in
 * the middle of a REP, the return to the run loop of a long one, copies
 * across pages, overlaps, segment overrides and MMIO sources.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "harness.h"
#include "hostexec.h"
#include "x86_int.h" /* to put a recording x86_env under the CPU */

#define DATA 0x300000ULL /* a scratch data page */
#define FLAGS_ARITH 0x8d5ULL /* CF PF AF ZF SF OF */

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

#define BUF_SIZE (3 * 4096) /* each buffer: three pages */
#define GSRC 0x300000ULL
#define GDST 0x400000ULL

enum sop { MOVS, STOS, LODS, CMPS, SCAS };
static const uint8_t sop_byte[] = { 0xa4, 0xaa, 0xac, 0xa6, 0xae };
static const char *const sop_name[] = { "movs", "stos", "lods", "cmps",
					"scas" };

struct sdiff {
	uint8_t *hsrc, *hdst; /* host buffers, below 2 GiB (MAP_32BIT) */
	struct xh *h;
};

/* Builds [rep] [67] [66] [REX.W] op for size. */
static size_t encode(uint8_t *code, enum sop op, unsigned int size, uint8_t rep,
		     bool a32)
{
	size_t n = 0;

	if (rep)
		code[n++] = rep;
	if (a32)
		code[n++] = 0x67;
	if (size == 2)
		code[n++] = 0x66;
	if (size == 8)
		code[n++] = 0x48;
	code[n++] = (uint8_t)(sop_byte[op] + (size > 1));
	return n;
}

/*
 * One run of a string instruction on the host and in the CPU from the
 * same buffer contents and registers (RSI/RDI as offsets into each
 * side's buffers); compares the registers, the flags for CMPS/SCAS and
 * the destination buffer.
 */
static void sdiff_one(struct sdiff *d, enum sop op, unsigned int size,
		      uint8_t rep, bool a32, bool df, uint64_t count,
		      unsigned int off_s, unsigned int off_d)
{
	uint8_t code[8], *g_src = xh_ptr(d->h, GSRC),
			 *g_dst = xh_ptr(d->h, GDST);
	size_t len = encode(code, op, size, rep, a32);
	struct hx_regs hx;
	struct x86_regs regs;
	char name[64];

	snprintf(name, sizeof(name), "%s%u%s%s%s n=%llu", sop_name[op], size,
		 rep == 0xf3 ? " rep" :
		 rep == 0xf2 ? " repne" :
			       "",
		 a32 ? " a32" : "", df ? " std" : "",
		 (unsigned long long)count);
	/* Same contents on both sides: random source, a destination that
	 * equals it but for a few bytes (so REPE and REPNE both stop). */
	for (unsigned int i = 0; i < BUF_SIZE; i++)
		d->hsrc[i] = (uint8_t)rnd();
	memcpy(d->hdst, d->hsrc, BUF_SIZE);
	for (unsigned int i = 0; i < 6; i++)
		d->hdst[rnd() % BUF_SIZE] ^= 0x10;
	if (rnd() & 1) /* mostly different, equal in a few places */
		for (unsigned int i = 0; i < BUF_SIZE; i++)
			if (rnd() % 64)
				d->hdst[i] = (uint8_t)~d->hsrc[i];
	memcpy(g_src, d->hsrc, BUF_SIZE);
	memcpy(g_dst, d->hdst, BUF_SIZE);

	memset(&hx, 0, sizeof(hx));
	for (unsigned int r = 0; r < 16; r++)
		hx.gpr[r] = rnd();
	hx.gpr[X86_RCX] = a32 ? (rnd() << 32) | count : count;
	/* SCAS looks for something that is there now and then. */
	if (op == SCAS && (rnd() & 1))
		memcpy(&hx.gpr[X86_RAX], d->hdst + off_d + size * (rnd() % 8),
		       size);
	hx.rflags = (rnd() & FLAGS_ARITH) | (df ? X86_RFLAGS_DF : 0);
	memcpy(regs.gpr, hx.gpr, sizeof(regs.gpr));
	hx.gpr[X86_RSI] = (uintptr_t)d->hsrc + off_s;
	hx.gpr[X86_RDI] = (uintptr_t)d->hdst + off_d;
	regs.gpr[X86_RSI] = GSRC + off_s;
	regs.gpr[X86_RDI] = GDST + off_d;
	regs.gpr[X86_RSP] = XH_STACK_TOP;
	regs.rip = XH_CODE;
	regs.rflags = hx.rflags | X86_RFLAGS_FIXED;
	if (a32) { /* the upper halves are ignored, then cleared */
		uint64_t junk = rnd() << 32;

		hx.gpr[X86_RSI] |= junk;
		regs.gpr[X86_RSI] |= junk;
	}
	assert_int_equal(hx_run(code, len, &hx), HX_OK);
	x86_set_regs(d->h->cpu, &regs);
	xh_run_ok(d->h, code, len);
	x86_get_regs(d->h->cpu, &regs);

	regs.gpr[X86_RSI] -= GSRC;
	regs.gpr[X86_RDI] -= GDST;
	hx.gpr[X86_RSI] -= (uintptr_t)d->hsrc;
	hx.gpr[X86_RDI] -= (uintptr_t)d->hdst;
	for (unsigned int r = 0; r < 16; r++)
		if (r != X86_RSP && regs.gpr[r] != hx.gpr[r])
			fail_msg("%s: r%u = %#llx, host %#llx", name, r,
				 (unsigned long long)regs.gpr[r],
				 (unsigned long long)hx.gpr[r]);
	/* MOVS/STOS/LODS leave the flags alone on both sides. */
	if ((regs.rflags ^ hx.rflags) & (FLAGS_ARITH | X86_RFLAGS_DF))
		fail_msg("%s: rflags %#llx, host %#llx", name,
			 (unsigned long long)regs.rflags,
			 (unsigned long long)hx.rflags);
	if (memcmp(g_dst, d->hdst, BUF_SIZE))
		fail_msg("%s: destination differs", name);
}

static void test_string_every_form_matches_host(void **state)
{
	static const unsigned int sizes[] = { 1, 2, 4, 8 };
	struct sdiff d;

	(void)state;
	d.h = xh_new();
	d.hsrc = mmap(NULL, 2 * BUF_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	assert_true(d.hsrc != MAP_FAILED);
	d.hdst = d.hsrc + BUF_SIZE;
	for (unsigned int op = MOVS; op <= SCAS; op++) {
		for (unsigned int s = 0; s < 4; s++) {
			for (unsigned int v = 0; v < 24; v++) {
				static const uint8_t reps[] = { 0, 0xf3, 0xf2 };
				uint8_t rep = reps[v % 3];
				bool a32 = v & 4, df = v & 8;
				uint64_t count = v < 12 ? rnd() % 9 :
							  rnd() % 520;
				/* Start in the middle page so either
				 * direction stays inside the buffers. */
				unsigned int off_s = 4096 + rnd() % 64;
				unsigned int off_d = 4096 + rnd() % 64;

				if (v % 6 == 0)
					off_d = off_s; /* co-aligned */
				sdiff_one(&d, op, sizes[s], rep, a32, df, count,
					  off_s, off_d);
			}
		}
	}
	munmap(d.hsrc, 2 * BUF_SIZE);
	xh_free(d.h);
}

/* Sequential reference of REP MOVS (forward) for overlapping copies. */
static void ref_movs(uint8_t *mem, size_t src, size_t dst, unsigned int size,
		     size_t count)
{
	for (size_t i = 0; i < count; i++)
		memmove(mem + dst + i * size, mem + src + i * size, size);
}

static void test_string_rep_movs_across_pages_and_batches(void **state)
{
	static const uint8_t movsb[] = { 0xf3, 0xa4 };
	static const uint8_t movsq[] = { 0xf3, 0x48, 0xa5 };
	static const struct {
		unsigned int s_off, d_off, size;
		uint64_t count;
	} cases[] = {
		{ 0, 0, 1, 3 * 4096 },	  { 7, 3, 1, 2 * 4096 + 123 },
		{ 5, 5, 1, 4096 + 9000 }, { 8, 0, 8, 1500 },
		{ 4, 0, 8, 1500 },	  { 3, 6, 8, 1000 },
	};
	struct xh *h = xh_new();
	static uint8_t want[5 * 4096];

	(void)state;
	for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
		uint8_t *s = xh_ptr(h, GSRC), *g = xh_ptr(h, GDST);
		size_t bytes = cases[c].count * cases[c].size;

		for (size_t i = 0; i < sizeof(want); i++)
			s[i] = (uint8_t)rnd();
		memset(g, 0xee, sizeof(want));
		memcpy(want, g, sizeof(want));
		memcpy(want + cases[c].d_off, s + cases[c].s_off, bytes);
		xh_set_reg(h, X86_RSI, GSRC + cases[c].s_off);
		xh_set_reg(h, X86_RDI, GDST + cases[c].d_off);
		xh_set_reg(h, X86_RCX, cases[c].count);
		if (cases[c].size == 1)
			xh_run_ok(h, movsb, sizeof(movsb));
		else
			xh_run_ok(h, movsq, sizeof(movsq));
		assert_memory_equal(g, want, sizeof(want));
		assert_int_equal(xh_reg(h, X86_RCX), 0);
		assert_int_equal(xh_reg(h, X86_RSI),
				 GSRC + cases[c].s_off + bytes);
		assert_int_equal(xh_reg(h, X86_RDI),
				 GDST + cases[c].d_off + bytes);
	}
	xh_free(h);
}

static void test_string_rep_movs_overlap_is_element_by_element(void **state)
{
	static const uint8_t movsb[] = { 0xf3, 0xa4 };
	static const uint8_t movsd[] = { 0xf3, 0xa5 };
	static const uint8_t movsq[] = { 0xf3, 0x48, 0xa5 };
	static const struct {
		const uint8_t *code;
		size_t len;
		unsigned int size, dist;
	} cases[] = {
		{ movsb, 2, 1, 1 },  { movsb, 2, 1, 7 }, { movsb, 2, 1, 8 },
		{ movsd, 2, 4, 3 },  { movsd, 2, 4, 5 }, { movsq, 3, 8, 8 },
		{ movsq, 3, 8, 12 },
	};
	struct xh *h = xh_new();
	uint8_t *m = xh_ptr(h, GSRC);
	static uint8_t want[8192];

	(void)state;
	for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
		size_t count = 700;

		for (size_t i = 0; i < sizeof(want); i++)
			m[i] = (uint8_t)rnd();
		memcpy(want, m, sizeof(want));
		ref_movs(want, 16, 16 + cases[c].dist, cases[c].size, count);
		xh_set_reg(h, X86_RSI, GSRC + 16);
		xh_set_reg(h, X86_RDI, GSRC + 16 + cases[c].dist);
		xh_set_reg(h, X86_RCX, count);
		xh_run_ok(h, cases[c].code, cases[c].len);
		assert_memory_equal(m, want, sizeof(want));
	}
	xh_free(h);
}

static void test_string_rep_stos_every_width_fills_exactly(void **state)
{
	static const uint8_t stos[4][3] = { { 0xf3, 0xaa },
					    { 0xf3, 0x66, 0xab },
					    { 0xf3, 0xab },
					    { 0xf3, 0x48, 0xab } };
	static const size_t lens[4] = { 2, 3, 2, 3 };
	struct xh *h = xh_new();
	uint8_t *g = xh_ptr(h, GDST);
	static uint8_t want[3 * 4096];

	(void)state;
	for (unsigned int w = 0; w < 4; w++) {
		unsigned int size = 1u << w;

		for (unsigned int off = 0; off < 9; off++) {
			uint64_t v = 0x8877665544332211ULL;
			size_t count = (2 * 4096 + 77) / size;

			memset(g, 0xcc, sizeof(want));
			memset(want, 0xcc, sizeof(want));
			for (size_t i = 0; i < count * size; i++)
				want[off + i] =
					(uint8_t)(v >> (8 * (i % size)));
			xh_set_reg(h, X86_RAX, v);
			xh_set_reg(h, X86_RDI, GDST + off);
			xh_set_reg(h, X86_RCX, count);
			xh_run_ok(h, stos[w], lens[w]);
			assert_memory_equal(g, want, sizeof(want));
			assert_int_equal(xh_reg(h, X86_RDI),
					 GDST + off + count * size);
		}
	}
	xh_free(h);
}

static void
test_string_rep_movs_unmapped_page_restarts_where_it_stopped(void **state)
{
	static const uint8_t movsb[] = { 0xf3, 0xa4 };
	struct xh *h = xh_new();
	struct x86_exit exit;
	uint8_t *s = xh_ptr(h, GSRC), *g = xh_ptr(h, GDST);

	(void)state;
	for (unsigned int i = 0; i < 8192; i++)
		s[i] = (uint8_t)(i * 7);
	xh_set_page(h, GDST + 4096, 0);
	xh_set_reg(h, X86_RSI, GSRC + 100);
	xh_set_reg(h, X86_RDI, GDST + 100);
	xh_set_reg(h, X86_RCX, 6000);
	assert_int_equal(xh_run_at(h, movsb, sizeof(movsb), &exit),
			 X86_EXIT_SHADOW_FAULT);
	assert_int_equal(exit.fault.gva, GDST + 4096);
	assert_true(exit.fault.access & X86_ACC_WRITE);
	/* Everything before the page boundary is done and committed. */
	assert_int_equal(xh_rip(h), XH_CODE);
	assert_int_equal(xh_reg(h, X86_RCX), 6000 - (4096 - 100));
	assert_int_equal(xh_reg(h, X86_RSI), GSRC + 4096);
	assert_int_equal(xh_reg(h, X86_RDI), GDST + 4096);
	assert_memory_equal(g + 100, s + 100, 4096 - 100);

	xh_set_page(h, GDST + 4096, X86_PTE_P | X86_PTE_W | X86_PTE_U);
	assert_int_equal(xh_run(h, 100, &exit), X86_EXIT_HLT);
	assert_int_equal(xh_reg(h, X86_RCX), 0);
	assert_memory_equal(g + 100, s + 100, 6000);
	xh_free(h);
}

static void test_string_long_rep_returns_to_run_loop(void **state)
{
	static const uint8_t stosb[] = { 0xf3, 0xaa };
	static const uint8_t cmpsb[] = { 0xf3, 0xa6 };
	struct xh *h = xh_new();
	struct x86_exit exit;
	uint64_t rcx;

	(void)state;
	xh_set_reg(h, X86_RDI, GDST);
	xh_set_reg(h, X86_RCX, 100000);
	assert_int_equal(xh_run_at(h, stosb, sizeof(stosb), &exit),
			 X86_EXIT_HLT);
	assert_int_equal(xh_reg(h, X86_RDI), GDST + 100000);

	/* One retired instruction of budget: the REP ran a batch, left
	 * RIP on itself and gave the loop back. */
	xh_set_reg(h, X86_RDI, GDST);
	xh_set_reg(h, X86_RCX, 100000);
	xh_place_code(h, stosb, sizeof(stosb));
	assert_int_equal(xh_run(h, 1, &exit), X86_EXIT_BUDGET);
	rcx = xh_reg(h, X86_RCX);
	assert_true(rcx > 0 && rcx < 100000);
	assert_int_equal(xh_rip(h), XH_CODE);

	/* The same for a comparison that keeps matching. */
	memset(xh_ptr(h, GSRC), 0, 100000);
	memset(xh_ptr(h, GDST), 0, 100000);
	xh_set_reg(h, X86_RSI, GSRC);
	xh_set_reg(h, X86_RDI, GDST);
	xh_set_reg(h, X86_RCX, 100000);
	xh_place_code(h, cmpsb, sizeof(cmpsb));
	assert_int_equal(xh_run(h, 1, &exit), X86_EXIT_BUDGET);
	rcx = xh_reg(h, X86_RCX);
	assert_true(rcx > 0 && rcx < 100000);
	assert_int_equal(xh_rip(h), XH_CODE);
	xh_free(h);
}

static void test_string_zero_count_changes_nothing(void **state)
{
	static const uint8_t code[] = { 0xf3, 0x67, 0xa4 }; /* ECX = 0 */
	struct xh *h = xh_new();
	struct x86_regs before, after;

	(void)state;
	xh_set_reg(h, X86_RCX, 0xffffffff00000000ULL);
	xh_set_reg(h, X86_RSI, 0xffffffff00001234ULL);
	xh_set_reg(h, X86_RDI, 0x0000800000000000ULL); /* never touched */
	x86_get_regs(h->cpu, &before);
	xh_run_ok(h, code, sizeof(code));
	x86_get_regs(h->cpu, &after);
	assert_memory_equal(before.gpr, after.gpr, sizeof(before.gpr));
	xh_free(h);
}

static void test_string_fs_override_applies_to_source_only(void **state)
{
	static const uint8_t code[] = {
		0x64, 0xf3, 0xa4, /* rep movsb fs:[rsi] -> es:[rdi] */
		0x64, 0xac, /* lodsb fs:[rsi] */
		0x64, 0xaa, /* stosb: es:[rdi], the override ignored */
	};
	struct xh *h = xh_new();
	struct x86_sregs s;

	(void)state;
	memcpy(xh_ptr(h, GSRC + 0x2000 + 0x10), "hello, fs!", 10);
	x86_get_sregs(h->cpu, &s);
	s.seg[X86_FS].base = GSRC + 0x2000;
	x86_set_sregs(h->cpu, &s);
	xh_set_reg(h, X86_RSI, 0x10);
	xh_set_reg(h, X86_RDI, GDST);
	xh_set_reg(h, X86_RCX, 9);
	xh_run_ok(h, code, sizeof(code));
	assert_memory_equal(xh_ptr(h, GDST), "hello, fs!\0", 11);
	assert_int_equal(xh_reg(h, X86_RSI), 0x10 + 10);
	assert_int_equal(xh_reg(h, X86_RDI), GDST + 10);
	xh_free(h);
}

static void test_string_rep_movs_from_mmio_reads_device(void **state)
{
	static const uint8_t movsq[] = { 0xf3, 0x48, 0xa5 };
	struct xh *h = xh_new();
	uint64_t *g = xh_ptr(h, GDST);

	(void)state;
	memset(g, 0, 64);
	/* The harness's MMIO reads as all ones (open bus). The page's
	 * TLB slot must not be the code page's (XH_CODE). */
	x86_map_mmio(h->cpu, GSRC + 0x1000, 0xd0000000ULL, X86_ACC_WRITE);
	xh_set_reg(h, X86_RSI, GSRC + 0x1000);
	xh_set_reg(h, X86_RDI, GDST);
	xh_set_reg(h, X86_RCX, 4);
	xh_run_ok(h, movsq, sizeof(movsq));
	for (unsigned int i = 0; i < 4; i++)
		assert_int_equal(g[i], ~0ULL);
	assert_int_equal(g[4], 0);
	xh_free(h);
}

static void test_string_repe_cmps_stops_at_difference(void **state)
{
	static const uint8_t code[] = { 0xf3, 0xa6 };
	struct xh *h = xh_new();

	(void)state;
	memcpy(xh_ptr(h, GSRC), "abcdef", 6);
	memcpy(xh_ptr(h, GDST), "abcXef", 6);
	xh_set_reg(h, X86_RSI, GSRC);
	xh_set_reg(h, X86_RDI, GDST);
	xh_set_reg(h, X86_RCX, 6);
	xh_run_ok(h, code, sizeof(code));
	/* Four comparisons: the fourth ('d' - 'X') differs. */
	assert_int_equal(xh_reg(h, X86_RCX), 2);
	assert_int_equal(xh_reg(h, X86_RSI), GSRC + 4);
	assert_false(xh_rflags(h) & X86_RFLAGS_ZF);
	assert_false(xh_rflags(h) & X86_RFLAGS_CF);
	xh_free(h);
}

static void test_string_noncanonical_destination_gp_no_change(void **state)
{
	static const uint8_t code[] = { 0xf3, 0x48, 0xab }; /* rep stosq */
	struct xh *h = xh_new();

	(void)state;
	xh_set_reg(h, X86_RDI, 0x0000800000000000ULL);
	xh_set_reg(h, X86_RCX, 3);
	xh_expect_fault(h, code, sizeof(code), X86_GP);
	xh_free(h);
}

static unsigned int tracked_bytes;
static bool tracked_stop;

static void record_tracked(void *opaque, gpa_t gpa, unsigned int size)
{
	struct xh *h = opaque;

	assert_true(gpa >= GDST && gpa + size <= GDST + 4096);
	tracked_bytes += size;
	if (tracked_stop)
		x86_request_exit(h->cpu);
}

static void
test_string_rep_movs_to_tracked_page_reports_every_byte(void **state)
{
	static const uint8_t movsb[] = { 0xf3, 0xa4 };
	/* Source and destination apart from the code's TLB slot. */
	const gva_t src = GSRC + 0x5000;
	struct xh *h = xh_new();
	struct x86_env env = *h->cpu->env;
	struct x86_exit exit;

	(void)state;
	env.tracked_write = record_tracked;
	h->cpu->env = &env;
	memset(xh_ptr(h, src), 0x5a, 300);
	x86_map_tracked(h->cpu, GDST, (hva_t)(uintptr_t)xh_ptr(h, GDST), GDST,
			X86_ACC_WRITE | X86_ACC_USER);
	xh_set_reg(h, X86_RSI, src);
	xh_set_reg(h, X86_RDI, GDST);
	xh_set_reg(h, X86_RCX, 300);
	xh_run_ok(h, movsb, sizeof(movsb));
	/* No bulk copy may skip the report of a write. */
	assert_int_equal(tracked_bytes, 300);
	assert_int_equal(((uint8_t *)xh_ptr(h, GDST))[299], 0x5a);

	/* A callback that asks the run loop to stop ends the REP after
	 * that element, to be restarted. */
	tracked_stop = true;
	tracked_bytes = 0;
	x86_map_tracked(h->cpu, GDST, (hva_t)(uintptr_t)xh_ptr(h, GDST), GDST,
			X86_ACC_WRITE | X86_ACC_USER);
	xh_set_reg(h, X86_RSI, src);
	xh_set_reg(h, X86_RDI, GDST);
	xh_set_reg(h, X86_RCX, 300);
	assert_int_equal(xh_run_at(h, movsb, sizeof(movsb), &exit),
			 X86_EXIT_NONE);
	assert_int_equal(tracked_bytes, 1);
	assert_int_equal(xh_reg(h, X86_RCX), 299);
	assert_int_equal(xh_rip(h), XH_CODE);
	tracked_stop = false;
	xh_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_string_every_form_matches_host),
		cmocka_unit_test(test_string_rep_movs_across_pages_and_batches),
		cmocka_unit_test(
			test_string_rep_movs_overlap_is_element_by_element),
		cmocka_unit_test(
			test_string_rep_stos_every_width_fills_exactly),
		cmocka_unit_test(
			test_string_rep_movs_unmapped_page_restarts_where_it_stopped),
		cmocka_unit_test(test_string_long_rep_returns_to_run_loop),
		cmocka_unit_test(test_string_zero_count_changes_nothing),
		cmocka_unit_test(
			test_string_fs_override_applies_to_source_only),
		cmocka_unit_test(test_string_rep_movs_from_mmio_reads_device),
		cmocka_unit_test(test_string_repe_cmps_stops_at_difference),
		cmocka_unit_test(
			test_string_rep_movs_to_tracked_page_reports_every_byte),
		cmocka_unit_test(
			test_string_noncanonical_destination_gp_no_change),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
