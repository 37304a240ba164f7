/*
 * Tests of external interrupts and NMI in the software CPU (except.c,
 * cpu.c): delivery at instruction boundaries through the 64-bit IDT,
 * RFLAGS.IF, the STI and MOV SS interrupt shadows, NMI before maskable
 * interrupts and NMI blocking until IRET, and HLT left by a delivered
 * event. Each test names the SDM section its rule comes from.
 *
 * The interrupt controller is a queue of vectors in this file: the INTR
 * line is up while it is not empty, and the acknowledge callback pops
 * it. Runs are made with x86_run() directly, in steps of a few
 * instructions, so a line can be raised between two instructions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sys_setup.h"
#include "x86_int.h" /* to put an interrupt controller under the CPU */

static struct {
	int queue[8];
	unsigned int head, tail;
	unsigned int acks;
	struct x86_cpu *cpu;
} pic;

static int pic_ack(void *opaque)
{
	int v;

	(void)opaque;
	pic.acks++;
	if (pic.head == pic.tail)
		return -1;
	v = pic.queue[pic.head++ % 8];

	x86_set_intr(pic.cpu, pic.head != pic.tail);
	return v;
}

static struct x86_env irq_env;

/* A harness CPU with the system tables and this file's controller. */
static struct xh *irq_new(void)
{
	struct xh *h = sys_new();

	irq_env = *h->cpu->env;
	irq_env.intr_ack = pic_ack;
	h->cpu->env = &irq_env;
	memset(&pic, 0, sizeof(pic));
	pic.cpu = h->cpu;
	return h;
}

/* Queues vector and raises the INTR line. */
static void raise_irq(struct xh *h, int vector)
{
	pic.queue[pic.tail++ % 8] = vector;
	x86_set_intr(h->cpu, true);
}

static enum x86_exit_reason run(struct xh *h, uint64_t max_insns)
{
	struct x86_exit exit;

	return x86_run(h->cpu, max_insns, &exit);
}

/* The interrupt frame on top of the handler's stack: RIP, CS, RFLAGS,
 * RSP, SS (no error code: SDM vol. 3, 6.13, interrupts push none). */
static void expect_frame(struct xh *h, uint64_t rip, uint64_t rflags,
			 uint64_t old_rsp)
{
	uint64_t rsp = sys_reg(h, X86_RSP);

	assert_int_equal(sys_read64(h, rsp), rip);
	assert_int_equal(sys_read64(h, rsp + 8), SEL_KCODE);
	assert_int_equal(sys_read64(h, rsp + 16), rflags);
	assert_int_equal(sys_read64(h, rsp + 24), old_rsp);
	assert_int_equal(sys_read64(h, rsp + 32), SEL_KDATA);
}

static const uint8_t nops[] = { 0x90, 0x90, 0x90, 0x90 };

/* SDM vol. 3, 6.8.1 and 6.12.1: with IF = 1 an interrupt is taken at
 * the next boundary through its interrupt gate, which clears IF; the
 * frame holds the address of the next instruction and RF stays clear
 * (6.14.2: no error code for an external interrupt). */
static void test_irq_delivered_with_if_through_gate(void **state)
{
	struct xh *h = irq_new();

	(void)state;
	xh_place_code(h, nops, sizeof(nops));
	sys_set_rflags(h, 0x202);
	assert_int_equal(run(h, 2), X86_EXIT_BUDGET);
	raise_irq(h, 0x40);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, 0x40));
	expect_frame(h, XH_CODE + 2, 0x202, XH_STACK_TOP);
	assert_int_equal(sys_reg(h, X86_RSP), XH_STACK_TOP - 40);
	assert_int_equal(sys_rflags(h) & X86_RFLAGS_IF, 0);
	assert_int_equal(pic.acks, 1);
	xh_free(h);
}

/* SDM vol. 3, 6.8.1: IF = 0 masks INTR; nothing is acknowledged. */
static void test_irq_masked_by_if_clear(void **state)
{
	struct xh *h = irq_new();

	(void)state;
	xh_place_code(h, nops, sizeof(nops));
	sys_set_rflags(h, 0x2);
	raise_irq(h, 0x40);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_int_equal(sys_rip(h), XH_CODE + sizeof(nops) + 1);
	assert_int_equal(pic.acks, 0);
	xh_free(h);
}

/* SDM vol. 3, 6.12.1.3: a trap gate leaves IF set in the handler. */
static void test_irq_trap_gate_keeps_if(void **state)
{
	struct xh *h = irq_new();

	(void)state;
	sys_set_gate(h, 0x41, sys_handler(0x41), SEL_KCODE, 0, GATE_TRAP);
	xh_place_code(h, nops, sizeof(nops));
	sys_set_rflags(h, 0x202);
	raise_irq(h, 0x41);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, 0x41));
	assert_true(sys_rflags(h) & X86_RFLAGS_IF);
	xh_free(h);
}

/* SDM vol. 2, STI: with IF = 0 before it, interrupts are recognised
 * only after the instruction that follows STI. */
static void test_irq_sti_shadow_blocks_one_boundary(void **state)
{
	struct xh *h = irq_new();

	(void)state;
	xh_place_code(h, nops, sizeof(nops));
	*(uint8_t *)xh_ptr(h, XH_CODE) = 0xfb; /* sti; nop; nop; nop */
	sys_set_rflags(h, 0x2);
	raise_irq(h, 0x42);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, 0x42));
	/* Not after STI (XH_CODE + 1): after the NOP that follows it. */
	expect_frame(h, XH_CODE + 2, 0x202, XH_STACK_TOP);
	xh_free(h);
}

/* SDM vol. 2, STI: STI with IF already 1 sets no shadow. */
static void test_irq_sti_with_if_set_no_shadow(void **state)
{
	static const uint8_t code[] = { 0x90, 0xfb, 0x90, 0x90 };
	struct xh *h = irq_new();

	(void)state;
	xh_place_code(h, code, sizeof(code));
	sys_set_rflags(h, 0x202);
	/* NOP, then STI alone, with the line down. */
	assert_int_equal(run(h, 2), X86_EXIT_BUDGET);
	raise_irq(h, 0x43);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	expect_frame(h, XH_CODE + 2, 0x202, XH_STACK_TOP);
	xh_free(h);
}

/* SDM vol. 3, 6.8.3 and vol. 2, MOV: a MOV to SS inhibits interrupts
 * until the next instruction has completed. The line rises with the
 * CPU just after the MOV (the shadow survives the end of a run). */
static void test_irq_mov_ss_shadow_blocks_one_boundary(void **state)
{
	/* mov %ss, %eax; mov %eax, %ss; nop; nop */
	static const uint8_t code[] = { 0x8c, 0xd0, 0x8e, 0xd0, 0x90, 0x90 };
	struct xh *h = irq_new();

	(void)state;
	xh_place_code(h, code, sizeof(code));
	sys_set_rflags(h, 0x202);
	assert_int_equal(run(h, 2), X86_EXIT_BUDGET);
	assert_int_equal(sys_rip(h), XH_CODE + 4);
	raise_irq(h, 0x44);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, 0x44));
	expect_frame(h, XH_CODE + 5, 0x202, XH_STACK_TOP);
	xh_free(h);
}

/* SDM vol. 2, POP: POP SS is invalid in 64-bit mode (#UD), so the only
 * SS-load shadow there is MOV SS's. */
static void test_irq_pop_ss_invalid_in_64bit_mode(void **state)
{
	static const uint8_t pop_ss[] = { 0x17 };
	struct xh *h = irq_new();

	(void)state;
	assert_int_equal(sys_run_fault(h, pop_ss, sizeof(pop_ss), X86_UD),
			 XH_CODE);
	xh_free(h);
}

/* SDM vol. 2, HLT (an enabled interrupt resumes execution) and STI:
 * `sti; hlt` with an interrupt pending halts first (the shadow covers
 * the boundary before HLT), and the interrupt then ends the halt with
 * the address after HLT in its frame. */
static void test_irq_sti_hlt_wakes_after_hlt(void **state)
{
	static const uint8_t code[] = { 0xfb, 0xf4, 0x90 };
	struct xh *h = irq_new();

	(void)state;
	xh_place_code(h, code, sizeof(code));
	sys_set_rflags(h, 0x2);
	raise_irq(h, 0x45);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_int_equal(sys_rip(h), XH_CODE + 2);
	assert_true(x86_halted(h->cpu));
	assert_true(x86_event_ready(h->cpu));
	assert_int_equal(pic.acks, 0);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, 0x45));
	expect_frame(h, XH_CODE + 2, 0x202, XH_STACK_TOP);
	xh_free(h);
}

/* SDM vol. 2, HLT: a halted CPU stays halted with nothing to take, and
 * a masked interrupt (IF = 0) does not resume it. */
static void test_irq_hlt_stays_halted_when_masked(void **state)
{
	static const uint8_t code[] = { 0xf4, 0x90 };
	struct xh *h = irq_new();

	(void)state;
	xh_place_code(h, code, sizeof(code));
	sys_set_rflags(h, 0x2);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_int_equal(sys_rip(h), XH_CODE + 1);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	raise_irq(h, 0x46);
	assert_false(x86_event_ready(h->cpu));
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_int_equal(sys_rip(h), XH_CODE + 1);
	assert_true(x86_halted(h->cpu));
	assert_int_equal(x86_insns_retired(h->cpu), 1);
	assert_int_equal(pic.acks, 0);
	xh_free(h);
}

/* SDM vol. 3, 6.7 and 6.8.1: an NMI is taken whatever IF says, through
 * vector 2, and resumes a HLT. */
static void test_irq_nmi_ignores_if_and_wakes_hlt(void **state)
{
	static const uint8_t code[] = { 0xf4, 0x90 };
	struct xh *h = irq_new();

	(void)state;
	xh_place_code(h, code, sizeof(code));
	sys_set_rflags(h, 0x2);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	x86_inject_nmi(h->cpu);
	assert_true(x86_event_ready(h->cpu));
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, X86_NMI));
	expect_frame(h, XH_CODE + 1, 0x2, XH_STACK_TOP);
	assert_true(x86_nmi_blocked(h->cpu));
	xh_free(h);
}

/* SDM vol. 3, 6.9, table 6-2: NMI (priority 5) before a maskable
 * interrupt (priority 6) when both are pending at one boundary; the
 * interrupt stays pending (not acknowledged). */
static void test_irq_nmi_before_maskable_interrupt(void **state)
{
	struct xh *h = irq_new();

	(void)state;
	xh_place_code(h, nops, sizeof(nops));
	sys_set_rflags(h, 0x202);
	raise_irq(h, 0x47);
	x86_inject_nmi(h->cpu);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, X86_NMI));
	assert_int_equal(pic.acks, 0);
	xh_free(h);
}

/* SDM vol. 3, 6.7.1: after an NMI is delivered, another is held until
 * the next IRET, then taken at the boundary after it; an NMI that
 * arrives meanwhile is latched, not lost. */
static void test_irq_nmi_blocked_until_iret(void **state)
{
	/* The NMI handler: nop; iretq. */
	static const uint8_t handler[] = { 0x90, 0x48, 0xcf };
	struct xh *h = irq_new();

	(void)state;
	xh_load(h, sys_handler(X86_NMI), handler, sizeof(handler));
	xh_place_code(h, nops, sizeof(nops));
	sys_set_rflags(h, 0x2);
	x86_inject_nmi(h->cpu);
	/* Delivery, then the handler's NOP. */
	assert_int_equal(run(h, 1), X86_EXIT_BUDGET);
	assert_int_equal(sys_rip(h), sys_handler(X86_NMI) + 1);
	x86_inject_nmi(h->cpu);
	assert_false(x86_event_ready(h->cpu));
	/* IRETQ returns to XH_CODE, and the second NMI is taken at once:
	 * the handler's NOP runs again. */
	assert_int_equal(run(h, 1), X86_EXIT_BUDGET);
	assert_int_equal(sys_rip(h), sys_handler(X86_NMI));
	expect_frame(h, XH_CODE, 0x2, XH_STACK_TOP);
	assert_true(x86_nmi_blocked(h->cpu));
	xh_free(h);
}

/* SDM vol. 3, 6.14.2 and 6.14.4: an interrupt taken at CPL3 switches to
 * RSP0 and pushes the user SS:RSP. */
static void test_irq_from_cpl3_switches_to_rsp0(void **state)
{
	struct xh *h = irq_new();

	(void)state;
	sys_enter_cpl3(h);
	xh_place_code(h, nops, sizeof(nops));
	sys_set_rflags(h, 0x202);
	assert_int_equal(run(h, 1), X86_EXIT_BUDGET);
	raise_irq(h, 0x48);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, 0x48));
	assert_int_equal(x86_cpl(h->cpu), 0);
	assert_int_equal(sys_reg(h, X86_RSP), SYS_RSP0 - 40);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 40), XH_CODE + 1);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 32), SEL_UCODE);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 16), SYS_USER_STACK);
	assert_int_equal(sys_read64(h, SYS_RSP0 - 8), SEL_UDATA);
	xh_free(h);
}

/* A shadow fault on the delivery's stack push leaves the interrupt
 * pending (its vector already acknowledged): delivery starts over after
 * the MMU ran and the interrupt is taken once. */
static void test_irq_shadow_fault_in_delivery_not_lost(void **state)
{
	struct xh *h = irq_new();
	struct x86_exit exit;

	(void)state;
	xh_place_code(h, nops, sizeof(nops));
	sys_set_rflags(h, 0x202);
	xh_set_page(h, XH_STACK_TOP - 8, 0);
	raise_irq(h, 0x49);
	assert_int_equal(x86_run(h->cpu, 0, &exit), X86_EXIT_SHADOW_FAULT);
	assert_int_equal(sys_rip(h), XH_CODE);
	xh_set_page(h, XH_STACK_TOP - 8, X86_PTE_P | X86_PTE_W | X86_PTE_U);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, 0x49));
	expect_frame(h, XH_CODE, 0x202, XH_STACK_TOP);
	assert_int_equal(pic.acks, 1);
	xh_free(h);
}

/* Two queued vectors: the acknowledge keeps the line up for the second,
 * which is taken when the first handler's IRETQ sets IF again. */
static void test_irq_two_vectors_taken_in_turn(void **state)
{
	static const uint8_t iretq[] = { 0x48, 0xcf };
	struct xh *h = irq_new();

	(void)state;
	xh_load(h, sys_handler(0x50), iretq, sizeof(iretq));
	xh_place_code(h, nops, sizeof(nops));
	sys_set_rflags(h, 0x202);
	raise_irq(h, 0x50);
	raise_irq(h, 0x51);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_true(sys_in_handler(h, 0x51));
	expect_frame(h, XH_CODE, 0x202, XH_STACK_TOP);
	assert_int_equal(pic.acks, 2);
	xh_free(h);
}

/* An acknowledge that finds nothing (the line dropped) delivers
 * nothing and leaves a halted CPU halted. */
static void test_irq_spurious_ack_delivers_nothing(void **state)
{
	static const uint8_t code[] = { 0xf4, 0x90 };
	struct xh *h = irq_new();

	(void)state;
	xh_place_code(h, code, sizeof(code));
	sys_set_rflags(h, 0x202);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	x86_set_intr(h->cpu, true);
	assert_int_equal(run(h, 0), X86_EXIT_HLT);
	assert_int_equal(pic.acks, 1);
	assert_int_equal(sys_rip(h), XH_CODE + 1);
	assert_true(x86_halted(h->cpu));
	assert_false(x86_event_ready(h->cpu));
	xh_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_irq_delivered_with_if_through_gate),
		cmocka_unit_test(test_irq_masked_by_if_clear),
		cmocka_unit_test(test_irq_trap_gate_keeps_if),
		cmocka_unit_test(test_irq_sti_shadow_blocks_one_boundary),
		cmocka_unit_test(test_irq_sti_with_if_set_no_shadow),
		cmocka_unit_test(test_irq_mov_ss_shadow_blocks_one_boundary),
		cmocka_unit_test(test_irq_pop_ss_invalid_in_64bit_mode),
		cmocka_unit_test(test_irq_sti_hlt_wakes_after_hlt),
		cmocka_unit_test(test_irq_hlt_stays_halted_when_masked),
		cmocka_unit_test(test_irq_nmi_ignores_if_and_wakes_hlt),
		cmocka_unit_test(test_irq_nmi_before_maskable_interrupt),
		cmocka_unit_test(test_irq_nmi_blocked_until_iret),
		cmocka_unit_test(test_irq_from_cpl3_switches_to_rsp0),
		cmocka_unit_test(test_irq_shadow_fault_in_delivery_not_lost),
		cmocka_unit_test(test_irq_two_vectors_taken_in_turn),
		cmocka_unit_test(test_irq_spurious_ack_delivers_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
