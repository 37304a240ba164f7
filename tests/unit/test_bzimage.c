/*
 * Unit tests of core/bzimage.c through loader_load(): synthetic bzImages
 * (a setup header and a patterned protected-mode part) loaded into RAM
 * ranges backed by the test's own buffers. A good image must land where
 * Linux's 64-bit boot protocol says, with the zero page, e820 map,
 * command line, initrd, page tables, GDT and RSDP exactly as
 * docs/GUEST-ABI.md, "Platform v2 boot" lists them; every bad image must
 * be refused with -EINVAL, a message naming the problem and guest RAM
 * unchanged.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "acpi.h"
#include "bzimage.h"
#include "loader.h"

#define LOW_SIZE (64ULL << 20)
#define HIGH_SIZE (1ULL << 20)
#define SETUP_SECTS 3
#define SETUP_LEN ((SETUP_SECTS + 1) * 512)
#define PM_LEN 0x3000
#define IMG_LEN (SETUP_LEN + PM_LEN)
#define PREF 0x1000000ULL
#define INIT_SIZE 0x200000u
#define INITRD_LEN 0x5432

struct fixture {
	uint8_t *low, *high, *low_copy, *high_copy;
	struct loader_ram ram[2];
	struct loader_config cfg;
	uint8_t img[IMG_LEN];
	uint8_t initrd[INITRD_LEN];
	size_t len;
	struct loader_result res;
	char err[256];
};

static void p16(uint8_t *p, size_t off, uint16_t v)
{
	memcpy(p + off, &v, 2);
}

static void p32(uint8_t *p, size_t off, uint32_t v)
{
	memcpy(p + off, &v, 4);
}

static void p64(uint8_t *p, size_t off, uint64_t v)
{
	memcpy(p + off, &v, 8);
}

static uint32_t g32(const uint8_t *p, size_t off)
{
	uint32_t v;

	memcpy(&v, p + off, 4);
	return v;
}

static uint64_t g64(const uint8_t *p, size_t off)
{
	uint64_t v;

	memcpy(&v, p + off, 8);
	return v;
}

/* Debian's cloud kernel's header (DESIGN facts), scaled down. */
static void build_image(struct fixture *f)
{
	uint8_t *h = f->img;

	memset(h, 0, sizeof(f->img));
	h[BZ_SETUP_SECTS] = SETUP_SECTS;
	p32(h, BZ_SYSSIZE, PM_LEN / 16);
	p16(h, BZ_BOOT_FLAG, 0xaa55);
	h[BZ_JUMP] = 0xeb;
	h[BZ_JUMP + 1] = 0x66; /* the header ends at 0x268 */
	memcpy(h + BZ_HEADER, "HdrS", 4);
	p16(h, BZ_VERSION, 0x020f);
	h[BZ_LOADFLAGS] = 0x01;
	p32(h, BZ_CODE32_START, 0x100000);
	p32(h, BZ_INITRD_ADDR_MAX, 0x7fffffff);
	p32(h, BZ_KERNEL_ALIGNMENT, 0x200000);
	h[BZ_RELOCATABLE] = 1;
	h[BZ_RELOCATABLE + 1] = 21;
	h[BZ_XLOADFLAGS] = 0x7f;
	p32(h, BZ_CMDLINE_SIZE, 0x7ff);
	p64(h, BZ_PREF_ADDRESS, PREF);
	p32(h, BZ_INIT_SIZE, INIT_SIZE);
	p32(h, 0x264, 0x12345678); /* handover_offset: copied as is */
	for (size_t i = SETUP_LEN; i < IMG_LEN; i++)
		h[i] = (uint8_t)(i * 7 + 3);
	f->len = IMG_LEN;
	for (size_t i = 0; i < INITRD_LEN; i++)
		f->initrd[i] = (uint8_t)(i * 13 + 1);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->low = calloc(1, LOW_SIZE);
	f->high = calloc(1, HIGH_SIZE);
	f->low_copy = malloc(LOW_SIZE);
	f->high_copy = malloc(HIGH_SIZE);
	assert_true(f->low && f->high && f->low_copy && f->high_copy);
	/* Old contents the loader must not leave behind in its pages. */
	memset(f->low, 0xcc, LOW_SIZE);
	f->ram[0] = (struct loader_ram){ 0, LOW_SIZE, f->low };
	f->ram[1] = (struct loader_ram){ 1ULL << 32, HIGH_SIZE, f->high };
	f->cfg = (struct loader_config){
		.ram = f->ram,
		.nr_ram = 2,
		.nr_vcpus = 2,
		.cmdline = "console=ttyS0 panic=-1",
		.initrd = f->initrd,
		.initrd_len = INITRD_LEN,
	};
	build_image(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->low);
	free(f->high);
	free(f->low_copy);
	free(f->high_copy);
	free(f);
	return 0;
}

static int load(struct fixture *f)
{
	return loader_load(&f->cfg, f->img, f->len, &f->res, f->err,
			   sizeof(f->err));
}

/* Refused with -EINVAL, a message containing what, RAM untouched. */
static void expect_refusal(struct fixture *f, const char *what)
{
	int r;

	memcpy(f->low_copy, f->low, LOW_SIZE);
	memcpy(f->high_copy, f->high, HIGH_SIZE);
	r = load(f);
	if (r != -EINVAL || !strstr(f->err, what))
		fail_msg("want -EINVAL naming '%s'; got %d: '%s'", what, r,
			 f->err);
	assert_memory_equal(f->low, f->low_copy, LOW_SIZE);
	assert_memory_equal(f->high, f->high_copy, HIGH_SIZE);
}

static const uint8_t *zp(const struct fixture *f)
{
	return f->low + BZIMAGE_BOOT_PARAMS_GPA;
}

static void test_bzimage_good_lands_at_pref_address(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f), 0);
	assert_true(f->res.linux64);
	assert_int_equal(f->res.kernel_gpa, PREF);
	assert_int_equal(f->res.entry, PREF + 0x200);
	assert_int_equal(f->res.boot_params, BZIMAGE_BOOT_PARAMS_GPA);
	assert_memory_equal(f->low + PREF, f->img + SETUP_LEN, PM_LEN);
}

static void test_bzimage_zero_page_has_header_and_fields(void **state)
{
	struct fixture *f = *state;
	const uint8_t *z;

	assert_int_equal(load(f), 0);
	z = zp(f);
	/* The setup header is copied; the loader's fields then set. */
	assert_memory_equal(z + 0x1f1, f->img + 0x1f1,
			    BZ_TYPE_OF_LOADER - 0x1f1);
	assert_memory_equal(z + BZ_INITRD_ADDR_MAX, f->img + BZ_INITRD_ADDR_MAX,
			    0x268 - 0x22c);
	assert_int_equal(z[BZ_TYPE_OF_LOADER], 0xff);
	assert_int_equal(g32(z, BZ_CODE32_START), PREF);
	assert_int_equal(g32(z, BZ_CMD_LINE_PTR), BZIMAGE_CMDLINE_GPA);
	assert_string_equal((const char *)f->low + BZIMAGE_CMDLINE_GPA,
			    "console=ttyS0 panic=-1");
	assert_int_equal(g64(z, ZP_ACPI_RSDP_ADDR), ACPI_RSDP_GPA);
	assert_memory_equal(f->low + ACPI_RSDP_GPA, "RSD PTR ", 8);
	/* Nothing of the old contents past the header. */
	for (size_t i = 0x268; i < ZP_E820_TABLE; i++)
		if (i != ZP_E820_ENTRIES && z[i] != 0)
			fail_msg("zero page byte 0x%zx is 0x%02x", i, z[i]);
}

/* Only vCPU 0 can start (the others wait for a SIPI): the MADT of a
 * two-vCPU VM has one Processor Local APIC entry, for APIC ID 0. */
static void test_bzimage_madt_lists_only_vcpu0(void **state)
{
	struct fixture *f = *state;
	const uint8_t *rsdp = f->low + ACPI_RSDP_GPA, *xsdt, *madt;

	assert_int_equal(f->cfg.nr_vcpus, 2);
	assert_int_equal(load(f), 0);
	xsdt = f->low + g64(rsdp, 24);
	madt = f->low + g64(xsdt, 44);
	assert_memory_equal(madt, "APIC", 4);
	assert_int_equal(g32(madt, 4), 36 + 8 + 8 + 12);
	assert_int_equal(madt[44], 0); /* Processor Local APIC */
	assert_int_equal(madt[47], 0); /* APIC ID 0 */
	assert_int_equal(madt[52], 1); /* then the I/O APIC */
}

static void test_bzimage_initrd_high_aligned_above_kernel(void **state)
{
	struct fixture *f = *state;
	const uint8_t *z;
	uint32_t at;

	assert_int_equal(load(f), 0);
	z = zp(f);
	at = g32(z, BZ_RAMDISK_IMAGE);
	assert_int_equal(g32(z, BZ_RAMDISK_SIZE), INITRD_LEN);
	assert_int_equal(g32(z, ZP_EXT_RAMDISK_IMAGE), 0);
	assert_int_equal(g32(z, ZP_EXT_RAMDISK_SIZE), 0);
	assert_int_equal(at, f->res.initrd_gpa);
	assert_int_equal(at % 4096, 0);
	assert_true(at >= PREF + INIT_SIZE);
	/* As high as the low RAM range allows. */
	assert_true(at + INITRD_LEN <= LOW_SIZE);
	assert_true(at + INITRD_LEN + 4096 > LOW_SIZE);
	assert_memory_equal(f->low + at, f->initrd, INITRD_LEN);
}

static void test_bzimage_initrd_below_initrd_addr_max(void **state)
{
	struct fixture *f = *state;
	uint32_t at;

	p32(f->img, BZ_INITRD_ADDR_MAX, 0x1ffffff); /* 32 MiB - 1 */
	assert_int_equal(load(f), 0);
	at = g32(zp(f), BZ_RAMDISK_IMAGE);
	assert_true(at + INITRD_LEN <= 0x2000000);
	assert_true(at + INITRD_LEN + 4096 > 0x2000000);
}

static void test_bzimage_e820_matches_slots_and_reserves(void **state)
{
	static const struct {
		uint64_t addr, size;
		uint32_t type;
	} want[] = {
		{ 0, BZIMAGE_LOW_RESERVED_END, E820_RESERVED },
		{ BZIMAGE_LOW_RESERVED_END,
		  ACPI_RSDP_GPA - BZIMAGE_LOW_RESERVED_END, E820_RAM },
		{ ACPI_RSDP_GPA, 0x100000 - ACPI_RSDP_GPA, E820_RESERVED },
		{ 0x100000, LOW_SIZE - 0x100000, E820_RAM },
		{ 1ULL << 32, HIGH_SIZE, E820_RAM },
	};
	struct fixture *f = *state;
	const uint8_t *z;

	assert_int_equal(load(f), 0);
	z = zp(f);
	assert_int_equal(z[ZP_E820_ENTRIES], 5);
	for (unsigned int i = 0; i < 5; i++) {
		const uint8_t *e = z + ZP_E820_TABLE + 20 * i;

		if (g64(e, 0) != want[i].addr || g64(e, 8) != want[i].size ||
		    g32(e, 16) != want[i].type)
			fail_msg("e820[%u] = {0x%llx, 0x%llx, %u}", i,
				 (unsigned long long)g64(e, 0),
				 (unsigned long long)g64(e, 8), g32(e, 16));
	}
}

/* The identity map reaches the kernel, zero page, cmdline and initrd. */
static uint64_t translate(const struct fixture *f, uint64_t va)
{
	uint64_t e = g64(f->low, LOADER_PML4_GPA + 8 * ((va >> 39) & 511));

	assert_true(e & 1);
	e = g64(f->low, (e & ~0xfffULL) + 8 * ((va >> 30) & 511));
	assert_true(e & 1);
	e = g64(f->low, (e & ~0xfffULL) + 8 * ((va >> 21) & 511));
	assert_true((e & 0x83) == 0x83); /* present, writable, 2 MiB */
	return (e & ~0x1fffffULL) | (va & 0x1fffff);
}

static void test_bzimage_page_tables_and_gdt(void **state)
{
	struct fixture *f = *state;
	const uint64_t vas[] = { PREF,
				 PREF + INIT_SIZE - 1,
				 BZIMAGE_BOOT_PARAMS_GPA,
				 BZIMAGE_CMDLINE_GPA,
				 ACPI_RSDP_GPA,
				 LOW_SIZE - 1 };

	assert_int_equal(load(f), 0);
	for (unsigned int i = 0; i < sizeof(vas) / sizeof(vas[0]); i++)
		assert_int_equal(translate(f, vas[i]), vas[i]);
	assert_int_equal(g64(f->low, LOADER_GDT_GPA), 0);
	assert_int_equal(g64(f->low, LOADER_GDT_GPA + BZIMAGE_BOOT_CS),
			 LOADER_GDT_CODE64);
	assert_int_equal(g64(f->low, LOADER_GDT_GPA + BZIMAGE_BOOT_DS),
			 LOADER_GDT_DATA);
}

static void test_bzimage_relocates_when_pref_does_not_fit(void **state)
{
	struct fixture *f = *state;

	f->ram[0].size = 8ULL << 20;
	f->cfg.initrd_len = 0;
	assert_int_equal(load(f), 0);
	assert_int_equal(f->res.kernel_gpa, 0x200000);
	assert_int_equal(f->res.entry, 0x200200);
	assert_int_equal(f->res.initrd_gpa, 0);
	assert_int_equal(g32(zp(f), BZ_RAMDISK_IMAGE), 0);
}

static void test_bzimage_not_relocatable_refused_off_pref(void **state)
{
	struct fixture *f = *state;

	f->ram[0].size = 8ULL << 20;
	f->img[BZ_RELOCATABLE] = 0;
	expect_refusal(f, "not relocatable");
}

static void test_bzimage_truncated_header_refused(void **state)
{
	struct fixture *f = *state;

	f->len = 0x240;
	expect_refusal(f, "truncated");
}

static void test_bzimage_truncated_payload_refused(void **state)
{
	struct fixture *f = *state;

	f->len = IMG_LEN - 16;
	expect_refusal(f, "truncated");
}

static void test_bzimage_bad_magic_refused(void **state)
{
	struct fixture *f = *state;

	memcpy(f->img + BZ_HEADER, "HdrX", 4);
	expect_refusal(f, "bad magic");
	build_image(f);
	p16(f->img, BZ_BOOT_FLAG, 0x55aa);
	expect_refusal(f, "bad magic");
}

static void test_bzimage_old_protocol_refused(void **state)
{
	struct fixture *f = *state;

	p16(f->img, BZ_VERSION, 0x020b);
	expect_refusal(f, "2.11 is older than 2.12");
}

static void test_bzimage_no_64bit_entry_refused(void **state)
{
	struct fixture *f = *state;

	f->img[BZ_XLOADFLAGS] = 0x7e;
	expect_refusal(f, "no 64-bit entry point");
}

static void test_bzimage_initrd_too_big_refused(void **state)
{
	struct fixture *f = *state;
	uint8_t *big = calloc(1, 0x100001);

	assert_non_null(big);
	f->ram[0].size = 0x1300000; /* 19 MiB: 1 MiB after the kernel */
	f->cfg.initrd = big;
	f->cfg.initrd_len = 0x100001;
	expect_refusal(f, "initrd of 1048577 bytes does not fit");
	f->cfg.initrd_len = 0x100000; /* exactly the room left */
	assert_int_equal(load(f), 0);
	assert_int_equal(f->res.initrd_gpa, PREF + INIT_SIZE);
	free(big);
}

static void test_bzimage_initrd_above_addr_max_refused(void **state)
{
	struct fixture *f = *state;

	p32(f->img, BZ_INITRD_ADDR_MAX, PREF + INIT_SIZE + 0x1000 - 1);
	expect_refusal(f, "does not fit");
}

static void test_bzimage_cmdline_over_cmdline_size_refused(void **state)
{
	struct fixture *f = *state;

	p32(f->img, BZ_CMDLINE_SIZE, 10);
	expect_refusal(f, "longer than the kernel's cmdline_size 10");
}

static void test_elf_with_initrd_refused(void **state)
{
	struct fixture *f = *state;

	memset(f->img, 0, sizeof(f->img));
	memcpy(f->img, "\177ELF", 4);
	expect_refusal(f, "an initrd needs a bzImage");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_bzimage_good_lands_at_pref_address),
		T(test_bzimage_zero_page_has_header_and_fields),
		T(test_bzimage_madt_lists_only_vcpu0),
		T(test_bzimage_initrd_high_aligned_above_kernel),
		T(test_bzimage_initrd_below_initrd_addr_max),
		T(test_bzimage_e820_matches_slots_and_reserves),
		T(test_bzimage_page_tables_and_gdt),
		T(test_bzimage_relocates_when_pref_does_not_fit),
		T(test_bzimage_not_relocatable_refused_off_pref),
		T(test_bzimage_truncated_header_refused),
		T(test_bzimage_truncated_payload_refused),
		T(test_bzimage_bad_magic_refused),
		T(test_bzimage_old_protocol_refused),
		T(test_bzimage_no_64bit_entry_refused),
		T(test_bzimage_initrd_too_big_refused),
		T(test_bzimage_initrd_above_addr_max_refused),
		T(test_bzimage_cmdline_over_cmdline_size_refused),
		T(test_elf_with_initrd_refused),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
