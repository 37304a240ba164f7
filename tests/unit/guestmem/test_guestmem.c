/*
 * Hot-added memslots (core/guestmem): every bad request is refused with a
 * message naming the field and changes nothing; a removed slot's host
 * memory is unmapped; dirty logging reports exactly the pages written,
 * clears only when asked, and is refused on a slot that is not logging.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "guestmem.h"
#include "mmu.h"
#include "mmu_rcu.h"

#define GiB (1ULL << 30)
#define MiB (1ULL << 20)

struct fixture {
	struct mmu *mmu;
	struct guestmem *gm;
};

static int setup(void **state)
{
	static const struct guestmem_range reserved[] = {
		{ 0, 256 * MiB, "RAM", -1 },
		{ 3 * GiB, GiB, "the MMIO hole", -1 },
	};
	struct fixture *f = calloc(1, sizeof(*f));

	f->mmu = mmu_create(NULL, NULL);
	f->gm = guestmem_create(f->mmu, reserved, 2);
	assert_non_null(f->gm);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	guestmem_destroy(f->gm);
	mmu_destroy(f->mmu);
	free(f);
	return 0;
}

static bool is_mapped(hva_t hva, size_t len)
{
	unsigned char vec[4];

	/* mincore fails with ENOMEM on any unmapped page of the range. */
	return mincore((void *)(uintptr_t)hva, len < 4 * 4096 ? len : 4 * 4096,
		       vec) == 0;
}

/* The request must fail with errno e, name field, and change nothing. */
static void expect_refused(struct fixture *f, gpa_t gpa, uint64_t size, int e,
			   const char *field)
{
	struct guestmem_slot_info before[GUESTMEM_MAX_SLOTS],
		after[GUESTMEM_MAX_SLOTS];
	unsigned int nb = guestmem_list(f->gm, before, GUESTMEM_MAX_SLOTS);
	uint32_t slot = 12345;
	char err[256] = "";
	int r = guestmem_add(f->gm, gpa, size, false, false, &slot, err,
			     sizeof(err));

	if (r != -e || !strstr(err, field) || slot != 12345)
		fail_msg("add %#llx+%#llx: %d (%s), expected -%d naming %s",
			 (unsigned long long)gpa, (unsigned long long)size, r,
			 err, e, field);
	assert_int_equal(guestmem_list(f->gm, after, GUESTMEM_MAX_SLOTS), nb);
	for (unsigned int i = 0; i < nb; i++) {
		assert_int_equal(before[i].slot, after[i].slot);
		assert_int_equal(before[i].gpa, after[i].gpa);
		assert_int_equal(before[i].size, after[i].size);
		assert_int_equal(before[i].hva, after[i].hva);
		assert_int_equal(before[i].log_dirty, after[i].log_dirty);
	}
	assert_int_equal(memslot_count(f->mmu), nb);
}

static void test_guestmem_bad_requests_refused_unchanged(void **state)
{
	struct fixture *f = *state;
	uint32_t slot;
	char err[256];

	assert_int_equal(guestmem_add(f->gm, 8 * GiB, 2 * MiB, false, false,
				      &slot, err, sizeof(err)),
			 0);
	expect_refused(f, 8 * GiB, 0, EINVAL, "size");
	expect_refused(f, 8 * GiB + 100, 4096, EINVAL, "gpa");
	expect_refused(f, 9 * GiB, 4097, EINVAL, "size");
	expect_refused(f, 9 * GiB, GUESTMEM_MAX_SIZE + 4096, EINVAL, "size");
	expect_refused(f, 1ULL << 46, 4096, EINVAL, "gpa");
	expect_refused(f, (1ULL << 46) - 4096, 8192, EINVAL, "gpa");
	expect_refused(f, 128 * MiB, 4096, EEXIST, "RAM");
	expect_refused(f, 3 * GiB + 4096, 4096, EEXIST, "MMIO hole");
	expect_refused(f, 8 * GiB + MiB, 2 * MiB, EEXIST, "slot");
	expect_refused(f, 8 * GiB - 4096, 8192, EEXIST, "slot");
	assert_int_equal(guestmem_remove(f->gm, slot + 1, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "slot"));
	assert_int_equal(guestmem_remove(f->gm, 0, err, sizeof(err)), -ENOENT);
	assert_int_equal(memslot_count(f->mmu), 1);
}

/* The last page below the guest's 46-bit physical address limit is
 * usable: a slot may end exactly at 2^46. */
static void test_guestmem_slot_ending_at_the_limit_added(void **state)
{
	struct fixture *f = *state;
	struct guestmem_slot_info info;
	uint32_t slot;
	char err[256] = "";

	assert_int_equal(guestmem_add(f->gm, (1ULL << 46) - 2 * MiB, 2 * MiB,
				      false, false, &slot, err, sizeof(err)),
			 0);
	assert_int_equal(guestmem_list(f->gm, &info, 1), 1);
	assert_int_equal(info.gpa + info.size, 1ULL << 46);
	assert_int_equal(memslot_count(f->mmu), 1);
	expect_refused(f, 1ULL << 46, 4096, EINVAL, "gpa");
	assert_int_equal(guestmem_remove(f->gm, slot, err, sizeof(err)), 0);
}

static void test_guestmem_too_many_slots_nospc(void **state)
{
	struct fixture *f = *state;
	uint32_t slot;
	char err[256];

	for (unsigned int i = 0; i < GUESTMEM_MAX_SLOTS; i++)
		assert_int_equal(guestmem_add(f->gm, 8 * GiB + i * 4096ULL,
					      4096, false, false, &slot, err,
					      sizeof(err)),
				 0);
	expect_refused(f, 16 * GiB, 4096, ENOSPC, "slots");
}

static void test_guestmem_remove_unmaps_memory(void **state)
{
	struct fixture *f = *state;
	struct guestmem_slot_info info;
	uint32_t slot;
	char err[256];

	assert_int_equal(guestmem_add(f->gm, 8 * GiB, 4 * MiB, false, true,
				      &slot, err, sizeof(err)),
			 0);
	assert_int_equal(guestmem_list(f->gm, &info, 1), 1);
	assert_int_equal(info.slot, slot);
	assert_int_equal(info.gpa, 8 * GiB);
	assert_true(info.log_dirty);
	assert_true(is_mapped(info.hva, 4 * MiB));
	/* Fresh slots read as zeros. */
	assert_int_equal(*(volatile uint64_t *)(uintptr_t)info.hva, 0);
	assert_int_equal(guestmem_remove(f->gm, slot, err, sizeof(err)), 0);
	assert_false(is_mapped(info.hva, 4 * MiB));
	assert_int_equal(guestmem_list(f->gm, &info, 1), 0);
	assert_int_equal(memslot_count(f->mmu), 0);
}

static void test_guestmem_dirty_log_reports_written_pages(void **state)
{
	struct fixture *f = *state;
	struct mmu_vcpu *v = mmu_vcpu_create(f->mmu, 0);
	uint64_t bitmap[8], n;
	uint32_t slot;
	char err[256];

	assert_int_equal(guestmem_add(f->gm, 8 * GiB, 256 * 4096ULL, false,
				      false, &slot, err, sizeof(err)),
			 0);
	assert_int_equal(guestmem_harvest(f->gm, slot, true, bitmap, 8, &n, err,
					  sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "logging"));
	assert_int_equal(
		guestmem_set_dirty_log(f->gm, slot, true, err, sizeof(err)), 0);
	assert_int_equal(guestmem_harvest(f->gm, slot, true, bitmap, 8, &n, err,
					  sizeof(err)),
			 0);
	assert_int_equal(n, 0);
	/* Writes the MMU makes on the guest's behalf are dirty-logged. */
	assert_int_equal(mmu_emulate_write(v, 8 * GiB + 3 * 4096, 1, 8), 0);
	assert_int_equal(mmu_emulate_write(v, 8 * GiB + 200 * 4096 + 8, 2, 4),
			 0);
	assert_int_equal(guestmem_harvest(f->gm, slot, false, bitmap, 8, &n,
					  err, sizeof(err)),
			 0);
	assert_int_equal(n, 2);
	assert_int_equal(bitmap[0], 1ULL << 3);
	assert_int_equal(bitmap[3], 1ULL << (200 - 192));
	/* Reading did not clear; the clearing harvest reports the same,
	 * then nothing. */
	assert_int_equal(guestmem_harvest(f->gm, slot, true, bitmap, 8, &n, err,
					  sizeof(err)),
			 0);
	assert_int_equal(n, 2);
	assert_int_equal(guestmem_harvest(f->gm, slot, true, bitmap, 8, &n, err,
					  sizeof(err)),
			 0);
	assert_int_equal(n, 0);
	/* Too small a bitmap is refused. */
	assert_int_equal(guestmem_harvest(f->gm, slot, true, bitmap, 3, &n, err,
					  sizeof(err)),
			 -EINVAL);
	assert_int_equal(guestmem_set_dirty_log(f->gm, slot, false, err,
						sizeof(err)),
			 0);
	assert_int_equal(guestmem_harvest(f->gm, slot, false, bitmap, 8, &n,
					  err, sizeof(err)),
			 -EINVAL);
	mmu_vcpu_destroy(v);
}

struct seen {
	uint32_t slot;
	uint64_t bits;
	unsigned int calls;
};

static void reader(void *ctx, uint32_t slot, const uint64_t *bitmap,
		   size_t nwords)
{
	struct seen *s = ctx;

	assert_true(nwords >= 1);
	s->slot = slot;
	s->bits |= bitmap[0];
	s->calls++;
}

static void test_guestmem_reader_gets_harvested_pages_slots_frozen(void **state)
{
	struct fixture *f = *state;
	struct mmu_vcpu *v = mmu_vcpu_create(f->mmu, 0);
	struct seen seen = { 0 };
	uint64_t bitmap[8], n;
	uint32_t slot, other;
	char err[256];

	assert_int_equal(guestmem_add(f->gm, 8 * GiB, 256 * 4096ULL, false,
				      true, &slot, err, sizeof(err)),
			 0);
	guestmem_set_reader(f->gm, reader, &seen, "a migration is running");
	assert_int_equal(mmu_emulate_write(v, 8 * GiB + 5 * 4096, 1, 8), 0);
	/* Reading without clearing takes nothing from the reader. */
	assert_int_equal(guestmem_harvest(f->gm, slot, false, bitmap, 8, &n,
					  err, sizeof(err)),
			 0);
	assert_int_equal(seen.calls, 0);
	/* The operator's clearing harvest: the reader gets the page too. */
	assert_int_equal(guestmem_harvest(f->gm, slot, true, bitmap, 8, &n, err,
					  sizeof(err)),
			 0);
	assert_int_equal(n, 1);
	assert_int_equal(seen.calls, 1);
	assert_int_equal(seen.slot, slot);
	assert_int_equal(seen.bits, 1ULL << 5);
	/* No slot comes or goes, no log stops, while it reads. */
	assert_int_equal(guestmem_add(f->gm, 16 * GiB, 4096, false, false,
				      &other, err, sizeof(err)),
			 -EBUSY);
	assert_string_equal(err, "a migration is running");
	assert_int_equal(guestmem_remove(f->gm, slot, err, sizeof(err)),
			 -EBUSY);
	assert_int_equal(guestmem_set_dirty_log(f->gm, slot, false, err,
						sizeof(err)),
			 -EBUSY);
	guestmem_set_reader(f->gm, NULL, NULL, NULL);
	assert_int_equal(guestmem_remove(f->gm, slot, err, sizeof(err)), 0);
	mmu_vcpu_destroy(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_guestmem_bad_requests_refused_unchanged, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_guestmem_slot_ending_at_the_limit_added, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_guestmem_too_many_slots_nospc, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_guestmem_remove_unmaps_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_guestmem_dirty_log_reports_written_pages, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_guestmem_reader_gets_harvested_pages_slots_frozen,
			setup, teardown),
	};
	int r;

	mmu_rcu_register_thread();
	r = cmocka_run_group_tests(tests, NULL, NULL);
	mmu_rcu_unregister_thread();
	return r;
}
