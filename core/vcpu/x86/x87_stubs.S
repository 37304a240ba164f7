/*
 * One host routine per x87 instruction encoding, for exec_x87.c: each
 * saves the host's own x87/SSE state, loads the guest's (an FXSAVE64
 * image), runs the one instruction, stores RFLAGS after it and the
 * guest's new state, and restores the host's:
 *
 *   uint64_t stub(uint8_t *image, void *operand, void *host_save)
 *       rdi = the guest's 512-byte image (16-aligned), with the guest's
 *       RFLAGS 16 bytes before it (CF PF ZF only: FCMOVcc reads them,
 *       FCOMI writes them); rsi = the memory operand's host buffer;
 *       rdx = 512 bytes (16-aligned) for the host state. Returns RAX
 *       (FNSTSW AX's result).
 *
 * A memory form is encoded with ModRM mod 00, rm 110: [rsi]. Nothing
 * here can trap: FXSAVE and FXRSTOR never wait, and exec_x87.c runs a
 * waiting instruction only when no unmasked exception is pending. The
 * encodings are all fixed here: no guest byte reaches the host CPU.
 *
 * Layout: for opcode D8+o, 72 slots of 32 bytes: slots 0-7 the memory
 * forms /0../7, slots 8-71 the register forms (ModRM C0-FF). Then four
 * slots with the 66 prefix, the 16-bit formats of FLDENV, FNSTENV
 * (D9 /4, /6), FRSTOR and FNSAVE (DD /4, /6).
 */
	.text
	.p2align 5
	.globl x86_x87_stubs
	.type x86_x87_stubs, @function
x86_x87_stubs:

.macro X87_STUB bytes:vararg
	.p2align 5
	fxsave64 (%rdx)
	fxrstor64 (%rdi)
	pushq -16(%rdi)
	popfq
	.byte \bytes
	pushfq
	popq -16(%rdi)
	fxsave64 (%rdi)
	fxrstor64 (%rdx)
	ret
.endm

.irp op, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf
	.set reg, 0
	.rept 8
	X87_STUB \op, (reg << 3) | 6
	.set reg, reg + 1
	.endr
	.set modrm, 0xc0
	.rept 64
	X87_STUB \op, modrm
	.set modrm, modrm + 1
	.endr
.endr
	X87_STUB 0x66, 0xd9, 0x26
	X87_STUB 0x66, 0xd9, 0x36
	X87_STUB 0x66, 0xdd, 0x26
	X87_STUB 0x66, 0xdd, 0x36
	.size x86_x87_stubs, . - x86_x87_stubs

	.section .note.GNU-stack, "", @progbits
