/*
 * Serial output on COM1 and the runtime's formatter: %d %i %u %x %X %p %s
 * %c %% with l/ll/z length, '0' and '-' flags, a width, and '#' for 0x.
 * rt_printf formats into a buffer first and sends it under one lock, so
 * lines from different vCPUs never interleave.
 */
#include "rt.h"

#define COM1 0x3f8
#define COM1_LSR (COM1 + 5)
#define LSR_THRE 0x20

static rt_lock_t console_lock;

void rt_putc(char c)
{
	while (!(rt_inb(COM1_LSR) & LSR_THRE))
		rt_pause();
	rt_outb(COM1, (uint8_t)c);
}

void rt_puts(const char *s)
{
	rt_lock(&console_lock);
	while (*s)
		rt_putc(*s++);
	rt_unlock(&console_lock);
}

struct out {
	char *buf;
	size_t size;
	size_t len;
};

static void emit(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void emit_num(struct out *o, uint64_t v, bool neg, unsigned int base,
		     bool upper, int width, bool zero, bool left,
		     const char *prefix)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	int n = 0, plen = prefix ? (int)strlen(prefix) : 0;

	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	if (neg)
		plen++;
	if (!left && !zero)
		for (int i = n + plen; i < width; i++)
			emit(o, ' ');
	if (neg)
		emit(o, '-');
	while (prefix && *prefix)
		emit(o, *prefix++);
	if (!left && zero)
		for (int i = n + plen; i < width; i++)
			emit(o, '0');
	while (n)
		emit(o, tmp[--n]);
	if (left)
		for (int i = n + plen; i < width; i++)
			emit(o, ' ');
}

int rt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };

	for (; *fmt; fmt++) {
		bool zero = false, left = false, alt = false;
		int width = 0, lng = 0;
		uint64_t u;
		int64_t s;

		if (*fmt != '%') {
			emit(&o, *fmt);
			continue;
		}
		for (fmt++;; fmt++) {
			if (*fmt == '0')
				zero = true;
			else if (*fmt == '-')
				left = true;
			else if (*fmt == '#')
				alt = true;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			lng++;
			fmt++;
		}
		switch (*fmt) {
		case 'd':
		case 'i':
			s = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			emit_num(&o, s < 0 ? -(uint64_t)s : (uint64_t)s, s < 0,
				 10, false, width, zero, left, NULL);
			break;
		case 'u':
		case 'x':
		case 'X':
			u = lng ? va_arg(ap, uint64_t) :
				  va_arg(ap, unsigned int);
			emit_num(&o, u, false, *fmt == 'u' ? 10 : 16,
				 *fmt == 'X', width, zero, left,
				 alt && *fmt != 'u' ? "0x" : NULL);
			break;
		case 'p':
			u = (uint64_t)va_arg(ap, void *);
			emit_num(&o, u, false, 16, false, width, zero, left,
				 "0x");
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);
			int n = str ? (int)strlen(str) : 6;

			if (!str)
				str = "(null)";
			if (!left)
				for (int i = n; i < width; i++)
					emit(&o, ' ');
			while (*str)
				emit(&o, *str++);
			if (left)
				for (int i = n; i < width; i++)
					emit(&o, ' ');
			break;
		}
		case 'c':
			emit(&o, (char)va_arg(ap, int));
			break;
		case '%':
			emit(&o, '%');
			break;
		case '\0':
			fmt--;
			break;
		default:
			emit(&o, '%');
			emit(&o, *fmt);
			break;
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return (int)o.len;
}

int rt_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = rt_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

int rt_printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = rt_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	rt_puts(buf);
	return n;
}
