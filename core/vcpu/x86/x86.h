/*
 * core/vcpu/x86: the software x86-64 CPU. One struct x86_cpu per vCPU,
 * driven only by its own vCPU thread: x86_run() interprets guest code
 * until something needs the world outside the CPU (a shadow page fault,
 * port I/O, HLT, a control-register change the MMU must see, a kick) and
 * returns that as an exit. Guest memory is reached only through the
 * shadow page tables whose root the vCPU layer installs: the CPU walks
 * them as hardware walks page tables, caches what it finds in a soft TLB,
 * and never looks at guest page tables itself.
 */
#ifndef MMUD_X86_H
#define MMUD_X86_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "x86_arch.h"

struct x86_cpu;

enum x86_reg {
	X86_RAX,
	X86_RCX,
	X86_RDX,
	X86_RBX,
	X86_RSP,
	X86_RBP,
	X86_RSI,
	X86_RDI,
	X86_R8,
	X86_R9,
	X86_R10,
	X86_R11,
	X86_R12,
	X86_R13,
	X86_R14,
	X86_R15,
};

enum x86_sreg { X86_ES, X86_CS, X86_SS, X86_DS, X86_FS, X86_GS };

/*
 * A segment register with its hidden part. attr holds descriptor bits
 * 40..55 shifted down by 40 (type 0-3, S 4, DPL 5-6, P 7, AVL 12, L 13,
 * D/B 14, G 15); bit 16 (X86_SEG_UNUSABLE) marks a null-loaded register.
 */
struct x86_segment {
	uint16_t sel;
	uint64_t base;
	uint32_t limit;
	uint32_t attr;
};
#define X86_SEG_TYPE(a) ((a)&0xf)
#define X86_SEG_S (1u << 4)
#define X86_SEG_DPL(a) (((a) >> 5) & 3)
#define X86_SEG_P (1u << 7)
#define X86_SEG_L (1u << 13)
#define X86_SEG_DB (1u << 14)
#define X86_SEG_G (1u << 15)
#define X86_SEG_UNUSABLE (1u << 16)

struct x86_dtable {
	uint64_t base;
	uint16_t limit;
};

struct x86_regs {
	uint64_t gpr[16];
	uint64_t rip;
	uint64_t rflags;
};

struct x86_sregs {
	struct x86_segment seg[6]; /* indexed by enum x86_sreg */
	struct x86_segment ldtr, tr;
	struct x86_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer;
};

/* What a memory access is, in #PF error-code bit positions. */
#define X86_ACC_WRITE PFERR_WRITE
#define X86_ACC_USER PFERR_USER
#define X86_ACC_FETCH PFERR_FETCH
/* An implicit supervisor access (descriptor tables, TSS, IDT, stacks of
 * event delivery) made while CPL may be 3: never a user access, and SMAP
 * applies regardless of RFLAGS.AC (SDM vol. 3, 4.6). */
#define X86_ACC_IMPLICIT (1u << 8)

enum x86_exit_reason {
	X86_EXIT_NONE,
	/* The kick flag was set: leave guest mode and handle requests. */
	X86_EXIT_KICK,
	/* The instruction budget of x86_run() ran out. */
	X86_EXIT_BUDGET,
	/* A translation missed or lacked a permission in the shadow tables:
	 * the MMU must fix the spte or tell the CPU to inject #PF. The
	 * instruction has not happened and restarts on the next run. */
	X86_EXIT_SHADOW_FAULT,
	/* Port I/O. OUT has completed; IN waits for x86_io_complete(). */
	X86_EXIT_IO,
	/* HLT retired with RFLAGS.IF as given, or x86_run() was called on
	 * a halted CPU with no event ready: only an NMI or interrupt the
	 * vCPU layer raises resumes it (x86_event_ready()). */
	X86_EXIT_HLT,
	/* CR0, CR3, CR4 or EFER changed (already committed): the MMU must
	 * load a root for the new state. */
	X86_EXIT_PAGING,
	/* INVLPG / INVPCID retired: the MMU syncs what it shadows. */
	X86_EXIT_INVLPG,
	/* A fault while delivering #DF: the VM must stop. */
	X86_EXIT_TRIPLE_FAULT,
	/* The guest spins: X86_PLE_WINDOW PAUSEs since the last such exit
	 * (KVM's pause-loop exiting). The vCPU layer may yield the host
	 * CPU; nothing else is pending. */
	X86_EXIT_PAUSE,
};

#define X86_PLE_WINDOW 64

struct x86_exit {
	enum x86_exit_reason reason;
	union {
		struct {
			gva_t gva;
			unsigned int access; /* X86_ACC_* */
		} fault;
		struct {
			uint16_t port;
			uint8_t size; /* 1, 2 or 4 */
			bool in;
			uint32_t value; /* OUT: the value written */
		} io;
		struct {
			bool interrupts_enabled;
		} hlt;
		struct {
			uint8_t reg; /* 0, 3, 4, or 8 for EFER */
			uint64_t old_value, new_value;
			/* MOV to CR3 with CR4.PCIDE and bit 63 set: the
			 * guest asked that no translation be invalidated
			 * (bit 63 itself is never in CR3). */
			bool noflush;
		} paging;
		struct {
			gva_t gva;
			/* Every address: INVPCID single-context or
			 * all-context (types 1, 2, 3). */
			bool all;
		} invlpg;
		struct {
			uint8_t vectors[3]; /* the chain: first, second, #DF */
			uint64_t rip;
		} triple;
	};
};

/*
 * Callbacks from the CPU into the vCPU layer, made on the vCPU thread
 * while it executes guest code. mmio_read/mmio_write serve accesses to
 * pages installed with x86_map_mmio().
 */
struct x86_env {
	uint64_t (*mmio_read)(void *opaque, gpa_t gpa, unsigned int size);
	void (*mmio_write)(void *opaque, gpa_t gpa, unsigned int size,
			   uint64_t value);
	/* A write to a page installed with x86_map_tracked() has been
	 * stored (atomically, like any other); the MMU must hear of it. */
	void (*tracked_write)(void *opaque, gpa_t gpa, unsigned int size);
	/* The interrupt acknowledge of an asserted INTR line the CPU is
	 * about to take: the vector (0-255), or -1 when none is pending
	 * after all. The CPU drops its INTR line first; call
	 * x86_set_intr(cpu, true) from here if more remain. NULL: none. */
	int (*intr_ack)(void *opaque);
	/*
	 * RDMSR/WRMSR at CPL0, asked before the CPU's own MSRs: 0 done (a
	 * read stores *value; a write of IA32_APIC_BASE is also kept in
	 * the CPU's saved state), -EINVAL raises #GP, -ENOENT leaves the
	 * MSR to the CPU. NULL: none.
	 */
	int (*msr)(void *opaque, uint32_t index, bool write, uint64_t *value);
	/*
	 * MOV to or from CR8, the local APIC's TPR[7:4] in 64-bit mode
	 * (SDM vol. 3, 10.8.6.1): a read stores CR8 in *value, a write
	 * passes it (bits 63:4 already checked). NULL: CR8 is the CPU's
	 * own register. With it, the CPU's copy (x86_get_sregs) is what
	 * the guest last wrote through CR8, not what the APIC holds.
	 */
	void (*cr8)(void *opaque, bool write, uint64_t *value);
};

/* NULL means -ENOMEM. The CPU starts in the boot state
 * (docs/GUEST-ABI.md, "Entry state") with RIP 0; see x86_reset_boot(). */
struct x86_cpu *x86_cpu_new(unsigned int index, unsigned int nr_cpus,
			    const struct x86_env *env, void *opaque);
void x86_cpu_free(struct x86_cpu *cpu);

/* The architectural state of docs/GUEST-ABI.md, "Entry state", at
 * e_entry. */
void x86_reset_boot(struct x86_cpu *cpu, gva_t entry, gpa_t bootinfo);

void x86_get_regs(const struct x86_cpu *cpu, struct x86_regs *regs);
/* Also ends the HLT state: the CPU runs from regs->rip. */
void x86_set_regs(struct x86_cpu *cpu, const struct x86_regs *regs);
void x86_get_sregs(const struct x86_cpu *cpu, struct x86_sregs *sregs);
/* Also flushes the soft TLB. */
void x86_set_sregs(struct x86_cpu *cpu, const struct x86_sregs *sregs);
unsigned int x86_cpl(const struct x86_cpu *cpu);
/*
 * The x87, SSE and MXCSR state as the 512-byte image FXSAVE64 writes
 * (SDM vol. 1, 10.5.1; bytes 416-511 zero). x86_set_fpu() loads one and
 * returns false, changing nothing, when its MXCSR sets a bit the CPU
 * does not implement (FXSAVE's MXCSR_MASK, bytes 28-31).
 */
void x86_get_fpu(const struct x86_cpu *cpu, uint8_t img[512]);
bool x86_set_fpu(struct x86_cpu *cpu, const uint8_t img[512]);

/*
 * The host address of the shadow PML4 the CPU walks (0: none, every
 * access is a shadow fault). Keeps the soft TLB (see cpu.c).
 */
void x86_set_shadow_root(struct x86_cpu *cpu, hva_t root);
/* The flag polled at least once per basic block; nonzero ends x86_run()
 * with X86_EXIT_KICK. Read with a relaxed load: the vCPU layer's own
 * barriers order it (see core/vcpu). */
void x86_set_kick(struct x86_cpu *cpu, const _Atomic unsigned int *kick);

/* Soft TLB maintenance (TLB_FLUSH requests, MMU changes). */
void x86_tlb_flush(struct x86_cpu *cpu);
void x86_tlb_flush_page(struct x86_cpu *cpu, gva_t gva);
/*
 * Routes accesses to the page of gva to mmio_read/mmio_write at the page
 * of gpa, with the guest's rights (X86_ACC_* bits the access may use:
 * WRITE, USER, FETCH) until the next flush of that page.
 */
void x86_map_mmio(struct x86_cpu *cpu, gva_t gva, gpa_t gpa,
		  unsigned int rights);

/*
 * Maps the page of gva to guest RAM at hva (guest-physical gpa) with
 * rights, like a shadow walk would, except that every write calls
 * tracked_write() after it is stored: the page is one the MMU write-
 * protects (a shadowed guest page table) and must see writes to.
 */
void x86_map_tracked(struct x86_cpu *cpu, gva_t gva, hva_t hva, gpa_t gpa,
		     unsigned int rights);
/* Ends x86_run() after the current instruction (X86_EXIT_NONE unless the
 * instruction sets another exit). Callable from x86_env callbacks. */
void x86_request_exit(struct x86_cpu *cpu);

/*
 * Makes an exception pending, to be delivered when x86_run() next runs
 * (e.g. #PF when the MMU's guest walk failed: cr2 is the address). An
 * exception injected while another is being delivered combines with it
 * by the SDM's double-fault rules (vol. 3, table 6-5).
 */
void x86_inject_exception(struct x86_cpu *cpu, unsigned int vector,
			  uint32_t error_code, uint64_t cr2);
/*
 * External events, taken only at instruction boundaries (SDM vol. 3,
 * 6.7-6.9): x86_set_intr() is the level of the INTR line (maskable
 * interrupts, vector from env->intr_ack() when taken, with RFLAGS.IF =
 * 1 and outside the STI / MOV SS shadow); x86_inject_nmi() latches an
 * NMI (vector 2), taken before a maskable interrupt, whatever IF, and
 * blocked from its delivery until the next IRET. Either one, when
 * taken, ends the HLT state: x86_run() of a halted CPU returns
 * X86_EXIT_HLT at once until x86_event_ready() holds.
 */
void x86_set_intr(struct x86_cpu *cpu, bool asserted);
void x86_inject_nmi(struct x86_cpu *cpu);
/* HLT retired and no event has been taken since. */
bool x86_halted(const struct x86_cpu *cpu);
/* An event (exception, NMI or maskable interrupt) would be taken at the
 * current boundary: a halted CPU would resume. */
bool x86_event_ready(const struct x86_cpu *cpu);
/* An NMI was delivered and no IRET has retired since. */
bool x86_nmi_blocked(const struct x86_cpu *cpu);

/* Completes the IN of the last X86_EXIT_IO with the device's value. */
void x86_io_complete(struct x86_cpu *cpu, uint32_t value);

/*
 * Runs guest code until an exit or until max_insns instructions retired
 * (0: no limit). Returns the exit reason, also in *exit.
 */
enum x86_exit_reason x86_run(struct x86_cpu *cpu, uint64_t max_insns,
			     struct x86_exit *exit);

uint64_t x86_insns_retired(const struct x86_cpu *cpu);

/*
 * The run loop's counters (docs/QMP.md, "x-query-cpu-stats (daemon)"),
 * as of the end of the CPU's last x86_run(): any thread may read them
 * while the CPU exists.
 */
struct x86_cpu_stats {
	uint64_t blocks; /* block entries run */
	uint64_t cache_hits; /* entries found decoded and current */
	uint64_t chain_hits; /* of those, as the last block's successor */
	uint64_t cache_misses; /* not cached: decoded */
	uint64_t cache_stale; /* cached but the guest bytes changed */
	uint64_t uncached; /* first instruction crosses a page */
	uint64_t mmio_fetches; /* instructions decoded from MMIO */
	uint64_t smc_breaks; /* blocks ended by a store into themselves */
	uint64_t flushes; /* the whole block cache dropped */
	uint64_t budget_exits, kick_exits;
	uint64_t pool_bytes; /* of decoded blocks now in the cache */
	/* Blocks run on the generic handlers, by why: an interrupt shadow
	 * or line pending at their start, the budget ending inside. */
	uint64_t generic_irq, generic_budget;
	/* The JIT (docs/JIT.md): blocks translated, nanoseconds spent
	 * translating them, bytes of host code in the buffer now; verify
	 * mode: blocks compared, blocks run by the interpreter alone. */
	uint64_t jit_blocks, jit_ns, jit_bytes;
	uint64_t verified, unverified;
};
void x86_cpu_stats_get(const struct x86_cpu *cpu, struct x86_cpu_stats *out);
/* The execution engine the CPU runs guest code with: "interp", "jit" or
 * "jit-verify". */
const char *x86_engine_name(const struct x86_cpu *cpu);

/*
 * How CPUs run guest code (docs/JIT.md): the interpreter (the default
 * and the reference), the template JIT, or the JIT checked block by
 * block against the interpreter. Process-wide, chosen before any CPU is
 * created. The JIT needs executable memory: when it cannot be had (the
 * probe maps a memfd twice, RW and RX), one line is logged and the
 * interpreter runs. Returns the engine in effect.
 */
enum x86_engine {
	X86_ENGINE_INTERP,
	X86_ENGINE_JIT,
	X86_ENGINE_JIT_VERIFY,
};
enum x86_engine x86_engine_select(enum x86_engine want);

/*
 * The guest's TSC is the host's plus an offset (RDTSC, IA32_TSC). The
 * VM gives every CPU the same one, so the TSC is invariant and equal on
 * every vCPU (docs/GUEST-ABI.md, "Time"); x86_reset_boot() starts it at
 * 0 on this CPU, a WRMSR to IA32_TSC moves this CPU's alone.
 */
void x86_set_tsc_offset(struct x86_cpu *cpu, int64_t offset);
uint64_t x86_guest_tsc(const struct x86_cpu *cpu);

/* ---- saved state (state.c): migration and snapshots ------------------- */

/* The MSRs the CPU keeps outside struct x86_sregs (FS and GS bases are
 * in sregs' segments, EFER in sregs.efer). */
struct x86_msrs {
	uint64_t star, lstar, cstar, sfmask, kernel_gs_base;
	uint64_t pat, tsc_aux, apic_base, misc_enable;
};

/*
 * What else a stopped CPU holds: the MSRs above, the guest's TSC (as a
 * value: loading it recomputes the offset from the host TSC), an event
 * queued for delivery, the interrupt shadow, a latched NMI, NMI blocking
 * and the HLT state. Extension point: the interrupt work's pending-
 * interrupt state (INTR line, controller registers) is not here yet; it
 * gets its own struct and stream section (docs/MIGRATION.md, "Extending
 * the stream").
 */
struct x86_misc_state {
	struct x86_msrs msrs;
	uint64_t guest_tsc;
	struct {
		bool pending;
		uint8_t vector;
		uint8_t kind; /* 0 fault, 1 trap, 2 soft int, 3 extint, 4 NMI */
		bool has_error;
		uint32_t error;
		uint64_t return_rip;
		uint64_t cr2; /* CR2 a pending #PF loads at delivery */
	} ev;
	int16_t delivering; /* vector being delivered, -1 when none */
	uint8_t int_shadow; /* 0, 1 (set by the last insn) or 2 (active) */
	bool nmi_latched, nmi_blocked, halted;
};

/* -EBUSY when the CPU is not at a clean boundary (an IN waits for
 * x86_io_complete(), or a triple fault shut it down), else 0. */
int x86_get_misc(const struct x86_cpu *cpu, struct x86_misc_state *st);

/*
 * Checks loaded state against what this CPU implements (reserved CR0,
 * CR3, CR4, CR8, EFER and RFLAGS bits; 64-bit mode; canonical RIP and
 * bases; PAT types; APIC base; event fields): false with the register
 * named in err. x86_load_state() checks all four, then loads all four,
 * or changes nothing; fpu is an x86_get_fpu() image.
 */
bool x86_check_regs(const struct x86_regs *regs, char *err, size_t errlen);
bool x86_check_sregs(const struct x86_sregs *s, char *err, size_t errlen);
bool x86_check_misc(const struct x86_misc_state *st, char *err, size_t errlen);
bool x86_load_state(struct x86_cpu *cpu, const struct x86_regs *regs,
		    const struct x86_sregs *sregs, const uint8_t fpu[512],
		    const struct x86_misc_state *misc, char *err,
		    size_t errlen);

/*
 * The debug registers (SDM vol. 3, 18.2) for migration: DR0-DR3 as
 * written, DR6 and DR7 as MOV DRn reads them. x86_set_debugregs()
 * refuses (false, nothing changed, the register named in err) a DR6 or
 * DR7 that MOV DRn could not have produced: bits 63:32 set, a fixed-1
 * bit clear or a reserved bit set. The CPU parked.
 */
struct x86_debugregs {
	uint64_t dr[4], dr6, dr7;
};
void x86_get_debugregs(const struct x86_cpu *cpu, struct x86_debugregs *d);
bool x86_set_debugregs(struct x86_cpu *cpu, const struct x86_debugregs *d,
		       char *err, size_t errlen);

/* A 64-bit hash of what CPUID reports to every vCPU (leaves 0, 1 without
 * the APIC ID, 7.0, 80000000H and 80000001H): equal on two mmud that
 * present the same CPU. */
uint64_t x86_cpuid_signature(const struct x86_cpu *cpu);

#endif
