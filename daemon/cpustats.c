/*
 * x-query-cpu-stats (docs/QMP.md, "x-query-cpu-stats (daemon)"): one
 * vCPU's run-loop counters (blocks run, the decoded-block cache's hits,
 * misses, stale and uncached blocks, pool flushes, why runs ended) and
 * the engine it runs guest code with, for measuring the interpreter
 * (docs/BENCHMARKS.md). Answers at once on the loop thread: the counters
 * are snapshots the vCPU publishes at the end of each run.
 */
#include <errno.h>
#include <stdio.h>

#include "mmud.h"
#include "rpc.h"
#include "vm.h"
#include "x86.h"

static const struct qmp_arg cpu_stats_args[] = {
	{ "cpu-index", QMP_ARG_INT, false },
	QMP_ARGS_END,
};

static void cmd_query_cpu_stats(struct qmp_request *req, json_t *args,
				void *opaque)
{
	struct vm *vm = opaque;
	struct x86_cpu_stats st;
	const char *engine;
	uint64_t index;
	char what[64];

	snprintf(what, sizeof(what), "a vCPU index from 0 to %u",
		 vm_nr_vcpus(vm) - 1);
	if (!qmp_json_u64(json_object_get(args, "cpu-index"), &index) ||
	    index >= vm_nr_vcpus(vm) ||
	    vm_vcpu_cpu_stats(vm, (unsigned int)index, &st, &engine) < 0) {
		qmp_reply_invalid_value(req, "cpu-index", what);
		return;
	}
	qmp_reply_return(
		req,
		json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			  "s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			  "s:I}",
			  "cpu-index", (json_int_t)index, "engine", engine,
			  "blocks", (json_int_t)st.blocks, "cache-hits",
			  (json_int_t)st.cache_hits, "cache-misses",
			  (json_int_t)st.cache_misses, "cache-stale",
			  (json_int_t)st.cache_stale, "uncached",
			  (json_int_t)st.uncached, "mmio-fetches",
			  (json_int_t)st.mmio_fetches, "smc-breaks",
			  (json_int_t)st.smc_breaks, "flushes",
			  (json_int_t)st.flushes, "budget-exits",
			  (json_int_t)st.budget_exits, "kick-exits",
			  (json_int_t)st.kick_exits, "pool-bytes",
			  (json_int_t)st.pool_bytes, "generic-irq",
			  (json_int_t)st.generic_irq, "generic-budget",
			  (json_int_t)st.generic_budget, "chain-hits",
			  (json_int_t)st.chain_hits, "jit-blocks",
			  (json_int_t)st.jit_blocks, "jit-ns",
			  (json_int_t)st.jit_ns, "jit-bytes",
			  (json_int_t)st.jit_bytes, "verified",
			  (json_int_t)st.verified, "unverified",
			  (json_int_t)st.unverified));
}

int mmud_cpustats_register(struct qmp_server *qmp, struct vm *vm)
{
	if (qmp_server_register(qmp, "x-query-cpu-stats", cpu_stats_args,
				cmd_query_cpu_stats, vm) < 0)
		return -ENOMEM;
	return 0;
}
