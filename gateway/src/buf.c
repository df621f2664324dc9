/*
 * deliverd: a growable text buffer and JSON string output (see buf.h).
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
buf_init(buf_t *b)
{
	b->data = NULL;
	b->len = b->cap = 0;
}

void
buf_free(buf_t *b)
{
	free(b->data);
	buf_init(b);
}

void
buf_add(buf_t *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 256;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = realloc(b->data, cap);
		if (!b->data)
			abort();
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_puts(buf_t *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_printf(buf_t *b, const char *fmt,...)
{
	char		tmp[512];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t) n < sizeof(tmp))
	{
		buf_add(b, tmp, (size_t) n);
		return;
	}
	{
		char	   *big = malloc((size_t) n + 1);

		if (!big)
			abort();
		va_start(ap, fmt);
		vsnprintf(big, (size_t) n + 1, fmt, ap);
		va_end(ap);
		buf_add(b, big, (size_t) n);
		free(big);
	}
}

void
buf_json_str(buf_t *b, const char *s)
{
	if (!s)
	{
		buf_puts(b, "null");
		return;
	}
	buf_add(b, "\"", 1);
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		switch (c)
		{
			case '"':
				buf_add(b, "\\\"", 2);
				break;
			case '\\':
				buf_add(b, "\\\\", 2);
				break;
			case '\n':
				buf_add(b, "\\n", 2);
				break;
			case '\r':
				buf_add(b, "\\r", 2);
				break;
			case '\t':
				buf_add(b, "\\t", 2);
				break;
			default:
				if (c < 0x20 || c == 0x7f)
					buf_printf(b, "\\u%04x", c);
				else
					buf_add(b, (const char *) &c, 1);
		}
	}
	buf_add(b, "\"", 1);
}
