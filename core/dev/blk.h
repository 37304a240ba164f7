/*
 * core/dev: block storage under the virtio-blk device. A drive is an
 * image file opened as `--drive` describes it (QEMU's spelling); its
 * I/O goes through a backend: one io_uring per device queue with a
 * completion thread each, or, where io_uring is unavailable (disabled by
 * sysctl or seccomp, an old kernel), a pool of threads doing
 * preadv/pwritev/fdatasync/fallocate with the same semantics. Nothing
 * here knows virtio: core/dev/virtio_blk.c turns requests into struct
 * blk_io and back.
 */
#ifndef MMUD_BLK_H
#define MMUD_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLK_MAX_DRIVES 16 /* the virtio-mmio slots of platform v2 */
#define BLK_PATH_MAX 4096
#define BLK_ID_MAX 32
#define BLK_SERIAL_LEN 20 /* virtio 1.2, 5.2.6: GET_ID's 20 bytes */

/* What to do on an I/O error (QEMU's werror/rerror). */
enum blk_error_action {
	BLK_ERROR_REPORT, /* fail the request with VIRTIO_BLK_S_IOERR */
	BLK_ERROR_STOP, /* pause the VM and retry the request at cont */
};

/* One --drive. */
struct blk_drive_config {
	char file[BLK_PATH_MAX];
	char id[BLK_ID_MAX]; /* the QMP device name; default "virtioN" */
	char serial[BLK_SERIAL_LEN + 1]; /* GET_ID; default "mmud-N" */
	bool readonly;
	bool direct; /* cache=none: O_DIRECT */
	bool discard; /* discard=unmap */
	enum blk_error_action werror, rerror;
};

/*
 * Parses one --drive value: file=PATH[,format=raw][,readonly=on|off]
 * [,cache=none|writeback][,discard=unmap|ignore][,werror=report|stop]
 * [,rerror=report|stop][,id=NAME][,serial=STR]. index names the
 * defaults of id and serial. -EINVAL with the offending key or value in
 * err; out is then unspecified.
 */
int blk_drive_parse(const char *spec, unsigned int index,
		    struct blk_drive_config *out, char *err, size_t errlen);

/* An open image. */
struct blk_file {
	int fd;
	uint64_t size; /* bytes, a multiple of 512 (the rest is unused) */
	bool can_punch; /* fallocate(PUNCH_HOLE) works */
	bool can_zero; /* fallocate(ZERO_RANGE) works */
};

/* Opens cfg's file as it says (read-only, O_DIRECT) and probes it.
 * -errno with the file and the reason in err. */
int blk_file_open(const struct blk_drive_config *cfg, struct blk_file *f,
		  char *err, size_t errlen);
void blk_file_close(struct blk_file *f);

enum blk_op {
	BLK_OP_READ,
	BLK_OP_WRITE,
	BLK_OP_FLUSH,
	BLK_OP_DISCARD, /* deallocate: reads return zeros after */
	BLK_OP_WRITE_ZEROES, /* zero, keeping the allocation */
};

/*
 * One I/O. done(io, res) is called once, on a backend thread, with the
 * bytes transferred (all of len: a short transfer is continued, and
 * end of file is -EIO) or -errno.
 */
struct blk_io {
	enum blk_op op;
	int fd;
	struct iovec *iov; /* READ and WRITE; advanced as it progresses */
	int iovcnt;
	uint64_t off, len;
	void (*done)(struct blk_io *io, int64_t res);
	/* The backend's. */
	uint64_t progress;
	struct blk_io *next;
};

struct blk_backend;

/*
 * A backend for nr_queues queues. Unless force_threads, each queue gets
 * an io_uring of depth entries and a completion thread; if one cannot
 * be set up, every queue uses a pool of threads instead and why says
 * what io_uring answered. thread_enter/thread_exit (may be NULL) run
 * on each backend thread before it calls done and when it ends. NULL
 * means -ENOMEM or no thread could be started.
 */
struct blk_backend *blk_backend_create(unsigned int nr_queues,
				       unsigned int depth, bool force_threads,
				       void (*thread_enter)(void *ctx),
				       void (*thread_exit)(void *ctx),
				       void *thread_ctx, char *why,
				       size_t whylen);
/* Starts io on queue's ring (any thread; one submitter per queue at a
 * time). 0, or -errno when it could not be queued (done is not
 * called). */
int blk_backend_submit(struct blk_backend *b, unsigned int queue,
		       struct blk_io *io);
/* Whether the queues use io_uring. */
bool blk_backend_is_uring(const struct blk_backend *b);
/* Waits for every submitted io's done, then stops the threads. */
void blk_backend_destroy(struct blk_backend *b);

/* The environment variable that makes every backend use the thread
 * pool: a test hook, so the fallback's tests run where io_uring works. */
#define BLK_ENV_NO_IO_URING "MMUD_TEST_NO_IO_URING"

#endif
