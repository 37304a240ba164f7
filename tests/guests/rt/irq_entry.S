/*
 * Interrupt entry points of the guest runtime (irq.c): one stub per
 * vector pushes the vector and joins irq_common, which saves the
 * general registers, calls rt_irq_dispatch() with the CPU's frame
 * (vector, RIP, CS, RFLAGS, RSP, SS: struct rt_irq_frame) and returns
 * with IRETQ. No vector of 32-255 and not the NMI has an error code
 * (SDM vol. 3, 6.13).
 */
#include "gprs.inc"

	.text
	.p2align 4
	.globl rt_irq_stubs
rt_irq_stubs:
	.set vec, 0
	.rept 256
	.p2align 4
	pushq	$vec
	jmp	irq_common
	.set vec, vec + 1
	.endr

irq_common:
	push_gprs
	lea	15*8(%rsp), %rdi
	mov	%rsp, %rbx
	and	$-16, %rsp
	cld
	call	rt_irq_dispatch
	mov	%rbx, %rsp
	pop_gprs
	add	$8, %rsp
	iretq

/* void rt_sti_hlt_at(void): cli, then sti; hlt with the address after
 * the HLT known (rt_after_hlt), for guests that check where an
 * interrupt that woke the HLT returns. */
	.globl rt_sti_hlt_at, rt_after_hlt
rt_sti_hlt_at:
	cli
	sti
	hlt
rt_after_hlt:
	ret
	.section .note.GNU-stack, "", @progbits
