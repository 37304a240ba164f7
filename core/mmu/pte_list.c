/*
 * pte lists: the sets of spte pointers behind rmaps (the leaf sptes that
 * map a gfn) and parent ptes (the non-leaf sptes that point to a shadow
 * page), docs/MMU.md, "Rmaps and parent ptes". One pointer is stored inline in the head word; more
 * go into a chain of descriptors (struct pte_list_desc in mmu_int.h).
 * Everything here runs under mmu_lock.
 */
#include <stdlib.h>
#include <string.h>

#include "mmu_int.h"

static struct pte_list_desc *desc_of(uintptr_t val)
{
	return (struct pte_list_desc *)(val & ~(uintptr_t)1);
}

static struct pte_list_desc *desc_take(struct pte_desc_cache *c)
{
	MMUD_ASSERT(c->nr > 0);
	return c->d[--c->nr];
}

void pte_list_add(struct pte_desc_cache *c, struct pte_list_head *head,
		  _Atomic uint64_t *sptep)
{
	struct pte_list_desc *d;

	if (!head->val) {
		head->val = (uintptr_t)sptep;
		return;
	}
	if (!(head->val & 1)) {
		d = desc_take(c);
		memset(d, 0, sizeof(*d));
		d->oldest = d;
		d->sptes[0] = (_Atomic uint64_t *)head->val;
		d->sptes[1] = sptep;
		d->spte_count = 2;
		d->total = 2;
		head->val = (uintptr_t)d | 1;
		return;
	}
	d = desc_of(head->val);
	if (d->spte_count == PTE_LIST_EXT) {
		struct pte_list_desc *n = desc_take(c);

		memset(n, 0, sizeof(*n));
		n->more = d;
		n->oldest = d->oldest;
		n->total = d->total;
		d->newer = n;
		d->oldest = NULL;
		head->val = (uintptr_t)n | 1;
		d = n;
	}
	d->sptes[d->spte_count++] = sptep;
	d->total++;
}

/*
 * Removes entry i of descriptor d from the chain headed by h. The hole is
 * refilled from the oldest descriptor when d is that one, else from the
 * head, so every descriptor between them stays full; the one that gave
 * its last entry is freed.
 */
static void pte_list_take_out(struct pte_list_head *head,
			      struct pte_list_desc *h, struct pte_list_desc *d,
			      unsigned i)
{
	struct pte_list_desc *o = h->oldest, *n;

	h->total--;
	if (d == o && o != h) {
		d->sptes[i] = o->sptes[--o->spte_count];
		o->sptes[o->spte_count] = NULL;
		if (o->spte_count)
			return;
		h->oldest = o->newer;
		o->newer->more = NULL;
		free(o);
		return;
	}
	d->sptes[i] = h->sptes[--h->spte_count];
	h->sptes[h->spte_count] = NULL;
	if (h->spte_count)
		return;
	n = h->more;
	if (n) {
		n->newer = NULL;
		n->oldest = o;
		n->total = h->total;
		head->val = (uintptr_t)n | 1;
	} else {
		head->val = 0;
	}
	free(h);
}

static int desc_find(const struct pte_list_desc *d,
		     const _Atomic uint64_t *sptep)
{
	for (unsigned i = 0; i < d->spte_count; i++)
		if (d->sptes[i] == sptep)
			return (int)i;
	return -1;
}

/* Searches from the newest and the oldest descriptor at once, one
 * descriptor from each end per step, until the two meet. */
bool pte_list_remove(struct pte_list_head *head, const _Atomic uint64_t *sptep)
{
	struct pte_list_desc *h, *f, *b;
	int i;

	if (!head->val)
		return false;
	if (!(head->val & 1)) {
		if ((const _Atomic uint64_t *)head->val != sptep)
			return false;
		head->val = 0;
		return true;
	}
	h = desc_of(head->val);
	for (f = h, b = h->oldest;; f = f->more, b = b->newer) {
		i = desc_find(f, sptep);
		if (i >= 0) {
			pte_list_take_out(head, h, f, (unsigned)i);
			return true;
		}
		if (f == b)
			return false;
		i = desc_find(b, sptep);
		if (i >= 0) {
			pte_list_take_out(head, h, b, (unsigned)i);
			return true;
		}
		if (f->more == b)
			return false;
	}
}

unsigned pte_list_count(const struct pte_list_head *head)
{
	if (!head->val)
		return 0;
	if (!(head->val & 1))
		return 1;
	return desc_of(head->val)->total;
}

bool pte_list_for_each(const struct pte_list_head *head,
		       bool (*fn)(_Atomic uint64_t *sptep, void *arg),
		       void *arg)
{
	struct pte_list_desc *d;
	unsigned i;

	if (!head->val)
		return true;
	if (!(head->val & 1))
		return fn((_Atomic uint64_t *)head->val, arg);
	for (d = desc_of(head->val); d; d = d->more)
		for (i = 0; i < d->spte_count; i++)
			if (!fn(d->sptes[i], arg))
				return false;
	return true;
}

static bool match_sptep(_Atomic uint64_t *sptep, void *arg)
{
	return sptep != arg;
}

bool pte_list_contains(const struct pte_list_head *head,
		       const _Atomic uint64_t *sptep)
{
	return !pte_list_for_each(head, match_sptep, (void *)sptep);
}

_Atomic uint64_t *pte_list_first(const struct pte_list_head *head)
{
	if (!head->val)
		return NULL;
	if (!(head->val & 1))
		return (_Atomic uint64_t *)head->val;
	return desc_of(head->val)->sptes[0];
}
