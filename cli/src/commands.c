/*
 * commands.c - the SQL commands of the deliver client: each is one call (or
 * a few) of deliver's SQL functions on an ordinary connection, and prints
 * what they return, one JSON value or id per line.
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "buf.h"
#include "commands.h"
#include "main.h"

/*
 * What receive passes for an option left out, where deliver.receive
 * refuses NULL: these mirror its defaults (max_messages DEFAULT 1,
 * consumer_group DEFAULT 'default') and must change with them.  They are
 * no limits: the database checks every range.
 */
#define RECEIVE_DEFAULT_MAX		1
#define RECEIVE_DEFAULT_GROUP	"default"

/*
 * send without a payload: standard input's lines go in batches of this
 * many, a transaction each (the client's own choice, well under the
 * default deliver.max_batch_size).
 */
#define SEND_BATCH_LINES		1000

/* a connection, or exit */
static PGconn *
connect_or_die(void)
{
	PGconn	   *conn = connect_sql(false);

	if (PQstatus(conn) != CONNECTION_OK)
		die(EXIT_FAILURE, "could not connect: %s", PQerrorMessage(conn));
	return conn;
}

/* print every row's first column, one per line */
static void
print_rows(PGresult *res)
{
	for (int i = 0; i < PQntuples(res); i++)
		printf("%s\n", PQgetvalue(res, i, 0));
	fflush(stdout);
}

int
cmd_send(int argc, char **argv)
{
	static struct option opts[] = {
		{"headers", required_argument, NULL, 'H'},
		{"key", required_argument, NULL, 'k'},
		{"idempotency-key", required_argument, NULL, 'i'},
		{"delay", required_argument, NULL, 'D'},
		{"priority", required_argument, NULL, 'p'},
		{NULL, 0, NULL, 0}
	};
	const char *headers = NULL,
			   *key = NULL,
			   *idem = NULL,
			   *delay = NULL,
			   *priority = NULL;
	int			c;
	PGconn	   *conn;
	const char *queue;

	optind = 1;
	while ((c = getopt_long(argc, argv, "H:k:i:D:p:", opts, NULL)) != -1)
	{
		switch (c)
		{
			case 'H': headers = optarg; break;
			case 'k': key = optarg; break;
			case 'i': idem = optarg; break;
			case 'D': delay = optarg; break;
			case 'p':
				(void) int_arg("send", "--priority", optarg, 0, 9);
				priority = optarg;
				break;
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
		const char *p[7] = {queue, argv[optind], headers, key, idem, delay, priority};

		print_rows(exec_or_die(conn, "SELECT deliver.send($1, $2::jsonb, $3::jsonb, $4, $5, $6::interval, "
							   "priority => $7::int)", 7, p));
	}
	else
	{
		/* one message per line of standard input, SEND_BATCH_LINES per transaction */
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
			if (n > 0 && (eof || n == SEND_BATCH_LINES))
			{
				const char *p[4] = {queue, NULL, delay, priority};

				must(buf_putc(&arr, '}'));
				p[1] = arr.data;
				print_rows(exec_or_die(conn,
									   "SELECT unnest(deliver.send_batch($1, $2::jsonb[], delay => $3::interval, "
									   "priority => $4::int))",
									   4, p));
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

int
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
	long long	max = RECEIVE_DEFAULT_MAX;
	const char *wait = "0",
			   *group = RECEIVE_DEFAULT_GROUP,
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

int
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

int
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
