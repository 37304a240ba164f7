/*
 * core/vcpu/x86: kvmclock, KVM's paravirtual clock as platform v2 offers
 * it (docs/GUEST-ABI.md, "kvmclock"): the CPUID leaves that announce it,
 * the two MSRs, and the pvclock structures they make the hypervisor
 * write into guest memory (the layout of Linux's
 * Documentation/virt/kvm/x86/msr.rst). What is here is the protocol:
 * the MSRs' values, the version counters, the scale from the TSC to
 * nanoseconds and the bytes of each structure. Reading the TSC and the
 * wall clock, and storing into guest memory, are the caller's (the vCPU
 * layer's, which stores through the MMU's paths).
 */
#ifndef MMUD_KVMCLOCK_H
#define MMUD_KVMCLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"

#define KVM_CPUID_SIGNATURE 0x40000000u
#define KVM_CPUID_FEATURES 0x40000001u
/* Leaf 0x40000001 EAX: the only features mmud offers. */
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)
#define KVM_FEATURE_CLOCKSOURCE_STABLE_BIT (1u << 24)

#define MSR_KVM_WALL_CLOCK_NEW 0x4b564d00u
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01u
#define KVM_SYSTEM_TIME_ENABLE 1ULL

/* pvclock_vcpu_time_info.flags */
#define PVCLOCK_TSC_STABLE_BIT 0x01

/* Sizes of the packed structures in guest memory. */
#define PVCLOCK_TIME_INFO_SIZE 32
#define PVCLOCK_WALL_CLOCK_SIZE 12

/*
 * How a guest turns TSC ticks into nanoseconds: shift the delta left by
 * shift (right when negative), multiply by mul and keep bits 95:32.
 */
struct x86_pvclock_scale {
	uint32_t mul;
	int8_t shift;
};

/* The scale for a TSC of tsc_hz, as exact as 32 bits of mul allow
 * (mul in [2^31, 2^32)). false for a frequency it cannot express
 * (0, or outside [1 kHz, 2^40 Hz]). */
bool x86_pvclock_scale(uint64_t tsc_hz, struct x86_pvclock_scale *sc);
/* What a guest computes from a TSC delta. */
uint64_t x86_pvclock_ns(const struct x86_pvclock_scale *sc, uint64_t delta);

/* The structures' bytes, little-endian and packed. */
void x86_pvclock_time_info(uint8_t out[PVCLOCK_TIME_INFO_SIZE],
			   uint32_t version, uint64_t tsc_timestamp,
			   uint64_t system_time,
			   const struct x86_pvclock_scale *sc, uint8_t flags);
void x86_pvclock_wall_clock(uint8_t out[PVCLOCK_WALL_CLOCK_SIZE],
			    uint32_t version, uint32_t sec, uint32_t nsec);

/*
 * Stores len bytes at gpa in guest RAM, in ascending address order
 * (the version protocol relies on it); false, storing nothing, when
 * any byte of the range is not writable RAM.
 */
typedef bool (*x86_gpa_write_fn)(void *ctx, gpa_t gpa, const void *buf,
				 unsigned int len);

/* The time now, as the caller reads it for the vCPU whose MSR it is. */
struct x86_kvmclock_now {
	struct x86_pvclock_scale scale; /* of the guest's TSC */
	uint64_t guest_tsc;
	uint64_t realtime_ns; /* CLOCK_REALTIME, nanoseconds since 1970 */
};

/*
 * One vCPU's kvmclock MSRs. kvmclock counts nanoseconds from guest TSC
 * 0, the same function on every vCPU (the guest's TSC is the same on
 * all of them): each vCPU's structure holds tsc_timestamp 0 and
 * system_time 0 with the one scale, so it never needs updating and the
 * clock is monotonic across vCPUs, which the stable bit promises.
 * Legend: (v) the owning vCPU's thread, or any thread while it is
 * parked.
 */
struct x86_kvmclock {
	uint64_t system_time_msr; /* (v) as written */
	uint64_t wall_clock_msr; /* (v) as written */
	uint32_t time_version; /* (v) last version written, even */
	uint32_t wall_version; /* (v) */
	bool time_written; /* (v) the last enable reached guest memory */
};

/* Power-on: both MSRs 0, kvmclock off. */
void x86_kvmclock_reset(struct x86_kvmclock *k);

/* Whether index is one of the two MSRs. */
bool x86_kvmclock_is_msr(uint32_t index);

/* RDMSR: the value last written. 0, or -ENOENT for another MSR. */
int x86_kvmclock_rdmsr(const struct x86_kvmclock *k, uint32_t index,
		       uint64_t *value);

/*
 * WRMSR. The wall clock MSR writes pvclock_wall_clock at the address
 * given: the wall-clock time at which kvmclock read 0. The system time
 * MSR with bit 0 set writes this vCPU's pvclock_vcpu_time_info at the
 * address in the other bits, with the stable bit; with bit 0 clear it
 * turns kvmclock off. Each structure is written under its version
 * protocol: the version made odd first, the fields, then the version
 * even again. An address whose structure would not lie in guest RAM is
 * refused as KVM refuses it: the MSR keeps the value, guest memory is
 * not touched, and the WRMSR succeeds. 0, or -ENOENT for another MSR.
 */
int x86_kvmclock_wrmsr(struct x86_kvmclock *k, uint32_t index, uint64_t value,
		       const struct x86_kvmclock_now *now,
		       x86_gpa_write_fn write, void *ctx);

#endif
