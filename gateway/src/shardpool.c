/*
 * deliverd (cluster mode): a pool of connections to one database whose
 * every wait has a deadline.
 *
 * Connections are made by the pool's connector thread, never by a request:
 * it keeps the pool full, tries the hosts of a multi-host conninfo one by
 * one (starting with the one that answered last) with a connect timeout
 * each, libpq checking target_session_attrs on each, and backs off (100 ms
 * doubling to 1 s) while none answers.  A request takes an idle connection,
 * waiting at most until its deadline; it sends set_config('role', ...) and
 * its statement in one pipeline with one Sync (one implicit transaction,
 * one round trip) and reads the answer with poll() until the deadline.
 *
 * A statement that runs out of time drops its connection, and marks every
 * other connection of the pool stale (they go to the same server, which
 * may be frozen) and the pool down until the connector has made a new one;
 * a broken connection is dropped.  A write whose answer never came may
 * have committed: it is reported as in doubt (SQLSTATE 08007).
 *
 * Close to 800 lines, kept whole (as pool.c): the connector thread, the
 * connections, the deadlines and the counters share one mutex, and what
 * holds it when is easier to check in one file.
 */
#include "pool.h"
#include "shardpool.h"
#include "sqlstate.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SP_BACKOFF_MIN 100
#define SP_BACKOFF_MAX 1000
/* how often the connector looks for connections the server closed */
#define SP_PRUNE_MS 250
#define SP_MAX_HOSTS 16

typedef struct
{
	PGconn	   *conn;
	unsigned	gen;			/* the pool's generation when it was made */
	bool		in_use;
} spconn;

struct shardpool
{
	char		name[64];
	pthread_mutex_t mu;
	pthread_cond_t freed;		/* a connection became idle (requests wait on it) */
	pthread_cond_t wake;		/* the connector has something to do */
	char	   *conninfo;
	char	   *extra;
	unsigned	gen;
	spconn	   *c;
	int			size;
	int			connect_timeout_ms;
	int			answer_timeout_ms;	/* no answer in this long: the server is suspect */
	int			prefer;			/* the host to try first */
	int			backoff_ms;
	long long	next_connect;
	bool		down;
	bool		stop;
	pthread_t	thread;
	char		last_error[256];
	int			long_polls;		/* statements that wait for messages (sp_long_poll_begin) */
	long		connects,
				connect_failures,
				broken,
				timeouts,
				in_doubt;
};

/*
 * Split a comma-separated libpq host or port list (NULL or empty: none)
 * into at most SP_MAX_HOSTS parts; returns the count.
 */
static int
split_list(char *s, char **parts)
{
	int			n = 0;
	char	   *tok;

	if (!s || !*s)
		return 0;
	/* empty elements matter (a default port): split by hand */
	tok = s;
	for (;;)
	{
		char	   *comma = strchr(tok, ',');

		if (n == SP_MAX_HOSTS)
			break;
		if (comma)
			*comma = '\0';
		parts[n++] = tok;
		if (!comma)
			break;
		tok = comma + 1;
	}
	return n;
}

/* Wait for events on the connection's socket until deadline: revents, 0 at the deadline, -1 on error. */
static int
wait_socket(PGconn *c, short events, long long deadline)
{
	for (;;)
	{
		struct pollfd pfd;
		long long	left = deadline - mono_ms();
		int			r;

		if (left <= 0)
			return 0;
		pfd.fd = PQsocket(c);
		pfd.events = events;
		pfd.revents = 0;
		if (pfd.fd < 0)
			return -1;
		r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int) left);
		if (r < 0)
		{
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r > 0)
			return pfd.revents;
	}
}

/* One host: an asynchronous connection, given up at timeout_ms. */
static PGconn *
connect_host(const char *const *keys, const char *const *vals, int timeout_ms, char *err,
			 size_t errlen)
{
	PGconn	   *c = PQconnectStartParams(keys, vals, 0);
	long long	deadline = mono_ms() + timeout_ms;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	if (!c)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (PQstatus(c) == CONNECTION_BAD)
		st = PGRES_POLLING_FAILED;
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED)
	{
		int			ev = wait_socket(c, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);

		if (ev == 0)
		{
			snprintf(err, errlen, "no answer within %d ms", timeout_ms);
			PQfinish(c);
			return NULL;
		}
		if (ev < 0)
			break;
		st = PQconnectPoll(c);
	}
	if (st == PGRES_POLLING_OK && PQstatus(c) == CONNECTION_OK)
		return c;
	first_line(err, errlen, PQerrorMessage(c));
	PQfinish(c);
	return NULL;
}

/* a server's notice (a WARNING of a commit cut short): one line in the log, naming the pool */
static void
log_notice(void *arg, const char *message)
{
	char		line[400];

	first_line(line, sizeof(line), message);
	fprintf(stderr, "deliverd: %s: %s\n", (const char *) arg, line);
}

/*
 * Connect to conninfo (extra's options win over its own), one host at a
 * time from host prefer on.  Fills *used with the host that answered and
 * *nhosts with how many there are; NULL and err when none did.
 */
static PGconn *
sp_connect(const char *conninfo, const char *extra, int prefer, int default_timeout_ms,
		   int *used, int *nhosts, char *err, size_t errlen)
{
	PQconninfoOption *opts = NULL,
			   *xopts = NULL,
			   *o;
	const char *keys[160];
	const char *vals[160];
	char	   *hostlist = NULL,
			   *addrlist = NULL,
			   *portlist = NULL;
	char	   *hosts[SP_MAX_HOSTS],
			   *addrs[SP_MAX_HOSTS],
			   *ports[SP_MAX_HOSTS];
	int			nh = 0,
				na = 0,
				np = 0,
				n = 0,
				base,
				k,
				timeout_ms = default_timeout_ms;
	char	   *perr = NULL;
	const char *user_options = NULL;
	char		options[1024];
	PGconn	   *c = NULL;

	*nhosts = 1;
	opts = PQconninfoParse(conninfo, &perr);
	if (!opts)
	{
		snprintf(err, errlen, "invalid conninfo: %s", perr ? perr : "out of memory");
		PQfreemem(perr);
		return NULL;
	}
	if (extra && *extra && !(xopts = PQconninfoParse(extra, &perr)))
	{
		snprintf(err, errlen, "invalid shard_conninfo: %s", perr ? perr : "out of memory");
		PQfreemem(perr);
		PQconninfoFree(opts);
		return NULL;
	}
	/* defaults a fault must not defeat; the conninfo's own settings come later and win */
	keys[n] = "keepalives_idle", vals[n++] = "30";
	keys[n] = "keepalives_interval", vals[n++] = "10";
	keys[n] = "keepalives_count", vals[n++] = "3";
	keys[n] = "fallback_application_name", vals[n++] = "deliverd";
	for (o = opts; o->keyword && n < 120; o++)
	{
		if (!o->val)
			continue;
		if (strcmp(o->keyword, "host") == 0)
			hostlist = xstrdup(o->val);
		else if (strcmp(o->keyword, "hostaddr") == 0)
			addrlist = xstrdup(o->val);
		else if (strcmp(o->keyword, "port") == 0)
			portlist = xstrdup(o->val);
		else if (strcmp(o->keyword, "options") == 0)
			user_options = o->val;
		else
		{
			if (strcmp(o->keyword, "connect_timeout") == 0 && atoi(o->val) > 0)
				timeout_ms = atoi(o->val) * 1000;
			keys[n] = o->keyword, vals[n++] = o->val;
		}
	}
	for (o = xopts; o && o->keyword && n < 150; o++)
		if (o->val && strcmp(o->keyword, "options") == 0)
			user_options = o->val;
		else if (o->val && strcmp(o->keyword, "host") != 0 && strcmp(o->keyword, "hostaddr") != 0 &&
				 strcmp(o->keyword, "port") != 0)
			keys[n] = o->keyword, vals[n++] = o->val;

	/*
	 * The session's search_path is pinned from its start (after the
	 * conninfo's own options, so it wins): the statements name Postgres'
	 * functions without a schema and run as the caller's role, and a
	 * function of a database owner's in schema public (a json_build_object
	 * of better matching argument types, say) must never be the one they
	 * call.
	 */
	if (snprintf(options, sizeof(options), "%s%s-c search_path=pg_catalog,pg_temp",
				 user_options ? user_options : "", user_options && *user_options ? " " : "")
		>= (int) sizeof(options))
	{
		snprintf(err, errlen, "the conninfo's options are longer than %d bytes", (int) sizeof(options) - 64);
		free(hostlist);
		free(addrlist);
		free(portlist);
		PQconninfoFree(opts);
		if (xopts)
			PQconninfoFree(xopts);
		return NULL;
	}
	keys[n] = "options", vals[n++] = options;
	nh = split_list(hostlist, hosts);
	na = split_list(addrlist, addrs);
	np = split_list(portlist, ports);
	*nhosts = nh > na ? nh : na;
	if (*nhosts < 1)
		*nhosts = 1;
	base = n;
	snprintf(err, errlen, "no host to connect to");
	for (k = 0; k < *nhosts && !c; k++)
	{
		int			i = (prefer + k) % *nhosts;

		n = base;
		if (i < nh && *hosts[i])
			keys[n] = "host", vals[n++] = hosts[i];
		if (i < na && *addrs[i])
			keys[n] = "hostaddr", vals[n++] = addrs[i];
		if (np == 1 && *ports[0])
			keys[n] = "port", vals[n++] = ports[0];
		else if (i < np && *ports[i])
			keys[n] = "port", vals[n++] = ports[i];
		keys[n] = NULL, vals[n] = NULL;
		c = connect_host(keys, vals, timeout_ms, err, errlen);
		if (c)
			*used = i;
	}
	if (!c && *nhosts > 1)
	{
		char		e[200];

		snprintf(e, sizeof(e), "%s", err);
		snprintf(err, errlen, "none of %d hosts (last: %s)", *nhosts, e);
	}
	free(hostlist);
	free(addrlist);
	free(portlist);
	PQconninfoFree(opts);
	if (xopts)
		PQconninfoFree(xopts);
	if (c && (PQsetnonblocking(c, 1) != 0 || !PQenterPipelineMode(c)))
	{
		first_line(err, errlen, PQerrorMessage(c));
		PQfinish(c);
		c = NULL;
	}
	return c;
}

/* Drop the idle connections that are stale or dead (mu held); how many are left. */
static int
prune(shardpool *p)
{
	int			i,
				connected = 0;

	for (i = 0; i < p->size; i++)
	{
		spconn	   *s = &p->c[i];

		if (s->conn && !s->in_use && (s->gen != p->gen || !pg_idle_conn_alive(s->conn)))
		{
			if (s->gen == p->gen)
				p->broken++;
			PQfinish(s->conn);
			s->conn = NULL;
		}
		if (s->conn)
			connected++;
	}
	return connected;
}

static void
timedwait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long long until)
{
	struct timespec ts;

	ts.tv_sec = (time_t) (until / 1000);
	ts.tv_nsec = (long) (until % 1000) * 1000000L;
	pthread_cond_timedwait(cv, mu, &ts);
}

/* The connector: keeps the pool full, backs off while the server cannot be reached. */
static void *
connector_main(void *arg)
{
	shardpool  *p = arg;

	pthread_mutex_lock(&p->mu);
	while (!p->stop)
	{
		int			connected = prune(p);
		long long	now = mono_ms();

		if (connected < p->size && now >= p->next_connect)
		{
			char	   *ci = xstrdup(p->conninfo);
			char	   *ex = xstrdup(p->extra);
			unsigned	gen = p->gen;
			int			prefer = p->prefer,
						used = prefer,
						nhosts = 1,
						i;
			char		err[256];
			PGconn	   *nc;

			pthread_mutex_unlock(&p->mu);
			nc = sp_connect(ci, ex, prefer, p->connect_timeout_ms, &used, &nhosts, err, sizeof(err));
			free(ci);
			free(ex);
			pthread_mutex_lock(&p->mu);
			if (nc && gen == p->gen && !p->stop)
			{
				PQsetNoticeProcessor(nc, log_notice, p->name);
				if (p->down)
					fprintf(stderr, "deliverd: %s: connected (%s:%s)\n", p->name,
							PQhost(nc) ? PQhost(nc) : "?", PQport(nc) ? PQport(nc) : "?");
				for (i = 0; i < p->size && nc; i++)
					if (!p->c[i].conn && !p->c[i].in_use)
					{
						p->c[i].conn = nc;
						p->c[i].gen = p->gen;
						nc = NULL;
					}
				p->connects++;
				p->backoff_ms = 0;
				p->next_connect = 0;
				p->prefer = used;
				p->down = false;
				pthread_cond_broadcast(&p->freed);
			}
			else if (!nc)
			{
				p->connect_failures++;
				p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : SP_BACKOFF_MIN;
				if (p->backoff_ms > SP_BACKOFF_MAX)
					p->backoff_ms = SP_BACKOFF_MAX;
				p->next_connect = mono_ms() + p->backoff_ms;
				/* the next round starts with the next host */
				p->prefer = (prefer + 1) % (nhosts > 0 ? nhosts : 1);
				snprintf(p->last_error, sizeof(p->last_error), "%s", err);
				if (!p->down && prune(p) == 0)
				{
					p->down = true;
					fprintf(stderr, "deliverd: %s: unavailable: %s\n", p->name, err);
					/* requests that do not wait for a pool that is down (SP_FAST) stop waiting */
					pthread_cond_broadcast(&p->freed);
				}
			}
			if (nc)
				PQfinish(nc);
			continue;
		}
		timedwait_ms(&p->wake, &p->mu,
					 connected < p->size && p->next_connect > now && p->next_connect < now + SP_PRUNE_MS
					 ? p->next_connect : now + SP_PRUNE_MS);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

shardpool *
sp_create(const char *name, const char *conninfo, const char *extra, int size,
		  int connect_timeout_ms, int answer_timeout_ms)
{
	shardpool  *p = calloc(1, sizeof(shardpool));
	pthread_condattr_t ca;

	if (!p)
		abort();
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->conninfo = xstrdup(conninfo);
	p->extra = xstrdup(extra);
	p->size = size > 0 ? size : 1;
	p->c = calloc((size_t) p->size, sizeof(spconn));
	if (!p->c)
		abort();
	p->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : 2000;
	p->answer_timeout_ms = answer_timeout_ms > 0 ? answer_timeout_ms : 5000;
	p->gen = 1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->freed, &ca);
	pthread_cond_init(&p->wake, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&p->thread, NULL, connector_main, p) != 0)
		abort();
	return p;
}

void
sp_set_conninfo(shardpool *p, const char *conninfo)
{
	pthread_mutex_lock(&p->mu);
	if (strcmp(p->conninfo, conninfo) != 0)
	{
		free(p->conninfo);
		p->conninfo = xstrdup(conninfo);
		p->gen++;
		p->next_connect = 0;
		p->backoff_ms = 0;
		p->prefer = 0;
		pthread_cond_signal(&p->wake);
	}
	pthread_mutex_unlock(&p->mu);
}

bool
sp_available(shardpool *p)
{
	bool		up;

	pthread_mutex_lock(&p->mu);
	up = !p->down && !p->stop;
	pthread_mutex_unlock(&p->mu);
	return up;
}

/* An idle connection, waiting for one at most until deadline; NULL and out's error otherwise. */
static spconn *
acquire(shardpool *p, long long deadline, int flags, exec_result *out)
{
	char		msg[400];

	pthread_mutex_lock(&p->mu);
	for (;;)
	{
		int			i;

		for (i = 0; i < p->size; i++)
		{
			spconn	   *s = &p->c[i];

			if (s->in_use || !s->conn)
				continue;
			if (s->gen != p->gen || !pg_idle_conn_alive(s->conn))
			{
				if (s->gen == p->gen)
					p->broken++;
				PQfinish(s->conn);
				s->conn = NULL;
				pthread_cond_signal(&p->wake);
				continue;
			}
			s->in_use = true;
			pthread_mutex_unlock(&p->mu);
			return s;
		}
		if (p->stop || ((flags & SP_FAST) && p->down) || mono_ms() >= deadline)
			break;
		pthread_cond_signal(&p->wake);
		timedwait_ms(&p->freed, &p->mu, deadline);
	}
	if (p->down || p->stop)
	{
		snprintf(msg, sizeof(msg), "%s is unavailable: %s", p->name,
				 p->last_error[0] ? p->last_error : "no connection");
		pthread_mutex_unlock(&p->mu);
		exec_result_set_error(out, 503, "08001", msg, NULL,
					 "The gateway reconnects with backoff (the shard may be failing over); retry.");
	}
	else
	{
		snprintf(msg, sizeof(msg), "no connection to %s was free in time", p->name);
		pthread_mutex_unlock(&p->mu);
		exec_result_set_error(out, 503, "53300", msg, NULL, "Retry later or raise shard_pool_size.");
	}
	return NULL;
}

/* Give a connection back; a broken or stale one is closed. */
static void
release(shardpool *p, spconn *s, bool drop)
{
	PGconn	   *gone = NULL;

	pthread_mutex_lock(&p->mu);
	if (drop || s->gen != p->gen)
	{
		gone = s->conn;
		s->conn = NULL;
		pthread_cond_signal(&p->wake);
	}
	s->in_use = false;
	pthread_cond_signal(&p->freed);
	pthread_mutex_unlock(&p->mu);
	if (gone)
		PQfinish(gone);
}

/* The server stopped answering: its other connections are suspect too. */
static void
mark_timed_out(shardpool *p)
{
	pthread_mutex_lock(&p->mu);
	p->timeouts++;
	p->gen++;
	if (!p->down)
		fprintf(stderr, "deliverd: %s: a statement got no answer in time; reconnecting\n", p->name);
	p->down = true;
	snprintf(p->last_error, sizeof(p->last_error), "no answer in time");
	p->next_connect = 0;
	pthread_cond_signal(&p->wake);
	pthread_cond_broadcast(&p->freed);
	pthread_mutex_unlock(&p->mu);
}

/* The reply of a write was lost: say so (the client retries with its idempotency key). */
static void
set_in_doubt(shardpool *p, exec_result *out, const char *why)
{
	char		msg[400];

	snprintf(msg, sizeof(msg), "the outcome is unknown: %s lost the reply (%s)", p->name, why);
	out->retry_after = 1;
	exec_result_set_error(out, 503, "08007", msg,
				 "The statement was sent and may have committed before the connection was lost.",
				 "Retry with the same idempotency key: a send that committed returns its first id "
				 "and stores nothing new.");
	out->in_doubt = true;
	pthread_mutex_lock(&p->mu);
	p->in_doubt++;
	pthread_mutex_unlock(&p->mu);
}

void
sp_exec(shardpool *p, const char *role, const char *sql, int nparams,
		const char *const *params, long long deadline, int flags, exec_result *out)
{
	spconn	   *s;
	PGconn	   *c;
	int			qi = 0,
				main_q = role ? 1 : 0,
				guard = 0;
	bool		sent = false,
				definite = false,
				main_ok = false;
	char		why[300];
	long long	given;

	memset(out, 0, sizeof(*out));
	out->status = 200;
	/*
	 * A request that ran out of time before its statement (a body sent
	 * slowly, earlier parts of a batch) does not send it: a timeout then
	 * would say nothing of the server.
	 */
	if (deadline <= mono_ms())
	{
		exec_result_set_error(out, 503, "57014", "the request ran out of time before it reached the database",
					 NULL, "Retry; the gateway gives a request request_timeout seconds (plus its wait).");
		out->retry_after = 1;
		return;
	}
	s = acquire(p, deadline, flags, out);
	if (!s)
		return;
	/* how long the server gets to answer: only most of answer_timeout_ms unanswered makes it suspect */
	given = deadline - mono_ms();
	c = s->conn;
	if (role)
	{
		const char *rp[1] = {role};

		if (!PQsendQueryParams(c, "SELECT pg_catalog.set_config('role', $1, true)", 1, NULL, rp,
							   NULL, NULL, 0))
			goto broken;
	}
	if (!PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0))
		goto broken;
	sent = true;
	if (!PQpipelineSync(c))
		goto broken;
	for (;;)
	{
		int			f = PQflush(c);
		int			ev;

		if (f == 0)
			break;
		if (f < 0)
			goto broken;
		ev = wait_socket(c, POLLOUT | POLLIN, deadline);
		if (ev == 0)
			goto timed_out;
		if (ev < 0 || ((ev & POLLIN) && !PQconsumeInput(c)))
			goto broken;
	}
	for (;;)
	{
		PGresult   *r;
		ExecStatusType st;

		while (PQisBusy(c))
		{
			int			ev = wait_socket(c, POLLIN, deadline);

			if (ev == 0)
				goto timed_out;
			if (ev < 0 || !PQconsumeInput(c))
				goto broken;
		}
		r = PQgetResult(c);
		if (!r)
		{
			if (PQstatus(c) == CONNECTION_BAD || ++guard > 8)
				goto broken;
			qi++;
			continue;
		}
		st = PQresultStatus(r);
		if (st == PGRES_PIPELINE_SYNC)
		{
			PQclear(r);
			definite = true;
			break;
		}
		if (st == PGRES_FATAL_ERROR)
		{
			const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

			if (out->status == 200)
			{
				exec_result_from_pg(out, c, r);
				out->failed_query = qi;
			}
			PQclear(r);
			if (PQstatus(c) == CONNECTION_BAD)
				goto broken;
			/* the server refused the statement: its transaction cannot commit */
			if (state && qi <= main_q && !main_ok)
				definite = true;
			continue;
		}
		if (st == PGRES_PIPELINE_ABORTED)
		{
			PQclear(r);
			continue;
		}
		if (qi == main_q && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK))
		{
			main_ok = true;
			if (!out->res)
			{
				out->res = r;
				continue;
			}
		}
		PQclear(r);
	}
	/* the role itself was refused (unknown, or not granted to the gateway's user) */
	if (role && out->status != 200 && out->status != 503 && out->failed_query == 0)
		out->status = 403;
	if (out->status != 200 && out->res)
	{
		PQclear(out->res);
		out->res = NULL;
	}
	release(p, s, false);
	return;

timed_out:
	snprintf(why, sizeof(why), "no answer in time");
	if (given >= p->answer_timeout_ms / 2)
		mark_timed_out(p);
	else
	{
		pthread_mutex_lock(&p->mu);
		p->timeouts++;
		pthread_mutex_unlock(&p->mu);
	}
	if ((flags & SP_WRITE) && sent && !definite)
		set_in_doubt(p, out, why);
	else
	{
		char		msg[400];

		snprintf(msg, sizeof(msg), "%s did not answer in time", p->name);
		exec_result_set_error(out, 503, "08006", msg, NULL, "Retry: the shard may be failing over.");
	}
	if (out->res)
	{
		PQclear(out->res);
		out->res = NULL;
	}
	release(p, s, true);
	return;

broken:
	first_line(why, sizeof(why), PQerrorMessage(c));
	if (!why[0])
		snprintf(why, sizeof(why), "connection lost");
	pthread_mutex_lock(&p->mu);
	p->broken++;
	pthread_mutex_unlock(&p->mu);
	if ((flags & SP_WRITE) && sent && !definite)
		set_in_doubt(p, out, why);
	else if (out->status == 200 || !definite)
	{
		char		msg[400];

		snprintf(msg, sizeof(msg), "%s: %s", p->name, why);
		exec_result_set_error(out, 503, "08006", msg, NULL, "Retry: the shard may be failing over.");
	}
	if (out->res)
	{
		PQclear(out->res);
		out->res = NULL;
	}
	release(p, s, true);
}

bool
sp_long_poll_begin(shardpool *p)
{
	return long_poll_reserve(&p->mu, &p->long_polls, p->size);
}

void
sp_long_poll_end(shardpool *p)
{
	long_poll_release(&p->mu, &p->long_polls);
}

void
sp_get_stats(shardpool *p, shardpool_stats *st)
{
	int			i;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&p->mu);
	st->size = p->size;
	for (i = 0; i < p->size; i++)
	{
		if (p->c[i].conn)
			st->connected++;
		if (p->c[i].in_use)
			st->in_use++;
	}
	st->up = !p->down;
	st->connects = p->connects;
	st->connect_failures = p->connect_failures;
	st->broken = p->broken;
	st->timeouts = p->timeouts;
	st->in_doubt = p->in_doubt;
	st->long_polls = p->long_polls;
	st->backoff_ms = p->backoff_ms;
	pthread_mutex_unlock(&p->mu);
}

void
sp_stop(shardpool *p)
{
	int			i;

	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->wake);
	pthread_cond_broadcast(&p->freed);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	pthread_mutex_lock(&p->mu);
	for (i = 0; i < p->size; i++)
		if (p->c[i].conn && !p->c[i].in_use)
		{
			PQfinish(p->c[i].conn);
			p->c[i].conn = NULL;
		}
	pthread_mutex_unlock(&p->mu);
}
