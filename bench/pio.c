/*
 * The port-I/O guest of bench/: the round trip of an exit to the device
 * model and back. It runs at CPL0 under both mmud and kvm-run: at CPL3
 * this KVM (kvm_pvm) raises #GP for OUT even with IOPL 3, and at CPL0 it
 * runs guest code through its instruction emulator, so the loop around
 * the OUT costs about as much as the exit there. Hence two timed loops
 * of "n=" iterations (default 100000), each after 1000 untimed ones: one
 * writes to port 0x80, which no device claims under mmud or kvm-run, the
 * other runs a NOP in its place. It prints one JSON line with both cycle
 * counts; bench/run.py reports their difference per iteration.
 */
#include "bench_guest.h"

#define PORT 0x80
#define WARMUP 1000

static uint64_t outs(uint64_t n)
{
	uint64_t t0, t1;

	for (uint64_t i = WARMUP; i; i--)
		__asm__ volatile("outb %%al, %0" ::"i"(PORT), "a"(0));
	t0 = bench_rdtsc();
	for (uint64_t i = n; i; i--)
		__asm__ volatile("outb %%al, %0" ::"i"(PORT), "a"(0));
	t1 = bench_rdtsc();
	return t1 - t0;
}

static uint64_t nops(uint64_t n)
{
	uint64_t t0, t1;

	for (uint64_t i = WARMUP; i; i--)
		__asm__ volatile("nop" ::"a"(0));
	t0 = bench_rdtsc();
	for (uint64_t i = n; i; i--)
		__asm__ volatile("nop" ::"a"(0));
	t1 = bench_rdtsc();
	return t1 - t0;
}

int guest_main(unsigned int cpu)
{
	uint64_t n = bench_arg("n", 100000), out, nop;

	if (cpu != 0)
		return 0;
	nop = nops(n);
	out = outs(n);
	rt_printf("{\"figure\":\"pio_out\",\"count\":%lu,\"out_cycles\":%lu,"
		  "\"nop_cycles\":%lu}\n",
		  n, out, nop);
	return 0;
}
