/*
 * core/dev: the I/O APIC of platform v2 (docs/GUEST-ABI.md, "Platform
 * v2: what exists so far"), an I/O APIC of version 20H with 24 pins as the
 * 82093AA datasheet and the ICH I/O xAPIC describe it: the indirect
 * register window (IOREGSEL at offset 0, IOWIN at 10H), the ID, version
 * and arbitration registers, 24 redirection entries and the EOI register
 * at 40H. Like every device it knows nothing of vCPUs: an interrupt
 * message leaves through the deliver callback, and the local APICs'
 * broadcast EOI of a level-triggered vector comes back through
 * dev_ioapic_eoi().
 */
#ifndef MMUD_IOAPIC_H
#define MMUD_IOAPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEV_IOAPIC_BASE 0xfec00000ULL
#define DEV_IOAPIC_SIZE 0x1000
#define DEV_IOAPIC_PINS 24

/* MMIO offsets. */
#define IOAPIC_IOREGSEL 0x00
#define IOAPIC_IOWIN 0x10
#define IOAPIC_EOI 0x40

/* Indirect registers (through IOREGSEL). */
#define IOAPIC_REG_ID 0x00
#define IOAPIC_REG_VERSION 0x01
#define IOAPIC_REG_ARB 0x02
#define IOAPIC_REG_REDIR 0x10 /* entry n: low half 10H + 2n, high 11H + 2n */

/* Version 20H, maximum redirection entry 23 (bits 23:16). */
#define IOAPIC_VERSION_VALUE 0x00170020u

/* Redirection entry bits (82093AA datasheet, 3.2.4). */
#define IOAPIC_RTE_VECTOR 0xffULL
#define IOAPIC_RTE_DELMODE_SHIFT 8
#define IOAPIC_RTE_DELMODE (7ULL << 8)
#define IOAPIC_RTE_DESTMODE (1ULL << 11) /* 1: logical */
#define IOAPIC_RTE_DELIVS (1ULL << 12) /* read-only, always 0 here */
#define IOAPIC_RTE_POLARITY (1ULL << 13) /* 1: active low */
#define IOAPIC_RTE_REMOTE_IRR (1ULL << 14) /* read-only */
#define IOAPIC_RTE_LEVEL (1ULL << 15) /* 1: level-triggered */
#define IOAPIC_RTE_MASK (1ULL << 16)
#define IOAPIC_RTE_DEST_SHIFT 56
/* What a guest write can change: everything but the read-only bits and
 * the reserved bits 55:17. */
#define IOAPIC_RTE_WRITABLE 0xff0000000001afffULL

/* Delivery modes (bits 10:8). */
#define IOAPIC_DM_FIXED 0
#define IOAPIC_DM_LOWEST 1
#define IOAPIC_DM_SMI 2
#define IOAPIC_DM_NMI 4
#define IOAPIC_DM_INIT 5
#define IOAPIC_DM_EXTINT 7

/* One interrupt message, as the local APICs receive it. level is the
 * trigger mode the message carries: only fixed and lowest-priority
 * messages are ever level-triggered (SMI, NMI, INIT and ExtINT are
 * edge whatever the entry says, as the datasheet specifies). */
struct dev_ioapic_msg {
	uint8_t vector;
	uint8_t delivery_mode; /* IOAPIC_DM_* */
	uint8_t dest; /* 8-bit xAPIC destination */
	bool logical; /* destination mode */
	bool level; /* trigger mode */
	uint8_t pin;
};

/* Called without the I/O APIC's lock held, on the thread that changed a
 * pin, wrote a register or sent the EOI. */
typedef void (*dev_ioapic_deliver_fn)(void *ctx,
				      const struct dev_ioapic_msg *msg);

struct dev_ioapic;

/* In its power-on state. NULL means -ENOMEM. */
struct dev_ioapic *dev_ioapic_create(dev_ioapic_deliver_fn deliver, void *ctx);
void dev_ioapic_destroy(struct dev_ioapic *io);
/*
 * The RESET state: ID 0, every entry masked with its other bits 0,
 * IOREGSEL 0. The levels of the input pins are kept: they are the
 * devices' to change (each device's reset lowers its own line).
 */
void dev_ioapic_reset(struct dev_ioapic *io);

/*
 * An access at offset (0-0xfff) of the MMIO page, of size 1, 2, 4 or 8
 * bytes. IOREGSEL (8 bits wide, offset 0), IOWIN (offset 10H) and EOI
 * (offset 40H) are 32-bit registers reached byte by byte: a narrower
 * access touches only its bytes, and whatever falls outside them reads
 * 0 and ignores writes, as does an IOREGSEL index that names no
 * register (the architectural response to a bad index; nothing is
 * reported). Thread-safe; may call deliver.
 */
uint64_t dev_ioapic_mmio_read(struct dev_ioapic *io, uint32_t offset,
			      unsigned int size);
void dev_ioapic_mmio_write(struct dev_ioapic *io, uint32_t offset,
			   unsigned int size, uint64_t value);

/*
 * A device drives input pin to level (electrical: true is high; the
 * entry's polarity says which level asserts it). An edge-triggered pin
 * sends its message on the edge that asserts it, if unmasked (an edge
 * while masked is lost); a level-triggered pin sends while it is
 * asserted, unmasked and its remote IRR is clear, and the message sets
 * remote IRR. Pins >= DEV_IOAPIC_PINS are ignored. Thread-safe; may
 * call deliver.
 */
void dev_ioapic_set_irq(struct dev_ioapic *io, unsigned int pin, bool level);

/*
 * An EOI for vector: broadcast by a local APIC that ended a
 * level-triggered interrupt, or written to the EOI register. Clears
 * remote IRR of every entry with that vector, and sends again from a
 * level-triggered pin that is still asserted and unmasked.
 * Thread-safe; may call deliver.
 */
void dev_ioapic_eoi(struct dev_ioapic *io, uint8_t vector);

/* Whether pin's redirection entry is masked (true for pins >=
 * DEV_IOAPIC_PINS). Thread-safe. */
bool dev_ioapic_is_masked(struct dev_ioapic *io, unsigned int pin);

/* The registers, for x-query-ioapic and tests. */
struct dev_ioapic_state {
	uint8_t id, arb, ioregsel;
	uint32_t pin_levels; /* bit n: pin n is high */
	uint64_t redir[DEV_IOAPIC_PINS];
};
void dev_ioapic_save(struct dev_ioapic *io, struct dev_ioapic_state *st);
/*
 * Loads saved registers (migration). Refuses, changing nothing, with the
 * field named in err, what the I/O APIC could not hold: an ID over 15,
 * an arbitration ID other than the ID, pin levels beyond pin 23, an
 * entry with a reserved or delivery-status bit, or remote IRR on an
 * entry that is not level-triggered. Sends nothing: a level pin whose
 * message was pending is sent again when its line next changes or its
 * vector's EOI comes. Thread-safe.
 */
bool dev_ioapic_load(struct dev_ioapic *io, const struct dev_ioapic_state *st,
		     char *err, size_t errlen);

#endif
