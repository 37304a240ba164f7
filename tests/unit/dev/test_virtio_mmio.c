/*
 * Tests of the virtio-mmio transport (core/dev/virtio_mmio.c) through
 * its register page, as a driver sees it (virtio 1.2, 4.2.3 "MMIO-specific
 * Initialization And Device Operation"), with a stub device type: the
 * identification registers, feature negotiation (no FEATURES_OK without
 * VERSION_1 or with a feature not offered), queues made ready or refused
 * with DEVICE_NEEDS_RESET, notifications only with DRIVER_OK, the
 * interrupt status and its line, the configuration space's bounds,
 * narrow accesses, and reset.
 */
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

static uint8_t *ram;
static bool line;
static unsigned int edges, notifies, resets, last_queue;
static struct virtio_mmio *t;

static void *fake_map(void *ctx, gpa_t gpa, uint64_t len)
{
	(void)ctx;
	if (gpa >= RAM_SIZE || len > RAM_SIZE - gpa)
		return NULL;
	return ram + gpa;
}

static void fake_dirty(void *ctx, gpa_t gpa, uint64_t len)
{
	(void)ctx;
	(void)gpa;
	(void)len;
}

static const struct virtio_mem_ops fake_ops = {
	.map = fake_map,
	.mark_dirty = fake_dirty,
};
static const struct virtio_mem mem = { .ops = &fake_ops };

static void set_irq(void *ctx, bool level)
{
	(void)ctx;
	if (level && !line)
		edges++;
	line = level;
}

static const uint8_t config[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

static void config_read(void *ctx, uint32_t off, void *buf, unsigned int len)
{
	(void)ctx;
	memcpy(buf, config + off, len);
}

static void notify(void *ctx, unsigned int queue)
{
	(void)ctx;
	notifies++;
	last_queue = queue;
}

static void dev_reset(void *ctx)
{
	(void)ctx;
	resets++;
}

static const struct virtio_device_ops stub = {
	.device_id = 2,
	.nr_queues = 2,
	.features = 1ULL << 9,
	.config_len = sizeof(config),
	.config_read = config_read,
	.notify = notify,
	.reset = dev_reset,
};

static uint32_t rd(uint32_t off)
{
	return (uint32_t)virtio_mmio_read(t, off, 4);
}

static void wr(uint32_t off, uint32_t v)
{
	virtio_mmio_write(t, off, 4, v);
}

static int setup(void **state)
{
	(void)state;
	ram = calloc(1, RAM_SIZE);
	line = false;
	edges = notifies = resets = 0;
	t = virtio_mmio_create(&stub, NULL, &mem, set_irq, NULL);
	assert_non_null(t);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	virtio_mmio_destroy(t);
	free(ram);
	return 0;
}

/* The driver's side of 3.1.1 up to FEATURES_OK with features f. */
static uint32_t negotiate(uint64_t f)
{
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE |
				       VIRTIO_STATUS_DRIVER |
				       VIRTIO_STATUS_FEATURES_OK);
	return rd(VIRTIO_MMIO_STATUS);
}

static void queue(unsigned int q, uint32_t num, gpa_t desc, gpa_t avail,
		  gpa_t used)
{
	wr(VIRTIO_MMIO_QUEUE_SEL, q);
	wr(VIRTIO_MMIO_QUEUE_NUM, num);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	wr(VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
	wr(VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
	wr(VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
	wr(VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
}

static const uint64_t version1 = 1ULL << VIRTIO_F_VERSION_1;

static void test_virtio_mmio_identifies_modern_device(void **state)
{
	(void)state;
	assert_int_equal(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	assert_int_equal(rd(VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(rd(VIRTIO_MMIO_DEVICE_ID), 2);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	assert_int_equal(rd(VIRTIO_MMIO_DEVICE_FEATURES), 1); /* VERSION_1 */
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_int_equal(rd(VIRTIO_MMIO_DEVICE_FEATURES),
			 (1u << 9) | (1u << VIRTIO_F_INDIRECT_DESC) |
				 (1u << VIRTIO_F_EVENT_IDX));
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	assert_int_equal(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTQ_MAX_SIZE);
	wr(VIRTIO_MMIO_QUEUE_SEL, 2);
	assert_int_equal(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
}

static void test_virtio_mmio_legacy_driver_gets_no_features_ok(void **state)
{
	(void)state;
	assert_false(negotiate(1ULL << 9) & VIRTIO_STATUS_FEATURES_OK);
	/* DRIVER_OK without FEATURES_OK is not taken either. */
	wr(VIRTIO_MMIO_STATUS, 0x0f);
	assert_int_equal(rd(VIRTIO_MMIO_STATUS), 0x03);
}

static void test_virtio_mmio_unoffered_feature_refused(void **state)
{
	(void)state;
	assert_false(negotiate(version1 | (1ULL << 3)) &
		     VIRTIO_STATUS_FEATURES_OK);
}

static void test_virtio_mmio_version1_accepted(void **state)
{
	(void)state;
	assert_true(negotiate(version1 | (1ULL << 9)) &
		    VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(virtio_mmio_features(t), version1 | (1ULL << 9));
	/* Features are fixed from then on. */
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 0);
	assert_int_equal(virtio_mmio_features(t), version1 | (1ULL << 9));
}

static void test_virtio_mmio_notify_needs_driver_ok(void **state)
{
	(void)state;
	negotiate(version1);
	queue(1, 8, 0x1000, 0x2000, 0x3000);
	assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	assert_int_equal(notifies, 0);
	wr(VIRTIO_MMIO_STATUS, 0x0f);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	assert_int_equal(notifies, 1);
	assert_int_equal(last_queue, 1);
	/* Queue 0 is not ready, queue 5 does not exist. */
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 5);
	assert_int_equal(notifies, 1);
}

static void test_virtio_mmio_bad_queue_sets_needs_reset(void **state)
{
	(void)state;
	negotiate(version1);
	wr(VIRTIO_MMIO_STATUS, 0x0f);
	queue(0, 6, 0x1000, 0x2000, 0x3000); /* not a power of 2 */
	assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	/* With DRIVER_OK, a configuration change notification. */
	assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
			 VIRTIO_MMIO_INT_CONFIG);
	assert_true(line);
	/* No notification gets through any more. */
	queue(1, 8, 0x1000, 0x2000, 0x3000);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	assert_int_equal(notifies, 0);
}

static void test_virtio_mmio_queue_in_mmio_refused(void **state)
{
	(void)state;
	negotiate(version1);
	queue(0, 8, VIRTIO_MMIO_BASE, 0x2000, 0x3000);
	assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	assert_true(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_virtio_mmio_interrupt_and_ack(void **state)
{
	(void)state;
	virtio_mmio_interrupt(t);
	virtio_mmio_interrupt(t);
	assert_true(line);
	assert_int_equal(edges, 1);
	assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 1);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, 1);
	assert_false(line);
	virtio_mmio_interrupt(t);
	assert_int_equal(edges, 2);
}

static void test_virtio_mmio_config_bounds_and_widths(void **state)
{
	(void)state;
	assert_int_equal(virtio_mmio_read(t, VIRTIO_MMIO_CONFIG, 1), 1);
	assert_int_equal(virtio_mmio_read(t, VIRTIO_MMIO_CONFIG + 2, 2),
			 0x0403);
	assert_int_equal(virtio_mmio_read(t, VIRTIO_MMIO_CONFIG + 4, 8),
			 0x0c0b0a0908070605ULL);
	/* Past the end, or straddling it: 0. */
	assert_int_equal(virtio_mmio_read(t, VIRTIO_MMIO_CONFIG + 10, 4), 0);
	assert_int_equal(virtio_mmio_read(t, VIRTIO_MMIO_CONFIG + 0xe00, 4), 0);
	/* Registers take 32-bit accesses only. */
	assert_int_equal(virtio_mmio_read(t, VIRTIO_MMIO_MAGIC_VALUE, 2), 0);
	assert_int_equal(virtio_mmio_read(t, VIRTIO_MMIO_MAGIC_VALUE + 1, 4),
			 0);
	virtio_mmio_write(t, VIRTIO_MMIO_STATUS, 1, 1);
	assert_int_equal(rd(VIRTIO_MMIO_STATUS), 0);
}

static void test_virtio_mmio_reset_clears_everything(void **state)
{
	(void)state;
	negotiate(version1);
	queue(0, 8, 0x1000, 0x2000, 0x3000);
	wr(VIRTIO_MMIO_STATUS, 0x0f);
	virtio_mmio_interrupt(t);
	wr(VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(resets, 1);
	assert_int_equal(rd(VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_false(line);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(virtio_mmio_queue(t, 0)->size, 0);
	assert_int_equal(virtio_mmio_features(t), 0);
}

static void test_virtio_mmio_ready_queue_config_is_fixed(void **state)
{
	(void)state;
	negotiate(version1);
	queue(0, 8, 0x1000, 0x2000, 0x3000);
	wr(VIRTIO_MMIO_QUEUE_NUM, 4);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x8000);
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	assert_int_equal(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	assert_int_equal(virtio_mmio_queue(t, 0)->size, 8);
	assert_int_equal(virtio_mmio_queue(t, 0)->desc_gpa, 0x1000);
}

/* A configuration change bumps ConfigGeneration, so a driver reading
 * the configuration across it reads again, and after DRIVER_OK raises
 * the configuration change interrupt (virtio 1.2, 2.5.1 and 4.2.2). */
static void test_virtio_mmio_config_change_bumps_generation(void **state)
{
	uint32_t gen = rd(VIRTIO_MMIO_CONFIG_GENERATION);

	(void)state;
	virtio_mmio_config_changed(t);
	assert_int_equal(rd(VIRTIO_MMIO_CONFIG_GENERATION), gen + 1);
	assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_false(line);
	negotiate(version1);
	wr(VIRTIO_MMIO_STATUS,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	virtio_mmio_config_changed(t);
	assert_int_equal(rd(VIRTIO_MMIO_CONFIG_GENERATION), gen + 2);
	assert_int_equal(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
			 VIRTIO_MMIO_INT_CONFIG);
	assert_true(line);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_virtio_mmio_identifies_modern_device),
		T(test_virtio_mmio_legacy_driver_gets_no_features_ok),
		T(test_virtio_mmio_unoffered_feature_refused),
		T(test_virtio_mmio_version1_accepted),
		T(test_virtio_mmio_notify_needs_driver_ok),
		T(test_virtio_mmio_bad_queue_sets_needs_reset),
		T(test_virtio_mmio_queue_in_mmio_refused),
		T(test_virtio_mmio_interrupt_and_ack),
		T(test_virtio_mmio_config_bounds_and_widths),
		T(test_virtio_mmio_reset_clears_everything),
		T(test_virtio_mmio_ready_queue_config_is_fixed),
		T(test_virtio_mmio_config_change_bumps_generation),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
