/*
 * The MMU's switches over QMP (docs/MMU.md, "Switches"; docs/QMP.md,
 * "x-query-mmu-options, x-mmu-set-option (daemon)"): list them with
 * their values and defaults, and set one while the vCPUs run. Both
 * answer at once on the loop thread: setting one is a relaxed store the
 * MMU reads where it decides.
 */
#include <errno.h>

#include "mmu.h"
#include "mmud.h"
#include "rpc.h"
#include "vm.h"

static const struct qmp_arg set_args[] = {
	{ "name", QMP_ARG_STRING, false },
	{ "value", QMP_ARG_STRING, false },
	QMP_ARGS_END,
};

static void cmd_query(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmu *mmu = vm_mmu(opaque);
	json_t *list = json_array();

	(void)args;
	for (unsigned int o = 0; o < MMU_OPT_NR; o++) {
		const struct mmu_option_desc *d = mmu_option_desc(o);
		json_t *values = json_array();

		for (unsigned int i = 0; d->values[i]; i++)
			json_array_append_new(values,
					      json_string(d->values[i]));
		json_array_append_new(
			list,
			json_pack("{s:s, s:s, s:s, s:o, s:b}", "name", d->name,
				  "value", d->values[mmu_option_get(mmu, o)],
				  "default", d->values[0], "values", values,
				  "runtime", d->runtime));
	}
	qmp_reply_return(req, list);
}

static void cmd_set(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmu *mmu = vm_mmu(opaque);
	enum mmu_option opt;
	unsigned int val;
	char err[256];

	if (mmu_option_lookup(json_string_value(json_object_get(args, "name")),
			      json_string_value(json_object_get(args, "value")),
			      &opt, &val, err, sizeof(err)) < 0) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "%s", err);
		return;
	}
	if (!mmu_option_desc(opt)->runtime) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"MMU option '%s' is set at start only "
				"(--mmu-option)",
				mmu_option_desc(opt)->name);
		return;
	}
	mmu_option_set(mmu, opt, val);
	qmp_reply_ok(req);
}

int mmud_mmuopts_register(struct qmp_server *qmp, struct vm *vm)
{
	if (qmp_server_register(qmp, "x-query-mmu-options", NULL, cmd_query,
				vm) < 0 ||
	    qmp_server_register(qmp, "x-mmu-set-option", set_args, cmd_set,
				vm) < 0)
		return -ENOMEM;
	return 0;
}
