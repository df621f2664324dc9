/*
 * deliverd: a growable text buffer and JSON string output (see buf.h).
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* an empty buffer (nothing allocated yet) */
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

/* room for n more bytes and the NUL */
static void
buf_grow(buf_t *b, size_t n)
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
}

void
buf_add(buf_t *b, const char *s, size_t n)
{
	buf_grow(b, n);
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
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_grow(b, (size_t) n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t) n;
}

/*
 * s (len bytes) as a JSON string, escaped as Postgres' escape_json does
 * (PG 15): the answers the gateway builds from rows are then the bytes
 * json_agg gave (received.c), and every other string it writes is escaped
 * the same way.
 */
void
buf_json_strn(buf_t *b, const char *s, size_t len)
{
	const char *run = s;
	const char *end = s + len;
	const char *p;

	buf_add(b, "\"", 1);
	for (p = s; p < end; p++)
	{
		unsigned char c = (unsigned char) *p;
		const char *esc;
		char		u[8];

		if (c >= ' ' && c != '"' && c != '\\')
			continue;
		switch (c)
		{
			case '\b':
				esc = "\\b";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			case '"':
				esc = "\\\"";
				break;
			case '\\':
				esc = "\\\\";
				break;
			default:
				snprintf(u, sizeof(u), "\\u%04x", c);
				esc = u;
				break;
		}
		buf_add(b, run, (size_t) (p - run));
		buf_puts(b, esc);
		run = p + 1;
	}
	buf_add(b, run, (size_t) (end - run));
	buf_add(b, "\"", 1);
}

void
buf_json_str(buf_t *b, const char *s)
{
	if (!s)
	{
		buf_puts(b, "null");
		return;
	}
	buf_json_strn(b, s, strlen(s));
}
