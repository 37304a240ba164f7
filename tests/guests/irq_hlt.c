/*
 * irq_hlt: `sti; hlt` never loses a wake-up, over ROUNDS rounds on
 * vCPU 0 (two vCPUs). Each round vCPU 0 tests its condition with
 * IF = 0 and sleeps with `sti; hlt`, the idiom whose correctness rests
 * on the STI shadow (SDM vol. 2, STI: interrupts stay blocked until the
 * instruction after STI has run, so one pending at the STI wakes the
 * HLT instead of being taken before it). The wake-up comes, at random:
 * - from a self-IPI already pending at the STI: the handler must find
 *   its return address right after the HLT, not at it;
 * - from the local APIC timer in one-shot mode, 0.1-3 us ahead;
 * - from vCPU 1, which sends a fixed IPI after a random delay.
 * vCPU 1 never halts (it spins between IPIs), so the QEMU runner never
 * mistakes the rounds for a halted guest; it is also the watchdog: when
 * vCPU 0 makes no progress for STUCK_SPINS of its loops it reports the
 * round, its kind, and fails. The transcript counts the kinds, which a
 * fixed seed makes the same on every run.
 */
#include "irq.h"

#define ROUNDS 100000
#define STUCK_SPINS (1UL << 24)
#define V_SELF 0x50
#define V_TIMER 0x60
#define V_PING 0x70

enum { K_SELF, K_TIMER, K_PING, NR_KINDS };

static const char *const kind_name[NR_KINDS] = {
	"self-IPI pending at sti",
	"one-shot timer",
	"IPI from vcpu 1",
};

static volatile unsigned int cur_round, round_kind;
static volatile unsigned int ping_armed, ping_got; /* round numbers */
static volatile unsigned int woken; /* rounds whose wake-up came */
static volatile unsigned int early; /* taken at the HLT, not after */
static volatile bool finished, failed;
static unsigned int kinds[NR_KINDS];

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void on_self(struct rt_irq_frame *f)
{
	if (f->rip != (uint64_t)rt_after_hlt)
		early++;
	woken = cur_round;
	rt_apic_eoi();
}

static void on_timer(struct rt_irq_frame *f)
{
	(void)f;
	woken = cur_round;
	rt_apic_eoi();
}

static void on_ping(struct rt_irq_frame *f)
{
	(void)f;
	__atomic_store_n(&ping_got, ping_armed, __ATOMIC_RELEASE);
	woken = cur_round;
	rt_apic_eoi();
}

/* vCPU 0: sleeps until this round's wake-up has come. */
static void sleep_until_woken(unsigned int r)
{
	rt_cli();
	while (woken != r) {
		rt_sti_hlt();
		rt_cli();
	}
}

static void vcpu0(void)
{
	uint64_t seed = 0x853c49e6748fea9bULL;

	rt_apic_write(APIC_TIMER_DCR, APIC_DCR_DIV1);
	rt_apic_write(APIC_LVT_TIMER, V_TIMER); /* one-shot */
	for (unsigned int r = 1; r <= ROUNDS; r++) {
		uint64_t x = xorshift(&seed);
		unsigned int k = (unsigned int)(x % NR_KINDS);

		round_kind = k;
		__atomic_store_n(&cur_round, r, __ATOMIC_RELEASE);
		kinds[k]++;
		switch (k) {
		case K_SELF:
			rt_cli();
			rt_apic_send(0, ICR_SELF | ICR_ASSERT | ICR_FIXED |
						V_SELF);
			/* cli; sti; hlt at a known address (rt_after_hlt). */
			rt_sti_hlt_at();
			sleep_until_woken(r);
			break;
		case K_TIMER:
			rt_cli();
			rt_apic_write(APIC_TIMER_ICR,
				      100 + (uint32_t)((x >> 16) % 2900));
			sleep_until_woken(r);
			break;
		case K_PING:
			rt_cli();
			__atomic_store_n(&ping_armed, r, __ATOMIC_RELEASE);
			sleep_until_woken(r);
			break;
		}
	}
	__atomic_store_n(&finished, true, __ATOMIC_RELEASE);
}

/* vCPU 1: sends the pings, and watches vCPU 0. */
static void vcpu1(void)
{
	uint64_t seed = 0x2545f4914f6cdd1dULL;
	unsigned int last = 0;
	unsigned long idle = 0;

	while (!__atomic_load_n(&finished, __ATOMIC_ACQUIRE)) {
		unsigned int armed =
			__atomic_load_n(&ping_armed, __ATOMIC_ACQUIRE);
		unsigned int r = __atomic_load_n(&cur_round, __ATOMIC_ACQUIRE);

		if (armed &&
		    armed != __atomic_load_n(&ping_got, __ATOMIC_ACQUIRE) &&
		    armed == r) {
			unsigned int delay =
				(unsigned int)(xorshift(&seed) % 200);

			for (volatile unsigned int i = 0; i < delay; i++)
				rt_pause();
			rt_apic_send(0, ICR_ASSERT | ICR_FIXED | V_PING);
			while (__atomic_load_n(&ping_got, __ATOMIC_ACQUIRE) !=
				       armed &&
			       !__atomic_load_n(&finished, __ATOMIC_ACQUIRE) &&
			       ++idle < STUCK_SPINS)
				rt_pause();
		}
		if (r != last) {
			last = r;
			idle = 0;
		} else if (++idle >= STUCK_SPINS) {
			rt_printf("irq_hlt: vcpu 0 stuck in round %u (%s): a "
				  "lost wake-up\n",
				  r, kind_name[round_kind]);
			__atomic_store_n(&failed, true, __ATOMIC_RELEASE);
			rt_exit(1);
		}
		rt_pause();
	}
}

int guest_main(unsigned int cpu)
{
	int bad = 0;

	if (rt_boot.nr_vcpus != 2)
		rt_fail("irq_hlt runs with 2 vcpus, not %u\n",
			rt_boot.nr_vcpus);
	rt_irq_setup();
	rt_apic_enable();
	if (cpu == 0) {
		rt_irq_set_handler(V_SELF, on_self);
		rt_irq_set_handler(V_TIMER, on_timer);
		rt_irq_set_handler(V_PING, on_ping);
	}
	rt_barrier();
	if (cpu == 1) {
		vcpu1();
		return 0;
	}
	vcpu0();
	rt_cli();
	rt_apic_write(APIC_LVT_TIMER, APIC_LVT_MASKED);
	rt_printf("irq_hlt: %u rounds of sti; hlt, every wake-up came\n",
		  ROUNDS);
	for (unsigned int k = 0; k < NR_KINDS; k++)
		rt_printf("irq_hlt: %s: %u\n", kind_name[k], kinds[k]);
	rt_printf("irq_hlt: taken before the hlt: %u\n", early);
	bad += early != 0;
	rt_printf("irq_hlt: %s\n", bad ? "FAIL" : "PASS");
	return bad;
}
