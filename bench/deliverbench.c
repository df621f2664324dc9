/*
 * deliverbench: end-to-end load generator for deliver and two baselines.
 *
 * Systems:
 *   deliver   the deliver extension (send_batch / receive / ack_batch)
 *   textbook  a plain table queue: UPDATE ... FOR UPDATE SKIP LOCKED on
 *             receive, DELETE on ack
 *   pgq       the PgQ extension, ticked by a thread of this program
 *
 * Producers send JSON payloads carrying (producer id, sequence number, send
 * time in microseconds).  Consumers receive and acknowledge them, record the
 * send-to-receive and send-to-ack latency in log-linear histograms, and set
 * one bit per (group, producer, sequence) so that lost and duplicated
 * messages are counted exactly at the end.
 *
 * Every statement runs in autocommit mode; durability is the server's
 * (synchronous_commit as configured on the cluster).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

typedef enum
{
	SYS_DELIVER,
	SYS_TEXTBOOK,
	SYS_PGQ,
	SYS_ROUTER					/* deliver_cluster.* of a cluster's router */
} bench_system;

typedef enum
{
	G_AT_LEAST_ONCE,
	G_EXACTLY_ONCE,
	G_AT_MOST_ONCE
} bench_guarantee;

static const char *const system_names[] = {"deliver", "textbook", "pgq", "router"};
static const char *const guarantee_names[] = {"at_least_once", "exactly_once", "at_most_once"};

typedef struct
{
	bench_system system;
	bench_guarantee guarantee;
	int			producers;
	int			consumers;		/* per group */
	int			groups;
	int			batch;			/* messages per send call */
	int			recv_batch;		/* max messages per receive call */
	int			payload;		/* payload size in bytes */
	double		duration;		/* seconds of producing */
	double		rate;			/* total msgs/s, 0 = as fast as possible */
	long		max_backlog;	/* producers pause above this backlog, 0 = never */
	double		drain;			/* max seconds to drain after producing */
	double		stall;			/* drain gives up after this long without progress */
	int			poll_us;		/* textbook/pgq sleep when nothing is ready */
	int			tick_ms;		/* pgq ticker period */
	int			pgq_maint_s;	/* pgq maintenance period */
	const char *pgq_rotation;	/* pgq queue_rotation_period, NULL = default */
	double		progress;		/* seconds between progress lines, 0 = off */
	const char *dsn;
	const char *queue;
	const char *scenario;
	const char *dump_lost;		/* file to list unacked messages in, or NULL */
	bool		setup;
	int			queues;			/* queues (tables) to spread over, 0 = the system's default */
	long		backlog;		/* messages sent before consumers start */
	int			recv_wait_ms;	/* deliver's receive wait, -1 = 1 s on one queue, 0 over several */
	bool		setup_only;		/* create the queues, report the time, exit */
	const char *ack_commit;		/* deliver queue's ack_commit, NULL = its default */
} bench_options;

static bench_options opt = {
	.system = SYS_DELIVER,
	.guarantee = G_AT_LEAST_ONCE,
	.producers = 4,
	.consumers = 4,
	.groups = 1,
	.batch = 100,
	.recv_batch = 0,
	.payload = 100,
	.duration = 10,
	.rate = 0,
	.max_backlog = 100000,
	.drain = 30,
	.stall = 10,
	.poll_us = 1000,
	.tick_ms = 10,
	.pgq_maint_s = 30,
	.pgq_rotation = NULL,
	.progress = 5,
	.dsn = "",
	.queue = "bench",
	.scenario = "custom",
	.dump_lost = NULL,
	.setup = true,
	.queues = 0,
	.backlog = 0,
	.recv_wait_ms = -1,
};

/* ------------------------------------------------------------------------
 * Small utilities
 * ------------------------------------------------------------------------ */

/* Print a message and exit: the run cannot go on. */
static void
die(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	fprintf(stderr, "deliverbench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

/* Microseconds on the given clock. */
static int64_t
clock_us(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Wall-clock microseconds: the timestamps carried in payloads. */
static int64_t
realtime_us(void)
{
	return clock_us(CLOCK_REALTIME);
}

/* Monotonic microseconds: durations and schedules. */
static int64_t
mono_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

/* Sleep for a number of microseconds (no-op when not positive). */
static void
sleep_us(int64_t us)
{
	struct timespec ts;

	if (us <= 0)
		return;
	ts.tv_sec = us / 1000000;
	ts.tv_nsec = (us % 1000000) * 1000;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Allocate zeroed memory or die. */
static void *
xcalloc(size_t n, size_t size)
{
	void	   *p = calloc(n, size);

	if (p == NULL)
		die("out of memory");
	return p;
}

/* True if s is a plain (optionally schema-qualified) identifier. */
static bool
plain_identifier(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char) *s) && *s != '_' && *s != '.')
			return false;
	return true;
}

/* A growable string buffer. */
typedef struct
{
	char	   *data;
	size_t		len;
	size_t		cap;
} strbuf;

/* Make room for extra more bytes plus a terminating zero. */
static void
sb_reserve(strbuf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	while (b->len + extra + 1 > b->cap)
		b->cap = b->cap ? b->cap * 2 : 256;
	b->data = realloc(b->data, b->cap);
	if (b->data == NULL)
		die("out of memory");
}

/* Empty the buffer, keeping its memory. */
static void
sb_reset(strbuf *b)
{
	sb_reserve(b, 0);
	b->len = 0;
	b->data[0] = '\0';
}

/* Append n bytes. */
static void
sb_append(strbuf *b, const char *s, size_t n)
{
	sb_reserve(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

/* Append one character. */
static void
sb_putc(strbuf *b, char c)
{
	sb_reserve(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

/* Append formatted text. */
static void
sb_printf(strbuf *b, const char *fmt,...)
{
	va_list		ap;
	int			n;

	sb_reserve(b, 64);
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if ((size_t) n >= b->cap - b->len)
	{
		sb_reserve(b, (size_t) n);
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t) n;
}

/* Append s as one double-quoted element of a Postgres array literal. */
static void
sb_append_array_elem(strbuf *b, const char *s)
{
	sb_reserve(b, strlen(s) * 2 + 3);
	b->data[b->len++] = '"';
	for (; *s; s++)
	{
		if (*s == '"' || *s == '\\')
			b->data[b->len++] = '\\';
		b->data[b->len++] = *s;
	}
	b->data[b->len++] = '"';
	b->data[b->len] = '\0';
}

/* Make b the array literal {"e0","e1",...} of n elements; returns its text. */
static const char *
sb_array_literal(strbuf *b, char *const *elems, int n)
{
	sb_reset(b);
	sb_putc(b, '{');
	for (int i = 0; i < n; i++)
	{
		if (i)
			sb_putc(b, ',');
		sb_append_array_elem(b, elems[i]);
	}
	sb_putc(b, '}');
	return b->data;
}

/* ------------------------------------------------------------------------
 * Log-linear latency histogram (HdrHistogram-style buckets)
 *
 * Values are microseconds.  Below 2^HIST_SUB_BITS every value has its own
 * bucket; above, each power of two is split into HIST_HALF linear buckets,
 * so a bucket is never wider than 1/64 of its value (< 1.6% error).
 * HIST_EXPS powers of two cover up to 2^(HIST_SUB_BITS + HIST_EXPS - 1) us,
 * far beyond 100 s; larger values land in the last bucket.
 * ------------------------------------------------------------------------ */

#define HIST_SUB_BITS	7
#define HIST_SUB		(1 << HIST_SUB_BITS)
#define HIST_HALF		(HIST_SUB >> 1)
#define HIST_EXPS		32
#define HIST_BUCKETS	(HIST_SUB + HIST_EXPS * HIST_HALF)

typedef struct
{
	uint64_t	counts[HIST_BUCKETS];
	uint64_t	total;
	int64_t		max;
} histogram;

/* Bucket index of a value in microseconds. */
static int
hist_index(int64_t v)
{
	int			msb;
	int			e;
	int			idx;

	if (v < 0)
		v = 0;
	if (v < HIST_SUB)
		return (int) v;
	msb = 63 - __builtin_clzll((unsigned long long) v);
	e = msb - (HIST_SUB_BITS - 1);
	idx = HIST_SUB + (e - 1) * HIST_HALF + (int) ((v >> e) - HIST_HALF);
	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* A representative value (the middle) of a bucket. */
static int64_t
hist_value(int idx)
{
	int			e;
	int64_t		m;
	int64_t		lo;
	int64_t		hi;

	if (idx < HIST_SUB)
		return idx;
	e = (idx - HIST_SUB) / HIST_HALF + 1;
	m = (idx - HIST_SUB) % HIST_HALF + HIST_HALF;
	lo = m << e;
	hi = ((m + 1) << e) - 1;
	return (lo + hi) / 2;
}

/* Record one value. */
static void
hist_record(histogram *h, int64_t v)
{
	h->counts[hist_index(v)]++;
	h->total++;
	if (v > h->max)
		h->max = v;
}

/* Add src into dst. */
static void
hist_merge(histogram *dst, const histogram *src)
{
	for (int i = 0; i < HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->total += src->total;
	if (src->max > dst->max)
		dst->max = src->max;
}

/* The value at quantile q (0..1) in microseconds; the exact max for q = 1. */
static double
hist_quantile(const histogram *h, double q)
{
	uint64_t	rank;
	uint64_t	seen = 0;

	if (h->total == 0)
		return 0;
	if (q >= 1.0)
		return (double) h->max;
	rank = (uint64_t) (q * (double) h->total);
	if ((double) rank < q * (double) h->total)
		rank++;
	if (rank == 0)
		rank = 1;
	for (int i = 0; i < HIST_BUCKETS; i++)
	{
		seen += h->counts[i];
		if (seen >= rank)
		{
			int64_t		v = hist_value(i);

			return (double) (v < h->max ? v : h->max);
		}
	}
	return (double) h->max;
}

/* ------------------------------------------------------------------------
 * Lock-free sparse bitmap, one per producer (committed) and per
 * (group, producer) (acked).  Chunks are allocated on first use.
 * ------------------------------------------------------------------------ */

#define BM_CHUNK_SHIFT	20
#define BM_CHUNK_BITS	(UINT64_C(1) << BM_CHUNK_SHIFT)
#define BM_CHUNK_WORDS	(BM_CHUNK_BITS / 64)
#define BM_MAX_CHUNKS	4096

typedef struct
{
	_Atomic(_Atomic uint64_t *) chunk[BM_MAX_CHUNKS];
} bitmap;

/* The chunk holding a bit, allocated if asked to; NULL if absent. */
static _Atomic uint64_t *
bm_chunk(bitmap *b, uint64_t bit, bool create)
{
	uint64_t	ci = bit >> BM_CHUNK_SHIFT;
	_Atomic uint64_t *c;
	_Atomic uint64_t *expected = NULL;

	if (ci >= BM_MAX_CHUNKS)
		return NULL;
	c = atomic_load(&b->chunk[ci]);
	if (c != NULL || !create)
		return c;
	c = xcalloc(BM_CHUNK_WORDS, sizeof(uint64_t));
	if (!atomic_compare_exchange_strong(&b->chunk[ci], &expected, c))
	{
		free((void *) c);
		c = expected;
	}
	return c;
}

/*
 * Set a bit.  Returns 1 if it was already set, 0 if newly set, -1 if the
 * bit is out of range.
 */
static int
bitmap_set(bitmap *b, uint64_t bit)
{
	_Atomic uint64_t *c = bm_chunk(b, bit, true);
	uint64_t	mask;
	uint64_t	old;

	if (c == NULL)
		return -1;
	mask = UINT64_C(1) << (bit & 63);
	old = atomic_fetch_or(&c[(bit & (BM_CHUNK_BITS - 1)) >> 6], mask);
	return (old & mask) ? 1 : 0;
}

/*
 * Count bits set in a and not in b; when c is given, only those also set in
 * c (in_c) or not set in c (!in_c).
 */
static uint64_t
bitmap_count_diff(bitmap *a, bitmap *b, bitmap *c, bool in_c)
{
	uint64_t	n = 0;

	for (int ci = 0; ci < BM_MAX_CHUNKS; ci++)
	{
		_Atomic uint64_t *ca = atomic_load(&a->chunk[ci]);
		_Atomic uint64_t *cb = atomic_load(&b->chunk[ci]);
		_Atomic uint64_t *cc = c ? atomic_load(&c->chunk[ci]) : NULL;

		if (ca == NULL)
			continue;
		for (uint64_t w = 0; w < BM_CHUNK_WORDS; w++)
		{
			uint64_t	x = atomic_load(&ca[w]);

			if (cb != NULL)
				x &= ~atomic_load(&cb[w]);
			if (c != NULL)
			{
				uint64_t	y = cc ? atomic_load(&cc[w]) : 0;

				x &= in_c ? y : ~y;
			}
			n += (uint64_t) __builtin_popcountll(x);
		}
	}
	return n;
}

/* ------------------------------------------------------------------------
 * Shared run state
 * ------------------------------------------------------------------------ */

static atomic_bool stop_producers;
static atomic_bool stop_consumers;
static atomic_bool stop_ticker;

static _Atomic uint64_t committed_total;	/* messages whose send committed */
static _Atomic uint64_t backlog_loaded;	/* of which sent before the start (--backlog) */
static _Atomic uint64_t *acked_unique;	/* per group: first acks */
static _Atomic uint64_t dup_total;	/* acks of an already acked message */
static _Atomic uint64_t bad_payload_total;	/* payloads we could not parse */
static _Atomic uint64_t send_errors;
static _Atomic uint64_t recv_errors;
static _Atomic uint64_t ack_errors;
static _Atomic uint64_t ack_short_total;	/* acks the server did not count */
static _Atomic uint64_t ticks_total;
static _Atomic uint64_t ticker_errors;

static bitmap **committed_bm;	/* [producer] */
static bitmap ***acked_bm;		/* [group][producer] */
static int64_t run_id;			/* makes idempotency keys unique per run */
static int	router_partitions;	/* SYS_ROUTER: the cluster's partitions */
static double setup_seconds;	/* creating the queues (tables) */
static double load_seconds;		/* sending the --backlog */
static uint64_t *backlog_share;	/* [producer]: its sequence numbers below this are the backlog */
static pthread_barrier_t start_barrier;

/* Log an error from a worker; only the first few of each kind are shown. */
static void
report_error(const char *what, PGconn *conn, PGresult *res, _Atomic uint64_t *counter)
{
	uint64_t	n = atomic_fetch_add(counter, 1);

	if (n < 5)
		fprintf(stderr, "deliverbench: %s failed: %s", what,
				res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	if (PQstatus(conn) == CONNECTION_BAD)
		die("%s: connection lost: %s", what, PQerrorMessage(conn));
}

/* Open a connection or die. */
static PGconn *
connect_db(const char *role)
{
	PGconn	   *conn = PQconnectdb(opt.dsn);

	if (PQstatus(conn) != CONNECTION_OK)
		die("cannot connect (%s) with \"%s\": %s", role, opt.dsn, PQerrorMessage(conn));
	return conn;
}

/* Run a statement that must succeed (setup work), or die. */
static void
exec_ok(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		die("statement failed: %s\n  %s", PQresultErrorMessage(res), sql);
	PQclear(res);
}

/* Run a query with text parameters that must succeed, or die. */
static PGresult *
exec_params_ok(PGconn *conn, const char *sql, int n, const char *const *vals)
{
	PGresult   *res = PQexecParams(conn, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		die("statement failed: %s\n  %s", PQresultErrorMessage(res), sql);
	return res;
}

/* Prepare a named statement or die. */
static void
prepare_ok(PGconn *conn, const char *name, const char *sql)
{
	PGresult   *res = PQprepare(conn, name, sql, 0, NULL);

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die("prepare %s failed: %s\n  %s", name, PQresultErrorMessage(res), sql);
	PQclear(res);
}

/*
 * Queues (tables) of the run: --queues, or by default one (PgQ: one per
 * consumer, its natural shape).
 */
static int
nqueues(void)
{
	if (opt.queues > 0)
		return opt.queues;
	return opt.system == SYS_PGQ ? opt.consumers : 1;
}

/*
 * Name of queue (table) i: --queue itself when deliver or the textbook
 * queue runs on a single one, else <queue>_<i>.
 */
static void
queue_name(char *buf, size_t len, int i)
{
	if (opt.system != SYS_PGQ && nqueues() == 1)
		snprintf(buf, len, "%s", opt.queue);
	else
		snprintf(buf, len, "%s_%d", opt.queue, i);
}

/* The queue a producer's next send call goes to: round-robin, starts spread. */
static int
producer_queue(int id, uint64_t calls)
{
	int			nq = nqueues();

	return (int) ((calls + (uint64_t) id * (uint64_t) nq / (uint64_t) opt.producers) % (uint64_t) nq);
}

/* Name of consumer group g: "default" for the first, then g1, g2, ... */
static void
group_name(char *buf, size_t len, int g)
{
	if (g == 0)
		snprintf(buf, len, "default");
	else
		snprintf(buf, len, "g%d", g);
}

/* ------------------------------------------------------------------------
 * Setup: a fresh queue (or table) per run
 * ------------------------------------------------------------------------ */

/* Drop every deliver queue of a previous run: --queue and <queue>_<n>. */
static void
drop_deliver_queues(PGconn *conn)
{
	const char *p1[1] = {opt.queue};
	PGresult   *res;

	res = exec_params_ok(conn,
						 "SELECT queue_name FROM deliver.queue WHERE queue_name = $1 "
						 "OR queue_name ~ ('^' || $1 || '_[0-9]+$')", 1, p1);
	for (int i = 0; i < PQntuples(res); i++)
	{
		const char *p[1] = {PQgetvalue(res, i, 0)};

		PQclear(exec_params_ok(conn, "SELECT deliver.drop_queue($1)", 1, p));
	}
	PQclear(res);
}

/* Print a setup progress line on stderr now and then (many queues). */
static void
setup_progress(int done, int total, int64_t t0)
{
	if (total >= 1000 && (done + 1) % 1000 == 0)
		fprintf(stderr, "deliverbench: setup: %d of %d queues, %.1f s\n",
				done + 1, total, (double) (mono_us() - t0) / 1e6);
}

/* Create the queues and consumer groups of the chosen system. */
static void
setup_system(PGconn *conn)
{
	char		sql[1024];
	char		name[128];
	char		gname[64];
	PGresult   *res;
	int			nq = nqueues();
	int64_t		t0 = mono_us();

	switch (opt.system)
	{
		case SYS_DELIVER:
			drop_deliver_queues(conn);
			for (int q = 0; q < nq; q++)
			{
				const char *p2[2] = {name, guarantee_names[opt.guarantee]};

				queue_name(name, sizeof(name), q);
				PQclear(exec_params_ok(conn, "SELECT deliver.create_queue($1, $2)", 2, p2));
				if (opt.ack_commit)
				{
					const char *pa[2] = {name, opt.ack_commit};

					PQclear(exec_params_ok(conn,
										   "SELECT deliver.alter_queue($1, ack_commit => $2)", 2, pa));
				}
				for (int g = 1; g < opt.groups; g++)
				{
					const char *p3[2] = {name, gname};

					group_name(gname, sizeof(gname), g);
					PQclear(exec_params_ok(conn,
										   "SELECT deliver.create_consumer_group($1, $2, 'latest')",
										   2, p3));
				}
				setup_progress(q, nq, t0);
			}
			break;
		case SYS_ROUTER:
			{
				const char *p1[1] = {opt.queue};
				const char *p2[2] = {opt.queue, guarantee_names[opt.guarantee]};

				res = exec_params_ok(conn,
									 "SELECT 1 FROM deliver_cluster.queue WHERE queue_name = $1", 1, p1);
				if (PQntuples(res) > 0)
					PQclear(exec_params_ok(conn, "SELECT deliver_cluster.drop_queue($1)", 1, p1));
				PQclear(res);
				PQclear(exec_params_ok(conn, "SELECT deliver_cluster.create_queue($1, $2)", 2, p2));
				res = exec_params_ok(conn, "SELECT deliver_cluster.partitions()", 0, NULL);
				router_partitions = atoi(PQgetvalue(res, 0, 0));
				PQclear(res);
				if (router_partitions < 1)
					die("the router has no partitions");
				if (opt.groups > 1)
					die("--system router measures one consumer group");
				break;
			}
		case SYS_TEXTBOOK:
			for (int q = 0; q < nq; q++)
			{
				queue_name(name, sizeof(name), q);
				snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS public.%s", name);
				exec_ok(conn, sql);
				snprintf(sql, sizeof(sql),
						 "CREATE TABLE public.%s (id bigserial PRIMARY KEY, "
						 "vt timestamptz NOT NULL DEFAULT now(), payload jsonb NOT NULL)",
						 name);
				exec_ok(conn, sql);
				setup_progress(q, nq, t0);
			}
			break;
		case SYS_PGQ:
			/* drop every queue of a previous run with this prefix */
			{
				const char *p1[1] = {opt.queue};

				res = exec_params_ok(conn,
									 "SELECT queue_name FROM pgq.queue "
									 "WHERE queue_name ~ ('^' || $1 || '_[0-9]+$')", 1, p1);
				for (int i = 0; i < PQntuples(res); i++)
				{
					const char *p[1] = {PQgetvalue(res, i, 0)};

					PQclear(exec_params_ok(conn, "SELECT pgq.drop_queue($1, true)", 1, p));
				}
				PQclear(res);
			}
			for (int q = 0; q < nq; q++)
			{
				const char *p1[1] = {name};

				queue_name(name, sizeof(name), q);
				PQclear(exec_params_ok(conn, "SELECT pgq.create_queue($1)", 1, p1));
				/* tick whenever called and there are new events */
				PQclear(exec_params_ok(conn,
									   "SELECT pgq.set_queue_config($1, 'ticker_max_lag', '0')",
									   1, p1));
				if (opt.pgq_rotation)
				{
					const char *p2[2] = {name, opt.pgq_rotation};

					PQclear(exec_params_ok(conn,
										   "SELECT pgq.set_queue_config($1, 'rotation_period', $2)",
										   2, p2));
				}
				for (int g = 0; g < opt.groups; g++)
				{
					const char *p2[2] = {name, gname};

					snprintf(gname, sizeof(gname), "c%d", g);
					PQclear(exec_params_ok(conn, "SELECT pgq.register_consumer($1, $2)", 2, p2));
				}
				setup_progress(q, nq, t0);
			}
			/* a first tick so that consumers start from a known position */
			exec_ok(conn, "SELECT pgq.ticker()");
			break;
	}
	setup_seconds = (double) (mono_us() - t0) / 1e6;
}

/* ------------------------------------------------------------------------
 * Producers
 * ------------------------------------------------------------------------ */

typedef struct
{
	int			id;
	pthread_t	thread;
	PGconn	   *conn;
	uint64_t	seq;			/* next sequence number */
	uint64_t	calls;
	char	  **payloads;		/* batch buffers */
	char	  **keys;			/* idempotency keys (exactly_once) */
	strbuf		arr;			/* array literal of payloads */
	strbuf		karr;			/* array literal of keys */
	strbuf		sql;			/* unprepared statements */
} producer;

/*
 * Write one payload: {"p":P,"s":S,"t":T,"pad":"xxx..."} padded with 'x' so
 * that the JSON text is opt.payload bytes long (or the minimum if smaller).
 */
static void
build_payload(char *buf, int p, uint64_t seq, int64_t t)
{
	int			n = sprintf(buf, "{\"p\":%d,\"s\":%" PRIu64 ",\"t\":%" PRId64 ",\"pad\":\"",
							p, seq, t);
	int			pad = opt.payload - n - 2;

	if (pad > 0)
	{
		memset(buf + n, 'x', (size_t) pad);
		n += pad;
	}
	buf[n++] = '"';
	buf[n++] = '}';
	buf[n] = '\0';
}

/* The textbook queue's INSERT of opt.batch messages into table name. */
static void
textbook_insert_sql(strbuf *sql, const char *name)
{
	sb_reset(sql);
	sb_printf(sql, "INSERT INTO public.%s (payload) VALUES ", name);
	for (int i = 0; i < opt.batch; i++)
		sb_printf(sql, "%s($%d::jsonb)", i ? ", " : "", i + 1);
}

/* The statement that sends a whole array of messages ($1 queue, $2 array). */
static void
load_sql(strbuf *sql, const char *name)
{
	sb_reset(sql);
	switch (opt.system)
	{
		case SYS_DELIVER:
		case SYS_ROUTER:
			sb_printf(sql, "SELECT %s.send_batch($1, $2::jsonb[])",
					  opt.system == SYS_ROUTER ? "deliver_cluster" : "deliver");
			break;
		case SYS_TEXTBOOK:
			/* $1 is unused: the table is in the text */
			sb_printf(sql, "INSERT INTO public.%s (payload) SELECT x FROM "
					  "unnest($2::jsonb[]) AS x WHERE $1::text IS NOT NULL", name);
			break;
		case SYS_PGQ:
			sb_printf(sql, "SELECT count(pgq.insert_event($1, 'm', x)) "
					  "FROM unnest($2::text[]) AS x");
			break;
	}
}

/* Prepare the producer's send statement for the chosen system. */
static void
producer_prepare(producer *pr)
{
	strbuf		sql = {0};
	char		name[128];

	if (opt.system != SYS_TEXTBOOK || nqueues() == 1)
	{
		queue_name(name, sizeof(name), 0);
		load_sql(&sql, name);
		prepare_ok(pr->conn, "load", sql.data);
		sb_reset(&sql);
	}
	/* the textbook queue over several tables: statements sent unprepared */
	if (opt.system == SYS_TEXTBOOK && nqueues() > 1)
	{
		free(sql.data);
		return;
	}

	switch (opt.system)
	{
		case SYS_DELIVER:
		case SYS_ROUTER:
			{
				const char *schema = opt.system == SYS_ROUTER ? "deliver_cluster" : "deliver";

				if (opt.batch == 1)
					sb_printf(&sql, opt.guarantee == G_EXACTLY_ONCE
							  ? "SELECT %s.send($1, $2::jsonb, idempotency_key => $3)"
							  : "SELECT %s.send($1, $2::jsonb)", schema);
				else
					sb_printf(&sql, opt.guarantee == G_EXACTLY_ONCE
							  ? "SELECT %s.send_batch($1, $2::jsonb[], idempotency_keys => $3::text[])"
							  : "SELECT %s.send_batch($1, $2::jsonb[])", schema);
				break;
			}
		case SYS_TEXTBOOK:
			textbook_insert_sql(&sql, opt.queue);
			break;
		case SYS_PGQ:
			if (opt.batch == 1)
				sb_printf(&sql, "SELECT pgq.insert_event($1, 'm', $2)");
			else
				sb_printf(&sql, "SELECT count(pgq.insert_event($1, 'm', x)) "
						  "FROM unnest($2::text[]) AS x");
			break;
	}
	prepare_ok(pr->conn, "send", sql.data);
	free(sql.data);
}

/* Send one batch of opt.batch messages stamped with time t; true if committed. */
static bool
producer_send(producer *pr, int64_t t)
{
	const char *params[3];
	const char **vals = params;
	int			nparams = 0;
	char		qname[128];
	PGresult   *res;
	ExecStatusType want = PGRES_TUPLES_OK;
	bool		ok;

	for (int i = 0; i < opt.batch; i++)
		build_payload(pr->payloads[i], pr->id, pr->seq + (uint64_t) i, t);
	queue_name(qname, sizeof(qname), producer_queue(pr->id, pr->calls));

	switch (opt.system)
	{
		case SYS_DELIVER:
		case SYS_ROUTER:
			params[nparams++] = qname;
			if (opt.batch == 1)
				params[nparams++] = pr->payloads[0];
			else
				params[nparams++] = sb_array_literal(&pr->arr, pr->payloads, opt.batch);
			if (opt.guarantee == G_EXACTLY_ONCE)
			{
				for (int i = 0; i < opt.batch; i++)
					sprintf(pr->keys[i], "%" PRId64 "-%d-%" PRIu64,
							run_id, pr->id, pr->seq + (uint64_t) i);
				if (opt.batch == 1)
					params[nparams++] = pr->keys[0];
				else
					params[nparams++] = sb_array_literal(&pr->karr, pr->keys, opt.batch);
			}
			break;
		case SYS_TEXTBOOK:
			vals = (const char **) pr->payloads;
			nparams = opt.batch;
			want = PGRES_COMMAND_OK;
			break;
		case SYS_PGQ:
			/* spread over the queues (by default one per consumer) */
			params[nparams++] = qname;
			if (opt.batch == 1)
				params[nparams++] = pr->payloads[0];
			else
				params[nparams++] = sb_array_literal(&pr->arr, pr->payloads, opt.batch);
			break;
	}

	if (opt.system == SYS_TEXTBOOK && nqueues() > 1)
	{
		textbook_insert_sql(&pr->sql, qname);
		res = PQexecParams(pr->conn, pr->sql.data, nparams, NULL, vals, NULL, NULL, 0);
	}
	else
		res = PQexecPrepared(pr->conn, "send", nparams, vals, NULL, NULL, 0);
	ok = PQresultStatus(res) == want;
	if (!ok)
		report_error("send", pr->conn, res, &send_errors);
	PQclear(res);
	pr->calls++;
	return ok;
}

/* Messages committed but not yet acked by the slowest group. */
static uint64_t
current_backlog(void)
{
	uint64_t	sent = atomic_load(&committed_total);
	uint64_t	min_acked = UINT64_MAX;

	for (int g = 0; g < opt.groups; g++)
	{
		uint64_t	a = atomic_load(&acked_unique[g]);

		if (a < min_acked)
			min_acked = a;
	}
	return sent > min_acked ? sent - min_acked : 0;
}

#define LOAD_CHUNK 1000

/*
 * Send this producer's share of --backlog before the run starts, in arrays
 * of LOAD_CHUNK messages spread over the queues like the sends; they carry
 * their send time and are tracked like every other message.
 */
static void
producer_load(producer *pr)
{
	long		share = (long) backlog_share[pr->id];
	char	  **bufs = xcalloc(LOAD_CHUNK, sizeof(char *));
	strbuf		arr = {0};
	char		qname[128];

	for (int i = 0; i < LOAD_CHUNK; i++)
		bufs[i] = xcalloc((size_t) opt.payload + 128, 1);
	while (share > 0)
	{
		int			n = share < LOAD_CHUNK ? (int) share : LOAD_CHUNK;
		int64_t		t = realtime_us();
		const char *params[2];
		PGresult   *res;

		for (int i = 0; i < n; i++)
			build_payload(bufs[i], pr->id, pr->seq + (uint64_t) i, t);
		queue_name(qname, sizeof(qname), producer_queue(pr->id, pr->calls));
		params[0] = qname;
		params[1] = sb_array_literal(&arr, bufs, n);
		if (opt.system == SYS_TEXTBOOK && nqueues() > 1)
		{
			load_sql(&pr->sql, qname);
			res = PQexecParams(pr->conn, pr->sql.data, 2, NULL, params, NULL, NULL, 0);
		}
		else
			res = PQexecPrepared(pr->conn, "load", 2, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
			die("loading the backlog failed: %s", PQresultErrorMessage(res));
		PQclear(res);
		for (int i = 0; i < n; i++)
			bitmap_set(committed_bm[pr->id], pr->seq + (uint64_t) i);
		atomic_fetch_add(&committed_total, (uint64_t) n);
		atomic_fetch_add(&backlog_loaded, (uint64_t) n);
		pr->seq += (uint64_t) n;
		pr->calls++;
		share -= n;
	}
	for (int i = 0; i < LOAD_CHUNK; i++)
		free(bufs[i]);
	free(bufs);
	free(arr.data);
}

/*
 * Producer thread: send batches until told to stop, as fast as possible or
 * paced to its share of opt.rate.  In paced mode the payload carries the
 * scheduled send time, so a producer that falls behind does not hide the
 * delay from the latency figures.
 */
static void *
producer_main(void *arg)
{
	producer   *pr = arg;
	int64_t		interval = 0;
	int64_t		next;
	int64_t		mono0;
	int64_t		real0;

	if (opt.backlog > 0)
		producer_load(pr);
	pthread_barrier_wait(&start_barrier);
	mono0 = mono_us();
	real0 = realtime_us();
	if (opt.rate > 0)
		interval = (int64_t) ((double) opt.batch * opt.producers * 1e6 / opt.rate);
	/* stagger producers over one interval */
	next = mono0 + interval * pr->id / opt.producers;

	while (!atomic_load(&stop_producers))
	{
		int64_t		t;

		if (opt.max_backlog > 0)
		{
			while ((long) current_backlog() > opt.max_backlog &&
				   !atomic_load(&stop_producers))
				sleep_us(200);
			if (atomic_load(&stop_producers))
				break;
		}
		if (interval > 0)
		{
			int64_t		now = mono_us();

			if (now < next)
			{
				/* sleep in short steps so a stop is noticed */
				sleep_us(next - now < 50000 ? next - now : 50000);
				continue;
			}
			t = real0 + (next - mono0);
			next += interval;
		}
		else
			t = realtime_us();

		if (producer_send(pr, t))
		{
			for (int i = 0; i < opt.batch; i++)
				bitmap_set(committed_bm[pr->id], pr->seq + (uint64_t) i);
			atomic_fetch_add(&committed_total, (uint64_t) opt.batch);
		}
		pr->seq += (uint64_t) opt.batch;
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * Consumers
 * ------------------------------------------------------------------------ */

typedef struct
{
	int			id;
	int			group;
	int			member;			/* index within the group */
	pthread_t	thread;
	PGconn	   *conn;
	histogram	recv_h;			/* send -> receive */
	histogram	ack_h;			/* send -> ack committed */
	histogram	win_h;			/* send -> ack since the last progress line */
	pthread_mutex_t win_lock;	/* guards win_h against the progress reader */
	uint64_t	received;
	uint64_t	empty_polls;
	int			n;				/* messages in the current batch */
	int			cap;
	int		   *bp;				/* producer id per message */
	uint64_t   *bs;				/* sequence per message */
	int64_t    *bt;				/* send time per message */
	strbuf		ids;			/* array literal of ids to ack */
	int			cursor;			/* SYS_ROUTER: the partition to try next */
	int			qcur;			/* --queues: index of the next of its queues */
	int			qown;			/* --queues: how many queues it reads */
	int			empties;		/* empty receives in a row */
	histogram	call_h;			/* receive call time, calls that got messages */
	strbuf		sql;			/* unprepared statements */
} consumer;

/*
 * The queue a consumer reads next. Queue q belongs to member q % consumers
 * of each group; with fewer queues than consumers, member m reads queue
 * m % queues.
 */
static int
consumer_queue(consumer *c)
{
	int			nq = nqueues();

	if (nq <= opt.consumers)
		return c->member % nq;
	return c->member + c->qcur * opt.consumers;
}

/*
 * After a receive of n messages: go on to the consumer's next queue; when
 * a whole round over its queues found nothing, sleep (wait_us, unless the
 * receive itself waited).
 */
static void
consumer_next(consumer *c, int n, int wait_us)
{
	if (c->qown > 1)
		c->qcur = (c->qcur + 1) % c->qown;
	if (n > 0)
	{
		c->empties = 0;
		return;
	}
	c->empty_polls++;
	if (++c->empties >= c->qown)
	{
		c->empties = 0;
		sleep_us(wait_us);
	}
}

/* Read "key": <integer> from a JSON text; false if absent. */
static bool
json_int(const char *s, const char *key, int64_t *out)
{
	const char *x = strstr(s, key);
	char	   *end;

	if (x == NULL)
		return false;
	x += strlen(key);
	errno = 0;
	*out = strtoll(x, &end, 10);
	return end != x && errno == 0;
}

/* Parse a payload and remember it in the consumer's current batch. */
static void
consumer_take(consumer *c, const char *payload, int64_t now)
{
	int64_t		p;
	int64_t		s;
	int64_t		t;

	if (!json_int(payload, "\"p\":", &p) || !json_int(payload, "\"s\":", &s) ||
		!json_int(payload, "\"t\":", &t) || p < 0 || p >= opt.producers || s < 0)
	{
		if (atomic_fetch_add(&bad_payload_total, 1) < 5)
			fprintf(stderr, "deliverbench: unexpected payload: %.120s\n", payload);
		return;
	}
	if (c->n == c->cap)
	{
		c->cap = c->cap ? c->cap * 2 : 256;
		c->bp = realloc(c->bp, sizeof(int) * (size_t) c->cap);
		c->bs = realloc(c->bs, sizeof(uint64_t) * (size_t) c->cap);
		c->bt = realloc(c->bt, sizeof(int64_t) * (size_t) c->cap);
		if (!c->bp || !c->bs || !c->bt)
			die("out of memory");
	}
	c->bp[c->n] = (int) p;
	c->bs[c->n] = (uint64_t) s;
	c->bt[c->n] = t;
	c->n++;
	c->received++;
	/* the backlog's waiting time is not the system's latency */
	if ((uint64_t) s >= backlog_share[p])
		hist_record(&c->recv_h, now - t);
}

/* The current batch is durably acked: record latencies and set the bits. */
static void
consumer_acked(consumer *c)
{
	int64_t		now = realtime_us();
	uint64_t	fresh = 0;

	pthread_mutex_lock(&c->win_lock);
	for (int i = 0; i < c->n; i++)
	{
		int			r = bitmap_set(acked_bm[c->group][c->bp[i]], c->bs[i]);

		if (r == 0)
		{
			fresh++;
			if (c->bs[i] >= backlog_share[c->bp[i]])
			{
				hist_record(&c->ack_h, now - c->bt[i]);
				hist_record(&c->win_h, now - c->bt[i]);
			}
		}
		else if (r > 0)
		{
			if (atomic_fetch_add(&dup_total, 1) < 10)
				fprintf(stderr, "deliverbench: DUPLICATE in group %d: producer %d seq %" PRIu64 "\n",
						c->group, c->bp[i], c->bs[i]);
		}
		else
			atomic_fetch_add(&bad_payload_total, 1);
	}
	pthread_mutex_unlock(&c->win_lock);
	atomic_fetch_add(&acked_unique[c->group], fresh);
	c->n = 0;
}

/*
 * How long deliver's receive waits for a message (ms): --recv-wait, by
 * default a long poll of 1 s on one queue and none over several.
 */
static int
recv_wait_ms(void)
{
	if (opt.recv_wait_ms >= 0)
		return opt.recv_wait_ms;
	return nqueues() == 1 ? 1000 : 0;
}

/* Prepare the consumer's statements for the chosen system. */
static void
consumer_prepare(consumer *c)
{
	char		sql[1024];

	switch (opt.system)
	{
		case SYS_DELIVER:
			if (recv_wait_ms() == 1000)
				prepare_ok(c->conn, "recv",
						   "SELECT message_id, delivery_id, payload "
						   "FROM deliver.receive($1, $2, NULL, '1 second', $3)");
			else
			{
				snprintf(sql, sizeof(sql),
						 "SELECT message_id, delivery_id, payload "
						 "FROM deliver.receive($1, $2, NULL, '%d milliseconds', $3)",
						 recv_wait_ms());
				prepare_ok(c->conn, "recv", sql);
			}
			/* one message at a time: deliver.ack, as such a consumer would call it */
			if (opt.recv_batch == 1)
				prepare_ok(c->conn, "ack", "SELECT deliver.ack($1, $2::bigint)::int");
			else
				prepare_ok(c->conn, "ack", "SELECT deliver.ack_batch($1, $2::bigint[])");
			break;
		case SYS_ROUTER:
			prepare_ok(c->conn, "recv",
					   "SELECT message_id, delivery_id, payload "
					   "FROM deliver_cluster.receive($1, $2, $3)");
			prepare_ok(c->conn, "ack", "SELECT deliver_cluster.ack_batch($1, $2::text[])");
			/* its partitions are member, member + consumers, ... */
			c->cursor = c->member % router_partitions;
			break;
		case SYS_TEXTBOOK:
			/* receive is planned on every call: see bench/README.md */
			if (nqueues() > 1)
				break;			/* the ack too, over several tables */
			snprintf(sql, sizeof(sql), "DELETE FROM public.%s WHERE id = ANY($1::bigint[])",
					 opt.queue);
			prepare_ok(c->conn, "ack", sql);
			break;
		case SYS_PGQ:
			prepare_ok(c->conn, "next", "SELECT pgq.next_batch($1, $2)");
			prepare_ok(c->conn, "events", "SELECT ev_data FROM pgq.get_batch_events($1)");
			prepare_ok(c->conn, "finish", "SELECT pgq.finish_batch($1)");
			break;
	}
}

/* A failed receive call: count it, back off a little; the round got nothing. */
static int
consumer_receive_failed(consumer *c, const char *what, PGresult *res)
{
	report_error(what, c->conn, res, &recv_errors);
	PQclear(res);
	sleep_us(10000);
	return 0;
}

/*
 * Take the received rows of res (message id in column idcol, payload in
 * column paycol), gather their ids into the array literal c->ids for the
 * ack, and clear res; returns the number of rows.
 */
static int
consumer_take_rows(consumer *c, PGresult *res, int idcol, int paycol)
{
	int64_t		now = realtime_us();
	int			n = PQntuples(res);

	sb_reset(&c->ids);
	sb_putc(&c->ids, '{');
	for (int i = 0; i < n; i++)
	{
		if (i)
			sb_putc(&c->ids, ',');
		sb_append(&c->ids, PQgetvalue(res, i, idcol), (size_t) PQgetlength(res, i, idcol));
		consumer_take(c, PQgetvalue(res, i, paycol), now);
	}
	sb_putc(&c->ids, '}');
	PQclear(res);
	return n;
}

/*
 * Account the ack of n messages and clear res. The ack succeeded when res has
 * status ok; its count of acked messages is then the first value of the one
 * row (PGRES_TUPLES_OK) or the command's row count (PGRES_COMMAND_OK).
 */
static void
consumer_ack_outcome(consumer *c, PGresult *res, ExecStatusType ok, int n)
{
	if (PQresultStatus(res) != ok)
	{
		report_error("ack", c->conn, res, &ack_errors);
		c->n = 0;
	}
	else
	{
		long		acked = atol(ok == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0)
								 : PQcmdTuples(res));

		if (acked != n)
			atomic_fetch_add(&ack_short_total, (uint64_t) (n - acked));
		consumer_acked(c);
	}
	PQclear(res);
}

/* One deliver receive + ack round; returns messages received. */
static int
consumer_round_deliver(consumer *c)
{
	char		maxs[16];
	char		gname[64];
	char		qname[128];
	const char *rp[3] = {qname, maxs, gname};
	const char *ap[2];
	PGresult   *res;
	int			n;
	int64_t		t0;

	snprintf(maxs, sizeof(maxs), "%d", opt.recv_batch);
	group_name(gname, sizeof(gname), c->group);
	queue_name(qname, sizeof(qname), consumer_queue(c));
	t0 = mono_us();
	res = PQexecPrepared(c->conn, "recv", 3, rp, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return consumer_receive_failed(c, "receive", res);
	if (PQntuples(res) > 0)
		hist_record(&c->call_h, mono_us() - t0);
	n = consumer_take_rows(c, res, 1, 2);
	/* a receive that waited itself needs no sleep */
	consumer_next(c, n, recv_wait_ms() > 0 ? 0 : opt.poll_us);
	if (n == 0)
		return 0;
	if (opt.guarantee == G_AT_MOST_ONCE)
	{
		/* removed durably by receive itself: nothing to ack */
		consumer_acked(c);
		return n;
	}
	ap[0] = qname;
	ap[1] = c->ids.data;
	if (opt.recv_batch == 1)
	{
		/* deliver.ack takes the id itself: "{id}" without its braces */
		c->ids.data[c->ids.len - 1] = '\0';
		ap[1] = c->ids.data + 1;
	}
	res = PQexecPrepared(c->conn, "ack", 2, ap, NULL, NULL, 0);
	consumer_ack_outcome(c, res, PGRES_TUPLES_OK, n);
	return n;
}

/*
 * One round through a cluster's router: receive without waiting from this
 * consumer's partitions in turn (member, member + consumers, ...), from
 * the first that has messages, and ack them; sleep --poll-us when none has.
 */
static int
consumer_round_router(consumer *c)
{
	char		maxs[16];
	char		parts[16];
	const char *rp[3] = {opt.queue, parts, maxs};
	const char *ap[2];
	int			step = opt.consumers < router_partitions ? opt.consumers : router_partitions;
	int			tries = (router_partitions + step - 1) / step;
	PGresult   *res;
	int			n = 0;

	snprintf(maxs, sizeof(maxs), "%d", opt.recv_batch);
	for (int t = 0; t < tries && n == 0; t++)
	{
		snprintf(parts, sizeof(parts), "%d", c->cursor);
		c->cursor += step;
		if (c->cursor >= router_partitions)
			c->cursor = c->member % step;
		res = PQexecPrepared(c->conn, "recv", 3, rp, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			return consumer_receive_failed(c, "receive", res);
		n = consumer_take_rows(c, res, 1, 2);
	}
	if (n == 0)
	{
		c->empty_polls++;
		sleep_us(opt.poll_us);
		return 0;
	}
	if (opt.guarantee == G_AT_MOST_ONCE)
	{
		consumer_acked(c);
		return n;
	}
	ap[0] = opt.queue;
	ap[1] = c->ids.data;
	res = PQexecPrepared(c->conn, "ack", 2, ap, NULL, NULL, 0);
	consumer_ack_outcome(c, res, PGRES_TUPLES_OK, n);
	return n;
}

/* One textbook receive + delete round; returns messages received. */
static int
consumer_round_textbook(consumer *c)
{
	char		sql[512];
	char		maxs[16];
	char		qname[128];
	const char *rp[1] = {maxs};
	const char *ap[1];
	PGresult   *res;
	int			n;
	int64_t		t0;

	snprintf(maxs, sizeof(maxs), "%d", opt.recv_batch);
	queue_name(qname, sizeof(qname), consumer_queue(c));
	snprintf(sql, sizeof(sql),
			 "UPDATE public.%s SET vt = now() + interval '30 seconds' "
			 "WHERE id IN (SELECT id FROM public.%s WHERE vt <= now() ORDER BY id "
			 "LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id, payload",
			 qname, qname);
	t0 = mono_us();
	res = PQexecParams(c->conn, sql, 1, NULL, rp, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return consumer_receive_failed(c, "receive", res);
	if (PQntuples(res) > 0)
		hist_record(&c->call_h, mono_us() - t0);
	n = consumer_take_rows(c, res, 0, 1);
	consumer_next(c, n, opt.poll_us);
	if (n == 0)
		return 0;
	ap[0] = c->ids.data;
	if (nqueues() > 1)
	{
		snprintf(sql, sizeof(sql), "DELETE FROM public.%s WHERE id = ANY($1::bigint[])", qname);
		res = PQexecParams(c->conn, sql, 1, NULL, ap, NULL, NULL, 0);
	}
	else
		res = PQexecPrepared(c->conn, "ack", 1, ap, NULL, NULL, 0);
	consumer_ack_outcome(c, res, PGRES_COMMAND_OK, n);
	return n;
}

/* One PgQ next_batch + get_batch_events + finish_batch round. */
static int
consumer_round_pgq(consumer *c)
{
	char		qname[128];
	char		cname[64];
	char		batch_id[32];
	const char *np[2] = {qname, cname};
	const char *bp[1] = {batch_id};
	PGresult   *res;
	int			n;
	int64_t		now;
	int64_t		t0;

	queue_name(qname, sizeof(qname), consumer_queue(c));
	snprintf(cname, sizeof(cname), "c%d", c->group);
	t0 = mono_us();
	res = PQexecPrepared(c->conn, "next", 2, np, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return consumer_receive_failed(c, "next_batch", res);
	if (PQgetisnull(res, 0, 0))
	{
		PQclear(res);
		consumer_next(c, 0, opt.poll_us);
		return 0;
	}
	consumer_next(c, 1, 0);
	snprintf(batch_id, sizeof(batch_id), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);

	res = PQexecPrepared(c->conn, "events", 1, bp, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return consumer_receive_failed(c, "get_batch_events", res);
	now = realtime_us();
	n = PQntuples(res);
	if (n > 0)
		hist_record(&c->call_h, mono_us() - t0);
	for (int i = 0; i < n; i++)
		consumer_take(c, PQgetvalue(res, i, 0), now);
	PQclear(res);

	res = PQexecPrepared(c->conn, "finish", 1, bp, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		report_error("finish_batch", c->conn, res, &ack_errors);
		c->n = 0;
	}
	else
		consumer_acked(c);
	PQclear(res);
	return n;
}

/* Consumer thread: receive and ack until told to stop. */
static void *
consumer_main(void *arg)
{
	consumer   *c = arg;

	pthread_barrier_wait(&start_barrier);
	while (!atomic_load(&stop_consumers))
	{
		switch (opt.system)
		{
			case SYS_DELIVER:
				consumer_round_deliver(c);
				break;
			case SYS_TEXTBOOK:
				consumer_round_textbook(c);
				break;
			case SYS_PGQ:
				consumer_round_pgq(c);
				break;
			case SYS_ROUTER:
				consumer_round_router(c);
				break;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * PgQ ticker and maintenance (what pgqd would do)
 * ------------------------------------------------------------------------ */

/* Run the maintenance operations PgQ asks for, as pgqd does. */
static void
pgq_maintenance(PGconn *conn)
{
	PGresult   *ops = PQexec(conn, "SELECT func_name, func_arg FROM pgq.maint_operations()");

	if (PQresultStatus(ops) != PGRES_TUPLES_OK)
	{
		report_error("pgq.maint_operations", conn, ops, &ticker_errors);
		PQclear(ops);
		return;
	}
	for (int i = 0; i < PQntuples(ops); i++)
	{
		const char *fn = PQgetvalue(ops, i, 0);
		const char *arg = PQgetvalue(ops, i, 1);
		bool		has_arg = !PQgetisnull(ops, i, 1);
		char		sql[512];
		PGresult   *res;

		/* names come from PgQ's own catalog; accept only plain identifiers */
		if (!plain_identifier(fn))
			continue;
		if (strcmp(fn, "vacuum") == 0)
		{
			if (!has_arg || !plain_identifier(arg))
				continue;
			snprintf(sql, sizeof(sql), "VACUUM %s", arg);
			res = PQexec(conn, sql);
		}
		else if (has_arg)
		{
			const char *p[1] = {arg};

			snprintf(sql, sizeof(sql), "SELECT %s($1)", fn);
			res = PQexecParams(conn, sql, 1, NULL, p, NULL, NULL, 0);
		}
		else
		{
			snprintf(sql, sizeof(sql), "SELECT %s()", fn);
			res = PQexec(conn, sql);
		}
		if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
			report_error(fn, conn, res, &ticker_errors);
		PQclear(res);
	}
	PQclear(ops);
}

/* Ticker thread: pgq.ticker() every opt.tick_ms, maintenance now and then. */
static void *
ticker_main(void *arg)
{
	PGconn	   *conn = arg;
	int64_t		period = (int64_t) opt.tick_ms * 1000;
	int64_t		next;
	int64_t		next_maint;

	pthread_barrier_wait(&start_barrier);
	next = mono_us();
	next_maint = next + (int64_t) opt.pgq_maint_s * 1000000;
	while (!atomic_load(&stop_ticker))
	{
		PGresult   *res = PQexec(conn, "SELECT pgq.ticker()");
		int64_t		now;

		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			report_error("pgq.ticker", conn, res, &ticker_errors);
		else
			atomic_fetch_add(&ticks_total, 1);
		PQclear(res);
		now = mono_us();
		if (opt.pgq_maint_s > 0 && now >= next_maint)
		{
			pgq_maintenance(conn);
			next_maint = now + (int64_t) opt.pgq_maint_s * 1000000;
		}
		next += period;
		now = mono_us();
		if (next > now)
			sleep_us(next - now);
		else
			next = now;
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------ */

/* Print usage and exit with the given code. */
static void
usage(int code)
{
	fprintf(code ? stderr : stdout,
			"Usage: deliverbench [options]\n"
			"  --system deliver|textbook|pgq   system under test (default deliver)\n"
			"  --dsn CONNINFO                  libpq connection string\n"
			"  --producers N                   producer threads (default 4)\n"
			"  --consumers M                   consumers per group (default 4)\n"
			"  --groups G                      consumer groups, fan-out (default 1)\n"
			"  --batch B                       messages per send call (default 100)\n"
			"  --recv-batch R                  max messages per receive (default = batch)\n"
			"  --payload BYTES                 JSON payload size (default 100)\n"
			"  --duration SECONDS              producing time (default 10)\n"
			"  --rate MSGS_PER_SEC             total send rate, 0 = max (default 0)\n"
			"  --guarantee G                   at_least_once|exactly_once|at_most_once (deliver)\n"
			"  --max-backlog N                 producers pause above N unacked (default 100000, 0 = off)\n"
			"  --drain SECONDS                 max drain time after producing (default 30)\n"
			"  --stall SECONDS                 drain gives up without progress (default 10)\n"
			"  --poll-us US                    textbook/pgq sleep when empty (default 1000)\n"
			"  --tick-ms MS                    pgq ticker period (default 10)\n"
			"  --pgq-maint SECONDS             pgq maintenance period, 0 = off (default 30)\n"
			"  --pgq-rotation INTERVAL         pgq queue_rotation_period (default PgQ's)\n"
			"  --queue NAME                    queue/table name prefix (default bench)\n"
			"  --scenario LABEL                label for the RESULT line\n"
			"  --progress SECONDS              progress line period, 0 = off (default 5)\n"
			"  --no-setup                      use the existing queue as is\n"
			"  --dump-lost FILE                list unacked messages (group producer seq) in FILE\n"
			"  --queues N                      spread sends and receives over N queues <queue>_0..N-1\n"
			"                                  (default 1; pgq: one per consumer, at least that many)\n"
			"  --backlog N                     send N messages before consumers start (default 0)\n"
			"  --recv-wait MS                  deliver: receive's wait for a message (default 1000\n"
			"                                  on one queue, 0 over several; at 0 it polls as the\n"
			"                                  baselines do, sleeping --poll-us when nothing came)\n"
			"  --setup-only                    create the queues (tables), print a SETUP line, exit\n"
			"  --ack-commit durable|async      the deliver queue's ack_commit (default: its default)\n");
	exit(code);
}

/* Parse a positive integer option or die. */
static long
parse_long(const char *name, const char *v, long min, long max)
{
	char	   *end;
	long		x;

	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || *end || end == v || x < min || x > max)
		die("--%s must be an integer between %ld and %ld, got \"%s\"", name, min, max, v);
	return x;
}

/* Parse a non-negative number option or die. */
static double
parse_double(const char *name, const char *v)
{
	char	   *end;
	double		x;

	errno = 0;
	x = strtod(v, &end);
	if (errno || *end || end == v || x < 0 || x > 1e9)
		die("--%s must be a non-negative number, got \"%s\"", name, v);
	return x;
}

/* Fill opt from the command line. */
static void
parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"system", required_argument, NULL, 's'},
		{"dsn", required_argument, NULL, 'd'},
		{"producers", required_argument, NULL, 'P'},
		{"consumers", required_argument, NULL, 'C'},
		{"groups", required_argument, NULL, 'G'},
		{"batch", required_argument, NULL, 'b'},
		{"recv-batch", required_argument, NULL, 'r'},
		{"payload", required_argument, NULL, 'p'},
		{"duration", required_argument, NULL, 'D'},
		{"rate", required_argument, NULL, 'R'},
		{"guarantee", required_argument, NULL, 'g'},
		{"max-backlog", required_argument, NULL, 'B'},
		{"drain", required_argument, NULL, 'W'},
		{"stall", required_argument, NULL, 'S'},
		{"poll-us", required_argument, NULL, 'u'},
		{"tick-ms", required_argument, NULL, 't'},
		{"pgq-maint", required_argument, NULL, 'm'},
		{"pgq-rotation", required_argument, NULL, 'o'},
		{"queue", required_argument, NULL, 'q'},
		{"scenario", required_argument, NULL, 'n'},
		{"progress", required_argument, NULL, 'i'},
		{"no-setup", no_argument, NULL, 'x'},
		{"dump-lost", required_argument, NULL, 'L'},
		{"queues", required_argument, NULL, 'Q'},
		{"backlog", required_argument, NULL, 'K'},
		{"recv-wait", required_argument, NULL, 'w'},
		{"setup-only", no_argument, NULL, 'y'},
		{"ack-commit", required_argument, NULL, 'A'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	int			ch;
	bool		guarantee_set = false;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
	{
		switch (ch)
		{
			case 's':
				if (strcmp(optarg, "deliver") == 0)
					opt.system = SYS_DELIVER;
				else if (strcmp(optarg, "textbook") == 0)
					opt.system = SYS_TEXTBOOK;
				else if (strcmp(optarg, "pgq") == 0)
					opt.system = SYS_PGQ;
				else if (strcmp(optarg, "router") == 0)
					opt.system = SYS_ROUTER;
				else
					die("unknown --system \"%s\" (deliver, textbook, pgq or router)", optarg);
				break;
			case 'd':
				opt.dsn = optarg;
				break;
			case 'P':
				opt.producers = (int) parse_long("producers", optarg, 1, 64);
				break;
			case 'C':
				opt.consumers = (int) parse_long("consumers", optarg, 1, 64);
				break;
			case 'G':
				opt.groups = (int) parse_long("groups", optarg, 1, 16);
				break;
			case 'b':
				opt.batch = (int) parse_long("batch", optarg, 1, 10000);
				break;
			case 'r':
				opt.recv_batch = (int) parse_long("recv-batch", optarg, 1, 100000);
				break;
			case 'p':
				opt.payload = (int) parse_long("payload", optarg, 1, 1000000);
				break;
			case 'D':
				opt.duration = parse_double("duration", optarg);
				break;
			case 'R':
				opt.rate = parse_double("rate", optarg);
				break;
			case 'g':
				if (strcmp(optarg, "at_least_once") == 0)
					opt.guarantee = G_AT_LEAST_ONCE;
				else if (strcmp(optarg, "exactly_once") == 0)
					opt.guarantee = G_EXACTLY_ONCE;
				else if (strcmp(optarg, "at_most_once") == 0)
					opt.guarantee = G_AT_MOST_ONCE;
				else
					die("unknown --guarantee \"%s\"", optarg);
				guarantee_set = true;
				break;
			case 'B':
				opt.max_backlog = parse_long("max-backlog", optarg, 0, 1000000000L);
				break;
			case 'W':
				opt.drain = parse_double("drain", optarg);
				break;
			case 'S':
				opt.stall = parse_double("stall", optarg);
				break;
			case 'u':
				opt.poll_us = (int) parse_long("poll-us", optarg, 0, 10000000);
				break;
			case 't':
				opt.tick_ms = (int) parse_long("tick-ms", optarg, 1, 60000);
				break;
			case 'm':
				opt.pgq_maint_s = (int) parse_long("pgq-maint", optarg, 0, 86400);
				break;
			case 'o':
				opt.pgq_rotation = optarg;
				break;
			case 'q':
				opt.queue = optarg;
				break;
			case 'n':
				opt.scenario = optarg;
				break;
			case 'i':
				opt.progress = parse_double("progress", optarg);
				break;
			case 'x':
				opt.setup = false;
				break;
			case 'L':
				opt.dump_lost = optarg;
				break;
			case 'Q':
				opt.queues = (int) parse_long("queues", optarg, 1, 100000);
				break;
			case 'K':
				opt.backlog = parse_long("backlog", optarg, 0, 1000000000L);
				break;
			case 'w':
				opt.recv_wait_ms = (int) parse_long("recv-wait", optarg, 0, 60000);
				break;
			case 'y':
				opt.setup_only = true;
				break;
			case 'A':
				if (strcmp(optarg, "durable") != 0 && strcmp(optarg, "async") != 0)
					die("--ack-commit must be durable or async, got \"%s\"", optarg);
				opt.ack_commit = optarg;
				break;
			case 'h':
				usage(0);
				break;
			default:
				usage(1);
		}
	}
	if (optind < argc)
		die("unexpected argument \"%s\"", argv[optind]);
	if (opt.recv_batch == 0)
		opt.recv_batch = opt.batch;
	if (opt.duration <= 0)
		die("--duration must be positive");
	if (opt.system != SYS_DELIVER && opt.system != SYS_ROUTER && guarantee_set && opt.guarantee != G_AT_LEAST_ONCE)
		die("--guarantee applies to --system deliver only (the baselines are at-least-once)");
	if (opt.system == SYS_TEXTBOOK && opt.groups > 1)
		die("--groups needs deliver or pgq: the textbook queue has no consumer groups");
	/* the queue name becomes part of table names: keep it a plain identifier */
	if (strlen(opt.queue) == 0 || strlen(opt.queue) > 40)
		die("--queue must be 1 to 40 characters");
	for (const char *s = opt.queue; *s; s++)
		if (!(islower((unsigned char) *s) || isdigit((unsigned char) *s) || *s == '_'))
			die("--queue may contain only a-z, 0-9 and _");
	if (isdigit((unsigned char) opt.queue[0]))
		die("--queue must not start with a digit");
	if (opt.system == SYS_ROUTER && nqueues() > 1)
		die("--queues applies to deliver, textbook and pgq");
	if (opt.system == SYS_PGQ && nqueues() < opt.consumers)
		die("--queues: PgQ needs a queue per consumer at least (a consumer's batches are its own)");
	if (opt.producers + opt.consumers * opt.groups + 2 > 95)
		die("too many connections: producers + consumers * groups must stay below 93");
}

/* Write "group producer seq" for every committed message a group never acked. */
static void
dump_unacked(const char *path)
{
	FILE	   *f = fopen(path, "w");

	if (f == NULL)
	{
		fprintf(stderr, "deliverbench: cannot write %s: %s\n", path, strerror(errno));
		return;
	}
	for (int g = 0; g < opt.groups; g++)
		for (int p = 0; p < opt.producers; p++)
			for (int ci = 0; ci < BM_MAX_CHUNKS; ci++)
			{
				_Atomic uint64_t *cc = atomic_load(&committed_bm[p]->chunk[ci]);
				_Atomic uint64_t *ca = atomic_load(&acked_bm[g][p]->chunk[ci]);

				if (cc == NULL)
					continue;
				for (uint64_t w = 0; w < BM_CHUNK_WORDS; w++)
				{
					uint64_t	x = atomic_load(&cc[w]) & ~(ca ? atomic_load(&ca[w]) : 0);

					while (x)
					{
						int			b = __builtin_ctzll(x);

						fprintf(f, "%d %d %" PRIu64 "\n", g, p,
								((uint64_t) ci << BM_CHUNK_SHIFT) + w * 64 + (uint64_t) b);
						x &= x - 1;
					}
				}
			}
	fclose(f);
}

/* Read one table's payloads row by row and mark them in stored[]. */
static bool
sweep_table(PGconn *conn, const char *sql, bitmap **stored)
{
	PGresult   *res;
	bool		ok = true;

	if (!PQsendQuery(conn, sql) || !PQsetSingleRowMode(conn))
		return false;
	while ((res = PQgetResult(conn)) != NULL)
	{
		ExecStatusType st = PQresultStatus(res);

		if (st == PGRES_SINGLE_TUPLE)
		{
			const char *payload = PQgetvalue(res, 0, 0);
			int64_t		p;
			int64_t		seq;

			if (json_int(payload, "\"p\":", &p) && json_int(payload, "\"s\":", &seq) &&
				p >= 0 && p < opt.producers && seq >= 0)
				bitmap_set(stored[p], (uint64_t) seq);
		}
		else if (st != PGRES_TUPLES_OK)
		{
			fprintf(stderr, "deliverbench: %s: %s", sql, PQresultErrorMessage(res));
			ok = false;
		}
		PQclear(res);
	}
	return ok;
}

/* Mark in stored[] every message queue (table) name still stores. */
static bool
sweep_one(PGconn *conn, const char *name, bitmap **stored)
{
	char		sql[512];
	const char *p1[1] = {name};
	PGresult   *res;
	bool		ok = true;

	switch (opt.system)
	{
		case SYS_ROUTER:
			/* the shards' tables are not read from the router */
			return false;
		case SYS_TEXTBOOK:
			snprintf(sql, sizeof(sql), "SELECT payload::text FROM public.%s", name);
			return sweep_table(conn, sql, stored);
		case SYS_PGQ:
			res = PQexecParams(conn, "SELECT queue_data_pfx FROM pgq.queue WHERE queue_name = $1",
							   1, NULL, p1, NULL, NULL, 0);
			if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
				plain_identifier(PQgetvalue(res, 0, 0)))
			{
				snprintf(sql, sizeof(sql), "SELECT ev_data FROM %s", PQgetvalue(res, 0, 0));
				ok = sweep_table(conn, sql, stored);
			}
			else
				ok = false;
			PQclear(res);
			return ok;
		case SYS_DELIVER:
			/* the queue's message segments and delayed messages */
			res = PQexecParams(conn,
							   "SELECT format('q%s_s%s', q.queue_id, s) FROM deliver.queue q, "
							   "generate_series(0, q.segments - 1) s WHERE q.queue_name = $1 "
							   "UNION ALL SELECT format('q%s_delayed', q.queue_id) "
							   "FROM deliver.queue q WHERE q.queue_name = $1",
							   1, NULL, p1, NULL, NULL, 0);
			if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0)
				ok = false;
			for (int i = 0; ok && i < PQntuples(res); i++)
			{
				if (!plain_identifier(PQgetvalue(res, i, 0)))
				{
					ok = false;
					break;
				}
				snprintf(sql, sizeof(sql), "SELECT payload::text FROM deliver.%s",
						 PQgetvalue(res, i, 0));
				ok = sweep_table(conn, sql, stored);
			}
			PQclear(res);
			return ok;
	}
	return false;
}

/*
 * Mark in stored[] every message the queues still store (delivered or not);
 * false if they could not be read back.
 */
static bool
sweep_stored(PGconn *conn, bitmap **stored)
{
	char		name[128];
	bool		ok = true;

	for (int q = 0; q < nqueues() && ok; q++)
	{
		queue_name(name, sizeof(name), q);
		ok = sweep_one(conn, name, stored);
	}
	return ok;
}

/* Sum acked_unique over all groups. */
static uint64_t
acked_all_groups(void)
{
	uint64_t	n = 0;

	for (int g = 0; g < opt.groups; g++)
		n += atomic_load(&acked_unique[g]);
	return n;
}

/* True when every group has acked every committed message. */
static bool
all_drained(void)
{
	return current_backlog() == 0;
}

/*
 * Print one PROGRESS line: rates since the previous line, the backlog and
 * the send->ack p99 of the messages acked since the previous line.
 */
static void
print_progress(consumer *cons, int ncons, int64_t start, int64_t prev, int64_t now,
			   histogram *win)
{
	static uint64_t last_sent;
	static uint64_t last_acked;
	uint64_t	s = atomic_load(&committed_total);
	uint64_t	a = acked_all_groups();
	double		dt = (double) (now - prev) / 1e6;

	/* the backlog was sent before the start: not in the first interval */
	if (last_sent == 0)
		last_sent = atomic_load(&backlog_loaded);
	memset(win, 0, sizeof(histogram));
	for (int i = 0; i < ncons; i++)
	{
		pthread_mutex_lock(&cons[i].win_lock);
		hist_merge(win, &cons[i].win_h);
		memset(&cons[i].win_h, 0, sizeof(histogram));
		pthread_mutex_unlock(&cons[i].win_lock);
	}
	printf("PROGRESS t=%.1f sent_per_s=%.0f acked_per_s=%.0f backlog=%" PRIu64
		   " p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
		   (double) (now - start) / 1e6, (double) (s - last_sent) / dt,
		   (double) (a - last_acked) / dt / opt.groups, current_backlog(),
		   hist_quantile(win, 0.5) / 1000, hist_quantile(win, 0.99) / 1000,
		   hist_quantile(win, 1.0) / 1000);
	last_sent = s;
	last_acked = a;
}

/* Allocate the counters and bitmaps shared by all threads. */
static void
alloc_tracking(void)
{
	acked_unique = xcalloc((size_t) opt.groups, sizeof(*acked_unique));
	committed_bm = xcalloc((size_t) opt.producers, sizeof(bitmap *));
	backlog_share = xcalloc((size_t) opt.producers, sizeof(uint64_t));
	for (int p = 0; p < opt.producers; p++)
		backlog_share[p] = (uint64_t) (opt.backlog / opt.producers +
									   (p < opt.backlog % opt.producers ? 1 : 0));
	for (int p = 0; p < opt.producers; p++)
		committed_bm[p] = xcalloc(1, sizeof(bitmap));
	acked_bm = xcalloc((size_t) opt.groups, sizeof(bitmap **));
	for (int g = 0; g < opt.groups; g++)
	{
		acked_bm[g] = xcalloc((size_t) opt.producers, sizeof(bitmap *));
		for (int p = 0; p < opt.producers; p++)
			acked_bm[g][p] = xcalloc(1, sizeof(bitmap));
	}
}

/* Connect and prepare every producer and consumer (before the clock starts). */
static void
connect_workers(producer *prods, consumer *cons, int ncons)
{
	for (int p = 0; p < opt.producers; p++)
	{
		producer   *pr = &prods[p];

		pr->id = p;
		pr->conn = connect_db("producer");
		pr->payloads = xcalloc((size_t) opt.batch, sizeof(char *));
		pr->keys = xcalloc((size_t) opt.batch, sizeof(char *));
		for (int i = 0; i < opt.batch; i++)
		{
			pr->payloads[i] = xcalloc((size_t) opt.payload + 128, 1);
			pr->keys[i] = xcalloc(96, 1);
		}
		producer_prepare(pr);
	}
	for (int i = 0; i < ncons; i++)
	{
		consumer   *c = &cons[i];

		c->id = i;
		c->group = i / opt.consumers;
		c->member = i % opt.consumers;
		c->conn = connect_db("consumer");
		c->qown = nqueues() > opt.consumers
			? (nqueues() - c->member + opt.consumers - 1) / opt.consumers : 1;
		pthread_mutex_init(&c->win_lock, NULL);
		consumer_prepare(c);
	}
}

/* Print the run's parameters on one line. */
static void
print_header(void)
{
	printf("deliverbench: system=%s scenario=%s guarantee=%s producers=%d consumers=%d "
		   "groups=%d batch=%d recv_batch=%d payload=%d duration=%.0fs rate=%s max_backlog=%ld",
		   system_names[opt.system], opt.scenario,
		   opt.system == SYS_DELIVER || opt.system == SYS_ROUTER ? guarantee_names[opt.guarantee] : "at_least_once",
		   opt.producers, opt.consumers, opt.groups, opt.batch, opt.recv_batch, opt.payload,
		   opt.duration, opt.rate > 0 ? "paced" : "max", opt.max_backlog);
	if (opt.rate > 0)
		printf(" (%.0f msgs/s)", opt.rate);
	if (opt.system == SYS_PGQ)
		printf(" pgq_tick=%dms", opt.tick_ms);
	printf(" queues=%d", nqueues());
	if (opt.backlog > 0)
		printf(" backlog=%ld", opt.backlog);
	printf("\n");
}

/* Wait out the producing period, printing progress lines. */
static void
wait_producing(consumer *cons, int ncons, int64_t start)
{
	histogram  *win = xcalloc(1, sizeof(histogram));
	int64_t		last_report = start;

	for (;;)
	{
		int64_t		now = mono_us();
		int64_t		left = start + (int64_t) (opt.duration * 1e6) - now;

		if (left <= 0)
			break;
		if (opt.progress > 0 && now - last_report >= (int64_t) (opt.progress * 1e6))
		{
			print_progress(cons, ncons, start, last_report, now, win);
			last_report = now;
		}
		sleep_us(left < 100000 ? left : 100000);
	}
	free(win);
}

/*
 * Let consumers finish: until every group acked every committed message
 * ("complete"), nothing was acked for opt.stall seconds ("stalled"), or
 * opt.drain seconds passed ("timeout").
 */
static const char *
wait_drained(void)
{
	int64_t		drain_start = mono_us();
	int64_t		last_move = drain_start;
	uint64_t	last_acked = acked_all_groups();

	while (!all_drained())
	{
		int64_t		now = mono_us();
		uint64_t	a = acked_all_groups();

		if (a != last_acked)
		{
			last_acked = a;
			last_move = now;
		}
		if (now - last_move >= (int64_t) (opt.stall * 1e6))
			return "stalled";
		if (now - drain_start >= (int64_t) (opt.drain * 1e6))
			return "timeout";
		sleep_us(2000);
	}
	return "complete";
}

/* What a run found, for the report. */
typedef struct
{
	double		elapsed_s;		/* producing time */
	double		drain_s;
	const char *drain_state;
	uint64_t	sent_window;	/* committed while producing */
	uint64_t	acked_window;	/* first acks while producing, all groups */
	uint64_t	received;
	uint64_t	empty_polls;	/* receive calls that returned nothing */
	uint64_t	lost;
	uint64_t	undrained;
	uint64_t	unexpected;
	uint64_t	dup;
	uint64_t	errors;
	histogram	recv_h;
	histogram	ack_h;
	histogram	call_h;			/* receive calls that got messages */
} outcome;

/*
 * Count lost, late and unexpected messages from the bitmaps.  If the drain
 * ran out of time while messages were still being delivered, those still
 * stored in the queue are late, not lost: read the queue back to tell.
 */
static void
account(outcome *o, PGconn *conn)
{
	uint64_t	unacked = 0;

	for (int g = 0; g < opt.groups; g++)
		for (int p = 0; p < opt.producers; p++)
		{
			unacked += bitmap_count_diff(committed_bm[p], acked_bm[g][p], NULL, false);
			o->unexpected += bitmap_count_diff(acked_bm[g][p], committed_bm[p], NULL, false);
		}
	o->lost = unacked;
	if (unacked > 0 && opt.dump_lost)
		dump_unacked(opt.dump_lost);

	if (unacked > 0 && strcmp(o->drain_state, "timeout") == 0)
	{
		bitmap	  **stored = xcalloc((size_t) opt.producers, sizeof(bitmap *));

		for (int p = 0; p < opt.producers; p++)
			stored[p] = xcalloc(1, sizeof(bitmap));
		if (sweep_stored(conn, stored))
		{
			o->lost = 0;
			for (int g = 0; g < opt.groups; g++)
				for (int p = 0; p < opt.producers; p++)
				{
					o->lost += bitmap_count_diff(committed_bm[p], acked_bm[g][p], stored[p], false);
					o->undrained += bitmap_count_diff(committed_bm[p], acked_bm[g][p], stored[p], true);
				}
		}
		else
			fprintf(stderr, "deliverbench: could not read the queue back: the %" PRIu64
					" unacked messages are counted as lost\n", unacked);
	}
	o->dup = atomic_load(&dup_total);
	o->errors = atomic_load(&send_errors) + atomic_load(&recv_errors) +
		atomic_load(&ack_errors) + atomic_load(&ticker_errors);
}

/* Print the human-readable summary and the RESULT line. */
static void
print_report(const outcome *o)
{
	const histogram *rh = &o->recv_h;
	const histogram *ah = &o->ack_h;
	double		sent_per_s = (double) o->sent_window / o->elapsed_s;	/* backlog excluded */
	double		acked_per_s = (double) o->acked_window / opt.groups / o->elapsed_s;

	printf("  producing time   %.2f s, drain %.2f s (%s)\n",
		   o->elapsed_s, o->drain_s, o->drain_state);
	printf("  sent (committed) %" PRIu64 " msgs, %.0f msgs/s\n", o->sent_window, sent_per_s);
	printf("  acked            %" PRIu64 " msgs in the producing window, %.0f msgs/s per group; "
		   "%" PRIu64 " in total\n",
		   o->acked_window / (uint64_t) opt.groups, acked_per_s,
		   acked_all_groups() / (uint64_t) opt.groups);
	printf("  received         %" PRIu64 " deliveries; %" PRIu64 " receive calls found nothing\n",
		   o->received, o->empty_polls);
	printf("  send->receive ms p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
		   hist_quantile(rh, 0.5) / 1000, hist_quantile(rh, 0.9) / 1000,
		   hist_quantile(rh, 0.99) / 1000, hist_quantile(rh, 0.999) / 1000,
		   hist_quantile(rh, 1.0) / 1000);
	printf("  send->ack ms     p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
		   hist_quantile(ah, 0.5) / 1000, hist_quantile(ah, 0.9) / 1000,
		   hist_quantile(ah, 0.99) / 1000, hist_quantile(ah, 0.999) / 1000,
		   hist_quantile(ah, 1.0) / 1000);
	printf("  receive call ms  p50 %.3f  p99 %.3f  max %.3f (calls that got messages)\n",
		   hist_quantile(&o->call_h, 0.5) / 1000, hist_quantile(&o->call_h, 0.99) / 1000,
		   hist_quantile(&o->call_h, 1.0) / 1000);
	if (opt.backlog > 0)
		printf("  backlog          %" PRIu64 " msgs sent in %.2f s before consumers started "
			   "(in the acked counts, not in the latencies)\n",
			   atomic_load(&backlog_loaded), load_seconds);
	if (o->undrained > 0)
		printf("  undrained        %" PRIu64 " messages still stored in the queue when the "
			   "drain time ran out (late, not lost)\n", o->undrained);
	printf("  lost %" PRIu64 "  duplicated %" PRIu64 "  unexpected %" PRIu64
		   "  ack-not-counted %" PRIu64 "  bad-payload %" PRIu64 "  errors %" PRIu64 "\n",
		   o->lost, o->dup, o->unexpected, atomic_load(&ack_short_total),
		   atomic_load(&bad_payload_total), o->errors);
	if (opt.system == SYS_PGQ)
		printf("  pgq ticks        %" PRIu64 " (period %d ms)\n",
			   atomic_load(&ticks_total), opt.tick_ms);
	if (o->lost > 0)
		printf("  !!!!!!!! LOST %" PRIu64 " MESSAGES: committed sends never acked (drain %s) !!!!!!!!\n",
			   o->lost, o->drain_state);
	if (o->dup > 0)
		printf("  !!!!!!!! DUPLICATED %" PRIu64 " MESSAGES: acked twice within one group !!!!!!!!\n",
			   o->dup);

	printf("RESULT system=%s scenario=%s guarantee=%s producers=%d consumers=%d groups=%d "
		   "batch=%d recv_batch=%d payload=%d rate=%.0f duration_s=%.2f sent=%" PRIu64
		   " sent_per_s=%.0f acked_per_s=%.0f recv_p50_ms=%.3f recv_p99_ms=%.3f "
		   "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f "
		   "lost=%" PRIu64 " dup=%" PRIu64 " undrained=%" PRIu64 " unexpected=%" PRIu64
		   " errors=%" PRIu64 " drain=%s tick_ms=%d queues=%d backlog=%" PRIu64
		   " setup_s=%.2f load_s=%.2f recv_call_p50_ms=%.3f recv_call_p99_ms=%.3f"
		   " empty_polls=%" PRIu64 "\n",
		   system_names[opt.system], opt.scenario,
		   opt.system == SYS_DELIVER || opt.system == SYS_ROUTER ? guarantee_names[opt.guarantee] : "at_least_once",
		   opt.producers, opt.consumers, opt.groups, opt.batch, opt.recv_batch, opt.payload,
		   opt.rate, o->elapsed_s, o->sent_window, sent_per_s, acked_per_s,
		   hist_quantile(rh, 0.5) / 1000, hist_quantile(rh, 0.99) / 1000,
		   hist_quantile(ah, 0.5) / 1000, hist_quantile(ah, 0.9) / 1000,
		   hist_quantile(ah, 0.99) / 1000, hist_quantile(ah, 0.999) / 1000,
		   hist_quantile(ah, 1.0) / 1000, o->lost, o->dup, o->undrained, o->unexpected,
		   o->errors, o->drain_state, opt.system == SYS_PGQ ? opt.tick_ms : 0,
		   nqueues(), atomic_load(&backlog_loaded), setup_seconds, load_seconds,
		   hist_quantile(&o->call_h, 0.5) / 1000, hist_quantile(&o->call_h, 0.99) / 1000,
		   o->empty_polls);
}

int
main(int argc, char **argv)
{
	PGconn	   *main_conn;
	PGconn	   *ticker_conn = NULL;
	producer   *prods;
	consumer   *cons;
	int			ncons;
	pthread_t	ticker_thread;
	int64_t		start;
	int64_t		drain_start;
	int64_t		load_start;
	outcome    *o;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_options(argc, argv);
	run_id = realtime_us();

	main_conn = connect_db("setup");
	if (opt.setup)
		setup_system(main_conn);
	if (opt.setup_only)
	{
		printf("SETUP system=%s queues=%d groups=%d setup_s=%.2f\n",
			   system_names[opt.system], nqueues(), opt.groups, setup_seconds);
		PQfinish(main_conn);
		return 0;
	}
	alloc_tracking();

	ncons = opt.consumers * opt.groups;
	prods = xcalloc((size_t) opt.producers, sizeof(producer));
	cons = xcalloc((size_t) ncons, sizeof(consumer));
	connect_workers(prods, cons, ncons);
	if (opt.system == SYS_PGQ)
		ticker_conn = connect_db("ticker");

	if (pthread_barrier_init(&start_barrier, NULL,
							 (unsigned) (opt.producers + ncons + 1 + (ticker_conn ? 1 : 0))) != 0)
		die("pthread_barrier_init failed");
	load_start = mono_us();
	for (int i = 0; i < ncons; i++)
		if (pthread_create(&cons[i].thread, NULL, consumer_main, &cons[i]) != 0)
			die("pthread_create failed");
	if (ticker_conn && pthread_create(&ticker_thread, NULL, ticker_main, ticker_conn) != 0)
		die("pthread_create failed");
	for (int p = 0; p < opt.producers; p++)
		if (pthread_create(&prods[p].thread, NULL, producer_main, &prods[p]) != 0)
			die("pthread_create failed");
	print_header();

	o = xcalloc(1, sizeof(outcome));
	pthread_barrier_wait(&start_barrier);
	start = mono_us();
	load_seconds = (double) (start - load_start) / 1e6;

	/* produce */
	wait_producing(cons, ncons, start);
	atomic_store(&stop_producers, true);
	for (int p = 0; p < opt.producers; p++)
		pthread_join(prods[p].thread, NULL);
	o->elapsed_s = (double) (mono_us() - start) / 1e6;
	o->sent_window = atomic_load(&committed_total) - atomic_load(&backlog_loaded);
	o->acked_window = acked_all_groups();

	/* drain */
	drain_start = mono_us();
	o->drain_state = wait_drained();
	o->drain_s = (double) (mono_us() - drain_start) / 1e6;
	atomic_store(&stop_consumers, true);
	for (int i = 0; i < ncons; i++)
		pthread_join(cons[i].thread, NULL);
	if (ticker_conn)
	{
		atomic_store(&stop_ticker, true);
		pthread_join(ticker_thread, NULL);
	}

	/* report */
	account(o, main_conn);
	for (int i = 0; i < ncons; i++)
	{
		hist_merge(&o->recv_h, &cons[i].recv_h);
		hist_merge(&o->ack_h, &cons[i].ack_h);
		hist_merge(&o->call_h, &cons[i].call_h);
		o->received += cons[i].received;
		o->empty_polls += cons[i].empty_polls;
	}
	print_report(o);

	for (int p = 0; p < opt.producers; p++)
		PQfinish(prods[p].conn);
	for (int i = 0; i < ncons; i++)
		PQfinish(cons[i].conn);
	if (ticker_conn)
		PQfinish(ticker_conn);
	PQfinish(main_conn);
	return (o->lost > 0 || o->dup > 0) ? 3 : 0;
}
