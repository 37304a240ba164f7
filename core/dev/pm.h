/*
 * The power-management registers of platform v2 (docs/GUEST-ABI.md,
 * "Sleep and reset registers"): the ACPI sleep control, sleep status and
 * reset register, all one byte at I/O port 0x600 as the FADT describes
 * them, and the i8042 reset command (0xFE to port 0x64) Linux tries when
 * ACPI's reset does not take. The device keeps no state: it decodes a
 * port access into what the VM must do, and the VM does it.
 */
#ifndef MMUD_DEV_PM_H
#define MMUD_DEV_PM_H

#include <stdbool.h>
#include <stdint.h>

#define DEV_PM_PORT 0x600
#define DEV_PM_I8042_PORT 0x64
#define DEV_PM_RESET_VALUE 1
#define DEV_PM_I8042_RESET 0xfe
/* Sleep control: SLP_TYP in bits 2-4, SLP_EN bit 5 (ACPI 6.4, 4.8.3.7). */
#define DEV_PM_SLP_TYP_SHIFT 2
#define DEV_PM_SLP_TYP_MASK 0x7
#define DEV_PM_SLP_EN 0x20
#define DEV_PM_SLP_TYP_S5 5 /* \_S5 in the DSDT */

enum dev_pm_action {
	DEV_PM_NONE, /* not ours, or nothing to do */
	DEV_PM_CLAIMED, /* an access to our port that changes nothing */
	DEV_PM_POWEROFF, /* S5: the guest powered off */
	DEV_PM_RESET, /* the reset register or the i8042 reset */
};

/*
 * Decodes a port access. Reads of port 0x600 (sleep status) give 0 in
 * *value; a write to 0x600 of 0x34 (SLP_TYP 5, SLP_EN) is S5 and of the
 * reset value a reset; 0xFE written to 0x64 is a reset. Other sleep
 * types are ignored (the DSDT offers only \_S5). DEV_PM_NONE for ports
 * that are not ours (port 0x64 is ours only for that write).
 */
enum dev_pm_action dev_pm_pio(uint16_t port, unsigned int size, bool in,
			      uint32_t *value);

#endif
