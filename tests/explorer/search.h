/*
 * Searches over the schedules of a scenario (search.c): seeds of random
 * or PCT schedules, and every schedule up to a preemption bound. Each
 * returns false after printing the first violation with its replay.
 */
#ifndef MMUD_EXPLORER_SEARCH_H
#define MMUD_EXPLORER_SEARCH_H

#include "world.h"

struct search_stats {
	uint64_t schedules;
	uint64_t steps;
	bool truncated; /* the exhaustive search hit its run budget */
};

bool search_seeds(const struct scenario *sc, enum explorer_policy policy,
		  uint64_t first, uint64_t n, unsigned depth,
		  struct search_stats *st);
bool search_exhaustive(const struct scenario *sc, unsigned bound,
		       uint64_t max_runs, struct search_stats *st);

#endif
