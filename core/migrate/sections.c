/*
 * What the migration stream carries (docs/MIGRATION.md, "Sections"): the
 * encoders the source calls, the decoders that check every field of a
 * payload before anything is stored, and migrate_load(), which reads a
 * whole stream into a destination VM's pieces.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "migrate_int.h"
#include "vcpu/x86/kvmclock.h"
#include "x86.h"

/* ---- a cursor over a payload ------------------------------------------ */

struct cur {
	uint8_t *w; /* writing */
	const uint8_t *p, *end; /* reading */
	const char *short_at; /* reading: the field that did not fit */
};

static void w8(struct cur *c, uint8_t v)
{
	*c->w++ = v;
}

static void w16(struct cur *c, uint16_t v)
{
	migrate_put16(c->w, v);
	c->w += 2;
}

static void w32(struct cur *c, uint32_t v)
{
	migrate_put32(c->w, v);
	c->w += 4;
}

static void w64(struct cur *c, uint64_t v)
{
	migrate_put64(c->w, v);
	c->w += 8;
}

/* Reading past the end sets short_at once and yields zeros, so a decoder
 * reads every field and reports the first one that was cut. */
static const uint8_t *take(struct cur *c, size_t n, const char *field)
{
	/* As large as the largest field taken: a page, or COM1's queue. */
	static const uint8_t zeros[PAGE_SIZE];
	const uint8_t *p = c->p;

	_Static_assert(DEV_SERIAL_RX_SIZE <= sizeof(zeros), "zeros too small");
	MMUD_ASSERT(n <= sizeof(zeros));
	if (c->short_at || (size_t)(c->end - c->p) < n) {
		if (!c->short_at)
			c->short_at = field;
		return zeros;
	}
	c->p += n;
	return p;
}

static uint8_t r8(struct cur *c, const char *f)
{
	return *take(c, 1, f);
}

static uint16_t r16(struct cur *c, const char *f)
{
	return migrate_get16(take(c, 2, f));
}

static uint32_t r32(struct cur *c, const char *f)
{
	return migrate_get32(take(c, 4, f));
}

static uint64_t r64(struct cur *c, const char *f)
{
	return migrate_get64(take(c, 8, f));
}

/* After a decoder read its last field: cut short, or bytes left over. */
static int cur_done(struct migrate_reader *r, const struct cur *c)
{
	if (c->short_at)
		return migrate_rfail(r, -EPROTO, "truncated at %s",
				     c->short_at);
	if (c->p != c->end)
		return migrate_rfail(r, -EPROTO,
				     "%td bytes after the last field",
				     c->end - c->p);
	return 0;
}

/* ---- the configuration ------------------------------------------------ */

int migrate_write_config(struct migrate_writer *w,
			 const struct migrate_config *cfg)
{
	struct cur c = { .w = w->sec };

	MMUD_ASSERT(cfg->nr_slots <= MIGRATE_MAX_SLOTS);
	w32(&c, cfg->nr_vcpus);
	w64(&c, cfg->ram_size);
	w64(&c, cfg->cpuid_sig);
	w32(&c, cfg->nr_slots);
	for (uint32_t i = 0; i < cfg->nr_slots; i++) {
		w32(&c, cfg->slots[i].id);
		w32(&c, cfg->slots[i].flags);
		w64(&c, cfg->slots[i].gpa);
		w64(&c, cfg->slots[i].size);
	}
	MMUD_ASSERT(cfg->nr_drives <= MIGRATE_MAX_DRIVES);
	w32(&c, cfg->nr_drives);
	for (uint32_t i = 0; i < cfg->nr_drives; i++) {
		w64(&c, cfg->drives[i].size);
		w32(&c, cfg->drives[i].flags);
	}
	return migrate_write_section(w, MIGRATE_SEC_CONFIG, w->sec,
				     (uint32_t)(c.w - w->sec));
}

int migrate_parse_config(struct migrate_reader *r, const uint8_t *p,
			 uint32_t len, struct migrate_config *cfg)
{
	struct cur c = { .p = p, .end = p + len };
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->nr_vcpus = r32(&c, "nr_vcpus");
	cfg->ram_size = r64(&c, "ram_size");
	cfg->cpuid_sig = r64(&c, "cpuid_sig");
	cfg->nr_slots = r32(&c, "nr_slots");
	if (c.short_at)
		return cur_done(r, &c);
	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > MIGRATE_MAX_VCPUS)
		return migrate_rfail(r, -EPROTO, "nr_vcpus %u out of range",
				     cfg->nr_vcpus);
	if (!cfg->ram_size || cfg->ram_size % PAGE_SIZE)
		return migrate_rfail(r, -EPROTO, "ram_size %#llx is invalid",
				     (unsigned long long)cfg->ram_size);
	if (cfg->nr_slots < 1 || cfg->nr_slots > MIGRATE_MAX_SLOTS)
		return migrate_rfail(r, -EPROTO, "nr_slots %u out of range",
				     cfg->nr_slots);
	for (uint32_t i = 0; i < cfg->nr_slots; i++) {
		struct migrate_slot *s = &cfg->slots[i];

		s->id = r32(&c, "slot id");
		s->flags = r32(&c, "slot flags");
		s->gpa = r64(&c, "slot gpa");
		s->size = r64(&c, "slot size");
		if (c.short_at)
			break;
		if (s->flags & ~MIGRATE_SLOT_READONLY)
			return migrate_rfail(r, -EPROTO,
					     "slot %u: unknown flags %#x",
					     s->id, s->flags);
		if (!s->size || s->size % PAGE_SIZE || s->gpa % PAGE_SIZE ||
		    s->gpa > (1ULL << 46) || s->size > (1ULL << 46) - s->gpa)
			return migrate_rfail(r, -EPROTO,
					     "slot %u: gpa %#llx size %#llx "
					     "out of range",
					     s->id, (unsigned long long)s->gpa,
					     (unsigned long long)s->size);
		if (i &&
		    s->gpa < cfg->slots[i - 1].gpa + cfg->slots[i - 1].size)
			return migrate_rfail(r, -EPROTO,
					     "slot %u: overlaps or is out of "
					     "order",
					     s->id);
		for (uint32_t j = 0; j < i; j++)
			if (cfg->slots[j].id == s->id)
				return migrate_rfail(r, -EPROTO,
						     "slot id %u twice", s->id);
	}
	cfg->nr_drives = r32(&c, "nr_drives");
	if (c.short_at)
		return cur_done(r, &c);
	if (cfg->nr_drives > MIGRATE_MAX_DRIVES)
		return migrate_rfail(r, -EPROTO, "nr_drives %u over %u",
				     cfg->nr_drives, MIGRATE_MAX_DRIVES);
	for (uint32_t i = 0; i < cfg->nr_drives; i++) {
		struct migrate_drive *d = &cfg->drives[i];

		d->size = r64(&c, "drive size");
		d->flags = r32(&c, "drive flags");
		if (c.short_at)
			break;
		if (d->flags &
		    ~(MIGRATE_DRIVE_READONLY | MIGRATE_DRIVE_DISCARD))
			return migrate_rfail(r, -EPROTO,
					     "drive %u: unknown flags %#x", i,
					     d->flags);
	}
	rc = cur_done(r, &c);
	return rc;
}

#define CFG_FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -EINVAL)

int migrate_config_match(const struct migrate_config *want,
			 const struct migrate_config *got, char *err,
			 size_t errlen)
{
	if (got->nr_vcpus != want->nr_vcpus)
		return CFG_FAIL("vCPU count: the stream has %u, this VM has %u",
				got->nr_vcpus, want->nr_vcpus);
	if (got->ram_size != want->ram_size)
		return CFG_FAIL("memory size: the stream has %llu bytes, this "
				"VM has %llu",
				(unsigned long long)got->ram_size,
				(unsigned long long)want->ram_size);
	if (got->cpuid_sig != want->cpuid_sig)
		return CFG_FAIL("CPUID: the stream's signature %#llx differs "
				"from this mmud's %#llx",
				(unsigned long long)got->cpuid_sig,
				(unsigned long long)want->cpuid_sig);
	for (uint32_t i = 0; i < got->nr_slots || i < want->nr_slots; i++) {
		const struct migrate_slot *g = &got->slots[i];
		const struct migrate_slot *m = &want->slots[i];

		if (i >= want->nr_slots)
			return CFG_FAIL("memslot %u (gpa %#llx size %#llx) is "
					"not in this VM",
					g->id, (unsigned long long)g->gpa,
					(unsigned long long)g->size);
		if (i >= got->nr_slots)
			return CFG_FAIL("memslot %u (gpa %#llx size %#llx) of "
					"this VM is not in the stream",
					m->id, (unsigned long long)m->gpa,
					(unsigned long long)m->size);
		if (g->id != m->id || g->gpa != m->gpa || g->size != m->size ||
		    g->flags != m->flags)
			return CFG_FAIL("memslot %u: the stream has id %u gpa "
					"%#llx size %#llx flags %#x, this VM "
					"id %u gpa %#llx size %#llx flags %#x",
					i, g->id, (unsigned long long)g->gpa,
					(unsigned long long)g->size, g->flags,
					m->id, (unsigned long long)m->gpa,
					(unsigned long long)m->size, m->flags);
	}
	/* The guest's drivers know each disk's size and mode: the
	 * destination must open the same images (shared storage). */
	if (got->nr_drives != want->nr_drives)
		return CFG_FAIL(
			"drive count: the stream has %u, this VM has %u",
			got->nr_drives, want->nr_drives);
	for (uint32_t i = 0; i < got->nr_drives; i++) {
		const struct migrate_drive *g = &got->drives[i];
		const struct migrate_drive *m = &want->drives[i];

		if (g->size != m->size)
			return CFG_FAIL(
				"drive %u ('%s'): the stream's image is "
				"%llu bytes, this VM's %llu",
				i, m->id, (unsigned long long)g->size,
				(unsigned long long)m->size);
		if ((g->flags ^ m->flags) & MIGRATE_DRIVE_READONLY)
			return CFG_FAIL(
				"drive %u ('%s'): readonly=%s in the "
				"stream, readonly=%s in this VM",
				i, m->id,
				g->flags & MIGRATE_DRIVE_READONLY ? "on" :
								    "off",
				m->flags & MIGRATE_DRIVE_READONLY ? "on" :
								    "off");
		if ((g->flags ^ m->flags) & MIGRATE_DRIVE_DISCARD)
			return CFG_FAIL(
				"drive %u ('%s'): discard=%s in the "
				"stream, discard=%s in this VM",
				i, m->id,
				g->flags & MIGRATE_DRIVE_DISCARD ? "unmap" :
								   "ignore",
				m->flags & MIGRATE_DRIVE_DISCARD ? "unmap" :
								   "ignore");
	}
	return 0;
}

/* ---- RAM -------------------------------------------------------------- */

/* Guest memory is shared with running vCPUs: read it with atomic loads
 * (docs/ARCHITECTURE.md, "Guest memory is shared memory"). Returns
 * whether every byte copied was zero. dst need not be aligned (it
 * follows a 9-byte entry head). */
static bool copy_guest_page(uint8_t *dst, hva_t src)
{
	const uint64_t *s = (const uint64_t *)src;
	uint64_t any = 0;

	for (size_t i = 0; i < PAGE_SIZE / 8; i++) {
		uint64_t v = __atomic_load_n(&s[i], __ATOMIC_RELAXED);

		memcpy(dst + 8 * i, &v, 8);
		any |= v;
	}
	return !any;
}

/*
 * What fd holds at a page: a hole (never written, or punched: reads as
 * zeros) or data, from lseek's SEEK_DATA and SEEK_HOLE, with the extent
 * the answer covers kept in *h for the next pages (the daemon sends
 * them in ascending order: a few calls a slot and pass). A hole's page
 * is sent as a zero page without being read, so sending does not
 * allocate it. A page the guest writes after the answer is in the dirty
 * log and sent again by a later pass, which starts with a new *h.
 */
static bool in_hole(struct migrate_holes *h, uint64_t off, uint64_t size)
{
	off_t d, e;

	if (h->fd < 0)
		return false;
	if (off >= h->lo && off < h->hi)
		return h->hole;
	d = lseek(h->fd, (off_t)off, SEEK_DATA);
	if (d < 0 && errno == ENXIO) {
		/* Nothing but a hole up to the end of the file. */
		*h = (struct migrate_holes){ h->fd, off, size, true };
		return true;
	}
	if (d < 0) {
		h->fd = -1; /* no answer: read every page */
		return false;
	}
	if ((uint64_t)d > off) {
		*h = (struct migrate_holes){ h->fd, off, (uint64_t)d, true };
		return true;
	}
	e = lseek(h->fd, (off_t)off, SEEK_HOLE);
	if (e <= (off_t)off) {
		h->fd = -1;
		return false;
	}
	*h = (struct migrate_holes){ h->fd, off, (uint64_t)e, false };
	return false;
}

int migrate_write_ram(struct migrate_writer *w, uint32_t slot, hva_t hva,
		      uint64_t size, const uint64_t *idx, size_t n,
		      struct migrate_ram_stats *stats)
{
	struct migrate_holes h = { .fd = -1 };

	return migrate_write_ram_fd(w, slot, hva, &h, size, idx, n, stats);
}

int migrate_write_ram_fd(struct migrate_writer *w, uint32_t slot, hva_t hva,
			 struct migrate_holes *holes, uint64_t size,
			 const uint64_t *idx, size_t n,
			 struct migrate_ram_stats *stats)
{
	uint64_t npages = size / PAGE_SIZE;

	while (n) {
		size_t batch = n < MIGRATE_RAM_BATCH ? n : MIGRATE_RAM_BATCH;
		struct cur c = { .w = w->sec };
		int rc;

		w32(&c, slot);
		w32(&c, (uint32_t)batch);
		for (size_t i = 0; i < batch; i++) {
			uint8_t *kind;

			if (idx[i] >= npages)
				return migrate_wfail(w, -EINVAL,
						     "RAM: page %llu outside "
						     "slot %u",
						     (unsigned long long)idx[i],
						     slot);
			w64(&c, idx[i]);
			kind = c.w++;
			if (in_hole(holes, idx[i] * PAGE_SIZE, size) ||
			    copy_guest_page(c.w, hva + idx[i] * PAGE_SIZE)) {
				*kind = MIGRATE_RAM_ZERO;
				if (stats)
					stats->duplicate++;
			} else {
				*kind = MIGRATE_RAM_PAGE;
				c.w += PAGE_SIZE;
				if (stats)
					stats->normal++;
			}
		}
		rc = migrate_write_section(w, MIGRATE_SEC_RAM, w->sec,
					   (uint32_t)(c.w - w->sec));
		if (rc)
			return rc;
		idx += batch;
		n -= batch;
	}
	return 0;
}

/*
 * A run of n consecutive pages of one kind from first; data[i]: page i's
 * bytes in the section (normal pages).
 */
static void store_run(const struct migrate_ram_target *t, uint64_t first,
		      uint64_t n, bool zero, const uint8_t *const *data)
{
	void *at = (void *)(t->hva + first * PAGE_SIZE);
	size_t len = (size_t)(n * PAGE_SIZE);

	if (zero) {
		/* The memory given back: a hole of the memfd reads as
		 * zeros, and one that is already a hole costs nothing.
		 * Memory that cannot punch holes is cleared. */
		if (madvise(at, len, MADV_REMOVE) < 0)
			memset(at, 0, len);
		return;
	}
	if (t->use_fd) {
		/*
		 * Written through the file rather than the mapping: the
		 * kernel copies into the pages it allocates, where a copy
		 * through the mapping would fault on every new page (and
		 * on a host that shadows page tables, pay for a shadow
		 * entry too). The guest's own accesses map them later.
		 */
		struct iovec iov[MIGRATE_RAM_BATCH];
		ssize_t k;

		for (uint64_t i = 0; i < n; i++)
			iov[i] = (struct iovec){ (void *)data[i], PAGE_SIZE };
		k = pwritev(t->fd, iov, (int)n, (off_t)(first * PAGE_SIZE));
		if (k == (ssize_t)len)
			return;
	}
	for (uint64_t i = 0; i < n; i++)
		memcpy((uint8_t *)at + i * PAGE_SIZE, data[i], PAGE_SIZE);
}

/*
 * Stores a checked section's pages (e: its first entry), each run of
 * consecutive pages of one kind at once (the bulk pass sends whole slots
 * in order).
 */
static void store_runs(const struct migrate_ram_target *t, const uint8_t *e,
		       uint32_t count)
{
	const uint8_t *data[MIGRATE_RAM_BATCH];
	uint64_t first = 0, n = 0;
	bool zero = false;

	for (uint32_t i = 0; i < count; i++) {
		uint64_t idx = migrate_get64(e);
		bool z = e[8] != MIGRATE_RAM_PAGE;

		if (n && (idx != first + n || z != zero)) {
			store_run(t, first, n, zero, data);
			n = 0;
		}
		if (!n) {
			first = idx;
			zero = z;
		}
		data[n++] = e + 9;
		e += 9 + (z ? 0 : PAGE_SIZE);
	}
	if (n)
		store_run(t, first, n, zero, data);
}

int migrate_load_ram(struct migrate_reader *r, const uint8_t *p, uint32_t len,
		     const struct migrate_ram_target *slots, size_t nr_slots,
		     struct migrate_ram_stats *stats)
{
	struct cur c = { .p = p, .end = p + len };
	const struct migrate_ram_target *t = NULL;
	uint32_t id, count, normal = 0;
	uint64_t npages;

	id = r32(&c, "slot");
	count = r32(&c, "page count");
	if (c.short_at)
		return cur_done(r, &c);
	for (size_t i = 0; i < nr_slots; i++)
		if (slots[i].id == id)
			t = &slots[i];
	if (!t)
		return migrate_rfail(r, -EPROTO, "slot %u is not in this VM",
				     id);
	if (!count || count > MIGRATE_RAM_BATCH)
		return migrate_rfail(r, -EPROTO, "page count %u out of range",
				     count);
	npages = t->size / PAGE_SIZE;
	/* First every index and kind, then the stores: a bad section
	 * writes nothing. */
	c.p = p + 8;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t idx = r64(&c, "page index");
		uint8_t kind = r8(&c, "page kind");

		if (kind == MIGRATE_RAM_PAGE)
			take(&c, PAGE_SIZE, "page data");
		if (c.short_at)
			return cur_done(r, &c);
		if (idx >= npages)
			return migrate_rfail(r, -EPROTO,
					     "page index %llu outside slot "
					     "%u (%llu pages)",
					     (unsigned long long)idx, id,
					     (unsigned long long)npages);
		if (kind > MIGRATE_RAM_PAGE)
			return migrate_rfail(r, -EPROTO,
					     "page %llu: unknown kind %u",
					     (unsigned long long)idx, kind);
		if (kind == MIGRATE_RAM_PAGE)
			normal++;
	}
	if (c.p != c.end)
		return cur_done(r, &c);
	store_runs(t, p + 8, count);
	if (stats) {
		stats->normal += normal;
		stats->duplicate += count - normal;
	}
	return 0;
}

/* ---- vCPU state ------------------------------------------------------- */

static void seg_out(struct migrate_vcpu *v, unsigned int i,
		    const struct x86_segment *s)
{
	v->seg[i].sel = s->sel;
	v->seg[i].base = s->base;
	v->seg[i].limit = s->limit;
	v->seg[i].attr = s->attr;
}

static void seg_in(struct x86_segment *s, const struct migrate_vcpu *v,
		   unsigned int i)
{
	s->sel = v->seg[i].sel;
	s->base = v->seg[i].base;
	s->limit = v->seg[i].limit;
	s->attr = v->seg[i].attr;
}

int migrate_vcpu_save(struct x86_cpu *cpu, uint32_t index,
		      struct migrate_vcpu *out)
{
	struct x86_regs regs;
	struct x86_sregs s;
	struct x86_misc_state m;
	int rc = x86_get_misc(cpu, &m);

	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	x86_get_regs(cpu, &regs);
	x86_get_sregs(cpu, &s);
	out->index = index;
	memcpy(out->gpr, regs.gpr, sizeof(out->gpr));
	out->rip = regs.rip;
	out->rflags = regs.rflags;
	for (unsigned int i = 0; i < 6; i++)
		seg_out(out, i, &s.seg[i]);
	seg_out(out, 6, &s.ldtr);
	seg_out(out, 7, &s.tr);
	out->gdt_base = s.gdt.base;
	out->gdt_limit = s.gdt.limit;
	out->idt_base = s.idt.base;
	out->idt_limit = s.idt.limit;
	out->cr0 = s.cr0;
	out->cr2 = s.cr2;
	out->cr3 = s.cr3;
	out->cr4 = s.cr4;
	out->cr8 = s.cr8;
	out->efer = s.efer;
	x86_get_fpu(cpu, out->fxsave);
	out->star = m.msrs.star;
	out->lstar = m.msrs.lstar;
	out->cstar = m.msrs.cstar;
	out->sfmask = m.msrs.sfmask;
	out->kernel_gs_base = m.msrs.kernel_gs_base;
	out->pat = m.msrs.pat;
	out->tsc_aux = m.msrs.tsc_aux;
	out->apic_base = m.msrs.apic_base;
	out->misc_enable = m.msrs.misc_enable;
	out->guest_tsc = m.guest_tsc;
	out->ev_pending = m.ev.pending;
	out->ev_vector = m.ev.vector;
	out->ev_kind = m.ev.kind;
	out->ev_has_error = m.ev.has_error;
	out->ev_error = m.ev.error;
	out->ev_return_rip = m.ev.return_rip;
	out->ev_cr2 = m.ev.cr2;
	out->delivering = m.delivering;
	out->int_shadow = m.int_shadow;
	out->nmi_latched = m.nmi_latched;
	out->nmi_blocked = m.nmi_blocked;
	out->halted = m.halted;
	return 0;
}

int migrate_vcpu_load(struct x86_cpu *cpu, const struct migrate_vcpu *in,
		      char *err, size_t errlen)
{
	struct x86_regs regs;
	struct x86_sregs s;
	struct x86_misc_state m;

	memset(&s, 0, sizeof(s));
	memset(&m, 0, sizeof(m));
	memcpy(regs.gpr, in->gpr, sizeof(regs.gpr));
	regs.rip = in->rip;
	regs.rflags = in->rflags;
	for (unsigned int i = 0; i < 6; i++)
		seg_in(&s.seg[i], in, i);
	seg_in(&s.ldtr, in, 6);
	seg_in(&s.tr, in, 7);
	s.gdt.base = in->gdt_base;
	s.gdt.limit = in->gdt_limit;
	s.idt.base = in->idt_base;
	s.idt.limit = in->idt_limit;
	s.cr0 = in->cr0;
	s.cr2 = in->cr2;
	s.cr3 = in->cr3;
	s.cr4 = in->cr4;
	s.cr8 = in->cr8;
	s.efer = in->efer;
	m.msrs = (struct x86_msrs){
		.star = in->star,
		.lstar = in->lstar,
		.cstar = in->cstar,
		.sfmask = in->sfmask,
		.kernel_gs_base = in->kernel_gs_base,
		.pat = in->pat,
		.tsc_aux = in->tsc_aux,
		.apic_base = in->apic_base,
		.misc_enable = in->misc_enable,
	};
	m.guest_tsc = in->guest_tsc;
	m.ev.pending = in->ev_pending;
	m.ev.vector = in->ev_vector;
	m.ev.kind = in->ev_kind;
	m.ev.has_error = in->ev_has_error;
	m.ev.error = in->ev_error;
	m.ev.return_rip = in->ev_return_rip;
	m.ev.cr2 = in->ev_cr2;
	m.delivering = in->delivering;
	m.int_shadow = in->int_shadow;
	m.nmi_latched = in->nmi_latched;
	m.nmi_blocked = in->nmi_blocked;
	m.halted = in->halted;
	if (!x86_load_state(cpu, &regs, &s, in->fxsave, &m, err, errlen))
		return -EINVAL;
	return 0;
}

int migrate_write_vcpu(struct migrate_writer *w, const struct migrate_vcpu *v)
{
	struct cur c = { .w = w->sec };

	w32(&c, v->index);
	for (unsigned int i = 0; i < 16; i++)
		w64(&c, v->gpr[i]);
	w64(&c, v->rip);
	w64(&c, v->rflags);
	for (unsigned int i = 0; i < 8; i++) {
		w16(&c, v->seg[i].sel);
		w64(&c, v->seg[i].base);
		w32(&c, v->seg[i].limit);
		w32(&c, v->seg[i].attr);
	}
	w64(&c, v->gdt_base);
	w16(&c, v->gdt_limit);
	w64(&c, v->idt_base);
	w16(&c, v->idt_limit);
	w64(&c, v->cr0);
	w64(&c, v->cr2);
	w64(&c, v->cr3);
	w64(&c, v->cr4);
	w64(&c, v->cr8);
	w64(&c, v->efer);
	memcpy(c.w, v->fxsave, 512);
	c.w += 512;
	w64(&c, v->star);
	w64(&c, v->lstar);
	w64(&c, v->cstar);
	w64(&c, v->sfmask);
	w64(&c, v->kernel_gs_base);
	w64(&c, v->pat);
	w64(&c, v->tsc_aux);
	w64(&c, v->apic_base);
	w64(&c, v->misc_enable);
	w64(&c, v->guest_tsc);
	w8(&c, v->ev_pending);
	w8(&c, v->ev_vector);
	w8(&c, v->ev_kind);
	w8(&c, v->ev_has_error);
	w32(&c, v->ev_error);
	w64(&c, v->ev_return_rip);
	w64(&c, v->ev_cr2);
	w16(&c, (uint16_t)v->delivering);
	w8(&c, v->int_shadow);
	w8(&c, v->nmi_latched);
	w8(&c, v->nmi_blocked);
	w8(&c, v->halted);
	MMUD_ASSERT(c.w - w->sec == MIGRATE_VCPU_LEN);
	return migrate_write_section(w, MIGRATE_SEC_VCPU, w->sec,
				     MIGRATE_VCPU_LEN);
}

static uint8_t rbool(struct migrate_reader *r, struct cur *c, const char *f,
		     int *rc)
{
	uint8_t v = r8(c, f);

	if (v > 1 && !*rc && !c->short_at)
		*rc = migrate_rfail(r, -EPROTO, "%s %u is not 0 or 1", f, v);
	return v;
}

int migrate_parse_vcpu(struct migrate_reader *r, const uint8_t *p, uint32_t len,
		       struct migrate_vcpu *v)
{
	struct cur c = { .p = p, .end = p + len };
	int rc = 0;

	memset(v, 0, sizeof(*v));
	v->index = r32(&c, "index");
	for (unsigned int i = 0; i < 16; i++)
		v->gpr[i] = r64(&c, "gpr");
	v->rip = r64(&c, "rip");
	v->rflags = r64(&c, "rflags");
	for (unsigned int i = 0; i < 8; i++) {
		v->seg[i].sel = r16(&c, "segment selector");
		v->seg[i].base = r64(&c, "segment base");
		v->seg[i].limit = r32(&c, "segment limit");
		v->seg[i].attr = r32(&c, "segment attributes");
	}
	v->gdt_base = r64(&c, "gdt base");
	v->gdt_limit = r16(&c, "gdt limit");
	v->idt_base = r64(&c, "idt base");
	v->idt_limit = r16(&c, "idt limit");
	v->cr0 = r64(&c, "cr0");
	v->cr2 = r64(&c, "cr2");
	v->cr3 = r64(&c, "cr3");
	v->cr4 = r64(&c, "cr4");
	v->cr8 = r64(&c, "cr8");
	v->efer = r64(&c, "efer");
	memcpy(v->fxsave, take(&c, 512, "fxsave image"), 512);
	v->star = r64(&c, "star");
	v->lstar = r64(&c, "lstar");
	v->cstar = r64(&c, "cstar");
	v->sfmask = r64(&c, "sfmask");
	v->kernel_gs_base = r64(&c, "kernel_gs_base");
	v->pat = r64(&c, "pat");
	v->tsc_aux = r64(&c, "tsc_aux");
	v->apic_base = r64(&c, "apic_base");
	v->misc_enable = r64(&c, "misc_enable");
	v->guest_tsc = r64(&c, "tsc");
	v->ev_pending = rbool(r, &c, "event pending", &rc);
	v->ev_vector = r8(&c, "event vector");
	v->ev_kind = r8(&c, "event kind");
	v->ev_has_error = rbool(r, &c, "event has_error", &rc);
	v->ev_error = r32(&c, "event error code");
	v->ev_return_rip = r64(&c, "event return rip");
	v->ev_cr2 = r64(&c, "event cr2");
	v->delivering = (int16_t)r16(&c, "delivering");
	v->int_shadow = r8(&c, "interrupt shadow");
	v->nmi_latched = rbool(r, &c, "nmi latched", &rc);
	v->nmi_blocked = rbool(r, &c, "nmi blocked", &rc);
	v->halted = rbool(r, &c, "halted", &rc);
	if (rc)
		return rc;
	rc = cur_done(r, &c);
	if (rc)
		return rc;
	if (v->index >= MIGRATE_MAX_VCPUS)
		return migrate_rfail(r, -EPROTO, "index %u out of range",
				     v->index);
	return 0;
}

/* ---- COM1 and the console --------------------------------------------- */

int migrate_write_serial(struct migrate_writer *w,
			 const struct dev_serial_state *st)
{
	struct cur c = { .w = w->sec };

	MMUD_ASSERT(st->rx_len <= DEV_SERIAL_RX_SIZE);
	w8(&c, st->ier);
	w8(&c, st->lcr);
	w8(&c, st->mcr);
	w8(&c, st->scr);
	w8(&c, st->fcr);
	w16(&c, st->divisor);
	w32(&c, st->rx_len);
	memcpy(c.w, st->rx, st->rx_len);
	c.w += st->rx_len;
	return migrate_write_section(w, MIGRATE_SEC_SERIAL, w->sec,
				     (uint32_t)(c.w - w->sec));
}

int migrate_parse_serial(struct migrate_reader *r, const uint8_t *p,
			 uint32_t len, struct dev_serial_state *st)
{
	struct cur c = { .p = p, .end = p + len };

	memset(st, 0, sizeof(*st));
	st->ier = r8(&c, "ier");
	st->lcr = r8(&c, "lcr");
	st->mcr = r8(&c, "mcr");
	st->scr = r8(&c, "scr");
	st->fcr = r8(&c, "fcr");
	st->divisor = r16(&c, "divisor");
	st->rx_len = r32(&c, "rx_len");
	if (!c.short_at && st->rx_len > DEV_SERIAL_RX_SIZE)
		return migrate_rfail(r, -EPROTO, "rx_len %u over %u",
				     st->rx_len, DEV_SERIAL_RX_SIZE);
	if (!c.short_at)
		memcpy(st->rx, take(&c, st->rx_len, "receive queue"),
		       st->rx_len);
	return cur_done(r, &c);
}

int migrate_write_console(struct migrate_writer *w, const void *buf, size_t len)
{
	MMUD_ASSERT(len <= MIGRATE_MAX_CONSOLE);
	return migrate_write_section(w, MIGRATE_SEC_CONSOLE, buf,
				     (uint32_t)len);
}

/* ---- interrupt and time state ---------------------------------------- */

void migrate_vcpu_irq_save(struct x86_cpu *cpu, struct dev_lapic *lapic,
			   const struct x86_kvmclock *kc, uint32_t index,
			   uint64_t now_ns, struct migrate_vcpu_irq *out)
{
	struct x86_debugregs d;

	memset(out, 0, sizeof(*out));
	out->index = index;
	dev_lapic_save(lapic, now_ns, &out->lapic);
	out->kvm_system_time = kc->system_time_msr;
	out->kvm_wall_clock = kc->wall_clock_msr;
	out->kvm_time_version = kc->time_version;
	out->kvm_wall_version = kc->wall_version;
	out->kvm_time_written = kc->time_written;
	x86_get_debugregs(cpu, &d);
	memcpy(out->dr, d.dr, sizeof(out->dr));
	out->dr6 = d.dr6;
	out->dr7 = d.dr7;
}

int migrate_vcpu_irq_load(struct x86_cpu *cpu, struct dev_lapic *lapic,
			  struct x86_kvmclock *kc,
			  const struct migrate_vcpu_irq *in, uint64_t now_ns,
			  char *err, size_t errlen)
{
	struct x86_debugregs d, old;

	/* kvmclock's versions are even between updates (the pvclock
	 * protocol: odd only while the structure is being written). */
	if ((in->kvm_time_version & 1) || (in->kvm_wall_version & 1)) {
		snprintf(err, errlen, "kvmclock version %u/%u is odd",
			 in->kvm_time_version, in->kvm_wall_version);
		return -EINVAL;
	}
	if (in->kvm_time_written > 1) {
		snprintf(err, errlen, "kvmclock written %u is not 0 or 1",
			 in->kvm_time_written);
		return -EINVAL;
	}
	memcpy(d.dr, in->dr, sizeof(d.dr));
	d.dr6 = in->dr6;
	d.dr7 = in->dr7;
	/* The debug registers first (checked, then set), then the APIC,
	 * whose refusal puts them back: a refused section changes none. */
	x86_get_debugregs(cpu, &old);
	if (!x86_set_debugregs(cpu, &d, err, errlen))
		return -EINVAL;
	if (!dev_lapic_load(lapic, &in->lapic, now_ns, err, errlen)) {
		x86_set_debugregs(cpu, &old, err, 0);
		return -EINVAL;
	}
	kc->system_time_msr = in->kvm_system_time;
	kc->wall_clock_msr = in->kvm_wall_clock;
	kc->time_version = in->kvm_time_version;
	kc->wall_version = in->kvm_wall_version;
	kc->time_written = in->kvm_time_written;
	return 0;
}

int migrate_write_vcpu_irq(struct migrate_writer *w,
			   const struct migrate_vcpu_irq *v)
{
	const struct dev_lapic_saved *l = &v->lapic;
	struct cur c = { .w = w->sec };

	w32(&c, v->index);
	w64(&c, l->base);
	w32(&c, l->id);
	w32(&c, l->tpr);
	w32(&c, l->ldr);
	w32(&c, l->dfr);
	w32(&c, l->svr);
	w32(&c, l->esr);
	w32(&c, l->esr_pending);
	w32(&c, l->icr_lo);
	w32(&c, l->icr_hi);
	for (unsigned int i = 0; i < 6; i++)
		w32(&c, l->lvt[i]);
	for (unsigned int i = 0; i < 8; i++)
		w32(&c, l->irr[i]);
	for (unsigned int i = 0; i < 8; i++)
		w32(&c, l->isr[i]);
	for (unsigned int i = 0; i < 8; i++)
		w32(&c, l->tmr[i]);
	w32(&c, l->timer_initial);
	w32(&c, l->timer_divide);
	w8(&c, l->timer_armed);
	w64(&c, l->timer_remaining_ns);
	w64(&c, l->tsc_deadline);
	w8(&c, l->wait_for_sipi);
	w32(&c, l->sipis);
	w32(&c, (uint32_t)l->sipi_vector);
	w64(&c, v->kvm_system_time);
	w64(&c, v->kvm_wall_clock);
	w32(&c, v->kvm_time_version);
	w32(&c, v->kvm_wall_version);
	w8(&c, v->kvm_time_written);
	for (unsigned int i = 0; i < 4; i++)
		w64(&c, v->dr[i]);
	w64(&c, v->dr6);
	w64(&c, v->dr7);
	w8(&c, v->vcpu_wait_sipi);
	MMUD_ASSERT(c.w - w->sec == MIGRATE_VCPU_IRQ_LEN);
	return migrate_write_section(w, MIGRATE_SEC_VCPU_IRQ, w->sec,
				     MIGRATE_VCPU_IRQ_LEN);
}

int migrate_parse_vcpu_irq(struct migrate_reader *r, const uint8_t *p,
			   uint32_t len, struct migrate_vcpu_irq *v)
{
	struct dev_lapic_saved *l = &v->lapic;
	struct cur c = { .p = p, .end = p + len };
	int rc = 0;

	memset(v, 0, sizeof(*v));
	v->index = r32(&c, "index");
	l->base = r64(&c, "apic base");
	l->id = r32(&c, "apic id");
	l->tpr = r32(&c, "apic tpr");
	l->ldr = r32(&c, "apic ldr");
	l->dfr = r32(&c, "apic dfr");
	l->svr = r32(&c, "apic svr");
	l->esr = r32(&c, "apic esr");
	l->esr_pending = r32(&c, "apic esr pending");
	l->icr_lo = r32(&c, "apic icr low");
	l->icr_hi = r32(&c, "apic icr high");
	for (unsigned int i = 0; i < 6; i++)
		l->lvt[i] = r32(&c, "apic lvt");
	for (unsigned int i = 0; i < 8; i++)
		l->irr[i] = r32(&c, "apic irr");
	for (unsigned int i = 0; i < 8; i++)
		l->isr[i] = r32(&c, "apic isr");
	for (unsigned int i = 0; i < 8; i++)
		l->tmr[i] = r32(&c, "apic tmr");
	l->timer_initial = r32(&c, "apic timer initial count");
	l->timer_divide = r32(&c, "apic timer divide");
	l->timer_armed = rbool(r, &c, "apic timer armed", &rc);
	l->timer_remaining_ns = r64(&c, "apic timer remaining");
	l->tsc_deadline = r64(&c, "apic tsc deadline");
	l->wait_for_sipi = rbool(r, &c, "apic wait for sipi", &rc);
	l->sipis = r32(&c, "apic sipis");
	l->sipi_vector = (int32_t)r32(&c, "apic sipi vector");
	v->kvm_system_time = r64(&c, "kvmclock system time");
	v->kvm_wall_clock = r64(&c, "kvmclock wall clock");
	v->kvm_time_version = r32(&c, "kvmclock time version");
	v->kvm_wall_version = r32(&c, "kvmclock wall version");
	v->kvm_time_written = rbool(r, &c, "kvmclock written", &rc);
	for (unsigned int i = 0; i < 4; i++)
		v->dr[i] = r64(&c, "dr0-3");
	v->dr6 = r64(&c, "dr6");
	v->dr7 = r64(&c, "dr7");
	v->vcpu_wait_sipi = rbool(r, &c, "vcpu waits for sipi", &rc);
	if (rc)
		return rc;
	rc = cur_done(r, &c);
	if (rc)
		return rc;
	if (v->index >= MIGRATE_MAX_VCPUS)
		return migrate_rfail(r, -EPROTO, "index %u out of range",
				     v->index);
	return 0;
}

void migrate_vm_irq_save(struct dev_ioapic *io, struct dev_serial *com1,
			 struct migrate_vm_irq *out)
{
	memset(out, 0, sizeof(*out));
	dev_ioapic_save(io, &out->ioapic);
	dev_serial_save_irq(com1, &out->com1);
}

int migrate_vm_irq_load(struct dev_ioapic *io, struct dev_serial *com1,
			const struct migrate_vm_irq *in, char *err,
			size_t errlen)
{
	/* COM1's check cannot fail after the IOAPIC loaded: check it
	 * first, so that a refusal changes neither. */
	if (in->com1.msr_delta & ~0x0f) {
		snprintf(err, errlen, "COM1 msr_delta %#x out of range",
			 in->com1.msr_delta);
		return -EINVAL;
	}
	if (!dev_ioapic_load(io, &in->ioapic, err, errlen))
		return -EINVAL;
	if (!dev_serial_load_irq(com1, &in->com1, err, errlen))
		return -EINVAL;
	return 0;
}

int migrate_write_vm_irq(struct migrate_writer *w,
			 const struct migrate_vm_irq *v)
{
	struct cur c = { .w = w->sec };

	w8(&c, v->ioapic.id);
	w8(&c, v->ioapic.arb);
	w8(&c, v->ioapic.ioregsel);
	w32(&c, v->ioapic.pin_levels);
	for (unsigned int i = 0; i < DEV_IOAPIC_PINS; i++)
		w64(&c, v->ioapic.redir[i]);
	w8(&c, v->com1.thre_pending);
	w8(&c, v->com1.msr_delta);
	MMUD_ASSERT(c.w - w->sec == MIGRATE_VM_IRQ_LEN);
	return migrate_write_section(w, MIGRATE_SEC_VM_IRQ, w->sec,
				     MIGRATE_VM_IRQ_LEN);
}

int migrate_parse_vm_irq(struct migrate_reader *r, const uint8_t *p,
			 uint32_t len, struct migrate_vm_irq *v)
{
	struct cur c = { .p = p, .end = p + len };
	int rc = 0;

	_Static_assert(DEV_IOAPIC_PINS == 24, "the section has 24 entries");
	memset(v, 0, sizeof(*v));
	v->ioapic.id = r8(&c, "ioapic id");
	v->ioapic.arb = r8(&c, "ioapic arbitration id");
	v->ioapic.ioregsel = r8(&c, "ioapic ioregsel");
	v->ioapic.pin_levels = r32(&c, "ioapic pin levels");
	for (unsigned int i = 0; i < DEV_IOAPIC_PINS; i++)
		v->ioapic.redir[i] = r64(&c, "ioapic redirection entry");
	v->com1.thre_pending = rbool(r, &c, "COM1 thre pending", &rc);
	v->com1.msr_delta = r8(&c, "COM1 msr delta");
	if (rc)
		return rc;
	return cur_done(r, &c);
}

/* ---- virtio-blk drives ------------------------------------------------ */

int migrate_write_virtio_blk(struct migrate_writer *w,
			     const struct migrate_virtio_blk *v)
{
	const struct virtio_mmio_state *st = &v->st;
	struct cur c = { .w = w->sec };

	size_t held = 0;

	MMUD_ASSERT(st->nr_queues >= 1 &&
		    st->nr_queues <= VIRTIO_MMIO_MAX_QUEUES);
	w32(&c, v->index);
	w32(&c, st->nr_queues);
	w8(&c, st->status);
	w32(&c, st->dev_feat_sel);
	w32(&c, st->drv_feat_sel);
	w32(&c, st->queue_sel);
	w64(&c, st->driver_features);
	w32(&c, st->config_generation);
	w32(&c, st->isr);
	for (uint32_t i = 0; i < st->nr_queues; i++) {
		const struct virtio_mmio_queue_state *q = &st->q[i];

		w32(&c, q->num);
		w8(&c, q->ready);
		w64(&c, q->desc);
		w64(&c, q->avail);
		w64(&c, q->used);
		w16(&c, q->last_avail);
		w16(&c, q->used_idx);
		w16(&c, q->signalled_used);
		w8(&c, q->signalled_valid);
		/* Version 4: the requests held for a retry. */
		MMUD_ASSERT(q->nr_held <= VIRTQ_MAX_SIZE);
		w16(&c, q->nr_held);
		for (unsigned int k = 0; k < q->nr_held; k++)
			w16(&c, q->held[k]);
		held += q->nr_held;
	}
	MMUD_ASSERT((size_t)(c.w - w->sec) ==
		    MIGRATE_VIRTIO_BLK_FIXED +
			    st->nr_queues * MIGRATE_VIRTIO_QUEUE_LEN +
			    2 * held);
	return migrate_write_section(w, MIGRATE_SEC_VIRTIO_BLK, w->sec,
				     (uint32_t)(c.w - w->sec));
}

int migrate_parse_virtio_blk(struct migrate_reader *r, const uint8_t *p,
			     uint32_t len, struct migrate_virtio_blk *v)
{
	struct virtio_mmio_state *st = &v->st;
	struct cur c = { .p = p, .end = p + len };
	int rc = 0;

	memset(v, 0, sizeof(*v));
	v->index = r32(&c, "drive index");
	st->nr_queues = r32(&c, "queue count");
	if (c.short_at)
		return cur_done(r, &c);
	if (v->index >= MIGRATE_MAX_DRIVES)
		return migrate_rfail(r, -EPROTO, "drive index %u over %u",
				     v->index, MIGRATE_MAX_DRIVES);
	if (st->nr_queues < 1 || st->nr_queues > VIRTIO_MMIO_MAX_QUEUES)
		return migrate_rfail(r, -EPROTO,
				     "drive %u: queue count %u out of range",
				     v->index, st->nr_queues);
	st->status = r8(&c, "status");
	st->dev_feat_sel = r32(&c, "device features select");
	st->drv_feat_sel = r32(&c, "driver features select");
	st->queue_sel = r32(&c, "queue select");
	st->driver_features = r64(&c, "driver features");
	st->config_generation = r32(&c, "config generation");
	st->isr = r32(&c, "interrupt status");
	for (uint32_t i = 0; i < st->nr_queues; i++) {
		struct virtio_mmio_queue_state *q = &st->q[i];

		q->num = r32(&c, "queue size");
		q->ready = rbool(r, &c, "queue ready", &rc);
		q->desc = r64(&c, "queue descriptor area");
		q->avail = r64(&c, "queue driver area");
		q->used = r64(&c, "queue device area");
		q->last_avail = r16(&c, "queue last_avail");
		q->used_idx = r16(&c, "queue used_idx");
		q->signalled_used = r16(&c, "queue signalled_used");
		q->signalled_valid = rbool(r, &c, "queue signalled_valid", &rc);
		if (rc)
			return rc;
		q->nr_held = r16(&c, "queue held count");
		if (q->nr_held > VIRTQ_MAX_SIZE)
			return migrate_rfail(r, -EPROTO,
					     "drive %u: queue %u: %u held "
					     "requests, over %u",
					     v->index, i, q->nr_held,
					     VIRTQ_MAX_SIZE);
		for (unsigned int k = 0; k < q->nr_held; k++)
			q->held[k] = r16(&c, "queue held head");
	}
	return cur_done(r, &c);
}

/* ---- the source's run state ------------------------------------------- */

static const char *const runstate_names[MIGRATE_RS_COUNT] = {
	[MIGRATE_RS_RUNNING] = "running",
	[MIGRATE_RS_PAUSED] = "paused",
	[MIGRATE_RS_IO_ERROR] = "io-error",
	[MIGRATE_RS_PRELAUNCH] = "prelaunch",
	[MIGRATE_RS_POSTMIGRATE] = "postmigrate",
	[MIGRATE_RS_SHUTDOWN] = "shutdown",
	[MIGRATE_RS_GUEST_PANICKED] = "guest-panicked",
	[MIGRATE_RS_INTERNAL_ERROR] = "internal-error",
};

const char *migrate_runstate_name(enum migrate_runstate rs)
{
	return (unsigned int)rs < MIGRATE_RS_COUNT ? runstate_names[rs] : NULL;
}

int migrate_runstate_parse(const char *name, size_t len,
			   enum migrate_runstate *out)
{
	for (unsigned int i = 0; i < MIGRATE_RS_COUNT; i++) {
		if (strlen(runstate_names[i]) == len &&
		    !memcmp(runstate_names[i], name, len)) {
			*out = i;
			return 0;
		}
	}
	return -EINVAL;
}

/* The name without its NUL: QEMU's global state is a string too. */
int migrate_write_runstate(struct migrate_writer *w, enum migrate_runstate rs)
{
	const char *name = migrate_runstate_name(rs);

	MMUD_ASSERT(name && strlen(name) <= MIGRATE_RUNSTATE_MAX_LEN);
	return migrate_write_section(w, MIGRATE_SEC_RUNSTATE,
				     (const uint8_t *)name,
				     (uint32_t)strlen(name));
}

int migrate_parse_runstate(struct migrate_reader *r, const uint8_t *p,
			   uint32_t len, enum migrate_runstate *rs)
{
	bool text = len > 0;

	if (!migrate_runstate_parse((const char *)p, len, rs))
		return 0;
	/* Named back only when it is printable text. */
	for (uint32_t i = 0; i < len; i++)
		text &= p[i] >= 0x20 && p[i] < 0x7f;
	if (text)
		return migrate_rfail(r, -EPROTO,
				     "run state '%.*s' is not one a source "
				     "can be in",
				     (int)len, (const char *)p);
	return migrate_rfail(r, -EPROTO,
			     "run state of %u bytes is not a run state name",
			     len);
}

/* ---- loading a whole stream ------------------------------------------- */

int migrate_load(struct migrate_reader *r, const struct migrate_dest *dest,
		 struct migrate_ram_stats *stats)
{
	struct migrate_config *cfg = malloc(sizeof(*cfg));
	struct migrate_vcpu *v = malloc(sizeof(*v));
	struct dev_serial_state *ss = malloc(sizeof(*ss));
	struct migrate_vcpu_irq *vi = malloc(sizeof(*vi));
	struct migrate_vm_irq *mi = malloc(sizeof(*mi));
	struct migrate_virtio_blk *vb = malloc(sizeof(*vb));
	bool seen[MIGRATE_MAX_VCPUS] = { false };
	bool seen_irq[MIGRATE_MAX_VCPUS] = { false };
	bool seen_blk[MIGRATE_MAX_DRIVES] = { false };
	bool have_config = false, have_serial = false, have_vm_irq = false;
	bool have_runstate = false;
	enum migrate_runstate rs;
	uint32_t nr_seen = 0, nr_irq = 0, nr_blk = 0;
	char msg[200];
	int rc;

	if (!cfg || !v || !ss || !vi || !mi || !vb) {
		rc = migrate_rfail(r, -ENOMEM, "out of memory");
		goto out;
	}
	rc = migrate_read_header(r);
	while (!rc) {
		const uint8_t *p;
		uint16_t type;
		uint32_t len;

		rc = migrate_read_section(r, &type, &p, &len);
		if (rc)
			break;
		if (!have_config && type != MIGRATE_SEC_CONFIG) {
			rc = migrate_rfail(r, -EPROTO,
					   "the configuration must come first");
			break;
		}
		switch (type) {
		case MIGRATE_SEC_CONFIG:
			if (have_config) {
				rc = migrate_rfail(r, -EPROTO,
						   "a second configuration");
				break;
			}
			rc = migrate_parse_config(r, p, len, cfg);
			if (!rc && migrate_config_match(dest->config, cfg, msg,
							sizeof(msg)))
				rc = migrate_rfail(r, -EINVAL, "%s", msg);
			have_config = true;
			break;
		case MIGRATE_SEC_RAM:
			rc = migrate_load_ram(r, p, len, dest->slots,
					      dest->nr_slots, stats);
			break;
		case MIGRATE_SEC_VCPU:
			rc = migrate_parse_vcpu(r, p, len, v);
			if (rc)
				break;
			if (v->index >= cfg->nr_vcpus || seen[v->index]) {
				rc = migrate_rfail(
					r, -EPROTO,
					"vCPU %u unexpected or twice",
					v->index);
				break;
			}
			if (migrate_vcpu_load(dest->cpus[v->index], v, msg,
					      sizeof(msg))) {
				rc = migrate_rfail(r, -EINVAL, "vCPU %u: %s",
						   v->index, msg);
				break;
			}
			seen[v->index] = true;
			nr_seen++;
			break;
		case MIGRATE_SEC_SERIAL:
			if (!dest->serial || have_serial) {
				rc = migrate_rfail(r, -EPROTO,
						   "unexpected or twice");
				break;
			}
			rc = migrate_parse_serial(r, p, len, ss);
			if (!rc && !dev_serial_load(dest->serial, ss, msg,
						    sizeof(msg)))
				rc = migrate_rfail(r, -EINVAL, "%s", msg);
			have_serial = true;
			break;
		case MIGRATE_SEC_VCPU_IRQ:
			rc = migrate_parse_vcpu_irq(r, p, len, vi);
			if (rc)
				break;
			/* After its vCPU's section, once. */
			if (!dest->lapics || vi->index >= cfg->nr_vcpus ||
			    !seen[vi->index] || seen_irq[vi->index]) {
				rc = migrate_rfail(
					r, -EPROTO,
					"vCPU %u: unexpected, before "
					"its vCPU section or twice",
					vi->index);
				break;
			}
			if (migrate_vcpu_irq_load(dest->cpus[vi->index],
						  dest->lapics[vi->index],
						  dest->kvmclocks[vi->index],
						  vi, dest->now_ns, msg,
						  sizeof(msg))) {
				rc = migrate_rfail(r, -EINVAL, "vCPU %u: %s",
						   vi->index, msg);
				break;
			}
			seen_irq[vi->index] = true;
			nr_irq++;
			break;
		case MIGRATE_SEC_VM_IRQ:
			if (!dest->ioapic || !dest->serial || have_vm_irq) {
				rc = migrate_rfail(r, -EPROTO,
						   "unexpected or twice");
				break;
			}
			rc = migrate_parse_vm_irq(r, p, len, mi);
			if (!rc &&
			    migrate_vm_irq_load(dest->ioapic, dest->serial, mi,
						msg, sizeof(msg)))
				rc = migrate_rfail(r, -EINVAL, "%s", msg);
			have_vm_irq = true;
			break;
		case MIGRATE_SEC_VIRTIO_BLK:
			rc = migrate_parse_virtio_blk(r, p, len, vb);
			if (rc)
				break;
			/* Each drive of the configuration, once. */
			if (!dest->virtio || vb->index >= cfg->nr_drives ||
			    seen_blk[vb->index]) {
				rc = migrate_rfail(r, -EPROTO,
						   "drive %u unexpected or "
						   "twice",
						   vb->index);
				break;
			}
			if (!virtio_mmio_load(dest->virtio[vb->index], &vb->st,
					      msg, sizeof(msg))) {
				rc = migrate_rfail(r, -EINVAL, "drive %u: %s",
						   vb->index, msg);
				break;
			}
			seen_blk[vb->index] = true;
			nr_blk++;
			break;
		case MIGRATE_SEC_RUNSTATE:
			if (have_runstate) {
				rc = migrate_rfail(r, -EPROTO,
						   "a second run state");
				break;
			}
			rc = migrate_parse_runstate(r, p, len, &rs);
			if (!rc && dest->runstate)
				*dest->runstate = rs;
			have_runstate = true;
			break;
		case MIGRATE_SEC_CONSOLE:
			if (dest->console && len)
				dest->console(dest->console_ctx, p, len);
			break;
		case MIGRATE_SEC_END:
			if (nr_seen != cfg->nr_vcpus)
				rc = migrate_rfail(r, -EPROTO,
						   "state of %u of %u vCPUs "
						   "before the end marker",
						   nr_seen, cfg->nr_vcpus);
			else if (dest->serial && !have_serial)
				rc = migrate_rfail(r, -EPROTO,
						   "no COM1 state before the "
						   "end marker");
			else if (dest->lapics && nr_irq != cfg->nr_vcpus)
				rc = migrate_rfail(r, -EPROTO,
						   "interrupt state of %u of "
						   "%u vCPUs before the end "
						   "marker",
						   nr_irq, cfg->nr_vcpus);
			else if (dest->ioapic && !have_vm_irq)
				rc = migrate_rfail(r, -EPROTO,
						   "no VM interrupt state "
						   "before the end marker");
			else if (nr_blk != cfg->nr_drives)
				rc = migrate_rfail(r, -EPROTO,
						   "the state of %u of %u "
						   "drives before the end "
						   "marker",
						   nr_blk, cfg->nr_drives);
			else if (!have_runstate)
				rc = migrate_rfail(r, -EPROTO,
						   "no run state before the "
						   "end marker");
			goto out;
		}
	}
out:
	free(vb);
	free(cfg);
	free(v);
	free(ss);
	free(vi);
	free(mi);
	return rc;
}
