/*
 * daemon/: mmud's private interfaces, one module: the settings (command
 * line and config file), the console sink with its socket, the worker
 * thread and cross-thread calls into the event loop, the sd_notify
 * protocol, and the control plane (run state, QMP commands, events,
 * shutdown). main.c wires them together and alone decides to exit.
 */
#ifndef MMUD_DAEMON_H
#define MMUD_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses (docs/GUEST-ABI.md, "Exit statuses"); a debug exit gives
 * (v<<1|1). */
#define MMUD_EXIT_OK 0
#define MMUD_EXIT_CRASH 2
#define MMUD_EXIT_REFUSED 4
/* An incoming migration (--incoming, migrate-incoming) failed to load. */
#define MMUD_EXIT_MIGRATION 6

struct event_base;

/* enum mmu_option's MMU_OPT_NR (core/mmu/mmu.h), which config.c checks
 * against without the MMU's headers in every user of this one. */
#define MMUD_MMU_OPTIONS 6

/* ---- settings (config.c) ---------------------------------------------- */

enum mmud_console_kind {
	MMUD_CONSOLE_STDOUT,
	MMUD_CONSOLE_FILE,
	MMUD_CONSOLE_SOCKET,
};

/* What the guest's crash does (QEMU's -action panic=...). */
enum mmud_panic_action {
	MMUD_PANIC_DEFAULT, /* pause with a QMP socket, exit without */
	MMUD_PANIC_PAUSE, /* stay up in guest-panicked until reset/quit */
	MMUD_PANIC_EXIT, /* SHUTDOWN (guest-panic), exit status 2 */
};

struct blk_drive_config;

/* Every setting; strings are owned (free with mmud_config_free). */
struct mmud_config {
	char *kernel; /* NULL: the embedded sample guest */
	/* Where kernel was named, for messages: "--kernel" or
	 * "FILE:LINE: kernel"; NULL without kernel. */
	char *kernel_origin;
	char *initrd; /* a bzImage's initial RAM disk; NULL: none */
	uint64_t memory;
	/* Boot RAM plus hot-added memslots at most (QEMU's -m maxmem); 0:
	 * the larger of VM_MAX_RAM and memory. */
	uint64_t maxmem;
	/* Guest RAM in core dumps (QEMU's dump-guest-core=on). */
	bool dump_guest_core;
	unsigned int smp;
	char *append;
	enum mmud_console_kind console_kind;
	char *console_path; /* FILE or SOCKET */
	char *qmp; /* NULL: no QMP socket; a path (unix: taken off) */
	char *name; /* NULL: unnamed */
	bool paused;
	/* --incoming: "defer" or a migration URI; NULL: not a
	 * destination. */
	char *incoming;
	enum mmud_panic_action panic;
	bool no_reboot; /* a guest reset shuts down (QEMU's -no-reboot) */
	/* --drive and the config file's drive lines (core/dev/blk.h),
	 * virtio-mmio devices 0.. in order; owned. */
	struct blk_drive_config *drives;
	unsigned int nr_drives;
	/* --dirty-ring: entries per vCPU of the dirty ring, 0: off. */
	unsigned int dirty_ring;
	/* --mmu-option NAME=VALUE (docs/MMU.md, "Switches"), by enum
	 * mmu_option: 0 not given, else the value + 1. */
	unsigned char mmu_options[MMUD_MMU_OPTIONS];
	/* --cpu: 0 interp, 1 jit, 2 jit-verify (enum x86_engine's
	 * values, docs/JIT.md). */
	unsigned char cpu;
	char *config; /* the --config file, or NULL */
	bool help, version;
};

/*
 * Parses argv, then the --config file for what the command line left
 * unset, then fills in defaults (a named VM's sockets in
 * /run/mmud/NAME/). 0, or -EINVAL with the reason (naming the flag, or
 * file:line) in err.
 */
int mmud_config_load(struct mmud_config *cfg, int argc, char **argv, char *err,
		     size_t errlen);
void mmud_config_free(struct mmud_config *cfg);
void mmud_usage(FILE *f);

/* ---- the console (console.c) ------------------------------------------ */

#define MMUD_CONSOLE_REPLAY (64u << 10)

struct mmud_console;

/*
 * Opens the console: stdout, a file (a regular file or a new one, never
 * through a symbolic link; created 0600, truncated), or a listening Unix
 * socket (mode 0600) served on base that streams everything the guest
 * prints to every client and replays the last MMUD_CONSOLE_REPLAY bytes
 * on connect. Output is written from the loop and never blocks: a sink
 * that does not keep up loses the oldest bytes (counted, logged at the
 * end). With stdout the console and stderr the same terminal, fd 2 is
 * captured until mmud_console_free() so log lines fall between the
 * guest's lines. 0 or -errno (mmud_console_strerror() says it).
 */
int mmud_console_new(struct event_base *base, const struct mmud_config *cfg,
		     struct mmud_console **out);
/* What mmud_console_new()'s error means, for the --console message. */
const char *mmud_console_strerror(int err);
/* The guest printed buf: any thread (vCPU threads); only appends to the
 * ring and wakes the loop, never blocks on a sink. Matches
 * vm_config.console_fn. */
void mmud_console_write(void *console, const char *buf, size_t len);
/* Takes what the guest can of console input; returns how much. */
typedef size_t (*mmud_console_input_fn)(void *ctx, const void *buf, size_t len);
/* Loop thread, before the loop runs: where socket clients' input goes
 * (without it, input is dropped). */
void mmud_console_set_input(struct mmud_console *c, mmud_console_input_fn fn,
			    void *ctx);
/* What ringbuf-write may have waiting for the guest at once. */
#define MMUD_CONSOLE_INPUT_MAX (1u << 20)
/* Loop thread: queues input for the guest (ringbuf-write), delivered as
 * it reads. 0, -ENOSPC beyond MMUD_CONSOLE_INPUT_MAX waiting, -ENOMEM. */
int mmud_console_queue_input(struct mmud_console *c, const void *buf,
			     size_t len);
/* Any thread: takes up to max bytes of output from ringbuf-read's cursor
 * (what was overwritten before it was read is lost); returns how many. */
size_t mmud_console_read(struct mmud_console *c, char *buf, size_t max);
/* Any thread: gives the last n bytes mmud_console_read returned back to
 * its cursor, to be read again (lost as any if overwritten meanwhile). */
void mmud_console_unread(struct mmud_console *c, size_t n);
/* Loop thread: the console as query-chardev's "filename" ("stdio",
 * "file:PATH", "[disconnected:]unix:PATH,server=on"); NULL: -ENOMEM. */
char *mmud_console_chardev_filename(const struct mmud_console *c);
/* Loop thread, after the loop: restores fd 2, gives the sink and the
 * clients what they have not had yet (a few seconds at most), closes
 * clients and removes the socket file. */
void mmud_console_free(struct mmud_console *c);

/* ---- base64 (base64.c) ------------------------------------------------ */

/* RFC 4648 base64 of n bytes, NUL-terminated; NULL means -ENOMEM. */
char *mmud_base64_encode(const uint8_t *p, size_t n);
/* Strict decoding (length a multiple of 4, padding only at the end):
 * 0 with *out malloc'd, -EINVAL for anything else, or -ENOMEM. */
int mmud_base64_decode(const char *s, size_t len, uint8_t **out,
		       size_t *outlen);

/* ---- UTF-8 (utf8.c) --------------------------------------------------- */

/* The n bytes as valid UTF-8, each byte that does not begin a valid
 * sequence (overlong, surrogate, past U+10FFFF, cut short) as U+FFFD;
 * malloc'd, NUL-terminated, its length in *outlen; NULL: -ENOMEM. */
char *mmud_utf8_sanitize(const char *buf, size_t n, size_t *outlen);
/* How many bytes at the end of buf[0..n) begin a sequence that is cut
 * short (a lead byte followed only by continuation bytes, fewer than it
 * announces), with the length it announces in *need; 0 if none. */
size_t mmud_utf8_cut_tail(const char *buf, size_t n, size_t *need);

/* ---- the worker and cross-thread calls (worker.c) --------------------- */

struct mmud_worker;

/* One worker thread (registered with the MMU's RCU) running jobs in
 * submission order, and a queue of calls into the loop. */
int mmud_worker_new(struct event_base *base, struct mmud_worker **out);
/*
 * Runs work(arg) on the worker, then done(arg) on the loop thread. Jobs
 * run one at a time in order, so a pause and the resume submitted after
 * it never cross. Loop thread only. 0, -ENOMEM, or -ESHUTDOWN once
 * mmud_worker_free() has begun (the job would never run: the caller
 * answers at once).
 */
int mmud_worker_submit(struct mmud_worker *w, void (*work)(void *),
		       void (*done)(void *), void *arg);
/* fn(arg) on the loop thread soon; any thread. 0 or -ENOMEM. */
int mmud_call_soon(struct mmud_worker *w, void (*fn)(void *), void *arg);
/* Loop thread, after the loop: finishes every job, runs every pending
 * call on the calling thread, then stops the thread. */
void mmud_worker_free(struct mmud_worker *w);

/* ---- sd_notify (notify.c) --------------------------------------------- */

/* Sends one state string ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET;
 * nothing without it. 0 or -errno. */
int mmud_notify(const char *state);
/* The watchdog interval systemd asked for (WATCHDOG_USEC, for this pid),
 * or 0. */
uint64_t mmud_watchdog_usec(void);

/*
 * watchdog.c: WATCHDOG=1 every half of usec, each sent only after a
 * probe has gone through worker and every vCPU of vm and back. Free it
 * after worker. 0 or -ENOMEM.
 */
struct mmud_watchdog;
struct vm;
int mmud_watchdog_new(struct event_base *base, struct mmud_worker *worker,
		      struct vm *vm, uint64_t usec, struct mmud_watchdog **out);
void mmud_watchdog_free(struct mmud_watchdog *wd);

/* sandbox.c: from now on execve and execveat fail with EPERM in this
 * thread and every thread it starts. 0 or -errno. */
int mmud_deny_exec(void);

/* ---- the control plane (control.c) ------------------------------------ */

struct mmud;
struct vm;
struct qmp_server;

/*
 * The daemon's state: owns nothing it is given but its own object. qmp
 * may be NULL (no socket). Registers the QMP commands.
 */
struct mmud *mmud_new(struct event_base *base, struct vm *vm,
		      struct qmp_server *qmp, struct mmud_worker *worker,
		      const struct mmud_config *cfg);
/*
 * Migration's run states (migration.c, incoming.c; loop thread), QEMU's
 * inmigrate, finish-migrate and postmigrate (docs/MIGRATION.md, "The
 * daemon's part"):
 * - mmud_is_inmigrate: started with --incoming and not loaded yet;
 * - mmud_migration_can_start: false (err says why) while the VM cannot
 *   be a migration source (inmigrate, shutting down, crashed);
 * - mmud_migration_switchover: the source stops for its last pass
 *   (finish-migrate; STOP if it ran); returns the state it was in, an
 *   enum migrate_runstate, for the stream (docs/MIGRATION.md, "run
 *   state");
 * - mmud_migration_source_end: completed: postmigrate (the migration
 *   thread left the vCPUs paused); else back to running (RESUME), or
 *   to the state before the switchover (paused if stopped since);
 * - mmud_incoming_end: loaded, with the source's run state src_state
 *   (an enum migrate_runstate): a running source's runs here (RESUME;
 *   true) or pauses with --paused or after stop (false); any other
 *   state is taken as it is (false); not loaded: shutdown, exit status
 *   MMUD_EXIT_MIGRATION.
 */
bool mmud_is_inmigrate(const struct mmud *d);
bool mmud_migration_can_start(const struct mmud *d, char *err, size_t errlen);
int mmud_migration_switchover(struct mmud *d);
void mmud_migration_source_end(struct mmud *d, bool completed);
bool mmud_incoming_end(struct mmud *d, bool loaded, int src_state);
/* For vm_config.ended_fn: any thread. */
void mmud_vm_ended(void *mmud);
/* A block I/O error with werror/rerror=stop (loop thread, after its
 * BLOCK_IO_ERROR): a running VM pauses in io-error, STOP; cont retries
 * the kept requests (docs/QMP.md, "BLOCK_IO_ERROR"). */
void mmud_io_error_stop(struct mmud *d);
/* Starts in prelaunch (cfg->paused) or running: vCPUs must not run yet. */
void mmud_start(struct mmud *d);
/* SIGTERM/SIGINT: a clean shutdown (SHUTDOWN host-signal, status 0). */
void mmud_signal_shutdown(struct mmud *d);
/* After the loop: the exit status. */
int mmud_exit_status(const struct mmud *d);
void mmud_free(struct mmud *d);

/* chardev.c: QEMU's query-chardev (the console as "serial0", the QMP
 * socket qmp_path as "compat_monitor0"), ringbuf-read and ringbuf-write
 * on the console. 0 or -errno. */
int mmud_chardev_register(struct qmp_server *qmp, struct mmud_console *c,
			  const char *qmp_path);

/* interrupts.c: inject-nmi and x-query-lapic on vm. 0 or -errno. */
int mmud_interrupts_register(struct qmp_server *qmp, struct vm *vm);

/* ---- block devices (block.c) ------------------------------------------- */

struct mmud_block;
struct virtio_blk_error;
/* Before the VM (its drives report errors to it); NULL: -ENOMEM. */
struct mmud_block *mmud_block_new(struct mmud_worker *worker);
/* query-block, query-blockstats, x-query-virtio and
 * x-query-virtio-queue-status on qmp (may be NULL: no commands); d
 * pauses the VM on an error with werror/rerror=stop. */
int mmud_block_register(struct mmud_block *b, struct qmp_server *qmp,
			struct vm *vm, struct mmud *d);
/* The VM's blk_error_fn: BLOCK_IO_ERROR, sent from the loop thread.
 * Any thread. */
void mmud_block_io_error(void *ctx, const struct virtio_blk_error *e);
/* No more events: before the worker is freed. NULL does nothing. */
void mmud_block_detach(struct mmud_block *b);
void mmud_block_free(struct mmud_block *b);
/* cpustats.c: x-query-cpu-stats on vm. 0 or -errno. */
int mmud_cpustats_register(struct qmp_server *qmp, struct vm *vm);
/* mmuopts.c: x-query-mmu-options and x-mmu-set-option on vm's MMU. 0 or
 * -errno. */
int mmud_mmuopts_register(struct qmp_server *qmp, struct vm *vm);

/*
 * memops.c: the QMP commands that change guest memory while the vCPUs run
 * (x-memslot-add/-remove, x-mmu-zap-all, x-dirty-log-*), registered on
 * qmp; their work runs on worker. NULL means -ENOMEM.
 */
struct memops;
struct memops *mmud_memops_new(struct event_base *base, struct qmp_server *qmp,
			       struct mmud_worker *worker, struct vm *vm);
void mmud_memops_free(struct memops *m);

/*
 * dirtyrate.c: calc-dirty-rate and query-dirty-rate (docs/QMP.md,
 * "calc-dirty-rate / query-dirty-rate (QEMU)"), made by memops. Loop thread.
 * mmud_dirtyrate_logs(): a dirty-bitmap measurement owns the dirty logs
 * now, so the x-dirty-log commands must wait.
 */
struct dirtyrate;
struct dirtyrate *mmud_dirtyrate_new(struct event_base *base,
				     struct qmp_server *qmp,
				     struct mmud_worker *worker, struct vm *vm);
void mmud_dirtyrate_free(struct dirtyrate *dr);
/* The mode of a measurement that owns the dirty logs now (dirty-bitmap,
 * dirty-ring), or NULL. */
const char *mmud_dirtyrate_logs(const struct dirtyrate *dr);
/* x-dirty-ring-harvest, x-dirty-ring-reset and the rings' reaper
 * (dirtyring.c); made by mmud_dirtyrate_new(). NULL: -ENOMEM. */
struct ring_cmds;
struct ring_cmds *mmud_dirtyring_new(struct event_base *base,
				     struct qmp_server *qmp,
				     struct mmud_worker *worker, struct vm *vm);
void mmud_dirtyring_free(struct ring_cmds *c);

/*
 * migration.c and incoming.c: live migration (docs/MIGRATION.md, "The
 * migration commands"): the QMP commands registered on qmp (NULL:
 * none), the source's
 * migration thread and the destination's loading thread; fds (may be
 * NULL) holds the descriptors QMP getfd named, for fd:NAME. NULL means
 * -ENOMEM. mmud_migration_start_incoming(): --incoming URI (not
 * defer) listens or opens at once; -1 after the message.
 * mmud_migration_stop(): after the loop, before the worker is freed:
 * cancels and joins any migration thread.
 */
struct mmud_migration;
struct mig_fds;
struct mmud_migration *
mmud_migration_new(struct event_base *base, struct qmp_server *qmp,
		   struct mmud_worker *worker, struct vm *vm, struct mmud *d,
		   const struct mmud_config *cfg, struct mmud_console *console,
		   struct mig_fds *fds);
int mmud_migration_start_incoming(struct mmud_migration *m);
void mmud_migration_stop(struct mmud_migration *m);
void mmud_migration_free(struct mmud_migration *m);

#endif
