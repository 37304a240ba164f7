/*
 * QEMU's getfd and closefd (docs/QMP.md, "Passing descriptors"): a
 * client passes a descriptor with SCM_RIGHTS together with getfd, as
 * libvirt does before migrate {"uri": "fd:NAME"}, and it is kept under
 * fdname in a struct mig_fds (daemon/internal/migrate_uri.h) until the
 * migration engine takes it or closefd closes it. rpc/ receives the
 * descriptor and closes what no handler takes; this file only names and
 * keeps them. Loop thread only.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "migrate_uri.h"
#include "mmud.h"
#include "rpc.h"

static const struct qmp_arg fdname_args[] = {
	{ "fdname", QMP_ARG_STRING, false },
	QMP_ARGS_END,
};

static void cmd_getfd(struct qmp_request *req, json_t *args, void *opaque)
{
	const char *name = json_string_value(json_object_get(args, "fdname"));
	struct mig_fds *fds = opaque;
	int fd, r;

	/* QEMU's order: the descriptor first, then the name. */
	fd = qmp_request_take_fd(req);
	if (fd < 0) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"No file descriptor supplied via SCM_RIGHTS");
		return;
	}
	/* A name starting with a digit would read as a descriptor number
	 * in QEMU's fd: URIs. */
	if (name[0] >= '0' && name[0] <= '9') {
		close(fd);
		qmp_reply_invalid_value(req, "fdname",
					"a name not starting with a digit");
		return;
	}
	if (!name[0] || strlen(name) > MIG_FDNAME_MAX) {
		close(fd);
		qmp_reply_invalid_value(req, "fdname",
					"a name of 1 to 127 bytes");
		return;
	}
	r = mig_fds_put(fds, name, fd);
	if (r == -ENOSPC) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Too many named file descriptors (%d): close "
				"one with closefd first",
				MIG_FDS_MAX);
		return;
	}
	if (r < 0) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "Out of memory");
		return;
	}
	qmp_reply_ok(req);
}

static void cmd_closefd(struct qmp_request *req, json_t *args, void *opaque)
{
	const char *name = json_string_value(json_object_get(args, "fdname"));

	if (mig_fds_close(opaque, name) < 0) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"File descriptor named '%s' not found", name);
		return;
	}
	qmp_reply_ok(req);
}

struct mig_fds *mmud_fds_new(struct qmp_server *qmp)
{
	struct mig_fds *fds = mig_fds_new();

	if (!fds)
		return NULL;
	if (qmp_server_register(qmp, "getfd", fdname_args, cmd_getfd, fds) <
		    0 ||
	    qmp_server_register(qmp, "closefd", fdname_args, cmd_closefd, fds) <
		    0) {
		/* Registration fails only for memory: main exits. */
		mig_fds_free(fds);
		return NULL;
	}
	return fds;
}
