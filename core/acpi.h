/*
 * The ACPI tables of platform v2 (docs/GUEST-ABI.md, "Platform v2 ACPI
 * tables"), built from the VM's configuration: RSDP (revision 2), XSDT,
 * a hardware-reduced FADT, the MADT and a DSDT generated from the
 * device list. Pure functions over a caller's buffer; the bzImage loader
 * writes the result into reserved guest RAM at ACPI_RSDP_GPA.
 */
#ifndef MMUD_ACPI_H
#define MMUD_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define ACPI_RSDP_GPA 0xe0000ULL
#define ACPI_AREA_END 0x100000ULL /* the tables fill [RSDP, 1 MiB) */
#define ACPI_AREA_SIZE (ACPI_AREA_END - ACPI_RSDP_GPA)

#define ACPI_LAPIC_GPA 0xfee00000u
#define ACPI_IOAPIC_GPA 0xfec00000u
#define ACPI_PM_PORT 0x600 /* sleep control/status and reset register */
#define ACPI_RESET_VALUE 1
#define ACPI_S5_SLP_TYP 5
#define ACPI_COM1_GSI 4
#define ACPI_MAX_VIRTIO 16
#define ACPI_MAX_CPUS 64

/* One virtio-mmio device in the DSDT (LNRO0005). */
struct acpi_virtio_mmio {
	uint32_t base;
	uint32_t size;
	uint32_t gsi;
};

struct acpi_config {
	/* Processor Local APIC entries, APIC IDs 0..nr_cpus-1, all
	 * enabled: only vCPUs that can be started are listed. */
	unsigned int nr_cpus;
	const struct acpi_virtio_mmio *virtio;
	unsigned int nr_virtio;
};

/* Offsets of each table from the RSDP, for tests and the loader. */
struct acpi_layout {
	size_t xsdt, fadt, madt, dsdt, end;
};

/*
 * Builds every table for a guest that finds the RSDP at gpa base into
 * buf (cap bytes, the RSDP at buf[0]). Returns the bytes used, or
 * -EINVAL (a configuration out of range: no CPU, too many CPUs or
 * devices) or -ENOSPC (cap too small); layout may be NULL.
 */
int acpi_build(const struct acpi_config *cfg, gpa_t base, uint8_t *buf,
	       size_t cap, struct acpi_layout *layout);

/* The checksum byte that, stored where a 0 is now, makes len bytes of p
 * sum to zero (ACPI 6.4, 5.2.5.3 and 5.2.6). */
uint8_t acpi_checksum(const uint8_t *p, size_t len);

#endif
