/*
 * The block backends: one io_uring per device queue (liburing), each
 * with a thread that waits for completions and calls the io's done; or,
 * when io_uring cannot be set up (or the test hook BLK_ENV_NO_IO_URING
 * is set), a pool of threads doing the same operations with preadv,
 * pwritev, fdatasync and fallocate. Submission happens on the caller's
 * thread (a vCPU's, at the queue notification): an io_uring submit is
 * one system call and needs no hand-off to another thread. Both
 * continue short transfers until the whole length is done, and report
 * end of file as -EIO, so the device sees the same results from either.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef MMUD_HAVE_URING
#include <liburing.h>
#endif
#ifdef MMUD_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#include "blk.h"

#define POOL_THREADS 4

struct uring_queue {
#ifdef MMUD_HAVE_URING
	struct io_uring ring;
#endif
	pthread_mutex_t sq_lock; /* the submission queue */
	pthread_t thread;
	bool started;
	struct blk_backend *b;
};

/*
 * Legend: (c) constant after creation; (p) pool_lock.
 */
struct blk_backend {
	bool uring; /* (c) */
	unsigned int nr_queues; /* (c) */
	void (*thread_enter)(void *ctx); /* (c) */
	void (*thread_exit)(void *ctx); /* (c) */
	void *thread_ctx; /* (c) */
	struct uring_queue *queues; /* (c) io_uring only */

	/* The thread pool. */
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	struct blk_io *head, *tail; /* (p) waiting ios, FIFO */
	bool stopping; /* (p) */
	pthread_t pool[POOL_THREADS];
	unsigned int nr_pool; /* (c) */
};

/* Moves io's iovec past n transferred bytes. */
static void advance(struct blk_io *io, uint64_t n)
{
	io->progress += n;
	while (n && io->iovcnt) {
		if (n < io->iov->iov_len) {
			io->iov->iov_base = (char *)io->iov->iov_base + n;
			io->iov->iov_len -= n;
			return;
		}
		n -= io->iov->iov_len;
		io->iov++;
		io->iovcnt--;
	}
}

static bool is_transfer(const struct blk_io *io)
{
	return io->op == BLK_OP_READ || io->op == BLK_OP_WRITE;
}

static int falloc_mode(const struct blk_io *io)
{
	return (io->op == BLK_OP_DISCARD ? FALLOC_FL_PUNCH_HOLE :
					   FALLOC_FL_ZERO_RANGE) |
	       FALLOC_FL_KEEP_SIZE;
}

/* ---- the thread pool ---------------------------------------------------- */

static int64_t run_sync(struct blk_io *io)
{
	ssize_t n;

	switch (io->op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		while (io->progress < io->len) {
			off_t at = (off_t)(io->off + io->progress);

			n = io->op == BLK_OP_READ ?
				    preadv(io->fd, io->iov, io->iovcnt, at) :
				    pwritev(io->fd, io->iov, io->iovcnt, at);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			if (n == 0)
				return -EIO; /* end of file */
			advance(io, (uint64_t)n);
		}
		return (int64_t)io->len;
	case BLK_OP_FLUSH:
		return fdatasync(io->fd) < 0 ? -errno : 0;
	case BLK_OP_DISCARD:
	case BLK_OP_WRITE_ZEROES:
		return fallocate(io->fd, falloc_mode(io), (off_t)io->off,
				 (off_t)io->len) < 0 ?
			       -errno :
			       0;
	}
	return -EINVAL;
}

static void *pool_thread(void *arg)
{
	struct blk_backend *b = arg;

	if (b->thread_enter)
		b->thread_enter(b->thread_ctx);
	pthread_mutex_lock(&b->pool_lock);
	for (;;) {
		struct blk_io *io = b->head;

		if (!io) {
			if (b->stopping)
				break;
			pthread_cond_wait(&b->pool_cond, &b->pool_lock);
			continue;
		}
		b->head = io->next;
		if (!b->head)
			b->tail = NULL;
		pthread_mutex_unlock(&b->pool_lock);
		io->done(io, run_sync(io));
		pthread_mutex_lock(&b->pool_lock);
	}
	pthread_mutex_unlock(&b->pool_lock);
	if (b->thread_exit)
		b->thread_exit(b->thread_ctx);
	return NULL;
}

static int pool_submit(struct blk_backend *b, struct blk_io *io)
{
	io->next = NULL;
	pthread_mutex_lock(&b->pool_lock);
	if (b->tail)
		b->tail->next = io;
	else
		b->head = io;
	b->tail = io;
	pthread_cond_signal(&b->pool_cond);
	pthread_mutex_unlock(&b->pool_lock);
	return 0;
}

/* ---- io_uring ------------------------------------------------------------ */

#ifdef MMUD_HAVE_URING
/*
 * An io goes from the submitting thread to the completion thread through
 * the kernel's rings, which ThreadSanitizer cannot see: in TSan builds
 * the hand-off is told to it as a release at submission and an acquire
 * at the completion (the same edge the kernel's CQE gives).
 */
static void tsan_handoff_release(struct blk_io *io)
{
#ifdef MMUD_TSAN
	__tsan_release(io);
#else
	(void)io;
#endif
}

static void tsan_handoff_acquire(struct blk_io *io)
{
#ifdef MMUD_TSAN
	__tsan_acquire(io);
#else
	(void)io;
#endif
}

/* Queues io's next step on q's ring; the caller holds sq_lock. */
static int uring_prep_locked(struct uring_queue *q, struct blk_io *io)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

	if (!sqe)
		return -EBUSY;
	switch (io->op) {
	case BLK_OP_READ:
		io_uring_prep_readv(sqe, io->fd, io->iov, (unsigned)io->iovcnt,
				    io->off + io->progress);
		break;
	case BLK_OP_WRITE:
		io_uring_prep_writev(sqe, io->fd, io->iov, (unsigned)io->iovcnt,
				     io->off + io->progress);
		break;
	case BLK_OP_FLUSH:
		io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC);
		break;
	case BLK_OP_DISCARD:
	case BLK_OP_WRITE_ZEROES:
		io_uring_prep_fallocate(sqe, io->fd, falloc_mode(io), io->off,
					io->len);
		break;
	}
	io_uring_sqe_set_data(sqe, io);
	tsan_handoff_release(io);
	return 0;
}

static int uring_submit(struct uring_queue *q, struct blk_io *io)
{
	int r;

	pthread_mutex_lock(&q->sq_lock);
	r = uring_prep_locked(q, io);
	if (r == 0) {
		r = io_uring_submit(&q->ring);
		r = r < 0 ? r : 0;
	}
	pthread_mutex_unlock(&q->sq_lock);
	return r;
}

static void *uring_thread(void *arg)
{
	struct uring_queue *q = arg;
	struct blk_backend *b = q->b;

	if (b->thread_enter)
		b->thread_enter(b->thread_ctx);
	for (;;) {
		struct io_uring_cqe *cqe;
		struct blk_io *io;
		int res, r;

		r = io_uring_wait_cqe(&q->ring, &cqe);
		if (r == -EINTR)
			continue;
		if (r < 0)
			break; /* the ring is unusable: nothing more comes */
		io = io_uring_cqe_get_data(cqe);
		res = cqe->res;
		io_uring_cqe_seen(&q->ring, cqe);
		if (!io)
			break; /* the NOP of blk_backend_destroy() */
		tsan_handoff_acquire(io);
		if (is_transfer(io) && res > 0 &&
		    io->progress + (uint64_t)res < io->len) {
			/* A short transfer: go on from where it stopped. */
			advance(io, (uint64_t)res);
			if (uring_submit(q, io) == 0)
				continue;
			res = -EIO;
		} else if (is_transfer(io) && res == 0 &&
			   io->progress < io->len) {
			res = -EIO; /* end of file */
		}
		io->done(io, res < 0	     ? res :
			     is_transfer(io) ? (int64_t)io->len :
					       0);
	}
	if (b->thread_exit)
		b->thread_exit(b->thread_ctx);
	return NULL;
}

static int uring_setup(struct blk_backend *b, unsigned int depth, char *why,
		       size_t whylen)
{
	b->queues = calloc(b->nr_queues, sizeof(*b->queues));
	if (!b->queues)
		return -ENOMEM;
	for (unsigned int i = 0; i < b->nr_queues; i++) {
		struct uring_queue *q = &b->queues[i];
		int r = io_uring_queue_init(depth, &q->ring, 0);

		if (r < 0) {
			snprintf(why, whylen, "io_uring_queue_init: %s",
				 strerror(-r));
			for (unsigned int j = 0; j < i; j++)
				io_uring_queue_exit(&b->queues[j].ring);
			free(b->queues);
			b->queues = NULL;
			return r;
		}
		pthread_mutex_init(&q->sq_lock, NULL);
		q->b = b;
	}
	for (unsigned int i = 0; i < b->nr_queues; i++) {
		struct uring_queue *q = &b->queues[i];

		if (pthread_create(&q->thread, NULL, uring_thread, q) != 0)
			return -EAGAIN;
		q->started = true;
	}
	return 0;
}

static void uring_teardown(struct blk_backend *b)
{
	for (unsigned int i = 0; b->queues && i < b->nr_queues; i++) {
		struct uring_queue *q = &b->queues[i];

		if (q->started) {
			struct io_uring_sqe *sqe;

			/* A NOP with no io ends the thread once every
			 * earlier completion is handled. */
			pthread_mutex_lock(&q->sq_lock);
			while (!(sqe = io_uring_get_sqe(&q->ring)))
				io_uring_submit(&q->ring);
			io_uring_prep_nop(sqe);
			io_uring_sqe_set_data(sqe, NULL);
			io_uring_submit(&q->ring);
			pthread_mutex_unlock(&q->sq_lock);
			pthread_join(q->thread, NULL);
		}
		io_uring_queue_exit(&q->ring);
		pthread_mutex_destroy(&q->sq_lock);
	}
	free(b->queues);
}
#endif

/* ---- the interface -------------------------------------------------------- */

struct blk_backend *blk_backend_create(unsigned int nr_queues,
				       unsigned int depth, bool force_threads,
				       void (*thread_enter)(void *ctx),
				       void (*thread_exit)(void *ctx),
				       void *thread_ctx, char *why,
				       size_t whylen)
{
	struct blk_backend *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->nr_queues = nr_queues;
	b->thread_enter = thread_enter;
	b->thread_exit = thread_exit;
	b->thread_ctx = thread_ctx;
	pthread_mutex_init(&b->pool_lock, NULL);
	pthread_cond_init(&b->pool_cond, NULL);
	if (whylen)
		why[0] = 0;
	if (force_threads || getenv(BLK_ENV_NO_IO_URING)) {
		snprintf(why, whylen, "%s is set",
			 force_threads ? "the thread-pool option" :
					 BLK_ENV_NO_IO_URING);
	} else {
#ifdef MMUD_HAVE_URING
		int r = uring_setup(b, depth, why, whylen);

		if (r == 0) {
			b->uring = true;
			return b;
		}
		if (b->queues) {
			/* Rings made, a thread not: give up altogether. */
			uring_teardown(b);
			b->queues = NULL;
			goto fail;
		}
#else
		(void)depth;
		snprintf(why, whylen, "mmud was built without liburing");
#endif
	}
	for (unsigned int i = 0; i < POOL_THREADS; i++) {
		if (pthread_create(&b->pool[i], NULL, pool_thread, b) != 0)
			break;
		b->nr_pool++;
	}
	if (b->nr_pool)
		return b;
#ifdef MMUD_HAVE_URING
fail:
#endif
	pthread_mutex_destroy(&b->pool_lock);
	pthread_cond_destroy(&b->pool_cond);
	free(b);
	return NULL;
}

int blk_backend_submit(struct blk_backend *b, unsigned int queue,
		       struct blk_io *io)
{
	io->progress = 0;
	io->next = NULL;
#ifdef MMUD_HAVE_URING
	if (b->uring)
		return uring_submit(&b->queues[queue % b->nr_queues], io);
#else
	(void)queue;
#endif
	return pool_submit(b, io);
}

bool blk_backend_is_uring(const struct blk_backend *b)
{
	return b->uring;
}

void blk_backend_destroy(struct blk_backend *b)
{
	if (!b)
		return;
#ifdef MMUD_HAVE_URING
	if (b->uring)
		uring_teardown(b);
#endif
	pthread_mutex_lock(&b->pool_lock);
	b->stopping = true;
	pthread_cond_broadcast(&b->pool_cond);
	pthread_mutex_unlock(&b->pool_lock);
	for (unsigned int i = 0; i < b->nr_pool; i++)
		pthread_join(b->pool[i], NULL);
	pthread_mutex_destroy(&b->pool_lock);
	pthread_cond_destroy(&b->pool_cond);
	free(b);
}
