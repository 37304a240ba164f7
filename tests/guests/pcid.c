/*
 * pcid: process-context identifiers and INVPCID, checked for what the
 * architecture requires (SDM vol. 3, 4.10.1, 4.10.2.4 and 4.10.4.1; vol. 2,
 * MOV to CR and INVPCID): the #GP rules of CR4.PCIDE and of MOV to CR3,
 * that bit 63 of a MOV to CR3 never reaches CR3, that a PCID never uses
 * another PCID's non-global translations, that a MOV to CR3 with bit 63
 * clear, each INVPCID type and clearing CR4.PCIDE make a changed PTE
 * visible, and INVPCID's #GP/#UD/#PF cases. That stale translations
 * survive is never checked: the architecture allows it, it does not
 * require it.
 *
 * What runs depends on CPUID. Without PCID, CR4.PCIDE is a reserved bit
 * (#GP) and bit 63 of a MOV to CR3 too; without INVPCID the guest does
 * not execute it. The KVM here reports neither, so expected/pcid.txt is
 * its transcript and expected/pcid.mmud.txt, written from the SDM's rules
 * before mmud ran it, is mmud's.
 *
 * Every line is "what: outcome"; a line whose outcome differs from the
 * rules ends in "<- against the rules" and fails the guest.
 */
#include "rt.h"

#define X86_CR4_PCIDE (1ULL << 17)
#define CR3_NOFLUSH (1ULL << 63)

#define VA 0x008000000000ULL /* PML4 entry 1 */
#define VA_G (VA + SIZE_4K) /* a global page beside it */
#define VA_UNMAPPED (VA + 2 * SIZE_4K)
#define NONCANONICAL 0x0000800000000000ULL

enum { ADDRESS, SINGLE, ALL_GLOBAL, ALL };

struct invpcid_desc {
	uint64_t pcid;
	uint64_t la;
};

static uint64_t root_a, root_b, frame[2];
static pte_t *pte_a, *pte_b, *pte_g;
static int bad;

static struct invpcid_desc user_desc RT_USER_DATA;

/* ---- reporting -------------------------------------------------------- */

static bool streq(const char *a, const char *b)
{
	size_t n = strlen(a);

	return n == strlen(b) && !memcmp(a, b, n);
}

static void report(const char *what, const char *got, const char *want)
{
	bool ok = streq(got, want);

	rt_printf("%s: %s%s\n", what, got, ok ? "" : "  <- against the rules");
	bad += !ok;
}

/* The outcome of an rt_try(): "ok" or the exception. */
static const char *outcome(int faulted, char *buf, size_t n)
{
	const struct rt_fault *f = rt_last_fault();

	if (!faulted)
		return "ok";
	switch (f->vector) {
	case 6:
		return "#UD";
	case 13:
		rt_snprintf(buf, n, "#GP(%lx)", f->error);
		return buf;
	case 14:
		rt_snprintf(buf, n, "#PF(%lx)%s", f->error,
			    f->cr2 == VA_UNMAPPED ? " at the descriptor" : "");
		return buf;
	default:
		rt_snprintf(buf, n, "vector %lu", f->vector);
		return buf;
	}
}

static void check_try(const char *what, void (*fn)(uint64_t), uint64_t arg,
		      const char *want)
{
	char buf[48];

	report(what, outcome(rt_try(fn, arg), buf, sizeof(buf)), want);
}

/* Which frame a read of va reaches now. */
static const char *reads(uint64_t va)
{
	uint64_t v = *(volatile uint64_t *)va;

	if (v == 0x5043494400000000ULL)
		return "frame 0";
	if (v == 0x5043494400000001ULL)
		return "frame 1";
	return "another frame";
}

static void set_pte(pte_t *pte, int f, uint64_t flags)
{
	*(volatile pte_t *)pte = frame[f] | PTE_P | PTE_W | flags;
}

/* ---- the instructions --------------------------------------------------- */

static void set_cr3(uint64_t v)
{
	rt_write_cr3(v);
}

static void set_cr4(uint64_t v)
{
	rt_write_cr4(v);
}

static void invpcid(uint64_t type, uint64_t pcid, uint64_t la)
{
	struct invpcid_desc d = { pcid, la };

	__asm__ volatile("invpcid %0, %1" ::"m"(d), "r"(type) : "memory");
}

/* rt_try() arguments: the type and the descriptor. */
struct try_args {
	uint64_t type;
	struct invpcid_desc d;
	uint64_t at; /* where the descriptor is; 0: d */
};

static void try_invpcid(uint64_t arg)
{
	const struct try_args *t = (const struct try_args *)arg;
	uint64_t at = t->at ? t->at : (uint64_t)&t->d;

	__asm__ volatile("invpcid (%0), %1" ::"r"(at), "r"(t->type) : "memory");
}

static void check_invpcid(const char *what, uint64_t type, uint64_t pcid,
			  uint64_t la, const char *want)
{
	struct try_args t = { type, { pcid, la }, 0 };

	check_try(what, try_invpcid, (uint64_t)&t, want);
}

/* 66 0F 38 82 C0: the register form (mod = 11). */
static void invpcid_reg_form(uint64_t arg)
{
	(void)arg;
	__asm__ volatile(".byte 0x66, 0x0f, 0x38, 0x82, 0xc0" ::: "memory");
}

/* 0F 38 82 /r without its mandatory 66 prefix; RAX -> descriptor. */
static void invpcid_no_66(uint64_t arg)
{
	__asm__ volatile(".byte 0x0f, 0x38, 0x82, 0x00" ::"a"(arg) : "memory");
}

/* F0 66 0F 38 82 /r: LOCK is not allowed. */
static void invpcid_lock(uint64_t arg)
{
	__asm__ volatile(".byte 0xf0, 0x66, 0x0f, 0x38, 0x82, 0x00" ::"a"(arg)
			 : "memory");
}

static RT_USER void user_invpcid(uint64_t desc)
{
	__asm__ volatile("invpcid (%0), %1" ::"r"(desc), "r"(0ULL) : "memory");
}

/* ---- without the features ----------------------------------------------- */

/* SDM vol. 2, MOV to CR: a reserved CR4 bit is #GP(0). */
static void no_pcid(void)
{
	check_try("set cr4.pcide (no pcid in cpuid)", set_cr4,
		  rt_read_cr4() | X86_CR4_PCIDE, "#GP(0)");
}

/*
 * SDM vol. 2, INVPCID: #UD when CPUID does not report it. Not executed:
 * the KVM here cannot emulate it at CPL0 at all (an emulation failure,
 * not #UD), and software that trusts CPUID never runs it.
 */
static void no_invpcid(void)
{
	rt_printf("invpcid: not in cpuid, not executed\n");
}

/* ---- CR4.PCIDE and MOV to CR3 ------------------------------------------ */

/*
 * SDM vol. 3, 4.10.1: PCIDE may go from 0 to 1 only while CR3[11:0] is
 * 000H; MOV to CR3 with PCIDE stores CR3[11:0] as the PCID and never bit
 * 63 (4.10.4.1); bits from MAXPHYADDR up stay reserved (4.5).
 */
static void cr_rules(uint64_t cr4)
{
	char buf[64];
	uint64_t cr3;

	check_try("mov cr3 with cr3[11:0]=001, pcide=0", set_cr3, root_a | 1,
		  "ok");
	check_try("set cr4.pcide with cr3[11:0]=001", set_cr4,
		  cr4 | X86_CR4_PCIDE, "#GP(0)");
	rt_write_cr3(root_a);
	check_try("set cr4.pcide with cr3[11:0]=000", set_cr4,
		  cr4 | X86_CR4_PCIDE, "ok");
	report("cr4.pcide reads", (rt_read_cr4() & X86_CR4_PCIDE) ? "1" : "0",
	       "1");

	check_try("mov cr3 pcid 001 with bit 63 set", set_cr3,
		  root_a | 1 | CR3_NOFLUSH, "ok");
	cr3 = rt_read_cr3();
	rt_snprintf(buf, sizeof(buf), "pcid %03lx, bit 63 %lu, base %s",
		    cr3 & 0xfff, cr3 >> 63,
		    (cr3 & PTE_ADDR) == root_a ? "kept" : "changed");
	report("cr3 reads", buf, "pcid 001, bit 63 0, base kept");
	check_try("mov cr3 with bit 52 set, pcide=1", set_cr3,
		  root_a | 1 | (1ULL << 52), "#GP(0)");
	check_try("mov cr3 with bit 62 set, pcide=1", set_cr3,
		  root_a | 1 | (1ULL << 62), "#GP(0)");
	check_try("rewrite cr4 (pcide stays 1) with cr3[11:0]=001", set_cr4,
		  cr4 | X86_CR4_PCIDE, "ok");
}

/*
 * SDM vol. 3, 4.10.2.4 and 4.10.4.1: a PCID uses only its own non-global
 * translations; a MOV to CR3 with bit 63 clear drops those of the new
 * PCID, so the next access walks the changed PTE.
 */
static void translations(void)
{
	set_pte(pte_a, 0, 0);
	set_pte(pte_b, 1, 0);
	rt_write_cr3(root_a | 1);
	report("pcid 001 (root a): va reads", reads(VA), "frame 0");
	rt_write_cr3(root_b | 2 | CR3_NOFLUSH);
	report("pcid 002 (root b), bit 63 set: va reads", reads(VA), "frame 1");
	rt_write_cr3(root_a | 1 | CR3_NOFLUSH);
	report("pcid 001 (root a), bit 63 set: va reads", reads(VA), "frame 0");
	set_pte(pte_a, 1, 0);
	rt_write_cr3(root_a | 1);
	report("pte changed, mov cr3 pcid 001 with bit 63 clear: va reads",
	       reads(VA), "frame 1");
}

/* ---- INVPCID ------------------------------------------------------------ */

/*
 * SDM vol. 2, INVPCID; vol. 3, 4.10.4.1. Runs at PCID 001 in root a. Each
 * type must drop at least the translations it names, so the changed PTE
 * is what the next access uses.
 */
static void invpcid_types(uint64_t cr4)
{
	rt_write_cr3(root_a | 1);
	(void)reads(VA);
	set_pte(pte_a, 0, 0);
	invpcid(ADDRESS, 1, VA);
	report("pte changed, invpcid type 0 (pcid 001, va): va reads",
	       reads(VA), "frame 0");
	set_pte(pte_a, 1, 0);
	invpcid(SINGLE, 1, 0);
	report("pte changed, invpcid type 1 (pcid 001): va reads", reads(VA),
	       "frame 1");
	set_pte(pte_a, 0, 0);
	invpcid(ALL, 0, 0);
	report("pte changed, invpcid type 3: va reads", reads(VA), "frame 0");
	set_pte(pte_a, 1, 0);
	invpcid(ALL_GLOBAL, 0, 0);
	report("pte changed, invpcid type 2: va reads", reads(VA), "frame 1");

	/* A global page: only type 2 is required to drop it. */
	rt_write_cr4(cr4 | X86_CR4_PCIDE | X86_CR4_PGE);
	set_pte(pte_g, 0, PTE_G);
	invpcid(ALL_GLOBAL, 0, 0);
	report("global page: va reads", reads(VA_G), "frame 0");
	set_pte(pte_g, 1, PTE_G);
	invpcid(ALL_GLOBAL, 0, 0);
	report("global pte changed, invpcid type 2: va reads", reads(VA_G),
	       "frame 1");
	rt_write_cr4(cr4 | X86_CR4_PCIDE);

	/* Another PCID's translations, dropped from PCID 001: root b at
	 * PCID 002 then sees its changed PTE even with bit 63 set. */
	rt_write_cr3(root_b | 2 | CR3_NOFLUSH);
	(void)reads(VA);
	rt_write_cr3(root_a | 1 | CR3_NOFLUSH);
	set_pte(pte_b, 0, 0);
	invpcid(ADDRESS, 2, VA);
	rt_write_cr3(root_b | 2 | CR3_NOFLUSH);
	report("root b pte changed, invpcid type 0 (pcid 002, va) from pcid "
	       "001, then pcid 002 with bit 63 set: va reads",
	       reads(VA), "frame 0");
	rt_write_cr3(root_a | 1 | CR3_NOFLUSH);
	set_pte(pte_b, 1, 0);
	invpcid(SINGLE, 2, 0);
	rt_write_cr3(root_b | 2 | CR3_NOFLUSH);
	report("root b pte changed, invpcid type 1 (pcid 002) from pcid "
	       "001, then pcid 002 with bit 63 set: va reads",
	       reads(VA), "frame 1");
	rt_write_cr3(root_a | 1);
}

/* SDM vol. 2, INVPCID, 64-bit mode exceptions. */
static void invpcid_faults(void)
{
	struct try_args t = { ALL, { 0, 0 }, 0 };

	check_invpcid("invpcid type 4", 4, 0, 0, "#GP(0)");
	check_invpcid("invpcid type 1 << 32 (a 64-bit register)", 1ULL << 32, 0,
		      0, "#GP(0)");
	check_invpcid("invpcid descriptor bit 12 set", SINGLE, 0x1000, 0,
		      "#GP(0)");
	check_invpcid("invpcid descriptor bit 63 set", ALL, 1ULL << 63, 0,
		      "#GP(0)");
	check_invpcid("invpcid type 0, non-canonical address", ADDRESS, 1,
		      NONCANONICAL, "#GP(0)");
	check_invpcid("invpcid type 1, non-canonical address (unused)", SINGLE,
		      1, NONCANONICAL, "ok");
	check_try("invpcid register form", invpcid_reg_form, 0, "#UD");
	check_try("invpcid without 66", invpcid_no_66, (uint64_t)&t.d, "#UD");
	check_try("lock invpcid", invpcid_lock, (uint64_t)&t.d, "#UD");
	t.at = NONCANONICAL;
	check_try("invpcid descriptor at a non-canonical address", try_invpcid,
		  (uint64_t)&t, "#GP(0)");
	t.at = VA_UNMAPPED;
	check_try("invpcid descriptor on a page not present", try_invpcid,
		  (uint64_t)&t, "#PF(0) at the descriptor");
	{
		char buf[48];
		int faulted;

		user_desc.pcid = 0;
		user_desc.la = 0;
		faulted = rt_user_run(user_invpcid, rt_user_va(&user_desc));
		report("invpcid at cpl3", outcome(faulted, buf, sizeof(buf)),
		       "#GP(0)");
	}
}

/*
 * Back to CR4.PCIDE = 0 (4.10.1, 4.10.4.1): clearing it drops every
 * translation; without it only PCID 000H exists, so INVPCID types 0 and 1
 * must name PCID 000H (#GP(0) otherwise) while types 2 and 3 ignore the
 * descriptor's PCID; bit 63 of a MOV to CR3 is reserved again.
 */
static void pcide_off(uint64_t cr4, bool has_invpcid)
{
	char buf[32];

	(void)reads(VA);
	set_pte(pte_a, 0, 0);
	check_try("clear cr4.pcide with cr3[11:0]=001", set_cr4, cr4, "ok");
	rt_snprintf(buf, sizeof(buf), "%03lx", rt_read_cr3() & 0xfff);
	report("cr3[11:0] reads", buf, "001");
	report("pte changed before clearing pcide: va reads", reads(VA),
	       "frame 0");
	check_try("mov cr3 with bit 63 set, pcide=0", set_cr3,
		  root_a | CR3_NOFLUSH, "#GP(0)");
	if (!has_invpcid)
		return;
	check_invpcid("pcide=0: invpcid type 0 (pcid 001)", ADDRESS, 1, VA,
		      "#GP(0)");
	check_invpcid("pcide=0: invpcid type 1 (pcid 001)", SINGLE, 1, 0,
		      "#GP(0)");
	check_invpcid("pcide=0: invpcid type 2 (pcid 005)", ALL_GLOBAL, 5, 0,
		      "ok");
	check_invpcid("pcide=0: invpcid type 3 (pcid 005)", ALL, 5, 0, "ok");
	set_pte(pte_a, 1, 0);
	invpcid(ADDRESS, 0, VA);
	report("pcide=0: pte changed, invpcid type 0 (pcid 000, va): va reads",
	       reads(VA), "frame 1");
	set_pte(pte_a, 0, 0);
	invpcid(SINGLE, 0, 0);
	report("pcide=0: pte changed, invpcid type 1 (pcid 000): va reads",
	       reads(VA), "frame 0");
}

static bool cpuid_bit(uint32_t leaf, int reg, int bit)
{
	uint32_t r[4];

	rt_cpuid(leaf & 0x80000000u, 0, r);
	if (r[0] < leaf)
		return false;
	rt_cpuid(leaf, 0, r);
	return (r[reg] >> bit) & 1;
}

int guest_main(unsigned int cpu)
{
	uint64_t boot_cr3 = rt_read_cr3(), cr4 = rt_read_cr4();
	bool has_pcid, has_invpcid;

	if (cpu != 0)
		return 0;
	/* SDM vol. 2, CPUID: leaf 1 ECX bit 17, leaf 7 EBX bit 10. */
	has_pcid = cpuid_bit(1, 2, 17);
	has_invpcid = cpuid_bit(7, 1, 10);
	rt_printf("cpuid: pcid %d, invpcid %d\n", has_pcid, has_invpcid);

	for (int i = 0; i < 2; i++) {
		frame[i] = rt_phys_alloc(SIZE_4K, SIZE_4K);
		*(uint64_t *)frame[i] = 0x5043494400000000ULL | (uint64_t)i;
	}
	root_a = pt_root_new();
	root_b = pt_root_new();
	pt_map(root_a, VA, frame[0], SIZE_4K, PTE_W);
	pt_map(root_a, VA_G, frame[0], SIZE_4K, PTE_W | PTE_G);
	pt_map(root_b, VA, frame[1], SIZE_4K, PTE_W);
	pte_a = pt_entry(root_a, VA, 1, false, 0);
	pte_g = pt_entry(root_a, VA_G, 1, false, 0);
	pte_b = pt_entry(root_b, VA, 1, false, 0);
	rt_user_map(root_a);

	if (!has_pcid)
		no_pcid();
	if (!has_invpcid)
		no_invpcid();
	if (has_pcid) {
		cr_rules(cr4);
		translations();
		if (has_invpcid) {
			invpcid_types(cr4);
			invpcid_faults();
		}
		pcide_off(cr4, has_invpcid);
	} else {
		check_try("mov cr3 with bit 63 set, pcide=0", set_cr3,
			  boot_cr3 | CR3_NOFLUSH, "#GP(0)");
	}
	rt_write_cr4(cr4);
	rt_write_cr3(boot_cr3);
	rt_printf("pcid: %s\n", bad ? "FAIL" : "PASS");
	return bad ? 1 : 0;
}
