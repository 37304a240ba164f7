/*
 * kvm-run, the KVM reference runner: boots a guest ELF under /dev/kvm with
 * exactly the boot protocol of guest ABI v1 (docs/GUEST-ABI.md), using
 * core/loader for the image and low memory and setting every vCPU's
 * registers from loader.h. It owns the process: argument parsing, guest
 * RAM (anonymous mappings registered as KVM memslots), one thread per
 * vCPU, and the few devices the guests use (COM1 transmit and LSR, the
 * debug-exit port 0xF4; unclaimed ports and MMIO read as all ones). Its
 * transcript on stdout and its exit status are the ground truth mmud's
 * own CPU is compared against, so it adds nothing a guest could observe
 * beyond what the ABI describes, except CPUID, which is what KVM supports
 * with leaf 0x80000008 set to the ABI's address widths.
 *
 * Exit statuses: ((v << 1) | 1) & 0xff after OUT v to 0xF4; 2 when the
 * guest crashed (triple fault, every vCPU halted, internal error, failed
 * entry, any other exit or KVM failure); 4 for bad arguments or a refused
 * kernel; 6 on timeout; 77 when /dev/kvm is missing or unusable.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
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
#define EXIT_TIMEOUT 6
#define EXIT_SKIP 77

#define COM1_BASE 0x3f8
#define COM1_LCR 3
#define COM1_LSR 5
#define COM1_LCR_DLAB 0x80
#define COM1_LSR_IDLE 0x60 /* THRE | TEMT: ready to send */
#define DEBUG_EXIT_PORT 0xf4

#define MAX_SMP 256
#define MAX_MEM_MIB (1024u * 1024u) /* 1 TiB of address space */
#define MAX_KERNEL_SIZE (1ULL << 30)

/* Leaf 0x80000008 EAX of guest ABI v1: 48 linear, 46 physical bits. */
#define CPUID_ADDR_WIDTHS 0x302e

struct vcpu {
	unsigned int index; /* (c) */
	int fd; /* (c) */
	struct kvm_run *run; /* (c) shared with KVM; owner thread only */
	pthread_t thread; /* (c) once started */
	uint64_t rip; /* (h) where it halted or stopped */
	bool halted; /* (h) */
};

/*
 * Legend: (c) constant once the vCPU threads start; (o) out_lock;
 * (h) halt_lock; (a) atomic, seq_cst. exit_lock is taken by whoever decides
 * to end the process and never released, so reports never interleave.
 * Lock order: exit_lock, halt_lock, out_lock.
 */
struct vm {
	int kvm_fd; /* (c) */
	int vm_fd; /* (c) */
	size_t run_size; /* (c) */
	struct loader_ram ram[2]; /* (c) */
	unsigned int nr_ram; /* (c) */
	struct kvm_cpuid2 *cpuid; /* (c) */
	struct vcpu *vcpus; /* (c) array of nr_vcpus */
	unsigned int nr_vcpus; /* (c) */
	pthread_barrier_t start;
	pthread_mutex_t exit_lock;
	pthread_mutex_t halt_lock;
	pthread_mutex_t out_lock;
	unsigned int nr_halted; /* (h) */
	uint8_t lcr; /* (o) COM1 line control: only DLAB matters */
	atomic_bool stopping; /* (a) timeout: vCPUs record RIP and stop */
	sem_t stopped; /* posted by each vCPU that stopped for the timeout */
};

static struct vm vm = {
	.exit_lock = PTHREAD_MUTEX_INITIALIZER,
	.halt_lock = PTHREAD_MUTEX_INITIALIZER,
	.out_lock = PTHREAD_MUTEX_INITIALIZER,
};

/* The kvm_run of the calling vCPU thread, for the kick signal handler. */
static __thread struct kvm_run *this_run;

static void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void msg(const char *fmt, ...)
{
	va_list ap;

	fputs("kvm-run: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * Ends the process with the guest's transcript complete. _exit, so vCPU
 * threads still inside KVM_RUN do not matter; out_lock so no character is
 * being written while stdout is flushed.
 */
static _Noreturn void vm_exit(int status)
{
	pthread_mutex_lock(&vm.out_lock);
	fflush(stdout);
	_exit(status);
}

/* For failures before the vCPUs run: nothing has been written yet. */
static _Noreturn void die(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static _Noreturn void die(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("kvm-run: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	vm_exit(status);
}

static void usage(FILE *f)
{
	fputs("usage: kvm-run [--smp N] [--mem MIB] [--append CMDLINE]"
	      " [--timeout SECONDS] KERNEL.elf\n"
	      "Boots KERNEL.elf under /dev/kvm with guest ABI v1 and prints"
	      " its serial output.\n"
	      "Defaults: --smp 1 --mem 256 --timeout 60 (0 = none).\n"
	      "Exit status: ((v << 1) | 1) & 0xff after the guest writes v to"
	      " port 0xf4;\n"
	      "2 guest crashed, 4 bad arguments or kernel, 6 timeout,"
	      " 77 no usable /dev/kvm.\n",
	      f);
}

static unsigned long parse_num(const char *opt, const char *s,
			       unsigned long min, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		die(EXIT_REFUSED, "%s: '%s' is not a number in [%lu, %lu]", opt,
		    s, min, max);
	return v;
}

/* ---- guest RAM and the kernel ------------------------------------- */

static void *read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die(EXIT_REFUSED, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		die(EXIT_REFUSED, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		die(EXIT_REFUSED, "%s: not a regular file", path);
	if ((uint64_t)st.st_size > MAX_KERNEL_SIZE)
		die(EXIT_REFUSED, "%s: larger than %llu bytes", path,
		    MAX_KERNEL_SIZE);
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf)
		die(EXIT_CRASH, "out of memory");
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die(EXIT_REFUSED, "%s: %s", path, strerror(errno));
		if (n == 0)
			break; /* shrank under us: the loader sees the rest */
		done += (size_t)n;
	}
	close(fd);
	*len = done;
	return buf;
}

/* docs/GUEST-ABI.md, "Memory map": [0, min(size, 3 GiB)), the rest from
 * 4 GiB. */
static void ram_setup(uint64_t size)
{
	uint64_t low = size < LOADER_LOW_RAM_MAX ? size : LOADER_LOW_RAM_MAX;
	gpa_t base[2] = { 0, LOADER_HIGH_RAM_BASE };
	uint64_t len[2] = { low, size - low };

	vm.nr_ram = 0;
	for (unsigned int i = 0; i < 2; i++) {
		void *p;

		if (len[i] == 0)
			continue;
		p = mmap(NULL, len[i], PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			die(EXIT_CRASH, "mmap of %" PRIu64 " bytes: %s", len[i],
			    strerror(errno));
		vm.ram[vm.nr_ram++] = (struct loader_ram){
			.gpa = base[i],
			.size = len[i],
			.hva = p,
		};
	}
}

static void *gpa_hva(gpa_t gpa, uint64_t len)
{
	for (unsigned int i = 0; i < vm.nr_ram; i++) {
		const struct loader_ram *r = &vm.ram[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size &&
		    len <= r->size - (gpa - r->gpa))
			return (uint8_t *)r->hva + (gpa - r->gpa);
	}
	return NULL;
}

/* ---- KVM setup ------------------------------------------------------ */

static void kvm_open(void)
{
	int ver;

	vm.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm.kvm_fd < 0)
		die(EXIT_SKIP, "/dev/kvm: %s", strerror(errno));
	ver = ioctl(vm.kvm_fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION)
		die(EXIT_SKIP, "KVM API version %d, want %d", ver,
		    KVM_API_VERSION);
	if (ioctl(vm.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) <= 0)
		die(EXIT_SKIP, "KVM lacks KVM_CAP_IMMEDIATE_EXIT");
}

static unsigned int kvm_max_vcpus(void)
{
	int n = ioctl(vm.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);

	if (n <= 0)
		n = ioctl(vm.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (n <= 0)
		n = 4; /* api.rst: assume 4 when neither is reported */
	return (unsigned int)n;
}

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn,
					   uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn &&
		    (!(c->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
		     c->entries[i].index == idx))
			return &c->entries[i];
	return NULL;
}

/* What KVM can give a guest; per-vCPU fields are patched later. */
static void cpuid_get(void)
{
	struct kvm_cpuid_entry2 *e;
	uint32_t nent = 64;

	for (;;) {
		vm.cpuid =
			calloc(1, sizeof(*vm.cpuid) + (nent + 1) * sizeof(*e));
		if (!vm.cpuid)
			die(EXIT_CRASH, "out of memory");
		vm.cpuid->nent = nent;
		if (ioctl(vm.kvm_fd, KVM_GET_SUPPORTED_CPUID, vm.cpuid) == 0)
			break;
		if (errno != E2BIG || nent >= 4096)
			die(EXIT_CRASH, "KVM_GET_SUPPORTED_CPUID: %s",
			    strerror(errno));
		free(vm.cpuid);
		nent *= 2;
	}

	/* One spare entry was allocated for a missing 0x80000008. */
	e = cpuid_find(vm.cpuid, 0x80000008, 0);
	if (!e) {
		struct kvm_cpuid_entry2 *max =
			cpuid_find(vm.cpuid, 0x80000000, 0);

		if (max && max->eax < 0x80000008)
			max->eax = 0x80000008;
		e = &vm.cpuid->entries[vm.cpuid->nent++];
		memset(e, 0, sizeof(*e));
		e->function = 0x80000008;
	}
	e->eax = CPUID_ADDR_WIDTHS;
}

/*
 * kvm_pvm does not keep the table it is given: after KVM_SET_CPUID2 the
 * vCPU reports host feature bits KVM_GET_SUPPORTED_CPUID left out (SMEP
 * and SMAP among them). Guests read their features from CPUID, so that is
 * harmless, but the address widths are part of the ABI: make sure they
 * stuck.
 */
static void cpuid_check(struct vcpu *v)
{
	uint32_t nent = vm.cpuid->nent + 64;
	struct kvm_cpuid2 *got =
		calloc(1, sizeof(*got) + nent * sizeof(got->entries[0]));
	struct kvm_cpuid_entry2 *e;

	if (!got)
		die(EXIT_CRASH, "out of memory");
	got->nent = nent;
	if (ioctl(v->fd, KVM_GET_CPUID2, got) < 0)
		die(EXIT_CRASH, "vCPU %u: KVM_GET_CPUID2: %s", v->index,
		    strerror(errno));
	e = cpuid_find(got, 0x80000008, 0);
	if (!e || e->eax != CPUID_ADDR_WIDTHS)
		die(EXIT_CRASH,
		    "vCPU %u: KVM did not keep CPUID 0x80000008 EAX = 0x%x",
		    v->index, CPUID_ADDR_WIDTHS);
	free(got);
}

/* Patch the vCPU's APIC IDs into the shared table, then hand it to KVM. */
static void cpuid_set(struct vcpu *v)
{
	for (uint32_t i = 0; i < vm.cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &vm.cpuid->entries[i];

		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffff) | (v->index << 24);
		else if (e->function == 0xb || e->function == 0x1f)
			e->edx = v->index;
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, vm.cpuid) < 0)
		die(EXIT_CRASH, "vCPU %u: KVM_SET_CPUID2: %s", v->index,
		    strerror(errno));
	cpuid_check(v);
}

static struct kvm_segment segment(uint16_t sel, uint8_t type, bool s, bool l,
				  bool db, bool g)
{
	return (struct kvm_segment){
		.base = 0,
		.limit = g ? 0xffffffff : 0xfffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = db,
		.s = s,
		.l = l,
		.g = g,
	};
}

/* The entry state (docs/GUEST-ABI.md, "Entry state"), identical on every
 * vCPU. */
static void vcpu_init_state(struct vcpu *v, gva_t entry)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_segment data =
		segment(LOADER_DS, 0x3, true, false, true, true);
	struct kvm_segment null = { .unusable = 1, .type = 0x3 };

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		die(EXIT_CRASH, "KVM_GET_SREGS: %s", strerror(errno));
	sregs.cs = segment(LOADER_CS, 0xb, true, true, false, true);
	sregs.ds = sregs.es = sregs.ss = data;
	sregs.fs = sregs.gs = null;
	sregs.ldt = (struct kvm_segment){ .unusable = 1, .type = 0x2 };
	sregs.tr = segment(0, 0xb, false, false, false, false);
	sregs.tr.limit = LOADER_TSS_LIMIT;
	sregs.gdt = (struct kvm_dtable){ .base = LOADER_GDT_GPA,
					 .limit = LOADER_GDT_LIMIT };
	sregs.idt = (struct kvm_dtable){ .base = 0, .limit = 0 };
	sregs.cr0 = LOADER_CR0;
	sregs.cr2 = 0;
	sregs.cr3 = LOADER_PML4_GPA;
	sregs.cr4 = LOADER_CR4;
	sregs.cr8 = 0;
	sregs.efer = LOADER_EFER;
	memset(sregs.interrupt_bitmap, 0, sizeof(sregs.interrupt_bitmap));
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		die(EXIT_CRASH, "vCPU %u: KVM_SET_SREGS: %s", v->index,
		    strerror(errno));

	memset(&regs, 0, sizeof(regs));
	regs.rip = entry;
	regs.rflags = LOADER_RFLAGS;
	regs.rsp = 0;
	regs.rdi = LOADER_BOOTINFO_GPA;
	regs.rsi = v->index;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		die(EXIT_CRASH, "vCPU %u: KVM_SET_REGS: %s", v->index,
		    strerror(errno));
}

static void vm_create(gva_t entry)
{
	int n;

	vm.vm_fd = ioctl(vm.kvm_fd, KVM_CREATE_VM, 0);
	if (vm.vm_fd < 0)
		die(EXIT_CRASH, "KVM_CREATE_VM: %s", strerror(errno));
	for (unsigned int i = 0; i < vm.nr_ram; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = i,
			.guest_phys_addr = vm.ram[i].gpa,
			.memory_size = vm.ram[i].size,
			.userspace_addr = (uintptr_t)vm.ram[i].hva,
		};

		if (ioctl(vm.vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			die(EXIT_CRASH, "KVM_SET_USER_MEMORY_REGION %u: %s", i,
			    strerror(errno));
	}
	n = ioctl(vm.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (n < (int)sizeof(struct kvm_run))
		die(EXIT_CRASH, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	vm.run_size = (size_t)n;
	cpuid_get();

	for (unsigned int i = 0; i < vm.nr_vcpus; i++) {
		struct vcpu *v = &vm.vcpus[i];

		v->index = i;
		v->fd = ioctl(vm.vm_fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0)
			die(EXIT_CRASH, "KVM_CREATE_VCPU %u: %s", i,
			    strerror(errno));
		v->run = mmap(NULL, vm.run_size, PROT_READ | PROT_WRITE,
			      MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED)
			die(EXIT_CRASH, "mmap of vCPU %u: %s", i,
			    strerror(errno));
		cpuid_set(v);
		vcpu_init_state(v, entry);
	}
}

/* ---- reports -------------------------------------------------------- */

static void print_segment(const char *name, const struct kvm_segment *s)
{
	fprintf(stderr,
		"  %s=%04x base=%016llx limit=%08x type=%x s=%u dpl=%u p=%u "
		"l=%u db=%u g=%u unusable=%u\n",
		name, s->selector, (unsigned long long)s->base, s->limit,
		s->type, s->s, s->dpl, s->present, s->l, s->db, s->g,
		s->unusable);
}

/* The code bytes at RIP, through the guest's own page tables. */
static void print_code(struct vcpu *v, uint64_t rip)
{
	struct kvm_translation t = { .linear_address = rip };
	const uint8_t *p;

	if (ioctl(v->fd, KVM_TRANSLATE, &t) < 0 || !t.valid)
		return;
	p = gpa_hva(t.physical_address, 16);
	if (!p)
		return;
	fputs("  code at RIP:", stderr);
	for (unsigned int i = 0; i < 16; i++)
		fprintf(stderr, " %02x", p[i]);
	fputc('\n', stderr);
}

static void print_vcpu(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		fprintf(stderr, "  (registers unavailable: %s)\n",
			strerror(errno));
		return;
	}
#define R(x) ((unsigned long long)(x))
	fprintf(stderr,
		"  RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx\n"
		"  RSI=%016llx RDI=%016llx RBP=%016llx RSP=%016llx\n"
		"  R8 =%016llx R9 =%016llx R10=%016llx R11=%016llx\n"
		"  R12=%016llx R13=%016llx R14=%016llx R15=%016llx\n"
		"  RIP=%016llx RFLAGS=%08llx\n"
		"  CR0=%016llx CR2=%016llx CR3=%016llx CR4=%016llx\n"
		"  EFER=%016llx\n",
		R(r.rax), R(r.rbx), R(r.rcx), R(r.rdx), R(r.rsi), R(r.rdi),
		R(r.rbp), R(r.rsp), R(r.r8), R(r.r9), R(r.r10), R(r.r11),
		R(r.r12), R(r.r13), R(r.r14), R(r.r15), R(r.rip), R(r.rflags),
		R(s.cr0), R(s.cr2), R(s.cr3), R(s.cr4), R(s.efer));
#undef R
	print_segment("CS", &s.cs);
	print_segment("SS", &s.ss);
	print_code(v, r.rip);
}

/* A vCPU stopped the VM: report under exit_lock and exit 2. */
static _Noreturn void crash(struct vcpu *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static _Noreturn void crash(struct vcpu *v, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&vm.exit_lock);
	fprintf(stderr, "kvm-run: vCPU %u: ", v->index);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	print_vcpu(v);
	vm_exit(EXIT_CRASH);
}

/* ---- devices -------------------------------------------------------- */

static _Noreturn void debug_exit(uint64_t value)
{
	vm_exit((int)(((value << 1) | 1) & 0xff));
}

static void com1_out(unsigned int reg, uint8_t val)
{
	pthread_mutex_lock(&vm.out_lock);
	if (reg == 0 && !(vm.lcr & COM1_LCR_DLAB))
		putchar(val);
	else if (reg == COM1_LCR)
		vm.lcr = val;
	pthread_mutex_unlock(&vm.out_lock);
}

static uint8_t com1_in(unsigned int reg)
{
	return reg == COM1_LSR ? COM1_LSR_IDLE : 0;
}

/*
 * One port access of 1, 2 or 4 bytes. A PC's 8-bit devices see a wider
 * access as consecutive byte accesses; the debug-exit port takes the
 * whole zero-extended value.
 */
static void port_io(uint16_t port, uint8_t *data, unsigned int size, bool out)
{
	if (out && port == DEBUG_EXIT_PORT) {
		uint32_t v = 0;

		memcpy(&v, data, size);
		debug_exit(v);
	}
	for (unsigned int i = 0; i < size; i++) {
		unsigned int p = (uint16_t)(port + i);

		if (p >= COM1_BASE && p < COM1_BASE + 8) {
			if (out)
				com1_out(p - COM1_BASE, data[i]);
			else
				data[i] = com1_in(p - COM1_BASE);
		} else if (!out) {
			data[i] = 0xff;
		}
	}
}

static void exit_io(struct kvm_run *run)
{
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;

	for (uint32_t i = 0; i < run->io.count; i++)
		port_io(run->io.port, data + i * run->io.size, run->io.size,
			out);
}

/* ---- vCPU threads --------------------------------------------------- */

static void kick_handler(int sig)
{
	(void)sig;
	/* api.rst: immediate_exit closes the race with entering KVM_RUN. */
	if (this_run)
		this_run->immediate_exit = 1;
}

static uint64_t vcpu_rip(struct vcpu *v)
{
	struct kvm_regs r;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0)
		return UINT64_MAX;
	return r.rip;
}

static _Noreturn void park(void)
{
	for (;;)
		pause();
}

/* For the timeout report: record where this vCPU is, then stay put. */
static _Noreturn void vcpu_stop(struct vcpu *v)
{
	pthread_mutex_lock(&vm.halt_lock);
	if (!v->halted)
		v->rip = vcpu_rip(v);
	pthread_mutex_unlock(&vm.halt_lock);
	sem_post(&vm.stopped);
	park();
}

/* HLT with no interrupt source: halted for good. The last one reports. */
static _Noreturn void vcpu_halt(struct vcpu *v)
{
	uint64_t rip = vcpu_rip(v);
	bool last;

	pthread_mutex_lock(&vm.halt_lock);
	v->rip = rip;
	v->halted = true;
	last = ++vm.nr_halted == vm.nr_vcpus;
	pthread_mutex_unlock(&vm.halt_lock);
	if (!last) {
		/* Only the timeout can still need this thread. */
		while (!atomic_load(&vm.stopping))
			pause();
		vcpu_stop(v);
	}

	pthread_mutex_lock(&vm.exit_lock);
	pthread_mutex_lock(&vm.halt_lock);
	fputs("kvm-run: all vCPUs halted\n", stderr);
	for (unsigned int i = 0; i < vm.nr_vcpus; i++)
		fprintf(stderr, "  vCPU %u: RIP=%016" PRIx64 "\n", i,
			vm.vcpus[i].rip);
	vm_exit(EXIT_CRASH);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct kvm_run *run = v->run;

	this_run = run;
	pthread_barrier_wait(&vm.start);
	for (;;) {
		if (atomic_load(&vm.stopping))
			vcpu_stop(v);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			crash(v, "KVM_RUN: %s", strerror(errno));
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			exit_io(run);
			break;
		case KVM_EXIT_MMIO:
			/* No memslot and no device: a PC's open bus. */
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff,
				       sizeof(run->mmio.data));
			break;
		case KVM_EXIT_HLT:
			vcpu_halt(v);
		case KVM_EXIT_SHUTDOWN:
			crash(v, "triple fault (KVM_EXIT_SHUTDOWN)");
		case KVM_EXIT_INTERNAL_ERROR: {
			char data[16 * 19 + 1] = "";
			size_t off = 0;
			uint32_t n = run->internal.ndata;

			if (n > ARRAY_SIZE(run->internal.data))
				n = ARRAY_SIZE(run->internal.data);
			for (uint32_t i = 0; i < n; i++)
				off += snprintf(data + off, sizeof(data) - off,
						" %llx",
						(unsigned long long)
							run->internal.data[i]);
			crash(v, "KVM_EXIT_INTERNAL_ERROR suberror %u%s%s",
			      run->internal.suberror,
			      run->internal.suberror ==
					      KVM_INTERNAL_ERROR_EMULATION ?
				      " (emulation failure)" :
				      "",
			      data);
		}
		case KVM_EXIT_FAIL_ENTRY:
			crash(v, "KVM_EXIT_FAIL_ENTRY reason 0x%llx",
			      (unsigned long long)run->fail_entry
				      .hardware_entry_failure_reason);
		default:
			crash(v, "unexpected exit reason %u", run->exit_reason);
		}
	}
}

/* ---- main ----------------------------------------------------------- */

static _Noreturn void timeout(unsigned long secs)
{
	struct timespec deadline;

	pthread_mutex_lock(&vm.exit_lock);
	atomic_store(&vm.stopping, true);
	for (unsigned int i = 0; i < vm.nr_vcpus; i++)
		pthread_kill(vm.vcpus[i].thread, SIGUSR1);
	/* Bounded: a vCPU that cannot answer is reported as unknown. */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 2;
	for (unsigned int i = 0; i < vm.nr_vcpus; i++)
		if (sem_timedwait(&vm.stopped, &deadline) < 0)
			break;
	msg("timeout after %lu s", secs);
	pthread_mutex_lock(&vm.halt_lock);
	for (unsigned int i = 0; i < vm.nr_vcpus; i++)
		fprintf(stderr, "  vCPU %u: %s RIP=%016" PRIx64 "\n", i,
			vm.vcpus[i].halted ? "halted" : "running",
			vm.vcpus[i].rip);
	vm_exit(EXIT_TIMEOUT);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "smp", required_argument, NULL, 's' },
		{ "mem", required_argument, NULL, 'm' },
		{ "append", required_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long smp = 1, mem_mib = 256, secs = 60;
	const char *cmdline = NULL;
	struct loader_config cfg;
	struct loader_result res;
	struct sigaction sa;
	char err[256];
	void *elf;
	size_t len;
	int c;

	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			smp = parse_num("--smp", optarg, 1, MAX_SMP);
			break;
		case 'm':
			mem_mib = parse_num("--mem", optarg, 2, MAX_MEM_MIB);
			break;
		case 'a':
			cmdline = optarg;
			break;
		case 't':
			secs = parse_num("--timeout", optarg, 0, 1000000);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_REFUSED;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return EXIT_REFUSED;
	}

	/* Refuse a bad kernel whether or not this machine has KVM. */
	elf = read_file(argv[optind], &len);
	ram_setup((uint64_t)mem_mib << 20);
	cfg = (struct loader_config){
		.ram = vm.ram,
		.nr_ram = vm.nr_ram,
		.nr_vcpus = (uint32_t)smp,
		.cmdline = cmdline,
	};
	if (loader_load(&cfg, elf, len, &res, err, sizeof(err)) < 0)
		die(EXIT_REFUSED, "%s: %s", argv[optind], err);
	free(elf);

	kvm_open();
	if (smp > kvm_max_vcpus())
		die(EXIT_REFUSED, "--smp %lu: KVM allows at most %u vCPUs", smp,
		    kvm_max_vcpus());
	vm.nr_vcpus = (unsigned int)smp;
	vm.vcpus = calloc(smp, sizeof(*vm.vcpus));
	if (!vm.vcpus || sem_init(&vm.stopped, 0, 0) < 0)
		die(EXIT_CRASH, "out of memory");
	vm_create(res.entry);

	/* No SA_RESTART: the kick must make KVM_RUN return EINTR. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* Every vCPU starts at e_entry at once (docs/GUEST-ABI.md, "Entry
	 * state"). */
	if (pthread_barrier_init(&vm.start, NULL, vm.nr_vcpus + 1))
		die(EXIT_CRASH, "pthread_barrier_init failed");
	for (unsigned int i = 0; i < vm.nr_vcpus; i++)
		if (pthread_create(&vm.vcpus[i].thread, NULL, vcpu_thread,
				   &vm.vcpus[i]))
			die(EXIT_CRASH, "cannot start vCPU thread %u", i);
	pthread_barrier_wait(&vm.start);

	if (secs == 0)
		park();
	struct timespec deadline;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)secs;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline,
			       NULL) == EINTR)
		;
	timeout(secs);
}
