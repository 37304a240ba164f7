/*
 * x2apic: apic.c's checks with the APIC in x2APIC mode, through the
 * MSRs 0x800-0x8FF (SDM vol. 3, 10.12), the self-IPIs through the SELF
 * IPI register. mmud only: QEMU 7.2's TCG CPU has no x2APIC
 * (docs/REFERENCE-RUNNERS.md, "Transcripts that differ, and why").
 */
#define APIC_X2APIC 1
#define APIC_GUEST_NAME "x2apic"
#include "apic.c"
