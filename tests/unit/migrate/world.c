/* See world.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "world.h"

static const struct x86_env world_env;

static void console_sink(void *ctx, const void *buf, size_t len)
{
	struct world *w = ctx;

	if (len > sizeof(w->console) - w->nconsole)
		len = sizeof(w->console) - w->nconsole;
	memcpy(w->console + w->nconsole, buf, len);
	w->nconsole += len;
}

static void lapic_notify(void *ctx)
{
	(void)ctx;
}

static void serial_out(void *ctx, const char *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
}

/* The drive's guest memory: slot 0, the only RAM its rings may use. */
static void *drive_map(void *ctx, gpa_t gpa, uint64_t len)
{
	struct world *w = ctx;

	if (gpa > WORLD_SLOT0_PAGES * PAGE_SIZE ||
	    len > WORLD_SLOT0_PAGES * PAGE_SIZE - gpa)
		return NULL;
	return w->mem[0] + gpa;
}

static void drive_dirty(void *ctx, gpa_t gpa, uint64_t len)
{
	(void)ctx;
	(void)gpa;
	(void)len;
}

static const struct virtio_mem_ops drive_mem_ops = {
	.map = drive_map,
	.mark_dirty = drive_dirty,
};

static void drive_config_read(void *ctx, uint32_t off, void *buf,
			      unsigned int len)
{
	(void)ctx;
	(void)off;
	memset(buf, 0, len);
}

static void drive_notify(void *ctx, unsigned int queue)
{
	(void)ctx;
	(void)queue;
}

static void drive_reset(void *ctx)
{
	(void)ctx;
}

/* The device holds what world_hold() gave it, or what a stream brought
 * (docs/MIGRATION.md, "virtio-blk"). */
static unsigned int drive_held(void *ctx, unsigned int queue, uint16_t *heads,
			       unsigned int max)
{
	struct world *w = ctx;
	unsigned int n = w->drive_nr_held[queue];

	if (n > max)
		n = max;
	memcpy(heads, w->drive_held[queue], n * sizeof(*heads));
	return n;
}

static void drive_take_held(void *ctx, unsigned int queue,
			    const uint16_t *heads, unsigned int n)
{
	struct world *w = ctx;

	memcpy(w->drive_held[queue], heads, n * sizeof(*heads));
	w->drive_nr_held[queue] = n;
}

static void drive_irq(void *ctx, bool level)
{
	(void)ctx;
	(void)level;
}

static const struct virtio_device_ops drive_ops = {
	.device_id = 2,
	.nr_queues = WORLD_DRIVE_QUEUES,
	.config_len = 8,
	.config_read = drive_config_read,
	.notify = drive_notify,
	.reset = drive_reset,
	.held = drive_held,
	.take_held = drive_take_held,
};

void world_init(struct world *w, unsigned int nr_vcpus)
{
	static const uint64_t pages[2] = { WORLD_SLOT0_PAGES,
					   WORLD_SLOT1_PAGES };
	static const uint32_t ids[2] = { 0, 5 };
	static const gpa_t gpas[2] = { 0, WORLD_SLOT1_GPA };

	memset(w, 0, sizeof(*w));
	w->nr_vcpus = nr_vcpus;
	for (int i = 0; i < 2; i++) {
		w->mem[i] = mmap(NULL, pages[i] * PAGE_SIZE,
				 PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (w->mem[i] == MAP_FAILED)
			abort();
		w->slots[i] = (struct migrate_ram_target){
			.id = ids[i],
			.hva = (hva_t)w->mem[i],
			.size = pages[i] * PAGE_SIZE,
		};
		w->cfg.slots[i] = (struct migrate_slot){
			.id = ids[i],
			.gpa = gpas[i],
			.size = pages[i] * PAGE_SIZE,
		};
	}
	w->cfg.nr_slots = 2;
	w->cfg.nr_vcpus = nr_vcpus;
	w->cfg.ram_size = WORLD_SLOT0_PAGES * PAGE_SIZE;
	for (unsigned int i = 0; i < nr_vcpus; i++) {
		w->cpus[i] = x86_cpu_new(i, nr_vcpus, &world_env, NULL);
		if (!w->cpus[i])
			abort();
	}
	w->cfg.cpuid_sig = x86_cpuid_signature(w->cpus[0]);
	w->serial = dev_serial_create(serial_out, NULL);
	if (!w->serial)
		abort();
	for (unsigned int i = 0; i < nr_vcpus; i++) {
		w->lapics[i] = dev_lapic_create(i, lapic_notify, NULL);
		if (!w->lapics[i])
			abort();
		x86_kvmclock_reset(&w->kc[i]);
		w->kcs[i] = &w->kc[i];
	}
	w->ioapic = dev_ioapic_create(NULL, NULL);
	if (!w->ioapic)
		abort();
	{
		struct virtio_mem mem = { &drive_mem_ops, w };

		w->virtio[0] = virtio_mmio_create(&drive_ops, w, &mem,
						  drive_irq, NULL);
		if (!w->virtio[0])
			abort();
	}
	w->cfg.nr_drives = 1;
	w->cfg.drives[0] = (struct migrate_drive){ .size = WORLD_DRIVE_SIZE,
						   .id = "virtio0" };
	w->dest = (struct migrate_dest){
		.config = &w->cfg,
		.slots = w->slots,
		.nr_slots = 2,
		.cpus = w->cpus,
		.serial = w->serial,
		.console = console_sink,
		.console_ctx = w,
		.lapics = w->lapics,
		.kvmclocks = w->kcs,
		.ioapic = w->ioapic,
		.now_ns = WORLD_NOW_NS,
		.virtio = w->virtio,
		.runstate = &w->loaded_runstate,
	};
	w->loaded_runstate = MIGRATE_RS_COUNT;
}

void world_fini(struct world *w)
{
	munmap(w->mem[0], WORLD_SLOT0_PAGES * PAGE_SIZE);
	munmap(w->mem[1], WORLD_SLOT1_PAGES * PAGE_SIZE);
	for (unsigned int i = 0; i < w->nr_vcpus; i++) {
		x86_cpu_free(w->cpus[i]);
		dev_lapic_destroy(w->lapics[i]);
	}
	dev_ioapic_destroy(w->ioapic);
	dev_serial_destroy(w->serial);
	virtio_mmio_destroy(w->virtio[0]);
}

/* The interrupt and time state world_fill() gives every vCPU and the VM:
 * values a guest could have made, distinct per vCPU. */
static void world_fill_irq(struct world *w)
{
	struct migrate_vm_irq vm;
	char err[128];

	for (unsigned int i = 0; i < w->nr_vcpus; i++) {
		struct migrate_vcpu_irq v;

		migrate_vcpu_irq_save(w->cpus[i], w->lapics[i], w->kcs[i], i,
				      WORLD_NOW_NS, &v);
		v.lapic.tpr = 0x20;
		v.lapic.svr = 0x1ff; /* enabled, spurious vector 0xff */
		v.lapic.lvt[0] = 0x20040 + i; /* periodic, vector 0x40 + i */
		v.lapic.timer_divide = 0xb; /* divide by 1 */
		v.lapic.timer_initial = 1000000;
		v.lapic.timer_armed = true;
		v.lapic.timer_remaining_ns = 1000 + i;
		v.lapic.irr[2] = 1u << (1 + i); /* vector 0x41 + i */
		v.lapic.isr[1] = 1u << 16; /* vector 0x30 in service */
		v.kvm_system_time = 0x3000 + 0x40 * i + 1;
		v.kvm_wall_clock = 0x2f00;
		v.kvm_time_version = 2;
		v.kvm_wall_version = 4;
		v.kvm_time_written = 1;
		v.dr[0] = 0xffffffff81000000ULL + i;
		v.dr[3] = 0x1234;
		v.dr6 = 0xffff0ff1;
		v.dr7 = 0x00000403;
		if (migrate_vcpu_irq_load(w->cpus[i], w->lapics[i], w->kcs[i],
					  &v, WORLD_NOW_NS, err, sizeof(err))) {
			fprintf(stderr, "world_fill: vCPU %u: %s\n", i, err);
			abort();
		}
	}
	migrate_vm_irq_save(w->ioapic, w->serial, &vm);
	vm.ioapic.id = 2;
	vm.ioapic.arb = 2;
	vm.ioapic.ioregsel = 0x12;
	vm.ioapic.pin_levels = 1u << 4;
	vm.ioapic.redir[4] = 0x24; /* COM1's GSI: vector 0x24, unmasked */
	vm.ioapic.redir[9] = 0x0100000000018039ULL; /* level, masked */
	vm.com1.thre_pending = true;
	vm.com1.msr_delta = 0x5;
	if (migrate_vm_irq_load(w->ioapic, w->serial, &vm, err, sizeof(err))) {
		fprintf(stderr, "world_fill: VM: %s\n", err);
		abort();
	}
}

/* A driver's state after 7 requests on queue 0 (virtio 1.2, 3.1.1):
 * its rings in slot 0, EVENT_IDX negotiated, an interrupt pending. */
static void world_fill_drive(struct world *w)
{
	struct virtio_mmio_state st;
	char err[128];

	virtio_mmio_save(w->virtio[0], &st);
	st.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		    VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
	st.driver_features = (1ULL << VIRTIO_F_VERSION_1) |
			     (1ULL << VIRTIO_F_EVENT_IDX);
	st.dev_feat_sel = 1;
	st.drv_feat_sel = 1;
	st.queue_sel = 1;
	st.config_generation = 3;
	st.isr = VIRTIO_MMIO_INT_VRING;
	st.q[0] = (struct virtio_mmio_queue_state){
		.num = 16,
		.ready = true,
		.desc = 4 * PAGE_SIZE,
		.avail = 5 * PAGE_SIZE,
		.used = 6 * PAGE_SIZE,
		.last_avail = 7,
		.used_idx = 7,
		.signalled_used = 5,
		.signalled_valid = true,
	};
	st.q[1].num = 8; /* set, never made ready */
	if (!virtio_mmio_load(w->virtio[0], &st, err, sizeof(err))) {
		fprintf(stderr, "world_fill: drive: %s\n", err);
		abort();
	}
}

void world_hold(struct world *w, unsigned int queue, const uint16_t *heads,
		unsigned int n)
{
	struct virtq *q = virtio_mmio_queue(w->virtio[0], queue);

	memcpy(w->drive_held[queue], heads, n * sizeof(*heads));
	w->drive_nr_held[queue] = n;
	q->last_avail = (uint16_t)(q->last_avail + n);
}

void world_fill(struct world *w)
{
	static const uint64_t normal0[] = { 1, 2, 17 };
	uint32_t v = 0x12345;

	for (size_t i = 0; i < ARRAY_SIZE(normal0); i++)
		for (size_t b = 0; b < PAGE_SIZE; b++)
			w->mem[0][normal0[i] * PAGE_SIZE + b] =
				(uint8_t)((v = v * 1103515245 + 12345) >> 16);
	memset(w->mem[1] + 3 * PAGE_SIZE, 0xa5, PAGE_SIZE);
	/* One non-zero byte at the end: not a zero page. */
	w->mem[0][31 * PAGE_SIZE + PAGE_SIZE - 1] = 1;

	for (unsigned int i = 0; i < w->nr_vcpus; i++) {
		struct migrate_vcpu s;
		char err[128];

		if (migrate_vcpu_save(w->cpus[i], i, &s))
			abort();
		for (int r = 0; r < 16; r++)
			s.gpr[r] = 0x1111111111111111ULL * (uint64_t)r + i;
		s.rip = 0x401000 + i;
		s.rflags = 0x246;
		s.seg[4].base = 0x7fff00001000ULL; /* FS */
		s.seg[5].base = 0xffff800000002000ULL; /* GS */
		s.cr2 = 0xdeadb000;
		s.cr3 = 0x5000;
		s.cr8 = 3;
		s.fxsave[160] = 0x5a; /* XMM0 byte 0 */
		s.fxsave[24] = 0xa0; /* MXCSR 1FA0H: PE set */
		s.star = 0x0023001000000000ULL;
		s.lstar = 0xffffffff81000000ULL;
		s.cstar = 0xffffffff81000100ULL;
		s.sfmask = 0x47700;
		s.kernel_gs_base = 0xffff888000000000ULL;
		s.tsc_aux = i;
		s.misc_enable = 0x801;
		s.ev_pending = 1;
		s.ev_vector = 14;
		s.ev_kind = 0;
		s.ev_has_error = 1;
		s.ev_error = 2;
		s.ev_return_rip = s.rip;
		s.ev_cr2 = 0xcafe000;
		s.int_shadow = 2;
		s.nmi_blocked = 1;
		s.halted = i & 1;
		if (migrate_vcpu_load(w->cpus[i], &s, err, sizeof(err))) {
			fprintf(stderr, "world_fill: %s\n", err);
			abort();
		}
	}

	{
		uint32_t val = 0x80; /* LCR: DLAB */

		dev_serial_pio(w->serial, 3, 1, false, &val);
		val = 0x0c; /* divisor low: 9600 baud */
		dev_serial_pio(w->serial, 0, 1, false, &val);
		val = 0x03;
		dev_serial_pio(w->serial, 3, 1, false, &val);
		val = 0x42;
		dev_serial_pio(w->serial, 7, 1, false, &val); /* SCR */
		dev_serial_receive(w->serial, "queued input", 12);
	}
	world_fill_irq(w);
	world_fill_drive(w);
}

int world_write(struct world *w, int fd, struct migrate_ram_stats *stats,
		char *err, size_t errlen)
{
	struct migrate_writer *wr = migrate_writer_new(fd);
	struct dev_serial_state *ss = malloc(sizeof(*ss));
	uint64_t idx[WORLD_SLOT0_PAGES];
	int rc;

	if (!wr || !ss)
		abort();
	for (uint64_t i = 0; i < WORLD_SLOT0_PAGES; i++)
		idx[i] = i;
	rc = migrate_write_header(wr);
	rc = rc ? rc : migrate_write_config(wr, &w->cfg);
	rc = rc ? rc :
		  migrate_write_ram(wr, 0, w->slots[0].hva, w->slots[0].size,
				    idx, WORLD_SLOT0_PAGES, stats);
	rc = rc ? rc :
		  migrate_write_ram(wr, 5, w->slots[1].hva, w->slots[1].size,
				    idx, WORLD_SLOT1_PAGES, stats);
	for (unsigned int i = 0; !rc && i < w->nr_vcpus; i++) {
		struct migrate_vcpu v;

		struct migrate_vcpu_irq vi;

		rc = migrate_vcpu_save(w->cpus[i], i, &v);
		rc = rc ? rc : migrate_write_vcpu(wr, &v);
		migrate_vcpu_irq_save(w->cpus[i], w->lapics[i], w->kcs[i], i,
				      WORLD_NOW_NS, &vi);
		rc = rc ? rc : migrate_write_vcpu_irq(wr, &vi);
	}
	dev_serial_save(w->serial, ss);
	rc = rc ? rc : migrate_write_serial(wr, ss);
	{
		struct migrate_vm_irq vm;

		migrate_vm_irq_save(w->ioapic, w->serial, &vm);
		rc = rc ? rc : migrate_write_vm_irq(wr, &vm);
	}
	{
		struct migrate_virtio_blk vb = { .index = 0 };

		virtio_mmio_save(w->virtio[0], &vb.st);
		rc = rc ? rc : migrate_write_virtio_blk(wr, &vb);
	}
	rc = rc ? rc : migrate_write_console(wr, "tail of output\n", 15);
	rc = rc ? rc : migrate_write_runstate(wr, w->runstate);
	rc = rc ? rc : migrate_write_end(wr);
	if (rc)
		snprintf(err, errlen, "%s", migrate_writer_error(wr));
	migrate_writer_free(wr);
	free(ss);
	return rc;
}

size_t world_stream(struct world *w, uint8_t **out,
		    struct migrate_ram_stats *stats)
{
	int fd = memfd_create("world-stream", 0);
	char err[256];
	off_t len;

	if (fd < 0)
		abort();
	if (world_write(w, fd, stats, err, sizeof(err))) {
		fprintf(stderr, "world_stream: %s\n", err);
		abort();
	}
	len = lseek(fd, 0, SEEK_END);
	*out = malloc((size_t)len);
	if (!*out || pread(fd, *out, (size_t)len, 0) != len)
		abort();
	close(fd);
	return (size_t)len;
}
