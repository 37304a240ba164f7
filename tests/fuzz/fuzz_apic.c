/*
 * Fuzz target for the interrupt controllers' register interfaces: the
 * input is a sequence of 8-byte operations on one local APIC
 * (core/dev/lapic.c) and one I/O APIC (core/dev/ioapic.c) wired
 * together as a VM wires them (the I/O APIC's messages go to the local
 * APIC when it is a destination): MMIO reads and writes of any offset
 * and size, pin levels, EOIs, taking interrupts and advancing host
 * time. Nothing may crash or trip a sanitizer, and what the guest can
 * never change stays as the datasheets say: the I/O APIC's reserved
 * and read-only entry bits, its version register, a 4-bit ID with the
 * arbitration ID following it, and the local APIC offering only
 * vectors 16-255.
 *
 * Operation: byte 0 the kind (mod 8), bytes 1-2 an offset (little
 * endian), byte 3 a size selector, bytes 4-7 a value.
 */
#include <stdlib.h>
#include <string.h>

#include "ioapic.h"
#include "lapic.h"
#include "replay.h"

struct rig {
	struct dev_lapic *lapic;
	struct dev_ioapic *ioapic;
	uint64_t now;
};

static void deliver(void *ctx, const struct dev_ioapic_msg *msg)
{
	struct rig *r = ctx;

	if ((msg->delivery_mode == IOAPIC_DM_FIXED ||
	     msg->delivery_mode == IOAPIC_DM_LOWEST) &&
	    dev_lapic_match(r->lapic, msg->dest, msg->logical))
		dev_lapic_accept(r->lapic, msg->vector, msg->level);
}

static void check(struct rig *r)
{
	struct dev_ioapic_state st;
	int v = dev_lapic_pending(r->lapic);

	if (v != -1 && (v < 16 || v > 255))
		abort();
	dev_ioapic_save(r->ioapic, &st);
	if (st.id > 15 || st.arb != st.id)
		abort();
	for (unsigned int i = 0; i < DEV_IOAPIC_PINS; i++) {
		uint64_t e = st.redir[i];

		if (e & ~(IOAPIC_RTE_WRITABLE | IOAPIC_RTE_REMOTE_IRR))
			abort();
		/* Only a level entry waits for an EOI. */
		if ((e & IOAPIC_RTE_REMOTE_IRR) && !(e & IOAPIC_RTE_LEVEL))
			abort();
	}
}

static void run_op(struct rig *r, const uint8_t *op)
{
	static const unsigned int sizes[8] = { 1, 2, 4, 8, 4, 4, 3, 16 };
	uint32_t off = (uint32_t)op[1] | (uint32_t)op[2] << 8;
	unsigned int size = sizes[op[3] & 7];
	uint32_t val = (uint32_t)op[4] | (uint32_t)op[5] << 8 |
		       (uint32_t)op[6] << 16 | (uint32_t)op[7] << 24;
	int v;

	switch (op[0] & 7) {
	case 0:
		dev_lapic_mmio_read(r->lapic, off & 0x1fff, size, r->now);
		break;
	case 1:
		dev_lapic_mmio_write(r->lapic, off & 0x1fff, size, val, r->now);
		break;
	case 2:
		dev_ioapic_mmio_read(r->ioapic, off & 0x1fff, size);
		break;
	case 3:
		dev_ioapic_mmio_write(r->ioapic, off & 0x1fff, size,
				      (uint64_t)val << 32 | val);
		break;
	case 4:
		dev_ioapic_set_irq(r->ioapic, op[1] % 32, op[3] & 1);
		break;
	case 5:
		dev_ioapic_eoi(r->ioapic, op[4]);
		break;
	case 6:
		/* The CPU takes an interrupt, then (bit 0 of byte 3) ends
		 * it: the EOI a handler writes, and the broadcast EOI a
		 * level-triggered vector sends to the I/O APIC. */
		v = dev_lapic_ack(r->lapic);
		if (v >= 0 && (op[3] & 1)) {
			dev_lapic_mmio_write(r->lapic, LAPIC_EOI, 4, 0, r->now);
			dev_ioapic_eoi(r->ioapic, (uint8_t)v);
		}
		break;
	default:
		r->now += val;
		dev_lapic_advance(r->lapic, r->now);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rig r = { .now = 1000000000ULL };

	r.lapic = dev_lapic_create(0, NULL, NULL);
	r.ioapic = dev_ioapic_create(deliver, &r);
	if (!r.lapic || !r.ioapic)
		abort();
	for (size_t i = 0; i + 8 <= size; i += 8) {
		run_op(&r, data + i);
		check(&r);
	}
	/* The version register is read-only whatever came before. */
	dev_ioapic_mmio_write(r.ioapic, IOAPIC_IOREGSEL, 4, IOAPIC_REG_VERSION);
	if (dev_ioapic_mmio_read(r.ioapic, IOAPIC_IOWIN, 4) !=
	    IOAPIC_VERSION_VALUE)
		abort();
	dev_ioapic_destroy(r.ioapic);
	dev_lapic_destroy(r.lapic);
	return 0;
}
