/*
 * The explorer's scheduler and the schedule points of core/explore.h.
 * Each actor is a real thread with its own stack, but only the one the
 * scheduler chose runs: at a schedule point it hands the baton back and
 * waits on its own condition variable. Locks, waits for a vCPU to leave
 * guest mode and RCU grace periods become "not runnable until ...", which
 * the scheduler evaluates, so no actor ever blocks in the kernel on
 * another paused actor. A run is a sequence of choices and replays
 * exactly from them (docs/EXPLORER.md). It owns no MMU or vCPU state.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "explorer.h"

/*
 * Legend: (c) constant once the run starts; (x) ex->mu, the baton's lock:
 * the scheduler sets go and running, the actor clears them; (b) written
 * only by the thread holding the baton (the running actor, or the
 * scheduler between steps, when no actor runs), so every access is
 * ordered by the ex->mu hand-offs around it.
 */
struct actor {
	/* (c) */
	const char *name;
	explorer_actor_fn fn;
	void *arg;
	pthread_t thread;
	pthread_cond_t cv;
	bool go; /* (x) the scheduler's baton */
	bool done; /* (x) */
	/* The rest (b). */
	/* Not runnable while the lock is held by another actor. */
	pthread_mutex_t *want_lock;
	/* Not runnable until wait_fn(wait_arg). */
	bool (*wait_fn)(void *arg);
	void *wait_arg;
	/* RCU: nesting depth and the count of outermost unlocks. */
	int rcu_depth;
	uint64_t rcu_exits;
	/* The point it stopped at, for the trace. */
	enum explore_point point;
	const void *obj;
	uint64_t val;
	const char *what;
};

struct held_lock {
	pthread_mutex_t *m;
	int owner;
};

/* Legend as for struct actor; running is (x), the rest (b). */
struct explorer {
	struct explorer_config cfg;
	struct explorer_run *run;
	pthread_mutex_t mu;
	pthread_cond_t sched_cv;
	struct actor actors[EXPLORER_MAX_ACTORS];
	int n;
	int running; /* the actor holding the baton, -1: the scheduler */
	int last; /* the actor that ran the previous step */
	size_t last_ran[EXPLORER_MAX_ACTORS]; /* step it last ran */
	struct held_lock locks[8];
	explorer_oracle_fn oracle;
	void *oracle_arg;
	explorer_describe_fn describer;
	void *describer_arg;
	bool stop_checks; /* after a violation: finish without checking */
	uint64_t rng;
	/* PCT */
	int prio[EXPLORER_MAX_ACTORS];
	size_t change_at[8];
	unsigned nchanges;
};

/* Steps a runnable actor may wait while others run. */
#define STARVE_STEPS 200
/* The steps a scenario typically runs (PCT spreads its priority drops
 * over them). */
#define PCT_STEPS 250

static struct explorer *cur;
static __thread int self_index = -1;

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: deterministic per seed, good enough to pick. */
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static void trace_append(struct explorer_run *run, const char *s)
{
	size_t n = strlen(s);
	char *t;

	if (!run || !cur || !cur->cfg.trace)
		return;
	t = realloc(run->trace, run->trace_len + n + 2);
	if (!t)
		return;
	memcpy(t + run->trace_len, s, n);
	t[run->trace_len + n] = '\n';
	t[run->trace_len + n + 1] = 0;
	run->trace = t;
	run->trace_len += n + 1;
}

void explorer_note(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	if (!cur || !cur->cfg.trace)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	trace_append(cur->run, buf);
}

void explorer_fail(const char *fmt, ...)
{
	va_list ap;

	if (!cur || cur->run->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(cur->run->failure, sizeof(cur->run->failure), fmt, ap);
	va_end(ap);
	cur->run->failed = true;
	cur->stop_checks = true;
	trace_append(cur->run, "VIOLATION:");
	trace_append(cur->run, cur->run->failure);
}

int explorer_paused_at(int i)
{
	const struct actor *a;

	if (!cur || i < 0 || i >= cur->n)
		return -1;
	a = &cur->actors[i];
	return a->done || a->what ? -1 : (int)a->point;
}

int explorer_last_actor(void)
{
	return cur ? cur->last : -1;
}

size_t explorer_step(void)
{
	return cur ? cur->run->steps : 0;
}

/* ---- the baton ----------------------------------------------------------- */

/* The running actor stops here until the scheduler picks it again. */
static void hand_back(struct actor *a)
{
	pthread_mutex_lock(&cur->mu);
	a->go = false;
	cur->running = -1;
	pthread_cond_signal(&cur->sched_cv);
	while (!a->go)
		pthread_cond_wait(&a->cv, &cur->mu);
	pthread_mutex_unlock(&cur->mu);
}

static const char *point_name(enum explore_point p)
{
	switch (p) {
	case EXPLORE_SPTE_STORE:
		return "stores spte";
	case EXPLORE_GPTE_READ:
		return "re-reads gpte";
	case EXPLORE_FAULT_WALKED:
		return "has walked the guest tables:";
	case EXPLORE_REQUEST:
		return "sets request";
	case EXPLORE_KICK:
		return "reads the mode to kick:";
	case EXPLORE_MODE:
		return "mode";
	case EXPLORE_GUEST_INSN:
		return "runs guest code:";
	case EXPLORE_DIRTY:
		return "dirty bitmap";
	case EXPLORE_GEN:
		return "stores memslot generation";
	case EXPLORE_RMAP_WALK:
		return "walks an rmap without mmu_lock:";
	}
	return "?";
}

void explore_yield(enum explore_point p, const void *obj, uint64_t val)
{
	struct actor *a;

	if (self_index < 0)
		return;
	a = &cur->actors[self_index];
	a->point = p;
	a->obj = obj;
	a->val = val;
	a->what = NULL;
	hand_back(a);
}

static void yield_what(const char *what, const void *obj)
{
	struct actor *a = &cur->actors[self_index];

	a->what = what;
	a->obj = obj;
	a->val = 0;
	hand_back(a);
}

static struct held_lock *lock_slot(pthread_mutex_t *m, bool create)
{
	for (unsigned i = 0; i < (unsigned)ARRAY_SIZE(cur->locks); i++)
		if (cur->locks[i].m == m)
			return &cur->locks[i];
	if (!create)
		return NULL;
	for (unsigned i = 0; i < (unsigned)ARRAY_SIZE(cur->locks); i++)
		if (!cur->locks[i].m) {
			cur->locks[i].m = m;
			cur->locks[i].owner = -1;
			return &cur->locks[i];
		}
	fprintf(stderr, "explorer: more than %zu locks\n",
		ARRAY_SIZE(cur->locks));
	abort();
}

void explore_mutex_lock(pthread_mutex_t *m)
{
	struct actor *a;

	if (self_index < 0) {
		pthread_mutex_lock(m);
		return;
	}
	a = &cur->actors[self_index];
	lock_slot(m, true);
	a->want_lock = m;
	yield_what("lock", m);
	a->want_lock = NULL;
	/* The scheduler picked us only with the lock free. */
	if (pthread_mutex_trylock(m)) {
		fprintf(stderr, "explorer: lock %p not free when scheduled\n",
			(void *)m);
		abort();
	}
	lock_slot(m, true)->owner = self_index;
}

bool explore_mutex_trylock(pthread_mutex_t *m)
{
	struct held_lock *h;

	if (self_index < 0)
		return pthread_mutex_trylock(m) == 0;
	yield_what("trylock", m);
	h = lock_slot(m, true);
	if (h->owner >= 0)
		return false;
	if (pthread_mutex_trylock(m))
		return false;
	h->owner = self_index;
	return true;
}

void explore_mutex_unlock(pthread_mutex_t *m)
{
	struct held_lock *h;

	if (self_index < 0) {
		pthread_mutex_unlock(m);
		return;
	}
	h = lock_slot(m, false);
	if (h)
		h->owner = -1;
	pthread_mutex_unlock(m);
	yield_what("unlock", m);
}

void explore_wait_until(bool (*done)(void *arg), void *arg)
{
	struct actor *a;

	if (self_index < 0) {
		while (!done(arg))
			;
		return;
	}
	a = &cur->actors[self_index];
	a->wait_fn = done;
	a->wait_arg = arg;
	yield_what("wait", arg);
	a->wait_fn = NULL;
}

void explore_rcu_read_lock(void)
{
	if (self_index >= 0)
		cur->actors[self_index].rcu_depth++;
}

void explore_rcu_read_unlock(void)
{
	struct actor *a;

	if (self_index < 0)
		return;
	a = &cur->actors[self_index];
	if (--a->rcu_depth == 0)
		a->rcu_exits++;
}

struct grace {
	uint64_t exits[EXPLORER_MAX_ACTORS];
	bool inside[EXPLORER_MAX_ACTORS];
};

/* Every section open at the start of the grace period has ended. */
static bool grace_over(void *arg)
{
	struct grace *g = arg;

	for (int i = 0; i < cur->n; i++)
		if (g->inside[i] && cur->actors[i].rcu_exits == g->exits[i] &&
		    cur->actors[i].rcu_depth > 0)
			return false;
	return true;
}

void explore_rcu_synchronize(void)
{
	struct grace g;

	if (self_index < 0)
		return;
	for (int i = 0; i < cur->n; i++) {
		g.inside[i] = cur->actors[i].rcu_depth > 0 && i != self_index;
		g.exits[i] = cur->actors[i].rcu_exits;
	}
	explore_wait_until(grace_over, &g);
}

/* ---- the scheduler ------------------------------------------------------- */

static void *actor_main(void *arg)
{
	struct actor *a = arg;

	self_index = (int)(a - cur->actors);
	pthread_mutex_lock(&cur->mu);
	while (!a->go)
		pthread_cond_wait(&a->cv, &cur->mu);
	pthread_mutex_unlock(&cur->mu);
	a->fn(a->arg);
	pthread_mutex_lock(&cur->mu);
	a->done = true;
	cur->running = -1;
	pthread_cond_signal(&cur->sched_cv);
	pthread_mutex_unlock(&cur->mu);
	return NULL;
}

static bool is_runnable(struct explorer *ex, int i)
{
	struct actor *a = &ex->actors[i];

	if (a->done)
		return false;
	if (a->want_lock) {
		struct held_lock *h = lock_slot(a->want_lock, false);

		if (h && h->owner >= 0)
			return false;
	}
	if (a->wait_fn && !a->wait_fn(a->wait_arg))
		return false;
	return true;
}

static int pick(struct explorer *ex, uint8_t runnable)
{
	size_t step = ex->run->steps;
	int i, best = -1;

	if (ex->stop_checks)
		goto lowest;
	/*
	 * Fairness: an actor that spins (a vCPU retrying an access while
	 * a memslot is INVALID, waiting for the control plane to finish)
	 * would starve the one it waits for under a policy that prefers
	 * it. One that could run but has not for STARVE_STEPS goes next.
	 */
	for (i = 0; i < ex->n; i++)
		if ((runnable >> i & 1) &&
		    step - ex->last_ran[i] > STARVE_STEPS)
			return i;
	switch (ex->cfg.policy) {
	case EXPLORER_RANDOM: {
		int n = __builtin_popcount(runnable);
		int k = (int)(rng_next(&ex->rng) % (uint64_t)n);
		/* Seeds vary how long an actor keeps running: never, or
		 * for about 2, 8 or 32 steps; a race that needs a few
		 * switches at far-apart points is likelier with long runs
		 * between them. */
		unsigned stick = (unsigned)(ex->cfg.seed % 4) * 2 - 1;

		if (ex->cfg.seed % 4 && ex->last >= 0 &&
		    (runnable >> ex->last & 1) &&
		    rng_next(&ex->rng) % (1u << stick) != 0)
			return ex->last;

		for (i = 0; i < ex->n; i++)
			if ((runnable >> i & 1) && k-- == 0)
				return i;
		break;
	}
	case EXPLORER_PCT:
		for (unsigned c = 0; c < ex->nchanges; c++)
			if (ex->change_at[c] == step && ex->last >= 0)
				ex->prio[ex->last] = -(int)c - 1;
		for (i = 0; i < ex->n; i++)
			if ((runnable >> i & 1) &&
			    (best < 0 || ex->prio[i] > ex->prio[best]))
				best = i;
		return best;
	case EXPLORER_PREFIX:
		if (step < ex->cfg.prefix_len) {
			i = ex->cfg.prefix[step];
			if (i < ex->n && (runnable >> i & 1))
				return i;
			/* A prefix that no longer fits: fall through. */
		}
		if (ex->last >= 0 && (runnable >> ex->last & 1))
			return ex->last;
		break;
	}
lowest:
	for (i = 0; i < ex->n; i++)
		if (runnable >> i & 1)
			return i;
	return -1;
}

static void describe(struct explorer *ex, int i)
{
	struct actor *a = &ex->actors[i];
	char buf[300], detail[200] = "";

	if (!ex->cfg.trace)
		return;
	if (a->what && !strcmp(a->what, "start"))
		;
	else if (a->what && !strcmp(a->what, "wait"))
		snprintf(detail, sizeof(detail), "%s",
			 a->wait_fn == grace_over ?
				 "a grace period" :
				 "vCPUs to leave guest mode");
	else if (ex->describer)
		ex->describer(ex->describer_arg, a->what ? -1 : (int)a->point,
			      a->obj, a->val, detail, sizeof(detail));
	if (!detail[0])
		snprintf(detail, sizeof(detail), "%p %#llx", a->obj,
			 (unsigned long long)a->val);
	if (a->what && !strcmp(a->what, "start"))
		snprintf(buf, sizeof(buf), "%4zu %-8s starts", ex->run->steps,
			 a->name);
	else if (a->what)
		snprintf(buf, sizeof(buf), "%4zu %-8s %s %s", ex->run->steps,
			 a->name,
			 !strcmp(a->what, "unlock") ? "(after releasing)" :
			 !strcmp(a->what, "wait")   ? "has waited for" :
			 !strcmp(a->what, "lock")   ? "takes" :
						      "tries to take",
			 detail);
	else
		snprintf(buf, sizeof(buf), "%4zu %-8s %s %s", ex->run->steps,
			 a->name, point_name(a->point), detail);
	trace_append(ex->run, buf);
}

void explorer_set_describer(struct explorer *ex, explorer_describe_fn fn,
			    void *arg)
{
	ex->describer = fn;
	ex->describer_arg = arg;
}

struct explorer *explorer_new(const struct explorer_config *cfg,
			      struct explorer_run *run)
{
	struct explorer *ex = calloc(1, sizeof(*ex));

	if (!ex)
		abort();
	ex->cfg = *cfg;
	ex->run = run;
	memset(run, 0, sizeof(*run));
	pthread_mutex_init(&ex->mu, NULL);
	pthread_cond_init(&ex->sched_cv, NULL);
	ex->running = -1;
	ex->last = -1;
	ex->rng = cfg->seed * 0x9e3779b97f4a7c15ULL + 1;
	cur = ex;
	return ex;
}

void explorer_add_actor(struct explorer *ex, const char *name,
			explorer_actor_fn fn, void *arg)
{
	struct actor *a = &ex->actors[ex->n];

	if (ex->n == EXPLORER_MAX_ACTORS)
		abort();
	a->name = name;
	a->fn = fn;
	a->arg = arg;
	a->what = "start";
	pthread_cond_init(&a->cv, NULL);
	ex->n++;
}

void explorer_set_oracle(struct explorer *ex, explorer_oracle_fn fn, void *arg)
{
	ex->oracle = fn;
	ex->oracle_arg = arg;
}

static void pct_setup(struct explorer *ex)
{
	unsigned d = ex->cfg.pct_depth ? ex->cfg.pct_depth : 1;

	/* Distinct random priorities d..d+n-1; drops go below them. */
	for (int i = 0; i < ex->n; i++)
		ex->prio[i] = (int)d + i;
	for (int i = ex->n - 1; i > 0; i--) {
		int j = (int)(rng_next(&ex->rng) % (uint64_t)(i + 1));
		int t = ex->prio[i];

		ex->prio[i] = ex->prio[j];
		ex->prio[j] = t;
	}
	ex->nchanges = d - 1 < (unsigned)ARRAY_SIZE(ex->change_at) ?
			       d - 1 :
			       (unsigned)ARRAY_SIZE(ex->change_at);
	/* Change points over the length of a typical run (PCT's k). */
	for (unsigned c = 0; c < ex->nchanges; c++)
		ex->change_at[c] = 1 + rng_next(&ex->rng) % PCT_STEPS;
}

void explorer_run(struct explorer *ex)
{
	char msg[512];
	bool stuck = false;

	if (ex->cfg.policy == EXPLORER_PCT)
		pct_setup(ex);
	for (int i = 0; i < ex->n; i++)
		pthread_create(&ex->actors[i].thread, NULL, actor_main,
			       &ex->actors[i]);
	for (;;) {
		uint8_t runnable = 0;
		int i, all_done = 1;

		pthread_mutex_lock(&ex->mu);
		for (i = 0; i < ex->n; i++) {
			if (!ex->actors[i].done)
				all_done = 0;
			if (is_runnable(ex, i))
				runnable |= (uint8_t)(1u << i);
		}
		pthread_mutex_unlock(&ex->mu);
		if (all_done)
			break;
		if (!runnable || ex->run->steps == EXPLORER_MAX_STEPS) {
			explorer_fail("%s after %zu steps",
				      runnable ? "livelock: no end" :
						 "deadlock: no actor can run",
				      ex->run->steps);
			stuck = true;
			break;
		}
		i = pick(ex, runnable);
		ex->run->runnable[ex->run->steps] = runnable;
		ex->run->choice[ex->run->steps] = (uint8_t)i;
		describe(ex, i);
		pthread_mutex_lock(&ex->mu);
		ex->running = i;
		ex->actors[i].go = true;
		pthread_cond_signal(&ex->actors[i].cv);
		while (ex->running != -1)
			pthread_cond_wait(&ex->sched_cv, &ex->mu);
		pthread_mutex_unlock(&ex->mu);
		ex->last_ran[i] = ex->run->steps;
		ex->last = i;
		ex->run->steps++;
		if (!ex->stop_checks && ex->oracle &&
		    !ex->oracle(ex->oracle_arg, false, msg, sizeof(msg)))
			explorer_fail("after step %zu (%s): %s",
				      ex->run->steps - 1, ex->actors[i].name,
				      msg);
	}
	if (stuck) {
		/* The actors are parked for good; leave them (a failed run
		 * ends the process soon after it is reported). */
		for (int i = 0; i < ex->n; i++)
			pthread_detach(ex->actors[i].thread);
		ex->n = 0;
		return;
	}
	for (int i = 0; i < ex->n; i++)
		pthread_join(ex->actors[i].thread, NULL);
	if (!ex->stop_checks && ex->oracle &&
	    !ex->oracle(ex->oracle_arg, true, msg, sizeof(msg)))
		explorer_fail("at the end: %s", msg);
}

void explorer_free(struct explorer *ex)
{
	if (!ex)
		return;
	if (cur == ex)
		cur = NULL;
	free(ex);
}
