/*
 * core/dev: the virtio block device (virtio 1.2, 5.2 "Block Device")
 * on the virtio-mmio transport, over a drive (core/dev/blk.h): one
 * request queue per vCPU (VIRTIO_BLK_F_MQ), requests turned into
 * backend I/O on the notifying vCPU's thread and completed on the
 * backend's threads, where the bytes written into guest memory are
 * logged dirty before the used ring is published.
 */
#ifndef MMUD_VIRTIO_BLK_H
#define MMUD_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blk.h"
#include "virtio.h"

#define VIRTIO_ID_BLOCK 2

/* Feature bits (virtio 1.2, 5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status (virtio 1.2, 5.2.6). */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_WZ_UNMAP 1u

/* Configuration layout offsets (virtio 1.2, 5.2.4). */
#define VIRTIO_BLK_CFG_CAPACITY 0
#define VIRTIO_BLK_CFG_SEG_MAX 12
#define VIRTIO_BLK_CFG_BLK_SIZE 20
#define VIRTIO_BLK_CFG_NUM_QUEUES 34
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS 36
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG 40
#define VIRTIO_BLK_CFG_DISCARD_ALIGN 44
#define VIRTIO_BLK_CFG_MAX_WZ_SECTORS 48
#define VIRTIO_BLK_CFG_MAX_WZ_SEG 52
#define VIRTIO_BLK_CFG_WZ_MAY_UNMAP 56
#define VIRTIO_BLK_CFG_LEN 60

/* An I/O error, for the daemon's BLOCK_IO_ERROR (QEMU's event). */
struct virtio_blk_error {
	const char *id; /* the drive's */
	bool write; /* the operation: a write (or flush, discard) */
	bool stopped; /* action: the request waits for the VM's cont */
	int err; /* errno */
};

struct virtio_blk_host {
	/* Guest memory and the backend threads' registration. */
	struct virtio_mem mem;
	/* The interrupt line of this device's IOAPIC pin. */
	void (*set_irq)(void *ctx, bool level);
	void *irq_ctx;
	/* Called on a backend thread for every failed request; with
	 * werror/rerror=stop the daemon pauses the VM and, at cont, calls
	 * virtio_blk_retry(). May be NULL. */
	void (*on_error)(void *ctx, const struct virtio_blk_error *e);
	void *error_ctx;
	bool force_threads; /* the thread-pool backend even with io_uring */
};

struct virtio_blk;

/*
 * Opens cfg's file and makes the device with nr_queues request queues.
 * NULL with the reason in err. backend_why says, when the thread pool
 * was chosen, why io_uring was not.
 */
struct virtio_blk *virtio_blk_create(const struct blk_drive_config *cfg,
				     unsigned int nr_queues,
				     const struct virtio_blk_host *host,
				     char *err, size_t errlen);
/* Drains every request, stops the backend, closes the file. */
void virtio_blk_destroy(struct virtio_blk *b);

/* Its transport: the VM routes its register page there. */
struct virtio_mmio *virtio_blk_transport(struct virtio_blk *b);
/* Whether a request is in flight or its interrupt not yet raised: the
 * device may still wake a halted guest. Any thread. */
bool virtio_blk_is_busy(struct virtio_blk *b);
/* Whether io_uring serves it, and if not why. */
bool virtio_blk_uses_uring(struct virtio_blk *b, char *why, size_t whylen);
/* Resubmits the requests an error with action stop kept back (and those
 * a migration brought held, their chains walked again from guest
 * memory), and clears io_error (QEMU's cont resets the io-status). Any
 * thread. */
void virtio_blk_retry(struct virtio_blk *b);

/*
 * Migration's switchover, with the vCPUs held (no notification comes):
 * waits until every request in flight has completed and been pushed,
 * but for the ones an error with stop kept back, which stay held: the
 * transport's state (virtio_mmio_save()) carries their heads, and the
 * destination resubmits them at its cont (docs/MIGRATION.md,
 * "virtio-blk"). The pages the completions wrote are in the dirty log
 * by then.
 */
void virtio_blk_quiesce(struct virtio_blk *b);

/* For query-block and query-blockstats. */
struct virtio_blk_stats {
	uint64_t rd_bytes, wr_bytes, rd_ops, wr_ops, flush_ops;
	uint64_t discard_ops, discard_bytes;
	uint64_t failed_rd_ops, failed_wr_ops, failed_flush_ops;
	uint64_t rd_total_ns, wr_total_ns, flush_total_ns;
	uint64_t in_flight;
};
struct virtio_blk_info {
	const struct blk_drive_config *cfg;
	uint64_t size;
	bool io_error; /* an error since the last reset (io-status) */
	bool uring;
	struct virtio_blk_stats stats;
};
void virtio_blk_info(struct virtio_blk *b, struct virtio_blk_info *out);

/* A queue's indices, for x-query-virtio-queue-status. */
struct virtio_blk_queue_info {
	uint16_t size, last_avail, used_idx, shadow_avail_idx;
	uint16_t signalled_used;
	bool signalled_valid;
	uint64_t desc, avail, used;
	unsigned int in_flight;
};
int virtio_blk_queue_info(struct virtio_blk *b, unsigned int queue,
			  struct virtio_blk_queue_info *out);

#endif
