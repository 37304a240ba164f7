/*
 * The QMP commands of interrupts (docs/QMP.md, "inject-nmi (daemon)",
 * "x-query-lapic (daemon)" and "x-query-ioapic (daemon)"): QEMU's
 * inject-nmi, an NMI to every vCPU, x-query-lapic, one local APIC's
 * registers, and x-query-ioapic, the IOAPIC's, for debugging a guest.
 * All answer at once on the loop thread: they take only the APICs' leaf
 * locks and make vCPU requests, and never wait for a vCPU. The APICs
 * themselves are core/dev/lapic.c's and ioapic.c's, wired by core/vm.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "dev/ioapic.h"
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

static const char *const delivery_modes[8] = {
	"fixed", "lowest-priority", "smi",    "reserved", "nmi",
	"init",	 "reserved",	    "extint",
};

static void cmd_query_ioapic(struct qmp_request *req, json_t *args,
			     void *opaque)
{
	struct dev_ioapic_state st;
	json_t *pins = json_array();

	(void)args;
	vm_ioapic_state(opaque, &st);
	for (unsigned int i = 0; i < DEV_IOAPIC_PINS; i++) {
		uint64_t e = st.redir[i];

		json_array_append_new(
			pins,
			json_pack("{s:I, s:I, s:s, s:s, s:I, s:s, s:s, s:b, "
				  "s:b, s:b}",
				  "pin", (json_int_t)i, "vector",
				  (json_int_t)(e & IOAPIC_RTE_VECTOR),
				  "delivery-mode",
				  delivery_modes[(e & IOAPIC_RTE_DELMODE) >>
						 IOAPIC_RTE_DELMODE_SHIFT],
				  "dest-mode",
				  e & IOAPIC_RTE_DESTMODE ? "logical" :
							    "physical",
				  "destination",
				  (json_int_t)(e >> IOAPIC_RTE_DEST_SHIFT),
				  "polarity",
				  e & IOAPIC_RTE_POLARITY ? "active-low" :
							    "active-high",
				  "trigger",
				  e & IOAPIC_RTE_LEVEL ? "level" : "edge",
				  "masked", (int)!!(e & IOAPIC_RTE_MASK),
				  "remote-irr",
				  (int)!!(e & IOAPIC_RTE_REMOTE_IRR), "line",
				  (int)!!(st.pin_levels & (1u << i))));
	}
	qmp_reply_return(
		req,
		json_pack("{s:I, s:I, s:I, s:I, s:o}", "id", (json_int_t)st.id,
			  "version", (json_int_t)(IOAPIC_VERSION_VALUE & 0xff),
			  "arbitration-id", (json_int_t)st.arb, "ioregsel",
			  (json_int_t)st.ioregsel, "pins", pins));
}

int mmud_interrupts_register(struct qmp_server *qmp, struct vm *vm)
{
	if (qmp_server_register(qmp, "inject-nmi", NULL, cmd_inject_nmi, vm) <
		    0 ||
	    qmp_server_register(qmp, "x-query-lapic", lapic_args,
				cmd_query_lapic, vm) < 0 ||
	    qmp_server_register(qmp, "x-query-ioapic", NULL, cmd_query_ioapic,
				vm) < 0)
		return -ENOMEM;
	return 0;
}
