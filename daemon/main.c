/*
 * mmud's entry point: reads the settings, loads the kernel file (or the
 * embedded sample guest), builds the VM, the console, the QMP socket and
 * the worker, runs the libevent loop (QMP, console clients, signals, the
 * systemd watchdog) until the guest exits, quit or SIGTERM/SIGINT, then
 * takes it all down in order (vCPUs stopped, SHUTDOWN sent, sockets
 * removed) and turns how it ended into the exit status of
 * docs/GUEST-ABI.md, "Exit statuses". It is the one place that decides to exit the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "migrate_uri.h"
#include "mmu.h"
#include "mmu_rcu.h"
#include "mmud.h"
#include "vm_paths.h"
#include "rpc.h"
#include "dev/blk.h"
#include "dev/virtio_blk.h"
#include "vm.h"
#include "x86.h"

#define KERNEL_MAX (1ULL << 30)

extern const char mmud_sample_elf[], mmud_sample_elf_end[];

/*
 * The kernel file, whole. NULL with errno set; a folder or a device is
 * EISDIR or ENOEXEC (load_kernel() says which), a file over
 * KERNEL_MAX EFBIG.
 */
static void *read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > KERNEL_MAX) {
		close(fd);
		errno = S_ISDIR(st.st_mode) ? EISDIR :
			S_ISREG(st.st_mode) ? EFBIG :
					      ENOEXEC;
		return NULL;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		return NULL;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			close(fd);
			errno = n < 0 ? errno : EIO;
			return NULL;
		}
		done += (size_t)n;
	}
	close(fd);
	*len = done;
	return buf;
}

/*
 * A named VM's runtime folder, when one of its sockets goes there:
 * made unless systemd (RuntimeDirectory=) made it, then trusted only if
 * it passes qmp_vm_dir_check() (it is ours and nobody else can write
 * to it), and refused while another mmud serves QMP in it. *made: the
 * folder is ours to remove at the end. 0 or -1 after the message.
 */
static int prepare_run_dir(const struct mmud_config *cfg, bool *made)
{
	char path[256], err[512];
	size_t n;

	*made = false;
	if (!cfg->name)
		return 0;
	qmp_vm_socket_path(path, sizeof(path), cfg->name, "");
	n = strlen(path);
	if (!(cfg->qmp && !strncmp(cfg->qmp, path, n)) &&
	    !(cfg->console_kind == MMUD_CONSOLE_SOCKET &&
	      !strncmp(cfg->console_path, path, n)))
		return 0;
	path[n - 1] = '\0';
	if ((mkdir(QMP_VM_RUN_DIR, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(path, 0700) < 0 && errno != EEXIST)) {
		fprintf(stderr,
			"<3>mmud: --name %s: cannot create %s: %s (run mmud "
			"as root or as mmud@%s.service, or give --qmp PATH "
			"and --console socket:PATH elsewhere)\n",
			cfg->name, path, strerror(errno), cfg->name);
		return -1;
	}
	if (qmp_vm_dir_check(cfg->name, false, err, sizeof(err)) < 0) {
		fprintf(stderr, "<3>mmud: --name %s: refused: %s\n", cfg->name,
			err);
		return -1;
	}
	*made = true;
	if (cfg->qmp && !strncmp(cfg->qmp, path, n - 1)) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		struct ucred cred;
		socklen_t len = sizeof(cred);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		/* Who listens there (the pid it had when it bound). */
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cfg->qmp);
		if (fd >= 0 &&
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
			fprintf(stderr,
				"<3>mmud: VM %s is already running (pid %d)\n",
				cfg->name, (int)cred.pid);
			close(fd);
			*made = false;
			return -1;
		}
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	mmud_signal_shutdown(arg);
}

/* vCPUs start only after main has set the daemon's pointer. */
/* Console clients type into COM1. */
static size_t console_input(void *vm, const void *buf, size_t len)
{
	return vm_console_input(vm, buf, len);
}

static void on_vm_ended(void *ctx)
{
	mmud_vm_ended(*(struct mmud **)ctx);
}

/* Everything main() sets up, torn down in reverse by teardown(). */
struct daemon {
	struct mmud_config cfg;
	struct vm_config vcfg;
	void *kernel_buf;
	void *initrd_buf;
	const char *what; /* the kernel's name in messages */
	struct event_base *base;
	struct mmud_console *console;
	struct mmud_worker *worker;
	struct vm *vm;
	struct qmp_server *qmp;
	struct mmud *d;
	struct memops *memops;
	struct mig_fds *fds; /* getfd's names, for fd: migration URIs */
	struct mmud_migration *mig; /* migrate, migrate-incoming... */
	struct mmud_block *block; /* query-block, BLOCK_IO_ERROR */
	struct event *sigterm, *sigint;
	struct mmud_watchdog *wd;
	bool run_dir; /* remove the VM's runtime folder at the end */
};

/* --initrd's file, whole; the loader says whether it fits. */
static int load_initrd(struct daemon *m)
{
	if (!m->cfg.initrd)
		return 0;
	m->initrd_buf = read_file(m->cfg.initrd, &m->vcfg.initrd_len);
	if (!m->initrd_buf) {
		const char *why = strerror(errno);

		if (errno == EFBIG)
			why = "larger than the 1 GiB an initrd may be";
		else if (errno == ENOEXEC)
			why = "not a regular file";
		fprintf(stderr, "<3>mmud: initrd %s: %s\n", m->cfg.initrd, why);
		return -1;
	}
	m->vcfg.initrd = m->initrd_buf;
	return 0;
}

/* --kernel's file, or the sample guest built into mmud. */
static int load_kernel(struct daemon *m)
{
	m->what = "sample guest";
	if (!m->cfg.kernel) {
		m->vcfg.kernel = mmud_sample_elf;
		m->vcfg.kernel_len =
			(size_t)(mmud_sample_elf_end - mmud_sample_elf);
		return load_initrd(m); /* refused by the loader: an ELF */
	}
	m->what = m->cfg.kernel;
	m->kernel_buf = read_file(m->cfg.kernel, &m->vcfg.kernel_len);
	if (!m->kernel_buf) {
		const char *why = strerror(errno);

		if (errno == EFBIG)
			why = "larger than the 1 GiB a kernel may be";
		else if (errno == ENOEXEC)
			why = "not a regular file";
		fprintf(stderr, "<3>mmud: %s: %s: %s\n", m->cfg.kernel_origin,
			m->cfg.kernel, why);
		return -1;
	}
	m->vcfg.kernel = m->kernel_buf;
	return load_initrd(m);
}

/* The event loop, the console sink and the worker thread. */
static int setup_loop(struct daemon *m)
{
	int r;

	m->base = event_base_new();
	if (!m->base) {
		fprintf(stderr, "<3>mmud: cannot create the event loop\n");
		return -1;
	}
	if (prepare_run_dir(&m->cfg, &m->run_dir) < 0)
		return -1;
	r = mmud_console_new(m->base, &m->cfg, &m->console);
	if (r < 0) {
		fprintf(stderr, "<3>mmud: --console %s: %s\n",
			m->cfg.console_path ? m->cfg.console_path : "stdout",
			mmud_console_strerror(r));
		return -1;
	}
	r = mmud_worker_new(m->base, &m->worker);
	if (r < 0) {
		fprintf(stderr, "<3>mmud: cannot start the worker: %s\n",
			strerror(-r));
		return -1;
	}
	return 0;
}

/* The drives of --drive and the config file, for vm_create(). */
static int create_drives(struct daemon *m)
{
	m->block = mmud_block_new(m->worker);
	if (!m->block) {
		fprintf(stderr, "<3>mmud: out of memory\n");
		return -1;
	}
	m->vcfg.drives = m->cfg.drives;
	m->vcfg.nr_drives = m->cfg.nr_drives;
	m->vcfg.blk_error_fn = mmud_block_io_error;
	m->vcfg.blk_error_ctx = m->block;
	return 0;
}

/* Says which backend each drive got: io_uring, or why not. */
static void log_drives(struct daemon *m)
{
	struct virtio_blk *b;
	char why[160];

	for (unsigned int i = 0; (b = vm_blk(m->vm, i)); i++) {
		const struct blk_drive_config *d = &m->cfg.drives[i];

		if (virtio_blk_uses_uring(b, why, sizeof(why)))
			fprintf(stderr,
				"<6>mmud: drive %s (%s): I/O through io_uring\n",
				d->id, d->file);
		else
			fprintf(stderr,
				"<4>mmud: drive %s (%s): io_uring unavailable "
				"(%s): I/O through a thread pool\n",
				d->id, d->file, why);
	}
}

/* The VM: memory, the kernel loaded, vCPUs created (not running). */
static int create_vm(struct daemon *m)
{
	char err[512];

	m->vcfg.ram_size = m->cfg.memory;
	m->vcfg.nr_vcpus = m->cfg.smp;
	m->vcfg.maxmem = m->cfg.maxmem;
	m->vcfg.dump_guest_core = m->cfg.dump_guest_core;
	m->vcfg.cmdline = m->cfg.append;
	m->vcfg.console_fn = mmud_console_write;
	m->vcfg.console_ctx = m->console;
	m->vcfg.console_fd = -1;
	m->vcfg.ended_fn = on_vm_ended;
	m->vcfg.ended_ctx = &m->d;
	if (create_drives(m) < 0)
		return -1;
	/* --cpu is process-wide: before any vCPU is created (docs/JIT.md).
	 * Without executable memory the interpreter runs (logged once). */
	x86_engine_select((enum x86_engine)m->cfg.cpu);
	/* memslots=rwlock is process-wide: before any thread starts. */
	if (m->cfg.mmu_options[MMU_OPT_MEMSLOTS] == MMU_MEMSLOTS_RWLOCK + 1)
		mmu_rcu_use_rwlock();
	m->vm = vm_create(&m->vcfg, err, sizeof(err));
	if (!m->vm) {
		fprintf(stderr, "<3>mmud: %s: %s\n", m->what, err);
		return -1;
	}
	/* Before any vCPU runs (docs/MMU.md, "The dirty ring"). */
	if (m->cfg.dirty_ring &&
	    mmu_dirty_ring_enable(vm_mmu(m->vm), m->cfg.dirty_ring, err,
				  sizeof(err)) < 0) {
		fprintf(stderr, "<3>mmud: %s: --dirty-ring: %s\n", m->what,
			err);
		return -1;
	}
	/* --mmu-option (docs/MMU.md, "Switches"), before any vCPU runs. */
	for (unsigned int o = 0; o < MMU_OPT_NR; o++)
		if (m->cfg.mmu_options[o])
			mmu_option_set(vm_mmu(m->vm), o,
				       m->cfg.mmu_options[o] - 1u);
	log_drives(m);
	mmud_console_set_input(m->console, console_input, m->vm);
	return 0;
}

/* The control plane: the QMP server (with --qmp) and its commands. */
static int serve_qmp(struct daemon *m)
{
	static const struct qmp_version version = {
		.major = 0,
		.minor = 1,
		.micro = 0,
		.package = "mmud " MMUD_VERSION,
	};
	int r;

	if (m->cfg.qmp) {
		r = qmp_server_new(m->base, m->cfg.qmp, &version, &m->qmp);
		if (r < 0) {
			fprintf(stderr, "<3>mmud: --qmp %s: %s\n", m->cfg.qmp,
				strerror(-r));
			return -1;
		}
	}
	m->d = mmud_new(m->base, m->vm, m->qmp, m->worker, &m->cfg);
	if (!m->d ||
	    (m->qmp &&
	     (!(m->memops =
			mmud_memops_new(m->base, m->qmp, m->worker, m->vm)) ||
	      !(m->fds = mmud_fds_new(m->qmp)) ||
	      mmud_interrupts_register(m->qmp, m->vm) < 0 ||
	      mmud_cpustats_register(m->qmp, m->vm) < 0 ||
	      mmud_mmuopts_register(m->qmp, m->vm) < 0 ||
	      mmud_chardev_register(m->qmp, m->console, m->cfg.qmp) < 0))) {
		fprintf(stderr, "<3>mmud: out of memory\n");
		return -1;
	}
	if (mmud_block_register(m->block, m->qmp, m->vm, m->d) < 0) {
		fprintf(stderr, "<3>mmud: out of memory\n");
		return -1;
	}
	m->mig = mmud_migration_new(m->base, m->qmp, m->worker, m->vm, m->d,
				    &m->cfg, m->console, m->fds);
	if (!m->mig) {
		fprintf(stderr, "<3>mmud: out of memory\n");
		return -1;
	}
	return 0;
}

/* SIGTERM and SIGINT end mmud cleanly; systemd's watchdog, if asked. */
static int watch_signals(struct daemon *m)
{
	uint64_t wd_usec;

	m->sigterm = evsignal_new(m->base, SIGTERM, on_signal, m->d);
	m->sigint = evsignal_new(m->base, SIGINT, on_signal, m->d);
	if (!m->sigterm || !m->sigint || evsignal_add(m->sigterm, NULL) < 0 ||
	    evsignal_add(m->sigint, NULL) < 0) {
		fprintf(stderr, "<3>mmud: cannot watch signals\n");
		return -1;
	}
	wd_usec = mmud_watchdog_usec();
	if (wd_usec &&
	    mmud_watchdog_new(m->base, m->worker, m->vm, wd_usec, &m->wd) < 0) {
		fprintf(stderr, "<3>mmud: cannot arm the watchdog\n");
		return -1;
	}
	return 0;
}

/* The audit at shutdown gives up after this long. */
#define SHUTDOWN_AUDIT_MS 10000u

/* Starts the vCPUs, serves until the end; the exit status. */
static int run(struct daemon *m)
{
	const struct mmud_config *cfg = &m->cfg;
	char err[512], msg[256];
	int status, r;

	/* A migration destination runs nothing before its stream has
	 * loaded (docs/MIGRATION.md, "The daemon's part"). */
	if (cfg->paused || cfg->incoming)
		vm_pause(m->vm); /* no vCPU runs yet: returns at once */
	if (vm_start(m->vm) < 0)
		fprintf(stderr, "<2>mmud: not every vCPU started\n");
	mmud_start(m->d);
	/* READY=1 only once --incoming listens (the QMP socket already
	 * does): a supervisor may start the source's migrate on it. */
	if (mmud_migration_start_incoming(m->mig) < 0)
		return MMUD_EXIT_REFUSED;
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=VM %s",
		 cfg->incoming ? "inmigrate" :
		 cfg->paused   ? "prelaunch" :
				 "running");
	mmud_notify(msg);
	fprintf(stderr, "<6>mmud: %s%s%s on %u vCPU(s)%s%s%s\n",
		cfg->name ? "VM " : "", cfg->name ? cfg->name : "booted",
		cfg->name ? " booted" : "", cfg->smp, m->qmp ? ", QMP on " : "",
		m->qmp ? cfg->qmp : "", cfg->paused ? ", paused" : "");

	event_base_dispatch(m->base);

	/* Before the worker goes: its pending calls end the threads'. */
	mmud_migration_stop(m->mig);
	/* Block errors from here on are not sent (the loop is done). */
	mmud_block_detach(m->block);
	/* Every job done and answered: nothing touches the VM after this. */
	mmud_worker_free(m->worker);
	m->worker = NULL;
	status = mmud_exit_status(m->d);
	/*
	 * Bounded (README.md, "Running a guest"): a third of the unit's
	 * TimeoutStopSec=30s. One cut short is logged and changes nothing.
	 */
	r = vm_audit_bounded(m->vm, SHUTDOWN_AUDIT_MS, err, sizeof(err));
	if (r == -ETIMEDOUT) {
		fprintf(stderr,
			"<4>mmud: MMU audit at shutdown not finished in %u "
			"ms: %s\n",
			SHUTDOWN_AUDIT_MS, err);
	} else if (r < 0) {
		fprintf(stderr, "<2>mmud: MMU audit at shutdown: %s\n", err);
		status = MMUD_EXIT_CRASH;
	}
	return status;
}

static void teardown(struct daemon *m)
{
	mmud_block_detach(m->block);
	mmud_worker_free(m->worker);
	vm_destroy(m->vm);
	mmud_block_free(m->block); /* after the VM, whose drives report */
	qmp_server_free(m->qmp);
	mig_fds_free(m->fds); /* after the server: its getfd keeps them */
	mmud_console_free(m->console);
	if (m->run_dir) {
		char path[256];

		/* Empty once the sockets are gone; systemd's copy may be
		 * beyond our rights (its parent is root's): it removes it. */
		qmp_vm_socket_path(path, sizeof(path), m->cfg.name, "");
		path[strlen(path) - 1] = '\0';
		rmdir(path);
	}
	if (m->sigterm)
		event_free(m->sigterm);
	if (m->sigint)
		event_free(m->sigint);
	mmud_watchdog_free(m->wd); /* after the worker: it probes with it */
	mmud_memops_free(m->memops);
	mmud_migration_free(m->mig);
	mmud_free(m->d);
	if (m->base)
		event_base_free(m->base);
	free(m->kernel_buf);
	free(m->initrd_buf);
}

int main(int argc, char **argv)
{
	struct daemon m = { 0 };
	char err[512];
	int status = MMUD_EXIT_REFUSED, r;

	signal(SIGPIPE, SIG_IGN);
	/* A console file that may not grow fails its write (EFBIG, logged
	 * by the console) instead of killing the VM. */
	signal(SIGXFSZ, SIG_IGN);
	if (mmud_config_load(&m.cfg, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "<3>mmud: %s (see mmud --help)\n", err);
		mmud_config_free(&m.cfg);
		return MMUD_EXIT_REFUSED;
	}
	if (m.cfg.help || m.cfg.version) {
		if (m.cfg.help)
			mmud_usage(stdout);
		else
			printf("mmud %s\n", MMUD_VERSION);
		mmud_config_free(&m.cfg);
		return MMUD_EXIT_OK;
	}
	/* Before the first thread, so that every thread has it. */
	r = mmud_deny_exec();
	if (r < 0)
		fprintf(stderr, "<4>mmud: cannot deny execve to itself: %s\n",
			strerror(-r));
	if (load_kernel(&m) < 0) {
		mmud_config_free(&m.cfg);
		return MMUD_EXIT_REFUSED;
	}
	mmu_rcu_register_thread();
	if (setup_loop(&m) == 0 && create_vm(&m) == 0 && serve_qmp(&m) == 0 &&
	    watch_signals(&m) == 0)
		status = run(&m);
	teardown(&m);
	mmu_rcu_unregister_thread();
	mmud_config_free(&m.cfg);
	return status;
}
