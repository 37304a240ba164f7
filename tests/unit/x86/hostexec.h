/*
 * Runs instruction bytes on the host CPU, for differential tests of the
 * software CPU: the bytes run between a prologue that loads every
 * general register but RSP and the arithmetic flags and DF from a
 * struct hx_regs, and an epilogue that stores them back. RSP stays the
 * host's stack, so the bytes must not use it.
 */
#ifndef X86_HOSTEXEC_H
#define X86_HOSTEXEC_H

#include <stddef.h>
#include <stdint.h>

struct hx_regs {
	uint64_t gpr[16]; /* enum x86_reg order; gpr[4] (RSP) is ignored */
	uint64_t rflags; /* in: only CF PF AF ZF SF OF DF are loaded */
};

enum hx_result {
	HX_OK, /* the bytes ran to their end */
	HX_FAULT_DE, /* SIGFPE: a divide error */
	HX_FAULT_UD, /* SIGILL: an invalid opcode */
	HX_FAULT_OTHER, /* SIGSEGV or SIGBUS */
};

/* At most HX_MAX_CODE bytes; regs is read, then overwritten on HX_OK. */
#define HX_MAX_CODE 256
enum hx_result hx_run(const void *code, size_t len, struct hx_regs *regs);

/*
 * The same with the x87/SSE state: fx is loaded with FXRSTOR64 before
 * the bytes run and written back with FXSAVE64 after them (bytes 0-415;
 * SDM vol. 1, 10.5.1). The host's own state is saved and restored
 * around the run.
 */
struct hx_fx_regs {
	struct hx_regs r;
	uint8_t fx[512] __attribute__((aligned(16)));
};
enum hx_result hx_run_fx(const void *code, size_t len, struct hx_fx_regs *regs);
/* After a run that faulted: MXCSR as the faulting instruction left it
 * (a SIMD floating-point exception sets its flags before the #XM). */
uint32_t hx_fault_mxcsr(void);

#endif
