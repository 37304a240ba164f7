/*
 * The explorer's VM and oracle (docs/EXPLORER.md). world_run() builds a
 * fresh MMU, vCPUs (core/vcpu's, in their boot state, never started as
 * threads: actors drive vcpu_run_once() one instruction at a time) and
 * memslots, assembles each vCPU's script into guest code, runs the
 * actors under the scheduler, and after every step checks:
 *  - every soft-TLB entry and every shadow leaf a vCPU in guest mode can
 *    use for a watched gva maps a page the guest's own tables map there
 *    now, or mapped there since that vCPU last invalidated the gva
 *    (INVLPG, MOV CR3): what the architecture lets a TLB keep;
 *  - the host address of each lies in a memslot, the one in force or,
 *    while a memory operation is in progress, the one before it;
 *  - no MMIO spte that matches the current generation covers RAM;
 * and at the end that every guest store to a logged slot was reported by
 * a harvest that returned after it, and that the MMU audit is clean.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmu_int.h"
#include "mmu_rcu.h"
#include "vcpu_int.h"
#include "world.h"
#include "x86_int.h"

#define NREGIONS 3
#define MAX_ALLOWED 8
#define MAX_WRITES 64
#define MAX_HARVESTS 8
#define NO_GPA (~0ULL)

struct slot_copy {
	uint32_t id;
	gfn_t base;
	uint64_t npages;
	hva_t hva;
	bool logging;
};

struct harvest {
	size_t step; /* returned after this step */
	uint32_t id;
	gfn_t base;
	uint64_t bits[(W_SPARE_PAGES > W_LOW_PAGES ? W_SPARE_PAGES :
						     W_LOW_PAGES) /
		      64];
};

struct world {
	const struct scenario *sc;
	struct mmu *mmu;
	struct vcpu_set *set;
	struct vcpu *v[WORLD_MAX_VCPUS];
	uint8_t *ram[NREGIONS];
	uint8_t *copy[NREGIONS]; /* guest RAM as of the last store seen */
	uint64_t npages[NREGIONS];
	/* rip of the start of each op; [nops] is the HLT */
	gva_t op_rip[WORLD_MAX_VCPUS][WORLD_MAX_OPS + 1];
	unsigned done_ops[WORLD_MAX_VCPUS];
	/* allowed[vcpu][watch]: gpa | 1 when writable; NO_GPA: absent */
	uint64_t allowed[WORLD_MAX_VCPUS][WORLD_MAX_WATCH][MAX_ALLOWED];
	unsigned nallowed[WORLD_MAX_VCPUS][WORLD_MAX_WATCH];
	/* the slot map before the control operation in progress */
	bool op_in_progress;
	struct slot_copy before[4];
	unsigned nbefore;
	/* logging on (and its start returned) since this step, per slot */
	long logging_since[4];
	struct {
		gpa_t gpa;
		uint32_t slot;
		uint64_t page; /* within the slot: its dirty bit */
		size_t step;
	} writes[MAX_WRITES];
	unsigned nwrites;
	/* Guest stores whose instruction retired but whose exit (the
	 * MMU's half of a tracked or emulated write) is not handled yet:
	 * the old value, until the vCPU is about to run guest code again. */
	struct {
		const uint64_t *addr;
		uint64_t old;
		unsigned vcpu;
	} inflight[16];
	unsigned ninflight;
	struct harvest harvests[MAX_HARVESTS];
	unsigned nharvests;
	/* What the last manual harvest of each slot cleared, for the
	 * CTL_CLEAR after it. */
	uint64_t manual_bits[4][W_LOW_PAGES / 64];
	char stopped[160];
	bool bad_stop;
};

/* ---- guest code ---------------------------------------------------------- */

static uint8_t *put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
	return p + 8;
}

/* Assembles ops into code at p; records where each op starts. */
static void assemble(const struct world_op *ops, unsigned n, uint8_t *p,
		     gva_t base, gva_t *rips)
{
	uint8_t *start = p;

	for (unsigned i = 0; i < n; i++) {
		rips[i] = base + (gva_t)(p - start);
		switch (ops[i].kind) {
		case OP_LOAD: /* REX.W A1: mov rax, moffs64 */
			*p++ = 0x48;
			*p++ = 0xa1;
			p = put64(p, ops[i].gva);
			break;
		case OP_STORE: /* mov rax, imm64; mov moffs64, rax */
			*p++ = 0x48;
			*p++ = 0xb8;
			p = put64(p, ops[i].val);
			*p++ = 0x48;
			*p++ = 0xa3;
			p = put64(p, ops[i].gva);
			break;
		case OP_INVLPG: /* mov rax, imm64; invlpg [rax] */
			*p++ = 0x48;
			*p++ = 0xb8;
			p = put64(p, ops[i].gva);
			*p++ = 0x0f;
			*p++ = 0x01;
			*p++ = 0x38;
			break;
		case OP_CR3: /* mov rax, imm64; mov cr3, rax */
			*p++ = 0x48;
			*p++ = 0xb8;
			p = put64(p, ops[i].val);
			*p++ = 0x0f;
			*p++ = 0x22;
			*p++ = 0xd8;
			break;
		}
	}
	rips[n] = base + (gva_t)(p - start);
	*p = 0xf4; /* hlt: the vCPU stops for good */
}

/* ---- vCPU callbacks -------------------------------------------------------- */

static void ops_pio(void *opaque, unsigned int vcpu, uint16_t port,
		    unsigned int size, bool in, uint32_t *value)
{
	(void)opaque, (void)vcpu, (void)port, (void)size, (void)in;
	*value = ~0u;
}

static uint64_t ops_mmio_read(void *opaque, gpa_t gpa, unsigned int size)
{
	(void)opaque, (void)gpa, (void)size;
	return ~0ULL;
}

static void ops_mmio_write(void *opaque, gpa_t gpa, unsigned int size,
			   uint64_t value)
{
	(void)opaque, (void)gpa, (void)size, (void)value;
}

static void ops_stopped(void *opaque, unsigned int vcpu,
			enum vcpu_stop_reason why, const char *detail)
{
	struct world *w = opaque;

	if (why != VCPU_STOP_HALTED) {
		snprintf(w->stopped, sizeof(w->stopped), "vCPU%u stopped: %s",
			 vcpu, detail);
		w->bad_stop = true;
	}
}

static const struct vcpu_ops world_vcpu_ops = {
	.pio = ops_pio,
	.mmio_read = ops_mmio_read,
	.mmio_write = ops_mmio_write,
	.stopped = ops_stopped,
};

/* ---- actors ---------------------------------------------------------------- */

static void vcpu_actor(void *arg)
{
	struct vcpu *v = arg;

	mmu_rcu_read_lock();
	x86_set_kick(v->cpu, &v->kick);
	/*
	 * A scenario's guest ends in HLT with interrupts off and nothing
	 * can wake it: the actor ends there, outside guest mode. It must
	 * not go round again, as vcpu_run_once() would sleep in block()
	 * until another vCPU halts too (halted for good needs them all),
	 * and a sleep the scheduler does not know about holds the baton.
	 */
	while (!v->halted && !(x86_halted(v->cpu) && !x86_event_ready(v->cpu)))
		vcpu_run_once(v, 1);
	mmu_rcu_read_unlock();
}

static void snapshot_slots(struct world *w, struct slot_copy *out, unsigned *n)
{
	struct memslots *s = atomic_load(&w->mmu->slots);

	*n = 0;
	for (unsigned i = 0; i < s->nr && i < 4; i++) {
		out[i].id = s->slots[i]->id;
		out[i].base = s->slots[i]->base_gfn;
		out[i].npages = s->slots[i]->npages;
		out[i].hva = s->slots[i]->hva;
		out[i].logging = s->slots[i]->dirty_bitmap != NULL;
		(*n)++;
	}
}

static gfn_t slot_base(struct world *w, uint32_t id)
{
	struct memslots *s = atomic_load(&w->mmu->slots);

	for (unsigned i = 0; i < s->nr; i++)
		if (s->slots[i]->id == id)
			return s->slots[i]->base_gfn;
	return 0;
}

static uint64_t slot_npages(struct world *w, uint32_t id)
{
	struct memslots *s = atomic_load(&w->mmu->slots);

	for (unsigned i = 0; i < s->nr; i++)
		if (s->slots[i]->id == id)
			return s->slots[i]->npages;
	return 1;
}

static void ctl_actor(void *arg)
{
	struct world *w = arg;
	const struct scenario *sc = w->sc;
	char err[160];
	int r = 0;

	for (unsigned i = 0; i < sc->nctl; i++) {
		const struct ctl_op *op = &sc->ctl[i];
		struct memslots *s;

		snapshot_slots(w, w->before, &w->nbefore);
		w->op_in_progress = true;
		switch (op->kind) {
		case CTL_ADD:
			explorer_note("ctl: memslot add %u at gfn %#llx",
				      op->id, (unsigned long long)op->gfn);
			r = memslot_add(w->mmu, op->id, op->gfn, op->npages,
					(hva_t)(uintptr_t)w->ram[op->region], 0,
					err, sizeof(err));
			break;
		case CTL_DELETE:
			explorer_note("ctl: memslot delete %u", op->id);
			r = memslot_delete(w->mmu, op->id, err, sizeof(err));
			/* Its log goes with it: nothing left to harvest. */
			if (!r)
				w->logging_since[op->id] = -1;
			break;
		case CTL_MOVE:
			explorer_note("ctl: memslot move %u to gfn %#llx",
				      op->id, (unsigned long long)op->gfn);
			r = memslot_move(w->mmu, op->id, op->gfn, err,
					 sizeof(err));
			break;
		case CTL_LOG_START:
			explorer_note("ctl: dirty log start %u", op->id);
			r = memslot_set_flags(w->mmu, op->id, MEMSLOT_LOG_DIRTY,
					      err, sizeof(err));
			if (!r)
				w->logging_since[op->id] =
					(long)explorer_step();
			break;
		case CTL_HARVEST: {
			struct harvest *h = &w->harvests[w->nharvests];

			explorer_note("ctl: dirty log harvest %u", op->id);
			memset(h, 0, sizeof(*h));
			r = memslot_dirty_log_get(w->mmu, op->id, h->bits,
						  ARRAY_SIZE(h->bits), err,
						  sizeof(err));
			h->step = explorer_step();
			h->id = op->id;
			h->base = slot_base(w, op->id);
			if (!r && w->nharvests < MAX_HARVESTS - 1)
				w->nharvests++;
			break;
		}
		case CTL_HARVEST_MANUAL:
			explorer_note("ctl: dirty log manual harvest %u",
				      op->id);
			memset(w->manual_bits[op->id], 0,
			       sizeof(w->manual_bits[op->id]));
			r = memslot_dirty_log_fetch(w->mmu, op->id, 0,
						    slot_npages(w, op->id),
						    MEMSLOT_FETCH_CLEAR,
						    w->manual_bits[op->id], err,
						    sizeof(err));
			break;
		case CTL_CLEAR: {
			/* Recorded as a harvest: the caller copies the
			 * cleared pages once the clear has returned. */
			struct harvest *h = &w->harvests[w->nharvests];

			explorer_note("ctl: dirty log clear %u", op->id);
			memset(h, 0, sizeof(*h));
			memcpy(h->bits, w->manual_bits[op->id],
			       sizeof(w->manual_bits[op->id]));
			r = memslot_dirty_log_clear(w->mmu, op->id, 0,
						    slot_npages(w, op->id),
						    w->manual_bits[op->id],
						    NULL, err, sizeof(err));
			h->step = explorer_step();
			h->id = op->id;
			h->base = slot_base(w, op->id);
			if (!r && w->nharvests < MAX_HARVESTS - 1)
				w->nharvests++;
			break;
		}
		case CTL_ZAP_FAST:
			explorer_note("ctl: fast zap-all");
			mmu_zap_all_fast(w->mmu);
			mmu_zap_obsolete_pages(w->mmu);
			break;
		case CTL_ZAP_ALL:
			explorer_note("ctl: slow zap-all");
			mmu_zap_all(w->mmu);
			break;
		case CTL_SET_GEN:
			/* As if val - gen updates had come and gone (each
			 * leaves MMIO sptes alone but for the wrap). */
			s = atomic_load(&w->mmu->slots);
			atomic_store(&s->generation, op->val);
			break;
		}
		w->op_in_progress = false;
		explorer_note("ctl: returned %d", r);
		if (r)
			explorer_fail("control operation %u failed: %s", i,
				      err);
	}
}

/* ---- the reference walk and the oracle ---------------------------------- */

static const uint8_t *low_ram(const struct world *w)
{
	return w->ram[0];
}

static uint64_t guest_word(const struct world *w, const uint64_t *p,
			   bool committed)
{
	if (committed)
		for (unsigned i = 0; i < w->ninflight; i++)
			if (w->inflight[i].addr == p)
				return w->inflight[i].old;
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* The guest's translation of gva from its own tables (all in region 0):
 * gpa | 1 if writable, or NO_GPA. committed: without the stores still
 * in flight (a store is complete when its vCPU has handled its exit). */
static uint64_t ref_walk_as(const struct world *w, gva_t gva, bool committed)
{
	uint64_t table = W_PML4, e = 0;
	bool wr = true;

	for (int level = 4; level >= 1; level--) {
		unsigned idx = (gva >> (12 + 9 * (level - 1))) & 511;

		if (table + 4096 > W_LOW_PAGES * PAGE_SIZE)
			return NO_GPA;
		e = guest_word(w,
			       (const uint64_t *)(low_ram(w) + table + idx * 8),
			       committed);
		if (!(e & 1))
			return NO_GPA;
		if (!(e & 2))
			wr = false;
		table = e & 0x000ffffffffff000ULL;
	}
	return table | (wr ? 1 : 0);
}

static uint64_t ref_walk(const struct world *w, gva_t gva)
{
	return ref_walk_as(w, gva, false);
}

static bool in_map(const struct slot_copy *m, unsigned n, hva_t hva, gpa_t *gpa)
{
	for (unsigned i = 0; i < n; i++)
		if (hva >= m[i].hva &&
		    hva < m[i].hva + m[i].npages * PAGE_SIZE) {
			*gpa = (m[i].base << PAGE_SHIFT) + (hva - m[i].hva);
			return true;
		}
	return false;
}

static bool allowed_has(const struct world *w, unsigned c, unsigned k,
			gpa_t gpa, bool writable)
{
	for (unsigned i = 0; i < w->nallowed[c][k]; i++) {
		uint64_t a = w->allowed[c][k][i];

		if (a == NO_GPA)
			continue;
		/* CR0.WP=0: supervisor writes ignore W (SDM vol. 3,
		 * 4.6.1); the scripts run at CPL 0. */
		if ((a & ~1ULL) == gpa &&
		    (!writable || (a & 1) || w->sc->wp_off))
			return true;
	}
	return false;
}

static void allowed_add(struct world *w, unsigned c, unsigned k, uint64_t t)
{
	for (unsigned i = 0; i < w->nallowed[c][k]; i++)
		if (w->allowed[c][k][i] == t)
			return;
	if (w->nallowed[c][k] < MAX_ALLOWED)
		w->allowed[c][k][w->nallowed[c][k]++] = t;
}

/* An invalidation by vCPU c: it may keep only what the tables say now,
 * with or without the stores other vCPUs have not completed. */
static void allowed_reset(struct world *w, unsigned c, unsigned k)
{
	w->nallowed[c][k] = 0;
	allowed_add(w, c, k, ref_walk(w, w->sc->watch[k]));
	allowed_add(w, c, k, ref_walk_as(w, w->sc->watch[k], true));
}

/* Check one translation (host page hva, writable) of watched gva k used
 * by vCPU c; what: where it was found. */
static bool check_translation(struct world *w, unsigned c, unsigned k,
			      hva_t hva, bool writable, const char *what,
			      char *msg, size_t len)
{
	struct slot_copy now[4];
	unsigned nnow;
	gpa_t gpa = 0;

	snapshot_slots(w, now, &nnow);
	if (!in_map(now, nnow, hva, &gpa) &&
	    !(w->op_in_progress && in_map(w->before, w->nbefore, hva, &gpa))) {
		snprintf(msg, len,
			 "vCPU%u %s for gva %#llx holds host address %#llx, "
			 "which no memslot maps (a deleted or moved slot's "
			 "memory)",
			 c, what, (unsigned long long)w->sc->watch[k],
			 (unsigned long long)hva);
		return false;
	}
	if (allowed_has(w, c, k, gpa, writable))
		return true;
	if (w->op_in_progress && in_map(w->before, w->nbefore, hva, &gpa) &&
	    allowed_has(w, c, k, gpa, writable))
		return true;
	snprintf(msg, len,
		 "vCPU%u %s maps gva %#llx to gpa %#llx%s, but the guest's "
		 "tables map it to %#llx%s and have not mapped it to that "
		 "page since the vCPU last invalidated it",
		 c, what, (unsigned long long)w->sc->watch[k],
		 (unsigned long long)gpa, writable ? " writable" : "",
		 (unsigned long long)(ref_walk(w, w->sc->watch[k]) & ~1ULL),
		 (ref_walk(w, w->sc->watch[k]) & 1) ? " writable" : "");
	return false;
}

/* The level-1 shadow entry of gva from a root, or 0. */
static uint64_t shadow_leaf(const _Atomic uint64_t *root, gva_t gva,
			    int *level_out)
{
	const _Atomic uint64_t *t = root;

	for (int level = 4; t; level--) {
		uint64_t s = atomic_load_explicit(&t[spte_index(gva, level)],
						  memory_order_acquire);

		*level_out = level;
		if (!(s & SPTE_P) || is_last_spte(s, level))
			return s;
		t = (const _Atomic uint64_t *)(uintptr_t)spte_to_hva(s);
	}
	return 0;
}

/* Is some actor other than vCPU c inside an MMU operation, one that may
 * still be waiting for c to take a flush request? */
static bool flush_may_be_pending(const struct world *w, unsigned c)
{
	if (w->op_in_progress)
		return true;
	for (unsigned o = 0; o < w->sc->nvcpus; o++)
		if (o != c && !w->v[o]->halted &&
		    explorer_paused_at((int)o) != EXPLORE_GUEST_INSN)
			return true;
	return false;
}

/*
 * May vCPU c use its translations now? Only when it is about to run a
 * guest instruction in guest mode: between an INVLPG and the MMU's half
 * of it (after the exit) it holds what it is about to drop. A flush
 * request it has not taken yet covers what it holds while the operation
 * that made it is still going on (its requester waits for the vCPU to
 * leave guest mode); once every operation has returned, a vCPU still in
 * guest mode with the bit set is one a flush with wait failed to wait for.
 */
static bool vcpu_can_use(const struct world *w, unsigned c,
			 const struct vcpu *v)
{
	uint64_t req = atomic_load(&((struct vcpu *)v)->requests);
	bool flush_pending = req & ((1ULL << VCPU_REQ_TLB_FLUSH) |
				    (1ULL << VCPU_REQ_FREE_OBSOLETE_ROOTS));

	return explorer_paused_at((int)c) == EXPLORE_GUEST_INSN &&
	       atomic_load(&((struct vcpu *)v)->mode) == IN_GUEST_MODE &&
	       !(flush_pending && flush_may_be_pending(w, c));
}

/* Which ops of vCPU c completed since the last look: invalidations reset
 * what the vCPU may still hold. */
static void advance_ops(struct world *w, unsigned c)
{
	const struct scenario *sc = w->sc;
	struct x86_regs r;
	unsigned k;

	x86_get_regs(w->v[c]->cpu, &r);
	while (w->done_ops[c] < sc->nops[c] &&
	       r.rip >= w->op_rip[c][w->done_ops[c] + 1]) {
		const struct world_op *op = &sc->ops[c][w->done_ops[c]];
		static const char *const kinds[] = { "load", "store", "invlpg",
						     "mov cr3" };

		explorer_note("     vCPU%u retired op %u: %s %#llx (%#llx)", c,
			      w->done_ops[c], kinds[op->kind],
			      (unsigned long long)op->gva,
			      (unsigned long long)op->val);
		switch (op->kind) {
		case OP_INVLPG:
			for (k = 0; k < sc->nwatch; k++)
				if ((sc->watch[k] >> 12) == (op->gva >> 12))
					allowed_reset(w, c, k);
			break;
		case OP_CR3:
			for (k = 0; k < sc->nwatch; k++)
				allowed_reset(w, c, k);
			break;
		case OP_STORE:
		case OP_LOAD:
			break;
		}
		w->done_ops[c]++;
	}
}

/* Records where vCPU c's guest stores landed since the last look (A and
 * D bits the walker sets are not stores). */
static void record_stores(struct world *w, unsigned vc)
{
	struct slot_copy now[4];
	unsigned nnow;

	snapshot_slots(w, now, &nnow);
	for (unsigned r = 0; r < NREGIONS; r++) {
		const uint64_t *m = (const uint64_t *)w->ram[r];
		uint64_t *c = (uint64_t *)w->copy[r];

		if (!m)
			continue;
		for (uint64_t i = 0; i < w->npages[r] * 512; i++) {
			uint64_t v = __atomic_load_n(&m[i], __ATOMIC_ACQUIRE);
			gpa_t gpa;

			if (v == c[i])
				continue;
			if (((v ^ c[i]) & ~0x60ULL) != 0 &&
			    in_map(now, nnow, (hva_t)(uintptr_t)&m[i], &gpa) &&
			    w->nwrites < MAX_WRITES) {
				w->writes[w->nwrites].gpa = gpa;
				w->writes[w->nwrites].step = explorer_step();
				for (unsigned s = 0; s < nnow; s++)
					if ((gpa >> 12) - now[s].base <
					    now[s].npages) {
						w->writes[w->nwrites].slot =
							now[s].id;
						w->writes[w->nwrites].page =
							(gpa >> 12) -
							now[s].base;
					}
				w->nwrites++;
			}
			if (((v ^ c[i]) & ~0x60ULL) != 0 &&
			    w->ninflight < ARRAY_SIZE(w->inflight)) {
				w->inflight[w->ninflight].addr = &m[i];
				w->inflight[w->ninflight].old = c[i];
				w->inflight[w->ninflight].vcpu = vc;
				w->ninflight++;
			}
			c[i] = v;
		}
	}
}

static bool check_mmio_sptes(struct world *w, const _Atomic uint64_t *root,
			     char *msg, size_t len)
{
	struct memslots *s = atomic_load(&w->mmu->slots);
	uint64_t gen = atomic_load(&s->generation);

	if (gen & MEMSLOT_GEN_UPDATE_IN_PROGRESS)
		return true;
	for (unsigned k = 0; k < w->sc->nwatch; k++) {
		int level = 0;
		uint64_t spte = shadow_leaf(root, w->sc->watch[k], &level);
		gfn_t gfn;

		if (level != 1 || !is_mmio_spte(spte) ||
		    mmu_mmio_spte_gen(spte) != (gen & MMIO_GEN_MASK))
			continue;
		gfn = (spte & SPTE_MMIO_GFN_MASK) >> PAGE_SHIFT;
		if (memslots_find(s, gfn, NULL)) {
			snprintf(msg, len,
				 "the MMIO spte for gva %#llx (gfn %#llx) "
				 "matches generation %#llx, but gfn %#llx is "
				 "RAM in memslot %u now",
				 (unsigned long long)w->sc->watch[k],
				 (unsigned long long)gfn,
				 (unsigned long long)gen,
				 (unsigned long long)gfn,
				 memslots_find(s, gfn, NULL)->id);
			return false;
		}
	}
	return true;
}

static bool check_dirty(struct world *w, char *msg, size_t len)
{
	for (unsigned i = 0; i < w->nwrites; i++) {
		bool found = false;
		uint32_t id = w->writes[i].slot;

		if (w->logging_since[id] < 0 ||
		    (long)w->writes[i].step <= w->logging_since[id])
			continue;
		for (unsigned h = 0; h < w->nharvests && !found; h++) {
			const struct harvest *hv = &w->harvests[h];
			uint64_t b = w->writes[i].page;

			if (hv->id != id || hv->step < w->writes[i].step ||
			    b >= ARRAY_SIZE(hv->bits) * 64)
				continue;
			found = hv->bits[b / 64] >> (b % 64) & 1;
		}
		if (!found) {
			snprintf(msg, len,
				 "the guest store to gpa %#llx at step %zu is "
				 "in no dirty-log harvest that returned after "
				 "it: a write lost to migration",
				 (unsigned long long)w->writes[i].gpa,
				 w->writes[i].step);
			return false;
		}
	}
	return true;
}

static bool oracle(void *arg, bool final, char *msg, size_t len)
{
	struct world *w = arg;
	const struct scenario *sc = w->sc;

	/* Guest memory changes only by vCPU stores (and the walker's A/D
	 * bits): whatever changed, the actor of this step stored it. */
	if (explorer_last_actor() >= 0 &&
	    (unsigned)explorer_last_actor() < sc->nvcpus)
		record_stores(w, (unsigned)explorer_last_actor());
	for (unsigned c = 0; c < sc->nvcpus; c++) {
		advance_ops(w, c);
		/* Back at guest code (or done): its stores are complete. */
		if (explorer_paused_at((int)c) == EXPLORE_GUEST_INSN ||
		    w->v[c]->halted) {
			for (unsigned i = 0; i < w->ninflight;) {
				if (w->inflight[i].vcpu == c)
					w->inflight[i] =
						w->inflight[--w->ninflight];
				else
					i++;
			}
		}
	}
	if (w->bad_stop) {
		snprintf(msg, len, "%s", w->stopped);
		return false;
	}
	for (unsigned c = 0; c < sc->nvcpus; c++)
		for (unsigned k = 0; k < sc->nwatch; k++)
			allowed_add(w, c, k, ref_walk(w, sc->watch[k]));
	for (unsigned c = 0; c < sc->nvcpus && !final; c++) {
		struct vcpu *v = w->v[c];
		struct x86_cpu *cpu = v->cpu;
		const _Atomic uint64_t *root = mmu_vcpu_root(v->mmu_vcpu);

		/* An obsolete root is never walked again: its vCPU drops it
		 * before it next enters guest mode, and the MMIO fast path
		 * declines it. */
		if (root &&
		    !mmu_page_is_obsolete(w->mmu, sptep_to_page(root)) &&
		    !check_mmio_sptes(w, root, msg, len))
			return false;
		if (!vcpu_can_use(w, c, v))
			continue;
		/* In guest mode the CPU walks the root it was given. */
		root = (const _Atomic uint64_t *)(uintptr_t)cpu->shadow_root;
		for (unsigned k = 0; k < sc->nwatch; k++) {
			gva_t gva = sc->watch[k];
			const struct x86_tlb_entry *e =
				&cpu->tlb[(gva >> 12) & (X86_TLB_SIZE - 1)];
			uint64_t spte;
			int level = 0;

			if (x86_tlb_hit(cpu, e, gva) && e->hva) {
				if (!check_translation(
					    w, c, k, e->hva,
					    e->rights & X86_ACC_WRITE,
					    "soft-TLB entry", msg, len))
					return false;
				if (!e->whva && e->gpa) {
					gpa_t gpa = 0;
					struct slot_copy now[4];
					unsigned nnow;

					snapshot_slots(w, now, &nnow);
					if (in_map(now, nnow, e->hva, &gpa) &&
					    gpa != e->gpa &&
					    !w->op_in_progress) {
						snprintf(
							msg, len,
							"vCPU%u reports its "
							"writes to gva %#llx "
							"as gpa %#llx, but "
							"the page is gpa "
							"%#llx now",
							c,
							(unsigned long long)gva,
							(unsigned long long)
								e->gpa,
							(unsigned long long)gpa);
						return false;
					}
				}
			}
			if (!root)
				continue;
			spte = shadow_leaf(root, gva, &level);
			if (is_spte_present(spte) &&
			    !check_translation(
				    w, c, k,
				    spte_to_hva(spte) +
					    (level > 1 ?
						     (gva &
						      ((PAGE_SIZE
							<< (9 * (level - 1))) -
						       1) &
						      PAGE_MASK) :
						     0),
				    spte & SPTE_W, "shadow pte", msg, len))
				return false;
		}
	}
	if (final) {
		if (mmu_audit(w->mmu, msg, len)) {
			char tmp[400];

			snprintf(tmp, sizeof(tmp), "the MMU audit: %s", msg);
			snprintf(msg, len, "%s", tmp);
			return false;
		}
	}
	return true;
}

/* ---- the trace ------------------------------------------------------------- */

static int vcpu_of_word(const struct world *w, const void *obj)
{
	for (unsigned c = 0; c < w->sc->nvcpus; c++)
		if (obj == &w->v[c]->requests || obj == &w->v[c]->mode ||
		    obj == w->v[c])
			return (int)c;
	return -1;
}

/* gpa of a host address in guest RAM, or NO_GPA. */
static gpa_t gpa_of(struct world *w, hva_t hva)
{
	struct slot_copy now[4];
	unsigned nnow;
	gpa_t gpa;

	snapshot_slots(w, now, &nnow);
	return in_map(now, nnow, hva, &gpa) ? gpa : NO_GPA;
}

static void describe_spte(struct world *w, const void *obj, uint64_t val,
			  char *buf, size_t len)
{
	const struct mmu_page *sp = sptep_to_page(obj);
	unsigned i = (unsigned)((const _Atomic uint64_t *)obj - sp->spt);
	int n = snprintf(buf, len,
			 "[%u] of the level-%u page of gfn %#llx%s := ", i,
			 sp->role.level, (unsigned long long)sp->gfn,
			 sp->role.direct ? " (direct)" : "");

	if (n < 0 || (size_t)n >= len)
		return;
	if (!val)
		snprintf(buf + n, len - (size_t)n, "0 (zapped)");
	else if (is_mmio_spte(val))
		snprintf(buf + n, len - (size_t)n, "MMIO gfn %#llx stamp %llu",
			 (unsigned long long)((val & SPTE_MMIO_GFN_MASK) >>
					      PAGE_SHIFT),
			 (unsigned long long)mmu_mmio_spte_gen(val));
	else if (is_last_spte(val, sp->role.level))
		snprintf(buf + n, len - (size_t)n, "gpa %#llx %s%s",
			 (unsigned long long)gpa_of(w, spte_to_hva(val)),
			 (val & SPTE_W) ? "W" : "RO",
			 (val & SPTE_MMU_WRITABLE) ? " mmu-writable" : "");
	else
		snprintf(buf + n, len - (size_t)n,
			 "link to the page of gfn %#llx",
			 (unsigned long long)spte_to_child_page(val)->gfn);
}

static void describe_insn(struct world *w, unsigned c, char *buf, size_t len)
{
	static const char *const kinds[] = { "load", "store", "invlpg",
					     "mov cr3" };
	const struct scenario *sc = w->sc;
	struct x86_regs r;

	x86_get_regs(w->v[c]->cpu, &r);
	for (unsigned k = 0; k < sc->nops[c]; k++)
		if (r.rip >= w->op_rip[c][k] && r.rip < w->op_rip[c][k + 1]) {
			snprintf(buf, len, "op %u (%s %#llx, %#llx)%s", k,
				 kinds[sc->ops[c][k].kind],
				 (unsigned long long)sc->ops[c][k].gva,
				 (unsigned long long)sc->ops[c][k].val,
				 r.rip == w->op_rip[c][k] &&
						 sc->ops[c][k].kind != OP_LOAD ?
					 " loading rax" :
					 "");
			return;
		}
	snprintf(buf, len, "hlt");
}

static void describe(void *arg, int point, const void *obj, uint64_t val,
		     char *buf, size_t len)
{
	struct world *w = arg;
	int c = vcpu_of_word(w, obj);

	switch (point) {
	case -1:
		if (obj == &w->mmu->mmu_lock)
			snprintf(buf, len, "mmu_lock");
		else if (obj == &w->mmu->slots_lock)
			snprintf(buf, len, "slots_lock");
		break;
	case EXPLORE_SPTE_STORE:
		describe_spte(w, obj, val, buf, len);
		break;
	case EXPLORE_GPTE_READ:
		snprintf(buf, len, "at gpa %#llx (level %llu)",
			 (unsigned long long)gpa_of(w, (hva_t)(uintptr_t)obj),
			 (unsigned long long)val);
		break;
	case EXPLORE_FAULT_WALKED:
		snprintf(buf, len, "gpa %#llx", (unsigned long long)val);
		break;
	case EXPLORE_REQUEST:
		snprintf(buf, len, "%s of vCPU%d",
			 val == VCPU_REQ_TLB_FLUSH ? "TLB_FLUSH" :
			 val == VCPU_REQ_FREE_OBSOLETE_ROOTS ?
						     "FREE_OBSOLETE_ROOTS" :
						     "a request",
			 c);
		break;
	case EXPLORE_KICK:
		snprintf(buf, len, "vCPU%d", c);
		break;
	case EXPLORE_MODE:
		snprintf(buf, len, "of vCPU%d := %s", c,
			 val == IN_GUEST_MODE ? "IN_GUEST_MODE" :
			 val == READING_SHADOW_PAGE_TABLES ?
						"READING_SHADOW_PAGE_TABLES" :
						"OUTSIDE_GUEST_MODE");
		break;
	case EXPLORE_GUEST_INSN:
		if (c >= 0)
			describe_insn(w, (unsigned)c, buf, len);
		break;
	case EXPLORE_DIRTY:
		snprintf(buf, len, "word %p (a mark, or a harvest's exchange)",
			 obj);
		break;
	case EXPLORE_GEN:
		snprintf(buf, len, "%#llx", (unsigned long long)val);
		break;
	case EXPLORE_RMAP_WALK:
		snprintf(buf, len, "entry %llu at %p", (unsigned long long)val,
			 obj);
		break;
	}
}

/* ---- setup and teardown -------------------------------------------------- */

static void put_pte(struct world *w, gpa_t table, unsigned idx, uint64_t v)
{
	memcpy(w->ram[0] + table + idx * 8, &v, 8);
}

static void build(struct world *w, const struct scenario *sc)
{
	char err[160];
	int r;

	w->npages[0] = W_LOW_PAGES;
	w->npages[1] = W_DATA_PAGES;
	w->npages[2] = W_SPARE_PAGES;
	for (unsigned i = 0; i < NREGIONS; i++) {
		w->ram[i] = aligned_alloc(PAGE_SIZE, w->npages[i] * PAGE_SIZE);
		w->copy[i] = malloc(w->npages[i] * PAGE_SIZE);
		if (!w->ram[i] || !w->copy[i])
			abort();
		memset(w->ram[i], 0, w->npages[i] * PAGE_SIZE);
	}
	for (unsigned i = 0; i < 4; i++)
		w->logging_since[i] = -1;
	put_pte(w, W_PML4, 0, W_PDPT | W_PTE_PW);
	put_pte(w, W_PDPT, 0, W_PD | W_PTE_PW);
	put_pte(w, W_PD, 0, W_PT0 | W_PTE_PW);
	put_pte(w, W_PD, 1, W_T | W_PTE_PW);
	for (unsigned i = 0; i < W_LOW_PAGES; i++)
		put_pte(w, W_PT0, i, (uint64_t)i * PAGE_SIZE | W_PTE_PW);
	for (unsigned i = 0; i < W_DATA_PAGES; i++)
		put_pte(w, W_PT0, (W_DATA_GPA >> 12) + i,
			(W_DATA_GPA + i * PAGE_SIZE) | W_PTE_PW);
	for (unsigned i = 0; i < W_SPARE_PAGES; i++)
		put_pte(w, W_PT0, (W_SPARE_GPA >> 12) + i,
			(W_SPARE_GPA + i * PAGE_SIZE) | W_PTE_PW);
	for (unsigned i = 0; i < 8; i++)
		if (sc->t_gpa[i] || sc->t_flags[i])
			put_pte(w, W_T, i, sc->t_gpa[i] | sc->t_flags[i]);
	/* Recognisable data: page n of region r holds 0x5a00 + r * 64 + n
	 * in its first word. */
	for (unsigned g = 1; g < NREGIONS; g++)
		for (unsigned n = 0; n < w->npages[g]; n++)
			*(uint64_t *)(w->ram[g] + n * PAGE_SIZE) =
				0x5a00 + g * 64 + n;

	w->set = vcpu_set_create(sc->nvcpus);
	w->mmu = mmu_create(&vcpu_mmu_ops, w->set);
	if (!w->set || !w->mmu)
		abort();
	mmu_set_unsync(w->mmu, sc->unsync);
	for (unsigned o = 0; o < MMU_OPT_NR; o++)
		if (sc->mmu_options[o])
			mmu_option_set(w->mmu, o, sc->mmu_options[o] - 1u);
	r = memslot_add(w->mmu, 0, 0, W_LOW_PAGES, (hva_t)(uintptr_t)w->ram[0],
			sc->log_slot0 ? MEMSLOT_LOG_DIRTY : 0, err,
			sizeof(err));
	r |= memslot_add(w->mmu, 1, W_DATA_GPA >> 12, W_DATA_PAGES,
			 (hva_t)(uintptr_t)w->ram[1],
			 sc->log_slot1 ? MEMSLOT_LOG_DIRTY : 0, err,
			 sizeof(err));
	if (r) {
		fprintf(stderr, "explorer: %s\n", err);
		abort();
	}
	if (sc->log_slot0)
		w->logging_since[0] = 0;
	if (sc->log_slot1)
		w->logging_since[1] = 0;
	if (sc->gen) {
		struct memslots *s = atomic_load(&w->mmu->slots);

		atomic_store(&s->generation, sc->gen);
	}
	for (unsigned c = 0; c < sc->nvcpus; c++) {
		gpa_t code = W_CODE + c * PAGE_SIZE;

		assemble(sc->ops[c], sc->nops[c], w->ram[0] + code, code,
			 w->op_rip[c]);
		w->v[c] = vcpu_create(w->set, c, w->mmu, code, &world_vcpu_ops,
				      w);
		if (!w->v[c])
			abort();
		if (sc->wp_off) {
			struct x86_sregs s;

			x86_get_sregs(w->v[c]->cpu, &s);
			s.cr0 &= ~X86_CR0_WP;
			x86_set_sregs(w->v[c]->cpu, &s);
		}
	}
	for (unsigned g = 0; g < NREGIONS; g++)
		memcpy(w->copy[g], w->ram[g], w->npages[g] * PAGE_SIZE);
	for (unsigned c = 0; c < sc->nvcpus; c++)
		for (unsigned k = 0; k < sc->nwatch; k++)
			allowed_reset(w, c, k);
}

static void teardown(struct world *w)
{
	for (unsigned c = 0; c < w->sc->nvcpus; c++)
		vcpu_destroy(w->v[c]);
	mmu_destroy(w->mmu);
	vcpu_set_destroy(w->set);
	for (unsigned i = 0; i < NREGIONS; i++) {
		free(w->ram[i]);
		free(w->copy[i]);
	}
}

void world_run(const struct scenario *sc, const struct explorer_config *cfg,
	       struct explorer_run *run)
{
	static const char *const names[] = { "vCPU0", "vCPU1", "vCPU2" };
	struct world *w = calloc(1, sizeof(*w));
	struct explorer *ex;
	char msg[512];

	if (!w)
		abort();
	w->sc = sc;
	build(w, sc);
	ex = explorer_new(cfg, run);
	for (unsigned c = 0; c < sc->nvcpus; c++)
		explorer_add_actor(ex, names[c], vcpu_actor, w->v[c]);
	if (sc->nctl)
		explorer_add_actor(ex, "control", ctl_actor, w);
	explorer_set_oracle(ex, oracle, w);
	explorer_set_describer(ex, describe, w);
	explorer_run(ex);
	if (run->failed && strstr(run->failure, "lock: no")) {
		/* Actors are parked for good inside the MMU: leak it all. */
		return;
	}
	/* The last harvest, at rest, closes the dirty-log check. */
	if (!run->failed) {
		for (unsigned id = 0; id < 2; id++) {
			struct harvest *h = &w->harvests[w->nharvests];

			if (w->logging_since[id] < 0)
				continue;
			memset(h, 0, sizeof(*h));
			if (memslot_dirty_log_get(w->mmu, id, h->bits,
						  ARRAY_SIZE(h->bits), msg,
						  sizeof(msg)) == 0 &&
			    w->nharvests < MAX_HARVESTS - 1) {
				h->step = run->steps;
				h->id = id;
				h->base = slot_base(w, id);
				w->nharvests++;
			}
		}
		if (!check_dirty(w, msg, sizeof(msg)))
			explorer_fail("at the end: %s", msg);
	}
	explorer_free(ex);
	teardown(w);
	free(w);
}
