/*
 * mmud-blkload: the block load generator that runs inside the Linux guest
 * of bench/virtio_blk.py --qemu (docs/BENCHMARKS.md, "Beside QEMU 7.2's
 * TCG (`--qemu`)"). It keeps QD requests of BS bytes in flight on a block
 * device opened with O_DIRECT through Linux AIO (io_setup, io_submit,
 * io_getevents as raw syscalls), at random BS-aligned offsets or
 * sequentially, for a fixed time per phase, and prints one line per phase
 * with its own count and its own CLOCK_MONOTONIC time. It is linked
 * statically so that the initramfs needs no libraries (fio would need its
 * whole library closure and loader). What runs the guest, builds the
 * initramfs and reads the lines is left to scripts/linux-guest and the
 * bench script.
 *
 *     mmud-blkload DEV SECONDS [KIND:BS:QD ...]
 *
 * KIND is randread, seqread or seqwrite; without phases it runs the rows
 * of docs/BENCHMARKS.md. Per phase it prints
 *
 *     blkload: begin NAME
 *     blkload: result NAME ops N bytes B ns T
 *
 * NAME being KIND-BS-qdQD, and exits 0; on a bad argument or a failed or
 * short request it prints "blkload: error ..." naming it and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_QD 256
#define MAX_BS (16u << 20)

enum kind { RANDREAD, SEQREAD, SEQWRITE };

struct phase {
	enum kind kind;
	unsigned int bs;
	unsigned int qd;
};

static const char *const kind_names[] = { "randread", "seqread", "seqwrite" };

static const struct phase default_phases[] = {
	{ RANDREAD, 4096, 1 },	  { RANDREAD, 4096, 32 },
	{ SEQREAD, 1 << 20, 1 },  { SEQREAD, 1 << 20, 32 },
	{ SEQWRITE, 1 << 20, 1 }, { SEQWRITE, 1 << 20, 32 },
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

/* xorshift64*: offsets only need to be spread, not unpredictable. */
static uint64_t next_random(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static int parse_uint(const char *s, unsigned long max, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v == 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

/* KIND:BS:QD; BS a multiple of 4096 up to MAX_BS, QD 1..MAX_QD. */
static int parse_phase(const char *arg, struct phase *p)
{
	char buf[64], *bs, *qd;
	size_t k;

	if (strlen(arg) >= sizeof(buf))
		return -1;
	strcpy(buf, arg);
	bs = strchr(buf, ':');
	if (!bs)
		return -1;
	*bs++ = '\0';
	qd = strchr(bs, ':');
	if (!qd)
		return -1;
	*qd++ = '\0';
	for (k = 0; k < 3; k++)
		if (!strcmp(buf, kind_names[k]))
			break;
	if (k == 3)
		return -1;
	p->kind = k;
	if (parse_uint(bs, MAX_BS, &p->bs) || p->bs % 4096 ||
	    parse_uint(qd, MAX_QD, &p->qd))
		return -1;
	return 0;
}

struct run {
	int fd;
	uint64_t size;
	uint64_t next_off;
	uint64_t rng;
	const struct phase *p;
	char *bufs;
	struct iocb iocbs[MAX_QD];
	struct iocb *ptrs[MAX_QD];
};

static void prepare(struct run *r, unsigned int slot)
{
	struct iocb *cb = &r->iocbs[slot];
	uint64_t off, blocks = r->size / r->p->bs;

	if (r->p->kind == RANDREAD) {
		off = next_random(&r->rng) % blocks * r->p->bs;
	} else {
		if (r->next_off + r->p->bs > r->size)
			r->next_off = 0;
		off = r->next_off;
		r->next_off += r->p->bs;
	}
	memset(cb, 0, sizeof(*cb));
	cb->aio_data = slot;
	cb->aio_lio_opcode = r->p->kind == SEQWRITE ? IOCB_CMD_PWRITE :
						      IOCB_CMD_PREAD;
	cb->aio_fildes = r->fd;
	cb->aio_buf = (uint64_t)(uintptr_t)(r->bufs + (size_t)slot * r->p->bs);
	cb->aio_nbytes = r->p->bs;
	cb->aio_offset = off;
}

static int submit(aio_context_t ctx, struct iocb **cbs, long n)
{
	while (n > 0) {
		long done = syscall(SYS_io_submit, ctx, n, cbs);

		if (done < 0 && errno == EINTR)
			continue;
		if (done <= 0) {
			printf("blkload: error io_submit: %s\n",
			       done < 0 ? strerror(errno) : "nothing taken");
			return -1;
		}
		cbs += done;
		n -= done;
	}
	return 0;
}

static int run_phase(int fd, uint64_t size, const struct phase *p,
		     uint64_t secs)
{
	static struct run r;
	struct io_event ev[MAX_QD];
	aio_context_t ctx = 0;
	uint64_t t0, t1, ops = 0, deadline;
	unsigned int inflight, i;
	char name[48];
	int ret = -1;

	snprintf(name, sizeof(name), "%s-%u-qd%u", kind_names[p->kind], p->bs,
		 p->qd);
	if (size < p->bs) {
		printf("blkload: error %s: device of %llu bytes is smaller than "
		       "one request\n",
		       name, (unsigned long long)size);
		return -1;
	}
	memset(&r, 0, sizeof(r));
	r.fd = fd;
	r.size = size;
	r.rng = 0x9e3779b97f4a7c15ull;
	r.p = p;
	r.bufs = aligned_alloc(4096, (size_t)p->bs * p->qd);
	if (!r.bufs) {
		printf("blkload: error %s: no memory for buffers\n", name);
		return -1;
	}
	memset(r.bufs, 0x5a, (size_t)p->bs * p->qd);
	if (syscall(SYS_io_setup, p->qd, &ctx)) {
		printf("blkload: error io_setup(%u): %s\n", p->qd,
		       strerror(errno));
		goto out_free;
	}
	printf("blkload: begin %s\n", name);
	fflush(stdout);

	t0 = now_ns();
	deadline = t0 + secs * 1000000000u;
	for (i = 0; i < p->qd; i++) {
		prepare(&r, i);
		r.ptrs[i] = &r.iocbs[i];
	}
	if (submit(ctx, r.ptrs, p->qd))
		goto out_destroy;
	inflight = p->qd;
	while (inflight) {
		long n = syscall(SYS_io_getevents, ctx, 1, MAX_QD, ev, NULL);
		unsigned int again = 0;
		bool more;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			printf("blkload: error io_getevents: %s\n",
			       strerror(errno));
			goto out_destroy;
		}
		more = now_ns() < deadline;
		for (i = 0; i < n; i++) {
			unsigned int slot = ev[i].data;

			if (ev[i].res != (int64_t)p->bs) {
				printf("blkload: error %s: request at %llu "
				       "returned %lld\n",
				       name,
				       (unsigned long long)r.iocbs[slot]
					       .aio_offset,
				       (long long)ev[i].res);
				goto out_destroy;
			}
			ops++;
			if (more) {
				prepare(&r, slot);
				r.ptrs[again++] = &r.iocbs[slot];
			}
		}
		inflight -= n;
		if (again) {
			if (submit(ctx, r.ptrs, again))
				goto out_destroy;
			inflight += again;
		}
	}
	t1 = now_ns();
	printf("blkload: result %s ops %llu bytes %llu ns %llu\n", name,
	       (unsigned long long)ops, (unsigned long long)ops * p->bs,
	       (unsigned long long)(t1 - t0));
	fflush(stdout);
	ret = 0;
out_destroy:
	syscall(SYS_io_destroy, ctx);
out_free:
	free(r.bufs);
	return ret;
}

int main(int argc, char **argv)
{
	static struct phase phases[64];
	const struct phase *list = default_phases;
	size_t n = sizeof(default_phases) / sizeof(default_phases[0]), i;
	unsigned int secs;
	struct stat st;
	uint64_t size;
	int fd;

	if (argc < 3 || parse_uint(argv[2], 3600, &secs)) {
		printf("blkload: error usage: mmud-blkload DEV SECONDS "
		       "[randread|seqread|seqwrite:BS:QD ...] (SECONDS 1-3600)\n");
		return 1;
	}
	if (argc > 3) {
		if ((size_t)argc - 3 > sizeof(phases) / sizeof(phases[0])) {
			printf("blkload: error more than %zu phases\n",
			       sizeof(phases) / sizeof(phases[0]));
			return 1;
		}
		for (i = 3; i < (size_t)argc; i++)
			if (parse_phase(argv[i], &phases[i - 3])) {
				printf("blkload: error bad phase '%s' (want "
				       "randread|seqread|seqwrite:BS:QD, BS a "
				       "multiple of 4096 up to %u, QD 1-%u)\n",
				       argv[i], MAX_BS, MAX_QD);
				return 1;
			}
		list = phases;
		n = argc - 3;
	}
	fd = open(argv[1], O_RDWR | O_DIRECT);
	if (fd < 0) {
		printf("blkload: error open %s: %s\n", argv[1],
		       strerror(errno));
		return 1;
	}
	/* A regular file too, so that it can be tried on the host. */
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		size = st.st_size;
	} else if (ioctl(fd, BLKGETSIZE64, &size)) {
		printf("blkload: error BLKGETSIZE64 on %s: %s\n", argv[1],
		       strerror(errno));
		return 1;
	}
	for (i = 0; i < n; i++)
		if (run_phase(fd, size, &list[i], secs))
			return 1;
	printf("blkload: done\n");
	return 0;
}
