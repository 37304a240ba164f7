/*
 * Interrupt entry points of the guest runtime (irq.c): one stub per
 * vector pushes the vector and joins irq_common, which saves the
 * general registers, calls rt_irq_dispatch() with the CPU's frame
 * (vector, RIP, CS, RFLAGS, RSP, SS: struct rt_irq_frame) and returns
 * with IRETQ. No vector of 32-255 and not the NMI has an error code
 * (SDM vol. 3, 6.13).
 */
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
	lea	15*8(%rsp), %rdi
	mov	%rsp, %rbx
	and	$-16, %rsp
	cld
	call	rt_irq_dispatch
	mov	%rbx, %rsp
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
