/*
 * Unit tests of core/acpi.c and core/aml.c: the tables of
 * docs/GUEST-ABI.md, "Platform v2 ACPI tables" built into a buffer and
 * read back field by field (signatures, lengths, checksums, the
 * XSDT's pointers, the FADT's flags and registers, the MADT's entries,
 * the DSDT's devices), the AML encodings against hand-assembled bytes,
 * and every table but the RSDP (which our own test checks: iasl takes
 * only tables with the common header) given to acpica-tools'
 * disassembler (`iasl -d`), which must read it without an error or
 * warning. Without iasl the last test
 * is skipped, unless CI is set in the environment.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "acpi.h"
#include "aml.h"

#define BASE 0xe0000ULL
#define CAP 0x20000

static uint8_t buf[CAP];

static const struct acpi_virtio_mmio two_virtio[] = {
	{ 0xd0000000u, 0x200, 5 },
	{ 0xd0001000u, 0x200, 6 },
};

static uint16_t g16(const uint8_t *p, size_t off)
{
	uint16_t v;

	memcpy(&v, p + off, 2);
	return v;
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

static uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}

/* The table at guest address gpa, checked: signature, checksum. */
static const uint8_t *table(uint64_t gpa, const char *sig)
{
	const uint8_t *t;

	assert_true(gpa >= BASE && gpa < BASE + CAP);
	t = buf + (gpa - BASE);
	if (memcmp(t, sig, 4))
		fail_msg("table at 0x%llx is '%.4s', want %s",
			 (unsigned long long)gpa, (const char *)t, sig);
	assert_true(g32(t, 4) >= 36 && gpa - BASE + g32(t, 4) <= CAP);
	if (sum(t, g32(t, 4)) != 0)
		fail_msg("%s checksum: bytes sum to 0x%02x", sig,
			 sum(t, g32(t, 4)));
	return t;
}

static int build(unsigned int cpus, unsigned int nr_virtio,
		 struct acpi_layout *l)
{
	struct acpi_config cfg = { .nr_cpus = cpus,
				   .virtio = two_virtio,
				   .nr_virtio = nr_virtio };

	memset(buf, 0xee, sizeof(buf));
	return acpi_build(&cfg, BASE, buf, CAP, l);
}

static void test_acpi_rsdp_rev2_checksums(void **state)
{
	struct acpi_layout l;

	(void)state;
	assert_true(build(1, 0, &l) > 0);
	assert_memory_equal(buf, "RSD PTR ", 8);
	assert_int_equal(buf[15], 2);
	assert_int_equal(g32(buf, 20), 36);
	assert_int_equal(g32(buf, 16), 0);
	assert_int_equal(g64(buf, 24), BASE + l.xsdt);
	assert_int_equal(sum(buf, 20), 0);
	assert_int_equal(sum(buf, 36), 0);
}

static void test_acpi_xsdt_points_to_fadt_and_madt(void **state)
{
	struct acpi_layout l;
	const uint8_t *x;

	(void)state;
	assert_true(build(1, 0, &l) > 0);
	x = table(BASE + l.xsdt, "XSDT");
	assert_int_equal(g32(x, 4), 36 + 16);
	table(g64(x, 36), "FACP");
	table(g64(x, 44), "APIC");
}

static void test_acpi_fadt_hw_reduced_with_pm_registers(void **state)
{
	static const uint8_t gas_600[12] = { 1, 8, 0, 1, 0x00, 0x06 };
	struct acpi_layout l;
	const uint8_t *f;

	(void)state;
	assert_true(build(1, 0, &l) > 0);
	f = table(BASE + l.fadt, "FACP");
	assert_true(f[8] >= 5);
	assert_int_equal(g32(f, 112) & (1u << 20), 1u << 20); /* HW_REDUCED */
	assert_int_equal(g32(f, 112) & (1u << 10), 1u << 10); /* RESET_REG */
	/* IA-PC boot flags: VGA not present, CMOS RTC not present, no
	 * 8042, no legacy devices. */
	assert_int_equal(g16(f, 109), (1u << 2) | (1u << 5));
	assert_memory_equal(f + 116, gas_600, 12); /* RESET_REG */
	assert_int_equal(f[128], 1); /* RESET_VALUE */
	assert_memory_equal(f + 244, gas_600, 12); /* SLEEP_CONTROL_REG */
	assert_memory_equal(f + 256, gas_600, 12); /* SLEEP_STATUS_REG */
	assert_int_equal(g64(f, 140), BASE + l.dsdt); /* X_DSDT */
	assert_int_equal(g32(f, 40), BASE + l.dsdt);
	/* No fixed-hardware blocks in a hardware-reduced FADT. */
	for (size_t off = 56; off < 88; off++)
		assert_int_equal(f[off], 0);
	table(BASE + l.dsdt, "DSDT");
}

static void test_acpi_madt_lists_cpus_and_ioapic(void **state)
{
	struct acpi_layout l;
	const uint8_t *m, *e;

	(void)state;
	assert_true(build(3, 0, &l) > 0);
	m = table(BASE + l.madt, "APIC");
	assert_int_equal(g32(m, 36), 0xfee00000u);
	assert_int_equal(g32(m, 40), 0); /* no PCAT_COMPAT */
	e = m + 44;
	for (unsigned int i = 0; i < 3; i++, e += 8) {
		assert_int_equal(e[0], 0);
		assert_int_equal(e[1], 8);
		assert_int_equal(e[3], i);
		assert_int_equal(g32(e, 4), 1); /* enabled */
	}
	assert_int_equal(e[0], 1);
	assert_int_equal(e[1], 12);
	assert_int_equal(g32(e, 4), 0xfec00000u);
	assert_int_equal(g32(e, 8), 0);
	assert_ptr_equal(e + 12, m + g32(m, 4));
}

static const uint8_t *find(const uint8_t *hay, size_t len, const void *needle,
			   size_t n)
{
	for (size_t i = 0; i + n <= len; i++)
		if (!memcmp(hay + i, needle, n))
			return hay + i;
	return NULL;
}

static void test_acpi_dsdt_has_com1_s5_and_virtio(void **state)
{
	/* Name(_HID, EisaId("PNP0501")): the DWord 0x0105D041. */
	static const uint8_t hid[] = { 0x08, '_',  'H',	 'I',  'D',
				       0x0c, 0x41, 0xd0, 0x05, 0x01 };
	/* IO(Decode16, 0x3F8, 0x3F8, 0, 8), IRQNoFlags(){4}, end tag. */
	static const uint8_t crs[] = { 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00,
				       0x08, 0x22, 0x10, 0x00, 0x79, 0x00 };
	/* Name(\_S5, Package(4){5, 0, 0, 0}) */
	static const uint8_t s5[] = { 0x08, '\\', '_',	'S',  '5',  '_',  0x12,
				      0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00 };
	/* Memory32Fixed(ReadWrite, 0xD0001000, 0x200), Interrupt(
	 * ResourceConsumer, Edge, ActiveHigh, Exclusive){6} */
	static const uint8_t vr1[] = {
		0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00,
		0xd0, 0x00, 0x02, 0x00, 0x00, 0x89, 0x06,
		0x00, 0x03, 0x01, 0x06, 0x00, 0x00, 0x00
	};
	struct acpi_layout l;
	const uint8_t *d;
	size_t len;

	(void)state;
	assert_true(build(1, 0, &l) > 0);
	d = table(BASE + l.dsdt, "DSDT");
	len = g32(d, 4);
	assert_non_null(find(d, len, hid, sizeof(hid)));
	assert_non_null(find(d, len, crs, sizeof(crs)));
	assert_non_null(find(d, len, s5, sizeof(s5)));
	assert_null(find(d, len, "LNRO0005", 8));

	assert_true(build(1, 2, &l) > 0);
	d = table(BASE + l.dsdt, "DSDT");
	len = g32(d, 4);
	assert_non_null(find(d, len, "LNRO0005", 8));
	assert_non_null(find(d, len, "VR01", 4));
	assert_non_null(find(d, len, vr1, sizeof(vr1)));
}

static void test_acpi_bad_config_refused(void **state)
{
	struct acpi_config cfg = { .nr_cpus = 0 };
	struct acpi_virtio_mmio bad = { 0xd0000000u, 0x200, 24 };

	(void)state;
	assert_int_equal(acpi_build(&cfg, BASE, buf, CAP, NULL), -EINVAL);
	cfg.nr_cpus = ACPI_MAX_CPUS + 1;
	assert_int_equal(acpi_build(&cfg, BASE, buf, CAP, NULL), -EINVAL);
	cfg.nr_cpus = 1;
	cfg.virtio = &bad;
	cfg.nr_virtio = 1;
	assert_int_equal(acpi_build(&cfg, BASE, buf, CAP, NULL), -EINVAL);
	cfg.nr_virtio = 0;
	assert_int_equal(acpi_build(&cfg, BASE, buf, 100, NULL), -ENOSPC);
}

static void test_aml_pkglength_encodings(void **state)
{
	uint8_t out[4];

	(void)state;
	assert_int_equal(aml_pkglength(0x3e, out), 1);
	assert_int_equal(out[0], 0x3f);
	/* 0x3f + 2 = 0x41: two bytes, low nibble first. */
	assert_int_equal(aml_pkglength(0x3f, out), 2);
	assert_int_equal(out[0], 0x41);
	assert_int_equal(out[1], 0x04);
	assert_int_equal(aml_pkglength(0xffd, out), 2);
	assert_int_equal(aml_pkglength(0xffe, out), 3);
	assert_int_equal(out[0], 0x80 | 0x1);
	assert_int_equal(out[1], 0x00);
	assert_int_equal(out[2], 0x01);
	assert_int_equal(aml_pkglength(1u << 28, out), 0);
}

static void test_aml_long_scope_moves_body(void **state)
{
	uint8_t b[512];
	struct aml a;

	(void)state;
	aml_init(&a, b, sizeof(b));
	aml_scope_open(&a, "\\_SB_");
	for (int i = 0; i < 20; i++) {
		aml_name(&a, "ABCD");
		aml_integer(&a, 0x1234);
	}
	aml_close(&a);
	assert_int_equal(aml_error(&a), 0);
	/* ScopeOp, two-byte PkgLength of 1 + 2 + 5 + 20 * 8 = 168. */
	assert_int_equal(b[0], 0x10);
	assert_int_equal(a.len, 1 + 2 + 5 + 160);
	assert_int_equal(b[1], 0x40 | (167 & 0xf));
	assert_int_equal(b[2], 167 >> 4);
	assert_int_equal(b[3], '\\');
	assert_memory_equal(b + 8,
			    "\x08"
			    "ABCD\x0b\x34\x12",
			    8);

	aml_init(&a, b, 8);
	aml_scope_open(&a, "\\_SB_");
	aml_name(&a, "ABCD");
	aml_close(&a);
	assert_int_equal(aml_error(&a), -ENOSPC);
	aml_init(&a, b, sizeof(b));
	aml_name(&a, "TOOLONG");
	assert_int_equal(aml_error(&a), -EINVAL);
	aml_init(&a, b, sizeof(b));
	aml_scope_open(&a, "\\_SB_");
	assert_int_equal(aml_error(&a), -EINVAL); /* never closed */
}

static int run_iasl(const char *iasl, const char *dir, const char *file,
		    char *out, size_t outlen)
{
	char cmd[512];
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof(cmd), "cd %s && %s -d %s 2>&1", dir, iasl, file);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, outlen - 1, p);
	out[n] = '\0';
	return pclose(p);
}

static void write_file(const char *dir, const char *name, const void *p,
		       size_t len)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, len, f), len);
	fclose(f);
}

static void test_acpi_iasl_disassembles_every_table(void **state)
{
	const char *iasl = getenv("IASL");
	char dir[] = "/tmp/mmud-acpi-XXXXXX", out[16384], cmd[300];
	struct acpi_layout l;
	const struct {
		const char *name;
		size_t off;
	} * t, tables[] = {
		{ "xsdt.dat", 0 }, { "facp.dat", 0 }, { "apic.dat", 0 },
		{ "dsdt.dat", 0 }, { NULL, 0 },
	};
	size_t offs[4];

	(void)state;
	if (!iasl || !*iasl) {
		if (getenv("CI"))
			fail_msg("iasl (acpica-tools) is missing on CI");
		fprintf(stderr, "# skipped: iasl not found (apt-get install "
				"acpica-tools, or scripts/install-deps)\n");
		skip();
	}
	assert_true(build(2, 2, &l) > 0);
	offs[0] = l.xsdt;
	offs[1] = l.fadt;
	offs[2] = l.madt;
	offs[3] = l.dsdt;
	assert_non_null(mkdtemp(dir));
	for (t = tables; t->name; t++) {
		size_t off = offs[t - tables];
		size_t len = g32(buf + off, 4);
		int st;

		write_file(dir, t->name, buf + off, len);
		st = run_iasl(iasl, dir, t->name, out, sizeof(out));
		if (st != 0 || strstr(out, "Error") || strstr(out, "Warning") ||
		    strstr(out, "Invalid") || strstr(out, "ACPI Warning"))
			fail_msg("iasl -d %s: status %d:\n%s", t->name, st,
				 out);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_acpi_rsdp_rev2_checksums),
		cmocka_unit_test(test_acpi_xsdt_points_to_fadt_and_madt),
		cmocka_unit_test(test_acpi_fadt_hw_reduced_with_pm_registers),
		cmocka_unit_test(test_acpi_madt_lists_cpus_and_ioapic),
		cmocka_unit_test(test_acpi_dsdt_has_com1_s5_and_virtio),
		cmocka_unit_test(test_acpi_bad_config_refused),
		cmocka_unit_test(test_aml_pkglength_encodings),
		cmocka_unit_test(test_aml_long_scope_moves_body),
		cmocka_unit_test(test_acpi_iasl_disassembles_every_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
