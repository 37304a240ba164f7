/*
 * The string instructions MOVS, STOS, LODS, CMPS and SCAS at every width,
 * with REP/REPE/REPNE, 64- or 32-bit addressing (67) and RFLAGS.DF. The
 * source of MOVS/LODS/CMPS is in DS or the override's segment; the
 * destination is always ES (base 0 in 64-bit mode). The port string
 * instructions INS/OUTS are exec_io.c's.
 *
 * A REP instruction is restartable, as on hardware: each iteration
 * commits RCX/RSI/RDI, so a fault or shadow-fault exit in iteration k
 * leaves the first k-1 done and restarts from rip with the rest. After
 * STRING_BATCH iterations with work left it ends with next_rip = rip, so
 * the run loop (the descriptor says BRANCH) checks the kick and the
 * budget and then executes it again; it does the same at once when a
 * device or tracked-page callback asked the run loop to stop.
 *
 * The fast path: forward REP MOVS and REP STOS on RAM move whole runs of
 * elements that stay inside one source page and one destination page
 * with a host copy, once an ordinary access of this instruction has
 * proved the page accessible (the soft TLB then holds its host address;
 * the rights cannot change during the instruction). The copy is made of
 * relaxed host atomics: 8-byte ones where source and destination are
 * co-aligned, else the widest width both allow, down to single bytes, so
 * every aligned guest element is still read and written whole
 * (docs/ARCHITECTURE.md, "Guest memory is shared memory"). Relaxed suffices: the SDM lets the stores of a fast string
 * operation become visible out of order (vol. 3, "Fast-String Operation
 * and Out-of-Order Stores"), and every later guest store is a release
 * store, so they are all visible before any store that follows the
 * instruction, as the SDM requires.
 */
#include "x86_int.h"

#define STRING_BATCH 4096

static inline uint64_t addr_mask(const struct x86_insn *in)
{
	return in->addrsize == 8 ? ~0ULL : 0xffffffffULL;
}

/* Only FS and GS have a base in 64-bit mode. */
static inline uint64_t seg_base(const struct x86_cpu *cpu, unsigned int seg)
{
	return seg == X86_FS || seg == X86_GS ? cpu->seg[seg].base : 0;
}

/* The per-iteration step: -size with DF set. DF is not an arithmetic
 * flag, so cpu->rflags holds it even while the lazy flags are pending. */
static inline uint64_t step(const struct x86_cpu *cpu, unsigned int size)
{
	return cpu->rflags & X86_RFLAGS_DF ? -(uint64_t)size : size;
}

/* A register advanced by n bytes at the address size: with 67 the
 * 32-bit write clears bits 63:32, as the hardware does. */
static inline void advance(struct x86_cpu *cpu, unsigned int reg, uint64_t n,
			   uint64_t mask)
{
	cpu->gpr[reg] = (cpu->gpr[reg] + n) & mask;
}

/* ---- the fast path ------------------------------------------------------- */

/*
 * The host address of la when the soft TLB maps its page to RAM for the
 * access (writes: RAM that needs no report, so not a tracked page), else
 * NULL. Called only right after this instruction accessed the page the
 * same way, so the CPL/SMAP/WP checks mem.c made then still hold.
 */
static inline uint8_t *tlb_host(const struct x86_cpu *cpu, gva_t la, bool write)
{
	const struct x86_tlb_entry *e =
		&cpu->tlb[(la >> PAGE_SHIFT) & (X86_TLB_SIZE - 1)];
	hva_t page = write ? e->whva : e->hva;

	if (!x86_tlb_hit(cpu, e, la) || !page)
		return NULL;
	return (uint8_t *)(uintptr_t)(page + (la & (PAGE_SIZE - 1)));
}

/* How many whole elements from la fit in its page. */
static inline uint64_t in_page(gva_t la, unsigned int size)
{
	return (PAGE_SIZE - (la & (PAGE_SIZE - 1))) / size;
}

/* And before a 32-bit offset wraps (the page may not end there when an
 * FS/GS base is not page-aligned). */
static inline uint64_t before_wrap(uint64_t off, uint64_t mask,
				   unsigned int size)
{
	return mask == ~0ULL ? ~0ULL : (mask - off + 1) / size;
}

#define COPY_CHUNK(type, d, s, n)                                           \
	do {                                                                \
		for (; (n) >= sizeof(type); (n) -= sizeof(type),            \
					    (d) += sizeof(type),            \
					    (s) += sizeof(type))            \
			__atomic_store_n((type *)(d),                       \
					 __atomic_load_n((const type *)(s), \
							 __ATOMIC_RELAXED), \
					 __ATOMIC_RELAXED);                 \
	} while (0)

/*
 * Forward copy of n bytes between distinct or forward-safe ranges (the
 * caller excludes 0 < d - s < 8). d and s agree in their low bits up to
 * co, the widest power of two both can be aligned to (at most 8); each
 * step uses the widest unit d is aligned to, so an element aligned on
 * both sides is copied by accesses no narrower than itself, and the bulk
 * goes in runs of co-sized units.
 */
static void copy_relaxed(uint8_t *d, const uint8_t *s, size_t n)
{
	uintptr_t co = ((uintptr_t)d ^ (uintptr_t)s) | 8;

	co &= -co;
	while (n) {
		uintptr_t a = (uintptr_t)d;
		size_t m;

		if (co == 8 && !(a & 7) && n >= 8) {
			m = n & ~(size_t)7;
			n -= m;
			COPY_CHUNK(uint64_t, d, s, m);
		} else if (co >= 4 && !(a & 3) && n >= 4) {
			m = co == 4 ? n & ~(size_t)3 : 4;
			n -= m;
			COPY_CHUNK(uint32_t, d, s, m);
		} else if (co >= 2 && !(a & 1) && n >= 2) {
			m = co == 2 ? n & ~(size_t)1 : 2;
			n -= m;
			COPY_CHUNK(uint16_t, d, s, m);
		} else {
			m = co == 1 ? n : 1;
			n -= m;
			COPY_CHUNK(uint8_t, d, s, m);
		}
	}
}

/* Stores n elements of value v (size bytes each) from d. */
static void fill_relaxed(uint8_t *d, uint64_t v, unsigned int size, size_t n)
{
	uint64_t pat;

	if ((uintptr_t)d & (size - 1)) {
		/* Misaligned elements are not atomic anyway: bytes. */
		for (size_t i = 0; i < n * size; i++)
			__atomic_store_n(d + i,
					 (uint8_t)(v >> (8 * (i % size))),
					 __ATOMIC_RELAXED);
		return;
	}
	switch (size) {
	case 1:
		pat = (v & 0xff) * 0x0101010101010101ULL;
		break;
	case 2:
		pat = (v & 0xffff) * 0x0001000100010001ULL;
		break;
	case 4:
		pat = (v & 0xffffffffULL) * 0x0000000100000001ULL;
		break;
	default:
		pat = v;
		break;
	}
	/* Element stores up to 8-byte alignment, then whole quadwords of
	 * the pattern (it starts on an element boundary), then the rest. */
	for (; n && ((uintptr_t)d & 7); n--, d += size) {
		switch (size) {
		case 1:
			__atomic_store_n(d, (uint8_t)v, __ATOMIC_RELAXED);
			break;
		case 2:
			__atomic_store_n((uint16_t *)d, (uint16_t)v,
					 __ATOMIC_RELAXED);
			break;
		default:
			__atomic_store_n((uint32_t *)d, (uint32_t)v,
					 __ATOMIC_RELAXED);
			break;
		}
	}
	for (; n * size >= 8; n -= 8 / size, d += 8)
		__atomic_store_n((uint64_t *)d, pat, __ATOMIC_RELAXED);
	for (; n; n--, d += size) {
		switch (size) {
		case 1:
			__atomic_store_n(d, (uint8_t)v, __ATOMIC_RELAXED);
			break;
		case 2:
			__atomic_store_n((uint16_t *)d, (uint16_t)v,
					 __ATOMIC_RELAXED);
			break;
		default:
			__atomic_store_n((uint32_t *)d, (uint32_t)v,
					 __ATOMIC_RELAXED);
			break;
		}
	}
}

/* ---- MOVS ---------------------------------------------------------------- */

/*
 * What the last slow iteration proved: the page it accessed and the host
 * address of that page, taken from the soft TLB right after the access
 * (before another lookup can evict the entry). The translation stays
 * usable for the rest of the instruction, as a hardware TLB entry does
 * until a flush, which only the run loop can act on.
 */
struct proved {
	gva_t page; /* NO_PAGE before the first access */
	uint8_t *host; /* NULL: MMIO, no fast path */
};
#define NO_PAGE 1 /* page addresses have their low bits clear */

static inline void prove(const struct x86_cpu *cpu, struct proved *p, gva_t la,
			 unsigned int need)
{
	p->page = la & PAGE_MASK;
	p->host = tlb_host(cpu, p->page, need);
}

/* The fast path may take the element at la if its page was proved. */
static inline uint8_t *proved_host(const struct proved *p, gva_t la)
{
	if ((la & PAGE_MASK) != p->page || !p->host)
		return NULL;
	return p->host + (la & (PAGE_SIZE - 1));
}

/*
 * Elements the fast path moves for REP MOVS at src/dst (0: take the slow
 * path for the next one). A destination 1-7 bytes above the source would
 * make a wide copy read bytes the element-by-element semantics had
 * already rewritten, so that overlap is left to the slow path.
 */
static uint64_t movs_bulk(struct x86_cpu *cpu, gva_t src, gva_t dst,
			  const uint8_t *hs, uint8_t *hd, unsigned int size,
			  uint64_t max, uint64_t mask)
{
	uint64_t n = max, lim;

	if ((uintptr_t)hd > (uintptr_t)hs && (uintptr_t)hd - (uintptr_t)hs < 8)
		return 0;
	if ((lim = in_page(src, size)) < n)
		n = lim;
	if ((lim = in_page(dst, size)) < n)
		n = lim;
	if ((lim = before_wrap(cpu->gpr[X86_RSI] & mask, mask, size)) < n)
		n = lim;
	if ((lim = before_wrap(cpu->gpr[X86_RDI] & mask, mask, size)) < n)
		n = lim;
	if (n) {
		copy_relaxed(hd, hs, n * size);
		x86_note_code_write(cpu, (hva_t)(uintptr_t)hd, n * size);
	}
	return n;
}

/* A4 and A5 (MOVSB/W/D/Q); F2 repeats like F3. */
static void op_movs_Yv_Xv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	const unsigned int size = in->opsize;
	const uint64_t mask = addr_mask(in), delta = step(cpu, size);
	const uint64_t base = seg_base(cpu, in->seg);
	struct proved ps = { NO_PAGE, NULL }, pd = { NO_PAGE, NULL };
	unsigned int budget = STRING_BATCH;
	uint64_t count;

	if (!in->rep) {
		uint64_t v = x86_read(cpu, base + (cpu->gpr[X86_RSI] & mask),
				      size, in->seg);

		x86_write(cpu, cpu->gpr[X86_RDI] & mask, size, X86_ES, v);
		advance(cpu, X86_RSI, delta, mask);
		advance(cpu, X86_RDI, delta, mask);
		return;
	}
	count = cpu->gpr[X86_RCX] & mask;
	while (count) {
		gva_t src = base + (cpu->gpr[X86_RSI] & mask);
		gva_t dst = cpu->gpr[X86_RDI] & mask;
		const uint8_t *hs = proved_host(&ps, src);
		uint8_t *hd = proved_host(&pd, dst);
		uint64_t v, n;

		if (hs && hd && !(cpu->rflags & X86_RFLAGS_DF)) {
			n = movs_bulk(cpu, src, dst, hs, hd, size,
				      count < budget ? count : budget, mask);
			if (n) {
				advance(cpu, X86_RSI, n * size, mask);
				advance(cpu, X86_RDI, n * size, mask);
				count -= n;
				cpu->gpr[X86_RCX] = count;
				budget -= (unsigned int)n;
				if (!budget)
					break;
				continue;
			}
		}
		v = x86_read(cpu, src, size, in->seg);
		prove(cpu, &ps, src, false);
		x86_write(cpu, dst, size, X86_ES, v);
		prove(cpu, &pd, dst, true);
		advance(cpu, X86_RSI, delta, mask);
		advance(cpu, X86_RDI, delta, mask);
		cpu->gpr[X86_RCX] = --count;
		if (!--budget || cpu->stop)
			break;
	}
	if (count)
		cpu->next_rip = cpu->rip;
}

/* ---- STOS ---------------------------------------------------------------- */

static uint64_t stos_bulk(struct x86_cpu *cpu, gva_t dst, uint8_t *hd,
			  uint64_t v, unsigned int size, uint64_t max,
			  uint64_t mask)
{
	uint64_t n = max, lim;

	if ((lim = in_page(dst, size)) < n)
		n = lim;
	if ((lim = before_wrap(cpu->gpr[X86_RDI] & mask, mask, size)) < n)
		n = lim;
	if (n) {
		fill_relaxed(hd, v, size, n);
		x86_note_code_write(cpu, (hva_t)(uintptr_t)hd, n * size);
	}
	return n;
}

/* AA and AB. */
static void op_stos_Yv_rAX(struct x86_cpu *cpu, const struct x86_insn *in)
{
	const unsigned int size = in->opsize;
	const uint64_t mask = addr_mask(in), delta = step(cpu, size);
	const uint64_t v = x86_reg_get(cpu, X86_RAX, size, true);
	struct proved pd = { NO_PAGE, NULL };
	unsigned int budget = STRING_BATCH;
	uint64_t count;

	if (!in->rep) {
		x86_write(cpu, cpu->gpr[X86_RDI] & mask, size, X86_ES, v);
		advance(cpu, X86_RDI, delta, mask);
		return;
	}
	count = cpu->gpr[X86_RCX] & mask;
	while (count) {
		gva_t dst = cpu->gpr[X86_RDI] & mask;
		uint8_t *hd = proved_host(&pd, dst);
		uint64_t n;

		if (hd && !(cpu->rflags & X86_RFLAGS_DF)) {
			n = stos_bulk(cpu, dst, hd, v, size,
				      count < budget ? count : budget, mask);
			if (n) {
				advance(cpu, X86_RDI, n * size, mask);
				count -= n;
				cpu->gpr[X86_RCX] = count;
				budget -= (unsigned int)n;
				if (!budget)
					break;
				continue;
			}
		}
		x86_write(cpu, dst, size, X86_ES, v);
		prove(cpu, &pd, dst, true);
		advance(cpu, X86_RDI, delta, mask);
		cpu->gpr[X86_RCX] = --count;
		if (!--budget || cpu->stop)
			break;
	}
	if (count)
		cpu->next_rip = cpu->rip;
}

/* ---- LODS ---------------------------------------------------------------- */

/* AC and AD: with REP every element is loaded in turn (no fast path:
 * only the last one survives, but each is a guest read, MMIO too). */
static void op_lods_rAX_Xv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	const unsigned int size = in->opsize;
	const uint64_t mask = addr_mask(in), delta = step(cpu, size);
	const uint64_t base = seg_base(cpu, in->seg);
	unsigned int budget = STRING_BATCH;
	uint64_t count = in->rep ? cpu->gpr[X86_RCX] & mask : 1;

	while (count) {
		uint64_t v = x86_read(cpu, base + (cpu->gpr[X86_RSI] & mask),
				      size, in->seg);

		x86_reg_set(cpu, X86_RAX, size, true, v);
		advance(cpu, X86_RSI, delta, mask);
		count--;
		if (in->rep)
			cpu->gpr[X86_RCX] = count;
		if (!--budget || cpu->stop)
			break;
	}
	if (count)
		cpu->next_rip = cpu->rip;
}

/* ---- CMPS and SCAS ------------------------------------------------------- */

/* The flags of CMP a, b; true when the repetition goes on (REPE: equal,
 * REPNE: different). */
static inline bool compare(struct x86_cpu *cpu, const struct x86_insn *in,
			   uint64_t a, uint64_t b)
{
	unsigned int size = in->opsize;

	x86_lf_set(&cpu->lf, X86_LF_SUB, size, x86_trunc(a - b, size), a, b);
	return (a == b) == (in->rep == 0xf3);
}

/* A6 and A7: compares [seg:RSI] with [ES:RDI]. */
static void op_cmps_Xv_Yv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	const unsigned int size = in->opsize;
	const uint64_t mask = addr_mask(in), delta = step(cpu, size);
	const uint64_t base = seg_base(cpu, in->seg);
	unsigned int budget = STRING_BATCH;
	uint64_t count = in->rep ? cpu->gpr[X86_RCX] & mask : 1;

	while (count) {
		uint64_t a = x86_read(cpu, base + (cpu->gpr[X86_RSI] & mask),
				      size, in->seg);
		uint64_t b =
			x86_read(cpu, cpu->gpr[X86_RDI] & mask, size, X86_ES);
		bool more = compare(cpu, in, a, b);

		advance(cpu, X86_RSI, delta, mask);
		advance(cpu, X86_RDI, delta, mask);
		count--;
		if (!in->rep)
			return;
		cpu->gpr[X86_RCX] = count;
		if (!more)
			return;
		if (!--budget || cpu->stop)
			break;
	}
	if (count)
		cpu->next_rip = cpu->rip;
}

/* AE and AF: compares rAX with [ES:RDI]. */
static void op_scas_rAX_Yv(struct x86_cpu *cpu, const struct x86_insn *in)
{
	const unsigned int size = in->opsize;
	const uint64_t mask = addr_mask(in), delta = step(cpu, size);
	const uint64_t a = x86_reg_get(cpu, X86_RAX, size, true);
	unsigned int budget = STRING_BATCH;
	uint64_t count = in->rep ? cpu->gpr[X86_RCX] & mask : 1;

	while (count) {
		uint64_t b =
			x86_read(cpu, cpu->gpr[X86_RDI] & mask, size, X86_ES);
		bool more = compare(cpu, in, a, b);

		advance(cpu, X86_RDI, delta, mask);
		count--;
		if (!in->rep)
			return;
		cpu->gpr[X86_RCX] = count;
		if (!more)
			return;
		if (!--budget || cpu->stop)
			break;
	}
	if (count)
		cpu->next_rip = cpu->rip;
}

/* BRANCH: a repeated instruction may run again at the same rip, so the
 * run loop must look at the kick after it. */
#define BR X86_D_BRANCH
#define ANY X86_GROUP_ANY

const struct x86_opdesc x86_ops_string[] = {
	{ 0xa4, ANY, X86_IMM_NONE, BR | X86_D_BYTE, op_movs_Yv_Xv, "movsb" },
	{ 0xa5, ANY, X86_IMM_NONE, BR, op_movs_Yv_Xv, "movs" },
	{ 0xaa, ANY, X86_IMM_NONE, BR | X86_D_BYTE, op_stos_Yv_rAX, "stosb" },
	{ 0xab, ANY, X86_IMM_NONE, BR, op_stos_Yv_rAX, "stos" },
	{ 0xac, ANY, X86_IMM_NONE, BR | X86_D_BYTE, op_lods_rAX_Xv, "lodsb" },
	{ 0xad, ANY, X86_IMM_NONE, BR, op_lods_rAX_Xv, "lods" },
	{ 0xa6, ANY, X86_IMM_NONE, BR | X86_D_BYTE, op_cmps_Xv_Yv, "cmpsb" },
	{ 0xa7, ANY, X86_IMM_NONE, BR, op_cmps_Xv_Yv, "cmps" },
	{ 0xae, ANY, X86_IMM_NONE, BR | X86_D_BYTE, op_scas_rAX_Yv, "scasb" },
	{ 0xaf, ANY, X86_IMM_NONE, BR, op_scas_rAX_Yv, "scas" },
	{ 0 },
};
