/*
 * The guest runtime: what every test guest of tests/guests links with.
 * Boot (per-vCPU stacks from RSI), serial output with a printf-like
 * formatter, the guest's own GDT/TSS/IDT, fault recording for tests that
 * expect a fault, CPL3 entry and return, page-table helpers and exit
 * through the debug-exit port. Guests implement guest_main().
 */
#ifndef RT_H
#define RT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_layout.h"

/* The user-accessible alias of the .usertext/.userdata sections. */
#define RT_USER_ALIAS 0x400000000000ULL

/* Boot info as the loader wrote it (docs/GUEST-ABI.md, "Boot info"). */
struct rt_ram_range {
	uint64_t gpa;
	uint64_t size;
};

struct rt_bootinfo {
	uint32_t nr_vcpus;
	uint32_t nr_ram;
	const struct rt_ram_range *ram;
	uint32_t cmdline_len;
	const char *cmdline;
};

/* State a vCPU had at e_entry, captured before the runtime changed it. */
struct rt_entry_state {
	uint64_t rsp, rdi, rsi, rflags;
	uint64_t cr0, cr3, cr4, efer;
	uint16_t cs, ds, es, ss, fs, gs, tr;
	uint16_t gdt_limit, idt_limit;
	uint64_t gdt_base;
};

/* A fault the runtime caught inside rt_try() or rt_user_run(). */
struct rt_fault {
	uint64_t vector;
	uint64_t error;
	uint64_t cr2;
	uint64_t rip;
	unsigned int cpl;
};

/* Implemented by each guest. Its return value on vCPU 0 is the exit
 * status (0 pass, 1 fail); other vCPUs halt when it returns. */
int guest_main(unsigned int cpu);

extern struct rt_bootinfo rt_boot;

/* Console (COM1). rt_printf takes a lock so lines do not interleave. */
void rt_putc(char c);
void rt_puts(const char *s);
int rt_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int rt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int rt_snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Exit through the debug-exit port; never returns. */
__attribute__((noreturn)) void rt_exit(int status);
/* Prints the message and exits with status 1. */
__attribute__((noreturn, format(printf, 1, 2))) void rt_fail(const char *fmt,
							     ...);

unsigned int rt_cpu_index(void);
const struct rt_entry_state *rt_entry_state(unsigned int cpu);

/*
 * Runs fn(arg) at CPL0 with fault recovery armed. Returns 0 when fn
 * returned, 1 when a fault interrupted it (see rt_last_fault()).
 */
int rt_try(void (*fn)(uint64_t), uint64_t arg);
/*
 * Runs the .usertext function fn(arg) at CPL3 on this vCPU's user stack,
 * through the user alias of the root in CR3 (see rt_user_map()). Returns 0
 * when fn returned, 1 when it faulted (see rt_last_fault()). RFLAGS.AC at
 * CPL3 is the caller's (set it with rt_set_ac()).
 */
int rt_user_run(void (*fn)(uint64_t), uint64_t arg);
const struct rt_fault *rt_last_fault(void);

/* Declares a function placed in the CPL3 alias. It may only call other
 * RT_USER functions and touch memory through its arguments. */
#define RT_USER __attribute__((section(".usertext"), noinline))
#define RT_USER_DATA __attribute__((section(".userdata")))

/* Spinlock and barriers for SMP guests. */
typedef struct {
	volatile int locked;
} rt_lock_t;
void rt_lock(rt_lock_t *l);
void rt_unlock(rt_lock_t *l);
static inline void rt_pause(void)
{
	__asm__ volatile("pause" ::: "memory");
}
/* Waits until every vCPU of the boot info has reached barrier number n. */
void rt_barrier(void);

/* Memory. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* Page-aligned guest-physical memory below 4 GiB (identity mapped by
 * the boot tables), not zeroed. Fails the guest when RAM runs out. */
uint64_t rt_phys_alloc(uint64_t size, uint64_t align);

/* Control registers, MSRs, CPUID, port I/O. */
static inline uint64_t rt_read_cr0(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr0, %0" : "=r"(v));
	return v;
}
static inline void rt_write_cr0(uint64_t v)
{
	__asm__ volatile("mov %0, %%cr0" ::"r"(v) : "memory");
}
static inline uint64_t rt_read_cr2(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr2, %0" : "=r"(v));
	return v;
}
static inline uint64_t rt_read_cr3(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr3, %0" : "=r"(v));
	return v;
}
static inline void rt_write_cr3(uint64_t v)
{
	__asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory");
}
static inline uint64_t rt_read_cr4(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr4, %0" : "=r"(v));
	return v;
}
static inline void rt_write_cr4(uint64_t v)
{
	__asm__ volatile("mov %0, %%cr4" ::"r"(v) : "memory");
}
static inline void rt_invlpg(uint64_t va)
{
	__asm__ volatile("invlpg (%0)" ::"r"(va) : "memory");
}
static inline uint64_t rt_rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}
static inline void rt_wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v),
			 "d"((uint32_t)(v >> 32)));
}
static inline void rt_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}
static inline void rt_outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port));
}
static inline uint8_t rt_inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint64_t rt_read_rflags(void)
{
	uint64_t v;
	__asm__ volatile("pushfq; popq %0" : "=r"(v));
	return v;
}
/* Sets or clears RFLAGS.AC with POPFQ (STAC/CLAC stop kvm_pvm at CPL0). */
void rt_set_ac(bool on);

#define X86_CR0_WP (1ULL << 16)
#define X86_CR4_PGE (1ULL << 7)
#define X86_CR4_SMEP (1ULL << 20)
#define X86_CR4_SMAP (1ULL << 21)
#define X86_RFLAGS_AC (1ULL << 18)
#define MSR_EFER 0xc0000080

/* CPUID features the guests decide on. */
bool rt_has_smep(void);
bool rt_has_smap(void);
bool rt_has_1g_pages(void);

/* Page tables. Levels: 1 = PTE ... 4 = PML4E. */
typedef uint64_t pte_t;
#define PTE_P (1ULL << 0)
#define PTE_W (1ULL << 1)
#define PTE_U (1ULL << 2)
#define PTE_A (1ULL << 5)
#define PTE_D (1ULL << 6)
#define PTE_PS (1ULL << 7)
#define PTE_G (1ULL << 8)
#define PTE_NX (1ULL << 63)
#define PTE_ADDR 0x000ffffffffff000ULL
#define SIZE_4K 0x1000ULL
#define SIZE_2M 0x200000ULL
#define SIZE_1G 0x40000000ULL

/* A new, empty PML4 whose entry 0 shares the boot identity map of
 * [0, 4 GiB) (supervisor 2 MiB pages). */
uint64_t pt_root_new(void);
/* The entry of va at level in root; with alloc, missing tables on the
 * way are allocated with upper (e.g. P|W|U). NULL when a large page or a
 * missing table is in the way. */
pte_t *pt_entry(uint64_t root, uint64_t va, int level, bool alloc,
		uint64_t upper);
/* Maps va -> pa with one 4 KiB, 2 MiB or 1 GiB entry carrying flags
 * (PTE_P implied; PS added for large sizes); upper levels get P|W|U. */
void pt_map(uint64_t root, uint64_t va, uint64_t pa, uint64_t size,
	    uint64_t flags);
void pt_unmap(uint64_t root, uint64_t va, uint64_t size);
/* Maps .usertext/.userdata at RT_USER_ALIAS in root (U at every level). */
void rt_user_map(uint64_t root);
/* The CPL3 alias of a .usertext/.userdata address. */
uint64_t rt_user_va(const void *p);

#endif
