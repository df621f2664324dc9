/*
 * deliverd: a growable, NUL-terminated text buffer and the escaping of JSON
 * strings written into it.  No I/O, so the fuzz target can drive it.
 * Running out of memory aborts: the gateway has no way to answer without it.
 */
#ifndef DELIVERD_BUF_H
#define DELIVERD_BUF_H

#include <stddef.h>

typedef struct
{
	char	   *data;
	size_t		len;
	size_t		cap;
} buf_t;

void		buf_init(buf_t *b);
void		buf_free(buf_t *b);
void		buf_add(buf_t *b, const char *s, size_t n);
void		buf_puts(buf_t *b, const char *s);
void		buf_printf(buf_t *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
void		buf_json_str(buf_t *b, const char *s);	/* "..." escaped; null for NULL */
void		buf_json_strn(buf_t *b, const char *s, size_t len);	/* as Postgres' escape_json */

#endif
