/*
 * Layout constants the runtime's assembly and C share: how many vCPUs the
 * runtime supports, the per-vCPU area (stacks, TSS, recovery state) and
 * the selectors of its GDT.
 */
#ifndef RT_LAYOUT_H
#define RT_LAYOUT_H

/*
 * Every vCPU count mmud accepts (core/vm.h VM_MAX_VCPUS). The areas of
 * the first RT_STATIC_CPUS vCPUs are in the image; vCPU 0 allocates the
 * others at boot, so a small guest stays small (cpu.c).
 */
#define RT_MAX_CPUS 64
#define RT_STATIC_CPUS 16
#define RT_STACK_SIZE 16384
#define RT_USTACK_SIZE 8192

/* struct rt_cpu: kernel stack, RSP0 stack, #DF (IST1) stack, then data. */
#define RT_CPU_KSTACK 0
#define RT_CPU_ISTACK 16384
#define RT_CPU_DFSTACK 32768
#define RT_CPU_DATA 36864
#define RT_CPU_SIZE 40960

/* Selectors of the runtime's GDT (SYSRET-compatible layout). */
#define RT_KCODE 0x08
#define RT_KDATA 0x10
#define RT_UCODE32 0x1b
#define RT_UDATA 0x23
#define RT_UCODE 0x2b
#define RT_TSS0 0x30

#endif
