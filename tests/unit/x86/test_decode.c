/*
 * Decoder tests: lengths and operand fields of encodings that exercise
 * every part of the format (legacy prefixes, REX and its cancellation,
 * ModRM/SIB with every displacement size, RIP-relative and no-base SIB
 * forms, 0x67, FS/GS overrides, every immediate kind), and the faults
 * the decoder itself raises (#UD for undefined opcodes and misplaced
 * LOCK, #GP beyond 15 bytes), seen as the first vector of the triple
 * fault a CPU with no IDT ends in. Also the decoded-block cache: code
 * changed by a store in the running block, or behind the CPU's back, runs
 * as changed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "x86_int.h"

/* One decoder case: the fields of struct x86_insn the bytes must give.
 * ANY skips a field; rm is checked for a register operand only, base,
 * index, scale, seg and disp for a memory operand only, imm when it is
 * not 0. */
struct want {
	const char *name;
	uint8_t bytes[16];
	unsigned int nbytes;
	int len, opsize, addrsize;
	bool mem;
	int reg, rm, base, index, scale, seg;
	int64_t disp;
	uint64_t imm;
	bool lock;
};

#define NONE X86_NO_REG
#define ANY -1

static void decode_one(struct xh *h, const uint8_t *bytes, unsigned int n,
		       struct x86_insn *in)
{
	struct x86_regs r;
	struct x86_exit exit;

	xh_load(h, XH_CODE, bytes, n);
	x86_get_regs(h->cpu, &r);
	r.rip = XH_CODE;
	x86_set_regs(h->cpu, &r);
	h->cpu->exit = &exit;
	if (setjmp(h->cpu->abort))
		fail_msg("decoding faulted or exited (reason %d)", exit.reason);
	x86_decode(h->cpu, in, NULL);
}

static void test_decode_encodings_fields_match(void **state)
{
	static const struct want cases[] = {
		{ .name = "mov rax, rbx",
		  .bytes = { 0x48, 0x89, 0xd8 },
		  .nbytes = 3,
		  .len = 3,
		  .opsize = 8,
		  .addrsize = 8,
		  .reg = 3,
		  .rm = 0 },
		{ .name = "mov [rsp+8], eax",
		  .bytes = { 0x89, 0x44, 0x24, 0x08 },
		  .nbytes = 4,
		  .len = 4,
		  .opsize = 4,
		  .addrsize = 8,
		  .mem = true,
		  .reg = 0,
		  .base = X86_RSP,
		  .index = NONE,
		  .scale = 0,
		  .seg = X86_SS,
		  .disp = 8 },
		{ .name = "mov rax, [rip+0x1234]",
		  .bytes = { 0x48, 0x8b, 0x05, 0x34, 0x12, 0, 0 },
		  .nbytes = 7,
		  .len = 7,
		  .opsize = 8,
		  .addrsize = 8,
		  .mem = true,
		  .reg = 0,
		  .base = X86_RIP_BASE,
		  .index = NONE,
		  .scale = 0,
		  .seg = X86_DS,
		  .disp = 0x1234 },
		{ .name = "mov r8, [rax+rcx*8]",
		  .bytes = { 0x4c, 0x8b, 0x04, 0xc8 },
		  .nbytes = 4,
		  .len = 4,
		  .opsize = 8,
		  .addrsize = 8,
		  .mem = true,
		  .reg = 8,
		  .base = X86_RAX,
		  .index = X86_RCX,
		  .scale = 3,
		  .seg = X86_DS,
		  .disp = 0 },
		{ .name = "mov eax, [r12*1+0x1000] (SIB, no base)",
		  .bytes = { 0x42, 0x8b, 0x04, 0x25, 0x00, 0x10, 0, 0 },
		  .nbytes = 8,
		  .len = 8,
		  .opsize = 4,
		  .addrsize = 8,
		  .mem = true,
		  .reg = 0,
		  .base = NONE,
		  .index = X86_R12,
		  .scale = 0,
		  .seg = X86_DS,
		  .disp = 0x1000 },
		{ .name = "mov eax, [rbp-4] (disp8)",
		  .bytes = { 0x8b, 0x45, 0xfc },
		  .nbytes = 3,
		  .len = 3,
		  .opsize = 4,
		  .addrsize = 8,
		  .mem = true,
		  .reg = 0,
		  .base = X86_RBP,
		  .index = NONE,
		  .scale = 0,
		  .seg = X86_SS,
		  .disp = -4 },
		{ .name = "mov eax, [r13+0x12345678] (disp32, DS)",
		  .bytes = { 0x41, 0x8b, 0x85, 0x78, 0x56, 0x34, 0x12 },
		  .nbytes = 7,
		  .len = 7,
		  .opsize = 4,
		  .addrsize = 8,
		  .mem = true,
		  .reg = 0,
		  .base = X86_R13,
		  .index = NONE,
		  .scale = 0,
		  .seg = X86_DS,
		  .disp = 0x12345678 },
		{ .name = "mov r8w, 0x1234",
		  .bytes = { 0x66, 0x41, 0xc7, 0xc0, 0x34, 0x12 },
		  .nbytes = 6,
		  .len = 6,
		  .opsize = 2,
		  .addrsize = 8,
		  .reg = ANY,
		  .rm = 8,
		  .imm = 0x1234 },
		{ .name = "mov rax, imm64",
		  .bytes = { 0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8 },
		  .nbytes = 10,
		  .len = 10,
		  .opsize = 8,
		  .addrsize = 8,
		  .reg = 0,
		  .rm = ANY,
		  .imm = 0x0807060504030201ULL },
		{ .name = "add rsp, -8 (imm8 sign-extended)",
		  .bytes = { 0x48, 0x83, 0xc4, 0xf8 },
		  .nbytes = 4,
		  .len = 4,
		  .opsize = 8,
		  .addrsize = 8,
		  .reg = ANY,
		  .rm = X86_RSP,
		  .imm = (uint64_t)-8 },
		{ .name = "mov eax, [eax] (0x67)",
		  .bytes = { 0x67, 0x8b, 0x00 },
		  .nbytes = 3,
		  .len = 3,
		  .opsize = 4,
		  .addrsize = 4,
		  .mem = true,
		  .reg = 0,
		  .base = X86_RAX,
		  .index = NONE,
		  .scale = 0,
		  .seg = X86_DS,
		  .disp = 0 },
		{ .name = "mov rax, fs:[0x28]",
		  .bytes = { 0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0 },
		  .nbytes = 9,
		  .len = 9,
		  .opsize = 8,
		  .addrsize = 8,
		  .mem = true,
		  .reg = 0,
		  .base = NONE,
		  .index = NONE,
		  .scale = 0,
		  .seg = X86_FS,
		  .disp = 0x28 },
		{ .name = "lock cmpxchg [rdx], rcx",
		  .bytes = { 0xf0, 0x48, 0x0f, 0xb1, 0x0a },
		  .nbytes = 5,
		  .len = 5,
		  .opsize = 8,
		  .addrsize = 8,
		  .mem = true,
		  .reg = 1,
		  .base = X86_RDX,
		  .index = NONE,
		  .scale = 0,
		  .seg = X86_DS,
		  .disp = 0,
		  .lock = true },
		{ .name = "REX before 66 is ignored",
		  .bytes = { 0x48, 0x66, 0x89, 0xc0 },
		  .nbytes = 4,
		  .len = 4,
		  .opsize = 2,
		  .addrsize = 8,
		  .reg = 0,
		  .rm = 0 },
		{ .name = "nop dword [rax+rax]",
		  .bytes = { 0x0f, 0x1f, 0x44, 0x00, 0x00 },
		  .nbytes = 5,
		  .len = 5,
		  .opsize = 4,
		  .addrsize = 8,
		  .mem = true,
		  .reg = 0,
		  .base = X86_RAX,
		  .index = X86_RAX,
		  .scale = 0,
		  .seg = X86_DS,
		  .disp = 0 },
		{ .name = "push rbp (64-bit default)",
		  .bytes = { 0x55 },
		  .nbytes = 1,
		  .len = 1,
		  .opsize = 8,
		  .addrsize = 8,
		  .reg = X86_RBP,
		  .rm = ANY },
		{ .name = "push r12 (REX.B + opcode register)",
		  .bytes = { 0x41, 0x54 },
		  .nbytes = 2,
		  .len = 2,
		  .opsize = 8,
		  .addrsize = 8,
		  .reg = X86_R12,
		  .rm = ANY },
		{ .name = "jne rel32",
		  .bytes = { 0x0f, 0x85, 0x10, 0, 0, 0 },
		  .nbytes = 6,
		  .len = 6,
		  .opsize = ANY,
		  .addrsize = 8,
		  .reg = ANY,
		  .rm = ANY,
		  .imm = 0x10 },
	};
	struct xh *h = xh_new();

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct want *w = &cases[i];
		struct x86_insn in;

		decode_one(h, w->bytes, w->nbytes, &in);
#define CHECK(field, want)                                               \
	do {                                                             \
		if ((int64_t)(want) != ANY &&                            \
		    (int64_t)(in.field) != (int64_t)(want))              \
			fail_msg("%s: " #field " = %lld, expected %lld", \
				 w->name, (long long)(in.field),         \
				 (long long)(want));                     \
	} while (0)
		CHECK(len, w->len);
		CHECK(opsize, w->opsize);
		CHECK(addrsize, w->addrsize);
		CHECK(mem, w->mem);
		CHECK(reg, w->reg);
		CHECK(lock, w->lock);
		if (w->mem) {
			CHECK(base, w->base);
			CHECK(index, w->index);
			CHECK(scale, w->scale);
			CHECK(seg, w->seg);
			CHECK(disp, w->disp);
		} else {
			CHECK(rm, w->rm);
		}
		if (w->imm)
			CHECK(imm, w->imm);
#undef CHECK
	}
	xh_free(h);
}

/* With IDT limit 0 (the boot state), any exception ends in a triple
 * fault whose chain starts with the decoder's vector (within two
 * instructions). */
static unsigned int first_vector(const uint8_t *bytes, unsigned int n)
{
	struct xh *h = xh_new();
	struct x86_exit exit;
	struct x86_regs r;
	enum x86_exit_reason reason;

	xh_load(h, XH_CODE, bytes, n);
	x86_get_regs(h->cpu, &r);
	r.rip = XH_CODE;
	x86_set_regs(h->cpu, &r);
	reason = xh_run(h, 2, &exit);
	xh_free(h);
	if (reason != X86_EXIT_TRIPLE_FAULT)
		fail_msg("exit %d, expected a triple fault", reason);
	return exit.triple.vectors[0];
}

static void test_decode_undefined_opcodes_ud(void **state)
{
	static const uint8_t push_es[] = { 0x06 }, salc[] = { 0xd6 },
			     ud2[] = { 0x0f, 0x0b };

	(void)state;
	assert_int_equal(first_vector(push_es, 1), X86_UD);
	assert_int_equal(first_vector(salc, 1), X86_UD);
	assert_int_equal(first_vector(ud2, 2), X86_UD);
}

static void test_decode_lock_on_register_form_ud(void **state)
{
	static const uint8_t lock_add_reg[] = { 0xf0, 0x01, 0xc0 };
	static const uint8_t lock_mov[] = { 0xf0, 0x89, 0x00 };

	(void)state;
	assert_int_equal(first_vector(lock_add_reg, 3), X86_UD);
	assert_int_equal(first_vector(lock_mov, 3), X86_UD);
}

static void test_decode_longer_than_15_bytes_gp(void **state)
{
	uint8_t b[16];

	(void)state;
	memset(b, 0x66, 15);
	b[15] = 0x90;
	assert_int_equal(first_vector(b, 16), X86_GP);
	/* Exactly 15 bytes is fine: 14 prefixes and a NOP. */
	memset(b, 0x66, 14);
	b[14] = 0x90;
	b[15] = 0x06;
	assert_int_equal(first_vector(b, 16), X86_UD);
}

/* A store into the block being run (self-modifying code a few bytes
 * ahead): the next instruction must run as stored (SDM vol. 3, 8.1.3). */
static void test_decode_store_into_running_block_runs_new_code(void **state)
{
	static const uint8_t code[] = {
		0xc6, 0x05, 0x01, 0x00, 0x00, 0x00, 0x05, /* mov [rip+1], 5 */
		0xb0, 0x01, /* mov al, 1 -> becomes mov al, 5 */
		0x90, /* nop */
	};
	struct xh *h = xh_new();
	struct x86_regs r;

	(void)state;
	assert_int_equal(xh_run_code(h, code, sizeof(code)), 0);
	x86_get_regs(h->cpu, &r);
	assert_int_equal(r.gpr[X86_RAX] & 0xff, 5);
	xh_free(h);
}

/* Bytes changed behind the CPU's back (another vCPU, the host) between
 * two runs of the same cached code: the second run decodes them anew. */
static void test_decode_changed_bytes_redecoded(void **state)
{
	uint8_t code[] = { 0xb8, 0x11, 0x00, 0x00, 0x00, 0x90 }; /* mov eax */
	struct xh *h = xh_new();
	struct x86_regs r;

	(void)state;
	assert_int_equal(xh_run_code(h, code, sizeof(code)), 0);
	x86_get_regs(h->cpu, &r);
	assert_int_equal(r.gpr[X86_RAX], 0x11);
	code[1] = 0x22;
	assert_int_equal(xh_run_code(h, code, sizeof(code)), 0);
	x86_get_regs(h->cpu, &r);
	assert_int_equal(r.gpr[X86_RAX], 0x22);
	/* A different length at the same address: mov ax, imm16; nop. */
	code[0] = 0x66;
	code[1] = 0xb8;
	code[2] = 0x33;
	code[3] = 0x00;
	code[4] = 0x90;
	assert_int_equal(xh_run_code(h, code, 5), 0);
	x86_get_regs(h->cpu, &r);
	assert_int_equal(r.gpr[X86_RAX], 0x33);
	xh_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_encodings_fields_match),
		cmocka_unit_test(test_decode_undefined_opcodes_ud),
		cmocka_unit_test(test_decode_lock_on_register_form_ud),
		cmocka_unit_test(test_decode_longer_than_15_bytes_gp),
		cmocka_unit_test(
			test_decode_store_into_running_block_runs_new_code),
		cmocka_unit_test(test_decode_changed_bytes_redecoded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
