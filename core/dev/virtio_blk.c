/*
 * The virtio block device (virtio 1.2, 5.2 "Block Device"): its feature
 * bits and configuration space, the requests of 5.2.6 (IN, OUT, FLUSH,
 * GET_ID, DISCARD, WRITE_ZEROES) checked against the chain that carries
 * them and the image's size, their I/O through the drive's backend, and
 * their completion: status byte, dirty log, used ring, interrupt, in
 * that order. The transport's registers are core/dev/virtio_mmio.c's,
 * the ring walk core/dev/virtqueue.c's, the file and the I/O threads
 * core/dev/blk.c's and core/dev/blk_backend.c's.
 *
 * A request's layout is fixed by 5.2.6: a 16-byte header the device
 * reads, the data (writable for IN and GET_ID, readable otherwise) and a
 * status byte, the chain's last writable byte. A chain without header
 * or status byte leaves the device nothing to answer on: it sets
 * DEVICE_NEEDS_RESET. Anything else wrong (data in a buffer of the wrong
 * direction, a range past the end, a length not a multiple of 512, a
 * write to a read-only drive) fails the request with VIRTIO_BLK_S_IOERR
 * or, for what the device does not do, VIRTIO_BLK_S_UNSUPP, and touches
 * nothing else.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "virtio_blk.h"

#define SECTOR 512ULL
#define DIO_ALIGN 512
/* One discard or write-zeroes segment per request (max_*_seg). */
#define MAX_DISCARD_SECTORS 0x3fffffu
#define DISCARD_ALIGN_SECTORS 8

struct wseg {
	gpa_t gpa;
	uint32_t len;
};

struct blk_queue;

/* One request between its pop and its push. */
struct blk_req {
	struct blk_queue *bq;
	uint16_t head;
	uint32_t type;
	uint8_t *status;
	uint32_t written; /* the used element's len */
	uint64_t data_len;
	uint64_t start_ns;
	struct blk_io io;
	void *bounce; /* O_DIRECT with a misaligned guest buffer */
	struct iovec bounce_iov;
	struct iovec *iov; /* the guest's data buffers */
	int iovcnt;
	struct iovec *work; /* the backend's copy, advanced as it goes */
	struct wseg *wsegs; /* writable buffers, for the dirty log */
	unsigned int nr_wsegs;
	struct blk_req *next; /* the retry list */
};

/*
 * Legend: (c) constant after creation; (q) bq->lock. bq->lock nests
 * inside the transport's gate and outside its lock and irq_lock
 * (docs/locking.md, "Virtio devices").
 */
struct blk_queue {
	struct virtio_blk *b; /* (c) */
	unsigned int index; /* (c) */
	pthread_mutex_t lock;
	pthread_cond_t drained; /* signalled when in_flight reaches 0 */
	struct virtq_chain scratch; /* (q) the chain being popped */
	unsigned int in_flight; /* (q) popped, not yet pushed */
	bool stopped; /* (q) a reset is draining: push nothing */
	bool starved; /* (q) stopped popping at in_flight == size */
	bool broken; /* (q) DEVICE_NEEDS_RESET was set */
	struct blk_req *retry; /* (q) kept back by an error with stop */
	unsigned int nr_retry; /* (q) on the retry list */
	/* (q) Heads a migration stream brought of requests the source held
	 * for a retry (docs/MIGRATION.md, "virtio-blk"): in flight, their
	 * chains walked again when virtio_blk_retry() resubmits them. */
	uint16_t pending[VIRTQ_MAX_SIZE];
	unsigned int nr_pending;
};

/* Legend: (c) constant after creation; (a) atomic, relaxed counters. */
struct virtio_blk {
	struct blk_drive_config cfg; /* (c) */
	struct blk_file file; /* (c) */
	struct virtio_blk_host host; /* (c) */
	struct virtio_device_ops ops; /* (c) */
	uint8_t config[VIRTIO_BLK_CFG_LEN]; /* (c) */
	struct virtio_mmio *t; /* (c) */
	struct blk_backend *backend; /* (c) */
	char backend_why[128]; /* (c) */
	unsigned int nr_queues; /* (c) */
	struct blk_queue *queues; /* (c) */
	_Atomic bool io_error; /* (a) */
	/* (a) Requests submitted whose completion has not yet raised its
	 * interrupt: the VM's wake check (virtio_blk_is_busy()). Relaxed:
	 * read under the vCPU layer's idle decision, which the interrupt's
	 * request to a vCPU orders. */
	_Atomic unsigned int busy;
	struct {
		_Atomic uint64_t rd_bytes, wr_bytes, rd_ops, wr_ops, flush_ops;
		_Atomic uint64_t discard_ops, discard_bytes;
		_Atomic uint64_t failed_rd, failed_wr, failed_flush;
		_Atomic uint64_t rd_ns, wr_ns, flush_ns;
	} st;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static const struct virtio_mem *mem_of(struct virtio_blk *b)
{
	return &b->host.mem;
}

/* ---- copying between a chain and the device ------------------------------ */

/* Gathers n bytes of the readable buffers from byte skip on. */
static void copy_from_out(const struct virtq_chain *c, uint64_t skip, void *dst,
			  uint64_t n)
{
	uint8_t *d = dst;

	for (unsigned int i = 0; i < c->nr_out && n; i++) {
		const struct virtq_seg *s = &c->seg[i];
		uint64_t take;

		if (skip >= s->len) {
			skip -= s->len;
			continue;
		}
		take = s->len - skip < n ? s->len - skip : n;
		for (uint64_t k = 0; k < take; k++)
			d[k] = __atomic_load_n((uint8_t *)s->hva + skip + k,
					       __ATOMIC_RELAXED);
		d += take;
		n -= take;
		skip = 0;
	}
}

/* Scatters n bytes into the writable buffers from their start. */
static void copy_to_in(const struct virtq_chain *c, const void *src, uint64_t n)
{
	const uint8_t *p = src;

	for (unsigned int i = c->nr_out; i < c->nr_seg && n; i++) {
		const struct virtq_seg *s = &c->seg[i];
		uint64_t take = s->len < n ? s->len : n;

		for (uint64_t k = 0; k < take; k++)
			__atomic_store_n((uint8_t *)s->hva + k, p[k],
					 __ATOMIC_RELAXED);
		p += take;
		n -= take;
	}
}

/*
 * iovecs for len bytes of the segments [first, last) from byte skip on.
 * Returns how many.
 */
static int build_iov(const struct virtq_chain *c, unsigned int first,
		     unsigned int last, uint64_t skip, uint64_t len,
		     struct iovec *iov)
{
	int n = 0;

	for (unsigned int i = first; i < last && len; i++) {
		const struct virtq_seg *s = &c->seg[i];
		uint64_t take;

		if (skip >= s->len) {
			skip -= s->len;
			continue;
		}
		take = s->len - skip < len ? s->len - skip : len;
		iov[n].iov_base = (uint8_t *)s->hva + skip;
		iov[n].iov_len = take;
		n++;
		len -= take;
		skip = 0;
	}
	return n;
}

static bool is_aligned_iov(const struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) &
		    (DIO_ALIGN - 1))
			return false;
	return true;
}

/* ---- completion -------------------------------------------------------- */

static void process_locked(struct blk_queue *bq, bool *notify);

/*
 * The request's end: status byte, dirty log, used ring, in that order
 * (the used index is what makes the bytes the driver's). Called with
 * bq->lock held.
 */
static void complete_locked(struct blk_req *req, uint8_t status, bool *notify)
{
	struct blk_queue *bq = req->bq;
	struct virtio_blk *b = bq->b;
	const struct virtio_mem *mem = mem_of(b);
	struct virtq *vq = virtio_mmio_queue(b->t, bq->index);

	__atomic_store_n(req->status, status, __ATOMIC_RELAXED);
	for (unsigned int i = 0; i < req->nr_wsegs; i++)
		mem->ops->mark_dirty(mem->ctx, req->wsegs[i].gpa,
				     req->wsegs[i].len);
	if (!bq->stopped) {
		virtq_push(vq, mem, req->head, req->written);
		if (virtq_should_notify(vq))
			*notify = true;
	}
	free(req->bounce);
	free(req);
}

static bool is_write_op(const struct blk_req *req)
{
	return req->type != VIRTIO_BLK_T_IN;
}

static void account(struct virtio_blk *b, struct blk_req *req, bool ok)
{
	uint64_t ns = now_ns() - req->start_ns;

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
		add(ok ? &b->st.rd_ops : &b->st.failed_rd, 1);
		if (ok)
			add(&b->st.rd_bytes, req->data_len);
		add(&b->st.rd_ns, ns);
		break;
	case VIRTIO_BLK_T_OUT:
		add(ok ? &b->st.wr_ops : &b->st.failed_wr, 1);
		if (ok)
			add(&b->st.wr_bytes, req->data_len);
		add(&b->st.wr_ns, ns);
		break;
	case VIRTIO_BLK_T_FLUSH:
		add(ok ? &b->st.flush_ops : &b->st.failed_flush, 1);
		add(&b->st.flush_ns, ns);
		break;
	default:
		if (ok) {
			add(&b->st.discard_ops, 1);
			add(&b->st.discard_bytes, req->io.len);
		}
		break;
	}
}

static void io_done(struct blk_io *io, int64_t res)
{
	struct blk_req *req =
		(struct blk_req *)((char *)io - offsetof(struct blk_req, io));
	struct blk_queue *bq = req->bq;
	struct virtio_blk *b = bq->b;
	bool notify = false, ok = res >= 0;

	if (!ok) {
		enum blk_error_action a = is_write_op(req) ? b->cfg.werror :
							     b->cfg.rerror;
		struct virtio_blk_error e = {
			.id = b->cfg.id,
			.write = is_write_op(req),
			.stopped = a == BLK_ERROR_STOP,
			.err = (int)-res,
		};

		atomic_store(&b->io_error, true);
		pthread_mutex_lock(&bq->lock);
		/* A reset that is draining gets the request failed: it
		 * waits for every request in flight. */
		if (a == BLK_ERROR_STOP && !bq->stopped) {
			/* Kept in flight until cont (virtio_blk_retry())
			 * or a reset drops it. */
			req->next = bq->retry;
			bq->retry = req;
			bq->nr_retry++;
			/* A quiesce waits for the rest. */
			if (bq->in_flight == bq->nr_retry + bq->nr_pending)
				pthread_cond_broadcast(&bq->drained);
			pthread_mutex_unlock(&bq->lock);
			atomic_fetch_sub(&b->busy, 1);
			if (b->host.on_error)
				b->host.on_error(b->host.error_ctx, &e);
			return;
		}
		pthread_mutex_unlock(&bq->lock);
		e.stopped = false;
		if (b->host.on_error)
			b->host.on_error(b->host.error_ctx, &e);
	}
	if (ok && req->bounce && req->type == VIRTIO_BLK_T_IN) {
		const uint8_t *p = req->bounce;

		for (int i = 0; i < req->iovcnt; i++) {
			memcpy(req->iov[i].iov_base, p, req->iov[i].iov_len);
			p += req->iov[i].iov_len;
		}
	}
	account(b, req, ok);
	pthread_mutex_lock(&bq->lock);
	complete_locked(req, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR,
			&notify);
	bq->in_flight--;
	if (bq->in_flight == 0)
		pthread_cond_broadcast(&bq->drained);
	if (bq->starved && !bq->stopped) {
		bq->starved = false;
		process_locked(bq, &notify);
	}
	pthread_mutex_unlock(&bq->lock);
	if (notify)
		virtio_mmio_interrupt(b->t);
	/* After the interrupt: until then a halted guest may still be
	 * woken by this device. */
	atomic_fetch_sub(&b->busy, 1);
}

/* ---- requests -------------------------------------------------------------- */

static bool is_in_range(struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t sectors = b->file.size / SECTOR;

	return bytes % SECTOR == 0 && sector <= sectors &&
	       bytes / SECTOR <= sectors - sector;
}

/* Submits req's io; false if the backend refused it. */
static bool submit_locked(struct blk_queue *bq, struct blk_req *req)
{
	struct virtio_blk *b = bq->b;

	req->io.fd = b->file.fd;
	req->io.done = io_done;
	if (req->io.op == BLK_OP_READ || req->io.op == BLK_OP_WRITE) {
		if (b->cfg.direct && !is_aligned_iov(req->iov, req->iovcnt)) {
			/* O_DIRECT wants aligned buffers: through a bounce
			 * buffer, as QEMU does. */
			if (posix_memalign(&req->bounce, 4096,
					   req->data_len ? req->data_len :
							   DIO_ALIGN))
				return false;
			if (req->io.op == BLK_OP_WRITE) {
				uint8_t *p = req->bounce;

				for (int i = 0; i < req->iovcnt; i++) {
					memcpy(p, req->iov[i].iov_base,
					       req->iov[i].iov_len);
					p += req->iov[i].iov_len;
				}
			}
			req->bounce_iov.iov_base = req->bounce;
			req->bounce_iov.iov_len = req->data_len;
			req->io.iov = &req->bounce_iov;
			req->io.iovcnt = 1;
		} else {
			memcpy(req->work, req->iov,
			       sizeof(*req->iov) * (size_t)req->iovcnt);
			req->io.iov = req->work;
			req->io.iovcnt = req->iovcnt;
		}
	}
	req->start_ns = now_ns();
	bq->in_flight++;
	atomic_fetch_add(&b->busy, 1);
	if (blk_backend_submit(b->backend, bq->index, &req->io) < 0) {
		bq->in_flight--;
		atomic_fetch_sub(&b->busy, 1);
		return false;
	}
	return true;
}

static struct blk_req *req_alloc(struct blk_queue *bq,
				 const struct virtq_chain *c)
{
	size_t n = c->nr_seg ? c->nr_seg : 1;
	struct blk_req *req;
	char *p;

	req = calloc(1, sizeof(*req) + 2 * n * sizeof(struct iovec) +
				n * sizeof(struct wseg));
	if (!req)
		return NULL;
	p = (char *)(req + 1);
	req->iov = (struct iovec *)(void *)p;
	req->work = req->iov + n;
	req->wsegs = (struct wseg *)(void *)(req->work + n);
	req->bq = bq;
	req->head = c->head;
	for (unsigned int i = c->nr_out; i < c->nr_seg; i++)
		if (c->seg[i].len)
			req->wsegs[req->nr_wsegs++] = (struct wseg){
				.gpa = c->seg[i].gpa,
				.len = c->seg[i].len,
			};
	return req;
}

/* A discard or write-zeroes segment (virtio 1.2, 5.2.6). */
struct dwz_seg {
	uint64_t sector;
	uint32_t num_sectors, flags;
};

/* Decides what req does; returns the status to complete it with now,
 * or -1 when its io is to be submitted. */
static int prepare(struct virtio_blk *b, const struct virtq_chain *c,
		   struct blk_req *req, uint64_t sector)
{
	uint64_t features = virtio_mmio_features(b->t);
	struct dwz_seg seg;
	uint8_t raw[16];

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
		/* Data the device must write, in a buffer it may only
		 * read: refused (virtio 1.2, 2.7.4.1). */
		if (c->out_len != 16)
			return VIRTIO_BLK_S_IOERR;
		req->data_len = c->in_len - 1;
		if (!is_in_range(b, sector, req->data_len))
			return VIRTIO_BLK_S_IOERR;
		req->iovcnt = build_iov(c, c->nr_out, c->nr_seg, 0,
					req->data_len, req->iov);
		req->io.op = BLK_OP_READ;
		req->written = (uint32_t)c->in_len;
		break;
	case VIRTIO_BLK_T_OUT:
		if (b->cfg.readonly || c->in_len != 1)
			return VIRTIO_BLK_S_IOERR;
		req->data_len = c->out_len - 16;
		if (!is_in_range(b, sector, req->data_len))
			return VIRTIO_BLK_S_IOERR;
		req->iovcnt =
			build_iov(c, 0, c->nr_out, 16, req->data_len, req->iov);
		req->io.op = BLK_OP_WRITE;
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (c->in_len != 1)
			return VIRTIO_BLK_S_IOERR;
		req->io.op = BLK_OP_FLUSH;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		char id[BLK_SERIAL_LEN] = { 0 };
		uint64_t n = c->in_len - 1 < BLK_SERIAL_LEN ? c->in_len - 1 :
							      BLK_SERIAL_LEN;

		if (c->out_len != 16)
			return VIRTIO_BLK_S_IOERR;
		memcpy(id, b->cfg.serial, strnlen(b->cfg.serial, sizeof(id)));
		copy_to_in(c, id, n);
		req->written = (uint32_t)n;
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		bool discard = req->type == VIRTIO_BLK_T_DISCARD;
		unsigned int bit = discard ? VIRTIO_BLK_F_DISCARD :
					     VIRTIO_BLK_F_WRITE_ZEROES;

		if (!(features & (1ULL << bit)))
			return VIRTIO_BLK_S_UNSUPP;
		if (c->in_len != 1)
			return VIRTIO_BLK_S_IOERR;
		/* One segment (max_discard_seg, max_write_zeroes_seg). */
		if (c->out_len != 32)
			return VIRTIO_BLK_S_UNSUPP;
		copy_from_out(c, 16, raw, 16);
		memcpy(&seg.sector, raw, 8);
		memcpy(&seg.num_sectors, raw + 8, 4);
		memcpy(&seg.flags, raw + 12, 4);
		/* 5.2.6.2: unmap is write-zeroes' only flag. */
		if (seg.flags & ~(discard ? 0u : VIRTIO_BLK_WZ_UNMAP))
			return VIRTIO_BLK_S_UNSUPP;
		if (seg.num_sectors > MAX_DISCARD_SECTORS ||
		    !is_in_range(b, seg.sector,
				 (uint64_t)seg.num_sectors * SECTOR))
			return VIRTIO_BLK_S_IOERR;
		req->io.off = seg.sector * SECTOR;
		req->io.len = (uint64_t)seg.num_sectors * SECTOR;
		/* Unmapping reads back zeros too: allowed for
		 * write-zeroes with the flag when discard=unmap. */
		req->io.op = discard || ((seg.flags & VIRTIO_BLK_WZ_UNMAP) &&
					 b->cfg.discard && b->file.can_punch) ?
				     BLK_OP_DISCARD :
				     BLK_OP_WRITE_ZEROES;
		if (req->io.len == 0)
			return VIRTIO_BLK_S_OK;
		return -1;
	}
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
	req->io.off = sector * SECTOR;
	req->io.len = req->data_len;
	return -1;
}

/* Finds the chain's status byte: its last writable byte. */
static uint8_t *status_byte(const struct virtq_chain *c)
{
	for (unsigned int i = c->nr_seg; i-- > c->nr_out;)
		if (c->seg[i].len)
			return (uint8_t *)c->seg[i].hva + c->seg[i].len - 1;
	return NULL;
}

static void start_locked(struct blk_queue *bq, const struct virtq_chain *c,
			 bool *notify)
{
	struct virtio_blk *b = bq->b;
	struct blk_req *req;
	uint8_t hdr[16];
	uint64_t sector;
	int status;

	if (c->out_len < 16 || c->in_len < 1) {
		char why[96];

		snprintf(why, sizeof(why),
			 "queue %u: request %u lacks its header or status "
			 "byte",
			 bq->index, c->head);
		bq->broken = true;
		virtio_mmio_needs_reset(b->t, why);
		return;
	}
	req = req_alloc(bq, c);
	if (!req) {
		/* Out of memory: the chain goes back failed. */
		uint8_t *s = status_byte(c);
		const struct virtq_seg *last = &c->seg[c->nr_seg - 1];

		__atomic_store_n(s, VIRTIO_BLK_S_IOERR, __ATOMIC_RELAXED);
		mem_of(b)->ops->mark_dirty(mem_of(b)->ctx, last->gpa,
					   last->len);
		virtq_push(virtio_mmio_queue(b->t, bq->index), mem_of(b),
			   c->head, 1);
		*notify = true;
		return;
	}
	req->status = status_byte(c);
	copy_from_out(c, 0, hdr, 16);
	memcpy(&req->type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	req->written = 1;
	status = prepare(b, c, req, sector);
	if (status < 0) {
		if (submit_locked(bq, req))
			return;
		status = VIRTIO_BLK_S_IOERR;
	}
	if (status == VIRTIO_BLK_S_OK && req->type == VIRTIO_BLK_T_GET_ID)
		req->written++; /* the status byte after the id */
	else if (status != VIRTIO_BLK_S_OK)
		req->written = 1;
	complete_locked(req, (uint8_t)status, notify);
}

/* Takes what the driver made available while the queue may go on. */
static void process_locked(struct blk_queue *bq, bool *notify)
{
	struct virtio_blk *b = bq->b;
	struct virtq *vq = virtio_mmio_queue(b->t, bq->index);
	char why[192];

	while (!bq->stopped && !bq->broken) {
		int r;

		/* At most a queue's worth in flight: a driver offering a
		 * head again cannot make the device allocate without
		 * bound. */
		if (bq->in_flight >= vq->size) {
			bq->starved = true;
			return;
		}
		r = virtq_pop(vq, mem_of(b), &bq->scratch, why, sizeof(why));
		if (r < 0) {
			char msg[224];

			snprintf(msg, sizeof(msg), "queue %u: %s", bq->index,
				 why);
			bq->broken = true;
			virtio_mmio_needs_reset(b->t, msg);
			return;
		}
		if (r == 0)
			return;
		start_locked(bq, &bq->scratch, notify);
	}
}

/* ---- transport callbacks ------------------------------------------------- */

static void blk_notify(void *ctx, unsigned int queue)
{
	struct virtio_blk *b = ctx;
	struct blk_queue *bq = &b->queues[queue];
	bool notify = false;

	pthread_mutex_lock(&bq->lock);
	process_locked(bq, &notify);
	pthread_mutex_unlock(&bq->lock);
	if (notify)
		virtio_mmio_interrupt(b->t);
}

static void blk_reset(void *ctx)
{
	struct virtio_blk *b = ctx;

	for (unsigned int i = 0; i < b->nr_queues; i++) {
		struct blk_queue *bq = &b->queues[i];

		pthread_mutex_lock(&bq->lock);
		bq->stopped = true;
		/* Requests kept back by a stop action go unanswered: the
		 * driver that owned them is gone. */
		while (bq->retry) {
			struct blk_req *req = bq->retry;
			bool ignored = false;

			bq->retry = req->next;
			complete_locked(req, VIRTIO_BLK_S_IOERR, &ignored);
			bq->in_flight--;
		}
		bq->nr_retry = 0;
		/* So do those a migration brought: nothing to write. */
		bq->in_flight -= bq->nr_pending;
		bq->nr_pending = 0;
		/* A reset mid-request waits for the backend: nothing may
		 * write guest memory after the driver saw the reset. */
		while (bq->in_flight)
			pthread_cond_wait(&bq->drained, &bq->lock);
		bq->stopped = false;
		bq->starved = false;
		bq->broken = false;
		pthread_mutex_unlock(&bq->lock);
	}
	atomic_store(&b->io_error, false);
}

/* The held requests' heads, in the order virtio_blk_retry() takes
 * them: those a migration brought, then the retry list. */
static unsigned int blk_held(void *ctx, unsigned int queue, uint16_t *heads,
			     unsigned int max)
{
	struct virtio_blk *b = ctx;
	struct blk_queue *bq = &b->queues[queue];
	unsigned int n = 0;

	pthread_mutex_lock(&bq->lock);
	for (unsigned int k = 0; k < bq->nr_pending && n < max; k++)
		heads[n++] = bq->pending[k];
	for (struct blk_req *req = bq->retry; req && n < max; req = req->next)
		heads[n++] = req->head;
	pthread_mutex_unlock(&bq->lock);
	return n;
}

static void blk_take_held(void *ctx, unsigned int queue, const uint16_t *heads,
			  unsigned int n)
{
	struct virtio_blk *b = ctx;
	struct blk_queue *bq = &b->queues[queue];

	pthread_mutex_lock(&bq->lock);
	for (unsigned int k = 0; k < n && bq->nr_pending < VIRTQ_MAX_SIZE;
	     k++) {
		bq->pending[bq->nr_pending++] = heads[k];
		bq->in_flight++;
	}
	pthread_mutex_unlock(&bq->lock);
	/* They are held because of an error: io-status failed until the
	 * cont that retries them (QEMU's cont resets it). */
	atomic_store(&b->io_error, true);
}

static void blk_config_read(void *ctx, uint32_t off, void *buf,
			    unsigned int len)
{
	struct virtio_blk *b = ctx;

	memcpy(buf, b->config + off, len);
}

void virtio_blk_quiesce(struct virtio_blk *b)
{
	for (unsigned int i = 0; i < b->nr_queues; i++) {
		struct blk_queue *bq = &b->queues[i];

		/* Every request completes but the held ones, which stay
		 * held: the stream carries their heads (blk_held()). */
		pthread_mutex_lock(&bq->lock);
		while (bq->in_flight > bq->nr_retry + bq->nr_pending)
			pthread_cond_wait(&bq->drained, &bq->lock);
		pthread_mutex_unlock(&bq->lock);
	}
	/* The last completion raises its interrupt after it dropped the
	 * queue's lock: wait for that too. */
	while (atomic_load(&b->busy))
		sched_yield();
}

/*
 * The requests a migration brought: each chain walked again from guest
 * memory (guest input, as at its first pop), then started as a new
 * request. A chain the walk refuses breaks the queue, as a bad ring
 * does (virtio 1.2, 2.1.2); the rest stay for the driver's reset.
 */
static void retry_pending_locked(struct blk_queue *bq, bool *notify)
{
	struct virtio_blk *b = bq->b;
	struct virtq *vq = virtio_mmio_queue(b->t, bq->index);
	unsigned int k;
	char why[192];

	for (k = 0; k < bq->nr_pending && !bq->broken; k++) {
		uint16_t head = bq->pending[k];

		if (virtq_walk_head(vq, mem_of(b), head, &bq->scratch, why,
				    sizeof(why)) < 0) {
			char msg[256];

			snprintf(msg, sizeof(msg),
				 "queue %u: held request %u: %s", bq->index,
				 head, why);
			bq->broken = true;
			virtio_mmio_needs_reset(b->t, msg);
			break;
		}
		bq->in_flight--; /* start_locked() counts it again */
		start_locked(bq, &bq->scratch, notify);
	}
	/* Those left (a broken queue) wait for the reset. */
	memmove(bq->pending, bq->pending + k,
		(bq->nr_pending - k) * sizeof(bq->pending[0]));
	bq->nr_pending -= k;
}

void virtio_blk_retry(struct virtio_blk *b)
{
	/* QEMU's cont resets the io-status first: a retry that fails
	 * again sets it again (io_done()). */
	atomic_store(&b->io_error, false);
	for (unsigned int i = 0; i < b->nr_queues; i++) {
		struct blk_queue *bq = &b->queues[i];
		struct blk_req *list;
		bool notify = false;

		pthread_mutex_lock(&bq->lock);
		retry_pending_locked(bq, &notify);
		list = bq->retry;
		bq->retry = NULL;
		bq->nr_retry = 0;
		while (list) {
			struct blk_req *req = list;

			list = req->next;
			bq->in_flight--; /* submit_locked counts it again */
			free(req->bounce);
			req->bounce = NULL;
			if (!submit_locked(bq, req)) {
				complete_locked(req, VIRTIO_BLK_S_IOERR,
						&notify);
			}
		}
		if (bq->in_flight == 0)
			pthread_cond_broadcast(&bq->drained);
		pthread_mutex_unlock(&bq->lock);
		if (notify)
			virtio_mmio_interrupt(b->t);
	}
}

/* ---- creation and introspection -------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static void build_config(struct virtio_blk *b)
{
	uint8_t *c = b->config;

	memset(c, 0, sizeof(b->config));
	put64(c + VIRTIO_BLK_CFG_CAPACITY, b->file.size / SECTOR);
	/* A request's header and status take two descriptors. */
	put32(c + VIRTIO_BLK_CFG_SEG_MAX, VIRTQ_MAX_SIZE - 2);
	put32(c + VIRTIO_BLK_CFG_BLK_SIZE, SECTOR);
	put16(c + VIRTIO_BLK_CFG_NUM_QUEUES, (uint16_t)b->nr_queues);
	put32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, MAX_DISCARD_SECTORS);
	put32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 1);
	put32(c + VIRTIO_BLK_CFG_DISCARD_ALIGN, DISCARD_ALIGN_SECTORS);
	put32(c + VIRTIO_BLK_CFG_MAX_WZ_SECTORS, MAX_DISCARD_SECTORS);
	put32(c + VIRTIO_BLK_CFG_MAX_WZ_SEG, 1);
	c[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = b->cfg.discard && b->file.can_punch;
}

static uint64_t features_of(const struct virtio_blk *b)
{
	uint64_t f = (1ULL << VIRTIO_BLK_F_SEG_MAX) |
		     (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
		     (1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_BLK_F_MQ);

	if (b->cfg.readonly)
		return f | (1ULL << VIRTIO_BLK_F_RO);
	if (b->cfg.discard && b->file.can_punch)
		f |= 1ULL << VIRTIO_BLK_F_DISCARD;
	if (b->file.can_zero)
		f |= 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
	return f;
}

struct virtio_blk *virtio_blk_create(const struct blk_drive_config *cfg,
				     unsigned int nr_queues,
				     const struct virtio_blk_host *host,
				     char *err, size_t errlen)
{
	const struct virtio_mem_ops *mops = host->mem.ops;
	struct virtio_blk *b;

	if (nr_queues == 0 || nr_queues > VIRTIO_MMIO_MAX_QUEUES) {
		snprintf(err, errlen, "drive %s: %u queues is not in 1..%u",
			 cfg->id, nr_queues, VIRTIO_MMIO_MAX_QUEUES);
		return NULL;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->cfg = *cfg;
	b->host = *host;
	b->nr_queues = nr_queues;
	b->file.fd = -1;
	if (blk_file_open(cfg, &b->file, err, errlen) < 0)
		goto fail;
	b->queues = calloc(nr_queues, sizeof(*b->queues));
	if (!b->queues) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (unsigned int i = 0; i < nr_queues; i++) {
		b->queues[i].b = b;
		b->queues[i].index = i;
		pthread_mutex_init(&b->queues[i].lock, NULL);
		pthread_cond_init(&b->queues[i].drained, NULL);
	}
	build_config(b);
	b->ops = (struct virtio_device_ops){
		.device_id = VIRTIO_ID_BLOCK,
		.nr_queues = nr_queues,
		.features = features_of(b),
		.config_len = VIRTIO_BLK_CFG_LEN,
		.config_read = blk_config_read,
		.notify = blk_notify,
		.reset = blk_reset,
		.held = blk_held,
		.take_held = blk_take_held,
	};
	b->backend = blk_backend_create(nr_queues, VIRTQ_MAX_SIZE,
					host->force_threads, mops->thread_enter,
					mops->thread_exit, host->mem.ctx,
					b->backend_why, sizeof(b->backend_why));
	b->t = virtio_mmio_create(&b->ops, b, &host->mem, host->set_irq,
				  host->irq_ctx);
	if (!b->backend || !b->t) {
		snprintf(err, errlen, "drive %s: cannot start its I/O threads",
			 cfg->id);
		goto fail;
	}
	return b;
fail:
	virtio_blk_destroy(b);
	return NULL;
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	if (b->t && b->queues)
		blk_reset(b); /* drains */
	blk_backend_destroy(b->backend);
	virtio_mmio_destroy(b->t);
	for (unsigned int i = 0; b->queues && i < b->nr_queues; i++) {
		pthread_mutex_destroy(&b->queues[i].lock);
		pthread_cond_destroy(&b->queues[i].drained);
	}
	free(b->queues);
	blk_file_close(&b->file);
	free(b);
}

struct virtio_mmio *virtio_blk_transport(struct virtio_blk *b)
{
	return b->t;
}

bool virtio_blk_is_busy(struct virtio_blk *b)
{
	return atomic_load(&b->busy) != 0;
}

bool virtio_blk_uses_uring(struct virtio_blk *b, char *why, size_t whylen)
{
	if (whylen)
		snprintf(why, whylen, "%s", b->backend_why);
	return blk_backend_is_uring(b->backend);
}

void virtio_blk_info(struct virtio_blk *b, struct virtio_blk_info *out)
{
	struct virtio_blk_stats *s = &out->stats;

	out->cfg = &b->cfg;
	out->size = b->file.size;
	out->io_error = atomic_load(&b->io_error);
	out->uring = blk_backend_is_uring(b->backend);
	s->rd_bytes = atomic_load(&b->st.rd_bytes);
	s->wr_bytes = atomic_load(&b->st.wr_bytes);
	s->rd_ops = atomic_load(&b->st.rd_ops);
	s->wr_ops = atomic_load(&b->st.wr_ops);
	s->flush_ops = atomic_load(&b->st.flush_ops);
	s->discard_ops = atomic_load(&b->st.discard_ops);
	s->discard_bytes = atomic_load(&b->st.discard_bytes);
	s->failed_rd_ops = atomic_load(&b->st.failed_rd);
	s->failed_wr_ops = atomic_load(&b->st.failed_wr);
	s->failed_flush_ops = atomic_load(&b->st.failed_flush);
	s->rd_total_ns = atomic_load(&b->st.rd_ns);
	s->wr_total_ns = atomic_load(&b->st.wr_ns);
	s->flush_total_ns = atomic_load(&b->st.flush_ns);
	s->in_flight = 0;
	for (unsigned int i = 0; i < b->nr_queues; i++) {
		pthread_mutex_lock(&b->queues[i].lock);
		s->in_flight += b->queues[i].in_flight;
		pthread_mutex_unlock(&b->queues[i].lock);
	}
}

int virtio_blk_queue_info(struct virtio_blk *b, unsigned int queue,
			  struct virtio_blk_queue_info *out)
{
	struct blk_queue *bq;
	struct virtq *vq;

	if (queue >= b->nr_queues)
		return -ENOENT;
	bq = &b->queues[queue];
	vq = virtio_mmio_queue(b->t, queue);
	pthread_mutex_lock(&bq->lock);
	out->size = vq->size;
	out->last_avail = vq->last_avail;
	out->used_idx = vq->used_idx;
	out->signalled_used = vq->signalled_used;
	out->signalled_valid = vq->signalled_valid;
	out->shadow_avail_idx =
		vq->size ? __atomic_load_n((uint16_t *)(void *)(vq->avail + 2),
					   __ATOMIC_ACQUIRE) :
			   0;
	out->desc = vq->desc_gpa;
	out->avail = vq->avail_gpa;
	out->used = vq->used_gpa;
	out->in_flight = bq->in_flight;
	pthread_mutex_unlock(&bq->lock);
	return 0;
}
