/*
 * The QEMU boot shim's assembly: the Multiboot header, the 32-bit entry
 * that takes the boot processor into long mode on the shim's own page
 * tables so its C half (qemu_shim.c) can run as 64-bit code, and the
 * trampoline every vCPU leaves from. The trampoline is copied to
 * SHIM_TRAMP below 1 MiB: an AP starts there in real mode (SIPI vector),
 * goes to protected mode and long mode on the ABI's own page tables; the
 * boot processor joins it in long mode. From tramp_common on all vCPUs
 * run the same code: load TR, LDTR, IDTR and the ABI's GDTR and segments,
 * the x87/SSE state, wait for the release, and enter the guest with the
 * register state of guest ABI v1 (docs/REFERENCE-RUNNERS.md lists what
 * differs and why). It does not load the kernel or write low memory.
 */
#include "qemu_shim.h"

/* The ABI's values (core/loader.h has the same). */
#define ABI_CR0 0x80010033 /* PE|MP|ET|NE|WP|PG */
#define ABI_CR4 0x20 /* PAE */
#define ABI_EFER_SET 0x900 /* LME|NXE; the CPU sets LMA */
#define ABI_CR3 0x1000
#define ABI_BOOTINFO 0x7000
#define ABI_GDT 0x500
#define ABI_RFLAGS 0x2
#define CR4_OSFXSR 0x200

#define MSR_EFER 0xc0000080
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define MSR_TSC_AUX 0xc0000103
#define MSR_SYSENTER_CS 0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176
#define MSR_PAT 0x277
#define PAT_RESET 0x00070406 /* both halves: SDM vol. 3, 11.12.4 */

/* Where a trampoline label is once the trampoline is copied. */
#define T(x) (SHIM_TRAMP + ((x) - tramp_start))

#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00010000 /* the address fields below are valid */

	.section .mbheader, "a"
	.p2align 2
mb_header:
	.long	MB_MAGIC
	.long	MB_FLAGS
	.long	-(MB_MAGIC + MB_FLAGS)
	.long	mb_header		/* header_addr */
	.long	__shim_start		/* load_addr */
	.long	__shim_load_end		/* load_end_addr */
	.long	__shim_bss_end		/* bss_end_addr */
	.long	shim_start32		/* entry_addr */

	.text
	.code32
/*
 * Multiboot entry (spec 3.2): protected mode, paging off, EAX = magic,
 * EBX = the Multiboot information. Identity-map [0, 4 GiB) with 2 MiB
 * pages in the shim's BSS and enter 64-bit mode (SDM vol. 3, 9.8.5).
 */
	.globl shim_start32
shim_start32:
	cli
	cld
	mov	$shim_stack_top, %esp
	mov	%eax, %edi
	mov	%ebx, %esi

	/* PML4 entries 0 and 1 share the PDPT: the shim's C half reaches
	 * guest physical address 0 through the alias at 512 GiB, as a
	 * pointer that is not NULL (SHIM_ALIAS in qemu_shim.h). */
	mov	$shim_pdpt + 3, %eax
	mov	%eax, shim_pml4
	movl	$0, shim_pml4 + 4
	mov	%eax, shim_pml4 + 8
	movl	$0, shim_pml4 + 12
	xor	%ecx, %ecx
1:	mov	%ecx, %eax
	shl	$12, %eax
	add	$shim_pd + 3, %eax
	mov	%eax, shim_pdpt(, %ecx, 8)
	movl	$0, shim_pdpt + 4(, %ecx, 8)
	inc	%ecx
	cmp	$4, %ecx
	jb	1b
	xor	%ecx, %ecx
2:	mov	%ecx, %eax
	shl	$21, %eax
	or	$0x83, %eax		/* P, W, PS */
	mov	%eax, shim_pd(, %ecx, 8)
	movl	$0, shim_pd + 4(, %ecx, 8)
	inc	%ecx
	cmp	$2048, %ecx
	jb	2b

	lgdt	shim_gdtr
	mov	$ABI_CR4, %eax
	mov	%eax, %cr4
	mov	$shim_pml4, %eax
	mov	%eax, %cr3
	mov	$MSR_EFER, %ecx
	rdmsr
	or	$ABI_EFER_SET, %eax
	wrmsr
	mov	$ABI_CR0, %eax
	mov	%eax, %cr0
	ljmp	$SHIM_SEL_CODE64, $shim_start64

	.code64
shim_start64:
	mov	$SHIM_SEL_DATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	$shim_stack_top, %rsp
	mov	%edi, %edi		/* magic, zero-extended */
	mov	%esi, %esi		/* Multiboot information */
	call	shim_main
3:	cli
	hlt
	jmp	3b

/* ---- the trampoline, copied to SHIM_TRAMP ---------------------------- */

	.p2align 12
	.globl tramp_start, tramp_end, tramp_bsp_entry
	.globl tramp_next_index, tramp_arrived, tramp_go, tramp_entry
	.code16
/* An AP after INIT-SIPI-SIPI: real mode, CS = 0x0800, IP = 0. */
tramp_start:
	cli
	cld
	xor	%ax, %ax
	mov	%ax, %ds
	lgdtl	T(tramp_gdtr_setup)
	mov	%cr0, %eax
	or	$1, %eax
	mov	%eax, %cr0
	ljmpl	$SHIM_SEL_CODE32, $T(tramp_pm32)

	.code32
/* Long mode on the ABI's page tables (SDM vol. 3, 9.8.5). */
tramp_pm32:
	mov	$SHIM_SEL_DATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	$ABI_CR4, %eax
	mov	%eax, %cr4
	mov	$ABI_CR3, %eax
	mov	%eax, %cr3
	mov	$MSR_EFER, %ecx
	mov	$ABI_EFER_SET, %eax
	xor	%edx, %edx
	wrmsr
	mov	$ABI_CR0, %eax
	mov	%eax, %cr0
	ljmp	$SHIM_SEL_CODE64, $T(tramp_lm64)

	.code64
tramp_lm64:
	mov	tramp_next_index(%rip), %r15d
	jmp	tramp_common

/*
 * The boot processor, from shim_main in long mode on the shim's page
 * tables and GDT: switch to the ABI's, with the same CR0, CR4 and EFER
 * the APs have. Both page tables map the trampoline one to one.
 */
tramp_bsp_entry:
	lgdt	tramp_gdtr_setup(%rip)
	pushq	$SHIM_SEL_CODE64
	lea	1f(%rip), %rax
	pushq	%rax
	lretq
1:	mov	$SHIM_SEL_DATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	$ABI_CR4, %eax
	mov	%rax, %cr4
	mov	$ABI_CR3, %eax
	mov	%rax, %cr3
	mov	$MSR_EFER, %ecx
	mov	$ABI_EFER_SET, %eax
	xor	%edx, %edx
	wrmsr
	mov	$ABI_CR0, %eax
	mov	%rax, %cr0
	mov	tramp_next_index(%rip), %r15d

/*
 * Every vCPU, R15 = its index. vCPUs get here one at a time (the boot
 * processor starts each AP after the previous one arrived, and comes
 * last), so they can share the one TSS descriptor: LTR marks it busy
 * (SDM vol. 3, 7.2.4), which is the TR state the ABI asks for, and the
 * next vCPU writes it back as available first.
 */
tramp_common:
	movabs	$SHIM_GDT_TSS_LOW, %rax
	mov	%rax, ABI_GDT + SHIM_SEL_TSS
	movq	$0, ABI_GDT + SHIM_SEL_TSS + 8
	mov	$SHIM_SEL_TSS, %eax
	ltr	%ax
	xor	%eax, %eax
	lldt	%ax			/* null: LDTR unusable */
	lidt	tramp_idtr(%rip)
	lgdt	tramp_gdtr_abi(%rip)
	mov	$SHIM_SEL_DATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	xor	%eax, %eax
	mov	%eax, %fs
	mov	%eax, %gs
	/* A null selector may leave the base as it was: clear the MSRs,
	 * and the others docs/GUEST-ABI.md, "Entry state" lists. */
	xor	%eax, %eax
	xor	%edx, %edx
	lea	tramp_zero_msrs(%rip), %rsi
5:	mov	(%rsi), %ecx
	test	%ecx, %ecx
	jz	6f
	wrmsr
	add	$4, %rsi
	jmp	5b
6:	mov	$MSR_PAT, %ecx
	mov	$PAT_RESET, %eax
	mov	%eax, %edx
	wrmsr
	/*
	 * x87 and SSE as KVM initialises them: FCW 0x37F, MXCSR 0x1F80,
	 * all tags empty, every register 0 (SDM vol. 1, 10.5.1 FXSAVE
	 * layout). FXRSTOR needs CR4.OSFXSR for the SSE half.
	 */
	mov	$(ABI_CR4 | CR4_OSFXSR), %eax
	mov	%rax, %cr4
	fxrstor64 tramp_fxstate(%rip)
	mov	$ABI_CR4, %eax
	mov	%rax, %cr4
	xor	%eax, %eax
	mov	%rax, %cr2
	mov	%rax, %cr8

	test	%r15d, %r15d
	jz	3f
	lock incl tramp_arrived(%rip)
2:	pause
	cmpl	$0, tramp_go(%rip)
	je	2b
	jmp	4f
	/* The boot processor: every AP has loaded TR; drop the setup
	 * descriptors, then release everyone at once. */
3:	xor	%eax, %eax
	mov	%rax, ABI_GDT + SHIM_SEL_TSS
	mov	%rax, ABI_GDT + SHIM_SEL_TSS + 8
	mov	%rax, ABI_GDT + SHIM_SEL_CODE32
	movl	$1, tramp_go(%rip)

	/* From here on only MOV, which leaves RFLAGS alone. */
4:	lea	(SHIM_TRAMP_STACKS + 8)(, %r15, 8), %rsp
	pushq	$ABI_RFLAGS
	popfq
	mov	%r15, %rsi
	mov	$ABI_BOOTINFO, %edi
	mov	$0, %eax
	mov	$0, %ebx
	mov	$0, %ecx
	mov	$0, %edx
	mov	$0, %ebp
	mov	$0, %r8d
	mov	$0, %r9d
	mov	$0, %r10d
	mov	$0, %r11d
	mov	$0, %r12d
	mov	$0, %r13d
	mov	$0, %r14d
	mov	$0, %r15d
	mov	$0, %esp
	jmp	*tramp_entry(%rip)

	.p2align 2
tramp_zero_msrs:
	.long	MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE, MSR_STAR
	.long	MSR_LSTAR, MSR_CSTAR, MSR_SFMASK, MSR_TSC_AUX
	.long	MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP, 0
	.p2align 3
tramp_entry:
	.quad	0			/* e_entry, set by shim_main */
tramp_next_index:
	.long	0			/* the index of the vCPU being started */
tramp_arrived:
	.long	0			/* APs that wait for tramp_go */
tramp_go:
	.long	0
/* GDTR/IDTR images; 16- and 32-bit LGDT read the first six bytes. */
	.p2align 3
	.word	0, 0, 0
tramp_gdtr_setup:
	.word	SHIM_GDT_SETUP_LIMIT
	.quad	ABI_GDT
	.word	0, 0, 0
tramp_gdtr_abi:
	.word	0x17
	.quad	ABI_GDT
	.word	0, 0, 0
tramp_idtr:
	.word	0
	.quad	0
	.p2align 4
tramp_fxstate:
	.word	0x037f			/* FCW */
	.word	0			/* FSW */
	.byte	0			/* abridged FTW: all empty */
	.fill	19, 1, 0
	.long	0x1f80			/* MXCSR */
	.long	0			/* MXCSR_MASK (ignored) */
	.fill	512 - 32, 1, 0
tramp_end:

	.data
	.p2align 3
shim_gdt:
	.quad	0
	.quad	0x00af9b000000ffff	/* 0x08: 64-bit code */
	.quad	0x00cf93000000ffff	/* 0x10: data */
	.word	0
shim_gdtr:
	.word	0x17
	.long	shim_gdt

	.bss
	.p2align 12
shim_pml4:
	.skip	4096
shim_pdpt:
	.skip	4096
shim_pd:
	.skip	4 * 4096
	.skip	16384
shim_stack_top:

	.section .note.GNU-stack, "", @progbits
