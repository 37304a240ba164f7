/*
 * Real guests exercise the MMU's mechanisms, not only the unit tests:
 * the cr3 and ptwrite guests of tests/guests run on a VM (core/vm, real
 * vCPU threads) and the MMU statistics must show write-tracking faults,
 * unsyncs and syncs at work on their page tables, with a clean audit
 * after the run.
 * Usage: test_vm_guest_stats CR3_ELF PTWRITE_ELF
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mmu.h"
#include "mmu_rcu.h"
#include "vm.h"

static const char *elf_path[2];

static void *read_all(const char *path, size_t *len)
{
	struct stat st;
	void *buf;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size);
	assert_non_null(buf);
	assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static pthread_mutex_t ended_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ended_cond = PTHREAD_COND_INITIALIZER;
static bool ended; /* under ended_lock */

static void on_ended(void *ctx)
{
	(void)ctx;
	pthread_mutex_lock(&ended_lock);
	ended = true;
	pthread_cond_signal(&ended_cond);
	pthread_mutex_unlock(&ended_lock);
}

/* Runs the guest to its debug exit and returns the MMU statistics. */
static void run_guest(const char *path, struct mmu_stats *st)
{
	struct vm_config cfg = { .ram_size = 256ULL << 20,
				 .nr_vcpus = 1,
				 .ended_fn = on_ended };
	struct vm_result res;
	char err[256];
	struct vm *vm;

	cfg.kernel = read_all(path, &cfg.kernel_len);
	cfg.console_fd = open("/dev/null", O_WRONLY);
	assert_true(cfg.console_fd >= 0);
	vm = vm_create(&cfg, err, sizeof(err));
	if (!vm)
		fail_msg("%s: %s", path, err);
	ended = false;
	assert_int_equal(vm_start(vm), 0);
	pthread_mutex_lock(&ended_lock);
	while (!ended)
		pthread_cond_wait(&ended_cond, &ended_lock);
	pthread_mutex_unlock(&ended_lock);
	vm_result(vm, &res);
	if (res.how != VM_END_DEBUG_EXIT || res.exit_value != 0)
		fail_msg("%s: ended %d with %u: %s", path, res.how,
			 res.exit_value, res.detail);
	if (vm_audit(vm, err, sizeof(err)) != 0)
		fail_msg("%s: audit: %s", path, err);
	mmu_stats_get(vm_mmu(vm), st);
	vm_destroy(vm);
	close(cfg.console_fd);
	free((void *)cfg.kernel);
}

static void check_tracking(const char *name, const struct mmu_stats *st)
{
	printf("%s: pages %llu, faults fixed %llu, guest #PF %llu, "
	       "emulate %llu, emulated writes %llu, write-protects %llu, "
	       "zapped sptes %llu, unsyncs %llu, syncs %llu\n",
	       name, (unsigned long long)st->pages,
	       (unsigned long long)st->faults_fixed,
	       (unsigned long long)st->faults_guest_pf,
	       (unsigned long long)st->faults_emulate,
	       (unsigned long long)st->emulated_writes,
	       (unsigned long long)st->write_protects,
	       (unsigned long long)st->zapped_sptes,
	       (unsigned long long)st->unsyncs, (unsigned long long)st->syncs);
	/* The guest writes its own page tables: the MMU write-protected
	 * them; each write then faulted on write tracking and either made
	 * a leaf table unsync or was emulated; unsync tables were synced
	 * at the guest's flush points (docs/MMU.md, "Unsync and sync"). */
	assert_true(st->write_protects > 0);
	assert_true(st->faults_emulate + st->unsyncs > 0);
	assert_true(st->unsyncs > 0);
	assert_true(st->syncs > 0);
}

static void test_vm_cr3_guest_tracks_page_table_writes(void **state)
{
	struct mmu_stats st;

	(void)state;
	run_guest(elf_path[0], &st);
	check_tracking("cr3", &st);
}

static void test_vm_ptwrite_guest_tracks_page_table_writes(void **state)
{
	struct mmu_stats st;

	(void)state;
	run_guest(elf_path[1], &st);
	check_tracking("ptwrite", &st);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vm_cr3_guest_tracks_page_table_writes),
		cmocka_unit_test(
			test_vm_ptwrite_guest_tracks_page_table_writes),
	};
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: %s CR3_ELF PTWRITE_ELF\n", argv[0]);
		return 2;
	}
	elf_path[0] = argv[1];
	elf_path[1] = argv[2];
	mmu_rcu_register_thread();
	r = cmocka_run_group_tests(tests, NULL, NULL);
	mmu_rcu_unregister_thread();
	return r;
}
