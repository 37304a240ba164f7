/*
 * Saving and restoring the fifteen general registers around a C call
 * from an exception or interrupt entry (start.S, irq_entry.S), in the
 * order struct rt_regs and struct rt_irq_frame expect them: RAX pushed
 * first, so R15 is at the lowest address.
 */
#ifndef RT_GPRS_H
#define RT_GPRS_H

	.macro push_gprs
	push	%rax
	push	%rbx
	push	%rcx
	push	%rdx
	push	%rsi
	push	%rdi
	push	%rbp
	push	%r8
	push	%r9
	push	%r10
	push	%r11
	push	%r12
	push	%r13
	push	%r14
	push	%r15
	.endm

	.macro pop_gprs
	pop	%r15
	pop	%r14
	pop	%r13
	pop	%r12
	pop	%r11
	pop	%r10
	pop	%r9
	pop	%r8
	pop	%rbp
	pop	%rdi
	pop	%rsi
	pop	%rdx
	pop	%rcx
	pop	%rbx
	pop	%rax
	.endm

#endif
