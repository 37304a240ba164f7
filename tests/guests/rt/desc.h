/*
 * The descriptor-table formats the runtime writes (cpu.c's GDT and
 * exception IDT, irq.c's 256-entry IDT): a 64-bit IDT gate (SDM vol. 3,
 * 6.14.1) and the pseudo-descriptor LGDT/LIDT/SIDT take (3.5.1).
 */
#ifndef RT_DESC_H
#define RT_DESC_H

#include <stdint.h>

struct idt_gate {
	uint16_t off0;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;
	uint16_t off1;
	uint32_t off2;
	uint32_t reserved;
} __attribute__((packed));

struct desc_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

#endif
