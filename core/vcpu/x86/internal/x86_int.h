/*
 * Internals of the software CPU shared by its files: the CPU state, the
 * decoded-instruction format, the opcode table entries every exec_*.c
 * registers, and the operand, memory, flag and exception helpers the
 * executors use. Outside core/vcpu/x86 only the CPU's unit tests
 * (tests/unit/x86), the decoder's fuzz target (tests/fuzz) and the
 * explorer (tests/explorer/world.c) include it, to reach the decoder,
 * executors and CPU state directly.
 *
 * Execution model. The run loop (cpu.c) decodes the instruction at rip,
 * sets next_rip = rip + length and calls its handler. A handler reads its
 * operands (any of which may fault) before it changes architectural
 * state; it changes RIP only through next_rip. A fault is raised with
 * x86_raise*() and a missing translation with x86_shadow_fault(): both
 * longjmp back to the run loop, so the instruction leaves nothing half
 * done and restarts (or is delivered as an exception) from rip. A handler
 * that must leave the run loop after it retires (OUT, HLT, MOV CR3...)
 * fills cpu->exit and sets cpu->stop.
 */
#ifndef MMUD_X86_INT_H
#define MMUD_X86_INT_H

#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "x86.h"

/* ---- decoded instructions and the opcode table ------------------------ */

struct x86_cpu;
struct x86_insn;
typedef void (*x86_handler_t)(struct x86_cpu *cpu, const struct x86_insn *in);

/* The CR0 and CR4 bits this CPU implements: MOV to CR (exec_system.c)
 * and a loaded state (state.c) accept these only. CR4's are those of the
 * features CPUID reports (cpuid.c); CR4.PSE only selects 4 MiB pages in
 * 32-bit paging, which IA-32e paging ignores (SDM vol. 3, 4.1.1). */
#define X86_CR0_IMPLEMENTED                                               \
	(X86_CR0_PE | X86_CR0_MP | X86_CR0_EM | X86_CR0_TS | X86_CR0_ET | \
	 X86_CR0_NE | X86_CR0_WP | X86_CR0_AM | X86_CR0_NW | X86_CR0_CD | \
	 X86_CR0_PG)
#define X86_CR4_IMPLEMENTED                                                   \
	(X86_CR4_TSD | X86_CR4_PSE | X86_CR4_PAE | X86_CR4_PGE |              \
	 X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT | X86_CR4_PCIDE | X86_CR4_SMEP | \
	 X86_CR4_SMAP)

/* Opcode maps: the key of an opcode is map | byte. */
#define X86_MAP_1 0x000 /* one-byte opcodes */
#define X86_MAP_0F 0x100
#define X86_MAP_0F38 0x200
#define X86_MAP_0F3A 0x300
/* VEX-encoded opcodes (C4/C5 prefixes) of the 0F38 and 0F3A maps: only
 * the BMI1/BMI2 general-register instructions (exec_bmi.c). */
#define X86_MAP_VEX_0F38 0x400
#define X86_MAP_VEX_0F3A 0x500
#define X86_NR_OPCODES 0x600

/* struct x86_opdesc.flags */
#define X86_D_MODRM (1u << 0) /* a ModRM byte follows */
#define X86_D_BYTE (1u << 1) /* operand size is 8 bits */
#define X86_D_DEF64 (1u << 2) /* 64-bit default operand size (66: 16) */
#define X86_D_FORCE64 (1u << 3) /* always 64-bit operand size */
#define X86_D_LOCK (1u << 4) /* LOCK allowed (memory form only) */
#define X86_D_MEM (1u << 5) /* ModRM must name memory, else #UD */
#define X86_D_REG (1u << 6) /* ModRM must name a register, else #UD */
#define X86_D_OPREG (1u << 7) /* register in the low 3 opcode bits */
#define X86_D_BRANCH (1u << 8) /* may change control flow: kick check */

/* struct x86_opdesc.imm: the immediate that follows ModRM/SIB/disp. */
enum x86_imm {
	X86_IMM_NONE,
	X86_IMM_B, /* 8 bits, zero-extended */
	X86_IMM_SB, /* 8 bits, sign-extended to 64 */
	X86_IMM_W, /* 16 bits, zero-extended */
	X86_IMM_Z, /* 16 bits if opsize 2, else 32 sign-extended to 64 */
	X86_IMM_V, /* opsize bits: 16, 32 or 64 (MOV r, imm64) */
	X86_IMM_WB, /* 16 bits in imm, then 8 bits in imm2 (ENTER) */
	X86_IMM_MOFFS, /* address-size offset (MOV AL, moffs) */
};

/*
 * One entry of the opcode table. An exec_*.c file defines an array of
 * these ending with an entry whose fn is NULL; decode.c merges every
 * array into the lookup table once. group is the ModRM.reg value that
 * selects the entry (0-7), or X86_GROUP_ANY.
 */
#define X86_GROUP_ANY 0xff
struct x86_opdesc {
	uint16_t opcode; /* map | byte */
	uint8_t group;
	uint8_t imm; /* enum x86_imm */
	uint16_t flags; /* X86_D_* */
	x86_handler_t fn;
	const char *name;
};

extern const struct x86_opdesc x86_ops_alu[]; /* exec_alu.c */
extern const struct x86_opdesc x86_ops_mov[]; /* exec_mov.c */
extern const struct x86_opdesc x86_ops_flow[]; /* exec_flow.c */
extern const struct x86_opdesc x86_ops_string[]; /* exec_string.c */
extern const struct x86_opdesc x86_ops_system[]; /* exec_system.c */
extern const struct x86_opdesc x86_ops_segment[]; /* exec_segment.c */
extern const struct x86_opdesc x86_ops_io[]; /* exec_io.c */
extern const struct x86_opdesc x86_ops_bmi[]; /* exec_bmi.c */
extern const struct x86_opdesc x86_ops_fpu[]; /* fpu.c */
extern const struct x86_opdesc x86_ops_sse[]; /* exec_sse.c */
extern const struct x86_opdesc x86_ops_ssefp[]; /* exec_ssefp.c */
extern const struct x86_opdesc x86_ops_x87[]; /* exec_x87.c */

#define X86_NO_REG 0xff
#define X86_RIP_BASE 0x10 /* struct x86_insn.base for RIP-relative */

struct x86_insn {
	x86_handler_t fn;
	const struct x86_opdesc *desc;
	uint16_t opcode; /* map | byte */
	uint8_t len; /* 1..15 */
	uint8_t opsize; /* operand size in bytes: 1, 2, 4 or 8 */
	uint8_t addrsize; /* 4 or 8 */
	uint8_t modrm; /* the raw ModRM byte (0 without one) */
	uint8_t reg; /* ModRM.reg + REX.R, or the +r opcode register + REX.B */
	uint8_t rm; /* register operand (ModRM.rm + REX.B) when !mem */
	bool mem; /* the E operand is memory */
	uint8_t seg; /* enum x86_sreg of the memory operand */
	uint8_t base, index; /* X86_NO_REG, 0-15, or X86_RIP_BASE */
	uint8_t scale; /* log2 of the SIB scale */
	uint8_t rep; /* 0, 0xf2 or 0xf3 */
	bool lock;
	bool rex; /* any REX prefix: SPL/BPL/SIL/DIL instead of AH..BH */
	bool rex_w;
	bool opsize_prefix; /* 0x66 was present */
	/* VEX (the opcode is in a VEX map): the implied prefix (VEX.pp: 0,
	 * 0x66, 0xf3 or 0xf2, as rep and opsize_prefix would hold it
	 * without VEX) and the extra register operand (VEX.vvvv,
	 * un-inverted); W is in rex_w. */
	uint8_t vex_pfx;
	uint8_t vex_reg;
	int32_t disp;
	uint64_t imm;
	uint64_t imm2;
};

/* Decodes the instruction at cpu->rip into *in, fetching through the
 * soft TLB (which may raise #PF/#GP/#UD or exit for a shadow fault); with
 * raw, also copies the in->len bytes it decoded there. */
void x86_decode(struct x86_cpu *cpu, struct x86_insn *in, uint8_t raw[16]);
/* Decodes from avail bytes in memory without a CPU: false when they do
 * not hold a whole valid instruction (nothing is raised). */
bool x86_decode_bytes(const uint8_t *bytes, unsigned int avail,
		      struct x86_insn *in);
/* Builds the opcode table from the x86_ops_* arrays (once per process). */
void x86_decode_init(void);
/* The table entry for an opcode key and ModRM.reg; NULL when undefined. */
const struct x86_opdesc *x86_opdesc_lookup(unsigned int opcode,
					   unsigned int group);

/* ---- lazy flags (flags.c) --------------------------------------------- */

/*
 * The arithmetic flags are computed only when something reads them. An
 * ALU handler records its operation, operand size, result and sources,
 * all truncated to the operand size; while op != X86_LF_NONE,
 * cpu->rflags' arithmetic bits are stale and x86_rflags() derives them
 * (and writes them back, dropping the lazy state). SF, ZF and PF always
 * come from res; what each op records for CF, OF and AF:
 *   ADD, ADC   res = src1 + src2 (+ carry)
 *   SUB, SBB   res = src1 - src2 (- carry); CMP, CMPS, SCAS, CMPXCHG too
 *   NEG        res = -src1
 *   LOGIC      CF = OF = AF = 0
 *   INC, DEC   src1 = the operand; carry = the CF they leave alone
 *   SHL        carry = CF; OF = MSB(res) ^ CF
 *   SHR, SAR   carry = CF; OF = MSB(res) ^ the bit below it (SHRD too)
 *   SHLD       carry = CF; src1 = the destination shifted alone (no bits
 *              of the source); OF = MSB(src1) ^ CF
 *   MUL        CF = OF = (src1 != 0); SF ZF AF PF are cpu->rflags' own
 * Shifts with a nonzero count set AF, as the host (AMD Zen) does; the
 * SDM leaves it undefined.
 */
enum x86_lf_op {
	X86_LF_NONE,
	X86_LF_ADD,
	X86_LF_ADC,
	X86_LF_SUB,
	X86_LF_SBB,
	X86_LF_LOGIC,
	X86_LF_INC,
	X86_LF_DEC,
	X86_LF_NEG,
	X86_LF_SHL,
	X86_LF_SHR,
	X86_LF_SAR,
	X86_LF_SHLD,
	X86_LF_MUL, /* CF = OF = (src1 != 0): the high half was needed */
};

struct x86_lazy {
	uint8_t op; /* enum x86_lf_op */
	uint8_t size; /* operand size in bytes */
	uint64_t res, src1, src2;
	uint64_t carry; /* CF into ADC/SBB, kept by INC/DEC, out of shifts */
};

static inline void x86_lf_set(struct x86_lazy *lf, enum x86_lf_op op,
			      unsigned int size, uint64_t res, uint64_t src1,
			      uint64_t src2)
{
	lf->op = (uint8_t)op;
	lf->size = (uint8_t)size;
	lf->res = res;
	lf->src1 = src1;
	lf->src2 = src2;
}

/* The same with the carry field: ADC/SBB, INC/DEC and shifts. */
static inline void x86_lf_set_c(struct x86_lazy *lf, enum x86_lf_op op,
				unsigned int size, uint64_t res, uint64_t src1,
				uint64_t src2, uint64_t carry)
{
	x86_lf_set(lf, op, size, res, src1, src2);
	lf->carry = carry;
}

/* ---- the soft TLB (mem.c) --------------------------------------------- */

#define X86_TLB_SIZE 512 /* direct-mapped, a power of two */

/*
 * The tag of an entry: (gva >> 12) + 1 in bits 0..47 (0 marks an empty
 * entry) and, in bits 48..60, the PCID it was made under, or
 * X86_TLB_GLOBAL for a global translation, which every PCID may use
 * (SDM vol. 3, 4.10.2.4).
 */
#define X86_TLB_PCID_SHIFT 48
#define X86_TLB_GLOBAL (0x1000ULL << X86_TLB_PCID_SHIFT)
#define X86_TLB_VPN_MASK ((1ULL << X86_TLB_PCID_SHIFT) - 1)

struct x86_tlb_entry {
	uint64_t tag;
	hva_t hva; /* host address of the page, 0 for an MMIO page */
	hva_t whva; /* hva when writes need nothing more, else 0 */
	gpa_t gpa; /* MMIO and tracked pages: the guest-physical page */
	uint32_t rights; /* X86_ACC_WRITE/USER/FETCH all levels allow */
};

/* ---- the decoded-block cache (cpu.c) ---------------------------------- */

/*
 * Straight-line runs of decoded instructions (up to a branch, the end of
 * the page, X86_BLOCK_INSNS instructions or X86_BLOCK_BYTES bytes), keyed
 * by the host address of their first byte: one guest-physical location.
 * A block is used only while the guest bytes still equal the ones it was
 * decoded from, checked at every entry with the aligned quadwords that
 * hold them; a store by this vCPU into the block it is running ends it
 * after the storing instruction (x86_note_code_write()). So self- and
 * cross-modifying code need no invalidation protocol, and a stale
 * decoding can never run.
 *
 * Blocks live in a per-vCPU pool, each as long as its instructions
 * (X86_BPOOL_BYTES, bump-allocated; when it is full the whole cache is
 * dropped at a block boundary, where no block is running). The index is
 * a hash table of X86_BCACHE_BUCKETS chains over the host address, the
 * block found last moved to the front of its chain: every block in the
 * pool can be found, so nothing is decoded twice between flushes.
 */
#define X86_BLOCK_INSNS 16
#define X86_BLOCK_BYTES 64
#define X86_BCACHE_BUCKETS 32768 /* a power of two */
#define X86_BPOOL_BYTES (16u << 20)

struct x86_block {
	struct x86_block *next; /* in its hash chain */
	hva_t hva;
	/* The last two blocks run after this one (hva 0: none), tried
	 * before the hash table; like any block found, used only while
	 * current (block_current()). succ_next: the one to replace. */
	hva_t succ_hva[2];
	struct x86_block *succ[2];
	uint8_t succ_next;
	uint8_t ninsns;
	uint8_t nbytes;
	uint8_t nq; /* aligned quadwords covering the bytes */
	/* Entries run by the interpreter before it is translated (--cpu
	 * jit: at X86_JIT_WARM; docs/JIT.md, "What a block's code does"). */
	uint8_t warm;
	uint64_t first_mask, last_mask;
	uint64_t q[X86_BLOCK_BYTES / 8 + 1]; /* their contents, masked */
	/* With --cpu jit: the block's host code in the RX view of the code
	 * buffer (jit.c), NULL: run by the interpreter. Dropped with the
	 * block (the two caches are flushed together). */
	void *code;
	struct x86_insn in[]; /* ninsns of them */
};

/* What the run loop counts (x86_cpu_stats_get()): plain fields of the
 * vCPU thread, published at the end of every x86_run(). */
enum x86_stat {
	X86_STAT_BLOCKS, /* block entries run */
	/* Found decoded and current in the hash table (cache-hits in
	 * x86_cpu_stats_get() adds the chain hits). */
	X86_STAT_HITS,
	X86_STAT_CHAIN_HITS, /* found as the last block's successor */
	X86_STAT_MISSES, /* not in the cache: decoded */
	X86_STAT_STALE, /* cached, but the guest bytes changed: redecoded */
	X86_STAT_UNCACHED, /* first instruction crosses a page: not kept */
	X86_STAT_MMIO_FETCH, /* instructions decoded from an MMIO page */
	X86_STAT_SMC_BREAKS, /* blocks ended by a store into themselves */
	X86_STAT_FLUSHES, /* the whole cache dropped (pool full) */
	X86_STAT_BUDGET_EXITS, /* runs ended by the instruction budget */
	X86_STAT_KICK_EXITS, /* runs ended by a kick */
	/* Blocks run on the generic handlers, by why (cpu.c): an interrupt
	 * shadow or line pending at their start, the budget ending in
	 * them. */
	X86_STAT_GENERIC_IRQ,
	X86_STAT_GENERIC_BUDGET,
	X86_STAT_POOL_BYTES, /* a gauge: the pool's bytes in use */
	/* The JIT (jit.c): blocks translated, the nanoseconds spent on it,
	 * the code buffer's bytes in use (a gauge); the verify mode
	 * (jit_verify.c): blocks run by both engines and compared, blocks
	 * run by the interpreter alone because they cannot be run twice. */
	X86_STAT_JIT_BLOCKS,
	X86_STAT_JIT_NS,
	X86_STAT_JIT_BYTES,
	X86_STAT_VERIFIED,
	X86_STAT_UNVERIFIED,
	X86_STAT_NR,
};

/* Gives the n decoded instructions of a block their specialised handlers
 * where fast.c has one (desc->fn stays the generic handler). */
void x86_specialise(struct x86_insn *in, unsigned int n);

/* Every store this vCPU makes to guest RAM at host address hva, n bytes
 * long, goes through here: a store into the running block ends it. */
static inline void x86_note_code_write(struct x86_cpu *cpu, hva_t hva,
				       size_t n);

/* ---- the template JIT (jit.c, jit_verify.c; docs/JIT.md) --------------- */

struct x86_jit;
struct x86_verify;

/* A block is translated on its X86_JIT_WARM-th entry: code rewritten
 * before every run (decoded anew each time) stays interpreted, and costs
 * no translations. */
#define X86_JIT_WARM 3

/* The engine x86_engine_select() settled on for the CPUs created after
 * it (process-wide). */
enum x86_engine x86_engine_current(void);
/* A vCPU's JIT state: its code buffer (an RW and an RX view of one
 * memfd) and, in verify mode, the snapshots; NULL when executable memory
 * cannot be had (logged once; the vCPU then interprets). */
struct x86_jit *x86_jit_new(struct x86_cpu *cpu, bool verify);
void x86_jit_free(struct x86_jit *jit);
/* Whether the code buffer holds room for one more block. */
bool x86_jit_has_room(const struct x86_jit *jit);
/* Empties the code buffer (with the block cache: no code is running). */
void x86_jit_flush(struct x86_jit *jit);
/* Translates b (decoded and specialised) into b->code; leaves it NULL
 * for a block it does not take. */
void x86_jit_translate(struct x86_cpu *cpu, struct x86_block *b);
/*
 * Runs b's code from cpu->rip as the run loop's specialised path runs
 * b->in (cpu.c, x86_run()): 0 when the block ended with attn clear
 * (cpu->rip is the next instruction), 1 when attn was set after an
 * instruction (cpu->rip is the next one; the caller handles the
 * boundary). Faults longjmp out exactly as the handlers do.
 */
static inline int x86_jit_run(struct x86_cpu *cpu, const struct x86_block *b);
/* The interpreter's specialised run of b (cpu.c), with the same result
 * as x86_jit_run(): the reference of the verify mode. */
int x86_run_block_interp(struct x86_cpu *cpu, const struct x86_block *b);
/* Verify mode: runs b under the interpreter and the JIT from the same
 * state and compares them (jit_verify.c); same result as x86_jit_run(). */
int x86_jit_verify_block(struct x86_cpu *cpu, const struct x86_block *b);
/* Verify mode's state for cpu: its environment callbacks (cpu->env,
 * cpu->opaque) go through wrappers that notice effects a second run could
 * not undo. NULL: -ENOMEM. */
struct x86_verify *x86_verify_new(struct x86_cpu *cpu);
void x86_verify_free(struct x86_verify *v);
/* Verify mode's log of a store (x86_note_code_write()): whether it
 * overlaps the running block. */
bool x86_jit_log_write(struct x86_cpu *cpu, hva_t hva, size_t n);

/* ---- x87 and SSE state (fpu.c) ---------------------------------------- */

/* An XMM register, viewed at every lane width; little-endian lanes. */
union x86_xmm {
	uint8_t b[16];
	uint16_t w[8];
	uint32_t d[4];
	uint64_t q[2];
};

/* An x87 register: the 80-bit double extended format (SDM vol. 1,
 * 4.2.2), its 64-bit significand and its sign and 15-bit exponent. */
struct x86_st {
	uint64_t mant;
	uint16_t sexp;
};

/*
 * The state FXSAVE saves (SDM vol. 1, 10.5.1). st[] is indexed by
 * physical register R0-R7: ST(i) is st[(TOP + i) & 7], TOP being FSW
 * bits 11-13. ftw is the abridged tag: bit i set when R[i] is not empty.
 */
struct x86_fpu {
	union x86_xmm xmm[16];
	uint32_t mxcsr;
	uint16_t fcw, fsw, fop;
	uint8_t ftw;
	uint16_t fcs, fds; /* selectors of the last x87 instruction, operand */
	uint64_t fip, fdp;
	struct x86_st st[8];
};

#define X86_MXCSR_RESET 0x1f80u
/* The MXCSR bits this CPU implements (flags, DAZ, masks, RC, FZ): FXSAVE
 * reports it as MXCSR_MASK; a set bit outside it is #GP. */
#define X86_MXCSR_MASK 0xffffu
#define X86_FCW_RESET 0x037fu /* FNINIT's control word */

/*
 * The invalid-opcode and device-not-available checks every SSE
 * instruction makes before anything else (SDM vol. 3, chapter 13, the
 * table "Action Taken for Combinations of OSFXSR, OSXMMEXCPT, SSE, SSE2,
 * SSE3, EM, MP, and TS"): CR0.EM set or CR4.OSFXSR clear is #UD, then
 * CR0.TS set is #NM.
 */
static inline void x86_sse_check(struct x86_cpu *cpu);

/* The state after reset: FNINIT's x87 state, MXCSR 1F80H, XMM zero. */
void x86_fpu_reset(struct x86_cpu *cpu);
/* FXSAVE's image of the state, bytes 0-415 (the rest is not written):
 * with rex_w the 64-bit layout, else FIP/FDP 32 bits with selectors. */
void x86_fpu_fxsave_image(const struct x86_cpu *cpu, uint8_t img[512],
			  bool rex_w);

/* Loads a 64-bit-layout image the host's FXSAVE64 wrote (its MXCSR is
 * valid by construction). */
void x86_fpu_fxrstor_image(struct x86_cpu *cpu, const uint8_t img[512]);

/* Linear-address accesses of n bytes (16 or 512): every page checked
 * before any byte moves, then 8-byte pieces (each an atomic access when
 * aligned, as x86_read()'s). */
void x86_read_block(struct x86_cpu *cpu, gva_t la, void *buf, unsigned int n,
		    unsigned int seg);
void x86_write_block(struct x86_cpu *cpu, gva_t la, const void *buf,
		     unsigned int n, unsigned int seg);

/* ---- the CPU ---------------------------------------------------------- */

enum x86_event_kind {
	X86_EV_FAULT, /* return address = the faulting instruction */
	X86_EV_TRAP, /* return address = the next instruction */
	X86_EV_SOFT_INT, /* INT n / INT3 / INTO: DPL checked, next insn */
	/* An external interrupt or NMI, taken at an instruction boundary:
	 * return address = the next instruction (cpu->rip there). */
	X86_EV_EXTINT,
	X86_EV_NMI,
};

struct x86_event {
	bool pending;
	uint8_t vector;
	uint8_t kind; /* enum x86_event_kind */
	bool has_error;
	uint32_t error;
	uint64_t return_rip;
};

/*
 * Legend: every field is (v), owned by the vCPU thread that runs this
 * CPU; no other thread reads or writes it (other threads reach the vCPU
 * only through its request bits and kick, core/vcpu), except `kick`,
 * which points at an atomic the vCPU layer owns, and `stat_pub`, which
 * any thread may read (docs/locking.md, "Lock-free protocols and their
 * barrier pairs", #16).
 */
struct x86_cpu {
	/* Hot state, read by nearly every instruction. */
	uint64_t gpr[16];
	uint64_t rip; /* the current instruction */
	uint64_t next_rip; /* where execution continues when it retires */
	uint64_t rflags; /* arithmetic bits stale while lf.op != NONE */
	struct x86_lazy lf;
	unsigned int cpl;
	unsigned int pauses; /* PAUSEs since the last X86_EXIT_PAUSE */
	/* The current PCID in TLB-tag position: CR3[11:0] << 48 with
	 * CR4.PCIDE, else 0 (x86_mode_changed() keeps it). */
	uint64_t pcid_tag;
	/* What the run loop looks at after every instruction, in one word
	 * it can test at once (attn, cpu.c). */
	union {
		struct {
			/* leave the run loop after this instruction */
			bool stop;
			/*
			 * The interrupt shadow of STI and MOV SS (SDM
			 * vol. 2, STI and MOV; vol. 3, 6.8.3):
			 * X86_SHADOW_SET when the instruction that just
			 * ran set it, X86_SHADOW_ACTIVE at the one
			 * boundary it blocks (x86_boundary() moves it
			 * along), 0 otherwise.
			 */
			uint8_t int_shadow;
			/* External events (except.c): X86_IRQ_* bits.
			 * INTR is the level of the interrupt line
			 * (x86_set_intr()); NMI a latched NMI. */
			uint8_t irq_lines;
			/* End the running block after this instruction: the
			 * code page was forgotten (a soft-TLB flush, a store
			 * into the block). The run loop clears it at the
			 * start of each block it runs specialised. */
			bool brk;
		};
		uint32_t attn;
	};
	struct x86_exit *exit;

	/* Translation. */
	hva_t shadow_root;
	/* The page instructions are fetched from: its TLB tag (0: none),
	 * the CPL it was checked for, and its host address. Every soft-TLB
	 * flush clears code_tag. */
	uint64_t code_tag;
	unsigned int code_cpl;
	hva_t code_page;
	const _Atomic unsigned int *kick;
	struct x86_tlb_entry tlb[X86_TLB_SIZE];

	/* System state (exec_system.c, except.c own its semantics). */
	struct x86_segment seg[6];
	struct x86_segment ldtr, tr;
	struct x86_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer;
	/*
	 * The debug registers as MOV DRn reads and writes them (SDM vol. 3,
	 * 18.2): DR0-DR3 and DR6/DR7 hold their values, DR7.GD is
	 * honoured, but no breakpoint condition is ever raised.
	 */
	uint64_t dr[4], dr6, dr7;
	uint64_t star, lstar, cstar, sfmask, kernel_gs_base;
	uint64_t pat, tsc_aux, apic_base, misc_enable;
	struct x86_fpu fpu;
	int64_t tsc_offset; /* guest TSC = host TSC + tsc_offset */
	bool nmi_blocked; /* an NMI was delivered; no other until IRET */
	bool halted; /* HLT retired; only an event resumes execution */

	/* Events (except.c). */
	struct x86_event ev;
	int delivering; /* vector being delivered, -1 when none */
	uint8_t chain[3]; /* exception chain for a triple-fault report */
	unsigned int chain_len;
	uint64_t ev_cr2; /* CR2 of a pending #PF, loaded at delivery */
	bool shutdown; /* triple fault: x86_run() only reports it */

	/* Port I/O waiting for x86_io_complete() (exec_io.c). */
	struct {
		bool pending;
		uint8_t size;
		bool string; /* INS: store at rdi_la, then step RDI/RCX */
		gva_t la;
		uint16_t port;
		bool ready; /* INS: value arrived, store on re-execution */
		uint32_t value;
	} io;

	/* Run loop (cpu.c). */
	struct x86_block **bcache; /* X86_BCACHE_BUCKETS chains */
	uint8_t *bpool; /* X86_BPOOL_BYTES of blocks */
	size_t bpool_used;
	/* The cached block run last (NULL: none, or the pool was flushed),
	 * whose successors get_block() tries first. */
	struct x86_block *prev_block;
	uint64_t stat[X86_STAT_NR]; /* enum x86_stat */
	/* stat[] as of the end of the last x86_run(), for other threads
	 * (x86_cpu_stats_get()): written by this vCPU only, relaxed
	 * (docs/locking.md, #16). */
	_Atomic uint64_t stat_pub[X86_STAT_NR];
	/* Host bytes [block_lo, block_lo + block_len) of the running block
	 * (block_len 0: none). */
	hva_t block_lo;
	uint64_t block_len;
	/* The template JIT (jit.c): NULL with --cpu interp. wlog: verify
	 * mode is logging this vCPU's stores (jit_verify.c); block_lo and
	 * block_len then cover everything so that x86_note_code_write()
	 * sees every store on its unlikely path. */
	struct x86_jit *jit;
	struct x86_verify *verify; /* --cpu jit-verify (jit_verify.c) */
	bool jit_verify;
	bool wlog;
	jmp_buf abort;
	uint64_t retired;
	const struct x86_env *env;
	void *opaque;
	unsigned int index, nr_cpus;
};

/* setjmp values of cpu->abort. */
#define X86_ABORT_EVENT 1 /* cpu->ev is pending: deliver it */
#define X86_ABORT_EXIT 2 /* cpu->exit is filled: return it */

static inline int x86_jit_run(struct x86_cpu *cpu, const struct x86_block *b)
{
	return ((int (*)(struct x86_cpu *, uint64_t))b->code)(cpu, cpu->rip);
}

static inline void x86_note_code_write(struct x86_cpu *cpu, hva_t hva, size_t n)
{
	/* Overlap of [hva, hva + n) with the block: one unsigned compare
	 * each way. Forgetting the code page ends the block. */
	if (__builtin_expect(hva - cpu->block_lo < cpu->block_len ||
				     cpu->block_lo - hva < n,
			     0)) {
		/* Verify mode: logged; the block ends only if the store
		 * overlaps it. */
		if (cpu->wlog && !x86_jit_log_write(cpu, hva, n))
			return;
		cpu->code_tag = 0;
		cpu->brk = true;
		cpu->stat[X86_STAT_SMC_BREAKS]++;
	}
}

/* Whether the soft-TLB entry e translates la under the current PCID (or
 * globally). Rights are the caller's to check. */
static inline bool x86_tlb_hit(const struct x86_cpu *cpu,
			       const struct x86_tlb_entry *e, gva_t la)
{
	uint64_t tag = (((la >> 12) + 1) & X86_TLB_VPN_MASK) | cpu->pcid_tag;

	return e->tag == tag ||
	       e->tag == ((tag & X86_TLB_VPN_MASK) | X86_TLB_GLOBAL);
}

/* ---- exceptions (except.c) -------------------------------------------- */

/* Raises a fault-class exception at cpu->rip; the error code is pushed
 * for the vectors that have one (#DF #TS #NP #SS #GP #PF #AC). */
_Noreturn void x86_raise(struct x86_cpu *cpu, unsigned int vector,
			 uint32_t error);
_Noreturn void x86_raise_pf(struct x86_cpu *cpu, gva_t la, uint32_t error);
/* Raises an event of a given kind (INT n, INT3, INTO, #DB traps). */
_Noreturn void x86_raise_event(struct x86_cpu *cpu, unsigned int vector,
			       enum x86_event_kind kind, bool has_error,
			       uint32_t error);
/* Delivers cpu->ev through the IDT; called by the run loop. May raise
 * (combining by the double-fault rules) or exit for a shadow fault. */
void x86_deliver_event(struct x86_cpu *cpu);

#define X86_SHADOW_SET 1
#define X86_SHADOW_ACTIVE 2
#define X86_IRQ_INTR (1u << 0)
#define X86_IRQ_NMI (1u << 1)

/* Sets the STI / MOV SS interrupt shadow (the instruction's last act). */
static inline void x86_set_int_shadow(struct x86_cpu *cpu)
{
	cpu->int_shadow = X86_SHADOW_SET;
}

/*
 * At an instruction boundary: ages the interrupt shadow and, when
 * deliver and an NMI or interrupt may be taken here, acknowledges it and
 * delivers it (which may raise or exit like x86_deliver_event()).
 * Returns whether it delivered one. The run loop calls it after an
 * instruction whenever int_shadow or irq_lines is nonzero.
 */
bool x86_boundary(struct x86_cpu *cpu, bool deliver);
/* Takes an NMI or interrupt pending and unblocked now, if any, into
 * cpu->ev; returns whether it did. */
bool x86_take_event(struct x86_cpu *cpu);

/* ---- state changes other files need (exec_system.c) ------------------- */

/* Recomputes cpu->cpl and everything cached from CS/SS/CR0/CR4/EFER. */
void x86_mode_changed(struct x86_cpu *cpu);

/* ---- CPUID (cpuid.c) -------------------------------------------------- */

/* The values CPUID returns for leaf and subleaf: EAX, EBX, ECX, EDX. */
void x86_cpuid(const struct x86_cpu *cpu, uint32_t leaf, uint32_t subleaf,
	       uint32_t out[4]);

/* ---- flags (flags.c) -------------------------------------------------- */

/* The whole RFLAGS register, arithmetic bits derived from cpu->lf. */
uint64_t x86_rflags(struct x86_cpu *cpu);
/* Sets RFLAGS (every bit, bit 1 forced) and drops the lazy state. */
void x86_set_rflags(struct x86_cpu *cpu, uint64_t rflags);
/* Condition code cc (0-15, the low nibble of Jcc/SETcc/CMOVcc). */
bool x86_cond(struct x86_cpu *cpu, unsigned int cc);
bool x86_get_cf(struct x86_cpu *cpu);

/* ---- memory (mem.c) --------------------------------------------------- */

/*
 * Linear-address accesses of the current instruction. seg is the segment
 * the address came from (X86_SS turns a non-canonical address into #SS
 * instead of #GP). Every access is a host atomic access of its width
 * when aligned (docs/ARCHITECTURE.md, "Guest memory is shared memory").
 * The access's user/supervisor kind comes from CPL; the _sys variants
 * are implicit supervisor accesses (descriptor tables, TSS, IDT).
 */
static inline uint64_t x86_read(struct x86_cpu *cpu, gva_t la,
				unsigned int size, unsigned int seg);
static inline void x86_write(struct x86_cpu *cpu, gva_t la, unsigned int size,
			     unsigned int seg, uint64_t value);
/* Every case of x86_read()/x86_write(); those try x86_ram_fast() first. */
uint64_t x86_read_slow(struct x86_cpu *cpu, gva_t la, unsigned int size,
		       unsigned int seg);
void x86_write_slow(struct x86_cpu *cpu, gva_t la, unsigned int size,
		    unsigned int seg, uint64_t value);
uint64_t x86_read_sys(struct x86_cpu *cpu, gva_t la, unsigned int size);
void x86_write_sys(struct x86_cpu *cpu, gva_t la, unsigned int size,
		   uint64_t value);
/* Checks that la..la+size-1 is writable now (faults like a write). */
void x86_probe_write(struct x86_cpu *cpu, gva_t la, unsigned int size,
		     unsigned int seg);

/*
 * Read-modify-write of size bytes at la: new = fn(cpu, old, ctx), stored
 * back; returns old. With locked, the whole update is one seq_cst atomic
 * read-modify-write on the host address (fn may run more than once; it
 * must only compute). Without, it is an atomic load then an atomic store.
 */
typedef uint64_t (*x86_rmw_fn)(struct x86_cpu *cpu, uint64_t old, void *ctx);
uint64_t x86_rmw(struct x86_cpu *cpu, gva_t la, unsigned int size,
		 unsigned int seg, bool locked, x86_rmw_fn fn, void *ctx);
/* CMPXCHG16B: if the 16 bytes at la (16-aligned, else #GP) equal
 * expected[0..1], store desired and return true; else load them into
 * expected and return false. Always one atomic operation. */
bool x86_cmpxchg16(struct x86_cpu *cpu, gva_t la, unsigned int seg,
		   uint64_t expected[2], const uint64_t desired[2]);

/* Drops every soft-TLB entry except global ones (MOV to CR3 with
 * CR4.PGE, SDM vol. 3, 4.10.4.1); x86_tlb_flush() drops them all. */
void x86_tlb_flush_nonglobal(struct x86_cpu *cpu);
/* Drops the non-global entries made under pcid (MOV to CR3 with
 * CR4.PCIDE and bit 63 clear; INVPCID single-context). */
void x86_tlb_flush_pcid(struct x86_cpu *cpu, uint16_t pcid);
/* Drops the entries for the page of la made under pcid, global ones
 * included when with_global (INVLPG; INVPCID individual-address). */
void x86_tlb_flush_page_pcid(struct x86_cpu *cpu, gva_t la, uint16_t pcid,
			     bool with_global);

/* The host address of the page of la for an instruction fetch at the
 * current CPL (faults as a fetch would); 0 for an MMIO page. */
hva_t x86_fetch_page(struct x86_cpu *cpu, gva_t la);

/* Copies n (<= 15) code bytes at la for the decoder (fetch access). */
void x86_fetch(struct x86_cpu *cpu, gva_t la, uint8_t *buf, unsigned int n);

/* Bits 63..47 all equal: canonical for 48-bit linear addresses. */
static inline bool x86_is_canonical(uint64_t la)
{
	uint64_t top = la >> 47;

	return top == 0 || top == 0x1ffff;
}

/* ---- operands (inline: every handler uses them) ----------------------- */

static inline uint64_t x86_trunc(uint64_t v, unsigned int size)
{
	return size == 8 ? v : v & ((1ULL << (size * 8)) - 1);
}

static inline uint64_t x86_sext(uint64_t v, unsigned int size)
{
	switch (size) {
	case 1:
		return (uint64_t)(int64_t)(int8_t)v;
	case 2:
		return (uint64_t)(int64_t)(int16_t)v;
	case 4:
		return (uint64_t)(int64_t)(int32_t)v;
	default:
		return v;
	}
}

/* General register reg (0-15) at size; size 1 without REX names AH..BH
 * for 4-7. */
static inline uint64_t x86_reg_get(const struct x86_cpu *cpu, unsigned int reg,
				   unsigned int size, bool rex)
{
	if (size == 1 && !rex && reg >= 4 && reg < 8)
		return (cpu->gpr[reg - 4] >> 8) & 0xff;
	return x86_trunc(cpu->gpr[reg], size);
}

/* Writes reg at size: 32-bit writes zero the upper half, 8- and 16-bit
 * writes keep the rest of the register (SDM vol. 1, 3.4.1.1). */
static inline void x86_reg_set(struct x86_cpu *cpu, unsigned int reg,
			       unsigned int size, bool rex, uint64_t v)
{
	switch (size) {
	case 1:
		if (!rex && reg >= 4 && reg < 8)
			cpu->gpr[reg - 4] = (cpu->gpr[reg - 4] & ~0xff00ULL) |
					    ((v & 0xff) << 8);
		else
			cpu->gpr[reg] = (cpu->gpr[reg] & ~0xffULL) | (v & 0xff);
		break;
	case 2:
		cpu->gpr[reg] = (cpu->gpr[reg] & ~0xffffULL) | (v & 0xffff);
		break;
	case 4:
		cpu->gpr[reg] = v & 0xffffffffULL;
		break;
	default:
		cpu->gpr[reg] = v;
		break;
	}
}

/* The linear address of the memory operand (segment base included for
 * FS and GS; the others are 0 in 64-bit mode). */
static inline gva_t x86_ea(const struct x86_cpu *cpu, const struct x86_insn *in)
{
	uint64_t ea = (uint64_t)(int64_t)in->disp;

	if (in->base == X86_RIP_BASE)
		ea += cpu->rip + in->len;
	else if (in->base != X86_NO_REG)
		ea += cpu->gpr[in->base];
	if (in->index != X86_NO_REG)
		ea += cpu->gpr[in->index] << in->scale;
	if (in->addrsize == 4)
		ea &= 0xffffffffULL;
	if (in->seg == X86_FS || in->seg == X86_GS)
		ea += cpu->seg[in->seg].base;
	return ea;
}

/*
 * The soft TLB's hit path, inline in every access (docs/BENCHMARKS.md,
 * "Interpreter costs by phase — bench/cpu.c"): the host address of a
 * naturally aligned access of size bytes at la when the entry for its
 * page translates it to RAM (for a write: RAM that needs nothing more)
 * with the rights the access needs at the current CPL; else 0, and
 * x86_read_slow()/x86_write_slow() decide (fault, walk, MMIO, tracked
 * pages, splits). Aligned means within one page, and free of #AC; a
 * canonical la then makes the whole access canonical. The rights are
 * mem.c's rights_ok() for a data access (SDM vol. 3, 4.6): a user page
 * is a supervisor access's only with SMAP off or RFLAGS.AC set.
 */
static inline hva_t x86_ram_fast(const struct x86_cpu *cpu, gva_t la,
				 unsigned int size, bool write)
{
	const struct x86_tlb_entry *e =
		&cpu->tlb[(la >> 12) & (X86_TLB_SIZE - 1)];
	unsigned int r;
	hva_t h;

	if ((la & (size - 1)) || !x86_is_canonical(la) ||
	    !x86_tlb_hit(cpu, e, la))
		return 0;
	h = write ? e->whva : e->hva;
	r = e->rights;
	if (!h || (write && !(r & X86_ACC_WRITE)))
		return 0;
	if (cpu->cpl == 3 ? !(r & X86_ACC_USER) :
			    (r & X86_ACC_USER) && (cpu->cr4 & X86_CR4_SMAP) &&
				    !(cpu->rflags & X86_RFLAGS_AC))
		return 0;
	return h + (la & 4095);
}

static inline uint64_t x86_read(struct x86_cpu *cpu, gva_t la,
				unsigned int size, unsigned int seg)
{
	hva_t h = x86_ram_fast(cpu, la, size, false);

	if (__builtin_expect(!h, 0))
		return x86_read_slow(cpu, la, size, seg);
	/* Acquire, as mem.c's accesses (docs/ARCHITECTURE.md, "Guest
	 * memory is shared memory"). */
	switch (size) {
	case 1:
		return __atomic_load_n((const uint8_t *)h, __ATOMIC_ACQUIRE);
	case 2:
		return __atomic_load_n((const uint16_t *)h, __ATOMIC_ACQUIRE);
	case 4:
		return __atomic_load_n((const uint32_t *)h, __ATOMIC_ACQUIRE);
	default:
		return __atomic_load_n((const uint64_t *)h, __ATOMIC_ACQUIRE);
	}
}

static inline void x86_write(struct x86_cpu *cpu, gva_t la, unsigned int size,
			     unsigned int seg, uint64_t v)
{
	hva_t h = x86_ram_fast(cpu, la, size, true);

	if (__builtin_expect(!h, 0)) {
		x86_write_slow(cpu, la, size, seg, v);
		return;
	}
	switch (size) {
	case 1:
		__atomic_store_n((uint8_t *)h, (uint8_t)v, __ATOMIC_RELEASE);
		break;
	case 2:
		__atomic_store_n((uint16_t *)h, (uint16_t)v, __ATOMIC_RELEASE);
		break;
	case 4:
		__atomic_store_n((uint32_t *)h, (uint32_t)v, __ATOMIC_RELEASE);
		break;
	default:
		__atomic_store_n((uint64_t *)h, v, __ATOMIC_RELEASE);
		break;
	}
	x86_note_code_write(cpu, h, size);
}

/* The G operand (ModRM.reg) and the E operand (ModRM.rm) at in->opsize. */
static inline uint64_t x86_get_G(const struct x86_cpu *cpu,
				 const struct x86_insn *in)
{
	return x86_reg_get(cpu, in->reg, in->opsize, in->rex);
}

static inline void x86_set_G(struct x86_cpu *cpu, const struct x86_insn *in,
			     uint64_t v)
{
	x86_reg_set(cpu, in->reg, in->opsize, in->rex, v);
}

/* Ew as the system instructions use it (SMSW, STR, MOV from Sreg...):
 * 16 bits from memory or a register; a store of a selector or machine
 * status word writes 16 bits to memory, the operand size to a register. */
static inline uint16_t x86_get_Ew16(struct x86_cpu *cpu,
				    const struct x86_insn *in)
{
	if (in->mem)
		return (uint16_t)x86_read(cpu, x86_ea(cpu, in), 2, in->seg);
	return (uint16_t)cpu->gpr[in->rm];
}

static inline void x86_set_Ew_sel(struct x86_cpu *cpu,
				  const struct x86_insn *in, uint64_t v)
{
	if (in->mem)
		x86_write(cpu, x86_ea(cpu, in), 2, in->seg, v & 0xffff);
	else
		x86_reg_set(cpu, in->rm, in->opsize, in->rex, v);
}

/* #GP(0) unless at CPL0. */
static inline void x86_require_cpl0(struct x86_cpu *cpu)
{
	if (cpu->cpl != 0)
		x86_raise(cpu, X86_GP, 0);
}

uint64_t x86_get_E(struct x86_cpu *cpu, const struct x86_insn *in);
void x86_set_E(struct x86_cpu *cpu, const struct x86_insn *in, uint64_t v);
/* E = fn(E): a register, or x86_rmw() on memory, locked with LOCK. */
uint64_t x86_rmw_E(struct x86_cpu *cpu, const struct x86_insn *in,
		   x86_rmw_fn fn, void *ctx);

/* Stack (RSP-relative, SS): push writes first, then moves RSP. Inline,
 * with x86_write()'s and x86_read()'s hit path: CALL, RET, PUSH and POP
 * are among the commonest instructions. */
static inline void x86_push(struct x86_cpu *cpu, uint64_t v, unsigned int size)
{
	uint64_t rsp = cpu->gpr[X86_RSP] - size;

	x86_write(cpu, rsp, size, X86_SS, v);
	cpu->gpr[X86_RSP] = rsp;
}

static inline uint64_t x86_pop(struct x86_cpu *cpu, unsigned int size)
{
	uint64_t v = x86_read(cpu, cpu->gpr[X86_RSP], size, X86_SS);

	cpu->gpr[X86_RSP] += size;
	return v;
}

/* Ends the run loop after this instruction with the given exit. */
static inline struct x86_exit *x86_exit_after(struct x86_cpu *cpu,
					      enum x86_exit_reason reason)
{
	cpu->exit->reason = reason;
	cpu->stop = true;
	return cpu->exit;
}

/* A shadow-page-fault exit: the instruction is abandoned and restarts
 * from cpu->rip after the MMU has run. */
_Noreturn void x86_shadow_fault(struct x86_cpu *cpu, gva_t la,
				unsigned int access);

static inline void x86_sse_check(struct x86_cpu *cpu)
{
	if (__builtin_expect(
		    (cpu->cr0 & X86_CR0_EM) || !(cpu->cr4 & X86_CR4_OSFXSR), 0))
		x86_raise(cpu, X86_UD, 0);
	if (__builtin_expect(cpu->cr0 & X86_CR0_TS, 0))
		x86_raise(cpu, X86_NM, 0);
}

#endif
