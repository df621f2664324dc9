/*
 * deliverd: an HTTP/JSON gateway to deliver.
 *
 * libmicrohttpd serves HTTP/1.1 (keep-alive) with one thread per connection:
 * a handler may block in libpq (a long poll, an SSE stream) without holding
 * up anyone else, and max_connections bounds the threads.  Every /v1 route
 * runs one prepared statement through the pool (pool.c) as the caller's
 * role (auth.c); the SQL lives in statements.h.
 */
#include "auth.h"
#include "buf.h"
#include "openapi.h"
#include "pool.h"
#include "router.h"
#include "statements.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- configuration ---- */

typedef struct
{
	char	   *listen;
	int			port;
	char	   *conninfo;
	int			pool_size;
	int			acquire_timeout_ms;
	int			max_connections;
	long		max_body;
	int			idle_timeout;		/* seconds */
	long		max_wait_ms;
	long		stream_wait_ms;
	int			shutdown_grace;		/* seconds */
	char	   *jwt_secret;
	char	   *token_file;
	char	   *anon_role;
	char	   *metrics_role;
	char	   *access_log;
	int			threads_stack_kb;
} config_t;

static config_t cfg = {
	.listen = "127.0.0.1",
	.port = 8433,
	.conninfo = "dbname=deliver",
	.pool_size = 10,
	.acquire_timeout_ms = 5000,
	.max_connections = 256,
	.max_body = 1024 * 1024 * 2,
	.idle_timeout = 60,
	.max_wait_ms = 30000,
	.stream_wait_ms = 5000,
	.shutdown_grace = 30,
	.jwt_secret = NULL,
	.token_file = NULL,
	.anon_role = NULL,
	.metrics_role = NULL,
	.access_log = "-",
	.threads_stack_kb = 512,
};

typedef enum
{
	C_STR, C_INT, C_LONG, C_MS
} ctype_t;

typedef struct
{
	const char *key;
	ctype_t		type;
	void	   *ptr;
	const char *help;
} config_key;

static const config_key config_keys[] = {
	{"listen", C_STR, &cfg.listen, "IPv4 address to listen on"},
	{"port", C_INT, &cfg.port, "HTTP port"},
	{"conninfo", C_STR, &cfg.conninfo, "libpq connection string or URI"},
	{"pool_size", C_INT, &cfg.pool_size, "Postgres connections"},
	{"acquire_timeout", C_MS, &cfg.acquire_timeout_ms, "seconds a request waits for a connection"},
	{"max_connections", C_INT, &cfg.max_connections, "HTTP connections at once"},
	{"max_body", C_LONG, &cfg.max_body, "largest request body in bytes"},
	{"idle_timeout", C_INT, &cfg.idle_timeout, "seconds of silence before a connection is closed"},
	{"max_wait", C_MS, &cfg.max_wait_ms, "longest long-poll wait in seconds"},
	{"stream_wait", C_MS, &cfg.stream_wait_ms, "seconds between SSE keep-alives"},
	{"shutdown_grace", C_INT, &cfg.shutdown_grace, "seconds in-flight requests get at SIGTERM"},
	{"jwt_secret", C_STR, &cfg.jwt_secret, "HS256 secret (32+ characters)"},
	{"token_file", C_STR, &cfg.token_file, "file of \"token role\" lines"},
	{"anon_role", C_STR, &cfg.anon_role, "role of requests without a token (none: 401)"},
	{"metrics_role", C_STR, &cfg.metrics_role, "role /metrics reads queue gauges as (none: the login role)"},
	{"access_log", C_STR, &cfg.access_log, "file for the JSON access log, - for stderr, off"},
	{NULL, 0, NULL, NULL}
};

static int
config_set(const char *key, const char *val, const char *where)
{
	const config_key *k;

	for (k = config_keys; k->key; k++)
	{
		char	   *end;
		double		d;

		if (strcmp(k->key, key) != 0)
			continue;
		switch (k->type)
		{
			case C_STR:
				*(char **) k->ptr = strdup(val);
				return 0;
			case C_INT:
			case C_LONG:
				errno = 0;
				d = (double) strtol(val, &end, 10);
				if (errno || *end || !*val || d < 0)
					break;
				if (k->type == C_INT)
					*(int *) k->ptr = (int) d;
				else
					*(long *) k->ptr = (long) d;
				return 0;
			case C_MS:
				d = strtod(val, &end);
				if (*end || !*val || d < 0 || d > 86400)
					break;
				if (k->ptr == &cfg.acquire_timeout_ms)
					*(int *) k->ptr = (int) (d * 1000);
				else
					*(long *) k->ptr = (long) (d * 1000);
				return 0;
		}
		fprintf(stderr, "deliverd: %s: bad value for %s: %s\n", where, key, val);
		return -1;
	}
	fprintf(stderr, "deliverd: %s: unknown setting %s\n", where, key);
	return -1;
}

static char *
trim(char *s)
{
	char	   *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* key = value lines; # comments; values may be quoted with '' or "" */
static int
config_file(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		line[4096];
	int			lineno = 0;

	if (!f)
	{
		fprintf(stderr, "deliverd: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f))
	{
		char	   *eq,
				   *k,
				   *v,
					where[600];
		size_t		n;

		lineno++;
		k = trim(line);
		if (!*k || *k == '#')
			continue;
		eq = strchr(k, '=');
		if (!eq)
		{
			fprintf(stderr, "deliverd: %s:%d: expected key = value\n", path, lineno);
			fclose(f);
			return -1;
		}
		*eq = '\0';
		k = trim(k);
		v = trim(eq + 1);
		n = strlen(v);
		if (n >= 2 && (v[0] == '\'' || v[0] == '"') && v[n - 1] == v[0])
		{
			v[n - 1] = '\0';
			v++;
		}
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (config_set(k, v, where) != 0)
		{
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

/* DELIVERD_<KEY> environment variables override the file */
static int
config_env(void)
{
	const config_key *k;

	for (k = config_keys; k->key; k++)
	{
		char		name[64];
		const char *v;
		int			i;

		snprintf(name, sizeof(name), "DELIVERD_%s", k->key);
		for (i = 9; name[i]; i++)
			name[i] = (char) (name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
		v = getenv(name);
		if (v && config_set(k->key, v, name) != 0)
			return -1;
	}
	return 0;
}

/* ---- metrics ---- */

static const double lat_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
1, 2.5, 5, 10, 30};
#define NBOUNDS (sizeof(lat_bounds) / sizeof(lat_bounds[0]))
static const int status_codes[] = {200, 201, 400, 401, 403, 404, 405, 409, 413, 422, 500, 503};
#define NCODES (sizeof(status_codes) / sizeof(status_codes[0]))

typedef struct
{
	long		count[NCODES + 1];	/* last: other */
	long		bucket[NBOUNDS + 1];
	double		sum;
	long		n;
} route_metrics;

static pthread_mutex_t metrics_mu = PTHREAD_MUTEX_INITIALIZER;
static route_metrics rmetrics[R__COUNT];
static atomic_int inflight;
static atomic_int open_streams;
static atomic_int shutting_down;
static FILE *access_log;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void
metrics_record(route_id r, int status, double seconds)
{
	size_t		i;
	route_metrics *m = &rmetrics[r];

	pthread_mutex_lock(&metrics_mu);
	for (i = 0; i < NCODES; i++)
		if (status_codes[i] == status)
			break;
	m->count[i]++;
	for (i = 0; i < NBOUNDS; i++)
		if (seconds <= lat_bounds[i])
			break;
	m->bucket[i]++;
	m->sum += seconds;
	m->n++;
	pthread_mutex_unlock(&metrics_mu);
}

/* ---- requests ---- */

typedef struct
{
	struct timespec start;
	route_match rm;
	buf_t		body;
	bool		too_large;
	bool		answered;
	int			status;
	size_t		bytes_out;
	char		role[ROLE_MAX_LEN + 1];
	double		exp;			/* the token's expiry (seconds since the epoch), 0: none */
	char		method[12];
	char		path[256];
	char		remote[64];
	char		sqlstate[6];
} request_t;

/* Milliseconds left until exp (seconds since the epoch); may be negative. */
static long
ms_until(double exp)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (long) floor((exp - (double) now.tv_sec - (double) now.tv_nsec / 1e9) * 1000.0);
}

static double
elapsed(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double) (now.tv_sec - since->tv_sec) + (double) (now.tv_nsec - since->tv_nsec) / 1e9;
}

/* printable ASCII only, for the log */
static void
copy_printable(char *dst, size_t cap, const char *src)
{
	size_t		i = 0;

	for (; src && *src && i + 1 < cap; src++)
	{
		unsigned char c = (unsigned char) *src;

		dst[i++] = (char) (c >= 0x20 && c < 0x7f ? c : '?');
	}
	dst[i] = '\0';
}

static void
log_access(request_t *rq, double secs)
{
	buf_t		b;
	time_t		t = time(NULL);
	struct tm	tm;
	char		ts[32];

	if (!access_log)
		return;
	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	buf_init(&b);
	buf_printf(&b, "{\"ts\":\"%s\",\"remote\":", ts);
	buf_json_str(&b, rq->remote);
	buf_puts(&b, ",\"method\":");
	buf_json_str(&b, rq->method);
	buf_puts(&b, ",\"path\":");
	buf_json_str(&b, rq->path);
	buf_printf(&b, ",\"route\":\"%s\",\"status\":%d,\"ms\":%.3f,\"bytes\":%zu,\"role\":",
			   route_names[rq->rm.id], rq->status, secs * 1000.0, rq->bytes_out);
	buf_json_str(&b, rq->role[0] ? rq->role : NULL);
	buf_puts(&b, ",\"sqlstate\":");
	buf_json_str(&b, rq->sqlstate[0] ? rq->sqlstate : NULL);
	buf_puts(&b, "}\n");
	pthread_mutex_lock(&log_mu);
	fwrite(b.data, 1, b.len, access_log);
	fflush(access_log);
	pthread_mutex_unlock(&log_mu);
	buf_free(&b);
}

static enum MHD_Result
send_response(struct MHD_Connection *c, request_t *rq, int status, const char *ctype,
			  const char *body, size_t len, int retry_after)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", ctype);
	if (retry_after > 0)
	{
		char		ra[16];

		snprintf(ra, sizeof(ra), "%d", retry_after);
		MHD_add_response_header(resp, "Retry-After", ra);
	}
	if (status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
	if (atomic_load(&shutting_down))
		MHD_add_response_header(resp, "Connection", "close");
	rq->status = status;
	rq->bytes_out = len;
	rq->answered = true;
	ret = MHD_queue_response(c, (unsigned) status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
send_json(struct MHD_Connection *c, request_t *rq, int status, const char *json)
{
	return send_response(c, rq, status, "application/json", json, strlen(json), 0);
}

static enum MHD_Result
send_error(struct MHD_Connection *c, request_t *rq, int status, const char *msg,
		   const char *detail, const char *hint, const char *sqlstate, int retry_after)
{
	buf_t		b;
	enum MHD_Result ret;
	const char *error = msg;

	buf_init(&b);
	buf_puts(&b, "{\"error\":");
	buf_json_str(&b, error);
	buf_puts(&b, ",\"detail\":");
	buf_json_str(&b, detail);
	buf_puts(&b, ",\"hint\":");
	buf_json_str(&b, hint);
	buf_puts(&b, ",\"sqlstate\":");
	buf_json_str(&b, sqlstate && *sqlstate ? sqlstate : NULL);
	buf_puts(&b, "}");
	if (sqlstate)
		snprintf(rq->sqlstate, sizeof(rq->sqlstate), "%s", sqlstate);
	ret = send_response(c, rq, status, "application/json", b.data, b.len, retry_after);
	buf_free(&b);
	return ret;
}

static enum MHD_Result
send_exec_error(struct MHD_Connection *c, request_t *rq, exec_result *r)
{
	return send_error(c, rq, r->status, r->message ? r->message : "error", r->detail, r->hint,
					  r->sqlstate, r->status == 503 ? (r->retry_after > 0 ? r->retry_after : 1) : 0);
}

static const char *
get_arg(void *ctx, const char *key)
{
	return MHD_lookup_connection_value((struct MHD_Connection *) ctx, MHD_GET_ARGUMENT_KIND, key);
}

/* ---- /metrics ---- */

/* a Prometheus label value: "..." with \\, \" and newlines escaped */
static void
buf_prom_label(buf_t *b, const char *s)
{
	buf_add(b, "\"", 1);
	for (; *s; s++)
	{
		if (*s == '\\' || *s == '"')
		{
			buf_add(b, "\\", 1);
			buf_add(b, s, 1);
		}
		else if (*s == '\n')
			buf_add(b, "\\n", 2);
		else
			buf_add(b, s, 1);
	}
	buf_add(b, "\"", 1);
}

/* a failing metrics query is a deployment error: say so, once a minute */
static void
log_metrics_error(const exec_result *er)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static time_t last;
	time_t		now = time(NULL);

	pthread_mutex_lock(&mu);
	if (now - last >= 60)
	{
		last = now;
		fprintf(stderr, "deliverd: /metrics: the queue gauges could not be read%s%s: %s\n",
				cfg.metrics_role ? " as metrics_role " : "", cfg.metrics_role ? cfg.metrics_role : "",
				er->message ? er->message : "?");
	}
	pthread_mutex_unlock(&mu);
}

static enum MHD_Result
serve_metrics(struct MHD_Connection *c, request_t *rq)
{
	buf_t		b;
	int			r;
	size_t		i;
	pool_stats	ps;
	exec_result er;
	enum MHD_Result ret;

	buf_init(&b);
	buf_puts(&b, "# HELP deliverd_requests_total HTTP requests by route and status.\n"
			 "# TYPE deliverd_requests_total counter\n");
	pthread_mutex_lock(&metrics_mu);
	for (r = 0; r < R__COUNT; r++)
		for (i = 0; i <= NCODES; i++)
			if (rmetrics[r].count[i])
			{
				if (i < NCODES)
					buf_printf(&b, "deliverd_requests_total{route=\"%s\",code=\"%d\"} %ld\n",
							   route_names[r], status_codes[i], rmetrics[r].count[i]);
				else
					buf_printf(&b, "deliverd_requests_total{route=\"%s\",code=\"other\"} %ld\n",
							   route_names[r], rmetrics[r].count[i]);
			}
	buf_puts(&b, "# HELP deliverd_request_duration_seconds Request latency by route.\n"
			 "# TYPE deliverd_request_duration_seconds histogram\n");
	for (r = 0; r < R__COUNT; r++)
	{
		long		cum = 0;

		if (!rmetrics[r].n)
			continue;
		for (i = 0; i < NBOUNDS; i++)
		{
			cum += rmetrics[r].bucket[i];
			buf_printf(&b, "deliverd_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %ld\n",
					   route_names[r], lat_bounds[i], cum);
		}
		cum += rmetrics[r].bucket[NBOUNDS];
		buf_printf(&b, "deliverd_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %ld\n",
				   route_names[r], cum);
		buf_printf(&b, "deliverd_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
				   route_names[r], rmetrics[r].sum);
		buf_printf(&b, "deliverd_request_duration_seconds_count{route=\"%s\"} %ld\n",
				   route_names[r], rmetrics[r].n);
	}
	pthread_mutex_unlock(&metrics_mu);

	pool_get_stats(&ps);
	buf_printf(&b,
			   "# HELP deliverd_pool_connections Postgres connections of the pool by state.\n"
			   "# TYPE deliverd_pool_connections gauge\n"
			   "deliverd_pool_connections{state=\"size\"} %d\n"
			   "deliverd_pool_connections{state=\"connected\"} %d\n"
			   "deliverd_pool_connections{state=\"in_use\"} %d\n"
			   "deliverd_pool_connections{state=\"idle\"} %d\n"
			   "deliverd_pool_connections{state=\"long_poll\"} %d\n"
			   "# TYPE deliverd_pool_connects_total counter\n"
			   "deliverd_pool_connects_total %ld\n"
			   "# TYPE deliverd_pool_connect_failures_total counter\n"
			   "deliverd_pool_connect_failures_total %ld\n"
			   "# TYPE deliverd_pool_broken_total counter\n"
			   "deliverd_pool_broken_total %ld\n"
			   "# TYPE deliverd_pool_acquire_timeouts_total counter\n"
			   "deliverd_pool_acquire_timeouts_total %ld\n"
			   "# TYPE deliverd_pool_backoff_seconds gauge\n"
			   "deliverd_pool_backoff_seconds %.3f\n"
			   "# TYPE deliverd_inflight_requests gauge\n"
			   "deliverd_inflight_requests %d\n"
			   "# TYPE deliverd_open_streams gauge\n"
			   "deliverd_open_streams %d\n",
			   ps.size, ps.connected, ps.in_use, ps.idle, ps.long_polls, ps.connects,
			   ps.connect_failures, ps.broken, ps.acquire_timeouts, ps.backoff_ms / 1000.0,
			   atomic_load(&inflight), atomic_load(&open_streams));

	/*
	 * Queue gauges: deliver.metrics() for every queue metrics_role (else
	 * the login role) may read metrics of.  A NOINHERIT login role (an
	 * authenticator) has no rights of its own: metrics_role names a role it
	 * may become, one in pg_monitor or with receive rights.
	 */
	pool_exec(cfg.metrics_role, S_ALL_METRICS, 0, NULL, false, &er);
	buf_printf(&b, "# HELP deliverd_database_up Whether the last metrics query reached Postgres.\n"
			   "# TYPE deliverd_database_up gauge\ndeliverd_database_up %d\n"
			   "# HELP deliverd_queue_metrics_up Whether the last metrics query read the queue gauges.\n"
			   "# TYPE deliverd_queue_metrics_up gauge\ndeliverd_queue_metrics_up %d\n",
			   er.status != 503 ? 1 : 0, er.status == 200 ? 1 : 0);
	if (er.status != 200 && er.status != 503)
		log_metrics_error(&er);
	if (er.status == 200 && er.res)
	{
		static const char *const names[] = {"depth", "in_flight", "delayed", "dead_letters",
		"oldest_age_seconds"};
		int			col,
					row;

		for (col = 0; col < 5; col++)
		{
			buf_printf(&b, "# TYPE deliver_queue_%s gauge\n", names[col]);
			for (row = 0; row < PQntuples(er.res); row++)
			{
				buf_printf(&b, "deliver_queue_%s{queue=", names[col]);
				buf_prom_label(&b, PQgetvalue(er.res, row, 0));
				buf_puts(&b, ",consumer_group=");
				buf_prom_label(&b, PQgetvalue(er.res, row, 1));
				buf_printf(&b, "} %s\n",
						   PQgetisnull(er.res, row, col + 2) ? "0" : PQgetvalue(er.res, row, col + 2));
			}
		}
	}
	exec_result_clear(&er);
	ret = send_response(c, rq, 200, "text/plain; version=0.0.4", b.data, b.len, 0);
	buf_free(&b);
	return ret;
}

/* ---- SSE stream ---- */

typedef struct
{
	char		queue[NAME_MAX_LEN + 1];
	char		group[NAME_MAX_LEN + 1];
	char		role[ROLE_MAX_LEN + 1];
	bool		has_role;
	double		exp;			/* the token's expiry, 0: none */
	bool		expired;		/* it came: receive no more */
	char		max[24];
	char		vt[40];
	bool		has_vt;
	char		last_event_id[24];
	buf_t		out;
	size_t		off;
	char	  **pending;			/* delivery ids flushed once the buffer drains */
	int			npending;
	bool		ending;
	bool		started;
} stream_t;

static void
stream_pending_add(stream_t *st, const char *delivery_id)
{
	st->pending = realloc(st->pending, sizeof(char *) * (size_t) (st->npending + 1));
	st->pending[st->npending++] = strdup(delivery_id);
}

static void
stream_pending_clear(stream_t *st)
{
	int			i;

	for (i = 0; i < st->npending; i++)
		free(st->pending[i]);
	st->npending = 0;
}

/* ack the deliveries whose events were handed to the socket; false on failure */
static bool
stream_ack_pending(stream_t *st)
{
	buf_t		body;
	exec_result er;
	int			i;
	const char *params[2];
	bool		ok;

	if (!st->npending)
		return true;
	buf_init(&body);
	buf_puts(&body, "{\"delivery_ids\":[");
	for (i = 0; i < st->npending; i++)
		buf_printf(&body, "%s\"%s\"", i ? "," : "", st->pending[i]);
	buf_puts(&body, "]}");
	params[0] = st->queue;
	params[1] = body.data;
	pool_exec(st->has_role ? st->role : NULL, S_ACK_BATCH, 2, params, false, &er);
	ok = er.status == 200;
	if (!ok)
		fprintf(stderr, "deliverd: stream on %s: ack failed: %s\n", st->queue,
				er.message ? er.message : "?");
	exec_result_clear(&er);
	buf_free(&body);
	stream_pending_clear(st);
	return ok;
}

/*
 * One receive of the stream (wait_ms long poll); appends events to st->out.
 * Returns the exec status (200 when fine); the error is left in er.  Once
 * the token has expired it receives nothing and sets st->expired; a long
 * poll waits no longer than the token lasts.
 */
static int
stream_receive(stream_t *st, long wait_ms, exec_result *er)
{
	char		wait[32];
	const char *params[5];
	int			row;

	if (st->exp > 0)
	{
		long		left = ms_until(st->exp);

		if (left <= 0)
		{
			memset(er, 0, sizeof(*er));
			er->status = 200;
			st->expired = true;
			return 200;
		}
		if (wait_ms > left)
			wait_ms = left;
	}
	snprintf(wait, sizeof(wait), "%ld milliseconds", wait_ms);
	params[0] = st->queue;
	params[1] = st->max;
	params[2] = st->has_vt ? st->vt : NULL;
	params[3] = wait;
	params[4] = st->group;
	pool_exec(st->has_role ? st->role : NULL, S_RECEIVE_ROWS, 5, params, wait_ms > 0, er);
	if (er->status != 200)
		return er->status;
	for (row = 0; er->res && row < PQntuples(er->res); row++)
	{
		const char *mid = PQgetvalue(er->res, row, 0);
		bool		has_delivery = !PQgetisnull(er->res, row, 1);

		if (has_delivery)
			stream_pending_add(st, PQgetvalue(er->res, row, 1));
		/* the client already has the event it resumes from: ack it, do not resend */
		if (st->last_event_id[0] && strcmp(mid, st->last_event_id) == 0)
			continue;
		buf_printf(&st->out, "id: %s\nevent: message\ndata: ", mid);
		buf_puts(&st->out, PQgetvalue(er->res, row, 2));
		buf_puts(&st->out, "\n\n");
	}
	return 200;
}

/*
 * Wait up to stream_wait for messages.  A long poll holds a pooled
 * connection for its wait: when all but one are taken by long polls, poll
 * without waiting every 250 ms instead, so short requests keep a connection.
 */
static int
stream_poll(stream_t *st, exec_result *er)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;)
	{
		bool		may_wait = pool_long_polls() < cfg.pool_size - 1;
		int			rc = stream_receive(st, may_wait ? cfg.stream_wait_ms : 0, er);

		if (rc != 200 || st->expired || st->out.len > 0 || may_wait || atomic_load(&shutting_down) ||
			elapsed(&t0) * 1000 >= (double) cfg.stream_wait_ms)
			return rc;
		exec_result_clear(er);
		usleep(250 * 1000);
	}
}

static ssize_t
stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	stream_t   *st = cls;
	exec_result er;
	size_t		n;

	(void) pos;
	for (;;)
	{
		if (st->off < st->out.len)
		{
			n = st->out.len - st->off;
			if (n > max)
				n = max;
			memcpy(buf, st->out.data + st->off, n);
			st->off += n;
			return (ssize_t) n;
		}
		/* everything formatted so far went to the socket: ack it */
		st->out.len = st->off = 0;
		if (!stream_ack_pending(st))
			st->ending = true;
		if (st->ending || atomic_load(&shutting_down))
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (stream_poll(st, &er) != 200)
		{
			if (!atomic_load(&shutting_down))
			{
				buf_puts(&st->out, "event: error\ndata: {\"error\":");
				buf_json_str(&st->out, er.message);
				buf_puts(&st->out, ",\"sqlstate\":");
				buf_json_str(&st->out, er.sqlstate[0] ? er.sqlstate : NULL);
				buf_puts(&st->out, "}\n\n");
			}
			st->ending = true;
			stream_pending_clear(st);
		}
		else if (st->expired)
		{
			/* what was sent before is acked above; the client reconnects with a new token */
			buf_puts(&st->out, "event: end\ndata: {\"reason\":\"token_expired\"}\n\n");
			st->ending = true;
		}
		else if (st->out.len == 0)
			buf_puts(&st->out, ": keep-alive\n\n");
		exec_result_clear(&er);
	}
}

static void
stream_free(void *cls)
{
	stream_t   *st = cls;

	/* deliveries not handed to the socket keep their lease: redelivered on expiry */
	stream_pending_clear(st);
	free(st->pending);
	buf_free(&st->out);
	free(st);
	atomic_fetch_sub(&open_streams, 1);
}

static enum MHD_Result
serve_stream(struct MHD_Connection *c, request_t *rq, const receive_params *p)
{
	stream_t   *st = calloc(1, sizeof(stream_t));
	exec_result er;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	const char *leid;

	if (!st)
		return MHD_NO;
	atomic_fetch_add(&open_streams, 1);
	snprintf(st->queue, sizeof(st->queue), "%s", rq->rm.queue);
	snprintf(st->group, sizeof(st->group), "%s", p->has_group ? p->group : "default");
	snprintf(st->role, sizeof(st->role), "%s", rq->role);
	st->has_role = rq->role[0] != '\0';
	st->exp = rq->exp;
	snprintf(st->max, sizeof(st->max), "%ld", p->max);
	st->has_vt = p->has_vt;
	snprintf(st->vt, sizeof(st->vt), "%ld milliseconds", p->vt_ms);
	leid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
	if (!leid)
		leid = get_arg(c, "last_event_id");
	if (leid)
	{
		long		v;

		if (!parse_int_range(leid, 1, 0x7fffffffffffffffL, &v))
		{
			stream_free(st);
			return send_error(c, rq, 400, "Last-Event-ID must be a message id", NULL, NULL,
							  NULL, 0);
		}
		snprintf(st->last_event_id, sizeof(st->last_event_id), "%ld", v);
	}
	buf_init(&st->out);
	buf_puts(&st->out, "retry: 1000\n\n");
	/* a first receive without waiting: errors (unknown queue, no grant) get a status */
	if (stream_receive(st, 0, &er) != 200)
	{
		ret = send_exec_error(c, rq, &er);
		exec_result_clear(&er);
		stream_free(st);
		return ret;
	}
	exec_result_clear(&er);
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, st,
											 stream_free);
	if (!resp)
	{
		stream_free(st);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/event-stream");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	rq->status = 200;
	rq->answered = true;
	ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- the /v1 routes ---- */

/*
 * The hint of a 400 for an id in a request body that is no 64-bit integer
 * (Postgres says which value; a body that is not JSON has a detail of its
 * own and keeps it).
 */
static const char *
id_hint(int stmt, const exec_result *er)
{
	if (er->hint || er->detail ||
		(strcmp(er->sqlstate, "22P02") != 0 && strcmp(er->sqlstate, "22003") != 0))
		return NULL;
	if (stmt == S_ACK_BATCH)
		return "delivery_ids are 64-bit integers: strings of digits, as the gateway sends them, "
			"or integer numbers.";
	if (stmt == S_REDRIVE)
		return "message_ids are 64-bit integers: strings of digits, as the gateway sends them, "
			"or integer numbers.";
	return NULL;
}

static enum MHD_Result
run_route(struct MHD_Connection *c, request_t *rq, int stmt, int nparams,
		  const char *const *params, int ok_status, bool long_poll, bool not_found_if_empty)
{
	exec_result er;
	enum MHD_Result ret;

	pool_exec(rq->role[0] ? rq->role : NULL, stmt, nparams, params, long_poll, &er);
	if (er.status != 200)
	{
		/* a long poll ended by shutdown is an empty answer, not an error */
		if (long_poll && atomic_load(&shutting_down) && strcmp(er.sqlstate, "57014") == 0)
		{
			exec_result_clear(&er);
			return send_json(c, rq, 200, "[]");
		}
		if (id_hint(stmt, &er))
			er.hint = strdup(id_hint(stmt, &er));
		ret = send_exec_error(c, rq, &er);
	}
	else if (!er.res || PQntuples(er.res) == 0)
	{
		if (not_found_if_empty)
		{
			char		msg[128];

			snprintf(msg, sizeof(msg), "queue \"%s\" does not exist", rq->rm.queue);
			ret = send_error(c, rq, 404, msg, NULL, NULL, "42704", 0);
		}
		else
			ret = send_json(c, rq, ok_status, "null");
	}
	else
		ret = send_json(c, rq, ok_status, PQgetvalue(er.res, 0, PQnfields(er.res) - 1));
	exec_result_clear(&er);
	return ret;
}

static const char *
body_or_null(request_t *rq)
{
	return rq->body.len ? rq->body.data : NULL;
}

static enum MHD_Result
dispatch(struct MHD_Connection *c, request_t *rq)
{
	route_match *m = &rq->rm;
	const char *p[5];
	receive_params rp;
	const char *err;
	char		max[24],
				vt[40],
				wait[40];
	long		n;

	switch (m->id)
	{
		case R_HEALTHZ:
			if (atomic_load(&shutting_down))
				return send_json(c, rq, 503, "{\"status\":\"shutting down\"}");
			return send_json(c, rq, 200, "{\"status\":\"ok\"}");
		case R_READYZ:
			{
				exec_result er;
				enum MHD_Result ret;

				if (atomic_load(&shutting_down))
					return send_error(c, rq, 503, "shutting down", NULL, NULL, NULL, 1);
				pool_exec(NULL, S_PING, 0, NULL, false, &er);
				if (er.status == 200)
					ret = send_json(c, rq, 200, "{\"status\":\"ready\"}");
				else
					ret = send_exec_error(c, rq, &er);
				exec_result_clear(&er);
				return ret;
			}
		case R_METRICS:
			return serve_metrics(c, rq);
		case R_OPENAPI:
			return send_json(c, rq, 200, openapi_json);
		case R_QUEUES_LIST:
			return run_route(c, rq, S_LIST_QUEUES, 0, NULL, 200, false, false);
		case R_QUEUE_CREATE:
			p[0] = body_or_null(rq);
			return run_route(c, rq, S_CREATE_QUEUE, 1, p, 201, false, false);
		case R_QUEUE_GET:
			p[0] = m->queue;
			return run_route(c, rq, S_GET_QUEUE, 1, p, 200, false, true);
		case R_QUEUE_DROP:
			p[0] = m->queue;
			return run_route(c, rq, S_DROP_QUEUE, 1, p, 200, false, false);
		case R_GROUPS_LIST:
			p[0] = m->queue;
			return run_route(c, rq, S_LIST_GROUPS, 1, p, 200, false, false);
		case R_GROUP_CREATE:
			p[0] = m->queue;
			p[1] = body_or_null(rq);
			return run_route(c, rq, S_CREATE_GROUP, 2, p, 201, false, false);
		case R_GROUP_DROP:
			p[0] = m->queue;
			p[1] = m->group;
			return run_route(c, rq, S_DROP_GROUP, 2, p, 200, false, false);
		case R_SEND:
		case R_SEND_BATCH:
			p[0] = m->queue;
			p[1] = body_or_null(rq);
			p[2] = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
			if (!p[1])
				return send_error(c, rq, 400, "request body required", NULL,
								  m->id == R_SEND ? "Send {\"payload\": ...}." :
								  "Send {\"messages\": [{\"payload\": ...}]}.", NULL, 0);
			return run_route(c, rq, m->id == R_SEND ? S_SEND : S_SEND_BATCH, 3, p, 201,
							 false, false);
		case R_RECEIVE:
		case R_STREAM:
			err = parse_receive_params(get_arg, c, cfg.max_wait_ms, m->id == R_STREAM ? 10 : 1, &rp);
			if (err)
				return send_error(c, rq, 400, err, NULL, NULL, NULL, 0);
			if (m->id == R_STREAM)
				return serve_stream(c, rq, &rp);
			/* keep one connection for short requests; no waiting at shutdown */
			if (atomic_load(&shutting_down) || pool_long_polls() >= cfg.pool_size - 1)
				rp.wait_ms = 0;
			/* nor past the token's expiry: nothing is handed out after it */
			if (rq->exp > 0)
			{
				long		left = ms_until(rq->exp);

				if (rp.wait_ms > left)
					rp.wait_ms = left > 0 ? left : 0;
			}
			snprintf(max, sizeof(max), "%ld", rp.max);
			snprintf(vt, sizeof(vt), "%ld milliseconds", rp.vt_ms);
			snprintf(wait, sizeof(wait), "%ld milliseconds", rp.wait_ms);
			p[0] = m->queue;
			p[1] = max;
			p[2] = rp.has_vt ? vt : NULL;
			p[3] = wait;
			p[4] = rp.has_group ? rp.group : "default";
			return run_route(c, rq, S_RECEIVE, 5, p, 200, rp.wait_ms > 0, false);
		case R_ACK:
			p[0] = m->queue;
			p[1] = m->delivery_id;
			return run_route(c, rq, S_ACK, 2, p, 200, false, false);
		case R_ACK_BATCH:
			p[0] = m->queue;
			p[1] = body_or_null(rq);
			if (!p[1])
				return send_error(c, rq, 400, "request body required", NULL,
								  "Send {\"delivery_ids\": [...]}.", NULL, 0);
			return run_route(c, rq, S_ACK_BATCH, 2, p, 200, false, false);
		case R_NACK:
		case R_EXTEND:
			p[0] = m->queue;
			p[1] = m->delivery_id;
			p[2] = body_or_null(rq);
			return run_route(c, rq, m->id == R_NACK ? S_NACK : S_EXTEND, 3, p, 200, false, false);
		case R_DEAD_LETTERS:
			{
				const char *g = get_arg(c, "group");
				const char *mx = get_arg(c, "max");

				if (g && !valid_name(g))
					return send_error(c, rq, 400, "group must be a name of 1 to 63 bytes", NULL,
									  NULL, NULL, 0);
				if (mx && !parse_int(mx, &n))
					return send_error(c, rq, 400, "max must be an integer", NULL, NULL, NULL, 0);
				snprintf(max, sizeof(max), "%ld", mx ? n : 100L);
				p[0] = m->queue;
				p[1] = g;
				p[2] = max;
				return run_route(c, rq, S_DEAD_LETTERS, 3, p, 200, false, false);
			}
		case R_REDRIVE:
			p[0] = m->queue;
			p[1] = body_or_null(rq);
			return run_route(c, rq, S_REDRIVE, 2, p, 200, false, false);
		case R_QUEUE_METRICS:
			p[0] = m->queue;
			return run_route(c, rq, S_QUEUE_METRICS, 1, p, 200, false, false);
		default:
			return send_error(c, rq, 404, "no such route", NULL, "See /openapi.json.", NULL, 0);
	}
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	request_t  *rq = *con_cls;

	(void) cls;
	(void) version;
	if (!rq)
	{
		const union MHD_ConnectionInfo *ci;
		const char *cl;

		rq = calloc(1, sizeof(request_t));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		atomic_fetch_add(&inflight, 1);
		clock_gettime(CLOCK_MONOTONIC, &rq->start);
		buf_init(&rq->body);
		copy_printable(rq->method, sizeof(rq->method), method);
		copy_printable(rq->path, sizeof(rq->path), url);
		ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *) ci->client_addr)->sin_addr,
					  rq->remote, sizeof(rq->remote));
		route_request(method, url, &rq->rm);
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		if (cl && strtoll(cl, NULL, 10) > cfg.max_body)
			return send_error(c, rq, 413, "request body too large", NULL, NULL, "54000", 0);
		return MHD_YES;
	}
	if (*upload_data_size)
	{
		if (!rq->too_large && !rq->answered)
		{
			if (rq->body.len + *upload_data_size > (size_t) cfg.max_body)
			{
				rq->too_large = true;
				buf_free(&rq->body);
			}
			else
				buf_add(&rq->body, upload_data, *upload_data_size);
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (rq->answered)
		return MHD_YES;
	if (rq->too_large)
		return send_error(c, rq, 413, "request body too large", NULL, NULL, "54000", 0);
	if (rq->rm.status == 405)
		return send_error(c, rq, 405, "method not allowed", NULL, "See /openapi.json.", NULL, 0);
	if (rq->rm.status == 400)
		return send_error(c, rq, 400, "a name in the path is too long, or a delivery id is not an integer",
						  NULL, "Names are 1 to 63 bytes; delivery ids are 64-bit integers.",
						  "42602", 0);
	if (rq->rm.status != 0)
		return send_error(c, rq, 404, "no such route", NULL, "See /openapi.json.", NULL, 0);
	if (route_needs_auth(rq->rm.id))
	{
		const char *why = NULL;

		if (auth_request(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
						 rq->role, &rq->exp, &why) != 0)
		{
			rq->role[0] = '\0';
			return send_error(c, rq, 401, why, NULL, NULL, "28000", 0);
		}
	}
	return dispatch(c, rq);
}

static void
completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	request_t  *rq = *con_cls;
	double		secs;

	(void) cls;
	(void) c;
	if (!rq)
		return;
	secs = elapsed(&rq->start);
	if (!rq->answered)
		rq->status = 499;		/* the client went away first */
	(void) toe;
	metrics_record(rq->rm.id, rq->status, secs);
	log_access(rq, secs);
	buf_free(&rq->body);
	free(rq);
	*con_cls = NULL;
	atomic_fetch_sub(&inflight, 1);
}

/*
 * Percent-decoding of the URL path and the query arguments: as
 * libmicrohttpd's own, except that %00 and %2F stay encoded.  Decoded, an
 * encoded NUL would cut a name short ("DELETE /v1/queues/hq%00" would drop
 * queue hq) and an encoded slash would add a path segment
 * ("/v1/queues/hq%2Fmessages" would be the send route); left encoded, both
 * fail the name check (400).
 */
static int
hexval(char c)
{
	return isdigit((unsigned char) c) ? c - '0' : (tolower((unsigned char) c) - 'a' + 10);
}

static size_t
unescape_url(void *cls, struct MHD_Connection *c, char *s)
{
	char	   *r = s;
	char	   *w = s;

	(void) cls;
	(void) c;
	while (*r)
	{
		if (r[0] == '%' && isxdigit((unsigned char) r[1]) && isxdigit((unsigned char) r[2]))
		{
			int			v = hexval(r[1]) * 16 + hexval(r[2]);

			if (v != 0 && v != '/')
			{
				*w++ = (char) v;
				r += 3;
				continue;
			}
		}
		*w++ = *r++;
	}
	*w = '\0';
	return (size_t) (w - s);
}

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void) cls;
	fputs("deliverd: ", stderr);
	vfprintf(stderr, fmt, ap);
}

static void
usage(void)
{
	const config_key *k;

	fprintf(stderr, "usage: deliverd [-c config-file]\n"
			"settings (file: key = value; environment: DELIVERD_KEY):\n");
	for (k = config_keys; k->key; k++)
		fprintf(stderr, "  %-16s %s\n", k->key, k->help);
}

int
main(int argc, char **argv)
{
	struct MHD_Daemon *d;
	struct sockaddr_in addr;
	sigset_t	sigs;
	int			sig;
	int			i;
	struct timespec t0;

	for (i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
		{
			if (config_file(argv[++i]) != 0)
				return 2;
		}
		else
		{
			usage();
			return strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	if (config_env() != 0)
		return 2;
	if (cfg.pool_size < 1 || cfg.port < 1 || cfg.port > 65535 || cfg.max_connections < 1)
	{
		fprintf(stderr, "deliverd: pool_size, port and max_connections must be positive\n");
		return 2;
	}
	if (auth_init(cfg.jwt_secret, cfg.token_file, cfg.anon_role) != 0)
		return 2;
	/* metrics_role none (or empty): the login role */
	if (cfg.metrics_role && (!*cfg.metrics_role || strcasecmp(cfg.metrics_role, "none") == 0))
		cfg.metrics_role = NULL;
	if (cfg.metrics_role &&
		(strlen(cfg.metrics_role) > ROLE_MAX_LEN || auth_role_reserved(cfg.metrics_role)))
	{
		fprintf(stderr, "deliverd: metrics_role %s is reserved or longer than %d bytes "
				"(none means the login role)\n", cfg.metrics_role, ROLE_MAX_LEN);
		return 2;
	}
	if (!auth_configured())
		fprintf(stderr, "deliverd: no jwt_secret, token_file or anon_role: every /v1 request gets 401\n");
	if (strcmp(cfg.access_log, "off") == 0)
		access_log = NULL;
	else if (strcmp(cfg.access_log, "-") == 0)
		access_log = stderr;
	else if (!(access_log = fopen(cfg.access_log, "a")))
	{
		fprintf(stderr, "deliverd: cannot open access_log %s: %s\n", cfg.access_log, strerror(errno));
		return 2;
	}
	if (pool_init(cfg.conninfo, cfg.pool_size, cfg.acquire_timeout_ms, statements, S__COUNT) != 0)
		return 1;

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t) cfg.port);
	if (inet_pton(AF_INET, cfg.listen, &addr.sin_addr) != 1)
	{
		fprintf(stderr, "deliverd: listen must be an IPv4 address: %s\n", cfg.listen);
		return 2;
	}

	/* signals are taken by the main thread only */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
						 MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG,
						 (uint16_t) cfg.port, NULL, NULL, handle, NULL,
						 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
						 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
						 MHD_OPTION_CONNECTION_LIMIT, (unsigned) cfg.max_connections,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) cfg.idle_timeout,
						 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 64 * 1024,
						 MHD_OPTION_THREAD_STACK_SIZE, (size_t) cfg.threads_stack_kb * 1024,
						 MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
						 MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
						 MHD_OPTION_UNESCAPE_CALLBACK, unescape_url, NULL,
						 MHD_OPTION_END);
	if (!d)
	{
		fprintf(stderr, "deliverd: cannot listen on %s:%d\n", cfg.listen, cfg.port);
		return 1;
	}
	fprintf(stderr, "deliverd: listening on %s:%d (pool %d, database \"%s\")\n", cfg.listen,
			cfg.port, cfg.pool_size, cfg.conninfo);

	sigdelset(&sigs, SIGPIPE);
	do
	{
		if (sigwait(&sigs, &sig) != 0)
			sig = SIGTERM;
	} while (sig != SIGTERM && sig != SIGINT);

	/*
	 * Graceful shutdown: stop accepting, end long polls and streams (their
	 * receive is cancelled, which frees its leases), let the other requests
	 * finish within shutdown_grace, then close.
	 */
	fprintf(stderr, "deliverd: shutting down\n");
	atomic_store(&shutting_down, 1);
	{
		MHD_socket fd = MHD_quiesce_daemon(d);

		if (fd != MHD_INVALID_SOCKET)
			close(fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (atomic_load(&inflight) > 0 && elapsed(&t0) < cfg.shutdown_grace)
	{
		pool_cancel_long_polls();
		usleep(50 * 1000);
	}
	if (atomic_load(&inflight) > 0)
		fprintf(stderr, "deliverd: %d requests still running after %d s\n",
				atomic_load(&inflight), cfg.shutdown_grace);
	MHD_stop_daemon(d);
	pool_close();
	fprintf(stderr, "deliverd: stopped\n");
	return 0;
}
