/*
 * virtio_blk: a driver of our own for mmud's virtio-blk device
 * (docs/GUEST-ABI.md, "Virtio-mmio devices"), the first drive at
 * 0xD0000000 on IOAPIC pin 5. It checks feature negotiation (no
 * FEATURES_OK without VIRTIO_F_VERSION_1), reads the image's known
 * pattern (byte i is (i * 7 + (i >> 9)) & 0xff, written by the test)
 * through direct and indirect descriptors, writes runs of sectors at
 * pseudo-random offsets and reads them back, flushes, asks GET_ID,
 * discards a range when offered, sends every malformed request the
 * device must refuse (and resets after each that breaks it), and resets
 * the device with a request in flight. Every line it prints is what the
 * integration test (tests/integration/test_virtio_blk.py) checks, the
 * image file afterwards included.
 *
 * Command line: "irq" waits for used buffers in HLT, woken by the
 * device's interrupt (EVENT_IDX negotiated), otherwise it polls the used
 * ring; "dirty" also reads a sector into a page it never touches itself,
 * between two bytes typed on COM1, so the test can look for that page
 * in x-dirty-log-harvest; "hold" waits for a byte on COM1 after its
 * last line, so the test can query the device before the VM ends;
 * "bench" only times requests kept in flight (bench/virtio_blk.py).
 */
#include "irq.h"
#include "rt.h"
#include "vblk.h"

#define QSZ 64
#define MAX_QD 32
#define VECTOR 0x35
#define PIN 5
#define SECTOR 512
#define WRITE_FIRST 4096 /* random writes land in [4096, 8184) */
#define WRITE_SPAN 4088
#define DISCARD_AT 2048

static bool irq_mode;
static volatile unsigned int irqs, config_irqs;
static struct desc *desc, *table;
static volatile uint16_t *avail;
static volatile uint8_t *used;
static uint16_t avail_idx, used_seen;
static uint8_t *hdr, *status, *buf, *big;
static uint64_t features, capacity;

static uint8_t image_byte(uint64_t i)
{
	return (uint8_t)(i * 7 + (i >> 9));
}

/* What the random writes put in sector s. */
static uint8_t written_byte(uint64_t s, unsigned int k)
{
	return (uint8_t)(s * 13 + k + 0x5a);
}

static void on_virtio(struct rt_irq_frame *f)
{
	uint32_t isr = rd(INT_STATUS);

	(void)f;
	wr(INT_ACK, isr);
	irqs++;
	if (isr & 2)
		config_irqs++;
	rt_apic_eoi();
}

static uint64_t device_features(void)
{
	wr(DEV_FEAT_SEL, 1);
	uint64_t hi = rd(DEV_FEAT);
	wr(DEV_FEAT_SEL, 0);
	return hi << 32 | rd(DEV_FEAT);
}

/* Reset, negotiate what is offered of what we use, queue 0 ready. */
static void init_device(void)
{
	uint64_t want = (1ULL << F_VERSION_1) | (1ULL << F_INDIRECT_DESC) |
			(1ULL << F_BLK_FLUSH) | (1ULL << F_BLK_DISCARD);

	if (irq_mode)
		want |= 1ULL << F_EVENT_IDX;
	features = device_features() & want;
	if (!(negotiate(features) & S_FEATURES_OK))
		rt_fail("virtio_blk: FEATURES_OK refused for %#lx\n", features);
	if (rd(QUEUE_NUM_MAX) < QSZ)
		rt_fail("virtio_blk: QueueNumMax %u\n", rd(QUEUE_NUM_MAX));
	memset(desc, 0, 16 * QSZ);
	memset((void *)avail, 0, 4096);
	memset((void *)used, 0, 4096);
	queue0_ready(QSZ, desc, avail, used);
	avail_idx = used_seen = 0;
	if (rd(STATUS) != (S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK))
		rt_fail("virtio_blk: status %#x after DRIVER_OK\n", rd(STATUS));
}

static uint16_t used_idx(void)
{
	return __atomic_load_n((volatile uint16_t *)(used + 2),
			       __ATOMIC_ACQUIRE);
}

/* Offers the chain at descriptor 0 and notifies. */
static void offer(void)
{
	avail[2 + avail_idx % QSZ] = 0;
	/* used_event: an interrupt for the next used buffer. */
	avail[2 + QSZ] = used_seen;
	__atomic_store_n(&avail[1], ++avail_idx, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr(QUEUE_NOTIFY, 0);
}

/* Waits for the next used buffer; returns its length. */
static uint32_t wait_used(void)
{
	uint32_t len;

	for (uint64_t spins = 0; used_idx() == used_seen; spins++) {
		if (spins > 200000000)
			rt_fail("virtio_blk: no used buffer (status %#x)\n",
				rd(STATUS));
		if (irq_mode) {
			rt_cli();
			if (used_idx() == used_seen)
				rt_sti_hlt();
			rt_sti();
		} else {
			rt_pause();
		}
	}
	len = *(volatile uint32_t *)(used + 4 + 8 * (used_seen % QSZ) + 4);
	used_seen++;
	return len;
}

static void set_desc(struct desc *t, unsigned int i, void *addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	t[i] = (struct desc){ (uint64_t)addr, len, flags, next };
}

static void set_hdr(uint32_t type, uint64_t sector)
{
	memset(hdr, 0, 16);
	memcpy(hdr, &type, 4);
	memcpy(hdr + 8, &sector, 8);
}

/* A request of header, data (device-writable if data_in) and status:
 * the status byte. */
static uint8_t request(uint32_t type, uint64_t sector, void *data, uint32_t len,
		       bool data_in, uint32_t *used_len)
{
	uint32_t l;

	set_hdr(type, sector);
	*status = 0xff;
	set_desc(desc, 0, hdr, 16, F_NEXT, 1);
	set_desc(desc, 1, data, len, F_NEXT | (data_in ? F_WRITE : 0), 2);
	set_desc(desc, 2, status, 1, F_WRITE, 0);
	offer();
	l = wait_used();
	if (used_len)
		*used_len = l;
	return *status;
}

static void check_image(const uint8_t *p, uint64_t sector, unsigned int n,
			const char *how)
{
	for (uint64_t i = 0; i < (uint64_t)n * SECTOR; i++)
		if (p[i] != image_byte(sector * SECTOR + i))
			rt_fail("virtio_blk: %s: byte %lu of sector %lu is "
				"%#x, the image has %#x\n",
				how, i % SECTOR, sector + i / SECTOR, p[i],
				image_byte(sector * SECTOR + i));
}

/* Waits for DEVICE_NEEDS_RESET after a chain the device must refuse,
 * then resets and sets the device up again. */
static void expect_needs_reset(const char *what)
{
	for (uint64_t spins = 0; !(rd(STATUS) & S_NEEDS_RESET); spins++)
		if (spins > 100000000)
			rt_fail("virtio_blk: %s: no DEVICE_NEEDS_RESET "
				"(status %#x)\n",
				what, rd(STATUS));
	if (irq_mode) {
		/* With DRIVER_OK a configuration change interrupt. */
		for (uint64_t spins = 0; !config_irqs; spins++) {
			if (spins > 100000000)
				rt_fail("virtio_blk: %s: no configuration "
					"interrupt\n",
					what);
			rt_pause();
		}
		config_irqs = 0;
	}
	rt_printf("virtio_blk: %s: DEVICE_NEEDS_RESET\n", what);
	init_device();
}

static uint64_t lcg = 1234;

static uint64_t rnd(void)
{
	lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
	return lcg >> 33;
}

static void random_writes(void)
{
	for (unsigned int w = 0; w < 12; w++) {
		uint64_t s = WRITE_FIRST + rnd() % WRITE_SPAN;
		unsigned int n = 1 + rnd() % 8;

		for (unsigned int i = 0; i < n * SECTOR; i++)
			buf[i] = written_byte(s + i / SECTOR, i % SECTOR);
		if (request(T_OUT, s, buf, n * SECTOR, false, NULL) != 0)
			rt_fail("virtio_blk: write of %u at %lu failed\n", n,
				s);
		memset(buf, 0, n * SECTOR);
		if (request(T_IN, s, buf, n * SECTOR, true, NULL) != 0)
			rt_fail("virtio_blk: read back of %lu failed\n", s);
		for (unsigned int i = 0; i < n * SECTOR; i++)
			if (buf[i] != written_byte(s + i / SECTOR, i % SECTOR))
				rt_fail("virtio_blk: sector %lu reads back "
					"%#x at %u\n",
					s + i / SECTOR, buf[i], i % SECTOR);
		rt_printf("virtio_blk: wrote %lu %u\n", s, n);
	}
}

static void bad_requests(void)
{
	/* Data to read into a buffer the device may only read. */
	memset(buf, 0x11, SECTOR);
	if (request(T_IN, 0, buf, SECTOR, false, NULL) != 1)
		rt_fail("virtio_blk: read into a read-only buffer: status "
			"%u\n",
			*status);
	for (unsigned int i = 0; i < SECTOR; i++)
		if (buf[i] != 0x11)
			rt_fail("virtio_blk: the read-only buffer changed\n");
	rt_printf("virtio_blk: read into a read-only buffer: IOERR\n");
	if (request(T_IN, capacity - 1, buf, 2 * SECTOR, true, NULL) != 1)
		rt_fail("virtio_blk: read past the end: status %u\n", *status);
	rt_printf("virtio_blk: read past the end: IOERR\n");
	if (request(77, 0, buf, SECTOR, true, NULL) != 2)
		rt_fail("virtio_blk: unknown type: status %u\n", *status);
	rt_printf("virtio_blk: unknown type: UNSUPP\n");

	set_hdr(T_IN, 0);
	set_desc(desc, 0, hdr, 16, F_NEXT, 1);
	set_desc(desc, 1, buf, SECTOR, F_NEXT | F_WRITE, 0);
	offer();
	expect_needs_reset("a loop");

	set_hdr(T_IN, 0);
	set_desc(desc, 0, hdr, 16, F_NEXT, 1);
	set_desc(desc, 1, (void *)(VBASE + 0x800), SECTOR, F_NEXT | F_WRITE, 2);
	set_desc(desc, 2, status, 1, F_WRITE, 0);
	offer();
	expect_needs_reset("a buffer in MMIO");

	set_desc(desc, 1, (void *)(1ULL << 40), SECTOR, F_NEXT | F_WRITE, 2);
	offer();
	expect_needs_reset("a buffer outside RAM");

	set_desc(desc, 0, hdr, 16, F_NEXT, QSZ + 3);
	offer();
	expect_needs_reset("a next index out of range");

	set_desc(desc, 0, hdr, 16, 0, 0);
	offer();
	expect_needs_reset("no status byte");

	set_desc(desc, 0, table, 16 * 3 + 8, F_INDIRECT, 0);
	offer();
	expect_needs_reset("an indirect table of 56 bytes");
}

static void indirect_read(void)
{
	set_hdr(T_IN, 8);
	*status = 0xff;
	memset(buf, 0, 8 * SECTOR);
	set_desc(table, 0, hdr, 16, F_NEXT, 1);
	set_desc(table, 1, buf, 8 * SECTOR, F_NEXT | F_WRITE, 2);
	set_desc(table, 2, status, 1, F_WRITE, 0);
	set_desc(desc, 0, table, 16 * 3, F_INDIRECT, 0);
	offer();
	if (wait_used() != 8 * SECTOR + 1 || *status != 0)
		rt_fail("virtio_blk: indirect read: status %u\n", *status);
	check_image(buf, 8, 8, "indirect read");
	rt_printf("virtio_blk: indirect read of 8 sectors matches the "
		  "image\n");
}

static void reset_mid_request(void)
{
	uint16_t before = used_idx();

	set_hdr(T_IN, 0);
	set_desc(desc, 0, hdr, 16, F_NEXT, 1);
	set_desc(desc, 1, big, 1 << 20, F_NEXT | F_WRITE, 2);
	set_desc(desc, 2, status, 1, F_WRITE, 0);
	offer();
	wr(STATUS, 0);
	/* The reset returned: the device is done with the request, and
	 * says so with its status (virtio 1.2, 4.2.3.1.1). */
	if (rd(STATUS) != 0)
		rt_fail("virtio_blk: status %#x after reset\n", rd(STATUS));
	if ((uint16_t)(used_idx() - before) > 1)
		rt_fail("virtio_blk: used index moved by %u\n",
			(uint16_t)(used_idx() - before));
	init_device();
	if (request(T_IN, 0, buf, SECTOR, true, NULL) != 0)
		rt_fail("virtio_blk: read after reset: status %u\n", *status);
	check_image(buf, 0, 1, "read after reset");
	rt_printf("virtio_blk: reset with a request in flight, then a "
		  "read\n");
}

/* ---- bench: requests kept in flight, each through its own indirect
 * table in ring slot (and descriptor) equal to its index ----------------- */

static struct desc (*btable)[4];
static uint8_t (*bhdr)[16];
static uint8_t *bstatus;
static uint8_t *bbuf;

static void bench_post(unsigned int slot, uint32_t type, uint64_t sector,
		       uint32_t size)
{
	uint8_t *h = bhdr[slot];

	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	bstatus[slot] = 0xff;
	set_desc(btable[slot], 0, h, 16, F_NEXT, 1);
	set_desc(btable[slot], 1, bbuf + (uint64_t)slot * (1 << 20), size,
		 F_NEXT | (type == T_IN ? F_WRITE : 0), 2);
	set_desc(btable[slot], 2, &bstatus[slot], 1, F_WRITE, 0);
	set_desc(desc, slot, btable[slot], 48, F_INDIRECT, 0);
	avail[2 + avail_idx % QSZ] = (uint16_t)slot;
	avail[2 + QSZ] = used_seen;
	__atomic_store_n(&avail[1], ++avail_idx, __ATOMIC_RELEASE);
}

/*
 * nreq requests of size bytes, qd in flight: random 4 KiB-aligned
 * offsets, or sequential ones. The test times the lines on the host.
 */
static void bench(const char *name, unsigned int qd, unsigned int nreq,
		  uint32_t size, bool random, uint32_t type)
{
	uint64_t span = capacity / (size / SECTOR), next = 0;
	unsigned int posted = 0, done = 0;

	rt_printf("bench: %s start\n", name);
	for (; posted < qd && posted < nreq; posted++)
		bench_post(posted, type,
			   (random ? rnd() % span : next++ % span) *
				   (size / SECTOR),
			   size);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr(QUEUE_NOTIFY, 0);
	while (done < nreq) {
		bool more = false;

		while (used_idx() == used_seen) {
			if (irq_mode) {
				rt_cli();
				if (used_idx() == used_seen)
					rt_sti_hlt();
				rt_sti();
			} else {
				rt_pause();
			}
		}
		while (used_idx() != used_seen) {
			uint32_t id =
				*(volatile uint32_t *)(used + 4 +
						       8 * (used_seen % QSZ));

			used_seen++;
			done++;
			if (bstatus[id] != 0)
				rt_fail("bench: request failed: %u\n",
					bstatus[id]);
			if (posted < nreq) {
				bench_post(id, type,
					   (random ? rnd() % span :
						     next++ % span) *
						   (size / SECTOR),
					   size);
				posted++;
				more = true;
			}
		}
		if (more) {
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			wr(QUEUE_NOTIFY, 0);
		}
	}
	rt_printf("bench: %s end %u\n", name, nreq);
}

static void run_benches(void)
{
	btable = (struct desc(*)[4])rt_phys_alloc(MAX_QD * 64, 4096);
	bhdr = (uint8_t(*)[16])rt_phys_alloc(MAX_QD * 16, 4096);
	bstatus = (uint8_t *)rt_phys_alloc(4096, 4096);
	bbuf = (uint8_t *)rt_phys_alloc((uint64_t)MAX_QD << 20, 4096);
	bench("4k-randread-qd1", 1, 6000, 4096, true, T_IN);
	bench("4k-randread-qd32", 32, 30000, 4096, true, T_IN);
	bench("1m-seqread-qd1", 1, 512, 1 << 20, false, T_IN);
	bench("1m-seqwrite-qd1", 1, 512, 1 << 20, false, T_OUT);
	rt_printf("bench: done\n");
}

static uint8_t com1_getc(void)
{
	while (!(rt_inb(0x3f8 + 5) & 1))
		rt_pause();
	return rt_inb(0x3f8);
}

int guest_main(unsigned int cpu)
{
	const char *cmd = rt_boot.cmdline;
	bool dirty = false, hold = false, benchmark = false;
	char id[21] = { 0 };
	uint32_t len;

	if (cpu != 0)
		return 0;
	for (uint32_t i = 0; i + 2 < rt_boot.cmdline_len; i++) {
		if (!memcmp(cmd + i, "irq", 3))
			irq_mode = true;
		if (i + 5 <= rt_boot.cmdline_len &&
		    !memcmp(cmd + i, "dirty", 5))
			dirty = true;
		if (i + 4 <= rt_boot.cmdline_len && !memcmp(cmd + i, "hold", 4))
			hold = true;
		if (i + 5 <= rt_boot.cmdline_len &&
		    !memcmp(cmd + i, "bench", 5))
			benchmark = true;
	}
	desc = (struct desc *)rt_phys_alloc(4096, 4096);
	avail = (volatile uint16_t *)rt_phys_alloc(4096, 4096);
	used = (volatile uint8_t *)rt_phys_alloc(4096, 4096);
	table = (struct desc *)rt_phys_alloc(4096, 4096);
	hdr = (uint8_t *)rt_phys_alloc(4096, 4096);
	status = hdr + 64;
	buf = (uint8_t *)rt_phys_alloc(64 << 10, 4096);
	big = (uint8_t *)rt_phys_alloc(1 << 20, 4096);
	rt_printf("virtio_blk: %s\n", irq_mode ? "interrupt-driven" : "polled");
	if (rd(MAGIC) != 0x74726976 || rd(VERSION) != 2 || rd(DEVICE_ID) != 2)
		rt_fail("virtio_blk: no virtio-blk at %#lx (magic %#x, "
			"version %u, device %u)\n",
			VBASE, rd(MAGIC), rd(VERSION), rd(DEVICE_ID));
	if (irq_mode) {
		rt_irq_setup();
		rt_apic_enable();
		rt_irq_set_handler(VECTOR, on_virtio);
		rt_ioapic_route(PIN, VECTOR, 0); /* edge, active high */
		rt_sti();
	}
	/* A driver without VERSION_1 gets no FEATURES_OK. */
	if (negotiate(device_features() & ~(1ULL << F_VERSION_1)) &
	    S_FEATURES_OK)
		rt_fail("virtio_blk: FEATURES_OK without VERSION_1\n");
	rt_printf("virtio_blk: no FEATURES_OK without VERSION_1\n");
	init_device();
	capacity = rd(CONFIG) | (uint64_t)rd(CONFIG + 4) << 32;
	rt_printf("virtio_blk: %lu sectors, features %#lx\n", capacity,
		  features);
	if (benchmark) {
		run_benches();
		return 0;
	}

	if (request(T_IN, 0, buf, 64 * SECTOR, true, &len) != 0 && hold) {
		/* The test looks at the device before the VM ends. */
		rt_printf("virtio_blk: first read failed: status %u\n",
			  *status);
		com1_getc();
	}
	if (*status != 0 || len != 64 * SECTOR + 1)
		rt_fail("virtio_blk: read of 64 sectors: status %u len %u\n",
			*status, len);
	check_image(buf, 0, 64, "read");
	rt_printf("virtio_blk: 64 sectors read match the image\n");
	indirect_read();
	random_writes();
	if (request(T_FLUSH, 0, buf, 0, true, NULL) != 0)
		rt_fail("virtio_blk: flush: status %u\n", *status);
	rt_printf("virtio_blk: flush\n");
	if (request(T_GET_ID, 0, buf, 20, true, NULL) != 0)
		rt_fail("virtio_blk: GET_ID: status %u\n", *status);
	memcpy(id, buf, 20);
	rt_printf("virtio_blk: serial %s\n", id);
	if (features & (1ULL << F_BLK_DISCARD)) {
		uint64_t s = DISCARD_AT;
		uint32_t n = 8, flags = 0;

		memcpy(buf, &s, 8);
		memcpy(buf + 8, &n, 4);
		memcpy(buf + 12, &flags, 4);
		if (request(T_DISCARD, 0, buf, 16, false, NULL) != 0)
			rt_fail("virtio_blk: discard: status %u\n", *status);
		memset(buf, 0x33, 8 * SECTOR);
		request(T_IN, DISCARD_AT, buf, 8 * SECTOR, true, NULL);
		for (unsigned int i = 0; i < 8 * SECTOR; i++)
			if (buf[i])
				rt_fail("virtio_blk: discarded byte %u reads "
					"%#x\n",
					i, buf[i]);
		rt_printf("virtio_blk: discarded %u sectors at %u read as "
			  "zeros\n",
			  n, DISCARD_AT);
	} else {
		rt_printf("virtio_blk: no discard offered\n");
	}
	bad_requests();
	reset_mid_request();
	if (dirty) {
		uint8_t *page = (uint8_t *)rt_phys_alloc(4096, 4096);

		rt_printf("virtio_blk: dirty page %#lx\n", (uint64_t)page);
		com1_getc();
		if (request(T_IN, 1, page, SECTOR, true, NULL) != 0)
			rt_fail("virtio_blk: read into the page: %u\n",
				*status);
		rt_printf("virtio_blk: read into the dirty page\n");
		com1_getc();
	}
	if (irq_mode && !irqs)
		rt_fail("virtio_blk: no interrupt in interrupt mode\n");
	if (irq_mode)
		rt_printf("virtio_blk: woken by its interrupts\n");
	rt_printf("virtio_blk: done\n");
	if (hold)
		com1_getc(); /* the test reads the statistics first */
	return 0;
}
