/*
 * The QMP commands of interrupts (docs/QMP.md, "inject-nmi (daemon)" and
 * "x-query-lapic (daemon)"): QEMU's inject-nmi, an NMI to every vCPU, and
 * x-query-lapic, one local APIC's registers for debugging a guest. Both
 * answer at once on the loop thread: they take only the APICs' leaf
 * locks and make vCPU requests, and never wait for a vCPU. The APIC
 * itself is core/dev/lapic.c's, wired by core/vm.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "dev/lapic.h"
#include "mmud.h"
#include "rpc.h"
#include "vm.h"

static const struct qmp_arg lapic_args[] = {
	{ "cpu-index", QMP_ARG_INT, false },
	QMP_ARGS_END,
};

static void cmd_inject_nmi(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)args;
	vm_inject_nmi(opaque);
	qmp_reply_ok(req);
}

static json_t *words(const uint32_t *w, unsigned int n)
{
	json_t *a = json_array();

	for (unsigned int i = 0; i < n; i++)
		json_array_append_new(a, json_integer(w[i]));
	return a;
}

static void cmd_query_lapic(struct qmp_request *req, json_t *args, void *opaque)
{
	struct vm *vm = opaque;
	struct dev_lapic_state st;
	uint64_t index;
	char what[64];
	json_t *r;

	snprintf(what, sizeof(what), "a vCPU index from 0 to %u",
		 vm_nr_vcpus(vm) - 1);
	if (!qmp_json_u64(json_object_get(args, "cpu-index"), &index) ||
	    index >= vm_nr_vcpus(vm) ||
	    vm_lapic_state(vm, (unsigned int)index, &st) < 0) {
		qmp_reply_invalid_value(req, "cpu-index", what);
		return;
	}
	r = json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
		      "s:I}",
		      "apic-base", (json_int_t)st.base, "mode",
		      !(st.base & MSR_IA32_APIC_BASE_EN) ? "disabled" :
		      st.x2apic				 ? "x2apic" :
							   "xapic",
		      "id", (json_int_t)st.id, "version",
		      (json_int_t)st.version, "tpr", (json_int_t)st.tpr, "ppr",
		      (json_int_t)st.ppr, "ldr", (json_int_t)st.ldr, "dfr",
		      (json_int_t)st.dfr, "svr", (json_int_t)st.svr, "esr",
		      (json_int_t)st.esr, "icr",
		      (json_int_t)(((uint64_t)st.icr_hi << 32) | st.icr_lo),
		      "tsc-deadline", (json_int_t)st.tsc_deadline);
	json_object_set_new(r, "lvt",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "timer",
				      (json_int_t)st.lvt[0], "thermal",
				      (json_int_t)st.lvt[1], "perf",
				      (json_int_t)st.lvt[2], "lint0",
				      (json_int_t)st.lvt[3], "lint1",
				      (json_int_t)st.lvt[4], "error",
				      (json_int_t)st.lvt[5]));
	json_object_set_new(r, "irr", words(st.irr, 8));
	json_object_set_new(r, "isr", words(st.isr, 8));
	json_object_set_new(r, "tmr", words(st.tmr, 8));
	json_object_set_new(r, "timer",
			    json_pack("{s:I, s:I, s:I, s:b}", "initial-count",
				      (json_int_t)st.timer_initial,
				      "current-count",
				      (json_int_t)st.timer_current, "divide",
				      (json_int_t)st.timer_divide, "armed",
				      st.timer_deadline_ns != 0));
	json_object_set_new(r, "wait-for-sipi", json_boolean(st.wait_for_sipi));
	json_object_set_new(r, "sipis", json_integer(st.sipis));
	if (st.sipi_vector >= 0)
		json_object_set_new(r, "sipi-vector",
				    json_integer(st.sipi_vector));
	qmp_reply_return(req, r);
}

int mmud_interrupts_register(struct qmp_server *qmp, struct vm *vm)
{
	if (qmp_server_register(qmp, "inject-nmi", NULL, cmd_inject_nmi, vm) <
		    0 ||
	    qmp_server_register(qmp, "x-query-lapic", lapic_args,
				cmd_query_lapic, vm) < 0)
		return -ENOMEM;
	return 0;
}
