/*
 * Fuzz target for the software CPU's front end and executor: the input is
 * decoded by the soft decoder (every prefix of it), then run as code at
 * 0x1000 in a CPU over 2 MiB of identity-mapped guest memory with no IDT
 * (so any exception ends in a triple fault) for a bounded number of
 * instructions, port I/O answered with zeros. Nothing the bytes do may
 * crash mmud, trip a sanitizer or assert.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "replay.h"
#include "x86_int.h"

#define MEM (2u << 20)
#define CODE 0x1000u
#define STEPS 2000

static uint8_t *mem;
static uint64_t *tables; /* PML4, PDPT, PD, PT */
static struct x86_cpu *cpu;

static uint64_t mmio_read(void *opaque, gpa_t gpa, unsigned int size)
{
	(void)opaque;
	(void)gpa;
	return size == 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
}

static void mmio_write(void *opaque, gpa_t gpa, unsigned int size,
		       uint64_t value)
{
	(void)opaque;
	(void)gpa;
	(void)size;
	(void)value;
}

static void tracked_write(void *opaque, gpa_t gpa, unsigned int size)
{
	(void)opaque;
	(void)gpa;
	(void)size;
}

static const struct x86_env env = { mmio_read, mmio_write, tracked_write };

static void setup(void)
{
	const uint64_t upper = X86_PTE_P | X86_PTE_W | X86_PTE_U;

	mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tables = aligned_alloc(4096, 4 * 4096);
	cpu = x86_cpu_new(0, 1, &env, NULL);
	if (mem == MAP_FAILED || !tables || !cpu)
		abort();
	memset(tables, 0, 4 * 4096);
	tables[0] = (uint64_t)(uintptr_t)(tables + 512) | upper;
	tables[512] = (uint64_t)(uintptr_t)(tables + 1024) | upper;
	tables[1024] = (uint64_t)(uintptr_t)(tables + 1536) | upper;
	for (unsigned int i = 0; i < 512; i++)
		tables[1536 + i] = (uint64_t)(uintptr_t)(mem + i * 4096ULL) |
				   upper;
	x86_set_shadow_root(cpu, (hva_t)(uintptr_t)tables);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct x86_exit exit;
	struct x86_insn in;
	struct x86_regs r;
	unsigned int steps = 0;

	if (!cpu)
		setup();
	for (size_t n = 0; n <= size && n <= 16; n++)
		(void)x86_decode_bytes(data, (unsigned int)n, &in);
	if (size > MEM - CODE)
		size = MEM - CODE;

	memset(mem, 0, MEM);
	memcpy(mem + CODE, data, size);
	x86_reset_boot(cpu, CODE, 0x7000);
	x86_tlb_flush(cpu);
	x86_get_regs(cpu, &r);
	r.gpr[X86_RSP] = MEM - 4096;
	x86_set_regs(cpu, &r);
	while (steps < 64) {
		enum x86_exit_reason why = x86_run(cpu, STEPS, &exit);

		steps++;
		if (why == X86_EXIT_IO) {
			if (exit.io.in)
				x86_io_complete(cpu, 0);
			continue;
		}
		if (why == X86_EXIT_PAGING || why == X86_EXIT_INVLPG ||
		    why == X86_EXIT_NONE)
			continue;
		break;
	}
	return 0;
}
