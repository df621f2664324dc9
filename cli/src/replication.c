/*
 * replication.c - the replication-protocol stream of deliver listen.  The
 * server sends CopyData messages: keepalives ('k') and XLogData ('w'), each
 * XLogData carrying one record of the plugin's binary format (record.c).
 * Message records gather into their transaction; at its commit record the
 * transaction joins the batch that handler.c handles, and what is handled
 * is confirmed to the server in status updates ('r').
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/time.h>

#include "buf.h"
#include "handler.h"
#include "listen.h"
#include "main.h"
#include "record.h"
#include "replication.h"

static uint64_t
be64(const char *p)
{
	uint64_t	v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | (unsigned char) p[i];
	return v;
}

static void
put64(char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--)
	{
		p[i] = (char) (v & 0xFF);
		v >>= 8;
	}
}

/* microseconds since 2000-01-01, the protocol's clock */
static int64_t
pg_now(void)
{
	return now_usec() - INT64_C(946684800) * 1000000;
}

bool
send_status(Listen *L, bool reply)
{
	char		msg[1 + 8 + 8 + 8 + 8 + 1];

	msg[0] = 'r';
	put64(msg + 1, L->confirmed);
	put64(msg + 9, L->confirmed);
	put64(msg + 17, L->confirmed);
	put64(msg + 25, (uint64_t) pg_now());
	msg[33] = reply ? 1 : 0;
	if (PQputCopyData(L->repl, msg, sizeof(msg)) <= 0 || PQflush(L->repl) != 0)
	{
		note("could not send the status update: %s", PQerrorMessage(L->repl));
		return false;
	}
	L->last_status = now_usec();
	return true;
}

/* the stream is not what the plugin sends: retrying cannot help */
static void protocol_error(Listen *L, uint64_t lsn, const char *fmt,...)
			__attribute__((format(printf, 3, 4), noreturn));

static void
protocol_error(Listen *L, uint64_t lsn, const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "deliver: protocol error in the stream of slot \"%s\" at %X/%X: ",
			L->slot, (unsigned) (lsn >> 32), (unsigned) lsn);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nHINT: the server's deliver output plugin and this client do not agree on the "
		  "binary format; nothing after the last handled transaction was confirmed.\n", stderr);
	exit(EXIT_FATAL);
}

/*
 * A record of the plugin's binary format, from an XLogData message whose
 * start is lsn.  A message record joins the transaction being received; a
 * commit record ends it, and its messages then form a unit.
 */
static bool
take_record(Listen *L, const Record *r, uint64_t lsn)
{
	Record		rec = *r;

	if (L->in_tx && rec.commit_lsn != L->tcommit)
		protocol_error(L, lsn, "a record of the transaction committed at %X/%X inside the one committed at %X/%X",
					   (unsigned) (rec.commit_lsn >> 32), (unsigned) rec.commit_lsn,
					   (unsigned) (L->tcommit >> 32), (unsigned) L->tcommit);
	if (rec.type == RECORD_MESSAGE)
	{
		must(record_message_json(&L->tx, &rec));
		must(buf_putc(&L->tx, '\n'));
		L->tcount++;
		L->tcommit = rec.commit_lsn;
		L->in_tx = true;
		return true;
	}

	/* the end of a transaction */
	if (rec.commit_lsn != lsn)
		protocol_error(L, lsn, "the commit record says %X/%X",
					   (unsigned) (rec.commit_lsn >> 32), (unsigned) rec.commit_lsn);
	if (rec.messages != (uint64_t) L->tcount)
		protocol_error(L, lsn, "the commit record counts %" PRIu32 " message(s), %ld came",
					   rec.messages, L->tcount);
	if (L->tcount == 0 || (L->apply_sql && lsn <= L->offset))
	{
		/* nothing, or applied before (the offset was stored, not yet confirmed) */
	}
	else
	{
		must(buf_append(&L->buf, L->tx.data, L->tx.len));
		if (L->commits)
		{
			/* commit lines are never messages: not for --apply or --exec */
			Buf		   *out = (L->apply_sql || L->exec_cmd) ? &L->cbuf : &L->buf;

			must(record_commit_json(out, &rec));
			must(buf_putc(out, '\n'));
		}
		L->bcount += L->tcount;
		if (L->report)
		{
			if (L->nbtx == L->capbtx)
			{
				L->capbtx = L->capbtx ? L->capbtx * 2 : 64;
				L->btx = realloc(L->btx, L->capbtx * sizeof(*L->btx));
				if (L->btx == NULL)
					die(EXIT_FAILURE, "out of memory");
			}
			L->btx[L->nbtx].commit_time = rec.commit_time;
			L->btx[L->nbtx].count = L->tcount;
			L->nbtx++;
		}
	}
	L->bcommit = lsn;
	buf_reset(&L->tx);
	L->tcount = 0;
	L->in_tx = false;
	if (L->bcount >= L->batch)
		return handle_batch(L);
	if (L->bcount == 0)
	{
		/* nothing to handle (skipped): confirm anyway */
		L->confirmed = lsn;
	}
	return true;
}

/*
 * The data of an XLogData message: records of the binary format, several
 * with the pack option (whole records, a commit record only last), each
 * checked against the bytes that remain.
 */
static bool
take_records(Listen *L, const char *data, size_t len, uint64_t lsn)
{
	size_t		off = 0;

	do
	{
		Record		rec;
		size_t		used;
		char		err[256];

		if (!record_parse_next(data + off, len - off, &rec, &used, err, sizeof(err)))
			protocol_error(L, lsn, "%s (a record at byte %zu of a message of %zu bytes)", err, off, len);
		if (rec.type == RECORD_COMMIT && off + used < len)
			protocol_error(L, lsn, "a commit record followed by %zu byte(s) in one message", len - off - used);
		if (!take_record(L, &rec, lsn))
			return false;
		off += used;
	} while (off < len);
	return true;
}

/* classify a server error: true when retrying cannot help */
static bool
permanent_error(const char *state, const char *msg)
{
	if (state == NULL)
		return msg && (strstr(msg, "permission denied") || strstr(msg, "must be superuser or replication role") ||
					   strstr(msg, "does not exist"));
	return strcmp(state, "42704") == 0 ||	/* undefined object: slot */
		strcmp(state, "22023") == 0 ||	/* bad plugin option */
		strcmp(state, "42501") == 0 ||	/* insufficient privilege */
		strcmp(state, "28000") == 0 ||	/* authorization */
		strcmp(state, "3D000") == 0;	/* no such database */
}

/* ', "option" 'value'' (the value quoted) onto the START_REPLICATION command */
static void
add_plugin_option(Listen *L, Buf *cmd, const char *option, const char *value, const char *what)
{
	char	   *v = PQescapeLiteral(L->repl, value, strlen(value));
	Shown		sh;

	if (v == NULL)
		die(EXIT_FATAL, "could not quote %s %s: %s", what, show(&sh, value), PQerrorMessage(L->repl));
	must(buf_printf(cmd, ", \"%s\" %s", option, v));
	PQfreemem(v);
}

/* connect for replication and start streaming; false: retry later */
bool
start_stream(Listen *L)
{
	Buf			cmd = BUF_INIT;
	char	   *slot;
	PGresult   *res;
	uint64_t	start = L->apply_sql ? L->offset : 0;

	L->repl = connect_sql(true);
	if (PQstatus(L->repl) != CONNECTION_OK)
	{
		const char *msg = PQerrorMessage(L->repl);

		if (strstr(msg, "must be superuser or replication role") || strstr(msg, "permission denied"))
			die(EXIT_FATAL, "the role may not stream: %s"
				"HINT: streaming needs the REPLICATION attribute (ALTER ROLE ... REPLICATION) "
				"and a replication entry in pg_hba.conf.", msg);
		note("could not connect for streaming: %s", msg);
		return false;
	}
	/* the command grows with the names: no fixed size, nothing cut */
	slot = PQescapeIdentifier(L->repl, L->slot, strlen(L->slot));
	if (slot == NULL)
		die(EXIT_FATAL, "could not quote the slot name: %s", PQerrorMessage(L->repl));
	must(buf_printf(&cmd, "START_REPLICATION SLOT %s LOGICAL %X/%X (\"format\" 'binary', \"include_commit\" 'on', \"pack\" 'on'",
					slot, (unsigned) (start >> 32), (unsigned) start));
	PQfreemem(slot);
	if (L->queues)
		add_plugin_option(L, &cmd, "queues", L->queues, "the queue names");
	if (L->group)
		add_plugin_option(L, &cmd, "consumer_group", L->group, "the group name");
	must(buf_putc(&cmd, ')'));
	res = PQexec(L->repl, cmd.data);
	buf_free(&cmd);
	if (PQresultStatus(res) != PGRES_COPY_BOTH)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorMessage(res);

		if (permanent_error(state, msg))
			die(EXIT_FATAL, "could not stream slot \"%s\": %s", L->slot, msg);
		note("could not stream slot \"%s\": %s", L->slot, msg);
		PQclear(res);
		PQfinish(L->repl);
		L->repl = NULL;
		return false;
	}
	PQclear(res);
	L->last_status = now_usec();
	buf_reset(&L->tx);
	L->tcount = 0;
	L->in_tx = false;
	note("streaming slot \"%s\"%s%s from %X/%X", L->slot,
		 L->queues ? ", queues " : "", L->queues ? L->queues : "",
		 (unsigned) (start >> 32), (unsigned) start);
	return true;
}

/* stream until the connection fails or a handler fails (false), or stop */
bool
run_stream(Listen *L)
{
	for (;;)
	{
		char	   *copybuf = NULL;
		int			r;

		if (stop_requested || (L->max_messages > 0 && L->handled >= L->max_messages))
			return true;
		r = PQgetCopyData(L->repl, &copybuf, 1);
		if (r == 0)
		{
			fd_set		rfds;
			struct timeval tv;
			int			sock = PQsocket(L->repl);

			/* nothing more right now: handle what is complete */
			if (L->bcount > 0 && !handle_batch(L))
				return false;
			if (now_usec() - L->last_status > (int64_t) (L->status_interval * 1e6) &&
				!send_status(L, false))
				return false;
			FD_ZERO(&rfds);
			FD_SET(sock, &rfds);
			tv.tv_sec = 0;
			tv.tv_usec = 500000;
			if (select(sock + 1, &rfds, NULL, NULL, &tv) < 0 && errno != EINTR)
				return false;
			if (PQconsumeInput(L->repl) == 0)
			{
				note("connection lost: %s", PQerrorMessage(L->repl));
				return false;
			}
			continue;
		}
		if (r == -1)
		{
			PGresult   *res = PQgetResult(L->repl);

			note("the server ended the stream: %s",
				 res && PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) : "no error");
			if (res && permanent_error(PQresultErrorField(res, PG_DIAG_SQLSTATE), NULL))
				die(EXIT_FATAL, "%s", PQresultErrorMessage(res));
			PQclear(res);
			return false;
		}
		if (r == -2)
		{
			note("connection lost: %s", PQerrorMessage(L->repl));
			return false;
		}
		if (copybuf[0] == 'k')
		{
			uint64_t	walend;
			bool		reply;

			/* 'k', u64 walEnd, i64 sendTime, u8 replyRequested */
			if (r < 18)
				protocol_error(L, L->last_received, "a keepalive message of %d bytes, fewer than 18", r);
			walend = be64(copybuf + 1);
			reply = copybuf[17] != 0;

			/* between transactions, with everything handled: move on */
			if (!L->in_tx && L->bcount == 0 && walend > L->confirmed)
				L->confirmed = walend;
			if (reply && !send_status(L, false))
			{
				PQfreemem(copybuf);
				return false;
			}
		}
		else if (copybuf[0] == 'w')
		{
			uint64_t	start;

			/* 'w', u64 dataStart, u64 walEnd, i64 sendTime, then the record */
			if (r < 25)
				protocol_error(L, L->last_received, "an XLogData message of %d bytes, shorter than its header", r);
			start = be64(copybuf + 1);
			if (start > L->last_received)
				L->last_received = start;
			if (!take_records(L, copybuf + 25, (size_t) r - 25, start))
			{
				PQfreemem(copybuf);
				return false;
			}
		}
		else
			protocol_error(L, L->last_received, "a message of type 0x%02x", (unsigned) (unsigned char) copybuf[0]);
		PQfreemem(copybuf);
	}
}

void
stop_stream(Listen *L)
{
	if (L->repl)
	{
		if (PQstatus(L->repl) == CONNECTION_OK)
		{
			send_status(L, false);
			PQputCopyEnd(L->repl, NULL);
			PQflush(L->repl);
		}
		PQfinish(L->repl);
		L->repl = NULL;
	}
	/* unconfirmed messages come again from the server */
	buf_reset(&L->buf);
	buf_reset(&L->cbuf);
	L->bcount = 0;
	L->nbtx = 0;
	buf_reset(&L->tx);
	L->tcount = 0;
	L->in_tx = false;
}
