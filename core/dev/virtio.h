/*
 * core/dev: virtio over MMIO (virtio 1.2, 4.2 "Virtio Over MMIO"),
 * modern devices only (Version 2), and the split virtqueues they use
 * (virtio 1.2, 2.7 "Split Virtqueues"), with indirect descriptors and
 * VIRTIO_F_RING_EVENT_IDX. The transport owns the register page, the
 * device status and feature negotiation, the queues' configuration and
 * the interrupt status; a device type (core/dev/virtio_blk.c) supplies
 * its feature bits, its configuration space and what a queue
 * notification does. Guest memory is reached only through struct
 * virtio_mem_ops, which the VM provides: a descriptor is guest input,
 * and no address it names becomes a host pointer unless the VM says
 * the whole range is guest RAM.
 */
#ifndef MMUD_VIRTIO_H
#define MMUD_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

/* Platform v2 (docs/GUEST-ABI.md, "Platform v2 ACPI tables"): device n
 * at VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SIZE on IOAPIC pin
 * VIRTIO_MMIO_GSI_BASE + n, edge-triggered, active high. */
#define VIRTIO_MMIO_BASE 0xd0000000ULL
#define VIRTIO_MMIO_SIZE 0x1000
#define VIRTIO_MMIO_GSI_BASE 5
#define VIRTIO_MMIO_MAX_DEVICES 16

/* Registers (virtio 1.2, 4.2.2 "MMIO Device Register Layout"). */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_SHM_SEL 0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW 0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH 0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW 0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH 0x0bc
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_MMIO_VERSION_MODERN 2
#define VIRTIO_MMIO_VENDOR 0x554d4d4d /* "MMMU" read little endian */

/* Interrupt status bits (virtio 1.2, 4.2.2). */
#define VIRTIO_MMIO_INT_VRING 1u
#define VIRTIO_MMIO_INT_CONFIG 2u

/* Device status (virtio 1.2, 2.1 "Device Status Field"). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1u
#define VIRTIO_STATUS_DRIVER 2u
#define VIRTIO_STATUS_DRIVER_OK 4u
#define VIRTIO_STATUS_FEATURES_OK 8u
#define VIRTIO_STATUS_NEEDS_RESET 64u
#define VIRTIO_STATUS_FAILED 128u

/* Reserved feature bits (virtio 1.2, 6 "Reserved Feature Bits"). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* Split virtqueue layout (virtio 1.2, 2.7.5 - 2.7.8). */
#define VIRTQ_DESC_F_NEXT 1u
#define VIRTQ_DESC_F_WRITE 2u
#define VIRTQ_DESC_F_INDIRECT 4u
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
#define VIRTQ_USED_F_NO_NOTIFY 1u
#define VIRTQ_DESC_SIZE 16
#define VIRTQ_MAX_SIZE 256 /* QueueNumMax of every queue here */

/*
 * Guest memory as a device sees it. map returns the host address of
 * [gpa, gpa + len) when the whole range is guest RAM a device may use,
 * and NULL otherwise (outside RAM, in the MMIO hole, wrapping): such a
 * pointer stays valid for the life of the VM. mark_dirty logs bytes the
 * device wrote in the dirty log (the VM's memslots); it is called
 * before the used ring that reports them is published. thread_enter
 * and thread_exit bracket every device thread that calls mark_dirty
 * (the VM registers it with its RCU domain); both may be NULL.
 */
struct virtio_mem_ops {
	void *(*map)(void *ctx, gpa_t gpa, uint64_t len);
	void (*mark_dirty)(void *ctx, gpa_t gpa, uint64_t len);
	void (*thread_enter)(void *ctx);
	void (*thread_exit)(void *ctx);
};

struct virtio_mem {
	const struct virtio_mem_ops *ops;
	void *ctx;
};

/* ---- split virtqueues (core/dev/virtqueue.c) ------------------------- */

/*
 * One split virtqueue's device side. The ring addresses and size are
 * set by the transport when the driver makes the queue ready, and
 * cleared at reset; the indices are the device's. Not locked here: its
 * device serialises virtq_pop() and virtq_push() (virtio_blk.c holds
 * the queue's lock).
 */
struct virtq {
	uint16_t size; /* 0: not ready */
	gpa_t desc_gpa, avail_gpa, used_gpa;
	/* Host addresses of the three areas, mapped at ready. */
	uint8_t *desc, *avail, *used;
	bool event_idx, indirect; /* negotiated features */
	uint16_t last_avail; /* the next avail entry to take */
	uint16_t used_idx; /* what the device last published */
	uint16_t signalled_used; /* used_idx at the last interrupt */
	bool signalled_valid;
};

/* One buffer of a chain: device-readable (out) or device-writable (in). */
struct virtq_seg {
	gpa_t gpa;
	void *hva;
	uint32_t len;
	bool write;
};

/* A chain taken from the available ring, flattened through indirect
 * tables: readable segments first, then writable ones. */
struct virtq_chain {
	uint16_t head;
	unsigned int nr_seg, nr_out; /* nr_out: the readable ones */
	uint64_t out_len, in_len; /* bytes readable, writable */
	struct virtq_seg seg[VIRTQ_MAX_SIZE];
};

/*
 * Makes q ready (virtio 1.2, 2.7): size a power of two in
 * 1..VIRTQ_MAX_SIZE, the areas aligned as 2.7 requires and wholly in
 * guest RAM. -EINVAL with the reason in err otherwise, q unchanged.
 */
int virtq_setup(struct virtq *q, const struct virtio_mem *mem, uint16_t size,
		gpa_t desc, gpa_t avail, gpa_t used, bool event_idx,
		bool indirect, char *err, size_t errlen);
/* Back to not ready, indices 0. */
void virtq_reset(struct virtq *q);

/*
 * Takes the next available chain into c and walks it (virtio 1.2,
 * 2.7.5.2 and 2.7.5.3): 1 with c filled, 0 if the ring is empty, or
 * -EINVAL with the reason in err for a ring the device cannot use: an
 * avail index more than the queue size ahead, a head or next index out
 * of range, a chain longer than the queue (a loop included), a buffer
 * not wholly in guest RAM, a readable buffer after a writable one, an
 * indirect descriptor that was not negotiated, has NEXT, sits in an
 * indirect table, or whose table is empty, not a multiple of 16 bytes
 * or longer than the queue. The caller then sets DEVICE_NEEDS_RESET
 * (virtio 1.2, 2.1.2). With EVENT_IDX it also publishes avail_event
 * (2.7.10) so the driver notifies for the next entry.
 */
int virtq_pop(struct virtq *q, const struct virtio_mem *mem,
	      struct virtq_chain *c, char *err, size_t errlen);
/*
 * Walks the chain at head again, as virtq_pop() walked it, without
 * touching the rings: for a request popped before a migration, whose
 * head the stream carried (docs/MIGRATION.md, "virtio-blk"). The
 * descriptors are guest input read anew: the same refusals as
 * virtq_pop(), and a head not below the queue size.
 */
int virtq_walk_head(struct virtq *q, const struct virtio_mem *mem,
		    uint16_t head, struct virtq_chain *c, char *err,
		    size_t errlen);
/*
 * Returns the chain with head to the driver as used, len bytes written:
 * the used element, then (release) the used index (virtio 1.2, 2.7.8).
 * Every byte the device wrote into the chain's buffers must already be
 * logged dirty (virtio_mem_ops.mark_dirty); this logs the used ring's
 * own bytes before the index store.
 */
void virtq_push(struct virtq *q, const struct virtio_mem *mem, uint16_t head,
		uint32_t len);
/*
 * Whether the driver wants an interrupt for what was pushed since the
 * last true answer: used_event with EVENT_IDX (virtio 1.2, 2.7.10),
 * else the NO_INTERRUPT flag (2.7.7). Full barrier between the used
 * index store and the read of the driver's field.
 */
bool virtq_should_notify(struct virtq *q);

/* ---- the virtio-mmio transport (core/dev/virtio_mmio.c) -------------- */

struct virtio_mmio;

/*
 * What a device type gives the transport. Callbacks are called without
 * the transport's lock, from the thread that made the access.
 */
struct virtio_device_ops {
	uint32_t device_id;
	unsigned int nr_queues; /* 1..VIRTIO_MMIO_MAX_QUEUES */
	/* Device-type feature bits (the transport adds VERSION_1,
	 * INDIRECT_DESC and EVENT_IDX). */
	uint64_t features;
	/* Reads len (1, 2, 4 or 8) bytes of the configuration space at
	 * off; off + len <= config_len is checked by the transport. */
	uint32_t config_len;
	void (*config_read)(void *ctx, uint32_t off, void *buf,
			    unsigned int len);
	/* The driver wrote QueueNotify for a ready queue with DRIVER_OK. */
	void (*notify)(void *ctx, unsigned int queue);
	/* Device reset (status 0, or the VM's reset): returns once nothing
	 * the device started touches guest memory any more; the transport
	 * then clears the queues. */
	void (*reset)(void *ctx);
	/*
	 * Migration (virtio_mmio_save(), virtio_mmio_load()); both may be
	 * NULL for a device that never holds a request across a quiesce.
	 * held: the heads of the chains of queue the device holds popped
	 * but not pushed (at most max, in the order it would resubmit
	 * them), once it is quiet: the requests an error with action stop
	 * kept back for the VM's cont. take_held: the destination's device
	 * takes such heads of queue (n of them, already checked against
	 * the queue: below its size, distinct, as many as it has in
	 * flight) and walks their chains again when it resubmits them.
	 */
	unsigned int (*held)(void *ctx, unsigned int queue, uint16_t *heads,
			     unsigned int max);
	void (*take_held)(void *ctx, unsigned int queue, const uint16_t *heads,
			  unsigned int n);
};

#define VIRTIO_MMIO_MAX_QUEUES 64

/*
 * A transport for device index (its page at VIRTIO_MMIO_BASE + index *
 * VIRTIO_MMIO_SIZE); set_irq drives its IOAPIC pin (true: high). NULL
 * means -ENOMEM.
 */
struct virtio_mmio *virtio_mmio_create(const struct virtio_device_ops *ops,
				       void *dev_ctx,
				       const struct virtio_mem *mem,
				       void (*set_irq)(void *ctx, bool level),
				       void *irq_ctx);
void virtio_mmio_destroy(struct virtio_mmio *t);

/*
 * A register access at offset (0..0xfff), size 1, 2, 4 or 8. Registers
 * below the configuration space take 32-bit accesses only (virtio 1.2,
 * 4.2.2.2): others read 0 and are ignored. Thread-safe.
 */
uint64_t virtio_mmio_read(struct virtio_mmio *t, uint32_t offset,
			  unsigned int size);
void virtio_mmio_write(struct virtio_mmio *t, uint32_t offset,
		       unsigned int size, uint64_t value);
/* The VM's reset: as the driver writing status 0. */
void virtio_mmio_reset(struct virtio_mmio *t);

/* The queue a device works on (its ring fields), NULL past nr_queues. */
struct virtq *virtio_mmio_queue(struct virtio_mmio *t, unsigned int queue);
/* The negotiated features (valid once FEATURES_OK). */
uint64_t virtio_mmio_features(struct virtio_mmio *t);
uint8_t virtio_mmio_status(struct virtio_mmio *t);
/* The device's guest memory. */
const struct virtio_mem *virtio_mmio_mem(struct virtio_mmio *t);
/* A used buffer notification: sets the interrupt status bit and raises
 * the line. Any thread. */
void virtio_mmio_interrupt(struct virtio_mmio *t);
/*
 * The device found the driver's rings unusable (virtio 1.2, 2.1.2): sets
 * DEVICE_NEEDS_RESET, keeps the reason for introspection and, with
 * DRIVER_OK, sends a configuration change notification. Any thread.
 */
void virtio_mmio_needs_reset(struct virtio_mmio *t, const char *why);
/* Why the device last set DEVICE_NEEDS_RESET ("" if it did not). */
void virtio_mmio_broken_reason(struct virtio_mmio *t, char *buf, size_t len);
/* The configuration space changed: bumps ConfigGeneration and sends a
 * configuration change notification. */
void virtio_mmio_config_changed(struct virtio_mmio *t);

/*
 * The transport's state for migration, taken with the device quiet: no
 * request in flight but those the device holds for a retry (the
 * device's held callback), so each ready queue's last_avail is its
 * used_idx plus its held heads. virtio_mmio_load() refuses (false,
 * nothing changed, the field named in err) what this device could not
 * be in: another queue count, a status with bits the device never sets
 * or FEATURES_OK on features it does not offer (or without VERSION_1),
 * a ready queue that virtq_setup() refuses (size, alignment, areas
 * outside RAM), requests in flight that are not held ones, held heads
 * on a queue not ready, not below its size or twice, or held heads for
 * a device without take_held. The line is taken as high exactly when
 * isr is not 0, without a new edge: the IOAPIC's own state carries the
 * pin.
 */
struct virtio_mmio_queue_state {
	uint32_t num;
	bool ready;
	gpa_t desc, avail, used;
	uint16_t last_avail, used_idx, signalled_used;
	bool signalled_valid;
	uint16_t nr_held; /* <= VIRTQ_MAX_SIZE */
	uint16_t held[VIRTQ_MAX_SIZE];
};
struct virtio_mmio_state {
	uint32_t nr_queues;
	uint8_t status;
	uint32_t dev_feat_sel, drv_feat_sel, queue_sel;
	uint64_t driver_features;
	uint32_t config_generation, isr;
	struct virtio_mmio_queue_state q[VIRTIO_MMIO_MAX_QUEUES];
};
void virtio_mmio_save(struct virtio_mmio *t, struct virtio_mmio_state *st);
bool virtio_mmio_load(struct virtio_mmio *t, const struct virtio_mmio_state *st,
		      char *err, size_t errlen);

/* For x-query-virtio and x-query-virtio-queue-status. */
struct virtio_mmio_info {
	uint32_t device_id;
	uint8_t status;
	uint32_t isr;
	uint64_t device_features, driver_features;
	uint32_t config_generation;
	unsigned int nr_queues;
};
void virtio_mmio_info(struct virtio_mmio *t, struct virtio_mmio_info *out);

#endif
