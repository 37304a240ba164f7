/*
 * Tests of the decoded-block cache of the run loop (cpu.c; its contract
 * is in internal/x86_int.h, "the decoded-block cache"): it holds
 * thousands of blocks at once, a block whose guest bytes changed (stored
 * by another agent, or by the block itself) is never run stale, a pool
 * that fills up is dropped and refilled without changing what runs, and
 * the counters x86_cpu_stats_get() publishes say what happened; and the
 * specialised handlers of fast.c (with dead flags dropped and flag
 * writers fused with their Jcc) leave exactly the state the generic
 * handlers leave.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "rng.h"
#include "x86_int.h"

#define BLOCK 16 /* bytes of one chain block */

/*
 * n blocks at XH_CODE: INC RAX; ADD RBX, RAX; JMP to the next block
 * (8 bytes of INT3 between), then xh_place_code()'s HLT. Returns the
 * code's length.
 */
static size_t place_chain(struct xh *h, unsigned int n)
{
	static const uint8_t blk[BLOCK] = {
		0x48, 0xff, 0xc0, /* inc rax */
		0x48, 0x01, 0xc3, /* add rbx, rax */
		0xeb, 0x08, /* jmp +8 */
		0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc,
	};
	uint8_t *code = malloc((size_t)n * BLOCK);

	assert_non_null(code);
	for (unsigned int i = 0; i < n; i++)
		memcpy(code + (size_t)i * BLOCK, blk, BLOCK);
	xh_place_code(h, code, (size_t)n * BLOCK);
	free(code);
	return (size_t)n * BLOCK;
}

/* Runs the chain from XH_CODE to its HLT and checks what it computed. */
static void run_chain(struct xh *h, unsigned int n, size_t len)
{
	struct x86_exit exit;
	struct x86_regs r;
	uint64_t before = x86_insns_retired(h->cpu);

	x86_get_regs(h->cpu, &r);
	r.rip = XH_CODE;
	r.gpr[X86_RAX] = 0;
	r.gpr[X86_RBX] = 0;
	x86_set_regs(h->cpu, &r);
	assert_int_equal(xh_run(h, 0, &exit), X86_EXIT_HLT);
	assert_int_equal(xh_rip(h), XH_CODE + len + 1);
	assert_int_equal(xh_reg(h, X86_RAX), n);
	assert_int_equal(xh_reg(h, X86_RBX), (uint64_t)n * (n + 1) / 2);
	assert_int_equal(x86_insns_retired(h->cpu) - before, 3ULL * n + 1);
}

static void test_bcache_holds_thousands_of_blocks(void **state)
{
	const unsigned int n = 12000;
	struct xh *h = xh_new();
	struct x86_cpu_stats s0, s1;
	size_t len;

	(void)state;
	len = place_chain(h, n);
	run_chain(h, n, len);
	x86_cpu_stats_get(h->cpu, &s0);
	assert_true(s0.cache_misses >= n);
	/* The second pass finds every block decoded. */
	run_chain(h, n, len);
	x86_cpu_stats_get(h->cpu, &s1);
	if (s1.cache_misses - s0.cache_misses > n / 100)
		fail_msg(
			"second pass over %u blocks: %llu misses, %llu hits", n,
			(unsigned long long)(s1.cache_misses - s0.cache_misses),
			(unsigned long long)(s1.cache_hits - s0.cache_hits));
	assert_true(s1.cache_hits - s0.cache_hits >= n - n / 100);
	assert_true(s1.blocks - s0.blocks >= n);
	assert_int_equal(s1.flushes, 0);
	xh_free(h);
}

static void test_bcache_pool_full_flushes_and_refills(void **state)
{
	/* More blocks than the pool holds (each takes its header and
	 * three decoded instructions). */
	const unsigned int n = X86_BPOOL_BYTES / (sizeof(struct x86_block) +
						  3 * sizeof(struct x86_insn)) +
			       1000;
	struct xh *h = xh_new();
	struct x86_cpu_stats s;
	size_t len;

	(void)state;
	len = place_chain(h, n);
	run_chain(h, n, len);
	run_chain(h, n, len);
	x86_cpu_stats_get(h->cpu, &s);
	if (s.flushes == 0)
		fail_msg("%u blocks ran twice in a pool of %u bytes and it "
			 "was never flushed (%llu bytes in use)",
			 n, X86_BPOOL_BYTES, (unsigned long long)s.pool_bytes);
	assert_true(s.pool_bytes <= X86_BPOOL_BYTES);
	xh_free(h);
}

/* A block found as the last block's successor is checked like any
 * other: its bytes changed, the new code runs. */
static void test_bcache_successor_rechecked(void **state)
{
	static const uint8_t dec_rax[3] = { 0x48, 0xff, 0xc8 };
	struct xh *h = xh_new();
	struct x86_cpu_stats s0, s1;
	struct x86_exit exit;
	struct x86_regs r;
	size_t len;

	(void)state;
	len = place_chain(h, 3);
	run_chain(h, 3, len);
	x86_cpu_stats_get(h->cpu, &s0);
	run_chain(h, 3, len);
	x86_cpu_stats_get(h->cpu, &s1);
	assert_true(s1.chain_hits - s0.chain_hits >= 2);
	/* Block 1's INC RAX becomes DEC RAX, same length. */
	xh_load(h, XH_CODE + BLOCK, dec_rax, sizeof(dec_rax));
	x86_get_regs(h->cpu, &r);
	r.rip = XH_CODE;
	r.gpr[X86_RAX] = 0;
	r.gpr[X86_RBX] = 0;
	x86_set_regs(h->cpu, &r);
	assert_int_equal(xh_run(h, 0, &exit), X86_EXIT_HLT);
	if (xh_reg(h, X86_RAX) != 1 || xh_reg(h, X86_RBX) != 2)
		fail_msg("block 1 was rewritten to DEC RAX but RAX = %llu, "
			 "RBX = %llu (want 1 and 2): its successor entry ran "
			 "the old decoding",
			 (unsigned long long)xh_reg(h, X86_RAX),
			 (unsigned long long)xh_reg(h, X86_RBX));
	xh_free(h);
}

/* The guest bytes of a cached block change behind the CPU's back (a
 * store by another vCPU, a device, a QMP write): the next entry must run
 * the new code. */
static void test_bcache_bytes_changed_outside_rerun_new_code(void **state)
{
	/* mov eax, imm32 */
	uint8_t code[5] = { 0xb8, 1, 0, 0, 0 };
	struct xh *h = xh_new();
	struct x86_cpu_stats s0, s1;

	(void)state;
	xh_run_ok(h, code, sizeof(code));
	assert_int_equal(xh_reg(h, X86_RAX), 1);
	xh_run_ok(h, code, sizeof(code));
	x86_cpu_stats_get(h->cpu, &s0);
	for (uint32_t v = 2; v < 300; v++) {
		/* Only the immediate's bytes change, in place. */
		memcpy(code + 1, &v, 4);
		xh_run_ok(h, code, sizeof(code));
		if (xh_reg(h, X86_RAX) != v)
			fail_msg("after rewriting the immediate to %u the CPU "
				 "ran the old code: EAX = %llu",
				 v, (unsigned long long)xh_reg(h, X86_RAX));
	}
	x86_cpu_stats_get(h->cpu, &s1);
	assert_true(s1.cache_stale - s0.cache_stale >= 298);
	xh_free(h);
}

/* A block stores into itself, ahead of where it runs: the stored
 * instruction must run as stored (SDM vol. 3, 8.1.3), and the block ends
 * after the store. */
static void test_bcache_store_into_running_block(void **state)
{
	/*
	 * lea rdi, [rip + 7]      ; the MOV's immediate below
	 * mov dword [rdi], 0x42   ; 7 bytes
	 * mov eax, 0x11111111     ; rewritten to 0x42 before it runs
	 */
	static const uint8_t code[] = {
		0x48, 0x8d, 0x3d, 0x07, 0x00, 0x00, 0x00, /* lea rdi,[rip+7] */
		0xc7, 0x07, 0x42, 0x00, 0x00, 0x00, /* mov dword [rdi],0x42 */
		0xb8, 0x11, 0x11, 0x11, 0x11, /* mov eax, 0x11111111 */
	};
	struct xh *h = xh_new();
	struct x86_cpu_stats s0, s1;

	(void)state;
	/* lea's target: next_rip (XH_CODE + 7) + 7 = the MOV EAX's
	 * immediate at XH_CODE + 14. */
	for (int round = 0; round < 3; round++) {
		x86_cpu_stats_get(h->cpu, &s0);
		xh_run_ok(h, code, sizeof(code));
		x86_cpu_stats_get(h->cpu, &s1);
		if (xh_reg(h, X86_RAX) != 0x42)
			fail_msg("round %d: the block ran the MOV it had "
				 "decoded before its own store: EAX = %#llx",
				 round, (unsigned long long)xh_reg(h, X86_RAX));
		assert_true(s1.smc_breaks > s0.smc_breaks);
	}
	xh_free(h);
}

/*
 * A fault in the middle of a block run on the specialised handlers
 * reports the faulting instruction: RIP is its address, the instructions
 * before it have retired (and only they), the ones after have not run.
 */
static void test_bcache_fault_mid_block_is_precise(void **state)
{
	static const uint8_t code[] = {
		0xb8, 0x01, 0x00, 0x00, 0x00, /* mov eax, 1 */
		0x48, 0x83, 0xc3, 0x02, /* add rbx, 2 */
		0x48, 0x8b, 0x0e, /* mov rcx, [rsi]: rsi unmapped */
		0xba, 0x03, 0x00, 0x00, 0x00, /* mov edx, 3 */
	};
	const gva_t hole = 0x300000;
	struct xh *h = xh_new();
	struct x86_exit exit;
	struct x86_regs r;
	uint64_t before;

	(void)state;
	xh_set_page(h, hole, 0);
	for (int round = 0; round < 3; round++) {
		xh_place_code(h, code, sizeof(code));
		x86_get_regs(h->cpu, &r);
		memset(r.gpr, 0, sizeof(r.gpr));
		r.gpr[X86_RSP] = XH_STACK_TOP;
		r.gpr[X86_RSI] = hole + 8;
		r.rip = XH_CODE;
		x86_set_regs(h->cpu, &r);
		before = x86_insns_retired(h->cpu);
		assert_int_equal(x86_run(h->cpu, 0, &exit),
				 X86_EXIT_SHADOW_FAULT);
		if (xh_rip(h) != XH_CODE + 9 ||
		    x86_insns_retired(h->cpu) - before != 2)
			fail_msg(
				"round %d: the load at %#llx faulted with RIP "
				"%#llx and %llu instructions retired before it",
				round, (unsigned long long)XH_CODE + 9,
				(unsigned long long)xh_rip(h),
				(unsigned long long)(x86_insns_retired(h->cpu) -
						     before));
		assert_int_equal(exit.fault.gva, hole + 8);
		assert_int_equal(xh_reg(h, X86_RAX), 1);
		assert_int_equal(xh_reg(h, X86_RBX), 2);
		assert_int_equal(xh_reg(h, X86_RDX), 0);
	}
	xh_free(h);
}

/*
 * Flags written before a load that faults are live at the fault (the
 * exception frame holds them) even when a later instruction of the block
 * overwrites them all: the XOR's ZF must be in RFLAGS when the load
 * exits, not dropped as dead because the CMP after it writes every flag.
 */
static void test_bcache_flags_live_across_a_faulting_load(void **state)
{
	static const uint8_t code[] = {
		0x31, 0xc0, /* xor eax, eax: ZF = 1 */
		0x48, 0x8b, 0x0e, /* mov rcx, [rsi]: rsi unmapped */
		0x83, 0xfa, 0x05, /* cmp edx, 5: ZF = 0, CF = 1 */
		0x74, 0x00, /* jz +0 */
	};
	const gva_t hole = 0x300000;
	struct xh *h = xh_new();
	struct x86_exit exit;
	struct x86_regs r;

	(void)state;
	xh_set_page(h, hole, 0);
	for (int round = 0; round < 3; round++) {
		xh_place_code(h, code, sizeof(code));
		x86_get_regs(h->cpu, &r);
		memset(r.gpr, 0, sizeof(r.gpr));
		r.gpr[X86_RSP] = XH_STACK_TOP;
		r.gpr[X86_RSI] = hole;
		r.rflags = 0x2;
		r.rip = XH_CODE;
		x86_set_regs(h->cpu, &r);
		assert_int_equal(x86_run(h->cpu, 0, &exit),
				 X86_EXIT_SHADOW_FAULT);
		x86_get_regs(h->cpu, &r);
		if (r.rip != XH_CODE + 2 || !(r.rflags & X86_RFLAGS_ZF) ||
		    (r.rflags & X86_RFLAGS_CF))
			fail_msg("round %d: the load at %#llx faulted with RIP "
				 "%#llx and RFLAGS %#llx; the XOR before it "
				 "leaves ZF set and CF clear",
				 round, (unsigned long long)XH_CODE + 2,
				 (unsigned long long)r.rip,
				 (unsigned long long)r.rflags);
	}
	xh_free(h);
}

/* Bytes below the harness's RSP the memory forms use: [rsp + disp8]. */
#define MEM_AREA 128

/* One random instruction with a memory operand [rsp - 8 .. rsp - 128]
 * of a form fast.c specialises, or a neighbour it must leave alone. */
static unsigned int random_mem_insn(uint64_t r, uint8_t *p, unsigned int reg)
{
	static const uint8_t ops[] = {
		0x39, 0x85, 0x83, 0x81, 0x80, 0xf6, 0xf7, 0xc7, 0xc6,
		0x88, 0x8a, 0x8b, 0x89, 0x3b, 0x01, 0xb6, 0xaf,
	};
	unsigned int n = 0, op = ops[(r >> 24) % sizeof(ops)];
	unsigned int grp = (r >> 28) & 1 ? 7 : 0; /* CMP or TEST/MOV */
	int8_t disp = (int8_t)(-8 - (int)((r >> 32) % (MEM_AREA - 16)));

	if (r & (1ULL << 42))
		p[n++] = (uint8_t)(0x40 | (r & (1ULL << 43) ? 8 : 0));
	if (op == 0xb6 || op == 0xaf)
		p[n++] = 0x0f; /* MOVZX Gv, Mb; IMUL Gv, Mv */
	p[n++] = (uint8_t)op;
	/* mod 01, rm 100: SIB with base RSP, no index, disp8. */
	p[n++] = (uint8_t)(0x44 |
			   (op >= 0x80 && op <= 0x83 ? grp :
			    op == 0xf6 || op == 0xf7 ? ((r >> 29) & 1) * 2 :
			    op == 0xc6 || op == 0xc7 ? 0 :
						       reg)
				   << 3);
	p[n++] = 0x24;
	p[n++] = (uint8_t)disp;
	switch (op) {
	case 0x80:
	case 0x83:
	case 0xc6:
		p[n++] = (uint8_t)(r >> 48);
		break;
	case 0xf6:
		if (!(p[n - 3] & 0x38))
			p[n++] = (uint8_t)(r >> 48);
		break;
	case 0x81:
	case 0xc7:
		memcpy(p + n,
		       (uint8_t[]){ (uint8_t)(r >> 48), (uint8_t)(r >> 56),
				    (uint8_t)r, (uint8_t)(r >> 8) },
		       4);
		n += 4;
		break;
	case 0xf7:
		if (!(p[n - 3] & 0x38)) {
			memcpy(p + n,
			       (uint8_t[]){ (uint8_t)(r >> 48),
					    (uint8_t)(r >> 56), (uint8_t)r,
					    (uint8_t)(r >> 8) },
			       4);
			n += 4;
		}
		break;
	default:
		break;
	}
	return n;
}

/* Appends one random instruction of a form fast.c specialises (or a
 * near neighbour it must leave alone) to p; returns its length. */
static unsigned int random_insn(uint64_t *rs, uint8_t *p)
{
	static const uint8_t alu[] = { 0x01, 0x03, 0x09, 0x0b, 0x11, 0x19,
				       0x21, 0x23, 0x29, 0x2b, 0x31, 0x33,
				       0x39, 0x3b, 0x85, 0x89, 0x8b };
	uint64_t r = splitmix64(rs);
	unsigned int n = 0, rex = 0x40 | (r & 8 ? 8 : 0) | ((r >> 4) & 5);
	/* Registers other than RSP: the stack stays the harness's. */
	unsigned int reg = (r >> 8) & 7, rm = (r >> 12) & 7;

	if (reg == 4)
		reg = 0;
	if (rm == 4)
		rm = 1;
	p[n++] = (uint8_t)rex;
	switch ((r >> 16) % 12) {
	case 8: /* shifts and rotates by imm8 or one (C1, D1) */
		p[n++] = r & (1ULL << 40) ? 0xd1 : 0xc1;
		p[n++] = (uint8_t)(0xc0 | ((r >> 24) & 7) << 3 | rm);
		if (p[n - 2] == 0xc1)
			p[n++] = (uint8_t)(r >> 32); /* 0 and >= 32 too */
		break;
	case 9: /* MOVZX MOVSX MOVSXD from a register; no REX at times,
		 * so 8-bit sources name AH..BH */
		if (r & (1ULL << 41))
			n = 0;
		if ((r >> 24) % 8 >= 5) { /* IMUL */
			static const uint8_t im[] = { 0xaf, 0x69, 0x6b };
			unsigned int k = (r >> 24) % 8 - 5;

			if (k == 0)
				p[n++] = 0x0f;
			p[n++] = im[k];
			p[n++] = (uint8_t)(0xc0 | reg << 3 | rm);
			if (k == 1) {
				memcpy(p + n,
				       (uint8_t[]){ (uint8_t)(r >> 48),
						    (uint8_t)(r >> 56),
						    (uint8_t)(r >> 32),
						    (uint8_t)(r >> 40) },
				       4);
				n += 4;
			} else if (k == 2) {
				p[n++] = (uint8_t)(r >> 48);
			}
			break;
		}
		if ((r >> 24) % 5 == 4) {
			p[n++] = 0x63;
		} else {
			p[n++] = 0x0f;
			p[n++] = (uint8_t)(0xb6 + (((r >> 24) % 5) & 1) +
					   ((((r >> 24) % 5) & 2) ? 8 : 0));
		}
		p[n++] = (uint8_t)(0xc0 | reg << 3 | rm);
		break;
	case 10:
	case 11:
		n = random_mem_insn(r, p, reg);
		break;
	case 0:
	case 1:
	case 2: /* ALU, TEST, MOV between registers */
		p[n++] = alu[(r >> 24) % sizeof(alu)];
		p[n++] = (uint8_t)(0xc0 | reg << 3 | rm);
		break;
	case 3: /* 83 /n ib (ADC, SBB too) */
		p[n++] = 0x83;
		p[n++] = (uint8_t)(0xc0 | ((r >> 24) & 7) << 3 | rm);
		p[n++] = (uint8_t)(r >> 32);
		break;
	case 4: /* 81 /n id */
		p[n++] = 0x81;
		p[n++] = (uint8_t)(0xc0 | ((r >> 24) & 7) << 3 | rm);
		memcpy(p + n,
		       (uint8_t[]){ (uint8_t)(r >> 32), (uint8_t)(r >> 40),
				    (uint8_t)(r >> 48), (uint8_t)(r >> 56) },
		       4);
		n += 4;
		break;
	case 5: /* INC, DEC */
		p[n++] = 0xff;
		p[n++] = (uint8_t)(0xc0 | ((r >> 24) & 1) << 3 | rm);
		break;
	case 6: /* LEA reg, [rm + index * s + disp8] */
		p[n++] = 0x8d;
		p[n++] = (uint8_t)(0x44 | reg << 3);
		p[n++] = (uint8_t)(((r >> 24) & 3) << 6 | ((r >> 28) & 3) << 3 |
				   rm);
		p[n++] = (uint8_t)(r >> 32);
		break;
	default: /* MOV r, imm32 / imm64 */
		p[n - 1] = (uint8_t)(rex & ~8);
		if (r & (1ULL << 40)) {
			p[n - 1] |= 8;
			p[n++] = (uint8_t)(0xb8 | reg);
			memcpy(p + n, &r, 8);
			n += 8;
		} else {
			p[n++] = (uint8_t)(0xb8 | reg);
			memcpy(p + n, &r, 4);
			n += 4;
		}
		break;
	}
	return n;
}

/* Runs from XH_CODE to the HLT, one instruction per x86_run() when
 * single (the budget keeps every block on the generic handlers). */
static void run_to_hlt(struct xh *h, bool single)
{
	struct x86_exit exit;

	for (unsigned int i = 0; i < 10000; i++) {
		enum x86_exit_reason r = x86_run(h->cpu, single ? 1 : 0, &exit);

		if (r == X86_EXIT_HLT)
			return;
		assert_int_equal(r, X86_EXIT_BUDGET);
	}
	fail_msg("no HLT after 10000 runs");
}

static void test_bcache_specialised_handlers_match_generic(void **state)
{
	uint64_t rs = 0x5eed0001;
	struct xh *h = xh_new();

	(void)state;
	for (unsigned int round = 0; round < 3000; round++) {
		uint8_t code[X86_BLOCK_BYTES + 32];
		struct x86_regs start, fast, slow;
		unsigned int len = 0, n = 1 + splitmix64(&rs) % 8;
		uint8_t mem0[MEM_AREA], mem_fast[MEM_AREA];
		uint8_t *mem = xh_ptr(h, XH_STACK_TOP - MEM_AREA);

		for (unsigned int i = 0; i < n && len < X86_BLOCK_BYTES - 16;
		     i++)
			len += random_insn(&rs, code + len);
		/* End most blocks with a Jcc over a MOV: a fused pair. */
		if (round % 4) {
			code[len++] = (uint8_t)(0x70 | (splitmix64(&rs) & 15));
			code[len++] = 5;
			code[len++] = 0xb8; /* mov eax, 0x600d */
			memcpy(code + len, (uint8_t[]){ 0x0d, 0x60, 0, 0 }, 4);
			len += 4;
		}
		xh_place_code(h, code, len);
		x86_get_regs(h->cpu, &start);
		for (unsigned int r = 0; r < 16; r++)
			if (r != X86_RSP)
				start.gpr[r] = splitmix64(&rs) >>
					       (splitmix64(&rs) & 63);
		start.rflags = 2 | (splitmix64(&rs) & 0x8d5);
		start.rip = XH_CODE;
		for (unsigned int i = 0; i < MEM_AREA; i++)
			mem0[i] = (uint8_t)splitmix64(&rs);
		memcpy(mem, mem0, MEM_AREA);
		x86_set_regs(h->cpu, &start);
		run_to_hlt(h, false);
		x86_get_regs(h->cpu, &fast);
		memcpy(mem_fast, mem, MEM_AREA);
		memcpy(mem, mem0, MEM_AREA);
		x86_set_regs(h->cpu, &start);
		run_to_hlt(h, true);
		x86_get_regs(h->cpu, &slow);
		for (unsigned int i = 0; i < MEM_AREA; i++)
			if (mem_fast[i] != mem[i])
				fail_msg(
					"round %u: byte at RSP - %u is %#x with "
					"the specialised handlers, %#x with "
					"the generic ones",
					round, MEM_AREA - i, mem_fast[i],
					mem[i]);
		for (unsigned int r = 0; r < 16; r++)
			if (fast.gpr[r] != slow.gpr[r])
				fail_msg("round %u: register %u is %#llx with "
					 "the specialised handlers, %#llx with "
					 "the generic ones",
					 round, r,
					 (unsigned long long)fast.gpr[r],
					 (unsigned long long)slow.gpr[r]);
		if (fast.rflags != slow.rflags || fast.rip != slow.rip)
			fail_msg(
				"round %u: RFLAGS %#llx RIP %#llx specialised, "
				"RFLAGS %#llx RIP %#llx generic",
				round, (unsigned long long)fast.rflags,
				(unsigned long long)fast.rip,
				(unsigned long long)slow.rflags,
				(unsigned long long)slow.rip);
	}
	xh_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bcache_holds_thousands_of_blocks),
		cmocka_unit_test(test_bcache_pool_full_flushes_and_refills),
		cmocka_unit_test(
			test_bcache_bytes_changed_outside_rerun_new_code),
		cmocka_unit_test(test_bcache_store_into_running_block),
		cmocka_unit_test(test_bcache_successor_rechecked),
		cmocka_unit_test(test_bcache_fault_mid_block_is_precise),
		cmocka_unit_test(test_bcache_flags_live_across_a_faulting_load),
		cmocka_unit_test(
			test_bcache_specialised_handlers_match_generic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
