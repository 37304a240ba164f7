/*
 * The configuration section of a VM (docs/MIGRATION.md, "config"), from
 * core/vm.h's accessors: the source sends it, the destination matches
 * the stream's against its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev/virtio_blk.h"
#include "migrate.h"
#include "vm.h"
#include "x86.h"

static const struct x86_env no_env;

/* Every VM mmud can run fits in a stream. */
_Static_assert(MIGRATE_MAX_VCPUS >= VM_MAX_VCPUS, "vCPUs");
_Static_assert(MIGRATE_MAX_SLOTS >= VM_MAX_MEMSLOTS, "memslots");
_Static_assert(MIGRATE_MAX_DRIVES >= BLK_MAX_DRIVES, "drives");

int migrate_config_from_vm(struct vm *vm, struct migrate_config *cfg)
{
	struct vm_memslot_info *info = calloc(VM_MAX_MEMSLOTS, sizeof(*info));
	struct x86_cpu *cpu;
	unsigned int n;

	if (!info)
		return -ENOMEM;
	memset(cfg, 0, sizeof(*cfg));
	cfg->nr_vcpus = vm_nr_vcpus(vm);
	cfg->ram_size = vm_ram_size(vm);
	/* What CPUID reports depends on nothing but the vCPU count (and
	 * the vCPU's own index, which the signature leaves out): a CPU of
	 * the same shape, never run, gives the signature. */
	cpu = x86_cpu_new(0, cfg->nr_vcpus, &no_env, NULL);
	if (!cpu) {
		free(info);
		return -ENOMEM;
	}
	cfg->cpuid_sig = x86_cpuid_signature(cpu);
	x86_cpu_free(cpu);
	n = vm_memslots(vm, info, VM_MAX_MEMSLOTS);
	if (n > VM_MAX_MEMSLOTS) {
		free(info);
		return -E2BIG;
	}
	cfg->nr_slots = n;
	for (unsigned int i = 0; i < n; i++)
		cfg->slots[i] = (struct migrate_slot){
			.id = info[i].slot,
			.flags = info[i].readonly ? MIGRATE_SLOT_READONLY : 0,
			.gpa = info[i].gpa,
			.size = info[i].size,
		};
	free(info);
	for (struct virtio_blk *b; cfg->nr_drives < MIGRATE_MAX_DRIVES &&
				   (b = vm_blk(vm, cfg->nr_drives));) {
		struct migrate_drive *d = &cfg->drives[cfg->nr_drives++];
		struct virtio_blk_info bi;

		virtio_blk_info(b, &bi);
		d->size = bi.size;
		d->flags = (bi.cfg->readonly ? MIGRATE_DRIVE_READONLY : 0) |
			   (bi.cfg->discard ? MIGRATE_DRIVE_DISCARD : 0);
		snprintf(d->id, sizeof(d->id), "%s", bi.cfg->id);
	}
	return 0;
}
