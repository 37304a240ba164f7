/*
 * The dirty ring's QMP commands (docs/QMP.md, "x-dirty-ring-harvest /
 * x-dirty-ring-reset (daemon)"): KVM's harvest and KVM_RESET_DIRTY_RINGS for a VM
 * started with --dirty-ring N (docs/MMU.md, "The dirty ring"). Both run
 * on the worker, since they take slots_lock and the reset mmu_lock and a
 * flush; the reply is built there and sent from the loop. A harvest is
 * chunked: at most MAX_ENTRIES entries a reply, so a reply stays far
 * below 64 KiB, and "more" says whether to ask again.
 *
 * And the daemon's reaper: while some slot logs, a loop timer every
 * REAP_MS has the worker drain the rings into the bitmaps once one is
 * half way to soft-full, as QEMU's reaper does, so that a VM whose
 * dirty log only the bitmap readers read (x-dirty-log-harvest, the
 * migration between its passes) is never held long. From the first
 * x-dirty-ring-harvest on, the rings are the operator's and the reaper
 * stops: a vCPU at soft-full then waits for x-dirty-ring-reset, as a KVM
 * vCPU waits for KVM_RESET_DIRTY_RINGS.
 */
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "guestmem.h"
#include "mmu.h"
#include "mmud.h"
#include "rpc.h"
#include "vm.h"

/* 2048 entries of at most "[511, 268435455], " (18 bytes), one object
 * per vCPU: under 40 KiB. */
#define MAX_ENTRIES 2048
#define REAP_MS 5

struct ring_cmds;
static void harvest_done(struct ring_cmds *c, bool ok);

struct ring_job {
	struct qmp_request *req;
	struct vm *vm;
	struct ring_cmds *cmds; /* a harvest's: done() settles the claim */
	bool reset;
	unsigned max;
	json_t *ret;
	char err[160];
};

static void harvest(struct ring_job *j)
{
	struct mmu *mmu = vm_mmu(j->vm);
	struct mmu_dirty_entry *out = calloc(j->max, sizeof(*out));
	json_t *vcpus = json_array();
	unsigned left = j->max, total = 0;

	if (!out || !vcpus) {
		snprintf(j->err, sizeof(j->err), "out of memory");
		goto out;
	}
	/*
	 * The migration takes the rings' entries through the bitmap
	 * (docs/MMU.md, "The dirty ring"); an entry taken here would be
	 * lost to it.
	 */
	if (guestmem_has_reader(vm_guestmem(j->vm))) {
		snprintf(j->err, sizeof(j->err),
			 "a migration is reading the dirty log: the dirty "
			 "ring is its own until it ends");
		goto out;
	}
	for (unsigned i = 0; i < vm_nr_vcpus(j->vm) && left; i++) {
		int n = mmu_dirty_ring_harvest(mmu, i, out, left);
		json_t *e = json_array();

		if (n < 0 || !e) {
			json_decref(e);
			snprintf(j->err, sizeof(j->err),
				 "vCPU %u: no dirty ring (%d)", i, n);
			goto out;
		}
		for (int k = 0; k < n; k++)
			json_array_append_new(
				e, json_pack("[I, I]", (json_int_t)out[k].slot,
					     (json_int_t)out[k].offset));
		json_array_append_new(vcpus,
				      json_pack("{s:i, s:o}", "cpu-index",
						(int)i, "entries", e));
		left -= (unsigned)n;
		total += (unsigned)n;
	}
	/* Out of room: some ring may hold more. */
	j->ret = json_pack("{s:o, s:i, s:b}", "vcpus", vcpus, "count",
			   (int)total, "more", left == 0);
	vcpus = NULL;
out:
	json_decref(vcpus);
	free(out);
}

static void work(void *arg)
{
	struct ring_job *j = arg;

	if (j->reset)
		j->ret = json_pack(
			"{s:I}", "reset",
			(json_int_t)mmu_dirty_ring_reset(vm_mmu(j->vm)));
	else
		harvest(j);
}

static void done(void *arg)
{
	struct ring_job *j = arg;

	if (j->cmds)
		harvest_done(j->cmds, j->ret != NULL);
	if (j->ret)
		qmp_reply_return(j->req, j->ret);
	else
		qmp_reply_error(j->req, QMP_ERROR_GENERIC, "%s",
				j->err[0] ? j->err : "out of memory");
	free(j);
}

/* Both commands: refused at once with the ring off. */
static struct ring_job *job_new(struct qmp_request *req, struct vm *vm)
{
	struct ring_job *j;

	if (!mmu_dirty_ring_size(vm_mmu(vm))) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"the dirty ring is off (start mmud with "
				"--dirty-ring N)");
		return NULL;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "out of memory");
		return NULL;
	}
	j->req = req;
	j->vm = vm;
	j->max = MAX_ENTRIES;
	return j;
}

static void submit(struct ring_job *j, struct mmud_worker *worker)
{
	if (mmud_worker_submit(worker, work, done, j) < 0) {
		qmp_reply_error(j->req, QMP_ERROR_GENERIC,
				"The VM is shutting down");
		free(j);
	}
}

struct ring_cmds {
	struct mmud_worker *worker; /* (c) */
	struct vm *vm; /* (c) */
	struct event *timer; /* (c) the reaper's; NULL with the ring off */
	bool claimed; /* (e) no reaper: owned, or a harvest on the worker */
	bool owned; /* (e) an x-dirty-ring-harvest succeeded */
	unsigned harvesting; /* (e) harvests on the worker */
	bool reaping; /* (e) a drain is on the worker */
};

/* Loop thread: a harvest is back. A refused one (a migration reads the
 * dirty log) changes nothing: the rings stay the reaper's unless an
 * earlier harvest made them the operator's. */
static void harvest_done(struct ring_cmds *c, bool ok)
{
	c->harvesting--;
	c->owned |= ok;
	c->claimed = c->owned || c->harvesting;
}

/* The worker: drain the rings if one is half way to soft-full. */
static void reap_work(void *arg)
{
	struct ring_cmds *c = arg;
	struct mmu *mmu = vm_mmu(c->vm);
	uint32_t soft = mmu_dirty_ring_size(mmu) - MMU_DIRTY_RING_RESERVE;

	for (unsigned i = 0; i < vm_nr_vcpus(c->vm); i++) {
		struct mmu_dirty_ring_stats st = { 0 };

		if (!mmu_dirty_ring_stats(mmu, i, &st) && st.used >= soft / 2) {
			mmu_dirty_ring_to_bitmap(mmu);
			return;
		}
	}
}

static void reap_done(void *arg)
{
	struct ring_cmds *c = arg;

	c->reaping = false;
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ring_cmds *c = arg;
	struct vm_memslot_info info[VM_MAX_MEMSLOTS];
	unsigned n;
	bool logs = false;

	(void)fd;
	(void)what;
	if (c->claimed || c->reaping)
		return;
	n = vm_memslots(c->vm, info, VM_MAX_MEMSLOTS);
	for (unsigned i = 0; i < n && i < VM_MAX_MEMSLOTS; i++)
		logs |= info[i].log_dirty;
	if (logs && !mmud_worker_submit(c->worker, reap_work, reap_done, c))
		c->reaping = true;
}

static void cmd_harvest(struct qmp_request *req, json_t *args, void *opaque)
{
	struct ring_cmds *c = opaque;
	json_t *jmax = json_object_get(args, "max-entries");
	uint64_t max = MAX_ENTRIES;
	struct ring_job *j;

	if (jmax && (!qmp_json_u64(jmax, &max) || !max || max > MAX_ENTRIES)) {
		qmp_reply_invalid_value(req, "max-entries",
					"an integer from 1 to 2048");
		return;
	}
	j = job_new(req, c->vm);
	if (!j)
		return;
	/* No reaper while it is on the worker; the rings are the
	 * operator's from then on if it succeeded (harvest_done()). */
	c->claimed = true;
	c->harvesting++;
	j->cmds = c;
	j->max = (unsigned)max;
	submit(j, c->worker);
}

static void cmd_reset(struct qmp_request *req, json_t *args, void *opaque)
{
	struct ring_cmds *c = opaque;
	struct ring_job *j = job_new(req, c->vm);

	(void)args;
	if (!j)
		return;
	j->reset = true;
	submit(j, c->worker);
}

static const struct qmp_arg harvest_args[] = {
	{ "max-entries", QMP_ARG_INT, true },
	QMP_ARGS_END,
};

static const struct qmp_arg reset_args[] = {
	QMP_ARGS_END,
};

struct ring_cmds *mmud_dirtyring_new(struct event_base *base,
				     struct qmp_server *qmp,
				     struct mmud_worker *worker, struct vm *vm)
{
	struct ring_cmds *c = calloc(1, sizeof(*c));
	struct timeval tv = { 0, REAP_MS * 1000 };

	if (!c)
		return NULL;
	c->worker = worker;
	c->vm = vm;
	if (mmu_dirty_ring_size(vm_mmu(vm))) {
		c->timer = event_new(base, -1, EV_PERSIST, reap_cb, c);
		if (!c->timer || event_add(c->timer, &tv) < 0) {
			if (c->timer)
				event_free(c->timer);
			free(c);
			return NULL;
		}
	}
	if (qmp_server_register(qmp, "x-dirty-ring-harvest", harvest_args,
				cmd_harvest, c) < 0 ||
	    qmp_server_register(qmp, "x-dirty-ring-reset", reset_args,
				cmd_reset, c) < 0) {
		if (c->timer)
			event_free(c->timer);
		free(c);
		return NULL;
	}
	return c;
}

void mmud_dirtyring_free(struct ring_cmds *c)
{
	if (c && c->timer)
		event_free(c->timer);
	free(c);
}
