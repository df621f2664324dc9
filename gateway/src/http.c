/*
 * deliverd: the HTTP side of a request.  libmicrohttpd calls http_handle
 * for each request (its body arrives in pieces), and http_completed when it
 * is over, answered or not; in between the request is read, checked (size,
 * route, credentials) and handed to api_dispatch.
 */
#include "api.h"
#include "config.h"
#include "conns.h"
#include "http.h"
#include "main.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static atomic_int inflight;
static FILE *access_log;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

/*
 * Milliseconds left until exp (seconds since the epoch); may be negative.
 * Clamped to a year either way: a token's exp is any JSON number, and a
 * double beyond long's range does not convert.
 */
long
ms_until(double exp)
{
	struct timespec now;
	double		ms;
	const double year = 366.0 * 24 * 3600 * 1000;

	clock_gettime(CLOCK_REALTIME, &now);
	ms = floor((exp - (double) now.tv_sec - (double) now.tv_nsec / 1e9) * 1000.0);
	if (!(ms < year))
		ms = year;				/* (NaN too) */
	if (ms < -year)
		ms = -year;
	return (long) ms;
}

/* Seconds since since (CLOCK_MONOTONIC). */
double
elapsed(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double) (now.tv_sec - since->tv_sec) + (double) (now.tv_nsec - since->tv_nsec) / 1e9;
}

void
copy_printable(char *dst, size_t cap, const char *src)
{
	size_t		i = 0;

	for (; src && *src && i + 1 < cap; src++)
	{
		unsigned char c = (unsigned char) *src;

		dst[i++] = (char) (c >= 0x20 && c < 0x7f ? c : '?');
	}
	dst[i] = '\0';
}

/* One JSON line per request: who asked what, the answer, how long it took. */
static void
log_access(request_t *rq, double secs)
{
	buf_t		b;
	time_t		t = time(NULL);
	struct tm	tm;
	char		ts[32];

	if (!access_log)
		return;
	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	buf_init(&b);
	buf_printf(&b, "{\"ts\":\"%s\",\"remote\":", ts);
	buf_json_str(&b, rq->remote);
	buf_puts(&b, ",\"method\":");
	buf_json_str(&b, rq->method);
	buf_puts(&b, ",\"path\":");
	buf_json_str(&b, rq->path);
	buf_printf(&b, ",\"route\":\"%s\",\"status\":%d,\"ms\":%.3f,\"bytes\":%zu,\"role\":",
			   route_names[rq->rm.id], rq->status, secs * 1000.0, rq->bytes_out);
	buf_json_str(&b, rq->role[0] ? rq->role : NULL);
	buf_puts(&b, ",\"sqlstate\":");
	buf_json_str(&b, rq->sqlstate[0] ? rq->sqlstate : NULL);
	buf_puts(&b, "}\n");
	pthread_mutex_lock(&log_mu);
	fwrite(b.data, 1, b.len, access_log);
	fflush(access_log);
	pthread_mutex_unlock(&log_mu);
	buf_free(&b);
}

enum MHD_Result
send_response(struct MHD_Connection *c, request_t *rq, int status, const char *ctype,
			  const char *body, size_t len, int retry_after)
{
	return send_response_header(c, rq, status, ctype, body, len, retry_after, NULL, NULL);
}

enum MHD_Result
send_response_header(struct MHD_Connection *c, request_t *rq, int status, const char *ctype,
					 const char *body, size_t len, int retry_after, const char *header,
					 const char *value)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", ctype);
	if (header && value)
		MHD_add_response_header(resp, header, value);
	if (retry_after > 0)
	{
		char		ra[16];

		snprintf(ra, sizeof(ra), "%d", retry_after);
		MHD_add_response_header(resp, "Retry-After", ra);
	}
	if (status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
	if (shutting_down())
		MHD_add_response_header(resp, "Connection", "close");
	rq->status = status;
	rq->bytes_out = len;
	rq->answered = true;
	ret = MHD_queue_response(c, (unsigned) status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		conns_phase(c, CONN_SENDING);
	return ret;
}

enum MHD_Result
send_json(struct MHD_Connection *c, request_t *rq, int status, const char *json)
{
	return send_response(c, rq, status, "application/json", json, strlen(json), 0);
}

enum MHD_Result
send_error(struct MHD_Connection *c, request_t *rq, int status, const char *msg,
		   const char *detail, const char *hint, const char *sqlstate, int retry_after)
{
	buf_t		b;
	enum MHD_Result ret;
	const char *error = msg;

	buf_init(&b);
	buf_puts(&b, "{\"error\":");
	buf_json_str(&b, error);
	buf_puts(&b, ",\"detail\":");
	buf_json_str(&b, detail);
	buf_puts(&b, ",\"hint\":");
	buf_json_str(&b, hint);
	buf_puts(&b, ",\"sqlstate\":");
	buf_json_str(&b, sqlstate && *sqlstate ? sqlstate : NULL);
	buf_puts(&b, "}");
	if (sqlstate)
		snprintf(rq->sqlstate, sizeof(rq->sqlstate), "%s", sqlstate);
	ret = send_response(c, rq, status, "application/json", b.data, b.len, retry_after);
	buf_free(&b);
	return ret;
}

enum MHD_Result
send_exec_error(struct MHD_Connection *c, request_t *rq, exec_result *r)
{
	return send_error(c, rq, r->status, r->message ? r->message : "error", r->detail, r->hint,
					  r->sqlstate, r->status == 503 ? (r->retry_after > 0 ? r->retry_after : 1) : 0);
}

/* a query argument of the request (a param_getter for the router) */
const char *
get_arg(void *ctx, const char *key)
{
	return MHD_lookup_connection_value((struct MHD_Connection *) ctx, MHD_GET_ARGUMENT_KIND, key);
}

/*
 * A request: called first with its headers (the request is set up and
 * routed), then with each piece of its body, then with none once the body
 * is all there: then it is answered.
 */
enum MHD_Result
http_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	request_t  *rq = *con_cls;
	const char *ikey;

	(void) cls;
	(void) version;
	if (!rq)
	{
		const union MHD_ConnectionInfo *ci;
		const char *cl;

		rq = calloc(1, sizeof(request_t));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		atomic_fetch_add(&inflight, 1);
		clock_gettime(CLOCK_MONOTONIC, &rq->start);
		buf_init(&rq->body);
		copy_printable(rq->method, sizeof(rq->method), method);
		copy_printable(rq->path, sizeof(rq->path), url);
		ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *) ci->client_addr)->sin_addr,
					  rq->remote, sizeof(rq->remote));
		route_request(method, url, &rq->rm);
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		if (cl && strtoll(cl, NULL, 10) > cfg.max_body)
			return send_error(c, rq, 413, "request body too large", NULL, NULL, "54000", 0);
		conns_phase(c, CONN_BODY);
		return MHD_YES;
	}
	if (*upload_data_size)
	{
		if (!rq->too_large && !rq->answered)
		{
			if (rq->body.len + *upload_data_size > (size_t) cfg.max_body)
			{
				rq->too_large = true;
				buf_free(&rq->body);
			}
			else
				buf_add(&rq->body, upload_data, *upload_data_size);
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	conns_phase(c, CONN_ANSWERING);
	if (rq->answered)
		return MHD_YES;
	if (rq->too_large)
		return send_error(c, rq, 413, "request body too large", NULL, NULL, "54000", 0);
	/* deliver's limit, here before a batch makes a key per message of it */
	ikey = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
	if (ikey && strlen(ikey) > KEY_MAX_LEN)
		return send_error(c, rq, 413, "Idempotency-Key is longer than " KEY_MAX_LEN_STR " bytes", NULL,
						  "A batch's messages get the keys K:0, K:1, ...: keep K shorter still.", "54000", 0);
	if (rq->rm.status == 405)
		return send_error(c, rq, 405, "method not allowed", NULL, "See /openapi.json.", NULL, 0);
	if (rq->rm.status == 400 && cfg.router)
		return send_error(c, rq, 400, "a name in the path is too long, or an id is malformed",
						  NULL, "Names are 1 to " NAME_MAX_LEN_STR " bytes; delivery and message ids of a "
						  "cluster are partition:epoch:id, as the gateway returned them.", "42602", 0);
	if (rq->rm.status == 400)
		return send_error(c, rq, 400, "a name in the path is too long, or a delivery id is not an integer",
						  NULL, "Names are 1 to " NAME_MAX_LEN_STR " bytes; delivery ids are 64-bit integers.",
						  "42602", 0);
	if (rq->rm.status != 0)
		return send_error(c, rq, 404, "no such route", NULL, "See /openapi.json.", NULL, 0);
	if (route_needs_auth(rq->rm.id))
	{
		const char *why = NULL;

		if (auth_request(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
						 rq->role, &rq->exp, &rq->read_only, &why) != 0)
		{
			rq->role[0] = '\0';
			return send_error(c, rq, 401, why, NULL, NULL, "28000", 0);
		}
		if (cfg.read_only)
			rq->read_only = true;
		if (rq->read_only && !route_is_read_only(rq->rm.id))
			return send_error(c, rq, 403, "this token is read-only", NULL,
							  "A read-only token may use the routes that only read: the GET routes "
							  "but the stream.", "42501", 0);
	}
	return api_dispatch(c, rq);
}

/* A request is over (answered, or the client left): count it and log it. */
void
http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			   enum MHD_RequestTerminationCode toe)
{
	request_t  *rq = *con_cls;
	double		secs;

	(void) cls;
	if (!rq)
		return;
	conns_phase(c, CONN_HEADERS);
	secs = elapsed(&rq->start);
	if (!rq->answered)
		rq->status = 499;		/* the client went away first */
	(void) toe;
	metrics_record(rq->rm.id, rq->status, secs);
	log_access(rq, secs);
	buf_free(&rq->body);
	free(rq);
	*con_cls = NULL;
	atomic_fetch_sub(&inflight, 1);
}

/*
 * Percent-decoding of the URL path and the query arguments: as
 * libmicrohttpd's own, except that %00 and %2F stay encoded.  Decoded, an
 * encoded NUL would cut a name short ("DELETE /v1/queues/hq%00" would drop
 * queue hq) and an encoded slash would add a path segment
 * ("/v1/queues/hq%2Fmessages" would be the send route); left encoded, both
 * fail the name check (400).
 */
static int
hexval(char c)
{
	return isdigit((unsigned char) c) ? c - '0' : (tolower((unsigned char) c) - 'a' + 10);
}

size_t
http_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	char	   *r = s;
	char	   *w = s;

	(void) cls;
	(void) c;
	while (*r)
	{
		if (r[0] == '%' && isxdigit((unsigned char) r[1]) && isxdigit((unsigned char) r[2]))
		{
			int			v = hexval(r[1]) * 16 + hexval(r[2]);

			if (v != 0 && v != '/')
			{
				*w++ = (char) v;
				r += 3;
				continue;
			}
		}
		*w++ = *r++;
	}
	*w = '\0';
	return (size_t) (w - s);
}

/* libmicrohttpd's own messages, on stderr */
void
http_log(void *cls, const char *fmt, va_list ap)
{
	(void) cls;
	fputs("deliverd: ", stderr);
	vfprintf(stderr, fmt, ap);
}

/* off: no access log; -: stderr; else a file, appended to */
int
http_open_access_log(const char *setting)
{
	if (strcmp(setting, "off") == 0)
		access_log = NULL;
	else if (strcmp(setting, "-") == 0)
		access_log = stderr;
	else if (!(access_log = fopen(setting, "a")))
	{
		fprintf(stderr, "deliverd: cannot open access_log %s: %s\n", setting, strerror(errno));
		return -1;
	}
	return 0;
}

int
http_inflight(void)
{
	return atomic_load(&inflight);
}
