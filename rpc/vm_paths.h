/*
 * Where a named VM's sockets live and what a VM name may be: the one
 * rule mmud (its --name and config file) and mmuctl (its --name) share,
 * so that every name one accepts, the other accepts too, and both find
 * the same sockets. Header-only: the daemon's settings parser is also
 * built alone (tests/fuzz) and mmuctl links only rpc's client half.
 */
#ifndef MMUD_VM_PATHS_H
#define MMUD_VM_PATHS_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* systemd's RuntimeDirectory=mmud/%i of mmud@.service. */
#define QMP_VM_RUN_DIR "/run/mmud"
/* Longest name plus its terminator. */
#define QMP_VM_NAME_MAX 64

/*
 * One path component of safe characters: 1 to QMP_VM_NAME_MAX - 1
 * letters, digits, '-', '_' and '.', not starting with '.' or '-' (no
 * ".", "..", hidden names or names that read as options).
 */
static inline bool qmp_vm_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= QMP_VM_NAME_MAX || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return false;
	}
	return true;
}

/*
 * The path of socket @sock ("qmp.sock", "console.sock") of VM @name, or
 * with @sock "" its directory with a trailing '/'. False if it does not
 * fit in @len bytes. @name must pass qmp_vm_name_ok().
 */
static inline bool qmp_vm_socket_path(char *buf, size_t len, const char *name,
				      const char *sock)
{
	int n = snprintf(buf, len, "%s/%s/%s", QMP_VM_RUN_DIR, name, sock);

	return n >= 0 && (size_t)n < len;
}

#endif
