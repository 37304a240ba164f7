/*
 * litmus: an exhaustive checker of C11 atomics for the barrier pairs of
 * docs/locking.md, which no test on an x86 host can falsify (x86 is TSO:
 * a release written as relaxed, or a Dekker pair missing its full
 * barrier, behaves correctly there). It reads litmus tests written as
 * data (the .litmus files beside it, format in tests/model/README.md): two to
 * four threads of straight-line atomic operations, and outcomes over the
 * values read and the final memory that must be forbidden or allowed.
 *
 * The checker is axiomatic. It enumerates every candidate execution (a
 * modification order for each location, a reads-from source for each
 * load; an RMW reads from its immediate predecessor in modification
 * order, C11 7.17.3p12) and keeps those the C11 memory model accepts, in
 * the repaired form compilers for ARM and POWER actually implement:
 *
 *   sw  = [W >= release]; rs; rf; [R >= acquire]   (C11 5.1.2.4)
 *   rs  = (rf; [RMW])*                             (release sequence)
 *   hb  = (sb | sw)+                               (5.1.2.4)
 *   coherence: hb; eco? irreflexive, eco = (rf | mo | rb)+
 *                                                  (5.1.2.4, 7.17.3)
 *   seq_cst: psc = [SC]; scb; [SC] acyclic, with
 *     scb = sb | sb!=loc; hb; sb!=loc | hb|loc | mo | rb
 *                                                  (7.17.3p6, weakened
 *                                                   as C++20 restated it)
 *
 * The release sequence holds only the RMWs reading from the release
 * write, as C++20 narrowed it; C11's 5.1.2.4 also counts the releasing
 * thread's later plain stores. Both departures from the C11 text make
 * the model weaker, so it can only find more bad outcomes.
 *
 * Nothing forbids load buffering (sb | rf may be cyclic), as ARM allows
 * it; values still cannot come out of thin air, since every value a store
 * writes is a constant or an RMW of the value it read, and a cycle there
 * is rejected. seq_cst operations are not fences: a seq_cst RMW orders
 * nothing on other locations except through the seq_cst rule above and
 * the release/acquire it contains. A lock is an acquire RMW that must
 * read 0 and writes 1, an unlock a release store of 0: the executions in
 * which a lock would read 1 are those where the thread would still be
 * waiting, and are dropped.
 *
 * It owns the checker and nothing of mmud: the litmus files mirror the
 * code by hand, and say where.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EVENTS 64
#define MAX_THREADS 4
#define MAX_LOCS 16
#define MAX_REGS 32
#define MAX_CONSTS 64
#define MAX_ATOMS 16
#define MAX_CHECKS 16
#define MAX_NAME 32
#define MAX_TOKENS 16

typedef uint64_t bits_t; /* one row of a relation over events */

enum ord { ORD_RLX, ORD_ACQ, ORD_REL, ORD_ACQ_REL, ORD_SC };

static const char *const ord_names[] = { "relaxed", "acquire", "release",
					 "acq_rel", "seq_cst" };

enum opk {
	OPK_LOAD,
	OPK_STORE,
	OPK_FETCH_ADD,
	OPK_FETCH_SUB,
	OPK_FETCH_OR,
	OPK_FETCH_AND,
	OPK_EXCHANGE,
	OPK_LOCK,
	OPK_UNLOCK,
};

static const char *const opk_names[] = { "load",      "store",	  "fetch_add",
					 "fetch_sub", "fetch_or", "fetch_and",
					 "exchange",  "lock",	  "unlock" };

struct event {
	int thread; /* -1: the initial write of loc */
	int loc;
	enum opk op;
	enum ord ord;
	bool is_read, is_write;
	uint64_t operand; /* the value a store writes, an RMW's argument */
	bool has_expect; /* the read must see expect (lock) */
	uint64_t expect;
	int reg; /* register the read value goes to, or -1 */
	int line;
};

enum cmp { CMP_EQ, CMP_NE, CMP_HAS, CMP_LACKS };

/* An operand of an outcome: a register, a location's final value or a
 * constant. */
struct term {
	enum { TERM_REG, TERM_FINAL, TERM_CONST } kind;
	int idx;
	uint64_t value;
};

struct atom {
	struct term lhs, rhs;
	enum cmp cmp;
};

struct check {
	bool forbid; /* else allow: at least one execution must show it */
	int line;
	char text[160];
	int natoms;
	struct atom atoms[MAX_ATOMS];
	/* results */
	unsigned long matches;
	bool have_witness;
	uint64_t w_read[MAX_EVENTS], w_written[MAX_EVENTS];
	int w_rf[MAX_EVENTS];
};

struct litmus {
	char name[MAX_NAME * 2];
	int line;
	int nthreads;
	char thread_names[MAX_THREADS][MAX_NAME];
	int nlocs;
	char loc_names[MAX_LOCS][MAX_NAME];
	uint64_t loc_init[MAX_LOCS];
	int nregs;
	char reg_names[MAX_REGS][MAX_NAME];
	int nevents; /* events 0 .. nlocs-1 are the initial writes */
	struct event ev[MAX_EVENTS];
	int nchecks;
	struct check checks[MAX_CHECKS];
	/* enumeration state */
	int mo[MAX_LOCS][MAX_EVENTS]; /* each location's writes, in mo */
	int nmo[MAX_LOCS];
	int rf[MAX_EVENTS];
	uint64_t read_val[MAX_EVENTS], written_val[MAX_EVENTS];
	unsigned long candidates, consistent;
};

struct consts {
	int n;
	char names[MAX_CONSTS][MAX_NAME];
	uint64_t values[MAX_CONSTS];
};

static const char *path;
static bool verbose;

static void die(int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: ", path, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* ---- relations over events, as bit rows ---- */

static bool has(const bits_t *r, int i, int j)
{
	return (r[i] >> j) & 1;
}

static void closure(bits_t *r, int n)
{
	for (int k = 0; k < n; k++)
		for (int i = 0; i < n; i++)
			if (has(r, i, k))
				r[i] |= r[k];
}

static bool irreflexive(const bits_t *r, int n)
{
	for (int i = 0; i < n; i++)
		if (has(r, i, i))
			return false;
	return true;
}

/* out = a; b */
static void compose(bits_t *out, const bits_t *a, const bits_t *b, int n)
{
	for (int i = 0; i < n; i++) {
		bits_t row = 0;

		for (int j = 0; j < n; j++)
			if (has(a, i, j))
				row |= b[j];
		out[i] = row;
	}
}

static bool is_release(const struct event *e)
{
	return e->is_write &&
	       (e->ord == ORD_REL || e->ord == ORD_ACQ_REL || e->ord == ORD_SC);
}

static bool is_acquire(const struct event *e)
{
	return e->is_read &&
	       (e->ord == ORD_ACQ || e->ord == ORD_ACQ_REL || e->ord == ORD_SC);
}

/* The C11 consistency axioms of the opening comment, for the execution
 * in t->mo and t->rf. */
static bool consistent(const struct litmus *t)
{
	int n = t->nevents;
	bits_t sb[MAX_EVENTS] = { 0 }, rf[MAX_EVENTS] = { 0 };
	bits_t mo[MAX_EVENTS] = { 0 }, rb[MAX_EVENTS] = { 0 };
	bits_t hb[MAX_EVENTS], eco[MAX_EVENTS], tmp[MAX_EVENTS];
	bits_t sbnl[MAX_EVENTS], psc[MAX_EVENTS];
	bits_t sc = 0, sameloc[MAX_EVENTS] = { 0 };

	for (int i = 0; i < n; i++) {
		const struct event *a = &t->ev[i];

		if (a->ord == ORD_SC)
			sc |= (bits_t)1 << i;
		for (int j = 0; j < n; j++) {
			const struct event *b = &t->ev[j];

			if (a->loc == b->loc)
				sameloc[i] |= (bits_t)1 << j;
			/* Initial writes happen before everything. */
			if (i != j && b->thread >= 0 &&
			    (a->thread < 0 ||
			     (a->thread == b->thread && i < j)))
				sb[i] |= (bits_t)1 << j;
		}
	}
	for (int l = 0; l < t->nlocs; l++)
		for (int a = 0; a < t->nmo[l]; a++)
			for (int b = a + 1; b < t->nmo[l]; b++)
				mo[t->mo[l][a]] |= (bits_t)1 << t->mo[l][b];
	for (int r = 0; r < n; r++) {
		if (!t->ev[r].is_read)
			continue;
		rf[t->rf[r]] |= (bits_t)1 << r;
		/* rb = rf^-1; mo minus identity (an RMW is mo-after the write
		 * it reads). */
		rb[r] = mo[t->rf[r]] & ~((bits_t)1 << r);
	}

	/* sw: a release write, the RMWs reading from it in a chain (its
	 * release sequence), then an acquire read of any of them. */
	memcpy(hb, sb, sizeof(hb));
	for (int w = 0; w < n; w++) {
		bits_t rs;

		if (!is_release(&t->ev[w]))
			continue;
		rs = (bits_t)1 << w;
		for (;;) {
			bits_t more = rs;

			for (int e = 0; e < n; e++)
				if (t->ev[e].is_read && t->ev[e].is_write &&
				    ((rs >> t->rf[e]) & 1))
					more |= (bits_t)1 << e;
			if (more == rs)
				break;
			rs = more;
		}
		for (int r = 0; r < n; r++)
			if (is_acquire(&t->ev[r]) && ((rs >> t->rf[r]) & 1))
				hb[w] |= (bits_t)1 << r;
	}
	closure(hb, n);
	if (!irreflexive(hb, n))
		return false;

	for (int i = 0; i < n; i++)
		eco[i] = rf[i] | mo[i] | rb[i];
	closure(eco, n);
	compose(tmp, hb, eco, n);
	if (!irreflexive(tmp, n))
		return false;

	/* psc = [SC]; (sb | sb!=loc; hb; sb!=loc | hb|loc | mo | rb); [SC] */
	if (!sc)
		return true;
	for (int i = 0; i < n; i++)
		sbnl[i] = sb[i] & ~sameloc[i];
	compose(tmp, sbnl, hb, n);
	compose(psc, tmp, sbnl, n);
	for (int i = 0; i < n; i++) {
		bits_t row = sb[i] | psc[i] | (hb[i] & sameloc[i]) | mo[i] |
			     rb[i];

		psc[i] = (sc >> i) & 1 ? row & sc : 0;
	}
	closure(psc, n);
	return irreflexive(psc, n);
}

/* Values: stores write constants, an RMW writes f(what it read). Fails
 * on a cycle of RMWs reading each other (never consistent anyway) and
 * when a read that must see a value (a lock) does not. */
static bool compute_values(struct litmus *t)
{
	bool done[MAX_EVENTS] = { false };
	int left = t->nevents;

	while (left) {
		int progress = 0;

		for (int e = 0; e < t->nevents; e++) {
			const struct event *ev = &t->ev[e];
			uint64_t v;

			if (done[e])
				continue;
			if (!ev->is_read) {
				t->written_val[e] = ev->operand;
				done[e] = true;
				progress++;
				continue;
			}
			if (!done[t->rf[e]])
				continue;
			v = t->read_val[e] = t->written_val[t->rf[e]];
			if (ev->has_expect && v != ev->expect)
				return false;
			switch (ev->op) {
			case OPK_FETCH_ADD:
				t->written_val[e] = v + ev->operand;
				break;
			case OPK_FETCH_SUB:
				t->written_val[e] = v - ev->operand;
				break;
			case OPK_FETCH_OR:
				t->written_val[e] = v | ev->operand;
				break;
			case OPK_FETCH_AND:
				t->written_val[e] = v & ev->operand;
				break;
			case OPK_EXCHANGE:
			case OPK_LOCK:
				t->written_val[e] = ev->operand;
				break;
			default:
				break;
			}
			done[e] = true;
			progress++;
		}
		if (!progress)
			return false;
		left -= progress;
	}
	return true;
}

static uint64_t term_value(const struct litmus *t, const struct term *x)
{
	switch (x->kind) {
	case TERM_REG:
		for (int e = 0; e < t->nevents; e++)
			if (t->ev[e].reg == x->idx)
				return t->read_val[e];
		return 0;
	case TERM_FINAL:
		return t->written_val[t->mo[x->idx][t->nmo[x->idx] - 1]];
	case TERM_CONST:
		break;
	}
	return x->value;
}

static bool outcome_holds(const struct litmus *t, const struct check *c)
{
	for (int i = 0; i < c->natoms; i++) {
		const struct atom *a = &c->atoms[i];
		uint64_t l = term_value(t, &a->lhs), r = term_value(t, &a->rhs);
		bool ok = false;

		switch (a->cmp) {
		case CMP_EQ:
			ok = l == r;
			break;
		case CMP_NE:
			ok = l != r;
			break;
		case CMP_HAS:
			ok = (l & r) == r;
			break;
		case CMP_LACKS:
			ok = (l & r) == 0;
			break;
		}
		if (!ok)
			return false;
	}
	return true;
}

static void leaf(struct litmus *t)
{
	t->candidates++;
	/* An RMW reads from its immediate mo predecessor (atomicity). */
	for (int l = 0; l < t->nlocs; l++)
		for (int k = 1; k < t->nmo[l]; k++)
			if (t->ev[t->mo[l][k]].is_read)
				t->rf[t->mo[l][k]] = t->mo[l][k - 1];
	if (!compute_values(t) || !consistent(t))
		return;
	t->consistent++;
	for (int i = 0; i < t->nchecks; i++) {
		struct check *c = &t->checks[i];

		if (!outcome_holds(t, c))
			continue;
		c->matches++;
		if (c->have_witness)
			continue;
		c->have_witness = true;
		memcpy(c->w_read, t->read_val, sizeof(c->w_read));
		memcpy(c->w_written, t->written_val, sizeof(c->w_written));
		memcpy(c->w_rf, t->rf, sizeof(c->w_rf));
	}
}

/* Every reads-from choice of the plain loads, from event e on. */
static void enum_rf(struct litmus *t, int e)
{
	const struct event *ev;

	while (e < t->nevents && !(t->ev[e].is_read && !t->ev[e].is_write))
		e++;
	if (e == t->nevents) {
		leaf(t);
		return;
	}
	ev = &t->ev[e];
	for (int k = 0; k < t->nmo[ev->loc]; k++) {
		t->rf[e] = t->mo[ev->loc][k];
		enum_rf(t, e + 1);
	}
}

/* Every modification order of location l's writes (the initial write
 * first), then of the next location's. */
static void enum_mo(struct litmus *t, int l, int k)
{
	int *m = t->mo[l];

	if (l == t->nlocs) {
		enum_rf(t, 0);
		return;
	}
	if (k >= t->nmo[l]) {
		enum_mo(t, l + 1, 1);
		return;
	}
	for (int i = k; i < t->nmo[l]; i++) {
		int x = m[k];

		m[k] = m[i];
		m[i] = x;
		enum_mo(t, l, k + 1);
		m[i] = m[k];
		m[k] = x;
	}
}

static void describe_event(const struct litmus *t, int e, char *buf, size_t len)
{
	const struct event *ev = &t->ev[e];

	if (ev->thread < 0)
		snprintf(buf, len, "init %s", t->loc_names[ev->loc]);
	else
		snprintf(buf, len, "%s:%d %s %s", t->thread_names[ev->thread],
			 ev->line, opk_names[ev->op], t->loc_names[ev->loc]);
}

static void print_witness(const struct litmus *t, const struct check *c)
{
	char from[128];

	for (int e = t->nlocs; e < t->nevents; e++) {
		const struct event *ev = &t->ev[e];

		printf("      %-10s line %3d: %-9s %-14s %-7s",
		       t->thread_names[ev->thread], ev->line, opk_names[ev->op],
		       t->loc_names[ev->loc], ord_names[ev->ord]);
		if (ev->is_read) {
			describe_event(t, c->w_rf[e], from, sizeof(from));
			printf(" read %#" PRIx64 " (from %s)", c->w_read[e],
			       from);
			if (ev->reg >= 0)
				printf(" -> %s", t->reg_names[ev->reg]);
		}
		if (ev->is_write)
			printf(" wrote %#" PRIx64, c->w_written[e]);
		putchar('\n');
	}
}

/* Runs every check of t; returns the number that failed. */
static int run(struct litmus *t)
{
	int failed = 0;

	for (int e = 0; e < t->nevents; e++) {
		if (t->ev[e].is_write) {
			int l = t->ev[e].loc;

			t->mo[l][t->nmo[l]++] = e;
		}
	}
	enum_mo(t, 0, 1);
	printf("%s (line %d): %lu candidate executions, %lu consistent\n",
	       t->name, t->line, t->candidates, t->consistent);
	if (!t->consistent) {
		printf("  FAIL: no consistent execution (the test is vacuous)\n");
		failed++;
	}
	for (int i = 0; i < t->nchecks; i++) {
		struct check *c = &t->checks[i];
		bool ok = c->forbid ? c->matches == 0 : c->matches > 0;

		printf("  %s %s: %lu execution(s)\n", ok ? "ok  " : "FAIL",
		       c->text, c->matches);
		if (c->have_witness && (!ok || verbose)) {
			printf("    %s:\n",
			       c->forbid ? "counterexample" : "witness");
			print_witness(t, c);
		}
		if (!ok)
			failed++;
	}
	return failed;
}

/* ---- the litmus file format (tests/model/README.md) ---- */

static int find_name(char names[][MAX_NAME], int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(names[i], s))
			return i;
	return -1;
}

static int add_name(char names[][MAX_NAME], int *n, int max, const char *s,
		    int line)
{
	int i = find_name(names, *n, s);

	if (i >= 0)
		return i;
	if (*n == max)
		die(line, "too many names (at most %d)", max);
	if (strlen(s) >= MAX_NAME)
		die(line, "name too long: %s", s);
	strcpy(names[*n], s);
	return (*n)++;
}

static uint64_t parse_value(const struct consts *k, const char *s, int line)
{
	char *end;
	unsigned long long v;
	int i = find_name((char(*)[MAX_NAME])k->names, k->n, s);

	if (i >= 0)
		return k->values[i];
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		die(line, "not a value or constant: %s", s);
	return v;
}

static enum ord parse_ord(const char *s, int line)
{
	for (unsigned i = 0; i < sizeof(ord_names) / sizeof(ord_names[0]); i++)
		if (!strcmp(s, ord_names[i]))
			return (enum ord)i;
	die(line, "not a memory order: %s", s);
	return ORD_RLX;
}

static int loc_of(struct litmus *t, const char *s, int line)
{
	return add_name(t->loc_names, &t->nlocs, MAX_LOCS, s, line);
}

static struct event *new_event(struct litmus *t, int line)
{
	struct event *e;

	if (t->nthreads == 0)
		die(line, "an operation outside a thread");
	if (t->nevents == MAX_EVENTS)
		die(line, "too many operations (at most %d)", MAX_EVENTS);
	e = &t->ev[t->nevents++];
	memset(e, 0, sizeof(*e));
	e->thread = t->nthreads - 1;
	e->reg = -1;
	e->line = line;
	return e;
}

/* [REG =] OP LOC [VALUE] [ORDER] */
static void parse_op(struct litmus *t, const struct consts *k, char **tok,
		     int ntok, int line)
{
	int reg = -1, i = 0, op;
	struct event *e;

	if (ntok >= 2 && !strcmp(tok[1], "=")) {
		if (find_name(t->reg_names, t->nregs, tok[0]) >= 0)
			die(line, "register %s assigned twice", tok[0]);
		reg = add_name(t->reg_names, &t->nregs, MAX_REGS, tok[0], line);
		i = 2;
	}
	if (i >= ntok)
		die(line, "missing operation");
	for (op = 0; op <= OPK_UNLOCK; op++)
		if (!strcmp(tok[i], opk_names[op]))
			break;
	if (op > OPK_UNLOCK)
		die(line, "unknown operation: %s", tok[i]);
	if (i + 1 >= ntok)
		die(line, "%s needs a location", tok[i]);
	e = new_event(t, line);
	e->op = (enum opk)op;
	e->loc = loc_of(t, tok[i + 1], line);
	e->reg = reg;
	i += 2;
	switch (e->op) {
	case OPK_LOCK:
	case OPK_UNLOCK:
		if (i != ntok || reg >= 0)
			die(line, "lock and unlock take a location only");
		e->is_read = e->op == OPK_LOCK;
		e->is_write = true;
		e->has_expect = e->op == OPK_LOCK;
		e->operand = e->op == OPK_LOCK;
		e->ord = e->op == OPK_LOCK ? ORD_ACQ : ORD_REL;
		return;
	case OPK_LOAD:
		if (i + 1 != ntok)
			die(line, "load LOC ORDER");
		e->is_read = true;
		e->ord = parse_ord(tok[i], line);
		if (e->ord == ORD_REL || e->ord == ORD_ACQ_REL)
			die(line, "a load cannot be %s", tok[i]);
		return;
	default:
		if (i + 2 != ntok)
			die(line, "%s LOC VALUE ORDER", opk_names[e->op]);
		e->operand = parse_value(k, tok[i], line);
		e->ord = parse_ord(tok[i + 1], line);
		e->is_write = true;
		e->is_read = e->op != OPK_STORE;
		if (e->op == OPK_STORE &&
		    (e->ord == ORD_ACQ || e->ord == ORD_ACQ_REL))
			die(line, "a store cannot be %s", tok[i + 1]);
		if (reg >= 0 && !e->is_read)
			die(line, "a store returns nothing");
		return;
	}
}

static void parse_term(struct litmus *t, const struct consts *k, const char *s,
		       struct term *x, int line)
{
	size_t len = strlen(s);
	int i;

	if (len > 2 && s[0] == '[' && s[len - 1] == ']') {
		char name[MAX_NAME];

		if (len - 2 >= MAX_NAME)
			die(line, "name too long: %s", s);
		memcpy(name, s + 1, len - 2);
		name[len - 2] = 0;
		i = find_name(t->loc_names, t->nlocs, name);
		if (i < 0)
			die(line, "unknown location: %s", name);
		x->kind = TERM_FINAL;
		x->idx = i;
		return;
	}
	i = find_name(t->reg_names, t->nregs, s);
	if (i >= 0) {
		x->kind = TERM_REG;
		x->idx = i;
		return;
	}
	x->kind = TERM_CONST;
	x->value = parse_value(k, s, line);
}

/* forbid|allow TERM CMP TERM [&& TERM CMP TERM]... */
static void parse_check(struct litmus *t, const struct consts *k, char **tok,
			int ntok, int line, const char *text)
{
	struct check *c;
	int i = 1;

	if (t->nchecks == MAX_CHECKS)
		die(line, "too many outcomes (at most %d)", MAX_CHECKS);
	c = &t->checks[t->nchecks++];
	memset(c, 0, sizeof(*c));
	c->forbid = !strcmp(tok[0], "forbid");
	c->line = line;
	snprintf(c->text, sizeof(c->text), "%s", text);
	for (;;) {
		struct atom *a;

		if (i + 3 > ntok)
			die(line, "expected TERM ==|!=|has|lacks TERM");
		if (c->natoms == MAX_ATOMS)
			die(line, "too many terms");
		a = &c->atoms[c->natoms++];
		parse_term(t, k, tok[i], &a->lhs, line);
		if (!strcmp(tok[i + 1], "=="))
			a->cmp = CMP_EQ;
		else if (!strcmp(tok[i + 1], "!="))
			a->cmp = CMP_NE;
		else if (!strcmp(tok[i + 1], "has"))
			a->cmp = CMP_HAS;
		else if (!strcmp(tok[i + 1], "lacks"))
			a->cmp = CMP_LACKS;
		else
			die(line, "unknown comparison: %s", tok[i + 1]);
		parse_term(t, k, tok[i + 2], &a->rhs, line);
		i += 3;
		if (i == ntok)
			break;
		if (strcmp(tok[i], "&&") || ++i == ntok)
			die(line, "expected && and another comparison");
	}
}

static int tokenize(char *s, char **tok, int line)
{
	int n = 0;
	char *save;

	for (char *p = strtok_r(s, " \t\r\n", &save); p;
	     p = strtok_r(NULL, " \t\r\n", &save)) {
		if (n == MAX_TOKENS)
			die(line, "line too long");
		tok[n++] = p;
	}
	return n;
}

/* Reads path; runs each litmus test as its "end" is reached. Returns the
 * number of failed checks. */
static int run_file(FILE *f, const char *only)
{
	static struct litmus t;
	struct consts k = { 0 };
	char buf[512], text[512], *tok[MAX_TOKENS];
	bool in_test = false;
	int line = 0, failed = 0, ran = 0;

	while (fgets(buf, sizeof(buf), f)) {
		char *hash = strchr(buf, '#');
		int n;

		line++;
		if (hash)
			*hash = 0;
		snprintf(text, sizeof(text), "%s", buf);
		n = tokenize(buf, tok, line);
		if (!n)
			continue;
		if (!strcmp(tok[0], "const")) {
			if (n != 3 || k.n == MAX_CONSTS)
				die(line, "const NAME VALUE");
			snprintf(k.names[k.n], MAX_NAME, "%s", tok[1]);
			k.values[k.n] = parse_value(&k, tok[2], line);
			k.n++;
		} else if (!strcmp(tok[0], "litmus")) {
			if (in_test || n != 2)
				die(line, "litmus NAME (after the last end)");
			memset(&t, 0, sizeof(t));
			snprintf(t.name, sizeof(t.name), "%s", tok[1]);
			t.line = line;
			in_test = true;
		} else if (!in_test) {
			die(line, "%s outside a litmus test", tok[0]);
		} else if (!strcmp(tok[0], "init")) {
			if (n != 3 || t.nthreads)
				die(line, "init LOC VALUE, before the threads");
			t.loc_init[loc_of(&t, tok[1], line)] =
				parse_value(&k, tok[2], line);
		} else if (!strcmp(tok[0], "thread")) {
			if (n != 2 || t.nthreads == MAX_THREADS)
				die(line, "thread NAME (at most %d)",
				    MAX_THREADS);
			snprintf(t.thread_names[t.nthreads++], MAX_NAME, "%s",
				 tok[1]);
		} else if (!strcmp(tok[0], "forbid") ||
			   !strcmp(tok[0], "allow")) {
			char *s = text + strspn(text, " \t");

			size_t len = strcspn(s, "\r\n");

			while (len && isspace((unsigned char)s[len - 1]))
				len--;
			s[len] = 0;
			parse_check(&t, &k, tok, n, line, s);
		} else if (!strcmp(tok[0], "end")) {
			struct event ev[MAX_EVENTS];
			int nops = t.nevents;

			in_test = false;
			if (!t.nchecks)
				die(line, "%s: no forbid or allow", t.name);
			if (only && strcmp(only, t.name))
				continue;
			/* The initial writes go first, one per location. */
			if (nops + t.nlocs > MAX_EVENTS)
				die(line, "too many operations");
			memcpy(ev, t.ev, sizeof(ev));
			for (int l = 0; l < t.nlocs; l++) {
				memset(&t.ev[l], 0, sizeof(t.ev[l]));
				t.ev[l].thread = -1;
				t.ev[l].loc = l;
				t.ev[l].is_write = true;
				t.ev[l].operand = t.loc_init[l];
				t.ev[l].reg = -1;
			}
			memcpy(&t.ev[t.nlocs], ev, nops * sizeof(ev[0]));
			t.nevents = nops + t.nlocs;
			failed += run(&t);
			ran++;
		} else {
			parse_op(&t, &k, tok, n, line);
		}
	}
	if (in_test)
		die(line, "%s: missing end", t.name);
	if (!ran)
		die(line, only ? "no litmus test named %s" : "no litmus tests",
		    only);
	return failed;
}

static void usage(void)
{
	fprintf(stderr, "usage: litmus [-v] [-t NAME] FILE.litmus...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *only = NULL;
	int failed = 0, i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-v"))
			verbose = true;
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			only = argv[++i];
		else
			usage();
	}
	if (i == argc)
		usage();
	for (; i < argc; i++) {
		FILE *f = fopen(argv[i], "r");

		path = argv[i];
		if (!f) {
			fprintf(stderr, "%s: %s\n", path, strerror(errno));
			return 2;
		}
		failed += run_file(f, only);
		fclose(f);
	}
	if (failed) {
		printf("%d check(s) failed\n", failed);
		return 1;
	}
	printf("all checks passed\n");
	return 0;
}
