/*
 * The fault path between its guest walk and its memslot lookup, made
 * deterministic without threads: the guest's page table is mapped
 * read-only in the host, so the walker's compare-exchange that sets the
 * PTE's A bit (its last access to guest memory, SDM vol. 3, 4.8) takes
 * SIGSEGV; the handler makes the page writable again, does what another
 * thread could do in that window, and returns into the walk, which then
 * finishes. A memslot invalidation there must make the fault retry: the
 * fault took its invalidation-sequence snapshot before it walked.
 *
 * The signal is synchronous and comes from one known instruction of the
 * walker, which holds no lock then (only an RCU read-side section, which
 * nests), so the handler may call into the MMU.
 */
#include <signal.h>

#include "mmu_env.h"

#define GVA 0x400000ULL

/* The trap: the guest page that is read-only, and what to do once. */
static struct {
	char *page;
	void (*action)(struct mmu_env *e);
	struct mmu_env *e;
	volatile sig_atomic_t hits;
	struct sigaction old;
} trap;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	char *a = si->si_addr;

	(void)uc;
	if (!trap.page || a < trap.page || a >= trap.page + PAGE_SIZE) {
		/* Not ours: let it crash as it would have. */
		sigaction(sig, &trap.old, NULL);
		return;
	}
	mprotect(trap.page, PAGE_SIZE, PROT_READ | PROT_WRITE);
	trap.page = NULL;
	trap.hits++;
	trap.action(trap.e);
}

static void trap_arm(struct mmu_env *e, gfn_t gfn,
		     void (*action)(struct mmu_env *))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGSEGV, &sa, &trap.old), 0);
	trap.page = (char *)e->m0.base + gfn * PAGE_SIZE;
	trap.action = action;
	trap.e = e;
	trap.hits = 0;
	assert_int_equal(mprotect(trap.page, PAGE_SIZE, PROT_READ), 0);
}

static void trap_disarm(void)
{
	assert_null(trap.page);
	assert_int_equal(sigaction(SIGSEGV, &trap.old, NULL), 0);
}

/*
 * GVA -> BASE1 with a clean A bit in the PTE, so the walk must store to
 * its table; vCPU 0's root loaded. Returns the PT's gfn.
 */
static gfn_t map_data_page(struct mmu_env *e)
{
	env_map(e, PML4, GVA, BASE1, G_W | G_D);
	assert_int_equal(mmu_vcpu_load(e->v, &e->cpu), 0);
	return e->next_table - 1;
}

/* The host invalidates the data page (KVM's MMU-notifier range zap). */
static void zap_data_page(struct mmu_env *e)
{
	mmu_zap_gfn_range(e->mmu, BASE1, BASE1 + 1);
}

static void test_fault_range_zap_between_walk_and_lookup_retries(void **state)
{
	struct mmu_env *e = env_new();
	gfn_t pt = map_data_page(e);
	struct mmu_fault_info info;
	struct mmu_stats st;

	(void)state;
	trap_arm(e, pt, zap_data_page);
	assert_int_equal(mmu_page_fault(e->v, &e->cpu, GVA, MMU_ACCESS_READ,
					&info),
			 MMU_FAULT_RETRY);
	assert_int_equal(trap.hits, 1);
	trap_disarm();
	/* The walk did finish: A is set. */
	assert_true(gpte_get(&e->m0, 0, pt, 0) & G_A);
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.sptes, 0);
	assert_int_equal(st.retries, 1);
	assert_shadow_misses(e, GVA, MMU_ACCESS_READ);
	/* The retry installs the translation. */
	assert_int_equal(mmu_page_fault(e->v, &e->cpu, GVA, MMU_ACCESS_READ,
					&info),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, GVA, MMU_ACCESS_READ, tmem_hva(&e->m1));
	env_free(e);
}

static void nothing(struct mmu_env *e)
{
	(void)e;
}

/* The control: the same trap with nothing in the window. */
static void test_fault_trap_alone_changes_nothing(void **state)
{
	struct mmu_env *e = env_new();
	gfn_t pt = map_data_page(e);
	struct mmu_fault_info info;

	(void)state;
	trap_arm(e, pt, nothing);
	assert_int_equal(mmu_page_fault(e->v, &e->cpu, GVA, MMU_ACCESS_WRITE,
					&info),
			 MMU_FAULT_FIXED);
	assert_int_equal(trap.hits, 1);
	trap_disarm();
	assert_int_equal(gpte_get(&e->m0, 0, pt, 0) & (G_A | G_D), G_A | G_D);
	assert_shadow_maps(e, GVA, MMU_ACCESS_WRITE, tmem_hva(&e->m1));
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_fault_range_zap_between_walk_and_lookup_retries),
		cmocka_unit_test(test_fault_trap_alone_changes_nothing),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
