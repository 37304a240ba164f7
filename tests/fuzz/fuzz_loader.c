/*
 * Fuzz target for the ELF loader: the input is a kernel file loaded into
 * 16 MiB of guest RAM by the boot protocol of guest ABI v1. Nothing may
 * crash or trip a sanitizer, and a refused file must leave RAM exactly as
 * it was (the loader validates everything before it writes).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "loader.h"
#include "replay.h"

#define RAM (16u << 20)
#define FILL 0xa5
#define CHUNK (64u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *ram, pattern[CHUNK];
	static bool dirty = true; /* RAM may differ from the fill */
	struct loader_ram r;
	struct loader_config cfg;
	struct loader_result res;
	char err[256];

	if (!ram) {
		ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (ram == MAP_FAILED)
			abort();
		memset(pattern, FILL, sizeof(pattern));
	}
	/* Refill only after a load that succeeded (and so wrote): a refused
	 * one was checked to have left the fill. libc's memset and memcmp
	 * keep this cheap beside the loader (about 40x more runs a second than
	 * with a byte loop under ASan). */
	if (dirty)
		memset(ram, FILL, RAM);
	r = (struct loader_ram){ .gpa = 0, .size = RAM, .hva = ram };
	cfg = (struct loader_config){
		.ram = &r, .nr_ram = 1, .nr_vcpus = 2, .cmdline = "fuzz"
	};
	dirty = loader_load(&cfg, data, size, &res, err, sizeof(err)) == 0;
	if (!dirty) {
		/* Refused: not one byte of RAM may have changed. */
		for (size_t i = 0; i < RAM; i += CHUNK)
			if (memcmp(ram + i, pattern, CHUNK))
				abort();
		if (!err[0])
			abort(); /* a refusal always says why */
	}
	return 0;
}
