/*
 * Port I/O of the software CPU: IN/OUT (E4-E7, EC-EF), INS/OUTS (6C-6F,
 * with REP), the I/O privilege check (IOPL, then the TSS I/O permission
 * bitmap) and x86_io_complete(). Every access leaves x86_run() with an
 * X86_EXIT_IO exit, one per element for the string forms; the devices
 * behind the ports belong to the vCPU layer, not to this file.
 *
 * OUT and OUTS elements complete before the exit. IN retires at its exit
 * and x86_io_complete() writes AL/AX/EAX. An INS element cannot store
 * from x86_io_complete() (a store may fault, and no fault can be taken
 * outside x86_run()), so INS exits without retiring, keeps the value
 * x86_io_complete() hands over in cpu->io (io.ready), and stores it
 * when the same instruction runs again, where faults are delivered
 * normally.
 */
#include "x86_int.h"

/* Operand sizes of I/O are 1, 2 or 4 bytes; REX.W does not widen them. */
static unsigned int io_size(const struct x86_insn *in)
{
	return in->opsize > 4 ? 4 : in->opsize;
}

/*
 * SDM vol. 1, 19.5: with CPL > IOPL an access is allowed only if every
 * bit of the TSS I/O permission bitmap for its ports is clear. The
 * bitmap starts at the 16-bit offset at TSS byte 0x66 and the two bytes
 * holding the bits are read; any of them beyond the TSS limit means no
 * permission.
 */
static void check_io_permission(struct x86_cpu *cpu, uint16_t port,
				unsigned int size)
{
	uint32_t base, off;
	uint64_t bits;

	if (cpu->cpl <= ((x86_rflags(cpu) >> 12) & 3))
		return;
	if ((cpu->tr.attr & X86_SEG_UNUSABLE) || cpu->tr.limit < 0x67)
		x86_raise(cpu, X86_GP, 0);
	base = (uint32_t)x86_read_sys(cpu, cpu->tr.base + 0x66, 2);
	off = base + port / 8;
	if (off + 1 > cpu->tr.limit)
		x86_raise(cpu, X86_GP, 0);
	bits = x86_read_sys(cpu, cpu->tr.base + off, 2) >> (port & 7);
	if (bits & ((1u << size) - 1))
		x86_raise(cpu, X86_GP, 0);
}

static struct x86_exit *io_exit(struct x86_cpu *cpu, uint16_t port,
				unsigned int size, bool in, uint32_t value)
{
	struct x86_exit *exit = x86_exit_after(cpu, X86_EXIT_IO);

	exit->io.port = port;
	exit->io.size = (uint8_t)size;
	exit->io.in = in;
	exit->io.value = value;
	return exit;
}

static uint16_t io_port(const struct x86_cpu *cpu, const struct x86_insn *in)
{
	/* E4-E7 take an 8-bit immediate port, EC-EF and the string forms
	 * take DX. */
	if ((in->opcode & 0xfc) == 0xe4)
		return (uint16_t)(in->imm & 0xff);
	return (uint16_t)cpu->gpr[X86_RDX];
}

static void op_in(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = io_size(in);
	uint16_t port = io_port(cpu, in);

	check_io_permission(cpu, port, size);
	cpu->io.pending = true;
	cpu->io.string = false;
	cpu->io.ready = false;
	cpu->io.size = (uint8_t)size;
	cpu->io.port = port;
	io_exit(cpu, port, size, true, 0);
}

static void op_out(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = io_size(in);
	uint16_t port = io_port(cpu, in);

	check_io_permission(cpu, port, size);
	io_exit(cpu, port, size, false,
		(uint32_t)x86_trunc(cpu->gpr[X86_RAX], size));
}

/* RSI/RDI/RCX at the address size: 32-bit updates zero-extend. */
static uint64_t areg(const struct x86_cpu *cpu, const struct x86_insn *in,
		     unsigned int reg)
{
	return x86_trunc(cpu->gpr[reg], in->addrsize);
}

static void set_areg(struct x86_cpu *cpu, const struct x86_insn *in,
		     unsigned int reg, uint64_t v)
{
	cpu->gpr[reg] = x86_trunc(v, in->addrsize);
}

/* Steps the index register and, with REP, the count; a REP form that
 * has more to do runs again instead of retiring. */
static void string_step(struct x86_cpu *cpu, const struct x86_insn *in,
			unsigned int reg, unsigned int size)
{
	uint64_t delta = (x86_rflags(cpu) & X86_RFLAGS_DF) ? -(uint64_t)size :
							     size;

	set_areg(cpu, in, reg, areg(cpu, in, reg) + delta);
	if (in->rep) {
		uint64_t count = areg(cpu, in, X86_RCX) - 1;

		set_areg(cpu, in, X86_RCX, count);
		if (count)
			cpu->next_rip = cpu->rip;
	}
}

/* OUTS: DS:RSI (segment override allowed) to the port. */
static void op_outs(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = io_size(in);
	uint16_t port = io_port(cpu, in);
	gva_t la;
	uint64_t v;

	if (in->rep && areg(cpu, in, X86_RCX) == 0)
		return;
	check_io_permission(cpu, port, size);
	la = areg(cpu, in, X86_RSI);
	if (in->seg == X86_FS || in->seg == X86_GS)
		la += cpu->seg[in->seg].base;
	v = x86_read(cpu, la, size, in->seg);
	string_step(cpu, in, X86_RSI, size);
	io_exit(cpu, port, size, false, (uint32_t)v);
}

/* INS: the port to ES:RDI (no override). */
static void op_ins(struct x86_cpu *cpu, const struct x86_insn *in)
{
	unsigned int size = io_size(in);
	uint16_t port = io_port(cpu, in);
	gva_t la;

	if (in->rep && areg(cpu, in, X86_RCX) == 0)
		return;
	check_io_permission(cpu, port, size);
	la = areg(cpu, in, X86_RDI);
	if (cpu->io.ready && cpu->io.string && cpu->io.la == la &&
	    cpu->io.port == port && cpu->io.size == size) {
		/* Second run: the device answered; store and retire. */
		x86_write(cpu, la, size, X86_ES, cpu->io.value);
		cpu->io.ready = false;
		string_step(cpu, in, X86_RDI, size);
		return;
	}
	/* The destination must be writable before the device is read. */
	x86_probe_write(cpu, la, size, X86_ES);
	cpu->io.pending = true;
	cpu->io.string = true;
	cpu->io.ready = false;
	cpu->io.size = (uint8_t)size;
	cpu->io.port = port;
	cpu->io.la = la;
	cpu->next_rip = cpu->rip;
	io_exit(cpu, port, size, true, 0);
}

void x86_io_complete(struct x86_cpu *cpu, uint32_t value)
{
	if (!cpu->io.pending)
		return;
	cpu->io.pending = false;
	if (cpu->io.string) {
		cpu->io.value = value;
		cpu->io.ready = true;
		return;
	}
	/* SDM vol. 1, 3.4.1.1: IN EAX zero-extends into RAX; AL and AX
	 * keep the rest of the register. */
	x86_reg_set(cpu, X86_RAX, cpu->io.size, false, value);
}

#define B X86_D_BYTE

const struct x86_opdesc x86_ops_io[] = {
	{ 0x6c, X86_GROUP_ANY, X86_IMM_NONE, B, op_ins, "insb" },
	{ 0x6d, X86_GROUP_ANY, X86_IMM_NONE, 0, op_ins, "ins" },
	{ 0x6e, X86_GROUP_ANY, X86_IMM_NONE, B, op_outs, "outsb" },
	{ 0x6f, X86_GROUP_ANY, X86_IMM_NONE, 0, op_outs, "outs" },
	{ 0xe4, X86_GROUP_ANY, X86_IMM_B, B, op_in, "in" },
	{ 0xe5, X86_GROUP_ANY, X86_IMM_B, 0, op_in, "in" },
	{ 0xe6, X86_GROUP_ANY, X86_IMM_B, B, op_out, "out" },
	{ 0xe7, X86_GROUP_ANY, X86_IMM_B, 0, op_out, "out" },
	{ 0xec, X86_GROUP_ANY, X86_IMM_NONE, B, op_in, "in" },
	{ 0xed, X86_GROUP_ANY, X86_IMM_NONE, 0, op_in, "in" },
	{ 0xee, X86_GROUP_ANY, X86_IMM_NONE, B, op_out, "out" },
	{ 0xef, X86_GROUP_ANY, X86_IMM_NONE, 0, op_out, "out" },
	{ 0, 0, 0, 0, NULL, NULL },
};
