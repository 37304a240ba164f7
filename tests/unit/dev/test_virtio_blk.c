/*
 * Tests of the virtio block device (core/dev/virtio_blk.c) as a driver
 * drives it through the virtio-mmio registers, over a fake guest RAM of
 * 4 MiB and a real image file in $TMPDIR, on the io_uring backend and
 * (argument "threads") on the thread pool: reads and writes checked
 * against the file, flush, GET_ID, discard, every request the device
 * must refuse (data in a buffer of the wrong direction, out of range,
 * unknown type, a write to a read-only drive, a chain without a status
 * byte), I/O errors reported and, with rerror=stop, retried, a reset
 * while a request is in flight, and the dirty log of the bytes the
 * device wrote.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "virtio_blk.h"

#define RAM_SIZE (4u << 20)
#define QSIZE 16
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define HDR 0x8000
#define STATUS 0x9000
#define DATA 0x100000
#define IMAGE_SIZE (1u << 20)

static bool force_threads;
static uint8_t *ram;
static uint8_t dirty[RAM_SIZE / 4096];
static char path[256];
static struct virtio_blk *blk;
static struct virtio_mmio *t;
static uint16_t avail_idx, used_seen;
static unsigned int errors_reported;
static struct virtio_blk_error last_error;

static void *fake_map(void *ctx, gpa_t gpa, uint64_t len)
{
	(void)ctx;
	if (gpa >= RAM_SIZE || len > RAM_SIZE - gpa)
		return NULL;
	return ram + gpa;
}

static void fake_dirty(void *ctx, gpa_t gpa, uint64_t len)
{
	(void)ctx;
	for (gpa_t p = gpa >> 12; p <= (gpa + len - 1) >> 12; p++)
		__atomic_store_n(&dirty[p], 1, __ATOMIC_RELAXED);
}

static const struct virtio_mem_ops fake_ops = {
	.map = fake_map,
	.mark_dirty = fake_dirty,
};

static void on_error(void *ctx, const struct virtio_blk_error *e)
{
	(void)ctx;
	last_error = *e;
	__atomic_fetch_add(&errors_reported, 1, __ATOMIC_SEQ_CST);
}

static void wr(uint32_t off, uint32_t v)
{
	virtio_mmio_write(t, off, 4, v);
}

static uint32_t rd(uint32_t off)
{
	return (uint32_t)virtio_mmio_read(t, off, 4);
}

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 9));
}

static void make_image(void)
{
	uint8_t *buf = malloc(IMAGE_SIZE);
	const char *dir = getenv("TMPDIR");
	int fd;

	snprintf(path, sizeof(path), "%s/mmud-blk-XXXXXX", dir ? dir : "/tmp");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	for (uint64_t i = 0; i < IMAGE_SIZE; i++)
		buf[i] = pattern(i);
	assert_int_equal(write(fd, buf, IMAGE_SIZE), IMAGE_SIZE);
	close(fd);
	free(buf);
}

/* Negotiates everything offered and makes queue 0 ready. */
static void start_device(void)
{
	uint32_t lo, hi;

	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	lo = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	hi = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, lo);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, hi);
	wr(VIRTIO_MMIO_STATUS, 0x0b);
	assert_int_equal(rd(VIRTIO_MMIO_STATUS), 0x0b);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, QSIZE);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, DESC);
	wr(VIRTIO_MMIO_QUEUE_DRIVER_LOW, AVAIL);
	wr(VIRTIO_MMIO_QUEUE_DEVICE_LOW, USED);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	wr(VIRTIO_MMIO_STATUS, 0x0f);
	avail_idx = used_seen = 0;
}

static void open_device(const char *extra)
{
	struct blk_drive_config cfg;
	struct virtio_blk_host host = {
		.mem = { .ops = &fake_ops },
		.on_error = on_error,
		.force_threads = force_threads,
	};
	char spec[512], err[256];

	snprintf(spec, sizeof(spec), "file=%s%s", path, extra);
	assert_int_equal(blk_drive_parse(spec, 0, &cfg, err, sizeof(err)), 0);
	blk = virtio_blk_create(&cfg, 2, &host, err, sizeof(err));
	if (!blk)
		fail_msg("virtio_blk_create: %s", err);
	t = virtio_blk_transport(blk);
	assert_int_equal(virtio_blk_uses_uring(blk, err, sizeof(err)),
			 !force_threads);
	start_device();
}

static int setup(void **state)
{
	(void)state;
	ram = calloc(1, RAM_SIZE);
	memset(dirty, 0, sizeof(dirty));
	errors_reported = 0;
	make_image();
	open_device("");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	virtio_blk_destroy(blk);
	unlink(path);
	free(ram);
	return 0;
}

static void put_desc(unsigned int i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *d = ram + DESC + 16 * i;

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void put_header(uint32_t type, uint64_t sector)
{
	memset(ram + HDR, 0, 16);
	memcpy(ram + HDR, &type, 4);
	memcpy(ram + HDR + 8, &sector, 8);
}

static void offer(uint16_t head)
{
	memcpy(ram + AVAIL + 4 + 2 * (avail_idx % QSIZE), &head, 2);
	avail_idx++;
	__atomic_store_n((uint16_t *)(void *)(ram + AVAIL + 2), avail_idx,
			 __ATOMIC_RELEASE);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

/* Waits for the next used element; returns its len. */
static uint32_t wait_used(void)
{
	struct timespec ts = { 0, 100000 };
	uint32_t len;

	for (int i = 0; i < 50000; i++) {
		uint16_t idx = __atomic_load_n(
			(uint16_t *)(void *)(ram + USED + 2), __ATOMIC_ACQUIRE);

		if (idx != used_seen) {
			memcpy(&len,
			       ram + USED + 4 + 8 * (used_seen % QSIZE) + 4, 4);
			used_seen++;
			return len;
		}
		nanosleep(&ts, NULL);
	}
	fail_msg("no used element after 5 s (used index %u)", used_seen);
	return 0;
}

/* A request of three descriptors: header, data (writable if
 * data_write), status. Returns the status byte. */
static uint8_t request(uint32_t type, uint64_t sector, gpa_t data, uint32_t len,
		       bool data_write, uint32_t *used_len)
{
	uint32_t l;

	put_header(type, sector);
	ram[STATUS] = 0xff;
	put_desc(0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(1, data, len,
		 VIRTQ_DESC_F_NEXT | (data_write ? VIRTQ_DESC_F_WRITE : 0), 2);
	put_desc(2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	offer(0);
	l = wait_used();
	if (used_len)
		*used_len = l;
	return ram[STATUS];
}

static void file_bytes(uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void test_blk_read_matches_file(void **state)
{
	uint32_t used_len;

	(void)state;
	assert_int_equal(request(VIRTIO_BLK_T_IN, 3, DATA, 8192, true,
				 &used_len),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used_len, 8193);
	for (unsigned int i = 0; i < 8192; i++)
		if (ram[DATA + i] != pattern(3 * 512 + i))
			fail_msg("byte %u of sector 3 read as %#x, file has "
				 "%#x",
				 i, ram[DATA + i], pattern(3 * 512 + i));
	/* Written by the device: in the dirty log, the used ring too. */
	assert_true(dirty[DATA >> 12] && dirty[(DATA >> 12) + 1]);
	assert_true(dirty[STATUS >> 12] && dirty[USED >> 12]);
	assert_false(dirty[(DATA >> 12) + 2]);
}

static void test_blk_write_reaches_file(void **state)
{
	uint8_t back[1024];

	(void)state;
	for (unsigned int i = 0; i < 1024; i++)
		ram[DATA + i] = (uint8_t)(0xa5 ^ i);
	assert_int_equal(request(VIRTIO_BLK_T_OUT, 100, DATA, 1024, false,
				 NULL),
			 VIRTIO_BLK_S_OK);
	file_bytes(100 * 512, back, sizeof(back));
	assert_memory_equal(back, ram + DATA, 1024);
	/* The device only read the data: not dirty. */
	assert_false(dirty[DATA >> 12]);
	assert_int_equal(request(VIRTIO_BLK_T_FLUSH, 0, DATA, 0, true, NULL),
			 VIRTIO_BLK_S_OK);
}

static void test_blk_get_id_returns_serial(void **state)
{
	uint32_t used_len;

	(void)state;
	assert_int_equal(request(VIRTIO_BLK_T_GET_ID, 0, DATA, 20, true,
				 &used_len),
			 VIRTIO_BLK_S_OK);
	assert_string_equal((char *)ram + DATA, "mmud-0");
	assert_int_equal(used_len, 21);
}

static void test_blk_read_into_readonly_buffer_refused(void **state)
{
	(void)state;
	memset(ram + DATA, 0x11, 512);
	assert_int_equal(request(VIRTIO_BLK_T_IN, 0, DATA, 512, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	for (unsigned int i = 0; i < 512; i++)
		assert_int_equal(ram[DATA + i], 0x11);
}

static void test_blk_out_of_range_refused(void **state)
{
	(void)state;
	assert_int_equal(request(VIRTIO_BLK_T_IN, IMAGE_SIZE / 512 - 1, DATA,
				 1024, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(VIRTIO_BLK_T_OUT, ~0ULL, DATA, 512, false,
				 NULL),
			 VIRTIO_BLK_S_IOERR);
	/* Not a whole number of sectors. */
	assert_int_equal(request(VIRTIO_BLK_T_IN, 0, DATA, 100, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	/* The last sector itself is fine. */
	assert_int_equal(request(VIRTIO_BLK_T_IN, IMAGE_SIZE / 512 - 1, DATA,
				 512, true, NULL),
			 VIRTIO_BLK_S_OK);
}

static void test_blk_unknown_type_unsupported(void **state)
{
	(void)state;
	assert_int_equal(request(77, 0, DATA, 512, true, NULL),
			 VIRTIO_BLK_S_UNSUPP);
}

static void test_blk_chain_without_status_needs_reset(void **state)
{
	(void)state;
	put_header(VIRTIO_BLK_T_IN, 0);
	put_desc(0, HDR, 16, 0, 0);
	offer(0);
	assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	/* A reset brings it back. */
	wr(VIRTIO_MMIO_STATUS, 0);
	start_device();
	assert_int_equal(request(VIRTIO_BLK_T_IN, 0, DATA, 512, true, NULL),
			 VIRTIO_BLK_S_OK);
}

static void test_blk_discard_reads_back_zeros(void **state)
{
	uint8_t zero[4096] = { 0 }, back[4096];
	uint8_t seg[16];
	uint64_t sector = 16;
	uint32_t n = 8, flags = 0;

	(void)state;
	virtio_blk_destroy(blk);
	open_device(",discard=unmap");
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	if (!(rd(VIRTIO_MMIO_DEVICE_FEATURES) & (1u << VIRTIO_BLK_F_DISCARD)))
		skip(); /* the file system cannot punch holes */
	memcpy(seg, &sector, 8);
	memcpy(seg + 8, &n, 4);
	memcpy(seg + 12, &flags, 4);
	memcpy(ram + DATA, seg, 16);
	assert_int_equal(request(VIRTIO_BLK_T_DISCARD, 0, DATA, 16, false,
				 NULL),
			 VIRTIO_BLK_S_OK);
	file_bytes(16 * 512, back, sizeof(back));
	assert_memory_equal(back, zero, sizeof(zero));
	/* A flag discard does not have: unsupported. */
	flags = 1;
	memcpy(ram + DATA + 12, &flags, 4);
	assert_int_equal(request(VIRTIO_BLK_T_DISCARD, 0, DATA, 16, false,
				 NULL),
			 VIRTIO_BLK_S_UNSUPP);
}

static void test_blk_readonly_drive_refuses_writes(void **state)
{
	uint8_t back[512];

	(void)state;
	virtio_blk_destroy(blk);
	open_device(",readonly=on");
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_true(rd(VIRTIO_MMIO_DEVICE_FEATURES) & (1u << VIRTIO_BLK_F_RO));
	memset(ram + DATA, 0x5a, 512);
	assert_int_equal(request(VIRTIO_BLK_T_OUT, 0, DATA, 512, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	file_bytes(0, back, sizeof(back));
	assert_int_equal(back[1], pattern(1));
	/* Refused by the device, never tried on the image: no host I/O
	 * error to report (which werror=stop would stop the VM for). */
	assert_int_equal(errors_reported, 0);
}

/* A write that runs one sector past the drive's end is refused before
 * it reaches the image: the file keeps its size, no host error. */
static void test_blk_write_past_the_end_refused(void **state)
{
	struct stat st;

	(void)state;
	memset(ram + DATA, 0x5a, 1024);
	assert_int_equal(request(VIRTIO_BLK_T_OUT, IMAGE_SIZE / 512 - 1, DATA,
				 1024, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(stat(path, &st), 0);
	if (st.st_size != IMAGE_SIZE)
		fail_msg("the image grew to %lld bytes", (long long)st.st_size);
	assert_int_equal(errors_reported, 0);
	assert_int_equal(request(VIRTIO_BLK_T_OUT, IMAGE_SIZE / 512 - 1, DATA,
				 512, false, NULL),
			 VIRTIO_BLK_S_OK);
}

static void test_blk_io_error_reported(void **state)
{
	(void)state;
	/* The file shrinks behind the device: a read past its new end
	 * fails. */
	assert_int_equal(truncate(path, 4096), 0);
	assert_int_equal(request(VIRTIO_BLK_T_IN, 64, DATA, 512, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(errors_reported, 1);
	assert_false(last_error.write);
	assert_false(last_error.stopped);
}

static void test_blk_rerror_stop_retries(void **state)
{
	struct virtio_blk_info info;
	struct timespec ts = { 0, 1000000 };

	(void)state;
	virtio_blk_destroy(blk);
	open_device(",rerror=stop");
	assert_int_equal(truncate(path, 4096), 0);
	put_header(VIRTIO_BLK_T_IN, 64);
	ram[STATUS] = 0xff;
	put_desc(0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(1, DATA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	put_desc(2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	offer(0);
	for (int i = 0;
	     i < 5000 && !__atomic_load_n(&errors_reported, __ATOMIC_SEQ_CST);
	     i++)
		nanosleep(&ts, NULL);
	assert_int_equal(errors_reported, 1);
	assert_true(last_error.stopped);
	virtio_blk_info(blk, &info);
	assert_int_equal(info.stats.in_flight, 1);
	assert_true(info.io_error);
	/* The operator fixes the storage, then cont. */
	assert_int_equal(truncate(path, IMAGE_SIZE), 0);
	virtio_blk_retry(blk);
	wait_used();
	assert_int_equal(ram[STATUS], VIRTIO_BLK_S_OK);
	/* The retry succeeded: io-status is ok again. */
	virtio_blk_info(blk, &info);
	assert_false(info.io_error);
}

static void test_blk_reset_mid_request_drains(void **state)
{
	struct virtio_blk_info info;
	uint16_t used;

	(void)state;
	put_header(VIRTIO_BLK_T_IN, 0);
	put_desc(0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(1, DATA, IMAGE_SIZE, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
		 2);
	put_desc(2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	offer(0);
	wr(VIRTIO_MMIO_STATUS, 0);
	virtio_blk_info(blk, &info);
	assert_int_equal(info.stats.in_flight, 0);
	/* The request finished before the reset returned, and nothing
	 * was published for it: the driver is gone. */
	memcpy(&used, ram + USED + 2, 2);
	assert_true(used <= 1);
	assert_int_equal(rd(VIRTIO_MMIO_STATUS), 0);
	start_device();
	memset(ram + USED, 0, 8);
	assert_int_equal(request(VIRTIO_BLK_T_IN, 1, DATA, 512, true, NULL),
			 VIRTIO_BLK_S_OK);
}

/* What migration does: quiesce, save the transport, load it into a
 * second device on the same image and RAM, which carries on. */
static void test_blk_state_moves_to_a_new_device(void **state)
{
	struct virtio_mmio_state st, bad, now, before;
	struct virtio_blk_host host = {
		.mem = { .ops = &fake_ops },
		.force_threads = force_threads,
	};
	struct blk_drive_config cfg;
	struct virtio_blk *b2;
	char err[256], spec[512];

	(void)state;
	assert_int_equal(request(VIRTIO_BLK_T_IN, 2, DATA, 512, true, NULL),
			 VIRTIO_BLK_S_OK);
	virtio_blk_quiesce(blk);
	virtio_mmio_save(t, &st);
	assert_int_equal(st.q[0].used_idx, 1);
	assert_true(st.q[0].ready);
	assert_int_equal(blk_drive_parse(path, 0, &cfg, err, sizeof(err)),
			 -EINVAL); /* no "file=": the path alone is refused */
	snprintf(spec, sizeof(spec), "file=%s", path);
	assert_int_equal(blk_drive_parse(spec, 0, &cfg, err, sizeof(err)), 0);
	b2 = virtio_blk_create(&cfg, 2, &host, err, sizeof(err));
	assert_non_null(b2);
	virtio_mmio_save(virtio_blk_transport(b2), &before);

	/* What this device could not be in: refused, nothing changed. */
	bad = st;
	bad.nr_queues = 3;
	assert_false(virtio_mmio_load(virtio_blk_transport(b2), &bad, err,
				      sizeof(err)));
	bad = st;
	bad.driver_features |= 1ULL << 3;
	assert_false(virtio_mmio_load(virtio_blk_transport(b2), &bad, err,
				      sizeof(err)));
	assert_non_null(strstr(err, "driver features"));
	bad = st;
	bad.q[0].num = 6;
	assert_false(virtio_mmio_load(virtio_blk_transport(b2), &bad, err,
				      sizeof(err)));
	bad = st;
	bad.q[0].avail = RAM_SIZE - 2;
	assert_false(virtio_mmio_load(virtio_blk_transport(b2), &bad, err,
				      sizeof(err)));
	bad = st;
	bad.q[0].last_avail++;
	assert_false(virtio_mmio_load(virtio_blk_transport(b2), &bad, err,
				      sizeof(err)));
	assert_non_null(strstr(err, "in flight"));
	bad = st;
	bad.status |= 0x10;
	assert_false(virtio_mmio_load(virtio_blk_transport(b2), &bad, err,
				      sizeof(err)));
	virtio_mmio_save(virtio_blk_transport(b2), &now);
	assert_memory_equal(&now, &before, sizeof(now));

	assert_true(virtio_mmio_load(virtio_blk_transport(b2), &st, err,
				     sizeof(err)));
	virtio_blk_destroy(blk);
	blk = b2;
	t = virtio_blk_transport(b2);
	assert_int_equal(request(VIRTIO_BLK_T_IN, 3, DATA, 512, true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(ram[DATA + 5], pattern(3 * 512 + 5));
	virtio_blk_quiesce(blk); /* what virtio_mmio_save() expects */
	virtio_mmio_save(t, &now);
	assert_int_equal(now.q[0].used_idx, 2);
}

/* A read failed with rerror=stop (a held request). */
static void hold_failed_read(uint64_t sector)
{
	struct timespec ts = { 0, 1000000 };

	assert_int_equal(truncate(path, 4096), 0);
	put_header(VIRTIO_BLK_T_IN, sector);
	ram[STATUS] = 0xff;
	put_desc(0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(1, DATA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	put_desc(2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	offer(0);
	for (int i = 0;
	     i < 5000 && !__atomic_load_n(&errors_reported, __ATOMIC_SEQ_CST);
	     i++)
		nanosleep(&ts, NULL);
	assert_int_equal(errors_reported, 1);
	assert_true(last_error.stopped);
}

/* A second device on the same image and RAM, as a destination has. */
static struct virtio_blk *second_device(const char *extra)
{
	struct virtio_blk_host host = {
		.mem = { .ops = &fake_ops },
		.force_threads = force_threads,
	};
	struct blk_drive_config cfg;
	struct virtio_blk *b2;
	char err[256], spec[512];

	snprintf(spec, sizeof(spec), "file=%s%s", path, extra);
	assert_int_equal(blk_drive_parse(spec, 0, &cfg, err, sizeof(err)), 0);
	b2 = virtio_blk_create(&cfg, 2, &host, err, sizeof(err));
	if (!b2)
		fail_msg("virtio_blk_create: %s", err);
	return b2;
}

/*
 * Migration with a request held by rerror=stop (docs/MIGRATION.md,
 * "virtio-blk"): the quiesce keeps it (no status written, nothing
 * pushed), the saved transport carries its head, a second device takes
 * it (in flight, io-status failed) and, once the storage is fixed, its
 * retry walks the chain again and completes it with the data.
 */
static void test_blk_held_request_moves_to_a_new_device(void **state)
{
	struct virtio_mmio_state st, bad, before, now;
	struct virtio_blk_info info;
	struct virtio_blk *b2;
	uint8_t back[512];
	char err[256];

	(void)state;
	virtio_blk_destroy(blk);
	open_device(",rerror=stop");
	hold_failed_read(64);
	virtio_blk_quiesce(blk);
	assert_int_equal(ram[STATUS], 0xff);
	virtio_mmio_save(t, &st);
	if (st.q[0].last_avail != 1 || st.q[0].used_idx != 0 ||
	    st.q[0].nr_held != 1 || st.q[0].held[0] != 0)
		fail_msg("saved queue 0: last_avail %u used_idx %u, %u held "
			 "(head %u); expected 1, 0, 1 held (head 0)",
			 st.q[0].last_avail, st.q[0].used_idx, st.q[0].nr_held,
			 st.q[0].held[0]);
	assert_int_equal(st.q[1].nr_held, 0);

	/* The destination's storage is sound (it probes the size). */
	assert_int_equal(truncate(path, IMAGE_SIZE), 0);
	b2 = second_device("");
	virtio_mmio_save(virtio_blk_transport(b2), &before);
	/* Held heads that do not fit the queue: refused, nothing changed. */
	bad = st;
	bad.q[0].held[0] = QSIZE;
	assert_false(virtio_mmio_load(virtio_blk_transport(b2), &bad, err,
				      sizeof(err)));
	assert_non_null(strstr(err, "held head 16 is not below"));
	bad = st;
	bad.q[0].nr_held = 0;
	assert_false(virtio_mmio_load(virtio_blk_transport(b2), &bad, err,
				      sizeof(err)));
	assert_non_null(strstr(err, "queue 0 has 1 requests in flight"));
	bad = st;
	bad.q[0].last_avail = 2;
	bad.q[0].nr_held = 2;
	bad.q[0].held[1] = 0;
	assert_false(virtio_mmio_load(virtio_blk_transport(b2), &bad, err,
				      sizeof(err)));
	assert_non_null(strstr(err, "held head 0 twice"));
	bad.q[0].held[1] = 1;
	bad.q[0].last_avail = 3;
	assert_false(virtio_mmio_load(virtio_blk_transport(b2), &bad, err,
				      sizeof(err)));
	assert_non_null(strstr(err, "3 requests in flight but 2 held heads"));
	bad = st;
	bad.q[1].nr_held = 1;
	assert_false(virtio_mmio_load(virtio_blk_transport(b2), &bad, err,
				      sizeof(err)));
	assert_non_null(strstr(err, "queue 1 is not ready but holds 1"));
	virtio_mmio_save(virtio_blk_transport(b2), &now);
	assert_memory_equal(&now, &before, sizeof(now));
	virtio_blk_info(b2, &info);
	assert_int_equal(info.stats.in_flight, 0);

	if (!virtio_mmio_load(virtio_blk_transport(b2), &st, err, sizeof(err)))
		fail_msg("the held request's state refused: %s", err);
	virtio_blk_info(b2, &info);
	assert_int_equal(info.stats.in_flight, 1);
	assert_true(info.io_error);
	/* Quiesced and saved again before any cont: still held. */
	virtio_blk_quiesce(b2);
	virtio_mmio_save(virtio_blk_transport(b2), &now);
	assert_int_equal(now.q[0].nr_held, 1);
	assert_int_equal(now.q[0].held[0], 0);
	/* The source goes (its reset fails what it held, in its own
	 * memory: here the same bytes); cont on the new device. */
	virtio_blk_destroy(blk);
	blk = b2;
	t = virtio_blk_transport(b2);
	ram[STATUS] = 0xff;
	memset(ram + DATA, 0xee, 512);
	virtio_blk_retry(blk);
	assert_int_equal(wait_used(), 513);
	assert_int_equal(ram[STATUS], VIRTIO_BLK_S_OK);
	file_bytes(64 * 512, back, sizeof(back));
	assert_memory_equal(ram + DATA, back, sizeof(back));
	virtio_blk_info(blk, &info);
	assert_false(info.io_error);
	assert_int_equal(info.stats.in_flight, 0);
}

/* A held request whose chain the guest broke meanwhile: the retry's walk
 * refuses it as guest input and the device needs a reset; nothing is
 * written for it. */
static void test_blk_held_request_bad_chain_needs_reset(void **state)
{
	struct virtio_mmio_state st;
	struct virtio_blk *b2;
	char err[256];

	(void)state;
	virtio_blk_destroy(blk);
	open_device(",rerror=stop");
	hold_failed_read(64);
	virtio_blk_quiesce(blk);
	virtio_mmio_save(t, &st);
	assert_int_equal(truncate(path, IMAGE_SIZE), 0);
	b2 = second_device("");
	if (!virtio_mmio_load(virtio_blk_transport(b2), &st, err, sizeof(err)))
		fail_msg("the held request's state refused: %s", err);
	virtio_blk_destroy(blk);
	blk = b2;
	t = virtio_blk_transport(b2);
	ram[STATUS] = 0xff;
	/* Its data buffer now names memory outside RAM. */
	put_desc(1, RAM_SIZE - 256, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
		 2);
	virtio_blk_retry(blk);
	assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	virtio_mmio_broken_reason(t, err, sizeof(err));
	assert_non_null(strstr(err, "held request 0"));
	assert_non_null(strstr(err, "outside guest RAM"));
	assert_int_equal(ram[STATUS], 0xff);
	/* The driver's reset drops it. */
	wr(VIRTIO_MMIO_STATUS, 0);
	start_device();
	memset(ram + USED, 0, 8);
	assert_int_equal(request(VIRTIO_BLK_T_IN, 1, DATA, 512, true, NULL),
			 VIRTIO_BLK_S_OK);
}

/* MQ: the configuration says two queues; queue 1, with rings of its
 * own, serves a request while queue 0 sees nothing. */
static void test_blk_second_queue_serves_requests(void **state)
{
	const gpa_t desc1 = 0x4000, avail1 = 0x5000, used1 = 0x6000;
	uint16_t one = 1, head = 0, idx, used0;
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;

	(void)state;
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_true(rd(VIRTIO_MMIO_DEVICE_FEATURES) & (1u << VIRTIO_BLK_F_MQ));
	assert_int_equal(
		virtio_mmio_read(
			t, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_NUM_QUEUES, 2),
		2);
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	wr(VIRTIO_MMIO_QUEUE_NUM, QSIZE);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, desc1);
	wr(VIRTIO_MMIO_QUEUE_DRIVER_LOW, avail1);
	wr(VIRTIO_MMIO_QUEUE_DEVICE_LOW, used1);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	put_header(VIRTIO_BLK_T_IN, 5);
	ram[STATUS] = 0xff;
	for (unsigned int i = 0; i < 3; i++) {
		uint8_t *d = ram + desc1 + 16 * i;

		addr = i == 0 ? HDR : i == 1 ? DATA : STATUS;
		len = i == 0 ? 16 : i == 1 ? 512 : 1;
		flags = (i < 2 ? VIRTQ_DESC_F_NEXT : 0) |
			(i > 0 ? VIRTQ_DESC_F_WRITE : 0);
		next = (uint16_t)(i + 1);
		memcpy(d, &addr, 8);
		memcpy(d + 8, &len, 4);
		memcpy(d + 12, &flags, 2);
		memcpy(d + 14, &next, 2);
	}
	memcpy(ram + avail1 + 4, &head, 2);
	__atomic_store_n((uint16_t *)(void *)(ram + avail1 + 2), one,
			 __ATOMIC_RELEASE);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	for (int i = 0; i < 50000; i++) {
		idx = __atomic_load_n((uint16_t *)(void *)(ram + used1 + 2),
				      __ATOMIC_ACQUIRE);
		if (idx == 1)
			break;
		usleep(100);
	}
	assert_int_equal(idx, 1);
	assert_int_equal(ram[STATUS], VIRTIO_BLK_S_OK);
	assert_int_equal(ram[DATA + 7], pattern(5 * 512 + 7));
	memcpy(&used0, ram + USED + 2, 2);
	assert_int_equal(used0, 0);
}

static void test_blk_drive_parse_refuses_bad_options(void **state)
{
	struct blk_drive_config c;
	char err[256];

	(void)state;
	assert_int_equal(blk_drive_parse("file=/x,cache=none,readonly=on,"
					 "discard=unmap,werror=stop,id=d1",
					 3, &c, err, sizeof(err)),
			 0);
	assert_true(c.direct && c.readonly && c.discard);
	assert_int_equal(c.werror, BLK_ERROR_STOP);
	assert_string_equal(c.id, "d1");
	assert_string_equal(c.serial, "mmud-3");
	assert_int_equal(blk_drive_parse("file=/x,format=qcow2", 0, &c, err,
					 sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "format=qcow2"));
	assert_int_equal(blk_drive_parse("readonly=on", 0, &c, err,
					 sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "no file="));
	assert_int_equal(blk_drive_parse("file=/x,cache=unsafe", 0, &c, err,
					 sizeof(err)),
			 -EINVAL);
	assert_int_equal(blk_drive_parse("file=/x,bogus=1", 0, &c, err,
					 sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "bogus"));
	assert_int_equal(blk_drive_parse("file=/x,serial=012345678901234567890",
					 0, &c, err, sizeof(err)),
			 -EINVAL);
}

int main(int argc, char **argv)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_blk_read_matches_file),
		T(test_blk_write_reaches_file),
		T(test_blk_get_id_returns_serial),
		T(test_blk_read_into_readonly_buffer_refused),
		T(test_blk_out_of_range_refused),
		T(test_blk_write_past_the_end_refused),
		T(test_blk_unknown_type_unsupported),
		T(test_blk_chain_without_status_needs_reset),
		T(test_blk_discard_reads_back_zeros),
		T(test_blk_readonly_drive_refuses_writes),
		T(test_blk_io_error_reported),
		T(test_blk_rerror_stop_retries),
		T(test_blk_reset_mid_request_drains),
		T(test_blk_state_moves_to_a_new_device),
		T(test_blk_held_request_moves_to_a_new_device),
		T(test_blk_held_request_bad_chain_needs_reset),
		T(test_blk_second_queue_serves_requests),
		cmocka_unit_test(test_blk_drive_parse_refuses_bad_options),
	};
#undef T
	force_threads = argc > 1 && !strcmp(argv[1], "threads");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
