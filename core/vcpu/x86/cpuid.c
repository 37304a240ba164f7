/*
 * What CPUID reports: exactly the features this CPU implements
 * (docs/GUEST-ABI.md, "CPUID"), so a guest that trusts CPUID never meets
 * an instruction or a control bit that is missing. The x87 FPU (exec_x87.c),
 * FXSAVE/FXRSTOR (fpu.c), SSE and SSE2 (exec_sse.c, exec_ssefp.c) are
 * reported; MMX is not, and its register forms (no prefix on the
 * 0F 60-7F and D0-FF opcodes, CVTPI2PS and the like) are #UD. No SSE3
 * or later, no XSAVE (so XCR0 does not exist: the FXSAVE image is all
 * the state there is), no AVX beyond the VEX-encoded BMI1/BMI2; no
 * MTRRs, SYSENTER or CLFLUSH. The local APIC is the VM's (core/dev/lapic.c,
 * docs/GUEST-ABI.md, "Interrupts"). PCID, INVPCID
 * and 1 GiB pages are reported: CR4.PCIDE and INVPCID are
 * exec_system.c's, 1 GiB guest pages the MMU's walker and the shadow
 * walk's. So are the integer extensions gcc uses for newer -march
 * targets (exec_bmi.c): POPCNT, MOVBE, LZCNT, BMI1, BMI2 and ADX, and
 * PREFETCHW (exec_flow.c). The instruction itself lives in
 * exec_system.c; the CR4 and EFER bits it accepts agree with these
 * leaves. Leaves 0x40000000 and 0x40000001 announce kvmclock and
 * nothing else of KVM's paravirtual interface (kvmclock.c).
 */
#include <string.h>

#include "kvmclock.h"
#include "x86_int.h"

/* Vendor signature: EBX, EDX, ECX order in leaf 0. */
static const char vendor[13] = "MmudMmudMmud";
/* The hypervisor leaf's signature is KVM's, with only kvmclock among
 * its features (kvmclock.h): guests look for this string to use it. */
static const char hv_signature[13] = "KVMKVMKVM\0\0\0";
static const char brand[48] = "mmud software x86-64 CPU";

#define MAX_BASIC_LEAF 7
#define MAX_EXT_LEAF 0x80000008u
#define HV_LEAF KVM_CPUID_SIGNATURE

/* Leaf 1 EDX (SDM vol. 2, CPUID, table 3-11). */
#define F1_EDX_FPU (1u << 0)
#define F1_EDX_PSE (1u << 3)
#define F1_EDX_TSC (1u << 4)
#define F1_EDX_MSR (1u << 5)
#define F1_EDX_PAE (1u << 6)
#define F1_EDX_CX8 (1u << 8)
#define F1_EDX_APIC (1u << 9)
#define F1_EDX_PGE (1u << 13)
#define F1_EDX_CMOV (1u << 15)
#define F1_EDX_PAT (1u << 16)
#define F1_EDX_FXSR (1u << 24)
#define F1_EDX_SSE (1u << 25)
#define F1_EDX_SSE2 (1u << 26)
/* Leaf 1 ECX (table 3-10). */
#define F1_ECX_CX16 (1u << 13)
#define F1_ECX_PCID (1u << 17)
#define F1_ECX_X2APIC (1u << 21)
#define F1_ECX_MOVBE (1u << 22)
#define F1_ECX_POPCNT (1u << 23)
#define F1_ECX_TSC_DEADLINE (1u << 24)
#define F1_ECX_HYPERVISOR (1u << 31)
/* Leaf 6 EAX. */
#define F6_EAX_ARAT (1u << 2)
/* Leaf 7 subleaf 0 EBX. */
#define F7_EBX_BMI1 (1u << 3)
#define F7_EBX_SMEP (1u << 7)
#define F7_EBX_BMI2 (1u << 8)
#define F7_EBX_INVPCID (1u << 10)
#define F7_EBX_ADX (1u << 19)
#define F7_EBX_SMAP (1u << 20)
/* Leaf 0x80000001. */
#define FX_ECX_LAHF_LM (1u << 0)
#define FX_ECX_ABM (1u << 5) /* LZCNT */
#define FX_ECX_PREFETCHW (1u << 8) /* "3DNowPrefetch": 0F 0D */
#define FX_EDX_SYSCALL (1u << 11)
#define FX_EDX_NX (1u << 20)
#define FX_EDX_PDPE1GB (1u << 26)
#define FX_EDX_RDTSCP (1u << 27)
#define FX_EDX_LM (1u << 29)
/* Leaf 0x80000007 EDX. */
#define FX7_EDX_INVARIANT_TSC (1u << 8)

/* Family 6, model 0, stepping 1: no real part, so no guest applies a
 * vendor's model-specific quirks to it. */
#define SIGNATURE 0x00000601u

static void put_string(uint32_t *regs, const char *s, unsigned int n)
{
	memcpy(regs, s, n);
}

void x86_cpuid(const struct x86_cpu *cpu, uint32_t leaf, uint32_t subleaf,
	       uint32_t out[4])
{
	uint32_t sig[3];

	memset(out, 0, 4 * sizeof(uint32_t));
	switch (leaf) {
	case 0:
		put_string(sig, vendor, 12);
		out[0] = MAX_BASIC_LEAF;
		out[1] = sig[0];
		out[2] = sig[2];
		out[3] = sig[1];
		break;
	case 1:
		out[0] = SIGNATURE;
		/* Initial APIC ID in bits 31:24. */
		out[1] = (cpu->index & 0xff) << 24;
		out[2] = F1_ECX_CX16 | F1_ECX_PCID | F1_ECX_X2APIC |
			 F1_ECX_MOVBE | F1_ECX_POPCNT | F1_ECX_TSC_DEADLINE |
			 F1_ECX_HYPERVISOR;
		out[3] = F1_EDX_FPU | F1_EDX_PSE | F1_EDX_TSC | F1_EDX_MSR |
			 F1_EDX_PAE | F1_EDX_CX8 | F1_EDX_APIC | F1_EDX_PGE |
			 F1_EDX_CMOV | F1_EDX_PAT | F1_EDX_FXSR | F1_EDX_SSE |
			 F1_EDX_SSE2;
		break;
	case 6:
		/* The APIC timer runs at a constant rate whatever the
		 * C-state (ARAT): it runs on host time. */
		out[0] = F6_EAX_ARAT;
		break;
	case 7:
		if (subleaf == 0)
			out[1] = F7_EBX_BMI1 | F7_EBX_SMEP | F7_EBX_BMI2 |
				 F7_EBX_INVPCID | F7_EBX_ADX | F7_EBX_SMAP;
		break;
	case HV_LEAF:
		put_string(sig, hv_signature, 12);
		out[0] = KVM_CPUID_FEATURES;
		out[1] = sig[0];
		out[2] = sig[1];
		out[3] = sig[2];
		break;
	case KVM_CPUID_FEATURES:
		/* No other paravirtual feature, no hints. */
		out[0] = KVM_FEATURE_CLOCKSOURCE2 |
			 KVM_FEATURE_CLOCKSOURCE_STABLE_BIT;
		break;
	case 0x80000000u:
		out[0] = MAX_EXT_LEAF;
		break;
	case 0x80000001u:
		out[2] = FX_ECX_LAHF_LM | FX_ECX_ABM | FX_ECX_PREFETCHW;
		out[3] = FX_EDX_SYSCALL | FX_EDX_NX | FX_EDX_PDPE1GB |
			 FX_EDX_RDTSCP | FX_EDX_LM;
		break;
	case 0x80000002u:
	case 0x80000003u:
	case 0x80000004u:
		put_string(out, brand + 16 * (leaf - 0x80000002u), 16);
		break;
	case 0x80000007u:
		/* The TSC is the host's plus one offset per VM
		 * (docs/GUEST-ABI.md, "Time"): invariant. */
		out[3] = FX7_EDX_INVARIANT_TSC;
		break;
	case 0x80000008u:
		/* 46 physical, 48 linear address bits (docs/GUEST-ABI.md). */
		out[0] = 0x302e;
		break;
	default:
		/* Leaves 2-5, 0x80000005-6 and everything out of range
		 * report nothing (as AMD processors do). */
		break;
	}
}
