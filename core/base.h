/*
 * Types and checks every module of mmud shares: the distinct address
 * types of the guest ABI and the assertion macro for programming errors.
 * It owns nothing else; a definition that only one module needs lives in
 * that module's header.
 */
#ifndef MMUD_BASE_H
#define MMUD_BASE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Guest virtual, guest physical, guest frame number, host virtual. */
typedef uint64_t gva_t;
typedef uint64_t gpa_t;
typedef uint64_t gfn_t;
typedef uint64_t hva_t;

#define PAGE_SHIFT 12
#define PAGE_SIZE (1ULL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))

static inline gfn_t gpa_to_gfn(gpa_t gpa)
{
	return gpa >> PAGE_SHIFT;
}

static inline gpa_t gfn_to_gpa(gfn_t gfn)
{
	return gfn << PAGE_SHIFT;
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * MMUD_ASSERT is for programming errors only, never for guest- or
 * client-controlled values. Debug builds print and abort; release builds
 * (NDEBUG) keep the expression type-checked but do not evaluate it.
 */
#ifdef NDEBUG
#define MMUD_ASSERT(cond) ((void)sizeof(!(cond)))
#else
#define MMUD_ASSERT(cond)                                                     \
	do {                                                                  \
		if (__builtin_expect(!(cond), 0)) {                           \
			fprintf(stderr, "%s:%d: %s: assertion '%s' failed\n", \
				__FILE__, __LINE__, __func__, #cond);         \
			abort();                                              \
		}                                                             \
	} while (0)
#endif

#endif
