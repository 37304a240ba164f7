/*
 * Fuzz target for the migration stream reader (docs/MIGRATION.md): the
 * input is a whole stream, loaded by migrate_load() into a small
 * destination (tests/unit/migrate/world.h: two memslots, two vCPUs
 * with their local APICs and kvmclock MSRs, an IOAPIC, COM1, a drive's
 * virtio-mmio transport) whose configuration the corpus's valid streams
 * match. Nothing may crash or trip a sanitizer; a refusal always says
 * why; an accepted stream was read to its last byte.
 *
 * Each input is loaded twice: as it is (the framing and checksums under
 * attack), then with every section's CRC-32C recomputed, so mutations
 * of a payload reach its decoder instead of stopping at the checksum.
 */
#include <stdlib.h>
#include <string.h>

#include "migrate_int.h"
#include "replay.h"
#include "world.h"

#define FUZZ_VCPUS 2

static void load_one(struct world *w, const uint8_t *data, size_t size)
{
	struct migrate_reader *r = migrate_reader_new_mem(data, size);
	int rc;

	if (!r)
		abort();
	w->nconsole = 0;
	rc = migrate_load(r, &w->dest, NULL);
	if (rc && !migrate_reader_error(r)[0])
		abort(); /* a refusal always says why */
	if (!rc && migrate_reader_bytes(r) != size)
		abort(); /* accepted with bytes left over */
	migrate_reader_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct world w;
	static int ready;
	uint8_t *fixed;
	size_t pos = MIGRATE_HEADER_LEN;

	if (!ready) {
		world_init(&w, FUZZ_VCPUS);
		ready = 1;
	}
	load_one(&w, data, size);

	fixed = malloc(size ? size : 1);
	if (!fixed)
		abort();
	memcpy(fixed, data, size);
	while (size >= pos + 12) {
		uint32_t len = migrate_get32(fixed + pos + 4);

		if (len > size - pos - 12)
			break;
		migrate_put32(fixed + pos + 8 + len,
			      migrate_crc32c(0, fixed + pos, 8 + len));
		pos += 12 + (size_t)len;
	}
	load_one(&w, fixed, size);
	free(fixed);
	return 0;
}
