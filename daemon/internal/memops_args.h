/*
 * The argument schema of the memory commands (daemon/memops.c): names,
 * types and which are optional, as docs/QMP.md documents them. rpc
 * checks a request against these tables before memops.c sees it.
 *
 * A header with an outside includer, on purpose:
 * tests/unit/rpc/qmp_test_server.c registers its stand-ins for these
 * commands with the same tables, so mmuctl is tested against the schema
 * the daemon serves and the two cannot drift. It needs rpc.h only, so the
 * test server links no daemon code and rpc knows no daemon command.
 */
#ifndef MMUD_DAEMON_MEMOPS_ARGS_H
#define MMUD_DAEMON_MEMOPS_ARGS_H

#include "rpc.h"

/* x-memslot-add */
static const struct qmp_arg mmud_memslot_add_args[] = {
	{ "gpa", QMP_ARG_INT, false },
	{ "size", QMP_ARG_INT, false },
	{ "readonly", QMP_ARG_BOOL, true },
	{ "log-dirty", QMP_ARG_BOOL, true },
	QMP_ARGS_END,
};

/* x-memslot-remove, x-dirty-log-stop */
static const struct qmp_arg mmud_slot_args[] = {
	{ "slot", QMP_ARG_INT, false },
	QMP_ARGS_END,
};

/* x-dirty-log-start */
static const struct qmp_arg mmud_log_start_args[] = {
	{ "slot", QMP_ARG_INT, false },
	{ "manual-protect", QMP_ARG_BOOL, true },
	QMP_ARGS_END,
};

/* x-dirty-log-clear */
static const struct qmp_arg mmud_clear_args[] = {
	{ "slot", QMP_ARG_INT, false },
	{ "first-page", QMP_ARG_INT, false },
	{ "num-pages", QMP_ARG_INT, false },
	{ "bitmap", QMP_ARG_STRING, false },
	QMP_ARGS_END,
};

/* x-dirty-log-harvest */
static const struct qmp_arg mmud_harvest_args[] = {
	{ "slot", QMP_ARG_INT, false },
	{ "clear", QMP_ARG_BOOL, true },
	{ "first-page", QMP_ARG_INT, true },
	{ "num-pages", QMP_ARG_INT, true },
	QMP_ARGS_END,
};

/* x-mmu-zap-all */
static const struct qmp_arg mmud_zap_all_args[] = {
	{ "slow", QMP_ARG_BOOL, true },
	QMP_ARGS_END,
};

#endif
