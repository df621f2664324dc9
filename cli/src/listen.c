/*
 * listen.c - deliver listen SUBSCRIPTION: streams a push subscription over
 * the replication protocol (START_REPLICATION SLOT ... LOGICAL with the
 * deliver output plugin) and confirms a transaction's LSN to the server
 * only after its messages were handled: printed and flushed, passed to a
 * command that exited 0, or applied in the database together with the
 * subscription's offset.  Unconfirmed messages come again after a restart
 * or a reconnection (at-least-once); with --apply they are applied exactly
 * once.
 *
 * It asks the plugin for its binary format, whose records say what they
 * are (a message or the commit of a transaction) and carry their lengths,
 * checks each record against the bytes received (record.c), and writes the
 * JSON lines itself, in the shape of the plugin's json format.
 *
 * This file reads the options, looks the subscription up and reconnects
 * with backoff; replication.c streams, handler.c handles.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "handler.h"
#include "listen.h"
#include "main.h"
#include "replication.h"

volatile sig_atomic_t stop_requested = 0;

static void
on_signal(int sig)
{
	(void) sig;
	stop_requested = 1;
}

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
	{
		PGresult   *sub;
		bool		restore;

		/* the subscription without its slot: a failover (docs/push.md) */
		PQclear(res);
		sub = PQexecParams(c, "SELECT 1 FROM deliver.push_subscription WHERE subscription_name = $1",
						   1, NULL, p, NULL, NULL, 0);
		restore = PQresultStatus(sub) == PGRES_TUPLES_OK && PQntuples(sub) == 1;
		PQclear(sub);
		if (restore)
			die(EXIT_FATAL, "replication slot \"%s\" does not exist, but the push subscription does "
				"(after a failover: logical slots are not replicated)\n"
				"HINT: create the slot anew with SELECT deliver.restore_push_subscription('%s'); "
				"and read what it will not stream with deliver.push_backlog() before you listen.",
				L->slot, L->slot);
		die(EXIT_FATAL, "replication slot \"%s\" does not exist\n"
			"HINT: create it with SELECT deliver.create_push_subscription('QUEUE', '%s');",
			L->slot, L->slot);
	}
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

int
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

			ok = run_stream(&L);
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
