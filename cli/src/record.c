/*
 * record.c - the deliver output plugin's binary records (see record.h).
 */
#include "record.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct Reader
{
	const unsigned char *p;
	size_t		left;
	char	   *err;
	size_t		errlen;
	char		type;
} Reader;

static bool
fail(Reader *r, const char *what, size_t need)
{
	/* the message may be cut to errlen: its length is of no use */
	if (r->errlen > 0)
		(void) snprintf(r->err, r->errlen,
						"truncated %s record: %s needs %zu byte(s), %zu left",
						r->type == RECORD_MESSAGE ? "message" : "commit", what, need, r->left);
	return false;
}

static bool
bad(Reader *r, const char *msg)
{
	if (r->errlen > 0)
		(void) snprintf(r->err, r->errlen, "bad %s record: %s",
						r->type == RECORD_MESSAGE ? "message" : "commit", msg);
	return false;
}

static bool
read_uint(Reader *r, int bytes, uint64_t *v, const char *what)
{
	uint64_t	x = 0;

	if (r->left < (size_t) bytes)
		return fail(r, what, (size_t) bytes);
	for (int i = 0; i < bytes; i++)
		x = (x << 8) | r->p[i];
	r->p += bytes;
	r->left -= (size_t) bytes;
	*v = x;
	return true;
}

static bool
read_u64(Reader *r, uint64_t *v, const char *what)
{
	return read_uint(r, 8, v, what);
}

static bool
read_i64(Reader *r, int64_t *v, const char *what)
{
	uint64_t	u;

	if (!read_uint(r, 8, &u, what))
		return false;
	*v = (int64_t) u;			/* two's complement, as the plugin sent it */
	return true;
}

/* a string with a 2- or 4-byte length; all ones is NULL */
static bool
read_text(Reader *r, int lenbytes, RecordText *t, const char *what)
{
	uint64_t	len;
	uint64_t	null = lenbytes == 2 ? 0xFFFF : 0xFFFFFFFF;

	if (!read_uint(r, lenbytes, &len, what))
		return false;
	if (len == null)
	{
		t->data = NULL;
		t->len = 0;
		t->isnull = true;
		return true;
	}
	if (len > r->left)
		return fail(r, what, (size_t) len);
	t->data = (const char *) r->p;
	t->len = (size_t) len;
	t->isnull = false;
	r->p += len;
	r->left -= (size_t) len;
	return true;
}

/* JSON text of the plugin: non-empty, one line, no control characters */
static bool
check_json_text(Reader *r, const RecordText *t, const char *what)
{
	char		msg[96];

	if (t->isnull)
		return true;
	if (t->len == 0)
	{
		snprintf(msg, sizeof(msg), "%s is empty, not JSON", what);
		return bad(r, msg);
	}
	for (size_t i = 0; i < t->len; i++)
	{
		if ((unsigned char) t->data[i] < 0x20)
		{
			snprintf(msg, sizeof(msg), "%s holds control character 0x%02x at byte %zu",
					 what, (unsigned) (unsigned char) t->data[i], i);
			return bad(r, msg);
		}
	}
	return true;
}

/* a text value: no NUL byte (Postgres text never holds one) */
static bool
check_text(Reader *r, const RecordText *t, const char *what)
{
	char		msg[96];

	if (!t->isnull && memchr(t->data, '\0', t->len) != NULL)
	{
		snprintf(msg, sizeof(msg), "%s holds a NUL byte", what);
		return bad(r, msg);
	}
	return true;
}

bool
record_parse_next(const void *data, size_t len, Record *rec, size_t *used, char *err, size_t errlen)
{
	Reader		r = {data, len, err, errlen, 0};
	uint64_t	u;

	memset(rec, 0, sizeof(*rec));
	if (errlen > 0)
		err[0] = '\0';
	if (len == 0)
	{
		if (errlen > 0)
			(void) snprintf(err, errlen, "empty record");
		return false;
	}
	r.type = (char) r.p[0];
	r.p++;
	r.left--;
	rec->type = r.type;
	if (r.type == RECORD_MESSAGE)
	{
		if (!read_u64(&r, &rec->commit_lsn, "commit_lsn") ||
			!read_i64(&r, &rec->commit_time, "commit_time") ||
			!read_i64(&r, &rec->message_id, "message_id") ||
			!read_i64(&r, &rec->enqueued_at, "enqueued_at") ||
			!read_text(&r, 2, &rec->queue, "queue name") ||
			!read_text(&r, 2, &rec->ordering_key, "ordering key") ||
			!read_text(&r, 4, &rec->headers, "headers") ||
			!read_text(&r, 4, &rec->payload, "payload"))
			return false;
		if (rec->queue.isnull)
			return bad(&r, "the queue name is NULL");
		if (rec->queue.len == 0)
			return bad(&r, "the queue name is empty");
		if (!check_text(&r, &rec->queue, "the queue name") ||
			!check_text(&r, &rec->ordering_key, "the ordering key") ||
			!check_json_text(&r, &rec->headers, "headers") ||
			!check_json_text(&r, &rec->payload, "the payload"))
			return false;
	}
	else if (r.type == RECORD_COMMIT)
	{
		if (!read_u64(&r, &rec->commit_lsn, "commit_lsn") ||
			!read_i64(&r, &rec->commit_time, "commit_time") ||
			!read_uint(&r, 4, &u, "messages"))
			return false;
		rec->messages = (uint32_t) u;
	}
	else
	{
		if (errlen > 0)
			(void) snprintf(err, errlen, "unknown record type 0x%02x", (unsigned) r.p[-1]);
		return false;
	}
	*used = len - r.left;
	return true;
}

bool
record_parse(const void *data, size_t len, Record *rec, char *err, size_t errlen)
{
	size_t		used;

	if (!record_parse_next(data, len, rec, &used, err, errlen))
		return false;
	if (used < len)
	{
		Reader		r = {NULL, len - used, err, errlen, rec->type};
		char		msg[64];

		snprintf(msg, sizeof(msg), "%zu byte(s) after its end", len - used);
		return bad(&r, msg);
	}
	return true;
}

/* a JSON string, escaped as Postgres's escape_json does */
bool
json_string(Buf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	if (!buf_reserve(out, len + 2))
		return false;
	if (!buf_putc(out, '"'))
		return false;
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];
		const char *esc = NULL;
		char		u[7];

		switch (c)
		{
			case '\b': esc = "\\b"; break;
			case '\f': esc = "\\f"; break;
			case '\n': esc = "\\n"; break;
			case '\r': esc = "\\r"; break;
			case '\t': esc = "\\t"; break;
			case '"': esc = "\\\""; break;
			case '\\': esc = "\\\\"; break;
			default:
				if (c < 0x20)
				{
					memcpy(u, "\\u00", 4);
					u[4] = hex[c >> 4];
					u[5] = hex[c & 0xF];
					u[6] = '\0';
					esc = u;
				}
				break;
		}
		if (esc ? !buf_puts(out, esc) : !buf_putc(out, (char) c))
			return false;
	}
	return buf_putc(out, '"');
}

/*
 * "2026-11-28T09:45:01.950313+00:00" as Postgres writes a timestamptz in
 * JSON in time zone UTC: no fraction when it is zero, no trailing zeros.
 * null for a time outside the years 1 to 9999.
 */
/* n digits of v, zero-padded, into p */
static void
put_fixed(char *p, int v, int n)
{
	for (int i = n - 1; i >= 0; i--, v /= 10)
		p[i] = (char) ('0' + v % 10);
}

bool
json_timestamp(Buf *out, int64_t usec)
{
	/* the date and time of the last second asked for (a transaction's
	 * messages share their commit time, and mostly their second of sending) */
	static int64_t last_secs = INT64_MIN;
	static char last[21];		/* "\"2026-11-28T09:45:01" */
	static bool last_null;
	int64_t		secs = usec / 1000000,
				frac = usec % 1000000;
	char		f[8];
	int			n;

	if (frac < 0)
	{
		frac += 1000000;
		secs--;
	}
	if (secs != last_secs)
	{
		time_t		t = (time_t) secs;
		struct tm	tm;

		last_secs = secs;
		last_null = (int64_t) t != secs || gmtime_r(&t, &tm) == NULL ||
			tm.tm_year < 1 - 1900 || tm.tm_year > 9999 - 1900;
		if (!last_null)
		{
			last[0] = '"';
			put_fixed(last + 1, tm.tm_year + 1900, 4);
			last[5] = '-';
			put_fixed(last + 6, tm.tm_mon + 1, 2);
			last[8] = '-';
			put_fixed(last + 9, tm.tm_mday, 2);
			last[11] = 'T';
			put_fixed(last + 12, tm.tm_hour, 2);
			last[14] = ':';
			put_fixed(last + 15, tm.tm_min, 2);
			last[17] = ':';
			put_fixed(last + 18, tm.tm_sec, 2);
		}
	}
	if (last_null)
		return buf_puts(out, "null");
	if (!buf_append(out, last, 20))
		return false;
	if (frac > 0)
	{
		/* six digits (frac < 1000000), then the trailing zeros dropped */
		put_fixed(f, (int) frac, 6);
		n = 6;
		while (n > 1 && f[n - 1] == '0')
			n--;
		if (!buf_putc(out, '.') || !buf_append(out, f, (size_t) n))
			return false;
	}
	return buf_puts(out, "+00:00\"");
}

/* a decimal integer (by hand: printf is most of the client's time) */
static bool
json_int(Buf *out, int64_t v)
{
	char		d[24];
	int			i = (int) sizeof(d);
	uint64_t	u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;

	do
	{
		d[--i] = (char) ('0' + u % 10);
		u /= 10;
	} while (u > 0);
	if (v < 0)
		d[--i] = '-';
	return buf_append(out, d + i, sizeof(d) - (size_t) i);
}

/* upper-case hex digits of v, no leading zeros */
static int
hex_digits(char *d, uint32_t v)
{
	static const char hex[] = "0123456789ABCDEF";
	char		t[8];
	int			n = 0;

	do
	{
		t[n++] = hex[v & 0xF];
		v >>= 4;
	} while (v > 0);
	for (int i = 0; i < n; i++)
		d[i] = t[n - 1 - i];
	return n;
}

static bool
json_text_or_null(Buf *out, const RecordText *t)
{
	return t->isnull ? buf_puts(out, "null") : json_string(out, t->data, t->len);
}

static bool
json_raw_or_null(Buf *out, const RecordText *t)
{
	return t->isnull ? buf_puts(out, "null") : buf_append(out, t->data, t->len);
}

static bool
json_lsn(Buf *out, uint64_t lsn)
{
	char		d[20];
	int			n = 0;

	d[n++] = '"';
	n += hex_digits(d + n, (uint32_t) (lsn >> 32));
	d[n++] = '/';
	n += hex_digits(d + n, (uint32_t) lsn);
	d[n++] = '"';
	return buf_append(out, d, (size_t) n);
}

bool
record_message_json(Buf *out, const Record *rec)
{
	return buf_puts(out, "{\"queue\":") &&
		json_text_or_null(out, &rec->queue) &&
		buf_puts(out, ",\"message_id\":") &&
		json_int(out, rec->message_id) &&
		buf_puts(out, ",\"payload\":") &&
		json_raw_or_null(out, &rec->payload) &&
		buf_puts(out, ",\"headers\":") &&
		json_raw_or_null(out, &rec->headers) &&
		buf_puts(out, ",\"ordering_key\":") &&
		json_text_or_null(out, &rec->ordering_key) &&
		buf_puts(out, ",\"enqueued_at\":") &&
		json_timestamp(out, rec->enqueued_at) &&
		buf_puts(out, ",\"commit_lsn\":") &&
		json_lsn(out, rec->commit_lsn) &&
		buf_puts(out, ",\"commit_time\":") &&
		json_timestamp(out, rec->commit_time) &&
		buf_putc(out, '}');
}

bool
record_commit_json(Buf *out, const Record *rec)
{
	return buf_puts(out, "{\"commit_lsn\":") &&
		json_lsn(out, rec->commit_lsn) &&
		buf_puts(out, ",\"commit_time\":") &&
		json_timestamp(out, rec->commit_time) &&
		buf_puts(out, ",\"messages\":") &&
		json_int(out, (int64_t) rec->messages) &&
		buf_putc(out, '}');
}
