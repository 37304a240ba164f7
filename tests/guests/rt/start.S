/*
 * Entry, trap entry points and the CPL0/CPL3 switches of the guest runtime.
 * Everything here is the part of the runtime C cannot express: the stack
 * switch at e_entry, the exception frames, and the resume point a caught
 * fault returns to.
 */
#define RT_ASM
#include "gprs.inc"
#include "rt_layout.h"

	.section .text.start, "ax"
	.globl _start
/* e_entry: RDI = boot info, RSI = vCPU index, RSP = 0 (no stack yet). */
_start:
	/* Capture the arithmetic flags before the bounds check changes
	 * them: LAHF and SETO touch no flag. */
	lahf
	seto	%al
	mov	%rax, %r8
	cmp	$RT_MAX_CPUS, %rsi
	jae	2f
	mov	%rsp, %rdx			/* entry RSP, for the boot check */
	cmp	$RT_STATIC_CPUS, %rsi
	jae	3f
	mov	%rsi, %rax
	imul	$RT_CPU_SIZE, %rax
	lea	rt_cpus(%rip), %rsp
	add	%rax, %rsp
1:	add	$(RT_CPU_KSTACK + RT_STACK_SIZE), %rsp
	pushfq
	pop	%rcx
	cli
	/* RFLAGS at entry: OF, SF, ZF, AF, PF, CF from AL/AH, the rest
	 * (which CMP, TEST, IMUL and ADD leave alone; IF before the CLI)
	 * from PUSHFQ. */
	and	$~0x8d5, %rcx
	mov	%r8, %rax
	movzbl	%ah, %eax
	and	$0xd5, %eax
	or	%rax, %rcx
	movzbl	%r8b, %eax
	shl	$11, %eax
	or	%rax, %rcx
	call	rt_start
	/* A vCPU past RT_MAX_CPUS halts; vCPU 0 fails the boot for it. */
2:	hlt
	jmp	2b

	/* A vCPU past the static areas waits, without a stack, until
	 * vCPU 0 has allocated and zeroed the others (rt_cpus_hi). */
3:	mov	rt_cpus_hi(%rip), %rsp
	test	%rsp, %rsp
	jnz	4f
	pause
	jmp	3b
4:	lea	-RT_STATIC_CPUS(%rsi), %rax
	imul	$RT_CPU_SIZE, %rax
	add	%rax, %rsp
	jmp	1b

	.text
/*
 * int rt_try(void (*fn)(uint64_t), uint64_t arg)
 * Saves the callee-saved registers and RFLAGS, arms the recovery point
 * with that stack pointer, and calls fn(arg). A caught fault resumes at
 * rt_resume with the frame's RSP set back to the armed one.
 */
	.globl rt_try
rt_try:
	push	%rbx
	push	%rbp
	push	%r12
	push	%r13
	push	%r14
	push	%r15
	pushfq
	mov	%rdi, %r12
	mov	%rsi, %r13
	mov	%rsp, %rdi
	call	rt_arm
	mov	%r13, %rdi
	call	*%r12
	call	rt_disarm
	xor	%eax, %eax
	.globl rt_resume
rt_resume:
	popfq
	pop	%r15
	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbp
	pop	%rbx
	ret

/*
 * int rt_enter_user(uint64_t rip, uint64_t rsp, uint64_t fn, uint64_t arg,
 *                   uint64_t rflags)
 * Arms the recovery point and IRETQs to CPL3 at rip (the alias of
 * rt_user_tramp) with RDI = arg, RSI = fn. The trampoline's UD2 or a
 * fault brings the vCPU back through rt_resume.
 */
	.globl rt_enter_user
rt_enter_user:
	push	%rbx
	push	%rbp
	push	%r12
	push	%r13
	push	%r14
	push	%r15
	pushfq
	mov	%rdi, %r12
	mov	%rsi, %r13
	mov	%rdx, %r14
	mov	%rcx, %r15
	mov	%r8, %rbx
	mov	%rsp, %rdi
	call	rt_arm
	pushq	$RT_UDATA
	pushq	%r13
	pushq	%rbx
	pushq	$RT_UCODE
	pushq	%r12
	mov	%r15, %rdi
	mov	%r14, %rsi
	xor	%eax, %eax
	xor	%ebx, %ebx
	xor	%ebp, %ebp
	xor	%r12d, %r12d
	xor	%r13d, %r13d
	xor	%r14d, %r14d
	xor	%r15d, %r15d
	iretq

	.section .usertext, "ax"
	.globl rt_user_tramp, rt_user_return
rt_user_tramp:
	call	*%rsi
rt_user_return:
	ud2

	.text
/* Exception entry points: a uniform frame of GPRs, vector and error code. */
.macro VECTOR vec, has_error
	.p2align 4
vector\vec:
	.if \has_error == 0
	pushq	$0
	.endif
	pushq	$\vec
	jmp	trap_common
.endm

VECTOR 0, 0
VECTOR 1, 0
VECTOR 2, 0
VECTOR 3, 0
VECTOR 4, 0
VECTOR 5, 0
VECTOR 6, 0
VECTOR 7, 0
VECTOR 8, 1
VECTOR 9, 0
VECTOR 10, 1
VECTOR 11, 1
VECTOR 12, 1
VECTOR 13, 1
VECTOR 14, 1
VECTOR 15, 0
VECTOR 16, 0
VECTOR 17, 1
VECTOR 18, 0
VECTOR 19, 0
VECTOR 20, 0
VECTOR 21, 1
VECTOR 22, 0
VECTOR 23, 0
VECTOR 24, 0
VECTOR 25, 0
VECTOR 26, 0
VECTOR 27, 0
VECTOR 28, 0
VECTOR 29, 1
VECTOR 30, 1
VECTOR 31, 0

trap_common:
	push_gprs
	mov	%rsp, %rdi
	mov	%rsp, %rbx
	and	$-16, %rsp
	call	rt_trap
	mov	%rbx, %rsp
	pop_gprs
	add	$16, %rsp
	iretq

	.section .rodata
	.globl rt_vector_table
	.p2align 3
rt_vector_table:
	.irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad vector\n
	.endr
	.section .note.GNU-stack, "", @progbits
