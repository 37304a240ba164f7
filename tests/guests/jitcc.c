/*
 * jitcc: every condition code after every ALU operation the JIT fuses
 * with the Jcc that ends its block (docs/JIT.md, "Templates"): ADD, SUB,
 * AND, OR, XOR, CMP and TEST of two registers and INC and DEC of one (CF
 * set from b first, since they keep it) at 32 and 64 bits, then Jcc
 * for each of the 16 conditions, over operands at the edges of each size
 * (0, 1, the sign bits, all ones). Each pair runs in a function of its
 * own, called once per operand pair, so the engines run its block many
 * times (the JIT translates it on its third entry). What the branch did
 * is checked against the flags the SDM defines for the operation (vol. 1,
 * appendix A and B; vol. 2, the instructions' "Flags Affected").
 */
#include "rt.h"

enum { ADD, SUB, AND, OR, XOR, CMP, TEST, INC, DEC, NR_OPS };

/* clang-format off */
/* One function per operation, size and condition: returns whether the
 * Jcc after "op b, a" was taken. */
#define FN(opn, mn, sz, mod, cc)                                        \
	static int opn##_##sz##_##cc(uint64_t a, uint64_t b)            \
	{                                                               \
		int r;                                                  \
		uint64_t x = a;                                         \
		__asm__ volatile(mn " %" mod "2, %" mod "1\n\t"         \
				 "j" #cc " 1f\n\t"                      \
				 "xor %k0, %k0\n\t"                     \
				 "jmp 2f\n"                             \
				 "1:\tmov $1, %k0\n"                    \
				 "2:"                                   \
				 : "=&r"(r), "+r"(x)                    \
				 : "r"(b)                               \
				 : "cc");                               \
		return r;                                               \
	}
/* INC and DEC of a: they keep CF, which BT sets from b's bit 0 first. */
#define FN1(opn, mn, sz, mod, cc)                                       \
	static int opn##_##sz##_##cc(uint64_t a, uint64_t b)            \
	{                                                               \
		int r;                                                  \
		uint64_t x = a;                                         \
		__asm__ volatile("bt $0, %" mod "2\n\t"                  \
				 mn " %" mod "1\n\t"                    \
				 "j" #cc " 1f\n\t"                      \
				 "xor %k0, %k0\n\t"                     \
				 "jmp 2f\n"                             \
				 "1:\tmov $1, %k0\n"                    \
				 "2:"                                   \
				 : "=&r"(r), "+r"(x)                    \
				 : "r"(b)                               \
				 : "cc");                               \
		return r;                                               \
	}
#define CCS(X, opn, mn, sz, mod)                                        \
	X(opn, mn, sz, mod, o) X(opn, mn, sz, mod, no)                  \
	X(opn, mn, sz, mod, b) X(opn, mn, sz, mod, ae)                  \
	X(opn, mn, sz, mod, e) X(opn, mn, sz, mod, ne)                  \
	X(opn, mn, sz, mod, be) X(opn, mn, sz, mod, a)                  \
	X(opn, mn, sz, mod, s) X(opn, mn, sz, mod, ns)                  \
	X(opn, mn, sz, mod, p) X(opn, mn, sz, mod, np)                  \
	X(opn, mn, sz, mod, l) X(opn, mn, sz, mod, ge)                  \
	X(opn, mn, sz, mod, le) X(opn, mn, sz, mod, g)
#define OPS(X)                                                          \
	CCS(X, add, "add", 32, "k") CCS(X, add, "add", 64, "q")         \
	CCS(X, sub, "sub", 32, "k") CCS(X, sub, "sub", 64, "q")         \
	CCS(X, and, "and", 32, "k") CCS(X, and, "and", 64, "q")         \
	CCS(X, or, "or", 32, "k") CCS(X, or, "or", 64, "q")             \
	CCS(X, xor, "xor", 32, "k") CCS(X, xor, "xor", 64, "q")         \
	CCS(X, cmp, "cmp", 32, "k") CCS(X, cmp, "cmp", 64, "q")         \
	CCS(X, test, "test", 32, "k") CCS(X, test, "test", 64, "q")
#define OPS1(X)                                                         \
	CCS(X, inc, "inc", 32, "k") CCS(X, inc, "inc", 64, "q")         \
	CCS(X, dec, "dec", 32, "k") CCS(X, dec, "dec", 64, "q")

OPS(FN)
OPS1(FN1)

typedef int (*jfn_t)(uint64_t, uint64_t);
#define PTR(opn, mn, sz, mod, cc) opn##_##sz##_##cc,
/* [op][size 32, 64][cc] flattened, in the order of OPS() and CCS(). */
static const jfn_t fns[NR_OPS * 2 * 16] = { OPS(PTR) OPS1(PTR) };
/* clang-format on */

static bool parity_even(uint64_t v)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < 8; i++)
		n += (v >> i) & 1;
	return (n & 1) == 0;
}

/* Whether condition cc holds after op at bits bits (SDM vol. 1, appendix
 * B: the conditions; the flags from each operation's definition). */
static bool model(unsigned int op, unsigned int bits, uint64_t a, uint64_t b,
		  unsigned int cc)
{
	uint64_t m = bits == 64 ? ~0ULL : 0xffffffffULL;
	uint64_t top = 1ULL << (bits - 1), res;
	bool cf = false, of = false, zf, sf, pf, r;

	a &= m;
	b &= m;
	switch (op) {
	case ADD:
		res = (a + b) & m;
		cf = res < a;
		of = (~(a ^ b) & (a ^ res) & top) != 0;
		break;
	case SUB:
	case CMP:
		res = (a - b) & m;
		cf = a < b;
		of = ((a ^ b) & (a ^ res) & top) != 0;
		break;
	case AND:
	case TEST:
		res = a & b;
		break;
	case OR:
		res = a | b;
		break;
	case INC:
	case DEC:
		res = (op == INC ? a + 1 : a - 1) & m;
		cf = b & 1;
		of = op == INC ? res == top : a == top;
		break;
	default:
		res = a ^ b;
		break;
	}
	zf = res == 0;
	sf = (res & top) != 0;
	pf = parity_even(res);
	switch (cc >> 1) {
	case 0:
		r = of;
		break;
	case 1:
		r = cf;
		break;
	case 2:
		r = zf;
		break;
	case 3:
		r = cf || zf;
		break;
	case 4:
		r = sf;
		break;
	case 5:
		r = pf;
		break;
	case 6:
		r = sf != of;
		break;
	default:
		r = zf || sf != of;
		break;
	}
	return r ^ (cc & 1);
}

static const uint64_t vals[] = {
	0,
	1,
	2,
	0x7f,
	0x80,
	0xff,
	0x7fffffff,
	0x80000000,
	0xffffffff,
	0x100000000ULL,
	0x7fffffffffffffffULL,
	0x8000000000000000ULL,
	0xffffffffffffffffULL,
	0x123456789abcdef0ULL,
};

int guest_main(unsigned int cpu)
{
	unsigned int n = sizeof(vals) / sizeof(vals[0]), ok = 0, all = 0;
	int shown = 0;

	if (cpu != 0)
		return 0;
	for (unsigned int op = 0; op < NR_OPS; op++)
		for (unsigned int s = 0; s < 2; s++)
			for (unsigned int cc = 0; cc < 16; cc++)
				for (unsigned int i = 0; i < n * n; i++) {
					uint64_t a = vals[i / n],
						 b = vals[i % n];
					bool want = model(op, s ? 64 : 32, a, b,
							  cc);
					bool got = fns[(op * 2 + s) * 16 + cc](
							   a, b) != 0;

					all++;
					ok += got == want;
					if (got != want && shown++ < 4)
						rt_printf(
							"jitcc: op %u size %u cc %x "
							"a %lx b %lx: %s\n",
							op, s ? 64 : 32, cc, a,
							b,
							got ? "taken" :
							      "not taken");
				}
	rt_printf("jitcc: %u/%u branches as the flags say\n", ok, all);
	rt_printf("jitcc: %s\n", ok == all ? "PASS" : "FAIL");
	return ok == all ? 0 : 1;
}
