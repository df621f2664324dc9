/*
 * deliverd: a fixed-size pool of libpq connections in pipeline mode, each
 * with every statement prepared (pool.c).
 */
#ifndef DELIVERD_POOL_H
#define DELIVERD_POOL_H

#include <pthread.h>
#include <stdbool.h>

#include <libpq-fe.h>

#include "result.h"

typedef struct
{
	const char *name;
	const char *sql;
	int			nparams;
} stmt_def;

typedef struct
{
	int			size;
	int			idle;
	int			in_use;
	int			connected;
	int			long_polls;
	long		connects;
	long		connect_failures;
	long		broken;
	long		acquire_timeouts;
	int			backoff_ms;
} pool_stats;

int			pool_init(const char *conninfo, int size, int acquire_timeout_ms,
					  const stmt_def *stmts, int nstmts);
/*
 * Run prepared statement stmt (as role when role is not NULL: set_config
 * ('role', role, true) in the same pipeline and implicit transaction).
 * long_poll marks the connection for cancellation at shutdown.
 */
void		pool_exec(const char *role, int stmt, int nparams, const char *const *params,
					  bool long_poll, exec_result *out);
void		pool_cancel_long_polls(void);
void		pool_get_stats(pool_stats *s);
void		pool_close(void);
/*
 * A long poll may start: true, and counted until pool_long_poll_end, while
 * fewer than all but one of the connections are held so (checked and
 * counted at once: concurrent receives cannot all pass); false: receive
 * without waiting.  One connection always stays for short requests.
 */
bool		pool_long_poll_begin(void);
void		pool_long_poll_end(void);

/*
 * The rule behind both pools' reservations (this one's and each shard
 * pool's): under mu, count one more long poll in *held while *held < size - 1.
 */
bool		long_poll_reserve(pthread_mutex_t *mu, int *held, int size);
void		long_poll_release(pthread_mutex_t *mu, int *held);

#endif
