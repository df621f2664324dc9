/*
 * deliverd (cluster mode): receives going round the partitions without
 * waiting on any one shard, and acks, nacks and lease extensions sent to
 * the placement their id names.
 */
#include "cluster_api.h"
#include "config.h"
#include "globalid.h"
#include "main.h"
#include "sqlfrag.h"
#include "statements.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * $3 max, $4 visibility timeout, $5 wait, $6 group: one row per message, its
 * ids (as the client sees them) and the whole message as JSON.
 */
static const char sql_receive[] =
"SELECT x.message_id, x.delivery_id, row_to_json(x)::text FROM (SELECT"
" deliver_shard.global_id($2::int, e.epoch, r.message_id) AS message_id,"
" deliver_shard.global_id($2::int, e.epoch, r.delivery_id) AS delivery_id,"
" r.payload, r.headers, r.ordering_key, r.attempt, r.enqueued_at, r.lease_expires_at"
" FROM (SELECT deliver_shard.epoch_of($1, $2::int) AS epoch OFFSET 0) e,"
" LATERAL deliver.receive(CASE WHEN e.epoch IS NOT NULL THEN deliver_shard.queue_of($1, $2::int) END,"
" $3::int, $4::interval, $5::interval, $6) r) x";
/* $2 the shard's delivery ids, $3 their partitions */
static const char sql_ack_batch[] =
"SELECT CASE WHEN (SELECT count(deliver_shard.epoch_of($1, p)) FROM unnest($3::int[]) p) >= 0"
" THEN deliver_shard.ack_batch(NULL, $2::text[], $1) END";

/* ---- receives ----------------------------------------------------------- */

typedef enum
{
	RC_OK,						/* answered (maybe with nothing) */
	RC_SKIPPED,					/* its shard is unavailable */
	RC_ERROR					/* an error for the client (er) */
} rc_t;

/* what a receive round did */
typedef struct
{
	int			got;			/* messages */
	int			answered;		/* partitions that answered */
	bool		failed;			/* an error for the client (in er) */
	buf_t		skipped;		/* the partitions skipped ("0,3"): their shard is unavailable */
} round_result;

/*
 * One receive from partition p (waiting up to wait_ms there); each message
 * goes to fn and is counted in *got.
 */
static rc_t
receive_one(rctx *x, const char *queue, const receive_params *rp, int p, long n, long wait_ms,
			cl_row_fn fn, void *arg, int *got, exec_result *er)
{
	char		part[16];
	const char *params[6];
	receive_params r = *rp;
	receive_args ra;
	shardpool  *pool = cmap_read_pool(x->map, p);
	int			row;

	if (!pool || !sp_available(pool))
		return RC_SKIPPED;
	/* a node's five parameters for this partition's share and wait, and the partition ($2) */
	r.max = n;
	r.wait_ms = wait_ms;
	receive_args_fill(&ra, queue, &r);
	snprintf(part, sizeof(part), "%d", p);
	params[0] = ra.p[0];
	params[1] = part;
	memcpy(&params[2], &ra.p[1], 4 * sizeof(params[0]));
	cl_shard_exec(x, PL_READ, p, 0, sql_receive, 6, params, SP_FAST, wait_ms, er);
	/* (the request's own time running out is no sign of the shard's: the client's error) */
	if (er->status == 503 && strcmp(er->sqlstate, "57014") != 0)
		return RC_SKIPPED;
	if (er->status != 200)
		return RC_ERROR;
	for (row = 0; er->res && row < PQntuples(er->res); row++)
		fn(arg, er->res, row, (*got)++);
	exec_result_clear(er);
	return RC_OK;
}

/* Log the partitions a receive skipped, at most once a second. */
static void
log_skipped(const char *queue, const char *list)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static long long last;
	long long	now = mono_ms();

	pthread_mutex_lock(&mu);
	if (now - last >= 1000)
	{
		char		q[NAME_MAX_LEN + 1];

		last = now;
		copy_printable(q, sizeof(q), queue);	/* a name may hold any byte */
		fprintf(stderr, "deliverd: receive on %s: partitions %s skipped (their shard is unavailable)\n",
				q, list);
	}
	pthread_mutex_unlock(&mu);
}

/*
 * Receive up to rp->max messages of queue: round the partitions from the
 * group's cursor, each a receive that does not wait, until max messages
 * came.  With nothing and time left of rp->wait_ms: a short long poll
 * (poll_slice) on one partition, the next each time, then round them
 * again.  Long polls leave each shard pool one connection for short
 * requests (sp_long_poll_begin); when none may start, a nap of a slice
 * takes its place.  A partition whose shard is unavailable is skipped (marked in
 * rr->skipped, logged).  An error (the first failing partition's, or the map
 * having no placement) is left in er with rr->failed set.
 */
static void
receive_rounds(rctx *x, const char *queue, const receive_params *rp, cl_row_fn fn, void *arg,
			   round_result *rr, exec_result *er)
{
	const char *group = rp->has_group ? rp->group : RECEIVE_DEFAULT_GROUP;
	long long	wait_end = mono_ms() + rp->wait_ms;
	unsigned	start;
	int			i,
				nparts,
				turn = 0;
	bool	   *skip;

	memset(rr, 0, sizeof(*rr));
	memset(er, 0, sizeof(*er));
	buf_init(&rr->skipped);
	if (!x->map)
		x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
	nparts = cmap_partitions(x->map);
	if (nparts == 0)
	{
		cl_no_placement(x, PL_READ, 0, 0, er);
		rr->failed = true;
		return;
	}
	skip = calloc((size_t) nparts, sizeof(bool));
	if (!skip)
		abort();
	start = cluster_cursor_next(queue, group);
	for (;;)
	{
		long long	left;

		/* (max out of range: the first partition's answer says so) */
		for (i = 0; i < nparts && (rr->got < rp->max || i == 0) && !rr->failed; i++)
		{
			int			p = (int) ((start + (unsigned) i) % (unsigned) nparts);
			rc_t		rc = receive_one(x, queue, rp, p, rp->max - rr->got, 0, fn, arg, &rr->got, er);

			if (rc == RC_SKIPPED)
				skip[p] = true;
			else if (rc == RC_OK)
				rr->answered++;
			else
				rr->failed = true;
			if (rc != RC_ERROR)
				exec_result_clear(er);
		}
		/* (the map may have been read again: a cluster keeps its number of partitions) */
		if (cmap_partitions(x->map) != nparts)
			break;
		left = (wait_end < x->deadline ? wait_end : x->deadline) - mono_ms();
		if (rr->got || rr->failed || shutting_down() || left <= 0)
			break;
		/*
		 * nothing yet: wait a slice on the next partition whose shard is up
		 * and has a connection to spare for a long poll, then go round again
		 */
		for (i = 0; i < nparts; i++)
		{
			int			p = (int) ((start + (unsigned) turn++) % (unsigned) nparts);
			long		slice = left < cfg.poll_slice_ms ? (long) left : cfg.poll_slice_ms;
			shardpool  *pool = cmap_read_pool(x->map, p);
			rc_t		rc;

			if (!pool || !sp_available(pool) || !sp_long_poll_begin(pool))
				continue;
			rc = receive_one(x, queue, rp, p, rp->max, slice, fn, arg, &rr->got, er);
			sp_long_poll_end(pool);
			if (rc == RC_ERROR)
				rr->failed = true;
			else
				exec_result_clear(er);
			if (rc != RC_SKIPPED)
				break;
		}
		if (i == nparts)
		{
			/*
			 * every shard is down, or each one's connections but one are
			 * held by long polls: nap a slice, then round them again
			 */
			long		nap = left < cfg.poll_slice_ms ? (long) left : cfg.poll_slice_ms;

			usleep((useconds_t) nap * 1000);
		}
		if (rr->got || rr->failed)
			break;
	}
	for (i = 0; i < nparts; i++)
		if (skip[i])
			buf_printf(&rr->skipped, "%s%d", rr->skipped.len ? "," : "", i);
	if (rr->skipped.len)
		log_skipped(queue, rr->skipped.data);
	free(skip);
}

/* the error of a receive round that got nothing: every shard was unavailable */
static void
set_all_skipped(exec_result *er)
{
	cl_set_err(er, 503, "08001", "no shard of the queue's partitions is available", NULL,
			   "The shards may be failing over; retry.");
}

/* a received message into the JSON array of an answer */
static void
row_to_array(void *arg, const PGresult *res, int row, int nth)
{
	buf_t	   *out = arg;

	buf_puts(out, nth ? "," : "");
	buf_puts(out, PQgetvalue(res, row, 2));
}

/*
 * POST /v1/queues/{q}/receive: a receive round (receive_rounds).  The
 * partitions skipped are named in the Deliver-Unavailable-Partitions
 * header; when every one was, the answer is 503.
 */
enum MHD_Result
cluster_receive(rctx *x)
{
	receive_params rp;
	const char *err;
	buf_t		out;
	round_result rr;
	exec_result er;
	enum MHD_Result ret;

	err = parse_receive_params(get_arg, x->c, cfg.max_wait_ms, RECEIVE_DEFAULT_MAX, &rp);
	if (err)
		return cl_answer(x, 400, NULL, err, NULL, NULL);
	if (shutting_down())
		rp.wait_ms = 0;
	/* not past the token's expiry: nothing is handed out after it */
	if (x->rq->exp > 0)
	{
		long		left = ms_until(x->rq->exp);

		if (rp.wait_ms > left)
			rp.wait_ms = left > 0 ? left : 0;
	}
	x->deadline += rp.wait_ms;
	buf_init(&out);
	buf_puts(&out, "[");
	receive_rounds(x, x->rq->rm.queue, &rp, row_to_array, &out, &rr, &er);
	buf_puts(&out, "]");
	if (rr.got || (!rr.failed && rr.answered))
		ret = send_response_header(x->c, x->rq, 200, "application/json", out.data, out.len, 0,
								   "Deliver-Unavailable-Partitions",
								   rr.skipped.len ? rr.skipped.data : NULL);
	else if (rr.failed)
		ret = cl_answer_shard_error(x, &er);
	else
	{
		set_all_skipped(&er);
		ret = cl_answer_error(x, &er, NULL);
	}
	exec_result_clear(&er);
	buf_free(&out);
	buf_free(&rr.skipped);
	return ret;
}

/* ---- acks, nacks, leases ------------------------------------------------ */

/* ack, nack or extend of the delivery id in the path, on the shard of its placement */
enum MHD_Result
cluster_by_id(rctx *x, const char *sql, int nparams)
{
	const route_match *m = &x->rq->rm;
	const char *local = strrchr(m->delivery_id, ':') + 1;
	const char *params[4];
	char		part[16];
	exec_result er;
	enum MHD_Result ret;

	snprintf(part, sizeof(part), "%d", m->id_partition);
	params[0] = m->queue;
	params[1] = part;
	params[2] = local;
	params[3] = cl_body(x->rq);
	cl_shard_exec(x, PL_ID, m->id_partition, m->id_epoch, sql, nparams, params, SP_WRITE, 0, &er);
	if (er.status != 200)
		ret = cl_answer_shard_error(x, &er);
	else
		ret = send_json(x->c, x->rq, 200, er.res && PQntuples(er.res) ? PQgetvalue(er.res, 0, 0) : "null");
	exec_result_clear(&er);
	return ret;
}

typedef struct
{
	char		id[GLOBAL_ID_MAX_LEN];
	int			partition;
	int			epoch;
	shardpool  *pool;
	int			state;			/* 0 pending, 1 acked part, 2 failed part, 3 in doubt */
} ack_item;

/*
 * The delivery id s (partition:epoch:id) into it, with the pool of its
 * placement (the map read again once when it has none); false with the
 * error in er.
 */
static bool
ack_item_set(rctx *x, const char *s, ack_item *it, exec_result *er)
{
	int64_t		local;

	if (!s || !parse_global_id(s, &it->partition, &it->epoch, &local, it->id, sizeof(it->id)))
	{
		cl_set_err(er, 400, "22P02", "invalid delivery id", NULL,
				   "delivery_ids of a cluster are strings partition:epoch:id, as the gateway returned them.");
		return false;
	}
	it->pool = cmap_placement_pool(x->map, it->partition, it->epoch);
	if (!it->pool)
	{
		x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
		it->pool = cmap_placement_pool(x->map, it->partition, it->epoch);
	}
	if (!it->pool)
	{
		cl_no_placement(x, PL_ID, it->partition, it->epoch, er);
		return false;
	}
	return true;
}

/*
 * Ack the n items of queue: one ack_batch per shard (all or nothing there),
 * each item's state set.  Adds the messages acked to *acked; the first
 * failing part's error goes to first.  True when every part was acked.
 */
static bool
ack_items(rctx *x, const char *queue, ack_item *it, int n, int *acked, exec_result *first)
{
	bool		all_ok = true;
	int			i;

	for (;;)
	{
		shardpool  *pool = NULL;
		buf_t		idlist,
					parts;
		const char *params[3];
		exec_result er;
		int			k = 0;

		for (i = 0; i < n && !pool; i++)
			if (it[i].state == 0)
				pool = it[i].pool;
		if (!pool)
			break;
		buf_init(&idlist);
		buf_init(&parts);
		buf_puts(&idlist, "{");
		buf_puts(&parts, "{");
		for (i = 0; i < n; i++)
			if (it[i].pool == pool && it[i].state == 0)
			{
				buf_printf(&idlist, "%s%s", k ? "," : "", it[i].id);
				buf_printf(&parts, "%s%d", k++ ? "," : "", it[i].partition);
			}
		buf_puts(&idlist, "}");
		buf_puts(&parts, "}");
		params[0] = queue;
		params[1] = idlist.data;
		params[2] = parts.data;
		sp_exec(pool, x->role, sql_ack_batch, 3, params, cl_stmt_deadline(x, 0), SP_WRITE, &er);
		for (i = 0; i < n; i++)
			if (it[i].pool == pool && it[i].state == 0)
				it[i].state = er.status == 200 ? 1 : er.in_doubt ? 3 : 2;
		if (er.status == 200 && er.res && PQntuples(er.res) == 1 && !PQgetisnull(er.res, 0, 0))
			*acked += atoi(PQgetvalue(er.res, 0, 0));
		if (er.status != 200)
		{
			all_ok = false;
			if (first->status == 0)
			{
				*first = er;
				memset(&er, 0, sizeof(er));
			}
		}
		exec_result_clear(&er);
		buf_free(&idlist);
		buf_free(&parts);
	}
	return all_ok;
}

/*
 * POST /v1/queues/{q}/ack {"delivery_ids": [...]}: split by shard, one
 * ack_batch per shard (all or nothing there).  Every part acked: {"acked":
 * n}.  Else the first part's error with "acked" (the count of the parts
 * that committed), "not_acked" and "in_doubt" (the ids of the others).
 */
enum MHD_Result
cluster_ack_batch(rctx *x)
{
	json_t	   *j,
			   *ids;
	ack_item   *it = NULL;
	exec_result first;
	enum MHD_Result ret;
	int			n,
				i,
				acked = 0;
	bool		all_ok = true;
	buf_t		b;

	memset(&first, 0, sizeof(first));
	if (!cl_body(x->rq))
		return cl_answer(x, 400, NULL, "request body required", NULL, "Send {\"delivery_ids\": [...]}.");
	if (!(j = cl_parse_body(x, &ret)))
		return ret;
	ids = json_is_object(j) ? json_object_get(j, "delivery_ids") : NULL;
	if (ids && !json_is_null(ids) && !json_is_array(ids))
	{
		json_decref(j);
		return cl_answer(x, 422, "22023", "delivery_ids must be an array", NULL,
					  "Send {\"delivery_ids\": [...]}.");
	}
	n = json_is_array(ids) ? (int) json_array_size(ids) : 0;
	if (n > cfg.max_batch)
	{
		json_decref(j);
		return cl_batch_too_large(x, n);
	}
	it = calloc((size_t) (n ? n : 1), sizeof(ack_item));
	if (!it)
		abort();
	for (i = 0; i < n; i++)
	{
		json_t	   *v = json_array_get(ids, (size_t) i);

		if (!ack_item_set(x, json_is_string(v) ? json_string_value(v) : NULL, &it[i], &first))
			goto fail;
	}
	all_ok = ack_items(x, x->rq->rm.queue, it, n, &acked, &first);
	buf_init(&b);
	if (all_ok)
	{
		buf_printf(&b, "{\"acked\":%d}", acked);
		ret = send_json(x->c, x->rq, 200, b.data);
	}
	else
	{
		int			k,
					s;

		buf_printf(&b, ",\"acked\":%d", acked);
		for (s = 2; s <= 3; s++)
		{
			buf_puts(&b, s == 2 ? ",\"not_acked\":[" : "],\"in_doubt\":[");
			for (i = 0, k = 0; i < n; i++)
				if (it[i].state == s)
				{
					buf_puts(&b, k++ ? "," : "");
					buf_json_str(&b, it[i].id);
				}
		}
		buf_puts(&b, "]");
		if (cl_not_on_shard(&first))
			ret = cl_answer_no_queue(x);
		else
			ret = cl_answer_error(x, &first, b.data);
	}
	buf_free(&b);
	exec_result_clear(&first);
	free(it);
	json_decref(j);
	return ret;

fail:
	ret = cl_answer_error(x, &first, NULL);
	exec_result_clear(&first);
	free(it);
	json_decref(j);
	return ret;
}


/* ---- the event stream (stream.c) ---------------------------------------- */

struct cl_stream
{
	rctx		x;				/* no connection or request: the stream outlives them */
	char		queue[NAME_MAX_LEN + 1];
	char		role[ROLE_MAX_LEN + 1];
};

cl_stream *
cl_stream_open(const char *queue, const char *role)
{
	cl_stream  *s = calloc(1, sizeof(cl_stream));

	if (!s)
		abort();
	snprintf(s->queue, sizeof(s->queue), "%s", queue);
	snprintf(s->role, sizeof(s->role), "%s", role ? role : "");
	s->x.role = s->role[0] ? s->role : NULL;
	s->x.map = cmap_get();
	return s;
}

/*
 * A receive round of the stream, each message to fn.  Returns 200 (er
 * cleared) or the error's status (er set; a queue the shards do not have is
 * 404).  A round in which no shard answered is 503 when opening (the client
 * gets the status) and nothing otherwise: an open stream keeps waiting
 * through a failover.
 */
int
cl_stream_receive(cl_stream *s, const receive_params *rp, bool opening, cl_row_fn fn, void *arg,
				  exec_result *er)
{
	round_result rr;
	char		msg[128];

	s->x.deadline = mono_ms() + rp->wait_ms + cfg.request_timeout_ms;
	receive_rounds(&s->x, s->queue, rp, fn, arg, &rr, er);
	buf_free(&rr.skipped);
	if (rr.failed)
	{
		if (cl_not_on_shard(er))
		{
			snprintf(msg, sizeof(msg), "queue \"%s\" does not exist", s->queue);
			cl_set_err(er, 404, "42704", msg, NULL, NULL);
		}
		return er->status ? er->status : 500;
	}
	if (opening && !rr.got && !rr.answered)
	{
		set_all_skipped(er);
		return er->status;
	}
	exec_result_clear(er);
	er->status = 200;
	return 200;
}

/* Ack the stream's deliveries (ids as the stream sent them); false with the error in er. */
bool
cl_stream_ack(cl_stream *s, char *const *ids, int n, exec_result *er)
{
	ack_item   *it = calloc((size_t) (n ? n : 1), sizeof(ack_item));
	int			acked = 0,
				i;
	bool		ok = true;

	if (!it)
		abort();
	memset(er, 0, sizeof(*er));
	s->x.deadline = mono_ms() + cfg.request_timeout_ms;
	for (i = 0; i < n && ok; i++)
		ok = ack_item_set(&s->x, ids[i], &it[i], er);
	if (ok)
		ok = ack_items(&s->x, s->queue, it, n, &acked, er);
	free(it);
	return ok;
}

void
cl_stream_close(cl_stream *s)
{
	if (!s)
		return;
	cmap_put(s->x.map);
	free(s);
}
