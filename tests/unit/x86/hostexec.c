/*
 * The host side of the differential ISA tests: writes a prologue, the
 * instruction bytes under test and an epilogue into one RWX page and
 * calls it. The prologue saves the callee-saved registers and the
 * struct's address on the host stack, then loads RFLAGS and the general
 * registers from the struct; the epilogue saves RFLAGS first (PUSHFQ,
 * then CLD so the ABI's DF = 0 holds again), stores the registers and
 * returns. A fault in the bytes (the #DE of DIV, say) arrives as a
 * signal whose handler siglongjmps out; siglongjmp restores the
 * callee-saved registers the fault left clobbered. Single-threaded.
 */
#include "hostexec.h"

#include <setjmp.h>
#include <stddef.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#define PAGE 4096

static uint8_t *page;
static sigjmp_buf fault_jmp;

static uint32_t fault_mxcsr;

static void on_fault(int sig, siginfo_t *si, void *ucv)
{
	const ucontext_t *uc = ucv;

	(void)si;
	/* The MXCSR the faulting instruction left (its flags): the kernel
	 * saved it with the rest of the FPU state in the signal frame. */
	fault_mxcsr = uc->uc_mcontext.fpregs ? uc->uc_mcontext.fpregs->mxcsr :
					       0;
	siglongjmp(fault_jmp, sig);
}

uint32_t hx_fault_mxcsr(void)
{
	return fault_mxcsr;
}

static size_t emit(uint8_t *p, size_t at, const void *bytes, size_t n)
{
	memcpy(p + at, bytes, n);
	return at + n;
}

/* mov r64, [rdi + 8 * r] or mov [rdi + 8 * r], r64 */
static size_t emit_gpr(uint8_t *p, size_t at, unsigned int r, bool store)
{
	uint8_t b[4] = { (uint8_t)(0x48 | (r >= 8 ? 4 : 0)),
			 store ? 0x89 : 0x8b,
			 (uint8_t)(0x40 | ((r & 7) << 3) | 7),
			 (uint8_t)(8 * r) };

	return emit(p, at, b, sizeof(b));
}

/* FXRSTOR64 / FXSAVE64 [rdi + offsetof(struct hx_fx_regs, fx)] */
#define FX_OFF 144
_Static_assert(offsetof(struct hx_fx_regs, fx) == FX_OFF, "FX_OFF");
static const uint8_t fxrstor_rdi[] = { 0x48, 0x0f, 0xae, 0x8f, FX_OFF, 0, 0, 0 };
static const uint8_t fxsave_rdi[] = { 0x48, 0x0f, 0xae, 0x87, FX_OFF, 0, 0, 0 };

static size_t build(const void *code, size_t len, bool fx)
{
	static const uint8_t save[] = {
		0x53, 0x55, 0x41, 0x54, 0x41, 0x55,
		0x41, 0x56, 0x41, 0x57, 0x57, /* push rbx rbp r12-r15, push rdi */
		0xff, 0xb7, 0x80, 0x00, 0x00, 0x00, /* push [rdi+128] */
		0x9d, /* popfq */
	};
	static const uint8_t load_rdi[] = { 0x48, 0x8b, 0x7f, 0x38 };
	static const uint8_t mid[] = {
		0x9c, 0xfc, 0x57, /* pushfq, cld, push rdi */
		0x48, 0x8b, 0x7c, 0x24, 0x10, /* mov rdi, [rsp+16] */
	};
	static const uint8_t tail[] = {
		0x58, 0x48, 0x89, 0x47, 0x38, /* pop rax; mov [rdi+56], rax */
		0x58, 0x48, 0x89, 0x87, 0x80, 0x00, 0x00, 0x00, /* rflags */
		0x5f, 0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41,
		0x5c, 0x5d, 0x5b, 0xc3, /* pop rdi r15-r12 rbp rbx; ret */
	};
	size_t at = emit(page, 0, save, sizeof(save));

	if (fx)
		at = emit(page, at, fxrstor_rdi, sizeof(fxrstor_rdi));
	for (unsigned int r = 0; r < 16; r++)
		if (r != 4 && r != 7)
			at = emit_gpr(page, at, r, false);
	at = emit(page, at, load_rdi, sizeof(load_rdi));
	at = emit(page, at, code, len);
	at = emit(page, at, mid, sizeof(mid));
	if (fx)
		at = emit(page, at, fxsave_rdi, sizeof(fxsave_rdi));
	for (unsigned int r = 0; r < 16; r++)
		if (r != 4 && r != 7)
			at = emit_gpr(page, at, r, true);
	return emit(page, at, tail, sizeof(tail));
}

static enum hx_result run(const void *code, size_t len, struct hx_fx_regs *regs,
			  bool fx)
{
	static const int sigs[] = { SIGFPE, SIGSEGV, SIGBUS, SIGILL };
	static uint8_t host_fx[512] __attribute__((aligned(16)));
	struct sigaction sa, old[4];
	struct hx_fx_regs r = *regs;
	enum hx_result res = HX_OK;
	volatile int sig;

	if (len > HX_MAX_CODE)
		abort();
	if (!page) {
		void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			abort();
		page = p;
	}
	build(code, len, fx);
	r.r.rflags &= 0xcd5; /* CF PF AF ZF SF DF OF */
	r.r.rflags |= 2;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER | SA_SIGINFO;
	for (unsigned int i = 0; i < 4; i++)
		sigaction(sigs[i], &sa, &old[i]);
	/* MXCSR and the x87 control word are callee-saved in the ABI. */
	__asm__ volatile("fxsave64 %0" : "=m"(host_fx));
	sig = sigsetjmp(fault_jmp, 1);
	if (!sig)
		((void (*)(struct hx_fx_regs *))(void *)page)(&r);
	else
		__asm__ volatile("cld" ::: "cc");
	__asm__ volatile("fxrstor64 %0" : : "m"(host_fx));
	for (unsigned int i = 0; i < 4; i++)
		sigaction(sigs[i], &old[i], NULL);
	if (sig)
		res = sig == SIGFPE ? HX_FAULT_DE :
		      sig == SIGILL ? HX_FAULT_UD :
				      HX_FAULT_OTHER;
	else
		*regs = r;
	return res;
}

enum hx_result hx_run(const void *code, size_t len, struct hx_regs *regs)
{
	struct hx_fx_regs r = { .r = *regs };
	enum hx_result res = run(code, len, &r, false);

	*regs = r.r;
	return res;
}

enum hx_result hx_run_fx(const void *code, size_t len, struct hx_fx_regs *regs)
{
	return run(code, len, regs, true);
}
