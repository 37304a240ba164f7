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
#include <errno.h>
#include <signal.h>

#include "mmu_test.h"
#include "mmu_int.h"

#define PML4 1
#define NPAGES0 64
#define BASE1 0x100
#define NPAGES1 16
#define GVA 0x400000ULL

struct wenv {
	struct tmem m0, m1;
	struct mmu *mmu;
	struct mmu_vcpu *v;
	struct rec_ops rec;
	struct mmu_cpu_state cpu;
	gfn_t pt;
};

/* The trap: the guest page that is read-only, and what to do once. */
static struct {
	char *page;
	void (*action)(struct wenv *e);
	struct wenv *e;
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

static void trap_arm(struct wenv *e, gfn_t gfn, void (*action)(struct wenv *))
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

static struct wenv *wenv_new(void)
{
	struct wenv *e = calloc(1, sizeof(*e));
	gfn_t next = PML4 + 1;
	char err[128];

	e->m0 = tmem_alloc(NPAGES0);
	e->m1 = tmem_alloc(NPAGES1);
	e->mmu = mmu_create(rec_vcpu_ops(), &e->rec);
	e->v = mmu_vcpu_create(e->mmu, 0);
	assert_int_equal(memslot_add(e->mmu, 0, 0, NPAGES0, tmem_hva(&e->m0), 0,
				     err, sizeof(err)),
			 0);
	assert_int_equal(memslot_add(e->mmu, 1, BASE1, NPAGES1,
				     tmem_hva(&e->m1), 0, err, sizeof(err)),
			 0);
	/* A clean A bit in the PTE: the walk must store to its table. */
	map_4k(&e->m0, 0, PML4, &next, GVA, BASE1, G_W | G_D);
	e->pt = next - 1;
	e->cpu = boot_cpu(PML4);
	assert_int_equal(mmu_vcpu_load(e->v, &e->cpu), 0);
	return e;
}

static void wenv_free(struct wenv *e)
{
	char msg[256];

	if (mmu_audit(e->mmu, msg, sizeof(msg)))
		fail_msg("audit: %s", msg);
	mmu_vcpu_destroy(e->v);
	mmu_destroy(e->mmu);
	tmem_free(&e->m0);
	tmem_free(&e->m1);
	free(e);
}

/* The host invalidates the data page (KVM's MMU-notifier range zap). */
static void zap_data_page(struct wenv *e)
{
	mmu_zap_gfn_range(e->mmu, BASE1, BASE1 + 1);
}

static void test_fault_range_zap_between_walk_and_lookup_retries(void **state)
{
	struct wenv *e = wenv_new();
	struct mmu_fault_info info;
	struct mmu_stats st;
	hva_t hva;

	(void)state;
	trap_arm(e, e->pt, zap_data_page);
	assert_int_equal(mmu_page_fault(e->v, &e->cpu, GVA, MMU_ACCESS_READ,
					&info),
			 MMU_FAULT_RETRY);
	assert_int_equal(trap.hits, 1);
	trap_disarm();
	/* The walk did finish: A is set. */
	assert_true(gpte_get(&e->m0, 0, e->pt, 0) & G_A);
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.sptes, 0);
	assert_int_equal(st.retries, 1);
	assert_int_equal(mmu_shadow_translate(mmu_vcpu_root(e->v), GVA,
					      MMU_ACCESS_READ, &e->cpu, &hva),
			 -EFAULT);
	/* The retry installs the translation. */
	assert_int_equal(mmu_page_fault(e->v, &e->cpu, GVA, MMU_ACCESS_READ,
					&info),
			 MMU_FAULT_FIXED);
	assert_int_equal(mmu_shadow_translate(mmu_vcpu_root(e->v), GVA,
					      MMU_ACCESS_READ, &e->cpu, &hva),
			 0);
	assert_int_equal(hva, tmem_hva(&e->m1));
	wenv_free(e);
}

static void nothing(struct wenv *e)
{
	(void)e;
}

/* The control: the same trap with nothing in the window. */
static void test_fault_trap_alone_changes_nothing(void **state)
{
	struct wenv *e = wenv_new();
	struct mmu_fault_info info;
	hva_t hva;

	(void)state;
	trap_arm(e, e->pt, nothing);
	assert_int_equal(mmu_page_fault(e->v, &e->cpu, GVA, MMU_ACCESS_WRITE,
					&info),
			 MMU_FAULT_FIXED);
	assert_int_equal(trap.hits, 1);
	trap_disarm();
	assert_int_equal(gpte_get(&e->m0, 0, e->pt, 0) & (G_A | G_D),
			 G_A | G_D);
	assert_int_equal(mmu_shadow_translate(mmu_vcpu_root(e->v), GVA,
					      MMU_ACCESS_WRITE, &e->cpu, &hva),
			 0);
	assert_int_equal(hva, tmem_hva(&e->m1));
	wenv_free(e);
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
