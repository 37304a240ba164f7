/*
 * kvm-memops, the KVM side of bench/run_memops.py: boots the memops guest
 * (bench/memops.c) under /dev/kvm on one vCPU with guest ABI v1 (the
 * vCPU setup of tests/tools/kvm_run.c, reduced to what that guest uses)
 * and, from the main thread while the vCPU runs, times the memory
 * operation KVM offers for each of mmud's QMP commands:
 *
 * - remove: KVM_SET_USER_MEMORY_REGION deleting a 1 MiB slot the guest
 *   does not use (added back each time, untimed; one remove per 10 ms),
 *   and the guest's touch rate before, during and after that churn,
 *   read from the guest's control page.
 * - zap: KVM has no zap-all ioctl; on a default VM, deleting any memslot
 *   zaps all shadow pages the fast way (KVM_X86_QUIRK_SLOT_ZAP_ALL), so
 *   this times the delete of an unused 4 KiB slot after the guest has
 *   built its ~100k shadow pages, and reads mmu_shadow_zapped from the
 *   VM's binary stats around it.
 * - dirty: KVM_GET_DIRTY_LOG (get, clear and write-protect) on a 1 GiB
 *   slot after the guest wrote every page of it at CPL3.
 *
 * It prints one JSON line of raw samples; run_memops.py takes medians.
 * Exit status 0 on success, 2 on a guest or KVM failure, 4 on bad
 * arguments, 77 when /dev/kvm is missing. Built by default, never run by
 * CI.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "loader.h"

#define EXIT_CRASH 2
#define EXIT_REFUSED 4
#define EXIT_SKIP 77

/* The memops guest's layout (bench/memops.c). */
#define CTRL_GPA (64ULL << 30)
#define DIRTY_GPA (16ULL << 30)
#define DIRTY_SIZE (1ULL << 30)
#define CHURN_GPA (8ULL << 30)
#define CHURN_SIZE (1ULL << 20)
#define SPARE_GPA (9ULL << 30)
#define PERIOD_NS 10000000ull /* remove churn: one per 10 ms */

enum { SLOT_LOW, SLOT_HIGH, SLOT_CTRL, SLOT_DIRTY, SLOT_CHURN };

#define CPUID_ADDR_WIDTHS 0x302e
#define COM1_BASE 0x3f8
#define DEBUG_EXIT_PORT 0xf4

struct ctrl {
	uint64_t progress;
	uint64_t go;
};

static struct {
	int kvm_fd, vm_fd, vcpu_fd;
	struct kvm_run *run;
	struct loader_ram ram[2];
	unsigned int nr_ram;
	struct ctrl *ctrl;
} vm;

static _Noreturn void die(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static _Noreturn void die(int status, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("kvm-memops: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	_exit(status);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u),
			       .tv_nsec = (long)(ns % 1000000000u) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void *anon(uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		die(EXIT_CRASH, "mmap of %" PRIu64 " bytes: %s", size,
		    strerror(errno));
	return p;
}

static void set_slot(uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size,
		     void *hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};

	if (ioctl(vm.vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		die(EXIT_CRASH, "KVM_SET_USER_MEMORY_REGION %u: %s", slot,
		    strerror(errno));
}

static void *read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0)
		die(EXIT_REFUSED, "%s: %s", path, strerror(errno));
	buf = malloc((size_t)st.st_size + 1);
	if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size)
		die(EXIT_REFUSED, "%s: cannot read", path);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static struct kvm_segment segment(uint16_t sel, uint8_t type, bool s, bool l,
				  bool db, bool g)
{
	return (struct kvm_segment){ .limit = g ? 0xffffffff : 0xfffff,
				     .selector = sel,
				     .type = type,
				     .present = 1,
				     .db = db,
				     .s = s,
				     .l = l,
				     .g = g };
}

/* CPUID as KVM supports it, with the ABI's address widths. */
static void vcpu_cpuid(void)
{
	uint32_t nent = 256;
	struct kvm_cpuid2 *c =
		calloc(1, sizeof(*c) + (nent + 1) * sizeof(c->entries[0]));
	bool found = false;

	if (!c)
		die(EXIT_CRASH, "out of memory");
	c->nent = nent;
	if (ioctl(vm.kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0)
		die(EXIT_CRASH, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 0x80000000 && e->eax < 0x80000008)
			e->eax = 0x80000008;
		if (e->function == 0x80000008) {
			e->eax = CPUID_ADDR_WIDTHS;
			found = true;
		}
		if (e->function == 1)
			e->ebx &= 0x00ffffff;
		if (e->function == 0xb || e->function == 0x1f)
			e->edx = 0;
	}
	if (!found)
		c->entries[c->nent++] =
			(struct kvm_cpuid_entry2){ .function = 0x80000008,
						   .eax = CPUID_ADDR_WIDTHS };
	if (ioctl(vm.vcpu_fd, KVM_SET_CPUID2, c) < 0)
		die(EXIT_CRASH, "KVM_SET_CPUID2: %s", strerror(errno));
	free(c);
}

static void vcpu_state(gva_t entry)
{
	struct kvm_sregs s;
	struct kvm_regs r = { .rip = entry,
			      .rflags = LOADER_RFLAGS,
			      .rdi = LOADER_BOOTINFO_GPA };
	struct kvm_segment data =
		segment(LOADER_DS, 0x3, true, false, true, true);

	if (ioctl(vm.vcpu_fd, KVM_GET_SREGS, &s) < 0)
		die(EXIT_CRASH, "KVM_GET_SREGS: %s", strerror(errno));
	s.cs = segment(LOADER_CS, 0xb, true, true, false, true);
	s.ds = s.es = s.ss = data;
	s.fs = s.gs = (struct kvm_segment){ .unusable = 1, .type = 0x3 };
	s.ldt = (struct kvm_segment){ .unusable = 1, .type = 0x2 };
	s.tr = segment(0, 0xb, false, false, false, false);
	s.tr.limit = LOADER_TSS_LIMIT;
	s.gdt = (struct kvm_dtable){ .base = LOADER_GDT_GPA,
				     .limit = LOADER_GDT_LIMIT };
	s.idt = (struct kvm_dtable){ 0 };
	s.cr0 = LOADER_CR0;
	s.cr2 = 0;
	s.cr3 = LOADER_PML4_GPA;
	s.cr4 = LOADER_CR4;
	s.cr8 = 0;
	s.efer = LOADER_EFER;
	memset(s.interrupt_bitmap, 0, sizeof(s.interrupt_bitmap));
	if (ioctl(vm.vcpu_fd, KVM_SET_SREGS, &s) < 0 ||
	    ioctl(vm.vcpu_fd, KVM_SET_REGS, &r) < 0)
		die(EXIT_CRASH, "KVM_SET_SREGS/REGS: %s", strerror(errno));
}

/* The guest only prints when it fails: pass COM1 data to stderr. */
static void *vcpu_thread(void *arg)
{
	struct kvm_run *run = vm.run;

	(void)arg;
	for (;;) {
		if (ioctl(vm.vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die(EXIT_CRASH, "KVM_RUN: %s", strerror(errno));
		}
		if (run->exit_reason == KVM_EXIT_IO) {
			uint8_t *d = (uint8_t *)run + run->io.data_offset;

			if (run->io.direction != KVM_EXIT_IO_OUT) {
				memset(d,
				       run->io.port == COM1_BASE + 5 ? 0x60 :
								       0xff,
				       run->io.size * run->io.count);
			} else if (run->io.port == DEBUG_EXIT_PORT) {
				die(EXIT_CRASH, "the guest exited (%u)", d[0]);
			} else if (run->io.port == COM1_BASE) {
				fwrite(d, run->io.size, run->io.count, stderr);
			}
		} else if (run->exit_reason == KVM_EXIT_MMIO) {
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff,
				       sizeof(run->mmio.data));
		} else {
			die(EXIT_CRASH, "vCPU exit reason %u",
			    run->exit_reason);
		}
	}
	return NULL;
}

static uint64_t progress(void)
{
	return __atomic_load_n(&vm.ctrl->progress, __ATOMIC_ACQUIRE);
}

/* Waits until the guest's progress counter reaches at least want. */
static void wait_progress(uint64_t want)
{
	uint64_t deadline = now_ns() + 120 * 1000000000ull;

	while (progress() < want) {
		if (now_ns() > deadline)
			die(EXIT_CRASH, "the guest made no progress");
		sleep_ns(200000);
	}
}

/* A VM statistic by name from KVM_GET_STATS_FD, or -1. */
static int64_t vm_stat(const char *name)
{
	struct kvm_stats_header h;
	int fd = ioctl(vm.vm_fd, KVM_GET_STATS_FD, NULL);
	int64_t ret = -1;
	size_t dsz;
	char *descs;

	if (fd < 0)
		return -1;
	if (pread(fd, &h, sizeof(h), 0) != sizeof(h)) {
		close(fd);
		return -1;
	}
	dsz = sizeof(struct kvm_stats_desc) + h.name_size;
	descs = malloc(dsz * h.num_desc);
	if (descs && pread(fd, descs, dsz * h.num_desc, h.desc_offset) ==
			     (ssize_t)(dsz * h.num_desc)) {
		for (uint32_t i = 0; i < h.num_desc; i++) {
			struct kvm_stats_desc *d =
				(struct kvm_stats_desc *)(descs + i * dsz);
			uint64_t v;

			if (strcmp(d->name, name) || d->size != 1)
				continue;
			if (pread(fd, &v, 8, h.data_offset + d->offset) == 8)
				ret = (int64_t)v;
			break;
		}
	}
	free(descs);
	close(fd);
	return ret;
}

static void print_list(const char *key, const uint64_t *v, unsigned int n)
{
	printf("\"%s\":[", key);
	for (unsigned int i = 0; i < n; i++)
		printf("%s%" PRIu64, i ? "," : "", v[i]);
	printf("]");
}

/* Touches per second over ns of host time. */
static double touch_rate(uint64_t ns)
{
	uint64_t p0 = progress(), t0 = now_ns(), p1, t1;

	sleep_ns(ns);
	p1 = progress();
	t1 = now_ns();
	return (double)(p1 - p0) * 1e9 / (double)(t1 - t0);
}

static void bench_remove(unsigned int runs)
{
	void *mem = anon(CHURN_SIZE);
	uint64_t *lat = calloc(runs, sizeof(*lat)), p0, t0, p1, t1;
	double base1, base2;

	wait_progress(1);
	sleep_ns(500000000);
	base1 = touch_rate(1000000000);
	p0 = progress();
	t0 = now_ns();
	for (unsigned int i = 0; i < runs; i++) {
		uint64_t a;

		set_slot(SLOT_CHURN, 0, CHURN_GPA, CHURN_SIZE, mem);
		a = now_ns();
		set_slot(SLOT_CHURN, 0, CHURN_GPA, 0, NULL);
		lat[i] = now_ns() - a;
		/* One remove per PERIOD_NS, as run_memops.py paces mmud. */
		while (now_ns() < t0 + (i + 1) * PERIOD_NS)
			sleep_ns(100000);
	}
	p1 = progress();
	t1 = now_ns();
	base2 = touch_rate(1000000000);
	printf("{\"mode\":\"remove\",");
	print_list("remove_ns", lat, runs);
	printf(",\"touch_base\":%.0f,\"touch_churn\":%.0f,"
	       "\"touch_base2\":%.0f}\n",
	       base1, (double)(p1 - p0) * 1e9 / (double)(t1 - t0), base2);
	free(lat);
}

static void bench_zap(unsigned int runs)
{
	void *mem = anon(4096);
	uint64_t *lat = calloc(runs, sizeof(*lat));
	uint64_t *zapped = calloc(runs, sizeof(*zapped));

	set_slot(SLOT_CHURN, 0, SPARE_GPA, 4096, mem);
	for (unsigned int i = 0; i < runs; i++) {
		int64_t z0, z1;
		uint64_t a;

		/* Two full passes since the last zap: all rebuilt. */
		wait_progress(progress() + 2);
		z0 = vm_stat("mmu_shadow_zapped");
		a = now_ns();
		set_slot(SLOT_CHURN, 0, SPARE_GPA, 0, NULL);
		lat[i] = now_ns() - a;
		z1 = vm_stat("mmu_shadow_zapped");
		zapped[i] = z0 < 0 || z1 < 0 ? 0 : (uint64_t)(z1 - z0);
		set_slot(SLOT_CHURN, 0, SPARE_GPA, 4096, mem);
	}
	printf("{\"mode\":\"zap\",");
	print_list("zap_ns", lat, runs);
	printf(",");
	print_list("zapped", zapped, runs);
	printf("}\n");
	free(lat);
	free(zapped);
}

static void bench_dirty(unsigned int runs)
{
	size_t words = DIRTY_SIZE / 4096 / 64;
	uint64_t *bitmap = calloc(words, 8);
	uint64_t *lat = calloc(runs, sizeof(*lat));
	uint64_t *pages = calloc(runs, sizeof(*pages));

	/* Round 0 is the warm-up: first touches, not timed. */
	for (unsigned int r = 0; r <= runs; r++) {
		struct kvm_dirty_log log = { .slot = SLOT_DIRTY,
					     .dirty_bitmap = bitmap };
		uint64_t a, n = 0;

		__atomic_store_n(&vm.ctrl->go, r + 1, __ATOMIC_RELEASE);
		wait_progress(r + 1);
		a = now_ns();
		if (ioctl(vm.vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			die(EXIT_CRASH, "KVM_GET_DIRTY_LOG: %s",
			    strerror(errno));
		a = now_ns() - a;
		for (size_t w = 0; w < words; w++)
			n += (uint64_t)__builtin_popcountll(bitmap[w]);
		if (r > 0) {
			lat[r - 1] = a;
			pages[r - 1] = n;
		}
	}
	printf("{\"mode\":\"dirty\",");
	print_list("harvest_ns", lat, runs);
	printf(",");
	print_list("dirty_pages", pages, runs);
	printf("}\n");
}

int main(int argc, char **argv)
{
	struct loader_config cfg;
	struct loader_result res;
	const char *mode;
	char err[256], cmdline[256];
	unsigned int runs;
	pthread_t t;
	size_t len, run_size;
	void *elf;
	int modeno;

	if (argc != 4 && argc != 5) {
		fputs("usage: kvm-memops remove|zap|dirty RUNS MEMOPS.elf "
		      "[KEY=N...]\n",
		      stderr);
		return EXIT_REFUSED;
	}
	mode = argv[1];
	runs = (unsigned int)strtoul(argv[2], NULL, 10);
	modeno = !strcmp(mode, "remove") ? 1 :
		 !strcmp(mode, "zap")	 ? 2 :
		 !strcmp(mode, "dirty")	 ? 3 :
					   0;
	if (!modeno || runs == 0 || runs > 100000)
		die(EXIT_REFUSED, "bad mode or run count");
	/* argv[4]: more of the guest's command line, e.g. "shared=1". */
	snprintf(cmdline, sizeof(cmdline), "mode=%d %s", modeno,
		 argc == 5 ? argv[4] : "");

	/* 1 GiB of RAM, all below 3 GiB: enough for 100k page tables. */
	vm.ram[0] = (struct loader_ram){ .gpa = 0,
					 .size = 1ULL << 30,
					 .hva = anon(1ULL << 30) };
	vm.nr_ram = 1;
	elf = read_file(argv[3], &len);
	cfg = (struct loader_config){ .ram = vm.ram,
				      .nr_ram = vm.nr_ram,
				      .nr_vcpus = 1,
				      .cmdline = cmdline };
	if (loader_load(&cfg, elf, len, &res, err, sizeof(err)) < 0)
		die(EXIT_REFUSED, "%s: %s", argv[3], err);

	vm.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm.kvm_fd < 0)
		die(EXIT_SKIP, "/dev/kvm: %s", strerror(errno));
	vm.vm_fd = ioctl(vm.kvm_fd, KVM_CREATE_VM, 0);
	if (vm.vm_fd < 0)
		die(EXIT_CRASH, "KVM_CREATE_VM: %s", strerror(errno));
	/* KVM's default cap is 2 % of the memslots' pages (~5k here). */
	if (ioctl(vm.vm_fd, KVM_SET_NR_MMU_PAGES, 400000UL) < 0)
		die(EXIT_CRASH, "KVM_SET_NR_MMU_PAGES: %s", strerror(errno));
	set_slot(SLOT_LOW, 0, 0, vm.ram[0].size, vm.ram[0].hva);
	vm.ctrl = anon(4096);
	set_slot(SLOT_CTRL, 0, CTRL_GPA, 4096, vm.ctrl);
	if (modeno == 3)
		set_slot(SLOT_DIRTY, KVM_MEM_LOG_DIRTY_PAGES, DIRTY_GPA,
			 DIRTY_SIZE, anon(DIRTY_SIZE));

	vm.vcpu_fd = ioctl(vm.vm_fd, KVM_CREATE_VCPU, 0);
	run_size = (size_t)ioctl(vm.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm.vcpu_fd < 0)
		die(EXIT_CRASH, "KVM_CREATE_VCPU: %s", strerror(errno));
	vm.run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      vm.vcpu_fd, 0);
	if (vm.run == MAP_FAILED)
		die(EXIT_CRASH, "mmap of the vCPU: %s", strerror(errno));
	vcpu_cpuid();
	vcpu_state(res.entry);
	if (pthread_create(&t, NULL, vcpu_thread, NULL))
		die(EXIT_CRASH, "cannot start the vCPU thread");

	if (modeno == 1)
		bench_remove(runs);
	else if (modeno == 2)
		bench_zap(runs);
	else
		bench_dirty(runs);
	fflush(stdout);
	_exit(0);
}
