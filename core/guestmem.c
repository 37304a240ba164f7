/*
 * Hot-added memslots (guestmem.h): validation, memfd-backed mappings, the
 * MMU's memslot calls in the right order, and dirty-log harvest. The MMU
 * owns the slot array vCPUs read; this file owns which hot slots exist and
 * their host memory. One mutex serializes its callers (the control plane's
 * worker threads); vCPUs never take it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guestmem.h"
#include "mmu.h"
#include "mmu_rcu.h"

struct hot_slot {
	uint32_t id;
	gpa_t gpa;
	uint64_t size;
	bool readonly, log_dirty;
	int fd;
	void *hva;
	void *reservation;
	size_t reservation_len;
};

/* Legend: (c) constant after creation; (guestmem->lock) under it. */
struct guestmem {
	struct mmu *mmu; /* (c) */
	struct guestmem_range *reserved; /* (c) */
	unsigned int nr_reserved; /* (c) */
	pthread_mutex_t lock;
	struct hot_slot slots[GUESTMEM_MAX_SLOTS]; /* (guestmem->lock) */
	unsigned int nr_slots; /* (guestmem->lock) */
	bool dump; /* (guestmem->lock) slots go into core dumps */
	/* (guestmem->lock) what the slots may add up to, and the maxmem and
	 * boot RAM it comes from, for the refusal; limit 0: none. */
	uint64_t limit, maxmem, base;
	/* (guestmem->lock) guestmem_set_reader(): the migration. */
	guestmem_reader_fn *reader;
	void *reader_ctx;
	const char *busy;
};

static int fail(char *err, size_t errlen, int e, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int e, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -e;
}

struct guestmem *guestmem_create(struct mmu *mmu,
				 const struct guestmem_range *reserved,
				 unsigned int nr_reserved)
{
	struct guestmem *gm = calloc(1, sizeof(*gm));

	if (!gm)
		return NULL;
	gm->reserved =
		calloc(nr_reserved ? nr_reserved : 1, sizeof(*gm->reserved));
	if (!gm->reserved) {
		free(gm);
		return NULL;
	}
	memcpy(gm->reserved, reserved, nr_reserved * sizeof(*reserved));
	gm->nr_reserved = nr_reserved;
	gm->mmu = mmu;
	pthread_mutex_init(&gm->lock, NULL);
	return gm;
}

static void unmap_slot(struct hot_slot *s)
{
	munmap(s->reservation, s->reservation_len);
	close(s->fd);
}

void guestmem_destroy(struct guestmem *gm)
{
	if (!gm)
		return;
	while (gm->nr_slots)
		guestmem_remove(gm, gm->slots[0].id, NULL, 0);
	pthread_mutex_destroy(&gm->lock);
	free(gm->reserved);
	free(gm);
}

static bool overlaps(gpa_t a, uint64_t asize, gpa_t b, uint64_t bsize)
{
	return a < b + bsize && b < a + asize;
}

static struct hot_slot *find_locked(struct guestmem *gm, uint32_t id)
{
	for (unsigned int i = 0; i < gm->nr_slots; i++)
		if (gm->slots[i].id == id)
			return &gm->slots[i];
	return NULL;
}

static int check_locked(struct guestmem *gm, gpa_t gpa, uint64_t size,
			char *err, size_t errlen)
{
	if (size == 0)
		return fail(err, errlen, EINVAL, "size: must not be zero");
	if (size & (PAGE_SIZE - 1))
		return fail(err, errlen, EINVAL,
			    "size: %#llx is not a multiple of 4 KiB",
			    (unsigned long long)size);
	if (size > GUESTMEM_MAX_SIZE)
		return fail(err, errlen, EINVAL,
			    "size: %#llx is larger than the limit %#llx",
			    (unsigned long long)size,
			    (unsigned long long)GUESTMEM_MAX_SIZE);
	if (gpa & (PAGE_SIZE - 1))
		return fail(err, errlen, EINVAL,
			    "gpa: %#llx is not 4 KiB aligned",
			    (unsigned long long)gpa);
	if (gpa >= MMU_GFN_LIMIT << PAGE_SHIFT ||
	    size > (MMU_GFN_LIMIT << PAGE_SHIFT) - gpa)
		return fail(err, errlen, EINVAL,
			    "gpa: [%#llx, +%#llx) is beyond the guest's "
			    "46-bit physical address space",
			    (unsigned long long)gpa, (unsigned long long)size);
	for (unsigned int i = 0; i < gm->nr_reserved; i++) {
		const struct guestmem_range *r = &gm->reserved[i];

		if (overlaps(gpa, size, r->gpa, r->size))
			return fail(err, errlen, EEXIST,
				    "gpa: [%#llx, +%#llx) overlaps %s at "
				    "[%#llx, +%#llx)",
				    (unsigned long long)gpa,
				    (unsigned long long)size, r->what,
				    (unsigned long long)r->gpa,
				    (unsigned long long)r->size);
	}
	for (unsigned int i = 0; i < gm->nr_slots; i++) {
		const struct hot_slot *s = &gm->slots[i];

		if (overlaps(gpa, size, s->gpa, s->size))
			return fail(err, errlen, EEXIST,
				    "gpa: [%#llx, +%#llx) overlaps slot %u at "
				    "[%#llx, +%#llx)",
				    (unsigned long long)gpa,
				    (unsigned long long)size, s->id,
				    (unsigned long long)s->gpa,
				    (unsigned long long)s->size);
	}
	if (gm->nr_slots == GUESTMEM_MAX_SLOTS)
		return fail(err, errlen, ENOSPC,
			    "there are already %u hot-added slots",
			    GUESTMEM_MAX_SLOTS);
	return 0;
}

void guestmem_set_limit(struct guestmem *gm, uint64_t maxmem, uint64_t base)
{
	pthread_mutex_lock(&gm->lock);
	gm->maxmem = maxmem;
	gm->base = base;
	gm->limit = maxmem - base;
	pthread_mutex_unlock(&gm->lock);
}

void guestmem_set_dump(struct guestmem *gm, bool dump)
{
	pthread_mutex_lock(&gm->lock);
	gm->dump = dump;
	pthread_mutex_unlock(&gm->lock);
}

/* A zero-filled memfd mapping, aligned to 2 MiB when at least that big
 * (so the MMU may use large sptes); out of core dumps unless dump. */
static int map_slot(struct hot_slot *s, bool dump)
{
	uint64_t align = s->size >= (2ULL << 20) ? 2ULL << 20 : PAGE_SIZE;
	uint8_t *res, *at;

	s->fd = memfd_create("mmud-hotmem", MFD_CLOEXEC);
	if (s->fd < 0)
		return -errno;
	if (ftruncate(s->fd, (off_t)s->size) < 0)
		goto fail;
	s->reservation_len = s->size + align;
	res = mmap(NULL, s->reservation_len, PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		goto fail;
	s->reservation = res;
	at = (uint8_t *)(((uintptr_t)res + align - 1) &
			 ~(uintptr_t)(align - 1));
	s->hva = mmap(at, s->size, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_FIXED, s->fd, 0);
	if (s->hva == MAP_FAILED) {
		munmap(res, s->reservation_len);
		goto fail;
	}
	if (!dump)
		madvise(res, s->reservation_len, MADV_DONTDUMP);
	return 0;
fail:
	close(s->fd);
	return -ENOMEM;
}

int guestmem_add(struct guestmem *gm, gpa_t gpa, uint64_t size, bool readonly,
		 bool log_dirty, uint32_t *slot, char *err, size_t errlen)
{
	struct hot_slot s = { .gpa = gpa,
			      .size = size,
			      .readonly = readonly,
			      .log_dirty = log_dirty };
	uint32_t flags = (readonly ? MEMSLOT_READONLY : 0) |
			 (log_dirty ? MEMSLOT_LOG_DIRTY : 0);
	int r;

	pthread_mutex_lock(&gm->lock);
	if (gm->busy) {
		pthread_mutex_unlock(&gm->lock);
		return fail(err, errlen, EBUSY, "%s", gm->busy);
	}
	r = check_locked(gm, gpa, size, err, errlen);
	if (r < 0)
		goto out;
	if (gm->maxmem) {
		uint64_t plugged = 0;

		for (unsigned int i = 0; i < gm->nr_slots; i++)
			plugged += gm->slots[i].size;
		if (size > gm->limit - plugged) {
			r = fail(err, errlen, ENOSPC,
				 "size: %#llx more bytes would make %#llx of "
				 "boot RAM and %#llx hot-added exceed maxmem "
				 "%#llx (%#llx left)",
				 (unsigned long long)size,
				 (unsigned long long)gm->base,
				 (unsigned long long)(plugged + size),
				 (unsigned long long)gm->maxmem,
				 (unsigned long long)(gm->limit - plugged));
			goto out;
		}
	}
	for (s.id = GUESTMEM_FIRST_ID; find_locked(gm, s.id); s.id++)
		;
	r = map_slot(&s, gm->dump);
	if (r < 0) {
		r = fail(err, errlen, -r, "size: cannot map %#llx bytes",
			 (unsigned long long)size);
		goto out;
	}
	r = memslot_add(gm->mmu, s.id, gpa_to_gfn(gpa), size >> PAGE_SHIFT,
			(hva_t)(uintptr_t)s.hva, flags, err, errlen);
	if (r < 0) {
		unmap_slot(&s);
		goto out;
	}
	gm->slots[gm->nr_slots++] = s;
	*slot = s.id;
out:
	pthread_mutex_unlock(&gm->lock);
	return r;
}

int guestmem_remove(struct guestmem *gm, uint32_t slot, char *err,
		    size_t errlen)
{
	struct hot_slot *s;
	int r;

	pthread_mutex_lock(&gm->lock);
	if (gm->busy) {
		r = fail(err, errlen, EBUSY, "%s", gm->busy);
		goto out;
	}
	s = find_locked(gm, slot);
	if (!s) {
		r = fail(err, errlen, ENOENT,
			 "slot: %u is not a hot-added memslot", slot);
		goto out;
	}
	/* On return no spte maps it and no vCPU can reach it (the MMU's
	 * two-phase delete); only then does its memory go. */
	r = memslot_delete(gm->mmu, slot, err, errlen);
	if (r < 0)
		goto out;
	unmap_slot(s);
	*s = gm->slots[--gm->nr_slots];
out:
	pthread_mutex_unlock(&gm->lock);
	return r;
}

/*
 * The slot id's memory, hot-added or the VM's own (boot RAM): a pointer
 * to the hot slot's entry, or *fixed filled in for boot RAM. NULL when
 * neither has the id.
 */
static struct hot_slot *resolve_locked(struct guestmem *gm, uint32_t id,
				       struct hot_slot *fixed)
{
	struct hot_slot *s = find_locked(gm, id);

	if (s)
		return s;
	for (unsigned int i = 0; i < gm->nr_reserved; i++)
		if (gm->reserved[i].slot >= 0 &&
		    (uint32_t)gm->reserved[i].slot == id) {
			*fixed = (struct hot_slot){
				.id = id,
				.gpa = gm->reserved[i].gpa,
				.size = gm->reserved[i].size
			};
			return fixed;
		}
	return NULL;
}

int guestmem_set_dirty_log(struct guestmem *gm, uint32_t slot, bool on,
			   char *err, size_t errlen)
{
	struct hot_slot *s, fixed;
	int r;

	pthread_mutex_lock(&gm->lock);
	if (gm->busy) {
		r = fail(err, errlen, EBUSY, "%s", gm->busy);
		goto out;
	}
	s = resolve_locked(gm, slot, &fixed);
	if (!s) {
		r = fail(err, errlen, ENOENT, "slot: %u is not a memslot",
			 slot);
		goto out;
	}
	r = memslot_set_flags(gm->mmu, slot,
			      (s->readonly ? MEMSLOT_READONLY : 0) |
				      (on ? MEMSLOT_LOG_DIRTY : 0),
			      err, errlen);
	if (!r)
		s->log_dirty = on;
out:
	pthread_mutex_unlock(&gm->lock);
	return r;
}

void guestmem_mark_dirty(struct guestmem *gm, gpa_t gpa, uint64_t len)
{
	gfn_t gfn = gpa_to_gfn(gpa),
	      end = gpa_to_gfn(gpa + len + PAGE_SIZE - 1);

	mmu_rcu_read_lock();
	for (; gfn < end; gfn++) {
		const struct memslot *ms = memslot_lookup(gm->mmu, gfn, NULL);
		uint64_t i;

		if (!ms || !ms->dirty_bitmap)
			continue;
		i = gfn - ms->base_gfn;
		/* Relaxed, like the MMU's own marks: the harvest's
		 * exchange and the flush after it order them. */
		atomic_fetch_or_explicit(&ms->dirty_bitmap[i / 64],
					 1ULL << (i % 64),
					 memory_order_relaxed);
	}
	mmu_rcu_read_unlock();
}

int64_t guestmem_npages(struct guestmem *gm, uint32_t slot)
{
	struct hot_slot *s, fixed;
	int64_t n;

	pthread_mutex_lock(&gm->lock);
	s = resolve_locked(gm, slot, &fixed);
	n = s ? (int64_t)(s->size >> PAGE_SHIFT) : -ENOENT;
	pthread_mutex_unlock(&gm->lock);
	return n;
}

/* Reads the bitmap without clearing it: the slot the MMU publishes for
 * our gpa, found under a read-side section. */
static int peek_bitmap_locked(struct guestmem *gm, const struct hot_slot *s,
			      uint64_t *bitmap, size_t nwords, char *err,
			      size_t errlen)
{
	const struct memslot *ms;
	uint64_t words = ((s->size >> PAGE_SHIFT) + 63) / 64;
	int r = 0;

	mmu_rcu_read_lock();
	ms = memslot_lookup(gm->mmu, gpa_to_gfn(s->gpa), NULL);
	if (!ms || ms->id != s->id || !ms->dirty_bitmap) {
		r = fail(err, errlen, EINVAL,
			 "slot: %u is not logging dirty pages", s->id);
	} else {
		for (uint64_t w = 0; w < words && w < nwords; w++)
			bitmap[w] = atomic_load_explicit(&ms->dirty_bitmap[w],
							 memory_order_relaxed);
	}
	mmu_rcu_read_unlock();
	return r;
}

int guestmem_harvest(struct guestmem *gm, uint32_t slot, bool clear,
		     uint64_t *bitmap, size_t nwords, uint64_t *ndirty,
		     char *err, size_t errlen)
{
	struct hot_slot *s, fixed;
	uint64_t words, n = 0;
	int r;

	pthread_mutex_lock(&gm->lock);
	s = resolve_locked(gm, slot, &fixed);
	if (!s) {
		r = fail(err, errlen, ENOENT, "slot: %u is not a memslot",
			 slot);
		goto out;
	}
	words = ((s->size >> PAGE_SHIFT) + 63) / 64;
	if (nwords < words) {
		r = fail(err, errlen, EINVAL,
			 "the bitmap of slot %u needs %llu words", slot,
			 (unsigned long long)words);
		goto out;
	}
	memset(bitmap, 0, nwords * sizeof(*bitmap));
	if (clear) {
		r = memslot_dirty_log_get(gm->mmu, slot, bitmap, nwords, err,
					  errlen);
		/* What this harvest cleared, the other reader must still
		 * see. */
		if (!r && gm->reader)
			gm->reader(gm->reader_ctx, slot, bitmap, words);
	} else
		r = peek_bitmap_locked(gm, s, bitmap, nwords, err, errlen);
	if (r < 0)
		goto out;
	for (uint64_t w = 0; w < words; w++)
		n += (uint64_t)__builtin_popcountll(bitmap[w]);
	*ndirty = n;
out:
	pthread_mutex_unlock(&gm->lock);
	return r;
}

int guestmem_harvest_range(struct guestmem *gm, uint32_t slot,
			   enum memslot_fetch mode, uint64_t first,
			   uint64_t num, uint64_t *bitmap, uint64_t *ndirty,
			   char *err, size_t errlen)
{
	uint64_t nwords = (num + 63) / 64, n = 0, *whole = NULL;
	struct hot_slot *s, fixed;
	int r;

	pthread_mutex_lock(&gm->lock);
	s = resolve_locked(gm, slot, &fixed);
	if (!s) {
		r = fail(err, errlen, ENOENT, "slot: %u is not a memslot",
			 slot);
		goto out;
	}
	/*
	 * The other reader copies what it is handed at its own pace: a page
	 * left writable until the operator's clear could change after that
	 * copy unseen. So with a reader, clearing also protects.
	 */
	if (gm->reader && mode == MEMSLOT_FETCH_CLEAR)
		mode = MEMSLOT_FETCH_CLEAR_PROTECT;
	if (gm->reader && mode != MEMSLOT_FETCH_PEEK) {
		whole = calloc(((s->size >> PAGE_SHIFT) + 63) / 64, 8);
		if (!whole) {
			r = fail(err, errlen, ENOMEM, "out of memory");
			goto out;
		}
	}
	r = memslot_dirty_log_fetch(gm->mmu, slot, first, num, mode, bitmap,
				    err, errlen);
	if (r < 0)
		goto out;
	if (whole) {
		memcpy(whole + first / 64, bitmap, nwords * 8);
		gm->reader(gm->reader_ctx, slot, whole,
			   ((s->size >> PAGE_SHIFT) + 63) / 64);
	}
	for (uint64_t w = 0; w < nwords; w++)
		n += (uint64_t)__builtin_popcountll(bitmap[w]);
	*ndirty = n;
out:
	pthread_mutex_unlock(&gm->lock);
	free(whole);
	return r;
}

void guestmem_set_reader(struct guestmem *gm, guestmem_reader_fn *fn, void *ctx,
			 const char *busy)
{
	pthread_mutex_lock(&gm->lock);
	gm->reader = fn;
	gm->reader_ctx = fn ? ctx : NULL;
	gm->busy = fn ? busy : NULL;
	pthread_mutex_unlock(&gm->lock);
}

bool guestmem_has_reader(struct guestmem *gm)
{
	bool r;

	pthread_mutex_lock(&gm->lock);
	r = gm->reader != NULL;
	pthread_mutex_unlock(&gm->lock);
	return r;
}

unsigned int guestmem_list(struct guestmem *gm, struct guestmem_slot_info *out,
			   unsigned int max)
{
	unsigned int n;

	pthread_mutex_lock(&gm->lock);
	n = gm->nr_slots;
	for (unsigned int i = 0; i < n && i < max; i++) {
		const struct hot_slot *s = &gm->slots[i];

		out[i] = (struct guestmem_slot_info){
			.slot = s->id,
			.gpa = s->gpa,
			.size = s->size,
			.readonly = s->readonly,
			.log_dirty = s->log_dirty,
			.hva = (hva_t)(uintptr_t)s->hva,
			.fd = s->fd,
		};
	}
	pthread_mutex_unlock(&gm->lock);
	/* Sorted by gpa for the caller (insertion sort: at most 64). */
	for (unsigned int i = 1; i < n && i < max; i++)
		for (unsigned int j = i; j > 0 && out[j - 1].gpa > out[j].gpa;
		     j--) {
			struct guestmem_slot_info t = out[j];

			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	return n;
}
