/*
 * deliverd (cluster mode): answering a request, and running its statements
 * on the shard of a partition (reading the map again when the shard says
 * the partition moved) or on the router.
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

/* ---- a request ---------------------------------------------------------- */

static atomic_uint spread;		/* the partition of the next message without a key */

static long long
min_ll(long long a, long long b)
{
	return a < b ? a : b;
}

/* the deadline of one statement that waits wait_ms on the server */
long long
cl_stmt_deadline(const rctx *x, long wait_ms)
{
	return min_ll(x->deadline, mono_ms() + wait_ms + cfg.statement_timeout_ms);
}

bool
cl_not_on_shard(const exec_result *er)
{
	return er->status != 200 && strcmp(er->sqlstate, "55000") == 0 && er->message &&
		strstr(er->message, "is not on this shard") != NULL;
}

void
cl_set_err(exec_result *er, int status, const char *sqlstate, const char *msg, const char *detail,
		const char *hint)
{
	exec_result_clear(er);
	exec_result_set_error(er, status, sqlstate, msg, detail, hint);
}

/*
 * An error answer: {"error", "detail", "hint", "sqlstate"}, "code":
 * "in_doubt" when the outcome is unknown, and the members in extra (each
 * starting with a comma) for a request that was done in part.
 */
enum MHD_Result
cl_answer_error(rctx *x, const exec_result *er, const char *extra)
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

enum MHD_Result
cl_answer(rctx *x, int status, const char *sqlstate, const char *msg, const char *detail,
	   const char *hint)
{
	exec_result er;
	enum MHD_Result ret;

	memset(&er, 0, sizeof(er));
	cl_set_err(&er, status, sqlstate, msg, detail, hint);
	ret = cl_answer_error(x, &er, NULL);
	exec_result_clear(&er);
	return ret;
}

enum MHD_Result
cl_answer_no_queue(rctx *x)
{
	char		msg[128];

	snprintf(msg, sizeof(msg), "queue \"%s\" does not exist", x->rq->rm.queue);
	return cl_answer(x, 404, "42704", msg, NULL, NULL);
}

/* the error of a shard call; a partition the map and the shard agree is not there: no such queue */
enum MHD_Result
cl_answer_shard_error(rctx *x, const exec_result *er)
{
	if (cl_not_on_shard(er))
		return cl_answer_no_queue(x);
	return cl_answer_error(x, er, NULL);
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
void
cl_no_placement(rctx *x, pl_kind kind, int p, int epoch, exec_result *er)
{
	char		msg[160];

	if (!x->map)
		cl_set_err(er, 503, "08001", "the partition map has not been read from the router yet", NULL,
				"Retry: deliverd reads it every map_refresh seconds.");
	else if (kind == PL_ID)
	{
		snprintf(msg, sizeof(msg), "delivery id names no placement of this cluster (partition %d, epoch %d)",
				 p, epoch);
		cl_set_err(er, 409, "55000", msg, "An id is partition:epoch:id, as the gateway returned it.", NULL);
	}
	else
	{
		snprintf(msg, sizeof(msg), "partition %d has no shard in the partition map", p);
		cl_set_err(er, 503, "55000", msg, NULL, "Place the partitions with deliver_cluster.place_partitions().");
	}
}

/*
 * Run sql on the shard of partition p (kind says which placement); when the
 * shard says p is not there, read the map again and run it once more where
 * the map now points.  A cl_not_on_shard() error left in er means the map
 * agrees with the shard.
 */
void
cl_shard_exec(rctx *x, pl_kind kind, int p, int epoch, const char *sql, int n,
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
			cl_no_placement(x, kind, p, epoch, er);
			return;
		}
		sp_exec(pool, x->role, sql, n, params, cl_stmt_deadline(x, wait_ms), flags, er);
		if (attempt > 0 || !cl_not_on_shard(er))
			return;
		x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
		if (pick(x->map, kind, p, epoch) == pool)
			return;
		exec_result_clear(er);
	}
}

const char *
cl_body(request_t *rq)
{
	return rq->body.len ? rq->body.data : NULL;
}

/* the body as JSON (any value); NULL after answering 400 when it is not JSON */
json_t *
cl_parse_body(rctx *x, enum MHD_Result *ret)
{
	json_error_t je;
	json_t	   *j = json_loadb(x->rq->body.data, x->rq->body.len,
							   JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);

	if (!j)
	{
		char		detail[300];

		snprintf(detail, sizeof(detail), "%s (at character %d)", je.text, je.position);
		*ret = cl_answer(x, 400, "22P02", "the request body is not valid JSON", detail,
					  "In cluster mode the gateway reads the keys of a send to choose its partition: "
					  "the body must be JSON whose numbers fit a double.");
	}
	return j;
}

enum MHD_Result
cl_batch_too_large(rctx *x, int n)
{
	char		msg[120];

	snprintf(msg, sizeof(msg), "a batch of %d is more than max_batch (%d)", n, cfg.max_batch);
	return cl_answer(x, 413, "54000", msg, NULL,
					 "Split the batch (deliverd's max_batch is the shards' deliver.max_batch_size).");
}

/*
 * A key field of a message (ordering_key, idempotency_key): a string, or
 * NULL when missing or null; false for another JSON value.
 */
bool
cl_key_field(json_t *m, const char *field, const char **out)
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
int
cl_partition_for(const cmap *m, const char *okey, const char *ikey)
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
enum MHD_Result
cl_router_route(rctx *x, const char *sql, int n, const char *const *params, int ok_status,
			 bool queue_check, bool not_found_if_empty, int flags)
{
	exec_result er;
	enum MHD_Result ret;

	sp_exec(cluster_router(), x->role, sql, n, params, cl_stmt_deadline(x, 0), flags, &er);
	if (er.status != 200)
		ret = cl_answer_error(x, &er, NULL);
	else if (!er.res || PQntuples(er.res) == 0)
		ret = not_found_if_empty ? cl_answer_no_queue(x) : send_json(x->c, x->rq, ok_status, "null");
	else if (queue_check && strcmp(PQgetvalue(er.res, 0, 0), "t") != 0)
		ret = cl_answer_no_queue(x);
	else if (PQgetisnull(er.res, 0, PQnfields(er.res) - 1))
		ret = send_json(x->c, x->rq, ok_status, "null");
	else
		ret = send_json(x->c, x->rq, ok_status, PQgetvalue(er.res, 0, PQnfields(er.res) - 1));
	exec_result_clear(&er);
	return ret;
}

