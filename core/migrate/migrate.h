/*
 * core/migrate: the migration stream (docs/MIGRATION.md). A writer that
 * emits it over a file descriptor, a reader that parses it from a file
 * descriptor or a buffer without trusting any length or count, and the
 * encoders and decoders of what it carries: the configuration the
 * destination checks first (its drives included), RAM pages (zero pages
 * as markers), vCPU state, COM1, each drive's virtio-mmio transport and
 * console bytes. No threads, no event loop and no policy: the daemon
 * decides what to send when (precopy passes, dirty log, switchover) and
 * drives these from its migration thread.
 *
 * Errors: every function that can fail returns 0 or a negative errno
 * and leaves a message in the writer's or reader's err (migrate_*_error)
 * naming the section and the field: "RAM section 12: page index 70000
 * outside slot 1 (4096 pages)".
 */
#ifndef MMUD_MIGRATE_H
#define MMUD_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "dev.h"
#include "dev/ioapic.h"
#include "dev/lapic.h"
#include "dev/virtio.h"

struct x86_cpu;
struct dev_serial;
struct dev_serial_state;
struct dev_lapic;
struct dev_ioapic;
struct x86_kvmclock;

#define MIGRATE_MAGIC "MMUDMIG\n" /* 8 bytes */
#define MIGRATE_VERSION 5u

/*
 * Section types (docs/MIGRATION.md, "Sections").
 *
 * How a device adds its state (docs/MIGRATION.md, "Extending the
 * stream"), e.g. a virtio-mmio block device:
 * 1. The next number here (MIGRATE_SEC_..., never reusing one), its
 *    name in migrate_sec_name() and the largest payload it may have in
 *    sec_bound() (stream.c): the reader refuses a longer one before it
 *    reads it. Bump MIGRATE_VERSION: a reader refuses types it does not
 *    know, so both ends must have the section.
 * 2. A struct of the state here, an encoder migrate_write_<dev>() and a
 *    checked decoder migrate_parse_<dev>() in sections.c, built with
 *    its cursor helpers (w32/r32...): every count and index bounded,
 *    a short or long payload refused, the field named in the error.
 *    Loading into the device (the device's own *_load(), which checks
 *    values against the device: queue sizes, ring addresses inside
 *    guest RAM) changes nothing when it refuses.
 * 3. The source (daemon/migration.c, switchover()) writes it with the
 *    vCPUs held, after the vCPU sections, once the device is quiet: a
 *    block device completes its requests in flight first, but for those
 *    it holds for the VM's cont, whose heads its section carries; the
 *    pages its completions wrote are in the dirty log (they go in the
 *    last RAM pass, which comes after).
 * 4. The destination (daemon/incoming.c's loop, and migrate_load() for
 *    the unit tests and the fuzzer) takes it exactly once, and refuses a
 *    stream that lacks it at the end marker when it has the device, or
 *    has it when it has not. What must match before any page is
 *    stored (a drive's count or size) belongs in the configuration
 *    (struct migrate_config, migrate_config_match()).
 * 5. tests/unit/migrate builds streams section by section: the new one
 *    truncated, flipped and twice; a corpus entry for
 *    tests/fuzz/fuzz_migrate.c.
 */
enum migrate_sec {
	MIGRATE_SEC_CONFIG = 1,
	MIGRATE_SEC_RAM = 2,
	MIGRATE_SEC_VCPU = 3,
	MIGRATE_SEC_SERIAL = 4,
	MIGRATE_SEC_CONSOLE = 5,
	MIGRATE_SEC_VCPU_IRQ = 6, /* version 2 */
	MIGRATE_SEC_VM_IRQ = 7, /* version 2 */
	MIGRATE_SEC_VIRTIO_BLK = 8, /* version 3: one per drive */
	MIGRATE_SEC_RUNSTATE = 9, /* version 5 */
	MIGRATE_SEC_END = 0xffff,
};

/* Bounds the reader enforces (and the writer keeps to). */
#define MIGRATE_MAX_VCPUS 64 /* VM_MAX_VCPUS */
#define MIGRATE_MAX_SLOTS 80 /* VM_MAX_MEMSLOTS */
#define MIGRATE_RAM_BATCH 256 /* pages per RAM section at most */
#define MIGRATE_MAX_CONSOLE 65536 /* console bytes per section */
#define MIGRATE_MAX_DRIVES 16 /* BLK_MAX_DRIVES */
/* The largest payload of any section: a RAM section of normal pages. */
#define MIGRATE_MAX_PAYLOAD (8 + MIGRATE_RAM_BATCH * (9 + PAGE_SIZE))

/* ---- the configuration ------------------------------------------------ */

#define MIGRATE_SLOT_READONLY (1u << 0)

struct migrate_slot {
	uint32_t id;
	uint32_t flags; /* MIGRATE_SLOT_* */
	gpa_t gpa;
	uint64_t size; /* bytes, a multiple of PAGE_SIZE */
};

#define MIGRATE_DRIVE_READONLY (1u << 0)
#define MIGRATE_DRIVE_DISCARD (1u << 1)

/* A drive (version 3): what its virtio-blk device shows the guest and
 * the destination's must show too (docs/MIGRATION.md, "config"). */
struct migrate_drive {
	uint64_t size; /* the image's bytes */
	uint32_t flags; /* MIGRATE_DRIVE_* */
	/* Not in the stream: this VM's name of the drive, for messages
	 * (a parsed configuration leaves it empty). */
	char id[32];
};

struct migrate_config {
	uint32_t nr_vcpus;
	uint64_t ram_size; /* boot RAM */
	uint64_t cpuid_sig; /* x86_cpuid_signature() */
	uint32_t nr_slots;
	struct migrate_slot slots[MIGRATE_MAX_SLOTS]; /* sorted by gpa */
	uint32_t nr_drives; /* drive i is virtio-mmio device i */
	struct migrate_drive drives[MIGRATE_MAX_DRIVES];
};

/*
 * Whether a source's configuration (got) can load into this one (want):
 * 0, or -EINVAL with the first mismatch named in err ("vCPU count: the
 * stream has 2, this VM has 4").
 */
int migrate_config_match(const struct migrate_config *want,
			 const struct migrate_config *got, char *err,
			 size_t errlen);

struct vm;
/* The configuration of a VM: its vCPU count, boot RAM, every memslot
 * (boot and hot-added, from vm_memslots()), the CPUID signature of its
 * vCPUs and its drives (vm_blk()). 0, -ENOMEM, or -E2BIG (more slots
 * than a stream holds). */
int migrate_config_from_vm(struct vm *vm, struct migrate_config *cfg);

/* ---- vCPU state ------------------------------------------------------- */

/* One vCPU's state as x86.h's accessors give it (x86_get_regs, _sregs,
 * _fpu, _misc). struct x86_misc_state is in x86.h. */
struct migrate_vcpu {
	uint32_t index;
	uint64_t gpr[16], rip, rflags;
	struct {
		uint16_t sel;
		uint64_t base;
		uint32_t limit, attr;
	} seg[8]; /* es cs ss ds fs gs ldtr tr */
	uint64_t gdt_base, idt_base;
	uint16_t gdt_limit, idt_limit;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer;
	uint8_t fxsave[512];
	uint64_t star, lstar, cstar, sfmask, kernel_gs_base;
	uint64_t pat, tsc_aux, apic_base, misc_enable;
	uint64_t guest_tsc;
	uint8_t ev_pending, ev_vector, ev_kind, ev_has_error;
	uint32_t ev_error;
	uint64_t ev_return_rip, ev_cr2;
	int16_t delivering;
	uint8_t int_shadow, nmi_latched, nmi_blocked, halted;
};

/* From a stopped CPU: 0, or -EBUSY (x86_get_misc()). */
int migrate_vcpu_save(struct x86_cpu *cpu, uint32_t index,
		      struct migrate_vcpu *out);
/* Into a CPU: 0, or -EINVAL with the register named in err and the CPU
 * unchanged (x86_load_state()). */
int migrate_vcpu_load(struct x86_cpu *cpu, const struct migrate_vcpu *in,
		      char *err, size_t errlen);

/* ---- interrupt and time state (version 2) --------------------------- */

/*
 * One vCPU's interrupt and time state (docs/MIGRATION.md, "vCPU
 * interrupt state"): its local APIC (dev_lapic_save(): registers,
 * IRR/ISR/TMR, the timer as the time left, x2APIC mode in the base,
 * the wait for a SIPI), its kvmclock MSRs and the debug registers. The
 * INTR line is not carried: the vCPU layer derives it from the APIC
 * whenever the vCPU runs.
 */
struct migrate_vcpu_irq {
	uint32_t index;
	struct dev_lapic_saved lapic;
	uint64_t kvm_system_time, kvm_wall_clock;
	uint32_t kvm_time_version, kvm_wall_version;
	uint8_t kvm_time_written;
	uint64_t dr[4], dr6, dr7;
	/* The vCPU layer's INIT state (vcpu_wait_for_sipi()): stopped,
	 * waiting for a SIPI. The caller fills and applies it (the daemon:
	 * vm_vcpu_info(), vm_vcpu_raise_init()); the save leaves it 0. */
	uint8_t vcpu_wait_sipi;
};

/* From a parked vCPU's CPU, APIC and kvmclock, at host time now_ns
 * (CLOCK_MONOTONIC). */
void migrate_vcpu_irq_save(struct x86_cpu *cpu, struct dev_lapic *lapic,
			   const struct x86_kvmclock *kc, uint32_t index,
			   uint64_t now_ns, struct migrate_vcpu_irq *out);
/* Into them: 0, or -EINVAL with the field named in err and all three
 * unchanged. */
int migrate_vcpu_irq_load(struct x86_cpu *cpu, struct dev_lapic *lapic,
			  struct x86_kvmclock *kc,
			  const struct migrate_vcpu_irq *in, uint64_t now_ns,
			  char *err, size_t errlen);

/* The VM-wide interrupt state: the IOAPIC and COM1's interrupt latches
 * (docs/MIGRATION.md, "VM interrupt state"). */
struct migrate_vm_irq {
	struct dev_ioapic_state ioapic;
	struct dev_serial_irq_state com1;
};
void migrate_vm_irq_save(struct dev_ioapic *io, struct dev_serial *com1,
			 struct migrate_vm_irq *out);
/* 0, or -EINVAL with the field named in err and both unchanged. */
int migrate_vm_irq_load(struct dev_ioapic *io, struct dev_serial *com1,
			const struct migrate_vm_irq *in, char *err,
			size_t errlen);

/* ---- virtio-blk drives (version 3) ---------------------------------- */

/*
 * One drive's device state (docs/MIGRATION.md, "virtio-blk"): its
 * virtio-mmio transport's (virtio_mmio_save(), taken once
 * virtio_blk_quiesce() left it without a request in flight but those
 * held for a retry, whose heads it carries: version 4). The drive
 * itself is configuration (struct migrate_drive): the destination opens
 * the same image.
 */
struct migrate_virtio_blk {
	uint32_t index; /* the drive, < nr_drives */
	struct virtio_mmio_state st;
};

/* ---- the source's run state (version 5) ------------------------------ */

/*
 * The run state the source was in when its switchover began
 * (docs/MIGRATION.md, "run state"), as QEMU's global state carries it:
 * the destination of a running source runs (or pauses, with --paused),
 * any other ends in the source's state. QEMU's RunState names, those a
 * source can be in; never inmigrate or finish-migrate.
 */
enum migrate_runstate {
	MIGRATE_RS_RUNNING,
	MIGRATE_RS_PAUSED,
	MIGRATE_RS_IO_ERROR,
	MIGRATE_RS_PRELAUNCH,
	MIGRATE_RS_POSTMIGRATE,
	MIGRATE_RS_SHUTDOWN,
	MIGRATE_RS_GUEST_PANICKED,
	MIGRATE_RS_INTERNAL_ERROR,
	MIGRATE_RS_COUNT,
};

/* QEMU's name ("io-error"); NULL for a value out of range. */
const char *migrate_runstate_name(enum migrate_runstate rs);
/* The state of a name: 0, or -EINVAL for any other string. */
int migrate_runstate_parse(const char *name, size_t len,
			   enum migrate_runstate *out);

/* ---- the writer ------------------------------------------------------- */

struct migrate_writer;

/* NULL: -ENOMEM. The fd stays the caller's (not closed). */
struct migrate_writer *migrate_writer_new(int fd);
void migrate_writer_free(struct migrate_writer *w);
const char *migrate_writer_error(const struct migrate_writer *w);
/* Bytes handed to the fd so far (header and sections). */
uint64_t migrate_writer_bytes(const struct migrate_writer *w);

/* RAM counters, QEMU's query-migrate names (docs/MIGRATION.md). */
struct migrate_ram_stats {
	uint64_t duplicate; /* zero pages sent as markers */
	uint64_t normal; /* pages sent whole */
};

int migrate_write_header(struct migrate_writer *w);
int migrate_write_config(struct migrate_writer *w,
			 const struct migrate_config *cfg);
/*
 * Pages of one memslot: page indexes idx[0..n) within the slot (any
 * order, each < size / PAGE_SIZE), read from the slot's host mapping at
 * hva while the guest may still write them (each page is copied once,
 * then checked for zeros and sent). Several sections when n >
 * MIGRATE_RAM_BATCH. stats (may be NULL) adds up what was sent.
 */
int migrate_write_ram(struct migrate_writer *w, uint32_t slot, hva_t hva,
		      uint64_t size, const uint64_t *idx, size_t n,
		      struct migrate_ram_stats *stats);
/*
 * The same for a slot that is a file (a memfd, or any file that reports
 * its holes with SEEK_DATA/SEEK_HOLE) mapped whole at hva from offset
 * 0: pages in a hole are sent as zero pages without being read, so a
 * slot's untouched memory is neither copied nor allocated by the send.
 * The caller starts each pass over a slot with a new migrate_holes
 * ({ .fd = fd }, -1: read every page), which keeps what lseek said
 * across calls: a hole seen in one pass may be written before the next.
 */
struct migrate_holes {
	int fd;
	uint64_t lo, hi; /* bytes [lo, hi) are known to be ... */
	bool hole; /* ... a hole, or data */
};
int migrate_write_ram_fd(struct migrate_writer *w, uint32_t slot, hva_t hva,
			 struct migrate_holes *holes, uint64_t size,
			 const uint64_t *idx, size_t n,
			 struct migrate_ram_stats *stats);
int migrate_write_vcpu(struct migrate_writer *w, const struct migrate_vcpu *v);
int migrate_write_serial(struct migrate_writer *w,
			 const struct dev_serial_state *st);
/* After each vCPU's section; the VM's once, after COM1's. */
int migrate_write_vcpu_irq(struct migrate_writer *w,
			   const struct migrate_vcpu_irq *v);
int migrate_write_vm_irq(struct migrate_writer *w,
			 const struct migrate_vm_irq *v);
/* Each drive's, after the VM's interrupt state. */
int migrate_write_virtio_blk(struct migrate_writer *w,
			     const struct migrate_virtio_blk *v);
/* The source's run state: once, the last section before the end. */
int migrate_write_runstate(struct migrate_writer *w, enum migrate_runstate rs);
/* Console output the source had not yet written out (len <=
 * MIGRATE_MAX_CONSOLE per call; the destination writes it first). */
int migrate_write_console(struct migrate_writer *w, const void *buf,
			  size_t len);
/* The end marker, then everything buffered goes out. */
int migrate_write_end(struct migrate_writer *w);
/* Sends what is buffered (also done whenever the buffer fills). */
int migrate_writer_flush(struct migrate_writer *w);

/* ---- the reader ------------------------------------------------------- */

struct migrate_reader;

/* NULL: -ENOMEM. From a file descriptor (not closed), or from a buffer
 * the caller keeps alive. */
struct migrate_reader *migrate_reader_new(int fd);
struct migrate_reader *migrate_reader_new_mem(const void *buf, size_t len);
void migrate_reader_free(struct migrate_reader *r);
const char *migrate_reader_error(const struct migrate_reader *r);
uint64_t migrate_reader_bytes(const struct migrate_reader *r);

/* Magic, version and flags: 0, or -EPROTO / -EIO with the reason. */
int migrate_read_header(struct migrate_reader *r);

/*
 * One section: its type, and its payload (len bytes at *data, owned by
 * the reader, valid until the next call) after its length was checked
 * against its type's bound and its checksum verified. After the end
 * marker the stream must end: trailing bytes are an error. 0 or
 * -EPROTO (malformed), -EIO (read failed; errno in the message).
 */
int migrate_read_section(struct migrate_reader *r, uint16_t *type,
			 const uint8_t **data, uint32_t *len);

/* The decoders of section payloads: 0, or -EPROTO with the field named
 * in the reader's error. */
int migrate_parse_config(struct migrate_reader *r, const uint8_t *p,
			 uint32_t len, struct migrate_config *cfg);
int migrate_parse_vcpu(struct migrate_reader *r, const uint8_t *p, uint32_t len,
		       struct migrate_vcpu *v);
int migrate_parse_serial(struct migrate_reader *r, const uint8_t *p,
			 uint32_t len, struct dev_serial_state *st);
int migrate_parse_vcpu_irq(struct migrate_reader *r, const uint8_t *p,
			   uint32_t len, struct migrate_vcpu_irq *v);
int migrate_parse_vm_irq(struct migrate_reader *r, const uint8_t *p,
			 uint32_t len, struct migrate_vm_irq *v);
int migrate_parse_virtio_blk(struct migrate_reader *r, const uint8_t *p,
			     uint32_t len, struct migrate_virtio_blk *v);
int migrate_parse_runstate(struct migrate_reader *r, const uint8_t *p,
			   uint32_t len, enum migrate_runstate *rs);

/* Where a RAM section's pages go: the destination's memslots. */
struct migrate_ram_target {
	uint32_t id;
	hva_t hva; /* the slot's host mapping */
	uint64_t size;
	/* The file mapped whole at hva from offset 0 (a memfd), when
	 * use_fd: pages are written through it (pwritev). */
	bool use_fd;
	int fd;
};
/* Stores a RAM section's pages into the slot of the same id, after
 * checking every page index of it against the slot's size: a section
 * that names an unknown slot or an index outside it writes nothing.
 * Zero pages of a shared memfd mapping are punched out (MADV_REMOVE)
 * rather than cleared; with use_fd, normal pages are written to the
 * file a run of consecutive pages at a time. */
int migrate_load_ram(struct migrate_reader *r, const uint8_t *p, uint32_t len,
		     const struct migrate_ram_target *slots, size_t nr_slots,
		     struct migrate_ram_stats *stats);

/* ---- loading a whole stream ------------------------------------------- */

/* What a destination loads into. */
struct migrate_dest {
	const struct migrate_config *config; /* its own, to match */
	const struct migrate_ram_target *slots;
	size_t nr_slots;
	struct x86_cpu **cpus; /* config->nr_vcpus of them */
	struct dev_serial *serial; /* NULL: a SERIAL section is an error */
	/* Console bytes of the source (NULL: dropped). */
	void (*console)(void *ctx, const void *buf, size_t len);
	void *console_ctx;
	/* Each vCPU's APIC and kvmclock MSRs (config->nr_vcpus of each),
	 * and the IOAPIC; the host time the APIC timers resume from. */
	struct dev_lapic **lapics;
	struct x86_kvmclock **kvmclocks;
	struct dev_ioapic *ioapic;
	uint64_t now_ns;
	/* Each drive's transport (config->nr_drives of them): its
	 * virtio-blk section loads there (virtio_mmio_load()). */
	struct virtio_mmio **virtio;
	/* Where the source's run state goes (NULL: not kept; the stream
	 * must have it all the same). */
	enum migrate_runstate *runstate;
};

/*
 * Reads a whole stream into dest: header, the configuration first (a
 * mismatch refused before any page is written), RAM, then vCPU and
 * device state, the end marker, and nothing after it. Every vCPU must
 * appear exactly once. 0 or -errno with the reason in the reader's
 * error. A failure may leave RAM partly written: the destination is a
 * fresh VM that exits (docs/MIGRATION.md, "Failure").
 */
int migrate_load(struct migrate_reader *r, const struct migrate_dest *dest,
		 struct migrate_ram_stats *stats);

/* ---- checksums -------------------------------------------------------- */

/* CRC-32C (Castagnoli, reflected 0x82F63B78), as iSCSI and ext4 use it:
 * crc = migrate_crc32c(0, buf, len) for a whole buffer, or chained. */
uint32_t migrate_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
