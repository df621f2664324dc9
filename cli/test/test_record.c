/*
 * test_record.c - table and fuzz test of the binary record parser of
 * deliver listen (record.c), built with AddressSanitizer and UBSan
 * (make test-record) and run by test/t/016_cli_hostile.pl.
 *
 * Every record is parsed from a heap block of exactly its size, so a read
 * past its end is an AddressSanitizer error, not a silent success.  Prints
 * TAP; exits 1 when a check failed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "record.h"

static int	checks = 0;
static int	failures = 0;

static void
check(int ok, const char *what)
{
	checks++;
	if (!ok)
		failures++;
	printf("%s %d - %s\n", ok ? "ok" : "not ok", checks, what);
}

static void
check_str(const char *got, const char *want, const char *what)
{
	check(strcmp(got, want) == 0, what);
	if (strcmp(got, want) != 0)
		printf("#   got:  %s\n#   want: %s\n", got, want);
}

static void
out_of_memory(int ok)
{
	if (!ok)
	{
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
}

static void
put_uint(Buf *b, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		out_of_memory(buf_putc(b, (char) ((v >> (8 * i)) & 0xFF)));
}

/* a string with its length; NULL: the NULL marker */
static void
put_text(Buf *b, const char *s, size_t len, int lenbytes)
{
	if (s == NULL)
	{
		put_uint(b, lenbytes == 2 ? 0xFFFF : 0xFFFFFFFF, lenbytes);
		return;
	}
	put_uint(b, len, lenbytes);
	out_of_memory(buf_append(b, s, len));
}

static void
message_frame(Buf *b, uint64_t lsn, int64_t ct, int64_t id, int64_t enq,
			  const char *queue, const char *key, size_t keylen, const char *headers, const char *payload)
{
	buf_reset(b);
	out_of_memory(buf_putc(b, 'M'));
	put_uint(b, lsn, 8);
	put_uint(b, (uint64_t) ct, 8);
	put_uint(b, (uint64_t) id, 8);
	put_uint(b, (uint64_t) enq, 8);
	put_text(b, queue, queue ? strlen(queue) : 0, 2);
	put_text(b, key, keylen, 2);
	put_text(b, headers, headers ? strlen(headers) : 0, 4);
	put_text(b, payload, payload ? strlen(payload) : 0, 4);
}

static void
commit_frame(Buf *b, uint64_t lsn, int64_t ct, uint32_t n)
{
	buf_reset(b);
	out_of_memory(buf_putc(b, 'C'));
	put_uint(b, lsn, 8);
	put_uint(b, (uint64_t) ct, 8);
	put_uint(b, n, 4);
}

/* parse a copy of exactly len bytes */
static int
parse_exact(const char *data, size_t len, Record *rec, char *err, size_t errlen)
{
	char	   *copy = malloc(len ? len : 1);
	int			ok;

	out_of_memory(copy != NULL);
	if (len)
		memcpy(copy, data, len);
	ok = record_parse(copy, len, rec, err, errlen);
	free(copy);
	return ok;
}

static void
expect_error(const char *data, size_t len, const char *want, const char *what)
{
	Record		rec;
	char		err[256];
	int			ok = parse_exact(data, len, &rec, err, sizeof(err));

	check(!ok && strstr(err, want) != NULL, what);
	if (ok || strstr(err, want) == NULL)
		printf("#   got: %s, error \"%s\"; want an error with \"%s\"\n", ok ? "parsed" : "refused", err, want);
}

/* the JSON line of a record, or "(refused: ...)" */
static const char *
json_of(const char *data, size_t len, Buf *out)
{
	Record		rec;
	char		err[256];

	buf_reset(out);
	if (!parse_exact(data, len, &rec, err, sizeof(err)))
	{
		out_of_memory(buf_printf(out, "(refused: %s)", err));
		return out->data;
	}
	/* the strings point into the freed copy: parse the original again */
	out_of_memory(record_parse(data, len, &rec, err, sizeof(err)));
	if (rec.type == RECORD_MESSAGE)
		out_of_memory(record_message_json(out, &rec));
	else
		out_of_memory(record_commit_json(out, &rec));
	return out->data;
}

static const char *
timestamp_of(int64_t usec, Buf *out)
{
	buf_reset(out);
	out_of_memory(json_timestamp(out, usec));
	return out->data;
}

/* every byte printable or above 0x7F: one line of JSON */
static int
one_line(const Buf *b)
{
	for (size_t i = 0; i < b->len; i++)
		if ((unsigned char) b->data[i] < 0x20)
			return 0;
	return 1;
}

static uint64_t rng = 0x2545F4914F6CDD1DULL;

static uint32_t
rnd(void)
{
	/* xorshift64*: the same sequence on every run */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t) ((rng * 0x2545F4914F6CDD1DULL) >> 32);
}

int
main(void)
{
	Buf			f = BUF_INIT,
				out = BUF_INIT,
				g = BUF_INIT;
	Record		rec;
	char		err[256];
	const int64_t ct = INT64_C(1795859101950313),
				enq = INT64_C(1795859101950096);
	const char	key[] = "k\"\\\n\t\x01\x1f\xc3\xbc";	/* quote, backslash, newline, tab, controls, u-umlaut */

	/* a message, every field */
	message_frame(&f, UINT64_C(0x0000000101607680), ct, 42, enq, "orders", "user-9", 6,
				  "{\"h\": 1}", "{\"id\": 7}");
	check(parse_exact(f.data, f.len, &rec, err, sizeof(err)) && rec.type == 'M' && rec.message_id == 42 &&
		  rec.commit_lsn == UINT64_C(0x0000000101607680) && rec.commit_time == ct && rec.enqueued_at == enq,
		  "a message record parses");
	check_str(json_of(f.data, f.len, &out),
			  "{\"queue\":\"orders\",\"message_id\":42,\"payload\":{\"id\": 7},\"headers\":{\"h\": 1},"
			  "\"ordering_key\":\"user-9\",\"enqueued_at\":\"2026-11-28T09:45:01.950096+00:00\","
			  "\"commit_lsn\":\"1/1607680\",\"commit_time\":\"2026-11-28T09:45:01.950313+00:00\"}",
			  "a message as the plugin's JSON");

	/* NULLs */
	message_frame(&f, 1, 0, -5, 0, "q", NULL, 0, NULL, NULL);
	check_str(json_of(f.data, f.len, &out),
			  "{\"queue\":\"q\",\"message_id\":-5,\"payload\":null,\"headers\":null,\"ordering_key\":null,"
			  "\"enqueued_at\":\"1970-01-01T00:00:00+00:00\",\"commit_lsn\":\"0/1\","
			  "\"commit_time\":\"1970-01-01T00:00:00+00:00\"}",
			  "NULL key, headers and payload are null");

	/* escapes, as escape_json */
	message_frame(&f, 1, 0, 1, 0, "q\"\\", key, sizeof(key) - 1, NULL, "\"\\u0001\"");
	check_str(json_of(f.data, f.len, &out),
			  "{\"queue\":\"q\\\"\\\\\",\"message_id\":1,\"payload\":\"\\u0001\",\"headers\":null,"
			  "\"ordering_key\":\"k\\\"\\\\\\n\\t\\u0001\\u001f\xc3\xbc\","
			  "\"enqueued_at\":\"1970-01-01T00:00:00+00:00\",\"commit_lsn\":\"0/1\","
			  "\"commit_time\":\"1970-01-01T00:00:00+00:00\"}",
			  "quotes, backslashes and control characters are escaped, UTF-8 kept");
	check(one_line(&out), "an escaped message is one line");
	buf_reset(&out);
	out_of_memory(json_string(&out, "\b\f\r\x7f", 4));
	check_str(out.data, "\"\\b\\f\\r\x7f\"", "\\b \\f \\r escaped, DEL kept");

	/* a commit */
	commit_frame(&f, UINT64_C(0xFFFFFFFFFFFFFFFF), ct, 4000000000u);
	check(parse_exact(f.data, f.len, &rec, err, sizeof(err)) && rec.type == 'C' && rec.messages == 4000000000u,
		  "a commit record parses");
	check_str(json_of(f.data, f.len, &out),
			  "{\"commit_lsn\":\"FFFFFFFF/FFFFFFFF\",\"commit_time\":\"2026-11-28T09:45:01.950313+00:00\","
			  "\"messages\":4000000000}",
			  "a commit as the plugin's JSON");

	/* times */
	check_str(timestamp_of(950000, &g), "\"1970-01-01T00:00:00.95+00:00\"", "trailing zeros of a fraction dropped");
	check_str(timestamp_of(1, &g), "\"1970-01-01T00:00:00.000001+00:00\"", "one microsecond");
	check_str(timestamp_of(-1, &g), "\"1969-12-31T23:59:59.999999+00:00\"", "before 1970");
	check_str(timestamp_of(INT64_C(253402300799999999), &g), "\"9999-12-31T23:59:59.999999+00:00\"", "the last of 9999");
	check_str(timestamp_of(INT64_C(253402300800000000), &g), "null", "year 10000: null");
	check_str(timestamp_of(INT64_C(-62135596800000000), &g), "\"0001-01-01T00:00:00+00:00\"", "the first of year 1");
	check_str(timestamp_of(INT64_C(-62135596800000001), &g), "null", "before year 1: null");
	check_str(timestamp_of(INT64_MAX, &g), "null", "INT64_MAX: null");
	/* the same second again (the date is kept from the last call) */
	check_str(timestamp_of(INT64_C(1764582301950313), &g), "\"2025-12-01T09:45:01.950313+00:00\"", "a time");
	check_str(timestamp_of(INT64_C(1764582301000000), &g), "\"2025-12-01T09:45:01+00:00\"", "the same second, no fraction");
	check_str(timestamp_of(INT64_C(1764582302000001), &g), "\"2025-12-01T09:45:02.000001+00:00\"", "the next second");
	/* ids and LSNs at their limits */
	commit_frame(&f, UINT64_MAX, 0, UINT32_MAX);
	check_str(json_of(f.data, f.len, &out),
			  "{\"commit_lsn\":\"FFFFFFFF/FFFFFFFF\",\"commit_time\":\"1970-01-01T00:00:00+00:00\",\"messages\":4294967295}",
			  "the largest LSN and message count");
	message_frame(&f, 0x100000000ULL, 0, INT64_MIN, 0, "q", NULL, 0, NULL, "1");
	check(strstr(json_of(f.data, f.len, &out), "\"message_id\":-9223372036854775808,") != NULL &&
		  strstr(out.data, "\"commit_lsn\":\"1/0\"") != NULL, "the smallest message id, an LSN with a zero low half");
	message_frame(&f, 0, 0, INT64_MAX, 0, "q", NULL, 0, NULL, "1");
	check(strstr(json_of(f.data, f.len, &out), "\"message_id\":9223372036854775807,") != NULL &&
		  strstr(out.data, "\"commit_lsn\":\"0/0\"") != NULL, "the largest message id, LSN 0/0");
	check_str(timestamp_of(INT64_MIN, &g), "null", "INT64_MIN: null");

	/* every truncation of a message and of a commit */
	message_frame(&f, 7, ct, 9, enq, "orders", "k", 1, "{}", "[1, 2]");
	{
		int			all = 1;

		for (size_t n = 1; n < f.len; n++)
		{
			int			ok = parse_exact(f.data, n, &rec, err, sizeof(err));

			if (ok || strstr(err, "truncated message record") == NULL)
			{
				all = 0;
				printf("# %zu of %zu bytes: %s\n", n, f.len, ok ? "parsed" : err);
			}
		}
		check(all, "every truncated message record is refused as truncated");
	}
	commit_frame(&f, 7, ct, 1);
	{
		int			all = 1;

		for (size_t n = 1; n < f.len; n++)
			if (parse_exact(f.data, n, &rec, err, sizeof(err)) || strstr(err, "truncated commit record") == NULL)
				all = 0;
		check(all, "every truncated commit record is refused as truncated");
	}
	expect_error("", 0, "empty record", "an empty record");
	expect_error("X", 1, "unknown record type 0x58", "an unknown record type");
	expect_error("\0", 1, "unknown record type 0x00", "record type 0");

	/* oversized: bytes after the end */
	commit_frame(&f, 7, ct, 1);
	out_of_memory(buf_putc(&f, 0));
	expect_error(f.data, f.len, "1 byte(s) after its end", "a commit record with a byte too many");
	message_frame(&f, 7, ct, 9, enq, "orders", NULL, 0, NULL, "1");
	out_of_memory(buf_append(&f, "junk", 4));
	expect_error(f.data, f.len, "4 byte(s) after its end", "a message record with 4 bytes too many");

	/* lengths beyond the record */
	message_frame(&f, 7, ct, 9, enq, "orders", NULL, 0, NULL, "1");
	f.data[33] = (char) 0xFF;	/* queue name length 0xFF06: far more than is left */
	expect_error(f.data, f.len, "queue name needs 65286 byte(s)", "a queue name longer than the record");
	message_frame(&f, 7, ct, 9, enq, "orders", NULL, 0, "{}", "1");
	/* headers length (after 1+32+2+6+2 bytes) set to 0xFFFFFFFE */
	memcpy(f.data + 43, "\xFF\xFF\xFF\xFE", 4);
	expect_error(f.data, f.len, "headers needs 4294967294 byte(s)", "headers longer than the record");
	message_frame(&f, 7, ct, 9, enq, "orders", NULL, 0, NULL, "12345");
	f.data[f.len - 6] = 6;		/* payload length 6, 5 bytes there */
	expect_error(f.data, f.len, "payload needs 6 byte(s), 5 left", "a payload one byte longer than the record");

	/* values the plugin never sends */
	message_frame(&f, 7, ct, 9, enq, NULL, NULL, 0, NULL, "1");
	expect_error(f.data, f.len, "the queue name is NULL", "a NULL queue name");
	message_frame(&f, 7, ct, 9, enq, "", NULL, 0, NULL, "1");
	expect_error(f.data, f.len, "the queue name is empty", "an empty queue name");
	message_frame(&f, 7, ct, 9, enq, "q", "a\0b", 3, NULL, "1");
	expect_error(f.data, f.len, "the ordering key holds a NUL byte", "a NUL byte in the ordering key");
	message_frame(&f, 7, ct, 9, enq, "q", NULL, 0, NULL, "{\"a\":\n1}");
	expect_error(f.data, f.len, "the payload holds control character 0x0a", "a newline in the payload");
	message_frame(&f, 7, ct, 9, enq, "q", NULL, 0, "", "1");
	expect_error(f.data, f.len, "headers is empty", "empty headers");

	/* several records in one message (the plugin's pack option) */
	{
		char	   *copy;
		size_t		used1 = 0,
					used2 = 0,
					used3 = 0;
		int			ok;

		buf_reset(&g);
		message_frame(&f, 7, ct, 9, enq, "orders", "k", 1, NULL, "1");
		out_of_memory(buf_append(&g, f.data, f.len));
		message_frame(&f, 7, ct, 10, enq, "orders", NULL, 0, "{}", "[2]");
		out_of_memory(buf_append(&g, f.data, f.len));
		commit_frame(&f, 7, ct, 2);
		out_of_memory(buf_append(&g, f.data, f.len));
		copy = malloc(g.len);
		out_of_memory(copy != NULL);
		memcpy(copy, g.data, g.len);
		ok = record_parse_next(copy, g.len, &rec, &used1, err, sizeof(err)) &&
			rec.type == 'M' && rec.message_id == 9 &&
			record_parse_next(copy + used1, g.len - used1, &rec, &used2, err, sizeof(err)) &&
			rec.type == 'M' && rec.message_id == 10 &&
			record_parse_next(copy + used1 + used2, g.len - used1 - used2, &rec, &used3, err, sizeof(err)) &&
			rec.type == 'C' && rec.messages == 2 && used1 + used2 + used3 == g.len;
		check(ok, "three records in one message are read one after the other, each whole");
		check(!record_parse(copy, g.len, &rec, err, sizeof(err)) && strstr(err, "after its end") != NULL,
			  "record_parse still refuses bytes after a record");
		/* the second record cut short: truncated, never read past the end */
		ok = 1;
		for (size_t n = used1 + 1; n < used1 + used2; n++)
		{
			char	   *cut = malloc(n - used1);

			out_of_memory(cut != NULL);
			memcpy(cut, g.data + used1, n - used1);
			if (record_parse_next(cut, n - used1, &rec, &used2, err, sizeof(err)) ||
				strstr(err, "truncated message record") == NULL)
				ok = 0;
			free(cut);
		}
		check(ok, "a record cut short after another one is refused as truncated");
		free(copy);
		buf_reset(&g);
	}

	/* fuzz: mutated, cut and extended records never read out of bounds */
	{
		long		parsed = 0,
					refused = 0,
					bad_json = 0;

		for (int i = 0; i < 200000; i++)
		{
			int			mutations = 1 + (int) (rnd() % 4);

			if (rnd() % 2)
				message_frame(&f, rnd(), (int64_t) rnd() << 20, rnd(), (int64_t) rnd() << 20, "orders",
							  (rnd() % 2) ? key : NULL, sizeof(key) - 1, (rnd() % 2) ? "{\"h\": [1]}" : NULL,
							  "{\"payload\": \"x\"}");
			else
				commit_frame(&f, rnd(), (int64_t) rnd() << 20, rnd() % 10);
			for (int m = 0; m < mutations; m++)
			{
				switch (rnd() % 4)
				{
					case 0:		/* flip a byte */
						if (f.len)
							f.data[rnd() % f.len] ^= (char) (1 + rnd() % 255);
						break;
					case 1:		/* cut */
						f.len = f.len ? rnd() % f.len : 0;
						break;
					case 2:		/* extend */
						for (uint32_t k = rnd() % 8; k > 0; k--)
							out_of_memory(buf_putc(&f, (char) rnd()));
						break;
					case 3:		/* a length field to a boundary value */
						if (f.len > 36)
						{
							static const char *const v[] = {"\x00\x00", "\xFF\xFF", "\xFF\xFE", "\x7F\xFF", "\x00\x01"};

							memcpy(f.data + 33 + rnd() % (f.len - 35), v[rnd() % 5], 2);
						}
						break;
				}
			}
			if (parse_exact(f.data, f.len, &rec, err, sizeof(err)))
			{
				parsed++;
				out_of_memory(record_parse(f.data, f.len, &rec, err, sizeof(err)));
				buf_reset(&out);
				out_of_memory(rec.type == RECORD_MESSAGE ? record_message_json(&out, &rec)
							  : record_commit_json(&out, &rec));
				if (!one_line(&out) || out.data[0] != '{' || out.data[out.len - 1] != '}')
					bad_json++;
			}
			else if (err[0] == '\0')
				bad_json++;		/* refused without a reason */
			else
				refused++;
		}
		printf("# fuzz: %ld parsed, %ld refused\n", parsed, refused);
		check(bad_json == 0 && parsed > 0 && refused > 0,
			  "200,000 mutated records: each parsed into one JSON line or refused with a reason");
	}

	buf_free(&f);
	buf_free(&out);
	buf_free(&g);
	printf("1..%d\n", checks);
	if (failures)
		printf("# %d of %d checks failed\n", failures, checks);
	return failures ? 1 : 0;
}
