/*
 * Internals of core/migrate shared by stream.c (framing) and sections.c
 * (what the sections carry): the writer and reader, the little-endian
 * field helpers and the fixed payload sizes (docs/MIGRATION.md).
 */
#ifndef MMUD_MIGRATE_INT_H
#define MMUD_MIGRATE_INT_H

#include <pthread.h>
#include <string.h>

#include "dev.h"
#include "migrate.h"

#define MIGRATE_HEADER_LEN 16
#define MIGRATE_CONFIG_FIXED 24 /* nr_vcpus, ram_size, cpuid_sig, nr */
#define MIGRATE_SLOT_LEN 24 /* id, flags, gpa, size */
#define MIGRATE_DRIVE_LEN 12 /* size, flags (version 3) */
#define MIGRATE_CONFIG_MAX_LEN                                             \
	(MIGRATE_CONFIG_FIXED + MIGRATE_MAX_SLOTS * MIGRATE_SLOT_LEN + 4 + \
	 MIGRATE_MAX_DRIVES * MIGRATE_DRIVE_LEN)
/* index; gpr, rip, rflags; 8 segments; gdt, idt; 6 CRs; FXSAVE; 9 MSRs;
 * TSC; event (4 bytes, error, rip, cr2); delivering; 4 flag bytes. */
#define MIGRATE_VCPU_LEN                                                      \
	(4 + 18 * 8 + 8 * 18 + 2 * 10 + 6 * 8 + 512 + 9 * 8 + 8 + 4 + 4 + 8 + \
	 8 + 2 + 4)
#define MIGRATE_SERIAL_FIXED 11 /* 5 registers, divisor, rx_len */
#define MIGRATE_SERIAL_MAX_LEN (MIGRATE_SERIAL_FIXED + DEV_SERIAL_RX_SIZE)
/* index; APIC: base, 9 registers, 6 LVTs, IRR/ISR/TMR, timer initial
 * and divide, armed, remaining, TSC deadline, wait, SIPIs, vector;
 * kvmclock: 2 MSRs, 2 versions, written; DR0-3, DR6, DR7; the vCPU
 * waits for a SIPI. */
#define MIGRATE_VCPU_IRQ_LEN                                              \
	(4 + 8 + 9 * 4 + 6 * 4 + 24 * 4 + 2 * 4 + 1 + 8 + 8 + 1 + 4 + 4 + \
	 2 * 8 + 2 * 4 + 1 + 6 * 8 + 1)
/* IOAPIC id, arb, ioregsel, pin levels, 24 entries; COM1's 2 latches. */
#define MIGRATE_VM_IRQ_LEN (3 + 4 + 24 * 8 + 2)
/* Drive index, queue count, status, 3 selectors, driver features,
 * config generation, isr; each queue: num, ready, 3 addresses, 3
 * indices, signalled_valid, the held count (version 4), then 2 bytes
 * per held head. */
#define MIGRATE_VIRTIO_BLK_FIXED (4 + 4 + 1 + 3 * 4 + 8 + 4 + 4)
#define MIGRATE_VIRTIO_QUEUE_LEN (4 + 1 + 3 * 8 + 3 * 2 + 1 + 2)
#define MIGRATE_VIRTIO_BLK_MAX_LEN  \
	(MIGRATE_VIRTIO_BLK_FIXED + \
	 VIRTIO_MMIO_MAX_QUEUES *   \
		 (MIGRATE_VIRTIO_QUEUE_LEN + 2 * VIRTQ_MAX_SIZE))
/* The longest run state name ("internal-error" has 14 bytes). */
#define MIGRATE_RUNSTATE_MAX_LEN 32
#define MIGRATE_RAM_ZERO 0
#define MIGRATE_RAM_PAGE 1

struct migrate_writer {
	int fd;
	int rc; /* sticky: the first error */
	uint8_t *buf; /* bytes not yet written */
	size_t len;
	uint8_t *sec; /* a section's payload being built */
	uint64_t bytes;
	char err[256];
};

struct migrate_reader {
	int fd; /* -1: from mem */
	bool from_mem;
	const uint8_t *mem;
	size_t mem_len, mem_pos;
	uint8_t *buf; /* fd: read-ahead [pos, len) */
	size_t pos, len;
	uint8_t *payload; /* fd: MIGRATE_MAX_PAYLOAD bytes */
	const uint8_t *cur; /* the current section's payload */
	uint64_t bytes;
	unsigned int nsec; /* sections begun, 1-based for messages */
	uint16_t type; /* of the current section */
	bool header_ok, ended;
	int rc; /* sticky */
	char err[256];
};

const char *migrate_sec_name(unsigned int type);
/* migrate_crc32c() without the SSE4.2 instruction, to test one against
 * the other. */
uint32_t migrate_crc32c_sw(uint32_t crc, const void *buf, size_t len);
int migrate_write_section(struct migrate_writer *w, uint16_t type,
			  const uint8_t *payload, uint32_t len);
int migrate_wfail(struct migrate_writer *w, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int migrate_rfail(struct migrate_reader *r, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static inline void migrate_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void migrate_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void migrate_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t migrate_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t migrate_get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t migrate_get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#endif
