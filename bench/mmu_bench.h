/*
 * What the MMU benchmarks (bench_mmu.c, bench_audit.c) share: a clock,
 * a fatal error, the vCPU callbacks of a VM whose vCPUs are never in
 * guest mode (no request has anyone to reach), address space reserved
 * aligned, and the one-line JSON figure run.py collects
 * (docs/BENCHMARKS.md). Header only: each benchmark is one program.
 */
#ifndef MMUD_BENCH_MMU_BENCH_H
#define MMUD_BENCH_MMU_BENCH_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "mmu.h"

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", program_invocation_short_name, what);
	exit(1);
}

static inline void nop_all(void *opaque, enum mmu_request req, bool wait)
{
	(void)opaque;
	(void)req;
	(void)wait;
}

static inline void nop_one(void *opaque, unsigned vcpu, enum mmu_request req,
			   bool wait)
{
	(void)vcpu;
	nop_all(opaque, req, wait);
}

static inline enum mmu_vcpu_mode nop_mode(void *opaque, unsigned vcpu)
{
	(void)opaque;
	(void)vcpu;
	return OUTSIDE_GUEST_MODE;
}

static const struct mmu_vcpu_ops nop_ops = {
	.make_request = nop_one,
	.make_all_request = nop_all,
	.mode = nop_mode,
};

/* len bytes of address space, never backed until touched, at an address
 * aligned to align (a power of two). */
static inline void *reserve(size_t len, size_t align)
{
	char *p = mmap(NULL, len + align, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		die("out of address space");
	return (void *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
}

static inline int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The median, minimum and maximum of n runs (v is sorted), lower is
 * better, mmud only (no KVM column). */
static inline void print_figure(const char *name, uint64_t *v, unsigned n,
				const char *unit)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	printf("{\"figure\":\"%s\",\"mmud\":%llu,\"kvm\":null,\"ratio\":null,"
	       "\"unit\":\"%s\",\"better\":\"lower\",\"runs\":%u,"
	       "\"mmud_min\":%llu,\"mmud_max\":%llu,\"kvm_min\":null,"
	       "\"kvm_max\":null}\n",
	       name, (unsigned long long)v[n / 2], unit, n,
	       (unsigned long long)v[0], (unsigned long long)v[n - 1]);
	fflush(stdout);
}

#endif
