/*
 * The audit of unsync, fast zap-all, MMIO sptes and large sptes, run by
 * mmu_audit() after its own checks with mmu_lock held inside a read-side
 * section (docs/MMU.md, "What the audit checks"): no obsolete page is
 * linked from a current one, so none is reachable from a current root
 * (check 6, also after back-to-back fast zaps); unsync pages and the
 * unsync_child bitmaps (check 5); MMIO sptes (check 7); large sptes and
 * the lpage_disallow counts (check 8). It reads guest memory but changes nothing.
 * audit.c calls the page checks for each page it checks, and the slot
 * checks once.
 */
#include <errno.h>
#include <stdarg.h>

#include "mmu_int.h"

#define GPTE_ADDR_MASK (((1ULL << MMU_GUEST_MAXPHYADDR) - 1) & ~(PAGE_SIZE - 1))

static int report(char *msg, size_t msglen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int report(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	if (msglen) {
		va_start(ap, fmt);
		vsnprintf(msg, msglen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

#define R(...) report(msg, msglen, __VA_ARGS__)

static unsigned popcount_bitmap(const struct mmu_page *sp)
{
	unsigned w, n = 0;

	for (w = 0; w < MMU_PT_ENTRIES / 64; w++)
		n += (unsigned)__builtin_popcountll(sp->unsync_child_bitmap[w]);
	return n;
}

static bool has_upper_page(struct mmu *mmu, gfn_t gfn)
{
	struct list_node *h = &mmu->hash[mmu_hash_gfn(gfn)], *n;

	for (n = h->next; n != h; n = n->next) {
		struct mmu_page *sp =
			container_of(n, struct mmu_page, hash_link);

		if (sp->gfn == gfn && !sp->role.direct && sp->role.level > 1)
			return true;
	}
	return false;
}

static int check_mmio(struct mmu *mmu, const struct mmu_page *sp, unsigned i,
		      uint64_t spte, char *msg, size_t msglen)
{
	gfn_t gfn = (spte & SPTE_MMIO_GFN_MASK) >> PAGE_SHIFT;
	uint64_t gen = memslot_generation(mmu);
	const struct memslot *s;

	if (sp->role.level != 1)
		return R("MMIO spte at level %d (gfn 0x%llx index %u)",
			 sp->role.level, (unsigned long long)sp->gfn, i);
	s = memslot_lookup(mmu, gfn, NULL);
	if (s && !(gen & MEMSLOT_GEN_UPDATE_IN_PROGRESS) &&
	    mmu_mmio_spte_gen(spte) == (gen & MMIO_GEN_MASK))
		return R("MMIO spte for gfn 0x%llx still current, but memslot "
			 "%u covers the gfn",
			 (unsigned long long)gfn, s->id);
	if (!sp->role.direct && !sp->unsync) {
		const struct memslot *t = memslot_lookup(mmu, sp->gfn, NULL);
		uint64_t gpte;

		if (!t)
			return 0; /* reported by the main audit */
		gpte = atomic_load_explicit(
			(_Atomic uint64_t *)(uintptr_t)(memslot_gfn_to_hva(
								t, sp->gfn) +
							i * 8),
			memory_order_acquire);
		if (!(gpte & SPTE_P) ||
		    (gpte & GPTE_ADDR_MASK) >> PAGE_SHIFT != gfn)
			return R("MMIO spte gfn 0x%llx level 1 index %u: the "
				 "gpte 0x%llx does not map gfn 0x%llx",
				 (unsigned long long)sp->gfn, i,
				 (unsigned long long)gpte,
				 (unsigned long long)gfn);
	}
	return 0;
}

static int check_large(struct mmu *mmu, const struct mmu_page *sp, unsigned i,
		       uint64_t spte, char *msg, size_t msglen)
{
	int level = sp->role.level;
	uint64_t n = 1ULL << (9 * (level - 1));
	gfn_t frame = mmu_page_gfn_at(sp, i);
	const struct memslot *s = memslot_lookup(mmu, frame, NULL);
	unsigned shift = 9 * (unsigned)(level - 1);

	if (level > 3)
		return R("large spte at level %d", level);
	if (!s || frame & (n - 1) || frame + n > s->base_gfn + s->npages)
		return R("large spte for gfn 0x%llx level %d: no one memslot "
			 "covers its frame",
			 (unsigned long long)frame, level);
	if (spte_to_hva(spte) & (n * PAGE_SIZE - 1))
		return R("large spte for gfn 0x%llx level %d: host address "
			 "0x%llx not aligned",
			 (unsigned long long)frame, level,
			 (unsigned long long)spte_to_hva(spte));
	if (s->flags & MEMSLOT_LOG_DIRTY)
		return R("large spte for gfn 0x%llx in dirty-logged memslot %u",
			 (unsigned long long)frame, s->id);
	if (s->meta->lpage_disallow[level - 2]
				   [(frame >> shift) - (s->base_gfn >> shift)])
		return R("large spte for gfn 0x%llx level %d over a "
			 "write-tracked gfn",
			 (unsigned long long)frame, level);
	return 0;
}

int mmu_audit_ext_page_locked(struct mmu *mmu, struct mmu_page *sp, char *msg,
			      size_t msglen)
{
	bool obsolete = mmu_page_is_obsolete(mmu, sp);
	unsigned i;
	int r;

	if (sp->unsync &&
	    (sp->role.level != 1 || sp->role.direct || sp->unsync_children))
		return R("shadow page gfn 0x%llx level %d: unsync but not an "
			 "indirect level-1 page",
			 (unsigned long long)sp->gfn, sp->role.level);
	if (sp->unsync && !obsolete && has_upper_page(mmu, sp->gfn))
		return R("gfn 0x%llx: unsync, and shadowed above level 1",
			 (unsigned long long)sp->gfn);
	if (popcount_bitmap(sp) != sp->unsync_children)
		return R("shadow page gfn 0x%llx level %d: unsync_children %u, "
			 "bitmap has %u",
			 (unsigned long long)sp->gfn, sp->role.level,
			 sp->unsync_children, popcount_bitmap(sp));
	for (i = 0; i < MMU_PT_ENTRIES; i++) {
		uint64_t spte =
			atomic_load_explicit(&sp->spt[i], memory_order_relaxed);
		bool bit = sp->unsync_child_bitmap[i / 64] & (1ULL << (i % 64));
		struct mmu_page *child;

		if (is_mmio_spte(spte)) {
			r = obsolete ?
				    0 :
				    check_mmio(mmu, sp, i, spte, msg, msglen);
			if (r)
				return r;
			continue;
		}
		if (!is_spte_present(spte)) {
			if (bit)
				return R("shadow page gfn 0x%llx index %u: "
					 "unsync bit on an empty spte",
					 (unsigned long long)sp->gfn, i);
			continue;
		}
		if (is_last_spte(spte, sp->role.level)) {
			if (bit)
				return R("shadow page gfn 0x%llx index %u: "
					 "unsync bit on a leaf",
					 (unsigned long long)sp->gfn, i);
			if (sp->role.level > 1 && !obsolete) {
				r = check_large(mmu, sp, i, spte, msg, msglen);
				if (r)
					return r;
			}
			continue;
		}
		child = spte_to_child_page(spte);
		if (!obsolete && mmu_page_is_obsolete(mmu, child))
			return R("shadow page gfn 0x%llx level %d index %u: "
				 "links obsolete page gfn 0x%llx, reachable "
				 "from current roots",
				 (unsigned long long)sp->gfn, sp->role.level, i,
				 (unsigned long long)child->gfn);
		if (bit != (child->unsync || child->unsync_children))
			return R("shadow page gfn 0x%llx level %d index %u: "
				 "unsync bit %d, but the child (gfn 0x%llx) "
				 "has unsync %d, %u unsync children",
				 (unsigned long long)sp->gfn, sp->role.level, i,
				 bit, (unsigned long long)child->gfn,
				 child->unsync, child->unsync_children);
	}
	return 0;
}

/*
 * lpage_disallow: the write-tracked gfns of each frame in the slot. A
 * frame without a touched chunk has no tracked gfn (docs/MMU.md, "Touched
 * chunks"), so its count is read but its gfns are not.
 */
static int check_disallow(const struct memslot *s, char *msg, size_t msglen)
{
	gfn_t end = s->base_gfn + s->npages;
	int level;

	for (level = 2; level <= MMU_NR_LEAF_LEVELS; level++) {
		unsigned shift = 9 * (unsigned)(level - 1);
		gfn_t gfn = s->base_gfn;

		while (gfn < end) {
			gfn_t fend = ((gfn >> shift) + 1) << shift;
			uint64_t sum = 0;
			uint32_t c =
				s->meta->lpage_disallow[level - 2]
						       [(gfn >> shift) -
							(s->base_gfn >> shift)];
			gfn_t g;

			if (fend > end)
				fend = end;
			for (g = mmu_next_touched(s, gfn, fend); g < fend;
			     g = (g + 1) & ((1ULL << MMU_CHUNK_SHIFT) - 1) ?
					 g + 1 :
					 mmu_next_touched(s, g + 1, fend))
				sum += s->meta->write_track[g - s->base_gfn];
			if (sum != c)
				return R("memslot %u level %d frame of gfn "
					 "0x%llx: lpage_disallow %u, %llu "
					 "write-tracked",
					 s->id, level, (unsigned long long)gfn,
					 c, (unsigned long long)sum);
			gfn = fend;
		}
	}
	return 0;
}

int mmu_audit_ext_slots_locked(struct mmu *mmu, char *msg, size_t msglen)
{
	struct memslots *slots;
	unsigned i;
	int r;

	mmu_assert_locked(mmu);
	slots = atomic_load_explicit(&mmu->slots, memory_order_acquire);
	for (i = 0; i < slots->nr; i++) {
		r = check_disallow(slots->slots[i], msg, msglen);
		if (r)
			return r;
	}
	return 0;
}
