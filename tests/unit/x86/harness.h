/*
 * Test harness for the software CPU: a CPU with 64 MiB of host memory as
 * guest memory at guest address 0, and shadow tables built by the harness
 * that identity-map it (gva == gpa, 4 KiB sptes, P|W|U, executable), so a
 * test runs instruction bytes with no MMU. Pages can be unmapped or have
 * their rights changed to provoke shadow faults, and port I/O exits are
 * answered from a small table.
 */
#ifndef X86_HARNESS_H
#define X86_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "x86.h"

#define XH_MEM_SIZE (64ULL << 20)
#define XH_CODE 0x100000ULL /* where xh_run_code() places code */
#define XH_STACK_TOP 0x200000ULL /* RSP of xh_new()'s CPU */

struct xh {
	struct x86_cpu *cpu;
	uint8_t *mem; /* guest address 0 */
	uint64_t *sptes; /* leaf sptes, one per 4 KiB page of mem */
	/* Port I/O seen (OUTs) and the value INs return. */
	uint32_t in_value;
	unsigned int nr_outs;
	struct {
		uint16_t port;
		uint8_t size;
		uint32_t value;
	} outs[64];
};

/* A CPU in the boot state of docs/GUEST-ABI.md (64-bit, CPL0, paging),
 * RSP = XH_STACK_TOP. Aborts the test on allocation failure. */
struct xh *xh_new(void);
void xh_free(struct xh *h);

/* Host pointer of guest address gpa (must be inside mem). */
void *xh_ptr(struct xh *h, gpa_t gpa);
/* Copies bytes into guest memory at gpa. */
void xh_load(struct xh *h, gpa_t gpa, const void *bytes, size_t len);

/* Sets the leaf spte of the page of gva: flags is a combination of
 * X86_PTE_P/W/U/NX (0 unmaps it). Flushes the CPU's TLB entry. */
void xh_set_page(struct xh *h, gva_t gva, uint64_t flags);

/* Places code at XH_CODE followed by HLT and points RIP there (len 0:
 * only the HLT). */
void xh_place_code(struct xh *h, const void *code, size_t len);

/*
 * Runs until an exit other than X86_EXIT_IO or X86_EXIT_PAUSE (IO exits
 * are recorded in outs / answered with in_value and resumed, pause-loop
 * exits resumed) or until max_insns
 * instructions retired. Returns the reason of the last exit.
 */
enum x86_exit_reason xh_run(struct xh *h, uint64_t max_insns,
			    struct x86_exit *exit);

/*
 * Places code at XH_CODE followed by HLT, sets RIP there and runs it
 * (at most 10^6 instructions): returns 0 when the code reached the HLT,
 * -1 on any other exit (printed to stderr). Registers are whatever the
 * test set before.
 */
int xh_run_code(struct xh *h, const void *code, size_t len);

/* Register access for tests. */
uint64_t xh_reg(struct xh *h, unsigned int reg);
void xh_set_reg(struct xh *h, unsigned int reg, uint64_t v);
uint64_t xh_rflags(struct xh *h);
uint64_t xh_rip(struct xh *h);

/* Places code at XH_CODE followed by HLT, runs it from there (at most
 * 10^5 instructions) and returns the exit reason. */
enum x86_exit_reason xh_run_at(struct xh *h, const void *code, size_t len,
			       struct x86_exit *exit);
/* xh_run_code() must reach its HLT (a cmocka failure otherwise). */
void xh_run_ok(struct xh *h, const void *code, size_t len);
/*
 * Runs code whose first instruction must fault with vector: with no IDT
 * (the boot state) the fault ends in a triple fault whose chain starts
 * with it, and the CPU stays at the instruction, registers unchanged.
 */
void xh_expect_fault(struct xh *h, const void *code, size_t len,
		     unsigned int vector);

/*
 * Runs code on the host (hostexec.h) and in the CPU from the same
 * registers (RSP aside: the CPU's is its stack) and flags, and fails
 * unless every other register and the flags in fmask agree.
 */
void xh_diff_host(struct xh *h, const char *name, const uint8_t *code,
		  size_t len, const uint64_t gpr[16], uint64_t flags,
		  uint64_t fmask);

#endif
