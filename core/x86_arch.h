/*
 * Architectural constants of x86-64 that more than one module needs:
 * control-register, EFER and RFLAGS bits, paging-entry bits, #PF error
 * code bits and exception vectors (Intel SDM vol. 3). Only facts of the
 * architecture live here; what mmud builds on them lives in its module.
 */
#ifndef MMUD_X86_ARCH_H
#define MMUD_X86_ARCH_H

#define X86_CR0_PE (1ULL << 0)
#define X86_CR0_MP (1ULL << 1)
#define X86_CR0_EM (1ULL << 2)
#define X86_CR0_TS (1ULL << 3)
#define X86_CR0_ET (1ULL << 4)
#define X86_CR0_NE (1ULL << 5)
#define X86_CR0_WP (1ULL << 16)
#define X86_CR0_AM (1ULL << 18)
#define X86_CR0_NW (1ULL << 29)
#define X86_CR0_CD (1ULL << 30)
#define X86_CR0_PG (1ULL << 31)

#define X86_CR4_VME (1ULL << 0)
#define X86_CR4_PVI (1ULL << 1)
#define X86_CR4_TSD (1ULL << 2)
#define X86_CR4_DE (1ULL << 3)
#define X86_CR4_PSE (1ULL << 4)
#define X86_CR4_PAE (1ULL << 5)
#define X86_CR4_MCE (1ULL << 6)
#define X86_CR4_PGE (1ULL << 7)
#define X86_CR4_PCE (1ULL << 8)
#define X86_CR4_OSFXSR (1ULL << 9)
#define X86_CR4_OSXMMEXCPT (1ULL << 10)
#define X86_CR4_UMIP (1ULL << 11)
#define X86_CR4_FSGSBASE (1ULL << 16)
#define X86_CR4_PCIDE (1ULL << 17)
#define X86_CR4_SMEP (1ULL << 20)
#define X86_CR4_SMAP (1ULL << 21)

/* DR6 and DR7 (SDM vol. 3, 18.2.3 and 18.2.4): the bits that always read
 * 1, and those a MOV DRn can change (DR6: B0-B3, BD, BS, BT; DR7: all
 * but the reserved bits 11, 12, 14 and 15). Bits 63:32 of either must
 * be written as 0. */
#define X86_DR6_FIXED1 0xffff0ff0ULL
#define X86_DR6_WRITABLE 0x0000e00fULL
#define X86_DR6_BD (1ULL << 13)
#define X86_DR7_FIXED1 0x00000400ULL
#define X86_DR7_WRITABLE 0xffff23ffULL
#define X86_DR7_GD (1ULL << 13)

#define X86_EFER_SCE (1ULL << 0)
#define X86_EFER_LME (1ULL << 8)
#define X86_EFER_LMA (1ULL << 10)
#define X86_EFER_NXE (1ULL << 11)

#define X86_RFLAGS_CF (1ULL << 0)
#define X86_RFLAGS_FIXED (1ULL << 1)
#define X86_RFLAGS_PF (1ULL << 2)
#define X86_RFLAGS_AF (1ULL << 4)
#define X86_RFLAGS_ZF (1ULL << 6)
#define X86_RFLAGS_SF (1ULL << 7)
#define X86_RFLAGS_TF (1ULL << 8)
#define X86_RFLAGS_IF (1ULL << 9)
#define X86_RFLAGS_DF (1ULL << 10)
#define X86_RFLAGS_OF (1ULL << 11)
#define X86_RFLAGS_IOPL (3ULL << 12)
#define X86_RFLAGS_NT (1ULL << 14)
#define X86_RFLAGS_RF (1ULL << 16)
#define X86_RFLAGS_VM (1ULL << 17)
#define X86_RFLAGS_AC (1ULL << 18)
#define X86_RFLAGS_VIF (1ULL << 19)
#define X86_RFLAGS_VIP (1ULL << 20)
#define X86_RFLAGS_ID (1ULL << 21)
/* The arithmetic flags an ALU operation defines. */
#define X86_RFLAGS_ARITH                                                 \
	(X86_RFLAGS_CF | X86_RFLAGS_PF | X86_RFLAGS_AF | X86_RFLAGS_ZF | \
	 X86_RFLAGS_SF | X86_RFLAGS_OF)

/* Paging-structure entry bits (SDM vol. 3, 4.5). */
#define X86_PTE_P (1ULL << 0)
#define X86_PTE_W (1ULL << 1)
#define X86_PTE_U (1ULL << 2)
#define X86_PTE_PWT (1ULL << 3)
#define X86_PTE_PCD (1ULL << 4)
#define X86_PTE_A (1ULL << 5)
#define X86_PTE_D (1ULL << 6)
#define X86_PTE_PS (1ULL << 7)
#define X86_PTE_G (1ULL << 8)
#define X86_PTE_NX (1ULL << 63)

/* #PF error code bits (SDM vol. 3, 4.7). */
#define PFERR_PRESENT (1u << 0)
#define PFERR_WRITE (1u << 1)
#define PFERR_USER (1u << 2)
#define PFERR_RSVD (1u << 3)
#define PFERR_FETCH (1u << 4)

/* Exception vectors (SDM vol. 3, 6.3.1). */
enum x86_vector {
	X86_DE = 0,
	X86_DB = 1,
	X86_NMI = 2,
	X86_BP = 3,
	X86_OF = 4,
	X86_BR = 5,
	X86_UD = 6,
	X86_NM = 7,
	X86_DF = 8,
	X86_TS = 10,
	X86_NP = 11,
	X86_SSF = 12, /* #SS, stack-segment fault (X86_SS is the register) */
	X86_GP = 13,
	X86_PF = 14,
	X86_MF = 16,
	X86_AC = 17,
	X86_MC = 18,
	X86_XM = 19,
};

/* MSRs mmud implements (SDM vol. 4). */
#define MSR_IA32_TSC 0x10
#define MSR_IA32_APIC_BASE 0x1b
#define MSR_IA32_MTRRCAP 0xfe
#define MSR_IA32_MCG_CAP 0x179
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_IA32_PAT 0x277
#define MSR_IA32_MTRR_DEF_TYPE 0x2ff
#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC_AUX 0xc0000103

#endif
