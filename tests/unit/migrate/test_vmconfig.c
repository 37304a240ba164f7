/*
 * The configuration section of a real VM (core/migrate/vmconfig.c,
 * docs/MIGRATION.md, "config"): boot RAM and hot-added memslots as
 * vm_memslots() reports them, the vCPU count, the CPUID signature and
 * the drives; two VMs of one shape match, and a hot-added slot on one
 * side only, or a drive of another size, is named.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dev/blk.h"
#include "guestmem.h"
#include "migrate.h"
#include "mmu_rcu.h"
#include "vm.h"
#include "x86.h"

static const char *kernel_path;

static struct vm *make_vm_drives(unsigned int nr_vcpus, void **kernel,
				 const struct blk_drive_config *drives,
				 unsigned int nr_drives)
{
	struct vm_config cfg = { .ram_size = 16ULL << 20,
				 .nr_vcpus = nr_vcpus,
				 .console_fd = -1,
				 .drives = drives,
				 .nr_drives = nr_drives };
	struct stat st;
	char err[256];
	struct vm *vm;
	int fd = open(kernel_path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	*kernel = malloc((size_t)st.st_size);
	assert_int_equal(read(fd, *kernel, (size_t)st.st_size), st.st_size);
	close(fd);
	cfg.kernel = *kernel;
	cfg.kernel_len = (size_t)st.st_size;
	vm = vm_create(&cfg, err, sizeof(err));
	if (!vm)
		fail_msg("vm_create: %s", err);
	return vm;
}

static struct vm *make_vm(unsigned int nr_vcpus, void **kernel)
{
	return make_vm_drives(nr_vcpus, kernel, NULL, 0);
}

/* An image of size bytes in a temporary file: its path in d->file. */
static void make_drive(struct blk_drive_config *d, unsigned int index,
		       uint64_t size, bool readonly)
{
	char err[128];
	int fd;

	snprintf(d->file, sizeof(d->file), "/tmp/mmud-vmconfig-XXXXXX");
	fd = mkstemp(d->file);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	{
		char spec[BLK_PATH_MAX + 32];

		snprintf(spec, sizeof(spec), "file=%s%s", d->file,
			 readonly ? ",readonly=on" : "");
		if (blk_drive_parse(spec, index, d, err, sizeof(err)))
			fail_msg("blk_drive_parse: %s", err);
	}
}

/* Each drive's size and flags, in order; another size is named with
 * the drive. */
static void test_config_of_a_vm_with_drives(void **state)
{
	struct migrate_config *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct blk_drive_config *d = calloc(4, sizeof(*d));
	void *ka, *kb;
	struct vm *va, *vb;
	char err[256];

	(void)state;
	make_drive(&d[0], 0, 1ULL << 20, false);
	make_drive(&d[1], 1, 64ULL << 10, true);
	make_drive(&d[2], 0, 1ULL << 20, false);
	make_drive(&d[3], 1, 128ULL << 10, true);
	va = make_vm_drives(1, &ka, d, 2);
	vb = make_vm_drives(1, &kb, d + 2, 2);
	assert_int_equal(migrate_config_from_vm(va, a), 0);
	assert_int_equal(a->nr_drives, 2);
	assert_int_equal(a->drives[0].size, 1ULL << 20);
	assert_int_equal(a->drives[0].flags, 0);
	assert_string_equal(a->drives[0].id, "virtio0");
	assert_int_equal(a->drives[1].size, 64ULL << 10);
	assert_int_equal(a->drives[1].flags, MIGRATE_DRIVE_READONLY);
	assert_int_equal(migrate_config_from_vm(vb, b), 0);
	assert_int_equal(migrate_config_match(b, a, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "drive 1 ('virtio1'): the stream's image is "
				 "65536 bytes, this VM's 131072");
	b->drives[1].size = a->drives[1].size;
	if (migrate_config_match(b, a, err, sizeof(err)))
		fail_msg("same drives, refused: %s", err);
	vm_destroy(va);
	vm_destroy(vb);
	for (unsigned int i = 0; i < 4; i++)
		unlink(d[i].file);
	free(ka);
	free(kb);
	free(a);
	free(b);
	free(d);
}

static void test_config_of_a_vm(void **state)
{
	struct migrate_config *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	static const struct x86_env env;
	struct x86_cpu *cpu;
	void *ka, *kb;
	struct vm *va, *vb;
	uint32_t slot;
	char err[256];

	(void)state;
	va = make_vm(2, &ka);
	vb = make_vm(2, &kb);
	assert_int_equal(migrate_config_from_vm(va, a), 0);
	assert_int_equal(a->nr_vcpus, 2);
	assert_int_equal(a->ram_size, 16ULL << 20);
	assert_int_equal(a->nr_slots, 1);
	assert_int_equal(a->slots[0].gpa, 0);
	assert_int_equal(a->slots[0].size, 16ULL << 20);
	cpu = x86_cpu_new(1, 2, &env, NULL);
	assert_int_equal(a->cpuid_sig, x86_cpuid_signature(cpu));
	x86_cpu_free(cpu);

	/* A hot-added read-only slot is in the configuration. */
	if (guestmem_add(vm_guestmem(va), 1ULL << 32, 2ULL << 20, true, false,
			 &slot, err, sizeof(err)))
		fail_msg("guestmem_add: %s", err);
	assert_int_equal(migrate_config_from_vm(va, a), 0);
	assert_int_equal(a->nr_slots, 2);
	assert_int_equal(a->slots[1].id, slot);
	assert_int_equal(a->slots[1].gpa, 1ULL << 32);
	assert_int_equal(a->slots[1].size, 2ULL << 20);
	assert_int_equal(a->slots[1].flags, MIGRATE_SLOT_READONLY);

	/* The destination without it refuses, naming the slot. */
	assert_int_equal(migrate_config_from_vm(vb, b), 0);
	assert_int_equal(migrate_config_match(b, a, err, sizeof(err)), -EINVAL);
	{
		char want[128];

		snprintf(want, sizeof(want),
			 "memslot %u (gpa 0x100000000 size 0x200000) is not "
			 "in this VM",
			 slot);
		assert_string_equal(err, want);
	}
	/* With it, the two match. */
	assert_int_equal(guestmem_add(vm_guestmem(vb), 1ULL << 32, 2ULL << 20,
				      true, false, &slot, err, sizeof(err)),
			 0);
	assert_int_equal(migrate_config_from_vm(vb, b), 0);
	if (migrate_config_match(b, a, err, sizeof(err)))
		fail_msg("same shape, refused: %s", err);
	vm_destroy(va);
	vm_destroy(vb);
	free(ka);
	free(kb);
	free(a);
	free(b);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_of_a_vm),
		cmocka_unit_test(test_config_of_a_vm_with_drives),
	};

	if (argc != 2) {
		fprintf(stderr, "usage: %s GUEST.elf\n", argv[0]);
		return 2;
	}
	kernel_path = argv[1];
	mmu_rcu_register_thread();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
