/*
 * forever: a guest that runs until the host stops it, for the daemon's
 * tests (tests/integration). vCPU 0 prints "forever: up, N vcpus"; then
 * every vCPU loops remapping a page of its own private page table
 * between two frames (PTE write, INVLPG, write through the mapping,
 * read back through the identity map), so the shadow MMU keeps working
 * while the control plane acts. vCPU 0 prints "tick N" every few
 * thousand rounds ("spam": every round, padded to 64 bytes a line, for
 * the console's replay limit). The command line picks an ending: "exit=V"
 * exits with V after tick 3, "crash" triple-faults after tick 3 (no IDT),
 * "halt" halts every vCPU with interrupts off after tick 3. The first line
 * says "fresh" when low memory and the guest's data are as the loader
 * left them (a word at 0x9000 and a variable both 0), then dirties both:
 * after system_reset the next boot must say "fresh" again.
 */
#include "rt.h"

#define WINDOW 0x40000000000ULL /* 4 TiB: outside the boot identity map */
#define ROUNDS_PER_TICK 2000

static bool has_word(const char *word, unsigned int *value)
{
	const char *p = rt_boot.cmdline;
	size_t n = strlen(word);

	while (*p) {
		while (*p == ' ')
			p++;
		if (!memcmp(p, word, n) &&
		    (p[n] == ' ' || p[n] == '\0' || p[n] == '=')) {
			if (value) {
				unsigned int v = 0;

				p += n;
				if (*p == '=')
					p++;
				while (*p >= '0' && *p <= '9')
					v = v * 10 + (unsigned int)(*p++ - '0');
				*value = v;
			}
			return true;
		}
		while (*p && *p != ' ')
			p++;
	}
	return false;
}

static volatile unsigned int ending; /* 0 none, 1 exit, 2 crash, 3 halt */
static volatile uint64_t boots;
#define LOW_MARK ((volatile uint64_t *)0x9000)

static __attribute__((noreturn)) void triple_fault(void)
{
	struct __attribute__((packed)) {
		uint16_t limit;
		uint64_t base;
	} idtr = { 0, 0 };

	__asm__ volatile("lidt %0; ud2" ::"m"(idtr));
	for (;;)
		;
}

int guest_main(unsigned int cpu)
{
	uint64_t root = pt_root_new(), frame[2], va = WINDOW + cpu * SIZE_2M;
	unsigned int exit_value = 0, tick = 0, per_tick = ROUNDS_PER_TICK;
	bool spam = has_word("spam", NULL);
	uint64_t round = 0;

	frame[0] = rt_phys_alloc(SIZE_4K, SIZE_4K);
	frame[1] = rt_phys_alloc(SIZE_4K, SIZE_4K);
	rt_write_cr3(root);
	if (cpu == 0) {
		if (has_word("exit", &exit_value))
			ending = 1;
		else if (has_word("crash", NULL))
			ending = 2;
		else if (has_word("halt", NULL))
			ending = 3;
		if (*LOW_MARK == 0 && boots == 0)
			rt_printf("forever: up, %u vcpus, fresh\n",
				  rt_boot.nr_vcpus);
		else
			rt_printf("forever: up, %u vcpus, NOT fresh (low %#lx, "
				  "boots %lu)\n",
				  rt_boot.nr_vcpus, *LOW_MARK, boots);
		*LOW_MARK = 0x600d;
		boots++;
		if (spam)
			per_tick = 1;
	}
	for (;;) {
		uint64_t f = frame[round & 1];
		volatile uint64_t *p = (volatile uint64_t *)va;

		pt_map(root, va, f, SIZE_4K, PTE_W);
		rt_invlpg(va);
		*p = round;
		if (*(volatile uint64_t *)f != round)
			rt_fail("vcpu %u: round %lu read back %#lx\n", cpu,
				round, *(volatile uint64_t *)f);
		round++;
		if (cpu != 0) {
			if (__atomic_load_n(&ending, __ATOMIC_RELAXED) == 4)
				__asm__ volatile("cli; hlt");
			continue;
		}
		if (round % per_tick)
			continue;
		if (spam)
			rt_printf(
				"tick %08u ......................................"
				"..................\n",
				++tick);
		else
			rt_printf("tick %u\n", ++tick);
		if (tick < 3 || !ending)
			continue;
		if (ending == 1)
			rt_exit((int)exit_value);
		if (ending == 2)
			triple_fault();
		__atomic_store_n(&ending, 4, __ATOMIC_RELAXED);
		__asm__ volatile("cli; hlt");
	}
}
