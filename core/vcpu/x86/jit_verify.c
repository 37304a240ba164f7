/*
 * The JIT's verify mode, --cpu jit-verify (docs/JIT.md, "Verify mode"):
 * every block with host code runs twice from the same state, first under
 * the interpreter (cpu.c's specialised run, the reference), then under
 * the JIT, and everything the block can change is compared: the general
 * registers, RIP, RFLAGS as derived from the lazy flags, the retired
 * count, the control and segment registers, x87/SSE state, the pending
 * event (vector, error code, CR2), the attn word, the exit filled in,
 * whether and how the run left by longjmp, and the stores made (address,
 * size, bytes, in order). The first divergence is logged with the block's
 * address and instructions and stops the VM like a triple fault.
 *
 * Undoing the first run: the guest pages a block wrote last time are
 * copied before it runs; the stores of the interpreter's run are logged
 * through x86_note_code_write() (x86_int.h) and put back from those
 * copies. A block that writes a page not copied, touches MMIO, a tracked
 * page, an MSR or CR8 through the vCPU layer (an effect that cannot be
 * taken back), or reads the TSC is run once, by the interpreter, and
 * counted unverified; its pages are copied next time. A divergence is
 * run again twice before it is reported, since another vCPU's stores
 * between the two runs can differ.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "x86_int.h"

#define VLOG_MAX 64 /* stores logged per run */
#define VPAGES 8 /* pages copied per block */
#define VPRED 4096 /* blocks whose written pages are remembered */

struct vstore {
	hva_t hva;
	uint8_t n;
	uint8_t bytes[16];
};

struct vrun {
	struct vstore log[VLOG_MAX];
	unsigned int nlog;
	bool overflow; /* more than VLOG_MAX stores, or one over 16 bytes */
	bool uncopied; /* a store to a page not copied */
	int kind; /* 0: returned (res), else the longjmp value */
	int res;
};

struct x86_verify {
	struct x86_env env; /* the real one's callbacks, wrapped */
	const struct x86_env *real_env;
	void *real_opaque;
	bool running, side; /* an effect that cannot be undone happened */
	hva_t vlo; /* the running block's bytes, for SMC */
	uint64_t vlen;
	struct vrun *cur;
	struct vrun a, bj, a2;
	struct x86_exit e0, e1;
	hva_t page[VPAGES]; /* copied */
	unsigned int npage;
	hva_t want[VPAGES]; /* written this time */
	unsigned int nwant;
	struct {
		hva_t hva;
		hva_t page[VPAGES];
		unsigned int n;
	} pred[VPRED];
	uint8_t copy[VPAGES][4096];
	struct x86_cpu s0, s1; /* the CPU before, after the first run */
};

static uint64_t w_mmio_read(void *o, gpa_t gpa, unsigned int size)
{
	struct x86_verify *v = o;

	v->side |= v->running;
	return v->real_env->mmio_read(v->real_opaque, gpa, size);
}

static void w_mmio_write(void *o, gpa_t gpa, unsigned int size, uint64_t val)
{
	struct x86_verify *v = o;

	v->side |= v->running;
	v->real_env->mmio_write(v->real_opaque, gpa, size, val);
}

static void w_tracked_write(void *o, gpa_t gpa, unsigned int size)
{
	struct x86_verify *v = o;

	v->side |= v->running;
	v->real_env->tracked_write(v->real_opaque, gpa, size);
}

static int w_intr_ack(void *o)
{
	struct x86_verify *v = o;

	v->side |= v->running;
	return v->real_env->intr_ack(v->real_opaque);
}

static int w_msr(void *o, uint32_t index, bool write, uint64_t *value)
{
	struct x86_verify *v = o;

	v->side |= v->running;
	return v->real_env->msr(v->real_opaque, index, write, value);
}

static void w_cr8(void *o, bool write, uint64_t *value)
{
	struct x86_verify *v = o;

	v->side |= v->running;
	v->real_env->cr8(v->real_opaque, write, value);
}

struct x86_verify *x86_verify_new(struct x86_cpu *cpu)
{
	size_t size = (sizeof(struct x86_verify) + 63) & ~(size_t)63;
	struct x86_verify *v = aligned_alloc(64, size);
	const struct x86_env *r = cpu->env;

	if (!v)
		return NULL;
	memset(v, 0, size);
	v->real_env = r;
	v->real_opaque = cpu->opaque;
	v->env.mmio_read = r->mmio_read ? w_mmio_read : NULL;
	v->env.mmio_write = r->mmio_write ? w_mmio_write : NULL;
	v->env.tracked_write = r->tracked_write ? w_tracked_write : NULL;
	v->env.intr_ack = r->intr_ack ? w_intr_ack : NULL;
	v->env.msr = r->msr ? w_msr : NULL;
	v->env.cr8 = r->cr8 ? w_cr8 : NULL;
	cpu->env = &v->env;
	cpu->opaque = v;
	return v;
}

void x86_verify_free(struct x86_verify *v)
{
	free(v);
}

static bool has_page(const hva_t *pages, unsigned int n, hva_t p)
{
	for (unsigned int i = 0; i < n; i++)
		if (pages[i] == p)
			return true;
	return false;
}

bool x86_jit_log_write(struct x86_cpu *cpu, hva_t hva, size_t n)
{
	struct x86_verify *v = cpu->opaque;
	struct vrun *r = v->cur;
	hva_t p = hva & ~(hva_t)4095;

	if (!has_page(v->page, v->npage, p) ||
	    ((hva + n - 1) & ~(hva_t)4095) != p)
		r->uncopied = true;
	if (!has_page(v->want, v->nwant, p) && v->nwant < VPAGES)
		v->want[v->nwant++] = p;
	if (r->nlog == VLOG_MAX || n > 16) {
		r->overflow = true;
	} else {
		r->log[r->nlog].hva = hva;
		r->log[r->nlog].n = (uint8_t)n;
		r->nlog++;
	}
	return hva - v->vlo < v->vlen || v->vlo - hva < n;
}

/* Whether a soft-TLB entry maps host page p now. */
static bool tlb_maps(const struct x86_cpu *cpu, hva_t p)
{
	for (unsigned int i = 0; i < X86_TLB_SIZE; i++) {
		const struct x86_tlb_entry *e = &cpu->tlb[i];

		if (e->tag && (e->hva == p || e->whva == p))
			return true;
	}
	return false;
}

/* Instructions whose results differ from one run to the next, and the
 * atomic read-modify-writes other vCPUs synchronise with (a lock taken
 * and put back between the runs would let two vCPUs in). */
static bool nondeterministic(const struct x86_block *b)
{
	for (unsigned int i = 0; i < b->ninsns; i++) {
		const struct x86_insn *in = &b->in[i];

		if (in->lock ||
		    ((in->opcode == 0x86 || in->opcode == 0x87) && in->mem))
			return true;
		switch (in->opcode) {
		case X86_MAP_0F | 0x31: /* RDTSC */
		case X86_MAP_0F | 0x32: /* RDMSR (IA32_TSC) */
		case X86_MAP_0F | 0x33: /* RDPMC */
		case X86_MAP_0F | 0xc7: /* RDRAND, RDSEED */
			return true;
		case X86_MAP_0F | 0x01: /* RDTSCP */
			if (in->modrm == 0xf9)
				return true;
			break;
		default:
			break;
		}
	}
	return false;
}

/*
 * Copies the CPU's state but its soft TLB: a cache, whose entries the
 * first run filled are translations the second would make the same way
 * (the walk is the same C code over the same shadow tables), and whose
 * flushes inside the block (INVLPG, MOV to CR3) both runs make. 20 KiB
 * not copied three times per block.
 */
static void cpu_copy(struct x86_cpu *dst, const struct x86_cpu *src)
{
	size_t lo = offsetof(struct x86_cpu, tlb);
	size_t hi = lo + sizeof(src->tlb);

	memcpy(dst, src, lo);
	memcpy((char *)dst + hi, (const char *)src + hi, sizeof(*src) - hi);
}

static int run_guarded(struct x86_cpu *cpu, const struct x86_block *b, bool jit,
		       int *res)
{
	int k = setjmp(cpu->abort);

	if (k)
		return k;
	*res = jit ? x86_jit_run(cpu, b) : x86_run_block_interp(cpu, b);
	return 0;
}

/* One run of b from the current state with its stores logged into r. */
static void run_logged(struct x86_cpu *cpu, struct x86_verify *v,
		       const struct x86_block *b, bool jit, struct vrun *r)
{
	r->nlog = 0;
	r->overflow = r->uncopied = false;
	v->cur = r;
	v->side = false;
	cpu->block_lo = 0;
	cpu->block_len = UINT64_MAX;
	cpu->wlog = true;
	v->running = true;
	r->res = 0;
	r->kind = run_guarded(cpu, b, jit, &r->res);
	v->running = false;
	cpu->wlog = false;
	for (unsigned int i = 0; i < r->nlog; i++)
		memcpy(r->log[i].bytes, (const void *)r->log[i].hva,
		       r->log[i].n);
}

/* Compare-and-swap of n (1, 2, 4 or 8) aligned bytes at h. */
static bool cas(hva_t h, unsigned int n, const uint8_t *from, const uint8_t *to)
{
	uint64_t f = 0, t = 0;

	memcpy(&f, from, n);
	memcpy(&t, to, n);
	switch (n) {
	case 1: {
		uint8_t e = (uint8_t)f;

		return __atomic_compare_exchange_n((uint8_t *)h, &e, (uint8_t)t,
						   false, __ATOMIC_SEQ_CST,
						   __ATOMIC_SEQ_CST);
	}
	case 2: {
		uint16_t e = (uint16_t)f;

		return __atomic_compare_exchange_n((uint16_t *)h, &e,
						   (uint16_t)t, false,
						   __ATOMIC_SEQ_CST,
						   __ATOMIC_SEQ_CST);
	}
	case 4: {
		uint32_t e = (uint32_t)f;

		return __atomic_compare_exchange_n((uint32_t *)h, &e,
						   (uint32_t)t, false,
						   __ATOMIC_SEQ_CST,
						   __ATOMIC_SEQ_CST);
	}
	default:
		return __atomic_compare_exchange_n((uint64_t *)h, &f, t, false,
						   __ATOMIC_SEQ_CST,
						   __ATOMIC_SEQ_CST);
	}
}

/* The bytes before the run of the store at h (n bytes): in a copied
 * page. */
static const uint8_t *before(const struct x86_verify *v, hva_t h)
{
	hva_t p = h & ~(hva_t)4095;

	for (unsigned int k = 0; k < v->npage; k++)
		if (v->page[k] == p)
			return v->copy[k] + (h - p);
	return NULL;
}

/*
 * Puts back the bytes run r stored, each location with one compare-and-
 * swap from what r left there to what the copy holds, so a store another
 * vCPU made since is never lost: when one fails, the ones done are
 * redone and false says r's effects stand. Also false, touching nothing,
 * for stores that cannot be taken back that way (not 1, 2, 4 or 8
 * aligned bytes, or ranges that overlap without being equal).
 */
static bool undo(struct x86_verify *v, const struct vrun *r)
{
	unsigned int idx[VLOG_MAX], k = 0;

	for (unsigned int i = r->nlog; i-- > 0;) {
		const struct vstore *s = &r->log[i];
		bool later = false;

		if ((s->n & (s->n - 1)) || s->n > 8 || (s->hva & (s->n - 1)) ||
		    !before(v, s->hva))
			return false;
		for (unsigned int j = i + 1; j < r->nlog && !later; j++) {
			const struct vstore *t = &r->log[j];

			if (t->hva == s->hva && t->n == s->n)
				later = true;
			else if (s->hva < t->hva + t->n &&
				 t->hva < s->hva + s->n)
				return false;
		}
		if (!later)
			idx[k++] = i;
	}
	for (unsigned int m = 0; m < k; m++) {
		const struct vstore *s = &r->log[idx[m]];

		if (!cas(s->hva, s->n, s->bytes, before(v, s->hva))) {
			while (m-- > 0) {
				s = &r->log[idx[m]];
				cas(s->hva, s->n, before(v, s->hva), s->bytes);
			}
			return false;
		}
	}
	return true;
}

/* Whether every store of r is to the stack: the host pages the soft TLB
 * maps RSP's and the quadword below it to. */
static bool stack_only(const struct x86_cpu *cpu, const struct vrun *r,
		       uint64_t rsp)
{
	hva_t lo = x86_ram_fast(cpu, (rsp - 8) & ~7ULL, 8, true);
	hva_t hi = x86_ram_fast(cpu, rsp & ~7ULL, 8, true);

	lo &= ~(hva_t)4095;
	hi &= ~(hva_t)4095;
	for (unsigned int i = 0; i < r->nlog; i++) {
		hva_t p = r->log[i].hva & ~(hva_t)4095;

		if (!p || (p != lo && p != hi))
			return false;
	}
	return true;
}

/* Ends the verification of a block with run r's effects in place,
 * unverified: r's result, returned or longjmped. */
static int settle(struct x86_cpu *cpu, struct x86_verify *v,
		  const struct vrun *r, jmp_buf outer)
{
	cpu->block_lo = v->vlo;
	cpu->block_len = v->vlen;
	memcpy(cpu->abort, outer, sizeof(jmp_buf));
	cpu->stat[X86_STAT_UNVERIFIED]++;
	if (r->kind)
		longjmp(cpu->abort, r->kind);
	return r->res;
}

/* What differs between the state after the interpreter's run (v->s1,
 * v->e1, v->a) and cpu's now (after run j): NULL when nothing. */
static const char *diff(struct x86_cpu *cpu, struct x86_verify *v,
			const struct vrun *j, char *buf, size_t len)
{
	struct x86_cpu *s = &v->s1;
	const struct vrun *a = &v->a;
	uint64_t fa, fj;

	if (a->kind != j->kind || (!a->kind && a->res != j->res)) {
		snprintf(buf, len,
			 "how the block ended: interpreter %d/%d, "
			 "jit %d/%d",
			 a->kind, a->res, j->kind, j->res);
		return buf;
	}
	for (unsigned int r = 0; r < 16; r++)
		if (s->gpr[r] != cpu->gpr[r]) {
			snprintf(buf, len,
				 "register %u: interpreter %#llx, jit %#llx", r,
				 (unsigned long long)s->gpr[r],
				 (unsigned long long)cpu->gpr[r]);
			return buf;
		}
#define CMP(f)                                                          \
	if (s->f != cpu->f) {                                           \
		snprintf(buf, len, #f ": interpreter %#llx, jit %#llx", \
			 (unsigned long long)s->f,                      \
			 (unsigned long long)cpu->f);                   \
		return buf;                                             \
	}
	CMP(rip)
	CMP(retired)
	fa = x86_rflags(s);
	fj = x86_rflags(cpu);
	if (fa != fj) {
		snprintf(buf, len, "rflags: interpreter %#llx, jit %#llx",
			 (unsigned long long)fa, (unsigned long long)fj);
		return buf;
	}
	CMP(attn)
	CMP(cr0)
	CMP(cr2)
	CMP(cr3)
	CMP(cr4)
	CMP(cr8)
	CMP(efer)
	CMP(ev_cr2)
	CMP(ev.pending)
	CMP(ev.vector)
	CMP(ev.kind)
	CMP(ev.error)
	CMP(ev.return_rip)
	CMP(halted)
	CMP(shutdown)
	CMP(code_tag)
#undef CMP
	if (memcmp(s->seg, cpu->seg, sizeof(s->seg)) ||
	    memcmp(&s->gdt, &cpu->gdt, sizeof(s->gdt)) ||
	    memcmp(&s->idt, &cpu->idt, sizeof(s->idt)))
		return "segment or descriptor-table registers";
	if (memcmp(&s->fpu, &cpu->fpu, sizeof(s->fpu)))
		return "x87/SSE state";
	if (memcmp(&s->io, &cpu->io, sizeof(s->io)))
		return "pending port I/O";
	if (memcmp(&v->e1, cpu->exit, sizeof(v->e1)))
		return "the exit filled in";
	if (a->nlog != j->nlog || a->overflow != j->overflow) {
		snprintf(buf, len, "stores: interpreter %u, jit %u", a->nlog,
			 j->nlog);
		return buf;
	}
	for (unsigned int i = 0; i < a->nlog; i++)
		if (a->log[i].hva != j->log[i].hva ||
		    a->log[i].n != j->log[i].n ||
		    memcmp(a->log[i].bytes, j->log[i].bytes, a->log[i].n)) {
			snprintf(buf, len,
				 "store %u: interpreter %u bytes at hva %#llx, "
				 "jit %u bytes at hva %#llx (or their bytes)",
				 i, a->log[i].n,
				 (unsigned long long)a->log[i].hva, j->log[i].n,
				 (unsigned long long)j->log[i].hva);
			return buf;
		}
	return NULL;
}

static _Noreturn void report(struct x86_cpu *cpu, const struct x86_block *b,
			     uint64_t rip, const char *what)
{
	unsigned int off = 0;

	fprintf(stderr,
		"<3>mmud: jit-verify: vCPU %u: DIVERGENCE in the block at rip "
		"%#llx (hva %#llx, %u instructions): %s\n",
		cpu->index, (unsigned long long)rip, (unsigned long long)b->hva,
		b->ninsns, what);
	for (unsigned int i = 0; i < b->ninsns; i++) {
		fprintf(stderr, "<3>mmud: jit-verify:   rip %#llx: %s\n",
			(unsigned long long)(rip + off), b->in[i].desc->name);
		off += b->in[i].len;
	}
	/* Stops the VM as a triple fault would: nothing runs on from a
	 * state two engines disagree about. */
	cpu->exit->reason = X86_EXIT_TRIPLE_FAULT;
	memset(&cpu->exit->triple, 0, sizeof(cpu->exit->triple));
	cpu->exit->triple.rip = rip;
	cpu->shutdown = true;
	cpu->stop = true;
	longjmp(cpu->abort, X86_ABORT_EXIT);
}

int x86_jit_verify_block(struct x86_cpu *cpu, const struct x86_block *b)
{
	struct x86_verify *v = cpu->verify;
	unsigned int slot = (b->hva >> 4) & (VPRED - 1);
	uint64_t rip = cpu->rip;
	jmp_buf outer;
	char buf[256];
	const char *what = NULL;

	if (!v || nondeterministic(b)) {
		cpu->stat[X86_STAT_UNVERIFIED]++;
		return x86_jit_run(cpu, b);
	}
	/* The pages this block wrote last time, copied: those the soft
	 * TLB still maps (a memslot removed since may have unmapped the
	 * others; its removal flushed every vCPU's TLB first). */
	v->npage = 0;
	if (v->pred[slot].hva == b->hva)
		for (unsigned int i = 0; i < v->pred[slot].n; i++) {
			hva_t p = v->pred[slot].page[i];

			if (!tlb_maps(cpu, p))
				continue;
			v->page[v->npage] = p;
			memcpy(v->copy[v->npage], (const void *)p, 4096);
			v->npage++;
		}
	v->nwant = 0;
	v->vlo = cpu->block_lo;
	v->vlen = cpu->block_len;
	memcpy(outer, cpu->abort, sizeof(outer));
	cpu_copy(&v->s0, cpu);
	v->e0 = *cpu->exit;
	for (unsigned int attempt = 0;; attempt++) {
		run_logged(cpu, v, b, false, &v->a);
		if (v->side || v->a.uncopied || v->a.overflow) {
			/* Run once, by the interpreter: remembered for
			 * next time. */
			v->pred[slot].hva = b->hva;
			v->pred[slot].n = v->nwant;
			memcpy(v->pred[slot].page, v->want,
			       v->nwant * sizeof(hva_t));
			return settle(cpu, v, &v->a, outer);
		}
		cpu_copy(&v->s1, cpu);
		v->e1 = *cpu->exit;
		/* With other vCPUs, only stores to this vCPU's stack are
		 * taken back: another vCPU may have seen any other before
		 * it is (smc's hand-over of rewritten code would run the
		 * old code). Overwritten by another vCPU since: the first
		 * run stands, unverified, too. */
		if ((cpu->nr_cpus > 1 &&
		     !stack_only(cpu, &v->a, v->s0.gpr[X86_RSP])) ||
		    !undo(v, &v->a))
			return settle(cpu, v, &v->a, outer);
		cpu_copy(cpu, &v->s0);
		*cpu->exit = v->e0;
		run_logged(cpu, v, b, true, &v->bj);
		what = v->bj.uncopied ? "the jit stored to a page the "
					"interpreter did not" :
					diff(cpu, v, &v->bj, buf, sizeof(buf));
		if (!what || attempt == 2 || v->bj.uncopied)
			break;
		/* Another vCPU may have stored in between: does the
		 * interpreter agree with itself? */
		if (!undo(v, &v->bj))
			return settle(cpu, v, &v->bj, outer);
		cpu_copy(cpu, &v->s0);
		*cpu->exit = v->e0;
		run_logged(cpu, v, b, false, &v->a2);
		/* It does not: the block reads what others write. The
		 * second run stands, unverified. */
		if (v->side || v->a2.uncopied || v->a2.overflow ||
		    diff(cpu, v, &v->a2, buf, sizeof(buf)) || !undo(v, &v->a2))
			return settle(cpu, v, &v->a2, outer);
		cpu_copy(cpu, &v->s0);
		*cpu->exit = v->e0;
	}
	cpu->block_lo = v->vlo;
	cpu->block_len = v->vlen;
	memcpy(cpu->abort, outer, sizeof(outer));
	if (what)
		report(cpu, b, rip, what);
	v->pred[slot].hva = b->hva;
	v->pred[slot].n = v->nwant;
	memcpy(v->pred[slot].page, v->want, v->nwant * sizeof(hva_t));
	cpu->stat[X86_STAT_VERIFIED]++;
	if (v->bj.kind)
		longjmp(cpu->abort, v->bj.kind);
	return v->bj.res;
}
