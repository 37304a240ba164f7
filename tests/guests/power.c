/*
 * power: the sleep/reset register at port 0x600 and the i8042 reset at
 * port 0x64 (docs/GUEST-ABI.md, "Sleep and reset registers"), for the
 * daemon's tests (tests/integration/test_power.py). The command line is
 * a list of actions done in order, across resets: the guest keeps its
 * place and its boot count at 16 MiB, which no reset reloads, prints
 * "power: boot N: ACTION" and does it. poweroff writes 0x34 (SLP_TYP 5, SLP_EN) to 0x600; reset
 * writes the FADT's reset value 1 to 0x600; i8042 writes 0xFE to 0x64;
 * s3 writes SLP_TYP 3 with SLP_EN, which the DSDT does not offer and the
 * register ignores; status reads 0x600. An action that did not end the
 * run prints "power: ACTION did nothing" and the guest goes on with the
 * next; after the last one it exits through the debug port with
 * 0. QEMU's pc machine has no device at 0x600, so this guest has no
 * QEMU reference (mmud only).
 */
#include "rt.h"

#define BOOTS ((volatile uint64_t *)0x1000000)
#define BOOTS_MAGIC 0x53544f4f42525750ULL /* "PWRBOOTS" */
#define SPIN 2000000

static const char *word_at(unsigned int n, char *buf, size_t len)
{
	const char *p = rt_boot.cmdline;
	size_t k = 0;

	for (;;) {
		while (*p == ' ')
			p++;
		if (!*p)
			return NULL;
		if (n-- == 0)
			break;
		while (*p && *p != ' ')
			p++;
	}
	while (*p && *p != ' ' && k + 1 < len)
		buf[k++] = *p++;
	buf[k] = '\0';
	return buf;
}

static bool is(const char *a, const char *b)
{
	return strlen(a) == strlen(b) && !memcmp(a, b, strlen(a));
}

/* Gives the VM time to act on a write before saying it did not. */
static void spin(void)
{
	for (volatile unsigned int i = 0; i < SPIN; i++)
		rt_pause();
}

int guest_main(unsigned int cpu)
{
	char action[32];
	uint64_t boot;

	if (cpu != 0)
		for (;;)
			__asm__ volatile("cli; hlt");
	/* BOOTS[1]: the next action's index; BOOTS[2]: boots so far. */
	if (BOOTS[0] != BOOTS_MAGIC) {
		BOOTS[0] = BOOTS_MAGIC;
		BOOTS[1] = 0;
		BOOTS[2] = 0;
	}
	boot = ++BOOTS[2];
	while (word_at((unsigned int)BOOTS[1], action, sizeof(action))) {
		BOOTS[1]++;
		rt_printf("power: boot %lu: %s\n", boot, action);
		if (is(action, "poweroff")) {
			rt_outb(0x600, 0x34);
		} else if (is(action, "reset")) {
			rt_outb(0x600, 1);
		} else if (is(action, "i8042")) {
			rt_outb(0x64, 0xfe);
		} else if (is(action, "s3")) {
			rt_outb(0x600, (3 << 2) | 0x20);
		} else if (is(action, "status")) {
			rt_printf("power: status 0x%02x\n", rt_inb(0x600));
		} else {
			rt_printf("power: unknown action\n");
			rt_outb(0xf4, 1);
		}
		spin();
		rt_printf("power: %s did nothing\n", action);
	}
	rt_printf("power: done\n");
	rt_outb(0xf4, 0);
	return 0;
}
