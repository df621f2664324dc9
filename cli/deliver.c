/*
 * deliver - command-line client of the deliver extension.
 *
 *   deliver [-d CONNINFO] listen SUBSCRIPTION [options]
 *   deliver [-d CONNINFO] send QUEUE [PAYLOAD] [options]
 *   deliver [-d CONNINFO] receive QUEUE [options]
 *   deliver [-d CONNINFO] ack QUEUE DELIVERY_ID...
 *   deliver [-d CONNINFO] stats [QUEUE]
 *
 * "listen" streams a push subscription over the replication protocol
 * (START_REPLICATION SLOT ... LOGICAL with the deliver output plugin) and
 * confirms a transaction's LSN to the server only after its messages were
 * handled: printed and flushed, passed to a command that exited 0, or applied
 * in the database together with the subscription's offset.  Unconfirmed
 * messages come again after a restart or a reconnection (at-least-once);
 * with --apply they are applied exactly once.
 *
 * It asks the plugin for its binary format, whose records say what they
 * are (a message or the commit of a transaction) and carry their lengths,
 * checks each record against the bytes received (record.c), and writes the
 * JSON lines itself, in the shape of the plugin's json format.
 *
 * The connection comes from -d (a conninfo string or URI) and the usual libpq
 * environment (PGHOST, PGPORT, PGDATABASE, PGUSER, ...).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "buf.h"
#include "record.h"

/* exit codes */
#define EXIT_USAGE		2		/* bad arguments */
#define EXIT_FATAL		3		/* a permanent error: missing slot, privilege */

/* the longest name Postgres keeps (NAMEDATALEN - 1): queues, groups, slots */
#define PG_NAME_MAX		63
/* the longest delivery id: 9223372036854775807 has 19 digits */
#define ID_MAX_DIGITS	20

static const char *conninfo = "";
static volatile sig_atomic_t stop_requested = 0;

static void
die(int code, const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "deliver: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static void
note(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "deliver: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* a buffer operation that can only fail for want of memory */
static void
must(bool ok)
{
	if (!ok)
		die(EXIT_FAILURE, "out of memory");
}

/* strdup or exit: a NULL here would mean "every queue", "no group" */
static char *
xstrdup(const char *s)
{
	char	   *copy = strdup(s);

	if (copy == NULL)
		die(EXIT_FAILURE, "out of memory");
	return copy;
}

/*
 * An argument as messages show it: quoted, control characters escaped, cut
 * after SHOW_MAX bytes (on a UTF-8 character boundary) with its length.
 */
#define SHOW_MAX 40
typedef struct Shown
{
	char		s[SHOW_MAX * 4 + 48];
} Shown;

static const char *
show(Shown *sh, const char *arg)
{
	static const char hex[] = "0123456789abcdef";
	size_t		len = strlen(arg),
				cut = len,
				o = 0;

	if (len > SHOW_MAX)
	{
		cut = SHOW_MAX;
		while (cut > 0 && ((unsigned char) arg[cut] & 0xC0) == 0x80)
			cut--;
	}
	sh->s[o++] = '"';
	for (size_t i = 0; i < cut; i++)
	{
		unsigned char c = (unsigned char) arg[i];

		if (c == '\n')
		{
			sh->s[o++] = '\\';
			sh->s[o++] = 'n';
		}
		else if (c < 0x20 || c == 0x7F)
		{
			sh->s[o++] = '\\';
			sh->s[o++] = 'x';
			sh->s[o++] = hex[c >> 4];
			sh->s[o++] = hex[c & 0xF];
		}
		else
		{
			if (c == '"' || c == '\\')
				sh->s[o++] = '\\';
			sh->s[o++] = (char) c;
		}
	}
	if (cut < len)
	{
		memcpy(sh->s + o, "...", 3);
		o += 3;
	}
	sh->s[o++] = '"';
	sh->s[o] = '\0';
	if (cut < len)				/* bounded: the result is not needed */
		(void) snprintf(sh->s + o, sizeof(sh->s) - o, " (%zu bytes)", len);
	return sh->s;
}

/*
 * A delivery id: 1 to ID_MAX_DIGITS decimal digits (leading zeros allowed
 * within that length), at most INT64_MAX.  No sign, no blanks.
 */
static bool
parse_id(const char *s, int64_t *out)
{
	size_t		n = strlen(s);
	unsigned long long v;
	char	   *end;

	if (n == 0 || n > ID_MAX_DIGITS || strspn(s, "0123456789") != n)
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end != s + n || v > (unsigned long long) INT64_MAX)
		return false;
	*out = (int64_t) v;
	return true;
}

/* an integer option between min and max, or exit */
static long long
int_arg(const char *cmd, const char *opt, const char *s, long long min, long long max)
{
	const char *digits = s[0] == '-' ? s + 1 : s;
	size_t		n = strlen(digits);
	long long	v;
	char	   *end;
	Shown		sh;

	if (n == 0 || strspn(digits, "0123456789") != n)
		die(EXIT_USAGE, "%s: %s %s is not an integer", cmd, opt, show(&sh, s));
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno == ERANGE || (errno == 0 && (v < min || v > max)))
		die(EXIT_USAGE, "%s: %s %s must be between %lld and %lld", cmd, opt, show(&sh, s), min, max);
	if (errno != 0 || *end != '\0')
		die(EXIT_USAGE, "%s: %s %s is not an integer", cmd, opt, show(&sh, s));
	return v;
}

/* a number of seconds, finite, >= 0 (> 0 unless zero_ok), <= max; or exit */
static double
seconds_arg(const char *cmd, const char *opt, const char *s, bool zero_ok, double max,
			const char *range)
{
	size_t		n = strlen(s);
	double		v = 0;
	char	   *end = NULL;
	bool		ok = n > 0 && strspn(s, "0123456789.eE+-") == n;
	Shown		sh;

	if (ok)
	{
		errno = 0;
		v = strtod(s, &end);
		ok = errno == 0 && end == s + n && isfinite(v) && v >= 0 && (zero_ok || v > 0) && v <= max;
	}
	if (!ok)
		die(EXIT_USAGE, "%s: %s %s is not a number of seconds (%s)", cmd, opt, show(&sh, s), range);
	return v;
}

/* a name Postgres keeps whole: 1 to PG_NAME_MAX bytes; or exit */
static void
name_arg(const char *cmd, const char *what, const char *s)
{
	Shown		sh;

	if (s[0] == '\0')
		die(EXIT_USAGE, "%s: %s is empty", cmd, what);
	if (strlen(s) > PG_NAME_MAX)
		die(EXIT_USAGE, "%s: %s %s is too long (at most %d bytes)", cmd, what, show(&sh, s), PG_NAME_MAX);
}

/* no arguments after the last one expected; or exit */
static void
no_more_args(const char *cmd, int argc, char **argv, int next)
{
	Shown		sh;

	if (next < argc)
		die(EXIT_USAGE, "%s: unexpected argument %s", cmd, show(&sh, argv[next]));
}

static int64_t
now_usec(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}

static void
on_signal(int sig)
{
	(void) sig;
	stop_requested = 1;
}

/* ----------------------------------------------------------------
 * SQL connections and the SQL subcommands
 * ---------------------------------------------------------------- */

static PGconn *
connect_sql(bool replication)
{
	const char *keys[] = {"dbname", "replication", "fallback_application_name", NULL};
	const char *vals[] = {conninfo, replication ? "database" : NULL, "deliver", NULL};
	PGconn	   *conn;

	if (!replication)
	{
		keys[1] = "fallback_application_name";
		vals[1] = "deliver";
		keys[2] = NULL;
	}
	conn = PQconnectdbParams(keys, vals, 1);
	return conn;
}

static PGconn *
connect_or_die(void)
{
	PGconn	   *conn = connect_sql(false);

	if (PQstatus(conn) != CONNECTION_OK)
		die(EXIT_FAILURE, "could not connect: %s", PQerrorMessage(conn));
	return conn;
}

static PGresult *
exec_or_die(PGconn *conn, const char *sql, int n, const char *const *params)
{
	PGresult   *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		die(EXIT_FAILURE, "%s%s%s", PQresultErrorMessage(res),
			state ? "SQLSTATE " : "", state ? state : "");
	}
	return res;
}

/* print every row's first column, one per line */
static void
print_rows(PGresult *res)
{
	for (int i = 0; i < PQntuples(res); i++)
		printf("%s\n", PQgetvalue(res, i, 0));
	fflush(stdout);
}

static int
cmd_send(int argc, char **argv)
{
	static struct option opts[] = {
		{"headers", required_argument, NULL, 'H'},
		{"key", required_argument, NULL, 'k'},
		{"idempotency-key", required_argument, NULL, 'i'},
		{"delay", required_argument, NULL, 'D'},
		{NULL, 0, NULL, 0}
	};
	const char *headers = NULL,
			   *key = NULL,
			   *idem = NULL,
			   *delay = NULL;
	int			c;
	PGconn	   *conn;
	const char *queue;

	optind = 1;
	while ((c = getopt_long(argc, argv, "H:k:i:D:", opts, NULL)) != -1)
	{
		switch (c)
		{
			case 'H': headers = optarg; break;
			case 'k': key = optarg; break;
			case 'i': idem = optarg; break;
			case 'D': delay = optarg; break;
			default: exit(EXIT_USAGE);
		}
	}
	if (optind >= argc)
		die(EXIT_USAGE, "send: name a queue (deliver send QUEUE [PAYLOAD])");
	queue = argv[optind++];
	no_more_args("send", argc, argv, optind + 1);
	conn = connect_or_die();
	if (optind < argc && strcmp(argv[optind], "-") != 0)
	{
		const char *p[6] = {queue, argv[optind], headers, key, idem, delay};

		print_rows(exec_or_die(conn, "SELECT deliver.send($1, $2::jsonb, $3::jsonb, $4, $5, $6::interval)", 6, p));
	}
	else
	{
		/* one message per line of standard input, 1000 per transaction */
		char	   *line = NULL;
		size_t		cap = 0;
		ssize_t		len;
		Buf			arr = BUF_INIT;
		int			n = 0;
		long		lineno = 0;
		bool		eof = false;

		while (!eof)
		{
			len = getline(&line, &cap, stdin);
			if (len < 0)
				eof = true;
			else
			{
				lineno++;
				/* a NUL would end the parameter there: refuse it */
				if (memchr(line, '\0', (size_t) len) != NULL)
					die(EXIT_USAGE, "send: line %ld of standard input contains a NUL byte", lineno);
				while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
					line[--len] = '\0';
				if (len == 0)
					continue;
				/* an array literal of JSON texts: {"elem","elem"} */
				must(buf_putc(&arr, n ? ',' : '{'));
				must(buf_putc(&arr, '"'));
				for (ssize_t i = 0; i < len; i++)
				{
					if (line[i] == '"' || line[i] == '\\')
						must(buf_putc(&arr, '\\'));
					must(buf_putc(&arr, line[i]));
				}
				must(buf_putc(&arr, '"'));
				n++;
			}
			if (n > 0 && (eof || n == 1000))
			{
				const char *p[3] = {queue, NULL, delay};

				must(buf_putc(&arr, '}'));
				p[1] = arr.data;
				print_rows(exec_or_die(conn,
									   "SELECT unnest(deliver.send_batch($1, $2::jsonb[], delay => $3::interval))",
									   3, p));
				buf_reset(&arr);
				n = 0;
			}
		}
		free(line);
		buf_free(&arr);
	}
	PQfinish(conn);
	return 0;
}

static int
cmd_receive(int argc, char **argv)
{
	static struct option opts[] = {
		{"max", required_argument, NULL, 'n'},
		{"wait", required_argument, NULL, 'w'},
		{"group", required_argument, NULL, 'g'},
		{"visibility-timeout", required_argument, NULL, 'v'},
		{"ack", no_argument, NULL, 'a'},
		{NULL, 0, NULL, 0}
	};
	long long	max = 1;
	const char *wait = "0",
			   *group = "default",
			   *vt = NULL;
	char		maxs[32];
	bool		ack = false;
	int			c;
	PGconn	   *conn;
	const char *queue;

	optind = 1;
	while ((c = getopt_long(argc, argv, "n:w:g:v:a", opts, NULL)) != -1)
	{
		switch (c)
		{
			case 'n': max = int_arg("receive", "--max", optarg, 1, INT32_MAX); break;
			case 'w':
				(void) seconds_arg("receive", "--wait", optarg, true, HUGE_VAL, "0 or more");
				wait = optarg;
				break;
			case 'g': group = optarg; break;
			case 'v': vt = optarg; break;
			case 'a': ack = true; break;
			default: exit(EXIT_USAGE);
		}
	}
	if (optind >= argc)
		die(EXIT_USAGE, "receive: name a queue (deliver receive QUEUE [-n N] [--wait SECONDS])");
	queue = argv[optind];
	no_more_args("receive", argc, argv, optind + 1);
	if (snprintf(maxs, sizeof(maxs), "%lld", max) >= (int) sizeof(maxs))
		die(EXIT_FAILURE, "receive: --max does not fit");	/* cannot happen */
	conn = connect_or_die();
	{
		const char *p[6] = {queue, maxs, vt, wait, group, ack ? "t" : "f"};

		/* with --ack the messages are acked in the transaction that reads them */
		print_rows(exec_or_die(conn,
							   "SELECT row_to_json(r)::text FROM deliver.receive($1, $2::int, $3::interval,"
							   " make_interval(secs => $4::float8), $5) r"
							   " WHERE NOT $6::boolean OR deliver.ack($1, r.delivery_id)",
							   6, p));
	}
	PQfinish(conn);
	return 0;
}

static int
cmd_ack(int argc, char **argv)
{
	PGconn	   *conn;
	Buf			arr = BUF_INIT;

	if (argc < 3)
		die(EXIT_USAGE, "ack: deliver ack QUEUE DELIVERY_ID...");
	/* a bigint[] literal of the ids as parsed, never as given */
	must(buf_putc(&arr, '{'));
	for (int i = 2; i < argc; i++)
	{
		int64_t		id;
		Shown		sh;

		if (!parse_id(argv[i], &id))
			die(EXIT_USAGE, "ack: %s is not a delivery id (1 to %d digits, at most %" PRId64 ")",
				show(&sh, argv[i]), ID_MAX_DIGITS, INT64_MAX);
		must(buf_printf(&arr, "%s%" PRId64, i > 2 ? "," : "", id));
	}
	must(buf_putc(&arr, '}'));
	conn = connect_or_die();
	{
		const char *p[2] = {argv[1], arr.data};

		print_rows(exec_or_die(conn, "SELECT deliver.ack_batch($1, $2::bigint[])", 2, p));
	}
	PQfinish(conn);
	buf_free(&arr);
	return 0;
}

static int
cmd_stats(int argc, char **argv)
{
	PGconn	   *conn;
	const char *p[1] = {argc > 1 ? argv[1] : NULL};

	no_more_args("stats", argc, argv, 2);
	conn = connect_or_die();
	print_rows(exec_or_die(conn,
						   "SELECT jsonb_build_object('queue', q.queue_name) || row_to_json(m)::jsonb"
						   " FROM deliver.queue q, deliver.metrics(q.queue_name) m"
						   " WHERE $1::text IS NULL OR q.queue_name = $1"
						   " ORDER BY q.queue_name, m.consumer_group", 1, p));
	print_rows(exec_or_die(conn,
						   "SELECT jsonb_build_object('push_subscription', m.subscription_name)"
						   "       || row_to_json(m)::jsonb - 'subscription_name'"
						   " FROM deliver.push_metrics() m"
						   " WHERE $1::text IS NULL OR m.queue_name = $1", 1, p));
	PQfinish(conn);
	return 0;
}

/* ----------------------------------------------------------------
 * listen
 * ---------------------------------------------------------------- */

typedef struct Listen
{
	const char *slot;
	char	   *queues;			/* NULL: from the subscription, or all */
	char	   *group;
	const char *exec_cmd;
	const char *apply_sql;
	const char *offset_table;
	char	   *offset_ident;	/* offset_table, quoted (--apply) */
	bool		commits;		/* print commit lines too */
	long		batch;
	long		max_messages;
	bool		report;
	double		status_interval;

	/* streaming state */
	PGconn	   *repl;
	PGconn	   *sql;			/* --apply */
	uint64_t	confirmed;		/* last LSN confirmed to the server */
	uint64_t	offset;			/* --apply: stored offset */
	uint64_t	last_received;	/* highest LSN received */
	int64_t		last_status;

	/*
	 * The complete transactions not handled yet: buf holds what the handler
	 * gets (JSON lines of the messages; when printing with --commits, the
	 * commit lines too), cbuf the commit lines printed after --apply or
	 * --exec handled the batch.
	 */
	Buf			buf;
	Buf			cbuf;
	long		bcount;			/* messages in buf */
	uint64_t	bcommit;		/* LSN of the last complete transaction in buf */
	struct BatchTx
	{
		int64_t		commit_time;
		long		count;
	}		   *btx;			/* --report: the transactions in buf */
	size_t		nbtx,
				capbtx;
	/* the transaction being received */
	Buf			tx;				/* JSON lines of its messages */
	long		tcount;
	uint64_t	tcommit;		/* its commit LSN, from its messages */
	bool		in_tx;

	long		handled;		/* messages handled in total */
	/* --report */
	int64_t		first_usec;
	int64_t		last_usec;
	int64_t    *lat;
	size_t		nlat,
				caplat;
} Listen;

/* an LSN as pg_lsn prints it: 1-8 hex digits, '/', 1-8 hex digits */
static bool
parse_lsn(const char *s, uint64_t *out)
{
	const char *hex = "0123456789abcdefABCDEF";
	size_t		hi = strspn(s, hex),
				lo;

	if (hi < 1 || hi > 8 || s[hi] != '/')
		return false;
	lo = strspn(s + hi + 1, hex);
	if (lo < 1 || lo > 8 || s[hi + 1 + lo] != '\0')
		return false;
	*out = ((uint64_t) strtoul(s, NULL, 16) << 32) | (uint64_t) strtoul(s + hi + 1, NULL, 16);
	return true;
}

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

static bool
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

static void
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
static bool
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

/* the stream is not what the plugin sends: retrying cannot help */
static void
protocol_error(Listen *L, uint64_t lsn, const char *fmt,...) __attribute__((format(printf, 3, 4), noreturn));

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
 * A record of the plugin's binary format, the data of one XLogData message;
 * lsn is that message's start.  A message record joins the transaction being
 * received; a commit record ends it, and its messages then form a unit.
 */
static bool
take_record(Listen *L, const char *data, size_t len, uint64_t lsn)
{
	Record		rec;
	char		err[256];

	if (!record_parse(data, len, &rec, err, sizeof(err)))
		protocol_error(L, lsn, "%s (a record of %zu bytes)", err, len);
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

/*
 * Look the subscription up; check the slot.  Returns false on a transient
 * failure (the caller retries), exits on a permanent one.
 */
static bool
prepare_listen(Listen *L)
{
	PGconn	   *c = connect_sql(false);
	PGresult   *res;
	const char *p[1] = {L->slot};

	if (PQstatus(c) != CONNECTION_OK)
	{
		note("could not connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return false;
	}
	res = PQexecParams(c, "SELECT plugin, database = current_database(), slot_type FROM pg_replication_slots"
					   " WHERE slot_name = $1", 1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		note("could not read the replication slots: %s", PQresultErrorMessage(res));
		PQclear(res);
		PQfinish(c);
		return false;
	}
	if (PQntuples(res) == 0)
		die(EXIT_FATAL, "replication slot \"%s\" does not exist\n"
			"HINT: create it with SELECT deliver.create_push_subscription('QUEUE', '%s');",
			L->slot, L->slot);
	if (strcmp(PQgetvalue(res, 0, 2), "logical") != 0 || strcmp(PQgetvalue(res, 0, 0), "deliver") != 0)
		die(EXIT_FATAL, "replication slot \"%s\" uses plugin \"%s\", not \"deliver\"\n"
			"HINT: push subscriptions are slots created by deliver.create_push_subscription().",
			L->slot, PQgetvalue(res, 0, 0));
	if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
		die(EXIT_FATAL, "replication slot \"%s\" belongs to another database", L->slot);
	PQclear(res);

	if (L->queues == NULL)
	{
		res = PQexecParams(c, "SELECT q.queue_name, p.consumer_group FROM deliver.push_subscription p"
						   " JOIN deliver.queue q USING (queue_id) WHERE p.subscription_name = $1",
						   1, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		{
			L->queues = xstrdup(PQgetvalue(res, 0, 0));
			if (L->group == NULL && !PQgetisnull(res, 0, 1))
				L->group = xstrdup(PQgetvalue(res, 0, 1));
		}
		/* otherwise a plain deliver slot: every queue */
		PQclear(res);
	}

	if (L->apply_sql)
	{
		char	   *ident = PQescapeIdentifier(c, L->offset_table, strlen(L->offset_table));
		Buf			sql = BUF_INIT;
		Shown		sh;

		if (ident == NULL)
			die(EXIT_USAGE, "listen: --offset-table %s cannot be quoted: %s",
				show(&sh, L->offset_table), PQerrorMessage(c));
		free(L->offset_ident);
		L->offset_ident = xstrdup(ident);
		PQfreemem(ident);
		must(buf_printf(&sql, "CREATE TABLE IF NOT EXISTS %s (subscription text PRIMARY KEY,"
						" lsn pg_lsn NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
						L->offset_ident));
		PQclear(exec_or_die(c, sql.data, 0, NULL));
		buf_reset(&sql);
		must(buf_printf(&sql, "SELECT lsn FROM %s WHERE subscription = $1", L->offset_ident));
		res = exec_or_die(c, sql.data, 1, p);
		L->offset = 0;
		if (PQntuples(res) > 0 && !parse_lsn(PQgetvalue(res, 0, 0), &L->offset))
			die(EXIT_FATAL, "the offset of \"%s\" in %s is not an LSN: %s",
				L->slot, L->offset_ident, show(&sh, PQgetvalue(res, 0, 0)));
		PQclear(res);
		buf_free(&sql);
		if (L->sql)
			PQfinish(L->sql);
		L->sql = c;				/* kept for applying */
	}
	else
		PQfinish(c);
	return true;
}

/* connect for replication and start streaming; false: retry later */
static bool
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
	must(buf_printf(&cmd, "START_REPLICATION SLOT %s LOGICAL %X/%X (\"format\" 'binary', \"include_commit\" 'on'",
					slot, (unsigned) (start >> 32), (unsigned) start));
	PQfreemem(slot);
	if (L->queues)
	{
		char	   *v = PQescapeLiteral(L->repl, L->queues, strlen(L->queues));
		Shown		sh;

		if (v == NULL)
			die(EXIT_FATAL, "could not quote the queue names %s: %s",
				show(&sh, L->queues), PQerrorMessage(L->repl));
		must(buf_printf(&cmd, ", \"queues\" %s", v));
		PQfreemem(v);
	}
	if (L->group)
	{
		char	   *v = PQescapeLiteral(L->repl, L->group, strlen(L->group));
		Shown		sh;

		if (v == NULL)
			die(EXIT_FATAL, "could not quote the group name %s: %s",
				show(&sh, L->group), PQerrorMessage(L->repl));
		must(buf_printf(&cmd, ", \"consumer_group\" %s", v));
		PQfreemem(v);
	}
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
static bool
stream(Listen *L)
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
			if (!take_record(L, copybuf + 25, (size_t) r - 25, start))
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

static void
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

/*
 * --queues: a comma-separated list of queue names, as the plugin reads it
 * (blanks around names ignored); at least one name, none too long.
 */
static void
queues_arg(const char *s)
{
	char	   *copy = xstrdup(s);
	char	   *save = NULL;
	int			names = 0;
	Shown		sh;

	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		while (*tok == ' ')
			tok++;
		for (char *e = tok + strlen(tok); e > tok && e[-1] == ' ';)
			*--e = '\0';
		if (*tok == '\0')
			continue;
		name_arg("listen", "--queues: queue name", tok);
		names++;
	}
	free(copy);
	if (names == 0)
		die(EXIT_USAGE, "listen: --queues %s names no queue", show(&sh, s));
}

static int
cmd_listen(int argc, char **argv)
{
	static struct option opts[] = {
		{"queues", required_argument, NULL, 'q'},
		{"group", required_argument, NULL, 'g'},
		{"exec", required_argument, NULL, 'e'},
		{"apply", required_argument, NULL, 'A'},
		{"offset-table", required_argument, NULL, 'T'},
		{"batch", required_argument, NULL, 'b'},
		{"max-messages", required_argument, NULL, 'm'},
		{"commits", no_argument, NULL, 'c'},
		{"report", no_argument, NULL, 'r'},
		{"status-interval", required_argument, NULL, 's'},
		{NULL, 0, NULL, 0}
	};
	Listen		L;
	int			c;
	double		backoff = 0.5;

	memset(&L, 0, sizeof(L));
	L.batch = 1;
	L.offset_table = "deliver_push_offset";
	L.status_interval = 10;
	optind = 1;
	while ((c = getopt_long(argc, argv, "q:g:e:A:T:b:m:crs:", opts, NULL)) != -1)
	{
		switch (c)
		{
			case 'q':
				queues_arg(optarg);
				free(L.queues);
				L.queues = xstrdup(optarg);
				break;
			case 'g':
				name_arg("listen", "--group", optarg);
				free(L.group);
				L.group = xstrdup(optarg);
				break;
			case 'e': L.exec_cmd = optarg; break;
			case 'A': L.apply_sql = optarg; break;
			case 'T':
				name_arg("listen", "--offset-table", optarg);
				L.offset_table = optarg;
				break;
			case 'b': L.batch = (long) int_arg("listen", "--batch", optarg, 1, INT32_MAX); break;
			case 'm': L.max_messages = (long) int_arg("listen", "--max-messages", optarg, 0, LONG_MAX); break;
			case 'c': L.commits = true; break;
			case 'r': L.report = true; break;
			case 's':
				L.status_interval = seconds_arg("listen", "--status-interval", optarg, false, 3600,
												"more than 0, at most 3600");
				break;
			default: exit(EXIT_USAGE);
		}
	}
	if (optind >= argc)
		die(EXIT_USAGE, "listen: name a push subscription (deliver listen SUBSCRIPTION)");
	L.slot = argv[optind];
	no_more_args("listen", argc, argv, optind + 1);
	{
		Shown		sh;
		size_t		n = strlen(L.slot);

		/* a replication slot name, as Postgres allows them */
		if (n == 0 || n > PG_NAME_MAX || strspn(L.slot, "abcdefghijklmnopqrstuvwxyz0123456789_") != n)
			die(EXIT_USAGE, "listen: %s is not a subscription name (1 to %d of a-z, 0-9 and _)",
				show(&sh, L.slot), PG_NAME_MAX);
	}
	if (L.exec_cmd && L.apply_sql)
		die(EXIT_USAGE, "listen: --exec and --apply exclude each other");

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	while (!stop_requested && !(L.max_messages > 0 && L.handled >= L.max_messages))
	{
		bool		ok = prepare_listen(&L) && start_stream(&L);

		if (ok)
		{
			long		before = L.handled;

			ok = stream(&L);
			if (L.handled > before)
				backoff = 0.5;	/* progress: the next failure retries soon */
		}
		stop_stream(&L);
		if (ok || stop_requested)
			break;
		/* reconnect with backoff: 0.5 s doubling up to 30 s */
		note("reconnecting in %.1f s", backoff);
		for (double slept = 0; slept < backoff && !stop_requested; slept += 0.1)
			usleep(100000);
		backoff = backoff * 2 > 30 ? 30 : backoff * 2;
	}
	if (L.report)
		print_report(&L);
	if (L.sql)
		PQfinish(L.sql);
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f,
			"deliver: command-line client of the deliver extension\n"
			"\n"
			"Usage: deliver [-d CONNINFO] COMMAND [ARGS]\n"
			"\n"
			"  listen SUBSCRIPTION   stream a push subscription (replication protocol)\n"
			"      --exec CMD           run CMD (sh -c) per batch, messages as JSON lines on its\n"
			"                           stdin; confirm only when it exits 0 (at-least-once)\n"
			"      --apply SQL          run SQL per message ($1 = the message, jsonb) and store the\n"
			"                           position in the same transaction (exactly-once)\n"
			"      --offset-table T     the table --apply keeps positions in (deliver_push_offset)\n"
			"      --batch N            up to N messages per handler run, whole transactions (1)\n"
			"      --queues Q1,Q2       override the subscription's queues\n"
			"      --group G            override the subscription's consumer group\n"
			"      --commits            also print a line after each transaction (on standard\n"
			"                           output; never passed to --exec or --apply)\n"
			"      --max-messages N     exit after N messages\n"
			"      --report             print msgs/s and commit-to-consumer latency at exit\n"
			"      --status-interval S  seconds between status updates to the server (10)\n"
			"  send QUEUE [PAYLOAD]  send a JSON payload; without PAYLOAD (or -) one per stdin line\n"
			"      --headers JSON --key ORDERING_KEY --idempotency-key K --delay INTERVAL\n"
			"  receive QUEUE         receive messages as JSON lines\n"
			"      -n N --wait SECONDS --group G --visibility-timeout INTERVAL --ack\n"
			"  ack QUEUE ID...       ack deliveries\n"
			"  stats [QUEUE]         metrics of the queues and push subscriptions, as JSON lines\n"
			"\n"
			"The connection: -d CONNINFO (\"host=... dbname=...\" or a postgresql:// URI) and the\n"
			"libpq environment (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, ...).\n");
}

int
main(int argc, char **argv)
{
	int			i = 1;

	while (i < argc && argv[i][0] == '-')
	{
		if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
		{
			conninfo = argv[i + 1];
			i += 2;
		}
		else if (strncmp(argv[i], "--dbname=", 9) == 0)
			conninfo = argv[i++] + 9;
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
		{
			usage(stdout);
			return 0;
		}
		else
		{
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc)
	{
		usage(stderr);
		return EXIT_USAGE;
	}
	argc -= i;
	argv += i;
	if (strcmp(argv[0], "listen") == 0)
		return cmd_listen(argc, argv);
	if (strcmp(argv[0], "send") == 0)
		return cmd_send(argc, argv);
	if (strcmp(argv[0], "receive") == 0)
		return cmd_receive(argc, argv);
	if (strcmp(argv[0], "ack") == 0)
		return cmd_ack(argc, argv);
	if (strcmp(argv[0], "stats") == 0)
		return cmd_stats(argc, argv);
	if (strcmp(argv[0], "help") == 0)
	{
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return EXIT_USAGE;
}
