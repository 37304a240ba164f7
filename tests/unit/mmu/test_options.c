/*
 * The MMU's switches by name (docs/MMU.md, "Switches"): every option and
 * value of the table parses to its enum, and what does not parse is
 * refused with a message naming it and what would have been accepted.
 */
#include "mmu_env.h"

static void test_options_every_name_and_value_parses(void **state)
{
	char err[256];

	(void)state;
	for (unsigned int o = 0; o < MMU_OPT_NR; o++) {
		const struct mmu_option_desc *d = mmu_option_desc(o);

		assert_non_null(d);
		for (unsigned int i = 0; d->values[i]; i++) {
			char s[128];
			enum mmu_option opt;
			unsigned int val;

			snprintf(s, sizeof(s), "%s=%s", d->name, d->values[i]);
			if (mmu_option_parse(s, &opt, &val, err, sizeof(err)))
				fail_msg("'%s' refused: %s", s, err);
			assert_int_equal(opt, o);
			assert_int_equal(val, i);
		}
	}
	assert_null(mmu_option_desc(MMU_OPT_NR));
}

static void test_options_names_match_the_enums(void **state)
{
	enum mmu_option opt;
	unsigned int val;
	char err[256];

	(void)state;
	assert_int_equal(mmu_option_parse("unsync=all", &opt, &val, err,
					  sizeof(err)),
			 0);
	assert_int_equal(opt, MMU_OPT_UNSYNC);
	assert_int_equal(val, MMU_UNSYNC_ALL);
	assert_int_equal(mmu_option_parse("unsync=off", &opt, &val, err,
					  sizeof(err)),
			 0);
	assert_int_equal(val, MMU_UNSYNC_OFF);
	assert_int_equal(mmu_option_lookup("zap-all", "slow", &opt, &val, err,
					   sizeof(err)),
			 0);
	assert_int_equal(opt, MMU_OPT_ZAP_ALL);
	assert_int_equal(val, MMU_ZAP_ALL_SLOW);
	assert_int_equal(mmu_option_lookup("mmio-wrap", "zap-mmio", &opt, &val,
					   err, sizeof(err)),
			 0);
	assert_int_equal(opt, MMU_OPT_MMIO_WRAP);
	assert_int_equal(val, MMU_MMIO_WRAP_ZAP_MMIO);
	assert_int_equal(mmu_option_parse("memslots=rwlock", &opt, &val, err,
					  sizeof(err)),
			 0);
	assert_int_equal(opt, MMU_OPT_MEMSLOTS);
	assert_int_equal(val, MMU_MEMSLOTS_RWLOCK);
	/* The lock's kind is the process's, chosen before any thread. */
	assert_false(mmu_option_desc(MMU_OPT_MEMSLOTS)->runtime);
}

static void expect_refused(const char *s, const char *want)
{
	enum mmu_option opt = MMU_OPT_NR;
	unsigned int val = 99;
	char err[256] = "";

	if (mmu_option_parse(s, &opt, &val, err, sizeof(err)) != -EINVAL)
		fail_msg("'%s' accepted", s);
	if (!strstr(err, want))
		fail_msg("'%s': the error '%s' does not say '%s'", s, err,
			 want);
	/* Nothing written on a refusal. */
	assert_int_equal(opt, MMU_OPT_NR);
	assert_int_equal(val, 99);
}

static void test_options_refusals_name_what_was_wrong(void **state)
{
	(void)state;
	expect_refused("unsync", "is not NAME=VALUE");
	expect_refused("=all", "is not NAME=VALUE");
	expect_refused("colour=blue",
		       "unknown MMU option 'colour' (known: unsync, zap-all, "
		       "mmio-wrap, memslots, wp, fast-pf)");
	expect_refused("unsync=sometimes",
		       "MMU option 'unsync': 'sometimes' is not one of "
		       "reachable, off, all");
	expect_refused("zap-all=", "'' is not one of fast, slow");
	expect_refused("mmio-wrap=zap-all=x", "is not one of");
	expect_refused("Unsync=all", "unknown MMU option 'Unsync'");
}

static void test_options_set_and_get_per_mmu(void **state)
{
	struct mmu_env *e = env_new(), *f = env_new();

	(void)state;
	/* The VM default once the vCPU layer turned unsync on. */
	mmu_set_unsync(e->mmu, true);
	assert_int_equal(mmu_option_get(e->mmu, MMU_OPT_UNSYNC),
			 MMU_UNSYNC_REACHABLE);
	mmu_option_set(e->mmu, MMU_OPT_UNSYNC, MMU_UNSYNC_ALL);
	mmu_option_set(e->mmu, MMU_OPT_ZAP_ALL, MMU_ZAP_ALL_SLOW);
	assert_int_equal(mmu_option_get(e->mmu, MMU_OPT_UNSYNC),
			 MMU_UNSYNC_ALL);
	assert_int_equal(mmu_option_get(e->mmu, MMU_OPT_ZAP_ALL),
			 MMU_ZAP_ALL_SLOW);
	/* Another MMU keeps its own: a bare MMU starts with unsync off. */
	assert_int_equal(mmu_option_get(f->mmu, MMU_OPT_UNSYNC),
			 MMU_UNSYNC_OFF);
	assert_int_equal(mmu_option_get(f->mmu, MMU_OPT_ZAP_ALL),
			 MMU_ZAP_ALL_FAST);
	assert_int_equal(mmu_option_get(f->mmu, MMU_OPT_MMIO_WRAP),
			 MMU_MMIO_WRAP_ZAP_ALL);
	env_free(e);
	env_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options_every_name_and_value_parses),
		cmocka_unit_test(test_options_names_match_the_enums),
		cmocka_unit_test(test_options_refusals_name_what_was_wrong),
		cmocka_unit_test(test_options_set_and_get_per_mmu),
	};

	return cmocka_run_group_tests(tests, rcu_setup, rcu_teardown);
}
