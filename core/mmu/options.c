/*
 * The MMU's switches (docs/MMU.md, "Switches"): where the shadow MMU's
 * design had alternatives that were argued over, each is a per-VM option
 * set at start (mmud --mmu-option NAME=VALUE) or at run time (QMP
 * x-mmu-set-option), so both sides can be measured on one build. This
 * file owns the table of names and values and the option bytes of struct
 * mmu; what each value does is in the code it selects (unsync.c,
 * mmio_spte.c, dirty_log.c and mmu.c's fast page fault, the daemon's
 * x-mmu-zap-all). It calls nothing else in the
 * MMU, so the config parser links it alone.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mmu_int.h"

static const char *const unsync_values[] = { "reachable", "off", "all", NULL };
static const char *const zap_all_values[] = { "fast", "slow", NULL };
static const char *const mmio_wrap_values[] = { "zap-all", "zap-mmio", NULL };
static const char *const memslots_values[] = { "rcu", "rwlock", NULL };
static const char *const wp_values[] = { "lockless", "locked", NULL };
static const char *const fast_pf_values[] = { "on", "off", NULL };

/* Indexed by enum mmu_option; each list's values in the order of the
 * enum mmu_opt_* of mmu.h, the default first. */
static const struct mmu_option_desc descs[MMU_OPT_NR] = {
	[MMU_OPT_UNSYNC] = { "unsync", unsync_values, true },
	[MMU_OPT_ZAP_ALL] = { "zap-all", zap_all_values, true },
	[MMU_OPT_MMIO_WRAP] = { "mmio-wrap", mmio_wrap_values, true },
	/* Process-wide and before any thread: mmu_rcu_use_rwlock(). */
	[MMU_OPT_MEMSLOTS] = { "memslots", memslots_values, false },
	/* Read once per harvest or clear (dirty_log.c), and once per write
	 * fault (mmu.c): either value is safe at any moment. */
	[MMU_OPT_WP] = { "wp", wp_values, true },
	[MMU_OPT_FAST_PF] = { "fast-pf", fast_pf_values, true },
};

const struct mmu_option_desc *mmu_option_desc(enum mmu_option opt)
{
	return (unsigned int)opt < MMU_OPT_NR ? &descs[opt] : NULL;
}

static void list_values(const char *const *v, char *out, size_t len)
{
	size_t at = 0;

	out[0] = '\0';
	for (; *v && at < len; v++) {
		int n = snprintf(out + at, len - at, "%s%s", at ? ", " : "",
				 *v);

		if (n < 0)
			return;
		at += (size_t)n;
	}
}

int mmu_option_lookup(const char *name, const char *value, enum mmu_option *opt,
		      unsigned int *val, char *err, size_t errlen)
{
	char known[128];

	for (unsigned int o = 0; o < MMU_OPT_NR; o++) {
		const struct mmu_option_desc *d = &descs[o];

		if (strcmp(d->name, name))
			continue;
		for (unsigned int i = 0; d->values[i]; i++)
			if (!strcmp(d->values[i], value)) {
				*opt = (enum mmu_option)o;
				*val = i;
				return 0;
			}
		list_values(d->values, known, sizeof(known));
		snprintf(err, errlen, "MMU option '%s': '%s' is not one of %s",
			 name, value, known);
		return -EINVAL;
	}
	{
		const char *names[MMU_OPT_NR + 1];

		for (unsigned int o = 0; o < MMU_OPT_NR; o++)
			names[o] = descs[o].name;
		names[MMU_OPT_NR] = NULL;
		list_values(names, known, sizeof(known));
	}
	snprintf(err, errlen, "unknown MMU option '%s' (known: %s)", name,
		 known);
	return -EINVAL;
}

int mmu_option_parse(const char *s, enum mmu_option *opt, unsigned int *val,
		     char *err, size_t errlen)
{
	const char *eq = strchr(s, '=');
	char name[64];

	if (!eq || eq == s || (size_t)(eq - s) >= sizeof(name)) {
		snprintf(err, errlen,
			 "'%s' is not NAME=VALUE (an MMU option and its value)",
			 s);
		return -EINVAL;
	}
	memcpy(name, s, (size_t)(eq - s));
	name[eq - s] = '\0';
	return mmu_option_lookup(name, eq + 1, opt, val, err, errlen);
}

void mmu_option_set(struct mmu *mmu, enum mmu_option opt, unsigned int val)
{
	MMUD_ASSERT((unsigned int)opt < MMU_OPT_NR);
	atomic_store_explicit(&mmu->options[opt], (unsigned char)val,
			      memory_order_relaxed);
}

unsigned int mmu_option_get(struct mmu *mmu, enum mmu_option opt)
{
	MMUD_ASSERT((unsigned int)opt < MMU_OPT_NR);
	return atomic_load_explicit(&mmu->options[opt], memory_order_relaxed);
}
