/*
 * The virtio-mmio transport, Version 2 (virtio 1.2, 4.2 "Virtio Over
 * MMIO"): the register page, feature negotiation (a driver that does not
 * accept VIRTIO_F_VERSION_1 never gets FEATURES_OK), the device status
 * with DEVICE_NEEDS_RESET, the queues' configuration until the driver
 * makes each ready, the interrupt status and its line, the configuration
 * generation and reset. The rings themselves are core/dev/virtqueue.c's;
 * what a notification means is the device type's (its
 * struct virtio_device_ops).
 *
 * Locking: t->lock guards the registers below; t->irq_lock the interrupt
 * status and the line, so the line always follows the status in the
 * order they change; t->gate is held shared around a device's notify
 * callback and exclusively by reset, so a reset waits for notifications
 * in progress and none starts I/O while the device drains. Order:
 * gate, then lock, then irq_lock; a device's queue locks nest inside
 * gate and outside irq_lock (docs/locking.md, "Virtio devices").
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "virtio.h"

struct queue_cfg {
	uint32_t num;
	bool ready;
	gpa_t desc, avail, used;
};

/*
 * Legend: (c) constant after creation; (t) t->lock; (i) t->irq_lock.
 */
struct virtio_mmio {
	const struct virtio_device_ops *ops; /* (c) */
	void *dev_ctx; /* (c) */
	struct virtio_mem mem; /* (c) */
	void (*set_irq)(void *ctx, bool level); /* (c) */
	void *irq_ctx; /* (c) */
	uint64_t device_features; /* (c) */

	pthread_rwlock_t gate;
	pthread_mutex_t lock;
	uint32_t dev_feat_sel, drv_feat_sel, queue_sel; /* (t) */
	uint64_t driver_features; /* (t) */
	uint8_t status; /* (t) */
	uint32_t config_generation; /* (t) */
	char broken[128]; /* (t) why NEEDS_RESET was set */
	struct queue_cfg qcfg[VIRTIO_MMIO_MAX_QUEUES]; /* (t) */
	/* Set up under (t) while the queue is not ready; then the
	 * device's, under its own queue lock (core/dev/virtio_blk.c). */
	struct virtq queues[VIRTIO_MMIO_MAX_QUEUES];

	pthread_mutex_t irq_lock;
	uint32_t isr; /* (i) */
	bool line; /* (i) */
};

struct virtio_mmio *virtio_mmio_create(const struct virtio_device_ops *ops,
				       void *dev_ctx,
				       const struct virtio_mem *mem,
				       void (*set_irq)(void *ctx, bool level),
				       void *irq_ctx)
{
	struct virtio_mmio *t;

	if (ops->nr_queues == 0 || ops->nr_queues > VIRTIO_MMIO_MAX_QUEUES)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ops = ops;
	t->dev_ctx = dev_ctx;
	t->mem = *mem;
	t->set_irq = set_irq;
	t->irq_ctx = irq_ctx;
	t->device_features = ops->features | (1ULL << VIRTIO_F_VERSION_1) |
			     (1ULL << VIRTIO_F_INDIRECT_DESC) |
			     (1ULL << VIRTIO_F_EVENT_IDX);
	pthread_rwlock_init(&t->gate, NULL);
	pthread_mutex_init(&t->lock, NULL);
	pthread_mutex_init(&t->irq_lock, NULL);
	return t;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
	if (!t)
		return;
	pthread_rwlock_destroy(&t->gate);
	pthread_mutex_destroy(&t->lock);
	pthread_mutex_destroy(&t->irq_lock);
	free(t);
}

/* The line follows the interrupt status: high while a bit is set, so
 * an edge-triggered pin sees one edge each time the status leaves 0. */
static void update_line_locked(struct virtio_mmio *t)
{
	bool level = t->isr != 0;

	if (level != t->line) {
		t->line = level;
		if (t->set_irq)
			t->set_irq(t->irq_ctx, level);
	}
}

static void raise_isr(struct virtio_mmio *t, uint32_t bits)
{
	pthread_mutex_lock(&t->irq_lock);
	t->isr |= bits;
	update_line_locked(t);
	pthread_mutex_unlock(&t->irq_lock);
}

void virtio_mmio_interrupt(struct virtio_mmio *t)
{
	raise_isr(t, VIRTIO_MMIO_INT_VRING);
}

void virtio_mmio_needs_reset(struct virtio_mmio *t, const char *why)
{
	bool notify;

	pthread_mutex_lock(&t->lock);
	if (!(t->status & VIRTIO_STATUS_NEEDS_RESET))
		snprintf(t->broken, sizeof(t->broken), "%s", why);
	t->status |= VIRTIO_STATUS_NEEDS_RESET;
	notify = t->status & VIRTIO_STATUS_DRIVER_OK;
	pthread_mutex_unlock(&t->lock);
	/* virtio 1.2, 2.1.2: with DRIVER_OK, a configuration change
	 * notification follows. */
	if (notify)
		raise_isr(t, VIRTIO_MMIO_INT_CONFIG);
}

void virtio_mmio_broken_reason(struct virtio_mmio *t, char *buf, size_t len)
{
	pthread_mutex_lock(&t->lock);
	snprintf(buf, len, "%s", t->broken);
	pthread_mutex_unlock(&t->lock);
}

void virtio_mmio_config_changed(struct virtio_mmio *t)
{
	bool notify;

	pthread_mutex_lock(&t->lock);
	t->config_generation++;
	notify = t->status & VIRTIO_STATUS_DRIVER_OK;
	pthread_mutex_unlock(&t->lock);
	if (notify)
		raise_isr(t, VIRTIO_MMIO_INT_CONFIG);
}

/*
 * Device reset (virtio 1.2, 2.4): status 0 first, so no notification
 * starts new work; then, with the gate held exclusively (notifications
 * in progress have finished), the device drains what it started; then
 * every register and queue goes back to its initial value and the line
 * drops.
 */
void virtio_mmio_reset(struct virtio_mmio *t)
{
	pthread_mutex_lock(&t->lock);
	t->status = 0;
	pthread_mutex_unlock(&t->lock);

	pthread_rwlock_wrlock(&t->gate);
	if (t->ops->reset)
		t->ops->reset(t->dev_ctx);
	pthread_mutex_lock(&t->lock);
	t->status = 0;
	t->dev_feat_sel = t->drv_feat_sel = t->queue_sel = 0;
	t->driver_features = 0;
	t->broken[0] = 0;
	memset(t->qcfg, 0, sizeof(t->qcfg));
	for (unsigned int i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
		virtq_reset(&t->queues[i]);
	pthread_mutex_unlock(&t->lock);
	pthread_rwlock_unlock(&t->gate);

	pthread_mutex_lock(&t->irq_lock);
	t->isr = 0;
	update_line_locked(t);
	pthread_mutex_unlock(&t->irq_lock);
}

static bool is_features_acceptable(const struct virtio_mmio *t)
{
	/* virtio 1.2, 6.1: a modern device refuses a driver that does not
	 * accept VERSION_1; and no driver may accept what was not
	 * offered (3.1.1). */
	return (t->driver_features & (1ULL << VIRTIO_F_VERSION_1)) &&
	       !(t->driver_features & ~t->device_features);
}

static void write_status_locked(struct virtio_mmio *t, uint8_t v)
{
	uint8_t old = t->status;

	if ((v & VIRTIO_STATUS_FEATURES_OK) &&
	    !(old & VIRTIO_STATUS_FEATURES_OK) && !is_features_acceptable(t))
		v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK; /* 3.1.1, step 6 */
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(v & VIRTIO_STATUS_FEATURES_OK))
		v &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
	/* NEEDS_RESET is the device's: only a reset clears it. */
	v &= (uint8_t)~VIRTIO_STATUS_NEEDS_RESET;
	t->status = v | (old & VIRTIO_STATUS_NEEDS_RESET);
}

/* QueueReady written 1: the queue's areas become the device's. */
static void queue_ready_locked(struct virtio_mmio *t, struct queue_cfg *qc,
			       unsigned int index, char *why, size_t whylen)
{
	uint64_t f = t->driver_features;
	int r;

	if (qc->ready)
		return;
	if (!(t->status & VIRTIO_STATUS_FEATURES_OK)) {
		snprintf(why, whylen, "queue %u made ready before FEATURES_OK",
			 index);
		return;
	}
	if (qc->num > VIRTQ_MAX_SIZE) {
		snprintf(why, whylen, "queue %u: size %u over QueueNumMax %u",
			 index, qc->num, VIRTQ_MAX_SIZE);
		return;
	}
	r = virtq_setup(&t->queues[index], &t->mem, (uint16_t)qc->num, qc->desc,
			qc->avail, qc->used, f & (1ULL << VIRTIO_F_EVENT_IDX),
			f & (1ULL << VIRTIO_F_INDIRECT_DESC), why, whylen);
	if (r == 0)
		qc->ready = true;
}

static void set_half(gpa_t *v, bool high, uint32_t x)
{
	if (high)
		*v = (*v & 0xffffffffULL) | ((gpa_t)x << 32);
	else
		*v = (*v & ~0xffffffffULL) | x;
}

uint64_t virtio_mmio_read(struct virtio_mmio *t, uint32_t offset,
			  unsigned int size)
{
	struct queue_cfg *qc;
	uint64_t v = 0;

	if (offset >= VIRTIO_MMIO_CONFIG) {
		uint32_t off = offset - VIRTIO_MMIO_CONFIG;

		if ((size == 1 || size == 2 || size == 4 || size == 8) &&
		    off + size <= t->ops->config_len && t->ops->config_read)
			t->ops->config_read(t->dev_ctx, off, &v, size);
		return v;
	}
	if (size != 4 || (offset & 3))
		return 0;
	pthread_mutex_lock(&t->lock);
	qc = t->queue_sel < t->ops->nr_queues ? &t->qcfg[t->queue_sel] : NULL;
	switch (offset) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		v = VIRTIO_MMIO_MAGIC;
		break;
	case VIRTIO_MMIO_VERSION:
		v = VIRTIO_MMIO_VERSION_MODERN;
		break;
	case VIRTIO_MMIO_DEVICE_ID:
		v = t->ops->device_id;
		break;
	case VIRTIO_MMIO_VENDOR_ID:
		v = VIRTIO_MMIO_VENDOR;
		break;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		v = t->dev_feat_sel == 0 ? (uint32_t)t->device_features :
		    t->dev_feat_sel == 1 ? t->device_features >> 32 :
					   0;
		break;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		v = qc ? VIRTQ_MAX_SIZE : 0;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		v = qc ? qc->ready : 0;
		break;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		pthread_mutex_lock(&t->irq_lock);
		v = t->isr;
		pthread_mutex_unlock(&t->irq_lock);
		break;
	case VIRTIO_MMIO_STATUS:
		v = t->status;
		break;
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		/* No shared memory region: length -1 (virtio 1.2,
		 * 4.2.2). */
		v = 0xffffffffu;
		break;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		v = t->config_generation;
		break;
	default:
		/* Write-only and unknown registers read 0. */
		break;
	}
	pthread_mutex_unlock(&t->lock);
	return v;
}

void virtio_mmio_write(struct virtio_mmio *t, uint32_t offset,
		       unsigned int size, uint64_t value)
{
	uint32_t v = (uint32_t)value;
	struct queue_cfg *qc;
	char why[128] = "";
	bool ok;

	/* The configuration space of our devices is read-only, and the
	 * registers take 32-bit accesses only (virtio 1.2, 4.2.2.2). */
	if (offset >= VIRTIO_MMIO_CONFIG || size != 4 || (offset & 3))
		return;
	if (offset == VIRTIO_MMIO_STATUS && (v & 0xff) == 0) {
		virtio_mmio_reset(t);
		return;
	}
	if (offset == VIRTIO_MMIO_QUEUE_NOTIFY) {
		/* The gate, shared: a reset waits for this notification
		 * to have started its I/O before the device drains. */
		pthread_rwlock_rdlock(&t->gate);
		pthread_mutex_lock(&t->lock);
		ok = v < t->ops->nr_queues && t->qcfg[v].ready &&
		     (t->status & VIRTIO_STATUS_DRIVER_OK) &&
		     !(t->status & VIRTIO_STATUS_NEEDS_RESET);
		pthread_mutex_unlock(&t->lock);
		if (ok && t->ops->notify)
			t->ops->notify(t->dev_ctx, v);
		pthread_rwlock_unlock(&t->gate);
		return;
	}
	if (offset == VIRTIO_MMIO_INTERRUPT_ACK) {
		pthread_mutex_lock(&t->irq_lock);
		t->isr &= ~v;
		update_line_locked(t);
		pthread_mutex_unlock(&t->irq_lock);
		return;
	}
	pthread_mutex_lock(&t->lock);
	qc = t->queue_sel < t->ops->nr_queues ? &t->qcfg[t->queue_sel] : NULL;
	/* A ready queue's configuration is the device's until reset. */
	if (qc && qc->ready && offset >= VIRTIO_MMIO_QUEUE_NUM &&
	    offset <= VIRTIO_MMIO_QUEUE_DEVICE_HIGH &&
	    offset != VIRTIO_MMIO_QUEUE_NOTIFY)
		qc = NULL;
	switch (offset) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		t->dev_feat_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		t->drv_feat_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		/* Fixed once FEATURES_OK is set (virtio 1.2, 3.1.1). */
		if (t->status & VIRTIO_STATUS_FEATURES_OK)
			break;
		if (t->drv_feat_sel == 0)
			t->driver_features =
				(t->driver_features & ~0xffffffffULL) | v;
		else if (t->drv_feat_sel == 1)
			t->driver_features =
				(t->driver_features & 0xffffffffULL) |
				((uint64_t)v << 32);
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		t->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (qc)
			qc->num = v;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		/* Writing 0 to a ready queue needs VIRTIO_F_RING_RESET,
		 * which is not offered: ignored. */
		if (qc && v == 1)
			queue_ready_locked(t, qc, t->queue_sel, why,
					   sizeof(why));
		break;
	case VIRTIO_MMIO_STATUS:
		write_status_locked(t, (uint8_t)v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (qc)
			set_half(&qc->desc,
				 offset == VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
		if (qc)
			set_half(&qc->avail,
				 offset == VIRTIO_MMIO_QUEUE_DRIVER_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		if (qc)
			set_half(&qc->used,
				 offset == VIRTIO_MMIO_QUEUE_DEVICE_HIGH, v);
		break;
	default:
		/* Read-only and unknown registers ignore writes. */
		break;
	}
	pthread_mutex_unlock(&t->lock);
	if (why[0])
		virtio_mmio_needs_reset(t, why);
}

struct virtq *virtio_mmio_queue(struct virtio_mmio *t, unsigned int queue)
{
	return queue < t->ops->nr_queues ? &t->queues[queue] : NULL;
}

uint64_t virtio_mmio_features(struct virtio_mmio *t)
{
	uint64_t f;

	pthread_mutex_lock(&t->lock);
	f = t->driver_features;
	pthread_mutex_unlock(&t->lock);
	return f;
}

uint8_t virtio_mmio_status(struct virtio_mmio *t)
{
	uint8_t s;

	pthread_mutex_lock(&t->lock);
	s = t->status;
	pthread_mutex_unlock(&t->lock);
	return s;
}

const struct virtio_mem *virtio_mmio_mem(struct virtio_mmio *t)
{
	return &t->mem;
}

void virtio_mmio_save(struct virtio_mmio *t, struct virtio_mmio_state *st)
{
	memset(st, 0, sizeof(*st));
	/* Before t->lock: the device's queue locks nest outside it. */
	for (unsigned int i = 0; t->ops->held && i < t->ops->nr_queues; i++)
		st->q[i].nr_held = (uint16_t)t->ops->held(
			t->dev_ctx, i, st->q[i].held, VIRTQ_MAX_SIZE);
	pthread_mutex_lock(&t->lock);
	st->nr_queues = t->ops->nr_queues;
	st->status = t->status;
	st->dev_feat_sel = t->dev_feat_sel;
	st->drv_feat_sel = t->drv_feat_sel;
	st->queue_sel = t->queue_sel;
	st->driver_features = t->driver_features;
	st->config_generation = t->config_generation;
	for (unsigned int i = 0; i < t->ops->nr_queues; i++) {
		const struct queue_cfg *qc = &t->qcfg[i];
		const struct virtq *q = &t->queues[i];

		struct virtio_mmio_queue_state *qs = &st->q[i];

		qs->num = qc->num;
		qs->ready = qc->ready;
		qs->desc = qc->desc;
		qs->avail = qc->avail;
		qs->used = qc->used;
		qs->last_avail = q->last_avail;
		qs->used_idx = q->used_idx;
		qs->signalled_used = q->signalled_used;
		qs->signalled_valid = q->signalled_valid;
	}
	pthread_mutex_unlock(&t->lock);
	pthread_mutex_lock(&t->irq_lock);
	st->isr = t->isr;
	pthread_mutex_unlock(&t->irq_lock);
}

/* The held heads of queue i (docs/MIGRATION.md, "virtio-blk"): on a
 * ready queue of a device that takes them, each below the queue's size
 * and once. Their count against the indices is the caller's check. */
static bool check_held(struct virtio_mmio *t, unsigned int i,
		       const struct virtio_mmio_queue_state *q, char *err,
		       size_t errlen)
{
	bool seen[VIRTQ_MAX_SIZE] = { false };

	if (!q->nr_held)
		return true;
	if (q->nr_held > VIRTQ_MAX_SIZE) {
		snprintf(err, errlen,
			 "virtio: queue %u: %u held requests, "
			 "over %u",
			 i, q->nr_held, VIRTQ_MAX_SIZE);
		return false;
	}
	if (!t->ops->take_held) {
		snprintf(err, errlen,
			 "virtio: queue %u holds %u requests, this device "
			 "holds none",
			 i, q->nr_held);
		return false;
	}
	if (!q->ready) {
		snprintf(err, errlen,
			 "virtio: queue %u is not ready but holds %u requests",
			 i, q->nr_held);
		return false;
	}
	for (unsigned int k = 0; k < q->nr_held; k++) {
		uint16_t h = q->held[k];

		if (h >= q->num) {
			snprintf(err, errlen,
				 "virtio: queue %u: held head %u is not below "
				 "the queue size %u",
				 i, h, q->num);
			return false;
		}
		if (seen[h]) {
			snprintf(err, errlen,
				 "virtio: queue %u: held head %u twice", i, h);
			return false;
		}
		seen[h] = true;
	}
	return true;
}

bool virtio_mmio_load(struct virtio_mmio *t, const struct virtio_mmio_state *st,
		      char *err, size_t errlen)
{
	const uint8_t known = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			      VIRTIO_STATUS_DRIVER_OK |
			      VIRTIO_STATUS_FEATURES_OK |
			      VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED;
	struct virtq *qs;
	char why[128];

	if (st->nr_queues != t->ops->nr_queues) {
		snprintf(err, errlen, "virtio: %u queues, this device has %u",
			 st->nr_queues, t->ops->nr_queues);
		return false;
	}
	if ((st->status & ~known) || (st->isr & ~3u)) {
		snprintf(err, errlen, "virtio: status %#x or isr %#x",
			 st->status, st->isr);
		return false;
	}
	if ((st->status & VIRTIO_STATUS_FEATURES_OK) &&
	    (!(st->driver_features & (1ULL << VIRTIO_F_VERSION_1)) ||
	     (st->driver_features & ~t->device_features))) {
		snprintf(err, errlen,
			 "virtio: driver features %#llx with FEATURES_OK, the "
			 "device offers %#llx",
			 (unsigned long long)st->driver_features,
			 (unsigned long long)t->device_features);
		return false;
	}
	qs = calloc(st->nr_queues, sizeof(*qs));
	if (!qs) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	for (unsigned int i = 0; i < st->nr_queues; i++) {
		const struct virtio_mmio_queue_state *q = &st->q[i];
		uint64_t f = st->driver_features;

		if (!check_held(t, i, q, err, errlen)) {
			free(qs);
			return false;
		}
		if (!q->ready)
			continue;
		if (!(st->status & VIRTIO_STATUS_FEATURES_OK) ||
		    q->num > VIRTQ_MAX_SIZE ||
		    virtq_setup(&qs[i], &t->mem, (uint16_t)q->num, q->desc,
				q->avail, q->used,
				f & (1ULL << VIRTIO_F_EVENT_IDX),
				f & (1ULL << VIRTIO_F_INDIRECT_DESC), why,
				sizeof(why)) < 0) {
			snprintf(err, errlen, "virtio: queue %u: %s", i,
				 q->num > VIRTQ_MAX_SIZE ?
					 "size over QueueNumMax" :
				 !(st->status & VIRTIO_STATUS_FEATURES_OK) ?
					 "ready without FEATURES_OK" :
					 why);
			free(qs);
			return false;
		}
		/* Popped and not pushed: only the requests the device
		 * held for a retry, whose heads come with them. */
		if ((uint16_t)(q->last_avail - q->used_idx) != q->nr_held) {
			if (q->nr_held)
				snprintf(
					err, errlen,
					"virtio: queue %u has %u requests in "
					"flight but %u held heads",
					i,
					(uint16_t)(q->last_avail - q->used_idx),
					q->nr_held);
			else
				snprintf(err, errlen,
					 "virtio: queue %u has %u requests in "
					 "flight",
					 i,
					 (uint16_t)(q->last_avail -
						    q->used_idx));
			free(qs);
			return false;
		}
		qs[i].last_avail = q->last_avail;
		qs[i].used_idx = q->used_idx;
		qs[i].signalled_used = q->signalled_used;
		qs[i].signalled_valid = q->signalled_valid;
	}
	pthread_mutex_lock(&t->lock);
	t->status = st->status;
	t->dev_feat_sel = st->dev_feat_sel;
	t->drv_feat_sel = st->drv_feat_sel;
	t->queue_sel = st->queue_sel;
	t->driver_features = st->driver_features;
	t->config_generation = st->config_generation;
	for (unsigned int i = 0; i < st->nr_queues; i++) {
		t->qcfg[i] = (struct queue_cfg){
			.num = st->q[i].num,
			.ready = st->q[i].ready,
			.desc = st->q[i].desc,
			.avail = st->q[i].avail,
			.used = st->q[i].used,
		};
		t->queues[i] = qs[i];
	}
	pthread_mutex_unlock(&t->lock);
	pthread_mutex_lock(&t->irq_lock);
	t->isr = st->isr;
	t->line = st->isr != 0;
	pthread_mutex_unlock(&t->irq_lock);
	free(qs);
	/* Outside t->lock, as the device's queue locks nest outside it. */
	for (unsigned int i = 0; i < st->nr_queues; i++)
		if (st->q[i].nr_held)
			t->ops->take_held(t->dev_ctx, i, st->q[i].held,
					  st->q[i].nr_held);
	return true;
}

void virtio_mmio_info(struct virtio_mmio *t, struct virtio_mmio_info *out)
{
	pthread_mutex_lock(&t->lock);
	out->device_id = t->ops->device_id;
	out->status = t->status;
	out->device_features = t->device_features;
	out->driver_features = t->driver_features;
	out->config_generation = t->config_generation;
	out->nr_queues = t->ops->nr_queues;
	pthread_mutex_unlock(&t->lock);
	pthread_mutex_lock(&t->irq_lock);
	out->isr = t->isr;
	pthread_mutex_unlock(&t->irq_lock);
}
