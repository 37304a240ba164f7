/*
 * The device side of split virtqueues (virtio 1.2, 2.7 "Split
 * Virtqueues"): setting a queue up from the driver's three areas,
 * taking chains from the available ring through direct and indirect
 * descriptors, returning them on the used ring, and the interrupt
 * suppression of 2.7.7 and 2.7.10. Everything read from the rings is
 * guest input read once into locals and checked before use; a buffer
 * becomes a host pointer only through the VM's map callback. Which
 * chains are requests of what kind is the device type's business.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "virtio.h"

/*
 * Guest memory is shared memory (docs/ARCHITECTURE.md, "Guest memory is
 * shared memory"): the driver's fields are read with single atomic
 * loads, so a driver changing them under us gives one value or the
 * other, never a torn one. Ring fields are naturally aligned once
 * virtq_setup() checked the areas' alignment.
 */
static uint16_t ld16(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)(const void *)p,
			       __ATOMIC_RELAXED);
}

static uint16_t ld16_acquire(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)(const void *)p,
			       __ATOMIC_ACQUIRE);
}

static void st16(uint8_t *p, uint16_t v, int order)
{
	__atomic_store_n((uint16_t *)(void *)p, v, order);
}

static void st32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)(void *)p, v, __ATOMIC_RELAXED);
}

/* A descriptor, copied out of guest memory once. An indirect table
 * need not be 16-byte aligned, so it is read byte by byte there. */
struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static void read_desc(const uint8_t *table, unsigned int i, struct desc *d)
{
	const uint8_t *p = table + (size_t)i * VIRTQ_DESC_SIZE;
	uint8_t b[VIRTQ_DESC_SIZE];

	for (unsigned int k = 0; k < VIRTQ_DESC_SIZE; k++)
		b[k] = __atomic_load_n(p + k, __ATOMIC_RELAXED);
	memcpy(&d->addr, b, 8);
	memcpy(&d->len, b + 8, 4);
	memcpy(&d->flags, b + 12, 2);
	memcpy(&d->next, b + 14, 2);
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static void *map(const struct virtio_mem *mem, gpa_t gpa, uint64_t len)
{
	if (gpa + len < gpa)
		return NULL;
	return mem->ops->map(mem->ctx, gpa, len);
}

int virtq_setup(struct virtq *q, const struct virtio_mem *mem, uint16_t size,
		gpa_t desc, gpa_t avail, gpa_t used, bool event_idx,
		bool indirect, char *err, size_t errlen)
{
	uint8_t *d, *a, *u;

	/* virtio 1.2, 2.7: a split queue's size is a power of 2. */
	if (size == 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1)))
		return fail(err, errlen,
			    "queue size %u is not a power of 2 in 1..%u", size,
			    VIRTQ_MAX_SIZE);
	/* virtio 1.2, 2.7, "Alignment" table. */
	if ((desc & 15) || (avail & 1) || (used & 3))
		return fail(err, errlen,
			    "ring areas misaligned (descriptors 0x%llx, "
			    "driver 0x%llx, device 0x%llx)",
			    (unsigned long long)desc, (unsigned long long)avail,
			    (unsigned long long)used);
	d = map(mem, desc, (uint64_t)size * VIRTQ_DESC_SIZE);
	a = map(mem, avail, 6 + 2 * (uint64_t)size);
	u = map(mem, used, 6 + 8 * (uint64_t)size);
	if (!d || !a || !u)
		return fail(err, errlen, "the %s area at 0x%llx is not in RAM",
			    !d ? "descriptor" :
			    !a ? "driver" :
				 "device",
			    (unsigned long long)(!d ? desc :
						 !a ? avail :
						      used));
	virtq_reset(q);
	q->size = size;
	q->desc_gpa = desc;
	q->avail_gpa = avail;
	q->used_gpa = used;
	q->desc = d;
	q->avail = a;
	q->used = u;
	q->event_idx = event_idx;
	q->indirect = indirect;
	/* Our indices start at 0, as the driver's do after it sets the
	 * queue up (virtio 1.2, 4.2.3.2). */
	return 0;
}

void virtq_reset(struct virtq *q)
{
	memset(q, 0, sizeof(*q));
}

/* Appends one buffer to the chain. */
static int add_seg(struct virtq *q, const struct virtio_mem *mem,
		   struct virtq_chain *c, const struct desc *d, char *err,
		   size_t errlen)
{
	bool write = d->flags & VIRTQ_DESC_F_WRITE;
	struct virtq_seg *s;
	void *hva = NULL;

	(void)q;
	if (c->nr_seg == VIRTQ_MAX_SIZE)
		return fail(err, errlen, "chain %u has more than %u buffers",
			    c->head, VIRTQ_MAX_SIZE);
	/* virtio 1.2, 2.7.4.2: readable buffers come first. */
	if (!write && c->nr_seg > c->nr_out)
		return fail(err, errlen,
			    "chain %u has a device-readable buffer after a "
			    "writable one",
			    c->head);
	if (d->len) {
		hva = map(mem, d->addr, d->len);
		if (!hva)
			return fail(err, errlen,
				    "chain %u names %u bytes at 0x%llx, "
				    "outside guest RAM",
				    c->head, d->len,
				    (unsigned long long)d->addr);
	}
	s = &c->seg[c->nr_seg++];
	s->gpa = d->addr;
	s->hva = hva;
	s->len = d->len;
	s->write = write;
	if (write) {
		c->in_len += d->len;
	} else {
		c->nr_out++;
		c->out_len += d->len;
	}
	return 0;
}

/* Walks the chain at head (virtio 1.2, 2.7.5.2 and 2.7.5.3.2). */
static int walk(struct virtq *q, const struct virtio_mem *mem, uint16_t head,
		struct virtq_chain *c, char *err, size_t errlen)
{
	const uint8_t *table = q->desc;
	unsigned int table_size = q->size, count = 0, i = head;
	bool in_indirect = false;
	struct desc d;
	int r;

	c->head = head;
	c->nr_seg = c->nr_out = 0;
	c->out_len = c->in_len = 0;
	if (head >= q->size)
		return fail(err, errlen, "head %u is not below the size %u",
			    head, q->size);
	for (;;) {
		/* A chain visits each descriptor of its table at most
		 * once: more than the table holds is a loop. */
		if (++count > table_size)
			return fail(err, errlen,
				    "chain %u is longer than its %s of %u "
				    "descriptors (a loop?)",
				    head,
				    in_indirect ? "indirect table" : "queue",
				    table_size);
		read_desc(table, i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* virtio 1.2, 2.7.5.3.1: only one table per
			 * chain, never with NEXT; here the table is the
			 * whole chain, as every driver builds it. */
			if (!q->indirect)
				return fail(err, errlen,
					    "chain %u uses an indirect "
					    "descriptor, not negotiated",
					    head);
			if (in_indirect || count != 1 ||
			    (d.flags & VIRTQ_DESC_F_NEXT))
				return fail(err, errlen,
					    "chain %u has an indirect "
					    "descriptor %s",
					    head,
					    in_indirect ? "inside a table" :
					    count != 1	? "not at its head" :
							  "with NEXT");
			if (d.len == 0 || d.len % VIRTQ_DESC_SIZE ||
			    d.len / VIRTQ_DESC_SIZE > q->size)
				return fail(err, errlen,
					    "chain %u has an indirect table "
					    "of %u bytes (a multiple of 16, "
					    "at most %u entries)",
					    head, d.len, q->size);
			table = map(mem, d.addr, d.len);
			if (!table)
				return fail(err, errlen,
					    "chain %u has its indirect table "
					    "at 0x%llx, outside guest RAM",
					    head, (unsigned long long)d.addr);
			table_size = d.len / VIRTQ_DESC_SIZE;
			in_indirect = true;
			count = 0;
			i = 0;
			continue;
		}
		r = add_seg(q, mem, c, &d, err, errlen);
		if (r < 0)
			return r;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= table_size)
			return fail(err, errlen,
				    "chain %u links to descriptor %u of %u",
				    head, d.next, table_size);
		i = d.next;
	}
}

static void publish_avail_event(struct virtq *q, const struct virtio_mem *mem)
{
	gpa_t off = 4 + 8 * (gpa_t)q->size;

	mem->ops->mark_dirty(mem->ctx, q->used_gpa + off, 2);
	st16(q->used + off, q->last_avail, __ATOMIC_SEQ_CST);
}

int virtq_pop(struct virtq *q, const struct virtio_mem *mem,
	      struct virtq_chain *c, char *err, size_t errlen)
{
	uint16_t avail_idx, head;
	int r;

	if (!q->size)
		return 0;
	/* Acquire: the ring entries and descriptors the driver wrote
	 * before the index (virtio 1.2, 2.7.13.2). */
	avail_idx = ld16_acquire(q->avail + 2);
	if (avail_idx == q->last_avail && q->event_idx) {
		/*
		 * Ask for a notification at the next entry, then look
		 * again: an entry the driver added before it could see
		 * avail_event would otherwise wait for one that never
		 * comes (virtio 1.2, 2.7.10). The seq_cst store and load
		 * order the two, as the driver's side orders its index
		 * store and its read of avail_event.
		 */
		publish_avail_event(q, mem);
		avail_idx = __atomic_load_n((uint16_t *)(void *)(q->avail + 2),
					    __ATOMIC_SEQ_CST);
	}
	if (avail_idx == q->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - q->last_avail) > q->size)
		return fail(err, errlen,
			    "avail index %u is more than the queue size %u "
			    "ahead of %u",
			    avail_idx, q->size, q->last_avail);
	head = ld16(q->avail + 4 + 2 * (q->last_avail % q->size));
	q->last_avail++;
	r = walk(q, mem, head, c, err, errlen);
	if (r < 0)
		return r;
	if (q->event_idx)
		publish_avail_event(q, mem);
	return 1;
}

int virtq_walk_head(struct virtq *q, const struct virtio_mem *mem,
		    uint16_t head, struct virtq_chain *c, char *err,
		    size_t errlen)
{
	if (!q->size)
		return fail(err, errlen, "chain %u: the queue is not ready",
			    head);
	return walk(q, mem, head, c, err, errlen);
}

void virtq_push(struct virtq *q, const struct virtio_mem *mem, uint16_t head,
		uint32_t len)
{
	unsigned int slot = q->used_idx % q->size;
	uint8_t *e = q->used + 4 + 8 * slot;

	st32(e, head);
	st32(e + 4, len);
	/* The used ring's bytes are the device's writes too: logged before
	 * the index makes them the driver's. */
	mem->ops->mark_dirty(mem->ctx, q->used_gpa + 4 + 8 * slot, 8);
	mem->ops->mark_dirty(mem->ctx, q->used_gpa + 2, 2);
	q->used_idx++;
	/* Release: the element and the buffers' data before the index
	 * (virtio 1.2, 2.7.8.2). */
	st16(q->used + 2, q->used_idx, __ATOMIC_RELEASE);
}

bool virtq_should_notify(struct virtq *q)
{
	uint16_t old, now, event;
	bool valid;

	if (!q->size)
		return false;
	/* Full barrier: the used index store above before the read of
	 * used_event or the flags, as the driver stores those before it
	 * reads the used index (virtio 1.2, 2.7.10). A seq_cst
	 * read-modify-write on the index itself orders both. */
	__atomic_fetch_add((uint16_t *)(void *)(q->used + 2), 0,
			   __ATOMIC_SEQ_CST);
	if (!q->event_idx)
		return !(ld16(q->avail) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	old = q->signalled_used;
	now = q->used_idx;
	valid = q->signalled_valid;
	q->signalled_used = now;
	q->signalled_valid = true;
	if (!valid)
		return true;
	event = ld16(q->avail + 4 + 2 * q->size);
	/* virtio 1.2, 2.7.10: notify when used_event lies in
	 * [old, now). */
	return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}
