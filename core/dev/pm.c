/*
 * The sleep control/status and reset registers at I/O port 0x600 and the
 * i8042 reset of port 0x64 (docs/GUEST-ABI.md, "Sleep and reset
 * registers"). This file owns only the decoding: which byte written where
 * is S5 or a reset. What that means for the VM (shutting down, a reset,
 * QEMU's -no-reboot) is core/vm.c's and the daemon's business. There is
 * no state, so a system_reset has nothing to reset here.
 */
#include "pm.h"

enum dev_pm_action dev_pm_pio(uint16_t port, unsigned int size, bool in,
			      uint32_t *value)
{
	uint8_t v = (uint8_t)*value;

	if (port == DEV_PM_I8042_PORT) {
		/* Only the reset command: the FADT says there is no 8042,
		 * so reads float as on any empty port. */
		if (in || size != 1 || v != DEV_PM_I8042_RESET)
			return DEV_PM_NONE;
		return DEV_PM_RESET;
	}
	if (port != DEV_PM_PORT)
		return DEV_PM_NONE;
	if (in) {
		/* Sleep status: WAK_STS clear, nothing ever wakes. */
		*value = 0;
		return DEV_PM_CLAIMED;
	}
	/* The registers are one byte wide: a wider write sets this byte. */
	if (v == DEV_PM_RESET_VALUE)
		return DEV_PM_RESET;
	if ((v & DEV_PM_SLP_EN) && ((v >> DEV_PM_SLP_TYP_SHIFT) &
				    DEV_PM_SLP_TYP_MASK) == DEV_PM_SLP_TYP_S5)
		return DEV_PM_POWEROFF;
	return DEV_PM_CLAIMED;
}
