/*
 * kvmclock (core/vcpu/x86/kvmclock.c, cpuid.c): the CPUID leaves that
 * announce it, the TSC-to-nanoseconds scale against the frequencies
 * hosts have, the packed pvclock structures, and what each MSR write
 * stores in guest memory: the version protocol (odd first, then even),
 * the stable bit, disabling, an address outside guest RAM (refused,
 * nothing stored, the MSR keeps its value), the wall clock at kvmclock
 * 0, and reset. Layouts are those of Linux's
 * Documentation/virt/kvm/x86/msr.rst.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kvmclock.h"
#include "x86_int.h"

/* ---- a guest RAM of one page at RAM_GPA, and the writes it got ------- */

#define RAM_GPA 0x10000ULL
#define RAM_SIZE 4096

static uint8_t ram[RAM_SIZE];
static struct {
	gpa_t gpa;
	unsigned int len;
	uint8_t bytes[32];
} writes[8];
static unsigned int nwrites;

static bool ram_write(void *ctx, gpa_t gpa, const void *buf, unsigned int len)
{
	(void)ctx;
	if (gpa < RAM_GPA || gpa - RAM_GPA > RAM_SIZE - len)
		return false;
	memcpy(ram + (gpa - RAM_GPA), buf, len);
	if (nwrites < 8) {
		writes[nwrites].gpa = gpa;
		writes[nwrites].len = len;
		memcpy(writes[nwrites].bytes, buf, len < 32 ? len : 32);
	}
	nwrites++;
	return true;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static int setup(void **state)
{
	(void)state;
	memset(ram, 0xcc, sizeof(ram));
	nwrites = 0;
	return 0;
}

static struct x86_kvmclock_now now_at(uint64_t hz, uint64_t tsc,
				      uint64_t realtime)
{
	struct x86_kvmclock_now n = { .guest_tsc = tsc,
				      .realtime_ns = realtime };

	assert_true(x86_pvclock_scale(hz, &n.scale));
	return n;
}

/* ---- CPUID ------------------------------------------------------------- */

static void test_kvmclock_cpuid_leaves(void **state)
{
	static const struct x86_env env;
	struct x86_cpu *cpu = x86_cpu_new(0, 1, &env, NULL);
	uint32_t r[4];
	char sig[12];

	(void)state;
	assert_non_null(cpu);
	x86_cpuid(cpu, 0x40000000, 0, r);
	assert_int_equal(r[0], 0x40000001);
	memcpy(sig, &r[1], 4);
	memcpy(sig + 4, &r[2], 4);
	memcpy(sig + 8, &r[3], 4);
	assert_memory_equal(sig, "KVMKVMKVM\0\0\0", 12);
	x86_cpuid(cpu, 0x40000001, 0, r);
	/* CLOCKSOURCE2 (bit 3) and CLOCKSOURCE_STABLE_BIT (bit 24) only. */
	assert_int_equal(r[0], (1u << 3) | (1u << 24));
	assert_int_equal(r[1], 0);
	assert_int_equal(r[2], 0);
	assert_int_equal(r[3], 0); /* no hints */
	x86_cpuid(cpu, 0x40000002, 0, r);
	assert_int_equal(r[0] | r[1] | r[2] | r[3], 0);
	x86_cpu_free(cpu);
}

/* ---- the scale ---------------------------------------------------------- */

static void test_kvmclock_scale_is_exact_to_a_nanosecond(void **state)
{
	static const uint64_t hz[] = { 2096006000ULL, 1000000000ULL,
				       1000000001ULL, 3500000000ULL,
				       2000000000ULL, 100000000ULL,
				       25000000ULL,   1000ULL,
				       1ULL << 40 };

	(void)state;
	for (unsigned int i = 0; i < sizeof(hz) / sizeof(hz[0]); i++) {
		struct x86_pvclock_scale sc;
		uint64_t ns;

		assert_true(x86_pvclock_scale(hz[i], &sc));
		/* mul keeps 31 significant bits at least. */
		if (sc.mul < (1u << 31))
			fail_msg("%llu Hz: mul 0x%x below 2^31",
				 (unsigned long long)hz[i], sc.mul);
		/* One second of ticks is 10^9 ns, less at most a rounding
		 * nanosecond; an hour is within 3.6 us (1 ppb). */
		ns = x86_pvclock_ns(&sc, hz[i]);
		if (ns > 1000000000ULL || ns < 1000000000ULL - 2)
			fail_msg("%llu Hz: 1 s of ticks reads %llu ns",
				 (unsigned long long)hz[i],
				 (unsigned long long)ns);
		ns = x86_pvclock_ns(&sc, hz[i] * 3600);
		if (ns > 3600000000000ULL || ns < 3600000000000ULL - 3600)
			fail_msg("%llu Hz: 1 h of ticks reads %llu ns",
				 (unsigned long long)hz[i],
				 (unsigned long long)ns);
	}
}

static void test_kvmclock_scale_refuses_unusable_frequencies(void **state)
{
	struct x86_pvclock_scale sc;

	(void)state;
	assert_false(x86_pvclock_scale(0, &sc));
	assert_false(x86_pvclock_scale(999, &sc));
	assert_false(x86_pvclock_scale((1ULL << 40) + 1, &sc));
}

/* A guest's delta may be the whole TSC (tsc_timestamp is 0): no
 * overflow, and still monotonic. */
static void test_kvmclock_large_deltas_stay_monotonic(void **state)
{
	struct x86_pvclock_scale sc;
	uint64_t prev = 0;

	(void)state;
	assert_true(x86_pvclock_scale(2096006000ULL, &sc));
	for (uint64_t t = 1; t < (1ULL << 62); t = t * 3 + 7) {
		uint64_t ns = x86_pvclock_ns(&sc, t);

		if (ns < prev)
			fail_msg("tsc %llu reads %llu ns, below %llu",
				 (unsigned long long)t, (unsigned long long)ns,
				 (unsigned long long)prev);
		prev = ns;
	}
}

/* ---- the structures ------------------------------------------------------ */

static void test_kvmclock_structure_layouts(void **state)
{
	struct x86_pvclock_scale sc = { .mul = 0x89abcdef, .shift = -1 };
	uint8_t t[PVCLOCK_TIME_INFO_SIZE], w[PVCLOCK_WALL_CLOCK_SIZE];

	(void)state;
	x86_pvclock_time_info(t, 7, 0x1122334455667788ULL,
			      0x99aabbccddeeff00ULL, &sc, 1);
	assert_int_equal(get32(t), 7);
	assert_int_equal(get32(t + 4), 0); /* pad0 */
	assert_int_equal(get64(t + 8), 0x1122334455667788ULL);
	assert_int_equal(get64(t + 16), 0x99aabbccddeeff00ULL);
	assert_int_equal(get32(t + 24), 0x89abcdef);
	assert_int_equal((int8_t)t[28], -1);
	assert_int_equal(t[29], 1);
	assert_int_equal(t[30] | t[31], 0);
	x86_pvclock_wall_clock(w, 4, 1700000000, 999999999);
	assert_int_equal(get32(w), 4);
	assert_int_equal(get32(w + 4), 1700000000);
	assert_int_equal(get32(w + 8), 999999999);
}

/* ---- the MSRs ------------------------------------------------------------ */

static void test_kvmclock_system_time_version_protocol(void **state)
{
	struct x86_kvmclock k;
	struct x86_kvmclock_now n = now_at(2096006000ULL, 12345, 0);
	gpa_t gpa = RAM_GPA + 0x40;
	uint64_t v;

	(void)state;
	x86_kvmclock_reset(&k);
	assert_int_equal(x86_kvmclock_wrmsr(&k, MSR_KVM_SYSTEM_TIME_NEW,
					    gpa | 1, &n, ram_write, NULL),
			 0);
	/* The structure with an odd version, then the even version. */
	assert_int_equal(nwrites, 2);
	assert_int_equal(writes[0].gpa, gpa);
	assert_int_equal(writes[0].len, 32);
	assert_int_equal(get32(writes[0].bytes), 1);
	assert_int_equal(writes[1].gpa, gpa);
	assert_int_equal(writes[1].len, 4);
	assert_int_equal(get32(writes[1].bytes), 2);
	/* What the guest finds. */
	assert_int_equal(get32(ram + 0x40), 2);
	assert_int_equal(get64(ram + 0x48), 0); /* tsc_timestamp */
	assert_int_equal(get64(ram + 0x50), 0); /* system_time */
	assert_int_equal(get32(ram + 0x58), n.scale.mul);
	assert_int_equal((int8_t)ram[0x5c], n.scale.shift);
	assert_int_equal(ram[0x5d], PVCLOCK_TSC_STABLE_BIT);
	assert_true(k.time_written);
	assert_int_equal(x86_kvmclock_rdmsr(&k, MSR_KVM_SYSTEM_TIME_NEW, &v),
			 0);
	assert_int_equal(v, gpa | 1);
	/* Enabling again moves on to 3, then 4. */
	x86_kvmclock_wrmsr(&k, MSR_KVM_SYSTEM_TIME_NEW, gpa | 1, &n, ram_write,
			   NULL);
	assert_int_equal(get32(writes[2].bytes), 3);
	assert_int_equal(get32(ram + 0x40), 4);
}

static void test_kvmclock_disabled_writes_nothing(void **state)
{
	struct x86_kvmclock k;
	struct x86_kvmclock_now n = now_at(2096006000ULL, 1, 0);
	uint64_t v;

	(void)state;
	x86_kvmclock_reset(&k);
	x86_kvmclock_wrmsr(&k, MSR_KVM_SYSTEM_TIME_NEW, RAM_GPA, &n, ram_write,
			   NULL);
	assert_int_equal(nwrites, 0);
	assert_false(k.time_written);
	x86_kvmclock_rdmsr(&k, MSR_KVM_SYSTEM_TIME_NEW, &v);
	assert_int_equal(v, RAM_GPA);
}

static void test_kvmclock_outside_ram_is_refused(void **state)
{
	struct x86_kvmclock k;
	struct x86_kvmclock_now n = now_at(2096006000ULL, 1, 0);
	static const gpa_t bad[] = { 0xfee00000ULL, RAM_GPA + RAM_SIZE - 8,
				     ~0ULL & ~1ULL, 0 };
	uint8_t before[RAM_SIZE];
	uint64_t v;

	(void)state;
	memcpy(before, ram, sizeof(ram));
	x86_kvmclock_reset(&k);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(x86_kvmclock_wrmsr(&k, MSR_KVM_SYSTEM_TIME_NEW,
						    bad[i] | 1, &n, ram_write,
						    NULL),
				 0);
		assert_false(k.time_written);
		/* The MSR keeps the value, as KVM's does. */
		x86_kvmclock_rdmsr(&k, MSR_KVM_SYSTEM_TIME_NEW, &v);
		assert_int_equal(v, bad[i] | 1);
		assert_int_equal(x86_kvmclock_wrmsr(&k, MSR_KVM_WALL_CLOCK_NEW,
						    bad[i], &n, ram_write,
						    NULL),
				 0);
	}
	assert_int_equal(nwrites, 0);
	assert_memory_equal(ram, before, sizeof(ram));
	/* The counters did not move: the first good write is version 1. */
	x86_kvmclock_wrmsr(&k, MSR_KVM_SYSTEM_TIME_NEW, RAM_GPA | 1, &n,
			   ram_write, NULL);
	assert_int_equal(get32(writes[0].bytes), 1);
}

static void test_kvmclock_wall_clock_is_the_time_at_zero(void **state)
{
	struct x86_kvmclock k;
	/* 2.5 GHz, guest TSC at 10 s, the wall clock at 1700000123.25 s. */
	struct x86_kvmclock_now n =
		now_at(2500000000ULL, 25000000000ULL, 1700000123250000000ULL);
	uint64_t v;

	(void)state;
	x86_kvmclock_reset(&k);
	x86_kvmclock_wrmsr(&k, MSR_KVM_WALL_CLOCK_NEW, RAM_GPA + 0x100, &n,
			   ram_write, NULL);
	assert_int_equal(nwrites, 2);
	assert_int_equal(get32(writes[0].bytes), 1);
	assert_int_equal(writes[0].len, 12);
	assert_int_equal(get32(ram + 0x100), 2);
	assert_int_equal(get32(ram + 0x104), 1700000113);
	/* Within the scale's rounding of 10 s. */
	if (get32(ram + 0x108) < 250000000 - 20 ||
	    get32(ram + 0x108) > 250000000 + 20)
		fail_msg("nsec %u", get32(ram + 0x108));
	x86_kvmclock_rdmsr(&k, MSR_KVM_WALL_CLOCK_NEW, &v);
	assert_int_equal(v, RAM_GPA + 0x100);
}

static void test_kvmclock_reset_and_other_msrs(void **state)
{
	struct x86_kvmclock k;
	struct x86_kvmclock_now n = now_at(2096006000ULL, 1, 0);
	uint64_t v = 5;

	(void)state;
	x86_kvmclock_reset(&k);
	x86_kvmclock_wrmsr(&k, MSR_KVM_SYSTEM_TIME_NEW, RAM_GPA | 1, &n,
			   ram_write, NULL);
	x86_kvmclock_wrmsr(&k, MSR_KVM_WALL_CLOCK_NEW, RAM_GPA + 64, &n,
			   ram_write, NULL);
	x86_kvmclock_reset(&k);
	x86_kvmclock_rdmsr(&k, MSR_KVM_SYSTEM_TIME_NEW, &v);
	assert_int_equal(v, 0);
	x86_kvmclock_rdmsr(&k, MSR_KVM_WALL_CLOCK_NEW, &v);
	assert_int_equal(v, 0);
	assert_false(k.time_written);
	/* The old MSRs (0x11, 0x12) and the rest of KVM's range are not
	 * kvmclock's. */
	assert_false(x86_kvmclock_is_msr(0x11));
	assert_false(x86_kvmclock_is_msr(0x12));
	assert_false(x86_kvmclock_is_msr(0x4b564d02));
	assert_true(x86_kvmclock_is_msr(0x4b564d00));
	assert_true(x86_kvmclock_is_msr(0x4b564d01));
	assert_int_equal(x86_kvmclock_rdmsr(&k, 0x4b564d02, &v), -ENOENT);
	assert_int_equal(x86_kvmclock_wrmsr(&k, 0x12, 1, &n, ram_write, NULL),
			 -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup(name, setup)
		T(test_kvmclock_cpuid_leaves),
		T(test_kvmclock_scale_is_exact_to_a_nanosecond),
		T(test_kvmclock_scale_refuses_unusable_frequencies),
		T(test_kvmclock_large_deltas_stay_monotonic),
		T(test_kvmclock_structure_layouts),
		T(test_kvmclock_system_time_version_protocol),
		T(test_kvmclock_disabled_writes_nothing),
		T(test_kvmclock_outside_ram_is_refused),
		T(test_kvmclock_wall_clock_is_the_time_at_zero),
		T(test_kvmclock_reset_and_other_msrs),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
