/*
 * Drives: the --drive option's syntax (QEMU's key=value list, of which
 * the raw format's keys are understood) and opening an image file the
 * way its options say, with a probe of what fallocate() can do on it
 * (DISCARD and WRITE_ZEROES are offered only when it can). The I/O
 * itself is core/dev/blk_backend.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blk.h"

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

static int parse_bool(const char *key, const char *v, bool *out, char *err,
		      size_t errlen)
{
	if (!strcmp(v, "on") || !strcmp(v, "true")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "off") || !strcmp(v, "false")) {
		*out = false;
		return 0;
	}
	return fail(err, errlen, -EINVAL, "drive: %s=%s is not on or off", key,
		    v);
}

static int parse_action(const char *key, const char *v,
			enum blk_error_action *out, char *err, size_t errlen)
{
	if (!strcmp(v, "report")) {
		*out = BLK_ERROR_REPORT;
		return 0;
	}
	if (!strcmp(v, "stop")) {
		*out = BLK_ERROR_STOP;
		return 0;
	}
	return fail(err, errlen, -EINVAL, "drive: %s=%s is not report or stop",
		    key, v);
}

/* One key=value; the value may not contain a comma (QEMU's ",," escape
 * is not supported). */
static int parse_one(char *kv, struct blk_drive_config *c, bool *has_file,
		     char *err, size_t errlen)
{
	char *v = strchr(kv, '=');

	if (!v)
		return fail(err, errlen, -EINVAL,
			    "drive: '%s' is not key=value", kv);
	*v++ = 0;
	if (!strcmp(kv, "file")) {
		if (!*v || strlen(v) >= sizeof(c->file))
			return fail(err, errlen, -EINVAL,
				    "drive: file= is empty or too long");
		strcpy(c->file, v);
		*has_file = true;
		return 0;
	}
	if (!strcmp(kv, "format"))
		return strcmp(v, "raw") ?
			       fail(err, errlen, -EINVAL,
				    "drive: format=%s is not supported (raw "
				    "only)",
				    v) :
			       0;
	if (!strcmp(kv, "if"))
		return strcmp(v, "virtio") && strcmp(v, "none") ?
			       fail(err, errlen, -EINVAL,
				    "drive: if=%s is not supported (virtio)",
				    v) :
			       0;
	if (!strcmp(kv, "readonly"))
		return parse_bool(kv, v, &c->readonly, err, errlen);
	if (!strcmp(kv, "cache")) {
		if (!strcmp(v, "none"))
			c->direct = true;
		else if (!strcmp(v, "writeback"))
			c->direct = false;
		else
			return fail(err, errlen, -EINVAL,
				    "drive: cache=%s is not none or writeback",
				    v);
		return 0;
	}
	if (!strcmp(kv, "discard")) {
		if (!strcmp(v, "unmap") || !strcmp(v, "on"))
			c->discard = true;
		else if (!strcmp(v, "ignore") || !strcmp(v, "off"))
			c->discard = false;
		else
			return fail(err, errlen, -EINVAL,
				    "drive: discard=%s is not unmap or ignore",
				    v);
		return 0;
	}
	if (!strcmp(kv, "werror"))
		return parse_action(kv, v, &c->werror, err, errlen);
	if (!strcmp(kv, "rerror"))
		return parse_action(kv, v, &c->rerror, err, errlen);
	if (!strcmp(kv, "id")) {
		if (!*v || strlen(v) >= sizeof(c->id))
			return fail(err, errlen, -EINVAL,
				    "drive: id= is empty or longer than %zu",
				    sizeof(c->id) - 1);
		for (const char *p = v; *p; p++)
			if (!(*p == '-' || *p == '_' || *p == '.' ||
			      (*p >= '0' && *p <= '9') ||
			      (*p >= 'a' && *p <= 'z') ||
			      (*p >= 'A' && *p <= 'Z')))
				return fail(err, errlen, -EINVAL,
					    "drive: id=%s has a character "
					    "other than letters, digits, "
					    "'-', '_' and '.'",
					    v);
		strcpy(c->id, v);
		return 0;
	}
	if (!strcmp(kv, "serial")) {
		if (strlen(v) > BLK_SERIAL_LEN)
			return fail(err, errlen, -EINVAL,
				    "drive: serial=%s is longer than %d bytes",
				    v, BLK_SERIAL_LEN);
		strcpy(c->serial, v);
		return 0;
	}
	return fail(err, errlen, -EINVAL, "drive: unknown key '%s'", kv);
}

int blk_drive_parse(const char *spec, unsigned int index,
		    struct blk_drive_config *out, char *err, size_t errlen)
{
	bool has_file = false;
	char *copy, *save = NULL;
	int r = 0;

	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "virtio%u", index);
	snprintf(out->serial, sizeof(out->serial), "mmud-%u", index);
	out->werror = out->rerror = BLK_ERROR_REPORT;
	copy = strdup(spec);
	if (!copy)
		return fail(err, errlen, -ENOMEM, "out of memory");
	for (char *kv = strtok_r(copy, ",", &save); kv && !r;
	     kv = strtok_r(NULL, ",", &save))
		r = parse_one(kv, out, &has_file, err, errlen);
	free(copy);
	if (!r && !has_file)
		r = fail(err, errlen, -EINVAL, "drive: no file= in '%s'", spec);
	return r;
}

/* Whether fallocate(mode) works on f, tried on one block past the end
 * of the file with KEEP_SIZE, which changes nothing a reader sees. */
static bool probe_fallocate(int fd, uint64_t size, int mode)
{
	off_t at = (off_t)((size + 4095) & ~4095ULL);

	if (fallocate(fd, mode | FALLOC_FL_KEEP_SIZE, at, 4096) < 0)
		return false;
	/* ZERO_RANGE may have allocated the block: give it back. */
	fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, 4096);
	return true;
}

int blk_file_open(const struct blk_drive_config *cfg, struct blk_file *f,
		  char *err, size_t errlen)
{
	int flags = (cfg->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;
	uint64_t size;
	int r;

	memset(f, 0, sizeof(*f));
	f->fd = -1;
	if (cfg->direct)
		flags |= O_DIRECT;
	f->fd = open(cfg->file, flags);
	if (f->fd < 0) {
		r = -errno;
		return fail(err, errlen, r, "drive %s: cannot open %s%s: %s",
			    cfg->id, cfg->file,
			    cfg->direct ? " with O_DIRECT (cache=none)" : "",
			    strerror(-r));
	}
	if (fstat(f->fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(f->fd, BLKGETSIZE64, &size) < 0) {
			r = -errno;
			goto fail;
		}
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		r = -EINVAL;
		goto fail;
	}
	f->size = size & ~511ULL;
	if (!cfg->readonly && S_ISREG(st.st_mode)) {
		f->can_punch =
			probe_fallocate(f->fd, size, FALLOC_FL_PUNCH_HOLE);
		f->can_zero =
			probe_fallocate(f->fd, size, FALLOC_FL_ZERO_RANGE);
	}
	return 0;
fail:
	fail(err, errlen, r, "drive %s: %s is not a usable image: %s", cfg->id,
	     cfg->file,
	     r == -EINVAL ? "not a regular file or block device" :
			    strerror(-r));
	close(f->fd);
	f->fd = -1;
	return r;
}

void blk_file_close(struct blk_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}
