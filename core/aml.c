/*
 * The AML emitter of core/aml.h: opcodes and encodings from ACPI 6.4,
 * chapter 20 ("ACPI Machine Language (AML) Specification"), resource
 * descriptors from ACPI 6.4, 6.4 ("Resource Data Types for ACPI"). Objects
 * that carry a PkgLength reserve its longest form (4 bytes) when opened
 * and are moved down to the shortest form when closed, as the compiler
 * emits them. It knows nothing of tables: core/acpi.c wraps the result in
 * a DSDT header.
 */
#include <errno.h>
#include <string.h>

#include "aml.h"

#define AML_ZERO_OP 0x00
#define AML_ONE_OP 0x01
#define AML_NAME_OP 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX 0x0e
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_DUAL_NAME_PREFIX 0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_ROOT_CHAR 0x5c
#define AML_EXT_OP_PREFIX 0x5b
#define AML_DEVICE_OP 0x82 /* after AML_EXT_OP_PREFIX */

/* Small and large resource descriptors (ACPI 6.4, 6.4.2 and 6.4.3). */
#define RES_IRQ_NOFLAGS 0x22 /* tag 0x04, two bytes */
#define RES_IO 0x47 /* tag 0x08, seven bytes */
#define RES_END_TAG 0x79 /* tag 0x0f, one byte */
#define RES_MEM32_FIXED 0x86
#define RES_EXT_IRQ 0x89

#define PKGLEN_RESERVED 4

/* What the open object at each depth is: buffers get a size operand. */
enum open_kind { OPEN_PKG, OPEN_BUFFER };

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->buf = buf;
	a->cap = cap;
}

int aml_error(const struct aml *a)
{
	if (a->overflow)
		return -ENOSPC;
	if (a->bad || a->depth)
		return -EINVAL;
	return 0;
}

static void put(struct aml *a, const void *p, size_t n)
{
	if (a->overflow || n > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void put8(struct aml *a, uint8_t v)
{
	put(a, &v, 1);
}

static void put16(struct aml *a, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	put(a, b, 2);
}

static void put32(struct aml *a, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			 (uint8_t)(v >> 24) };

	put(a, b, 4);
}

static bool is_lead(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(char c)
{
	return is_lead(c) || (c >= '0' && c <= '9');
}

/* NameString (ACPI 6.4, 20.2.2): an optional root prefix and segments. */
static void put_name(struct aml *a, const char *name)
{
	uint8_t segs[AML_MAX_DEPTH][4];
	unsigned int n = 0;
	const char *p = name;

	if (*p == '\\') {
		put8(a, AML_ROOT_CHAR);
		p++;
	}
	while (*p) {
		unsigned int k = 0;

		if (n == AML_MAX_DEPTH || !is_lead(*p)) {
			a->bad = true;
			return;
		}
		while (*p && *p != '.') {
			if (k == 4 || !is_name_char(*p)) {
				a->bad = true;
				return;
			}
			segs[n][k++] = (uint8_t)*p++;
		}
		while (k < 4)
			segs[n][k++] = '_';
		n++;
		if (*p == '.' && !*++p) {
			a->bad = true;
			return;
		}
	}
	if (n == 0) {
		put8(a, AML_ZERO_OP); /* NullName */
		return;
	}
	if (n == 2) {
		put8(a, AML_DUAL_NAME_PREFIX);
	} else if (n > 2) {
		put8(a, AML_MULTI_NAME_PREFIX);
		put8(a, (uint8_t)n);
	}
	put(a, segs, 4 * n);
}

unsigned int aml_pkglength(size_t body_len, uint8_t out[4])
{
	unsigned int n;
	size_t total;

	if (body_len + 1 < 0x40) {
		out[0] = (uint8_t)(body_len + 1);
		return 1;
	}
	for (n = 2; n <= 4; n++) {
		total = body_len + n;
		if (total < (1ULL << (4 + 8 * (n - 1))))
			break;
	}
	if (n > 4)
		return 0;
	out[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
	for (unsigned int i = 1; i < n; i++)
		out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	return n;
}

static void open_pkg(struct aml *a, enum open_kind kind)
{
	static const uint8_t zeros[PKGLEN_RESERVED];

	if (a->depth == AML_MAX_DEPTH) {
		a->bad = true;
		return;
	}
	put(a, zeros, PKGLEN_RESERVED);
	/* The low bit of the recorded offset says a buffer is open. */
	a->open[a->depth++] = (a->len << 1) | (kind == OPEN_BUFFER);
}

void aml_close(struct aml *a)
{
	uint8_t pl[4], size_op[5];
	unsigned int npl, nsize = 0;
	size_t body, start, data;

	if (a->depth == 0) {
		a->bad = true;
		return;
	}
	a->depth--;
	if (a->overflow)
		return;
	body = a->open[a->depth] >> 1;
	start = body - PKGLEN_RESERVED;
	data = a->len - body;
	if (a->open[a->depth] & 1) {
		/* Buffer: BufferSize, a TermArg, before the bytes. */
		if (data <= 0xff) {
			size_op[0] = AML_BYTE_PREFIX;
			size_op[1] = (uint8_t)data;
			nsize = 2;
		} else {
			size_op[0] = AML_WORD_PREFIX;
			size_op[1] = (uint8_t)data;
			size_op[2] = (uint8_t)(data >> 8);
			nsize = 3;
		}
	}
	npl = aml_pkglength(data + nsize, pl);
	if (npl == 0) {
		a->bad = true;
		return;
	}
	if (npl + nsize > PKGLEN_RESERVED &&
	    npl + nsize - PKGLEN_RESERVED > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	memmove(a->buf + start + npl + nsize, a->buf + body, data);
	memcpy(a->buf + start, pl, npl);
	memcpy(a->buf + start + npl, size_op, nsize);
	a->len = start + npl + nsize + data;
}

void aml_scope_open(struct aml *a, const char *name)
{
	put8(a, AML_SCOPE_OP);
	open_pkg(a, OPEN_PKG);
	put_name(a, name);
}

void aml_device_open(struct aml *a, const char *name)
{
	put8(a, AML_EXT_OP_PREFIX);
	put8(a, AML_DEVICE_OP);
	open_pkg(a, OPEN_PKG);
	put_name(a, name);
}

void aml_name(struct aml *a, const char *name)
{
	put8(a, AML_NAME_OP);
	put_name(a, name);
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		put8(a, AML_ZERO_OP);
	} else if (v == 1) {
		put8(a, AML_ONE_OP);
	} else if (v <= 0xff) {
		put8(a, AML_BYTE_PREFIX);
		put8(a, (uint8_t)v);
	} else if (v <= 0xffff) {
		put8(a, AML_WORD_PREFIX);
		put16(a, (uint16_t)v);
	} else if (v <= 0xffffffff) {
		put8(a, AML_DWORD_PREFIX);
		put32(a, (uint32_t)v);
	} else {
		put8(a, AML_QWORD_PREFIX);
		put32(a, (uint32_t)v);
		put32(a, (uint32_t)(v >> 32));
	}
}

void aml_string(struct aml *a, const char *s)
{
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p > 0x7f)
			a->bad = true; /* AsciiCharList: 0x01-0x7f */
	put8(a, AML_STRING_PREFIX);
	put(a, s, strlen(s) + 1);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = 0;

	if (strlen(id) != 7) {
		a->bad = true;
		return;
	}
	for (unsigned int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			a->bad = true;
			return;
		}
		v |= (uint32_t)((id[i] - 0x40) & 0x1f) << (26 - 5 * i);
	}
	for (unsigned int i = 3; i < 7; i++) {
		int d = hex_digit(id[i]);

		if (d < 0) {
			a->bad = true;
			return;
		}
		v |= (uint32_t)d << (4 * (6 - i));
	}
	/* The compressed id is stored big endian in the DWord. */
	aml_integer(a, __builtin_bswap32(v));
}

void aml_package_open(struct aml *a, uint8_t nr_elements)
{
	put8(a, AML_PACKAGE_OP);
	open_pkg(a, OPEN_PKG);
	put8(a, nr_elements);
}

void aml_rt_open(struct aml *a)
{
	put8(a, AML_BUFFER_OP);
	open_pkg(a, OPEN_BUFFER);
}

void aml_rt_io(struct aml *a, uint16_t base, uint8_t len)
{
	put8(a, RES_IO);
	put8(a, 1); /* decodes 16 address bits */
	put16(a, base); /* minimum */
	put16(a, base); /* maximum */
	put8(a, 0); /* alignment */
	put8(a, len);
}

void aml_rt_irq_noflags(struct aml *a, unsigned int irq)
{
	if (irq > 15) {
		a->bad = true;
		return;
	}
	put8(a, RES_IRQ_NOFLAGS);
	put16(a, (uint16_t)(1u << irq));
}

void aml_rt_mem32_fixed(struct aml *a, uint32_t base, uint32_t len,
			bool writable)
{
	put8(a, RES_MEM32_FIXED);
	put16(a, 9);
	put8(a, writable ? 1 : 0);
	put32(a, base);
	put32(a, len);
}

void aml_rt_interrupt_edge_high(struct aml *a, uint32_t gsi)
{
	put8(a, RES_EXT_IRQ);
	put16(a, 6);
	/* Consumer (bit 0), edge (bit 1); active high and exclusive are
	 * the zero bits 2 and 3. */
	put8(a, 0x03);
	put8(a, 1); /* one interrupt */
	put32(a, gsi);
}

void aml_rt_close(struct aml *a)
{
	put8(a, RES_END_TAG);
	put8(a, 0); /* checksum 0: "treat as correct" */
	aml_close(a);
}
