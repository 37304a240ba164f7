/*
 * The migration stream (core/migrate, docs/MIGRATION.md): what a source
 * writes loads into a destination unchanged; the destination refuses
 * every malformed or mismatched stream with an error naming the section
 * and the field, and stores nothing a bad section carries.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate_int.h"
#include "world.h"

static void assert_contains(const char *s, const char *part)
{
	if (!strstr(s, part)) {
		fail_msg("expected \"%s\" in \"%s\"", part, s);
	}
}

/* Loads buf into dest: the rc, and the message in msg. */
static int load(struct world *dest, const uint8_t *buf, size_t len, char *msg,
		size_t msglen)
{
	struct migrate_reader *r = migrate_reader_new_mem(buf, len);
	int rc;

	assert_non_null(r);
	rc = migrate_load(r, &dest->dest, NULL);
	snprintf(msg, msglen, "%s", migrate_reader_error(r));
	migrate_reader_free(r);
	return rc;
}

/* Loading buf into dst fails with rc and exactly the message want. */
static void assert_refused(struct world *dst, const uint8_t *buf, size_t len,
			   int rc, const char *want)
{
	char msg[256];
	int got = load(dst, buf, len, msg, sizeof(msg));

	if (got != rc || strcmp(msg, want))
		fail_msg("load: %d \"%s\", expected %d \"%s\"", got, msg, rc,
			 want);
}

static void save_vcpu(struct x86_cpu *cpu, struct migrate_vcpu *v)
{
	assert_int_equal(migrate_vcpu_save(cpu, 0, v), 0);
	v->guest_tsc = 0;
}

static void test_crc32c_check_value(void **state)
{
	(void)state;
	/* The CRC-32C check value (RFC 3720, B.4's algorithm). */
	assert_int_equal(migrate_crc32c(0, "123456789", 9), 0xe3069283u);
	/* Chained in two parts gives the same. */
	assert_int_equal(migrate_crc32c(migrate_crc32c(0, "1234", 4), "56789",
					5),
			 0xe3069283u);
	assert_int_equal(migrate_crc32c_sw(0, "123456789", 9), 0xe3069283u);
	/* The instruction and the table agree at every length and
	 * alignment. */
	{
		uint8_t buf[300];

		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)(i * 151 + 7);
		for (size_t off = 0; off < 9; off++)
			for (size_t n = 0; n + off <= sizeof(buf); n++)
				if (migrate_crc32c(5, buf + off, n) !=
				    migrate_crc32c_sw(5, buf + off, n))
					fail_msg("offset %zu length %zu differ",
						 off, n);
	}
}

/* Past three lanes of 1024 bytes the instruction runs three chains and
 * joins them (core/migrate/stream.c): every length around the lanes'
 * ends, at every alignment, agrees with the table. */
static void test_crc32c_three_chains(void **state)
{
	static const size_t lens[] = { 3071, 3072, 3073, 3079, 3080, 4096,
				       6143, 6144, 6145, 9216, 9300 };
	uint8_t *buf = malloc(9300 + 8);

	(void)state;
	assert_non_null(buf);
	for (size_t i = 0; i < 9300 + 8; i++)
		buf[i] = (uint8_t)(i * 151 + 7 + (i >> 8));
	for (size_t off = 0; off < 8; off++)
		for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
			uint32_t hw = migrate_crc32c(5, buf + off, lens[k]);
			uint32_t sw = migrate_crc32c_sw(5, buf + off, lens[k]);

			if (hw != sw)
				fail_msg("offset %zu length %zu: %#x, the "
					 "table says %#x",
					 off, lens[k], hw, sw);
		}
	free(buf);
}

/* Everything the source had, the destination has after the load. */
static void test_roundtrip_restores_everything(void **state)
{
	struct world src, dst;
	struct migrate_ram_stats st = { 0 };
	struct migrate_vcpu v0[2];
	/* Zeroed: the byte compare below covers their padding. */
	struct dev_serial_state *a = calloc(1, sizeof(*a)),
				*b = calloc(1, sizeof(*b));
	uint8_t *buf;
	size_t len;
	char msg[256];

	(void)state;
	world_init(&src, 2);
	world_init(&dst, 2);
	world_fill(&src);
	/* Each vCPU's own TSC before the save: world_fill() gives each
	 * vCPU its own. */
	for (unsigned int i = 0; i < 2; i++)
		assert_int_equal(migrate_vcpu_save(src.cpus[i], i, &v0[i]), 0);
	len = world_stream(&src, &buf, NULL);
	if (load(&dst, buf, len, msg, sizeof(msg)))
		fail_msg("load refused a valid stream: %s", msg);
	assert_memory_equal(src.mem[0], dst.mem[0],
			    WORLD_SLOT0_PAGES * PAGE_SIZE);
	assert_memory_equal(src.mem[1], dst.mem[1],
			    WORLD_SLOT1_PAGES * PAGE_SIZE);
	for (unsigned int i = 0; i < 2; i++) {
		struct migrate_vcpu vs, vd;

		assert_int_equal(migrate_vcpu_save(dst.cpus[i], i, &vd), 0);
		assert_int_equal(migrate_vcpu_save(src.cpus[i], i, &vs), 0);
		/* The guest TSC goes on from the value sent, never back,
		 * and runs no faster than the source's. */
		if (vd.guest_tsc < v0[i].guest_tsc ||
		    vd.guest_tsc > vs.guest_tsc)
			fail_msg("vCPU %u TSC %llu: before the save %llu, "
				 "source now %llu",
				 i, (unsigned long long)vd.guest_tsc,
				 (unsigned long long)v0[i].guest_tsc,
				 (unsigned long long)vs.guest_tsc);
		vs.guest_tsc = vd.guest_tsc = 0;
		assert_memory_equal(&vs, &vd, sizeof(vs));
		assert_int_equal(vd.halted, i & 1);
		assert_int_equal(vd.ev_pending, 1);
	}
	dev_serial_save(src.serial, a);
	dev_serial_save(dst.serial, b);
	assert_memory_equal(a, b, sizeof(*a));
	assert_int_equal(b->rx_len, 12);
	assert_int_equal(dst.nconsole, 15);
	assert_memory_equal(dst.console, "tail of output\n", 15);

	/* The stats a second load counts: 5 normal pages, the rest
	 * markers. */
	{
		struct migrate_reader *r = migrate_reader_new_mem(buf, len);

		memset(&st, 0, sizeof(st));
		assert_int_equal(migrate_load(r, &dst.dest, &st), 0);
		assert_int_equal(st.normal, 5);
		assert_int_equal(st.duplicate,
				 WORLD_SLOT0_PAGES + WORLD_SLOT1_PAGES - 5);
		migrate_reader_free(r);
	}
	free(buf);
	free(a);
	free(b);
	world_fini(&src);
	world_fini(&dst);
}

/* A zero page costs its index and kind (9 bytes), not 4096. */
static void test_zero_pages_are_markers(void **state)
{
	struct world src;
	struct migrate_ram_stats st = { 0 };
	uint8_t *buf;
	size_t len, want;

	(void)state;
	world_init(&src, 1);
	len = world_stream(&src, &buf, &st);
	assert_int_equal(st.normal, 0);
	assert_int_equal(st.duplicate, WORLD_SLOT0_PAGES + WORLD_SLOT1_PAGES);
	/* Header; config (24 + 2 slots + 1 drive); two RAM sections of
	 * markers; vCPU and its interrupt state; COM1 with an empty
	 * queue; the VM's interrupt state; the drive's transport; console;
	 * the run state ("running"); end: 12 bytes of framing each. */
	want = MIGRATE_HEADER_LEN + (12 + 24 + 48 + 4 + 12) +
	       (12 + 8 + 9 * WORLD_SLOT0_PAGES) +
	       (12 + 8 + 9 * WORLD_SLOT1_PAGES) + (12 + MIGRATE_VCPU_LEN) +
	       (12 + MIGRATE_VCPU_IRQ_LEN) + (12 + MIGRATE_SERIAL_FIXED) +
	       (12 + MIGRATE_VM_IRQ_LEN) +
	       (12 + MIGRATE_VIRTIO_BLK_FIXED +
		WORLD_DRIVE_QUEUES * MIGRATE_VIRTIO_QUEUE_LEN) +
	       (12 + 15) + (12 + 7) + 12;
	assert_int_equal(len, want);
	free(buf);
	world_fini(&src);
}

/* Every prefix of a valid stream is refused, naming a truncation. */
static void test_every_truncation_is_refused(void **state)
{
	struct world src, dst;
	uint8_t *buf;
	size_t len;
	char msg[256];

	(void)state;
	world_init(&src, 1);
	world_init(&dst, 1);
	world_fill(&src);
	len = world_stream(&src, &buf, NULL);
	for (size_t n = 0; n < len; n++) {
		int rc = load(&dst, buf, n, msg, sizeof(msg));

		if (rc != -EPROTO)
			fail_msg("prefix of %zu/%zu bytes: rc %d, %s", n, len,
				 rc, msg);
		if (!strstr(msg, "truncated") &&
		    !strstr(msg, "without an end marker"))
			fail_msg("prefix of %zu bytes: \"%s\" names no "
				 "truncation",
				 n, msg);
	}
	/* One section's cut names it. */
	load(&dst, buf, MIGRATE_HEADER_LEN + 20, msg, sizeof(msg));
	assert_string_equal(msg, "section 1 (config): truncated in the payload "
				 "(12 of 88 bytes)");
	free(buf);
	world_fini(&src);
	world_fini(&dst);
}

/* Any single bit flipped anywhere is refused. */
static void test_every_bit_flip_is_refused(void **state)
{
	struct world src, dst;
	uint8_t *buf;
	size_t len;
	char msg[256];

	(void)state;
	world_init(&src, 1);
	world_init(&dst, 1);
	world_fill(&src);
	len = world_stream(&src, &buf, NULL);
	for (size_t i = 0; i < len; i++) {
		unsigned int bit = (unsigned int)(i * 7) % 8;
		int rc;

		buf[i] ^= (uint8_t)(1u << bit);
		rc = load(&dst, buf, len, msg, sizeof(msg));
		buf[i] ^= (uint8_t)(1u << bit);
		if (rc == 0)
			fail_msg("bit %u of byte %zu flipped: accepted", bit,
				 i);
	}
	/* A flip in a payload is a checksum error of that section. */
	buf[MIGRATE_HEADER_LEN + 8 + 4] ^= 1;
	load(&dst, buf, len, msg, sizeof(msg));
	assert_contains(msg, "section 1 (config): checksum");
	free(buf);
	world_fini(&src);
	world_fini(&dst);
}

static void test_header_errors_are_named(void **state)
{
	struct world src, dst;
	uint8_t *buf;
	size_t len;
	char msg[256];

	(void)state;
	world_init(&src, 1);
	world_init(&dst, 1);
	len = world_stream(&src, &buf, NULL);

	buf[0] = 'X';
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EPROTO);
	assert_string_equal(msg, "header: bad magic: not a migration stream");
	buf[0] = 'M';
	/* Version 1 (no interrupt state), 2 (no drives), 3 (no held
	 * requests) and 4 (no run state) are refused, not half-loaded. */
	migrate_put32(buf + 8, 1);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EPROTO);
	assert_string_equal(msg,
			    "header: version 1, this mmud reads version 5");
	migrate_put32(buf + 8, 2);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EPROTO);
	assert_string_equal(msg,
			    "header: version 2, this mmud reads version 5");
	migrate_put32(buf + 8, 3);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EPROTO);
	assert_string_equal(msg,
			    "header: version 3, this mmud reads version 5");
	migrate_put32(buf + 8, 4);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EPROTO);
	assert_string_equal(msg,
			    "header: version 4, this mmud reads version 5");
	migrate_put32(buf + 8, 6);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EPROTO);
	assert_string_equal(msg,
			    "header: version 6, this mmud reads version 5");
	migrate_put32(buf + 8, 5);
	migrate_put32(buf + 12, 4);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EPROTO);
	assert_string_equal(msg, "header: unknown flags 0x4");
	migrate_put32(buf + 12, 0);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), 0);
	free(buf);
	world_fini(&src);
	world_fini(&dst);
}

static void test_trailing_garbage_is_refused(void **state)
{
	struct world src, dst;
	uint8_t *buf;
	size_t len;
	char msg[256];

	(void)state;
	world_init(&src, 1);
	world_init(&dst, 1);
	len = world_stream(&src, &buf, NULL);
	buf = realloc(buf, len + 1);
	buf[len] = 0;
	assert_int_equal(load(&dst, buf, len + 1, msg, sizeof(msg)), -EPROTO);
	assert_contains(msg, "(end): trailing bytes after the end marker");
	free(buf);
	world_fini(&src);
	world_fini(&dst);
}

/* A stream of a differently configured VM: refused naming what differs,
 * before a single page is written. */
static void test_config_mismatch_is_named(void **state)
{
	struct world src, dst;
	uint8_t *buf;
	size_t len;
	char msg[256];

	(void)state;
	world_init(&src, 2);
	world_fill(&src);
	len = world_stream(&src, &buf, NULL);

	world_init(&dst, 1);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "section 1 (config): vCPU count: the stream "
				 "has 2, this VM has 1");
	world_fini(&dst);

	world_init(&dst, 2);
	dst.cfg.ram_size += PAGE_SIZE;
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EINVAL);
	assert_contains(msg, "memory size: the stream has 131072 bytes, this "
			     "VM has 135168");
	dst.cfg.ram_size -= PAGE_SIZE;
	dst.cfg.slots[1].size *= 2;
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EINVAL);
	assert_contains(msg, "memslot 1: the stream has id 5 gpa 0x40000000 "
			     "size 0x8000");
	dst.cfg.slots[1].size /= 2;
	dst.cfg.nr_slots = 1;
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EINVAL);
	assert_contains(msg, "memslot 5 (gpa 0x40000000 size 0x8000) is not "
			     "in this VM");
	dst.cfg.nr_slots = 2;
	dst.cfg.cpuid_sig ^= 1;
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EINVAL);
	assert_contains(msg, "CPUID: the stream's signature");
	/* Nothing was written. */
	for (size_t i = 0; i < WORLD_SLOT0_PAGES * PAGE_SIZE; i++)
		if (dst.mem[0][i])
			fail_msg("byte %zu written by a refused stream", i);
	world_fini(&dst);
	free(buf);
	world_fini(&src);
}

/* Writes one section built by hand to a buffer: header, it, END. */
static size_t hand_stream(const struct migrate_config *cfg, uint16_t type,
			  const uint8_t *payload, uint32_t plen, uint8_t **out)
{
	int fd = memfd_create("hand", 0);
	struct migrate_writer *w = migrate_writer_new(fd);
	off_t len;

	assert_non_null(w);
	assert_int_equal(migrate_write_header(w), 0);
	if (cfg)
		assert_int_equal(migrate_write_config(w, cfg), 0);
	if (type)
		assert_int_equal(migrate_write_section(w, type, payload, plen),
				 0);
	assert_int_equal(migrate_write_end(w), 0);
	migrate_writer_free(w);
	len = lseek(fd, 0, SEEK_END);
	*out = malloc((size_t)len);
	assert_int_equal(pread(fd, *out, (size_t)len, 0), len);
	close(fd);
	return (size_t)len;
}

/* A RAM section with one page index outside its slot stores none of its
 * pages, not even the good one before it. */
static void test_ram_outside_slot_writes_nothing(void **state)
{
	struct world dst;
	uint8_t *p = calloc(1, 8 + 9 + PAGE_SIZE + 9), *buf;
	size_t len;

	(void)state;
	world_init(&dst, 1);
	migrate_put32(p, 0);
	migrate_put32(p + 4, 2);
	migrate_put64(p + 8, 3);
	p[16] = MIGRATE_RAM_PAGE;
	memset(p + 17, 0xee, PAGE_SIZE);
	migrate_put64(p + 17 + PAGE_SIZE, WORLD_SLOT0_PAGES);
	p[17 + PAGE_SIZE + 8] = MIGRATE_RAM_ZERO;
	len = hand_stream(&dst.cfg, MIGRATE_SEC_RAM, p, 8 + 9 + PAGE_SIZE + 9,
			  &buf);
	assert_refused(&dst, buf, len, -EPROTO,
		       "section 2 (RAM): page index 32 outside slot 0 "
		       "(32 pages)");
	assert_int_equal(dst.mem[0][3 * PAGE_SIZE], 0);
	free(buf);

	/* A slot the destination does not have. */
	migrate_put32(p, 7);
	len = hand_stream(&dst.cfg, MIGRATE_SEC_RAM, p, 8 + 9 + PAGE_SIZE + 9,
			  &buf);
	assert_refused(&dst, buf, len, -EPROTO,
		       "section 2 (RAM): slot 7 is not in this VM");
	free(buf);

	/* An unknown page kind, and a count beyond the bound. */
	migrate_put32(p, 0);
	migrate_put64(p + 17 + PAGE_SIZE, 4);
	p[17 + PAGE_SIZE + 8] = 9;
	len = hand_stream(&dst.cfg, MIGRATE_SEC_RAM, p, 8 + 9 + PAGE_SIZE + 9,
			  &buf);
	assert_refused(&dst, buf, len, -EPROTO,
		       "section 2 (RAM): page 4: unknown kind 9");
	free(buf);
	assert_int_equal(dst.mem[0][3 * PAGE_SIZE], 0);

	migrate_put32(p + 4, MIGRATE_RAM_BATCH + 1);
	len = hand_stream(&dst.cfg, MIGRATE_SEC_RAM, p, 8 + 9 + PAGE_SIZE + 9,
			  &buf);
	assert_refused(&dst, buf, len, -EPROTO,
		       "section 2 (RAM): page count 257 out of range");
	free(buf);
	free(p);
	world_fini(&dst);
}

static void test_section_order_is_checked(void **state)
{
	struct world dst;
	uint8_t *buf;
	size_t len;

	(void)state;
	world_init(&dst, 1);
	/* No configuration first. */
	len = hand_stream(NULL, MIGRATE_SEC_CONSOLE, (const uint8_t *)"x", 1,
			  &buf);
	assert_refused(&dst, buf, len, -EPROTO,
		       "section 1 (console): the configuration must "
		       "come first");
	free(buf);
	/* No vCPU state before the end. */
	len = hand_stream(&dst.cfg, 0, NULL, 0, &buf);
	assert_refused(&dst, buf, len, -EPROTO,
		       "section 2 (end): state of 0 of 1 vCPUs before "
		       "the end marker");
	free(buf);
	/* An unknown section type and a length over its type's bound. */
	len = hand_stream(&dst.cfg, 0, NULL, 0, &buf);
	migrate_put16(buf + len - 12, 0x77);
	assert_refused(&dst, buf, len, -EPROTO,
		       "section 2: unknown section type 0x77");
	migrate_put16(buf + len - 12, MIGRATE_SEC_VCPU);
	migrate_put32(buf + len - 8, 0xfffffff0u);
	assert_refused(&dst, buf, len, -EPROTO,
		       "section 2 (vCPU): length 4294967280 over the "
		       "bound 982");
	free(buf);
	world_fini(&dst);
}

/* Bad values, each with the name its refusal must carry. */
static const char *const bad_names[] = {
	"cr4",
	"cr4",
	"cr0",
	"cr0",
	"cr3",
	"cr8",
	"efer",
	"efer",
	"rflags",
	"rflags",
	"rip",
	"fs base",
	"tr base",
	"gdt base",
	"cs attributes",
	"lstar",
	"kernel_gs_base",
	"pat",
	"apic_base",
	"sfmask",
	"mxcsr",
	"event kind",
	"event fields",
	"delivering",
	"interrupt shadow",
	"cs attributes",
	"tr attributes",
	"tr attributes",
};

static void apply_bad(unsigned int k, struct migrate_vcpu *v)
{
	switch (k) {
	case 0:
		v->cr4 |= 1ULL << 12;
		break;
	case 1:
		v->cr4 &= ~X86_CR4_PAE;
		break;
	case 2:
		v->cr0 &= ~X86_CR0_PG;
		break;
	case 3:
		v->cr0 |= 1ULL << 40;
		break;
	case 4:
		v->cr3 |= 1ULL << 50;
		break;
	case 5:
		v->cr8 = 16;
		break;
	case 6:
		v->efer |= 1ULL << 1;
		break;
	case 7:
		v->efer &= ~X86_EFER_LMA;
		break;
	case 8:
		v->rflags |= 1ULL << 3;
		break;
	case 9:
		v->rflags &= ~2ULL;
		break;
	case 10:
		v->rip = 0x0000800000000000ULL;
		break;
	case 11:
		v->seg[4].base = 0x0001000000000000ULL;
		break;
	case 12:
		v->seg[7].base = 0x8000000000000000ULL;
		break;
	case 13:
		v->gdt_base = 0x0000900000000000ULL;
		break;
	case 14:
		v->seg[1].attr |= 1u << 20;
		break;
	case 15:
		v->lstar = 0x0000800000000000ULL;
		break;
	case 16:
		v->kernel_gs_base = 0x1234000000000000ULL;
		break;
	case 17:
		v->pat = 0x02;
		break;
	case 18:
		v->apic_base |= 1u << 9;
		break;
	case 19:
		v->sfmask = 1ULL << 32;
		break;
	case 20:
		v->fxsave[26] = 1;
		break;
	case 21:
		v->ev_pending = 1;
		v->ev_kind = 7;
		break;
	case 22:
		v->ev_pending = 0;
		v->ev_vector = 3;
		break;
	case 23:
		v->delivering = 300;
		break;
	case 24:
		v->int_shadow = 3;
		break;
	case 25:
		v->seg[1].attr |= X86_SEG_DB | X86_SEG_L;
		break;
	case 26:
		v->seg[7].attr = (v->seg[7].attr & ~0xfu) | 9;
		break;
	case 27:
		v->seg[7].attr &= ~X86_SEG_P;
		break;
	}
}

/* A vCPU whose APIC is in x2APIC mode (Linux's, EXTD and EN set in
 * IA32_APIC_BASE) loads as it was. */
static void test_x2apic_base_loads(void **state)
{
	struct world w;
	struct migrate_vcpu v, back;
	char msg[200];

	(void)state;
	world_init(&w, 1);
	world_fill(&w);
	assert_int_equal(migrate_vcpu_save(w.cpus[0], 0, &v), 0);
	v.apic_base = 0xfee00d00; /* BSP, EXTD, EN */
	if (migrate_vcpu_load(w.cpus[0], &v, msg, sizeof(msg)))
		fail_msg("x2APIC base refused: %s", msg);
	assert_int_equal(migrate_vcpu_save(w.cpus[0], 0, &back), 0);
	assert_int_equal(back.apic_base, 0xfee00d00);
	world_fini(&w);
}

/* Loaded vCPU state a CPU could not hold is refused, naming the
 * register, and the CPU keeps what it had. */
static void test_bad_vcpu_state_is_refused(void **state)
{
	struct world w;
	struct migrate_vcpu before, bad, after;
	char err[200];

	(void)state;
	world_init(&w, 1);
	world_fill(&w);
	save_vcpu(w.cpus[0], &before);
	for (unsigned int k = 0; k < ARRAY_SIZE(bad_names); k++) {
		bad = before;
		apply_bad(k, &bad);
		err[0] = 0;
		if (migrate_vcpu_load(w.cpus[0], &bad, err, sizeof(err)) !=
		    -EINVAL)
			fail_msg("%s: a bad value was loaded", bad_names[k]);
		assert_contains(err, bad_names[k]);
		save_vcpu(w.cpus[0], &after);
		if (memcmp(&before, &after, sizeof(before)))
			fail_msg("%s: refused, but the CPU changed",
				 bad_names[k]);
	}
	world_fini(&w);
}

/* A CPU loaded halted stays halted: running it only reports HLT until
 * an event comes (x86.h, X86_EXIT_HLT), and one loaded running does
 * not. */
static void test_loaded_halt_state_holds(void **state)
{
	struct world w;
	struct migrate_vcpu v;
	struct x86_exit exit;
	char err[200];

	(void)state;
	world_init(&w, 1);
	save_vcpu(w.cpus[0], &v);
	v.halted = 1;
	v.guest_tsc = 1000;
	assert_int_equal(migrate_vcpu_load(w.cpus[0], &v, err, sizeof(err)), 0);
	assert_true(x86_halted(w.cpus[0]));
	assert_int_equal(x86_run(w.cpus[0], 100, &exit), X86_EXIT_HLT);
	assert_int_equal(x86_insns_retired(w.cpus[0]), 0);
	v.halted = 0;
	assert_int_equal(migrate_vcpu_load(w.cpus[0], &v, err, sizeof(err)), 0);
	assert_false(x86_halted(w.cpus[0]));
	/* No shadow root: the first fetch is a shadow fault, not HLT. */
	assert_int_equal(x86_run(w.cpus[0], 100, &exit), X86_EXIT_SHADOW_FAULT);
	world_fini(&w);
}

/* Decoding a vCPU section: flags are 0 or 1, the index is bounded. */
static void test_vcpu_section_fields_are_checked(void **state)
{
	struct world w;
	struct migrate_vcpu v;
	struct migrate_reader *r = migrate_reader_new_mem(NULL, 0);
	uint8_t *buf, *p;
	size_t len;
	const uint8_t *data;
	uint32_t plen;
	uint16_t type;
	struct migrate_reader *rd;

	(void)state;
	world_init(&w, 1);
	len = world_stream(&w, &buf, NULL);
	rd = migrate_reader_new_mem(buf, len);
	assert_int_equal(migrate_read_header(rd), 0);
	do
		assert_int_equal(migrate_read_section(rd, &type, &data, &plen),
				 0);
	while (type != MIGRATE_SEC_VCPU);
	p = malloc(plen);
	memcpy(p, data, plen);
	assert_int_equal(migrate_parse_vcpu(r, p, plen, &v), 0);
	p[plen - 1] = 2; /* halted */
	assert_int_equal(migrate_parse_vcpu(r, p, plen, &v), -EPROTO);
	assert_contains(migrate_reader_error(r), "halted 2 is not 0 or 1");
	p[plen - 1] = 0;
	migrate_put32(p, 64);
	assert_int_equal(migrate_parse_vcpu(r, p, plen, &v), -EPROTO);
	assert_contains(migrate_reader_error(r), "index 64 out of range");
	migrate_put32(p, 0);
	assert_int_equal(migrate_parse_vcpu(r, p, plen - 3, &v), -EPROTO);
	assert_contains(migrate_reader_error(r), "truncated at nmi latched");
	free(p);
	free(buf);
	migrate_reader_free(rd);
	migrate_reader_free(r);
	world_fini(&w);
}

/* ---- interrupt and time state (stream version 2) --------------------- */

static void save_irq(struct world *w, unsigned int i,
		     struct migrate_vcpu_irq *v)
{
	migrate_vcpu_irq_save(w->cpus[i], w->lapics[i], w->kcs[i], i,
			      WORLD_NOW_NS, v);
}

/* Every vCPU's APIC (IRR/ISR, the armed timer), kvmclock MSRs and debug
 * registers, the IOAPIC and COM1's latches arrive as they were. */
static void test_irq_state_roundtrip(void **state)
{
	struct world src, dst;
	struct migrate_vm_irq a, b;
	uint8_t *buf;
	size_t len;
	char msg[256];

	(void)state;
	world_init(&src, 2);
	world_init(&dst, 2);
	world_fill(&src);
	len = world_stream(&src, &buf, NULL);
	if (load(&dst, buf, len, msg, sizeof(msg)))
		fail_msg("load refused a valid stream: %s", msg);
	for (unsigned int i = 0; i < 2; i++) {
		struct migrate_vcpu_irq vs, vd;

		save_irq(&src, i, &vs);
		save_irq(&dst, i, &vd);
		assert_memory_equal(&vs, &vd, sizeof(vs));
		assert_int_equal(vd.lapic.irr[2], 1u << (1 + i));
		assert_int_equal(vd.lapic.isr[1], 1u << 16);
		assert_true(vd.lapic.timer_armed);
		assert_int_equal(vd.lapic.timer_remaining_ns, 1000 + i);
		assert_int_equal(vd.kvm_system_time, 0x3000 + 0x40 * i + 1);
		assert_int_equal(vd.kvm_wall_clock, 0x2f00);
		assert_int_equal(vd.kvm_time_version, 2);
		assert_int_equal(vd.kvm_wall_version, 4);
		assert_int_equal(vd.kvm_time_written, 1);
		assert_int_equal(vd.lapic.tpr, 0x20);
		assert_int_equal(vd.lapic.lvt[0], 0x20040 + i);
		assert_int_equal(vd.dr[3], 0x1234);
		assert_int_equal(vd.dr6, 0xffff0ff1);
		assert_int_equal(vd.dr[0], 0xffffffff81000000ULL + i);
		assert_int_equal(vd.dr7, 0x403);
	}
	migrate_vm_irq_save(src.ioapic, src.serial, &a);
	migrate_vm_irq_save(dst.ioapic, dst.serial, &b);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(b.ioapic.id, 2);
	assert_int_equal(b.ioapic.redir[4], 0x24);
	assert_true(b.com1.thre_pending);
	assert_int_equal(b.com1.msr_delta, 5);
	free(buf);
	world_fini(&src);
	world_fini(&dst);
}

static const char *const bad_irq_names[] = {
	"dr6", "dr7",  "dr7 ", "kvmclock version", "kvmclock version ",
	"irr", "SIPI", "svr",
};

static void apply_bad_irq(unsigned int k, struct migrate_vcpu_irq *v)
{
	switch (k) {
	case 0:
		v->dr6 = 1ULL << 32;
		break;
	case 1:
		v->dr7 = 0x400 | (1u << 11); /* reserved bit 11 */
		break;
	case 2:
		v->dr7 = 0; /* bit 10 always reads 1 */
		break;
	case 3:
		v->kvm_time_version = 3;
		break;
	case 4:
		v->kvm_wall_version = 1;
		break;
	case 5:
		v->lapic.irr[0] = 1; /* vector 0 */
		break;
	case 6:
		v->lapic.wait_for_sipi = false;
		v->lapic.sipi_vector = 0x10;
		v->lapic.sipis = 1;
		break;
	case 7:
		v->lapic.svr = 0x1ff | (1u << 20);
		break;
	}
}

/* Interrupt state a vCPU could not hold is refused, naming the field,
 * and the CPU, its APIC and kvmclock keep what they had. */
static void test_bad_irq_state_is_refused(void **state)
{
	struct world w;
	struct migrate_vcpu_irq before, bad, after;
	struct x86_debugregs d;
	char err[200];

	(void)state;
	world_init(&w, 1);
	world_fill(&w);
	save_irq(&w, 0, &before);
	for (unsigned int k = 0; k < ARRAY_SIZE(bad_irq_names); k++) {
		bad = before;
		apply_bad_irq(k, &bad);
		err[0] = 0;
		if (migrate_vcpu_irq_load(w.cpus[0], w.lapics[0], w.kcs[0],
					  &bad, WORLD_NOW_NS, err,
					  sizeof(err)) != -EINVAL)
			fail_msg("%s: a bad value was loaded",
				 bad_irq_names[k]);
		/* The names in the table may end in a space to tell two
		 * cases of one field apart. */
		{
			char name[32];

			snprintf(name, sizeof(name), "%s", bad_irq_names[k]);
			name[strcspn(name, " ")] = 0;
			if (!strstr(err, name) &&
			    !strstr(err, bad_irq_names[k]))
				fail_msg("case %u: expected \"%s\" in \"%s\"",
					 k, name, err);
		}
		save_irq(&w, 0, &after);
		if (memcmp(&before, &after, sizeof(before)))
			fail_msg("%s: refused, but the vCPU changed (%s)",
				 bad_irq_names[k], err);
	}
	x86_get_debugregs(w.cpus[0], &d);
	assert_int_equal(d.dr[0], 0xffffffff81000000ULL);
	world_fini(&w);
}

/* The IOAPIC and COM1's latches: a bad value is named, neither
 * changes. */
static void test_bad_vm_irq_state_is_refused(void **state)
{
	struct world w;
	struct migrate_vm_irq before, bad, after;
	char err[200];
	static const char *const names[] = { "msr_delta", "ID", "entry" };

	(void)state;
	world_init(&w, 1);
	world_fill(&w);
	migrate_vm_irq_save(w.ioapic, w.serial, &before);
	for (unsigned int k = 0; k < ARRAY_SIZE(names); k++) {
		bad = before;
		if (k == 0)
			bad.com1.msr_delta = 0x10;
		else if (k == 1)
			bad.ioapic.id = 16;
		else
			bad.ioapic.redir[3] = 1ULL << 12; /* delivery status */
		err[0] = 0;
		if (migrate_vm_irq_load(w.ioapic, w.serial, &bad, err,
					sizeof(err)) != -EINVAL)
			fail_msg("%s: a bad value was loaded", names[k]);
		if (!strcasestr(err, names[k]))
			fail_msg("expected \"%s\" in \"%s\"", names[k], err);
		migrate_vm_irq_save(w.ioapic, w.serial, &after);
		if (memcmp(&before, &after, sizeof(before)))
			fail_msg("%s: refused, but the VM changed", names[k]);
	}
	world_fini(&w);
}

/* buf without its n-th section of type (framing: 8 bytes, payload, 4
 * bytes of checksum); returns the new length. */
static size_t drop_section(uint8_t *buf, size_t len, uint16_t type,
			   unsigned int n)
{
	size_t off = MIGRATE_HEADER_LEN;

	while (off + 8 <= len) {
		size_t sz = 12 + migrate_get32(buf + off + 4);

		if (migrate_get16(buf + off) == type && n-- == 0) {
			memmove(buf + off, buf + off + sz, len - off - sz);
			return len - sz;
		}
		off += sz;
	}
	fail_msg("no section of type %u", type);
	return len;
}

/* Every vCPU's interrupt state, after its vCPU section, once; the VM's
 * once: a stream without them is refused at the end marker. */
static void test_irq_sections_are_required(void **state)
{
	struct world src, dst;
	uint8_t *buf;
	size_t len;
	char msg[256];

	(void)state;
	world_init(&src, 2);
	world_fill(&src);
	len = world_stream(&src, &buf, NULL);
	len = drop_section(buf, len, MIGRATE_SEC_VCPU_IRQ, 1);
	world_init(&dst, 2);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EPROTO);
	assert_contains(msg, "interrupt state of 1 of 2 vCPUs before the "
			     "end marker");
	world_fini(&dst);
	free(buf);

	len = world_stream(&src, &buf, NULL);
	len = drop_section(buf, len, MIGRATE_SEC_VM_IRQ, 0);
	world_init(&dst, 2);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EPROTO);
	assert_contains(msg, "no VM interrupt state before the end marker");
	world_fini(&dst);
	free(buf);

	/* vCPU 1's interrupt state without its vCPU section first. */
	len = world_stream(&src, &buf, NULL);
	len = drop_section(buf, len, MIGRATE_SEC_VCPU, 1);
	world_init(&dst, 2);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EPROTO);
	assert_contains(msg, "vCPU 1: unexpected, before its vCPU section "
			     "or twice");
	world_fini(&dst);
	free(buf);
	world_fini(&src);
}

/* Decoding: flags 0 or 1, the index bounded, a cut named. */
static void test_irq_section_fields_are_checked(void **state)
{
	struct migrate_reader *r = migrate_reader_new_mem(NULL, 0);
	struct migrate_vcpu_irq v;
	struct migrate_vm_irq vm;
	struct world w;
	uint8_t *buf, *p;
	size_t len, off = MIGRATE_HEADER_LEN;
	uint32_t plen = 0;

	(void)state;
	world_init(&w, 1);
	world_fill(&w);
	len = world_stream(&w, &buf, NULL);
	while (off < len && migrate_get16(buf + off) != MIGRATE_SEC_VCPU_IRQ)
		off += 12 + migrate_get32(buf + off + 4);
	assert_true(off < len);
	plen = migrate_get32(buf + off + 4);
	assert_int_equal(plen, MIGRATE_VCPU_IRQ_LEN);
	p = buf + off + 8;
	assert_int_equal(migrate_parse_vcpu_irq(r, p, plen, &v), 0);
	assert_int_equal(migrate_parse_vcpu_irq(r, p, plen - 1, &v), -EPROTO);
	assert_contains(migrate_reader_error(r),
			"truncated at vcpu waits for sipi");
	assert_int_equal(migrate_parse_vcpu_irq(r, p, plen - 2, &v), -EPROTO);
	assert_contains(migrate_reader_error(r), "truncated at dr7");
	p[plen - 1] = 1;
	assert_int_equal(migrate_parse_vcpu_irq(r, p, plen, &v), 0);
	assert_int_equal(v.vcpu_wait_sipi, 1);
	p[plen - 1] = 3;
	assert_int_equal(migrate_parse_vcpu_irq(r, p, plen, &v), -EPROTO);
	assert_contains(migrate_reader_error(r),
			"vcpu waits for sipi 3 is not 0 or 1");
	p[plen - 1] = 0;
	assert_int_equal(migrate_parse_vcpu_irq(r, p, 3, &v), -EPROTO);
	assert_contains(migrate_reader_error(r), "truncated at index");
	migrate_put32(p, 64);
	assert_int_equal(migrate_parse_vcpu_irq(r, p, plen, &v), -EPROTO);
	assert_contains(migrate_reader_error(r), "index 64 out of range");
	migrate_put32(p, 0);
	p[4 + 8 + 36 + 24 + 96 + 8] = 2; /* timer armed */
	assert_int_equal(migrate_parse_vcpu_irq(r, p, plen, &v), -EPROTO);
	assert_contains(migrate_reader_error(r), "apic timer armed 2 is not 0 "
						 "or 1");
	while (off < len && migrate_get16(buf + off) != MIGRATE_SEC_VM_IRQ)
		off += 12 + migrate_get32(buf + off + 4);
	assert_true(off < len);
	p = buf + off + 8;
	assert_int_equal(migrate_parse_vm_irq(r, p, MIGRATE_VM_IRQ_LEN, &vm),
			 0);
	assert_int_equal(vm.ioapic.redir[4], 0x24);
	assert_int_equal(migrate_parse_vm_irq(r, p, MIGRATE_VM_IRQ_LEN - 1,
					      &vm),
			 -EPROTO);
	assert_contains(migrate_reader_error(r), "truncated at COM1 msr delta");
	p[MIGRATE_VM_IRQ_LEN - 2] = 7;
	assert_int_equal(migrate_parse_vm_irq(r, p, MIGRATE_VM_IRQ_LEN, &vm),
			 -EPROTO);
	assert_contains(migrate_reader_error(r), "COM1 thre pending 7");
	free(buf);
	migrate_reader_free(r);
	world_fini(&w);
}

/* ---- virtio-blk drives (version 3) ------------------------------------ */

/* Every field of two transports' states that the stream carries. */
static void assert_virtio_equal(const struct virtio_mmio_state *a,
				const struct virtio_mmio_state *b)
{
	assert_int_equal(a->nr_queues, b->nr_queues);
	assert_int_equal(a->status, b->status);
	assert_int_equal(a->dev_feat_sel, b->dev_feat_sel);
	assert_int_equal(a->drv_feat_sel, b->drv_feat_sel);
	assert_int_equal(a->queue_sel, b->queue_sel);
	assert_int_equal(a->driver_features, b->driver_features);
	assert_int_equal(a->config_generation, b->config_generation);
	assert_int_equal(a->isr, b->isr);
	for (uint32_t i = 0; i < a->nr_queues; i++) {
		const struct virtio_mmio_queue_state *p = &a->q[i],
						     *q = &b->q[i];

		if (p->num != q->num || p->ready != q->ready ||
		    p->desc != q->desc || p->avail != q->avail ||
		    p->used != q->used || p->last_avail != q->last_avail ||
		    p->used_idx != q->used_idx ||
		    p->signalled_used != q->signalled_used ||
		    p->signalled_valid != q->signalled_valid)
			fail_msg("queue %u: num %u/%u ready %d/%d desc "
				 "%#llx/%#llx last_avail %u/%u used_idx "
				 "%u/%u signalled %u/%u valid %d/%d",
				 i, p->num, q->num, p->ready, q->ready,
				 (unsigned long long)p->desc,
				 (unsigned long long)q->desc, p->last_avail,
				 q->last_avail, p->used_idx, q->used_idx,
				 p->signalled_used, q->signalled_used,
				 p->signalled_valid, q->signalled_valid);
	}
}

/* The offset of the n-th section of type in buf (its framing). */
static size_t find_section(const uint8_t *buf, size_t len, uint16_t type,
			   unsigned int n)
{
	size_t off = MIGRATE_HEADER_LEN;

	while (off + 8 <= len) {
		if (migrate_get16(buf + off) == type && n-- == 0)
			return off;
		off += 12 + migrate_get32(buf + off + 4);
	}
	fail_msg("no section of type %u", type);
	return 0;
}

/* The section at off checksummed again after its payload changed. */
static void reseal(uint8_t *buf, size_t off)
{
	uint32_t plen = migrate_get32(buf + off + 4);

	migrate_put32(buf + off + 8 + plen,
		      migrate_crc32c(0, buf + off, 8 + plen));
}

/* The drive's transport arrives whole: status, features, selectors,
 * generation, interrupt status, each queue's configuration and
 * indices. */
static void test_virtio_blk_roundtrip(void **state)
{
	struct world src, dst;
	struct virtio_mmio_state a, b;
	uint8_t *buf;
	size_t len;
	char msg[256];

	(void)state;
	world_init(&src, 2);
	world_init(&dst, 2);
	world_fill(&src);
	len = world_stream(&src, &buf, NULL);
	if (load(&dst, buf, len, msg, sizeof(msg)))
		fail_msg("load refused a valid stream: %s", msg);
	virtio_mmio_save(src.virtio[0], &a);
	virtio_mmio_save(dst.virtio[0], &b);
	assert_int_equal(b.status, 0xf);
	assert_int_equal(b.q[0].used_idx, 7);
	assert_int_equal(b.q[0].last_avail, 7);
	assert_int_equal(b.q[0].signalled_used, 5);
	assert_int_equal(b.q[1].num, 8);
	assert_false(b.q[1].ready);
	assert_virtio_equal(&a, &b);
	/* The queue is usable: the device side reaches its rings. */
	assert_non_null(virtio_mmio_queue(dst.virtio[0], 0)->used);
	free(buf);
	world_fini(&src);
	world_fini(&dst);
}

/* Loads buf into a new world of 2 vCPUs: the rc and message, and
 * whether the drive's transport kept the state it had (reset). */
static int load_fresh(const uint8_t *buf, size_t len, char *msg, size_t msglen,
		      bool *unchanged)
{
	struct world dst;
	struct virtio_mmio_state a, b;
	int rc;

	world_init(&dst, 2);
	virtio_mmio_save(dst.virtio[0], &a);
	rc = load(&dst, buf, len, msg, msglen);
	virtio_mmio_save(dst.virtio[0], &b);
	*unchanged = !memcmp(&a, &b, sizeof(a));
	world_fini(&dst);
	return rc;
}

/* Loading buf into a new world fails with rc, the message naming part,
 * and the drive's transport as it was. */
static void assert_refused_fresh(const uint8_t *buf, size_t len, int rc,
				 const char *part)
{
	char msg[256];
	bool same;
	int got = load_fresh(buf, len, msg, sizeof(msg), &same);

	if (got != rc || !strstr(msg, part))
		fail_msg("load: %d \"%s\", expected %d and \"%s\"", got, msg,
			 rc, part);
	if (!same)
		fail_msg("a refused stream changed the drive's transport: %s",
			 msg);
}

/* The drive's section cut, flipped, twice, missing or unexpected: each
 * refused with the reason named, the transport untouched by a refused
 * section. */
static void test_virtio_blk_section_refusals(void **state)
{
	struct world src;
	struct migrate_reader *r = migrate_reader_new_mem(NULL, 0);
	struct migrate_virtio_blk vb;
	uint8_t *buf, *p;
	size_t len, off;
	uint32_t plen;
	char msg[256];
	bool same;

	(void)state;
	world_init(&src, 2);
	world_fill(&src);

	/* Decoding: every cut names the field, a flag is 0 or 1, the
	 * index and queue count bounded. */
	len = world_stream(&src, &buf, NULL);
	off = find_section(buf, len, MIGRATE_SEC_VIRTIO_BLK, 0);
	plen = migrate_get32(buf + off + 4);
	assert_int_equal(plen,
			 MIGRATE_VIRTIO_BLK_FIXED +
				 WORLD_DRIVE_QUEUES * MIGRATE_VIRTIO_QUEUE_LEN);
	p = buf + off + 8;
	assert_int_equal(migrate_parse_virtio_blk(r, p, plen, &vb), 0);
	assert_int_equal(vb.st.q[0].used_idx, 7);
	for (uint32_t n = 0; n < plen; n++)
		if (migrate_parse_virtio_blk(r, p, n, &vb) != -EPROTO ||
		    !strstr(migrate_reader_error(r), "truncated at"))
			fail_msg("payload cut to %u of %u bytes: \"%s\"", n,
				 plen, migrate_reader_error(r));
	assert_int_equal(migrate_parse_virtio_blk(r, p, plen - 1, &vb),
			 -EPROTO);
	assert_contains(migrate_reader_error(r),
			"truncated at queue held count");
	assert_int_equal(migrate_parse_virtio_blk(r, p, 2, &vb), -EPROTO);
	assert_contains(migrate_reader_error(r), "truncated at drive index");
	assert_int_equal(migrate_parse_virtio_blk(r, p, plen + 1, &vb),
			 -EPROTO);
	assert_contains(migrate_reader_error(r), "1 bytes after the last");
	p[MIGRATE_VIRTIO_BLK_FIXED + 4] = 2; /* queue 0 ready */
	assert_int_equal(migrate_parse_virtio_blk(r, p, plen, &vb), -EPROTO);
	assert_contains(migrate_reader_error(r), "queue ready 2 is not 0 or 1");
	p[MIGRATE_VIRTIO_BLK_FIXED + 4] = 1;
	migrate_put32(p, 16);
	assert_int_equal(migrate_parse_virtio_blk(r, p, plen, &vb), -EPROTO);
	assert_contains(migrate_reader_error(r), "drive index 16 over 16");
	migrate_put32(p, 0);
	migrate_put32(p + 4, 0);
	assert_int_equal(migrate_parse_virtio_blk(r, p, plen, &vb), -EPROTO);
	assert_contains(migrate_reader_error(r),
			"drive 0: queue count 0 out of range");
	migrate_put32(p + 4, 65);
	assert_int_equal(migrate_parse_virtio_blk(r, p, plen, &vb), -EPROTO);
	assert_contains(migrate_reader_error(r), "queue count 65 out of range");
	migrate_put32(p + 4, WORLD_DRIVE_QUEUES);

	/* A flipped bit: the section's checksum. */
	p[20] ^= 4;
	assert_refused_fresh(buf, len, -EPROTO, "(virtio-blk): checksum");
	p[20] ^= 4;
	/* A section longer than any drive's. */
	migrate_put32(buf + off + 4, MIGRATE_VIRTIO_BLK_MAX_LEN + 1);
	assert_int_equal(load_fresh(buf, len, msg, sizeof(msg), &same),
			 -EPROTO);
	assert_contains(msg, "(virtio-blk): length 35238 over the bound 35237");
	free(buf);

	/* Missing: the end marker names it. */
	len = world_stream(&src, &buf, NULL);
	len = drop_section(buf, len, MIGRATE_SEC_VIRTIO_BLK, 0);
	assert_int_equal(load_fresh(buf, len, msg, sizeof(msg), &same),
			 -EPROTO);
	assert_contains(msg, "(end): the state of 0 of 1 drives before the "
			     "end marker");
	free(buf);

	/* Twice. */
	{
		uint8_t *two;
		size_t sz;

		len = world_stream(&src, &buf, NULL);
		off = find_section(buf, len, MIGRATE_SEC_VIRTIO_BLK, 0);
		sz = 12 + migrate_get32(buf + off + 4);
		two = malloc(len + sz);
		assert_non_null(two);
		memcpy(two, buf, off + sz);
		memcpy(two + off + sz, buf + off, len - off);
		assert_int_equal(load_fresh(two, len + sz, msg, sizeof(msg),
					    &same),
				 -EPROTO);
		assert_contains(msg, "(virtio-blk): drive 0 unexpected or "
				     "twice");
		free(two);
		free(buf);
	}

	/* Unexpected: a drive the configuration does not have. */
	{
		struct world dst;
		struct migrate_config cfg = src.cfg;
		struct migrate_virtio_blk v = { .index = 0 };
		struct migrate_writer *w;
		int fd = memfd_create("drive", 0);

		cfg.nr_drives = 0;
		world_init(&dst, 2);
		dst.cfg.nr_drives = 0;
		virtio_mmio_save(src.virtio[0], &v.st);
		w = migrate_writer_new(fd);
		assert_int_equal(migrate_write_header(w), 0);
		assert_int_equal(migrate_write_config(w, &cfg), 0);
		assert_int_equal(migrate_write_virtio_blk(w, &v), 0);
		assert_int_equal(migrate_write_end(w), 0);
		migrate_writer_free(w);
		len = (size_t)lseek(fd, 0, SEEK_END);
		buf = malloc(len);
		assert_int_equal(pread(fd, buf, len, 0), (ssize_t)len);
		close(fd);
		assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)),
				 -EPROTO);
		assert_string_equal(msg, "section 2 (virtio-blk): drive 0 "
					 "unexpected or twice");
		free(buf);
		world_fini(&dst);
	}
	migrate_reader_free(r);
	world_fini(&src);
}

/*
 * Requests the drive held for a retry (version 4): their heads travel
 * with the queue and the destination's device takes them; a cut, an
 * over-long list, a head outside the queue, a head twice or a count
 * that disagrees with the queue's indices is refused and named, and the
 * destination's device keeps what it had.
 */
static void test_virtio_blk_held_heads(void **state)
{
	static const uint16_t heads[2] = { 3, 9 };
	struct world src, dst;
	struct migrate_reader *r = migrate_reader_new_mem(NULL, 0);
	struct migrate_virtio_blk vb;
	const size_t q0 = MIGRATE_VIRTIO_BLK_FIXED;
	uint8_t *buf, *p;
	size_t len, off;
	uint32_t plen;
	char msg[256];
	bool same;

	(void)state;
	world_init(&src, 2);
	world_fill(&src);
	world_hold(&src, 0, heads, 2);
	len = world_stream(&src, &buf, NULL);
	off = find_section(buf, len, MIGRATE_SEC_VIRTIO_BLK, 0);
	plen = migrate_get32(buf + off + 4);
	p = buf + off + 8;
	assert_int_equal(plen,
			 MIGRATE_VIRTIO_BLK_FIXED +
				 WORLD_DRIVE_QUEUES * MIGRATE_VIRTIO_QUEUE_LEN +
				 2 * 2);
	assert_int_equal(migrate_parse_virtio_blk(r, p, plen, &vb), 0);
	if (vb.st.q[0].nr_held != 2 || vb.st.q[0].held[0] != 3 ||
	    vb.st.q[0].held[1] != 9 || vb.st.q[0].last_avail != 9 ||
	    vb.st.q[1].nr_held != 0)
		fail_msg("parsed: queue 0 holds %u (%u, %u), last_avail %u; "
			 "queue 1 holds %u",
			 vb.st.q[0].nr_held, vb.st.q[0].held[0],
			 vb.st.q[0].held[1], vb.st.q[0].last_avail,
			 vb.st.q[1].nr_held);

	/* Loaded: the destination's device holds the same heads. */
	world_init(&dst, 2);
	if (load(&dst, buf, len, msg, sizeof(msg)))
		fail_msg("load refused held heads: %s", msg);
	if (dst.drive_nr_held[0] != 2 || dst.drive_held[0][0] != 3 ||
	    dst.drive_held[0][1] != 9 || dst.drive_nr_held[1] != 0)
		fail_msg("the destination's drive holds %u on queue 0 (%u, "
			 "%u), %u on queue 1",
			 dst.drive_nr_held[0], dst.drive_held[0][0],
			 dst.drive_held[0][1], dst.drive_nr_held[1]);
	world_fini(&dst);

	/* Decoding: every cut is named; at most a queue's worth. */
	for (uint32_t n = 0; n < plen; n++)
		if (migrate_parse_virtio_blk(r, p, n, &vb) != -EPROTO ||
		    !strstr(migrate_reader_error(r), "truncated at"))
			fail_msg("payload cut to %u of %u bytes: \"%s\"", n,
				 plen, migrate_reader_error(r));
	/* Queue 0's heads end 2 + 4 bytes into queue 1's place. */
	assert_int_equal(migrate_parse_virtio_blk(
				 r, p, q0 + MIGRATE_VIRTIO_QUEUE_LEN + 3, &vb),
			 -EPROTO);
	assert_contains(migrate_reader_error(r),
			"truncated at queue held head");
	migrate_put16(p + q0 + 36, 257);
	assert_int_equal(migrate_parse_virtio_blk(r, p, plen, &vb), -EPROTO);
	assert_contains(migrate_reader_error(r),
			"drive 0: queue 0: 257 held requests, over 256");
	migrate_put16(p + q0 + 36, 2);

	/* Loading: checked against the queue, nothing changed. */
	migrate_put16(p + q0 + 38 + 2, 16); /* the queue has 16 entries */
	reseal(buf, off);
	assert_refused_fresh(buf, len, -EINVAL,
			     "(virtio-blk): drive 0: virtio: queue 0: held "
			     "head 16 is not below the queue size 16");
	migrate_put16(p + q0 + 38 + 2, 3);
	reseal(buf, off);
	assert_refused_fresh(buf, len, -EINVAL,
			     "virtio: queue 0: held head 3 twice");
	migrate_put16(p + q0 + 38 + 2, 9);
	migrate_put16(p + q0 + 29, 10); /* last_avail: 3 in flight */
	reseal(buf, off);
	assert_refused_fresh(buf, len, -EINVAL,
			     "virtio: queue 0 has 3 requests in flight but "
			     "2 held heads");
	migrate_put16(p + q0 + 29, 9);
	reseal(buf, off);
	assert_int_equal(load_fresh(buf, len, msg, sizeof(msg), &same), 0);
	free(buf);
	migrate_reader_free(r);
	world_fini(&src);
}

/* State the destination's device could not be in is refused by
 * virtio_mmio_load(), named, and the transport keeps what it had. */
static void test_virtio_blk_bad_state_changes_nothing(void **state)
{
	struct world src;
	uint8_t *buf, *p;
	size_t len, off, q0;
	char msg[256];
	bool same;

	(void)state;
	world_init(&src, 2);
	world_fill(&src);
	len = world_stream(&src, &buf, NULL);
	off = find_section(buf, len, MIGRATE_SEC_VIRTIO_BLK, 0);
	p = buf + off + 8;
	q0 = MIGRATE_VIRTIO_BLK_FIXED;

	/* A ring outside guest RAM (slot 0 ends at 128 KiB). */
	migrate_put64(p + q0 + 5 + 16, 0x40000);
	reseal(buf, off);
	assert_refused_fresh(buf, len, -EINVAL,
			     "(virtio-blk): drive 0: virtio: queue 0:");
	migrate_put64(p + q0 + 5 + 16, 6 * PAGE_SIZE);
	/* Requests in flight: the source did not drain. */
	migrate_put16(p + q0 + 29, 9);
	reseal(buf, off);
	assert_refused_fresh(buf, len, -EINVAL,
			     "queue 0 has 2 requests in flight");
	migrate_put16(p + q0 + 29, 7);
	/* A size over QueueNumMax. */
	migrate_put32(p + q0, 512);
	reseal(buf, off);
	assert_refused_fresh(buf, len, -EINVAL,
			     "queue 0: size over QueueNumMax");
	migrate_put32(p + q0, 16);
	/* Features the device does not offer. */
	migrate_put64(p + 21, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << 40));
	reseal(buf, off);
	assert_refused_fresh(buf, len, -EINVAL,
			     "driver features 0x10100000000 with FEATURES_OK");
	/* Put back, it loads. */
	migrate_put64(p + 21, (1ULL << VIRTIO_F_VERSION_1) |
				      (1ULL << VIRTIO_F_EVENT_IDX));
	reseal(buf, off);
	assert_int_equal(load_fresh(buf, len, msg, sizeof(msg), &same), 0);
	assert_false(same);
	free(buf);
	world_fini(&src);
}

/* The drives must match before any page is stored: count, size,
 * read-only and discard, each named with the drive. */
static void test_drive_config_mismatch_is_named(void **state)
{
	struct world src, dst;
	struct migrate_reader *r = migrate_reader_new_mem(NULL, 0);
	struct migrate_config cfg;
	struct virtio_mmio_state before, after;
	uint8_t *buf, *p;
	size_t len, off;
	char msg[256];

	(void)state;
	world_init(&src, 2);
	world_fill(&src);
	len = world_stream(&src, &buf, NULL);
	world_init(&dst, 2);
	virtio_mmio_save(dst.virtio[0], &before);

	dst.cfg.drives[0].size *= 2;
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "section 1 (config): drive 0 ('virtio0'): "
				 "the stream's image is 1048576 bytes, this "
				 "VM's 2097152");
	dst.cfg.drives[0].size /= 2;
	dst.cfg.drives[0].flags = MIGRATE_DRIVE_READONLY;
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EINVAL);
	assert_contains(msg, "drive 0 ('virtio0'): readonly=off in the "
			     "stream, readonly=on in this VM");
	dst.cfg.drives[0].flags = MIGRATE_DRIVE_DISCARD;
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EINVAL);
	assert_contains(msg, "discard=ignore in the stream, discard=unmap");
	dst.cfg.drives[0].flags = 0;
	dst.cfg.nr_drives = 0;
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), -EINVAL);
	assert_contains(msg, "drive count: the stream has 1, this VM has 0");
	dst.cfg.nr_drives = 1;
	/* Nothing was stored. */
	for (size_t i = 0; i < WORLD_SLOT0_PAGES * PAGE_SIZE; i++)
		if (dst.mem[0][i])
			fail_msg("byte %zu written by a refused stream", i);
	virtio_mmio_save(dst.virtio[0], &after);
	assert_memory_equal(&before, &after, sizeof(before));

	/* The configuration's drive fields are checked as parsed. */
	off = find_section(buf, len, MIGRATE_SEC_CONFIG, 0);
	p = buf + off + 8;
	assert_int_equal(migrate_parse_config(r, p, 88, &cfg), 0);
	assert_int_equal(cfg.nr_drives, 1);
	assert_int_equal(cfg.drives[0].size, WORLD_DRIVE_SIZE);
	assert_int_equal(migrate_parse_config(r, p, 87, &cfg), -EPROTO);
	assert_contains(migrate_reader_error(r), "truncated at drive flags");
	assert_int_equal(migrate_parse_config(r, p, 74, &cfg), -EPROTO);
	assert_contains(migrate_reader_error(r), "truncated at nr_drives");
	migrate_put32(p + 84, 4);
	assert_int_equal(migrate_parse_config(r, p, 88, &cfg), -EPROTO);
	assert_contains(migrate_reader_error(r), "drive 0: unknown flags 0x4");
	migrate_put32(p + 84, 0);
	migrate_put32(p + 72, 17);
	assert_int_equal(migrate_parse_config(r, p, 88, &cfg), -EPROTO);
	assert_contains(migrate_reader_error(r), "nr_drives 17 over 16");
	free(buf);
	migrate_reader_free(r);
	world_fini(&dst);
	world_fini(&src);
}

/* A section header's reserved field (docs/MIGRATION.md, "Sections")
 * must be zero: any bit of it set is refused, naming it, though the
 * checksum covers it and matches. */
static void test_section_reserved_field_not_zero_refused(void **state)
{
	struct world src, dst;
	uint8_t *buf;
	size_t len, off;
	char msg[256], want[64];

	(void)state;
	world_init(&src, 1);
	len = world_stream(&src, &buf, NULL);
	off = find_section(buf, len, MIGRATE_SEC_SERIAL, 0);
	for (unsigned int b = 0; b < 16; b++) {
		migrate_put16(buf + off + 2, (uint16_t)(1u << b));
		reseal(buf, off);
		world_init(&dst, 1);
		assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)),
				 -EPROTO);
		snprintf(want, sizeof(want), "reserved field %#x not zero",
			 1u << b);
		assert_contains(msg, want);
		world_fini(&dst);
	}
	migrate_put16(buf + off + 2, 0);
	reseal(buf, off);
	world_init(&dst, 1);
	assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), 0);
	world_fini(&dst);
	free(buf);
	world_fini(&src);
}

/* The configuration's counts and flags, each at its bound: the last
 * value accepted, the next refused naming it, and every unknown flag
 * bit refused one by one (docs/MIGRATION.md, "config"). */
static void test_config_bounds_and_every_unknown_flag(void **state)
{
	struct migrate_reader *r = migrate_reader_new_mem(NULL, 0);
	struct migrate_config cfg;
	struct world src;
	uint8_t *buf, *p;
	size_t len;
	char want[64];

	(void)state;
	world_init(&src, 2);
	len = world_stream(&src, &buf, NULL);
	/* nr_vcpus at 0, slot i's flags at 28 + 24 i, drive 0's at 84. */
	p = buf + find_section(buf, len, MIGRATE_SEC_CONFIG, 0) + 8;
	assert_int_equal(migrate_parse_config(r, p, 88, &cfg), 0);
	migrate_put32(p, MIGRATE_MAX_VCPUS);
	assert_int_equal(migrate_parse_config(r, p, 88, &cfg), 0);
	assert_int_equal(cfg.nr_vcpus, MIGRATE_MAX_VCPUS);
	migrate_put32(p, MIGRATE_MAX_VCPUS + 1);
	assert_int_equal(migrate_parse_config(r, p, 88, &cfg), -EPROTO);
	snprintf(want, sizeof(want), "nr_vcpus %u out of range",
		 MIGRATE_MAX_VCPUS + 1);
	assert_contains(migrate_reader_error(r), want);
	migrate_put32(p, 0);
	assert_int_equal(migrate_parse_config(r, p, 88, &cfg), -EPROTO);
	assert_contains(migrate_reader_error(r), "nr_vcpus 0 out of range");
	migrate_put32(p, 2);
	for (unsigned int b = 1; b < 32; b++) {
		migrate_put32(p + 52, 1u << b);
		assert_int_equal(migrate_parse_config(r, p, 88, &cfg), -EPROTO);
		assert_contains(migrate_reader_error(r), "unknown flags");
	}
	migrate_put32(p + 52, MIGRATE_SLOT_READONLY);
	assert_int_equal(migrate_parse_config(r, p, 88, &cfg), 0);
	migrate_put32(p + 52, 0);
	for (unsigned int b = 2; b < 32; b++) {
		migrate_put32(p + 84, 1u << b);
		assert_int_equal(migrate_parse_config(r, p, 88, &cfg), -EPROTO);
		snprintf(want, sizeof(want), "drive 0: unknown flags %#x",
			 1u << b);
		assert_contains(migrate_reader_error(r), want);
	}
	migrate_put32(p + 84, MIGRATE_DRIVE_READONLY | MIGRATE_DRIVE_DISCARD);
	assert_int_equal(migrate_parse_config(r, p, 88, &cfg), 0);
	free(buf);
	migrate_reader_free(r);
	world_fini(&src);
}

/* ---- the source's run state (version 5) ------------------------------- */

/* world's stream with its run state section (the last before the end
 * marker) replaced by a section of type MIGRATE_SEC_RUNSTATE and payload
 * p, or dropped (p NULL), or given twice (twice). */
static size_t runstate_stream(struct world *src, const void *p, uint32_t plen,
			      bool twice, uint8_t **out)
{
	uint8_t *buf;
	size_t len = world_stream(src, &buf, NULL), end, at;
	uint32_t old;

	/* The end marker is the last 12 bytes; the run state before it. */
	end = len - 12;
	old = (uint32_t)strlen(migrate_runstate_name(src->runstate));
	at = end - (8 + old + 4);
	assert_int_equal(migrate_get16(buf + at), MIGRATE_SEC_RUNSTATE);
	buf = realloc(buf, at + 2 * (12 + plen) + 12);
	assert_non_null(buf);
	len = at;
	for (int k = 0; p && k < (twice ? 2 : 1); k++) {
		migrate_put16(buf + len, MIGRATE_SEC_RUNSTATE);
		migrate_put16(buf + len + 2, 0);
		migrate_put32(buf + len + 4, plen);
		memcpy(buf + len + 8, p, plen);
		reseal(buf, len);
		len += 12 + plen;
	}
	migrate_put16(buf + len, MIGRATE_SEC_END);
	migrate_put16(buf + len + 2, 0);
	migrate_put32(buf + len + 4, 0);
	reseal(buf, len);
	*out = buf;
	return len + 12;
}

/* Every state a source can be in arrives as it left. */
static void test_runstate_roundtrip(void **state)
{
	(void)state;
	for (unsigned int i = 0; i < MIGRATE_RS_COUNT; i++) {
		struct world src, dst;
		uint8_t *buf;
		size_t len;
		char msg[256];

		world_init(&src, 1);
		world_init(&dst, 1);
		src.runstate = i;
		len = world_stream(&src, &buf, NULL);
		assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)), 0);
		if (dst.loaded_runstate != i)
			fail_msg("sent %s, loaded %s", migrate_runstate_name(i),
				 migrate_runstate_name(dst.loaded_runstate));
		free(buf);
		world_fini(&src);
		world_fini(&dst);
	}
	assert_string_equal(migrate_runstate_name(MIGRATE_RS_IO_ERROR),
			    "io-error");
	assert_null(migrate_runstate_name(MIGRATE_RS_COUNT));
}

/* A bad state string, a second run state or none: refused, naming it,
 * and the destination's run state not set. */
static void test_runstate_refusals(void **state)
{
	static const struct {
		const char *payload;
		uint32_t len;
		bool twice;
		const char *msg;
	} bad[] = {
		{ "inmigrate", 9, false,
		  "(run state): run state 'inmigrate' is not one a source "
		  "can be in" },
		{ "finish-migrate", 14, false,
		  "(run state): run state 'finish-migrate' is not one a "
		  "source can be in" },
		{ "Running", 7, false,
		  "(run state): run state 'Running' is not one a source can "
		  "be in" },
		{ "running\0", 8, false,
		  "(run state): run state of 8 bytes is not a run state "
		  "name" },
		{ "runnin", 6, false,
		  "(run state): run state 'runnin' is not one a source can "
		  "be in" },
		{ "", 0, false,
		  "(run state): run state of 0 bytes is not a run state "
		  "name" },
		{ "paused\n", 7, false,
		  "(run state): run state of 7 bytes is not a run state "
		  "name" },
		{ "io-error", 8, true, "(run state): a second run state" },
		{ NULL, 0, false, "(end): no run state before the end marker" },
		/* Longer than any name: refused by its bound, unread. */
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 33, false,
		  "(run state): length 33 over the bound 32" },
	};

	(void)state;
	_Static_assert(MIGRATE_RUNSTATE_MAX_LEN == 32, "the table's bound");
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		struct world src, dst;
		uint8_t *buf;
		size_t len;
		char msg[256];

		world_init(&src, 1);
		world_init(&dst, 1);
		len = runstate_stream(&src, bad[k].payload, bad[k].len,
				      bad[k].twice, &buf);
		assert_int_equal(load(&dst, buf, len, msg, sizeof(msg)),
				 -EPROTO);
		assert_contains(msg, bad[k].msg);
		if (!bad[k].twice && dst.loaded_runstate != MIGRATE_RS_COUNT)
			fail_msg("case %zu: a refused run state was kept", k);
		free(buf);
		world_fini(&src);
		world_fini(&dst);
	}
}

/* A COM1 section whose queue is cut short: named, never read past the
 * payload (the fuzz target found a read past a buffer of zeros here;
 * tests/fuzz/corpus/migrate/crash-serial-short-queue.hex). */
static void test_serial_section_short_queue(void **state)
{
	struct migrate_reader *r = migrate_reader_new_mem(NULL, 0);
	struct dev_serial_state *st = malloc(sizeof(*st));
	uint8_t p[MIGRATE_SERIAL_FIXED + 10] = { 0 };

	(void)state;
	migrate_put32(p + 7, DEV_SERIAL_RX_SIZE);
	assert_int_equal(migrate_parse_serial(r, p, sizeof(p), st), -EPROTO);
	assert_string_equal(migrate_reader_error(r),
			    "truncated at receive queue");
	migrate_put32(p + 7, DEV_SERIAL_RX_SIZE + 1);
	assert_int_equal(migrate_parse_serial(r, p, sizeof(p), st), -EPROTO);
	assert_string_equal(migrate_reader_error(r), "rx_len 4097 over 4096");
	migrate_put32(p + 7, 10);
	assert_int_equal(migrate_parse_serial(r, p, sizeof(p), st), 0);
	free(st);
	migrate_reader_free(r);
}

static uint8_t serial_in(struct dev_serial *s, unsigned int reg)
{
	uint32_t v = 0;

	dev_serial_pio(s, reg, 1, true, &v);
	return (uint8_t)v;
}

static void sink(void *ctx, const char *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
}

/* COM1's queue, wrapped around its ring, comes back in order; its
 * registers read back the same. */
static void test_serial_state_roundtrip(void **state)
{
	struct dev_serial *a = dev_serial_create(sink, NULL);
	struct dev_serial *b = dev_serial_create(sink, NULL);
	struct dev_serial_state *st = malloc(sizeof(*st));
	uint8_t data[4000];
	uint32_t v;
	char err[64];

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13 + 1);
	assert_int_equal(dev_serial_receive(a, data, 4000), 4000);
	for (int i = 0; i < 3000; i++)
		assert_int_equal(serial_in(a, 0), data[i]);
	assert_int_equal(dev_serial_receive(a, data, 3000), 3000);
	v = 0x5c;
	dev_serial_pio(a, 7, 1, false, &v);
	v = 0x1b;
	dev_serial_pio(a, 3, 1, false, &v);
	dev_serial_save(a, st);
	assert_int_equal(st->rx_len, 4000);
	assert_true(dev_serial_load(b, st, err, sizeof(err)));
	assert_int_equal(serial_in(b, 7), 0x5c);
	assert_int_equal(serial_in(b, 3), 0x1b);
	for (int i = 3000; i < 4000; i++)
		assert_int_equal(serial_in(b, 0), data[i]);
	for (int i = 0; i < 3000; i++)
		assert_int_equal(serial_in(b, 0), data[i]);
	assert_int_equal(serial_in(b, 5) & 1, 0); /* LSR.DR: empty */

	/* Out-of-range values: refused by name, nothing loaded. */
	st->ier = 0x10;
	assert_false(dev_serial_load(b, st, err, sizeof(err)));
	assert_string_equal(err, "COM1 ier out of range");
	st->ier = 0;
	st->rx_len = DEV_SERIAL_RX_SIZE + 1;
	assert_false(dev_serial_load(b, st, err, sizeof(err)));
	assert_string_equal(err, "COM1 rx_len out of range");
	assert_int_equal(serial_in(b, 5) & 1, 0);
	free(st);
	dev_serial_destroy(a);
	dev_serial_destroy(b);
}

struct drain {
	int fd;
	struct world *dst;
	int rc;
	char msg[256];
};

/* The destination side over a pipe: the reader's fd path. */
static void *drain_thread(void *arg)
{
	struct drain *d = arg;
	struct migrate_reader *r = migrate_reader_new(d->fd);

	d->rc = migrate_load(r, &d->dst->dest, NULL);
	snprintf(d->msg, sizeof(d->msg), "%s", migrate_reader_error(r));
	migrate_reader_free(r);
	return NULL;
}

/* The writer over a non-blocking pipe whose reader is slower: short
 * writes and EAGAIN go on until every byte is out, and the fd reader
 * loads it all. */
static void test_stream_over_a_nonblocking_pipe(void **state)
{
	struct world src, dst;
	struct drain d;
	pthread_t t;
	int fds[2];
	char err[256];

	(void)state;
	world_init(&src, 2);
	world_init(&dst, 2);
	world_fill(&src);
	assert_int_equal(pipe(fds), 0);
	fcntl(fds[1], F_SETPIPE_SZ, 4096);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	d = (struct drain){ .fd = fds[0], .dst = &dst };
	assert_int_equal(pthread_create(&t, NULL, drain_thread, &d), 0);
	if (world_write(&src, fds[1], NULL, err, sizeof(err)))
		fail_msg("writer: %s", err);
	close(fds[1]);
	pthread_join(t, NULL);
	close(fds[0]);
	if (d.rc)
		fail_msg("fd reader: %s", d.msg);
	assert_memory_equal(src.mem[0], dst.mem[0],
			    WORLD_SLOT0_PAGES * PAGE_SIZE);
	world_fini(&src);
	world_fini(&dst);
}

static void on_signal(int sig)
{
	(void)sig;
}

struct signaller {
	pthread_t targets[2];
	_Atomic int stop;
	_Atomic unsigned long sent;
};

static void *signal_thread(void *arg)
{
	struct signaller *s = arg;
	struct timespec ts = { 0, 10000 };

	while (!s->stop) {
		pthread_kill(s->targets[0], SIGUSR1);
		pthread_kill(s->targets[1], SIGUSR1);
		s->sent++;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* Signals without SA_RESTART interrupt the writer's write() and the
 * reader's read() on a blocking pipe again and again: EINTR and short
 * transfers carry on and the stream arrives whole. */
static void test_stream_survives_eintr(void **state)
{
	struct world src, dst;
	struct sigaction sa = { .sa_handler = on_signal }, old;
	struct signaller sg = { 0 };
	pthread_t t, st;
	struct drain d;
	int fds[2];
	char err[256];

	(void)state;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART */
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
	world_init(&src, 2);
	world_init(&dst, 2);
	world_fill(&src);
	assert_int_equal(pipe(fds), 0);
	fcntl(fds[1], F_SETPIPE_SZ, 4096);
	d = (struct drain){ .fd = fds[0], .dst = &dst };
	assert_int_equal(pthread_create(&t, NULL, drain_thread, &d), 0);
	sg.targets[0] = pthread_self();
	sg.targets[1] = t;
	assert_int_equal(pthread_create(&st, NULL, signal_thread, &sg), 0);
	while (sg.sent < 3)
		sched_yield();
	if (world_write(&src, fds[1], NULL, err, sizeof(err)))
		fail_msg("writer: %s", err);
	close(fds[1]);
	pthread_join(t, NULL);
	sg.stop = 1;
	pthread_join(st, NULL);
	close(fds[0]);
	sigaction(SIGUSR1, &old, NULL);
	if (d.rc)
		fail_msg("fd reader: %s", d.msg);
	assert_true(sg.sent > 0);
	assert_memory_equal(src.mem[0], dst.mem[0],
			    WORLD_SLOT0_PAGES * PAGE_SIZE);
	world_fini(&src);
	world_fini(&dst);
}

/* A peer gone: the writer says so with errno's text, and stays failed. */
static void test_writer_reports_errno(void **state)
{
	struct world src;
	int fds[2];
	char err[256];

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	world_init(&src, 1);
	assert_int_equal(pipe(fds), 0);
	close(fds[0]);
	assert_int_equal(world_write(&src, fds[1], NULL, err, sizeof(err)),
			 -EPIPE);
	assert_string_equal(err, "write: Broken pipe");
	close(fds[1]);
	world_fini(&src);
}

/* Writes buf as hexadecimal text, 32 bytes a line (tests/fuzz/replay.h
 * reads .hex seeds). */
static void write_hex(const char *dir, const char *name, const uint8_t *buf,
		      size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.hex", dir, name);
	f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(1);
	}
	for (size_t i = 0; i < len; i++)
		fprintf(f, "%02x%s", buf[i], i % 32 == 31 ? "\n" : "");
	fprintf(f, "\n");
	fclose(f);
}

/*
 * The fuzz target's seeds (tests/fuzz/corpus/migrate): streams of the
 * target's destination (two vCPUs) with one page of data, valid and
 * broken in the ways the destination must name.
 */
static int write_corpus(const char *dir)
{
	struct world src, one;
	uint8_t *buf, *buf1;
	size_t len, len1;

	world_init(&src, 2);
	world_fill(&src);
	memset(src.mem[0], 0, WORLD_SLOT0_PAGES * PAGE_SIZE);
	memset(src.mem[1], 0, WORLD_SLOT1_PAGES * PAGE_SIZE);
	memset(src.mem[0] + 2 * PAGE_SIZE, 0x3c, 64);
	len = world_stream(&src, &buf, NULL);
	write_hex(dir, "valid", buf, len);
	write_hex(dir, "truncated-vcpu", buf, len - 1500);
	write_hex(dir, "truncated-header", buf, 10);
	buf[MIGRATE_HEADER_LEN + 12 + 88 + 12 + 8 + 9 * 2 + 9 + 5] ^= 0x10;
	write_hex(dir, "bitflip-ram", buf, len);
	buf[MIGRATE_HEADER_LEN + 12 + 88 + 12 + 8 + 9 * 2 + 9 + 5] ^= 0x10;
	{
		/* The drive's section cut, twice, and gone. */
		size_t off = find_section(buf, len, MIGRATE_SEC_VIRTIO_BLK, 0);
		size_t sz = 12 + migrate_get32(buf + off + 4);
		uint8_t *two = malloc(len + sz);

		if (!two)
			abort();
		write_hex(dir, "truncated-virtio-blk", buf, off + 40);
		memcpy(two, buf, off + sz);
		memcpy(two + off + sz, buf + off, len - off);
		write_hex(dir, "virtio-blk-twice", two, len + sz);
		memcpy(two, buf, len);
		write_hex(dir, "virtio-blk-missing", two,
			  drop_section(two, len, MIGRATE_SEC_VIRTIO_BLK, 0));
		free(two);
	}
	migrate_put32(buf + 8, 2);
	write_hex(dir, "wrong-version", buf, len);
	migrate_put32(buf + 8, MIGRATE_VERSION);
	buf = realloc(buf, len + 3);
	memcpy(buf + len, "xyz", 3);
	write_hex(dir, "trailing", buf, len + 3);
	world_init(&one, 1);
	len1 = world_stream(&one, &buf1, NULL);
	write_hex(dir, "one-vcpu", buf1, len1);
	free(buf);
	{
		/* Requests held for a retry (version 4). */
		static const uint16_t heads[2] = { 3, 9 };

		world_hold(&src, 0, heads, 2);
		len = world_stream(&src, &buf, NULL);
		write_hex(dir, "virtio-blk-held", buf, len);
		free(buf);
	}
	/* A source stopped by an I/O error (version 5), and a run state
	 * no source is in. */
	src.runstate = MIGRATE_RS_IO_ERROR;
	len = world_stream(&src, &buf, NULL);
	write_hex(dir, "runstate-io-error", buf, len);
	free(buf);
	len = runstate_stream(&src, "inmigrate", 9, false, &buf);
	write_hex(dir, "runstate-bad", buf, len);
	free(buf);
	free(buf1);
	world_fini(&src);
	world_fini(&one);
	return 0;
}

/*
 * Slots backed by a memfd (as the daemon's are): the source sends the
 * pages in the file's holes as zero markers without reading them, and
 * the destination writes normal pages through its file and punches its
 * zero pages out, ending with exactly the source's bytes.
 */
static void test_memfd_holes_unread_and_pwritev_load(void **state)
{
	const size_t npages = 64, size = npages * PAGE_SIZE;
	static const uint64_t data_pages[] = { 3, 4, 5, 40 };
	int sfd = memfd_create("src", 0), dfd = memfd_create("dst", 0);
	int out = memfd_create("stream", 0);
	struct migrate_ram_stats st = { 0 }, ls = { 0 };
	struct migrate_holes h = { .fd = sfd };
	struct migrate_ram_target t;
	struct migrate_writer *w;
	struct migrate_reader *r;
	uint64_t idx[64];
	uint8_t *src, *dst;

	(void)state;
	assert_true(sfd >= 0 && dfd >= 0 && out >= 0);
	assert_int_equal(ftruncate(sfd, (off_t)size), 0);
	assert_int_equal(ftruncate(dfd, (off_t)size), 0);
	src = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
	dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
	assert_true(src != MAP_FAILED && dst != MAP_FAILED);
	for (size_t i = 0; i < ARRAY_SIZE(data_pages); i++)
		memset(src + data_pages[i] * PAGE_SIZE, 0x10 + (int)i,
		       PAGE_SIZE);
	/* Stale bytes on the destination (what its loader wrote, say). */
	memset(dst, 0xdd, size);
	for (size_t i = 0; i < npages; i++)
		idx[i] = i;
	w = migrate_writer_new(out);
	assert_non_null(w);
	assert_int_equal(migrate_write_header(w), 0);
	assert_int_equal(migrate_write_ram_fd(w, 0, (hva_t)(uintptr_t)src, &h,
					      size, idx, npages, &st),
			 0);
	assert_int_equal(migrate_writer_flush(w), 0);
	migrate_writer_free(w);
	assert_int_equal(st.normal, ARRAY_SIZE(data_pages));
	assert_int_equal(st.duplicate, npages - ARRAY_SIZE(data_pages));
	/* The holes were not read: the source's file still has them. */
	assert_int_equal(lseek(sfd, 0, SEEK_DATA), 3 * PAGE_SIZE);
	assert_int_equal(lseek(sfd, 6 * PAGE_SIZE, SEEK_DATA), 40 * PAGE_SIZE);

	assert_int_equal(lseek(out, 0, SEEK_SET), 0);
	r = migrate_reader_new(out);
	assert_non_null(r);
	assert_int_equal(migrate_read_header(r), 0);
	t = (struct migrate_ram_target){ .id = 0,
					 .hva = (hva_t)(uintptr_t)dst,
					 .size = size,
					 .use_fd = true,
					 .fd = dfd };
	for (;;) {
		const uint8_t *p;
		uint16_t type;
		uint32_t len;
		int rc = migrate_read_section(r, &type, &p, &len);

		if (rc == -EPROTO &&
		    strstr(migrate_reader_error(r), "without an end marker"))
			break; /* the sections are done */
		assert_int_equal(rc, 0);
		assert_int_equal(type, MIGRATE_SEC_RAM);
		assert_int_equal(migrate_load_ram(r, p, len, &t, 1, &ls), 0);
	}
	migrate_reader_free(r);
	assert_int_equal(ls.normal, st.normal);
	assert_int_equal(ls.duplicate, st.duplicate);
	/* The zero pages are holes of the destination's file again
	 * (checked before anything reads them: a read of a hole through
	 * the mapping allocates the page). */
	assert_int_equal(lseek(dfd, 0, SEEK_DATA), 3 * PAGE_SIZE);
	assert_int_equal(lseek(dfd, 6 * PAGE_SIZE, SEEK_DATA), 40 * PAGE_SIZE);
	assert_memory_equal(dst, src, size);
	munmap(src, size);
	munmap(dst, size);
	close(sfd);
	close(dfd);
	close(out);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_check_value),
		cmocka_unit_test(test_crc32c_three_chains),
		cmocka_unit_test(test_roundtrip_restores_everything),
		cmocka_unit_test(test_zero_pages_are_markers),
		cmocka_unit_test(test_every_truncation_is_refused),
		cmocka_unit_test(test_every_bit_flip_is_refused),
		cmocka_unit_test(test_header_errors_are_named),
		cmocka_unit_test(test_trailing_garbage_is_refused),
		cmocka_unit_test(test_config_mismatch_is_named),
		cmocka_unit_test(test_ram_outside_slot_writes_nothing),
		cmocka_unit_test(test_section_order_is_checked),
		cmocka_unit_test(test_bad_vcpu_state_is_refused),
		cmocka_unit_test(test_x2apic_base_loads),
		cmocka_unit_test(test_loaded_halt_state_holds),
		cmocka_unit_test(test_vcpu_section_fields_are_checked),
		cmocka_unit_test(test_irq_state_roundtrip),
		cmocka_unit_test(test_bad_irq_state_is_refused),
		cmocka_unit_test(test_bad_vm_irq_state_is_refused),
		cmocka_unit_test(test_irq_sections_are_required),
		cmocka_unit_test(test_irq_section_fields_are_checked),
		cmocka_unit_test(test_virtio_blk_roundtrip),
		cmocka_unit_test(test_virtio_blk_section_refusals),
		cmocka_unit_test(test_virtio_blk_held_heads),
		cmocka_unit_test(test_virtio_blk_bad_state_changes_nothing),
		cmocka_unit_test(test_drive_config_mismatch_is_named),
		cmocka_unit_test(test_runstate_roundtrip),
		cmocka_unit_test(test_runstate_refusals),
		cmocka_unit_test(test_serial_section_short_queue),
		cmocka_unit_test(test_serial_state_roundtrip),
		cmocka_unit_test(test_stream_over_a_nonblocking_pipe),
		cmocka_unit_test(test_stream_survives_eintr),
		cmocka_unit_test(test_writer_reports_errno),
		cmocka_unit_test(test_memfd_holes_unread_and_pwritev_load),
		cmocka_unit_test(test_config_bounds_and_every_unknown_flag),
		cmocka_unit_test(test_section_reserved_field_not_zero_refused),
	};

	if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
		return write_corpus(argv[2]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
