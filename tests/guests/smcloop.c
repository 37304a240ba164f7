/*
 * smcloop: code that rewrites itself constantly (docs/JIT.md, "Verify
 * mode"). Two functions in a code page of their own:
 *
 * - patch: stores its argument's low byte into the immediate of the very
 *   next instruction (MOV [RIP+1], DIL; MOV EAX, imm32; RET) and returns
 *   it: a store into the running block, which the next fetch on the same
 *   processor must see (SDM vol. 3, 8.1.3);
 * - add: MOV EAX, EDI; ADD EAX, imm32; RET, whose immediate the guest
 *   rewrites before every call, so its decoded (and translated) block is
 *   stale at every entry.
 *
 * Each runs ROUNDS times; every result is checked.
 */
#include "rt.h"

#define ROUNDS 100000

typedef uint32_t (*fn_t)(uint32_t);

int guest_main(unsigned int cpu)
{
	static const uint8_t patch[] = {
		0x40, 0x88, 0x3d, 0x01, 0x00, 0x00, 0x00, /* mov [rip+1], dil */
		0xb8, 0x00, 0x00, 0x00, 0x00, /* mov eax, imm32 */
		0xc3, /* ret */
	};
	static const uint8_t add[] = {
		0x89, 0xf8, /* mov eax, edi */
		0x05, 0x00, 0x00, 0x00, 0x00, /* add eax, imm32 */
		0xc3, /* ret */
	};
	volatile uint8_t *code;
	unsigned int ok_patch = 0, ok_add = 0;

	if (cpu != 0)
		return 0;
	/* The page is ordinary RAM: the boot map makes it writable and
	 * executable. */
	code = (volatile uint8_t *)rt_phys_alloc(SIZE_4K, SIZE_4K);
	for (unsigned int i = 0; i < sizeof(patch); i++)
		code[i] = patch[i];
	for (unsigned int i = 0; i < sizeof(add); i++)
		code[64 + i] = add[i];
	for (uint32_t i = 0; i < ROUNDS; i++)
		ok_patch += ((fn_t)code)(i) == (i & 0xff);
	for (uint32_t i = 0; i < ROUNDS; i++) {
		uint32_t k = i * 0x9e3779b9u;

		code[64 + 3] = (uint8_t)k;
		code[64 + 4] = (uint8_t)(k >> 8);
		code[64 + 5] = (uint8_t)(k >> 16);
		code[64 + 6] = (uint8_t)(k >> 24);
		ok_add += ((fn_t)(code + 64))(i) == i + k;
	}
	rt_printf("smcloop: %u/%u stores into the next instruction seen\n",
		  ok_patch, ROUNDS);
	rt_printf("smcloop: %u/%u rewritten immediates seen\n", ok_add, ROUNDS);
	rt_printf("smcloop: %s\n",
		  ok_patch == ROUNDS && ok_add == ROUNDS ? "PASS" : "FAIL");
	return ok_patch == ROUNDS && ok_add == ROUNDS ? 0 : 1;
}
