/*
 * Fuzz target for the software CPU's front end and executor: the input is
 * decoded by the soft decoder (every prefix of it), then run as code at
 * 0x1000 in the unit tests' harness CPU (tests/unit/x86/harness.h) cut
 * down to its first 2 MiB of identity-mapped guest memory, with no IDT
 * (so any exception ends in a triple fault), for a bounded number of
 * instructions, port I/O answered with zeros. Nothing the bytes do may
 * crash mmud, trip a sanitizer or assert.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "replay.h"
#include "x86_int.h"

#define MEM (2u << 20)
#define CODE 0x1000u
#define STEPS 2000

static struct xh *h;

/* The harness CPU with every page above MEM unmapped: an access there is
 * a shadow fault, which ends the run. */
static void setup(void)
{
	h = xh_new();
	for (gva_t gva = MEM; gva < XH_MEM_SIZE; gva += 4096)
		xh_set_page(h, gva, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct x86_exit exit;
	struct x86_insn in;
	struct x86_regs r;
	unsigned int steps = 0;

	if (!h)
		setup();
	for (size_t n = 0; n <= size && n <= 16; n++)
		(void)x86_decode_bytes(data, (unsigned int)n, &in);
	if (size > MEM - CODE)
		size = MEM - CODE;

	memset(h->mem, 0, MEM);
	memcpy(h->mem + CODE, data, size);
	x86_reset_boot(h->cpu, CODE, 0x7000);
	x86_tlb_flush(h->cpu);
	x86_get_regs(h->cpu, &r);
	r.gpr[X86_RSP] = MEM - 4096;
	x86_set_regs(h->cpu, &r);
	while (steps < 64) {
		enum x86_exit_reason why = x86_run(h->cpu, STEPS, &exit);

		steps++;
		if (why == X86_EXIT_IO) {
			if (exit.io.in)
				x86_io_complete(h->cpu, 0);
			continue;
		}
		if (why == X86_EXIT_PAGING || why == X86_EXIT_INVLPG ||
		    why == X86_EXIT_NONE)
			continue;
		break;
	}
	return 0;
}
