/*
 * core/dev: the guest's devices. Each device is a small object the VM
 * owns and wires to the port-I/O or MMIO space; devices know nothing of
 * vCPUs or the MMU. Output leaves through callbacks the VM provides.
 */
#ifndef MMUD_DEV_H
#define MMUD_DEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- COM1: an 8250/16550 UART ---------------------------------------- */

#define DEV_COM1_BASE 0x3f8
#define DEV_COM1_PORTS 8

/* Receives every byte the guest transmits, in order. */
typedef void (*dev_serial_out_fn)(void *ctx, const char *buf, size_t len);

struct dev_serial;

/* NULL means -ENOMEM. */
struct dev_serial *dev_serial_create(dev_serial_out_fn out, void *ctx);
void dev_serial_destroy(struct dev_serial *s);
/* Back to the power-on register values (system_reset); lowers the
 * interrupt line. */
void dev_serial_reset(struct dev_serial *s);
/*
 * The UART's interrupt line (the 16550's INTRPT output): irq(ctx, level)
 * is called whenever it changes, with the UART's lock held and in the
 * order of the changes, from whichever thread changed it (a vCPU's port
 * access, the host side's input, reset, load). Connect it once, before
 * the guest runs; it is driven low at once. On platform v2 it is IOAPIC
 * pin 4, edge-triggered (docs/GUEST-ABI.md, "COM1").
 */
typedef void (*dev_serial_irq_fn)(void *ctx, bool level);
void dev_serial_connect_irq(struct dev_serial *s, dev_serial_irq_fn irq,
			    void *ctx);
/* Whether input from the host side would raise an interrupt (IER enables
 * received data): the UART is then a wake source for a halted guest.
 * Thread-safe. */
bool dev_serial_input_interrupts(struct dev_serial *s);
/* A port access at offset 0..7 from the base; size 1, 2 or 4 (wider
 * accesses act on consecutive registers). Thread-safe. */
void dev_serial_pio(struct dev_serial *s, unsigned int offset,
		    unsigned int size, bool in, uint32_t *value);

/* Bytes the receive queue holds at most. */
#define DEV_SERIAL_RX_SIZE 4096
/* Queues input for the guest to read from RBR; returns how many bytes
 * fitted (the rest is the caller's to offer again). Thread-safe. */
size_t dev_serial_receive(struct dev_serial *s, const void *buf, size_t len);

/*
 * COM1's state for migration (docs/MIGRATION.md, "COM1"): its registers
 * and the receive queue, oldest byte first. dev_serial_load() refuses
 * (false, nothing changed, the field named in err) a value the UART
 * could not hold: IER bits 4-7, MCR bits 5-7, FCR bit 1, a queue over
 * DEV_SERIAL_RX_SIZE. It drops the FCR bits the UART does not keep (2,
 * 4, 5; all of them when bit 0 is clear), takes a THR-empty interrupt as
 * pending when IER enables it (the state does not carry the latch),
 * and drives the interrupt line to match. Thread-safe.
 */
struct dev_serial_state {
	uint8_t ier, lcr, mcr, scr, fcr;
	uint16_t divisor;
	uint32_t rx_len;
	uint8_t rx[DEV_SERIAL_RX_SIZE];
};
void dev_serial_save(struct dev_serial *s, struct dev_serial_state *st);
bool dev_serial_load(struct dev_serial *s, const struct dev_serial_state *st,
		     char *err, size_t errlen);

/*
 * COM1's interrupt latches, which struct dev_serial_state does not carry
 * (docs/MIGRATION.md, "VM interrupt state"): the THR-empty interrupt
 * latch and the MSR delta bits 0-3 since the guest last read MSR.
 * dev_serial_load_irq() refuses (false, nothing changed) delta bits
 * 4-7, then drives the interrupt line to match. Thread-safe.
 */
struct dev_serial_irq_state {
	bool thre_pending;
	uint8_t msr_delta;
};
void dev_serial_save_irq(struct dev_serial *s, struct dev_serial_irq_state *st);
bool dev_serial_load_irq(struct dev_serial *s,
			 const struct dev_serial_irq_state *st, char *err,
			 size_t errlen);

/* ---- the debug-exit port (QEMU's isa-debug-exit) --------------------- */

#define DEV_DEBUG_EXIT_PORT 0xf4

/* The status mmud exits with when the guest writes v to the port
 * (docs/GUEST-ABI.md, "Debug exit"): ((v << 1) | 1) & 0xff. */
static inline int dev_debug_exit_status(uint32_t v)
{
	return (int)(((v << 1) | 1) & 0xff);
}

#endif
