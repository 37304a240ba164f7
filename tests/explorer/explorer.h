/*
 * The interleaving explorer (docs/EXPLORER.md): a deterministic scheduler
 * over actor threads that run the real core/mmu and core/vcpu code built
 * with -DMMUD_EXPLORE (core/explore.h), one at a time, switching only at
 * schedule points; an oracle checked after every step; and scenarios
 * (world.c, scenarios.c) of vCPUs running guest code while the control
 * plane changes memory under them.
 */
#ifndef MMUD_EXPLORER_H
#define MMUD_EXPLORER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "explore.h"

#define EXPLORER_MAX_ACTORS 4
#define EXPLORER_MAX_STEPS 4000

/* How the scheduler picks the next actor. */
enum explorer_policy {
	/* Uniformly among the runnable ones, from a seed. */
	EXPLORER_RANDOM,
	/* Probabilistic concurrency testing: random priorities, the
	 * highest runnable runs, depth - 1 priority drops at random steps
	 * (Burckhardt et al., ASPLOS 2010). */
	EXPLORER_PCT,
	/* The forced prefix, then keep running the last actor while it is
	 * runnable (no preemption), else the lowest-numbered runnable. */
	EXPLORER_PREFIX,
};

struct explorer_config {
	enum explorer_policy policy;
	uint64_t seed;
	unsigned pct_depth; /* EXPLORER_PCT: bug depth d (>= 1) */
	const uint8_t *prefix; /* EXPLORER_PREFIX: forced choices */
	size_t prefix_len;
	bool trace; /* keep a readable trace of every step */
};

/* What one run did: the choices (for replay and exhaustive search), the
 * runnable set at each step, and the first violation, if any. */
struct explorer_run {
	size_t steps;
	uint8_t choice[EXPLORER_MAX_STEPS];
	uint8_t runnable[EXPLORER_MAX_STEPS]; /* bit per actor */
	bool failed;
	char failure[512];
	char *trace; /* malloc'd when config.trace, else NULL */
	size_t trace_len;
};

/* An actor's body; runs on its own thread, under the scheduler. */
typedef void (*explorer_actor_fn)(void *arg);
/* Checked after every step and at the end; returns false and writes what
 * it saw into msg on a violation. final: every actor has finished. */
typedef bool (*explorer_oracle_fn)(void *arg, bool final, char *msg,
				   size_t msglen);

/* Names what a schedule point's object is, for the trace: point is an
 * enum explore_point, or -1 for a lock, unlock or wait (obj: the mutex or
 * the wait's argument). Writes nothing to leave the raw pointer. */
typedef void (*explorer_describe_fn)(void *arg, int point, const void *obj,
				     uint64_t val, char *buf, size_t len);

struct explorer;

struct explorer *explorer_new(const struct explorer_config *cfg,
			      struct explorer_run *run);
/* Before explorer_run(): name and body of each actor. */
void explorer_add_actor(struct explorer *ex, const char *name,
			explorer_actor_fn fn, void *arg);
void explorer_set_oracle(struct explorer *ex, explorer_oracle_fn fn, void *arg);
void explorer_set_describer(struct explorer *ex, explorer_describe_fn fn,
			    void *arg);
/* Runs the actors to the end (or to the first violation, a deadlock or
 * EXPLORER_MAX_STEPS) and joins them. */
void explorer_run(struct explorer *ex);
void explorer_free(struct explorer *ex);

/* For actors and oracles: append a line to the trace (if kept), and
 * report a violation (the actors then run to their end, unchecked). */
void explorer_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void explorer_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The schedule point (enum explore_point) actor i is paused at, or -1
 * (at a lock, a wait, not started or finished). */
int explorer_paused_at(int i);
/* The actor that ran the last step, -1 before the first. */
int explorer_last_actor(void);
/* Steps taken so far in the current run. */
size_t explorer_step(void);

#endif
