/*
 * The systemd watchdog: a WATCHDOG=1 that proves more than a running
 * event loop. Every half interval the loop's timer submits a probe to
 * the worker; the probe makes a request of every vCPU and waits, bounded,
 * until each has taken its requests; its completion, back on the loop,
 * sends WATCHDOG=1 only if every vCPU answered. So each ping has gone
 * loop -> worker -> every vCPU thread -> worker -> loop: a stuck loop, a
 * worker stuck in a job, or a vCPU thread that no longer takes requests
 * (a deadlock in the MMU, say) stops the pings, and systemd restarts the
 * unit after WatchdogSec (README.md, "Running a VM with systemd"). It owns
 * the timer and the probe; sd_notify is notify.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <event2/event.h>

#include "mmud.h"
#include "vcpu.h"
#include "vm.h"

/*
 * Legend: (c) constant after creation; (e) loop thread; (job) written by
 * the probe on the worker, read by its completion on the loop, ordered
 * by the hand-over through worker->lock (docs/locking.md, "Daemon
 * threads").
 */
struct mmud_watchdog {
	struct mmud_worker *worker; /* (c) */
	struct vm *vm; /* (c) */
	struct event *timer; /* (c) every half interval */
	uint64_t bound_ns; /* (c) how long a probe waits for the vCPUs */
	bool out; /* (e) a probe is submitted and not yet done */
	bool warned; /* (e) the missed ping is logged once */
	uint64_t silent; /* (job) bit i: vCPU i did not answer */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * On the worker: VCPU_REQ_PAUSE only makes a vCPU look at its paused
 * flag again, so it is the harmless request to make. A vCPU has taken it
 * once its request count moves; a paused or halted vCPU is woken to take
 * it, as it is for every request (docs/ARCHITECTURE.md, "The vCPU run
 * loop").
 */
static void probe(void *arg)
{
	struct mmud_watchdog *wd = arg;
	unsigned int i, n = vm_nr_vcpus(wd->vm);
	uint64_t before[VM_MAX_VCPUS], waiting = 0;
	uint64_t deadline = now_ns() + wd->bound_ns;
	struct vm_vcpu_info info;

	for (i = 0; i < n; i++) {
		vm_vcpu_info(wd->vm, i, &info);
		before[i] = info.requests;
		/* A thread not started (or ended) takes none. */
		if (info.thread_id)
			waiting |= 1ULL << i;
	}
	vcpu_set_make_request(vm_vcpu_set(wd->vm), VCPU_REQ_PAUSE, false);
	/* Every vCPU that has not answered by the deadline is named: one
	 * stuck vCPU can hold others (a flush that waits for it). */
	while (waiting && now_ns() <= deadline) {
		for (i = 0; i < n; i++) {
			if (!(waiting >> i & 1))
				continue;
			vm_vcpu_info(wd->vm, i, &info);
			if (info.requests != before[i])
				waiting &= ~(1ULL << i);
		}
		if (waiting)
			nanosleep(&(struct timespec){ .tv_nsec = 1000000 },
				  NULL);
	}
	wd->silent = waiting;
}

static void probe_done(void *arg)
{
	struct mmud_watchdog *wd = arg;

	wd->out = false;
	if (wd->silent) {
		char list[VM_MAX_VCPUS * 4] = "";
		size_t len = 0;

		for (unsigned int i = 0; i < VM_MAX_VCPUS; i++)
			if (wd->silent >> i & 1)
				len += (size_t)snprintf(list + len,
							sizeof(list) - len,
							"%s%u", len ? " " : "",
							i);
		fprintf(stderr,
			"<3>mmud: watchdog: vCPU(s) %s did not take a request "
			"within %llu ms: no WATCHDOG=1\n",
			list, (unsigned long long)(wd->bound_ns / 1000000));
		return;
	}
	wd->warned = false;
	mmud_notify("WATCHDOG=1");
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct mmud_watchdog *wd = arg;

	(void)fd;
	(void)what;
	if (wd->out) {
		/* The worker has not finished the last probe in half an
		 * interval: let systemd see the silence. */
		if (!wd->warned)
			fprintf(stderr,
				"<4>mmud: watchdog: the worker has not run "
				"the last probe yet: no WATCHDOG=1\n");
		wd->warned = true;
		return;
	}
	if (mmud_worker_submit(wd->worker, probe, probe_done, wd) == 0)
		wd->out = true;
}

int mmud_watchdog_new(struct event_base *base, struct mmud_worker *worker,
		      struct vm *vm, uint64_t usec, struct mmud_watchdog **out)
{
	struct timeval tv = { .tv_sec = (time_t)(usec / 2000000),
			      .tv_usec = (suseconds_t)(usec / 2 % 1000000) };
	struct mmud_watchdog *wd = calloc(1, sizeof(*wd));

	*out = NULL;
	if (!wd)
		return -ENOMEM;
	wd->worker = worker;
	wd->vm = vm;
	/* A probe has a quarter interval; the next tick comes after half. */
	wd->bound_ns = usec / 4 * 1000;
	wd->timer = event_new(base, -1, EV_PERSIST, on_tick, wd);
	if (!wd->timer || event_add(wd->timer, &tv) < 0) {
		mmud_watchdog_free(wd);
		return -ENOMEM;
	}
	*out = wd;
	return 0;
}

void mmud_watchdog_free(struct mmud_watchdog *wd)
{
	if (!wd)
		return;
	if (wd->timer)
		event_free(wd->timer);
	free(wd);
}
