/*
 * The software CPU's object and run loop: creation, the boot state
 * (docs/GUEST-ABI.md, "Entry state"), register access for the vCPU layer, and x86_run(),
 * which delivers a pending event, then decodes and executes instructions
 * until an exit. Instruction semantics live in the exec_*.c files, events
 * in except.c, memory in mem.c.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <x86intrin.h>

#include "loader.h"
#include "x86_int.h"

struct x86_cpu *x86_cpu_new(unsigned int index, unsigned int nr_cpus,
			    const struct x86_env *env, void *opaque)
{
	struct x86_cpu *cpu;

	x86_decode_init();
	cpu = aligned_alloc(64, (sizeof(*cpu) + 63) & ~(size_t)63);
	if (!cpu)
		return NULL;
	memset(cpu, 0, sizeof(*cpu));
	cpu->bcache = calloc(X86_BCACHE_BUCKETS, sizeof(*cpu->bcache));
	/* Reserved, not committed: only the pages blocks use cost RAM. */
	cpu->bpool = mmap(NULL, X86_BPOOL_BYTES, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!cpu->bcache || cpu->bpool == MAP_FAILED) {
		if (cpu->bpool != MAP_FAILED)
			munmap(cpu->bpool, X86_BPOOL_BYTES);
		free(cpu->bcache);
		free(cpu);
		return NULL;
	}
	cpu->index = index;
	cpu->nr_cpus = nr_cpus;
	cpu->env = env;
	cpu->opaque = opaque;
	/* --cpu jit (docs/JIT.md): without executable memory, interpreted
	 * (x86_jit_new() logs it once). */
	if (x86_engine_current() != X86_ENGINE_INTERP)
		cpu->jit = x86_jit_new(cpu, x86_engine_current() ==
						    X86_ENGINE_JIT_VERIFY);
	if (cpu->jit && x86_engine_current() == X86_ENGINE_JIT_VERIFY) {
		cpu->verify = x86_verify_new(cpu);
		cpu->jit_verify = cpu->verify != NULL;
	}
	x86_reset_boot(cpu, 0, LOADER_BOOTINFO_GPA);
	return cpu;
}

void x86_cpu_free(struct x86_cpu *cpu)
{
	if (cpu) {
		x86_jit_free(cpu->jit);
		x86_verify_free(cpu->verify);
		free(cpu->bcache);
		munmap(cpu->bpool, X86_BPOOL_BYTES);
	}
	free(cpu);
}

static struct x86_segment flat(uint16_t sel, uint32_t attr)
{
	return (struct x86_segment){
		.sel = sel, .base = 0, .limit = 0xffffffff, .attr = attr
	};
}

void x86_reset_boot(struct x86_cpu *cpu, gva_t entry, gpa_t bootinfo)
{
	memset(cpu->gpr, 0, sizeof(cpu->gpr));
	cpu->gpr[X86_RDI] = bootinfo;
	cpu->gpr[X86_RSI] = cpu->index;
	cpu->rip = entry;
	cpu->next_rip = entry;
	x86_set_rflags(cpu, LOADER_RFLAGS);

	/* Descriptor bits 40..55 of the boot GDT's entries, limit bits
	 * masked: 64-bit code (0x00af9b...) and data (0x00cf93...). */
	cpu->seg[X86_CS] = flat(LOADER_CS, 0xa09b);
	cpu->seg[X86_DS] = flat(LOADER_DS, 0xc093);
	cpu->seg[X86_ES] = flat(LOADER_DS, 0xc093);
	cpu->seg[X86_SS] = flat(LOADER_DS, 0xc093);
	cpu->seg[X86_FS] = (struct x86_segment){ .attr = X86_SEG_UNUSABLE };
	cpu->seg[X86_GS] = (struct x86_segment){ .attr = X86_SEG_UNUSABLE };
	cpu->ldtr = (struct x86_segment){ .attr = X86_SEG_UNUSABLE };
	/* A busy 64-bit TSS (type 11) at base 0, limit 0x67. */
	cpu->tr = (struct x86_segment){
		.sel = 0, .base = 0, .limit = LOADER_TSS_LIMIT, .attr = 0x8b
	};
	cpu->gdt = (struct x86_dtable){ LOADER_GDT_GPA, LOADER_GDT_LIMIT };
	cpu->idt = (struct x86_dtable){ 0, 0 };

	cpu->cr0 = LOADER_CR0;
	cpu->cr2 = 0;
	cpu->cr3 = LOADER_PML4_GPA;
	cpu->cr4 = LOADER_CR4;
	cpu->cr8 = 0;
	memset(cpu->dr, 0, sizeof(cpu->dr));
	cpu->dr6 = X86_DR6_FIXED1;
	cpu->dr7 = X86_DR7_FIXED1;
	cpu->efer = LOADER_EFER;
	cpu->star = cpu->lstar = cpu->cstar = cpu->sfmask = 0;
	cpu->kernel_gs_base = 0;
	cpu->pat = 0x0007040600070406ULL; /* the architectural reset value */
	cpu->tsc_aux = 0;
	cpu->apic_base = 0xfee00000ULL | (1u << 11) |
			 (cpu->index ? 0 : 1u << 8);
	cpu->misc_enable = 1; /* fast strings */
	cpu->tsc_offset = -(int64_t)__rdtsc();
	x86_fpu_reset(cpu);

	memset(&cpu->ev, 0, sizeof(cpu->ev));
	cpu->ev_cr2 = 0;
	cpu->int_shadow = 0;
	cpu->irq_lines = 0;
	cpu->nmi_blocked = false;
	cpu->halted = false;
	cpu->shutdown = false;
	cpu->delivering = -1;
	cpu->chain_len = 0;
	memset(&cpu->io, 0, sizeof(cpu->io));
	cpu->stop = false;
	x86_mode_changed(cpu);
	x86_tlb_flush(cpu);
}

void x86_get_regs(const struct x86_cpu *cpu, struct x86_regs *regs)
{
	memcpy(regs->gpr, cpu->gpr, sizeof(regs->gpr));
	regs->rip = cpu->rip;
	/* Deriving the lazy flags does not change guest state. */
	regs->rflags = x86_rflags((struct x86_cpu *)cpu);
}

void x86_set_regs(struct x86_cpu *cpu, const struct x86_regs *regs)
{
	memcpy(cpu->gpr, regs->gpr, sizeof(cpu->gpr));
	cpu->rip = regs->rip;
	cpu->next_rip = regs->rip;
	x86_set_rflags(cpu, regs->rflags);
	/* A context set from outside runs from its RIP, halted or not. */
	cpu->halted = false;
}

void x86_get_sregs(const struct x86_cpu *cpu, struct x86_sregs *s)
{
	memcpy(s->seg, cpu->seg, sizeof(s->seg));
	s->ldtr = cpu->ldtr;
	s->tr = cpu->tr;
	s->gdt = cpu->gdt;
	s->idt = cpu->idt;
	s->cr0 = cpu->cr0;
	s->cr2 = cpu->cr2;
	s->cr3 = cpu->cr3;
	s->cr4 = cpu->cr4;
	s->cr8 = cpu->cr8;
	s->efer = cpu->efer;
}

void x86_set_sregs(struct x86_cpu *cpu, const struct x86_sregs *s)
{
	memcpy(cpu->seg, s->seg, sizeof(cpu->seg));
	cpu->ldtr = s->ldtr;
	cpu->tr = s->tr;
	cpu->gdt = s->gdt;
	cpu->idt = s->idt;
	cpu->cr0 = s->cr0;
	cpu->cr2 = s->cr2;
	cpu->cr3 = s->cr3;
	cpu->cr4 = s->cr4;
	cpu->cr8 = s->cr8;
	cpu->efer = s->efer;
	x86_mode_changed(cpu);
	x86_tlb_flush(cpu);
}

unsigned int x86_cpl(const struct x86_cpu *cpu)
{
	return cpu->cpl;
}

/*
 * No flush: a soft-TLB entry is a translation of (gva, PCID) whatever root
 * it came from, since every root of one paging mode encodes the guest's
 * rights the same way, mode changes flush (CR0.WP, CR4, EFER.NXE), and
 * every spte the MMU zaps or write-protects is followed by a TLB_FLUSH
 * request to all vCPUs before it may be reused.
 */
void x86_set_shadow_root(struct x86_cpu *cpu, hva_t root)
{
	cpu->shadow_root = root;
}

void x86_set_kick(struct x86_cpu *cpu, const _Atomic unsigned int *kick)
{
	cpu->kick = kick;
}

uint64_t x86_insns_retired(const struct x86_cpu *cpu)
{
	return cpu->retired;
}

/* Makes the counters visible to x86_cpu_stats_get() (vCPU thread). */
static void stats_publish(struct x86_cpu *cpu)
{
	cpu->stat[X86_STAT_POOL_BYTES] = cpu->bpool_used;
	for (unsigned int i = 0; i < X86_STAT_NR; i++)
		atomic_store_explicit(&cpu->stat_pub[i], cpu->stat[i],
				      memory_order_relaxed);
}

void x86_cpu_stats_get(const struct x86_cpu *cpu, struct x86_cpu_stats *out)
{
	uint64_t v[X86_STAT_NR];

	/* Relaxed: each counter is a snapshot of its own; no reader needs
	 * them consistent with each other. */
	for (unsigned int i = 0; i < X86_STAT_NR; i++)
		v[i] = atomic_load_explicit(&cpu->stat_pub[i],
					    memory_order_relaxed);
	out->blocks = v[X86_STAT_BLOCKS];
	out->cache_hits = v[X86_STAT_HITS] + v[X86_STAT_CHAIN_HITS];
	out->chain_hits = v[X86_STAT_CHAIN_HITS];
	out->cache_misses = v[X86_STAT_MISSES];
	out->cache_stale = v[X86_STAT_STALE];
	out->uncached = v[X86_STAT_UNCACHED];
	out->mmio_fetches = v[X86_STAT_MMIO_FETCH];
	out->smc_breaks = v[X86_STAT_SMC_BREAKS];
	out->flushes = v[X86_STAT_FLUSHES];
	out->budget_exits = v[X86_STAT_BUDGET_EXITS];
	out->kick_exits = v[X86_STAT_KICK_EXITS];
	out->pool_bytes = v[X86_STAT_POOL_BYTES];
	out->generic_irq = v[X86_STAT_GENERIC_IRQ];
	out->generic_budget = v[X86_STAT_GENERIC_BUDGET];
	out->jit_blocks = v[X86_STAT_JIT_BLOCKS];
	out->jit_ns = v[X86_STAT_JIT_NS];
	out->jit_bytes = v[X86_STAT_JIT_BYTES];
	out->verified = v[X86_STAT_VERIFIED];
	out->unverified = v[X86_STAT_UNVERIFIED];
}

const char *x86_engine_name(const struct x86_cpu *cpu)
{
	if (!cpu->jit)
		return "interp";
	return x86_engine_current() == X86_ENGINE_JIT_VERIFY ? "jit-verify" :
							       "jit";
}

static inline bool kicked(const struct x86_cpu *cpu)
{
	/* Relaxed: the vCPU layer's mode/request protocol orders the flag
	 * with the request bits (core/vcpu); here we only need to see it
	 * eventually, at the next basic block. */
	return cpu->kick &&
	       atomic_load_explicit(cpu->kick, memory_order_relaxed);
}

/* Relaxed atomic loads: other vCPUs may be writing this code
 * (docs/ARCHITECTURE.md, "Guest memory is shared memory"). */
static inline uint64_t code_qword(hva_t a)
{
	return atomic_load_explicit((const _Atomic uint64_t *)a,
				    memory_order_relaxed);
}

/* Records the aligned quadwords that hold [hva, hva + n) into b: masked
 * to the block's own bytes, so neighbouring data may change freely. */
static void block_snapshot(struct x86_block *b, hva_t hva, unsigned int n,
			   const uint8_t *bytes)
{
	unsigned int lead = hva & 7;
	uint8_t img[X86_BLOCK_BYTES + 16];

	memset(img, 0, sizeof(img));
	memcpy(img + lead, bytes, n);
	b->nq = (uint8_t)((lead + n + 7) / 8);
	memcpy(b->q, img, b->nq * 8u);
	b->first_mask = ~0ULL << (8 * lead);
	b->last_mask = ((lead + n) & 7) ? (1ULL << (8 * ((lead + n) & 7))) - 1 :
					  ~0ULL;
	if (b->nq == 1)
		b->first_mask &= b->last_mask;
	for (unsigned int i = 0; i < b->nq; i++)
		b->q[i] &= i == 0	   ? b->first_mask :
			   i == b->nq - 1u ? b->last_mask :
					     ~0ULL;
}

/* Whether the guest bytes of b are still the ones it was decoded from. */
static inline bool block_current(const struct x86_block *b)
{
	hva_t q = b->hva & ~7ULL;
	unsigned int last = b->nq - 1u;

	if ((code_qword(q) & b->first_mask) != b->q[0])
		return false;
	for (unsigned int i = 1; i < last; i++)
		if (code_qword(q + 8 * i) != b->q[i])
			return false;
	return last == 0 ||
	       (code_qword(q + 8 * last) & b->last_mask) == b->q[last];
}

/* Drops every block: the index emptied, the pool reused from its start.
 * Only between blocks, when no decoded instruction is in use. */
static void bcache_flush(struct x86_cpu *cpu)
{
	memset(cpu->bcache, 0, X86_BCACHE_BUCKETS * sizeof(*cpu->bcache));
	cpu->bpool_used = 0;
	cpu->prev_block = NULL;
	cpu->stat[X86_STAT_FLUSHES]++;
	if (cpu->jit)
		x86_jit_flush(cpu->jit);
}

/* The pool's space for a block of up to X86_BLOCK_INSNS instructions,
 * flushing the cache first when the pool or the JIT's code buffer is
 * full. */
static struct x86_block *bpool_room(struct x86_cpu *cpu)
{
	size_t max = sizeof(struct x86_block) +
		     X86_BLOCK_INSNS * sizeof(struct x86_insn);

	if (cpu->bpool_used + max > X86_BPOOL_BYTES ||
	    (cpu->jit && !x86_jit_has_room(cpu->jit)))
		bcache_flush(cpu);
	return (struct x86_block *)(cpu->bpool + cpu->bpool_used);
}

/*
 * Decodes the block at cpu->rip (host address hva in a RAM page) into
 * b: the first instruction as the CPU fetches (it may fault, or cross the
 * page), the rest from the bytes of the same page, stopping at a branch,
 * at anything that does not decode, or at the block limits. Returns
 * whether b may be cached (false: its first instruction crosses the
 * page).
 */
static bool block_build(struct x86_cpu *cpu, struct x86_block *b, hva_t page,
			hva_t hva)
{
	unsigned int off = hva - page, pos;
	uint8_t bytes[X86_BLOCK_BYTES + 16];
	uint8_t raw[16];

	b->hva = 0;
	b->code = NULL;
	b->warm = 0;
	b->nbytes = 0;
	b->succ_hva[0] = b->succ_hva[1] = 0;
	b->succ_next = 0;
	x86_decode(cpu, &b->in[0], raw);
	b->ninsns = 1;
	pos = b->in[0].len;
	if (off + pos > 4096)
		return false; /* crosses the page: run once, do not cache */
	memcpy(bytes, raw, pos);
	while (b->ninsns < X86_BLOCK_INSNS &&
	       !(b->in[b->ninsns - 1].desc->flags & X86_D_BRANCH)) {
		unsigned int avail = 4096 - (off + pos);
		struct x86_insn *in = &b->in[b->ninsns];
		uint8_t buf[15];

		if (avail > 15)
			avail = 15;
		for (unsigned int i = 0; i < avail; i++)
			buf[i] = __atomic_load_n(
				(const uint8_t *)(hva + pos + i),
				__ATOMIC_RELAXED);
		if (!x86_decode_bytes(buf, avail, in) ||
		    pos + in->len > X86_BLOCK_BYTES)
			break;
		memcpy(bytes + pos, buf, in->len);
		pos += in->len;
		b->ninsns++;
	}
	b->nbytes = (uint8_t)pos;
	block_snapshot(b, hva, pos, bytes);
	x86_specialise(b->in, b->ninsns);
	b->hva = hva;
	return true;
}

/* The chain of the index that holds the block at hva: a multiplicative
 * hash of the address folded with its own higher bits, so that blocks at
 * power-of-two strides spread over every chain too. */
static inline struct x86_block **bcache_chain(struct x86_cpu *cpu, hva_t hva)
{
	uint64_t h = ((uint64_t)hva ^ (hva >> 4) ^ (hva >> 9)) *
		     0x9e3779b97f4a7c15ULL;

	return &cpu->bcache[h >> (64 - __builtin_ctz(X86_BCACHE_BUCKETS))];
}

/* The block at hva (in the RAM page at page) from the hash table when
 * its bytes are unchanged, else decoded now. */
static struct x86_block *lookup(struct x86_cpu *cpu, hva_t page, hva_t hva)
{
	struct x86_block **head, **link, *b;

	head = bcache_chain(cpu, hva);
	for (link = head; (b = *link) && b->hva != hva; link = &b->next)
		;
	if (__builtin_expect(b && block_current(b), 1)) {
		cpu->stat[X86_STAT_HITS]++;
		if (link != head) {
			/* To the front: loops find their blocks first. */
			*link = b->next;
			b->next = *head;
			*head = b;
		}
		return b;
	}
	if (b) {
		/* The guest bytes changed: the old decoding is dropped. */
		cpu->stat[X86_STAT_STALE]++;
		*link = b->next;
	} else {
		cpu->stat[X86_STAT_MISSES]++;
	}
	b = bpool_room(cpu);
	if (!block_build(cpu, b, page, hva)) {
		/* Run from the pool's free space once, not indexed. */
		cpu->stat[X86_STAT_UNCACHED]++;
		return b;
	}
	cpu->bpool_used += (sizeof(*b) + b->ninsns * sizeof(b->in[0]) + 7) &
			   ~(size_t)7;
	/* bpool_room() may have flushed the index meanwhile: the chain's
	 * head is read again. */
	head = bcache_chain(cpu, hva);
	b->next = *head;
	*head = b;
	return b;
}

/*
 * The block to run at cpu->rip: the last block's successor or from the
 * cache when its bytes are unchanged, else decoded now. NULL for code in
 * an MMIO page, which the caller runs one decoded instruction at a time.
 */
static struct x86_block *get_block(struct x86_cpu *cpu)
{
	uint64_t tag = (((cpu->rip >> 12) + 1) & X86_TLB_VPN_MASK) |
		       cpu->pcid_tag;
	struct x86_block *b, *prev;
	hva_t page, hva;

	/* Straight-line code stays in one page: translate it once. */
	if (__builtin_expect(tag == cpu->code_tag && cpu->cpl == cpu->code_cpl,
			     1)) {
		page = cpu->code_page;
	} else {
		page = x86_fetch_page(cpu, cpu->rip);
		if (!page) {
			cpu->prev_block = NULL;
			return NULL;
		}
		cpu->code_tag = tag;
		cpu->code_cpl = cpu->cpl;
		cpu->code_page = page;
	}
	hva = page + (cpu->rip & 4095);
	prev = cpu->prev_block;
	if (prev) {
		unsigned int k = prev->succ_hva[1] == hva;

		b = prev->succ[k];
		if (prev->succ_hva[k] == hva && block_current(b)) {
			/* A hit too: stats_publish() adds these in. */
			cpu->stat[X86_STAT_CHAIN_HITS]++;
			cpu->prev_block = b;
			return b;
		}
	}
	b = lookup(cpu, page, hva);
	/* lookup() may have flushed the pool, prev with it. */
	prev = cpu->prev_block;
	if (!b->hva) {
		/* Not cached: its space is the next block's. */
		cpu->prev_block = NULL;
		return b;
	}
	if (prev) {
		prev->succ_hva[prev->succ_next] = hva;
		prev->succ[prev->succ_next] = b;
		prev->succ_next ^= 1;
	}
	cpu->prev_block = b;
	return b;
}

/* Runs one instruction with its generic handler; returns false when the
 * run loop must stop. */
static inline bool step(struct x86_cpu *cpu, const struct x86_insn *in,
			uint64_t limit)
{
	cpu->next_rip = cpu->rip + in->len;
	in->desc->fn(cpu, in);
	cpu->rip = cpu->next_rip;
	cpu->retired++;
	/* An instruction boundary: an interrupt shadow to age, an event to
	 * take. Not when the instruction exits (an IN still waits for its
	 * value, HLT must report itself): the next x86_run() takes it at
	 * the same boundary, before any instruction. */
	if (__builtin_expect(cpu->int_shadow | cpu->irq_lines, 0))
		x86_boundary(cpu, !cpu->stop);
	if (__builtin_expect(cpu->stop, 0))
		return false;
	if (__builtin_expect(cpu->retired >= limit, 0)) {
		cpu->exit->reason = X86_EXIT_BUDGET;
		cpu->stat[X86_STAT_BUDGET_EXITS]++;
		return false;
	}
	return true;
}

/*
 * The specialised run of b from cpu->rip: 0 when it ended with attn clear
 * (at its end or where control went elsewhere), 1 when attn was set after
 * an instruction; cpu->rip is the next instruction either way.
 *
 * RIP lives in a register between instructions and is stored before each
 * one (a fault reports it, RIP-relative operands use it); what ends the
 * block early (stop, an interrupt shadow or line, a TLB flush or a store
 * into this block: brk) is one word, attn.
 */
static inline __attribute__((always_inline)) int
run_block(struct x86_cpu *cpu, const struct x86_block *b)
{
	const struct x86_insn *in = b->in, *end = b->in + b->ninsns;
	uint64_t rip = cpu->rip;

	for (;;) {
		gva_t next = rip + in->len;

		cpu->rip = rip;
		cpu->next_rip = next;
		in->fn(cpu, in);
		rip = cpu->next_rip;
		cpu->retired++;
		in++;
		if (__builtin_expect(cpu->attn, 0)) {
			cpu->rip = rip;
			return 1;
		}
		if (in == end || rip != next) {
			cpu->rip = rip;
			return 0;
		}
	}
}

int x86_run_block_interp(struct x86_cpu *cpu, const struct x86_block *b)
{
	return run_block(cpu, b);
}

enum x86_exit_reason x86_run(struct x86_cpu *cpu, uint64_t max_insns,
			     struct x86_exit *exit)
{
	uint64_t limit;

	MMUD_ASSERT(!cpu->io.pending);
	cpu->exit = exit;
	exit->reason = X86_EXIT_NONE;
	cpu->stop = false;
	limit = max_insns ? cpu->retired + max_insns : UINT64_MAX;
	if (kicked(cpu)) {
		exit->reason = X86_EXIT_KICK;
		return exit->reason;
	}

	/* A fault longjmps here with the event pending (delivered at the
	 * top of the loop); an exit longjmps here to return. State used
	 * after the longjmp lives in *cpu, never in locals. */
	if (setjmp(cpu->abort) == X86_ABORT_EXIT) {
		cpu->stop = false;
		stats_publish(cpu);
		return exit->reason;
	}
	for (;;) {
		const struct x86_insn *in;
		struct x86_insn scratch;
		struct x86_block *b;
		unsigned int i;

		cpu->block_len = 0;
		if (__builtin_expect(cpu->irq_lines, 0))
			x86_take_event(cpu);
		if (cpu->ev.pending) {
			x86_deliver_event(cpu);
			if (cpu->stop)
				break;
		}
		if (__builtin_expect(cpu->halted, 0)) {
			/* Still halted: no event could be taken. */
			exit->reason = X86_EXIT_HLT;
			exit->hlt.interrupts_enabled =
				(cpu->rflags & X86_RFLAGS_IF) != 0;
			break;
		}
fetch:
		b = get_block(cpu);
		if (__builtin_expect(!b, 0)) {
			/* Code in an MMIO page: decoded on every fetch. */
			cpu->block_len = 0;
			cpu->stat[X86_STAT_MMIO_FETCH]++;
			x86_decode(cpu, &scratch, NULL);
			if (!step(cpu, &scratch, limit))
				break;
			continue;
		}
		cpu->stat[X86_STAT_BLOCKS]++;
		cpu->block_lo = b->hva;
		cpu->block_len = b->nbytes;
		/*
		 * The specialised handlers (fast.c) when nothing can stop
		 * the block between two instructions but the instructions
		 * themselves: no interrupt shadow or line to look at, the
		 * budget not reached inside it.
		 */
		if (__builtin_expect(cpu->int_shadow | cpu->irq_lines, 0)) {
			cpu->stat[X86_STAT_GENERIC_IRQ]++;
		} else if (__builtin_expect(limit - cpu->retired < b->ninsns,
					    0)) {
			cpu->stat[X86_STAT_GENERIC_BUDGET]++;
		} else {
			int r;

			/* Under --cpu jit the block's host code does the
			 * same (docs/JIT.md); verify mode runs both. */
			cpu->brk = false;
			if (!b->code) {
				if (cpu->jit && b->hva &&
				    ++b->warm == X86_JIT_WARM)
					x86_jit_translate(cpu, b);
				r = run_block(cpu, b);
			} else if (__builtin_expect(cpu->jit_verify, 0))
				r = x86_jit_verify_block(cpu, b);
			else
				r = x86_jit_run(cpu, b);
			if (!r)
				goto fast_end;
			/* An instruction boundary, as in step(); the block
			 * ends here. */
			if (cpu->int_shadow | cpu->irq_lines)
				x86_boundary(cpu, !cpu->stop);
			if (cpu->stop)
				goto out;
			goto block_end;
		}
		for (i = 0;;) {
			gva_t next;

			in = &b->in[i];
			next = cpu->rip + in->len;
			if (!step(cpu, in, limit))
				goto out;
			/* Leave the block when control went elsewhere (a REP
			 * that repeats, a fault-free far transfer), when the
			 * code page was forgotten (a TLB flush, a store into
			 * this block), or at its end. */
			if (++i == b->ninsns || cpu->rip != next ||
			    !cpu->code_tag)
				break;
		}
block_end:
		/* At every block's end: mostly a branch, and the two loads
		 * cost less than finding out. */
		if (kicked(cpu)) {
			exit->reason = X86_EXIT_KICK;
			cpu->stat[X86_STAT_KICK_EXITS]++;
			break;
		}
		continue;
fast_end:
		/*
		 * A specialised block ended with attn clear: no interrupt
		 * line or shadow, no stop; nothing raised (that longjmps), so
		 * no event is pending and the CPU is not halted. The next
		 * block is fetched straight away once no kick is waiting.
		 */
		if (kicked(cpu)) {
			exit->reason = X86_EXIT_KICK;
			cpu->stat[X86_STAT_KICK_EXITS]++;
			break;
		}
		goto fetch;
	}
out:
	cpu->stop = false;
	stats_publish(cpu);
	return exit->reason;
}

void x86_set_tsc_offset(struct x86_cpu *cpu, int64_t offset)
{
	cpu->tsc_offset = offset;
}

uint64_t x86_guest_tsc(const struct x86_cpu *cpu)
{
	return __rdtsc() + (uint64_t)cpu->tsc_offset;
}
