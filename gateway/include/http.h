/*
 * deliverd: the HTTP side of a request (http.c): reading it (body, size
 * limit, route, credentials), the answers and errors it gets, the access
 * log, and libmicrohttpd's callbacks.
 */
#ifndef DELIVERD_HTTP_H
#define DELIVERD_HTTP_H

#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <microhttpd.h>

#include "auth.h"
#include "buf.h"
#include "pool.h"
#include "router.h"

typedef struct
{
	struct timespec start;
	route_match rm;
	buf_t		body;
	bool		too_large;
	bool		answered;
	int			status;
	size_t		bytes_out;
	char		role[ROLE_MAX_LEN + 1];
	double		exp;			/* the token's expiry (seconds since the epoch), 0: none */
	bool		read_only;		/* the token may only read (or the setting read_only) */
	char		method[12];
	char		path[256];
	char		remote[64];
	char		sqlstate[6];
} request_t;

/* libmicrohttpd's callbacks: a request, its end, URL decoding, its log */
enum MHD_Result http_handle(void *cls, struct MHD_Connection *c, const char *url,
							const char *method, const char *version, const char *upload_data,
							size_t *upload_data_size, void **con_cls);
void		http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
						   enum MHD_RequestTerminationCode toe);
size_t		http_unescape(void *cls, struct MHD_Connection *c, char *s);
void		http_log(void *cls, const char *fmt, va_list ap);

/* Open the access log named by the setting (off, - for stderr, a file); 0 or -1. */
int			http_open_access_log(const char *setting);
/* Requests being served (read by the shutdown and /metrics). */
int			http_inflight(void);

/* Answers: each records its status in rq for the log and the metrics. */
enum MHD_Result send_response(struct MHD_Connection *c, request_t *rq, int status,
							  const char *ctype, const char *body, size_t len, int retry_after);
/* the same with one more header (not sent when header or value is NULL) */
enum MHD_Result send_response_header(struct MHD_Connection *c, request_t *rq, int status,
									 const char *ctype, const char *body, size_t len,
									 int retry_after, const char *header, const char *value);
/* src into dst (cap bytes), printable ASCII only (others as '?'), for the log */
void		copy_printable(char *dst, size_t cap, const char *src);
enum MHD_Result send_json(struct MHD_Connection *c, request_t *rq, int status, const char *json);
/* {"error", "detail", "hint", "sqlstate"}; Retry-After when retry_after > 0 */
enum MHD_Result send_error(struct MHD_Connection *c, request_t *rq, int status, const char *msg,
						   const char *detail, const char *hint, const char *sqlstate,
						   int retry_after);
/* the error of a statement that failed (a 503 always has a Retry-After) */
enum MHD_Result send_exec_error(struct MHD_Connection *c, request_t *rq, exec_result *r);

/* A query argument of connection ctx (a param_getter). */
const char *get_arg(void *ctx, const char *key);

/* Milliseconds left until exp (seconds since the epoch); may be negative. */
long		ms_until(double exp);
/* Seconds since since (CLOCK_MONOTONIC). */
double		elapsed(const struct timespec *since);

#endif
