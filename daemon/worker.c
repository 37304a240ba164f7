/*
 * The daemon's worker thread and its way back into the event loop. Long
 * control-plane work (pausing vCPUs and waiting for them, reset, audit,
 * anything that takes mmu_lock) runs here, one job at a time in
 * submission order, so the loop never waits on a vCPU; each job's
 * completion, and any call another thread wants made on the loop (a vCPU
 * reporting that the VM ended), goes through one FIFO drained by an
 * eventfd callback on the loop thread. It knows nothing of QMP or the VM.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "mmu_rcu.h"
#include "mmud.h"

/* Owned by whoever has it: the submitter, then the queue (lock), then the
 * worker, then the calls queue (lock), then the loop, which frees it. */
struct job {
	void (*work)(void *); /* NULL: a call_soon entry */
	void (*done)(void *);
	void *arg;
	struct job *next;
};

struct fifo {
	struct job *head, **tail;
};

/*
 * Legend: (c) constant after creation; (worker->lock) under it; (e) loop
 * thread.
 */
struct mmud_worker {
	struct event_base *base; /* (c) */
	pthread_t thread; /* (c) */
	bool started; /* (c) */
	int efd; /* (c) eventfd: calls are waiting */
	struct event *ev; /* (c) */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* jobs arrived, or stop */
	struct fifo jobs; /* (worker->lock) */
	struct fifo calls; /* (worker->lock) for the loop */
	bool stop; /* (worker->lock) no job is taken from now on */
};

static void fifo_init(struct fifo *f)
{
	f->head = NULL;
	f->tail = &f->head;
}

static void fifo_push(struct fifo *f, struct job *j)
{
	j->next = NULL;
	*f->tail = j;
	f->tail = &j->next;
}

static struct job *fifo_take_all(struct fifo *f)
{
	struct job *j = f->head;

	fifo_init(f);
	return j;
}

static void wake_loop(struct mmud_worker *w)
{
	uint64_t one = 1;

	/* EAGAIN only: the counter is already nonzero, the loop will run. */
	if (write(w->efd, &one, sizeof(one)) < 0) {
	}
}

/* Runs every queued call; loop thread (or the freeing thread). */
static void run_calls(struct mmud_worker *w)
{
	struct job *j, *next;

	pthread_mutex_lock(&w->lock);
	j = fifo_take_all(&w->calls);
	pthread_mutex_unlock(&w->lock);
	for (; j; j = next) {
		next = j->next;
		j->done(j->arg);
		free(j);
	}
}

static void efd_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	run_calls(arg);
}

static void *worker_thread(void *arg)
{
	struct mmud_worker *w = arg;

	mmu_rcu_register_thread();
	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct job *j = w->jobs.head;

		if (!j) {
			if (w->stop)
				break;
			pthread_cond_wait(&w->cond, &w->lock);
			continue;
		}
		w->jobs.head = j->next;
		if (!w->jobs.head)
			w->jobs.tail = &w->jobs.head;
		pthread_mutex_unlock(&w->lock);
		j->work(j->arg);
		pthread_mutex_lock(&w->lock);
		fifo_push(&w->calls, j);
		wake_loop(w);
	}
	pthread_mutex_unlock(&w->lock);
	mmu_rcu_unregister_thread();
	return NULL;
}

int mmud_worker_new(struct event_base *base, struct mmud_worker **out)
{
	struct mmud_worker *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	w->base = base;
	w->efd = -1;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	fifo_init(&w->jobs);
	fifo_init(&w->calls);
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		r = -errno;
		goto fail;
	}
	w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, efd_cb, w);
	if (!w->ev || event_add(w->ev, NULL) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	r = -pthread_create(&w->thread, NULL, worker_thread, w);
	if (r)
		goto fail;
	w->started = true;
	*out = w;
	return 0;
fail:
	mmud_worker_free(w);
	return r;
}

int mmud_worker_submit(struct mmud_worker *w, void (*work)(void *),
		       void (*done)(void *), void *arg)
{
	struct job *j;

	/*
	 * Once mmud_worker_free() has begun, a job would never run and its
	 * done() never come: the caller must answer at once instead. The
	 * completions that free() runs may submit (a reply lets the
	 * client's next command be dispatched), so this is reached.
	 */
	pthread_mutex_lock(&w->lock);
	if (w->stop) {
		pthread_mutex_unlock(&w->lock);
		return -ESHUTDOWN;
	}
	pthread_mutex_unlock(&w->lock);
	j = malloc(sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&w->lock);
	fifo_push(&w->jobs, j);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

int mmud_call_soon(struct mmud_worker *w, void (*fn)(void *), void *arg)
{
	struct job *j = malloc(sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->work = NULL;
	j->done = fn;
	j->arg = arg;
	pthread_mutex_lock(&w->lock);
	fifo_push(&w->calls, j);
	wake_loop(w);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

void mmud_worker_free(struct mmud_worker *w)
{
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_signal(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	/*
	 * Every job has finished: its completion is queued; run them all,
	 * and the calls those queue in turn, until none is left.
	 */
	for (;;) {
		bool more;

		run_calls(w);
		pthread_mutex_lock(&w->lock);
		more = w->calls.head != NULL;
		pthread_mutex_unlock(&w->lock);
		if (!more)
			break;
	}
	if (w->ev)
		event_free(w->ev);
	if (w->efd >= 0)
		close(w->efd);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
