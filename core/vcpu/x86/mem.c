/*
 * Guest memory as the software CPU sees it: the soft TLB, the walk of the
 * shadow page tables on a miss (lockless, as hardware walks page tables:
 * the MMU frees a shadow page only after every vCPU has left guest mode,
 * core/mmu), the permission check of every access against the cached
 * rights and the current CPL, RFLAGS.AC, CR0/CR4 and EFER, and the
 * accesses themselves: host atomics of the access width
 * (docs/ARCHITECTURE.md, "Guest memory is shared memory"). It does not walk guest page tables: a missing or
 * insufficient spte is a shadow-fault exit and the MMU decides.
 */
#include <pthread.h>
#include <string.h>

#include "mmu/spte.h"
#include "x86_int.h"

/* A locked access that splits a page (or is misaligned) takes this one
 * lock: such accesses are rare and need not be fast, only atomic with
 * respect to each other (docs/ARCHITECTURE.md, "Guest memory is shared
 * memory"). */
static pthread_mutex_t split_lock = PTHREAD_MUTEX_INITIALIZER;

#define RIGHTS_ALL (X86_ACC_WRITE | X86_ACC_USER | X86_ACC_FETCH)

void x86_tlb_flush(struct x86_cpu *cpu)
{
	cpu->code_tag = 0;
	cpu->brk = true;
	memset(cpu->tlb, 0, sizeof(cpu->tlb));
}

void x86_tlb_flush_nonglobal(struct x86_cpu *cpu)
{
	cpu->code_tag = 0;
	cpu->brk = true;
	for (unsigned int i = 0; i < X86_TLB_SIZE; i++)
		if ((cpu->tlb[i].tag & ~X86_TLB_VPN_MASK) != X86_TLB_GLOBAL)
			cpu->tlb[i].tag = 0;
}

void x86_tlb_flush_pcid(struct x86_cpu *cpu, uint16_t pcid)
{
	cpu->code_tag = 0;
	cpu->brk = true;
	uint64_t want = (uint64_t)(pcid & 0xfff) << X86_TLB_PCID_SHIFT;

	for (unsigned int i = 0; i < X86_TLB_SIZE; i++)
		if ((cpu->tlb[i].tag & ~X86_TLB_VPN_MASK) == want)
			cpu->tlb[i].tag = 0;
}

void x86_tlb_flush_page_pcid(struct x86_cpu *cpu, gva_t la, uint16_t pcid,
			     bool with_global)
{
	cpu->code_tag = 0;
	cpu->brk = true;
	struct x86_tlb_entry *e = &cpu->tlb[(la >> 12) & (X86_TLB_SIZE - 1)];
	uint64_t vpn = ((la >> 12) + 1) & X86_TLB_VPN_MASK;

	if ((e->tag & X86_TLB_VPN_MASK) != vpn)
		return;
	if ((e->tag & ~X86_TLB_VPN_MASK) ==
		    ((uint64_t)(pcid & 0xfff) << X86_TLB_PCID_SHIFT) ||
	    (with_global && (e->tag & ~X86_TLB_VPN_MASK) == X86_TLB_GLOBAL))
		e->tag = 0;
}

/* A page's entry under every PCID goes: one slot holds it, whatever PCID
 * made it (over-invalidating is always allowed). */
void x86_tlb_flush_page(struct x86_cpu *cpu, gva_t gva)
{
	cpu->code_tag = 0;
	cpu->brk = true;
	struct x86_tlb_entry *e = &cpu->tlb[(gva >> 12) & (X86_TLB_SIZE - 1)];

	if ((e->tag & X86_TLB_VPN_MASK) ==
	    (((gva >> 12) + 1) & X86_TLB_VPN_MASK))
		e->tag = 0;
}

static inline uint64_t tag_of(const struct x86_cpu *cpu, gva_t la)
{
	return (((la >> 12) + 1) & X86_TLB_VPN_MASK) | cpu->pcid_tag;
}

void x86_map_mmio(struct x86_cpu *cpu, gva_t gva, gpa_t gpa,
		  unsigned int rights)
{
	struct x86_tlb_entry *e = &cpu->tlb[(gva >> 12) & (X86_TLB_SIZE - 1)];

	e->tag = tag_of(cpu, gva);
	e->hva = 0;
	e->whva = 0;
	e->gpa = gpa & PAGE_MASK;
	e->rights = rights & RIGHTS_ALL;
}

void x86_map_tracked(struct x86_cpu *cpu, gva_t gva, hva_t hva, gpa_t gpa,
		     unsigned int rights)
{
	struct x86_tlb_entry *e = &cpu->tlb[(gva >> 12) & (X86_TLB_SIZE - 1)];

	e->tag = tag_of(cpu, gva);
	e->hva = hva & PAGE_MASK;
	e->whva = 0;
	e->gpa = gpa & PAGE_MASK;
	e->rights = rights & RIGHTS_ALL;
}

void x86_request_exit(struct x86_cpu *cpu)
{
	cpu->stop = true;
}

/*
 * May an access of kind acc use a translation whose entries all allow
 * `rights`? SDM vol. 3, 4.6. Writes always need W: the MMU encodes
 * CR0.WP=0 in the sptes it makes (a supervisor-writable spte for a
 * read-only guest page loses U), because a missing W is also how it
 * write-protects pages it tracks.
 */
static inline bool rights_ok(const struct x86_cpu *cpu, unsigned int rights,
			     unsigned int acc)
{
	bool user_page = rights & X86_ACC_USER;

	if (acc & X86_ACC_USER) {
		if (!user_page)
			return false;
	} else if (user_page) {
		if (acc & X86_ACC_FETCH) {
			if (cpu->cr4 & X86_CR4_SMEP)
				return false;
		} else if ((cpu->cr4 & X86_CR4_SMAP) &&
			   ((acc & X86_ACC_IMPLICIT) ||
			    !(cpu->rflags & X86_RFLAGS_AC))) {
			return false;
		}
	}
	if ((acc & X86_ACC_WRITE) && !(rights & X86_ACC_WRITE))
		return false;
	if ((acc & X86_ACC_FETCH) && !(rights & X86_ACC_FETCH) &&
	    (cpu->efer & X86_EFER_NXE))
		return false;
	return true;
}

/* The shadow walk of a TLB miss (spte.h, the MMU's format and walk):
 * fills the entry or exits. */
static struct x86_tlb_entry *walk(struct x86_cpu *cpu, gva_t la,
				  unsigned int acc)
{
	struct x86_tlb_entry *e = &cpu->tlb[(la >> 12) & (X86_TLB_SIZE - 1)];
	struct spte_leaf leaf;
	unsigned int rights = 0;

	if (!cpu->shadow_root ||
	    !spte_walk((const _Atomic uint64_t *)cpu->shadow_root, la, &leaf))
		x86_shadow_fault(cpu, la, acc);
	if (leaf.rights & MMU_ACC_WRITE)
		rights |= X86_ACC_WRITE;
	if (leaf.rights & MMU_ACC_USER)
		rights |= X86_ACC_USER;
	if (leaf.rights & MMU_ACC_EXEC)
		rights |= X86_ACC_FETCH;
	if (!rights_ok(cpu, rights, acc))
		x86_shadow_fault(cpu, la, acc);
	/* Global only when CR4.PGE is on (SDM vol. 3, 4.10.2.4). */
	if ((leaf.spte & X86_PTE_G) && (cpu->cr4 & X86_CR4_PGE))
		e->tag = (tag_of(cpu, la) & X86_TLB_VPN_MASK) | X86_TLB_GLOBAL;
	else
		e->tag = tag_of(cpu, la);
	e->hva = leaf.page;
	e->whva = leaf.page;
	e->gpa = 0;
	e->rights = rights;
	return e;
}

static inline struct x86_tlb_entry *lookup(struct x86_cpu *cpu, gva_t la,
					   unsigned int acc)
{
	struct x86_tlb_entry *e = &cpu->tlb[(la >> 12) & (X86_TLB_SIZE - 1)];

	if (__builtin_expect(x86_tlb_hit(cpu, e, la) &&
				     rights_ok(cpu, e->rights, acc),
			     1))
		return e;
	return walk(cpu, la, acc);
}

_Noreturn void x86_shadow_fault(struct x86_cpu *cpu, gva_t la,
				unsigned int access)
{
	cpu->exit->reason = X86_EXIT_SHADOW_FAULT;
	cpu->exit->fault.gva = la;
	cpu->exit->fault.access = access;
	longjmp(cpu->abort, X86_ABORT_EXIT);
}

/* Checks common to every data access: canonical form (SDM vol. 3,
 * 3.3.7.1: #SS for stack references, else #GP) and alignment checking
 * (#AC at CPL3 with CR0.AM and RFLAGS.AC, never for implicit accesses). */
static inline void check_data(struct x86_cpu *cpu, gva_t la, unsigned int size,
			      unsigned int seg, unsigned int acc)
{
	if (__builtin_expect(!x86_is_canonical(la) ||
				     !x86_is_canonical(la + size - 1),
			     0))
		x86_raise(cpu, seg == X86_SS ? X86_SSF : X86_GP, 0);
	if (__builtin_expect((la & (size - 1)) && cpu->cpl == 3 &&
				     (cpu->cr0 & X86_CR0_AM) &&
				     (cpu->rflags & X86_RFLAGS_AC) &&
				     !(acc & X86_ACC_IMPLICIT),
			     0))
		x86_raise(cpu, X86_AC, 0);
}

static inline unsigned int user_acc(const struct x86_cpu *cpu)
{
	return cpu->cpl == 3 ? X86_ACC_USER : 0;
}

static inline uint64_t load(const void *p, unsigned int size)
{
	uint64_t v = 0;

	if (((uintptr_t)p & (size - 1)) == 0) {
		switch (size) {
		case 1:
			return __atomic_load_n((const uint8_t *)p,
					       __ATOMIC_ACQUIRE);
		case 2:
			return __atomic_load_n((const uint16_t *)p,
					       __ATOMIC_ACQUIRE);
		case 4:
			return __atomic_load_n((const uint32_t *)p,
					       __ATOMIC_ACQUIRE);
		default:
			return __atomic_load_n((const uint64_t *)p,
					       __ATOMIC_ACQUIRE);
		}
	}
	/* Misaligned: byte by byte, each byte atomic. */
	for (unsigned int i = 0; i < size; i++)
		v |= (uint64_t)__atomic_load_n((const uint8_t *)p + i,
					       __ATOMIC_ACQUIRE)
		     << (8 * i);
	return v;
}

static inline void store(void *p, unsigned int size, uint64_t v)
{
	if (((uintptr_t)p & (size - 1)) == 0) {
		switch (size) {
		case 1:
			__atomic_store_n((uint8_t *)p, (uint8_t)v,
					 __ATOMIC_RELEASE);
			return;
		case 2:
			__atomic_store_n((uint16_t *)p, (uint16_t)v,
					 __ATOMIC_RELEASE);
			return;
		case 4:
			__atomic_store_n((uint32_t *)p, (uint32_t)v,
					 __ATOMIC_RELEASE);
			return;
		default:
			__atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
			return;
		}
	}
	for (unsigned int i = 0; i < size; i++)
		__atomic_store_n((uint8_t *)p + i, (uint8_t)(v >> (8 * i)),
				 __ATOMIC_RELEASE);
}

static uint64_t read_acc(struct x86_cpu *cpu, gva_t la, unsigned int size,
			 unsigned int acc)
{
	unsigned int off = la & 4095;
	struct x86_tlb_entry *e, *e2;
	uint64_t v = 0;

	if (__builtin_expect(off + size <= 4096, 1)) {
		e = lookup(cpu, la, acc);
		if (__builtin_expect(e->hva != 0, 1))
			return load((const void *)(e->hva + off), size);
		return cpu->env->mmio_read(cpu->opaque, e->gpa + off, size);
	}
	/* Split across two pages: translate both before reading either,
	 * then assemble byte by byte. */
	lookup(cpu, la, acc);
	lookup(cpu, la + size - 1, acc);
	for (unsigned int i = 0; i < size; i++) {
		gva_t b = la + i;

		e2 = lookup(cpu, b, acc);
		v |= (e2->hva ? load((const void *)(e2->hva + (b & 4095)), 1) :
				cpu->env->mmio_read(cpu->opaque,
						    e2->gpa + (b & 4095), 1))
		     << (8 * i);
	}
	return v;
}

/* A write through an entry whose whva is 0: a tracked page (stored, then
 * reported) or an MMIO page. */
static void write_slow(struct x86_cpu *cpu, const struct x86_tlb_entry *e,
		       unsigned int off, unsigned int size, uint64_t v)
{
	if (e->hva) {
		store((void *)(e->hva + off), size, v);
		x86_note_code_write(cpu, e->hva + off, size);
		cpu->env->tracked_write(cpu->opaque, e->gpa + off, size);
	} else {
		cpu->env->mmio_write(cpu->opaque, e->gpa + off, size, v);
	}
}

static void write_acc(struct x86_cpu *cpu, gva_t la, unsigned int size,
		      unsigned int acc, uint64_t v)
{
	unsigned int off = la & 4095;
	struct x86_tlb_entry *e;

	acc |= X86_ACC_WRITE;
	if (__builtin_expect(off + size <= 4096, 1)) {
		e = lookup(cpu, la, acc);
		if (__builtin_expect(e->whva != 0, 1)) {
			store((void *)(e->whva + off), size, v);
			x86_note_code_write(cpu, e->whva + off, size);
		} else {
			write_slow(cpu, e, off, size, v);
		}
		return;
	}
	/* Both pages must be writable before any byte is written. */
	lookup(cpu, la, acc);
	lookup(cpu, la + size - 1, acc);
	for (unsigned int i = 0; i < size; i++) {
		gva_t b = la + i;

		e = lookup(cpu, b, acc);
		if (e->whva) {
			store((void *)(e->whva + (b & 4095)), 1, v >> (8 * i));
			x86_note_code_write(cpu, e->whva + (b & 4095), 1);
		} else {
			write_slow(cpu, e, b & 4095, 1, (v >> (8 * i)) & 0xff);
		}
	}
}

uint64_t x86_read_slow(struct x86_cpu *cpu, gva_t la, unsigned int size,
		       unsigned int seg)
{
	unsigned int acc = user_acc(cpu);

	check_data(cpu, la, size, seg, acc);
	return read_acc(cpu, la, size, acc);
}

void x86_write_slow(struct x86_cpu *cpu, gva_t la, unsigned int size,
		    unsigned int seg, uint64_t value)
{
	unsigned int acc = user_acc(cpu);

	check_data(cpu, la, size, seg, acc);
	write_acc(cpu, la, size, acc, value);
}

uint64_t x86_read_sys(struct x86_cpu *cpu, gva_t la, unsigned int size)
{
	check_data(cpu, la, size, X86_DS, X86_ACC_IMPLICIT);
	return read_acc(cpu, la, size, X86_ACC_IMPLICIT);
}

void x86_write_sys(struct x86_cpu *cpu, gva_t la, unsigned int size,
		   uint64_t value)
{
	check_data(cpu, la, size, X86_DS, X86_ACC_IMPLICIT);
	write_acc(cpu, la, size, X86_ACC_IMPLICIT, value);
}

void x86_probe_write(struct x86_cpu *cpu, gva_t la, unsigned int size,
		     unsigned int seg)
{
	unsigned int acc = user_acc(cpu) | X86_ACC_WRITE;

	check_data(cpu, la, size, seg, acc);
	lookup(cpu, la, acc);
	if (size > 1)
		lookup(cpu, la + size - 1, acc);
}

void x86_read_block(struct x86_cpu *cpu, gva_t la, void *buf, unsigned int n,
		    unsigned int seg)
{
	unsigned int acc = user_acc(cpu);
	uint8_t *p = buf;

	/* n <= 4096: the first and last byte name every page touched. */
	check_data(cpu, la, 1, seg, acc);
	check_data(cpu, la + n - 1, 1, seg, acc);
	lookup(cpu, la, acc);
	lookup(cpu, la + n - 1, acc);
	for (unsigned int i = 0; i < n; i += 8) {
		uint64_t v = read_acc(cpu, la + i, 8, acc);

		memcpy(p + i, &v, 8);
	}
}

void x86_write_block(struct x86_cpu *cpu, gva_t la, const void *buf,
		     unsigned int n, unsigned int seg)
{
	unsigned int acc = user_acc(cpu);
	const uint8_t *p = buf;

	check_data(cpu, la, 1, seg, acc);
	check_data(cpu, la + n - 1, 1, seg, acc);
	lookup(cpu, la, acc | X86_ACC_WRITE);
	lookup(cpu, la + n - 1, acc | X86_ACC_WRITE);
	for (unsigned int i = 0; i < n; i += 8) {
		uint64_t v;

		memcpy(&v, p + i, 8);
		write_acc(cpu, la + i, 8, acc, v);
	}
}

static bool rmw_atomic(void *p, unsigned int size, uint64_t *old,
		       uint64_t desired)
{
	switch (size) {
	case 1: {
		uint8_t o = (uint8_t)*old;
		bool ok = __atomic_compare_exchange_n((uint8_t *)p, &o,
						      (uint8_t)desired, false,
						      __ATOMIC_SEQ_CST,
						      __ATOMIC_SEQ_CST);
		*old = o;
		return ok;
	}
	case 2: {
		uint16_t o = (uint16_t)*old;
		bool ok = __atomic_compare_exchange_n((uint16_t *)p, &o,
						      (uint16_t)desired, false,
						      __ATOMIC_SEQ_CST,
						      __ATOMIC_SEQ_CST);
		*old = o;
		return ok;
	}
	case 4: {
		uint32_t o = (uint32_t)*old;
		bool ok = __atomic_compare_exchange_n((uint32_t *)p, &o,
						      (uint32_t)desired, false,
						      __ATOMIC_SEQ_CST,
						      __ATOMIC_SEQ_CST);
		*old = o;
		return ok;
	}
	default:
		return __atomic_compare_exchange_n((uint64_t *)p, old, desired,
						   false, __ATOMIC_SEQ_CST,
						   __ATOMIC_SEQ_CST);
	}
}

uint64_t x86_rmw(struct x86_cpu *cpu, gva_t la, unsigned int size,
		 unsigned int seg, bool locked, x86_rmw_fn fn, void *ctx)
{
	unsigned int acc = user_acc(cpu) | X86_ACC_WRITE;
	unsigned int off = la & 4095;
	struct x86_tlb_entry *e;
	uint64_t old, v;

	check_data(cpu, la, size, seg, acc);
	if (off + size <= 4096) {
		e = lookup(cpu, la, acc);
		if (e->hva && ((la & (size - 1)) == 0)) {
			void *p = (void *)(e->hva + off);

			old = load(p, size);
			if (!locked) {
				store(p, size, fn(cpu, old, ctx));
			} else {
				/* The whole read-modify-write is one seq_cst
				 * compare-exchange; a failed one reloads
				 * old. */
				while (!rmw_atomic(p, size, &old,
						   fn(cpu, old, ctx)))
					;
			}
			x86_note_code_write(cpu, (hva_t)(uintptr_t)p, size);
			if (!e->whva)
				cpu->env->tracked_write(cpu->opaque,
							e->gpa + off, size);
			return old;
		}
	}
	/* Split, misaligned or MMIO: probe writability of both ends first
	 * so nothing is written before a fault, then do it under the one
	 * split lock. */
	lookup(cpu, la, acc);
	lookup(cpu, la + size - 1, acc);
	if (locked)
		pthread_mutex_lock(&split_lock);
	old = read_acc(cpu, la, size, acc & ~X86_ACC_WRITE);
	v = fn(cpu, old, ctx);
	write_acc(cpu, la, size, acc, v);
	if (locked)
		pthread_mutex_unlock(&split_lock);
	return old;
}

bool x86_cmpxchg16(struct x86_cpu *cpu, gva_t la, unsigned int seg,
		   uint64_t expected[2], const uint64_t desired[2])
{
	unsigned int acc = user_acc(cpu) | X86_ACC_WRITE;
	struct x86_tlb_entry *e;
	unsigned __int128 *p;
	uint64_t exp_lo, exp_hi;
	bool ok;

	/* SDM vol. 2, CMPXCHG16B: a misaligned operand is #GP(0). */
	if (la & 15)
		x86_raise(cpu, X86_GP, 0);
	check_data(cpu, la, 16, seg, acc);
	e = lookup(cpu, la, acc);
	if (!e->hva) {
		/* MMIO: not atomic with devices; do it as two accesses. */
		uint64_t lo = read_acc(cpu, la, 8, acc & ~X86_ACC_WRITE);
		uint64_t hi = read_acc(cpu, la + 8, 8, acc & ~X86_ACC_WRITE);

		ok = lo == expected[0] && hi == expected[1];
		if (ok) {
			write_acc(cpu, la, 8, acc, desired[0]);
			write_acc(cpu, la + 8, 8, acc, desired[1]);
		} else {
			expected[0] = lo;
			expected[1] = hi;
		}
		return ok;
	}
	p = (unsigned __int128 *)(e->hva + (la & 4095));
	exp_lo = expected[0];
	exp_hi = expected[1];
	/* The host's own CMPXCHG16B, so the 16 bytes change as one. */
	__asm__ volatile("lock cmpxchg16b %1"
			 : "=@ccz"(ok), "+m"(*p), "+a"(exp_lo), "+d"(exp_hi)
			 : "b"(desired[0]), "c"(desired[1])
			 : "memory");
	expected[0] = exp_lo;
	expected[1] = exp_hi;
	if (ok)
		x86_note_code_write(cpu, (hva_t)(uintptr_t)p, 16);
	if (ok && !e->whva) {
		/* Reported as the two quadwords the MMU tracks. */
		cpu->env->tracked_write(cpu->opaque, e->gpa + (la & 4095), 8);
		cpu->env->tracked_write(cpu->opaque, e->gpa + (la & 4095) + 8,
					8);
	}
	return ok;
}

hva_t x86_fetch_page(struct x86_cpu *cpu, gva_t la)
{
	if (__builtin_expect(!x86_is_canonical(la), 0))
		x86_raise(cpu, X86_GP, 0);
	return lookup(cpu, la, user_acc(cpu) | X86_ACC_FETCH)->hva;
}

void x86_fetch(struct x86_cpu *cpu, gva_t la, uint8_t *buf, unsigned int n)
{
	unsigned int acc = user_acc(cpu) | X86_ACC_FETCH;

	if (!x86_is_canonical(la) || !x86_is_canonical(la + n - 1))
		x86_raise(cpu, X86_GP, 0);
	while (n) {
		struct x86_tlb_entry *e = lookup(cpu, la, acc);
		unsigned int off = la & 4095, chunk = 4096 - off;

		if (chunk > n)
			chunk = n;
		for (unsigned int i = 0; i < chunk; i++)
			buf[i] = e->hva ? __atomic_load_n(
						  (const uint8_t *)(e->hva +
								    off + i),
						  __ATOMIC_RELAXED) :
					  (uint8_t)cpu->env->mmio_read(
						  cpu->opaque, e->gpa + off + i,
						  1);
		buf += chunk;
		la += chunk;
		n -= chunk;
	}
}
