/*
 * The guest page-table walker against a reference model written from the
 * SDM's access-rights rules (vol. 3, 4.6.1), for every combination of
 * U/W/XD bits at two levels x access x CPL x implicit x CR0.WP x EFER.NXE
 * x SMEP x SMAP x AC; plus reserved bits, non-present entries, large
 * pages, A/D updates and unbacked tables.
 */
#include "mmu_env.h"

/* The guest's tables for GVA, in slot 0 at fixed gfns. */
#define PDPT 2
#define PD 3
#define PT 4
#define DATA 5
#define GVA 0x401000ULL /* PML4 0, PDPT 0, PD 2, PT 1 */

static void set_path(struct mmu_env *e, uint64_t pde_bits, uint64_t pte_bits)
{
	gpte_set(&e->m0, 0, PML4, 0, (PDPT << 12) | G_P | G_W | G_U);
	gpte_set(&e->m0, 0, PDPT, 0, (PD << 12) | G_P | G_W | G_U);
	gpte_set(&e->m0, 0, PD, 2, (PT << 12) | G_P | pde_bits);
	gpte_set(&e->m0, 0, PT, 1, (DATA << 12) | G_P | pte_bits);
}

/* The entry of GVA's path at level (4: the PML4E, ..., 1: the PTE). */
static _Atomic uint64_t *path_entry(struct mmu_env *e, int level)
{
	static const gfn_t tables[] = { 0, PT, PD, PDPT, PML4 };
	static const unsigned idx[] = { 0, 1, 2, 0, 0 };

	return tmem_entry(&e->m0, 0, tables[level], idx[level]);
}

static enum mmu_walk_result walk(struct mmu_env *e,
				 const struct mmu_cpu_state *cpu, gva_t gva,
				 unsigned access, struct mmu_walk *w)
{
	enum mmu_walk_result r;

	mmu_rcu_read_lock();
	r = mmu_walk_guest(e->v, cpu, gva, access, w);
	mmu_rcu_read_unlock();
	return r;
}

/* Asserts that the walk faults; its error code. */
static uint32_t walk_fault(struct mmu_env *e, const struct mmu_cpu_state *cpu,
			   gva_t gva, unsigned access)
{
	struct mmu_walk w;

	assert_int_equal(walk(e, cpu, gva, access, &w), MMU_WALK_FAULT);
	return w.error_code;
}

enum kind { READ, WRITE, FETCH };

/*
 * SDM vol. 3, 4.6.1, restated per access kind. A "user-mode address" has
 * U/S=1 in every paging-structure entry; it is "writable" with R/W=1 in
 * every entry; "executable" unless NXE=1 and some entry has XD=1. User-
 * mode accesses are CPL 3 accesses that are not implicit supervisor
 * accesses.
 */
static bool sdm_allows(bool user_addr, bool writable, bool xd, enum kind k,
		       bool user_mode, bool implicit, bool wp, bool smep,
		       bool smap, bool ac)
{
	bool ac_explicit = ac && !implicit;

	if (user_mode) {
		/* Only user-mode addresses; writes need R/W=1 throughout
		 * whatever CR0.WP says; fetches need XD=0 throughout. */
		if (!user_addr)
			return false;
		if (k == WRITE)
			return writable;
		if (k == FETCH)
			return !xd;
		return true;
	}
	switch (k) {
	case READ:
		/* Supervisor addresses always; user addresses unless SMAP,
		 * where only explicit accesses with AC=1 may. */
		return !user_addr || !smap || ac_explicit;
	case WRITE:
		if (user_addr && smap && !ac_explicit)
			return false;
		/* CR0.WP=0: any address; WP=1: R/W=1 throughout. */
		return !wp || writable;
	case FETCH:
		/* SMEP: never from user addresses; else XD decides. */
		if (user_addr && smep)
			return false;
		return !xd;
	}
	return false;
}

static void test_walk_permission_matrix_matches_sdm_model(void **state)
{
	struct mmu_env *e = env_new();
	unsigned combo, checked = 0;

	(void)state;
	for (combo = 0; combo < (1u << 6) * 3 * (1u << 7); combo++) {
		unsigned bits = combo & 63, rest = combo >> 6;
		enum kind k = rest % 3;
		unsigned f = rest / 3;
		bool cpl3 = f & 1, implicit = f & 2, wp = f & 4, nxe = f & 8,
		     smep = f & 16, smap = f & 32, ac = f & 64;
		uint64_t pde = (bits & 1 ? G_U : 0) | (bits & 2 ? G_W : 0) |
			       (bits & 4 ? G_NX : 0);
		uint64_t pte = (bits & 8 ? G_U : 0) | (bits & 16 ? G_W : 0) |
			       (bits & 32 ? G_NX : 0);
		struct mmu_cpu_state cpu = boot_cpu(PML4);
		unsigned access = (k == WRITE ? MMU_ACCESS_WRITE :
				   k == FETCH ? MMU_ACCESS_FETCH :
						MMU_ACCESS_READ) |
				  (implicit ? MMU_ACCESS_IMPLICIT : 0);
		bool user_mode = cpl3 && !implicit;
		bool rsvd = !nxe && ((pde | pte) & G_NX);
		bool ok = !rsvd &&
			  sdm_allows((pde & G_U) && (pte & G_U),
				     (pde & G_W) && (pte & G_W),
				     nxe && ((pde | pte) & G_NX), k, user_mode,
				     implicit, wp, smep, smap, ac);
		uint32_t ec = (k == WRITE ? 2u : 0) | (user_mode ? 4u : 0) |
			      (k == FETCH && (nxe || smep) ? 16u : 0);
		struct mmu_walk w;
		enum mmu_walk_result r;

		cpu.cpl = cpl3 ? 3 : 0;
		cpu.cr0 = wp ? cpu.cr0 : cpu.cr0 & ~X86_CR0_WP;
		cpu.efer = nxe ? cpu.efer : cpu.efer & ~X86_EFER_NXE;
		cpu.cr4 |= (smep ? X86_CR4_SMEP : 0) |
			   (smap ? X86_CR4_SMAP : 0);
		cpu.rflags |= ac ? X86_RFLAGS_AC : 0;
		set_path(e, pde, pte);
		r = walk(e, &cpu, GVA + 0x123, access, &w);
		if (ok) {
			if (r != MMU_WALK_OK)
				fail_msg(
					"combo %u (pde %llx pte %llx kind %d "
					"f %x): walker faults 0x%x, SDM allows",
					combo, (unsigned long long)pde,
					(unsigned long long)pte, k, f,
					w.error_code);
			assert_int_equal(w.gpa, (DATA << 12) | 0x123);
			assert_true(gpte_get(&e->m0, 0, PD, 2) & G_A);
			assert_true(gpte_get(&e->m0, 0, PT, 1) & G_A);
			assert_int_equal(!!(gpte_get(&e->m0, 0, PT, 1) & G_D),
					 k == WRITE);
		} else {
			if (r != MMU_WALK_FAULT)
				fail_msg("combo %u (pde %llx pte %llx kind %d "
					 "f %x): walker allows, SDM faults",
					 combo, (unsigned long long)pde,
					 (unsigned long long)pte, k, f);
			ec |= 1u | (rsvd ? 8u : 0);
			if (w.error_code != ec)
				fail_msg("combo %u: error code 0x%x, SDM 0x%x",
					 combo, w.error_code, ec);
			/* A faulting walk sets no A/D bit. */
			assert_false(gpte_get(&e->m0, 0, PT, 1) & (G_A | G_D));
			assert_false(gpte_get(&e->m0, 0, PD, 2) & G_A);
		}
		checked++;
	}
	assert_int_equal(checked, 64 * 3 * 128);
	env_free(e);
}

static void test_walk_not_present_each_level_faults_with_p_clear(void **state)
{
	struct mmu_env *e = env_new();
	int level;

	(void)state;
	for (level = 4; level >= 1; level--) {
		struct mmu_cpu_state cpu = boot_cpu(PML4);

		cpu.cpl = 3;
		set_path(e, G_W | G_U, G_W | G_U);
		atomic_fetch_and(path_entry(e, level), ~G_P);
		assert_int_equal(walk_fault(e, &cpu, GVA, MMU_ACCESS_WRITE),
				 PFERR_WRITE | PFERR_USER);
		assert_int_equal(walk_fault(e, &cpu, GVA, MMU_ACCESS_FETCH),
				 PFERR_USER | PFERR_FETCH);
	}
	env_free(e);
}

static void test_walk_reserved_bits_fault_with_rsvd(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_cpu_state cpu = boot_cpu(PML4);
	struct mmu_walk w;
	int level, bit;

	(void)state;
	/* Bits 46..51 (MAXPHYADDR 46) are reserved at every level. */
	for (level = 4; level >= 1; level--) {
		for (bit = 46; bit <= 51; bit++) {
			set_path(e, G_W, G_W);
			atomic_fetch_or(path_entry(e, level), 1ULL << bit);
			assert_int_equal(walk_fault(e, &cpu, GVA,
						    MMU_ACCESS_READ),
					 PFERR_PRESENT | PFERR_RSVD);
		}
	}
	/* Bit 45 is an address bit, not reserved. */
	set_path(e, G_W, G_W);
	gpte_set(&e->m0, 0, PT, 1, (DATA << 12) | (1ULL << 45) | G_P);
	assert_int_equal(walk(e, &cpu, GVA, MMU_ACCESS_READ, &w), MMU_WALK_OK);
	assert_int_equal(w.gpa, (1ULL << 45) | (DATA << 12));
	/* PS in a PML4E is reserved. */
	set_path(e, G_W, G_W);
	gpte_set(&e->m0, 0, PML4, 0, (PDPT << 12) | G_P | G_W | G_PS);
	assert_int_equal(walk_fault(e, &cpu, GVA, MMU_ACCESS_WRITE),
			 PFERR_PRESENT | PFERR_RSVD | PFERR_WRITE);
	/* 1 GiB page: bits 13..29 reserved; 2 MiB page: bits 13..20. */
	for (bit = 13; bit <= 29; bit++) {
		set_path(e, G_W, G_W);
		gpte_set(&e->m0, 0, PDPT, 0, G_P | G_W | G_PS | (1ULL << bit));
		assert_int_equal(walk_fault(e, &cpu, GVA, MMU_ACCESS_READ),
				 PFERR_PRESENT | PFERR_RSVD);
	}
	for (bit = 13; bit <= 20; bit++) {
		set_path(e, G_W, G_W);
		gpte_set(&e->m0, 0, PD, 2, G_P | G_W | G_PS | (1ULL << bit));
		assert_int_equal(walk_fault(e, &cpu, GVA, MMU_ACCESS_READ),
				 PFERR_PRESENT | PFERR_RSVD);
	}
	/* Bit 12 of a large-page entry is PAT, not reserved. */
	set_path(e, G_W, G_W);
	gpte_set(&e->m0, 0, PD, 2, (1ULL << 21) | G_P | G_PS | (1ULL << 12));
	assert_int_equal(walk(e, &cpu, GVA, MMU_ACCESS_READ, &w), MMU_WALK_OK);
	env_free(e);
}

static void test_walk_large_pages_translate_and_set_ad(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_cpu_state cpu = boot_cpu(PML4);
	struct mmu_walk w;
	gva_t gva = GVA + 0x345;

	(void)state;
	set_path(e, G_W, G_W);
	gpte_set(&e->m0, 0, PD, 2, (7ULL << 21) | G_P | G_W | G_PS);
	assert_int_equal(walk(e, &cpu, gva, MMU_ACCESS_WRITE, &w), MMU_WALK_OK);
	assert_int_equal(w.level, 2);
	assert_int_equal(w.gpa, (7ULL << 21) | (gva & ((1 << 21) - 1)));
	assert_int_equal(gpte_get(&e->m0, 0, PD, 2) & (G_A | G_D), G_A | G_D);

	gpte_set(&e->m0, 0, PDPT, 0, (3ULL << 30) | G_P | G_PS);
	assert_int_equal(walk(e, &cpu, gva, MMU_ACCESS_READ, &w), MMU_WALK_OK);
	assert_int_equal(w.level, 3);
	assert_int_equal(w.gpa, (3ULL << 30) | gva);
	assert_int_equal(gpte_get(&e->m0, 0, PDPT, 0) & (G_A | G_D), G_A);
	assert_int_equal(walk_fault(e, &cpu, gva, MMU_ACCESS_WRITE),
			 PFERR_PRESENT | PFERR_WRITE);
	env_free(e);
}

static void test_walk_table_without_memslot_faults_rsvd(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_cpu_state cpu = boot_cpu(PML4);

	(void)state;
	set_path(e, G_W, G_W);
	/* The PT lives at a gfn no memslot covers: it reads as all ones. */
	gpte_set(&e->m0, 0, PD, 2, (0x1000ULL << 12) | G_P | G_W);
	assert_int_equal(walk_fault(e, &cpu, GVA, MMU_ACCESS_READ),
			 PFERR_PRESENT | PFERR_RSVD);
	/* CR3 outside memory. */
	cpu.cr3 = 0x2000ULL << 12;
	assert_int_equal(walk_fault(e, &cpu, GVA, MMU_ACCESS_READ),
			 PFERR_PRESENT | PFERR_RSVD);
	env_free(e);
}

static void test_walk_ad_update_is_dirty_logged(void **state)
{
	struct mmu_env *e = env_new_flags(MEMSLOT_LOG_DIRTY, 0);
	struct mmu_cpu_state cpu = boot_cpu(PML4);
	struct mmu_walk w;
	uint64_t bits[1];
	char err[128];

	(void)state;
	set_path(e, G_W, G_W);
	assert_int_equal(walk(e, &cpu, GVA, MMU_ACCESS_WRITE, &w), MMU_WALK_OK);
	assert_int_equal(
		memslot_dirty_log_get(e->mmu, 0, bits, 1, err, sizeof(err)), 0);
	/* Every table whose A/D bit changed, and nothing else. */
	assert_int_equal(bits[0], (1ULL << PML4) | (1ULL << PDPT) |
					  (1ULL << PD) | (1ULL << PT));
	/* Already set: a second walk writes nothing. */
	assert_int_equal(walk(e, &cpu, GVA, MMU_ACCESS_WRITE, &w), MMU_WALK_OK);
	assert_int_equal(
		memslot_dirty_log_get(e->mmu, 0, bits, 1, err, sizeof(err)), 0);
	assert_int_equal(bits[0], 0);
	env_free(e);
}

static void test_walk_readonly_tables_keep_ad_clear(void **state)
{
	struct mmu_env *e = env_new_flags(MEMSLOT_READONLY, 0);
	struct mmu_cpu_state cpu = boot_cpu(PML4);
	struct mmu_walk w;

	(void)state;
	set_path(e, G_W, G_W);
	assert_int_equal(walk(e, &cpu, GVA, MMU_ACCESS_WRITE, &w), MMU_WALK_OK);
	assert_false(gpte_get(&e->m0, 0, PT, 1) & (G_A | G_D));
	env_free(e);
}

/*
 * A write walk sets A in every entry it uses and D only in the one that
 * maps the page (SDM vol. 3, 4.8: D exists only in entries that map a
 * page; bit 6 of an entry that references a table is ignored, and the
 * processor leaves it as it is). Checked for a 4 KiB and a 2 MiB leaf.
 */
static void test_walk_write_sets_d_on_leaf_only(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_cpu_state cpu = boot_cpu(PML4);
	struct mmu_walk w;

	(void)state;
	set_path(e, G_W, G_W);
	assert_int_equal(walk(e, &cpu, GVA, MMU_ACCESS_WRITE, &w), MMU_WALK_OK);
	assert_int_equal(w.level, 1);
	assert_int_equal(gpte_get(&e->m0, 0, PML4, 0) & (G_A | G_D), G_A);
	assert_int_equal(gpte_get(&e->m0, 0, PDPT, 0) & (G_A | G_D), G_A);
	assert_int_equal(gpte_get(&e->m0, 0, PD, 2) & (G_A | G_D), G_A);
	assert_int_equal(gpte_get(&e->m0, 0, PT, 1) & (G_A | G_D), G_A | G_D);

	set_path(e, G_W, G_W);
	gpte_set(&e->m0, 0, PD, 2, (7ULL << 21) | G_P | G_W | G_PS);
	assert_int_equal(walk(e, &cpu, GVA, MMU_ACCESS_WRITE, &w), MMU_WALK_OK);
	assert_int_equal(w.level, 2);
	assert_int_equal(gpte_get(&e->m0, 0, PML4, 0) & (G_A | G_D), G_A);
	assert_int_equal(gpte_get(&e->m0, 0, PDPT, 0) & (G_A | G_D), G_A);
	assert_int_equal(gpte_get(&e->m0, 0, PD, 2) & (G_A | G_D), G_A | G_D);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_walk_permission_matrix_matches_sdm_model),
		cmocka_unit_test(
			test_walk_not_present_each_level_faults_with_p_clear),
		cmocka_unit_test(test_walk_reserved_bits_fault_with_rsvd),
		cmocka_unit_test(test_walk_large_pages_translate_and_set_ad),
		cmocka_unit_test(test_walk_table_without_memslot_faults_rsvd),
		cmocka_unit_test(test_walk_ad_update_is_dirty_logged),
		cmocka_unit_test(test_walk_readonly_tables_keep_ad_clear),
		cmocka_unit_test(test_walk_write_sets_d_on_leaf_only),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
