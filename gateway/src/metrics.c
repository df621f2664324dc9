/*
 * deliverd: Prometheus metrics.  Requests are counted by route and status
 * and their latency kept in a histogram per route; /metrics adds the pool's
 * state and the queue gauges of deliver.metrics().
 */
#include "cluster.h"
#include "config.h"
#include "conns.h"
#include "metrics.h"
#include "pool.h"
#include "statements.h"
#include "stream.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

/* the histogram's buckets, in seconds, and the statuses counted apart */
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

void
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

/*
 * The queue gauges: rows of queue, group, depth, in flight, delayed, dead
 * letters, oldest age (seconds), from deliver.metrics() or, in cluster
 * mode, deliver_cluster.metrics() of every queue.
 */
static void
queue_gauges(buf_t *b, exec_result *er)
{
	buf_printf(b, "# HELP deliverd_database_up Whether the last metrics query reached Postgres.\n"
			   "# TYPE deliverd_database_up gauge\ndeliverd_database_up %d\n"
			   "# HELP deliverd_queue_metrics_up Whether the last metrics query read the queue gauges.\n"
			   "# TYPE deliverd_queue_metrics_up gauge\ndeliverd_queue_metrics_up %d\n",
			   er->status != 503 ? 1 : 0, er->status == 200 ? 1 : 0);
	if (er->status != 200 && er->status != 503)
		log_metrics_error(er);
	if (er->status == 200 && er->res)
	{
		static const char *const names[] = {"depth", "in_flight", "delayed", "dead_letters",
		"oldest_age_seconds"};
		int			col,
					row;

		for (col = 0; col < 5; col++)
		{
			buf_printf(b, "# TYPE deliver_queue_%s gauge\n", names[col]);
			for (row = 0; row < PQntuples(er->res); row++)
			{
				buf_printf(b, "deliver_queue_%s{queue=", names[col]);
				buf_prom_label(b, PQgetvalue(er->res, row, 0));
				buf_puts(b, ",consumer_group=");
				buf_prom_label(b, PQgetvalue(er->res, row, 1));
				buf_printf(b, "} %s\n",
						   PQgetisnull(er->res, row, col + 2) ? "0" : PQgetvalue(er->res, row, col + 2));
			}
		}
	}
}

/* cluster mode: the map, the shards' pools, and every queue's gauges summed over its partitions */
static const char cluster_gauges_sql[] =
"SELECT q.queue_name, m.consumer_group, sum(m.depth), sum(m.in_flight), sum(m.delayed),"
" sum(m.dead_letters), coalesce(extract(epoch FROM max(m.oldest_age)), 0)"
" FROM deliver_cluster.list_queues() q, LATERAL deliver_cluster.metrics(q.queue_name) m"
" GROUP BY 1, 2 ORDER BY 1, 2";

static void
cluster_part(buf_t *b)
{
	exec_result er;

	cluster_metrics(b);
	sp_exec(cluster_router(), cfg.metrics_role, cluster_gauges_sql, 0, NULL,
			mono_ms() + cfg.statement_timeout_ms, 0, &er);
	queue_gauges(b, &er);
	exec_result_clear(&er);
}

/*
 * GET /metrics: the request counters and histograms, the pool, and the
 * queue gauges, in the Prometheus text format.
 */
enum MHD_Result
metrics_serve(struct MHD_Connection *c, request_t *rq)
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
	buf_printf(&b,
			   "# TYPE deliverd_inflight_requests gauge\n"
			   "deliverd_inflight_requests %d\n"
			   "# TYPE deliverd_open_streams gauge\n"
			   "deliverd_open_streams %d\n"
			   "# HELP deliverd_connections_cut_total Connections cut for taking over idle_timeout to send a request or read its answer.\n"
			   "# TYPE deliverd_connections_cut_total counter\n"
			   "deliverd_connections_cut_total %ld\n",
			   http_inflight(), stream_open_count(), conns_cut_count());

	if (cluster_mode())
	{
		cluster_part(&b);
		ret = send_response(c, rq, 200, "text/plain; version=0.0.4", b.data, b.len, 0);
		buf_free(&b);
		return ret;
	}
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
			   "deliverd_pool_backoff_seconds %.3f\n",
			   ps.size, ps.connected, ps.in_use, ps.idle, ps.long_polls, ps.connects,
			   ps.connect_failures, ps.broken, ps.acquire_timeouts, ps.backoff_ms / 1000.0);

	/*
	 * Queue gauges: deliver.metrics() for every queue metrics_role (else
	 * the login role) may read metrics of.  A NOINHERIT login role (an
	 * authenticator) has no rights of its own: metrics_role names a role it
	 * may become, one in pg_monitor or with receive rights.
	 */
	pool_exec(cfg.metrics_role, S_ALL_METRICS, 0, NULL, false, &er);
	queue_gauges(&b, &er);
	exec_result_clear(&er);
	ret = send_response(c, rq, 200, "text/plain; version=0.0.4", b.data, b.len, 0);
	buf_free(&b);
	return ret;
}
