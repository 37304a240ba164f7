/*
 * Shadow pages and the fault path, single-threaded: first touch, A/D and
 * clean pages, guest #PF, no-slot MMIO, READONLY slots, write-tracked
 * tables and emulated writes, guest tables changed behind the MMU's back
 * (docs/MMU.md, "Reusing what is already linked"), guest large pages, rmap chains, write protection,
 * zapping, obsolete roots, dirty logging and statistics. Every test ends
 * with a clean audit.
 */
#include <pthread.h>
#include <sched.h>

#include "mmu_env.h"

static void test_fault_first_touch_installs_spte(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;

	(void)state;
	env_map(e, PML4, 0x400000, BASE1 + 3, G_W | G_D);
	assert_shadow_misses(e, 0x400123, MMU_ACCESS_READ);
	assert_int_equal(env_fault(e, 0x400123, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x400123, MMU_ACCESS_WRITE,
			   env_hva(e, BASE1 + 3) + 0x123);
	/* Supervisor page: a user access still misses. */
	e->cpu.cpl = 3;
	assert_shadow_misses(e, 0x400123, MMU_ACCESS_READ);
	e->cpu.cpl = 0;
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.faults_fixed, 1);
	assert_int_equal(st.sptes, 1);
	assert_int_equal(st.pages, 4);
	env_audit(e);
	env_free(e);
}

static void test_fault_clean_page_maps_readonly_until_write(void **state)
{
	struct mmu_env *e = env_new();
	hva_t hva;

	(void)state;
	env_map(e, PML4, 0x400000, BASE1, G_W);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_xlate(e, 0x400000, MMU_ACCESS_READ, &hva), 0);
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_WRITE);
	env_audit(e);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_xlate(e, 0x400000, MMU_ACCESS_WRITE, &hva), 0);
	env_audit(e);
	env_free(e);
}

static void test_fault_not_present_gives_guest_pf(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;

	(void)state;
	env_map(e, PML4, 0x400000, BASE1, G_W);
	e->cpu.cpl = 3;
	assert_int_equal(env_fault_info(e, 0x401000, MMU_ACCESS_WRITE, &info),
			 MMU_FAULT_GUEST_PF);
	assert_int_equal(info.error_code, PFERR_WRITE | PFERR_USER);
	assert_int_equal(env_fault_info(e, 0x400000, MMU_ACCESS_READ, &info),
			 MMU_FAULT_GUEST_PF);
	assert_int_equal(info.error_code, PFERR_USER | PFERR_PRESENT);
	env_free(e);
}

static void test_fault_no_memslot_is_mmio(void **state)
{
	struct mmu_env *e = env_new_flags(0, MEMSLOT_READONLY);
	struct mmu_fault_info info;
	struct mmu_stats st;
	hva_t hva;

	(void)state;
	env_map(e, PML4, 0x400000, 0x5000, G_W | G_D);
	env_map(e, PML4, 0x401000, BASE1 + 1, G_W | G_D);
	assert_int_equal(env_fault_info(e, 0x400010, MMU_ACCESS_READ, &info),
			 MMU_FAULT_MMIO);
	assert_int_equal(info.gpa, 0x5000010);
	/* READONLY slot: reads map (not host-writable), writes are MMIO. */
	assert_int_equal(env_fault(e, 0x401000, MMU_ACCESS_WRITE),
			 MMU_FAULT_MMIO);
	assert_int_equal(env_fault(e, 0x401000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_xlate(e, 0x401000, MMU_ACCESS_READ, &hva), 0);
	assert_shadow_misses(e, 0x401000, MMU_ACCESS_WRITE);
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.faults_mmio, 2);
	assert_int_equal(st.sptes, 1);
	env_free(e);
}

static void test_fault_write_to_shadowed_table_emulates(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;
	gfn_t pt;
	hva_t hva;

	(void)state;
	env_map(e, PML4, 0x400000, BASE1, G_W | G_D);
	env_map(e, PML4, 0x401000, BASE1 + 1, G_W | G_D);
	pt = e->next_table - 1;
	/* A window onto the page table that maps 0x400000. */
	env_map(e, PML4, 0x402000, pt, G_W | G_D);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_xlate(e, 0x400000, MMU_ACCESS_WRITE, &hva), 0);
	/* Reads of a shadowed table map; writes never do. */
	assert_int_equal(env_fault(e, 0x402000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_misses(e, 0x402000, MMU_ACCESS_WRITE);
	assert_int_equal(env_fault_info(e, 0x402000, MMU_ACCESS_WRITE, &info),
			 MMU_FAULT_EMULATE);
	assert_int_equal(info.gpa, pt << PAGE_SHIFT);
	env_audit(e);
	/* The emulated write retargets PTE 0: its spte must go. */
	assert_int_equal(mmu_emulate_write(e->v, pt << PAGE_SHIFT,
					   ((BASE1 + 5) << PAGE_SHIFT) | G_P |
						   G_W | G_D,
					   8),
			 0);
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_READ);
	env_audit(e);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x400000, MMU_ACCESS_READ, env_hva(e, BASE1 + 5));
	assert_int_equal(mmu_emulate_write(e->v, pt << PAGE_SHIFT, 0, 3),
			 -EINVAL);
	env_audit(e);
	env_free(e);
}

static void test_track_write_after_inplace_store_zaps_spte(void **state)
{
	struct mmu_env *e = env_new();
	gfn_t pt;
	hva_t hva;

	(void)state;
	env_map(e, PML4, 0x400000, BASE1, G_W | G_D);
	pt = e->next_table - 1;
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	/* The CPU stores the new PTE itself, then reports it. */
	gpte_set(&e->m0, 0, pt, 0,
		 ((BASE1 + 3) << PAGE_SHIFT) | G_P | G_W | G_D);
	assert_int_equal(env_xlate(e, 0x400000, MMU_ACCESS_READ, &hva), 0);
	assert_int_equal(mmu_track_write(e->v, pt << PAGE_SHIFT, 8), 0);
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_READ);
	env_audit(e);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x400000, MMU_ACCESS_READ, env_hva(e, BASE1 + 3));
	assert_int_equal(mmu_track_write(e->v, pt << PAGE_SHIFT, 16), -EINVAL);
	env_free(e);
}

static void test_fault_changed_gpte_never_reuses_stale_child(void **state)
{
	struct mmu_env *e = env_new();
	gfn_t pt_old, pt_new;

	(void)state;
	env_map(e, PML4, 0x400000, BASE1, G_W | G_D);
	pt_old = e->next_table - 1;
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	/*
	 * The host rewrites the PDE behind the MMU's back (no trap), to a
	 * new table mapping the 2 MiB region elsewhere.
	 */
	pt_new = e->next_table++;
	memset((char *)e->m0.base + pt_new * PAGE_SIZE, 0, PAGE_SIZE);
	gpte_set(&e->m0, 0, pt_new, 1,
		 ((BASE1 + 7) << PAGE_SHIFT) | G_P | G_W | G_D);
	{
		/* Find the PD: PML4[0] -> PDPT[0] -> PD. */
		gfn_t pdpt = (gpte_get(&e->m0, 0, PML4, 0) >> 12) & 0xffff;
		gfn_t pd = (gpte_get(&e->m0, 0, pdpt, 0) >> 12) & 0xffff;

		assert_int_equal((gpte_get(&e->m0, 0, pd, 2) >> 12) & 0xffff,
				 pt_old);
		gpte_set(&e->m0, 0, pd, 2,
			 (pt_new << PAGE_SHIFT) | G_P | G_W | G_U);
		/* A fault elsewhere in the region walks the new table and
		 * finds the old child linked: it must not reuse it. */
		assert_int_equal(env_fault(e, 0x401000, MMU_ACCESS_WRITE),
				 MMU_FAULT_FIXED);
		assert_shadow_maps(e, 0x401000, MMU_ACCESS_WRITE,
				   env_hva(e, BASE1 + 7));
		/* The old translation is gone with the old link. */
		assert_shadow_misses(e, 0x400000, MMU_ACCESS_READ);
		env_audit(e);
		/* Now a large page (gpa 0) where a table was: the linked
		 * child has the right gfn's neighbour and the wrong role. */
		gpte_set(&e->m0, 0, pd, 2, G_P | G_W | G_D | G_PS);
	}
	assert_int_equal(env_fault(e, 0x400000 + 9 * PAGE_SIZE,
				   MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x400000 + 9 * PAGE_SIZE, MMU_ACCESS_READ,
			   env_hva(e, 9));
	assert_shadow_misses(e, 0x401000, MMU_ACCESS_READ);
	env_audit(e);
	env_free(e);
}

static void test_fault_present_leaf_dropped_before_overwrite(void **state)
{
	struct mmu_env *e = env_new();
	gfn_t pt;

	(void)state;
	env_map(e, PML4, 0x400000, BASE1 + 1, G_W);
	pt = e->next_table - 1;
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	/* The host retargets the PTE (no trap); the next write fault finds
	 * the old read-only spte present and must drop its rmap entry. */
	gpte_set(&e->m0, 0, pt, 0, ((BASE1 + 2) << PAGE_SHIFT) | G_P | G_W);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x400000, MMU_ACCESS_WRITE,
			   env_hva(e, BASE1 + 2));
	env_audit(e);
	env_free(e);
}

static void test_fault_guest_large_page_split_by_direct_pages(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;
	gfn_t pdpt, pd;

	(void)state;
	env_map(e, PML4, 0x400000, BASE1, G_W | G_D);
	pdpt = (gpte_get(&e->m0, 0, PML4, 0) >> 12) & 0xffff;
	pd = (gpte_get(&e->m0, 0, pdpt, 0) >> 12) & 0xffff;
	/* 2 MiB page at gpa 0 (slot 0 covers its first 64 pages). */
	gpte_set(&e->m0, 0, pd, 3, G_P | G_W | G_PS);
	assert_int_equal(env_fault(e, 0x600000 + 10 * PAGE_SIZE,
				   MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x600000 + 10 * PAGE_SIZE, MMU_ACCESS_READ,
			   env_hva(e, 10));
	/* Clean: read-only until a write sets D in the gpte. */
	assert_shadow_misses(e, 0x600000 + 10 * PAGE_SIZE, MMU_ACCESS_WRITE);
	env_audit(e);
	assert_int_equal(env_fault(e, 0x600000 + 11 * PAGE_SIZE,
				   MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_true(gpte_get(&e->m0, 0, pd, 3) & G_D);
	assert_shadow_maps(e, 0x600000 + 11 * PAGE_SIZE, MMU_ACCESS_WRITE,
			   env_hva(e, 11));
	/* Beyond the slot: MMIO. */
	assert_int_equal(env_fault(e, 0x600000 + 100 * PAGE_SIZE,
				   MMU_ACCESS_READ),
			 MMU_FAULT_MMIO);
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.sptes, 2);
	env_audit(e);
	/* 1 GiB page at gpa 0. */
	gpte_set(&e->m0, 0, pdpt, 1, G_P | G_W | G_PS | G_D);
	assert_int_equal(env_fault(e, 0x40000000 + 12 * PAGE_SIZE,
				   MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x40000000 + 12 * PAGE_SIZE, MMU_ACCESS_WRITE,
			   env_hva(e, 12));
	env_audit(e);
	env_free(e);
}

static void test_rmap_chain_write_protect_and_zap_every_entry(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;
	unsigned i, n = 40;
	hva_t hva;

	(void)state;
	/* 40 aliases of one gfn: an rmap chain of three descriptors. */
	for (i = 0; i < n; i++)
		env_map(e, PML4, 0x800000 + i * PAGE_SIZE, BASE1 + 2,
			G_W | G_D);
	for (i = 0; i < n; i++)
		assert_int_equal(env_fault(e, 0x800000 + i * PAGE_SIZE,
					   MMU_ACCESS_WRITE),
				 MMU_FAULT_FIXED);
	env_audit(e);
	e->rec.flushes = 0;
	assert_true(mmu_write_protect_gfn(e->mmu, BASE1 + 2));
	assert_int_equal(e->rec.flushes, 1);
	for (i = 0; i < n; i++) {
		assert_shadow_misses(e, 0x800000 + i * PAGE_SIZE,
				     MMU_ACCESS_WRITE);
		assert_int_equal(env_xlate(e, 0x800000 + i * PAGE_SIZE,
					   MMU_ACCESS_READ, &hva),
				 0);
	}
	assert_false(mmu_write_protect_gfn(e->mmu, BASE1 + 2));
	env_audit(e);
	mmu_zap_gfn_range(e->mmu, BASE1 + 2, BASE1 + 3);
	for (i = 0; i < n; i++)
		assert_shadow_misses(e, 0x800000 + i * PAGE_SIZE,
				     MMU_ACCESS_READ);
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.sptes, 0);
	assert_int_equal(st.zapped_sptes, n);
	env_audit(e);
	env_free(e);
}

static void test_zap_all_obsoletes_root_and_fault_retries(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;
	hva_t hva;

	(void)state;
	env_map(e, PML4, 0x400000, BASE1, G_W | G_D);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	e->rec.flushes = e->rec.free_roots = 0;
	mmu_zap_all(e->mmu);
	/* Three freed after a flush; the pinned root waits for its vCPU. */
	assert_int_equal(e->rec.flushes, 1);
	assert_int_equal(e->rec.free_roots, 1);
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.pages, 1);
	assert_int_equal(st.sptes, 0);
	assert_int_equal(mmu_shadow_translate(mmu_vcpu_root(e->v), 0x400000,
					      MMU_ACCESS_READ, &e->cpu, &hva),
			 -EFAULT);
	{
		struct mmu_fault_info info;

		assert_int_equal(mmu_page_fault(e->v, &e->cpu, 0x400000,
						MMU_ACCESS_READ, &info),
				 MMU_FAULT_RETRY);
	}
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.pages, 0);
	mmu_vcpu_free_obsolete_roots(e->v);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_xlate(e, 0x400000, MMU_ACCESS_WRITE, &hva), 0);
	env_audit(e);
	env_free(e);
}

static void test_memslot_delete_zaps_sptes_then_mmio(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;
	char err[128];
	unsigned i;
	hva_t hva;

	(void)state;
	for (i = 0; i < NPAGES1; i++) {
		env_map(e, PML4, 0x400000 + i * PAGE_SIZE, BASE1 + i,
			G_W | G_D);
		assert_int_equal(env_fault(e, 0x400000 + i * PAGE_SIZE,
					   MMU_ACCESS_WRITE),
				 MMU_FAULT_FIXED);
	}
	env_map(e, PML4, 0x500000, 7, G_W | G_D);
	assert_int_equal(env_fault(e, 0x500000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	e->rec.flushes = 0;
	assert_int_equal(memslot_delete(e->mmu, 1, err, sizeof(err)), 0);
	assert_true(e->rec.flushes >= 1);
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.sptes, 1);
	for (i = 0; i < NPAGES1; i++)
		assert_shadow_misses(e, 0x400000 + i * PAGE_SIZE,
				     MMU_ACCESS_READ);
	assert_int_equal(env_xlate(e, 0x500000, MMU_ACCESS_WRITE, &hva), 0);
	env_audit(e);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_MMIO);
	/* Moved back in at another gfn: the old gva stays MMIO. */
	assert_int_equal(memslot_add(e->mmu, 1, 0x200, NPAGES1,
				     tmem_hva(&e->m1), 0, err, sizeof(err)),
			 0);
	assert_int_equal(memslot_move(e->mmu, 1, BASE1, err, sizeof(err)), 0);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	env_audit(e);
	env_free(e);
}

static void test_memslot_delete_of_page_tables_zaps_their_pages(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;
	struct mmu_stats st;
	gfn_t next = BASE1 + 1;
	char err[128];

	(void)state;
	/* This guest's page tables live in slot 1, its data in slot 0. */
	memset(e->m1.base, 0, PAGE_SIZE);
	map_4k(&e->m1, BASE1, BASE1, &next, 0x400000, 9, G_W | G_D);
	e->cpu.cr3 = (gpa_t)BASE1 << PAGE_SHIFT;
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.pages, 4);
	e->rec.free_roots = 0;
	assert_int_equal(memslot_delete(e->mmu, 1, err, sizeof(err)), 0);
	/* Every page shadowing a table of the slot is gone; the root is
	 * only unpinned by its vCPU, which was told to. */
	assert_int_equal(e->rec.free_roots, 1);
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.pages, 1);
	assert_int_equal(st.sptes, 0);
	env_audit(e);
	mmu_vcpu_free_obsolete_roots(e->v);
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.pages, 0);
	/* CR3 now points at no memory: its tables read as all ones. */
	assert_int_equal(mmu_vcpu_load(e->v, &e->cpu), 0);
	assert_null(mmu_vcpu_root(e->v));
	assert_int_equal(mmu_page_fault(e->v, &e->cpu, 0x400000,
					MMU_ACCESS_READ, &info),
			 MMU_FAULT_GUEST_PF);
	assert_int_equal(info.error_code, PFERR_PRESENT | PFERR_RSVD);
	env_free(e);
}

/*
 * A vCPU interface that, when the MMU flushes during a delete, looks at
 * the world from inside the zap phase: the slot must be published
 * INVALID, and the walker and the emulator must ask for a retry.
 */
struct probe {
	struct mmu_env *e;
	unsigned flushes, probed;
	enum mmu_walk_result walk;
	int emulate;
	bool invalid;
};

static void probe_all(void *opaque, enum mmu_request req, bool wait)
{
	struct probe *p = opaque;
	const struct memslot *s;
	struct mmu_walk w;

	(void)wait;
	if (req != MMU_REQ_TLB_FLUSH || p->probed++)
		return;
	mmu_rcu_read_lock();
	s = memslot_lookup(p->e->mmu, BASE1, NULL);
	p->invalid = s && (s->flags & MEMSLOT_INVALID);
	p->walk = mmu_walk_guest(p->e->v, &p->e->cpu, 0x400000, MMU_ACCESS_READ,
				 &w);
	mmu_rcu_read_unlock();
	p->emulate =
		mmu_emulate_write(p->e->v, (gpa_t)BASE1 << PAGE_SHIFT, 0, 8);
}

static void probe_one(void *opaque, unsigned vcpu, enum mmu_request req,
		      bool wait)
{
	(void)vcpu;
	probe_all(opaque, req, wait);
}

static enum mmu_vcpu_mode probe_mode(void *opaque, unsigned vcpu)
{
	(void)opaque;
	(void)vcpu;
	return OUTSIDE_GUEST_MODE;
}

static void test_memslot_delete_zap_phase_sees_invalid_slot_retry(void **state)
{
	static const struct mmu_vcpu_ops ops = {
		.make_request = probe_one,
		.make_all_request = probe_all,
		.mode = probe_mode,
	};
	struct mmu_env *e = env_new();
	struct probe p = { .e = e, .walk = MMU_WALK_OK };
	struct mmu *mmu = mmu_create(&ops, &p);
	struct tmem m1 = tmem_alloc(NPAGES1);
	struct mmu_vcpu *v = mmu_vcpu_create(mmu, 0);
	gfn_t next = BASE1 + 1;
	char err[128];

	(void)state;
	/* A second VM whose page tables live in the slot it deletes. */
	assert_int_equal(memslot_add(mmu, 1, BASE1, NPAGES1, tmem_hva(&m1), 0,
				     err, sizeof(err)),
			 0);
	memset(m1.base, 0, PAGE_SIZE);
	map_4k(&m1, BASE1, BASE1, &next, 0x400000, BASE1 + 8, G_W | G_D);
	e->cpu.cr3 = (gpa_t)BASE1 << PAGE_SHIFT;
	mmu_vcpu_destroy(e->v);
	mmu_destroy(e->mmu);
	e->mmu = mmu;
	e->v = v;
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(memslot_delete(mmu, 1, err, sizeof(err)), 0);
	assert_int_equal(p.probed, 1);
	assert_true(p.invalid);
	assert_int_equal(p.walk, MMU_WALK_RETRY);
	assert_int_equal(p.emulate, -EAGAIN);
	mmu_vcpu_free_obsolete_roots(v);
	env_audit(e);
	/* env_free tears down e->mmu and e->v, i.e. this VM. */
	tmem_free(&m1);
	env_free(e);
}

/*
 * A fault on 0x400000 (-> BASE1) in another thread, caught between its
 * walk and mmu_lock: it has snapshotted the invalidation sequence and
 * walked the guest tables (its walk set the PTE's A bit) but waits for
 * mmu_lock, which this thread holds from racer_start to racer_finish.
 */
struct racer {
	struct mmu_env *e;
	pthread_t thread;
	gfn_t pt; /* the PT the walk went through */
	int ret;
};

static void *racer_fault(void *arg)
{
	struct racer *r = arg;
	struct mmu_fault_info info;

	mmu_rcu_register_thread();
	r->ret = mmu_page_fault(r->e->v, &r->e->cpu, 0x400000, MMU_ACCESS_READ,
				&info);
	mmu_rcu_unregister_thread();
	return NULL;
}

static void racer_start(struct racer *r, struct mmu_env *e)
{
	r->e = e;
	r->ret = -1;
	env_map(e, PML4, 0x400000, BASE1, G_W | G_D);
	r->pt = e->next_table - 1;
	assert_int_equal(mmu_vcpu_load(e->v, &e->cpu), 0);
	mmu_lock_acquire(e->mmu);
	assert_int_equal(pthread_create(&r->thread, NULL, racer_fault, r), 0);
	while (!(gpte_get(&e->m0, 0, r->pt, 0) & G_A))
		sched_yield();
}

/* Releases mmu_lock; what the fault returned once it took it. */
static int racer_finish(struct racer *r)
{
	mmu_lock_release(r->e->mmu);
	pthread_join(r->thread, NULL);
	return r->ret;
}

/*
 * The delete-versus-fault window, made deterministic: a fault has snapshotted the
 * invalidation sequence and walked the guest tables (its walk set the
 * PTE's A bit) but waits for mmu_lock, which we hold; an invalidation
 * happens meanwhile. The fault must retry, not install.
 */
static void test_fault_invalidation_after_snapshot_retries(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_stats st;
	struct racer r;
	hva_t hva;

	(void)state;
	racer_start(&r, e);
	/* What a memslot update or a range zap does to the sequence. */
	atomic_fetch_add_explicit(&e->mmu->invalidate_seq, 1,
				  memory_order_release);
	assert_int_equal(racer_finish(&r), MMU_FAULT_RETRY);
	mmu_stats_get(e->mmu, &st);
	assert_int_equal(st.sptes, 0);
	assert_int_equal(st.retries, 1);
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_READ);
	/* The retry then succeeds. */
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_int_equal(env_xlate(e, 0x400000, MMU_ACCESS_READ, &hva), 0);
	env_free(e);
}

/*
 * The same window, but the guest's PTE changes (a store the MMU did not
 * trap: the table was not shadowed yet) between the walk and the lock:
 * once the fault has write-protected the table it must see the change
 * and retry, never install the translation it walked.
 */
static void test_fault_gpte_changed_after_walk_retries(void **state)
{
	struct mmu_env *e = env_new();
	struct racer r;

	(void)state;
	racer_start(&r, e);
	gpte_set(&e->m0, 0, r.pt, 0,
		 ((BASE1 + 6) << PAGE_SHIFT) | G_P | G_W | G_D | G_A);
	assert_int_equal(racer_finish(&r), MMU_FAULT_RETRY);
	/* Nothing maps the old page; the retry maps the new one. */
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_READ);
	env_audit(e);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x400000, MMU_ACCESS_READ, env_hva(e, BASE1 + 6));
	env_free(e);
}

static void test_dirty_log_harvest_reprotects_and_relogs(void **state)
{
	struct mmu_env *e = env_new();
	uint64_t bits;
	char err[128];
	hva_t hva;

	(void)state;
	env_map(e, PML4, 0x400000, BASE1 + 4, G_W | G_D);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(memslot_set_flags(e->mmu, 1, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	/* Enabling logging write-protected the writable spte. */
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_WRITE);
	assert_int_equal(env_xlate(e, 0x400000, MMU_ACCESS_READ, &hva), 0);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	env_audit(e);
	e->rec.flushes = 0;
	assert_int_equal(memslot_dirty_log_get(e->mmu, 1, &bits, 1, err,
					       sizeof(err)),
			 0);
	assert_int_equal(bits, 1ULL << 4);
	assert_int_equal(e->rec.flushes, 1);
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_WRITE);
	assert_int_equal(memslot_dirty_log_get(e->mmu, 1, &bits, 1, err,
					       sizeof(err)),
			 0);
	assert_int_equal(bits, 0);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(memslot_dirty_log_get(e->mmu, 1, &bits, 1, err,
					       sizeof(err)),
			 0);
	assert_int_equal(bits, 1ULL << 4);
	env_free(e);
}

static void test_fault_wp0_supervisor_write_to_readonly_emulates(void **state)
{
	struct mmu_env *e = env_new();
	struct mmu_fault_info info;

	(void)state;
	env_map(e, PML4, 0x400000, BASE1, G_D);
	e->cpu.cr0 &= ~X86_CR0_WP;
	assert_int_equal(env_fault_info(e, 0x400008, MMU_ACCESS_WRITE, &info),
			 MMU_FAULT_EMULATE);
	assert_int_equal(info.gpa, (BASE1 << 12) | 8);
	assert_int_equal(mmu_emulate_write(e->v, info.gpa, 0xabcd, 2), 0);
	assert_int_equal(*(uint16_t *)(env_hva(e, BASE1) + 8), 0xabcd);
	assert_int_equal(env_fault(e, 0x400008, MMU_ACCESS_READ),
			 MMU_FAULT_FIXED);
	assert_shadow_misses(e, 0x400008, MMU_ACCESS_WRITE);
	env_free(e);
}

/*
 * Dirty logging starts while a gfn other than the slot's last one is
 * mapped writable: its write protection must reach every vCPU (a remote
 * TLB flush) before memslot_set_flags returns, or a vCPU keeps writing
 * through its cached translation and the page is never logged. The same
 * for a harvest whose writable gfn is not the last one it reports (the
 * other, BASE1 + 5, is dirty from an emulated store and has no spte).
 */
static void test_dirty_log_flushes_when_any_gfn_was_writable(void **state)
{
	struct mmu_env *e = env_new();
	unsigned flushes;
	uint64_t bits;
	char err[128];

	(void)state;
	env_map(e, PML4, 0x400000, BASE1 + 2, G_W | G_D);
	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	flushes = e->rec.flushes;
	assert_int_equal(memslot_set_flags(e->mmu, 1, MEMSLOT_LOG_DIRTY, err,
					   sizeof(err)),
			 0);
	assert_int_equal(e->rec.flushes - flushes, 1);
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_WRITE);

	assert_int_equal(env_fault(e, 0x400000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_int_equal(mmu_emulate_write(e->v, (BASE1 + 5) << PAGE_SHIFT,
					   0x1234, 8),
			 0);
	flushes = e->rec.flushes;
	assert_int_equal(memslot_dirty_log_get(e->mmu, 1, &bits, 1, err,
					       sizeof(err)),
			 0);
	assert_int_equal(bits, (1ULL << 2) | (1ULL << 5));
	assert_int_equal(e->rec.flushes - flushes, 1);
	assert_shadow_misses(e, 0x400000, MMU_ACCESS_WRITE);
	env_free(e);
}

/*
 * A harvest write-protects the gfn each reported bit stands for, in
 * every word of the bitmap: in a 128-page slot, bit 6 of word 1 is the
 * slot's page 70.
 */
static void test_dirty_log_harvest_reprotects_gfn_in_later_word(void **state)
{
	struct mmu_env *e = env_new();
	struct tmem m2 = tmem_alloc(128);
	uint64_t bits[2];
	unsigned flushes;
	char err[128];
	hva_t hva;

	(void)state;
	assert_int_equal(memslot_add(e->mmu, 2, 0x200, 128, tmem_hva(&m2),
				     MEMSLOT_LOG_DIRTY, err, sizeof(err)),
			 0);
	env_map(e, PML4, 0x600000, 0x200 + 70, G_W | G_D);
	assert_int_equal(env_fault(e, 0x600000, MMU_ACCESS_WRITE),
			 MMU_FAULT_FIXED);
	assert_shadow_maps(e, 0x600008, MMU_ACCESS_WRITE,
			   tmem_hva(&m2) + 70 * PAGE_SIZE + 8);
	flushes = e->rec.flushes;
	assert_int_equal(
		memslot_dirty_log_get(e->mmu, 2, bits, 2, err, sizeof(err)), 0);
	assert_int_equal(bits[0], 0);
	assert_int_equal(bits[1], 1ULL << 6);
	assert_int_equal(e->rec.flushes - flushes, 1);
	assert_shadow_misses(e, 0x600000, MMU_ACCESS_WRITE);
	assert_int_equal(env_xlate(e, 0x600000, MMU_ACCESS_READ, &hva), 0);
	env_audit(e);
	assert_int_equal(memslot_delete(e->mmu, 2, err, sizeof(err)), 0);
	env_free(e);
	tmem_free(&m2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_first_touch_installs_spte),
		cmocka_unit_test(
			test_fault_clean_page_maps_readonly_until_write),
		cmocka_unit_test(test_fault_not_present_gives_guest_pf),
		cmocka_unit_test(test_fault_no_memslot_is_mmio),
		cmocka_unit_test(test_fault_write_to_shadowed_table_emulates),
		cmocka_unit_test(
			test_track_write_after_inplace_store_zaps_spte),
		cmocka_unit_test(
			test_fault_changed_gpte_never_reuses_stale_child),
		cmocka_unit_test(
			test_fault_present_leaf_dropped_before_overwrite),
		cmocka_unit_test(
			test_fault_guest_large_page_split_by_direct_pages),
		cmocka_unit_test(
			test_rmap_chain_write_protect_and_zap_every_entry),
		cmocka_unit_test(test_zap_all_obsoletes_root_and_fault_retries),
		cmocka_unit_test(test_memslot_delete_zaps_sptes_then_mmio),
		cmocka_unit_test(
			test_memslot_delete_of_page_tables_zaps_their_pages),
		cmocka_unit_test(
			test_memslot_delete_zap_phase_sees_invalid_slot_retry),
		cmocka_unit_test(
			test_fault_invalidation_after_snapshot_retries),
		cmocka_unit_test(test_fault_gpte_changed_after_walk_retries),
		cmocka_unit_test(test_dirty_log_harvest_reprotects_and_relogs),
		cmocka_unit_test(
			test_fault_wp0_supervisor_write_to_readonly_emulates),
		cmocka_unit_test(
			test_dirty_log_flushes_when_any_gfn_was_writable),
		cmocka_unit_test(
			test_dirty_log_harvest_reprotects_gfn_in_later_word),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
