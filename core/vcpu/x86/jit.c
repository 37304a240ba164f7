/*
 * The template JIT for x86-64 hosts (docs/JIT.md): the engine switch
 * (--cpu), each vCPU's code buffer and the translation of a decoded
 * block into host code. The code of a block does what the run loop's
 * specialised path does with the block's instructions (cpu.c, x86_run()):
 * for the hot register forms it computes in place from templates (with
 * the lazy-flags record the handlers of core/vcpu/x86/fast.c leave); for
 * every other instruction it stores RIP and next_rip and calls the
 * instruction's handler, which reads and writes memory through mem.c as
 * the interpreter does, so every soft-TLB, MMIO, tracked-page and fault
 * path is the interpreter's own. Blocks are found, checked against their
 * guest bytes and dropped by cpu.c; this file never decides which block
 * runs. The verify mode is jit_verify.c's.
 *
 * Executable memory: one memfd mapped twice, an RW view the translator
 * writes and an RX view the CPU runs, never a page both writable and
 * executable (the systemd unit's MemoryDenyWriteExecute=yes allows it;
 * docs/JIT.md, "Executable memory").
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "x86_int.h"

/* Per vCPU: the pool of decoded blocks is 16 MiB, a block's code at most
 * JIT_MAX_BLOCK bytes; 16 MiB of code holds at least 4 K blocks. */
#define JIT_CODE_BYTES (16u << 20)
#define JIT_MAX_BLOCK 4096u

struct x86_jit {
	int fd;
	uint8_t *rw, *rx; /* the two views of fd */
	size_t used;
	bool verify;
};

static enum x86_engine engine = X86_ENGINE_INTERP;
static atomic_bool refused_logged;

static void log_refused(const char *why, int err)
{
	if (!atomic_exchange(&refused_logged, true))
		fprintf(stderr,
			"<4>mmud: --cpu jit: executable memory refused (%s: "
			"%s): running the interpreter\n",
			why, strerror(err));
}

/* The two views of a new memfd of size bytes; -errno, with what failed
 * in *why. MMUD_TEST_JIT_NO_EXEC (tests only) makes the RX mapping fail
 * as a policy refusing executable memory would. */
static int code_map(size_t size, int *fd, uint8_t **rw, uint8_t **rx,
		    const char **why)
{
	void *w, *x;
	int f, err;

	*why = "memfd_create";
	f = memfd_create("jit-code", MFD_CLOEXEC);
	if (f < 0)
		return -errno;
	*why = "ftruncate";
	if (ftruncate(f, (off_t)size) < 0)
		goto fail;
	*why = "mmap RW";
	w = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	if (w == MAP_FAILED)
		goto fail;
	*why = "mmap RX";
	if (getenv("MMUD_TEST_JIT_NO_EXEC")) {
		munmap(w, size);
		errno = EACCES;
		goto fail;
	}
	x = mmap(NULL, size, PROT_READ | PROT_EXEC, MAP_SHARED, f, 0);
	if (x == MAP_FAILED) {
		err = errno;
		munmap(w, size);
		errno = err;
		goto fail;
	}
	/* Host code is no guest state: out of core dumps, as guest RAM
	 * is without --dump-guest-core. */
	madvise(w, size, MADV_DONTDUMP);
	madvise(x, size, MADV_DONTDUMP);
	*fd = f;
	*rw = w;
	*rx = x;
	return 0;
fail:
	err = errno;
	close(f);
	return -err;
}

enum x86_engine x86_engine_select(enum x86_engine want)
{
	const char *why;
	uint8_t *rw, *rx;
	int fd, r;

	engine = X86_ENGINE_INTERP;
	if (want == X86_ENGINE_INTERP)
		return engine;
	/* Probe once: a page of code written through the RW view must run
	 * from the RX view (mov eax, 42; ret). */
	r = code_map(4096, &fd, &rw, &rx, &why);
	if (r < 0) {
		log_refused(why, -r);
		return engine;
	}
	memcpy(rw, "\xb8\x2a\x00\x00\x00\xc3", 6);
	__builtin___clear_cache((char *)rx, (char *)rx + 6);
	r = ((int (*)(void))(void *)rx)();
	munmap(rw, 4096);
	munmap(rx, 4096);
	close(fd);
	if (r != 42) {
		log_refused("probe", EINVAL);
		return engine;
	}
	engine = want;
	return engine;
}

enum x86_engine x86_engine_current(void)
{
	return engine;
}

struct x86_jit *x86_jit_new(struct x86_cpu *cpu, bool verify)
{
	struct x86_jit *j = calloc(1, sizeof(*j));
	const char *why;
	int r;

	(void)cpu;
	if (!j)
		return NULL;
	r = code_map(JIT_CODE_BYTES, &j->fd, &j->rw, &j->rx, &why);
	if (r < 0) {
		log_refused(why, -r);
		free(j);
		return NULL;
	}
	j->verify = verify;
	return j;
}

void x86_jit_free(struct x86_jit *j)
{
	if (!j)
		return;
	munmap(j->rw, JIT_CODE_BYTES);
	munmap(j->rx, JIT_CODE_BYTES);
	close(j->fd);
	free(j);
}

bool x86_jit_has_room(const struct x86_jit *j)
{
	return j->used + JIT_MAX_BLOCK <= JIT_CODE_BYTES;
}

void x86_jit_flush(struct x86_jit *j)
{
	j->used = 0;
}

/* ---- the encoder ------------------------------------------------------ */

/* Host registers: rbx holds the CPU, r12 the RIP the block was entered
 * at (constant through the block: templates never branch and a block
 * leaves as soon as a handler changes control flow), r13 the next_rip
 * of the instruction a handler call runs; rax, rcx, rdx are scratch. */
enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R12 = 12, R13 = 13 };

struct emit {
	uint8_t *p, *start;
};

static void b1(struct emit *e, unsigned int v)
{
	*e->p++ = (uint8_t)v;
}

static void b4(struct emit *e, uint32_t v)
{
	memcpy(e->p, &v, 4);
	e->p += 4;
}

static void b8(struct emit *e, uint64_t v)
{
	memcpy(e->p, &v, 8);
	e->p += 8;
}

/* op with ModRM reg (a register or an opcode extension) and the operand
 * [rbx + disp32]; w: REX.W. */
static void op_mem(struct emit *e, bool w, unsigned int reg, unsigned int op,
		   int32_t disp)
{
	unsigned int rex = 0x40 | (w ? 8 : 0) | (reg & 8 ? 4 : 0);

	if (rex != 0x40)
		b1(e, rex);
	if (op > 0xff)
		b1(e, op >> 8);
	b1(e, op & 0xff);
	b1(e, 0x80 | (reg & 7) << 3 | RBX);
	b4(e, (uint32_t)disp);
}

/* op with ModRM register-direct operands: rm op= reg; w: REX.W. */
static void op_rr(struct emit *e, bool w, unsigned int op, unsigned int rm,
		  unsigned int reg)
{
	unsigned int rex = 0x40 | (w ? 8 : 0) | (reg & 8 ? 4 : 0) |
			   (rm & 8 ? 1 : 0);

	if (rex != 0x40)
		b1(e, rex);
	b1(e, op);
	b1(e, 0xc0 | (reg & 7) << 3 | (rm & 7));
}

/* reg = [rbx + disp] (64 bits, or 32 zero-extended). */
static void load(struct emit *e, bool w, unsigned int reg, size_t disp)
{
	op_mem(e, w, reg, 0x8b, (int32_t)disp);
}

static void store(struct emit *e, bool w, unsigned int reg, size_t disp)
{
	op_mem(e, w, reg, 0x89, (int32_t)disp);
}

static void mov_imm64(struct emit *e, unsigned int reg, uint64_t v)
{
	b1(e, 0x48 | (reg & 8 ? 1 : 0));
	b1(e, 0xb8 | (reg & 7));
	b8(e, v);
}

/* reg = r12 + disp (LEA with r12 as base needs a SIB byte). */
static void lea_r12(struct emit *e, unsigned int reg, int32_t disp)
{
	b1(e, 0x49 | (reg & 8 ? 4 : 0));
	b1(e, 0x8d);
	b1(e, 0x84 | (reg & 7) << 3);
	b1(e, 0x24);
	b4(e, (uint32_t)disp);
}

/* Jcc/JMP rel32 to a label fixed up later: the offset of its rel32. */
static uint8_t *jcc_fwd(struct emit *e, unsigned int cc)
{
	b1(e, 0x0f);
	b1(e, 0x80 | cc);
	b4(e, 0);
	return e->p - 4;
}

static uint8_t *jmp_fwd(struct emit *e)
{
	b1(e, 0xe9);
	b4(e, 0);
	return e->p - 4;
}

static void fix(uint8_t *rel, const uint8_t *target)
{
	int32_t d = (int32_t)(target - (rel + 4));

	memcpy(rel, &d, 4);
}

#define GPR(r) (offsetof(struct x86_cpu, gpr) + 8 * (size_t)(r))
#define OFF(f) offsetof(struct x86_cpu, f)

/* retired += n. */
static void add_retired(struct emit *e, unsigned int n)
{
	if (n)
		op_mem(e, true, 0, 0x83, (int32_t)OFF(retired)), b1(e, n);
}

/* ---- templates -------------------------------------------------------- */

/* Host ALU opcodes (r/m op= reg form) by the guest's ALU number (ModRM.reg
 * of 81/83: ADD OR ADC SBB AND SUB XOR CMP); CMP computes as SUB. */
static const uint8_t alu_host[8] = { 0x01, 0x09, 0, 0, 0x21, 0x29, 0x31, 0x29 };
static const uint8_t alu_lf[8] = {
	X86_LF_ADD, X86_LF_LOGIC, 0,	     0, X86_LF_LOGIC,
	X86_LF_SUB, X86_LF_LOGIC, X86_LF_SUB
};

/* The lazy-flags record of an ALU operation: res in rdx, src1 in rax,
 * src2 in rcx (as fast.c's frecord()). */
static void record(struct emit *e, unsigned int lf, unsigned int size)
{
	op_mem(e, false, 0, 0xc6, (int32_t)OFF(lf.op));
	b1(e, lf);
	op_mem(e, false, 0, 0xc6, (int32_t)OFF(lf.size));
	b1(e, size);
	store(e, true, RDX, OFF(lf.res));
	store(e, true, RAX, OFF(lf.src1));
	store(e, true, RCX, OFF(lf.src2));
}

/*
 * A register ALU form: dst op= src (or imm) at 4 or 8 bytes, with the
 * flags recorded. alu is the guest's ALU number; test: TEST (AND that
 * keeps dst). The operands are loaded truncated (a 32-bit load zero-
 * extends), the host computes, a 32-bit result zero-extends into the
 * 64-bit register as the guest's does (SDM vol. 1, 3.4.1.1).
 */
static void t_alu(struct emit *e, unsigned int alu, bool test,
		  unsigned int size, unsigned int dst, int src, uint64_t imm)
{
	bool w = size == 8;

	load(e, w, RAX, GPR(dst));
	if (src >= 0)
		load(e, w, RCX, GPR(src));
	else
		mov_imm64(e, RCX, w ? imm : (uint32_t)imm);
	op_rr(e, w, 0x89, RDX, RAX); /* mov rdx, rax */
	op_rr(e, w, test ? 0x21 : alu_host[alu], RDX, RCX);
	if (!test && alu != 7)
		store(e, true, RDX, GPR(dst));
	record(e, test ? X86_LF_LOGIC : alu_lf[alu], size);
}

/*
 * INC/DEC of a register (FF /0, FF /1; fast.c's fincdec()): CF is kept,
 * so the record carries the CF x86_get_cf() derives now (a call: the
 * lazy flags may be any operation's). The host's INC/DEC comes last, so
 * its flags are the guest's but for CF, which it leaves alone: a fused
 * Jcc may only test the others (fusable()).
 */
static void t_incdec(struct emit *e, bool dec, unsigned int size,
		     unsigned int reg)
{
	bool w = size == 8;

	op_rr(e, true, 0x89, RDI, RBX); /* mov rdi, rbx */
	mov_imm64(e, RAX, (uint64_t)(uintptr_t)x86_get_cf);
	b1(e, 0xff), b1(e, 0xd0); /* call rax */
	b1(e, 0x0f), b1(e, 0xb6), b1(e, 0xc0); /* movzx eax, al */
	store(e, true, RAX, OFF(lf.carry));
	load(e, w, RAX, GPR(reg));
	mov_imm64(e, RCX, 1);
	op_rr(e, w, 0x89, RDX, RAX); /* mov rdx, rax */
	op_rr(e, w, 0xff, RDX, dec ? 1 : 0); /* inc/dec edx or rdx */
	store(e, true, RDX, GPR(reg));
	record(e, dec ? X86_LF_DEC : X86_LF_INC, size);
}

/* LEA with 64-bit addressing (fast.c's flea()); rip_next: the offset of
 * the next instruction from the block's entry, for RIP-relative forms. */
static void t_lea(struct emit *e, const struct x86_insn *in, int32_t rip_next)
{
	if (in->base == X86_RIP_BASE)
		lea_r12(e, RAX, rip_next);
	else if (in->base != X86_NO_REG)
		load(e, true, RAX, GPR(in->base));
	else
		op_rr(e, false, 0x31, RAX, RAX); /* xor eax, eax */
	if (in->index != X86_NO_REG) {
		load(e, true, RCX, GPR(in->index));
		if (in->scale) {
			b1(e, 0x48); /* shl rcx, scale */
			b1(e, 0xc1);
			b1(e, 0xe1);
			b1(e, in->scale);
		}
		op_rr(e, true, 0x01, RAX, RCX);
	}
	if (in->disp) {
		b1(e, 0x48); /* add rax, imm32 */
		b1(e, 0x05);
		b4(e, (uint32_t)in->disp);
	}
	if (in->opsize == 4)
		op_rr(e, false, 0x89, RAX, RAX); /* mov eax, eax */
	store(e, true, RAX, GPR(in->reg));
}

/* Emits a template for in when it has one; false: call its handler.
 * *alu: it is an ALU form, whose guest flags are the host's EFLAGS right
 * after it. */
static bool template(struct emit *e, const struct x86_insn *in,
		     int32_t rip_next, bool *alu)
{
	unsigned int op = in->opcode, size = in->opsize;
	unsigned int grp = (in->modrm >> 3) & 7;
	bool w = size == 8;

	*alu = true;
	if (in->lock || in->rep || in->desc->opcode != op ||
	    (size != 4 && size != 8))
		return false;
	if (!(in->desc->flags & X86_D_MODRM) || in->mem || op == 0x8d ||
	    op == 0x89 || op == 0x8b || op == 0xc7)
		*alu = false;
	if (op >= 0xb8 && op < 0xc0) { /* MOV r, imm */
		mov_imm64(e, RAX, w ? in->imm : (uint32_t)in->imm);
		store(e, true, RAX, GPR(in->reg));
		return true;
	}
	if (op == 0x8d && in->addrsize == 8) {
		t_lea(e, in, rip_next);
		return true;
	}
	if (!(in->desc->flags & X86_D_MODRM) || in->mem)
		return false;
	if (op < 0x40 && (op & 7) <= 3 && (op & 1) && (op >> 3) != 2 &&
	    (op >> 3) != 3) {
		/* 01 09 21 29 31 39: E op= G; 03 0B 23 2B 33 3B: G op= E. */
		if (op & 2)
			t_alu(e, op >> 3, false, size, in->reg, in->rm, 0);
		else
			t_alu(e, op >> 3, false, size, in->rm, in->reg, 0);
		return true;
	}
	switch (op) {
	case 0x81:
	case 0x83:
		if (grp == 2 || grp == 3)
			return false; /* ADC, SBB */
		t_alu(e, grp, false, size, in->rm, -1, in->imm);
		return true;
	case 0x85:
		t_alu(e, 4, true, size, in->rm, in->reg, 0);
		return true;
	case 0xf7:
		if (grp != 0)
			return false;
		t_alu(e, 4, true, size, in->rm, -1, in->imm);
		return true;
	case 0x89:
	case 0x8b: {
		unsigned int src = op == 0x89 ? in->reg : in->rm;
		unsigned int dst = op == 0x89 ? in->rm : in->reg;

		load(e, w, RAX, GPR(src));
		store(e, true, RAX, GPR(dst));
		return true;
	}
	case 0xc7:
		if (grp != 0)
			return false;
		mov_imm64(e, RAX, w ? in->imm : (uint32_t)in->imm);
		store(e, true, RAX, GPR(in->rm));
		return true;
	case 0xff:
		if (grp > 1)
			return false;
		t_incdec(e, grp == 1, size, in->rm);
		*alu = true;
		return true;
	default:
		return false;
	}
}

/* ---- blocks ----------------------------------------------------------- */

static bool is_jcc(const struct x86_insn *in)
{
	return (in->opcode >= 0x70 && in->opcode <= 0x7f) ||
	       (in->opcode >= (X86_MAP_0F | 0x80) &&
		in->opcode <= (X86_MAP_0F | 0x8f));
}

/* rax = r12 + off, the host's jne to *slow when it is not canonical
 * (bits 63..47 equal; the branch handlers' #GP, exec_flow.c). */
static void target_check(struct emit *e, int32_t off, uint8_t **slow)
{
	lea_r12(e, RAX, off);
	op_rr(e, true, 0x89, RCX, RAX); /* mov rcx, rax */
	b1(e, 0x48), b1(e, 0xc1), b1(e, 0xe1), b1(e, 16); /* shl rcx, 16 */
	b1(e, 0x48), b1(e, 0xc1), b1(e, 0xf9), b1(e, 16); /* sar rcx, 16 */
	op_rr(e, true, 0x39, RCX, RAX); /* cmp rcx, rax */
	*slow = jcc_fwd(e, 0x5);
}

/* Whether condition cc (the low nibble of a Jcc) reads CF: B, AE, BE,
 * A, which INC/DEC's host flags cannot decide. */
static bool cf_cond(unsigned int opcode)
{
	unsigned int cc = (opcode & 0xf) >> 1;

	return cc == 1 || cc == 3;
}

/* Whether r12 + off fits the 32-bit displacement of lea_r12(). */
static bool fits32(int64_t off)
{
	return off >= INT32_MIN && off <= INT32_MAX;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * int code(struct x86_cpu *cpu, uint64_t rip):
 *
 *	push rbx, r12, r13; rbx = cpu; r12 = rip
 *	for each instruction, at offset off from the entry:
 *	  template:  its body; the retired count is added up and stored
 *	             before the next handler call or exit
 *	  otherwise: rip = r12 + off; next_rip = r13 = r12 + off + len;
 *	             handler(cpu, in); retired++;
 *	             if attn: exit 1 with rip = next_rip
 *	             if next_rip != r13: exit 0 with rip = next_rip
 *	exit 0 with rip = r12 + the block's length
 *
 * The same order as the run loop: RIP and next_rip stored before the
 * handler runs (a fault reports RIP; RIP-relative operands use it), the
 * retired count exact whenever a handler may fault or the block leaves.
 */
void x86_jit_translate(struct x86_cpu *cpu, struct x86_block *b)
{
	struct x86_jit *j = cpu->jit;
	uint8_t *fix_attn[X86_BLOCK_INSNS], *fix_next[X86_BLOCK_INSNS];
	uint8_t *fix_end[2 * X86_BLOCK_INSNS];
	unsigned int nattn = 0, nnext = 0, nend = 0, pending = 0;
	uint64_t t0 = now_ns();
	struct emit e;
	int32_t off = 0;

	b->code = NULL;
	if (!j || !x86_jit_has_room(j))
		return;
	e.start = e.p = j->rw + j->used;
	b1(&e, 0x53); /* push rbx */
	b1(&e, 0x41), b1(&e, 0x54); /* push r12 */
	b1(&e, 0x41), b1(&e, 0x55); /* push r13 */
	op_rr(&e, true, 0x89, RBX, RDI); /* mov rbx, rdi */
	op_rr(&e, true, 0x89, R12, RSI); /* mov r12, rsi */
	for (unsigned int i = 0; i < b->ninsns; i++) {
		const struct x86_insn *in = &b->in[i];
		const struct x86_insn *jcc = i + 2 == b->ninsns ? in + 1 : NULL;
		int32_t next = off + in->len;
		uint8_t *slow;
		bool alu;

		if (i + 1 == b->ninsns &&
		    (in->opcode == 0xeb || in->opcode == 0xe9) &&
		    fits32((int64_t)next + (int64_t)in->imm)) {
			/* JMP rel ending the block; a target that is not
			 * canonical takes the handler, which raises #GP. */
			target_check(&e, (int32_t)(next + (int64_t)in->imm),
				     &slow);
			add_retired(&e, pending + 1);
			fix_end[nend++] = jmp_fwd(&e);
			fix(slow, e.p);
		} else if (template(&e, in, next, &alu)) {
			int32_t end = jcc ? next + jcc->len : 0;

			pending++;
			off = next;
			if (!alu || !jcc || !is_jcc(jcc) ||
			    !fits32((int64_t)end + (int64_t)jcc->imm) ||
			    (in->opcode == 0xff && cf_cond(jcc->opcode)))
				continue;
			/*
			 * Fused with the Jcc that ends the block: the host's
			 * flags are the guest's (same operation, same size),
			 * so the same condition code decides. The record
			 * stores between do not touch them.
			 */
			uint8_t *taken = jcc_fwd(&e, jcc->opcode & 0xf);

			add_retired(&e, pending + 1);
			lea_r12(&e, RAX, end);
			fix_end[nend++] = jmp_fwd(&e);
			fix(taken, e.p);
			target_check(&e, (int32_t)(end + (int64_t)jcc->imm),
				     &slow);
			add_retired(&e, pending + 1);
			fix_end[nend++] = jmp_fwd(&e);
			/* Not canonical: the Jcc's handler raises #GP with
			 * the flag writer retired. */
			fix(slow, e.p);
			continue;
		}
		add_retired(&e, pending);
		pending = 0;
		lea_r12(&e, RAX, off);
		store(&e, true, RAX, OFF(rip));
		lea_r12(&e, R13, next);
		store(&e, true, R13, OFF(next_rip));
		op_rr(&e, true, 0x89, RDI, RBX); /* mov rdi, rbx */
		mov_imm64(&e, RSI, (uint64_t)(uintptr_t)in);
		mov_imm64(&e, RAX, (uint64_t)(uintptr_t)in->fn);
		b1(&e, 0xff), b1(&e, 0xd0); /* call rax */
		add_retired(&e, 1);
		/* cmp dword [rbx + attn], 0; jne attn exit */
		op_mem(&e, false, 7, 0x83, (int32_t)OFF(attn));
		b1(&e, 0);
		fix_attn[nattn++] = jcc_fwd(&e, 0x5);
		/* cmp [rbx + next_rip], r13; jne next exit */
		op_mem(&e, true, R13, 0x39, (int32_t)OFF(next_rip));
		fix_next[nnext++] = jcc_fwd(&e, 0x5);
		off = next;
	}
	/* Straight to the end: rip = r12 + off. */
	add_retired(&e, pending);
	lea_r12(&e, RAX, off);
	/* Where rax holds the next RIP. */
	for (unsigned int i = 0; i < nend; i++)
		fix(fix_end[i], e.p);
	store(&e, true, RAX, OFF(rip));
	b1(&e, 0x31), b1(&e, 0xc0); /* xor eax, eax */
	uint8_t *epilogue = e.p;
	b1(&e, 0x41), b1(&e, 0x5d); /* pop r13 */
	b1(&e, 0x41), b1(&e, 0x5c); /* pop r12 */
	b1(&e, 0x5b); /* pop rbx */
	b1(&e, 0xc3); /* ret */
	/* Control went elsewhere: rip = next_rip, 0. */
	for (unsigned int i = 0; i < nnext; i++)
		fix(fix_next[i], e.p);
	load(&e, true, RAX, OFF(next_rip));
	store(&e, true, RAX, OFF(rip));
	b1(&e, 0x31), b1(&e, 0xc0); /* xor eax, eax */
	b1(&e, 0xe9), b4(&e, (uint32_t)(epilogue - (e.p + 4)));
	/* attn: rip = next_rip, 1. */
	for (unsigned int i = 0; i < nattn; i++)
		fix(fix_attn[i], e.p);
	load(&e, true, RAX, OFF(next_rip));
	store(&e, true, RAX, OFF(rip));
	b1(&e, 0xb8), b4(&e, 1); /* mov eax, 1 */
	b1(&e, 0xe9), b4(&e, (uint32_t)(epilogue - (e.p + 4)));
	MMUD_ASSERT((size_t)(e.p - e.start) <= JIT_MAX_BLOCK);
	b->code = j->rx + j->used;
	j->used += ((size_t)(e.p - e.start) + 15) & ~(size_t)15;
	cpu->stat[X86_STAT_JIT_BLOCKS]++;
	cpu->stat[X86_STAT_JIT_NS] += now_ns() - t0;
	cpu->stat[X86_STAT_JIT_BYTES] = j->used;
}
