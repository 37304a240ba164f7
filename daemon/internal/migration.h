/*
 * Live migration in the daemon (docs/MIGRATION.md, "The daemon's part";
 * docs/MIGRATION.md, "The migration commands"): the state both ends
 * share, private to
 * daemon/migration.c (the QMP commands, the source's migration thread:
 * precopy passes over the dirty log, the switchover) and
 * daemon/incoming.c (the destination: listening, loading the stream on
 * its own thread, running or exiting afterwards). The argument tables
 * of the commands are here too, with QEMU's names.
 */
#ifndef MMUD_DAEMON_MIGRATION_H
#define MMUD_DAEMON_MIGRATION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "migrate_uri.h"
#include "rpc.h"

struct event_base;
struct mmud;
struct mmud_config;
struct mmud_console;
struct mmud_worker;
struct mig_fds;
struct vm;

/* QEMU's MigrationStatus: the values mmud uses
 * (docs/MIGRATION.md, "The migration commands"). */
enum mig_status {
	MIG_NONE,
	MIG_SETUP,
	MIG_ACTIVE,
	MIG_PRE_SWITCHOVER,
	MIG_DEVICE,
	MIG_COMPLETED,
	MIG_FAILED,
	MIG_CANCELLING,
	MIG_CANCELLED,
};

const char *mig_status_name(enum mig_status st);

/* QEMU's defaults (docs/MIGRATION.md, "The migration commands"). */
#define MIG_DEFAULT_MAX_BANDWIDTH (128ULL << 20) /* bytes/s; 0: none */
#define MIG_DEFAULT_DOWNTIME_LIMIT 300 /* ms */
#define MIG_MAX_DOWNTIME_LIMIT 2000000 /* ms, as QEMU checks it */

/* migrate-set-parameters' members (QEMU's MigrationParameters). */
struct mig_params {
	uint64_t max_bandwidth;
	uint64_t downtime_limit;
	uint64_t cpu_throttle_initial, cpu_throttle_increment;
	bool cpu_throttle_tailslow;
	uint64_t vcpu_dirty_limit, x_vcpu_dirty_limit_period;
};

/* What query-migrate reports (QEMU's MigrationInfo and MigrationStats). */
struct mig_stats {
	uint64_t start_ns, setup_done_ns, end_ns, switch_ns;
	uint64_t transferred, remaining, total;
	uint64_t duplicate, normal;
	uint64_t dirty_pages_rate, pages_per_second;
	double mbps;
	uint64_t dirty_sync_count;
	uint64_t precopy_bytes, downtime_bytes;
	uint64_t expected_downtime, downtime; /* ms */
	unsigned int cpu_throttle_percentage; /* auto-converge; 0: none */
	/* dirty-limit, while it throttles (us): the most time one vCPU
	 * spent throttled per x-vcpu-dirty-limit-period in the last pass,
	 * the period, and the longest single stop of any vCPU. */
	bool dirty_limit_on;
	uint64_t dl_throttle_us, dl_period_us, dl_max_stop_us;
};

/*
 * Legend: (c) constant after mmud_migration_new(); (e) loop thread;
 * (l) under lock; (t) the migration or incoming thread while it runs,
 * the loop before it starts and after it is joined.
 */
struct mmud_migration {
	struct event_base *base; /* (c) */
	struct qmp_server *qmp; /* (c) NULL without a socket */
	struct mmud_worker *worker; /* (c) */
	struct vm *vm; /* (c) */
	struct mmud *d; /* (c) */
	const struct mmud_config *cfg; /* (c) */
	struct mig_fds *fds; /* (c) QMP getfd's names */
	struct mmud_console *console; /* (c) where console sections go */

	/* (e) migrate-set-capabilities */
	bool cap_events, cap_pause_before_switchover, cap_auto_converge;
	bool cap_dirty_limit;
	pthread_t thread; /* (e) */
	bool thread_live; /* (e) started and not yet joined */
	bool incoming_started; /* (e) migrate-incoming or --incoming URI */
	bool incoming_exit_on_error; /* (e) */

	pthread_mutex_t lock;
	pthread_cond_t cond; /* (l) cancel, migrate-continue, parameters,
			      * src_runstate */
	struct mig_params params; /* (l) read by the thread at each pass */
	enum mig_status status; /* (l) */
	struct mig_stats st; /* (l) */
	char error[512]; /* (l) error-desc */
	bool cancel; /* (l) migrate_cancel or shutdown */
	bool go_on; /* (l) migrate-continue came */
	/* (l) the source's run state as its switchover began (an enum
	 * migrate_runstate, from the loop thread), -1 until it is known;
	 * cond tells the migration thread. */
	int src_runstate;
	int stream_fd; /* (l) the connection, shut down by a cancel */
	/* (c) an eventfd (or -1) a cancel writes, so that a connect in
	 * progress ends at once; drained when a migration starts. */
	int cancel_fd;
	char socket_address[300]; /* (l) the destination's bound address */
	int listen_fd; /* (l) the destination's listening socket */

	/* (t) the source's or the destination's URI, parsed on the loop */
	struct mig_uri uri;
	bool have_uri;
	int taken_fd; /* fd:NAME's descriptor, taken on the loop; or -1 */
};

/* incoming.c: the destination. */
int mmud_incoming_start(struct mmud_migration *m, const char *uri, char *err,
			size_t errlen);

/* migration.c, for incoming.c: status changes (any thread; the event
 * goes out from the loop, in order), and the end of a thread's work
 * (loop: joins it, then calls fn). */
void mig_set_status(struct mmud_migration *m, enum mig_status st);
uint64_t mig_now_ns(void);

/* ---- QMP argument tables (QEMU's names) -------------------------------- */

/* migrate */
static const struct qmp_arg mmud_migrate_args[] = {
	{ "uri", QMP_ARG_STRING, true },
	{ "detach", QMP_ARG_BOOL, true },
	{ "resume", QMP_ARG_BOOL, true },
	QMP_ARGS_END,
};

/* migrate-incoming */
static const struct qmp_arg mmud_migrate_incoming_args[] = {
	{ "uri", QMP_ARG_STRING, true },
	{ "exit-on-error", QMP_ARG_BOOL, true },
	QMP_ARGS_END,
};

/* migrate-set-capabilities */
static const struct qmp_arg mmud_migrate_set_caps_args[] = {
	{ "capabilities", QMP_ARG_ARRAY, false },
	QMP_ARGS_END,
};

/* migrate-set-parameters */
static const struct qmp_arg mmud_migrate_set_params_args[] = {
	{ "max-bandwidth", QMP_ARG_INT, true },
	{ "downtime-limit", QMP_ARG_INT, true },
	{ "cpu-throttle-initial", QMP_ARG_INT, true },
	{ "cpu-throttle-increment", QMP_ARG_INT, true },
	{ "cpu-throttle-tailslow", QMP_ARG_BOOL, true },
	{ "vcpu-dirty-limit", QMP_ARG_INT, true },
	{ "x-vcpu-dirty-limit-period", QMP_ARG_INT, true },
	QMP_ARGS_END,
};

/* set-vcpu-dirty-limit, cancel-vcpu-dirty-limit (QEMU's) */
static const struct qmp_arg mmud_set_vcpu_dirty_limit_args[] = {
	{ "cpu-index", QMP_ARG_INT, true },
	{ "dirty-rate", QMP_ARG_INT, false },
	QMP_ARGS_END,
};
static const struct qmp_arg mmud_cancel_vcpu_dirty_limit_args[] = {
	{ "cpu-index", QMP_ARG_INT, true },
	QMP_ARGS_END,
};

/* migrate-continue */
static const struct qmp_arg mmud_migrate_continue_args[] = {
	{ "state", QMP_ARG_STRING, false },
	QMP_ARGS_END,
};

#endif
