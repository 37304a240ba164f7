/*
 * Where a named VM's sockets live and what a VM name may be: the one
 * rule mmud (its --name and config file) and mmuctl (its --name) share,
 * so that every name one accepts, the other accepts too, and both find
 * the same sockets. Header-only: the daemon's settings parser is also
 * built alone (tests/fuzz) and mmuctl links only rpc's client half.
 * Both also check the VM's runtime folder before they trust a socket in
 * it (qmp_vm_dir_check()).
 */
#ifndef MMUD_VM_PATHS_H
#define MMUD_VM_PATHS_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Why folder @path (@st) is unsafe, into err; false if it is not. */
static inline bool qmp_vm_dir_unsafe(const char *path, const struct stat *st,
				     bool any_owner, char *err, size_t errlen)
{
	uid_t me = geteuid();

	if (!S_ISDIR(st->st_mode)) {
		snprintf(err, errlen, "%s is not a folder (%s)", path,
			 S_ISLNK(st->st_mode) ? "a symbolic link" :
						"another kind of file");
		return true;
	}
	if (st->st_uid != me && !any_owner) {
		snprintf(err, errlen,
			 "%s belongs to uid %u, not to us (uid %u): its owner "
			 "could replace the sockets in it",
			 path, (unsigned int)st->st_uid, (unsigned int)me);
		return true;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen,
			 "%s is writable by %s (mode %04o): they could replace "
			 "the sockets in it",
			 path, st->st_mode & S_IWOTH ? "others" : "its group",
			 (unsigned int)(st->st_mode & 07777));
		return true;
	}
	return false;
}

/*
 * Whether the runtime folder of VM @name may be trusted with its
 * sockets: /run/mmud and /run/mmud/NAME are real folders (not symbolic
 * links) that no group or other user may write to, /run/mmud belongs
 * to root or to us, and /run/mmud/NAME to us. A client run by root
 * (@client) also trusts a NAME folder of another owner, which only root
 * can have given it in a /run/mmud that is root's (systemd's
 * RuntimeDirectory= for a DynamicUser= service). 0; -ENOENT when either
 * folder does not exist; -EPERM with the reason in @err.
 */
static inline int qmp_vm_dir_check(const char *name, bool client, char *err,
				   size_t errlen)
{
	char dir[sizeof(QMP_VM_RUN_DIR) + QMP_VM_NAME_MAX + 1];
	struct stat st;

	if (lstat(QMP_VM_RUN_DIR, &st) < 0) {
		int e = errno;

		snprintf(err, errlen, "%s: %s", QMP_VM_RUN_DIR, strerror(e));
		return e == ENOENT ? -ENOENT : -EPERM;
	}
	if (qmp_vm_dir_unsafe(QMP_VM_RUN_DIR, &st, st.st_uid == 0, err, errlen))
		return -EPERM;
	snprintf(dir, sizeof(dir), "%s/%s", QMP_VM_RUN_DIR, name);
	if (lstat(dir, &st) < 0) {
		int e = errno;

		snprintf(err, errlen, "%s: %s", dir, strerror(e));
		return e == ENOENT ? -ENOENT : -EPERM;
	}
	if (qmp_vm_dir_unsafe(dir, &st, client && geteuid() == 0, err, errlen))
		return -EPERM;
	return 0;
}

#endif
