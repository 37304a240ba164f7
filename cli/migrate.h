/*
 * mmuctl's migration commands (cli/migrate.c): `migrate URI` with its
 * options, which sets capabilities and parameters, starts the migration
 * and optionally follows it with a progress display; `migrate status`,
 * `migrate cancel` and `incoming URI`. They drive QEMU's QMP commands
 * by QEMU's names (docs/QMP.md, "Migration").
 */
#ifndef MMUD_MMUCTL_MIGRATE_H
#define MMUD_MMUCTL_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct qmp_conn;

/* getopt_long values of migrate's options (cli/mmuctl.c's table). */
#define MMUCTL_OPT_BANDWIDTH 1000
#define MMUCTL_OPT_DOWNTIME 1001
#define MMUCTL_OPT_DIRTY_LIMIT 1002
#define MMUCTL_OPT_AUTO_CONVERGE 1003
#define MMUCTL_OPT_WAIT 1004
#define MMUCTL_OPT_PROGRESS 1005
#define MMUCTL_OPT_TO 1006

/* migrate's own options; a value of -1 / false: not given. */
struct mmuctl_migrate_opts {
	int64_t bandwidth; /* max-bandwidth, bytes/s */
	int64_t downtime; /* downtime-limit, ms */
	int64_t dirty_limit; /* vcpu-dirty-limit, MB/s; sets dirty-limit */
	bool auto_converge;
	bool wait, progress;
	/* --to: the destination's QMP socket (a VM name is resolved by
	 * cli/mmuctl.c), or NULL */
	const char *to;
	bool any; /* one of them was given (only migrate URI takes them) */
};

/* Parses --bandwidth's value (bytes/s; K/M/G suffixes in powers of
 * 1024). 0, or -1 after saying why. */
int mmuctl_migrate_opt(struct mmuctl_migrate_opts *o, int opt, const char *arg,
		       const char *prog);

/*
 * Runs `migrate ...` or `incoming URI` (argv[0] is the word). json
 * prints the replies as JSON. 0, EXIT_FAILED (the command failed, or
 * with --wait the migration did not complete) or EXIT_USAGE.
 */
int mmuctl_migrate(const char *prog, const char *socket_path, bool json,
		   int timeout_ms, const struct mmuctl_migrate_opts *o,
		   int argc, char **argv);

void mmuctl_migrate_usage(FILE *f);

/* cli/mmuctl.c: connects and negotiates, saying why not on stderr.
 * 0 or -errno. */
int mmuctl_open_qmp(const char *path, int timeout_ms, struct qmp_conn **c);

#endif
