/*
 * The embedded sample guest: the hello guest of tests/guests, linked into
 * mmud so that `mmud` with no --kernel boots something (SAMPLE_ELF is its
 * path in the build tree).
 */
	.section .rodata
	.globl	mmud_sample_elf, mmud_sample_elf_end
	.balign	16
mmud_sample_elf:
	.incbin	SAMPLE_ELF
mmud_sample_elf_end:
	.section .note.GNU-stack, "", @progbits
