/*
 * apic_timer: the local APIC timer, periodic then one-shot, wakes HLT.
 *
 * NOTE: reconstructed from build-h3/tests/guests/apic_timer.elf (its
 * DWARF line table and strings) after the original source was
 * overwritten by mistake by another engineer's file of the same name
 * (now tests/guests/apic_periodic.c). Behaviour, strings and register
 * values are the original's; comments and layout are not. Please check
 * it against your own copy and replace it if you have one.
 */
#include "rt.h"

struct gate {
	uint16_t off0;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;
	uint16_t off1;
	uint32_t off2;
	uint32_t reserved;
} __attribute__((packed));

struct idtr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

static struct gate idt[256] __attribute__((aligned(16)));
volatile uint64_t apic_ticks;
volatile uint32_t apic_isr_seen;

void timer_entry(void);
__asm__(".text\n"
	".p2align 4\n"
	".globl timer_entry\n"
	"timer_entry:\n\t"
	"push %rax\n\t"
	"lock incq apic_ticks(%rip)\n\t"
	"mov $0xfee00120, %eax\n\t" /* ISR bits 32-63: vector 0x40 */
	"mov (%rax), %eax\n\t"
	"mov %eax, apic_isr_seen(%rip)\n\t"
	"mov $0xfee000b0, %eax\n\t" /* EOI */
	"movl $0, (%rax)\n\t"
	"pop %rax\n\t"
	"iretq\n");

static uint32_t apic_read(unsigned int reg)
{
	return *(volatile uint32_t *)(0xfee00000ULL + reg);
}

static void apic_write(unsigned int reg, uint32_t v)
{
	*(volatile uint32_t *)(0xfee00000ULL + reg) = v;
}

/* The runtime's 32 exception gates, then vector 0x40 to timer_entry. */
static void install_idt(void)
{
	struct idtr cur, idtr;
	uint64_t off = (uint64_t)timer_entry;
	uint16_t cs;

	__asm__ volatile("sidt %0" : "=m"(cur));
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	memcpy(idt, (const void *)cur.base, (size_t)cur.limit + 1);
	memset(&idt[0x40], 0, sizeof(idt[0x40]));
	idt[0x40].off0 = (uint16_t)off;
	idt[0x40].sel = cs;
	idt[0x40].type = 0x8e;
	idt[0x40].off1 = (uint16_t)(off >> 16);
	idt[0x40].off2 = (uint32_t)(off >> 32);
	idtr.limit = sizeof(idt) - 1;
	idtr.base = (uint64_t)idt;
	__asm__ volatile("lidt %0" ::"m"(idtr));
}

static void wait_ticks(uint64_t n)
{
	while (apic_ticks < n)
		__asm__ volatile("sti; hlt; cli" ::: "memory");
}

int guest_main(unsigned int cpu)
{
	uint64_t before;

	if (cpu != 0)
		for (;;)
			__asm__ volatile("cli; hlt");
	install_idt();
	rt_printf("apic id %u\n", apic_read(0x20) >> 24);
	apic_write(0xf0, 0x1ff); /* SVR: enabled, spurious vector 0xff */
	apic_write(0x3e0, 0xb); /* divide by 1 */
	apic_write(0x320, 0x20040); /* LVT timer: periodic, vector 0x40 */
	apic_write(0x380, 1000000); /* 1 ms */
	wait_ticks(20);
	apic_write(0x320, 0x10040); /* masked */
	apic_write(0x380, 0);
	rt_printf("periodic: %s ticks, vector in service in the handler: %s\n",
		  apic_ticks >= 20 ? ">= 20" : "too few",
		  apic_isr_seen & 1 ? "yes" : "no");
	rt_printf("after EOI: isr %#x, irr %#x\n", apic_read(0x120),
		  apic_read(0x220));
	before = apic_ticks;
	apic_write(0x320, 0x40); /* one-shot, vector 0x40 */
	apic_write(0x380, 200000); /* 200 us */
	while (apic_ticks < before + 1 || apic_read(0x390) != 0)
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	rt_printf("one-shot: fired, current count %u\n", apic_read(0x390));
	rt_printf("version %#x\n", apic_read(0x30) & 0xff);
	return 0;
}
