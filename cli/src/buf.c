/*
 * buf.c - a growing, NUL-terminated byte buffer (see buf.h).
 */
#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* room for n more bytes and the NUL */
bool
buf_reserve(Buf *b, size_t n)
{
	size_t		need,
				cap;
	char	   *p;

	if (n > SIZE_MAX - 1 - b->len)
		return false;
	need = b->len + n + 1;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(b->data, cap);
	if (p == NULL)
		return false;
	b->data = p;
	b->cap = cap;
	return true;
}

bool
buf_append(Buf *b, const void *data, size_t n)
{
	if (!buf_reserve(b, n))
		return false;
	if (n > 0)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
	return true;
}

bool
buf_putc(Buf *b, char c)
{
	return buf_append(b, &c, 1);
}

bool
buf_puts(Buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

bool
buf_printf(Buf *b, const char *fmt,...)
{
	va_list		ap;
	int			n,
				written;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !buf_reserve(b, (size_t) n))
		return false;
	va_start(ap, fmt);
	written = vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	if (written != n)
	{
		/* the arguments changed between the two calls: keep nothing */
		b->data[b->len] = '\0';
		return false;
	}
	b->len += (size_t) n;
	return true;
}

/* empty, memory kept */
void
buf_reset(Buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void
buf_free(Buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
