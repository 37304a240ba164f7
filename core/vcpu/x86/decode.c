/*
 * The instruction decoder: legacy prefixes, REX, VEX (two- and three-byte,
 * for the general-register instructions of BMI1/BMI2), the one-byte, 0F,
 * 0F38 and 0F3A opcode maps, ModRM/SIB with every displacement size and
 * RIP-relative addressing, immediates, and the 15-byte limit (SDM vol. 2,
 * chapter 2). It knows no instruction's semantics: the exec_*.c files
 * describe their opcodes in struct x86_opdesc arrays, merged here into
 * one lookup table, and an opcode no file claims is #UD.
 */
#include <pthread.h>
#include <string.h>

#include "x86_int.h"

static const struct x86_opdesc *optable[X86_NR_OPCODES][8];
/* Whether an opcode needs ModRM to pick its entry (any entry has it). */
static bool op_modrm[X86_NR_OPCODES];
static pthread_once_t optable_once = PTHREAD_ONCE_INIT;

static void add_ops(const struct x86_opdesc *ops)
{
	for (const struct x86_opdesc *d = ops; d->fn; d++) {
		MMUD_ASSERT(d->opcode < X86_NR_OPCODES);
		MMUD_ASSERT(d->group == X86_GROUP_ANY || d->group < 8);
		MMUD_ASSERT(d->group == X86_GROUP_ANY ||
			    (d->flags & X86_D_MODRM));
		for (unsigned int g = 0; g < 8; g++) {
			if (d->group != X86_GROUP_ANY && d->group != g)
				continue;
			/* Two files claiming one encoding is a bug. */
			MMUD_ASSERT(!optable[d->opcode][g]);
			optable[d->opcode][g] = d;
		}
		if (d->flags & X86_D_MODRM)
			op_modrm[d->opcode] = true;
	}
}

static void build_optable(void)
{
	add_ops(x86_ops_alu);
	add_ops(x86_ops_mov);
	add_ops(x86_ops_flow);
	add_ops(x86_ops_string);
	add_ops(x86_ops_system);
	add_ops(x86_ops_segment);
	add_ops(x86_ops_io);
	add_ops(x86_ops_bmi);
	add_ops(x86_ops_fpu);
	add_ops(x86_ops_sse);
	add_ops(x86_ops_ssefp);
	add_ops(x86_ops_x87);
}

void x86_decode_init(void)
{
	pthread_once(&optable_once, build_optable);
}

const struct x86_opdesc *x86_opdesc_lookup(unsigned int opcode,
					   unsigned int group)
{
	if (opcode >= X86_NR_OPCODES)
		return NULL;
	return optable[opcode][group & 7];
}

/* The bytes of one instruction, fetched as the decoder needs them: a
 * fetch past the end of a page happens only when the instruction really
 * continues there (a fault on the next page is then the right fault). */
struct fetcher {
	struct x86_cpu *cpu; /* NULL: decode only the bytes given */
	gva_t la;
	unsigned int have, pos;
	uint8_t buf[16];
	jmp_buf *err; /* without cpu: where a failure goes */
};

/* A decoding failure: the exception with a CPU, else a soft error. */
static _Noreturn void fail(struct fetcher *f, unsigned int vector)
{
	if (f->cpu)
		x86_raise(f->cpu, vector, 0);
	longjmp(*f->err, 1);
}

static uint8_t next_byte(struct fetcher *f)
{
	if (f->pos >= f->have) {
		/* SDM vol. 2, 2.3.11: longer than 15 bytes is #GP(0). */
		if (f->pos >= 15 || !f->cpu)
			fail(f, X86_GP);
		x86_fetch(f->cpu, f->la + f->pos, f->buf + f->pos, 1);
		f->have = f->pos + 1;
	}
	return f->buf[f->pos++];
}

static uint64_t next_bytes(struct fetcher *f, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)next_byte(f) << (8 * i);
	return v;
}

static void decode_modrm(struct fetcher *f, struct x86_insn *in,
			 unsigned int rex)
{
	unsigned int mod = in->modrm >> 6, rm = in->modrm & 7;

	if (mod == 3) {
		in->mem = false;
		in->rm = (uint8_t)(rm | ((rex & 1) << 3));
		return;
	}
	in->mem = true;
	in->base = X86_NO_REG;
	in->index = X86_NO_REG;
	if (rm == 4) {
		uint8_t sib = next_byte(f);
		unsigned int idx = ((sib >> 3) & 7) | ((rex & 2) << 2);
		unsigned int base = sib & 7;

		in->scale = sib >> 6;
		/* Index 100b without REX.X means no index. */
		if (idx != 4)
			in->index = (uint8_t)idx;
		if (base == 5 && mod == 0) {
			in->disp = (int32_t)next_bytes(f, 4);
		} else {
			in->base = (uint8_t)(base | ((rex & 1) << 3));
		}
	} else if (rm == 5 && mod == 0) {
		/* SDM vol. 2, 2.2.1.6: RIP-relative in 64-bit mode. */
		in->base = X86_RIP_BASE;
		in->disp = (int32_t)next_bytes(f, 4);
	} else {
		in->base = (uint8_t)(rm | ((rex & 1) << 3));
	}
	if (mod == 1)
		in->disp = (int8_t)next_byte(f);
	else if (mod == 2)
		in->disp = (int32_t)next_bytes(f, 4);
	/* Addresses based on RSP or RBP are stack (SS) accesses. */
	if (in->seg == X86_DS && (in->base == X86_RSP || in->base == X86_RBP))
		in->seg = X86_SS;
}

static void decode_imm(struct fetcher *f, struct x86_insn *in)
{
	switch (in->desc->imm) {
	case X86_IMM_NONE:
		break;
	case X86_IMM_B:
		in->imm = next_byte(f);
		break;
	case X86_IMM_SB:
		in->imm = (uint64_t)(int64_t)(int8_t)next_byte(f);
		break;
	case X86_IMM_W:
		in->imm = next_bytes(f, 2);
		break;
	case X86_IMM_Z:
		if (in->opsize == 2)
			in->imm = (uint64_t)(int64_t)(int16_t)next_bytes(f, 2);
		else
			in->imm = (uint64_t)(int64_t)(int32_t)next_bytes(f, 4);
		break;
	case X86_IMM_V:
		in->imm = next_bytes(f, in->opsize);
		break;
	case X86_IMM_WB:
		in->imm = next_bytes(f, 2);
		in->imm2 = next_byte(f);
		break;
	case X86_IMM_MOFFS:
		in->imm = next_bytes(f, in->addrsize);
		break;
	}
}

/*
 * Stage 1, the legacy prefixes and REX (SDM vol. 2, 2.1.1, 2.2.1):
 * returns the first byte that is neither; *rex is the REX byte right
 * before it (0: none), *addr32 whether 67 was seen.
 */
static uint8_t decode_prefixes(struct fetcher *f, struct x86_insn *in,
			       unsigned int *rex, bool *addr32)
{
	for (;;) {
		uint8_t b = next_byte(f);

		switch (b) {
		case 0x66:
			in->opsize_prefix = true;
			*rex = 0;
			continue;
		case 0x67:
			*addr32 = true;
			*rex = 0;
			continue;
		case 0xf0:
			in->lock = true;
			*rex = 0;
			continue;
		case 0xf2:
		case 0xf3:
			in->rep = b;
			*rex = 0;
			continue;
		case 0x26:
		case 0x2e:
		case 0x36:
		case 0x3e:
			/* ES/CS/SS/DS overrides are ignored in 64-bit mode. */
			*rex = 0;
			continue;
		case 0x64:
			in->seg = X86_FS;
			*rex = 0;
			continue;
		case 0x65:
			in->seg = X86_GS;
			*rex = 0;
			continue;
		}
		if (b >= 0x40 && b <= 0x4f) {
			/* A REX prefix counts only right before the opcode;
			 * a prefix after it cancels it (SDM vol. 2, 2.2.1). */
			*rex = b;
			continue;
		}
		return b;
	}
}

/*
 * Stage 2a, a VEX prefix (SDM vol. 2, 2.3), b = C4 or C5: C4/C5 are
 * never LES/LDS in 64-bit mode. Its R, X, B and W take REX's place
 * (*rex); a 66, F2, F3, LOCK or REX prefix before it is #UD, and so is
 * VEX.L = 1 (no 256-bit instruction exists here). Returns the opcode
 * (with its map) and leaves its byte in *last.
 */
static unsigned int decode_vex(struct fetcher *f, struct x86_insn *in,
			       uint8_t b, unsigned int *rex, uint8_t *last)
{
	uint8_t p1 = next_byte(f), p2;
	unsigned int map;

	if (*rex || in->opsize_prefix || in->rep || in->lock)
		fail(f, X86_UD);
	if (b == 0xc5) {
		map = 1;
		p2 = p1;
		*rex = 0x40 | (p1 & 0x80 ? 0 : 4);
	} else {
		p2 = next_byte(f);
		map = p1 & 0x1f;
		*rex = 0x40 | (p1 & 0x80 ? 0 : 4) | (p1 & 0x40 ? 0 : 2) |
		       (p1 & 0x20 ? 0 : 1) | (p2 & 0x80 ? 8 : 0);
	}
	if (p2 & 4)
		fail(f, X86_UD);
	in->vex_reg = (uint8_t)(~p2 >> 3 & 0xf);
	in->vex_pfx = (const uint8_t[]){ 0, 0x66, 0xf3, 0xf2 }[p2 & 3];
	*last = next_byte(f);
	if (map == 2)
		return X86_MAP_VEX_0F38 | *last;
	if (map == 3)
		return X86_MAP_VEX_0F3A | *last;
	fail(f, X86_UD); /* no VEX 0F instruction here */
}

/* Stage 2b, a legacy opcode of one to three bytes (SDM vol. 2, 2.1.2),
 * starting at b; its last byte goes to *last. */
static unsigned int decode_legacy_opcode(struct fetcher *f, uint8_t b,
					 uint8_t *last)
{
	*last = b;
	if (b != 0x0f)
		return b;
	*last = next_byte(f);
	if (*last == 0x38) {
		*last = next_byte(f);
		return X86_MAP_0F38 | *last;
	}
	if (*last == 0x3a) {
		*last = next_byte(f);
		return X86_MAP_0F3A | *last;
	}
	return X86_MAP_0F | *last;
}

/*
 * Stage 3, what the opcode's descriptor asks for: ModRM and the group
 * member it selects, operand and address sizes, the register in the
 * opcode's low bits (last), SIB and displacement, the LOCK check, the
 * immediate.
 */
static void decode_operands(struct fetcher *f, struct x86_insn *in,
			    unsigned int opcode, unsigned int rex, bool addr32,
			    uint8_t last)
{
	const struct x86_opdesc *d;
	unsigned int group = 0;

	in->rex = rex != 0;
	in->rex_w = rex & 8;
	in->opcode = (uint16_t)opcode;
	if (op_modrm[opcode]) {
		in->modrm = next_byte(f);
		group = (in->modrm >> 3) & 7;
		in->reg = (uint8_t)(group | ((rex & 4) << 1));
	}
	d = optable[opcode][group];
	if (!d)
		fail(f, X86_UD);
	in->desc = d;
	in->fn = d->fn;

	if (d->flags & X86_D_BYTE)
		in->opsize = 1;
	else if ((d->flags & X86_D_FORCE64) || in->rex_w)
		in->opsize = 8;
	else if (d->flags & X86_D_DEF64)
		in->opsize = in->opsize_prefix ? 2 : 8;
	else
		in->opsize = in->opsize_prefix ? 2 : 4;
	in->addrsize = addr32 ? 4 : 8;
	if (d->flags & X86_D_OPREG)
		in->reg = (uint8_t)((last & 7) | ((rex & 1) << 3));

	if (d->flags & X86_D_MODRM) {
		decode_modrm(f, in, rex);
		if ((d->flags & X86_D_MEM) && !in->mem)
			fail(f, X86_UD);
		if ((d->flags & X86_D_REG) && in->mem)
			fail(f, X86_UD);
	}
	/* SDM vol. 2, 2.1.1: LOCK on anything but a lockable instruction
	 * with a memory destination is #UD. */
	if (in->lock && (!(d->flags & X86_D_LOCK) || !in->mem))
		fail(f, X86_UD);
	decode_imm(f, in);
}

/* The staged decoder: prefixes, then VEX or a legacy opcode, then the
 * operands the opcode's descriptor asks for. */
static void decode(struct fetcher *fp, struct x86_insn *in)
{
	struct fetcher f = *fp;
	unsigned int rex = 0, opcode;
	bool addr32 = false;
	uint8_t b, last;

	memset(in, 0, sizeof(*in));
	in->seg = X86_DS;
	in->base = X86_NO_REG;
	in->index = X86_NO_REG;

	b = decode_prefixes(&f, in, &rex, &addr32);
	if (b == 0xc4 || b == 0xc5)
		opcode = decode_vex(&f, in, b, &rex, &last);
	else
		opcode = decode_legacy_opcode(&f, b, &last);
	decode_operands(&f, in, opcode, rex, addr32, last);
	in->len = (uint8_t)f.pos;
	*fp = f;
}

void x86_decode(struct x86_cpu *cpu, struct x86_insn *in, uint8_t raw[16])
{
	struct fetcher f = { .cpu = cpu, .la = cpu->rip };

	/* Prefetch what this page holds; later bytes come one by one, so a
	 * fault on the next page happens only when the instruction really
	 * continues there. */
	f.have = 4096 - (unsigned int)(cpu->rip & 4095);
	if (f.have > 15)
		f.have = 15;
	x86_fetch(cpu, cpu->rip, f.buf, f.have);
	decode(&f, in);
	if (raw)
		memcpy(raw, f.buf, in->len);
}

bool x86_decode_bytes(const uint8_t *bytes, unsigned int avail,
		      struct x86_insn *in)
{
	jmp_buf err;
	struct fetcher f = { .cpu = NULL, .err = &err };

	f.have = avail < 15 ? avail : 15;
	memcpy(f.buf, bytes, f.have);
	if (setjmp(err))
		return false;
	decode(&f, in);
	return true;
}

uint64_t x86_get_E(struct x86_cpu *cpu, const struct x86_insn *in)
{
	if (!in->mem)
		return x86_reg_get(cpu, in->rm, in->opsize, in->rex);
	return x86_read(cpu, x86_ea(cpu, in), in->opsize, in->seg);
}

void x86_set_E(struct x86_cpu *cpu, const struct x86_insn *in, uint64_t v)
{
	if (!in->mem)
		x86_reg_set(cpu, in->rm, in->opsize, in->rex, v);
	else
		x86_write(cpu, x86_ea(cpu, in), in->opsize, in->seg, v);
}

uint64_t x86_rmw_E(struct x86_cpu *cpu, const struct x86_insn *in,
		   x86_rmw_fn fn, void *ctx)
{
	uint64_t old;

	if (in->mem)
		return x86_rmw(cpu, x86_ea(cpu, in), in->opsize, in->seg,
			       in->lock, fn, ctx);
	old = x86_reg_get(cpu, in->rm, in->opsize, in->rex);
	x86_reg_set(cpu, in->rm, in->opsize, in->rex, fn(cpu, old, ctx));
	return old;
}
