/*
 * The MMU tests' environment (mmu_env.h): builds the VM every test of
 * core/mmu starts from and tears it down with an audit. What a test
 * checks stays in the test; the vCPU double's protocol is vcpu_double.c's.
 */
#include <stdlib.h>

#include "mmu_env.h"

static void env_init(struct mmu_env *e, const struct mmu_vcpu_ops *ops,
		     void *opaque, uint32_t flags0, uint32_t flags1)
{
	char err[128];

	e->m0 = tmem_alloc(NPAGES0);
	e->m1 = tmem_alloc(NPAGES1);
	e->mmu = mmu_create(ops, opaque);
	assert_non_null(e->mmu);
	assert_int_equal(memslot_add(e->mmu, 0, 0, NPAGES0, tmem_hva(&e->m0),
				     flags0, err, sizeof(err)),
			 0);
	assert_int_equal(memslot_add(e->mmu, 1, BASE1, NPAGES1,
				     tmem_hva(&e->m1), flags1, err,
				     sizeof(err)),
			 0);
	e->next_table = PML4 + 1;
	e->cpu = boot_cpu(PML4);
}

static void env_destroy(struct mmu_env *e)
{
	env_audit(e);
	if (e->v)
		mmu_vcpu_destroy(e->v);
	mmu_destroy(e->mmu);
	tmem_free(&e->m0);
	tmem_free(&e->m1);
}

struct mmu_env *env_new_flags(uint32_t flags0, uint32_t flags1)
{
	struct mmu_env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	env_init(e, rec_vcpu_ops(), &e->rec, flags0, flags1);
	e->v = mmu_vcpu_create(e->mmu, 0);
	assert_non_null(e->v);
	return e;
}

struct mmu_env *env_new(void)
{
	return env_new_flags(0, 0);
}

void env_audit(struct mmu_env *e)
{
	char msg[256];

	if (mmu_audit(e->mmu, msg, sizeof(msg)))
		fail_msg("audit: %s", msg);
}

void env_free(struct mmu_env *e)
{
	env_destroy(e);
	free(e);
}

void env_map(struct mmu_env *e, gfn_t pml4, gva_t gva, gfn_t gfn, uint64_t bits)
{
	map_4k(&e->m0, 0, pml4, &e->next_table, gva, gfn, bits);
}

int env_fault_v(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu, gva_t gva,
		unsigned access, struct mmu_fault_info *info)
{
	assert_int_equal(mmu_vcpu_load(v, cpu), 0);
	return mmu_page_fault(v, cpu, gva, access, info);
}

int env_fault_info(struct mmu_env *e, gva_t gva, unsigned access,
		   struct mmu_fault_info *info)
{
	return env_fault_v(e->v, &e->cpu, gva, access, info);
}

int env_fault(struct mmu_env *e, gva_t gva, unsigned access)
{
	struct mmu_fault_info info;

	return env_fault_info(e, gva, access, &info);
}

int env_xlate_v(struct mmu_vcpu *v, const struct mmu_cpu_state *cpu, gva_t gva,
		unsigned access, hva_t *hva)
{
	const _Atomic uint64_t *root;

	assert_int_equal(mmu_vcpu_load(v, cpu), 0);
	root = mmu_vcpu_root(v);
	if (!root)
		return -EFAULT;
	return mmu_shadow_translate(root, gva, access, cpu, hva);
}

int env_xlate(struct mmu_env *e, gva_t gva, unsigned access, hva_t *hva)
{
	return env_xlate_v(e->v, &e->cpu, gva, access, hva);
}

hva_t env_hva(struct mmu_env *e, gfn_t gfn)
{
	if (gfn >= BASE1)
		return tmem_hva(&e->m1) + (gfn - BASE1) * PAGE_SIZE;
	return tmem_hva(&e->m0) + gfn * PAGE_SIZE;
}

struct mmu_stats env_stats(struct mmu_env *e)
{
	struct mmu_stats st;

	mmu_stats_get(e->mmu, &st);
	return st;
}

struct big big_alloc(size_t size, size_t align)
{
	struct big b = { .len = size + align };

	b.map = mmap(NULL, b.len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(b.map != MAP_FAILED);
	b.hva = ((hva_t)(uintptr_t)b.map + align - 1) & ~(hva_t)(align - 1);
	return b;
}

void big_free(struct big *b)
{
	munmap(b->map, b->len);
}

struct tenv *tenv_new(void)
{
	struct tenv *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	env_init(&t->env, tv_ops(), &t->vm, 0, 0);
	t->vm.mmu = t->env.mmu;
	t->vm.cpu = t->env.cpu;
	return t;
}

void tenv_touch(struct tenv *t, gva_t gva, bool write)
{
	assert_true(t->vm.npages < TV_MAX_PAGES);
	t->vm.gvas[t->vm.npages] = gva;
	t->vm.writes[t->vm.npages++] = write;
}

void tenv_map_touched(struct tenv *t, gva_t gva, gfn_t gfn, uint64_t bits,
		      bool write)
{
	env_map(&t->env, PML4, gva, gfn, bits);
	tenv_touch(t, gva, write);
}

void tenv_audit(struct tenv *t, unsigned round)
{
	char msg[256];

	if (mmu_audit(t->vm.mmu, msg, sizeof(msg)))
		fail_msg("round %u: audit: %s", round, msg);
}

struct mmu_stats tenv_run(struct tenv *t, unsigned nr,
			  const struct tenv_loop *loop)
{
	unsigned round;

	tvm_start(&t->vm, nr);
	tvm_wait_entries(&t->vm, 1);
	for (round = 0; round < loop->rounds; round++) {
		loop->round(t, round, loop->arg);
		if (round % loop->check_every == loop->check_at) {
			tenv_audit(t, round);
			tvm_wait_entries(&t->vm, 1);
		}
	}
	assert_int_equal(tvm_stop(&t->vm), 0);
	tenv_audit(t, ~0u);
	return env_stats(&t->env);
}

void tenv_free(struct tenv *t)
{
	env_destroy(&t->env);
	free(t);
}
