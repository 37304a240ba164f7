/*
 * The boot protocol of guest ABI v1 (docs/GUEST-ABI.md): validating and
 * loading an ELF64 kernel into guest RAM, writing low memory (identity page
 * tables, GDT, boot info) and the architectural state every vCPU starts
 * in. It knows guest memory only as host mappings of RAM ranges, so the
 * KVM reference runner and mmud's own VM load guests the same way.
 */
#ifndef MMUD_LOADER_H
#define MMUD_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

struct acpi_virtio_mmio;

/* Fixed addresses of the boot protocol. */
#define LOADER_GDT_GPA 0x500ULL
#define LOADER_GDT_LIMIT 0x17
#define LOADER_PML4_GPA 0x1000ULL
#define LOADER_PDPT_GPA 0x2000ULL
#define LOADER_PD_GPA 0x3000ULL /* four PDs: 0x3000-0x6fff */
#define LOADER_BOOTINFO_GPA 0x7000ULL
#define LOADER_KERNEL_MIN_GPA 0x100000ULL
#define LOADER_LOW_RAM_MAX (3ULL << 30)
#define LOADER_HIGH_RAM_BASE (4ULL << 30)
#define LOADER_CMDLINE_MAX 2048 /* bytes of text, the NUL not counted */
#define LOADER_MAX_RAM_RANGES 64 /* so the boot info fits its page */
#define LOADER_MAX_PHDRS 256
#define LOADER_BOOTINFO_MAGIC 0x544f4f4244554d4dULL /* "MMUDBOOT" */
#define LOADER_BOOTINFO_VERSION 1

/* Initial architectural state (docs/GUEST-ABI.md, "Entry state"). */
#define LOADER_CR0 0x80010033ULL /* PE|MP|ET|NE|WP|PG */
#define LOADER_CR4 0x20ULL /* PAE */
#define LOADER_EFER 0xd00ULL /* LME|LMA|NXE */
#define LOADER_CS 0x08
#define LOADER_DS 0x10
#define LOADER_GDT_CODE64 0x00af9b000000ffffULL
#define LOADER_GDT_DATA 0x00cf93000000ffffULL
#define LOADER_TSS_LIMIT 0x67
#define LOADER_RFLAGS 0x2ULL

/* One range of guest RAM and where the host has it mapped. */
struct loader_ram {
	gpa_t gpa;
	uint64_t size;
	void *hva;
};

struct loader_config {
	const struct loader_ram *ram; /* sorted by gpa, not overlapping */
	unsigned int nr_ram;
	uint32_t nr_vcpus;
	const char *cmdline; /* NULL means empty */
	/* The initial RAM disk of a bzImage (an ELF kernel takes none). */
	const void *initrd;
	size_t initrd_len;
	/* A bzImage's virtio-mmio devices, listed in its DSDT (struct
	 * acpi_virtio_mmio, core/acpi.h). */
	const struct acpi_virtio_mmio *virtio;
	unsigned int nr_virtio;
};

struct loader_result {
	gva_t entry;
	/* A bzImage: enter with Linux's 64-bit boot protocol (RSI =
	 * boot_params, CS/DS = BZIMAGE_BOOT_CS/DS); only vCPU 0 starts. */
	bool linux64;
	gpa_t boot_params;
	gpa_t kernel_gpa; /* where the protected-mode part was loaded */
	gpa_t initrd_gpa; /* 0 without an initrd */
};

/*
 * An ELF file boots through guest ABI v1 as below; an image with a Linux
 * setup header through core/bzimage.c (Linux's 64-bit boot protocol).
 *
 * Validates the whole image before it writes a byte, then copies every
 * PT_LOAD segment, zeroes p_memsz beyond p_filesz, and writes the page
 * tables, GDT and boot info of low memory. RAM ranges must each be
 * non-empty and mapped, at most LOADER_MAX_RAM_RANGES of them, and one
 * range must hold [0, 1 MiB). The boot info's cmdline_len is the length of
 * the command line without its NUL (at most LOADER_CMDLINE_MAX).
 *
 * Returns 0, or -EINVAL for a refused image or configuration (bad ELF,
 * command line too long, RAM layout the protocol cannot use). On failure
 * err (if errlen > 0) holds a message naming the problem, always
 * NUL-terminated, and guest RAM is untouched.
 */
int loader_load(const struct loader_config *cfg, const void *elf, size_t len,
		struct loader_result *res, char *err, size_t errlen);

/* For core/bzimage.c: the host address of guest [gpa, gpa + len) if one
 * RAM range holds it all, else NULL; the identity map of [0, 4 GiB) at
 * LOADER_PML4_GPA; the range checks of cfg (RAM, low memory, command
 * line length, written to *cmdline_len). */
void *loader_ram_hva(const struct loader_config *cfg, gpa_t gpa, uint64_t len);
void loader_write_page_tables(const struct loader_config *cfg);
int loader_check_config(const struct loader_config *cfg, size_t *cmdline_len,
			char *err, size_t errlen);

#endif
