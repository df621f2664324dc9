/*
 * deliverd: the outcome of a statement run through a pool (pool.c in single
 * mode, shardpool.c in cluster mode), the error parts taken from libpq, and
 * the little helpers both pools need (result.c).
 */
#ifndef DELIVERD_RESULT_H
#define DELIVERD_RESULT_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

typedef struct
{
	int			status;			/* HTTP status: 200 when the statement succeeded */
	PGresult   *res;			/* the statement's rows (status 200), caller clears */
	char		sqlstate[6];
	char	   *message;		/* error parts (malloc'd) */
	char	   *detail;
	char	   *hint;
	int			retry_after;	/* seconds, for 503 */
	int			failed_query;	/* which query of the pipeline failed */
	bool		in_doubt;		/* (cluster mode) sent, reply lost: may have committed */
} exec_result;

void		exec_result_clear(exec_result *r);
/* An error: its status, SQLSTATE and parts (copied); a 503 gets Retry-After 1 s when it has none. */
void		exec_result_set_error(exec_result *out, int status, const char *sqlstate,
								  const char *msg, const char *detail, const char *hint);
/*
 * The error of r (NULL: of the connection): its SQLSTATE and parts; a
 * libpq-side failure (no SQLSTATE, or the connection broken) is 08006 with
 * the first line of libpq's message, unless the server said it shuts down
 * (57P0x).
 */
void		exec_result_from_pg(exec_result *out, PGconn *conn, const PGresult *r);

/*
 * An idle pooled connection that the server closed meanwhile (a restart, a
 * failover) is dead: it has nothing to read unless it is the server's
 * goodbye (57P01 and EOF).
 */
bool		pg_idle_conn_alive(PGconn *c);

/* Monotonic milliseconds (the clock of every deadline in deliverd). */
long long	mono_ms(void);
/* strdup that aborts when memory runs out; NULL stays NULL */
char	   *xstrdup(const char *s);
/* The first line of s (NULL: empty), into dst. */
void		first_line(char *dst, size_t cap, const char *s);

#endif
