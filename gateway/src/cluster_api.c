/*
 * deliverd (cluster mode): the routes over a deliver cluster, and the
 * administration ones (this file; the message routes are in
 * cluster_send.c and cluster_receive.c, what they share in
 * cluster_request.c).
 *
 * Messages go to the shards directly, on the placement the partition map
 * gives: a send to the shard of its partition (the ordering key's, else the
 * idempotency key's, else the next in turn), a batch split by shard (each
 * shard's part one transaction there), a receive going round the
 * partitions without waiting on any one shard, an ack, nack or extend to
 * the placement its id names, a message's deletion too.  Administration
 * (queues and their settings, groups and their flow control, peek, reset,
 * dead letters, redrive, metrics, the console's views) goes through the router's
 * deliver_cluster functions, which apply it on every partition.  Every call runs as the caller's role and ends by the
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
#include "cluster_api.h"
#include "config.h"
#include "globalid.h"
#include "main.h"
#include "sqlfrag.h"
#include "statements.h"
#include "stream.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the SQL ------------------------------------------------------------ */

/* router: the queue exists (routes whose function would not say so) */
#define QEXISTS "EXISTS (SELECT 1 FROM deliver_cluster.list_queues() q WHERE q.queue_name = $1)"

static const char sql_list_queues[] =
"SELECT coalesce(json_agg(q), '[]') FROM deliver_cluster.list_queues() q";
/* a node's answer (partition 0's settings), and "partitions" */
static const char sql_get_queue[] =
"SELECT row_to_json(q) FROM deliver_cluster.queue_settings($1) q";
static const char sql_create_queue[] =
"SELECT json_build_object('queue_name', b->>'name', 'created', true, 'partitions',"
" deliver_cluster.create_queue(b->>'name', b->>'guarantee', " IV("visibility_timeout") ","
" (b->>'max_attempts')::int, (b->>'fifo')::boolean, " IV("dedup_window") ","
" " IV("retry_base") ", " IV("retry_max") ", " IV("message_ttl") ", b->>'on_expire',"
" (b->>'max_depth')::bigint, b->>'overflow', b->>'ack_commit', " BOOLF("priorities") "))" BODY(1);
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
" b->>'consumer_group', b->>'to_queue')) END" BODY(2);
static const char sql_delete_dead_letters[] =
"SELECT json_build_object('deleted', deliver_cluster.delete_dead_letters($1,"
" CASE WHEN b ? 'message_ids' THEN ARRAY(SELECT jsonb_array_elements_text(b->'message_ids')) END,"
" b->>'consumer_group'))" BODY(2);
/*
 * Replay of the archive into a group over the partitions: a position is
 * one per partition ("after": the global ids the last call returned).
 */
static const char sql_replay[] =
"SELECT json_build_object('replayed', r.replayed, 'after', to_json(r.positions))" BODY(3) ","
" deliver_cluster.replay_archive($1, $2, " TS("since") ","
" CASE WHEN jsonb_typeof(b->'after') IS DISTINCT FROM 'null'"
" THEN ARRAY(SELECT jsonb_array_elements_text(b->'after')) END,"
" coalesce((b->>'max_messages')::int, 100)) r";
/*
 * Topic routing: the bindings are the router's; a publish sends every copy
 * to one partition, so on one shard in one transaction there.
 */
static const char sql_publish[] =
"SELECT (SELECT coalesce(json_agg(x), '[]') FROM (SELECT p.queue_name AS queue, p.message_id"
" FROM deliver_cluster.publish(b->>'routing_key', b->'payload', nullif(b->'headers', 'null'::jsonb),"
" b->>'ordering_key', coalesce($2, b->>'idempotency_key'), " IV("delay") ","
" coalesce((b->>'mandatory')::boolean, false), " TS("expires_at") ", " INTF("priority") ") p) x)" BODY(1);
static const char sql_list_bindings[] =
"SELECT coalesce(json_agg(x), '[]') FROM (SELECT l.pattern, l.queue_name AS queue, l.created_at"
" FROM deliver_cluster.list_bindings($1) l) x";
static const char sql_bind[] =
"SELECT json_build_object('pattern', b->>'pattern', 'queue', b->>'queue',"
" 'created', deliver_cluster.bind(b->>'pattern', b->>'queue'))" BODY(1);
static const char sql_unbind[] =
"SELECT json_build_object('pattern', b->>'pattern', 'queue', b->>'queue',"
" 'removed', deliver_cluster.unbind(b->>'pattern', b->>'queue'))" BODY(1);
static const char sql_test_routing[] =
"SELECT coalesce(json_agg(x), '[]') FROM (SELECT t.queue_name AS queue, t.pattern"
" FROM deliver_cluster.test_routing($1) t) x";
/*
 * Queue settings, flow control and inspection: the router's functions of
 * the same names, over every partition (each raises 42704 for a queue it
 * does not know).  "partitions": how many partitions they changed.
 */
static const char sql_alter_queue[] =
"SELECT json_build_object('queue_name', $1::text, 'altered', true, 'partitions',"
" deliver_cluster.alter_queue($1, " IV("visibility_timeout") ", (b->>'max_attempts')::int,"
" " IV("dedup_window") ", " IV("retry_base") ", " IV("retry_max") ","
" " IV("archive_retention") ", " IV("message_ttl") ", b->>'on_expire',"
" (b->>'max_depth')::bigint, b->>'overflow', b->>'ack_commit', " BOOLF("priorities") "))" BODY(2);
static const char sql_pause_group[] =
"SELECT json_build_object('paused', n > 0, 'partitions', n)"
" FROM deliver_cluster.pause_consumer_group($1, $2) n";
static const char sql_resume_group[] =
"SELECT json_build_object('resumed', n > 0, 'partitions', n)"
" FROM deliver_cluster.resume_consumer_group($1, $2) n";
static const char sql_group_rate[] =
"SELECT json_build_object('consumer_group', $2::text, 'rate_per_second', r.per_second,"
" 'rate_burst', CASE WHEN r.per_second IS NOT NULL"
" THEN coalesce(r.burst, greatest(1, ceil(least(r.per_second, 1000000)))::int) END, 'partitions', x.n)"
" FROM (SELECT (CASE WHEN b ? 'per_second' THEN b->>'per_second'"
" ELSE 'a body without per_second' END)::float8 AS per_second,"
" (b->>'burst')::int AS burst" BODY(3) ") r,"
" LATERAL (SELECT deliver_cluster.set_consumer_group_rate($1, $2, r.per_second, r.burst) AS n) x";
static const char sql_fifo_key_limit[] =
"SELECT json_build_object('queue_name', $1::text, 'fifo_key_limit', (b->>'max_in_flight_per_key')::int,"
" 'partitions', deliver_cluster.set_fifo_key_limit($1, (b->>'max_in_flight_per_key')::int))" BODY(2);
static const char sql_peek[] =
"SELECT coalesce(json_agg(x), '[]') FROM (SELECT p.message_id, p.payload, p.headers, p.ordering_key,"
" p.attempt, p.enqueued_at, p.redelivery, p.partition FROM deliver_cluster.peek($1, $2::int, $3) p) x";
static const char sql_reset_group[] =
"SELECT json_build_object('consumer_group', $2::text, 'reset', true, 'partitions',"
" deliver_cluster.reset_consumer_group($1, $2, b->>'to'))" BODY(3);
static const char sql_queue_metrics[] =
"SELECT " QEXISTS ", CASE WHEN " QEXISTS " THEN"
" (SELECT coalesce(json_agg(m), '[]') FROM deliver_cluster.metrics($1) m) END";
/*
 * The console's routes: the router's views over every shard.  The metrics
 * are one row per queue and group merged over its partitions, as a single
 * node's GET /v1/metrics answers (plus "partitions"); workers, alerts and
 * push subscriptions are each shard's rows with their shard (and queue of
 * the cluster and partition).
 */
static const char sql_all_queue_metrics[] =
"SELECT coalesce(json_agg(x), '[]') FROM (SELECT m.*,"
" extract(epoch FROM m.oldest_age)::float8 AS oldest_age_seconds,"
" extract(epoch FROM m.worker_lag)::float8 AS worker_lag_seconds"
" FROM deliver_cluster.all_metrics() m) x";
static const char sql_workers[] =
"SELECT coalesce(json_agg(w), '[]') FROM deliver_cluster.worker_status() w";
static const char sql_alerts[] =
"SELECT coalesce(json_agg(a), '[]') FROM deliver_cluster.list_alerts() a";
static const char sql_push_subscriptions[] =
"SELECT coalesce(json_agg(s), '[]') FROM deliver_cluster.list_push_subscriptions() s";

/*
 * shards: $1 the queue, $2 the partition.  The partition's deliver queue
 * is named only once deliver_shard.epoch_of found the partition here (it
 * raises 55000 "... is not on this shard" otherwise).
 */
#define PART_QUEUE "CASE WHEN deliver_shard.epoch_of($1, $2::int) IS NOT NULL" \
	" THEN deliver_shard.queue_of($1, $2::int) END"

/* $3 the id on the shard, $4 the body */
static const char sql_delete_message[] =
"SELECT json_build_object('deleted', deliver.delete_message(" PART_QUEUE ", $3::bigint))";
static const char sql_ack[] =
"SELECT json_build_object('acked', deliver.ack(" PART_QUEUE ", $3::bigint))";
static const char sql_nack[] =
"SELECT json_build_object('nacked', deliver.nack(" PART_QUEUE ", $3::bigint, b->>'error', "
IV("retry_after") ", coalesce((b->'dead_letter')::boolean, false)))" BODY(4);
static const char sql_extend[] =
"SELECT json_build_object('lease_expires_at', deliver.extend_lease(" PART_QUEUE ", $3::bigint, "
IV("visibility_timeout") "))" BODY(4);
/* the groups of partition 0 (every partition has the same) */
static const char sql_list_groups[] =
"SELECT coalesce(json_agg(g), '[]') FROM (SELECT deliver_shard.epoch_of($1, $2::int) AS epoch OFFSET 0) e,"
" LATERAL deliver.list_consumer_groups(CASE WHEN e.epoch IS NOT NULL"
" THEN deliver_shard.queue_of($1, $2::int) END) g";


/* ---- the routes --------------------------------------------------------- */

static enum MHD_Result
cluster_readyz(rctx *x)
{
	enum MHD_Result ret;
	buf_t		b;
	bool		ready;

	if (shutting_down())
		return cl_answer(x, 503, NULL, "shutting down", NULL, NULL);
	/*
	 * Messages need the map and a shard, not the router (it serves
	 * administration and the map's next version): ready while the map was
	 * read and a shard is up.
	 */
	ready = x->map && cluster_shards_up() > 0;
	buf_init(&b);
	buf_printf(&b, "{\"status\":\"%s\",", ready ? "ready" : "not ready");
	cluster_status_json(&b);
	buf_puts(&b, "}");
	ret = send_response(x->c, x->rq, ready ? 200 : 503, "application/json", b.data, b.len,
						ready ? 0 : 1);
	buf_free(&b);
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
			ret = cl_router_route(&x, sql_list_queues, 0, p, 200, false, false, 0);
			break;
		case R_QUEUE_CREATE:
			p[0] = cl_body(rq);
			ret = cl_router_route(&x, sql_create_queue, 1, p, 201, false, false, SP_WRITE);
			break;
		case R_QUEUE_GET:
			ret = cl_router_route(&x, sql_get_queue, 1, p, 200, false, true, 0);
			break;
		case R_QUEUE_DROP:
			ret = cl_router_route(&x, sql_drop_queue, 1, p, 200, false, false, SP_WRITE);
			break;
		case R_GROUPS_LIST:
			{
				exec_result er;

				snprintf(part, sizeof(part), "0");
				p[1] = part;
				cl_shard_exec(&x, PL_READ, 0, 0, sql_list_groups, 2, p, 0, 0, &er);
				ret = er.status == 200 && er.res && PQntuples(er.res) == 1
					? send_json(c, rq, 200, PQgetvalue(er.res, 0, 0)) : cl_answer_shard_error(&x, &er);
				exec_result_clear(&er);
				break;
			}
		case R_GROUP_CREATE:
			p[1] = cl_body(rq);
			ret = cl_router_route(&x, sql_create_group, 2, p, 201, true, false, SP_WRITE);
			break;
		case R_GROUP_DROP:
			p[1] = m->group;
			ret = cl_router_route(&x, sql_drop_group, 2, p, 200, true, false, SP_WRITE);
			break;
		case R_DEAD_LETTERS:
			{
				const char *g;
				const char *err = parse_group_and_max(get_arg, c, DEAD_LETTERS_DEFAULT_MAX, &g,
													  max, sizeof(max));

				if (err)
				{
					ret = cl_answer(&x, 400, NULL, err, NULL, NULL);
					break;
				}
				p[1] = g;
				p[2] = max;
				ret = cl_router_route(&x, sql_dead_letters, 3, p, 200, true, false, 0);
				break;
			}
		case R_REDRIVE:
			p[1] = cl_body(rq);
			ret = cl_router_route(&x, sql_redrive, 2, p, 200, true, false, SP_WRITE);
			break;
		case R_DEAD_LETTERS_DELETE:
			p[1] = cl_body(rq);
			ret = cl_router_route(&x, sql_delete_dead_letters, 2, p, 200, false, false, SP_WRITE);
			break;
		case R_QUEUE_METRICS:
			ret = cl_router_route(&x, sql_queue_metrics, 1, p, 200, true, false, 0);
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
			{
				receive_params rp;
				const char *err = parse_receive_params(get_arg, c, cfg.max_wait_ms, STREAM_DEFAULT_MAX,
													   &rp);

				ret = err ? cl_answer(&x, 400, NULL, err, NULL, NULL) : stream_serve(c, rq, &rp);
				break;
			}
		case R_QUEUE_ALTER:
			p[1] = cl_body(rq);
			ret = cl_router_route(&x, sql_alter_queue, 2, p, 200, false, false, SP_WRITE);
			break;
		case R_GROUP_PAUSE:
		case R_GROUP_RESUME:
			p[1] = m->group;
			ret = cl_router_route(&x, m->id == R_GROUP_PAUSE ? sql_pause_group : sql_resume_group, 2, p,
								  200, false, false, SP_WRITE);
			break;
		case R_GROUP_RATE:
			p[1] = m->group;
			p[2] = cl_body(rq);
			ret = cl_router_route(&x, sql_group_rate, 3, p, 200, false, false, SP_WRITE);
			break;
		case R_FIFO_KEY_LIMIT:
			p[1] = cl_body(rq);
			ret = cl_router_route(&x, sql_fifo_key_limit, 2, p, 200, false, false, SP_WRITE);
			break;
		case R_PEEK:
			{
				const char *g;
				const char *err = parse_group_and_max(get_arg, c, PEEK_DEFAULT_MAX, &g, max, sizeof(max));

				if (err)
				{
					ret = cl_answer(&x, 400, NULL, err, NULL, NULL);
					break;
				}
				p[1] = max;
				p[2] = g ? g : PEEK_DEFAULT_GROUP;
				ret = cl_router_route(&x, sql_peek, 3, p, 200, false, false, 0);
				break;
			}
		case R_MESSAGE_DELETE:
			ret = cluster_by_id(&x, sql_delete_message, 3);
			break;
		case R_GROUP_RESET:
			p[1] = m->group;
			p[2] = cl_body(rq);
			ret = cl_router_route(&x, sql_reset_group, 3, p, 200, false, false, SP_WRITE);
			break;
		case R_GROUP_REPLAY:
			p[1] = m->group;
			p[2] = cl_body(rq);
			/* a message id is one partition's position (the positions are "after") */
			if (p[2] && strstr(p[2], "\"after_id\""))
			{
				ret = cl_answer(&x, 422, "22023", "after_id is no position of a partitioned queue", NULL,
								"Pass \"after\": the positions the last replay answered.");
				break;
			}
			ret = cl_router_route(&x, sql_replay, 3, p, 200, false, false, SP_WRITE);
			break;
		case R_ALL_QUEUE_METRICS:
			ret = cl_router_route(&x, sql_all_queue_metrics, 0, p, 200, false, false, 0);
			break;
		case R_WORKERS:
			ret = cl_router_route(&x, sql_workers, 0, p, 200, false, false, 0);
			break;
		case R_ALERTS:
			ret = cl_router_route(&x, sql_alerts, 0, p, 200, false, false, 0);
			break;
		case R_PUSH_SUBSCRIPTIONS:
			ret = cl_router_route(&x, sql_push_subscriptions, 0, p, 200, false, false, 0);
			break;
		case R_PUBLISH:
			p[0] = cl_body(rq);
			p[1] = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
			ret = cl_router_route(&x, sql_publish, 2, p, 201, false, false, SP_WRITE);
			break;
		case R_BINDINGS_LIST:
			/* ?queue=NAME: that queue's bindings only */
			p[0] = get_arg(c, "queue");
			ret = cl_router_route(&x, sql_list_bindings, 1, p, 200, false, false, 0);
			break;
		case R_BINDING_CREATE:
		case R_BINDING_DELETE:
			p[0] = cl_body(rq);
			ret = cl_router_route(&x, m->id == R_BINDING_CREATE ? sql_bind : sql_unbind, 1, p, 200, false, false,
								  SP_WRITE);
			break;
		case R_ROUTING:
			/* ?key=ROUTING_KEY (its rules are deliver's: 22023, a 422) */
			p[0] = get_arg(c, "key");
			if (!p[0])
			{
				ret = cl_answer(&x, 400, NULL, "key is required", NULL,
								"GET /v1/routing?key=ROUTING_KEY (URL-encoded).");
				break;
			}
			ret = cl_router_route(&x, sql_test_routing, 1, p, 200, false, false, 0);
			break;
		default:
			ret = cl_answer(&x, 404, NULL, "no such route", NULL, "See /openapi.json.");
			break;
	}
	cmap_put(x.map);
	return ret;
}
