/*
 * fpu: compiler-generated SSE2 and x87 floating point, and lazy FPU
 * switching as a kernel does it. Built with SSE (not -mgeneral-regs-only,
 * see meson.build); the runtime is not, and guest_main() enables SSE
 * (CR4.OSFXSR, OSXMMEXCPT) before any SSE instruction runs.
 *
 * Every result is printed as the exact bits of its IEEE value (and a
 * decimal rendering done with integers), so the transcript is the same
 * on every correct x86-64 CPU: basic operations and square root are
 * correctly rounded in both SSE2 double and x87 extended precision.
 *
 *   1. Gauss-Jordan inversion of the 6x6 Hilbert matrix in double; its
 *      inverse has integer entries (the rounded ones are checked and the
 *      largest error printed as bits).
 *   2. A 16-point radix-2 FFT of a known signal, twiddles from a Taylor
 *      series in double; the bins are rounded and checked.
 *   3. Conversions gcc and libgcc generate: int64/uint64/__int128 to and
 *      from double and float, float to double and back.
 *   4. long double (x87) sums and products, and the x87 transcendentals
 *      through inline assembly (FSQRT, FPREM, FSCALE, FXTRACT).
 *   5. MXCSR: rounding modes change results, flags accumulate, and an
 *      unmasked exception is #XM.
 *   6. Lazy switching: two contexts each keep values in XMM registers,
 *      an x87 register and their own MXCSR/FCW; a switch sets CR0.TS,
 *      and the first FPU instruction of the next context is #NM, whose
 *      handling (CLTS, FXSAVE of the owner, FXRSTOR of the new one) is
 *      done as a kernel's; at the end each context's state is its own.
 */
#include "rt.h"

#define X86_CR0_TS (1ULL << 3)
#define X86_CR4_OSFXSR (1ULL << 9)
#define X86_CR4_OSXMMEXCPT (1ULL << 10)

static int failures;

#define CHECK(cond, ...)                                 \
	do {                                             \
		if (!(cond)) {                           \
			rt_printf("FAIL: " __VA_ARGS__); \
			failures++;                      \
		}                                        \
	} while (0)

static double fabs_d(double d)
{
	return d < 0 ? -d : d;
}

/* Round half away from zero (|d| < 2^62). */
static double round_d(double d)
{
	return (double)(int64_t)(d + (d < 0 ? -0.5 : 0.5));
}

static double sqrt_d(double d)
{
	__asm__("sqrtsd %1, %0" : "=x"(d) : "x"(d));
	return d;
}

static uint64_t bits(double d)
{
	uint64_t v;

	memcpy(&v, &d, 8);
	return v;
}

static uint32_t fbits(float f)
{
	uint32_t v;

	memcpy(&v, &f, 4);
	return v;
}

/* d with 6 decimals, by integer arithmetic (|d| < 2^53 / 10^6). */
static void print_fixed(const char *what, double d)
{
	int64_t scaled = (int64_t)(d * 1e6 + (d < 0 ? -0.5 : 0.5));
	uint64_t a = (uint64_t)(scaled < 0 ? -scaled : scaled);

	rt_printf("%s = %s%lu.%06lu (%#018lx)\n", what, scaled < 0 ? "-" : "",
		  a / 1000000, a % 1000000, bits(d));
}

/* ---- 1. matrix inverse -------------------------------------------------- */

#define N 6

static void hilbert_inverse(void)
{
	double a[N][2 * N];
	double maxerr = 0;
	int64_t sum = 0;

	for (int i = 0; i < N; i++)
		for (int j = 0; j < 2 * N; j++)
			a[i][j] = j < N ? 1.0 / (i + j + 1) : (j - N == i);
	for (int c = 0; c < N; c++) {
		int p = c;

		for (int r = c + 1; r < N; r++)
			if (fabs_d(a[r][c]) > fabs_d(a[p][c]))
				p = r;
		for (int j = 0; j < 2 * N; j++) {
			double t = a[c][j];

			a[c][j] = a[p][j];
			a[p][j] = t;
		}
		for (int j = 2 * N - 1; j >= c; j--)
			a[c][j] /= a[c][c];
		for (int r = 0; r < N; r++) {
			double f = a[r][c];

			if (r == c)
				continue;
			for (int j = c; j < 2 * N; j++)
				a[r][j] -= f * a[c][j];
		}
	}
	for (int i = 0; i < N; i++)
		for (int j = 0; j < N; j++) {
			double v = a[i][j + N];
			double r = round_d(v);

			if (fabs_d(v - r) > maxerr)
				maxerr = fabs_d(v - r);
			sum += (int64_t)r;
		}
	/* inv(H6)[0][0] = 36, [5][5] = 698544, the entries sum to 36
	 * (exact integers). */
	rt_printf("hilbert6: inv[0][0] %ld inv[5][5] %ld sum %ld\n",
		  (int64_t)round_d(a[0][N]),
		  (int64_t)round_d(a[N - 1][2 * N - 1]), sum);
	rt_printf("hilbert6: max error %#018lx\n", bits(maxerr));
	CHECK((int64_t)round_d(a[0][N]) == 36, "inv[0][0]\n");
	CHECK((int64_t)round_d(a[N - 1][2 * N - 1]) == 698544, "inv[5][5]\n");
	CHECK(sum == 36, "sum\n");
	CHECK(maxerr < 1e-3, "error too large\n");
}

/* ---- 2. FFT ---------------------------------------------------------------- */

/* x reduced to [-pi, pi]: the series below converges there. */
static double reduce(double x)
{
	const double two_pi = 6.28318530717958647692;

	while (x > two_pi / 2)
		x -= two_pi;
	while (x < -two_pi / 2)
		x += two_pi;
	return x;
}

static double taylor_sin(double x)
{
	x = reduce(x);
	double term = x, sum = x;

	for (int k = 1; k < 20; k++) {
		term *= -x * x / ((2 * k) * (2 * k + 1));
		sum += term;
	}
	return sum;
}

static double taylor_cos(double x)
{
	x = reduce(x);
	double term = 1, sum = 1;

	for (int k = 1; k < 20; k++) {
		term *= -x * x / ((2 * k - 1) * (2 * k));
		sum += term;
	}
	return sum;
}

#define FFT_N 16

static void fft(void)
{
	const double pi = 3.14159265358979323846;
	double re[FFT_N], im[FFT_N];

	/* 3 + 2 cos(2 pi 3 t / N) + sin(2 pi 5 t / N) */
	for (int t = 0; t < FFT_N; t++) {
		re[t] = 3 + 2 * taylor_cos(2 * pi * 3 * t / FFT_N) +
			taylor_sin(2 * pi * 5 * t / FFT_N);
		im[t] = 0;
	}
	for (int i = 1, j = 0; i < FFT_N; i++) {
		int bit = FFT_N >> 1;

		for (; j & bit; bit >>= 1)
			j ^= bit;
		j ^= bit;
		if (i < j) {
			double tr = re[i], ti = im[i];

			re[i] = re[j];
			im[i] = im[j];
			re[j] = tr;
			im[j] = ti;
		}
	}
	for (int len = 2; len <= FFT_N; len <<= 1) {
		double ang = -2 * pi / len;
		double wr = taylor_cos(ang), wi = taylor_sin(ang);

		for (int i = 0; i < FFT_N; i += len) {
			double cr = 1, ci = 0;

			for (int k = 0; k < len / 2; k++) {
				double ur = re[i + k], ui = im[i + k];
				double vr = re[i + k + len / 2] * cr -
					    im[i + k + len / 2] * ci;
				double vi = re[i + k + len / 2] * ci +
					    im[i + k + len / 2] * cr;
				double ncr = cr * wr - ci * wi;

				re[i + k] = ur + vr;
				im[i + k] = ui + vi;
				re[i + k + len / 2] = ur - vr;
				im[i + k + len / 2] = ui - vi;
				ci = cr * wi + ci * wr;
				cr = ncr;
			}
		}
	}
	for (int k = 0; k < FFT_N; k++) {
		double mag = sqrt_d(re[k] * re[k] + im[k] * im[k]);
		int64_t r = (int64_t)round_d(mag);

		if (r)
			rt_printf("fft: bin %d magnitude %ld\n", k, r);
	}
	print_fixed("fft: bin 5 re", re[5]);
	print_fixed("fft: bin 5 im", im[5]);
	/* 3 * 16 at bin 0; 2 cos at bins 3, 13 (16 each); sin at 5, 11
	 * (8 each). */
	CHECK(round_d(re[0]) == 48, "bin 0\n");
}

/* ---- 3. conversions ---------------------------------------------------- */

static volatile int64_t vi64 = -1234567890123456789LL;
static volatile uint64_t vu64 = 18446744073709551557ULL; /* 2^64 - 59 */
static volatile double vd = 123456789.987654321;
static volatile float vf = 3.1415927f;

static void conversions(void)
{
	__int128 big = (__int128)vi64 * 1000003;
	double d = (double)vi64, du = (double)vu64, db = (double)big;
	float f = (float)vu64;

	rt_printf("conv: i64->f64 %#018lx u64->f64 %#018lx i128->f64 "
		  "%#018lx\n",
		  bits(d), bits(du), bits(db));
	rt_printf("conv: u64->f32 %#010x f32->f64 %#018lx f64->f32 %#010x\n",
		  fbits(f), bits((double)vf), fbits((float)vd));
	rt_printf("conv: f64->i64 %ld f64->u64 %lu f64->i128 hi %ld\n",
		  (int64_t)(vd * -1e9), (uint64_t)(du / 3),
		  (int64_t)((__int128)(db * 1e5) >> 64));
	CHECK((uint64_t)(du / 3) == 6148914691236516864ULL, "u64\n");
}

/* ---- 4. x87 ---------------------------------------------------------------- */

static volatile long double vld = 1.0L / 3;

static void x87(void)
{
	long double sum = 0, prod = 1, r;
	uint64_t m;
	uint16_t e;
	int16_t exp2;
	double q;

	for (int k = 1; k <= 1000; k++) {
		sum += 1.0L / ((long double)k * k);
		prod *= 1.0L + vld / k;
	}
	memcpy(&m, &sum, 8);
	memcpy(&e, (char *)&sum + 8, 2);
	rt_printf("x87: sum 1/k^2 %04x:%016lx\n", e, m);
	memcpy(&m, &prod, 8);
	memcpy(&e, (char *)&prod + 8, 2);
	rt_printf("x87: prod %04x:%016lx\n", e, m);
	/* FSQRT of 2, FPREM of 1e10 by pi-ish, FSCALE, FXTRACT. */
	__asm__("fsqrt" : "=t"(r) : "0"(2.0L));
	memcpy(&m, &r, 8);
	rt_printf("x87: fsqrt(2) %016lx\n", m);
	__asm__("1: fprem; fnstsw %%ax; testw $0x400, %%ax; jnz 1b"
		: "=t"(r)
		: "0"(1e10L), "u"(3.14159L)
		: "ax", "cc");
	memcpy(&m, &r, 8);
	rt_printf("x87: fprem %016lx\n", m);
	__asm__("fscale" : "=t"(r) : "0"(1.5L), "u"(10.0L));
	q = (double)r;
	rt_printf("x87: fscale %#018lx\n", bits(q));
	__asm__("fxtract; fstp %%st(1)" : "=t"(r) : "0"(1234.5L));
	memcpy(&m, &r, 8);
	__asm__("fxtract; fstp %%st(0)" : "=t"(r) : "0"(1234.5L));
	exp2 = (int16_t)r;
	rt_printf("x87: fxtract %016lx exponent %d\n", m, exp2);
	CHECK(exp2 == 10, "fxtract exponent\n");
}

/* ---- 5. MXCSR ---------------------------------------------------------- */

static void set_mxcsr(uint32_t v)
{
	__asm__ volatile("ldmxcsr %0" : : "m"(v));
}

static uint32_t get_mxcsr(void)
{
	uint32_t v;

	__asm__ volatile("stmxcsr %0" : "=m"(v));
	return v;
}

static volatile double one = 1.0, three = 3.0, zero = 0.0;

static void divide_by_zero(uint64_t arg)
{
	(void)arg;
	__asm__ volatile("divsd %1, %0" : "+x"(one) : "x"(zero));
}

static void mxcsr(void)
{
	static const char *mode[] = { "nearest", "down", "up", "zero" };

	for (unsigned int rc = 0; rc < 4; rc++) {
		double q;

		set_mxcsr(0x1f80 | rc << 13);
		q = one / three;
		/* MXCSR is not a dependence gcc knows of: order it here. */
		__asm__ volatile("" : "+x"(q));
		rt_printf("mxcsr: 1/3 round %s %#018lx flags %02x\n", mode[rc],
			  bits(q), get_mxcsr() & 0x3f);
	}
	set_mxcsr(0x1f80 & ~(1u << 9)); /* ZE unmasked */
	CHECK(rt_try(divide_by_zero, 0) == 1, "no #XM\n");
	rt_printf("mxcsr: unmasked divide by zero: vector %lu, flags %02x\n",
		  rt_last_fault()->vector, get_mxcsr() & 0x3f);
	set_mxcsr(0x1f80);
}

/* ---- 6. lazy switching ------------------------------------------------- */

struct context {
	uint8_t fx[512] __attribute__((aligned(16)));
	double step;
	unsigned int steps;
};

static struct context ctx[2];
static int owner = -1; /* whose state the FPU holds */
static int current;
static unsigned int nm_traps;

/* The context's work: XMM7 += XMM6 (its step), in whatever rounding
 * mode its MXCSR says, and ST(0) += 1 on its x87 stack. The first FPU
 * instruction is #NM while CR0.TS is set. */
static void work(uint64_t arg)
{
	(void)arg;
	__asm__ volatile("addsd %%xmm6, %%xmm7\n\tfld1\n\tfaddp" ::
				 : "xmm7", "st");
}

static void fxsave(uint8_t *p)
{
	__asm__ volatile("fxsave64 %0" : "=m"(*(uint8_t(*)[512])p));
}

static void fxrstor(const uint8_t *p)
{
	__asm__ volatile("fxrstor64 %0" : : "m"(*(const uint8_t(*)[512])p));
}

/* The #NM handler a kernel has: the FPU goes to the running context. */
static void device_not_available(void)
{
	nm_traps++;
	__asm__ volatile("clts");
	if (owner >= 0)
		fxsave(ctx[owner].fx);
	fxrstor(ctx[current].fx);
	owner = current;
}

static void switch_to(int c)
{
	current = c;
	rt_write_cr0(rt_read_cr0() | X86_CR0_TS);
}

static void context_init(int c, double step, uint32_t mxcsr, uint16_t fcw)
{
	double zero_d = 0;

	/* Built on the FPU, saved into the context. */
	__asm__ volatile("fninit; fldcw %0; fldz" : : "m"(fcw));
	set_mxcsr(mxcsr);
	__asm__ volatile("movsd %0, %%xmm6\n\tmovsd %1, %%xmm7"
			 :
			 : "m"(step), "m"(zero_d)
			 : "xmm6", "xmm7");
	fxsave(ctx[c].fx);
	ctx[c].step = step;
}

static void lazy_switching(void)
{
	uint64_t x7[2];
	uint64_t st0[2];
	uint32_t mx[2];

	context_init(0, 0.1, 0x1f80, 0x037f);
	context_init(1, 1.0 / 3, 0x1f80 | 3u << 13, 0x0f7f); /* to zero */
	owner = -1;
	for (int round = 0; round < 12; round++) {
		int c = (round / 3) & 1; /* AAA BBB AAA ... */

		if (c != current || round == 0)
			switch_to(c);
		while (rt_try(work, 0)) {
			CHECK(rt_last_fault()->vector == 7, "vector %lu\n",
			      rt_last_fault()->vector);
			device_not_available();
		}
		ctx[c].steps++;
	}
	/* Save the owner's live state; read both. */
	__asm__ volatile("clts");
	fxsave(ctx[owner].fx);
	for (int c = 0; c < 2; c++) {
		memcpy(&x7[c], ctx[c].fx + 160 + 16 * 7, 8);
		memcpy(&mx[c], ctx[c].fx + 24, 4);
		memcpy(&st0[c], ctx[c].fx + 32, 8);
		rt_printf("lazy: context %d: %u steps, xmm7 %#018lx mxcsr %04x "
			  "st0 %016lx\n",
			  c, ctx[c].steps, x7[c], mx[c] & 0xffc0, st0[c]);
	}
	rt_printf("lazy: %u #NM traps\n", nm_traps);
	CHECK(nm_traps == 4, "traps\n");
	CHECK(x7[0] != x7[1], "contexts mixed\n");
}

/* ---- entry -------------------------------------------------------------- */

__attribute__((noinline)) static int run(void)
{
	hilbert_inverse();
	fft();
	conversions();
	x87();
	mxcsr();
	lazy_switching();
	rt_printf("fpu: %s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}

/* No SSE before CR4.OSFXSR is set: this function is built without it. */
__attribute__((target("general-regs-only"))) int guest_main(unsigned int cpu)
{
	uint32_t r[4];

	if (cpu != 0)
		return 0;
	rt_cpuid(1, 0, r);
	if ((r[3] & (7u << 24)) != (7u << 24) || !(r[3] & 1)) {
		rt_printf("fpu: CPUID lacks FPU, FXSR, SSE or SSE2\n");
		return 1;
	}
	rt_write_cr4(rt_read_cr4() | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT);
	return run();
}
