/*
 * Searches over schedules (docs/EXPLORER.md): many seeds of random and
 * PCT schedules, and the exhaustive search of every schedule with at most
 * a given number of preemptions (CHESS's bound: switching away from an
 * actor that could have gone on). On the first violation each prints the
 * scenario, how to replay it and the readable trace of the failing run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search.h"

static void report(const struct scenario *sc, const struct explorer_config *cfg,
		   const struct explorer_run *run, const char *how);

/* One run of sc under cfg, counted in st; true if it broke the oracle. */
static bool run_once(const struct scenario *sc,
		     const struct explorer_config *cfg,
		     struct explorer_run *run, struct search_stats *st)
{
	world_run(sc, cfg, run);
	st->schedules++;
	st->steps += run->steps;
	return run->failed;
}

static void report(const struct scenario *sc, const struct explorer_config *cfg,
		   const struct explorer_run *run, const char *how)
{
	struct explorer_config traced = *cfg;
	struct explorer_run *again = calloc(1, sizeof(*again));

	fprintf(stderr,
		"explorer: scenario %s (%s)\n  violation: %s\n  replay: %s",
		sc->name, sc->what, run->failure, how);
	for (unsigned o = 0; o < MMU_OPT_NR; o++)
		if (sc->mmu_options[o])
			fprintf(stderr, " --mmu-option %s=%s",
				mmu_option_desc(o)->name,
				mmu_option_desc(o)
					->values[sc->mmu_options[o] - 1u]);
	fprintf(stderr, "\n");
	if (!again)
		return;
	traced.trace = true;
	world_run(sc, &traced, again);
	if (again->trace)
		fprintf(stderr, "  trace of the failing run:\n%s",
			again->trace);
	if (!again->failed)
		fprintf(stderr, "  (the traced replay did not fail again)\n");
	free(again->trace);
	free(again);
}

bool search_seeds(const struct scenario *sc, enum explorer_policy policy,
		  uint64_t first, uint64_t n, unsigned depth,
		  struct search_stats *st)
{
	struct explorer_run *run = calloc(1, sizeof(*run));
	bool ok = true;

	if (!run)
		abort();
	for (uint64_t s = first; s < first + n && ok; s++) {
		struct explorer_config cfg = { .policy = policy,
					       .seed = s,
					       .pct_depth = depth };

		if (run_once(sc, &cfg, run, st)) {
			char how[160];

			snprintf(how, sizeof(how),
				 "explorer --scenario %s --policy %s "
				 "--depth %u --first-seed %llu --seeds 1",
				 sc->name,
				 policy == EXPLORER_PCT ? "pct" : "random",
				 depth, (unsigned long long)s);
			report(sc, &cfg, run, how);
			ok = false;
		}
		free(run->trace);
	}
	free(run);
	return ok;
}

/* A prefix of forced choices still to be run, with its preemptions. */
struct pending {
	uint8_t *choice;
	size_t len;
	unsigned preemptions;
};

bool search_exhaustive(const struct scenario *sc, unsigned bound,
		       uint64_t max_runs, struct search_stats *st)
{
	uint64_t before = st->schedules; /* the budget is this search's */
	struct explorer_run *run = calloc(1, sizeof(*run));
	struct pending *stack = NULL;
	size_t nstack = 0, cap = 0;
	bool ok = true;

	if (!run)
		abort();
	stack = calloc(1, sizeof(*stack));
	cap = 1;
	nstack = 1; /* the empty prefix */
	while (nstack && ok) {
		struct pending p = stack[--nstack];
		struct explorer_config cfg = { .policy = EXPLORER_PREFIX,
					       .prefix = p.choice,
					       .prefix_len = p.len };

		if (st->schedules - before >= max_runs) {
			st->truncated = true;
			free(p.choice);
			break;
		}
		if (run_once(sc, &cfg, run, st)) {
			char how[160];

			snprintf(how, sizeof(how),
				 "explorer --scenario %s --exhaustive %u "
				 "(schedule %llu)",
				 sc->name, bound,
				 (unsigned long long)st->schedules);
			report(sc, &cfg, run, how);
			ok = false;
			free(p.choice);
			break;
		}
		/* Every schedule that follows this run up to step j and
		 * then picks another runnable actor; default choices after
		 * the prefix never preempt. */
		for (size_t j = run->steps; j-- > p.len;) {
			uint8_t chosen = run->choice[j];
			uint8_t runnable = run->runnable[j];
			bool prev_runnable =
				j > 0 && (runnable >> run->choice[j - 1] & 1);

			for (unsigned a = 0; a < EXPLORER_MAX_ACTORS; a++) {
				unsigned pre = p.preemptions;
				struct pending q;

				if (a == chosen || !(runnable >> a & 1))
					continue;
				if (prev_runnable && a != run->choice[j - 1])
					pre++;
				if (pre > bound)
					continue;
				q.len = j + 1;
				q.preemptions = pre;
				q.choice = malloc(q.len);
				if (!q.choice)
					abort();
				memcpy(q.choice, run->choice, j);
				q.choice[j] = (uint8_t)a;
				if (nstack == cap) {
					cap *= 2;
					stack = realloc(stack,
							cap * sizeof(*stack));
					if (!stack)
						abort();
				}
				stack[nstack++] = q;
			}
		}
		free(p.choice);
		free(run->trace);
	}
	while (nstack)
		free(stack[--nstack].choice);
	free(stack);
	free(run);
	return ok;
}
