/*
 * The QEMU boot shim's C half: it turns a Multiboot boot by QEMU into the
 * boot of guest ABI v1 (docs/GUEST-ABI.md). It owns reading the Multiboot
 * information and the parameter module qemu-run writes, loading the guest
 * ELF (the second module) with core/loader.c itself, so the segments, the
 * checks and low memory (page tables, GDT, boot info) are exactly the
 * loader's, starting the APs with INIT-SIPI-SIPI, and handing every vCPU
 * to the trampoline of qemu_shim_start.S, which sets the entry registers
 * and releases them together. It runs on the boot processor only, in
 * 64-bit mode on the shim's page tables, and reports through QEMU's
 * debugcon port, never the guest's COM1: "refused:" for an image the
 * loader refuses, "crash:" for a failure of its own, and a "starting"
 * line just before the guest runs (qemu-run turns these into its exit
 * status: docs/REFERENCE-RUNNERS.md).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loader.h"
#include "qemu_shim.h"

#define MB_BOOT_MAGIC 0x2badb002 /* Multiboot spec 3.2: EAX at entry */
#define MB_INFO_MODS (1u << 3)

/* Local APIC registers (SDM vol. 3, 10.4.1 and 10.6.1). */
#define MSR_APIC_BASE 0x1b
#define APIC_BASE_MASK 0xfffff000ULL
#define APIC_ICR_LO 0x300
#define APIC_ICR_HI 0x310
#define ICR_INIT 0x00000500
#define ICR_STARTUP 0x00000600
#define ICR_ASSERT 0x00004000
#define ICR_PENDING 0x00001000
#define AP_WAIT_SPINS 400000000u

#define PIC1_DATA 0x21
#define PIC2_DATA 0xa1

/* The parameter module's header (qemu-run: struct.pack "<QIIQI"). */
#define PARAMS_HDR_SIZE 28

struct mb_info {
	uint32_t flags;
	uint32_t mem_lower, mem_upper;
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count;
	uint32_t mods_addr;
};

struct mb_module {
	uint32_t start, end;
	uint32_t cmdline;
	uint32_t reserved;
};

void shim_main(uint32_t magic, uint32_t mbi_addr);
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);

extern char tramp_start[], tramp_end[], tramp_bsp_entry[];
extern char tramp_next_index[], tramp_arrived[], tramp_go[], tramp_entry[];

/* The loader's command line: one byte more than it accepts, so that an
 * over-long one is refused by the loader's own check. */
static char cmdline_buf[LOADER_CMDLINE_MAX + 2];
static uint8_t params_buf[PARAMS_HDR_SIZE];
static char err_buf[256];

/* ---- freestanding C library (gcc may call these) -------------------- */

void *memcpy(void *d, const void *s, size_t n)
{
	void *p = d;

	__asm__ volatile("rep movsb" : "+D"(p), "+S"(s), "+c"(n) : : "memory");
	return d;
}

void *memset(void *d, int c, size_t n)
{
	void *p = d;

	__asm__ volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(c) : "memory");
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x < *y ? -1 : 1;
	return 0;
}

size_t strnlen(const char *s, size_t max)
{
	size_t n = 0;

	while (n < max && s[n])
		n++;
	return n;
}

size_t strlen(const char *s)
{
	return strnlen(s, SIZE_MAX);
}

struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void put_num(struct out *o, uint64_t v, unsigned int base)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n)
		put(o, tmp[--n]);
}

/* What the loader's messages use: %s %c %d %u %x with h, l, ll, z. */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };

	for (; *fmt; fmt++) {
		int longs = 0;
		bool is_size = false;

		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		while (*fmt == 'l' || *fmt == 'z' || *fmt == 'h') {
			if (*fmt == 'l')
				longs++;
			else if (*fmt == 'z')
				is_size = true;
			fmt++;
		}
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);

			while (s && *s)
				put(&o, *s++);
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case 'd': {
			int64_t v = longs || is_size ? va_arg(ap, int64_t) :
						       va_arg(ap, int);

			if (v < 0) {
				put(&o, '-');
				v = -v;
			}
			put_num(&o, (uint64_t)v, 10);
			break;
		}
		case 'u':
		case 'x': {
			uint64_t v = longs || is_size ?
					     va_arg(ap, uint64_t) :
					     va_arg(ap, unsigned int);

			put_num(&o, v, *fmt == 'u' ? 10 : 16);
			break;
		}
		case '%':
			put(&o, '%');
			break;
		default:
			put(&o, '?');
			if (!*fmt)
				fmt--;
			break;
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return (int)o.len;
}

/* ---- ports and reports ---------------------------------------------- */

static void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void report(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	for (const char *p = "qemu-shim: "; *p; p++)
		outb(SHIM_DEBUGCON_PORT, (uint8_t)*p);
	for (const char *p = buf; *p; p++)
		outb(SHIM_DEBUGCON_PORT, (uint8_t)*p);
	outb(SHIM_DEBUGCON_PORT, '\n');
}

/* After "refused:" or "crash:": qemu-run reads the reason, not the value. */
static _Noreturn void stop(void)
{
	outl(SHIM_EXIT_PORT, 0x7f);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* Guest physical memory, through the alias (SHIM_ALIAS). */
static void *phys(uint64_t gpa)
{
	return (void *)(uintptr_t)(SHIM_ALIAS + gpa);
}

/* A trampoline variable where the trampoline was copied to. */
static volatile void *tramp_var(const char *sym)
{
	return phys(SHIM_TRAMP + (uint64_t)(sym - tramp_start));
}

static void apic_write(uint64_t base, uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(base + reg) = v;
}

static uint32_t apic_read(uint64_t base, uint32_t reg)
{
	return *(volatile uint32_t *)(uintptr_t)(base + reg);
}

static void apic_ipi(uint64_t base, uint32_t apic_id, uint32_t icr)
{
	apic_write(base, APIC_ICR_HI, apic_id << 24);
	apic_write(base, APIC_ICR_LO, icr);
	while (apic_read(base, APIC_ICR_LO) & ICR_PENDING)
		__asm__ volatile("pause");
}

/*
 * INIT, then two STARTUPs at the trampoline (SDM vol. 3, 8.4.4.1). The
 * SDM's delays between them are for real hardware; QEMU delivers each
 * IPI before the next write to the ICR returns, and a STARTUP to a
 * processor that already left wait-for-SIPI is ignored. APs are started
 * one at a time: QEMU numbers -smp N's APIC IDs 0 .. N-1, which are the
 * vCPU indices, and each AP takes its index from tramp_next_index.
 */
static void start_ap(uint64_t apic, uint32_t index)
{
	volatile uint32_t *next = tramp_var(tramp_next_index);
	volatile uint32_t *arrived = tramp_var(tramp_arrived);

	*next = index;
	apic_ipi(apic, index, ICR_INIT | ICR_ASSERT);
	apic_ipi(apic, index, ICR_STARTUP | ICR_ASSERT | SHIM_SIPI_VECTOR);
	apic_ipi(apic, index, ICR_STARTUP | ICR_ASSERT | SHIM_SIPI_VECTOR);
	for (uint32_t spins = 0;
	     __atomic_load_n(arrived, __ATOMIC_ACQUIRE) != index; spins++) {
		if (spins == AP_WAIT_SPINS) {
			report("crash: vCPU %u (APIC ID %u) did not start",
			       index, index);
			stop();
		}
		__asm__ volatile("pause");
	}
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

void shim_main(uint32_t magic, uint32_t mbi_addr)
{
	const struct mb_info *mbi = phys(mbi_addr);
	struct mb_module mods[2];
	struct loader_ram ram[2];
	struct loader_config cfg;
	struct loader_result res;
	uint64_t mem, low, apic;
	uint32_t nr_vcpus, cmdline_len;
	size_t tramp_len = (size_t)(tramp_end - tramp_start);
	void (*enter)(void);

	if (magic != MB_BOOT_MAGIC || !(mbi->flags & MB_INFO_MODS) ||
	    mbi->mods_count != 2) {
		report("crash: not booted by Multiboot with two modules "
		       "(magic %x)",
		       magic);
		stop();
	}
	memcpy(mods, phys(mbi->mods_addr), sizeof(mods));
	for (int i = 0; i < 2; i++) {
		if (mods[i].end < mods[i].start ||
		    mods[i].end > SHIM_MODULES_END) {
			report("refused: module %d [%x, %x) does not end below "
			       "%x",
			       i, mods[i].start, mods[i].end, SHIM_MODULES_END);
			stop();
		}
	}

	/* Module 0: the parameters. */
	if (mods[0].end - mods[0].start < PARAMS_HDR_SIZE) {
		report("crash: parameter module too short");
		stop();
	}
	memcpy(params_buf, phys(mods[0].start), PARAMS_HDR_SIZE);
	nr_vcpus = get_u32(params_buf + 12);
	mem = get_u64(params_buf + 16);
	cmdline_len = get_u32(params_buf + 24);
	if (get_u64(params_buf) != SHIM_PARAMS_MAGIC ||
	    get_u32(params_buf + 8) != SHIM_PARAMS_VERSION ||
	    cmdline_len > mods[0].end - mods[0].start - PARAMS_HDR_SIZE ||
	    nr_vcpus == 0 || nr_vcpus > SHIM_MAX_CPUS) {
		report("crash: bad parameter module");
		stop();
	}
	if (cmdline_len > sizeof(cmdline_buf) - 1)
		cmdline_len = sizeof(cmdline_buf) - 1;
	memcpy(cmdline_buf, phys(mods[0].start + PARAMS_HDR_SIZE), cmdline_len);
	cmdline_buf[cmdline_len] = '\0';

	/*
	 * RAM as the ABI lays it out, the way kvm-run gives it to the
	 * loader: [0, min(size, 3 GiB)), the rest from 4 GiB (qemu-run sets
	 * QEMU's max-ram-below-4g to match). High RAM is never written by
	 * the loader (segments end below 4 GiB); its host address only has
	 * to be non-NULL.
	 */
	low = mem < LOADER_LOW_RAM_MAX ? mem : LOADER_LOW_RAM_MAX;
	ram[0] = (struct loader_ram){ .gpa = 0, .size = low, .hva = phys(0) };
	ram[1] = (struct loader_ram){ .gpa = LOADER_HIGH_RAM_BASE,
				      .size = mem - low,
				      .hva = phys(LOADER_HIGH_RAM_BASE) };
	cfg = (struct loader_config){
		.ram = ram,
		.nr_ram = mem > low ? 2 : 1,
		.nr_vcpus = nr_vcpus,
		.cmdline = cmdline_buf,
	};
	if (loader_load(&cfg, phys(mods[1].start), mods[1].end - mods[1].start,
			&res, err_buf, sizeof(err_buf)) < 0) {
		report("refused: %s", err_buf);
		stop();
	}

	/* The setup descriptors after the ABI's GDT (qemu_shim.h). */
	if (tramp_len > SHIM_TRAMP_MAX) {
		report("crash: trampoline of %u bytes",
		       (unsigned int)tramp_len);
		stop();
	}
	*(volatile uint64_t *)phys(LOADER_GDT_GPA + SHIM_SEL_CODE32) =
		SHIM_GDT_CODE32;
	memcpy(phys(SHIM_TRAMP), tramp_start, tramp_len);
	*(volatile uint64_t *)tramp_var(tramp_entry) = res.entry;

	/* Guest ABI v1 has no interrupt sources: mask both 8259s. */
	outb(PIC1_DATA, 0xff);
	outb(PIC2_DATA, 0xff);

	apic = rdmsr(MSR_APIC_BASE) & APIC_BASE_MASK;
	for (uint32_t i = 1; i < nr_vcpus; i++)
		start_ap(apic, i);

	report("starting %u vCPUs at %lx", nr_vcpus, res.entry);
	*(volatile uint32_t *)tramp_var(tramp_next_index) = 0;
	/* At its identity address: the ABI's page tables have no alias. */
	enter = (void (*)(void))(SHIM_TRAMP +
				 (uintptr_t)(tramp_bsp_entry - tramp_start));
	enter();
	report("crash: returned from the trampoline");
	stop();
}
