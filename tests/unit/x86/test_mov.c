/*
 * Tests of exec_mov.c: MOV, MOVZX/MOVSX/MOVSXD, LEA, the exchanges and
 * PUSH/POP, run through the harness. Register-only forms are differential
 * (the same bytes and registers on the host CPU through hostexec, over
 * corner and pseudo-random values); memory forms, LOCK'd semantics, the
 * stack and the faults are checked against the SDM's descriptions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "hostexec.h"
#include "rng.h"

#define DATA 0x300000ULL /* a scratch data page */
#define FLAGS_ARITH 0x8d5ULL /* CF PF AF ZF SF OF */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	return splitmix64(&rng_state);
}

static const uint64_t corners[] = {
	0,
	1,
	0x7f,
	0x80,
	0xff,
	0x7fff,
	0x8000,
	0xffff,
	0x7fffffff,
	0x80000000,
	0xffffffff,
	0x100000000ULL,
	0x7fffffffffffffffULL,
	0x8000000000000000ULL,
	0xffffffffffffffffULL,
	0x123456789abcdef0ULL,
};

struct diff_case {
	const char *name;
	uint8_t code[12];
	size_t len;
	uint64_t fmask;
};

#define CASE(n, f, ...)                                                   \
	{                                                                 \
		n, { __VA_ARGS__ }, sizeof((uint8_t[]){ __VA_ARGS__ }), f \
	}

static const struct diff_case reg_cases[] = {
	CASE("mov rax,rbx", 0, 0x48, 0x89, 0xd8),
	CASE("mov ah,bl", 0, 0x88, 0xdc),
	CASE("mov r9b,sil", 0, 0x41, 0x88, 0xf1),
	CASE("mov eax,ebx", 0, 0x89, 0xd8),
	CASE("mov ecx,edx (8b)", 0, 0x8b, 0xca),
	CASE("mov cx,dx", 0, 0x66, 0x89, 0xd1),
	CASE("movabs r10", 0, 0x49, 0xba, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33,
	     0x22, 0x11),
	CASE("mov r11d,imm", 0, 0x41, 0xbb, 0xef, 0xcd, 0xab, 0x89),
	CASE("mov r12w,imm", 0, 0x66, 0x41, 0xbc, 0x34, 0x12),
	CASE("mov bh,imm", 0, 0xb7, 0x80),
	CASE("mov sil,imm (rex)", 0, 0x40, 0xb6, 0x80),
	CASE("mov rcx,simm32", 0, 0x48, 0xc7, 0xc1, 0xfe, 0xff, 0xff, 0xff),
	CASE("movzx eax,bh", 0, 0x0f, 0xb6, 0xc7),
	CASE("movzx rax,cl", 0, 0x48, 0x0f, 0xb6, 0xc1),
	CASE("movzx edx,r8w", 0, 0x41, 0x0f, 0xb7, 0xd0),
	CASE("movzx dx,al", 0, 0x66, 0x0f, 0xb6, 0xd0),
	CASE("movsx ecx,ah", 0, 0x0f, 0xbe, 0xcc),
	CASE("movsx rdx,r9b", 0, 0x49, 0x0f, 0xbe, 0xd1),
	CASE("movsx si,dl", 0, 0x66, 0x0f, 0xbe, 0xf2),
	CASE("movsx r10,bx", 0, 0x4c, 0x0f, 0xbf, 0xd3),
	CASE("movsxd r11,r12d", 0, 0x4d, 0x63, 0xdc),
	CASE("movsxd r13,ecx", 0, 0x4c, 0x63, 0xe9),
	CASE("movsxd ecx,edx", 0, 0x63, 0xca),
	CASE("lea rax,[rbx+rcx*4+d32]", 0, 0x48, 0x8d, 0x84, 0x8b, 0x78, 0x56,
	     0x34, 0x12),
	CASE("lea eax,[rbx+rcx*8-5]", 0, 0x8d, 0x44, 0xcb, 0xfb),
	CASE("lea ax,[rsi+rdi]", 0, 0x66, 0x8d, 0x04, 0x3e),
	CASE("lea rdx,[ebx+ecx*2+16]", 0, 0x67, 0x48, 0x8d, 0x54, 0x4b, 0x10),
	CASE("lea r8,[r9+r10]", 0, 0x4f, 0x8d, 0x04, 0x11),
	CASE("lea rcx,[d32]", 0, 0x48, 0x8d, 0x0c, 0x25, 0x00, 0x00, 0x00,
	     0x80),
	CASE("xchg rax,rbx", 0, 0x48, 0x93),
	CASE("xchg eax,eax (87)", 0, 0x87, 0xc0),
	CASE("nop (90)", 0, 0x90),
	CASE("xchg ax,ax (66 90)", 0, 0x66, 0x90),
	CASE("pause", 0, 0xf3, 0x90),
	CASE("xchg r8d,eax (41 90)", 0, 0x41, 0x90),
	CASE("xchg r8,rax", 0, 0x49, 0x90),
	CASE("xchg ecx,edx", 0, 0x87, 0xd1),
	CASE("xchg ah,bl", 0, 0x86, 0xdc),
	CASE("xchg si,di", 0, 0x66, 0x87, 0xfe),
	CASE("cmpxchg ecx,edx", FLAGS_ARITH, 0x0f, 0xb1, 0xd1),
	CASE("cmpxchg rcx,rdx", FLAGS_ARITH, 0x48, 0x0f, 0xb1, 0xd1),
	CASE("cmpxchg cl,dl", FLAGS_ARITH, 0x0f, 0xb0, 0xd1),
	CASE("cmpxchg cx,dx", FLAGS_ARITH, 0x66, 0x0f, 0xb1, 0xd1),
	CASE("cmpxchg eax,ebx", FLAGS_ARITH, 0x0f, 0xb1, 0xd8),
	CASE("cmpxchg ah,bh", FLAGS_ARITH, 0x0f, 0xb0, 0xfc),
	CASE("xadd ecx,edx", FLAGS_ARITH, 0x0f, 0xc1, 0xd1),
	CASE("xadd rcx,rcx", FLAGS_ARITH, 0x48, 0x0f, 0xc1, 0xc9),
	CASE("xadd bl,ah", FLAGS_ARITH, 0x0f, 0xc0, 0xe3),
	CASE("xadd si,di", FLAGS_ARITH, 0x66, 0x0f, 0xc1, 0xfe),
	CASE("xadd r8,r9", FLAGS_ARITH, 0x4d, 0x0f, 0xc1, 0xc8),
};

static void test_mov_register_forms_match_host(void **state)
{
	struct xh *h = xh_new();
	uint64_t gpr[16];

	(void)state;
	for (size_t c = 0; c < ARRAY_SIZE(reg_cases); c++) {
		const struct diff_case *dc = &reg_cases[c];

		for (unsigned int i = 0; i < 64; i++) {
			for (unsigned int r = 0; r < 16; r++)
				gpr[r] = (rnd() & 1) ?
						 corners[rnd() %
							 ARRAY_SIZE(corners)] :
						 rnd();
			/* CMPXCHG's success path needs equal operands. */
			if (i & 1) {
				gpr[X86_RAX] = gpr[X86_RCX];
				gpr[X86_RBX] = gpr[X86_RAX];
			}
			xh_diff_host(h, dc->name, dc->code, dc->len, gpr,
				     rnd() & (FLAGS_ARITH | X86_RFLAGS_DF),
				     dc->fmask);
		}
	}
	xh_free(h);
}

static const struct diff_case mem_cases[] = {
	CASE("xchg [rdi],rcx", 0, 0x48, 0x87, 0x0f),
	CASE("xchg [rdi],cl", 0, 0x86, 0x0f),
	CASE("xchg [rdi+1],edx (misaligned)", 0, 0x87, 0x57, 0x01),
	CASE("lock cmpxchg [rdi],ecx", FLAGS_ARITH, 0xf0, 0x0f, 0xb1, 0x0f),
	CASE("lock cmpxchg [rdi],rcx", FLAGS_ARITH, 0xf0, 0x48, 0x0f, 0xb1,
	     0x0f),
	CASE("cmpxchg [rdi],cl", FLAGS_ARITH, 0x0f, 0xb0, 0x0f),
	CASE("lock cmpxchg [rdi],cx", FLAGS_ARITH, 0x66, 0xf0, 0x0f, 0xb1,
	     0x0f),
	CASE("lock xadd [rdi],rcx", FLAGS_ARITH, 0xf0, 0x48, 0x0f, 0xc1, 0x0f),
	CASE("xadd [rdi],ecx", FLAGS_ARITH, 0x0f, 0xc1, 0x0f),
	CASE("lock xadd [rdi],ah", FLAGS_ARITH, 0xf0, 0x0f, 0xc0, 0x27),
	CASE("lock xadd [rdi+2],si", FLAGS_ARITH, 0x66, 0xf0, 0x0f, 0xc1, 0x77,
	     0x02),
	CASE("lock cmpxchg8b [rdi]", FLAGS_ARITH, 0xf0, 0x0f, 0xc7, 0x0f),
	CASE("lock cmpxchg16b [rdi]", FLAGS_ARITH, 0xf0, 0x48, 0x0f, 0xc7,
	     0x0f),
	CASE("movsxd rax,[rdi+4]", 0, 0x48, 0x63, 0x47, 0x04),
	CASE("movsx rdx,word [rdi+2]", 0, 0x48, 0x0f, 0xbf, 0x57, 0x02),
	CASE("movzx esi,byte [rdi+7]", 0, 0x0f, 0xb6, 0x77, 0x07),
	CASE("mov [rdi+3],r9w", 0, 0x66, 0x44, 0x89, 0x4f, 0x03),
	CASE("mov qword [rdi+8],simm", 0, 0x48, 0xc7, 0x47, 0x08, 0x80, 0x00,
	     0x00, 0x80),
};

/* The memory forms the same way, RDI pointing at 32 bytes on each side
 * (16-aligned, for CMPXCHG16B); compares the bytes too. */
static void test_mov_memory_forms_match_host(void **state)
{
	static _Alignas(16) uint8_t hbuf[32];
	struct xh *h = xh_new();
	uint8_t *gbuf = xh_ptr(h, DATA);
	uint64_t gpr[16];

	(void)state;
	for (size_t c = 0; c < ARRAY_SIZE(mem_cases); c++) {
		const struct diff_case *dc = &mem_cases[c];

		for (unsigned int i = 0; i < 64; i++) {
			struct hx_regs hx;
			struct x86_regs regs;

			for (unsigned int r = 0; r < 16; r++)
				gpr[r] = (rnd() & 1) ?
						 corners[rnd() %
							 ARRAY_SIZE(corners)] :
						 rnd();
			for (unsigned int b = 0; b < 32; b++)
				hbuf[b] = (uint8_t)rnd();
			/* Half the comparisons succeed. */
			if (i & 1) {
				memcpy(&gpr[X86_RAX], hbuf, 8);
				memcpy(&gpr[X86_RDX], hbuf + 8, 8);
				if (!(i & 2)) /* CMPXCHG8B: EDX:EAX */
					gpr[X86_RDX] = (gpr[X86_RDX] << 32) |
						       (gpr[X86_RAX] >> 32);
			}
			memcpy(gbuf, hbuf, 32);
			memcpy(hx.gpr, gpr, sizeof(hx.gpr));
			hx.gpr[X86_RDI] = (uintptr_t)hbuf;
			hx.rflags = rnd() & FLAGS_ARITH;
			regs.rflags = hx.rflags | X86_RFLAGS_FIXED;
			assert_int_equal(hx_run(dc->code, dc->len, &hx), HX_OK);

			memcpy(regs.gpr, gpr, sizeof(regs.gpr));
			regs.gpr[X86_RDI] = DATA;
			regs.gpr[X86_RSP] = XH_STACK_TOP;
			regs.rip = XH_CODE;
			x86_set_regs(h->cpu, &regs);
			xh_run_ok(h, dc->code, dc->len);
			x86_get_regs(h->cpu, &regs);
			for (unsigned int r = 0; r < 16; r++)
				if (r != X86_RSP && r != X86_RDI &&
				    regs.gpr[r] != hx.gpr[r])
					fail_msg(
						"%s: r%u = %#llx, host %#llx",
						dc->name, r,
						(unsigned long long)regs.gpr[r],
						(unsigned long long)hx.gpr[r]);
			if ((regs.rflags ^ hx.rflags) & FLAGS_ARITH)
				fail_msg("%s: rflags %#llx, host %#llx",
					 dc->name,
					 (unsigned long long)regs.rflags,
					 (unsigned long long)hx.rflags);
			if (memcmp(gbuf, hbuf, 32))
				fail_msg("%s: memory differs", dc->name);
		}
	}
	xh_free(h);
}

static void test_mov_memory_forms_store_and_load(void **state)
{
	static const uint8_t code[] = {
		0x48, 0x89, 0x43, 0x08, /* mov [rbx+8], rax */
		0x48, 0x8b, 0x4b, 0x08, /* mov rcx, [rbx+8] */
		0xc7, 0x03, 0x00, 0x00, 0x00, 0x80, /* mov dword [rbx], imm */
		0x48, 0xc7, 0x43, 0x10, 0xfe, 0xff, 0xff, 0xff, /* [rbx+16] */
		0xc6, 0x43, 0x03, 0xab, /* mov byte [rbx+3], 0xab */
		0x66, 0xc7, 0x43, 0x04, 0xef, 0xbe, /* mov word [rbx+4] */
		0x0f, 0xb6, 0x53, 0x03, /* movzx edx, byte [rbx+3] */
		0x48, 0x0f, 0xbf, 0x73, 0x04, /* movsx rsi, word [rbx+4] */
		0x48, 0x63, 0x7b, 0x10, /* movsxd rdi, dword [rbx+16] */
		0x8a, 0x63, 0x03, /* mov ah, [rbx+3] */
	};
	struct xh *h = xh_new();
	uint8_t *m = xh_ptr(h, DATA);

	(void)state;
	xh_set_reg(h, X86_RAX, 0x1122334455667788ULL);
	xh_set_reg(h, X86_RBX, DATA);
	xh_run_ok(h, code, sizeof(code));
	assert_int_equal(xh_reg(h, X86_RCX), 0x1122334455667788ULL);
	assert_int_equal(*(uint32_t *)m, 0xab000000U);
	assert_int_equal(*(uint16_t *)(m + 4), 0xbeef);
	assert_int_equal(*(uint64_t *)(m + 16), 0xfffffffffffffffeULL);
	assert_int_equal(xh_reg(h, X86_RDX), 0xab);
	assert_int_equal(xh_reg(h, X86_RSI), 0xffffffffffffbeefULL);
	assert_int_equal(xh_reg(h, X86_RDI), 0xfffffffffffffffeULL);
	assert_int_equal(xh_reg(h, X86_RAX), 0x112233445566ab88ULL);
	xh_free(h);
}

static void test_mov_moffs_and_rip_relative_address_right(void **state)
{
	static const uint8_t code[] = {
		/* mov rax, [0x300010] */
		0x48,
		0xa1,
		0x10,
		0x00,
		0x30,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		/* mov [0x300018], eax */
		0xa3,
		0x18,
		0x00,
		0x30,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		/* mov eax, [0x300020] with a 32-bit moffs (67) */
		0x67,
		0xa1,
		0x20,
		0x00,
		0x30,
		0x00,
		/* mov al, [0x300011] */
		0xa0,
		0x11,
		0x00,
		0x30,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		/* lea rdx, [rip+0x100], run from XH_CODE + 15 */
		0x48,
		0x8d,
		0x15,
		0x00,
		0x01,
		0x00,
		0x00,
		/* mov rsi, fs:[0x10] */
		0x64,
		0x48,
		0x8b,
		0x34,
		0x25,
		0x10,
		0x00,
		0x00,
		0x00,
	};
	struct xh *h = xh_new();
	struct x86_sregs s;

	(void)state;
	*(uint64_t *)xh_ptr(h, DATA + 0x10) = 0x8877665544332211ULL;
	*(uint32_t *)xh_ptr(h, DATA + 0x20) = 0xcafef00d;
	*(uint64_t *)xh_ptr(h, DATA + 0x1010) = 0x5a5a5a5a5a5a5a5aULL;
	x86_get_sregs(h->cpu, &s);
	s.seg[X86_FS].base = DATA + 0x1000;
	x86_set_sregs(h->cpu, &s);
	xh_run_ok(h, code, 19); /* the first two */
	assert_int_equal(*(uint32_t *)xh_ptr(h, DATA + 0x18), 0x44332211);
	xh_run_ok(h, code + 19, sizeof(code) - 19);
	assert_int_equal(xh_reg(h, X86_RAX), 0xcafef022);
	assert_int_equal(xh_reg(h, X86_RDX), XH_CODE + 6 + 9 + 7 + 0x100);
	assert_int_equal(xh_reg(h, X86_RSI), 0x5a5a5a5a5a5a5a5aULL);
	xh_free(h);
}

static void test_mov_push_pop_stack_contents(void **state)
{
	static const uint8_t code[] = {
		0x50, /* push rax */
		0x41, 0x54, /* push r12 */
		0x6a, 0x80, /* push -0x80 */
		0x68, 0x78, 0x56, 0x34, 0x12, /* push 0x12345678 */
		0xff, 0x33, /* push qword [rbx] */
		0x54, /* push rsp */
		0x66, 0x50, /* push ax */
		0x66, 0x5a, /* pop dx */
		0x59, /* pop rcx (the pushed rsp) */
		0x8f, 0x43, 0x08, /* pop qword [rbx+8] */
		0x41, 0x5d, /* pop r13 */
	};
	struct xh *h = xh_new();
	uint64_t top = XH_STACK_TOP;
	uint64_t *stk = xh_ptr(h, top - 64);

	(void)state;
	xh_set_reg(h, X86_RAX, 0xaaaaaaaaaaaa1234ULL);
	xh_set_reg(h, X86_R12, 0xc12c12c12c12c12cULL);
	xh_set_reg(h, X86_RBX, DATA);
	*(uint64_t *)xh_ptr(h, DATA) = 0xd00dd00dd00dd00dULL;
	xh_run_ok(h, code, sizeof(code));
	/* stk[7] = rax, [6] = r12, [5] = -0x80, [4] = imm32, [3] = [rbx],
	 * [2] = rsp before its push = top - 40. */
	assert_int_equal(stk[7], 0xaaaaaaaaaaaa1234ULL);
	assert_int_equal(stk[6], 0xc12c12c12c12c12cULL);
	assert_int_equal(stk[5], 0xffffffffffffff80ULL);
	assert_int_equal(stk[4], 0x12345678);
	assert_int_equal(stk[3], 0xd00dd00dd00dd00dULL);
	assert_int_equal(stk[2], top - 40);
	assert_int_equal(xh_reg(h, X86_RDX) & 0xffff, 0x1234);
	assert_int_equal(xh_reg(h, X86_RCX), top - 40);
	assert_int_equal(*(uint64_t *)xh_ptr(h, DATA + 8),
			 0xd00dd00dd00dd00dULL);
	assert_int_equal(xh_reg(h, X86_R13), 0x12345678);
	assert_int_equal(xh_reg(h, X86_RSP), top - 24);
	xh_free(h);
}

static void test_mov_pop_rsp_and_pop_to_rsp_based_memory(void **state)
{
	static const uint8_t code[] = {
		0x6a, 0x11, /* push 0x11 */
		0x6a, 0x22, /* push 0x22 */
		0x8f, 0x44, 0x24, 0x00, /* pop qword [rsp+0] (rsp after pop) */
		0x5c, /* pop rsp */
	};
	struct xh *h = xh_new();

	(void)state;
	xh_run_ok(h, code, sizeof(code));
	/* POP [RSP] computes the address after the increment, so 0x22
	 * overwrites 0x11; POP RSP then loads that 0x22. */
	assert_int_equal(xh_reg(h, X86_RSP), 0x22);
	xh_free(h);
}

static void test_mov_lock_cmpxchg_memory_success_and_failure(void **state)
{
	static const uint8_t code[] = {
		0xf0, 0x48, 0x0f, 0xb1, 0x0b, /* lock cmpxchg [rbx], rcx */
	};
	struct xh *h = xh_new();
	uint64_t *m = xh_ptr(h, DATA);

	(void)state;
	*m = 5;
	xh_set_reg(h, X86_RBX, DATA);
	xh_set_reg(h, X86_RAX, 5);
	xh_set_reg(h, X86_RCX, 9);
	xh_run_ok(h, code, sizeof(code));
	assert_int_equal(*m, 9);
	assert_int_equal(xh_reg(h, X86_RAX), 5);
	assert_true(xh_rflags(h) & X86_RFLAGS_ZF);

	xh_set_reg(h, X86_RAX, 5);
	xh_run_ok(h, code, sizeof(code));
	assert_int_equal(*m, 9);
	assert_int_equal(xh_reg(h, X86_RAX), 9);
	assert_false(xh_rflags(h) & X86_RFLAGS_ZF);
	assert_true(xh_rflags(h) & X86_RFLAGS_CF); /* 5 - 9 borrows */
	xh_free(h);
}

static void test_mov_cmpxchg_failure_still_writes_memory(void **state)
{
	/* SDM: the destination gets a write cycle whatever the outcome,
	 * so a read-only page faults even when the comparison fails. */
	static const uint8_t code[] = { 0x0f, 0xb1, 0x0b }; /* [rbx], ecx */
	struct xh *h = xh_new();
	struct x86_exit exit;

	(void)state;
	*(uint32_t *)xh_ptr(h, DATA) = 1;
	xh_set_reg(h, X86_RBX, DATA);
	xh_set_reg(h, X86_RAX, 2);
	xh_set_page(h, DATA, X86_PTE_P | X86_PTE_U);
	assert_int_equal(xh_run_at(h, code, sizeof(code), &exit),
			 X86_EXIT_SHADOW_FAULT);
	assert_true(exit.fault.access & X86_ACC_WRITE);
	assert_int_equal(xh_reg(h, X86_RAX), 2);
	assert_int_equal(xh_rip(h), XH_CODE);
	xh_free(h);
}

/* A store that splits two pages must not change the first when the
 * second faults: both are translated before any byte is written, and the
 * instruction restarts whole after the MMU has run. */
static void test_mov_split_store_second_page_faults_writes_nothing(void **state)
{
	static const uint8_t code[] = { 0x48, 0x89, 0x03 }; /* [rbx], rax */
	struct xh *h = xh_new();
	struct x86_exit exit;
	uint8_t *m = xh_ptr(h, DATA + 4096 - 4);

	(void)state;
	memset(m, 0x5a, 8);
	xh_set_reg(h, X86_RBX, DATA + 4096 - 4);
	xh_set_reg(h, X86_RAX, 0x1122334455667788ULL);
	xh_set_page(h, DATA + 4096, 0);
	assert_int_equal(xh_run_at(h, code, sizeof(code), &exit),
			 X86_EXIT_SHADOW_FAULT);
	assert_int_equal(exit.fault.gva & ~0xfffULL, DATA + 4096);
	for (unsigned int i = 0; i < 4; i++)
		assert_int_equal(m[i], 0x5a);
	assert_int_equal(xh_rip(h), XH_CODE);
	xh_free(h);
}

static void test_mov_xchg_and_xadd_memory_exchange(void **state)
{
	static const uint8_t code[] = {
		0x48, 0x87, 0x0b, /* xchg [rbx], rcx */
		0xf0, 0x48, 0x0f, 0xc1, 0x53, 0x08, /* lock xadd [rbx+8], rdx */
		0x40, 0x0f, 0xc0, 0x73, 0x10, /* xadd [rbx+16], sil */
		0x86, 0x63, 0x18, /* xchg [rbx+24], ah */
	};
	struct xh *h = xh_new();
	uint64_t *m = xh_ptr(h, DATA);

	(void)state;
	m[0] = 0x1111;
	m[1] = 0xfffffffffffffff0ULL;
	m[2] = 0x80;
	m[3] = 0x77;
	xh_set_reg(h, X86_RBX, DATA);
	xh_set_reg(h, X86_RCX, 0x2222);
	xh_set_reg(h, X86_RDX, 0x20);
	xh_set_reg(h, X86_RSI, 0x80);
	xh_set_reg(h, X86_RAX, 0x3300);
	xh_run_ok(h, code, sizeof(code));
	assert_int_equal(m[0], 0x2222);
	assert_int_equal(xh_reg(h, X86_RCX), 0x1111);
	assert_int_equal(m[1], 0x10);
	assert_int_equal(xh_reg(h, X86_RDX), 0xfffffffffffffff0ULL);
	assert_int_equal(m[2], 0x00); /* 0x80 + 0x80 at byte size */
	assert_int_equal(xh_reg(h, X86_RSI), 0x80);
	assert_true(xh_rflags(h) & X86_RFLAGS_CF);
	assert_true(xh_rflags(h) & X86_RFLAGS_OF);
	assert_int_equal(m[3], 0x33);
	assert_int_equal(xh_reg(h, X86_RAX), 0x7700);
	xh_free(h);
}

static void test_mov_cmpxchg8b_16b_compare_and_zero_extend(void **state)
{
	static const uint8_t c8[] = { 0xf0, 0x0f, 0xc7, 0x0b };
	static const uint8_t c16[] = { 0xf0, 0x48, 0x0f, 0xc7, 0x0b };
	struct xh *h = xh_new();
	uint64_t *m = xh_ptr(h, DATA);

	(void)state;
	xh_set_reg(h, X86_RBX, DATA);
	/* CMPXCHG8B failing: EDX:EAX loaded, upper halves cleared. */
	m[0] = 0x7766554433221100ULL;
	xh_set_reg(h, X86_RAX, 0xaaaaaaaaaaaaaaaaULL);
	xh_set_reg(h, X86_RDX, 0xddddddddddddddddULL);
	xh_run_ok(h, c8, sizeof(c8));
	assert_int_equal(xh_reg(h, X86_RAX), 0x33221100);
	assert_int_equal(xh_reg(h, X86_RDX), 0x77665544);
	assert_false(xh_rflags(h) & X86_RFLAGS_ZF);
	/* Succeeding: ECX:EBX stored; RAX/RDX untouched. */
	xh_set_reg(h, X86_RAX, 0xffffffff33221100ULL);
	xh_set_reg(h, X86_RDX, 0xffffffff77665544ULL);
	xh_set_reg(h, X86_RCX, 0x12345678);
	xh_set_reg(h, X86_RBX, DATA); /* EBX is the low half stored */
	xh_run_ok(h, c8, sizeof(c8));
	assert_true(xh_rflags(h) & X86_RFLAGS_ZF);
	assert_int_equal(m[0], 0x1234567800000000ULL | DATA);
	assert_int_equal(xh_reg(h, X86_RAX), 0xffffffff33221100ULL);

	/* CMPXCHG16B at DATA + 16. */
	xh_set_reg(h, X86_RBX, DATA + 16);
	m[2] = 1;
	m[3] = 2;
	xh_set_reg(h, X86_RAX, 1);
	xh_set_reg(h, X86_RDX, 2);
	xh_set_reg(h, X86_RCX, 0xc0c0);
	xh_run_ok(h, c16, sizeof(c16));
	assert_true(xh_rflags(h) & X86_RFLAGS_ZF);
	assert_int_equal(m[2], DATA + 16);
	assert_int_equal(m[3], 0xc0c0);
	xh_set_reg(h, X86_RAX, 0);
	xh_run_ok(h, c16, sizeof(c16));
	assert_false(xh_rflags(h) & X86_RFLAGS_ZF);
	assert_int_equal(xh_reg(h, X86_RAX), DATA + 16);
	assert_int_equal(xh_reg(h, X86_RDX), 0xc0c0);
	xh_free(h);
}

static void test_mov_cmpxchg16b_misaligned_gp(void **state)
{
	static const uint8_t c16[] = { 0x48, 0x0f, 0xc7, 0x0b };
	struct xh *h = xh_new();

	(void)state;
	xh_set_reg(h, X86_RBX, DATA + 8);
	xh_expect_fault(h, c16, sizeof(c16), X86_GP);
	assert_int_equal(xh_reg(h, X86_RBX), DATA + 8);
	xh_free(h);
}

static void test_mov_lea_register_form_ud(void **state)
{
	static const uint8_t lea[] = { 0x48, 0x8d, 0xc0 };
	struct xh *h = xh_new();

	(void)state;
	xh_expect_fault(h, lea, sizeof(lea), X86_UD);
	xh_free(h);
}

static void test_mov_lock_on_register_form_ud(void **state)
{
	static const uint8_t code[] = { 0xf0, 0x0f, 0xb1, 0xd1 };
	struct xh *h = xh_new();

	(void)state;
	xh_expect_fault(h, code, sizeof(code), X86_UD);
	xh_free(h);
}

static void test_mov_noncanonical_gp_or_ss(void **state)
{
	static const uint8_t viarbx[] = { 0x48, 0x8b, 0x03 };
	static const uint8_t viarbp[] = { 0x48, 0x8b, 0x45, 0x00 };
	struct xh *h = xh_new();

	(void)state;
	xh_set_reg(h, X86_RBX, 0x0000800000000000ULL);
	xh_set_reg(h, X86_RAX, 7);
	xh_expect_fault(h, viarbx, sizeof(viarbx), X86_GP);
	assert_int_equal(xh_reg(h, X86_RAX), 7);
	xh_free(h);

	h = xh_new();
	xh_set_reg(h, X86_RBP, 0xffff7fffffffff00ULL);
	xh_expect_fault(h, viarbp, sizeof(viarbp), X86_SSF);
	xh_free(h);
}

static void test_mov_unmapped_page_shadow_fault_no_change(void **state)
{
	static const uint8_t code[] = {
		0x48, 0x89, 0x43, 0x08, /* mov [rbx+8], rax */
		0x8f, 0x01, /* pop qword [rcx] */
	};
	struct xh *h = xh_new();
	struct x86_exit exit;

	(void)state;
	xh_set_reg(h, X86_RBX, DATA);
	xh_set_reg(h, X86_RAX, 0x99);
	xh_set_page(h, DATA, 0);
	assert_int_equal(xh_run_at(h, code, sizeof(code), &exit),
			 X86_EXIT_SHADOW_FAULT);
	assert_int_equal(exit.fault.gva, DATA + 8);
	assert_int_equal(xh_rip(h), XH_CODE);
	assert_int_equal(*(uint64_t *)xh_ptr(h, DATA + 8), 0);

	/* The MMU fixes the page: the MOV retires; then make POP's
	 * destination fault: RSP must not move. */
	xh_set_page(h, DATA, X86_PTE_P | X86_PTE_W | X86_PTE_U);
	xh_set_reg(h, X86_RCX, DATA + 0x1000);
	xh_set_page(h, DATA + 0x1000, 0);
	assert_int_equal(xh_run_at(h, code, sizeof(code), &exit),
			 X86_EXIT_SHADOW_FAULT);
	assert_int_equal(exit.fault.gva, DATA + 0x1000);
	assert_int_equal(xh_rip(h), XH_CODE + 4);
	assert_int_equal(xh_reg(h, X86_RSP), XH_STACK_TOP);
	xh_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mov_register_forms_match_host),
		cmocka_unit_test(test_mov_memory_forms_match_host),
		cmocka_unit_test(test_mov_memory_forms_store_and_load),
		cmocka_unit_test(test_mov_moffs_and_rip_relative_address_right),
		cmocka_unit_test(test_mov_push_pop_stack_contents),
		cmocka_unit_test(test_mov_pop_rsp_and_pop_to_rsp_based_memory),
		cmocka_unit_test(
			test_mov_lock_cmpxchg_memory_success_and_failure),
		cmocka_unit_test(test_mov_cmpxchg_failure_still_writes_memory),
		cmocka_unit_test(
			test_mov_split_store_second_page_faults_writes_nothing),
		cmocka_unit_test(test_mov_xchg_and_xadd_memory_exchange),
		cmocka_unit_test(
			test_mov_cmpxchg8b_16b_compare_and_zero_extend),
		cmocka_unit_test(test_mov_cmpxchg16b_misaligned_gp),
		cmocka_unit_test(test_mov_lea_register_form_ud),
		cmocka_unit_test(test_mov_lock_on_register_form_ud),
		cmocka_unit_test(test_mov_noncanonical_gp_or_ss),
		cmocka_unit_test(test_mov_unmapped_page_shadow_fault_no_change),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
