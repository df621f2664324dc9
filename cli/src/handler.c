/*
 * handler.c - what deliver listen does with the messages of complete
 * transactions: print them as JSON lines, pipe them to --exec, or apply
 * them with --apply in one transaction with the subscription's offset; and
 * the --report of commit-to-consumer latency.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "buf.h"
#include "handler.h"
#include "listen.h"
#include "main.h"
#include "replication.h"

/* --report: the commit-to-consumer latency of the messages just handled */
static void
record_latencies(Listen *L)
{
	int64_t		now = now_usec();

	if (L->first_usec == 0)
		L->first_usec = now;
	L->last_usec = now;
	for (size_t i = 0; i < L->nbtx; i++)
	{
		for (long k = 0; k < L->btx[i].count; k++)
		{
			if (L->nlat == L->caplat)
			{
				L->caplat = L->caplat ? L->caplat * 2 : 4096;
				L->lat = realloc(L->lat, L->caplat * sizeof(int64_t));
				if (L->lat == NULL)
					die(EXIT_FAILURE, "out of memory");
			}
			L->lat[L->nlat++] = now - L->btx[i].commit_time;
		}
	}
	L->nbtx = 0;
}

static int
cmp64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a,
				y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

void
print_report(Listen *L)
{
	/* from the first message to the last */
	double		secs = L->first_usec ? (L->last_usec - L->first_usec) / 1e6 : 0;

	if (L->nlat > 0)
		qsort(L->lat, L->nlat, sizeof(int64_t), cmp64);
	fprintf(stderr, "deliver: received %ld messages in %.2f s (%.0f msgs/s); "
			"commit-to-consumer latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			L->handled, secs, secs > 0 ? L->handled / secs : 0,
			L->nlat ? L->lat[L->nlat / 2] / 1000.0 : 0,
			L->nlat ? L->lat[(size_t) (L->nlat * 0.99)] / 1000.0 : 0,
			L->nlat ? L->lat[L->nlat - 1] / 1000.0 : 0);
}

/*
 * Handle the messages of the complete transactions in buf.  True when they
 * were handled; then their LSN may be confirmed.
 */
bool
handle_batch(Listen *L)
{
	if (L->bcount == 0)
		return true;
	if (L->apply_sql)
	{
		PGresult   *res;
		char	   *line = L->buf.data;
		char		lsn[32];
		bool		ok = true;

		res = PQexec(L->sql, "BEGIN");
		ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		PQclear(res);
		/* one message per line: the JSON the client made holds no newline */
		while (ok && line && *line)
		{
			char	   *nl = strchr(line, '\n');
			const char *p[1] = {line};
			ExecStatusType st;

			if (nl)
				*nl = '\0';
			res = PQexecParams(L->sql, L->apply_sql, 1, (const Oid[]) {3802}, p, NULL, NULL, 0);
			st = PQresultStatus(res);
			if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
			{
				note("--apply failed: %s", PQresultErrorMessage(res));
				ok = false;
			}
			PQclear(res);
			if (nl)
				*nl = '\n';
			line = nl ? nl + 1 : NULL;
		}
		if (ok)
		{
			Buf			sql = BUF_INIT;
			const char *p[2] = {L->slot, lsn};

			snprintf(lsn, sizeof(lsn), "%X/%X", (unsigned) (L->bcommit >> 32), (unsigned) L->bcommit);
			must(buf_printf(&sql, "INSERT INTO %s (subscription, lsn) VALUES ($1, $2::pg_lsn) "
							"ON CONFLICT (subscription) DO UPDATE SET lsn = excluded.lsn, updated_at = now()",
							L->offset_ident));
			res = PQexecParams(L->sql, sql.data, 2, NULL, p, NULL, NULL, 0);
			buf_free(&sql);
			if (PQresultStatus(res) != PGRES_COMMAND_OK)
			{
				note("could not store the offset: %s", PQresultErrorMessage(res));
				ok = false;
			}
			PQclear(res);
		}
		res = PQexec(L->sql, ok ? "COMMIT" : "ROLLBACK");
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			note("commit failed: %s", PQresultErrorMessage(res));
			ok = false;
		}
		PQclear(res);
		if (!ok)
			return false;
		L->offset = L->bcommit;
	}
	else if (L->exec_cmd)
	{
		FILE	   *f;
		int			status;
		char		lsn[32],
					count[32];

		snprintf(lsn, sizeof(lsn), "%X/%X", (unsigned) (L->bcommit >> 32), (unsigned) L->bcommit);
		snprintf(count, sizeof(count), "%ld", L->bcount);
		setenv("DELIVER_LSN", lsn, 1);
		setenv("DELIVER_MESSAGES", count, 1);
		fflush(stdout);
		f = popen(L->exec_cmd, "w");
		if (f == NULL)
		{
			note("could not run the handler: %s", strerror(errno));
			return false;
		}
		if (fwrite(L->buf.data, 1, L->buf.len, f) != L->buf.len)
			note("could not write to the handler: %s", strerror(errno));
		status = pclose(f);
		if (status != 0)
		{
			if (status > 0 && WIFEXITED(status))
				note("handler exited with status %d; %ld message(s) not confirmed",
					 WEXITSTATUS(status), L->bcount);
			else
				note("handler failed; %ld message(s) not confirmed", L->bcount);
			return false;
		}
	}
	else
	{
		if (fwrite(L->buf.data, 1, L->buf.len, stdout) != L->buf.len || fflush(stdout) != 0)
		{
			note("could not write the messages: %s", strerror(errno));
			return false;
		}
	}
	/* handled: the commit lines of --apply or --exec (only informative) */
	if (L->cbuf.len > 0 &&
		(fwrite(L->cbuf.data, 1, L->cbuf.len, stdout) != L->cbuf.len || fflush(stdout) != 0))
		note("could not write the commit lines: %s", strerror(errno));
	if (L->report)
		record_latencies(L);
	L->handled += L->bcount;
	L->confirmed = L->bcommit;
	buf_reset(&L->buf);
	buf_reset(&L->cbuf);
	L->bcount = 0;
	L->nbtx = 0;
	return send_status(L, false);
}
