/*
 * The QMP side of block devices (docs/QMP.md, "query-block (daemon)",
 * "query-blockstats (daemon)", "x-query-virtio (daemon)",
 * "x-query-virtio-queue-status (daemon)" and "BLOCK_IO_ERROR"): QEMU's
 * query-block and query-blockstats in QEMU's shape, QEMU 7.2's
 * introspection of virtio devices, and the BLOCK_IO_ERROR event, which
 * a backend thread reports and the loop thread sends. Everything
 * answers at once on the loop thread: the device's counters are atomics
 * and its queue locks are never held for long. The devices themselves
 * are core/dev/virtio_blk.c's, wired by core/vm.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev/virtio_blk.h"
#include "mmud.h"
#include "rpc.h"
#include "vm.h"

/* Legend: (e) loop thread; (l) b->lock. */
struct mmud_block {
	pthread_mutex_t lock;
	/* (l) NULL once detached: a backend thread reporting an error
	 * after the loop ended sends nothing. */
	struct mmud_worker *worker;
	struct qmp_server *qmp; /* (e) NULL until registered */
	struct vm *vm; /* (e) */
	struct mmud *d; /* (e) */
};

/* One BLOCK_IO_ERROR on its way to the loop thread. */
struct io_error_event {
	struct mmud_block *b;
	char id[BLK_ID_MAX];
	bool write, stopped;
	int err;
};

static void send_io_error(void *arg)
{
	struct io_error_event *ev = arg;

	/* QEMU's order: BLOCK_IO_ERROR, then (action stop) the VM stops
	 * in io-error with STOP. */
	if (ev->b->qmp)
		qmp_server_emit_event(
			ev->b->qmp, "BLOCK_IO_ERROR",
			json_pack("{s:s, s:s, s:s, s:s, s:b, s:s}", "device",
				  ev->id, "node-name", ev->id, "operation",
				  ev->write ? "write" : "read", "action",
				  ev->stopped ? "stop" : "report", "nospace",
				  ev->err == ENOSPC, "reason",
				  strerror(ev->err)));
	if (ev->stopped && ev->b->d)
		mmud_io_error_stop(ev->b->d);
	free(ev);
}

void mmud_block_io_error(void *ctx, const struct virtio_blk_error *e)
{
	struct mmud_block *b = ctx;
	struct io_error_event *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return;
	ev->b = b;
	snprintf(ev->id, sizeof(ev->id), "%s", e->id);
	ev->write = e->write;
	ev->stopped = e->stopped;
	ev->err = e->err;
	pthread_mutex_lock(&b->lock);
	if (!b->worker || mmud_call_soon(b->worker, send_io_error, ev) < 0)
		free(ev);
	pthread_mutex_unlock(&b->lock);
}

/* QEMU's qdev path of a virtio device with an id (-device ...,id=ID). */
static void device_path(const char *id, char *buf, size_t len)
{
	snprintf(buf, len, "/machine/peripheral/%s/virtio-backend", id);
}

static void cmd_query_block(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmud_block *b = opaque;
	json_t *list = json_array();
	struct virtio_blk *blk;
	char path[128];

	(void)args;
	for (unsigned int i = 0; (blk = vm_blk(b->vm, i)); i++) {
		struct virtio_blk_info info;
		const struct blk_drive_config *c;

		virtio_blk_info(blk, &info);
		c = info.cfg;
		device_path(c->id, path, sizeof(path));
		json_array_append_new(
			list,
			json_pack(
				"{s:s, s:s, s:s, s:b, s:b, s:s, s:{s:s, s:s, "
				"s:b, s:s, s:b, s:i, s:{s:b, s:b, s:b}, s:I}}",
				"device", c->id, "qdev", path, "type",
				"unknown", "removable", 0, "locked", 0,
				"io-status", info.io_error ? "failed" : "ok",
				"inserted", "file", c->file, "node-name", c->id,
				"ro", c->readonly, "drv", "raw", "encrypted", 0,
				"backing_file_depth", 0, "cache", "writeback",
				!c->direct, "direct", c->direct, "no-flush", 0,
				"image-size", (json_int_t)info.size));
	}
	qmp_reply_return(req, list);
}

static void cmd_query_blockstats(struct qmp_request *req, json_t *args,
				 void *opaque)
{
	struct mmud_block *b = opaque;
	json_t *list = json_array();
	struct virtio_blk *blk;

	(void)args;
	for (unsigned int i = 0; (blk = vm_blk(b->vm, i)); i++) {
		struct virtio_blk_info info;
		const struct virtio_blk_stats *s = &info.stats;
		json_t *st;

		virtio_blk_info(blk, &info);
		st = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			       "rd_bytes", (json_int_t)s->rd_bytes, "wr_bytes",
			       (json_int_t)s->wr_bytes, "rd_operations",
			       (json_int_t)s->rd_ops, "wr_operations",
			       (json_int_t)s->wr_ops, "flush_operations",
			       (json_int_t)s->flush_ops, "rd_total_time_ns",
			       (json_int_t)s->rd_total_ns, "wr_total_time_ns",
			       (json_int_t)s->wr_total_ns,
			       "flush_total_time_ns",
			       (json_int_t)s->flush_total_ns);
		json_object_update_new(
			st,
			json_pack("{s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:o}",
				  "unmap_operations",
				  (json_int_t)s->discard_ops, "unmap_bytes",
				  (json_int_t)s->discard_bytes,
				  "failed_rd_operations",
				  (json_int_t)s->failed_rd_ops,
				  "failed_wr_operations",
				  (json_int_t)s->failed_wr_ops,
				  "failed_flush_operations",
				  (json_int_t)s->failed_flush_ops,
				  "account_invalid", 0, "account_failed", 1,
				  "timed_stats", json_array()));
		json_array_append_new(list,
				      json_pack("{s:s, s:s, s:o}", "device",
						info.cfg->id, "node-name",
						info.cfg->id, "stats", st));
	}
	qmp_reply_return(req, list);
}

static void cmd_query_virtio(struct qmp_request *req, json_t *args,
			     void *opaque)
{
	struct mmud_block *b = opaque;
	json_t *list = json_array();
	struct virtio_blk *blk;
	char path[128];

	(void)args;
	for (unsigned int i = 0; (blk = vm_blk(b->vm, i)); i++) {
		struct virtio_blk_info info;

		virtio_blk_info(blk, &info);
		device_path(info.cfg->id, path, sizeof(path));
		json_array_append_new(list,
				      json_pack("{s:s, s:s}", "path", path,
						"name", "virtio-blk"));
	}
	qmp_reply_return(req, list);
}

static const struct qmp_arg queue_status_args[] = {
	{ "path", QMP_ARG_STRING, true },
	{ "queue", QMP_ARG_INT, true },
	QMP_ARGS_END,
};

static void cmd_query_virtio_queue_status(struct qmp_request *req, json_t *args,
					  void *opaque)
{
	struct mmud_block *b = opaque;
	const char *want = json_string_value(json_object_get(args, "path"));
	struct virtio_blk_queue_info q;
	struct virtio_blk *blk;
	uint64_t queue;
	char path[128];

	for (unsigned int i = 0; (blk = vm_blk(b->vm, i)); i++) {
		struct virtio_blk_info info;

		virtio_blk_info(blk, &info);
		device_path(info.cfg->id, path, sizeof(path));
		if (!strcmp(path, want))
			break;
	}
	if (!blk) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Path '%.100s' is not a VirtIODevice", want);
		return;
	}
	if (!qmp_json_u64(json_object_get(args, "queue"), &queue) ||
	    queue > 0xffff || virtio_blk_queue_info(blk, queue, &q) < 0) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Invalid virtqueue number %lld",
				(long long)json_integer_value(
					json_object_get(args, "queue")));
		return;
	}
	qmp_reply_return(
		req,
		json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:i, "
			  "s:i, s:i, s:i, s:b}",
			  "name", "virtio-blk", "queue-index", (int)queue,
			  "inuse", (int)q.in_flight, "vring-num", (int)q.size,
			  "vring-num-default", VIRTQ_MAX_SIZE, "vring-align",
			  4096, "vring-desc", (json_int_t)q.desc, "vring-avail",
			  (json_int_t)q.avail, "vring-used", (json_int_t)q.used,
			  "last-avail-idx", (int)q.last_avail,
			  "shadow-avail-idx", (int)q.shadow_avail_idx,
			  "used-idx", (int)q.used_idx, "signalled-used",
			  (int)q.signalled_used, "signalled-used-valid",
			  q.signalled_valid));
}

struct mmud_block *mmud_block_new(struct mmud_worker *worker)
{
	struct mmud_block *b = calloc(1, sizeof(*b));

	if (b) {
		pthread_mutex_init(&b->lock, NULL);
		b->worker = worker;
	}
	return b;
}

void mmud_block_detach(struct mmud_block *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	b->worker = NULL;
	pthread_mutex_unlock(&b->lock);
}

int mmud_block_register(struct mmud_block *b, struct qmp_server *qmp,
			struct vm *vm, struct mmud *d)
{
	b->vm = vm;
	b->d = d;
	if (!qmp)
		return 0;
	if (qmp_server_register(qmp, "query-block", NULL, cmd_query_block, b) <
		    0 ||
	    qmp_server_register(qmp, "query-blockstats", NULL,
				cmd_query_blockstats, b) < 0 ||
	    qmp_server_register(qmp, "x-query-virtio", NULL, cmd_query_virtio,
				b) < 0 ||
	    qmp_server_register(qmp, "x-query-virtio-queue-status",
				queue_status_args,
				cmd_query_virtio_queue_status, b) < 0)
		return -ENOMEM;
	b->qmp = qmp;
	return 0;
}

void mmud_block_free(struct mmud_block *b)
{
	if (!b)
		return;
	pthread_mutex_destroy(&b->lock);
	free(b);
}
