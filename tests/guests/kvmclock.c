/*
 * kvmclock: the paravirtual clock as KVM documents it
 * (Documentation/virt/kvm/x86/msr.rst, cpuid.rst), mmud only (QEMU's TCG
 * has no kvmclock). Checks:
 * - CPUID 0x40000000: "KVMKVMKVM\0\0\0", max leaf at least 0x40000001;
 *   0x40000001 EAX: CLOCKSOURCE2 (bit 3) and CLOCKSOURCE_STABLE_BIT
 *   (bit 24) and no other feature; CPUID also reports TSC-deadline (1
 *   ECX bit 24), ARAT (6 EAX bit 2) and the invariant TSC (0x80000007
 *   EDX bit 8), as the platform says (docs/GUEST-ABI.md);
 * - MSR_KVM_WALL_CLOCK_NEW: an even version and a time after 2020;
 * - MSR_KVM_SYSTEM_TIME_NEW on every vCPU: its structure gets an even
 *   version, the stable bit, and the same TSC scale on every vCPU;
 * - READS reads in all, spread over the vCPUs, monotonic across vCPUs:
 *   each read is at least the largest any vCPU had finished before it
 *   began (a shared maximum updated after every read);
 * - the clock advances with the TSC: across a stretch of TSC cycles it
 *   advances by what its own scale says, within 1%.
 */
#include "irq.h"

#define READS 1000000
#define MSR_KVM_WALL_CLOCK_NEW 0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define PVCLOCK_TSC_STABLE_BIT 0x01

struct pvclock_vcpu_time_info {
	uint32_t version;
	uint32_t pad0;
	uint64_t tsc_timestamp;
	uint64_t system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags;
	uint8_t pad[2];
} __attribute__((packed));

struct pvclock_wall_clock {
	uint32_t version;
	uint32_t sec;
	uint32_t nsec;
} __attribute__((packed));

static struct pvclock_vcpu_time_info pv[RT_MAX_CPUS]
	__attribute__((aligned(64)));
static struct pvclock_wall_clock wall __attribute__((aligned(16)));
static volatile uint64_t last; /* the largest read finished so far */
static volatile unsigned int backwards[RT_MAX_CPUS];
static volatile uint64_t worst_back[RT_MAX_CPUS];
static volatile uint32_t muls[RT_MAX_CPUS];
static volatile int8_t shifts[RT_MAX_CPUS];
static volatile uint8_t flags_seen[RT_MAX_CPUS];
static volatile unsigned int odd_or_changed[RT_MAX_CPUS];

static uint64_t scale(uint64_t delta, uint32_t mul, int8_t shift)
{
	if (shift >= 0)
		delta <<= shift;
	else
		delta >>= -shift;
	return (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

/* One read by the version protocol: an odd version or one that changed
 * while reading means an update was in progress: read again. */
static uint64_t kvmclock_read(unsigned int cpu, uint64_t *tsc_out)
{
	volatile struct pvclock_vcpu_time_info *p = &pv[cpu];
	uint32_t v;
	uint64_t t, tsc;

	for (;;) {
		v = __atomic_load_n(&p->version, __ATOMIC_ACQUIRE);
		tsc = rt_rdtsc();
		t = p->system_time + scale(tsc - p->tsc_timestamp,
					   p->tsc_to_system_mul, p->tsc_shift);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (!(v & 1) &&
		    v == __atomic_load_n(&p->version, __ATOMIC_RELAXED))
			break;
		odd_or_changed[cpu]++;
	}
	if (tsc_out)
		*tsc_out = tsc;
	return t;
}

static void reads(unsigned int cpu, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		uint64_t before = __atomic_load_n(&last, __ATOMIC_ACQUIRE);
		uint64_t t = kvmclock_read(cpu, NULL);
		uint64_t cur;

		if (t < before) {
			backwards[cpu]++;
			if (before - t > worst_back[cpu])
				worst_back[cpu] = before - t;
		}
		cur = __atomic_load_n(&last, __ATOMIC_RELAXED);
		while (t > cur && !__atomic_compare_exchange_n(
					  &last, &cur, t, true,
					  __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			;
	}
}

static bool cpuid_bit(uint32_t leaf, int reg, int bit)
{
	uint32_t r[4];

	rt_cpuid(leaf & 0x80000000, 0, r);
	if (r[0] < leaf)
		return false;
	rt_cpuid(leaf, 0, r);
	return (r[reg] >> bit) & 1;
}

static int check_cpuid(void)
{
	uint32_t r[4];
	char sig[13];
	int bad = 0;

	rt_cpuid(0x40000000, 0, r);
	memcpy(sig, &r[1], 4);
	memcpy(sig + 4, &r[2], 4);
	memcpy(sig + 8, &r[3], 4);
	sig[12] = '\0';
	rt_printf("kvmclock: CPUID 0x40000000: \"%s\", max leaf at least "
		  "0x40000001: %s\n",
		  sig, r[0] >= 0x40000001 ? "yes" : "no");
	bad += memcmp(sig, "KVMKVMKVM\0\0\0", 12) != 0 || r[0] < 0x40000001;
	rt_cpuid(0x40000001, 0, r);
	rt_printf("kvmclock: features %#x (CLOCKSOURCE2 and "
		  "CLOCKSOURCE_STABLE_BIT only)\n",
		  r[0]);
	bad += r[0] != ((1u << 3) | (1u << 24));
	rt_printf("kvmclock: TSC-deadline %d, ARAT %d, invariant TSC %d\n",
		  cpuid_bit(1, 2, 24), cpuid_bit(6, 0, 2),
		  cpuid_bit(0x80000007, 3, 8));
	bad += !cpuid_bit(1, 2, 24) || !cpuid_bit(6, 0, 2) ||
	       !cpuid_bit(0x80000007, 3, 8);
	return bad;
}

/* TSC cycles of a stretch against the clock's advance over it. */
static int check_rate(unsigned int cpu)
{
	uint64_t tsc0, tsc1, t0, t1, want, got;

	t0 = kvmclock_read(cpu, &tsc0);
	for (volatile unsigned long i = 0; i < 3000000; i++)
		rt_pause();
	t1 = kvmclock_read(cpu, &tsc1);
	got = t1 - t0;
	want = scale(tsc1 - tsc0, pv[cpu].tsc_to_system_mul, pv[cpu].tsc_shift);
	return got + want / 100 < want || got > want + want / 100;
}

int guest_main(unsigned int cpu)
{
	unsigned int n = rt_boot.nr_vcpus;
	int bad = 0, rate_bad = 0;

	if (cpu == 0) {
		bad += check_cpuid();
		rt_wrmsr(MSR_KVM_WALL_CLOCK_NEW, (uint64_t)&wall);
		rt_printf("kvmclock: wall clock: version even %s, after 2020 "
			  "%s\n",
			  wall.version & 1 ? "no" : "yes",
			  wall.sec > 1577836800u ? "yes" : "no");
		bad += (wall.version & 1) || wall.sec <= 1577836800u;
	}
	rt_wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint64_t)&pv[cpu] | 1);
	(void)kvmclock_read(cpu, NULL);
	muls[cpu] = pv[cpu].tsc_to_system_mul;
	shifts[cpu] = pv[cpu].tsc_shift;
	flags_seen[cpu] = pv[cpu].flags;
	rt_barrier();
	reads(cpu, READS / n + (cpu < READS % n));
	rt_barrier();
	if (cpu == 0)
		rate_bad = check_rate(0);
	if (cpu != 0)
		return 0;

	rt_printf("kvmclock: %u vcpus, %u reads\n", n, READS);
	for (unsigned int c = 0; c < n; c++) {
		bool same = muls[c] == muls[0] && shifts[c] == shifts[0];
		bool stable = flags_seen[c] & PVCLOCK_TSC_STABLE_BIT;

		rt_printf("vcpu %u: stable bit %s, scale as vcpu 0's %s, "
			  "backwards %u\n",
			  c, stable ? "yes" : "no", same ? "yes" : "no",
			  backwards[c]);
		if (backwards[c])
			rt_printf("vcpu %u: up to %lu ns backwards\n", c,
				  worst_back[c]);
		bad += !same || !stable || backwards[c];
	}
	rt_printf("kvmclock: advances with the TSC by its scale: %s\n",
		  rate_bad ? "no" : "yes");
	bad += rate_bad;
	rt_printf("kvmclock: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
