/*
 * The interpreter-speed guest of bench/: 10^8 iterations (or the count in
 * the command line, "n=COUNT") of add/xor/add/dec/jnz, five instructions
 * per iteration, run at CPL3 so that KVM here (kvm_pvm, which emulates
 * CPL0 code) runs it natively. It prints the iteration count and a
 * checksum, and one JSON line with the TSC cycles the loop took (read in
 * the guest: bench/run_cpu.py), and exits through the debug port.
 */
#include "bench_guest.h"

static uint64_t parse_count(void)
{
	const char *s = rt_boot.cmdline;
	uint64_t n = 0;

	for (; *s; s++)
		if (s[0] == 'n' && s[1] == '=') {
			for (s += 2; *s >= '0' && *s <= '9'; s++)
				n = n * 10 + (uint64_t)(*s - '0');
			return n;
		}
	return 100000000ULL;
}

/* arg: the user alias of {count, result, cycles}. */
RT_USER static void spin(uint64_t arg)
{
	uint64_t *io = (uint64_t *)arg;
	uint64_t n = io[0], a = 1, b = 2, t0 = bench_rdtsc();

	__asm__ volatile("1:\n\t"
			 "add %[b], %[a]\n\t"
			 "xor %[n], %[b]\n\t"
			 "add $3, %[a]\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b"
			 : [a] "+r"(a), [b] "+r"(b), [n] "+r"(n)
			 :
			 : "cc");
	io[2] = bench_rdtsc() - t0;
	io[1] = a ^ b;
}

static uint64_t io[3] RT_USER_DATA;

int guest_main(unsigned int cpu)
{
	uint64_t root;

	if (cpu != 0)
		return 0;
	io[0] = parse_count();
	root = pt_root_new();
	rt_user_map(root);
	rt_write_cr3(root);
	if (rt_user_run(spin, rt_user_va(io)) != 0)
		rt_fail("the loop faulted at CPL3\n");
	rt_printf("loop: %lu iterations, checksum %#lx\n", io[0], io[1]);
	rt_printf("{\"figure\":\"loop\",\"iterations\":%lu,\"insns\":%lu,"
		  "\"cycles\":%lu}\n",
		  io[0], io[0] * 5, io[2]);
	return 0;
}
