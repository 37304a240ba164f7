/*
 * The C library functions gcc may call even in freestanding code. They
 * use the string instructions: one instruction for the whole buffer, which
 * matters at CPL0 under kvm_pvm, where each instruction is emulated.
 */
#include "rt.h"

void *memset(void *d, int c, size_t n)
{
	void *p = d;

	__asm__ volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(c) : "memory");
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	void *dp = d;

	__asm__ volatile("rep movsb" : "+D"(dp), "+S"(s), "+c"(n) : : "memory");
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	const uint8_t *sp = s;
	uint8_t *dp = d;

	if (dp <= sp || dp >= sp + n)
		return memcpy(d, s, n);
	/* Overlapping with the destination above: copy backwards. */
	sp += n - 1;
	dp += n - 1;
	__asm__ volatile("std; rep movsb; cld"
			 : "+D"(dp), "+S"(sp), "+c"(n)
			 :
			 : "memory");
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x < *y ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}
