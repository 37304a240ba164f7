/*
 * What the bench/ guests share: reading "key=NUMBER" from the command
 * line and the time stamp counter. Each guest prints one JSON line per
 * measurement for bench/run.py. Guests only; the runtime (tests/guests/rt)
 * is used as it is.
 */
#ifndef BENCH_GUEST_H
#define BENCH_GUEST_H

#include "rt.h"

/* The value of "key=NUMBER" in the command line, or def. */
static inline uint64_t bench_arg(const char *key, uint64_t def)
{
	const char *s = rt_boot.cmdline;
	size_t klen = strlen(key);

	for (; *s; s++) {
		uint64_t n = 0;

		if ((s != rt_boot.cmdline && s[-1] != ' ') ||
		    memcmp(s, key, klen) || s[klen] != '=')
			continue;
		for (s += klen + 1; *s >= '0' && *s <= '9'; s++)
			n = n * 10 + (uint64_t)(*s - '0');
		return n;
	}
	return def;
}

/* RDTSC is allowed at CPL3 (CR4.TSD is 0); the fences keep the work
 * between two reads inside them (AMD: LFENCE is dispatch serialising). */
static inline __attribute__((always_inline)) uint64_t bench_rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("lfence\n\trdtsc\n\tlfence"
			 : "=a"(lo), "=d"(hi)::"memory");
	return ((uint64_t)hi << 32) | lo;
}

#endif
