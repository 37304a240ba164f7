/*
 * A small emitter of ACPI Machine Language (ACPI 6.4, chapter 20, "ACPI
 * Machine Language (AML) Specification"): just what the DSDT of
 * docs/GUEST-ABI.md, "Platform v2 ACPI tables" needs (scopes, devices,
 * names, integers, strings, EISA ids, packages and resource templates
 * with I/O, IRQ, Memory32Fixed and extended Interrupt descriptors). It
 * writes into a caller's fixed buffer and never allocates: an overflow
 * is remembered and reported once at the end by aml_error().
 */
#ifndef MMUD_AML_H
#define MMUD_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AML_MAX_DEPTH 8

struct aml {
	uint8_t *buf;
	size_t cap, len;
	/* Where each open PkgLength-prefixed object starts its body. */
	size_t open[AML_MAX_DEPTH];
	unsigned int depth;
	bool overflow, bad;
};

void aml_init(struct aml *a, uint8_t *buf, size_t cap);
/* -ENOSPC after an overflow, -EINVAL after a malformed call (a bad name,
 * unbalanced open/close), else 0. */
int aml_error(const struct aml *a);

/*
 * Names are ASL-style paths: "\\_SB_", "COM1", "\\_SB_.COM1". Each
 * segment is one to four of A-Z, 0-9, '_' (the first not a digit),
 * padded with '_'.
 */
void aml_scope_open(struct aml *a, const char *name);
void aml_device_open(struct aml *a, const char *name);
/* Closes the last scope, device, package or buffer opened. */
void aml_close(struct aml *a);

/* Name(name, ...): follow with exactly one data object. */
void aml_name(struct aml *a, const char *name);
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* A compressed EISA id such as "PNP0501" (three letters, four hex
 * digits) as the DWord integer ASL's EisaId() makes. */
void aml_eisaid(struct aml *a, const char *id);
void aml_package_open(struct aml *a, uint8_t nr_elements);

/* ResourceTemplate(): a buffer of descriptors ended by aml_rt_close(),
 * which adds the End Tag (ACPI 6.4, 6.4.2.9). */
void aml_rt_open(struct aml *a);
void aml_rt_io(struct aml *a, uint16_t base, uint8_t len);
void aml_rt_irq_noflags(struct aml *a, unsigned int irq);
void aml_rt_mem32_fixed(struct aml *a, uint32_t base, uint32_t len,
			bool writable);
/* Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi } */
void aml_rt_interrupt_edge_high(struct aml *a, uint32_t gsi);
void aml_rt_close(struct aml *a);

/* Encodes a PkgLength for a body of len bytes (ACPI 6.4, 20.2.4) into
 * out (at most 4 bytes); returns how many bytes it took, 0 if too long. */
unsigned int aml_pkglength(size_t body_len, uint8_t out[4]);

#endif
