/*
 * Live migration, the source side and the QMP surface (docs/MIGRATION.md,
 * "The migration commands"; docs/MIGRATION.md, "The daemon's part"):
 * QEMU's migrate, migrate_cancel, query-migrate, migrate-set/query-capabilities and
 * -parameters, migrate-continue and the MIGRATION and MIGRATION_PASS
 * events. The commands answer on the loop thread at once; the migration
 * itself runs on its own thread (registered with the MMU's RCU): it
 * starts dirty logging on every memslot, sends every page, then harvests
 * and resends the dirtied pages pass after pass, at most max-bandwidth,
 * until what is left fits downtime-limit at the bandwidth it measured;
 * then it holds the vCPUs, sends the last pages, every vCPU, COM1 and
 * the end marker. A cancel or a failure at any point gives the vCPUs
 * back in the run state they had and the operator's dirty bits back to
 * the operator. The stream itself is core/migrate's; URIs and named
 * descriptors are daemon/migrate_uri.c's; the destination is
 * daemon/incoming.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "dev/blk.h"
#include "dev/dev.h"
#include "dev/virtio_blk.h"
#include "guestmem.h"
#include "migrate.h"
#include "migrate_uri.h"
#include "migration.h"
#include "mmu.h"
#include "mmu_rcu.h"
#include "mmud.h"
#include "rpc.h"
#include "vcpu.h"
#include "vm.h"

static const char *const status_names[] = {
	[MIG_NONE] = "none",	       [MIG_SETUP] = "setup",
	[MIG_ACTIVE] = "active",       [MIG_PRE_SWITCHOVER] = "pre-switchover",
	[MIG_DEVICE] = "device",       [MIG_COMPLETED] = "completed",
	[MIG_FAILED] = "failed",       [MIG_CANCELLING] = "cancelling",
	[MIG_CANCELLED] = "cancelled",
};

const char *mig_status_name(enum mig_status st)
{
	return status_names[st];
}

uint64_t mig_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- status changes and events -------------------------------------- */

struct status_ev {
	struct mmud_migration *m;
	enum mig_status st;
	int64_t pass; /* > 0: MIGRATION_PASS instead */
	bool source_end; /* the source's thread is done: st is its end */
};

static void join_thread(struct mmud_migration *m)
{
	if (m->thread_live) {
		pthread_join(m->thread, NULL);
		m->thread_live = false;
	}
}

/* Loop thread: the event (QEMU sends both only with the events
 * capability), then what the end of the source's work means. */
static void status_ev_cb(void *arg)
{
	struct status_ev *e = arg;
	struct mmud_migration *m = e->m;

	if (e->source_end) {
		/* Completed: postmigrate first, so whoever sees "completed"
		 * sees the source postmigrate. Failed or cancelled: the
		 * event first, then the RESUME of the run state given back
		 * (QEMU's order). */
		join_thread(m);
		if (e->st == MIG_COMPLETED)
			mmud_migration_source_end(m->d, true);
		pthread_mutex_lock(&m->lock);
		m->status = e->st;
		pthread_mutex_unlock(&m->lock);
	}
	if (m->qmp && m->cap_events) {
		if (e->pass > 0)
			qmp_server_emit_event(m->qmp, "MIGRATION_PASS",
					      json_pack("{s:I}", "pass",
							(json_int_t)e->pass));
		else
			qmp_server_emit_event(m->qmp, "MIGRATION",
					      json_pack("{s:s}", "status",
							status_names[e->st]));
	}
	if (e->source_end && e->st != MIG_COMPLETED)
		mmud_migration_source_end(m->d, false);
	free(e);
}

static void post(struct mmud_migration *m, struct status_ev *proto)
{
	struct status_ev *e = malloc(sizeof(*e));

	if (!e) {
		fprintf(stderr, "<3>mmud: out of memory sending a migration "
				"event\n");
		return;
	}
	*e = *proto;
	e->m = m;
	if (mmud_call_soon(m->worker, status_ev_cb, e) < 0) {
		free(e);
		fprintf(stderr, "<3>mmud: out of memory sending a migration "
				"event\n");
	}
}

void mig_set_status(struct mmud_migration *m, enum mig_status st)
{
	pthread_mutex_lock(&m->lock);
	m->status = st;
	pthread_mutex_unlock(&m->lock);
	post(m, &(struct status_ev){ .st = st });
}

/* ---- the source's memory: slots, dirty logging, pages --------------- */

/*
 * One memslot as the migration sees it. pending: pages to send (bulk:
 * all; then what each harvest found). owed: what the harvests took from
 * a dirty log the operator runs (x-dirty-log-start), given back at the
 * end so the operator's next harvest still reports it
 * (docs/MIGRATION.md, "Dirty logging during a migration").
 */
struct src_slot {
	uint32_t id;
	gpa_t gpa;
	uint64_t size, npages;
	hva_t hva;
	int fd; /* the memfd at hva, or -1: its holes are not read */
	bool readonly;
	bool operator_log; /* logging was on before the migration */
	bool we_log; /* the migration turned it on */
	uint64_t *pending, *owed, *scratch;
	/* (a) pages an operator's harvest cleared meanwhile (the
	 * guestmem reader, on the worker thread: relaxed fetch_or), taken
	 * by the next sync with an exchange; the harvest's lock and the
	 * flush after it order the page's data (docs/MMU.md, "Dirty
	 * logging"). */
	_Atomic uint64_t *stolen;
	size_t nwords;
};

struct src {
	struct mmud_migration *m;
	struct src_slot slots[VM_MAX_MEMSLOTS];
	unsigned int nr_slots;
	struct migrate_writer *w;
	struct migrate_ram_stats rs;
	struct migrate_config cfg;
	/* (a) the slots are filled in: the guestmem reader may use them
	 * (release store after setup_slots, acquire load). */
	_Atomic bool ready;
	bool reading; /* guestmem_set_reader() is ours */
	uint64_t pending_pages;
	bool held; /* the switchover's vm_hold() */
	/* Bandwidth: bytes and time of the current 100 ms window. */
	uint64_t win_start_ns, win_bytes;
	/* auto-converge (QEMU's): the throttle's thread holds the vCPUs
	 * for pct/(100-pct) of every 10 ms they run. */
	pthread_t throttler;
	bool throttler_live, auto_converge;
	_Atomic unsigned int pct; /* (a) relaxed: a percentage, no data */
	_Atomic bool throttle_stop; /* (a) relaxed, then joined */
	unsigned int high_cnt;
	/* dirty-limit: the capability, whether the limit is on, and each
	 * vCPU's throttled time when the last pass began. */
	bool dirty_limit, dl_on;
	uint64_t dl_sleep_prev[MIGRATE_MAX_VCPUS];
	/* Passes since what is left first fitted downtime-limit, and what
	 * was left after the last of them (converged()). */
	unsigned int fit_passes;
	uint64_t fit_remaining;
	/* The last pass, for the estimate. */
	uint64_t pass_start_ns, pass_start_bytes;
	double bytes_per_ms;
	char err[512];
};

static bool cancelled(struct mmud_migration *m)
{
	bool c;

	pthread_mutex_lock(&m->lock);
	c = m->cancel;
	pthread_mutex_unlock(&m->lock);
	return c;
}

static void free_slots(struct src *s)
{
	for (unsigned int i = 0; i < s->nr_slots; i++) {
		free(s->slots[i].pending);
		free(s->slots[i].owed);
		free(s->slots[i].scratch);
		free((void *)s->slots[i].stolen);
	}
}

/*
 * The slots, and dirty logging on each (the MMU's own bitmap, whose
 * harvest write-protects what it reports: docs/MMU.md, "Dirty logging").
 * Logging starts before the first page is read, so a page the guest
 * writes after it was sent is found by a later harvest.
 */
static void operator_harvested(void *ctx, uint32_t slot, const uint64_t *bitmap,
			       size_t nwords)
{
	struct src *s = ctx;

	if (!atomic_load_explicit(&s->ready, memory_order_acquire))
		return; /* nothing sent yet: pass 1 sends every page */
	for (unsigned int i = 0; i < s->nr_slots; i++) {
		struct src_slot *sl = &s->slots[i];

		if (sl->id != slot)
			continue;
		for (size_t w = 0; w < nwords && w < sl->nwords; w++)
			if (bitmap[w])
				atomic_fetch_or_explicit(&sl->stolen[w],
							 bitmap[w],
							 memory_order_relaxed);
	}
}

static int setup_slots(struct src *s)
{
	struct vm_memslot_info info[VM_MAX_MEMSLOTS];
	struct mmu *mmu = vm_mmu(s->m->vm);
	unsigned int n;
	uint64_t total = 0;

	/* First: from now on no slot comes or goes and no log stops, and
	 * an operator's harvest hands us what it clears. */
	guestmem_set_reader(vm_guestmem(s->m->vm), operator_harvested, s,
			    "a migration is in progress: memslots and dirty "
			    "logging cannot change until it ends");
	s->reading = true;
	n = vm_memslots(s->m->vm, info, VM_MAX_MEMSLOTS);

	if (n > VM_MAX_MEMSLOTS)
		n = VM_MAX_MEMSLOTS;
	for (unsigned int i = 0; i < n; i++) {
		struct src_slot *sl = &s->slots[s->nr_slots];

		*sl = (struct src_slot){
			.id = info[i].slot,
			.gpa = info[i].gpa,
			.size = info[i].size,
			.npages = info[i].size >> PAGE_SHIFT,
			.hva = info[i].hva,
			.fd = info[i].fd,
			.readonly = info[i].readonly,
			.operator_log = info[i].log_dirty,
		};
		sl->nwords = (sl->npages + 63) / 64;
		sl->pending = calloc(sl->nwords, 8);
		sl->owed = calloc(sl->nwords, 8);
		sl->scratch = calloc(sl->nwords, 8);
		sl->stolen = calloc(sl->nwords, 8);
		s->nr_slots++;
		if (!sl->pending || !sl->owed || !sl->scratch || !sl->stolen) {
			snprintf(s->err, sizeof(s->err), "out of memory");
			return -ENOMEM;
		}
		if (!sl->operator_log) {
			int r = memslot_set_flags(
				mmu, sl->id,
				(sl->readonly ? MEMSLOT_READONLY : 0) |
					MEMSLOT_LOG_DIRTY,
				s->err, sizeof(s->err));

			if (r < 0)
				return r;
			sl->we_log = true;
		}
		/* The bulk pass: every page. */
		memset(sl->pending, 0xff, sl->nwords * 8);
		if (sl->npages % 64)
			sl->pending[sl->nwords - 1] =
				(1ULL << (sl->npages % 64)) - 1;
		s->pending_pages += sl->npages;
		total += sl->size;
	}
	atomic_store_explicit(&s->ready, true, memory_order_release);
	pthread_mutex_lock(&s->m->lock);
	s->m->st.total = total;
	s->m->st.remaining = total;
	pthread_mutex_unlock(&s->m->lock);
	return 0;
}

/*
 * Harvests every slot's dirty log into pending (and, for a log the
 * operator runs, into owed too). A slot that stopped logging under us
 * (x-dirty-log-stop, x-memslot-remove) fails the migration: pages
 * written since could not be found.
 */
static int harvest(struct src *s, uint64_t *found)
{
	struct mmu *mmu = vm_mmu(s->m->vm);

	*found = 0;
	for (unsigned int i = 0; i < s->nr_slots; i++) {
		struct src_slot *sl = &s->slots[i];
		char e[256];
		int r;

		memset(sl->scratch, 0, sl->nwords * 8);
		r = memslot_dirty_log_get(mmu, sl->id, sl->scratch, sl->nwords,
					  e, sizeof(e));
		if (r < 0) {
			snprintf(s->err, sizeof(s->err),
				 "memslot %u stopped logging dirty pages "
				 "during the migration: %s",
				 sl->id, e);
			return r;
		}
		for (size_t w = 0; w < sl->nwords; w++) {
			uint64_t add;

			sl->scratch[w] |= atomic_exchange_explicit(
				&sl->stolen[w], 0, memory_order_relaxed);
			add = sl->scratch[w] & ~sl->pending[w];

			*found +=
				(uint64_t)__builtin_popcountll(sl->scratch[w]);
			s->pending_pages += (uint64_t)__builtin_popcountll(add);
			sl->pending[w] |= sl->scratch[w];
			if (sl->operator_log)
				sl->owed[w] |= sl->scratch[w];
		}
	}
	return 0;
}

/*
 * Dirty logging back as it was: off where the migration turned it on;
 * where the operator runs it, every bit the migration's harvests took
 * is marked again (guestmem_mark_dirty), so the operator's next harvest
 * reports it: nothing harvested is lost to either reader.
 */
static void restore_logging(struct src *s)
{
	struct guestmem *gm = vm_guestmem(s->m->vm);
	struct mmu *mmu = vm_mmu(s->m->vm);

	for (unsigned int i = 0; i < s->nr_slots; i++) {
		struct src_slot *sl = &s->slots[i];

		if (sl->we_log) {
			memslot_set_flags(mmu, sl->id,
					  sl->readonly ? MEMSLOT_READONLY : 0,
					  NULL, 0);
			continue;
		}
		if (!sl->operator_log || !sl->owed)
			continue;
		for (uint64_t p = 0; p < sl->npages; p++)
			if (sl->owed[p / 64] >> (p % 64) & 1)
				guestmem_mark_dirty(gm, sl->gpa + (p << 12),
						    PAGE_SIZE);
	} /* Last: slots and logs may change again. */
	if (s->reading)
		guestmem_set_reader(gm, NULL, NULL, NULL);
}

/* Sleeps until the send rate is back under max-bandwidth (QEMU's rate
 * limit: 100 ms windows); a cancel or new parameters wake it. */
static void throttle(struct src *s, uint64_t max_bw)
{
	struct mmud_migration *m = s->m;
	uint64_t now = mig_now_ns(), due_ns;
	struct timespec ts;

	if (now - s->win_start_ns >= 100000000ULL) {
		s->win_start_ns = now;
		s->win_bytes = 0;
		return;
	}
	if (!max_bw)
		return;
	due_ns = (uint64_t)((double)s->win_bytes * 1e9 / (double)max_bw);
	if (now - s->win_start_ns >= due_ns)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	due_ns -= now - s->win_start_ns;
	ts.tv_sec += (time_t)(due_ns / 1000000000ULL);
	ts.tv_nsec += (long)(due_ns % 1000000000ULL);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->lock);
	if (!m->cancel)
		pthread_cond_timedwait(&m->cond, &m->lock, &ts);
	pthread_mutex_unlock(&m->lock);
}

static void publish_progress(struct src *s)
{
	struct mmud_migration *m = s->m;
	uint64_t bytes = migrate_writer_bytes(s->w);

	pthread_mutex_lock(&m->lock);
	m->st.transferred = bytes;
	m->st.remaining = s->pending_pages * PAGE_SIZE;
	m->st.duplicate = s->rs.duplicate;
	m->st.normal = s->rs.normal;
	if (!s->held)
		m->st.precopy_bytes = bytes;
	else
		m->st.downtime_bytes = bytes - m->st.precopy_bytes;
	pthread_mutex_unlock(&m->lock);
}

/* Sends every pending page, MIGRATE_RAM_BATCH at a time, at most
 * max-bandwidth (not once the vCPUs are held: the downtime is what the
 * link allows). */
static int send_pending(struct src *s, bool bulk)
{
	uint64_t idx[MIGRATE_RAM_BATCH];

	for (unsigned int i = 0; i < s->nr_slots; i++) {
		struct src_slot *sl = &s->slots[i];
		/*
		 * What the memfd's holes are, in the bulk pass only: there
		 * they spare reading (and allocating) what was never
		 * written. A later pass sends pages the guest wrote, and
		 * asking afresh would cost a SEEK_HOLE over every page of
		 * data before the first hole (4 ms for 512 MiB), even for
		 * the hundred pages of the pass in the downtime.
		 */
		struct migrate_holes holes = { .fd = bulk ? sl->fd : -1 };
		size_t w = 0;

		while (w < sl->nwords) {
			uint64_t before = migrate_writer_bytes(s->w), max_bw;
			size_t n = 0;
			int r;

			for (; w < sl->nwords && n + 64 <= MIGRATE_RAM_BATCH;
			     w++) {
				uint64_t bits = sl->pending[w];

				sl->pending[w] = 0;
				while (bits) {
					unsigned int b =
						(unsigned int)__builtin_ctzll(
							bits);

					bits &= bits - 1;
					idx[n++] = w * 64 + b;
				}
			}
			if (!n)
				continue;
			if (cancelled(s->m)) {
				/* Not sent: pending again, for the
				 * operator's owed bits and the counts. */
				for (size_t k = 0; k < n; k++)
					sl->pending[idx[k] / 64] |=
						1ULL << (idx[k] % 64);
				return -ECANCELED;
			}
			r = migrate_write_ram_fd(s->w, sl->id, sl->hva, &holes,
						 sl->size, idx, n, &s->rs);
			if (r < 0) {
				for (size_t k = 0; k < n; k++)
					sl->pending[idx[k] / 64] |=
						1ULL << (idx[k] % 64);
				snprintf(s->err, sizeof(s->err), "%s",
					 migrate_writer_error(s->w));
				return r;
			}
			s->pending_pages -= n;
			s->win_bytes += migrate_writer_bytes(s->w) - before;
			publish_progress(s);
			pthread_mutex_lock(&s->m->lock);
			max_bw = s->m->params.max_bandwidth;
			pthread_mutex_unlock(&s->m->lock);
			if (!s->held)
				throttle(s, max_bw);
		}
	}
	return 0;
}

/* ---- the switchover ---------------------------------------------------- */

struct save_ctx {
	struct vm *vm;
	unsigned int index;
	struct migrate_vcpu v;
	struct migrate_vcpu_irq irq;
};

/* The vCPU's registers, and its interrupt and time state
 * (docs/MIGRATION.md, "vCPU interrupt state"), with it parked. */
static int save_cpu(struct x86_cpu *cpu, void *arg)
{
	struct save_ctx *c = arg;
	int r = migrate_vcpu_save(cpu, c->index, &c->v);

	if (!r)
		migrate_vcpu_irq_save(cpu, vm_lapic(c->vm, c->index),
				      vm_kvmclock(c->vm, c->index), c->index,
				      mig_now_ns(), &c->irq);
	return r;
}

/* Each drive's transport state, quiet since the switchover's
 * virtio_blk_quiesce(). */
static int write_drives(struct vm *vm, struct migrate_writer *w)
{
	struct migrate_virtio_blk v;
	int r = 0;

	for (unsigned int i = 0; !r && vm_blk(vm, i); i++) {
		v.index = i;
		virtio_mmio_save(virtio_blk_transport(vm_blk(vm, i)), &v.st);
		r = migrate_write_virtio_blk(w, &v);
	}
	return r;
}

/* Loop thread: the run state changes, and the one it was in goes in
 * the stream (docs/MIGRATION.md, "run state"). */
static void switchover_cb(void *arg)
{
	struct mmud_migration *m = arg;
	int rs = mmud_migration_switchover(m->d);

	pthread_mutex_lock(&m->lock);
	m->src_runstate = rs;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* The source's run state, once switchover_cb() has run: 0, or
 * -ECANCELED (a cancel or a shutdown, which may never run it). */
static int wait_runstate(struct mmud_migration *m, enum migrate_runstate *rs)
{
	int r = 0;

	pthread_mutex_lock(&m->lock);
	while (m->src_runstate < 0 && !m->cancel)
		pthread_cond_wait(&m->cond, &m->lock);
	if (m->src_runstate < 0)
		r = -ECANCELED;
	else
		*rs = (enum migrate_runstate)m->src_runstate;
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* Waits for migrate-continue (pause-before-switchover): 0, or
 * -ECANCELED. */
static int wait_continue(struct mmud_migration *m)
{
	int r = 0;

	pthread_mutex_lock(&m->lock);
	while (!m->go_on && !m->cancel)
		pthread_cond_wait(&m->cond, &m->lock);
	if (m->cancel)
		r = -ECANCELED;
	pthread_mutex_unlock(&m->lock);
	return r;
}

/*
 * The vCPUs held (every one parked at an exit with its port I/O done),
 * every drive quiesced (docs/MIGRATION.md, "virtio-blk"), the pages
 * dirtied since the last pass (those the drives' completions wrote
 * among them), every vCPU, COM1, every drive's device state and the
 * end marker; then the write side is shut down, which tells the
 * destination the stream is whole. Console output: COM1 hands every
 * byte to the console as it is written, so nothing of it is pending in
 * the VM; what the console sink has not written out yet it writes after
 * the switchover (the source's console ends with the guest's last byte,
 * the destination's begins with its next).
 */
static int switchover(struct src *s)
{
	struct mmud_migration *m = s->m;
	struct vm *vm = m->vm;
	struct dev_serial_state ss;
	struct save_ctx *c;
	uint64_t found;
	bool pbs;
	int r;

	pthread_mutex_lock(&m->lock);
	m->src_runstate = -1;
	pthread_mutex_unlock(&m->lock);
	if (mmud_call_soon(m->worker, switchover_cb, m) < 0) {
		snprintf(s->err, sizeof(s->err), "out of memory");
		return -ENOMEM;
	}
	vm_hold(vm);
	s->held = true;
	pthread_mutex_lock(&m->lock);
	m->st.switch_ns = mig_now_ns();
	pbs = m->cap_pause_before_switchover;
	pthread_mutex_unlock(&m->lock);
	if (pbs) {
		mig_set_status(m, MIG_PRE_SWITCHOVER);
		r = wait_continue(m);
		if (r < 0)
			return r;
	}
	mig_set_status(m, MIG_DEVICE);
	/* Before the last harvest: no notification comes with the vCPUs
	 * held, so once every request in flight completed, the pages they
	 * wrote are in the dirty log and the rings are quiet. A cancel or
	 * failure after this leaves the drives as they were: quiet, and
	 * taking requests again once the vCPUs run. */
	for (unsigned int i = 0; vm_blk(vm, i); i++)
		virtio_blk_quiesce(vm_blk(vm, i));
	r = harvest(s, &found);
	if (!r)
		r = send_pending(s, false);
	if (r < 0)
		return r;
	c = malloc(sizeof(*c));
	if (!c) {
		snprintf(s->err, sizeof(s->err), "out of memory");
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < vm_nr_vcpus(vm) && !r; i++) {
		struct vm_vcpu_info info;

		c->vm = vm;
		c->index = i;
		r = vm_vcpu_with_cpu(vm, i, save_cpu, c);
		if (r < 0) {
			snprintf(s->err, sizeof(s->err),
				 "vCPU %u: its state cannot be saved (%s)", i,
				 strerror(-r));
			break;
		}
		/* The vCPU layer's INIT state, read outside
		 * vm_vcpu_with_cpu() (the vCPUs are held). */
		vm_vcpu_info(vm, i, &info);
		c->irq.vcpu_wait_sipi = info.wait_for_sipi;
		r = migrate_write_vcpu(s->w, &c->v);
		if (!r)
			r = migrate_write_vcpu_irq(s->w, &c->irq);
		if (r < 0)
			snprintf(s->err, sizeof(s->err), "%s",
				 migrate_writer_error(s->w));
	}
	free(c);
	if (r < 0)
		return r;
	dev_serial_save(vm_serial(vm), &ss);
	r = migrate_write_serial(s->w, &ss);
	if (!r) {
		struct migrate_vm_irq vi;

		migrate_vm_irq_save(vm_ioapic(vm), vm_serial(vm), &vi);
		r = migrate_write_vm_irq(s->w, &vi);
	}
	if (!r)
		r = write_drives(vm, s->w);
	if (!r) {
		enum migrate_runstate rs;

		if (wait_runstate(m, &rs) < 0)
			return -ECANCELED;
		r = migrate_write_runstate(s->w, rs);
	}
	if (!r)
		r = migrate_write_end(s->w);
	if (r < 0) {
		snprintf(s->err, sizeof(s->err), "%s",
			 migrate_writer_error(s->w));
		return r;
	}
	if (cancelled(m))
		return -ECANCELED;
	/* A file or pipe has no write side to shut down. */
	shutdown(m->stream_fd, SHUT_WR);
	publish_progress(s);
	return 0;
}

/* ---- the migration thread ------------------------------------------- */

/* The downtime the passes aim at once downtime-limit is met, and the
 * passes they may spend on it (converged()). */
#define MIG_SHORT_DOWNTIME_US 500
#define MIG_FIT_PASSES 6

/* Whether what is left fits the downtime limit at the bandwidth of the
 * last pass (QEMU's threshold_size = bandwidth x downtime-limit). */
static bool converged(struct src *s, uint64_t found, uint64_t pass_ns)
{
	struct mmud_migration *m = s->m;
	uint64_t bytes = migrate_writer_bytes(s->w) - s->pass_start_bytes;
	uint64_t limit, remaining = s->pending_pages * PAGE_SIZE, max_bw;
	double ms = (double)pass_ns / 1e6;

	pthread_mutex_lock(&m->lock);
	limit = m->params.downtime_limit;
	max_bw = m->params.max_bandwidth;
	pthread_mutex_unlock(&m->lock);
	if (ms > 0.05 && bytes)
		s->bytes_per_ms = (double)bytes / ms;
	/* With the vCPUs held the link's own speed counts, not the
	 * throttle; before any measure, the throttle's. */
	if (s->bytes_per_ms <= 0)
		s->bytes_per_ms = max_bw ? (double)max_bw / 1000.0 : 1e6;
	pthread_mutex_lock(&m->lock);
	m->st.expected_downtime =
		(uint64_t)((double)remaining / s->bytes_per_ms);
	m->st.mbps = s->bytes_per_ms * 1000.0 * 8 / 1e6;
	m->st.dirty_pages_rate =
		pass_ns ? (uint64_t)((double)found * 1e9 / (double)pass_ns) : 0;
	m->st.pages_per_second =
		(uint64_t)(s->bytes_per_ms * 1000.0 / (PAGE_SIZE + 9));
	pthread_mutex_unlock(&m->lock);
	/* Strictly below, as QEMU: downtime-limit 0 never switches over. */
	if (!((double)remaining < s->bytes_per_ms * (double)limit)) {
		s->fit_passes = 0;
		s->fit_remaining = remaining;
		return false;
	}
	/*
	 * It fits the limit. QEMU switches over now; a pass more costs
	 * little while it still shrinks what is left (a guest that dirties
	 * slower than the link), and shortens the downtime: so go on
	 * while each pass leaves at most 3/4 of what the one before left,
	 * until it fits MIG_SHORT_DOWNTIME_US or after MIG_FIT_PASSES
	 * passes (a loaded host's passes shrink by less, and stop early).
	 */
	if ((double)remaining <
		    s->bytes_per_ms * MIG_SHORT_DOWNTIME_US / 1000.0 ||
	    (s->fit_passes && remaining * 4 > s->fit_remaining * 3) ||
	    ++s->fit_passes > MIG_FIT_PASSES)
		return true;
	s->fit_remaining = remaining;
	return false;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ULL),
			       .tv_nsec = (long)(ns % 1000000000ULL) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * QEMU's CPU throttle for auto-converge: every 10 ms the vCPUs run, they
 * are held for 10 ms x pct / (100 - pct) (99%: about a second), in
 * slices of at most 10 ms so that a stop is seen at once. Holds count,
 * so the operator's stop and cont and the worker's holds are not
 * disturbed.
 */
static void *throttle_thread(void *arg)
{
	struct src *s = arg;

	while (!atomic_load_explicit(&s->throttle_stop, memory_order_relaxed)) {
		unsigned int pct =
			atomic_load_explicit(&s->pct, memory_order_relaxed);
		uint64_t held = 10000000ULL * pct / (100 - pct);

		vm_hold(s->m->vm);
		while (held && !atomic_load_explicit(&s->throttle_stop,
						     memory_order_relaxed)) {
			uint64_t step = held < 10000000ULL ? held : 10000000ULL;

			sleep_ns(step);
			held -= step;
		}
		vm_unhold(s->m->vm);
		sleep_ns(10000000ULL);
	}
	return NULL;
}

static void dirty_limit_end(struct src *s)
{
	if (!s->dl_on)
		return;
	vcpu_set_dirty_limit(vm_vcpu_set(s->m->vm), -1, 0, 0);
	s->dl_on = false;
	pthread_mutex_lock(&s->m->lock);
	s->m->st.dirty_limit_on = false;
	pthread_mutex_unlock(&s->m->lock);
}

static void throttle_end(struct src *s)
{
	dirty_limit_end(s);
	if (!s->throttler_live)
		return;
	atomic_store_explicit(&s->throttle_stop, true, memory_order_relaxed);
	pthread_join(s->throttler, NULL);
	s->throttler_live = false;
	pthread_mutex_lock(&s->m->lock);
	s->m->st.cpu_throttle_percentage = 0;
	pthread_mutex_unlock(&s->m->lock);
}

/*
 * dirty-limit (docs/MIGRATION.md, "Dirty limit"): every vCPU dirties at
 * most vcpu-dirty-limit MiB/s, as the vCPU layer counts its write
 * faults, each of which, with the dirty log on, is the first write of a
 * page since the last harvest. Applied again at each pass, so a new
 * vcpu-dirty-limit or x-vcpu-dirty-limit-period takes effect there;
 * what it cost the vCPUs over the pass that ended (pass_ns long) goes to
 * query-migrate.
 */
static void dirty_limit_apply(struct src *s, uint64_t pass_ns)
{
	struct mmud_migration *m = s->m;
	struct vcpu_set *set = vm_vcpu_set(m->vm);
	uint64_t limit, period, worst = 0, max_stop = 0;
	unsigned int n = vm_nr_vcpus(m->vm);

	if (!s->dl_on)
		return;
	pthread_mutex_lock(&m->lock);
	limit = m->params.vcpu_dirty_limit;
	period = m->params.x_vcpu_dirty_limit_period;
	pthread_mutex_unlock(&m->lock);
	/* MiB/s in pages/s; at most what a uint64_t of bytes holds. */
	if (limit > UINT64_MAX >> 20)
		limit = UINT64_MAX >> 20;
	vcpu_set_dirty_limit(set, -1, (limit << 20) / PAGE_SIZE, period);
	for (unsigned int i = 0; i < n && i < MIGRATE_MAX_VCPUS; i++) {
		struct vcpu *v = vcpu_set_get(set, i);
		struct vcpu_dirty_limit_info info;
		uint64_t slept;

		if (!v)
			continue;
		vcpu_dirty_limit_get(v, &info);
		slept = info.sleep_ns - s->dl_sleep_prev[i];
		s->dl_sleep_prev[i] = info.sleep_ns;
		if (pass_ns && slept > worst)
			worst = slept;
		if (info.max_sleep_ns > max_stop)
			max_stop = info.max_sleep_ns;
	}
	pthread_mutex_lock(&m->lock);
	m->st.dirty_limit_on = true;
	m->st.dl_period_us = period * 1000;
	if (pass_ns)
		m->st.dl_throttle_us =
			(uint64_t)((double)worst / 1e3 * (double)period * 1e6 /
				   (double)pass_ns);
	m->st.dl_max_stop_us = max_stop / 1000;
	pthread_mutex_unlock(&m->lock);
}

/*
 * QEMU's trigger (migration_trigger_throttle): a pass that dirtied more
 * than half the bytes it sent counts; at the second, the throttle
 * starts at cpu-throttle-initial or rises by cpu-throttle-increment, to
 * 99% at most.
 */
static void maybe_throttle(struct src *s, uint64_t found, uint64_t sent)
{
	struct mmud_migration *m = s->m;
	unsigned int pct, initial, inc;

	if (s->dirty_limit && !s->dl_on && found * PAGE_SIZE > sent / 2) {
		s->dl_on = true;
		dirty_limit_apply(s, 0);
		return;
	}
	if (!s->auto_converge || found * PAGE_SIZE <= sent / 2)
		return;
	if (++s->high_cnt < 2)
		return;
	s->high_cnt = 0;
	pthread_mutex_lock(&m->lock);
	initial = (unsigned int)m->params.cpu_throttle_initial;
	inc = (unsigned int)m->params.cpu_throttle_increment;
	pthread_mutex_unlock(&m->lock);
	pct = atomic_load_explicit(&s->pct, memory_order_relaxed);
	pct = pct ? pct + inc : initial;
	if (pct > 99)
		pct = 99;
	atomic_store_explicit(&s->pct, pct, memory_order_relaxed);
	pthread_mutex_lock(&m->lock);
	m->st.cpu_throttle_percentage = pct;
	pthread_mutex_unlock(&m->lock);
	if (!s->throttler_live &&
	    pthread_create(&s->throttler, NULL, throttle_thread, s) == 0)
		s->throttler_live = true;
}

/* 10 ms, or until a cancel or new parameters. */
static void idle(struct mmud_migration *m)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 10000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->lock);
	if (!m->cancel)
		pthread_cond_timedwait(&m->cond, &m->lock, &ts);
	pthread_mutex_unlock(&m->lock);
}

static int run_source(struct src *s)
{
	struct mmud_migration *m = s->m;
	uint64_t found = 0, pass = 0;
	char e[512];
	int r;

	r = mig_uri_connect_cancel(&m->uri, m->taken_fd, m->cancel_fd, e,
				   sizeof(e));
	m->taken_fd = -1; /* the connection owns it now */
	if (r < 0) {
		snprintf(s->err, sizeof(s->err), "%s", e);
		return r;
	}
	pthread_mutex_lock(&m->lock);
	m->stream_fd = r;
	r = m->cancel ? -ECANCELED : 0;
	pthread_mutex_unlock(&m->lock);
	if (r < 0)
		return r;
	s->w = migrate_writer_new(m->stream_fd);
	if (!s->w) {
		snprintf(s->err, sizeof(s->err), "out of memory");
		return -ENOMEM;
	}
	r = setup_slots(s);
	if (r < 0)
		return r;
	r = migrate_config_from_vm(m->vm, &s->cfg);
	if (r < 0) {
		snprintf(s->err, sizeof(s->err), "the VM's configuration: %s",
			 strerror(-r));
		return r;
	}
	r = migrate_write_header(s->w);
	if (!r)
		r = migrate_write_config(s->w, &s->cfg);
	if (r < 0) {
		snprintf(s->err, sizeof(s->err), "%s",
			 migrate_writer_error(s->w));
		return r;
	}
	pthread_mutex_lock(&m->lock);
	m->st.setup_done_ns = mig_now_ns();
	pthread_mutex_unlock(&m->lock);
	mig_set_status(m, MIG_ACTIVE);
	s->win_start_ns = mig_now_ns();
	for (;;) {
		uint64_t t0 = mig_now_ns();

		/* A pass: the dirty sync (the bulk pass's is "every
		 * page"), then its pages. */
		pass++;
		pthread_mutex_lock(&m->lock);
		m->st.dirty_sync_count = pass;
		pthread_mutex_unlock(&m->lock);
		post(m, &(struct status_ev){ .pass = (int64_t)pass });
		s->pass_start_ns = t0;
		s->pass_start_bytes = migrate_writer_bytes(s->w);
		r = send_pending(s, pass == 1);
		if (r < 0)
			return r;
		r = harvest(s, &found);
		if (r < 0)
			return r;
		publish_progress(s);
		dirty_limit_apply(s, mig_now_ns() - t0);
		if (converged(s, found, mig_now_ns() - t0))
			break;
		/* dirty-limit starts at the first pass that dirtied more
		 * than half of what it sent, the bulk pass too: a cap the
		 * operator asked for, which only throttles the vCPUs that
		 * dirty faster than it. */
		if (pass > 1 || s->dirty_limit)
			maybe_throttle(s, found,
				       migrate_writer_bytes(s->w) -
					       s->pass_start_bytes);
		if (cancelled(m))
			return -ECANCELED;
		if (!found)
			idle(m); /* nothing dirtied: no busy loop of syncs */
	}
	pthread_mutex_lock(&m->lock);
	m->st.dirty_sync_count = pass + 1;
	pthread_mutex_unlock(&m->lock);
	/* The switchover holds the vCPUs itself. */
	throttle_end(s);
	return switchover(s);
}

static void *source_thread(void *arg)
{
	struct mmud_migration *m = arg;
	struct src *s = calloc(1, sizeof(*s));
	enum mig_status end;
	uint64_t sent_ns = 0;
	int r = -ENOMEM;

	mmu_rcu_register_thread();
	if (s) {
		s->m = m;
		/* Capabilities cannot change while a migration runs. */
		s->auto_converge = m->cap_auto_converge;
		s->dirty_limit = m->cap_dirty_limit;
		r = run_source(s);
		/* The end marker is out and the destination runs the
		 * guest: downtime and total-time end here, as QEMU's end at
		 * the completion, not after the source's own cleanup. */
		if (!r)
			sent_ns = mig_now_ns();
		throttle_end(s);
	}
	if (!r) {
		/* The source stays paused (postmigrate) until cont. */
		vm_pause(m->vm);
		end = MIG_COMPLETED;
	} else {
		end = r == -ECANCELED || cancelled(m) ? MIG_CANCELLED :
							MIG_FAILED;
	}
	if (s && s->held)
		vm_unhold(m->vm);
	if (s)
		restore_logging(s);
	pthread_mutex_lock(&m->lock);
	m->st.end_ns = sent_ns ? sent_ns : mig_now_ns();
	if (s && s->held)
		m->st.downtime = (m->st.end_ns - m->st.switch_ns) / 1000000;
	if (end == MIG_FAILED)
		snprintf(m->error, sizeof(m->error), "%s",
			 s && s->err[0] ? s->err : "out of memory");
	if (m->stream_fd >= 0)
		close(m->stream_fd);
	m->stream_fd = -1;
	pthread_mutex_unlock(&m->lock);
	if (end == MIG_FAILED)
		fprintf(stderr, "<3>mmud: migration failed: %s\n", m->error);
	if (s) {
		migrate_writer_free(s->w);
		free_slots(s);
		free(s);
	}
	mmu_rcu_unregister_thread();
	/* Last: the loop joins this thread, sets the run state and the
	 * final status. */
	post(m, &(struct status_ev){ .source_end = true, .st = end });
	return NULL;
}

/* ---- QMP commands --------------------------------------------------- */

static bool is_running_status(enum mig_status st)
{
	return st == MIG_SETUP || st == MIG_ACTIVE ||
	       st == MIG_PRE_SWITCHOVER || st == MIG_DEVICE ||
	       st == MIG_CANCELLING;
}

static void cmd_migrate(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmud_migration *m = opaque;
	const char *uri = json_string_value(json_object_get(args, "uri"));
	char err[512];
	int fd = -1, r;

	if (json_is_true(json_object_get(args, "resume"))) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Cannot resume if there is no paused "
				"migration");
		return;
	}
	if (!uri) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Either 'uri' or 'channels' must be "
				"specified");
		return;
	}
	if (m->thread_live) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"There's a migration process in progress");
		return;
	}
	if (!mmud_migration_can_start(m->d, err, sizeof(err))) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "%s", err);
		return;
	}
	if (m->have_uri)
		mig_uri_free(&m->uri);
	m->have_uri = false;
	if (mig_uri_parse(uri, &m->uri, err, sizeof(err)) < 0) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "%s", err);
		return;
	}
	m->have_uri = true;
	if (m->uri.kind == MIG_URI_FD) {
		fd = m->fds ? mig_fds_take(m->fds, m->uri.fdname) : -ENOENT;
		if (fd < 0) {
			qmp_reply_error(req, QMP_ERROR_GENERIC,
					"File descriptor named '%s' has not "
					"been found",
					m->uri.fdname);
			return;
		}
	}
	pthread_mutex_lock(&m->lock);
	memset(&m->st, 0, sizeof(m->st));
	m->st.start_ns = mig_now_ns();
	m->error[0] = '\0';
	m->cancel = false;
	m->go_on = false;
	m->stream_fd = -1;
	m->status = MIG_SETUP;
	m->socket_address[0] = '\0';
	pthread_mutex_unlock(&m->lock);
	m->taken_fd = fd;
	if (m->cancel_fd >= 0) {
		eventfd_t drop;

		/* A cancel of an earlier migration is not for this one. */
		(void)eventfd_read(m->cancel_fd, &drop);
	}
	/* A destination that loaded may move on: query-migrate is about
	 * this migration from now on. */
	m->incoming_started = false;
	r = pthread_create(&m->thread, NULL, source_thread, m);
	if (r) {
		if (fd >= 0)
			close(fd);
		m->taken_fd = -1;
		pthread_mutex_lock(&m->lock);
		m->status = MIG_FAILED;
		snprintf(m->error, sizeof(m->error),
			 "cannot start the migration thread: %s", strerror(r));
		pthread_mutex_unlock(&m->lock);
		qmp_reply_error(req, QMP_ERROR_GENERIC, "%s", m->error);
		return;
	}
	m->thread_live = true;
	/* QEMU's order: MIGRATION setup before the reply. */
	if (m->qmp && m->cap_events)
		qmp_server_emit_event(m->qmp, "MIGRATION",
				      json_pack("{s:s}", "status", "setup"));
	qmp_reply_ok(req);
}

/* Ends a connect in progress (mig_uri_connect_cancel()). */
static void wake_connect(struct mmud_migration *m)
{
	if (m->cancel_fd >= 0 && eventfd_write(m->cancel_fd, 1) < 0)
		fprintf(stderr,
			"<4>mmud: cannot wake the migration's "
			"connect: %s\n",
			strerror(errno));
}

static void cmd_migrate_cancel(struct qmp_request *req, json_t *args,
			       void *opaque)
{
	struct mmud_migration *m = opaque;
	bool was = false;

	(void)args;
	pthread_mutex_lock(&m->lock);
	if (m->thread_live && !m->incoming_started &&
	    is_running_status(m->status) && m->status != MIG_CANCELLING &&
	    !m->cancel) {
		m->cancel = true;
		m->status = MIG_CANCELLING;
		was = true;
		wake_connect(m);
		/* A blocked write returns at once. */
		if (m->stream_fd >= 0)
			shutdown(m->stream_fd, SHUT_RDWR);
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	if (was && m->qmp && m->cap_events)
		qmp_server_emit_event(m->qmp, "MIGRATION",
				      json_pack("{s:s}", "status",
						"cancelling"));
	/* QEMU: succeeds even without a migration. */
	qmp_reply_ok(req);
}

static json_t *socket_address(const char *bound)
{
	json_t *a = json_array();

	if (!strncmp(bound, "unix:", 5)) {
		json_array_append_new(a, json_pack("{s:s, s:s}", "type", "unix",
						   "path", bound + 5));
	} else if (!strncmp(bound, "tcp:", 4)) {
		const char *host = bound + 4, *colon = strrchr(host, ':');
		char h[256];
		size_t n = colon ? (size_t)(colon - host) : strlen(host);

		if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
			host++;
			n -= 2;
		}
		snprintf(h, sizeof(h), "%.*s", (int)n, host);
		json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "type",
						   "inet", "host", h, "port",
						   colon ? colon + 1 : ""));
	}
	return a;
}

static void cmd_query_migrate(struct qmp_request *req, json_t *args,
			      void *opaque)
{
	struct mmud_migration *m = opaque;
	struct mig_stats st;
	enum mig_status status;
	json_t *ret, *ram;
	uint64_t now = mig_now_ns(), end;
	char error[sizeof(m->error)], sa[sizeof(m->socket_address)];

	(void)args;
	pthread_mutex_lock(&m->lock);
	st = m->st;
	status = m->status;
	memcpy(error, m->error, sizeof(error));
	memcpy(sa, m->socket_address, sizeof(sa));
	pthread_mutex_unlock(&m->lock);
	if (status == MIG_NONE) {
		/* QEMU: {} when no migration has run. */
		qmp_reply_return(req, json_object());
		return;
	}
	ret = json_pack("{s:s}", "status", status_names[status]);
	if (m->incoming_started) {
		if (sa[0])
			json_object_set_new(ret, "socket-address",
					    socket_address(sa));
		if (status == MIG_FAILED && error[0])
			json_object_set_new(ret, "error-desc",
					    json_string(error));
		qmp_reply_return(req, ret);
		return;
	}
	end = st.end_ns ? st.end_ns : now;
	json_object_set_new(
		ret, "total-time",
		json_integer((json_int_t)((end - st.start_ns) / 1000000)));
	if (st.setup_done_ns)
		json_object_set_new(
			ret, "setup-time",
			json_integer(
				(json_int_t)((st.setup_done_ns - st.start_ns) /
					     1000000)));
	if (status == MIG_COMPLETED)
		json_object_set_new(ret, "downtime",
				    json_integer((json_int_t)st.downtime));
	else if (status != MIG_FAILED && status != MIG_CANCELLED)
		json_object_set_new(
			ret, "expected-downtime",
			json_integer((json_int_t)st.expected_downtime));
	if (status == MIG_FAILED && error[0])
		json_object_set_new(ret, "error-desc", json_string(error));
	if (st.cpu_throttle_percentage && status == MIG_ACTIVE)
		json_object_set_new(
			ret, "cpu-throttle-percentage",
			json_integer((json_int_t)st.cpu_throttle_percentage));
	if (st.dirty_limit_on && status == MIG_ACTIVE) {
		/* The longest stop so far, live from the vCPUs. */
		for (unsigned int i = 0; i < vm_nr_vcpus(m->vm); i++) {
			struct vcpu *v = vcpu_set_get(vm_vcpu_set(m->vm), i);
			struct vcpu_dirty_limit_info dli;

			if (!v)
				continue;
			vcpu_dirty_limit_get(v, &dli);
			if (dli.max_sleep_ns / 1000 > st.dl_max_stop_us)
				st.dl_max_stop_us = dli.max_sleep_ns / 1000;
		}
		/* QEMU's names, and the longest stop of a vCPU. */
		json_object_set_new(
			ret, "dirty-limit-throttle-time-per-round",
			json_integer((json_int_t)st.dl_throttle_us));
		json_object_set_new(ret, "dirty-limit-ring-full-time",
				    json_integer((json_int_t)st.dl_period_us));
		json_object_set_new(
			ret, "x-dirty-limit-max-stop",
			json_integer((json_int_t)st.dl_max_stop_us));
	}
	if (status != MIG_SETUP) {
		ram = json_pack(
			"{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, "
			"s:I, s:I, s:I}",
			"transferred", (json_int_t)st.transferred, "remaining",
			(json_int_t)st.remaining, "total", (json_int_t)st.total,
			"duplicate", (json_int_t)st.duplicate, "normal",
			(json_int_t)st.normal, "normal-bytes",
			(json_int_t)(st.normal * PAGE_SIZE), "dirty-pages-rate",
			(json_int_t)st.dirty_pages_rate, "mbps", st.mbps,
			"dirty-sync-count", (json_int_t)st.dirty_sync_count,
			"pages-per-second", (json_int_t)st.pages_per_second,
			"precopy-bytes", (json_int_t)st.precopy_bytes,
			"downtime-bytes", (json_int_t)st.downtime_bytes,
			"page-size", (json_int_t)PAGE_SIZE);
		json_object_set_new(ret, "ram", ram);
	}
	qmp_reply_return(req, ret);
}

/* The capabilities mmud knows, in query-migrate-capabilities' order. */
static const char *const cap_names[] = {
	"events",
	"auto-converge",
	"dirty-limit",
	"pause-before-switchover",
};

static bool *cap_field(struct mmud_migration *m, const char *name)
{
	if (!strcmp(name, "events"))
		return &m->cap_events;
	if (!strcmp(name, "pause-before-switchover"))
		return &m->cap_pause_before_switchover;
	if (!strcmp(name, "auto-converge"))
		return &m->cap_auto_converge;
	if (!strcmp(name, "dirty-limit"))
		return &m->cap_dirty_limit;
	return NULL;
}

static void cmd_set_caps(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmud_migration *m = opaque;
	json_t *list = json_object_get(args, "capabilities"), *it;
	bool set[ARRAY_SIZE(cap_names)] = { false }, val[ARRAY_SIZE(cap_names)];
	size_t i;

	if (m->thread_live) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"There's a migration process in progress");
		return;
	}
	/* Every entry checked before any is applied. */
	json_array_foreach(list, i, it)
	{
		json_t *c = json_object_get(it, "capability"),
		       *s = json_object_get(it, "state");
		const char *name = json_string_value(c);
		size_t k;

		if (!json_is_object(it) || !json_is_string(c) ||
		    !json_is_boolean(s) || json_object_size(it) != 2) {
			qmp_reply_invalid_value(
				req, "capabilities",
				"a list of {\"capability\": str, \"state\": "
				"bool}");
			return;
		}
		for (k = 0; k < ARRAY_SIZE(cap_names); k++)
			if (!strcmp(name, cap_names[k]))
				break;
		if (k == ARRAY_SIZE(cap_names)) {
			qmp_reply_error(req, QMP_ERROR_GENERIC,
					"Parameter 'capability' does not "
					"accept value '%s'",
					name);
			return;
		}
		if (json_is_true(s) && !cap_field(m, name)) {
			/* Not built yet: refused rather than
			 * accepted and ignored (docs/MIGRATION.md, "The
			 * migration commands"). */
			qmp_reply_error(req, QMP_ERROR_GENERIC,
					"Capability '%s' is not supported by "
					"mmud yet",
					name);
			return;
		}
		set[k] = true;
		val[k] = json_is_true(s);
	}
	/* QEMU's check (migrate_caps_check): the two throttles exclude
	 * each other, as they would be after this command. */
	if ((set[1] ? val[1] : m->cap_auto_converge) &&
	    (set[2] ? val[2] : m->cap_dirty_limit)) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"dirty-limit conflicts with auto-converge "
				"either of then available currently");
		return;
	}
	for (i = 0; i < ARRAY_SIZE(cap_names); i++)
		if (set[i] && cap_field(m, cap_names[i]))
			*cap_field(m, cap_names[i]) = val[i];
	qmp_reply_ok(req);
}

static void cmd_query_caps(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmud_migration *m = opaque;
	json_t *list = json_array();

	(void)args;
	for (size_t i = 0; i < ARRAY_SIZE(cap_names); i++) {
		bool *f = cap_field(m, cap_names[i]);

		json_array_append_new(
			list, json_pack("{s:s, s:b}", "capability",
					cap_names[i], "state", f ? *f : false));
	}
	qmp_reply_return(req, list);
}

/* One integer parameter in [lo, hi], or the reply QEMU gives
 * (migrate_params_check). */
static bool param_u64(struct qmp_request *req, json_t *args, const char *name,
		      const char *qemu_name, uint64_t lo, uint64_t hi,
		      const char *unit, uint64_t *out, bool *given)
{
	json_t *v = json_object_get(args, name);
	uint64_t x;

	*given = v != NULL;
	if (!v)
		return true;
	if (!qmp_json_u64(v, &x) || x < lo || x > hi) {
		char what[160];

		snprintf(what, sizeof(what),
			 "an integer in the range of %" PRIu64 " to %" PRIu64
			 "%s%s",
			 lo, hi, unit[0] ? " " : "", unit);
		qmp_reply_invalid_value(req, qemu_name, what);
		return false;
	}
	*out = x;
	return true;
}

static void cmd_set_params(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmud_migration *m = opaque;
	struct mig_params p;
	bool g;
	json_t *t;

	pthread_mutex_lock(&m->lock);
	p = m->params;
	pthread_mutex_unlock(&m->lock);
	/* Everything checked on a copy: a refusal changes nothing. */
	if (!param_u64(req, args, "max-bandwidth", "max_bandwidth", 0,
		       UINT64_MAX, "bytes/second", &p.max_bandwidth, &g) ||
	    !param_u64(req, args, "downtime-limit", "downtime_limit", 0,
		       MIG_MAX_DOWNTIME_LIMIT, "milliseconds",
		       &p.downtime_limit, &g) ||
	    !param_u64(req, args, "cpu-throttle-initial",
		       "cpu_throttle_initial", 1, 99, "",
		       &p.cpu_throttle_initial, &g) ||
	    !param_u64(req, args, "cpu-throttle-increment",
		       "cpu_throttle_increment", 1, 99, "",
		       &p.cpu_throttle_increment, &g) ||
	    !param_u64(req, args, "vcpu-dirty-limit", "vcpu_dirty_limit", 1,
		       UINT64_MAX, "MB/s", &p.vcpu_dirty_limit, &g) ||
	    !param_u64(req, args, "x-vcpu-dirty-limit-period",
		       "x_vcpu_dirty_limit_period", 1, 1000, "milliseconds",
		       &p.x_vcpu_dirty_limit_period, &g))
		return;
	t = json_object_get(args, "cpu-throttle-tailslow");
	if (t)
		p.cpu_throttle_tailslow = json_is_true(t);
	/* Mid-flight too: the thread reads them at its next batch and
	 * pass; a throttled sender wakes to see a new max-bandwidth. */
	pthread_mutex_lock(&m->lock);
	m->params = p;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	qmp_reply_ok(req);
}

static void cmd_query_params(struct qmp_request *req, json_t *args,
			     void *opaque)
{
	struct mmud_migration *m = opaque;
	struct mig_params p;

	(void)args;
	pthread_mutex_lock(&m->lock);
	p = m->params;
	pthread_mutex_unlock(&m->lock);
	qmp_reply_return(
		req,
		json_pack("{s:I, s:I, s:I, s:I, s:b, s:I, s:I}",
			  "max-bandwidth", (json_int_t)p.max_bandwidth,
			  "downtime-limit", (json_int_t)p.downtime_limit,
			  "cpu-throttle-initial",
			  (json_int_t)p.cpu_throttle_initial,
			  "cpu-throttle-increment",
			  (json_int_t)p.cpu_throttle_increment,
			  "cpu-throttle-tailslow", p.cpu_throttle_tailslow,
			  "vcpu-dirty-limit", (json_int_t)p.vcpu_dirty_limit,
			  "x-vcpu-dirty-limit-period",
			  (json_int_t)p.x_vcpu_dirty_limit_period));
}

static void cmd_continue(struct qmp_request *req, json_t *args, void *opaque)
{
	struct mmud_migration *m = opaque;
	const char *want = json_string_value(json_object_get(args, "state"));
	enum mig_status st;
	bool ok = false;

	pthread_mutex_lock(&m->lock);
	st = m->status;
	if (m->thread_live && st == MIG_PRE_SWITCHOVER && want &&
	    !strcmp(want, status_names[st])) {
		m->go_on = true;
		pthread_cond_broadcast(&m->cond);
		ok = true;
	}
	pthread_mutex_unlock(&m->lock);
	if (ok)
		qmp_reply_ok(req);
	else
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Migration not in expected state: %s",
				status_names[st]);
}

/* ---- QEMU's per-vCPU dirty limit commands ----------------------------- */

/* cpu-index, when given, names a vCPU: its index, -1 when absent, or
 * false with QEMU's error sent. */
static bool dl_cpu_index(struct qmp_request *req, struct mmud_migration *m,
			 json_t *args, int *index)
{
	json_t *v = json_object_get(args, "cpu-index");
	uint64_t x;

	*index = -1;
	if (!v)
		return true;
	if (!qmp_json_u64(v, &x) || x >= vm_nr_vcpus(m->vm)) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"incorrect cpu index specified");
		return false;
	}
	*index = (int)x;
	return true;
}

/* Whether a migration's dirty-limit owns the limits now (QEMU refuses
 * to change them then). */
static bool dl_migration_owns(struct mmud_migration *m)
{
	return m->thread_live && !m->incoming_started && m->cap_dirty_limit;
}

static void cmd_set_vcpu_dirty_limit(struct qmp_request *req, json_t *args,
				     void *opaque)
{
	struct mmud_migration *m = opaque;
	uint64_t rate;
	int index;

	if (!dl_cpu_index(req, m, args, &index))
		return;
	if (!qmp_json_u64(json_object_get(args, "dirty-rate"), &rate) ||
	    rate > UINT64_MAX >> 20) {
		qmp_reply_invalid_value(req, "dirty-rate",
					"a rate in MB/s below 2^44");
		return;
	}
	if (dl_migration_owns(m)) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"can't set dirty page rate limit while "
				"migration is running");
		return;
	}
	/* QEMU: a rate of 0 cancels the limit. */
	vcpu_set_dirty_limit(vm_vcpu_set(m->vm), index,
			     (rate << 20) / PAGE_SIZE, 1000);
	qmp_reply_ok(req);
}

static void cmd_cancel_vcpu_dirty_limit(struct qmp_request *req, json_t *args,
					void *opaque)
{
	struct mmud_migration *m = opaque;
	int index;

	if (!dl_cpu_index(req, m, args, &index))
		return;
	if (dl_migration_owns(m)) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"can't cancel dirty page limit while "
				"migration is running");
		return;
	}
	vcpu_set_dirty_limit(vm_vcpu_set(m->vm), index, 0, 0);
	qmp_reply_ok(req);
}

static void cmd_query_vcpu_dirty_limit(struct qmp_request *req, json_t *args,
				       void *opaque)
{
	struct mmud_migration *m = opaque;
	struct vcpu_set *set = vm_vcpu_set(m->vm);
	json_t *list = json_array();

	(void)args;
	for (unsigned int i = 0; i < vm_nr_vcpus(m->vm); i++) {
		struct vcpu *v = vcpu_set_get(set, i);
		struct vcpu_dirty_limit_info info;

		if (!v)
			continue;
		vcpu_dirty_limit_get(v, &info);
		if (!info.limit)
			continue;
		/* QEMU's members, in MB/s; ours in x-: the pages counted
		 * and the time throttled. */
		json_array_append_new(
			list,
			json_pack("{s:i, s:I, s:I, s:I, s:I, s:I}", "cpu-index",
				  (int)i, "limit-rate",
				  (json_int_t)(info.limit * PAGE_SIZE >> 20),
				  "current-rate",
				  (json_int_t)(info.cur_rate * PAGE_SIZE >> 20),
				  "x-dirty-pages", (json_int_t)info.pages,
				  "x-throttle-us",
				  (json_int_t)(info.sleep_ns / 1000),
				  "x-max-stop-us",
				  (json_int_t)(info.max_sleep_ns / 1000)));
	}
	/* With no vCPU capped, QEMU answers an empty list too. */
	qmp_reply_return(req, list);
}

static void cmd_migrate_incoming(struct qmp_request *req, json_t *args,
				 void *opaque)
{
	struct mmud_migration *m = opaque;
	const char *uri = json_string_value(json_object_get(args, "uri"));
	json_t *eoe = json_object_get(args, "exit-on-error");
	char err[512];

	if (!m->cfg->incoming || strcmp(m->cfg->incoming, "defer")) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"'-incoming' was not specified on the command "
				"line");
		return;
	}
	if (m->incoming_started || !mmud_is_inmigrate(m->d)) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"The incoming migration has already been "
				"started");
		return;
	}
	if (!uri) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Either 'uri' or 'channels' must be "
				"specified");
		return;
	}
	m->incoming_exit_on_error = !eoe || json_is_true(eoe);
	/* The listening socket exists before the reply goes out. */
	if (mmud_incoming_start(m, uri, err, sizeof(err)) < 0) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "%s", err);
		return;
	}
	qmp_reply_ok(req);
}

/* ---- setup ------------------------------------------------------------ */

struct mmud_migration *
mmud_migration_new(struct event_base *base, struct qmp_server *qmp,
		   struct mmud_worker *worker, struct vm *vm, struct mmud *d,
		   const struct mmud_config *cfg, struct mmud_console *console,
		   struct mig_fds *fds)
{
	static const struct {
		const char *name;
		const struct qmp_arg *args;
		qmp_handler_fn *fn;
	} cmds[] = {
		{ "migrate", mmud_migrate_args, cmd_migrate },
		{ "migrate_cancel", NULL, cmd_migrate_cancel },
		{ "query-migrate", NULL, cmd_query_migrate },
		{ "migrate-set-capabilities", mmud_migrate_set_caps_args,
		  cmd_set_caps },
		{ "query-migrate-capabilities", NULL, cmd_query_caps },
		{ "migrate-set-parameters", mmud_migrate_set_params_args,
		  cmd_set_params },
		{ "query-migrate-parameters", NULL, cmd_query_params },
		{ "migrate-continue", mmud_migrate_continue_args,
		  cmd_continue },
		{ "migrate-incoming", mmud_migrate_incoming_args,
		  cmd_migrate_incoming },
		{ "set-vcpu-dirty-limit", mmud_set_vcpu_dirty_limit_args,
		  cmd_set_vcpu_dirty_limit },
		{ "cancel-vcpu-dirty-limit", mmud_cancel_vcpu_dirty_limit_args,
		  cmd_cancel_vcpu_dirty_limit },
		{ "query-vcpu-dirty-limit", NULL, cmd_query_vcpu_dirty_limit },
	};
	struct mmud_migration *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->base = base;
	m->qmp = qmp;
	m->worker = worker;
	m->vm = vm;
	m->d = d;
	m->cfg = cfg;
	m->console = console;
	m->stream_fd = -1;
	m->listen_fd = -1;
	m->taken_fd = -1;
	/* Without it a cancel still works, after the connect's timeout. */
	m->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->incoming_exit_on_error = true;
	m->params = (struct mig_params){
		.max_bandwidth = MIG_DEFAULT_MAX_BANDWIDTH,
		.downtime_limit = MIG_DEFAULT_DOWNTIME_LIMIT,
		.cpu_throttle_initial = 20,
		.cpu_throttle_increment = 10,
		.vcpu_dirty_limit = 1,
		.x_vcpu_dirty_limit_period = 1000,
	};
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	m->fds = fds;
	for (size_t i = 0; qmp && i < ARRAY_SIZE(cmds); i++)
		if (qmp_server_register(qmp, cmds[i].name, cmds[i].args,
					cmds[i].fn, m) < 0) {
			mmud_migration_free(m);
			return NULL;
		}
	return m;
}

int mmud_migration_start_incoming(struct mmud_migration *m)
{
	char err[512];

	if (!m->cfg->incoming || !strcmp(m->cfg->incoming, "defer"))
		return 0;
	if (mmud_incoming_start(m, m->cfg->incoming, err, sizeof(err)) < 0) {
		fprintf(stderr, "<3>mmud: --incoming %s: %s\n",
			m->cfg->incoming, err);
		return -1;
	}
	return 0;
}

void mmud_migration_stop(struct mmud_migration *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->cancel = true;
	wake_connect(m);
	if (m->stream_fd >= 0)
		shutdown(m->stream_fd, SHUT_RDWR);
	if (m->listen_fd >= 0)
		shutdown(m->listen_fd, SHUT_RDWR);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	join_thread(m);
}

void mmud_migration_free(struct mmud_migration *m)
{
	if (!m)
		return;
	mmud_migration_stop(m);
	if (m->taken_fd >= 0)
		close(m->taken_fd);
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	if (m->cancel_fd >= 0)
		close(m->cancel_fd);
	if (m->have_uri)
		mig_uri_free(&m->uri);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
