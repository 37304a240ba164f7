/*
 * Unit tests of core/loader.c: ELF images built in memory, loaded into RAM
 * ranges backed by the test's own buffers. A good image must land with its
 * segments, zeroed bss and low memory byte for byte as docs/GUEST-ABI.md
 * says; every bad image must be refused with -EINVAL, a message naming the
 * problem, and guest RAM unchanged (compared with a copy taken before).
 * It does not run any guest code; the KVM reference runner does that.
 */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "loader.h"

#define LOW_SIZE (4ULL << 20)
#define HIGH_SIZE (1ULL << 20)
#define IMG_MAX 0x3000
#define PHOFF sizeof(Elf64_Ehdr)

#define CODE_GPA 0x100000ULL
#define CODE_OFF 0x1000
#define CODE_LEN 0x100
#define DATA_GPA 0x200000ULL
#define DATA_OFF 0x1100
#define DATA_FILESZ 0x80
#define DATA_MEMSZ 0x3000
#define ENTRY (CODE_GPA + 0x10)

struct fixture {
	uint8_t *low, *high, *low_copy, *high_copy;
	struct loader_ram ram[2];
	struct loader_config cfg;
	uint8_t img[IMG_MAX];
	size_t len;
	char err[256];
};

static Elf64_Ehdr *ehdr(struct fixture *f)
{
	return (Elf64_Ehdr *)f->img;
}

static Elf64_Phdr *phdr(struct fixture *f, unsigned int i)
{
	return (Elf64_Phdr *)(f->img + PHOFF) + i;
}

static void set_phdr(struct fixture *f, unsigned int i, uint32_t type,
		     uint32_t flags, uint64_t off, gpa_t gpa, uint64_t filesz,
		     uint64_t memsz)
{
	*phdr(f, i) = (Elf64_Phdr){
		.p_type = type,
		.p_flags = flags,
		.p_offset = off,
		.p_vaddr = gpa,
		.p_paddr = gpa,
		.p_filesz = filesz,
		.p_memsz = memsz,
		.p_align = 0x1000,
	};
}

/*
 * The good image: an executable segment at 1 MiB, a data segment at 2 MiB
 * with bss beyond its file bytes, and a PT_GNU_STACK the loader ignores.
 */
static void build_image(struct fixture *f)
{
	Elf64_Ehdr *eh = ehdr(f);

	memset(f->img, 0, sizeof(f->img));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = ENTRY;
	eh->e_phoff = PHOFF;
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 3;
	set_phdr(f, 0, PT_LOAD, PF_R | PF_X, CODE_OFF, CODE_GPA, CODE_LEN,
		 CODE_LEN);
	set_phdr(f, 1, PT_LOAD, PF_R | PF_W, DATA_OFF, DATA_GPA, DATA_FILESZ,
		 DATA_MEMSZ);
	set_phdr(f, 2, PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0);
	for (unsigned int i = 0; i < CODE_LEN; i++)
		f->img[CODE_OFF + i] = (uint8_t)(0x90 + i);
	for (unsigned int i = 0; i < DATA_FILESZ; i++)
		f->img[DATA_OFF + i] = (uint8_t)(0x40 ^ i);
	f->len = DATA_OFF + DATA_FILESZ;
}

/* Fill RAM with a pattern no loader output can match by accident. */
static void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed;

	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16) | 1;
	}
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->low = malloc(LOW_SIZE);
	f->high = malloc(HIGH_SIZE);
	f->low_copy = malloc(LOW_SIZE);
	f->high_copy = malloc(HIGH_SIZE);
	assert_true(f->low && f->high && f->low_copy && f->high_copy);
	fill_pattern(f->low, LOW_SIZE, 1);
	fill_pattern(f->high, HIGH_SIZE, 2);
	memcpy(f->low_copy, f->low, LOW_SIZE);
	memcpy(f->high_copy, f->high, HIGH_SIZE);
	f->ram[0] = (struct loader_ram){ .gpa = 0,
					 .size = LOW_SIZE,
					 .hva = f->low };
	f->ram[1] = (struct loader_ram){ .gpa = LOADER_HIGH_RAM_BASE,
					 .size = HIGH_SIZE,
					 .hva = f->high };
	f->cfg = (struct loader_config){ .ram = f->ram,
					 .nr_ram = 2,
					 .nr_vcpus = 3,
					 .cmdline = "console=com1 x=1" };
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

static int load(struct fixture *f, struct loader_result *res)
{
	return loader_load(&f->cfg, f->img, f->len, res, f->err,
			   sizeof(f->err));
}

/* The load must fail with -EINVAL, say `want`, and leave RAM as it was. */
static void expect_refused(struct fixture *f, const char *want)
{
	struct loader_result res = { .entry = 0xdead };
	int ret = load(f, &res);

	if (ret != -EINVAL)
		fail_msg("loader_load returned %d (want -EINVAL), message '%s'",
			 ret, f->err);
	if (!strstr(f->err, want))
		fail_msg("message '%s' does not name '%s'", f->err, want);
	assert_int_equal(res.entry, 0xdead);
	assert_memory_equal(f->low, f->low_copy, LOW_SIZE);
	assert_memory_equal(f->high, f->high_copy, HIGH_SIZE);
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void test_loader_good_image_loads(void **state)
{
	struct fixture *f = *state;
	struct loader_result res = { 0 };
	const uint8_t *bi;

	assert_int_equal(load(f, &res), 0);
	assert_string_equal(f->err, "");
	assert_int_equal(res.entry, ENTRY);

	/* Segments: file bytes copied, bss zeroed, neighbours untouched. */
	assert_memory_equal(f->low + CODE_GPA, f->img + CODE_OFF, CODE_LEN);
	assert_memory_equal(f->low + DATA_GPA, f->img + DATA_OFF, DATA_FILESZ);
	for (uint64_t i = DATA_FILESZ; i < DATA_MEMSZ; i++)
		assert_int_equal(f->low[DATA_GPA + i], 0);
	assert_memory_equal(f->low + CODE_GPA + CODE_LEN,
			    f->low_copy + CODE_GPA + CODE_LEN,
			    DATA_GPA - CODE_GPA - CODE_LEN);
	assert_memory_equal(f->low + DATA_GPA + DATA_MEMSZ,
			    f->low_copy + DATA_GPA + DATA_MEMSZ,
			    LOW_SIZE - DATA_GPA - DATA_MEMSZ);
	assert_memory_equal(f->high, f->high_copy, HIGH_SIZE);

	/* GDT at 0x500: null, 64-bit code, data. */
	assert_int_equal(rd64(f->low + 0x500), 0);
	assert_int_equal(rd64(f->low + 0x508), 0x00af9b000000ffffULL);
	assert_int_equal(rd64(f->low + 0x510), 0x00cf93000000ffffULL);

	/* PML4: only entry 0, to the PDPT, present|writable. */
	assert_int_equal(rd64(f->low + 0x1000), 0x2003);
	for (unsigned int i = 1; i < 512; i++)
		assert_int_equal(rd64(f->low + 0x1000 + 8 * i), 0);
	/* PDPT: entries 0..3 to the four PDs. */
	for (unsigned int i = 0; i < 512; i++)
		assert_int_equal(rd64(f->low + 0x2000 + 8 * i),
				 i < 4 ? 0x3003 + 0x1000ULL * i : 0);
	/* PDs: 2048 2 MiB pages identity-mapping [0, 4 GiB). */
	for (uint64_t i = 0; i < 2048; i++)
		assert_int_equal(rd64(f->low + 0x3000 + 8 * i),
				 (i << 21) | 0x83);

	/* Boot info at 0x7000. */
	bi = f->low + 0x7000;
	assert_memory_equal(bi, "MMUDBOOT", 8);
	assert_int_equal(rd64(bi), 0x544f4f4244554d4dULL);
	assert_int_equal(rd32(bi + 8), 1);
	assert_int_equal(rd32(bi + 12), 3);
	assert_int_equal(rd32(bi + 16), 2);
	assert_int_equal(rd32(bi + 20), 0);
	assert_int_equal(rd64(bi + 24), 0);
	assert_int_equal(rd64(bi + 32), LOW_SIZE);
	assert_int_equal(rd64(bi + 40), LOADER_HIGH_RAM_BASE);
	assert_int_equal(rd64(bi + 48), HIGH_SIZE);
	assert_int_equal(rd32(bi + 56), strlen("console=com1 x=1"));
	assert_memory_equal(bi + 60, "console=com1 x=1", 17);
}

static void test_loader_null_cmdline_empty(void **state)
{
	struct fixture *f = *state;
	struct loader_result res;

	f->cfg.cmdline = NULL;
	f->cfg.nr_ram = 1;
	assert_int_equal(load(f, &res), 0);
	assert_int_equal(rd32(f->low + 0x7000 + 16), 1);
	assert_int_equal(rd32(f->low + 0x7000 + 40), 0);
	assert_int_equal(f->low[0x7000 + 44], 0);
}

static void test_loader_cmdline_max_accepted(void **state)
{
	struct fixture *f = *state;
	struct loader_result res;
	static char line[LOADER_CMDLINE_MAX + 1];

	memset(line, 'a', LOADER_CMDLINE_MAX);
	line[LOADER_CMDLINE_MAX] = '\0';
	f->cfg.cmdline = line;
	assert_int_equal(load(f, &res), 0);
	assert_int_equal(rd32(f->low + 0x7000 + 56), LOADER_CMDLINE_MAX);
	assert_memory_equal(f->low + 0x7000 + 60, line, LOADER_CMDLINE_MAX + 1);
}

static void test_loader_cmdline_too_long_refused(void **state)
{
	struct fixture *f = *state;
	static char line[LOADER_CMDLINE_MAX + 2];

	memset(line, 'a', LOADER_CMDLINE_MAX + 1);
	line[LOADER_CMDLINE_MAX + 1] = '\0';
	f->cfg.cmdline = line;
	expect_refused(f, "command line longer than 2048");
}

static void test_loader_wrong_class_refused(void **state)
{
	struct fixture *f = *state;

	ehdr(f)->e_ident[EI_CLASS] = ELFCLASS32;
	expect_refused(f, "ELF class 1");
}

static void test_loader_big_endian_refused(void **state)
{
	struct fixture *f = *state;

	ehdr(f)->e_ident[EI_DATA] = ELFDATA2MSB;
	expect_refused(f, "data encoding 2");
}

static void test_loader_bad_magic_refused(void **state)
{
	struct fixture *f = *state;

	f->img[1] = 'X';
	expect_refused(f, "bad magic");
}

static void test_loader_wrong_machine_refused(void **state)
{
	struct fixture *f = *state;

	ehdr(f)->e_machine = EM_AARCH64;
	expect_refused(f, "machine 183");
}

static void test_loader_wrong_type_refused(void **state)
{
	struct fixture *f = *state;

	ehdr(f)->e_type = ET_DYN;
	expect_refused(f, "type 3 is not ET_EXEC");
}

static void test_loader_truncated_header_refused(void **state)
{
	struct fixture *f = *state;

	f->len = sizeof(Elf64_Ehdr) - 1;
	expect_refused(f, "shorter than an ELF64 header");
}

static void test_loader_bad_phentsize_refused(void **state)
{
	struct fixture *f = *state;

	ehdr(f)->e_phentsize = 32;
	expect_refused(f, "e_phentsize 32");
}

static void test_loader_no_phdrs_refused(void **state)
{
	struct fixture *f = *state;

	ehdr(f)->e_phnum = 0;
	expect_refused(f, "no program headers");
}

static void test_loader_too_many_phdrs_refused(void **state)
{
	struct fixture *f = *state;

	ehdr(f)->e_phnum = LOADER_MAX_PHDRS + 1;
	expect_refused(f, "257 program headers");
}

static void test_loader_phdrs_out_of_file_refused(void **state)
{
	struct fixture *f = *state;

	ehdr(f)->e_phoff = f->len - sizeof(Elf64_Phdr);
	expect_refused(f, "program header table");
}

static void test_loader_phoff_overflow_refused(void **state)
{
	struct fixture *f = *state;

	ehdr(f)->e_phoff = UINT64_MAX - 8;
	expect_refused(f, "program header table");
}

static void test_loader_no_load_segment_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 0)->p_type = PT_NOTE;
	phdr(f, 1)->p_type = PT_NOTE;
	expect_refused(f, "no loadable segment");
}

static void test_loader_interp_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 2)->p_type = PT_INTERP;
	expect_refused(f, "segment 2: the kernel must be statically linked");
}

static void test_loader_segment_past_file_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 1)->p_filesz = DATA_FILESZ + 1;
	expect_refused(f, "segment 1: file range");
}

static void test_loader_offset_overflow_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 1)->p_offset = UINT64_MAX - 0x10;
	expect_refused(f, "segment 1: file range");
}

static void test_loader_filesz_wraps_refused(void **state)
{
	struct fixture *f = *state;

	/* p_offset + p_filesz wraps around to a small number. */
	phdr(f, 1)->p_filesz = UINT64_MAX - 0x800;
	phdr(f, 1)->p_memsz = UINT64_MAX - 0x800;
	expect_refused(f,
		       "segment 1: file range [0x1100, +0xfffffffffffff7ff)");
}

static void test_loader_memsz_overflow_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 1)->p_memsz = UINT64_MAX;
	expect_refused(f, "segment 1: [0x200000, +0xffffffffffffffff) does "
			  "not end below 4 GiB");
}

static void test_loader_filesz_gt_memsz_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 1)->p_memsz = DATA_FILESZ - 1;
	expect_refused(f, "segment 1: p_filesz 0x80 > p_memsz 0x7f");
}

static void test_loader_vaddr_ne_paddr_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 1)->p_vaddr = 0xffffffff80200000ULL;
	expect_refused(f, "segment 1: p_vaddr 0xffffffff80200000 != p_paddr "
			  "0x200000");
}

static void test_loader_below_1m_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 1)->p_vaddr = phdr(f, 1)->p_paddr = 0x8000;
	expect_refused(f, "segment 1: p_paddr 0x8000 is below 1 MiB");
}

static void test_loader_straddling_1m_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 0)->p_vaddr = phdr(f, 0)->p_paddr = 0xfff00;
	ehdr(f)->e_entry = 0xfff10;
	expect_refused(f, "segment 0: p_paddr 0xfff00 is below 1 MiB");
}

static void test_loader_above_4g_refused(void **state)
{
	struct fixture *f = *state;

	/* In RAM (the high range) but not below 4 GiB. */
	phdr(f, 1)->p_vaddr = phdr(f, 1)->p_paddr = LOADER_HIGH_RAM_BASE;
	expect_refused(f, "segment 1: [0x100000000, +0x3000) does not end "
			  "below 4 GiB");
}

static void test_loader_crossing_4g_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 1)->p_vaddr = phdr(f, 1)->p_paddr =
		LOADER_HIGH_RAM_BASE - 0x1000;
	expect_refused(f, "does not end below 4 GiB");
}

static void test_loader_outside_ram_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 1)->p_vaddr = phdr(f, 1)->p_paddr = 0x10000000;
	expect_refused(f, "segment 1: [0x10000000, 0x10003000) is not inside "
			  "guest RAM");
}

static void test_loader_past_ram_end_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 1)->p_vaddr = phdr(f, 1)->p_paddr = LOW_SIZE - 0x1000;
	expect_refused(f, "is not inside guest RAM");
}

static void test_loader_overlapping_segments_refused(void **state)
{
	struct fixture *f = *state;

	phdr(f, 1)->p_vaddr = phdr(f, 1)->p_paddr = CODE_GPA + CODE_LEN - 1;
	expect_refused(f, "segment 1: [0x1000ff, 0x1030ff) overlaps segment 0 "
			  "[0x100000, 0x100100)");
}

static void test_loader_entry_in_data_refused(void **state)
{
	struct fixture *f = *state;

	ehdr(f)->e_entry = DATA_GPA;
	expect_refused(f, "e_entry 0x200000 is not inside an executable");
}

static void test_loader_entry_past_segment_refused(void **state)
{
	struct fixture *f = *state;

	ehdr(f)->e_entry = CODE_GPA + CODE_LEN;
	expect_refused(f, "e_entry 0x100100 is not inside an executable");
}

static void test_loader_no_low_memory_refused(void **state)
{
	struct fixture *f = *state;

	f->ram[0].gpa = 0x1000;
	f->ram[0].size = LOW_SIZE - 0x1000;
	expect_refused(f, "low memory [0, 0x100000) is not inside one RAM");
}

static void test_loader_unsorted_ram_refused(void **state)
{
	struct fixture *f = *state;
	struct loader_ram tmp = f->ram[0];

	f->ram[0] = f->ram[1];
	f->ram[1] = tmp;
	expect_refused(f, "RAM range 1 at 0x0 is unsorted or overlaps");
}

static void test_loader_no_vcpus_refused(void **state)
{
	struct fixture *f = *state;

	f->cfg.nr_vcpus = 0;
	expect_refused(f, "no vCPUs");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_loader_good_image_loads),
		T(test_loader_null_cmdline_empty),
		T(test_loader_cmdline_max_accepted),
		T(test_loader_cmdline_too_long_refused),
		T(test_loader_wrong_class_refused),
		T(test_loader_big_endian_refused),
		T(test_loader_bad_magic_refused),
		T(test_loader_wrong_machine_refused),
		T(test_loader_wrong_type_refused),
		T(test_loader_truncated_header_refused),
		T(test_loader_bad_phentsize_refused),
		T(test_loader_no_phdrs_refused),
		T(test_loader_too_many_phdrs_refused),
		T(test_loader_phdrs_out_of_file_refused),
		T(test_loader_phoff_overflow_refused),
		T(test_loader_no_load_segment_refused),
		T(test_loader_interp_refused),
		T(test_loader_segment_past_file_refused),
		T(test_loader_offset_overflow_refused),
		T(test_loader_filesz_wraps_refused),
		T(test_loader_memsz_overflow_refused),
		T(test_loader_filesz_gt_memsz_refused),
		T(test_loader_vaddr_ne_paddr_refused),
		T(test_loader_below_1m_refused),
		T(test_loader_straddling_1m_refused),
		T(test_loader_above_4g_refused),
		T(test_loader_crossing_4g_refused),
		T(test_loader_outside_ram_refused),
		T(test_loader_past_ram_end_refused),
		T(test_loader_overlapping_segments_refused),
		T(test_loader_entry_in_data_refused),
		T(test_loader_entry_past_segment_refused),
		T(test_loader_no_low_memory_refused),
		T(test_loader_unsorted_ram_refused),
		T(test_loader_no_vcpus_refused),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
