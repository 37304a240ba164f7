/*
 * Fuzz target for the migration stream reader (docs/MIGRATION.md): the
 * input is a whole stream, loaded by migrate_load() into a small
 * destination (tests/unit/migrate/world.h: two memslots, two vCPUs,
 * COM1) whose configuration the corpus's valid streams match. Nothing
 * may crash or trip a sanitizer; a refusal always says why; an accepted
 * stream was read to its last byte.
 */
#include <stdlib.h>

#include "replay.h"
#include "world.h"

#define FUZZ_VCPUS 2

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct world w;
	static int ready;
	struct migrate_reader *r;
	int rc;

	if (!ready) {
		world_init(&w, FUZZ_VCPUS);
		ready = 1;
	}
	w.nconsole = 0;
	r = migrate_reader_new_mem(data, size);
	if (!r)
		abort();
	rc = migrate_load(r, &w.dest, NULL);
	if (rc && !migrate_reader_error(r)[0])
		abort(); /* a refusal always says why */
	if (!rc && migrate_reader_bytes(r) != size)
		abort(); /* accepted with bytes left over */
	migrate_reader_free(r);
	return 0;
}
