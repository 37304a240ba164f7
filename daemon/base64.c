/*
 * RFC 4648 base64 (the standard alphabet, with padding) for QMP payloads:
 * x-dirty-log-harvest's bitmap and ringbuf-read/-write's base64 format.
 */
#include <errno.h>
#include <stdlib.h>

#include "mmud.h"

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *mmud_base64_encode(const uint8_t *p, size_t n)
{
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = alphabet[(v >> 18) & 63];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? alphabet[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static int digit(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int mmud_base64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	uint8_t *buf, *o;

	if (len % 4)
		return -EINVAL;
	buf = malloc(len / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	o = buf;
	for (size_t i = 0; i < len; i += 4) {
		int d[4];
		unsigned int pad = 0;
		uint32_t v = 0;

		for (unsigned int k = 0; k < 4; k++) {
			d[k] = digit(s[i + k]);
			/* '=' only at the end: "xx==" or "xxx=". */
			if (d[k] < 0 && s[i + k] == '=' && i + 4 == len &&
			    k >= 2 && (k == 3 || s[i + 3] == '=')) {
				d[k] = 0;
				pad++;
			} else if (d[k] < 0 || pad) {
				free(buf);
				return -EINVAL;
			}
			v = v << 6 | (uint32_t)d[k];
		}
		*o++ = (uint8_t)(v >> 16);
		if (pad < 2)
			*o++ = (uint8_t)(v >> 8);
		if (pad < 1)
			*o++ = (uint8_t)v;
	}
	*out = buf;
	*outlen = (size_t)(o - buf);
	return 0;
}
