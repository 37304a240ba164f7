/*
 * kvmclock's protocol (kvmclock.h): the scale from TSC ticks to
 * nanoseconds, the packed pvclock structures, and what a write of each
 * MSR stores in guest memory. It reads no clock and touches no memory
 * of its own: the caller passes the time and a writer.
 */
#include <errno.h>
#include <string.h>

#include "kvmclock.h"

#define NSEC_PER_SEC 1000000000ULL

/* hz scaled by 2^shift, compared without overflow: the sign of
 * (hz * 2^shift) - ref. */
static int cmp_scaled(uint64_t hz, int shift, uint64_t ref)
{
	unsigned __int128 a = hz, b = ref;

	if (shift >= 0)
		a <<= shift;
	else
		b <<= -shift;
	return a < b ? -1 : a > b;
}

bool x86_pvclock_scale(uint64_t tsc_hz, struct x86_pvclock_scale *sc)
{
	unsigned __int128 num = (unsigned __int128)NSEC_PER_SEC << 32;
	unsigned __int128 den = tsc_hz;
	int shift = 0;

	if (tsc_hz < 1000 || tsc_hz > (1ULL << 40))
		return false;
	/* mul = 2^32 * 10^9 / (hz * 2^shift) must be below 2^32 and, for
	 * precision, at least 2^31: hz * 2^shift in (10^9, 2 * 10^9]. */
	while (cmp_scaled(tsc_hz, shift, 2 * NSEC_PER_SEC) > 0)
		shift--;
	while (cmp_scaled(tsc_hz, shift, NSEC_PER_SEC) <= 0)
		shift++;
	if (shift >= 0)
		den <<= shift;
	else
		num <<= -shift;
	sc->mul = (uint32_t)(num / den);
	sc->shift = (int8_t)shift;
	return true;
}

uint64_t x86_pvclock_ns(const struct x86_pvclock_scale *sc, uint64_t delta)
{
	if (sc->shift < 0)
		delta >>= -sc->shift;
	else
		delta <<= sc->shift;
	return (uint64_t)(((unsigned __int128)delta * sc->mul) >> 32);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (unsigned int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

void x86_pvclock_time_info(uint8_t out[PVCLOCK_TIME_INFO_SIZE],
			   uint32_t version, uint64_t tsc_timestamp,
			   uint64_t system_time,
			   const struct x86_pvclock_scale *sc, uint8_t flags)
{
	memset(out, 0, PVCLOCK_TIME_INFO_SIZE);
	put32(out, version); /* then pad0 */
	put64(out + 8, tsc_timestamp);
	put64(out + 16, system_time);
	put32(out + 24, sc->mul);
	out[28] = (uint8_t)sc->shift;
	out[29] = flags; /* then pad[2] */
}

void x86_pvclock_wall_clock(uint8_t out[PVCLOCK_WALL_CLOCK_SIZE],
			    uint32_t version, uint32_t sec, uint32_t nsec)
{
	put32(out, version);
	put32(out + 4, sec);
	put32(out + 8, nsec);
}

void x86_kvmclock_reset(struct x86_kvmclock *k)
{
	memset(k, 0, sizeof(*k));
}

bool x86_kvmclock_is_msr(uint32_t index)
{
	return index == MSR_KVM_WALL_CLOCK_NEW ||
	       index == MSR_KVM_SYSTEM_TIME_NEW;
}

int x86_kvmclock_rdmsr(const struct x86_kvmclock *k, uint32_t index,
		       uint64_t *value)
{
	if (index == MSR_KVM_WALL_CLOCK_NEW)
		*value = k->wall_clock_msr;
	else if (index == MSR_KVM_SYSTEM_TIME_NEW)
		*value = k->system_time_msr;
	else
		return -ENOENT;
	return 0;
}

/*
 * The version protocol: one store of the structure with an odd version
 * (the writer stores in address order, so the version lands first and
 * the whole range is checked before anything is stored), then the even
 * version. A refused range leaves the counter as it was.
 */
static bool publish(uint32_t *version, gpa_t gpa, uint8_t *img,
		    unsigned int len, x86_gpa_write_fn write, void *ctx)
{
	uint8_t ver[4];

	put32(img, *version + 1);
	if (!write(ctx, gpa, img, len))
		return false;
	*version += 2;
	put32(ver, *version);
	write(ctx, gpa, ver, sizeof(ver));
	return true;
}

int x86_kvmclock_wrmsr(struct x86_kvmclock *k, uint32_t index, uint64_t value,
		       const struct x86_kvmclock_now *now,
		       x86_gpa_write_fn write, void *ctx)
{
	uint8_t img[PVCLOCK_TIME_INFO_SIZE];

	if (index == MSR_KVM_WALL_CLOCK_NEW) {
		/* The wall clock when kvmclock read 0: now less kvmclock's
		 * reading now (the 32-bit seconds wrap as the ABI's do). */
		uint64_t boot = now->realtime_ns -
				x86_pvclock_ns(&now->scale, now->guest_tsc);

		k->wall_clock_msr = value;
		x86_pvclock_wall_clock(img, 0, (uint32_t)(boot / NSEC_PER_SEC),
				       (uint32_t)(boot % NSEC_PER_SEC));
		publish(&k->wall_version, (gpa_t)value, img,
			PVCLOCK_WALL_CLOCK_SIZE, write, ctx);
		return 0;
	}
	if (index != MSR_KVM_SYSTEM_TIME_NEW)
		return -ENOENT;
	k->system_time_msr = value;
	k->time_written = false;
	if (!(value & KVM_SYSTEM_TIME_ENABLE))
		return 0;
	x86_pvclock_time_info(img, 0, 0, 0, &now->scale,
			      PVCLOCK_TSC_STABLE_BIT);
	k->time_written = publish(&k->time_version,
				  (gpa_t)(value & ~KVM_SYSTEM_TIME_ENABLE), img,
				  PVCLOCK_TIME_INFO_SIZE, write, ctx);
	return 0;
}
