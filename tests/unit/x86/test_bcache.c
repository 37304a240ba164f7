/*
 * Tests of the decoded-block cache of the run loop (cpu.c; its contract
 * is in internal/x86_int.h, "the decoded-block cache"): it holds
 * thousands of blocks at once, a block whose guest bytes changed (stored
 * by another agent, or by the block itself) is never run stale, a pool
 * that fills up is dropped and refilled without changing what runs, and
 * the counters x86_cpu_stats_get() publishes say what happened.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bcache_holds_thousands_of_blocks),
		cmocka_unit_test(test_bcache_pool_full_flushes_and_refills),
		cmocka_unit_test(
			test_bcache_bytes_changed_outside_rerun_new_code),
		cmocka_unit_test(test_bcache_store_into_running_block),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
