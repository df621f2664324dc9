/*
 * buf.h - a growing, NUL-terminated byte buffer for the deliver client.
 *
 * Every length is checked before it is added (no size_t wrap-around), and a
 * formatted append reserves what vsnprintf says it needs, writes, and checks
 * that exactly that much was written: nothing takes snprintf's return value
 * for the number of bytes in the buffer.  The functions return false when
 * memory runs out or a length would overflow; the buffer is then unchanged.
 */
#ifndef DELIVER_CLI_BUF_H
#define DELIVER_CLI_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct Buf
{
	char	   *data;			/* NUL-terminated once anything was added */
	size_t		len;			/* bytes in data, not counting the NUL */
	size_t		cap;			/* bytes allocated */
} Buf;

#define BUF_INIT {NULL, 0, 0}

extern bool buf_reserve(Buf *b, size_t n);
extern bool buf_append(Buf *b, const void *data, size_t n);
extern bool buf_putc(Buf *b, char c);
extern bool buf_puts(Buf *b, const char *s);
extern bool buf_printf(Buf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
extern void buf_reset(Buf *b);
extern void buf_free(Buf *b);

#endif
