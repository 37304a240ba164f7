/*
 * Linux's 64-bit boot protocol (Documentation/arch/x86/boot.rst, "The
 * Real-Mode Kernel Header" and "64-bit Boot Protocol"; zero-page.rst for
 * the zero page): this file owns the checks of an untrusted bzImage's
 * setup header, where the protected-mode part and the initrd go, the
 * contents of the zero page (the setup header copied, e820, command line,
 * initrd, acpi_rsdp_addr) and of low memory for it (identity page tables,
 * the boot GDT, the ACPI tables of core/acpi.c). As the ELF loader it
 * plans everything before it writes a byte, so a refused image leaves RAM
 * untouched. Setting the boot vCPU's registers is the VM's business, from
 * the BZIMAGE_* constants; the real-mode setup code is never run.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acpi.h"
#include "bzimage.h"

#define LOW_MEM_END 0x100000ULL
#define SECTOR 512
#define BZ_MAGIC 0x53726448u /* "HdrS" */
#define BZ_BOOT_FLAG_VALUE 0xaa55
#define BZ_HEADER_MIN_LEN 0x264 /* through init_size, protocol 2.10+ */
#define BZ_LOADER_UNDEFINED 0xff /* type_of_loader: not in the registry */
#define E820_ENTRY_SIZE 20
#define MAX_E820 (LOADER_MAX_RAM_RANGES + 3)
#define FOUR_GIB (1ULL << 32)

_Static_assert(BZIMAGE_CMDLINE_GPA + LOADER_CMDLINE_MAX + 1 <=
		       BZIMAGE_LOW_RESERVED_END,
	       "the command line must fit its reserved page");
_Static_assert(BZIMAGE_BOOT_PARAMS_GPA + ZP_SIZE <= BZIMAGE_CMDLINE_GPA,
	       "the zero page overlaps the command line");
_Static_assert(LOADER_PD_GPA + 4 * PAGE_SIZE <= BZIMAGE_BOOT_PARAMS_GPA,
	       "the page tables overlap the zero page");
_Static_assert(LOADER_GDT_GPA + BZIMAGE_GDT_LIMIT + 1 <= LOADER_PML4_GPA,
	       "the boot GDT overlaps the page tables");
_Static_assert(MAX_E820 <= ZP_E820_MAX, "e820 must fit the zero page");

struct e820 {
	uint64_t addr, size;
	uint32_t type;
};

struct bzplan {
	size_t setup_len; /* real-mode part: skipped */
	size_t pm_len; /* the file's protected-mode part */
	size_t hdr_end; /* the setup header is [0x1f1, hdr_end) */
	gpa_t load;
	uint64_t need; /* bytes from load the kernel may use */
	size_t cmdline_len;
	gpa_t initrd;
	struct e820 e820[MAX_E820];
	unsigned int nr_e820;
	uint8_t *acpi; /* the tables, built before anything is written */
	size_t acpi_len;
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static uint8_t get8(const uint8_t *p, size_t off)
{
	return p[off];
}

static uint16_t get16(const uint8_t *p, size_t off)
{
	uint16_t v;

	memcpy(&v, p + off, 2);
	return v;
}

static uint32_t get32(const uint8_t *p, size_t off)
{
	uint32_t v;

	memcpy(&v, p + off, 4);
	return v;
}

static uint64_t get64(const uint8_t *p, size_t off)
{
	uint64_t v;

	memcpy(&v, p + off, 8);
	return v;
}

static void put8(uint8_t *p, size_t off, uint8_t v)
{
	p[off] = v;
}

static void put32(uint8_t *p, size_t off, uint32_t v)
{
	memcpy(p + off, &v, 4);
}

static void put64(uint8_t *p, size_t off, uint64_t v)
{
	memcpy(p + off, &v, 8);
}

bool bzimage_is(const void *image, size_t len)
{
	const uint8_t *p = image;

	if (!p || len < BZ_HEADER + 4)
		return false;
	return get16(p, BZ_BOOT_FLAG) == BZ_BOOT_FLAG_VALUE ||
	       get32(p, BZ_HEADER) == BZ_MAGIC;
}

/* The RAM range holding gpa, or NULL. */
static const struct loader_ram *range_of(const struct loader_config *cfg,
					 gpa_t gpa)
{
	for (unsigned int i = 0; i < cfg->nr_ram; i++)
		if (gpa >= cfg->ram[i].gpa &&
		    gpa - cfg->ram[i].gpa < cfg->ram[i].size)
			return &cfg->ram[i];
	return NULL;
}

/* Whether [gpa, gpa + len) is inside one RAM range, above low memory
 * and below 4 GiB (the identity map's reach). */
static bool fits(const struct loader_config *cfg, gpa_t gpa, uint64_t len)
{
	return gpa >= LOW_MEM_END && gpa < FOUR_GIB && len <= FOUR_GIB - gpa &&
	       loader_ram_hva(cfg, gpa, len);
}

static int check_header(const uint8_t *img, size_t len, struct bzplan *p,
			char *err, size_t errlen)
{
	unsigned int sects;
	uint16_t version;
	uint8_t xlf;

	if (len < BZ_HEADER_MIN_LEN)
		return fail(err, errlen,
			    "bzImage truncated: %zu bytes is shorter than its "
			    "setup header (0x%x bytes)",
			    len, BZ_HEADER_MIN_LEN);
	if (get16(img, BZ_BOOT_FLAG) != BZ_BOOT_FLAG_VALUE ||
	    get32(img, BZ_HEADER) != BZ_MAGIC)
		return fail(err, errlen,
			    "bzImage has a bad magic: boot_flag 0x%04x (want "
			    "0xaa55), header 0x%08x (want \"HdrS\")",
			    get16(img, BZ_BOOT_FLAG), get32(img, BZ_HEADER));
	version = get16(img, BZ_VERSION);
	if (version < BZ_MIN_VERSION)
		return fail(err, errlen,
			    "bzImage boot protocol %u.%02u is older than 2.12 "
			    "(no xloadflags, no 64-bit entry)",
			    version >> 8, version & 0xff);
	xlf = get8(img, BZ_XLOADFLAGS);
	if (!(xlf & BZ_XLF_KERNEL_64))
		return fail(err, errlen,
			    "bzImage has no 64-bit entry point (XLF_KERNEL_64 "
			    "clear in xloadflags 0x%02x)",
			    xlf);
	/* The header ends at 0x202 + the jump's displacement byte; it may
	 * not run into the zero page's e820 table. */
	p->hdr_end = BZ_HEADER + get8(img, BZ_JUMP + 1);
	if (p->hdr_end < BZ_HEADER_MIN_LEN || p->hdr_end > ZP_E820_TABLE ||
	    p->hdr_end > len)
		return fail(err, errlen,
			    "bzImage setup header ends at 0x%zx, not in "
			    "[0x%x, 0x%x]",
			    p->hdr_end, BZ_HEADER_MIN_LEN, ZP_E820_TABLE);
	sects = get8(img, BZ_SETUP_SECTS);
	if (sects == 0)
		sects = 4; /* the boot protocol's rule for old images */
	p->setup_len = (size_t)(sects + 1) * SECTOR;
	if (p->setup_len >= len ||
	    (uint64_t)get32(img, BZ_SYSSIZE) * 16 > len - p->setup_len)
		return fail(err, errlen,
			    "bzImage truncated: %zu bytes, but the header "
			    "says %zu of setup and %" PRIu64
			    " of protected-mode code",
			    len, p->setup_len,
			    (uint64_t)get32(img, BZ_SYSSIZE) * 16);
	p->pm_len = len - p->setup_len;
	return 0;
}

/* The protected-mode part: at pref_address, or at the lowest aligned
 * address that fits when the kernel is relocatable. */
static int place_kernel(const struct loader_config *cfg, const uint8_t *img,
			struct bzplan *p, char *err, size_t errlen)
{
	uint64_t pref = get64(img, BZ_PREF_ADDRESS);
	uint64_t align = get32(img, BZ_KERNEL_ALIGNMENT);
	bool reloc = get8(img, BZ_RELOCATABLE) != 0;

	p->need = get32(img, BZ_INIT_SIZE);
	if (p->need < p->pm_len)
		p->need = p->pm_len;
	p->need = (p->need + PAGE_SIZE - 1) & ~(uint64_t)(PAGE_SIZE - 1);
	if (fits(cfg, pref, p->need)) {
		p->load = pref;
		return 0;
	}
	if (!reloc)
		return fail(err, errlen,
			    "bzImage is not relocatable and [0x%" PRIx64
			    ", 0x%" PRIx64 ") is not in guest RAM above 1 MiB",
			    pref, pref + p->need);
	if (align < PAGE_SIZE || (align & (align - 1)))
		return fail(err, errlen,
			    "bzImage kernel_alignment 0x%" PRIx64
			    " is not a power of two of at least 4 KiB",
			    align);
	for (gpa_t a = (LOW_MEM_END + align - 1) & ~(align - 1);
	     a < FOUR_GIB && p->need <= FOUR_GIB - a; a += align) {
		if (fits(cfg, a, p->need)) {
			p->load = a;
			return 0;
		}
	}
	return fail(err, errlen,
		    "bzImage needs 0x%" PRIx64
		    " bytes (init_size) of guest RAM between 1 MiB and 4 GiB",
		    p->need);
}

/* The initrd: as high as initrd_addr_max and the RAM below 4 GiB let it,
 * above the kernel's init_size. */
static int place_initrd(const struct loader_config *cfg, const uint8_t *img,
			struct bzplan *p, char *err, size_t errlen)
{
	const struct loader_ram *r = range_of(cfg, p->load);
	uint64_t max = (uint64_t)get32(img, BZ_INITRD_ADDR_MAX) + 1;
	uint64_t top = r->gpa + r->size, start;

	p->initrd = 0;
	if (!cfg->initrd_len)
		return 0;
	if (!cfg->initrd)
		return fail(err, errlen, "initrd of %zu bytes has no data",
			    cfg->initrd_len);
	if (top > max)
		top = max;
	if (top > FOUR_GIB)
		top = FOUR_GIB;
	start = cfg->initrd_len <= top ?
			(top - cfg->initrd_len) & ~(uint64_t)(PAGE_SIZE - 1) :
			0;
	if (start < p->load + p->need)
		return fail(err, errlen,
			    "initrd of %zu bytes does not fit between the "
			    "kernel's end 0x%" PRIx64 " and 0x%" PRIx64
			    " (the end of RAM or initrd_addr_max)",
			    cfg->initrd_len, p->load + p->need, top);
	p->initrd = start;
	return 0;
}

static void add_e820(struct bzplan *p, uint64_t addr, uint64_t end,
		     uint32_t type)
{
	if (end <= addr)
		return;
	MMUD_ASSERT(p->nr_e820 < MAX_E820);
	p->e820[p->nr_e820++] = (struct e820){ addr, end - addr, type };
}

/* The memslots as RAM, minus what mmud keeps below 1 MiB: low memory's
 * tables, zero page and command line, and the ACPI tables. */
static void plan_e820(const struct loader_config *cfg, struct bzplan *p)
{
	p->nr_e820 = 0;
	for (unsigned int i = 0; i < cfg->nr_ram; i++) {
		const struct loader_ram *r = &cfg->ram[i];
		uint64_t end = r->gpa + r->size;

		if (r->gpa != 0) {
			add_e820(p, r->gpa, end, E820_RAM);
			continue;
		}
		/* check_config: [0, 1 MiB) is inside this range. */
		add_e820(p, 0, BZIMAGE_LOW_RESERVED_END, E820_RESERVED);
		add_e820(p, BZIMAGE_LOW_RESERVED_END, ACPI_RSDP_GPA, E820_RAM);
		add_e820(p, ACPI_RSDP_GPA, ACPI_AREA_END, E820_RESERVED);
		add_e820(p, LOW_MEM_END, end, E820_RAM);
	}
}

static int plan(const struct loader_config *cfg, const uint8_t *img, size_t len,
		struct bzplan *p, char *err, size_t errlen)
{
	/* Only the boot vCPU can start until SIPI works: the MADT lists
	 * what can run (docs/GUEST-ABI.md, "Platform v2 boot"). */
	struct acpi_config acfg = { .nr_cpus = 1,
				    .virtio = cfg->virtio,
				    .nr_virtio = cfg->nr_virtio };
	uint32_t cmdline_size;
	int r;

	r = loader_check_config(cfg, &p->cmdline_len, err, errlen);
	if (r < 0)
		return r;
	r = check_header(img, len, p, err, errlen);
	if (r < 0)
		return r;
	cmdline_size = get32(img, BZ_CMDLINE_SIZE);
	if (p->cmdline_len > cmdline_size)
		return fail(err, errlen,
			    "command line of %zu bytes is longer than the "
			    "kernel's cmdline_size %u",
			    p->cmdline_len, cmdline_size);
	r = place_kernel(cfg, img, p, err, errlen);
	if (r < 0)
		return r;
	r = place_initrd(cfg, img, p, err, errlen);
	if (r < 0)
		return r;
	plan_e820(cfg, p);
	p->acpi = malloc(ACPI_AREA_SIZE);
	if (!p->acpi)
		return fail(err, errlen, "out of memory");
	r = acpi_build(&acfg, ACPI_RSDP_GPA, p->acpi, ACPI_AREA_SIZE, NULL);
	if (r < 0)
		return fail(err, errlen, "cannot build the ACPI tables: %s",
			    strerror(-r));
	p->acpi_len = (size_t)r;
	return 0;
}

static void write_zero_page(const struct loader_config *cfg, const uint8_t *img,
			    const struct bzplan *p)
{
	uint8_t *zp = loader_ram_hva(cfg, BZIMAGE_BOOT_PARAMS_GPA, ZP_SIZE);

	MMUD_ASSERT(zp);
	memset(zp, 0, ZP_SIZE);
	memcpy(zp + BZ_SETUP_SECTS, img + BZ_SETUP_SECTS,
	       p->hdr_end - BZ_SETUP_SECTS);
	put8(zp, BZ_TYPE_OF_LOADER, BZ_LOADER_UNDEFINED);
	put32(zp, BZ_CODE32_START, (uint32_t)p->load);
	put32(zp, BZ_CMD_LINE_PTR, (uint32_t)BZIMAGE_CMDLINE_GPA);
	put32(zp, ZP_EXT_CMD_LINE_PTR, 0);
	put32(zp, BZ_RAMDISK_IMAGE, (uint32_t)p->initrd);
	put32(zp, BZ_RAMDISK_SIZE, (uint32_t)cfg->initrd_len);
	put32(zp, ZP_EXT_RAMDISK_IMAGE, (uint32_t)(p->initrd >> 32));
	put32(zp, ZP_EXT_RAMDISK_SIZE,
	      (uint32_t)((uint64_t)cfg->initrd_len >> 32));
	put64(zp, ZP_ACPI_RSDP_ADDR, ACPI_RSDP_GPA);
	put8(zp, ZP_E820_ENTRIES, (uint8_t)p->nr_e820);
	for (unsigned int i = 0; i < p->nr_e820; i++) {
		uint8_t *e = zp + ZP_E820_TABLE + i * E820_ENTRY_SIZE;

		put64(e, 0, p->e820[i].addr);
		put64(e, 8, p->e820[i].size);
		put32(e, 16, p->e820[i].type);
	}
}

/* null, 0x08 ABI v1's code (unused), __BOOT_CS, __BOOT_DS. */
static void write_gdt(const struct loader_config *cfg)
{
	uint8_t *gdt =
		loader_ram_hva(cfg, LOADER_GDT_GPA, BZIMAGE_GDT_LIMIT + 1);

	MMUD_ASSERT(gdt);
	put64(gdt, 0, 0);
	put64(gdt, 0x08, LOADER_GDT_CODE64);
	put64(gdt, BZIMAGE_BOOT_CS, LOADER_GDT_CODE64);
	put64(gdt, BZIMAGE_BOOT_DS, LOADER_GDT_DATA);
}

int bzimage_load(const struct loader_config *cfg, const uint8_t *image,
		 size_t len, struct loader_result *res, char *err,
		 size_t errlen)
{
	struct bzplan *p = calloc(1, sizeof(*p));
	uint8_t *dst;
	int r;

	if (!p)
		return fail(err, errlen, "out of memory");
	r = plan(cfg, image, len, p, err, errlen);
	if (r < 0)
		goto out;

	dst = loader_ram_hva(cfg, p->load, p->need);
	MMUD_ASSERT(dst);
	memcpy(dst, image + p->setup_len, p->pm_len);
	if (cfg->initrd_len) {
		dst = loader_ram_hva(cfg, p->initrd, cfg->initrd_len);
		MMUD_ASSERT(dst);
		memcpy(dst, cfg->initrd, cfg->initrd_len);
	}
	write_zero_page(cfg, image, p);
	dst = loader_ram_hva(cfg, BZIMAGE_CMDLINE_GPA, p->cmdline_len + 1);
	MMUD_ASSERT(dst);
	if (p->cmdline_len)
		memcpy(dst, cfg->cmdline, p->cmdline_len);
	dst[p->cmdline_len] = '\0';
	loader_write_page_tables(cfg);
	write_gdt(cfg);
	dst = loader_ram_hva(cfg, ACPI_RSDP_GPA, ACPI_AREA_SIZE);
	MMUD_ASSERT(dst);
	memset(dst, 0, ACPI_AREA_SIZE);
	memcpy(dst, p->acpi, p->acpi_len);
	if (res) {
		res->entry = p->load + BZ_ENTRY64_OFFSET;
		res->linux64 = true;
		res->boot_params = BZIMAGE_BOOT_PARAMS_GPA;
		res->kernel_gpa = p->load;
		res->initrd_gpa = p->initrd;
	}
out:
	free(p->acpi);
	free(p);
	return r;
}
