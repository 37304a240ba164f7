/*
 * Linux's 64-bit boot protocol (Documentation/arch/x86/boot.rst, "64-bit
 * Boot Protocol"; docs/GUEST-ABI.md, "Platform v2 boot"): recognising a
 * bzImage by its setup header, refusing one mmud cannot boot, and loading
 * it with its zero page (boot_params), e820 map, command line, initrd,
 * identity page tables, GDT and ACPI tables. core/loader.c calls it for
 * any image that is not an ELF file.
 */
#ifndef MMUD_BZIMAGE_H
#define MMUD_BZIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "loader.h"

/* Where mmud puts things below 1 MiB; [0, BZIMAGE_LOW_RESERVED_END) and
 * the ACPI tables are reserved in e820. */
#define BZIMAGE_BOOT_PARAMS_GPA 0x7000ULL /* the zero page */
#define BZIMAGE_CMDLINE_GPA 0x8000ULL
#define BZIMAGE_LOW_RESERVED_END 0x9000ULL
/* The boot GDT: __BOOT_CS and __BOOT_DS of the boot protocol. */
#define BZIMAGE_BOOT_CS 0x10
#define BZIMAGE_BOOT_DS 0x18
#define BZIMAGE_GDT_LIMIT 0x1f

/* Setup header fields, as offsets in the file and the zero page. */
#define BZ_SETUP_SECTS 0x1f1
#define BZ_SYSSIZE 0x1f4
#define BZ_BOOT_FLAG 0x1fe
#define BZ_JUMP 0x200
#define BZ_HEADER 0x202
#define BZ_VERSION 0x206
#define BZ_TYPE_OF_LOADER 0x210
#define BZ_LOADFLAGS 0x211
#define BZ_CODE32_START 0x214
#define BZ_RAMDISK_IMAGE 0x218
#define BZ_RAMDISK_SIZE 0x21c
#define BZ_CMD_LINE_PTR 0x228
#define BZ_INITRD_ADDR_MAX 0x22c
#define BZ_KERNEL_ALIGNMENT 0x230
#define BZ_RELOCATABLE 0x234
#define BZ_XLOADFLAGS 0x236
#define BZ_CMDLINE_SIZE 0x238
#define BZ_PREF_ADDRESS 0x258
#define BZ_INIT_SIZE 0x260
/* Zero-page fields outside the header (zero-page.rst). */
#define ZP_ACPI_RSDP_ADDR 0x070
#define ZP_EXT_RAMDISK_IMAGE 0x0c0
#define ZP_EXT_RAMDISK_SIZE 0x0c4
#define ZP_EXT_CMD_LINE_PTR 0x0c8
#define ZP_E820_ENTRIES 0x1e8
#define ZP_E820_TABLE 0x2d0
#define ZP_E820_MAX 128
#define ZP_SIZE 4096

#define BZ_MIN_VERSION 0x020c /* 2.12: xloadflags */
#define BZ_XLF_KERNEL_64 (1u << 0)
#define BZ_ENTRY64_OFFSET 0x200

#define E820_RAM 1
#define E820_RESERVED 2

/* Whether image looks like a bzImage (boot flag 0xAA55 or "HdrS"): only
 * then does bzimage_load() judge it, else it is an ELF file's to refuse. */
bool bzimage_is(const void *image, size_t len);

/*
 * Validates the image, the initrd and the layout before it writes a
 * byte, then loads the protected-mode part, the initrd, the zero page,
 * the command line, the page tables, the GDT and the ACPI tables. res
 * gets the 64-bit entry and the zero page's address. -EINVAL with the
 * reason in err, guest RAM untouched.
 */
int bzimage_load(const struct loader_config *cfg, const uint8_t *image,
		 size_t len, struct loader_result *res, char *err,
		 size_t errlen);

#endif
