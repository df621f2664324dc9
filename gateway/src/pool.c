/*
 * deliverd: a fixed-size pool of libpq connections.
 *
 * Every connection prepares all statements once (in one pipeline) and then
 * stays in pipeline mode: a request sends set_config('role', ...) and its
 * statement back to back followed by one Sync, so both run in one implicit
 * transaction (the role reverts at its end) and cost one round trip.
 *
 * A connection found broken is closed; the next acquire reconnects, with an
 * exponential backoff (100 ms doubling to 5 s) shared by the pool, so a
 * database that is down costs a 503 with Retry-After, not a hang.
 *
 * A little over 500 lines, kept whole: the slots, their connections, the
 * backoff and the counters share one mutex, and what holds it when is
 * easier to check in one file.
 */
#include "pool.h"
#include "sqlstate.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct
{
	PGconn	   *conn;
	PGcancel   *cancel;
	bool		in_use;
	bool		long_poll;
} slot_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static slot_t *slots;
static int	nslots;
static char *conninfo_s;
static int	acquire_timeout;
static const stmt_def *stmts;
static int	nstmts;
static long long next_connect_at;	/* ms, monotonic */
static int	backoff_ms;
static long connects, connect_failures, broken_count, acquire_timeouts;
static int	long_polls;		/* reserved by pool_long_poll_begin */

#define BACKOFF_MIN 100
#define BACKOFF_MAX 5000

int
pool_init(const char *conninfo, int size, int acquire_timeout_ms,
		  const stmt_def *defs, int ndefs)
{
	nslots = size;
	slots = calloc((size_t) size, sizeof(slot_t));
	if (!slots)
		return -1;
	conninfo_s = xstrdup(conninfo);
	acquire_timeout = acquire_timeout_ms;
	stmts = defs;
	nstmts = ndefs;
	backoff_ms = 0;
	return 0;
}

/*
 * Read the results of a pipeline of nq queries ending with one Sync.  Keeps
 * the result of query keep (or none when keep < 0); the first error goes to
 * out.  Returns false when the connection broke.
 */
static bool
read_pipeline(PGconn *conn, int nq, int keep, PGresult **kept, exec_result *out)
{
	int			qi = 0;
	int			guard = 0;

	if (kept)
		*kept = NULL;
	for (;;)
	{
		PGresult   *r = PQgetResult(conn);
		ExecStatusType st;

		if (++guard > 4 * nq + 16)
			return false;
		if (!r)
		{
			if (PQstatus(conn) == CONNECTION_BAD)
			{
				if (out->status == 200)
					exec_result_from_pg(out, conn, NULL);
				return false;
			}
			qi++;
			continue;
		}
		st = PQresultStatus(r);
		if (st == PGRES_PIPELINE_SYNC)
		{
			PQclear(r);
			return PQstatus(conn) != CONNECTION_BAD;
		}
		if (st == PGRES_FATAL_ERROR)
		{
			if (out->status == 200)
			{
				exec_result_from_pg(out, conn, r);
				out->failed_query = qi;
			}
			PQclear(r);
			if (PQstatus(conn) == CONNECTION_BAD)
				return false;
			continue;
		}
		if (qi == keep && kept && !*kept && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK))
			*kept = r;
		else
			PQclear(r);
	}
}

/* Connect slot s and prepare every statement; false on failure. */
static bool
connect_slot(slot_t *s, exec_result *out)
{
	/*
	 * Defaults a network fault must not defeat (no hang on connect, dead
	 * peers noticed by TCP keepalives); the configured conninfo comes last,
	 * so its own settings win.
	 */
	static const char *const keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval",
	"keepalives_count", "application_name", "dbname", NULL};
	const char *vals[] = {"5", "30", "10", "3", "deliverd", conninfo_s, NULL};
	PGconn	   *c = PQconnectdbParams(keys, vals, 1);
	int			i;

	if (PQstatus(c) != CONNECTION_OK)
	{
		char		msg[512];

		snprintf(msg, sizeof(msg), "database unavailable: %s", PQerrorMessage(c));
		msg[strcspn(msg, "\n")] = '\0';
		exec_result_set_error(out, 503, "08001", msg, NULL, NULL);
		PQfinish(c);
		return false;
	}
	if (!PQenterPipelineMode(c))
		goto fail;

	/*
	 * The statements name Postgres' functions without a schema and run as
	 * the caller's role: with search_path pinned first (for the session:
	 * they are prepared under it), no function of another role's (a
	 * database owner's json_build_object(text, boolean) in schema public,
	 * say) is a better match than pg_catalog's.
	 */
	if (!PQsendQueryParams(c, "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)",
						   0, NULL, NULL, NULL, NULL, 0))
		goto fail;
	if (!PQsendPrepare(c, "set_role", "SELECT pg_catalog.set_config('role', $1, true)", 1, NULL))
		goto fail;
	for (i = 0; i < nstmts; i++)
		if (!PQsendPrepare(c, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL))
			goto fail;
	if (!PQpipelineSync(c))
		goto fail;
	if (!read_pipeline(c, nstmts + 2, -1, NULL, out) || out->status != 200)
		goto fail;
	pthread_mutex_lock(&mu);
	s->conn = c;
	s->cancel = PQgetCancel(c);
	pthread_mutex_unlock(&mu);
	return true;

fail:
	if (out->status == 200)
		exec_result_set_error(out, 503, "08001", "database unavailable: could not prepare statements",
				  NULL, NULL);
	else
	{
		fprintf(stderr, "deliverd: preparing statements failed: %s\n",
				out->message ? out->message : "?");
		if (out->status != 503)
		{
			/* a statement that does not prepare is a deployment error (extension missing) */
			out->status = 503;
		}
	}
	PQfinish(c);
	return false;
}

static void
drop_conn(slot_t *s)
{
	if (s->cancel)
		PQfreeCancel(s->cancel);
	if (s->conn)
		PQfinish(s->conn);
	s->cancel = NULL;
	s->conn = NULL;
}

/* Gives a slot back; a broken one loses its connection first. */
static void
release(slot_t *s, bool broken)
{
	pthread_mutex_lock(&mu);
	if (broken)
	{
		drop_conn(s);
		broken_count++;
	}
	s->in_use = false;
	s->long_poll = false;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static slot_t *
acquire(exec_result *out, bool long_poll)
{
	struct timespec deadline;
	slot_t	   *s = NULL;
	int			i;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += acquire_timeout / 1000;
	deadline.tv_nsec += (long) (acquire_timeout % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L)
	{
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}

	pthread_mutex_lock(&mu);
	for (;;)
	{
		slot_t	   *empty = NULL;

		/* prefer a connected idle slot */
		for (i = 0; i < nslots; i++)
		{
			if (slots[i].in_use)
				continue;
			if (slots[i].conn)
			{
				s = &slots[i];
				break;
			}
			if (!empty)
				empty = &slots[i];
		}
		if (!s)
			s = empty;
		if (s)
			break;
		if (pthread_cond_timedwait(&cv, &mu, &deadline) != 0)
		{
			acquire_timeouts++;
			pthread_mutex_unlock(&mu);
			exec_result_set_error(out, 503, "53300", "all database connections are busy", NULL,
					  "Retry later or raise pool_size.");
			out->retry_after = 1;
			return NULL;
		}
	}
	s->in_use = true;
	s->long_poll = long_poll;
	pthread_mutex_unlock(&mu);

	if (s->conn && !pg_idle_conn_alive(s->conn))
	{
		pthread_mutex_lock(&mu);
		broken_count++;
		drop_conn(s);
		pthread_mutex_unlock(&mu);
	}
	if (!s->conn)
	{
		long long now = mono_ms();
		bool		ok;

		pthread_mutex_lock(&mu);
		if (now < next_connect_at)
		{
			long long wait = next_connect_at - now;

			pthread_mutex_unlock(&mu);
			exec_result_set_error(out, 503, "08001", "database unavailable", NULL,
					  "The gateway reconnects with backoff; retry after the Retry-After delay.");
			out->retry_after = (int) ((wait + 999) / 1000);
			goto fail;
		}
		pthread_mutex_unlock(&mu);
		ok = connect_slot(s, out);
		pthread_mutex_lock(&mu);
		if (ok)
		{
			connects++;
			backoff_ms = 0;
			next_connect_at = 0;
		}
		else
		{
			connect_failures++;
			backoff_ms = backoff_ms ? backoff_ms * 2 : BACKOFF_MIN;
			if (backoff_ms > BACKOFF_MAX)
				backoff_ms = BACKOFF_MAX;
			next_connect_at = mono_ms() + backoff_ms;
			out->retry_after = (backoff_ms + 999) / 1000;
		}
		pthread_mutex_unlock(&mu);
		if (!ok)
			goto fail;
	}
	return s;

fail:
	release(s, false);
	return NULL;
}

void
pool_exec(const char *role, int stmt, int nparams, const char *const *params,
		  bool long_poll, exec_result *out)
{
	slot_t	   *s;
	bool		ok;
	int			nq = 0;

	memset(out, 0, sizeof(*out));
	out->status = 200;
	s = acquire(out, long_poll);
	if (!s)
		return;
	if (role)
	{
		const char *p[1] = {role};

		if (!PQsendQueryPrepared(s->conn, "set_role", 1, p, NULL, NULL, 0))
			goto broken;
		nq++;
	}
	if (!PQsendQueryPrepared(s->conn, stmts[stmt].name, nparams, params, NULL, NULL, 0))
		goto broken;
	nq++;
	if (!PQpipelineSync(s->conn))
		goto broken;
	ok = read_pipeline(s->conn, nq, nq - 1, &out->res, out);
	/* the role itself was refused (unknown, or not granted to the gateway's user) */
	if (role && out->status != 200 && out->status != 503 && out->failed_query == 0)
		out->status = 403;
	if (out->status != 200 && out->res)
	{
		PQclear(out->res);
		out->res = NULL;
	}
	release(s, !ok);
	return;

broken:
	exec_result_from_pg(out, s->conn, NULL);
	out->status = 503;
	out->retry_after = 1;
	release(s, true);
}

void
pool_cancel_long_polls(void)
{
	int			i;
	char		err[256];

	pthread_mutex_lock(&mu);
	for (i = 0; i < nslots; i++)
		if (slots[i].in_use && slots[i].long_poll && slots[i].cancel)
			PQcancel(slots[i].cancel, err, sizeof(err));
	pthread_mutex_unlock(&mu);
}

bool
pool_long_poll_begin(void)
{
	return long_poll_reserve(&mu, &long_polls, nslots);
}

void
pool_long_poll_end(void)
{
	long_poll_release(&mu, &long_polls);
}

bool
long_poll_reserve(pthread_mutex_t *m, int *held, int size)
{
	bool		ok;

	pthread_mutex_lock(m);
	ok = *held < size - 1;
	if (ok)
		(*held)++;
	pthread_mutex_unlock(m);
	return ok;
}

void
long_poll_release(pthread_mutex_t *m, int *held)
{
	pthread_mutex_lock(m);
	(*held)--;
	pthread_mutex_unlock(m);
}

void
pool_get_stats(pool_stats *st)
{
	int			i;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&mu);
	st->size = nslots;
	for (i = 0; i < nslots; i++)
	{
		if (slots[i].in_use)
			st->in_use++;
		else
			st->idle++;
		if (slots[i].conn)
			st->connected++;
	}
	st->long_polls = long_polls;
	st->connects = connects;
	st->connect_failures = connect_failures;
	st->broken = broken_count;
	st->acquire_timeouts = acquire_timeouts;
	st->backoff_ms = backoff_ms;
	pthread_mutex_unlock(&mu);
}

void
pool_close(void)
{
	int			i;

	pthread_mutex_lock(&mu);
	for (i = 0; i < nslots; i++)
		if (!slots[i].in_use)
			drop_conn(&slots[i]);
	pthread_mutex_unlock(&mu);
}
