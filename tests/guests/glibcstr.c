/*
 * glibcstr: code no one here wrote, on its SSE2 paths. The baseline
 * (SSE2) variants of glibc's string and memory functions, taken at build
 * time from Debian's libc.a (meson.build extracts their members), run on
 * random buffers at every source and destination alignment in a 64-byte
 * window and at lengths around every block size they switch on, and each
 * result is checked against a byte-wise reference. Large copies and
 * fills take the REP MOVSB/STOSB and non-temporal (MOVNTDQ, SFENCE)
 * paths, whose thresholds this guest sets, as glibc's start-up would.
 * Strings end right before an unmapped page too: the functions read
 * whole aligned blocks but never across a page they were not given.
 */
#include "rt.h"

/* glibc's tunable thresholds, which its start-up code computes from the
 * cache sizes; fixed here so that each path is taken. */
long int __x86_shared_non_temporal_threshold = 64 * 1024;
long int __x86_rep_movsb_threshold = 2048;
long int __x86_rep_stosb_threshold = 2048;
long int __x86_rep_movsb_stop_threshold = 64 * 1024;

void *__memcpy_sse2_unaligned(void *d, const void *s, size_t n);
void *__memcpy_sse2_unaligned_erms(void *d, const void *s, size_t n);
void *__memmove_sse2_unaligned(void *d, const void *s, size_t n);
void *__memmove_sse2_unaligned_erms(void *d, const void *s, size_t n);
void *__memset_sse2_unaligned(void *d, int c, size_t n);
void *__memset_sse2_unaligned_erms(void *d, int c, size_t n);
size_t __strlen_sse2(const char *s);
char *__strchr_sse2(const char *s, int c);
void *__memchr_sse2(const void *s, int c, size_t n);
int __memcmp_sse2(const void *a, const void *b, size_t n);
int __strcmp_sse2(const char *a, const char *b);

#define X86_CR4_OSFXSR (1ULL << 9)
#define X86_CR4_OSXMMEXCPT (1ULL << 10)

#define BUF (160 * 1024)
/* A page alone in its 2 MiB, far above the identity map. */
#define EDGE_VA 0x10000000000ULL
static uint8_t src[BUF] __attribute__((aligned(4096)));
static uint8_t dst[BUF] __attribute__((aligned(4096)));
static uint8_t ref[BUF] __attribute__((aligned(4096)));

static uint64_t rng = 0x243f6a8885a308d3ULL;
static unsigned long checks, failures;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static void fail(const char *fn, size_t a, size_t b, size_t n)
{
	if (failures < 10)
		rt_printf("FAIL %s: offsets %lu %lu length %lu\n", fn, a, b, n);
	failures++;
}

/* Lengths: every one up to 300, then around the block sizes and the
 * thresholds above. */
static size_t length(unsigned int i)
{
	static const size_t big[] = { 511,   512,   513,   1023,   1024,
				      2047,  2048,  2049,  4095,   4097,
				      65535, 65536, 65537, 100000, 131072 };

	return i <= 300 ? i : big[i - 301];
}

#define NLENGTHS (301 + 15)

static void check_copies(void)
{
	for (unsigned int li = 0; li < NLENGTHS; li++) {
		size_t n = length(li);
		unsigned int step = n > 4096 ? 29 : n > 300 ? 7 : 3;

		for (unsigned int so = 0; so < 64; so += step)
			for (unsigned int d0 = 0; d0 < 64; d0 += step) {
				int which = (int)(rnd() & 3);

				fill_random(dst + d0, n + 16);
				memcpy(ref, dst + d0, n + 16);
				memcpy(ref, src + so, n);
				switch (which) {
				case 0:
					__memcpy_sse2_unaligned(dst + d0,
								src + so, n);
					break;
				case 1:
					__memcpy_sse2_unaligned_erms(
						dst + d0, src + so, n);
					break;
				case 2:
					__memmove_sse2_unaligned(dst + d0,
								 src + so, n);
					break;
				default:
					__memmove_sse2_unaligned_erms(
						dst + d0, src + so, n);
					break;
				}
				checks++;
				if (memcmp(dst + d0, ref, n + 16))
					fail("memcpy/memmove", so, d0, n);
			}
	}
}

/* memmove with overlap both ways, against a byte-wise copy through a
 * temporary. */
static void check_overlap(void)
{
	for (unsigned int li = 0; li < NLENGTHS; li++) {
		size_t n = length(li);

		if (n > 70000)
			continue;
		for (int shift = -67; shift <= 67; shift += n > 300 ? 19 : 3) {
			/* A window of n + 140 bytes: the source at 70, the
			 * destination shifted by up to 67 either way. */
			size_t from = 70, to = (size_t)((long)from + shift);
			size_t w = n + 140;

			fill_random(dst, w);
			memcpy(ref, dst, w);
			for (size_t i = 0; i < n; i++)
				src[i] = ref[from + i];
			for (size_t i = 0; i < n; i++)
				ref[to + i] = src[i];
			if (rnd() & 1)
				__memmove_sse2_unaligned(dst + to, dst + from,
							 n);
			else
				__memmove_sse2_unaligned_erms(dst + to,
							      dst + from, n);
			checks++;
			if (memcmp(dst, ref, w))
				fail("memmove overlap", from, to, n);
		}
	}
	fill_random(src, BUF);
}

static void check_sets(void)
{
	for (unsigned int li = 0; li < NLENGTHS; li++) {
		size_t n = length(li);
		unsigned int step = n > 300 ? 13 : 1;

		for (unsigned int d0 = 0; d0 < 64; d0 += step) {
			int c = (int)rnd();

			fill_random(dst + d0, n + 16);
			memcpy(ref, dst + d0, n + 16);
			for (size_t i = 0; i < n; i++)
				ref[i] = (uint8_t)c;
			if (rnd() & 1)
				__memset_sse2_unaligned(dst + d0, c, n);
			else
				__memset_sse2_unaligned_erms(dst + d0, c, n);
			checks++;
			if (memcmp(dst + d0, ref, n + 16))
				fail("memset", 0, d0, n);
		}
	}
}

/* A string of n non-zero bytes at p, then a NUL. */
static void make_string(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(1 + rnd() % 255);
	p[n] = 0;
}

static void check_strings_at(uint8_t *base, size_t n, unsigned int off)
{
	uint8_t *s = base + off;
	uint8_t c = (uint8_t)(1 + rnd() % 255);
	size_t first = n;
	const void *mc;
	char *sc;

	for (size_t i = 0; i < n; i++)
		if (s[i] == c) {
			first = i;
			break;
		}
	checks += 3;
	if (__strlen_sse2((const char *)s) != n)
		fail("strlen", off, 0, n);
	sc = __strchr_sse2((const char *)s, c);
	if (sc != (first < n ? (char *)s + first : NULL))
		fail("strchr", off, first, n);
	if (__strchr_sse2((const char *)s, 0) != (char *)s + n)
		fail("strchr nul", off, 0, n);
	mc = __memchr_sse2(s, c, n);
	if (mc != (first < n ? s + first : NULL))
		fail("memchr", off, first, n);
}

/* Strings in the middle of the buffer, and ending at the last byte of a
 * page that is followed by an unmapped one. */
static void check_strings(uint8_t *edge)
{
	for (size_t n = 0; n <= 300; n++)
		for (unsigned int off = 0; off < 64; off += 5) {
			make_string(src + 1000 + off, n);
			check_strings_at(src + 1000, n, off);
			make_string(edge - n - 1, n);
			check_strings_at(edge - n - 1 - (off & 15), n,
					 off & 15);
		}
}

static int sign(int v)
{
	return (v > 0) - (v < 0);
}

static int ref_memcmp(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return 0;
}

static void check_compares(void)
{
	for (size_t n = 0; n <= 300; n++)
		for (unsigned int k = 0; k < 24; k++) {
			unsigned int ao = (unsigned int)(rnd() % 64),
				     bo = (unsigned int)(rnd() % 64);
			uint8_t *a = src + 2000 + ao, *b = dst + 3000 + bo;
			size_t diff = n ? (size_t)(rnd() % (n + 1)) : 0;

			make_string(a, n);
			memcpy(b, a, n + 1);
			if (diff < n && (k & 1))
				b[diff] = (uint8_t)(1 + rnd() % 255);
			checks += 2;
			if (sign(__memcmp_sse2(a, b, n)) != ref_memcmp(a, b, n))
				fail("memcmp", ao, bo, n);
			if (sign(__strcmp_sse2((const char *)a,
					       (const char *)b)) !=
			    ref_memcmp(a, b, n + 1))
				fail("strcmp", ao, bo, n);
		}
}

int guest_main(unsigned int cpu)
{
	uint32_t r[4];
	uint64_t edge_page;

	if (cpu != 0)
		return 0;
	rt_cpuid(1, 0, r);
	if ((r[3] & (3u << 25)) != (3u << 25)) {
		rt_printf("glibcstr: CPUID lacks SSE or SSE2\n");
		return 1;
	}
	rt_write_cr4(rt_read_cr4() | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT);

	/* One page mapped at EDGE_VA with nothing mapped after it. */
	edge_page = EDGE_VA;
	pt_map(rt_read_cr3(), edge_page, rt_phys_alloc(SIZE_4K, SIZE_4K),
	       SIZE_4K, PTE_W);

	fill_random(src, BUF);
	check_copies();
	check_overlap();
	check_sets();
	check_strings((uint8_t *)edge_page + 4096);
	check_compares();
	rt_printf("glibcstr: %lu checks, %lu failures\n", checks, failures);
	rt_printf("glibcstr: %s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
