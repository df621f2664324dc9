/*
 * deliverd (cluster mode): a pool of libpq connections to one database (a
 * shard's primary, or the router) whose every wait has a deadline
 * (shardpool.c).  A connector thread per pool keeps the connections open,
 * going through the hosts of a multi-host conninfo one at a time with a
 * connect timeout each, and backs off while none answers; statements run
 * with libpq's asynchronous calls and a poll() deadline, so a server that
 * stops answering (a frozen primary) costs a request its deadline, not a
 * hang.
 */
#ifndef DELIVERD_SHARDPOOL_H
#define DELIVERD_SHARDPOOL_H

#include <stdbool.h>

#include "pool.h"

typedef struct shardpool shardpool;

/* sp_exec flags */
#define SP_WRITE	1			/* a lost reply leaves the outcome in doubt (08007) */
#define SP_FAST		2			/* do not wait for a connection while the pool is down */

typedef struct
{
	int			size;
	int			connected;
	int			in_use;
	int			long_polls;
	bool		up;
	long		connects;
	long		connect_failures;
	long		broken;
	long		timeouts;
	long		in_doubt;
	int			backoff_ms;
} shardpool_stats;


/*
 * A pool of size connections to conninfo (extra, when not NULL, holds
 * libpq options that win over the conninfo's), named name in errors and
 * metrics.  Its connector thread starts at once.  A statement given at
 * least half of answer_timeout_ms that gets no answer marks the server down
 * (its connections are made again); one given less (what was left of a
 * request's time) only loses its connection.
 */
shardpool  *sp_create(const char *name, const char *conninfo, const char *extra, int size,
					  int connect_timeout_ms, int answer_timeout_ms);
/* A new conninfo (the map changed): the connections made with the old one are replaced. */
void		sp_set_conninfo(shardpool *p, const char *conninfo);
/* false while the pool has no connection and cannot make one, or just lost its server */
bool		sp_available(shardpool *p);
/*
 * Run sql (one statement, text parameters) as role (set_config('role', ...)
 * in the same implicit transaction; NULL: the login role).  Everything,
 * waiting for a connection included, ends by deadline (mono_ms()
 * milliseconds): then the connection is dropped and the answer is 503.  With
 * SP_WRITE a statement whose reply was lost after it was sent is reported as
 * in doubt: 503, SQLSTATE 08007, out->in_doubt.  A deadline already past
 * sends nothing: 503, SQLSTATE 57014.
 */
void		sp_exec(shardpool *p, const char *role, const char *sql, int nparams,
					const char *const *params, long long deadline, int flags, exec_result *out);
/*
 * A statement that waits for messages (a long poll) may start: true, and
 * counted until sp_long_poll_end, while fewer than all but one of the pool's
 * connections are held so; false otherwise (poll without waiting).  One
 * connection always stays for short requests, as on a single node.
 */
bool		sp_long_poll_begin(shardpool *p);
void		sp_long_poll_end(shardpool *p);
void		sp_get_stats(shardpool *p, shardpool_stats *s);
/* Stop the connector and close the idle connections (at shutdown). */
void		sp_stop(shardpool *p);

#endif
