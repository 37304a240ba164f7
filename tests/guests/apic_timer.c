/*
 * apic_timer: the local APIC timer wakes a halted vCPU. vCPU 0 builds a
 * 256-entry IDT (the runtime's exception gates, and a handler for
 * TIMER_VECTOR that counts and writes EOI), software-enables its APIC
 * (SVR), and then, with interrupts enabled, sleeps in HLT while the
 * timer fires: first in periodic mode until TICKS interrupts came, then
 * once in one-shot mode. It checks that the interrupt was in service
 * (ISR) while the handler ran and that EOI cleared it, and that the
 * masked timer interrupts no more; last, that CR8 is TPR[7:4].
 * Registers as SDM vol. 3, 10.4, 10.5.4 and 10.8.6.1 say; every line of
 * the transcript is the same under any implementation of the
 * architecture.
 */
#include "rt.h"

#define APIC 0xfee00000UL
#define TIMER_VECTOR 0x40
#define TICKS 20

struct gate {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, reserved;
} __attribute__((packed));

struct idtr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

static struct gate idt[256] __attribute__((aligned(16)));
volatile uint64_t apic_ticks;
volatile uint32_t apic_isr_seen;

/* The handler: count, note whether our vector is in service (ISR word
 * 2 holds vectors 0x40-0x5f), EOI, return. */
extern char timer_entry[];
__asm__(".text\n"
	".globl timer_entry\n"
	"timer_entry:\n"
	"	push %rax\n"
	"	lock incq apic_ticks(%rip)\n"
	"	mov $0xfee00120, %eax\n"
	"	mov (%rax), %eax\n"
	"	mov %eax, apic_isr_seen(%rip)\n"
	"	mov $0xfee000b0, %eax\n"
	"	movl $0, (%rax)\n"
	"	pop %rax\n"
	"	iretq\n");

static uint32_t apic_read(uint32_t off)
{
	return *(volatile uint32_t *)(APIC + off);
}

static void apic_write(uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(APIC + off) = v;
}

static void install_idt(void)
{
	struct idtr old, new;
	uint64_t h = (uint64_t)timer_entry;
	uint16_t cs;

	__asm__ volatile("sidt %0" : "=m"(old));
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	memcpy(idt, (const void *)old.base, old.limit + 1);
	idt[TIMER_VECTOR] = (struct gate){
		.off0 = (uint16_t)h,
		.sel = cs,
		.type = 0x8e, /* present, DPL0, 64-bit interrupt gate */
		.off1 = (uint16_t)(h >> 16),
		.off2 = (uint32_t)(h >> 32),
	};
	new.limit = sizeof(idt) - 1;
	new.base = (uint64_t)idt;
	__asm__ volatile("lidt %0" ::"m"(new));
}

/* Sleeps in HLT until the tick count reaches n (sti; hlt: the wake-up
 * cannot slip between the two). */
static void wait_ticks(uint64_t n)
{
	while (apic_ticks < n)
		__asm__ volatile("sti; hlt; cli" ::: "memory");
}

int guest_main(unsigned int cpu)
{
	uint64_t after, cr8;

	if (cpu != 0)
		for (;;)
			__asm__ volatile("cli; hlt");
	install_idt();
	rt_printf("apic id %u\n", apic_read(0x20) >> 24);
	apic_write(0xf0, 0x1ff); /* SVR: enabled, spurious vector 0xff */
	apic_write(0x3e0, 0xb); /* divide by 1 */
	/* Periodic, 1 ms at the 1 GHz clock mmud and QEMU give the timer. */
	apic_write(0x320, TIMER_VECTOR | (1u << 17));
	apic_write(0x380, 1000000);
	wait_ticks(TICKS);
	apic_write(0x320, TIMER_VECTOR | (1u << 16)); /* masked */
	apic_write(0x380, 0);
	rt_printf("periodic: %s ticks, vector in service in the handler: "
		  "%s\n",
		  apic_ticks >= TICKS ? ">= 20" : "too few",
		  (apic_isr_seen >> (TIMER_VECTOR - 0x40)) & 1 ? "yes" : "no");
	rt_printf("after EOI: isr %#x, irr %#x\n", apic_read(0x120),
		  apic_read(0x220));

	/* One-shot: exactly one more interrupt, and the count stops. */
	after = apic_ticks;
	apic_write(0x320, TIMER_VECTOR);
	apic_write(0x380, 200000);
	/* A periodic tick pending from before the mask may come first:
	 * the one-shot's own ends with the count at 0. */
	while (apic_ticks < after + 1 || apic_read(0x390))
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	rt_printf("one-shot: fired, current count %u\n", apic_read(0x390));
	rt_printf("version %#x\n", apic_read(0x30) & 0xff);

	/* CR8 is TPR[7:4] in 64-bit mode (SDM vol. 3, 10.8.6.1). */
	apic_write(0x80, 0x5a);
	__asm__ volatile("mov %%cr8, %0" : "=r"(cr8));
	rt_printf("tpr 0x5a: cr8 %lu\n", cr8);
	__asm__ volatile("mov %0, %%cr8" ::"r"(3UL) : "memory");
	rt_printf("cr8 3: tpr %#x\n", apic_read(0x80));
	return 0;
}
