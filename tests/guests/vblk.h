/*
 * What the guests' own virtio-blk drivers share (blk_migrate.c,
 * virtio_blk.c): the virtio-mmio registers of the first drive at
 * 0xD0000000 (docs/GUEST-ABI.md, "Virtio-mmio devices"; virtio 1.2,
 * 4.2.2), the split ring's descriptor, the request types, the feature
 * negotiation and making queue 0 ready with its three areas.
 */
#ifndef MMUD_GUEST_VBLK_H
#define MMUD_GUEST_VBLK_H

#include "rt.h"

#define VBASE 0xd0000000UL

/* Registers (virtio 1.2, 4.2.2). */
#define MAGIC 0x000
#define VERSION 0x004
#define DEVICE_ID 0x008
#define DEV_FEAT 0x010
#define DEV_FEAT_SEL 0x014
#define DRV_FEAT 0x020
#define DRV_FEAT_SEL 0x024
#define QUEUE_SEL 0x030
#define QUEUE_NUM_MAX 0x034
#define QUEUE_NUM 0x038
#define QUEUE_READY 0x044
#define QUEUE_NOTIFY 0x050
#define INT_STATUS 0x060
#define INT_ACK 0x064
#define STATUS 0x070
#define Q_DESC 0x080
#define Q_DRIVER 0x090
#define Q_DEVICE 0x0a0
#define CONFIG 0x100

/* Device status bits (virtio 1.2, 2.1). */
#define S_ACK 1u
#define S_DRIVER 2u
#define S_DRIVER_OK 4u
#define S_FEATURES_OK 8u
#define S_NEEDS_RESET 64u

/* Descriptor flags (virtio 1.2, 2.7.5). */
#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4

/* Feature bits (virtio 1.2, 5.2.3 and 6). */
#define F_BLK_FLUSH 9
#define F_BLK_DISCARD 13
#define F_INDIRECT_DESC 28
#define F_EVENT_IDX 29
#define F_VERSION_1 32

/* Request types (virtio 1.2, 5.2.6). */
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static inline volatile uint32_t *reg(unsigned int off)
{
	return (volatile uint32_t *)(VBASE + off);
}

static inline uint32_t rd(unsigned int off)
{
	return *reg(off);
}

static inline void wr(unsigned int off, uint32_t v)
{
	*reg(off) = v;
}

/* Reset, ACKNOWLEDGE, DRIVER, the driver features want, FEATURES_OK:
 * the status the device leaves (FEATURES_OK clear: refused). */
static inline uint32_t negotiate(uint64_t want)
{
	wr(STATUS, 0);
	wr(STATUS, S_ACK);
	wr(STATUS, S_ACK | S_DRIVER);
	wr(DRV_FEAT_SEL, 0);
	wr(DRV_FEAT, (uint32_t)want);
	wr(DRV_FEAT_SEL, 1);
	wr(DRV_FEAT, (uint32_t)(want >> 32));
	wr(STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	return rd(STATUS);
}

/* Queue 0 of qsz entries at the three areas (below 4 GiB), ready, then
 * DRIVER_OK. */
static inline void queue0_ready(unsigned int qsz, const void *desc_area,
				const volatile void *driver_area,
				const volatile void *device_area)
{
	wr(QUEUE_SEL, 0);
	wr(QUEUE_NUM, qsz);
	wr(Q_DESC, (uint32_t)(uint64_t)desc_area);
	wr(Q_DESC + 4, 0);
	wr(Q_DRIVER, (uint32_t)(uint64_t)driver_area);
	wr(Q_DRIVER + 4, 0);
	wr(Q_DEVICE, (uint32_t)(uint64_t)device_area);
	wr(Q_DEVICE + 4, 0);
	wr(QUEUE_READY, 1);
	wr(STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

#endif
