/*
 * deliverd (cluster mode): the partition map and the shards.
 *
 * The map (deliver_cluster.partition_map() of the router: each
 * partition's placements, their epoch, shard, state and the shard's
 * conninfo) is read at start, every map_refresh seconds by a thread of its
 * own, and at once when a shard answers that a partition is not there (a
 * request calls cluster_refresh).  Each version of the map is immutable and
 * reference counted: a request holds the one it started with, and a new
 * one replaces it for the requests that come after.
 *
 * Each shard has a pool (shardpool.c) made the first time the map names
 * it and kept for the life of the process (a changed conninfo replaces its
 * connections); the map points at the pools.
 */
#include "cluster.h"
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct
{
	int			partition;
	int			epoch;
	char		state;			/* 'a'ctive, 'd'raining, 'r'etired */
	shardpool  *pool;
} cplace;

struct cmap
{
	int			refs;
	unsigned	version;
	long long	loaded_at;		/* mono_ms() */
	int			nparts;
	int			nplace;
	cplace	   *pl;				/* by partition, then epoch */
	int		   *active;			/* per partition: index into pl, -1 for none */
	int		   *read;
};

typedef struct
{
	char		name[64];
	shardpool  *pool;
} shard_entry;

static pthread_mutex_t map_mu = PTHREAD_MUTEX_INITIALIZER;	/* current, refs */
static cmap *current;
static pthread_mutex_t refresh_mu = PTHREAD_MUTEX_INITIALIZER;	/* one reader of the map */
static pthread_mutex_t shards_mu = PTHREAD_MUTEX_INITIALIZER;
static shard_entry *shards;
static int	nshards;
static shardpool *router;
static pthread_t refresher;
static bool refresher_started;
static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cv;
static bool stopping;
static unsigned versions;
static long refreshes,
			refresh_failures;
static bool map_error_logged;

/* the map; an empty placement list still gives the number of partitions */
static const char map_sql[] =
"SELECT n.n, m.partition, m.epoch, m.shard, m.state, m.conninfo"
" FROM (SELECT deliver_cluster.partitions() AS n) n"
" LEFT JOIN deliver_cluster.partition_map() m ON true ORDER BY m.partition, m.epoch";

bool
cluster_mode(void)
{
	return cfg.router != NULL;
}

shardpool *
cluster_router(void)
{
	return router;
}

/* The pool of shard name (made on first sight; a new conninfo replaces its connections). */
static shardpool *
shard_pool(const char *name, const char *conninfo)
{
	shardpool  *p = NULL;
	int			i;
	char		label[80];

	pthread_mutex_lock(&shards_mu);
	for (i = 0; i < nshards; i++)
		if (strcmp(shards[i].name, name) == 0)
		{
			p = shards[i].pool;
			break;
		}
	if (!p)
	{
		shard_entry *n = realloc(shards, sizeof(shard_entry) * (size_t) (nshards + 1));

		if (!n)
			abort();
		shards = n;
		snprintf(label, sizeof(label), "%s", name);
		snprintf(shards[nshards].name, sizeof(shards[nshards].name), "%s", name);
		p = shards[nshards].pool = sp_create(label, conninfo, cfg.shard_conninfo,
											 cfg.shard_pool_size, cfg.connect_timeout_ms,
											 cfg.statement_timeout_ms);
		nshards++;
	}
	pthread_mutex_unlock(&shards_mu);
	sp_set_conninfo(p, conninfo);
	return p;
}

static void
cmap_free(cmap *m)
{
	free(m->pl);
	free(m->active);
	free(m->read);
	free(m);
}

cmap *
cmap_get(void)
{
	cmap	   *m;

	pthread_mutex_lock(&map_mu);
	m = current;
	if (m)
		m->refs++;
	pthread_mutex_unlock(&map_mu);
	return m;
}

void
cmap_put(cmap *m)
{
	bool		gone;

	if (!m)
		return;
	pthread_mutex_lock(&map_mu);
	gone = --m->refs == 0;
	pthread_mutex_unlock(&map_mu);
	if (gone)
		cmap_free(m);
}

int
cmap_partitions(const cmap *m)
{
	return m ? m->nparts : 0;
}

shardpool *
cmap_write_pool(const cmap *m, int p)
{
	if (!m || p < 0 || p >= m->nparts || m->active[p] < 0)
		return NULL;
	return m->pl[m->active[p]].pool;
}

shardpool *
cmap_read_pool(const cmap *m, int p)
{
	if (!m || p < 0 || p >= m->nparts || m->read[p] < 0)
		return NULL;
	return m->pl[m->read[p]].pool;
}

shardpool *
cmap_placement_pool(const cmap *m, int p, int epoch)
{
	int			i;

	if (!m)
		return NULL;
	for (i = 0; i < m->nplace; i++)
		if (m->pl[i].partition == p && m->pl[i].epoch == epoch)
			return m->pl[i].pool;
	return NULL;
}

/* Read the map from the router and make it the current one (refresh_mu held); 0 or -1. */
static int
load_map(long long deadline)
{
	exec_result er;
	cmap	   *m,
			   *old;
	int			rows,
				i;

	sp_exec(router, NULL, map_sql, 0, NULL, deadline, 0, &er);
	if (er.status != 200 || !er.res || PQntuples(er.res) < 1)
	{
		refresh_failures++;
		if (!map_error_logged)
			fprintf(stderr, "deliverd: the partition map could not be read from the router: %s\n",
					er.message ? er.message : "no rows");
		map_error_logged = true;
		exec_result_clear(&er);
		return -1;
	}
	rows = PQntuples(er.res);
	m = calloc(1, sizeof(cmap));
	if (!m)
		abort();
	m->nparts = atoi(PQgetvalue(er.res, 0, 0));
	if (m->nparts < 1 || m->nparts > 4096)
	{
		fprintf(stderr, "deliverd: the router says the cluster has %d partitions\n", m->nparts);
		free(m);
		exec_result_clear(&er);
		return -1;
	}
	m->pl = calloc((size_t) rows, sizeof(cplace));
	m->active = malloc(sizeof(int) * (size_t) m->nparts);
	m->read = malloc(sizeof(int) * (size_t) m->nparts);
	if (!m->pl || !m->active || !m->read)
		abort();
	for (i = 0; i < m->nparts; i++)
		m->active[i] = m->read[i] = -1;
	for (i = 0; i < rows; i++)
	{
		cplace	   *c = &m->pl[m->nplace];
		const char *state;

		if (PQgetisnull(er.res, i, 1))
			continue;
		c->partition = atoi(PQgetvalue(er.res, i, 1));
		c->epoch = atoi(PQgetvalue(er.res, i, 2));
		state = PQgetvalue(er.res, i, 4);
		c->state = state[0];
		if (c->partition < 0 || c->partition >= m->nparts)
			continue;
		c->pool = shard_pool(PQgetvalue(er.res, i, 3), PQgetvalue(er.res, i, 5));
		if (c->state == 'a')
			m->active[c->partition] = m->nplace;
		/* rows come by epoch: the first placement not retired is the oldest */
		if (c->state != 'r' && m->read[c->partition] < 0)
			m->read[c->partition] = m->nplace;
		m->nplace++;
	}
	exec_result_clear(&er);
	m->loaded_at = mono_ms();
	m->refs = 1;				/* current's */
	pthread_mutex_lock(&map_mu);
	m->version = ++versions;
	old = current;
	current = m;
	refreshes++;
	pthread_mutex_unlock(&map_mu);
	if (map_error_logged || !old)
		fprintf(stderr, "deliverd: partition map read: %d partitions, %d placements\n", m->nparts,
				m->nplace);
	map_error_logged = false;
	cmap_put(old);
	return 0;
}

cmap *
cluster_refresh(cmap *old, int min_age_ms, long long deadline)
{
	cmap	   *m;
	struct timespec until;
	long long	left = deadline - mono_ms();

	/* wait no longer than the request may for another request's reading of the map */
	clock_gettime(CLOCK_REALTIME, &until);
	if (left < 0)
		left = 0;
	until.tv_sec += (time_t) (left / 1000);
	until.tv_nsec += (long) (left % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L)
	{
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	if (pthread_mutex_timedlock(&refresh_mu, &until) == 0)
	{
		m = cmap_get();
		if (!m || mono_ms() - m->loaded_at >= min_age_ms)
		{
			long long	d = mono_ms() + cfg.statement_timeout_ms;

			load_map(d < deadline ? d : deadline);
		}
		cmap_put(m);
		pthread_mutex_unlock(&refresh_mu);
	}
	cmap_put(old);
	return cmap_get();
}

/* Read the map every map_refresh seconds. */
static void *
refresher_main(void *arg)
{
	(void) arg;
	pthread_mutex_lock(&stop_mu);
	while (!stopping)
	{
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += cfg.map_refresh_ms / 1000;
		ts.tv_nsec += (long) (cfg.map_refresh_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L)
		{
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&stop_cv, &stop_mu, &ts);
		if (stopping)
			break;
		pthread_mutex_unlock(&stop_mu);
		pthread_mutex_lock(&refresh_mu);
		load_map(mono_ms() + cfg.statement_timeout_ms);
		pthread_mutex_unlock(&refresh_mu);
		pthread_mutex_lock(&stop_mu);
	}
	pthread_mutex_unlock(&stop_mu);
	return NULL;
}

int
cluster_init(void)
{
	pthread_condattr_t ca;

	router = sp_create("router", cfg.router, NULL, cfg.pool_size, cfg.connect_timeout_ms,
					   cfg.statement_timeout_ms);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&stop_cv, &ca);
	pthread_condattr_destroy(&ca);
	/* the first map: the router's connector needs a moment */
	pthread_mutex_lock(&refresh_mu);
	if (load_map(mono_ms() + 2 * cfg.connect_timeout_ms + cfg.statement_timeout_ms) != 0)
		fprintf(stderr, "deliverd: cluster mode without a partition map yet: "
				"message routes answer 503 until it is read\n");
	pthread_mutex_unlock(&refresh_mu);
	if (pthread_create(&refresher, NULL, refresher_main, NULL) != 0)
		return -1;
	refresher_started = true;
	return 0;
}

void
cluster_shutdown(void)
{
	int			i;

	if (refresher_started)
	{
		pthread_mutex_lock(&stop_mu);
		stopping = true;
		pthread_cond_broadcast(&stop_cv);
		pthread_mutex_unlock(&stop_mu);
		pthread_join(refresher, NULL);
		refresher_started = false;
	}
	pthread_mutex_lock(&shards_mu);
	for (i = 0; i < nshards; i++)
		sp_stop(shards[i].pool);
	pthread_mutex_unlock(&shards_mu);
	if (router)
		sp_stop(router);
}

/*
 * Receive cursors: where the next receive of a queue and group starts, so
 * each partition gets its turn first.  A fixed table; when it is full the
 * queues that do not fit share one cursor.
 */
#define NCURSORS 1024
#define CURSOR_KEY (2 * 64 + 2)

typedef struct
{
	char		key[CURSOR_KEY];
	unsigned	next;
} cursor_t;

static cursor_t cursors[NCURSORS];
static unsigned spare_cursor;
static pthread_mutex_t cursor_mu = PTHREAD_MUTEX_INITIALIZER;

unsigned
cluster_cursor_next(const char *queue, const char *group)
{
	char		key[CURSOR_KEY];
	uint32_t	h = 2166136261u;
	const char *s;
	unsigned	v;
	int			i;

	snprintf(key, sizeof(key), "%s/%s", queue, group);
	for (s = key; *s; s++)
		h = (h ^ (unsigned char) *s) * 16777619u;
	pthread_mutex_lock(&cursor_mu);
	for (i = 0; i < 16; i++)
	{
		cursor_t   *c = &cursors[(h + (unsigned) i) % NCURSORS];

		if (!c->key[0])
			snprintf(c->key, sizeof(c->key), "%s", key);
		if (strcmp(c->key, key) == 0)
		{
			v = c->next++;
			pthread_mutex_unlock(&cursor_mu);
			return v;
		}
	}
	v = spare_cursor++;
	pthread_mutex_unlock(&cursor_mu);
	return v;
}

/* a Prometheus label value: the characters a shard name may have, others as _ */
static void
label(buf_t *b, const char *s)
{
	for (; *s; s++)
		buf_add(b, (*s == '"' || *s == '\\' || *s == '\n') ? "_" : s, 1);
}

static void
pool_metrics(buf_t *b, const char *name, shardpool *p)
{
	shardpool_stats st;

	sp_get_stats(p, &st);
#define ONE(metric, fmt, value) \
	do { \
		buf_puts(b, "deliverd_" metric "{shard=\""); \
		label(b, name); \
		buf_printf(b, "\"} " fmt "\n", value); \
	} while (0)
	ONE("shard_up", "%d", st.up ? 1 : 0);
	ONE("shard_connections", "%d", st.connected);
	ONE("shard_connections_in_use", "%d", st.in_use);
	ONE("shard_long_polls", "%d", st.long_polls);
	ONE("shard_connects_total", "%ld", st.connects);
	ONE("shard_connect_failures_total", "%ld", st.connect_failures);
	ONE("shard_broken_total", "%ld", st.broken);
	ONE("shard_timeouts_total", "%ld", st.timeouts);
	ONE("shard_in_doubt_total", "%ld", st.in_doubt);
#undef ONE
}

void
cluster_metrics(buf_t *b)
{
	cmap	   *m = cmap_get();
	int			i;

	buf_printf(b, "# HELP deliverd_cluster_map_version The partition map's version read (0: none yet).\n"
			   "# TYPE deliverd_cluster_map_version gauge\ndeliverd_cluster_map_version %u\n"
			   "# TYPE deliverd_cluster_map_age_seconds gauge\ndeliverd_cluster_map_age_seconds %.3f\n"
			   "# TYPE deliverd_cluster_partitions gauge\ndeliverd_cluster_partitions %d\n"
			   "# TYPE deliverd_cluster_map_reads_total counter\ndeliverd_cluster_map_reads_total %ld\n"
			   "# TYPE deliverd_cluster_map_read_failures_total counter\n"
			   "deliverd_cluster_map_read_failures_total %ld\n",
			   m ? m->version : 0, m ? (mono_ms() - m->loaded_at) / 1000.0 : 0.0,
			   cmap_partitions(m), refreshes, refresh_failures);
	cmap_put(m);
	buf_puts(b, "# HELP deliverd_shard_up Whether the gateway has connections to the shard (or the router).\n"
			 "# TYPE deliverd_shard_up gauge\n");
	pool_metrics(b, "router", router);
	pthread_mutex_lock(&shards_mu);
	for (i = 0; i < nshards; i++)
		pool_metrics(b, shards[i].name, shards[i].pool);
	pthread_mutex_unlock(&shards_mu);
}

int
cluster_shards_up(void)
{
	int			i,
				n = 0;

	pthread_mutex_lock(&shards_mu);
	for (i = 0; i < nshards; i++)
		if (sp_available(shards[i].pool))
			n++;
	pthread_mutex_unlock(&shards_mu);
	return n;
}

void
cluster_status_json(buf_t *b)
{
	cmap	   *m = cmap_get();
	int			i;

	buf_printf(b, "\"partitions\":%d,\"map_version\":%u,\"map_age_seconds\":%.3f,\"router\":\"%s\",\"shards\":{",
			   cmap_partitions(m), m ? m->version : 0, m ? (mono_ms() - m->loaded_at) / 1000.0 : 0.0,
			   sp_available(router) ? "up" : "down");
	cmap_put(m);
	pthread_mutex_lock(&shards_mu);
	for (i = 0; i < nshards; i++)
	{
		if (i)
			buf_puts(b, ",");
		buf_json_str(b, shards[i].name);
		buf_printf(b, ":\"%s\"", sp_available(shards[i].pool) ? "up" : "down");
	}
	pthread_mutex_unlock(&shards_mu);
	buf_puts(b, "}");
}
