/*
 * The control plane of one VM: its run state (QEMU's RunState, owned by
 * the loop thread), the run-control QMP commands (docs/QMP.md) and the
 * events they and
 * the guest cause, what a guest exit or crash means (QEMU's panic
 * actions), and the clean shutdown. Commands that wait for vCPUs or take
 * mmu_lock (stop, cont, system_reset, x-mmu-audit, x-query-mmu-stats,
 * the shutdown's pause) run on the worker and answer from its
 * completion, so the loop never blocks; the run state changes on the
 * loop when the command is accepted, so later commands see it at once,
 * and the worker's FIFO keeps the vCPUs' side in the same order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "dev/virtio_blk.h"
#include "guestmem.h"
#include "migrate.h"
#include "mmu.h"
#include "mmud.h"
#include "rpc.h"
#include "vm.h"

enum runstate {
	RS_PRELAUNCH,
	RS_RUNNING,
	RS_PAUSED,
	RS_SHUTDOWN,
	RS_GUEST_PANICKED,
	RS_INTERNAL_ERROR,
	RS_INMIGRATE,
	RS_POSTMIGRATE,
	RS_FINISH_MIGRATE,
	RS_IO_ERROR,
};

static const char *const runstate_names[] = {
	[RS_PRELAUNCH] = "prelaunch",
	[RS_RUNNING] = "running",
	[RS_PAUSED] = "paused",
	[RS_SHUTDOWN] = "shutdown",
	[RS_GUEST_PANICKED] = "guest-panicked",
	[RS_INTERNAL_ERROR] = "internal-error",
	[RS_INMIGRATE] = "inmigrate",
	[RS_POSTMIGRATE] = "postmigrate",
	[RS_FINISH_MIGRATE] = "finish-migrate",
	[RS_IO_ERROR] = "io-error",
};

/* Legend: (c) constant after mmud_new(); (e) loop thread only. */
struct mmud {
	struct event_base *base; /* (c) */
	struct vm *vm; /* (c) */
	struct qmp_server *qmp; /* (c) NULL without a socket */
	struct mmud_worker *worker; /* (c) */
	const struct mmud_config *cfg; /* (c) */
	bool panic_pause; /* (c) */
	enum runstate state; /* (e) */
	bool shutting_down; /* (e) */
	int exit_status; /* (e) */
	/* (e) inmigrate: run once the stream has loaded (QEMU's autostart:
	 * not --paused, or cont since); finish-migrate: run again if the
	 * migration fails (it ran when the switchover began, and no stop
	 * came since). */
	bool autostart;
	/* (e) the state the last switchover began in: a failed or
	 * cancelled migration gives it back (QEMU's vm_old_state). */
	enum runstate pre_switchover;
};

/*
 * One job on the worker and its answer. Owned by one thread at a time:
 * the loop fills the inputs (req, flag, msg) before submitting, the
 * worker writes the results (r, msg, ret), the loop's completion reads
 * them and frees the job; the worker's lock orders each hand-off.
 */
struct job {
	struct mmud *d;
	struct qmp_request *req; /* NULL: no client waits */
	int r;
	bool flag;
	char msg[256];
	json_t *ret;
};

static void emit(struct mmud *d, const char *name, json_t *data)
{
	if (d->qmp)
		qmp_server_emit_event(d->qmp, name, data);
	else
		json_decref(data);
}

static void set_state(struct mmud *d, enum runstate st)
{
	char buf[64];

	d->state = st;
	snprintf(buf, sizeof(buf), "STATUS=VM %s", runstate_names[st]);
	mmud_notify(buf);
}

static bool needs_reset(const struct mmud *d)
{
	return d->state == RS_SHUTDOWN || d->state == RS_GUEST_PANICKED ||
	       d->state == RS_INTERNAL_ERROR;
}

static struct job *job_new(struct mmud *d, struct qmp_request *req)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j) {
		j->d = d;
		j->req = req;
	}
	return j;
}

/*
 * Submits a job (flag and msg are its inputs, set before the worker can
 * see it), or answers the request with an error if it cannot.
 */
static bool submit(struct mmud *d, struct qmp_request *req,
		   void (*work)(void *), void (*done)(void *), bool flag,
		   const char *msg)
{
	struct job *j = job_new(d, req);
	int r;

	if (j) {
		j->flag = flag;
		snprintf(j->msg, sizeof(j->msg), "%s", msg ? msg : "");
	}
	r = j ? mmud_worker_submit(d->worker, work, done, j) : -ENOMEM;
	if (r < 0) {
		free(j);
		if (req)
			qmp_reply_error(req, QMP_ERROR_GENERIC, "%s",
					r == -ESHUTDOWN ?
						"The VM is shutting down" :
						"Out of memory");
		return false;
	}
	return true;
}

/* ---- shutdown ---------------------------------------------------------- */

static void shutdown_work(void *arg)
{
	struct job *j = arg;

	/* Stays held: the vCPUs never run again. */
	vm_hold(j->d->vm);
}

static void shutdown_done(void *arg)
{
	struct job *j = arg;
	struct mmud *d = j->d;

	/* QEMU's order: the event, then the reply to quit. */
	emit(d, "SHUTDOWN",
	     json_pack("{s:b, s:s}", "guest", j->flag, "reason", j->msg));
	if (j->req)
		qmp_reply_ok(j->req);
	event_base_loopexit(d->base, NULL);
	free(j);
}

/*
 * QEMU's order: the vCPUs stop, SHUTDOWN goes out, then the reply to quit
 * (@req, NULL for any other cause), the process ends (main.c closes the
 * sockets after the loop). A second request (quit after SIGTERM) changes
 * nothing and is answered at once.
 */
static void shutdown_vm(struct mmud *d, struct qmp_request *req, bool guest,
			const char *reason, int status)
{
	if (d->shutting_down) {
		if (req)
			qmp_reply_ok(req);
		return;
	}
	d->shutting_down = true;
	d->exit_status = status;
	set_state(d, RS_SHUTDOWN);
	mmud_notify("STOPPING=1");
	if (!submit(d, req, shutdown_work, shutdown_done, guest, reason))
		event_base_loopexit(d->base, NULL);
}

void mmud_signal_shutdown(struct mmud *d)
{
	fprintf(stderr, "<6>mmud: signal received, shutting down\n");
	shutdown_vm(d, NULL, false, "host-signal", MMUD_EXIT_OK);
}

/* ---- the guest's end ---------------------------------------------------- */

static void reset_work(void *arg);

static void guest_reset_done(void *arg)
{
	struct job *j = arg;
	struct mmud *d = j->d;

	if (j->r < 0) {
		fprintf(stderr, "<2>mmud: guest reset failed: %s\n", j->msg);
		shutdown_vm(d, NULL, false, "host-error", MMUD_EXIT_CRASH);
	} else {
		emit(d, "RESET",
		     json_pack("{s:b, s:s}", "guest", 1, "reason",
			       "guest-reset"));
	}
	free(j);
}

/*
 * The guest's reset register or i8042 reset (docs/GUEST-ABI.md, "Sleep
 * and reset registers"): system_reset on the worker, as QEMU resets, or
 * with --no-reboot QEMU's SHUTDOWN (guest-reset) and exit status 0.
 */
static void guest_reset(struct mmud *d, const char *how)
{
	if (d->cfg->no_reboot) {
		fprintf(stderr,
			"<6>mmud: guest reset (%s), --no-reboot: "
			"shutting down\n",
			how);
		shutdown_vm(d, NULL, true, "guest-reset", MMUD_EXIT_OK);
		return;
	}
	fprintf(stderr, "<6>mmud: guest reset (%s)\n", how);
	/* The vCPUs stay paused by the VM's end until the reset; a VM the
	 * operator stopped meanwhile stays stopped after it. */
	submit(d, NULL, reset_work, guest_reset_done, d->state == RS_RUNNING,
	       NULL);
}

static void vm_ended_cb(void *arg)
{
	struct mmud *d = arg;
	struct vm_result res;
	bool was_running = d->state == RS_RUNNING;

	vm_result(d->vm, &res);
	/* Gone already: a reset came in between, or we are going. */
	if (res.how == VM_END_NONE || d->shutting_down)
		return;
	switch (res.how) {
	case VM_END_NONE:
		return;
	case VM_END_DEBUG_EXIT:
		fprintf(stderr, "<6>mmud: guest exited with value %u\n",
			res.exit_value);
		shutdown_vm(d, NULL, true, "guest-shutdown",
			    (int)(((res.exit_value << 1) | 1) & 0xff));
		return;
	case VM_END_GUEST_SHUTDOWN:
		fprintf(stderr, "<6>mmud: %s\n", res.detail);
		shutdown_vm(d, NULL, true, "guest-shutdown", MMUD_EXIT_OK);
		return;
	case VM_END_GUEST_RESET:
		guest_reset(d, res.detail);
		return;
	case VM_END_CRASH:
		fprintf(stderr, "<2>mmud: guest crashed: %s\n", res.detail);
		if (!d->panic_pause) {
			emit(d, "GUEST_PANICKED",
			     json_pack("{s:s}", "action", "poweroff"));
			shutdown_vm(d, NULL, true, "guest-panic",
				    MMUD_EXIT_CRASH);
			return;
		}
		/* QEMU's panic=pause: the event, then the stop. */
		emit(d, "GUEST_PANICKED",
		     json_pack("{s:s}", "action", "pause"));
		set_state(d, RS_GUEST_PANICKED);
		break;
	case VM_END_INTERNAL_ERROR:
		fprintf(stderr, "<2>mmud: internal error: %s\n", res.detail);
		if (!d->panic_pause) {
			shutdown_vm(d, NULL, false, "host-error",
				    MMUD_EXIT_CRASH);
			return;
		}
		set_state(d, RS_INTERNAL_ERROR);
		break;
	}
	if (was_running)
		emit(d, "STOP", NULL);
}

void mmud_vm_ended(void *mmud)
{
	struct mmud *d = mmud;

	if (mmud_call_soon(d->worker, vm_ended_cb, d) < 0)
		fprintf(stderr, "<2>mmud: out of memory reporting the VM's "
				"end\n");
}

/* ---- run state commands -------------------------------------------------- */

static void cmd_query_name(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmud *d = opaque;

	(void)args;
	if (d->cfg->name)
		qmp_reply_return(req, json_pack("{s:s}", "name", d->cfg->name));
	else
		qmp_reply_ok(req);
}

/* What the machine is, as QEMU answers: management tools ask these before
 * anything else. */
static void cmd_query_target(struct qmp_request *req, json_t *args,
			     void *opaque)
{
	(void)args;
	(void)opaque;
	qmp_reply_return(req, json_pack("{s:s}", "arch", "x86_64"));
}

/* Software vCPUs: no KVM acceleration, enabled or built in. */
static void cmd_query_kvm(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)args;
	(void)opaque;
	qmp_reply_return(req,
			 json_pack("{s:b, s:b}", "enabled", 0, "present", 0));
}

/* Boot RAM, and what x-memslot-add plugged in since (QEMU counts its
 * hot-plugged DIMMs there). */
static void cmd_query_memory_size_summary(struct qmp_request *req, json_t *args,
					  void *opaque)
{
	struct mmud *d = opaque;
	struct guestmem_slot_info hot[GUESTMEM_MAX_SLOTS];
	unsigned int n =
		guestmem_list(vm_guestmem(d->vm), hot, GUESTMEM_MAX_SLOTS);
	uint64_t plugged = 0;

	(void)args;
	for (unsigned int i = 0; i < n && i < GUESTMEM_MAX_SLOTS; i++)
		plugged += hot[i].size;
	qmp_reply_return(req, json_pack("{s:I, s:I}", "base-memory",
					(json_int_t)d->cfg->memory,
					"plugged-memory", (json_int_t)plugged));
}

static void cmd_query_status(struct qmp_request *req, json_t *args,
			     void *opaque)
{
	struct mmud *d = opaque;

	(void)args;
	/* QEMU 7.2's StatusInfo; singlestep is TCG's and always false here. */
	qmp_reply_return(req, json_pack("{s:b, s:b, s:s}", "running",
					d->state == RS_RUNNING, "singlestep", 0,
					"status", runstate_names[d->state]));
}

static void pause_work(void *arg)
{
	struct job *j = arg;

	vm_pause(j->d->vm);
}

static void stop_done(void *arg)
{
	struct job *j = arg;

	/* QEMU's order: the event, then the reply (docs/QMP.md, "Events"). */
	emit(j->d, "STOP", NULL);
	qmp_reply_ok(j->req);
	free(j);
}

/* QEMU: succeeds when already stopped, and then says nothing. */
static void cmd_stop(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmud *d = opaque;

	(void)args;
	/* QEMU: stop while a stream loads (or the switchover runs) keeps
	 * the VM paused afterwards. */
	if (d->state == RS_INMIGRATE || d->state == RS_FINISH_MIGRATE)
		d->autostart = false;
	if (d->state != RS_RUNNING) {
		qmp_reply_ok(req);
		return;
	}
	if (submit(d, req, pause_work, stop_done, false, NULL))
		set_state(d, RS_PAUSED);
}

static void resume_work(void *arg)
{
	struct job *j = arg;
	struct virtio_blk *blk;

	/* QEMU's cont: requests an error with werror/rerror=stop kept
	 * back are resubmitted before the vCPUs run again (docs/QMP.md,
	 * "BLOCK_IO_ERROR"). */
	for (unsigned int i = 0; (blk = vm_blk(j->d->vm, i)); i++)
		virtio_blk_retry(blk);
	vm_resume(j->d->vm);
}

static void cont_done(void *arg)
{
	struct job *j = arg;

	/* QEMU's order: the event, then the reply. */
	emit(j->d, "RESUME", NULL);
	qmp_reply_ok(j->req);
	free(j);
}

static void cmd_cont(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmud *d = opaque;

	(void)args;
	if (needs_reset(d) || d->shutting_down) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Resetting the Virtual Machine is required");
		return;
	}
	if (d->state == RS_RUNNING) {
		qmp_reply_ok(req);
		return;
	}
	/* QEMU: cont while a stream loads runs the VM once it has. */
	if (d->state == RS_INMIGRATE) {
		d->autostart = true;
		qmp_reply_ok(req);
		return;
	}
	if (d->state == RS_FINISH_MIGRATE) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"The VM is switching over to the migration "
				"destination");
		return;
	}
	if (submit(d, req, resume_work, cont_done, false, NULL))
		set_state(d, RS_RUNNING);
}

static void reset_work(void *arg)
{
	struct job *j = arg;
	struct vm *vm = j->d->vm;

	/* j->flag: the VM runs afterwards; otherwise it waits for cont
	 * (QEMU: a reset of a VM that is not running ends in prelaunch). */
	if (!j->flag)
		vm_pause(vm);
	vm_hold(vm);
	j->r = vm_reset(vm, j->msg, sizeof(j->msg));
	vm_unhold(vm);
}

static void reset_done(void *arg)
{
	struct job *j = arg;

	if (j->r < 0) {
		qmp_reply_error(j->req, QMP_ERROR_GENERIC, "Reset failed: %s",
				j->msg);
	} else {
		/* QEMU's order: the event, then the reply. */
		emit(j->d, "RESET",
		     json_pack("{s:b, s:s}", "guest", 0, "reason",
			       "host-qmp-system-reset"));
		qmp_reply_ok(j->req);
	}
	free(j);
}

static void cmd_system_reset(struct qmp_request *req, json_t *args,
			     void *opaque)
{
	struct mmud *d = opaque;
	bool run = d->state == RS_RUNNING;

	(void)args;
	if (d->shutting_down) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"The VM is shutting down");
		return;
	}
	if (!submit(d, req, reset_work, reset_done, run, NULL))
		return;
	set_state(d, run ? RS_RUNNING : RS_PRELAUNCH);
}

static void cmd_quit(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmud *d = opaque;

	(void)args;
	shutdown_vm(d, req, false, "host-qmp-quit", MMUD_EXIT_OK);
}

/* ---- introspection ------------------------------------------------------- */

static void cmd_query_cpus_fast(struct qmp_request *req, json_t *args,
				void *opaque)
{
	struct mmud *d = opaque;
	json_t *list = json_array();

	(void)args;
	for (unsigned int i = 0; i < vm_nr_vcpus(d->vm); i++) {
		struct vm_vcpu_info v;
		char path[64];

		vm_vcpu_info(d->vm, i, &v);
		snprintf(path, sizeof(path), "/machine/cpu[%u]", i);
		json_array_append_new(
			list,
			json_pack("{s:i, s:s, s:i, s:{s:i, s:i, s:i}, s:s, "
				  "s:s, s:b, s:b, s:I, "
				  "s:{s:I, s:I, s:I, s:I, s:I}}",
				  "cpu-index", (int)i, "qom-path", path,
				  "thread-id", v.thread_id, "props",
				  "socket-id", (int)i, "core-id", 0,
				  "thread-id", 0, "target", "x86_64", "state",
				  v.state, "x-halted", v.halted,
				  "x-wait-for-sipi", v.wait_for_sipi,
				  "instructions", (json_int_t)v.insns, "exits",
				  "total", (json_int_t)v.exits, "io",
				  (json_int_t)v.pio_exits, "mmio",
				  (json_int_t)v.mmio_accesses, "hlt",
				  (json_int_t)v.halts, "page-fault",
				  (json_int_t)v.shadow_faults));
	}
	qmp_reply_return(req, list);
}

static void cmd_query_memslots(struct qmp_request *req, json_t *args,
			       void *opaque)
{
	struct mmud *d = opaque;
	struct vm_memslot_info slots[VM_MAX_MEMSLOTS];
	unsigned int n = vm_memslots(d->vm, slots, VM_MAX_MEMSLOTS);
	json_t *list = json_array();

	(void)args;
	if (n > VM_MAX_MEMSLOTS)
		n = VM_MAX_MEMSLOTS;
	for (unsigned int i = 0; i < n; i++)
		json_array_append_new(
			list, json_pack("{s:i, s:I, s:I, s:b, s:b}", "slot",
					(int)slots[i].slot, "gpa",
					(json_int_t)slots[i].gpa, "size",
					(json_int_t)slots[i].size, "readonly",
					slots[i].readonly, "log-dirty",
					slots[i].log_dirty));
	qmp_reply_return(req, list);
}

static void stats_work(void *arg)
{
	struct job *j = arg;
	struct vm *vm = j->d->vm;
	struct mmu_stats st;
	json_t *vcpus = json_array();

	/* mmu_stats_get takes mmu_lock, which a long zap holds. */
	mmu_stats_get(vm_mmu(vm), &st);
	for (unsigned int i = 0; i < vm_nr_vcpus(vm); i++) {
		struct vm_vcpu_info v;

		vm_vcpu_info(vm, i, &v);
		json_array_append_new(
			vcpus,
			json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
				  "s:I, s:I}",
				  "cpu-index", (int)i, "instructions",
				  (json_int_t)v.insns, "exits",
				  (json_int_t)v.exits, "pf_taken",
				  (json_int_t)v.shadow_faults, "pf_guest",
				  (json_int_t)v.guest_pf_injected, "io_exits",
				  (json_int_t)v.pio_exits, "mmio_exits",
				  (json_int_t)v.mmio_accesses, "halt_exits",
				  (json_int_t)v.halts, "mmu_pte_write",
				  (json_int_t)v.emulated_writes, "requests",
				  (json_int_t)v.requests));
	}
	/* KVM's names where the meaning is KVM's; ours otherwise. */
	j->ret = json_pack(
		"{s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
		"s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:o}",
		"vm", "shadow_pages", (json_int_t)st.pages, "pages_4k",
		(json_int_t)st.sptes, "pf_fixed", (json_int_t)st.faults_fixed,
		"pf_guest", (json_int_t)st.faults_guest_pf,
		"pf_mmio_spte_created", (json_int_t)st.faults_mmio,
		"pf_emulate", (json_int_t)st.faults_emulate, "pf_retry",
		(json_int_t)st.retries, "mmu_shadow_zapped",
		(json_int_t)st.zapped_pages, "sptes_zapped",
		(json_int_t)st.zapped_sptes, "remote_tlb_flush",
		(json_int_t)st.flushes, "write_protects",
		(json_int_t)st.write_protects, "mmu_pte_write",
		(json_int_t)st.emulated_writes, "mmu_unsync",
		(json_int_t)st.unsyncs, "mmu_sync", (json_int_t)st.syncs,
		"pf_write_tracked", (json_int_t)st.tracked_write_faults,
		"unsync_refused", (json_int_t)st.unsync_refused, "mmu_flooded",
		(json_int_t)st.flooded_pages, "mmu_unprotect",
		(json_int_t)st.unprotects, "vcpus", vcpus);
	/* The dirty ring's (docs/MMU.md, "The dirty ring"). */
	if (j->ret) {
		json_t *o = json_object_get(j->ret, "vm");

		json_object_set_new(
			o, "dirty_ring_size",
			json_integer(mmu_dirty_ring_size(vm_mmu(vm))));
		json_object_set_new(o, "dirty_ring_pushes",
				    json_integer((json_int_t)st.ring_pushes));
		json_object_set_new(
			o, "dirty_ring_full_exits",
			json_integer((json_int_t)st.ring_full_exits));
		json_object_set_new(o, "dirty_ring_resets",
				    json_integer((json_int_t)st.ring_resets));
		json_object_set_new(
			o, "dirty_ring_overflows",
			json_integer((json_int_t)st.ring_overflows));
	}
}

static void return_done(void *arg)
{
	struct job *j = arg;

	if (j->ret)
		qmp_reply_return(j->req, j->ret);
	else
		qmp_reply_error(j->req, QMP_ERROR_GENERIC, "Out of memory");
	free(j);
}

static void cmd_query_mmu_stats(struct qmp_request *req, json_t *args,
				void *opaque)
{
	(void)args;
	submit(opaque, req, stats_work, return_done, false, NULL);
}

/*
 * One part of the live audit per job (docs/MMU.md, "The live audit"): the
 * structural part (j->flag clear), then one batch per job, each queued
 * behind what other commands submitted meanwhile, so they run between
 * batches instead of after the whole audit.
 */
static void audit_work(void *arg)
{
	struct job *j = arg;

	if (!j->flag)
		j->r = vm_audit_begin(j->d->vm, 0, j->msg, sizeof(j->msg));
	else
		j->r = vm_audit_step(j->d->vm, j->msg, sizeof(j->msg));
	j->flag = true;
}

static void audit_done(void *arg)
{
	struct job *j = arg;

	/* Not once shutting down: the worker may be gone by then. */
	if (j->r > 0 && !j->d->shutting_down &&
	    mmud_worker_submit(j->d->worker, audit_work, audit_done, j) == 0)
		return;
	if (j->r > 0)
		qmp_reply_error(j->req, QMP_ERROR_GENERIC, "%s",
				j->d->shutting_down ?
					"The VM is shutting down" :
					"Out of memory");
	else if (j->r < 0)
		qmp_reply_error(j->req, QMP_ERROR_GENERIC,
				"MMU audit failed: %s", j->msg);
	else
		qmp_reply_ok(j->req);
	free(j);
}

static void cmd_mmu_audit(struct qmp_request *req, json_t *args, void *opaque)
{
	(void)args;
	submit(opaque, req, audit_work, audit_done, false, NULL);
}

/* ---- setup ---------------------------------------------------------------- */

static const struct {
	const char *name;
	qmp_handler_fn *fn;
} commands[] = {
	{ "query-name", cmd_query_name },
	{ "query-target", cmd_query_target },
	{ "query-kvm", cmd_query_kvm },
	{ "query-memory-size-summary", cmd_query_memory_size_summary },
	{ "query-status", cmd_query_status },
	{ "stop", cmd_stop },
	{ "cont", cmd_cont },
	{ "system_reset", cmd_system_reset },
	{ "quit", cmd_quit },
	{ "query-cpus-fast", cmd_query_cpus_fast },
	{ "x-query-memslots", cmd_query_memslots },
	{ "x-query-mmu-stats", cmd_query_mmu_stats },
	{ "x-mmu-audit", cmd_mmu_audit },
};

struct mmud *mmud_new(struct event_base *base, struct vm *vm,
		      struct qmp_server *qmp, struct mmud_worker *worker,
		      const struct mmud_config *cfg)
{
	struct mmud *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->base = base;
	d->vm = vm;
	d->qmp = qmp;
	d->worker = worker;
	d->cfg = cfg;
	d->panic_pause = cfg->panic == MMUD_PANIC_PAUSE ||
			 (cfg->panic == MMUD_PANIC_DEFAULT && qmp);
	d->state = cfg->paused ? RS_PRELAUNCH : RS_RUNNING;
	if (cfg->incoming) {
		d->state = RS_INMIGRATE;
		d->autostart = !cfg->paused;
	}
	for (size_t i = 0; qmp && i < ARRAY_SIZE(commands); i++) {
		if (qmp_server_register(qmp, commands[i].name, NULL,
					commands[i].fn, d) < 0) {
			free(d);
			return NULL;
		}
	}
	return d;
}

void mmud_start(struct mmud *d)
{
	set_state(d, d->state);
}

/* ---- migration's run states (docs/MIGRATION.md, "The daemon's part") --- */

/* ---- block I/O errors with werror/rerror=stop ----------------------------- */

static void io_error_stop_done(void *arg)
{
	struct job *j = arg;

	emit(j->d, "STOP", NULL);
	free(j);
}

void mmud_io_error_stop(struct mmud *d)
{
	/* QEMU: only a running VM stops (already paused, it stays in its
	 * state; the kept request waits for cont all the same). */
	if (d->state != RS_RUNNING || d->shutting_down)
		return;
	if (submit(d, NULL, pause_work, io_error_stop_done, false, NULL))
		set_state(d, RS_IO_ERROR);
}

bool mmud_is_inmigrate(const struct mmud *d)
{
	return d->state == RS_INMIGRATE && !d->shutting_down;
}

bool mmud_migration_can_start(const struct mmud *d, char *err, size_t errlen)
{
	if (d->shutting_down || needs_reset(d) || d->state == RS_INMIGRATE ||
	    d->state == RS_FINISH_MIGRATE) {
		snprintf(err, errlen, "The VM is %s: it cannot migrate",
			 d->shutting_down ? "shutting down" :
					    runstate_names[d->state]);
		return false;
	}
	return true;
}

/* The run states a stream carries (docs/MIGRATION.md, "run state"):
 * every one but inmigrate and finish-migrate, which a source's
 * switchover never begins in. */
static const struct {
	enum runstate rs;
	enum migrate_runstate mig;
} carried[] = {
	{ RS_RUNNING, MIGRATE_RS_RUNNING },
	{ RS_PAUSED, MIGRATE_RS_PAUSED },
	{ RS_IO_ERROR, MIGRATE_RS_IO_ERROR },
	{ RS_PRELAUNCH, MIGRATE_RS_PRELAUNCH },
	{ RS_POSTMIGRATE, MIGRATE_RS_POSTMIGRATE },
	{ RS_SHUTDOWN, MIGRATE_RS_SHUTDOWN },
	{ RS_GUEST_PANICKED, MIGRATE_RS_GUEST_PANICKED },
	{ RS_INTERNAL_ERROR, MIGRATE_RS_INTERNAL_ERROR },
};

int mmud_migration_switchover(struct mmud *d)
{
	bool ran = d->state == RS_RUNNING;
	enum migrate_runstate mig = MIGRATE_RS_PAUSED;

	for (size_t i = 0; i < ARRAY_SIZE(carried); i++)
		if (carried[i].rs == d->state)
			mig = carried[i].mig;
	d->pre_switchover = d->state;
	d->autostart = ran;
	set_state(d, RS_FINISH_MIGRATE);
	/* QEMU's order: STOP as the VM stops for the last pass. */
	if (ran)
		emit(d, "STOP", NULL);
	return mig;
}

void mmud_migration_source_end(struct mmud *d, bool completed)
{
	if (d->state != RS_FINISH_MIGRATE || d->shutting_down)
		return;
	if (completed) {
		set_state(d, RS_POSTMIGRATE);
		return;
	}
	/* The migration thread has given back its hold: the vCPUs run
	 * again unless the operator's pause keeps them. */
	if (d->autostart) {
		set_state(d, RS_RUNNING);
		emit(d, "RESUME", NULL);
	} else {
		/* Stopped since the switchover began: paused; stopped
		 * before (paused, io-error, prelaunch...): as it was. */
		set_state(d, d->pre_switchover == RS_RUNNING ?
				     RS_PAUSED :
				     d->pre_switchover);
		if (!submit(d, NULL, pause_work, free, false, NULL))
			fprintf(stderr, "<3>mmud: cannot keep the VM paused\n");
	}
}

bool mmud_incoming_end(struct mmud *d, bool loaded, int src_state)
{
	if (d->shutting_down)
		return false;
	if (!loaded) {
		shutdown_vm(d, NULL, false, "host-error", MMUD_EXIT_MIGRATION);
		return false;
	}
	/* QEMU's global state: a source that did not run leaves its
	 * state here (io-error, paused...), whatever autostart says. */
	if (src_state != MIGRATE_RS_RUNNING) {
		for (size_t i = 0; i < ARRAY_SIZE(carried); i++)
			if ((int)carried[i].mig == src_state)
				set_state(d, carried[i].rs);
		return false;
	}
	if (!d->autostart) {
		set_state(d, RS_PAUSED);
		return false;
	}
	if (!submit(d, NULL, resume_work, free, false, NULL))
		return false;
	set_state(d, RS_RUNNING);
	emit(d, "RESUME", NULL);
	return true;
}

int mmud_exit_status(const struct mmud *d)
{
	return d->exit_status;
}

void mmud_free(struct mmud *d)
{
	free(d);
}
