/*
 * deliverd (cluster mode): the routes over a deliver cluster.
 *
 * Messages go to the shards directly, on the placement the partition map
 * gives: a send to the shard of its partition (the ordering key's, else the
 * idempotency key's, else the next in turn), a batch split by shard (each
 * shard's part one transaction there), a receive going round the
 * partitions without waiting on any one shard, an ack, nack or extend to
 * the placement its id names.  Administration (queues, groups, dead
 * letters, redrive, metrics) goes through the router's deliver_cluster
 * functions.  Every call runs as the caller's role and ends by the
 * request's deadline (shardpool.c).
 *
 * A shard that answers that a partition is not there ("partition p of
 * queue q is not on this shard", 55000) was reached with a stale map: the
 * map is read again and the call made once more where it now points; when
 * the map did not change, the queue does not exist (404).
 *
 * User input reaches SQL only as parameters: names from the path, the body
 * (one jsonb parameter, taken apart by Postgres), and what the gateway
 * computed from it (partitions, positions, keys as a JSON array).
 */
#include "cluster.h"
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
#include <unistd.h>

/* a map younger than this is not read again for a request that found it stale */
#define STALE_MAP_MS 250

/* ---- the SQL ------------------------------------------------------------ */

/* router: the queue exists (routes whose function would not say so) */
#define QEXISTS "EXISTS (SELECT 1 FROM deliver_cluster.list_queues() q WHERE q.queue_name = $1)"

static const char sql_list_queues[] =
"SELECT coalesce(json_agg(q), '[]') FROM deliver_cluster.list_queues() q";
static const char sql_get_queue[] =
"SELECT row_to_json(q) FROM deliver_cluster.list_queues() q WHERE q.queue_name = $1";
static const char sql_create_queue[] =
"SELECT json_build_object('queue_name', b->>'name', 'created', true, 'partitions',"
" deliver_cluster.create_queue(b->>'name', b->>'guarantee', " IV("visibility_timeout") ","
" (b->>'max_attempts')::int, (b->>'fifo')::boolean, " IV("dedup_window") ","
" " IV("retry_base") ", " IV("retry_max") "))" BODY(1);
static const char sql_drop_queue[] =
"SELECT json_build_object('dropped', deliver_cluster.drop_queue($1) IS NOT NULL)";
static const char sql_create_group[] =
"SELECT " QEXISTS ", CASE WHEN " QEXISTS " THEN json_build_object('consumer_group', b->>'name',"
" 'created', true, 'partitions', CASE WHEN b->>'start_from' IS NULL"
" THEN deliver_cluster.create_consumer_group($1, b->>'name')"
" ELSE deliver_cluster.create_consumer_group($1, b->>'name', b->>'start_from') END) END" BODY(2);
static const char sql_drop_group[] =
"SELECT " QEXISTS ", CASE WHEN " QEXISTS " THEN"
" json_build_object('dropped', deliver_cluster.drop_consumer_group($1, $2) > 0) END";
static const char sql_dead_letters[] =
"SELECT " QEXISTS ", CASE WHEN " QEXISTS " THEN (SELECT coalesce(json_agg(x), '[]') FROM"
" (SELECT d.message_id, d.group_name, d.payload, d.headers, d.ordering_key, d.attempts, d.reason,"
" d.last_error, d.enqueued_at, d.dead_at, d.partition"
" FROM deliver_cluster.dead_letters($1, $2, $3::int) d) x) END";
static const char sql_redrive[] =
"SELECT " QEXISTS ", CASE WHEN " QEXISTS " THEN json_build_object('redriven', deliver_cluster.redrive($1,"
" CASE WHEN b ? 'message_ids' THEN ARRAY(SELECT jsonb_array_elements_text(b->'message_ids')) END,"
" b->>'consumer_group')) END" BODY(2);
static const char sql_queue_metrics[] =
"SELECT " QEXISTS ", CASE WHEN " QEXISTS " THEN"
" (SELECT coalesce(json_agg(m), '[]') FROM deliver_cluster.metrics($1) m) END";
static const char sql_ping[] = "SELECT 1";

/*
 * shards: $1 the queue, $2 the partition.  The partition's deliver queue
 * is named only once deliver_shard.epoch_of found the partition here (it
 * raises 55000 "... is not on this shard" otherwise).
 */
#define PART_QUEUE "CASE WHEN deliver_shard.epoch_of($1, $2::int) IS NOT NULL" \
	" THEN deliver_shard.queue_of($1, $2::int) END"

/* $3 the body, $4 the ordering key, $5 the idempotency key */
static const char sql_send[] =
"SELECT deliver_shard.global_id($2::int, deliver_shard.write_epoch_of($1, $2::int),"
" deliver.send(deliver_shard.queue_of($1, $2::int), b->'payload', nullif(b->'headers', 'null'::jsonb),"
" $4, $5, " IV("delay") "))" BODY(3);
/*
 * A shard's part of a batch: $2 the body, $3 each message's partition, $4
 * its position in the body (from 1), $5 and $6 the ordering and
 * idempotency keys (JSON arrays, null for none).  One row per message:
 * its position and id.
 */
#define EACH_POS " FROM unnest($4::int[]) WITH ORDINALITY u(o, i) ORDER BY i)"
#define EACH_KEY(n) "ARRAY(SELECT k FROM jsonb_array_elements_text($" #n "::jsonb) WITH ORDINALITY u(k, i) ORDER BY i)"
static const char sql_send_batch[] =
"SELECT s.ord, s.message_id FROM (SELECT coalesce($2::jsonb, '{}'::jsonb) AS b) x,"
" LATERAL deliver_shard.send_batch(NULL, $3::int[], $4::int[], $1,"
" ARRAY(SELECT x.b->'messages'->(o - 1)->'payload'" EACH_POS ","
" ARRAY(SELECT nullif(x.b->'messages'->(o - 1)->'headers', 'null'::jsonb)" EACH_POS ","
" " EACH_KEY(5) ", " EACH_KEY(6) ", " IV("delay") ") s";
/* $3 max, $4 visibility timeout, $5 wait, $6 group: one row per message */
static const char sql_receive[] =
"SELECT row_to_json(x)::text FROM (SELECT"
" deliver_shard.global_id($2::int, e.epoch, r.message_id) AS message_id,"
" deliver_shard.global_id($2::int, e.epoch, r.delivery_id) AS delivery_id,"
" r.payload, r.headers, r.ordering_key, r.attempt, r.enqueued_at, r.lease_expires_at"
" FROM (SELECT deliver_shard.epoch_of($1, $2::int) AS epoch OFFSET 0) e,"
" LATERAL deliver.receive(CASE WHEN e.epoch IS NOT NULL THEN deliver_shard.queue_of($1, $2::int) END,"
" $3::int, $4::interval, $5::interval, $6) r) x";
/* $3 the id on the shard, $4 the body */
static const char sql_ack[] =
"SELECT json_build_object('acked', deliver.ack(" PART_QUEUE ", $3::bigint))";
static const char sql_nack[] =
"SELECT json_build_object('nacked', deliver.nack(" PART_QUEUE ", $3::bigint, b->>'error', "
IV("retry_after") "))" BODY(4);
static const char sql_extend[] =
"SELECT json_build_object('lease_expires_at', deliver.extend_lease(" PART_QUEUE ", $3::bigint, "
IV("visibility_timeout") "))" BODY(4);
/* $2 the shard's delivery ids, $3 their partitions */
static const char sql_ack_batch[] =
"SELECT CASE WHEN (SELECT count(deliver_shard.epoch_of($1, p)) FROM unnest($3::int[]) p) >= 0"
" THEN deliver_shard.ack_batch(NULL, $2::text[], $1) END";
/* the groups of partition 0 (every partition has the same) */
static const char sql_list_groups[] =
"SELECT coalesce(json_agg(g), '[]') FROM (SELECT deliver_shard.epoch_of($1, $2::int) AS epoch OFFSET 0) e,"
" LATERAL deliver.list_consumer_groups(CASE WHEN e.epoch IS NOT NULL"
" THEN deliver_shard.queue_of($1, $2::int) END) g";

/* ---- a request ---------------------------------------------------------- */

typedef struct
{
	struct MHD_Connection *c;
	request_t  *rq;
	const char *role;
	long long	deadline;		/* sp_now_ms(): the whole request ends by then */
	cmap	   *map;			/* held */
} rctx;

typedef enum
{
	PL_WRITE,					/* the partition's active placement */
	PL_READ,					/* the placement receives read */
	PL_ID						/* the placement an id names */
} pl_kind;

static atomic_uint spread;		/* the partition of the next message without a key */

static long long
min_ll(long long a, long long b)
{
	return a < b ? a : b;
}

/* the deadline of one statement that waits wait_ms on the server */
static long long
stmt_deadline(const rctx *x, long wait_ms)
{
	return min_ll(x->deadline, sp_now_ms() + wait_ms + cfg.statement_timeout_ms);
}

static bool
not_on_shard(const exec_result *er)
{
	return er->status != 200 && strcmp(er->sqlstate, "55000") == 0 && er->message &&
		strstr(er->message, "is not on this shard") != NULL;
}

static void
set_err(exec_result *er, int status, const char *sqlstate, const char *msg, const char *detail,
		const char *hint)
{
	exec_result_clear(er);
	er->status = status;
	snprintf(er->sqlstate, sizeof(er->sqlstate), "%s", sqlstate ? sqlstate : "");
	er->message = msg ? strdup(msg) : NULL;
	er->detail = detail ? strdup(detail) : NULL;
	er->hint = hint ? strdup(hint) : NULL;
	er->retry_after = status == 503 ? 1 : 0;
}

/*
 * An error answer: {"error", "detail", "hint", "sqlstate"}, "code":
 * "in_doubt" when the outcome is unknown, and the members in extra (each
 * starting with a comma) for a request that was done in part.
 */
static enum MHD_Result
answer_error(rctx *x, const exec_result *er, const char *extra)
{
	buf_t		b;
	enum MHD_Result ret;
	int			status = er->status ? er->status : 500;

	buf_init(&b);
	buf_puts(&b, "{\"error\":");
	buf_json_str(&b, er->message ? er->message : "error");
	buf_puts(&b, ",\"detail\":");
	buf_json_str(&b, er->detail);
	buf_puts(&b, ",\"hint\":");
	buf_json_str(&b, er->hint);
	buf_puts(&b, ",\"sqlstate\":");
	buf_json_str(&b, er->sqlstate[0] ? er->sqlstate : NULL);
	if (er->in_doubt)
		buf_puts(&b, ",\"code\":\"in_doubt\"");
	if (extra)
		buf_puts(&b, extra);
	buf_puts(&b, "}");
	snprintf(x->rq->sqlstate, sizeof(x->rq->sqlstate), "%s", er->sqlstate);
	ret = send_response(x->c, x->rq, status, "application/json", b.data, b.len,
						status == 503 ? (er->retry_after > 0 ? er->retry_after : 1) : 0);
	buf_free(&b);
	return ret;
}

static enum MHD_Result
answer(rctx *x, int status, const char *sqlstate, const char *msg, const char *detail,
	   const char *hint)
{
	exec_result er;
	enum MHD_Result ret;

	memset(&er, 0, sizeof(er));
	set_err(&er, status, sqlstate, msg, detail, hint);
	ret = answer_error(x, &er, NULL);
	exec_result_clear(&er);
	return ret;
}

static enum MHD_Result
answer_no_queue(rctx *x)
{
	char		msg[128];

	snprintf(msg, sizeof(msg), "queue \"%s\" does not exist", x->rq->rm.queue);
	return answer(x, 404, "42704", msg, NULL, NULL);
}

/* the error of a shard call; a partition the map and the shard agree is not there: no such queue */
static enum MHD_Result
answer_shard_error(rctx *x, const exec_result *er)
{
	if (not_on_shard(er))
		return answer_no_queue(x);
	return answer_error(x, er, NULL);
}

static shardpool *
pick(const cmap *m, pl_kind kind, int p, int epoch)
{
	switch (kind)
	{
		case PL_WRITE:
			return cmap_write_pool(m, p);
		case PL_READ:
			return cmap_read_pool(m, p);
		case PL_ID:
			return cmap_placement_pool(m, p, epoch);
	}
	return NULL;
}

/* the error for a partition the map has no placement for */
static void
no_placement(rctx *x, pl_kind kind, int p, int epoch, exec_result *er)
{
	char		msg[160];

	if (!x->map)
		set_err(er, 503, "08001", "the partition map has not been read from the router yet", NULL,
				"Retry: deliverd reads it every map_refresh seconds.");
	else if (kind == PL_ID)
	{
		snprintf(msg, sizeof(msg), "delivery id names no placement of this cluster (partition %d, epoch %d)",
				 p, epoch);
		set_err(er, 409, "55000", msg, "An id is partition:epoch:id, as the gateway returned it.", NULL);
	}
	else
	{
		snprintf(msg, sizeof(msg), "partition %d has no shard in the partition map", p);
		set_err(er, 503, "55000", msg, NULL, "Place the partitions with deliver_cluster.place_partitions().");
	}
}

/*
 * Run sql on the shard of partition p (kind says which placement); when the
 * shard says p is not there, read the map again and run it once more where
 * the map now points.  A not_on_shard() error left in er means the map
 * agrees with the shard.
 */
static void
shard_exec(rctx *x, pl_kind kind, int p, int epoch, const char *sql, int n,
		   const char *const *params, int flags, long wait_ms, exec_result *er)
{
	int			attempt;

	for (attempt = 0;; attempt++)
	{
		shardpool  *pool = pick(x->map, kind, p, epoch);

		if (!pool)
		{
			if (attempt == 0)
			{
				x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
				continue;
			}
			memset(er, 0, sizeof(*er));
			no_placement(x, kind, p, epoch, er);
			return;
		}
		sp_exec(pool, x->role, sql, n, params, stmt_deadline(x, wait_ms), flags, er);
		if (attempt > 0 || !not_on_shard(er))
			return;
		x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
		if (pick(x->map, kind, p, epoch) == pool)
			return;
		exec_result_clear(er);
	}
}

static const char *
body_or_null(request_t *rq)
{
	return rq->body.len ? rq->body.data : NULL;
}

/* the body as JSON (any value); NULL after answering 400 when it is not JSON */
static json_t *
parse_body(rctx *x, enum MHD_Result *ret)
{
	json_error_t je;
	json_t	   *j = json_loadb(x->rq->body.data, x->rq->body.len,
							   JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);

	if (!j)
	{
		char		detail[300];

		snprintf(detail, sizeof(detail), "%s (at character %d)", je.text, je.position);
		*ret = answer(x, 400, "22P02", "the request body is not valid JSON", detail,
					  "In cluster mode the gateway reads the keys of a send to choose its partition: "
					  "the body must be JSON whose numbers fit a double.");
	}
	return j;
}

/*
 * A key field of a message (ordering_key, idempotency_key): a string, or
 * NULL when missing or null; false for another JSON value.
 */
static bool
key_field(json_t *m, const char *field, const char **out)
{
	json_t	   *v = json_is_object(m) ? json_object_get(m, field) : NULL;

	*out = NULL;
	if (!v || json_is_null(v))
		return true;
	if (!json_is_string(v))
		return false;
	*out = json_string_value(v);
	return true;
}

/* the partition of a message: its ordering key's, else its idempotency key's, else the next in turn */
static int
partition_for(const cmap *m, const char *okey, const char *ikey)
{
	int			n = cmap_partitions(m);

	if (okey)
		return partition_of_key(okey, strlen(okey), n);
	if (ikey)
		return partition_of_key(ikey, strlen(ikey), n);
	return (int) (atomic_fetch_add(&spread, 1) % (unsigned) n);
}

/* ---- routes through the router ------------------------------------------ */

/*
 * Run sql on the router as the caller and answer with the last column of
 * its row.  queue_check: the first column says whether the queue exists
 * (else 404); not_found_if_empty: no row is a 404.
 */
static enum MHD_Result
router_route(rctx *x, const char *sql, int n, const char *const *params, int ok_status,
			 bool queue_check, bool not_found_if_empty, int flags)
{
	exec_result er;
	enum MHD_Result ret;

	sp_exec(cluster_router(), x->role, sql, n, params, stmt_deadline(x, 0), flags, &er);
	if (er.status != 200)
		ret = answer_error(x, &er, NULL);
	else if (!er.res || PQntuples(er.res) == 0)
		ret = not_found_if_empty ? answer_no_queue(x) : send_json(x->c, x->rq, ok_status, "null");
	else if (queue_check && strcmp(PQgetvalue(er.res, 0, 0), "t") != 0)
		ret = answer_no_queue(x);
	else if (PQgetisnull(er.res, 0, PQnfields(er.res) - 1))
		ret = send_json(x->c, x->rq, ok_status, "null");
	else
		ret = send_json(x->c, x->rq, ok_status, PQgetvalue(er.res, 0, PQnfields(er.res) - 1));
	exec_result_clear(&er);
	return ret;
}

/* ---- sends -------------------------------------------------------------- */

static enum MHD_Result
cluster_send(rctx *x)
{
	const char *ikey = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, "Idempotency-Key");
	const char *okey = NULL,
			   *bkey = NULL;
	const char *params[5];
	char		part[16];
	json_t	   *j;
	exec_result er;
	enum MHD_Result ret;
	buf_t		b;
	int			p;

	if (!body_or_null(x->rq))
		return answer(x, 400, NULL, "request body required", NULL, "Send {\"payload\": ...}.");
	if (!(j = parse_body(x, &ret)))
		return ret;
	if (!key_field(j, "ordering_key", &okey) || !key_field(j, "idempotency_key", &bkey))
	{
		json_decref(j);
		return answer(x, 422, "22023", "ordering_key and idempotency_key must be strings", NULL,
					  "In cluster mode a message's keys choose its partition.");
	}
	if (!ikey)
		ikey = bkey;
	if (!x->map)
		x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
	if (!x->map)
	{
		json_decref(j);
		memset(&er, 0, sizeof(er));
		no_placement(x, PL_WRITE, 0, 0, &er);
		ret = answer_error(x, &er, NULL);
		exec_result_clear(&er);
		return ret;
	}
	p = partition_for(x->map, okey, ikey);
	snprintf(part, sizeof(part), "%d", p);
	params[0] = x->rq->rm.queue;
	params[1] = part;
	params[2] = x->rq->body.data;
	params[3] = okey;
	params[4] = ikey;
	shard_exec(x, PL_WRITE, p, 0, sql_send, 5, params, SP_WRITE, 0, &er);
	json_decref(j);
	if (er.status != 200 || !er.res || PQntuples(er.res) != 1)
	{
		if (er.status == 200)
			set_err(&er, 500, NULL, "the shard returned no id", NULL, NULL);
		ret = answer_shard_error(x, &er);
		exec_result_clear(&er);
		return ret;
	}
	buf_init(&b);
	buf_puts(&b, "{\"message_id\":");
	buf_json_str(&b, PQgetvalue(er.res, 0, 0));
	buf_puts(&b, "}");
	ret = send_json(x->c, x->rq, 201, b.data);
	buf_free(&b);
	exec_result_clear(&er);
	return ret;
}

/* what became of each message of a batch */
typedef enum
{
	M_PENDING = 0,
	M_SENT,
	M_NOT_SENT,
	M_IN_DOUBT
} msg_state;

typedef struct
{
	int			partition;
	const char *okey;
	const char *ikey;
	char	   *ikey_made;		/* header:i, owned */
	shardpool  *pool;
	msg_state	state;
	char		id[GLOBAL_ID_MAX_LEN];
	bool		retried;		/* sent again after the map was read again */
} batch_msg;

/*
 * Send the messages of the batch that go to pool and are pending (one
 * statement, one transaction on the shard); records the outcome in each.
 * Returns the statement's status; er keeps its error.
 */
static int
send_part(rctx *x, batch_msg *ms, int n, shardpool *pool, exec_result *er)
{
	buf_t		parts,
				ords,
				okeys,
				ikeys;
	const char *params[6];
	int			i,
				k = 0,
				row;
	msg_state	failed;

	buf_init(&parts);
	buf_init(&ords);
	buf_init(&okeys);
	buf_init(&ikeys);
	buf_puts(&parts, "{");
	buf_puts(&ords, "{");
	buf_puts(&okeys, "[");
	buf_puts(&ikeys, "[");
	for (i = 0; i < n; i++)
	{
		if (ms[i].pool != pool || ms[i].state != M_PENDING)
			continue;
		buf_printf(&parts, "%s%d", k ? "," : "", ms[i].partition);
		buf_printf(&ords, "%s%d", k ? "," : "", i + 1);
		buf_puts(&okeys, k ? "," : "");
		buf_json_str(&okeys, ms[i].okey);
		buf_puts(&ikeys, k ? "," : "");
		buf_json_str(&ikeys, ms[i].ikey);
		k++;
	}
	buf_puts(&parts, "}");
	buf_puts(&ords, "}");
	buf_puts(&okeys, "]");
	buf_puts(&ikeys, "]");
	params[0] = x->rq->rm.queue;
	params[1] = x->rq->body.data;
	params[2] = parts.data;
	params[3] = ords.data;
	params[4] = okeys.data;
	params[5] = ikeys.data;
	sp_exec(pool, x->role, sql_send_batch, 6, params, stmt_deadline(x, 0), SP_WRITE, er);
	if (er->status == 200 && er->res)
	{
		for (row = 0; row < PQntuples(er->res); row++)
		{
			int			ord = atoi(PQgetvalue(er->res, row, 0));

			if (ord >= 1 && ord <= n && ms[ord - 1].pool == pool)
			{
				snprintf(ms[ord - 1].id, sizeof(ms[ord - 1].id), "%s", PQgetvalue(er->res, row, 1));
				ms[ord - 1].state = M_SENT;
			}
		}
		/* (every message of the part has a row; one without is not sent) */
		failed = M_NOT_SENT;
	}
	else
		failed = er->in_doubt ? M_IN_DOUBT : M_NOT_SENT;
	/* a partition not on the shard: left pending, for the map read again */
	if (!not_on_shard(er))
		for (i = 0; i < n; i++)
			if (ms[i].pool == pool && ms[i].state == M_PENDING)
				ms[i].state = failed;
	buf_free(&parts);
	buf_free(&ords);
	buf_free(&okeys);
	buf_free(&ikeys);
	return er->status;
}

/*
 * A batch: the messages split by the shard of their partition, each part
 * one transaction there.  All sent: 201 {"message_ids"} in the order of the
 * body.  A part that failed: the error of the first that failed (503 with
 * code in_doubt when a part's outcome is unknown), and when another part
 * committed or may have, "message_ids" (null for a message not sent),
 * "not_sent" and "in_doubt" (positions from 0).  A part refused for its
 * content (4xx) stops the parts not sent yet.
 */
static enum MHD_Result
cluster_send_batch(rctx *x)
{
	const char *hkey = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, "Idempotency-Key");
	json_t	   *j,
			   *msgs;
	batch_msg  *ms = NULL;
	exec_result first;
	enum MHD_Result ret;
	int			n,
				i,
				sent = 0,
				doubt = 0;
	bool		stop = false;
	buf_t		b;

	memset(&first, 0, sizeof(first));
	if (!body_or_null(x->rq))
		return answer(x, 400, NULL, "request body required", NULL,
					  "Send {\"messages\": [{\"payload\": ...}]}.");
	if (!(j = parse_body(x, &ret)))
		return ret;
	msgs = json_is_object(j) ? json_object_get(j, "messages") : NULL;
	n = json_is_array(msgs) ? (int) json_array_size(msgs) : 0;
	if (n == 0)
	{
		json_decref(j);
		return answer(x, 422, "22023", "messages must be a non-empty array", NULL,
					  "Send {\"messages\": [{\"payload\": ...}]}.");
	}
	if (!x->map)
		x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
	ms = calloc((size_t) n, sizeof(batch_msg));
	if (!ms)
		abort();
	for (i = 0; i < n; i++)
	{
		json_t	   *m = json_array_get(msgs, (size_t) i);

		if (!key_field(m, "ordering_key", &ms[i].okey) || !key_field(m, "idempotency_key", &ms[i].ikey))
		{
			set_err(&first, 422, "22023", "ordering_key and idempotency_key must be strings", NULL,
					"In cluster mode a message's keys choose its partition.");
			goto done;
		}
		if (!ms[i].ikey && hkey)
		{
			size_t		len = strlen(hkey) + 16;

			ms[i].ikey_made = malloc(len);
			if (!ms[i].ikey_made)
				abort();
			snprintf(ms[i].ikey_made, len, "%s:%d", hkey, i);
			ms[i].ikey = ms[i].ikey_made;
		}
		if (x->map)
		{
			ms[i].partition = partition_for(x->map, ms[i].okey, ms[i].ikey);
			ms[i].pool = cmap_write_pool(x->map, ms[i].partition);
		}
		if (!ms[i].pool)
		{
			no_placement(x, PL_WRITE, ms[i].partition, 0, &first);
			goto done;
		}
	}
	/*
	 * The parts, one shard at a time, in the order of their first message;
	 * the shards that are up first (a part for a shard that is down waits
	 * for it until its deadline).
	 */
	for (;;)
	{
		shardpool  *pool = NULL;
		exec_result er;

		for (i = 0; i < n && !pool; i++)
			if (ms[i].state == M_PENDING && sp_available(ms[i].pool))
				pool = ms[i].pool;
		for (i = 0; i < n && !pool; i++)
			if (ms[i].state == M_PENDING)
				pool = ms[i].pool;
		if (!pool)
			break;
		if (stop)
		{
			for (i = 0; i < n; i++)
				if (ms[i].state == M_PENDING)
					ms[i].state = M_NOT_SENT;
			break;
		}
		send_part(x, ms, n, pool, &er);
		if (not_on_shard(&er))
		{
			/* a stale map: read it again; what still goes to this shard is not sent */
			x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
			for (i = 0; i < n; i++)
				if (ms[i].pool == pool && ms[i].state == M_PENDING)
				{
					shardpool  *now = cmap_write_pool(x->map, ms[i].partition);

					if (ms[i].retried || !now || now == pool)
						ms[i].state = M_NOT_SENT;
					else
					{
						ms[i].pool = now;
						ms[i].retried = true;
					}
				}
		}
		if (er.status != 200)
		{
			/* refused for its content: the parts not sent yet would be too, or half a batch would go */
			if (er.status != 503 && !not_on_shard(&er))
				stop = true;
			if (first.status == 0 || (er.in_doubt && !first.in_doubt))
			{
				exec_result_clear(&first);
				first = er;
				memset(&er, 0, sizeof(er));
			}
		}
		exec_result_clear(&er);
	}
	for (i = 0; i < n; i++)
	{
		sent += ms[i].state == M_SENT;
		doubt += ms[i].state == M_IN_DOUBT;
	}
	buf_init(&b);
	if (sent == n)
	{
		buf_puts(&b, "{\"message_ids\":[");
		for (i = 0; i < n; i++)
		{
			buf_puts(&b, i ? "," : "");
			buf_json_str(&b, ms[i].id);
		}
		buf_puts(&b, "]}");
		ret = send_json(x->c, x->rq, 201, b.data);
	}
	else if (sent == 0 && doubt == 0)
		ret = not_on_shard(&first) ? answer_no_queue(x) : answer_error(x, &first, NULL);
	else
	{
		int			k;

		buf_puts(&b, ",\"message_ids\":[");
		for (i = 0; i < n; i++)
		{
			buf_puts(&b, i ? "," : "");
			buf_json_str(&b, ms[i].state == M_SENT ? ms[i].id : NULL);
		}
		buf_puts(&b, "],\"not_sent\":[");
		for (i = 0, k = 0; i < n; i++)
			if (ms[i].state == M_NOT_SENT)
				buf_printf(&b, "%s%d", k++ ? "," : "", i);
		buf_puts(&b, "],\"in_doubt\":[");
		for (i = 0, k = 0; i < n; i++)
			if (ms[i].state == M_IN_DOUBT)
				buf_printf(&b, "%s%d", k++ ? "," : "", i);
		buf_puts(&b, "]");
		ret = answer_error(x, &first, b.data);
	}
	buf_free(&b);
	exec_result_clear(&first);
	for (i = 0; i < n; i++)
		free(ms[i].ikey_made);
	free(ms);
	json_decref(j);
	return ret;

done:
	ret = answer_error(x, &first, NULL);
	exec_result_clear(&first);
	for (i = 0; i < n; i++)
		free(ms[i].ikey_made);
	free(ms);
	json_decref(j);
	return ret;
}

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
	shard_exec(x, PL_READ, p, 0, sql_receive, 6, params, SP_FAST, wait_ms, er);
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
	long long	now = sp_now_ms();

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
static enum MHD_Result
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
		return answer(x, 400, NULL, err, NULL, NULL);
	if (shutting_down())
		rp.wait_ms = 0;
	/* not past the token's expiry: nothing is handed out after it */
	if (x->rq->exp > 0)
	{
		long		left = ms_until(x->rq->exp);

		if (rp.wait_ms > left)
			rp.wait_ms = left > 0 ? left : 0;
	}
	wait_end = sp_now_ms() + rp.wait_ms;
	x->deadline += rp.wait_ms;
	if (!x->map)
		x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
	nparts = cmap_partitions(x->map);
	if (nparts == 0)
	{
		no_placement(x, PL_READ, 0, 0, &er);
		ret = answer_error(x, &er, NULL);
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
		left = min_ll(wait_end, x->deadline) - sp_now_ms();
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
		ret = answer_shard_error(x, &er);
	else
	{
		set_err(&er, 503, "08001", "no shard of the queue's partitions is available", NULL,
				"The shards may be failing over; retry.");
		ret = answer_error(x, &er, NULL);
	}
	exec_result_clear(&er);
	buf_free(&out);
	buf_free(&skipped);
	free(skip);
	return ret;
}

/* ---- acks, nacks, leases ------------------------------------------------ */

/* ack, nack or extend of the delivery id in the path, on the shard of its placement */
static enum MHD_Result
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
	params[3] = body_or_null(x->rq);
	shard_exec(x, PL_ID, m->id_partition, m->id_epoch, sql, nparams, params, SP_WRITE, 0, &er);
	if (er.status != 200)
		ret = answer_shard_error(x, &er);
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
static enum MHD_Result
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
	if (!body_or_null(x->rq))
		return answer(x, 400, NULL, "request body required", NULL, "Send {\"delivery_ids\": [...]}.");
	if (!(j = parse_body(x, &ret)))
		return ret;
	ids = json_is_object(j) ? json_object_get(j, "delivery_ids") : NULL;
	if (ids && !json_is_null(ids) && !json_is_array(ids))
	{
		json_decref(j);
		return answer(x, 422, "22023", "delivery_ids must be an array", NULL,
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
			set_err(&first, 400, "22P02", "invalid delivery id", NULL,
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
			no_placement(x, PL_ID, it[i].partition, it[i].epoch, &first);
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
		sp_exec(pool, x->role, sql_ack_batch, 3, params, stmt_deadline(x, 0), SP_WRITE, &er);
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
		if (not_on_shard(&first))
			ret = answer_no_queue(x);
		else
			ret = answer_error(x, &first, b.data);
	}
	buf_free(&b);
	exec_result_clear(&first);
	free(it);
	json_decref(j);
	return ret;

fail:
	ret = answer_error(x, &first, NULL);
	exec_result_clear(&first);
	free(it);
	json_decref(j);
	return ret;
}

/* ---- the routes --------------------------------------------------------- */

static enum MHD_Result
cluster_readyz(rctx *x)
{
	exec_result er;
	enum MHD_Result ret;
	buf_t		b;
	bool		ready;

	if (shutting_down())
		return answer(x, 503, NULL, "shutting down", NULL, NULL);
	sp_exec(cluster_router(), NULL, sql_ping, 0, NULL, stmt_deadline(x, 0), SP_FAST, &er);
	ready = er.status == 200 && x->map;
	buf_init(&b);
	buf_printf(&b, "{\"status\":\"%s\",", ready ? "ready" : "not ready");
	cluster_status_json(&b);
	buf_puts(&b, "}");
	ret = send_response(x->c, x->rq, ready ? 200 : 503, "application/json", b.data, b.len,
						ready ? 0 : 1);
	buf_free(&b);
	exec_result_clear(&er);
	return ret;
}

enum MHD_Result
cluster_dispatch(struct MHD_Connection *c, request_t *rq)
{
	rctx		x;
	route_match *m = &rq->rm;
	const char *p[4];
	char		max[24],
				part[16];
	enum MHD_Result ret;
	long		n;

	x.c = c;
	x.rq = rq;
	x.role = rq->role[0] ? rq->role : NULL;
	x.deadline = (long long) rq->start.tv_sec * 1000 + rq->start.tv_nsec / 1000000 + cfg.request_timeout_ms;
	x.map = cmap_get();
	p[0] = m->queue;
	switch (m->id)
	{
		case R_READYZ:
			ret = cluster_readyz(&x);
			break;
		case R_QUEUES_LIST:
			ret = router_route(&x, sql_list_queues, 0, p, 200, false, false, 0);
			break;
		case R_QUEUE_CREATE:
			p[0] = body_or_null(rq);
			ret = router_route(&x, sql_create_queue, 1, p, 201, false, false, SP_WRITE);
			break;
		case R_QUEUE_GET:
			ret = router_route(&x, sql_get_queue, 1, p, 200, false, true, 0);
			break;
		case R_QUEUE_DROP:
			ret = router_route(&x, sql_drop_queue, 1, p, 200, false, false, SP_WRITE);
			break;
		case R_GROUPS_LIST:
			{
				exec_result er;

				snprintf(part, sizeof(part), "0");
				p[1] = part;
				shard_exec(&x, PL_READ, 0, 0, sql_list_groups, 2, p, 0, 0, &er);
				ret = er.status == 200 && er.res && PQntuples(er.res) == 1
					? send_json(c, rq, 200, PQgetvalue(er.res, 0, 0)) : answer_shard_error(&x, &er);
				exec_result_clear(&er);
				break;
			}
		case R_GROUP_CREATE:
			p[1] = body_or_null(rq);
			ret = router_route(&x, sql_create_group, 2, p, 201, true, false, SP_WRITE);
			break;
		case R_GROUP_DROP:
			p[1] = m->group;
			ret = router_route(&x, sql_drop_group, 2, p, 200, true, false, SP_WRITE);
			break;
		case R_DEAD_LETTERS:
			{
				const char *g = get_arg(c, "group");
				const char *mx = get_arg(c, "max");

				if (g && !valid_name(g))
				{
					ret = answer(&x, 400, NULL, "group must be " NAME_RULE, NULL, NULL);
					break;
				}
				if (mx && !parse_int(mx, &n))
				{
					ret = answer(&x, 400, NULL, "max must be an integer", NULL, NULL);
					break;
				}
				snprintf(max, sizeof(max), "%ld", mx ? n : (long) DEAD_LETTERS_DEFAULT_MAX);
				p[1] = g;
				p[2] = max;
				ret = router_route(&x, sql_dead_letters, 3, p, 200, true, false, 0);
				break;
			}
		case R_REDRIVE:
			p[1] = body_or_null(rq);
			ret = router_route(&x, sql_redrive, 2, p, 200, true, false, SP_WRITE);
			break;
		case R_QUEUE_METRICS:
			ret = router_route(&x, sql_queue_metrics, 1, p, 200, true, false, 0);
			break;
		case R_SEND:
			ret = cluster_send(&x);
			break;
		case R_SEND_BATCH:
			ret = cluster_send_batch(&x);
			break;
		case R_RECEIVE:
			ret = cluster_receive(&x);
			break;
		case R_ACK:
			ret = cluster_by_id(&x, sql_ack, 3);
			break;
		case R_ACK_BATCH:
			ret = cluster_ack_batch(&x);
			break;
		case R_NACK:
			ret = cluster_by_id(&x, sql_nack, 4);
			break;
		case R_EXTEND:
			ret = cluster_by_id(&x, sql_extend, 4);
			break;
		case R_STREAM:
			ret = answer(&x, 501, NULL, "the event stream is not served in cluster mode", NULL,
						 "Receive with a long poll: POST /v1/queues/{queue}/receive?wait=N.");
			break;
		case R_PEEK:
		case R_DEAD_LETTERS_DELETE:
		case R_ALL_QUEUE_METRICS:
		case R_ALERTS:
		case R_WORKERS:
		case R_PUSH_SUBSCRIPTIONS:
			ret = answer(&x, 501, NULL, "this route is not served in cluster mode", NULL,
						 "It is served by a deliverd of a single node (the console's routes).");
			break;
		default:
			ret = answer(&x, 404, NULL, "no such route", NULL, "See /openapi.json.");
			break;
	}
	cmap_put(x.map);
	return ret;
}
