/*
 * Layout shared by the QEMU boot shim's assembly (qemu_shim_start.S) and
 * C (qemu_shim.c); docs/REFERENCE-RUNNERS.md describes it. Everything the
 * shim leaves behind lies in [0, 1 MiB), which a guest of ABI v1 keeps
 * clear of; the shim itself and its modules sit at SHIM_BASE, below the
 * VGA hole, so that no guest segment (at or above 1 MiB) can overlap them.
 */
#ifndef MMUD_QEMU_SHIM_H
#define MMUD_QEMU_SHIM_H

#define SHIM_BASE 0x10000 /* load address of the shim image */
#define SHIM_MODULES_END 0xa0000 /* the image and its modules end below */

/* The AP trampoline: SIPI vector 0x08 starts an AP at 0x0800:0000. */
#define SHIM_TRAMP 0x8000
#define SHIM_SIPI_VECTOR (SHIM_TRAMP >> 12)
#define SHIM_TRAMP_MAX 0x800 /* code and data; the stack slots follow */
#define SHIM_TRAMP_STACKS (SHIM_TRAMP + SHIM_TRAMP_MAX)
#define SHIM_MAX_CPUS 255 /* one 8-byte stack slot each, below 0x9000 */

/*
 * While the vCPUs are set up, the ABI's GDT at 0x500 (null, 0x08 64-bit
 * code, 0x10 data) is followed by two descriptors of the shim's own: the
 * 64-bit TSS that TR is loaded from and a 32-bit code segment for the
 * APs' way from real mode. Both are zeroed, and GDTR gets the ABI's limit
 * 0x17, before the guest starts.
 */
#define SHIM_SEL_CODE64 0x08
#define SHIM_SEL_DATA 0x10
#define SHIM_SEL_TSS 0x18
#define SHIM_SEL_CODE32 0x28
#define SHIM_GDT_SETUP_LIMIT 0x2f
#define SHIM_GDT_CODE32 0x00cf9b000000ffff
/* Available 64-bit TSS (type 9), present, DPL 0, base 0, limit 0x67. */
#define SHIM_GDT_TSS_LOW 0x0000890000000067

/* The shim's page tables map [0, 4 GiB) at 0 and again at 512 GiB. */
#define SHIM_ALIAS (1ULL << 39)

/* Diagnostics of the shim (not the guest's console): QEMU isa-debugcon. */
#define SHIM_DEBUGCON_PORT 0x402
#define SHIM_EXIT_PORT 0xf4

/* The parameter module qemu-run writes (little endian). */
#define SHIM_PARAMS_MAGIC 0x554d455144554d4dULL /* "MMUDQEMU" */
#define SHIM_PARAMS_VERSION 1

#endif
