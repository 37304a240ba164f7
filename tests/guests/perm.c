/*
 * perm: the access-rights and #PF error-code guest. It builds one address
 * space in which every combination of the five entry states (not present,
 * P, P|W, P|U, P|W|U) at each of the four levels, times NX clear or set
 * at the leaf, is a virtual address of its own (1250 walks), all leading
 * to one frame of RET bytes. Each pass sets CR0.WP, CR4.SMEP, CR4.SMAP and
 * RFLAGS.AC, then reads, writes and executes every address at CPL0 (and,
 * in the passes that say so, at CPL3), records whether it faulted and the
 * #PF error code, and compares each outcome with a model of the SDM's
 * rules (vol. 3, 4.6.1 access rights and 4.7 the error code) that walks
 * the same tables in software. Per pass it prints the faults per access,
 * a digest of every outcome and the mismatches; the fault counts are also
 * checked against the numbers the rules predict by counting (below). It
 * does not test large pages, reserved bits, A/D bits or EFER.NXE = 0.
 */
#include "rt.h"

/*
 * The case space. Level states, the same at every level:
 *   0 "-"   not present (W and U set, which the walk must ignore)
 *   1 "P"   read-only, supervisor
 *   2 "PW"  writable, supervisor
 *   3 "PU"  read-only, user
 *   4 "PWU" writable, user
 * Case c = (((s4 * 5 + s3) * 5 + s2) * 5 + s1) * 2 + nx; its address
 * takes PML4 index FIRST_PML4 + s4 (clear of entry 0, the boot identity
 * map, and of entry 128, the runtime's user alias), PDPT index s3, PD
 * index s2 and PT index 2 * s1 + nx.
 *
 * What the rules predict, by counting. Of the 5^4 * 2 = 1250 walks,
 * 4^4 * 2 = 512 are present at every level and 738 are not. Of the 512:
 * 32 are user-mode addresses (U at all four levels: 2^4 W choices times
 * NX), 32 are writable at all four levels, 2 are both (P|W|U everywhere),
 * 256 have NX, and 16 are user-mode addresses without NX. Hence:
 *   supervisor read   738, + 32 with SMAP and AC = 0 (user addresses)
 *   supervisor write  738, + 480 (not writable everywhere) with WP = 1,
 *                     + with SMAP and AC = 0 the user addresses the rest
 *                     allows: 32 with WP = 0, 2 with WP = 1
 *   supervisor fetch  738 + 256 (NX), + 16 with SMEP (user, no NX)
 *   user read         738 + 480 (supervisor addresses)        = 1218
 *   user write        1250 - 2 (user and writable)            = 1248
 *   user fetch        1250 - 16 (user, no NX)                 = 1234
 * CR0.WP, SMEP and SMAP do not change user-mode accesses. So the passes
 * below fault, supervisor r/w/x then user r/w/x:
 *   wp0 738/738/994 + 1218/1248/1234 = 6170 of 7500; wp1 738/1218/994
 *   + the same user counts = 6650; smep.wp0 2486 and smep.wp1 2966 of
 *   3750 (fetch 1010); smap.ac0.wp0 770/770/994 = 2534; smap.ac1.wp0
 *   2470 and smap.ac1.wp1 2950 (as without SMAP); smap.ac0.wp1
 *   770/1220/994 = 2984; smep.smap.ac0.wp1 770/1220/1010 + 3700 = 6700.
 * expected/perm.txt, digests included, was recomputed from these rules
 * outside the guest before it was accepted; KVM (kvm_pvm) agrees with
 * the model on every case.
 */
#define STATES 5
#define NR_CASES (STATES * STATES * STATES * STATES * 2)
#define FIRST_PML4 1

#define NOT_PRESENT 738
#define USER_ADDRS 32
#define SUP_NOT_WRITABLE 480
#define USER_WRITABLE 2
#define NX_PRESENT 256
#define USER_EXEC 16

static const uint64_t state_bits[STATES] = {
	PTE_W | PTE_U, /* - */
	PTE_P, /* P */
	PTE_P | PTE_W, /* PW */
	PTE_P | PTE_U, /* PU */
	PTE_P | PTE_W | PTE_U, /* PWU */
};
static const char *const state_name[STATES] = { "-", "P", "PW", "PU", "PWU" };

enum access { ACC_READ, ACC_WRITE, ACC_FETCH, NR_ACC };
static const char *const access_name[NR_ACC] = { "read", "write", "fetch" };

/* #PF error code bits, SDM vol. 3, 4.7. */
#define PFEC_P (1u << 0)
#define PFEC_W (1u << 1)
#define PFEC_U (1u << 2)
#define PFEC_I (1u << 4)

/* An outcome: NO_FAULT or the #PF error code; BAD_FAULT marks a fault
 * that was not the #PF at this address the case expects. */
#define NO_FAULT 0xffffffffu
#define BAD_FAULT 0x80000000u

struct pass {
	const char *name;
	bool wp, smep, smap, ac;
	bool user; /* also probe from CPL3 */
};

static const struct pass passes[] = {
	{ "wp0", false, false, false, false, true },
	{ "wp1", true, false, false, false, true },
	{ "smep.wp0", false, true, false, false, false },
	{ "smep.wp1", true, true, false, false, false },
	{ "smap.ac0.wp0", false, false, true, false, false },
	{ "smap.ac1.wp0", false, false, true, true, false },
	{ "smap.ac0.wp1", true, false, true, false, false },
	{ "smap.ac1.wp1", true, false, true, true, false },
	{ "smep.smap.ac0.wp1", true, true, true, false, true },
};

/* Per case, what the software walk found: the model's only input. */
struct walk {
	bool present; /* P at every level */
	bool user; /* U at every level: a user-mode address */
	bool writable; /* W at every level */
	bool nx; /* NX at some level */
};

static struct walk walks[NR_CASES];
static uint64_t root, frame;
static unsigned int mismatches, printed;

#define MAX_PRINTED 20

static uint64_t case_va(unsigned int c)
{
	unsigned int nx = c % 2, s1 = c / 2 % 5, s2 = c / 10 % 5;
	unsigned int s3 = c / 50 % 5, s4 = c / 250;

	return ((uint64_t)(FIRST_PML4 + s4) << 39) | ((uint64_t)s3 << 30) |
	       ((uint64_t)s2 << 21) | ((uint64_t)(2 * s1 + nx) << 12);
}

static uint64_t table_new(void)
{
	uint64_t pa = rt_phys_alloc(SIZE_4K, SIZE_4K);

	memset((void *)pa, 0, SIZE_4K);
	return pa;
}

/* Fills table t of the given level with the five states; present upper
 * entries get a table of their own each, so every walk is distinct. */
static void fill(pte_t *t, int level, unsigned int first)
{
	for (unsigned int s = 0; s < STATES; s++) {
		uint64_t next;

		if (level == 1) {
			t[2 * s] = frame | state_bits[s];
			t[2 * s + 1] = frame | state_bits[s] | PTE_NX;
			continue;
		}
		if (!(state_bits[s] & PTE_P)) {
			t[first + s] = frame | state_bits[s];
			continue;
		}
		next = table_new();
		t[first + s] = next | state_bits[s];
		fill((pte_t *)next, level - 1, 0);
	}
}

/* The model's view of a translation: a software walk of the tables in
 * memory (they are identity mapped), SDM vol. 3, 4.5. It stops at the
 * first entry without P, as the processor does. */
static struct walk soft_walk(uint64_t va)
{
	struct walk w = { true, true, true, false };
	uint64_t t = root;

	for (int level = 4; level >= 1; level--) {
		pte_t e = ((const pte_t *)t)[(va >> (3 + 9 * level)) & 511];

		if (!(e & PTE_P)) {
			w.present = false;
			return w;
		}
		w.user = w.user && (e & PTE_U);
		w.writable = w.writable && (e & PTE_W);
		w.nx = w.nx || (e & PTE_NX);
		if (level > 1 && (e & PTE_PS))
			break;
		t = e & PTE_ADDR;
	}
	return w;
}

/*
 * The architecture's answer for one access, written from SDM vol. 3,
 * 4.6.1 (IA-32e paging, EFER.NXE = 1, no protection keys) and 4.7.
 * Returns NO_FAULT or the error code.
 */
static uint32_t model(const struct walk *w, bool cpl3, enum access a,
		      const struct pass *p)
{
	bool allowed;
	uint32_t ec;

	if (!w->present) {
		allowed = false;
	} else if (cpl3) {
		/* User-mode accesses reach user-mode addresses only; writes
		 * need R/W everywhere (CR0.WP plays no part), fetches need XD
		 * clear everywhere. SMEP and SMAP govern supervisor accesses
		 * alone. */
		allowed = w->user && (a != ACC_WRITE || w->writable) &&
			  (a != ACC_FETCH || !w->nx);
	} else if (a == ACC_FETCH) {
		/* Supervisor fetches: never through XD; from a user-mode
		 * address only while CR4.SMEP = 0. */
		allowed = !w->nx && !(w->user && p->smep);
	} else {
		/* Explicit supervisor data accesses. To a user-mode address
		 * with CR4.SMAP = 1 they need RFLAGS.AC = 1. A write needs
		 * R/W everywhere only when CR0.WP = 1, for user-mode and
		 * supervisor-mode addresses alike. */
		bool smap_blocks = w->user && p->smap && !p->ac;

		allowed = !smap_blocks &&
			  (a == ACC_READ || w->writable || !p->wp);
	}
	if (allowed)
		return NO_FAULT;
	/* P: a protection violation rather than a missing translation.
	 * W/R and U/S describe the access, not the entries. I/D: a fetch,
	 * with EFER.NXE = 1 (always here) or CR4.SMEP = 1. RSVD: no entry
	 * here has reserved bits set. */
	ec = 0;
	if (w->present)
		ec |= PFEC_P;
	if (a == ACC_WRITE)
		ec |= PFEC_W;
	if (cpl3)
		ec |= PFEC_U;
	if (a == ACC_FETCH)
		ec |= PFEC_I;
	return ec;
}

/* The probes: one access each, through rt_try at CPL0 or rt_user_run at
 * CPL3. The frame holds RET bytes, so a fetch is a call and a write puts
 * back what was there. */
static void sup_read(uint64_t va)
{
	(void)*(volatile uint8_t *)va;
}

static void sup_write(uint64_t va)
{
	*(volatile uint8_t *)va = 0xc3;
}

static void sup_fetch(uint64_t va)
{
	((void (*)(void))va)();
}

RT_USER static void user_read(uint64_t va)
{
	(void)*(volatile uint8_t *)va;
}

RT_USER static void user_write(uint64_t va)
{
	*(volatile uint8_t *)va = 0xc3;
}

RT_USER static void user_fetch(uint64_t va)
{
	((void (*)(void))va)();
}

static void (*const sup_probe[NR_ACC])(uint64_t) = { sup_read, sup_write,
						     sup_fetch };
static void (*const user_probe[NR_ACC])(uint64_t) = { user_read, user_write,
						      user_fetch };

/* Runs one access and returns its outcome. A fault must be a #PF with
 * CR2 = va, at the probe's CPL, and for a fetch at RIP = va; anything
 * else is reported here and marked BAD_FAULT. */
static uint32_t probe(const struct pass *p, unsigned int c, bool cpl3,
		      enum access a)
{
	uint64_t va = case_va(c);
	const struct rt_fault *f;
	int faulted;

	faulted = cpl3 ? rt_user_run(user_probe[a], va) :
			 rt_try(sup_probe[a], va);
	if (!faulted)
		return NO_FAULT;
	f = rt_last_fault();
	if (f->vector == 14 && f->cr2 == va && f->cpl == (cpl3 ? 3u : 0u) &&
	    (a != ACC_FETCH || f->rip == va))
		return (uint32_t)f->error;
	if (printed++ < MAX_PRINTED)
		rt_printf("pass %s case %u %s %s: vector %lu error %#lx "
			  "cr2 %#lx rip %#lx cpl %u\n",
			  p->name, c, cpl3 ? "user" : "sup", access_name[a],
			  f->vector, f->error, f->cr2, f->rip, f->cpl);
	return BAD_FAULT | (uint32_t)f->error;
}

static void describe(unsigned int c, char *buf, size_t size)
{
	rt_snprintf(buf, size, "%s/%s/%s/%s%s", state_name[c / 250],
		    state_name[c / 50 % 5], state_name[c / 10 % 5],
		    state_name[c / 2 % 5], c % 2 ? " nx" : "");
}

static void print_outcome(char *buf, size_t size, uint32_t o)
{
	if (o == NO_FAULT)
		rt_snprintf(buf, size, "no fault");
	else
		rt_snprintf(buf, size, "#PF %#x", o);
}

/* One multiply-xorshift step per outcome: the digest only has to tell
 * transcripts apart, and each instruction at CPL0 costs about 1 us here. */
static uint64_t mix(uint64_t h, uint64_t v)
{
	h = (h ^ v) * 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 29);
}

/* The fault counts of SDM rules for a pass, from the counting above. */
static unsigned int predicted(const struct pass *p, bool cpl3, enum access a)
{
	bool smap0 = p->smap && !p->ac;

	if (cpl3)
		return a == ACC_READ  ? NOT_PRESENT + SUP_NOT_WRITABLE :
		       a == ACC_WRITE ? NR_CASES - USER_WRITABLE :
					NR_CASES - USER_EXEC;
	if (a == ACC_READ)
		return NOT_PRESENT + (smap0 ? USER_ADDRS : 0);
	if (a == ACC_WRITE)
		return NOT_PRESENT + (p->wp ? SUP_NOT_WRITABLE : 0) +
		       (smap0 ? (p->wp ? USER_WRITABLE : USER_ADDRS) : 0);
	return NOT_PRESENT + NX_PRESENT + (p->smep ? USER_EXEC : 0);
}

static void set_mode(const struct pass *p)
{
	uint64_t cr0 = rt_read_cr0() & ~X86_CR0_WP;
	uint64_t cr4 = rt_read_cr4() & ~(X86_CR4_SMEP | X86_CR4_SMAP);

	rt_write_cr0(cr0 | (p->wp ? X86_CR0_WP : 0));
	rt_write_cr4(cr4 | (p->smep ? X86_CR4_SMEP : 0) |
		     (p->smap ? X86_CR4_SMAP : 0));
	/* No global pages here: a CR3 write flushes every translation the
	 * previous pass cached under other rights. */
	rt_write_cr3(root);
}

static void run_pass(const struct pass *p)
{
	unsigned int faults[2][NR_ACC] = { { 0 } };
	unsigned int bad = 0, cases = 0, total = 0, off_count = 0;
	uint64_t digest = 0;
	char what[40], got[24], want[24];

	set_mode(p);
	for (int cpl3 = 0; cpl3 <= (p->user ? 1 : 0); cpl3++) {
		/* RFLAGS.AC matters only to supervisor data accesses; rt_try
		 * keeps the value it was called with. */
		rt_set_ac(!cpl3 && p->ac);
		for (unsigned int c = 0; c < NR_CASES; c++) {
			for (int a = 0; a < NR_ACC; a++) {
				uint32_t o = probe(p, c, cpl3, a);
				uint32_t m = model(&walks[c], cpl3, a, p);
				uint64_t key = (uint64_t)(cpl3 * 4 + a) << 16 |
					       c;

				cases++;
				digest = mix(digest, (uint64_t)o << 32 | key);
				if (o != NO_FAULT)
					faults[cpl3][a]++;
				if (o == m)
					continue;
				bad++;
				if (printed++ >= MAX_PRINTED)
					continue;
				describe(c, what, sizeof(what));
				print_outcome(got, sizeof(got), o);
				print_outcome(want, sizeof(want), m);
				rt_printf("pass %s case %u (%s) %s %s: got %s, "
					  "model %s\n",
					  p->name, c, what,
					  cpl3 ? "user" : "sup", access_name[a],
					  got, want);
			}
		}
		rt_set_ac(false);
	}

	for (int cpl3 = 0; cpl3 <= (p->user ? 1 : 0); cpl3++)
		for (int a = 0; a < NR_ACC; a++) {
			unsigned int want_n = predicted(p, cpl3, a);

			total += faults[cpl3][a];
			if (faults[cpl3][a] == want_n)
				continue;
			off_count++;
			rt_printf("pass %s: %s %s faults %u, rules predict "
				  "%u\n",
				  p->name, cpl3 ? "user" : "sup",
				  access_name[a], faults[cpl3][a], want_n);
		}
	rt_printf("pass %s: sup r/w/x %u/%u/%u", p->name, faults[0][0],
		  faults[0][1], faults[0][2]);
	if (p->user)
		rt_printf(", user r/w/x %u/%u/%u", faults[1][0], faults[1][1],
			  faults[1][2]);
	rt_printf("; %u cases, %u faults, digest %016lx, mismatches %u\n",
		  cases, total, digest, bad);
	mismatches += bad + off_count;
}

int guest_main(unsigned int cpu)
{
	uint64_t cr0 = rt_read_cr0(), cr4 = rt_read_cr4(), old_cr3;
	bool smep = rt_has_smep(), smap = rt_has_smap();

	if (cpu != 0)
		return 0;
	if (!(rt_rdmsr(MSR_EFER) & (1ULL << 11)))
		rt_fail("EFER.NXE is clear; the model assumes it set\n");

	frame = rt_phys_alloc(SIZE_4K, SIZE_4K);
	memset((void *)frame, 0xc3, SIZE_4K);
	root = pt_root_new();
	rt_user_map(root);
	fill((pte_t *)root, 4, FIRST_PML4);
	for (unsigned int c = 0; c < NR_CASES; c++)
		walks[c] = soft_walk(case_va(c));

	rt_printf("perm: %u walks (5 states at 4 levels, NX at the leaf), "
		  "read/write/fetch\n",
		  NR_CASES);
	old_cr3 = rt_read_cr3();
	for (size_t i = 0; i < sizeof(passes) / sizeof(passes[0]); i++) {
		const struct pass *p = &passes[i];

		if (p->smep && !smep) {
			rt_printf("pass %s: SMEP not reported by CPUID\n",
				  p->name);
			continue;
		}
		if (p->smap && !smap) {
			rt_printf("pass %s: SMAP not reported by CPUID\n",
				  p->name);
			continue;
		}
		run_pass(p);
	}
	rt_write_cr0(cr0);
	rt_write_cr4(cr4);
	rt_write_cr3(old_cr3);

	rt_printf("perm: %s\n", mismatches ? "FAIL" : "PASS");
	return mismatches ? 1 : 0;
}
