/*
 * listen.h - deliver listen: a push subscription streamed over the
 * replication protocol (listen.c: the command and its reconnections;
 * replication.c: the stream; handler.c: what is done with the messages).
 */
#ifndef DELIVER_CLI_LISTEN_H
#define DELIVER_CLI_LISTEN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"

/* the options of listen and the state of its stream */
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

/* set by SIGINT and SIGTERM: stop after what is handled */
extern volatile sig_atomic_t stop_requested;

/* deliver listen SUBSCRIPTION [options]; the exit status */
extern int	cmd_listen(int argc, char **argv);

#endif
