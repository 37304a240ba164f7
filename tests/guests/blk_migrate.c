/*
 * blk_migrate: keeps the first drive's virtio-blk queue busy while the
 * test migrates the VM (tests/integration/test_blk_migration.py,
 * docs/MIGRATION.md, "virtio-blk"). SLOTS requests are in flight at
 * almost every moment: each slot writes CHUNK bytes, flushes, then reads
 * them back and compares. The read-back buffer is written by the device
 * alone (it holds the slot's previous write until the read lands), so
 * a read completed on the source whose bytes missed the last RAM pass
 * (not in the dirty log) is stale on the destination: each slot checks
 * its last read's bytes again after its next write and flush, which
 * spans the switchover for some slot almost always. Write n
 * (n = 0, 1, 2, ...) goes to chunk n % (capacity / CHUNK); its sector s
 * holds n (8 bytes), s (8 bytes), then 496 bytes of (n ^ s) & 0xff, so
 * the test recomputes the image from the number of writes alone. A
 * request lost, answered twice or with a stale buffer across the
 * switchover shows up here (a used ring that never moves, a status
 * other than 0, a read that does not match) or in the image.
 *
 * Lines: "blk_migrate: ready N chunks", "blk_migrate: written N" every
 * 64 writes, and, after a byte on COM1 (it stops taking new work,
 * completes what is in flight and flushes), "blk_migrate: done N
 * writes". Polled: no interrupt.
 */
#include "rt.h"
#include "vblk.h"

#define QSZ 64
#define SLOTS 8
#define CHUNK (32 << 10)
#define SECTOR 512

struct slot {
	uint8_t *hdr, *status;
	uint8_t *wbuf, *rbuf;
	uint64_t n; /* the write it works on */
	uint64_t prev; /* the write its last read returned (have_prev) */
	bool have_prev;
	int step; /* 0: writing, 1: flushing, 2: reading back */
	bool busy;
};

static struct desc *desc;
static volatile uint16_t *avail;
static volatile uint8_t *used;
static uint16_t avail_idx, used_seen;
static struct slot slots[SLOTS];
static uint64_t nr_chunks;

static void fill(uint8_t *p, uint64_t n)
{
	uint64_t first = (n % nr_chunks) * (CHUNK / SECTOR);

	for (unsigned int i = 0; i < CHUNK / SECTOR; i++) {
		uint64_t s = first + i;

		memcpy(p + i * SECTOR, &n, 8);
		memcpy(p + i * SECTOR + 8, &s, 8);
		memset(p + i * SECTOR + 16, (int)((n ^ s) & 0xff), SECTOR - 16);
	}
}

static void setup(void)
{
	uint64_t want = (1ULL << F_VERSION_1) | (1ULL << F_BLK_FLUSH);

	if (!(negotiate(want) & S_FEATURES_OK))
		rt_fail("blk_migrate: FEATURES_OK refused\n");
	queue0_ready(QSZ, desc, avail, used);
}

/* Slot i's chain is descriptors 3i..3i+2: header, data, status. */
static void submit(unsigned int i, uint32_t type, uint8_t *data, uint32_t len)
{
	struct slot *s = &slots[i];
	uint64_t sector = (s->n % nr_chunks) * (CHUNK / SECTOR);
	unsigned int d = 3 * i;

	memset(s->hdr, 0, 16);
	memcpy(s->hdr, &type, 4);
	memcpy(s->hdr + 8, &sector, 8);
	*s->status = 0xff;
	desc[d] = (struct desc){ (uint64_t)s->hdr, 16, F_NEXT,
				 (uint16_t)(d + 1) };
	desc[d + 1] = (struct desc){ (uint64_t)data, len,
				     (uint16_t)(F_NEXT |
						(type == T_IN ? F_WRITE : 0)),
				     (uint16_t)(d + 2) };
	desc[d + 2] = (struct desc){ (uint64_t)s->status, 1, F_WRITE, 0 };
	if (!len) /* a flush: header and status only */
		desc[d] = (struct desc){ (uint64_t)s->hdr, 16, F_NEXT,
					 (uint16_t)(d + 2) };
	s->busy = true;
	avail[2 + avail_idx % QSZ] = (uint16_t)d;
	__atomic_store_n(&avail[1], ++avail_idx, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr(QUEUE_NOTIFY, 0);
}

/* The next used element's slot, waiting for it. */
static unsigned int reap(void)
{
	uint16_t head;

	for (uint64_t spins = 0;
	     __atomic_load_n((volatile uint16_t *)(used + 2),
			     __ATOMIC_ACQUIRE) == used_seen;
	     spins++) {
		if (spins > 2000000000ULL)
			rt_fail("blk_migrate: no used buffer (status %#x, "
				"avail %u used %u)\n",
				rd(STATUS), avail_idx, used_seen);
		rt_pause();
	}
	head = (uint16_t) *
	       (volatile uint32_t *)(used + 4 + 8 * (used_seen % QSZ));
	used_seen++;
	if (head % 3 || head / 3 >= SLOTS || !slots[head / 3].busy)
		rt_fail("blk_migrate: used head %u not in flight\n", head);
	slots[head / 3].busy = false;
	if (*slots[head / 3].status != 0)
		rt_fail("blk_migrate: slot %u write %lu: status %u\n", head / 3,
			slots[head / 3].n, *slots[head / 3].status);
	return head / 3;
}

/* rbuf still holds write prev, as the device left it. */
static void check_again(unsigned int i)
{
	const struct slot *s = &slots[i];
	uint64_t first = (s->prev % nr_chunks) * (CHUNK / SECTOR);

	for (unsigned int k = 0; k < CHUNK / SECTOR; k++) {
		uint64_t n, sec;

		memcpy(&n, s->rbuf + k * SECTOR, 8);
		memcpy(&sec, s->rbuf + k * SECTOR + 8, 8);
		if (n != s->prev || sec != first + k)
			rt_fail("blk_migrate: slot %u: the read of write %lu "
				"changed under it: sector %u holds write %lu "
				"sector %lu\n",
				i, s->prev, k, n, sec);
	}
}

static bool com1_byte(void)
{
	return rt_inb(0x3f8 + 5) & 1;
}

int guest_main(unsigned int cpu)
{
	uint64_t next = 0, done = 0, capacity;
	unsigned int busy = 0;
	bool stopping = false;

	if (cpu != 0)
		return 0;
	desc = (struct desc *)rt_phys_alloc(4096, 4096);
	avail = (volatile uint16_t *)rt_phys_alloc(4096, 4096);
	used = (volatile uint8_t *)rt_phys_alloc(4096, 4096);
	for (unsigned int i = 0; i < SLOTS; i++) {
		slots[i].hdr = (uint8_t *)rt_phys_alloc(4096, 4096);
		slots[i].status = slots[i].hdr + 64;
		slots[i].wbuf = (uint8_t *)rt_phys_alloc(CHUNK, 4096);
		slots[i].rbuf = (uint8_t *)rt_phys_alloc(CHUNK, 4096);
	}
	setup();
	capacity = rd(CONFIG) | (uint64_t)rd(CONFIG + 4) << 32;
	nr_chunks = capacity / (CHUNK / SECTOR);
	if (!nr_chunks)
		rt_fail("blk_migrate: %lu sectors, not a chunk\n", capacity);
	rt_printf("blk_migrate: ready %lu chunks\n", nr_chunks);
	for (unsigned int i = 0; i < SLOTS; i++) {
		slots[i].n = next++;
		fill(slots[i].wbuf, slots[i].n);
		submit(i, T_OUT, slots[i].wbuf, CHUNK);
		busy++;
	}
	while (busy) {
		unsigned int i = reap();
		struct slot *s = &slots[i];

		busy--;
		if (s->step == 0) {
			/* Written: made durable (fdatasync: the slowest
			 * request, the one most often in flight). */
			s->step = 1;
			submit(i, T_FLUSH, NULL, 0);
			busy++;
			continue;
		}
		if (s->step == 1 && s->have_prev)
			check_again(i);
		if (s->step == 1) {
			/* Read it back: over the previous write's bytes,
			 * so a read that wrote nothing fails too. */
			s->step = 2;
			submit(i, T_IN, s->rbuf, CHUNK);
			busy++;
			continue;
		}
		if (memcmp(s->rbuf, s->wbuf, CHUNK)) {
			for (unsigned int k = 0; k < CHUNK; k++)
				if (s->rbuf[k] != s->wbuf[k])
					rt_fail("blk_migrate: write %lu read "
						"back: byte %u is %#x, not "
						"%#x\n",
						s->n, k, s->rbuf[k],
						s->wbuf[k]);
		}
		s->step = 0;
		s->prev = s->n;
		s->have_prev = true;
		if (++done % 64 == 0)
			rt_printf("blk_migrate: written %lu\n", done);
		if (!stopping && done % 8 == 0 && com1_byte())
			stopping = true;
		if (stopping)
			continue;
		s->n = next++;
		fill(s->wbuf, s->n);
		submit(i, T_OUT, s->wbuf, CHUNK);
		busy++;
	}
	/* Each write n < next completed (and was read back). */
	if (done != next)
		rt_fail("blk_migrate: %lu done of %lu\n", done, next);
	slots[0].n = 0;
	submit(0, T_FLUSH, NULL, 0);
	reap();
	rt_printf("blk_migrate: done %lu writes\n", done);
	return 0;
}
