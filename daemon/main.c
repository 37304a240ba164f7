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
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "mmu_rcu.h"
#include "mmud.h"
#include "vm_paths.h"
#include "rpc.h"
#include "vm.h"

#define KERNEL_MAX (1ULL << 30)

extern const char mmud_sample_elf[], mmud_sample_elf_end[];

static void *read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > KERNEL_MAX) {
		if (!errno || S_ISREG(st.st_mode))
			errno = EFBIG;
		else
			errno = EINVAL;
		close(fd);
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
 * A named VM's runtime folder, when one of its sockets goes there and
 * systemd (RuntimeDirectory=) has not made it already. Failing here is
 * not fatal: binding the socket then says what is wrong.
 */
static void make_run_dir(const struct mmud_config *cfg)
{
	char path[256];
	size_t n;

	if (!cfg->name)
		return;
	qmp_vm_socket_path(path, sizeof(path), cfg->name, "");
	n = strlen(path);
	if (!(cfg->qmp && !strncmp(cfg->qmp, path, n)) &&
	    !(cfg->console_kind == MMUD_CONSOLE_SOCKET &&
	      !strncmp(cfg->console_path, path, n)))
		return;
	if (mkdir(QMP_VM_RUN_DIR, 0755) < 0 && errno != EEXIST)
		return;
	path[n - 1] = '\0';
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	mmud_signal_shutdown(arg);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	/* Sent from the loop: it proves the loop itself is alive. */
	mmud_notify("WATCHDOG=1");
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

int main(int argc, char **argv)
{
	static const struct qmp_version version = {
		.major = 0,
		.minor = 1,
		.micro = 0,
		.package = "mmud " MMUD_VERSION,
	};
	struct mmud_config cfg;
	struct vm_config vcfg = { 0 };
	struct event *sigterm = NULL, *sigint = NULL, *wd = NULL;
	struct mmud_console *console = NULL;
	struct mmud_worker *worker = NULL;
	struct qmp_server *qmp = NULL;
	struct event_base *base = NULL;
	struct mmud *d = NULL;
	struct memops *memops = NULL;
	struct vm *vm = NULL;
	void *kernel_buf = NULL;
	const char *what = "sample guest";
	char err[512], msg[256];
	uint64_t wd_usec;
	int r, status = MMUD_EXIT_REFUSED;

	signal(SIGPIPE, SIG_IGN);
	if (mmud_config_load(&cfg, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "<3>mmud: %s (see mmud --help)\n", err);
		mmud_config_free(&cfg);
		return MMUD_EXIT_REFUSED;
	}
	if (cfg.help || cfg.version) {
		if (cfg.help)
			mmud_usage(stdout);
		else
			printf("mmud %s\n", MMUD_VERSION);
		mmud_config_free(&cfg);
		return MMUD_EXIT_OK;
	}
	if (cfg.kernel) {
		what = cfg.kernel;
		kernel_buf = read_file(cfg.kernel, &vcfg.kernel_len);
		if (!kernel_buf) {
			fprintf(stderr, "<3>mmud: --kernel %s: %s\n",
				cfg.kernel, strerror(errno));
			mmud_config_free(&cfg);
			return MMUD_EXIT_REFUSED;
		}
		vcfg.kernel = kernel_buf;
	} else {
		vcfg.kernel = mmud_sample_elf;
		vcfg.kernel_len =
			(size_t)(mmud_sample_elf_end - mmud_sample_elf);
	}

	mmu_rcu_register_thread();
	base = event_base_new();
	if (!base) {
		fprintf(stderr, "<3>mmud: cannot create the event loop\n");
		goto out;
	}
	make_run_dir(&cfg);
	r = mmud_console_new(base, &cfg, &console);
	if (r < 0) {
		fprintf(stderr, "<3>mmud: --console %s: %s\n",
			cfg.console_path ? cfg.console_path : "stdout",
			strerror(-r));
		goto out;
	}
	r = mmud_worker_new(base, &worker);
	if (r < 0) {
		fprintf(stderr, "<3>mmud: cannot start the worker: %s\n",
			strerror(-r));
		goto out;
	}

	vcfg.ram_size = cfg.memory;
	vcfg.nr_vcpus = cfg.smp;
	vcfg.cmdline = cfg.append;
	vcfg.console_fn = mmud_console_write;
	vcfg.console_ctx = console;
	vcfg.console_fd = -1;
	vcfg.ended_fn = on_vm_ended;
	vcfg.ended_ctx = &d;
	vm = vm_create(&vcfg, err, sizeof(err));
	if (!vm) {
		fprintf(stderr, "<3>mmud: %s: %s\n", what, err);
		goto out;
	}
	mmud_console_set_input(console, console_input, vm);
	if (cfg.qmp) {
		r = qmp_server_new(base, cfg.qmp, &version, &qmp);
		if (r < 0) {
			fprintf(stderr, "<3>mmud: --qmp %s: %s\n", cfg.qmp,
				strerror(-r));
			goto out;
		}
	}
	d = mmud_new(base, vm, qmp, worker, &cfg);
	if (!d || (qmp && (!(memops = mmud_memops_new(qmp, worker, vm)) ||
			   mmud_chardev_register(qmp, console, cfg.qmp) < 0))) {
		fprintf(stderr, "<3>mmud: out of memory\n");
		goto out;
	}
	sigterm = evsignal_new(base, SIGTERM, on_signal, d);
	sigint = evsignal_new(base, SIGINT, on_signal, d);
	if (!sigterm || !sigint || evsignal_add(sigterm, NULL) < 0 ||
	    evsignal_add(sigint, NULL) < 0) {
		fprintf(stderr, "<3>mmud: cannot watch signals\n");
		goto out;
	}
	wd_usec = mmud_watchdog_usec();
	if (wd_usec) {
		struct timeval tv = { .tv_sec = (time_t)(wd_usec / 2000000),
				      .tv_usec = (suseconds_t)(wd_usec / 2 %
							       1000000) };

		wd = event_new(base, -1, EV_PERSIST, on_watchdog, NULL);
		if (!wd || event_add(wd, &tv) < 0) {
			fprintf(stderr, "<3>mmud: cannot arm the watchdog\n");
			goto out;
		}
	}

	if (cfg.paused)
		vm_pause(vm); /* no vCPU runs yet: returns at once */
	if (vm_start(vm) < 0)
		fprintf(stderr, "<2>mmud: not every vCPU started\n");
	status = MMUD_EXIT_OK;
	mmud_start(d);
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=VM %s",
		 cfg.paused ? "prelaunch" : "running");
	mmud_notify(msg);
	fprintf(stderr, "<6>mmud: %s%s%s on %u vCPU(s)%s%s%s\n",
		cfg.name ? "VM " : "", cfg.name ? cfg.name : "booted",
		cfg.name ? " booted" : "", cfg.smp, qmp ? ", QMP on " : "",
		qmp ? cfg.qmp : "", cfg.paused ? ", paused" : "");

	event_base_dispatch(base);

	/* Every job done and answered: nothing touches the VM after this. */
	mmud_worker_free(worker);
	worker = NULL;
	status = mmud_exit_status(d);
	if (vm_audit(vm, err, sizeof(err)) < 0) {
		fprintf(stderr, "<2>mmud: MMU audit at shutdown: %s\n", err);
		status = MMUD_EXIT_CRASH;
	}
out:
	mmud_worker_free(worker);
	vm_destroy(vm);
	qmp_server_free(qmp);
	mmud_console_free(console);
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (wd)
		event_free(wd);
	mmud_memops_free(memops);
	mmud_free(d);
	if (base)
		event_base_free(base);
	mmu_rcu_unregister_thread();
	free(kernel_buf);
	mmud_config_free(&cfg);
	return status;
}
