/*
 * The software CPU's unit-test harness (see harness.h): 64 MiB of guest
 * memory identity-mapped by shadow tables the harness builds itself, in
 * the spte layout the CPU walks (host addresses in the frame field).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "harness.h"
#include "hostexec.h"

#define NPAGES (XH_MEM_SIZE / 4096)
#define NTABLES (NPAGES / 512)
#define UPPER (X86_PTE_P | X86_PTE_W | X86_PTE_U)

struct xh_tables {
	uint64_t pml4[512];
	uint64_t pdpt[512];
	uint64_t pd[512];
	uint64_t pt[NTABLES][512];
};

static uint64_t mmio_read(void *opaque, gpa_t gpa, unsigned int size)
{
	(void)opaque;
	(void)gpa;
	/* Nothing behind MMIO pages in the harness: a PC's open bus. */
	return size == 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
}

static void mmio_write(void *opaque, gpa_t gpa, unsigned int size,
		       uint64_t value)
{
	(void)opaque;
	(void)gpa;
	(void)size;
	(void)value;
}

static void tracked_write(void *opaque, gpa_t gpa, unsigned int size)
{
	(void)opaque;
	(void)gpa;
	(void)size;
}

static const struct x86_env env = {
	.mmio_read = mmio_read,
	.mmio_write = mmio_write,
	.tracked_write = tracked_write,
};

struct xh *xh_new(void)
{
	struct xh *h = calloc(1, sizeof(*h));
	struct xh_tables *t;

	assert_non_null(h);
	h->mem = mmap(NULL, XH_MEM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(h->mem != MAP_FAILED);
	t = aligned_alloc(4096, sizeof(*t));
	assert_non_null(t);
	memset(t, 0, sizeof(*t));
	t->pml4[0] = (uint64_t)(uintptr_t)t->pdpt | UPPER;
	t->pdpt[0] = (uint64_t)(uintptr_t)t->pd | UPPER;
	for (unsigned int i = 0; i < NTABLES; i++) {
		t->pd[i] = (uint64_t)(uintptr_t)t->pt[i] | UPPER;
		for (unsigned int j = 0; j < 512; j++)
			t->pt[i][j] =
				(uint64_t)(uintptr_t)(h->mem +
						      (i * 512 + j) * 4096ULL) |
				UPPER;
	}
	h->sptes = &t->pt[0][0];
	h->cpu = x86_cpu_new(0, 1, &env, h);
	assert_non_null(h->cpu);
	x86_reset_boot(h->cpu, XH_CODE, 0x7000);
	x86_set_shadow_root(h->cpu, (hva_t)(uintptr_t)t->pml4);
	{
		struct x86_regs r;

		x86_get_regs(h->cpu, &r);
		r.gpr[X86_RSP] = XH_STACK_TOP;
		x86_set_regs(h->cpu, &r);
	}
	return h;
}

void xh_free(struct xh *h)
{
	/* The tables start at the PML4, which sits at the struct's start. */
	void *tables = (uint8_t *)h->sptes - offsetof(struct xh_tables, pt);

	x86_cpu_free(h->cpu);
	free(tables);
	munmap(h->mem, XH_MEM_SIZE);
	free(h);
}

void *xh_ptr(struct xh *h, gpa_t gpa)
{
	assert_true(gpa < XH_MEM_SIZE);
	return h->mem + gpa;
}

void xh_load(struct xh *h, gpa_t gpa, const void *bytes, size_t len)
{
	assert_true(gpa + len <= XH_MEM_SIZE);
	memcpy(h->mem + gpa, bytes, len);
}

void xh_set_page(struct xh *h, gva_t gva, uint64_t flags)
{
	uint64_t page = gva / 4096;

	assert_true(page < NPAGES);
	h->sptes[page] =
		flags ? (uint64_t)(uintptr_t)(h->mem + page * 4096) | flags : 0;
	x86_tlb_flush_page(h->cpu, gva);
}

enum x86_exit_reason xh_run(struct xh *h, uint64_t max_insns,
			    struct x86_exit *exit)
{
	uint64_t start = x86_insns_retired(h->cpu);

	for (;;) {
		uint64_t done = x86_insns_retired(h->cpu) - start;
		enum x86_exit_reason r;

		if (max_insns && done >= max_insns)
			return X86_EXIT_BUDGET;
		r = x86_run(h->cpu, max_insns ? max_insns - done : 0, exit);
		/* A pause-loop exit only offers to yield: run on. */
		if (r == X86_EXIT_PAUSE)
			continue;
		if (r != X86_EXIT_IO)
			return r;
		if (exit->io.in) {
			x86_io_complete(h->cpu, h->in_value);
		} else if (h->nr_outs < sizeof(h->outs) / sizeof(h->outs[0])) {
			h->outs[h->nr_outs].port = exit->io.port;
			h->outs[h->nr_outs].size = exit->io.size;
			h->outs[h->nr_outs].value = exit->io.value;
			h->nr_outs++;
		}
	}
}

void xh_place_code(struct xh *h, const void *code, size_t len)
{
	static const uint8_t hlt = 0xf4;
	struct x86_regs r;

	if (len)
		xh_load(h, XH_CODE, code, len);
	xh_load(h, XH_CODE + len, &hlt, 1);
	x86_get_regs(h->cpu, &r);
	r.rip = XH_CODE;
	x86_set_regs(h->cpu, &r);
}

int xh_run_code(struct xh *h, const void *code, size_t len)
{
	struct x86_exit exit;
	struct x86_regs r;
	enum x86_exit_reason reason;

	xh_place_code(h, code, len);
	reason = xh_run(h, 1000000, &exit);
	x86_get_regs(h->cpu, &r);
	if (reason == X86_EXIT_HLT && r.rip == XH_CODE + len + 1)
		return 0;
	fprintf(stderr, "xh_run_code: exit %d at rip %#llx", reason,
		(unsigned long long)r.rip);
	if (reason == X86_EXIT_SHADOW_FAULT)
		fprintf(stderr, " (gva %#llx access %#x)",
			(unsigned long long)exit.fault.gva, exit.fault.access);
	fprintf(stderr, "\n");
	return -1;
}

uint64_t xh_reg(struct xh *h, unsigned int reg)
{
	struct x86_regs r;

	x86_get_regs(h->cpu, &r);
	return r.gpr[reg];
}

void xh_set_reg(struct xh *h, unsigned int reg, uint64_t v)
{
	struct x86_regs r;

	x86_get_regs(h->cpu, &r);
	r.gpr[reg] = v;
	x86_set_regs(h->cpu, &r);
}

uint64_t xh_rflags(struct xh *h)
{
	struct x86_regs r;

	x86_get_regs(h->cpu, &r);
	return r.rflags;
}

uint64_t xh_rip(struct xh *h)
{
	struct x86_regs r;

	x86_get_regs(h->cpu, &r);
	return r.rip;
}

enum x86_exit_reason xh_run_at(struct xh *h, const void *code, size_t len,
			       struct x86_exit *exit)
{
	xh_place_code(h, code, len);
	return xh_run(h, 100000, exit);
}

void xh_run_ok(struct xh *h, const void *code, size_t len)
{
	assert_int_equal(xh_run_code(h, code, len), 0);
}

void xh_expect_fault(struct xh *h, const void *code, size_t len,
		     unsigned int vector)
{
	struct x86_regs before, after;
	struct x86_exit exit;

	x86_get_regs(h->cpu, &before);
	assert_int_equal(xh_run_at(h, code, len, &exit), X86_EXIT_TRIPLE_FAULT);
	assert_int_equal(exit.triple.vectors[0], vector);
	x86_get_regs(h->cpu, &after);
	assert_int_equal(after.rip, XH_CODE);
	assert_memory_equal(before.gpr, after.gpr, sizeof(before.gpr));
}

void xh_diff_host(struct xh *h, const char *name, const uint8_t *code,
		  size_t len, const uint64_t gpr[16], uint64_t flags,
		  uint64_t fmask)
{
	struct hx_regs hx;
	struct x86_regs regs;

	memcpy(hx.gpr, gpr, sizeof(hx.gpr));
	hx.rflags = flags;
	assert_int_equal(hx_run(code, len, &hx), HX_OK);

	memcpy(regs.gpr, gpr, sizeof(regs.gpr));
	regs.gpr[X86_RSP] = XH_STACK_TOP;
	regs.rip = XH_CODE;
	regs.rflags = flags | X86_RFLAGS_FIXED;
	x86_set_regs(h->cpu, &regs);
	xh_run_ok(h, code, len);
	x86_get_regs(h->cpu, &regs);
	for (unsigned int r = 0; r < 16; r++) {
		if (r == X86_RSP)
			continue;
		if (regs.gpr[r] != hx.gpr[r])
			fail_msg("%s: r%u = %#llx, host %#llx", name, r,
				 (unsigned long long)regs.gpr[r],
				 (unsigned long long)hx.gpr[r]);
	}
	if ((regs.rflags ^ hx.rflags) & fmask)
		fail_msg("%s: rflags %#llx, host %#llx", name,
			 (unsigned long long)regs.rflags,
			 (unsigned long long)hx.rflags);
}
