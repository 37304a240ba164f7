/*
 * QEMU's calc-dirty-rate and query-dirty-rate (docs/QMP.md,
 * "calc-dirty-rate / query-dirty-rate (QEMU)"): how fast the guest dirties its
 * memory, in MiB/s, measured over calc-time in one of two modes.
 *
 * - page-sampling: hash sample-pages random pages per GiB of every
 *   memslot, wait, hash them again; the share that changed, times the
 *   memory sampled, over the time between the two passes.
 * - dirty-bitmap: start dirty logging on every slot, wait, count the
 *   pages logged, stop it again.
 * - dirty-ring (a VM started with --dirty-ring N): start dirty logging on
 *   every slot, count what each vCPU pushes to its ring over the wait
 *   (docs/MMU.md, "The dirty ring"), stop it again: a rate per vCPU, and
 *   their sum. During the wait the worker looks at the rings every
 *   REAP_MS and drains them into the bitmaps once one is half way to
 *   soft-full, as QEMU's reaper drains them at a ring-full exit, so a
 *   vCPU is seldom held.
 *
 * The passes that touch guest memory or the MMU run on the worker (so no
 * slot is removed under a pass); the wait is a libevent timer on the
 * loop, which owns the state (tag (e)). Without a ring, dirty-ring mode
 * is refused with QEMU's error.
 */
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guestmem.h"
#include "mmu.h"
#include "mmud.h"
#include "rpc.h"
#include "vm.h"

#define MIN_CALC_MS 50
#define MAX_CALC_MS 60000
#define MIN_SAMPLES 128
#define MAX_SAMPLES 4096
#define DEFAULT_SAMPLES 512
#define MAX_SAMPLED 65536 /* pages hashed in all, whatever the RAM */
#define REAP_MS 2 /* with a dirty ring: how often rings are looked at */

enum dr_status { DR_UNSTARTED, DR_MEASURING, DR_MEASURED };
enum dr_mode { DR_PAGE_SAMPLING, DR_DIRTY_RING, DR_DIRTY_BITMAP };

static const char *const status_names[] = { "unstarted", "measuring",
					    "measured" };
static const char *const mode_names[] = { "page-sampling", "dirty-ring",
					  "dirty-bitmap" };

struct sample {
	uint32_t slot;
	gpa_t gpa;
	uint64_t hash;
};

/* One measurement's work for the worker: inputs set on the loop, outputs
 * read on the loop after the worker's hand-back. */
struct dr_job {
	struct dirtyrate *dr;
	bool second; /* the pass after the wait */
	bool tick; /* dirty-ring mode: a drain during the wait */
	enum dr_mode mode;
	unsigned sample_pages;
	/* page-sampling: the pages and their hashes at the first pass */
	struct sample *samples;
	size_t nsamples;
	/* dirty-bitmap: the slots whose log the first pass started */
	uint32_t logged[VM_MAX_MEMSLOTS];
	unsigned nlogged;
	/* dirty-ring: each vCPU's pushes at the first pass, then how many
	 * since at the second */
	uint64_t pushes[VM_MAX_VCPUS];
	unsigned nvcpus;
	uint64_t t0_ns; /* end of the first pass */
	uint64_t t1_ns; /* start of the second */
	uint64_t dirty_bytes; /* measured or extrapolated */
	int r;
	char err[160];
};

struct dirtyrate {
	struct qmp_server *qmp; /* (c) */
	struct mmud_worker *worker; /* (c) */
	struct vm *vm; /* (c) */
	struct event *timer; /* (e) the wait between the passes */
	struct dr_job *job; /* (e) the measurement in progress, or NULL */
	/* (e) what query-dirty-rate reports */
	enum dr_status status;
	enum dr_mode mode;
	int64_t start_time; /* CLOCK_REALTIME seconds */
	uint64_t calc_ms;
	bool unit_ms; /* calc-time was given in milliseconds */
	unsigned sample_pages;
	int64_t rate; /* MiB/s, once measured */
	/* dirty-ring mode: each vCPU's, MiB/s, once measured */
	int64_t vrates[VM_MAX_VCPUS];
	unsigned nvcpus;
	struct ring_cmds *ring; /* (c) x-dirty-ring-harvest, -reset */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * A page's contents hashed with relaxed atomic loads: vCPUs store to it
 * meanwhile, one atomic store per access (docs/ARCHITECTURE.md, "Guest
 * memory is shared memory").
 */
static uint64_t page_hash(hva_t hva)
{
	const _Atomic uint64_t *p = (const _Atomic uint64_t *)(uintptr_t)hva;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (unsigned i = 0; i < 4096 / 8; i++) {
		h ^= atomic_load_explicit(&p[i], memory_order_relaxed);
		h *= 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The slot's host address of gpa, if slot still maps it; else 0. */
static hva_t slot_hva(const struct vm_memslot_info *info, unsigned n,
		      uint32_t slot, gpa_t gpa)
{
	for (unsigned i = 0; i < n; i++)
		if (info[i].slot == slot && gpa >= info[i].gpa &&
		    gpa - info[i].gpa < info[i].size)
			return info[i].hva + (gpa - info[i].gpa);
	return 0;
}

static void sample_first(struct dr_job *j, struct vm_memslot_info *info,
			 unsigned n)
{
	uint64_t seed = now_ns() | 1, want = 0;

	for (unsigned i = 0; i < n; i++)
		want += (info[i].size * j->sample_pages + (1ULL << 30) - 1) >>
			30;
	if (want > MAX_SAMPLED)
		want = MAX_SAMPLED;
	j->samples = calloc(want ? want : 1, sizeof(*j->samples));
	if (!j->samples) {
		j->r = -ENOMEM;
		snprintf(j->err, sizeof(j->err), "out of memory");
		return;
	}
	for (unsigned i = 0; i < n && j->nsamples < want; i++) {
		uint64_t pages = info[i].size >> 12,
			 k = (info[i].size * j->sample_pages + (1ULL << 30) -
			      1) >>
			     30;

		for (; k && j->nsamples < want; k--) {
			struct sample *s = &j->samples[j->nsamples++];
			uint64_t p = xorshift(&seed) % pages;

			s->slot = info[i].slot;
			s->gpa = info[i].gpa + (p << 12);
			s->hash = page_hash(info[i].hva + (p << 12));
		}
	}
}

static void sample_second(struct dr_job *j, struct vm_memslot_info *info,
			  unsigned n)
{
	uint64_t seen = 0, changed = 0, bytes = 0;

	for (size_t k = 0; k < j->nsamples; k++) {
		hva_t hva = slot_hva(info, n, j->samples[k].slot,
				     j->samples[k].gpa);

		/* A slot removed during the wait takes its samples. */
		if (!hva)
			continue;
		seen++;
		changed += page_hash(hva) != j->samples[k].hash;
	}
	for (unsigned i = 0; i < n; i++)
		for (size_t k = 0; k < j->nsamples; k++)
			if (j->samples[k].slot == info[i].slot) {
				bytes += info[i].size;
				break;
			}
	j->dirty_bytes = seen ? (uint64_t)((double)bytes * (double)changed /
					   (double)seen) :
				0;
}

static void bitmap_first(struct dr_job *j, struct vm_memslot_info *info,
			 unsigned n)
{
	struct guestmem *gm = vm_guestmem(j->dr->vm);

	for (unsigned i = 0; i < n; i++) {
		if (info[i].log_dirty)
			continue;
		j->r = guestmem_set_dirty_log(gm, info[i].slot, true, j->err,
					      sizeof(j->err));
		if (j->r < 0)
			return;
		j->logged[j->nlogged++] = info[i].slot;
	}
}

static void bitmap_second(struct dr_job *j)
{
	struct guestmem *gm = vm_guestmem(j->dr->vm);
	char err[160];

	for (unsigned i = 0; i < j->nlogged; i++) {
		int64_t pages = guestmem_npages(gm, j->logged[i]);
		uint64_t *bits, n = 0;

		if (pages <= 0)
			continue;
		bits = calloc(((uint64_t)pages + 63) / 64, 8);
		if (bits && !guestmem_harvest_range(gm, j->logged[i],
						    MEMSLOT_FETCH_PEEK, 0,
						    (uint64_t)pages, bits, &n,
						    err, sizeof(err)))
			j->dirty_bytes += n << 12;
		free(bits);
		/* Refused while a migration reads the log: it stays on
		 * for the migration, which needs it. */
		guestmem_set_dirty_log(gm, j->logged[i], false, err,
				       sizeof(err));
	}
	j->nlogged = 0;
}

/* Each vCPU's ring pushes so far into pushes[]; the count of vCPUs. */
static unsigned ring_pushes(struct dr_job *j, uint64_t *pushes)
{
	struct mmu *mmu = vm_mmu(j->dr->vm);
	unsigned n = vm_nr_vcpus(j->dr->vm);

	if (n > VM_MAX_VCPUS)
		n = VM_MAX_VCPUS;
	for (unsigned i = 0; i < n; i++) {
		struct mmu_dirty_ring_stats st = { 0 };

		mmu_dirty_ring_stats(mmu, i, &st);
		pushes[i] = st.pushes;
	}
	return n;
}

/* A drain during the wait: only when some ring is half way to soft-full
 * (QEMU reaps at a ring-full exit), so a page is counted once per
 * protection, as in dirty-bitmap mode, unless a ring fills. */
static void ring_tick(struct dr_job *j)
{
	struct mmu *mmu = vm_mmu(j->dr->vm);
	uint32_t soft = mmu_dirty_ring_size(mmu) - MMU_DIRTY_RING_RESERVE;

	for (unsigned i = 0; i < j->nvcpus; i++) {
		struct mmu_dirty_ring_stats st = { 0 };

		if (!mmu_dirty_ring_stats(mmu, i, &st) && st.used >= soft / 2) {
			mmu_dirty_ring_to_bitmap(mmu);
			return;
		}
	}
}

static void ring_second(struct dr_job *j)
{
	uint64_t now[VM_MAX_VCPUS];

	ring_pushes(j, now);
	for (unsigned i = 0; i < j->nvcpus; i++) {
		j->pushes[i] = now[i] - j->pushes[i];
		j->dirty_bytes += j->pushes[i] << 12;
	}
	/* Stopping the logs drains the rings (memslot_set_flags). */
	for (unsigned i = 0; i < j->nlogged; i++) {
		char err[160];

		guestmem_set_dirty_log(vm_guestmem(j->dr->vm), j->logged[i],
				       false, err, sizeof(err));
	}
	j->nlogged = 0;
}

static void work(void *arg)
{
	struct dr_job *j = arg;
	struct vm_memslot_info info[VM_MAX_MEMSLOTS];
	unsigned n = vm_memslots(j->dr->vm, info, VM_MAX_MEMSLOTS);

	if (n > VM_MAX_MEMSLOTS)
		n = VM_MAX_MEMSLOTS;
	if (j->tick) {
		ring_tick(j);
		return;
	}
	if (j->second)
		j->t1_ns = now_ns();
	if (j->mode == DR_DIRTY_RING) {
		if (j->second) {
			ring_second(j);
		} else {
			bitmap_first(j, info, n);
		}
	} else if (j->mode == DR_PAGE_SAMPLING)
		(j->second ? sample_second : sample_first)(j, info, n);
	else if (j->second)
		bitmap_second(j);
	else
		bitmap_first(j, info, n);
	if (!j->second) {
		j->nvcpus = ring_pushes(j, j->pushes);
		j->t0_ns = now_ns();
	}
}

static void job_free(struct dr_job *j)
{
	free(j->samples);
	free(j);
}

static void finish(struct dirtyrate *dr, struct dr_job *j)
{
	uint64_t ns = j->t1_ns > j->t0_ns ? j->t1_ns - j->t0_ns : 1;

	if (j->r < 0) {
		fprintf(stderr, "<4>mmud: calc-dirty-rate: %s\n", j->err);
		dr->status = DR_UNSTARTED;
	} else {
		/* MiB per second, rounded to the nearest. */
		dr->rate = (int64_t)(((double)j->dirty_bytes / (1 << 20)) *
					     1e9 / (double)ns +
				     0.5);
		dr->nvcpus = j->mode == DR_DIRTY_RING ? j->nvcpus : 0;
		for (unsigned i = 0; i < dr->nvcpus; i++)
			dr->vrates[i] =
				(int64_t)(((double)(j->pushes[i] << 12) /
					   (1 << 20)) *
						  1e9 / (double)ns +
					  0.5);
		dr->status = DR_MEASURED;
	}
	dr->job = NULL;
	job_free(j);
}

static void done(void *arg);

/* With the dirty ring on, a mode that logs drains full rings during the
 * wait (dirty-bitmap too: its count is the bitmap's, which the drain
 * fills). */
static bool drains(const struct dr_job *j)
{
	return j->mode != DR_PAGE_SAMPLING &&
	       mmu_dirty_ring_size(vm_mmu(j->dr->vm));
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dirtyrate *dr = arg;
	struct dr_job *j = dr->job;

	(void)fd;
	(void)what;
	j->tick = drains(j) && now_ns() < j->t0_ns + dr->calc_ms * 1000000ULL;
	j->second = !j->tick;
	if (mmud_worker_submit(dr->worker, work, done, j) < 0) {
		j->r = -ESHUTDOWN;
		snprintf(j->err, sizeof(j->err), "the VM is shutting down");
		finish(dr, j);
	}
}

static void done(void *arg)
{
	struct dr_job *j = arg;
	struct dirtyrate *dr = j->dr;
	struct timeval tv = { (time_t)(dr->calc_ms / 1000),
			      (suseconds_t)(dr->calc_ms % 1000 * 1000) };

	if (j->second || j->r < 0) {
		finish(dr, j);
		return;
	}
	if (drains(j)) {
		uint64_t now = now_ns(),
			 end = j->t0_ns + dr->calc_ms * 1000000ULL,
			 us = end > now ? (end - now) / 1000 : 0;

		if (us > REAP_MS * 1000)
			us = REAP_MS * 1000;
		tv.tv_sec = 0;
		tv.tv_usec = (suseconds_t)us;
	}
	evtimer_add(dr->timer, &tv);
}

/* The modes that start and stop the dirty logs. */
static bool is_measuring_bitmap(const struct dirtyrate *dr)
{
	return dr->status == DR_MEASURING && dr->mode != DR_PAGE_SAMPLING;
}

const char *mmud_dirtyrate_logs(const struct dirtyrate *dr)
{
	return dr && is_measuring_bitmap(dr) ? mode_names[dr->mode] : NULL;
}

static bool parse_mode(const char *s, enum dr_mode *m)
{
	for (unsigned i = 0; i < 3; i++)
		if (!strcmp(s, mode_names[i])) {
			*m = (enum dr_mode)i;
			return true;
		}
	return false;
}

static bool parse_unit(struct qmp_request *req, json_t *args, bool *ms)
{
	const char *u =
		json_string_value(json_object_get(args, "calc-time-unit"));

	*ms = false;
	if (!u || !strcmp(u, "second"))
		return true;
	if (!strcmp(u, "millisecond")) {
		*ms = true;
		return true;
	}
	qmp_reply_invalid_value(req, "calc-time-unit",
				"'second' or 'millisecond'");
	return false;
}

static void cmd_calc(struct qmp_request *req, json_t *args, void *opaque)
{
	struct dirtyrate *dr = opaque;
	struct vm_memslot_info info[VM_MAX_MEMSLOTS];
	json_t *jsp = json_object_get(args, "sample-pages");
	const char *ms = json_string_value(json_object_get(args, "mode"));
	enum dr_mode mode = DR_PAGE_SAMPLING;
	uint64_t t = 0, sp = DEFAULT_SAMPLES, calc_ms;
	struct dr_job *j;
	bool unit_ms;
	unsigned n;

	if (!parse_unit(req, args, &unit_ms))
		return;
	if (!qmp_json_u64(json_object_get(args, "calc-time"), &t) ||
	    t > MAX_CALC_MS) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Calculation time is out of range [%dms, "
				"%dms].",
				MIN_CALC_MS, MAX_CALC_MS);
		return;
	}
	calc_ms = unit_ms ? t : t * 1000;
	if (calc_ms < MIN_CALC_MS || calc_ms > MAX_CALC_MS) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Calculation time is out of range [%dms, "
				"%dms].",
				MIN_CALC_MS, MAX_CALC_MS);
		return;
	}
	if (ms && !parse_mode(ms, &mode)) {
		qmp_reply_invalid_value(req, "mode",
					"'page-sampling', 'dirty-ring' or "
					"'dirty-bitmap'");
		return;
	}
	if (jsp) {
		if (mode != DR_PAGE_SAMPLING) {
			qmp_reply_error(req, QMP_ERROR_GENERIC,
					"sample-pages is used only in "
					"page-sampling mode");
			return;
		}
		if (!qmp_json_u64(jsp, &sp) || sp < MIN_SAMPLES ||
		    sp > MAX_SAMPLES) {
			qmp_reply_error(req, QMP_ERROR_GENERIC,
					"sample-pages is out of range[%d, %d].",
					MIN_SAMPLES, MAX_SAMPLES);
			return;
		}
	}
	if (dr->status == DR_MEASURING) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"the dirty rate is already being measured.");
		return;
	}
	if (mode == DR_DIRTY_RING && !mmu_dirty_ring_size(vm_mmu(dr->vm))) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"mode dirty-ring is not enabled, use other "
				"method instead.");
		return;
	}
	if (mode != DR_PAGE_SAMPLING) {
		n = vm_memslots(dr->vm, info, VM_MAX_MEMSLOTS);
		for (unsigned i = 0; i < n && i < VM_MAX_MEMSLOTS; i++)
			if (info[i].log_dirty) {
				qmp_reply_error(
					req, QMP_ERROR_GENERIC,
					"mode: %s needs dirty logging off, "
					"and slot %u logs (x-dirty-log-stop "
					"it, or use page-sampling)",
					mode_names[mode], info[i].slot);
				return;
			}
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "out of memory");
		return;
	}
	j->dr = dr;
	j->mode = mode;
	j->sample_pages = (unsigned)sp;
	if (mmud_worker_submit(dr->worker, work, done, j) < 0) {
		free(j);
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"The VM is shutting down");
		return;
	}
	dr->job = j;
	dr->status = DR_MEASURING;
	dr->mode = mode;
	dr->start_time = (int64_t)time(NULL);
	dr->calc_ms = calc_ms;
	dr->unit_ms = unit_ms;
	dr->sample_pages = (unsigned)sp;
	qmp_reply_ok(req);
}

static void cmd_query(struct qmp_request *req, json_t *args, void *opaque)
{
	struct dirtyrate *dr = opaque;
	bool unit_ms;
	json_t *ret;

	if (!parse_unit(req, args, &unit_ms))
		return;
	ret = json_pack(
		"{s:s, s:I, s:I, s:s, s:I, s:s}", "status",
		status_names[dr->status], "start-time",
		(json_int_t)dr->start_time, "calc-time",
		(json_int_t)(unit_ms ? dr->calc_ms : dr->calc_ms / 1000),
		"calc-time-unit", unit_ms ? "millisecond" : "second",
		"sample-pages",
		(json_int_t)(dr->mode == DR_PAGE_SAMPLING ? dr->sample_pages :
							    0),
		"mode", mode_names[dr->mode]);
	if (ret && dr->status == DR_MEASURED)
		json_object_set_new(ret, "dirty-rate", json_integer(dr->rate));
	/* QEMU's per-vCPU rates, in dirty-ring mode only. */
	if (ret && dr->status == DR_MEASURED && dr->mode == DR_DIRTY_RING) {
		json_t *v = json_array();

		for (unsigned i = 0; v && i < dr->nvcpus; i++)
			json_array_append_new(
				v, json_pack("{s:i, s:I}", "id", (int)i,
					     "dirty-rate",
					     (json_int_t)dr->vrates[i]));
		json_object_set_new(ret, "vcpu-dirty-rate", v);
	}
	if (!ret) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "out of memory");
		return;
	}
	qmp_reply_return(req, ret);
}

static const struct qmp_arg calc_args[] = {
	{ "calc-time", QMP_ARG_INT, false },
	{ "calc-time-unit", QMP_ARG_STRING, true },
	{ "sample-pages", QMP_ARG_INT, true },
	{ "mode", QMP_ARG_STRING, true },
	QMP_ARGS_END,
};

static const struct qmp_arg query_args[] = {
	{ "calc-time-unit", QMP_ARG_STRING, true },
	QMP_ARGS_END,
};

struct dirtyrate *mmud_dirtyrate_new(struct event_base *base,
				     struct qmp_server *qmp,
				     struct mmud_worker *worker, struct vm *vm)
{
	struct dirtyrate *dr = calloc(1, sizeof(*dr));

	if (!dr)
		return NULL;
	dr->qmp = qmp;
	dr->worker = worker;
	dr->vm = vm;
	dr->sample_pages = DEFAULT_SAMPLES;
	dr->timer = evtimer_new(base, timer_cb, dr);
	dr->ring = mmud_dirtyring_new(base, qmp, worker, vm);
	if (!dr->timer || !dr->ring ||
	    qmp_server_register(qmp, "calc-dirty-rate", calc_args, cmd_calc,
				dr) < 0 ||
	    qmp_server_register(qmp, "query-dirty-rate", query_args, cmd_query,
				dr) < 0) {
		if (dr->timer)
			event_free(dr->timer);
		mmud_dirtyring_free(dr->ring);
		free(dr);
		return NULL;
	}
	return dr;
}

void mmud_dirtyrate_free(struct dirtyrate *dr)
{
	if (!dr)
		return;
	event_free(dr->timer);
	mmud_dirtyring_free(dr->ring);
	/* A measurement cut short by the shutdown: its job, if it is not
	 * on the worker (which has finished every job by now). */
	if (dr->job)
		job_free(dr->job);
	free(dr);
}
