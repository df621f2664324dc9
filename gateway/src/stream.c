/*
 * deliverd: the server-sent event stream of a queue.  Each event is a
 * message received for the caller; its delivery is acked once the event
 * was handed to the socket, so a message whose event a client did not get
 * keeps its lease and comes again when the lease expires.  In cluster mode
 * the receives go round the queue's partitions and the acks to the shards
 * the delivery ids name (cl_stream, cluster_receive.c); the event ids are
 * then the cluster's message ids, "partition:epoch:id".
 */
#include "cluster.h"
#include "config.h"
#include "globalid.h"
#include "main.h"
#include "received.h"
#include "statements.h"
#include "stream.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* milliseconds a client waits before it reconnects (the SSE retry field) */
#define STREAM_RETRY_MS "1000"
/* between receives that do not wait, when the pool has no connection to spare */
#define STREAM_BUSY_POLL_MS 250
/* the most libmicrohttpd asks of stream_reader at once */
#define STREAM_BLOCK_SIZE (16 * 1024)

static atomic_int open_streams;

/* a stream's state, owned by libmicrohttpd's response (freed by stream_free) */
typedef struct
{
	char		queue[NAME_MAX_LEN + 1];
	char		role[ROLE_MAX_LEN + 1];
	bool		has_role;
	double		exp;			/* the token's expiry, 0: none */
	bool		expired;		/* it came: receive no more */
	receive_params rp;			/* the request's (the wait is set per receive) */
	char		last_event_id[GLOBAL_ID_MAX_LEN];
	cl_stream  *cl;				/* cluster mode: the stream's receives and acks */
	buf_t		out;
	size_t		off;
	char	  **pending;			/* delivery ids flushed once the buffer drains */
	int			npending;
	bool		ending;
} stream_t;

/* a delivery to ack once its event reached the socket */
static void
stream_pending_add(stream_t *st, const char *delivery_id)
{
	st->pending = realloc(st->pending, sizeof(char *) * (size_t) (st->npending + 1));
	st->pending[st->npending++] = strdup(delivery_id);
}

/* forget the pending deliveries (their leases run out by themselves) */
static void
stream_pending_clear(stream_t *st)
{
	int			i;

	for (i = 0; i < st->npending; i++)
		free(st->pending[i]);
	st->npending = 0;
}

/* (a queue name, and an error quoting one, may hold any byte: printable only) */
static void
log_ack_failure(const stream_t *st, const exec_result *er)
{
	char		q[NAME_MAX_LEN + 1],
				m[300];

	copy_printable(q, sizeof(q), st->queue);
	copy_printable(m, sizeof(m), er->message ? er->message : "?");
	fprintf(stderr, "deliverd: stream on %s: ack failed: %s\n", q, m);
}

/* ack the deliveries whose events were handed to the socket; false on failure */
static bool
stream_ack_pending(stream_t *st)
{
	buf_t		body;
	exec_result er;
	int			i;
	const char *params[2];
	bool		ok;

	if (!st->npending)
		return true;
	if (st->cl)
	{
		ok = cl_stream_ack(st->cl, st->pending, st->npending, &er);
		if (!ok)
			log_ack_failure(st, &er);
		exec_result_clear(&er);
		stream_pending_clear(st);
		return ok;
	}
	buf_init(&body);
	buf_puts(&body, "{\"delivery_ids\":[");
	for (i = 0; i < st->npending; i++)
		buf_printf(&body, "%s\"%s\"", i ? "," : "", st->pending[i]);
	buf_puts(&body, "]}");
	params[0] = st->queue;
	params[1] = body.data;
	pool_exec(st->has_role ? st->role : NULL, S_ACK_BATCH, 2, params, false, &er);
	ok = er.status == 200;
	if (!ok)
		log_ack_failure(st, &er);
	exec_result_clear(&er);
	buf_free(&body);
	stream_pending_clear(st);
	return ok;
}

/*
 * Row row of res, a message received (its columns: message_id, delivery_id,
 * then the message), into the stream: its delivery to ack, and its event,
 * unless the client resumes from it (it already has it).  The event's data
 * is json, or the row's columns made into JSON when json is NULL.
 */
static void
stream_event(stream_t *st, const PGresult *res, int row, const char *json)
{
	const char *mid = PQgetvalue(res, row, 0);

	if (!PQgetisnull(res, row, 1))
		stream_pending_add(st, PQgetvalue(res, row, 1));
	if (st->last_event_id[0] && strcmp(mid, st->last_event_id) == 0)
		return;
	buf_printf(&st->out, "id: %s\nevent: message\ndata: ", mid);
	if (json)
		buf_puts(&st->out, json);
	else
		received_row_json(res, row, &st->out);
	buf_puts(&st->out, "\n\n");
}

/* a message of a cluster receive round: the third column is the message as JSON */
static void
stream_cluster_row(void *arg, const PGresult *res, int row, int nth)
{
	(void) nth;
	stream_event(arg, res, row, PQgetvalue(res, row, 2));
}

/*
 * One receive of the stream (wait_ms long poll; opening: the first, whose
 * error becomes the answer's status); appends events to st->out.  Returns
 * the exec status (200 when fine); the error is left in er.  Once the token
 * has expired it receives nothing and sets st->expired; a long poll waits
 * no longer than the token lasts.
 */
static int
stream_receive(stream_t *st, long wait_ms, bool opening, exec_result *er)
{
	receive_args ra;
	int			row;

	if (st->exp > 0)
	{
		long		left = ms_until(st->exp);

		if (left <= 0)
		{
			memset(er, 0, sizeof(*er));
			er->status = 200;
			st->expired = true;
			return 200;
		}
		if (wait_ms > left)
			wait_ms = left;
	}
	st->rp.wait_ms = wait_ms;
	if (st->cl)
		return cl_stream_receive(st->cl, &st->rp, opening, stream_cluster_row, st, er);
	receive_args_fill(&ra, st->queue, &st->rp);
	pool_exec(st->has_role ? st->role : NULL, S_RECEIVE_ROWS, 5, ra.p, wait_ms > 0, er);
	if (er->status != 200)
		return er->status;
	for (row = 0; er->res && row < PQntuples(er->res); row++)
		stream_event(st, er->res, row, NULL);
	return 200;
}

/*
 * Wait up to stream_wait for messages.  A long poll holds a pooled
 * connection for its wait: when all but one are taken by long polls, poll
 * without waiting every STREAM_BUSY_POLL_MS instead, so short requests keep
 * a connection.  (In cluster mode a long poll holds a shard's connection
 * for a poll_slice at a time, as a cluster receive does, and leaves each
 * shard pool one connection the same way: receive_rounds.)
 */
static int
stream_poll(stream_t *st, exec_result *er)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;)
	{
		bool		reserved = !st->cl && pool_long_poll_begin();
		bool		may_wait = st->cl || reserved;
		int			rc = stream_receive(st, may_wait ? cfg.stream_wait_ms : 0, false, er);

		if (reserved)
			pool_long_poll_end();
		if (rc != 200 || st->expired || st->out.len > 0 || may_wait || shutting_down() ||
			elapsed(&t0) * 1000 >= (double) cfg.stream_wait_ms)
			return rc;
		exec_result_clear(er);
		usleep(STREAM_BUSY_POLL_MS * 1000);
	}
}

/*
 * libmicrohttpd asks for the next bytes of the stream: what is formatted,
 * else (once it all went out and was acked) the events of the next receive,
 * a keep-alive, or the end.
 */
static ssize_t
stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	stream_t   *st = cls;
	exec_result er;
	size_t		n;

	(void) pos;
	for (;;)
	{
		if (st->off < st->out.len)
		{
			n = st->out.len - st->off;
			if (n > max)
				n = max;
			memcpy(buf, st->out.data + st->off, n);
			st->off += n;
			return (ssize_t) n;
		}
		/* everything formatted so far went to the socket: ack it */
		st->out.len = st->off = 0;
		if (!stream_ack_pending(st))
			st->ending = true;
		if (st->ending || shutting_down())
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (stream_poll(st, &er) != 200)
		{
			if (!shutting_down())
			{
				buf_puts(&st->out, "event: error\ndata: {\"error\":");
				buf_json_str(&st->out, er.message);
				buf_puts(&st->out, ",\"sqlstate\":");
				buf_json_str(&st->out, er.sqlstate[0] ? er.sqlstate : NULL);
				buf_puts(&st->out, "}\n\n");
			}
			st->ending = true;
			stream_pending_clear(st);
		}
		else if (st->expired)
		{
			/* what was sent before is acked above; the client reconnects with a new token */
			buf_puts(&st->out, "event: end\ndata: {\"reason\":\"token_expired\"}\n\n");
			st->ending = true;
		}
		else if (st->out.len == 0)
			buf_puts(&st->out, ": keep-alive\n\n");
		exec_result_clear(&er);
	}
}

/* the stream is over: libmicrohttpd frees its state */
static void
stream_free(void *cls)
{
	stream_t   *st = cls;

	/* deliveries not handed to the socket keep their lease: redelivered on expiry */
	stream_pending_clear(st);
	free(st->pending);
	buf_free(&st->out);
	cl_stream_close(st->cl);
	free(st);
	atomic_fetch_sub(&open_streams, 1);
}

/*
 * The message id a client resumes after (Last-Event-ID), written as the
 * stream writes its event ids: a bigint, or in cluster mode
 * partition:epoch:id.  false when it is not one.
 */
static bool
stream_parse_event_id(stream_t *st, const char *s)
{
	long		v;
	int			part,
				epoch;
	int64_t		local;

	if (st->cl)
		return parse_global_id(s, &part, &epoch, &local, st->last_event_id, sizeof(st->last_event_id));
	if (!parse_int_range(s, 1, 0x7fffffffffffffffL, &v))
		return false;
	snprintf(st->last_event_id, sizeof(st->last_event_id), "%ld", v);
	return true;
}

/*
 * GET /v1/queues/{queue}/stream: a first receive without waiting answers
 * errors with a status; then events flow until the client leaves, an error,
 * the token's expiry or shutdown.  Last-Event-ID names the message a client
 * resumes after: it is acked, not sent again.
 */
enum MHD_Result
stream_serve(struct MHD_Connection *c, request_t *rq, const receive_params *p)
{
	stream_t   *st = calloc(1, sizeof(stream_t));
	exec_result er;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	const char *leid;

	if (!st)
		return MHD_NO;
	/* each open stream keeps receiving (and, in cluster mode, rounds every partition): a bound */
	if (atomic_fetch_add(&open_streams, 1) >= cfg.max_streams)
	{
		atomic_fetch_sub(&open_streams, 1);
		free(st);
		return send_error(c, rq, 503, "too many open streams", NULL,
						  "Retry later, or raise deliverd's max_streams.", "53300", 1);
	}
	snprintf(st->queue, sizeof(st->queue), "%s", rq->rm.queue);
	snprintf(st->role, sizeof(st->role), "%s", rq->role);
	st->has_role = rq->role[0] != '\0';
	st->exp = rq->exp;
	st->rp = *p;
	if (cluster_mode())
		st->cl = cl_stream_open(st->queue, st->has_role ? st->role : NULL);
	leid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
	if (!leid)
		leid = get_arg(c, "last_event_id");
	if (leid && !stream_parse_event_id(st, leid))
	{
		const char *hint = st->cl ? "In cluster mode a message id is partition:epoch:id." : NULL;

		stream_free(st);
		return send_error(c, rq, 400, "Last-Event-ID must be a message id", NULL, hint, NULL, 0);
	}
	buf_init(&st->out);
	buf_puts(&st->out, "retry: " STREAM_RETRY_MS "\n\n");
	/* a first receive without waiting: errors (unknown queue, no grant) get a status */
	if (stream_receive(st, 0, true, &er) != 200)
	{
		ret = send_exec_error(c, rq, &er);
		exec_result_clear(&er);
		stream_free(st);
		return ret;
	}
	exec_result_clear(&er);
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK_SIZE, stream_reader,
											 st, stream_free);
	if (!resp)
	{
		stream_free(st);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/event-stream");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	rq->status = 200;
	rq->answered = true;
	ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

int
stream_open_count(void)
{
	return atomic_load(&open_streams);
}
