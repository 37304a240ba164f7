/*
 * The boot protocol of guest ABI v1 (docs/GUEST-ABI.md): this file owns
 * the validation of an untrusted ELF64 kernel image, the copy of its
 * PT_LOAD segments into guest RAM, and the contents of low memory (the
 * identity page tables, the GDT and the boot info). It works in two
 * phases so that a refused image leaves RAM untouched: plan() checks the
 * configuration, the file header, every program header and the entry
 * point without writing anything; only then are segments and low memory
 * written. It does not create vCPUs or set their registers: the caller
 * does that from the LOADER_* constants of loader.h. Guest RAM is reached
 * only through the caller's host mappings (struct loader_ram), translated
 * with bounds checks by ram_hva().
 */
#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "loader.h"
/*
 * The QEMU reference runner's shim (docs/REFERENCE-RUNNERS.md, "The boot
 * shim") builds this file freestanding, for ELF guests only: bzImages
 * need the hosted C library (core/bzimage.c, core/acpi.c).
 */
#if __STDC_HOSTED__
#include "bzimage.h"
#endif

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "the loader stores guest structures in host byte order");

/* Page-table entry bits (SDM vol. 3, 4.5). */
#define PTE_P 0x1ULL
#define PTE_W 0x2ULL
#define PTE_PS 0x80ULL

#define LOW_MEM_END 0x100000ULL /* [0, 1 MiB) belongs to the loader */
#define PD_COUNT 4
#define PD_ENTRIES 512
#define PAGE_2M (1ULL << 21)

/* Boot info layout: header, RAM ranges, cmdline_len, command line. */
#define BOOTINFO_HDR_SIZE 24
#define BOOTINFO_RANGE_SIZE 16

_Static_assert(BOOTINFO_HDR_SIZE + LOADER_MAX_RAM_RANGES * BOOTINFO_RANGE_SIZE +
			       4 + LOADER_CMDLINE_MAX + 1 <=
		       PAGE_SIZE,
	       "the boot info must fit in the page at LOADER_BOOTINFO_GPA");
_Static_assert(LOADER_PD_GPA + PD_COUNT * PAGE_SIZE <= LOADER_BOOTINFO_GPA,
	       "page directories overlap the boot info");
_Static_assert(LOADER_GDT_GPA + LOADER_GDT_LIMIT + 1 <= LOADER_PML4_GPA,
	       "GDT overlaps the page tables");

/* One validated PT_LOAD segment with a non-zero p_memsz. */
struct seg {
	unsigned int index; /* program header index, for messages */
	gpa_t gpa;
	uint64_t memsz;
	uint64_t filesz;
	uint64_t offset;
	bool exec;
};

struct plan {
	struct seg segs[LOADER_MAX_PHDRS];
	unsigned int nr_segs;
	gva_t entry;
	size_t cmdline_len;
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

/*
 * The host address of guest range [gpa, gpa + len), or NULL unless one RAM
 * range holds all of it. len 0 is treated as 1 so an empty range must
 * still start inside RAM.
 */
static void *ram_hva(const struct loader_config *cfg, gpa_t gpa, uint64_t len)
{
	uint64_t need = len ? len : 1;

	for (unsigned int i = 0; i < cfg->nr_ram; i++) {
		const struct loader_ram *r = &cfg->ram[i];

		if (gpa < r->gpa)
			continue;
		if (gpa - r->gpa >= r->size || need > r->size - (gpa - r->gpa))
			continue;
		return (uint8_t *)r->hva + (gpa - r->gpa);
	}
	return NULL;
}

static int check_config(const struct loader_config *cfg, struct plan *p,
			char *err, size_t errlen)
{
	return loader_check_config(cfg, &p->cmdline_len, err, errlen);
}

void *loader_ram_hva(const struct loader_config *cfg, gpa_t gpa, uint64_t len)
{
	return ram_hva(cfg, gpa, len);
}

int loader_check_config(const struct loader_config *cfg, size_t *cmdline_len,
			char *err, size_t errlen)
{
	if (!cfg->ram || cfg->nr_ram == 0)
		return fail(err, errlen, "no guest RAM");
	if (cfg->nr_ram > LOADER_MAX_RAM_RANGES)
		return fail(err, errlen, "%u RAM ranges (at most %u)",
			    cfg->nr_ram, LOADER_MAX_RAM_RANGES);
	if (cfg->nr_vcpus == 0)
		return fail(err, errlen, "no vCPUs");
	for (unsigned int i = 0; i < cfg->nr_ram; i++) {
		const struct loader_ram *r = &cfg->ram[i];

		if (!r->hva || r->size == 0)
			return fail(err, errlen,
				    "RAM range %u is empty or not mapped", i);
		if (r->gpa + r->size < r->gpa)
			return fail(err, errlen,
				    "RAM range %u: 0x%" PRIx64 " + 0x%" PRIx64
				    " overflows",
				    i, r->gpa, r->size);
		if (i > 0 &&
		    r->gpa < cfg->ram[i - 1].gpa + cfg->ram[i - 1].size)
			return fail(err, errlen,
				    "RAM range %u at 0x%" PRIx64
				    " is unsorted or overlaps range %u",
				    i, r->gpa, i - 1);
	}
	if (!ram_hva(cfg, 0, LOW_MEM_END))
		return fail(
			err, errlen,
			"low memory [0, 0x%llx) is not inside one RAM range",
			LOW_MEM_END);

	*cmdline_len = cfg->cmdline ?
			       strnlen(cfg->cmdline, LOADER_CMDLINE_MAX + 1) :
			       0;
	if (*cmdline_len > LOADER_CMDLINE_MAX)
		return fail(err, errlen, "command line longer than %d bytes",
			    LOADER_CMDLINE_MAX);
	return 0;
}

static int check_ehdr(const Elf64_Ehdr *eh, size_t len, char *err,
		      size_t errlen)
{
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
		return fail(err, errlen, "not an ELF file (bad magic)");
	if (eh->e_ident[EI_CLASS] != ELFCLASS64)
		return fail(err, errlen, "ELF class %u is not ELFCLASS64",
			    eh->e_ident[EI_CLASS]);
	if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
		return fail(err, errlen,
			    "ELF data encoding %u is not little endian",
			    eh->e_ident[EI_DATA]);
	if (eh->e_ident[EI_VERSION] != EV_CURRENT ||
	    eh->e_version != EV_CURRENT)
		return fail(err, errlen, "ELF version %u/%u is not %u",
			    eh->e_ident[EI_VERSION], eh->e_version, EV_CURRENT);
	if (eh->e_type != ET_EXEC)
		return fail(err, errlen, "ELF type %u is not ET_EXEC",
			    eh->e_type);
	if (eh->e_machine != EM_X86_64)
		return fail(err, errlen, "ELF machine %u is not x86-64 (%u)",
			    eh->e_machine, EM_X86_64);
	if (eh->e_phentsize != sizeof(Elf64_Phdr))
		return fail(err, errlen, "e_phentsize %u is not %zu",
			    eh->e_phentsize, sizeof(Elf64_Phdr));
	if (eh->e_phnum == 0)
		return fail(err, errlen, "no program headers");
	if (eh->e_phnum > LOADER_MAX_PHDRS)
		return fail(err, errlen, "%u program headers (at most %d)",
			    eh->e_phnum, LOADER_MAX_PHDRS);
	/* e_phnum <= LOADER_MAX_PHDRS and e_phentsize is 56: no overflow. */
	uint64_t tbl = (uint64_t)eh->e_phnum * eh->e_phentsize;

	if (eh->e_phoff > len || tbl > len - eh->e_phoff)
		return fail(err, errlen,
			    "program header table [0x%" PRIx64 ", +0x%" PRIx64
			    ") is outside the %zu-byte file",
			    eh->e_phoff, tbl, len);
	return 0;
}

static int check_phdr(const struct loader_config *cfg, const Elf64_Phdr *ph,
		      unsigned int i, size_t len, struct plan *p, char *err,
		      size_t errlen)
{
	if (ph->p_type == PT_INTERP || ph->p_type == PT_DYNAMIC)
		return fail(err, errlen,
			    "segment %u: the kernel must be statically linked",
			    i);
	if (ph->p_type != PT_LOAD)
		return 0;
	if (ph->p_filesz > ph->p_memsz)
		return fail(err, errlen,
			    "segment %u: p_filesz 0x%" PRIx64
			    " > p_memsz 0x%" PRIx64,
			    i, ph->p_filesz, ph->p_memsz);
	if (ph->p_offset > len || ph->p_filesz > len - ph->p_offset)
		return fail(err, errlen,
			    "segment %u: file range [0x%" PRIx64 ", +0x%" PRIx64
			    ") is outside the %zu-byte file",
			    i, ph->p_offset, ph->p_filesz, len);
	if (ph->p_memsz == 0)
		return 0; /* occupies nothing; not a place for e_entry either */
	if (ph->p_vaddr != ph->p_paddr)
		return fail(err, errlen,
			    "segment %u: p_vaddr 0x%" PRIx64
			    " != p_paddr 0x%" PRIx64,
			    i, ph->p_vaddr, ph->p_paddr);
	if (ph->p_paddr < LOADER_KERNEL_MIN_GPA)
		return fail(err, errlen,
			    "segment %u: p_paddr 0x%" PRIx64
			    " is below 1 MiB (0x%llx)",
			    i, ph->p_paddr, LOADER_KERNEL_MIN_GPA);
	if (ph->p_paddr >= LOADER_HIGH_RAM_BASE ||
	    ph->p_memsz > LOADER_HIGH_RAM_BASE - ph->p_paddr)
		return fail(err, errlen,
			    "segment %u: [0x%" PRIx64 ", +0x%" PRIx64
			    ") does not end below 4 GiB",
			    i, ph->p_paddr, ph->p_memsz);
	if (!ram_hva(cfg, ph->p_paddr, ph->p_memsz))
		return fail(err, errlen,
			    "segment %u: [0x%" PRIx64 ", 0x%" PRIx64
			    ") is not inside guest RAM",
			    i, ph->p_paddr, ph->p_paddr + ph->p_memsz);

	/* Both ends are below 4 GiB, so the sums below cannot overflow. */
	for (unsigned int k = 0; k < p->nr_segs; k++) {
		const struct seg *o = &p->segs[k];

		if (ph->p_paddr < o->gpa + o->memsz &&
		    o->gpa < ph->p_paddr + ph->p_memsz)
			return fail(err, errlen,
				    "segment %u: [0x%" PRIx64 ", 0x%" PRIx64
				    ") overlaps segment %u [0x%" PRIx64
				    ", 0x%" PRIx64 ")",
				    i, ph->p_paddr, ph->p_paddr + ph->p_memsz,
				    o->index, o->gpa, o->gpa + o->memsz);
	}
	p->segs[p->nr_segs++] = (struct seg){
		.index = i,
		.gpa = ph->p_paddr,
		.memsz = ph->p_memsz,
		.filesz = ph->p_filesz,
		.offset = ph->p_offset,
		.exec = (ph->p_flags & PF_X) != 0,
	};
	return 0;
}

/* Everything that can refuse the load happens here; nothing is written. */
static int plan(const struct loader_config *cfg, const uint8_t *elf, size_t len,
		struct plan *p, char *err, size_t errlen)
{
	Elf64_Ehdr eh;
	int ret;

	ret = check_config(cfg, p, err, errlen);
	if (ret < 0)
		return ret;
	if (!elf || len < sizeof(eh))
		return fail(err, errlen,
			    "file of %zu bytes is shorter than an ELF64 header",
			    len);
	/* The image may be unaligned: read headers by copy. */
	memcpy(&eh, elf, sizeof(eh));
	ret = check_ehdr(&eh, len, err, errlen);
	if (ret < 0)
		return ret;

	for (unsigned int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;

		memcpy(&ph, elf + eh.e_phoff + (uint64_t)i * sizeof(ph),
		       sizeof(ph));
		ret = check_phdr(cfg, &ph, i, len, p, err, errlen);
		if (ret < 0)
			return ret;
	}
	if (p->nr_segs == 0)
		return fail(err, errlen, "no loadable segment");

	for (unsigned int k = 0; k < p->nr_segs; k++) {
		const struct seg *s = &p->segs[k];

		if (s->exec && eh.e_entry >= s->gpa &&
		    eh.e_entry - s->gpa < s->memsz) {
			p->entry = eh.e_entry;
			return 0;
		}
	}
	return fail(err, errlen,
		    "e_entry 0x%" PRIx64 " is not inside an executable segment",
		    eh.e_entry);
}

static void put_u32(uint8_t *dst, uint32_t v)
{
	memcpy(dst, &v, sizeof(v));
}

static void put_u64(uint8_t *dst, uint64_t v)
{
	memcpy(dst, &v, sizeof(v));
}

/*
 * The identity map of [0, 4 GiB) with 2 MiB pages (SDM vol. 3, 4.5): one
 * PML4 entry, four PDPT entries, four full page directories. Supervisor
 * (U/S clear) and writable at every level; everything else zero.
 */
void loader_write_page_tables(const struct loader_config *cfg)
{
	uint8_t *pml4 = ram_hva(cfg, LOADER_PML4_GPA, PAGE_SIZE);
	uint8_t *pdpt = ram_hva(cfg, LOADER_PDPT_GPA, PAGE_SIZE);
	uint8_t *pd = ram_hva(cfg, LOADER_PD_GPA, PD_COUNT * PAGE_SIZE);

	MMUD_ASSERT(pml4 && pdpt && pd);
	memset(pml4, 0, PAGE_SIZE);
	memset(pdpt, 0, PAGE_SIZE);
	put_u64(pml4, LOADER_PDPT_GPA | PTE_P | PTE_W);
	for (unsigned int i = 0; i < PD_COUNT; i++)
		put_u64(pdpt + 8 * i,
			(LOADER_PD_GPA + i * PAGE_SIZE) | PTE_P | PTE_W);
	for (uint64_t i = 0; i < PD_COUNT * PD_ENTRIES; i++)
		put_u64(pd + 8 * i, (i * PAGE_2M) | PTE_P | PTE_W | PTE_PS);
}

static void write_gdt(const struct loader_config *cfg)
{
	uint8_t *gdt = ram_hva(cfg, LOADER_GDT_GPA, LOADER_GDT_LIMIT + 1);

	MMUD_ASSERT(gdt);
	put_u64(gdt, 0);
	put_u64(gdt + LOADER_CS, LOADER_GDT_CODE64);
	put_u64(gdt + LOADER_DS, LOADER_GDT_DATA);
}

static void write_bootinfo(const struct loader_config *cfg,
			   const struct plan *p)
{
	uint8_t *bi = ram_hva(cfg, LOADER_BOOTINFO_GPA, PAGE_SIZE);
	uint8_t *q;

	MMUD_ASSERT(bi);
	memset(bi, 0, PAGE_SIZE);
	put_u64(bi, LOADER_BOOTINFO_MAGIC);
	put_u32(bi + 8, LOADER_BOOTINFO_VERSION);
	put_u32(bi + 12, cfg->nr_vcpus);
	put_u32(bi + 16, cfg->nr_ram);
	put_u32(bi + 20, 0);
	q = bi + BOOTINFO_HDR_SIZE;
	for (unsigned int i = 0; i < cfg->nr_ram; i++) {
		put_u64(q, cfg->ram[i].gpa);
		put_u64(q + 8, cfg->ram[i].size);
		q += BOOTINFO_RANGE_SIZE;
	}
	put_u32(q, (uint32_t)p->cmdline_len);
	q += 4;
	if (p->cmdline_len)
		memcpy(q, cfg->cmdline, p->cmdline_len);
	q[p->cmdline_len] = '\0';
}

int loader_load(const struct loader_config *cfg, const void *elf, size_t len,
		struct loader_result *res, char *err, size_t errlen)
{
	struct plan p;
	const uint8_t *image = elf;
	int ret;

	p.nr_segs = 0;
	p.entry = 0;

	if (err && errlen > 0)
		err[0] = '\0';
	if (!cfg)
		return fail(err, errlen, "no configuration");
#if __STDC_HOSTED__
	if (bzimage_is(image, len))
		return bzimage_load(cfg, image, len, res, err, errlen);
#endif
	if (cfg->initrd_len)
		return fail(
			err, errlen,
			"an initrd needs a bzImage kernel, not an ELF file");
	ret = plan(cfg, image, len, &p, err, errlen);
	if (ret < 0)
		return ret;

	for (unsigned int k = 0; k < p.nr_segs; k++) {
		const struct seg *s = &p.segs[k];
		uint8_t *dst = ram_hva(cfg, s->gpa, s->memsz);

		MMUD_ASSERT(dst);
		memcpy(dst, image + s->offset, s->filesz);
		memset(dst + s->filesz, 0, s->memsz - s->filesz);
	}
	loader_write_page_tables(cfg);
	write_gdt(cfg);
	write_bootinfo(cfg, &p);
	if (res)
		*res = (struct loader_result){ .entry = p.entry };
	return 0;
}
