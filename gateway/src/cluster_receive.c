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

/* $3 max, $4 visibility timeout, $5 wait, $6 group: one row per message */
static const char sql_receive[] =
"SELECT row_to_json(x)::text FROM (SELECT"
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

/*
 * One receive from partition p (waiting up to wait_ms there); appends the
 * messages to out and counts them in *got.
 */
static rc_t
receive_one(rctx *x, const receive_params *rp, int p, long n, long wait_ms, buf_t *out, int *got,
			exec_result *er)
{
	char		part[16],
				max[24],
				vt[40],
				wait[40];
	const char *params[6];
	shardpool  *pool = cmap_read_pool(x->map, p);
	int			row;

	if (!pool || !sp_available(pool))
		return RC_SKIPPED;
	snprintf(part, sizeof(part), "%d", p);
	snprintf(max, sizeof(max), "%ld", n);
	snprintf(vt, sizeof(vt), "%ld milliseconds", rp->vt_ms);
	snprintf(wait, sizeof(wait), "%ld milliseconds", wait_ms);
	params[0] = x->rq->rm.queue;
	params[1] = part;
	params[2] = max;
	params[3] = rp->has_vt ? vt : NULL;
	params[4] = wait;
	params[5] = rp->has_group ? rp->group : RECEIVE_DEFAULT_GROUP;
	cl_shard_exec(x, PL_READ, p, 0, sql_receive, 6, params, SP_FAST, wait_ms, er);
	if (er->status == 503)
		return RC_SKIPPED;
	if (er->status != 200)
		return RC_ERROR;
	for (row = 0; er->res && row < PQntuples(er->res); row++)
	{
		buf_puts(out, *got ? "," : "");
		buf_puts(out, PQgetvalue(er->res, row, 0));
		(*got)++;
	}
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
		last = now;
		fprintf(stderr, "deliverd: receive on %s: partitions %s skipped (their shard is unavailable)\n",
				queue, list);
	}
	pthread_mutex_unlock(&mu);
}

/*
 * POST /v1/queues/{q}/receive: round the partitions from the queue's
 * cursor, each a receive that does not wait, until max messages came.  With
 * nothing and time left of wait: a short long poll (poll_slice) on one
 * partition, the next each time, then round them again.  A partition whose
 * shard is unavailable is skipped and named in the
 * Deliver-Unavailable-Partitions header; when every one was, the answer is
 * 503.
 */
enum MHD_Result
cluster_receive(rctx *x)
{
	receive_params rp;
	const char *err;
	buf_t		out,
				skipped;
	bool	   *skip = NULL;
	int			got = 0,
				answered = 0,
				nparts,
				i,
				turn = 0;
	unsigned	start;
	long long	wait_end;
	exec_result er;
	enum MHD_Result ret;
	bool		failed = false;

	memset(&er, 0, sizeof(er));
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
	wait_end = mono_ms() + rp.wait_ms;
	x->deadline += rp.wait_ms;
	if (!x->map)
		x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
	nparts = cmap_partitions(x->map);
	if (nparts == 0)
	{
		cl_no_placement(x, PL_READ, 0, 0, &er);
		ret = cl_answer_error(x, &er, NULL);
		exec_result_clear(&er);
		return ret;
	}
	skip = calloc((size_t) nparts, sizeof(bool));
	if (!skip)
		abort();
	start = cluster_cursor_next(x->rq->rm.queue, rp.has_group ? rp.group : RECEIVE_DEFAULT_GROUP);
	buf_init(&out);
	buf_puts(&out, "[");
	for (;;)
	{
		long long	left;

		/* (max out of range: the first partition's answer says so) */
		for (i = 0; i < nparts && (got < rp.max || i == 0) && !failed; i++)
		{
			int			p = (int) ((start + (unsigned) i) % (unsigned) nparts);
			rc_t		rc = receive_one(x, &rp, p, rp.max - got, 0, &out, &got, &er);

			if (rc == RC_SKIPPED)
				skip[p] = true;
			else if (rc == RC_OK)
				answered++;
			else
				failed = true;
			if (rc != RC_ERROR)
				exec_result_clear(&er);
		}
		/* (the map may have been read again: a cluster keeps its number of partitions) */
		if (cmap_partitions(x->map) != nparts)
			break;
		left = (wait_end < x->deadline ? wait_end : x->deadline) - mono_ms();
		if (got || failed || shutting_down() || left <= 0)
			break;
		/* nothing yet: wait a slice on the next partition whose shard is up, then go round again */
		for (i = 0; i < nparts; i++)
		{
			int			p = (int) ((start + (unsigned) turn++) % (unsigned) nparts);
			long		slice = left < cfg.poll_slice_ms ? (long) left : cfg.poll_slice_ms;
			rc_t		rc;

			if (!cmap_read_pool(x->map, p) || !sp_available(cmap_read_pool(x->map, p)))
				continue;
			rc = receive_one(x, &rp, p, rp.max, slice, &out, &got, &er);
			if (rc == RC_ERROR)
				failed = true;
			else
				exec_result_clear(&er);
			if (rc != RC_SKIPPED)
				break;
		}
		if (i == nparts)
		{
			/* every shard is down: wait for one to come back */
			long		nap = left < cfg.poll_slice_ms ? (long) left : cfg.poll_slice_ms;

			usleep((useconds_t) nap * 1000);
		}
		if (got || failed)
			break;
	}
	buf_puts(&out, "]");
	buf_init(&skipped);
	for (i = 0; i < nparts; i++)
		if (skip[i])
			buf_printf(&skipped, "%s%d", skipped.len ? "," : "", i);
	if (skipped.len)
		log_skipped(x->rq->rm.queue, skipped.data);
	if (got || (!failed && answered))
		ret = send_response_header(x->c, x->rq, 200, "application/json", out.data, out.len, 0,
								   "Deliver-Unavailable-Partitions", skipped.len ? skipped.data : NULL);
	else if (failed)
		ret = cl_answer_shard_error(x, &er);
	else
	{
		cl_set_err(&er, 503, "08001", "no shard of the queue's partitions is available", NULL,
				"The shards may be failing over; retry.");
		ret = cl_answer_error(x, &er, NULL);
	}
	exec_result_clear(&er);
	buf_free(&out);
	buf_free(&skipped);
	free(skip);
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
	it = calloc((size_t) (n ? n : 1), sizeof(ack_item));
	if (!it)
		abort();
	for (i = 0; i < n; i++)
	{
		json_t	   *v = json_array_get(ids, (size_t) i);
		int64_t		local;

		if (!json_is_string(v) ||
			!parse_global_id(json_string_value(v), &it[i].partition, &it[i].epoch, &local,
							 it[i].id, sizeof(it[i].id)))
		{
			cl_set_err(&first, 400, "22P02", "invalid delivery id", NULL,
					"delivery_ids of a cluster are strings partition:epoch:id, as the gateway returned them.");
			goto fail;
		}
		it[i].pool = cmap_placement_pool(x->map, it[i].partition, it[i].epoch);
		if (!it[i].pool)
		{
			x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
			it[i].pool = cmap_placement_pool(x->map, it[i].partition, it[i].epoch);
		}
		if (!it[i].pool)
		{
			cl_no_placement(x, PL_ID, it[i].partition, it[i].epoch, &first);
			goto fail;
		}
	}
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
		params[0] = x->rq->rm.queue;
		params[1] = idlist.data;
		params[2] = parts.data;
		sp_exec(pool, x->role, sql_ack_batch, 3, params, cl_stmt_deadline(x, 0), SP_WRITE, &er);
		for (i = 0; i < n; i++)
			if (it[i].pool == pool && it[i].state == 0)
				it[i].state = er.status == 200 ? 1 : er.in_doubt ? 3 : 2;
		if (er.status == 200 && er.res && PQntuples(er.res) == 1 && !PQgetisnull(er.res, 0, 0))
			acked += atoi(PQgetvalue(er.res, 0, 0));
		if (er.status != 200)
		{
			all_ok = false;
			if (first.status == 0)
			{
				first = er;
				memset(&er, 0, sizeof(er));
			}
		}
		exec_result_clear(&er);
		buf_free(&idlist);
		buf_free(&parts);
	}
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

