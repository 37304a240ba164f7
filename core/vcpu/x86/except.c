/*
 * Exceptions and software interrupts of the software CPU: raising them
 * (x86_raise*, x86_inject_exception), combining a fault that happens
 * while another event is being delivered by the SDM's double-fault rules
 * (vol. 3, 6.15, table 6-5), the triple fault that ends x86_run(), and
 * delivery through the 64-bit IDT with the TSS stack switch (RSP0-2,
 * IST). It does not decide which instruction raises what (the executors
 * do), nor does it run the loop that calls x86_deliver_event() (cpu.c).
 *
 * An event lives in cpu->ev from the moment it is raised until its
 * delivery has completed. Delivery reads the IDT, GDT and TSS and writes
 * the new stack; any of those accesses may leave through a shadow-fault
 * exit, in which case the event stays pending and delivery starts over
 * after the MMU has run. A fault raised, or injected by the MMU, while
 * cpu->ev is pending is therefore a fault during its delivery.
 */
#include <setjmp.h>

#include "x86_int.h"

enum fault_class {
	CLASS_BENIGN,
	CLASS_CONTRIBUTORY,
	CLASS_PAGE_FAULT,
	CLASS_DOUBLE_FAULT,
};

/* SDM vol. 3, 6.15, table 6-4. Software interrupts (INT n, INT3) are not
 * exceptions of any class: a fault while delivering one is handled
 * serially, whatever its vector. */
static enum fault_class fault_class(unsigned int vector, unsigned int kind)
{
	if (kind == X86_EV_SOFT_INT)
		return CLASS_BENIGN;
	switch (vector) {
	case X86_DE:
	case X86_TS:
	case X86_NP:
	case X86_SSF:
	case X86_GP:
	case 21: /* #CP */
		return CLASS_CONTRIBUTORY;
	case X86_PF:
		return CLASS_PAGE_FAULT;
	case X86_DF:
		return CLASS_DOUBLE_FAULT;
	default:
		return CLASS_BENIGN;
	}
}

/* SDM vol. 3, 6.13 and 6.15: the exceptions that push an error code. */
static bool vector_has_error(unsigned int vector)
{
	switch (vector) {
	case X86_DF:
	case X86_TS:
	case X86_NP:
	case X86_SSF:
	case X86_GP:
	case X86_PF:
	case X86_AC:
	case 21: /* #CP */
		return true;
	default:
		return false;
	}
}

/*
 * Makes an event pending, combining it with the one being delivered if
 * there is one. The chain keeps the first exception of the sequence (the
 * one the guest's instruction caused), the exception that turned into
 * #DF, and #DF, so a triple fault names its origin even when a benign
 * fault was replaced serially on the way (#UD with no IDT -> #GP -> #GP
 * -> #DF is reported as 6, 13, 8).
 */
static void queue_event(struct x86_cpu *cpu, unsigned int vector,
			enum x86_event_kind kind, bool has_error,
			uint32_t error, uint64_t cr2)
{
	struct x86_event *ev = &cpu->ev;
	enum fault_class first, second;

	if (cpu->shutdown)
		return;
	vector &= 0xff;
	if (!ev->pending) {
		cpu->chain[0] = (uint8_t)vector;
		cpu->chain_len = 1;
		goto set;
	}

	first = fault_class(ev->vector, ev->kind);
	second = fault_class(vector, kind);
	if (first == CLASS_DOUBLE_FAULT) {
		/* SDM vol. 3, 6.15 (interrupt 8): a fault while the processor
		 * calls the #DF handler shuts it down. Only contributory
		 * faults and #PF can arise from delivery itself; anything
		 * else here is treated the same way (docs/GUEST-ABI.md,
		 * "CPU"). */
		if (cpu->chain_len < 3) {
			cpu->chain[1] = (uint8_t)vector;
			cpu->chain[2] = X86_DF;
			cpu->chain_len = 3;
		}
		cpu->shutdown = true;
		return;
	}
	if ((first == CLASS_CONTRIBUTORY && second == CLASS_CONTRIBUTORY) ||
	    (first == CLASS_PAGE_FAULT && second != CLASS_BENIGN)) {
		/* Table 6-5: the pair becomes #DF with error code 0. The
		 * second #PF was still detected: CR2 holds its address. */
		if (vector == X86_PF)
			cpu->cr2 = cr2;
		cpu->chain[1] = (uint8_t)vector;
		cpu->chain[2] = X86_DF;
		cpu->chain_len = 3;
		vector = X86_DF;
		kind = X86_EV_FAULT;
		has_error = true;
		error = 0;
	}
	/* Otherwise the second event is handled serially: it replaces the
	 * first, which recurs when its instruction is restarted. */
set:
	ev->pending = true;
	ev->vector = (uint8_t)vector;
	ev->kind = (uint8_t)kind;
	ev->has_error = has_error;
	ev->error = error;
	/* Faults restart their instruction; interrupts and NMIs are taken
	 * at a boundary, where rip is the next instruction (next_rip may
	 * still name the end of an instruction a shadow fault abandoned). */
	ev->return_rip = kind == X86_EV_FAULT || kind == X86_EV_EXTINT ||
					 kind == X86_EV_NMI ?
				 cpu->rip :
				 cpu->next_rip;
	if (vector == X86_PF)
		cpu->ev_cr2 = cr2;
}

_Noreturn void x86_raise_event(struct x86_cpu *cpu, unsigned int vector,
			       enum x86_event_kind kind, bool has_error,
			       uint32_t error)
{
	queue_event(cpu, vector, kind, has_error, error, 0);
	longjmp(cpu->abort, X86_ABORT_EVENT);
}

_Noreturn void x86_raise(struct x86_cpu *cpu, unsigned int vector,
			 uint32_t error)
{
	bool has_error = vector_has_error(vector);

	x86_raise_event(cpu, vector, X86_EV_FAULT, has_error,
			has_error ? error : 0);
}

_Noreturn void x86_raise_pf(struct x86_cpu *cpu, gva_t la, uint32_t error)
{
	queue_event(cpu, X86_PF, X86_EV_FAULT, true, error, la);
	longjmp(cpu->abort, X86_ABORT_EVENT);
}

void x86_inject_exception(struct x86_cpu *cpu, unsigned int vector,
			  uint32_t error_code, uint64_t cr2)
{
	bool has_error = vector < 32 && vector_has_error(vector);

	queue_event(cpu, vector, X86_EV_FAULT, has_error,
		    has_error ? error_code : 0, cr2);
}

static _Noreturn void triple_fault(struct x86_cpu *cpu)
{
	struct x86_exit *exit = cpu->exit;

	exit->reason = X86_EXIT_TRIPLE_FAULT;
	for (unsigned int i = 0; i < 3; i++)
		exit->triple.vectors[i] = i < cpu->chain_len ? cpu->chain[i] :
							       0;
	exit->triple.rip = cpu->rip;
	cpu->stop = true;
	longjmp(cpu->abort, X86_ABORT_EXIT);
}

/* The descriptor of a code-segment selector named by an IDT gate, with
 * the checks of SDM vol. 3, 6.12.1.1 and the INT n pseudocode in
 * 64-bit mode (error codes carry EXT). */
static uint64_t gate_code_descriptor(struct x86_cpu *cpu, uint16_t sel,
				     uint32_t ext, gva_t *where)
{
	uint32_t err = (sel & 0xfffcu) | ext;
	uint64_t base = cpu->gdt.base, raw;
	uint32_t limit = cpu->gdt.limit;

	if ((sel & 0xfffcu) == 0)
		x86_raise(cpu, X86_GP, ext);
	if (sel & 4) {
		if (cpu->ldtr.attr & X86_SEG_UNUSABLE)
			x86_raise(cpu, X86_GP, err);
		base = cpu->ldtr.base;
		limit = cpu->ldtr.limit;
	}
	if ((uint32_t)(sel & ~7u) + 7 > limit)
		x86_raise(cpu, X86_GP, err);
	*where = base + (sel & ~7u);
	raw = x86_read_sys(cpu, *where, 8);
	/* A code segment (S = 1, type bit 3), DPL <= CPL, 64-bit (L = 1,
	 * D = 0): this CPU runs 64-bit code only. */
	if (!((raw >> 44) & 1) || !((raw >> 43) & 1) ||
	    ((raw >> 45) & 3) > cpu->cpl || !((raw >> 53) & 1) ||
	    ((raw >> 54) & 1))
		x86_raise(cpu, X86_GP, err);
	if (!((raw >> 47) & 1))
		x86_raise(cpu, X86_NP, err);
	return raw;
}

/* SDM vol. 3, 7.7: the stack pointer at byte offset off of the 64-bit
 * TSS (RSPn at 4 + 8n, ISTn at 0x24 + 8(n - 1)). */
static uint64_t tss_stack(struct x86_cpu *cpu, unsigned int off, uint32_t ext)
{
	uint64_t rsp;

	if ((cpu->tr.attr & X86_SEG_UNUSABLE) || off + 7 > cpu->tr.limit)
		x86_raise(cpu, X86_TS, (cpu->tr.sel & 0xfffcu) | ext);
	rsp = x86_read_sys(cpu, cpu->tr.base + off, 8);
	if (!x86_is_canonical(rsp))
		x86_raise(cpu, X86_SSF, ext);
	return rsp;
}

/*
 * SDM vol. 3, 6.14 (64-bit mode exception and interrupt handling) and
 * the IA-32e branch of the INT n pseudocode in vol. 2. Every check and
 * every memory access happens before the registers change (only CR2 is
 * loaded first, as the SDM wants even when delivery then faults), so a
 * fault or a shadow-fault exit anywhere leaves the interrupted context
 * intact and delivery starts over.
 */
void x86_deliver_event(struct x86_cpu *cpu)
{
	struct x86_event *ev = &cpu->ev;
	unsigned int vector = ev->vector;
	bool soft = ev->kind == X86_EV_SOFT_INT;
	/* SDM vol. 3, 6.13: EXT marks faults that arise while an event
	 * external to the program (here: an exception) is delivered. */
	uint32_t ext = soft ? 0 : 1;
	uint32_t idt_err = vector * 8 + 2 + ext;
	uint64_t lo, hi, cs_raw, target, rsp, rflags, frame[6];
	unsigned int type, cs_dpl, new_cpl, ist, n = 0;
	uint16_t sel;
	gva_t cs_where = 0, top;

	if (cpu->shutdown)
		triple_fault(cpu);
	cpu->delivering = (int)vector;
	/* A pending INS element dies with the instruction it belonged to. */
	cpu->io.ready = false;
	/* SDM vol. 3, 6.15 (interrupt 14): CR2 is loaded before the
	 * handler runs, even when delivery then faults. */
	if (vector == X86_PF && ev->kind == X86_EV_FAULT)
		cpu->cr2 = cpu->ev_cr2;

	if (vector * 16 + 15 > cpu->idt.limit)
		x86_raise(cpu, X86_GP, idt_err);
	lo = x86_read_sys(cpu, cpu->idt.base + vector * 16, 8);
	hi = x86_read_sys(cpu, cpu->idt.base + vector * 16 + 8, 8);
	/* Only 64-bit interrupt (0xE) and trap (0xF) gates exist in the
	 * IDT of IA-32e mode (SDM vol. 3, 6.14.1); S must be 0. */
	type = (lo >> 40) & 0x1f;
	if (type != 0xe && type != 0xf)
		x86_raise(cpu, X86_GP, idt_err);
	/* SDM vol. 3, 6.12.1.1: INT n, INT3 and INTO need CPL <= DPL. */
	if (soft && ((lo >> 45) & 3) < cpu->cpl)
		x86_raise(cpu, X86_GP, vector * 8 + 2);
	if (!((lo >> 47) & 1))
		x86_raise(cpu, X86_NP, idt_err);
	sel = (uint16_t)(lo >> 16);
	ist = (lo >> 32) & 7;
	target = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ULL) | (hi << 32);

	cs_raw = gate_code_descriptor(cpu, sel, ext, &cs_where);
	cs_dpl = (cs_raw >> 45) & 3;
	/* A conforming handler runs at the current CPL. */
	new_cpl = ((cs_raw >> 42) & 1) ? cpu->cpl : cs_dpl;
	if (!x86_is_canonical(target))
		x86_raise(cpu, X86_GP, ext);

	/* SDM vol. 3, 6.14.4 and 6.14.5: IST wins over RSPn; the new RSP
	 * is aligned down to 16 bytes in every case (6.14.2). */
	if (ist)
		rsp = tss_stack(cpu, 0x24 + 8 * (ist - 1), ext);
	else if (new_cpl < cpu->cpl)
		rsp = tss_stack(cpu, 4 + 8 * new_cpl, ext);
	else
		rsp = cpu->gpr[X86_RSP];
	rsp &= ~0xfULL;

	rflags = x86_rflags(cpu);
	/* SDM vol. 3, 17.3.1.1: the image a fault pushes has RF set, so
	 * the faulting instruction restarts without re-triggering an
	 * instruction breakpoint. */
	if (ev->kind == X86_EV_FAULT && vector < 32)
		rflags |= X86_RFLAGS_RF;
	frame[n++] = cpu->seg[X86_SS].sel;
	frame[n++] = cpu->gpr[X86_RSP];
	frame[n++] = rflags;
	frame[n++] = cpu->seg[X86_CS].sel;
	frame[n++] = ev->return_rip;
	if (ev->has_error)
		frame[n++] = ev->error;
	top = rsp - 8 * n;
	if (!x86_is_canonical(rsp - 1) || !x86_is_canonical(top))
		x86_raise(cpu, X86_SSF, ext);
	/* The pushes go to the handler's stack: implicit supervisor
	 * accesses when it runs at CPL0, user accesses for a CPL3 handler
	 * (possible only without a privilege change). */
	for (unsigned int i = 0; i < n; i++) {
		gva_t la = rsp - 8 * (i + 1);

		if (new_cpl == 3)
			x86_write(cpu, la, 8, X86_SS, frame[i]);
		else
			x86_write_sys(cpu, la, 8, frame[i]);
	}
	/* Loading CS marks its descriptor accessed (SDM vol. 3, 3.4.5.1). */
	if (!((cs_raw >> 40) & 1))
		x86_write_sys(cpu, cs_where + 5, 1,
			      ((cs_raw >> 40) & 0xff) | 1);

	/* Commit. */
	if (new_cpl != cpu->cpl) {
		/* SDM vol. 3, 6.14.4: SS becomes a NULL selector whose RPL
		 * is the new CPL. */
		cpu->seg[X86_SS].sel = (uint16_t)new_cpl;
		cpu->seg[X86_SS].base = 0;
		cpu->seg[X86_SS].limit = 0;
		cpu->seg[X86_SS].attr = X86_SEG_UNUSABLE | (new_cpl << 5);
	}
	cpu->seg[X86_CS].sel = (uint16_t)((sel & 0xfffcu) | new_cpl);
	cpu->seg[X86_CS].base = ((cs_raw >> 16) & 0xffffff) |
				((cs_raw >> 32) & 0xff000000ULL);
	cpu->seg[X86_CS].limit =
		(uint32_t)((cs_raw & 0xffff) | ((cs_raw >> 32) & 0xf0000));
	if ((cs_raw >> 55) & 1)
		cpu->seg[X86_CS].limit = (cpu->seg[X86_CS].limit << 12) | 0xfff;
	cpu->seg[X86_CS].attr = (uint32_t)((cs_raw >> 40) & 0xf0ff) | 1;
	cpu->gpr[X86_RSP] = top;
	/* SDM vol. 3, 6.12.1.3: TF, NT, RF and VM are cleared; an
	 * interrupt gate also clears IF. */
	rflags &= ~(X86_RFLAGS_TF | X86_RFLAGS_NT | X86_RFLAGS_RF |
		    X86_RFLAGS_VM);
	if (type == 0xe)
		rflags &= ~X86_RFLAGS_IF;
	x86_set_rflags(cpu, rflags);
	cpu->rip = target;
	cpu->next_rip = target;
	cpu->int_shadow = 0;
	/* SDM vol. 2, HLT: an interrupt or NMI resumes execution; the
	 * handler returns to the instruction after the HLT. */
	cpu->halted = false;
	x86_mode_changed(cpu);

	ev->pending = false;
	cpu->delivering = -1;
	cpu->chain_len = 0;
}

/* ---- external interrupts and NMI -------------------------------------- */

void x86_set_intr(struct x86_cpu *cpu, bool asserted)
{
	if (asserted)
		cpu->irq_lines |= X86_IRQ_INTR;
	else
		cpu->irq_lines &= ~X86_IRQ_INTR;
}

void x86_inject_nmi(struct x86_cpu *cpu)
{
	/* SDM vol. 3, 6.7.1: one NMI is latched while another is handled;
	 * more are lost. */
	cpu->irq_lines |= X86_IRQ_NMI;
}

bool x86_halted(const struct x86_cpu *cpu)
{
	return cpu->halted;
}

bool x86_nmi_blocked(const struct x86_cpu *cpu)
{
	return cpu->nmi_blocked;
}

/*
 * Whether an NMI or a maskable interrupt may be taken at this boundary:
 * not in the shadow of STI or MOV SS (SDM vol. 2, STI: NMIs may be
 * inhibited there too; vol. 3, 6.8.3: MOV SS inhibits interrupts), NMI
 * not blocked by one being handled (vol. 3, 6.7.1), a maskable
 * interrupt only with RFLAGS.IF = 1 (vol. 3, 6.8.1).
 */
static bool nmi_ready(const struct x86_cpu *cpu)
{
	return (cpu->irq_lines & X86_IRQ_NMI) && !cpu->nmi_blocked &&
	       cpu->int_shadow != X86_SHADOW_ACTIVE;
}

static bool intr_ready(const struct x86_cpu *cpu)
{
	/* IF is never one of the lazy bits: cpu->rflags holds it. */
	return (cpu->irq_lines & X86_IRQ_INTR) &&
	       (cpu->rflags & X86_RFLAGS_IF) &&
	       cpu->int_shadow != X86_SHADOW_ACTIVE;
}

bool x86_event_ready(const struct x86_cpu *cpu)
{
	return cpu->ev.pending || nmi_ready(cpu) || intr_ready(cpu);
}

bool x86_take_event(struct x86_cpu *cpu)
{
	int vector;

	if (cpu->ev.pending)
		return false;
	/* SDM vol. 3, 6.9, table 6-2: NMI (priority 5) before maskable
	 * hardware interrupts (priority 6). */
	if (nmi_ready(cpu)) {
		cpu->irq_lines &= ~X86_IRQ_NMI;
		/* Blocked from here until the next IRET (6.7.1). */
		cpu->nmi_blocked = true;
		queue_event(cpu, X86_NMI, X86_EV_NMI, false, 0, 0);
		return true;
	}
	if (!intr_ready(cpu))
		return false;
	/* The acknowledge cycle: the line drops, and the controller
	 * raises it again from its callback if more are pending. */
	cpu->irq_lines &= ~X86_IRQ_INTR;
	vector = cpu->env->intr_ack ? cpu->env->intr_ack(cpu->opaque) : -1;
	if (vector < 0)
		return false;
	queue_event(cpu, (unsigned int)vector, X86_EV_EXTINT, false, 0, 0);
	return true;
}

bool x86_boundary(struct x86_cpu *cpu, bool deliver)
{
	/* The shadow blocks the boundary right after its instruction and
	 * no other (SDM vol. 2, STI: "after the next instruction"). */
	if (cpu->int_shadow == X86_SHADOW_SET)
		cpu->int_shadow = X86_SHADOW_ACTIVE;
	else if (cpu->int_shadow == X86_SHADOW_ACTIVE)
		cpu->int_shadow = 0;
	if (!deliver || !x86_take_event(cpu))
		return false;
	x86_deliver_event(cpu);
	return true;
}
