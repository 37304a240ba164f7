/*
 * explorer: the interleaving explorer's command line (docs/EXPLORER.md),
 * for the suite's bounded runs and for longer ones (scripts/explore).
 *
 *   explorer [--scenario NAME] [--policy random|pct|both] [--seeds N]
 *            [--first-seed S] [--depth D] [--exhaustive K] [--max-runs N]
 *            [--mmu-option NAME=VALUE]... [--list]
 *
 * Exit status: 0 when no schedule broke the oracle, 1 on a violation
 * (printed with its replay command and trace), 2 on a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search.h"

static void usage(void)
{
	fprintf(stderr,
		"usage: explorer [--scenario NAME] [--policy random|pct|both] "
		"[--seeds N] [--first-seed S] [--depth D] [--exhaustive K] "
		"[--max-runs N] [--mmu-option NAME=VALUE]... [--list]\n");
	exit(2);
}

static uint64_t number(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);

	if (!*s || *end)
		usage();
	return v;
}

/* --mmu-option NAME=VALUE: every scenario runs with it (docs/MMU.md,
 * "Switches"). */
static void mmu_option(const char *s, unsigned char opts[MMU_OPT_NR])
{
	enum mmu_option opt;
	unsigned int val;
	char err[200];

	if (mmu_option_parse(s, &opt, &val, err, sizeof(err)) < 0) {
		fprintf(stderr, "explorer: --mmu-option: %s\n", err);
		exit(2);
	}
	if (opt == MMU_OPT_MEMSLOTS) {
		/* The explorer's read-side sections are its own actors'
		 * (core/explore.h), not a lock. */
		fprintf(stderr, "explorer: --mmu-option: memslots is not "
				"explored\n");
		exit(2);
	}
	opts[opt] = (unsigned char)(val + 1);
}

int main(int argc, char **argv)
{
	const char *name = NULL, *policy = "both";
	uint64_t seeds = 0, first = 1, max_runs = 100000;
	unsigned depth = 3;
	int bound = -1;
	unsigned char opts[MMU_OPT_NR] = { 0 };
	bool ok = true;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--list")) {
			for (unsigned s = 0; s < nr_scenarios; s++)
				printf("%-22s %s\n", scenarios[s]->name,
				       scenarios[s]->what);
			return 0;
		}
		if (i + 1 >= argc)
			usage();
		if (!strcmp(a, "--scenario"))
			name = argv[++i];
		else if (!strcmp(a, "--policy"))
			policy = argv[++i];
		else if (!strcmp(a, "--seeds"))
			seeds = number(argv[++i]);
		else if (!strcmp(a, "--first-seed"))
			first = number(argv[++i]);
		else if (!strcmp(a, "--depth"))
			depth = (unsigned)number(argv[++i]);
		else if (!strcmp(a, "--exhaustive"))
			bound = (int)number(argv[++i]);
		else if (!strcmp(a, "--max-runs"))
			max_runs = number(argv[++i]);
		else if (!strcmp(a, "--mmu-option"))
			mmu_option(argv[++i], opts);
		else
			usage();
	}
	if (strcmp(policy, "random") && strcmp(policy, "pct") &&
	    strcmp(policy, "both"))
		usage();
	for (unsigned s = 0; s < nr_scenarios && ok; s++) {
		struct scenario with = *scenarios[s];
		const struct scenario *sc = &with;
		struct search_stats st = { 0 };

		if (name && strcmp(name, sc->name))
			continue;
		for (unsigned o = 0; o < MMU_OPT_NR; o++)
			if (opts[o])
				with.mmu_options[o] = opts[o];
		if (seeds && strcmp(policy, "pct"))
			ok = search_seeds(sc, EXPLORER_RANDOM, first, seeds,
					  depth, &st);
		if (ok && seeds && strcmp(policy, "random"))
			ok = search_seeds(sc, EXPLORER_PCT, first, seeds, depth,
					  &st);
		if (ok && bound >= 0)
			ok = search_exhaustive(sc, (unsigned)bound, max_runs,
					       &st);
		printf("%-22s %s: %llu schedules, %llu steps%s\n", sc->name,
		       ok ? "ok" : "VIOLATION",
		       (unsigned long long)st.schedules,
		       (unsigned long long)st.steps,
		       st.truncated ? " (exhaustive search cut at --max-runs)" :
				      "");
		fflush(stdout);
	}
	if (name && !scenario_find(name)) {
		fprintf(stderr, "explorer: no scenario %s (--list)\n", name);
		return 2;
	}
	return ok ? 0 : 1;
}
