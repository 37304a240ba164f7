/*
 * Tests of the split virtqueue walker (core/dev/virtqueue.c) over a
 * fake guest RAM of 1 MiB at gpa 0: chains taken from the available
 * ring through direct and indirect descriptors, every malformed ring
 * the virtio 1.2 spec lets a device refuse (loops, indexes out of
 * range, buffers outside RAM or wrapping, readable after writable,
 * indirect misuse, an avail index too far ahead), the used ring with
 * its bytes logged dirty before the index is published, and interrupt
 * suppression with and without VIRTIO_F_EVENT_IDX.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "virtio.h"

#define RAM_SIZE (1u << 20)
#define QSIZE 8
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000

static uint8_t *ram;
static uint8_t dirty[RAM_SIZE / 4096];
/* The used index when each byte was logged: must be the old one. */
static int dirty_after_publish;
static uint16_t published;

static void *fake_map(void *ctx, gpa_t gpa, uint64_t len)
{
	(void)ctx;
	if (gpa >= RAM_SIZE || len > RAM_SIZE - gpa)
		return NULL;
	return ram + gpa;
}

static void fake_dirty(void *ctx, gpa_t gpa, uint64_t len)
{
	uint16_t idx;

	(void)ctx;
	assert_true(gpa < RAM_SIZE && len <= RAM_SIZE - gpa);
	memcpy(&idx, ram + USED + 2, 2);
	if (idx != published)
		dirty_after_publish++;
	for (gpa_t p = gpa >> 12; p <= (gpa + len - 1) >> 12; p++)
		dirty[p] = 1;
}

static const struct virtio_mem_ops fake_ops = {
	.map = fake_map,
	.mark_dirty = fake_dirty,
};
static const struct virtio_mem mem = { .ops = &fake_ops };

static struct virtq q;
static struct virtq_chain chain;
static char err[256];

static int setup(void **state)
{
	(void)state;
	ram = calloc(1, RAM_SIZE);
	memset(dirty, 0, sizeof(dirty));
	dirty_after_publish = 0;
	published = 0;
	err[0] = 0;
	assert_int_equal(virtq_setup(&q, &mem, QSIZE, DESC, AVAIL, USED, false,
				     true, err, sizeof(err)),
			 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(ram);
	return 0;
}

static void put_desc(gpa_t table, unsigned int i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *d = ram + table + 16 * i;

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

/* Offers head as the next available entry. */
static void offer(uint16_t head)
{
	uint16_t idx;

	memcpy(&idx, ram + AVAIL + 2, 2);
	memcpy(ram + AVAIL + 4 + 2 * (idx % QSIZE), &head, 2);
	idx++;
	memcpy(ram + AVAIL + 2, &idx, 2);
}

static void pop_fails_with(const char *what)
{
	assert_int_equal(virtq_pop(&q, &mem, &chain, err, sizeof(err)),
			 -EINVAL);
	if (!strstr(err, what))
		fail_msg("expected an error naming '%s', got '%s'", what, err);
}

static void test_virtq_chain_three_buffers_in_order(void **state)
{
	(void)state;
	put_desc(DESC, 3, 0x10000, 16, VIRTQ_DESC_F_NEXT, 5);
	put_desc(DESC, 5, 0x11000, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
		 0);
	put_desc(DESC, 0, 0x12000, 1, VIRTQ_DESC_F_WRITE, 0);
	offer(3);
	assert_int_equal(virtq_pop(&q, &mem, &chain, err, sizeof(err)), 1);
	assert_int_equal(chain.head, 3);
	assert_int_equal(chain.nr_seg, 3);
	assert_int_equal(chain.nr_out, 1);
	assert_int_equal(chain.out_len, 16);
	assert_int_equal(chain.in_len, 513);
	assert_ptr_equal(chain.seg[1].hva, ram + 0x11000);
	assert_true(chain.seg[1].write);
	assert_false(chain.seg[0].write);
	/* Nothing more. */
	assert_int_equal(virtq_pop(&q, &mem, &chain, err, sizeof(err)), 0);
}

static void test_virtq_empty_ring_gives_nothing(void **state)
{
	(void)state;
	assert_int_equal(virtq_pop(&q, &mem, &chain, err, sizeof(err)), 0);
}

static void test_virtq_loop_refused(void **state)
{
	(void)state;
	put_desc(DESC, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC, 1, 0x10000, 16, VIRTQ_DESC_F_NEXT, 0);
	offer(0);
	pop_fails_with("longer than its queue");
}

static void test_virtq_self_loop_refused(void **state)
{
	(void)state;
	put_desc(DESC, 2, 0x10000, 16, VIRTQ_DESC_F_NEXT, 2);
	offer(2);
	pop_fails_with("longer than its queue");
}

static void test_virtq_next_out_of_range_refused(void **state)
{
	(void)state;
	put_desc(DESC, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, QSIZE);
	offer(0);
	pop_fails_with("links to descriptor 8");
}

static void test_virtq_head_out_of_range_refused(void **state)
{
	(void)state;
	offer(QSIZE + 1);
	pop_fails_with("head 9");
}

/* The first index past the table: its 16 bytes are not the table's. */
static void test_virtq_head_equal_to_size_refused(void **state)
{
	(void)state;
	put_desc(DESC, QSIZE, 0x10000, 16, 0, 0);
	offer(QSIZE);
	pop_fails_with("head 8");
}

static void test_virtq_buffer_outside_ram_refused(void **state)
{
	(void)state;
	put_desc(DESC, 0, RAM_SIZE - 8, 16, 0, 0);
	offer(0);
	pop_fails_with("outside guest RAM");
}

static void test_virtq_buffer_in_mmio_refused(void **state)
{
	(void)state;
	put_desc(DESC, 0, VIRTIO_MMIO_BASE, 16, VIRTQ_DESC_F_WRITE, 0);
	offer(0);
	pop_fails_with("outside guest RAM");
}

static void test_virtq_wrapping_buffer_refused(void **state)
{
	(void)state;
	put_desc(DESC, 0, ~0ULL - 3, 0x100, 0, 0);
	offer(0);
	pop_fails_with("outside guest RAM");
}

static void test_virtq_readable_after_writable_refused(void **state)
{
	(void)state;
	put_desc(DESC, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
		 1);
	put_desc(DESC, 1, 0x11000, 16, 0, 0);
	offer(0);
	pop_fails_with("readable buffer after a writable");
}

static void test_virtq_avail_index_too_far_refused(void **state)
{
	uint16_t idx = QSIZE + 1;

	(void)state;
	memcpy(ram + AVAIL + 2, &idx, 2);
	pop_fails_with("more than the queue size");
}

static void test_virtq_indirect_table_walked(void **state)
{
	(void)state;
	put_desc(0x5000, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 2);
	put_desc(0x5000, 2, 0x11000, 4096,
		 VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	put_desc(0x5000, 1, 0x12000, 1, VIRTQ_DESC_F_WRITE, 0);
	put_desc(DESC, 4, 0x5000, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(4);
	assert_int_equal(virtq_pop(&q, &mem, &chain, err, sizeof(err)), 1);
	assert_int_equal(chain.head, 4);
	assert_int_equal(chain.nr_seg, 3);
	assert_int_equal(chain.in_len, 4097);
	assert_int_equal(chain.seg[2].gpa, 0x12000);
}

static void test_virtq_indirect_not_negotiated_refused(void **state)
{
	(void)state;
	assert_int_equal(virtq_setup(&q, &mem, QSIZE, DESC, AVAIL, USED, false,
				     false, err, sizeof(err)),
			 0);
	put_desc(0x5000, 0, 0x10000, 16, 0, 0);
	put_desc(DESC, 0, 0x5000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0);
	pop_fails_with("not negotiated");
}

static void test_virtq_nested_indirect_refused(void **state)
{
	(void)state;
	put_desc(0x5000, 0, 0x5000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(DESC, 0, 0x5000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0);
	pop_fails_with("inside a table");
}

static void test_virtq_indirect_with_next_refused(void **state)
{
	(void)state;
	put_desc(0x5000, 0, 0x10000, 16, 0, 0);
	put_desc(DESC, 0, 0x5000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT,
		 1);
	offer(0);
	pop_fails_with("with NEXT");
}

static void test_virtq_indirect_bad_lengths_refused(void **state)
{
	static const uint32_t bad[] = { 0, 15, 17, 16 * (QSIZE + 1) };

	(void)state;
	for (unsigned int i = 0; i < 4; i++) {
		put_desc(DESC, 0, 0x5000, bad[i], VIRTQ_DESC_F_INDIRECT, 0);
		offer(0);
		pop_fails_with("indirect table of");
	}
}

static void test_virtq_indirect_loop_refused(void **state)
{
	(void)state;
	put_desc(0x5000, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(0x5000, 1, 0x10000, 16, VIRTQ_DESC_F_NEXT, 0);
	put_desc(DESC, 0, 0x5000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0);
	pop_fails_with("longer than its indirect table");
}

static void test_virtq_indirect_table_outside_ram_refused(void **state)
{
	(void)state;
	put_desc(DESC, 0, RAM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0);
	pop_fails_with("indirect table at");
}

static void test_virtq_push_logs_dirty_before_index(void **state)
{
	uint16_t idx;
	uint32_t id, len;

	(void)state;
	virtq_push(&q, &mem, 5, 513);
	memcpy(&idx, ram + USED + 2, 2);
	memcpy(&id, ram + USED + 4, 4);
	memcpy(&len, ram + USED + 8, 4);
	assert_int_equal(idx, 1);
	assert_int_equal(id, 5);
	assert_int_equal(len, 513);
	assert_int_equal(dirty_after_publish, 0);
	assert_true(dirty[USED >> 12]);
}

/* A used ring that straddles a page: the element lands on the second
 * page, the index on the first, and both pages are logged. */
static void test_virtq_push_logs_the_element_page(void **state)
{
	const gpa_t used = 0x4ff8;
	struct virtq q2;
	uint32_t id;

	(void)state;
	memset(&q2, 0, sizeof(q2));
	assert_int_equal(virtq_setup(&q2, &mem, QSIZE, DESC, AVAIL, used, false,
				     true, err, sizeof(err)),
			 0);
	virtq_push(&q2, &mem, 3, 64);
	virtq_push(&q2, &mem, 4, 64);
	memcpy(&id, ram + used + 4 + 8, 4);
	assert_int_equal(id, 4);
	if (!dirty[used >> 12] || !dirty[(used >> 12) + 1])
		fail_msg("pages 0x%llx and 0x%llx of the used ring should be "
			 "dirty, saw %d and %d",
			 (unsigned long long)(used >> 12),
			 (unsigned long long)(used >> 12) + 1,
			 dirty[used >> 12], dirty[(used >> 12) + 1]);
}

static void test_virtq_setup_refuses_bad_queues(void **state)
{
	struct virtq q2;

	(void)state;
	memset(&q2, 0, sizeof(q2));
	assert_int_equal(virtq_setup(&q2, &mem, 6, DESC, AVAIL, USED, false,
				     false, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(virtq_setup(&q2, &mem, 512, DESC, AVAIL, USED, false,
				     false, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(virtq_setup(&q2, &mem, 8, DESC + 8, AVAIL, USED, false,
				     false, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(virtq_setup(&q2, &mem, 8, DESC, AVAIL, RAM_SIZE - 8,
				     false, false, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(q2.size, 0);
}

static void test_virtq_no_interrupt_flag_suppresses(void **state)
{
	uint16_t flags = VIRTQ_AVAIL_F_NO_INTERRUPT;

	(void)state;
	virtq_push(&q, &mem, 0, 0);
	assert_true(virtq_should_notify(&q));
	memcpy(ram + AVAIL, &flags, 2);
	virtq_push(&q, &mem, 0, 0);
	assert_false(virtq_should_notify(&q));
}

static void test_virtq_event_idx_notifies_at_used_event(void **state)
{
	uint16_t used_event = 2, avail_event;

	(void)state;
	assert_int_equal(virtq_setup(&q, &mem, QSIZE, DESC, AVAIL, USED, true,
				     false, err, sizeof(err)),
			 0);
	memcpy(ram + AVAIL + 4 + 2 * QSIZE, &used_event, 2);
	virtq_push(&q, &mem, 0, 0); /* used 1: first, always */
	assert_true(virtq_should_notify(&q));
	virtq_push(&q, &mem, 0, 0); /* used 2: event 2 not yet crossed */
	assert_false(virtq_should_notify(&q));
	virtq_push(&q, &mem, 0, 0); /* used 3: entry 2 is used */
	assert_true(virtq_should_notify(&q));
	virtq_push(&q, &mem, 0, 0);
	assert_false(virtq_should_notify(&q));

	/* Popping publishes avail_event: the next entry. */
	put_desc(DESC, 0, 0x10000, 16, 0, 0);
	offer(0);
	assert_int_equal(virtq_pop(&q, &mem, &chain, err, sizeof(err)), 1);
	memcpy(&avail_event, ram + USED + 4 + 8 * QSIZE, 2);
	assert_int_equal(avail_event, 1);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_virtq_chain_three_buffers_in_order),
		T(test_virtq_empty_ring_gives_nothing),
		T(test_virtq_loop_refused),
		T(test_virtq_self_loop_refused),
		T(test_virtq_next_out_of_range_refused),
		T(test_virtq_head_out_of_range_refused),
		T(test_virtq_head_equal_to_size_refused),
		T(test_virtq_buffer_outside_ram_refused),
		T(test_virtq_buffer_in_mmio_refused),
		T(test_virtq_wrapping_buffer_refused),
		T(test_virtq_readable_after_writable_refused),
		T(test_virtq_avail_index_too_far_refused),
		T(test_virtq_indirect_table_walked),
		T(test_virtq_indirect_not_negotiated_refused),
		T(test_virtq_nested_indirect_refused),
		T(test_virtq_indirect_with_next_refused),
		T(test_virtq_indirect_bad_lengths_refused),
		T(test_virtq_indirect_loop_refused),
		T(test_virtq_indirect_table_outside_ram_refused),
		T(test_virtq_push_logs_dirty_before_index),
		T(test_virtq_push_logs_the_element_page),
		T(test_virtq_setup_refuses_bad_queues),
		T(test_virtq_no_interrupt_flag_suppresses),
		T(test_virtq_event_idx_notifies_at_used_event),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
