/*
 * record.h - the records of the deliver output plugin's binary format, as
 * deliver listen reads them, and the JSON lines it makes of them.
 *
 * The layout (docs/push.md; src/decode.c): integers big-endian, times
 * in microseconds since 1970-01-01 UTC, strings length-prefixed, a length of
 * all ones (0xFFFF, 0xFFFFFFFF) for NULL.
 *
 *   'M'  u64 commit_lsn, i64 commit_time, i64 message_id, i64 enqueued_at,
 *        u16 len + queue name, u16 len + ordering key,
 *        u32 len + headers (JSON text), u32 len + payload (JSON text)
 *   'C'  u64 commit_lsn, i64 commit_time, u32 messages
 *
 * record_parse checks every length against the bytes that remain before it
 * reads anything, and refuses a record with bytes left over.  Strings point
 * into the parsed data (not NUL-terminated).
 */
#ifndef DELIVER_CLI_RECORD_H
#define DELIVER_CLI_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define RECORD_MESSAGE	'M'
#define RECORD_COMMIT	'C'

typedef struct RecordText
{
	const char *data;			/* NULL when isnull */
	size_t		len;
	bool		isnull;
} RecordText;

typedef struct Record
{
	char		type;			/* RECORD_MESSAGE or RECORD_COMMIT */
	uint64_t	commit_lsn;		/* end of the transaction's commit record */
	int64_t		commit_time;	/* microseconds since 1970-01-01 UTC */
	/* RECORD_MESSAGE */
	int64_t		message_id;
	int64_t		enqueued_at;
	RecordText	queue;			/* never NULL, never empty */
	RecordText	ordering_key;
	RecordText	headers;		/* JSON text, or NULL */
	RecordText	payload;		/* JSON text, or NULL */
	/* RECORD_COMMIT */
	uint32_t	messages;		/* messages of the transaction */
} Record;

/*
 * Parse one record of len bytes.  True when it is well formed; otherwise
 * false with a message in err (always NUL-terminated when errlen > 0).
 */
extern bool record_parse(const void *data, size_t len, Record *rec, char *err, size_t errlen);

/*
 * Parse the record at the start of data (len bytes, several records with
 * the plugin's pack option): as record_parse, but bytes after the record
 * are left for the next call, and *used says how many it took.
 */
extern bool record_parse_next(const void *data, size_t len, Record *rec, size_t *used,
							  char *err, size_t errlen);

/*
 * The JSON line of a record, without the newline, as the plugin's json
 * format writes it (times in UTC), appended to out.  The line never holds a
 * newline or another control character outside the escapes of its strings.
 * False when memory runs out.
 */
extern bool record_message_json(Buf *out, const Record *rec);
extern bool record_commit_json(Buf *out, const Record *rec);

/* pieces of those lines, for the tests */
extern bool json_string(Buf *out, const char *s, size_t len);
extern bool json_timestamp(Buf *out, int64_t usec);

#endif
