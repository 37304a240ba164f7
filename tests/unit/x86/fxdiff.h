/*
 * The differential runner of the x87 and SSE tests: one case runs the
 * same bytes on the host (hostexec.h, FXRSTOR64/FXSAVE64 around them) and
 * in our CPU from the same general registers, flags, FXSAVE image and
 * memory buffer (RBX at its middle on both sides); then every general
 * register, the arithmetic flags, the image and the buffer must agree,
 * or both must fault alike (and after an #XM, with the same MXCSR flags).
 *
 * The image fields that differ by vendor are not compared (SDM vol. 1,
 * 10.5.1): MXCSR_MASK (bytes 28-31: 0xFFFF here, 0x2FFFF on AMD hosts,
 * whose bit 17 is a mode this CPU does not have) and FOP/FIP/FDP with
 * their selectors (bytes 6-23: AMD hosts store them only while an x87
 * exception is pending; test_x87.c checks ours on our CPU alone).
 */
#ifndef X86_FXDIFF_H
#define X86_FXDIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

#define FXD_GBUF 0x300000ULL
#define FXD_BUF 2048
#define FXD_MID 1024
#define FX_FCW 0
#define FX_FSW 2
#define FX_FTW 4
#define FX_MXCSR 24
#define FX_ST 32
#define FX_XMM 160

struct fxd_state {
	uint64_t gpr[16];
	uint64_t rflags;
	uint8_t fx[512] __attribute__((aligned(16)));
	uint8_t buf[FXD_BUF];
};

/* Buffer offsets whose bytes are not compared (NULL: all are). */
typedef bool (*fxd_skip_fn)(size_t off);

/* The CPU under test: CR4.OSFXSR and OSXMMEXCPT set. A case that
 * faults replaces it (the fault ends in a triple fault). */
extern struct xh *fxd_h;
struct xh *fxd_fresh(void);

/* cmocka group setup and teardown: fxd_h made and freed. */
int fxd_setup(void **state);
int fxd_teardown(void **state);

/* Cases run, cases that disagreed, cases where both CPUs faulted alike. */
extern unsigned int fxd_failures, fxd_ncases, fxd_nfaults;

uint64_t fxd_rnd(void);
/* Integer lanes: random or boundaries (0, -1, signed limits...). */
uint32_t fxd_lane32(void);
/* Single and double precision: the specials (signed zeros, infinities,
 * quiet and signalling NaNs with payloads, denormals, normal and
 * integer-conversion limits) or random. */
uint32_t fxd_fp32(void);
uint64_t fxd_fp64(void);

/* Whether byte i of the image is compared (see above). */
bool fxd_fx_compared(unsigned int i);

void fxd_run_case_skip(const char *name, const uint8_t *code, size_t len,
		       const struct fxd_state *in, fxd_skip_fn ignore);
void fxd_run_case(const char *name, const uint8_t *code, size_t len,
		  const struct fxd_state *in);

/* On a fresh CPU with CR0 bits set and CR4 bits cleared (RBX at the
 * buffer), code's first instruction must fault with vector. */
void fxd_expect_fault_with(uint64_t cr0_set, uint64_t cr4_clear,
			   const uint8_t *code, size_t len,
			   unsigned int vector);

#endif
