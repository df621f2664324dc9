/*
 * deliverd (cluster mode): sends.  A message goes to the shard of its
 * partition (its ordering key's, else its idempotency key's, else the next
 * in turn); a batch is split by shard, each part one transaction there.
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

/* $3 the body, $4 the ordering key, $5 the idempotency key */
static const char sql_send[] =
"SELECT deliver_shard.global_id($2::int, deliver_shard.write_epoch_of($1, $2::int),"
" deliver.send(deliver_shard.queue_of($1, $2::int), b->'payload', nullif(b->'headers', 'null'::jsonb),"
" $4, $5, " IV("delay") ", " TS("expires_at") ", " INTF("priority") "))" BODY(3);
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
" " EACH_KEY(5) ", " EACH_KEY(6) ", " IV("delay") ", " TS("expires_at") ", " INTF("priority") ") s";

/* ---- sends -------------------------------------------------------------- */

enum MHD_Result
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

	if (!cl_body(x->rq))
		return cl_answer(x, 400, NULL, "request body required", NULL, "Send {\"payload\": ...}.");
	if (!(j = cl_parse_body(x, &ret)))
		return ret;
	if (!cl_key_field(j, "ordering_key", &okey) || !cl_key_field(j, "idempotency_key", &bkey))
	{
		json_decref(j);
		return cl_answer(x, 422, "22023", "ordering_key and idempotency_key must be strings", NULL,
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
		cl_no_placement(x, PL_WRITE, 0, 0, &er);
		ret = cl_answer_error(x, &er, NULL);
		exec_result_clear(&er);
		return ret;
	}
	p = cl_partition_for(x->map, okey, ikey);
	snprintf(part, sizeof(part), "%d", p);
	params[0] = x->rq->rm.queue;
	params[1] = part;
	params[2] = x->rq->body.data;
	params[3] = okey;
	params[4] = ikey;
	cl_shard_exec(x, PL_WRITE, p, 0, sql_send, 5, params, SP_WRITE, 0, &er);
	json_decref(j);
	if (er.status != 200 || !er.res || PQntuples(er.res) != 1)
	{
		if (er.status == 200)
			cl_set_err(&er, 500, NULL, "the shard returned no id", NULL, NULL);
		ret = cl_answer_shard_error(x, &er);
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
	sp_exec(pool, x->role, sql_send_batch, 6, params, cl_stmt_deadline(x, 0), SP_WRITE, er);
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
	if (!cl_not_on_shard(er))
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
enum MHD_Result
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
	if (!cl_body(x->rq))
		return cl_answer(x, 400, NULL, "request body required", NULL,
					  "Send {\"messages\": [{\"payload\": ...}]}.");
	if (!(j = cl_parse_body(x, &ret)))
		return ret;
	msgs = json_is_object(j) ? json_object_get(j, "messages") : NULL;
	n = json_is_array(msgs) ? (int) json_array_size(msgs) : 0;
	if (n == 0)
	{
		json_decref(j);
		return cl_answer(x, 422, "22023", "messages must be a non-empty array", NULL,
					  "Send {\"messages\": [{\"payload\": ...}]}.");
	}
	if (n > cfg.max_batch)
	{
		json_decref(j);
		return cl_batch_too_large(x, n);
	}
	if (!x->map)
		x->map = cluster_refresh(x->map, STALE_MAP_MS, x->deadline);
	ms = calloc((size_t) n, sizeof(batch_msg));
	if (!ms)
		abort();
	for (i = 0; i < n; i++)
	{
		json_t	   *m = json_array_get(msgs, (size_t) i);

		if (!cl_key_field(m, "ordering_key", &ms[i].okey) || !cl_key_field(m, "idempotency_key", &ms[i].ikey))
		{
			cl_set_err(&first, 422, "22023", "ordering_key and idempotency_key must be strings", NULL,
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
			ms[i].partition = cl_partition_for(x->map, ms[i].okey, ms[i].ikey);
			ms[i].pool = cmap_write_pool(x->map, ms[i].partition);
		}
		if (!ms[i].pool)
		{
			cl_no_placement(x, PL_WRITE, ms[i].partition, 0, &first);
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
		if (cl_not_on_shard(&er))
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
			if (er.status != 503 && !cl_not_on_shard(&er))
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
		ret = cl_not_on_shard(&first) ? cl_answer_no_queue(x) : cl_answer_error(x, &first, NULL);
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
		ret = cl_answer_error(x, &first, b.data);
	}
	buf_free(&b);
	exec_result_clear(&first);
	for (i = 0; i < n; i++)
		free(ms[i].ikey_made);
	free(ms);
	json_decref(j);
	return ret;

done:
	ret = cl_answer_error(x, &first, NULL);
	exec_result_clear(&first);
	for (i = 0; i < n; i++)
		free(ms[i].ikey_made);
	free(ms);
	json_decref(j);
	return ret;
}

