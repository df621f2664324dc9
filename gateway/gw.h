/*
 * deliverd: the HTTP/JSON gateway of deliver.  Shared declarations.
 */
#ifndef DELIVERD_GW_H
#define DELIVERD_GW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- routes (router.c) ---- */

typedef enum
{
	R_NOT_FOUND = 0,
	R_HEALTHZ,
	R_READYZ,
	R_METRICS,
	R_OPENAPI,
	R_QUEUES_LIST,
	R_QUEUE_CREATE,
	R_QUEUE_GET,
	R_QUEUE_DROP,
	R_GROUPS_LIST,
	R_GROUP_CREATE,
	R_GROUP_DROP,
	R_SEND,
	R_SEND_BATCH,
	R_RECEIVE,
	R_ACK_BATCH,
	R_ACK,
	R_NACK,
	R_EXTEND,
	R_DEAD_LETTERS,
	R_REDRIVE,
	R_QUEUE_METRICS,
	R_STREAM,
	R__COUNT
} route_id;

#define NAME_MAX_LEN 63

typedef struct
{
	route_id	id;
	int			status;			/* 0: matched; 404 or 405 otherwise; 400: name too long, id not an integer */
	char		queue[NAME_MAX_LEN + 1];
	char		group[NAME_MAX_LEN + 1];
	char		delivery_id[24];	/* a bigint, in decimal */
} route_match;

extern const char *const route_names[R__COUNT];

/* Match method and (decoded) path; fills m, returns m->status. */
int			route_request(const char *method, const char *path, route_match *m);

/* true for the routes that run SQL as the caller's role */
bool		route_needs_auth(route_id id);

/*
 * Query parameters of receive and stream: parsed, not range-checked (the
 * database checks ranges), except wait <= max_wait_ms.
 */
typedef struct
{
	long		max;
	bool		has_vt;
	long		vt_ms;			/* visibility timeout */
	long		wait_ms;		/* long-poll wait, <= max_wait_ms */
	char		group[NAME_MAX_LEN + 1];
	bool		has_group;
} receive_params;

typedef const char *(*param_getter) (void *ctx, const char *key);

/* Returns NULL when fine, else a message for a 400 answer. */
const char *parse_receive_params(param_getter get, void *ctx, long max_wait_ms,
								 int default_max, receive_params *p);
bool		valid_name(const char *s);	/* 1-63 bytes */
bool		parse_int_range(const char *s, long lo, long hi, long *out);
bool		parse_int(const char *s, long *out);
bool		parse_seconds(const char *s, long *out_ms);

/* SQLSTATE to HTTP status */
int			http_status_for_sqlstate(const char *sqlstate);
bool		sqlstate_is_unavailable(const char *sqlstate);

/* ---- small growable buffer and JSON output ---- */
typedef struct
{
	char	   *data;
	size_t		len;
	size_t		cap;
} buf_t;

void		buf_init(buf_t *b);
void		buf_free(buf_t *b);
void		buf_add(buf_t *b, const char *s, size_t n);
void		buf_puts(buf_t *b, const char *s);
void		buf_printf(buf_t *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
void		buf_json_str(buf_t *b, const char *s);	/* "..." escaped; null for NULL */

#endif

/* ---- libpq pool (pool.c) ---- */
#include <libpq-fe.h>

typedef struct
{
	const char *name;
	const char *sql;
	int			nparams;
} stmt_def;

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
} exec_result;

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
void		exec_result_clear(exec_result *r);
void		pool_cancel_long_polls(void);
void		pool_get_stats(pool_stats *s);
void		pool_close(void);
int			pool_long_polls(void);

/* ---- auth (auth.c) ---- */
#define ROLE_MAX_LEN 63

int			auth_init(const char *jwt_secret, const char *token_file, const char *anon_role);
/* none, public, current_user, session_user, current_role (any case) */
bool		auth_role_reserved(const char *role);
bool		auth_configured(void);
/*
 * Map an Authorization header value (may be NULL) to a role.  Returns 0 and
 * fills role and exp (the token's expiry in seconds since the epoch, 0 for
 * none), or 401 and sets *why.
 */
int			auth_request(const char *authorization, char *role, double *exp, const char **why);
/* Verify an HS256 JWT; 0 and role and exp filled, else 401 with *why.  (fuzzed) */
int			jwt_verify(const char *token, const unsigned char *key, size_t keylen,
					   long now, char *role, double *exp, const char **why);
