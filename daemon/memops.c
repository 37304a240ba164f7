/*
 * QMP commands that change guest memory while the vCPUs run:
 * x-memslot-add/-remove, x-mmu-zap-all, x-dirty-log-start/-stop/-harvest,
 * x-dirty-log-clear (manual protection) and the X_MEMSLOT_CHANGED event. Argument values are checked here (rpc
 * has already checked names and types); the work runs on the daemon's
 * worker thread, which may wait for vCPUs (grace periods, flushes with
 * wait), and the reply goes out from the loop thread when it is done, so
 * no command blocks the loop. core/guestmem does the memory itself.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guestmem.h"
#include "memops_args.h"
#include "mmu.h"
#include "mmud.h"
#include "rpc.h"
#include "vm.h"

/*
 * The largest bitmap one harvest reply carries: its base64 and the
 * reply's frame stay under QMP_SMALL_REPLY (rpc.h), the read limit of
 * QEMU's asyncio client. 48960 bytes of bitmap make 65280 of base64;
 * 256 bytes are left for the members around it and a short id. A
 * multiple of 64, so ranges follow each other on whole words.
 */
#define HARVEST_MAX_PAGES ((QMP_SMALL_REPLY - 256) / 4 * 3 * 8)
_Static_assert(HARVEST_MAX_PAGES % 64 == 0, "whole words per harvest");

enum op {
	OP_ADD,
	OP_REMOVE,
	OP_ZAP,
	OP_LOG_START,
	OP_LOG_STOP,
	OP_HARVEST,
	OP_CLEAR,
};

struct memops {
	struct qmp_server *qmp; /* (c) */
	struct mmud_worker *worker; /* (c) */
	struct vm *vm; /* (c) */
	struct guestmem *gm; /* (c) */
	struct dirtyrate *dr; /* (c) calc-dirty-rate, query-dirty-rate */
	/* Slots whose log x-dirty-log-start started with manual-protect:
	 * their harvests only clear, x-dirty-log-clear protects. Touched
	 * by the worker thread only, in job order. */
	bool manual[MEMSLOT_MAX_ID + 1];
};

/* One command's work: inputs set before submission, outputs by the
 * worker, read by the loop thread after the worker's hand-back. */
struct memop_job {
	struct memops *m;
	struct qmp_request *req;
	enum op op;
	uint64_t gpa, size;
	uint32_t slot;
	bool readonly, log_dirty, flag;
	bool ranged; /* harvest: first-page or num-pages given */
	uint64_t first, num; /* harvest, clear: the pages reported */
	int r;
	char err[256];
	uint64_t *bitmap;
	size_t nwords;
	uint64_t count, count2;
};

/*
 * x-dirty-log-harvest: the whole slot, or [first, first + num) of it,
 * alone: the pages outside the range keep their bits and their
 * translations. Every refusal comes before anything is harvested, so
 * nothing is lost.
 */
static void harvest(struct memop_job *j, uint64_t npages)
{
	enum memslot_fetch mode = MEMSLOT_FETCH_PEEK;

	if (!j->ranged) {
		j->first = 0;
		j->num = npages;
		if (npages > HARVEST_MAX_PAGES) {
			j->r = -E2BIG;
			snprintf(j->err, sizeof(j->err),
				 "slot: the dirty bitmap of slot %u (%llu "
				 "pages) makes a reply of about %llu bytes, "
				 "over the %u-byte limit; pass first-page and "
				 "num-pages (at most %u pages per call)",
				 j->slot, (unsigned long long)npages,
				 (unsigned long long)((npages + 7) / 8 + 2) /
						 3 * 4 +
					 64,
				 QMP_SMALL_REPLY, HARVEST_MAX_PAGES);
			return;
		}
	} else {
		if (j->first >= npages) {
			j->r = -EINVAL;
			snprintf(j->err, sizeof(j->err),
				 "first-page: %llu is not below the %llu "
				 "pages of slot %u",
				 (unsigned long long)j->first,
				 (unsigned long long)npages, j->slot);
			return;
		}
		/* The last range of a slot may be shorter than asked. */
		if (j->num > npages - j->first)
			j->num = npages - j->first;
	}
	j->nwords = (j->num + 63) / 64;
	j->bitmap = calloc(j->nwords ? j->nwords : 1, 8);
	if (!j->bitmap) {
		j->r = -ENOMEM;
		snprintf(j->err, sizeof(j->err), "out of memory");
		return;
	}
	if (j->flag)
		mode = j->m->manual[j->slot] ? MEMSLOT_FETCH_CLEAR :
					       MEMSLOT_FETCH_CLEAR_PROTECT;
	j->r = guestmem_harvest_range(j->m->gm, j->slot, mode, j->first, j->num,
				      j->bitmap, &j->count, j->err,
				      sizeof(j->err));
}

/*
 * x-dirty-log-clear: protect the pages of j->bitmap (j->first, j->num)
 * again, on a slot whose log runs with manual-protect.
 */
static void clear(struct memop_job *j, uint64_t npages)
{
	if (!j->m->manual[j->slot]) {
		j->r = -EINVAL;
		snprintf(j->err, sizeof(j->err),
			 "slot: the dirty log of slot %u was not started "
			 "with manual-protect",
			 j->slot);
		return;
	}
	if (j->first >= npages) {
		j->r = -EINVAL;
		snprintf(j->err, sizeof(j->err),
			 "first-page: %llu is not below the %llu pages of "
			 "slot %u",
			 (unsigned long long)j->first,
			 (unsigned long long)npages, j->slot);
		return;
	}
	if (j->num > npages - j->first) {
		j->r = -EINVAL;
		snprintf(j->err, sizeof(j->err),
			 "num-pages: pages %llu to %llu are not all in the "
			 "%llu pages of slot %u",
			 (unsigned long long)j->first,
			 (unsigned long long)(j->first + j->num - 1),
			 (unsigned long long)npages, j->slot);
		return;
	}
	j->r = memslot_dirty_log_clear(vm_mmu(j->m->vm), j->slot, j->first,
				       j->num, j->bitmap, &j->count, j->err,
				       sizeof(j->err));
}

static void work(void *arg)
{
	struct memop_job *j = arg;
	struct guestmem *gm = j->m->gm;
	struct mmu_stats before, after;
	int64_t npages;

	switch (j->op) {
	case OP_ADD:
		j->r = guestmem_add(gm, j->gpa, j->size, j->readonly,
				    j->log_dirty, &j->slot, j->err,
				    sizeof(j->err));
		if (!j->r && j->slot <= MEMSLOT_MAX_ID)
			j->m->manual[j->slot] = false;
		break;
	case OP_REMOVE:
		j->r = guestmem_remove(gm, j->slot, j->err, sizeof(j->err));
		if (!j->r)
			j->m->manual[j->slot] = false;
		break;
	case OP_LOG_START:
	case OP_LOG_STOP:
		j->r = guestmem_set_dirty_log(gm, j->slot,
					      j->op == OP_LOG_START, j->err,
					      sizeof(j->err));
		if (!j->r)
			j->m->manual[j->slot] = j->op == OP_LOG_START &&
						j->flag;
		break;
	case OP_ZAP:
		mmu_stats_get(vm_mmu(j->m->vm), &before);
		if (j->flag) {
			mmu_zap_all(vm_mmu(j->m->vm));
		} else {
			/* O(1) for the vCPUs; the obsolete pages are then
			 * freed here, in batches (docs/MMU.md, "Fast zap-all and
			 * obsolete pages"). */
			mmu_zap_all_fast(vm_mmu(j->m->vm));
			mmu_zap_obsolete_pages(vm_mmu(j->m->vm));
		}
		mmu_stats_get(vm_mmu(j->m->vm), &after);
		j->count = j->flag ?
				   after.zapped_pages - before.zapped_pages :
				   after.obsolete_freed - before.obsolete_freed;
		j->count2 = before.pages;
		j->r = 0;
		break;
	case OP_HARVEST:
	case OP_CLEAR:
		npages = guestmem_npages(gm, j->slot);
		if (npages < 0) {
			j->r = (int)npages;
			snprintf(j->err, sizeof(j->err),
				 "slot: %u is not a hot-added memslot",
				 j->slot);
			break;
		}
		if (j->op == OP_HARVEST)
			harvest(j, (uint64_t)npages);
		else
			clear(j, (uint64_t)npages);
		break;
	}
}

static void event(struct memops *m, uint32_t slot, const char *what)
{
	qmp_server_emit_event(m->qmp, "X_MEMSLOT_CHANGED",
			      json_pack("{s:i, s:s}", "slot", (int)slot,
					"action", what));
}

static json_t *harvest_reply(struct memop_job *j)
{
	/* Little-endian words: bit i of byte k is page first + 8k + i
	 * (first is a multiple of 64: whole words). */
	const uint64_t *words = j->bitmap;
	size_t nbytes = (j->num + 7) / 8;
	uint8_t *bytes = malloc(nbytes ? nbytes : 1);
	char *text;
	json_t *ret;

	if (!bytes)
		return NULL;
	for (size_t k = 0; k < nbytes; k++)
		bytes[k] = (uint8_t)(words[k / 8] >> (8 * (k % 8)));
	/* Pages past the range are not reported here. */
	if (j->num % 8)
		bytes[nbytes - 1] &= (uint8_t)((1u << (j->num % 8)) - 1);
	text = mmud_base64_encode(bytes, nbytes);
	free(bytes);
	if (!text)
		return NULL;
	if (j->ranged)
		ret = json_pack("{s:i, s:I, s:I, s:I, s:s}", "slot",
				(int)j->slot, "first-page",
				(json_int_t)j->first, "num-pages",
				(json_int_t)j->num, "dirty-pages",
				(json_int_t)j->count, "bitmap", text);
	else
		ret = json_pack("{s:i, s:I, s:s}", "slot", (int)j->slot,
				"dirty-pages", (json_int_t)j->count, "bitmap",
				text);
	free(text);
	return ret;
}

static void done(void *arg)
{
	struct memop_job *j = arg;
	json_t *ret = NULL;

	if (j->r == -EMFILE || j->r == -ENFILE) {
		/* core/guestmem says which step failed ("size: cannot map");
		 * the reason is the host's, not the argument's. */
		qmp_reply_error(j->req, QMP_ERROR_GENERIC,
				"cannot create the slot's memory: %s (the "
				"daemon is out of file descriptors)",
				strerror(-j->r));
		goto out;
	}
	if (j->r < 0) {
		qmp_reply_error(j->req, QMP_ERROR_GENERIC, "%s", j->err);
		goto out;
	}
	switch (j->op) {
	case OP_ADD:
		qmp_reply_return(j->req,
				 json_pack("{s:i}", "slot", (int)j->slot));
		event(j->m, j->slot, "added");
		break;
	case OP_REMOVE:
		qmp_reply_ok(j->req);
		event(j->m, j->slot, "removed");
		break;
	case OP_LOG_START:
		qmp_reply_ok(j->req);
		event(j->m, j->slot, "dirty-log-started");
		break;
	case OP_LOG_STOP:
		qmp_reply_ok(j->req);
		event(j->m, j->slot, "dirty-log-stopped");
		break;
	case OP_ZAP:
		qmp_reply_return(j->req, json_pack("{s:s, s:I, s:I}", "mode",
						   j->flag ? "slow" : "fast",
						   "shadow-pages",
						   (json_int_t)j->count2,
						   "zapped-pages",
						   (json_int_t)j->count));
		break;
	case OP_CLEAR:
		qmp_reply_return(j->req,
				 json_pack("{s:i, s:I, s:I, s:I}", "slot",
					   (int)j->slot, "first-page",
					   (json_int_t)j->first, "num-pages",
					   (json_int_t)j->num, "cleared-pages",
					   (json_int_t)j->count));
		break;
	case OP_HARVEST:
		ret = harvest_reply(j);
		if (ret)
			qmp_reply_return(j->req, ret);
		else
			qmp_reply_error(j->req, QMP_ERROR_GENERIC,
					"out of memory");
		break;
	}
out:
	free(j->bitmap);
	free(j);
}

/* Reads an optional boolean argument (types are checked by rpc). */
static bool opt_bool(json_t *args, const char *name, bool dflt)
{
	json_t *v = json_object_get(args, name);

	return v ? json_is_true(v) : dflt;
}

/*
 * A non-negative integer argument, up to 2^64 - 1 as QEMU reads them;
 * replies with the field's error when it is negative or above @max.
 */
static bool get_u64(struct qmp_request *req, json_t *args, const char *name,
		    uint64_t max, uint64_t *out)
{
	uint64_t v;

	if (!qmp_json_u64(json_object_get(args, name), &v) || v > max) {
		char what[96];

		snprintf(what, sizeof(what), "a number from 0 to %llu",
			 (unsigned long long)max);
		qmp_reply_invalid_value(req, name, what);
		return false;
	}
	*out = v;
	return true;
}

static void submit(struct memops *m, struct qmp_request *req,
		   struct memop_job *proto)
{
	const char *measuring = mmud_dirtyrate_logs(m->dr);
	struct memop_job *j;
	int r;

	if (measuring &&
	    (proto->op == OP_LOG_START || proto->op == OP_LOG_STOP ||
	     proto->op == OP_HARVEST || proto->op == OP_CLEAR)) {
		free(proto->bitmap);
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"slot: calc-dirty-rate is measuring in %s "
				"mode and owns the dirty logs until "
				"query-dirty-rate says measured",
				measuring);
		return;
	}
	j = malloc(sizeof(*j));

	if (!j) {
		free(proto->bitmap);
		qmp_reply_error(req, QMP_ERROR_GENERIC, "out of memory");
		return;
	}
	*j = *proto;
	j->m = m;
	j->req = req;
	r = mmud_worker_submit(m->worker, work, done, j);
	if (r < 0) {
		free(j->bitmap);
		free(j);
		qmp_reply_error(req, QMP_ERROR_GENERIC, "%s",
				r == -ESHUTDOWN ? "The VM is shutting down" :
						  "out of memory");
	}
}

static void cmd_add(struct qmp_request *req, json_t *args, void *opaque)
{
	struct memop_job j = { .op = OP_ADD };

	if (!get_u64(req, args, "gpa", ~0ULL >> 1, &j.gpa) ||
	    !get_u64(req, args, "size", ~0ULL >> 1, &j.size))
		return;
	j.readonly = opt_bool(args, "readonly", false);
	j.log_dirty = opt_bool(args, "log-dirty", false);
	submit(opaque, req, &j);
}

static bool get_slot(struct qmp_request *req, json_t *args, uint32_t *slot)
{
	uint64_t v;

	if (!get_u64(req, args, "slot", MEMSLOT_MAX_ID, &v))
		return false;
	*slot = (uint32_t)v;
	return true;
}

static void cmd_remove(struct qmp_request *req, json_t *args, void *opaque)
{
	struct memop_job j = { .op = OP_REMOVE };

	if (get_slot(req, args, &j.slot))
		submit(opaque, req, &j);
}

static void cmd_log_start(struct qmp_request *req, json_t *args, void *opaque)
{
	struct memop_job j = { .op = OP_LOG_START };

	j.flag = opt_bool(args, "manual-protect", false);
	if (get_slot(req, args, &j.slot))
		submit(opaque, req, &j);
}

static void cmd_log_stop(struct qmp_request *req, json_t *args, void *opaque)
{
	struct memop_job j = { .op = OP_LOG_STOP };

	if (get_slot(req, args, &j.slot))
		submit(opaque, req, &j);
}

static void cmd_harvest(struct qmp_request *req, json_t *args, void *opaque)
{
	struct memop_job j = { .op = OP_HARVEST };

	if (!get_slot(req, args, &j.slot))
		return;
	j.flag = opt_bool(args, "clear", true);
	j.num = HARVEST_MAX_PAGES;
	if (json_object_get(args, "first-page")) {
		j.ranged = true;
		if (!get_u64(req, args, "first-page", ~0ULL >> 1, &j.first))
			return;
		if (j.first % 64) {
			qmp_reply_invalid_value(req, "first-page",
						"a multiple of 64");
			return;
		}
	}
	if (json_object_get(args, "num-pages")) {
		j.ranged = true;
		if (!get_u64(req, args, "num-pages", HARVEST_MAX_PAGES, &j.num))
			return;
		if (j.num == 0) {
			char what[64];

			snprintf(what, sizeof(what), "a number from 1 to %u",
				 HARVEST_MAX_PAGES);
			qmp_reply_invalid_value(req, "num-pages", what);
			return;
		}
	}
	submit(opaque, req, &j);
}

/*
 * x-dirty-log-clear {slot, first-page, num-pages, bitmap}: the bitmap is
 * base64 of (num-pages + 7) / 8 bytes laid out as a harvest's.
 */
static void cmd_clear(struct qmp_request *req, json_t *args, void *opaque)
{
	struct memop_job j = { .op = OP_CLEAR };
	const char *text = json_string_value(json_object_get(args, "bitmap"));
	uint8_t *bytes = NULL;
	size_t len = 0;
	char what[96];

	if (!get_slot(req, args, &j.slot) ||
	    !get_u64(req, args, "first-page", ~0ULL >> 1, &j.first))
		return;
	if (j.first % 64) {
		qmp_reply_invalid_value(req, "first-page", "a multiple of 64");
		return;
	}
	snprintf(what, sizeof(what), "a number from 1 to %u",
		 HARVEST_MAX_PAGES);
	if (!get_u64(req, args, "num-pages", HARVEST_MAX_PAGES, &j.num))
		return;
	if (j.num == 0) {
		qmp_reply_invalid_value(req, "num-pages", what);
		return;
	}
	if (mmud_base64_decode(text, strlen(text), &bytes, &len) < 0 ||
	    len != (j.num + 7) / 8) {
		snprintf(what, sizeof(what),
			 "base64 of %llu bytes (one bit per page)",
			 (unsigned long long)(j.num + 7) / 8);
		qmp_reply_invalid_value(req, "bitmap", what);
		free(bytes);
		return;
	}
	j.nwords = (j.num + 63) / 64;
	j.bitmap = calloc(j.nwords, 8);
	if (!j.bitmap) {
		free(bytes);
		qmp_reply_error(req, QMP_ERROR_GENERIC, "out of memory");
		return;
	}
	for (size_t k = 0; k < len; k++)
		j.bitmap[k / 8] |= (uint64_t)bytes[k] << (8 * (k % 8));
	free(bytes);
	submit(opaque, req, &j);
}

static void cmd_zap_all(struct qmp_request *req, json_t *args, void *opaque)
{
	struct memop_job j = { .op = OP_ZAP };

	/* Absent, the VM's zap-all option decides (docs/MMU.md,
	 * "Switches"). */
	j.flag = opt_bool(args, "slow",
			  mmu_option_get(vm_mmu(((struct memops *)opaque)->vm),
					 MMU_OPT_ZAP_ALL) == MMU_ZAP_ALL_SLOW);
	submit(opaque, req, &j);
}

struct memops *mmud_memops_new(struct event_base *base, struct qmp_server *qmp,
			       struct mmud_worker *worker, struct vm *vm)
{
	static const struct {
		const char *name;
		const struct qmp_arg *args;
		qmp_handler_fn *fn;
	} cmds[] = {
		{ "x-memslot-add", mmud_memslot_add_args, cmd_add },
		{ "x-memslot-remove", mmud_slot_args, cmd_remove },
		{ "x-dirty-log-start", mmud_log_start_args, cmd_log_start },
		{ "x-dirty-log-stop", mmud_slot_args, cmd_log_stop },
		{ "x-dirty-log-harvest", mmud_harvest_args, cmd_harvest },
		{ "x-dirty-log-clear", mmud_clear_args, cmd_clear },
		{ "x-mmu-zap-all", mmud_zap_all_args, cmd_zap_all },
	};
	struct memops *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->qmp = qmp;
	m->worker = worker;
	m->vm = vm;
	m->gm = vm_guestmem(vm);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (qmp_server_register(qmp, cmds[i].name, cmds[i].args,
					cmds[i].fn, m) < 0) {
			free(m);
			return NULL;
		}
	m->dr = mmud_dirtyrate_new(base, qmp, worker, vm);
	if (!m->dr) {
		free(m);
		return NULL;
	}
	return m;
}

void mmud_memops_free(struct memops *m)
{
	if (m)
		mmud_dirtyrate_free(m->dr);
	free(m);
}
