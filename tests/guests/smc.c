/*
 * smc: self- and cross-modifying code. vCPU 0 rewrites the immediate of a
 * MOV EAX, imm32; RET in a code page and calls it after every rewrite,
 * then replaces the function with code of other instruction lengths; a
 * processor must execute what it stored (SDM vol. 3, 8.1.3: a write to
 * code is seen by a later fetch on the same processor). With two or more
 * vCPUs, vCPU 0 also rewrites a function that vCPU 1 calls: after the
 * hand-over (a flag, then CPUID, which serializes, on vCPU 1) vCPU 1 must
 * run the new code (8.1.3, cross-modifying code).
 */
#include "rt.h"

#define REWRITES 256
#define XMC_ROUNDS 50

typedef uint32_t (*fn_t)(void);

static volatile unsigned int xmc_gen, xmc_ack;
static volatile uint32_t xmc_seen;
static uint8_t *xmc_code;

static void write_mov_ret(volatile uint8_t *p, uint32_t v)
{
	p[0] = 0xb8; /* mov eax, imm32 */
	p[1] = (uint8_t)v;
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)(v >> 16);
	p[4] = (uint8_t)(v >> 24);
	p[5] = 0xc3; /* ret */
}

static void serialize(void)
{
	uint32_t r[4];

	rt_cpuid(0, 0, r);
}

static void xmc_follower(void)
{
	for (unsigned int g = 1; g <= XMC_ROUNDS; g++) {
		while (__atomic_load_n(&xmc_gen, __ATOMIC_ACQUIRE) != g)
			rt_pause();
		serialize();
		xmc_seen = ((fn_t)xmc_code)();
		__atomic_store_n(&xmc_ack, g, __ATOMIC_RELEASE);
	}
}

static int xmc_leader(void)
{
	int seen = 0;

	for (unsigned int g = 1; g <= XMC_ROUNDS; g++) {
		write_mov_ret(xmc_code, 0x584d0000 | g);
		__atomic_store_n(&xmc_gen, g, __ATOMIC_RELEASE);
		while (__atomic_load_n(&xmc_ack, __ATOMIC_ACQUIRE) != g)
			rt_pause();
		seen += xmc_seen == (0x584d0000 | g);
	}
	rt_printf("xmc: %d/%d rewrites run by vcpu 1\n", seen, XMC_ROUNDS);
	return seen == XMC_ROUNDS ? 0 : 1;
}

int guest_main(unsigned int cpu)
{
	volatile uint8_t *code;
	int bad = 0, seen = 0;

	if (cpu == 0) {
		xmc_code = (uint8_t *)rt_phys_alloc(SIZE_4K, SIZE_4K);
		write_mov_ret(xmc_code, 0);
	}
	rt_barrier();
	if (cpu == 1) {
		xmc_follower();
		return 0;
	}
	if (cpu != 0)
		return 0;

	/* The code page is ordinary RAM: the boot map makes it writable
	 * and executable. */
	code = (volatile uint8_t *)rt_phys_alloc(SIZE_4K, SIZE_4K);
	write_mov_ret(code, 0);
	for (uint32_t i = 0; i < REWRITES; i++) {
		uint32_t want = i * 0x01010101u;

		/* Rewrite only the immediate, one byte at a time. */
		code[1] = (uint8_t)want;
		code[2] = (uint8_t)(want >> 8);
		code[3] = (uint8_t)(want >> 16);
		code[4] = (uint8_t)(want >> 24);
		seen += ((fn_t)code)() == want;
	}
	rt_printf("smc: %d/%d immediate rewrites run\n", seen, REWRITES);
	bad += seen != REWRITES;

	/* Other lengths at the same address: xor eax,eax; inc eax; ret,
	 * then mov eax, imm32; ret again, then a 2-byte jump over junk. */
	code[0] = 0x31;
	code[1] = 0xc0;
	code[2] = 0xff;
	code[3] = 0xc0;
	code[4] = 0xc3;
	bad += ((fn_t)code)() != 1;
	write_mov_ret(code, 0x12345678);
	bad += ((fn_t)code)() != 0x12345678;
	code[0] = 0xeb; /* jmp +4 over four bytes of junk */
	code[1] = 0x04;
	code[2] = 0x0f;
	code[3] = 0x0b;
	code[4] = 0x0f;
	code[5] = 0x0b;
	write_mov_ret(code + 6, 7);
	bad += ((fn_t)code)() != 7;
	rt_printf("smc: instruction lengths changed under the same address: "
		  "%s\n",
		  bad ? "stale code ran" : "new code ran");

	if (rt_boot.nr_vcpus >= 2)
		bad += xmc_leader();
	rt_printf("smc: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
