/*
 * The VM object (docs/ARCHITECTURE.md, "Modules"): guest RAM as memfd mappings, one
 * memslot per RAM range, the MMU, the vCPUs and the devices, and the
 * port-I/O and MMIO dispatch the vCPUs call. It decides when the VM has
 * ended (debug exit, a crash, every vCPU halted for good) and pauses the
 * vCPUs then; it combines the operator's pause with its own holds, resets
 * the machine, and audits the live MMU. It does not parse command lines,
 * speak QMP or decide what an ending means: the daemon does.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "acpi.h"
#include "bzimage.h"
#include "dev/dev.h"
#include "dev/ioapic.h"
#include "dev/lapic.h"
#include "dev/pm.h"
#include "dev/virtio_blk.h"
#include "guestmem.h"
#include "loader.h"
#include "mmu.h"
#include "mmu_rcu.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86/kvmclock.h"
#include "vm.h"

struct ram_range {
	gpa_t gpa;
	uint64_t size;
	int fd;
	void *hva;
	void *reserved; /* the aligned reservation hva lives in */
	size_t reserved_len;
};

/* What a local APIC's callbacks need: its VM and vCPU. */
struct vm_apic {
	struct vm *vm;
	unsigned int index;
};

/* What a block device's line callback needs: its VM and IOAPIC pin. */
struct vm_blk_pin {
	struct vm *vm;
	unsigned int pin;
};

/*
 * Legend: (c) constant once vm_create() returns; (vm->lock) under it.
 * vm->lock nests outside every vCPU's wake_lock (pausing makes requests).
 */
struct vm {
	struct vm_config cfg; /* (c) kernel and cmdline point at our copies */
	void *kernel; /* (c) the ELF image, for reset */
	void *low_copy; /* (c) [0, 1 MiB) as the loader left it, for reset */
	char *cmdline; /* (c) */
	void *initrd; /* (c) NULL without one, for reset */
	/* (c) A bzImage: Linux's 64-bit boot protocol, only vCPU 0 starts
	 * (docs/GUEST-ABI.md, "Platform v2 boot"). */
	bool linux64;
	gpa_t boot_params; /* (c) */
	struct ram_range ram[2]; /* (c) */
	unsigned int nr_ram; /* (c) */
	struct mmu *mmu; /* (c) */
	struct guestmem *guestmem; /* (c) hot-added memslots */
	struct vcpu_set *set; /* (c) */
	struct vcpu *vcpus[VM_MAX_VCPUS]; /* (c) */
	struct dev_serial *serial; /* (c) */
	int console_fd; /* (c) */
	/* (c) The local APIC of vCPU i (docs/GUEST-ABI.md, "Interrupts"),
	 * and what its callbacks are given. */
	struct dev_lapic *lapics[VM_MAX_VCPUS];
	struct vm_apic apic_ctx[VM_MAX_VCPUS];
	/* (c) Set before vm_start(): who hears broadcast EOIs. */
	void (*eoi_fn)(void *ctx, uint8_t vector);
	void *eoi_ctx;
	uint64_t tsc_hz; /* (c) the host's (and guest's) TSC frequency */
	struct dev_lapic_bus_ops apic_bus_ops; /* (c) */
	/* (c) Set before vm_start(): devices that may still interrupt. */
	struct {
		bool (*fn)(void *ctx);
		void *ctx;
	} wake_checks[VM_MAX_WAKE_CHECKS];
	unsigned int nr_wake_checks;
	/* (c) between resets, which happen with every vCPU parked */
	int64_t tsc_offset;
	/* (c) The IOAPIC (docs/GUEST-ABI.md, "Interrupts"); COM1 drives
	 * its pin 4. */
	struct dev_ioapic *ioapic;
	/* (c) kvmclock's scale of the guest TSC (docs/GUEST-ABI.md,
	 * "kvmclock"); without one (a TSC frequency it cannot express)
	 * the MSRs write nothing. */
	struct x86_pvclock_scale pvclock;
	bool has_pvclock;
	/* vCPU i's kvmclock MSRs: (v) vCPU i's thread, or the worker
	 * while every vCPU is parked (reset). */
	struct x86_kvmclock kvmclock[VM_MAX_VCPUS];
	/* (c) Block devices: virtio-mmio device i is blk[i], on IOAPIC
	 * pin VIRTIO_MMIO_GSI_BASE + i (docs/GUEST-ABI.md, "Virtio-mmio
	 * devices"); blk_pin[i] is what its line callback is given. */
	struct virtio_blk *blk[BLK_MAX_DRIVES];
	struct vm_blk_pin blk_pin[BLK_MAX_DRIVES];
	unsigned int nr_blk;

	pthread_mutex_t lock;
	bool ended; /* (vm->lock) */
	unsigned int nr_halted; /* (vm->lock) */
	struct vm_result result; /* (vm->lock) */
	bool user_paused; /* (vm->lock) vm_pause() */
	unsigned int holds; /* (vm->lock) vm_hold() */
	bool paused; /* (vm->lock) what the vCPUs were last told */
};

/* Tells every vCPU whether to run, from the operator's pause, the holds
 * and the ending; a vCPU told twice the same thing is not kicked. */
static void apply_pause_locked(struct vm *vm)
{
	bool want = vm->user_paused || vm->holds || vm->ended;

	if (want == vm->paused)
		return;
	vm->paused = want;
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i])
			vcpu_set_pause(vm->vcpus[i], want);
}

static void wait_parked(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i])
			vcpu_wait_parked(vm->vcpus[i]);
}

static void console_out(void *ctx, const char *buf, size_t len)
{
	struct vm *vm = ctx;

	if (vm->cfg.console_fn) {
		vm->cfg.console_fn(vm->cfg.console_ctx, buf, len);
		return;
	}
	while (len) {
		ssize_t n = write(vm->console_fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* a console that went away loses output */
		buf += n;
		len -= (size_t)n;
	}
}

/*
 * Ends the VM once; later ends (a second vCPU's crash) are dropped. The
 * vCPUs are asked to pause at once, without waiting (this runs on a vCPU
 * thread), so no guest code runs long after the guest's own end.
 */
static void vm_end(struct vm *vm, enum vm_end how, uint32_t value,
		   const char *detail)
{
	bool first = false;

	pthread_mutex_lock(&vm->lock);
	if (!vm->ended) {
		first = true;
		vm->ended = true;
		vm->result.how = how;
		vm->result.exit_value = value;
		snprintf(vm->result.detail, sizeof(vm->result.detail), "%s",
			 detail ? detail : "");
		apply_pause_locked(vm);
	}
	pthread_mutex_unlock(&vm->lock);
	if (first && vm->cfg.ended_fn)
		vm->cfg.ended_fn(vm->cfg.ended_ctx);
}

size_t vm_console_input(struct vm *vm, const void *buf, size_t len)
{
	return dev_serial_receive(vm->serial, buf, len);
}

/* Port 0x600 and the i8042 reset (docs/GUEST-ABI.md, "Sleep and reset
 * registers"); false when the port is not theirs. */
static bool pm_pio(struct vm *vm, uint16_t port, unsigned int size, bool in,
		   uint32_t *value)
{
	switch (dev_pm_pio(port, size, in, value)) {
	case DEV_PM_NONE:
		return false;
	case DEV_PM_CLAIMED:
		break;
	case DEV_PM_POWEROFF:
		vm_end(vm, VM_END_GUEST_SHUTDOWN, 0,
		       "the guest powered off (S5)");
		break;
	case DEV_PM_RESET:
		vm_end(vm, VM_END_GUEST_RESET, 0,
		       port == DEV_PM_PORT ? "ACPI reset register" :
					     "i8042 reset");
		break;
	}
	return true;
}

static void vm_pio(void *opaque, unsigned int vcpu, uint16_t port,
		   unsigned int size, bool in, uint32_t *value)
{
	struct vm *vm = opaque;

	(void)vcpu;
	if (port >= DEV_COM1_BASE && port < DEV_COM1_BASE + DEV_COM1_PORTS) {
		dev_serial_pio(vm->serial, port - DEV_COM1_BASE, size, in,
			       value);
	} else if (port == DEV_DEBUG_EXIT_PORT && !in) {
		vm_end(vm, VM_END_DEBUG_EXIT, *value, NULL);
	} else if (pm_pio(vm, port, size, in, value)) {
		/* the sleep/reset register or the i8042 reset */
	} else if (in) {
		/* Nothing there: the bus floats high, as on a PC. */
		*value = size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
	}
}

/* ---- local APICs (docs/GUEST-ABI.md, "Interrupts") ---------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t unbacked(unsigned int size)
{
	/* Nothing there: all ones (docs/GUEST-ABI.md, "Unbacked
	 * addresses"). */
	return size == 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
}

static uint64_t vm_cpu_mmio_read(void *opaque, unsigned int vcpu, gpa_t gpa,
				 unsigned int size)
{
	struct vm *vm = opaque;
	struct dev_lapic *l = vm->lapics[vcpu];

	/* The APIC page is each vCPU's own, where its IA32_APIC_BASE
	 * puts it (SDM vol. 3, 10.4.1). */
	if (l && dev_lapic_mmio_covers(l, gpa))
		return dev_lapic_mmio_read(l, (uint32_t)(gpa & 0xfff), size,
					   now_ns());
	if (gpa >= DEV_IOAPIC_BASE && gpa < DEV_IOAPIC_BASE + DEV_IOAPIC_SIZE)
		return dev_ioapic_mmio_read(
			vm->ioapic, (uint32_t)(gpa - DEV_IOAPIC_BASE), size);
	if (gpa >= VIRTIO_MMIO_BASE &&
	    gpa - VIRTIO_MMIO_BASE < (gpa_t)vm->nr_blk * VIRTIO_MMIO_SIZE)
		return virtio_mmio_read(
			virtio_blk_transport(vm->blk[(gpa - VIRTIO_MMIO_BASE) /
						     VIRTIO_MMIO_SIZE]),
			(uint32_t)(gpa & (VIRTIO_MMIO_SIZE - 1)), size);
	return unbacked(size);
}

static void vm_cpu_mmio_write(void *opaque, unsigned int vcpu, gpa_t gpa,
			      unsigned int size, uint64_t value)
{
	struct vm *vm = opaque;
	struct dev_lapic *l = vm->lapics[vcpu];

	if (l && dev_lapic_mmio_covers(l, gpa))
		dev_lapic_mmio_write(l, (uint32_t)(gpa & 0xfff), size,
				     (uint32_t)value, now_ns());
	else if (gpa >= DEV_IOAPIC_BASE &&
		 gpa < DEV_IOAPIC_BASE + DEV_IOAPIC_SIZE)
		dev_ioapic_mmio_write(vm->ioapic,
				      (uint32_t)(gpa - DEV_IOAPIC_BASE), size,
				      value);
	else if (gpa >= VIRTIO_MMIO_BASE &&
		 gpa - VIRTIO_MMIO_BASE < (gpa_t)vm->nr_blk * VIRTIO_MMIO_SIZE)
		virtio_mmio_write(
			virtio_blk_transport(vm->blk[(gpa - VIRTIO_MMIO_BASE) /
						     VIRTIO_MMIO_SIZE]),
			(uint32_t)(gpa & (VIRTIO_MMIO_SIZE - 1)), size, value);
}

static uint64_t vm_timer_deadline(void *opaque, unsigned int vcpu)
{
	struct vm *vm = opaque;

	return dev_lapic_deadline(vm->lapics[vcpu]);
}

static void vm_timer_expire(void *opaque, unsigned int vcpu, uint64_t now)
{
	struct vm *vm = opaque;

	dev_lapic_advance(vm->lapics[vcpu], now);
}

static bool vm_intr_pending(void *opaque, unsigned int vcpu)
{
	struct vm *vm = opaque;

	return dev_lapic_pending(vm->lapics[vcpu]) >= 0;
}

static int vm_intr_ack(void *opaque, unsigned int vcpu)
{
	struct vm *vm = opaque;

	return dev_lapic_ack(vm->lapics[vcpu]);
}

/* ---- kvmclock (docs/GUEST-ABI.md, "kvmclock") -------------------------- */

/* Its structures reach guest RAM as the vCPU's own stores would. */
static bool kvmclock_store(void *ctx, gpa_t gpa, const void *buf,
			   unsigned int len)
{
	return vcpu_write_guest(ctx, gpa, buf, len);
}

static bool kvmclock_refuse(void *ctx, gpa_t gpa, const void *buf,
			    unsigned int len)
{
	(void)ctx;
	(void)gpa;
	(void)buf;
	(void)len;
	return false;
}

static int kvmclock_msr(struct vm *vm, unsigned int vcpu, uint32_t index,
			bool write, uint64_t *value)
{
	struct x86_kvmclock_now now = { .scale = vm->pvclock };
	struct timespec ts;

	if (!write)
		return x86_kvmclock_rdmsr(&vm->kvmclock[vcpu], index, value);
	clock_gettime(CLOCK_REALTIME, &ts);
	now.realtime_ns =
		(uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	now.guest_tsc = vcpu_guest_tsc(vm->vcpus[vcpu]);
	return x86_kvmclock_wrmsr(&vm->kvmclock[vcpu], index, *value, &now,
				  vm->has_pvclock ? kvmclock_store :
						    kvmclock_refuse,
				  vm->vcpus[vcpu]);
}

/* IA32_APIC_BASE, IA32_TSC_DEADLINE and the x2APIC MSRs (SDM vol. 3,
 * 10.4.4, 10.5.4.1, 10.12.1.2); -ENOENT for the CPU's own. */
static int vm_msr(void *opaque, unsigned int vcpu, uint32_t index, bool write,
		  uint64_t *value)
{
	struct vm *vm = opaque;
	struct dev_lapic *l = vm->lapics[vcpu];

	if (index == 0x1b) { /* IA32_APIC_BASE */
		if (!write) {
			*value = dev_lapic_get_base(l);
			return 0;
		}
		return dev_lapic_set_base(l, *value);
	}
	if (index == LAPIC_MSR_TSC_DEADLINE) {
		if (write)
			dev_lapic_set_tsc_deadline(l, *value, now_ns());
		else
			*value = dev_lapic_tsc_deadline(l);
		return 0;
	}
	if (index >= LAPIC_X2APIC_MSR_BASE && index <= LAPIC_X2APIC_MSR_LAST)
		return write ? dev_lapic_msr_write(l, index, *value, now_ns()) :
			       dev_lapic_msr_read(l, index, now_ns(), value);
	if (x86_kvmclock_is_msr(index))
		return kvmclock_msr(vm, vcpu, index, write, value);
	return -ENOENT;
}

/* MOV CR8: the APIC's TPR[7:4] (SDM vol. 3, 10.8.6.1). */
static void vm_cr8(void *opaque, unsigned int vcpu, bool write, uint64_t *value)
{
	struct vm *vm = opaque;

	if (write)
		dev_lapic_set_cr8(vm->lapics[vcpu], *value);
	else
		*value = dev_lapic_get_cr8(vm->lapics[vcpu]);
}

/* An interrupt may have become deliverable: the vCPU looks again. */
static void apic_notify(void *ctx)
{
	struct vm_apic *a = ctx;
	struct vcpu *v = a->vm->vcpus[a->index];

	if (v)
		vcpu_make_request(v, VCPU_REQ_EVENT, false);
}

static void apic_nmi(void *ctx)
{
	struct vm_apic *a = ctx;
	struct vcpu *v = a->vm->vcpus[a->index];

	if (v)
		vcpu_raise_nmi(v);
}

static void apic_init(void *ctx)
{
	struct vm_apic *a = ctx;
	struct vcpu *v = a->vm->vcpus[a->index];

	if (v)
		vcpu_raise_init(v);
}

static void apic_send(void *ctx, const struct dev_apic_msg *msg)
{
	struct vm_apic *a = ctx;

	dev_apic_deliver(a->vm->lapics, a->vm->cfg.nr_vcpus, (int)a->index,
			 msg);
}

static void apic_eoi(void *ctx, uint8_t vector)
{
	struct vm_apic *a = ctx;

	if (a->vm->eoi_fn)
		a->vm->eoi_fn(a->vm->eoi_ctx, vector);
}

/* Called by the APIC on its vCPU's thread only (the TSC-deadline MSR
 * and the timer's expiry), where vcpu_guest_tsc() may be read. */
static uint64_t apic_guest_tsc(void *ctx)
{
	struct vm_apic *a = ctx;

	return vcpu_guest_tsc(a->vm->vcpus[a->index]);
}

void vm_apic_deliver(struct vm *vm, const struct dev_apic_msg *msg)
{
	dev_apic_deliver(vm->lapics, vm->cfg.nr_vcpus, -1, msg);
}

void vm_set_eoi_hook(struct vm *vm, void (*fn)(void *ctx, uint8_t vector),
		     void *ctx)
{
	vm->eoi_fn = fn;
	vm->eoi_ctx = ctx;
}

int vm_add_wake_check(struct vm *vm, bool (*fn)(void *ctx), void *ctx)
{
	if (vm->nr_wake_checks == VM_MAX_WAKE_CHECKS)
		return -ENOSPC;
	vm->wake_checks[vm->nr_wake_checks].fn = fn;
	vm->wake_checks[vm->nr_wake_checks].ctx = ctx;
	vm->nr_wake_checks++;
	return 0;
}

/* ---- the IOAPIC and COM1's line (docs/GUEST-ABI.md, "Interrupts") ------ */

#define VM_COM1_GSI 4

/*
 * An IOAPIC message onto the APIC bus. Fixed, lowest-priority, NMI and
 * INIT messages go; SMI and ExtINT have nothing to go to here (no SMM,
 * no PIC) and mode 6 is reserved in a redirection entry: dropped.
 */
static void ioapic_deliver(void *ctx, const struct dev_ioapic_msg *m)
{
	struct dev_apic_msg msg = {
		.dest = m->dest,
		.vector = m->vector,
		.mode = m->delivery_mode,
		.shorthand = DEV_APIC_DEST_FIELD,
		.logical = m->logical,
		.level = m->level,
		.assert = true,
	};

	switch (m->delivery_mode) {
	case IOAPIC_DM_FIXED:
	case IOAPIC_DM_LOWEST:
	case IOAPIC_DM_NMI:
	case IOAPIC_DM_INIT:
		vm_apic_deliver(ctx, &msg);
		break;
	default:
		break;
	}
}

/* The local APICs' broadcast EOI of a level-triggered vector. */
static void ioapic_eoi(void *ctx, uint8_t vector)
{
	struct vm *vm = ctx;

	dev_ioapic_eoi(vm->ioapic, vector);
}

/* COM1's interrupt line: IOAPIC pin 4, edge-triggered active high. */
static void com1_irq(void *ctx, bool level)
{
	struct vm *vm = ctx;

	dev_ioapic_set_irq(vm->ioapic, VM_COM1_GSI, level);
}

/* COM1 can still wake a halted guest when console input would raise
 * an interrupt and its pin is unmasked. */
static bool com1_can_interrupt(void *ctx)
{
	struct vm *vm = ctx;

	return dev_serial_input_interrupts(vm->serial) &&
	       !dev_ioapic_is_masked(vm->ioapic, VM_COM1_GSI);
}

/*
 * Guest memory as devices see it (struct virtio_mem_ops): boot RAM
 * only, whose mappings live as long as the VM; a buffer in hot-added
 * memory, which may be unmapped under a request, is refused as if
 * outside RAM.
 */
static void *dev_mem_map(void *ctx, gpa_t gpa, uint64_t len)
{
	struct vm *vm = ctx;

	for (unsigned int i = 0; i < vm->nr_ram; i++) {
		const struct ram_range *r = &vm->ram[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size &&
		    len <= r->size - (gpa - r->gpa))
			return (uint8_t *)r->hva + (gpa - r->gpa);
	}
	return NULL;
}

/* Logged in the slot that maps each page now, as a vCPU's store is
 * (mmu_mark_dirty()). */
static void dev_mem_mark_dirty(void *ctx, gpa_t gpa, uint64_t len)
{
	struct vm *vm = ctx;

	if (!len)
		return;
	mmu_rcu_read_lock();
	for (gfn_t g = gpa_to_gfn(gpa); g <= gpa_to_gfn(gpa + len - 1); g++)
		mmu_mark_dirty(vm->mmu, gfn_to_gpa(g));
	mmu_rcu_read_unlock();
}

static void dev_thread_enter(void *ctx)
{
	(void)ctx;
	mmu_rcu_register_thread();
}

static void dev_thread_exit(void *ctx)
{
	(void)ctx;
	mmu_rcu_unregister_thread();
}

static const struct virtio_mem_ops vm_dev_mem_ops = {
	.map = dev_mem_map,
	.mark_dirty = dev_mem_mark_dirty,
	.thread_enter = dev_thread_enter,
	.thread_exit = dev_thread_exit,
};

/* A virtio-mmio device's line: its IOAPIC pin, edge-triggered. */
static void blk_irq(void *ctx, bool level)
{
	const struct vm_blk_pin *p = ctx;

	dev_ioapic_set_irq(p->vm->ioapic, p->pin, level);
}

/* A block request in flight will interrupt. */
static bool blk_can_interrupt(void *ctx)
{
	struct vm *vm = ctx;

	for (unsigned int i = 0; i < vm->nr_blk; i++)
		if (virtio_blk_is_busy(vm->blk[i]))
			return true;
	return false;
}

static int create_blk(struct vm *vm, char *err, size_t errlen)
{
	if (vm->cfg.nr_drives > BLK_MAX_DRIVES) {
		snprintf(err, errlen, "%u drives: at most %u",
			 vm->cfg.nr_drives, BLK_MAX_DRIVES);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < vm->cfg.nr_drives; i++) {
		struct virtio_blk_host host = {
			.mem = { .ops = &vm_dev_mem_ops, .ctx = vm },
			.set_irq = blk_irq,
			.irq_ctx = &vm->blk_pin[i],
			.on_error = vm->cfg.blk_error_fn,
			.error_ctx = vm->cfg.blk_error_ctx,
			.force_threads = vm->cfg.blk_threads,
		};

		vm->blk_pin[i].vm = vm;
		vm->blk_pin[i].pin = VIRTIO_MMIO_GSI_BASE + i;
		vm->blk[i] = virtio_blk_create(&vm->cfg.drives[i],
					       vm->cfg.nr_vcpus, &host, err,
					       errlen);
		if (!vm->blk[i])
			return -EINVAL;
		vm->nr_blk++;
	}
	if (vm->nr_blk)
		vm_add_wake_check(vm, blk_can_interrupt, vm);
	return 0;
}

struct virtio_blk *vm_blk(struct vm *vm, unsigned int i)
{
	return i < vm->nr_blk ? vm->blk[i] : NULL;
}

static bool vm_devices_can_interrupt(void *opaque)
{
	struct vm *vm = opaque;

	for (unsigned int i = 0; i < vm->nr_wake_checks; i++)
		if (vm->wake_checks[i].fn(vm->wake_checks[i].ctx))
			return true;
	return false;
}

void vm_inject_nmi(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i])
			vcpu_raise_nmi(vm->vcpus[i]);
}

struct dev_lapic *vm_lapic(struct vm *vm, unsigned int index)
{
	return index < vm->cfg.nr_vcpus ? vm->lapics[index] : NULL;
}

int vm_lapic_state(struct vm *vm, unsigned int index,
		   struct dev_lapic_state *st)
{
	if (index >= vm->cfg.nr_vcpus || !vm->lapics[index])
		return -ENOENT;
	dev_lapic_state(vm->lapics[index], now_ns(), st);
	return 0;
}

void vm_ioapic_state(struct vm *vm, struct dev_ioapic_state *st)
{
	dev_ioapic_save(vm->ioapic, st);
}

struct dev_ioapic *vm_ioapic(struct vm *vm)
{
	return vm->ioapic;
}

struct x86_kvmclock *vm_kvmclock(struct vm *vm, unsigned int index)
{
	return index < vm->cfg.nr_vcpus ? &vm->kvmclock[index] : NULL;
}

void vm_vcpu_raise_init(struct vm *vm, unsigned int index)
{
	if (index < vm->cfg.nr_vcpus && vm->vcpus[index])
		vcpu_raise_init(vm->vcpus[index]);
}

uint64_t vm_tsc_hz(const struct vm *vm)
{
	return vm->tsc_hz;
}

/*
 * The host TSC's frequency, measured once against CLOCK_MONOTONIC over
 * 20 ms (the TSC is invariant on the hosts mmud runs on: the guest's
 * CPUID says so too).
 */
static uint64_t tsc_hz_measured;
static pthread_once_t tsc_once = PTHREAD_ONCE_INIT;

static void measure_tsc(void)
{
	uint64_t t0 = now_ns(), c0 = __rdtsc(), t1, c1;

	do {
		t1 = now_ns();
	} while (t1 - t0 < 20000000ULL);
	c1 = __rdtsc();
	tsc_hz_measured = (uint64_t)((unsigned __int128)(c1 - c0) *
				     1000000000ULL / (t1 - t0));
}

static void vm_vcpu_stopped(void *opaque, unsigned int vcpu,
			    enum vcpu_stop_reason why, const char *detail)
{
	struct vm *vm = opaque;
	char msg[240];
	bool all_halted;

	snprintf(msg, sizeof(msg), "vCPU %u: %s", vcpu, detail);
	if (why != VCPU_STOP_HALTED) {
		vm_end(vm,
		       why == VCPU_STOP_INTERNAL_ERROR ? VM_END_INTERNAL_ERROR :
							 VM_END_CRASH,
		       0, msg);
		return;
	}
	/* A halted vCPU with nothing to wake it is stopped for good; when
	 * all are, the VM is (docs/GUEST-ABI.md, "Crashes and halts"). */
	pthread_mutex_lock(&vm->lock);
	all_halted = ++vm->nr_halted == vm->cfg.nr_vcpus;
	pthread_mutex_unlock(&vm->lock);
	if (all_halted) {
		snprintf(msg, sizeof(msg),
			 "every vCPU halted with nothing to wake it (vCPU %u: "
			 "%s)",
			 vcpu, detail);
		vm_end(vm, VM_END_CRASH, 0, msg);
	}
}

static const struct vcpu_ops vm_vcpu_ops = {
	.pio = vm_pio,
	.cpu_mmio_read = vm_cpu_mmio_read,
	.cpu_mmio_write = vm_cpu_mmio_write,
	.stopped = vm_vcpu_stopped,
	.deadline = vm_timer_deadline,
	.expire = vm_timer_expire,
	.intr_pending = vm_intr_pending,
	.intr_ack = vm_intr_ack,
	.msr = vm_msr,
	.devices_can_interrupt = vm_devices_can_interrupt,
	.cr8 = vm_cr8,
};

static const struct dev_lapic_bus_ops vm_apic_bus_ops_proto = {
	.nmi = apic_nmi,
	.init = apic_init,
	.send = apic_send,
	.eoi = apic_eoi,
	.guest_tsc = apic_guest_tsc,
};

/* A memfd mapping of size bytes at an address aligned to align, so the
 * MMU may map large guest pages with large sptes. */
static int ram_alloc(struct ram_range *r, uint64_t size, uint64_t align)
{
	uint8_t *res, *aligned;

	r->size = size;
	r->fd = memfd_create("mmud-ram", MFD_CLOEXEC);
	if (r->fd < 0)
		return -errno;
	if (ftruncate(r->fd, (off_t)size) < 0)
		goto fail;
	r->reserved_len = size + align;
	res = mmap(NULL, r->reserved_len, PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		goto fail;
	r->reserved = res;
	aligned = (uint8_t *)(((uintptr_t)res + align - 1) & ~(align - 1));
	r->hva = mmap(aligned, size, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_FIXED, r->fd, 0);
	if (r->hva == MAP_FAILED) {
		munmap(r->reserved, r->reserved_len);
		goto fail;
	}
	return 0;
fail:
	close(r->fd);
	r->fd = -1;
	return -errno;
}

static void ram_free(struct ram_range *r)
{
	if (r->reserved)
		munmap(r->reserved, r->reserved_len);
	if (r->fd >= 0)
		close(r->fd);
	r->reserved = NULL;
	r->fd = -1;
}

/* Loads the kernel, low memory and boot info into guest RAM. */
static int load(struct vm *vm, gva_t *entry, char *err, size_t errlen)
{
	struct acpi_virtio_mmio virtio[BLK_MAX_DRIVES];
	struct loader_ram lram[2];
	struct loader_config lcfg;
	struct loader_result lres;
	int r;

	for (unsigned int i = 0; i < vm->nr_ram; i++) {
		lram[i].gpa = vm->ram[i].gpa;
		lram[i].size = vm->ram[i].size;
		lram[i].hva = vm->ram[i].hva;
	}
	lcfg = (struct loader_config){ .ram = lram,
				       .nr_ram = vm->nr_ram,
				       .nr_vcpus = vm->cfg.nr_vcpus,
				       .cmdline = vm->cmdline,
				       .initrd = vm->initrd,
				       .initrd_len = vm->cfg.initrd_len };
	/* The ACPI tables list the block devices (docs/GUEST-ABI.md,
	 * "Virtio-mmio devices"). */
	for (unsigned int i = 0; i < vm->cfg.nr_drives && i < BLK_MAX_DRIVES;
	     i++)
		virtio[i] = (struct acpi_virtio_mmio){
			.base = (uint32_t)(VIRTIO_MMIO_BASE +
					   i * VIRTIO_MMIO_SIZE),
			.size = VIRTIO_MMIO_SIZE,
			.gsi = VIRTIO_MMIO_GSI_BASE + i,
		};
	lcfg.virtio = virtio;
	lcfg.nr_virtio = vm->cfg.nr_drives < BLK_MAX_DRIVES ?
				 vm->cfg.nr_drives :
				 BLK_MAX_DRIVES;
	r = loader_load(&lcfg, vm->kernel, vm->cfg.kernel_len, &lres, err,
			errlen);
	if (r == 0) {
		*entry = lres.entry;
		vm->linux64 = lres.linux64;
		vm->boot_params = lres.boot_params;
	}
	return r;
}

/*
 * Linux's entry state on a bzImage's vCPUs (docs/GUEST-ABI.md,
 * "Platform v2 boot"), where only vCPU 0 runs: the others get an INIT
 * and wait for a SIPI, as application processors do at power-on. ABI
 * v1's state, which vcpu_create() and vcpu_reset() give, otherwise.
 */
static void set_boot_state(struct vm *vm, unsigned int i)
{
	if (!vm->linux64)
		return;
	vcpu_set_linux_boot(vm->vcpus[i], vm->boot_params, BZIMAGE_BOOT_CS,
			    BZIMAGE_BOOT_DS, BZIMAGE_GDT_LIMIT);
	if (i > 0)
		vcpu_raise_init(vm->vcpus[i]);
}

struct vm *vm_create(const struct vm_config *cfg, char *err, size_t errlen)
{
	uint64_t low, high;
	struct vm *vm;
	gva_t entry;
	int r;

	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > VM_MAX_VCPUS) {
		snprintf(err, errlen, "vCPU count %u is not in 1..%u",
			 cfg->nr_vcpus, VM_MAX_VCPUS);
		return NULL;
	}
	if (cfg->ram_size < VM_MIN_RAM || (cfg->ram_size & (PAGE_SIZE - 1)) ||
	    cfg->ram_size > VM_MAX_RAM) {
		snprintf(err, errlen,
			 "memory size %llu is not a multiple of 4 KiB between "
			 "2 MiB and 1 TiB",
			 (unsigned long long)cfg->ram_size);
		return NULL;
	}
	if (cfg->maxmem &&
	    (cfg->maxmem < cfg->ram_size || cfg->maxmem > VM_MAX_MAXMEM ||
	     (cfg->maxmem & (PAGE_SIZE - 1)))) {
		snprintf(err, errlen,
			 "maxmem %llu is not a multiple of 4 KiB between the "
			 "memory size %llu and %llu",
			 (unsigned long long)cfg->maxmem,
			 (unsigned long long)cfg->ram_size,
			 (unsigned long long)VM_MAX_MAXMEM);
		return NULL;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	vm->cfg = *cfg;
	vm->console_fd = cfg->console_fd;
	vm->ram[0].fd = vm->ram[1].fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	vm->kernel = malloc(cfg->kernel_len ? cfg->kernel_len : 1);
	vm->cmdline = strdup(cfg->cmdline ? cfg->cmdline : "");
	if (!vm->kernel || !vm->cmdline) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	memcpy(vm->kernel, cfg->kernel, cfg->kernel_len);
	if (cfg->initrd_len) {
		vm->initrd = malloc(cfg->initrd_len);
		if (!vm->initrd) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		memcpy(vm->initrd, cfg->initrd, cfg->initrd_len);
	}
	vm->cfg.initrd = vm->initrd;
	vm->cfg.kernel = vm->kernel;
	vm->cfg.cmdline = vm->cmdline;

	low = cfg->ram_size < LOADER_LOW_RAM_MAX ? cfg->ram_size :
						   LOADER_LOW_RAM_MAX;
	high = cfg->ram_size - low;
	r = ram_alloc(&vm->ram[0], low,
		      low >= (1ULL << 30) ? 1ULL << 30 : 2ULL << 20);
	vm->ram[0].gpa = 0;
	vm->nr_ram = 1;
	if (!r && high) {
		r = ram_alloc(&vm->ram[1], high, 1ULL << 30);
		vm->ram[1].gpa = LOADER_HIGH_RAM_BASE;
		vm->nr_ram = 2;
	}
	if (r) {
		snprintf(err, errlen, "cannot allocate guest memory: %s",
			 strerror(-r));
		goto fail;
	}
	/* Out of core dumps unless asked (QEMU's dump-guest-core=off): a
	 * crash must not write gigabytes of guest RAM, nor leak it. */
	for (unsigned int i = 0; i < vm->nr_ram && !cfg->dump_guest_core; i++)
		madvise(vm->ram[i].reserved, vm->ram[i].reserved_len,
			MADV_DONTDUMP);
	if (load(vm, &entry, err, errlen) < 0)
		goto fail;
	vm->low_copy = malloc(LOADER_KERNEL_MIN_GPA);
	if (!vm->low_copy) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	memcpy(vm->low_copy, vm->ram[0].hva, LOADER_KERNEL_MIN_GPA);

	vm->set = vcpu_set_create(cfg->nr_vcpus);
	vm->mmu = vm->set ? mmu_create(&vcpu_mmu_ops, vm->set) : NULL;
	vm->serial = dev_serial_create(console_out, vm);
	if (!vm->set || !vm->mmu || !vm->serial) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* The vCPU layer syncs at the guest's flush points (CR3, INVLPG),
	 * so leaf page tables may go unsync (docs/MMU.md, "Unsync and
	 * sync"). */
	mmu_set_unsync(vm->mmu, true);
	for (unsigned int i = 0; i < vm->nr_ram; i++) {
		r = memslot_add(vm->mmu, i, gpa_to_gfn(vm->ram[i].gpa),
				vm->ram[i].size >> PAGE_SHIFT,
				(hva_t)(uintptr_t)vm->ram[i].hva, 0, err,
				errlen);
		if (r < 0)
			goto fail;
	}
	{
		/* Hot-added slots may overlap neither RAM nor the MMIO hole
		 * (docs/GUEST-ABI.md, "Memory map"). */
		struct guestmem_range reserved[3];
		unsigned int n = 0;

		for (unsigned int i = 0; i < vm->nr_ram; i++)
			reserved[n++] = (struct guestmem_range){
				.gpa = vm->ram[i].gpa,
				.size = vm->ram[i].size,
				.what = "guest RAM",
				.slot = (int)i,
			};
		reserved[n++] = (struct guestmem_range){
			.gpa = LOADER_LOW_RAM_MAX,
			.size = LOADER_HIGH_RAM_BASE - LOADER_LOW_RAM_MAX,
			.what = "the MMIO hole",
			.slot = -1,
		};
		vm->guestmem = guestmem_create(vm->mmu, reserved, n);
		if (!vm->guestmem) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		guestmem_set_dump(vm->guestmem, cfg->dump_guest_core);
		guestmem_set_limit(vm->guestmem, vm_maxmem(vm), cfg->ram_size);
	}
	pthread_once(&tsc_once, measure_tsc);
	vm->tsc_hz = tsc_hz_measured;
	vm->apic_bus_ops = vm_apic_bus_ops_proto;
	vm->apic_bus_ops.tsc_hz = vm->tsc_hz;
	for (unsigned int i = 0; i < cfg->nr_vcpus; i++) {
		vm->apic_ctx[i] = (struct vm_apic){ .vm = vm, .index = i };
		vm->lapics[i] =
			dev_lapic_create(i, apic_notify, &vm->apic_ctx[i]);
		if (!vm->lapics[i]) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		dev_lapic_set_bus(vm->lapics[i], &vm->apic_bus_ops,
				  &vm->apic_ctx[i]);
	}
	vm->ioapic = dev_ioapic_create(ioapic_deliver, vm);
	if (!vm->ioapic) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	vm_set_eoi_hook(vm, ioapic_eoi, vm);
	dev_serial_connect_irq(vm->serial, com1_irq, vm);
	vm_add_wake_check(vm, com1_can_interrupt, vm);
	if (create_blk(vm, err, errlen) < 0)
		goto fail;
	vm->cfg.drives = NULL; /* the devices keep their own copies */
	vm->has_pvclock = x86_pvclock_scale(vm->tsc_hz, &vm->pvclock);
	/* One TSC for the whole VM, 0 at creation (docs/GUEST-ABI.md,
	 * "Time"). */
	vm->tsc_offset = -(int64_t)__rdtsc();
	for (unsigned int i = 0; i < cfg->nr_vcpus; i++) {
		vm->vcpus[i] = vcpu_create(vm->set, i, vm->mmu, entry,
					   &vm_vcpu_ops, vm);
		if (!vm->vcpus[i]) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		vcpu_set_tsc_offset(vm->vcpus[i], vm->tsc_offset);
	}
	for (unsigned int i = 0; i < cfg->nr_vcpus; i++)
		set_boot_state(vm, i);
	return vm;
fail:
	vm_destroy(vm);
	return NULL;
}

int vm_start(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++) {
		int r = vcpu_start(vm->vcpus[i]);

		if (r < 0) {
			char msg[96];

			snprintf(msg, sizeof(msg), "cannot start vCPU %u: %s",
				 i, strerror(-r));
			vm_end(vm, VM_END_INTERNAL_ERROR, 0, msg);
			return r;
		}
	}
	return 0;
}

void vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->user_paused = true;
	apply_pause_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	wait_parked(vm);
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->user_paused = false;
	apply_pause_locked(vm);
	pthread_mutex_unlock(&vm->lock);
}

void vm_hold(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->holds++;
	apply_pause_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	wait_parked(vm);
}

void vm_unhold(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	MMUD_ASSERT(vm->holds > 0);
	vm->holds--;
	apply_pause_locked(vm);
	pthread_mutex_unlock(&vm->lock);
}

void vm_result(struct vm *vm, struct vm_result *res)
{
	pthread_mutex_lock(&vm->lock);
	*res = vm->result;
	if (!vm->ended)
		res->how = VM_END_NONE;
	pthread_mutex_unlock(&vm->lock);
}

int vm_reset(struct vm *vm, char *err, size_t errlen)
{
	gva_t entry;
	int r;

	pthread_mutex_lock(&vm->lock);
	MMUD_ASSERT(vm->holds > 0);
	pthread_mutex_unlock(&vm->lock);
	/*
	 * Every vCPU is parked: nothing runs guest code while the loader
	 * rewrites the kernel and low memory behind the MMU's back, and the
	 * zap that follows drops every shadow page built from what was
	 * there (the guest's page tables included). Low memory comes back
	 * whole from its copy; the loader then writes the kernel's segments
	 * (and low memory's tables again, the same bytes).
	 */
	memcpy(vm->ram[0].hva, vm->low_copy, LOADER_KERNEL_MIN_GPA);
	r = load(vm, &entry, err, errlen);
	if (r < 0)
		return r;
	/* The loader wrote behind the MMU: those pages are dirty for a
	 * dirty log. Which ones its segments covered is the
	 * loader's business, so the whole low RAM range is reported. */
	guestmem_mark_dirty(vm->guestmem, vm->ram[0].gpa, vm->ram[0].size);
	mmu_zap_all(vm->mmu);
	dev_serial_reset(vm->serial);
	/* Drains each device's requests and lowers its line. */
	for (unsigned int i = 0; i < vm->nr_blk; i++)
		virtio_mmio_reset(virtio_blk_transport(vm->blk[i]));
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		dev_lapic_reset(vm->lapics[i]);
	dev_ioapic_reset(vm->ioapic);
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		x86_kvmclock_reset(&vm->kvmclock[i]);
	/* RESET starts the TSC again at 0 (SDM vol. 3, 17.17). */
	vm->tsc_offset = -(int64_t)__rdtsc();
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++) {
		vcpu_set_tsc_offset(vm->vcpus[i], vm->tsc_offset);
		vcpu_reset(vm->vcpus[i]);
	}
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		set_boot_state(vm, i);
	pthread_mutex_lock(&vm->lock);
	vm->ended = false;
	vm->nr_halted = 0;
	memset(&vm->result, 0, sizeof(vm->result));
	apply_pause_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

/* Shadow pages checked per hold: 0.5 - 8 ms on a small guest, 12 - 41 ms
 * with 100k shadow pages (docs/BENCHMARKS.md, "The audit and slot walks
 * on big sparse slots"). */
#define VM_AUDIT_BATCH 256

int vm_audit_begin(struct vm *vm, uint64_t deadline_ns, char *msg,
		   size_t msglen)
{
	/* The structural part needs no hold (docs/MMU.md, "The live
	 * audit"): the vCPUs run on. */
	return mmu_audit_begin(vm->mmu, deadline_ns, msg, msglen);
}

int vm_audit_step(struct vm *vm, char *msg, size_t msglen)
{
	int r;

	vm_hold(vm);
	r = mmu_audit_step(vm->mmu, VM_AUDIT_BATCH, msg, msglen);
	vm_unhold(vm);
	return r;
}

/* Gives up once CLOCK_MONOTONIC passes deadline (0: never). */
static int audit_until(struct vm *vm, uint64_t deadline, char *msg,
		       size_t msglen)
{
	int r = vm_audit_begin(vm, deadline, msg, msglen);

	while (r > 0) {
		if (deadline && now_ns() >= deadline) {
			snprintf(msg, msglen,
				 "audit stopped at its deadline, comparing "
				 "shadow pages with the guest's tables");
			return -ETIMEDOUT;
		}
		r = vm_audit_step(vm, msg, msglen);
	}
	return r;
}

int vm_audit_bounded(struct vm *vm, unsigned int budget_ms, char *msg,
		     size_t msglen)
{
	return audit_until(vm, now_ns() + budget_ms * 1000000ULL, msg, msglen);
}

int vm_audit(struct vm *vm, char *msg, size_t msglen)
{
	return audit_until(vm, 0, msg, msglen);
}

uint64_t vm_maxmem(const struct vm *vm)
{
	if (vm->cfg.maxmem)
		return vm->cfg.maxmem;
	return vm->cfg.ram_size > VM_MAX_RAM ? vm->cfg.ram_size : VM_MAX_RAM;
}

uint64_t vm_ram_size(const struct vm *vm)
{
	return vm->cfg.ram_size;
}

unsigned int vm_nr_vcpus(const struct vm *vm)
{
	return vm->cfg.nr_vcpus;
}

void vm_vcpu_info(struct vm *vm, unsigned int index, struct vm_vcpu_info *out)
{
	struct vcpu *v = vm->vcpus[index];
	struct vcpu_stats st;

	memset(out, 0, sizeof(*out));
	out->state = "stopped";
	if (!v)
		return;
	vcpu_stats_get(v, &st);
	out->thread_id = vcpu_thread_id(v);
	out->state = vcpu_state_name(vcpu_state(v));
	out->insns = st.insns;
	out->exits = st.exits;
	out->shadow_faults = st.shadow_faults;
	out->pio_exits = st.pio_exits;
	out->mmio_accesses = st.mmio_accesses;
	out->halts = st.halts;
	out->guest_pf_injected = st.guest_pf_injected;
	out->emulated_writes = st.emulated_writes;
	out->requests = st.requests;
	out->halted = vcpu_halted(v);
	out->wait_for_sipi = vcpu_wait_for_sipi(v);
}

unsigned int vm_memslots(struct vm *vm, struct vm_memslot_info *out,
			 unsigned int max)
{
	unsigned int n = 0;

	/* The flags are the MMU's: dirty logging may change them. */
	mmu_rcu_read_lock();
	for (unsigned int i = 0; i < vm->nr_ram; i++) {
		const struct memslot *slot = memslot_lookup(
			vm->mmu, gpa_to_gfn(vm->ram[i].gpa), NULL);

		if (!slot)
			continue;
		if (n < max) {
			out[n].slot = slot->id;
			out[n].gpa = gfn_to_gpa(slot->base_gfn);
			out[n].size = slot->npages << PAGE_SHIFT;
			out[n].readonly = slot->flags & MEMSLOT_READONLY;
			out[n].log_dirty = slot->flags & MEMSLOT_LOG_DIRTY;
			out[n].hva = slot->hva;
			/* The memfd from offset 0, if the slot starts
			 * where the range's mapping does. */
			out[n].fd = -1;
			if (slot->hva == (hva_t)(uintptr_t)vm->ram[i].hva)
				out[n].fd = vm->ram[i].fd;
		}
		n++;
	}
	mmu_rcu_read_unlock();
	/* Then the hot-added ones, above the boot RAM's ids. */
	{
		struct guestmem_slot_info hot[GUESTMEM_MAX_SLOTS];
		unsigned int nh =
			guestmem_list(vm->guestmem, hot, GUESTMEM_MAX_SLOTS);

		for (unsigned int i = 0; i < nh && i < GUESTMEM_MAX_SLOTS;
		     i++, n++) {
			if (n >= max)
				continue;
			out[n].slot = hot[i].slot;
			out[n].gpa = hot[i].gpa;
			out[n].size = hot[i].size;
			out[n].readonly = hot[i].readonly;
			out[n].log_dirty = hot[i].log_dirty;
			out[n].hva = hot[i].hva;
			out[n].fd = hot[i].fd;
		}
	}
	return n;
}

struct dev_serial *vm_serial(struct vm *vm)
{
	return vm->serial;
}

int vm_vcpu_cpu_stats(struct vm *vm, unsigned int index,
		      struct x86_cpu_stats *out, const char **engine)
{
	if (index >= vm->cfg.nr_vcpus || !vm->vcpus[index])
		return -ENOENT;
	vcpu_cpu_stats(vm->vcpus[index], out);
	*engine = vcpu_engine(vm->vcpus[index]);
	return 0;
}

int vm_vcpu_with_cpu(struct vm *vm, unsigned int index,
		     int (*fn)(struct x86_cpu *cpu, void *ctx), void *ctx)
{
	if (index >= vm->cfg.nr_vcpus || !vm->vcpus[index])
		return -ENOENT;
	return vcpu_with_cpu(vm->vcpus[index], fn, ctx);
}

struct guestmem *vm_guestmem(struct vm *vm)
{
	return vm->guestmem;
}

struct mmu *vm_mmu(struct vm *vm)
{
	return vm->mmu;
}

struct vcpu_set *vm_vcpu_set(struct vm *vm)
{
	return vm->set;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	/* COM1's line leads to the IOAPIC and the APICs going below. */
	if (vm->serial)
		dev_serial_connect_irq(vm->serial, NULL, NULL);
	for (unsigned int i = 0; i < VM_MAX_VCPUS; i++)
		vcpu_destroy(vm->vcpus[i]);
	/* After the vCPUs, which notify them; before the IOAPIC their
	 * lines lead to and the RAM their requests fill. */
	for (unsigned int i = 0; i < vm->nr_blk; i++)
		virtio_blk_destroy(vm->blk[i]);
	/* After the vCPUs: their threads call into their APICs. */
	for (unsigned int i = 0; i < VM_MAX_VCPUS; i++)
		dev_lapic_destroy(vm->lapics[i]);
	dev_ioapic_destroy(vm->ioapic);
	guestmem_destroy(vm->guestmem);
	if (vm->mmu) {
		for (unsigned int i = 0; i < vm->nr_ram; i++)
			memslot_delete(vm->mmu, i, NULL, 0);
		mmu_destroy(vm->mmu);
	}
	vcpu_set_destroy(vm->set);
	dev_serial_destroy(vm->serial);
	for (unsigned int i = 0; i < vm->nr_ram; i++)
		ram_free(&vm->ram[i]);
	pthread_mutex_destroy(&vm->lock);
	free(vm->kernel);
	free(vm->low_copy);
	free(vm->cmdline);
	free(vm->initrd);
	free(vm);
}
