/*
 * The ACPI tables of platform v2 (docs/GUEST-ABI.md, "Platform v2 ACPI
 * tables"): this file owns their layout and contents, table by table as
 * ACPI 6.4 chapter 5 ("ACPI Software Programming Model") defines them,
 * and the DSDT's AML through core/aml.c. Tables are laid out one after
 * the other from the RSDP, 16-byte aligned. It writes only the caller's
 * buffer; where it lands in guest RAM and how e820 reports it is the
 * bzImage loader's business (core/bzimage.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "acpi.h"
#include "aml.h"

#define SDT_HDR_LEN 36
#define RSDP_LEN 36
#define FADT_LEN 276 /* revision 6 (ACPI 6.4, table 5.9) */
#define FADT_REV 6
#define FADT_MINOR 4
#define MADT_REV 5

/* FADT fields (ACPI 6.4, table 5.9). */
#define FADT_DSDT 40
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS 112
#define FADT_RESET_REG 116
#define FADT_RESET_VALUE 128
#define FADT_MINOR_VERSION 131
#define FADT_X_DSDT 140
#define FADT_SLEEP_CONTROL 244
#define FADT_SLEEP_STATUS 256
#define FADT_HYPERVISOR_ID 268

#define BOOT_ARCH_VGA_NOT_PRESENT (1u << 2)
#define BOOT_ARCH_CMOS_RTC_NOT_PRESENT (1u << 5)
#define FADT_F_PWR_BUTTON (1u << 4) /* no fixed power button */
#define FADT_F_SLP_BUTTON (1u << 5) /* no fixed sleep button */
#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)

#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1

#define MADT_LAPIC 0
#define MADT_IOAPIC 1
#define MADT_LAPIC_ENABLED 1u

#define VIRTIO_MMIO_GSI_MAX 23 /* the IOAPIC's last pin */

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

uint8_t acpi_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum += p[i];
	return (uint8_t)-sum;
}

/* The common header of every table but the RSDP (ACPI 6.4, 5.2.6). */
static void sdt_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	t[9] = 0; /* checksum, set last */
	memcpy(t + 10, "MMUD  ", 6); /* OEM ID */
	memcpy(t + 16, "MMUDVM  ", 8); /* OEM table ID */
	put32(t + 24, 1); /* OEM revision */
	memcpy(t + 28, "MMUD", 4); /* creator ID */
	put32(t + 32, 1); /* creator revision */
}

static void sdt_finish(uint8_t *t)
{
	uint32_t len;

	memcpy(&len, t + 4, 4);
	t[9] = 0;
	t[9] = acpi_checksum(t, len);
}

/* A Generic Address Structure for one byte at an I/O port (ACPI 6.4,
 * 5.2.3.2). */
static void gas_io8(uint8_t *g, uint16_t port)
{
	g[0] = GAS_SYSTEM_IO;
	g[1] = 8; /* register bit width */
	g[2] = 0; /* bit offset */
	g[3] = GAS_ACCESS_BYTE;
	put64(g + 4, port);
}

static size_t align16(size_t v)
{
	return (v + 15) & ~(size_t)15;
}

static void build_fadt(uint8_t *t, uint64_t dsdt)
{
	memset(t, 0, FADT_LEN);
	sdt_header(t, "FACP", FADT_LEN, FADT_REV);
	/* The tables live below 1 MiB: both DSDT fields hold it. */
	put32(t + FADT_DSDT, (uint32_t)dsdt);
	put64(t + FADT_X_DSDT, dsdt);
	put16(t + FADT_IAPC_BOOT_ARCH,
	      BOOT_ARCH_VGA_NOT_PRESENT | BOOT_ARCH_CMOS_RTC_NOT_PRESENT);
	put32(t + FADT_FLAGS, FADT_F_HW_REDUCED_ACPI | FADT_F_RESET_REG_SUP |
				      FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON);
	gas_io8(t + FADT_RESET_REG, ACPI_PM_PORT);
	t[FADT_RESET_VALUE] = ACPI_RESET_VALUE;
	t[FADT_MINOR_VERSION] = FADT_MINOR;
	gas_io8(t + FADT_SLEEP_CONTROL, ACPI_PM_PORT);
	gas_io8(t + FADT_SLEEP_STATUS, ACPI_PM_PORT);
	memcpy(t + FADT_HYPERVISOR_ID, "MMUDMMUD", 8);
	sdt_finish(t);
}

static size_t madt_len(const struct acpi_config *cfg)
{
	return SDT_HDR_LEN + 8 + 8 * cfg->nr_cpus + 12;
}

static void build_madt(uint8_t *t, const struct acpi_config *cfg)
{
	size_t len = madt_len(cfg);
	uint8_t *e = t + SDT_HDR_LEN + 8;

	memset(t, 0, len);
	sdt_header(t, "APIC", (uint32_t)len, MADT_REV);
	put32(t + SDT_HDR_LEN, ACPI_LAPIC_GPA);
	put32(t + SDT_HDR_LEN + 4, 0); /* no PCAT_COMPAT: there is no 8259 */
	for (unsigned int i = 0; i < cfg->nr_cpus; i++, e += 8) {
		e[0] = MADT_LAPIC;
		e[1] = 8;
		e[2] = (uint8_t)i; /* ACPI processor UID */
		e[3] = (uint8_t)i; /* APIC ID = vCPU index */
		put32(e + 4, MADT_LAPIC_ENABLED);
	}
	e[0] = MADT_IOAPIC;
	e[1] = 12;
	e[2] = 0; /* I/O APIC ID */
	e[3] = 0;
	put32(e + 4, ACPI_IOAPIC_GPA);
	put32(e + 8, 0); /* GSI base */
	sdt_finish(t);
}

/* The DSDT's AML: COM1, the virtio-mmio devices and \_S5. */
static int build_dsdt_aml(struct aml *a, const struct acpi_config *cfg)
{
	aml_scope_open(a, "\\_SB_");

	aml_device_open(a, "COM1");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0501");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	aml_name(a, "_CRS");
	aml_rt_open(a);
	aml_rt_io(a, 0x3f8, 8);
	aml_rt_irq_noflags(a, ACPI_COM1_GSI);
	aml_rt_close(a);
	aml_close(a);

	for (unsigned int i = 0; i < cfg->nr_virtio; i++) {
		const struct acpi_virtio_mmio *v = &cfg->virtio[i];
		char name[8];

		snprintf(name, sizeof(name), "VR%02X", i & 0xffu);
		aml_device_open(a, name);
		aml_name(a, "_HID");
		aml_string(a, "LNRO0005");
		aml_name(a, "_UID");
		aml_integer(a, i);
		aml_name(a, "_CRS");
		aml_rt_open(a);
		aml_rt_mem32_fixed(a, v->base, v->size, true);
		aml_rt_interrupt_edge_high(a, v->gsi);
		aml_rt_close(a);
		aml_close(a);
	}
	aml_close(a);

	/* \_S5: SLP_TYPa 5, as the sleep control register expects. */
	aml_name(a, "\\_S5_");
	aml_package_open(a, 4);
	aml_integer(a, ACPI_S5_SLP_TYP);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_close(a);
	return aml_error(a);
}

int acpi_build(const struct acpi_config *cfg, gpa_t base, uint8_t *buf,
	       size_t cap, struct acpi_layout *layout)
{
	struct acpi_layout l;
	struct aml a;
	uint8_t *t;
	int r;

	if (cfg->nr_cpus == 0 || cfg->nr_cpus > ACPI_MAX_CPUS ||
	    cfg->nr_virtio > ACPI_MAX_VIRTIO)
		return -EINVAL;
	for (unsigned int i = 0; i < cfg->nr_virtio; i++)
		if (cfg->virtio[i].gsi > VIRTIO_MMIO_GSI_MAX ||
		    cfg->virtio[i].size == 0)
			return -EINVAL;
	if (base + cap > 0x100000000ULL)
		return -EINVAL; /* the RSDP's 32-bit fields and ours */

	l.xsdt = align16(RSDP_LEN);
	l.fadt = align16(l.xsdt + SDT_HDR_LEN + 2 * 8);
	l.madt = align16(l.fadt + FADT_LEN);
	l.dsdt = align16(l.madt + madt_len(cfg));
	if (l.dsdt + SDT_HDR_LEN > cap)
		return -ENOSPC;
	memset(buf, 0, l.dsdt);

	/* DSDT first: its length is only known once the AML is written. */
	t = buf + l.dsdt;
	aml_init(&a, t + SDT_HDR_LEN, cap - l.dsdt - SDT_HDR_LEN);
	r = build_dsdt_aml(&a, cfg);
	if (r < 0)
		return r;
	sdt_header(t, "DSDT", (uint32_t)(SDT_HDR_LEN + a.len), 2);
	sdt_finish(t);
	l.end = l.dsdt + SDT_HDR_LEN + a.len;

	build_fadt(buf + l.fadt, base + l.dsdt);
	build_madt(buf + l.madt, cfg);

	t = buf + l.xsdt;
	sdt_header(t, "XSDT", SDT_HDR_LEN + 2 * 8, 1);
	put64(t + SDT_HDR_LEN, base + l.fadt);
	put64(t + SDT_HDR_LEN + 8, base + l.madt);
	sdt_finish(t);

	/* RSDP (ACPI 6.4, 5.2.5.3): the first checksum covers 20 bytes,
	 * the extended one all 36. */
	t = buf;
	memcpy(t, "RSD PTR ", 8);
	memcpy(t + 9, "MMUD  ", 6);
	t[15] = 2; /* revision */
	put32(t + 16, 0); /* no RSDT */
	put32(t + 20, RSDP_LEN);
	put64(t + 24, base + l.xsdt);
	t[8] = acpi_checksum(t, 20);
	t[32] = acpi_checksum(t, RSDP_LEN);

	if (layout)
		*layout = l;
	return (int)l.end;
}
