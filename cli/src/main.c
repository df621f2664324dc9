/*
 * deliver - command-line client of the deliver extension.
 *
 *   deliver [-d CONNINFO] listen SUBSCRIPTION [options]
 *   deliver [-d CONNINFO] send QUEUE [PAYLOAD] [options]
 *   deliver [-d CONNINFO] receive QUEUE [options]
 *   deliver [-d CONNINFO] ack QUEUE DELIVERY_ID...
 *   deliver [-d CONNINFO] stats [QUEUE]
 *
 * This file reads the options every command shares, runs the command
 * (commands.c: send, receive, ack, stats; listen.c: listen), and has what
 * they all use: messages and exits, the checks of arguments, the
 * connection.
 *
 * The connection comes from -d (a conninfo string or URI) and the usual libpq
 * environment (PGHOST, PGPORT, PGDATABASE, PGUSER, ...).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "commands.h"
#include "listen.h"
#include "main.h"

static const char *conninfo = "";

/* "deliver: ", the message and a newline on stderr */
static void
vnote(const char *fmt, va_list ap)
{
	fprintf(stderr, "deliver: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

/* a message, then exit (main.h) */
void
die(int code, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vnote(fmt, ap);
	va_end(ap);
	exit(code);
}

/* a message, and go on */
void
note(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vnote(fmt, ap);
	va_end(ap);
}

/* exit when a buffer could not grow */
void
must(bool ok)
{
	if (!ok)
		die(EXIT_FAILURE, "out of memory");
}

/* a NULL here would mean "every queue", "no group" */
char *
xstrdup(const char *s)
{
	char	   *copy = strdup(s);

	if (copy == NULL)
		die(EXIT_FAILURE, "out of memory");
	return copy;
}

/* arg quoted for a message, in sh (see main.h) */
const char *
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
bool
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
long long
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
double
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
void
name_arg(const char *cmd, const char *what, const char *s)
{
	Shown		sh;

	if (s[0] == '\0')
		die(EXIT_USAGE, "%s: %s is empty", cmd, what);
	if (strlen(s) > PG_NAME_MAX)
		die(EXIT_USAGE, "%s: %s %s is too long (at most %d bytes)", cmd, what, show(&sh, s), PG_NAME_MAX);
}

/* no arguments after the last one expected; or exit */
void
no_more_args(const char *cmd, int argc, char **argv, int next)
{
	Shown		sh;

	if (next < argc)
		die(EXIT_USAGE, "%s: unexpected argument %s", cmd, show(&sh, argv[next]));
}

int64_t
now_usec(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}

/* a connection from -d and the libpq environment; replication: for streaming */
PGconn *
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

/* run sql with its parameters; its result, or exit with the error and SQLSTATE */
PGresult *
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

/* what the commands are and take */
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
			"      --priority 0-9 (a queue with priorities)\n"
			"  receive QUEUE         receive messages as JSON lines\n"
			"      -n N --wait SECONDS --group G --visibility-timeout INTERVAL --ack\n"
			"  ack QUEUE ID...       ack deliveries\n"
			"  stats [QUEUE]         metrics of the queues and push subscriptions, as JSON lines\n"
			"\n"
			"The connection: -d CONNINFO (\"host=... dbname=...\" or a postgresql:// URI) and the\n"
			"libpq environment (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, ...).\n");
}

/* the options before the command, then the command */
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
