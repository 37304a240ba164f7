/*
 * Fuzz target for the split virtqueue walker (core/dev/virtqueue.c): the
 * input is a guest's RAM of 16 KiB (zero-padded) holding a queue's
 * descriptor table at 0, its driver area at 0x1000 and its device area
 * at 0x2000, and two header bytes choosing the queue size and the
 * negotiated features. The walker takes chains until the ring is empty
 * or it refuses one, returning each on the used ring. Nothing may crash
 * or trip a sanitizer, every buffer handed out must lie wholly in the
 * RAM at the host address that matches its gpa, a chain can hold no
 * more buffers than the queue's size, and readable buffers come first.
 *
 * Input: byte 0 log2 of the queue size (mod 9), byte 1 bit 0 EVENT_IDX,
 * bit 1 INDIRECT_DESC, then the RAM's bytes from gpa 0.
 */
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "virtio.h"

#define RAM_SIZE 0x4000u

static uint8_t ram[RAM_SIZE];

static void *fmap(void *ctx, gpa_t gpa, uint64_t len)
{
	(void)ctx;
	if (gpa >= RAM_SIZE || len > RAM_SIZE - gpa)
		return NULL;
	return ram + gpa;
}

static void fdirty(void *ctx, gpa_t gpa, uint64_t len)
{
	(void)ctx;
	if (gpa >= RAM_SIZE || len == 0 || len > RAM_SIZE - gpa)
		abort();
}

static const struct virtio_mem_ops ops = { .map = fmap, .mark_dirty = fdirty };
static const struct virtio_mem mem = { .ops = &ops };
static struct virtq_chain chain;

static void check(const struct virtq *q, const struct virtq_chain *c)
{
	if (c->nr_seg > q->size || c->nr_out > c->nr_seg || c->head >= q->size)
		abort();
	for (unsigned int i = 0; i < c->nr_seg; i++) {
		const struct virtq_seg *s = &c->seg[i];

		if (s->write != (i >= c->nr_out))
			abort();
		if (!s->len)
			continue;
		if (s->gpa >= RAM_SIZE || s->len > RAM_SIZE - s->gpa ||
		    (uint8_t *)s->hva != ram + s->gpa)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtq q;
	uint16_t qsize;
	char err[256];

	if (size < 2)
		return 0;
	qsize = (uint16_t)(1u << (data[0] % 9));
	memset(ram, 0, sizeof(ram));
	memcpy(ram, data + 2, size - 2 < RAM_SIZE ? size - 2 : RAM_SIZE);
	memset(&q, 0, sizeof(q));
	if (virtq_setup(&q, &mem, qsize, 0, 0x1000, 0x2000, data[1] & 1,
			data[1] & 2, err, sizeof(err)) < 0)
		abort(); /* the areas fit for every size up to 256 */
	for (unsigned int n = 0; n < 2 * VIRTQ_MAX_SIZE; n++) {
		int r = virtq_pop(&q, &mem, &chain, err, sizeof(err));

		if (r < 0) {
			if (!err[0])
				abort(); /* a refusal always says why */
			break;
		}
		if (r == 0)
			break;
		check(&q, &chain);
		virtq_push(&q, &mem, chain.head, (uint32_t)chain.in_len);
		virtq_should_notify(&q);
	}
	return 0;
}
