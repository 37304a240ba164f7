/*
 * QEMU's chardev commands for mmud's two character devices: query-chardev
 * lists the guest's serial console as "serial0" (QEMU's name for the first
 * -serial) and the QMP socket as "compat_monitor0" (QEMU's for -qmp), so
 * that tooling finds the console socket the way it finds QEMU's; and
 * ringbuf-read / ringbuf-write let QMP clients read what COM1 printed and
 * type into it without the console socket (docs/GUEST-ABI.md, "COM1"). Reads consume from one cursor over the
 * console's replay ring; writes are queued and reach the guest as it
 * reads its UART.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mmud.h"
#include "rpc.h"

#define DEVICE "serial0"

static const struct qmp_arg read_args[] = {
	{ "device", QMP_ARG_STRING, false },
	{ "size", QMP_ARG_INT, false },
	{ "format", QMP_ARG_STRING, true },
	QMP_ARGS_END,
};

static const struct qmp_arg write_args[] = {
	{ "device", QMP_ARG_STRING, false },
	{ "data", QMP_ARG_STRING, false },
	{ "format", QMP_ARG_STRING, true },
	QMP_ARGS_END,
};

/* Checks device and format; false after answering req with the error. */
static bool check_common(struct qmp_request *req, json_t *args, bool *b64)
{
	const char *dev = json_string_value(json_object_get(args, "device"));
	json_t *fmt = json_object_get(args, "format");

	if (strcmp(dev, DEVICE)) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "Device '%s' not found",
				dev);
		return false;
	}
	*b64 = false;
	if (fmt) {
		const char *f = json_string_value(fmt);

		if (!strcmp(f, "base64")) {
			*b64 = true;
		} else if (strcmp(f, "utf8")) {
			qmp_reply_error(req, QMP_ERROR_GENERIC,
					"Parameter 'format' does not accept "
					"value '%s'",
					f);
			return false;
		}
	}
	return true;
}

static void cmd_read(struct qmp_request *req, json_t *args, void *opaque)
{
	json_t *jsize = json_object_get(args, "size");
	/* From 2^63 up (qmp_json_u64()): more than is ever kept. */
	json_int_t size = qmp_json_is_integer(jsize) &&
					  !json_is_integer(jsize) ?
				  MMUD_CONSOLE_REPLAY :
				  json_integer_value(jsize);
	char *buf, *text;
	json_t *ret;
	bool b64;
	size_t n;

	if (!check_common(req, args, &b64))
		return;
	if (size <= 0) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Parameter 'size' must be greater than zero");
		return;
	}
	if (size > MMUD_CONSOLE_REPLAY)
		size = MMUD_CONSOLE_REPLAY; /* no more is ever kept */
	buf = malloc((size_t)size);
	if (!buf) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "Out of memory");
		return;
	}
	n = mmud_console_read(opaque, buf, (size_t)size);
	if (b64) {
		text = mmud_base64_encode((const uint8_t *)buf, n);
		ret = text ? json_string(text) : NULL;
	} else {
		/*
		 * A character the guest has only partly printed (or that
		 * size cuts) stays for the next read, whole, rather than
		 * coming out as U+FFFDs now; unless size could never hold it.
		 */
		size_t need = 0, len;
		size_t cut = mmud_utf8_cut_tail(buf, n, &need);

		if (cut && (cut < n || need <= (size_t)size)) {
			mmud_console_unread(opaque, cut);
			n -= cut;
		}
		text = mmud_utf8_sanitize(buf, n, &len);
		ret = text ? json_stringn(text, len) : NULL;
	}
	free(text);
	free(buf);
	if (!ret) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "Out of memory");
		return;
	}
	qmp_reply_return(req, ret);
}

static void cmd_write(struct qmp_request *req, json_t *args, void *opaque)
{
	json_t *data = json_object_get(args, "data");
	const char *s = json_string_value(data);
	size_t len = json_string_length(data);
	uint8_t *bytes = NULL;
	bool b64;
	int r;

	if (!check_common(req, args, &b64))
		return;
	if (b64) {
		r = mmud_base64_decode(s, len, &bytes, &len);
		if (r == -EINVAL) {
			qmp_reply_error(req, QMP_ERROR_GENERIC,
					"Parameter 'data' is not valid base64");
			return;
		}
		if (r < 0) {
			qmp_reply_error(req, QMP_ERROR_GENERIC,
					"Out of memory");
			return;
		}
		s = (const char *)bytes;
	}
	r = mmud_console_queue_input(opaque, s, len);
	free(bytes);
	if (r == -ENOSPC) {
		qmp_reply_error(req, QMP_ERROR_GENERIC,
				"Device '%s' has %u bytes of input waiting "
				"already: the guest is not reading",
				DEVICE, MMUD_CONSOLE_INPUT_MAX);
		return;
	}
	if (r < 0) {
		qmp_reply_error(req, QMP_ERROR_GENERIC, "Out of memory");
		return;
	}
	qmp_reply_ok(req);
}

/* Legend: (c) set by mmud_chardev_register() before the loop runs, read
 * only by handlers on the loop thread. */
struct chardevs {
	struct mmud_console *console; /* (c) */
	const char *qmp_path; /* (c) */
};

static json_t *chardev_info(const char *label, const char *filename)
{
	return json_pack("{s:s, s:s, s:b}", "label", label, "filename",
			 filename, "frontend-open", 1);
}

static void cmd_query(struct qmp_request *req, json_t *args, void *opaque)
{
	const struct chardevs *cd = opaque;
	char *con = mmud_console_chardev_filename(cd->console), *mon = NULL;
	json_t *list = json_array();

	(void)args;
	if (asprintf(&mon, "unix:%s,server=on", cd->qmp_path) < 0)
		mon = NULL; /* glibc leaves it undefined */
	if (!con || !mon || !list ||
	    json_array_append_new(list, chardev_info(DEVICE, con)) < 0 ||
	    json_array_append_new(list, chardev_info("compat_monitor0", mon)) <
		    0) {
		free(con);
		free(mon);
		json_decref(list);
		qmp_reply_error(req, QMP_ERROR_GENERIC, "Out of memory");
		return;
	}
	free(con);
	free(mon);
	qmp_reply_return(req, list);
}

int mmud_chardev_register(struct qmp_server *qmp, struct mmud_console *c,
			  const char *qmp_path)
{
	/* Lives as long as the server: the daemon's whole run. */
	static struct chardevs cd;
	int r;

	cd.console = c;
	cd.qmp_path = qmp_path;
	r = qmp_server_register(qmp, "query-chardev", NULL, cmd_query, &cd);
	if (r < 0)
		return r;
	r = qmp_server_register(qmp, "ringbuf-read", read_args, cmd_read, c);
	if (r < 0)
		return r;
	return qmp_server_register(qmp, "ringbuf-write", write_args, cmd_write,
				   c);
}
