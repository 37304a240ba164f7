/*
 * The interpreter-cost guest of bench/: phases that each isolate one cost
 * of running guest code, at CPL0, each timed with RDTSC in the guest and
 * printed as one JSON line {"figure", "insns", "cycles"} for
 * bench/run_cpu.py
 * (docs/BENCHMARKS.md, "Interpreter costs by phase — bench/cpu.c"):
 *
 *   alu        straight-line register ALU: 14 operations, DEC, JNZ
 *   mem        MOV/AND, a load, an add from memory, a store, INC, DEC, JNZ
 *              over an 8 KiB array (2 loads and 1 store per 8)
 *   frame      loads and stores at [base + disp] (as compiled code
 *              reaches its stack frame and structure fields): 2 loads,
 *              ADD, 2 stores, DEC, JNZ
 *   callret    CALL of a leaf (ADD; RET), DEC, JNZ
 *   indirect   CALL through a 4-entry table (MOV, AND, CALL*, ADD, RET,
 *              DEC, JNZ)
 *   rep        a 64-byte REP MOVSB and a 64-byte REP STOSQ between six
 *              MOVs and DEC/JNZ; a REP instruction counts as one
 *   chainN     N blocks of 16 bytes and 5 instructions, each ending in a
 *              JMP to the next, built at run time in RAM (N = 256, 4096,
 *              32768): the cost of entering many different blocks
 *
 * "scale=K" multiplies the default work (about 4 * 10^7 instructions a
 * phase) by K/10; "only=NAME" runs one phase. Instruction counts are
 * exact: each phase's loop is written in assembly.
 */
#include "bench_guest.h"

#define ALU_INSNS 16
#define MEM_INSNS 8
#define FRAME_INSNS 7
#define CALLRET_INSNS 5
#define INDIRECT_INSNS 7
#define REP_INSNS 14
#define CHAIN_BLOCK 16 /* bytes per block of the chain */

/* The leaves the indirect phase calls through its table: ADD; RET. */
__asm__(".text\n"
	"bench_leaf0: add $1, %rdx\n\tret\n"
	"bench_leaf1: add $3, %rdx\n\tret\n"
	"bench_leaf2: add $5, %rdx\n\tret\n"
	"bench_leaf3: add $7, %rdx\n\tret\n"
	"bench_leaf: add $1, %rax\n\tret\n");
extern char bench_leaf0[], bench_leaf1[], bench_leaf2[], bench_leaf3[],
	bench_leaf[];

static uint64_t table[4];
static uint64_t arr[1024] __attribute__((aligned(64)));
static uint8_t src[64] __attribute__((aligned(64)));
static uint8_t dst[128] __attribute__((aligned(64)));
static uint64_t scale = 10;
static char only[16];
static uint64_t sink;

static bool want(const char *name)
{
	size_t n = strlen(name);

	return !only[0] || (strlen(only) == n && !memcmp(only, name, n));
}

static void report(const char *name, uint64_t insns, uint64_t cycles)
{
	rt_printf("{\"figure\":\"%s\",\"insns\":%lu,\"cycles\":%lu}\n", name,
		  insns, cycles);
}

static uint64_t iters(uint64_t insns_per_iter)
{
	uint64_t n = 40000000ULL / insns_per_iter * scale / 10;

	return n ? n : 1;
}

static void phase_alu(void)
{
	uint64_t n = iters(ALU_INSNS), a = 1, b = 2, c = 3, d = 4, t0;

	t0 = bench_rdtsc();
	__asm__ volatile(
		"1:\n\t"
		"add %[b], %[a]\n\t"
		"xor %[a], %[c]\n\t"
		"add $3, %[a]\n\t"
		"sub %[c], %[d]\n\t"
		"or %[d], %[b]\n\t"
		"and $0xffff, %[b]\n\t"
		"lea 1(%[a],%[b]), %[c]\n\t"
		"mov %[c], %[d]\n\t"
		"shr $2, %[d]\n\t"
		"add %[d], %[a]\n\t"
		"xor $0x55, %[c]\n\t"
		"cmp %[a], %[b]\n\t"
		"adc $0, %[d]\n\t"
		"sub $7, %[a]\n\t"
		"dec %[n]\n\t"
		"jnz 1b"
		: [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [d] "+r"(d), [n] "+r"(n)
		:
		: "cc");
	report("alu", iters(ALU_INSNS) * ALU_INSNS, bench_rdtsc() - t0);
	sink += a ^ b ^ c ^ d;
}

static void phase_frame(void)
{
	uint64_t n = iters(FRAME_INSNS), t0;

	t0 = bench_rdtsc();
	__asm__ volatile("1:\n\t"
			 "mov 8(%[arr]), %%rax\n\t"
			 "mov 16(%[arr]), %%rdx\n\t"
			 "add %%rax, %%rdx\n\t"
			 "mov %%rdx, 24(%[arr])\n\t"
			 "mov %%eax, 32(%[arr])\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b"
			 : [n] "+r"(n)
			 : [arr] "r"(arr)
			 : "rax", "rdx", "cc", "memory");
	report("frame", iters(FRAME_INSNS) * FRAME_INSNS, bench_rdtsc() - t0);
}

static void phase_mem(void)
{
	uint64_t n = iters(MEM_INSNS), i = 0, t0;

	t0 = bench_rdtsc();
	__asm__ volatile("1:\n\t"
			 "mov %[i], %%rax\n\t"
			 "and $1022, %%rax\n\t"
			 "mov (%[arr],%%rax,8), %%rdx\n\t"
			 "add 8(%[arr],%%rax,8), %%rdx\n\t"
			 "mov %%rdx, (%[arr],%%rax,8)\n\t"
			 "inc %[i]\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b"
			 : [i] "+r"(i), [n] "+r"(n)
			 : [arr] "r"(arr)
			 : "rax", "rdx", "cc", "memory");
	report("mem", iters(MEM_INSNS) * MEM_INSNS, bench_rdtsc() - t0);
}

static void phase_callret(void)
{
	uint64_t n = iters(CALLRET_INSNS), a = 0, t0;

	t0 = bench_rdtsc();
	__asm__ volatile("1:\n\t"
			 "call bench_leaf\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b"
			 : [n] "+r"(n), "+a"(a)
			 :
			 : "cc", "memory");
	report("callret", iters(CALLRET_INSNS) * CALLRET_INSNS,
	       bench_rdtsc() - t0);
	sink += a;
}

static void phase_indirect(void)
{
	uint64_t n = iters(INDIRECT_INSNS), d = 0, t0;

	table[0] = (uint64_t)bench_leaf0;
	table[1] = (uint64_t)bench_leaf1;
	table[2] = (uint64_t)bench_leaf2;
	table[3] = (uint64_t)bench_leaf3;
	t0 = bench_rdtsc();
	__asm__ volatile("1:\n\t"
			 "mov %[n], %%rax\n\t"
			 "and $3, %%eax\n\t"
			 "call *(%[t],%%rax,8)\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b"
			 : [n] "+r"(n), "+d"(d)
			 : [t] "r"(table)
			 : "rax", "cc", "memory");
	report("indirect", iters(INDIRECT_INSNS) * INDIRECT_INSNS,
	       bench_rdtsc() - t0);
	sink += d;
}

static void phase_rep(void)
{
	uint64_t n = iters(REP_INSNS * 4), t0;

	t0 = bench_rdtsc();
	__asm__ volatile("1:\n\t"
			 "mov %[s], %%rsi\n\t"
			 "mov %[d], %%rdi\n\t"
			 "mov $64, %%ecx\n\t"
			 "rep movsb\n\t"
			 "mov %[d], %%rdi\n\t"
			 "mov $8, %%ecx\n\t"
			 "mov %[n], %%rax\n\t"
			 "rep stosq\n\t"
			 "mov %[s], %%rsi\n\t"
			 "mov %[d], %%rdi\n\t"
			 "add $8, %%rdi\n\t"
			 "mov $64, %%ecx\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b"
			 : [n] "+r"(n)
			 : [s] "r"(src), [d] "r"(dst)
			 : "rax", "rcx", "rsi", "rdi", "cc", "memory");
	report("rep", iters(REP_INSNS * 4) * REP_INSNS, bench_rdtsc() - t0);
}

/*
 * Block i of the chain: ADD RAX,RBX; XOR RCX,RAX; ADD RAX,3; INC RDX;
 * JMP over one INT3 pad byte to block i + 1. After the last block:
 * DEC RSI; JNZ to block 0; RET.
 */
static void build_chain(uint8_t *p, unsigned int nblocks)
{
	static const uint8_t blk[CHAIN_BLOCK] = {
		0x48, 0x01, 0xd8, /* add rax, rbx */
		0x48, 0x31, 0xc1, /* xor rcx, rax */
		0x48, 0x83, 0xc0, 0x03, /* add rax, 3 */
		0x48, 0xff, 0xc2, /* inc rdx */
		0xeb, 0x01, /* jmp +1 */
		0xcc, /* int3 (never run) */
	};
	uint8_t *end = p + (uint64_t)nblocks * CHAIN_BLOCK;
	int32_t back;

	for (unsigned int i = 0; i < nblocks; i++)
		memcpy(p + (uint64_t)i * CHAIN_BLOCK, blk, CHAIN_BLOCK);
	end[0] = 0x48; /* dec rsi */
	end[1] = 0xff;
	end[2] = 0xce;
	end[3] = 0x0f; /* jnz rel32 to block 0 */
	end[4] = 0x85;
	back = (int32_t)(p - (end + 9));
	memcpy(end + 5, &back, 4);
	end[9] = 0xc3; /* ret */
}

static void phase_chain(unsigned int nblocks, uint8_t *code)
{
	uint64_t per = (uint64_t)nblocks * 5 + 2;
	uint64_t n = iters(per), t0, a = 0, c = 0, d = 0;
	char name[16];

	build_chain(code, nblocks);
	t0 = bench_rdtsc();
	__asm__ volatile("call *%[code]"
			 : "+a"(a), "+c"(c), "+d"(d), "+S"(n)
			 : [code] "r"(code), "b"(1ULL)
			 : "cc", "memory");
	rt_snprintf(name, sizeof(name), "chain%u", nblocks);
	report(name, iters(per) * per, bench_rdtsc() - t0);
	sink += a ^ c ^ d;
}

int guest_main(unsigned int cpu)
{
	static const unsigned int chains[] = { 256, 4096, 32768 };
	const char *o = rt_boot.cmdline;
	uint8_t *code;

	if (cpu != 0)
		return 0;
	scale = bench_arg("scale", 10);
	if (!scale)
		rt_fail("cpu: scale must be at least 1\n");
	for (; *o; o++) {
		unsigned int i = 0;

		if ((o != rt_boot.cmdline && o[-1] != ' ') ||
		    memcmp(o, "only=", 5))
			continue;
		for (o += 5; *o && *o != ' ' && i < sizeof(only) - 1; o++)
			only[i++] = *o;
		break;
	}
	for (unsigned int i = 0; i < 64; i++)
		src[i] = (uint8_t)i;
	if (want("alu"))
		phase_alu();
	if (want("mem"))
		phase_mem();
	if (want("frame"))
		phase_frame();
	if (want("callret"))
		phase_callret();
	if (want("indirect"))
		phase_indirect();
	if (want("rep"))
		phase_rep();
	/* Ordinary RAM: the boot map makes it writable and executable. */
	code = (uint8_t *)rt_phys_alloc(32768 * CHAIN_BLOCK + 4096, 4096);
	for (unsigned int i = 0; i < 3; i++) {
		char name[16];

		rt_snprintf(name, sizeof(name), "chain%u", chains[i]);
		if (want(name))
			phase_chain(chains[i], code);
	}
	rt_printf("cpu: done, checksum %#lx\n", sink);
	return 0;
}
