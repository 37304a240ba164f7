/*
 * UTF-8 for QMP text: JSON strings must be valid UTF-8, but what a guest
 * prints on its console is bytes. ringbuf-read's utf8 format turns them
 * into text the way QEMU's does (each byte that does not begin a valid
 * sequence becomes U+FFFD) and does not cut a character in two.
 */
#include <stdlib.h>
#include <string.h>

#include "mmud.h"

/* The length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t seq_len(const unsigned char *p, size_t n)
{
	size_t len;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* No overlong forms, surrogates or values past U+10FFFF. */
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

size_t mmud_utf8_cut_tail(const char *buf, size_t n, size_t *need)
{
	const unsigned char *p = (const unsigned char *)buf;

	for (size_t back = 1; back <= 3 && back <= n; back++) {
		unsigned char b = p[n - back];

		if ((b & 0xc0) == 0x80)
			continue; /* a continuation byte: look further back */
		if (b >= 0xc2 && b <= 0xdf)
			*need = 2;
		else if (b >= 0xe0 && b <= 0xef)
			*need = 3;
		else if (b >= 0xf0 && b <= 0xf4)
			*need = 4;
		else
			return 0;
		return back < *need ? back : 0;
	}
	return 0;
}

char *mmud_utf8_sanitize(const char *buf, size_t n, size_t *outlen)
{
	const unsigned char *p = (const unsigned char *)buf;
	char *out = malloc(n * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t len = seq_len(p + i, n - i);

		if (len) {
			memcpy(o, p + i, len);
			o += len;
			i += len;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	*o = '\0';
	*outlen = (size_t)(o - out);
	return out;
}
