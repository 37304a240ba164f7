/*
 * mmud's settings: the command line (getopt_long), the key = value config
 * file of --config, and the defaults that follow from them (a named VM's
 * QMP and console sockets in /run/mmud/NAME/). Every value is checked
 * here, once, with a message that names the flag or file:line and the
 * reason; a flag given on the command line wins over the file. It owns
 * the strings of struct mmud_config and nothing else.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev/blk.h"
#include "mmu.h"
#include "mmud.h"
#include "vm_paths.h"
#include "vm.h"

#define LINE_MAX_LEN 4096
/* MMU_DIRTY_RING_MIN and _MAX of core/mmu/mmu.h, which the fuzzed
 * config parser is built without; mmu_dirty_ring_enable() checks them
 * again at start. */
#define DIRTY_RING_MIN 128u
#define DIRTY_RING_MAX 65536u
_Static_assert(MMUD_MMU_OPTIONS == MMU_OPT_NR, "one byte per MMU option");

enum key {
	K_KERNEL,
	K_INITRD,
	K_MEMORY,
	K_SMP,
	K_APPEND,
	K_CONSOLE,
	K_QMP,
	K_NAME,
	K_PAUSED,
	K_PANIC,
	K_NO_REBOOT,
	K_MAXMEM,
	K_DUMP_GUEST_CORE,
	K_MEMORY_MAX,
	K_INCOMING,
	K_DRIVE,
	K_CPU,
	K_DIRTY_RING,
	K_MMU_OPTION,
	K_NR,
};

static const char *const key_names[K_NR] = {
	[K_KERNEL] = "kernel",
	[K_INITRD] = "initrd",
	[K_MEMORY] = "memory",
	[K_SMP] = "smp",
	[K_APPEND] = "append",
	[K_CONSOLE] = "console",
	[K_QMP] = "qmp",
	[K_NAME] = "name",
	[K_PAUSED] = "paused",
	[K_PANIC] = "panic",
	[K_NO_REBOOT] = "no-reboot",
	[K_MAXMEM] = "maxmem",
	[K_DUMP_GUEST_CORE] = "dump-guest-core",
	[K_MEMORY_MAX] = "memory-max",
	[K_INCOMING] = "incoming",
	[K_DRIVE] = "drive",
	[K_CPU] = "cpu",
	[K_DIRTY_RING] = "dirty-ring",
	[K_MMU_OPTION] = "mmu-option",
};

void mmud_usage(FILE *f)
{
	fprintf(f,
		"usage: mmud [--kernel FILE] [--memory SIZE] [--smp N]\n"
		"            [--append CMDLINE] [--console stdout|FILE|socket:PATH]\n"
		"            [--qmp PATH] [--name NAME] [--paused]\n"
		"            [--panic pause|exit] [--incoming URI|defer]\n"
		"            [--config FILE]\n"
		"\n"
		"Boots FILE (an ELF64 kernel for guest ABI v1; without it the\n"
		"embedded sample guest) on N software vCPUs (1-64, default 1)\n"
		"with SIZE of RAM (a multiple of 4K from 2M to 1T, default 256M;\n"
		"K, M, G and T suffixes) and runs until the guest exits, QMP\n"
		"quit, or SIGTERM/SIGINT.\n"
		"\n"
		"  --qmp PATH      QMP on a Unix socket (mode 0600); QEMU's\n"
		"                  unix:PATH[,server=on][,wait=off] works too\n"
		"  --name NAME     names the VM; its QMP and console sockets\n"
		"                  default to %s/NAME/qmp.sock and\n"
		"                  %s/NAME/console.sock\n"
		"  --console       stdout (default), a FILE, or socket:PATH (every\n"
		"                  client gets the stream, the last 64 KiB first)\n"
		"  --paused        vCPUs wait for QMP cont (QEMU's -S); needs a\n"
		"                  QMP socket (--qmp or --name)\n"
		"  --panic ACTION  on a guest crash: pause (the default with a\n"
		"                  QMP socket) or exit (status 2)\n"
		"  --maxmem SIZE   ceiling of boot RAM plus hot-added memslots\n"
		"                  (QEMU's -m maxmem; default 1T or SIZE of RAM)\n"
		"  --incoming URI  start as a migration destination (QEMU's\n"
		"                  -incoming): no vCPU runs until the stream from\n"
		"                  URI (unix:, tcp:, fd:, file:) has loaded; defer\n"
		"                  waits for QMP migrate-incoming\n"
		"  --dump-guest-core  guest RAM in core dumps (QEMU's\n"
		"                  dump-guest-core=on; off by default)\n"
		"  --initrd FILE   initial RAM disk of a Linux bzImage kernel\n"
		"                  (booted with Linux's 64-bit boot protocol)\n"
		"  --no-reboot     a guest reset ends mmud (status 0) instead\n"
		"                  (QEMU's -no-reboot)\n"
		"  --drive file=PATH[,format=raw][,readonly=on][,cache=none|\n"
		"                  writeback][,discard=unmap][,werror=report|stop]\n"
		"                  [,rerror=report|stop][,id=NAME][,serial=S]\n"
		"                  a virtio-blk disk (repeatable, up to 16;\n"
		"                  'drive' lines in the config file likewise)\n"
		"  --cpu ENGINE    how vCPUs run guest code: interp, the\n"
		"                  interpreter (the default); jit, the template\n"
		"                  JIT (x86-64 hosts; the interpreter when no\n"
		"                  executable memory); jit-verify, each block\n"
		"                  run by both and compared (docs/JIT.md)\n"
		"  --dirty-ring N  dirty tracking through a ring of N entries\n"
		"                  per vCPU (KVM's dirty ring): a power of two\n"
		"                  from 128 to 65536; 0, the default: bitmaps\n"
		"  --mmu-option NAME=VALUE  one of the MMU's switches\n"
		"                  (repeatable; x-query-mmu-options lists them):\n"
		"                  unsync=reachable|off|all, zap-all=fast|slow,\n"
		"                  mmio-wrap=zap-all|zap-mmio, memslots=rcu|rwlock\n"
		"  --config FILE   key = value lines with the same settings\n"
		"                  (kernel, memory, smp, append, console, qmp,\n"
		"                  name, paused, panic, maxmem, incoming,\n"
		"                  dump-guest-core, initrd, no-reboot, cpu,\n"
		"                  dirty-ring); '#'\n"
		"                  after a blank starts a comment; flags win\n"
		"\n"
		"Exit status: ((v << 1) | 1) & 0xff when the guest writes v to\n"
		"port 0xf4; 0 after quit or SIGTERM; 2 when the guest crashed\n"
		"and --panic is exit; 4 when mmud refused to start; 6 when an\n"
		"incoming migration failed.\n",
		QMP_VM_RUN_DIR, QMP_VM_RUN_DIR);
}

/* SIZE with an optional K/M/G/T suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned int shift = 0;

	errno = 0;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	case 't':
	case 'T':
		shift = 40;
		end++;
		break;
	default:
		return -EINVAL;
	}
	if (*end || v > (~0ULL >> shift))
		return -EINVAL;
	*out = v << shift;
	return 0;
}

static int parse_uint(const char *s, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 0xffffffffUL)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int set_string(char **dst, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

/*
 * --qmp: a path, or QEMU's spelling of the same Unix socket server,
 * unix:PATH with the options people paste from a QEMU command line
 * (server=on: mmud always listens; wait=off: mmud never waits for a
 * client before it starts the guest). Any other option, or another
 * backend (tcp:, telnet:), is refused by name rather than taken as part
 * of a file name.
 */
static int parse_qmp(struct mmud_config *cfg, const char *v, char *why,
		     size_t whylen)
{
	static const char *const backends[] = { "tcp:", "telnet:", "udp:",
						"vsock:", "websocket:" };
	const char *path = v, *opt, *end;
	size_t len, vlen = strlen(v);
	char *s;

	for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
		if (!strncmp(v, backends[i], strlen(backends[i]))) {
			snprintf(why, whylen,
				 "'%.*s' sockets are not supported: QMP is "
				 "served on a Unix socket (PATH or unix:PATH)",
				 (int)strlen(backends[i]) - 1, backends[i]);
			return -EINVAL;
		}
	}
	/* Lengths rather than NULs, so no read goes past v's end. */
	if (vlen >= 5 && !memcmp(v, "unix:", 5))
		path = v + 5;
	end = v + vlen;
	opt = memchr(path, ',', (size_t)(end - path));
	len = opt ? (size_t)(opt - path) : (size_t)(end - path);
	if (path != v) {
		bool server = false, wait = false;

		while (opt) {
			const char *o = opt + 1;
			const char *next = memchr(o, ',', (size_t)(end - o));
			size_t n = next ? (size_t)(next - o) :
					  (size_t)(end - o);

			if (n == 9 && !memcmp(o, "server=on", 9) && !server) {
				server = true;
			} else if (n == 8 && !memcmp(o, "wait=off", 8) &&
				   !wait) {
				wait = true;
			} else {
				snprintf(why, whylen,
					 "unix: option '%.*s' is not supported "
					 "(only server=on and wait=off, once "
					 "each)",
					 (int)(n > 60 ? 60 : n), o);
				return -EINVAL;
			}
			opt = next;
		}
	} else {
		len = vlen; /* a plain path may hold a comma */
	}
	if (!len) {
		snprintf(why, whylen, "an empty path");
		return -EINVAL;
	}
	s = strndup(path, len);
	if (!s)
		return -ENOMEM;
	free(cfg->qmp);
	cfg->qmp = s;
	return 0;
}

/*
 * Applies one setting; on a bad value writes the reason (without the
 * flag or file:line, which the caller adds) and returns -EINVAL.
 */
static int apply(struct mmud_config *cfg, enum key k, const char *v, char *why,
		 size_t whylen)
{
	switch (k) {
	case K_KERNEL:
		if (!*v)
			break;
		return set_string(&cfg->kernel, v);
	case K_MEMORY:
		if (parse_size(v, &cfg->memory) < 0) {
			snprintf(why, whylen,
				 "'%s' is not a size (e.g. 512M, 2G)", v);
			return -EINVAL;
		}
		/* vm_create() would refuse it too, without the flag's or
		 * the line's name. */
		if (cfg->memory < VM_MIN_RAM || cfg->memory > VM_MAX_RAM ||
		    cfg->memory % 4096) {
			snprintf(why, whylen,
				 "'%s' is not a multiple of 4K from 2M to 1T",
				 v);
			return -EINVAL;
		}
		return 0;
	case K_SMP:
		if (parse_uint(v, &cfg->smp) < 0 || cfg->smp < 1 ||
		    cfg->smp > VM_MAX_VCPUS) {
			snprintf(why, whylen,
				 "'%s' is not a vCPU count in 1..%u", v,
				 VM_MAX_VCPUS);
			return -EINVAL;
		}
		return 0;
	case K_DIRTY_RING:
		/* KVM's bounds (docs/MMU.md, "The dirty ring"). */
		if (parse_uint(v, &cfg->dirty_ring) < 0 ||
		    (cfg->dirty_ring &&
		     ((cfg->dirty_ring & (cfg->dirty_ring - 1)) ||
		      cfg->dirty_ring < DIRTY_RING_MIN ||
		      cfg->dirty_ring > DIRTY_RING_MAX))) {
			snprintf(why, whylen,
				 "'%s' is not 0 or a power of two from %u to "
				 "%u (entries per vCPU)",
				 v, DIRTY_RING_MIN, DIRTY_RING_MAX);
			return -EINVAL;
		}
		return 0;
	case K_MMU_OPTION: {
		enum mmu_option opt;
		unsigned int val;

		if (mmu_option_parse(v, &opt, &val, why, whylen) < 0)
			return -EINVAL;
		if (cfg->mmu_options[opt]) {
			snprintf(why, whylen, "MMU option '%s' given twice",
				 mmu_option_desc(opt)->name);
			return -EINVAL;
		}
		cfg->mmu_options[opt] = (unsigned char)(val + 1);
		return 0;
	}
	case K_APPEND:
		return set_string(&cfg->append, v);
	case K_INITRD:
		if (!*v)
			break;
		return set_string(&cfg->initrd, v);
	case K_DRIVE: {
		struct blk_drive_config *d;

		if (cfg->nr_drives >= BLK_MAX_DRIVES) {
			snprintf(why, whylen, "more than %u drives",
				 BLK_MAX_DRIVES);
			return -EINVAL;
		}
		d = realloc(cfg->drives, (cfg->nr_drives + 1) * sizeof(*d));
		if (!d)
			return -ENOMEM;
		cfg->drives = d;
		d += cfg->nr_drives;
		if (blk_drive_parse(v, cfg->nr_drives, d, why, whylen) < 0)
			return -EINVAL;
		for (unsigned int i = 0; i < cfg->nr_drives; i++)
			if (!strcmp(cfg->drives[i].id, d->id)) {
				snprintf(why, whylen, "two drives with id '%s'",
					 d->id);
				return -EINVAL;
			}
		cfg->nr_drives++;
		return 0;
	}
	case K_NO_REBOOT:
		if (parse_bool(v, &cfg->no_reboot) < 0) {
			snprintf(why, whylen,
				 "'%s' is not a boolean (true/false)", v);
			return -EINVAL;
		}
		return 0;
	case K_CONSOLE:
		if (!strcmp(v, "stdout")) {
			cfg->console_kind = MMUD_CONSOLE_STDOUT;
			free(cfg->console_path);
			cfg->console_path = NULL;
			return 0;
		}
		if (!strncmp(v, "socket:", 7)) {
			if (!v[7])
				break;
			cfg->console_kind = MMUD_CONSOLE_SOCKET;
			return set_string(&cfg->console_path, v + 7);
		}
		if (!*v)
			break;
		cfg->console_kind = MMUD_CONSOLE_FILE;
		return set_string(&cfg->console_path, v);
	case K_QMP:
		return parse_qmp(cfg, v, why, whylen);
	case K_NAME:
		if (!qmp_vm_name_ok(v)) {
			snprintf(why, whylen,
				 "'%s' is not a VM name (1-%d letters, digits, "
				 "'-', '_', '.'; not starting with '.' or '-')",
				 v, QMP_VM_NAME_MAX - 1);
			return -EINVAL;
		}
		return set_string(&cfg->name, v);
	case K_PAUSED:
		if (parse_bool(v, &cfg->paused) < 0) {
			snprintf(why, whylen,
				 "'%s' is not a boolean (true/false)", v);
			return -EINVAL;
		}
		return 0;
	case K_MAXMEM:
		if (parse_size(v, &cfg->maxmem) < 0 || cfg->maxmem % 4096 ||
		    cfg->maxmem < VM_MIN_RAM || cfg->maxmem > VM_MAX_MAXMEM) {
			snprintf(why, whylen,
				 "'%s' is not a multiple of 4K from 2M to 64T",
				 v);
			return -EINVAL;
		}
		return 0;
	case K_INCOMING:
		/* The URI itself is checked when mmud starts listening
		 * (daemon/migrate_uri.c); here only that there is one. */
		if (!*v || strlen(v) > 4096) {
			snprintf(why, whylen,
				 "'%.64s' is not 'defer' or a migration URI",
				 v);
			return -EINVAL;
		}
		return set_string(&cfg->incoming, v);
	case K_DUMP_GUEST_CORE:
		if (parse_bool(v, &cfg->dump_guest_core) < 0) {
			snprintf(why, whylen,
				 "'%s' is not a boolean (true/false)", v);
			return -EINVAL;
		}
		return 0;
	case K_MEMORY_MAX: {
		/* Read by systemd/mmud-generator for the unit's MemoryMax=;
		 * checked here so that a bad one stops mmud, named. */
		uint64_t max;

		if (parse_size(v, &max) < 0 || max < VM_MIN_RAM) {
			snprintf(why, whylen,
				 "'%s' is not a size of 2M or more", v);
			return -EINVAL;
		}
		return 0;
	}
	case K_PANIC:
		if (!strcmp(v, "pause")) {
			cfg->panic = MMUD_PANIC_PAUSE;
		} else if (!strcmp(v, "exit")) {
			cfg->panic = MMUD_PANIC_EXIT;
		} else {
			snprintf(why, whylen, "'%s' is not pause or exit", v);
			return -EINVAL;
		}
		return 0;
	case K_CPU:
		/* The engine in use is what x-query-cpu-stats reports
		 * (docs/JIT.md). */
		if (!strcmp(v, "interp"))
			cfg->cpu = 0;
		else if (!strcmp(v, "jit"))
			cfg->cpu = 1;
		else if (!strcmp(v, "jit-verify"))
			cfg->cpu = 2;
		else {
			snprintf(why, whylen,
				 "'%.64s' is not interp, jit or jit-verify", v);
			return -EINVAL;
		}
		return 0;
	case K_NR:
		break;
	}
	snprintf(why, whylen, "an empty value");
	return -EINVAL;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
			 e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/*
 * Reads one line (without its newline) into buf, which holds LINE_MAX_LEN
 * bytes and a NUL: its length, -1 at the end of the file, or -2 for a
 * line longer than that (read no further: a file of one endless line,
 * /dev/zero say, must not take our memory).
 */
static long read_line(FILE *f, char *buf)
{
	size_t n = 0;
	int c;

	while ((c = getc(f)) != EOF && c != '\n') {
		if (n == LINE_MAX_LEN)
			return -2;
		buf[n++] = (char)c;
	}
	if (c == EOF && n == 0)
		return -1;
	buf[n] = '\0';
	return (long)n;
}

/*
 * The value after a line's '=': without the blanks at its ends and
 * without a comment ('#' at its start or after a blank), or the text
 * between double quotes (which keep blanks and '#'), which only blanks
 * or a comment may follow. NULL, with the reason in why, for a quote
 * that is not closed or text after the closing one.
 */
static char *value(char *v, char *why, size_t whylen)
{
	char *end;

	v = trim(v);
	if (*v == '"') {
		end = strchr(v + 1, '"');
		if (!end) {
			snprintf(why, whylen, "unterminated quote");
			return NULL;
		}
		*end = '\0';
		end = trim(end + 1);
		if (*end && *end != '#') {
			snprintf(why, whylen, "'%.40s' after the closing quote",
				 end);
			return NULL;
		}
		return v + 1;
	}
	for (end = v; *end; end++) {
		if (*end == '#' &&
		    (end == v || end[-1] == ' ' || end[-1] == '\t')) {
			*end = '\0';
			break;
		}
	}
	return trim(v);
}

/*
 * key = value lines; '#' starts a comment, at the start of a line or
 * after a blank; blank lines are fine; a value may be double-quoted (to
 * keep blanks at its ends, or a '#'). Keys the command line set
 * (given[k]) are checked but not applied. Each key may appear once:
 * seen[k] is the line it was on.
 */
static int load_file(struct mmud_config *cfg, const char *path,
		     const bool given[K_NR], unsigned int seen[K_NR], char *err,
		     size_t errlen)
{
	char line[LINE_MAX_LEN + 1], why[200];
	long len;
	unsigned int lineno = 0;
	struct mmud_config scratch;
	FILE *f = fopen(path, "re");
	int r = 0;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -EINVAL;
	}
	while ((len = read_line(f, line)) != -1) {
		char *eq, *key, *val;
		size_t n = (size_t)len;
		int k;

		lineno++;
		if (len == -2) {
			snprintf(err, errlen,
				 "%s:%u: line longer than %d bytes", path,
				 lineno, LINE_MAX_LEN);
			r = -EINVAL;
			break;
		}
		if (memchr(line, 0, n)) {
			snprintf(err, errlen, "%s:%u: NUL byte", path, lineno);
			r = -EINVAL;
			break;
		}
		key = trim(line);
		if (!*key || *key == '#')
			continue;
		eq = strchr(key, '=');
		if (!eq) {
			snprintf(err, errlen,
				 "%s:%u: expected 'key = value', got '%.60s'",
				 path, lineno, key);
			r = -EINVAL;
			break;
		}
		*eq = '\0';
		key = trim(key);
		val = value(eq + 1, why, sizeof(why));
		for (k = 0; k < K_NR; k++)
			if (!strcmp(key, key_names[k]))
				break;
		if (k == K_NR) {
			snprintf(err, errlen, "%s:%u: unknown key '%.60s'",
				 path, lineno, key);
			r = -EINVAL;
			break;
		}
		if (!val) {
			snprintf(err, errlen, "%s:%u: %s: %s", path, lineno,
				 key, why);
			r = -EINVAL;
			break;
		}
		/* Drives and MMU options add up (flags replace the
		 * file's lines of their key). */
		if (seen[k] && k != K_DRIVE && k != K_MMU_OPTION) {
			snprintf(err, errlen, "%s:%u: '%s' given twice", path,
				 lineno, key);
			r = -EINVAL;
			break;
		}
		seen[k] = lineno;
		/* Check every value, apply the ones the flags left alone. */
		memset(&scratch, 0, sizeof(scratch));
		r = apply(given[k] ? &scratch : cfg, (enum key)k, val, why,
			  sizeof(why));
		mmud_config_free(&scratch);
		if (r < 0) {
			snprintf(err, errlen, "%s:%u: %s: %s", path, lineno,
				 key, r == -ENOMEM ? "out of memory" : why);
			break;
		}
	}
	if (!r && ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		r = -EINVAL;
	}
	fclose(f);
	return r;
}

static int defaults(struct mmud_config *cfg, const bool given[K_NR],
		    bool console_in_file, char *err, size_t errlen)
{
	char path[256];

	if (!cfg->name)
		return 0;
	if (!cfg->qmp) {
		qmp_vm_socket_path(path, sizeof(path), cfg->name, "qmp.sock");
		if (set_string(&cfg->qmp, path) < 0)
			goto nomem;
	}
	if (!given[K_CONSOLE] && !console_in_file) {
		qmp_vm_socket_path(path, sizeof(path), cfg->name,
				   "console.sock");
		cfg->console_kind = MMUD_CONSOLE_SOCKET;
		if (set_string(&cfg->console_path, path) < 0)
			goto nomem;
	}
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

/* An unknown option, with the long one meant when it was spelt with
 * one dash, as QEMU spells its options ("-qmp"). */
static void unknown_option(const char *word, const struct option *opts,
			   char *err, size_t errlen)
{
	const char *bare = word + 1;
	size_t n = strcspn(bare, "=");

	if (word[0] == '-' && word[1] != '-') {
		for (const struct option *o = opts; o->name; o++) {
			if (strlen(o->name) == n &&
			    !strncmp(o->name, bare, n)) {
				snprintf(err, errlen,
					 "unknown option '%.60s' (mmud's "
					 "options start with two dashes: "
					 "--%s)",
					 word, o->name);
				return;
			}
		}
	}
	snprintf(err, errlen, "unknown option '%.60s'", word);
}

int mmud_config_load(struct mmud_config *cfg, int argc, char **argv, char *err,
		     size_t errlen)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, K_KERNEL },
		{ "initrd", required_argument, NULL, K_INITRD },
		{ "memory", required_argument, NULL, K_MEMORY },
		{ "smp", required_argument, NULL, K_SMP },
		{ "append", required_argument, NULL, K_APPEND },
		{ "console", required_argument, NULL, K_CONSOLE },
		{ "qmp", required_argument, NULL, K_QMP },
		{ "name", required_argument, NULL, K_NAME },
		{ "paused", no_argument, NULL, K_PAUSED },
		{ "panic", required_argument, NULL, K_PANIC },
		{ "no-reboot", no_argument, NULL, K_NO_REBOOT },
		{ "maxmem", required_argument, NULL, K_MAXMEM },
		{ "dump-guest-core", no_argument, NULL, K_DUMP_GUEST_CORE },
		{ "incoming", required_argument, NULL, K_INCOMING },
		{ "drive", required_argument, NULL, K_DRIVE },
		{ "cpu", required_argument, NULL, K_CPU },
		{ "dirty-ring", required_argument, NULL, K_DIRTY_RING },
		{ "mmu-option", required_argument, NULL, K_MMU_OPTION },
		{ "config", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	bool given[K_NR] = { false };
	unsigned int in_file[K_NR] = { 0 };
	char why[200];
	int c, r;

	memset(cfg, 0, sizeof(*cfg));
	cfg->memory = VM_DEFAULT_RAM;
	cfg->smp = 1;
	opterr = 0;
	optind = 1;
	/*
	 * '+': no reordering, so the word an error is about is the one
	 * getopt started from (a short-option cluster such as QEMU's
	 * "-qmp" does not move optind, so argv[optind - 1] would name the
	 * word before it, or the program).
	 */
	for (;;) {
		int at = optind;

		c = getopt_long(argc, argv, "+:", opts, NULL);
		if (c == -1)
			break;
		switch (c) {
		case 'f':
			if (set_string(&cfg->config, optarg) < 0)
				goto nomem;
			continue;
		case 'h':
			cfg->help = true;
			return 0;
		case 'V':
			cfg->version = true;
			return 0;
		case ':':
			snprintf(err, errlen, "%s needs a value", argv[at]);
			return -EINVAL;
		case '?':
			unknown_option(argv[at], opts, err, errlen);
			return -EINVAL;
		default:
			break;
		}
		if (c < 0 || c >= K_NR)
			continue;
		given[c] = true;
		r = apply(cfg, (enum key)c,
			  c == K_PAUSED || c == K_DUMP_GUEST_CORE ||
					  c == K_NO_REBOOT ?
				  "true" :
				  optarg,
			  why, sizeof(why));
		if (r == -ENOMEM)
			goto nomem;
		if (r < 0) {
			snprintf(err, errlen, "--%s: %s", key_names[c], why);
			return r;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (cfg->config) {
		r = load_file(cfg, cfg->config, given, in_file, err, errlen);
		if (r < 0)
			return r;
	}
	r = defaults(cfg, given, in_file[K_CONSOLE], err, errlen);
	if (r < 0)
		return r;
	/* Nothing but QMP's cont can start a paused VM. */
	if (cfg->paused && !cfg->qmp) {
		char where[300];

		if (given[K_PAUSED])
			snprintf(where, sizeof(where), "--paused");
		else
			snprintf(where, sizeof(where), "%s:%u: paused",
				 cfg->config, in_file[K_PAUSED]);
		snprintf(err, errlen,
			 "%s: a paused VM without a QMP socket could never be "
			 "resumed: give --qmp PATH or --name NAME",
			 where);
		return -EINVAL;
	}
	/* Only QMP's migrate-incoming can start a deferred destination. */
	if (cfg->incoming && !strcmp(cfg->incoming, "defer") && !cfg->qmp) {
		snprintf(err, errlen,
			 "%s: an incoming migration deferred without a QMP "
			 "socket could never start: give --qmp PATH or --name "
			 "NAME",
			 given[K_INCOMING] ? "--incoming" : "incoming");
		return -EINVAL;
	}
	/* Where the kernel was named, for load errors found later. */
	if (cfg->kernel) {
		if (given[K_KERNEL])
			r = asprintf(&cfg->kernel_origin, "--kernel");
		else
			r = asprintf(&cfg->kernel_origin, "%s:%u: kernel",
				     cfg->config, in_file[K_KERNEL]);
		if (r < 0) {
			cfg->kernel_origin = NULL;
			goto nomem;
		}
	}
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

void mmud_config_free(struct mmud_config *cfg)
{
	free(cfg->drives);
	free(cfg->kernel);
	free(cfg->append);
	free(cfg->initrd);
	free(cfg->console_path);
	free(cfg->qmp);
	free(cfg->name);
	free(cfg->config);
	free(cfg->kernel_origin);
	free(cfg->incoming);
	memset(cfg, 0, sizeof(*cfg));
}
