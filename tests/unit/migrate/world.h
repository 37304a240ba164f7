/*
 * A small VM's worth of migration endpoints for the migrate tests and the
 * stream fuzz target (tests/fuzz/fuzz_migrate.c): two memslots, vCPUs,
 * COM1 and one drive's virtio-mmio transport, with a configuration that
 * matches itself, and a full valid stream written from it.
 */
#ifndef MMUD_TEST_MIGRATE_WORLD_H
#define MMUD_TEST_MIGRATE_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include "dev.h"
#include "dev/ioapic.h"
#include "dev/lapic.h"
#include "migrate.h"
#include "vcpu/x86/kvmclock.h"
#include "x86.h"

#define WORLD_SLOT0_PAGES 32 /* id 0 at gpa 0: boot RAM */
#define WORLD_SLOT1_PAGES 8 /* id 5 at 1 GiB: a hot-added slot */
#define WORLD_SLOT1_GPA (1ULL << 30)
#define WORLD_MAX_VCPUS 4
/* The drive: its image's size, and its transport's queues (the device
 * behind it does nothing: the stream carries the transport). */
#define WORLD_DRIVE_SIZE (1ULL << 20)
#define WORLD_DRIVE_QUEUES 2
/* The host time the world saves and loads APIC timers at. */
#define WORLD_NOW_NS 1000000000ULL

struct world {
	uint8_t *mem[2];
	struct migrate_config cfg;
	struct migrate_ram_target slots[2];
	struct x86_cpu *cpus[WORLD_MAX_VCPUS];
	unsigned int nr_vcpus;
	struct dev_serial *serial;
	/* Interrupt and time state (stream version 2). */
	struct dev_lapic *lapics[WORLD_MAX_VCPUS];
	struct x86_kvmclock kc[WORLD_MAX_VCPUS];
	struct x86_kvmclock *kcs[WORLD_MAX_VCPUS];
	struct dev_ioapic *ioapic;
	/* Drive 0's transport (stream version 3): its rings must lie in
	 * slot 0. */
	struct virtio_mmio *virtio[1];
	/* The heads the drive holds for a retry per queue (version 4):
	 * what its transport saves, and what a stream loads into it. */
	uint16_t drive_held[WORLD_DRIVE_QUEUES][VIRTQ_MAX_SIZE];
	unsigned int drive_nr_held[WORLD_DRIVE_QUEUES];
	char console[1024];
	size_t nconsole;
	/* The run state a stream of this world carries (version 5;
	 * running after world_init()), and the one a stream loaded
	 * (MIGRATE_RS_COUNT until one has). */
	enum migrate_runstate runstate, loaded_runstate;
	struct migrate_dest dest;
};

/* Zeroed memory, vCPUs in the boot state, COM1 at reset. */
void world_init(struct world *w, unsigned int nr_vcpus);
void world_fini(struct world *w);
/* Gives the source world something to carry: a few pages of pattern
 * (the rest zero), distinct register, MSR and event state on every vCPU,
 * COM1 registers and input queued, APIC registers with IRR/ISR bits
 * and an armed periodic timer, kvmclock MSRs, debug registers, IOAPIC
 * entries, COM1's interrupt latches, and a drive driven to DRIVER_OK
 * with queue 0 ready in slot 0 and 7 requests done. */
void world_fill(struct world *w);
/* The drive popped n more chains of queue and holds them (heads), as a
 * block device holds requests an error with werror=stop kept back. */
void world_hold(struct world *w, unsigned int queue, const uint16_t *heads,
		unsigned int n);
/* A whole stream of w (header, config, every page of both slots, vCPUs
 * each followed by its interrupt state, COM1, the VM's interrupt state,
 * the drive's virtio-blk section, a console section, the run state, end
 * marker) in a
 * malloc'd buffer; stats may
 * be NULL. Aborts on failure. */
size_t world_stream(struct world *w, uint8_t **out,
		    struct migrate_ram_stats *stats);

/* The same stream to fd: 0 or -errno with the writer's message. */
int world_write(struct world *w, int fd, struct migrate_ram_stats *stats,
		char *err, size_t errlen);

#endif
