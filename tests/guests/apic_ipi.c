/*
 * apic_ipi: IPIs between vCPUs through the local APICs (SDM vol. 3,
 * 10.6), run with 1, 2 and 4 vCPUs.
 * - Ping-pong: a token goes round the ring of vCPUs ROUNDS times, each
 *   hop a fixed IPI in physical destination mode to the next APIC ID
 *   (with one vCPU, to itself); every vCPU waits for it with
 *   `sti; hlt`. Each vCPU counts what it received and checks the token
 *   came from its predecessor: the counts are ROUNDS each.
 * - Broadcast: vCPU 0 sends "all excluding self" BROADCASTS times and
 *   spins until every other vCPU, woken from HLT by it, has acknowledged
 *   it; then "all including self".
 * - Logical flat mode: each vCPU's LDR gets bit (index) of the flat
 *   model; vCPU 0 sends one IPI to the mask of the odd vCPUs.
 * Counts are printed by vCPU 0, so the transcript depends only on the
 * vCPU count.
 */
#include "irq.h"

#define ROUNDS 2000
#define BROADCASTS 200
#define V_TOKEN 0x40
#define V_BCAST 0x41
#define V_LOGICAL 0x42
#define V_WAKE 0x43 /* wakes the others to look at a flag */

static unsigned int n;
static volatile unsigned int token_owner; /* the vCPU holding the token */
static volatile unsigned int hops; /* hops made in all */
static volatile unsigned int received[RT_MAX_CPUS][3];
static volatile unsigned int wrong_sender[RT_MAX_CPUS];
static volatile unsigned int bcast_gen, bcast_acks;
static volatile bool done;

static unsigned int slot(unsigned int v)
{
	return v - V_TOKEN;
}

/* The token arrives: pass it on, unless the rounds are done. */
static void on_token(struct rt_irq_frame *f)
{
	unsigned int me = rt_cpu_index();
	unsigned int h;

	(void)f;
	received[me][slot(V_TOKEN)]++;
	if (__atomic_load_n(&token_owner, __ATOMIC_ACQUIRE) != me)
		wrong_sender[me]++;
	h = __atomic_add_fetch(&hops, 1, __ATOMIC_ACQ_REL);
	rt_apic_eoi();
	if (h < ROUNDS * n) {
		__atomic_store_n(&token_owner, (me + 1) % n, __ATOMIC_RELEASE);
		rt_apic_send((me + 1) % n, ICR_ASSERT | ICR_FIXED | V_TOKEN);
	} else {
		__atomic_store_n(&done, true, __ATOMIC_RELEASE);
		rt_apic_send(0, ICR_OTHERS | ICR_ASSERT | ICR_FIXED | V_WAKE);
	}
}

static void on_wake(struct rt_irq_frame *f)
{
	(void)f;
	rt_apic_eoi();
}

static void on_other(struct rt_irq_frame *f)
{
	unsigned int me = rt_cpu_index();

	received[me][slot((unsigned int)f->vector)]++;
	if (f->vector == V_BCAST)
		__atomic_add_fetch(&bcast_acks, 1, __ATOMIC_ACQ_REL);
	rt_apic_eoi();
}

/* Sleeps until cond() holds: cond is read with IF = 0 and the sleep is
 * `sti; hlt`, so an interrupt that makes it true cannot come between
 * the test and the HLT and be missed (the STI shadow). */
static void wait_for(bool (*cond)(void))
{
	rt_cli();
	while (!cond()) {
		rt_sti_hlt();
		rt_cli();
	}
}

static bool is_done(void)
{
	return __atomic_load_n(&done, __ATOMIC_ACQUIRE);
}

static unsigned int acks_wanted;

static bool acks_in(void)
{
	return __atomic_load_n(&bcast_acks, __ATOMIC_ACQUIRE) >= acks_wanted;
}

static unsigned int bcast_phase;

static bool bcast_over(void)
{
	return __atomic_load_n(&bcast_phase, __ATOMIC_ACQUIRE) != 0;
}

int guest_main(unsigned int cpu)
{
	int bad = 0;

	n = rt_boot.nr_vcpus;
	rt_irq_setup();
	rt_apic_enable();
	/* Flat model, one bit per vCPU (SDM vol. 3, 10.6.2.2). */
	rt_apic_write(APIC_DFR, 0xffffffff);
	rt_apic_write(APIC_LDR, (1u << cpu) << 24);
	if (cpu == 0) {
		rt_irq_set_handler(V_TOKEN, on_token);
		rt_irq_set_handler(V_BCAST, on_other);
		rt_irq_set_handler(V_LOGICAL, on_other);
		rt_irq_set_handler(V_WAKE, on_wake);
	}
	rt_barrier();
	if (rt_apic_id() != cpu)
		rt_fail("vcpu %u: APIC ID %u\n", cpu, rt_apic_id());

	/* The ring: vCPU 0 holds the token first and sends it to 1 % n. */
	if (cpu == 0) {
		__atomic_store_n(&token_owner, 1 % n, __ATOMIC_RELEASE);
		rt_apic_send(1 % n, ICR_ASSERT | ICR_FIXED | V_TOKEN);
	}
	wait_for(is_done);
	rt_barrier();

	/* Broadcasts, each waited for. */
	if (cpu == 0) {
		for (unsigned int i = 1; i <= BROADCASTS; i++) {
			acks_wanted = i * (n - 1);
			rt_apic_send(0, ICR_OTHERS | ICR_ASSERT | ICR_FIXED |
						V_BCAST);
			/* The acks are stores, not IPIs: spin for them. */
			while (!acks_in())
				rt_pause();
		}
		acks_wanted = BROADCASTS * (n - 1) + n;
		rt_apic_send(0, ICR_ALL | ICR_ASSERT | ICR_FIXED | V_BCAST);
		/* Its own copy comes by interrupt, the others' acks do not:
		 * spin with IF = 1. */
		rt_sti();
		while (!acks_in())
			rt_pause();
		rt_cli();
		/* Logical flat: the odd vCPUs (none with one vCPU). */
		if (n > 1) {
			uint32_t mask = 0;

			for (unsigned int c = 1; c < n; c += 2)
				mask |= 1u << c;
			rt_apic_send(mask, ICR_LOGICAL | ICR_ASSERT |
						   ICR_FIXED | V_LOGICAL);
		}
		__atomic_store_n(&bcast_phase, 1, __ATOMIC_RELEASE);
		rt_apic_send(0, ICR_OTHERS | ICR_ASSERT | ICR_FIXED | V_WAKE);
	} else {
		wait_for(bcast_over);
	}
	/* Let the logical IPI land, then count. */
	rt_sti();
	for (volatile int i = 0; i < 100000; i++)
		rt_pause();
	rt_cli();
	rt_barrier();
	if (cpu != 0)
		return 0;

	rt_printf("apic_ipi: %u vcpus, %u hops\n", n, hops);
	for (unsigned int c = 0; c < n; c++) {
		unsigned int want_bcast = (c ? BROADCASTS : 0) + 1;
		unsigned int want_logical = c & 1;

		rt_printf("vcpu %u: token %u, from its predecessor: %s; "
			  "broadcast %u; logical %u\n",
			  c, received[c][0], wrong_sender[c] ? "no" : "yes",
			  received[c][1], received[c][2]);
		bad += received[c][0] != ROUNDS || wrong_sender[c] ||
		       received[c][1] != want_bcast ||
		       received[c][2] != want_logical;
	}
	bad += hops != ROUNDS * n;
	rt_printf("apic_ipi: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
