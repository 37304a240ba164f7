/*
 * The MMU audit: with mmu_lock held and inside a read-side section, check
 * every spte of every live shadow page against the guest page tables and
 * the memslots, every rmap entry, every parent pte and every write-track
 * count (docs/MMU.md, "What the audit checks", 1-4), and name the first
 * inconsistency.
 * It reads guest memory but changes nothing. It costs O(shadow pages *
 * 512 + touched chunks * 512): the slots' chunks no spte or shadow page
 * ever used are skipped (docs/MMU.md, "Touched chunks"). The live audit
 * splits it (docs/MMU.md, "The live audit"): what needs every page at
 * once in one pass while the vCPUs run, then each page whole, a bounded
 * batch of pages at a time.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "mmu_int.h"
#include "mmu_rcu.h"

#define GPTE_ADDR_MASK (((1ULL << MMU_GUEST_MAXPHYADDR) - 1) & ~(PAGE_SIZE - 1))

struct audit {
	struct mmu *mmu;
	char *msg;
	size_t msglen;
	struct mmu_page **live; /* sorted; NULL: links were checked before */
	size_t nlive;
	gfn_t *shadowed; /* sorted: the gfn of every indirect live page */
	size_t nshadowed;
	uint64_t deadline; /* CLOCK_MONOTONIC ns; 0: none */
	unsigned ticks;
	/* With the dirty ring on: every entry pushed and not yet reset, of
	 * every vCPU's ring, sorted; gathered at the first writable spte of
	 * a logging slot, once per mmu_lock section (ring_marks()). */
	struct ring_mark *marks;
	size_t nmarks;
	bool have_marks;
};

struct ring_mark {
	uint32_t slot;
	uint64_t offset;
};

static int report(struct audit *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int report(struct audit *a, const char *fmt, ...)
{
	va_list ap;

	if (a->msglen) {
		va_start(ap, fmt);
		vsnprintf(a->msg, a->msglen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int ptr_cmp(const void *x, const void *y)
{
	uintptr_t a = (uintptr_t) * (struct mmu_page *const *)x;
	uintptr_t b = (uintptr_t) * (struct mmu_page *const *)y;

	return a < b ? -1 : a > b;
}

static bool is_live(const struct audit *a, const struct mmu_page *sp)
{
	if (!a->live)
		return true;
	return bsearch(&sp, a->live, a->nlive, sizeof(*a->live), ptr_cmp);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* At the first call and every 64th, whether the deadline has passed. */
static int over_deadline(struct audit *a, const char *where)
{
	if (!a->deadline || a->ticks++ % 64)
		return 0;
	if (now_ns() < a->deadline)
		return 0;
	report(a, "audit stopped at its deadline, in %s", where);
	return -ETIMEDOUT;
}

/* The guest's entry i of the table in gfn, read as the walker would. */
static int read_gpte(struct audit *a, const struct mmu_page *sp, unsigned i,
		     uint64_t *gpte)
{
	const struct memslot *s = memslot_lookup(a->mmu, sp->gfn, NULL);

	if (!s)
		return report(a,
			      "shadow page gfn 0x%llx level %d: the guest "
			      "table's gfn has no memslot",
			      (unsigned long long)sp->gfn, sp->role.level);
	*gpte = atomic_load_explicit(
		(_Atomic uint64_t *)(uintptr_t)(memslot_gfn_to_hva(s, sp->gfn) +
						i * 8),
		memory_order_acquire);
	if (!(*gpte & SPTE_P))
		return report(a,
			      "shadow page gfn 0x%llx level %d index %u: spte "
			      "present but the gpte 0x%llx is not",
			      (unsigned long long)sp->gfn, sp->role.level, i,
			      (unsigned long long)*gpte);
	return 0;
}

static int mark_cmp(const void *x, const void *y)
{
	const struct ring_mark *a = x, *b = y;

	if (a->slot != b->slot)
		return a->slot < b->slot ? -1 : 1;
	return a->offset < b->offset ? -1 : a->offset > b->offset;
}

/*
 * The dirty rings' entries that stand for a page still to be reset
 * (docs/MMU.md, "The dirty ring"), read under mmu_lock: a push stores
 * the entry and dirty_index under it, and a reset clears the flags of
 * the entries it write-protected under it too, so with mmu_lock held
 * every entry in [reset_index, dirty_index) whose flags are not 0 is
 * pushed and not yet reset (DIRTY, or HARVESTED by a harvest under
 * slots_lock alone), and one whose flags are 0 has had its page
 * protected. reset_index may still move on (its store is outside
 * mmu_lock, docs/locking.md #17a), but only past entries already 0. The
 * vCPU list and each vCPU's ring pointer are read under mmu_lock, as
 * struct mmu_vcpu allows.
 */
static int ring_marks(struct audit *a)
{
	struct mmu *mmu = a->mmu;
	struct list_node *n;
	size_t cap = 0, k = 0;

	mmu_assert_locked(mmu);
	a->have_marks = true;
	for (n = mmu->vcpus.next; n != &mmu->vcpus; n = n->next) {
		struct mmu_dirty_ring *r = atomic_load_explicit(
			&container_of(n, struct mmu_vcpu, link)->ring,
			memory_order_acquire);

		if (r)
			cap += r->size;
	}
	a->marks = malloc((cap ? cap : 1) * sizeof(*a->marks));
	if (!a->marks)
		return report(a, "audit: out of memory");
	for (n = mmu->vcpus.next; n != &mmu->vcpus; n = n->next) {
		struct mmu_dirty_ring *r = atomic_load_explicit(
			&container_of(n, struct mmu_vcpu, link)->ring,
			memory_order_acquire);
		uint32_t i, end;

		if (!r)
			continue;
		end = atomic_load_explicit(&r->dirty_index,
					   memory_order_relaxed);
		i = atomic_load_explicit(&r->reset_index, memory_order_acquire);
		for (; i != end && k < cap; i++) {
			const struct mmu_dirty_gfn *e =
				&r->e[i & (r->size - 1)];

			if (!atomic_load_explicit(&e->flags,
						  memory_order_relaxed))
				continue;
			a->marks[k++] =
				(struct ring_mark){ e->slot, e->offset };
		}
	}
	a->nmarks = k;
	qsort(a->marks, a->nmarks, sizeof(*a->marks), mark_cmp);
	return 0;
}

/*
 * Whether gfn of s is marked dirty as its slot's log requires: its
 * bitmap bit, or with the dirty ring on an entry of some vCPU's ring
 * not yet reset (docs/MMU.md, "The dirty ring": a push that finds no
 * room, or a fault without a ring, marks the bitmap instead). 1 yes, 0
 * no, or the report's error.
 */
static int is_marked_dirty(struct audit *a, const struct memslot *s, gfn_t gfn)
{
	struct ring_mark key = { s->id, gfn - s->base_gfn };
	int r;

	if (atomic_load_explicit(&s->dirty_bitmap[(gfn - s->base_gfn) / 64],
				 memory_order_relaxed) &
	    (1ULL << ((gfn - s->base_gfn) % 64)))
		return 1;
	if (!mmu_dirty_ring_size(a->mmu))
		return 0;
	if (!a->have_marks) {
		r = ring_marks(a);
		if (r)
			return r;
	}
	return bsearch(&key, a->marks, a->nmarks, sizeof(*a->marks),
		       mark_cmp) != NULL;
}

struct count_ctx {
	const _Atomic uint64_t *sptep;
	unsigned n;
};

static bool count_sptep(_Atomic uint64_t *sptep, void *arg)
{
	struct count_ctx *c = arg;

	c->n += sptep == c->sptep;
	return true;
}

static int check_leaf(struct audit *a, struct mmu_page *sp, unsigned i,
		      uint64_t spte)
{
	gfn_t gfn = mmu_page_gfn_at(sp, i);
	const struct memslot *s = memslot_lookup(a->mmu, gfn, NULL);
	struct pte_list_head *rmap;
	unsigned acc = mmu_spte_access(spte), allowed = sp->role.access;
	uint64_t gpte;
	int r;

#define WHERE "spte gfn 0x%llx level %d index %u (maps gfn 0x%llx): "
#define WARGS \
	(unsigned long long)sp->gfn, sp->role.level, i, (unsigned long long)gfn
	if (!s)
		return report(a, WHERE "no memslot covers the gfn", WARGS);
	if (spte_to_hva(spte) != memslot_gfn_to_hva(s, gfn))
		return report(a,
			      WHERE "frame 0x%llx but memslot %u gives 0x%llx",
			      WARGS, (unsigned long long)spte_to_hva(spte),
			      s->id,
			      (unsigned long long)memslot_gfn_to_hva(s, gfn));
	if (((spte & SPTE_W) && !(spte & SPTE_MMU_WRITABLE)) ||
	    ((spte & SPTE_MMU_WRITABLE) && !(spte & SPTE_HOST_WRITABLE)))
		return report(a,
			      WHERE "W / MMU-writable / host-writable out "
				    "of order (0x%llx)",
			      WARGS, (unsigned long long)spte);
	if (!!(spte & SPTE_HOST_WRITABLE) == !!(s->flags & MEMSLOT_READONLY))
		return report(a,
			      WHERE "host-writable disagrees with memslot "
				    "%u flags 0x%x",
			      WARGS, s->id, s->flags);
	/* Unless every page shadowing it is unsync (unsync.c). */
	if ((spte & SPTE_W) && s->meta->write_track[gfn - s->base_gfn] != 0 &&
	    !mmu_gfn_all_unsync_locked(a->mmu, gfn))
		return report(a, WHERE "writable but the gfn is write-tracked",
			      WARGS);
	/* On the dirty ring the mark is mostly a ring entry (docs/MMU.md,
	 * "The dirty ring"). */
	if ((spte & SPTE_W) && s->dirty_bitmap && !s->meta->manual_dirty) {
		r = is_marked_dirty(a, s, gfn);
		/* A fast page fault marks just after its cmpxchg of W,
		 * without mmu_lock: look again once it is done. */
		if (!r) {
			mmu_wait_lockless_walks_locked(a->mmu);
			r = is_marked_dirty(a, s, gfn);
		}
		if (r < 0)
			return r;
		if (!r)
			return report(a,
				      WHERE "writable in a dirty-logged slot "
					    "but not marked dirty%s",
				      WARGS,
				      mmu_dirty_ring_size(a->mmu) ?
					      " (in no vCPU's dirty ring "
					      "unreset, nor in its bitmap)" :
					      "");
	}
	if (!mmu_chunk_is_touched(s, gfn))
		return report(a,
			      WHERE "its chunk of memslot %u is not marked "
				    "touched",
			      WARGS, s->id);
	rmap = mmu_rmap_head(s, gfn, sp->role.level);
	{
		struct count_ctx c = { &sp->spt[i], 0 };

		pte_list_for_each(rmap, count_sptep, &c);
		if (c.n != 1)
			return report(a,
				      WHERE "on the rmap of memslot %u %u "
					    "times, not once",
				      WARGS, s->id, c.n);
	}
	/* An unsync page may lag its guest table until the next sync. */
	if (!sp->role.direct && !sp->unsync) {
		r = read_gpte(a, sp, i, &gpte);
		if (r)
			return r;
		/* A large leaf maps its frame (PAT is bit 12 there). */
		if ((((gpte & GPTE_ADDR_MASK) >> PAGE_SHIFT) &
		     ~((1ULL << (9 * (sp->role.level - 1))) - 1)) != gfn)
			return report(a,
				      WHERE "the gpte 0x%llx maps another gfn",
				      WARGS, (unsigned long long)gpte);
		allowed &= mmu_gpte_access(gpte, sp->role.efer_nx);
		if (!(gpte & SPTE_D))
			allowed &= ~MMU_ACC_WRITE;
	}
	if (acc & ~allowed)
		return report(a,
			      WHERE
			      "grants access 0x%x beyond the guest's 0x%x",
			      WARGS, acc, allowed);
	return 0;
#undef WHERE
#undef WARGS
}

static int check_link(struct audit *a, struct mmu_page *sp, unsigned i,
		      uint64_t spte)
{
	struct mmu_page *child = spte_to_child_page(spte);
	union mmu_page_role want = sp->role;
	gfn_t want_gfn;
	uint64_t gpte;
	int r;

#define WHERE "link gfn 0x%llx level %d index %u: "
#define WARGS (unsigned long long)sp->gfn, sp->role.level, i
	if (spte != (SPTE_P | SPTE_W | SPTE_U | SPTE_A | SPTE_MMU_PRESENT |
		     (uint64_t)(uintptr_t)child))
		return report(a, WHERE "malformed non-leaf spte 0x%llx", WARGS,
			      (unsigned long long)spte);
	if (!is_live(a, child))
		return report(a,
			      WHERE "points at 0x%llx, not a live shadow "
				    "page",
			      WARGS, (unsigned long long)spte_to_hva(spte));
	if (!pte_list_contains(&child->parent_ptes, &sp->spt[i]))
		return report(a, WHERE "missing from the child's parent ptes",
			      WARGS);
	want.level = sp->role.level - 1;
	if (sp->role.direct) {
		want_gfn = mmu_page_gfn_at(sp, i);
	} else {
		r = read_gpte(a, sp, i, &gpte);
		if (r)
			return r;
		want.access &= mmu_gpte_access(gpte, sp->role.efer_nx);
		if (gpte & SPTE_PS) {
			/* A guest large page, split by direct pages whose
			 * access may have lost W while the gpte was clean. */
			want.direct = 1;
			want_gfn = ((gpte & GPTE_ADDR_MASK) >> PAGE_SHIFT) &
				   ~((1ULL << (9 * (sp->role.level - 1))) - 1);
			if (!(gpte & SPTE_D) &&
			    child->role.access ==
				    (want.access & ~MMU_ACC_WRITE))
				want.access &= ~MMU_ACC_WRITE;
		} else {
			want_gfn = (gpte & GPTE_ADDR_MASK) >> PAGE_SHIFT;
		}
	}
	if (child->gfn != want_gfn)
		return report(a, WHERE "child gfn 0x%llx, expected 0x%llx",
			      WARGS, (unsigned long long)child->gfn,
			      (unsigned long long)want_gfn);
	if (child->role.word != want.word)
		return report(a, WHERE "child role 0x%x, expected 0x%x", WARGS,
			      child->role.word, want.word);
	return 0;
#undef WHERE
#undef WARGS
}

static bool check_parent(_Atomic uint64_t *sptep, void *arg)
{
	struct mmu_page *child = arg;
	uint64_t spte = atomic_load_explicit(sptep, memory_order_relaxed);

	return is_spte_present(spte) && spte_to_child_page(spte) == child &&
	       sptep_to_page(sptep)->role.level == child->role.level + 1;
}

static int check_page(struct audit *a, struct mmu_page *sp)
{
	unsigned i, n = 0;
	int r;

	/* Left by a fast zap-all for mmu_zap_obsolete_pages(): it need
	 * not agree with the guest any more, only be unreachable from
	 * current roots (audit_ext.c). */
	if (mmu_page_is_obsolete(a->mmu, sp))
		return 0;
	/* Its write tracking lives in the slot (docs/MMU.md, "What the audit
	 * checks", 4). */
	if (!sp->role.direct) {
		const struct memslot *s = memslot_lookup(a->mmu, sp->gfn, NULL);

		if (!s)
			return report(a,
				      "shadow page gfn 0x%llx level %d: no "
				      "memslot covers the table it shadows",
				      (unsigned long long)sp->gfn,
				      sp->role.level);
		if (!mmu_chunk_is_touched(s, sp->gfn))
			return report(a,
				      "shadow page gfn 0x%llx level %d: its "
				      "chunk of memslot %u is not marked "
				      "touched",
				      (unsigned long long)sp->gfn,
				      sp->role.level, s->id);
	}
	for (i = 0; i < MMU_PT_ENTRIES; i++) {
		uint64_t spte =
			atomic_load_explicit(&sp->spt[i], memory_order_relaxed);

		if (!is_spte_present(spte)) {
			if (spte && !is_mmio_spte(spte))
				return report(
					a,
					"shadow page gfn 0x%llx index %u: "
					"non-present spte 0x%llx is not "
					"zero",
					(unsigned long long)sp->gfn, i,
					(unsigned long long)spte);
			continue;
		}
		n++;
		r = is_last_spte(spte, sp->role.level) ?
			    check_leaf(a, sp, i, spte) :
			    check_link(a, sp, i, spte);
		if (r)
			return r;
	}
	if (n != sp->nr_present)
		return report(a,
			      "shadow page gfn 0x%llx: %u present sptes, "
			      "count says %u",
			      (unsigned long long)sp->gfn, n, sp->nr_present);
	if (!pte_list_for_each(&sp->parent_ptes, check_parent, sp))
		return report(a,
			      "shadow page gfn 0x%llx level %d: a parent "
			      "pte does not point at it",
			      (unsigned long long)sp->gfn, sp->role.level);
	return 0;
}

struct rmap_ctx {
	gfn_t gfn;
	int level;
	bool ok;
};

static bool check_rmap_entry(_Atomic uint64_t *sptep, void *arg)
{
	struct rmap_ctx *c = arg;
	struct mmu_page *sp = sptep_to_page(sptep);
	uint64_t spte = atomic_load_explicit(sptep, memory_order_relaxed);

	c->ok = is_spte_present(spte) && is_last_spte(spte, sp->role.level) &&
		sp->role.level == c->level &&
		mmu_page_gfn_at(sp, (unsigned)(sptep - sp->spt)) >>
				(9 * (c->level - 1)) ==
			c->gfn >> (9 * (c->level - 1));
	return c->ok;
}

static int gfn_cmp(const void *x, const void *y)
{
	gfn_t a = *(const gfn_t *)x, b = *(const gfn_t *)y;

	return a < b ? -1 : a > b;
}

/* The rmap heads of gfn, each level's checked once: at its first gfn in
 * the slot (heads above level 1 are shared by a frame). */
static int check_rmaps_at(struct audit *a, const struct memslot *s, gfn_t gfn)
{
	int level;

	for (level = 1; level <= MMU_NR_LEAF_LEVELS; level++) {
		struct rmap_ctx c = { gfn, level, true };

		if (level > 1 && gfn != s->base_gfn &&
		    gfn & ((1ULL << (9 * (level - 1))) - 1))
			continue;
		pte_list_for_each(mmu_rmap_head(s, gfn, level),
				  check_rmap_entry, &c);
		if (!c.ok)
			return report(a,
				      "rmap of memslot %u gfn 0x%llx level "
				      "%d: an entry is not a present leaf "
				      "spte mapping that gfn",
				      s->id, (unsigned long long)gfn, level);
	}
	return 0;
}

/*
 * The slot's rmaps and write-track counts, over its touched chunks only
 * (docs/MMU.md, "Touched chunks"): the gfns the shadow pages shadow,
 * sorted, are counted against write_track chunk by chunk, and one that
 * lies in an untouched chunk is reported. Memory: one gfn per shadow
 * page, not one count per gfn of the slot.
 */
static int check_slot(struct audit *a, const struct memslot *s)
{
	gfn_t end = s->base_gfn + s->npages, gfn;
	const gfn_t *g;
	size_t lo = 0, hi = a->nshadowed, ng, k = 0;
	int r = 0;

	/* The slot's part of the sorted gfns. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a->shadowed[mid] < s->base_gfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	g = a->shadowed + lo;
	for (ng = 0; lo + ng < a->nshadowed && g[ng] < end; ng++)
		;
	for (gfn = mmu_next_touched(s, s->base_gfn, end); gfn < end && !r;
	     gfn = (gfn + 1) & ((1ULL << MMU_CHUNK_SHIFT) - 1) ?
			   gfn + 1 :
			   mmu_next_touched(s, gfn + 1, end)) {
		unsigned shadows = 0;

		if (k < ng && g[k] < gfn)
			break; /* a shadowed gfn in an untouched chunk */
		while (k < ng && g[k] == gfn) {
			shadows++;
			k++;
		}
		if (shadows != s->meta->write_track[gfn - s->base_gfn]) {
			r = report(a,
				   "gfn 0x%llx: write-track count %u, but %u "
				   "shadow pages shadow it",
				   (unsigned long long)gfn,
				   s->meta->write_track[gfn - s->base_gfn],
				   shadows);
			break;
		}
		r = check_rmaps_at(a, s, gfn);
		if (!r && !((gfn + 1) & ((1ULL << MMU_CHUNK_SHIFT) - 1)))
			r = over_deadline(a, "the memslots");
	}
	if (!r && k < ng)
		r = report(a,
			   "shadow page gfn 0x%llx: the gfn's chunk of memslot "
			   "%u is not marked touched",
			   (unsigned long long)g[k], s->id);
	return r;
}

static unsigned vcpus_on_root(struct audit *a, const struct mmu_page *sp)
{
	struct list_node *n;
	unsigned c = 0;

	for (n = a->mmu->vcpus.next; n != &a->mmu->vcpus; n = n->next)
		c += container_of(n, struct mmu_vcpu, link)->root == sp;
	return c;
}

static bool on_list(const struct list_node *h, const struct mmu_page *sp)
{
	const struct list_node *n;

	for (n = h->next; n != h; n = n->next)
		if (container_of(n, struct mmu_page, link) == sp)
			return true;
	return false;
}

/*
 * Roots (docs/MMU.md, "What the audit checks", 6): every vCPU's root is
 * a live page or a
 * zapped root still pinned; each page's root_count is the number of
 * vCPUs using it; a zapped root has nothing left in it.
 */
static int check_roots(struct audit *a)
{
	struct list_node *n;

	for (n = a->mmu->invalid_roots.next; n != &a->mmu->invalid_roots;
	     n = n->next) {
		struct mmu_page *sp = container_of(n, struct mmu_page, link);

		if (!sp->role.invalid || sp->root_count <= 0 ||
		    sp->nr_present || sp->parent_ptes.val)
			return report(a,
				      "zapped root gfn 0x%llx: not an empty "
				      "pinned invalid page (root_count %d, %u "
				      "sptes)",
				      (unsigned long long)sp->gfn,
				      sp->root_count, sp->nr_present);
		if (vcpus_on_root(a, sp) != (unsigned)sp->root_count)
			return report(a,
				      "zapped root gfn 0x%llx: root_count %d "
				      "but %u vCPUs use it",
				      (unsigned long long)sp->gfn,
				      sp->root_count, vcpus_on_root(a, sp));
	}
	for (n = a->mmu->active_pages.next; n != &a->mmu->active_pages;
	     n = n->next) {
		struct mmu_page *sp = container_of(n, struct mmu_page, link);

		if (vcpus_on_root(a, sp) != (unsigned)sp->root_count)
			return report(a,
				      "shadow page gfn 0x%llx level %d: "
				      "root_count %d but %u vCPUs use it as "
				      "their root",
				      (unsigned long long)sp->gfn,
				      sp->role.level, sp->root_count,
				      vcpus_on_root(a, sp));
	}
	for (n = a->mmu->vcpus.next; n != &a->mmu->vcpus; n = n->next) {
		struct mmu_vcpu *v = container_of(n, struct mmu_vcpu, link);

		if (v->root && !is_live(a, v->root) &&
		    !on_list(&a->mmu->invalid_roots, v->root))
			return report(a,
				      "vCPU %u: its root is not a live "
				      "shadow page",
				      v->index);
	}
	return 0;
}

/* One page: its own checks and audit_ext.c's. */
static int audit_page(struct audit *a, struct mmu_page *sp)
{
	int r = check_page(a, sp);

	return r ? r : mmu_audit_ext_page_locked(a->mmu, sp, a->msg, a->msglen);
}

/*
 * The live audit's begin, for one page: every link points at a live page.
 * That is all a step cannot check without the whole set of live pages; a
 * level-1 page has no links.
 */
static int check_links_live(struct audit *a, struct mmu_page *sp)
{
	unsigned i;

	if (sp->role.level == 1)
		return 0;
	for (i = 0; i < MMU_PT_ENTRIES; i++) {
		uint64_t spte =
			atomic_load_explicit(&sp->spt[i], memory_order_relaxed);

		if (is_spte_present(spte) &&
		    !is_last_spte(spte, sp->role.level) &&
		    !is_live(a, spte_to_child_page(spte)))
			return report(
				a,
				"link gfn 0x%llx level %d index %u: "
				"points at 0x%llx, not a live shadow page",
				(unsigned long long)sp->gfn, sp->role.level, i,
				(unsigned long long)spte_to_hva(spte));
	}
	return 0;
}

/*
 * Every page, the roots and the slots, in one mmu_lock section. begin:
 * of each page only its links (the live audit's steps check the rest).
 */
static int audit_all_locked(struct audit *a, bool begin)
{
	struct mmu *mmu = a->mmu;
	struct memslots *slots;
	struct list_node *n;
	size_t k = 0;
	unsigned i;
	int r = 0;

	a->live = malloc((mmu->nr_pages + 1) * sizeof(*a->live));
	if (!a->live)
		return report(a, "audit: out of memory");
	for (n = mmu->active_pages.next; n != &mmu->active_pages; n = n->next)
		if (k < mmu->nr_pages)
			a->live[k++] = container_of(n, struct mmu_page, link);
	a->nlive = k;
	qsort(a->live, a->nlive, sizeof(*a->live), ptr_cmp);
	/* The gfns the slots' write tracking counts, once for all slots. */
	a->shadowed = malloc((mmu->nr_pages + 1) * sizeof(*a->shadowed));
	if (!a->shadowed) {
		free(a->live);
		a->live = NULL;
		return report(a, "audit: out of memory");
	}
	a->nshadowed = 0;
	for (n = mmu->active_pages.next; n != &mmu->active_pages; n = n->next) {
		struct mmu_page *sp = container_of(n, struct mmu_page, link);

		if (!sp->role.direct && a->nshadowed < mmu->nr_pages)
			a->shadowed[a->nshadowed++] = sp->gfn;
	}
	qsort(a->shadowed, a->nshadowed, sizeof(*a->shadowed), gfn_cmp);
	for (n = mmu->active_pages.next; n != &mmu->active_pages && !r;
	     n = n->next) {
		struct mmu_page *sp = container_of(n, struct mmu_page, link);

		r = begin ? check_links_live(a, sp) : audit_page(a, sp);
		if (!r)
			r = over_deadline(a, "the shadow pages");
	}
	if (!r)
		r = check_roots(a);
	slots = mmu_rcu_dereference(mmu->slots);
	for (i = 0; i < slots->nr && !r; i++)
		r = check_slot(a, slots->slots[i]);
	if (!r)
		r = mmu_audit_ext_slots_locked(mmu, a->msg, a->msglen);
	free(a->live);
	free(a->shadowed);
	a->live = NULL;
	a->shadowed = NULL;
	return r;
}

int mmu_audit(struct mmu *mmu, char *msg, size_t msglen)
{
	struct audit a = { .mmu = mmu, .msg = msg, .msglen = msglen };
	int r;

	if (msglen)
		msg[0] = 0;
	mmu_rcu_read_lock();
	mmu_lock_acquire(mmu);
	r = audit_all_locked(&a, false);
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
	free(a.marks);
	return r;
}

int mmu_audit_begin(struct mmu *mmu, uint64_t deadline_ns, char *msg,
		    size_t msglen)
{
	struct audit a = { .mmu = mmu,
			   .msg = msg,
			   .msglen = msglen,
			   .deadline = deadline_ns };
	struct list_node *n;
	int r;

	if (msglen)
		msg[0] = 0;
	mmu_rcu_read_lock();
	mmu_lock_acquire(mmu);
	r = audit_all_locked(&a, true);
	mmu->audit_cursor = NULL;
	if (!r) {
		/* Every page alive now waits for mmu_audit_step(); pages
		 * made later start at 0, go in before the cursor and are not
		 * this pass's. */
		mmu->audit_seq++;
		mmu->audit_cursor = mmu->active_pages.next;
		for (n = mmu->active_pages.next; n != &mmu->active_pages;
		     n = n->next) {
			container_of(n, struct mmu_page, link)->audit_seq =
				mmu->audit_seq;
			r++;
		}
	}
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
	return r;
}

int mmu_audit_step(struct mmu *mmu, unsigned max_pages, char *msg,
		   size_t msglen)
{
	struct audit a = { .mmu = mmu, .msg = msg, .msglen = msglen };
	struct list_node *n;
	unsigned done = 0;
	int r = 0;

	if (msglen)
		msg[0] = 0;
	mmu_rcu_read_lock();
	mmu_lock_acquire(mmu);
	/* From the cursor on: O(max_pages), not O(live pages). */
	for (n = mmu->audit_cursor; n && n != &mmu->active_pages; n = n->next) {
		struct mmu_page *sp = container_of(n, struct mmu_page, link);

		if (sp->audit_seq != mmu->audit_seq)
			continue;
		if (done == max_pages) {
			r = 1;
			break;
		}
		sp->audit_seq = 0;
		done++;
		r = audit_page(&a, sp);
		if (r)
			break;
	}
	/* Where the next step goes on; NULL once the pass is over. */
	mmu->audit_cursor = r == 1 ? n : NULL;
	mmu_lock_release(mmu);
	mmu_rcu_read_unlock();
	free(a.marks);
	return r;
}
