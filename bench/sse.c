/*
 * The SSE2 speed guest of bench/: the loops glibc's baseline string
 * functions are made of, at CPL3 (so KVM here runs it natively). Each
 * iteration scans a 4 KiB string for its NUL 16 bytes at a time
 * (MOVDQA, PCMPEQB, PMOVMSKB: strlen's loop) and copies 4 KiB with
 * MOVDQU (memcpy's), 3079 instructions in all. It prints one JSON line:
 * iterations, instructions and the TSC cycles they took, read in the
 * guest, so start-up is not in the figure (bench/run_cpu.py).
 */
#include "bench_guest.h"

#define X86_CR4_OSFXSR (1ULL << 9)
#define X86_CR4_OSXMMEXCPT (1ULL << 10)

/* Per iteration: 256 blocks of 6 instructions in each loop, 7 more. */
#define INSNS_PER_ITER (256 * 6 * 2 + 7)

struct work {
	uint64_t n, cycles;
	uint8_t str[4096] __attribute__((aligned(16)));
	uint8_t dst[4096] __attribute__((aligned(16)));
};

static struct work work RT_USER_DATA;

RT_USER static void spin(uint64_t arg)
{
	struct work *w = (struct work *)arg;
	uint64_t n = w->n, t0, t1;

	t0 = bench_rdtsc();
	__asm__ volatile("2:\n\t"
			 "mov %[str], %%rdi\n\t"
			 "pxor %%xmm0, %%xmm0\n"
			 "3:\n\t"
			 "movdqa (%%rdi), %%xmm1\n\t"
			 "pcmpeqb %%xmm0, %%xmm1\n\t"
			 "pmovmskb %%xmm1, %%eax\n\t"
			 "add $16, %%rdi\n\t"
			 "test %%eax, %%eax\n\t"
			 "jz 3b\n\t"
			 "mov %[str], %%rsi\n\t"
			 "mov %[dst], %%rdi\n\t"
			 "mov $256, %%ecx\n"
			 "4:\n\t"
			 "movdqu (%%rsi), %%xmm2\n\t"
			 "movdqu %%xmm2, (%%rdi)\n\t"
			 "add $16, %%rsi\n\t"
			 "add $16, %%rdi\n\t"
			 "dec %%ecx\n\t"
			 "jnz 4b\n\t"
			 "dec %[n]\n\t"
			 "jnz 2b"
			 : [n] "+r"(n)
			 : [str] "r"(w->str), [dst] "r"(w->dst)
			 /* XMM0-2 too: this file is built without SSE. */
			 : "rax", "rcx", "rsi", "rdi", "cc", "memory");
	t1 = bench_rdtsc();
	w->cycles = t1 - t0;
}

int guest_main(unsigned int cpu)
{
	uint64_t root;

	if (cpu != 0)
		return 0;
	rt_write_cr4(rt_read_cr4() | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT);
	work.n = bench_arg("n", 100000);
	if (work.n == 0)
		rt_fail("sse: n must be at least 1\n");
	/* 4095 non-NUL bytes, the NUL in the last block. */
	for (unsigned int i = 0; i < 4095; i++)
		work.str[i] = (uint8_t)(1 + i % 255);
	work.str[4095] = 0;
	root = pt_root_new();
	rt_user_map(root);
	rt_write_cr3(root);
	if (rt_user_run(spin, rt_user_va(&work)) != 0)
		rt_fail("sse: faulted at CPL3 (vector %lu)\n",
			rt_last_fault()->vector);
	if (memcmp(work.dst, work.str, 4096))
		rt_fail("sse: the copy differs\n");
	rt_printf("{\"figure\":\"sse\",\"iterations\":%lu,\"insns\":%lu,"
		  "\"cycles\":%lu}\n",
		  work.n, work.n * INSNS_PER_ITER, work.cycles);
	return 0;
}
